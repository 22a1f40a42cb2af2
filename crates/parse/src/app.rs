//! Structured application audit events: the schema the AKS PCI guidance (seed 000) requires of
//! every application — `timestamp`, `user_id`, `action`, `resource`, `result`, `source_ip` —
//! plus the optional fields applications commonly add.

use crate::azure::{get, get_text, text};
use crate::error::FormatError;
use crate::k8s::result_of_code;
use serde_json::{Map, Value};
use trailwarden_model::{Event, Format, OutcomeResult, Timestamp};

/// Whether an object is an application audit event.
pub fn is_app_event(obj: &Map<String, Value>) -> bool {
    obj.contains_key("action")
        && (obj.contains_key("user_id") || obj.contains_key("userId"))
        && (obj.contains_key("timestamp") || obj.contains_key("result"))
}

fn result_of(s: &str) -> OutcomeResult {
    if let Ok(n) = s.trim().parse::<i64>() {
        return result_of_code(n);
    }
    match s.to_ascii_lowercase().as_str() {
        "success" | "succeeded" | "ok" | "allowed" | "allow" | "granted" | "true" | "pass"
        | "passed" => OutcomeResult::Success,
        "failure" | "failed" | "fail" | "denied" | "deny" | "forbidden" | "unauthorized"
        | "error" | "blocked" | "rejected" | "false" | "invalid" => OutcomeResult::Failure,
        _ => OutcomeResult::Unknown,
    }
}

/// Parse an application audit event.
pub fn parse(bytes: &[u8]) -> Result<Event, FormatError> {
    let obj = match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => m,
        Ok(_) => return Err(FormatError::NotThisFormat("a JSON object")),
        Err(e) => {
            return Err(FormatError::invalid(format!(
                "application audit event: {e}"
            )))
        }
    };
    if !is_app_event(&obj) {
        return Err(FormatError::NotThisFormat("an application audit event"));
    }
    from_object(&obj)
}

pub(crate) fn from_object(obj: &Map<String, Value>) -> Result<Event, FormatError> {
    let mut ev = Event::new(Format::App);
    if let Some(t) = get(obj, &["timestamp", "time", "ts"]) {
        ev.time = Some(match t {
            Value::Number(n) => {
                // epoch seconds or milliseconds
                let v = n.as_f64().unwrap_or(0.0);
                let secs = if v > 1e11 { v / 1000.0 } else { v };
                Timestamp::from_secs_nanos(secs.trunc() as i64, (secs.fract() * 1e9) as u32)
            }
            Value::String(s) => Timestamp::parse(s)
                .or_else(|_| Timestamp::parse_unix(s))
                .map_err(|e| {
                    FormatError::invalid(format!("application audit event timestamp: {e}"))
                })?,
            other => {
                return Err(FormatError::invalid(format!(
                    "application audit event timestamp: expected a string or number, got {other}"
                )))
            }
        });
    }
    ev.user.identity.name = get_text(obj, &["user_id", "userId", "user"]);
    ev.user.identity.uid = get_text(obj, &["user_uid", "uid"]);
    if let Some(Value::Array(roles)) = get(obj, &["roles", "groups", "user_roles"]) {
        ev.user.identity.groups = Some(roles.iter().filter_map(text).collect());
    }
    ev.action = get_text(obj, &["action"]);
    if let Some(r) = get(obj, &["result", "outcome", "status"]) {
        let r = text(r).unwrap_or_default();
        ev.outcome.result = result_of(&r);
        if let Ok(n) = r.trim().parse::<i64>() {
            ev.outcome.code = Some(n);
        } else if ev.outcome.result != OutcomeResult::Success {
            ev.outcome.reason = Some(r);
        }
    }
    if let Some(c) =
        get_text(obj, &["status_code", "http_status"]).and_then(|c| c.parse::<i64>().ok())
    {
        ev.outcome.code = Some(c);
        if ev.outcome.result == OutcomeResult::Unknown {
            ev.outcome.result = result_of_code(c);
        }
    }
    if let Some(reason) = get_text(obj, &["reason", "error"]) {
        ev.outcome.reason = Some(reason);
    }
    match get(obj, &["source_ip", "sourceIp", "client_ip", "ip"]) {
        Some(Value::Array(ips)) => {
            let ips: Vec<String> = ips.iter().filter_map(text).collect();
            ev.origin.trusted_ip = ips.last().cloned();
            ev.origin.ips = Some(ips);
        }
        Some(v) => {
            if let Some(ip) = text(v) {
                ev.origin.ips = Some(vec![ip.clone()]);
                ev.origin.trusted_ip = Some(ip);
            }
        }
        None => {}
    }
    ev.origin.user_agent = get_text(obj, &["user_agent", "userAgent"]);
    ev.origin.host = get_text(obj, &["host", "hostname"]);
    match get(obj, &["resource"]) {
        Some(Value::Object(r)) => {
            ev.resource.resource = get_text(r, &["type", "kind"]);
            ev.resource.name = get_text(r, &["id", "name"]);
            ev.resource.namespace = get_text(r, &["namespace", "tenant"]);
        }
        Some(v) => ev.resource.name = text(v),
        None => {}
    }
    ev.resource.resource = ev
        .resource
        .resource
        .take()
        .or_else(|| get_text(obj, &["resource_type"]));
    ev.audit_id = get_text(obj, &["event_id", "id", "request_id", "requestId"]);
    ev.level = get_text(obj, &["level", "severity"]);
    ev.message = get_text(obj, &["message", "msg"]);
    ev.attr("service", get_text(obj, &["service", "app", "application"]));
    ev.attr("session_id", get_text(obj, &["session_id", "sessionId"]));
    ev.attr("request_id", get_text(obj, &["request_id", "requestId"]));
    ev.attr("namespace", get_text(obj, &["namespace"]));
    ev.attr("pod", get_text(obj, &["pod", "pod_name"]));
    Ok(ev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_schema() {
        let ev = parse(br#"{"timestamp":"2025-06-25T10:00:00Z","user_id":"u-17","action":"card.read","resource":"cardholder/4111","result":"denied","source_ip":"10.1.2.3"}"#).unwrap();
        assert_eq!(ev.user.identity.name.as_deref(), Some("u-17"));
        assert_eq!(ev.outcome.result, OutcomeResult::Failure);
        assert_eq!(ev.outcome.reason.as_deref(), Some("denied"));
        assert_eq!(ev.resource.name.as_deref(), Some("cardholder/4111"));
        assert_eq!(ev.origin.trusted_ip.as_deref(), Some("10.1.2.3"));
    }

    #[test]
    fn bad_timestamp_is_an_error() {
        let e =
            parse(br#"{"timestamp":"soon","user_id":"u","action":"x","result":"ok"}"#).unwrap_err();
        assert!(e.to_string().contains("timestamp"), "{e}");
    }
}
