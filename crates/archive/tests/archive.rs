//! The archive tier against a local-directory store (fast), and against the real servers
//! (moto for S3 with Object Lock, Azurite for Azure Blob) when they are installed: see
//! `servers` below.
#![allow(clippy::unwrap_used)] // test harness: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use trailwarden_archive::{Archive, ArchiveConfig, ArchiveError};
use trailwarden_ledger::datadir::{self, DataDir, ManifestEntry};
use trailwarden_ledger::verify::{self, Status, VerifyOptions};
use trailwarden_ledger::{retention, Ledger, Options};
use trailwarden_model::{Body, Event, Format, Record, Timestamp};

mod servers;

const ORIGIN: &str = "test.example/archive";
const DAY: i64 = 86_400 * 1_000_000_000;

/// A fresh scratch directory.
pub fn tmp(name: &str) -> PathBuf {
    let d = trailwarden_model::scratch::dir("tw-archive", name);
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Writer options: small segments, sealed inline.
pub fn opts() -> Options {
    Options {
        origin: Some(ORIGIN.into()),
        seal_bytes: 48 << 10,
        background_seal: false,
        checkpoint_interval_ns: i64::MAX,
        ..Options::default()
    }
}

fn record(i: u64, received: Timestamp) -> Record {
    let mut ev = Event::new(Format::K8sAudit);
    ev.action = Some("get".into());
    let pad = (i * 7919 % 200) as usize;
    Record {
        source: "file:test.jsonl".into(),
        received,
        raw: format!(
            "{{\"kind\":\"Event\",\"auditID\":\"a-{i}\",\"verb\":\"get\",\"pad\":\"{}\"}}",
            "p".repeat(pad)
        )
        .into_bytes(),
        location: None,
        body: Body::Event(Box::new(ev)),
    }
}

/// A ledger of `n` events received from `base` on, a millisecond apart, sealed in ~48 KiB
/// segments; closed.
pub fn build(dir: &Path, n: u64, base: Timestamp) {
    let (mut l, _) = Ledger::open(dir, opts()).unwrap();
    for i in 0..n {
        l.append(&record(i, Timestamp(base.0 + i as i64 * 1_000_000)))
            .unwrap();
        if i % 100 == 99 {
            l.commit().unwrap();
            l.checkpoint().unwrap();
        }
    }
    l.close("test").unwrap();
}

/// The data directory's manifest.
pub fn manifest(d: &Path) -> Vec<ManifestEntry> {
    datadir::read_manifest(&DataDir::new(d).manifest_path()).unwrap()
}

fn file_archive(root: &Path) -> Archive {
    Archive::open(&ArchiveConfig::at(format!("file://{}", root.display()))).unwrap()
}

/// A runtime for the async archive calls.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Verify the archive alone, as `verify --archive` does.
pub fn verify_archive(rt: &tokio::runtime::Runtime, a: &Archive, scratch: &Path) -> verify::Report {
    let _ = std::fs::remove_dir_all(scratch);
    rt.block_on(a.materialize(scratch)).unwrap();
    let r = verify::verify(scratch, VerifyOptions::default()).unwrap();
    let _ = std::fs::remove_dir_all(scratch);
    r
}

fn codes(r: &verify::Report) -> Vec<(String, Option<String>)> {
    r.failures
        .iter()
        .map(|f| (f.code.clone(), f.file.clone()))
        .collect()
}

#[test]
fn sync_archives_every_sealed_segment_and_the_archive_alone_verifies() {
    let d = tmp("sync");
    let root = tmp("sync-store");
    build(&d, 1500, Timestamp(Timestamp::now().0 - 30 * DAY));
    let sealed = manifest(&d).len();
    assert!(sealed >= 3, "the test needs several segments, got {sealed}");
    let a = file_archive(&root);
    let rt = rt();
    let r = rt.block_on(a.sync(&DataDir::new(&d))).unwrap();
    assert!(r.failures.is_empty() && r.conflicts.is_empty(), "{r:?}");
    assert_eq!(r.uploaded.len(), sealed);
    assert!(manifest(&d).iter().all(|e| e.archived.is_some()));
    let end = manifest(&d).last().unwrap().last + 1;
    assert_eq!(r.archived_end, end);
    assert!(r.log_bytes > 0);
    // create-only and idempotent: a second pass uploads nothing and changes nothing
    let r2 = rt.block_on(a.sync(&DataDir::new(&d))).unwrap();
    assert!(
        r2.uploaded.is_empty() && r2.failures.is_empty() && r2.conflicts.is_empty(),
        "{r2:?}"
    );
    // the archive's objects are byte-identical to the local ones
    for e in manifest(&d) {
        assert_eq!(
            std::fs::read(root.join("seg").join(&e.file)).unwrap(),
            std::fs::read(d.join("seg").join(&e.file)).unwrap()
        );
    }
    // the archive alone verifies, up to what it holds
    let rep = verify_archive(&rt, &a, &tmp("sync-verify"));
    assert_eq!(
        rep.status,
        Status::Ok,
        "{:?} {:?}",
        rep.failures,
        rep.warnings
    );
    assert_eq!(rep.checked.records, end);
    assert_eq!(rep.checked.segments as usize, sealed);
    let _ = std::fs::remove_dir_all(&d);
    let _ = std::fs::remove_dir_all(&root);
}

fn corrupt(p: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644));
    let mut b = std::fs::read(p).unwrap();
    f(&mut b);
    std::fs::write(p, b).unwrap();
}

#[test]
fn a_tampered_archive_fails_verify_naming_the_object() {
    let d = tmp("tamper");
    build(&d, 1500, Timestamp(Timestamp::now().0 - 30 * DAY));
    let m = manifest(&d);
    let rt = rt();
    let fresh = |name: &str| {
        let root = tmp(name);
        let a = file_archive(&root);
        let r = rt.block_on(a.sync(&DataDir::new(&d))).unwrap();
        assert!(r.failures.is_empty(), "{r:?}");
        (root, a)
    };
    // one byte
    let (root, a) = fresh("tamper-byte");
    corrupt(&root.join("seg").join(&m[1].file), |b| {
        let i = b.len() / 2;
        b[i] ^= 1;
    });
    let rep = verify_archive(&rt, &a, &tmp("tamper-byte-v"));
    assert_eq!(rep.status, Status::Failed);
    assert!(
        codes(&rep)
            .iter()
            .any(|(c, f)| c == "E_SEGMENT_HASH" && f.as_deref() == Some(m[1].file.as_str())),
        "{:?}",
        rep.failures
    );
    // one deleted
    let (root, a) = fresh("tamper-deleted");
    std::fs::remove_file(root.join("seg").join(&m[2].file)).unwrap();
    let rep = verify_archive(&rt, &a, &tmp("tamper-deleted-v"));
    assert_eq!(rep.status, Status::Failed);
    assert!(
        codes(&rep)
            .iter()
            .any(|(c, f)| c == "E_MISSING_SEGMENT" && f.as_deref() == Some(m[2].file.as_str())),
        "{:?}",
        rep.failures
    );
    // two swapped (each a valid segment of this ledger, in the other's place)
    let (root, a) = fresh("tamper-swapped");
    let (p0, p1) = (
        root.join("seg").join(&m[0].file),
        root.join("seg").join(&m[1].file),
    );
    let tmpf = root.join("swap");
    std::fs::rename(&p0, &tmpf).unwrap();
    std::fs::rename(&p1, &p0).unwrap();
    std::fs::rename(&tmpf, &p1).unwrap();
    let rep = verify_archive(&rt, &a, &tmp("tamper-swapped-v"));
    assert_eq!(rep.status, Status::Failed);
    for e in &m[..2] {
        assert!(
            codes(&rep).iter().any(|(c, f)| (c == "E_SEGMENT_HASH"
                || c == "E_SEGMENT_SUBSTITUTED")
                && f.as_deref() == Some(e.file.as_str())),
            "{} not named: {:?}",
            e.file,
            rep.failures
        );
    }
    // a manifest object deleted as well as its segment: the gap is still found
    let (root, a) = fresh("tamper-hidden");
    std::fs::remove_file(root.join("seg").join(&m[1].file)).unwrap();
    std::fs::remove_file(
        root.join("manifest")
            .join(format!("{:020}-{:020}.json", m[1].first, m[1].last)),
    )
    .unwrap();
    let rep = verify_archive(&rt, &a, &tmp("tamper-hidden-v"));
    assert_eq!(rep.status, Status::Failed, "{:?}", rep.warnings);
    // the newest segment and its manifest object gone: the archived checkpoints still sign it
    let (root, a) = fresh("tamper-tail");
    let last = m.last().unwrap();
    std::fs::remove_file(root.join("seg").join(&last.file)).unwrap();
    std::fs::remove_file(
        root.join("manifest")
            .join(format!("{:020}-{:020}.json", last.first, last.last)),
    )
    .unwrap();
    let rep = verify_archive(&rt, &a, &tmp("tamper-tail-v"));
    assert!(
        codes(&rep).iter().any(|(c, _)| c == "E_TRUNCATED"),
        "{:?}",
        rep.failures
    );
    for n in [
        "tamper-byte",
        "tamper-deleted",
        "tamper-swapped",
        "tamper-hidden",
        "tamper-tail",
    ] {
        let _ = std::fs::remove_dir_all(tmp(n));
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn an_object_already_there_with_other_bytes_is_an_incident_and_is_not_overwritten() {
    let d = tmp("conflict");
    let root = tmp("conflict-store");
    build(&d, 800, Timestamp(Timestamp::now().0 - 30 * DAY));
    let m = manifest(&d);
    std::fs::create_dir_all(root.join("seg")).unwrap();
    std::fs::write(
        root.join("seg").join(&m[0].file),
        b"not this ledger's segment",
    )
    .unwrap();
    let rt = rt();
    let a = file_archive(&root);
    let r = rt.block_on(a.sync(&DataDir::new(&d))).unwrap();
    assert_eq!(r.conflicts.len(), 1, "{r:?}");
    assert!(
        r.conflicts[0].contains(&m[0].file) && r.conflicts[0].contains("other bytes"),
        "{r:?}"
    );
    assert_eq!(
        std::fs::read(root.join("seg").join(&m[0].file)).unwrap(),
        b"not this ledger's segment"
    );
    // the segment is not archived, so nothing past it counts as archived
    assert!(manifest(&d)[0].archived.is_none());
    assert_eq!(r.archived_end, 0);
    let _ = std::fs::remove_dir_all(&d);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_local_copy_goes_only_when_archived_and_verify_and_restore_keep_the_trail_whole() {
    let d = tmp("tiers");
    let root = tmp("tiers-store");
    build(&d, 1500, Timestamp(Timestamp::now().0 - 120 * DAY));
    let before = Timestamp(Timestamp::now().0 - 90 * DAY);
    // nothing archived: nothing evicted, whatever the age
    let (mut l, _) = Ledger::open(&d, opts()).unwrap();
    assert!(retention::evict(&mut l, before, "x").unwrap().is_empty());
    l.close("test").unwrap();
    let rt = rt();
    let a = file_archive(&root);
    rt.block_on(a.sync(&DataDir::new(&d))).unwrap();
    let (mut l, _) = Ledger::open(&d, opts()).unwrap();
    let evicted = retention::evict(&mut l, before, a.url()).unwrap();
    l.close("test").unwrap();
    let m = manifest(&d);
    // every old segment but the newest sealed one
    assert!(!evicted.is_empty());
    for (first, _) in &evicted {
        let e = m.iter().find(|e| e.first == *first).unwrap();
        assert_eq!(e.state, "evicted");
        assert!(!d.join("seg").join(&e.file).exists());
    }
    assert!(
        m.iter().any(|e| e.state == "sealed"),
        "the newest sealed segment stays"
    );
    // local verify accounts for the evicted ranges by their eviction records
    let rep = verify::verify(&d, VerifyOptions::default()).unwrap();
    assert_eq!(rep.status, Status::Ok, "{:?}", rep.failures);
    assert_eq!(rep.checked.evicted_ranges as usize, evicted.len());
    // a forged eviction (a segment marked evicted without a record) is caught
    let forged = tmp("tiers-forged");
    copy_dir(&d, &forged);
    let victim = manifest(&forged)
        .into_iter()
        .find(|e| e.state == "sealed")
        .unwrap();
    datadir::append_manifest(
        &DataDir::new(&forged).manifest_path(),
        &ManifestEntry {
            state: "evicted".into(),
            compact_range: manifest(&forged)
                .iter()
                .find(|e| e.state == "evicted")
                .unwrap()
                .compact_range
                .clone(),
            tombstone: manifest(&forged)
                .iter()
                .find(|e| e.state == "evicted")
                .unwrap()
                .tombstone,
            ..victim.clone()
        },
    )
    .unwrap();
    let rep = verify::verify(&forged, VerifyOptions::default()).unwrap();
    assert_eq!(rep.status, Status::Failed);
    let _ = std::fs::remove_dir_all(&forged);
    // the archive still verifies whole
    let rep = verify_archive(&rt, &a, &tmp("tiers-v"));
    assert_eq!(rep.status, Status::Ok, "{:?}", rep.failures);
    // restore brings them back, checked; verify re-hashes them locally again
    let (l, _) = Ledger::open(&d, opts()).unwrap();
    let r = rt
        .block_on(a.restore(&DataDir::new(&d), Timestamp(0), Timestamp::now()))
        .unwrap();
    l.close("test").unwrap();
    assert_eq!(r.segments, evicted);
    assert!(manifest(&d).iter().all(|e| e.state == "sealed"));
    let rep = verify::verify(&d, VerifyOptions::default()).unwrap();
    assert_eq!(rep.status, Status::Ok, "{:?}", rep.failures);
    assert_eq!(rep.checked.evicted_ranges, 0);
    // a restored segment stays hot for the hot period
    let (mut l, _) = Ledger::open(&d, opts()).unwrap();
    assert!(retention::evict(&mut l, before, a.url())
        .unwrap()
        .is_empty());
    l.close("test").unwrap();
    let _ = std::fs::remove_dir_all(&d);
    let _ = std::fs::remove_dir_all(&root);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &t);
        } else if e.file_name() != "LOCK" {
            std::fs::copy(e.path(), &t).unwrap();
        }
    }
}

#[test]
fn prune_waits_for_the_archive_and_the_archive_purges_after_the_tombstone_is_archived() {
    let d = tmp("prune");
    let root = tmp("prune-store");
    build(&d, 1500, Timestamp(Timestamp::now().0 - 500 * DAY));
    let policy = retention::PrunePolicy {
        before: Timestamp(Timestamp::now().0 - 400 * DAY),
        policy: "keep 400d".into(),
        approver: "qsa@example.com".into(),
        reason: "test".into(),
        require_archived: true,
    };
    // not archived: never pruned
    let (mut l, _) = Ledger::open(&d, opts()).unwrap();
    assert!(retention::prune(&mut l, &policy).unwrap().is_empty());
    l.close("test").unwrap();
    let rt = rt();
    let a = file_archive(&root);
    rt.block_on(a.sync(&DataDir::new(&d))).unwrap();
    let (mut l, _) = Ledger::open(&d, opts()).unwrap();
    let pruned = retention::prune(&mut l, &policy).unwrap();
    assert!(!pruned.is_empty());
    // the tombstones are in the WAL: the archive keeps the objects until they are archived
    let r = rt.block_on(a.sync(&DataDir::new(&d))).unwrap();
    assert!(r.purged.is_empty(), "{r:?}");
    let first = manifest(&d)
        .iter()
        .find(|e| e.state == "pruned")
        .unwrap()
        .clone();
    assert!(root.join("seg").join(&first.file).exists());
    l.rotate().unwrap();
    l.wait_for_seals().unwrap();
    l.close("test").unwrap();
    let r = rt.block_on(a.sync(&DataDir::new(&d))).unwrap();
    assert_eq!(r.purged, pruned, "{r:?}");
    assert!(!root.join("seg").join(&first.file).exists());
    assert!(manifest(&d)
        .iter()
        .filter(|e| e.state == "pruned")
        .all(|e| e.archived.is_none()));
    // local and archive both verify, the pruned ranges accounted for by their tombstones
    let rep = verify::verify(&d, VerifyOptions::default()).unwrap();
    assert_eq!(rep.status, Status::Ok, "{:?}", rep.failures);
    let rep = verify_archive(&rt, &a, &tmp("prune-v"));
    assert_eq!(rep.status, Status::Ok, "{:?}", rep.failures);
    assert_eq!(rep.checked.pruned_ranges as usize, pruned.len());
    let _ = std::fs::remove_dir_all(&d);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn an_unreachable_store_archives_nothing_and_reports_the_lag() {
    let d = tmp("down");
    build(&d, 800, Timestamp(Timestamp::now().0 - 200 * DAY));
    let cfg = ArchiveConfig {
        endpoint: Some("http://127.0.0.1:9".into()),
        allow_http: true,
        request_timeout_seconds: 1,
        ..ArchiveConfig::at("s3://nowhere/prefix")
    };
    std::env::set_var("AWS_ACCESS_KEY_ID", "test");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
    let a = Archive::open(&cfg).unwrap();
    let rt = rt();
    match rt.block_on(a.sync(&DataDir::new(&d))) {
        Err(e @ ArchiveError::Store { .. }) => assert!(e.is_transient(), "{e}"),
        other => panic!("expected a store error, got {other:?}"),
    }
    assert!(manifest(&d).iter().all(|e| e.archived.is_none()));
    let status = trailwarden_archive::local_status(&DataDir::new(&d), None).unwrap();
    assert!(status
        .iter()
        .all(|s| s.lag_seconds.is_some_and(|l| l >= 0.0)));
    // nothing is evicted or pruned while the archive lags
    let (mut l, _) = Ledger::open(&d, opts()).unwrap();
    assert!(retention::evict(&mut l, Timestamp::now(), a.url())
        .unwrap()
        .is_empty());
    l.close("test").unwrap();
    let _ = std::fs::remove_dir_all(&d);
}
