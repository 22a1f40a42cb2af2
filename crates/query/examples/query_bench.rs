//! Times the benchmark queries in-process on a ledger (see scripts/bench-query): each query is
//! planned and run `RUNS` times; prints `name seconds rows sum-of-counts` with the median.
//!
//!     cargo run --release -p trailwarden-query --example query_bench -- DATA_DIR HOUR_START [RUNS]

use std::time::Instant;
use trailwarden_query::{Engine, QueryOptions};

/// The allocator of the `trailwarden` binary (crates/cli/src/main.rs), so that the figures are
/// the ones users get.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dir = args
        .get(1)
        .ok_or("usage: query_bench DATA_DIR HOUR_START [RUNS]")?;
    let hour = args.get(2).ok_or("HOUR_START (RFC 3339) is required")?;
    let runs: usize = args.get(3).map_or(Ok(5), |r| r.parse())?;
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let opts = QueryOptions {
        threads: Some(threads),
        memory_limit: Some(8 << 30),
        ..QueryOptions::default()
    };
    // TW_ARCHIVE_URL: read the sealed segments from the archive instead (the WAL tail stays
    // local, as `trailwarden query --archive` reads it)
    let engine = match std::env::var("TW_ARCHIVE_URL") {
        Ok(url) => {
            let a =
                trailwarden_archive::Archive::open(&trailwarden_archive::ArchiveConfig::at(url))?;
            let remote = trailwarden_query::RemoteSegments {
                segments: trailwarden_archive::block_on(a.sealed_segments())??,
                store_url: a.store_url(),
                store: a.store(),
            };
            Engine::open_with_archive(Some(std::path::Path::new(dir)), remote, opts)?
        }
        Err(_) => Engine::open(std::path::Path::new(dir), opts)?,
    };
    let only: Option<String> = std::env::var("QUERIES").ok();
    let queries = [
        ("q1", "events | summarize count() by user | top 10 by count_".to_string()),
        (
            "q2",
            format!("events | where TimeGenerated between (datetime({hour}) .. 1h) and code == 403 | summarize count() by user, trusted_ip"),
        ),
        (
            "q3",
            "events | where parse_json(raw).verb == \"create\" and parse_json(raw).objectRef.resource == \"clusterrolebindings\" and parse_json(raw).requestObject.roleRef.name == \"cluster-admin\" | count".to_string(),
        ),
    ];
    for (name, q) in queries {
        if only
            .as_deref()
            .is_some_and(|o| !o.split(',').any(|x| x == name))
        {
            continue;
        }
        let mut times = Vec::new();
        let mut rows = 0;
        let mut total = 0i64;
        for _ in 0..runs {
            let t = Instant::now();
            let out = trailwarden_query::engine::block_on(threads, engine.kql(&q))??;
            times.push(t.elapsed().as_secs_f64());
            rows = out.iter().map(|o| o.rows()).sum::<usize>();
            // the sum of the last (count) column: the same answer, not just as many rows
            total = out
                .iter()
                .flat_map(|o| o.batches.iter())
                .map(|b| {
                    let c = b.column(b.num_columns() - 1);
                    let c = arrow_cast::cast(c, &arrow_schema::DataType::Int64)?;
                    let c = c
                        .as_any()
                        .downcast_ref::<arrow_array::Int64Array>()
                        .map_or(0, |a| a.iter().flatten().sum::<i64>());
                    Ok::<_, arrow_schema::ArrowError>(c)
                })
                .sum::<Result<i64, _>>()?;
        }
        times.sort_by(f64::total_cmp);
        println!("{name} {:.4} {rows} {total}", times[times.len() / 2]);
    }
    Ok(())
}
