//! Control-failure incidents (PCI DSS 10.7.1–10.7.3): a failure of the logging or monitoring
//! controls with its start, end, duration, control, affected subject, cause and remediation.
//!
//! An incident *is* a control-failure alert (`trailwarden-control-<kind>`, group
//! `control|<kind>|<subject>`): raised by the pipeline when the control fails (every state
//! change is a ledger record), closed by `serve` when it sees the control work again
//! (see [`recovered`]) or by a person with a remediation note. The incident view adds what
//! 10.7.3 asks to document: start (first failure), end (the closing change), duration, cause
//! (the alert's summary) and remediation (the closing note and who wrote it).

use serde::{Deserialize, Serialize};
use trailwarden_alert::Alert;
use trailwarden_model::Timestamp;

/// The rule-id prefix of control-failure alerts.
pub const PREFIX: &str = "trailwarden-control-";

/// One incident.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// The alert id.
    pub id: i64,
    /// Which control: `backpressure`, `disk-low`, `ledger-write`, `detection`, `verify`,
    /// `delivery`, `review`, `silent-source`, `clock-skew`, …
    pub control: String,
    /// What within it (a sink, a source, a review), if any.
    pub subject: Option<String>,
    /// `open` or `closed`.
    pub state: String,
    /// First failure.
    pub start: Timestamp,
    /// Last time the failure was seen.
    pub last_seen: Timestamp,
    /// When it was closed.
    pub end: Option<Timestamp>,
    /// End − start (or now − start while open), seconds.
    pub duration_seconds: i64,
    /// Failures merged into it.
    pub occurrences: u64,
    /// What happened (the alert's summary).
    pub cause: String,
    /// The closing note (what restored the function), and who closed it.
    pub remediation: Option<String>,
    /// Who closed it (`trailwarden` when the control was seen working again).
    pub closed_by: Option<String>,
    /// Title.
    pub title: String,
}

/// The incident of a control-failure alert (`None` for other alerts).
pub fn incident(a: &Alert, now: i64) -> Option<Incident> {
    let control = a.rule_id.strip_prefix(PREFIX)?.to_string();
    let subject = a
        .group_key
        .strip_prefix(&format!("control|{control}|"))
        .map(str::to_string);
    let close = a.history.iter().rev().find(|c| !c.to.is_open());
    let closed = !a.status.is_open();
    let end = if closed { close.map(|c| c.at) } else { None };
    let start = a.first_seen.min(a.created_at);
    Some(Incident {
        id: a.id,
        control,
        subject,
        state: if closed { "closed" } else { "open" }.into(),
        start: Timestamp(start),
        last_seen: Timestamp(a.last_seen),
        end: end.map(Timestamp),
        duration_seconds: (end.unwrap_or(now) - start).max(0) / 1_000_000_000,
        occurrences: a.count,
        cause: a.summary.clone(),
        remediation: if closed {
            close.map(|c| c.note.clone())
        } else {
            None
        },
        closed_by: if closed {
            close.map(|c| c.actor.clone())
        } else {
            None
        },
        title: a.title.clone(),
    })
}

/// Every incident among `alerts`, newest first.
pub fn incidents(alerts: &[Alert], now: i64) -> Vec<Incident> {
    let mut v: Vec<Incident> = alerts.iter().filter_map(|a| incident(a, now)).collect();
    v.sort_by(|a, b| b.start.cmp(&a.start).then(b.id.cmp(&a.id)));
    v
}

/// What `serve` knows about the controls now, to close incidents whose control works again.
#[derive(Clone, Debug, Default)]
pub struct Health {
    /// Now.
    pub now: i64,
    /// Free disk is above the floor again.
    pub disk_ok: bool,
    /// The last batch refused for backpressure (ns), if any.
    pub last_backpressure: Option<i64>,
    /// Last successful delivery per sink (ns).
    pub sink_success: Vec<(String, i64)>,
    /// The last verification: (finished at, ok).
    pub verify: Option<(i64, bool)>,
    /// Signed-off review ids.
    pub signed_reviews: Vec<String>,
    /// Live sources and when each last sent (ns).
    pub source_last: Vec<(String, i64)>,
    /// Live sources whose recent batches are within the clock-skew threshold again.
    pub skew_ok: Vec<String>,
}

/// Live sources watched between ticks of `serve`'s reviewer thread: arrivals (for the usual
/// gap) and clock-skew samples, to open and close `silent-source` and `clock-skew` incidents
/// as they happen (the daily review reports both over its whole period).
#[derive(Default)]
pub struct SourceWatch {
    sources: std::collections::BTreeMap<String, Watched>,
}

#[derive(Default)]
struct Watched {
    last: i64,
    gaps: std::collections::VecDeque<i64>,
    /// Consecutive samples past the threshold (> 0) or within it (< 0).
    skew_run: i32,
    silent: bool,
    skewed: bool,
}

/// A source's last batches: (arrival ns, latest event time of the batch ns), oldest first.
pub type Batches = Vec<(i64, Option<i64>)>;

/// What [`SourceWatch::observe`] found: incidents to open (control, source, title, summary).
pub type Openings = Vec<(&'static str, String, String, String)>;

/// Gaps remembered per source.
const GAPS: usize = 4096;
/// Samples in a row that open or close a clock-skew incident.
const SKEW_RUN: i32 = 3;

impl SourceWatch {
    /// Take one observation of every live source: (label, its last batches as (arrival ns,
    /// latest event time of the batch ns), oldest first). Returns the incidents to open;
    /// [`Self::health`] says which ones may close.
    pub fn observe(
        &mut self,
        now: i64,
        seen: &[(String, Batches)],
        s: &crate::review::Settings,
    ) -> Openings {
        let mut out = Vec::new();
        for (src, batches) in seen {
            let w = self.sources.entry(src.clone()).or_default();
            let seen_until = w.last;
            for (last, event) in batches.iter().filter(|(t, _)| *t > seen_until) {
                if w.last > 0 {
                    w.gaps.push_back(*last - w.last);
                    if w.gaps.len() > GAPS {
                        w.gaps.pop_front();
                    }
                }
                w.last = *last;
                w.silent = false;
                if let Some(e) = event {
                    let skew = e - last;
                    let limit = if skew < 0 {
                        s.skew + s.allowance
                    } else {
                        s.skew
                    };
                    if skew.abs() > limit {
                        w.skew_run = w.skew_run.max(0) + 1;
                    } else {
                        w.skew_run = w.skew_run.min(0) - 1;
                    }
                    if w.skew_run >= SKEW_RUN && !w.skewed {
                        w.skewed = true;
                        out.push((
                            "clock-skew",
                            src.clone(),
                            format!("Clock skew on {src}"),
                            format!(
                                "event times {} arrival by {} s in {SKEW_RUN} batches in a row (threshold {} s, +{} s batching allowance when behind); check the sender's time synchronization (10.6.1)",
                                if skew > 0 { "ahead of" } else { "behind" },
                                skew.abs() / 1_000_000_000,
                                s.skew / 1_000_000_000,
                                s.allowance / 1_000_000_000
                            ),
                        ));
                    }
                    if w.skew_run <= -SKEW_RUN {
                        w.skewed = false;
                    }
                }
            }
            let quiet = now - w.last;
            if let Some((limit, expected)) =
                s.silence_threshold(src, w.gaps.iter().copied().collect())
            {
                if quiet > limit && !w.silent {
                    w.silent = true;
                    out.push((
                        "silent-source",
                        src.clone(),
                        format!("{src} went silent"),
                        format!(
                            "nothing received since {} ({} s; threshold {} s, {})",
                            Timestamp(w.last),
                            quiet / 1_000_000_000,
                            limit / 1_000_000_000,
                            if expected {
                                "configured"
                            } else {
                                "learned from its usual gap"
                            }
                        ),
                    ));
                }
            }
        }
        out
    }

    /// Sources as [`Health`] needs them: last arrivals, and those whose skew is fine again.
    pub fn health(&self) -> (Vec<(String, i64)>, Vec<String>) {
        (
            self.sources
                .iter()
                .map(|(k, w)| (k.clone(), w.last))
                .collect(),
            self.sources
                .iter()
                .filter(|(_, w)| w.skew_run <= -SKEW_RUN)
                .map(|(k, _)| k.clone())
                .collect(),
        )
    }
}

/// Quiet time after which a refusal-type failure counts as over.
pub const QUIET_NS: i64 = 5 * 60 * 1_000_000_000;

/// Whether the control of open incident `i` works again, and the evidence (the closing
/// note). Failures that need a person (ledger write, detection) never close by themselves.
pub fn recovered(i: &Incident, h: &Health) -> Option<String> {
    if i.state != "open" {
        return None;
    }
    let last = i.last_seen.0;
    match i.control.as_str() {
        "disk-low" if h.disk_ok && h.now - last > 60_000_000_000 => Some(format!(
            "closed by trailwarden: free disk space above ingest.min_free_disk_bytes again; no refusal since {}",
            Timestamp(last)
        )),
        "backpressure"
            if h.now - last > QUIET_NS && h.last_backpressure.is_none_or(|t| t <= last) =>
        {
            Some(format!(
                "closed by trailwarden: ingest accepted everything for {} minutes since the last refusal at {}",
                QUIET_NS / 60_000_000_000,
                Timestamp(last)
            ))
        }
        "delivery" => {
            let sink = i.subject.as_deref()?;
            let (_, t) = h.sink_success.iter().find(|(s, t)| s == sink && *t > last)?;
            Some(format!(
                "closed by trailwarden: sink {sink} took a delivery again at {}",
                Timestamp(*t)
            ))
        }
        "verify" => match h.verify {
            Some((t, true)) if t > last => Some(format!(
                "closed by trailwarden: the ledger verified ok at {}",
                Timestamp(t)
            )),
            _ => None,
        },
        "silent-source" => {
            let src = i.subject.as_deref()?;
            let (_, t) = h.source_last.iter().find(|(s, t)| s == src && *t > last)?;
            Some(format!(
                "closed by trailwarden: {src} sent again at {}",
                Timestamp(*t)
            ))
        }
        "clock-skew" => {
            let src = i.subject.as_deref()?;
            h.skew_ok.iter().any(|s| s == src).then(|| {
                format!("closed by trailwarden: {src}'s event times are back within the threshold")
            })
        }
        "review" => {
            let id = i.subject.as_deref()?;
            h.signed_reviews
                .iter()
                .any(|r| r == id)
                .then(|| format!("closed by trailwarden: review {id} was signed off"))
        }
        _ => None,
    }
}
