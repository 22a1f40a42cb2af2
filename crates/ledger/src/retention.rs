//! Retention (PCI DSS 10.5.1): deletion that can never hide tampering.
//!
//! Only whole sealed segments are ever deleted, and only after a tombstone record is in the tree:
//! it names the range, the segment's hash and seal, and the *compact range* of the deleted leaves
//! (the roots of the perfect subtrees covering them), so verifiers can still rebuild every root
//! that covers the deleted records and every old proof stays valid. Legal holds are records too;
//! pruning refuses held ranges. `verify` accepts a missing range only when an in-tree tombstone
//! covers it and the retention period had passed when it was written.

use crate::datadir::{self, b64, ManifestEntry};
use crate::merkle::{range_decomposition, root_of, Frontier};
use crate::record::Retention;
use crate::writer::Ledger;
use crate::LedgerError;
use base64::Engine;
use serde::{Deserialize, Serialize};
use trailwarden_model::{RecordKind, Timestamp};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// One line of `retention.log`: an index of the retention records in the tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionLogLine {
    /// The ledger index of the retention record.
    pub index: u64,
    /// The record.
    pub record: Retention,
}

fn log_path(l: &Ledger) -> std::path::PathBuf {
    l.data_dir().root().join("retention.log")
}

/// Retention records written so far.
pub fn read_log(l: &Ledger) -> Result<Vec<RetentionLogLine>, LedgerError> {
    let p = log_path(l);
    let Some(text) = crate::datadir::read_text_if_exists(&p)? else {
        return Ok(Vec::new());
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .map_err(|e| LedgerError::Invalid(format!("{}: {e}", p.display())))
        })
        .collect()
}

fn record(l: &mut Ledger, r: Retention) -> Result<u64, LedgerError> {
    let index = l.append_internal(RecordKind::Retention, &r)?;
    l.commit()?;
    l.checkpoint()?;
    let mut line = serde_json::to_vec(&RetentionLogLine { index, record: r })
        .map_err(|e| LedgerError::Invalid(e.to_string()))?;
    line.push(b'\n');
    datadir::append_durable(&log_path(l), &line)?;
    Ok(index)
}

/// Place a legal hold on `[first, last]`.
pub fn hold(l: &mut Ledger, first: u64, last: u64, reason: &str) -> Result<u64, LedgerError> {
    record(
        l,
        Retention::Hold {
            first,
            last,
            reason: reason.into(),
        },
    )
}

/// Release a legal hold on `[first, last]`.
pub fn release(l: &mut Ledger, first: u64, last: u64, reason: &str) -> Result<u64, LedgerError> {
    record(
        l,
        Retention::Release {
            first,
            last,
            reason: reason.into(),
        },
    )
}

/// Ranges under legal hold.
pub fn holds(l: &Ledger) -> Result<Vec<(u64, u64)>, LedgerError> {
    let mut h: Vec<(u64, u64)> = Vec::new();
    for line in read_log(l)? {
        match line.record {
            Retention::Hold { first, last, .. } => h.push((first, last)),
            Retention::Release { first, last, .. } => h.retain(|r| *r != (first, last)),
            Retention::Prune { .. } | Retention::Evict { .. } => {}
        }
    }
    Ok(h)
}

/// How to prune.
#[derive(Clone, Debug)]
pub struct PrunePolicy {
    /// Prune segments whose newest record was received before this.
    pub before: Timestamp,
    /// Policy name recorded in the tombstone.
    pub policy: String,
    /// Who approved.
    pub approver: String,
    /// Why.
    pub reason: String,
    /// An archive is configured: a segment is pruned only when the manifest says the archive
    /// holds it (a segment that is not archived is never pruned, whatever its age).
    pub require_archived: bool,
}

/// The compact range of a sealed segment's leaves, checked against its seal root (`prev`: the
/// tree frontier before the segment). An evicted segment carries it already.
fn compact_range(
    dir: &datadir::DataDir,
    entry: &ManifestEntry,
    prev: &Frontier,
) -> Result<Vec<(u64, u32, String)>, LedgerError> {
    if entry.state == "evicted" {
        return Ok(entry.compact_range.clone());
    }
    let leaves = crate::recover::sealed_leaves(
        dir,
        std::slice::from_ref(entry),
        entry.first,
        entry.last + 1,
    )?;
    let mut compact = Vec::new();
    let mut check = prev.clone();
    for (start, level) in range_decomposition(entry.first, entry.last + 1) {
        let a = (start - entry.first) as usize;
        let h = root_of(&leaves[a..a + (1usize << level)]);
        check
            .append_subtree(level, h)
            .map_err(LedgerError::Corrupt)?;
        compact.push((start, level, B64.encode(h)));
    }
    if b64(&check.root()) != entry.seal_root {
        return Err(LedgerError::Corrupt(format!(
            "segment {} does not reproduce its seal root; not removing it",
            entry.file
        )));
    }
    Ok(compact)
}

/// Manifest entries with the tree frontier before each.
fn with_frontiers(
    manifest: &[ManifestEntry],
) -> Result<Vec<(Frontier, &ManifestEntry)>, LedgerError> {
    let mut out = Vec::with_capacity(manifest.len());
    let mut before = Frontier::new();
    for entry in manifest {
        let prev = before;
        before = Frontier::from_parts(entry.last + 1, entry.frontier_hashes()?)
            .map_err(LedgerError::Corrupt)?;
        out.push((prev, entry));
    }
    Ok(out)
}

fn remove_local(path: &std::path::Path) -> Result<(), LedgerError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644));
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(LedgerError::Io {
                context: format!("removing {}", path.display()),
                source: e,
            })
        }
    }
    datadir::sync_parent(path)
}

/// Remove the local copies of archived segments older than the hot period (`before`): each
/// only when the manifest says its archived copy was re-read and matched, never the newest
/// sealed segment, never one under legal hold; each after an eviction record is in the tree.
/// Returns the evicted ranges.
pub fn evict(
    l: &mut Ledger,
    before: Timestamp,
    archive: &str,
) -> Result<Vec<(u64, u64)>, LedgerError> {
    l.wait_for_seals()?;
    let dir = l.data_dir().clone();
    let manifest = datadir::read_manifest(&dir.manifest_path())?;
    let newest_sealed = manifest
        .iter()
        .rev()
        .find(|e| e.state == "sealed")
        .map(|e| e.first);
    let held = holds(l)?;
    // a reopen rebuilds the tile cache from sealed leaves past what is on disk
    let tiled = l.durable_tile_size()?;
    let mut done = Vec::new();
    for (prev, entry) in with_frontiers(&manifest)? {
        let is_held = held
            .iter()
            .any(|(a, b)| *a <= entry.last && *b >= entry.first);
        if entry.state != "sealed"
            || entry.archived.is_none()
            || Some(entry.first) == newest_sealed
            || entry.last + 1 > tiled
            || entry.newest_received.is_none_or(|t| t >= before)
            // a restored segment (it keeps its eviction record's index) stays hot for the hot
            // period from its restoration
            || (entry.tombstone.is_some() && entry.at >= before)
            || is_held
        {
            continue;
        }
        let compact = compact_range(&dir, entry, &prev)?;
        let index = l.append_internal(
            RecordKind::Retention,
            &Retention::Evict {
                first: entry.first,
                last: entry.last,
                segment_sha256: entry.sha256.clone(),
                seal_root: entry.seal_root.clone(),
                compact_range: compact.clone(),
                newest_received: entry.newest_received.unwrap_or_default(),
                archive: archive.to_string(),
            },
        )?;
        l.commit()?;
        l.checkpoint()?;
        datadir::append_manifest(
            &dir.manifest_path(),
            &ManifestEntry {
                state: "evicted".into(),
                compact_range: compact,
                tombstone: Some(index),
                at: Timestamp::now(),
                ..entry.clone()
            },
        )?;
        remove_local(&dir.seg_dir().join(&entry.file))?;
        done.push((entry.first, entry.last));
    }
    Ok(done)
}

/// Prune every sealed (or evicted) segment older than the policy allows and not under hold.
/// Returns the pruned ranges `[first, last]`.
pub fn prune(l: &mut Ledger, policy: &PrunePolicy) -> Result<Vec<(u64, u64)>, LedgerError> {
    l.wait_for_seals()?;
    let dir = l.data_dir().clone();
    let manifest = datadir::read_manifest(&dir.manifest_path())?;
    let held = holds(l)?;
    let mut done = Vec::new();
    for (prev, entry) in with_frontiers(&manifest)? {
        if entry.state != "sealed" && entry.state != "evicted" {
            continue;
        }
        let old_enough = entry.newest_received.is_some_and(|t| t < policy.before);
        let is_held = held
            .iter()
            .any(|(a, b)| *a <= entry.last && *b >= entry.first);
        if !old_enough || is_held || (policy.require_archived && entry.archived.is_none()) {
            continue;
        }
        let path = dir.seg_dir().join(&entry.file);
        let compact = compact_range(&dir, entry, &prev)?;
        let tombstone = Retention::Prune {
            first: entry.first,
            last: entry.last,
            segment_sha256: entry.sha256.clone(),
            seal_size: entry.seal_size,
            seal_root: entry.seal_root.clone(),
            compact_range: compact.clone(),
            newest_received: entry.newest_received.unwrap_or_default(),
            policy: policy.policy.clone(),
            approver: policy.approver.clone(),
            reason: policy.reason.clone(),
        };
        let index = record(l, tombstone)?;
        let pruned = ManifestEntry {
            state: "pruned".into(),
            compact_range: compact,
            tombstone: Some(index),
            at: Timestamp::now(),
            ..entry.clone()
        };
        datadir::append_manifest(&dir.manifest_path(), &pruned)?;
        remove_local(&path)?;
        done.push((entry.first, entry.last));
    }
    Ok(done)
}
