//! Load generator for crash testing: appends deterministic records to a ledger as fast as it
//! can, in group commits, and prints `acked FIRST LAST` to stdout after each commit returns (the
//! records are durable at that moment). A harness kills it with SIGKILL at random points and
//! checks that every acknowledged record survives recovery.
//!
//! Usage: trailwarden-ledger-load DATA_DIR SEED [SEAL_BYTES]

use std::io::Write;
use trailwarden_ledger::{Ledger, Options};
use trailwarden_model::{Body, Event, Format, Record, Timestamp};

/// The raw bytes of record `index` (what the harness expects to find).
fn payload(index: u64, seed: u64) -> Vec<u8> {
    let pad = ((index.wrapping_mul(2654435761) ^ seed) % 900) as usize;
    format!(
        "{{\"kind\":\"Event\",\"auditID\":\"load-{index}\",\"verb\":\"get\",\"pad\":\"{}\"}}",
        "x".repeat(pad)
    )
    .into_bytes()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(seed)) = (args.next(), args.next().and_then(|s| s.parse::<u64>().ok()))
    else {
        eprintln!("usage: trailwarden-ledger-load DATA_DIR SEED [SEAL_BYTES]");
        std::process::exit(2);
    };
    let seal_bytes = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256 << 10);
    let opts = Options {
        seal_bytes,
        origin: Some("crash.test/ledger".into()),
        reason: "load".into(),
        ..Options::default()
    };
    let (mut l, _) = match Ledger::open(&dir, opts) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("open: {e}");
            std::process::exit(76);
        }
    };
    let out = std::io::stdout();
    let mut rng = seed | 1;
    loop {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let batch = 1 + rng % 64;
        let first = l.next_index();
        for _ in 0..batch {
            let i = l.next_index();
            let mut ev = Event::new(Format::K8sAudit);
            ev.action = Some("get".into());
            let rec = Record {
                source: "load".into(),
                received: Timestamp(1_700_000_000_000_000_000 + i as i64),
                raw: payload(i, seed),
                location: None,
                body: Body::Event(Box::new(ev)),
            };
            if let Err(e) = l.append(&rec) {
                eprintln!("append: {e}");
                std::process::exit(75);
            }
        }
        match l.commit() {
            Ok(size) => {
                let mut o = out.lock();
                let _ = writeln!(o, "acked {first} {}", size - 1);
                let _ = o.flush();
            }
            Err(e) => {
                eprintln!("commit: {e}");
                std::process::exit(75);
            }
        }
    }
}
