//! # trailwarden-gen
//!
//! Deterministic, realistic Kubernetes audit traffic for tests and benchmarks.
//!
//! - **Mix**: the verb / resource / identity mix of a real cluster. The background activities
//!   and their weights are derived from the 16.5k-row kubeadm capture in the corpus
//!   (hkerma-kubernetes-event-dataset: get 74 %, update 7.6 %, list 5 %, create 5 %, watch 3.4 %,
//!   delete 2 %, patch 1.6 %; codes 200 90 %, 201 5 %, 404 4.5 %, 403 0.4 %, 409 0.4 %) with the
//!   Helm-loop discovery storm of that capture toned down, and the AKS samples for the AKS shape
//!   (identities `aksService`, `masterclient`, `nodeclient`; envelope fields; 7-digit times).
//! - **Sizes**: metadata-level events of ~0.7–1.2 KB; request / response objects of writes with
//!   a long tail up to ~50 KB.
//! - **Time**: events spread over `--span` from `--start`, in stage-time order.
//! - **Attacks**: at `attack_rate` per event slot, one of the scenarios in [`SCENARIOS`] (exec
//!   into a CDE pod, cluster-admin binding, privileged / hostPath / hostNetwork pods, secrets
//!   enumeration, anonymous access, 403 bursts, events deletion, …). Every attack event can be
//!   written to a label file (`audit_id`, `scenario`) so detections can be scored.
//!
//! The same options and seed always produce the same bytes.
#![warn(missing_docs)]

pub mod json;
pub mod rng;

use json::Obj;
use rng::Rng;
use std::collections::VecDeque;
use std::io::{self, Write};
use trailwarden_model::time::NANOS_PER_SEC;
use trailwarden_model::Timestamp;

/// Which kind of cluster to imitate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// A self-managed kubeadm cluster writing plain audit events.
    Kubeadm,
    /// An AKS cluster exporting diagnostic records (`properties.log` holds the event).
    Aks,
}

/// How events are framed in the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// One event (or AKS record) per line.
    Jsonl,
    /// One batch per line: an `EventList` (kubeadm) or a `{"records":[…]}` body (AKS).
    EventList,
}

/// Generator options.
#[derive(Clone, Debug)]
pub struct Options {
    /// Number of audit events to produce.
    pub events: u64,
    /// Seed.
    pub seed: u64,
    /// Cluster shape.
    pub profile: Profile,
    /// Output framing.
    pub format: OutputFormat,
    /// Time of the first event.
    pub start: Timestamp,
    /// Time span the events cover, in nanoseconds.
    pub span_ns: i64,
    /// Probability that an event slot starts an attack scenario.
    pub attack_rate: f64,
    /// Events per batch for [`OutputFormat::EventList`] (the API server's default is 400).
    pub batch: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            events: 1000,
            seed: 1,
            profile: Profile::Kubeadm,
            format: OutputFormat::Jsonl,
            start: Timestamp::from_civil(2026, 1, 5, 9, 0, 0, 0),
            span_ns: 3600 * NANOS_PER_SEC,
            attack_rate: 0.001,
            batch: 400,
        }
    }
}

/// The attack scenarios the generator can inject (label names).
pub const SCENARIOS: &[&str] = &[
    "exec_into_pod",
    "attach_pod",
    "portforward",
    "cluster_admin_binding",
    "privileged_pod",
    "hostpath_pod",
    "hostnetwork_pod",
    "secrets_enumeration",
    "cde_secret_read",
    "anonymous_access",
    "forbidden_burst",
    "events_deletion",
    "crypto_miner_pod",
    "nodeport_service",
    "csr_created",
    "token_request",
    "impersonation",
    "audit_policy_change",
    "ephemeral_container",
    "wildcard_clusterrole",
];

/// One generated audit event.
#[derive(Clone, Debug)]
pub struct GenEvent {
    /// The audit event JSON (`audit.k8s.io/v1`).
    pub json: String,
    /// Its stage time.
    pub time: Timestamp,
    /// Its audit ID.
    pub audit_id: String,
    /// The attack scenario it belongs to, if any.
    pub scenario: Option<&'static str>,
}

/// What a run produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Audit events.
    pub events: u64,
    /// Of which part of an attack scenario.
    pub attack_events: u64,
    /// Attack scenarios started.
    pub scenarios: u64,
    /// Bytes written.
    pub bytes: u64,
}

struct Identity {
    name: String,
    uid: Option<String>,
    groups: Vec<&'static str>,
    agent: String,
    ip: String,
}

const NAMESPACES: &[&str] = &[
    "default",
    "kube-system",
    "monitoring",
    "cert-manager",
    "ingress-nginx",
    "cde-payments",
    "cde-vault",
    "checkout",
    "logging",
    "argocd",
];

const CDE_NAMESPACES: &[&str] = &["cde-payments", "cde-vault"];

const CONTROLLERS: &[&str] = &[
    "deployment-controller",
    "replicaset-controller",
    "endpointslice-controller",
    "endpoint-controller",
    "namespace-controller",
    "generic-garbage-collector",
    "resourcequota-controller",
    "persistent-volume-binder",
    "attachdetach-controller",
    "job-controller",
    "daemon-set-controller",
    "statefulset-controller",
];

const DISCOVERY: &[&str] = &[
    "/api",
    "/apis",
    "/api/v1",
    "/apis/apps/v1",
    "/apis/batch/v1",
    "/apis/rbac.authorization.k8s.io/v1",
    "/apis/networking.k8s.io/v1",
    "/apis/policy/v1",
    "/apis/autoscaling/v2",
    "/apis/storage.k8s.io/v1",
    "/apis/apiextensions.k8s.io/v1",
    "/apis/coordination.k8s.io/v1",
    "/apis/events.k8s.io/v1",
    "/apis/metrics.k8s.io/v1beta1",
    "/apis/cert-manager.io/v1",
    "/apis/monitoring.coreos.com/v1",
    "/openapi/v2",
    "/version",
];

/// (resource, api group, namespaced)
const OBJECTS: &[(&str, &str, bool)] = &[
    ("pods", "", true),
    ("services", "", true),
    ("configmaps", "", true),
    ("secrets", "", true),
    ("serviceaccounts", "", true),
    ("endpoints", "", true),
    ("deployments", "apps", true),
    ("replicasets", "apps", true),
    ("statefulsets", "apps", true),
    ("daemonsets", "apps", true),
    ("endpointslices", "discovery.k8s.io", true),
    ("roles", "rbac.authorization.k8s.io", true),
    ("rolebindings", "rbac.authorization.k8s.io", true),
    ("clusterroles", "rbac.authorization.k8s.io", false),
    ("clusterrolebindings", "rbac.authorization.k8s.io", false),
    ("nodes", "", false),
    ("namespaces", "", false),
    ("persistentvolumes", "", false),
    ("customresourcedefinitions", "apiextensions.k8s.io", false),
    ("ingresses", "networking.k8s.io", true),
    ("jobs", "batch", true),
    ("cronjobs", "batch", true),
];

const IMAGES: &[&str] = &[
    "registry.k8s.io/pause:3.9",
    "nginx:1.25.3",
    "ghcr.io/acme/checkout-api:2.14.1",
    "ghcr.io/acme/payments-worker:5.2.0",
    "quay.io/prometheus/node-exporter:v1.7.0",
    "quay.io/jetstack/cert-manager-controller:v1.13.3",
    "registry.k8s.io/ingress-nginx/controller:v1.9.5",
    "hashicorp/vault:1.15.4",
];

/// Images of the control plane's add-ons (what runs in `kube-system`).
const PLATFORM_IMAGES: &[&str] = &[
    "registry.k8s.io/coredns/coredns:v1.11.1",
    "registry.k8s.io/kube-proxy:v1.29.2",
    "registry.k8s.io/metrics-server/metrics-server:v0.7.0",
    "registry.k8s.io/pause:3.9",
];

/// A generated-but-not-yet-emitted event (attack scenarios emit several).
struct Pending {
    ev: GenEvent,
}

/// The generator: an iterator of [`GenEvent`] in time order.
pub struct Generator {
    opts: Options,
    rng: Rng,
    produced: u64,
    clock: i64,
    gap: f64,
    queue: VecDeque<Pending>,
    nodes: Vec<String>,
    humans: Vec<(&'static str, Vec<&'static str>)>,
    admin: &'static str,
    apiserver_pods: Vec<String>,
    /// Scenarios started so far.
    pub scenarios: u64,
}

/// The pieces of one audit event before it is written.
struct Draft<'a> {
    level: &'static str,
    stage: &'static str,
    uri: String,
    verb: &'a str,
    user: &'a Identity,
    impersonated: Option<(&'a str, &'a [&'a str])>,
    object: Option<ObjRef<'a>>,
    code: i64,
    failure: Option<(&'static str, String)>,
    request_object: Option<String>,
    response_object: Option<String>,
    latency_ns: i64,
    decision: &'static str,
    reason: String,
}

#[derive(Clone, Copy)]
struct ObjRef<'a> {
    resource: &'a str,
    group: &'a str,
    namespace: Option<&'a str>,
    name: Option<&'a str>,
    subresource: Option<&'a str>,
}

fn version_of(group: &str) -> &'static str {
    match group {
        ""
        | "apps"
        | "rbac.authorization.k8s.io"
        | "networking.k8s.io"
        | "batch"
        | "discovery.k8s.io"
        | "apiextensions.k8s.io"
        | "coordination.k8s.io"
        | "certificates.k8s.io"
        | "authentication.k8s.io"
        | "authorization.k8s.io"
        | "admissionregistration.k8s.io"
        | "events.k8s.io"
        | "policy" => "v1",
        _ => "v1beta1",
    }
}

fn base_uri(o: &ObjRef) -> String {
    let mut u = if o.group.is_empty() {
        "/api/v1".to_string()
    } else {
        format!("/apis/{}/{}", o.group, version_of(o.group))
    };
    if let Some(ns) = o.namespace {
        u.push_str("/namespaces/");
        u.push_str(ns);
    }
    u.push('/');
    u.push_str(o.resource);
    if let Some(n) = o.name {
        u.push('/');
        u.push_str(n);
    }
    if let Some(s) = o.subresource {
        u.push('/');
        u.push_str(s);
    }
    u
}

impl Generator {
    /// A generator for these options.
    pub fn new(opts: Options) -> Generator {
        let mut rng = Rng::new(opts.seed);
        let aks = opts.profile == Profile::Aks;
        let nodes: Vec<String> = if aks {
            let pool = 10_000_000 + rng.below(89_999_999);
            (0..4)
                .map(|i| format!("aks-nodepool1-{pool}-vmss00000{i}"))
                .collect()
        } else {
            (1..=5).map(|i| format!("worker-{i}")).collect()
        };
        let humans = if aks {
            vec![
                (
                    "alice@contoso.com",
                    vec![
                        "5f0d1c1e-2a43-4b8f-9a1c-6c7d8e9f0a1b",
                        "system:authenticated",
                    ],
                ),
                (
                    "bob@contoso.com",
                    vec![
                        "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d",
                        "system:authenticated",
                    ],
                ),
                (
                    "carol@contoso.com",
                    vec![
                        "5f0d1c1e-2a43-4b8f-9a1c-6c7d8e9f0a1b",
                        "system:authenticated",
                    ],
                ),
                (
                    "oncall@contoso.com",
                    vec!["platform-admins", "system:authenticated"],
                ),
            ]
        } else {
            vec![
                (
                    "alice@example.com",
                    vec!["developers", "system:authenticated"],
                ),
                (
                    "bob@example.com",
                    vec!["developers", "system:authenticated"],
                ),
                (
                    "carol@example.com",
                    vec!["payments-team", "system:authenticated"],
                ),
                (
                    "oncall@example.com",
                    vec!["platform-admins", "system:authenticated"],
                ),
            ]
        };
        let admin = if aks {
            "masterclient"
        } else {
            "kubernetes-admin"
        };
        let apiserver_pods = (0..3)
            .map(|_| format!("kube-apiserver-{}-{}", rng.suffix(10), rng.suffix(5)))
            .collect();
        let gap = opts.span_ns as f64 / opts.events.max(1) as f64;
        Generator {
            clock: opts.start.0,
            opts,
            rng,
            produced: 0,
            gap,
            queue: VecDeque::new(),
            nodes,
            humans,
            admin,
            apiserver_pods,
            scenarios: 0,
        }
    }

    fn advance(&mut self) -> i64 {
        let step = self.gap * (0.2 + 1.6 * self.rng.unit());
        self.clock += step as i64;
        self.clock
    }

    fn ip_internal(&mut self) -> String {
        if self.opts.profile == Profile::Aks {
            format!("10.224.0.{}", 4 + self.rng.below(60))
        } else {
            format!("192.168.10.{}", 10 + self.rng.below(40))
        }
    }

    fn sa(&mut self, ns: &str, name: &str) -> Identity {
        Identity {
            name: format!("system:serviceaccount:{ns}:{name}"),
            uid: Some(stable_uid(&format!("system:serviceaccount:{ns}:{name}"))),
            groups: vec!["system:serviceaccounts", "system:authenticated"],
            agent: format!("{name}/v1.29.2 (linux/amd64) kubernetes/4b8e819"),
            ip: self.ip_internal(),
        }
    }

    fn controller(&mut self) -> Identity {
        let c = *self.rng.pick(CONTROLLERS);
        let mut id = self.sa("kube-system", c);
        id.agent = format!("kube-controller-manager/v1.29.2 (linux/amd64) kubernetes/4b8e819/system:serviceaccount:kube-system:{c}");
        id.ip = self.control_plane_ip();
        id
    }

    fn control_plane_ip(&mut self) -> String {
        if self.opts.profile == Profile::Aks {
            "172.31.16.64".to_string()
        } else {
            "192.168.10.2".to_string()
        }
    }

    fn node(&mut self) -> Identity {
        let n = self.rng.pick(&self.nodes).clone();
        let ip = self.ip_internal();
        Identity {
            name: format!("system:node:{n}"),
            uid: None,
            groups: vec!["system:nodes", "system:authenticated"],
            agent: "kubelet/v1.29.2 (linux/amd64) kubernetes/4b8e819".to_string(),
            ip,
        }
    }

    fn human(&mut self) -> Identity {
        let i = self.rng.index(self.humans.len());
        let (name, groups) = (self.humans[i].0, self.humans[i].1.clone());
        Identity {
            name: name.to_string(),
            uid: Some(stable_uid(name)),
            groups,
            agent: "kubectl/v1.29.2 (darwin/arm64) kubernetes/4b8e819".to_string(),
            ip: format!("10.50.{}.{}", self.rng.below(4), 10 + self.rng.below(200)),
        }
    }

    fn admin(&mut self) -> Identity {
        Identity {
            name: self.admin.to_string(),
            uid: None,
            groups: vec!["system:masters", "system:authenticated"],
            agent: if self.rng.chance(0.5) {
                "kubectl/v1.29.2 (linux/amd64) kubernetes/4b8e819".into()
            } else {
                "Helm/3.13.3".into()
            },
            ip: format!("10.50.0.{}", 2 + self.rng.below(5)),
        }
    }

    fn system(&mut self, name: &str, agent: &str) -> Identity {
        let ip = self.control_plane_ip();
        Identity {
            name: name.to_string(),
            uid: None,
            groups: vec!["system:authenticated"],
            agent: agent.to_string(),
            ip,
        }
    }

    fn anonymous(&mut self, ip: String) -> Identity {
        Identity {
            name: "system:anonymous".into(),
            uid: None,
            groups: vec!["system:unauthenticated"],
            agent: "kube-probe/1.29".into(),
            ip,
        }
    }

    fn name_for(&mut self, resource: &str, ns: Option<&str>) -> String {
        let app = *self.rng.pick(&[
            "checkout-api",
            "payments-worker",
            "vault",
            "nginx",
            "cert-manager",
            "prometheus",
            "coredns",
            "ingress-nginx-controller",
        ]);
        match resource {
            "pods" => format!("{app}-{}-{}", self.rng.suffix(10), self.rng.suffix(5)),
            "replicasets" => format!("{app}-{}", self.rng.suffix(10)),
            "secrets" => {
                if self.rng.chance(0.3) {
                    format!("sh.helm.release.v1.{app}.v{}", 1 + self.rng.below(40))
                } else {
                    format!(
                        "{app}-{}",
                        *self.rng.pick(&[
                            "tls",
                            "token",
                            "credentials",
                            "db-password",
                            "webhook-ca"
                        ])
                    )
                }
            }
            "configmaps" => format!(
                "{app}-{}",
                *self.rng.pick(&["config", "env", "dashboards", "rules"])
            ),
            "leases" => {
                if ns == Some("kube-node-lease") {
                    self.rng.pick(&self.nodes).clone()
                } else {
                    (*self.rng.pick(&[
                        "kube-controller-manager",
                        "kube-scheduler",
                        "cert-manager-controller",
                        "ingress-nginx-leader",
                    ]))
                    .to_string()
                }
            }
            "nodes" => self.rng.pick(&self.nodes).clone(),
            "namespaces" => (*self.rng.pick(NAMESPACES)).to_string(),
            "clusterroles" | "clusterrolebindings" => format!(
                "{app}-{}",
                *self.rng.pick(&["view", "edit", "controller", "webhook"])
            ),
            "customresourcedefinitions" => (*self.rng.pick(&[
                "certificates.cert-manager.io",
                "prometheusrules.monitoring.coreos.com",
                "servicemonitors.monitoring.coreos.com",
            ]))
            .to_string(),
            _ => app.to_string(),
        }
    }

    /// An object body of roughly `size` bytes (a long tail of annotations / managed fields).
    fn object_body(
        &mut self,
        kind: &str,
        api_version: &str,
        ns: Option<&str>,
        name: &str,
        size: usize,
    ) -> String {
        let mut s = String::with_capacity(size + 512);
        let mut o = Obj::new(&mut s);
        o.str("kind", kind).str("apiVersion", api_version);
        let uid = self.rng.uuid();
        let rv = (1_000_000 + self.rng.below(9_000_000)).to_string();
        let mut pad = String::new();
        while pad.len() < size.saturating_sub(400) {
            pad.push_str(&format!("{{\"manager\":\"kubectl-client-side-apply\",\"operation\":\"Update\",\"apiVersion\":\"{api_version}\",\"fieldsType\":\"FieldsV1\",\"fieldsV1\":{{\"f:metadata\":{{\"f:labels\":{{\"f:app\":{{}},\"f:tier\":{{}}}}}},\"f:spec\":{{\"f:template\":{{\"f:spec\":{{\"f:containers\":{{\"k:{{\\\"name\\\":\\\"c{}\\\"}}\":{{}}}}}}}}}}}}}},", pad.len()));
        }
        let managed = if pad.is_empty() {
            String::new()
        } else {
            format!("[{}]", pad.trim_end_matches(','))
        };
        o.obj("metadata", |m| {
            m.str("name", name)
                .opt("namespace", ns)
                .str("uid", &uid)
                .str("resourceVersion", &rv);
            m.obj("labels", |l| {
                l.str("app", name.split('-').next().unwrap_or(name))
                    .str("tier", "backend");
            });
            if !managed.is_empty() {
                m.raw("managedFields", &managed);
            }
        });
        // the platform's own namespaces run the platform's images, not the applications'
        let image = if matches!(ns, Some("kube-system") | Some("kube-public")) {
            *self.rng.pick(PLATFORM_IMAGES)
        } else {
            *self.rng.pick(IMAGES)
        };
        match kind {
            "Pod" | "Deployment" => {
                let spec = format!(
                    "{{\"containers\":[{{\"name\":\"main\",\"image\":\"{image}\",\"ports\":[{{\"containerPort\":8080,\"protocol\":\"TCP\"}}],\"resources\":{{\"requests\":{{\"cpu\":\"100m\",\"memory\":\"128Mi\"}}}},\"securityContext\":{{\"allowPrivilegeEscalation\":false,\"readOnlyRootFilesystem\":true,\"runAsNonRoot\":true}}}}],\"serviceAccountName\":\"default\",\"restartPolicy\":\"Always\"}}"
                );
                if kind == "Pod" {
                    o.raw("spec", &spec);
                } else {
                    o.raw("spec", &format!("{{\"replicas\":{},\"selector\":{{\"matchLabels\":{{\"app\":\"{name}\"}}}},\"template\":{{\"metadata\":{{\"labels\":{{\"app\":\"{name}\"}}}},\"spec\":{spec}}}}}", 1 + self.rng.below(4)));
                }
            }
            "ConfigMap" | "Secret" => {
                o.obj("data", |d| {
                    d.str("config.yaml", "bG9nTGV2ZWw6IGluZm8KcG9ydDogODA4MAo=");
                });
            }
            "Lease" => {
                let now = Timestamp(self.clock).to_rfc3339();
                o.obj("spec", |sp| {
                    sp.str("holderIdentity", name)
                        .num("leaseDurationSeconds", 15)
                        .str("renewTime", &now);
                });
            }
            _ => {}
        }
        o.close();
        s
    }

    fn write_event(&mut self, d: Draft, scenario: Option<&'static str>) -> GenEvent {
        let st = self.advance();
        let latency = d.latency_ns.max(200_000);
        let rr = Timestamp(st - latency);
        let stt = Timestamp(st);
        let audit_id = self.rng.uuid();
        let mut s =
            String::with_capacity(1024 + d.request_object.as_ref().map_or(0, String::len) * 2);
        let mut o = Obj::new(&mut s);
        o.str("kind", "Event")
            .str("apiVersion", "audit.k8s.io/v1")
            .str("level", d.level)
            .str("auditID", &audit_id)
            .str("stage", d.stage)
            .str("requestURI", &d.uri)
            .str("verb", d.verb);
        o.obj("user", |u| {
            u.str("username", &d.user.name)
                .opt("uid", d.user.uid.as_deref())
                .strs("groups", &d.user.groups);
        });
        if let Some((name, groups)) = d.impersonated {
            o.obj("impersonatedUser", |u| {
                u.str("username", name).strs("groups", groups);
            });
        }
        o.strs("sourceIPs", &[d.user.ip.as_str()])
            .str("userAgent", &d.user.agent);
        if let Some(r) = d.object {
            o.obj("objectRef", |or| {
                or.str("resource", r.resource)
                    .opt("namespace", r.namespace)
                    .opt("name", r.name)
                    .opt("apiGroup", (!r.group.is_empty()).then_some(r.group))
                    .str("apiVersion", version_of(r.group))
                    .opt("subresource", r.subresource);
            });
        }
        o.obj("responseStatus", |rs| {
            rs.obj("metadata", |_| {});
            if let Some((reason, msg)) = &d.failure {
                rs.str("status", "Failure")
                    .str("message", msg)
                    .str("reason", reason);
            }
            rs.num("code", d.code);
        });
        if let Some(b) = &d.request_object {
            o.raw("requestObject", b);
        }
        if let Some(b) = &d.response_object {
            o.raw("responseObject", b);
        }
        o.str("requestReceivedTimestamp", &micro(rr))
            .str("stageTimestamp", &micro(stt));
        o.obj("annotations", |a| {
            a.str("authorization.k8s.io/decision", d.decision)
                .str("authorization.k8s.io/reason", &d.reason);
        });
        o.close();
        GenEvent {
            json: s,
            time: stt,
            audit_id,
            scenario,
        }
    }

    fn draft<'a>(
        &mut self,
        user: &'a Identity,
        verb: &'a str,
        object: Option<ObjRef<'a>>,
        code: i64,
    ) -> Draft<'a> {
        let uri = match &object {
            Some(o) => base_uri(o),
            None => "/".into(),
        };
        let (decision, reason) = if code == 403 {
            ("forbid", String::new())
        } else if user.groups.contains(&"system:masters") {
            ("allow", String::new())
        } else {
            ("allow", format!("RBAC: allowed by ClusterRoleBinding \"{}\" of ClusterRole \"{}\" to User \"{}\"", "system:controller", "system:controller", user.name))
        };
        let failure = match code {
            403 => Some(("Forbidden", format!("{} is forbidden: User \"{}\" cannot {} resource", object.map_or("resource", |o| o.resource), user.name, verb))),
            404 => Some(("NotFound", format!("{} not found", object.and_then(|o| o.name).unwrap_or("object")))),
            409 => Some(("Conflict", "Operation cannot be fulfilled: the object has been modified; please apply your changes to the latest version and try again".to_string())),
            _ => None,
        };
        Draft {
            level: "Metadata",
            stage: "ResponseComplete",
            uri,
            verb,
            user,
            impersonated: None,
            object,
            code,
            failure,
            request_object: None,
            response_object: None,
            latency_ns: (500_000.0 + 20_000_000.0 * self.rng.unit() * self.rng.unit()) as i64,
            decision,
            reason,
        }
    }

    /// One background (benign) event.
    fn background(&mut self) -> GenEvent {
        // Activity weights (per mille), tuned to the capture's verb and code mix.
        const W: &[u32] = &[
            150, // 0 discovery get
            45,  // 1 health probe
            90,  // 2 lease get
            115, // 3 lease update
            60,  // 4 node get
            25,  // 5 node status patch
            15,  // 6 pod status patch
            60,  // 7 secret get
            40,  // 8 configmap get
            120, // 9 object get
            50,  // 10 list
            35,  // 11 watch
            45,  // 12 status update
            35,  // 13 event create
            10,  // 14 event patch
            10,  // 15 pod create
            10,  // 16 pod delete
            20,  // 17 secret write by operators
            6,   // 18 token create
            12,  // 19 reviews
            25,  // 20 human / admin
            12,  // 21 CDE workload reads
            4,   // 22 deletecollection
            4,   // 23 background 403
            6,   // 24 RBAC write by Helm
            6,   // 25 CRD update
            10,  // 26 deployment update
        ];
        let k = self.rng.weighted(W);
        match k {
            0 => {
                let u = if self.rng.chance(0.5) {
                    self.admin()
                } else {
                    self.controller()
                };
                let path = *self.rng.pick(DISCOVERY);
                let mut d = self.draft(&u, "get", None, 200);
                d.uri = format!("{path}?timeout=32s");
                d.reason = "RBAC: allowed by ClusterRoleBinding \"system:discovery\" of ClusterRole \"system:discovery\" to Group \"system:authenticated\"".into();
                self.write_event(d, None)
            }
            1 => {
                let ip = self.control_plane_ip();
                let u = if self.rng.chance(0.5) {
                    self.anonymous(ip)
                } else {
                    Identity {
                        name: "readinessChecker".into(),
                        uid: Some("1".into()),
                        groups: vec!["system:authenticated"],
                        agent: "kube-probe/1.29".into(),
                        ip,
                    }
                };
                let mut d = self.draft(&u, "get", None, 200);
                d.uri = (*self.rng.pick(&["/readyz", "/livez", "/healthz"])).to_string();
                d.reason = "RBAC: allowed by ClusterRoleBinding \"system:public-info-viewer\" of ClusterRole \"system:public-info-viewer\" to Group \"system:unauthenticated\"".into();
                self.write_event(d, None)
            }
            2 | 3 => {
                let verb = if k == 2 { "get" } else { "update" };
                let node_lease = self.rng.chance(0.35);
                let u = if node_lease {
                    self.node()
                } else if self.rng.chance(0.5) {
                    self.system("system:kube-controller-manager", "kube-controller-manager/v1.29.2 (linux/amd64) kubernetes/4b8e819/leader-election")
                } else {
                    self.system(
                        "system:kube-scheduler",
                        "kube-scheduler/v1.29.2 (linux/amd64) kubernetes/4b8e819/leader-election",
                    )
                };
                let ns = if node_lease {
                    "kube-node-lease"
                } else {
                    "kube-system"
                };
                let name = self.name_for("leases", Some(ns));
                let obj = ObjRef {
                    resource: "leases",
                    group: "coordination.k8s.io",
                    namespace: Some(ns),
                    name: Some(&name),
                    subresource: None,
                };
                let code = if verb == "update" && self.rng.chance(0.01) {
                    409
                } else {
                    200
                };
                let mut d = self.draft(&u, verb, Some(obj), code);
                if verb == "update" && self.opts.profile == Profile::Kubeadm {
                    d.level = "RequestResponse";
                    let body =
                        self.object_body("Lease", "coordination.k8s.io/v1", Some(ns), &name, 300);
                    d.request_object = Some(body.clone());
                    d.response_object = Some(body);
                }
                self.write_event(d, None)
            }
            4 | 5 => {
                let u = self.node();
                let node = u.name.trim_start_matches("system:node:").to_string();
                let (verb, sub) = if k == 4 {
                    ("get", None)
                } else {
                    ("patch", Some("status"))
                };
                let obj = ObjRef {
                    resource: "nodes",
                    group: "",
                    namespace: None,
                    name: Some(&node),
                    subresource: sub,
                };
                let mut d = self.draft(&u, verb, Some(obj), 200);
                d.reason = String::new();
                if k == 5 {
                    d.level = "RequestResponse";
                    let n = self.rng.long_tail(2500.0, 0.8, 50_000);
                    d.request_object = Some(format!("{{\"status\":{{\"conditions\":[{{\"type\":\"Ready\",\"status\":\"True\",\"reason\":\"KubeletReady\"}}],\"images\":[{}]}}}}", image_list(n)));
                }
                self.write_event(d, None)
            }
            6 => {
                let u = self.node();
                let ns = *self.rng.pick(NAMESPACES);
                let name = self.name_for("pods", Some(ns));
                let obj = ObjRef {
                    resource: "pods",
                    group: "",
                    namespace: Some(ns),
                    name: Some(&name),
                    subresource: Some("status"),
                };
                let mut d = self.draft(&u, "patch", Some(obj), 200);
                d.level = "Request";
                d.request_object = Some("{\"status\":{\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"}],\"phase\":\"Running\"}}".into());
                self.write_event(d, None)
            }
            7 | 8 => {
                let res = if k == 7 { "secrets" } else { "configmaps" };
                let ns = *self.rng.pick(&[
                    "cert-manager",
                    "monitoring",
                    "kube-system",
                    "ingress-nginx",
                    "argocd",
                    "default",
                ]);
                let u = match ns {
                    "cert-manager" => self.sa("cert-manager", "cert-manager-cainjector"),
                    "monitoring" => self.sa("monitoring", "prometheus-operator"),
                    "argocd" => self.sa("argocd", "argocd-application-controller"),
                    _ => self.node(),
                };
                let name = self.name_for(res, Some(ns));
                let obj = ObjRef {
                    resource: res,
                    group: "",
                    namespace: Some(ns),
                    name: Some(&name),
                    subresource: None,
                };
                let code = if self.rng.chance(0.06) { 404 } else { 200 };
                let d = self.draft(&u, "get", Some(obj), code);
                self.write_event(d, None)
            }
            9 => {
                let (res, group, namespaced) = *self.rng.pick(OBJECTS);
                let ns = if namespaced {
                    Some(*self.rng.pick(NAMESPACES))
                } else {
                    None
                };
                let name = self.name_for(res, ns);
                let by_admin = self.rng.chance(0.3);
                let u = match ns {
                    // in the cardholder data environment, secrets and configuration are read
                    // by its own workloads; people and the shared admin credential keep out
                    Some(cde)
                        if CDE_NAMESPACES.contains(&cde)
                            && matches!(res, "secrets" | "configmaps") =>
                    {
                        self.sa(cde, "payments-worker")
                    }
                    _ if by_admin => self.admin(),
                    _ => self.controller(),
                };
                let obj = ObjRef {
                    resource: res,
                    group,
                    namespace: ns,
                    name: Some(&name),
                    subresource: None,
                };
                let code = if self.rng.chance(0.08) { 404 } else { 200 };
                let d = self.draft(&u, "get", Some(obj), code);
                self.write_event(d, None)
            }
            10 | 11 => {
                let verb = if k == 10 { "list" } else { "watch" };
                let res = *self.rng.pick(&[
                    "pods",
                    "configmaps",
                    "secrets",
                    "services",
                    "endpoints",
                    "nodes",
                    "namespaces",
                ]);
                let namespaced = !matches!(res, "nodes" | "namespaces");
                let ns = if namespaced && self.rng.chance(0.7) {
                    Some(*self.rng.pick(NAMESPACES))
                } else {
                    None
                };
                let u = if res == "secrets" || res == "configmaps" {
                    self.node()
                } else {
                    self.controller()
                };
                let obj = ObjRef {
                    resource: res,
                    group: "",
                    namespace: ns,
                    name: None,
                    subresource: None,
                };
                let mut d = self.draft(&u, verb, Some(obj), 200);
                if verb == "watch" {
                    d.uri.push_str(&format!("?allowWatchBookmarks=true&resourceVersion={}&timeout=7m43s&timeoutSeconds=463&watch=true", 6_000_000 + self.rng.below(900_000)));
                    if self.rng.chance(0.5) {
                        d.stage = "ResponseStarted";
                    } else {
                        d.latency_ns = (300.0 + 200.0 * self.rng.unit()) as i64 * NANOS_PER_SEC;
                    }
                } else {
                    d.uri.push_str("?limit=500&resourceVersion=0");
                }
                self.write_event(d, None)
            }
            12 => {
                let (res, group) = *self.rng.pick(&[
                    ("deployments", "apps"),
                    ("replicasets", "apps"),
                    ("endpoints", ""),
                    ("endpointslices", "discovery.k8s.io"),
                    ("services", ""),
                ]);
                let ns = *self.rng.pick(NAMESPACES);
                let name = self.name_for(res, Some(ns));
                let u = self.controller();
                let sub = if res == "deployments" || res == "replicasets" {
                    Some("status")
                } else {
                    None
                };
                let obj = ObjRef {
                    resource: res,
                    group,
                    namespace: Some(ns),
                    name: Some(&name),
                    subresource: sub,
                };
                let code = if self.rng.chance(0.04) { 409 } else { 200 };
                let mut d = self.draft(&u, "update", Some(obj), code);
                d.level = "RequestResponse";
                let size = self.rng.long_tail(900.0, 0.9, 50_000);
                let kind = match res {
                    "deployments" => "Deployment",
                    "replicasets" => "ReplicaSet",
                    "endpoints" => "Endpoints",
                    "endpointslices" => "EndpointSlice",
                    _ => "Service",
                };
                let body = self.object_body(
                    kind,
                    if group.is_empty() { "v1" } else { "apps/v1" },
                    Some(ns),
                    &name,
                    size,
                );
                d.request_object = Some(body.clone());
                if code == 200 {
                    d.response_object = Some(body);
                }
                self.write_event(d, None)
            }
            13 | 14 => {
                let verb = if k == 13 { "create" } else { "patch" };
                let ns = *self.rng.pick(NAMESPACES);
                let u = if self.rng.chance(0.5) {
                    self.node()
                } else {
                    self.controller()
                };
                let name = format!(
                    "{}.{:x}",
                    self.name_for("pods", Some(ns)),
                    self.rng.next_u64() & 0xffff_ffff_ffff
                );
                let obj = ObjRef {
                    resource: "events",
                    group: "",
                    namespace: Some(ns),
                    name: if verb == "patch" { Some(&name) } else { None },
                    subresource: None,
                };
                let d = self.draft(
                    &u,
                    verb,
                    Some(obj),
                    if verb == "create" { 201 } else { 200 },
                );
                self.write_event(d, None)
            }
            15 | 16 => {
                let ns = *self.rng.pick(NAMESPACES);
                let name = self.name_for("pods", Some(ns));
                let u = if k == 15 {
                    let mut c = self.sa("kube-system", "replicaset-controller");
                    c.ip = self.control_plane_ip();
                    c
                } else {
                    self.controller()
                };
                let verb = if k == 15 { "create" } else { "delete" };
                let obj = ObjRef {
                    resource: "pods",
                    group: "",
                    namespace: Some(ns),
                    name: if k == 15 { None } else { Some(&name) },
                    subresource: None,
                };
                let mut d = self.draft(&u, verb, Some(obj), if k == 15 { 201 } else { 200 });
                if k == 15 {
                    d.level = "RequestResponse";
                    let size = self.rng.long_tail(1800.0, 0.8, 50_000);
                    let body = self.object_body("Pod", "v1", Some(ns), &name, size);
                    d.request_object = Some(body.clone());
                    d.response_object = Some(body);
                }
                self.write_event(d, None)
            }
            17 => {
                let ns = *self
                    .rng
                    .pick(&["cert-manager", "monitoring", "argocd", "default"]);
                let u = if self.rng.chance(0.5) {
                    self.admin()
                } else {
                    self.sa("cert-manager", "cert-manager")
                };
                let name = self.name_for("secrets", Some(ns));
                let verb = *self.rng.pick(&["update", "update", "create", "delete"]);
                let code = match verb {
                    "create" if self.rng.chance(0.05) => 409,
                    "create" => 201,
                    "delete" if self.rng.chance(0.4) => 404,
                    _ => 200,
                };
                let obj = ObjRef {
                    resource: "secrets",
                    group: "",
                    namespace: Some(ns),
                    name: if verb == "create" { None } else { Some(&name) },
                    subresource: None,
                };
                let d = self.draft(&u, verb, Some(obj), code);
                self.write_event(d, None)
            }
            18 => {
                let u = self.node();
                let ns = *self.rng.pick(NAMESPACES);
                let obj = ObjRef {
                    resource: "serviceaccounts",
                    group: "",
                    namespace: Some(ns),
                    name: Some("default"),
                    subresource: Some("token"),
                };
                let d = self.draft(&u, "create", Some(obj), 201);
                self.write_event(d, None)
            }
            19 => {
                let u = self.sa("kube-system", "metrics-server");
                let (res, group) = *self.rng.pick(&[
                    ("tokenreviews", "authentication.k8s.io"),
                    ("subjectaccessreviews", "authorization.k8s.io"),
                ]);
                let obj = ObjRef {
                    resource: res,
                    group,
                    namespace: None,
                    name: None,
                    subresource: None,
                };
                let mut d = self.draft(&u, "create", Some(obj), 201);
                d.level = "Request";
                self.write_event(d, None)
            }
            20 => {
                let u = if self.rng.chance(0.3) {
                    self.admin()
                } else {
                    self.human()
                };
                let ns = *self.rng.pick(&[
                    "default",
                    "checkout",
                    "monitoring",
                    "argocd",
                    "ingress-nginx",
                ]);
                let name = self.name_for("pods", Some(ns));
                let pick = self.rng.below(6);
                let (verb, res, sub, nm) = match pick {
                    0 => ("get", "pods", None, true),
                    1 => ("list", "pods", None, false),
                    2 => ("get", "pods", Some("log"), true),
                    3 => ("patch", "deployments", None, true),
                    4 => ("delete", "pods", None, true),
                    _ => ("get", "deployments", None, true),
                };
                let group = if res == "deployments" { "apps" } else { "" };
                let dep = name.split('-').next().unwrap_or("app").to_string();
                let obj = ObjRef {
                    resource: res,
                    group,
                    namespace: Some(ns),
                    name: if nm {
                        Some(if res == "deployments" { &dep } else { &name })
                    } else {
                        None
                    },
                    subresource: sub,
                };
                let mut d = self.draft(&u, verb, Some(obj), 200);
                if verb == "patch" {
                    d.level = "RequestResponse";
                    d.request_object = Some(format!(
                        "{{\"spec\":{{\"replicas\":{}}}}}",
                        1 + self.rng.below(5)
                    ));
                }
                self.write_event(d, None)
            }
            21 => {
                let ns = *self.rng.pick(CDE_NAMESPACES);
                let u = self.sa(
                    ns,
                    if ns == "cde-vault" {
                        "vault"
                    } else {
                        "payments-worker"
                    },
                );
                let res = *self.rng.pick(&["secrets", "configmaps"]);
                let name = format!(
                    "{}-{}",
                    if ns == "cde-vault" {
                        "vault"
                    } else {
                        "payments-worker"
                    },
                    if res == "secrets" {
                        "db-credentials"
                    } else {
                        "config"
                    }
                );
                let obj = ObjRef {
                    resource: res,
                    group: "",
                    namespace: Some(ns),
                    name: Some(&name),
                    subresource: None,
                };
                let d = self.draft(&u, "get", Some(obj), 200);
                self.write_event(d, None)
            }
            22 => {
                let u = self.sa("kube-system", "namespace-controller");
                let res = *self
                    .rng
                    .pick(&["configmaps", "pods", "secrets", "services"]);
                let obj = ObjRef {
                    resource: res,
                    group: "",
                    namespace: Some(*self.rng.pick(&["default", "checkout"])),
                    name: None,
                    subresource: None,
                };
                let d = self.draft(&u, "deletecollection", Some(obj), 200);
                self.write_event(d, None)
            }
            23 => {
                let u = self.node();
                let ns = *self.rng.pick(NAMESPACES);
                let obj = ObjRef {
                    resource: "configmaps",
                    group: "",
                    namespace: Some(ns),
                    name: None,
                    subresource: None,
                };
                let mut d = self.draft(&u, "watch", Some(obj), 403);
                d.reason = "no relationship found between node and this object".into();
                self.write_event(d, None)
            }
            24 => {
                let u = self.admin();
                let (res, namespaced) = *self.rng.pick(&[
                    ("roles", true),
                    ("rolebindings", true),
                    ("clusterroles", false),
                ]);
                let ns = if namespaced {
                    Some(*self.rng.pick(&["monitoring", "cert-manager", "argocd"]))
                } else {
                    None
                };
                let name = self.name_for(res, ns);
                let verb = if self.rng.chance(0.5) {
                    "create"
                } else {
                    "update"
                };
                let obj = ObjRef {
                    resource: res,
                    group: "rbac.authorization.k8s.io",
                    namespace: ns,
                    name: if verb == "update" { Some(&name) } else { None },
                    subresource: None,
                };
                let mut d = self.draft(
                    &u,
                    verb,
                    Some(obj),
                    if verb == "create" { 201 } else { 200 },
                );
                d.level = "RequestResponse";
                let kind = match res {
                    "roles" => "Role",
                    "rolebindings" => "RoleBinding",
                    _ => "ClusterRole",
                };
                let body = if kind == "RoleBinding" {
                    format!("{{\"kind\":\"RoleBinding\",\"apiVersion\":\"rbac.authorization.k8s.io/v1\",\"metadata\":{{\"name\":\"{name}\"}},\"roleRef\":{{\"apiGroup\":\"rbac.authorization.k8s.io\",\"kind\":\"Role\",\"name\":\"{name}\"}},\"subjects\":[{{\"kind\":\"ServiceAccount\",\"name\":\"{name}\",\"namespace\":\"{}\"}}]}}", ns.unwrap_or("default"))
                } else {
                    format!("{{\"kind\":\"{kind}\",\"apiVersion\":\"rbac.authorization.k8s.io/v1\",\"metadata\":{{\"name\":\"{name}\"}},\"rules\":[{{\"apiGroups\":[\"\"],\"resources\":[\"configmaps\",\"secrets\"],\"verbs\":[\"get\",\"list\",\"watch\"]}}]}}")
                };
                d.request_object = Some(body.clone());
                d.response_object = Some(body);
                self.write_event(d, None)
            }
            25 => {
                let u = self.sa("monitoring", "prometheus-operator");
                let name = self.name_for("customresourcedefinitions", None);
                let obj = ObjRef {
                    resource: "customresourcedefinitions",
                    group: "apiextensions.k8s.io",
                    namespace: None,
                    name: Some(&name),
                    subresource: None,
                };
                let mut d = self.draft(&u, "update", Some(obj), 200);
                d.level = "RequestResponse";
                let size = self.rng.long_tail(8000.0, 0.9, 50_000);
                let body = self.object_body(
                    "CustomResourceDefinition",
                    "apiextensions.k8s.io/v1",
                    None,
                    &name,
                    size,
                );
                d.request_object = Some(body);
                self.write_event(d, None)
            }
            _ => {
                let u = if self.rng.chance(0.5) {
                    self.admin()
                } else {
                    self.sa("argocd", "argocd-application-controller")
                };
                let ns = *self
                    .rng
                    .pick(&["checkout", "monitoring", "ingress-nginx", "default"]);
                let name = self.name_for("deployments", Some(ns));
                let obj = ObjRef {
                    resource: "deployments",
                    group: "apps",
                    namespace: Some(ns),
                    name: Some(&name),
                    subresource: None,
                };
                let verb = *self.rng.pick(&["update", "patch"]);
                let mut d = self.draft(&u, verb, Some(obj), 200);
                d.level = "RequestResponse";
                let size = self.rng.long_tail(3000.0, 1.0, 50_000);
                let body = self.object_body("Deployment", "apps/v1", Some(ns), &name, size);
                d.request_object = Some(body.clone());
                d.response_object = Some(body);
                self.write_event(d, None)
            }
        }
    }

    fn pod_spec(&mut self, image: &str, extra_container: &str, extra_spec: &str) -> String {
        format!("{{\"containers\":[{{\"name\":\"main\",\"image\":\"{image}\"{extra_container}}}]{extra_spec}}}")
    }

    /// Queue the events of one attack scenario.
    fn attack(&mut self) {
        let scenario = *self.rng.pick(SCENARIOS);
        self.scenarios += 1;
        let attacker = if self.rng.chance(0.5) {
            self.human()
        } else {
            self.sa("checkout", "checkout-api")
        };
        let mut out: Vec<GenEvent> = Vec::new();
        let cde = *self.rng.pick(CDE_NAMESPACES);
        match scenario {
            "exec_into_pod" | "attach_pod" | "portforward" => {
                let pod = self.name_for("pods", Some(cde));
                let sub = match scenario {
                    "exec_into_pod" => "exec",
                    "attach_pod" => "attach",
                    _ => "portforward",
                };
                let obj = ObjRef {
                    resource: "pods",
                    group: "",
                    namespace: Some(cde),
                    name: Some(&pod),
                    subresource: Some(sub),
                };
                let verb = if sub == "portforward" {
                    "create"
                } else {
                    *self.rng.pick(&["create", "get"])
                };
                let mut d = self.draft(&attacker, verb, Some(obj), 101);
                d.stage = "ResponseStarted";
                d.level = "Request";
                d.uri.push_str(match sub {
                    "exec" => "?command=%2Fbin%2Fsh&command=-c&command=cat+%2Fvar%2Frun%2Fsecrets%2Fdb&container=main&stdin=true&stdout=true&tty=true",
                    "attach" => "?container=main&stdin=true&stdout=true&tty=true",
                    _ => "?ports=5432",
                });
                out.push(self.write_event(d, Some(scenario)));
            }
            "cluster_admin_binding" => {
                let binding = format!("tmp-admin-{}", self.rng.suffix(5));
                let obj = ObjRef {
                    resource: "clusterrolebindings",
                    group: "rbac.authorization.k8s.io",
                    namespace: None,
                    name: None,
                    subresource: None,
                };
                let mut d = self.draft(&attacker, "create", Some(obj), 201);
                d.level = "RequestResponse";
                let body = format!("{{\"kind\":\"ClusterRoleBinding\",\"apiVersion\":\"rbac.authorization.k8s.io/v1\",\"metadata\":{{\"name\":\"{binding}\"}},\"roleRef\":{{\"apiGroup\":\"rbac.authorization.k8s.io\",\"kind\":\"ClusterRole\",\"name\":\"cluster-admin\"}},\"subjects\":[{{\"kind\":\"ServiceAccount\",\"name\":\"checkout-api\",\"namespace\":\"checkout\"}}]}}");
                d.request_object = Some(body.clone());
                d.response_object = Some(body);
                out.push(self.write_event(d, Some(scenario)));
            }
            "privileged_pod" | "hostpath_pod" | "hostnetwork_pod" | "crypto_miner_pod" => {
                let ns = *self.rng.pick(&["default", "checkout", cde]);
                let name = format!("debug-{}", self.rng.suffix(5));
                let spec = match scenario {
                    "privileged_pod" => self.pod_spec("ubuntu:22.04", ",\"securityContext\":{\"privileged\":true,\"capabilities\":{\"add\":[\"SYS_ADMIN\",\"NET_ADMIN\"]}}", ""),
                    "hostpath_pod" => self.pod_spec("alpine:3.19", ",\"volumeMounts\":[{\"name\":\"host\",\"mountPath\":\"/host\"}]", ",\"volumes\":[{\"name\":\"host\",\"hostPath\":{\"path\":\"/\",\"type\":\"Directory\"}}]"),
                    "hostnetwork_pod" => self.pod_spec("nicolaka/netshoot:latest", "", ",\"hostNetwork\":true,\"hostPID\":true,\"hostIPC\":true"),
                    _ => self.pod_spec("xmrig/xmrig:6.21.0", ",\"args\":[\"-o\",\"stratum+tcp://pool.minexmr.com:4444\"]", ""),
                };
                let body = format!("{{\"kind\":\"Pod\",\"apiVersion\":\"v1\",\"metadata\":{{\"name\":\"{name}\",\"namespace\":\"{ns}\"}},\"spec\":{spec}}}");
                let obj = ObjRef {
                    resource: "pods",
                    group: "",
                    namespace: Some(ns),
                    name: None,
                    subresource: None,
                };
                let mut d = self.draft(&attacker, "create", Some(obj), 201);
                d.level = "RequestResponse";
                d.request_object = Some(body.clone());
                d.response_object = Some(body);
                out.push(self.write_event(d, Some(scenario)));
            }
            "secrets_enumeration" => {
                let obj = ObjRef {
                    resource: "secrets",
                    group: "",
                    namespace: None,
                    name: None,
                    subresource: None,
                };
                let d = self.draft(&attacker, "list", Some(obj), 200);
                out.push(self.write_event(d, Some(scenario)));
                for _ in 0..(3 + self.rng.below(5)) {
                    let ns = *self.rng.pick(NAMESPACES);
                    let name = self.name_for("secrets", Some(ns));
                    let obj = ObjRef {
                        resource: "secrets",
                        group: "",
                        namespace: Some(ns),
                        name: Some(&name),
                        subresource: None,
                    };
                    let d = self.draft(&attacker, "get", Some(obj), 200);
                    out.push(self.write_event(d, Some(scenario)));
                }
            }
            "cde_secret_read" => {
                let name = format!(
                    "{}-db-credentials",
                    if cde == "cde-vault" {
                        "vault"
                    } else {
                        "payments-worker"
                    }
                );
                let obj = ObjRef {
                    resource: "secrets",
                    group: "",
                    namespace: Some(cde),
                    name: Some(&name),
                    subresource: None,
                };
                let d = self.draft(&attacker, "get", Some(obj), 200);
                out.push(self.write_event(d, Some(scenario)));
            }
            "anonymous_access" => {
                let ip = format!("203.0.113.{}", 1 + self.rng.below(250));
                let mut anon = self.anonymous(ip);
                anon.agent = "curl/8.4.0".into();
                let allowed = self.rng.chance(0.5);
                let obj = ObjRef {
                    resource: "secrets",
                    group: "",
                    namespace: Some("kube-system"),
                    name: None,
                    subresource: None,
                };
                let mut d = self.draft(
                    &anon,
                    if allowed { "get" } else { "list" },
                    if allowed { None } else { Some(obj) },
                    if allowed { 200 } else { 403 },
                );
                if allowed {
                    d.uri = "/api/v1/namespaces/kube-system/configmaps/cluster-info".into();
                    d.reason = "RBAC: allowed by ClusterRoleBinding \"system:public-info-viewer\" of ClusterRole \"system:public-info-viewer\" to Group \"system:unauthenticated\"".into();
                }
                out.push(self.write_event(d, Some(scenario)));
            }
            "forbidden_burst" => {
                let n = 20 + self.rng.below(20);
                let saved = self.gap;
                self.gap = 0.4 * NANOS_PER_SEC as f64;
                for _ in 0..n {
                    let ns = *self.rng.pick(NAMESPACES);
                    let res = *self.rng.pick(&["secrets", "pods", "configmaps", "roles"]);
                    let obj = ObjRef {
                        resource: res,
                        group: if res == "roles" {
                            "rbac.authorization.k8s.io"
                        } else {
                            ""
                        },
                        namespace: Some(ns),
                        name: None,
                        subresource: None,
                    };
                    let d = self.draft(&attacker, "list", Some(obj), 403);
                    out.push(self.write_event(d, Some(scenario)));
                }
                self.gap = saved;
            }
            "events_deletion" => {
                let ns = *self.rng.pick(NAMESPACES);
                let obj = ObjRef {
                    resource: "events",
                    group: "",
                    namespace: Some(ns),
                    name: None,
                    subresource: None,
                };
                let d = self.draft(&attacker, "deletecollection", Some(obj), 200);
                out.push(self.write_event(d, Some(scenario)));
            }
            "nodeport_service" => {
                let ns = "checkout";
                let obj = ObjRef {
                    resource: "services",
                    group: "",
                    namespace: Some(ns),
                    name: None,
                    subresource: None,
                };
                let mut d = self.draft(&attacker, "create", Some(obj), 201);
                d.level = "RequestResponse";
                let body = format!("{{\"kind\":\"Service\",\"apiVersion\":\"v1\",\"metadata\":{{\"name\":\"debug-{}\",\"namespace\":\"{ns}\"}},\"spec\":{{\"type\":\"NodePort\",\"ports\":[{{\"port\":443,\"nodePort\":30443}}],\"selector\":{{\"app\":\"checkout-api\"}}}}}}", self.rng.suffix(4));
                d.request_object = Some(body.clone());
                d.response_object = Some(body);
                out.push(self.write_event(d, Some(scenario)));
            }
            "csr_created" => {
                let obj = ObjRef {
                    resource: "certificatesigningrequests",
                    group: "certificates.k8s.io",
                    namespace: None,
                    name: None,
                    subresource: None,
                };
                let mut d = self.draft(&attacker, "create", Some(obj), 201);
                d.level = "RequestResponse";
                d.request_object = Some("{\"kind\":\"CertificateSigningRequest\",\"apiVersion\":\"certificates.k8s.io/v1\",\"metadata\":{\"name\":\"backdoor\"},\"spec\":{\"signerName\":\"kubernetes.io/kube-apiserver-client\",\"usages\":[\"client auth\"],\"request\":\"LS0tLS1CRUdJTi...\"}}".into());
                out.push(self.write_event(d, Some(scenario)));
            }
            "token_request" => {
                let obj = ObjRef {
                    resource: "serviceaccounts",
                    group: "",
                    namespace: Some("kube-system"),
                    name: Some("clusterrole-aggregation-controller"),
                    subresource: Some("token"),
                };
                let d = self.draft(&attacker, "create", Some(obj), 201);
                out.push(self.write_event(d, Some(scenario)));
            }
            "impersonation" => {
                let admin = self.admin();
                let obj = ObjRef {
                    resource: "secrets",
                    group: "",
                    namespace: Some(cde),
                    name: None,
                    subresource: None,
                };
                let mut d = self.draft(&admin, "list", Some(obj), 200);
                d.impersonated = Some((
                    "system:serviceaccount:kube-system:generic-garbage-collector",
                    &["system:masters"],
                ));
                out.push(self.write_event(d, Some(scenario)));
            }
            "audit_policy_change" => {
                let target = self.rng.below(2);
                let (res, group, ns, name) = if target == 0 {
                    ("configmaps", "", "kube-system", "audit-policy")
                } else {
                    ("daemonsets", "apps", "logging", "fluent-bit")
                };
                let obj = ObjRef {
                    resource: res,
                    group,
                    namespace: Some(ns),
                    name: Some(name),
                    subresource: None,
                };
                let mut d = self.draft(
                    &attacker,
                    if target == 0 { "update" } else { "delete" },
                    Some(obj),
                    200,
                );
                d.level = "RequestResponse";
                out.push(self.write_event(d, Some(scenario)));
            }
            "ephemeral_container" => {
                let pod = self.name_for("pods", Some(cde));
                let obj = ObjRef {
                    resource: "pods",
                    group: "",
                    namespace: Some(cde),
                    name: Some(&pod),
                    subresource: Some("ephemeralcontainers"),
                };
                let mut d = self.draft(&attacker, "patch", Some(obj), 200);
                d.level = "RequestResponse";
                d.request_object = Some("{\"spec\":{\"ephemeralContainers\":[{\"name\":\"debugger-x7k2\",\"image\":\"busybox:1.36\",\"targetContainerName\":\"main\",\"stdin\":true,\"tty\":true}]}}".into());
                out.push(self.write_event(d, Some(scenario)));
            }
            _ => {
                // wildcard_clusterrole
                let obj = ObjRef {
                    resource: "clusterroles",
                    group: "rbac.authorization.k8s.io",
                    namespace: None,
                    name: None,
                    subresource: None,
                };
                let mut d = self.draft(&attacker, "create", Some(obj), 201);
                d.level = "RequestResponse";
                let body = format!("{{\"kind\":\"ClusterRole\",\"apiVersion\":\"rbac.authorization.k8s.io/v1\",\"metadata\":{{\"name\":\"ops-{}\"}},\"rules\":[{{\"apiGroups\":[\"*\"],\"resources\":[\"*\"],\"verbs\":[\"*\"]}}]}}", self.rng.suffix(4));
                d.request_object = Some(body.clone());
                d.response_object = Some(body);
                out.push(self.write_event(d, Some(scenario)));
            }
        }
        self.queue.extend(out.into_iter().map(|ev| Pending { ev }));
    }
}

/// A UID that is the same every time an identity appears (as in a real cluster), derived from
/// its name.
fn stable_uid(name: &str) -> String {
    let mut r = Rng::new(name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    }));
    r.uuid()
}

fn image_list(bytes: usize) -> String {
    let mut s = String::with_capacity(bytes + 200);
    let mut i = 0;
    while s.len() < bytes {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!(
            "{{\"names\":[\"registry.example.com/team/app-{i}@sha256:{:064x}\"],\"sizeBytes\":{}}}",
            i * 7919,
            10_000_000 + i * 12345
        ));
        i += 1;
    }
    s
}

/// RFC 3339 with exactly six fraction digits, as the API server writes `MicroTime`.
fn micro(t: Timestamp) -> String {
    let base = Timestamp::from_secs_nanos(t.secs(), 0).to_rfc3339();
    format!(
        "{}.{:06}Z",
        base.trim_end_matches('Z'),
        t.subsec_nanos() / 1000
    )
}

/// Azure's 7-digit envelope time.
fn azure_time(t: Timestamp) -> String {
    let base = Timestamp::from_secs_nanos(t.secs(), 0).to_rfc3339();
    format!(
        "{}.{:07}Z",
        base.trim_end_matches('Z'),
        t.subsec_nanos() / 100
    )
}

impl Iterator for Generator {
    type Item = GenEvent;

    fn next(&mut self) -> Option<GenEvent> {
        if self.produced >= self.opts.events {
            return None;
        }
        if self.queue.is_empty() && self.rng.chance(self.opts.attack_rate) {
            self.attack();
        }
        let ev = match self.queue.pop_front() {
            Some(p) => p.ev,
            None => self.background(),
        };
        self.produced += 1;
        Some(ev)
    }
}

/// Write an AKS diagnostic record wrapping one event.
fn aks_record(
    out: &mut String,
    g: &GenEvent,
    pod: &str,
    resource_id: &str,
    ccp: &str,
    underlay: &str,
) {
    let mut o = Obj::new(out);
    o.str(
        "operationName",
        "Microsoft.ContainerService/managedClusters/diagnosticLogs/Read",
    )
    .str("category", "kube-audit")
    .str("ccpNamespace", ccp)
    .str("resourceId", resource_id);
    o.obj("properties", |p| {
        let mut log = g.json.clone();
        log.push('\n');
        p.str("log", &log).str("stream", "stdout").str("pod", pod);
    });
    o.str("time", &azure_time(Timestamp(g.time.0 + 150_000)))
        .str("Cloud", "AzureCloud")
        .str("Environment", "prod")
        .str("UnderlayClass", "hcp-underlay")
        .str("UnderlayName", underlay);
    o.close();
}

/// Generate into `out`; attack labels (`{"audit_id":…,"scenario":…}` lines) go to `labels`.
pub fn generate(
    opts: &Options,
    out: &mut dyn Write,
    mut labels: Option<&mut dyn Write>,
) -> io::Result<Stats> {
    let mut g = Generator::new(opts.clone());
    let mut stats = Stats::default();
    let mut rng = Rng::new(opts.seed ^ 0x5eed_a55a);
    let sub = format!(
        "{:08x}-0000-4000-8000-{:012x}",
        rng.next_u64() >> 32,
        rng.next_u64() & 0xffff_ffff_ffff
    );
    let resource_id = format!("/SUBSCRIPTIONS/{}/RESOURCEGROUPS/PCI-PROD-RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/PCI-AKS-01", sub.to_uppercase());
    let ccp = format!("{:024x}", rng.next_u64() as u128 * 0x1_0000_0001);
    let underlay = format!("hcp-underlay-eastus-cx-{}", rng.below(200));
    let pods = g.apiserver_pods.clone();
    let mut line = String::with_capacity(64 * 1024);
    let mut batch: Vec<GenEvent> = Vec::with_capacity(opts.batch);
    let flush_batch = |batch: &mut Vec<GenEvent>,
                       line: &mut String,
                       out: &mut dyn Write,
                       stats: &mut Stats,
                       rng: &mut Rng|
     -> io::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        line.clear();
        match opts.profile {
            Profile::Kubeadm => {
                line.push_str("{\"kind\":\"EventList\",\"apiVersion\":\"audit.k8s.io/v1\",\"metadata\":{},\"items\":[");
                for (i, e) in batch.iter().enumerate() {
                    if i > 0 {
                        line.push(',');
                    }
                    line.push_str(&e.json);
                }
                line.push_str("]}");
            }
            Profile::Aks => {
                line.push_str("{\"records\":[");
                for (i, e) in batch.iter().enumerate() {
                    if i > 0 {
                        line.push(',');
                    }
                    let pod = rng.pick(&pods).clone();
                    aks_record(line, e, &pod, &resource_id, &ccp, &underlay);
                }
                line.push_str("]}");
            }
        }
        line.push('\n');
        out.write_all(line.as_bytes())?;
        stats.bytes += line.len() as u64;
        batch.clear();
        Ok(())
    };
    for ev in g.by_ref() {
        stats.events += 1;
        if let Some(s) = ev.scenario {
            stats.attack_events += 1;
            if let Some(l) = labels.as_deref_mut() {
                writeln!(
                    l,
                    "{{\"audit_id\":\"{}\",\"scenario\":\"{s}\"}}",
                    ev.audit_id
                )?;
            }
        }
        match opts.format {
            OutputFormat::Jsonl => {
                line.clear();
                match opts.profile {
                    Profile::Kubeadm => line.push_str(&ev.json),
                    Profile::Aks => {
                        let pod = rng.pick(&pods).clone();
                        aks_record(&mut line, &ev, &pod, &resource_id, &ccp, &underlay);
                    }
                }
                line.push('\n');
                out.write_all(line.as_bytes())?;
                stats.bytes += line.len() as u64;
            }
            OutputFormat::EventList => {
                batch.push(ev);
                if batch.len() >= opts.batch.max(1) {
                    flush_batch(&mut batch, &mut line, out, &mut stats, &mut rng)?;
                }
            }
        }
    }
    flush_batch(&mut batch, &mut line, out, &mut stats, &mut rng)?;
    stats.scenarios = g.scenarios;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(opts: &Options) -> (Vec<u8>, Vec<u8>, Stats) {
        let mut out = Vec::new();
        let mut labels = Vec::new();
        let stats = generate(opts, &mut out, Some(&mut labels)).unwrap();
        (out, labels, stats)
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let opts = Options {
            events: 500,
            ..Default::default()
        };
        assert_eq!(run(&opts).0, run(&opts).0);
        let other = Options {
            seed: 2,
            ..opts.clone()
        };
        assert_ne!(run(&opts).0, run(&other).0);
    }

    #[test]
    fn every_line_is_a_valid_event_in_time_order() {
        let opts = Options {
            events: 3000,
            attack_rate: 0.01,
            ..Default::default()
        };
        let (out, labels, stats) = run(&opts);
        assert_eq!(stats.events, 3000);
        let mut last = String::new();
        let mut n = 0;
        for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let v: serde_json::Value = serde_json::from_slice(line).unwrap();
            assert_eq!(v["kind"], "Event");
            let t = v["stageTimestamp"].as_str().unwrap().to_string();
            assert!(t >= last, "{t} < {last}");
            last = t;
            n += 1;
        }
        assert_eq!(n, 3000);
        assert!(stats.attack_events > 0);
        assert_eq!(
            labels
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .count() as u64,
            stats.attack_events
        );
    }

    #[test]
    fn verb_mix_is_realistic() {
        let opts = Options {
            events: 20_000,
            attack_rate: 0.0,
            ..Default::default()
        };
        let (out, _, _) = run(&opts);
        let mut counts = std::collections::HashMap::new();
        for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let v: serde_json::Value = serde_json::from_slice(line).unwrap();
            *counts
                .entry(v["verb"].as_str().unwrap().to_string())
                .or_insert(0u32) += 1;
        }
        let share = |v: &str| *counts.get(v).unwrap_or(&0) as f64 / 20_000.0;
        assert!(
            share("get") > 0.5 && share("get") < 0.8,
            "get {}",
            share("get")
        );
        assert!(
            share("update") > 0.05 && share("update") < 0.2,
            "update {}",
            share("update")
        );
        assert!(share("watch") > 0.01 && share("list") > 0.02 && share("delete") > 0.005);
    }

    #[test]
    fn aks_eventlist_batches() {
        let opts = Options {
            events: 1000,
            profile: Profile::Aks,
            format: OutputFormat::EventList,
            batch: 400,
            ..Default::default()
        };
        let (out, _, _) = run(&opts);
        let lines: Vec<&[u8]> = out
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(lines.len(), 3);
        let v: serde_json::Value = serde_json::from_slice(lines[0]).unwrap();
        let recs = v["records"].as_array().unwrap();
        assert_eq!(recs.len(), 400);
        let inner: serde_json::Value =
            serde_json::from_str(recs[0]["properties"]["log"].as_str().unwrap()).unwrap();
        assert_eq!(inner["kind"], "Event");
    }

    #[test]
    fn sizes_have_a_long_tail() {
        let opts = Options {
            events: 20_000,
            attack_rate: 0.0,
            ..Default::default()
        };
        let (out, _, stats) = run(&opts);
        let lens: Vec<usize> = out
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| l.len())
            .collect();
        let max = *lens.iter().max().unwrap();
        let avg = stats.bytes as f64 / lens.len() as f64;
        assert!(avg > 700.0 && avg < 2500.0, "avg {avg}");
        assert!(max > 15_000, "max {max}");
        // request and response objects are each capped at 50 KB
        assert!(max < 110_000, "max {max}");
    }
}
