#![no_main]
use libfuzzer_sys::fuzz_target;
use trailwarden_model::Timestamp;

fuzz_target!(|data: &[u8]| {
    let _ = trailwarden_parse::syslog::parse_message(data, Timestamp(1_700_000_000_000_000_000));
});
