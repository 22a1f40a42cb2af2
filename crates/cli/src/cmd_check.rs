//! `trailwarden check`: the logging-configuration posture (PCI DSS 10.2, 10.3, 10.5, 10.7).

use crate::output::{OutputFormat, Table};
use crate::Cli;
use anyhow::Result;
use clap::Args;
use std::io;
use std::path::PathBuf;
use trailwarden_compliance::check::{self, FileReport, Options};

/// `check` arguments.
#[derive(Args, Debug)]
#[command(
    after_help = "Recognised inputs (by content): a Kubernetes audit Policy, a kube-apiserver \
static-pod manifest or its flags, AKS diagnostic settings as `az monitor diagnostic-settings list` \
prints them, and trailwarden's config (.toml).

Exit codes: 0 no findings, 1 findings, 3 a file could not be read or parsed (the others are still \
checked).

Examples:
  trailwarden check docs/deploy/audit-policy.yaml
  trailwarden check /etc/kubernetes/manifests/kube-apiserver.yaml /etc/kubernetes/audit/policy.yaml
  az monitor diagnostic-settings list --resource $AKS_ID > diag.json && trailwarden check diag.json
  trailwarden check --output sarif policy.yaml trailwarden.toml > check.sarif
  trailwarden check --cde-namespace payments --cde-namespace card-vault policy.yaml"
)]
pub struct CheckArgs {
    /// Files to check.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// A namespace of the cardholder-data environment (repeatable; default `payments`): the
    /// policy's probes of 10.2.1.1 run there.
    #[arg(long = "cde-namespace", value_name = "NAMESPACE")]
    pub cde_namespaces: Vec<String>,
}

/// Run `check`.
pub fn run(cli: &Cli, a: &CheckArgs) -> Result<u8> {
    let mut o = Options::default();
    if !a.cde_namespaces.is_empty() {
        o.cde_namespaces = a.cde_namespaces.clone();
    }
    let mut reports: Vec<FileReport> = Vec::new();
    let mut errors = Vec::new();
    for f in &a.files {
        match check::check_file(f, &o) {
            Ok(r) => reports.push(r),
            Err(e) => {
                eprintln!("error: {e}");
                errors.push(e.to_string());
            }
        }
    }
    for r in reports
        .iter_mut()
        .filter(|r| r.kind == check::InputKind::TrailwardenConfig)
    {
        archive_findings(r);
    }
    let findings: usize = reports.iter().map(|r| r.findings.len()).sum();
    match cli.output {
        OutputFormat::Sarif => {
            println!("{}", serde_json::to_string_pretty(&check::sarif(&reports))?)
        }
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "files": reports, "errors": errors, "findings": findings,
            }))?
        ),
        OutputFormat::Csv | OutputFormat::Table => {
            let mut t = Table::new(&[
                "severity",
                "requirement",
                "id",
                "file",
                "line",
                "finding",
                "fix",
            ]);
            for r in &reports {
                for f in &r.findings {
                    t.row(vec![
                        f.severity.as_str().into(),
                        f.requirement.into(),
                        f.id.into(),
                        f.file.clone(),
                        f.line.map(|l| l.to_string()).unwrap_or_default(),
                        format!("{} ({})", f.title, f.detail),
                        f.fix.clone(),
                    ]);
                }
            }
            if cli.output == OutputFormat::Csv {
                t.print_csv(&mut io::stdout())?;
            } else {
                for r in &reports {
                    eprintln!(
                        "{}: {} — {} finding(s)",
                        r.file,
                        r.kind.as_str(),
                        r.findings.len()
                    );
                }
                if findings > 0 {
                    t.print_text(&mut io::stdout())?;
                }
            }
        }
    }
    Ok(if !errors.is_empty() {
        crate::EXIT_CANNOT_RUN
    } else if findings > 0 {
        crate::EXIT_PROBLEM
    } else {
        crate::EXIT_OK
    })
}

/// The configured archive asked whether it enforces immutability for the retention period
/// (10.3.3): the store's own answer, not the configuration's claim.
fn archive_findings(r: &mut FileReport) {
    let Ok((cfg, _)) = trailwarden_server::Config::load(
        Some(std::path::Path::new(&r.file)),
        &crate::cmd_serve::env_vars(),
    ) else {
        return;
    };
    if cfg.archive.url.is_none() {
        return;
    }
    let finding = |id, title: String, detail: String, fix: &str| check::Finding {
        id,
        requirement: "10.3.3",
        severity: check::Severity::High,
        file: r.file.clone(),
        line: None,
        title,
        detail,
        fix: fix.into(),
    };
    let asked = trailwarden_archive::Archive::open(&cfg.archive)
        .and_then(|a| trailwarden_archive::block_on(a.check_immutability())?);
    match asked {
        Ok(c) => {
            for f in c.findings {
                let fix = "enable S3 Object Lock with a COMPLIANCE default retention of at least retain_days (or set [archive] object_lock), or a locked Azure immutability policy";
                r.findings.push(finding("TW-ARC-01", f, c.immutability.detail.clone(), fix));
            }
        }
        Err(e) => r.findings.push(finding(
            "TW-ARC-02",
            "the archive cannot be checked with the configured credentials".into(),
            e.to_string(),
            "check the store's credentials (AWS_*/AZURE_STORAGE_* variables) and that the bucket or container exists",
        )),
    }
}
