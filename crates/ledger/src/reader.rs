//! Read-only access to a ledger (no lock; safe beside a running writer): records in index
//! order from segments and WAL files, checkpoints, and a [`HashSource`] for proofs.

use crate::datadir::{self, DataDir, Identity, ManifestEntry};
use crate::keys::{read_key_log, KeyLogEntry, KeySet};
use crate::merkle::{record_leaf_hash, root_of, Hash, HashSource};
use crate::note::{NoteVerifier, SignedCheckpoint};
use crate::record;
use crate::recover::list_wals;
use crate::segment;
use crate::tiles::{Tiles, TILE, TILE_LEVEL};
use crate::wal::{self, ScanEnd};
use crate::LedgerError;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;
use trailwarden_model::{RecordKind, Timestamp};

/// One stored record, as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    /// Leaf index.
    pub index: u64,
    /// Kind.
    pub kind: RecordKind,
    /// Receive time.
    pub received: Timestamp,
    /// Source label.
    pub source: String,
    /// Raw bytes.
    pub raw: Vec<u8>,
    /// Leaf hash recomputed from the fields above.
    pub leaf: Hash,
    /// The format the record was parsed as (events).
    pub format: Option<trailwarden_model::Format>,
}

enum Pass {
    Done,
    Sealed,
}

/// The data a query sees (see [`LedgerReader::query_snapshot`]).
pub struct QuerySnapshot {
    /// Sealed segment files, in index order.
    pub segments: Vec<PathBuf>,
    /// The committed records after them, as segment rows.
    pub tail: Option<arrow_array::RecordBatch>,
    /// Records covered (sealed plus tail).
    pub size: u64,
}

/// A read-only view of a data directory.
pub struct LedgerReader {
    /// Paths.
    pub dir: DataDir,
    /// identity.json.
    pub identity: Identity,
    /// The exact bytes of identity.json.
    pub identity_bytes: Vec<u8>,
    /// The key that signs now (the last of `keys`).
    pub verifier: NoteVerifier,
    /// Every checkpoint key with the first size it may sign: identity.json's key and the
    /// rotations of keys.log (confirmed against the tree by `verify`).
    pub keys: KeySet,
    /// The rotations listed in keys.log.
    pub key_log: Vec<KeyLogEntry>,
    /// Why keys.log could not be used, if it could not (verify reports it).
    pub key_log_error: Option<String>,
    /// Latest state of each segment.
    pub manifest: Vec<ManifestEntry>,
    /// WAL files by first index.
    pub wals: Vec<(u64, PathBuf)>,
}

impl LedgerReader {
    /// Open `root`. With `trusted`, checkpoints are verified against that key instead of the one
    /// in identity.json (an assessor brings their own copy).
    pub fn open(
        root: impl Into<PathBuf>,
        trusted: Option<NoteVerifier>,
    ) -> Result<LedgerReader, LedgerError> {
        let dir = DataDir::new(root);
        if !dir.exists() {
            return Err(LedgerError::Invalid(format!(
                "{} holds no ledger (no identity.json)",
                dir.root().display()
            )));
        }
        let (identity, identity_bytes) = dir.read_identity()?;
        let genesis = NoteVerifier::parse(&identity.vkey)
            .map_err(|e| LedgerError::Invalid(format!("identity vkey: {e}")))?;
        let (chain, key_log, key_log_error) = match read_key_log(&dir.key_log_path())
            .and_then(|log| KeySet::chain(genesis.clone(), &log).map(|k| (k, log)))
        {
            Ok((k, log)) => (k, log, None),
            Err(e) => (KeySet::new(genesis), Vec::new(), Some(e.to_string())),
        };
        // A trusted key from elsewhere must be one of the chain's keys; otherwise only it counts.
        let keys = match trusted {
            Some(t) if !chain.contains(&t.vkey()) => KeySet::new(t),
            _ => chain,
        };
        let verifier = keys.current().clone();
        // WALs first: a WAL sealed between the two reads is then in both lists (the readers skip
        // what a segment covers), never in neither
        let wals = list_wals(&dir)?;
        let manifest = datadir::read_manifest(&dir.manifest_path())?;
        Ok(LedgerReader {
            dir,
            identity,
            identity_bytes,
            verifier,
            keys,
            key_log,
            key_log_error,
            manifest,
            wals,
        })
    }

    /// Every checkpoint in checkpoints.log that verifies, in order (errors are skipped; `verify`
    /// reports them).
    pub fn checkpoints(&self) -> Result<Vec<SignedCheckpoint>, LedgerError> {
        let log = datadir::read_checkpoint_log(&self.dir.checkpoints_log())?;
        Ok(log
            .entries
            .iter()
            .filter_map(|e| {
                self.keys
                    .open_checkpoint(&e.note, Some(&self.identity.origin))
                    .ok()
            })
            .collect())
    }

    /// The latest verified checkpoint.
    pub fn latest_checkpoint(&self) -> Result<Option<SignedCheckpoint>, LedgerError> {
        Ok(self
            .checkpoints()?
            .into_iter()
            .max_by_key(|c| c.checkpoint.size))
    }

    /// The checkpoint for exactly `size`, if one was signed.
    pub fn checkpoint_at(&self, size: u64) -> Result<Option<SignedCheckpoint>, LedgerError> {
        Ok(self
            .checkpoints()?
            .into_iter()
            .find(|c| c.checkpoint.size == size))
    }

    /// Visit records with index in `[from, to)` in order. Stops early when `f` returns
    /// `Ok(false)`. A torn WAL tail ends the stream (those records were never acknowledged).
    /// Safe beside a running writer: when a WAL file disappears because it was sealed
    /// meanwhile, the segment list is read again and the records come from the new segment.
    pub fn for_each(
        &self,
        from: u64,
        to: u64,
        mut f: impl FnMut(StoredRecord) -> Result<bool, LedgerError>,
    ) -> Result<(), LedgerError> {
        self.for_each_in(from, to, None, &mut f)
    }

    /// [`LedgerReader::for_each`], sealed segments read only at the rows of `want` when given;
    /// a pass that finds a WAL file sealed meanwhile is retried on the new segment list.
    fn for_each_in(
        &self,
        from: u64,
        to: u64,
        want: Option<&std::collections::BTreeSet<u64>>,
        f: &mut impl FnMut(StoredRecord) -> Result<bool, LedgerError>,
    ) -> Result<(), LedgerError> {
        let mut next = from;
        let mut manifest = self.manifest.clone();
        let mut wals = self.wals.clone();
        for _attempt in 0..8 {
            match self.for_each_once(&manifest, &wals, &mut next, to, want, f)? {
                Pass::Done => return Ok(()),
                Pass::Sealed => {
                    manifest = datadir::read_manifest(&self.dir.manifest_path())?;
                    wals = list_wals(&self.dir)?;
                }
            }
        }
        Err(LedgerError::Invalid(
            "the ledger kept changing while being read; try again".into(),
        ))
    }

    /// Visit the records whose indexes are in `want`, in order, reading from each sealed
    /// segment only the rows they are in (a sparse set — the events a correlation replays after
    /// a restart — costs what it holds, not the range it spans). Indexes past the end are
    /// skipped; stops early when `f` returns `Ok(false)`.
    pub fn for_each_of(
        &self,
        want: &std::collections::BTreeSet<u64>,
        mut f: impl FnMut(StoredRecord) -> Result<bool, LedgerError>,
    ) -> Result<(), LedgerError> {
        let (Some(&from), Some(&last)) = (want.first(), want.last()) else {
            return Ok(());
        };
        let mut g = |r: StoredRecord| {
            if want.contains(&r.index) {
                f(r)
            } else {
                Ok(true)
            }
        };
        self.for_each_in(from, last.saturating_add(1), Some(want), &mut g)
    }

    /// One pass over the segments, then the WAL files, from `next` up to `to`; with `want`,
    /// sealed segments are read only at the rows of those indexes.
    fn for_each_once(
        &self,
        manifest: &[ManifestEntry],
        wals: &[(u64, PathBuf)],
        next: &mut u64,
        to: u64,
        want: Option<&std::collections::BTreeSet<u64>>,
        f: &mut impl FnMut(StoredRecord) -> Result<bool, LedgerError>,
    ) -> Result<Pass, LedgerError> {
        let mut go = true;
        let start = *next;
        for e in manifest
            .iter()
            .filter(|e| e.state == "sealed" && e.last >= start && e.first < to)
        {
            let path = self.dir.seg_dir().join(&e.file);
            let visit = |r: segment::HashedRef<'_>| {
                if !go || r.index < *next || r.index >= to {
                    return Ok(());
                }
                let kind = RecordKind::from_u8(r.kind).ok_or_else(|| {
                    LedgerError::Corrupt(format!("record {} has unknown kind {}", r.index, r.kind))
                })?;
                go = f(StoredRecord {
                    index: r.index,
                    kind,
                    received: r.received,
                    source: r.source.to_string(),
                    raw: r.raw.to_vec(),
                    leaf: record_leaf_hash(r.kind, r.index, r.received.0, r.source, r.raw),
                    format: r.format.and_then(trailwarden_model::Format::from_name),
                })?;
                *next = r.index + 1;
                Ok(())
            };
            match want {
                None => segment::for_each_hashed(&path, visit)?,
                Some(w) => {
                    let rows: Vec<u64> = w.range(start.max(e.first)..=e.last).copied().collect();
                    if !rows.is_empty() {
                        segment::for_each_hashed_of(&path, e.first, &rows, visit)?;
                    }
                    // the segment is done, whichever of its records were wanted
                    *next = (*next).max(e.last + 1);
                }
            }
            if !go {
                return Ok(Pass::Done);
            }
        }
        for (first, path) in wals {
            if *first >= to {
                break;
            }
            // gone: sealed meanwhile, read the segment list again
            let Some(data) = crate::datadir::read_if_exists(path)? else {
                return Ok(Pass::Sealed);
            };
            let mut at = 0usize;
            while at < data.len() {
                let Ok(fr) = wal::frame_at(&data, at) else {
                    break;
                };
                at += fr.len;
                let d = record::decode(fr.record)
                    .map_err(|e| LedgerError::Corrupt(format!("{}: {e}", path.display())))?;
                if d.index < *next {
                    continue;
                }
                if d.index >= to {
                    return Ok(Pass::Done);
                }
                *next = d.index + 1;
                if !f(StoredRecord {
                    index: d.index,
                    kind: d.kind,
                    received: d.received,
                    source: d.source.to_string(),
                    raw: d.payload.to_vec(),
                    leaf: crate::merkle::leaf_hash(fr.record),
                    format: crate::writer::frame_format(fr.meta),
                })? {
                    return Ok(Pass::Done);
                }
            }
        }
        Ok(Pass::Done)
    }

    /// Records present (sealed plus committed WAL frames).
    pub fn size(&self) -> Result<u64, LedgerError> {
        let mut n = self.manifest.last().map_or(0, |e| e.last + 1);
        for (first, path) in &self.wals {
            if *first < n {
                continue;
            }
            let data = fs::read(path).unwrap_or_default();
            let mut at = 0usize;
            let mut count = 0u64;
            while at < data.len() {
                let Ok(fr) = wal::frame_at(&data, at) else {
                    break;
                };
                at += fr.len;
                count += 1;
            }
            n = first + count;
        }
        Ok(n)
    }

    /// What a query reads: the sealed segment files of this snapshot, and the committed records
    /// of the WAL tail after them rebuilt into segment rows (the same columns; `extractor`
    /// re-derives an event's query columns from its raw bytes). `None` when a WAL was sealed
    /// while it was being read: open the reader again and retry.
    pub fn query_snapshot(
        &self,
        extractor: Option<&std::sync::Arc<crate::Extractor>>,
    ) -> Result<Option<QuerySnapshot>, LedgerError> {
        let sealed: Vec<&ManifestEntry> = self
            .manifest
            .iter()
            .filter(|e| e.state == "sealed")
            .collect();
        let segments = sealed
            .iter()
            .map(|e| self.dir.seg_dir().join(&e.file))
            .collect();
        let from = self.manifest.last().map_or(0, |e| e.last + 1);
        let mut builder = segment::SegmentBuilder::new();
        let mut next = from;
        for (_, path) in &self.wals {
            let Some(data) = crate::datadir::read_if_exists(path)? else {
                return Ok(None);
            };
            let mut at = 0usize;
            while at < data.len() {
                let Ok(fr) = wal::frame_at(&data, at) else {
                    break;
                };
                at += fr.len;
                let Ok(d) = record::decode(fr.record) else {
                    break;
                };
                if d.index < next {
                    continue;
                }
                if d.index != next {
                    break;
                }
                crate::writer::rebuild_row(&mut builder, &fr, extractor)?;
                next += 1;
            }
        }
        let tail = if builder.rows() > 0 {
            Some(builder.finish()?)
        } else {
            None
        };
        Ok(Some(QuerySnapshot {
            segments,
            tail,
            size: next,
        }))
    }

    /// A source of leaf hashes for building proofs (with the tile cache).
    pub fn hash_source(&self) -> Result<ReaderHashes<'_>, LedgerError> {
        Ok(ReaderHashes {
            reader: self,
            tiles: Tiles::load(&self.dir.tree_dir().join("tiles"))?,
            loaded: RefCell::new(HashMap::new()),
        })
    }

    /// Whether a WAL ends in a torn tail (for reports).
    pub fn wal_tail(&self) -> Vec<(PathBuf, ScanEnd)> {
        let mut out = Vec::new();
        for (first, path) in &self.wals {
            if let Ok(data) = fs::read(path) {
                let s = wal::scan(&data, *first, [0u8; 32], u64::MAX);
                out.push((path.clone(), s.end));
            }
        }
        out
    }
}

/// Leaf hashes read on demand (a tile at a time) plus cached level-8 roots.
pub struct ReaderHashes<'a> {
    reader: &'a LedgerReader,
    tiles: Tiles,
    loaded: RefCell<HashMap<u64, Vec<Hash>>>,
}

impl ReaderHashes<'_> {
    fn tile_leaves(&self, k: u64) -> Result<Vec<Hash>, String> {
        if let Some(v) = self.loaded.borrow().get(&k) {
            return Ok(v.clone());
        }
        let mut v = Vec::with_capacity(TILE as usize);
        self.reader
            .for_each(k * TILE, (k + 1) * TILE, |r| {
                v.push(r.leaf);
                Ok(true)
            })
            .map_err(|e| e.to_string())?;
        self.loaded.borrow_mut().insert(k, v.clone());
        Ok(v)
    }
}

impl HashSource for ReaderHashes<'_> {
    fn leaf_hashes(&self, begin: u64, end: u64) -> Result<Vec<Hash>, String> {
        let mut out = Vec::with_capacity((end - begin) as usize);
        let mut k = begin / TILE;
        while k * TILE < end {
            let t = self.tile_leaves(k)?;
            for (i, h) in t.iter().enumerate() {
                let idx = k * TILE + i as u64;
                if idx >= begin && idx < end {
                    out.push(*h);
                }
            }
            k += 1;
        }
        if out.len() as u64 != end - begin {
            return Err(format!(
                "only {} of the leaves {begin}..{end} are stored",
                out.len()
            ));
        }
        Ok(out)
    }

    fn cached_subtree(&self, level: u32, begin: u64) -> Option<Hash> {
        if level < TILE_LEVEL {
            return None;
        }
        let first = begin / TILE;
        let count = 1u64 << (level - TILE_LEVEL);
        let hashes = self.tiles.hashes();
        if (first + count) as usize > hashes.len() {
            return None;
        }
        Some(root_of(&hashes[first as usize..(first + count) as usize]))
    }
}
