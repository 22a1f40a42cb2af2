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

mod cmd_alerting;
mod cmd_alerts;
mod cmd_archive;
mod cmd_check;
mod cmd_controls;
mod cmd_gen;
mod cmd_ingest;
mod cmd_ledger;
mod cmd_query;
mod cmd_report;
mod cmd_review;
mod cmd_rules;
mod cmd_serve;
mod detector;
mod output;
mod store;

use clap::{Parser, Subcommand};
use output::OutputFormat;
use std::path::PathBuf;
use std::process::ExitCode;

/// Rust allocations go to mimalloc (fewer page faults than glibc for the ledger's per-segment
/// column buffers; measured in BENCHMARKS.md). The `system-alloc` feature leaves them to glibc,
/// for heap profilers that hook `malloc` (heaptrack; see BENCHMARKS.md "Server").
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc's `mi_option_e` (include/mimalloc.h; the Rust bindings
/// do not name it).
const MI_OPTION_PURGE_DELAY: libc::c_int = 15;
// It sits just before `use_numa_nodes`, which the bindings name: a mimalloc whose enum moved
// fails to build here instead of setting some other option.
const _: () = assert!(libmimalloc_sys::mi_option_use_numa_nodes == MI_OPTION_PURGE_DELAY + 1);

/// Batch commands (`ingest`, `detect`, `verify`, …) keep freed memory for reuse instead of
/// handing it back to the kernel and faulting it in again (in a VM every fresh page is zeroed,
/// and sealing a segment frees and reallocates tens of megabytes): mimalloc for Rust
/// allocations, glibc's malloc for zstd's contexts; such a command's memory stays at its
/// high-water mark until it exits.
///
/// `serve` runs for months: memory a query, a seal or a burst used and freed goes back to the
/// kernel after `SERVE_PURGE_DELAY_MS` unused (mimalloc) and above 64 MiB of free heap top
/// (glibc), so its RSS follows what it holds, not the highest it ever held (BENCHMARKS.md
/// "Soak"). `MIMALLOC_PURGE_DELAY` in the environment overrides either choice.
///
/// `serve` also runs without transparent huge pages (`PR_SET_THP_DISABLE`, unless
/// `MIMALLOC_ALLOW_THP` is set): mimalloc marks its arenas `MADV_HUGEPAGE`, so touching a
/// purged range faults in a whole zeroed 2 MiB page again, and with the kernel's default
/// `khugepaged/max_ptes_none` (511) khugepaged collapses ranges with a single page in use into
/// whole ones: what the purge above returned came back, and an hour at 10k events/s climbed
/// ~1 MiB a minute (BENCHMARKS.md, "The steady hour"). Batch commands keep huge pages: they
/// exit, and fewer page faults is what they want.
#[allow(unsafe_code)] // two C allocators' option setters and one prctl (with detect's prefetch hint, all the unsafe)
fn tune_allocators(long_running: bool) {
    let purge_delay = if long_running {
        SERVE_PURGE_DELAY_MS
    } else {
        -1
    };
    let trim = if long_running { 64 << 20 } else { 1 << 30 };
    // SAFETY: plain option setters, called before any other thread exists.
    unsafe {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, purge_delay);
        }
        if long_running && std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
            // the kernel's flag covers every mapping, mimalloc's arenas (marked
            // MADV_HUGEPAGE before `main`) included, so no allocator option is needed. Failing
            // is harmless (a kernel without THP): the server keeps the kernel's default.
            libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
        }
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, trim);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// How long (ms) `serve`'s freed memory may stay unused before mimalloc returns it.
const SERVE_PURGE_DELAY_MS: libc::c_long = 1000;

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

    /// Also publish every checkpoint to this write-once directory (on separate storage); the
    /// writer refuses to run behind it and verify checks against it.
    #[arg(long, global = true, env = "TRAILWARDEN_ANCHOR_DIR")]
    pub anchor_dir: Option<PathBuf>,

    /// Seal the write-ahead log into a Parquet segment once it holds this many bytes (default
    /// 64 MiB; smaller means more, smaller files).
    #[arg(
        long,
        global = true,
        env = "TRAILWARDEN_SEGMENT_BYTES",
        value_name = "BYTES"
    )]
    pub segment_bytes: Option<u64>,

    /// Origin (log identity) for a new data directory (default `trailwarden.local/<random>`).
    #[arg(long, global = true, env = "TRAILWARDEN_ORIGIN", hide = true)]
    pub origin: Option<String>,

    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

const SERVE_EXAMPLES: &str = "\
Examples:
  trailwarden serve -c trailwarden.toml
  # scale-out on NATS JetStream (docs/cluster.md): two ingest nodes, a writer and a standby
  trailwarden --data-dir in1 serve --role ingest --nats-url nats://127.0.0.1:4222 --listen 127.0.0.1:8441
  trailwarden --data-dir w serve --role writer --nats-url nats://127.0.0.1:4222 --partition prod-aks --listen 127.0.0.1:8443
";

const EXAMPLES: &str = "\
Examples:
  trailwarden serve
  trailwarden tokens create --role ingest --name kube-apiserver
  trailwarden gen --events 100000 --seed 7 -o audit.jsonl
  trailwarden ingest audit.jsonl /var/log/kubernetes/audit/audit.log.1.gz
  trailwarden ingest --format aks --output json insights-logs-kube-audit.json
  kubectl logs -n kube-system kube-apiserver-0 | trailwarden ingest -
  trailwarden verify --trusted-checkpoint /secure/checkpoint-2026-01-05.note
  trailwarden prove inclusion --index 4711 -o record-4711.tlog-proof
  trailwarden verify-proof record-4711.tlog-proof --public-key \"$(cat keys/checkpoint.vkey)\"
  trailwarden export --from 2026-01-05T00:00:00Z --to 2026-01-06T00:00:00Z -o evidence/
  trailwarden alerts list --status new --level high
  trailwarden alerts resolve 42 --note 'approved change CHG-1234'
  trailwarden review generate --date 2026-12-02 && trailwarden review sign-off daily-2026-12-02 --note 'SEC-812'
  trailwarden report pci --from 30d --to 0s -o evidence/
  trailwarden check docs/deploy/audit-policy.yaml /etc/kubernetes/manifests/kube-apiserver.yaml
  trailwarden query 'AKSAudit | where Verb == \"delete\" | summarize count() by tostring(User.username)'";

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Generate realistic, deterministic Kubernetes audit traffic.
    Gen(cmd_gen::GenArgs),
    /// Parse, normalize and store audit logs from files or stdin.
    Ingest(cmd_ingest::IngestArgs),
    /// Create the data directory (keys, identity, genesis record). Other commands do it on
    /// first use.
    Init,
    /// Check the ledger's integrity: every record, segment and signed checkpoint.
    Verify(cmd_ledger::VerifyArgs),
    /// Write an inclusion or consistency proof.
    #[command(subcommand)]
    Prove(cmd_ledger::ProveCmd),
    /// Check a proof file or export bundle offline, with only the public key.
    VerifyProof(cmd_ledger::VerifyProofArgs),
    /// Write records of a time range with their proofs and checkpoint, for an assessor.
    Export(cmd_ledger::ExportArgs),
    /// Print the latest signed checkpoint and the verifier key.
    Checkpoint,
    /// Retention: prune expired segments (with tombstones), legal holds.
    #[command(subcommand)]
    Retention(cmd_ledger::RetentionCmd),
    /// The archive tier on object storage: sync, status, restore, check.
    #[command(subcommand)]
    Archive(cmd_archive::ArchiveCmd),
    /// Run a KQL (or SQL) query over the ledger: the tables analysts already use in Log
    /// Analytics, offline. Every query is itself recorded in the ledger.
    Query(cmd_query::QueryArgs),
    /// The checkpoint signing key: rotate it, retire the previous one.
    #[command(subcommand)]
    Key(cmd_ledger::KeyCmd),
    /// Sigma rules: list them with their state and the features they use; test them on files.
    #[command(subcommand)]
    Rules(cmd_rules::RulesCmd),
    /// Alerts raised by detection: list, show, acknowledge, resolve (each change recorded in
    /// the ledger).
    #[command(subcommand)]
    Alerts(cmd_alerts::AlertsCmd),
    /// Alert delivery: send a test alert to a sink.
    #[command(subcommand)]
    Alerting(cmd_alerting::AlertingCmd),
    /// Run detection rules over stored events of a time range (new rules on old data).
    Detect(cmd_alerts::DetectArgs),
    /// Run the server: the audit webhook and ingest API, syslog, query and alert API, metrics.
    #[command(after_help = SERVE_EXAMPLES)]
    Serve(cmd_serve::ServeArgs),
    /// API tokens: create (prints the token once), list, revoke.
    #[command(subcommand)]
    Tokens(cmd_serve::TokensCmd),
    /// The server's configuration file.
    #[command(subcommand)]
    Config(cmd_serve::ConfigCmd),
    /// Check the logging configuration against PCI DSS Requirement 10: audit policy,
    /// kube-apiserver flags, AKS diagnostic settings, trailwarden's config.
    Check(cmd_check::CheckArgs),
    /// Log reviews (PCI DSS 10.4.1): generate, list, show, sign off.
    #[command(subcommand)]
    Review(cmd_review::ReviewCmd),
    /// Control-failure incidents (PCI DSS 10.7): start, end, duration, cause, remediation.
    #[command(subcommand)]
    Controls(cmd_controls::ControlsCmd),
    /// Evidence reports: `report pci` (PCI DSS 4.0.1 Requirement 10, 10.1.1–10.7.3).
    #[command(subcommand)]
    Report(cmd_report::ReportCmd),
}

fn main() -> ExitCode {
    // parsing the arguments starts no thread and allocates little: the allocators are tuned
    // for the command before it runs
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    tune_allocators(matches!(cli.command, Command::Serve(_)));
    let result = match &cli.command {
        Command::Gen(a) => cmd_gen::run(&cli, a),
        Command::Ingest(a) => cmd_ingest::run(&cli, a),
        Command::Init => cmd_ledger::init(&cli),
        Command::Verify(a) => cmd_ledger::verify(&cli, a),
        Command::Prove(c) => cmd_ledger::prove(&cli, c),
        Command::VerifyProof(a) => cmd_ledger::verify_proof(&cli, a),
        Command::Export(a) => cmd_ledger::export(&cli, a),
        Command::Checkpoint => cmd_ledger::checkpoint(&cli),
        Command::Retention(c) => cmd_ledger::retention(&cli, c),
        Command::Archive(c) => cmd_archive::run(&cli, c),
        Command::Key(c) => cmd_ledger::key(&cli, c),
        Command::Query(a) => cmd_query::run(&cli, a),
        Command::Rules(c) => cmd_rules::run(&cli, c),
        Command::Alerts(c) => cmd_alerts::run(&cli, c),
        Command::Detect(a) => cmd_alerts::detect(&cli, a),
        Command::Alerting(c) => cmd_alerting::run(&cli, c),
        Command::Serve(a) => cmd_serve::serve(&cli, a),
        Command::Tokens(c) => cmd_serve::tokens(&cli, c),
        Command::Config(c) => cmd_serve::config(&cli, c),
        Command::Check(a) => cmd_check::run(&cli, a),
        Command::Review(c) => cmd_review::run(&cli, c),
        Command::Controls(c) => cmd_controls::run(&cli, c),
        Command::Report(c) => cmd_report::run(&cli, c),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_CANNOT_RUN)
        }
    }
}
