//! Ledger commands: init, verify, prove, verify-proof, export, checkpoint, retention.

use crate::output::{OutputFormat, Table};
use crate::{store, Cli};
use anyhow::{bail, Context, Result};
use base64::Engine;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use trailwarden_ledger::note::NoteVerifier;
use trailwarden_ledger::proof::{self, BundleEntry};
use trailwarden_ledger::reader::LedgerReader;
use trailwarden_ledger::retention::{self, PrunePolicy};
use trailwarden_ledger::verify::{self, VerifyOptions};
use trailwarden_model::{parse_duration, Timestamp};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A time argument: RFC 3339, or a duration meaning "that long ago" (`24h`, `400d`).
pub fn parse_time_arg(s: &str) -> Result<Timestamp> {
    Ok(trailwarden_model::parse_time_or_ago(s, Timestamp::now())?)
}

/// A verifier key argument: the `NAME+ID+KEY` string or a file holding it.
fn parse_key_arg(s: &str) -> Result<NoteVerifier> {
    let text = if std::path::Path::new(s).exists() {
        std::fs::read_to_string(s).with_context(|| format!("reading {s}"))?
    } else {
        s.to_string()
    };
    NoteVerifier::parse(text.trim()).map_err(|e| anyhow::anyhow!("--public-key: {e}"))
}

fn write_out(path: Option<&PathBuf>, text: &str) -> Result<()> {
    match path {
        Some(p) => std::fs::write(p, text).with_context(|| format!("writing {}", p.display())),
        None => {
            io::stdout().write_all(text.as_bytes())?;
            Ok(())
        }
    }
}

fn warn_access(w: Option<String>) {
    if let Some(w) = w {
        eprintln!("warning: {w}");
    }
}

/// `trailwarden init`.
pub fn init(cli: &Cli) -> Result<u8> {
    let existed = cli.data_dir.join("identity.json").exists();
    let (l, _) = match store::open_writer(cli, "init") {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(store::open_error_code(&e));
        }
    };
    let id = l.identity().clone();
    let cp = l.close("init")?;
    match cli.output {
        OutputFormat::Json | OutputFormat::Sarif => println!(
            "{}",
            serde_json::json!({"data_dir": cli.data_dir, "created": !existed, "origin": id.origin, "vkey": id.vkey, "size": cp.checkpoint.size})
        ),
        _ => {
            println!(
                "{} {}",
                if existed {
                    "data directory exists:"
                } else {
                    "initialized"
                },
                cli.data_dir.display()
            );
            println!("origin:       {}", id.origin);
            println!("verifier key: {}", id.vkey);
            println!("(give the verifier key to whoever must check this audit trail; keep keys/checkpoint.key secret)");
        }
    }
    Ok(crate::EXIT_OK)
}

/// Arguments of `trailwarden verify`.
#[derive(Args, Debug)]
#[command(after_help = "\
Exit codes: 0 verified, 1 integrity failure, 2 passed with warnings, 3 could not run.

Examples:
  trailwarden verify
  trailwarden verify --output json --trusted-checkpoint /secure/checkpoint.note
  trailwarden verify --public-key \"$(cat assessor-copy-of.vkey)\" --data-dir /mnt/copy
  trailwarden verify --against /backups/trailwarden-data   # pin a root mismatch to its record
  trailwarden verify --archive s3://audit-archive/prod --public-key checkpoint.vkey   # the archive alone")]
pub struct VerifyArgs {
    /// Verify the archive at this URL alone (no data directory needed: what an assessor runs);
    /// its objects are fetched into a scratch directory first. Use with --public-key.
    #[arg(long, value_name = "URL")]
    pub archive: Option<String>,
    /// Scratch directory for --archive (default: a new one under the system temp dir,
    /// removed afterwards). Needs room for the archived segments.
    #[arg(long, value_name = "DIR", requires = "archive")]
    pub work_dir: Option<PathBuf>,
    /// A checkpoint kept elsewhere (repeatable): catches a cut-off tail or a rollback.
    #[arg(long = "trusted-checkpoint", value_name = "FILE")]
    pub trusted_checkpoints: Vec<PathBuf>,
    /// Verify with this key (string or file) instead of the one in identity.json.
    #[arg(long, value_name = "VKEY")]
    pub public_key: Option<String>,
    /// Another copy of the ledger to locate a mismatch against.
    #[arg(long, value_name = "DIR")]
    pub against: Option<PathBuf>,
    /// Minimum age of pruned data (default 400d).
    #[arg(long, default_value = "400d")]
    pub min_retention: String,
    /// Fail when a running writer has written nothing for this long (e.g. 10m).
    #[arg(long)]
    pub max_staleness: Option<String>,
    /// Never show a progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

/// `trailwarden verify`.
pub fn verify(cli: &Cli, a: &VerifyArgs) -> Result<u8> {
    let run = || -> Result<verify::Report> {
        let mut trusted = Vec::new();
        for p in &a.trusted_checkpoints {
            trusted.push(
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
            );
        }
        let key = a.public_key.as_deref().map(parse_key_arg).transpose()?;
        let bar = if a.no_progress || !io::stderr().is_terminal() {
            ProgressBar::hidden()
        } else {
            let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template("{spinner} verifying: {pos} records ({per_sec})")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b
        };
        let mut progress = |done: u64, _total: u64| bar.set_position(done);
        let opts = VerifyOptions {
            trusted_checkpoints: trusted,
            trusted_key: key,
            anchor_dir: cli.anchor_dir.clone(),
            against: a.against.clone(),
            min_retention_ns: parse_duration(&a.min_retention)?,
            max_staleness_ns: a.max_staleness.as_deref().map(parse_duration).transpose()?,
            progress: Some(&mut progress),
            ..VerifyOptions::default()
        };
        let r = match &a.archive {
            None => verify::verify(&cli.data_dir, opts)?,
            Some(url) => {
                let (scratch, temporary) = match &a.work_dir {
                    Some(d) => (d.clone(), false),
                    None => (
                        std::env::temp_dir()
                            .join(format!("trailwarden-verify-{}", std::process::id())),
                        true,
                    ),
                };
                if scratch.join("identity.json").exists() {
                    bail!(
                        "--work-dir {} already holds a ledger; give an empty directory",
                        scratch.display()
                    );
                }
                // plain HTTP to a test store follows the store's own variable (AWS_ALLOW_HTTP, …)
                let archive = trailwarden_archive::Archive::open(
                    &trailwarden_archive::ArchiveConfig::at(url.clone()),
                )?;
                bar.set_message("fetching the archive");
                let fetched = trailwarden_archive::block_on(archive.materialize(&scratch))?;
                let r = fetched
                    .map_err(anyhow::Error::from)
                    .and_then(|_| Ok(verify::verify(&scratch, opts)?));
                if temporary {
                    let _ = std::fs::remove_dir_all(&scratch);
                }
                r?
            }
        };
        bar.finish_and_clear();
        Ok(r)
    };
    let report = match run() {
        Ok(r) => r,
        Err(e) => {
            match cli.output {
                OutputFormat::Json | OutputFormat::Sarif => println!(
                    "{}",
                    serde_json::json!({"status": "error", "error": format!("{e:#}")})
                ),
                _ => eprintln!("error: verify could not run: {e:#}"),
            }
            return Ok(crate::EXIT_CANNOT_RUN);
        }
    };
    let outcome = match report.status {
        verify::Status::Failed => "failure",
        _ => "success",
    };
    let access_warning = store::record_access(
        cli,
        "verify",
        &match &a.archive {
            Some(u) => format!("archive {u} records 0..{}", report.size),
            None => format!("records 0..{}", report.size),
        },
        report.checked.records,
        outcome,
    );
    match cli.output {
        OutputFormat::Json | OutputFormat::Sarif => println!("{}", serde_json::to_string(&report)?),
        OutputFormat::Csv => {
            let mut t = Table::new(&["severity", "code", "index", "range", "file", "detail"]);
            for (sev, list) in [("failure", &report.failures), ("warning", &report.warnings)] {
                for f in list {
                    t.row(vec![
                        sev.into(),
                        f.code.clone(),
                        f.index.map(|i| i.to_string()).unwrap_or_default(),
                        f.range
                            .map(|r| format!("{}-{}", r[0], r[1]))
                            .unwrap_or_default(),
                        f.file.clone().unwrap_or_default(),
                        f.detail.lines().next().unwrap_or("").to_string(),
                    ]);
                }
            }
            t.print_csv(&mut io::stdout())?;
        }
        OutputFormat::Table => print!("{}", verify::summary(&report)),
    }
    warn_access(access_warning);
    Ok(report.status.exit_code())
}

/// `trailwarden prove`.
#[derive(Subcommand, Debug)]
pub enum ProveCmd {
    /// Prove that a record is in the signed tree (a C2SP tlog-proof carrying the record).
    Inclusion {
        /// Ledger index of the record.
        #[arg(long)]
        index: u64,
        /// Use the signed checkpoint of this tree size (default: the latest).
        #[arg(long)]
        size: Option<u64>,
        /// Write the proof here instead of stdout.
        #[arg(short = 'o', long)]
        out: Option<PathBuf>,
    },
    /// Prove that the tree at one signed size extends the tree at an earlier one.
    Consistency {
        /// The earlier signed size.
        #[arg(long)]
        from: u64,
        /// The later signed size (default: the latest).
        #[arg(long)]
        to: Option<u64>,
        /// Write the proof here instead of stdout.
        #[arg(short = 'o', long)]
        out: Option<PathBuf>,
    },
}

/// `trailwarden prove …`.
pub fn prove(cli: &Cli, c: &ProveCmd) -> Result<u8> {
    let reader = LedgerReader::open(&cli.data_dir, None)?;
    let pick = |size: Option<u64>| -> Result<trailwarden_ledger::note::SignedCheckpoint> {
        match size {
            Some(s) => reader.checkpoint_at(s)?.ok_or_else(|| {
                anyhow::anyhow!("no checkpoint was signed at size {s} (see checkpoints.log)")
            }),
            None => reader
                .latest_checkpoint()?
                .ok_or_else(|| anyhow::anyhow!("the ledger has no signed checkpoint yet")),
        }
    };
    match c {
        ProveCmd::Inclusion { index, size, out } => {
            let cp = pick(*size)?;
            let (encoded, p) = proof::inclusion(&reader, *index, &cp)?;
            write_out(
                out.as_ref(),
                &proof::inclusion_file(&encoded, *index, &p, &cp),
            )?;
            warn_access(store::record_access(
                cli,
                "prove",
                &format!("inclusion of record {index} at size {}", cp.checkpoint.size),
                1,
                "success",
            ));
        }
        ProveCmd::Consistency { from, to, out } => {
            let new = pick(*to)?;
            let old =
                if *from == 0 {
                    None
                } else {
                    Some(reader.checkpoint_at(*from)?.ok_or_else(|| {
                        anyhow::anyhow!("no checkpoint was signed at size {from}")
                    })?)
                };
            let p = match &old {
                Some(o) => proof::consistency(&reader, o, &new)?,
                None => Vec::new(),
            };
            write_out(out.as_ref(), &proof::consistency_file(*from, &p, &new))?;
            warn_access(store::record_access(
                cli,
                "prove",
                &format!("consistency {from}..{}", new.checkpoint.size),
                0,
                "success",
            ));
        }
    }
    Ok(crate::EXIT_OK)
}

/// Arguments of `trailwarden verify-proof`.
#[derive(Args, Debug)]
#[command(after_help = "\
Accepts a tlog-proof (inclusion), a consistency proof (`old N` …), or an export bundle directory.
Needs nothing but the public key: no data directory, no network.

Examples:
  trailwarden verify-proof record-4711.tlog-proof --public-key \"$(cat checkpoint.vkey)\"
  trailwarden verify-proof growth.proof --old-checkpoint last-month.note --public-key checkpoint.vkey
  trailwarden verify-proof evidence/ --public-key checkpoint.vkey")]
pub struct VerifyProofArgs {
    /// The proof file or bundle directory.
    pub file: PathBuf,
    /// The ledger's verifier key (string or file).
    #[arg(long, value_name = "VKEY")]
    pub public_key: String,
    /// For a consistency proof: the old checkpoint you already trust.
    #[arg(long, value_name = "FILE")]
    pub old_checkpoint: Option<PathBuf>,
}

/// `trailwarden verify-proof`.
pub fn verify_proof(cli: &Cli, a: &VerifyProofArgs) -> Result<u8> {
    let key = parse_key_arg(&a.public_key)?;
    let result: Result<serde_json::Value, String> = if a.file.is_dir() {
        proof::verify_bundle(&a.file, &key)
            .map(|(cp, n)| serde_json::json!({"type": "bundle", "records": n, "tree_size": cp.checkpoint.size, "origin": cp.checkpoint.origin}))
            .map_err(|e| e.to_string())
    } else {
        let text = std::fs::read_to_string(&a.file)
            .with_context(|| format!("reading {}", a.file.display()))?;
        if text.starts_with(proof::PROOF_HEADER) {
            proof::verify_inclusion_file(&text, &key)
                .map(|p| {
                    let mut v = serde_json::to_value(&p).unwrap_or_default();
                    v["type"] = "inclusion".into();
                    v
                })
                .map_err(|e| e.to_string())
        } else {
            let old = a
                .old_checkpoint
                .as_ref()
                .map(std::fs::read_to_string)
                .transpose()
                .context("reading --old-checkpoint")?;
            proof::verify_consistency_file(&text, old.as_deref(), &key)
                .map(|p| {
                    let mut v = serde_json::to_value(&p).unwrap_or_default();
                    v["type"] = "consistency".into();
                    v
                })
                .map_err(|e| e.to_string())
        }
    };
    match (result, cli.output) {
        (Ok(v), OutputFormat::Json) => {
            println!("{}", serde_json::json!({"valid": true, "proof": v}))
        }
        (Ok(v), _) => {
            // strings without their JSON quotes
            let t = |k: &str| match &v[k] {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            println!("VALID {} proof", t("type"));
            match v["type"].as_str() {
                Some("inclusion") => println!(
                    "record {} is in {} at tree size {} (received {}, source {}, kind {})",
                    t("index"),
                    t("origin"),
                    t("tree_size"),
                    t("received"),
                    t("source"),
                    t("kind")
                ),
                Some("consistency") => println!(
                    "{}: the tree of size {} extends the tree of size {}",
                    t("origin"),
                    t("new_size"),
                    t("old_size")
                ),
                _ => println!(
                    "{} records are in {} at tree size {}",
                    t("records"),
                    t("origin"),
                    t("tree_size")
                ),
            }
        }
        (Err(e), OutputFormat::Json) => {
            println!("{}", serde_json::json!({"valid": false, "error": e}));
            return Ok(crate::EXIT_PROBLEM);
        }
        (Err(e), _) => {
            println!("INVALID: {e}");
            return Ok(crate::EXIT_PROBLEM);
        }
    }
    Ok(crate::EXIT_OK)
}

/// Arguments of `trailwarden export`.
#[derive(Args, Debug)]
#[command(after_help = "\
Writes DIR/checkpoint.note, DIR/checkpoint.vkey, DIR/events.jsonl (each record with its inclusion
proof) and DIR/README.txt. An assessor checks it with `trailwarden verify-proof DIR --public-key K`.

Examples:
  trailwarden export --from 2026-01-05T00:00:00Z --to 2026-01-06T00:00:00Z -o evidence-2026-01-05/
  trailwarden export --from 24h -o last-day/")]
pub struct ExportArgs {
    /// Start of the range (RFC 3339, or a duration meaning that long ago).
    #[arg(long)]
    pub from: String,
    /// End of the range (default: now).
    #[arg(long)]
    pub to: Option<String>,
    /// Which time selects records: the time they were received (hashed) or the event time.
    #[arg(long, value_parser = ["received", "event"], default_value = "received")]
    pub by: String,
    /// Output directory (created).
    #[arg(short = 'o', long)]
    pub out: PathBuf,
}

/// `trailwarden export`.
pub fn export(cli: &Cli, a: &ExportArgs) -> Result<u8> {
    let from = parse_time_arg(&a.from)?;
    let to =
        a.to.as_deref()
            .map(parse_time_arg)
            .transpose()?
            .unwrap_or_else(Timestamp::now);
    let reader = LedgerReader::open(&cli.data_dir, None)?;
    let cp = reader
        .latest_checkpoint()?
        .ok_or_else(|| anyhow::anyhow!("the ledger has no signed checkpoint yet"))?;
    let size = cp.checkpoint.size;
    let mut picked: Vec<u64> = Vec::new();
    reader.for_each(0, size, |r| {
        let t = if a.by == "event" {
            r.format
                .and_then(|f| trailwarden_parse::reparse(f, &r.raw, r.received))
                .and_then(|e| e.time)
                .unwrap_or(r.received)
        } else {
            r.received
        };
        if t >= from && t < to {
            picked.push(r.index);
        }
        Ok(true)
    })?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let mut events = io::BufWriter::new(std::fs::File::create(a.out.join("events.jsonl"))?);
    for &i in &picked {
        let (encoded, p) = proof::inclusion(&reader, i, &cp)?;
        let d = trailwarden_ledger::record::decode(&encoded).map_err(anyhow::Error::msg)?;
        let e = BundleEntry {
            index: i,
            record: B64.encode(&encoded),
            proof: p.iter().map(|h| B64.encode(h)).collect(),
            received: d.received,
            source: d.source.to_string(),
            raw: std::str::from_utf8(d.payload).ok().map(str::to_string),
        };
        serde_json::to_writer(&mut events, &e)?;
        events.write_all(b"\n")?;
    }
    events.flush()?;
    std::fs::write(a.out.join("checkpoint.note"), &cp.note)?;
    std::fs::write(
        a.out.join("checkpoint.vkey"),
        format!("{}\n", reader.verifier.vkey()),
    )?;
    std::fs::write(
        a.out.join("README.txt"),
        format!(
            "trailwarden evidence export\n\nledger origin: {}\nrecords: {} (received {} .. {}, selected by {} time)\ncheckpoint: tree size {}\n\n\
             Check it with the verifier key you obtained from the ledger operator out of band\n(checkpoint.vkey here is a convenience copy):\n\n  \
             trailwarden verify-proof . --public-key \"NAME+ID+KEY\"\n\nEach line of events.jsonl holds the hashed record (base64), its RFC 9162 inclusion proof\n\
             and, for reading, its receive time, source and raw bytes.\n",
            reader.identity.origin,
            picked.len(),
            from,
            to,
            a.by,
            size
        ),
    )?;
    warn_access(store::record_access(
        cli,
        "export",
        &format!("{from}..{to} by {} time", a.by),
        picked.len() as u64,
        "success",
    ));
    match cli.output {
        OutputFormat::Json | OutputFormat::Sarif => println!(
            "{}",
            serde_json::json!({"dir": a.out, "records": picked.len(), "tree_size": size})
        ),
        _ => println!(
            "exported {} records with proofs against tree size {size} to {}",
            picked.len(),
            a.out.display()
        ),
    }
    Ok(crate::EXIT_OK)
}

/// `trailwarden checkpoint`.
pub fn checkpoint(cli: &Cli) -> Result<u8> {
    let reader = LedgerReader::open(&cli.data_dir, None)?;
    let cp = reader.latest_checkpoint()?;
    match cli.output {
        OutputFormat::Json | OutputFormat::Sarif => println!(
            "{}",
            serde_json::json!({"origin": reader.identity.origin, "vkey": reader.verifier.vkey(), "size": cp.as_ref().map(|c| c.checkpoint.size), "checkpoint": cp.as_ref().map(|c| &c.note)})
        ),
        _ => {
            match &cp {
                Some(c) => print!("{}", c.note),
                None => println!("(no checkpoint yet)"),
            }
            eprintln!("verifier key: {}", reader.verifier.vkey());
        }
    }
    Ok(crate::EXIT_OK)
}

/// `trailwarden retention`.
#[derive(Subcommand, Debug)]
pub enum RetentionCmd {
    /// Delete whole sealed segments older than the retention period, each after a tombstone.
    Prune {
        /// Retention period: segments whose newest record is older than this go (default 400d).
        #[arg(long, default_value = "400d")]
        older_than: String,
        /// Who approved the deletion (recorded in the tombstone).
        #[arg(long)]
        approver: String,
        /// Why (recorded in the tombstone).
        #[arg(long, default_value = "retention period elapsed (PCI DSS 10.5.1)")]
        reason: String,
        /// With an archive configured (`[archive] url`), only archived segments are pruned;
        /// the archive's copies go at the next `archive sync`, once the tombstone is archived.
        #[command(flatten)]
        archive: crate::cmd_archive::ArchiveSel,
    },
    /// Place a legal hold on a range of records (prune refuses it).
    Hold(HoldArgs),
    /// Release a legal hold.
    Release(HoldArgs),
    /// List legal holds.
    Holds,
}

/// A range of records under (or leaving) a legal hold.
#[derive(Args, Debug)]
pub struct HoldArgs {
    /// First index.
    #[arg(long)]
    pub from: u64,
    /// Last index (inclusive).
    #[arg(long)]
    pub to: u64,
    /// Why.
    #[arg(long)]
    pub reason: String,
}

/// `trailwarden retention …`.
pub fn retention(cli: &Cli, c: &RetentionCmd) -> Result<u8> {
    // Arguments are checked before the writer opens: a refused command leaves no trace.
    let policy = match c {
        RetentionCmd::Prune {
            older_than,
            approver,
            reason,
            archive,
        } => {
            let require_archived = archive.settings().is_ok();
            let d = parse_duration(older_than)?;
            if d < 365 * 86_400 * 1_000_000_000 {
                bail!("--older-than {older_than} is shorter than the 12 months PCI DSS 10.5.1 requires");
            }
            Some(PrunePolicy {
                before: Timestamp(Timestamp::now().0 - d),
                policy: format!("keep {older_than}"),
                approver: approver.clone(),
                reason: reason.clone(),
                require_archived,
            })
        }
        _ => None,
    };
    let (mut l, _) = match store::open_writer(cli, "retention") {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(store::open_error_code(&e));
        }
    };
    let result = retention_with(cli, c, policy.as_ref(), &mut l);
    // A clean stop either way, so the next start is not reported as a crash.
    let reason = if result.is_ok() {
        "retention"
    } else {
        "retention command failed"
    };
    l.close(reason)?;
    result?;
    Ok(crate::EXIT_OK)
}

fn retention_with(
    cli: &Cli,
    c: &RetentionCmd,
    policy: Option<&PrunePolicy>,
    l: &mut trailwarden_ledger::Ledger,
) -> Result<()> {
    match (c, policy) {
        (RetentionCmd::Prune { .. }, Some(policy)) => {
            let done = retention::prune(l, policy)?;
            match cli.output {
                OutputFormat::Json | OutputFormat::Sarif => {
                    println!("{}", serde_json::json!({"pruned": done}))
                }
                _ if done.is_empty() => println!("nothing to prune"),
                _ => {
                    for (a, b) in &done {
                        println!("pruned records {a}..={b} (tombstone recorded)");
                    }
                }
            }
        }
        (RetentionCmd::Prune { .. }, None) => bail!("prune without a policy"),
        (RetentionCmd::Hold(HoldArgs { from, to, reason }), _) => {
            let i = retention::hold(l, *from, *to, reason)?;
            println!("legal hold on records {from}..={to} recorded as record {i}");
        }
        (RetentionCmd::Release(HoldArgs { from, to, reason }), _) => {
            let i = retention::release(l, *from, *to, reason)?;
            println!("legal hold on records {from}..={to} released, recorded as record {i}");
        }
        (RetentionCmd::Holds, _) => {
            let h = retention::holds(l)?;
            let mut t = Table::new(&["from", "to"]);
            for (a, b) in &h {
                t.row(vec![a.to_string(), b.to_string()]);
            }
            match cli.output {
                OutputFormat::Csv => t.print_csv(&mut io::stdout())?,
                OutputFormat::Json | OutputFormat::Sarif => {
                    let v: Vec<_> = h
                        .iter()
                        .map(|(a, b)| serde_json::json!({"from": a, "to": b}))
                        .collect();
                    println!("{}", serde_json::Value::Array(v))
                }
                OutputFormat::Table => t.print_text(&mut io::stdout())?,
            }
        }
    }
    Ok(())
}

/// `trailwarden key`.
#[derive(Subcommand, Debug)]
pub enum KeyCmd {
    /// Generate a new checkpoint key and switch to it. The rotation is recorded in the ledger
    /// (with the new key's proof of possession) under a checkpoint signed by the old key; the
    /// old key keeps co-signing until `key retire`, so verifiers holding only the old key keep
    /// working while the new one is distributed.
    #[command(after_help = "\
Examples:
  trailwarden key rotate
  trailwarden key rotate --output json   # the new verifier key for assessors' trust stores")]
    Rotate,
    /// Stop co-signing with the key the last rotation replaced, and delete it.
    Retire,
}

/// `trailwarden key …`.
pub fn key(cli: &Cli, c: &KeyCmd) -> Result<u8> {
    let (mut l, _) = match store::open_writer(cli, "key") {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(store::open_error_code(&e));
        }
    };
    let origin = l.identity().origin.clone();
    let dir = l.data_dir().clone();
    let result = match c {
        KeyCmd::Rotate => dir
            .create_next_key(&origin)
            .and_then(|next| l.rotate_key(std::sync::Arc::new(next)))
            .and_then(|entry| dir.promote_next_key(&origin).map(|_| entry))
            .map(|e| {
                match cli.output {
                    OutputFormat::Json | OutputFormat::Sarif => println!(
                        "{}",
                        serde_json::json!({"rotated": true, "vkey": e.new_vkey, "previous_vkey": e.old_vkey, "effective_from_size": e.effective_from_size, "record": e.index})
                    ),
                    _ => {
                        println!("new verifier key: {}", e.new_vkey);
                        println!(
                            "it signs from tree size {} (rotation recorded as record {}); the previous key co-signs until `trailwarden key retire`",
                            e.effective_from_size, e.index
                        );
                    }
                }
            }),
        KeyCmd::Retire => l.retire_previous_key().and_then(|r| {
            dir.remove_previous_key()?;
            match (cli.output, r) {
                (OutputFormat::Json, r) => {
                    println!("{}", serde_json::json!({"retired": r}))
                }
                (_, Some(v)) => println!("retired {v}; checkpoints now carry only the current key's signature"),
                (_, None) => println!("no previous key to retire"),
            }
            Ok(())
        }),
    };
    let reason = if result.is_ok() {
        "key"
    } else {
        "key command failed"
    };
    l.close(reason)?;
    result?;
    Ok(crate::EXIT_OK)
}
