#![no_main]
use libfuzzer_sys::fuzz_target;
use trailwarden_model::Timestamp;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(t) = Timestamp::parse(s) {
            // whatever parses must print and parse back to the same instant
            assert_eq!(Timestamp::parse(&t.to_rfc3339()).ok(), Some(t));
        }
        let _ = Timestamp::parse_unix(s);
    }
});
