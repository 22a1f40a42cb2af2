//! Metrics in the Prometheus text exposition format (`GET /metrics`), and the per-source
//! statistics behind `GET /v1/sources`.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use trailwarden_model::Timestamp;

/// Upper bounds of the commit (write + fdatasync) latency histogram, in seconds.
pub const FSYNC_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// What one source (an endpoint and who sends through it) has sent.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SourceStats {
    /// Endpoint or listener (`k8s-audit`, `aks`, `app`, `azure`, `syslog`).
    pub endpoint: String,
    /// Who sends (token, certificate or peer address).
    pub sender: String,
    /// Events stored.
    pub events: u64,
    /// Records quarantined.
    pub quarantined: u64,
    /// Latest event time seen.
    pub last_event_time: Option<Timestamp>,
    /// When the last batch arrived.
    pub last_received: Option<Timestamp>,
    /// The latest event time of the last batch (its skew against `last_received` is the
    /// sender's clock, 10.6).
    pub last_batch_event_time: Option<Timestamp>,
    /// Events per second over the last minute.
    pub rate_per_second: f64,
    /// (second, events) of the last 60 seconds.
    #[serde(skip)]
    window: VecDeque<(i64, u64)>,
    /// (arrival, latest event time of the batch) of the last batches, oldest first.
    #[serde(skip)]
    pub recent: VecDeque<(i64, Option<i64>)>,
}

#[derive(Default)]
struct Inner {
    events: BTreeMap<(String, String), u64>,
    bytes: BTreeMap<String, u64>,
    quarantined: BTreeMap<String, u64>,
    last_event: BTreeMap<String, i64>,
    rule_matches: BTreeMap<String, u64>,
    http: BTreeMap<(String, u16), u64>,
    auth_failures: BTreeMap<String, u64>,
    rejected: BTreeMap<String, u64>,
    fsync_counts: [u64; FSYNC_BUCKETS.len()],
    fsync_count: u64,
    fsync_sum: f64,
    last_verify: Option<(i64, bool)>,
    sources: BTreeMap<(String, String), SourceStats>,
}

/// The registry.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
    /// Events waiting for the writer.
    pub queue_events: AtomicU64,
    /// Bytes waiting for the writer.
    pub queue_bytes: AtomicU64,
    /// Records in the ledger.
    pub ledger_size: AtomicU64,
    /// 1 while free disk is under the threshold.
    pub disk_low: AtomicU64,
    /// Free bytes on the data directory's file system at the last check.
    pub disk_free: AtomicU64,
}

/// Per-format counts of one stored batch.
#[derive(Default, Debug, Clone)]
pub struct BatchCounts {
    /// Events per format.
    pub by_format: BTreeMap<String, u64>,
    /// Quarantined records.
    pub quarantined: u64,
    /// Latest event time.
    pub last_event: Option<Timestamp>,
}

impl BatchCounts {
    /// Count one record.
    pub fn add(&mut self, rec: &trailwarden_model::Record) {
        match &rec.body {
            trailwarden_model::Body::Event(ev) => {
                *self
                    .by_format
                    .entry(ev.format.as_str().to_string())
                    .or_default() += 1;
                if let Some(t) = ev.time {
                    self.last_event = Some(self.last_event.map_or(t, |x| x.max(t)));
                }
            }
            trailwarden_model::Body::Quarantine(_) => self.quarantined += 1,
            trailwarden_model::Body::Internal => {}
        }
    }
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        crate::lock(&self.inner)
    }

    /// Count request bytes received on an endpoint.
    pub fn bytes(&self, endpoint: &str, n: u64) {
        *self.lock().bytes.entry(endpoint.to_string()).or_default() += n;
    }

    /// Count a durable batch.
    pub fn stored(&self, endpoint: &str, sender: &str, c: &BatchCounts) {
        let now = Timestamp::now();
        let mut g = self.lock();
        let mut total = 0;
        for (f, n) in &c.by_format {
            *g.events
                .entry((endpoint.to_string(), f.clone()))
                .or_default() += n;
            total += n;
        }
        if c.quarantined > 0 {
            *g.quarantined.entry(endpoint.to_string()).or_default() += c.quarantined;
        }
        if let Some(t) = c.last_event {
            let e = g.last_event.entry(endpoint.to_string()).or_insert(t.0);
            *e = (*e).max(t.0);
        }
        let s = g
            .sources
            .entry((endpoint.to_string(), sender.to_string()))
            .or_insert_with(|| SourceStats {
                endpoint: endpoint.to_string(),
                sender: sender.to_string(),
                ..SourceStats::default()
            });
        s.events += total;
        s.quarantined += c.quarantined;
        if let Some(t) = c.last_event {
            s.last_event_time = Some(s.last_event_time.map_or(t, |x| x.max(t)));
        }
        s.last_batch_event_time = c.last_event;
        s.last_received = Some(now);
        s.recent.push_back((now.0, c.last_event.map(|t| t.0)));
        if s.recent.len() > 64 {
            s.recent.pop_front();
        }
        let sec = now.0 / 1_000_000_000;
        match s.window.back_mut() {
            Some((t, n)) if *t == sec => *n += total,
            _ => s.window.push_back((sec, total)),
        }
        while s.window.front().is_some_and(|(t, _)| *t <= sec - 60) {
            s.window.pop_front();
        }
    }

    /// The sources, with their rate over the last minute.
    pub fn sources(&self) -> Vec<SourceStats> {
        let sec = Timestamp::now().0 / 1_000_000_000;
        self.lock()
            .sources
            .values()
            .map(|s| {
                let mut s = s.clone();
                let n: u64 = s
                    .window
                    .iter()
                    .filter(|(t, _)| *t > sec - 60)
                    .map(|(_, n)| n)
                    .sum();
                s.rate_per_second = n as f64 / 60.0;
                s
            })
            .collect()
    }

    /// Observe one commit's latency.
    pub fn fsync(&self, seconds: f64) {
        let mut g = self.lock();
        for (i, b) in FSYNC_BUCKETS.iter().enumerate() {
            if seconds <= *b {
                g.fsync_counts[i] += 1;
            }
        }
        g.fsync_count += 1;
        g.fsync_sum += seconds;
    }

    /// Count rule matches.
    pub fn rule_matches(&self, totals: &BTreeMap<String, u64>) {
        let mut g = self.lock();
        for (k, v) in totals {
            g.rule_matches.insert(k.clone(), *v);
        }
    }

    /// Rule matches per rule id since the start.
    pub fn rule_match_totals(&self) -> BTreeMap<String, u64> {
        self.lock().rule_matches.clone()
    }

    /// Count an HTTP answer.
    pub fn http(&self, route: &str, code: u16) {
        *self
            .lock()
            .http
            .entry((route.to_string(), code))
            .or_default() += 1;
    }

    /// Count a refused authentication or authorization.
    pub fn auth_failure(&self, kind: &str) {
        *self
            .lock()
            .auth_failures
            .entry(kind.to_string())
            .or_default() += 1;
    }

    /// Count a refused batch (`backpressure`, `disk`, `stopping`).
    pub fn rejected(&self, why: &str) {
        *self.lock().rejected.entry(why.to_string()).or_default() += 1;
    }

    /// The last verification's time and result.
    pub fn verified(&self, at: Timestamp, ok: bool) {
        self.lock().last_verify = Some((at.0, ok));
    }

    /// Render everything; `alerts` are the counts per state (read from the store at scrape time).
    pub fn render(&self, alerts: &[(String, u64)]) -> String {
        let g = self.lock();
        let mut o = String::with_capacity(4096);
        let head = |o: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        head(
            &mut o,
            "trailwarden_ingest_events_total",
            "counter",
            "Events stored, per source endpoint and format.",
        );
        for ((s, f), n) in &g.events {
            let _ = writeln!(
                o,
                "trailwarden_ingest_events_total{{source=\"{}\",format=\"{}\"}} {n}",
                esc(s),
                esc(f)
            );
        }
        head(
            &mut o,
            "trailwarden_ingest_bytes_total",
            "counter",
            "Request bytes received, per source endpoint (as sent, before decompression).",
        );
        for (s, n) in &g.bytes {
            let _ = writeln!(
                o,
                "trailwarden_ingest_bytes_total{{source=\"{}\"}} {n}",
                esc(s)
            );
        }
        head(
            &mut o,
            "trailwarden_quarantined_records_total",
            "counter",
            "Records that could not be parsed, stored in quarantine with their raw bytes.",
        );
        for (s, n) in &g.quarantined {
            let _ = writeln!(
                o,
                "trailwarden_quarantined_records_total{{source=\"{}\"}} {n}",
                esc(s)
            );
        }
        head(
            &mut o,
            "trailwarden_last_event_timestamp_seconds",
            "gauge",
            "Time of the newest event received, per source endpoint.",
        );
        for (s, t) in &g.last_event {
            let _ = writeln!(
                o,
                "trailwarden_last_event_timestamp_seconds{{source=\"{}\"}} {}",
                esc(s),
                *t as f64 / 1e9
            );
        }
        head(
            &mut o,
            "trailwarden_commit_fsync_seconds",
            "histogram",
            "Ledger commit latency (write + fdatasync).",
        );
        for (i, b) in FSYNC_BUCKETS.iter().enumerate() {
            let _ = writeln!(
                o,
                "trailwarden_commit_fsync_seconds_bucket{{le=\"{b}\"}} {}",
                g.fsync_counts[i]
            );
        }
        let _ = writeln!(
            o,
            "trailwarden_commit_fsync_seconds_bucket{{le=\"+Inf\"}} {}",
            g.fsync_count
        );
        let _ = writeln!(o, "trailwarden_commit_fsync_seconds_sum {}", g.fsync_sum);
        let _ = writeln!(
            o,
            "trailwarden_commit_fsync_seconds_count {}",
            g.fsync_count
        );
        head(
            &mut o,
            "trailwarden_queue_events",
            "gauge",
            "Events waiting for the ledger writer.",
        );
        let _ = writeln!(
            o,
            "trailwarden_queue_events {}",
            self.queue_events.load(Ordering::Relaxed)
        );
        head(
            &mut o,
            "trailwarden_queue_bytes",
            "gauge",
            "Bytes waiting for the ledger writer.",
        );
        let _ = writeln!(
            o,
            "trailwarden_queue_bytes {}",
            self.queue_bytes.load(Ordering::Relaxed)
        );
        head(&mut o, "trailwarden_ingest_rejected_total", "counter", "Batches refused with 429/503 (backpressure, low disk, stopping); each raises a control-failure alert.");
        for (s, n) in &g.rejected {
            let _ = writeln!(
                o,
                "trailwarden_ingest_rejected_total{{reason=\"{}\"}} {n}",
                esc(s)
            );
        }
        head(
            &mut o,
            "trailwarden_rule_matches_total",
            "counter",
            "Detections per rule.",
        );
        for (r, n) in &g.rule_matches {
            let _ = writeln!(
                o,
                "trailwarden_rule_matches_total{{rule_id=\"{}\"}} {n}",
                esc(r)
            );
        }
        head(&mut o, "trailwarden_alerts", "gauge", "Alerts per state.");
        for (s, n) in alerts {
            let _ = writeln!(o, "trailwarden_alerts{{state=\"{}\"}} {n}", esc(s));
        }
        head(
            &mut o,
            "trailwarden_ledger_records",
            "gauge",
            "Records in the ledger (durable).",
        );
        let _ = writeln!(
            o,
            "trailwarden_ledger_records {}",
            self.ledger_size.load(Ordering::Relaxed)
        );
        head(
            &mut o,
            "trailwarden_disk_free_bytes",
            "gauge",
            "Free bytes on the data directory's file system.",
        );
        let _ = writeln!(
            o,
            "trailwarden_disk_free_bytes {}",
            self.disk_free.load(Ordering::Relaxed)
        );
        head(
            &mut o,
            "trailwarden_disk_low",
            "gauge",
            "1 while free disk is under ingest.min_free_disk_bytes (ingest answers 503).",
        );
        let _ = writeln!(
            o,
            "trailwarden_disk_low {}",
            self.disk_low.load(Ordering::Relaxed)
        );
        head(
            &mut o,
            "trailwarden_last_verify_success",
            "gauge",
            "1 if the last integrity verification passed, 0 if it failed.",
        );
        head(
            &mut o,
            "trailwarden_last_verify_timestamp_seconds",
            "gauge",
            "When the last integrity verification finished.",
        );
        if let Some((t, ok)) = g.last_verify {
            let _ = writeln!(o, "trailwarden_last_verify_success {}", u8::from(ok));
            let _ = writeln!(
                o,
                "trailwarden_last_verify_timestamp_seconds {}",
                t as f64 / 1e9
            );
        }
        head(
            &mut o,
            "trailwarden_http_requests_total",
            "counter",
            "HTTP answers per route and status code.",
        );
        for ((r, c), n) in &g.http {
            let _ = writeln!(
                o,
                "trailwarden_http_requests_total{{route=\"{}\",code=\"{c}\"}} {n}",
                esc(r)
            );
        }
        head(
            &mut o,
            "trailwarden_auth_failures_total",
            "counter",
            "Refused authentications (unauthenticated) and authorizations (forbidden).",
        );
        for (k, n) in &g.auth_failures {
            let _ = writeln!(
                o,
                "trailwarden_auth_failures_total{{kind=\"{}\"}} {n}",
                esc(k)
            );
        }
        o
    }
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_and_labels_are_escaped() {
        let m = Metrics::default();
        m.fsync(0.0007);
        m.fsync(0.02);
        let mut c = BatchCounts::default();
        c.by_format.insert("k8s-audit".into(), 3);
        m.stored("k8s\"x", "t", &c);
        let text = m.render(&[("new".into(), 2)]);
        assert!(
            text.contains("trailwarden_commit_fsync_seconds_bucket{le=\"0.001\"} 1"),
            "{text}"
        );
        assert!(text.contains("trailwarden_commit_fsync_seconds_bucket{le=\"0.025\"} 2"));
        assert!(text.contains("trailwarden_commit_fsync_seconds_count 2"));
        assert!(text.contains("source=\"k8s\\\"x\",format=\"k8s-audit\"} 3"));
        assert!(text.contains("trailwarden_alerts{state=\"new\"} 2"));
        assert_eq!(m.sources()[0].events, 3);
    }
}
