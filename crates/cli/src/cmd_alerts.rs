//! `trailwarden alerts` (list, show, triage) and `trailwarden detect` (re-run rules over stored
//! events).

use crate::detector::RuleArgs;
use crate::output::{OutputFormat, Table};
use crate::{store, Cli};
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use std::io;
use trailwarden_alert::{Alert, AlertError, AlertStore, Filter, Status};
use trailwarden_detect::correlation::parse_timespan;
use trailwarden_ledger::reader::LedgerReader;
use trailwarden_ledger::LedgerError;
use trailwarden_model::{RecordKind, Timestamp};

/// `alerts` subcommands.
#[derive(Subcommand, Debug)]
pub enum AlertsCmd {
    /// List alerts, newest first.
    #[command(after_help = "Examples:\n  \
        trailwarden alerts list --status new --level high\n  \
        trailwarden alerts list --output json | jq '.[] | {id, title, evidence}'")]
    List(ListArgs),
    /// Show one alert: its summary, evidence (ledger indexes) and history.
    #[command(after_help = "Examples:\n  trailwarden alerts show 42\n  \
        trailwarden prove inclusion --index \"$(trailwarden alerts show 42 -O json | jq '.evidence[0]')\"")]
    Show {
        /// Alert id.
        id: i64,
    },
    /// Acknowledge an alert: someone is on it.
    #[command(
        after_help = "Example:\n  trailwarden alerts ack 42 --note 'checking with the payments team'"
    )]
    Ack(ChangeArgs),
    /// Resolve an alert (or close it as a false positive), with the reason.
    #[command(after_help = "Examples:\n  \
        trailwarden alerts resolve 42 --note 'approved change CHG-1234'\n  \
        trailwarden alerts resolve 43 --false-positive --note 'CI runner service account'")]
    Resolve(ResolveArgs),
    /// Alert deliveries (the outbox): what was sent where, what waits, what was dead-lettered;
    /// `--retry ID` queues a dead one again.
    Deliveries(crate::cmd_alerting::DeliveriesArgs),
    /// Assign an alert to someone who follows it up, optionally with a due time (10.4.3);
    /// recorded in the ledger. Past its due time an open alert is an exception of the daily
    /// review and `serve` raises an escalation.
    #[command(after_help = "Examples:\n  \
        trailwarden alerts assign 42 --to alice@payments.example\n  \
        trailwarden alerts assign 42 --to bob --due 2026-12-04T12:00:00Z")]
    Assign(AssignArgs),
}

/// `alerts assign` arguments.
#[derive(Args, Debug)]
pub struct AssignArgs {
    /// Alert id.
    pub id: i64,
    /// Who follows it up.
    #[arg(long)]
    pub to: String,
    /// When it must be resolved (RFC 3339); default: as set when raised (the SLA of its level).
    #[arg(long)]
    pub due: Option<String>,
}

/// `alerts list` arguments.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only alerts in this status (repeatable): new, acknowledged, resolved, false-positive.
    #[arg(long, value_parser = parse_status)]
    pub status: Vec<Status>,
    /// Only alerts of at least this level (informational, low, medium, high, critical).
    #[arg(long)]
    pub level: Option<String>,
    /// Only alerts of this rule id.
    #[arg(long)]
    pub rule: Option<String>,
    /// Only alerts raised by events of this namespace.
    #[arg(long)]
    pub namespace: Option<String>,
    /// Only alerts assigned to this person (`-`: only unassigned ones).
    #[arg(long)]
    pub assignee: Option<String>,
    /// At most this many.
    #[arg(long)]
    pub limit: Option<usize>,
}

/// `alerts ack` arguments.
#[derive(Args, Debug)]
pub struct ChangeArgs {
    /// Alert id.
    pub id: i64,
    /// Why, or what is being done.
    #[arg(long, default_value = "")]
    pub note: String,
}

/// `alerts resolve` arguments.
#[derive(Args, Debug)]
pub struct ResolveArgs {
    /// Alert id.
    pub id: i64,
    /// How it was dealt with, or why it is not an incident (required: PCI DSS 10.4.3 expects
    /// exceptions to be followed up and documented).
    #[arg(long)]
    pub note: String,
    /// Close it as a false positive instead of resolved.
    #[arg(long)]
    pub false_positive: bool,
}

fn parse_status(s: &str) -> Result<Status, String> {
    Status::parse(s).ok_or_else(|| {
        format!("unknown status {s:?}; expected new, acknowledged, resolved or false-positive")
    })
}

const LEVELS: [&str; 5] = ["informational", "low", "medium", "high", "critical"];

pub(crate) fn open_store(cli: &Cli) -> Result<AlertStore> {
    let p = cli.data_dir.join("alerts.db");
    if !p.exists() {
        anyhow::bail!(
            "{} has no alerts yet (no detection has run there: `trailwarden ingest` or `trailwarden detect`)",
            cli.data_dir.display()
        );
    }
    Ok(AlertStore::open(p)?)
}

/// Run `alerts`.
pub fn run(cli: &Cli, cmd: &AlertsCmd) -> Result<u8> {
    match cmd {
        AlertsCmd::List(a) => list(cli, a),
        AlertsCmd::Show { id } => show(cli, *id),
        AlertsCmd::Ack(a) => change(cli, a.id, Status::Acknowledged, &a.note),
        AlertsCmd::Deliveries(a) => crate::cmd_alerting::deliveries(cli, a),
        AlertsCmd::Assign(a) => assign(cli, a),
        AlertsCmd::Resolve(a) => {
            if a.note.trim().is_empty() {
                eprintln!("error: --note must say how the alert was dealt with");
                return Ok(crate::EXIT_USAGE);
            }
            let to = if a.false_positive {
                Status::FalsePositive
            } else {
                Status::Resolved
            };
            change(cli, a.id, to, &a.note)
        }
    }
}

fn time(ns: i64) -> String {
    Timestamp(ns).to_rfc3339()
}

fn alert_json(a: &Alert) -> serde_json::Value {
    let mut v = serde_json::to_value(a).unwrap_or_default();
    if let Some(m) = v.as_object_mut() {
        m.insert("first_seen".into(), time(a.first_seen).into());
        m.insert("last_seen".into(), time(a.last_seen).into());
        m.insert("created_at".into(), time(a.created_at).into());
        if let Some(h) = m.get_mut("history").and_then(|h| h.as_array_mut()) {
            for (c, orig) in h.iter_mut().zip(&a.history) {
                if let Some(o) = c.as_object_mut() {
                    o.insert("at".into(), time(orig.at).into());
                }
            }
        }
    }
    v
}

fn list(cli: &Cli, a: &ListArgs) -> Result<u8> {
    if let Some(l) = &a.level {
        if !LEVELS.contains(&l.as_str()) {
            eprintln!(
                "error: unknown level {l:?}; expected one of {}",
                LEVELS.join(", ")
            );
            return Ok(crate::EXIT_USAGE);
        }
    }
    let store = match open_store(cli) {
        Ok(s) => s,
        Err(e)
            if matches!(cli.output, OutputFormat::Json)
                && !cli.data_dir.join("alerts.db").exists() =>
        {
            // an empty list is the honest answer for a data directory without detections
            eprintln!("note: {e:#}");
            println!("[]");
            return Ok(crate::EXIT_OK);
        }
        Err(e) => return Err(e),
    };
    let alerts = store.list(&Filter {
        status: a.status.clone(),
        min_level: a.level.clone(),
        rule_id: a.rule.clone(),
        namespace: a.namespace.clone(),
        assignee: a.assignee.clone(),
        limit: a.limit,
    })?;
    if let Some(w) =
        store::record_access(cli, "alerts list", "alerts", alerts.len() as u64, "success")
    {
        eprintln!("warning: {w}");
    }
    match cli.output {
        OutputFormat::Json => {
            let v: Vec<serde_json::Value> = alerts.iter().map(alert_json).collect();
            println!("{}", serde_json::Value::Array(v));
        }
        format => {
            let mut t = Table::new(&[
                "id",
                "status",
                "level",
                "title",
                "count",
                "last_seen",
                "summary",
                "evidence",
            ]);
            for x in &alerts {
                let mut ev: Vec<String> = x.evidence.iter().take(5).map(u64::to_string).collect();
                if x.evidence.len() > 5 {
                    ev.push(format!("… {} more", x.evidence.len() - 5));
                }
                t.row(vec![
                    x.id.to_string(),
                    x.status.to_string(),
                    x.level.clone(),
                    x.title.clone(),
                    x.count.to_string(),
                    time(x.last_seen),
                    x.summary.clone(),
                    ev.join(" "),
                ]);
            }
            if format == OutputFormat::Csv {
                t.print_csv(&mut io::stdout())?;
            } else {
                t.print_text(&mut io::stdout())?;
                let counts = store.counts()?;
                eprintln!(
                    "{} alert(s) shown; in the store: {}",
                    alerts.len(),
                    counts
                        .iter()
                        .map(|(s, n)| format!("{n} {s}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
    }
    Ok(crate::EXIT_OK)
}

fn show(cli: &Cli, id: i64) -> Result<u8> {
    let store = open_store(cli)?;
    let a = match store.get(id) {
        Ok(a) => a,
        Err(AlertError::NotFound(_)) => {
            eprintln!("error: no alert with id {id}");
            return Ok(crate::EXIT_PROBLEM);
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(w) = store::record_access(cli, "alerts show", &format!("alert {id}"), 1, "success")
    {
        eprintln!("warning: {w}");
    }
    match cli.output {
        OutputFormat::Json => println!("{}", alert_json(&a)),
        format => {
            let mut t = Table::new(&["field", "value"]);
            let ev: Vec<String> = a.evidence.iter().map(u64::to_string).collect();
            for (k, v) in [
                ("id", a.id.to_string()),
                ("rule_id", a.rule_id.clone()),
                ("title", a.title.clone()),
                ("level", a.level.clone()),
                ("status", a.status.to_string()),
                ("tags", a.tags.join(", ")),
                ("summary", a.summary.clone()),
                ("count", a.count.to_string()),
                ("first_seen", time(a.first_seen)),
                ("last_seen", time(a.last_seen)),
                ("group", a.group_key.clone()),
                ("assignee", a.assignee.clone().unwrap_or_else(|| "-".into())),
                ("due", a.due_at.map_or_else(|| "-".into(), time)),
                (
                    "evidence",
                    format!(
                        "{}{}",
                        ev.join(" "),
                        if a.evidence_truncated {
                            " (truncated)"
                        } else {
                            ""
                        }
                    ),
                ),
            ] {
                t.row(vec![k.to_string(), v]);
            }
            for c in &a.history {
                t.row(vec![
                    "history".into(),
                    format!(
                        "{} {} {} → {}: {}",
                        time(c.at),
                        c.actor,
                        c.from,
                        c.to,
                        c.note
                    ),
                ]);
            }
            if format == OutputFormat::Csv {
                t.print_csv(&mut io::stdout())?;
            } else {
                t.print_text(&mut io::stdout())?;
            }
        }
    }
    Ok(crate::EXIT_OK)
}

/// A status change: checked, recorded in the ledger (durably), then applied to the store.
pub(crate) fn change(cli: &Cli, id: i64, to: Status, note: &str) -> Result<u8> {
    let mut store = open_store(cli)?;
    let actor = store::subject();
    let c = match store.prepare(id, to, &actor, note, Timestamp::now().0) {
        Ok(c) => c,
        Err(AlertError::NotFound(_)) => {
            eprintln!("error: no alert with id {id}");
            return Ok(crate::EXIT_PROBLEM);
        }
        Err(e @ AlertError::Transition { .. }) => {
            eprintln!("error: {e}");
            return Ok(crate::EXIT_PROBLEM);
        }
        Err(e) => return Err(e.into()),
    };
    let (mut l, _) = match store::open_writer(cli, &format!("alert {}", to.as_str())) {
        Ok(x) => x,
        Err(LedgerError::Locked(_)) => {
            eprintln!(
                "error: the ledger is in use by another trailwarden process (ingest or serve); \
                 the change was not made (it must be recorded in the ledger first)"
            );
            return Ok(crate::EXIT_CANNOT_RUN);
        }
        Err(e) => {
            eprintln!("error: cannot open the ledger: {e}");
            return Ok(store::open_error_code(&e));
        }
    };
    let index = l
        .append_internal(
            RecordKind::Alert,
            &serde_json::json!({
                "action": to.as_str(), "alert_id": id, "from": c.from, "to": c.to,
                "actor": c.actor, "note": c.note, "at": Timestamp(c.at),
            }),
        )
        .and_then(|i| l.commit().map(|_| i));
    let index = match index {
        Ok(i) => i,
        Err(e) => {
            eprintln!(
                "error: the change could not be recorded in the ledger, so it was not made: {e}"
            );
            return Ok(crate::EXIT_STORAGE);
        }
    };
    if let Err(e) = l.close(&format!("alert {} recorded", to.as_str())) {
        eprintln!("warning: {e}");
    }
    store
        .apply(id, &c)
        .with_context(|| format!("recorded as ledger record {index}, but the alert store"))?;
    match cli.output {
        OutputFormat::Json => println!(
            "{}",
            serde_json::json!({"id": id, "status": to, "from": c.from, "actor": c.actor,
                "note": c.note, "ledger_index": index})
        ),
        _ => println!(
            "alert {id}: {} → {} by {} (ledger record {index})",
            c.from, to, c.actor
        ),
    }
    Ok(crate::EXIT_OK)
}

/// An assignment: recorded in the ledger (durably), then applied to the store.
fn assign(cli: &Cli, a: &AssignArgs) -> Result<u8> {
    let mut store = open_store(cli)?;
    if a.to.trim().is_empty() {
        eprintln!("error: --to names who follows the alert up");
        return Ok(crate::EXIT_USAGE);
    }
    let due = match &a.due {
        Some(d) => Some(
            Timestamp::parse(d)
                .with_context(|| format!("--due {d:?} is not RFC 3339"))?
                .0,
        ),
        None => None,
    };
    if let Err(e) = store.get(a.id) {
        eprintln!("error: {e}");
        return Ok(crate::EXIT_PROBLEM);
    }
    let (mut l, _) = match store::open_writer(cli, "alert assigned") {
        Ok(x) => x,
        Err(LedgerError::Locked(_)) => {
            eprintln!(
                "error: the ledger is in use by another trailwarden process (ingest or serve); \
                 with serve running use POST /v1/alerts/{}/assign",
                a.id
            );
            return Ok(crate::EXIT_CANNOT_RUN);
        }
        Err(e) => {
            eprintln!("error: cannot open the ledger: {e}");
            return Ok(store::open_error_code(&e));
        }
    };
    let actor = store::subject();
    let index = l
        .append_internal(
            RecordKind::Alert,
            &serde_json::json!({
                "action": "assigned", "alert_id": a.id, "assignee": a.to,
                "due_at": due.map(Timestamp), "actor": actor, "at": Timestamp::now(),
            }),
        )
        .and_then(|i| l.commit().map(|_| i))
        .context("recording the assignment in the ledger")?;
    if let Err(e) = l.close("alert assigned") {
        eprintln!("warning: {e}");
    }
    store
        .assign(a.id, &a.to, due)
        .with_context(|| format!("recorded as ledger record {index}, but the alert store"))?;
    println!(
        "alert {} assigned to {} by {actor} (ledger record {index})",
        a.id, a.to
    );
    Ok(crate::EXIT_OK)
}

/// `detect` arguments.
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    trailwarden detect --since 24h\n  \
    trailwarden detect --since 2026-11-01T00:00:00Z --rules new-rules/ --no-builtin-rules")]
pub struct DetectArgs {
    /// Events at or after this time: RFC 3339, or a duration back from now (90m, 24h, 7d).
    #[arg(long)]
    pub since: String,
    /// Events before this time (RFC 3339 or a duration back from now).
    #[arg(long)]
    pub until: Option<String>,
    /// Rules to run.
    #[command(flatten)]
    pub rules: RuleArgs,
}

fn when(s: &str) -> Result<i64> {
    if let Some(span) = parse_timespan(s) {
        return Ok(Timestamp::now().0.saturating_sub(span));
    }
    Ok(Timestamp::parse(s)
        .with_context(|| format!("{s:?} is neither RFC 3339 nor a duration (24h)"))?
        .0)
}

/// Run `detect`: the rules over stored events of a time range (event time), alerts stored and
/// deduplicated against the existing ones, the run recorded in the ledger.
pub fn detect(cli: &Cli, a: &DetectArgs) -> Result<u8> {
    let since = when(&a.since)?;
    let until = match &a.until {
        Some(u) => when(u)?,
        None => i64::MAX,
    };
    let reader = match LedgerReader::open(&cli.data_dir, None) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(crate::EXIT_CANNOT_RUN);
        }
    };
    let mut det = crate::detector::open(cli, &a.rules, false)?;
    let size = reader.size()?;
    let mut failure: Option<anyhow::Error> = None;
    reader.for_each(0, size, |r| {
        if r.kind != RecordKind::Event {
            return Ok(true);
        }
        let Some(ev) = r
            .format
            .and_then(|f| trailwarden_parse::reparse(f, &r.raw, r.received))
        else {
            return Ok(true);
        };
        let t = ev.time.unwrap_or(r.received).0;
        if t < since || t >= until {
            return Ok(true);
        }
        if let Err(e) = det.check(r.index, r.received, &r.source, &ev, &r.raw) {
            failure = Some(e.into());
            return Ok(false);
        }
        Ok(true)
    })?;
    // the new alerts and this read of audit data go into the ledger
    let access = trailwarden_ledger::record::Access {
        subject: store::subject(),
        interface: "cli".into(),
        action: "detect".into(),
        target: format!(
            "events {} .. {}",
            time(since),
            a.until.as_deref().unwrap_or("now")
        ),
        records: det.stats.events_checked,
        outcome: if failure.is_some() {
            "failure"
        } else {
            "success"
        }
        .into(),
        origin: "local".into(),
    };
    let recorded = store::open_writer(cli, "detect").and_then(|(mut l, _)| {
        det.record(&mut l)?;
        l.append_internal(RecordKind::Access, &access)?;
        l.commit()?;
        l.close("detect finished").map(|_| ())
    });
    if let Err(e) = recorded {
        eprintln!("error: the alerts were stored but could not be recorded in the ledger: {e}");
        return Ok(crate::EXIT_STORAGE);
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let s = &det.stats;
    match cli.output {
        OutputFormat::Json => println!("{}", serde_json::to_value(s)?),
        _ => println!(
            "{} rules checked {} events: {} detections, {} new alerts, {} merged into open alerts",
            s.rules, s.events_checked, s.detections, s.alerts_new, s.alerts_merged
        ),
    }
    Ok(crate::EXIT_OK)
}
