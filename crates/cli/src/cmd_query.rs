//! `trailwarden query`: KQL (default) or SQL over the ledger. Every query is recorded in the
//! ledger as an access record (PCI DSS 10.2.1.3), whether it succeeds or not.

use crate::output::{OutputFormat, Table};
use crate::{cmd_ledger::parse_time_arg, store, Cli};
use anyhow::{Context, Result};
use clap::Args;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::time::Duration;
use trailwarden_model::parse_duration;
use trailwarden_query::{render, Engine, QueryError, QueryOptions, QueryOutput};

/// Arguments of `trailwarden query`.
#[derive(Args, Debug)]
#[command(after_help = "\
Tables: events, records, TrailwardenAccess, AzureDiagnostics, AKSAudit, AKSAuditAdmin,
AzureActivity, SigninLogs, Syslog, ContainerLog (`--tables` lists their columns; docs/TABLES.md).

Exit codes: 0 ok, 1 the query failed (syntax, unknown table or column, limit hit), 3 could not run.

Examples:
  trailwarden query 'AKSAudit | where Verb == \"create\" and ObjectRef.resource == \"clusterrolebindings\"'
  trailwarden query 'AzureDiagnostics | where Category == \"kube-audit\" | where parse_json(log_s).verb == \"create\" | project TimeGenerated, log_s'
  trailwarden query --since 24h 'events | where code == 403 | summarize count() by user, trusted_ip'
  trailwarden query --sql 'SELECT user, count(*) AS n FROM events GROUP BY user ORDER BY n DESC LIMIT 10'
  trailwarden query -f daily-review.kql --output csv > review.csv
  trailwarden query 'TrailwardenAccess | where Action == \"query\" | top 20 by TimeGenerated'")]
pub struct QueryArgs {
    /// The query (KQL unless --sql). Omit it to read from -f or stdin.
    pub query: Option<String>,
    /// Read the query from this file (`-` for stdin).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// The query is SQL (DataFusion dialect) instead of KQL.
    #[arg(long)]
    pub sql: bool,
    /// Only rows with TimeGenerated at or after this (RFC 3339, or a duration ago: 24h, 7d).
    #[arg(long)]
    pub since: Option<String>,
    /// Only rows with TimeGenerated before this.
    #[arg(long)]
    pub until: Option<String>,
    /// Stop the query after this long (e.g. 30s, 5m).
    #[arg(long, default_value = "5m")]
    pub timeout: String,
    /// Memory the query may use, in bytes (suffixes K, M, G).
    #[arg(long, default_value = "2G")]
    pub memory_limit: String,
    /// List the tables and their columns instead of querying.
    #[arg(long)]
    pub tables: bool,
    /// Read the sealed segments from the archive (object storage) instead of the local disk,
    /// plus what is not archived yet when a local ledger is there: the records past the hot
    /// period, or a query from any machine.
    #[arg(long)]
    pub archive: bool,
    /// Also read this ledger (another partition's data directory; repeat for more): one query
    /// over the partitions of a cluster. The read is recorded in each ledger.
    #[arg(long = "ledger", value_name = "DIR", conflicts_with = "archive")]
    pub ledgers: Vec<PathBuf>,
    /// Which archive (with --archive).
    #[command(flatten)]
    pub archive_sel: crate::cmd_archive::ArchiveSel,
}

/// The archive's segments, as the query engine reads them.
fn remote_segments(
    sel: &crate::cmd_archive::ArchiveSel,
) -> Result<trailwarden_query::RemoteSegments> {
    let a = sel.open()?;
    Ok(trailwarden_query::RemoteSegments {
        segments: trailwarden_archive::block_on(a.sealed_segments())??,
        store_url: a.store_url(),
        store: a.store(),
    })
}

fn bytes(s: &str) -> Result<usize> {
    let t = s.trim();
    let (num, mult) = match t.chars().last() {
        Some('K') | Some('k') => (&t[..t.len() - 1], 1usize << 10),
        Some('M') | Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('G') | Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let n: usize = num
        .trim()
        .parse()
        .with_context(|| format!("--memory-limit {s:?}: not a size like 512M or 2G"))?;
    Ok(n.saturating_mul(mult))
}

/// `trailwarden query`.
pub fn run(cli: &Cli, a: &QueryArgs) -> Result<u8> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let opts = QueryOptions {
        since: a.since.as_deref().map(parse_time_arg).transpose()?,
        until: a.until.as_deref().map(parse_time_arg).transpose()?,
        timeout: Some(Duration::from_nanos(
            u64::try_from(
                parse_duration(&a.timeout).with_context(|| format!("--timeout {:?}", a.timeout))?,
            )
            .unwrap_or(0),
        )),
        memory_limit: Some(bytes(&a.memory_limit)?),
        threads: Some(threads),
        now: None,
    };
    let local = cli.data_dir.join("identity.json").exists();
    if !local && !a.archive {
        eprintln!(
            "error: {} holds no ledger (ingest something first, or pass --data-dir)",
            cli.data_dir.display()
        );
        return Ok(crate::EXIT_CANNOT_RUN);
    }
    let opened = if a.archive {
        remote_segments(&a.archive_sel).and_then(|r| {
            Ok(Engine::open_with_archive(
                local.then_some(cli.data_dir.as_path()),
                r,
                opts.clone(),
            )?)
        })
    } else if !a.ledgers.is_empty() {
        let mut dirs = vec![cli.data_dir.as_path()];
        dirs.extend(a.ledgers.iter().map(PathBuf::as_path));
        Engine::open_many(&dirs, opts.clone()).map_err(anyhow::Error::from)
    } else {
        Engine::open(&cli.data_dir, opts.clone()).map_err(anyhow::Error::from)
    };
    let engine = match opened {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(crate::EXIT_CANNOT_RUN);
        }
    };
    if a.tables {
        let mut t = Table::new(&["table", "column", "type", "meaning"]);
        for table in engine.tables() {
            for c in &table.columns {
                t.row(vec![
                    table.name.to_string(),
                    c.name.clone(),
                    c.ty.name().to_string(),
                    c.doc.clone(),
                ]);
            }
        }
        print_table(cli.output, &t)?;
        return Ok(crate::EXIT_OK);
    }
    let text = match (&a.query, &a.file) {
        (Some(q), None) => q.clone(),
        (None, Some(f)) if f.as_os_str() == "-" => read_stdin()?,
        (None, Some(f)) => {
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?
        }
        (None, None) => read_stdin()?,
        (Some(_), Some(_)) => anyhow::bail!("give the query as an argument or with -f, not both"),
    };
    let result: Result<Vec<QueryOutput>, QueryError> =
        trailwarden_query::engine::block_on(threads, async {
            if a.sql {
                engine.sql(&text).await.map(|o| vec![o])
            } else {
                engine.kql(&text).await
            }
        })
        .and_then(|r| r);
    let rows: usize = result
        .as_ref()
        .map(|v| v.iter().map(QueryOutput::rows).sum())
        .unwrap_or(0);
    let window = match (&a.since, &a.until) {
        (None, None) => String::new(),
        (s, u) => format!(
            " [since {} until {}]",
            s.as_deref().unwrap_or("-"),
            u.as_deref().unwrap_or("-")
        ),
    };
    let language = if a.sql { "sql" } else { "kql" };
    let mut target = format!("{language}: {}{window}", text.trim());
    if !a.ledgers.is_empty() {
        target.push_str(&format!(" [over {} other ledgers too]", a.ledgers.len()));
    }
    let outcome = if result.is_ok() { "success" } else { "failure" };
    let mut warnings = vec![store::record_access(
        cli,
        "query",
        &target,
        rows as u64,
        outcome,
    )];
    for d in &a.ledgers {
        warnings.push(store::record_access_in(
            cli,
            d,
            "query",
            &target,
            rows as u64,
            outcome,
        ));
    }
    for w in warnings.into_iter().flatten() {
        eprintln!("warning: {w}");
    }
    let outputs = match result {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(crate::EXIT_PROBLEM);
        }
    };
    let mut out = io::stdout().lock();
    for o in &outputs {
        match cli.output {
            OutputFormat::Json | OutputFormat::Sarif => {
                let rows = render::json_rows(o);
                writeln!(
                    out,
                    "{}",
                    serde_json::Value::Array(
                        rows.into_iter().map(serde_json::Value::Object).collect()
                    )
                )?;
            }
            fmt => {
                let cols = render::columns(o);
                let names: Vec<&str> = cols.iter().map(String::as_str).collect();
                let mut t = Table::new(&names);
                t.upper_header = false;
                for r in render::text_rows(o) {
                    t.row(r);
                }
                drop(out);
                print_table(fmt, &t)?;
                out = io::stdout().lock();
                if fmt == OutputFormat::Table {
                    let hint = o
                        .render
                        .as_ref()
                        .map(|r| format!(" (render {r})"))
                        .unwrap_or_default();
                    eprintln!("{} row(s){hint}", o.rows());
                }
            }
        }
    }
    Ok(crate::EXIT_OK)
}

fn print_table(fmt: OutputFormat, t: &Table) -> Result<()> {
    let mut out = io::stdout().lock();
    match fmt {
        OutputFormat::Csv => t.print_csv(&mut out)?,
        OutputFormat::Json | OutputFormat::Sarif => {
            let rows: Vec<serde_json::Value> = t
                .rows
                .iter()
                .map(|r| {
                    serde_json::Value::Object(
                        t.columns
                            .iter()
                            .cloned()
                            .zip(r.iter().map(|c| serde_json::Value::String(c.clone())))
                            .collect(),
                    )
                })
                .collect();
            writeln!(out, "{}", serde_json::Value::Array(rows))?;
        }
        OutputFormat::Table => t.print_text(&mut out)?,
    }
    Ok(())
}

fn read_stdin() -> Result<String> {
    let mut s = String::new();
    io::stdin()
        .read_to_string(&mut s)
        .context("reading the query from stdin")?;
    Ok(s)
}
