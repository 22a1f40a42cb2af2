#![no_main]
//! Sigma rule YAML: loading arbitrary text never panics (a bad rule is an error or loads
//! disabled with its reason), and whatever loads can be evaluated against an audit event.
use libfuzzer_sys::fuzz_target;
use trailwarden_detect::{load_str, JsonDoc};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(rules) = load_str(text, "fuzz.yml") else { return };
    let event = serde_json::json!({
        "kind": "Event", "verb": "create", "user": {"username": "system:admin", "groups": ["system:masters"]},
        "objectRef": {"resource": "pods", "subresource": "exec", "namespace": "payments"},
        "sourceIPs": ["10.0.0.1"], "responseStatus": {"code": 403}
    });
    let raw = event.to_string();
    let doc = JsonDoc { value: &event, raw: &raw };
    for r in &rules {
        let hit = r.matches(&doc);
        if r.disabled.is_some() {
            assert!(!hit);
        }
        let _ = r.matched_searches(&doc);
    }
});
