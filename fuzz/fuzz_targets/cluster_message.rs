#![no_main]
use libfuzzer_sys::fuzz_target;

// A JetStream message the writer consumes: anything decodes to a message or an error (the
// writer quarantines it), never a panic or an allocation the bytes do not justify; what
// decodes re-encodes to the same bytes.
fuzz_target!(|data: &[u8]| {
    if let Ok(trailwarden_cluster::wire::Message::Records { endpoint, sender, records }) =
        trailwarden_cluster::wire::decode(data)
    {
        let enc: Vec<_> = records
            .iter()
            .filter_map(|r| trailwarden_cluster::wire::EncodedRecord::new(r).ok())
            .collect();
        let again = trailwarden_cluster::wire::records_message(&endpoint, &sender, &enc);
        assert!(trailwarden_cluster::wire::decode(&again).is_ok());
    }
});
