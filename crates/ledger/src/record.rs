//! The hashed record encoding (what a Merkle leaf commits to) and the payloads of the records
//! trailwarden writes itself.
//!
//! ```text
//! record := "TWR1"            4 bytes
//!           version  u8       = 1
//!           kind     u8       RecordKind (event 1, lifecycle 2, access 3, retention 4, …)
//!           flags    u16 BE   = 0 (reserved)
//!           index    u64 BE   leaf index: binds position (reorder / insert / delete change it)
//!           received i64 BE   receive time, Unix nanoseconds
//!           src_len  u16 BE
//!           source   src_len bytes (UTF-8)
//!           pay_len  u32 BE
//!           payload  pay_len bytes: the raw bytes exactly as received (events, quarantine), or
//!                    the JSON of a record trailwarden wrote (lifecycle, access, retention…)
//! leaf_hash := SHA-256(0x00 || record)
//! ```
//!
//! Every field is fixed or length-prefixed, so the encoding is unambiguous and any tool can
//! rebuild it from the Parquet columns `kind, idx, received, source, raw` and check `leaf_hash`.

use crate::LedgerError;
use serde::{Deserialize, Serialize};
use trailwarden_model::{RecordKind, Timestamp};

/// Magic bytes of a hashed record.
pub const RECORD_MAGIC: &[u8; 4] = b"TWR1";
/// Encoding version.
pub const RECORD_VERSION: u8 = 1;
/// Largest payload the ledger stores (the ingest limits are far below).
pub const MAX_PAYLOAD: usize = 64 << 20;

/// Append the hashed encoding of a record to `out`.
pub fn encode(
    kind: RecordKind,
    index: u64,
    received: Timestamp,
    source: &str,
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), LedgerError> {
    if source.len() > u16::MAX as usize {
        return Err(LedgerError::Invalid(format!(
            "source label of {} bytes is over 65535",
            source.len()
        )));
    }
    if payload.len() > MAX_PAYLOAD {
        return Err(LedgerError::Invalid(format!(
            "payload of {} bytes is over the {} byte ledger limit",
            payload.len(),
            MAX_PAYLOAD
        )));
    }
    out.reserve(32 + source.len() + payload.len());
    out.extend_from_slice(RECORD_MAGIC);
    out.push(RECORD_VERSION);
    out.push(kind as u8);
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&index.to_be_bytes());
    out.extend_from_slice(&received.0.to_be_bytes());
    out.extend_from_slice(&(source.len() as u16).to_be_bytes());
    out.extend_from_slice(source.as_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// A decoded hashed record, borrowing from its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded<'a> {
    /// Kind.
    pub kind: RecordKind,
    /// Leaf index.
    pub index: u64,
    /// Receive time.
    pub received: Timestamp,
    /// Source label.
    pub source: &'a str,
    /// Payload (raw bytes).
    pub payload: &'a [u8],
}

/// Decode a hashed record; every length must add up exactly.
pub fn decode(b: &[u8]) -> Result<Decoded<'_>, String> {
    if b.len() < 30 {
        return Err(format!(
            "record of {} bytes is shorter than the fixed header",
            b.len()
        ));
    }
    if &b[..4] != RECORD_MAGIC {
        return Err("record magic is not TWR1".into());
    }
    if b[4] != RECORD_VERSION {
        return Err(format!("record version {} is not supported", b[4]));
    }
    let kind = RecordKind::from_u8(b[5]).ok_or_else(|| format!("unknown record kind {}", b[5]))?;
    if b[6] != 0 || b[7] != 0 {
        return Err("reserved record flags are set".into());
    }
    let index = u64::from_be_bytes(b[8..16].try_into().map_err(|_| "index")?);
    let received = Timestamp(i64::from_be_bytes(
        b[16..24].try_into().map_err(|_| "time")?,
    ));
    let src_len = u16::from_be_bytes([b[24], b[25]]) as usize;
    let src_end = 26 + src_len;
    if b.len() < src_end + 4 {
        return Err("record ends inside its source label".into());
    }
    let source = std::str::from_utf8(&b[26..src_end]).map_err(|_| "source label is not UTF-8")?;
    let pay_len =
        u32::from_be_bytes(b[src_end..src_end + 4].try_into().map_err(|_| "len")?) as usize;
    let pay_start = src_end + 4;
    if b.len() != pay_start + pay_len {
        return Err(format!(
            "record length {} does not match its payload length {pay_len}",
            b.len()
        ));
    }
    Ok(Decoded {
        kind,
        index,
        received,
        source,
        payload: &b[pay_start..],
    })
}

/// A lifecycle record (PCI DSS 10.2.1.6): what happened to the audit trail itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "lifecycle", rename_all = "kebab-case")]
pub enum Lifecycle {
    /// Record 0: the ledger was created. `identity_sha256` is the SHA-256 of identity.json.
    Genesis {
        /// SHA-256 of identity.json.
        identity_sha256: String,
        /// The origin.
        origin: String,
        /// The checkpoint verifier key.
        vkey: String,
        /// trailwarden version.
        version: String,
    },
    /// The writer started.
    Start {
        /// trailwarden version.
        version: String,
        /// Whether the previous run ended with a stop record.
        clean_shutdown: bool,
        /// Bytes of a torn WAL tail truncated by recovery.
        truncated_bytes: u64,
        /// Index of the last good record recovery found.
        recovered_size: u64,
        /// Why it started (`ingest`, `serve`, …).
        reason: String,
        /// SHA-256 of the configuration in effect.
        config_sha256: String,
    },
    /// The writer stopped cleanly.
    Stop {
        /// Why.
        reason: String,
    },
    /// Logging was paused (by an operator or by back-pressure).
    Pause {
        /// Why.
        reason: String,
    },
    /// Logging resumed.
    Resume {
        /// Why.
        reason: String,
    },
    /// The configuration changed.
    ConfigChange {
        /// SHA-256 of the previous configuration.
        from_sha256: String,
        /// SHA-256 of the new configuration.
        to_sha256: String,
        /// What changed, in words.
        summary: String,
    },
    /// The checkpoint key was rotated; `proof_of_possession` is the new key's signature over
    /// `origin || old vkey || effective size`.
    KeyRotation {
        /// The new verifier key.
        new_vkey: String,
        /// The old verifier key.
        old_vkey: String,
        /// First tree size the new key signs.
        effective_from_size: u64,
        /// Base64 Ed25519 signature by the new key.
        proof_of_possession: String,
    },
    /// The key replaced by the last rotation stopped co-signing.
    KeyRetired {
        /// The retired verifier key.
        vkey: String,
    },
    /// Periodic proof of life, so a pause shows up as a gap.
    Heartbeat {
        /// Tree size at the time.
        size: u64,
        /// Seconds since the writer started.
        uptime_seconds: u64,
        /// Records appended since the previous heartbeat.
        appended: u64,
    },
}

/// A retention record (PCI DSS 10.5.1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "retention", rename_all = "kebab-case")]
pub enum Retention {
    /// Whole sealed segments `[first, last]` were deleted. The compact range of the deleted
    /// leaves lets verifiers rebuild every root that covers them.
    Prune {
        /// First index pruned.
        first: u64,
        /// Last index pruned.
        last: u64,
        /// SHA-256 of the segment file.
        segment_sha256: String,
        /// Size of the seal checkpoint.
        seal_size: u64,
        /// Root of the seal checkpoint (base64).
        seal_root: String,
        /// `(start, level, base64 hash)` of the perfect subtrees covering `[first, last]`.
        compact_range: Vec<(u64, u32, String)>,
        /// Newest receive time in the segment.
        newest_received: Timestamp,
        /// Retention policy applied.
        policy: String,
        /// Who approved.
        approver: String,
        /// Why.
        reason: String,
    },
    /// The local copy of the sealed segment `[first, last]` was removed after the hot period;
    /// the archive holds it (its copy re-read and equal to `segment_sha256` before removal).
    /// The compact range keeps local verification of the rest of the tree whole.
    Evict {
        /// First index.
        first: u64,
        /// Last index.
        last: u64,
        /// SHA-256 of the segment file.
        segment_sha256: String,
        /// Root of the seal checkpoint (base64).
        seal_root: String,
        /// `(start, level, base64 hash)` of the perfect subtrees covering `[first, last]`.
        compact_range: Vec<(u64, u32, String)>,
        /// Newest receive time in the segment.
        newest_received: Timestamp,
        /// Where the segment is archived (the archive URL).
        archive: String,
    },
    /// A legal hold on a range was placed.
    Hold {
        /// First index.
        first: u64,
        /// Last index.
        last: u64,
        /// Why.
        reason: String,
    },
    /// A legal hold was released.
    Release {
        /// First index.
        first: u64,
        /// Last index.
        last: u64,
        /// Why.
        reason: String,
    },
}

/// A read of audit data through trailwarden (PCI DSS 10.2.1.3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    /// Who (token subject, OS user, certificate CN).
    pub subject: String,
    /// Through what (`cli`, `api`, `ui`).
    pub interface: String,
    /// What was done (`verify`, `prove`, `export`, `query`, `login`).
    pub action: String,
    /// What was read (query text, index range, file).
    pub target: String,
    /// Records returned or covered.
    pub records: u64,
    /// `success` or `failure`.
    pub outcome: String,
    /// Where from (IP address, `local`).
    pub origin: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_strictness() {
        let mut b = Vec::new();
        encode(
            RecordKind::Event,
            42,
            Timestamp(7),
            "file:a.log",
            b"{\"x\":1}",
            &mut b,
        )
        .unwrap();
        let d = decode(&b).unwrap();
        assert_eq!(
            (d.kind, d.index, d.received, d.source, d.payload),
            (
                RecordKind::Event,
                42,
                Timestamp(7),
                "file:a.log",
                &b"{\"x\":1}"[..]
            )
        );
        let mut longer = b.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
        assert!(decode(&b[..b.len() - 1]).is_err());
        let mut bad = b.clone();
        bad[5] = 99;
        assert!(decode(&bad).is_err());
    }

    #[test]
    fn lifecycle_json_is_tagged() {
        let j = serde_json::to_string(&Lifecycle::Stop {
            reason: "sigterm".into(),
        })
        .unwrap();
        assert_eq!(j, r#"{"lifecycle":"stop","reason":"sigterm"}"#);
    }
}
