//! `trailwarden rules`: the Sigma rules trailwarden would load, their state and what they use.

use crate::output::{OutputFormat, Table};
use crate::Cli;
use anyhow::Result;
use clap::{Args, Subcommand};
use std::io;
use std::path::PathBuf;
use trailwarden_detect::{Engine, Rule};
use trailwarden_model::{Body, Record};

use crate::detector::CORRELATION_CAP;

/// `rules` subcommands.
#[derive(Subcommand, Debug)]
pub enum RulesCmd {
    /// List Sigma rules: id, title, level, log source, state (enabled, or disabled with the
    /// reason) and the Sigma features each uses.
    #[command(after_help = "Examples:\n  \
        trailwarden rules list ../sigma/rules/application/kubernetes\n  \
        trailwarden rules list my-rules/ --output json | jq '.[] | select(.state != \"enabled\")'")]
    List(ListArgs),
    /// Run rules over events from files, without storing anything: which events each rule
    /// matches, and why (the searches that matched).
    /// A scheduled query rule (`kind: scheduled`) runs once over the stored events of
    /// `--since`..`--until` instead, and says what it would raise.
    #[command(after_help = "Examples:\n  \
        trailwarden rules test rules/exec.yml --events audit.log\n  \
        trailwarden rules test ../sigma/rules/linux/auditd --events /var/log/audit/audit.log --output json\n  \
        trailwarden rules test rules/scheduled/aks_cluster_admin_binding.yml --since 24h --until 0s")]
    Test(TestArgs),
}

/// `rules test` arguments.
#[derive(Args, Debug)]
pub struct TestArgs {
    /// A rule file or a directory of rules.
    pub rules: PathBuf,
    /// Event files (any format `ingest` reads; `-` for stdin). Sigma rules only.
    #[arg(long, num_args = 1..)]
    pub events: Vec<String>,
    /// Scheduled rule: window start (RFC 3339 or a duration ago, e.g. 24h).
    #[arg(long)]
    pub since: Option<String>,
    /// Scheduled rule: window end (default: now).
    #[arg(long)]
    pub until: Option<String>,
}

/// `rules list` arguments.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Rule files or directories (searched for .yml / .yaml). Without any: the rules detection
    /// runs (the built-in pack and the data directory's `rules/`).
    pub paths: Vec<PathBuf>,
}

/// Run `rules`.
pub fn run(cli: &Cli, cmd: &RulesCmd) -> Result<u8> {
    match cmd {
        RulesCmd::List(a) => list(cli, a),
        RulesCmd::Test(a) => test(cli, a),
    }
}

/// Load rules from files and directories; load errors are printed and returned.
fn load(paths: &[PathBuf]) -> (Vec<Rule>, Vec<trailwarden_detect::DetectError>) {
    let (rules, errors) = trailwarden_detect::load_paths(paths);
    for e in &errors {
        eprintln!("error: {e}");
    }
    (rules, errors)
}

struct ScheduledRow {
    json: serde_json::Value,
    cells: Vec<String>,
}

/// The scheduled rules among `paths` (or those `serve` runs), with their state, last and next
/// run (from the data directory's alert store).
fn scheduled_rows(cli: &Cli, paths: &[PathBuf]) -> Vec<ScheduledRow> {
    let (rules, errors) = if paths.is_empty() {
        trailwarden_schedule::load_all(&cli.data_dir, true, &[])
    } else {
        trailwarden_schedule::load_paths(paths)
    };
    for e in errors {
        eprintln!("error: {e}");
    }
    let store = trailwarden_alert::AlertStore::open(cli.data_dir.join("alerts.db")).ok();
    let has_ledger = cli.data_dir.join("identity.json").exists();
    rules
        .into_iter()
        .map(|mut r| {
            if has_ledger {
                if let Err(e) = trailwarden_schedule::check_plan(&r, &cli.data_dir) {
                    r.disabled = Some(e);
                }
            }
            let last_end = store
                .as_ref()
                .and_then(|s| {
                    s.meta(&format!("scheduled:{}:last_end", r.id))
                        .ok()
                        .flatten()
                })
                .and_then(|v| v.parse::<i64>().ok());
            let state = match &r.disabled {
                None => "enabled".to_string(),
                Some(why) => format!("disabled: {why}"),
            };
            let every = format!(
                "scheduled: every {}s over {}s, rows {:?} {}",
                r.frequency_ns / 1_000_000_000,
                r.period_ns / 1_000_000_000,
                r.trigger_op,
                r.trigger_threshold
            );
            let ts = |t: i64| trailwarden_model::Timestamp(t).to_rfc3339();
            let next = last_end.map(|t| t + r.frequency_ns + 60_000_000_000);
            ScheduledRow {
                json: serde_json::json!({
                    "id": r.id, "title": r.title, "level": r.level, "kind": "scheduled",
                    "tags": r.tags, "state": state, "source": r.source,
                    "frequency_seconds": r.frequency_ns / 1_000_000_000,
                    "period_seconds": r.period_ns / 1_000_000_000,
                    "last_window_end": last_end.map(ts), "next_run": next.map(ts),
                    "derived_from": r.derived_from,
                }),
                cells: vec![
                    r.id.clone(),
                    r.title.clone(),
                    r.level.clone(),
                    every,
                    state,
                    format!(
                        "last window end {}, next run {}",
                        last_end.map(ts).unwrap_or_else(|| "never".into()),
                        next.map(ts)
                            .unwrap_or_else(|| "at the next start of serve".into())
                    ),
                ],
            }
        })
        .collect()
}

fn list(cli: &Cli, a: &ListArgs) -> Result<u8> {
    let (rules, errors) = if a.paths.is_empty() {
        let args = crate::detector::RuleArgs {
            rules: Vec::new(),
            no_builtin_rules: false,
            dedup_window: 0,
            allow_users: Vec::new(),
            allow_namespaces: Vec::new(),
            trusted_registries: Vec::new(),
        };
        (crate::detector::load_rules(cli, &args), Vec::new())
    } else {
        load(&a.paths)
    };
    let logsource = |r: &Rule| r.logsource.label();
    let state = |r: &Rule| match &r.disabled {
        None => "enabled".to_string(),
        Some(why) => format!("disabled: {why}"),
    };
    let scheduled = scheduled_rows(cli, &a.paths);
    match cli.output {
        OutputFormat::Json => {
            let mut v: Vec<serde_json::Value> = rules
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "id": r.id, "title": r.title, "level": r.level, "status": r.status,
                        "kind": "sigma",
                        "logsource": logsource(r), "tags": r.tags, "state": state(r),
                        "features": r.features, "source": r.source,
                    })
                })
                .collect();
            v.extend(scheduled.iter().map(|s| s.json.clone()));
            println!("{}", serde_json::Value::Array(v));
        }
        format => {
            let mut t = Table::new(&["id", "title", "level", "logsource", "state", "features"]);
            for r in &rules {
                t.row(vec![
                    r.id.clone(),
                    r.title.clone(),
                    r.level.clone(),
                    logsource(r),
                    state(r),
                    r.features.iter().cloned().collect::<Vec<_>>().join(", "),
                ]);
            }
            for s in &scheduled {
                t.row(s.cells.clone());
            }
            if format == OutputFormat::Csv {
                t.print_csv(&mut io::stdout())?;
            } else {
                t.print_text(&mut io::stdout())?;
                let off = rules.iter().filter(|r| r.disabled.is_some()).count();
                eprintln!(
                    "{} rule(s), {off} disabled, {} file(s) not loaded",
                    rules.len(),
                    errors.len()
                );
            }
        }
    }
    Ok(if errors.is_empty() {
        crate::EXIT_OK
    } else {
        crate::EXIT_PROBLEM
    })
}

fn test_scheduled(cli: &Cli, a: &TestArgs, text: &str) -> Result<u8> {
    let rule = match trailwarden_schedule::parse(text, &a.rules.display().to_string()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(crate::EXIT_PROBLEM);
        }
    };
    let now = trailwarden_model::Timestamp::now();
    let at = |s: &Option<String>, default: i64| -> Result<i64> {
        match s {
            None => Ok(default),
            Some(s) => Ok(trailwarden_model::parse_time_or_ago(s, now)
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .0),
        }
    };
    let until = at(&a.until, now.0)?;
    let since = at(&a.since, until - rule.period_ns)?;
    if let Err(e) = trailwarden_schedule::check_plan(&rule, &cli.data_dir) {
        eprintln!("error: rule {} is disabled: {e}", rule.title);
        return Ok(crate::EXIT_PROBLEM);
    }
    let r = match trailwarden_schedule::run(&rule, &cli.data_dir, since, until, 2) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(crate::EXIT_PROBLEM);
        }
    };
    if let Some(w) = crate::store::record_access(
        cli,
        "rules test",
        &format!(
            "scheduled rule {} window [{}, {})",
            rule.id,
            trailwarden_model::Timestamp(since),
            trailwarden_model::Timestamp(until)
        ),
        r.rows,
        "success",
    ) {
        eprintln!("warning: {w}");
    }
    match cli.output {
        OutputFormat::Json => println!("{}", serde_json::json!({"rule": rule, "result": r})),
        _ => {
            println!(
                "{}: {} rows in [{}, {}), trigger {:?} {} → {}",
                rule.title,
                r.rows,
                trailwarden_model::Timestamp(since),
                trailwarden_model::Timestamp(until),
                rule.trigger_op,
                rule.trigger_threshold,
                if r.fired { "FIRES" } else { "does not fire" }
            );
            for al in &r.alerts {
                println!(
                    "  alert [{}] {} — evidence {:?}",
                    al.level, al.summary, al.evidence
                );
            }
        }
    }
    Ok(crate::EXIT_OK)
}

/// One detection: a rule matching an event, or a correlation met over several.
struct Hit {
    at: Vec<String>,
    rule: usize,
    why: Vec<String>,
}

fn test(cli: &Cli, a: &TestArgs) -> Result<u8> {
    if a.rules.is_file() {
        let text = std::fs::read_to_string(&a.rules)?;
        if trailwarden_schedule::is_scheduled(&text) {
            return test_scheduled(cli, a, &text);
        }
    }
    if a.events.is_empty() {
        eprintln!("error: --events is required for Sigma rules");
        return Ok(crate::EXIT_USAGE);
    }
    let (rules, errors) = load(std::slice::from_ref(&a.rules));
    crate::detector::warn_disabled(&rules);
    let mut engine = Engine::new(rules, CORRELATION_CAP);
    for (i, why) in &engine.problems {
        eprintln!("warning: {} cannot run: {why}", engine.rules()[*i].title);
    }
    let mut hits = Vec::new();
    let mut events = 0u64;
    let mut quarantined = 0u64;
    let mut places: Vec<String> = Vec::new();
    {
        let mut found = Vec::new();
        let mut sink = |rec: Record| -> Result<(), String> {
            let at = match &rec.location {
                Some(l) => format!("{}:{}", rec.source.trim_start_matches("file:"), l.line),
                None => rec.source.clone(),
            };
            match &rec.body {
                Body::Event(ev) => {
                    events += 1;
                    let id = places.len() as u64;
                    places.push(at);
                    let time = ev.time.unwrap_or(rec.received).0;
                    found.clear();
                    engine.check(id, time, ev, &rec.raw, &mut found);
                    for d in found.drain(..) {
                        hits.push(Hit {
                            at: d
                                .evidence
                                .iter()
                                .filter_map(|i| places.get(*i as usize).cloned())
                                .collect(),
                            rule: d.rule,
                            why: if d.group.is_empty() {
                                d.matched
                            } else {
                                vec![format!("{} event(s) for {}", d.count, d.group.join(", "))]
                            },
                        });
                    }
                }
                Body::Quarantine(_) => quarantined += 1,
                Body::Internal => {}
            }
            Ok(())
        };
        let mut ing = trailwarden_parse::ingest::Ingestor::new(
            trailwarden_parse::ingest::Options::default(),
            &mut sink,
        );
        for f in &a.events {
            ing.ingest_path(f, &mut |_, _| {})
                .map_err(|e| anyhow::anyhow!("reading {f}: {e}"))?;
        }
    }
    let enabled = engine.rules();
    if quarantined > 0 {
        // never silent: these lines were not checked by any rule
        eprintln!(
            "warning: {quarantined} record(s) could not be parsed and were not checked \
             (`trailwarden ingest --no-store --output json FILE` gives the reasons)"
        );
    }
    match cli.output {
        OutputFormat::Json => {
            let v: Vec<serde_json::Value> = hits
                .iter()
                .map(|h| {
                    let r = &enabled[h.rule];
                    serde_json::json!({"event": h.at.last(), "events": h.at, "rule_id": r.id, "title": r.title,
                        "level": r.level, "matched": h.why})
                })
                .collect();
            println!("{}", serde_json::Value::Array(v));
        }
        format => {
            let mut t = Table::new(&["events", "rule_id", "title", "level", "matched"]);
            for h in &hits {
                let r = &enabled[h.rule];
                t.row(vec![
                    h.at.join(" "),
                    r.id.clone(),
                    r.title.clone(),
                    r.level.clone(),
                    h.why.join(", "),
                ]);
            }
            if format == OutputFormat::Csv {
                t.print_csv(&mut io::stdout())?;
            } else {
                t.print_text(&mut io::stdout())?;
                eprintln!(
                    "{} match(es) of {} rule(s) over {events} event(s)",
                    hits.len(),
                    enabled.len()
                );
            }
        }
    }
    Ok(if errors.is_empty() {
        crate::EXIT_OK
    } else {
        crate::EXIT_PROBLEM
    })
}
