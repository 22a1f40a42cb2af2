//! `trailwarden gen`: deterministic audit traffic.

use crate::output::{OutputFormat, Table};
use crate::Cli;
use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use trailwarden_gen::{generate, Options, OutputFormat as Framing, Profile};
use trailwarden_model::{parse_duration, Timestamp};

/// Cluster shape.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ProfileArg {
    /// Self-managed kubeadm cluster: plain audit.k8s.io events.
    Kubeadm,
    /// AKS: diagnostic records with the event in `properties.log`.
    Aks,
}

/// Output framing.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum FramingArg {
    /// One event / record per line.
    Jsonl,
    /// One batch per line (`EventList` for kubeadm, `{"records":[…]}` for AKS).
    Eventlist,
}

/// Arguments of `trailwarden gen`.
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  trailwarden gen --events 1000000 --seed 42 -o audit.jsonl
  trailwarden gen --events 5000 --seed 1 --profile aks --format eventlist -o aks.json
  trailwarden gen --events 100000 --seed 3 --attack-rate 0.01 --labels attacks.jsonl -o mixed.jsonl.zst")]
pub struct GenArgs {
    /// Number of audit events.
    #[arg(long, default_value_t = 1000)]
    pub events: u64,
    /// Seed: the same seed and options always give the same bytes.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Cluster shape.
    #[arg(long, value_enum, default_value = "kubeadm")]
    pub profile: ProfileArg,
    /// Output framing.
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: FramingArg,
    /// Write here instead of stdout (`.gz` / `.zst` compress).
    #[arg(short = 'o', long)]
    pub out: Option<String>,
    /// Time of the first event (RFC 3339).
    #[arg(long, default_value = "2026-01-05T09:00:00Z")]
    pub start: String,
    /// Time span the events cover (e.g. 1h, 24h, 7d).
    #[arg(long, default_value = "1h")]
    pub span: String,
    /// Probability that an event slot starts an attack scenario.
    #[arg(long, default_value_t = 0.001)]
    pub attack_rate: f64,
    /// Events per batch with `--format eventlist`.
    #[arg(long, default_value_t = 400)]
    pub batch: usize,
    /// Write attack labels (`{"audit_id":…,"scenario":…}` per line) to this file.
    #[arg(long)]
    pub labels: Option<String>,
}

fn open_out(path: &str) -> Result<Box<dyn Write>> {
    if path == "-" {
        return Ok(Box::new(BufWriter::with_capacity(
            1 << 20,
            io::stdout().lock(),
        )));
    }
    let f = File::create(path).with_context(|| format!("cannot create {path}"))?;
    let w = BufWriter::with_capacity(1 << 20, f);
    Ok(if path.ends_with(".gz") {
        Box::new(flate2_writer(w))
    } else if path.ends_with(".zst") {
        Box::new(zstd_writer(w)?)
    } else {
        Box::new(w)
    })
}

fn flate2_writer<W: Write>(w: W) -> impl Write {
    trailwarden_parse::input::gzip_writer(w)
}

fn zstd_writer<W: Write + 'static>(w: W) -> Result<impl Write> {
    trailwarden_parse::input::zstd_writer(w).context("cannot start zstd compression")
}

/// Run `trailwarden gen`.
pub fn run(cli: &Cli, a: &GenArgs) -> Result<u8> {
    if !(0.0..=1.0).contains(&a.attack_rate) {
        anyhow::bail!(
            "--attack-rate must be between 0 and 1, got {}",
            a.attack_rate
        );
    }
    let start = Timestamp::parse(&a.start).with_context(|| format!("--start {:?}", a.start))?;
    let span = parse_duration(&a.span).with_context(|| format!("--span {:?}", a.span))?;
    let opts = Options {
        events: a.events,
        seed: a.seed,
        profile: match a.profile {
            ProfileArg::Kubeadm => Profile::Kubeadm,
            ProfileArg::Aks => Profile::Aks,
        },
        format: match a.format {
            FramingArg::Jsonl => Framing::Jsonl,
            FramingArg::Eventlist => Framing::EventList,
        },
        start,
        span_ns: span,
        attack_rate: a.attack_rate,
        batch: a.batch,
    };
    let mut out = open_out(a.out.as_deref().unwrap_or("-"))?;
    let mut labels = match &a.labels {
        Some(p) => Some(BufWriter::new(
            File::create(p).with_context(|| format!("cannot create {p}"))?,
        )),
        None => None,
    };
    let stats = generate(
        &opts,
        &mut out,
        labels.as_mut().map(|l| l as &mut dyn Write),
    )
    .context("writing generated events")?;
    out.flush().context("flushing output")?;
    drop(out);
    if let Some(mut l) = labels {
        l.flush()?;
    }
    // Statistics go to stderr when the events go to stdout.
    let to_stdout = a.out.is_some();
    let mut sink: Box<dyn Write> = if to_stdout {
        Box::new(io::stdout())
    } else {
        Box::new(io::stderr())
    };
    match cli.output {
        OutputFormat::Json => {
            writeln!(
                sink,
                "{}",
                serde_json::json!({
                    "events": stats.events,
                    "attack_events": stats.attack_events,
                    "scenarios": stats.scenarios,
                    "bytes": stats.bytes,
                })
            )?;
        }
        fmt => {
            let mut t = Table::new(&["events", "attack_events", "scenarios", "bytes"]);
            t.row(vec![
                stats.events.to_string(),
                stats.attack_events.to_string(),
                stats.scenarios.to_string(),
                stats.bytes.to_string(),
            ]);
            if fmt == OutputFormat::Csv {
                t.print_csv(&mut sink)?;
            } else {
                t.print_text(&mut sink)?;
            }
        }
    }
    Ok(crate::EXIT_OK)
}
