//! A witness: an independent party that cosigns a log's checkpoints only if each one is
//! consistent with the last one it saw, following the tlog-witness protocol's
//! `add-checkpoint` semantics (`old N`, consistency proof, checkpoint). A log that forks or
//! rolls back cannot get both views cosigned; auditors require a witness cosignature to trust a
//! checkpoint, which bounds what a compromised log key can rewrite.
//!
//! Cosignatures are plain Ed25519 signed-note lines by the witness key over the checkpoint text,
//! so clients that do not know the witness simply ignore them.

use crate::merkle::{self, Hash};
use crate::note::{
    open_checkpoint, parse_note, sign_note, Checkpoint, Ed25519Signer, NoteSigner, NoteVerifier,
};
use base64::Engine;
use std::collections::HashMap;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Why a witness refused a checkpoint (with the tlog-witness HTTP status it maps to).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WitnessError {
    /// The request is malformed (400).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The log is unknown or its signature does not verify (403).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// `old` is not the size the witness holds (409; the body is the witness's size).
    #[error("conflict: the witness holds size {0}")]
    Conflict(u64),
    /// The consistency proof does not verify — a fork or rollback (422).
    #[error("unprocessable: {0}")]
    Inconsistent(String),
}

impl WitnessError {
    /// The tlog-witness HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            WitnessError::BadRequest(_) => 400,
            WitnessError::Forbidden(_) => 403,
            WitnessError::Conflict(_) => 409,
            WitnessError::Inconsistent(_) => 422,
        }
    }
}

struct LogState {
    verifier: NoteVerifier,
    size: u64,
    root: Hash,
}

/// An in-process witness.
pub struct Witness {
    signer: Ed25519Signer,
    logs: HashMap<String, LogState>,
}

impl Witness {
    /// A witness with its own key.
    pub fn new(signer: Ed25519Signer) -> Witness {
        Witness {
            signer,
            logs: HashMap::new(),
        }
    }

    /// Its verifier key.
    pub fn verifier(&self) -> NoteVerifier {
        self.signer.verifier()
    }

    /// Trust a log.
    pub fn add_log(&mut self, origin: &str, verifier: NoteVerifier) {
        self.logs.insert(
            origin.to_string(),
            LogState {
                verifier,
                size: 0,
                root: merkle::empty_root(),
            },
        );
    }

    /// The size the witness holds for a log.
    pub fn latest_size(&self, origin: &str) -> Option<u64> {
        self.logs.get(origin).map(|l| l.size)
    }

    /// `add-checkpoint`: returns the checkpoint with the witness's cosignature added.
    pub fn add_checkpoint(&mut self, body: &str) -> Result<String, WitnessError> {
        let mut lines = body.split('\n');
        let old: u64 = lines
            .next()
            .and_then(|l| l.strip_prefix("old "))
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| WitnessError::BadRequest("first line must be `old N`".into()))?;
        let mut proof: Vec<Hash> = Vec::new();
        for l in lines.by_ref() {
            if l.is_empty() {
                break;
            }
            let h = B64
                .decode(l)
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or_else(|| WitnessError::BadRequest(format!("bad proof line {l:?}")))?;
            proof.push(h);
        }
        let note_text = lines.collect::<Vec<_>>().join("\n");
        let note = parse_note(&note_text).map_err(|e| WitnessError::BadRequest(e.to_string()))?;
        let cp = Checkpoint::parse_text(&note.text)
            .map_err(|e| WitnessError::BadRequest(e.to_string()))?;
        let log = self
            .logs
            .get_mut(&cp.origin)
            .ok_or_else(|| WitnessError::Forbidden(format!("unknown log {}", cp.origin)))?;
        open_checkpoint(
            &note_text,
            Some(&cp.origin),
            std::slice::from_ref(&log.verifier),
        )
        .map_err(|e| WitnessError::Forbidden(e.to_string()))?;
        if old != log.size {
            return Err(WitnessError::Conflict(log.size));
        }
        if cp.size < old {
            return Err(WitnessError::BadRequest(format!(
                "size {} is below old size {old}",
                cp.size
            )));
        }
        if !merkle::verify_consistency(old, cp.size, &log.root, &cp.root, &proof) {
            return Err(WitnessError::Inconsistent(format!(
                "size {} root is not consistent with the witnessed size {old}",
                cp.size
            )));
        }
        log.size = cp.size;
        log.root = cp.root;
        let cosigned = sign_note(&note.text, &[&self.signer])
            .map_err(|e| WitnessError::BadRequest(e.to_string()))?;
        // Keep the log's own signature lines and add the cosignature.
        let sig_line = cosigned.rsplit_once("\n\n").map(|(_, s)| s).unwrap_or("");
        Ok(format!("{note_text}{sig_line}"))
    }
}
