//! `trailwarden check`: is the logging configuration what PCI DSS Requirement 10 needs?
//!
//! Four inputs are recognised by their content:
//!
//! | input | recognised by | what is checked |
//! |---|---|---|
//! | Kubernetes audit `Policy` (YAML or JSON) | `kind: Policy` | the policy is *run* against probe requests (reads of secrets, exec, RBAC changes, anonymous requests, admin users, …) with the apiserver's first-match semantics, and what each probe would be logged at is judged |
//! | kube-apiserver static-pod manifest, or its flags | `kind: Pod` running `kube-apiserver`; a text with `--audit-…` flags | policy file, destination, local retention and rotation |
//! | AKS diagnostic settings (`az monitor diagnostic-settings list`) | a list (or `{"value": […]}`) of settings with `properties.logs` | audit categories, destination, retention, table type |
//! | trailwarden's config (TOML) | `.toml`, or TOML sections | plaintext listeners, detection, alert routes, verification |
//!
//! Each [`Finding`] names the sub-requirement (PCI DSS v4.0.1 numbering), a severity, where in
//! the file, what is wrong and the fix.

use crate::ComplianceError;
use serde::Serialize;
use serde_json::Value;
use std::path::Path;
use yaml_rust2::{Yaml, YamlLoader};

/// How much a finding matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Something Requirement 10 needs is not logged or not kept.
    High,
    /// A gap an assessor will ask about.
    Medium,
    /// Hardening.
    Low,
}

impl Severity {
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
        }
    }
}

/// What a checked file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InputKind {
    /// A Kubernetes audit `Policy`.
    AuditPolicy,
    /// A kube-apiserver static-pod manifest.
    ApiserverManifest,
    /// kube-apiserver flags.
    ApiserverFlags,
    /// AKS diagnostic settings.
    AksDiagnosticSettings,
    /// trailwarden's config.
    TrailwardenConfig,
}

impl InputKind {
    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            InputKind::AuditPolicy => "audit-policy",
            InputKind::ApiserverManifest => "apiserver-manifest",
            InputKind::ApiserverFlags => "apiserver-flags",
            InputKind::AksDiagnosticSettings => "aks-diagnostic-settings",
            InputKind::TrailwardenConfig => "trailwarden-config",
        }
    }
}

/// One problem found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable id of the check (`TW-POL-01`, …).
    pub id: &'static str,
    /// The PCI DSS v4.0.1 sub-requirement it breaks.
    pub requirement: &'static str,
    /// How much it matters.
    pub severity: Severity,
    /// The file.
    pub file: String,
    /// 1-based line, where one place is to blame.
    pub line: Option<usize>,
    /// What is wrong, in one line.
    pub title: String,
    /// The evidence: which rule or setting, which requests.
    pub detail: String,
    /// How to fix it.
    pub fix: String,
}

/// The result for one file.
#[derive(Clone, Debug, Serialize)]
pub struct FileReport {
    /// The file as given.
    pub file: String,
    /// What it was recognised as.
    pub kind: InputKind,
    /// What was found, most severe first.
    pub findings: Vec<Finding>,
}

/// What the checks assume about the cluster.
#[derive(Clone, Debug)]
pub struct Options {
    /// Namespaces of the cardholder-data environment (probes of 10.2.1.1 run there).
    pub cde_namespaces: Vec<String>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            cde_namespaces: vec!["payments".into()],
        }
    }
}

/// Check one file.
pub fn check_file(path: &Path, o: &Options) -> Result<FileReport, ComplianceError> {
    let bytes = std::fs::read(path).map_err(|source| ComplianceError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let name = path.display().to_string();
    let text = String::from_utf8(bytes).map_err(|e| ComplianceError::Parse {
        file: name.clone(),
        line: 1,
        column: 1,
        message: format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
    })?;
    check_text(&name, &text, o)
}

/// Check the contents of a file named `file`.
pub fn check_text(file: &str, text: &str, o: &Options) -> Result<FileReport, ComplianceError> {
    let text = text.trim_start_matches('\u{feff}');
    let (kind, doc) = recognise(file, text)?;
    let mut findings = match kind {
        InputKind::AuditPolicy => policy::check(file, text, &doc, o)?,
        InputKind::ApiserverManifest => {
            let flags = manifest_flags(file, &doc)?;
            flags::check(file, text, &flags)
        }
        InputKind::ApiserverFlags => flags::check(file, text, &flags::parse(text)),
        InputKind::AksDiagnosticSettings => aks::check(file, text, &doc)?,
        InputKind::TrailwardenConfig => config::check(file, text, &doc),
    };
    findings.sort_by(|a, b| (a.severity, a.id, a.line).cmp(&(b.severity, b.id, b.line)));
    Ok(FileReport {
        file: file.to_string(),
        kind,
        findings,
    })
}

/// Recognise the input and parse it into one tree.
fn recognise(file: &str, text: &str) -> Result<(InputKind, Value), ComplianceError> {
    let lower = file.to_ascii_lowercase();
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or("");
    if lower.ends_with(".toml")
        || (first.starts_with('[') && first.ends_with(']') && !first.starts_with("[{"))
    {
        let v: toml::Value = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map_or((1, 1), |s| line_col(text, s.start));
            ComplianceError::Parse {
                file: file.into(),
                line,
                column,
                message: e.message().to_string(),
            }
        })?;
        let v = serde_json::to_value(v).map_err(|e| ComplianceError::Unknown {
            file: file.into(),
            why: e.to_string(),
        })?;
        return Ok((InputKind::TrailwardenConfig, v));
    }
    let doc = if first.starts_with('{') || first.starts_with('[') {
        serde_json::from_str::<Value>(text).map_err(|e| ComplianceError::Parse {
            file: file.into(),
            line: e.line().max(1),
            column: e.column().max(1),
            message: format!("invalid JSON: {e}"),
        })?
    } else {
        let docs = YamlLoader::load_from_str(text).map_err(|e| ComplianceError::Parse {
            file: file.into(),
            line: e.marker().line().max(1),
            column: e.marker().col() + 1,
            message: format!("invalid YAML: {}", e.info()),
        })?;
        docs.first().map_or(Value::Null, yaml_to_json)
    };
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind == "Policy" {
        return Ok((InputKind::AuditPolicy, doc));
    }
    if kind == "Pod" {
        return Ok((InputKind::ApiserverManifest, doc));
    }
    let settings = match &doc {
        Value::Array(a) => Some(a),
        Value::Object(m) => m.get("value").and_then(Value::as_array),
        _ => None,
    };
    if let Some(s) = settings {
        if s.iter()
            .all(|x| x.get("properties").is_some() || x.get("logs").is_some())
        {
            return Ok((InputKind::AksDiagnosticSettings, doc));
        }
    }
    if doc.get("properties").and_then(|p| p.get("logs")).is_some() {
        return Ok((InputKind::AksDiagnosticSettings, Value::Array(vec![doc])));
    }
    if text.contains("--audit-") || text.contains("kube-apiserver") {
        return Ok((InputKind::ApiserverFlags, Value::Null));
    }
    Err(ComplianceError::Unknown {
        file: file.into(),
        why: "not a Kubernetes audit Policy, a kube-apiserver manifest or flag list, AKS diagnostic settings (az monitor diagnostic-settings list) or a trailwarden config (.toml)".into(),
    })
}

/// 1-based (line, column) of byte `offset`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

/// The first line (1-based) containing `needle`, at or after line `from`.
fn line_of(text: &str, needle: &str, from: usize) -> Option<usize> {
    text.lines()
        .enumerate()
        .skip(from.saturating_sub(1))
        .find(|(_, l)| l.contains(needle))
        .map(|(i, _)| i + 1)
}

fn yaml_to_json(y: &Yaml) -> Value {
    match y {
        Yaml::Real(s) => s
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::String(s.clone()), Value::Number),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Array(a) => Value::Array(a.iter().map(yaml_to_json).collect()),
        Yaml::Hash(h) => Value::Object(
            h.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) => s.clone(),
                        Yaml::Integer(i) => i.to_string(),
                        Yaml::Boolean(b) => b.to_string(),
                        other => format!("{other:?}"),
                    };
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
        Yaml::Alias(_) | Yaml::Null | Yaml::BadValue => Value::Null,
    }
}

/// The first few items, and how many more.
fn some_of(items: &[String]) -> String {
    const SHOWN: usize = 4;
    let mut s = items[..items.len().min(SHOWN)].join("; ");
    if items.len() > SHOWN {
        s.push_str(&format!("; and {} more", items.len() - SHOWN));
    }
    s
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The kube-apiserver flags of a static-pod manifest.
fn manifest_flags(file: &str, doc: &Value) -> Result<Vec<(String, String)>, ComplianceError> {
    let containers = doc
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for c in &containers {
        let mut argv = strings(c.get("command"));
        argv.extend(strings(c.get("args")));
        let name = c.get("name").and_then(Value::as_str).unwrap_or("");
        if name.contains("kube-apiserver") || argv.iter().any(|a| a.contains("kube-apiserver")) {
            return Ok(flags::parse(&argv.join("\n")));
        }
    }
    Err(ComplianceError::Unknown {
        file: file.into(),
        why: "a Pod manifest without a kube-apiserver container".into(),
    })
}

mod policy {
    //! The audit policy, run against probe requests.
    use super::*;

    /// A request the apiserver could see.
    #[derive(Clone, Copy)]
    struct Probe {
        user: &'static str,
        groups: &'static [&'static str],
        verb: &'static str,
        group: &'static str,
        resource: &'static str,
        subresource: &'static str,
        /// `CDE` stands for the first CDE namespace.
        namespace: &'static str,
        /// A non-resource URL (then the resource fields are empty).
        path: &'static str,
    }

    const USER: &str = "alice";
    const USER_GROUPS: &[&str] = &["developers", "system:authenticated"];
    const ADMIN: &str = "kubernetes-admin";
    const ADMIN_GROUPS: &[&str] = &["system:masters", "system:authenticated"];
    const CDE: &str = "\u{0}cde";

    const fn res(
        verb: &'static str,
        group: &'static str,
        resource: &'static str,
        subresource: &'static str,
        namespace: &'static str,
    ) -> Probe {
        Probe {
            user: USER,
            groups: USER_GROUPS,
            verb,
            group,
            resource,
            subresource,
            namespace,
            path: "",
        }
    }

    impl Probe {
        fn describe(&self, o: &Options) -> String {
            let who = if self.user == ADMIN {
                format!("{} (system:masters)", self.user)
            } else {
                self.user.to_string()
            };
            if !self.path.is_empty() {
                return format!("{} {} by {who}", self.verb, self.path);
            }
            let r = if self.subresource.is_empty() {
                self.resource.to_string()
            } else {
                format!("{}/{}", self.resource, self.subresource)
            };
            let r = if self.group.is_empty() {
                r
            } else {
                format!("{r}.{}", self.group)
            };
            let ns = self.ns(o);
            if ns.is_empty() {
                format!("{} {r} by {who}", self.verb)
            } else {
                format!("{} {r} in {ns} by {who}", self.verb)
            }
        }

        fn ns<'a>(&'a self, o: &'a Options) -> &'a str {
            if self.namespace == CDE {
                o.cde_namespaces.first().map_or("payments", String::as_str)
            } else {
                self.namespace
            }
        }

        fn as_admin(self) -> Probe {
            Probe {
                user: ADMIN,
                groups: ADMIN_GROUPS,
                ..self
            }
        }
    }

    struct Check {
        id: &'static str,
        requirement: &'static str,
        severity: Severity,
        title: &'static str,
        fix: &'static str,
        probes: &'static [Probe],
        /// A probe fails when it is logged at one of these levels.
        bad: &'static [Level],
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
    enum Level {
        None,
        Metadata,
        Request,
        RequestResponse,
    }

    impl Level {
        fn parse(s: &str) -> Option<Level> {
            Some(match s {
                "None" => Level::None,
                "Metadata" => Level::Metadata,
                "Request" => Level::Request,
                "RequestResponse" => Level::RequestResponse,
                _ => return None,
            })
        }
    }

    const CHECKS: &[Check] = &[
        Check {
            id: "TW-POL-01",
            requirement: "8.3.2",
            severity: Severity::High,
            title: "secret values are written into the audit trail",
            fix: "log secrets, configmaps, serviceaccounts/token and tokenreviews at level Metadata, in a rule placed before any Request/RequestResponse rule that would match them",
            probes: &[
                res("create", "", "secrets", "", CDE),
                res("update", "", "secrets", "", CDE),
                res("patch", "", "secrets", "", CDE),
                res("get", "", "secrets", "", CDE),
                res("create", "", "configmaps", "", CDE),
                res("create", "", "serviceaccounts", "token", CDE),
                res("create", "authentication.k8s.io", "tokenreviews", "", ""),
            ],
            bad: &[Level::Request, Level::RequestResponse],
        },
        Check {
            id: "TW-POL-02",
            requirement: "10.2.1.1",
            severity: Severity::High,
            title: "reads of secrets are not logged",
            fix: "log get/list/watch of secrets at level Metadata (do not send reads of secrets to level None)",
            probes: &[
                res("get", "", "secrets", "", CDE),
                res("list", "", "secrets", "", CDE),
                res("watch", "", "secrets", "", "kube-system"),
            ],
            bad: &[Level::None],
        },
        Check {
            id: "TW-POL-03",
            requirement: "10.2.1.4",
            severity: Severity::High,
            title: "failed or anonymous authentication is not logged",
            fix: "do not exempt system:anonymous or the system:unauthenticated group; a final catch-all rule at level Metadata logs them",
            probes: &[
                Probe {
                    user: "system:anonymous",
                    groups: &["system:unauthenticated"],
                    verb: "get",
                    group: "",
                    resource: "secrets",
                    subresource: "",
                    namespace: CDE,
                    path: "",
                },
                Probe {
                    user: "system:anonymous",
                    groups: &["system:unauthenticated"],
                    verb: "get",
                    group: "",
                    resource: "",
                    subresource: "",
                    namespace: "",
                    path: "/api/v1/namespaces",
                },
            ],
            bad: &[Level::None],
        },
        Check {
            id: "TW-POL-04",
            requirement: "10.2.1.2",
            severity: Severity::High,
            title: "interactive access to workloads (exec, attach, port-forward, ephemeral containers) is not logged",
            fix: "log pods/exec, pods/attach, pods/portforward and pods/ephemeralcontainers at level Metadata or Request",
            probes: &[
                res("create", "", "pods", "exec", CDE),
                res("create", "", "pods", "attach", CDE),
                res("create", "", "pods", "portforward", CDE),
                res("patch", "", "pods", "ephemeralcontainers", CDE),
            ],
            bad: &[Level::None],
        },
        Check {
            id: "TW-POL-05",
            requirement: "10.2.1.5",
            severity: Severity::High,
            title: "changes to credentials and privileges are not logged",
            fix: "log every write to rbac.authorization.k8s.io objects, service accounts and certificate signing requests (RequestResponse shows what changed)",
            probes: &[
                res("create", "rbac.authorization.k8s.io", "clusterrolebindings", "", ""),
                res("patch", "rbac.authorization.k8s.io", "clusterroles", "", ""),
                res("create", "rbac.authorization.k8s.io", "rolebindings", "", CDE),
                res("delete", "rbac.authorization.k8s.io", "roles", "", CDE),
                res("create", "", "serviceaccounts", "", CDE),
                res("create", "certificates.k8s.io", "certificatesigningrequests", "", ""),
            ],
            bad: &[Level::None],
        },
        Check {
            id: "TW-POL-07",
            requirement: "10.2.1.7",
            severity: Severity::High,
            title: "creation and deletion of system-level objects is not logged",
            fix: "log create/delete of cluster-scoped objects (namespaces, CRDs, webhooks, nodes) and of objects in kube-system",
            probes: &[
                res("create", "", "namespaces", "", ""),
                res("delete", "", "namespaces", "", ""),
                res("create", "apiextensions.k8s.io", "customresourcedefinitions", "", ""),
                res("delete", "admissionregistration.k8s.io", "validatingwebhookconfigurations", "", ""),
                res("delete", "", "nodes", "", ""),
                res("create", "apps", "deployments", "", "kube-system"),
            ],
            bad: &[Level::None],
        },
        Check {
            id: "TW-POL-08",
            requirement: "10.2.1.6",
            severity: Severity::High,
            title: "changes that stop or alter audit logging are not logged",
            fix: "log writes to daemonsets and configmaps in kube-system (logging agents and their configuration) and to admission webhooks",
            probes: &[
                res("patch", "apps", "daemonsets", "", "kube-system"),
                res("delete", "apps", "daemonsets", "", "kube-system"),
                res("update", "", "configmaps", "", "kube-system"),
            ],
            bad: &[Level::None],
        },
        Check {
            id: "TW-POL-09",
            requirement: "10.2.1.1",
            severity: Severity::High,
            title: "access to the cardholder-data namespace is not logged",
            fix: "log every request in the CDE namespaces, reads included, at level Metadata or Request",
            probes: &[
                res("get", "", "pods", "", CDE),
                res("list", "", "pods", "", CDE),
                res("get", "apps", "deployments", "", CDE),
                res("create", "apps", "deployments", "", CDE),
                res("delete", "", "pods", "", CDE),
            ],
            bad: &[Level::None],
        },
        Check {
            id: "TW-POL-11",
            requirement: "10.2.1",
            severity: Severity::Medium,
            title: "requests no rule names are not logged (no final catch-all rule)",
            fix: "end the rules with `- level: Metadata` so that what the rules do not name is still logged",
            probes: &[res("list", "example.com", "widgets", "", "team-a")],
            bad: &[Level::None],
        },
    ];

    struct Rule {
        index: usize,
        line: Option<usize>,
        level: Level,
        users: Vec<String>,
        user_groups: Vec<String>,
        verbs: Vec<String>,
        /// (group, resources, resourceNames)
        resources: Vec<(String, Vec<String>, Vec<String>)>,
        namespaces: Vec<String>,
        non_resource_urls: Vec<String>,
        omit_stages: Vec<String>,
    }

    impl Rule {
        /// The apiserver's `ruleMatches` (k8s.io/apiserver/pkg/audit/policy/checker.go).
        fn matches(&self, p: &Probe, o: &Options) -> bool {
            if !self.users.is_empty() && !self.users.iter().any(|u| u == p.user) {
                return false;
            }
            if !self.user_groups.is_empty()
                && !self
                    .user_groups
                    .iter()
                    .any(|g| p.groups.contains(&g.as_str()))
            {
                return false;
            }
            if !self.verbs.is_empty() && !self.verbs.iter().any(|v| v == p.verb) {
                return false;
            }
            if !self.namespaces.is_empty() || !self.resources.is_empty() {
                if !p.path.is_empty() {
                    return false;
                }
                let ns = p.ns(o);
                if !self.namespaces.is_empty() && !self.namespaces.iter().any(|n| n == ns) {
                    return false;
                }
                if self.resources.is_empty() {
                    return true;
                }
                let combined = if p.subresource.is_empty() {
                    p.resource.to_string()
                } else {
                    format!("{}/{}", p.resource, p.subresource)
                };
                return self.resources.iter().any(|(g, rs, names)| {
                    g == p.group
                        && (rs.is_empty()
                            || (names.is_empty()
                                && rs.iter().any(|r| {
                                    r == "*"
                                        || *r == combined
                                        || (!p.subresource.is_empty()
                                            && (*r == format!("*/{}", p.subresource)
                                                || *r == format!("{}/*", p.resource)))
                                })))
                });
            }
            if !self.non_resource_urls.is_empty() {
                if p.path.is_empty() {
                    return false;
                }
                return self
                    .non_resource_urls
                    .iter()
                    .any(|u| match u.strip_suffix('*') {
                        Some(prefix) => p.path.starts_with(prefix),
                        None => u == p.path,
                    });
            }
            true
        }
    }

    /// The rules' first lines: the items of the top-level `rules:` list (block YAML).
    fn rule_lines(text: &str) -> Vec<usize> {
        let mut out = Vec::new();
        let mut in_rules = false;
        let mut item_indent = None;
        for (i, l) in text.lines().enumerate() {
            let t = l.trim_start();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            let indent = l.len() - t.len();
            if indent == 0 && !t.starts_with('-') {
                in_rules = t.starts_with("rules:");
                item_indent = None;
                continue;
            }
            if in_rules && t.starts_with('-') {
                match item_indent {
                    None => {
                        item_indent = Some(indent);
                        out.push(i + 1);
                    }
                    Some(ii) if ii == indent => out.push(i + 1),
                    _ => {}
                }
            }
        }
        out
    }

    fn parse(
        file: &str,
        text: &str,
        doc: &Value,
    ) -> Result<(Vec<Rule>, Vec<String>), ComplianceError> {
        let err = |line: Option<usize>, message: String| ComplianceError::Parse {
            file: file.into(),
            line: line.unwrap_or(1),
            column: 1,
            message,
        };
        let lines = rule_lines(text);
        let rules = doc.get("rules").and_then(Value::as_array).ok_or_else(|| {
            err(
                line_of(text, "kind", 1),
                "an audit Policy needs a list of rules".into(),
            )
        })?;
        let mut out = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            let line = lines.get(i).copied();
            let level = r
                .get("level")
                .and_then(Value::as_str)
                .ok_or_else(|| err(line, format!("rules[{i}] has no level")))?;
            let level = Level::parse(level).ok_or_else(|| {
                err(
                    line,
                    format!("rules[{i}]: level {level:?} is not None, Metadata, Request or RequestResponse"),
                )
            })?;
            let mut resources = Vec::new();
            for g in r
                .get("resources")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                resources.push((
                    g.get("group")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    strings(g.get("resources")),
                    strings(g.get("resourceNames")),
                ));
            }
            out.push(Rule {
                index: i,
                line,
                level,
                users: strings(r.get("users")),
                user_groups: strings(r.get("userGroups")),
                verbs: strings(r.get("verbs")),
                resources,
                namespaces: strings(r.get("namespaces")),
                non_resource_urls: strings(r.get("nonResourceURLs")),
                omit_stages: strings(r.get("omitStages")),
            });
        }
        Ok((out, strings(doc.get("omitStages"))))
    }

    /// The level a probe is logged at, and the rule that decided (none: no rule matched).
    fn decide<'a>(rules: &'a [Rule], p: &Probe, o: &Options) -> (Level, Option<&'a Rule>) {
        match rules.iter().find(|r| r.matches(p, o)) {
            Some(r) => (r.level, Some(r)),
            None => (Level::None, None),
        }
    }

    fn by(rule: Option<&Rule>) -> String {
        match rule {
            Some(r) => match r.line {
                Some(l) => format!("rules[{}] (line {l})", r.index),
                None => format!("rules[{}]", r.index),
            },
            None => "no rule (unmatched requests are not logged)".into(),
        }
    }

    pub(super) fn check(
        file: &str,
        text: &str,
        doc: &Value,
        o: &Options,
    ) -> Result<Vec<Finding>, ComplianceError> {
        let (rules, top_omit) = parse(file, text, doc)?;
        let mut out = Vec::new();
        let version = doc.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        if version != "audit.k8s.io/v1" {
            out.push(Finding {
                id: "TW-POL-12",
                requirement: "10.2.1",
                severity: Severity::Low,
                file: file.into(),
                line: line_of(text, "apiVersion", 1),
                title: format!("apiVersion {version:?} is not audit.k8s.io/v1"),
                detail: "v1alpha1 and v1beta1 audit policies were removed in Kubernetes 1.24; the apiserver refuses to start with them".into(),
                fix: "set apiVersion: audit.k8s.io/v1".into(),
            });
        }
        for c in CHECKS {
            let mut failed = Vec::new();
            let mut first_rule = None;
            for p in c.probes {
                let (level, rule) = decide(&rules, p, o);
                if c.bad.contains(&level) {
                    failed.push(format!("{} → {level:?} by {}", p.describe(o), by(rule)));
                    if first_rule.is_none() {
                        first_rule = Some(rule.and_then(|r| r.line));
                    }
                }
            }
            if !failed.is_empty() {
                out.push(Finding {
                    id: c.id,
                    requirement: c.requirement,
                    severity: c.severity,
                    file: file.into(),
                    line: first_rule.flatten(),
                    title: c.title.into(),
                    detail: some_of(&failed),
                    fix: c.fix.into(),
                });
            }
        }
        // privileged users: what is logged for a developer must be logged for an admin too
        let mut exempt = Vec::new();
        let mut line = None;
        for c in CHECKS.iter().filter(|c| c.bad == [Level::None]) {
            for p in c.probes.iter().filter(|p| p.user == USER) {
                let (user_level, _) = decide(&rules, p, o);
                let (admin_level, rule) = decide(&rules, &p.as_admin(), o);
                if user_level != Level::None && admin_level == Level::None {
                    exempt.push(format!(
                        "{} → None by {}",
                        p.as_admin().describe(o),
                        by(rule)
                    ));
                    line = line.or(rule.and_then(|r| r.line));
                }
            }
        }
        if !exempt.is_empty() {
            out.push(Finding {
                id: "TW-POL-06",
                requirement: "10.2.1.2",
                severity: Severity::High,
                file: file.into(),
                line,
                title: "actions of privileged users are exempted from logging".into(),
                detail: some_of(&exempt),
                fix: "remove system:masters / admin users and groups from level None rules (exempt only named control-plane components, and only for reads)".into(),
            });
        }
        // the outcome (10.2.2: success or failure) is only in ResponseComplete / ResponseStarted
        let mut omitted = Vec::new();
        if top_omit.iter().any(|s| s == "ResponseComplete") {
            omitted.push("the policy's omitStages".to_string());
        }
        for r in rules.iter().filter(|r| r.level != Level::None) {
            if r.omit_stages.iter().any(|s| s == "ResponseComplete") {
                omitted.push(by(Some(r)));
            }
        }
        if !omitted.is_empty() {
            out.push(Finding {
                id: "TW-POL-10",
                requirement: "10.2.2",
                severity: Severity::Medium,
                file: file.into(),
                line: if top_omit.iter().any(|s| s == "ResponseComplete") {
                    line_of(text, "ResponseComplete", 1)
                } else {
                    rules
                        .iter()
                        .find(|r| r.omit_stages.iter().any(|s| s == "ResponseComplete"))
                        .and_then(|r| r.line)
                },
                title: "the ResponseComplete stage is omitted: records lose their outcome (success or failure)".into(),
                detail: format!("ResponseComplete omitted by {}", omitted.join(", ")),
                fix: "omit only RequestReceived; keep ResponseComplete (and ResponseStarted for long-running requests)".into(),
            });
        }
        Ok(out)
    }
}

mod flags {
    //! kube-apiserver audit flags.
    use super::*;

    /// `--name=value` / `--name value` pairs of a command line (shell continuations and
    /// quotes allowed).
    pub(super) fn parse(text: &str) -> Vec<(String, String)> {
        let words: Vec<String> = text
            .split(|c: char| c.is_whitespace() || c == '\\')
            .filter(|w| !w.is_empty())
            .map(|w| w.trim_matches(|c| c == '"' || c == '\'').to_string())
            .collect();
        let mut out = Vec::new();
        let mut i = 0;
        while i < words.len() {
            if let Some(f) = words[i].strip_prefix("--") {
                match f.split_once('=') {
                    Some((k, v)) => out.push((k.to_string(), v.to_string())),
                    None => {
                        let v = words.get(i + 1).filter(|n| !n.starts_with("--")).cloned();
                        if v.is_some() {
                            i += 1;
                        }
                        out.push((f.to_string(), v.unwrap_or_else(|| "true".into())));
                    }
                }
            }
            i += 1;
        }
        out
    }

    pub(super) fn check(file: &str, text: &str, flags: &[(String, String)]) -> Vec<Finding> {
        let get = |k: &str| {
            flags
                .iter()
                .rev()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
        };
        let at = |k: &str| line_of(text, &format!("--{k}"), 1);
        let f = |id, requirement, severity, line, title: &str, detail: String, fix: &str| Finding {
            id,
            requirement,
            severity,
            file: file.into(),
            line,
            title: title.into(),
            detail,
            fix: fix.into(),
        };
        let mut out = Vec::new();
        if get("audit-policy-file").is_none() {
            out.push(f(
                "TW-API-01",
                "10.2.1",
                Severity::High,
                line_of(text, "kube-apiserver", 1),
                "audit logging is off: no --audit-policy-file",
                "without a policy the apiserver writes no audit events at all".into(),
                "pass --audit-policy-file with a policy such as docs/deploy/audit-policy.yaml",
            ));
        }
        let path = get("audit-log-path");
        let webhook = get("audit-webhook-config-file");
        if path.is_none() && webhook.is_none() {
            out.push(f(
                "TW-API-02",
                "10.3.3",
                Severity::High,
                line_of(text, "kube-apiserver", 1),
                "audit events have no destination: neither --audit-log-path nor --audit-webhook-config-file",
                "events are generated and dropped".into(),
                "send them to trailwarden with --audit-webhook-config-file (docs/deploy/webhook-kubeconfig.yaml), and keep a local --audit-log-path as a buffer",
            ));
        }
        if let Some(p) = path {
            let age = get("audit-log-maxage").and_then(|v| v.parse::<u64>().ok());
            if age.is_none_or(|d| d < 365) {
                let (severity, detail) = if webhook.is_some() {
                    (Severity::Low, "a webhook also receives the events: the 12 months must be kept there (trailwarden keeps them in the ledger)".to_string())
                } else {
                    (
                        Severity::Medium,
                        "the local file is the only copy of the trail".to_string(),
                    )
                };
                out.push(f(
                    "TW-API-03",
                    "10.5.1",
                    severity,
                    at("audit-log-maxage").or_else(|| at("audit-log-path")),
                    &match age {
                        Some(d) => format!("--audit-log-maxage={d}: local audit files are deleted after {d} days (under 365)"),
                        None => "no --audit-log-maxage: local audit files are kept only by count and size".into(),
                    },
                    detail,
                    "keep 12 months somewhere: --audit-log-maxage=365 for a local-only trail, or a webhook to a store that keeps 12 months",
                ));
            }
            for k in ["audit-log-maxbackup", "audit-log-maxsize"] {
                if get(k).is_none() {
                    out.push(f(
                        "TW-API-04",
                        "10.5.1",
                        Severity::Low,
                        at("audit-log-path"),
                        &format!("no --{k}: the local audit file's rotation is left to defaults (CIS 1.2)"),
                        format!("--audit-log-path={p}"),
                        "set --audit-log-maxbackup=10 and --audit-log-maxsize=100 (CIS Kubernetes Benchmark 1.2)",
                    ));
                }
            }
            if p == "-" {
                out.push(f(
                    "TW-API-05",
                    "10.3.3",
                    Severity::Low,
                    at("audit-log-path"),
                    "--audit-log-path=- writes audit events to the apiserver's stdout",
                    "their retention is the container runtime's log rotation".into(),
                    "write to a file on a host path, or use the webhook",
                ));
            }
        }
        if let Some(m) = get("audit-webhook-mode") {
            if m != "batch" && m != "blocking" && m != "blocking-strict" {
                out.push(f(
                    "TW-API-06",
                    "10.2.1",
                    Severity::Medium,
                    at("audit-webhook-mode"),
                    &format!("--audit-webhook-mode={m} is not batch, blocking or blocking-strict"),
                    "the apiserver refuses to start".into(),
                    "use batch (the default)",
                ));
            }
        }
        out
    }
}

mod aks {
    //! AKS diagnostic settings.
    use super::*;

    const AUDIT: [&str; 2] = ["kube-audit", "kube-audit-admin"];

    pub(super) fn check(
        file: &str,
        text: &str,
        doc: &Value,
    ) -> Result<Vec<Finding>, ComplianceError> {
        let settings = match doc {
            Value::Array(a) => a.clone(),
            Value::Object(m) => m
                .get("value")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        let mut out = Vec::new();
        let f =
            |id, requirement, severity, line, title: String, detail: String, fix: &str| Finding {
                id,
                requirement,
                severity,
                file: file.into(),
                line,
                title,
                detail,
                fix: fix.into(),
            };
        let mut enabled: Vec<(String, String)> = Vec::new(); // (setting, category)
        for (i, s) in settings.iter().enumerate() {
            let name = s
                .get("name")
                .and_then(Value::as_str)
                .map_or_else(|| format!("settings[{i}]"), str::to_string);
            let p = s.get("properties").unwrap_or(s);
            let line = line_of(text, &format!("\"{name}\""), 1).or_else(|| line_of(text, &name, 1));
            let logs = p
                .get("logs")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let mut audit_here = Vec::new();
            for l in &logs {
                if !l.get("enabled").and_then(Value::as_bool).unwrap_or(false) {
                    continue;
                }
                let cat = l.get("category").and_then(Value::as_str);
                let group = l.get("categoryGroup").and_then(Value::as_str);
                let covered: Vec<&str> = match (cat, group) {
                    (Some(c), _) if AUDIT.contains(&c) => vec![c],
                    (_, Some("allLogs")) => AUDIT.to_vec(),
                    (_, Some("audit")) => AUDIT.to_vec(),
                    _ => Vec::new(),
                };
                for c in &covered {
                    audit_here.push(c.to_string());
                    enabled.push((name.clone(), c.to_string()));
                }
                if covered.is_empty() {
                    continue;
                }
                let days = l
                    .pointer("/retentionPolicy/days")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                let on = l
                    .pointer("/retentionPolicy/enabled")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                if on && days > 0 && days < 365 {
                    out.push(f(
                        "TW-AKS-04",
                        "10.5.1",
                        Severity::Medium,
                        line,
                        format!("setting {name:?} deletes {} after {days} days (under 365)", covered.join(", ")),
                        "retentionPolicy on diagnostic settings is deprecated by Microsoft; the storage account's lifecycle policy or the workspace's retention decides".into(),
                        "keep 12 months: set the Log Analytics table or workspace retention (or the storage lifecycle policy) to at least 365 days, 90 of them interactive",
                    ));
                }
            }
            let destination = [
                "workspaceId",
                "storageAccountId",
                "eventHubAuthorizationRuleId",
                "marketplacePartnerId",
            ]
            .iter()
            .any(|k| {
                p.get(*k)
                    .and_then(Value::as_str)
                    .is_some_and(|v| !v.is_empty())
            });
            if !audit_here.is_empty() && !destination {
                out.push(f(
                    "TW-AKS-03",
                    "10.3.3",
                    Severity::High,
                    line,
                    format!("setting {name:?} enables {} but sends it nowhere", audit_here.join(", ")),
                    "no workspaceId, storageAccountId, eventHubAuthorizationRuleId or marketplacePartnerId".into(),
                    "add a destination: a Log Analytics workspace, a storage account with immutability, or an Event Hub that trailwarden reads",
                ));
            }
            if !audit_here.is_empty()
                && p.get("workspaceId").and_then(Value::as_str).is_some()
                && p.get("logAnalyticsDestinationType").and_then(Value::as_str) != Some("Dedicated")
            {
                out.push(f(
                    "TW-AKS-05",
                    "10.4.1",
                    Severity::Low,
                    line,
                    format!("setting {name:?} writes to the shared AzureDiagnostics table"),
                    "without logAnalyticsDestinationType=Dedicated the audit lands in AzureDiagnostics (500-column limit, log_s as text) instead of AKSAudit / AKSAuditAdmin".into(),
                    "set logAnalyticsDestinationType to Dedicated (resource-specific tables)",
                ));
            }
        }
        let has = |c: &str| enabled.iter().any(|(_, x)| x == c);
        if settings.is_empty() {
            out.push(f(
                "TW-AKS-00",
                "10.2.1",
                Severity::High,
                None,
                "no diagnostic settings: the AKS control plane's audit logs are not collected".into(),
                "the list is empty".into(),
                "az monitor diagnostic-settings create --resource <AKS id> --logs '[{\"category\":\"kube-audit\",\"enabled\":true}]' --workspace <id> --export-to-resource-specific true",
            ));
        } else if !has("kube-audit") && !has("kube-audit-admin") {
            out.push(f(
                "TW-AKS-01",
                "10.2.1",
                Severity::High,
                None,
                "no setting enables kube-audit or kube-audit-admin: the Kubernetes audit trail is not collected".into(),
                format!("{} setting(s), none with an audit category enabled", settings.len()),
                "enable the kube-audit category (or the audit category group) in a diagnostic setting",
            ));
        } else if !has("kube-audit") {
            out.push(f(
                "TW-AKS-02",
                "10.2.1.1",
                Severity::Medium,
                line_of(text, "kube-audit-admin", 1),
                "only kube-audit-admin is enabled: reads (get, list, watch) are not logged".into(),
                "kube-audit-admin leaves out get/list/watch, so reads of cardholder data (10.2.1.1) and of audit logs (10.2.1.3) are missing".into(),
                "enable kube-audit (it includes what kube-audit-admin has)",
            ));
        }
        Ok(out)
    }
}

mod config {
    //! trailwarden's own config.
    use super::*;

    fn loopback(listen: &str) -> bool {
        let host = listen.rsplit_once(':').map_or(listen, |(h, _)| h);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        host == "localhost" || host == "::1" || host.starts_with("127.")
    }

    pub(super) fn check(file: &str, text: &str, doc: &Value) -> Vec<Finding> {
        let mut out = Vec::new();
        let f =
            |id, requirement, severity, line, title: String, detail: String, fix: &str| Finding {
                id,
                requirement,
                severity,
                file: file.into(),
                line,
                title,
                detail,
                fix: fix.into(),
            };
        let http = doc.get("http");
        let tls = http
            .and_then(|h| h.get("tls"))
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let listen = http
            .and_then(|h| h.get("listen"))
            .and_then(Value::as_str)
            .unwrap_or("127.0.0.1:8443");
        let plaintext_ok = http
            .and_then(|h| h.get("allow_plaintext"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if !tls && (plaintext_ok || !loopback(listen)) {
            out.push(f(
                "TW-CFG-01",
                "10.3.1",
                Severity::High,
                line_of(text, "tls", 1),
                format!("the API listens in plaintext on {listen}"),
                "tokens and audit data cross the network unencrypted".into(),
                "set [http] tls = true (or keep plaintext on loopback behind a TLS proxy)",
            ));
        }
        let syslog = doc.get("syslog");
        for k in ["tcp", "udp"] {
            if let Some(a) = syslog.and_then(|s| s.get(k)).and_then(Value::as_str) {
                out.push(f(
                    "TW-CFG-02",
                    "10.3.2",
                    Severity::Medium,
                    line_of(
                        text,
                        &format!("{k} ="),
                        line_of(text, "[syslog]", 1).unwrap_or(1),
                    ),
                    format!(
                        "syslog is received in plaintext over {} on {a}",
                        k.to_uppercase()
                    ),
                    "records can be read, altered or forged on the way".into(),
                    "receive syslog over TLS ([syslog] tls = \"0.0.0.0:6514\", RFC 5425)",
                ));
            }
        }
        let det = doc.get("detection");
        if det.and_then(|d| d.get("enabled")).and_then(Value::as_bool) == Some(false) {
            out.push(f(
                "TW-CFG-03",
                "10.4.1.1",
                Severity::High,
                line_of(
                    text,
                    "enabled",
                    line_of(text, "[detection]", 1).unwrap_or(1),
                ),
                "detection is off: no automated review of the audit logs".into(),
                "[detection] enabled = false".into(),
                "set [detection] enabled = true",
            ));
        }
        let routes = doc
            .pointer("/alerting/route")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        if routes == 0 {
            out.push(f(
                "TW-CFG-04",
                "10.7.2",
                Severity::High,
                line_of(text, "[alerting]", 1),
                "no alert route: alerts and control failures reach no one".into(),
                "without [[alerting.route]] every alert goes to the server's log only".into(),
                "add an [[alerting.sink]] (Alertmanager, webhook, Slack, syslog, e-mail) and an [[alerting.route]] to it (docs/alerting.md)",
            ));
        }
        let interval = doc
            .pointer("/verify/interval")
            .and_then(Value::as_str)
            .unwrap_or("1h");
        let every = match interval.trim() {
            "0" => Some(0),
            i => trailwarden_model::parse_duration(i).ok(),
        };
        match every {
            Some(0) => out.push(f(
                "TW-CFG-05",
                "10.3.4",
                Severity::High,
                line_of(text, "interval", 1),
                "background verification is off: a changed or removed record is not noticed".into(),
                "[verify] interval = \"0\"".into(),
                "set [verify] interval to 1h (at most 24h)",
            )),
            Some(ns) if ns > 86_400_000_000_000 => out.push(f(
                "TW-CFG-05",
                "10.3.4",
                Severity::Medium,
                line_of(text, "interval", 1),
                format!(
                    "background verification runs every {interval}: more than a day between checks"
                ),
                "10.3.4 asks for change detection that alerts promptly".into(),
                "set [verify] interval to 1h (at most 24h)",
            )),
            _ => {}
        }
        let archive = doc.get("archive");
        match archive.and_then(|a| a.get("url")).and_then(Value::as_str) {
            None => out.push(f(
                "TW-CFG-06",
                "10.3.3",
                Severity::Medium,
                line_of(text, "[archive]", 1),
                "no archive: the audit trail lives on one disk".into(),
                "10.3.3 wants audit logs promptly backed up to a central store that is hard to modify".into(),
                "set [archive] url to an S3 bucket with Object Lock or an Azure container with an immutability policy (docs/archive.md)",
            )),
            Some(_) => {
                let days = |k: &str, d: u64| {
                    archive
                        .and_then(|a| a.get(k))
                        .and_then(Value::as_u64)
                        .unwrap_or(d)
                };
                for (k, d, min, why) in [
                    ("hot_days", 90, 90, "the latest three months immediately available"),
                    ("retain_days", 365, 365, "twelve months kept"),
                ] {
                    let v = days(k, d);
                    if v < min {
                        out.push(f(
                            "TW-CFG-07",
                            "10.5.1",
                            Severity::High,
                            line_of(text, k, 1),
                            format!("[archive] {k} = {v}: less than {min} days"),
                            format!("10.5.1 wants {why}"),
                            "raise it to at least the minimum",
                        ));
                    }
                }
            }
        }
        // [cluster]: events cross the network to NATS, and JetStream holds them until the
        // writer's fsync
        let cluster = doc.get("cluster");
        if let Some(urls) = cluster
            .and_then(|c| c.get("nats_url"))
            .and_then(Value::as_str)
        {
            let plain: Vec<&str> = urls
                .split(',')
                .map(str::trim)
                .filter(|u| {
                    let host = u
                        .split("://")
                        .nth(1)
                        .unwrap_or(u)
                        .rsplit('@')
                        .next()
                        .unwrap_or("")
                        .split(':')
                        .next()
                        .unwrap_or("");
                    !u.starts_with("tls://")
                        && !matches!(host, "127.0.0.1" | "localhost" | "::1" | "[::1]")
                })
                .collect();
            if !plain.is_empty() && cluster.and_then(|c| c.get("tls_ca")).is_none() {
                out.push(f(
                    "TW-CFG-08",
                    "10.3.2",
                    Severity::High,
                    line_of(text, "nats_url", 1),
                    format!("[cluster] nats_url reaches {} without TLS", plain.join(", ")),
                    "audit events and the writer's lease would cross the network in clear text, open to change on the way (10.3.2)".into(),
                    "use tls:// URLs (with tls_ca for a private CA) and NATS users or creds_file per role (docs/cluster.md)",
                ));
            }
            if cluster.and_then(|c| c.get("message_key_file")).is_none() {
                out.push(f(
                    "TW-CFG-10",
                    "10.3.2",
                    Severity::Medium,
                    line_of(text, "[cluster]", 1),
                    "[cluster] has no message_key_file: messages are not signed".into(),
                    "any client allowed to publish on the partition's subject could put events into the ledger; only NATS permissions stand in the way (10.3.2)".into(),
                    "give ingest nodes and the writer the same message_key_file (32+ random bytes, mode 0600); the writer then quarantines unsigned messages",
                ));
            }
            let servers = urls.split(',').filter(|u| !u.trim().is_empty()).count();
            let replicas = cluster
                .and_then(|c| c.get("replicas"))
                .and_then(Value::as_u64)
                .unwrap_or(1);
            if servers >= 3 && replicas < 3 {
                out.push(f(
                    "TW-CFG-09",
                    "10.5.1",
                    Severity::Medium,
                    line_of(text, "replicas", 1),
                    format!("[cluster] replicas = {replicas} on {servers} NATS servers"),
                    "an acknowledged event waits in JetStream until the writer commits it: with one replica, losing that NATS node loses it".into(),
                    "set replicas = 3 (the stream is created with it; an existing stream keeps its own)",
                ));
            }
        }
        out
    }
}

/// The SARIF 2.1.0 log of the reports (one run, the checks as rules).
pub fn sarif(reports: &[FileReport]) -> Value {
    let mut rules: Vec<Value> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut results = Vec::new();
    for r in reports {
        for f in &r.findings {
            if seen.insert(f.id) {
                rules.push(serde_json::json!({
                    "id": f.id,
                    "shortDescription": {"text": f.title},
                    "help": {"text": f.fix},
                    "properties": {"pci-dss": f.requirement, "tags": [format!("pci_dss.{}", f.requirement)]},
                }));
            }
            let mut loc =
                serde_json::json!({"physicalLocation": {"artifactLocation": {"uri": f.file}}});
            if let Some(l) = f.line {
                loc["physicalLocation"]["region"] = serde_json::json!({"startLine": l});
            }
            results.push(serde_json::json!({
                "ruleId": f.id,
                "level": match f.severity { Severity::High => "error", Severity::Medium => "warning", Severity::Low => "note" },
                "message": {"text": format!("{} (PCI DSS {}): {}. Fix: {}", f.title, f.requirement, f.detail, f.fix)},
                "locations": [loc],
                "properties": {"requirement": f.requirement, "severity": f.severity},
            }));
        }
    }
    serde_json::json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "trailwarden check",
                "informationUri": "https://github.com/trailwarden/trailwarden",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "results": results,
        }],
    })
}
