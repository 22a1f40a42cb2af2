#![no_main]
//! Differential: the one-pass field extraction must answer as the parsed document does (or
//! leave the document to the parser), for every field the built-in pack reads; and so must
//! the values the Kubernetes parser pulls out of a `requestObject` while reading the event.
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};
use trailwarden_detect::doc::json_values;
use trailwarden_detect::extract::Paths;
use trailwarden_parse::paths::{pulling, val_of};

fn fields() -> &'static (Vec<String>, Arc<Paths>) {
    static F: OnceLock<(Vec<String>, Arc<Paths>)> = OnceLock::new();
    F.get_or_init(|| {
        let (rules, _) = trailwarden_detect::builtin_rules();
        let mut fields: Vec<String> = rules
            .iter()
            .flat_map(|r| r.fields())
            .map(str::to_string)
            .chain(["a", "a.b", "a.b.c", "b.c", "requestObject.a", "requestObject.a.b"].map(String::from))
            .collect();
        fields.sort();
        fields.dedup();
        let paths = Arc::new(Paths::new(fields.iter().map(String::as_str)));
        (fields, paths)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (fields, paths) = fields();
    let parsed: Option<serde_json::Value> = serde_json::from_str(text).ok();
    // pulled while parsing an audit event: what the parsed event holds (a top-level key
    // spelled like a deeper path, `"requestObject.a": …`, is the documented exception)
    if let Ok(ev) = pulling(Some(paths), || trailwarden_parse::k8s::parse_event(data)) {
        let obj = parsed.as_ref().and_then(|p| p.as_object());
        if let (Some(pulled), Some(obj)) = (ev.pulled, obj) {
            if !obj.keys().any(|k| k.starts_with("requestObject.")) {
                for f in fields {
                    let slot = paths.slot(f).unwrap_or(usize::MAX);
                    if !paths.is_pulled(slot) {
                        continue;
                    }
                    let got: Vec<_> = pulled
                        .values
                        .iter()
                        .filter(|(s, _)| *s as usize == slot)
                        .map(|(_, v)| val_of(v))
                        .collect();
                    let parsed = parsed.as_ref().map(|p| json_values(p, f).to_vec());
                    assert_eq!(Some(got), parsed, "pulled {f}");
                }
            }
        }
    }
    let Some(ex) = paths.extract(text) else {
        return;
    };
    let parsed = match parsed {
        Some(v) => v,
        None => match serde_json::from_str::<serde_json::Value>(text) {
            // the one leniency: a number too large for a float where no rule looks (the pass
            // skips it unread; the parser refuses the whole document)
            Err(e) if e.to_string().starts_with("number out of range") => return,
            Err(e) => panic!("extracted from a text the parser refuses: {e}"),
            Ok(v) => v,
        },
    };
    for f in fields {
        let slot = paths.slot(f).unwrap_or(usize::MAX);
        assert_eq!(ex.get(slot).cloned().collect::<Vec<_>>(), json_values(&parsed, f).to_vec(), "{f}");
    }
});
