//! Detection throughput: rule sets over pre-parsed events on one thread (run pinned to one core
//! by `scripts/bench-detect`). Prints one JSON line per configuration: the parse of the file
//! for its rules (the parser pulling the request-object fields they read, as ingest has it)
//! and the median of three detection runs over the parsed events.
//!
//! `TW_BENCH_FILE`: the events (JSONL, any format `ingest` reads). `TW_BENCH_SIGMA`: SigmaHQ's
//! Kubernetes rules directory (for the side-by-side with pySigma).

#![allow(clippy::unwrap_used)] // benchmark harness: a failed unwrap is a failed run

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use trailwarden_detect::extract::Paths;
use trailwarden_detect::{load_dir, Engine, Rule};
use trailwarden_model::{Body, Event, Record};
use trailwarden_parse::ingest::{Ingestor, Options};

/// The events of `file`, the parser pulling `pull`'s request-object fields (as ingest does for
/// the rules it runs).
fn events(file: &Path, pull: Option<Arc<Paths>>) -> Vec<(Event, Vec<u8>, i64)> {
    let mut out = Vec::new();
    let mut sink = |r: Record| -> Result<(), String> {
        if let Body::Event(ev) = r.body {
            let t = ev.time.unwrap_or(r.received).0;
            out.push((*ev, r.raw, t));
        }
        Ok(())
    };
    let opts = Options {
        pull,
        ..Options::default()
    };
    let mut ing = Ingestor::new(opts, &mut sink);
    ing.ingest_path(file.to_str().unwrap(), &mut |_, _| {})
        .unwrap();
    drop(ing);
    out
}

/// Parse `file` for `rules` (timed: what ingest spends before detection) and run them over it.
fn measure(name: &str, rules: &[Rule], file: &Path) {
    let t = Instant::now();
    let evs = &events(
        file,
        Some(Arc::clone(Engine::new(rules.to_vec(), 1).paths())),
    );
    let parse = t.elapsed().as_secs_f64();
    let mut runs = Vec::new();
    let mut detections = 0;
    for _ in 0..3 {
        let mut engine = Engine::new(rules.to_vec(), 100_000);
        let mut out = Vec::new();
        let start = Instant::now();
        for (i, (ev, raw, t)) in evs.iter().enumerate() {
            // as the ingest path does over a batch
            if let Some((next, raw, _)) = evs.get(i + 2) {
                engine.prefetch(next, raw);
            }
            engine.check(i as u64, *t, ev, raw, &mut out);
            detections += out.len();
            out.clear();
        }
        runs.push(start.elapsed().as_secs_f64());
    }
    runs.sort_by(f64::total_cmp);
    let median = runs[1];
    let enabled = rules.iter().filter(|r| r.disabled.is_none()).count();
    let correlations = rules.iter().filter(|r| r.correlation.is_some()).count();
    println!(
        "{}",
        serde_json::json!({
            "config": name, "rules": enabled, "correlation_rules": correlations,
            "events": evs.len(), "seconds": median, "parse_seconds": parse,
            "events_per_second": (evs.len() as f64 / median).round(),
            "detections_per_run": detections / 3,
        })
    );
}

fn main() {
    let file = PathBuf::from(std::env::var("TW_BENCH_FILE").expect("TW_BENCH_FILE"));
    let pack_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules");
    let (pack, errors) = load_dir(&pack_dir);
    assert!(errors.is_empty(), "{errors:?}");
    // stateless: the single-event rules (correlations and the bases that only feed them out)
    let stateless: Vec<Rule> = pack
        .iter()
        .filter(|r| r.correlation.is_none() && !(r.name.is_some() && r.level == "informational"))
        .cloned()
        .collect();
    // SigmaHQ first: its parse is the process's first (fresh memory, as pySigma's load has
    // it), which the JSON-to-matches comparison adds to its detection time
    if let Ok(dir) = std::env::var("TW_BENCH_SIGMA") {
        let (sigma, _) = load_dir(Path::new(&dir));
        measure("sigmahq-kubernetes", &sigma, &file);
    }
    measure("pack-stateless", &stateless, &file);
    measure("pack-with-correlations", &pack, &file);
}
