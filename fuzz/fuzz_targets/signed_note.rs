#![no_main]
//! Signed notes and checkpoints (C2SP signed-note / tlog-checkpoint): strict parsing of
//! arbitrary text never panics, and whatever opens as a checkpoint re-serializes to its body.
use libfuzzer_sys::fuzz_target;
use trailwarden_ledger::note::{open_checkpoint, parse_note, Checkpoint, Ed25519Signer, NoteSigner, NoteVerifier};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = NoteVerifier::parse(text);
    let _ = Checkpoint::parse_text(text);
    if let Ok(note) = parse_note(text) {
        let _ = Checkpoint::parse_text(&note.text);
    }
    let signer = Ed25519Signer::new("fuzz.example/log", &[7; 32]).unwrap();
    let verifier = signer.verifier();
    if let Ok(cp) = open_checkpoint(text, None, &[verifier]) {
        assert!(cp.note.starts_with(&cp.checkpoint.origin));
    }
});
