#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = trailwarden_parse::azure::parse_activity(data);
    let _ = trailwarden_parse::azure::parse_signin(data);
});
