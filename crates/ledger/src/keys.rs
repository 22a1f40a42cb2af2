//! Checkpoint key rotation: which keys may sign which tree sizes (PCI DSS 10.2.1.6 records the
//! rotation itself).
//!
//! identity.json names the genesis key, valid from size 0. A rotation appends a `KeyRotation`
//! lifecycle record at index `i` naming the new key, the old key and the first size the new key
//! signs (`i + 1`), with the new key's signature over [`pop_message`] (proof of possession); a
//! checkpoint signed by the old key then covers that record, and only after that does the new key
//! sign anything. `keys.log` lists the rotations so that readers know the keys before they read
//! the records; it is an index, not a source of trust: `verify` confirms every entry against its
//! record in the tree, and a key that appears only in `keys.log` is an integrity failure.
//!
//! Until the previous key is retired, checkpoints carry both signatures, so verifiers that know
//! only the old key keep working through the overlap (signed-note verifiers ignore unknown keys).

use crate::note::{self, Checkpoint, Note, NoteError, NoteVerifier, SignedCheckpoint};
use crate::LedgerError;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One rotation, as listed in `keys.log`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyLogEntry {
    /// Index of the `KeyRotation` record in the tree.
    pub index: u64,
    /// The key it replaces.
    pub old_vkey: String,
    /// The new key.
    pub new_vkey: String,
    /// First tree size the new key signs (`index + 1`).
    pub effective_from_size: u64,
}

/// The message the new key signs to prove it is held by whoever rotated.
pub fn pop_message(
    origin: &str,
    old_vkey: &str,
    new_vkey: &str,
    effective_from_size: u64,
) -> String {
    format!("trailwarden-key-rotation/1\n{origin}\n{old_vkey}\n{new_vkey}\n{effective_from_size}\n")
}

/// Read `keys.log` (missing = no rotation). A final line without its newline is an interrupted
/// append and is ignored; any other bad line is corruption.
pub fn read_key_log(p: &Path) -> Result<Vec<KeyLogEntry>, LedgerError> {
    let Some(text) = crate::datadir::read_text_if_exists(p)? else {
        return Ok(Vec::new());
    };
    let complete = match text.rfind('\n') {
        Some(i) => &text[..i],
        None => "",
    };
    complete
        .split('\n')
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(n, l)| {
            serde_json::from_str(l)
                .map_err(|e| LedgerError::Corrupt(format!("{} line {}: {e}", p.display(), n + 1)))
        })
        .collect()
}

/// Append one entry to `keys.log` durably.
pub fn append_key_log(p: &Path, e: &KeyLogEntry) -> Result<(), LedgerError> {
    let mut line = serde_json::to_vec(e).map_err(|e| LedgerError::Invalid(e.to_string()))?;
    line.push(b'\n');
    crate::datadir::append_durable(p, &line)
}

/// The keys of a ledger with the first size each may sign.
#[derive(Clone, Debug)]
pub struct KeySet {
    keys: Vec<(NoteVerifier, u64)>,
}

impl KeySet {
    /// Only the genesis key.
    pub fn new(genesis: NoteVerifier) -> KeySet {
        KeySet {
            keys: vec![(genesis, 0)],
        }
    }

    /// The genesis key followed by the rotations of `keys.log`, which must form a chain (each
    /// entry replaces the key before it, at a larger size).
    pub fn chain(genesis: NoteVerifier, log: &[KeyLogEntry]) -> Result<KeySet, LedgerError> {
        let mut set = KeySet::new(genesis);
        for (n, e) in log.iter().enumerate() {
            let (last, from) = set
                .keys
                .last()
                .map(|(k, f)| (k.vkey(), *f))
                .unwrap_or_default();
            if e.old_vkey != last
                || e.effective_from_size <= from
                || e.effective_from_size != e.index + 1
            {
                return Err(LedgerError::Corrupt(format!(
                    "keys.log entry {} does not follow the key before it ({last} from size {from})",
                    n + 1
                )));
            }
            let v = NoteVerifier::parse(&e.new_vkey)
                .map_err(|err| LedgerError::Corrupt(format!("keys.log entry {}: {err}", n + 1)))?;
            set.keys.push((v, e.effective_from_size));
        }
        Ok(set)
    }

    /// The key that signs now.
    pub fn current(&self) -> &NoteVerifier {
        // never empty: constructed with the genesis key
        &self.keys[self.keys.len() - 1].0
    }

    /// The key before the current one, if any.
    pub fn previous(&self) -> Option<&NoteVerifier> {
        self.keys.len().checked_sub(2).map(|i| &self.keys[i].0)
    }

    /// Whether `vkey` is one of the ledger's keys.
    pub fn contains(&self, vkey: &str) -> bool {
        self.keys.iter().any(|(k, _)| k.vkey() == vkey)
    }

    /// Every key with the first size it may sign.
    pub fn keys(&self) -> &[(NoteVerifier, u64)] {
        &self.keys
    }

    /// The keys allowed to sign a tree of `size` records.
    pub fn valid_at(&self, size: u64) -> Vec<NoteVerifier> {
        self.keys
            .iter()
            .filter(|(_, from)| *from <= size)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Parse and verify a signed checkpoint: at least one key allowed at its size must have
    /// signed it. A signature only by a key that is not yet valid at that size is refused.
    pub fn open_checkpoint(
        &self,
        note_text: &str,
        origin: Option<&str>,
    ) -> Result<SignedCheckpoint, NoteError> {
        let size = Checkpoint::parse_text(&note::parse_note(note_text)?.text)?.size;
        note::open_checkpoint(note_text, origin, &self.valid_at(size))
            .map_err(|e| self.explain(e, size))
    }

    /// Parse and verify another note (a seal note) that commits to a tree of `size` records.
    pub fn open_note(&self, text: &str, size: u64) -> Result<Note, NoteError> {
        let n = note::parse_note(text)?;
        note::verify_note(&n, &self.valid_at(size)).map_err(|e| self.explain(e, size))?;
        Ok(n)
    }

    fn explain(&self, e: NoteError, size: u64) -> NoteError {
        match e {
            NoteError::Untrusted(m) => match self.keys.iter().find(|(_, from)| *from > size) {
                Some((k, from)) if m.contains(&format!("{:08x}", k.id())) => {
                    NoteError::Untrusted(format!(
                        "{m}: key {} may sign only from size {from}, this is size {size}",
                        k.vkey()
                    ))
                }
                _ => NoteError::Untrusted(m),
            },
            other => other,
        }
    }
}
