#![no_main]
use libfuzzer_sys::fuzz_target;
use trailwarden_model::Location;
use trailwarden_parse::auditd::Assembler;

fuzz_target!(|data: &[u8]| {
    let mut a = Assembler::new(4);
    for line in data.split(|&b| b == b'\n') {
        let _ = a.push(line, Location::default());
    }
    let _ = a.flush();
});
