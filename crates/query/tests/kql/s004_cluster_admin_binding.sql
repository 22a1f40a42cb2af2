SELECT d.*,
       json_text(json_get("log_s", 'requestObject', 'kind')) AS k8skind,
       json_text(json_get("log_s", 'requestObject', 'roleRef', 'name')) AS k8sroleref,
       json_text(json_get("log_s", 'user', 'username')) AS k8suser,
       json_text(json_get("log_s", 'sourceIPs', 0)) AS k8sipaddress
FROM "AzureDiagnostics" d
WHERE "Category" = 'kube-audit'
  AND json_text(json_get("log_s", 'verb')) = 'create'
  AND json_text(json_get("log_s", 'requestObject', 'roleRef', 'name')) = 'cluster-admin'
  AND json_text(json_get("log_s", 'requestObject', 'kind')) = 'ClusterRoleBinding'
