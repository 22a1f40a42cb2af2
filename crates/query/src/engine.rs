//! The query engine: a DataFusion session over one snapshot of the ledger (sealed segments as
//! Parquet files plus the committed WAL tail in memory), with the tables registered as views,
//! KQL and SQL entry points, and per-query memory and time limits.

use crate::kql;
use crate::tables::{self, Fns, Table};
use crate::types::KType;
use crate::QueryError;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::provider_as_source;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::{lit, LogicalPlan, LogicalPlanBuilder, ScalarUDF};
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::StreamExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use trailwarden_ledger::reader::{LedgerReader, QuerySnapshot};
use trailwarden_model::Timestamp;

/// Per-query limits and the time window.
#[derive(Clone, Debug)]
pub struct QueryOptions {
    /// Only rows whose `TimeGenerated` is at or after this.
    pub since: Option<Timestamp>,
    /// Only rows whose `TimeGenerated` is before this.
    pub until: Option<Timestamp>,
    /// Stop the query after this long.
    pub timeout: Option<Duration>,
    /// Memory the query may use (operators that can spill do; others fail with a clear error).
    pub memory_limit: Option<usize>,
    /// Threads (default: the CPUs this process may use).
    pub threads: Option<usize>,
    /// What `now()` and `ago()` mean (default: when the query is planned). Tests and
    /// reproducible reports pin it.
    pub now: Option<Timestamp>,
}

impl Default for QueryOptions {
    fn default() -> Self {
        QueryOptions {
            since: None,
            until: None,
            timeout: Some(Duration::from_secs(300)),
            memory_limit: Some(2 << 30),
            threads: None,
            now: None,
        }
    }
}

/// Sealed segments in object storage (the archive tier), read through DataFusion's object store
/// registry with the same Parquet statistics pruning as local ones.
#[derive(Clone)]
pub struct RemoteSegments {
    /// The store's root as DataFusion names it (`s3://bucket`, `az://container`, `file://`).
    pub store_url: String,
    /// The store.
    pub store: Arc<dyn object_store::ObjectStore>,
    /// `(first, last, object URL)` of each segment, in index order.
    pub segments: Vec<(u64, u64, String)>,
}

impl std::fmt::Debug for RemoteSegments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteSegments")
            .field("store_url", &self.store_url)
            .field("segments", &self.segments.len())
            .finish()
    }
}

/// `[first, last]` of a segment file named `<first:020>-<last:020>.parquet`.
fn segment_range(p: &Path) -> Option<(u64, u64)> {
    let stem = p.file_stem()?.to_str()?;
    let (a, b) = stem.split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// A query's result.
#[derive(Debug)]
pub struct QueryOutput {
    /// Columns.
    pub schema: SchemaRef,
    /// The rows.
    pub batches: Vec<RecordBatch>,
    /// KQL type of each column (`dynamic` columns hold JSON text).
    pub kinds: Vec<KType>,
    /// `render` hint (`timechart`, …), if the query had one.
    pub render: Option<String>,
}

impl QueryOutput {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }
}

/// A planned KQL statement: the plan, its column types, its render hint.
pub struct Planned {
    /// DataFusion logical plan.
    pub plan: LogicalPlan,
    /// KQL type per output column.
    pub kinds: Vec<KType>,
    /// `render` hint.
    pub render: Option<String>,
}

/// A session over one ledger snapshot.
pub struct Engine {
    ctx: SessionContext,
    tables: Vec<Table>,
    opts: QueryOptions,
    records: u64,
    fns: Arc<Fns>,
}

/// Every UDF the tables and the KQL lowering use.
pub fn functions() -> Vec<Arc<ScalarUDF>> {
    crate::udf::all()
        .into_iter()
        .chain(crate::rows::all())
        .map(Arc::new)
        .collect()
}

impl Engine {
    /// Open the ledger in `data_dir` (a consistent snapshot: the segments sealed and the WAL
    /// records committed at this moment).
    pub fn open(data_dir: &Path, opts: QueryOptions) -> Result<Engine, QueryError> {
        Engine::over(Engine::snapshot(data_dir)?, opts)
    }

    /// Open over the archive: every segment the archive holds, read from object storage, plus
    /// (when `data_dir` holds a ledger) the local segments the archive does not hold yet and
    /// the WAL tail, so the query still sees every acknowledged record.
    pub fn open_with_archive(
        data_dir: Option<&Path>,
        remote: RemoteSegments,
        opts: QueryOptions,
    ) -> Result<Engine, QueryError> {
        let mut snap = match data_dir {
            Some(d) if d.join("identity.json").exists() => Engine::snapshot(d)?,
            _ => QuerySnapshot {
                segments: Vec::new(),
                tail: None,
                size: 0,
            },
        };
        let archived: std::collections::BTreeSet<u64> =
            remote.segments.iter().map(|(a, _, _)| *a).collect();
        snap.segments
            .retain(|p| segment_range(p).is_none_or(|(a, _)| !archived.contains(&a)));
        let remote_end = remote.segments.last().map_or(0, |(_, b, _)| b + 1);
        snap.size = snap.size.max(remote_end);
        Engine::over_with(snap, Some(remote), opts)
    }

    /// Open several ledgers as one: the partitions of a cluster (one data directory each). The
    /// tables hold the records of all of them; `_ResourceId`-style provenance is the record's
    /// `source`, and each ledger's own indexes stay as they are (they overlap across ledgers).
    pub fn open_many(data_dirs: &[&Path], opts: QueryOptions) -> Result<Engine, QueryError> {
        let mut all = QuerySnapshot {
            segments: Vec::new(),
            tail: None,
            size: 0,
        };
        let mut tails = Vec::new();
        for d in data_dirs {
            let s = Engine::snapshot(d)
                .map_err(|e| QueryError::Engine(format!("{}: {e}", d.display())))?;
            all.segments.extend(s.segments);
            all.size += s.size;
            tails.extend(s.tail);
        }
        if !tails.is_empty() {
            all.tail = Some(
                datafusion::arrow::compute::concat_batches(
                    &trailwarden_ledger::segment::schema(),
                    &tails,
                )
                .map_err(|e| QueryError::Engine(format!("joining the ledgers' tails: {e}")))?,
            );
        }
        Engine::over(all, opts)
    }

    /// A consistent snapshot of the ledger in `data_dir`.
    fn snapshot(data_dir: &Path) -> Result<QuerySnapshot, QueryError> {
        let extractor: Arc<trailwarden_ledger::Extractor> =
            Arc::new(|f, raw: &[u8], t| trailwarden_parse::reparse(f, raw, t));
        let mut snapshot = None;
        for _ in 0..8 {
            let reader = LedgerReader::open(data_dir, None)?;
            if let Some(s) = reader.query_snapshot(Some(&extractor))? {
                snapshot = Some(s);
                break;
            }
        }
        snapshot.ok_or_else(|| {
            QueryError::Engine(
                "the ledger kept changing while its snapshot was taken; try again".into(),
            )
        })
    }

    /// A session over a snapshot.
    pub fn over(snapshot: QuerySnapshot, opts: QueryOptions) -> Result<Engine, QueryError> {
        Engine::over_with(snapshot, None, opts)
    }

    /// A session over a snapshot and archived segments.
    pub fn over_with(
        snapshot: QuerySnapshot,
        remote: Option<RemoteSegments>,
        opts: QueryOptions,
    ) -> Result<Engine, QueryError> {
        let threads = opts
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
        let mut config = SessionConfig::new()
            .with_target_partitions(threads.max(1))
            .with_information_schema(true);
        {
            let o = config.options_mut();
            // Row-level filter pushdown decodes a predicate's columns once per conjunct: three
            // conditions on parse_json(raw) decoded the 1.4 KB raw column three times (q3 of
            // BENCHMARKS.md: 18.1 s with it, 9.2 s without, 10M events). Row groups and
            // pages are still pruned by statistics either way.
            o.execution.parquet.pushdown_filters = false;
            // Planning read every segment's footer for table statistics (a fifth of q1's time
            // on 235 segments), and the scan reads it again: row groups and pages are pruned
            // by the scan itself, from the footer it reads anyway.
            o.execution.collect_statistics = false;
            o.execution.parquet.schema_force_view_types = false;
            o.execution.parquet.binary_as_string = false;
        }
        let mut rt = RuntimeEnvBuilder::new();
        if let Some(limit) = opts.memory_limit {
            rt = rt.with_memory_pool(Arc::new(FairSpillPool::new(limit)));
        }
        let runtime = rt.build_arc()?;
        let state = datafusion::execution::SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(crate::dictcount::DictionaryCount))
            .build();
        let ctx = SessionContext::new_with_state(state);
        ctx.add_optimizer_rule(Arc::new(crate::prune::TimePruning));
        let fns = functions();
        for f in &fns {
            ctx.register_udf(f.as_ref().clone());
        }
        let fns = Arc::new(Fns::new(&fns));
        if let Some(r) = &remote {
            let url = url::Url::parse(&r.store_url)
                .map_err(|e| QueryError::Engine(format!("archive URL {}: {e}", r.store_url)))?;
            ctx.register_object_store(&url, r.store.clone());
        }
        let base = base_plan(&ctx, &snapshot, remote.as_ref(), &opts)?;
        let tables = tables::build(&base, &fns)?;
        for t in &tables {
            let view = datafusion::catalog::view::ViewTable::new(t.plan.clone(), None);
            // exact case: SQL reaches these as "AzureActivity" (quoted) and events (bare)
            ctx.register_table(
                datafusion::common::TableReference::bare(t.name),
                Arc::new(view),
            )?;
        }
        Ok(Engine {
            ctx,
            tables,
            opts,
            records: snapshot.size,
            fns,
        })
    }

    /// The tables, for documentation and `--tables`.
    pub fn tables(&self) -> &[Table] {
        &self.tables
    }

    /// A table by name (exact, then case-insensitive).
    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.name == name).or_else(|| {
            self.tables
                .iter()
                .find(|t| t.name.eq_ignore_ascii_case(name))
        })
    }

    /// What `now()` means for queries planned now.
    pub fn now(&self) -> Timestamp {
        self.opts.now.unwrap_or_else(Timestamp::now)
    }

    /// Records in the snapshot.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// The DataFusion session (for callers that stream).
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// The view functions.
    pub fn fns(&self) -> &Arc<Fns> {
        &self.fns
    }

    /// Plan a KQL query: one plan per tabular statement. Planning runs the parts of the query
    /// whose results it needs first (`toscalar(…)`, the properties `evaluate bag_unpack` makes
    /// columns of, the time range of a `make-series` without `from`/`to`).
    pub async fn plan_kql(&self, text: &str) -> Result<Vec<Planned>, QueryError> {
        let q = kql::parse(text)?;
        let mut data = std::collections::HashMap::new();
        // each round answers one node; a query has fewer nodes than this
        for _ in 0..64 {
            match kql::lower::lower(self, text, &q, &data)? {
                kql::lower::Lowered::Done(p) => return Ok(p),
                kql::lower::Lowered::NeedsData(key, plan) => {
                    let (_, batches) = self.run_plan(plan).await?;
                    data.insert(key, batches);
                }
            }
        }
        Err(QueryError::Engine(
            "the query needs too many values computed before it can be planned".into(),
        ))
    }

    /// Run a KQL query; one output per tabular statement.
    pub async fn kql(&self, text: &str) -> Result<Vec<QueryOutput>, QueryError> {
        let mut out = Vec::new();
        for p in self.plan_kql(text).await? {
            let (schema, batches) = self.run_plan(p.plan).await?;
            out.push(QueryOutput {
                schema,
                batches,
                kinds: p.kinds,
                render: p.render,
            });
        }
        Ok(out)
    }

    /// Run a SQL query.
    pub async fn sql(&self, text: &str) -> Result<QueryOutput, QueryError> {
        let df = self.ctx.sql(text).await.map_err(sql_error)?;
        let plan = df.into_unoptimized_plan();
        let kinds = plan
            .schema()
            .fields()
            .iter()
            .map(|f| KType::of_arrow(f.data_type()))
            .collect();
        let (schema, batches) = self.run_plan(plan).await?;
        Ok(QueryOutput {
            schema,
            batches,
            kinds,
            render: None,
        })
    }

    /// Stream the results of a plan (the server's API).
    pub async fn stream(&self, plan: LogicalPlan) -> Result<SendableRecordBatchStream, QueryError> {
        let df = self.ctx.execute_logical_plan(plan).await?;
        Ok(df.execute_stream().await?)
    }

    async fn run_plan(
        &self,
        plan: LogicalPlan,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), QueryError> {
        let limit = self.opts.memory_limit;
        let work = async {
            let mut stream = self.stream(plan).await?;
            let schema = stream.schema();
            let mut batches = Vec::new();
            while let Some(b) = stream.next().await {
                batches.push(b.map_err(|e| engine_error(e, limit))?);
            }
            Ok::<_, QueryError>((schema, batches))
        };
        match self.opts.timeout {
            Some(t) => tokio::time::timeout(t, work)
                .await
                .map_err(|_| QueryError::Timeout {
                    seconds: t.as_secs_f64(),
                })?,
            None => work.await,
        }
    }
}

fn engine_error(e: datafusion::error::DataFusionError, limit: Option<usize>) -> QueryError {
    let msg = e.to_string();
    if msg.contains("Resources exhausted") || msg.contains("Failed to allocate") {
        return QueryError::Memory {
            limit: limit.unwrap_or(0),
            detail: msg,
        };
    }
    QueryError::Engine(msg)
}

fn sql_error(e: datafusion::error::DataFusionError) -> QueryError {
    QueryError::Engine(format!("SQL: {e}"))
}

/// The ledger's records: the segments (Parquet, pruned by row-group statistics) and the WAL
/// tail (in memory), restricted to the time window.
fn base_plan(
    _ctx: &SessionContext,
    snap: &QuerySnapshot,
    remote: Option<&RemoteSegments>,
    opts: &QueryOptions,
) -> Result<LogicalPlan, QueryError> {
    let schema = trailwarden_ledger::segment::schema();
    let mut plans = Vec::new();
    // one listing table per store (a listing table reads all its files through one store)
    let local: Vec<String> = snap
        .segments
        .iter()
        .map(|p| p.to_string_lossy().to_string())
        .collect();
    let archived: Vec<String> = remote
        .map(|r| r.segments.iter().map(|(_, _, u)| u.clone()).collect())
        .unwrap_or_default();
    for (name, files) in [("archived", archived), ("segments", local)] {
        if files.is_empty() {
            continue;
        }
        let urls = files
            .iter()
            .map(ListingTableUrl::parse)
            .collect::<Result<Vec<_>, _>>()?;
        let options =
            ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        let config = ListingTableConfig::new_with_multi_paths(urls)
            .with_listing_options(options)
            .with_schema(schema.clone());
        let table = ListingTable::try_new(config)?;
        plans.push(
            LogicalPlanBuilder::scan(name, provider_as_source(Arc::new(table)), None)?.build()?,
        );
    }
    let tail: Vec<RecordBatch> = snap.tail.iter().cloned().collect();
    if !tail.is_empty() || plans.is_empty() {
        let mem = MemTable::try_new(schema.clone(), vec![tail])?;
        plans.push(
            LogicalPlanBuilder::scan("tail", provider_as_source(Arc::new(mem)), None)?.build()?,
        );
    }
    let mut it = plans.into_iter();
    let mut b = match it.next() {
        Some(p) => LogicalPlanBuilder::from(p),
        None => return Err(QueryError::Engine("no data source".into())),
    };
    for p in it {
        b = b.union(p)?;
    }
    let t = tables::time_generated();
    if let Some(s) = opts.since {
        b = b.filter(t.clone().gt_eq(ts_lit(s)))?;
    }
    if let Some(u) = opts.until {
        b = b.filter(t.lt(ts_lit(u)))?;
    }
    Ok(b.alias("records_all")?.build()?)
}

/// A datetime literal.
pub fn ts_lit(t: Timestamp) -> datafusion::logical_expr::Expr {
    lit(datafusion::common::ScalarValue::TimestampNanosecond(
        Some(t.0),
        Some("UTC".into()),
    ))
}

/// Run `f` on a Tokio runtime made for it (the CLI is synchronous).
pub fn block_on<F: std::future::Future>(threads: usize, f: F) -> Result<F::Output, QueryError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .map_err(|e| QueryError::Engine(format!("starting the query runtime: {e}")))?;
    Ok(rt.block_on(f))
}
