//! Alert store: deduplication, lifecycle, persistence.

#![allow(clippy::unwrap_used)] // test harness: a failed unwrap is a failed test

use trailwarden_alert::{
    AlertError, AlertStore, DeliveryFilter, DeliveryState, Filter, Matcher, NewAlert, Raised,
    Route, Routing, Status,
};

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
        namespace: Some("default".into()),
        source: Some("api:k8s-audit test 127.0.0.1".into()),
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

fn routed(s: &mut AlertStore, renotify_after_ns: i64) {
    s.set_routing(Some(Routing {
        routes: vec![
            Route {
                min_level: Some("high".into()),
                sinks: vec!["pager".into()],
                continue_: true,
                ..Route::default()
            },
            Route {
                sinks: vec!["siem".into()],
                ..Route::default()
            },
        ],
        renotify_after_ns,
    }));
}

fn pending(s: &AlertStore) -> Vec<(i64, String, String, i64)> {
    let mut v: Vec<_> = s
        .deliveries(&DeliveryFilter {
            state: Some(DeliveryState::Pending),
            ..DeliveryFilter::default()
        })
        .unwrap()
        .into_iter()
        .map(|d| (d.alert_id, d.sink, d.event, d.version))
        .collect();
    v.sort();
    v
}

#[test]
fn every_change_that_matters_queues_one_delivery_per_routed_sink() {
    let dir = tempdir();
    let mut s = AlertStore::open(dir.join("alerts.db")).unwrap();
    // no routing (offline CLI): nothing queued
    s.raise(&new("r0", "g", 0, &[1]), MIN, 0).unwrap();
    assert!(pending(&s).is_empty());
    routed(&mut s, 30 * MIN);
    let id = s.raise(&new("r1", "g", 0, &[1]), MIN, 0).unwrap().id();
    assert_eq!(
        pending(&s),
        [
            (id, "pager".into(), "raised".into(), 1),
            (id, "siem".into(), "raised".into(), 1)
        ]
    );
    let d = s.deliveries(&DeliveryFilter::default()).unwrap();
    assert_eq!(d[0].message.key, format!("tw-alert-{id}-v1"));
    assert_eq!(d[0].message.namespace.as_deref(), Some("default"));
    // merged soon after: nothing new
    s.raise(&new("r1", "g", MIN / 2, &[2]), MIN, MIN / 2)
        .unwrap();
    assert_eq!(pending(&s).len(), 2);
    // merged after a quiet half hour: re-raised, version 2
    s.raise(&new("r1", "g", MIN / 2 + 10, &[3]), MIN, 31 * MIN)
        .unwrap();
    let p = pending(&s);
    assert_eq!(p.len(), 4, "{p:?}");
    assert!(p.contains(&(id, "siem".into(), "reraised".into(), 2)));
    // a higher level escalates
    let mut crit = new("r1", "g", MIN / 2 + 20, &[4]);
    crit.level = "critical".into();
    s.raise(&crit, MIN, 31 * MIN + 1).unwrap();
    assert!(pending(&s).contains(&(id, "pager".into(), "escalated".into(), 3)));
    assert_eq!(s.get(id).unwrap().level, "critical");
    // lifecycle changes carry actor and note
    let c = s
        .prepare(id, Status::Acknowledged, "bob", "looking", 32 * MIN)
        .unwrap();
    s.apply(id, &c).unwrap();
    let c = s
        .prepare(
            id,
            Status::Resolved,
            "carol",
            "approved change CHG-1",
            33 * MIN,
        )
        .unwrap();
    s.apply(id, &c).unwrap();
    let all = s
        .deliveries(&DeliveryFilter {
            alert_id: Some(id),
            sink: Some("siem".into()),
            ..DeliveryFilter::default()
        })
        .unwrap();
    let last = &all[0].message;
    assert_eq!(
        (last.event.as_str(), last.status.as_str(), last.version),
        ("resolved", "resolved", 5)
    );
    assert_eq!(last.note.as_deref(), Some("approved change CHG-1"));
    assert_eq!(s.get(id).unwrap().version, 5);
    // a low alert only goes to the second route
    let mut low = new("r2", "g", 0, &[9]);
    low.level = "low".into();
    let lid = s.raise(&low, MIN, 40 * MIN).unwrap().id();
    assert!(pending(&s)
        .iter()
        .filter(|p| p.0 == lid)
        .all(|p| p.1 == "siem"));
}

#[test]
fn outbox_leases_retries_dead_letters_and_survives_reopening() {
    let dir = tempdir();
    let p = dir.join("alerts.db");
    let id = {
        let mut s = AlertStore::open(&p).unwrap();
        routed(&mut s, 0);
        let id = s.raise(&new("r1", "g", 0, &[1]), MIN, 0).unwrap().id();
        // claimed for sending, then the process dies mid-send
        let c = s.claim("pager", 10, 10, MIN).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].attempts, 1);
        // under its lease, nobody else takes it
        assert!(s.claim("pager", 20, 10, MIN).unwrap().is_empty());
        id
    };
    let mut s = AlertStore::open(&p).unwrap();
    assert_eq!(s.release_leases().unwrap(), 1);
    let c = s.claim("pager", 30, 10, MIN).unwrap();
    assert_eq!((c[0].alert_id, c[0].attempts), (id, 2));
    s.mark_failed(c[0].id, "pager", 30, "HTTP 503", Some(5 * MIN))
        .unwrap();
    assert!(
        s.claim("pager", 40, 10, MIN).unwrap().is_empty(),
        "not due yet"
    );
    let c = s.claim("pager", 5 * MIN, 10, MIN).unwrap();
    assert_eq!(c[0].last_error.as_deref(), Some("HTTP 503"));
    s.mark_failed(c[0].id, "pager", 5 * MIN, "HTTP 410", None)
        .unwrap();
    let dead = s
        .deliveries(&DeliveryFilter {
            state: Some(DeliveryState::Dead),
            ..DeliveryFilter::default()
        })
        .unwrap();
    assert_eq!(dead.len(), 1);
    let st = s.sink_status().unwrap();
    let pager = st.iter().find(|x| x.sink == "pager").unwrap();
    assert_eq!((pager.dead, pager.pending), (1, 0));
    assert_eq!(pager.last_error.as_deref(), Some("HTTP 410"));
    let siem = st.iter().find(|x| x.sink == "siem").unwrap();
    assert_eq!((siem.pending, siem.oldest_pending), (1, Some(0)));
    // replay
    let d = s.retry_delivery(dead[0].id, 6 * MIN).unwrap();
    assert_eq!((d.state, d.attempts), (DeliveryState::Pending, 0));
    assert!(
        s.retry_delivery(dead[0].id, 6 * MIN).is_err(),
        "already pending"
    );
    let c = s.claim("pager", 6 * MIN, 10, MIN).unwrap();
    s.mark_delivered(c[0].id, "pager", 6 * MIN).unwrap();
    assert_eq!(s.firing_on("pager").unwrap().len(), 1);
    assert!(
        s.firing_on("siem").unwrap().is_empty(),
        "not delivered there"
    );
}

#[test]
fn silences_hold_back_matching_deliveries_until_they_end() {
    let dir = tempdir();
    let mut s = AlertStore::open(dir.join("alerts.db")).unwrap();
    routed(&mut s, 0);
    let m = Matcher {
        rule_id: Some("r1".into()),
        ..Matcher::default()
    };
    let sil = s
        .add_silence(&m, "alice", "maintenance CHG-9", 0, 10 * MIN)
        .unwrap();
    s.raise(&new("r1", "g", 0, &[1]), MIN, MIN).unwrap();
    s.raise(&new("r2", "g", 0, &[2]), MIN, MIN).unwrap();
    let held = s
        .deliveries(&DeliveryFilter {
            state: Some(DeliveryState::Silenced),
            ..DeliveryFilter::default()
        })
        .unwrap();
    assert_eq!(held.len(), 2, "both sinks of r1 held back");
    assert!(held.iter().all(|d| d.silenced_by == Some(sil.id)));
    assert_eq!(pending(&s).len(), 2, "r2 goes out");
    s.expire_silence(sil.id, "bob", 2 * MIN).unwrap();
    assert!(s.expire_silence(sil.id, "bob", 2 * MIN).is_err());
    s.raise(&new("r1", "other", 0, &[3]), MIN, 3 * MIN).unwrap();
    assert_eq!(pending(&s).len(), 4);
    assert_eq!(s.silences().unwrap()[0].expired_by.as_deref(), Some("bob"));
}

fn tempdir() -> std::path::PathBuf {
    let d = trailwarden_model::scratch::dir(
        "tw-alert",
        &std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
            .to_string(),
    );
    std::fs::create_dir_all(&d).unwrap();
    d
}
