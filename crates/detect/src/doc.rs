//! What rules look at: a document's fields by Sigma field name, and its text for keywords.

use serde_json::Value;
use smallvec::SmallVec;
use std::borrow::Cow;

/// The values of one field (most fields have one; no allocation for up to two).
pub type Vals<'a> = SmallVec<[Val<'a>; 2]>;

pub use trailwarden_parse::paths::Val;

/// The Kubernetes audit fields a normalized event holds verbatim (resolved from the field name
/// once, when a rule is loaded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Normalized {
    /// `verb`
    Verb,
    /// `stage`
    Stage,
    /// `requestURI`
    RequestUri,
    /// `objectRef.resource`
    Resource,
    /// `objectRef.subresource`
    Subresource,
    /// `objectRef.namespace`
    Namespace,
    /// `objectRef.name`
    Name,
    /// `objectRef.apiGroup`
    ApiGroup,
    /// `user.username`
    Username,
    /// `user.groups`
    Groups,
    /// `impersonatedUser.username`
    ImpersonatedUsername,
    /// `impersonatedUser.groups`
    ImpersonatedGroups,
    /// `userAgent`
    UserAgent,
    /// `sourceIPs`
    SourceIps,
    /// `responseStatus.code`
    Code,
}

impl Normalized {
    /// The normalized field a Sigma field name is, if it is one.
    pub fn of(field: &str) -> Option<Normalized> {
        Some(match field {
            "verb" => Normalized::Verb,
            "stage" => Normalized::Stage,
            "requestURI" => Normalized::RequestUri,
            "objectRef.resource" => Normalized::Resource,
            "objectRef.subresource" => Normalized::Subresource,
            "objectRef.namespace" => Normalized::Namespace,
            "objectRef.name" => Normalized::Name,
            "objectRef.apiGroup" => Normalized::ApiGroup,
            "user.username" => Normalized::Username,
            "user.groups" => Normalized::Groups,
            "impersonatedUser.username" => Normalized::ImpersonatedUsername,
            "impersonatedUser.groups" => Normalized::ImpersonatedGroups,
            "userAgent" => Normalized::UserAgent,
            "sourceIPs" => Normalized::SourceIps,
            "responseStatus.code" => Normalized::Code,
            _ => return None,
        })
    }
}

/// A document rules are evaluated against.
pub trait Doc {
    /// Every value at a field path (arrays on the way are expanded; empty = absent).
    fn values(&self, field: &str) -> Vals<'_>;
    /// The values of a normalized field when this document answers it without looking the
    /// name up (`None`: ask [`Doc::values`]).
    fn normalized(&self, _field: Normalized) -> Option<Vals<'_>> {
        None
    }
    /// A normalized field that holds at most one string, straight from the document:
    /// `Some(None)` when absent, `Some(Some(s))`; `None` when the field is not such a field
    /// or this document does not answer it this way (ask [`Doc::normalized`]).
    fn normalized_str(&self, _field: Normalized) -> Option<Option<&str>> {
        None
    }
    /// The text keyword searches look in.
    fn text(&self) -> &str;
}

/// A JSON document (a Kubernetes audit event, an Azure record) with its raw text.
pub struct JsonDoc<'a> {
    /// The parsed document.
    pub value: &'a Value,
    /// The bytes as received, as text.
    pub raw: &'a str,
}

/// Every value at a dotted field path in a JSON document (arrays on the way are expanded; keys
/// may contain dots).
pub fn json_values<'v>(value: &'v Value, field: &str) -> Vals<'v> {
    let mut out = Vals::new();
    let segs: SmallVec<[&str; 8]> = field.split('.').collect();
    collect(value, field, &segs, &mut out);
    out
}

impl Doc for JsonDoc<'_> {
    fn values(&self, field: &str) -> Vals<'_> {
        json_values(self.value, field)
    }

    fn text(&self) -> &str {
        self.raw
    }
}

/// A flat document: named string fields (an auditd record: `type`, `a0`, `exe`, `key`, …) and
/// its text.
pub struct FlatDoc<'a> {
    /// Field name and value pairs; a name may repeat.
    pub fields: Vec<(&'a str, &'a str)>,
    /// The text keyword searches look in (the record as received).
    pub text: &'a str,
}

impl Doc for FlatDoc<'_> {
    fn values(&self, field: &str) -> Vals<'_> {
        self.fields
            .iter()
            .filter(|(k, _)| *k == field)
            .map(|(_, v)| Val::Str(Cow::Borrowed(*v)))
            .collect()
    }

    fn text(&self) -> &str {
        self.text
    }
}

fn leaf(v: &Value) -> Val<'_> {
    match v {
        Value::Null => Val::Null,
        Value::Bool(b) => Val::Bool(*b),
        Value::Number(n) => Val::Num(n.as_f64().unwrap_or(f64::NAN), Cow::Owned(n.to_string())),
        Value::String(s) => Val::Str(Cow::Borrowed(s)),
        Value::Array(_) | Value::Object(_) => Val::Composite,
    }
}

/// Walk `segs` from `v`. Keys may themselves contain dots (`authorization.k8s.io/decision`), so
/// at each object the longest run of segments naming a key is taken first; arrays are expanded.
/// The values at path `segs` under `v`; `path` is the same path as text (`segs` joined by
/// dots), so a key that itself holds dots is looked up as a slice of it, not a new string.
fn collect<'a>(v: &'a Value, path: &str, segs: &[&str], out: &mut Vals<'a>) {
    if segs.is_empty() {
        match v {
            Value::Array(items) if items.iter().all(|i| !i.is_array() && !i.is_object()) => {
                out.extend(items.iter().map(leaf));
                if items.is_empty() {
                    out.push(Val::Composite);
                }
            }
            _ => out.push(leaf(v)),
        }
        return;
    }
    match v {
        Value::Object(map) => {
            // the longest key first: `a.b` as one key before `a` then `b`
            for k in (1..=segs.len()).rev() {
                let len = segs[..k].iter().map(|s| s.len()).sum::<usize>() + k - 1;
                let Some(key) = path.get(..len) else {
                    continue;
                };
                if let Some(child) = map.get(key) {
                    let rest = path.get(len + 1..).unwrap_or("");
                    collect(child, rest, &segs[k..], out);
                    return;
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                collect(item, path, segs, out);
            }
        }
        _ => {}
    }
}

/// An audit-event-like document with dotted keys, arrays of objects and of strings (tests).
#[cfg(test)]
pub(crate) const SAMPLE: &str = r#"{"objectRef": {"resource": "pods"},
    "annotations": {"authorization.k8s.io/decision": "allow"},
    "requestObject": {"spec": {"volumes": [
        {"name": "a", "hostPath": {"path": "/etc"}},
        {"name": "b", "emptyDir": {}},
        {"name": "c", "hostPath": {"path": "/var/run/docker.sock"}}
    ]}},
    "user": {"groups": ["system:masters", "system:authenticated"]},
    "code": 403}"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_expand_arrays_and_accept_dotted_keys() {
        let v: Value = serde_json::from_str(SAMPLE).unwrap_or_default();
        let d = JsonDoc { value: &v, raw: "" };
        assert_eq!(
            d.values("objectRef.resource").to_vec(),
            vec![Val::Str("pods".into())]
        );
        assert_eq!(
            d.values("annotations.authorization.k8s.io/decision")
                .to_vec(),
            vec![Val::Str("allow".into())]
        );
        assert_eq!(
            d.values("requestObject.spec.volumes.hostPath.path")
                .to_vec(),
            vec![
                Val::Str("/etc".into()),
                Val::Str("/var/run/docker.sock".into())
            ]
        );
        assert_eq!(d.values("user.groups").len(), 2);
        assert_eq!(
            d.values("code").to_vec(),
            vec![Val::Num(403.0, "403".into())]
        );
        assert!(d.values("missing.field").is_empty());
    }
}
