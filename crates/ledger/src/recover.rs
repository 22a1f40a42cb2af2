//! Crash recovery, run every time the writer opens (ledger design §9.7):
//!
//! 1. checkpoints.log: a torn final entry is cut off (it was never published); any other damage
//!    or a bad signature refuses to start.
//! 2. manifest.log: sealed segments must be contiguous; the writer state after the last seal is
//!    taken from it and checked against the signed seal root.
//! 3. WAL files in index order: a WAL whose seal completed is checked against the seal root and
//!    removed; a full WAL whose seal was interrupted is resealed; the active WAL is scanned frame
//!    by frame — a torn tail within the final, unacknowledged batch is truncated (and recorded
//!    in the start record), anything else is corruption and the writer refuses to start with a
//!    message that says where and what to do.
//! 4. The recovered size must not be below any size already signed: that would mean acknowledged
//!    and signed records are missing, and signing a smaller tree would be a fork.

use crate::datadir::{self, b64, DataDir, Identity, ManifestEntry};
use crate::keys::KeySet;
use crate::merkle::{chain_seed, Frontier, Hash};
use crate::note::SignedCheckpoint;
use crate::record;
use crate::segment::{self, SegmentBuilder};
use crate::tiles::{TileWriter, TILE};
use crate::wal::{self, ScanEnd};
use crate::writer::{is_stop, rebuild_row, scan_end_error, seal_job, Options, Recovered, Recovery};
use crate::LedgerError;
use std::fs;
use std::path::PathBuf;
use trailwarden_model::{RecordKind, Timestamp};

fn io(context: String) -> impl FnOnce(std::io::Error) -> LedgerError {
    move |source| LedgerError::Io { context, source }
}

/// WAL files in the directory, by first index.
pub fn list_wals(dir: &DataDir) -> Result<Vec<(u64, PathBuf)>, LedgerError> {
    let mut out = Vec::new();
    let wd = dir.wal_dir();
    let rd = match fs::read_dir(&wd) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io(format!("listing {}", wd.display()))(e)),
    };
    for e in rd {
        let e = e.map_err(io(format!("listing {}", wd.display())))?;
        let name = e.file_name().to_string_lossy().to_string();
        if let Some(stem) = name.strip_suffix(".wal") {
            if let Ok(first) = stem.parse::<u64>() {
                out.push((first, e.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Verified checkpoints from checkpoints.log, repairing a torn final entry.
pub fn load_checkpoints(
    dir: &DataDir,
    origin: &str,
    keys: &KeySet,
    repair: bool,
) -> Result<Vec<SignedCheckpoint>, LedgerError> {
    let p = dir.checkpoints_log();
    let log = datadir::read_checkpoint_log(&p)?;
    if let Some((off, why)) = &log.damage {
        return Err(LedgerError::Corrupt(format!(
            "{} is damaged at byte {off}: {why}. Restore it from backup (checkpoints are also in the anchor store)",
            p.display()
        )));
    }
    if let (Some((off, _)), true) = (log.torn_tail, repair) {
        let f = fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .map_err(io(format!("opening {}", p.display())))?;
        f.set_len(off)
            .map_err(io(format!("truncating {}", p.display())))?;
        f.sync_all()
            .map_err(io(format!("syncing {}", p.display())))?;
    }
    let mut out = Vec::with_capacity(log.entries.len());
    let mut last_size = 0u64;
    for e in log.entries {
        let cp = keys.open_checkpoint(&e.note, Some(origin)).map_err(|err| {
            LedgerError::Corrupt(format!("{} entry at byte {}: {err}", p.display(), e.offset))
        })?;
        if cp.checkpoint.size < last_size {
            return Err(LedgerError::Corrupt(format!(
                "{} goes backwards at byte {}: size {} after {last_size}",
                p.display(),
                e.offset,
                cp.checkpoint.size
            )));
        }
        last_size = cp.checkpoint.size;
        out.push(cp);
    }
    Ok(out)
}

/// Rebuild the writer's state.
pub(crate) fn recover(
    dir: &DataDir,
    identity: &Identity,
    keys: &KeySet,
    opts: &Options,
    recovery: &mut Recovery,
) -> Result<Recovered, LedgerError> {
    let checkpoints = load_checkpoints(dir, &identity.origin, keys, true)?;
    let max_signed = checkpoints.last().map_or(0, |c| c.checkpoint.size);

    // Sealed segments.
    let manifest = datadir::read_manifest(&dir.manifest_path())?;
    let mut expected = 0u64;
    let mut frontier = Frontier::new();
    let mut chain = chain_seed(&identity.origin);
    let mut by_first: std::collections::BTreeMap<u64, (&ManifestEntry, Frontier, Hash)> =
        Default::default();
    for e in &manifest {
        if e.first != expected {
            return Err(LedgerError::Corrupt(format!(
                "manifest.log: segment {}-{} does not follow record {} (segments must be contiguous)",
                e.first,
                e.last,
                expected.wrapping_sub(1)
            )));
        }
        let before = (frontier.clone(), chain);
        frontier =
            Frontier::from_parts(e.last + 1, e.frontier_hashes()?).map_err(LedgerError::Corrupt)?;
        if b64(&frontier.root()) != e.seal_root {
            return Err(LedgerError::Corrupt(format!(
                "manifest.log: the frontier of segment {}-{} does not match its seal root",
                e.first, e.last
            )));
        }
        chain = e.chain_hash()?;
        by_first.insert(e.first, (e, before.0, before.1));
        expected = e.last + 1;
    }

    // the stream position: the manifest's newest, then the WALs' frames (newest wins)
    let mut stream_pos = manifest.iter().rev().find_map(|e| e.stream);
    let mut reseal = Vec::new();
    let wals = list_wals(dir)?;
    let mut active: Option<(u64, PathBuf, u64, SegmentBuilder, Option<Timestamp>, u64)> = None;
    let mut last_record: Option<(RecordKind, Vec<u8>)> = None;
    let mut batch_seq = 0u64;
    let mut tail_leaves: Vec<Hash> = Vec::new();
    let n_wals = wals.len();
    for (i, (first, path)) in wals.into_iter().enumerate() {
        let data = fs::read(&path).map_err(io(format!("reading {}", path.display())))?;
        if first < expected {
            // Its seal completed: the WAL must reproduce the signed seal root, then it goes.
            let Some((entry, f0, c0)) = by_first.get(&first) else {
                return Err(LedgerError::Corrupt(format!(
                    "{} starts inside a sealed segment",
                    path.display()
                )));
            };
            let scan = wal::scan(&data, first, *c0, 0);
            let mut f = f0.clone();
            for fr in &scan.frames {
                f.push(fr.leaf);
            }
            if scan.end != ScanEnd::Clean
                || f.size() != entry.last + 1
                || b64(&f.root()) != entry.seal_root
            {
                return Err(LedgerError::Corrupt(format!(
                    "{} does not match sealed segment {}-{}: restore from backup",
                    path.display(),
                    entry.first,
                    entry.last
                )));
            }
            fs::remove_file(&path).map_err(io(format!("removing {}", path.display())))?;
            datadir::sync_parent(&path)?;
            recovery.removed_wals += 1;
            continue;
        }
        if first > expected {
            return Err(LedgerError::Corrupt(format!(
                "{} starts at record {first} but records {expected}..{} are missing: restore from backup",
                path.display(),
                first - 1
            )));
        }
        let is_last = i + 1 == n_wals;
        let scan = wal::scan(
            &data,
            first,
            chain,
            if is_last { opts.max_batch_bytes } else { 0 },
        );
        let mut builder = SegmentBuilder::new();
        let mut opened = None;
        for fr in &scan.frames {
            let (_, _, received) = rebuild_row(&mut builder, fr, opts.extractor.as_ref())?;
            if opened.is_none() {
                opened = Some(received);
            }
            frontier.push(fr.leaf);
            tail_leaves.push(fr.leaf);
            batch_seq = fr.batch + 1;
            if let Some(p) = crate::writer::frame_stream_pos(fr.meta) {
                stream_pos = Some(p);
            }
        }
        if let Some(fr) = scan.frames.last() {
            let d = record::decode(fr.record).map_err(LedgerError::Invalid)?;
            last_record = Some((d.kind, d.payload.to_vec()));
        }
        chain = scan.chain;
        let good_end = match &scan.end {
            ScanEnd::Clean => data.len() as u64,
            ScanEnd::TornTail { offset, bytes } if is_last => {
                let f = fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io(format!("opening {}", path.display())))?;
                f.set_len(*offset)
                    .map_err(io(format!("truncating {}", path.display())))?;
                f.sync_all()
                    .map_err(io(format!("syncing {}", path.display())))?;
                recovery.truncated_bytes += bytes;
                *offset
            }
            other => return Err(scan_end_error(&path, other)),
        };
        let last = first + scan.frames.len() as u64;
        if !is_last {
            // A full WAL whose seal did not finish: seal it again from scratch.
            if scan.frames.is_empty() {
                fs::remove_file(&path).map_err(io(format!("removing empty {}", path.display())))?;
                continue;
            }
            for stale in [
                dir.segment_file(first, last - 1),
                dir.seal_file(first, last - 1),
                dir.segment_file(first, last - 1)
                    .with_extension("parquet.tmp"),
            ] {
                if stale.exists() {
                    #[cfg(unix)]
                    {
                        use std::os::unix::fs::PermissionsExt;
                        let _ = fs::set_permissions(&stale, fs::Permissions::from_mode(0o644));
                    }
                    fs::remove_file(&stale).map_err(io(format!("removing {}", stale.display())))?;
                }
            }
            let batch = builder.finish()?;
            reseal.push(seal_job(
                first,
                last - 1,
                batch,
                &frontier,
                chain,
                path,
                stream_pos,
            ));
        } else {
            active = Some((first, path, good_end, builder, opened, last));
        }
        expected = last;
    }
    let (wal_first, wal_path, wal_bytes, builder, wal_opened) = match active {
        Some((first, path, bytes, builder, opened, _)) => (first, path, bytes, builder, opened),
        None => {
            // No active WAL (every record sealed): start one.
            let path = dir.wal_file(expected);
            let f = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(io(format!("creating {}", path.display())))?;
            f.sync_all()
                .map_err(io(format!("syncing {}", path.display())))?;
            datadir::sync_parent(&path)?;
            (expected, path, 0, SegmentBuilder::new(), None)
        }
    };
    if last_record.is_none() && expected > 0 {
        last_record = last_sealed_record(dir, &manifest)?;
    }
    if frontier.size() < max_signed {
        return Err(LedgerError::Truncated {
            have: frontier.size(),
            signed: max_signed,
        });
    }

    // Tiles: keep those covered by durable records, catch up the rest.
    let mut tiles = TileWriter::open(&dir.tree_dir().join("tiles"))?;
    let complete = frontier.size() / TILE;
    if tiles.len() > complete {
        tiles.truncate(complete)?;
    }
    let have_from = tiles.len() * TILE;
    let wal_from = frontier.size() - tail_leaves.len() as u64;
    let mut leaves: Vec<Hash> = Vec::new();
    if have_from < wal_from {
        leaves = sealed_leaves(dir, &manifest, have_from, wal_from)?;
    }
    let skip = have_from.saturating_sub(wal_from) as usize;
    leaves.extend_from_slice(&tail_leaves[skip.min(tail_leaves.len())..]);
    for l in leaves {
        tiles.push(l);
    }
    tiles.flush()?;

    let clean_shutdown = last_record.as_ref().is_some_and(|(k, p)| is_stop(*k, p));
    Ok(Recovered {
        frontier,
        chain,
        tiles,
        wal_first,
        wal_path,
        wal_bytes,
        wal_opened,
        builder,
        batch_seq,
        last_checkpoint: checkpoints.last().cloned(),
        clean_shutdown,
        reseal,
        stream_pos,
    })
}

/// Leaf hashes of `[from, to)` recomputed from sealed segments.
pub fn sealed_leaves(
    dir: &DataDir,
    manifest: &[ManifestEntry],
    from: u64,
    to: u64,
) -> Result<Vec<Hash>, LedgerError> {
    let mut out = Vec::with_capacity((to - from) as usize);
    for e in manifest
        .iter()
        .filter(|e| e.state == "sealed" && e.last >= from && e.first < to)
    {
        segment::for_each_hashed(&dir.seg_dir().join(&e.file), |r| {
            if r.index >= from && r.index < to {
                out.push(crate::merkle::record_leaf_hash(
                    r.kind,
                    r.index,
                    r.received.0,
                    r.source,
                    r.raw,
                ));
            }
            Ok(())
        })?;
    }
    if out.len() as u64 != to - from {
        return Err(LedgerError::Corrupt(format!(
            "sealed segments hold {} of the records {from}..{to}",
            out.len()
        )));
    }
    Ok(out)
}

fn last_sealed_record(
    dir: &DataDir,
    manifest: &[ManifestEntry],
) -> Result<Option<(RecordKind, Vec<u8>)>, LedgerError> {
    let Some(e) = manifest.iter().rev().find(|e| e.state == "sealed") else {
        return Ok(None);
    };
    let mut last = None;
    segment::for_each_hashed(&dir.seg_dir().join(&e.file), |r| {
        last = RecordKind::from_u8(r.kind).map(|k| (k, r.raw.to_vec()));
        Ok(())
    })?;
    Ok(last)
}
