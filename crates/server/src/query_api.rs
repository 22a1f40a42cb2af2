//! `POST /v1/query`: KQL or SQL over a ledger snapshot, streamed as JSON lines. Each query runs on
//! its own thread and runtime (DataFusion's CPU work never starves ingest), under the row, time
//! and memory limits, and is recorded in the ledger before its first row leaves.

use futures_util::StreamExt;
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use trailwarden_ledger::record::Access;
use trailwarden_model::Timestamp;
use trailwarden_pipeline::Pipeline;
use trailwarden_query::{Engine, KType, QueryOptions};

/// The request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    /// A KQL query.
    pub kql: Option<String>,
    /// A SQL query (DataFusion dialect).
    pub sql: Option<String>,
    /// Only rows at or after this time (RFC 3339).
    pub since: Option<String>,
    /// Only rows before this time.
    pub until: Option<String>,
    /// At most this many rows (capped by `query.max_rows`).
    pub limit: Option<u64>,
    /// Stop after this many seconds (capped by `query.timeout_seconds`).
    pub timeout_seconds: Option<u64>,
    /// Read sealed segments from the archive (`[archive] url`) instead of the local disk, plus
    /// the local segments not archived yet and the WAL tail: records past the hot period.
    #[serde(default)]
    pub archive: bool,
}

/// Limits from the configuration.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Row cap.
    pub max_rows: u64,
    /// Time cap.
    pub timeout: Duration,
    /// Memory cap.
    pub memory: usize,
    /// Threads.
    pub threads: usize,
}

/// What the caller learns before the stream starts.
pub type Planned = Result<(), (u16, String)>;

/// One query to run, and who asked.
pub struct QueryJob {
    /// The ledger's data directory.
    pub data_dir: PathBuf,
    /// The request.
    pub req: QueryRequest,
    /// Limits.
    pub limits: Limits,
    /// The writer (for the access records).
    pub pipeline: Arc<Pipeline>,
    /// Who.
    pub subject: String,
    /// From where.
    pub origin: String,
    /// Through which interface (`api`, `ui`), as recorded.
    pub interface: &'static str,
    /// The archive settings (for `"archive": true`).
    pub archive: trailwarden_archive::ArchiveConfig,
}

/// Run a query on a new thread. `planned` says whether it could start (400 with the reason if
/// not; dropped unanswered if the thread or its runtime could not start); then lines arrive on
/// `lines`. The permit is held until the query ends.
pub fn spawn(
    job: QueryJob,
    planned: oneshot::Sender<Planned>,
    lines: mpsc::Sender<Vec<u8>>,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let run = move || {
        let _permit = permit;
        let threads = job.limits.threads.max(1);
        let _ = trailwarden_query::engine::block_on(threads, run(job, planned, lines));
    };
    let _ = std::thread::Builder::new().name("query".into()).spawn(run);
}

fn parse_time(s: &str) -> Result<Timestamp, String> {
    trailwarden_model::parse_time_or_ago(s, Timestamp::now()).map_err(|e| e.to_string())
}

async fn run(job: QueryJob, planned: oneshot::Sender<Planned>, lines: mpsc::Sender<Vec<u8>>) {
    let QueryJob {
        data_dir,
        req,
        limits,
        pipeline,
        subject,
        origin,
        interface,
        archive,
    } = job;
    let started = Instant::now();
    let (language, text) = match (&req.kql, &req.sql) {
        (Some(k), None) => ("kql", k.clone()),
        (None, Some(s)) => ("sql", s.clone()),
        _ => {
            let _ = planned.send(Err((400, "give exactly one of \"kql\" or \"sql\"".into())));
            return;
        }
    };
    let target = format!(
        "{language}{}: {}",
        if req.archive { " (archive)" } else { "" },
        text.trim()
    );
    let access = |outcome: &str, records: u64, target: String| Access {
        subject: subject.clone(),
        interface: interface.into(),
        action: "query".into(),
        target,
        records,
        outcome: outcome.into(),
        origin: origin.clone(),
    };
    let max_rows = req.limit.unwrap_or(limits.max_rows).min(limits.max_rows);
    let timeout = req
        .timeout_seconds
        .map(Duration::from_secs)
        .unwrap_or(limits.timeout)
        .min(limits.timeout);
    let window = (|| -> Result<_, String> {
        Ok((
            req.since.as_deref().map(parse_time).transpose()?,
            req.until.as_deref().map(parse_time).transpose()?,
        ))
    })();
    let (since, until) = match window {
        Ok(w) => w,
        Err(e) => {
            let _ = planned.send(Err((400, format!("since/until: {e}"))));
            return;
        }
    };
    let opts = QueryOptions {
        since,
        until,
        timeout: Some(timeout),
        memory_limit: Some(limits.memory),
        threads: Some(limits.threads),
        now: None,
    };
    // plan everything before answering, so a syntax error is a 400, not a broken stream
    let plans = async {
        let engine = if req.archive {
            let a = trailwarden_archive::Archive::open(&archive)
                .map_err(|e| (400u16, format!("\"archive\": true: {e}")))?;
            let remote = trailwarden_query::RemoteSegments {
                segments: a
                    .sealed_segments()
                    .await
                    .map_err(|e| (503u16, e.to_string()))?,
                store_url: a.store_url(),
                store: a.store(),
            };
            Engine::open_with_archive(Some(&data_dir), remote, opts)
        } else {
            Engine::open(&data_dir, opts)
        }
        .map_err(|e| (503u16, e.to_string()))?;
        let mut plans = Vec::new();
        if language == "kql" {
            for p in engine
                .plan_kql(&text)
                .await
                .map_err(|e| (400u16, e.to_string()))?
            {
                plans.push((p.plan, p.kinds, p.render));
            }
        } else {
            let df = engine
                .context()
                .sql(&text)
                .await
                .map_err(|e| (400u16, format!("SQL: {e}")))?;
            let plan = df.into_unoptimized_plan();
            let kinds = plan
                .schema()
                .fields()
                .iter()
                .map(|f| KType::of_arrow(f.data_type()))
                .collect();
            plans.push((plan, kinds, None));
        }
        Ok::<_, (u16, String)>((engine, plans))
    }
    .await;
    let (engine, plans) = match plans {
        Ok(p) => p,
        Err(e) => {
            let _ = pipeline
                .access(access("failure", 0, format!("{target} ({})", e.1)))
                .await;
            let _ = planned.send(Err(e));
            return;
        }
    };
    // the read is durable in the ledger before any row leaves
    if let Err(e) = pipeline.access(access("started", 0, target.clone())).await {
        let _ = planned.send(Err((
            503,
            format!("the query could not be recorded in the ledger, so it was not run: {e}"),
        )));
        return;
    }
    if planned.send(Ok(())).is_err() {
        return;
    }
    let mut rows = 0u64;
    let mut truncated = false;
    let work = async {
        for (stmt, (plan, kinds, render)) in plans.into_iter().enumerate() {
            let mut stream = engine.stream(plan).await.map_err(|e| e.to_string())?;
            let schema = stream.schema();
            let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
            let cols: Vec<serde_json::Value> = names
                .iter()
                .zip(&kinds)
                .map(|(n, k)| serde_json::json!({"name": n, "type": k.name()}))
                .collect();
            let mut head = serde_json::json!({"@columns": cols, "@statement": stmt});
            if let Some(r) = render {
                // `render timechart` and friends: a hint for the reader (the web UI draws it)
                head["@render"] = serde_json::Value::String(r);
            }
            send(&lines, &head).await?;
            while let Some(b) = stream.next().await {
                let b = b.map_err(|e| e.to_string())?;
                let mut buf = Vec::with_capacity(b.num_rows() * 256);
                for i in 0..b.num_rows() {
                    if rows >= max_rows {
                        truncated = true;
                        break;
                    }
                    let mut m = serde_json::Map::new();
                    for (c, name) in names.iter().enumerate() {
                        let kind = kinds.get(c).copied().unwrap_or(KType::String);
                        m.insert(
                            name.clone(),
                            trailwarden_query::render::cell_json(b.column(c), i, kind),
                        );
                    }
                    let _ = serde_json::to_writer(&mut buf, &m);
                    buf.push(b'\n');
                    rows += 1;
                }
                if lines.send(buf).await.is_err() {
                    return Err("the client went away".to_string());
                }
                if truncated {
                    break;
                }
            }
            if truncated {
                break;
            }
        }
        Ok::<(), String>(())
    };
    let result = match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "the query ran longer than {} s and was stopped",
            timeout.as_secs()
        )),
    };
    let outcome = if result.is_ok() { "success" } else { "failure" };
    let recorded = pipeline.access(access(outcome, rows, target)).await.ok();
    let mut summary = serde_json::json!({
        "rows": rows,
        "truncated": truncated,
        "limit": max_rows,
        "elapsed_ms": started.elapsed().as_millis() as u64,
        "access_record": recorded,
    });
    if let Err(e) = result {
        summary["error"] = serde_json::Value::String(e);
    }
    let _ = send(&lines, &serde_json::json!({ "@summary": summary })).await;
}

async fn send(lines: &mpsc::Sender<Vec<u8>>, v: &serde_json::Value) -> Result<(), String> {
    let mut b = serde_json::to_vec(v).map_err(|e| e.to_string())?;
    b.push(b'\n');
    lines
        .send(b)
        .await
        .map_err(|_| "the client went away".to_string())
}
