#![no_main]
//! tlog-proof and consistency proof files from untrusted hands: checking them never panics.
use libfuzzer_sys::fuzz_target;
use trailwarden_ledger::note::{Ed25519Signer, NoteSigner};
use trailwarden_ledger::proof;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let verifier = Ed25519Signer::new("fuzz.example/log", &[7; 32]).unwrap().verifier();
    let _ = proof::verify_inclusion_file(text, &verifier);
    let mid = (0..=text.len() / 2).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
    let (a, b) = text.split_at(mid);
    let _ = proof::verify_consistency_file(a, Some(b), &verifier);
    let _ = proof::verify_consistency_file(text, None, &verifier);
});
