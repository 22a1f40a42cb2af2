//! trailwarden's scale-out on NATS JetStream (`[cluster]`).
//!
//! * **Ingest nodes** ([`ingest`]) are stateless: the server's pipeline hands them parsed and
//!   normalized batches, which they publish to the stream (`<subject_prefix>.<partition>`) as
//!   messages carrying both the raw bytes and the normalized fields ([`wire`]). The sender is
//!   answered only after JetStream acknowledged every message; message ids come from the
//!   request body, so a retry within the duplicate window is stored once.
//! * **Writers** ([`writer`]): one per partition, under a lease in a JetStream key-value bucket
//!   ([`nats::Lease`]). The lease fences the ledger writer: before every write it asks whether
//!   the lease is still valid, and a deposed writer stops without one more record. The ledger's
//!   own directory lock (flock) makes two processes writing one ledger impossible; the lease
//!   decides which process that is. A writer consumes in stream order from the ledger's own
//!   stream position (kept in each record's WAL metadata and in the manifest), and
//!   acknowledges messages only after the ledger's commit (fsync).
//!
//! JetStream is the transport, not the system of record: the ledger's WAL is.

#![warn(missing_docs)]

pub mod bench;
pub mod config;
pub mod ingest;
pub mod nats;
pub mod wire;
pub mod writer;

pub use config::{ClusterConfig, Role};

/// What went wrong in the cluster layer.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The `[cluster]` settings.
    #[error("cluster configuration: {0}")]
    Config(String),
    /// NATS or JetStream.
    #[error("NATS: {0}")]
    Nats(String),
    /// A message that is not what it should be.
    #[error("message: {0}")]
    Message(String),
    /// This writer lost its lease.
    #[error("fenced: {0}")]
    Fenced(String),
    /// The pipeline stopped.
    #[error("stopped: {0}")]
    Stopped(String),
}
