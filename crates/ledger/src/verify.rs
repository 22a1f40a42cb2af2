//! `verify`: re-derive everything from the stored bytes and check it against what was signed
//! (ledger design §9.12). Exit status: 0 verified, 1 integrity failure, 2 passed with warnings,
//! 3 could not run.
//!
//! Checks, in order; every failure is listed and the one at the smallest position is reported as
//! `first_failure`:
//! 1. identity: record 0 is the genesis record of this identity.json, signed by the trusted key;
//! 2. checkpoints (checkpoints.log, the `checkpoint` file, the anchor store, `--trusted-checkpoint`):
//!    strict parsing, signatures, monotonic sizes, forks (two roots for one size);
//! 3. segments: contiguous, seal notes signed, file hashes, binding metadata (origin, range);
//! 4. records in index order: index, kind, leaf hash against the stored prefix, WAL chain, every
//!    signed root at its size, every seal root; tombstones of pruned ranges;
//! 5. truncation and rollback against the largest signed size and trusted checkpoints;
//! 6. lifecycle: unclean shutdowns, heartbeat gaps while running, staleness.

use crate::datadir::{self, b64, ManifestEntry};
use crate::merkle::{chain_next, chain_seed, record_leaf_hash, Frontier, Hash};
use crate::note::{NoteError, NoteVerifier};
use crate::reader::LedgerReader;
use crate::record::{self, Lifecycle, Retention};
use crate::segment;
use crate::wal;
use crate::writer::parse_seal_text;
use crate::LedgerError;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use trailwarden_model::time::NANOS_PER_SEC;
use trailwarden_model::{RecordKind, Timestamp};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Overall result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Everything verified.
    Ok,
    /// Verified, with warnings.
    Warnings,
    /// An integrity failure.
    Failed,
}

impl Status {
    /// The process exit code.
    pub fn exit_code(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Failed => 1,
            Status::Warnings => 2,
        }
    }
}

/// One finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// `E_…` (failure) or `W_…` (warning).
    pub code: String,
    /// The record it is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    /// The index range it is about, `[from, to)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<[u64; 2]>,
    /// The file it is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// What is wrong.
    pub detail: String,
}

impl Finding {
    fn position(&self) -> u64 {
        self.index.or(self.range.map(|r| r[0])).unwrap_or(u64::MAX)
    }
}

/// What was checked.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checked {
    /// Records hashed.
    pub records: u64,
    /// Raw bytes hashed.
    pub bytes: u64,
    /// Sealed segments.
    pub segments: u64,
    /// WAL files.
    pub wal_files: u64,
    /// Signed checkpoints checked (all sources).
    pub checkpoints: u64,
    /// Roots compared at checkpoint sizes.
    pub roots_compared: u64,
    /// Trusted checkpoints given on the command line.
    pub trusted_checkpoints: u64,
    /// Pruned ranges accounted for by tombstones.
    pub pruned_ranges: u64,
    /// Ranges whose local copy was evicted after the hot period (accounted for by eviction
    /// records; their records are checked by `verify --archive`).
    #[serde(default)]
    pub evicted_ranges: u64,
}

/// The verify report (`--output json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// ok / warnings / failed.
    pub status: Status,
    /// Ledger origin.
    pub origin: String,
    /// Records in the tree (present plus pruned).
    pub size: u64,
    /// The latest signed checkpoint (note text).
    pub checkpoint: Option<String>,
    /// Largest signed size seen anywhere.
    pub signed_size: u64,
    /// What was checked.
    pub checked: Checked,
    /// The failure at the smallest position.
    pub first_failure: Option<Finding>,
    /// Every failure, in discovery order.
    pub failures: Vec<Finding>,
    /// Warnings.
    pub warnings: Vec<Finding>,
    /// Pruned ranges, `[from, to)`.
    pub pruned: Vec<[u64; 2]>,
    /// Seconds taken.
    pub elapsed_seconds: f64,
}

/// Verify options.
pub struct VerifyOptions<'a> {
    /// Checkpoints kept elsewhere (note texts): what catches a cut-off tail.
    pub trusted_checkpoints: Vec<String>,
    /// Verify with this key instead of identity.json's.
    pub trusted_key: Option<NoteVerifier>,
    /// Anchor (WORM) directory holding published checkpoints.
    pub anchor_dir: Option<PathBuf>,
    /// Another copy of the ledger (backup) to pin a root mismatch to its record.
    pub against: Option<PathBuf>,
    /// Segments may be pruned only this long after their newest record (default 400 days).
    pub min_retention_ns: i64,
    /// A running writer writes a heartbeat at least this often (default 60 s); gaps over twice
    /// this are reported.
    pub heartbeat_interval_ns: i64,
    /// Fail when the newest record of a running writer is older than this.
    pub max_staleness_ns: Option<i64>,
    /// Now.
    pub now: Timestamp,
    /// Progress callback: (records checked, records in total).
    pub progress: Option<&'a mut dyn FnMut(u64, u64)>,
    /// Threads reading and hashing segments (default: the CPUs this process may use).
    pub threads: usize,
}

impl Default for VerifyOptions<'_> {
    fn default() -> Self {
        VerifyOptions {
            trusted_checkpoints: Vec::new(),
            trusted_key: None,
            anchor_dir: None,
            against: None,
            min_retention_ns: 400 * 86_400 * NANOS_PER_SEC,
            heartbeat_interval_ns: 60 * NANOS_PER_SEC,
            max_staleness_ns: None,
            now: Timestamp::now(),
            progress: None,
            threads: std::thread::available_parallelism().map_or(1, usize::from),
        }
    }
}

struct SignedRoot {
    root: Hash,
    source: String,
    note: String,
    trusted: bool,
}

struct State {
    failures: Vec<Finding>,
    warnings: Vec<Finding>,
    checked: Checked,
    frontier: Option<Frontier>,
    signed: BTreeMap<u64, Vec<SignedRoot>>,
    prev_ok: u64,
    expected: u64,
    // lifecycle
    running: bool,
    last_received: Option<Timestamp>,
    pruned_claims: Vec<ManifestEntry>,
    /// (record index, first, last) of the retention records that account for a range
    tombstones_seen: Vec<(u64, u64, u64)>,
    genesis_checked: bool,
    identity_sha256: String,
    last_kind_stop: bool,
    // key rotations: keys.log entries and whether the tree confirmed each
    origin: String,
    key_log: Vec<crate::keys::KeyLogEntry>,
    key_confirmed: Vec<bool>,
}

impl State {
    fn fail(
        &mut self,
        code: &str,
        index: Option<u64>,
        range: Option<[u64; 2]>,
        file: Option<String>,
        detail: impl Into<String>,
    ) {
        self.failures.push(Finding {
            code: code.into(),
            index,
            range,
            file,
            detail: detail.into(),
        });
    }

    fn warn(
        &mut self,
        code: &str,
        index: Option<u64>,
        range: Option<[u64; 2]>,
        detail: impl Into<String>,
    ) {
        self.warnings.push(Finding {
            code: code.into(),
            index,
            range,
            file: None,
            detail: detail.into(),
        });
    }
}

/// Times `verify` looks at the files again when a live writer sealed a WAL while it ran.
const MAX_ROUNDS: usize = 1000;

/// Verify the ledger in `root`.
pub fn verify(
    root: impl Into<PathBuf>,
    mut opts: VerifyOptions<'_>,
) -> Result<Report, LedgerError> {
    let started = std::time::Instant::now();
    let reader = LedgerReader::open(root, opts.trusted_key.clone())?;
    let mut st = State {
        failures: Vec::new(),
        warnings: Vec::new(),
        checked: Checked::default(),
        frontier: Some(Frontier::new()),
        signed: BTreeMap::new(),
        prev_ok: 0,
        expected: 0,
        running: false,
        last_received: None,
        pruned_claims: Vec::new(),
        tombstones_seen: Vec::new(),
        genesis_checked: false,
        identity_sha256: trailwarden_model::sha256_hex(&reader.identity_bytes),
        last_kind_stop: false,
        origin: reader.identity.origin.clone(),
        key_log: reader.key_log.clone(),
        key_confirmed: vec![false; reader.key_log.len()],
    };
    let origin = reader.identity.origin.clone();

    // 1. identity and keys
    if let Some(k) = &opts.trusted_key {
        if k.vkey() != reader.identity.vkey
            && !reader.key_log.iter().any(|e| e.new_vkey == k.vkey())
        {
            st.fail(
                "E_IDENTITY",
                None,
                None,
                Some("identity.json".into()),
                "the trusted key is neither identity.json's key nor one the ledger rotated to",
            );
        }
    }
    if let Some(e) = &reader.key_log_error {
        st.fail(
            "E_IDENTITY",
            None,
            None,
            Some("keys.log".into()),
            format!("the key rotations cannot be used: {e}"),
        );
    }

    // 2. checkpoints from every source
    let log = datadir::read_checkpoint_log(&reader.dir.checkpoints_log())?;
    if let Some((off, why)) = &log.damage {
        st.fail(
            "E_MALFORMED_NOTE",
            None,
            None,
            Some("checkpoints.log".into()),
            format!("byte {off}: {why}"),
        );
    }
    if let Some((off, n)) = log.torn_tail {
        st.warn(
            "W_TORN_CHECKPOINT_LOG",
            None,
            None,
            format!("{n} bytes at byte {off} of checkpoints.log are an incomplete append"),
        );
    }
    let mut last_size = 0u64;
    let mut notes: Vec<(String, String, bool)> = log
        .entries
        .iter()
        .map(|e| {
            (
                format!("checkpoints.log@{}", e.offset),
                e.note.clone(),
                false,
            )
        })
        .collect();
    if let Ok(text) = std::fs::read_to_string(reader.dir.checkpoint_path()) {
        notes.push(("checkpoint".into(), text, false));
    }
    if let Some(a) = &opts.anchor_dir {
        for (size, text) in crate::anchor::DirAnchor::new(a, 0)?.notes() {
            notes.push((format!("anchor:{size}"), text, true));
        }
    }
    for (i, t) in opts.trusted_checkpoints.iter().enumerate() {
        st.checked.trusted_checkpoints += 1;
        notes.push((format!("trusted#{}", i + 1), t.clone(), true));
    }
    let mut latest_note: Option<(u64, String)> = None;
    for (source, text, trusted) in notes {
        st.checked.checkpoints += 1;
        match reader.keys.open_checkpoint(&text, Some(&origin)) {
            Ok(cp) => {
                let size = cp.checkpoint.size;
                if source.starts_with("checkpoints.log") {
                    if size < last_size {
                        st.fail(
                            "E_ROLLBACK_OR_FORK",
                            None,
                            Some([size, last_size]),
                            Some(source.clone()),
                            "checkpoints.log goes backwards",
                        );
                    }
                    last_size = last_size.max(size);
                }
                if latest_note.as_ref().is_none_or(|(s, _)| size > *s) {
                    latest_note = Some((size, text.clone()));
                }
                let fork = st.signed.get(&size).and_then(|list| list.iter().find(|r| r.root != cp.checkpoint.root)).map(|other| {
                    format!(
                        "two signed checkpoints for size {size} with different roots ({} and {}):\n{}\n{}",
                        other.source, source, other.note, text
                    )
                });
                if let Some(detail) = fork {
                    st.fail(
                        "E_FORK",
                        None,
                        Some([size, size]),
                        Some(source.clone()),
                        detail,
                    );
                }
                st.signed.entry(size).or_default().push(SignedRoot {
                    root: cp.checkpoint.root,
                    source,
                    note: text,
                    trusted,
                });
            }
            Err(e) => {
                let code = match e {
                    NoteError::Malformed(_) => "E_MALFORMED_NOTE",
                    _ => "E_BAD_SIGNATURE",
                };
                st.fail(code, None, None, Some(source), e.to_string());
            }
        }
    }
    let signed_size = st.signed.keys().next_back().copied().unwrap_or(0);

    // 3 + 4. segments and records, in index order. Reading, decompressing and hashing the
    // segments runs on worker threads, ahead of the in-order checks here.
    let total = reader.size().unwrap_or(0).max(1);
    let mut chain = chain_seed(&origin);
    // A live writer seals WALs while this runs: a WAL listed at open may be gone (sealed) by the
    // time it is read, its segment appended to the manifest after it was read. Such a gap is
    // looked at again (WALs listed, then the manifest re-read) and the new segments verified
    // from where the check stopped; a gap still there after that is a failure.
    let mut manifest = reader.manifest.clone();
    let mut wals = reader.wals.clone();
    let mut round = 0usize;
    'rounds: loop {
        let todo: Vec<ManifestEntry> = manifest
            .drain(..)
            .filter(|e| round == 0 || e.first >= st.expected)
            .collect();
        let sealed: Vec<PathBuf> = todo
            .iter()
            .filter(|e| e.state == "sealed")
            .map(|e| reader.dir.seg_dir().join(&e.file))
            .collect();
        let mut scans = ScanPipeline::start(sealed, opts.threads);
        for entry in todo {
            if entry.first != st.expected {
                st.fail(
                    if entry.first > st.expected {
                        "E_MISSING_SEGMENT"
                    } else {
                        "E_OVERLAP"
                    },
                    None,
                    Some([st.expected, entry.first]),
                    Some(entry.file.clone()),
                    format!(
                        "segment {}-{} does not start at record {}",
                        entry.first, entry.last, st.expected
                    ),
                );
                st.frontier = None;
                st.expected = entry.first;
            }
            if entry.state == "pruned" || entry.state == "evicted" {
                resync_pruned(&mut st, &entry);
                chain = entry.chain_hash().unwrap_or(chain);
                continue;
            }
            st.checked.segments += 1;
            let seg_name = entry.file.clone();
            let scan = scans.next_scan();
            // file hash, seal note, binding
            match scan.file_sha256 {
                Err(e) => {
                    st.fail(
                        "E_MISSING_SEGMENT",
                        None,
                        Some([entry.first, entry.last + 1]),
                        Some(seg_name.clone()),
                        format!("segment file unreadable: {e}"),
                    );
                    resync(&mut st, &entry);
                    chain = entry.chain_hash().unwrap_or(chain);
                    continue;
                }
                Ok(sha) => {
                    if sha != entry.sha256 {
                        st.fail(
                            "E_SEGMENT_HASH",
                            None,
                            Some([entry.first, entry.last + 1]),
                            Some(seg_name.clone()),
                            "segment file SHA-256 differs from the manifest",
                        );
                    }
                    check_seal(&mut st, &reader, &entry, &sha, &origin);
                }
            }
            match scan.meta {
                Ok(m) if m.origin != origin || m.first != entry.first || m.last != entry.last => st
                    .fail(
                        "E_SEGMENT_SUBSTITUTED",
                        None,
                        Some([entry.first, entry.last + 1]),
                        Some(seg_name.clone()),
                        format!(
                            "the file belongs to {} records {}-{}",
                            m.origin, m.first, m.last
                        ),
                    ),
                Ok(_) => {}
                Err(e) => st.fail(
                    "E_SEGMENT_HASH",
                    None,
                    Some([entry.first, entry.last + 1]),
                    Some(seg_name.clone()),
                    e.to_string(),
                ),
            }
            for r in &scan.rows {
                visit(
                    &mut st,
                    r.index,
                    r.kind,
                    r.received,
                    r.payload_len,
                    r.payload.as_deref(),
                    r.leaf,
                    r.prefix_ok,
                    &mut opts,
                );
            }
            if let Some(e) = scan.error {
                st.fail(
                    "E_SEGMENT_HASH",
                    None,
                    Some([entry.first, entry.last + 1]),
                    Some(seg_name.clone()),
                    format!("segment cannot be read: {e}"),
                );
            }
            if st.expected != entry.last + 1 {
                st.fail(
                    "E_INDEX_MISMATCH",
                    Some(st.expected.min(entry.last + 1)),
                    None,
                    Some(seg_name.clone()),
                    format!(
                        "segment {}-{} ends at record {}",
                        entry.first,
                        entry.last,
                        st.expected.wrapping_sub(1)
                    ),
                );
                resync(&mut st, &entry);
            } else if let Some(f) = &st.frontier {
                if b64(&f.root()) != entry.seal_root {
                    st.fail(
                        "E_ROOT_MISMATCH",
                        None,
                        Some([entry.first, entry.last + 1]),
                        Some(seg_name.clone()),
                        "the records do not hash to the segment's seal root",
                    );
                }
            }
            chain = entry.chain_hash().unwrap_or(chain);
        }
        let n_wals = wals.len();
        for (i, (first, path)) in wals.iter().enumerate() {
            if *first < st.expected {
                continue; // sealed meanwhile (the seal already covered it)
            }
            let data = crate::datadir::read_if_exists(path)?;
            if (*first != st.expected || data.is_none()) && round < MAX_ROUNDS {
                // sealed since the listing? look again
                let again = crate::recover::list_wals(&reader.dir)?;
                let m = crate::datadir::read_manifest(&reader.dir.manifest_path())?;
                if again != wals || m.iter().any(|e| e.first == st.expected) {
                    wals = again;
                    manifest = m;
                    round += 1;
                    continue 'rounds;
                }
            }
            st.checked.wal_files += 1;
            let name = path.file_name().map(|n| n.to_string_lossy().to_string());
            if *first != st.expected {
                st.fail(
                    "E_MISSING_SEGMENT",
                    None,
                    Some([st.expected, *first]),
                    name.clone(),
                    "records between the last segment and this WAL are missing",
                );
                st.frontier = None;
                st.expected = *first;
            }
            let Some(data) = data else {
                continue;
            };
            let mut off = 0usize;
            let mut expect_chain = chain;
            while off < data.len() {
                match wal::frame_at(&data, off) {
                    Ok(fr) => {
                        off += fr.len;
                        let leaf = crate::merkle::leaf_hash(fr.record);
                        let (index, kind, received, payload) = match record::decode(fr.record) {
                            Ok(d) => (d.index, d.kind as u8, d.received, d.payload),
                            Err(e) => {
                                st.fail("E_MALFORMED", Some(st.expected), None, name.clone(), e);
                                st.expected += 1;
                                continue;
                            }
                        };
                        if chain_next(&expect_chain, &fr.leaf) != fr.chain {
                            st.fail(
                                "E_CHAIN",
                                Some(index),
                                None,
                                name.clone(),
                                "WAL hash chain broken",
                            );
                        }
                        expect_chain = fr.chain;
                        visit(
                            &mut st,
                            index,
                            kind,
                            received,
                            payload.len(),
                            Some(payload),
                            leaf,
                            fr.leaf == leaf,
                            &mut opts,
                        );
                    }
                    Err(_) => {
                        let rest = (data.len() - off) as u64;
                        let later = data[off + 1..].windows(4).any(|w| w == wal::FRAME_MAGIC);
                        if i + 1 == n_wals && (rest < 80 << 20) && !later {
                            st.warn(
                                "W_TORN_TAIL",
                                Some(st.expected),
                                None,
                                format!(
                                    "{rest} bytes of an unacknowledged write at the end of {}",
                                    name.clone().unwrap_or_default()
                                ),
                            );
                        } else {
                            st.fail(
                                "E_MALFORMED",
                                Some(st.expected),
                                None,
                                name.clone(),
                                format!("damaged WAL frame at byte {off}"),
                            );
                        }
                        break;
                    }
                }
            }
            chain = expect_chain;
        }
        break;
    }
    if let Some(p) = opts.progress.as_mut() {
        p(st.checked.records, total);
    }

    // keys.log entries the tree does not back (a pruned rotation record is backed by its
    // tombstone's signed roots)
    for i in 0..st.key_log.len() {
        let e = st.key_log[i].clone();
        let pruned = st
            .pruned_claims
            .iter()
            .any(|c| c.first <= e.index && e.index <= c.last);
        if !st.key_confirmed[i] && !pruned {
            st.fail(
                "E_IDENTITY",
                Some(e.index),
                None,
                Some("keys.log".into()),
                format!(
                    "keys.log says {} signs from size {}, but record {} is not its rotation record",
                    e.new_vkey, e.effective_from_size, e.index
                ),
            );
        }
    }

    // 5. truncation / rollback
    let n = st.expected;
    if n < signed_size {
        st.fail(
            "E_TRUNCATED",
            None,
            Some([n, signed_size]),
            None,
            format!("{n} records present, but size {signed_size} was signed"),
        );
    }
    for (size, list) in &st.signed {
        for r in list.iter().filter(|r| r.trusted) {
            if *size > n {
                let f = Finding {
                    code: "E_ROLLBACK_OR_FORK".into(),
                    index: None,
                    range: Some([n, *size]),
                    file: Some(r.source.clone()),
                    detail: format!("trusted checkpoint of size {size} is not reproduced: only {n} records are present"),
                };
                st.failures.push(f);
            }
        }
    }
    if n > signed_size && signed_size > 0 {
        st.warn(
            "W_UNSIGNED_TAIL",
            None,
            Some([signed_size, n]),
            format!(
                "{} records are not yet covered by a signed checkpoint",
                n - signed_size
            ),
        );
    }
    for claim in st.pruned_claims.clone() {
        if !claim
            .tombstone
            .is_some_and(|t| st.tombstones_seen.contains(&(t, claim.first, claim.last)))
        {
            st.fail(
                "E_MISSING_SEGMENT",
                None,
                Some([claim.first, claim.last + 1]),
                Some(claim.file.clone()),
                if claim.state == "evicted" {
                    "segment marked evicted, but no eviction record for it is in the tree"
                } else {
                    "segment marked pruned, but no tombstone for it is in the tree"
                },
            );
        }
    }
    if st.running {
        if let (Some(max), Some(last)) = (opts.max_staleness_ns, st.last_received) {
            if opts.now.0 - last.0 > max {
                st.fail(
                    "E_STALE",
                    Some(n.saturating_sub(1)),
                    None,
                    None,
                    format!("the writer has not written since {last} (no stop record)"),
                );
            }
        }
    }
    if !st.genesis_checked && n > 0 && !st.pruned_claims.iter().any(|c| c.first == 0) {
        st.fail(
            "E_IDENTITY",
            Some(0),
            None,
            None,
            "record 0 is not the genesis record of this identity.json",
        );
    }

    // Localize root mismatches against another copy.
    if let Some(other) = &opts.against {
        localize(&mut st, &reader, other)?;
    }

    // The most precise failure at the smallest position: an exact record beats a range, a
    // specific finding beats a generic one at the same place.
    let first_failure = st
        .failures
        .iter()
        .min_by_key(|f| (f.index.is_none(), f.position(), specificity(&f.code)))
        .cloned();
    let status = if !st.failures.is_empty() {
        Status::Failed
    } else if !st.warnings.is_empty() {
        Status::Warnings
    } else {
        Status::Ok
    };
    let pruned = st
        .pruned_claims
        .iter()
        .map(|c| [c.first, c.last + 1])
        .collect();
    Ok(Report {
        status,
        origin,
        size: n,
        checkpoint: latest_note.map(|(_, t)| t),
        signed_size,
        checked: st.checked,
        first_failure,
        failures: st.failures,
        warnings: st.warnings,
        pruned,
        elapsed_seconds: started.elapsed().as_secs_f64(),
    })
}

fn specificity(code: &str) -> u8 {
    match code {
        "E_SEGMENT_SUBSTITUTED" | "E_FORK" | "E_MISSING_SEGMENT" | "E_PREMATURE_PRUNE" => 1,
        "E_ROOT_MISMATCH" | "E_TRUNCATED" | "E_ROLLBACK_OR_FORK" => 2,
        _ => 3,
    }
}

/// A key rotation record: its proof of possession, and the keys.log entry it backs.
fn check_rotation(
    st: &mut State,
    index: u64,
    old_vkey: &str,
    new_vkey: &str,
    effective_from_size: u64,
    pop: &str,
) {
    let msg = crate::keys::pop_message(&st.origin, old_vkey, new_vkey, effective_from_size);
    let pop_ok = NoteVerifier::parse(new_vkey).is_ok_and(|v| {
        B64.decode(pop)
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
            .is_some_and(|sig| v.verify(msg.as_bytes(), &sig))
    });
    if !pop_ok || effective_from_size != index + 1 {
        st.fail(
            "E_IDENTITY",
            Some(index),
            None,
            None,
            format!(
                "the rotation to {new_vkey} carries no valid proof of possession for size {}",
                index + 1
            ),
        );
        return;
    }
    match st.key_log.iter().position(|e| e.index == index) {
        Some(i) if st.key_log[i].new_vkey == new_vkey && st.key_log[i].old_vkey == old_vkey => {
            st.key_confirmed[i] = true;
        }
        Some(_) => st.fail(
            "E_IDENTITY",
            Some(index),
            None,
            Some("keys.log".into()),
            "keys.log names another key than the rotation record at this index",
        ),
        None => st.warn(
            "W_KEY_NOT_USED",
            Some(index),
            None,
            format!("the rotation to {new_vkey} was recorded but never completed (the key is not in keys.log and signs nothing)"),
        ),
    }
}

/// One record of a scanned segment: what the in-order checks need.
struct ScannedRow {
    index: u64,
    kind: u8,
    received: Timestamp,
    leaf: Hash,
    prefix_ok: bool,
    payload_len: usize,
    /// Kept for lifecycle and retention records only.
    payload: Option<Vec<u8>>,
}

/// A segment read, decompressed and hashed by a worker.
struct SegmentScan {
    file_sha256: Result<String, std::io::Error>,
    meta: Result<segment::SegmentMeta, LedgerError>,
    /// The rows read before `error` (all of them when it is `None`).
    rows: Vec<ScannedRow>,
    error: Option<LedgerError>,
}

fn scan_segment(path: &std::path::Path) -> SegmentScan {
    let file_sha256 = std::fs::read(path).map(|b| trailwarden_model::sha256_hex(&b));
    if let Err(e) = file_sha256 {
        return SegmentScan {
            file_sha256: Err(e),
            meta: Err(LedgerError::Invalid("unreadable".into())),
            rows: Vec::new(),
            error: None,
        };
    }
    let meta = segment::read_meta(path);
    let mut rows = Vec::new();
    let res = segment::for_each_hashed(path, |r| {
        let leaf = record_leaf_hash(r.kind, r.index, r.received.0, r.source, r.raw);
        let keep = r.kind == RecordKind::Lifecycle as u8 || r.kind == RecordKind::Retention as u8;
        rows.push(ScannedRow {
            index: r.index,
            kind: r.kind,
            received: r.received,
            prefix_ok: r.leaf_prefix == &leaf[..segment::LEAF_PREFIX],
            leaf,
            payload_len: r.raw.len(),
            payload: keep.then(|| r.raw.to_vec()),
        });
        Ok(())
    });
    SegmentScan {
        file_sha256,
        meta,
        rows,
        error: res.err(),
    }
}

/// Segments scanned by `threads` workers, handed out in manifest order. Workers run at most a
/// few segments ahead (bounded memory).
struct ScanPipeline {
    rx: std::sync::mpsc::Receiver<(usize, SegmentScan)>,
    ready: BTreeMap<usize, SegmentScan>,
    next: usize,
    paths: Vec<PathBuf>,
    _workers: Vec<std::thread::JoinHandle<()>>,
}

impl ScanPipeline {
    fn start(paths: Vec<PathBuf>, threads: usize) -> ScanPipeline {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        let threads = threads.max(1).min(paths.len().max(1));
        let (tx, rx) = std::sync::mpsc::sync_channel(threads);
        let claim = Arc::new(AtomicUsize::new(0));
        let shared = Arc::new(paths.clone());
        let mut workers = Vec::new();
        for _ in 0..threads {
            let tx = tx.clone();
            let claim = claim.clone();
            let paths = shared.clone();
            let spawned = std::thread::Builder::new()
                .name("trailwarden-verify".into())
                .spawn(move || loop {
                    let i = claim.fetch_add(1, Ordering::SeqCst);
                    let Some(p) = paths.get(i) else { return };
                    if tx.send((i, scan_segment(p))).is_err() {
                        return;
                    }
                });
            // Without a worker the segments are scanned on the caller's thread instead.
            if let Ok(h) = spawned {
                workers.push(h);
            }
        }
        ScanPipeline {
            rx,
            ready: BTreeMap::new(),
            next: 0,
            paths,
            _workers: workers,
        }
    }

    /// The next segment's scan, in order.
    fn next_scan(&mut self) -> SegmentScan {
        let i = self.next;
        self.next += 1;
        loop {
            if let Some(s) = self.ready.remove(&i) {
                return s;
            }
            match self.rx.recv() {
                Ok((j, s)) => {
                    self.ready.insert(j, s);
                }
                // no workers left: scan it here
                Err(_) => {
                    return match self.paths.get(i) {
                        Some(p) => scan_segment(p),
                        None => SegmentScan {
                            file_sha256: Err(std::io::Error::other("no such segment")),
                            meta: Err(LedgerError::Invalid("no such segment".into())),
                            rows: Vec::new(),
                            error: None,
                        },
                    }
                }
            }
        }
    }
}

fn resync(st: &mut State, entry: &ManifestEntry) {
    st.frontier = entry
        .frontier_hashes()
        .ok()
        .and_then(|h| Frontier::from_parts(entry.last + 1, h).ok());
    st.expected = entry.last + 1;
    st.prev_ok = st.expected;
}

fn resync_pruned(st: &mut State, entry: &ManifestEntry) {
    // The tombstone's compact range substitutes for the deleted leaves.
    let mut merged = st.frontier.clone();
    if let Some(f) = merged.as_mut() {
        for (start, level, h) in &entry.compact_range {
            let hash: Option<Hash> = B64.decode(h).ok().and_then(|v| v.try_into().ok());
            if *start != f.size() || hash.is_none_or(|h| f.append_subtree(*level, h).is_err()) {
                merged = None;
                break;
            }
        }
    }
    match merged {
        Some(f) if f.size() == entry.last + 1 => {
            st.frontier = Some(f);
            st.expected = entry.last + 1;
        }
        _ => {
            st.fail(
                "E_MISSING_SEGMENT",
                None,
                Some([entry.first, entry.last + 1]),
                Some(entry.file.clone()),
                "pruned range without a valid compact range",
            );
            resync(st, entry);
        }
    }
    if entry.state == "evicted" {
        st.checked.evicted_ranges += 1;
    } else {
        st.checked.pruned_ranges += 1;
    }
    st.pruned_claims.push(entry.clone());
}

fn check_seal(
    st: &mut State,
    reader: &LedgerReader,
    entry: &ManifestEntry,
    sha: &str,
    origin: &str,
) {
    let seal_path = reader.dir.seal_file(entry.first, entry.last);
    let name = seal_path
        .file_name()
        .map(|n| n.to_string_lossy().to_string());
    let text = match std::fs::read_to_string(&seal_path) {
        Ok(t) => t,
        Err(e) => {
            st.fail(
                "E_SEGMENT_HASH",
                None,
                Some([entry.first, entry.last + 1]),
                name,
                format!("seal note missing: {e}"),
            );
            return;
        }
    };
    let n = match reader.keys.open_note(&text, entry.last + 1) {
        Ok(n) => n,
        Err(e) => {
            st.fail(
                "E_BAD_SIGNATURE",
                None,
                Some([entry.first, entry.last + 1]),
                name,
                format!("seal note: {e}"),
            );
            return;
        }
    };
    match parse_seal_text(&n.text, origin) {
        Ok((first, last, root, file_sha)) => {
            if first != entry.first || last != entry.last || root != entry.seal_root {
                st.fail(
                    "E_SEGMENT_SUBSTITUTED",
                    None,
                    Some([entry.first, entry.last + 1]),
                    name.clone(),
                    "the seal note covers another range or root than the manifest",
                );
            }
            if file_sha != sha {
                st.fail(
                    "E_SEGMENT_HASH",
                    None,
                    Some([entry.first, entry.last + 1]),
                    name,
                    "segment file SHA-256 differs from the signed seal",
                );
            }
        }
        Err(e) => st.fail(
            "E_MALFORMED_NOTE",
            None,
            Some([entry.first, entry.last + 1]),
            name,
            e,
        ),
    }
    // The seal size is a signed size too.
    if let Ok(root) = B64.decode(&entry.seal_root) {
        if let Ok(root) = <Hash>::try_from(root) {
            let fork = st
                .signed
                .get(&(entry.last + 1))
                .and_then(|list| list.iter().find(|r| r.root != root))
                .map(|other| other.source.clone());
            if let Some(other) = fork {
                let detail = format!(
                    "the seal of {}-{} signs a different root than {other}",
                    entry.first, entry.last
                );
                st.fail(
                    "E_FORK",
                    None,
                    Some([entry.last + 1, entry.last + 1]),
                    Some(entry.file.clone()),
                    detail,
                );
            } else {
                st.signed
                    .entry(entry.last + 1)
                    .or_default()
                    .push(SignedRoot {
                        root,
                        source: format!("seal:{}", entry.file),
                        note: text,
                        trusted: false,
                    });
            }
        }
    }
}

/// Check one record in index order and fold it into the tree. `payload` is needed only for lifecycle and retention
/// records (the scanners keep it for those kinds alone).
#[allow(clippy::too_many_arguments)]
fn visit(
    st: &mut State,
    index: u64,
    kind: u8,
    received: Timestamp,
    payload_len: usize,
    payload: Option<&[u8]>,
    leaf: Hash,
    stored_ok: bool,
    opts: &mut VerifyOptions<'_>,
) {
    st.checked.records += 1;
    st.checked.bytes += payload_len as u64;
    let payload = payload.unwrap_or_default();
    if st.checked.records.is_multiple_of(65_536) {
        if let Some(p) = opts.progress.as_mut() {
            p(st.checked.records, 0);
        }
    }
    if index != st.expected {
        // A missing index is reported where it is missing; a repeated one where it repeats.
        let at = index.min(st.expected);
        st.fail(
            "E_INDEX_MISMATCH",
            Some(at),
            None,
            None,
            format!(
                "found record {index} where {} belongs (deleted, inserted or reordered)",
                st.expected
            ),
        );
        st.frontier = None;
        st.expected = index;
    }
    let kind = match RecordKind::from_u8(kind) {
        Some(k) => k,
        None => {
            st.fail(
                "E_MALFORMED",
                Some(index),
                None,
                None,
                format!("unknown record kind {kind}"),
            );
            RecordKind::Event
        }
    };
    if !stored_ok {
        st.fail(
            "E_LEAF_MISMATCH",
            Some(index),
            None,
            None,
            "the record's bytes do not hash to its stored leaf hash",
        );
    }
    // lifecycle and retention records
    match kind {
        RecordKind::Lifecycle => match serde_json::from_slice::<Lifecycle>(payload) {
            Ok(Lifecycle::Genesis {
                identity_sha256, ..
            }) if index == 0 => {
                if identity_sha256 == st.identity_sha256 {
                    st.genesis_checked = true;
                } else {
                    st.fail(
                        "E_IDENTITY",
                        Some(0),
                        None,
                        Some("identity.json".into()),
                        "identity.json is not the identity record 0 was created with",
                    );
                    st.genesis_checked = true;
                }
            }
            Ok(Lifecycle::Start {
                clean_shutdown,
                truncated_bytes,
                ..
            }) => {
                if !clean_shutdown {
                    st.warn("W_UNCLEAN_SHUTDOWN", Some(index), None, format!("the writer restarted after a crash ({truncated_bytes} bytes of an unacknowledged write truncated)"));
                }
                st.running = true;
            }
            Ok(Lifecycle::Stop { .. }) => st.running = false,
            Ok(Lifecycle::KeyRotation {
                new_vkey,
                old_vkey,
                effective_from_size,
                proof_of_possession,
            }) => check_rotation(
                st,
                index,
                &old_vkey,
                &new_vkey,
                effective_from_size,
                &proof_of_possession,
            ),
            _ => {}
        },
        RecordKind::Retention => {
            // the manifest's claim for the same range (pruned or evicted), if any
            let claim_of = |st: &State, first: u64, last: u64| {
                st.pruned_claims
                    .iter()
                    .find(|c| c.first == first && c.last == last)
                    .cloned()
            };
            match serde_json::from_slice::<Retention>(payload) {
                Ok(Retention::Evict {
                    first,
                    last,
                    compact_range,
                    ..
                }) => match claim_of(st, first, last) {
                    // an eviction record accounts for an evicted range (a range evicted and
                    // later pruned is accounted for by its tombstone; one restored is present)
                    Some(c) if c.compact_range != compact_range => st.fail(
                        "E_MISSING_SEGMENT",
                        None,
                        Some([first, last + 1]),
                        None,
                        "the eviction record does not match the evicted range's compact range",
                    ),
                    _ => st.tombstones_seen.push((index, first, last)),
                },
                Ok(Retention::Prune {
                    first,
                    last,
                    newest_received,
                    compact_range,
                    ..
                }) => match claim_of(st, first, last) {
                    Some(c) if c.compact_range == compact_range && c.tombstone == Some(index) => {
                        st.tombstones_seen.push((index, first, last));
                        if received.0 - newest_received.0 < opts.min_retention_ns {
                            let days = (received.0 - newest_received.0) / (86_400 * NANOS_PER_SEC);
                            st.fail("E_PREMATURE_PRUNE", None, Some([first, last + 1]), None, format!("records {first}-{last} were pruned {days} days after their newest record, before the retention period"));
                        }
                    }
                    Some(_) => st.fail(
                        "E_MISSING_SEGMENT",
                        None,
                        Some([first, last + 1]),
                        None,
                        "the tombstone does not match the pruned range's compact range",
                    ),
                    // A tombstone for a range still present: harmless, nothing was deleted.
                    None => st.tombstones_seen.push((index, first, last)),
                },
                _ => {}
            }
        }
        _ => {}
    }
    if st.running {
        if let Some(prev) = st.last_received {
            if received.0 - prev.0 > 2 * opts.heartbeat_interval_ns && !st.last_kind_stop {
                st.warn("W_GAP", Some(index), None, format!("no record from {prev} to {received} while the writer was running (paused or stopped without a stop record)"));
            }
        }
    }
    st.last_kind_stop = kind == RecordKind::Lifecycle && !st.running;
    st.last_received = Some(received);
    if let Some(f) = st.frontier.as_mut() {
        f.push(leaf);
    }
    st.expected = index + 1;
    let size = index + 1;
    if let Some(list) = st.signed.get(&size) {
        st.checked.roots_compared += 1;
        match &st.frontier {
            Some(f) => {
                let root = f.root();
                let bad: Vec<String> = list
                    .iter()
                    .filter(|r| r.root != root)
                    .map(|r| r.source.clone())
                    .collect();
                if bad.is_empty() {
                    st.prev_ok = size;
                } else {
                    let prev = st.prev_ok;
                    let trusted = list.iter().any(|r| r.trusted && r.root != root);
                    st.fail(
                        "E_ROOT_MISMATCH",
                        None,
                        Some([prev, size]),
                        Some(bad.join(", ")),
                        format!(
                            "records {prev}..{size} do not hash to the root signed for size {size}"
                        ),
                    );
                    if trusted {
                        st.fail(
                            "E_ROLLBACK_OR_FORK",
                            None,
                            Some([prev, size]),
                            None,
                            "a trusted checkpoint's root is not reproduced",
                        );
                    }
                }
            }
            None => {
                let prev = st.prev_ok;
                st.fail(
                    "E_ROOT_MISMATCH",
                    None,
                    Some([prev, size]),
                    None,
                    format!(
                        "the root for size {size} cannot be reproduced (records missing before it)"
                    ),
                );
            }
        }
    }
}

/// Pin root mismatches to a record by comparing leaves with another copy of the ledger.
fn localize(
    st: &mut State,
    reader: &LedgerReader,
    other: &std::path::Path,
) -> Result<(), LedgerError> {
    let other = LedgerReader::open(other, Some(reader.verifier.clone()))?;
    let ranges: Vec<[u64; 2]> = st
        .failures
        .iter()
        .filter(|f| f.code == "E_ROOT_MISMATCH")
        .filter_map(|f| f.range)
        .collect();
    for [a, b] in ranges {
        let mut ours = Vec::new();
        reader.for_each(a, b, |r| {
            ours.push((r.index, r.leaf));
            Ok(true)
        })?;
        let mut k = None;
        let mut i = 0;
        other.for_each(a, b, |r| {
            let mismatch = ours
                .get(i)
                .is_none_or(|(idx, leaf)| *idx != r.index || *leaf != r.leaf);
            i += 1;
            if mismatch {
                k = Some(r.index);
                return Ok(false);
            }
            Ok(true)
        })?;
        if let Some(k) = k {
            st.fail(
                "E_LEAF_MISMATCH",
                Some(k),
                None,
                Some(other.dir.root().display().to_string()),
                format!(
                    "record {k} differs from the copy in {}",
                    other.dir.root().display()
                ),
            );
        }
    }
    Ok(())
}

/// Render a short human summary.
pub fn summary(r: &Report) -> String {
    let mut s = format!(
        "{}: {} records, {} checkpoints, {} segments, {} WAL files checked; signed size {}\n",
        match r.status {
            Status::Ok => "VERIFIED",
            Status::Warnings => "VERIFIED WITH WARNINGS",
            Status::Failed => "INTEGRITY FAILURE",
        },
        r.checked.records,
        r.checked.checkpoints,
        r.checked.segments,
        r.checked.wal_files,
        r.signed_size
    );
    if let Some(f) = &r.first_failure {
        s.push_str(&format!(
            "first failure: {} {}{}: {}\n",
            f.code,
            f.index.map(|i| format!("record {i}")).unwrap_or_default(),
            f.range
                .map(|r| format!("records [{}, {})", r[0], r[1]))
                .unwrap_or_default(),
            f.detail
        ));
    }
    for f in r.failures.iter().take(20) {
        s.push_str(&format!(
            "  {} {} {}{}\n",
            f.code,
            f.index
                .map(|i| i.to_string())
                .or(f.range.map(|r| format!("[{}, {})", r[0], r[1])))
                .unwrap_or_default(),
            f.detail.lines().next().unwrap_or(""),
            f.file
                .as_deref()
                .map(|file| format!(" ({file})"))
                .unwrap_or_default()
        ));
    }
    for w in r.warnings.iter().take(20) {
        s.push_str(&format!(
            "  {} {} {}\n",
            w.code,
            w.index
                .map(|i| i.to_string())
                .or(w.range.map(|r| format!("[{}, {})", r[0], r[1])))
                .unwrap_or_default(),
            w.detail
        ));
    }
    s
}
