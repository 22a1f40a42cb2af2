//! `trailwarden review`: daily log reviews (PCI DSS 10.4.1) with sign-off.

use crate::output::{OutputFormat, Table};
use crate::{store, Cli};
use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use std::io::{self, Write};
use std::path::PathBuf;
use trailwarden_compliance::render;
use trailwarden_compliance::review::{self, ReviewConfig};
use trailwarden_compliance::store::{self as rstore, ReviewStore, SignOff};
use trailwarden_compliance::ComplianceError;
use trailwarden_ledger::LedgerError;
use trailwarden_model::{RecordKind, Timestamp};

/// `trailwarden review`.
#[derive(Subcommand, Debug)]
pub enum ReviewCmd {
    /// Generate the review of one period from the ledger (`serve` does it for each day by
    /// itself); its hash is recorded in the ledger.
    #[command(after_help = "Examples:\n  \
        trailwarden review generate --date 2026-12-02\n  \
        trailwarden review generate --date 2026-12-01 --kind weekly-nodes --days 7\n  \
        trailwarden review generate --date 2026-12-02 --config /etc/trailwarden/trailwarden.toml --replace")]
    Generate(GenerateArgs),
    /// List the reviews with their sign-off state.
    List,
    /// Print one review (HTML, JSON or CSV); the read is recorded in the ledger.
    #[command(after_help = "Examples:\n  \
        trailwarden review show daily-2026-12-02\n  \
        trailwarden review show daily-2026-12-02 --format html -o review.html")]
    Show(ShowArgs),
    /// Sign a review off: a ledger record binding its hash, you and your note.
    #[command(
        name = "sign-off",
        after_help = "Examples:\n  \
        trailwarden review sign-off daily-2026-12-02 --note 'exceptions 1-3 followed up in SEC-812'"
    )]
    SignOff(SignOffArgs),
}

/// `review generate` arguments.
#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// The period's first day, YYYY-MM-DD (in the configured UTC offset).
    #[arg(long)]
    pub date: String,
    /// `daily`, or the name of a periodic review of other logs (10.4.2).
    #[arg(long, default_value = "daily")]
    pub kind: String,
    /// Days the period covers.
    #[arg(long, default_value_t = 1)]
    pub days: i64,
    /// The server's configuration file, for its `[review]` section.
    #[arg(long, short = 'c', env = "TRAILWARDEN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Generate again a review that exists and is not signed off.
    #[arg(long)]
    pub replace: bool,
}

/// How `review show` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ShowFormat {
    /// A summary for the terminal.
    Text,
    /// The whole review, self-contained HTML.
    Html,
    /// The whole review as JSON.
    Json,
    /// `section,key,value,detail` rows.
    Csv,
}

/// `review show` arguments.
#[derive(Args, Debug)]
pub struct ShowArgs {
    /// Review id (`daily-2026-12-02`).
    pub id: String,
    /// What to print.
    #[arg(long, value_enum, default_value = "text")]
    pub format: ShowFormat,
    /// Write to this file instead of stdout.
    #[arg(long, short = 'o')]
    pub out: Option<PathBuf>,
}

/// `review sign-off` arguments.
#[derive(Args, Debug)]
pub struct SignOffArgs {
    /// Review id.
    pub id: String,
    /// What was reviewed and how the exceptions are followed up.
    #[arg(long)]
    pub note: String,
}

/// Run `review`.
pub fn run(cli: &Cli, cmd: &ReviewCmd) -> Result<u8> {
    match cmd {
        ReviewCmd::Generate(a) => generate(cli, a),
        ReviewCmd::List => list(cli),
        ReviewCmd::Show(a) => show(cli, a),
        ReviewCmd::SignOff(a) => sign_off(cli, a),
    }
}

fn review_config(path: Option<&std::path::Path>) -> Result<ReviewConfig> {
    let (cfg, _) = trailwarden_server::Config::load(path, &crate::cmd_serve::env_vars())?;
    Ok(cfg.review)
}

/// How long to wait for a running serve to record a spooled record.
const SPOOL_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// The ledger is held by serve: hand `record` over through the review spool and wait until it
/// is in the ledger; its index. `None` (after a message) when it did not arrive.
fn through_serve(cli: &Cli, record: &serde_json::Value, what: &str) -> Result<Option<u64>> {
    let from = trailwarden_ledger::reader::LedgerReader::open(&cli.data_dir, None)?.size()?;
    rstore::spool(&cli.data_dir, record)?;
    eprintln!("the ledger is held by a running trailwarden (serve); {what} handed to it, waiting for the record…");
    let want = record.clone();
    let found = rstore::wait_for_record(&cli.data_dir, from, SPOOL_WAIT, move |v| *v == want)?;
    if found.is_none() {
        eprintln!(
            "error: {what} was not recorded within {} s: is the process holding the ledger `serve` \
             (an `ingest` does not take spooled records)? It stays in review.spool for serve's next start.",
            SPOOL_WAIT.as_secs()
        );
    }
    Ok(found)
}

fn generate(cli: &Cli, a: &GenerateArgs) -> Result<u8> {
    let cfg = review_config(a.config.as_deref())?;
    let settings = cfg.settings()?;
    let period = match review::period(&a.kind, &a.date, a.days, &settings) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(crate::EXIT_USAGE);
        }
    };
    if !cli.data_dir.join("identity.json").exists() {
        eprintln!("error: {} holds no ledger", cli.data_dir.display());
        return Ok(crate::EXIT_CANNOT_RUN);
    }
    let mut rs = ReviewStore::open(&cli.data_dir)?;
    if let Err(e) = rs.check_insert(&period.id(), a.replace) {
        eprintln!("error: {e}");
        return Ok(crate::EXIT_PROBLEM);
    }
    // take the ledger first: nothing is generated that could not be recorded
    let writer = match store::open_writer(cli, "review generate") {
        Ok((l, _)) => Some(l),
        Err(LedgerError::Locked(_)) => None,
        Err(e) => {
            eprintln!("error: cannot open the ledger: {e}");
            return Ok(store::open_error_code(&e));
        }
    };
    // the review reads the ledger as committed so far (the writer has it open, read-only here)
    let r = review::build(
        &cli.data_dir,
        &period,
        &cfg,
        &store::subject(),
        cli.anchor_dir.as_deref(),
    )?;
    let record = rstore::generated_record(&r);
    let index = match writer {
        Some(l) => store::record_and_close(
            l,
            RecordKind::Alert,
            &record,
            "the review",
            "review generated",
        )?,
        None => match through_serve(cli, &record, "the review")? {
            Some(i) => i,
            None => return Ok(crate::EXIT_CANNOT_RUN),
        },
    };
    rs.insert(&r, index)
        .with_context(|| format!("recorded as ledger record {index}, but compliance.db"))?;
    match cli.output {
        OutputFormat::Json | OutputFormat::Sarif => println!(
            "{}",
            serde_json::json!({"id": r.id, "hash": r.hash(), "ledger_index": index,
                "exceptions": r.exceptions.len(), "verification": r.verification.status,
                "period_start": r.period.start_ts(), "period_end": r.period.end_ts()})
        ),
        _ => {
            println!(
                "review {}: {} exception(s), verification {}, hash {} (ledger record {index})",
                r.id,
                r.exceptions.len(),
                r.verification.status,
                r.hash()
            );
            println!(
                "next: trailwarden review show {} --format html -o {}.html",
                r.id, r.id
            );
        }
    }
    Ok(crate::EXIT_OK)
}

fn list(cli: &Cli) -> Result<u8> {
    let rs = ReviewStore::open(&cli.data_dir)?;
    let rows = rs.list()?;
    match cli.output {
        OutputFormat::Json | OutputFormat::Sarif => {
            println!("{}", serde_json::to_string_pretty(&rows)?)
        }
        fmt => {
            let mut t = Table::new(&[
                "id",
                "period start",
                "exceptions",
                "signed off by",
                "at",
                "hash",
            ]);
            for r in &rows {
                t.row(vec![
                    r.id.clone(),
                    r.period_start.to_string(),
                    r.exceptions.to_string(),
                    r.sign_off
                        .as_ref()
                        .map_or("-".into(), |s| s.reviewer.clone()),
                    r.sign_off.as_ref().map_or("-".into(), |s| s.at.to_string()),
                    r.hash.clone(),
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

fn show(cli: &Cli, a: &ShowArgs) -> Result<u8> {
    let rs = ReviewStore::open(&cli.data_dir)?;
    let (row, r) = match rs.get(&a.id) {
        Ok(x) => x,
        Err(e @ ComplianceError::NoReview(_)) => {
            eprintln!("error: {e}");
            return Ok(crate::EXIT_PROBLEM);
        }
        Err(e) => return Err(e.into()),
    };
    // a review is audit data: reading it is recorded (10.2.1.3)
    if let Some(w) = store::record_access(cli, "review-show", &a.id, 1, "success") {
        eprintln!("warning: {w}");
    }
    let text = match a.format {
        ShowFormat::Html => render::review_html(&r, Some(&row)),
        ShowFormat::Json => {
            serde_json::to_string_pretty(&serde_json::json!({"review": r, "hash": row.hash,
                "ledger_index": row.ledger_index, "sign_off": row.sign_off}))?
                + "\n"
        }
        ShowFormat::Csv => render::review_csv(&r),
        ShowFormat::Text => summary(&r, &row),
    };
    match &a.out {
        Some(p) => {
            std::fs::write(p, text).with_context(|| format!("writing {}", p.display()))?;
            eprintln!("wrote {}", p.display());
        }
        None => io::stdout().write_all(text.as_bytes())?,
    }
    Ok(crate::EXIT_OK)
}

fn summary(r: &review::Review, row: &rstore::ReviewRow) -> String {
    let mut o = format!(
        "review {} — {} to {}\nhash {} (ledger record {})\nverification: {}\n",
        r.id,
        r.period.start_ts(),
        r.period.end_ts(),
        row.hash,
        row.ledger_index,
        r.verification.status
    );
    match &row.sign_off {
        Some(s) => o.push_str(&format!(
            "signed off by {} at {}: {}\n",
            s.reviewer, s.at, s.note
        )),
        None => o.push_str("NOT signed off\n"),
    }
    o.push_str(&format!("\nexceptions ({}):\n", r.exceptions.len()));
    for x in &r.exceptions {
        o.push_str(&format!("  [{}] {}: {}\n", x.severity, x.kind, x.title));
    }
    o.push_str("\nevents per category:\n");
    for c in &r.categories {
        o.push_str(&format!(
            "  {:<9} {:>9}  {}\n",
            c.requirement, c.total, c.title
        ));
    }
    o.push_str(&format!(
        "\naudit-log reads {}, refused {}; new identities {}, new source IPs {}\n",
        r.audit_log_access.reads,
        r.audit_log_access.refused,
        r.new_identities.len(),
        r.new_source_ips.len()
    ));
    o
}

fn sign_off(cli: &Cli, a: &SignOffArgs) -> Result<u8> {
    let mut rs = ReviewStore::open(&cli.data_dir)?;
    let row = match rs.check_sign_off(&a.id, &a.note) {
        Ok(r) => r,
        Err(e @ (ComplianceError::NoReview(_) | ComplianceError::ReviewState { .. })) => {
            eprintln!("error: {e}");
            return Ok(crate::EXIT_PROBLEM);
        }
        Err(e) => return Err(e.into()),
    };
    let reviewer = store::subject();
    let at = Timestamp::now();
    let record = rstore::signed_record(&a.id, &row.hash, &reviewer, &a.note, at);
    let index = match store::open_writer(cli, "review sign-off") {
        Ok((l, _)) => store::record_and_close(
            l,
            RecordKind::Alert,
            &record,
            "the sign-off",
            "review signed off",
        )?,
        Err(LedgerError::Locked(_)) => match through_serve(cli, &record, "the sign-off")? {
            Some(i) => i,
            None => return Ok(crate::EXIT_CANNOT_RUN),
        },
        Err(e) => {
            eprintln!("error: cannot open the ledger: {e}");
            return Ok(store::open_error_code(&e));
        }
    };
    let s = SignOff {
        reviewer,
        at,
        note: a.note.clone(),
        ledger_index: index,
    };
    rs.sign_off(&a.id, &s)
        .with_context(|| format!("recorded as ledger record {index}, but compliance.db"))?;
    match cli.output {
        OutputFormat::Json | OutputFormat::Sarif => println!(
            "{}",
            serde_json::json!({"id": a.id, "hash": row.hash, "sign_off": s})
        ),
        _ => println!(
            "review {} signed off by {} (hash {}, ledger record {index})",
            a.id, s.reviewer, row.hash
        ),
    }
    Ok(crate::EXIT_OK)
}
