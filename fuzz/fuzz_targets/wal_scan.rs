#![no_main]
//! The WAL scanner and the hashed-record decoder over arbitrary bytes: never panic, and every
//! frame the scanner accepts decodes to a record whose leaf hash matches the stored one.
use libfuzzer_sys::fuzz_target;
use trailwarden_ledger::merkle::leaf_hash;
use trailwarden_ledger::{record, wal};

fuzz_target!(|data: &[u8]| {
    let _ = record::decode(data);
    let mut off = 0;
    while off < data.len() {
        match wal::frame_at(data, off) {
            Ok(f) => {
                let _ = record::decode(f.record);
                off += f.len;
            }
            Err(_) => off += 1,
        }
    }
    let scan = wal::scan(data, 0, [0; 32], 1 << 20);
    for f in &scan.frames {
        assert_eq!(leaf_hash(f.record), f.leaf);
    }
});
