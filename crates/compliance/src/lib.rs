//! # trailwarden-compliance
//!
//! The PCI DSS 4.0.1 Requirement 10 workflow on top of the ledger:
//!
//! - [`check`]: the logging-configuration posture — a Kubernetes audit `Policy`, the
//!   kube-apiserver flags (static-pod manifest or flag list), AKS diagnostic settings as
//!   `az monitor diagnostic-settings list` prints them, and trailwarden's own config — each
//!   finding with the sub-requirement it breaks, a severity and the fix.
//! - [`review`]: the daily review (10.4.1) and periodic reviews of other logs (10.4.2), built
//!   from the ledger and the alert store, hashed, recorded in the ledger and signed off by a
//!   reviewer; [`store`] keeps them (`compliance.db`), [`render`] prints them (HTML, CSV).
//! - [`controls`]: control-failure incidents (10.7.1–10.7.3) with start, end, duration, cause
//!   and remediation, and when a failed control counts as working again.
//! - [`report`]: the Requirement 10 evidence report, 10.1.1 through 10.7.3, each met / gap /
//!   attest with its evidence.
#![warn(missing_docs)]

pub mod check;
pub mod controls;
pub mod render;
pub mod report;
pub mod review;
pub mod store;

use std::path::PathBuf;

/// Errors of the compliance workflow.
#[derive(Debug, thiserror::Error)]
pub enum ComplianceError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not valid YAML, JSON or TOML, or not the shape its kind needs.
    #[error("{file}:{line}:{column}: {message}")]
    Parse {
        /// The file.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A setting is invalid.
    #[error("configuration: {0}")]
    Config(String),
    /// The ledger could not be read.
    #[error("ledger: {0}")]
    Ledger(String),
    /// The compliance store failed.
    #[error("compliance store {path}: {source}")]
    Db {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// No review has this id.
    #[error("no review {0}")]
    NoReview(String),
    /// The review cannot change in its state.
    #[error("review {id}: {why}")]
    ReviewState {
        /// The review.
        id: String,
        /// Why not.
        why: String,
    },
    /// A file is none of the inputs `check` knows.
    #[error("{file}: {why}")]
    Unknown {
        /// The file.
        file: String,
        /// Why it was not recognised.
        why: String,
    },
}

impl ComplianceError {
    /// A ledger error, kept as text (the ledger crate's error is not `Sync`-bound here).
    pub fn ledger(e: impl std::fmt::Display) -> ComplianceError {
        ComplianceError::Ledger(e.to_string())
    }
}
