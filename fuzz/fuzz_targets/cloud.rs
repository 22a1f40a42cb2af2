#![no_main]
//! GKE entries and the cloud envelopes (Pub/Sub, CloudWatch Logs) around audit records.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = trailwarden_parse::cloud::export_line(data);
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(data) {
        let _ = trailwarden_parse::gke::parse_entry(&map);
        if trailwarden_parse::cloud::is_envelope(&map) {
            let _ = trailwarden_parse::cloud::unwrap(&map, 1 << 20);
        }
    }
});
