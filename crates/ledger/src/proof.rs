//! Proof files that anyone holding the ledger's public key can check offline.
//!
//! - Inclusion: a C2SP tlog-proof (`c2sp.org/tlog-proof@v1`). Its `extra` line carries the
//!   record's hashed encoding (base64), so the proof is self-contained: the verifier hashes it,
//!   checks the Merkle path to the checkpoint's root and the checkpoint's signature, and only
//!   then shows the record. (The extra data is never trusted on its own.)
//! - Consistency: exactly the body a tlog-witness receives (`old N`, the proof hashes, a blank
//!   line, the new checkpoint), so the same code feeds witnesses and assessors. Checking it
//!   needs the old checkpoint the assessor already holds.
//! - Export bundles: a directory with the checkpoint, the verifier key, and every selected
//!   record with its inclusion proof (`events.jsonl`).

use crate::merkle::{self, leaf_hash, Hash, HashSource};
use crate::note::{open_checkpoint, NoteVerifier, SignedCheckpoint};
use crate::reader::LedgerReader;
use crate::record;
use crate::LedgerError;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::path::Path;
use trailwarden_model::{RecordKind, Timestamp};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
/// First line of an inclusion proof.
pub const PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";

struct NoCache<'a, S: HashSource + ?Sized>(&'a S);

impl<S: HashSource + ?Sized> HashSource for NoCache<'_, S> {
    fn leaf_hashes(&self, begin: u64, end: u64) -> Result<Vec<Hash>, String> {
        self.0.leaf_hashes(begin, end)
    }
}

/// Build the inclusion proof of `index` in `cp`'s tree, checked against `cp` before it is
/// returned (a stale or damaged tile cache falls back to hashing leaves).
pub fn inclusion(
    reader: &LedgerReader,
    index: u64,
    cp: &SignedCheckpoint,
) -> Result<(Vec<u8>, Vec<Hash>), LedgerError> {
    let size = cp.checkpoint.size;
    if index >= size {
        return Err(LedgerError::Invalid(format!(
            "record {index} is not in the tree of size {size} (use a later checkpoint)"
        )));
    }
    let mut rec = None;
    reader.for_each(index, index + 1, |r| {
        rec = Some(r);
        Ok(false)
    })?;
    let r =
        rec.ok_or_else(|| LedgerError::Invalid(format!("record {index} is not stored (pruned?)")))?;
    let mut encoded = Vec::new();
    record::encode(r.kind, r.index, r.received, &r.source, &r.raw, &mut encoded)?;
    let leaf = leaf_hash(&encoded);
    let src = reader.hash_source()?;
    let mut proof = merkle::inclusion_proof(&src, index, size).map_err(LedgerError::Invalid)?;
    if !merkle::verify_inclusion(index, size, &leaf, &proof, &cp.checkpoint.root) {
        proof =
            merkle::inclusion_proof(&NoCache(&src), index, size).map_err(LedgerError::Invalid)?;
        if !merkle::verify_inclusion(index, size, &leaf, &proof, &cp.checkpoint.root) {
            return Err(LedgerError::Corrupt(format!(
                "record {index} does not hash to the signed root of size {size}: run `trailwarden verify`"
            )));
        }
    }
    Ok((encoded, proof))
}

/// The tlog-proof text for a record.
pub fn inclusion_file(
    encoded_record: &[u8],
    index: u64,
    proof: &[Hash],
    cp: &SignedCheckpoint,
) -> String {
    let mut s = String::new();
    s.push_str(PROOF_HEADER);
    s.push('\n');
    s.push_str("extra ");
    s.push_str(&B64.encode(encoded_record));
    s.push('\n');
    s.push_str(&format!("index {index}\n"));
    for h in proof {
        s.push_str(&B64.encode(h));
        s.push('\n');
    }
    s.push('\n');
    s.push_str(&cp.note);
    s
}

/// Build the consistency proof from `old` to `cp`'s size.
pub fn consistency(
    reader: &LedgerReader,
    old: &SignedCheckpoint,
    cp: &SignedCheckpoint,
) -> Result<Vec<Hash>, LedgerError> {
    let (m, n) = (old.checkpoint.size, cp.checkpoint.size);
    if m > n {
        return Err(LedgerError::Invalid(format!(
            "--from {m} is after --to {n}"
        )));
    }
    let src = reader.hash_source()?;
    let mut proof = merkle::consistency_proof(&src, m, n).map_err(LedgerError::Invalid)?;
    if !merkle::verify_consistency(m, n, &old.checkpoint.root, &cp.checkpoint.root, &proof) {
        proof = merkle::consistency_proof(&NoCache(&src), m, n).map_err(LedgerError::Invalid)?;
        if !merkle::verify_consistency(m, n, &old.checkpoint.root, &cp.checkpoint.root, &proof) {
            return Err(LedgerError::Corrupt(format!(
                "the signed checkpoints at sizes {m} and {n} are not consistent with the stored records: run `trailwarden verify`"
            )));
        }
    }
    Ok(proof)
}

/// The tlog-witness body for a consistency proof.
pub fn consistency_file(old_size: u64, proof: &[Hash], cp: &SignedCheckpoint) -> String {
    let mut s = format!("old {old_size}\n");
    for h in proof {
        s.push_str(&B64.encode(h));
        s.push('\n');
    }
    s.push('\n');
    s.push_str(&cp.note);
    s
}

/// What an inclusion proof proved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvenRecord {
    /// Leaf index.
    pub index: u64,
    /// Tree size of the checkpoint.
    pub tree_size: u64,
    /// Checkpoint origin.
    pub origin: String,
    /// Record kind.
    pub kind: RecordKind,
    /// Receive time.
    pub received: Timestamp,
    /// Source label.
    pub source: String,
    /// Payload as text (or base64 when not UTF-8, see `payload_base64`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// Payload as base64 when it is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_base64: Option<String>,
}

fn parse_hash_lines<'a>(
    lines: &mut impl Iterator<Item = &'a str>,
) -> Result<Vec<Hash>, LedgerError> {
    let mut out = Vec::new();
    for l in lines.by_ref() {
        if l.is_empty() {
            return Ok(out);
        }
        let v = B64
            .decode(l)
            .map_err(|e| LedgerError::Invalid(format!("proof hash {l:?} is not base64: {e}")))?;
        out.push(
            v.try_into()
                .map_err(|_| LedgerError::Invalid(format!("proof hash {l:?} is not 32 bytes")))?,
        );
    }
    Err(LedgerError::Invalid(
        "proof ends before its checkpoint".into(),
    ))
}

/// Check an inclusion proof file with nothing but the verifier key.
pub fn verify_inclusion_file(
    text: &str,
    verifier: &NoteVerifier,
) -> Result<ProvenRecord, LedgerError> {
    let mut lines = text.split('\n');
    if lines.next() != Some(PROOF_HEADER) {
        return Err(LedgerError::Invalid(format!(
            "not a tlog proof: the first line must be {PROOF_HEADER}"
        )));
    }
    let mut line = lines.next().unwrap_or("");
    let mut extra = None;
    if let Some(e) = line.strip_prefix("extra ") {
        extra = Some(
            B64.decode(e)
                .map_err(|e| LedgerError::Invalid(format!("extra is not base64: {e}")))?,
        );
        line = lines.next().unwrap_or("");
    }
    let idx_s = line
        .strip_prefix("index ")
        .ok_or_else(|| LedgerError::Invalid("missing `index` line".into()))?;
    if idx_s.is_empty()
        || !idx_s.bytes().all(|c| c.is_ascii_digit())
        || (idx_s.len() > 1 && idx_s.starts_with('0'))
    {
        return Err(LedgerError::Invalid(format!(
            "index {idx_s:?} is not a decimal without leading zeros"
        )));
    }
    let index: u64 = idx_s
        .parse()
        .map_err(|_| LedgerError::Invalid("index out of range".into()))?;
    let proof = parse_hash_lines(&mut lines)?;
    let rest: Vec<&str> = lines.collect();
    let note = rest.join("\n");
    let cp = open_checkpoint(&note, None, std::slice::from_ref(verifier))
        .map_err(|e| LedgerError::Invalid(format!("checkpoint: {e}")))?;
    let encoded = extra.ok_or_else(|| {
        LedgerError::Invalid(
            "this proof carries no record (`extra` line); trailwarden proofs always do".into(),
        )
    })?;
    let d = record::decode(&encoded)
        .map_err(|e| LedgerError::Invalid(format!("record in `extra`: {e}")))?;
    if d.index != index {
        return Err(LedgerError::Invalid(format!(
            "the record says index {} but the proof is for {index}",
            d.index
        )));
    }
    if !merkle::verify_inclusion(
        index,
        cp.checkpoint.size,
        &leaf_hash(&encoded),
        &proof,
        &cp.checkpoint.root,
    ) {
        return Err(LedgerError::Invalid(format!(
            "the record is not at index {index} of the signed tree of size {}",
            cp.checkpoint.size
        )));
    }
    let (payload, payload_base64) = match std::str::from_utf8(d.payload) {
        Ok(s) => (Some(s.to_string()), None),
        Err(_) => (None, Some(B64.encode(d.payload))),
    };
    Ok(ProvenRecord {
        index,
        tree_size: cp.checkpoint.size,
        origin: cp.checkpoint.origin,
        kind: d.kind,
        received: d.received,
        source: d.source.to_string(),
        payload,
        payload_base64,
    })
}

/// What a consistency proof proved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvenConsistency {
    /// Origin.
    pub origin: String,
    /// Old size.
    pub old_size: u64,
    /// New size.
    pub new_size: u64,
}

/// Check a consistency proof file against the old checkpoint the checker already trusts.
pub fn verify_consistency_file(
    text: &str,
    old_note: Option<&str>,
    verifier: &NoteVerifier,
) -> Result<ProvenConsistency, LedgerError> {
    let mut lines = text.split('\n');
    let first = lines.next().unwrap_or("");
    let old_s = first.strip_prefix("old ").ok_or_else(|| {
        LedgerError::Invalid("not a consistency proof: the first line must be `old N`".into())
    })?;
    let old_size: u64 = old_s
        .parse()
        .map_err(|_| LedgerError::Invalid(format!("old size {old_s:?} is not a number")))?;
    let proof = parse_hash_lines(&mut lines)?;
    let note = lines.collect::<Vec<_>>().join("\n");
    let cp = open_checkpoint(&note, None, std::slice::from_ref(verifier))
        .map_err(|e| LedgerError::Invalid(format!("checkpoint: {e}")))?;
    let old_root = if old_size == 0 {
        merkle::empty_root()
    } else {
        let old_note = old_note.ok_or_else(|| LedgerError::Invalid(format!("checking consistency from size {old_size} needs the old checkpoint (--old-checkpoint FILE)")))?;
        let old = open_checkpoint(
            old_note,
            Some(&cp.checkpoint.origin),
            std::slice::from_ref(verifier),
        )
        .map_err(|e| LedgerError::Invalid(format!("old checkpoint: {e}")))?;
        if old.checkpoint.size != old_size {
            return Err(LedgerError::Invalid(format!(
                "the old checkpoint is for size {}, the proof for {old_size}",
                old.checkpoint.size
            )));
        }
        old.checkpoint.root
    };
    if !merkle::verify_consistency(
        old_size,
        cp.checkpoint.size,
        &old_root,
        &cp.checkpoint.root,
        &proof,
    ) {
        return Err(LedgerError::Invalid(format!(
            "the tree of size {} does not extend the tree of size {old_size}: the log was rewritten (fork or rollback)",
            cp.checkpoint.size
        )));
    }
    Ok(ProvenConsistency {
        origin: cp.checkpoint.origin,
        old_size,
        new_size: cp.checkpoint.size,
    })
}

/// One line of an export bundle's events.jsonl.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleEntry {
    /// Leaf index.
    pub index: u64,
    /// The hashed record encoding, base64.
    pub record: String,
    /// Inclusion proof hashes, base64.
    pub proof: Vec<String>,
    /// Receive time (informational; also inside `record`).
    pub received: Timestamp,
    /// Source (informational; also inside `record`).
    pub source: String,
    /// The raw payload as text, when UTF-8 (informational; also inside `record`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
}

/// Check every entry of an export bundle directory.
pub fn verify_bundle(
    dir: &Path,
    verifier: &NoteVerifier,
) -> Result<(SignedCheckpoint, u64), LedgerError> {
    let note =
        std::fs::read_to_string(dir.join("checkpoint.note")).map_err(|e| LedgerError::Io {
            context: format!("reading {}/checkpoint.note", dir.display()),
            source: e,
        })?;
    let cp = open_checkpoint(&note, None, std::slice::from_ref(verifier))
        .map_err(|e| LedgerError::Invalid(format!("bundle checkpoint: {e}")))?;
    let events =
        std::fs::read_to_string(dir.join("events.jsonl")).map_err(|e| LedgerError::Io {
            context: format!("reading {}/events.jsonl", dir.display()),
            source: e,
        })?;
    let mut n = 0;
    for (i, line) in events.lines().enumerate() {
        let e: BundleEntry = serde_json::from_str(line)
            .map_err(|err| LedgerError::Invalid(format!("events.jsonl line {}: {err}", i + 1)))?;
        let encoded = B64
            .decode(&e.record)
            .map_err(|err| LedgerError::Invalid(format!("events.jsonl line {}: {err}", i + 1)))?;
        let d = record::decode(&encoded)
            .map_err(|err| LedgerError::Invalid(format!("events.jsonl line {}: {err}", i + 1)))?;
        let proof: Vec<Hash> = e
            .proof
            .iter()
            .map(|p| B64.decode(p).ok().and_then(|v| v.try_into().ok()))
            .collect::<Option<_>>()
            .ok_or_else(|| {
                LedgerError::Invalid(format!("events.jsonl line {}: bad proof hash", i + 1))
            })?;
        let raw_matches = e.raw.as_deref().is_none_or(|r| r.as_bytes() == d.payload);
        if d.index != e.index || d.source != e.source || d.received != e.received || !raw_matches {
            return Err(LedgerError::Invalid(format!(
                "events.jsonl line {}: the readable fields do not match the hashed record",
                i + 1
            )));
        }
        if !merkle::verify_inclusion(
            e.index,
            cp.checkpoint.size,
            &leaf_hash(&encoded),
            &proof,
            &cp.checkpoint.root,
        ) {
            return Err(LedgerError::Invalid(format!(
                "events.jsonl line {}: record {} is not in the signed tree",
                i + 1,
                e.index
            )));
        }
        n += 1;
    }
    Ok((cp, n))
}
