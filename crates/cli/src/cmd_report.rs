//! `trailwarden report pci`: the PCI DSS 4.0.1 Requirement 10 evidence report.

use crate::cmd_ledger::parse_time_arg;
use crate::{store, Cli};
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use trailwarden_compliance::check::{self, Options};
use trailwarden_compliance::report;
use trailwarden_ledger::proof;
use trailwarden_ledger::reader::LedgerReader;
use trailwarden_ledger::LedgerError;
use trailwarden_model::RecordKind;

/// `trailwarden report`.
#[derive(Subcommand, Debug)]
pub enum ReportCmd {
    /// Requirement 10, sub-requirement by sub-requirement (10.1.1–10.7.3): met, gap or attest,
    /// with the evidence; writes report.json, report.html and report.tlog-proof (the inclusion
    /// proof of the ledger record holding report.json's hash) into DIR.
    #[command(after_help = "Examples:\n  \
        trailwarden report pci --from 2026-11-01T00:00:00Z --to 2026-12-01T00:00:00Z -o evidence/\n  \
        trailwarden report pci --from 30d --to 0s -o evidence/ --config /etc/trailwarden/trailwarden.toml \\\n      \
        --check /etc/kubernetes/audit/policy.yaml --check /etc/kubernetes/manifests/kube-apiserver.yaml\n\n\
        An assessor checks it offline with the public key alone:\n  \
        sha256sum evidence/report.json   # equals the hash in the proven record\n  \
        trailwarden verify-proof evidence/report.tlog-proof --public-key \"$(cat checkpoint.vkey)\"\n\n\
        Exit codes: 0 no gap, 1 gaps, 3 could not run.")]
    Pci(PciArgs),
}

/// `report pci` arguments.
#[derive(Args, Debug)]
pub struct PciArgs {
    /// Start of the range: RFC 3339, or a duration back from now (30d).
    #[arg(long)]
    pub from: String,
    /// End of the range (exclusive): RFC 3339, or a duration back from now (0s = now).
    #[arg(long)]
    pub to: String,
    /// Directory to write into (created).
    #[arg(long, short = 'o')]
    pub out: PathBuf,
    /// The server's configuration file: its detection, routes and verification settings are
    /// evidence, and it is checked like the --check files.
    #[arg(long, short = 'c', env = "TRAILWARDEN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Logging configuration to check and cite (audit policy, apiserver manifest, AKS
    /// diagnostic settings); repeatable.
    #[arg(long = "check", value_name = "FILE")]
    pub checks: Vec<PathBuf>,
}

/// Run `report`.
pub fn run(cli: &Cli, cmd: &ReportCmd) -> Result<u8> {
    let ReportCmd::Pci(a) = cmd;
    let from = parse_time_arg(&a.from)?.0;
    let to = parse_time_arg(&a.to)?.0;
    if to <= from {
        eprintln!("error: --to must be after --from");
        return Ok(crate::EXIT_USAGE);
    }
    let mut checks = Vec::new();
    let mut files: Vec<PathBuf> = a.checks.clone();
    let mut server = None;
    let mut review = trailwarden_compliance::review::ReviewConfig::default();
    if let Some(c) = &a.config {
        let (cfg, _) = trailwarden_server::Config::load(Some(c), &crate::cmd_serve::env_vars())?;
        server = Some(cfg.report_facts());
        review = cfg.review.clone();
        files.push(c.clone());
    }
    for f in &files {
        match check::check_file(f, &Options::default()) {
            Ok(r) => checks.push(r),
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(crate::EXIT_CANNOT_RUN);
            }
        }
    }
    let roles = trailwarden_server::tokens::TokenStore::open(&cli.data_dir)
        .map(|t| t.count_by_role())
        .unwrap_or_default();
    // take the ledger first: the report's hash must be recorded
    let (mut l, _) = match store::open_writer(cli, "report pci") {
        Ok(x) => x,
        Err(LedgerError::Locked(_)) => {
            eprintln!(
                "error: the ledger is in use by another trailwarden process (serve or ingest); the report's hash must be recorded in the ledger, so it was not made. With serve running, use GET /v1/reports/pci?from=…&to=… (format=json|html), or stop serve and run this again."
            );
            return Ok(crate::EXIT_CANNOT_RUN);
        }
        Err(e) => {
            eprintln!("error: cannot open the ledger: {e}");
            return Ok(store::open_error_code(&e));
        }
    };
    let r = report::assemble(
        &cli.data_dir,
        from,
        to,
        &checks,
        server,
        &review,
        roles,
        &store::subject(),
        cli.anchor_dir.as_deref(),
    )?;
    let json = serde_json::to_string_pretty(&r)? + "\n";
    let hash = report::sha256(json.as_bytes());
    let index = l
        .append_internal(RecordKind::Alert, &report::record(&r, &hash))
        .and_then(|i| l.commit().map(|_| i))
        .context("recording the report in the ledger")?;
    l.close("report recorded").context("closing the ledger")?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let write = |name: &str, bytes: &[u8]| -> Result<()> {
        let p = a.out.join(name);
        std::fs::write(&p, bytes).with_context(|| format!("writing {}", p.display()))
    };
    write("report.json", json.as_bytes())?;
    write(
        "report.html",
        report::html(&r, &hash, Some(index)).as_bytes(),
    )?;
    let reader = LedgerReader::open(&cli.data_dir, None)?;
    let cp = reader
        .latest_checkpoint()?
        .filter(|c| c.checkpoint.size > index)
        .context("no signed checkpoint covers the report's record yet")?;
    let (encoded, p) = proof::inclusion(&reader, index, &cp)?;
    write(
        "report.tlog-proof",
        proof::inclusion_file(&encoded, index, &p, &cp).as_bytes(),
    )?;
    write(
        "checkpoint.vkey",
        format!("{}\n", reader.verifier.vkey()).as_bytes(),
    )?;
    let gaps = r.summary.get("gap").copied().unwrap_or(0);
    eprintln!(
        "{}: {} met, {} gap, {} attest; hash {hash} (ledger record {index}); wrote report.json, report.html, report.tlog-proof, checkpoint.vkey",
        a.out.display(),
        r.summary.get("met").copied().unwrap_or(0),
        gaps,
        r.summary.get("attest").copied().unwrap_or(0),
    );
    Ok(if gaps > 0 {
        crate::EXIT_PROBLEM
    } else {
        crate::EXIT_OK
    })
}
