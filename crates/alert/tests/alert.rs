//! Alert store: deduplication, lifecycle, persistence.

#![allow(clippy::unwrap_used)] // test harness: a failed unwrap is a failed test

use trailwarden_alert::{AlertError, AlertStore, Filter, NewAlert, Raised, Status};

const MIN: i64 = 60_000_000_000;

fn new(rule: &str, group: &str, time: i64, evidence: &[u64]) -> NewAlert {
    NewAlert {
        rule_id: rule.into(),
        title: format!("title of {rule}"),
        level: "high".into(),
        tags: vec!["attack.t1609".into(), "pci_dss.10.2.1.2".into()],
        group_key: group.into(),
        summary: "alice create pods/exec web-1 in namespace default from 10.0.0.1 (success 101)"
            .into(),
        evidence: evidence.to_vec(),
        time,
        count: evidence.len() as u64,
    }
}

#[test]
fn same_rule_and_group_within_the_window_merge_into_one_alert() {
    let dir = tempdir();
    let mut s = AlertStore::open(dir.join("alerts.db")).unwrap();
    let a = s.raise(&new("r1", "g", 0, &[1]), 10 * MIN, 0).unwrap();
    assert!(matches!(a, Raised::New(_)));
    // same rule and group, 5 minutes later: merged, evidence appended once
    assert_eq!(
        s.raise(&new("r1", "g", 5 * MIN, &[2, 1]), 10 * MIN, 0)
            .unwrap(),
        Raised::Merged(a.id())
    );
    // another group, another rule: new alerts
    assert!(matches!(
        s.raise(&new("r1", "h", 5 * MIN, &[3]), 10 * MIN, 0)
            .unwrap(),
        Raised::New(_)
    ));
    assert!(matches!(
        s.raise(&new("r2", "g", 5 * MIN, &[4]), 10 * MIN, 0)
            .unwrap(),
        Raised::New(_)
    ));
    // same group after the window: a new alert
    assert!(matches!(
        s.raise(&new("r1", "g", 30 * MIN, &[5]), 10 * MIN, 0)
            .unwrap(),
        Raised::New(_)
    ));
    let first = s.get(a.id()).unwrap();
    assert_eq!(first.evidence, vec![1, 2]);
    assert_eq!(first.detections, 2);
    assert_eq!(first.last_seen, 5 * MIN);
    assert_eq!(s.list(&Filter::default()).unwrap().len(), 4);
}

#[test]
fn lifecycle_moves_forward_only_and_keeps_who_when_why() {
    let dir = tempdir();
    let mut s = AlertStore::open(dir.join("alerts.db")).unwrap();
    let id = s.raise(&new("r1", "g", 0, &[1]), MIN, 0).unwrap().id();
    let c = s
        .prepare(id, Status::Acknowledged, "alice", "looking", 10)
        .unwrap();
    s.apply(id, &c).unwrap();
    let c = s
        .prepare(id, Status::FalsePositive, "bob", "CI deploy", 20)
        .unwrap();
    s.apply(id, &c).unwrap();
    // closed alerts stay closed
    assert!(matches!(
        s.prepare(id, Status::Acknowledged, "eve", "", 30),
        Err(AlertError::Transition { .. })
    ));
    // a closed alert does not absorb new detections: the next one opens a new alert
    assert!(matches!(
        s.raise(&new("r1", "g", 1, &[9]), MIN, 0).unwrap(),
        Raised::New(_)
    ));
    let a = s.get(id).unwrap();
    assert_eq!(a.status, Status::FalsePositive);
    assert_eq!(a.history.len(), 2);
    assert_eq!(a.history[0].actor, "alice");
    assert_eq!(a.history[1].from, Status::Acknowledged);
    assert_eq!(a.history[1].note, "CI deploy");
    // a stale prepared change is refused
    let id2 = s.raise(&new("r9", "g", 0, &[1]), MIN, 0).unwrap().id();
    let c1 = s.prepare(id2, Status::Resolved, "a", "", 1).unwrap();
    let c2 = s.prepare(id2, Status::Acknowledged, "b", "", 1).unwrap();
    s.apply(id2, &c1).unwrap();
    assert!(s.apply(id2, &c2).is_err());
    assert!(matches!(s.get(999), Err(AlertError::NotFound(999))));
}

#[test]
fn alerts_survive_reopening_and_filter_by_status_and_level() {
    let dir = tempdir();
    let p = dir.join("alerts.db");
    {
        let mut s = AlertStore::open(&p).unwrap();
        s.raise(&new("r1", "g", 0, &[1]), MIN, 0).unwrap();
        let mut low = new("r2", "g", 0, &[2]);
        low.level = "low".into();
        s.raise(&low, MIN, 0).unwrap();
        s.note_correlation_inputs(&[(5, 100), (6, 200)], 150)
            .unwrap();
    }
    let s = AlertStore::open(&p).unwrap();
    let f = Filter {
        min_level: Some("medium".into()),
        ..Filter::default()
    };
    let high = s.list(&f).unwrap();
    assert_eq!(high.len(), 1);
    assert_eq!(high[0].rule_id, "r1");
    let f = Filter {
        status: vec![Status::Resolved],
        ..Filter::default()
    };
    assert!(s.list(&f).unwrap().is_empty());
    assert_eq!(s.correlation_inputs(0).unwrap(), vec![6]);
    assert_eq!(s.counts().unwrap()[0], (Status::New, 2));
}

fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "tw-alert-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}
