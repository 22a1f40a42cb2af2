//! # trailwarden-compliance
//!
//! The PCI DSS 4.0.1 Requirement 10 workflow on top of the ledger:
//!
//! - [`check`]: the logging-configuration posture — a Kubernetes audit `Policy`, the
//!   kube-apiserver flags (static-pod manifest or flag list), AKS diagnostic settings as
//!   `az monitor diagnostic-settings list` prints them, and trailwarden's own config — each
//!   finding with the sub-requirement it breaks, a severity and the fix.
#![warn(missing_docs)]

pub mod check;

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
    /// A file is none of the inputs `check` knows.
    #[error("{file}: {why}")]
    Unknown {
        /// The file.
        file: String,
        /// Why it was not recognised.
        why: String,
    },
}
