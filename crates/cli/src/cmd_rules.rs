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
    #[command(after_help = "Examples:\n  \
        trailwarden rules test rules/exec.yml --events audit.log\n  \
        trailwarden rules test ../sigma/rules/linux/auditd --events /var/log/audit/audit.log --output json")]
    Test(TestArgs),
}

/// `rules test` arguments.
#[derive(Args, Debug)]
pub struct TestArgs {
    /// A rule file or a directory of rules.
    pub rules: PathBuf,
    /// Event files (any format `ingest` reads; `-` for stdin).
    #[arg(long, required = true, num_args = 1..)]
    pub events: Vec<String>,
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

fn list(cli: &Cli, a: &ListArgs) -> Result<u8> {
    let (rules, errors) = if a.paths.is_empty() {
        let args = crate::detector::RuleArgs {
            rules: Vec::new(),
            no_builtin_rules: false,
            dedup_window: 0,
        };
        (crate::detector::load_rules(cli, &args), Vec::new())
    } else {
        load(&a.paths)
    };
    let logsource = |r: &Rule| {
        [
            &r.logsource.category,
            &r.logsource.product,
            &r.logsource.service,
        ]
        .iter()
        .filter_map(|x| x.as_deref())
        .collect::<Vec<_>>()
        .join("/")
    };
    let state = |r: &Rule| match &r.disabled {
        None => "enabled".to_string(),
        Some(why) => format!("disabled: {why}"),
    };
    match cli.output {
        OutputFormat::Json => {
            let v: Vec<serde_json::Value> = rules
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "id": r.id, "title": r.title, "level": r.level, "status": r.status,
                        "logsource": logsource(r), "tags": r.tags, "state": state(r),
                        "features": r.features, "source": r.source,
                    })
                })
                .collect();
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

/// One detection: a rule matching an event, or a correlation met over several.
struct Hit {
    at: Vec<String>,
    rule: usize,
    why: Vec<String>,
}

fn test(cli: &Cli, a: &TestArgs) -> Result<u8> {
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
