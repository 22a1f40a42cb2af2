//! `trailwarden ingest`: parse, normalize and classify audit logs.

use crate::detector::{Detector, RuleArgs};
use crate::output::{OutputFormat, Table};
use crate::{store, Cli};
use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::time::Instant;
use trailwarden_model::{Classifier, ClassifierConfig, Format, Record, Timestamp};
use trailwarden_parse::{Ingestor, Options, Summary};

/// Arguments of `trailwarden ingest`.
#[derive(Args, Debug)]
#[command(after_help = "\
Formats (detected per record with `auto`):
  k8s-audit       audit.k8s.io Event, EventList, JSON array, JSONL, pretty-printed
  aks             AKS diagnostic records, {\"records\":[…]}, AzureDiagnostics / AKSAudit rows
  gke             GKE Kubernetes audit logs (Cloud Logging entries, Pub/Sub push bodies)
  azure-activity  Azure Activity Log export records, AzureActivity rows
  signin          Entra ID sign-in export records, SigninLogs rows
  entra-audit     Entra ID directory audit export records, AuditLogs rows
  app             application audit events (timestamp, user_id, action, resource, result, source_ip)
  auditd          Linux audit logs (raw, interpreted, ENRICHED; multi-record events)
  docker, cri     container logs (Docker json-file, CRI text with P/F reassembly)
  syslog          RFC 5424, RFC 3164, Log Analytics Syslog rows
EKS audit logs are k8s-audit events; their CloudWatch Logs envelopes (subscription bodies,
awslogs gzip+base64, filter-log-events output, S3 export lines) are opened in any format.

Examples:
  trailwarden ingest audit.log audit.log.1.gz
  trailwarden ingest --output json --emit-normalized events.jsonl insights-logs-kube-audit.json
  zcat audit.log.gz | trailwarden ingest --format k8s-audit -")]
pub struct IngestArgs {
    /// Input files (`-` for stdin; `.gz` and `.zst` are read transparently).
    #[arg(required = true)]
    pub files: Vec<String>,
    /// Input format, or `auto` to detect per record.
    #[arg(long, default_value = "auto", value_parser = parse_format)]
    pub format: FormatArg,
    /// Write every normalized record as JSON lines to this file (`-` for stdout).
    #[arg(long, value_name = "FILE")]
    pub emit_normalized: Option<String>,
    /// Records larger than this many bytes are quarantined.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_record_bytes: usize,
    /// Stamp every record with this receive time instead of the clock (replays, tests).
    #[arg(long, value_name = "RFC3339")]
    pub receive_time: Option<String>,
    /// Namespaces of the cardholder-data environment (glob; repeatable; replaces the defaults).
    #[arg(long = "cde-namespace", value_name = "GLOB")]
    pub cde_namespaces: Vec<String>,
    /// Exit with code 1 when any record was quarantined.
    #[arg(long)]
    pub strict: bool,
    /// Never show a progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Parse and normalize only; do not append to the ledger.
    #[arg(long)]
    pub no_store: bool,
    /// Store only; do not run detection rules.
    #[arg(long)]
    pub no_detect: bool,
    /// Detection rules.
    #[command(flatten)]
    pub rules: RuleArgs,
}

/// A `--format` value.
#[derive(Clone, Copy, Debug)]
pub struct FormatArg(pub Option<Format>);

fn parse_format(s: &str) -> Result<FormatArg, String> {
    if s == "auto" {
        return Ok(FormatArg(None));
    }
    Format::from_name(s)
        .map(|f| FormatArg(Some(f)))
        .ok_or_else(|| {
            let names: Vec<&str> = Format::ALL.iter().map(|f| f.as_str()).collect();
            format!(
                "unknown format {s:?}; expected auto or one of: {}",
                names.join(", ")
            )
        })
}

/// Commit when this many bytes are pending (bulk file ingest: few, large fsyncs).
const COMMIT_BYTES: usize = 4 << 20;
/// … or when the oldest pending record waited this long.
const COMMIT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

/// Parsed records go to the store thread in batches of at most this many records, …
const BATCH_RECORDS: usize = 512;
/// … or this many raw bytes, …
const BATCH_BYTES: usize = 1 << 20;
/// … or as old as this (a slow input still reaches the ledger promptly).
const BATCH_WAIT: std::time::Duration = std::time::Duration::from_millis(50);
/// Batches parsed ahead of the store thread (memory bound: this × `BATCH_BYTES` of raw input).
const CHANNEL_BATCHES: usize = 8;

/// Records of one input, on their way to the store thread.
#[derive(Default)]
struct Batch {
    input: usize,
    records: Vec<Record>,
    bytes: usize,
    started: Option<Instant>,
}

/// What the store thread did.
struct Stored {
    ranges: Vec<Range>,
    durable_at: f64,
    checkpoint: Option<trailwarden_ledger::note::SignedCheckpoint>,
    detection: Option<crate::detector::DetectStats>,
    detect_error: Option<String>,
    storage_error: Option<String>,
}

/// Committed batches handed to the detection thread ahead of it (memory bound: this ×
/// `COMMIT_BYTES` of records).
const DETECT_BATCHES: usize = 4;

/// The store thread: append each batch, commit (fdatasync) when `COMMIT_BYTES` are pending or
/// the oldest pending record waited `COMMIT_INTERVAL` (also when the input pauses), and hand
/// what just became durable to the detection thread, appending the `raised` records it sends
/// back (committed with the next commit); at the end commit, wait for detection to finish,
/// append and commit what it raised, close.
fn store_loop(
    mut l: trailwarden_ledger::Ledger,
    detector: Option<Detector>,
    rx: std::sync::mpsc::Receiver<Batch>,
    inputs: usize,
    started: Instant,
) -> Stored {
    let mut st = Stored {
        ranges: vec![Range::default(); inputs],
        durable_at: 0.0,
        checkpoint: None,
        detection: None,
        detect_error: None,
        storage_error: None,
    };
    std::thread::scope(|scope| {
        let (raised_tx, raised_rx) = std::sync::mpsc::channel::<Vec<serde_json::Value>>();
        let mut detect = match detector {
            Some(d) => {
                let (dtx, drx) = std::sync::mpsc::sync_channel(DETECT_BATCHES);
                match std::thread::Builder::new()
                    .name("ingest-detect".into())
                    .spawn_scoped(scope, move || detect_loop(d, drx, raised_tx))
                {
                    Ok(h) => Some((dtx, h)),
                    Err(e) => {
                        st.detect_error = Some(format!("cannot start the detection thread: {e}"));
                        None
                    }
                }
            }
            None => {
                // nothing will be raised: the channel must not wait for a sender
                drop(raised_tx);
                None
            }
        };
        let append_raised = |l: &mut trailwarden_ledger::Ledger,
                             block: bool|
         -> Result<(), trailwarden_ledger::LedgerError> {
            let mut take = |v: Vec<serde_json::Value>| {
                v.iter().try_for_each(|r| {
                    l.append_internal(trailwarden_model::RecordKind::Alert, r)
                        .map(|_| ())
                })
            };
            if block {
                // detection finished: everything it raised is in the channel
                for v in raised_rx.iter() {
                    take(v)?;
                }
            } else {
                while let Ok(v) = raised_rx.try_recv() {
                    take(v)?;
                }
            }
            Ok(())
        };
        let mut pending: Vec<(u64, Record)> = Vec::new();
        let mut oldest_pending: Option<Instant> = None;
        let mut run = |st: &mut Stored| -> Result<(), trailwarden_ledger::LedgerError> {
            loop {
                let wait = oldest_pending.map_or(COMMIT_INTERVAL, |t| {
                    COMMIT_INTERVAL.saturating_sub(t.elapsed())
                });
                let batch = match rx.recv_timeout(wait) {
                    Ok(b) => Some(b),
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                };
                if let Some(b) = batch {
                    let r = &mut st.ranges[b.input];
                    let detecting = detect.is_some();
                    for rec in b.records {
                        let idx = l.append(&rec)?;
                        r.first.get_or_insert(idx);
                        r.last = Some(idx);
                        if detecting {
                            pending.push((idx, rec));
                        }
                    }
                    oldest_pending.get_or_insert_with(|| b.started.unwrap_or_else(Instant::now));
                }
                let waited = oldest_pending.map(|t| t.elapsed());
                if l.pending_bytes() >= COMMIT_BYTES || waited.is_some_and(|w| w >= COMMIT_INTERVAL)
                {
                    append_raised(&mut l, false)?;
                    l.commit()?;
                    oldest_pending = None;
                    // detection runs on records once they are durable
                    hand_over(detect.as_ref().map(|d| &d.0), &mut pending, st);
                }
            }
            l.commit()?;
            st.durable_at = started.elapsed().as_secs_f64();
            hand_over(detect.as_ref().map(|d| &d.0), &mut pending, st);
            if let Some((dtx, h)) = detect.take() {
                drop(dtx);
                match h.join() {
                    Ok((stats, error)) => {
                        st.detection = Some(stats);
                        if let Some(e) = error {
                            st.detect_error = Some(e);
                        }
                    }
                    Err(_) => st.detect_error = Some("the detection thread panicked".into()),
                }
            }
            append_raised(&mut l, true)?;
            l.commit()?;
            Ok(())
        };
        match run(&mut st) {
            Ok(()) => match l.close("ingest finished") {
                Ok(cp) => st.checkpoint = Some(cp),
                Err(e) => st.storage_error = Some(e.to_string()),
            },
            Err(e) => st.storage_error = Some(e.to_string()),
        }
    });
    st
}

/// Send the records that just became durable to the detection thread (`dtx`), if detection
/// runs.
fn hand_over(
    dtx: Option<&std::sync::mpsc::SyncSender<Vec<(u64, Record)>>>,
    pending: &mut Vec<(u64, Record)>,
    st: &mut Stored,
) {
    let Some(dtx) = dtx else {
        pending.clear();
        return;
    };
    if !pending.is_empty() && dtx.send(std::mem::take(pending)).is_err() {
        st.detect_error
            .get_or_insert_with(|| "the detection thread stopped".to_string());
    }
}

/// The detection thread: check each durable batch, store what it raised in the alert store,
/// and send the `raised` ledger records to the store thread. A detection failure stops
/// detection for the rest of the run (reported at the end), never ingestion: later batches
/// are taken and dropped so the store thread never waits.
fn detect_loop(
    mut d: Detector,
    rx: std::sync::mpsc::Receiver<Vec<(u64, Record)>>,
    raised: std::sync::mpsc::Sender<Vec<serde_json::Value>>,
) -> (crate::detector::DetectStats, Option<String>) {
    let mut error = None;
    for batch in rx {
        if error.is_some() {
            continue;
        }
        let mut run = || -> Result<Vec<serde_json::Value>> {
            d.check_batch(&batch)?;
            Ok(d.raised_records()?)
        };
        match run() {
            Ok(v) if v.is_empty() => {}
            Ok(v) => {
                // the store thread keeps the receiver until this thread is joined
                let _ = raised.send(v);
            }
            Err(e) => error = Some(format!("{e:#}")),
        }
    }
    (d.stats.clone(), error)
}

/// Ledger indexes assigned to one input.
#[derive(Default, Clone, Copy)]
struct Range {
    first: Option<u64>,
    last: Option<u64>,
}

/// Run `trailwarden ingest`.
pub fn run(cli: &Cli, a: &IngestArgs) -> Result<u8> {
    let mut classifier_cfg = ClassifierConfig::default();
    if !a.cde_namespaces.is_empty() {
        classifier_cfg.cde_namespaces = a.cde_namespaces.clone();
    }
    let mut opts = Options {
        format: a.format.0,
        max_record_bytes: a.max_record_bytes,
        classifier: Classifier::new(classifier_cfg),
        ..Options::default()
    };
    let fixed_time = match &a.receive_time {
        Some(t) => Some(Timestamp::parse(t).with_context(|| format!("--receive-time {t:?}"))?),
        None => None,
    };
    let mut emit: Option<Box<dyn Write>> = match a.emit_normalized.as_deref() {
        None => None,
        Some("-") => Some(Box::new(BufWriter::new(io::stdout().lock()))),
        Some(p) => Some(Box::new(BufWriter::new(
            File::create(p).with_context(|| format!("cannot create {p}"))?,
        ))),
    };
    let mut ledger = if a.no_store {
        None
    } else {
        match store::open_writer(cli, "ingest") {
            Ok((l, rec)) => {
                if rec.truncated_bytes > 0 || !rec.clean_shutdown && !rec.created {
                    eprintln!(
                        "note: the previous run did not stop cleanly; recovered {} records ({} bytes of an unacknowledged write truncated)",
                        rec.size, rec.truncated_bytes
                    );
                }
                Some(l)
            }
            Err(e) => {
                eprintln!(
                    "error: cannot open the ledger in {}: {e}",
                    cli.data_dir.display()
                );
                return Ok(store::open_error_code(&e));
            }
        }
    };

    let mut ranges: Vec<Range> = vec![Range::default(); a.files.len()];
    let current = std::cell::Cell::new(0usize);
    let total: u64 = a
        .files
        .iter()
        .filter(|f| *f != "-")
        .filter_map(|f| std::fs::metadata(f).ok().map(|m| m.len()))
        .sum();
    let bar = if a.no_progress || !io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        b
    };

    let started = Instant::now();
    let mut failed_inputs: Vec<String> = Vec::new();
    let mut sink_failed = false;
    // Two threads: this one reads, parses and normalizes; the store thread appends to the
    // ledger, commits (fdatasync) and runs detection on what is durable, while this one parses
    // the next batch.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(CHANNEL_BATCHES);
    let (summary, stored) = std::thread::scope(|scope| -> Result<(Summary, Option<Stored>)> {
        let store_thread = match ledger.take() {
            Some(l) => {
                // detection runs on records once they are durable (after each commit)
                let detector = if !a.no_detect {
                    let mut d = crate::detector::open(cli, &a.rules, true)?;
                    if let Err(e) = d.rebuild(&cli.data_dir) {
                        eprintln!(
                            "warning: correlation state could not be rebuilt from the ledger: {e:#}"
                        );
                    }
                    // the parser pulls the request-object fields the rules read
                    opts.pull = Some(d.paths());
                    Some(d)
                } else {
                    None
                };
                let n = a.files.len();
                Some(
                    std::thread::Builder::new()
                        .name("ingest-store".into())
                        .spawn_scoped(scope, move || store_loop(l, detector, rx, n, started))
                        .context("cannot start the store thread")?,
                )
            }
            None => {
                drop(rx);
                None
            }
        };
        let storing = store_thread.is_some();
        let batch = std::cell::RefCell::new(Batch::default());
        let flush = |tx: &std::sync::mpsc::SyncSender<Batch>| -> Result<(), String> {
            let b = std::mem::take(&mut *batch.borrow_mut());
            if b.records.is_empty() {
                return Ok(());
            }
            tx.send(b)
                .map_err(|_| "the ledger stopped accepting records (see below)".to_string())
        };
        let summary = {
            let current_ref = &current;
            let mut sink = |rec: Record| -> Result<(), String> {
                if let Some(w) = emit.as_mut() {
                    let line = rec.to_json().to_string();
                    w.write_all(line.as_bytes())
                        .and_then(|_| w.write_all(b"\n"))
                        .map_err(|e| format!("cannot write normalized output: {e}"))?;
                }
                if storing {
                    let full = {
                        let mut b = batch.borrow_mut();
                        if b.records.is_empty() {
                            b.input = current_ref.get();
                            b.started = Some(Instant::now());
                        }
                        b.bytes += rec.raw.len();
                        b.records.push(rec);
                        b.records.len() >= BATCH_RECORDS
                            || b.bytes >= BATCH_BYTES
                            || b.started.is_some_and(|t| t.elapsed() >= BATCH_WAIT)
                    };
                    if full {
                        flush(&tx)?;
                    }
                }
                Ok(())
            };
            let mut ing = Ingestor::new(opts, &mut sink);
            if let Some(t) = fixed_time {
                ing = ing.with_clock(move || t);
            }
            let mut done_before: u64 = 0;
            for (i, f) in a.files.iter().enumerate() {
                current_ref.set(i);
                bar.set_message(f.clone());
                let base = done_before;
                let mut progress =
                    |consumed: u64, _size: Option<u64>| bar.set_position(base + consumed);
                let r = ing.ingest_path(f, &mut progress);
                // a batch never spans two inputs (ranges are per input)
                let flushed = if storing { flush(&tx) } else { Ok(()) };
                match r {
                    Err(e @ trailwarden_parse::ParseError::Sink { .. }) => {
                        bar.finish_and_clear();
                        eprintln!("error: {e}");
                        sink_failed = true;
                        break;
                    }
                    Err(e) => {
                        eprintln!("error: {e}");
                        failed_inputs.push(f.clone());
                    }
                    Ok(_) => {}
                }
                if let Err(e) = flushed {
                    eprintln!("error: {e}");
                    sink_failed = true;
                    break;
                }
                done_before += std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
            }
            ing.into_summary()
        };
        drop(tx);
        let stored = match store_thread {
            Some(h) => Some(
                h.join()
                    .map_err(|_| anyhow::anyhow!("the store thread panicked"))?,
            ),
            None => None,
        };
        Ok((summary, stored))
    })?;
    bar.finish_and_clear();
    if let Some(w) = emit.as_mut() {
        w.flush().context("flushing normalized output")?;
    }
    drop(emit);
    let (mut durable_at, mut checkpoint, mut detection, mut detect_error) =
        (started.elapsed().as_secs_f64(), None, None, None);
    if let Some(st) = stored {
        if let Some(e) = st.storage_error {
            eprintln!("error: {e}");
            return Ok(crate::EXIT_STORAGE);
        }
        ranges = st.ranges;
        durable_at = st.durable_at;
        checkpoint = st.checkpoint;
        detection = st.detection;
        detect_error = st.detect_error;
    }
    if sink_failed {
        return Ok(crate::EXIT_STORAGE);
    }
    let elapsed = started.elapsed().as_secs_f64();
    print_summary(
        cli.output,
        &summary,
        &ranges,
        durable_at,
        elapsed,
        &failed_inputs,
        checkpoint.as_ref(),
        detection.as_ref(),
    )?;
    if let Some(e) = &detect_error {
        // the events are stored; detection of the rest of this run did not happen
        eprintln!(
            "error: detection stopped: {e}; re-run `trailwarden detect --since` over this range"
        );
        return Ok(crate::EXIT_STORAGE);
    }
    if !failed_inputs.is_empty() {
        return Ok(crate::EXIT_CANNOT_RUN);
    }
    if a.strict && summary.quarantined > 0 {
        return Ok(crate::EXIT_PROBLEM);
    }
    Ok(crate::EXIT_OK)
}

#[allow(clippy::too_many_arguments)]
fn print_summary(
    fmt: OutputFormat,
    s: &Summary,
    ranges: &[Range],
    durable_seconds: f64,
    elapsed: f64,
    failed: &[String],
    checkpoint: Option<&trailwarden_ledger::note::SignedCheckpoint>,
    detection: Option<&crate::detector::DetectStats>,
) -> Result<()> {
    let mut out = io::stdout().lock();
    let rate = if elapsed > 0.0 {
        s.events as f64 / elapsed
    } else {
        0.0
    };
    let first = ranges.iter().find_map(|r| r.first);
    let last = ranges.iter().rev().find_map(|r| r.last);
    match fmt {
        OutputFormat::Json | OutputFormat::Sarif => {
            let mut v = serde_json::to_value(s)?;
            if let Some(m) = v.as_object_mut() {
                m.insert("first_index".into(), serde_json::json!(first));
                m.insert("last_index".into(), serde_json::json!(last));
                if let Some(inputs) = m.get_mut("inputs").and_then(|i| i.as_array_mut()) {
                    for (inp, r) in inputs.iter_mut().zip(ranges) {
                        if let Some(o) = inp.as_object_mut() {
                            o.insert("first_index".into(), serde_json::json!(r.first));
                            o.insert("last_index".into(), serde_json::json!(r.last));
                        }
                    }
                }
                m.insert("elapsed_seconds".into(), serde_json::json!(elapsed));
                m.insert("durable_seconds".into(), serde_json::json!(durable_seconds));
                m.insert("events_per_second".into(), serde_json::json!(rate.round()));
                m.insert("failed_inputs".into(), serde_json::json!(failed));
                if let Some(d) = detection {
                    m.insert("detection".into(), serde_json::to_value(d)?);
                }
                if let Some(cp) = checkpoint {
                    m.insert("tree_size".into(), serde_json::json!(cp.checkpoint.size));
                    m.insert("checkpoint".into(), serde_json::json!(cp.note));
                }
            }
            writeln!(out, "{v}")?;
        }
        OutputFormat::Csv => {
            let mut t = Table::new(&[
                "source",
                "compression",
                "bytes",
                "records",
                "quarantined",
                "first_index",
                "last_index",
            ]);
            for (i, r) in s.inputs.iter().zip(ranges) {
                t.row(vec![
                    i.source.clone(),
                    i.compression.clone(),
                    i.bytes.to_string(),
                    i.records.to_string(),
                    i.quarantined.to_string(),
                    r.first.map(|v| v.to_string()).unwrap_or_default(),
                    r.last.map(|v| v.to_string()).unwrap_or_default(),
                ]);
            }
            t.print_csv(&mut out)?;
        }
        OutputFormat::Table => {
            writeln!(
                out,
                "{} records from {} input(s): {} events, {} quarantined, {} truncated by the source ({:.2}s, {:.0} events/s)",
                s.records,
                s.inputs.len(),
                s.events,
                s.quarantined,
                s.truncated_events,
                elapsed,
                rate
            )?;
            if let (Some(f), Some(l), Some(cp)) = (first, last, checkpoint) {
                writeln!(
                    out,
                    "stored as ledger records {f}..={l}; tree size {} signed",
                    cp.checkpoint.size
                )?;
            }
            if let Some(d) = detection {
                writeln!(
                    out,
                    "{} rules checked {} events: {} detections, {} new alerts, {} merged into open alerts (`trailwarden alerts list`)",
                    d.rules, d.events_checked, d.detections, d.alerts_new, d.alerts_merged
                )?;
            }
            if !s.by_format.is_empty() {
                writeln!(out)?;
                let mut t = Table::new(&["format", "events"]);
                for (f, n) in &s.by_format {
                    t.row(vec![f.clone(), n.to_string()]);
                }
                t.print_text(&mut out)?;
            }
            if !s.errors.is_empty() {
                writeln!(out, "\nquarantined records:")?;
                for p in s.errors.iter().take(20) {
                    writeln!(out, "  {p}")?;
                }
                let more = s.errors.len().saturating_sub(20) as u64 + s.errors_omitted;
                if more > 0 {
                    writeln!(
                        out,
                        "  … and {more} more (use --output json to see up to 1000)"
                    )?;
                }
            }
            for f in failed {
                writeln!(out, "could not read {f}")?;
            }
        }
    }
    Ok(())
}
