#![no_main]
//! Differential: the one-pass field extraction must answer as the parsed document does (or
//! leave the document to the parser), for every field the built-in pack reads.
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use trailwarden_detect::doc::json_values;
use trailwarden_detect::extract::Paths;

fn fields() -> &'static (Vec<String>, Paths) {
    static F: OnceLock<(Vec<String>, Paths)> = OnceLock::new();
    F.get_or_init(|| {
        let (rules, _) = trailwarden_detect::builtin_rules();
        let mut fields: Vec<String> = rules
            .iter()
            .flat_map(|r| r.fields())
            .map(str::to_string)
            .chain(["a", "a.b", "a.b.c", "b.c"].map(String::from))
            .collect();
        fields.sort();
        fields.dedup();
        let paths = Paths::new(fields.iter().map(String::as_str));
        (fields, paths)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (fields, paths) = fields();
    let Some(ex) = paths.extract(text) else {
        return;
    };
    let parsed: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        // the one leniency: a number too large for a float where no rule looks (the pass
        // skips it unread; the parser refuses the whole document)
        Err(e) if e.to_string().starts_with("number out of range") => return,
        Err(e) => panic!("extracted from a text the parser refuses: {e}"),
    };
    for f in fields {
        let slot = paths.slot(f).unwrap_or(usize::MAX);
        assert_eq!(ex.get(slot).cloned().collect::<Vec<_>>(), json_values(&parsed, f).to_vec(), "{f}");
    }
});
