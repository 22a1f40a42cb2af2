//! Kubernetes audit events (`audit.k8s.io/v1`, `v1beta1`, and the 2017 shape with a top-level
//! `timestamp`), and AKSAudit / AKSAuditAdmin table rows (the same fields, PascalCase).
//!
//! The event is deserialized once, borrowing strings from the input; request and response
//! objects stay in the raw bytes, except that the fields detection rules read under
//! `requestObject` are pulled out in the same pass when asked ([`crate::paths::pulling`]).

use crate::cow::{CowStr, Scalar};
use crate::error::FormatError;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use std::fmt;
use trailwarden_model::{Event, Format, Identity, OutcomeResult, Timestamp};

type S<'a> = Option<CowStr<'a>>;

/// `UserInfo` of `authentication.k8s.io/v1`.
#[derive(Deserialize, Default)]
pub(crate) struct UserInfo<'a> {
    #[serde(borrow, default)]
    username: S<'a>,
    #[serde(borrow, default)]
    uid: S<'a>,
    #[serde(borrow, default)]
    groups: Option<Vec<CowStr<'a>>>,
}

impl UserInfo<'_> {
    fn into_identity(self) -> Identity {
        Identity {
            name: self.username.map(CowStr::into_string),
            uid: self.uid.map(CowStr::into_string),
            groups: self
                .groups
                .map(|g| g.into_iter().map(CowStr::into_string).collect()),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ObjectRef<'a> {
    #[serde(borrow, default)]
    resource: S<'a>,
    #[serde(borrow, default)]
    namespace: S<'a>,
    #[serde(borrow, default)]
    name: S<'a>,
    #[serde(borrow, default)]
    api_group: S<'a>,
    #[serde(borrow, default)]
    api_version: S<'a>,
    #[serde(borrow, default)]
    subresource: S<'a>,
}

#[derive(Deserialize, Default)]
pub(crate) struct Status<'a> {
    #[serde(default)]
    code: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    status: S<'a>,
    #[serde(borrow, default)]
    reason: S<'a>,
    #[serde(borrow, default)]
    message: S<'a>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Meta<'a> {
    #[serde(borrow, default)]
    creation_timestamp: S<'a>,
}

/// Only the two authorization annotations are kept; others are skipped without allocating.
#[derive(Default)]
pub(crate) struct Annotations<'a> {
    decision: S<'a>,
    reason: S<'a>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Annotations<'a> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Annotations<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of annotations")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Annotations::default();
                while let Some(k) = map.next_key::<CowStr<'de>>()? {
                    match k.as_str() {
                        "authorization.k8s.io/decision" => out.decision = map.next_value()?,
                        "authorization.k8s.io/reason" => out.reason = map.next_value()?,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

/// The fields of an audit event that trailwarden extracts.
#[derive(Deserialize, Default)]
pub(crate) struct RawEvent<'a> {
    #[serde(borrow, default)]
    pub kind: S<'a>,
    #[serde(borrow, default, rename = "apiVersion")]
    pub api_version: S<'a>,
    #[serde(borrow, default, alias = "Level")]
    level: S<'a>,
    #[serde(borrow, default, rename = "auditID", alias = "AuditId")]
    pub audit_id: S<'a>,
    #[serde(borrow, default, alias = "Stage")]
    pub stage: S<'a>,
    #[serde(borrow, default, rename = "requestURI", alias = "RequestUri")]
    pub request_uri: S<'a>,
    #[serde(borrow, default, alias = "Verb")]
    pub verb: S<'a>,
    #[serde(borrow, default, alias = "User")]
    user: Option<UserInfo<'a>>,
    #[serde(
        borrow,
        default,
        rename = "impersonatedUser",
        alias = "ImpersonatedUser"
    )]
    impersonated_user: Option<UserInfo<'a>>,
    #[serde(borrow, default, rename = "sourceIPs", alias = "SourceIps")]
    source_ips: Option<Vec<CowStr<'a>>>,
    #[serde(borrow, default, rename = "userAgent", alias = "UserAgent")]
    user_agent: S<'a>,
    #[serde(borrow, default, rename = "objectRef", alias = "ObjectRef")]
    object_ref: Option<ObjectRef<'a>>,
    #[serde(borrow, default, rename = "responseStatus", alias = "ResponseStatus")]
    response_status: Option<Status<'a>>,
    #[serde(
        borrow,
        default,
        rename = "requestReceivedTimestamp",
        alias = "RequestReceivedTime"
    )]
    request_received: S<'a>,
    #[serde(
        borrow,
        default,
        rename = "stageTimestamp",
        alias = "StageReceivedTime"
    )]
    stage_timestamp: S<'a>,
    #[serde(borrow, default)]
    timestamp: S<'a>,
    #[serde(borrow, default)]
    metadata: Option<Meta<'a>>,
    #[serde(borrow, default, alias = "Annotations")]
    annotations: Option<Annotations<'a>>,
    /// Walked for the fields detection reads when the parser is pulling them, else skipped.
    #[serde(
        default,
        rename = "requestObject",
        deserialize_with = "crate::paths::request_object"
    )]
    request_object: Option<crate::paths::RequestObject>,
    // AKSAudit / AKSAuditAdmin table rows.
    #[serde(borrow, default, rename = "Type")]
    pub table_type: S<'a>,
    #[serde(borrow, default, rename = "TimeGenerated")]
    pub time_generated: S<'a>,
    #[serde(borrow, default, rename = "PodName")]
    pub pod_name: S<'a>,
    #[serde(borrow, default, rename = "_ResourceId")]
    pub resource_id: S<'a>,
}

impl RawEvent<'_> {
    /// Whether the document looks like an audit event (rather than some other JSON object).
    pub fn is_audit_event(&self) -> bool {
        match self.kind.as_deref() {
            Some("Event") => return true,
            Some(_) => return false,
            None => {}
        }
        if self
            .api_version
            .as_deref()
            .is_some_and(|v| v.starts_with("audit.k8s.io/"))
        {
            return true;
        }
        self.audit_id.is_some()
            && (self.verb.is_some() || self.stage.is_some() || self.request_uri.is_some())
    }

    /// Whether this is an AKSAudit / AKSAuditAdmin table row.
    pub fn is_table_row(&self) -> bool {
        self.table_type.is_some() || self.time_generated.is_some()
    }
}

fn parse_time(ev: &mut Event, field: &str, v: &str) -> Option<Timestamp> {
    match Timestamp::parse(v) {
        Ok(t) => Some(t),
        Err(e) => {
            ev.attrs
                .insert("invalid_time".into(), format!("{field}: {}", e.reason));
            None
        }
    }
}

/// Outcome of an HTTP status code.
pub(crate) fn result_of_code(code: i64) -> OutcomeResult {
    match code {
        100..=399 => OutcomeResult::Success,
        400..=599 => OutcomeResult::Failure,
        _ => OutcomeResult::Unknown,
    }
}

/// Build the normalized event. `format` is `K8sAudit` or `Aks` (for wrapped events).
pub(crate) fn to_event(mut raw: RawEvent<'_>, format: Format) -> Result<Event, FormatError> {
    let mut ev = Event::new(format);
    ev.pulled = crate::paths::pulled(raw.request_object.take());
    // Event time: the stage time orders the log; fall back to the request time, then to the
    // legacy top-level timestamp (2017 shape) and metadata.creationTimestamp.
    // (requestReceivedTimestamp stays in the raw bytes; the query layer reads it from there)
    let stage_t = raw.stage_timestamp.as_deref();
    let req_t = raw.request_received.as_deref();
    ev.time = match (stage_t, req_t, raw.timestamp.as_deref()) {
        (Some(s), _, _) => parse_time(&mut ev, "stageTimestamp", s),
        (None, Some(r), _) => parse_time(&mut ev, "requestReceivedTimestamp", r),
        (None, None, Some(t)) => parse_time(&mut ev, "timestamp", t),
        (None, None, None) => match raw
            .metadata
            .as_ref()
            .and_then(|m| m.creation_timestamp.as_deref())
        {
            Some(c) => parse_time(&mut ev, "metadata.creationTimestamp", c),
            None => None,
        },
    };
    if ev.time.is_none() {
        if let Some(tg) = raw.time_generated.as_deref() {
            ev.time = parse_time(&mut ev, "TimeGenerated", tg);
        }
    }
    if let Some(u) = raw.user {
        ev.user.identity = u.into_identity();
    }
    if let Some(u) = raw.impersonated_user {
        ev.user.impersonated = Some(u.into_identity());
    }
    ev.action = raw.verb.map(CowStr::into_string);
    if let Some(ips) = raw.source_ips {
        let ips: Vec<String> = ips.into_iter().map(CowStr::into_string).collect();
        ev.origin.trusted_ip = ips.last().cloned();
        ev.origin.ips = Some(ips);
    }
    ev.origin.user_agent = raw.user_agent.map(CowStr::into_string);
    if let Some(o) = raw.object_ref {
        ev.resource.api_group = o.api_group.map(CowStr::into_string);
        ev.resource.api_version = o.api_version.map(CowStr::into_string);
        ev.resource.resource = o.resource.map(CowStr::into_string);
        ev.resource.subresource = o.subresource.map(CowStr::into_string);
        ev.resource.namespace = o.namespace.map(CowStr::into_string);
        ev.resource.name = o.name.map(CowStr::into_string);
    }
    if let Some(s) = raw.response_status {
        if let Some(c) = s.code {
            match c.0.trim().parse::<i64>() {
                Ok(n) => ev.outcome.code = Some(n),
                Err(_) => {
                    ev.attrs.insert("response_code".into(), c.0.into_owned());
                }
            }
        }
        ev.outcome.result = match (ev.outcome.code, s.status.as_deref()) {
            (_, Some("Failure")) => OutcomeResult::Failure,
            (Some(c), _) => result_of_code(c),
            (None, Some("Success")) => OutcomeResult::Success,
            _ => OutcomeResult::Unknown,
        };
        ev.outcome.reason = s.reason.map(CowStr::into_string);
        ev.outcome.message = s.message.map(CowStr::into_string);
    }
    if raw.stage.as_deref() == Some("Panic") {
        ev.outcome.result = OutcomeResult::Failure;
    }
    ev.request_uri = raw.request_uri.map(CowStr::into_string);
    ev.audit_id = raw.audit_id.map(CowStr::into_string);
    ev.stage = raw.stage.map(CowStr::into_string);
    ev.level = raw.level.map(CowStr::into_string);
    if let Some(a) = raw.annotations {
        ev.authz.decision = a.decision.map(CowStr::into_string);
        ev.authz.reason = a.reason.map(CowStr::into_string);
    }
    if let Some(v) = raw.api_version {
        ev.attrs.insert("api_version".into(), v.into_string());
    }
    // AKSAudit rows: the table says which category the row belongs to.
    if let Some(t) = raw.table_type.as_deref() {
        ev.category = Some(
            match t {
                "AKSAuditAdmin" => "kube-audit-admin",
                _ => "kube-audit",
            }
            .to_string(),
        );
        ev.attrs.insert("table".into(), t.to_string());
    }
    if let Some(p) = raw.pod_name {
        ev.attrs.insert("pod".into(), p.into_string());
    }
    if let Some(r) = raw.resource_id {
        ev.attrs.insert("resource_id".into(), r.into_string());
    }
    Ok(ev)
}

/// Parse one audit event from JSON bytes. `NotThisFormat` when the object is some other JSON.
pub fn parse_event(bytes: &[u8]) -> Result<Event, FormatError> {
    // Validating UTF-8 once for the whole record is cheaper than per string.
    let text = std::str::from_utf8(bytes)
        .map_err(|e| FormatError::invalid(format!("Kubernetes audit event: not UTF-8: {e}")))?;
    let raw: RawEvent = serde_json::from_str(text)
        .map_err(|e| FormatError::invalid(format!("Kubernetes audit event: {e}")))?;
    if !raw.is_audit_event() || raw.is_table_row() {
        return Err(FormatError::NotThisFormat("a Kubernetes audit event"));
    }
    to_event(raw, Format::K8sAudit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_event() {
        let ev = parse_event(
            br#"{"kind":"Event","verb":"propfind","user":{"username":"system:anonymous","groups":[]},"sourceIPs":["1.2.3.4","10.0.0.1"],"responseStatus":{"code":403,"status":"Failure","reason":"Forbidden"},"stage":"ResponseComplete","stageTimestamp":"2022-11-29 00:09:04.38","annotations":{"authorization.k8s.io/decision":"forbid","authorization.k8s.io/reason":"","x":{"y":1}}}"#,
        )
        .unwrap();
        assert_eq!(ev.action.as_deref(), Some("propfind"));
        assert_eq!(ev.user.identity.groups, Some(vec![]));
        assert_eq!(ev.origin.trusted_ip.as_deref(), Some("10.0.0.1"));
        assert_eq!(ev.outcome.result, OutcomeResult::Failure);
        assert_eq!(ev.outcome.code, Some(403));
        assert_eq!(ev.authz.decision.as_deref(), Some("forbid"));
        assert_eq!(ev.authz.reason.as_deref(), Some(""));
        assert_eq!(ev.time.unwrap().to_rfc3339(), "2022-11-29T00:09:04.380Z");
        assert!(ev.resource.is_absent());
    }

    /// The request object is a field the parser reads (for the values detection pulls), so
    /// like every other field it may be given once: a document that gives it twice is
    /// ambiguous (which one would rules see?) and is refused, to be quarantined.
    #[test]
    fn a_request_object_given_twice_is_refused() {
        let twice =
            br#"{"kind":"Event","verb":"create","requestObject":{"a":1},"requestObject":{"a":2}}"#;
        let e = parse_event(twice).unwrap_err();
        assert!(
            matches!(e, FormatError::Invalid(ref m) if m.contains("duplicate field `requestObject`")),
            "{e}"
        );
        let once =
            br#"{"kind":"Event","verb":"create","requestObject":{"a":1},"responseObject":{}}"#;
        assert!(parse_event(once).is_ok_and(|ev| ev.pulled.is_none()));
    }

    #[test]
    fn kind_must_be_a_string() {
        let e = parse_event(br#"{"kind": 0}"#).unwrap_err();
        assert!(
            matches!(e, FormatError::Invalid(ref m) if m.contains("invalid type")),
            "{e}"
        );
    }

    #[test]
    fn other_kinds_are_not_events() {
        assert!(matches!(
            parse_event(br#"{"kind":"Pod","apiVersion":"v1"}"#),
            Err(FormatError::NotThisFormat(_))
        ));
    }

    #[test]
    fn panic_stage_is_failure() {
        let ev =
            parse_event(br#"{"kind":"Event","stage":"Panic","auditID":"x","verb":"get"}"#).unwrap();
        assert_eq!(ev.outcome.result, OutcomeResult::Failure);
    }
}
