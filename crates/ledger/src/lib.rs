//! # trailwarden-ledger
//!
//! The tamper-evident store: every record is framed into a write-ahead log and acknowledged only
//! after `fdatasync`; all records form an RFC 9162 Merkle tree whose roots are signed as C2SP
//! checkpoints (Ed25519); full WAL files are sealed into Parquet segments that carry the hashed
//! fields next to the query columns; `verify` re-derives everything and locates any change,
//! deletion, insertion, reordering, truncation, substitution or rollback; proofs let anyone with
//! the public key check a record or the log's growth offline.
//!
//! See ARCHITECTURE.md ("Ledger") for the formats and the decisions.
#![warn(missing_docs)]

pub mod anchor;
pub mod datadir;
pub mod keys;
pub mod merkle;
pub mod note;
pub mod proof;
pub mod reader;
pub mod record;
pub mod recover;
pub mod retention;
pub mod segment;
pub mod tiles;
pub mod verify;
pub mod wal;
pub mod witness;
pub mod writer;

pub use datadir::StreamPos;
pub use writer::{Anchor, Clock, Extractor, Ledger, Options, Recovery, SystemClock, WriteGuard};

/// Errors of the ledger.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// An operating-system call failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with which file.
        context: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Input the ledger cannot store, or a request it cannot serve.
    #[error("{0}")]
    Invalid(String),
    /// The stored data is damaged; the writer will not start.
    #[error("ledger corrupt: {0}")]
    Corrupt(String),
    /// Fewer records are present than a signed checkpoint covers.
    #[error("ledger truncated: {have} records present but checkpoints signed {signed}; signed records are missing, restore from backup")]
    Truncated {
        /// Records present.
        have: u64,
        /// Largest signed size.
        signed: u64,
    },
    /// The writer stopped after a failed write or sync and accepts nothing more.
    #[error("writer stopped: {0}")]
    Stopped(String),
    /// Another process holds the writer lock.
    #[error("another trailwarden process is writing to {0} (its LOCK is held)")]
    Locked(String),
}

/// A fresh (removed, not created) scratch path under the temp dir for a unit test.
#[cfg(test)]
pub(crate) fn test_path(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("tw-ledger-unit-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}
