//! Detection in the pipeline: the rules (built-in pack, the data directory's `rules/`, and
//! `--rules`), the alert store, and the ledger records of raised alerts.

use crate::PipelineError;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use trailwarden_alert::{AlertStore, Batch, NewAlert, Raised};
use trailwarden_detect::placeholders::{self, Placeholders};
use trailwarden_detect::{Detection, Engine, Rule};
use trailwarden_ledger::reader::LedgerReader;
use trailwarden_ledger::{Ledger, LedgerError};
use trailwarden_model::{Body, Event, Record, RecordKind, Timestamp};

type Result<T, E = PipelineError> = std::result::Result<T, E>;

/// `alerts.db` meta key: the highest ledger index live detection has checked.
const DETECTED_THROUGH: &str = "detected_through";

/// Detections held before they are stored anyway (a long catch-up stays bounded in memory).
const FLUSH_AT: usize = 1000;

/// Correlation groups kept in memory (the least recently updated are evicted beyond this, and
/// counted).
pub const CORRELATION_CAP: usize = 100_000;

/// Which rules run, and how alerts are deduplicated.
#[derive(Debug, Clone)]
pub struct RuleConfig {
    /// More Sigma rules: files or directories. The data directory's `rules/` is always loaded.
    pub rules: Vec<PathBuf>,
    /// Load the built-in pack.
    pub builtin: bool,
    /// Detections of the same rule and group within this window (ns) merge into one alert.
    pub dedup_window_ns: i64,
    /// Values of the rules' `%placeholders%` (allowed users and namespaces, trusted registries,
    /// system identities; [`trailwarden_detect::placeholders::defaults`] plus configuration).
    pub placeholders: Placeholders,
}

impl RuleConfig {
    /// The built-in pack and the data directory's rules, default placeholders.
    pub fn new(rules: Vec<PathBuf>, builtin: bool, dedup_window_ns: i64) -> RuleConfig {
        RuleConfig {
            rules,
            builtin,
            dedup_window_ns,
            placeholders: placeholders::defaults(),
        }
    }

    /// Add allow-lists and trusted registries to the placeholders' values, and replace
    /// placeholders wholesale (`replace`, applied first).
    pub fn with_lists(
        mut self,
        replace: &BTreeMap<String, Vec<String>>,
        allow_users: &[String],
        allow_namespaces: &[String],
        trusted_registries: &[String],
    ) -> RuleConfig {
        for (k, v) in replace {
            self.placeholders.insert(k.clone(), v.clone());
        }
        for (k, extra) in [
            ("allowed_users", allow_users),
            ("allowed_namespaces", allow_namespaces),
            ("trusted_registries", trusted_registries),
        ] {
            self.placeholders
                .entry(k.to_string())
                .or_default()
                .extend(extra.iter().cloned());
        }
        self
    }
}

/// Load the rules `a` asks for. Returns them and the warnings to show (a broken file never stops
/// the others; disabled rules say why).
///
/// A rule with the id of one loaded before it replaces that one, in load order: the built-in
/// pack, the data directory's `rules/`, then the configured paths in their order. So a site
/// overrides a built-in rule by copying it under its own rules with the same id; the
/// replacement is reported.
pub fn load_rules(data_dir: &Path, a: &RuleConfig) -> (Vec<Rule>, Vec<String>) {
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    placeholders::with(&a.placeholders, || {
        if a.builtin {
            let (r, e) = trailwarden_detect::builtin_rules();
            rules.extend(r);
            errors.extend(e);
        }
        let mut paths = Vec::new();
        let local = data_dir.join("rules");
        if local.is_dir() {
            paths.push(local);
        }
        paths.extend(a.rules.iter().cloned());
        let (r, e) = trailwarden_detect::load_paths(&paths);
        rules.extend(r);
        errors.extend(e);
    });
    let mut warnings: Vec<String> = errors
        .iter()
        .map(|e| format!("rule not loaded: {e}"))
        .collect();
    let rules = replace_by_id(rules, &mut warnings);
    warnings.extend(disabled_warnings(&rules));
    (rules, warnings)
}

/// Keep the last rule of each id (in load order), at the position of the first; say what was
/// replaced.
fn replace_by_id(rules: Vec<Rule>, warnings: &mut Vec<String>) -> Vec<Rule> {
    let mut last: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, r) in rules.iter().enumerate() {
        last.insert(&r.id, i);
    }
    // (position of the winner) for every rule: itself, or the last one of its id
    let winner: Vec<usize> = rules.iter().map(|r| last[r.id.as_str()]).collect();
    for (i, r) in rules.iter().enumerate() {
        let w = &rules[winner[i]];
        if winner[i] != i {
            warnings.push(format!(
                "rule {} ({}) replaces {} ({}): same id {}",
                w.title, w.source, r.title, r.source, r.id
            ));
        }
    }
    let mut slots: Vec<Option<Rule>> = rules.into_iter().map(Some).collect();
    let mut out = Vec::with_capacity(slots.len());
    for w in winner {
        // the first rule of an id takes its winner; the later ones find it gone
        if let Some(r) = slots[w].take() {
            out.push(r);
        }
    }
    out
}

/// Which rules will not run, and why.
pub fn disabled_warnings(rules: &[Rule]) -> Vec<String> {
    rules
        .iter()
        .filter(|r| r.disabled.is_some())
        .map(|r| {
            format!(
                "rule {} ({}) is disabled: {}",
                r.title,
                r.source,
                r.disabled.as_deref().unwrap_or_default()
            )
        })
        .collect()
}

/// Counts of one detection run.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct DetectStats {
    /// Rules loaded (enabled).
    pub rules: usize,
    /// Events checked.
    pub events_checked: u64,
    /// Detections (single-event matches and correlations met).
    pub detections: u64,
    /// New alerts.
    pub alerts_new: u64,
    /// Detections merged into an open alert.
    pub alerts_merged: u64,
    /// Events replayed to rebuild correlation state.
    pub correlation_replayed: u64,
    /// Correlation groups evicted because the cap was reached.
    pub correlation_evicted: u64,
}

/// The engine, the alert store and what has to reach the ledger.
pub struct Detector {
    engine: Engine,
    store: AlertStore,
    window: i64,
    /// Live detection keeps correlation inputs for the next start; a re-run does not.
    live: bool,
    inputs: Vec<(u64, i64)>,
    found: Vec<Detection>,
    latest: i64,
    /// The highest ledger index checked (live detection), not yet stored.
    through: Option<u64>,
    /// Detections not yet stored: raised together by [`Self::flush`], in one transaction.
    pending: Vec<NewAlert>,
    /// New alerts whose `raised` ledger record is still to be written.
    pub unrecorded: Vec<(i64, NewAlert)>,
    /// Counts.
    pub stats: DetectStats,
    /// Detections per rule id (for metrics).
    pub matches: BTreeMap<String, u64>,
}

impl Detector {
    /// Load rules and open the data directory's alert store. Returns the detector and the
    /// warnings to show (rules not loaded, disabled, or unable to run).
    pub fn open(data_dir: &Path, a: &RuleConfig, live: bool) -> Result<(Detector, Vec<String>)> {
        let (rules, mut warnings) = load_rules(data_dir, a);
        let enabled = rules.iter().filter(|r| r.disabled.is_none()).count();
        let engine = Engine::new(rules, CORRELATION_CAP);
        for (i, why) in &engine.problems {
            warnings.push(format!(
                "rule {} cannot run: {why}",
                engine.rules()[*i].title
            ));
        }
        std::fs::create_dir_all(data_dir).map_err(|e| PipelineError::io(data_dir, e))?;
        let store = AlertStore::open(data_dir.join("alerts.db"))?;
        let d = Detector {
            engine,
            store,
            window: a.dedup_window_ns,
            live,
            inputs: Vec::new(),
            found: Vec::new(),
            latest: i64::MIN,
            through: None,
            pending: Vec::new(),
            unrecorded: Vec::new(),
            stats: DetectStats {
                rules: enabled,
                ..DetectStats::default()
            },
            matches: BTreeMap::new(),
        };
        Ok((d, warnings))
    }

    /// The JSON fields the rules read, for the parser to pull out of each Kubernetes event's
    /// `requestObject` while reading it (`trailwarden_parse::Options::pull`).
    pub fn paths(&self) -> std::sync::Arc<trailwarden_detect::extract::Paths> {
        std::sync::Arc::clone(self.engine.paths())
    }

    /// Rebuild correlation state after a restart: replay, from the ledger, the events that fed
    /// correlations within the longest correlation timespan before the last one seen. Their
    /// detections were stored before; replaying them again only restores the windows (any
    /// repeat merges into the alert it raised then).
    pub fn rebuild(&mut self, data_dir: &Path) -> Result<()> {
        let Some(latest) = self.store.latest_correlation_input()? else {
            return Ok(());
        };
        let lookback = self.engine.lookback();
        let want: BTreeSet<u64> = self
            .store
            .correlation_inputs(latest.saturating_sub(lookback))?
            .into_iter()
            .collect();
        if want.is_empty() {
            return Ok(());
        }
        let reader = LedgerReader::open(data_dir, None)?;
        let mut sink = Vec::new();
        let mut replayed = 0;
        // only the rows of the wanted records are read (they are a sparse set spread over the
        // lookback: reading the whole range took minutes on a large ledger)
        reader.for_each_of(&want, |r| {
            if r.kind == RecordKind::Event {
                if let Some(ev) = r
                    .format
                    .and_then(|f| trailwarden_parse::reparse(f, &r.raw, r.received))
                {
                    let time = ev.time.unwrap_or(r.received).0;
                    self.engine.check(r.index, time, &ev, &r.raw, &mut sink);
                    replayed += 1;
                }
            }
            Ok(true)
        })?;
        self.stats.correlation_replayed = replayed;
        Ok(())
    }

    /// After a crash between a commit and the detection that follows it, the events committed
    /// but never checked are checked now (from the ledger, in index order). Returns how many.
    /// A store that has no cursor yet (created before detection kept one) starts at `size`.
    pub fn catch_up(&mut self, data_dir: &Path, size: u64) -> Result<u64> {
        let from = match self.store.meta(DETECTED_THROUGH)? {
            Some(v) => v.parse::<u64>().map_or(size, |t| t + 1),
            None => {
                if let Some(last) = size.checked_sub(1) {
                    self.store.set_meta(DETECTED_THROUGH, &last.to_string())?;
                }
                size
            }
        };
        if from >= size {
            return Ok(0);
        }
        let reader = LedgerReader::open(data_dir, None)?;
        let mut n = 0;
        let mut failure = None;
        reader.for_each(from, size, |r| {
            if r.kind != RecordKind::Event {
                return Ok(true);
            }
            let Some(ev) = r
                .format
                .and_then(|f| trailwarden_parse::reparse(f, &r.raw, r.received))
            else {
                return Ok(true);
            };
            if let Err(e) = self.check(r.index, r.received, &r.source, &ev, &r.raw) {
                failure = Some(e);
                return Ok(false);
            }
            n += 1;
            Ok(true)
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        self.through = Some(size - 1);
        self.flush()?;
        Ok(n)
    }

    /// Check a batch of durable events (ledger index, record); records that are not events
    /// are skipped. The engine is told of each event two ahead ([`Engine::prefetch`]).
    pub fn check_batch(&mut self, batch: &[(u64, Record)]) -> Result<()> {
        for (k, (index, rec)) in batch.iter().enumerate() {
            if let Some((_, next)) = batch.get(k + 2) {
                if let Body::Event(ev) = &next.body {
                    self.engine.prefetch(ev, &next.raw);
                }
            }
            if let Body::Event(ev) = &rec.body {
                self.check(*index, rec.received, &rec.source, ev, &rec.raw)?;
            }
        }
        Ok(())
    }

    /// Check one durable event (ledger index `index`, received from `source`) and store what
    /// it raises.
    pub fn check(
        &mut self,
        index: u64,
        received: Timestamp,
        source: &str,
        ev: &Event,
        raw: &[u8],
    ) -> Result<()> {
        let time = ev.time.unwrap_or(received).0;
        self.stats.events_checked += 1;
        if self.live {
            self.through = Some(self.through.map_or(index, |t| t.max(index)));
        }
        self.found.clear();
        let fed = self.engine.check(index, time, ev, raw, &mut self.found);
        if fed && self.live {
            self.inputs.push((index, time));
            self.latest = self.latest.max(time);
        }
        if self.found.is_empty() {
            return Ok(());
        }
        for d in std::mem::take(&mut self.found) {
            let rule = &self.engine.rules()[d.rule];
            let (group_key, summary) = if d.group.is_empty() {
                (
                    trailwarden_alert::group_key(ev),
                    trailwarden_alert::summarize(ev),
                )
            } else {
                (
                    format!("correlation|{}", d.group.join("|")),
                    format!(
                        "{} matching events for {}; the last: {}",
                        d.count,
                        d.group.join(", "),
                        trailwarden_alert::summarize(ev)
                    ),
                )
            };
            let alert = NewAlert {
                rule_id: rule.id.clone(),
                title: rule.title.clone(),
                level: rule.level.clone(),
                tags: rule.tags.clone(),
                group_key,
                summary,
                evidence: d.evidence,
                time: d.time,
                count: d.count,
                namespace: ev.resource.namespace.clone(),
                source: Some(source.to_string()),
            };
            self.stats.detections += 1;
            *self.matches.entry(alert.rule_id.clone()).or_default() += 1;
            self.pending.push(alert);
        }
        if self.pending.len() >= FLUSH_AT {
            self.flush()?;
        }
        Ok(())
    }

    /// Store what was detected (one transaction: the alerts and their deliveries, how far
    /// detection got, the correlation inputs), then append a `raised` ledger record for every
    /// new alert (committed with the ledger's next commit).
    pub fn record(&mut self, l: &mut Ledger) -> Result<(), LedgerError> {
        let raised = self
            .raised_records()
            .map_err(|e| LedgerError::Invalid(e.to_string()))?;
        for r in &raised {
            l.append_internal(RecordKind::Alert, r)?;
        }
        Ok(())
    }

    /// Store what was detected, as [`Detector::record`], and hand back the `raised` ledger
    /// records of the new alerts for the thread that owns the ledger to append.
    pub fn raised_records(&mut self) -> Result<Vec<serde_json::Value>> {
        self.flush()?;
        Ok(self
            .unrecorded
            .drain(..)
            .map(|(id, a)| {
                serde_json::json!({
                    "action": "raised", "alert_id": id, "rule_id": a.rule_id,
                    "title": a.title, "level": a.level, "group_key": a.group_key,
                    "summary": a.summary, "evidence": a.evidence,
                })
            })
            .collect())
    }

    /// Store, in one transaction of the alert store, the detections not yet stored (each
    /// merged or new, its deliveries queued), how far live detection got (the next start
    /// catches up from there), and the correlation inputs seen (forgetting those older than
    /// any window).
    pub fn flush(&mut self) -> Result<()> {
        let through = self.through.map(|t| [(DETECTED_THROUGH, t.to_string())]);
        let keep_from = self.latest.saturating_sub(self.engine.lookback());
        if self.pending.is_empty() && through.is_none() && self.inputs.is_empty() {
            return Ok(());
        }
        let batch = Batch {
            meta: through.as_ref().map_or(&[], |m| &m[..]),
            inputs: (!self.inputs.is_empty()).then_some((&self.inputs[..], keep_from)),
        };
        let now = Timestamp::now().0;
        let raised = self
            .store
            .raise_batch(&self.pending, self.window, now, &batch)?;
        self.through = None;
        self.inputs.clear();
        self.stats.correlation_evicted = self.engine.evicted();
        for (r, alert) in raised.into_iter().zip(self.pending.drain(..)) {
            match r {
                Raised::New(id) => {
                    self.stats.alerts_new += 1;
                    self.unrecorded.push((id, alert));
                }
                Raised::Merged(_) => self.stats.alerts_merged += 1,
            }
        }
        Ok(())
    }

    /// Raise a control-failure alert (PCI DSS 10.7.2: a critical security control failed, e.g.
    /// ingest refused for backpressure or low disk). Recorded in the ledger by the next
    /// [`Self::record`]; repeats within the dedup window merge.
    pub fn raise_control(&mut self, kind: &str, title: &str, summary: &str) -> Result<Raised> {
        self.raise_control_for(kind, None, title, summary)
    }

    /// [`Self::raise_control`] for one subject of a kind (`delivery` of one sink: one alert per
    /// sink, routed to the other sinks).
    pub fn raise_control_for(
        &mut self,
        kind: &str,
        subject: Option<&str>,
        title: &str,
        summary: &str,
    ) -> Result<Raised> {
        let now = Timestamp::now().0;
        let alert = NewAlert {
            rule_id: format!("trailwarden-control-{kind}"),
            title: title.to_string(),
            level: "high".into(),
            tags: vec!["pci_dss.10.7.2".into(), "pci_dss.10.7.3".into()],
            group_key: match subject {
                Some(s) => format!("control|{kind}|{s}"),
                None => format!("control|{kind}"),
            },
            summary: summary.to_string(),
            evidence: Vec::new(),
            time: now,
            count: 1,
            namespace: None,
            source: Some("trailwarden".into()),
        };
        self.raise_alert(alert)
    }

    /// Raise an alert found outside the event stream (a control failure, a scheduled rule):
    /// into the store (its deliveries queued in the same transaction), its `raised` record
    /// written by the next [`Self::record`].
    pub fn raise_alert(&mut self, alert: NewAlert) -> Result<Raised> {
        let now = Timestamp::now().0;
        let r = self.store.raise(&alert, self.window, now)?;
        if let Raised::New(id) = r {
            *self.matches.entry(alert.rule_id.clone()).or_default() += 1;
            self.unrecorded.push((id, alert));
        }
        Ok(r)
    }

    /// The alert store.
    pub fn store_mut(&mut self) -> &mut AlertStore {
        &mut self.store
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec_by(user: &str) -> (Event, Vec<u8>) {
        let raw = format!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a1","stage":"ResponseStarted","verb":"create","requestURI":"/api/v1/namespaces/default/pods/web-1/exec?command=sh","user":{{"username":"{user}"}},"sourceIPs":["10.0.0.1"],"objectRef":{{"resource":"pods","namespace":"default","name":"web-1","apiVersion":"v1","subresource":"exec"}},"responseStatus":{{"code":101}},"stageTimestamp":"2026-12-01T00:00:00Z"}}"#
        );
        let ev = trailwarden_parse::k8s::parse_event(raw.as_bytes()).unwrap();
        (ev, raw.into_bytes())
    }

    fn fired(rules: Vec<Rule>, user: &str) -> Vec<String> {
        let mut engine = Engine::new(rules, 100);
        let (ev, raw) = exec_by(user);
        let mut out = Vec::new();
        engine.check(1, 0, &ev, &raw, &mut out);
        out.iter()
            .map(|d| engine.rules()[d.rule].title.clone())
            .collect()
    }

    #[test]
    fn a_site_rule_with_a_builtin_id_replaces_it_and_allow_lists_silence_identities() {
        let dir = std::env::temp_dir().join(format!("tw-override-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("rules")).unwrap();
        let (_, text) = trailwarden_detect::builtin_texts()
            .iter()
            .find(|(p, _)| p.ends_with("pod_exec_attach.yml"))
            .unwrap();
        let site = text
            .replace("level: medium", "level: high")
            .replace("title: Attach/Exec Pod", "title: Attach/Exec Pod (site)");
        std::fs::write(dir.join("rules/exec.yml"), site).unwrap();

        let cfg = RuleConfig::new(Vec::new(), true, 0);
        let (rules, warnings) = load_rules(&dir, &cfg);
        let same: Vec<&Rule> = rules
            .iter()
            .filter(|r| r.title.starts_with("Attach/Exec Pod"))
            .collect();
        assert_eq!(same.len(), 1, "both copies loaded");
        assert_eq!(same[0].title, "Attach/Exec Pod (site)");
        assert_eq!(same[0].level, "high");
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("replaces Attach/Exec Pod (builtin:")),
            "{warnings:?}"
        );
        assert!(fired(rules, "ci-bot").contains(&"Attach/Exec Pod (site)".to_string()));
        // a third copy in a configured path wins over both, and both replacements are said
        let extra = dir.join("extra.yml");
        std::fs::write(
            &extra,
            text.replace("title: Attach/Exec Pod", "title: Attach/Exec Pod (extra)"),
        )
        .unwrap();
        let (rules, warnings) = load_rules(&dir, &RuleConfig::new(vec![extra], true, 0));
        let same: Vec<&str> = rules
            .iter()
            .filter(|r| r.title.starts_with("Attach/Exec Pod"))
            .map(|r| r.title.as_str())
            .collect();
        assert_eq!(same, vec!["Attach/Exec Pod (extra)"]);
        assert_eq!(
            warnings
                .iter()
                .filter(|w| w.starts_with("rule Attach/Exec Pod (extra)"))
                .count(),
            2,
            "{warnings:?}"
        );

        // an allowed identity (wildcards) is silent on the same request; others are not
        let cfg = RuleConfig::new(Vec::new(), true, 0).with_lists(
            &BTreeMap::new(),
            &["ci-*".to_string()],
            &[],
            &[],
        );
        let (rules, _) = load_rules(&dir, &cfg);
        assert!(fired(rules.clone(), "ci-bot").is_empty());
        assert!(!fired(rules, "alice@example.com").is_empty());
        // and the control plane's own identities, on every cloud, by default
        let (rules, _) = load_rules(&dir, &RuleConfig::new(Vec::new(), true, 0));
        for who in ["eks:addon-manager", "system:addon-manager", "aksService"] {
            assert!(fired(rules.clone(), who).is_empty(), "{who}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
