//! # trailwarden-ledger
//!
//! The tamper-evident store. See ARCHITECTURE.md ("Ledger") for the on-disk formats.
#![warn(missing_docs)]

pub mod merkle;
pub mod note;
pub mod record;
pub mod segment;
pub mod wal;

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
    /// Input the ledger cannot store.
    #[error("invalid: {0}")]
    Invalid(String),
}
