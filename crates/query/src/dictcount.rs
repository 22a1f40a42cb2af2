//! `summarize count() by <column>` counted on the segments' Parquet dictionaries.
//!
//! The most common question asked of an audit trail is "how many, by whom / by verb / by
//! namespace": a count grouped by one low-cardinality string column. DataFusion answers it by
//! decoding every value into a string array, copying it through the `kind = 1` filter and
//! hashing every string. The segments already hold those columns dictionary-encoded (a few
//! hundred distinct users in a row group of 128 Ki rows), so [`DictionaryCount`] rewrites the
//! partial aggregation over the sealed segments into [`DictionaryCountExec`]: it reads the
//! column as an Arrow dictionary (the Parquet dictionary page becomes the values, the encoded
//! indices the keys), counts rows per key in a plain array, and turns each dictionary's counts
//! into `(value, count)` rows once. The final aggregation above it, and every other branch (the
//! WAL tail), are unchanged: the answer is the same rows DataFusion would have produced.
//!
//! The rewrite applies only to exactly this shape (anything else keeps DataFusion's plan):
//! a partial `AggregateExec` with one plain column as its only group and `count` of a
//! non-null literal (`count()`, `count(*)`) as its only aggregate, over optional column
//! projections, repartitions and at most one filter of the form `kind = <literal>`, over local
//! Parquet scans (alone or in a union with other inputs).

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, DictionaryArray, Int64Array, RecordBatch, StringArray, UInt8Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef, UInt8Type};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::config::ConfigOptions;
use datafusion::datasource::physical_plan::{FileSource, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::Operator;
use datafusion::parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use datafusion::parquet::arrow::ProjectionMask;
use datafusion::parquet::file::statistics::Statistics as PqStats;
use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};
use datafusion::physical_expr::{EquivalenceProperties, Partitioning, PhysicalExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::execution_plan::{
    Boundedness, ChildrenPropertiesMode, EmissionType, ReplaceChildrenOptions,
};
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream,
};
use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

/// The physical optimizer rule (see the module documentation).
#[derive(Debug, Default)]
pub struct DictionaryCount;

impl PhysicalOptimizerRule for DictionaryCount {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let partitions = config.execution.target_partitions.max(1);
        plan.transform_down(|node| match rewrite(&node, partitions)? {
            Some(new) => Ok(Transformed::new(new, true, TreeNodeRecursion::Jump)),
            None => Ok(Transformed::no(node)),
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "dictionary_count"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// What the counted rows must satisfy: `kind = k` (the filter under the aggregation), if any.
type KindFilter = Option<u8>;

/// A branch of the aggregation's input this rule counts: local segments, the column and the
/// kind filter.
struct Scan {
    files: Vec<PathBuf>,
    column: String,
    kind: KindFilter,
}

/// The rewrite of one partial aggregation, if it has the shape this rule handles.
fn rewrite(
    node: &Arc<dyn ExecutionPlan>,
    partitions: usize,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let Some(agg) = node.downcast_ref::<AggregateExec>() else {
        return Ok(None);
    };
    if *agg.mode() != AggregateMode::Partial || !counts_rows(agg) {
        return Ok(None);
    }
    let group = agg.group_expr();
    if group.has_grouping_set() || group.expr().len() != 1 {
        return Ok(None);
    }
    let Some(col) = group.expr()[0].0.downcast_ref::<Column>() else {
        return Ok(None);
    };
    let out = agg.schema();
    if out.fields().len() != 2
        || out.field(0).data_type() != &DataType::Utf8
        || out.field(1).data_type() != &DataType::Int64
    {
        return Ok(None);
    }
    let exec = |s: Scan| -> Arc<dyn ExecutionPlan> {
        Arc::new(DictionaryCountExec::new(
            s.files,
            s.column,
            s.kind,
            out.clone(),
            partitions,
        ))
    };
    let Some((union, index)) = find_union(agg.input(), col.index()) else {
        return Ok(walk(agg.input(), col.index(), None).map(exec));
    };
    let Some(u) = union.downcast_ref::<UnionExec>() else {
        return Ok(None);
    };
    // union by position: the column is at the same index in every input
    let mut inputs = Vec::new();
    let mut others = Vec::new();
    for child in u.inputs() {
        match walk(child, index, None) {
            Some(scan) => inputs.push(exec(scan)),
            None => others.push(child.clone()),
        }
    }
    if inputs.is_empty() {
        return Ok(None);
    }
    // the other inputs (the WAL tail, archived segments) keep the aggregation, over the same
    // operators as before
    for other in others {
        let chain = replace_leaf(agg.input(), &union, other)?;
        inputs.push(node.clone().replace_children(
            vec![chain],
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )?);
    }
    Ok(Some(match inputs.len() {
        1 => inputs.remove(0),
        _ => UnionExec::try_new(inputs)?,
    }))
}

/// `count()` / `count(*)` (a count of a non-null literal), alone, without DISTINCT or FILTER.
fn counts_rows(agg: &AggregateExec) -> bool {
    let [a] = agg.aggr_expr() else { return false };
    a.fun().name() == "count"
        && !a.is_distinct()
        && agg.filter_expr().iter().all(Option::is_none)
        && a.expressions().iter().all(|e| {
            e.downcast_ref::<Literal>()
                .is_some_and(|l| !l.value().is_null())
        })
}

/// The union under the aggregation (through column projections and repartitions), and the
/// group column's index in it.
fn find_union(
    node: &Arc<dyn ExecutionPlan>,
    index: usize,
) -> Option<(Arc<dyn ExecutionPlan>, usize)> {
    if node.downcast_ref::<UnionExec>().is_some() {
        return Some((node.clone(), index));
    }
    let (input, index) = pass_through(node, index)?;
    find_union(input, index)
}

/// Through a column projection or a repartition: the input and the column's index there
/// (`None` for any other node, or a column the projection computes).
fn pass_through(
    node: &Arc<dyn ExecutionPlan>,
    index: usize,
) -> Option<(&Arc<dyn ExecutionPlan>, usize)> {
    if let Some(p) = node.downcast_ref::<ProjectionExec>() {
        let c = p.expr().get(index)?.expr.downcast_ref::<Column>()?;
        return Some((p.input(), c.index()));
    }
    node.downcast_ref::<RepartitionExec>()
        .map(|r| (r.input(), index))
}

/// Follow the group column down to a local Parquet scan: through column projections,
/// repartitions and at most one `kind = k` filter.
fn walk(node: &Arc<dyn ExecutionPlan>, index: usize, kind: KindFilter) -> Option<Scan> {
    if let Some((input, index)) = pass_through(node, index) {
        return walk(input, index, kind);
    }
    if let Some(f) = node.downcast_ref::<FilterExec>() {
        if kind.is_some() {
            return None;
        }
        let k = kind_filter(f.predicate().as_ref())?;
        let index = match f.projection() {
            Some(p) => *p.get(index)?,
            None => index,
        };
        return walk(f.input(), index, Some(k));
    }
    let files = local_files(node, kind)?;
    let schema = node.schema();
    let field = schema.fields().get(index)?;
    (field.data_type() == &DataType::Utf8).then(|| Scan {
        files,
        column: field.name().clone(),
        kind,
    })
}

/// `kind = <u8 literal>` (either way round).
fn kind_filter(e: &dyn PhysicalExpr) -> Option<u8> {
    let b = e.downcast_ref::<BinaryExpr>()?;
    if *b.op() != Operator::Eq {
        return None;
    }
    let (l, r) = (b.left(), b.right());
    let (c, v) = match (l.downcast_ref::<Column>(), r.downcast_ref::<Literal>()) {
        (Some(c), Some(v)) => (c, v),
        _ => (r.downcast_ref::<Column>()?, l.downcast_ref::<Literal>()?),
    };
    if c.name() != "kind" {
        return None;
    }
    match v.value() {
        ScalarValue::UInt8(Some(k)) => Some(*k),
        _ => None,
    }
}

/// The local Parquet files a plain scan reads: no limit, and no predicate but the kind filter
/// above it (pruning by it); `None` for anything else.
fn local_files(node: &Arc<dyn ExecutionPlan>, kind: KindFilter) -> Option<Vec<PathBuf>> {
    let scan = node.downcast_ref::<DataSourceExec>()?;
    let (config, source) = scan.downcast_to_file_source::<ParquetSource>()?;
    if config.limit.is_some() || config.object_store_url.as_str() != "file:///" {
        return None;
    }
    if let Some(p) = source.filter() {
        if kind.is_none() || kind_filter(p.as_ref()) != kind {
            return None;
        }
    }
    let fs = object_store::local::LocalFileSystem::new();
    let mut files: Vec<PathBuf> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for f in config.file_groups.iter().flat_map(|g| g.files()) {
        // a file split into byte ranges appears once per range: count it once
        if seen.insert(&f.object_meta.location) {
            files.push(fs.path_to_filesystem(&f.object_meta.location).ok()?);
        }
    }
    Some(files)
}

/// `chain` with its leaf `old` replaced by `new` (same schema).
fn replace_leaf(
    chain: &Arc<dyn ExecutionPlan>,
    old: &Arc<dyn ExecutionPlan>,
    new: Arc<dyn ExecutionPlan>,
) -> Result<Arc<dyn ExecutionPlan>> {
    if Arc::ptr_eq(chain, old) {
        return Ok(new);
    }
    let [child] = chain.children()[..] else {
        return Err(DataFusionError::Internal(format!(
            "dictionary_count: {} has more than one input",
            chain.name()
        )));
    };
    let child = replace_leaf(child, old, new)?;
    chain.clone().replace_children(
        vec![child],
        ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
    )
}

/// Counts rows per value of one string column of local Parquet segments, from the column's
/// dictionary; emits the partial aggregation's rows (`value`, `count`).
#[derive(Debug)]
pub struct DictionaryCountExec {
    files: Vec<PathBuf>,
    column: String,
    kind: KindFilter,
    schema: SchemaRef,
    partitions: usize,
    props: Arc<PlanProperties>,
}

impl DictionaryCountExec {
    fn new(
        files: Vec<PathBuf>,
        column: String,
        kind: KindFilter,
        schema: SchemaRef,
        partitions: usize,
    ) -> Self {
        let partitions = partitions.clamp(1, files.len().max(1));
        let props = PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        DictionaryCountExec {
            files,
            column,
            kind,
            schema,
            partitions,
            props: Arc::new(props),
        }
    }
}

impl DisplayAs for DictionaryCountExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "DictionaryCountExec: column={}, files={}, partitions={}",
            self.column,
            self.files.len(),
            self.partitions
        )?;
        if let Some(k) = self.kind {
            write!(f, ", kind={k}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for DictionaryCountExec {
    fn name(&self) -> &'static str {
        "DictionaryCountExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        _: Vec<Arc<dyn ExecutionPlan>>,
        _: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn with_new_children(
        self: Arc<Self>,
        _: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        // files are dealt round robin: segments are of similar size
        let files: Vec<PathBuf> = self
            .files
            .iter()
            .skip(partition)
            .step_by(self.partitions)
            .cloned()
            .collect();
        let (column, kind, schema) = (self.column.clone(), self.kind, self.schema.clone());
        let out = schema.clone();
        let mut memory = MemoryConsumer::new(format!("DictionaryCountExec[{partition}]"))
            .register(context.memory_pool());
        let work = async move {
            tokio::task::spawn_blocking(move || {
                count_files(&files, &column, kind, &out, &mut memory)
            })
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            futures::stream::once(work),
        )))
    }
}

fn pq_err(path: &std::path::Path, e: impl fmt::Display) -> DataFusionError {
    DataFusionError::Execution(format!("counting segment {}: {e}", path.display()))
}

/// Rows per value so far, and the bytes that holds (reserved from the query's memory pool).
#[derive(Default)]
struct Totals {
    map: HashMap<String, i64>,
    nulls: i64,
    bytes: usize,
}

impl Totals {
    fn add(&mut self, value: Option<&str>, n: i64) {
        match value {
            None => self.nulls += n,
            Some(v) => match self.map.get_mut(v) {
                Some(c) => *c += n,
                None => {
                    self.bytes += v.len() + 48;
                    self.map.insert(v.to_string(), n);
                }
            },
        }
    }
}

/// Count the rows of `files` per value of `column` (rows of kind `kind` only, if set).
fn count_files(
    files: &[PathBuf],
    column: &str,
    kind: KindFilter,
    out: &SchemaRef,
    memory: &mut MemoryReservation,
) -> Result<RecordBatch> {
    let mut totals = Totals::default();
    for path in files {
        count_file(path, column, kind, &mut totals).map_err(|e| pq_err(path, e))?;
        // a column with millions of distinct values holds them all here, as DataFusion's own
        // partial aggregation would: within the query's memory limit
        memory.try_resize(totals.bytes)?;
    }
    let n = totals.map.len() + usize::from(totals.nulls > 0);
    let mut values: Vec<Option<String>> = Vec::with_capacity(n);
    let mut counts: Vec<i64> = Vec::with_capacity(n);
    if totals.nulls > 0 {
        values.push(None);
        counts.push(totals.nulls);
    }
    for (v, n) in totals.map.into_iter().map(|(v, n)| (Some(v), n)) {
        values.push(v);
        counts.push(n);
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(values)),
        Arc::new(Int64Array::from(counts)),
    ];
    RecordBatch::try_new(out.clone(), cols).map_err(DataFusionError::from)
}

/// Add one segment's counts to `totals`.
fn count_file(
    path: &std::path::Path,
    column: &str,
    kind: KindFilter,
    totals: &mut Totals,
) -> Result<()> {
    let file = File::open(path)?;
    let meta = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new())?;
    let schema = meta.schema().clone();
    let ki = schema.column_with_name("kind").map(|(i, _)| i);
    if kind.is_some() && ki.is_none() {
        // no row of this file has the kind (DataFusion reads the missing column as null)
        return Ok(());
    }
    // a file written before the column existed reads it as null: its rows count under null
    let ci = schema.column_with_name(column).map(|(i, _)| i);
    let meta = match ci {
        Some(ci) => {
            // read the column as a dictionary: the keys index the Parquet dictionary page
            let mut fields: Vec<Field> =
                schema.fields().iter().map(|f| f.as_ref().clone()).collect();
            fields[ci] = Field::new(
                column,
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                true,
            );
            let opts = ArrowReaderOptions::new().with_schema(Arc::new(Schema::new(fields)));
            ArrowReaderMetadata::try_new(meta.metadata().clone(), opts)?
        }
        None => meta,
    };
    let pq = meta.parquet_schema();
    // row groups all of kind k (by statistics), none of it (skipped) or some (read `kind`)
    let mut whole = Vec::new();
    let mut mixed = Vec::new();
    for (g, rg) in meta.metadata().row_groups().iter().enumerate() {
        match (kind, ki) {
            (Some(k), Some(ki)) => match kind_range(rg.column(leaf_of(pq, ki)?).statistics()) {
                Some((lo, hi)) if lo == k && hi == k => whole.push(g),
                Some((lo, hi)) if k < lo || k > hi => {}
                _ => mixed.push(g),
            },
            _ => whole.push(g),
        }
    }
    for (groups, want) in [(whole, None), (mixed, kind)] {
        if groups.is_empty() {
            continue;
        }
        let mut leaves = Vec::new();
        if let Some(ci) = ci {
            leaves.push(leaf_of(pq, ci)?);
        }
        if let (Some(_), Some(ki)) = (want, ki) {
            leaves.push(leaf_of(pq, ki)?);
        }
        if leaves.is_empty() {
            let n: i64 = groups
                .iter()
                .map(|&g| meta.metadata().row_group(g).num_rows())
                .sum();
            totals.add(None, n);
            continue;
        }
        let reader =
            ParquetRecordBatchReaderBuilder::new_with_metadata(file.try_clone()?, meta.clone())
                .with_row_groups(groups)
                .with_projection(ProjectionMask::leaves(pq, leaves))
                .with_batch_size(64 * 1024)
                .build()?;
        let mut acc = DictCounts::default();
        for batch in reader {
            let batch = batch?;
            let kinds = match want {
                Some(k) => Some((
                    batch
                        .column_by_name("kind")
                        .and_then(|a| a.as_primitive_opt::<UInt8Type>())
                        .ok_or_else(|| DataFusionError::Execution("kind is not UInt8".into()))?,
                    k,
                )),
                None => None,
            };
            match batch.column_by_name(column) {
                Some(a) => {
                    let keys = a.as_dictionary_opt::<Int32Type>().ok_or_else(|| {
                        DataFusionError::Execution(format!("{column} is not a dictionary"))
                    })?;
                    acc.add(keys, kinds, totals);
                }
                None => acc.add_nulls(batch.num_rows(), kinds),
            }
        }
        acc.flush(totals);
    }
    Ok(())
}

/// The Parquet leaf of a top-level Arrow column (a flat column: the segment schema's string
/// columns are not nested).
fn leaf_of(
    pq: &datafusion::parquet::schema::types::SchemaDescriptor,
    arrow_index: usize,
) -> Result<usize> {
    let root = pq
        .root_schema()
        .get_fields()
        .get(arrow_index)
        .ok_or_else(|| {
            DataFusionError::Execution(format!("segment column {arrow_index} is missing"))
        })?;
    (0..pq.num_columns())
        .find(|&i| pq.get_column_root(i).name() == root.name())
        .ok_or_else(|| DataFusionError::Execution(format!("no Parquet leaf for {}", root.name())))
}

/// `(min, max)` of a row group's `kind` column, when its statistics say.
fn kind_range(s: Option<&PqStats>) -> Option<(u8, u8)> {
    match s? {
        PqStats::Int32(v) if v.null_count_opt() == Some(0) => {
            let lo = u8::try_from(*v.min_opt()?).ok()?;
            let hi = u8::try_from(*v.max_opt()?).ok()?;
            Some((lo, hi))
        }
        _ => None,
    }
}

/// Counts per key of the current dictionary; turned into `(value, count)` when the dictionary
/// changes (a new column chunk) and at the end.
#[derive(Default)]
struct DictCounts {
    values: Option<ArrayRef>,
    counts: Vec<i64>,
    nulls: i64,
}

impl DictCounts {
    fn add(
        &mut self,
        dict: &DictionaryArray<Int32Type>,
        kinds: Option<(&UInt8Array, u8)>,
        totals: &mut Totals,
    ) {
        let values = dict.values();
        if !self.values.as_ref().is_some_and(|v| Arc::ptr_eq(v, values)) {
            self.flush(totals);
            self.values = Some(values.clone());
            self.counts = vec![0; values.len()];
        }
        let keys = dict.keys();
        let counts = &mut self.counts;
        let k = keys.values();
        let no_null_keys = keys.null_count() == 0;
        match kinds {
            None if no_null_keys => {
                for &i in k.iter() {
                    // keys of a valid dictionary array are in range
                    if let Some(c) = counts.get_mut(i as usize) {
                        *c += 1;
                    }
                }
            }
            Some((kv, want)) if no_null_keys && kv.null_count() == 0 => {
                for (&i, &kind) in k.iter().zip(kv.values().iter()) {
                    if let Some(c) = counts.get_mut(i as usize) {
                        *c += i64::from(kind == want);
                    }
                }
            }
            _ => {
                for (row, &i) in k.iter().enumerate() {
                    if let Some((kv, want)) = kinds {
                        if kv.is_null(row) || kv.value(row) != want {
                            continue;
                        }
                    }
                    if keys.is_null(row) {
                        self.nulls += 1;
                    } else if let Some(c) = counts.get_mut(i as usize) {
                        *c += 1;
                    }
                }
            }
        }
    }

    /// Rows without the column (null), of the kind if one is wanted.
    fn add_nulls(&mut self, rows: usize, kinds: Option<(&UInt8Array, u8)>) {
        let n = match kinds {
            Some((kv, want)) => (0..rows)
                .filter(|&r| kv.is_valid(r) && kv.value(r) == want)
                .count(),
            None => rows,
        };
        self.nulls += n as i64;
    }

    fn flush(&mut self, totals: &mut Totals) {
        if let Some(values) = self.values.take() {
            let strings = values.as_string::<i32>();
            for (i, &n) in self.counts.iter().enumerate() {
                if n > 0 {
                    totals.add(strings.is_valid(i).then(|| strings.value(i)), n);
                }
            }
        }
        if self.nulls > 0 {
            totals.add(None, self.nulls);
            self.nulls = 0;
        }
        self.counts.clear();
    }
}
