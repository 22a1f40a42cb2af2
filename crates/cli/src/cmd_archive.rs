//! `trailwarden archive sync|status|restore|check`: the archive tier on object storage.

use crate::cmd_ledger::parse_time_arg;
use crate::output::{OutputFormat, Table};
use crate::{store, Cli};
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use std::io;
use std::path::PathBuf;
use trailwarden_archive::{Archive, ArchiveConfig, SyncReport};
use trailwarden_ledger::datadir::DataDir;
use trailwarden_ledger::retention;
use trailwarden_model::Timestamp;

/// Which archive: `[archive]` of the configuration file, or `--url`.
#[derive(Args, Debug, Clone)]
pub struct ArchiveSel {
    /// Configuration file whose `[archive]` section names the store (see
    /// docs/deploy/trailwarden.toml).
    #[arg(long, short = 'c', env = "TRAILWARDEN_CONFIG")]
    pub config: Option<PathBuf>,
    /// The archive URL (`s3://bucket/prefix`, `az://container/prefix`, `file:///path`);
    /// overrides `archive.url`. Credentials come from the store's usual environment variables.
    #[arg(long = "url", env = "TRAILWARDEN_ARCHIVE_URL", value_name = "URL")]
    pub url: Option<String>,
}

impl ArchiveSel {
    /// The `[archive]` settings with `--url` applied.
    pub fn settings(&self) -> Result<ArchiveConfig> {
        let (cfg, _) = trailwarden_server::Config::load(
            self.config.as_deref(),
            &crate::cmd_serve::env_vars(),
        )?;
        let mut a = cfg.archive;
        if let Some(u) = &self.url {
            a.url = Some(u.clone());
        }
        if a.url.is_none() {
            anyhow::bail!("no archive: set [archive] url in the configuration, TRAILWARDEN_ARCHIVE_URL or --url");
        }
        Ok(a)
    }

    /// The archive, opened.
    pub fn open(&self) -> Result<Archive> {
        Ok(Archive::open(&self.settings()?)?)
    }
}

/// `trailwarden archive`.
#[derive(Subcommand, Debug)]
pub enum ArchiveCmd {
    /// Copy every sealed segment, its seal note and the signed logs to the archive (create-only,
    /// each re-read and compared with its seal), then remove local copies older than
    /// `hot_days` that are archived. What `serve` does every `interval_seconds`.
    #[command(after_help = "\
Exit codes: 0 archived, 1 an integrity incident (an object exists with other bytes), 3 could
not run, 4 the store kept failing (what was not archived is retried by the next run).

Examples:
  AWS_ACCESS_KEY_ID=… AWS_SECRET_ACCESS_KEY=… trailwarden archive sync --url s3://audit-archive/prod-eu
  trailwarden archive sync -c /etc/trailwarden/trailwarden.toml --no-evict")]
    Sync {
        /// Which archive.
        #[command(flatten)]
        sel: ArchiveSel,
        /// Passes to try while the store fails (with backoff: 1 s, 2 s, 4 s, … up to 60 s).
        #[arg(long, default_value_t = 5)]
        retries: u32,
        /// Keep every local copy (do not apply `hot_days`).
        #[arg(long)]
        no_evict: bool,
    },
    /// Where each segment stands: local, archived (and when), waiting (and for how long).
    #[command(after_help = "\
Examples:
  trailwarden archive status
  trailwarden archive status --remote --output json   # also list what the store holds")]
    Status {
        /// Which archive.
        #[command(flatten)]
        sel: ArchiveSel,
        /// Ask the store which segment objects it holds.
        #[arg(long)]
        remote: bool,
    },
    /// Bring evicted segments back into the hot data directory (checked against their seals).
    #[command(after_help = "\
Examples:
  trailwarden archive restore --from 2026-01-01T00:00:00Z --to 2026-02-01T00:00:00Z")]
    Restore {
        /// Which archive.
        #[command(flatten)]
        sel: ArchiveSel,
        /// Records received from (RFC 3339 or a duration ago, e.g. 200d).
        #[arg(long)]
        from: String,
        /// Records received before.
        #[arg(long)]
        to: String,
    },
    /// Does the store enforce immutability (S3 Object Lock, Azure immutability) for at least
    /// `retain_days`? Exit 1 when not.
    Check {
        /// Which archive.
        #[command(flatten)]
        sel: ArchiveSel,
    },
}

/// `trailwarden archive …`.
pub fn run(cli: &Cli, c: &ArchiveCmd) -> Result<u8> {
    match c {
        ArchiveCmd::Sync {
            sel,
            retries,
            no_evict,
        } => sync(cli, sel, *retries, *no_evict),
        ArchiveCmd::Status { sel, remote } => status(cli, sel, *remote),
        ArchiveCmd::Restore { sel, from, to } => restore(cli, sel, from, to),
        ArchiveCmd::Check { sel } => {
            let a = sel.open()?;
            let r = trailwarden_archive::block_on(a.check_immutability())??;
            match cli.output {
                OutputFormat::Json | OutputFormat::Sarif => {
                    println!("{}", serde_json::to_string(&r)?)
                }
                _ => {
                    println!(
                        "{}: {}",
                        a.url(),
                        if r.immutability.enforced {
                            "immutable"
                        } else {
                            "NOT immutable"
                        }
                    );
                    println!("  {}", r.immutability.detail);
                    for f in &r.findings {
                        println!("finding: {f}");
                    }
                }
            }
            Ok(if r.findings.is_empty() {
                crate::EXIT_OK
            } else {
                crate::EXIT_PROBLEM
            })
        }
    }
}

/// The data directory must hold a ledger: opening the writer would otherwise create an empty
/// one (and its identity would claim the archive).
fn existing_ledger(cli: &Cli) -> Result<()> {
    if !DataDir::new(&cli.data_dir).exists() {
        anyhow::bail!(
            "{} holds no ledger (pass the data directory of the ledger to archive with --data-dir)",
            cli.data_dir.display()
        );
    }
    Ok(())
}

fn sync(cli: &Cli, sel: &ArchiveSel, retries: u32, no_evict: bool) -> Result<u8> {
    existing_ledger(cli)?;
    let settings = sel.settings()?;
    let (mut l, _) = match store::open_writer(cli, "archive sync") {
        Ok(x) => x,
        Err(trailwarden_ledger::LedgerError::Locked(w)) => {
            eprintln!("error: {w}: a running serve archives on its own (set [archive] url in its configuration; see GET /v1/archive)");
            return Ok(crate::EXIT_CANNOT_RUN);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(store::open_error_code(&e));
        }
    };
    let result = (|| -> Result<(SyncReport, Vec<(u64, u64)>)> {
        l.wait_for_seals()?;
        let dir = l.data_dir().clone();
        let mut delay = 1u64;
        let mut attempt = 0;
        let report = loop {
            // a fresh store per pass: the per-object lock date is fixed when it is opened
            let archive = Archive::open(&settings)?;
            let r = trailwarden_archive::block_on(archive.sync(&dir))?;
            match r {
                Ok(r) if r.failures.is_empty() || attempt >= retries => break r,
                Ok(r) => {
                    for f in &r.failures {
                        eprintln!("warning: {f} (retrying in {delay} s)");
                    }
                }
                Err(e) if e.is_transient() && attempt < retries => {
                    eprintln!("warning: {e} (retrying in {delay} s)");
                }
                Err(e) => return Err(e.into()),
            }
            attempt += 1;
            std::thread::sleep(std::time::Duration::from_secs(delay));
            delay = (delay * 2).min(60);
        };
        let url = settings.url.clone().unwrap_or_default();
        let evicted = if no_evict || !trailwarden_archive::marks_refer_to(&dir, &url) {
            Vec::new()
        } else {
            let before = Timestamp(
                Timestamp::now().0 - i64::from(settings.hot_days) * 86_400 * 1_000_000_000,
            );
            retention::evict(&mut l, before, &url)?
        };
        Ok((report, evicted))
    })();
    let close_reason = if result.is_ok() {
        "archive sync"
    } else {
        "archive sync failed"
    };
    if let Err(e) = l.close(close_reason) {
        eprintln!("warning: {e}");
    }
    let (report, evicted) = result?;
    match cli.output {
        OutputFormat::Json | OutputFormat::Sarif => println!(
            "{}",
            serde_json::json!({"sync": report, "evicted": evicted})
        ),
        _ => {
            println!(
                "archived {} segment(s), {:.1} MB in {:.2} s ({:.1} MB/s); records 0..{} are in the archive",
                report.uploaded.len(),
                report.bytes as f64 / 1e6,
                report.elapsed_seconds,
                report.bytes as f64 / 1e6 / report.elapsed_seconds.max(1e-9),
                report.archived_end
            );
            for (a, b) in &report.purged {
                println!("purged records {a}..={b} from the archive (tombstone archived)");
            }
            for (a, b) in &evicted {
                println!(
                    "evicted the local copy of records {a}..={b} (archived, eviction recorded)"
                );
            }
            if report.pending > 0 {
                println!(
                    "{} segment(s) still waiting, the oldest sealed {:.0} s ago",
                    report.pending, report.max_lag_seconds
                );
            }
            for f in &report.failures {
                eprintln!("error: {f}");
            }
            for c in &report.conflicts {
                eprintln!("INTEGRITY: {c}");
            }
        }
    }
    Ok(if !report.conflicts.is_empty() {
        crate::EXIT_PROBLEM
    } else if !report.failures.is_empty() {
        crate::EXIT_STORAGE
    } else {
        crate::EXIT_OK
    })
}

fn status(cli: &Cli, sel: &ArchiveSel, remote: bool) -> Result<u8> {
    existing_ledger(cli)?;
    let dir = DataDir::new(&cli.data_dir);
    let rows = if remote {
        let a = sel.open()?;
        trailwarden_archive::block_on(a.status(&dir, true))??
    } else {
        trailwarden_archive::local_status(&dir, None)?
    };
    match cli.output {
        OutputFormat::Json | OutputFormat::Sarif => println!("{}", serde_json::to_string(&rows)?),
        f => {
            let mut t = Table::new(&[
                "segment",
                "state",
                "local",
                "archived",
                "in_archive",
                "lag_s",
                "newest",
            ]);
            for r in &rows {
                t.row(vec![
                    format!("{}-{}", r.first, r.last),
                    r.state.clone(),
                    if r.local { "yes" } else { "no" }.into(),
                    r.archived
                        .map(|t| t.to_string())
                        .unwrap_or_else(|| "-".into()),
                    match r.in_archive {
                        Some(true) => "yes".into(),
                        Some(false) => "no".into(),
                        None => "?".into(),
                    },
                    r.lag_seconds.map(|s| format!("{s:.0}")).unwrap_or_default(),
                    r.newest_received.map(|t| t.to_string()).unwrap_or_default(),
                ]);
            }
            if f == OutputFormat::Csv {
                t.print_csv(&mut io::stdout())?
            } else {
                t.print_text(&mut io::stdout())?
            }
        }
    }
    Ok(crate::EXIT_OK)
}

fn restore(cli: &Cli, sel: &ArchiveSel, from: &str, to: &str) -> Result<u8> {
    existing_ledger(cli)?;
    let (from, to) = (parse_time_arg(from)?, parse_time_arg(to)?);
    let a = sel.open()?;
    let (l, _) = match store::open_writer(cli, "archive restore") {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(store::open_error_code(&e));
        }
    };
    let dir = l.data_dir().clone();
    let r = trailwarden_archive::block_on(a.restore(&dir, from, to))?
        .with_context(|| format!("restoring from {}", a.url()));
    let outcome = if r.is_ok() { "success" } else { "failure" };
    let restored = r.as_ref().map(|r| r.segments.len() as u64).unwrap_or(0);
    store::record_and_close(
        l,
        trailwarden_model::RecordKind::Access,
        &serde_json::to_value(trailwarden_ledger::record::Access {
            subject: store::subject(),
            interface: "cli".into(),
            action: "archive restore".into(),
            target: format!("{} records received {from}..{to}", a.url()),
            records: restored,
            outcome: outcome.into(),
            origin: "local".into(),
        })?,
        "the restore",
        "archive restore",
    )?;
    let r = r?;
    match cli.output {
        OutputFormat::Json | OutputFormat::Sarif => println!("{}", serde_json::to_string(&r)?),
        _ => {
            for (a, b) in &r.segments {
                println!("restored records {a}..={b}");
            }
            println!(
                "{} segment(s), {:.1} MB restored",
                r.segments.len(),
                r.bytes as f64 / 1e6
            );
        }
    }
    Ok(crate::EXIT_OK)
}
