#![no_main]
//! `trailwarden check`: arbitrary text under any of the names that select a reader (policy
//! YAML, JSON settings, TOML config, flag text) is a report or an error naming file and line,
//! never a panic; the SARIF of a report is well formed.
use libfuzzer_sys::fuzz_target;
use trailwarden_compliance::check::{check_text, sarif, Options};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for name in ["policy.yaml", "diag.json", "trailwarden.toml", "flags.txt"] {
        match check_text(name, text, &Options::default()) {
            Ok(r) => {
                let s = sarif(std::slice::from_ref(&r));
                assert_eq!(s["runs"][0]["results"].as_array().map(Vec::len), Some(r.findings.len()));
            }
            Err(e) => assert!(e.to_string().starts_with(name), "{e}"),
        }
    }
});
