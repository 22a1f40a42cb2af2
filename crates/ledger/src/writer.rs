//! The single writer: appends records, commits them durably in groups, keeps the Merkle tree,
//! signs checkpoints, seals full WAL files into Parquet segments, and writes its own lifecycle
//! records. Opening it runs crash recovery.
//!
//! Durability rules (see ARCHITECTURE.md): a record is acknowledged only after `commit` has
//! written its frame and `fdatasync` returned; any write or sync error stops the writer for good
//! (no retry on the same file descriptor — the page cache may already have dropped the data);
//! checkpoints only ever sign durable sizes, never smaller than a size signed before.

use crate::datadir::{self, b64, DataDir, Identity, ManifestEntry, StreamPos};
use crate::keys::{self, KeyLogEntry, KeySet};
use crate::merkle::{chain_seed, Frontier, Hash};
use crate::note::{sign_note, Checkpoint, NoteSigner, NoteVerifier, SignedCheckpoint};
use crate::record::{self, Lifecycle};
use crate::segment::{self, Extracted, RawBuffers, SegmentBuilder, SegmentMeta};
use crate::tiles::TileWriter;
use crate::wal::{self, ScanEnd, WalIo};
use crate::LedgerError;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use trailwarden_model::{Body, Event, Format, Quarantine, Record, RecordKind, Timestamp};

/// Exit code the CLI uses when the writer stopped after a failed write or sync.
pub const EXIT_FAIL_STOP: u8 = 75;
/// Exit code the CLI uses when recovery found corruption and refused to start.
pub const EXIT_CORRUPT: u8 = 76;

/// A source of wall-clock time (tests substitute their own).
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// Rebuilds the extracted columns of an event from its raw bytes when a WAL is reopened
/// (the WAL stores only the format; the parser lives in another crate).
pub type Extractor = dyn Fn(Format, &[u8], Timestamp) -> Option<Event> + Send + Sync;

/// Where checkpoints are also published, outside the writer's control (a WORM bucket, a
/// witness). The writer refuses to start when it holds less than was published.
pub trait Anchor: Send {
    /// Publish a signed checkpoint.
    fn publish(&mut self, size: u64, note: &str) -> Result<(), LedgerError>;
    /// The largest size published so far (0 if none).
    fn latest_size(&self) -> Result<u64, LedgerError>;
}

/// Writer options.
pub struct Options {
    /// Origin for a new ledger (`None`: `trailwarden.local/<random>`).
    pub origin: Option<String>,
    /// Seal the WAL into a segment at this many bytes.
    pub seal_bytes: u64,
    /// … or when its oldest record is this old (nanoseconds).
    pub seal_age_ns: i64,
    /// A clean stop seals the WAL when it holds at least this much (default 1 MiB), so a
    /// stopped ledger is not left with a large uncompressed tail; smaller tails wait for the next
    /// run, so short commands (a `verify` recording its read) do not each leave a tiny segment.
    pub seal_on_close_bytes: u64,
    /// Sign with this instead of `keys/checkpoint.key` (a KMS or HSM signer); it must be the
    /// ledger's current key.
    pub signer: Option<Arc<dyn NoteSigner>>,
    /// zstd level of segments (1: on audit JSON, level 3 saves 0.1 % of the size for 10 % more
    /// CPU; see BENCHMARKS.md).
    pub zstd_level: i32,
    /// Sign a checkpoint at most this often while appending (nanoseconds).
    pub checkpoint_interval_ns: i64,
    /// Write a heartbeat record this often (nanoseconds).
    pub heartbeat_interval_ns: i64,
    /// The largest commit batch, in bytes: garbage beyond the last good frame up to this size is
    /// a torn write, more is corruption.
    pub max_batch_bytes: u64,
    /// Seal on a background thread.
    pub background_seal: bool,
    /// Why the writer starts (`ingest`, `serve`, …), recorded in the start record.
    pub reason: String,
    /// The configuration in effect, as JSON (its SHA-256 goes into the start record; a change
    /// from the previous run is recorded as a config-change record naming what changed).
    pub config: serde_json::Value,
    /// Clock.
    pub clock: Arc<dyn Clock>,
    /// Rebuilds event columns on reopen.
    pub extractor: Option<Arc<Extractor>>,
    /// External checkpoint store.
    pub anchor: Option<Box<dyn Anchor>>,
    /// File-operation layer for new WAL files (tests inject failures).
    pub wal_io: Option<WalIoWrapper>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            origin: None,
            seal_bytes: 64 << 20,
            seal_age_ns: 15 * 60 * trailwarden_model::time::NANOS_PER_SEC,
            seal_on_close_bytes: 1 << 20,
            signer: None,
            zstd_level: 1,
            checkpoint_interval_ns: trailwarden_model::time::NANOS_PER_SEC,
            heartbeat_interval_ns: 60 * trailwarden_model::time::NANOS_PER_SEC,
            max_batch_bytes: 80 << 20,
            background_seal: true,
            reason: "ingest".into(),
            config: serde_json::Value::Null,
            clock: Arc::new(SystemClock),
            extractor: None,
            anchor: None,
            wal_io: None,
        }
    }
}

/// What recovery did when the writer opened.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recovery {
    /// The ledger was created now.
    pub created: bool,
    /// Records found.
    pub size: u64,
    /// The previous run ended with a stop record.
    pub clean_shutdown: bool,
    /// Bytes of a torn WAL tail truncated.
    pub truncated_bytes: u64,
    /// Segments resealed (a seal was interrupted).
    pub resealed: u64,
    /// Stale WAL files removed (their seal had completed).
    pub removed_wals: u64,
}

/// Wraps the WAL file (tests inject write and fsync failures with it).
pub type WalIoWrapper = Box<dyn Fn(File) -> Box<dyn WalIo> + Send + Sync>;

/// What the WAL remembers about a record besides its hashed bytes.
#[derive(Serialize, Deserialize, Default)]
struct FrameMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    f: Option<Format>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    q: Option<Quarantine>,
    /// Where in a message stream the record came from (cluster writers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    p: Option<StreamPos>,
}

/// The stream position a WAL frame's metadata names, if any.
pub(crate) fn frame_stream_pos(meta: &[u8]) -> Option<StreamPos> {
    serde_json::from_slice::<FrameMeta>(meta)
        .ok()
        .and_then(|m| m.p)
}

/// The format a WAL frame's metadata names, if any.
pub fn frame_format(meta: &[u8]) -> Option<Format> {
    serde_json::from_slice::<FrameMeta>(meta)
        .ok()
        .and_then(|m| m.f)
}

struct ActiveWal {
    first: u64,
    path: PathBuf,
    io: Box<dyn WalIo>,
    bytes: u64,
    opened: Timestamp,
    builder: SegmentBuilder,
}

pub(crate) struct SealJob {
    /// Who signs the seal note (empty: the writer's signers when it runs the job).
    signers: Vec<Arc<dyn NoteSigner>>,
    newest_received: Option<Timestamp>,
    first: u64,
    last: u64,
    batch: arrow_array::RecordBatch,
    root: Hash,
    frontier: Vec<Hash>,
    chain: Hash,
    wal_path: PathBuf,
    /// The ledger's stream position when the WAL was rotated.
    stream: Option<StreamPos>,
    /// Asked before each of the seal's writes.
    guard: Option<WriteGuard>,
}

/// Asked before every write to the data directory: `Err(why)` when this process lost the right
/// to write (a cluster writer whose lease lapsed). See [`Ledger::set_guard`].
pub type WriteGuard = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Ask `guard` (if any): its refusal is the error that stops the writer.
fn guarded(guard: Option<&WriteGuard>) -> Result<(), LedgerError> {
    match guard.map(|g| g()) {
        Some(Err(why)) => Err(LedgerError::Stopped(format!("fenced: {why}"))),
        _ => Ok(()),
    }
}

struct Sealer {
    tx: mpsc::SyncSender<SealJob>,
    handle: JoinHandle<()>,
}

/// The ledger writer.
pub struct Ledger {
    dir: DataDir,
    _lock: File,
    identity: Identity,
    signer: Arc<dyn NoteSigner>,
    /// The key replaced by the last rotation: co-signs until retired.
    previous_signer: Option<Arc<dyn NoteSigner>>,
    keys: KeySet,
    opts: Options,
    frontier: Frontier,
    chain: Hash,
    tiles: TileWriter,
    wal: ActiveWal,
    batch_seq: u64,
    // Appended, not yet committed.
    pending: Vec<u8>,
    pending_leaves: Vec<Hash>,
    pending_last_frame: usize,
    pending_chain: Hash,
    last_checkpoint: Option<SignedCheckpoint>,
    last_checkpoint_at: Timestamp,
    last_heartbeat_at: Timestamp,
    appended_since_heartbeat: u64,
    started_at: Timestamp,
    failed: Option<String>,
    sealer: Option<Sealer>,
    seal_error: Arc<Mutex<Option<String>>>,
    /// Raw-column buffers handed back by sealing, reused by the next WAL's builder.
    spare_raw: Arc<SparePool>,
    /// Raw-column buffers this writer allocated (see [`Ledger::raw_buffers_allocated`]).
    raw_allocated: u64,
    /// The newest stream position appended (cluster writers resume after it).
    stream_pos: Option<StreamPos>,
    /// Asked right before every write to the data directory (see [`Ledger::set_guard`]).
    guard: Option<WriteGuard>,
}

impl Ledger {
    /// Open (creating on first use) the ledger in `root`, running crash recovery.
    pub fn open(
        root: impl Into<PathBuf>,
        opts: Options,
    ) -> Result<(Ledger, Recovery), LedgerError> {
        let dir = DataDir::new(root);
        let now = opts.clock.now();
        let mut recovery = Recovery::default();
        let created = !dir.exists();
        if created {
            let origin = match &opts.origin {
                Some(o) => o.clone(),
                None => {
                    let mut r = [0u8; 8];
                    getrandom::fill(&mut r)
                        .map_err(|e| LedgerError::Invalid(format!("no randomness: {e}")))?;
                    format!("trailwarden.local/{}", hex::encode(r))
                }
            };
            fs::create_dir_all(dir.root()).map_err(|e| LedgerError::Io {
                context: format!("creating {}", dir.root().display()),
                source: e,
            })?;
            let lock = lock(&dir)?;
            let (identity, id_bytes, signer) = dir.create(&origin, now)?;
            let keys = KeySet::new(signer.verifier());
            let signer: Arc<dyn NoteSigner> = match &opts.signer {
                Some(s) if s.verifier() != signer.verifier() => {
                    return Err(LedgerError::Invalid(
                        "a new ledger signs with the key it creates; configure the external signer after a key rotation".into(),
                    ))
                }
                _ => Arc::new(signer),
            };
            let raw = RawBuffers::with_capacity(0, raw_capacity(&opts));
            let wal = new_wal(&dir, 0, now, &opts, 0, raw)?;
            let tiles = TileWriter::open(&dir.tree_dir().join("tiles"))?;
            let chain = chain_seed(&identity.origin);
            let mut l = Ledger::assemble(
                dir,
                lock,
                identity.clone(),
                (signer, None, keys),
                opts,
                Frontier::new(),
                chain,
                tiles,
                wal,
                0,
            );
            l.append_internal(RecordKind::Lifecycle, &genesis(&identity, &id_bytes))?;
            recovery.created = true;
            l.start(&mut recovery)?;
            return Ok((l, recovery));
        }
        let lock = lock(&dir)?;
        let (identity, id_bytes) = dir.read_identity()?;
        let (signer, previous, keys) = load_keys(&dir, &identity, &opts)?;
        let state = crate::recover::recover(&dir, &identity, &keys, &opts, &mut recovery)?;
        let wal = ActiveWal {
            first: state.wal_first,
            io: open_wal_io(&state.wal_path, &opts)?,
            path: state.wal_path,
            bytes: state.wal_bytes,
            opened: state.wal_opened.unwrap_or(now),
            builder: state.builder,
        };
        let tiles = state.tiles;
        let mut l = Ledger::assemble(
            dir,
            lock,
            identity,
            (signer, previous, keys),
            opts,
            state.frontier,
            state.chain,
            tiles,
            wal,
            state.batch_seq,
        );
        l.last_checkpoint = state.last_checkpoint;
        l.stream_pos = state.stream_pos;
        for job in state.reseal {
            recovery.resealed += 1;
            l.seal_now(job)?;
        }
        recovery.size = l.size();
        recovery.clean_shutdown = state.clean_shutdown;
        if l.next_index() == 0 {
            // a genesis killed after identity.json and before its record was durable: the
            // record is written now, so record 0 is always the identity's genesis (the t13
            // kill -9 flake: "record 0 is not the genesis record of this identity.json")
            l.append_internal(RecordKind::Lifecycle, &genesis(&l.identity, &id_bytes))?;
            recovery.created = true;
        }
        l.start(&mut recovery)?;
        Ok((l, recovery))
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        dir: DataDir,
        lock: File,
        identity: Identity,
        (signer, previous_signer, keys): (Arc<dyn NoteSigner>, Option<Arc<dyn NoteSigner>>, KeySet),
        opts: Options,
        frontier: Frontier,
        chain: Hash,
        tiles: TileWriter,
        wal: ActiveWal,
        batch_seq: u64,
    ) -> Ledger {
        let now = opts.clock.now();
        let seal_error = Arc::new(Mutex::new(None));
        Ledger {
            dir,
            _lock: lock,
            identity,
            signer,
            previous_signer,
            keys,
            frontier,
            pending_chain: chain,
            chain,
            tiles,
            wal,
            batch_seq,
            pending: Vec::with_capacity(4 << 20),
            pending_leaves: Vec::new(),
            pending_last_frame: 0,
            last_checkpoint: None,
            last_checkpoint_at: now,
            last_heartbeat_at: now,
            appended_since_heartbeat: 0,
            started_at: now,
            failed: None,
            sealer: None,
            seal_error,
            spare_raw: Arc::new(SparePool::default()),
            // the open WAL's builder holds the first
            raw_allocated: 1,
            stream_pos: None,
            guard: None,
            opts,
        }
    }

    fn start(&mut self, recovery: &mut Recovery) -> Result<(), LedgerError> {
        // Refuse to run behind what was published: that would sign a fork.
        let published = match &self.opts.anchor {
            Some(a) => a.latest_size()?,
            None => 0,
        };
        let signed = self
            .last_checkpoint
            .as_ref()
            .map_or(0, |c| c.checkpoint.size);
        let have = self.size() + self.pending_leaves.len() as u64;
        if have < published.max(signed) {
            return Err(LedgerError::Truncated {
                have,
                signed: published.max(signed),
            });
        }
        let config_text = serde_json::to_string(&self.opts.config)
            .map_err(|e| LedgerError::Invalid(format!("encoding the configuration: {e}")))?;
        let config_sha256 = trailwarden_model::sha256_hex(config_text.as_bytes());
        let start = Lifecycle::Start {
            version: env!("CARGO_PKG_VERSION").into(),
            clean_shutdown: recovery.clean_shutdown || recovery.created,
            truncated_bytes: recovery.truncated_bytes,
            recovered_size: recovery.size,
            reason: self.opts.reason.clone(),
            config_sha256: config_sha256.clone(),
        };
        self.append_internal(RecordKind::Lifecycle, &start)?;
        self.record_config_change(&config_text, config_sha256)?;
        self.drain_access_spool()?;
        self.commit()?;
        self.checkpoint()?;
        Ok(())
    }

    /// Compare the configuration with the previous run's (`config.json`, derived state) and
    /// record a change in the tree (PCI DSS 10.2.1.6: changes to the audit logging setup).
    fn record_config_change(&mut self, text: &str, sha: String) -> Result<(), LedgerError> {
        let path = self.dir.root().join("config.json");
        let previous = crate::datadir::read_text_if_exists(&path)?;
        if previous.as_deref() == Some(text) {
            return Ok(());
        }
        if let Some(prev) = previous {
            let before: serde_json::Value = serde_json::from_str(&prev).unwrap_or_default();
            let change = Lifecycle::ConfigChange {
                from_sha256: trailwarden_model::sha256_hex(prev.as_bytes()),
                to_sha256: sha,
                summary: config_diff(&before, &self.opts.config),
            };
            self.append_internal(RecordKind::Lifecycle, &change)?;
        }
        self.may_write()?;
        datadir::write_atomic(&path, text.as_bytes())
    }

    /// Move reads recorded by other processes while this one held the lock (`access.spool`)
    /// into the ledger.
    pub fn drain_access_spool(&mut self) -> Result<u64, LedgerError> {
        let p = self.dir.access_spool();
        let mut f = match OpenOptions::new().read(true).write(true).open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => {
                return Err(LedgerError::Io {
                    context: format!("opening {}", p.display()),
                    source: e,
                })
            }
        };
        f.lock().map_err(|e| LedgerError::Io {
            context: format!("locking {}", p.display()),
            source: e,
        })?;
        let mut text = String::new();
        std::io::Read::read_to_string(&mut f, &mut text).map_err(|e| LedgerError::Io {
            context: format!("reading {}", p.display()),
            source: e,
        })?;
        let mut n = 0;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(
                |e| serde_json::json!({ "unparseable_spool_line": line, "error": e.to_string() }),
            );
            self.append_internal(RecordKind::Access, &v)?;
            n += 1;
        }
        if n > 0 {
            self.commit()?;
        }
        self.may_write()?;
        f.set_len(0).map_err(|e| LedgerError::Io {
            context: format!("truncating {}", p.display()),
            source: e,
        })?;
        f.sync_all().map_err(|e| LedgerError::Io {
            context: format!("syncing {}", p.display()),
            source: e,
        })?;
        Ok(n)
    }

    /// The data directory.
    pub fn data_dir(&self) -> &DataDir {
        &self.dir
    }

    /// The ledger identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The verifier of the key that signs now.
    pub fn verifier(&self) -> NoteVerifier {
        self.signer.verifier()
    }

    /// Every key of the ledger with the first size it may sign.
    pub fn keys(&self) -> &KeySet {
        &self.keys
    }

    /// The signers of new checkpoints and seal notes: the current key, and the previous one
    /// until it is retired.
    fn signers(&self) -> Vec<Arc<dyn NoteSigner>> {
        let mut v = vec![self.signer.clone()];
        v.extend(self.previous_signer.clone());
        v
    }

    /// Durable records in the tree.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// Index the next appended record will get.
    pub fn next_index(&self) -> u64 {
        self.size() + self.pending_leaves.len() as u64
    }

    /// Root of the durable tree.
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// The latest signed checkpoint.
    pub fn latest_checkpoint(&self) -> Option<&SignedCheckpoint> {
        self.last_checkpoint.as_ref()
    }

    /// Bytes appended but not yet committed.
    pub fn pending_bytes(&self) -> usize {
        self.pending.len()
    }

    /// Records appended but not yet committed.
    pub fn pending_records(&self) -> usize {
        self.pending_leaves.len()
    }

    /// Ask `guard` right before every write to the data directory from now on — the WAL append,
    /// each file of a checkpoint, a seal's segment, note, manifest line and WAL removal, tiles —
    /// so that a writer that lost its lease (its process paused past it) stops at its next write
    /// instead of finishing the group it was in. The first refusal stops the writer for good.
    pub fn set_guard(&mut self, guard: Option<WriteGuard>) {
        self.guard = guard;
    }

    /// The guard's answer; a refusal stops the writer.
    fn may_write(&mut self) -> Result<(), LedgerError> {
        self.check_ok()?;
        if let Err(LedgerError::Stopped(why)) = guarded(self.guard.as_ref()) {
            return Err(self.fail(why));
        }
        Ok(())
    }

    fn check_ok(&self) -> Result<(), LedgerError> {
        if let Some(f) = &self.failed {
            return Err(LedgerError::Stopped(f.clone()));
        }
        if let Ok(g) = self.seal_error.lock() {
            if let Some(e) = g.as_ref() {
                return Err(LedgerError::Stopped(format!("sealing failed: {e}")));
            }
        }
        Ok(())
    }

    /// Append a parsed or quarantined record. Returns its index; it is durable only after
    /// [`Ledger::commit`].
    pub fn append(&mut self, rec: &Record) -> Result<u64, LedgerError> {
        self.append_from(rec, None)
    }

    /// [`Ledger::append`] for a record consumed from a message stream: its position is kept in
    /// the frame's metadata (and at the next seal in the manifest), so that
    /// [`Ledger::stream_position`] survives a crash.
    pub fn append_from(
        &mut self,
        rec: &Record,
        pos: Option<StreamPos>,
    ) -> Result<u64, LedgerError> {
        let (kind, meta, x) = match &rec.body {
            Body::Event(e) => (
                RecordKind::Event,
                FrameMeta {
                    f: Some(e.format),
                    q: None,
                    p: pos,
                },
                Extracted::Event(e),
            ),
            Body::Quarantine(q) => (
                RecordKind::Quarantine,
                FrameMeta {
                    f: None,
                    q: Some(q.clone()),
                    p: pos,
                },
                Extracted::Quarantine(q),
            ),
            Body::Internal => (
                RecordKind::Lifecycle,
                FrameMeta {
                    p: pos,
                    ..FrameMeta::default()
                },
                Extracted::Internal,
            ),
        };
        let i = self.append_raw(kind, rec.received, &rec.source, &rec.raw, &meta, x)?;
        if pos.is_some() {
            self.stream_pos = pos;
        }
        Ok(i)
    }

    /// The newest stream position appended (durable once committed; after a crash, the newest
    /// one that was durable): where a cluster writer resumes. `None`: no record came from a
    /// stream.
    pub fn stream_position(&self) -> Option<StreamPos> {
        self.stream_pos
    }

    /// Append a record trailwarden writes itself (its payload is `value` as JSON).
    pub fn append_internal<T: Serialize>(
        &mut self,
        kind: RecordKind,
        value: &T,
    ) -> Result<u64, LedgerError> {
        self.append_internal_from(kind, value, None)
    }

    /// [`Ledger::append_internal`] for a record that came from a message stream (an ingest
    /// node's access record): its position is kept as [`Ledger::append_from`] keeps it.
    pub fn append_internal_from<T: Serialize>(
        &mut self,
        kind: RecordKind,
        value: &T,
        pos: Option<StreamPos>,
    ) -> Result<u64, LedgerError> {
        let payload = serde_json::to_vec(value)
            .map_err(|e| LedgerError::Invalid(format!("encoding {kind} record: {e}")))?;
        let now = self.opts.clock.now();
        let i = self.append_raw(
            kind,
            now,
            "trailwarden",
            &payload,
            &FrameMeta {
                p: pos,
                ..FrameMeta::default()
            },
            Extracted::Internal,
        )?;
        if pos.is_some() {
            self.stream_pos = pos;
        }
        Ok(i)
    }

    fn append_raw(
        &mut self,
        kind: RecordKind,
        received: Timestamp,
        source: &str,
        raw: &[u8],
        meta: &FrameMeta,
        x: Extracted<'_>,
    ) -> Result<u64, LedgerError> {
        self.check_ok()?;
        let wal_full = self.wal.bytes + self.pending.len() as u64 >= self.opts.seal_bytes;
        if wal_full || self.wal.builder.bytes() + raw.len() > segment::MAX_SEGMENT_RAW {
            // Seal at the size asked for even when the caller commits in larger batches (this
            // commits what is pending: it becomes durable early, which is harmless).
            self.rotate()?;
        }
        let index = self.next_index();
        let meta_bytes =
            serde_json::to_vec(meta).map_err(|e| LedgerError::Invalid(e.to_string()))?;
        let frame_start = self.pending.len();
        let (leaf, chain) = wal::append_frame(
            self.batch_seq,
            &meta_bytes,
            &self.pending_chain,
            &mut self.pending,
            32 + source.len() + raw.len(),
            |out| record::encode(kind, index, received, source, raw, out),
        )?;
        self.pending_last_frame = frame_start;
        self.pending_chain = chain;
        self.pending_leaves.push(leaf);
        self.wal
            .builder
            .push(index, kind, received, source, raw, &leaf, x);
        self.appended_since_heartbeat += 1;
        Ok(index)
    }

    /// Write every appended record and `fdatasync`. On success they are durable (acknowledge
    /// them now); on failure the writer stops for good. Also signs a checkpoint when one is due,
    /// writes a heartbeat when one is due, and seals the WAL when it is full or old.
    pub fn commit(&mut self) -> Result<u64, LedgerError> {
        self.check_ok()?;
        if self.pending.is_empty() {
            return Ok(self.size());
        }
        wal::mark_batch_end(&mut self.pending, self.pending_last_frame);
        self.may_write()?;
        if let Err(e) = self.wal.io.append(&self.pending) {
            return Err(self.fail(format!("writing {}: {e}", self.wal.path.display())));
        }
        if let Err(e) = self.wal.io.sync() {
            return Err(self.fail(format!("fdatasync of {}: {e}", self.wal.path.display())));
        }
        self.wal.bytes += self.pending.len() as u64;
        self.pending.clear();
        self.batch_seq += 1;
        self.chain = self.pending_chain;
        for leaf in std::mem::take(&mut self.pending_leaves) {
            self.frontier.push(leaf);
            self.tiles.push(leaf);
        }
        let now = self.opts.clock.now();
        if now.0 - self.last_checkpoint_at.0 >= self.opts.checkpoint_interval_ns {
            self.checkpoint()?;
        }
        if now.0 - self.last_heartbeat_at.0 >= self.opts.heartbeat_interval_ns {
            self.heartbeat()?;
        }
        let full = self.wal.bytes >= self.opts.seal_bytes;
        let old = now.0 - self.wal.opened.0 >= self.opts.seal_age_ns;
        if (full || old) && self.size() > self.wal.first {
            self.rotate()?;
        }
        Ok(self.size())
    }

    fn fail(&mut self, msg: String) -> LedgerError {
        self.failed = Some(msg.clone());
        LedgerError::Stopped(msg)
    }

    /// Append a heartbeat record (and commit it).
    pub fn heartbeat(&mut self) -> Result<(), LedgerError> {
        let now = self.opts.clock.now();
        let hb = Lifecycle::Heartbeat {
            size: self.size(),
            uptime_seconds: ((now.0 - self.started_at.0).max(0)
                / trailwarden_model::time::NANOS_PER_SEC) as u64,
            appended: self.appended_since_heartbeat,
        };
        self.last_heartbeat_at = now;
        self.appended_since_heartbeat = 0;
        self.append_internal(RecordKind::Lifecycle, &hb)?;
        self.commit().map(|_| ())
    }

    /// Sign a checkpoint at the durable size (no-op when nothing changed since the last one).
    pub fn checkpoint(&mut self) -> Result<SignedCheckpoint, LedgerError> {
        self.check_ok()?;
        let size = self.size();
        if let Some(c) = &self.last_checkpoint {
            if c.checkpoint.size == size {
                return Ok(c.clone());
            }
            if c.checkpoint.size > size {
                return Err(LedgerError::Invalid(format!(
                    "refusing to sign size {size} below the signed size {}",
                    c.checkpoint.size
                )));
            }
        }
        let cp = Checkpoint {
            origin: self.identity.origin.clone(),
            size,
            root: self.frontier.root(),
            extensions: vec![],
        };
        let signers = self.signers();
        let refs: Vec<&dyn NoteSigner> = signers.iter().map(|s| s.as_ref()).collect();
        let note = sign_note(&cp.text(), &refs).map_err(|e| LedgerError::Invalid(e.to_string()))?;
        // The log first, then the pointer, then the outside world.
        self.may_write()?;
        datadir::append_durable(&self.dir.checkpoints_log(), &datadir::log_entry(&note))?;
        self.may_write()?;
        let guard = self.guard.clone();
        if let Err(e) =
            datadir::write_atomic_checked(&self.dir.checkpoint_path(), note.as_bytes(), || {
                guarded(guard.as_ref())
            })
        {
            return Err(self.fail(e.to_string()));
        }
        self.may_write()?;
        if let Some(a) = self.opts.anchor.as_mut() {
            a.publish(size, &note)?;
        }
        self.may_write()?;
        self.tiles.flush()?;
        let signed = SignedCheckpoint {
            checkpoint: cp,
            note,
        };
        self.last_checkpoint = Some(signed.clone());
        self.last_checkpoint_at = self.opts.clock.now();
        Ok(signed)
    }

    /// Seal the active WAL now (if it holds records) and start a new one.
    pub fn rotate(&mut self) -> Result<(), LedgerError> {
        self.commit()?;
        if self.size() == self.wal.first {
            return Ok(());
        }
        self.checkpoint()?;
        let now = self.opts.clock.now();
        let first = self.wal.first;
        let last = self.size() - 1;
        let rows = self.wal.builder.rows();
        let batch = self.wal.builder.finish()?;
        let raw = self.next_raw();
        self.may_write()?;
        let new = new_wal(
            &self.dir,
            self.size(),
            now,
            &self.opts,
            rows + rows / 8,
            raw,
        )?;
        let old = std::mem::replace(&mut self.wal, new);
        let job = SealJob {
            signers: self.signers(),
            newest_received: None,
            first,
            last,
            batch,
            root: self.frontier.root(),
            frontier: self.frontier.nodes().to_vec(),
            chain: self.chain,
            wal_path: old.path,
            stream: self.stream_pos,
            guard: self.guard.clone(),
        };
        drop(old.io);
        if self.opts.background_seal {
            self.seal_background(job)
        } else {
            self.seal_now(job)
        }
    }

    fn seal_background(&mut self, job: SealJob) -> Result<(), LedgerError> {
        if self.sealer.is_none() {
            // A rendezvous: a writer faster than the sealer blocks here until the previous
            // segment is sealed, instead of queueing segments in memory (at most two raw
            // columns exist: the one sealing and the one filling).
            let (tx, rx) = mpsc::sync_channel::<SealJob>(0);
            let dir = self.dir.clone();
            let origin = self.identity.origin.clone();
            let level = self.opts.zstd_level;
            let clock = self.opts.clock.clone();
            let err = self.seal_error.clone();
            let spare = self.spare_raw.clone();
            let handle = std::thread::Builder::new()
                .name("trailwarden-sealer".into())
                .spawn(move || {
                    for job in rx {
                        match seal(&dir, &origin, level, clock.now(), job) {
                            Ok(raw) => spare.returned(raw),
                            Err(e) => {
                                if let Ok(mut g) = err.lock() {
                                    *g = Some(e.to_string());
                                }
                                spare.returned(None);
                                return;
                            }
                        }
                    }
                })
                .map_err(|e| LedgerError::Io {
                    context: "starting the sealer thread".into(),
                    source: e,
                })?;
            self.sealer = Some(Sealer { tx, handle });
        }
        if let Some(s) = &self.sealer {
            self.spare_raw.sent();
            if s.tx.send(job).is_err() {
                self.spare_raw.returned(None);
                return Err(LedgerError::Stopped("the sealer thread has stopped".into()));
            }
        }
        Ok(())
    }

    fn seal_now(&mut self, mut job: SealJob) -> Result<(), LedgerError> {
        if job.signers.is_empty() {
            job.signers = self.signers();
        }
        let raw = match seal(
            &self.dir,
            &self.identity.origin,
            self.opts.zstd_level,
            self.opts.clock.now(),
            job,
        ) {
            Ok(raw) => raw,
            // like a background seal's failure: the writer stops
            Err(e) => return Err(self.fail(e.to_string())),
        };
        self.spare_raw.keep(raw);
        Ok(())
    }

    /// Buffers for the next WAL's raw column: reclaimed from a sealed segment, otherwise fresh
    /// with room for a full segment. While a seal is under way its buffers are waited for
    /// rather than a third allocated: the rotation would wait for that seal a moment later
    /// anyway (the sealer takes one job at a time), and a fresh buffer made then was kept as
    /// a spare for good — each slow seal added a segment's worth of raw bytes (~70 MiB) to
    /// the writer's memory until the pool was full (regression test
    /// `regression_a_slow_seal_does_not_make_the_writer_keep_a_third_raw_buffer`).
    fn next_raw(&mut self) -> RawBuffers {
        let sealer_gone = || self.sealer.as_ref().is_none_or(|s| s.handle.is_finished());
        if let Some(raw) = self.spare_raw.take(sealer_gone) {
            return raw;
        }
        self.raw_allocated += 1;
        RawBuffers::with_capacity(0, raw_capacity(&self.opts))
    }

    /// Raw-column buffers (each with room for a whole segment's raw bytes) this writer has
    /// allocated since it opened, the open WAL's included: one for the WAL filling and one
    /// for the segment sealing beside it, then reused; a count above two is memory the writer
    /// holds for good.
    pub fn raw_buffers_allocated(&self) -> u64 {
        self.raw_allocated
    }

    /// Records `[0, n)` whose tile hashes are on disk (flushed and fsynced now): a sealed
    /// segment below this may leave the local disk (evicted to the archive) without a later
    /// open needing its leaves to rebuild the tile cache.
    pub fn durable_tile_size(&mut self) -> Result<u64, LedgerError> {
        self.tiles.sync()?;
        Ok(self.tiles.len() * crate::tiles::TILE)
    }

    /// Wait for background seals to finish.
    pub fn wait_for_seals(&mut self) -> Result<(), LedgerError> {
        if let Some(s) = self.sealer.take() {
            drop(s.tx);
            let _ = s.handle.join();
        }
        self.check_ok()
    }

    /// Rotate the checkpoint key to `new` (same name: the origin). The rotation record, with
    /// `new`'s proof of possession, goes into the tree and a checkpoint signed by the current key
    /// covers it; then `keys.log` names the new key, which signs from then on (the old key
    /// co-signs until [`Ledger::retire_previous_key`]). Returns the `keys.log` entry. The caller
    /// persists the new key (see `DataDir::create_next_key` / `promote_next_key`).
    pub fn rotate_key(&mut self, new: Arc<dyn NoteSigner>) -> Result<KeyLogEntry, LedgerError> {
        if new.name() != self.identity.origin {
            return Err(LedgerError::Invalid(format!(
                "the new key is named {:?}; checkpoint keys are named after the origin {:?}",
                new.name(),
                self.identity.origin
            )));
        }
        let new_vkey = new.verifier().vkey();
        if self.keys.contains(&new_vkey) {
            return Err(LedgerError::Invalid(format!(
                "{new_vkey} is already one of the ledger's keys"
            )));
        }
        self.commit()?;
        let old_vkey = self.signer.verifier().vkey();
        let index = self.size();
        let effective_from_size = index + 1;
        let msg = keys::pop_message(
            &self.identity.origin,
            &old_vkey,
            &new_vkey,
            effective_from_size,
        );
        let sig = new
            .sign(msg.as_bytes())
            .map_err(|e| LedgerError::Invalid(format!("the new key cannot sign: {e}")))?;
        let rec = Lifecycle::KeyRotation {
            new_vkey: new_vkey.clone(),
            old_vkey: old_vkey.clone(),
            effective_from_size,
            proof_of_possession: datadir::B64_STD.encode(sig),
        };
        let at = self.append_internal(RecordKind::Lifecycle, &rec)?;
        debug_assert_eq!(at, index);
        self.commit()?;
        // the old key vouches for the record that names its successor
        self.checkpoint()?;
        let entry = KeyLogEntry {
            index,
            old_vkey,
            new_vkey,
            effective_from_size,
        };
        self.may_write()?;
        keys::append_key_log(&self.dir.key_log_path(), &entry)?;
        self.keys = self.dir.key_set(&self.keys.keys()[0].0)?;
        self.previous_signer = Some(std::mem::replace(&mut self.signer, new));
        Ok(entry)
    }

    /// Stop co-signing with the key the last rotation replaced, and record that in the tree.
    /// Returns the retired key (none: nothing to retire).
    pub fn retire_previous_key(&mut self) -> Result<Option<String>, LedgerError> {
        let Some(prev) = self.previous_signer.take() else {
            return Ok(None);
        };
        let vkey = prev.verifier().vkey();
        self.append_internal(
            RecordKind::Lifecycle,
            &Lifecycle::KeyRetired { vkey: vkey.clone() },
        )?;
        self.commit()?;
        self.checkpoint()?;
        Ok(Some(vkey))
    }

    /// Append a pause or resume record (logging suspended by an operator or by back-pressure).
    pub fn pause(&mut self, paused: bool, reason: &str) -> Result<(), LedgerError> {
        let r = if paused {
            Lifecycle::Pause {
                reason: reason.into(),
            }
        } else {
            Lifecycle::Resume {
                reason: reason.into(),
            }
        };
        self.append_internal(RecordKind::Lifecycle, &r)?;
        self.commit()?;
        self.checkpoint().map(|_| ())
    }

    /// Stop cleanly: a stop record, a final checkpoint, finished seals.
    pub fn close(mut self, reason: &str) -> Result<SignedCheckpoint, LedgerError> {
        self.append_internal(
            RecordKind::Lifecycle,
            &Lifecycle::Stop {
                reason: reason.into(),
            },
        )?;
        self.commit()?;
        if self.wal.bytes >= self.opts.seal_on_close_bytes {
            self.rotate()?;
        }
        let cp = self.checkpoint()?;
        self.wait_for_seals()?;
        self.may_write()?;
        self.tiles.flush()?;
        Ok(cp)
    }
}

impl Drop for Ledger {
    /// A writer dropped without `close` (an error path) still finishes the seals it started.
    fn drop(&mut self) {
        if let Some(s) = self.sealer.take() {
            drop(s.tx);
            let _ = s.handle.join();
        }
    }
}

fn lock(dir: &DataDir) -> Result<File, LedgerError> {
    let p = dir.lock_path();
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .map_err(|e| LedgerError::Io {
            context: format!("opening {}", p.display()),
            source: e,
        })?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(LedgerError::Locked(dir.root().display().to_string()))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(LedgerError::Io {
            context: format!("locking {}", p.display()),
            source: e,
        }),
    }
}

fn open_wal_io(path: &std::path::Path, opts: &Options) -> Result<Box<dyn WalIo>, LedgerError> {
    let f = OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| LedgerError::Io {
            context: format!("opening {}", path.display()),
            source: e,
        })?;
    Ok(match &opts.wal_io {
        Some(w) => w(f),
        None => Box::new(f),
    })
}

/// The signing keys at open: finish or abandon an interrupted rotation, then check that the
/// signer is the ledger's current key and the previous key (if kept) the one before it.
#[allow(clippy::type_complexity)]
fn load_keys(
    dir: &DataDir,
    identity: &Identity,
    opts: &Options,
) -> Result<(Arc<dyn NoteSigner>, Option<Arc<dyn NoteSigner>>, KeySet), LedgerError> {
    let genesis = NoteVerifier::parse(&identity.vkey)
        .map_err(|e| LedgerError::Invalid(format!("identity.json vkey: {e}")))?;
    let keys = dir.key_set(&genesis)?;
    let next = dir.next_key_path();
    if next.exists() {
        let pending = datadir::load_key(&next, &identity.origin)?.verifier();
        if *keys.current() == pending {
            // recorded and logged, not yet promoted
            dir.promote_next_key(&identity.origin)?;
        } else {
            // never recorded in keys.log: the rotation did not happen (a rotation record without
            // its keys.log entry announces a key that never signs; verify notes it)
            fs::remove_file(&next).map_err(|e| LedgerError::Io {
                context: format!("removing abandoned {}", next.display()),
                source: e,
            })?;
        }
    }
    let signer: Arc<dyn NoteSigner> = match &opts.signer {
        Some(s) => s.clone(),
        None => Arc::new(dir.load_signer(&identity.origin)?),
    };
    if signer.verifier() != *keys.current() {
        return Err(LedgerError::Invalid(format!(
            "the signing key {} is not the ledger's current key {} (identity.json and keys.log)",
            signer.verifier().vkey(),
            keys.current().vkey()
        )));
    }
    let previous = match (dir.load_previous_signer(&identity.origin)?, keys.previous()) {
        (Some(p), Some(want)) if p.verifier() == *want => Some(Arc::new(p) as Arc<dyn NoteSigner>),
        (Some(p), _) => {
            return Err(LedgerError::Invalid(format!(
                "{} holds {}, which is not the key before the current one",
                dir.previous_key_path().display(),
                p.verifier().vkey()
            )))
        }
        (None, _) => None,
    };
    Ok((signer, previous, keys))
}

/// What differs between two configurations, key by key (`key: old → new`).
fn config_diff(before: &serde_json::Value, after: &serde_json::Value) -> String {
    let empty = serde_json::Map::new();
    let (a, b) = (
        before.as_object().unwrap_or(&empty),
        after.as_object().unwrap_or(&empty),
    );
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    let show = |v: Option<&serde_json::Value>| v.map_or("(unset)".to_string(), |v| v.to_string());
    let parts: Vec<String> = keys
        .into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| format!("{k}: {} → {}", show(a.get(k)), show(b.get(k))))
        .collect();
    if parts.is_empty() {
        format!("{before} → {after}")
    } else {
        parts.join("; ")
    }
}

/// Reclaimed raw-column buffers waiting for the next WAL, and how many seals handed to the
/// sealer thread have not given theirs back yet.
#[derive(Default)]
struct SparePool {
    state: Mutex<SpareState>,
    back: Condvar,
}

#[derive(Default)]
struct SpareState {
    spares: Vec<RawBuffers>,
    sealing: usize,
}

impl SparePool {
    /// A seal job is on its way to the sealer thread.
    fn sent(&self) {
        if let Ok(mut st) = self.state.lock() {
            st.sealing += 1;
        }
    }

    /// The sealer finished a job (its buffer, if the segment let go of it).
    fn returned(&self, raw: Option<RawBuffers>) {
        if let Ok(mut st) = self.state.lock() {
            st.sealing = st.sealing.saturating_sub(1);
            if let Some(raw) = raw {
                Self::park(&mut st, raw);
            }
        }
        self.back.notify_all();
    }

    /// A foreground seal's buffer.
    fn keep(&self, raw: Option<RawBuffers>) {
        if let (Some(raw), Ok(mut st)) = (raw, self.state.lock()) {
            Self::park(&mut st, raw);
        }
    }

    fn park(st: &mut SpareState, raw: RawBuffers) {
        // at most two wait (one WAL filling and one sealing need no more)
        if st.spares.len() < 2 {
            st.spares.push(raw);
        }
    }

    /// A spare buffer, waiting while a seal under way may still give one back; `None` when
    /// none is coming (no seal under way, or the sealer thread has ended).
    fn take(&self, sealer_gone: impl Fn() -> bool) -> Option<RawBuffers> {
        let mut st = self.state.lock().ok()?;
        loop {
            if let Some(raw) = st.spares.pop() {
                return Some(raw);
            }
            if st.sealing == 0 || sealer_gone() {
                return None;
            }
            st = self
                .back
                .wait_timeout(st, std::time::Duration::from_millis(50))
                .ok()?
                .0;
        }
    }
}

/// Raw bytes a WAL's segment builder reserves: the seal threshold plus one large batch (a commit
/// may overshoot the threshold by its batch), at most 256 MiB. Pages are only touched as they
/// fill.
fn raw_capacity(opts: &Options) -> usize {
    usize::try_from(opts.seal_bytes)
        .unwrap_or(usize::MAX)
        .saturating_add(4 << 20)
        .min(256 << 20)
}

fn new_wal(
    dir: &DataDir,
    first: u64,
    now: Timestamp,
    opts: &Options,
    rows_hint: usize,
    raw: RawBuffers,
) -> Result<ActiveWal, LedgerError> {
    let path = dir.wal_file(first);
    let f = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .map_err(|e| LedgerError::Io {
            context: format!("creating {}", path.display()),
            source: e,
        })?;
    f.sync_all().map_err(|e| LedgerError::Io {
        context: format!("syncing {}", path.display()),
        source: e,
    })?;
    datadir::sync_parent(&path)?;
    let io: Box<dyn WalIo> = match &opts.wal_io {
        Some(w) => w(f),
        None => Box::new(f),
    };
    Ok(ActiveWal {
        first,
        path,
        io,
        bytes: 0,
        opened: now,
        builder: SegmentBuilder::with_capacity(rows_hint, raw),
    })
}

fn newest_received(batch: &arrow_array::RecordBatch) -> Option<Timestamp> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::TimestampNanosecondType;
    let col = batch
        .column(2)
        .as_primitive_opt::<TimestampNanosecondType>()?;
    col.values().iter().max().map(|v| Timestamp(*v))
}

/// The body of a seal note.
pub fn seal_text(origin: &str, first: u64, last: u64, root: &Hash, file_sha256: &str) -> String {
    format!(
        "{origin}\ntrailwarden-seal/1\n{first} {last}\n{}\n{}\n{file_sha256}\n",
        last + 1,
        b64(root)
    )
}

/// Parse a seal note body: `(first, last, root base64, file sha256)`.
pub fn parse_seal_text(text: &str, origin: &str) -> Result<(u64, u64, String, String), String> {
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() != 6 || lines[0] != origin || lines[1] != "trailwarden-seal/1" {
        return Err("not a seal note of this ledger".into());
    }
    let (a, b) = lines[2].split_once(' ').ok_or("bad range line")?;
    let first: u64 = a.parse().map_err(|_| "bad first")?;
    let last: u64 = b.parse().map_err(|_| "bad last")?;
    if lines[3] != (last + 1).to_string() {
        return Err("seal size does not match its range".into());
    }
    Ok((first, last, lines[4].to_string(), lines[5].to_string()))
}

/// Seal one WAL: Parquet segment and seal note (temp files, fsync, rename), manifest line,
/// delete the WAL. Every step is idempotent on restart. Returns the segment's raw-column
/// buffers for reuse.
fn seal(
    dir: &DataDir,
    origin: &str,
    level: i32,
    now: Timestamp,
    job: SealJob,
) -> Result<Option<RawBuffers>, LedgerError> {
    let seg = dir.segment_file(job.first, job.last);
    let tmp = seg.with_extension("parquet.tmp");
    let meta = SegmentMeta {
        origin: origin.to_string(),
        first: job.first,
        last: job.last,
        seal_root: b64(&job.root),
    };
    let newest = newest_received(&job.batch);
    let mut job = SealJob {
        newest_received: newest,
        ..job
    };
    let guard = job.guard.clone();
    let may_write = || guarded(guard.as_ref());
    may_write()?;
    let (_, sha) = segment::write_hashed(&tmp, &meta, std::slice::from_ref(&job.batch), level)?;
    let empty = arrow_array::RecordBatch::new_empty(segment::schema());
    let spare = RawBuffers::reclaim(std::mem::replace(&mut job.batch, empty));
    let text = seal_text(origin, job.first, job.last, &job.root, &sha);
    let signers: Vec<&dyn NoteSigner> = job.signers.iter().map(|s| s.as_ref()).collect();
    let note = sign_note(&text, &signers).map_err(|e| LedgerError::Invalid(e.to_string()))?;
    may_write()?;
    datadir::write_atomic_checked(
        &dir.seal_file(job.first, job.last),
        note.as_bytes(),
        may_write,
    )?;
    may_write()?;
    fs::rename(&tmp, &seg).map_err(|e| LedgerError::Io {
        context: format!("renaming {} into place", seg.display()),
        source: e,
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = fs::set_permissions(&seg, fs::Permissions::from_mode(0o444));
    }
    datadir::sync_parent(&seg)?;
    let newest_received = job.newest_received;
    let entry = ManifestEntry {
        newest_received,
        compact_range: Vec::new(),
        tombstone: None,
        archived: None,
        stream: job.stream,
        first: job.first,
        last: job.last,
        state: "sealed".into(),
        file: seg
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default(),
        sha256: sha,
        seal_size: job.last + 1,
        seal_root: b64(&job.root),
        frontier: job.frontier.iter().map(b64).collect(),
        chain: hex::encode(job.chain),
        at: now,
    };
    may_write()?;
    datadir::append_manifest(&dir.manifest_path(), &entry)?;
    may_write()?;
    fs::remove_file(&job.wal_path).map_err(|e| LedgerError::Io {
        context: format!("removing sealed {}", job.wal_path.display()),
        source: e,
    })?;
    datadir::sync_parent(&job.wal_path)?;
    Ok(spare)
}

pub(crate) use self::internal::*;

mod internal {
    use super::*;

    /// State rebuilt by recovery for the writer.
    pub(crate) struct Recovered {
        pub frontier: Frontier,
        pub chain: Hash,
        pub tiles: TileWriter,
        pub wal_first: u64,
        pub wal_path: PathBuf,
        pub wal_bytes: u64,
        pub wal_opened: Option<Timestamp>,
        pub builder: SegmentBuilder,
        pub batch_seq: u64,
        pub last_checkpoint: Option<SignedCheckpoint>,
        pub clean_shutdown: bool,
        pub reseal: Vec<SealJob>,
        pub stream_pos: Option<StreamPos>,
    }

    pub(crate) fn seal_job(
        first: u64,
        last: u64,
        batch: arrow_array::RecordBatch,
        frontier: &Frontier,
        chain: Hash,
        wal_path: PathBuf,
        stream: Option<StreamPos>,
    ) -> SealJob {
        SealJob {
            stream,
            signers: Vec::new(),
            newest_received: None,
            first,
            last,
            batch,
            root: frontier.root(),
            frontier: frontier.nodes().to_vec(),
            chain,
            wal_path,
            guard: None,
        }
    }

    /// Re-extract one WAL frame into a segment builder.
    pub(crate) fn rebuild_row(
        b: &mut SegmentBuilder,
        frame: &wal::Frame<'_>,
        extractor: Option<&Arc<Extractor>>,
    ) -> Result<(u64, RecordKind, Timestamp), LedgerError> {
        let d = record::decode(frame.record).map_err(LedgerError::Invalid)?;
        let meta: FrameMeta = serde_json::from_slice(frame.meta).unwrap_or_default();
        let ev = match (d.kind, meta.f, extractor) {
            (RecordKind::Event, Some(f), Some(x)) => x(f, d.payload, d.received),
            _ => None,
        };
        let x = match (&ev, &meta.q) {
            (Some(e), _) => Extracted::Event(e),
            (None, Some(q)) => Extracted::Quarantine(q),
            _ => Extracted::Internal,
        };
        b.push(
            d.index,
            d.kind,
            d.received,
            d.source,
            d.payload,
            &frame.leaf,
            x,
        );
        Ok((d.index, d.kind, d.received))
    }

    /// Whether a record's payload is a stop lifecycle record.
    pub(crate) fn is_stop(kind: RecordKind, payload: &[u8]) -> bool {
        kind == RecordKind::Lifecycle
            && serde_json::from_slice::<Lifecycle>(payload)
                .is_ok_and(|l| matches!(l, Lifecycle::Stop { .. }))
    }

    pub(crate) fn scan_end_error(path: &std::path::Path, end: &ScanEnd) -> LedgerError {
        match end {
            ScanEnd::Corrupt { offset, index, reason } => LedgerError::Corrupt(format!(
                "{} at byte {offset} (record {index}): {reason}. The writer will not start: restore the ledger from backup, \
                 or run `trailwarden verify` to see what is affected; nothing was changed",
                path.display()
            )),
            _ => LedgerError::Invalid(format!("{}: unexpected scan state", path.display())),
        }
    }
}

/// Record 0 of a ledger: the genesis of its identity (`identity.json`'s exact bytes hashed).
fn genesis(identity: &Identity, id_bytes: &[u8]) -> Lifecycle {
    Lifecycle::Genesis {
        identity_sha256: trailwarden_model::sha256_hex(id_bytes),
        origin: identity.origin.clone(),
        vkey: identity.vkey.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
    }
}
