//! # trailwarden-model
//!
//! The event model every other trailwarden crate builds on:
//!
//! - [`Record`]: what is stored — the exact raw bytes as received, the source, the receive time,
//!   and either a parsed [`Event`] or a [`Quarantine`] explaining why nothing could be parsed.
//! - [`Event`]: the normalized fields (PCI DSS 10.2.2: user, type, time, outcome, origin,
//!   resource) plus the Kubernetes audit specifics (audit ID, stage, level, authorization).
//! - [`Timestamp`]: nanoseconds since the epoch with a lenient RFC 3339 parser.
//! - [`pci`]: the PCI DSS 10.2.1.x categories and the documented classifier that assigns them.
#![warn(missing_docs)]

pub mod event;
pub mod pci;
pub mod record;
pub mod scratch;
pub mod time;

pub use event::{
    Authz, Completeness, Event, FieldState, Format, Identity, Origin, Outcome, OutcomeResult,
    Pulled, PulledValue, Resource, User,
};
pub use pci::{Classifier, ClassifierConfig, PciCategories, PciCategory};
pub use record::{Body, Location, Quarantine, Record, RecordKind};
pub use time::{parse_duration, parse_time_or_ago, TimeError, Timestamp};

/// Lower-case hex SHA-256 of some bytes.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(data))
}

/// Standard padded base64.
pub mod b64 {
    use base64::Engine;

    /// Encode bytes as standard padded base64.
    pub fn encode(data: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(data)
    }

    /// Decode standard padded base64.
    pub fn decode(s: &str) -> Result<Vec<u8>, base64::DecodeError> {
        base64::engine::general_purpose::STANDARD.decode(s)
    }
}
