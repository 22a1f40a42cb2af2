//! GKE Kubernetes audit logs: Cloud Logging `LogEntry` records whose `protoPayload` is a
//! `google.cloud.audit.AuditLog` of `serviceName` `k8s.io`.
//!
//! GKE does not export the API server's audit events as they are: it rewrites each one into
//! Cloud Audit Logs' shape (`methodName` `io.k8s.core.v1.pods.create`, `resourceName`
//! `core/v1/namespaces/ns/pods/name`, `authenticationInfo.principalEmail`,
//! `requestMetadata.callerIp`, a gRPC `status`, the object in `request` / `response`, the
//! authorizer's decision in the entry's `labels`). This module rewrites it back into the
//! audit.k8s.io shape (verb, objectRef, user, sourceIPs, userAgent, responseStatus,
//! requestObject, responseObject, annotations) and parses that with the Kubernetes parser, so
//! every rule written for Kubernetes audit events runs on GKE unchanged. The record keeps the
//! `LogEntry` exactly as received; the rewritten document is the event's `payload`.
//!
//! Shapes accepted: the `LogEntry` itself (JSON lines, arrays, `gcloud logging read
//! --format=json` output), and Pub/Sub push bodies (`{"message":{"data":…},"subscription":…}`)
//! or pull responses (`{"receivedMessages":[…]}`) carrying it base64-encoded, as a log sink to
//! Pub/Sub delivers them.

use crate::error::FormatError;
use crate::k8s;
use serde_json::{json, Map, Value};
use trailwarden_model::{Event, Format};

/// The `@type` of a Cloud Audit Logs payload.
const AUDIT_LOG_TYPE: &str = "type.googleapis.com/google.cloud.audit.AuditLog";

/// Whether an object is a Cloud Logging entry carrying a Cloud Audit Log (of any service).
pub fn is_audit_log_entry(map: &Map<String, Value>) -> bool {
    map.get("protoPayload")
        .and_then(Value::as_object)
        .is_some_and(|p| {
            p.get("@type").and_then(Value::as_str) == Some(AUDIT_LOG_TYPE)
                || (p.contains_key("serviceName") && p.contains_key("methodName"))
        })
}

/// Whether an object is a GKE Kubernetes audit log entry.
pub fn is_gke(map: &Map<String, Value>) -> bool {
    is_audit_log_entry(map)
        && (service(map) == Some("k8s.io")
            || map
                .get("resource")
                .and_then(|r| r.get("type"))
                .and_then(Value::as_str)
                == Some("k8s_cluster"))
}

fn service(map: &Map<String, Value>) -> Option<&str> {
    map.get("protoPayload")?.get("serviceName")?.as_str()
}

/// Parse a GKE audit log entry; `NotThisFormat` when the object is not one (a Cloud Audit Log
/// of another service is named in the error).
pub fn parse_entry(map: &Map<String, Value>) -> Result<Event, FormatError> {
    if !is_audit_log_entry(map) {
        return Err(FormatError::NotThisFormat("a GKE audit log entry"));
    }
    if !is_gke(map) {
        return Err(FormatError::invalid(format!(
            "a Cloud Audit Log entry of service {:?}, not of Kubernetes (k8s.io): only GKE's Kubernetes audit logs are read",
            service(map).unwrap_or("(none)")
        )));
    }
    let doc = to_audit_event(map)?;
    let text = doc.to_string();
    let mut ev = k8s::parse_event(text.as_bytes()).map_err(|e| match e {
        FormatError::NotThisFormat(_) => {
            FormatError::invalid("GKE audit log entry: not a Kubernetes request")
        }
        other => other,
    })?;
    ev.format = Format::Gke;
    let labels = map.get("resource").and_then(|r| r.get("labels"));
    let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    ev.attr("cluster", label("cluster_name"));
    ev.attr("project_id", label("project_id"));
    ev.attr("location", label("location"));
    ev.attr("insert_id", map.get("insertId").and_then(Value::as_str));
    ev.attr("log_name", map.get("logName").and_then(Value::as_str));
    let p = map.get("protoPayload");
    ev.attr(
        "method",
        p.and_then(|p| p.get("methodName")).and_then(Value::as_str),
    );
    ev.attr(
        "resource_name",
        p.and_then(|p| p.get("resourceName"))
            .and_then(Value::as_str),
    );
    if let Some(code) = p
        .and_then(|p| p.get("status"))
        .and_then(|s| s.get("code"))
        .and_then(Value::as_i64)
    {
        ev.attrs.insert("grpc_code".into(), code.to_string());
    }
    // a Google service account acting for another identity: who that was
    ev.attr(
        "delegated_by",
        p.and_then(|p| p.get("authenticationInfo"))
            .and_then(|a| a.get("serviceAccountDelegationInfo"))
            .and_then(Value::as_array)
            .and_then(|d| d.first())
            .and_then(|d| d.get("firstPartyPrincipal"))
            .and_then(|f| f.get("principalEmail"))
            .and_then(Value::as_str),
    );
    if let Some(t) = map.get("receiveTimestamp").and_then(Value::as_str) {
        ev.attrs.insert("receive_timestamp".into(), t.to_string());
    }
    ev.payload = Some(text);
    Ok(ev)
}

/// The object reference a `resourceName` and `methodName` name.
#[derive(Debug, Default, PartialEq)]
struct Target {
    group: Option<String>,
    version: Option<String>,
    resource: Option<String>,
    subresource: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
    uri: String,
}

fn is_version(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && b[0] == b'v' && b[1].is_ascii_digit()
}

/// `io.k8s.<group>.<version>.<resource>[.<subresource>].<verb>` → (resource, subresource, verb);
/// `io.k8s.<verb>` for non-resource requests.
fn method_parts(method: &str) -> (Option<&str>, Option<&str>, Option<&str>) {
    let parts: Vec<&str> = method.split('.').collect();
    let verb = parts.last().copied().filter(|v| !v.is_empty());
    match parts.iter().rposition(|p| is_version(p)) {
        Some(i) if i + 2 < parts.len() => {
            let rest = &parts[i + 1..parts.len() - 1];
            (rest.first().copied(), rest.get(1).copied(), verb)
        }
        _ => (None, None, verb),
    }
}

fn target(resource_name: &str, method: &str) -> Target {
    let (m_resource, m_sub, _) = method_parts(method);
    let parts: Vec<&str> = resource_name
        .trim_matches('/')
        .split('/')
        .filter(|p| !p.is_empty())
        .collect();
    if parts.len() < 3 || !is_version(parts[1]) {
        // a non-resource URL (`readyz`, `api/v1`, `apis`) or a name we cannot split
        return Target {
            uri: format!("/{}", resource_name.trim_start_matches('/')),
            ..Target::default()
        };
    }
    let group = if parts[0] == "core" { "" } else { parts[0] };
    let rest = &parts[2..];
    let mut t = Target {
        group: Some(group.to_string()),
        version: Some(parts[1].to_string()),
        ..Target::default()
    };
    let namespaced = rest[0] == "namespaces" && rest.len() >= 3 && m_resource != Some("namespaces");
    let (resource, name, sub) = if namespaced {
        t.namespace = Some(rest[1].to_string());
        (rest[2], rest.get(3), rest.get(4))
    } else {
        (rest[0], rest.get(1), rest.get(2))
    };
    t.resource = Some(m_resource.unwrap_or(resource).to_string());
    t.name = name.map(|s| s.to_string());
    t.subresource = m_sub.or(sub.copied()).map(str::to_string);
    let prefix = if group.is_empty() {
        format!("/api/{}", parts[1])
    } else {
        format!("/apis/{}/{}", group, parts[1])
    };
    t.uri = format!("{prefix}/{}", rest.join("/"));
    t
}

/// The HTTP status of a request from its gRPC status code (google.rpc.Code), the way GKE maps
/// Kubernetes' answers onto them.
fn http_code(grpc: i64, verb: &str) -> i64 {
    match grpc {
        0 if verb == "create" => 201,
        0 => 200,
        1 => 499,
        2 | 13 | 15 => 500,
        3 | 11 => 400,
        4 => 504,
        5 => 404,
        6 | 10 => 409,
        7 => 403,
        8 => 429,
        9 => 412,
        12 => 501,
        14 => 503,
        16 => 401,
        _ => 500,
    }
}

fn s(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str)
}

/// Rewrite a GKE audit log entry into an audit.k8s.io/v1 Event document.
pub fn to_audit_event(map: &Map<String, Value>) -> Result<Value, FormatError> {
    let p = map
        .get("protoPayload")
        .and_then(Value::as_object)
        .ok_or_else(|| FormatError::invalid("GKE audit log entry without a protoPayload object"))?;
    let method = s(p.get("methodName")).unwrap_or_default();
    let (_, _, verb) = method_parts(method);
    let verb = verb.unwrap_or_default();
    let resource_name = s(p.get("resourceName")).unwrap_or_default();
    let t = target(resource_name, method);

    let mut ev = Map::new();
    ev.insert("kind".into(), json!("Event"));
    ev.insert("apiVersion".into(), json!("audit.k8s.io/v1"));
    let has_objects = p.contains_key("request") || p.contains_key("response");
    ev.insert(
        "level".into(),
        json!(if has_objects {
            "RequestResponse"
        } else {
            "Metadata"
        }),
    );
    let audit_id = map
        .get("operation")
        .and_then(|o| o.get("id"))
        .and_then(Value::as_str)
        .or_else(|| s(map.get("insertId")));
    if let Some(id) = audit_id {
        ev.insert("auditID".into(), json!(id));
    }
    ev.insert("stage".into(), json!("ResponseComplete"));
    ev.insert("requestURI".into(), json!(t.uri));
    ev.insert("verb".into(), json!(verb));
    let auth = p.get("authenticationInfo");
    let mut user = Map::new();
    if let Some(u) = s(auth.and_then(|a| a.get("principalEmail"))) {
        user.insert("username".into(), json!(u));
    }
    ev.insert("user".into(), Value::Object(user));
    let meta = p.get("requestMetadata");
    if let Some(ip) = s(meta.and_then(|m| m.get("callerIp"))) {
        ev.insert("sourceIPs".into(), json!([ip]));
    }
    if let Some(ua) = s(meta.and_then(|m| m.get("callerSuppliedUserAgent"))) {
        ev.insert("userAgent".into(), json!(ua));
    }
    if t.resource.is_some() {
        let mut obj = Map::new();
        for (k, v) in [
            ("resource", &t.resource),
            ("namespace", &t.namespace),
            ("name", &t.name),
            ("apiGroup", &t.group),
            ("apiVersion", &t.version),
            ("subresource", &t.subresource),
        ] {
            if let Some(v) = v {
                obj.insert(k.into(), json!(v));
            }
        }
        ev.insert("objectRef".into(), Value::Object(obj));
    }
    let grpc = p
        .get("status")
        .and_then(|st| st.get("code"))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let response = p.get("response");
    // a Status answer carries the HTTP code itself
    let status_code = response
        .filter(|r| {
            s(r.get("kind")) == Some("Status")
                || s(r.get("@type")).is_some_and(|t| t.ends_with(".Status"))
        })
        .and_then(|r| r.get("code"))
        .and_then(Value::as_i64)
        .unwrap_or_else(|| http_code(grpc, verb));
    let mut status = Map::new();
    status.insert("metadata".into(), json!({}));
    status.insert("code".into(), json!(status_code));
    if let Some(m) = s(p.get("status").and_then(|st| st.get("message"))) {
        status.insert("message".into(), json!(m));
    }
    if status_code >= 400 {
        status.insert("status".into(), json!("Failure"));
    }
    ev.insert("responseStatus".into(), Value::Object(status));
    if let Some(r) = p.get("request") {
        ev.insert("requestObject".into(), r.clone());
    }
    if let Some(r) = response {
        ev.insert("responseObject".into(), r.clone());
    }
    if let Some(ts) = s(map.get("timestamp")) {
        ev.insert("requestReceivedTimestamp".into(), json!(ts));
        ev.insert("stageTimestamp".into(), json!(ts));
    }
    let mut annotations = Map::new();
    if let Some(labels) = map.get("labels").and_then(Value::as_object) {
        for (k, v) in labels {
            if let Some(v) = v.as_str() {
                annotations.insert(k.clone(), json!(v));
            }
        }
    }
    if !annotations.contains_key("authorization.k8s.io/decision") {
        // without the authorizer's label, the authorization checks say it
        let granted = p
            .get("authorizationInfo")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|i| i.get("granted")?.as_bool())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        if !granted.is_empty() {
            let allow = granted.iter().all(|g| *g);
            annotations.insert(
                "authorization.k8s.io/decision".into(),
                json!(if allow { "allow" } else { "forbid" }),
            );
        }
    }
    if !annotations.is_empty() {
        ev.insert("annotations".into(), Value::Object(annotations));
    }
    Ok(Value::Object(ev))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_names_split_like_the_api_server_paths() {
        let t = target(
            "core/v1/namespaces/default/pods/nginx/exec",
            "io.k8s.core.v1.pods.exec.create",
        );
        assert_eq!(t.group.as_deref(), Some(""));
        assert_eq!(t.namespace.as_deref(), Some("default"));
        assert_eq!(t.resource.as_deref(), Some("pods"));
        assert_eq!(t.name.as_deref(), Some("nginx"));
        assert_eq!(t.subresource.as_deref(), Some("exec"));
        assert_eq!(t.uri, "/api/v1/namespaces/default/pods/nginx/exec");

        let t = target(
            "rbac.authorization.k8s.io/v1/clusterrolebindings/admin-x",
            "io.k8s.authorization.rbac.v1.clusterrolebindings.create",
        );
        assert_eq!(t.group.as_deref(), Some("rbac.authorization.k8s.io"));
        assert_eq!(t.resource.as_deref(), Some("clusterrolebindings"));
        assert_eq!(t.name.as_deref(), Some("admin-x"));
        assert_eq!(t.namespace, None);
        assert_eq!(
            t.uri,
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/admin-x"
        );

        // a namespace itself, and a namespaced list
        let t = target("core/v1/namespaces/cde", "io.k8s.core.v1.namespaces.delete");
        assert_eq!(
            (t.resource.as_deref(), t.name.as_deref()),
            (Some("namespaces"), Some("cde"))
        );
        let t = target(
            "core/v1/namespaces/cde/status",
            "io.k8s.core.v1.namespaces.status.update",
        );
        assert_eq!(t.resource.as_deref(), Some("namespaces"));
        assert_eq!(t.subresource.as_deref(), Some("status"));
        let t = target(
            "core/v1/namespaces/cde/secrets",
            "io.k8s.core.v1.secrets.list",
        );
        assert_eq!(
            (t.namespace.as_deref(), t.resource.as_deref(), t.name),
            (Some("cde"), Some("secrets"), None)
        );
        let t = target("core/v1/nodes", "io.k8s.core.v1.nodes.list");
        assert_eq!((t.resource.as_deref(), t.name), (Some("nodes"), None));

        // non-resource requests
        let t = target("readyz", "io.k8s.get");
        assert_eq!((t.resource, t.uri.as_str()), (None, "/readyz"));
        let t = target("api/v1", "io.k8s.get");
        assert_eq!(t.uri, "/api/v1");
    }

    #[test]
    fn grpc_codes_become_http_codes() {
        assert_eq!(http_code(0, "create"), 201);
        assert_eq!(http_code(0, "get"), 200);
        assert_eq!(http_code(7, "get"), 403);
        assert_eq!(http_code(16, "get"), 401);
        assert_eq!(http_code(5, "delete"), 404);
    }
}
