//! The ledger's fault and tamper cases (ledger design §10, T1–T17), the crash harness (real
//! `kill -9` of a writer process under load), and proof round trips.
//!
//! Each case builds a ledger of a few thousand records over several sealed segments with
//! checkpoints every 100 records, then damages it the way an attacker without the key (or a
//! crash, or a failing disk) would, and checks what `verify` and the writer say.

#![allow(clippy::unwrap_used)] // test harness: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use trailwarden_ledger::anchor::{DirAnchor, WormDir, WormError};
use trailwarden_ledger::datadir::{self, DataDir};
use trailwarden_ledger::merkle::{chain_next, leaf_hash};
use trailwarden_ledger::note::{sign_note, Checkpoint, Ed25519Signer, NoteSigner, NoteVerifier};
use trailwarden_ledger::reader::LedgerReader;
use trailwarden_ledger::segment::{self, Extracted, SegmentBuilder, SegmentMeta};
use trailwarden_ledger::verify::{self, Report, Status, VerifyOptions};
use trailwarden_ledger::wal::{self, WalIo};
use trailwarden_ledger::witness::{Witness, WitnessError};
use trailwarden_ledger::{proof, record, retention, Clock, Ledger, LedgerError, Options};
use trailwarden_model::{Body, Event, Format, Record, RecordKind, Timestamp};

const ORIGIN: &str = "test.example/ledger";
const DAY: i64 = 86_400 * 1_000_000_000;

fn tmp(name: &str) -> PathBuf {
    let d = trailwarden_model::scratch::dir("tw-ledger", name);
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// A clock the test moves.
struct TestClock(AtomicI64);

impl TestClock {
    fn at(t: Timestamp) -> Arc<TestClock> {
        Arc::new(TestClock(AtomicI64::new(t.0)))
    }
    fn advance(&self, ns: i64) {
        self.0.fetch_add(ns, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.fetch_add(1_000, Ordering::SeqCst))
    }
}

fn opts() -> Options {
    Options {
        origin: Some(ORIGIN.into()),
        seal_bytes: 48 << 10,
        background_seal: false,
        checkpoint_interval_ns: i64::MAX,
        ..Options::default()
    }
}

fn payload(i: u64) -> Vec<u8> {
    let pad = (i * 7919 % 200) as usize;
    format!(
        "{{\"kind\":\"Event\",\"auditID\":\"a-{i}\",\"verb\":\"get\",\"pad\":\"{}\"}}",
        "p".repeat(pad)
    )
    .into_bytes()
}

fn event_record(i: u64, received: Timestamp) -> Record {
    let mut ev = Event::new(Format::K8sAudit);
    ev.action = Some("get".into());
    Record {
        source: "file:test.jsonl".into(),
        received,
        raw: payload(i),
        location: None,
        body: Body::Event(Box::new(ev)),
    }
}

/// A ledger of `n` events with a checkpoint every 100 records; returns the final checkpoint.
fn build_with(
    dir: &Path,
    n: u64,
    o: Options,
    base: Timestamp,
) -> trailwarden_ledger::note::SignedCheckpoint {
    let (mut l, _) = Ledger::open(dir, o).unwrap();
    for i in 0..n {
        l.append(&event_record(i, Timestamp(base.0 + i as i64 * 1_000_000)))
            .unwrap();
        if i % 100 == 99 {
            l.commit().unwrap();
            l.checkpoint().unwrap();
        }
    }
    l.close("test").unwrap()
}

/// Options under which nothing is sealed (every record stays in the WAL).
fn unsealed() -> Options {
    Options {
        seal_bytes: 1 << 30,
        ..opts()
    }
}

/// A writer on `dir` that never seals, holding `n` committed events.
fn wal_ledger(dir: &Path, n: u64) -> Ledger {
    let (mut l, _) = Ledger::open(dir, unsealed()).unwrap();
    for i in 0..n {
        l.append(&event_record(i, Timestamp(i as i64))).unwrap();
    }
    l.commit().unwrap();
    l
}

fn build(dir: &Path, n: u64) -> trailwarden_ledger::note::SignedCheckpoint {
    build_with(
        dir,
        n,
        opts(),
        Timestamp::parse("2026-11-01T00:00:00Z").unwrap(),
    )
}

fn verify_with(dir: &Path, o: VerifyOptions<'_>) -> Report {
    verify::verify(dir, o).unwrap()
}

fn verify_dir(dir: &Path) -> Report {
    verify_with(dir, VerifyOptions::default())
}

fn codes(r: &Report) -> Vec<String> {
    r.failures.iter().map(|f| f.code.clone()).collect()
}

fn first(r: &Report) -> (String, Option<u64>, Option<[u64; 2]>) {
    let f = r
        .first_failure
        .as_ref()
        .unwrap_or_else(|| panic!("no failure reported: {r:#?}"));
    (f.code.clone(), f.index, f.range)
}

fn manifest(dir: &Path) -> Vec<datadir::ManifestEntry> {
    datadir::read_manifest(&DataDir::new(dir).manifest_path()).unwrap()
}

/// Copy a directory tree.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        let t = to.join(e.file_name());
        if p.is_dir() {
            copy_dir(&p, &t);
        } else {
            std::fs::copy(&p, &t).unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(&p).unwrap().permissions().mode();
                std::fs::set_permissions(&t, std::fs::Permissions::from_mode(mode | 0o200))
                    .unwrap();
            }
        }
    }
}

/// One row of a segment's hashed columns, for tampering.
#[derive(Clone)]
struct Row {
    index: u64,
    kind: u8,
    received: Timestamp,
    source: String,
    raw: Vec<u8>,
    prefix: Vec<u8>,
}

fn read_rows(path: &Path) -> Vec<Row> {
    let mut rows = Vec::new();
    segment::for_each_hashed(path, |r| {
        rows.push(Row {
            index: r.index,
            kind: r.kind,
            received: r.received,
            source: r.source.to_string(),
            raw: r.raw.to_vec(),
            prefix: r.leaf_prefix.to_vec(),
        });
        Ok(())
    })
    .unwrap();
    rows
}

/// Rewrite a segment file (as an attacker with write access would: a valid Parquet file with
/// the same metadata), with `fix_prefix` recomputing the stored leaf prefixes.
fn write_rows(path: &Path, rows: &[Row], fix_prefix: bool, meta: Option<SegmentMeta>) {
    let meta = meta.unwrap_or_else(|| segment::read_meta(path).unwrap());
    let mut b = SegmentBuilder::new();
    for r in rows {
        let leaf = if fix_prefix {
            trailwarden_ledger::merkle::record_leaf_hash(
                r.kind,
                r.index,
                r.received.0,
                &r.source,
                &r.raw,
            )
        } else {
            let mut h = [0u8; 32];
            h[..8].copy_from_slice(&r.prefix);
            h
        };
        let kind = RecordKind::from_u8(r.kind).unwrap_or(RecordKind::Event);
        b.push(
            r.index,
            kind,
            r.received,
            &r.source,
            &r.raw,
            &leaf,
            Extracted::Internal,
        );
    }
    let batch = b.finish().unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644));
    }
    segment::write(path, &meta, &[batch], 3).unwrap();
}

fn seg_path(dir: &Path, e: &datadir::ManifestEntry) -> PathBuf {
    DataDir::new(dir).seg_dir().join(&e.file)
}

/// Update a segment's manifest hash (an attacker can edit the manifest; not the signed seal).
fn rehash_manifest(dir: &Path, first: u64) {
    let d = DataDir::new(dir);
    let mut entries = manifest(dir);
    for e in &mut entries {
        if e.first == first {
            e.sha256 =
                trailwarden_model::sha256_hex(&std::fs::read(d.seg_dir().join(&e.file)).unwrap());
        }
    }
    std::fs::remove_file(d.manifest_path()).unwrap();
    for e in &entries {
        datadir::append_manifest(&d.manifest_path(), e).unwrap();
    }
}

#[test]
fn a_clean_ledger_verifies() {
    let d = tmp("clean");
    let cp = build(&d, 1200);
    let r = verify_dir(&d);
    assert_eq!(r.status, Status::Ok, "{r:#?}");
    assert_eq!(r.size, cp.checkpoint.size);
    assert!(r.checked.segments >= 3, "{:?}", r.checked);
    assert!(r.checked.roots_compared >= 12);
    assert!(r.checkpoint.is_some());
    // reopening continues the same tree
    let (l, rec) = Ledger::open(&d, opts()).unwrap();
    assert!(rec.clean_shutdown);
    assert_eq!(rec.size, cp.checkpoint.size);
    l.close("again").unwrap();
    assert_eq!(verify_dir(&d).status, Status::Ok);
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn t01_bit_flip_in_a_sealed_record_is_located() {
    let d = tmp("t01");
    build(&d, 1200);
    let e = &manifest(&d)[1];
    let k = e.first + 5;
    let mut rows = read_rows(&seg_path(&d, e));
    rows[5].raw[3] ^= 0x04;
    write_rows(&seg_path(&d, e), &rows, false, None);
    let r = verify_dir(&d);
    assert_eq!(r.status, Status::Failed);
    assert_eq!(first(&r).0, "E_LEAF_MISMATCH");
    assert_eq!(first(&r).1, Some(k));
    assert!(
        codes(&r).contains(&"E_ROOT_MISMATCH".to_string()),
        "every later root fails too: {:?}",
        codes(&r)
    );
    assert!(codes(&r).contains(&"E_SEGMENT_HASH".to_string()));
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn t02_consistent_rewrite_fails_its_checkpoint_interval_and_is_pinned_against_a_copy() {
    let d = tmp("t02");
    let backup = tmp("t02-backup");
    build(&d, 1200);
    copy_dir(&d, &backup);
    let e = &manifest(&d)[1];
    let k = e.first + 7;
    let mut rows = read_rows(&seg_path(&d, e));
    rows[7].raw[3] ^= 0x01;
    write_rows(&seg_path(&d, e), &rows, true, None);
    rehash_manifest(&d, e.first);
    let r = verify_dir(&d);
    assert_eq!(r.status, Status::Failed);
    let (code, _, range) = first(&r);
    assert!(
        code == "E_ROOT_MISMATCH" || code == "E_SEGMENT_HASH",
        "{code}"
    );
    let mismatch = r
        .failures
        .iter()
        .find(|f| f.code == "E_ROOT_MISMATCH")
        .unwrap();
    let [a, b] = mismatch.range.unwrap();
    assert!(a <= k && k < b, "interval [{a}, {b}) must contain {k}");
    assert!(
        b - a <= 200,
        "the interval is a checkpoint interval, not the whole log"
    );
    let _ = range;
    let r = verify_with(
        &d,
        VerifyOptions {
            against: Some(backup.clone()),
            ..VerifyOptions::default()
        },
    );
    assert_eq!(first(&r).0, "E_LEAF_MISMATCH");
    assert_eq!(first(&r).1, Some(k));
    std::fs::remove_dir_all(&d).ok();
    std::fs::remove_dir_all(&backup).ok();
}

#[test]
fn t03_t05_t06_deletion_reordering_insertion_break_the_index_binding() {
    for (name, edit) in [
        ("t03-delete", 0u8), // delete row 10
        ("t05-swap", 1),     // swap rows 4 and 9
        ("t06-insert", 2),   // insert a forged row before row 10
    ] {
        let d = tmp(name);
        build(&d, 1200);
        let e = &manifest(&d)[2];
        let mut rows = read_rows(&seg_path(&d, e));
        let expect = match edit {
            0 => {
                rows.remove(10);
                e.first + 10
            }
            1 => {
                rows.swap(4, 9);
                e.first + 4
            }
            _ => {
                let mut forged = rows[10].clone();
                forged.raw = b"{\"forged\":true}".to_vec();
                rows.insert(10, forged);
                e.first + 10
            }
        };
        write_rows(&seg_path(&d, e), &rows, true, None);
        let r = verify_dir(&d);
        assert_eq!(r.status, Status::Failed, "{name}");
        assert_eq!(
            first(&r),
            ("E_INDEX_MISMATCH".into(), Some(expect), None),
            "{name}: {:?}",
            r.failures
        );
        std::fs::remove_dir_all(&d).ok();
    }
}

/// Rewrite the active WAL's frames from `from` on with `f` renumbering / recomputing every hash.
fn rewrite_wal(
    dir: &Path,
    edit: impl FnOnce(&mut Vec<(RecordKind, u64, Timestamp, String, Vec<u8>)>),
) -> u64 {
    let d = DataDir::new(dir);
    let wals = trailwarden_ledger::recover::list_wals(&d).unwrap();
    let (first, path) = wals.last().unwrap().clone();
    let data = std::fs::read(&path).unwrap();
    let mut recs: Vec<(RecordKind, u64, Timestamp, String, Vec<u8>)> = Vec::new();
    let mut at = 0;
    while let Ok(f) = wal::frame_at(&data, at) {
        at += f.len;
        let r = record::decode(f.record).unwrap();
        recs.push((
            r.kind,
            r.index,
            r.received,
            r.source.to_string(),
            r.payload.to_vec(),
        ));
    }
    let chain0 = {
        let m = manifest(dir);
        m.iter()
            .find(|e| e.last + 1 == first)
            .map(|e| e.chain_hash().unwrap())
            .unwrap_or_else(|| trailwarden_ledger::merkle::chain_seed(ORIGIN))
    };
    edit(&mut recs);
    let mut out = Vec::new();
    let mut chain = chain0;
    for (i, (kind, _, received, source, payload)) in recs.iter().enumerate() {
        let mut enc = Vec::new();
        record::encode(
            *kind,
            first + i as u64,
            *received,
            source,
            payload,
            &mut enc,
        )
        .unwrap();
        let leaf = leaf_hash(&enc);
        chain = chain_next(&chain, &leaf);
        let start = out.len();
        wal::encode_frame(0, &enc, b"{}", &leaf, &chain, &mut out);
        wal::mark_batch_end(&mut out, start);
    }
    std::fs::write(&path, out).unwrap();
    first
}

#[test]
fn t04_delete_and_renumber_fails_the_next_checkpoint_and_is_truncated() {
    let d = tmp("t04");
    let (mut l, _) = Ledger::open(&d, unsealed()).unwrap();
    for i in 0..450u64 {
        l.append(&event_record(i, Timestamp(i as i64))).unwrap();
        if i % 100 == 99 {
            l.commit().unwrap();
            l.checkpoint().unwrap();
        }
    }
    let signed = l.close("test").unwrap().checkpoint.size;
    let k = 150u64;
    let wal_first = rewrite_wal(&d, |recs| {
        let pos = recs.iter().position(|r| r.1 == k).unwrap();
        recs.remove(pos);
    });
    assert_eq!(wal_first, 0);
    let r = verify_dir(&d);
    assert_eq!(r.status, Status::Failed);
    let mism: Vec<_> = r
        .failures
        .iter()
        .filter(|f| f.code == "E_ROOT_MISMATCH")
        .collect();
    assert!(!mism.is_empty());
    let [a, b] = mism[0].range.unwrap();
    assert!(
        a <= k && k < b,
        "first failing interval [{a}, {b}) contains {k}"
    );
    let trunc = r.failures.iter().find(|f| f.code == "E_TRUNCATED").unwrap();
    assert_eq!(trunc.range, Some([signed - 1, signed]));
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn t07_t09_cut_tail_and_checkpoint_rollback_are_caught_by_trusted_checkpoints_and_the_anchor() {
    let d = tmp("t07");
    let anchor_dir = tmp("t07-anchor");
    let mk = || Options {
        seal_bytes: 1 << 30,
        anchor: Some(Box::new(DirAnchor::new(&anchor_dir, DAY).unwrap())),
        ..opts()
    };
    let (mut l, _) = Ledger::open(&d, mk()).unwrap();
    let mut notes = Vec::new();
    for i in 0..600u64 {
        l.append(&event_record(i, Timestamp(i as i64))).unwrap();
        if i % 100 == 99 {
            l.commit().unwrap();
            notes.push(l.checkpoint().unwrap());
        }
    }
    let fin = l.close("test").unwrap();
    let trusted = fin.note.clone();
    // The attacker drops the last 250 records and every checkpoint covering them.
    let cut_to = notes[2].checkpoint.size;
    rewrite_wal(&d, |recs| recs.truncate(cut_to as usize));
    let dd = DataDir::new(&d);
    let log = datadir::read_checkpoint_log(&dd.checkpoints_log()).unwrap();
    let keep: Vec<_> = log
        .entries
        .iter()
        .filter(|e| {
            trailwarden_ledger::note::Checkpoint::parse_text(
                &trailwarden_ledger::note::parse_note(&e.note).unwrap().text,
            )
            .unwrap()
            .size
                <= cut_to
        })
        .collect();
    std::fs::remove_file(dd.checkpoints_log()).unwrap();
    for e in &keep {
        datadir::append_durable(&dd.checkpoints_log(), &datadir::log_entry(&e.note)).unwrap();
    }
    std::fs::write(dd.checkpoint_path(), &notes[2].note).unwrap();
    // Locally everything looks consistent…
    assert_eq!(verify_dir(&d).status, Status::Ok);
    // …but not against a checkpoint kept elsewhere (T7) …
    let r = verify_with(
        &d,
        VerifyOptions {
            trusted_checkpoints: vec![trusted.clone()],
            ..VerifyOptions::default()
        },
    );
    assert_eq!(r.status, Status::Failed);
    let t = r
        .failures
        .iter()
        .find(|f| f.code == "E_TRUNCATED")
        .expect("E_TRUNCATED");
    assert_eq!(t.range, Some([cut_to, fin.checkpoint.size]));
    assert!(codes(&r).contains(&"E_ROLLBACK_OR_FORK".to_string()));
    // …nor against the anchor, and the writer refuses to start behind it (T9).
    let r = verify_with(
        &d,
        VerifyOptions {
            anchor_dir: Some(anchor_dir.clone()),
            ..VerifyOptions::default()
        },
    );
    assert!(
        codes(&r).contains(&"E_TRUNCATED".to_string()),
        "{:?}",
        codes(&r)
    );
    match Ledger::open(&d, mk()) {
        Err(LedgerError::Truncated { have, signed }) => {
            assert_eq!(have, cut_to);
            assert_eq!(signed, fin.checkpoint.size);
        }
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("the writer started behind the anchor"),
    }
    std::fs::remove_dir_all(&d).ok();
    std::fs::remove_dir_all(&anchor_dir).ok();
}

#[test]
fn t08_segment_substitution_and_deletion() {
    // (a) a segment from another ledger for the same range
    let d = tmp("t08a");
    let other = tmp("t08a-other");
    build(&d, 1200);
    build_with(
        &other,
        1200,
        Options {
            origin: Some("other.example/ledger".into()),
            ..opts()
        },
        Timestamp(5),
    );
    let e = &manifest(&d)[1];
    let oe = manifest(&other)
        .into_iter()
        .find(|x| x.first == e.first && x.last == e.last);
    let src = match oe {
        Some(oe) => seg_path(&other, &oe),
        None => {
            // ranges differ: copy any other segment and claim this range by name only
            seg_path(&other, &manifest(&other)[1])
        }
    };
    std::fs::remove_file(seg_path(&d, e)).ok();
    std::fs::copy(src, seg_path(&d, e)).unwrap();
    let r = verify_dir(&d);
    assert_eq!(r.status, Status::Failed);
    assert!(
        codes(&r).contains(&"E_SEGMENT_SUBSTITUTED".to_string()),
        "{:?}",
        codes(&r)
    );
    std::fs::remove_dir_all(&d).ok();
    std::fs::remove_dir_all(&other).ok();

    // (b) an edited copy whose hashes are internally consistent
    let d = tmp("t08b");
    build(&d, 1200);
    let e = &manifest(&d)[2];
    let mut rows = read_rows(&seg_path(&d, e));
    for r in rows.iter_mut() {
        r.raw = b"{\"rewritten\":true}".to_vec();
    }
    write_rows(&seg_path(&d, e), &rows, true, None);
    rehash_manifest(&d, e.first);
    let r = verify_dir(&d);
    let seal_fail = r
        .failures
        .iter()
        .any(|f| f.code == "E_ROOT_MISMATCH" && f.range == Some([e.first, e.last + 1]));
    assert!(seal_fail, "{:?}", r.failures);
    std::fs::remove_dir_all(&d).ok();

    // (c) a whole segment and its manifest line deleted, no tombstone
    let d = tmp("t08c");
    build(&d, 1200);
    let m = manifest(&d);
    let gone = m[1].clone();
    std::fs::remove_file(seg_path(&d, &gone)).unwrap();
    let dd = DataDir::new(&d);
    std::fs::remove_file(dd.manifest_path()).unwrap();
    for e in m.iter().filter(|e| e.first != gone.first) {
        datadir::append_manifest(&dd.manifest_path(), e).unwrap();
    }
    let r = verify_dir(&d);
    assert_eq!(
        first(&r),
        (
            "E_MISSING_SEGMENT".into(),
            None,
            Some([gone.first, gone.last + 1])
        ),
        "{:?}",
        r.failures
    );
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn t10_fork_is_proven_and_refused_by_the_witness() {
    let d = tmp("t10");
    let mut l = wal_ledger(&d, 200);
    let good = l.checkpoint().unwrap();
    l.close("test").unwrap();
    // The attacker holds the key and signs another root for the same size.
    let dd = DataDir::new(&d);
    let signer = dd.load_signer(ORIGIN).unwrap();
    let mut evil = good.checkpoint.clone();
    evil.root[0] ^= 0xff;
    let evil_note = sign_note(&evil.text(), &[&signer]).unwrap();
    datadir::append_durable(&dd.checkpoints_log(), &datadir::log_entry(&evil_note)).unwrap();
    let r = verify_dir(&d);
    let fork = r
        .failures
        .iter()
        .find(|f| f.code == "E_FORK")
        .expect("E_FORK");
    assert!(
        fork.detail.contains(&good.note) && fork.detail.contains(&evil_note),
        "both notes are in the report"
    );
    // The witness cosigns the first view and refuses the second.
    let (wkey, _) = Ed25519Signer::generate("witness.example").unwrap();
    let mut w = Witness::new(wkey);
    w.add_log(ORIGIN, dd.verifier().unwrap());
    let reader = LedgerReader::open(&d, None).unwrap();
    let body = proof::consistency_file(0, &[], &good);
    let cosigned = w.add_checkpoint(&body).unwrap();
    assert!(trailwarden_ledger::note::open_checkpoint(&cosigned, None, &[w.verifier()]).is_ok());
    let evil_body = format!("old {}\n\n{evil_note}", good.checkpoint.size);
    assert_eq!(w.add_checkpoint(&evil_body).unwrap_err().status(), 422);
    assert!(
        matches!(w.add_checkpoint(&body), Err(WitnessError::Conflict(s)) if s == good.checkpoint.size)
    );
    // Growth is still accepted with a consistency proof.
    let latest = reader.latest_checkpoint().unwrap().unwrap();
    let p = proof::consistency(&reader, &good, &latest).unwrap();
    assert!(w
        .add_checkpoint(&proof::consistency_file(good.checkpoint.size, &p, &latest))
        .is_ok());
    // The writer's anchor refuses to publish a second root for a size it holds.
    let anchor_dir = tmp("t10-anchor");
    let mut a = DirAnchor::new(&anchor_dir, DAY).unwrap();
    use trailwarden_ledger::Anchor;
    a.publish(good.checkpoint.size, &good.note).unwrap();
    assert!(
        a.publish(good.checkpoint.size, &good.note).is_ok(),
        "republishing the same note is fine"
    );
    assert!(a.publish(good.checkpoint.size, &evil_note).is_err());
    std::fs::remove_dir_all(&d).ok();
    std::fs::remove_dir_all(&anchor_dir).ok();
}

#[test]
fn t11_note_tampering() {
    let d = tmp("t11");
    build(&d, 300);
    let dd = DataDir::new(&d);
    let original = std::fs::read(dd.checkpoints_log()).unwrap();
    let log = datadir::read_checkpoint_log(&dd.checkpoints_log()).unwrap();
    let victim = log.entries[1].note.clone();
    let (other_key, _) = Ed25519Signer::generate("stranger.example").unwrap();
    let parsed = trailwarden_ledger::note::parse_note(&victim).unwrap();
    let extra_sig = sign_note(&parsed.text, &[&other_key]).unwrap();
    let unknown_line = extra_sig.rsplit_once("\n\n").unwrap().1;
    let root_line = parsed.text.lines().nth(2).unwrap().to_string();
    let mut flipped_root = root_line.clone().into_bytes();
    flipped_root[5] = if flipped_root[5] == b'A' { b'B' } else { b'A' };
    let sig_at = victim.rfind(' ').unwrap() + 10;
    let mut bad_sig = victim.clone().into_bytes();
    bad_sig[sig_at] = if bad_sig[sig_at] == b'A' { b'B' } else { b'A' };
    let size_line = parsed.text.lines().nth(1).unwrap().to_string();
    let cases: Vec<(&str, String, Option<&str>)> = vec![
        (
            "root line changed",
            victim.replacen(&root_line, &String::from_utf8(flipped_root).unwrap(), 1),
            Some("E_BAD_SIGNATURE"),
        ),
        (
            "signature corrupted",
            String::from_utf8(bad_sig).unwrap(),
            Some("E_BAD_SIGNATURE"),
        ),
        ("unknown key added", format!("{victim}{unknown_line}"), None),
        (
            "no blank separator",
            victim.replacen("\n\n", "\n", 1),
            Some("E_MALFORMED_NOTE"),
        ),
        (
            "control character",
            victim.replacen(ORIGIN, &format!("{ORIGIN}\u{1}"), 1),
            Some("E_MALFORMED_NOTE"),
        ),
        (
            "leading zero",
            victim.replacen(&format!("\n{size_line}\n"), &format!("\n0{size_line}\n"), 1),
            Some("E_MALFORMED_NOTE"),
        ),
    ];
    for (name, tampered, want) in cases {
        std::fs::remove_file(dd.checkpoints_log()).unwrap();
        for (i, e) in log.entries.iter().enumerate() {
            let n = if i == 1 { &tampered } else { &e.note };
            datadir::append_durable(&dd.checkpoints_log(), &datadir::log_entry(n)).unwrap();
        }
        let r = verify_dir(&d);
        match want {
            Some(code) => {
                assert_eq!(r.status, Status::Failed, "{name}");
                assert!(
                    codes(&r).contains(&code.to_string()),
                    "{name}: {:?}",
                    r.failures
                );
            }
            None => assert_eq!(r.status, Status::Ok, "{name}: {:?}", r.failures),
        }
    }
    std::fs::write(dd.checkpoints_log(), original).unwrap();
    assert_eq!(verify_dir(&d).status, Status::Ok);
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn t12_proof_files_verify_offline_and_tampered_ones_do_not() {
    let d = tmp("t12");
    build(&d, 1500);
    let reader = LedgerReader::open(&d, None).unwrap();
    let key = reader.verifier.clone();
    let cp = reader.latest_checkpoint().unwrap().unwrap();
    for index in [0u64, 1, 255, 256, 257, 700, cp.checkpoint.size - 1] {
        let (enc, p) = proof::inclusion(&reader, index, &cp).unwrap();
        let text = proof::inclusion_file(&enc, index, &p, &cp);
        let proven = proof::verify_inclusion_file(&text, &key).unwrap();
        assert_eq!(proven.index, index);
        // tampering: a proof hash, the index, the record, the checkpoint key
        let lines: Vec<&str> = text.split('\n').collect();
        if lines.len() > 4 && !p.is_empty() {
            let mut t = lines.clone();
            let mut h = t[3].to_string().into_bytes();
            h[0] = if h[0] == b'A' { b'B' } else { b'A' };
            let hs = String::from_utf8(h).unwrap();
            t[3] = &hs;
            assert!(
                proof::verify_inclusion_file(&t.join("\n"), &key).is_err(),
                "flipped hash {index}"
            );
        }
        let other = text.replacen(
            &format!("index {index}\n"),
            &format!("index {}\n", index ^ 1),
            1,
        );
        assert!(
            proof::verify_inclusion_file(&other, &key).is_err(),
            "changed index {index}"
        );
        let (stranger, _) = Ed25519Signer::generate(ORIGIN).unwrap();
        assert!(proof::verify_inclusion_file(&text, &stranger.verifier()).is_err());
    }
    // consistency between every pair of a few signed sizes
    let cps = reader.checkpoints().unwrap();
    for old in cps.iter().step_by(5) {
        let p = proof::consistency(&reader, old, &cp).unwrap();
        let body = proof::consistency_file(old.checkpoint.size, &p, &cp);
        let ok = proof::verify_consistency_file(&body, Some(&old.note), &key).unwrap();
        assert_eq!(
            (ok.old_size, ok.new_size),
            (old.checkpoint.size, cp.checkpoint.size)
        );
        if !p.is_empty() {
            let bad = body.replacen(&base64_of(&p[0]), &base64_of(&[9u8; 32]), 1);
            assert!(proof::verify_consistency_file(&bad, Some(&old.note), &key).is_err());
        }
    }
    std::fs::remove_dir_all(&d).ok();
}

fn base64_of(h: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(h)
}

#[test]
fn t13_torn_writes_at_every_offset_of_the_last_batch_recover() {
    let d = tmp("t13-torn");
    let (mut l, _) = Ledger::open(&d, unsealed()).unwrap();
    let t0 = Timestamp::now();
    for i in 0..50u64 {
        l.append(&event_record(i, Timestamp(t0.0 + i as i64)))
            .unwrap();
    }
    l.commit().unwrap();
    let acked = l.size();
    l.checkpoint().unwrap();
    // a last batch that never got acknowledged
    for i in 50..53u64 {
        l.append(&event_record(i, Timestamp(t0.0 + i as i64)))
            .unwrap();
    }
    l.commit().unwrap();
    drop(l); // crash: no stop record
    let dd = DataDir::new(&d);
    let wal_path = dd.wal_file(0);
    let full = std::fs::read(&wal_path).unwrap();
    let scan = wal::scan(&full, 0, trailwarden_ledger::merkle::chain_seed(ORIGIN), 0);
    let batch_start = scan.frames[acked as usize].offset as usize;
    let snapshot = tmp("t13-snap");
    copy_dir(&d, &snapshot);
    let mut checked = 0;
    let step = ((full.len() - batch_start) / 120).max(1);
    for cut in (batch_start..full.len()).step_by(step) {
        std::fs::remove_dir_all(&d).unwrap();
        copy_dir(&snapshot, &d);
        std::fs::write(&wal_path, &full[..cut]).unwrap();
        let (l, rec) = Ledger::open(&d, unsealed()).unwrap_or_else(|e| panic!("cut {cut}: {e}"));
        assert!(!rec.clean_shutdown);
        assert!(rec.size >= acked, "cut {cut}: acknowledged records lost");
        drop(l);
        checked += 1;
    }
    // zeros and garbage over the last batch
    for fill in [0u8, 0x5a] {
        std::fs::remove_dir_all(&d).unwrap();
        copy_dir(&snapshot, &d);
        let mut b = full.clone();
        for x in &mut b[batch_start..] {
            *x = fill;
        }
        std::fs::write(&wal_path, &b).unwrap();
        let (l, rec) = Ledger::open(&d, unsealed()).unwrap();
        assert_eq!(rec.size, acked);
        assert!(rec.truncated_bytes > 0);
        l.close("after torn write").unwrap();
        let r = verify_dir(&d);
        assert_eq!(r.status, Status::Warnings, "{:?}", r.failures);
        assert!(
            r.warnings.iter().all(|w| w.code == "W_UNCLEAN_SHUTDOWN"),
            "{:?}",
            r.warnings
        );
        assert!(r.warnings[0].detail.contains("truncated"));
    }
    assert!(checked > 50);
    std::fs::remove_dir_all(&d).ok();
    std::fs::remove_dir_all(&snapshot).ok();
}

#[test]
fn t13_a_crash_between_any_two_steps_of_sealing_recovers() {
    let d = tmp("t13-seal");
    let mut l = wal_ledger(&d, 300);
    let dd = DataDir::new(&d);
    let wal0 = std::fs::read(dd.wal_file(0)).unwrap();
    l.rotate().unwrap();
    l.close("test").unwrap();
    let m = manifest(&d);
    let e = m[0].clone();
    let base = tmp("t13-seal-base");
    copy_dir(&d, &base);
    type Step = fn(&Path, &datadir::ManifestEntry, &[u8]);
    let steps: Vec<(&str, Step)> = vec![
        // manifest written, old WAL not yet deleted
        ("wal not deleted", |d, _, wal0| {
            std::fs::write(DataDir::new(d).wal_file(0), wal0).unwrap()
        }),
        // segment renamed, manifest line missing
        ("no manifest line", |d, _, wal0| {
            std::fs::write(DataDir::new(d).wal_file(0), wal0).unwrap();
            std::fs::remove_file(DataDir::new(d).manifest_path()).unwrap();
        }),
        // only the temp file written
        ("temp file only", |d, e, wal0| {
            let dd = DataDir::new(d);
            std::fs::write(dd.wal_file(0), wal0).unwrap();
            std::fs::remove_file(dd.manifest_path()).unwrap();
            std::fs::rename(
                dd.segment_file(e.first, e.last),
                dd.segment_file(e.first, e.last)
                    .with_extension("parquet.tmp"),
            )
            .unwrap();
            std::fs::remove_file(dd.seal_file(e.first, e.last)).unwrap();
        }),
        // nothing but the rotated WAL
        ("nothing written", |d, e, wal0| {
            let dd = DataDir::new(d);
            std::fs::write(dd.wal_file(0), wal0).unwrap();
            std::fs::remove_file(dd.manifest_path()).unwrap();
            std::fs::remove_file(dd.segment_file(e.first, e.last)).unwrap();
            std::fs::remove_file(dd.seal_file(e.first, e.last)).unwrap();
        }),
    ];
    for (name, step) in steps {
        std::fs::remove_dir_all(&d).unwrap();
        copy_dir(&base, &d);
        step(&d, &e, &wal0);
        let (l, rec) = Ledger::open(&d, unsealed()).unwrap_or_else(|err| panic!("{name}: {err}"));
        assert!(rec.removed_wals + rec.resealed == 1, "{name}: {rec:?}");
        l.close("test").unwrap();
        let r = verify_dir(&d);
        assert_eq!(r.status, Status::Ok, "{name}: {:?}", r.failures);
        assert_eq!(manifest(&d)[0].seal_root, e.seal_root, "{name}");
    }
    std::fs::remove_dir_all(&d).ok();
    std::fs::remove_dir_all(&base).ok();
}

#[test]
fn t13_kill_minus_9_under_load_loses_no_acknowledged_record() {
    let iterations: usize = std::env::var("TW_CRASH_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    crash_harness(iterations);
}

/// Kill a writer process with SIGKILL at random points while it appends; after each kill,
/// recover and check that every acknowledged record is present with its exact bytes.
fn crash_harness(iterations: usize) {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let d = tmp("t13-kill");
    let bin = env!("CARGO_BIN_EXE_trailwarden-ledger-load");
    let seed = 42u64;
    let mut acked: Vec<(u64, u64)> = Vec::new();
    let mut rng = 0x9e3779b97f4a7c15u64;
    let mut kills = 0;
    for it in 0..iterations {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let run_ms = 2 + rng % 40;
        let mut child = Command::new(bin)
            .arg(&d)
            .arg(seed.to_string())
            .arg("65536")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut p = line.split(' ');
                if p.next() == Some("acked") {
                    let a: u64 = p.next().unwrap().parse().unwrap();
                    let b: u64 = p.next().unwrap().parse().unwrap();
                    let _ = tx.send((a, b));
                }
            }
        });
        std::thread::sleep(std::time::Duration::from_millis(run_ms));
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        reader.join().unwrap();
        acked.extend(rx.try_iter());
        if status.code() == Some(76) || status.code() == Some(75) {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("iteration {it}: the writer refused to start or stopped: {err}");
        }
        kills += 1;
        // Recover in-process and check every acknowledged record.
        if it % 10 == 9 || it + 1 == iterations {
            let (l, _) = Ledger::open(
                &d,
                Options {
                    origin: Some("crash.test/ledger".into()),
                    ..Options::default()
                },
            )
            .unwrap_or_else(|e| panic!("iteration {it}: {e}"));
            let size = l.size();
            drop(l);
            let reader = LedgerReader::open(&d, None).unwrap();
            let mut want: std::collections::BTreeSet<u64> =
                acked.iter().flat_map(|(a, b)| *a..=*b).collect();
            assert!(
                want.iter().all(|i| *i < size),
                "iteration {it}: acknowledged records beyond the recovered size {size}"
            );
            reader
                .for_each(0, size, |r| {
                    if want.remove(&r.index) {
                        let pad = ((r.index.wrapping_mul(2654435761) ^ seed) % 900) as usize;
                        let expect = format!("{{\"kind\":\"Event\",\"auditID\":\"load-{}\",\"verb\":\"get\",\"pad\":\"{}\"}}", r.index, "x".repeat(pad));
                        assert_eq!(r.raw, expect.as_bytes(), "record {} changed", r.index);
                    }
                    Ok(true)
                })
                .unwrap();
            if !want.is_empty() {
                let wals = trailwarden_ledger::recover::list_wals(&DataDir::new(&d)).unwrap();
                let m = manifest(&d);
                panic!(
                    "iteration {it}: {} acknowledged records lost, e.g. {:?}; size {size}; wals {wals:?}; manifest tail {:?}; dir {}",
                    want.len(),
                    want.iter().next(),
                    m.iter().rev().take(3).map(|e| (e.first, e.last, e.state.clone())).collect::<Vec<_>>(),
                    d.display()
                );
            }
        }
    }
    let total: u64 = acked.iter().map(|(a, b)| b - a + 1).sum();
    assert!(kills == iterations && total > 0);
    // After all of it, the ledger verifies (warnings: the unclean shutdowns).
    let (l, _) = Ledger::open(
        &d,
        Options {
            origin: Some("crash.test/ledger".into()),
            ..Options::default()
        },
    )
    .unwrap();
    l.close("harness done").unwrap();
    let r = verify_dir(&d);
    assert_ne!(r.status, Status::Failed, "{:?}", r.failures);
    assert!(
        r.warnings
            .iter()
            .all(|w| w.code == "W_UNCLEAN_SHUTDOWN" || w.code == "W_GAP"),
        "{:?}",
        r.warnings
    );
    eprintln!("crash harness: {iterations} kills, {total} acknowledged records all present, {} records, {} segments", r.size, r.checked.segments);
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn t14_mid_wal_corruption_refuses_to_start_and_is_located() {
    let d = tmp("t14");
    let (mut l, _) = Ledger::open(&d, unsealed()).unwrap();
    for i in 0..200u64 {
        l.append(&event_record(i, Timestamp(i as i64))).unwrap();
        if i % 20 == 19 {
            l.commit().unwrap();
        }
    }
    l.close("test").unwrap();
    let dd = DataDir::new(&d);
    let wal_path = dd.wal_file(0);
    let data = std::fs::read(&wal_path).unwrap();
    let scan = wal::scan(&data, 0, trailwarden_ledger::merkle::chain_seed(ORIGIN), 0);
    let k = 57usize;
    let at = scan.frames[k].offset as usize + 40;
    let mut bad = data.clone();
    bad[at] ^= 0x10;
    std::fs::write(&wal_path, &bad).unwrap();
    match Ledger::open(&d, unsealed()) {
        Err(LedgerError::Corrupt(msg)) => {
            assert!(msg.contains(&format!("record {k}")), "{msg}");
            assert!(
                msg.contains("restore"),
                "the message says what to do: {msg}"
            );
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("the writer started on a corrupt WAL"),
    }
    assert_eq!(
        std::fs::read(&wal_path).unwrap(),
        bad,
        "the WAL is untouched"
    );
    let r = verify_dir(&d);
    assert_eq!(r.status, Status::Failed);
    assert_eq!(first(&r).1, Some(k as u64), "{:?}", r.failures);
    std::fs::remove_dir_all(&d).ok();
}

/// A WAL whose fdatasync fails on request.
struct FailingWal {
    file: std::fs::File,
    fail_sync: Arc<std::sync::atomic::AtomicBool>,
    syncs: Arc<std::sync::atomic::AtomicUsize>,
}

impl WalIo for FailingWal {
    fn append(&mut self, buf: &[u8]) -> std::io::Result<()> {
        std::io::Write::write_all(&mut self.file, buf)
    }
    fn sync(&mut self) -> std::io::Result<()> {
        self.syncs.fetch_add(1, Ordering::SeqCst);
        if self.fail_sync.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("injected EIO"));
        }
        self.file.sync_data()
    }
}

#[test]
fn t15_fsync_failure_stops_the_writer_without_acknowledging() {
    let d = tmp("t15");
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let syncs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (f2, s2) = (fail.clone(), syncs.clone());
    let o = Options {
        seal_bytes: 1 << 30,
        wal_io: Some(Box::new(move |file| {
            Box::new(FailingWal {
                file,
                fail_sync: f2.clone(),
                syncs: s2.clone(),
            }) as Box<dyn WalIo>
        })),
        ..opts()
    };
    let (mut l, _) = Ledger::open(&d, o).unwrap();
    for i in 0..10u64 {
        l.append(&event_record(i, Timestamp(i as i64))).unwrap();
    }
    l.commit().unwrap();
    let signed = l.checkpoint().unwrap().checkpoint.size;
    for i in 10..20u64 {
        l.append(&event_record(i, Timestamp(i as i64))).unwrap();
    }
    fail.store(true, Ordering::SeqCst);
    let before = syncs.load(Ordering::SeqCst);
    assert!(matches!(l.commit(), Err(LedgerError::Stopped(m)) if m.contains("fdatasync")));
    assert_eq!(
        l.size(),
        signed,
        "nothing of the failed batch counts as durable"
    );
    // No retry on the same descriptor: everything else fails without touching the file.
    fail.store(false, Ordering::SeqCst);
    assert!(matches!(l.commit(), Err(LedgerError::Stopped(_))));
    assert!(matches!(
        l.append(&event_record(99, Timestamp(0))),
        Err(LedgerError::Stopped(_))
    ));
    assert!(l.checkpoint().is_err());
    assert_eq!(syncs.load(Ordering::SeqCst), before + 1);
    drop(l);
    let cps = LedgerReader::open(&d, None).unwrap().checkpoints().unwrap();
    assert!(
        cps.iter().all(|c| c.checkpoint.size <= signed),
        "no checkpoint covers unsynced records"
    );
    let (l, rec) = Ledger::open(&d, unsealed()).unwrap();
    assert!(!rec.clean_shutdown);
    l.close("after failure").unwrap();
    assert_ne!(verify_dir(&d).status, Status::Failed);
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn t16_retention_prunes_with_tombstones_and_catches_everything_else() {
    let now = Timestamp::now();
    let old = Timestamp(now.0 - 420 * DAY);
    // (a) a legitimate prune
    let d = tmp("t16a");
    build_with(&d, 1200, opts(), old);
    let before = LedgerReader::open(&d, None)
        .unwrap()
        .latest_checkpoint()
        .unwrap()
        .unwrap();
    let (mut l, _) = Ledger::open(&d, opts()).unwrap();
    let m = manifest(&d);
    // keep the newest segments: only those wholly older than the cut
    let cut = Timestamp(old.0 + 400 * 1_000_000);
    let done = retention::prune(
        &mut l,
        &retention::PrunePolicy {
            before: cut,
            policy: "keep 400d".into(),
            approver: "qsa@example.com".into(),
            reason: "test".into(),
            require_archived: false,
        },
    )
    .unwrap();
    l.close("pruned").unwrap();
    assert!(!done.is_empty() && done.len() < m.len(), "{done:?}");
    for (a, b) in &done {
        let e = m.iter().find(|e| e.first == *a).unwrap();
        assert!(!seg_path(&d, e).exists(), "segment {a}-{b} deleted");
    }
    let r = verify_dir(&d);
    assert_eq!(r.status, Status::Ok, "{:?}", r.failures);
    assert_eq!(r.pruned.len(), done.len());
    // old proofs for other ranges and consistency from before still verify
    let reader = LedgerReader::open(&d, None).unwrap();
    let cp = reader.latest_checkpoint().unwrap().unwrap();
    let (enc, p) = proof::inclusion(&reader, 1150, &cp).unwrap();
    assert!(proof::verify_inclusion_file(
        &proof::inclusion_file(&enc, 1150, &p, &cp),
        &reader.verifier
    )
    .is_ok());
    let c = proof::consistency(&reader, &before, &cp).unwrap();
    assert!(proof::verify_consistency_file(
        &proof::consistency_file(before.checkpoint.size, &c, &cp),
        Some(&before.note),
        &reader.verifier
    )
    .is_ok());

    // (b) the same deletion without a tombstone
    let pruned_entry = manifest(&d)
        .into_iter()
        .find(|e| e.state == "pruned")
        .unwrap();
    let dd = DataDir::new(&d);
    let entries = manifest(&d);
    std::fs::remove_file(dd.manifest_path()).unwrap();
    for e in entries {
        let e = if e.first == pruned_entry.first {
            datadir::ManifestEntry {
                tombstone: Some(999_999),
                ..e
            }
        } else {
            e
        };
        datadir::append_manifest(&dd.manifest_path(), &e).unwrap();
    }
    let r = verify_dir(&d);
    assert!(
        r.failures.iter().any(|f| f.code == "E_MISSING_SEGMENT"
            && f.range == Some([pruned_entry.first, pruned_entry.last + 1])),
        "{:?}",
        r.failures
    );
    std::fs::remove_dir_all(&d).ok();

    // (c) a tombstone for a 30-day-old segment
    let d = tmp("t16c");
    build_with(&d, 1200, opts(), Timestamp(now.0 - 30 * DAY));
    let (mut l, _) = Ledger::open(&d, opts()).unwrap();
    let done = retention::prune(
        &mut l,
        &retention::PrunePolicy {
            before: now,
            policy: "too short".into(),
            approver: "x".into(),
            reason: "test".into(),
            require_archived: false,
        },
    )
    .unwrap();
    l.close("pruned").unwrap();
    assert!(
        !done.is_empty(),
        "{:?}",
        manifest(&d)
            .iter()
            .map(|e| (e.first, e.last, e.newest_received))
            .collect::<Vec<_>>()
    );
    let r = verify_dir(&d);
    assert_eq!(r.status, Status::Failed);
    assert!(
        codes(&r).contains(&"E_PREMATURE_PRUNE".to_string()),
        "{:?}",
        r.failures
    );
    std::fs::remove_dir_all(&d).ok();

    // (d) the WORM store refuses early deletion
    let w = tmp("t16d");
    let worm = WormDir::new(&w, 400 * DAY).unwrap();
    worm.put("seg.parquet", b"data", now).unwrap();
    assert!(matches!(
        worm.put("seg.parquet", b"other", now),
        Err(WormError::Exists(_))
    ));
    assert!(matches!(
        worm.delete("seg.parquet", Timestamp(now.0 + DAY)),
        Err(WormError::Retained(..))
    ));
    assert_eq!(worm.get("seg.parquet").unwrap(), b"data");
    assert!(worm
        .delete("seg.parquet", Timestamp(now.0 + 401 * DAY))
        .is_ok());
    std::fs::remove_dir_all(&w).ok();

    // legal hold: prune refuses held ranges
    let d = tmp("t16-hold");
    build_with(&d, 600, opts(), old);
    let (mut l, _) = Ledger::open(&d, opts()).unwrap();
    retention::hold(&mut l, 0, 1_000_000, "litigation").unwrap();
    let done = retention::prune(
        &mut l,
        &retention::PrunePolicy {
            before: now,
            policy: "p".into(),
            approver: "a".into(),
            reason: "r".into(),
            require_archived: false,
        },
    )
    .unwrap();
    assert!(done.is_empty());
    retention::release(&mut l, 0, 1_000_000, "case closed").unwrap();
    let done = retention::prune(
        &mut l,
        &retention::PrunePolicy {
            before: now,
            policy: "p".into(),
            approver: "a".into(),
            reason: "r".into(),
            require_archived: false,
        },
    )
    .unwrap();
    assert!(!done.is_empty(), "released: the old segments go");
    l.close("x").unwrap();
    assert_eq!(verify_dir(&d).status, Status::Ok);
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn t17_pause_shows_as_a_gap_and_a_clean_stop_does_not() {
    let d = tmp("t17");
    let t0 = Timestamp::parse("2026-11-01T00:00:00Z").unwrap();
    let clock = TestClock::at(t0);
    let o = || Options {
        clock: clock.clone(),
        heartbeat_interval_ns: 60 * 1_000_000_000,
        ..opts()
    };
    let (mut l, _) = Ledger::open(&d, o()).unwrap();
    for i in 0..10u64 {
        l.append(&event_record(i, clock.now())).unwrap();
        l.commit().unwrap();
        clock.advance(30 * 1_000_000_000); // heartbeats every 60 s keep the log alive
    }
    // paused: nothing for 10 minutes, no stop record
    clock.advance(600 * 1_000_000_000);
    l.append(&event_record(10, clock.now())).unwrap();
    l.commit().unwrap();
    let cp = l.checkpoint().unwrap();
    let _ = cp;
    // keep the writer "running": no close
    drop(l);
    let now = Timestamp(clock.now().0 + 3600 * 1_000_000_000);
    let r = verify_with(
        &d,
        VerifyOptions {
            now,
            max_staleness_ns: Some(600 * 1_000_000_000),
            ..VerifyOptions::default()
        },
    );
    assert!(
        r.warnings.iter().any(|w| w.code == "W_GAP"),
        "{:?}",
        r.warnings
    );
    assert!(
        codes(&r).contains(&"E_STALE".to_string()),
        "{:?}",
        r.failures
    );
    // a clean stop, an hour off, a clean start: no gap warning for the stopped hour
    let d2 = tmp("t17b");
    let clock2 = TestClock::at(t0);
    let o2 = || Options {
        clock: clock2.clone(),
        ..opts()
    };
    let (mut l, _) = Ledger::open(&d2, o2()).unwrap();
    l.append(&event_record(0, clock2.now())).unwrap();
    l.close("maintenance").unwrap();
    clock2.advance(3600 * 1_000_000_000);
    let (mut l, rec) = Ledger::open(&d2, o2()).unwrap();
    assert!(rec.clean_shutdown);
    l.append(&event_record(1, clock2.now())).unwrap();
    l.close("done").unwrap();
    let r = verify_dir(&d2);
    assert_eq!(r.status, Status::Ok, "{:?} {:?}", r.warnings, r.failures);
    let reader = LedgerReader::open(&d2, None).unwrap();
    let mut kinds = Vec::new();
    reader
        .for_each(0, u64::MAX, |r| {
            if r.kind == RecordKind::Lifecycle {
                let v: serde_json::Value = serde_json::from_slice(&r.raw).unwrap();
                kinds.push(v["lifecycle"].as_str().unwrap().to_string());
            }
            Ok(true)
        })
        .unwrap();
    assert_eq!(
        kinds,
        ["genesis", "start", "stop", "start", "stop"],
        "10.2.1.6 evidence"
    );
    std::fs::remove_dir_all(&d).ok();
    std::fs::remove_dir_all(&d2).ok();
}

#[test]
fn regression_a_flipped_bit_in_the_footer_schema_is_an_error_not_a_panic() {
    // the property test below once hit a bit in the Parquet footer's embedded Arrow schema that
    // makes arrow-ipc panic ("Int type with bit width of 0"); verify crashed instead of failing
    let d = tmp("footer");
    build(&d, 700);
    let seg = seg_path(&d, &manifest(&d)[0]);
    let original = std::fs::read(&seg).unwrap();
    let key = b"ARROW:schema";
    let at = original
        .windows(key.len())
        .rposition(|w| w == key)
        .expect("the footer embeds the Arrow schema");
    let copy = d.join("copy.parquet");
    let end = (at + key.len() + 2000).min(original.len());
    for pos in at + key.len()..end {
        for bit in [0u8, 3, 6] {
            let mut bad = original.clone();
            bad[pos] ^= 1 << bit;
            std::fs::write(&copy, &bad).unwrap();
            // Ok or Err, never a panic
            let _ = segment::read_meta(&copy);
            let _ = segment::for_each_hashed(&copy, |_| Ok(()));
        }
    }
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn property_any_single_byte_change_in_a_segment_or_checkpoint_is_detected() {
    let d = tmp("prop");
    build(&d, 700);
    let dd = DataDir::new(&d);
    let mut targets: Vec<PathBuf> = manifest(&d).iter().map(|e| seg_path(&d, e)).collect();
    targets.push(dd.checkpoints_log());
    targets.push(dd.checkpoint_path());
    for e in manifest(&d) {
        targets.push(dd.seal_file(e.first, e.last));
    }
    let mut rng = 0x2545F4914F6CDD1Du64;
    for trial in 0..40 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let target = &targets[(rng % targets.len() as u64) as usize];
        let original = std::fs::read(target).unwrap();
        let pos = ((rng >> 16) % original.len() as u64) as usize;
        let mut bad = original.clone();
        bad[pos] ^= 1 << ((rng >> 8) % 8);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(target, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        std::fs::write(target, &bad).unwrap();
        let r = verify::verify(&d, VerifyOptions::default());
        let detected = match &r {
            Ok(r) => r.status == Status::Failed,
            Err(_) => true, // could not even read it: also not silently accepted
        };
        assert!(
            detected,
            "trial {trial}: byte {pos} of {} changed and verify said {:?}",
            target.display(),
            r.map(|r| r.status)
        );
        std::fs::write(target, &original).unwrap();
    }
    assert_eq!(verify_dir(&d).status, Status::Ok);
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn identity_and_key_file_protections() {
    let d = tmp("identity");
    build(&d, 10);
    // another identity.json → E_IDENTITY
    let dd = DataDir::new(&d);
    let orig = std::fs::read(dd.identity_path()).unwrap();
    let text = String::from_utf8(orig.clone())
        .unwrap()
        .replace("\"hash\"", "\"hash\" ");
    std::fs::write(dd.identity_path(), text).unwrap();
    assert!(codes(&verify_dir(&d)).contains(&"E_IDENTITY".to_string()));
    std::fs::write(dd.identity_path(), &orig).unwrap();
    // a verifier key from elsewhere that differs
    let (k, _) = Ed25519Signer::generate(ORIGIN).unwrap();
    let r = verify_with(
        &d,
        VerifyOptions {
            trusted_key: Some(k.verifier()),
            ..VerifyOptions::default()
        },
    );
    assert_eq!(r.status, Status::Failed);
    // a world-readable key refuses to start
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dd.key_path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Ledger::open(&d, opts()).err().unwrap().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(dd.key_path(), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    // single writer
    let (l, _) = Ledger::open(&d, opts()).unwrap();
    assert!(matches!(
        Ledger::open(&d, opts()),
        Err(LedgerError::Locked(_))
    ));
    l.close("x").unwrap();
    let _ = NoteVerifier::parse(&dd.verifier().unwrap().vkey()).unwrap();
    let _ = Checkpoint::parse_text;
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn frames_encoded_in_place_match_frames_built_from_a_copy() {
    let chain0 = trailwarden_ledger::merkle::chain_seed(ORIGIN);
    for (i, p) in [payload(1), payload(2), Vec::new(), vec![0xff; 70_000]]
        .iter()
        .enumerate()
    {
        let received = Timestamp(i as i64 * 17);
        let mut enc = Vec::new();
        record::encode(RecordKind::Event, i as u64, received, "src", p, &mut enc).unwrap();
        let leaf = leaf_hash(&enc);
        let chain = chain_next(&chain0, &leaf);
        let mut copied = b"prefix".to_vec();
        wal::encode_frame(9, &enc, br#"{"f":"k8s-audit"}"#, &leaf, &chain, &mut copied);
        let mut in_place = b"prefix".to_vec();
        let (l2, c2) = wal::append_frame(
            9,
            br#"{"f":"k8s-audit"}"#,
            &chain0,
            &mut in_place,
            0,
            |out| record::encode(RecordKind::Event, i as u64, received, "src", p, out),
        )
        .unwrap();
        assert_eq!((l2, c2), (leaf, chain));
        assert_eq!(in_place, copied);
        let f = wal::frame_at(&in_place, 6).unwrap();
        assert_eq!(f.record, &enc[..]);
    }
    // a record that cannot be encoded leaves the buffer as it was
    let mut out = b"kept".to_vec();
    let long_source = "s".repeat(70_000);
    let r = wal::append_frame(0, b"{}", &chain0, &mut out, 0, |o| {
        record::encode(RecordKind::Event, 0, Timestamp(0), &long_source, b"x", o)
    });
    assert!(r.is_err());
    assert_eq!(out, b"kept");
}

/// Rows `rows` of [`payload`]s, as internal records.
fn push_rows(b: &mut SegmentBuilder, rows: std::ops::Range<u64>) {
    for i in rows {
        b.push(
            i,
            RecordKind::Event,
            Timestamp(i as i64),
            "s",
            &payload(i),
            &[0; 32],
            Extracted::Internal,
        );
    }
}

#[test]
fn raw_column_buffers_are_reclaimed_after_sealing() {
    let mut b = SegmentBuilder::with_capacity(4, segment::RawBuffers::with_capacity(4, 1 << 20));
    push_rows(&mut b, 0..4);
    let batch = b.finish().unwrap();
    let kept = batch.clone();
    // still shared: nothing to take back
    assert!(segment::RawBuffers::reclaim(batch).is_none());
    let raw = segment::RawBuffers::reclaim(kept).expect("sole owner gets the buffers back");
    assert!(raw.capacity() >= 1 << 20);
}

#[test]
fn a_segment_hashed_while_written_has_the_hash_of_its_file() {
    let d = tmp("hashed");
    std::fs::create_dir_all(&d).unwrap();
    let mut b = SegmentBuilder::new();
    push_rows(&mut b, 0..3000);
    let meta = SegmentMeta {
        origin: ORIGIN.into(),
        first: 0,
        last: 2999,
        seal_root: "x".into(),
    };
    let p = d.join("s.parquet");
    let (len, sha) = segment::write_hashed(&p, &meta, &[b.finish().unwrap()], 1).unwrap();
    let bytes = std::fs::read(&p).unwrap();
    assert_eq!(len, bytes.len() as u64);
    assert_eq!(sha, trailwarden_model::sha256_hex(&bytes));
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn background_sealing_with_reused_buffers_keeps_every_payload() {
    // Many small segments sealed on the background thread: each new WAL reuses the raw column
    // of a sealed one, so stale bytes from an earlier segment would show up here.
    let d = tmp("reuse");
    let o = Options {
        seal_bytes: 8 << 10,
        background_seal: true,
        ..opts()
    };
    let n = 3_000u64;
    let (mut l, _) = Ledger::open(&d, o).unwrap();
    let mut idx = Vec::new();
    for i in 0..n {
        idx.push(l.append(&event_record(i, Timestamp(i as i64))).unwrap());
        if i % 7 == 6 {
            l.commit().unwrap();
        }
    }
    let cp = l.close("test").unwrap();
    let r = verify_dir(&d);
    assert_eq!(r.status, Status::Ok, "{r:#?}");
    assert!(r.checked.segments > 50, "{:?}", r.checked);
    let reader = LedgerReader::open(&d, None).unwrap();
    let mut seen = 0u64;
    reader
        .for_each(0, cp.checkpoint.size, |rec| {
            if rec.kind == RecordKind::Event {
                assert_eq!(rec.raw, payload(seen), "record {}", rec.index);
                assert_eq!(rec.index, idx[seen as usize]);
                seen += 1;
            }
            Ok(true)
        })
        .unwrap();
    assert_eq!(seen, n);
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn a_clean_stop_seals_a_large_wal_tail_and_leaves_a_small_one() {
    let wal_bytes = |d: &Path| -> u64 {
        std::fs::read_dir(d.join("wal"))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    };
    for (limit, sealed) in [(4096u64, true), (1 << 30, false)] {
        let d = tmp(&format!("close-seal-{sealed}"));
        let o = Options {
            seal_bytes: 1 << 30,
            seal_on_close_bytes: limit,
            ..opts()
        };
        let cp = build_with(&d, 300, o, Timestamp(0));
        assert_eq!(wal_bytes(&d) == 0, sealed, "limit {limit}");
        let r = verify_dir(&d);
        assert_eq!(r.status, Status::Ok, "{r:#?}");
        assert_eq!(r.size, cp.checkpoint.size);
        assert_eq!(r.checked.segments, u64::from(sealed));
        std::fs::remove_dir_all(&d).ok();
    }
}

/// Rotate the file key of the ledger at `d` the way `trailwarden key rotate` does.
fn rotate_file_key(l: &mut Ledger, d: &Path) -> trailwarden_ledger::keys::KeyLogEntry {
    let dd = DataDir::new(d);
    let next = dd.create_next_key(ORIGIN).unwrap();
    let e = l.rotate_key(Arc::new(next)).unwrap();
    dd.promote_next_key(ORIGIN).unwrap();
    e
}

fn signature_lines(note: &str) -> usize {
    note.lines().filter(|l| l.starts_with("— ")).count()
}

#[test]
fn key_rotation_is_recorded_and_checked_and_the_old_key_retires() {
    let d = tmp("rotate");
    let (mut l, _) = Ledger::open(&d, opts()).unwrap();
    let old = l.verifier();
    for i in 0..300u64 {
        l.append(&event_record(i, Timestamp::now())).unwrap();
    }
    let e = rotate_file_key(&mut l, &d);
    let new = l.verifier();
    assert_ne!(old, new);
    assert_eq!(e.effective_from_size, e.index + 1);
    for i in 300..600u64 {
        l.append(&event_record(i, Timestamp::now())).unwrap();
    }
    // during the overlap both keys sign
    let overlap = l.checkpoint().unwrap();
    assert_eq!(signature_lines(&overlap.note), 2);
    l.close("test").unwrap();
    let r = verify_dir(&d);
    assert_eq!(r.status, Status::Ok, "{r:#?}");
    // an assessor holding either key can verify
    for k in [&old, &new] {
        let r = verify_with(
            &d,
            VerifyOptions {
                trusted_key: Some(k.clone()),
                ..VerifyOptions::default()
            },
        );
        assert_eq!(r.status, Status::Ok, "{r:#?}");
    }
    // the keys survive a restart; retiring the old one leaves only the new signature
    let (mut l, _) = Ledger::open(&d, opts()).unwrap();
    assert_eq!(l.verifier(), new);
    assert_eq!(l.retire_previous_key().unwrap(), Some(old.vkey()));
    DataDir::new(&d).remove_previous_key().unwrap();
    l.append(&event_record(600, Timestamp::now())).unwrap();
    let after = l.checkpoint().unwrap();
    assert_eq!(signature_lines(&after.note), 1);
    l.close("test").unwrap();
    assert_eq!(verify_dir(&d).status, Status::Ok);
    // a proof at the new checkpoint verifies with the new key only
    let reader = LedgerReader::open(&d, None).unwrap();
    let cp = reader.latest_checkpoint().unwrap().unwrap();
    let (enc, p) = proof::inclusion(&reader, 5, &cp).unwrap();
    let file = proof::inclusion_file(&enc, 5, &p, &cp);
    assert!(proof::verify_inclusion_file(&file, &new).is_ok());
    assert!(proof::verify_inclusion_file(&file, &old).is_err());
    // the new key may not sign sizes before its rotation: a checkpoint it signed for an earlier
    // size (another root for history) is refused
    let dd = DataDir::new(&d);
    let new_signer = dd.load_signer(ORIGIN).unwrap();
    let early = Checkpoint {
        origin: ORIGIN.into(),
        size: e.effective_from_size - 1,
        root: [9; 32],
        extensions: vec![],
    };
    let note = sign_note(&early.text(), &[&new_signer as &dyn NoteSigner]).unwrap();
    datadir::append_durable(&dd.checkpoints_log(), &datadir::log_entry(&note)).unwrap();
    let r = verify_dir(&d);
    assert_eq!(r.status, Status::Failed);
    let bad = r
        .failures
        .iter()
        .find(|f| f.code == "E_BAD_SIGNATURE")
        .unwrap();
    assert!(bad.detail.contains("may sign only from size"), "{bad:?}");
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn a_key_added_to_keys_log_without_its_rotation_record_is_caught() {
    let d = tmp("rotate-forged");
    build(&d, 300);
    let dd = DataDir::new(&d);
    // An attacker with write access but not the key: adds their key to keys.log and signs a
    // checkpoint of a rewritten tree with it.
    let (evil, _) = Ed25519Signer::generate(ORIGIN).unwrap();
    let (id, _) = dd.read_identity().unwrap();
    let reader = LedgerReader::open(&d, None).unwrap();
    let size = reader.latest_checkpoint().unwrap().unwrap().checkpoint.size;
    let entry = trailwarden_ledger::keys::KeyLogEntry {
        index: 10,
        old_vkey: id.vkey.clone(),
        new_vkey: evil.verifier().vkey(),
        effective_from_size: 11,
    };
    trailwarden_ledger::keys::append_key_log(&dd.key_log_path(), &entry).unwrap();
    let forged = Checkpoint {
        origin: ORIGIN.into(),
        size,
        root: [7; 32],
        extensions: vec![],
    };
    let note = sign_note(&forged.text(), &[&evil as &dyn NoteSigner]).unwrap();
    datadir::append_durable(&dd.checkpoints_log(), &datadir::log_entry(&note)).unwrap();
    let r = verify_dir(&d);
    assert_eq!(r.status, Status::Failed);
    let c = codes(&r);
    assert!(c.contains(&"E_IDENTITY".to_string()), "{c:?}");
    // and the writer refuses to run with a key that is not the current one
    let err = Ledger::open(&d, opts()).err().unwrap().to_string();
    assert!(err.contains("not the ledger's current key"), "{err}");
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn a_rotation_interrupted_at_any_step_recovers() {
    // 1: next.key written, nothing recorded -> abandoned at the next open
    let d = tmp("rotate-crash1");
    build(&d, 50);
    let dd = DataDir::new(&d);
    let before = dd.verifier().unwrap();
    dd.create_next_key(ORIGIN).unwrap();
    let (l, _) = Ledger::open(&d, opts()).unwrap();
    assert_eq!(l.verifier(), before);
    assert!(!dd.next_key_path().exists());
    l.close("test").unwrap();
    assert_eq!(verify_dir(&d).status, Status::Ok);
    std::fs::remove_dir_all(&d).ok();

    // 2: recorded and logged, not promoted -> promoted at the next open
    let d = tmp("rotate-crash2");
    build(&d, 50);
    let dd = DataDir::new(&d);
    let (mut l, _) = Ledger::open(&d, opts()).unwrap();
    let next = dd.create_next_key(ORIGIN).unwrap();
    let want = next.verifier();
    l.rotate_key(Arc::new(next)).unwrap();
    drop(l); // crash before promote_next_key
    let (l, rec) = Ledger::open(&d, opts()).unwrap();
    assert!(!rec.clean_shutdown);
    assert_eq!(l.verifier(), want);
    assert!(dd.previous_key_path().exists());
    l.close("test").unwrap();
    let r = verify_dir(&d);
    assert_ne!(r.status, Status::Failed, "{r:#?}");
    std::fs::remove_dir_all(&d).ok();

    // 3: recorded, not logged (keys.log append lost) -> the announced key is unused
    let d = tmp("rotate-crash3");
    build(&d, 50);
    let dd = DataDir::new(&d);
    let (mut l, _) = Ledger::open(&d, opts()).unwrap();
    let next = dd.create_next_key(ORIGIN).unwrap();
    l.rotate_key(Arc::new(next)).unwrap();
    drop(l);
    std::fs::remove_file(dd.key_log_path()).unwrap();
    // the key files still say "rotating": the writer abandons next.key and keeps the old key
    let (l, _) = Ledger::open(&d, opts()).unwrap();
    l.close("test").unwrap();
    let r = verify_dir(&d);
    assert_ne!(r.status, Status::Failed, "{r:#?}");
    assert!(
        r.warnings.iter().any(|w| w.code == "W_KEY_NOT_USED"),
        "{r:#?}"
    );
    std::fs::remove_dir_all(&d).ok();
}

/// Regression (t13 flake): a genesis killed after identity.json was written and before its
/// record was durable left a ledger whose record 0 was the first event ("record 0 is not the
/// genesis record of this identity.json"). Opening it writes the genesis record first.
#[test]
fn a_genesis_cut_after_identity_json_gets_its_genesis_record_on_open() {
    let d = tmp("genesis-cut");
    DataDir::new(&d)
        .create(ORIGIN, Timestamp(1))
        .expect("identity and keys, no record");
    let (mut l, rec) = Ledger::open(&d, opts()).unwrap();
    assert!(rec.created, "the genesis record was written on open");
    let i = l.append(&event_record(1, Timestamp(2))).unwrap();
    assert!(i > 0, "the first event comes after the genesis record");
    l.commit().unwrap();
    l.close("test").unwrap();
    let r = verify_dir(&d);
    assert_eq!(r.status, Status::Ok, "{:?}", r.failures);
}

/// A cluster writer resumes from the ledger's own stream position: it survives a crash (from
/// the WAL frames' metadata), a seal that moved every record out of the WAL (from the
/// manifest), internal records appended after it, and a reopen after a clean close.
#[test]
fn stream_position_survives_crash_seal_and_restart() {
    use trailwarden_ledger::StreamPos;
    let dir = tmp("stream-pos");
    let t0 = Timestamp(1_700_000_000_000_000_000);
    {
        let (mut l, _) = Ledger::open(&dir, opts()).unwrap();
        assert_eq!(l.stream_position(), None);
        for i in 0..5u64 {
            l.append_from(&event_record(i, t0), Some(StreamPos { seq: 10 + i, k: 0 }))
                .unwrap();
        }
        // an alert the writer raised in between carries no position
        l.append_internal(RecordKind::Alert, &serde_json::json!({"x": 1}))
            .unwrap();
        l.commit().unwrap();
        assert_eq!(l.stream_position(), Some(StreamPos { seq: 14, k: 0 }));
        // a crash: dropped without close
    }
    let (mut l, _) = Ledger::open(&dir, opts()).unwrap();
    assert_eq!(l.stream_position(), Some(StreamPos { seq: 14, k: 0 }));
    // enough records to seal several segments (48 KiB each): the WAL then holds none of them
    let mut last = StreamPos { seq: 14, k: 0 };
    for i in 0..400u64 {
        last = StreamPos {
            seq: 100 + i / 4,
            k: (i % 4) as u32,
        };
        l.append_from(&event_record(i, t0), Some(last)).unwrap();
        if i % 50 == 49 {
            l.commit().unwrap();
        }
    }
    l.commit().unwrap();
    l.close("test").unwrap();
    let m = datadir::read_manifest(&DataDir::new(&dir).manifest_path()).unwrap();
    assert!(m.len() >= 2, "segments were sealed");
    assert!(m.last().unwrap().stream.is_some(), "the manifest keeps it");
    let (l, _) = Ledger::open(&dir, opts()).unwrap();
    assert_eq!(l.stream_position(), Some(last));
    // the newest seal's position is at most the ledger's (the WAL tail holds the rest)
    assert!(m.last().unwrap().stream.unwrap() <= last);
    drop(l);
    let r = verify::verify(&dir, VerifyOptions::default()).unwrap();
    assert_ne!(r.status, Status::Failed, "{r:?}");
}

/// Regression (found by `scripts/soak`): a whole-ledger verification running beside a live
/// writer reported `E_MISSING_SEGMENT` and `E_CHAIN` when a WAL it had listed was sealed (its
/// segment appended to the manifest, the WAL removed) before it read it. Verification now looks
/// again and checks the new segment; the writer here seals every ~16 KiB in the background, so
/// seals land during almost every verification.
#[test]
fn verify_regression_wal_sealed_while_verifying_is_not_a_gap() {
    let dir = tmp("verify-live-seal");
    let o = Options {
        seal_bytes: 16 << 10,
        background_seal: true,
        ..opts()
    };
    let (mut l, _) = Ledger::open(&dir, o).unwrap();
    for i in 0..2_000 {
        l.append(&event_record(i, Timestamp(i as i64))).unwrap();
    }
    l.commit().unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut i = 2_000u64;
            while !stop.load(Ordering::SeqCst) {
                for _ in 0..20 {
                    l.append(&event_record(i, Timestamp(i as i64))).unwrap();
                    i += 1;
                }
                l.commit().unwrap();
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            l.close("test").unwrap();
            i
        })
    };
    let mut bad = Vec::new();
    for _ in 0..40 {
        let r = verify_dir(&dir);
        if !r.failures.is_empty() {
            bad.push(format!("{:?}", r.failures.first()));
        }
    }
    stop.store(true, Ordering::SeqCst);
    let n = writer.join().unwrap();
    assert!(
        bad.is_empty(),
        "{} of 40 verifications failed beside the writer, e.g. {:?}",
        bad.len(),
        &bad[..bad.len().min(3)]
    );
    let r = verify_dir(&dir);
    assert!(r.failures.is_empty(), "{:?}", r.failures);
    assert!(r.checked.records >= n, "every record checked at rest");
    assert!(
        manifest(&dir).len() > 5,
        "the writer sealed segments during the run"
    );
}

/// Reading a sparse set of records (what correlation replay after a restart wants) gives the
/// same records as reading the range and filtering, from sealed segments (only those rows
/// read) and from the WAL, and nothing for indexes past the end.
#[test]
fn for_each_of_reads_only_the_wanted_records_and_equals_a_filtered_scan() {
    let d = tmp("for-each-of");
    build(&d, 2500);
    let sealed = manifest(&d).iter().filter(|e| e.state == "sealed").count();
    assert!(sealed >= 2, "{sealed} sealed segments");
    // and a WAL tail after the sealed segments
    let (mut l, _) = Ledger::open(&d, unsealed()).unwrap();
    for i in 2500..2510 {
        l.append(&event_record(i, Timestamp(i as i64))).unwrap();
    }
    l.commit().unwrap();
    let reader = LedgerReader::open(&d, None).unwrap();
    let size = reader.size().unwrap();
    let want: std::collections::BTreeSet<u64> = [
        0,
        1,
        2,
        150,
        151,
        999,
        1000,
        1001,
        1777,
        2400,
        size - 3,
        size - 1,
        size + 5,
    ]
    .into_iter()
    .collect();
    let key = |r: &trailwarden_ledger::reader::StoredRecord| (r.index, r.raw.clone(), r.leaf);
    let mut got = Vec::new();
    reader
        .for_each_of(&want, |r| {
            got.push(key(&r));
            Ok(true)
        })
        .unwrap();
    let mut all = Vec::new();
    reader
        .for_each(0, u64::MAX, |r| {
            if want.contains(&r.index) {
                all.push(key(&r));
            }
            Ok(true)
        })
        .unwrap();
    assert_eq!(got.len(), want.len() - 1, "all but the one past the end");
    assert_eq!(got, all);
    drop(l);
    std::fs::remove_dir_all(&d).ok();
}

/// Every file under `d` with its content.
fn snapshot(d: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut todo = vec![d.to_path_buf()];
    while let Some(p) = todo.pop() {
        for e in std::fs::read_dir(&p).unwrap().flatten() {
            let path = e.path();
            if path.is_dir() {
                todo.push(path);
            } else if !path.ends_with("LOCK") {
                out.insert(path.clone(), std::fs::read(&path).unwrap_or_default());
            }
        }
    }
    out
}

/// Regression (cluster failover flake): a writer paused after its own lease check but before a
/// checkpoint's files were written wrote them when it ran again. The ledger now asks its guard
/// right before each write: whichever ask is the first refused — before the WAL append, any file
/// of a checkpoint, a seal's segment, note, manifest line or WAL removal — not one byte changes
/// after it, and the writer stays stopped.
#[test]
fn regression_a_deposed_writer_writes_nothing_after_its_guard_refuses() {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Mutex;
    let mut asks_seen = 0;
    for budget in 0.. {
        let d = tmp(&format!("guard-{budget}"));
        let mut l = wal_ledger(&d, 20);
        let left = Arc::new(AtomicUsize::new(budget));
        let at_refusal = Arc::new(Mutex::new(None));
        let asks = Arc::new(AtomicUsize::new(0));
        let (lf, snap, dir, n) = (left.clone(), at_refusal.clone(), d.clone(), asks.clone());
        l.set_guard(Some(Arc::new(move || {
            n.fetch_add(1, Ordering::SeqCst);
            if lf.load(Ordering::SeqCst) == 0 {
                let mut g = snap.lock().unwrap();
                if g.is_none() {
                    *g = Some(snapshot(&dir));
                }
                return Err("the lease lapsed".into());
            }
            lf.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        })));
        // a commit, a checkpoint, a seal (WAL rotation) and a clean close
        let r = (|| {
            for i in 20..40u64 {
                l.append(&event_record(i, Timestamp(i as i64)))?;
            }
            l.commit()?;
            l.checkpoint()?;
            l.rotate()?;
            l.wait_for_seals()
        })();
        let (r, l) = match r {
            Ok(()) => (l.close("done").map(|_| ()), None),
            Err(e) => (Err(e), Some(l)),
        };
        let refused = at_refusal.lock().unwrap().clone();
        let Some(before) = refused else {
            // the budget outlasted every write: each was asked about on its own — commit 1
            // (WAL append), checkpoint 5 (log, temp file, rename, anchor, tiles), rotation 1
            // (new WAL), seal 6 (segment, note's temp file and rename, segment rename,
            // manifest, WAL removal), close 7 (stop record, checkpoint, tiles)
            r.unwrap();
            assert_eq!(asks.load(Ordering::SeqCst), 20, "asked before each write");
            assert!(budget >= asks_seen);
            break;
        };
        asks_seen = budget + 1;
        match r {
            Err(LedgerError::Stopped(m)) => assert!(m.contains("fenced"), "{m}"),
            other => panic!("budget {budget}: {other:?}"),
        }
        if let Some(mut l) = l {
            assert!(l.commit().is_err() || l.pending_records() == 0);
            assert!(
                matches!(l.checkpoint(), Err(LedgerError::Stopped(_))),
                "budget {budget}: a refused writer stays stopped"
            );
        }
        assert_eq!(
            snapshot(&d),
            before,
            "budget {budget}: the data directory changed after the guard refused"
        );
        std::fs::remove_dir_all(&d).ok();
        assert!(budget < 100, "the guard never let the sequence finish");
    }
}

/// Each WAL's raw column gets a buffer with room for a whole segment, reused once its segment
/// is sealed. A rotation that came while the previous seal was still running allocated a
/// third buffer, and the spare pool then kept it for good: in `serve`, every slow seal added
/// ~70 MiB that never went back (BENCHMARKS.md, "The steady hour"). Here every seal is slow
/// (the guard sleeps on the sealer thread), and the writer still makes only two buffers.
#[test]
fn regression_a_slow_seal_does_not_make_the_writer_keep_a_third_raw_buffer() {
    let d = tmp("slow-seal");
    let (mut l, _) = Ledger::open(
        &d,
        Options {
            background_seal: true,
            ..unsealed()
        },
    )
    .unwrap();
    let slow = Arc::new(AtomicI64::new(0));
    let seen = slow.clone();
    l.set_guard(Some(Arc::new(move || {
        if std::thread::current().name() == Some("trailwarden-sealer") {
            seen.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(30));
        }
        Ok(())
    })));
    for round in 0..6u64 {
        for i in 0..50 {
            let n = round * 50 + i;
            l.append(&event_record(n, Timestamp(n as i64))).unwrap();
        }
        l.rotate().unwrap();
    }
    l.wait_for_seals().unwrap();
    assert!(
        slow.load(Ordering::SeqCst) >= 6,
        "the sealer ran under the slow guard"
    );
    assert_eq!(
        l.raw_buffers_allocated(),
        2,
        "one buffer filling and one sealing, then reused"
    );
    // every event is there and the ledger verifies
    l.close("done").unwrap();
    let report = verify_with(&d, VerifyOptions::default());
    assert_eq!(report.status, Status::Ok, "{report:?}");
}
