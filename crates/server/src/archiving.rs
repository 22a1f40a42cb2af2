//! The archive tier in `serve` (10.3.3, 10.5.1): a pass every `archive.interval_seconds` copies
//! what was sealed to object storage, then the writer evicts local copies past `hot_days`;
//! a lagging archive or an object that differs is a control failure (10.7). `GET /v1/archive`
//! and the `trailwarden_archive_*` metrics show where it stands.

use crate::http::AppState;
use crate::ServerError;
use serde::Serialize;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use trailwarden_archive::{Archive, ArchiveConfig, SyncReport};
use trailwarden_ledger::datadir::DataDir;
use trailwarden_model::Timestamp;

/// The title of the `archive-lag` control failure.
pub const LAG_TITLE: &str = "Audit log backup lagging or unreachable (PCI DSS 10.3.3)";

/// The last pass and running totals.
#[derive(Default)]
pub struct Stats {
    /// One pass at a time (the timer, `POST /v1/archive`, the stop).
    running: tokio::sync::Mutex<()>,
    last: Mutex<Option<Pass>>,
    bytes: AtomicU64,
    segments: AtomicU64,
    failures: AtomicU64,
    conflicts: AtomicU64,
    evicted: AtomicU64,
    lag_ms: AtomicU64,
    pending: AtomicU64,
}

/// One pass, as `/v1/archive` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Pass {
    /// When it ended.
    pub at: Timestamp,
    /// What it did (absent when the store could not be reached at all).
    pub sync: Option<SyncReport>,
    /// Why it could not run.
    pub error: Option<String>,
    /// Local copies evicted after it.
    pub evicted: Vec<(u64, u64)>,
}

impl Stats {
    /// The last pass.
    pub fn last(&self) -> Option<Pass> {
        crate::lock(&self.last).clone()
    }

    /// The Prometheus exposition.
    pub fn render(&self) -> String {
        let mut o = String::new();
        for (name, kind, help, v) in [
            (
                "trailwarden_archive_bytes_total",
                "counter",
                "Segment and seal bytes archived.",
                self.bytes.load(Ordering::Relaxed) as f64,
            ),
            (
                "trailwarden_archive_segments_total",
                "counter",
                "Segments archived and verified.",
                self.segments.load(Ordering::Relaxed) as f64,
            ),
            (
                "trailwarden_archive_failures_total",
                "counter",
                "Archive passes or segment uploads that failed.",
                self.failures.load(Ordering::Relaxed) as f64,
            ),
            (
                "trailwarden_archive_conflicts_total",
                "counter",
                "Archived objects found with other bytes than the ledger's (integrity incidents).",
                self.conflicts.load(Ordering::Relaxed) as f64,
            ),
            (
                "trailwarden_archive_evicted_segments_total",
                "counter",
                "Local copies removed after the hot period.",
                self.evicted.load(Ordering::Relaxed) as f64,
            ),
            (
                "trailwarden_archive_lag_seconds",
                "gauge",
                "Seconds since the oldest segment still waiting for the archive was sealed.",
                self.lag_ms.load(Ordering::Relaxed) as f64 / 1e3,
            ),
            (
                "trailwarden_archive_pending_segments",
                "gauge",
                "Sealed segments not archived yet.",
                self.pending.load(Ordering::Relaxed) as f64,
            ),
        ] {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        }
        o
    }
}

/// Check the archive before serving: a configuration or credential error stops the start with
/// a clear message; an unreachable store does not (the passes retry and alert while it lags).
pub async fn check_at_start(cfg: &ArchiveConfig) -> Result<Option<String>, ServerError> {
    if cfg.url.is_none() {
        return Ok(None);
    }
    let a = Archive::open(cfg).map_err(|e| ServerError::Config(e.to_string()))?;
    match a.probe().await {
        Ok(()) => Ok(None),
        Err(e) if e.is_transient() => Ok(Some(format!(
            "archive {} unreachable at start ({e}); archiving will retry",
            a.url()
        ))),
        Err(e) => Err(ServerError::Config(format!("archive {}: {e}", a.url()))),
    }
}

/// Start the passes (when `[archive] url` is set).
pub fn spawn(s: Arc<AppState>) {
    if s.cfg.archive.url.is_none() {
        return;
    }
    tokio::spawn(async move {
        let every = Duration::from_secs(s.cfg.archive.interval_seconds.max(1));
        loop {
            pass(&s).await;
            tokio::time::sleep(every).await;
        }
    });
}

/// At a clean stop with an archive configured: seal what the WAL holds, whatever its size, and
/// run a last pass (bounded by `archive.request_timeout_seconds` × 3), so a stopped server
/// leaves nothing acknowledged only on its local disk when the store is reachable.
pub async fn at_stop(s: &AppState) {
    if s.cfg.archive.url.is_none() {
        return;
    }
    let sealed = s
        .pipeline
        .maintain(Box::new(|l| {
            l.rotate()
                .and_then(|_| l.wait_for_seals())
                .map(|_| serde_json::Value::Null)
                .map_err(|e| e.to_string())
        }))
        .await;
    if let Err(e) = sealed {
        eprintln!("warning: sealing the tail for the archive at stop: {e}");
        return;
    }
    let limit = Duration::from_secs(s.cfg.archive.request_timeout_seconds.max(1) * 3);
    match tokio::time::timeout(limit, pass(s)).await {
        Ok(p) if p.error.is_none() => {}
        Ok(p) => eprintln!(
            "warning: the last archive pass failed: {}",
            p.error.unwrap_or_default()
        ),
        Err(_) => eprintln!("warning: the last archive pass did not finish in {limit:?}; the next start archives the rest"),
    }
}

/// One pass: sync, record, alert, evict.
pub async fn pass(s: &AppState) -> Pass {
    let cfg = s.cfg.archive.clone();
    let dir = DataDir::new(&s.data_dir);
    let st = &s.archive;
    let _one = st.running.lock().await;
    // a fresh store each pass: the per-object lock date is fixed when it is opened. The pass
    // reads segments and fsyncs the manifest: off the I/O runtime, on a runtime of its own.
    let (c, d) = (cfg.clone(), dir.clone());
    let synced = tokio::task::spawn_blocking(move || {
        let a = Archive::open(&c).map_err(|e| e.to_string())?;
        trailwarden_archive::block_on(a.sync(&d))
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r);
    let url = cfg.url.clone().unwrap_or_default();
    let (sync, error) = match synced {
        Ok(r) => (Some(r), None),
        Err(e) => (None, Some(e)),
    };
    // lag from the manifest whatever happened
    let status = trailwarden_archive::local_status(&dir, None).unwrap_or_default();
    let waiting: Vec<f64> = status.iter().filter_map(|x| x.lag_seconds).collect();
    let lag = waiting.iter().copied().fold(0.0, f64::max);
    st.lag_ms.store((lag * 1e3) as u64, Ordering::Relaxed);
    st.pending.store(waiting.len() as u64, Ordering::Relaxed);
    if let Some(r) = &sync {
        st.bytes.fetch_add(r.bytes, Ordering::Relaxed);
        st.segments
            .fetch_add(r.uploaded.len() as u64, Ordering::Relaxed);
        st.failures
            .fetch_add(r.failures.len() as u64, Ordering::Relaxed);
        st.conflicts
            .fetch_add(r.conflicts.len() as u64, Ordering::Relaxed);
        if !r.conflicts.is_empty() {
            s.pipeline.control(
                "archive-integrity",
                "Archive integrity incident: an archived object differs from the ledger",
                format!("{}: {}", url, r.conflicts.join("; ")),
            );
        }
    } else {
        st.failures.fetch_add(1, Ordering::Relaxed);
    }
    if lag > cfg.max_lag_seconds as f64 {
        let why = error
            .clone()
            .or_else(|| sync.as_ref().and_then(|r| r.failures.first().cloned()))
            .unwrap_or_else(|| "no error reported".into());
        s.pipeline.control(
            "archive-lag",
            LAG_TITLE,
            format!(
                "{} sealed segment(s) not in the archive {url}, the oldest sealed {lag:.0} s ago (archive.max_lag_seconds = {}); last error: {why}",
                waiting.len(),
                cfg.max_lag_seconds
            ),
        );
    }
    // hot tier: local copies past hot_days go, once archived and verified
    let before = Timestamp(Timestamp::now().0 - i64::from(cfg.hot_days) * 86_400 * 1_000_000_000);
    let u = url.clone();
    let mut error = error;
    let evicted: Vec<(u64, u64)> = if !trailwarden_archive::marks_refer_to(&dir, &url) {
        Vec::new()
    } else {
        let r = s
            .pipeline
            .maintain(Box::new(move |l| {
                trailwarden_ledger::retention::evict(l, before, &u)
                    .map_err(|e| e.to_string())
                    .and_then(|v| serde_json::to_value(v).map_err(|e| e.to_string()))
            }))
            .await
            .and_then(|v| serde_json::from_value(v).map_err(|e| e.to_string()));
        r.unwrap_or_else(|e| {
            // not silent: counted, shown by /v1/archive, and a control failure
            st.failures.fetch_add(1, Ordering::Relaxed);
            s.pipeline.control(
                "archive-evict",
                "Evicting archived segments from the hot tier failed",
                format!("{url}: {e}"),
            );
            error = Some(format!("eviction: {e}"));
            Vec::new()
        })
    };
    st.evicted
        .fetch_add(evicted.len() as u64, Ordering::Relaxed);
    let p = Pass {
        at: Timestamp::now(),
        sync,
        error,
        evicted,
    };
    *crate::lock(&st.last) = Some(p.clone());
    p
}
