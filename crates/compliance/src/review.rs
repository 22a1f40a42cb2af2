//! Log reviews (PCI DSS 10.4.1, 10.4.1.1, 10.4.2, 10.4.3): what a reviewer reads each day.
//!
//! A review covers one period (a day in the configured UTC offset by default). Events belong to
//! the period of their own time (a backfill lands where it happened; an event without a time
//! goes by its receive time); the trail's own records (reads, lifecycle, quarantine) by their
//! receive time. `serve` generates a day's review a while after the day ends, so late arrivals
//! are in; the review states the ledger records it read. It holds:
//! events per 10.2.1.x category per source, admin actions by identity, reads of audit data and
//! refused requests, lifecycle records, alerts raised / open / resolved by level, the exceptions
//! (overdue alerts, control failures, failed verification, quarantined records, silent sources,
//! clock skew, time changes), identities and source IPs first seen in the period, and the
//! verification result with the checkpoint it covers. Its SHA-256 over the canonical JSON is
//! what the ledger record and the sign-off bind.

use crate::ComplianceError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use trailwarden_alert::{Alert, Change};
use trailwarden_ledger::reader::LedgerReader;
use trailwarden_ledger::record::Access;
use trailwarden_model::pci::glob_match;
use trailwarden_model::time::{civil_from_days, days_from_civil, NANOS_PER_SEC};
use trailwarden_model::{PciCategory, RecordKind, Timestamp};

const HOUR: i64 = 3600 * NANOS_PER_SEC;
const DAY: i64 = 24 * HOUR;

/// How reviews are made.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReviewConfig {
    /// The periods' time zone as a UTC offset (`+00:00`, `-05:00`, `+05:30`).
    pub utc_offset: String,
    /// Time to resolve an alert, per level (`critical = "4h"`): past it, an open alert is an
    /// exception of the review (10.4.3).
    pub sla: BTreeMap<String, String>,
    /// A source seen in the last 7 days is silent when it sends nothing for longer than this
    /// many times its usual gap (the 95th percentile of its gaps) …
    pub silence_multiple: f64,
    /// … and at least this long.
    pub silence_min: String,
    /// Sources that must keep sending (a glob of the source label → the longest silence).
    pub expected_sources: BTreeMap<String, String>,
    /// Event time this far from receive time is clock skew (10.6) …
    pub skew_threshold: String,
    /// … after allowing this much delay for batching senders (the audit webhook's
    /// `--audit-webhook-batch-max-wait` is 30 s by default).
    pub batch_allowance: String,
    /// Sign-off expected within this long after the period ends; later, an alert is raised.
    pub sign_off_within: String,
    /// Periodic reviews of other logs (10.4.2), beside the daily one.
    pub periodic: Vec<PeriodicReview>,
}

/// A periodic review (10.4.2): `[[review.periodic]] name = "weekly-nodes", days = 7`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodicReview {
    /// The review's kind (its ids are `<name>-<first day>`).
    pub name: String,
    /// Days per period (periods start on days whose number since 1970-01-01 is a multiple).
    pub days: i64,
}

impl Default for ReviewConfig {
    fn default() -> ReviewConfig {
        ReviewConfig {
            utc_offset: "+00:00".into(),
            sla: [
                ("critical", "4h"),
                ("high", "24h"),
                ("medium", "3d"),
                ("low", "7d"),
                ("informational", "30d"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            silence_multiple: 10.0,
            silence_min: "30m".into(),
            expected_sources: BTreeMap::new(),
            skew_threshold: "2m".into(),
            batch_allowance: "30s".into(),
            sign_off_within: "36h".into(),
            periodic: Vec::new(),
        }
    }
}

fn dur(what: &str, s: &str) -> Result<i64, ComplianceError> {
    if s.trim() == "0" {
        return Ok(0);
    }
    trailwarden_model::parse_duration(s)
        .map_err(|e| ComplianceError::Config(format!("{what}: {e}")))
}

/// Parse `+HH:MM` / `-HH:MM` / `Z` into seconds east of UTC.
pub fn parse_offset(s: &str) -> Result<i64, ComplianceError> {
    let bad = || ComplianceError::Config(format!("utc_offset {s:?}: expected +HH:MM, -HH:MM or Z"));
    let t = s.trim();
    if t == "Z" || t == "UTC" {
        return Ok(0);
    }
    let (sign, rest) = match t.as_bytes().first() {
        Some(b'+') => (1, &t[1..]),
        Some(b'-') => (-1, &t[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = rest.split_once(':').ok_or_else(bad)?;
    let h: i64 = h.parse().map_err(|_| bad())?;
    let m: i64 = m.parse().map_err(|_| bad())?;
    if h > 14 || m > 59 {
        return Err(bad());
    }
    Ok(sign * (h * 3600 + m * 60))
}

/// Checked settings.
pub struct Settings {
    offset_s: i64,
    sla: BTreeMap<String, i64>,
    silence_multiple: f64,
    silence_min: i64,
    expected: Vec<(String, i64)>,
    pub(crate) skew: i64,
    pub(crate) allowance: i64,
    /// Sign-off due this long after a period's end.
    pub sign_off_within: i64,
}

impl Settings {
    /// How long `source` may stay silent, and whether that is configured (`expected_sources`)
    /// rather than learned: `silence_multiple` × the 95th percentile of its `gaps` (ns, at least
    /// 20 of them), and at least `silence_min`. `None`: nothing configured, too little to learn.
    pub(crate) fn silence_threshold(
        &self,
        source: &str,
        mut gaps: Vec<i64>,
    ) -> Option<(i64, bool)> {
        if let Some((_, d)) = self.expected.iter().find(|(g, _)| glob_match(g, source)) {
            return Some((*d, true));
        }
        if gaps.len() < 20 {
            return None;
        }
        gaps.sort_unstable();
        let usual = percentile(&gaps, 0.95);
        let learned = ((usual as f64) * self.silence_multiple) as i64;
        Some((learned.max(self.silence_min), false))
    }

    /// Time to resolve an alert per level (ns).
    pub fn sla_ns(&self) -> &BTreeMap<String, i64> {
        &self.sla
    }

    /// The periods' UTC offset in nanoseconds.
    pub fn offset_ns(&self) -> i64 {
        self.offset_s * NANOS_PER_SEC
    }
}

impl ReviewConfig {
    /// Check every setting; errors name it.
    pub fn settings(&self) -> Result<Settings, ComplianceError> {
        for p in &self.periodic {
            if p.name == "daily" || p.days < 1 || p.days > 366 {
                return Err(ComplianceError::Config(format!(
                    "periodic review {:?}: a name other than daily, and 1 to 366 days",
                    p.name
                )));
            }
        }
        let mut sla = BTreeMap::new();
        for (k, v) in &self.sla {
            sla.insert(k.clone(), dur(&format!("sla.{k}"), v)?);
        }
        let mut expected = Vec::new();
        for (k, v) in &self.expected_sources {
            expected.push((k.clone(), dur(&format!("expected_sources.{k:?}"), v)?));
        }
        if self.silence_multiple.is_nan() || self.silence_multiple < 1.0 {
            return Err(ComplianceError::Config(format!(
                "silence_multiple {} must be at least 1",
                self.silence_multiple
            )));
        }
        Ok(Settings {
            offset_s: parse_offset(&self.utc_offset)?,
            sla,
            silence_multiple: self.silence_multiple,
            silence_min: dur("silence_min", &self.silence_min)?,
            expected,
            skew: dur("skew_threshold", &self.skew_threshold)?,
            allowance: dur("batch_allowance", &self.batch_allowance)?,
            sign_off_within: dur("sign_off_within", &self.sign_off_within)?,
        })
    }
}

/// A review period.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    /// `daily`, or the name of a periodic review of other logs (10.4.2).
    pub kind: String,
    /// The first day, `YYYY-MM-DD`, in the configured offset.
    pub label: String,
    /// Start (inclusive), ns.
    pub start: i64,
    /// End (exclusive), ns.
    pub end: i64,
}

impl Period {
    /// Start as a timestamp.
    pub fn start_ts(&self) -> Timestamp {
        Timestamp(self.start)
    }

    /// End as a timestamp.
    pub fn end_ts(&self) -> Timestamp {
        Timestamp(self.end)
    }

    /// The review's id: `<kind>-<label>`.
    pub fn id(&self) -> String {
        format!("{}-{}", self.kind, self.label)
    }
}

/// The `days`-day period of `kind` starting on `date` (`YYYY-MM-DD`) at midnight in `s`'s offset.
pub fn period(kind: &str, date: &str, days: i64, s: &Settings) -> Result<Period, ComplianceError> {
    let bad = || ComplianceError::Config(format!("date {date:?}: expected YYYY-MM-DD"));
    let mut it = date.trim().splitn(3, '-');
    let y: i64 = it.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
    let m: u32 = it.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
    let d: u32 = it.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
    if !(1..=12).contains(&m)
        || !(1..=31).contains(&d)
        || civil_from_days(days_from_civil(y, m, d)) != (y, m, d)
    {
        return Err(bad());
    }
    if kind.is_empty()
        || !kind
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ComplianceError::Config(format!(
            "review kind {kind:?}: letters, digits, - and _ only"
        )));
    }
    let start = days_from_civil(y, m, d) * DAY - s.offset_s * NANOS_PER_SEC;
    Ok(Period {
        kind: kind.to_string(),
        label: format!("{y:04}-{m:02}-{d:02}"),
        start,
        end: start + days.max(1) * DAY,
    })
}

/// The date (`YYYY-MM-DD`, in `s`'s offset) of the period that holds `t`.
pub fn date_of(t: i64, s: &Settings) -> String {
    let local = t + s.offset_s * NANOS_PER_SEC;
    let (y, m, d) = civil_from_days(local.div_euclid(DAY));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Counts of one 10.2.1.x category.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CategoryCount {
    /// `10.2.1.1` …
    pub requirement: String,
    /// What it covers.
    pub title: String,
    /// Events in the period.
    pub total: u64,
    /// Per source.
    pub by_source: BTreeMap<String, u64>,
}

/// What one identity did with administrative access.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AdminActions {
    /// The user name.
    pub identity: String,
    /// Events.
    pub count: u64,
    /// `verb resource` → count (the 10 most frequent).
    pub actions: BTreeMap<String, u64>,
}

/// Reads of audit data through trailwarden (TrailwardenAccess).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AccessSummary {
    /// Successful reads.
    pub reads: u64,
    /// Refused or failed requests.
    pub refused: u64,
    /// Per subject: (reads, refused).
    pub by_subject: BTreeMap<String, (u64, u64)>,
}

/// Alerts by level.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertSummary {
    /// Raised in the period.
    pub raised: BTreeMap<String, u64>,
    /// Open at the end of the period.
    pub open_at_end: BTreeMap<String, u64>,
    /// Resolved or closed as false positive in the period.
    pub resolved: BTreeMap<String, u64>,
}

/// Something the reviewer must look at (10.4.3: and follow up).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Exception {
    /// `overdue-alert`, `control-failure`, `verification`, `quarantine`, `silent-source`,
    /// `clock-skew`, `time-change`.
    pub kind: String,
    /// `critical`, `high`, `medium`, `low`.
    pub severity: String,
    /// One line.
    pub title: String,
    /// The evidence.
    pub detail: String,
    /// Alert ids (`alert:42`), ledger indexes (`ledger:4711`), sources.
    pub refs: Vec<String>,
}

/// First seen in the period.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirstSeen {
    /// The identity or address.
    pub value: String,
    /// When (receive time).
    pub at: Timestamp,
    /// Its first ledger record.
    pub index: u64,
}

/// Skew between event time and receive time, one source, one hour.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SkewHour {
    /// Source label.
    pub source: String,
    /// The hour (start).
    pub hour: Timestamp,
    /// Events.
    pub samples: u64,
    /// Event time − receive time, median, ms.
    pub p50_ms: i64,
    /// 99th percentile of the absolute skew, signed, ms.
    pub p99_ms: i64,
    /// Largest absolute skew, signed, ms.
    pub max_ms: i64,
}

/// The ledger's verification as of the review.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    /// `ok`, `warnings`, `failed`, or `not-run`.
    pub status: String,
    /// Records in the tree.
    pub size: u64,
    /// The latest signed checkpoint covered (note text).
    pub checkpoint: Option<String>,
    /// The first failure, if any.
    pub first_failure: Option<String>,
    /// Records hashed.
    pub records_checked: u64,
}

/// A review.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Review {
    /// `<kind>-<YYYY-MM-DD>`.
    pub id: String,
    /// The period.
    pub period: Period,
    /// Its UTC offset.
    pub utc_offset: String,
    /// When generated.
    pub generated_at: Timestamp,
    /// By whom (a person, or `trailwarden serve`).
    pub generated_by: String,
    /// The ledger records counted: (lowest index, highest index, count).
    pub ledger_records: (Option<u64>, Option<u64>, u64),
    /// Events in the period per source.
    pub events_by_source: BTreeMap<String, u64>,
    /// Events per 10.2.1.x category.
    pub categories: Vec<CategoryCount>,
    /// Events with each PCI DSS 10.2.2 field present (user, event_type, time, outcome, origin,
    /// resource).
    #[serde(default)]
    pub fields_present: BTreeMap<String, u64>,
    /// Admin actions by identity (10.2.1.2), most active first.
    pub admin_actions: Vec<AdminActions>,
    /// Accesses to audit logs (10.2.1.3) and refused requests.
    pub audit_log_access: AccessSummary,
    /// Start, stop, pause and configuration records of the trail itself (10.2.1.6).
    pub lifecycle: BTreeMap<String, u64>,
    /// Quarantined records (could not be parsed; kept with their bytes) per source.
    pub quarantined: BTreeMap<String, u64>,
    /// Alerts by level.
    pub alerts: AlertSummary,
    /// What needs follow-up, most severe first.
    pub exceptions: Vec<Exception>,
    /// Identities first seen in the period.
    pub new_identities: Vec<FirstSeen>,
    /// Source IPs first seen in the period.
    pub new_source_ips: Vec<FirstSeen>,
    /// Clock skew per live source and hour (10.6).
    pub clock_skew: Vec<SkewHour>,
    /// Time-change events detected in the period (10.6.3).
    pub time_changes: Vec<String>,
    /// The verification.
    pub verification: Verification,
}

impl Review {
    /// `sha256:<hex>` of the canonical JSON (fields in declaration order, maps sorted).
    pub fn hash(&self) -> String {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        format!("sha256:{}", hex::encode(Sha256::digest(&bytes)))
    }
}

/// What generation reads besides the ledger.
pub struct Inputs<'a> {
    /// Every alert (the store's list).
    pub alerts: &'a [Alert],
    /// Every status change (alert id, change).
    pub changes: &'a [(i64, Change)],
    /// The verification result.
    pub verification: Verification,
    /// Who generates.
    pub generated_by: String,
    /// Now.
    pub now: Timestamp,
}

fn rank(level: &str) -> u8 {
    trailwarden_alert::level_rank(level)
}

/// A source whose clock can be judged: received live, not read back from a file.
fn live(source: &str) -> bool {
    !(source.starts_with("file:") || source == "stdin" || source == "trailwarden")
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn fmt_dur(ns: i64) -> String {
    let s = ns / NANOS_PER_SEC;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}s", s)
    }
}

/// Generate the review of `p` from the ledger in `data_dir`.
pub fn generate(
    data_dir: &Path,
    p: &Period,
    cfg: &ReviewConfig,
    s: &Settings,
    inputs: Inputs<'_>,
) -> Result<Review, ComplianceError> {
    let reader = LedgerReader::open(data_dir, None).map_err(ComplianceError::ledger)?;
    let size = reader.size().map_err(ComplianceError::ledger)?;
    let learn_from = p.end - 7 * DAY;
    let mut first_index = None;
    let mut last_index = None;
    let mut records = 0u64;
    let mut by_source: BTreeMap<String, u64> = BTreeMap::new();
    let mut cats: Vec<CategoryCount> = PciCategory::ALL
        .iter()
        .map(|c| CategoryCount {
            requirement: c.requirement().into(),
            title: c.title().into(),
            ..CategoryCount::default()
        })
        .collect();
    let mut admin: HashMap<String, (u64, HashMap<String, u64>)> = HashMap::new();
    let mut fields_present: BTreeMap<String, u64> = BTreeMap::new();
    let mut access = AccessSummary::default();
    let mut lifecycle: BTreeMap<String, u64> = BTreeMap::new();
    let mut quarantined: BTreeMap<String, u64> = BTreeMap::new();
    // identity / IP → (first receive time, index)
    let mut ids: HashMap<String, (i64, u64)> = HashMap::new();
    let mut ips: HashMap<String, (i64, u64)> = HashMap::new();
    let mut times: HashMap<String, Vec<i64>> = HashMap::new();
    let mut skew: BTreeMap<(String, i64), Vec<i64>> = BTreeMap::new();
    let note_first = |m: &mut HashMap<String, (i64, u64)>, k: &str, t: i64, i: u64| {
        let e = m.entry(k.to_string()).or_insert((t, i));
        if t < e.0 {
            *e = (t, i);
        }
    };
    reader
        .for_each(0, size, |r| {
            let received = r.received.0;
            if r.kind == RecordKind::Event {
                let Some(ev) = r
                    .format
                    .and_then(|f| trailwarden_parse::reparse(f, &r.raw, r.received))
                else {
                    return Ok(true);
                };
                // events belong to the period of their own time (backfills land where they
                // happened); what has none goes by its receive time
                let t = ev.time.map_or(received, |x| x.0);
                // clock skew goes by when the event arrived (a clock ahead puts its events
                // past the period)
                if ev.time.is_some() && live(&r.source) && received >= p.start && received < p.end {
                    skew.entry((r.source.clone(), received - received.rem_euclid(HOUR)))
                        .or_default()
                        .push(t - received);
                }
                if t >= p.end {
                    return Ok(true);
                }
                if let Some(n) = ev.user.identity.name.as_deref() {
                    note_first(&mut ids, n, t, r.index);
                }
                for ip in ev.origin.ips.iter().flatten() {
                    note_first(&mut ips, ip, t, r.index);
                }
                if t >= learn_from {
                    times.entry(r.source.clone()).or_default().push(t);
                }
                if t < p.start {
                    return Ok(true);
                }
                records += 1;
                first_index = Some(first_index.map_or(r.index, |f: u64| f.min(r.index)));
                last_index = Some(last_index.map_or(r.index, |l: u64| l.max(r.index)));
                *by_source.entry(r.source.clone()).or_default() += 1;
                for (name, st) in ev.completeness().fields() {
                    let n = fields_present.entry(name.to_string()).or_default();
                    if st == trailwarden_model::event::FieldState::Present {
                        *n += 1;
                    }
                }
                for c in ev.pci.iter() {
                    let cc = &mut cats[c as usize];
                    cc.total += 1;
                    *cc.by_source.entry(r.source.clone()).or_default() += 1;
                }
                if ev.pci.contains(PciCategory::AdminAction) {
                    let who = ev
                        .user
                        .identity
                        .name
                        .clone()
                        .unwrap_or_else(|| "(unknown)".into());
                    let what = format!(
                        "{} {}",
                        ev.action.as_deref().unwrap_or("?"),
                        ev.resource
                            .resource
                            .as_deref()
                            .or(ev.request_uri.as_deref())
                            .unwrap_or("")
                    );
                    let e = admin.entry(who).or_default();
                    e.0 += 1;
                    *e.1.entry(what.trim().to_string()).or_default() += 1;
                }
                return Ok(true);
            }
            let inside = received >= p.start && received < p.end;
            if inside {
                records += 1;
                first_index = Some(first_index.map_or(r.index, |f: u64| f.min(r.index)));
                last_index = Some(last_index.map_or(r.index, |l: u64| l.max(r.index)));
            }
            match r.kind {
                RecordKind::Access if inside => {
                    if let Ok(a) = serde_json::from_slice::<Access>(&r.raw) {
                        let ok = a.outcome == "success";
                        let e = access.by_subject.entry(a.subject).or_default();
                        if ok {
                            access.reads += 1;
                            e.0 += 1;
                        } else {
                            access.refused += 1;
                            e.1 += 1;
                        }
                    }
                }
                RecordKind::Lifecycle if inside => {
                    let what = serde_json::from_slice::<serde_json::Value>(&r.raw)
                        .ok()
                        .and_then(|v| {
                            v.get("lifecycle")
                                .and_then(|x| x.as_str().map(str::to_string))
                        })
                        .unwrap_or_else(|| "other".into());
                    *lifecycle.entry(what).or_default() += 1;
                }
                RecordKind::Quarantine if inside => {
                    *quarantined.entry(r.source.clone()).or_default() += 1;
                }
                _ => {}
            }
            Ok(true)
        })
        .map_err(ComplianceError::ledger)?;

    let mut exceptions = Vec::new();
    // alerts
    let closed_at: HashMap<i64, i64> = inputs.changes.iter().filter(|(_, c)| !c.to.is_open()).fold(
        HashMap::new(),
        |mut m, (id, c)| {
            let e = m.entry(*id).or_insert(c.at);
            *e = (*e).min(c.at);
            m
        },
    );
    let mut alerts = AlertSummary::default();
    let level_of: HashMap<i64, &Alert> = inputs.alerts.iter().map(|a| (a.id, a)).collect();
    let mut time_changes = Vec::new();
    for a in inputs.alerts {
        // detections belong to the period of their events, like the events
        if a.first_seen >= p.start && a.first_seen < p.end {
            *alerts.raised.entry(a.level.clone()).or_default() += 1;
            if a.tags.iter().any(|t| t.starts_with("pci_dss.10.6")) {
                time_changes.push(format!("alert {}: {} — {}", a.id, a.title, a.summary));
                exceptions.push(Exception {
                    kind: "time-change".into(),
                    severity: a.level.clone(),
                    title: format!("time change: {}", a.title),
                    detail: a.summary.clone(),
                    refs: vec![format!("alert:{}", a.id)],
                });
            }
        }
        let open_at_end = a.first_seen < p.end
            && a.created_at < p.end
            && closed_at.get(&a.id).is_none_or(|c| *c >= p.end);
        if open_at_end {
            *alerts.open_at_end.entry(a.level.clone()).or_default() += 1;
            // due: as set on the alert (raised + SLA, or on assignment), else raised + SLA now
            let due = a
                .due_at
                .or_else(|| s.sla.get(&a.level).map(|d| a.created_at.saturating_add(*d)));
            let as_of = p.end.min(inputs.now.0);
            if let Some(due) = due.filter(|d| as_of > *d && !a.rule_id.starts_with("trailwarden-"))
            {
                exceptions.push(Exception {
                    kind: "overdue-alert".into(),
                    severity: a.level.clone(),
                    title: format!(
                        "alert {} ({}) open {} — due {} after it was raised{}",
                        a.id,
                        a.title,
                        fmt_dur(as_of - a.created_at),
                        fmt_dur(due - a.created_at),
                        a.assignee
                            .as_deref()
                            .map(|w| format!(", assigned to {w}"))
                            .unwrap_or_default()
                    ),
                    detail: a.summary.clone(),
                    refs: vec![format!("alert:{}", a.id)],
                });
            }
        }
        if a.rule_id.starts_with("trailwarden-control-")
            && a.first_seen < p.end
            && a.last_seen >= p.start
        {
            exceptions.push(Exception {
                kind: "control-failure".into(),
                severity: a.level.clone(),
                title: format!("control failure: {}", a.title),
                detail: format!(
                    "{} (from {} to {}, {} time(s))",
                    a.summary,
                    Timestamp(a.first_seen),
                    Timestamp(a.last_seen),
                    a.count
                ),
                refs: vec![format!("alert:{}", a.id)],
            });
        }
    }
    for (id, c) in inputs.changes {
        if !c.to.is_open() && c.at >= p.start && c.at < p.end {
            let level = level_of
                .get(id)
                .map_or("unknown".to_string(), |a| a.level.clone());
            *alerts.resolved.entry(level).or_default() += 1;
        }
    }
    // verification
    if inputs.verification.status == "failed" {
        exceptions.push(Exception {
            kind: "verification".into(),
            severity: "critical".into(),
            title: "the ledger failed verification".into(),
            detail: inputs
                .verification
                .first_failure
                .clone()
                .unwrap_or_default(),
            refs: Vec::new(),
        });
    }
    for (src, n) in &quarantined {
        exceptions.push(Exception {
            kind: "quarantine".into(),
            severity: "medium".into(),
            title: format!(
                "{n} record(s) from {src} could not be parsed (quarantined with their bytes)"
            ),
            detail: "query them: TrailwardenQuarantine | where Source == \"…\"".into(),
            refs: vec![format!("source:{src}")],
        });
    }
    // silent sources
    let mut sources: BTreeSet<String> = times.keys().cloned().collect();
    for (glob, _) in &s.expected {
        if !sources.iter().any(|x| glob_match(glob, x)) {
            exceptions.push(Exception {
                kind: "silent-source".into(),
                severity: "high".into(),
                title: format!(
                    "expected source {glob} sent nothing in the 7 days before the period's end"
                ),
                detail: String::new(),
                refs: vec![format!("source:{glob}")],
            });
        }
    }
    for src in std::mem::take(&mut sources) {
        let Some(mut ts) = times.remove(&src) else {
            continue;
        };
        ts.sort_unstable();
        let gaps: Vec<i64> = ts.windows(2).map(|w| w[1] - w[0]).collect();
        let Some((threshold, expected)) = s.silence_threshold(&src, gaps) else {
            continue;
        };
        // silences overlapping the period, the one running at its end included
        let mut bounds: Vec<i64> = ts.clone();
        bounds.push(p.end);
        for w in bounds.windows(2) {
            let (a, b) = (w[0], w[1]);
            if b - a > threshold && b > p.start && a < p.end {
                exceptions.push(Exception {
                    kind: "silent-source".into(),
                    severity: "high".into(),
                    title: format!("{src} sent nothing for {}", fmt_dur(b - a)),
                    detail: format!(
                        "from {} to {}{}; threshold {} ({})",
                        Timestamp(a),
                        Timestamp(b),
                        if b == p.end {
                            " (the period's end; still silent)"
                        } else {
                            ""
                        },
                        fmt_dur(threshold),
                        if expected {
                            "configured"
                        } else {
                            "learned: a multiple of its usual gap"
                        }
                    ),
                    refs: vec![format!("source:{src}")],
                });
            }
        }
    }
    // clock skew
    let mut clock_skew = Vec::new();
    let mut skewed: BTreeMap<String, (u64, i64)> = BTreeMap::new();
    for ((src, hour), mut v) in skew {
        if hour < p.start {
            continue;
        }
        v.sort_unstable();
        let mut abs: Vec<i64> = v.clone();
        abs.sort_unstable_by_key(|x| x.abs());
        let p99 = percentile(&abs, 0.99);
        let max = abs.last().copied().unwrap_or(0);
        let h = SkewHour {
            source: src.clone(),
            hour: Timestamp(hour),
            samples: v.len() as u64,
            p50_ms: percentile(&v, 0.5) / 1_000_000,
            p99_ms: p99 / 1_000_000,
            max_ms: max / 1_000_000,
        };
        // behind by up to the batching delay is the sender's batching, not its clock
        let limit = if p99 < 0 {
            s.skew + s.allowance
        } else {
            s.skew
        };
        if p99.abs() > limit {
            let e = skewed.entry(src).or_insert((0, 0));
            e.0 += 1;
            if p99.abs() > e.1.abs() {
                e.1 = p99;
            }
        }
        clock_skew.push(h);
    }
    for (src, (hours, worst)) in skewed {
        exceptions.push(Exception {
            kind: "clock-skew".into(),
            severity: "high".into(),
            title: format!("{src}: event times {} receive time by up to {} (p99)", if worst > 0 { "ahead of" } else { "behind" }, fmt_dur(worst.abs())),
            detail: format!("{hours} hour(s) past the threshold of {} (+{} batching allowance when behind); check the source's time synchronization (10.6.1)", fmt_dur(s.skew), fmt_dur(s.allowance)),
            refs: vec![format!("source:{src}")],
        });
    }
    exceptions.sort_by(|a, b| {
        rank(&b.severity)
            .cmp(&rank(&a.severity))
            .then_with(|| a.kind.cmp(&b.kind))
            .then_with(|| a.title.cmp(&b.title))
    });
    let mut admin_actions: Vec<AdminActions> = admin
        .into_iter()
        .map(|(identity, (count, actions))| {
            let mut top: Vec<(String, u64)> = actions.into_iter().collect();
            top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            top.truncate(10);
            AdminActions {
                identity,
                count,
                actions: top.into_iter().collect(),
            }
        })
        .collect();
    admin_actions.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.identity.cmp(&b.identity))
    });
    let first_in = |m: HashMap<String, (i64, u64)>| {
        let mut v: Vec<FirstSeen> = m
            .into_iter()
            .filter(|(_, (t, _))| *t >= p.start && *t < p.end)
            .map(|(value, (t, index))| FirstSeen {
                value,
                at: Timestamp(t),
                index,
            })
            .collect();
        v.sort_by(|a, b| (a.at, &a.value).cmp(&(b.at, &b.value)));
        v
    };
    Ok(Review {
        id: p.id(),
        period: p.clone(),
        utc_offset: cfg.utc_offset.clone(),
        generated_at: inputs.now,
        generated_by: inputs.generated_by,
        ledger_records: (first_index, last_index, records),
        events_by_source: by_source,
        categories: cats,
        fields_present,
        admin_actions,
        audit_log_access: access,
        lifecycle,
        quarantined,
        alerts,
        exceptions,
        new_identities: first_in(ids),
        new_source_ips: first_in(ips),
        clock_skew,
        time_changes,
        verification: inputs.verification,
    })
}

/// Verify the ledger now (the review states what it covers).
pub fn verify_now(data_dir: &Path, anchor_dir: Option<&Path>) -> Verification {
    let opts = trailwarden_ledger::verify::VerifyOptions {
        anchor_dir: anchor_dir.map(Path::to_path_buf),
        ..Default::default()
    };
    match trailwarden_ledger::verify::verify(data_dir, opts) {
        Ok(r) => Verification {
            status: serde_json::to_value(r.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| "failed".into()),
            size: r.size,
            checkpoint: r.checkpoint,
            first_failure: r.first_failure.map(|f| format!("{}: {}", f.code, f.detail)),
            records_checked: r.checked.records,
        },
        Err(e) => Verification {
            status: "failed".into(),
            first_failure: Some(format!("verification could not run: {e}")),
            ..Verification::default()
        },
    }
}

/// Everything a review needs from the data directory: the alert store's alerts and changes,
/// a verification of the ledger, then [`generate`].
pub fn build(
    data_dir: &Path,
    p: &Period,
    cfg: &ReviewConfig,
    generated_by: &str,
    anchor_dir: Option<&Path>,
) -> Result<Review, ComplianceError> {
    let s = cfg.settings()?;
    let alerts_db = data_dir.join("alerts.db");
    let (alerts, changes) = if alerts_db.exists() {
        let store = trailwarden_alert::AlertStore::open(&alerts_db)
            .map_err(|e| ComplianceError::Ledger(format!("alert store: {e}")))?;
        let alerts = store
            .list(&trailwarden_alert::Filter::default())
            .map_err(|e| ComplianceError::Ledger(format!("alert store: {e}")))?;
        let changes = store
            .all_changes()
            .map_err(|e| ComplianceError::Ledger(format!("alert store: {e}")))?;
        (alerts, changes)
    } else {
        (Vec::new(), Vec::new())
    };
    let verification = verify_now(data_dir, anchor_dir);
    generate(
        data_dir,
        p,
        cfg,
        &s,
        Inputs {
            alerts: &alerts,
            changes: &changes,
            verification,
            generated_by: generated_by.to_string(),
            now: Timestamp::now(),
        },
    )
}
