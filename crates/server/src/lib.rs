//! trailwarden's server: the Kubernetes audit webhook and the other ingest endpoints, the syslog
//! receiver, the authenticated API (query, alerts, verify, proofs, sources), self-audit of every
//! read and change of audit data, and Prometheus metrics.
//!
//! The shape: one ledger writer thread (`trailwarden-pipeline`) owns the ledger and the detector; HTTP
//! handlers and syslog listeners parse what they receive and hand records to it through a bounded
//! queue, and answer only once the writer says the batch is durable. Everything that reads audit
//! data asks the writer to record the read first.
#![warn(missing_docs)]
// the OpenAPI document is one json! literal
#![recursion_limit = "256"]

/// The value of a `Result<T, Response>`, or return its error response from the handler.
macro_rules! or_return {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(r) => return r,
        }
    };
}

mod admin_api;
pub mod archiving;
pub mod auth;
mod compliance_api;
pub mod config;
mod der;
pub mod http;
pub mod openapi;
mod query_api;
pub mod reviews;
pub mod scheduled;
pub mod server;
mod syslog;
pub mod tls;
pub mod tokens;

pub use config::Config;

pub use http::{AppState, ConnInfo, VerifyStatus};
pub use server::{serve, serve_with, Mount, Started};

use std::path::PathBuf;

/// Errors of the server crate.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration is invalid.
    #[error("configuration: {0}")]
    Config(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A key or token file is readable by others.
    #[error("{path} is readable by group or others (mode {mode:o}); run `chmod 600 {path}`")]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
    /// TLS setup failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The ledger failed.
    #[error("ledger: {0}")]
    Ledger(#[from] trailwarden_ledger::LedgerError),
    /// The alert store failed.
    #[error("alert store: {0}")]
    Alert(#[from] trailwarden_alert::AlertError),
    /// The pipeline (detector, alert store) failed.
    #[error("{0}")]
    Pipeline(#[from] trailwarden_pipeline::PipelineError),
    /// The token store is invalid.
    #[error("tokens: {0}")]
    Tokens(String),
    /// The writer has stopped.
    #[error("the ledger writer has stopped: {0}")]
    Stopped(String),
}

impl ServerError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> ServerError {
        ServerError::Io {
            path: path.into(),
            source,
        }
    }
}

pub(crate) use trailwarden_pipeline::lock;

/// Refuse a secret file that group or others can read.
pub fn check_private(path: &std::path::Path) -> Result<(), ServerError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| ServerError::io(path, e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(ServerError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// Write a secret file: mode 0600 from creation, then fsync, then rename into place.
pub fn write_private(path: &std::path::Path, bytes: &[u8]) -> Result<(), ServerError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| ServerError::io(&tmp, e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| ServerError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| ServerError::io(path, e))
}
