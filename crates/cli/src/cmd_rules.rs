//! `trailwarden rules`: the Sigma rules trailwarden would load, their state and what they use.

use crate::output::{OutputFormat, Table};
use crate::Cli;
use anyhow::Result;
use clap::{Args, Subcommand};
use std::io;
use std::path::PathBuf;
use trailwarden_detect::{FlatDoc, JsonDoc, LogSource, Rule};
use trailwarden_model::{Body, Format, Record};

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
    /// Rule files or directories (searched for .yml / .yaml).
    #[arg(required = true)]
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
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        if p.is_dir() {
            let (r, e) = trailwarden_detect::load_dir(p);
            rules.extend(r);
            errors.extend(e);
        } else {
            match trailwarden_detect::load_file(p) {
                Ok(r) => rules.extend(r),
                Err(e) => errors.push(e),
            }
        }
    }
    for e in &errors {
        eprintln!("error: {e}");
    }
    (rules, errors)
}

fn list(cli: &Cli, a: &ListArgs) -> Result<u8> {
    let (rules, errors) = load(&a.paths);
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

/// One rule matching one event.
struct Hit {
    at: String,
    rule: usize,
    why: Vec<String>,
}

/// The documents a record gives Sigma rules: the audit event itself for JSON formats (the inner
/// document of an envelope such as AKS's `properties.log`), one per record line for auditd
/// (Sigma's auditd rules look at single records), the text otherwise.
fn check(rules: &[&Rule], rec: &Record, at: &str, hits: &mut Vec<Hit>) {
    let Body::Event(ev) = &rec.body else { return };
    let ls = LogSource::of_format(ev.format.as_str());
    let raw = String::from_utf8_lossy(&rec.raw);
    let mut hit = |i: usize, why: Vec<&str>| {
        hits.push(Hit {
            at: at.to_string(),
            rule: i,
            why: why.into_iter().map(str::to_string).collect(),
        })
    };
    let applicable = || {
        rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.logsource.covers(&ls))
    };
    if ev.format == Format::Auditd {
        for line in raw.lines() {
            let Ok(r) = trailwarden_parse::auditd::parse_record(line) else {
                continue;
            };
            let mut fields = vec![("type", r.record_type.as_str())];
            fields.extend(r.fields.iter().map(|f| (f.key.as_str(), f.value.as_str())));
            let doc = FlatDoc { fields, text: line };
            for (i, rule) in applicable() {
                if rule.matches(&doc) {
                    hit(i, rule.matched_searches(&doc));
                }
            }
        }
        return;
    }
    let text = ev.payload.as_deref().unwrap_or(&raw);
    let value = serde_json::from_str::<serde_json::Value>(text).ok();
    let message = ev.message.as_deref().unwrap_or_default();
    let flat;
    let json;
    let doc: &dyn trailwarden_detect::Doc = match &value {
        Some(v) => {
            json = JsonDoc {
                value: v,
                raw: text,
            };
            &json
        }
        None => {
            flat = FlatDoc {
                fields: vec![("message", message)],
                text,
            };
            &flat
        }
    };
    for (i, rule) in applicable() {
        if rule.matches(doc) {
            hit(i, rule.matched_searches(doc));
        }
    }
}

fn test(cli: &Cli, a: &TestArgs) -> Result<u8> {
    let (rules, errors) = load(std::slice::from_ref(&a.rules));
    let enabled: Vec<&Rule> = rules.iter().filter(|r| r.disabled.is_none()).collect();
    for r in rules.iter().filter(|r| r.disabled.is_some()) {
        eprintln!(
            "warning: {} ({}) is disabled: {}",
            r.title,
            r.source,
            r.disabled.as_deref().unwrap_or_default()
        );
    }
    let correlations = rules.iter().filter(|r| r.correlation.is_some()).count();
    if correlations > 0 {
        eprintln!("note: {correlations} correlation rule(s) are not evaluated by `rules test` yet");
    }
    let mut hits = Vec::new();
    let mut events = 0u64;
    let mut quarantined = 0u64;
    {
        let mut sink = |rec: Record| -> Result<(), String> {
            match rec.body {
                Body::Event(_) => events += 1,
                Body::Quarantine(_) => quarantined += 1,
                Body::Internal => {}
            }
            let at = match &rec.location {
                Some(l) => format!("{}:{}", rec.source.trim_start_matches("file:"), l.line),
                None => rec.source.clone(),
            };
            check(&enabled, &rec, &at, &mut hits);
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
                    let r = enabled[h.rule];
                    serde_json::json!({"event": h.at, "rule_id": r.id, "title": r.title,
                        "level": r.level, "matched": h.why})
                })
                .collect();
            println!("{}", serde_json::Value::Array(v));
        }
        format => {
            let mut t = Table::new(&["event", "rule_id", "title", "level", "matched"]);
            for h in &hits {
                let r = enabled[h.rule];
                t.row(vec![
                    h.at.clone(),
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
