//! # trailwarden-schedule
//!
//! Scheduled query rules (Sentinel's "scheduled analytics"): a KQL or SQL query run every
//! `frequency` over the last `period`, raising an alert when its row count passes a threshold —
//! one alert per run, or one per result row. Rule files are YAML with `kind: scheduled`, beside
//! the Sigma rules (`rules/scheduled/` in the built-in pack, the data directory's `rules/`).
//!
//! Windows are contiguous: each run covers `[end - period, end)` where `end` advances by
//! `frequency`; after downtime the missed windows are run in order, none skipped. Each run is
//! recorded in the ledger as an access record (the scheduler reads audit data), and the last
//! window done is kept in `alerts.db`, so a crash re-runs at most one window (its alerts merge
//! into the ones it raised before).
#![warn(missing_docs)]

use serde::Serialize;
use std::path::{Path, PathBuf};
use trailwarden_alert::NewAlert;
use trailwarden_model::Timestamp;
use trailwarden_query::engine::{Engine, QueryOptions};
use yaml_rust2::{Yaml, YamlLoader};

/// Errors of scheduled rules.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// A rule file is not a valid scheduled rule.
    #[error("{path}: {message}")]
    Rule {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The query failed.
    #[error("rule {rule}: query: {message}")]
    Query {
        /// The rule id.
        rule: String,
        /// Why.
        message: String,
    },
}

/// Query language.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// KQL (default).
    Kql,
    /// SQL.
    Sql,
}

/// Trigger comparison on the number of result rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// More than.
    Gt,
    /// Fewer than.
    Lt,
    /// Exactly.
    Eq,
    /// Anything but.
    Ne,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s.to_ascii_lowercase().as_str() {
            "gt" | "greaterthan" | ">" => Op::Gt,
            "lt" | "lessthan" | "<" => Op::Lt,
            "eq" | "equal" | "==" => Op::Eq,
            "ne" | "notequal" | "!=" => Op::Ne,
            _ => return None,
        })
    }

    /// Does `rows` pass `threshold`?
    pub fn fires(self, rows: u64, threshold: u64) -> bool {
        match self {
            Op::Gt => rows > threshold,
            Op::Lt => rows < threshold,
            Op::Eq => rows == threshold,
            Op::Ne => rows != threshold,
        }
    }
}

/// One alert per run, or one per result row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Grouping {
    /// One alert per run (Sentinel's SingleAlert).
    Single,
    /// One alert per result row, the row's entity columns as its group (AlertPerResult).
    PerRow,
}

/// A scheduled query rule.
#[derive(Clone, Debug, Serialize)]
pub struct ScheduledRule {
    /// Id (UUID).
    pub id: String,
    /// Title.
    pub title: String,
    /// What it finds.
    pub description: String,
    /// Sigma level of its alerts.
    pub level: String,
    /// Tags (ATT&CK, PCI DSS).
    pub tags: Vec<String>,
    /// The query.
    pub query: String,
    /// KQL or SQL.
    pub language: Language,
    /// How often it runs (ns).
    pub frequency_ns: i64,
    /// How far back each run looks (ns).
    pub period_ns: i64,
    /// Trigger operator.
    pub trigger_op: Op,
    /// Trigger threshold (rows).
    pub trigger_threshold: u64,
    /// Alert grouping.
    pub grouping: Grouping,
    /// After an alert, none for this long (ns; 0 = no suppression).
    pub suppression_ns: i64,
    /// Columns that name the entities (who, from where) in summaries and group keys.
    pub entities: Vec<String>,
    /// Where it came from (a Sentinel rule's path, for translations).
    pub derived_from: Option<String>,
    /// The file.
    pub source: String,
    /// Why it does not run (bad query, …).
    pub disabled: Option<String>,
}

/// Most alerts one run raises (Sentinel's limit is 150); beyond, one more says how many were
/// left out.
pub const MAX_ALERTS_PER_RUN: usize = 150;

fn field<'a>(doc: &'a Yaml, k: &str) -> &'a Yaml {
    &doc[k]
}

fn string(doc: &Yaml, k: &str) -> Option<String> {
    match field(doc, k) {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        _ => None,
    }
}

fn strings(doc: &Yaml, k: &str) -> Vec<String> {
    match field(doc, k) {
        Yaml::Array(a) => a
            .iter()
            .filter_map(|y| y.as_str().map(str::to_string))
            .collect(),
        Yaml::String(s) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// Is this YAML text a scheduled rule?
pub fn is_scheduled(text: &str) -> bool {
    trailwarden_detect::rule::is_scheduled(text)
}

fn duration(s: &str) -> Option<i64> {
    // Sentinel writes 5m, 1h, 1d; ISO 8601 (PT5M, P1D) is accepted too
    let t = s.trim();
    if let Some(iso) = t.strip_prefix("PT").or_else(|| t.strip_prefix("pt")) {
        return trailwarden_model::parse_duration(&iso.to_ascii_lowercase()).ok();
    }
    if let Some(iso) = t.strip_prefix('P').or_else(|| t.strip_prefix('p')) {
        return trailwarden_model::parse_duration(&iso.to_ascii_lowercase()).ok();
    }
    trailwarden_model::parse_duration(t).ok()
}

/// Parse one rule file. A query that does not parse loads the rule *disabled* with the error
/// (it is listed, and raises nothing); a file that is not a scheduled rule at all is an error.
pub fn parse(text: &str, origin: &str) -> Result<ScheduledRule, ScheduleError> {
    let bad = |m: String| ScheduleError::Rule {
        path: origin.into(),
        message: m,
    };
    let docs = YamlLoader::load_from_str(text).map_err(|e| bad(e.to_string()))?;
    let doc = docs.first().ok_or_else(|| bad("empty file".into()))?;
    let req = |k: &str| string(doc, k).ok_or_else(|| bad(format!("{k} is missing")));
    let id = req("id")?;
    let title = string(doc, "title")
        .or_else(|| string(doc, "name"))
        .ok_or_else(|| bad("title is missing".into()))?;
    let level = req("level")?.to_ascii_lowercase();
    if !trailwarden_alert::route::LEVELS.contains(&level.as_str()) {
        return Err(bad(format!("level {level:?} is not a Sigma level")));
    }
    let (query, language) = match (string(doc, "query"), string(doc, "sql")) {
        (Some(q), None) => (q, Language::Kql),
        (None, Some(q)) => (q, Language::Sql),
        _ => return Err(bad("exactly one of query (KQL) or sql is needed".into())),
    };
    let frequency_ns = duration(&req("frequency")?)
        .ok_or_else(|| bad("frequency is not a duration (5m, 1h, 1d)".into()))?;
    let period_ns = duration(&req("period")?)
        .ok_or_else(|| bad("period is not a duration (5m, 1h, 1d)".into()))?;
    if frequency_ns < 60_000_000_000 {
        return Err(bad("frequency must be at least 1m".into()));
    }
    if period_ns < frequency_ns {
        return Err(bad(
            "period must be at least frequency (windows would leave gaps)".into(),
        ));
    }
    let trig = field(doc, "trigger");
    let trigger_op = match string(trig, "operator") {
        Some(o) => {
            Op::parse(&o).ok_or_else(|| bad(format!("trigger.operator {o:?}: gt, lt, eq or ne")))?
        }
        None => Op::Gt,
    };
    let trigger_threshold = match field(trig, "threshold") {
        Yaml::Integer(i) if *i >= 0 => *i as u64,
        Yaml::BadValue => 0,
        _ => return Err(bad("trigger.threshold must be a whole number ≥ 0".into())),
    };
    let grouping = match string(doc, "grouping").as_deref() {
        None | Some("single") => Grouping::Single,
        Some("per-row") | Some("per_row") => Grouping::PerRow,
        Some(g) => return Err(bad(format!("grouping {g:?}: single or per-row"))),
    };
    let suppression_ns = match string(doc, "suppression") {
        None => 0,
        Some(s) => {
            duration(&s).ok_or_else(|| bad(format!("suppression {s:?} is not a duration")))?
        }
    };
    let mut r = ScheduledRule {
        id,
        title,
        description: string(doc, "description").unwrap_or_default(),
        level,
        tags: strings(doc, "tags"),
        query,
        language,
        frequency_ns,
        period_ns,
        trigger_op,
        trigger_threshold,
        grouping,
        suppression_ns,
        entities: strings(doc, "entities"),
        derived_from: string(doc, "derived_from"),
        source: origin.to_string(),
        disabled: None,
    };
    if r.language == Language::Kql {
        if let Err(e) = trailwarden_kql::parser::parse(&r.query) {
            r.disabled = Some(format!("the query does not parse: {e}"));
        }
    }
    Ok(r)
}

/// The built-in scheduled rules (`rules/scheduled/`), and the files that did not load.
pub fn builtin() -> (Vec<ScheduledRule>, Vec<ScheduleError>) {
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    for (path, text) in trailwarden_detect::builtin_texts() {
        if is_scheduled(text) {
            match parse(text, &format!("builtin:{path}")) {
                Ok(r) => rules.push(r),
                Err(e) => errors.push(e),
            }
        }
    }
    (rules, errors)
}

/// The scheduled rules among files and directories (recursively; Sigma files are skipped).
pub fn load_paths(paths: &[PathBuf]) -> (Vec<ScheduledRule>, Vec<ScheduleError>) {
    let mut files = Vec::new();
    let mut stack: Vec<PathBuf> = paths.to_vec();
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        } else if p.extension().is_some_and(|x| x == "yml" || x == "yaml") {
            files.push(p);
        }
    }
    files.sort();
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        if !is_scheduled(&text) {
            continue;
        }
        match parse(&text, &f.display().to_string()) {
            Ok(r) => rules.push(r),
            Err(e) => errors.push(e),
        }
    }
    (rules, errors)
}

/// Every scheduled rule `serve` runs: the built-in pack's, the data directory's `rules/`, and
/// `extra` paths. A later rule with the same id replaces an earlier one (a data directory's
/// rule overrides the pack's).
pub fn load_all(
    data_dir: &Path,
    builtin_rules: bool,
    extra: &[PathBuf],
) -> (Vec<ScheduledRule>, Vec<ScheduleError>) {
    let (mut rules, mut errors) = if builtin_rules {
        builtin()
    } else {
        (Vec::new(), Vec::new())
    };
    let mut paths = vec![data_dir.join("rules")];
    paths.extend(extra.iter().cloned());
    let paths: Vec<PathBuf> = paths.into_iter().filter(|p| p.exists()).collect();
    let (more, e) = load_paths(&paths);
    errors.extend(e);
    for r in more {
        rules.retain(|x| x.id != r.id);
        rules.push(r);
    }
    (rules, errors)
}

/// What one run found.
#[derive(Clone, Debug, Serialize)]
pub struct RunResult {
    /// The window's start (ns).
    pub start: i64,
    /// The window's end (ns, exclusive).
    pub end: i64,
    /// Result rows.
    pub rows: u64,
    /// Did the trigger fire?
    pub fired: bool,
    /// The alerts to raise.
    pub alerts: Vec<NewAlert>,
    /// The rows (at most 1,000, for `rules test`).
    pub sample: Vec<serde_json::Map<String, serde_json::Value>>,
    /// Seconds the query took.
    pub seconds: f64,
}

/// Ledger indexes a row carries: `_LedgerIndex` (a number) or any column holding a list of
/// them (`make_set(_LedgerIndex)`).
fn evidence(row: &serde_json::Map<String, serde_json::Value>) -> Vec<u64> {
    let mut out = Vec::new();
    for (k, v) in row {
        if !k.contains("LedgerIndex") && k != "idx" {
            continue;
        }
        match v {
            serde_json::Value::Number(n) => out.extend(n.as_u64()),
            serde_json::Value::Array(a) => out.extend(a.iter().filter_map(|x| x.as_u64())),
            serde_json::Value::String(s) => {
                if let Ok(serde_json::Value::Array(a)) = serde_json::from_str(s) {
                    out.extend(a.iter().filter_map(|x| x.as_u64()));
                }
            }
            _ => {}
        }
    }
    out
}

fn cell(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Run `rule` once over `[start, end)` of the ledger in `data_dir`. `now()`/`ago()` in the
/// query mean `end`.
pub fn run(
    rule: &ScheduledRule,
    data_dir: &Path,
    start: i64,
    end: i64,
    threads: usize,
) -> Result<RunResult, ScheduleError> {
    let qerr = |m: String| ScheduleError::Query {
        rule: rule.id.clone(),
        message: m,
    };
    if let Some(d) = &rule.disabled {
        return Err(qerr(format!("disabled: {d}")));
    }
    let t0 = std::time::Instant::now();
    let opts = QueryOptions {
        since: Some(Timestamp(start)),
        until: Some(Timestamp(end)),
        now: Some(Timestamp(end)),
        threads: Some(threads),
        timeout: Some(std::time::Duration::from_secs(300)),
        ..QueryOptions::default()
    };
    let engine = Engine::open(data_dir, opts).map_err(|e| qerr(e.to_string()))?;
    let outputs = trailwarden_query::engine::block_on(threads, async {
        match rule.language {
            Language::Kql => engine.kql(&rule.query).await,
            Language::Sql => engine.sql(&rule.query).await.map(|o| vec![o]),
        }
    })
    .map_err(|e| qerr(e.to_string()))?
    .map_err(|e| qerr(e.to_string()))?;
    let Some(out) = outputs.last() else {
        return Err(qerr("the query returned no table".into()));
    };
    let rows = trailwarden_query::render::json_rows(out);
    let n = rows.len() as u64;
    let fired = rule.trigger_op.fires(n, rule.trigger_threshold);
    let mut alerts = Vec::new();
    if fired {
        let window = format!(
            "[{}, {})",
            Timestamp(start).to_rfc3339(),
            Timestamp(end).to_rfc3339()
        );
        let entity_text = |row: &serde_json::Map<String, serde_json::Value>| -> String {
            let cols: Vec<&String> = if rule.entities.is_empty() {
                row.keys()
                    .filter(|k| !k.contains("LedgerIndex"))
                    .take(4)
                    .collect()
            } else {
                rule.entities.iter().collect()
            };
            cols.iter()
                .filter_map(|c| row.get(c.as_str()).map(|v| format!("{c}={}", cell(v))))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let new = |group_key: String, summary: String, evidence: Vec<u64>, count: u64| NewAlert {
            rule_id: rule.id.clone(),
            title: rule.title.clone(),
            level: rule.level.clone(),
            tags: rule.tags.clone(),
            group_key,
            summary,
            evidence,
            time: end.saturating_sub(1),
            count,
            namespace: None,
            source: Some(format!("scheduled:{}", rule.id)),
        };
        match rule.grouping {
            Grouping::Single => {
                let ev: Vec<u64> = rows.iter().flat_map(evidence).collect();
                let first = rows.first().map(&entity_text).unwrap_or_default();
                alerts.push(new(
                    "scheduled".into(),
                    format!(
                        "{n} result rows in {window}{}",
                        if first.is_empty() {
                            String::new()
                        } else {
                            format!("; the first: {first}")
                        }
                    ),
                    ev,
                    n.max(1),
                ));
            }
            Grouping::PerRow => {
                for row in rows.iter().take(MAX_ALERTS_PER_RUN - 1) {
                    let who = entity_text(row);
                    alerts.push(new(
                        format!("scheduled|{who}"),
                        format!("{who} in {window}"),
                        evidence(row),
                        1,
                    ));
                }
                if rows.len() >= MAX_ALERTS_PER_RUN {
                    alerts.push(new(
                        "scheduled|rest".into(),
                        format!(
                            "{} more result rows in {window} than alerts raised ({} per run at most)",
                            rows.len() - (MAX_ALERTS_PER_RUN - 1),
                            MAX_ALERTS_PER_RUN
                        ),
                        Vec::new(),
                        (rows.len() - (MAX_ALERTS_PER_RUN - 1)) as u64,
                    ));
                }
            }
        }
    }
    Ok(RunResult {
        start,
        end,
        rows: n,
        fired,
        alerts,
        sample: rows.into_iter().take(1000).collect(),
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// Check that `rule`'s query plans against the ledger in `data_dir` (tables and columns
/// exist). The error is why the rule is disabled.
pub fn check_plan(rule: &ScheduledRule, data_dir: &Path) -> Result<(), String> {
    if let Some(d) = &rule.disabled {
        return Err(d.clone());
    }
    let engine = Engine::open(data_dir, QueryOptions::default()).map_err(|e| e.to_string())?;
    match rule.language {
        Language::Kql => trailwarden_query::engine::block_on(1, engine.plan_kql(&rule.query))
            .map_err(|e| e.to_string())?
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Language::Sql => trailwarden_query::engine::block_on(1, async {
            engine
                .context()
                .state()
                .create_logical_plan(&rule.query)
                .await
                .map(|_| ())
        })
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string()),
    }
}

/// The window ends due by `now` (with `delay` for late ingestion) after `last_end`, in order:
/// contiguous, none skipped.
pub fn due_windows(
    rule: &ScheduledRule,
    last_end: i64,
    now: i64,
    delay_ns: i64,
) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut end = last_end + rule.frequency_ns;
    while end + delay_ns <= now && out.len() < 10_000 {
        out.push((end - rule.period_ns, end));
        end += rule.frequency_ns;
    }
    out
}

/// The first window end for a rule that never ran: the last `frequency` boundary before now.
pub fn first_end(rule: &ScheduledRule, now: i64, delay_ns: i64) -> i64 {
    let t = now - delay_ns;
    t - t.rem_euclid(rule.frequency_ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: &str = "kind: scheduled\nid: 5b1c\ntitle: t\nlevel: high\nquery: AKSAudit | take 1\nfrequency: 5m\nperiod: 15m\ntrigger:\n  operator: gt\n  threshold: 2\n";

    #[test]
    fn parses_and_windows_are_contiguous() {
        let r = parse(RULE, "x").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.frequency_ns, 300_000_000_000);
        assert_eq!((r.trigger_op, r.trigger_threshold), (Op::Gt, 2));
        assert!(r.disabled.is_none());
        let m = 60_000_000_000;
        let w = due_windows(&r, 10 * m, 31 * m, m);
        assert_eq!(
            w,
            vec![
                (0, 15 * m),
                (5 * m, 20 * m),
                (10 * m, 25 * m),
                (15 * m, 30 * m)
            ]
        );
        assert!(
            due_windows(&r, 10 * m, 15 * m, m).is_empty(),
            "not due before its delay"
        );
        assert_eq!(first_end(&r, 31 * m, m), 30 * m);
        assert!(Op::Gt.fires(3, 2) && !Op::Gt.fires(2, 2) && Op::Ne.fires(0, 1));
    }

    #[test]
    fn a_bad_query_loads_disabled_and_bad_settings_are_errors() {
        let r = parse(
            &RULE.replace("AKSAudit | take 1", "AKSAudit | where (("),
            "x",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            r.disabled
                .as_deref()
                .is_some_and(|d| d.contains("does not parse")),
            "{:?}",
            r.disabled
        );
        assert!(parse(&RULE.replace("frequency: 5m", "frequency: 10s"), "x").is_err());
        assert!(parse(&RULE.replace("period: 15m", "period: 1m"), "x").is_err());
        assert!(parse(&RULE.replace("level: high", "level: severe"), "x").is_err());
        assert_eq!(duration("PT5M"), Some(300_000_000_000));
        assert_eq!(duration("P1D"), Some(86_400_000_000_000));
    }

    #[test]
    fn evidence_from_ledger_index_columns() {
        let row: serde_json::Map<String, serde_json::Value> = serde_json::from_str(
            r#"{"_LedgerIndex": 7, "set_LedgerIndex": "[8, 9]", "user": "a"}"#,
        )
        .unwrap_or_default();
        let mut e = evidence(&row);
        e.sort();
        assert_eq!(e, vec![7, 8, 9]);
    }
}
