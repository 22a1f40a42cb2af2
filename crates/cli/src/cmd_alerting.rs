//! `trailwarden alerting test --sink NAME` and `trailwarden alerts deliveries`: alert delivery
//! from the command line.

use crate::output::{OutputFormat, Table};
use crate::{store, Cli};
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use trailwarden_alert::{AlertStore, Delivery, DeliveryFilter, DeliveryState, Finish};
use trailwarden_model::Timestamp;
use trailwarden_notify::{Outcome, Sender};

/// `trailwarden alerting`.
#[derive(Subcommand, Debug)]
pub enum AlertingCmd {
    /// Send a test alert to one sink, end to end, through the outbox (the delivery is
    /// recorded like any other; a running server may be the one that sends it).
    #[command(after_help = "Examples:\n  \
        trailwarden alerting test --sink soc-hook --config /etc/trailwarden/trailwarden.toml\n  \
        trailwarden alerting test --sink alertmanager -O json")]
    Test {
        /// The sink's name (`[[alerting.sink]]` name).
        #[arg(long)]
        sink: String,
        /// Configuration file.
        #[arg(long, short = 'c', env = "TRAILWARDEN_CONFIG")]
        config: Option<PathBuf>,
    },
}

/// `alerts deliveries` arguments.
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    trailwarden alerts deliveries --state dead\n  \
    trailwarden alerts deliveries --sink soc-hook --output json\n  \
    trailwarden alerts deliveries --retry 17")]
pub struct DeliveriesArgs {
    /// Only this state: pending, delivered, dead, silenced.
    #[arg(long, value_parser = parse_state)]
    pub state: Option<DeliveryState>,
    /// Only this sink.
    #[arg(long)]
    pub sink: Option<String>,
    /// Only deliveries of this alert.
    #[arg(long)]
    pub alert: Option<i64>,
    /// At most this many (newest first).
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// Queue a dead (or delivered) delivery again instead of listing.
    #[arg(long, value_name = "ID")]
    pub retry: Option<i64>,
}

fn parse_state(s: &str) -> Result<DeliveryState, String> {
    DeliveryState::parse(s)
        .ok_or_else(|| format!("{s:?} is not a state (pending, delivered, dead, silenced)"))
}

fn time(ns: i64) -> String {
    Timestamp(ns).to_rfc3339()
}

fn open(cli: &Cli) -> Result<AlertStore> {
    std::fs::create_dir_all(&cli.data_dir)
        .with_context(|| format!("creating {}", cli.data_dir.display()))?;
    Ok(AlertStore::open(cli.data_dir.join("alerts.db"))?)
}

/// `alerts deliveries`.
pub fn deliveries(cli: &Cli, a: &DeliveriesArgs) -> Result<u8> {
    let mut st = open(cli)?;
    if let Some(id) = a.retry {
        return match st.retry_delivery(id, Timestamp::now().0) {
            Ok(d) => {
                if let Some(w) = store::record_access(
                    cli,
                    "alerts deliveries --retry",
                    &format!("delivery {id}"),
                    1,
                    "success",
                ) {
                    eprintln!("warning: {w}");
                }
                eprintln!(
                    "delivery {id} to {} queued again (a running server sends it within a second)",
                    d.sink
                );
                Ok(crate::EXIT_OK)
            }
            Err(e) => {
                eprintln!("error: {e}");
                Ok(crate::EXIT_PROBLEM)
            }
        };
    }
    let list = st.deliveries(&DeliveryFilter {
        state: a.state,
        sink: a.sink.clone(),
        alert_id: a.alert,
        limit: Some(a.limit),
    })?;
    if let Some(w) = store::record_access(
        cli,
        "alerts deliveries",
        "deliveries",
        list.len() as u64,
        "success",
    ) {
        eprintln!("warning: {w}");
    }
    match cli.output {
        OutputFormat::Json => {
            let sinks = st.sink_status()?;
            println!(
                "{}",
                serde_json::json!({"sinks": sinks, "deliveries": list})
            );
        }
        format => {
            let mut t = Table::new(&[
                "id",
                "alert",
                "version",
                "event",
                "sink",
                "state",
                "attempts",
                "queued",
                "delivered",
                "last_error",
            ]);
            for d in &list {
                t.row(vec![
                    d.id.to_string(),
                    d.alert_id.to_string(),
                    d.version.to_string(),
                    d.event.clone(),
                    d.sink.clone(),
                    d.state.as_str().to_string(),
                    d.attempts.to_string(),
                    time(d.created_at),
                    d.delivered_at.map(time).unwrap_or_default(),
                    d.last_error.clone().unwrap_or_default(),
                ]);
            }
            if format == OutputFormat::Csv {
                t.print_csv(&mut io::stdout())?;
            } else {
                t.print_text(&mut io::stdout())?;
                for s in st.sink_status()? {
                    eprintln!(
                        "{}: {} pending, {} delivered, {} dead, {} silenced{}",
                        s.sink,
                        s.pending,
                        s.delivered,
                        s.dead,
                        s.silenced,
                        s.last_error
                            .as_deref()
                            .map(|e| format!("; last error: {e}"))
                            .unwrap_or_default()
                    );
                }
            }
        }
    }
    Ok(crate::EXIT_OK)
}

/// `alerting`.
pub fn run(cli: &Cli, c: &AlertingCmd) -> Result<u8> {
    match c {
        AlertingCmd::Test { sink, config } => test(cli, sink, config.as_deref()),
    }
}

fn test(cli: &Cli, sink: &str, config: Option<&std::path::Path>) -> Result<u8> {
    let (cfg, _) = match trailwarden_server::Config::load(config, &crate::cmd_serve::env_vars()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(crate::EXIT_USAGE);
        }
    };
    let Some(sc) = cfg.alerting.sinks.iter().find(|s| s.name == sink) else {
        eprintln!(
            "error: no sink named {sink:?} in the configuration (sinks: {})",
            cfg.alerting
                .sinks
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Ok(crate::EXIT_USAGE);
    };
    let sender = match Sender::new(
        sc,
        cfg.alerting.external_url.clone(),
        cfg.alerting.cluster.clone(),
    ) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: alerting sink {sink:?}: {e}");
            return Ok(crate::EXIT_USAGE);
        }
    };
    let data_dir = cfg.data_dir.clone().unwrap_or_else(|| cli.data_dir.clone());
    std::fs::create_dir_all(&data_dir)?;
    let mut st = AlertStore::open(data_dir.join("alerts.db"))?;
    let id = st.enqueue_test(sink, Timestamp::now().0)?;
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // send it ourselves unless a running server took it first
    let claimed = st.claim(sink, Timestamp::now().0, 1, 60_000_000_000)?;
    let mine: Vec<&Delivery> = claimed.iter().filter(|d| d.id == id).collect();
    let d = if let Some(d) = mine.first() {
        let outcome = rt.block_on(sender.send_all(std::slice::from_ref(&d.message)));
        let now = Timestamp::now().0;
        let f = match outcome.into_iter().next() {
            Some(Outcome::Delivered) | None => Finish::Delivered,
            Some(Outcome::Retry { error, .. }) | Some(Outcome::Refused { error }) => {
                Finish::Dead { error }
            }
        };
        st.finish(sink, now, &[(id, f)])?;
        // anything else claimed by accident goes back to the queue untouched
        st.release_leases()?;
        st.delivery(id)?
    } else {
        st.release_leases()?;
        loop {
            let d = st.delivery(id)?;
            if d.state != DeliveryState::Pending || started.elapsed() > Duration::from_secs(60) {
                break d;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let ok = d.state == DeliveryState::Delivered;
    if let Some(w) = store::record_access(
        cli,
        "alerting test",
        &format!("sink {sink}"),
        1,
        if ok { "success" } else { "failure" },
    ) {
        eprintln!("warning: {w}");
    }
    match cli.output {
        OutputFormat::Json => println!(
            "{}",
            serde_json::json!({"sink": sink, "delivery": d.id, "key": d.message.key, "state": d.state,
                "error": d.last_error, "seconds": started.elapsed().as_secs_f64()})
        ),
        _ => {
            if ok {
                println!(
                    "test alert {} delivered to {sink} in {:.2}s",
                    d.message.key,
                    started.elapsed().as_secs_f64()
                );
            } else {
                println!(
                    "test alert {} NOT delivered to {sink}: {}",
                    d.message.key,
                    d.last_error.as_deref().unwrap_or(d.state.as_str())
                );
            }
        }
    }
    Ok(if ok {
        crate::EXIT_OK
    } else {
        crate::EXIT_PROBLEM
    })
}
