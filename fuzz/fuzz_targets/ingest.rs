//! The whole ingest path (framing, detection, every parser) over arbitrary bytes: never panics,
//! and every record produced keeps bytes that came from the input.
#![no_main]
use libfuzzer_sys::fuzz_target;
use trailwarden_model::{Record, Timestamp};
use trailwarden_parse::{Ingestor, Options};

fuzz_target!(|data: &[u8]| {
    let mut n = 0usize;
    let mut sink = |r: Record| -> Result<(), String> {
        assert!(r.raw.len() <= data.len() + r.raw.iter().filter(|&&b| b == b'\n').count());
        n += 1;
        Ok(())
    };
    let opts = Options { max_record_bytes: 4096, max_document_bytes: 1 << 16, ..Options::default() };
    let mut ing = Ingestor::new(opts, &mut sink).with_clock(|| Timestamp(0));
    ing.ingest_bytes("fuzz", data).expect("in-memory input cannot fail to read");
    let s = ing.into_summary();
    assert_eq!(s.records, s.events + s.quarantined);
    assert_eq!(s.records as usize, n);
});
