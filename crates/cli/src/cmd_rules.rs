//! `trailwarden rules`: the Sigma rules trailwarden would load, their state and what they use.

use crate::output::{OutputFormat, Table};
use crate::Cli;
use anyhow::Result;
use clap::{Args, Subcommand};
use std::io;
use std::path::PathBuf;

/// `rules` subcommands.
#[derive(Subcommand, Debug)]
pub enum RulesCmd {
    /// List Sigma rules: id, title, level, log source, state (enabled, or disabled with the
    /// reason) and the Sigma features each uses.
    #[command(after_help = "Examples:\n  \
        trailwarden rules list ../sigma/rules/application/kubernetes\n  \
        trailwarden rules list my-rules/ --output json | jq '.[] | select(.state != \"enabled\")'")]
    List(ListArgs),
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
    let RulesCmd::List(a) = cmd;
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    for p in &a.paths {
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
    let logsource = |r: &trailwarden_detect::Rule| {
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
    let state = |r: &trailwarden_detect::Rule| match &r.disabled {
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
