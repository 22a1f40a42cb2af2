//! Records: the unit that is stored. A record holds the exact bytes as received plus what was
//! extracted from them (an [`Event`]) or why nothing could be (a [`Quarantine`]).

use crate::event::{Event, Format};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The kind of a stored record. The numeric values are part of the ledger's hashed encoding and
/// must never change; new kinds take new numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[repr(u8)]
pub enum RecordKind {
    /// An audit event from a source, parsed into an [`Event`].
    Event = 1,
    /// A lifecycle record of the ledger itself (genesis, start, stop, pause, config change, key
    /// rotation, heartbeat) — PCI DSS 10.2.1.6.
    Lifecycle = 2,
    /// A read of audit data through trailwarden (query, export, proof, login) — PCI DSS 10.2.1.3.
    Access = 3,
    /// A retention action (evict, prune tombstone, legal hold).
    Retention = 4,
    /// A receipt from an external anchor / witness.
    AnchorReceipt = 5,
    /// A receipt from a backup to object storage.
    BackupReceipt = 6,
    /// Input that could not be parsed, kept with its raw bytes and the reason.
    Quarantine = 7,
    /// A change to an alert (raised, acknowledged, resolved, false positive) or a review sign-off.
    Alert = 8,
}

impl RecordKind {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Event => "event",
            RecordKind::Lifecycle => "lifecycle",
            RecordKind::Access => "access",
            RecordKind::Retention => "retention",
            RecordKind::AnchorReceipt => "anchor-receipt",
            RecordKind::BackupReceipt => "backup-receipt",
            RecordKind::Quarantine => "quarantine",
            RecordKind::Alert => "alert",
        }
    }

    /// The kind with this numeric code.
    pub fn from_u8(v: u8) -> Option<RecordKind> {
        Some(match v {
            1 => RecordKind::Event,
            2 => RecordKind::Lifecycle,
            3 => RecordKind::Access,
            4 => RecordKind::Retention,
            5 => RecordKind::AnchorReceipt,
            6 => RecordKind::BackupReceipt,
            7 => RecordKind::Quarantine,
            8 => RecordKind::Alert,
            _ => return None,
        })
    }
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where in its input a record's raw bytes started.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Location {
    /// 1-based line number of the first byte.
    pub line: u64,
    /// 0-based byte offset of the first byte in the (decompressed) input.
    pub offset: u64,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, byte {}", self.line, self.offset)
    }
}

/// Why a record was quarantined.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantine {
    /// The format the input was read as, if one was detected or forced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    /// What was wrong, in words.
    pub reason: String,
    /// Total size of the original input when `raw` holds only a prefix of it (input larger than
    /// the quarantine cap); the SHA-256 of the whole input is in `full_sha256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_len: Option<u64>,
    /// Hex SHA-256 of the whole original input when `raw` is only a prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_sha256: Option<String>,
}

/// What a record carries besides its raw bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// A parsed event.
    Event(Box<Event>),
    /// Unparseable input.
    Quarantine(Quarantine),
    /// A record written by trailwarden itself (lifecycle, access, alert…): `raw` is its JSON.
    Internal,
}

/// One stored record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Where it came from: `file:PATH`, `stdin`, `webhook`, `syslog:ADDR`, `trailwarden`.
    pub source: String,
    /// When trailwarden received it.
    pub received: Timestamp,
    /// The exact bytes as received (what the ledger hashes).
    pub raw: Vec<u8>,
    /// Position of `raw` in its input, when it came from a stream.
    pub location: Option<Location>,
    /// The parsed content.
    pub body: Body,
}

impl Record {
    /// The record's kind as stored in the ledger.
    pub fn kind(&self) -> RecordKind {
        match &self.body {
            Body::Event(_) => RecordKind::Event,
            Body::Quarantine(_) => RecordKind::Quarantine,
            Body::Internal => RecordKind::Lifecycle,
        }
    }

    /// The event, if this record holds one.
    pub fn event(&self) -> Option<&Event> {
        match &self.body {
            Body::Event(e) => Some(e),
            _ => None,
        }
    }

    /// Mutable access to the event, if this record holds one.
    pub fn event_mut(&mut self) -> Option<&mut Event> {
        match &mut self.body {
            Body::Event(e) => Some(e),
            _ => None,
        }
    }

    /// The quarantine details, if this record is quarantined.
    pub fn quarantine(&self) -> Option<&Quarantine> {
        match &self.body {
            Body::Quarantine(q) => Some(q),
            _ => None,
        }
    }

    /// The normalized JSON form (one line of `--emit-normalized`): the raw bytes as a UTF-8
    /// string (`raw`), or base64 (`raw_base64`) when they are not valid UTF-8.
    pub fn to_json(&self) -> serde_json::Value {
        self.to_json_with(true)
    }

    /// The normalized JSON form, optionally without the raw bytes (replaced by their length and
    /// SHA-256, which is what the golden tests compare).
    pub fn to_json_with(&self, include_raw: bool) -> serde_json::Value {
        use serde_json::{json, Map, Value};
        let mut m = Map::new();
        m.insert("kind".into(), json!(self.kind().as_str()));
        m.insert("source".into(), json!(self.source));
        m.insert("received".into(), json!(self.received));
        if let Some(l) = &self.location {
            m.insert("location".into(), json!(l));
        }
        m.insert("raw_len".into(), json!(self.raw.len()));
        if include_raw {
            match std::str::from_utf8(&self.raw) {
                Ok(s) => m.insert("raw".into(), Value::String(s.to_string())),
                Err(_) => m.insert(
                    "raw_base64".into(),
                    Value::String(crate::b64::encode(&self.raw)),
                ),
            };
        } else {
            m.insert("raw_sha256".into(), json!(crate::sha256_hex(&self.raw)));
        }
        match &self.body {
            Body::Event(e) => {
                m.insert(
                    "event".into(),
                    serde_json::to_value(e.as_ref()).unwrap_or(Value::Null),
                );
            }
            Body::Quarantine(q) => {
                m.insert(
                    "quarantine".into(),
                    serde_json::to_value(q).unwrap_or(Value::Null),
                );
            }
            Body::Internal => {}
        }
        Value::Object(m)
    }
}
