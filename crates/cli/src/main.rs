//! `trailwarden` — the command-line interface.
//!
//! Exit codes (stable, scripts rely on them):
//! - 0: success
//! - 1: the command ran and found a problem it was asked to report (`--strict` quarantines,
//!   integrity failures)
//! - 2: usage error (bad flags or arguments)
//! - 3: could not run (an input could not be read, the data directory is unusable)
//! - 4: storage failure (a record could not be stored)
#![warn(missing_docs)]

mod cmd_gen;
mod cmd_ingest;
mod output;

use clap::{Parser, Subcommand};
use output::OutputFormat;
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: a problem the command was asked to report.
pub const EXIT_PROBLEM: u8 = 1;
/// Exit code: usage error.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: could not run.
pub const EXIT_CANNOT_RUN: u8 = 3;
/// Exit code: storage failure.
pub const EXIT_STORAGE: u8 = 4;

/// Tamper-evident audit trail and continuous security monitoring for Kubernetes clusters that
/// run payment workloads (PCI DSS 4.0.1 Requirement 10).
#[derive(Parser, Debug)]
#[command(name = "trailwarden", version, about, long_about = None, after_help = EXAMPLES)]
pub struct Cli {
    /// Data directory (created and initialized on first use).
    #[arg(
        long,
        global = true,
        env = "TRAILWARDEN_DATA_DIR",
        default_value = "./trailwarden-data"
    )]
    pub data_dir: PathBuf,

    /// How to print data.
    #[arg(long, short = 'O', global = true, value_enum, default_value = "table")]
    pub output: OutputFormat,

    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

const EXAMPLES: &str = "\
Examples:
  trailwarden gen --events 100000 --seed 7 -o audit.jsonl
  trailwarden ingest audit.jsonl /var/log/kubernetes/audit/audit.log.1.gz
  trailwarden ingest --format aks --output json insights-logs-kube-audit.json
  kubectl logs -n kube-system kube-apiserver-0 | trailwarden ingest -";

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Generate realistic, deterministic Kubernetes audit traffic.
    Gen(cmd_gen::GenArgs),
    /// Parse and normalize audit logs from files or stdin.
    Ingest(cmd_ingest::IngestArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let result = match &cli.command {
        Command::Gen(a) => cmd_gen::run(&cli, a),
        Command::Ingest(a) => cmd_ingest::run(&cli, a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_CANNOT_RUN)
        }
    }
}
