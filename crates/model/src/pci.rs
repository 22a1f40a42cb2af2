//! PCI DSS 4.0.1 requirement 10.2.1.x categories and the classifier that assigns them.
//!
//! | category | obligation | evidence recognised (see [`Classifier::classify`]) |
//! |---|---|---|
//! | 10.2.1.1 | individual user access to cardholder data | any Kubernetes request on an object in a CDE namespace; an application event on a CDE resource |
//! | 10.2.1.2 | actions by anyone with administrative access | identity in an admin group (`system:masters`…) or a configured admin identity; `root` / auid 0 on nodes; Azure `Administrative` operations |
//! | 10.2.1.3 | access to audit logs | reads of `pods/log`, of objects in the audit-trail namespaces, of log files on nodes, Log Analytics queries, diagnostic-setting reads |
//! | 10.2.1.4 | invalid logical access attempts | 401 / 403, `forbid` / `deny` decisions, failed logins and sign-ins, denied application actions |
//! | 10.2.1.5 | changes to identification / authentication credentials and privileges | RBAC roles and bindings, service accounts and their tokens, CSRs, certificates, impersonation; account / password / group changes on nodes; Azure role assignments |
//! | 10.2.1.6 | initialization, stopping or pausing of audit logs | audit policy / audit webhook / diagnostic-setting / logging-agent changes; auditd start/stop/config changes |
//! | 10.2.1.7 | creation and deletion of system-level objects | create / delete of cluster-scoped objects and of objects in system namespaces; kernel modules and software installs on nodes |

use crate::event::{Event, Format, OutcomeResult};
use serde::{Deserialize, Serialize};
use std::fmt;

/// One PCI DSS 10.2.1.x category.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum PciCategory {
    /// 10.2.1.1 — individual user access to cardholder data.
    CardholderDataAccess = 0,
    /// 10.2.1.2 — actions by any individual with administrative access.
    AdminAction = 1,
    /// 10.2.1.3 — access to all audit logs.
    AuditLogAccess = 2,
    /// 10.2.1.4 — invalid logical access attempts.
    InvalidAccess = 3,
    /// 10.2.1.5 — changes to identification and authentication credentials.
    CredentialChange = 4,
    /// 10.2.1.6 — initialization, stopping, or pausing of the audit logs.
    AuditLogLifecycle = 5,
    /// 10.2.1.7 — creation and deletion of system-level objects.
    SystemObject = 6,
}

impl PciCategory {
    /// All categories in requirement order.
    pub const ALL: [PciCategory; 7] = [
        PciCategory::CardholderDataAccess,
        PciCategory::AdminAction,
        PciCategory::AuditLogAccess,
        PciCategory::InvalidAccess,
        PciCategory::CredentialChange,
        PciCategory::AuditLogLifecycle,
        PciCategory::SystemObject,
    ];

    /// The requirement number, e.g. `10.2.1.4`.
    pub fn requirement(self) -> &'static str {
        match self {
            PciCategory::CardholderDataAccess => "10.2.1.1",
            PciCategory::AdminAction => "10.2.1.2",
            PciCategory::AuditLogAccess => "10.2.1.3",
            PciCategory::InvalidAccess => "10.2.1.4",
            PciCategory::CredentialChange => "10.2.1.5",
            PciCategory::AuditLogLifecycle => "10.2.1.6",
            PciCategory::SystemObject => "10.2.1.7",
        }
    }

    /// A short description of the obligation.
    pub fn title(self) -> &'static str {
        match self {
            PciCategory::CardholderDataAccess => "user access to cardholder data",
            PciCategory::AdminAction => "actions with administrative access",
            PciCategory::AuditLogAccess => "access to audit logs",
            PciCategory::InvalidAccess => "invalid logical access attempts",
            PciCategory::CredentialChange => "changes to credentials and privileges",
            PciCategory::AuditLogLifecycle => "start, stop or pause of audit logging",
            PciCategory::SystemObject => "creation and deletion of system-level objects",
        }
    }

    /// Look up by requirement number.
    pub fn from_requirement(s: &str) -> Option<PciCategory> {
        PciCategory::ALL.into_iter().find(|c| c.requirement() == s)
    }
}

impl fmt::Display for PciCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.requirement())
    }
}

/// A set of [`PciCategory`] (a bit set; serialized as a sorted list of requirement numbers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct PciCategories(u8);

impl PciCategories {
    /// The empty set.
    pub const EMPTY: PciCategories = PciCategories(0);

    /// Add a category.
    pub fn insert(&mut self, c: PciCategory) {
        self.0 |= 1 << c as u8;
    }

    /// Whether the set holds a category.
    pub fn contains(self, c: PciCategory) -> bool {
        self.0 & (1 << c as u8) != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    /// The raw bits (bit n = 10.2.1.(n+1)).
    pub fn bits(self) -> u8 {
        self.0
    }

    /// Build from raw bits.
    pub fn from_bits(bits: u8) -> PciCategories {
        PciCategories(bits & 0x7f)
    }

    /// The members in requirement order.
    pub fn iter(self) -> impl Iterator<Item = PciCategory> {
        PciCategory::ALL
            .into_iter()
            .filter(move |c| self.contains(*c))
    }
}

impl Serialize for PciCategories {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(None)?;
        for c in self.iter() {
            seq.serialize_element(c.requirement())?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for PciCategories {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Vec::<String>::deserialize(d)?;
        let mut set = PciCategories::default();
        for s in v {
            let c = PciCategory::from_requirement(&s)
                .ok_or_else(|| serde::de::Error::custom(format!("unknown PCI category {s:?}")))?;
            set.insert(c);
        }
        Ok(set)
    }
}

/// What the classifier needs to know about this installation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClassifierConfig {
    /// Namespaces of the cardholder-data environment (glob patterns: `*` and `?`).
    pub cde_namespaces: Vec<String>,
    /// Application resources that hold cardholder data (glob patterns, case-insensitive).
    pub cde_resources: Vec<String>,
    /// Groups whose members have administrative access.
    pub admin_groups: Vec<String>,
    /// Identities with administrative access (glob patterns): the platform's break-glass and
    /// admin accounts.
    pub admin_users: Vec<String>,
    /// Namespaces that hold the audit trail itself (trailwarden, log shippers).
    pub audit_namespaces: Vec<String>,
    /// Namespaces of the platform itself; create / delete inside them is a system-level change.
    pub system_namespaces: Vec<String>,
    /// Name fragments of logging agents (DaemonSets, ConfigMaps) whose change affects audit logging.
    pub logging_agents: Vec<String>,
}

impl Default for ClassifierConfig {
    fn default() -> Self {
        let v = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        ClassifierConfig {
            cde_namespaces: v(&[
                "cde",
                "cde-*",
                "*-cde",
                "pci",
                "pci-*",
                "payments",
                "payment-*",
            ]),
            cde_resources: v(&["card*", "*cardholder*", "pan", "pan-*", "payment*", "chd*"]),
            admin_groups: v(&["system:masters", "cluster-admins", "kubeadm:cluster-admins"]),
            admin_users: v(&[
                "kubernetes-admin",
                "masterclient",
                "clusterAdmin",
                "admin",
                "root",
                "minikube-user",
            ]),
            audit_namespaces: v(&["trailwarden", "trailwarden-*", "logging", "kube-audit"]),
            system_namespaces: v(&["kube-system", "kube-public", "kube-node-lease"]),
            logging_agents: v(&[
                "fluentd",
                "fluent-bit",
                "omsagent",
                "ama-logs",
                "trailwarden",
                "auditd",
                "falco",
                "vector",
                "filebeat",
            ]),
        }
    }
}

/// A glob match with `*` (any run) and `?` (any one character), ASCII case-insensitive.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    let (mut pi, mut ti) = (0usize, 0usize);
    let (mut star, mut mark) = (usize::MAX, 0usize);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi].eq_ignore_ascii_case(&t[ti])) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = pi;
            mark = ti;
            pi += 1;
        } else if star != usize::MAX {
            pi = star + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

fn any_glob(patterns: &[String], text: &str) -> bool {
    patterns.iter().any(|p| glob_match(p, text))
}

/// Kubernetes resources whose creation or change alters who can authenticate as what.
const K8S_CREDENTIAL_RESOURCES: &[&str] = &[
    "roles",
    "clusterroles",
    "rolebindings",
    "clusterrolebindings",
    "serviceaccounts",
    "certificatesigningrequests",
];

/// Virtual review resources: "created" on every authorization check, never stored.
const K8S_REVIEW_RESOURCES: &[&str] = &[
    "tokenreviews",
    "subjectaccessreviews",
    "selfsubjectaccessreviews",
    "selfsubjectrulesreviews",
    "localsubjectaccessreviews",
    "selfsubjectreviews",
];

/// Kubernetes resources that configure audit logging itself.
const K8S_AUDIT_CONFIG_RESOURCES: &[&str] = &["auditsinks", "auditpolicies", "auditpolicy"];

const READ_VERBS: &[&str] = &["get", "list", "watch"];
const WRITE_VERBS: &[&str] = &["create", "update", "patch", "delete", "deletecollection"];

/// auditd record types that start, stop or reconfigure auditing.
const AUDITD_LIFECYCLE: &[&str] = &[
    "DAEMON_START",
    "DAEMON_END",
    "DAEMON_ABORT",
    "DAEMON_CONFIG",
    "DAEMON_RECONFIG",
    "DAEMON_ROTATE",
    "DAEMON_RESUME",
    "CONFIG_CHANGE",
];

/// auditd record types that change accounts, credentials or roles.
const AUDITD_CREDENTIAL: &[&str] = &[
    "ADD_USER",
    "DEL_USER",
    "ADD_GROUP",
    "DEL_GROUP",
    "USER_CHAUTHTOK",
    "GRP_CHAUTHTOK",
    "USER_MGMT",
    "GRP_MGMT",
    "ROLE_ASSIGN",
    "ROLE_REMOVE",
    "ROLE_MODIFY",
    "USER_ROLE_CHANGE",
    "ACCT_LOCK",
    "ACCT_UNLOCK",
];

/// auditd record types that report authentication or authorization attempts.
const AUDITD_AUTH: &[&str] = &[
    "USER_AUTH",
    "USER_LOGIN",
    "USER_ACCT",
    "USER_ERR",
    "USER_START",
    "CRED_ACQ",
    "ANOM_LOGIN_FAILURES",
    "ANOM_LOGIN_LOCATION",
    "ANOM_LOGIN_TIME",
    "ANOM_LOGIN_ACCT",
    "ANOM_LOGIN_SESSIONS",
    "LOGIN",
];

/// auditd record types for system-level object creation / deletion.
const AUDITD_SYSTEM: &[&str] = &[
    "KERN_MODULE",
    "SOFTWARE_UPDATE",
    "SYSTEM_BOOT",
    "SYSTEM_SHUTDOWN",
    "SERVICE_START",
    "SERVICE_STOP",
];

/// The PCI DSS 10.2.1.x classifier. Pure function of an [`Event`] and the configuration.
#[derive(Clone, Debug, Default)]
pub struct Classifier {
    cfg: ClassifierConfig,
}

impl Classifier {
    /// A classifier with this configuration.
    pub fn new(cfg: ClassifierConfig) -> Classifier {
        Classifier { cfg }
    }

    /// The configuration in use.
    pub fn config(&self) -> &ClassifierConfig {
        &self.cfg
    }

    /// Whether an identity has administrative access by name or group.
    pub fn is_admin(&self, name: Option<&str>, groups: Option<&[String]>) -> bool {
        name.is_some_and(|n| any_glob(&self.cfg.admin_users, n))
            || groups.is_some_and(|gs| gs.iter().any(|g| any_glob(&self.cfg.admin_groups, g)))
    }

    /// Compute the categories an event evidences.
    pub fn classify(&self, ev: &Event) -> PciCategories {
        let mut set = PciCategories::default();
        match ev.format {
            Format::K8sAudit | Format::Aks | Format::Gke => self.k8s(ev, &mut set),
            Format::Auditd => self.auditd(ev, &mut set),
            Format::AzureActivity => self.azure_activity(ev, &mut set),
            Format::Signin => {
                if ev.outcome.result == OutcomeResult::Failure {
                    set.insert(PciCategory::InvalidAccess);
                }
            }
            Format::EntraAudit => {
                // every directory change is an administrative action (10.2.1.2); changes to
                // users, credentials and roles are identification changes (10.2.1.5)
                set.insert(PciCategory::AdminAction);
                let cat = ev.category.as_deref().unwrap_or("").to_ascii_lowercase();
                let act = ev.action.as_deref().unwrap_or("").to_ascii_lowercase();
                if matches!(cat.as_str(), "usermanagement" | "rolemanagement")
                    || act.contains("password")
                    || act.contains("credential")
                    || act.contains("member to role")
                {
                    set.insert(PciCategory::CredentialChange);
                }
            }
            Format::App => self.app(ev, &mut set),
            Format::Syslog => self.syslog(ev, &mut set),
            Format::Docker | Format::Cri => {}
        }
        set
    }

    fn k8s(&self, ev: &Event, set: &mut PciCategories) {
        // Non-audit categories of an AKS stream (klog text) carry no request.
        if ev.format == Format::Aks
            && !matches!(
                ev.category.as_deref(),
                Some("kube-audit") | Some("kube-audit-admin")
            )
        {
            return;
        }
        let verb = ev.action.as_deref().unwrap_or("");
        let res = ev.resource.resource.as_deref().unwrap_or("");
        let sub = ev.resource.subresource.as_deref().unwrap_or("");
        let ns = ev.resource.namespace.as_deref();
        let name = ev.resource.name.as_deref().unwrap_or("");
        let is_write = WRITE_VERBS.contains(&verb);
        let is_read = READ_VERBS.contains(&verb);

        // 10.2.1.1: anything touching the cardholder-data environment.
        if ns.is_some_and(|n| any_glob(&self.cfg.cde_namespaces, n))
            || (res == "namespaces" && any_glob(&self.cfg.cde_namespaces, name))
        {
            set.insert(PciCategory::CardholderDataAccess);
        }

        // 10.2.1.2: administrative identities (the one authenticated, or impersonated).
        let id = &ev.user.identity;
        let imp = ev.user.impersonated.as_ref();
        if self.is_admin(id.name.as_deref(), id.groups.as_deref())
            || imp.is_some_and(|i| self.is_admin(i.name.as_deref(), i.groups.as_deref()))
            || ev
                .authz
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("ClusterRole \"cluster-admin\""))
        {
            set.insert(PciCategory::AdminAction);
        }

        // 10.2.1.3: reads of logs or of the audit trail's own namespace.
        if (res == "pods" && sub == "log")
            || (ns.is_some_and(|n| any_glob(&self.cfg.audit_namespaces, n))
                && (is_read || sub == "exec" || sub == "attach" || sub == "portforward"))
        {
            set.insert(PciCategory::AuditLogAccess);
        }

        // 10.2.1.4: refused or unauthenticated requests.
        let code = ev.outcome.code.unwrap_or(0);
        let decision = ev.authz.decision.as_deref().unwrap_or("");
        if code == 401
            || code == 403
            || decision.eq_ignore_ascii_case("forbid")
            || decision.eq_ignore_ascii_case("deny")
        {
            set.insert(PciCategory::InvalidAccess);
        }

        // 10.2.1.5: credentials and privileges.
        let credential_object = (K8S_CREDENTIAL_RESOURCES.contains(&res) && is_write)
            || (res == "serviceaccounts" && sub == "token")
            || (res == "certificatesigningrequests" && (sub == "approval" || sub == "status"))
            || (res == "secrets" && is_write && name.contains("token"))
            || (res == "users" || res == "groups" || res == "userextras" || res == "uids")
                && verb == "impersonate";
        if credential_object || imp.is_some() {
            set.insert(PciCategory::CredentialChange);
        }

        // 10.2.1.6: audit configuration and logging agents.
        let agent = |n: &str| {
            self.cfg
                .logging_agents
                .iter()
                .any(|a| n.contains(a.as_str()))
        };
        if is_write
            && (K8S_AUDIT_CONFIG_RESOURCES.contains(&res)
                || (matches!(res, "daemonsets" | "configmaps" | "deployments") && agent(name))
                || (res == "configmaps" && name.contains("audit"))
                || ns.is_some_and(|n| any_glob(&self.cfg.audit_namespaces, n))
                || (res == "namespaces" && any_glob(&self.cfg.audit_namespaces, name)))
        {
            set.insert(PciCategory::AuditLogLifecycle);
        }

        // 10.2.1.7: create / delete of cluster-scoped or system-namespace objects.
        if matches!(verb, "create" | "delete" | "deletecollection")
            && !res.is_empty()
            && !K8S_REVIEW_RESOURCES.contains(&res)
            && (ns.is_none() || ns.is_some_and(|n| any_glob(&self.cfg.system_namespaces, n)))
            && sub.is_empty()
        {
            set.insert(PciCategory::SystemObject);
        }
    }

    fn auditd(&self, ev: &Event, set: &mut PciCategories) {
        let cat = ev.category.as_deref().unwrap_or("");
        let types: Vec<&str> = ev
            .attrs
            .get("record_types")
            .map(|s| s.split(',').collect())
            .unwrap_or_else(|| vec![cat]);
        let has = |list: &[&str]| types.iter().any(|t| list.contains(t));
        let failed = ev.outcome.result == OutcomeResult::Failure;
        let exe = ev.attrs.get("exe").map(String::as_str).unwrap_or("");
        let path = ev.resource.name.as_deref().unwrap_or("");
        let key = ev.attrs.get("key").map(String::as_str).unwrap_or("");

        let auid_root = ev.attrs.get("auid").is_some_and(|a| a == "0");
        // A person (login uid set) acting as root: sudo, su, setuid programs.
        let person_as_root = !ev.attrs.contains_key("auid_unset")
            && ev.attrs.contains_key("auid")
            && (ev.attrs.get("uid").is_some_and(|a| a == "0")
                || ev.attrs.get("euid").is_some_and(|a| a == "0"));
        let admin_user = ev
            .user
            .identity
            .name
            .as_deref()
            .is_some_and(|n| any_glob(&self.cfg.admin_users, n));
        if auid_root
            || admin_user
            || has(&["USER_CMD"])
            || exe.ends_with("/sudo")
            || exe.ends_with("/su")
            || (person_as_root && has(&["SYSCALL"]))
        {
            set.insert(PciCategory::AdminAction);
        }
        if path.starts_with("/var/log/audit")
            || path.starts_with("/var/log/kube-audit")
            || path.contains("/audit.log")
        {
            set.insert(PciCategory::AuditLogAccess);
        }
        if failed && (has(AUDITD_AUTH) || types.iter().any(|t| t.starts_with("ANOM_LOGIN"))) {
            set.insert(PciCategory::InvalidAccess);
        }
        if failed && has(&["SYSCALL"]) && ev.outcome.code.is_some_and(|c| c == -13 || c == -1) {
            // EACCES / EPERM on a watched syscall
            set.insert(PciCategory::InvalidAccess);
        }
        let credential_file = path == "/etc/shadow"
            || path == "/etc/passwd"
            || path == "/etc/sudoers"
            || path.starts_with("/etc/sudoers.d")
            || path == "/etc/gshadow"
            || path == "/etc/group"
            || path.ends_with("/.ssh/authorized_keys");
        let syscall = ev.action.as_deref().unwrap_or("");
        let modifying = ev.attrs.contains_key("paths_created")
            || [
                "rename", "unlink", "chmod", "chown", "truncate", "link", "write", "setxattr",
                "creat",
            ]
            .iter()
            .any(|s| syscall.contains(s));
        if has(AUDITD_CREDENTIAL)
            || (credential_file && modifying)
            || exe.ends_with("/passwd")
            || exe.ends_with("/usermod")
            || exe.ends_with("/useradd")
            || exe.ends_with("/chpasswd")
        {
            set.insert(PciCategory::CredentialChange);
        }
        if has(AUDITD_LIFECYCLE)
            || exe.ends_with("/auditctl")
            || path.starts_with("/etc/audit")
            || key.contains("audit")
            || (has(&["SERVICE_START", "SERVICE_STOP"])
                && ev.attrs.get("unit").is_some_and(|u| {
                    u == "auditd" || u.contains("journald") || u.contains("rsyslog")
                }))
        {
            set.insert(PciCategory::AuditLogLifecycle);
        }
        if has(AUDITD_SYSTEM) || has(&["ADD_USER", "DEL_USER", "ADD_GROUP", "DEL_GROUP"]) {
            set.insert(PciCategory::SystemObject);
        }
    }

    fn azure_activity(&self, ev: &Event, set: &mut PciCategories) {
        let op = ev.action.as_deref().unwrap_or("").to_ascii_lowercase();
        let cat = ev.category.as_deref().unwrap_or("");
        if cat.eq_ignore_ascii_case("Administrative")
            || self.is_admin(
                ev.user.identity.name.as_deref(),
                ev.user.identity.groups.as_deref(),
            )
        {
            set.insert(PciCategory::AdminAction);
        }
        if op.starts_with("microsoft.operationalinsights/workspaces/query")
            || op.contains("/workspaces/search")
            || op.starts_with("microsoft.insights/diagnosticsettings/read")
            || op.contains("listkeys")
            || op.contains("sharedkeys")
        {
            set.insert(PciCategory::AuditLogAccess);
        }
        if ev.outcome.result == OutcomeResult::Failure
            && (ev.outcome.code == Some(401)
                || ev.outcome.code == Some(403)
                || ev.outcome.reason.as_deref().is_some_and(|r| {
                    let r = r.to_ascii_lowercase();
                    r.contains("forbidden")
                        || r.contains("unauthorized")
                        || r.contains("authorizationfailed")
                }))
        {
            set.insert(PciCategory::InvalidAccess);
        }
        if op.starts_with("microsoft.authorization/roleassignments/")
            || op.starts_with("microsoft.authorization/roledefinitions/")
            || op.contains("/listclusteradmincredential")
            || op.contains("/listclusterusercredential")
            || op.contains("/resetserviceprincipalprofile")
            || op.contains("/resetaadprofile")
            || op.contains("/rotateclustercertificates")
            || op == "create role assignment"
            || op == "delete role assignment"
        {
            set.insert(PciCategory::CredentialChange);
        }
        if op.starts_with("microsoft.insights/diagnosticsettings/write")
            || op.starts_with("microsoft.insights/diagnosticsettings/delete")
            || op.contains("/datacollectionrules/")
            || op.starts_with("microsoft.operationalinsights/workspaces/write")
            || op.starts_with("microsoft.operationalinsights/workspaces/delete")
            || op.contains("/workspaces/tables/write")
        {
            set.insert(PciCategory::AuditLogLifecycle);
        }
        if (op.ends_with("/write") || op.ends_with("/delete"))
            && cat.eq_ignore_ascii_case("Administrative")
        {
            set.insert(PciCategory::SystemObject);
        }
    }

    fn app(&self, ev: &Event, set: &mut PciCategories) {
        let res = ev
            .resource
            .name
            .as_deref()
            .or(ev.resource.resource.as_deref())
            .unwrap_or("");
        if !res.is_empty() && any_glob(&self.cfg.cde_resources, res) {
            set.insert(PciCategory::CardholderDataAccess);
        }
        if self.is_admin(
            ev.user.identity.name.as_deref(),
            ev.user.identity.groups.as_deref(),
        ) {
            set.insert(PciCategory::AdminAction);
        }
        let action = ev.action.as_deref().unwrap_or("").to_ascii_lowercase();
        let reason = ev
            .outcome
            .reason
            .as_deref()
            .unwrap_or("")
            .to_ascii_lowercase();
        if ev.outcome.result == OutcomeResult::Failure
            && (action.contains("login")
                || action.contains("auth")
                || action.contains("signin")
                || reason.contains("denied")
                || reason.contains("unauthori")
                || reason.contains("forbidden")
                || ev.outcome.code == Some(401)
                || ev.outcome.code == Some(403))
        {
            set.insert(PciCategory::InvalidAccess);
        }
        if action.contains("password")
            || action.contains("credential")
            || action.contains("mfa")
            || action.contains("role")
            || action.contains("permission")
            || action.contains("api_key")
            || action.contains("apikey")
            || action.contains("token")
        {
            set.insert(PciCategory::CredentialChange);
        }
        if res.contains("audit")
            && (action.contains("read") || action.contains("export") || action.contains("view"))
        {
            set.insert(PciCategory::AuditLogAccess);
        }
    }

    fn syslog(&self, ev: &Event, set: &mut PciCategories) {
        let msg = ev.message.as_deref().unwrap_or("");
        let app = ev.attrs.get("app").map(String::as_str).unwrap_or("");
        if (app == "sshd" || app == "login" || app.starts_with("su"))
            && (msg.contains("Failed password")
                || msg.contains("authentication failure")
                || msg.contains("Invalid user")
                || msg.contains("FAILED SU"))
        {
            set.insert(PciCategory::InvalidAccess);
        }
        if app == "sudo" || (app == "su" && msg.contains("session opened")) {
            set.insert(PciCategory::AdminAction);
        }
        let logging_daemon = app == "auditd" || app == "rsyslogd" || app == "systemd-journald";
        if logging_daemon
            && ["start", "stop", "exiting", "config"]
                .iter()
                .any(|w| msg.contains(w))
        {
            set.insert(PciCategory::AuditLogLifecycle);
        }
        if app == "useradd"
            || app == "userdel"
            || app == "passwd"
            || app == "usermod"
            || app == "chpasswd"
            || app == "groupadd"
        {
            set.insert(PciCategory::CredentialChange);
        }
        // auditd / AUOMS records forwarded through syslog are classified as auditd events.
        if ev.attrs.contains_key("audit_type") {
            self.auditd(ev, set);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("cde-*", "cde-payments"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a?c", "ABC"));
        assert!(!glob_match("cde-*", "cde"));
        assert!(glob_match("*-cde", "team-cde"));
        assert!(!glob_match("pan", "company"));
    }

    #[test]
    fn set_serializes_sorted() {
        let mut s = PciCategories::default();
        s.insert(PciCategory::SystemObject);
        s.insert(PciCategory::CardholderDataAccess);
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"["10.2.1.1","10.2.1.7"]"#
        );
        let back: PciCategories = serde_json::from_str(r#"["10.2.1.7","10.2.1.1"]"#).unwrap();
        assert_eq!(back, s);
    }
}
