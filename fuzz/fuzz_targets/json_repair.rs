#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A repair of a prefix of valid JSON must itself be valid JSON.
    if serde_json_valid(data) {
        for cut in [data.len() / 3, data.len() / 2, data.len() * 2 / 3] {
            if let Some(r) = trailwarden_parse::jsonscan::repair_truncated(&data[..cut]) {
                assert!(serde_json_valid(&r), "repair produced invalid JSON");
            }
        }
    }
});

fn serde_json_valid(b: &[u8]) -> bool {
    trailwarden_parse::jsonscan::is_valid_json(b)
}
