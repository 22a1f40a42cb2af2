//! The cluster crate without a NATS server: the message format (round trip of real corpus
//! events, a golden message pinning the bytes, arbitrary input), the deterministic split of a
//! batch into messages, and the `[cluster]` checks. The paths through a real `nats-server` are
//! in the CLI's server tests (`crates/cli/tests/server/cluster.rs`).

#![allow(clippy::unwrap_used)] // test harness: a failed unwrap is a failed test

use proptest::prelude::*;
use std::path::Path;
use trailwarden_cluster::wire::{self, EncodedRecord, Message};
use trailwarden_cluster::{ClusterConfig, Role};
use trailwarden_model::{Body, Location, Quarantine, Record, Timestamp};

fn corpus_records() -> Vec<Record> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/corpus/liggitt-audit2rbac/testdata/demo.log");
    let text = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut out = Vec::new();
    let mut sink = |r: Record| -> Result<(), String> {
        out.push(r);
        Ok(())
    };
    trailwarden_parse::ingest::Ingestor::new(Default::default(), &mut sink)
        .ingest_bytes("file:demo.log", &text)
        .unwrap();
    assert!(out.len() > 10, "the corpus file parses");
    out
}

fn encode(recs: &[Record]) -> Vec<EncodedRecord> {
    recs.iter()
        .map(|r| EncodedRecord::new(r).unwrap())
        .collect()
}

#[test]
fn corpus_events_round_trip_with_raw_bytes_and_normalized_fields() {
    let recs = corpus_records();
    let msg = wire::records_message("k8s-audit", "token:tok-1(ingest) 10.0.0.1", &encode(&recs));
    match wire::decode(&msg).unwrap() {
        Message::Records {
            endpoint,
            sender,
            records,
        } => {
            assert_eq!(endpoint, "k8s-audit");
            assert_eq!(sender, "token:tok-1(ingest) 10.0.0.1");
            assert_eq!(
                records, recs,
                "every field, the raw bytes and the event, survive"
            );
        }
        other => panic!("{other:?}"),
    }
}

fn sample() -> Vec<Record> {
    vec![
        Record {
            source: "api:k8s-audit token:t 10.0.0.9".into(),
            received: Timestamp(1_796_000_000_000_000_000),
            raw: br#"{"kind":"Event","auditID":"a1"}"#.to_vec(),
            location: Some(Location {
                line: 3,
                offset: 120,
            }),
            body: Body::Event(Box::new(trailwarden_model::Event::new(
                trailwarden_model::Format::K8sAudit,
            ))),
        },
        Record {
            source: "syslog:tcp 10.0.0.3".into(),
            received: Timestamp(1_796_000_000_000_000_001),
            raw: vec![0xff, 0x00, b'x'],
            location: None,
            body: Body::Quarantine(Quarantine {
                format: None,
                reason: "not UTF-8".into(),
                full_len: None,
                full_sha256: None,
            }),
        },
    ]
}

/// The bytes of version 1 are pinned: messages stay in the stream for days, a writer of a newer
/// version must still read them. Regenerate only with a new magic (and a decoder for the old).
#[test]
fn golden_message_v1() {
    let msg = wire::records_message("k8s-audit", "tester", &encode(&sample()));
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/records-v1.bin");
    if std::env::var_os("TW_UPDATE_GOLDEN").is_some() {
        std::fs::write(&p, &msg).unwrap();
    }
    let want = std::fs::read(&p).unwrap();
    assert_eq!(msg, want, "the message format changed");
    match wire::decode(&want).unwrap() {
        Message::Records { records, .. } => assert_eq!(records, sample()),
        other => panic!("{other:?}"),
    }
    // access and control messages
    let c = wire::Control {
        kind: "cluster-publish".into(),
        subject: Some("prod".into()),
        title: "t".into(),
        summary: "s".into(),
    };
    match wire::decode(&wire::control_message(&c).unwrap()).unwrap() {
        Message::Control(back) => assert_eq!(back, c),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_damaged_message_is_an_error_that_says_where() {
    let msg = wire::records_message("k8s-audit", "tester", &encode(&sample()));
    for cut in [0, 3, 5, 20, msg.len() - 1] {
        let e = wire::decode(&msg[..cut]).unwrap_err().to_string();
        assert!(
            e.contains("past the end") || e.contains("magic"),
            "cut at {cut}: {e}"
        );
    }
    let mut extra = msg.clone();
    extra.push(0);
    assert!(wire::decode(&extra)
        .unwrap_err()
        .to_string()
        .contains("after the end"));
    assert!(wire::decode(b"{\"json\":1}").is_err());
    // an internal record is the writer's to write, never published
    let mut r = sample().remove(0);
    r.body = Body::Internal;
    assert!(EncodedRecord::new(&r).is_err());
}

#[test]
fn a_batch_splits_the_same_way_whoever_sent_it_and_whenever() {
    let recs = corpus_records();
    let a = encode(&recs);
    // the same request again, through another node, later
    let mut again = recs.clone();
    for r in &mut again {
        r.source = "api:k8s-audit token:tok-2(ingest) 192.168.100.200".into();
        r.received = Timestamp(r.received.0 + 123_456_789);
    }
    let b = encode(&again);
    for budget in [2_000, 10_000, 64 << 10, 1 << 20] {
        let ca = wire::chunks(&a, budget);
        assert_eq!(ca, wire::chunks(&b, budget), "budget {budget}");
        // contiguous, in order, covering every record
        let mut next = 0;
        for r in &ca {
            assert_eq!(r.start, next);
            assert!(r.end > r.start);
            next = r.end;
        }
        assert_eq!(next, a.len());
        // every message fits, unless it is one record larger than the budget
        for r in &ca {
            let m = wire::records_message("k8s-audit", "x", &a[r.clone()]);
            assert!(
                m.len() <= budget + 64 || r.len() == 1,
                "budget {budget}: {} bytes in {} records",
                m.len(),
                r.len()
            );
        }
    }
}

#[test]
fn cluster_settings_are_checked() {
    let ok = ClusterConfig {
        nats_url: Some("nats://127.0.0.1:4222".into()),
        role: Role::Writer,
        ..Default::default()
    };
    assert!(ok.check().is_ok());
    assert!(
        ClusterConfig::default().check().is_ok(),
        "role all without NATS"
    );
    let bad = |c: ClusterConfig, want: &str| {
        let e = c.check().unwrap_err();
        assert!(e.contains(want), "{e}");
    };
    bad(
        ClusterConfig {
            nats_url: Some("nats://x:4222".into()),
            ..Default::default()
        },
        "role is \"all\"",
    );
    bad(
        ClusterConfig {
            role: Role::Ingest,
            ..Default::default()
        },
        "needs cluster.nats_url",
    );
    bad(
        ClusterConfig {
            partition: "prod.eu".into(),
            ..ok.clone()
        },
        "cluster.partition",
    );
    bad(
        ClusterConfig {
            replicas: 7,
            ..ok.clone()
        },
        "1 to 5",
    );
    bad(
        ClusterConfig {
            role: Role::Detect,
            ..ok.clone()
        },
        "not available yet",
    );
    assert_eq!(ok.subject(), "tw.audit.default");
    assert_eq!("writer".parse::<Role>(), Ok(Role::Writer));
    assert!("leader".parse::<Role>().is_err());
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = wire::decode(&data);
    }

    #[test]
    fn records_round_trip(
        raws in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..20),
        source in ".{0,80}",
        t in any::<i64>(),
    ) {
        let recs: Vec<Record> = raws.into_iter().enumerate().map(|(i, raw)| Record {
            source: source.clone(),
            received: Timestamp(t),
            raw,
            location: (i % 2 == 0).then_some(Location { line: i as u64, offset: 7 }),
            body: Body::Quarantine(Quarantine { format: None, reason: format!("r{i}"), full_len: None, full_sha256: None }),
        }).collect();
        let m = wire::records_message("e", "s", &encode(&recs));
        match wire::decode(&m) {
            Ok(Message::Records { records, .. }) => prop_assert_eq!(records, recs),
            other => prop_assert!(false, "{:?}", other),
        }
    }
}
