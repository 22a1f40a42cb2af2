//! Opening the ledger from the CLI, and recording reads of audit data (PCI DSS 10.2.1.3).

use crate::Cli;
use anyhow::{Context, Result};
use std::io::Write;
use std::sync::Arc;
use trailwarden_ledger::anchor::DirAnchor;
use trailwarden_ledger::record::Access;
use trailwarden_ledger::{Ledger, LedgerError, Options, Recovery};
use trailwarden_model::{RecordKind, Timestamp};

/// Default retention of anchored checkpoints (400 days).
pub const ANCHOR_RETENTION_NS: i64 = 400 * 86_400 * 1_000_000_000;

/// Writer options for a CLI command.
pub fn writer_options(cli: &Cli, reason: &str) -> Result<Options> {
    let mut opts = Options {
        reason: reason.to_string(),
        origin: cli.origin.clone(),
        extractor: Some(Arc::new(|f, raw: &[u8], t| {
            trailwarden_parse::reparse(f, raw, t)
        })),
        ..Options::default()
    };
    if let Some(b) = cli.segment_bytes {
        if b < 4096 {
            anyhow::bail!("--segment-bytes {b} is below the 4096-byte minimum");
        }
        opts.seal_bytes = b;
    }
    // What `ConfigChange` records compare between runs: the ledger-wide settings every
    // command shares (not per-command flags).
    opts.config = serde_json::json!({
        "segment_bytes": opts.seal_bytes,
        "seal_age_seconds": opts.seal_age_ns / 1_000_000_000,
        "checkpoint_interval_ms": opts.checkpoint_interval_ns / 1_000_000,
        "heartbeat_interval_seconds": opts.heartbeat_interval_ns / 1_000_000_000,
        "zstd_level": opts.zstd_level,
        "anchor_dir": cli.anchor_dir,
    });
    if let Some(a) = &cli.anchor_dir {
        opts.anchor = Some(Box::new(
            DirAnchor::new(a, ANCHOR_RETENTION_NS)
                .with_context(|| format!("anchor directory {}", a.display()))?,
        ));
    }
    Ok(opts)
}

/// Open (creating on first use) the ledger in the data directory.
pub fn open_writer(cli: &Cli, reason: &str) -> Result<(Ledger, Recovery), LedgerError> {
    let opts = writer_options(cli, reason).map_err(|e| LedgerError::Invalid(format!("{e:#}")))?;
    Ledger::open(&cli.data_dir, opts)
}

/// Who is running this command.
pub fn subject() -> String {
    let os = os_user();
    let claimed = std::env::var("TRAILWARDEN_USER").ok();
    let base = match &os {
        Some((uid, Some(name))) => format!("{name} (uid {uid})"),
        Some((uid, None)) => format!("uid {uid}"),
        None => std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| "unknown".into()),
    };
    match claimed {
        // a name the caller gives (a wrapper script acting for a person) is recorded beside the
        // account the OS says ran the command, never instead of it
        Some(c) if !c.is_empty() => format!("{c} via {base}"),
        _ => base,
    }
}

/// The real uid of this process and its account name, from /proc and /etc/passwd (the
/// environment's USER can say anything).
fn os_user() -> Option<(u32, Option<String>)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid: u32 = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let name = std::fs::read_to_string("/etc/passwd").ok().and_then(|p| {
        p.lines().find_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let id: u32 = f.nth(1)?.parse().ok()?;
            (id == uid).then(|| name.to_string())
        })
    });
    Some((uid, name))
}

/// Record a read of audit data: in the ledger when it is free, otherwise in the access spool
/// that the running writer drains. Returns a warning when neither was possible.
pub fn record_access(
    cli: &Cli,
    action: &str,
    target: &str,
    records: u64,
    outcome: &str,
) -> Option<String> {
    record_access_in(cli, &cli.data_dir, action, target, records, outcome)
}

/// [`record_access`] in the ledger of `dir` (another partition's, read by the same command).
pub fn record_access_in(
    cli: &Cli,
    dir: &std::path::Path,
    action: &str,
    target: &str,
    records: u64,
    outcome: &str,
) -> Option<String> {
    let access = Access {
        subject: subject(),
        interface: "cli".into(),
        action: action.into(),
        target: target.into(),
        records,
        outcome: outcome.into(),
        origin: "local".into(),
    };
    if !dir.join("identity.json").exists() {
        return None;
    }
    let opened = writer_options(cli, &format!("record {action}"))
        .map_err(|e| LedgerError::Invalid(format!("{e:#}")))
        .and_then(|opts| Ledger::open(dir, opts));
    match opened {
        Ok((mut l, _)) => {
            let r = l
                .append_internal(RecordKind::Access, &access)
                .and_then(|_| l.commit())
                .and_then(|_| l.close("access recorded").map(|_| ()));
            r.err()
                .map(|e| format!("could not record this {action} in the ledger: {e}"))
        }
        Err(LedgerError::Locked(_)) => spool(dir, &access)
            .err()
            .map(|e| format!("could not record this {action}: {e:#}")),
        Err(e) => Some(format!("could not record this {action} in the ledger: {e}")),
    }
}

fn spool(dir: &std::path::Path, a: &Access) -> Result<()> {
    let p = dir.join("access.spool");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p)
        .with_context(|| format!("opening {}", p.display()))?;
    f.lock()
        .with_context(|| format!("locking {}", p.display()))?;
    let mut line = serde_json::to_vec(&serde_json::json!({ "at": Timestamp::now(), "access": a }))?;
    line.push(b'\n');
    f.write_all(&line)?;
    f.sync_data()?;
    Ok(())
}

/// The exit code for a ledger error at open.
pub fn open_error_code(e: &LedgerError) -> u8 {
    match e {
        LedgerError::Io { .. } | LedgerError::Stopped(_) => crate::EXIT_STORAGE,
        _ => crate::EXIT_CANNOT_RUN,
    }
}

/// Append an internal record to a ledger this command opened, commit it, close the ledger
/// (`closing` is the stop record's reason); the record's index. A failed close is a warning:
/// the record is durable by then.
pub fn record_and_close(
    mut l: Ledger,
    kind: RecordKind,
    record: &serde_json::Value,
    what: &str,
    closing: &str,
) -> Result<u64> {
    let i = l
        .append_internal(kind, record)
        .and_then(|i| l.commit().map(|_| i))
        .with_context(|| format!("recording {what} in the ledger"))?;
    if let Err(e) = l.close(closing) {
        eprintln!("warning: {e}");
    }
    Ok(i)
}
