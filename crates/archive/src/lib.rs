//! The archive tier (PCI DSS 10.3.3 prompt backup to a store hard to alter, 10.5.1 twelve months
//! kept): every sealed segment, its seal note, its manifest entry and the signed logs copied to
//! object storage through `object_store` (S3 and S3-compatible, Azure Blob, a local directory).
//!
//! Layout under the archive URL's prefix (one prefix per ledger):
//!
//! ```text
//! identity.json                         the ledger's identity (record 0 hashes it)
//! keys/checkpoint.vkey                  the verifier key at the time of the first upload
//! seg/<first:020>-<last:020>.parquet    sealed segment, byte for byte
//! seg/<first:020>-<last:020>.seal       its signed seal note
//! manifest/<first:020>-<last:020>.json  its manifest entry (written last: "this segment is whole")
//! manifest/<first:020>-<last:020>.pruned.json   after the retention period: the tombstoned entry
//! log/checkpoints/<offset:020>          checkpoints.log from byte `offset`, only checkpoints of
//!                                       sizes the archived segments reach
//! log/keys/<offset:020>                 keys.log from byte `offset`, likewise
//! ```
//!
//! Every write is create-only (`PutMode::Create`: `If-None-Match: *`); an object that exists with
//! the same bytes is success (a retried upload), with other bytes an integrity incident
//! ([`ArchiveError::Conflict`]). Each segment is re-read after upload and compared with the
//! SHA-256 its seal note signs before the manifest records it as archived; only then may the
//! local copy be evicted (after `hot_days`) and only then may retention prune it.

#![warn(missing_docs)]

mod config;
mod immutability;
mod read;
mod store;
mod sync;

pub use config::{ArchiveConfig, LockMode};
pub use immutability::{Immutability, ImmutabilityCheck};
pub use read::{ArchivedSegment, Restored};
pub use store::Archive;
pub use sync::{local_status, marks_refer_to, SegmentStatus, SyncReport};

/// What went wrong in the archive, with the object or file involved.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The archive configuration cannot be used.
    #[error("archive configuration: {0}")]
    Config(String),
    /// The object store refused or failed a request. (Not chained as a `source`: the store's
    /// message already carries its causes, and printing the chain again repeats them.)
    #[error("{op} {key}: {error}")]
    Store {
        /// What was being done (put, get, list, delete).
        op: &'static str,
        /// The object.
        key: String,
        /// The store's error.
        error: object_store::Error,
    },
    /// An object exists with other bytes than the ledger's: an integrity incident.
    #[error("integrity: {key}: {detail}")]
    Conflict {
        /// The object.
        key: String,
        /// What differs.
        detail: String,
    },
    /// A ledger read or write failed.
    #[error(transparent)]
    Ledger(#[from] trailwarden_ledger::LedgerError),
    /// A local file could not be read or written.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl ArchiveError {
    /// Whether retrying later can help (the store was unreachable or failing), as opposed to an
    /// integrity incident or a configuration error.
    pub fn is_transient(&self) -> bool {
        let ArchiveError::Store { error, .. } = self else {
            return false;
        };
        if matches!(
            error,
            object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }
                | object_store::Error::NotFound { .. }
        ) {
            return false;
        }
        // the stores report a missing bucket or container and refused credentials on some
        // calls (list) as a generic error carrying the HTTP status
        let m = error.to_string();
        !["401 Unauthorized", "403 Forbidden", "404 Not Found"]
            .iter()
            .any(|s| m.contains(s))
    }
}

/// Run an async archive operation from synchronous code (the CLI).
pub fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, ArchiveError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| ArchiveError::Io {
            context: "starting the archive runtime".into(),
            source: e,
        })?;
    Ok(rt.block_on(f))
}
