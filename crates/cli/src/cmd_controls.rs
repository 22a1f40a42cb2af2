//! `trailwarden controls`: control-failure incidents (PCI DSS 10.7.1–10.7.3).

use crate::output::{OutputFormat, Table};
use crate::{store, Cli};
use anyhow::Result;
use clap::{Args, Subcommand};
use std::io;
use trailwarden_alert::{Filter, Status};
use trailwarden_compliance::controls::{self, Incident};
use trailwarden_model::Timestamp;

/// `trailwarden controls`.
#[derive(Subcommand, Debug)]
pub enum ControlsCmd {
    /// Incidents, newest first: control, subject, start, end, duration, cause.
    #[command(
        after_help = "Examples:\n  trailwarden controls list\n  trailwarden controls list --open --output json"
    )]
    List(ListArgs),
    /// One incident with its cause and remediation.
    Show {
        /// Incident (alert) id.
        id: i64,
    },
    /// Close an incident with its remediation note (what restored the function, what prevents
    /// a recurrence); recorded in the ledger.
    #[command(
        after_help = "Examples:\n  trailwarden controls note 7 --note 'disk extended to 500 GiB (CHG-2231); alert threshold lowered'"
    )]
    Note(NoteArgs),
}

/// `controls list` arguments.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only open incidents.
    #[arg(long)]
    pub open: bool,
}

/// `controls note` arguments.
#[derive(Args, Debug)]
pub struct NoteArgs {
    /// Incident (alert) id.
    pub id: i64,
    /// The remediation: what restored the control, the cause, what prevents recurrence.
    #[arg(long)]
    pub note: String,
}

fn load(cli: &Cli) -> Result<Vec<Incident>> {
    let store = crate::cmd_alerts::open_store(cli)?;
    let alerts = store.list(&Filter::default())?;
    Ok(controls::incidents(&alerts, Timestamp::now().0))
}

fn duration(s: i64) -> String {
    format!("{}h{:02}m{:02}s", s / 3600, (s % 3600) / 60, s % 60)
}

/// Run `controls`.
pub fn run(cli: &Cli, cmd: &ControlsCmd) -> Result<u8> {
    match cmd {
        ControlsCmd::List(a) => {
            let list: Vec<Incident> = load(cli)?
                .into_iter()
                .filter(|i| !a.open || i.state == "open")
                .collect();
            if let Some(w) = store::record_access(
                cli,
                "controls-list",
                "incidents",
                list.len() as u64,
                "success",
            ) {
                eprintln!("warning: {w}");
            }
            match cli.output {
                OutputFormat::Json | OutputFormat::Sarif => {
                    println!("{}", serde_json::to_string_pretty(&list)?)
                }
                fmt => {
                    let mut t = Table::new(&[
                        "id", "control", "subject", "state", "start", "end", "duration", "count",
                        "cause",
                    ]);
                    for i in &list {
                        t.row(vec![
                            i.id.to_string(),
                            i.control.clone(),
                            i.subject.clone().unwrap_or_default(),
                            i.state.clone(),
                            i.start.to_string(),
                            i.end.map(|e| e.to_string()).unwrap_or_else(|| "-".into()),
                            duration(i.duration_seconds),
                            i.occurrences.to_string(),
                            i.cause.clone(),
                        ]);
                    }
                    if fmt == OutputFormat::Csv {
                        t.print_csv(&mut io::stdout())?;
                    } else {
                        t.print_text(&mut io::stdout())?;
                    }
                }
            }
            Ok(crate::EXIT_OK)
        }
        ControlsCmd::Show { id } => {
            let Some(i) = load(cli)?.into_iter().find(|i| i.id == *id) else {
                eprintln!("error: no control-failure incident {id} (`trailwarden controls list`)");
                return Ok(crate::EXIT_PROBLEM);
            };
            if let Some(w) =
                store::record_access(cli, "controls-show", &id.to_string(), 1, "success")
            {
                eprintln!("warning: {w}");
            }
            match cli.output {
                OutputFormat::Json | OutputFormat::Sarif => {
                    println!("{}", serde_json::to_string_pretty(&i)?)
                }
                _ => {
                    println!("incident {} — {} ({})", i.id, i.title, i.state);
                    println!(
                        "control:     {}{}",
                        i.control,
                        i.subject
                            .as_deref()
                            .map(|s| format!(" / {s}"))
                            .unwrap_or_default()
                    );
                    println!("start:       {}", i.start);
                    println!("last seen:   {}", i.last_seen);
                    println!(
                        "end:         {}",
                        i.end
                            .map(|e| e.to_string())
                            .unwrap_or_else(|| "(open)".into())
                    );
                    println!("duration:    {}", duration(i.duration_seconds));
                    println!("occurrences: {}", i.occurrences);
                    println!("cause:       {}", i.cause);
                    if let Some(r) = &i.remediation {
                        println!(
                            "remediation: {r} (by {})",
                            i.closed_by.as_deref().unwrap_or("?")
                        );
                    }
                }
            }
            Ok(crate::EXIT_OK)
        }
        ControlsCmd::Note(a) => {
            if a.note.trim().is_empty() {
                eprintln!("error: --note must say what restored the control and what prevents a recurrence");
                return Ok(crate::EXIT_USAGE);
            }
            match load(cli)?.into_iter().find(|i| i.id == a.id) {
                None => {
                    eprintln!(
                        "error: no control-failure incident {} (`trailwarden controls list`)",
                        a.id
                    );
                    Ok(crate::EXIT_PROBLEM)
                }
                Some(i) if i.state != "open" => {
                    eprintln!(
                        "error: incident {} is closed already ({})",
                        a.id,
                        i.remediation.unwrap_or_default()
                    );
                    Ok(crate::EXIT_PROBLEM)
                }
                Some(_) => crate::cmd_alerts::change(cli, a.id, Status::Resolved, &a.note),
            }
        }
    }
}
