//! # trailwarden-notify
//!
//! Alert delivery: the worker that drains the alert store's outbox (`alerts.db`, written in the
//! same transaction as each alert change) to the configured sinks — Prometheus Alertmanager
//! (API v2), webhooks signed per Standard Webhooks, Slack, syslog to a SIEM (RFC 5424 over TCP,
//! TLS or UDP, optional CEF) and e-mail (SMTP with STARTTLS or TLS).
//!
//! Per sink: one loop claims due deliveries under a lease, sends them with the sink's
//! concurrency, and records the outcome in one transaction. Failures are retried with
//! exponential backoff and jitter (at least the receiver's `Retry-After`); after the sink's
//! maximum attempts or age a delivery is dead-lettered and a control-failure alert
//! (`trailwarden-control-delivery`) is raised, which the routes send to the *other* sinks.
//! Delivery is at-least-once: the idempotency key (`tw-alert-<id>-v<version>`) is the webhook
//! id, the Message-ID, the syslog SD `id` and the CEF `externalId`.
#![warn(missing_docs)]

pub mod config;
mod http;
pub mod sinks;
mod tls;

pub use config::{Alerting, Sink, SinkKind};
pub use http::post_form;
pub use sinks::{Outcome, Sender};

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use trailwarden_alert::{AlertMessage, AlertStore, Delivery, Finish, SinkStatus};
use trailwarden_model::Timestamp;

/// Errors of alert delivery.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The `[alerting]` configuration is invalid.
    #[error("configuration: {0}")]
    Config(String),
    /// The alert store failed.
    #[error("{0}")]
    Alert(#[from] trailwarden_alert::AlertError),
}

/// Raise a control-failure alert: (sink that failed, what happened).
pub type ControlFn = Arc<dyn Fn(&str, String) + Send + Sync>;

/// A per-sink gauge's value.
type Gauge<'a> = dyn Fn(&SinkStatus) -> Option<f64> + 'a;

/// Counters of the delivery worker.
#[derive(Default)]
pub struct Stats {
    outcomes: Mutex<BTreeMap<(String, &'static str), u64>>,
}

impl Stats {
    fn count(&self, sink: &str, outcome: &'static str, n: u64) {
        if n == 0 {
            return;
        }
        let mut g = lock(&self.outcomes);
        *g.entry((sink.to_string(), outcome)).or_default() += n;
    }

    /// Attempts per (sink, outcome) so far.
    pub fn outcomes(&self) -> BTreeMap<(String, &'static str), u64> {
        lock(&self.outcomes).clone()
    }

    /// The Prometheus exposition of the counters and of the outbox per sink.
    pub fn render(&self, status: &[SinkStatus], now: i64) -> String {
        let mut o = String::new();
        let esc = |s: &str| {
            s.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
        };
        let _ = writeln!(
            o,
            "# HELP trailwarden_alert_deliveries_total Delivery attempts per sink and outcome (delivered, retried, dead).\n# TYPE trailwarden_alert_deliveries_total counter"
        );
        for ((sink, outcome), n) in self.outcomes() {
            let _ = writeln!(
                o,
                "trailwarden_alert_deliveries_total{{sink=\"{}\",outcome=\"{outcome}\"}} {n}",
                esc(&sink)
            );
        }
        let gauges: [(&str, &str, &Gauge<'_>); 4] = [
            (
                "trailwarden_alert_delivery_queue",
                "Deliveries waiting per sink.",
                &|s| Some(s.pending as f64),
            ),
            (
                "trailwarden_alert_delivery_dead",
                "Dead-lettered deliveries per sink (replay with POST /v1/deliveries/{id}/retry).",
                &|s| Some(s.dead as f64),
            ),
            (
                "trailwarden_alert_delivery_oldest_pending_seconds",
                "Age of the oldest undelivered item per sink.",
                &|s| {
                    Some(
                        s.oldest_pending
                            .map_or(0.0, |t| (now - t).max(0) as f64 / 1e9),
                    )
                },
            ),
            (
                "trailwarden_alert_delivery_last_success_timestamp_seconds",
                "Last successful delivery per sink (Unix time).",
                &|s| s.last_success.map(|t| t as f64 / 1e9),
            ),
        ];
        for (name, help, f) in gauges {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} gauge");
            for s in status {
                if let Some(v) = f(s) {
                    let _ = writeln!(o, "{name}{{sink=\"{}\"}} {v}", esc(&s.sink));
                }
            }
        }
        o
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Retry delay for the `attempts`-th failed attempt: exponential from `initial` up to `max`,
/// with equal jitter (half fixed, half random), and never shorter than the receiver's
/// `Retry-After` (capped at an hour).
pub fn backoff(
    attempts: u32,
    initial_ns: i64,
    max_ns: i64,
    retry_after: Option<Duration>,
    random: u64,
) -> i64 {
    let exp = initial_ns.saturating_mul(1i64 << attempts.saturating_sub(1).min(40));
    let d = exp.min(max_ns).max(1);
    let half = d / 2;
    let jittered = half + (random % (half.max(1) as u64 + 1)) as i64;
    let floor = retry_after.map_or(0, |r| r.as_nanos().min(3_600_000_000_000) as i64);
    jittered.max(floor)
}

fn random() -> u64 {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
}

/// What the worker needs to run.
pub struct Worker {
    senders: Vec<Arc<Sender>>,
    db: PathBuf,
    control: ControlFn,
    /// Counters.
    pub stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    poll: Duration,
}

/// Claimed per round, per sink.
const CLAIM: usize = 256;
/// A claim's lease: long enough for a whole round; released at start anyway.
const LEASE_NS: i64 = 600_000_000_000;

impl Worker {
    /// Build every sink (secrets read, TLS set up): errors name the sink and the setting.
    pub fn new(
        cfg: &Alerting,
        db: PathBuf,
        control: ControlFn,
        stats: Arc<Stats>,
    ) -> Result<Worker, NotifyError> {
        cfg.check()?;
        let mut senders = Vec::new();
        for (i, s) in cfg.sinks.iter().enumerate() {
            let snd =
                Sender::new(s, cfg.external_url.clone(), cfg.cluster.clone()).map_err(|e| {
                    NotifyError::Config(format!("alerting.sink[{i}] ({:?}): {e}", s.name))
                })?;
            senders.push(Arc::new(snd));
        }
        Ok(Worker {
            senders,
            db,
            control,
            stats,
            stop: Arc::new(AtomicBool::new(false)),
            poll: Duration::from_millis(50),
        })
    }

    /// The sender named `name`.
    pub fn sender(&self, name: &str) -> Option<Arc<Sender>> {
        self.senders.iter().find(|s| s.cfg.name == name).cloned()
    }

    /// Start the loops on the current tokio runtime: one per sink, the default route's log
    /// sink, and the Alertmanager refreshers. Leases of a previous process are released first
    /// (what it was sending when it died is sent again).
    pub fn start(self) -> Result<WorkerHandle, NotifyError> {
        AlertStore::open(&self.db)?.release_leases()?;
        let mut loops = Vec::new();
        for s in &self.senders {
            loops.push(tokio::spawn(sink_loop(
                SinkRef::Sender(s.clone()),
                self.db.clone(),
                self.control.clone(),
                self.stats.clone(),
                self.stop.clone(),
                self.poll,
            )));
            if s.cfg.kind == SinkKind::Alertmanager {
                loops.push(tokio::spawn(refresh_loop(
                    s.clone(),
                    self.db.clone(),
                    self.stop.clone(),
                )));
            }
        }
        loops.push(tokio::spawn(sink_loop(
            SinkRef::Log,
            self.db.clone(),
            self.control.clone(),
            self.stats.clone(),
            self.stop.clone(),
            self.poll,
        )));
        Ok(WorkerHandle {
            stop: self.stop,
            loops,
        })
    }
}

/// The running loops.
pub struct WorkerHandle {
    stop: Arc<AtomicBool>,
    loops: Vec<tokio::task::JoinHandle<()>>,
}

impl WorkerHandle {
    /// Stop after the round in progress (what is claimed and unsent is sent after the next
    /// start).
    pub async fn stop(self, grace: Duration) {
        self.stop.store(true, Ordering::Relaxed);
        let all = futures_util::future::join_all(self.loops);
        let _ = tokio::time::timeout(grace, all).await;
    }
}

#[derive(Clone)]
enum SinkRef {
    Sender(Arc<Sender>),
    Log,
}

impl SinkRef {
    fn name(&self) -> &str {
        match self {
            SinkRef::Sender(s) => &s.cfg.name,
            SinkRef::Log => trailwarden_alert::route::LOG_SINK,
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, NotifyError> + Send + 'static,
) -> Result<T, NotifyError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(NotifyError::Config(format!("worker task: {e}"))),
    }
}

async fn sink_loop(
    sink: SinkRef,
    db: PathBuf,
    control: ControlFn,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    poll: Duration,
) {
    let name = sink.name().to_string();
    let store = match AlertStore::open(&db).and_then(|s| s.relax_durability().map(|_| s)) {
        Ok(s) => Arc::new(Mutex::new(s)),
        Err(e) => {
            control(
                &name,
                format!("the delivery worker cannot open the outbox: {e}"),
            );
            return;
        }
    };
    let mut reported_store_error = false;
    while !stop.load(Ordering::Relaxed) {
        let (st, n) = (store.clone(), name.clone());
        let claimed = blocking(move || {
            let now = Timestamp::now().0;
            Ok(lock(&st).claim(&n, now, CLAIM, LEASE_NS)?)
        })
        .await;
        let claimed = match claimed {
            Ok(c) => {
                reported_store_error = false;
                c
            }
            Err(e) => {
                if !reported_store_error {
                    control(
                        &name,
                        format!("the delivery worker cannot read the outbox: {e}"),
                    );
                    reported_store_error = true;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if claimed.is_empty() {
            tokio::time::sleep(poll).await;
            continue;
        }
        let outcomes = match &sink {
            SinkRef::Log => claimed
                .iter()
                .map(|d| {
                    let m = &d.message;
                    eprintln!(
                        "alert {} v{} {}: [{}] {} — {} ({})",
                        m.alert_id, m.version, m.event, m.level, m.title, m.summary, m.key
                    );
                    Outcome::Delivered
                })
                .collect(),
            SinkRef::Sender(s) => send_round(s, &claimed).await,
        };
        let now = Timestamp::now().0;
        let mut results = Vec::with_capacity(claimed.len());
        let mut dead = Vec::new();
        let (mut ok, mut retried) = (0u64, 0u64);
        for (d, o) in claimed.iter().zip(outcomes) {
            let f = decide(&sink, d, o, now);
            match &f {
                Finish::Delivered => ok += 1,
                Finish::Retry { .. } => retried += 1,
                Finish::Dead { error } => dead.push((d.id, d.message.key.clone(), error.clone())),
            }
            results.push((d.id, f));
        }
        stats.count(&name, "delivered", ok);
        stats.count(&name, "retried", retried);
        stats.count(&name, "dead", dead.len() as u64);
        let (st, n) = (store.clone(), name.clone());
        if let Err(e) = blocking(move || Ok(lock(&st).finish(&n, now, &results)?)).await {
            // the leases keep these from being sent twice now; after a restart they go again
            control(
                &name,
                format!("the delivery worker cannot record outcomes: {e}"),
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        for (id, key, error) in dead {
            control(
                &name,
                format!(
                    "delivery {id} ({key}) to sink {name} was dead-lettered: {error}; replay it with `trailwarden alerts deliveries --retry {id}` or POST /v1/deliveries/{id}/retry"
                ),
            );
        }
    }
}

/// Send one claim: batched sinks at once, the others `concurrency` at a time.
async fn send_round(s: &Arc<Sender>, claimed: &[Delivery]) -> Vec<Outcome> {
    let msgs: Vec<AlertMessage> = claimed.iter().map(|d| d.message.clone()).collect();
    match s.cfg.kind {
        SinkKind::Alertmanager | SinkKind::Syslog => s.send_all(&msgs).await,
        _ => {
            use futures_util::stream::StreamExt;
            let conc = s.cfg.concurrency.max(1);
            let futs: Vec<_> = msgs
                .into_iter()
                .enumerate()
                .map(|(i, m)| {
                    let s = s.clone();
                    Box::pin(async move {
                        let o = s.send_all(std::slice::from_ref(&m)).await;
                        (i, o.into_iter().next().unwrap_or(Outcome::Delivered))
                    })
                        as std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>>
                })
                .collect();
            let mut indexed: Vec<(usize, Outcome)> = futures_util::stream::iter(futs)
                .buffer_unordered(conc)
                .collect()
                .await;
            indexed.sort_by_key(|(i, _)| *i);
            indexed.into_iter().map(|(_, o)| o).collect()
        }
    }
}

/// What to record for an attempt's outcome.
fn decide(sink: &SinkRef, d: &Delivery, o: Outcome, now: i64) -> Finish {
    let SinkRef::Sender(s) = sink else {
        return Finish::Delivered;
    };
    let c = &s.cfg;
    match o {
        Outcome::Delivered => Finish::Delivered,
        Outcome::Refused { error } => Finish::Dead {
            error: format!("refused by the receiver: {error}"),
        },
        Outcome::Retry { error, retry_after } => {
            let max_age = config::duration_ns(&c.max_age).unwrap_or(i64::MAX);
            let initial = config::duration_ns(&c.backoff_initial).unwrap_or(1_000_000_000);
            let max = config::duration_ns(&c.backoff_max).unwrap_or(300_000_000_000);
            let at = now + backoff(d.attempts, initial, max, retry_after, random());
            if d.attempts >= c.max_attempts {
                Finish::Dead {
                    error: format!("{} attempts, the last: {error}", d.attempts),
                }
            } else if at - d.queued_at > max_age {
                Finish::Dead {
                    error: format!(
                        "older than max_age {} after {} attempts, the last: {error}",
                        c.max_age, d.attempts
                    ),
                }
            } else {
                Finish::Retry { at, error }
            }
        }
    }
}

/// Alertmanager forgets an alert that is not re-sent within its resolve_timeout: re-send the
/// open alerts it has, every `resend_interval`.
async fn refresh_loop(s: Arc<Sender>, db: PathBuf, stop: Arc<AtomicBool>) {
    let every = Duration::from_nanos(
        config::duration_ns(&s.cfg.resend_interval).unwrap_or(60_000_000_000) as u64,
    );
    let Ok(store) = AlertStore::open(&db) else {
        return;
    };
    let store = Arc::new(Mutex::new(store));
    loop {
        let mut slept = Duration::ZERO;
        while slept < every {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let step = Duration::from_millis(200).min(every - slept);
            tokio::time::sleep(step).await;
            slept += step;
        }
        let (st, name) = (store.clone(), s.cfg.name.clone());
        if let Ok(msgs) = blocking(move || Ok(lock(&st).firing_on(&name)?)).await {
            let _ = s.refresh(&msgs).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        let s = 1_000_000_000;
        let first = backoff(1, s, 300 * s, None, 0);
        assert_eq!(first, s / 2, "equal jitter: at least half");
        assert!(backoff(1, s, 300 * s, None, u64::MAX) <= s);
        assert!(backoff(5, s, 300 * s, None, 0) >= 8 * s);
        assert!(backoff(30, s, 300 * s, None, u64::MAX) <= 300 * s);
        assert_eq!(
            backoff(1, s, 300 * s, Some(Duration::from_secs(30)), 0),
            30 * s
        );
    }
}
