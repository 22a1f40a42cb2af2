//! The data directory: layout, identity, keys, the writer lock, the append-only checkpoint log
//! and the segment manifest.
//!
//! ```text
//! DATA/
//!   LOCK                          held (flock) by the one writer
//!   identity.json                 written at genesis, never modified
//!   keys/checkpoint.key           Ed25519 seed, mode 0600 (directory 0700)
//!   keys/checkpoint.vkey          the public verifier key (give this to assessors)
//!   wal/<first:020>.wal           write-ahead segments (the newest is active)
//!   seg/<first:020>-<last:020>.parquet   sealed, immutable (mode 0444)
//!   seg/<first:020>-<last:020>.seal      signed seal note binding range, root, file hash
//!   tree/tiles                    level-8 subtree roots (derived cache, rebuildable)
//!   checkpoint                    latest signed checkpoint (atomically replaced)
//!   checkpoints.log               every checkpoint ever signed, length-prefixed, append-only
//!   manifest.log                  one JSON line per segment state change, append-only
//!   access.spool                  reads recorded while another process held the lock
//! ```

use crate::merkle::Hash;
use crate::note::{Ed25519Signer, NoteSigner, NoteVerifier};
use crate::LedgerError;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use trailwarden_model::Timestamp;

/// Standard padded base64 (checkpoints, proofs, manifest hashes).
pub const B64_STD: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const B64: base64::engine::GeneralPurpose = B64_STD;

/// Identity format marker.
pub const IDENTITY_FORMAT: &str = "trailwarden-ledger/1";

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> LedgerError {
    let context = context.into();
    move |source| LedgerError::Io { context, source }
}

/// A file's bytes, or `None` when it does not exist (logs not yet written, a WAL sealed and
/// removed since it was listed). Any other error names the file.
pub fn read_if_exists(p: &Path) -> Result<Option<Vec<u8>>, LedgerError> {
    match fs::read(p) {
        Ok(d) => Ok(Some(d)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(format!("reading {}", p.display()))(e)),
    }
}

/// [`read_if_exists`] for text files.
pub fn read_text_if_exists(p: &Path) -> Result<Option<String>, LedgerError> {
    match fs::read_to_string(p) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(format!("reading {}", p.display()))(e)),
    }
}

/// identity.json: who this ledger is. Its SHA-256 is the payload of record 0.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Format marker.
    pub format: String,
    /// The log origin (checkpoint origin and key name).
    pub origin: String,
    /// Hash algorithm.
    pub hash: String,
    /// The checkpoint verifier key.
    pub vkey: String,
    /// When the ledger was created.
    pub created: Timestamp,
}

/// Paths of a data directory.
#[derive(Clone, Debug)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// A data directory at `root` (nothing is touched).
    pub fn new(root: impl Into<PathBuf>) -> DataDir {
        DataDir { root: root.into() }
    }

    /// The root path.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `LOCK`.
    pub fn lock_path(&self) -> PathBuf {
        self.root.join("LOCK")
    }
    /// `identity.json`.
    pub fn identity_path(&self) -> PathBuf {
        self.root.join("identity.json")
    }
    /// `keys/`.
    pub fn keys_dir(&self) -> PathBuf {
        self.root.join("keys")
    }
    /// The signing key file.
    pub fn key_path(&self) -> PathBuf {
        self.keys_dir().join("checkpoint.key")
    }
    /// The verifier key file.
    pub fn vkey_path(&self) -> PathBuf {
        self.keys_dir().join("checkpoint.vkey")
    }
    /// The key a rotation in progress will switch to.
    pub fn next_key_path(&self) -> PathBuf {
        self.keys_dir().join("next.key")
    }
    /// The key replaced by the last rotation, co-signing until it is retired.
    pub fn previous_key_path(&self) -> PathBuf {
        self.keys_dir().join("previous.key")
    }
    /// `keys.log`: the key rotations (see [`crate::keys`]).
    pub fn key_log_path(&self) -> PathBuf {
        self.root.join("keys.log")
    }
    /// `wal/`.
    pub fn wal_dir(&self) -> PathBuf {
        self.root.join("wal")
    }
    /// `seg/`.
    pub fn seg_dir(&self) -> PathBuf {
        self.root.join("seg")
    }
    /// `tree/`.
    pub fn tree_dir(&self) -> PathBuf {
        self.root.join("tree")
    }
    /// `checkpoint`.
    pub fn checkpoint_path(&self) -> PathBuf {
        self.root.join("checkpoint")
    }
    /// `checkpoints.log`.
    pub fn checkpoints_log(&self) -> PathBuf {
        self.root.join("checkpoints.log")
    }
    /// `manifest.log`.
    pub fn manifest_path(&self) -> PathBuf {
        self.root.join("manifest.log")
    }
    /// `access.spool`.
    pub fn access_spool(&self) -> PathBuf {
        self.root.join("access.spool")
    }
    /// The WAL file starting at `first`.
    pub fn wal_file(&self, first: u64) -> PathBuf {
        self.wal_dir().join(format!("{first:020}.wal"))
    }
    /// The segment file of `[first, last]`.
    pub fn segment_file(&self, first: u64, last: u64) -> PathBuf {
        self.seg_dir()
            .join(format!("{first:020}-{last:020}.parquet"))
    }
    /// The seal note of `[first, last]`.
    pub fn seal_file(&self, first: u64, last: u64) -> PathBuf {
        self.seg_dir().join(format!("{first:020}-{last:020}.seal"))
    }

    /// Whether the directory holds a ledger.
    pub fn exists(&self) -> bool {
        self.identity_path().exists()
    }

    /// Read identity.json and its exact bytes.
    pub fn read_identity(&self) -> Result<(Identity, Vec<u8>), LedgerError> {
        let p = self.identity_path();
        let bytes = fs::read(&p).map_err(io_err(format!("reading {}", p.display())))?;
        let id: Identity = serde_json::from_slice(&bytes).map_err(|e| {
            LedgerError::Invalid(format!("{} is not a valid identity: {e}", p.display()))
        })?;
        if id.format != IDENTITY_FORMAT {
            return Err(LedgerError::Invalid(format!(
                "{} has format {:?}, expected {IDENTITY_FORMAT}",
                p.display(),
                id.format
            )));
        }
        Ok((id, bytes))
    }

    /// The ledger's verifier from identity.json.
    pub fn verifier(&self) -> Result<NoteVerifier, LedgerError> {
        let (id, _) = self.read_identity()?;
        NoteVerifier::parse(&id.vkey)
            .map_err(|e| LedgerError::Invalid(format!("identity.json vkey: {e}")))
    }

    /// Load the signing key, refusing a key file that others can read.
    pub fn load_signer(&self, origin: &str) -> Result<Ed25519Signer, LedgerError> {
        load_key(&self.key_path(), origin)
    }

    /// The genesis key followed by the rotations in `keys.log`.
    pub fn key_set(&self, genesis: &NoteVerifier) -> Result<crate::keys::KeySet, LedgerError> {
        let log = crate::keys::read_key_log(&self.key_log_path())?;
        crate::keys::KeySet::chain(genesis.clone(), &log)
    }

    /// Generate the key a rotation will switch to, in `keys/next.key` (mode 0600).
    pub fn create_next_key(&self, origin: &str) -> Result<Ed25519Signer, LedgerError> {
        let p = self.next_key_path();
        if p.exists() {
            return Err(LedgerError::Invalid(format!(
                "{} exists: a rotation is in progress (open the ledger once to finish or abandon it)",
                p.display()
            )));
        }
        let (signer, seed) =
            Ed25519Signer::generate(origin).map_err(|e| LedgerError::Invalid(e.to_string()))?;
        write_new_private(&p, format!("{}\n", hex::encode(seed)).as_bytes())?;
        Ok(signer)
    }

    /// After a rotation is recorded: the current key becomes `previous.key` (replacing an older
    /// one), `next.key` becomes the current key, and `checkpoint.vkey` names it.
    pub fn promote_next_key(&self, origin: &str) -> Result<(), LedgerError> {
        let next = load_key(&self.next_key_path(), origin)?;
        let rename = |a: &Path, b: &Path| {
            fs::rename(a, b).map_err(io_err(format!(
                "renaming {} to {}",
                a.display(),
                b.display()
            )))
        };
        rename(&self.key_path(), &self.previous_key_path())?;
        rename(&self.next_key_path(), &self.key_path())?;
        sync_parent(&self.key_path())?;
        write_atomic(
            &self.vkey_path(),
            format!("{}\n", next.verifier().vkey()).as_bytes(),
        )
    }

    /// Load the previous key, if a rotation left one.
    pub fn load_previous_signer(&self, origin: &str) -> Result<Option<Ed25519Signer>, LedgerError> {
        let p = self.previous_key_path();
        if !p.exists() {
            return Ok(None);
        }
        load_key(&p, origin).map(Some)
    }

    /// Delete the previous key (it no longer co-signs).
    pub fn remove_previous_key(&self) -> Result<(), LedgerError> {
        let p = self.previous_key_path();
        match fs::remove_file(&p) {
            Ok(()) => sync_parent(&p),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(format!("removing {}", p.display()))(e)),
        }
    }

    /// Create the directory layout, key and identity (genesis). Fails if a ledger exists.
    pub fn create(
        &self,
        origin: &str,
        now: Timestamp,
    ) -> Result<(Identity, Vec<u8>, Ed25519Signer), LedgerError> {
        if self.exists() {
            return Err(LedgerError::Invalid(format!(
                "{} already holds a ledger",
                self.root.display()
            )));
        }
        for d in [
            self.root.clone(),
            self.wal_dir(),
            self.seg_dir(),
            self.tree_dir(),
        ] {
            fs::create_dir_all(&d).map_err(io_err(format!("creating {}", d.display())))?;
        }
        set_mode(&self.root, 0o700)?;
        let keys = self.keys_dir();
        fs::create_dir_all(&keys).map_err(io_err(format!("creating {}", keys.display())))?;
        set_mode(&keys, 0o700)?;
        // A genesis killed before identity.json was written leaves a key nothing was ever
        // signed with (checkpoints come after the identity): it is replaced, not an error
        // (the t13 kill -9 flake: "creating keys/checkpoint.key: File exists").
        let stale = self.key_path();
        let holds_data = [self.wal_dir(), self.seg_dir()]
            .iter()
            .any(|d| fs::read_dir(d).is_ok_and(|mut entries| entries.next().is_some()));
        if stale.exists() && holds_data {
            return Err(LedgerError::Invalid(format!(
                "{} has a key and ledger data but no identity.json: restore identity.json from a backup (the trail cannot be verified without it)",
                self.root.display()
            )));
        }
        match fs::remove_file(&stale) {
            Ok(()) => sync_parent(&stale)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(format!("removing {}", stale.display()))(e)),
        }
        let (signer, seed) =
            Ed25519Signer::generate(origin).map_err(|e| LedgerError::Invalid(e.to_string()))?;
        write_new_private(
            &self.key_path(),
            format!("{}\n", hex::encode(seed)).as_bytes(),
        )?;
        let vkey = signer.verifier().vkey();
        write_atomic(&self.vkey_path(), format!("{vkey}\n").as_bytes())?;
        let id = Identity {
            format: IDENTITY_FORMAT.into(),
            origin: origin.into(),
            hash: "SHA-256".into(),
            vkey,
            created: now,
        };
        let bytes =
            serde_json::to_vec_pretty(&id).map_err(|e| LedgerError::Invalid(e.to_string()))?;
        write_atomic(&self.identity_path(), &bytes)?;
        Ok((id, bytes, signer))
    }
}

#[cfg(unix)]
fn set_mode(p: &Path, mode: u32) -> Result<(), LedgerError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .map_err(io_err(format!("chmod {}", p.display())))
}

#[cfg(not(unix))]
fn set_mode(_: &Path, _: u32) -> Result<(), LedgerError> {
    Ok(())
}

/// Refuse a secret file readable or writable by group or others.
#[cfg(unix)]
pub fn check_private(p: &Path) -> Result<(), LedgerError> {
    use std::os::unix::fs::PermissionsExt;
    let m = fs::metadata(p).map_err(io_err(format!("reading {}", p.display())))?;
    let mode = m.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(LedgerError::Invalid(format!(
            "{} has mode {mode:o}: a signing key must not be accessible to group or others; run `chmod 600 {}`",
            p.display(),
            p.display()
        )));
    }
    Ok(())
}

/// Refuse a secret file readable or writable by group or others.
#[cfg(not(unix))]
pub fn check_private(_: &Path) -> Result<(), LedgerError> {
    Ok(())
}

fn write_new_private(p: &Path, data: &[u8]) -> Result<(), LedgerError> {
    let mut o = OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o
        .open(p)
        .map_err(io_err(format!("creating {}", p.display())))?;
    f.write_all(data)
        .map_err(io_err(format!("writing {}", p.display())))?;
    f.sync_all()
        .map_err(io_err(format!("syncing {}", p.display())))?;
    sync_parent(p)
}

/// fsync the directory containing `p` (so a create / rename / delete is durable).
pub fn sync_parent(p: &Path) -> Result<(), LedgerError> {
    let dir = p.parent().unwrap_or(Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(format!("syncing directory {}", dir.display())))
}

/// Write a file atomically: temp file, fsync, rename, fsync the directory.
pub fn write_atomic(p: &Path, data: &[u8]) -> Result<(), LedgerError> {
    write_atomic_checked(p, data, || Ok(()))
}

/// [`write_atomic`], asking `before_rename` once the temp file is durable: its error leaves the
/// file in place untouched (the temp file stays; the next write replaces it).
pub fn write_atomic_checked(
    p: &Path,
    data: &[u8],
    before_rename: impl FnOnce() -> Result<(), LedgerError>,
) -> Result<(), LedgerError> {
    let tmp = p.with_extension("tmp");
    {
        let mut f = File::create(&tmp).map_err(io_err(format!("creating {}", tmp.display())))?;
        f.write_all(data)
            .map_err(io_err(format!("writing {}", tmp.display())))?;
        f.sync_all()
            .map_err(io_err(format!("syncing {}", tmp.display())))?;
    }
    before_rename()?;
    fs::rename(&tmp, p).map_err(io_err(format!("renaming {} into place", p.display())))?;
    sync_parent(p)
}

/// Append to a file and fdatasync it.
pub fn append_durable(p: &Path, data: &[u8]) -> Result<(), LedgerError> {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)
        .map_err(io_err(format!("opening {}", p.display())))?;
    f.write_all(data)
        .map_err(io_err(format!("appending to {}", p.display())))?;
    f.sync_data()
        .map_err(io_err(format!("syncing {}", p.display())))
}

/// One entry of checkpoints.log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedNote {
    /// Byte offset of the entry.
    pub offset: u64,
    /// The note text.
    pub note: String,
}

/// What reading checkpoints.log found.
#[derive(Debug, Default)]
pub struct CheckpointLog {
    /// Complete entries, in order.
    pub entries: Vec<LoggedNote>,
    /// Bytes after the last complete entry (a torn final append), if any.
    pub torn_tail: Option<(u64, u64)>,
    /// A malformed entry before the end (not a torn append).
    pub damage: Option<(u64, String)>,
}

/// Format one checkpoints.log entry: `<length>\n<note>`.
pub fn log_entry(note: &str) -> Vec<u8> {
    let mut v = format!("{}\n", note.len()).into_bytes();
    v.extend_from_slice(note.as_bytes());
    v
}

/// Read checkpoints.log (missing = empty).
pub fn read_checkpoint_log(p: &Path) -> Result<CheckpointLog, LedgerError> {
    Ok(read_if_exists(p)?
        .map(|d| parse_checkpoint_log(&d))
        .unwrap_or_default())
}

/// Parse the bytes of checkpoints.log.
pub fn parse_checkpoint_log(data: &[u8]) -> CheckpointLog {
    let mut out = CheckpointLog::default();
    let mut off = 0usize;
    while off < data.len() {
        let nl = data[off..].iter().take(12).position(|&c| c == b'\n');
        let parsed = nl.and_then(|n| {
            let s = std::str::from_utf8(&data[off..off + n]).ok()?;
            if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            Some((n, s.parse::<usize>().ok()?))
        });
        let Some((n, len)) = parsed else {
            out.damage = Some((
                off as u64,
                "entry does not start with a decimal length".into(),
            ));
            break;
        };
        let start = off + n + 1;
        if start + len > data.len() {
            out.torn_tail = Some((off as u64, (data.len() - off) as u64));
            break;
        }
        match std::str::from_utf8(&data[start..start + len]) {
            Ok(s) => out.entries.push(LoggedNote {
                offset: off as u64,
                note: s.to_string(),
            }),
            Err(_) => {
                out.damage = Some((off as u64, "entry is not UTF-8".into()));
                break;
            }
        }
        off = start + len;
    }
    out
}

/// One manifest line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// First index.
    pub first: u64,
    /// Last index (inclusive).
    pub last: u64,
    /// `sealed` (the file is in seg/), `evicted` (archived and verified, the local copy removed
    /// after the hot period; an eviction record is in the tree) or `pruned` (deleted after the
    /// retention period; a tombstone is in the tree).
    pub state: String,
    /// Segment file name (relative to seg/).
    pub file: String,
    /// SHA-256 of the segment file (hex).
    pub sha256: String,
    /// Tree size of the seal checkpoint (`last + 1`).
    pub seal_size: u64,
    /// Root at the seal (base64).
    pub seal_root: String,
    /// Compact range of `[0, last+1)`, base64 hashes largest first (writer state after the seal).
    pub frontier: Vec<String>,
    /// Hash-chain value after `last` (hex).
    pub chain: String,
    /// When the state changed.
    pub at: Timestamp,
    /// Newest receive time in the segment (retention decisions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest_received: Option<Timestamp>,
    /// For a pruned segment: `(start, level, base64 root)` of the perfect subtrees covering it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compact_range: Vec<(u64, u32, String)>,
    /// For a pruned segment: the ledger index of its tombstone record; for an evicted one, of
    /// its eviction record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tombstone: Option<u64>,
    /// When the archive (object storage) was found to hold this segment, its seal note and its
    /// manifest entry, re-read and equal to the SHA-256 here. `None`: not archived (or, on a
    /// pruned entry, purged from the archive too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archived: Option<Timestamp>,
    /// The newest position in a message stream (JetStream) the ledger had applied when this
    /// segment was sealed (a cluster writer resumes after it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<StreamPos>,
}

/// A record's place in the message stream it was consumed from: the stream sequence of its
/// message and its index among the message's records. Kept in the WAL frame's metadata (derived
/// data, not hashed) and in the manifest at each seal, so that a cluster writer resumes from the
/// ledger's own last record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StreamPos {
    /// Stream sequence of the message.
    pub seq: u64,
    /// Index of the record in the message.
    pub k: u32,
}

impl ManifestEntry {
    /// The frontier hashes.
    pub fn frontier_hashes(&self) -> Result<Vec<Hash>, LedgerError> {
        self.frontier
            .iter()
            .map(|s| {
                B64.decode(s)
                    .ok()
                    .and_then(|v| <Hash>::try_from(v).ok())
                    .ok_or_else(|| {
                        LedgerError::Invalid(format!(
                            "manifest frontier of segment {}-{} is malformed",
                            self.first, self.last
                        ))
                    })
            })
            .collect()
    }

    /// The chain value.
    pub fn chain_hash(&self) -> Result<Hash, LedgerError> {
        hex::decode(&self.chain)
            .ok()
            .and_then(|v| <Hash>::try_from(v).ok())
            .ok_or_else(|| {
                LedgerError::Invalid(format!(
                    "manifest chain of segment {}-{} is malformed",
                    self.first, self.last
                ))
            })
    }
}

/// Read manifest.log: the latest state per segment, in index order.
pub fn read_manifest(p: &Path) -> Result<Vec<ManifestEntry>, LedgerError> {
    let Some(text) = read_text_if_exists(p)? else {
        return Ok(Vec::new());
    };
    let mut by_first: std::collections::BTreeMap<u64, ManifestEntry> = Default::default();
    let lines: Vec<&str> = text.lines().collect();
    for (n, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<ManifestEntry>(line) {
            Ok(e) => {
                by_first.insert(e.first, e);
            }
            // a torn final line (crash while appending) is ignored; anything else is damage
            Err(_) if n + 1 == lines.len() && !text.ends_with('\n') => {}
            Err(e) => {
                return Err(LedgerError::Invalid(format!(
                    "{} line {}: {e}",
                    p.display(),
                    n + 1
                )));
            }
        }
    }
    Ok(by_first.into_values().collect())
}

/// Append a manifest line durably. A torn final line (a crash while appending, which
/// [`read_manifest`] ignores) is cut off first: appending after it would glue the new entry to
/// the torn bytes and turn an ignorable tail into damage in the middle (the t13 kill -9 flake:
/// "manifest.log line 68: expected `,` or `]`").
pub fn append_manifest(p: &Path, e: &ManifestEntry) -> Result<(), LedgerError> {
    // the sealer thread and the archiver append from the same process: one at a time, so the
    // torn-tail cut never sees the other's line half written
    static APPEND: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = APPEND.lock().unwrap_or_else(|p| p.into_inner());
    cut_torn_tail(p)?;
    let mut line = serde_json::to_vec(e).map_err(|e| LedgerError::Invalid(e.to_string()))?;
    line.push(b'\n');
    append_durable(p, &line)
}

/// Truncate a line-oriented file after its last newline.
fn cut_torn_tail(p: &Path) -> Result<(), LedgerError> {
    let Some(text) = read_text_if_exists(p)? else {
        return Ok(());
    };
    if text.is_empty() || text.ends_with('\n') {
        return Ok(());
    }
    let keep = text.rfind('\n').map_or(0, |i| i + 1);
    let f = OpenOptions::new()
        .write(true)
        .open(p)
        .map_err(io_err(format!("opening {}", p.display())))?;
    f.set_len(keep as u64).map_err(io_err(format!(
        "truncating the torn tail of {}",
        p.display()
    )))?;
    f.sync_data()
        .map_err(io_err(format!("syncing {}", p.display())))
}

/// Base64 of a hash.
pub fn b64(h: &Hash) -> String {
    B64.encode(h)
}

/// Load an Ed25519 seed file (hex), refusing one that others can read.
pub fn load_key(p: &Path, origin: &str) -> Result<Ed25519Signer, LedgerError> {
    check_private(p)?;
    let text = fs::read_to_string(p).map_err(io_err(format!("reading {}", p.display())))?;
    let raw = hex::decode(text.trim())
        .map_err(|_| LedgerError::Invalid(format!("{} is not a hex Ed25519 seed", p.display())))?;
    let seed: [u8; 32] = raw.try_into().map_err(|_| {
        LedgerError::Invalid(format!("{} does not hold a 32-byte seed", p.display()))
    })?;
    Ed25519Signer::new(origin, &seed).map_err(|e| LedgerError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        crate::test_path(&format!("dd-{name}"))
    }

    /// Regression (t13 flake): an append after a torn manifest line must not glue onto it.
    #[test]
    fn a_manifest_append_after_a_torn_line_starts_on_a_line_of_its_own() {
        let root = tmp("torn-manifest");
        fs::create_dir_all(&root).unwrap();
        let p = root.join("manifest.log");
        let entry = |first: u64| ManifestEntry {
            first,
            last: first + 9,
            state: "sealed".into(),
            file: format!("{first:020}.parquet"),
            sha256: "00".repeat(32),
            seal_size: first + 10,
            seal_root: String::new(),
            frontier: Vec::new(),
            chain: String::new(),
            at: Timestamp(1),
            newest_received: None,
            compact_range: Vec::new(),
            tombstone: None,
            archived: None,
            stream: None,
        };
        append_manifest(&p, &entry(0)).unwrap();
        // a crash half-way through the next append
        let torn = serde_json::to_string(&entry(10)).unwrap();
        append_durable(&p, &torn.as_bytes()[..torn.len() / 2]).unwrap();
        assert_eq!(
            read_manifest(&p).unwrap().len(),
            1,
            "a torn tail is ignored"
        );
        // after restart the sealer appends again: both entries read back, nothing is damage
        append_manifest(&p, &entry(10)).unwrap();
        append_manifest(&p, &entry(20)).unwrap();
        let got: Vec<u64> = read_manifest(&p).unwrap().iter().map(|e| e.first).collect();
        assert_eq!(got, vec![0, 10, 20]);
        let _ = fs::remove_dir_all(&root);
    }

    /// Regression (t13 flake): a genesis killed after the key and before identity.json.
    #[test]
    fn an_interrupted_genesis_is_redone_but_a_ledger_without_identity_is_not() {
        let root = tmp("genesis");
        let d = DataDir::new(&root);
        fs::create_dir_all(d.keys_dir()).unwrap();
        fs::write(d.key_path(), "00\n").unwrap();
        let (id, _, signer) = d.create("example.com/log", Timestamp(1)).unwrap();
        assert_eq!(id.vkey, signer.verifier().vkey());
        // identity.json lost while the ledger holds data: refused, naming the fix
        fs::remove_file(d.identity_path()).unwrap();
        fs::write(d.wal_dir().join("00000000.wal"), b"x").unwrap();
        let Err(e) = d.create("example.com/log", Timestamp(2)) else {
            panic!("a ledger without identity.json was created anew");
        };
        assert!(e.to_string().contains("restore identity.json"), "{e}");
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn create_and_reload() {
        let d = DataDir::new(tmp("create"));
        let (id, bytes, signer) = d.create("example.com/log", Timestamp(1)).unwrap();
        let (id2, bytes2) = d.read_identity().unwrap();
        assert_eq!((id.clone(), bytes.clone()), (id2, bytes2));
        let s2 = d.load_signer(&id.origin).unwrap();
        assert_eq!(s2.verifier(), signer.verifier());
        assert!(d.create("x", Timestamp(1)).is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(d.key_path()).unwrap().permissions().mode() & 0o777,
                0o600
            );
            fs::set_permissions(d.key_path(), fs::Permissions::from_mode(0o644)).unwrap();
            let e = d.load_signer(&id.origin).err().unwrap().to_string();
            assert!(e.contains("chmod 600"), "{e}");
        }
        fs::remove_dir_all(d.root()).ok();
    }

    #[test]
    fn checkpoint_log_torn_and_damaged() {
        let p = tmp("cplog");
        fs::create_dir_all(&p).unwrap();
        let f = p.join("checkpoints.log");
        append_durable(&f, &log_entry("a\n1\n\n")).unwrap();
        append_durable(&f, &log_entry("b\n2\n\n")).unwrap();
        let l = read_checkpoint_log(&f).unwrap();
        assert_eq!(l.entries.len(), 2);
        assert!(l.torn_tail.is_none() && l.damage.is_none());
        append_durable(&f, b"99\nabc").unwrap();
        let l = read_checkpoint_log(&f).unwrap();
        assert_eq!(l.entries.len(), 2);
        assert!(l.torn_tail.is_some());
        fs::write(&f, b"x\nabc").unwrap();
        assert!(read_checkpoint_log(&f).unwrap().damage.is_some());
        fs::remove_dir_all(&p).ok();
    }
}
