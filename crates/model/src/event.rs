//! The normalized event: what every parser produces from one audit record.
//!
//! Every field is optional and `None` means *the source did not carry it* ("absent"), while
//! `Some(String::new())` means the source carried it with an empty value ("empty"). The JSON form
//! omits absent fields and keeps empty ones as `""`, so the two stay distinguishable everywhere
//! (PCI DSS 10.2.2 completeness reports depend on it).

use crate::pci::PciCategories;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The input formats trailwarden understands. The names are the CLI's `--format` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// Kubernetes `audit.k8s.io` Event (v1, v1beta1; single, EventList, array, JSONL).
    K8sAudit,
    /// AKS diagnostic records (`{"records":[…]}`, JSONL of records, AzureDiagnostics and
    /// AKSAudit table rows).
    Aks,
    /// GKE Kubernetes audit logs: Cloud Logging entries with a Cloud Audit Log `protoPayload`
    /// of service `k8s.io` (JSON lines, arrays, Pub/Sub push bodies).
    Gke,
    /// Azure Activity Log records (diagnostic-setting export or AzureActivity table rows).
    AzureActivity,
    /// Microsoft Entra ID sign-in log records (diagnostic-setting export or SigninLogs rows).
    Signin,
    /// Microsoft Entra ID directory audit records (diagnostic-setting export, AuditLogs rows,
    /// Graph directoryAudit objects).
    EntraAudit,
    /// Structured application audit events (timestamp, user_id, action, resource, result, source_ip).
    App,
    /// Linux audit daemon logs (raw, ENRICHED, interpreted; multi-record events).
    Auditd,
    /// Docker json-file container logs.
    Docker,
    /// CRI (containerd / CRI-O) text container logs, with partial-line reassembly.
    Cri,
    /// Syslog: RFC 5424, RFC 3164, and Log Analytics `Syslog` table rows.
    Syslog,
}

impl Format {
    /// Every format, in CLI order.
    pub const ALL: [Format; 11] = [
        Format::K8sAudit,
        Format::Aks,
        Format::Gke,
        Format::AzureActivity,
        Format::Signin,
        Format::EntraAudit,
        Format::App,
        Format::Auditd,
        Format::Docker,
        Format::Cri,
        Format::Syslog,
    ];

    /// The CLI / JSON name of the format.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::K8sAudit => "k8s-audit",
            Format::Aks => "aks",
            Format::Gke => "gke",
            Format::AzureActivity => "azure-activity",
            Format::Signin => "signin",
            Format::EntraAudit => "entra-audit",
            Format::App => "app",
            Format::Auditd => "auditd",
            Format::Docker => "docker",
            Format::Cri => "cri",
            Format::Syslog => "syslog",
        }
    }

    /// Look a format up by its CLI name.
    pub fn from_name(s: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.as_str() == s)
    }

    /// Whether events of this format are Kubernetes audit events (directly or wrapped).
    pub fn is_kubernetes_audit(self) -> bool {
        matches!(self, Format::K8sAudit | Format::Aks | Format::Gke)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether the action succeeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutcomeResult {
    /// The action was carried out.
    Success,
    /// The action was refused or failed.
    Failure,
    /// The source does not say (e.g. a `ResponseStarted` watch, a container log line).
    #[default]
    Unknown,
}

impl OutcomeResult {
    /// The JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeResult::Success => "success",
            OutcomeResult::Failure => "failure",
            OutcomeResult::Unknown => "unknown",
        }
    }
}

/// An identity: a Kubernetes `UserInfo`, a Linux account, an Entra principal, an app user.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Identity {
    /// User name (`user.username`, `auid` name, UPN, `user_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Stable identifier (`user.uid`, numeric uid, object id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Group memberships.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
}

impl Identity {
    /// True when no field is present.
    pub fn is_absent(&self) -> bool {
        self.name.is_none() && self.uid.is_none() && self.groups.is_none()
    }
}

/// Who acted.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct User {
    /// The authenticated identity.
    #[serde(flatten)]
    pub identity: Identity,
    /// The identity the request impersonated (`impersonatedUser`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impersonated: Option<Identity>,
}

impl User {
    /// True when neither the identity nor an impersonated identity is present.
    pub fn is_absent(&self) -> bool {
        self.identity.is_absent() && self.impersonated.is_none()
    }
}

/// How the action ended.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Outcome {
    /// Success, failure or unknown.
    pub result: OutcomeResult,
    /// Status code (HTTP status for Kubernetes, exit code for auditd, error code for sign-ins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
    /// Machine-readable reason (`Forbidden`, `AlreadyExists`, `failed`…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Where the action came from.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Origin {
    /// Every source IP, in the order the source gave them (`sourceIPs`: X-Forwarded-For, X-Real-Ip,
    /// then the remote address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ips: Option<Vec<String>>,
    /// The one address the receiving server saw itself. For Kubernetes that is the *last*
    /// `sourceIPs` entry: "all but the last IP can be arbitrarily set by the client".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_ip: Option<String>,
    /// Client-declared user agent (never trusted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The host that produced the record (auditd `node`, syslog hostname, Computer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

impl Origin {
    /// True when nothing about the origin is known.
    pub fn is_absent(&self) -> bool {
        self.ips.is_none()
            && self.trusted_ip.is_none()
            && self.user_agent.is_none()
            && self.host.is_none()
    }
}

/// What the action was applied to.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Resource {
    /// API group (`""` is the core group and is kept as empty, not absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_group: Option<String>,
    /// API version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Resource type (`pods`, `secrets`, `file`, an Azure resource type…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// Subresource (`exec`, `log`, `status`…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subresource: Option<String>,
    /// Namespace (Kubernetes) or resource group (Azure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Object name, file path, or resource id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Resource {
    /// True when nothing about the resource is known.
    pub fn is_absent(&self) -> bool {
        self.api_group.is_none()
            && self.api_version.is_none()
            && self.resource.is_none()
            && self.subresource.is_none()
            && self.namespace.is_none()
            && self.name.is_none()
    }
}

/// The authorizer's decision as the source recorded it.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Authz {
    /// `allow`, `forbid`, `deny`…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    /// The authorizer's reason text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Authz {
    fn is_absent(&self) -> bool {
        self.decision.is_none() && self.reason.is_none()
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn user_absent(u: &User) -> bool {
    u.is_absent()
}
fn origin_absent(o: &Origin) -> bool {
    o.is_absent()
}
fn resource_absent(r: &Resource) -> bool {
    r.is_absent()
}
fn authz_absent(a: &Authz) -> bool {
    a.is_absent()
}

/// One normalized audit event. Built by a parser from one record's raw bytes; the raw bytes
/// themselves live in the [`crate::Record`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The format that produced this event.
    pub format: Format,
    /// The source's own category: the AKS / Azure diagnostic category (`kube-audit`,
    /// `kube-controller-manager`, `Administrative`, `SignInLogs`), the auditd record type of the
    /// event's main record (`SYSCALL`, `USER_LOGIN`), the container stream (`stdout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// When the event happened, by the source's clock (for Kubernetes: `stageTimestamp`, else
    /// `requestReceivedTimestamp`, else the legacy `timestamp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Timestamp>,
    /// Who acted.
    #[serde(default, skip_serializing_if = "user_absent")]
    pub user: User,
    /// What was done: the Kubernetes verb, the Azure operation, the auditd syscall or record type,
    /// the application action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// How it ended.
    #[serde(default)]
    pub outcome: Outcome,
    /// Where it came from.
    #[serde(default, skip_serializing_if = "origin_absent")]
    pub origin: Origin,
    /// What it was done to.
    #[serde(default, skip_serializing_if = "resource_absent")]
    pub resource: Resource,
    /// Request URI (Kubernetes `requestURI`, Azure HTTP request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_uri: Option<String>,
    /// Source-assigned event id (Kubernetes `auditID`, auditd `serial`, Azure `correlationId`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_id: Option<String>,
    /// Kubernetes audit stage (`RequestReceived`, `ResponseStarted`, `ResponseComplete`, `Panic`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// Audit level (`Metadata`, `Request`, `RequestResponse`) or syslog / Azure severity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// Authorization decision and reason.
    #[serde(default, skip_serializing_if = "authz_absent")]
    pub authz: Authz,
    /// The PCI DSS 10.2.1.x categories this event evidences.
    #[serde(default, skip_serializing_if = "PciCategories::is_empty")]
    pub pci: PciCategories,
    /// Free text of log-line formats (container log line, syslog message, klog line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The inner document when the raw record is an envelope (AKS `properties.log`, AzureDiagnostics
    /// `log_s`, Log Analytics `SyslogMessage`): exactly the decoded string. For GKE entries, the
    /// entry rewritten as an audit.k8s.io Event (what rules read; derived, the raw is the entry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// The source truncated this event (AKS cuts `properties.log` at 16 KiB); fields were
    /// extracted from what survived.
    #[serde(default, skip_serializing_if = "is_false")]
    pub truncated: bool,
    /// Format-specific attributes with stable names (e.g. `resource_id`, `pod`, `exe`, `key`,
    /// `facility`), sorted by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attrs: BTreeMap<String, String>,
    /// The values of the `requestObject` fields the detection rules read, pulled out by the
    /// parser while it read the event (`None`: not asked for, or left to the detection engine).
    /// Derived from the raw bytes, never stored.
    #[serde(skip)]
    pub pulled: Option<Pulled>,
}

/// Values a parser pulled out of a Kubernetes event's `requestObject` in the pass that read the
/// event, for one set of wanted field paths (the detection engine's), so detection does not go
/// through the object's JSON again.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Pulled {
    /// The path set the values answer (a hash of its paths in slot order; slots are its slots).
    pub paths: u64,
    /// (slot, value) in document order; a wanted path with no value here is absent.
    pub values: Vec<(u32, PulledValue)>,
}

/// One pulled value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PulledValue {
    /// JSON null.
    Null,
    /// A boolean.
    Bool(bool),
    /// A number: its value (`f64::to_bits`) and its text.
    Num {
        /// The value's bits.
        bits: u64,
        /// The number as text.
        text: String,
    },
    /// A string.
    Str(String),
    /// An object or array.
    Composite,
}

impl Event {
    /// An empty event of a format: every field absent, outcome unknown.
    pub fn new(format: Format) -> Event {
        Event {
            format,
            category: None,
            time: None,
            user: User::default(),
            action: None,
            outcome: Outcome::default(),
            origin: Origin::default(),
            resource: Resource::default(),
            request_uri: None,
            audit_id: None,
            stage: None,
            level: None,
            authz: Authz::default(),
            pci: PciCategories::default(),
            message: None,
            payload: None,
            truncated: false,
            attrs: BTreeMap::new(),
            pulled: None,
        }
    }

    /// Set an attribute when the value is present.
    pub fn attr(&mut self, key: &str, value: Option<impl Into<String>>) {
        if let Some(v) = value {
            self.attrs.insert(key.to_string(), v.into());
        }
    }

    /// The PCI DSS 10.2.2 fields of this event and whether each is present, empty or absent.
    pub fn completeness(&self) -> Completeness {
        fn s(v: &Option<String>) -> FieldState {
            match v {
                None => FieldState::Absent,
                Some(x) if x.is_empty() => FieldState::Empty,
                Some(_) => FieldState::Present,
            }
        }
        fn best(states: &[FieldState]) -> FieldState {
            if states.contains(&FieldState::Present) {
                FieldState::Present
            } else if states.contains(&FieldState::Empty) {
                FieldState::Empty
            } else {
                FieldState::Absent
            }
        }
        let groups = match &self.user.identity.groups {
            None => FieldState::Absent,
            Some(g) if g.is_empty() => FieldState::Empty,
            Some(_) => FieldState::Present,
        };
        let user = best(&[
            s(&self.user.identity.name),
            s(&self.user.identity.uid),
            groups,
        ]);
        let ips = match &self.origin.ips {
            None => FieldState::Absent,
            Some(v) if v.is_empty() => FieldState::Empty,
            Some(_) => FieldState::Present,
        };
        let origin = best(&[ips, s(&self.origin.trusted_ip), s(&self.origin.host)]);
        let resource = best(&[
            s(&self.resource.resource),
            s(&self.resource.name),
            s(&self.request_uri),
        ]);
        let outcome =
            if self.outcome.result != OutcomeResult::Unknown || self.outcome.code.is_some() {
                FieldState::Present
            } else {
                FieldState::Absent
            };
        Completeness {
            user,
            event_type: s(&self.action),
            time: if self.time.is_some() {
                FieldState::Present
            } else {
                FieldState::Absent
            },
            outcome,
            origin,
            resource,
        }
    }
}

/// Whether a field was present with a value, present but empty, or absent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldState {
    /// Present with a non-empty value.
    Present,
    /// Present but empty.
    Empty,
    /// Not carried by the source.
    Absent,
}

/// The six PCI DSS 10.2.2 fields of one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completeness {
    /// User identification.
    pub user: FieldState,
    /// Type of event.
    pub event_type: FieldState,
    /// Date and time.
    pub time: FieldState,
    /// Success or failure indication.
    pub outcome: FieldState,
    /// Origination of event.
    pub origin: FieldState,
    /// Identity or name of affected data, system component, resource, or service.
    pub resource: FieldState,
}

impl Completeness {
    /// The field names and states in 10.2.2 order.
    pub fn fields(&self) -> [(&'static str, FieldState); 6] {
        [
            ("user", self.user),
            ("event_type", self.event_type),
            ("time", self.time),
            ("outcome", self.outcome),
            ("origin", self.origin),
            ("resource", self.resource),
        ]
    }
}
