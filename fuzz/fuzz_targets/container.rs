#![no_main]
use libfuzzer_sys::fuzz_target;
use trailwarden_model::Location;
use trailwarden_parse::container::Reassembler;

fuzz_target!(|data: &[u8]| {
    let mut r = Reassembler::new();
    for line in data.split(|&b| b == b'\n') {
        let _ = r.push_cri(line, Location::default());
        let _ = r.push_docker(line, Location::default());
    }
    let _ = r.flush();
});
