//! The reviewer thread of `serve` (PCI DSS 10.4.1.1: the review is automated): a while after each
//! period ends it generates the review (the daily one and the periodic ones of `[review]`),
//! records its hash in the ledger, and raises an alert for a review still unsigned after
//! `review.sign_off_within`.

use crate::http::AppState;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use trailwarden_compliance::store::ReviewStore;
use trailwarden_compliance::{controls, review};
use trailwarden_model::Timestamp;

/// How long after a period's end its review is generated (late events land first; the audit
/// webhook batches for up to 30 s by default).
pub const GRACE_NS: i64 = 15 * 60 * 1_000_000_000;
/// Missed periods generated after downtime, at most.
const CATCH_UP_DAYS: i64 = 7;
const DAY: i64 = 86_400 * 1_000_000_000;

/// The running thread.
pub struct Reviewer {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Reviewer {
    /// Start it.
    pub fn start(state: Arc<AppState>) -> Reviewer {
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let handle = std::thread::Builder::new()
            .name("reviews".into())
            .spawn(move || {
                let mut watch = controls::SourceWatch::default();
                while !s2.load(Ordering::Relaxed) {
                    tick(&state, Timestamp::now().0, &mut watch);
                    for i in 0..50 {
                        if s2.load(Ordering::Relaxed) {
                            return;
                        }
                        if i % 5 == 0 {
                            drain(&state);
                        }
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
            })
            .ok();
        Reviewer { stop, handle }
    }

    /// Stop after the work in progress.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Record what `trailwarden review` handed over while serve holds the ledger; the CLI waits
/// for the record and updates compliance.db itself.
fn drain(s: &AppState) {
    match trailwarden_compliance::store::drain_spool(&s.data_dir) {
        Ok(records) => {
            for r in records {
                if let Err(e) = s
                    .pipeline
                    .record_blocking(trailwarden_model::RecordKind::Alert, r.clone())
                {
                    // kept for the next round
                    let _ = trailwarden_compliance::store::spool(&s.data_dir, &r);
                    s.pipeline.control(
                        "review",
                        "A review record could not be written to the ledger",
                        format!("review.spool: {e}"),
                    );
                }
            }
        }
        Err(e) => s
            .pipeline
            .control("review", "The review spool cannot be read", format!("{e}")),
    }
}

/// Escalate open alerts past their due time (10.4.3): one `trailwarden-overdue` alert each,
/// routed like any other.
pub fn escalate_overdue(s: &AppState, now: i64, sla: &std::collections::BTreeMap<String, i64>) {
    let overdue = {
        let store = crate::lock(&s.alerts);
        match store.overdue(now, sla) {
            Ok(v) => v,
            Err(_) => return,
        }
    };
    for a in overdue {
        let high = trailwarden_alert::level_rank(&a.level) >= trailwarden_alert::level_rank("high");
        let alert = trailwarden_alert::NewAlert {
            rule_id: "trailwarden-overdue".into(),
            title: format!("Overdue: {}", a.title),
            level: if high { "critical" } else { "high" }.into(),
            tags: vec!["pci_dss.10.4.3".into()],
            group_key: format!("overdue|{}", a.id),
            summary: format!(
                "alert {} ({}, {}) is still {} past its due time {}{}: {}",
                a.id,
                a.level,
                a.rule_id,
                a.status,
                Timestamp(a.due_at.unwrap_or(now)),
                a.assignee
                    .as_deref()
                    .map(|w| format!(" (assigned to {w})"))
                    .unwrap_or_default(),
                a.summary
            ),
            evidence: a.evidence.iter().take(10).copied().collect(),
            time: now,
            count: 1,
            namespace: a.namespace.clone(),
            source: Some("trailwarden".into()),
        };
        if s.pipeline.raise_blocking(vec![alert]).is_ok() {
            let _ = crate::lock(&s.alerts).mark_escalated(a.id, now);
        }
    }
}

/// Close the incidents whose control works again (10.7.3: the end of a failure is recorded
/// by the system, with the evidence, not left to someone remembering).
pub fn close_recovered(
    s: &AppState,
    now: i64,
    signed: Vec<String>,
    (source_last, skew_ok): (Vec<(String, i64)>, Vec<String>),
) {
    let (alerts, sinks) = {
        let store = crate::lock(&s.alerts);
        let f = trailwarden_alert::Filter {
            status: vec![
                trailwarden_alert::Status::New,
                trailwarden_alert::Status::Acknowledged,
            ],
            rule_id: None,
            ..Default::default()
        };
        match (store.list(&f), store.sink_status()) {
            (Ok(a), Ok(k)) => (a, k),
            _ => return,
        }
    };
    let verify = crate::lock(&s.verify)
        .as_ref()
        .map(|v| (v.at.0, v.status == "ok"));
    let health = controls::Health {
        now,
        disk_ok: s.metrics.disk_low.load(Ordering::Relaxed) == 0,
        last_backpressure: None,
        sink_success: sinks
            .iter()
            .filter_map(|k| k.last_success.map(|t| (k.sink.clone(), t)))
            .collect(),
        verify,
        signed_reviews: signed,
        source_last,
        skew_ok,
    };
    for i in controls::incidents(&alerts, now) {
        if let Some(note) = controls::recovered(&i, &health) {
            let _ = s.pipeline.change_alert_blocking(
                i.id,
                trailwarden_alert::Status::Resolved,
                "trailwarden".into(),
                note,
            );
        }
    }
}

/// The live sources as the watch sees them: `api:<endpoint> <sender>` / `syslog <sender>`,
/// with their last batches (arrival, latest event time).
fn live_sources(s: &AppState) -> Vec<(String, controls::Batches)> {
    s.metrics
        .sources()
        .into_iter()
        .map(|x| {
            let label = if x.endpoint == "syslog" {
                format!("syslog {}", x.sender)
            } else {
                format!("api:{} {}", x.endpoint, x.sender)
            };
            (label, x.recent.iter().copied().collect())
        })
        .collect()
}

/// One round: generate what is due, alert on what is unsigned too long, open incidents for
/// sources gone silent or skewed, close the incidents whose control works again.
pub fn tick(s: &AppState, now: i64, watch: &mut controls::SourceWatch) {
    let Ok(settings) = s.cfg.review.settings() else {
        return;
    };
    let Ok(mut store) = ReviewStore::open(&s.data_dir) else {
        return;
    };
    // no review of a period that ended before the ledger existed
    let created = match trailwarden_ledger::reader::LedgerReader::open(&s.data_dir, None) {
        Ok(r) => r.identity.created.0,
        Err(_) => return,
    };
    let mut kinds: Vec<(String, i64)> = vec![("daily".into(), 1)];
    for p in &s.cfg.review.periodic {
        kinds.push((p.name.clone(), p.days.max(1)));
    }
    for (kind, days) in kinds {
        // the periods that ended at least GRACE ago, the last CATCH_UP_DAYS of them
        let today = review::date_of(now - GRACE_NS, &settings);
        let Ok(current) = review::period(&kind, &today, 1, &settings) else {
            continue;
        };
        let mut start = current.start - DAY * CATCH_UP_DAYS.max(days);
        while start + days * DAY <= now - GRACE_NS {
            let day_no = (start + settings.offset_ns()).div_euclid(DAY);
            if day_no.rem_euclid(days) == 0 {
                let date = review::date_of(start, &settings);
                if let Ok(p) = review::period(&kind, &date, days, &settings) {
                    if p.end <= now - GRACE_NS
                        && p.end > created
                        && matches!(store.state(&p.id()), Ok(None))
                    {
                        match crate::compliance_api::generate_blocking(s, &kind, &date, days, false, "trailwarden serve") {
                            Ok(_) => {}
                            Err(e) => s.pipeline.control_for(
                                "review",
                                Some(&p.id()),
                                &format!("Review {} could not be generated", p.id()),
                                format!("the automated log review failed: {e}; generate it with POST /v1/reviews or `trailwarden review generate --date {date}`"),
                            ),
                        }
                    }
                }
            }
            start += DAY;
        }
    }
    // unsigned too long: one alert per review (10.4.1 is a daily obligation)
    let rows = store.list().unwrap_or_default();
    escalate_overdue(s, now, settings.sla_ns());
    // close first: a source that sent again and went quiet again is a new incident
    let seen = live_sources(s);
    let openings = watch.observe(now, &seen, &settings);
    close_recovered(
        s,
        now,
        rows.iter()
            .filter(|r| r.sign_off.is_some())
            .map(|r| r.id.clone())
            .collect(),
        watch.health(),
    );
    for (control, src, title, summary) in openings {
        s.pipeline.control_for(control, Some(&src), &title, summary);
    }
    {
        for r in rows.iter().filter(|r| r.sign_off.is_none()) {
            if now > r.period_end.0 + settings.sign_off_within {
                let key = format!("overdue-alerted:{}", r.id);
                if matches!(store.meta(&key), Ok(None)) {
                    s.pipeline.control_for(
                        "review",
                        Some(&r.id),
                        &format!("Log review {} is not signed off", r.id),
                        format!(
                            "the review of {} to {} has {} exception(s) and no sign-off {} after its period ended; sign it off: `trailwarden review sign-off {} --note …` or POST /v1/reviews/{}/sign-off",
                            r.period_start, r.period_end, r.exceptions, s.cfg.review.sign_off_within, r.id, r.id
                        ),
                    );
                    let _ = store.set_meta(&key, &Timestamp(now).to_string());
                }
            }
        }
    }
}
