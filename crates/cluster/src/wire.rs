//! The JetStream message format: what an ingest node publishes and a writer consumes.
//!
//! A message carries the raw bytes *and* the normalized fields of each record, so nothing is
//! parsed twice downstream. Big-endian, versioned by its magic:
//!
//! ```text
//! "TWC1" | kind u8
//! kind 1 (records):  len u16 endpoint | len u16 sender | count u32 | record*
//!   record: body u8 (1 event, 2 quarantine) | received i64 | len u16 source | len u32 raw
//!           | has_location u8 [line u64 | offset u64] | len u32 JSON (Event or Quarantine)
//! kind 2 (access):   len u32 JSON of the access record
//! kind 3 (control):  len u32 JSON {kind, subject, title, summary}
//! ```

use crate::ClusterError;
use serde::{Deserialize, Serialize};
use trailwarden_ledger::record::Access;
use trailwarden_model::{Body, Event, Location, Quarantine, Record, Timestamp};

const MAGIC: &[u8; 4] = b"TWC1";
const KIND_RECORDS: u8 = 1;
const KIND_ACCESS: u8 = 2;
const KIND_CONTROL: u8 = 3;

/// A control-failure alert raised on a node without a ledger, raised by the writer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Control {
    /// Short kind (`cluster-publish`, …).
    pub kind: String,
    /// What failed within the kind.
    pub subject: Option<String>,
    /// Title.
    pub title: String,
    /// What happened.
    pub summary: String,
}

/// One decoded message.
#[derive(Debug)]
pub enum Message {
    /// Records of one batch (or one chunk of it).
    Records {
        /// Endpoint or listener.
        endpoint: String,
        /// Who sent them.
        sender: String,
        /// The records.
        records: Vec<Record>,
    },
    /// A read (or refused request) of audit data on an ingest node.
    Access(Access),
    /// A control failure.
    Control(Control),
}

/// One record's encoded form (its part of a message).
pub struct EncodedRecord(Vec<u8>, usize);

impl EncodedRecord {
    /// Encode a record (an internal record cannot travel: it is the writer's to write).
    pub fn new(r: &Record) -> Result<EncodedRecord, ClusterError> {
        let (tag, json) = match &r.body {
            Body::Event(e) => (1u8, serde_json::to_vec(e.as_ref())),
            Body::Quarantine(q) => (2u8, serde_json::to_vec(q)),
            Body::Internal => {
                return Err(ClusterError::Message(
                    "an internal record is written by the ledger writer, it is not published"
                        .into(),
                ))
            }
        };
        let json = json.map_err(|e| ClusterError::Message(format!("encoding a record: {e}")))?;
        let source = r.source.as_bytes();
        let source = &source[..source.len().min(u16::MAX as usize)];
        let mut out = Vec::with_capacity(40 + source.len() + r.raw.len() + json.len());
        out.push(tag);
        out.extend_from_slice(&r.received.0.to_be_bytes());
        out.extend_from_slice(&(source.len() as u16).to_be_bytes());
        out.extend_from_slice(source);
        out.extend_from_slice(&(r.raw.len() as u32).to_be_bytes());
        out.extend_from_slice(&r.raw);
        match &r.location {
            Some(l) => {
                out.push(1);
                out.extend_from_slice(&l.line.to_be_bytes());
                out.extend_from_slice(&l.offset.to_be_bytes());
            }
            None => out.push(0),
        }
        out.extend_from_slice(&(json.len() as u32).to_be_bytes());
        out.extend_from_slice(&json);
        Ok(EncodedRecord(out, source.len()))
    }

    /// Encoded size.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it is empty (never: a record has a header).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A records message from encoded records.
pub fn records_message(endpoint: &str, sender: &str, recs: &[EncodedRecord]) -> Vec<u8> {
    let endpoint = &endpoint.as_bytes()[..endpoint.len().min(u16::MAX as usize)];
    let sender = &sender.as_bytes()[..sender.len().min(u16::MAX as usize)];
    let size: usize = recs.iter().map(|r| r.0.len()).sum();
    let mut out = Vec::with_capacity(16 + endpoint.len() + sender.len() + size);
    out.extend_from_slice(MAGIC);
    out.push(KIND_RECORDS);
    out.extend_from_slice(&(endpoint.len() as u16).to_be_bytes());
    out.extend_from_slice(endpoint);
    out.extend_from_slice(&(sender.len() as u16).to_be_bytes());
    out.extend_from_slice(sender);
    out.extend_from_slice(&(recs.len() as u32).to_be_bytes());
    for r in recs {
        out.extend_from_slice(&r.0);
    }
    out
}

fn json_message(kind: u8, v: &impl Serialize) -> Result<Vec<u8>, ClusterError> {
    let json = serde_json::to_vec(v).map_err(|e| ClusterError::Message(e.to_string()))?;
    let mut out = Vec::with_capacity(9 + json.len());
    out.extend_from_slice(MAGIC);
    out.push(kind);
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(&json);
    Ok(out)
}

/// An access message.
pub fn access_message(a: &Access) -> Result<Vec<u8>, ClusterError> {
    json_message(KIND_ACCESS, a)
}

/// A control-failure message.
pub fn control_message(c: &Control) -> Result<Vec<u8>, ClusterError> {
    json_message(KIND_CONTROL, c)
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], ClusterError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len());
        let Some(end) = end else {
            return Err(ClusterError::Message(format!(
                "{what} at byte {} runs past the end of the message ({} bytes)",
                self.at,
                self.b.len()
            )));
        };
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self, what: &str) -> Result<u8, ClusterError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<usize, ClusterError> {
        let s = self.take(2, what)?;
        Ok(u16::from_be_bytes([s[0], s[1]]) as usize)
    }
    fn u32(&mut self, what: &str) -> Result<usize, ClusterError> {
        let s = self.take(4, what)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize)
    }
    fn u64(&mut self, what: &str) -> Result<u64, ClusterError> {
        let s = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_be_bytes(a))
    }
    fn json(&mut self) -> Result<&'a [u8], ClusterError> {
        let n = self.u32("JSON length")?;
        self.take(n, "JSON")
    }
    fn string(&mut self, n: usize, what: &str) -> Result<String, ClusterError> {
        let s = self.take(n, what)?;
        String::from_utf8(s.to_vec())
            .map_err(|_| ClusterError::Message(format!("{what} is not UTF-8")))
    }
}

/// Decode a message. Anything else is an error saying what and where (the writer quarantines
/// such a message with its bytes).
pub fn decode(b: &[u8]) -> Result<Message, ClusterError> {
    let mut c = Cursor { b, at: 0 };
    if c.take(4, "magic")? != MAGIC {
        return Err(ClusterError::Message(
            "not a trailwarden message (no TWC1 magic)".into(),
        ));
    }
    let kind = c.u8("kind")?;
    let m = match kind {
        KIND_RECORDS => {
            let n = c.u16("endpoint length")?;
            let endpoint = c.string(n, "endpoint")?;
            let n = c.u16("sender length")?;
            let sender = c.string(n, "sender")?;
            let count = c.u32("record count")?;
            // each record takes at least 24 bytes: a count past that is a lie, not an allocation
            let mut records = Vec::with_capacity(count.min(b.len() / 24));
            for i in 0..count {
                let tag = c.u8("record body")?;
                let received = c.u64("received")? as i64;
                let n = c.u16("source length")?;
                let source = c.string(n, "source")?;
                let n = c.u32("raw length")?;
                let raw = c.take(n, "raw bytes")?.to_vec();
                let location = match c.u8("location flag")? {
                    0 => None,
                    _ => Some(Location {
                        line: c.u64("line")?,
                        offset: c.u64("offset")?,
                    }),
                };
                let j = c.json()?;
                let body =
                    match tag {
                        1 => Body::Event(Box::new(serde_json::from_slice::<Event>(j).map_err(
                            |e| ClusterError::Message(format!("record {i}: event fields: {e}")),
                        )?)),
                        2 => Body::Quarantine(serde_json::from_slice::<Quarantine>(j).map_err(
                            |e| ClusterError::Message(format!("record {i}: quarantine: {e}")),
                        )?),
                        t => {
                            return Err(ClusterError::Message(format!(
                                "record {i}: unknown body kind {t}"
                            )))
                        }
                    };
                records.push(Record {
                    source,
                    received: Timestamp(received),
                    raw,
                    location,
                    body,
                });
            }
            Message::Records {
                endpoint,
                sender,
                records,
            }
        }
        KIND_ACCESS => Message::Access(
            serde_json::from_slice(c.json()?)
                .map_err(|e| ClusterError::Message(format!("access record: {e}")))?,
        ),
        KIND_CONTROL => Message::Control(
            serde_json::from_slice(c.json()?)
                .map_err(|e| ClusterError::Message(format!("control record: {e}")))?,
        ),
        k => return Err(ClusterError::Message(format!("unknown message kind {k}"))),
    };
    if c.at != b.len() {
        return Err(ClusterError::Message(format!(
            "{} bytes after the end of the message",
            b.len() - c.at
        )));
    }
    Ok(m)
}

/// Split encoded records into messages of at most `budget` bytes each, the same way for the
/// same input: boundaries depend on the raw bytes and the normalized fields only (not on the
/// receive time or the sender), so a retried request is cut the same way and its message ids
/// match the first attempt's. A record larger than the budget travels alone.
pub fn chunks(recs: &[EncodedRecord], budget: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut size = 0usize;
    for (i, r) in recs.iter().enumerate() {
        // the source's length is replaced by a fixed allowance: it differs between attempts
        let est = r.0.len() - r.1 + SOURCE_ALLOWANCE;
        if i > start && size + est > budget {
            out.push(start..i);
            start = i;
            size = 0;
        }
        size += est;
    }
    if start < recs.len() {
        out.push(start..recs.len());
    }
    out
}

/// Bytes allowed for a record's header and source in [`chunks`]' estimate.
pub const SOURCE_ALLOWANCE: usize = 512;

/// The header carrying a message's signature.
pub const SIGNATURE_HEADER: &str = "Tw-Signature";

/// HMAC-SHA256 of a message under the cluster's key, hex.
pub fn sign(key: &[u8], message: &[u8]) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    // any key length is accepted by HMAC; the config insists on at least 32 bytes
    let mut mac = match <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `signature` (hex) is the message's under `key` (compared in constant time).
pub fn verify(key: &[u8], message: &[u8], signature: &str) -> bool {
    use hmac::{Hmac, KeyInit, Mac};
    let Ok(sig) = hex::decode(signature) else {
        return false;
    };
    let Ok(mut mac) = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key) else {
        return false;
    };
    mac.update(message);
    mac.verify_slice(&sig).is_ok()
}
