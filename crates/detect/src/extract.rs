//! The JSON fields a rule set reads, pulled out of a document in one pass: the walker lives
//! in [`trailwarden_parse::paths`] (the parser runs it over a Kubernetes `requestObject` while
//! it reads the event); this module checks it against the parsed document.

pub use trailwarden_parse::paths::{Extracted, Paths};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::{json_values, Val};

    const FIELDS: &[&str] = &[
        "objectRef.resource",
        "annotations.authorization.k8s.io/decision",
        "requestObject.spec.volumes.hostPath.path",
        "requestObject.spec.volumes",
        "requestObject.spec",
        "user.groups",
        "code",
        "a.b",
        "a.b.c",
        "x",
        "missing.field",
    ];

    fn same(text: &str) {
        let paths = Paths::new(FIELDS.iter().copied());
        let v: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
        let ex = paths.extract(text);
        for f in FIELDS {
            let want = json_values(&v, f).to_vec();
            let slot = paths.slot(f).unwrap_or(usize::MAX);
            // every text here is one the pass answers for itself
            let Some(ex) = &ex else {
                panic!("no answer for {text}")
            };
            assert_eq!(
                ex.get(slot).cloned().collect::<Vec<_>>(),
                want,
                "{f} in {text}"
            );
        }
    }

    #[test]
    fn one_pass_gives_what_the_parsed_document_gives() {
        same(crate::doc::SAMPLE);
        same(r#"{"x": [[1, 2], [3]]}"#);
        same(
            r#"{"user": {"groups": []}, "code": 1.5e3, "x": [1, {"y": 2}], "a": [{"b": [{"c": "\u0041"}]}]}"#,
        );
        same(r#"{"x": null, "code": -7, "a": {"b": {"c": [true, false, null]}}}"#);
        same(r#"[{"x": "in an array"}, {"x": "twice"}]"#);
    }

    #[test]
    fn duplicate_and_dotted_keys_are_left_to_the_parser() {
        let paths = Paths::new(FIELDS.iter().copied());
        assert!(paths.extract(r#"{"x": 1, "x": 2}"#).is_none());
        assert!(paths.extract(r#"{"a": {"b": 1}, "a.b": 2}"#).is_none());
        assert!(paths.extract(r#"{"a": {"b": 1}, "x": 2}"#).is_some());
        assert!(paths.extract(r#"{"a": 1} trailing"#).is_none());
        assert!(paths.extract(r#"{"a": "#).is_none());
        // found by the json_extract fuzz target: a number out of range where no rule looks
        let lenient = paths.extract(r#"{"x": 1, "y": 3e6888}"#);
        assert_eq!(
            lenient.map(|e| e.get(paths.slot("x").unwrap_or(0)).count()),
            Some(1)
        );
        assert!(paths.extract(r#"{"x": 3e6888}"#).is_none());
    }

    #[test]
    fn key_search_remembers_per_segment() {
        let paths = Paths::new(["requestObject.spec", "objectRef.resource"]);
        let mut seen = (0, 0);
        let text = br#"{"objectRef": {"resource": "pods"}}"#;
        assert!(!paths.could_have(0, text, &mut seen));
        assert!(paths.could_have(1, text, &mut seen));
        assert_eq!(seen.0.count_ones(), 3); // requestObject (then stop), objectRef, resource
        assert!(!paths.could_have(0, text, &mut seen));
    }

    fn json() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            (-1e6f64..1e6).prop_map(Value::from),
            "[a-c/.]{0,3}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 40, 5, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("a".to_string()),
                        Just("b".to_string()),
                        Just("c".to_string()),
                        Just("a.b".to_string()),
                        Just("x".to_string()),
                        Just("code".to_string()),
                    ],
                    inner,
                    0..4
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// The paths under `requestObject` the parser pulls in these tests (with one it does not).
    const PULLED: &[&str] = &[
        "requestObject",
        "requestObject.a",
        "requestObject.a.b",
        "requestObject.a.b.c",
        "requestObject.x",
        "requestObject.code",
        "objectRef.resource",
    ];

    /// What the Kubernetes parser pulled out of `request_object` (an audit event around it),
    /// per path of `PULLED`, next to what the parsed event gives; `None` when it left the
    /// object to detection.
    #[allow(clippy::type_complexity)]
    fn pulled_and_parsed(
        request_object: &str,
    ) -> Option<Vec<(Vec<Val<'static>>, Vec<Val<'static>>)>> {
        let text = format!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a","verb":"create","requestObject":{request_object}}}"#
        );
        let paths = std::sync::Arc::new(Paths::new(PULLED.iter().copied()));
        let ev = trailwarden_parse::paths::pulling(Some(&paths), || {
            trailwarden_parse::k8s::parse_event(text.as_bytes())
        })
        .ok()?;
        let pulled = ev.pulled?;
        assert_eq!(pulled.paths, paths.id());
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let owned = |v: Val<'_>| match v {
            Val::Str(s) => Val::Str(s.into_owned().into()),
            Val::Num(n, t) => Val::Num(n, t.into_owned().into()),
            Val::Null => Val::Null,
            Val::Bool(b) => Val::Bool(b),
            Val::Composite => Val::Composite,
        };
        Some(
            PULLED
                .iter()
                .filter(|f| paths.slot(f).is_some_and(|s| paths.is_pulled(s)))
                .map(|f| {
                    let slot = paths.slot(f).unwrap_or(usize::MAX);
                    let got = pulled
                        .values
                        .iter()
                        .filter(|(s, _)| *s as usize == slot)
                        .map(|(_, v)| owned(trailwarden_parse::paths::val_of(v)))
                        .collect();
                    (
                        got,
                        json_values(&parsed, f).into_iter().map(owned).collect(),
                    )
                })
                .collect(),
        )
    }

    #[test]
    fn the_parser_pulls_what_the_parsed_event_holds() {
        for ro in [
            r#"{"a": {"b": [{"c": "one"}, {"c": ["two", 3]}]}, "x": null, "code": 1.5e3}"#,
            r#"{"a": [], "x": {"y": 1}}"#,
            r#""a string""#,
            r#"{"a": {"b": {"c": "\u0041\/"}}}"#,
        ] {
            let Some(pairs) = pulled_and_parsed(ro) else {
                panic!("nothing pulled from {ro}");
            };
            assert_eq!(pairs.len(), 6);
            for (got, want) in pairs {
                assert_eq!(got, want, "in {ro}");
            }
        }
        // a key twice is left to detection, which parses the document
        assert!(pulled_and_parsed(r#"{"x": 1, "x": 2}"#).is_none());
        // no request object: every pulled path is absent
        let paths = std::sync::Arc::new(Paths::new(PULLED.iter().copied()));
        let ev = trailwarden_parse::paths::pulling(Some(&paths), || {
            trailwarden_parse::k8s::parse_event(br#"{"kind":"Event","auditID":"a","verb":"get"}"#)
        });
        assert_eq!(
            ev.ok().and_then(|e| e.pulled).map(|p| p.values.len()),
            Some(0)
        );
        // not asked: nothing pulled
        let ev = trailwarden_parse::k8s::parse_event(
            br#"{"kind":"Event","auditID":"a","verb":"get","requestObject":{"a":1}}"#,
        );
        assert!(ev.ok().is_some_and(|e| e.pulled.is_none()));
    }

    proptest::proptest! {
        /// Whatever the request object, the parser pulls what the parsed event holds, or
        /// leaves it to detection.
        #[test]
        fn pulled_values_equal_the_parsed_event(v in json()) {
            if let Some(pairs) = pulled_and_parsed(&v.to_string()) {
                for (got, want) in pairs {
                    proptest::prop_assert_eq!(got, want, "in {}", v);
                }
            }
        }

        /// Whatever the document, the pass answers as the parsed document does, or leaves it
        /// to the parser.
        #[test]
        fn one_pass_equals_the_parsed_document(v in json()) {
            let text = v.to_string();
            let paths = Paths::new(FIELDS.iter().copied());
            // the document as the engine parses it (floats need not round-trip exactly)
            let parsed: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            let ex = paths.extract(&text);
            if let Some(ex) = &ex {
                for f in FIELDS {
                    let slot = paths.slot(f).unwrap_or(usize::MAX);
                    proptest::prop_assert_eq!(ex.get(slot).cloned().collect::<Vec<_>>(), json_values(&parsed, f).to_vec(), "{} in {}", f, text);
                }
            }
        }
    }
}
