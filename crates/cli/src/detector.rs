//! Detection in the pipeline: the rules (built-in pack, the data directory's `rules/`, and
//! `--rules`), the alert store, and the ledger records of raised alerts.

use crate::Cli;
use anyhow::{Context, Result};
use clap::Args;
use std::collections::BTreeSet;
use std::path::PathBuf;
use trailwarden_alert::{AlertStore, NewAlert, Raised};
use trailwarden_detect::correlation::parse_timespan;
use trailwarden_detect::{Detection, Engine, Rule};
use trailwarden_ledger::reader::LedgerReader;
use trailwarden_ledger::{Ledger, LedgerError};
use trailwarden_model::{Event, RecordKind, Timestamp};

/// Correlation groups kept in memory (the least recently updated are evicted beyond this, and
/// counted).
pub const CORRELATION_CAP: usize = 100_000;

/// Which rules run, and how alerts are deduplicated.
#[derive(Args, Debug, Clone)]
pub struct RuleArgs {
    /// More Sigma rules: a file or a directory (repeatable). The built-in pack and the data
    /// directory's `rules/` are always loaded unless `--no-builtin-rules`.
    #[arg(long = "rules", value_name = "PATH")]
    pub rules: Vec<PathBuf>,
    /// Do not load the built-in rule pack.
    #[arg(long)]
    pub no_builtin_rules: bool,
    /// Detections of the same rule and group within this window merge into one alert
    /// (30s, 15m, 1h, 1d).
    #[arg(long, default_value = "15m", value_parser = parse_window)]
    pub dedup_window: i64,
}

fn parse_window(s: &str) -> Result<i64, String> {
    parse_timespan(s).ok_or_else(|| format!("{s:?} is not a duration (30s, 15m, 1h, 1d)"))
}

/// Load the rules `a` asks for; errors are printed (a broken file never stops the others).
pub fn load_rules(cli: &Cli, a: &RuleArgs) -> Vec<Rule> {
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    if !a.no_builtin_rules {
        let (r, e) = trailwarden_detect::builtin_rules();
        rules.extend(r);
        errors.extend(e);
    }
    let mut paths = Vec::new();
    let local = cli.data_dir.join("rules");
    if local.is_dir() {
        paths.push(local);
    }
    paths.extend(a.rules.iter().cloned());
    let (r, e) = trailwarden_detect::load_paths(&paths);
    rules.extend(r);
    errors.extend(e);
    for e in &errors {
        eprintln!("warning: rule not loaded: {e}");
    }
    warn_disabled(&rules);
    rules
}

/// Say which rules will not run, and why.
pub fn warn_disabled(rules: &[Rule]) {
    for r in rules.iter().filter(|r| r.disabled.is_some()) {
        eprintln!(
            "warning: rule {} ({}) is disabled: {}",
            r.title,
            r.source,
            r.disabled.as_deref().unwrap_or_default()
        );
    }
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
    /// New alerts whose `raised` ledger record is still to be written.
    pub unrecorded: Vec<(i64, NewAlert)>,
    /// Counts.
    pub stats: DetectStats,
}

impl Detector {
    /// Load rules and open the data directory's alert store.
    pub fn open(cli: &Cli, a: &RuleArgs, live: bool) -> Result<Detector> {
        let rules = load_rules(cli, a);
        let enabled = rules.iter().filter(|r| r.disabled.is_none()).count();
        let engine = Engine::new(rules, CORRELATION_CAP);
        for (i, why) in &engine.problems {
            eprintln!(
                "warning: rule {} cannot run: {why}",
                engine.rules()[*i].title
            );
        }
        std::fs::create_dir_all(&cli.data_dir)
            .with_context(|| format!("creating {}", cli.data_dir.display()))?;
        let store = AlertStore::open(cli.data_dir.join("alerts.db"))?;
        Ok(Detector {
            engine,
            store,
            window: a.dedup_window,
            live,
            inputs: Vec::new(),
            found: Vec::new(),
            latest: i64::MIN,
            unrecorded: Vec::new(),
            stats: DetectStats {
                rules: enabled,
                ..DetectStats::default()
            },
        })
    }

    /// Rebuild correlation state after a restart: replay, from the ledger, the events that fed
    /// correlations within the longest correlation timespan before the last one seen. Their
    /// detections were stored before; replaying them again only restores the windows (any
    /// repeat merges into the alert it raised then).
    pub fn rebuild(&mut self, cli: &Cli) -> Result<()> {
        let Some(latest) = self.store.latest_correlation_input()? else {
            return Ok(());
        };
        let lookback = self.engine.lookback();
        let want: BTreeSet<u64> = self
            .store
            .correlation_inputs(latest.saturating_sub(lookback))?
            .into_iter()
            .collect();
        let (Some(&first), Some(&last)) = (want.first(), want.last()) else {
            return Ok(());
        };
        let reader = LedgerReader::open(&cli.data_dir, None)?;
        let mut sink = Vec::new();
        let mut replayed = 0;
        reader.for_each(first, last + 1, |r| {
            if r.kind == RecordKind::Event && want.contains(&r.index) {
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

    /// Check one durable event (ledger index `index`) and store what it raises.
    pub fn check(&mut self, index: u64, received: Timestamp, ev: &Event, raw: &[u8]) -> Result<()> {
        let time = ev.time.unwrap_or(received).0;
        self.stats.events_checked += 1;
        self.found.clear();
        let fed = self.engine.check(index, time, ev, raw, &mut self.found);
        if fed && self.live {
            self.inputs.push((index, time));
            self.latest = self.latest.max(time);
        }
        if self.found.is_empty() {
            return Ok(());
        }
        let now = Timestamp::now().0;
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
            };
            self.stats.detections += 1;
            match self.store.raise(&alert, self.window, now)? {
                Raised::New(id) => {
                    self.stats.alerts_new += 1;
                    self.unrecorded.push((id, alert));
                }
                Raised::Merged(_) => self.stats.alerts_merged += 1,
            }
        }
        Ok(())
    }

    /// Append a `raised` ledger record for every new alert (committed with the ledger's next
    /// commit), and keep the correlation inputs for the next start.
    pub fn record(&mut self, l: &mut Ledger) -> Result<(), LedgerError> {
        for (id, a) in self.unrecorded.drain(..) {
            l.append_internal(
                RecordKind::Alert,
                &serde_json::json!({
                    "action": "raised", "alert_id": id, "rule_id": a.rule_id,
                    "title": a.title, "level": a.level, "group_key": a.group_key,
                    "summary": a.summary, "evidence": a.evidence,
                }),
            )?;
        }
        self.flush_inputs()
            .map_err(|e| LedgerError::Invalid(format!("{e:#}")))
    }

    /// Keep the correlation inputs seen so far (and forget those older than any window).
    pub fn flush_inputs(&mut self) -> Result<()> {
        if self.inputs.is_empty() {
            return Ok(());
        }
        let keep_from = self.latest.saturating_sub(self.engine.lookback());
        self.store
            .note_correlation_inputs(&self.inputs, keep_from)?;
        self.inputs.clear();
        self.stats.correlation_evicted = self.engine.evicted();
        Ok(())
    }
}
