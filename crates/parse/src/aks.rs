//! AKS diagnostic records (storage-blob JSONL, Event Hub `{"records":[…]}` bodies) and
//! Log Analytics `AzureDiagnostics` rows of AKS categories.
//!
//! - `properties.log` is usually the audit event as a JSON *string* with a trailing newline (it
//!   is decoded and parsed a second time); Elastic's Event Hub variant has it as an object.
//! - The envelope `time` is when AKS shipped the line, not when the request happened: the event
//!   time comes from the inner event, and the envelope time only when the inner one is lost.
//! - AKS cuts `properties.log` at 16 KiB (Azure/AKS#4635): such an event is repaired up to its
//!   last complete field, kept, and flagged `truncated`.
//! - Other categories in the same stream (`kube-apiserver`, `kube-controller-manager`, `guard`…)
//!   hold klog text: they are kept as events of their own category with the text as message.

use crate::cow::CowStr;
use crate::error::FormatError;
use crate::jsonscan::repair_truncated;
use crate::k8s::{self, RawEvent};
use serde::Deserialize;
use serde_json::value::RawValue;
use trailwarden_model::{Event, Format, Timestamp};

type S<'a> = Option<CowStr<'a>>;

#[derive(Deserialize, Default)]
struct Props<'a> {
    #[serde(borrow, default)]
    log: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pod: S<'a>,
    #[serde(borrow, default, rename = "containerID")]
    container_id: S<'a>,
    #[serde(borrow, default)]
    stream: S<'a>,
}

/// One AKS diagnostic record or AzureDiagnostics row.
#[derive(Deserialize, Default)]
pub(crate) struct Record<'a> {
    #[serde(borrow, default)]
    category: S<'a>,
    #[serde(borrow, default, rename = "operationName")]
    operation_name: S<'a>,
    #[serde(borrow, default, rename = "resourceId")]
    resource_id: S<'a>,
    #[serde(borrow, default)]
    time: S<'a>,
    #[serde(borrow, default)]
    properties: Option<Props<'a>>,
    #[serde(borrow, default, rename = "ccpNamespace")]
    ccp_namespace: S<'a>,
    // AzureDiagnostics table rows
    #[serde(borrow, default, rename = "Category")]
    category_col: S<'a>,
    #[serde(borrow, default)]
    log_s: S<'a>,
    #[serde(borrow, default)]
    pod_s: S<'a>,
    #[serde(borrow, default, rename = "TimeGenerated")]
    time_generated: S<'a>,
    #[serde(borrow, default, rename = "ResourceId", alias = "_ResourceId")]
    resource_id_col: S<'a>,
}

/// Whether a category name carries Kubernetes audit events.
pub fn is_audit_category(c: &str) -> bool {
    c == "kube-audit" || c == "kube-audit-admin"
}

const KLOG_LEVELS: [(u8, &str); 4] = [
    (b'I', "Info"),
    (b'W', "Warning"),
    (b'E', "Error"),
    (b'F', "Fatal"),
];

/// Severity of a klog line (`I0202 15:03:28.853066 1 event.go:291] …`).
fn klog_level(text: &str) -> Option<&'static str> {
    let b = text.as_bytes();
    if b.len() > 5 && b[1..5].iter().all(|c| c.is_ascii_digit()) {
        KLOG_LEVELS
            .iter()
            .find(|(c, _)| *c == b[0])
            .map(|(_, l)| *l)
    } else {
        None
    }
}

/// Parse an AKS record; `NotThisFormat` when the object is not one.
pub fn parse_record(bytes: &[u8]) -> Result<Event, FormatError> {
    let rec: Record = serde_json::from_slice(bytes)
        .map_err(|e| FormatError::invalid(format!("AKS diagnostic record: {e}")))?;
    let (category, log_text, pod, time, resource_id, row) = if let Some(props) = &rec.properties {
        let Some(log) = props.log else {
            return Err(FormatError::NotThisFormat("an AKS diagnostic record"));
        };
        let Some(cat) = rec.category.as_deref() else {
            return Err(FormatError::NotThisFormat("an AKS diagnostic record"));
        };
        let text: String = if log.get().starts_with('"') {
            match crate::jsonscan::unescape_string(log.get()) {
                Some(t) => t,
                // let the general parser say precisely what is wrong
                None => serde_json::from_str::<String>(log.get())
                    .map_err(|e| FormatError::invalid(format!("AKS properties.log: {e}")))?,
            }
        } else {
            log.get().to_string()
        };
        (
            cat.to_string(),
            text,
            props.pod.as_deref().map(str::to_string),
            rec.time.as_deref(),
            rec.resource_id.as_deref(),
            false,
        )
    } else if let (Some(cat), Some(log)) = (rec.category_col.as_deref(), rec.log_s.as_deref()) {
        (
            cat.to_string(),
            log.to_string(),
            rec.pod_s.as_deref().map(str::to_string),
            rec.time_generated.as_deref(),
            rec.resource_id_col.as_deref(),
            true,
        )
    } else {
        return Err(FormatError::NotThisFormat("an AKS diagnostic record"));
    };

    let envelope_time = match time {
        Some(t) => Some(Timestamp::parse(t).map_err(|e| {
            FormatError::invalid(format!(
                "AKS record {}: {e}",
                if row { "TimeGenerated" } else { "time" }
            ))
        })?),
        None => None,
    };

    let mut ev = if is_audit_category(&category) {
        audit_event(&log_text)?
    } else {
        let mut ev = Event::new(Format::Aks);
        let msg = log_text.strip_suffix('\n').unwrap_or(&log_text);
        ev.level = klog_level(msg).map(str::to_string);
        ev.message = Some(msg.to_string());
        ev
    };
    if ev.time.is_none() {
        ev.time = envelope_time;
    }
    ev.category = Some(category);
    ev.payload = Some(log_text);
    if let Some(t) = envelope_time {
        ev.attrs.insert("envelope_time".into(), t.to_rfc3339());
    }
    ev.attr("pod", pod);
    ev.attr("resource_id", resource_id);
    ev.attr("operation_name", rec.operation_name.as_deref());
    ev.attr("ccp_namespace", rec.ccp_namespace.as_deref());
    if let Some(p) = &rec.properties {
        ev.attr("container_id", p.container_id.as_deref());
        ev.attr("stream", p.stream.as_deref());
    }
    if row {
        ev.attrs.insert("table".into(), "AzureDiagnostics".into());
    }
    Ok(ev)
}

/// Parse the inner audit event of a `kube-audit` record, repairing an AKS truncation.
fn audit_event(text: &str) -> Result<Event, FormatError> {
    match serde_json::from_str::<RawEvent>(text) {
        Ok(raw) => {
            if !raw.is_audit_event() {
                return Err(FormatError::invalid(
                    "AKS kube-audit record: properties.log is JSON but not a Kubernetes audit event",
                ));
            }
            k8s::to_event(raw, Format::Aks)
        }
        Err(e) if e.is_eof() => {
            // Cut off by AKS: keep what precedes the cut.
            let repaired = repair_truncated(text.as_bytes());
            let mut ev = match repaired
                .as_deref()
                .and_then(|r| serde_json::from_slice::<RawEvent>(r).ok())
            {
                Some(raw) => k8s::to_event(raw, Format::Aks)?,
                None => Event::new(Format::Aks),
            };
            ev.truncated = true;
            ev.attrs
                .insert("truncated_at".into(), text.len().to_string());
            Ok(ev)
        }
        Err(e) => Err(FormatError::invalid(format!(
            "AKS kube-audit record: properties.log is not valid JSON: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_inner_event_is_kept_and_flagged() {
        let inner = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"a1","stage":"ResponseComplete","requestURI":"/api/v1/nodes/n1","verb":"patch","user":{"username":"system:node:n1"},"sourceIPs":["10.0.0.4"],"objectRef":{"resource":"nodes","name":"n1"},"requestObject":{"status":{"images":[{"names":["a","b"#;
        let rec = serde_json::json!({
            "category": "kube-audit",
            "operationName": "Microsoft.ContainerService/managedClusters/diagnosticLogs/Read",
            "properties": {"log": inner, "pod": "kube-apiserver-1"},
            "time": "2024-11-15T21:00:00.1545349Z"
        });
        let ev = parse_record(rec.to_string().as_bytes()).unwrap();
        assert!(ev.truncated);
        assert_eq!(ev.action.as_deref(), Some("patch"));
        assert_eq!(ev.resource.name.as_deref(), Some("n1"));
        assert_eq!(
            ev.time.unwrap().to_rfc3339(),
            "2024-11-15T21:00:00.154534900Z"
        );
        assert_eq!(ev.category.as_deref(), Some("kube-audit"));
    }

    #[test]
    fn azure_diagnostics_row() {
        let row = serde_json::json!({
            "TimeGenerated": "2024-01-01T00:00:01Z",
            "Category": "kube-audit-admin",
            "log_s": r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"x","stage":"ResponseComplete","verb":"create","stageTimestamp":"2024-01-01T00:00:00.5Z","objectRef":{"resource":"pods","namespace":"cde"}}"#,
            "pod_s": "kube-apiserver-abc",
            "ResourceId": "/SUBSCRIPTIONS/X/MANAGEDCLUSTERS/C"
        });
        let ev = parse_record(row.to_string().as_bytes()).unwrap();
        assert_eq!(ev.format, Format::Aks);
        assert_eq!(ev.time.unwrap().to_rfc3339(), "2024-01-01T00:00:00.500Z");
        assert_eq!(ev.attrs["pod"], "kube-apiserver-abc");
        assert_eq!(ev.attrs["table"], "AzureDiagnostics");
    }

    #[test]
    fn klog_categories_are_kept() {
        let rec = serde_json::json!({
            "category": "kube-controller-manager",
            "properties": {"log": "E0202 15:03:28.853066       1 x.go:1] boom\n"},
            "time": "2021-02-02T15:03:28Z"
        });
        let ev = parse_record(rec.to_string().as_bytes()).unwrap();
        assert_eq!(ev.level.as_deref(), Some("Error"));
        assert_eq!(
            ev.message.as_deref(),
            Some("E0202 15:03:28.853066       1 x.go:1] boom")
        );
        assert!(ev.action.is_none());
    }
}
