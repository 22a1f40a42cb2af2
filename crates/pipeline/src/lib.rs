//! trailwarden's pipeline: what happens to records between the edge that received them (HTTP,
//! syslog, files) and the disk, shared by `serve` and the offline CLI.
//!
//! One ledger writer thread ([`writer`]) owns the ledger and the [`detector`]; everything that
//! has to reach the ledger (ingest batches, access records, alert changes, control-failure
//! alerts, scheduled-rule results) is a job on its queue. It appends what is waiting, commits
//! once (group commit), answers each job, then runs detection over what became durable; alerts
//! are raised into the alert store, whose outbox the delivery worker (`trailwarden-notify`)
//! drains. [`metrics`] holds the counters the pipeline and the edge update.
#![warn(missing_docs)]

pub mod detector;
pub mod metrics;
pub mod writer;

pub use detector::{DetectStats, Detector, RuleConfig, CORRELATION_CAP};
pub use writer::{Batch, ChangeError, Fence, Job, Pipeline, Refused, Stored};

use std::path::PathBuf;

/// Errors of the pipeline.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The ledger failed.
    #[error("ledger: {0}")]
    Ledger(#[from] trailwarden_ledger::LedgerError),
    /// The alert store failed.
    #[error("alert store: {0}")]
    Alert(#[from] trailwarden_alert::AlertError),
}

impl PipelineError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> PipelineError {
        PipelineError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Lock a mutex; a panic elsewhere while it was held does not make its data unusable here (the
/// guarded values are counters and queues that stay consistent per operation).
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}
