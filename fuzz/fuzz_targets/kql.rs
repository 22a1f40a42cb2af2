#![no_main]
//! KQL text: the lexer and parser never panic on any input, and every error they return can be
//! rendered (line, column, caret) whatever byte offset it points at. The JSON-text walker behind
//! `dynamic` values never panics either, on the same bytes taken as a document.
use libfuzzer_sys::fuzz_target;
use trailwarden_kql::json;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match trailwarden_kql::parse(text) {
        Ok(q) => {
            let _ = format!("{q:?}");
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("line "), "{msg}");
        }
    }
    let _ = json::get_key(text, "verb");
    let _ = json::get_index(text, 1);
    let _ = json::get_index(text, -1);
    let _ = json::elements(text);
    let _ = json::keys(text);
    let _ = json::to_string(text);
    let _ = json::compact(text);
    let _ = json::parse(text);
    let _ = json::to_f64(text);
    let _ = json::to_i64(text);
    let _ = trailwarden_kql::parse_datetime(text);
});
