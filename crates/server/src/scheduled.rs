//! The scheduler of `serve`: runs the scheduled query rules on their own thread (queries run on
//! their own runtime, never on the I/O one), window after window, recording each run in the
//! ledger and raising what it finds through the writer.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use trailwarden_alert::AlertStore;
use trailwarden_ledger::record::Access;
use trailwarden_model::Timestamp;
use trailwarden_pipeline::Pipeline;
use trailwarden_schedule::ScheduledRule;

/// Ingestion delay a window waits before it runs (late events still land in it).
pub const DELAY_NS: i64 = 60_000_000_000;

/// `alerts.db` meta key of a rule's last window end.
pub fn last_end_key(id: &str) -> String {
    format!("scheduled:{id}:last_end")
}

fn last_alert_key(id: &str) -> String {
    format!("scheduled:{id}:last_alert")
}

#[derive(Default, Clone)]
struct RuleStats {
    ok: u64,
    failed: u64,
    fired: u64,
    seconds: f64,
    last_run: Option<i64>,
}

/// Run counts and durations per rule.
#[derive(Default)]
pub struct Stats {
    rules: Mutex<BTreeMap<String, RuleStats>>,
}

impl Stats {
    /// The Prometheus exposition.
    pub fn render(&self) -> String {
        let g = crate::lock(&self.rules);
        let mut o = String::new();
        let _ = writeln!(o, "# HELP trailwarden_scheduled_rule_runs_total Scheduled-rule runs per rule and outcome (ok, failed, fired).\n# TYPE trailwarden_scheduled_rule_runs_total counter");
        for (id, s) in g.iter() {
            for (k, n) in [("ok", s.ok), ("failed", s.failed), ("fired", s.fired)] {
                let _ = writeln!(
                    o,
                    "trailwarden_scheduled_rule_runs_total{{rule_id=\"{id}\",outcome=\"{k}\"}} {n}"
                );
            }
        }
        let _ = writeln!(o, "# HELP trailwarden_scheduled_rule_seconds_total Time spent running each scheduled rule.\n# TYPE trailwarden_scheduled_rule_seconds_total counter");
        for (id, s) in g.iter() {
            let _ = writeln!(
                o,
                "trailwarden_scheduled_rule_seconds_total{{rule_id=\"{id}\"}} {}",
                s.seconds
            );
        }
        let _ = writeln!(o, "# HELP trailwarden_scheduled_rule_last_run_timestamp_seconds When each scheduled rule last ran.\n# TYPE trailwarden_scheduled_rule_last_run_timestamp_seconds gauge");
        for (id, s) in g.iter() {
            if let Some(t) = s.last_run {
                let _ = writeln!(
                    o,
                    "trailwarden_scheduled_rule_last_run_timestamp_seconds{{rule_id=\"{id}\"}} {}",
                    t as f64 / 1e9
                );
            }
        }
        o
    }
}

/// The scheduler's thread.
pub struct Scheduler {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Scheduler {
    /// Start running `rules` (the enabled ones) over the ledger in `data_dir`.
    pub fn start(
        rules: Vec<ScheduledRule>,
        data_dir: PathBuf,
        pipeline: Arc<Pipeline>,
        stats: Arc<Stats>,
        threads: usize,
    ) -> Scheduler {
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let handle = std::thread::Builder::new()
            .name("scheduled-rules".into())
            .spawn(move || run(rules, data_dir, pipeline, stats, threads, s2))
            .ok();
        Scheduler { stop, handle }
    }

    /// Stop after the run in progress.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn run(
    rules: Vec<ScheduledRule>,
    data_dir: PathBuf,
    pipeline: Arc<Pipeline>,
    stats: Arc<Stats>,
    threads: usize,
    stop: Arc<AtomicBool>,
) {
    let rules: Vec<ScheduledRule> = rules.into_iter().filter(|r| r.disabled.is_none()).collect();
    if rules.is_empty() {
        return;
    }
    let mut store = match AlertStore::open(data_dir.join("alerts.db")) {
        Ok(s) => s,
        Err(e) => {
            pipeline.control(
                "schedule",
                "Scheduled rules do not run",
                format!("the scheduler cannot open the alert store: {e}"),
            );
            return;
        }
    };
    while !stop.load(Ordering::Relaxed) {
        for r in &rules {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            if let Err(e) = tick(r, &data_dir, &pipeline, &stats, &mut store, threads, &stop) {
                pipeline.control_for(
                    "schedule",
                    Some(&r.id),
                    &format!("Scheduled rule {} did not run", r.title),
                    e,
                );
            }
        }
        for _ in 0..10 {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Run every window of `r` that is due, in order.
fn tick(
    r: &ScheduledRule,
    data_dir: &std::path::Path,
    pipeline: &Pipeline,
    stats: &Stats,
    store: &mut AlertStore,
    threads: usize,
    stop: &AtomicBool,
) -> Result<(), String> {
    let now = Timestamp::now().0;
    let key = last_end_key(&r.id);
    let last_end = match store.meta(&key).map_err(|e| e.to_string())? {
        Some(v) => v
            .parse::<i64>()
            .map_err(|e| format!("{key} = {v:?}: {e}"))?,
        None => {
            // first start with this rule: it begins with the next window (no backfill)
            let first = trailwarden_schedule::first_end(r, now, DELAY_NS);
            store
                .set_meta(&key, &first.to_string())
                .map_err(|e| e.to_string())?;
            return Ok(());
        }
    };
    for (start, end) in trailwarden_schedule::due_windows(r, last_end, now, DELAY_NS) {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let result = trailwarden_schedule::run(r, data_dir, start, end, threads)
            .or_else(|_| trailwarden_schedule::run(r, data_dir, start, end, threads));
        let target = format!(
            "scheduled rule {} ({}) window [{}, {})",
            r.id,
            r.title,
            Timestamp(start).to_rfc3339(),
            Timestamp(end).to_rfc3339()
        );
        let (rows, outcome) = match &result {
            Ok(x) => (
                x.rows,
                if x.fired { "fired" } else { "success" }.to_string(),
            ),
            Err(e) => (0, format!("failure: {e}")),
        };
        pipeline.access_blocking(Access {
            subject: "trailwarden-scheduler".into(),
            interface: "scheduler".into(),
            action: "scheduled-rule".into(),
            target,
            records: rows,
            outcome,
            origin: "local".into(),
        })?;
        {
            let mut g = crate::lock(&stats.rules);
            let s = g.entry(r.id.clone()).or_default();
            s.last_run = Some(Timestamp::now().0);
            match &result {
                Ok(x) => {
                    s.ok += 1;
                    s.seconds += x.seconds;
                    s.fired += u64::from(x.fired);
                }
                Err(_) => s.failed += 1,
            }
        }
        match result {
            Ok(x) if x.fired => {
                let lk = last_alert_key(&r.id);
                let last = store
                    .meta(&lk)
                    .map_err(|e| e.to_string())?
                    .and_then(|v| v.parse::<i64>().ok());
                let suppressed =
                    r.suppression_ns > 0 && last.is_some_and(|t| end - t < r.suppression_ns);
                if !suppressed {
                    pipeline.raise_blocking(x.alerts)?;
                    store
                        .set_meta(&lk, &end.to_string())
                        .map_err(|e| e.to_string())?;
                }
            }
            Ok(_) => {}
            Err(e) => {
                // recorded above as a failed run; the window is not run again
                pipeline.control_for(
                    "schedule",
                    Some(&r.id),
                    &format!("Scheduled rule {} failed", r.title),
                    format!("window [{}, {}): {e}", Timestamp(start), Timestamp(end)),
                );
            }
        }
        store
            .set_meta(&key, &end.to_string())
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}
