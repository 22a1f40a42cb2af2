{{- define "tw.name" -}}{{ .Release.Name | trunc 40 | trimSuffix "-" }}{{- end -}}
{{- define "tw.labels" -}}
app.kubernetes.io/name: trailwarden
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}
{{- define "tw.podSecurity" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: 10001
  runAsGroup: 10001
  fsGroup: 10001
  seccompProfile: { type: RuntimeDefault }
{{- end -}}
{{- define "tw.containerSecurity" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities: { drop: [ALL] }
{{- end -}}
{{- define "tw.probes" -}}
startupProbe:
  httpGet: { path: /healthz, port: https, scheme: HTTPS }
  periodSeconds: 2
  failureThreshold: 300
livenessProbe:
  httpGet: { path: /healthz, port: https, scheme: HTTPS }
  periodSeconds: 10
readinessProbe:
  httpGet: { path: /readyz, port: https, scheme: HTTPS }
  periodSeconds: 5
{{- end -}}
{{- define "tw.mounts" -}}
- { name: data, mountPath: /var/lib/trailwarden }
- { name: config, mountPath: /etc/trailwarden, readOnly: true }
- { name: tmp, mountPath: /tmp }
{{- if .Values.tls.secretName }}
- { name: tls, mountPath: /etc/trailwarden/tls, readOnly: true }
{{- end }}
{{- if .Values.tokensSecret }}
- { name: tokens, mountPath: /var/lib/trailwarden/tokens.json, subPath: tokens.json, readOnly: true }
{{- end }}
{{- if and (eq .Values.mode "scaled") .Values.cluster.credsSecret }}
- { name: nats-creds, mountPath: /etc/trailwarden/nats, readOnly: true }
{{- end }}
{{- if and (eq .Values.mode "scaled") .Values.cluster.messageKeySecret }}
- { name: message-key, mountPath: /etc/trailwarden/cluster, readOnly: true }
{{- end }}
{{- end -}}
{{- define "tw.volumes" -}}
- name: config
  configMap: { name: {{ include "tw.name" . }}-config }
- name: tmp
  emptyDir: {}
{{- if .Values.tls.secretName }}
- name: tls
  secret: { secretName: {{ .Values.tls.secretName }}, defaultMode: 0400 }
{{- end }}
{{- if .Values.tokensSecret }}
- name: tokens
  secret: { secretName: {{ .Values.tokensSecret }}, defaultMode: 0400 }
{{- end }}
{{- if and (eq .Values.mode "scaled") .Values.cluster.credsSecret }}
- name: nats-creds
  secret: { secretName: {{ .Values.cluster.credsSecret }}, defaultMode: 0400 }
{{- end }}
{{- if and (eq .Values.mode "scaled") .Values.cluster.messageKeySecret }}
- name: message-key
  secret: { secretName: {{ .Values.cluster.messageKeySecret }}, defaultMode: 0400 }
{{- end }}
{{- end -}}
{{- define "tw.env" -}}
- { name: TRAILWARDEN_CONFIG, value: /etc/trailwarden/trailwarden.toml }
- { name: TRAILWARDEN_DATA_DIR, value: /var/lib/trailwarden }
- { name: TRAILWARDEN_HTTP_LISTEN, value: "0.0.0.0:8443" }
{{- if .Values.tls.secretName }}
- { name: TRAILWARDEN_HTTP_CERT, value: /etc/trailwarden/tls/tls.crt }
- { name: TRAILWARDEN_HTTP_KEY, value: /etc/trailwarden/tls/tls.key }
{{- end }}
{{- if eq .Values.mode "scaled" }}
- { name: TRAILWARDEN_CLUSTER_NATS_URL, value: {{ .Values.cluster.natsUrl | quote }} }
- { name: TRAILWARDEN_CLUSTER_REPLICAS, value: {{ .Values.cluster.replicas | quote }} }
- { name: TRAILWARDEN_CLUSTER_LEASE_SECONDS, value: {{ .Values.cluster.leaseSeconds | quote }} }
- name: TRAILWARDEN_CLUSTER_NODE
  valueFrom: { fieldRef: { fieldPath: metadata.name } }
{{- if .Values.cluster.credsSecret }}
- { name: TRAILWARDEN_CLUSTER_CREDS_FILE, value: /etc/trailwarden/nats/nats.creds }
{{- end }}
{{- if .Values.cluster.messageKeySecret }}
- { name: TRAILWARDEN_CLUSTER_MESSAGE_KEY_FILE, value: /etc/trailwarden/cluster/cluster.key }
{{- end }}
{{- end }}
{{- end -}}
