//! Sealed segments: immutable Parquet files holding, for each record, the fields the leaf hash
//! commits to (`idx`, `kind`, `received`, `source`, `raw`) with the stored `leaf_hash`, plus the
//! extracted query columns. One copy serves both verification and queries, and any Parquet
//! reader can re-check the hashes independently (see ARCHITECTURE.md).
//!
//! Not stored as columns, because they are random per record and already in `raw` (each would
//! cost as much disk as the compressed event itself): the audit ID and the request timestamp.
//! The query layer reads them from `raw`.
//!
//! The file's key-value metadata binds it to its ledger and range (`trailwarden.origin`,
//! `trailwarden.first`, `trailwarden.last`, `trailwarden.seal_root`), so a segment copied from
//! another ledger or another range is detected even without the manifest.

use crate::merkle::Hash;
use crate::LedgerError;
use arrow_array::builder::{
    BooleanBuilder, FixedSizeBinaryBuilder, Int64Builder, ListBuilder, StringBuilder,
    TimestampNanosecondBuilder, UInt64Builder, UInt8Builder,
};
use arrow_array::{Array, ArrayRef, BinaryArray, RecordBatch};
use arrow_buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use std::fs::File;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use trailwarden_model::{Event, Quarantine, RecordKind, Timestamp};

/// Format marker in the file metadata.
pub const SEGMENT_FORMAT: &str = "trailwarden-segment/1";

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

fn list_of_strings() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

/// The Arrow schema of a segment (the contract the query layer reads).
pub fn schema() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    S.get_or_init(|| {
        let s = |n: &str| Field::new(n, DataType::Utf8, true);
        Arc::new(Schema::new(vec![
            // hashed fields
            Field::new("idx", DataType::UInt64, false),
            Field::new("kind", DataType::UInt8, false),
            Field::new("received", ts(), false),
            Field::new("source", DataType::Utf8, false),
            Field::new("raw", DataType::Binary, false),
            Field::new(
                "leaf_prefix",
                DataType::FixedSizeBinary(LEAF_PREFIX as i32),
                false,
            ),
            // extracted columns
            s("format"),
            s("category"),
            Field::new("time", ts(), true),
            s("user"),
            s("user_uid"),
            Field::new("user_groups", list_of_strings(), true),
            s("impersonated_user"),
            s("action"),
            s("outcome"),
            Field::new("status_code", DataType::Int64, true),
            s("reason"),
            s("status_message"),
            Field::new("source_ips", list_of_strings(), true),
            s("trusted_ip"),
            s("user_agent"),
            s("host"),
            s("api_group"),
            s("api_version"),
            s("resource"),
            s("subresource"),
            s("namespace"),
            s("name"),
            s("request_uri"),
            s("stage"),
            s("level"),
            s("decision"),
            s("authz_reason"),
            Field::new("pci", list_of_strings(), true),
            s("message"),
            Field::new("truncated", DataType::Boolean, true),
            s("attrs"),
            s("quarantine_reason"),
        ]))
    })
    .clone()
}

/// Index of the hashed columns (and the leaf-hash prefix) in [`schema`].
pub const HASHED_COLUMNS: [usize; 6] = [0, 1, 2, 3, 4, 5];
/// Index of the `format` column.
pub const FORMAT_COLUMN: usize = 6;

/// Bytes of each leaf hash stored in a segment. The full hash is recomputed from the hashed
/// columns; the prefix pins a mismatch to its record (a 2^-64 chance of missing one), while the
/// roots in signed checkpoints carry the integrity guarantee. Storing all 32 bytes would cost
/// 2 % of the raw size in incompressible bytes.
pub const LEAF_PREFIX: usize = 8;

/// What the writer knows about one appended record, beyond its hashed fields.
pub enum Extracted<'a> {
    /// A parsed event.
    Event(&'a Event),
    /// A quarantined input.
    Quarantine(&'a Quarantine),
    /// A record trailwarden wrote (its payload is JSON).
    Internal,
}

/// Accumulates rows of the open (unsealed) range in Arrow builders.
pub struct SegmentBuilder {
    rows: usize,
    bytes: usize,
    idx: UInt64Builder,
    kind: UInt8Builder,
    received: TimestampNanosecondBuilder,
    source: StringBuilder,
    raw: RawBuffers,
    leaf_prefix: FixedSizeBinaryBuilder,
    format: StringBuilder,
    category: StringBuilder,
    time: TimestampNanosecondBuilder,
    user: StringBuilder,
    user_uid: StringBuilder,
    user_groups: ListBuilder<StringBuilder>,
    impersonated: StringBuilder,
    action: StringBuilder,
    outcome: StringBuilder,
    code: Int64Builder,
    reason: StringBuilder,
    status_message: StringBuilder,
    ips: ListBuilder<StringBuilder>,
    trusted_ip: StringBuilder,
    user_agent: StringBuilder,
    host: StringBuilder,
    api_group: StringBuilder,
    api_version: StringBuilder,
    resource: StringBuilder,
    subresource: StringBuilder,
    namespace: StringBuilder,
    name: StringBuilder,
    request_uri: StringBuilder,
    stage: StringBuilder,
    level: StringBuilder,
    decision: StringBuilder,
    authz_reason: StringBuilder,
    pci: ListBuilder<StringBuilder>,
    message: StringBuilder,
    truncated: BooleanBuilder,
    attrs: StringBuilder,
    quarantine_reason: StringBuilder,
}

impl Default for SegmentBuilder {
    fn default() -> Self {
        Self::new()
    }
}

fn opt(b: &mut StringBuilder, v: Option<&str>) {
    b.append_option(v);
}

fn opt_list(b: &mut ListBuilder<StringBuilder>, v: Option<&[String]>) {
    match v {
        Some(items) => {
            for s in items {
                b.values().append_value(s);
            }
            b.append(true);
        }
        None => b.append(false),
    }
}

impl SegmentBuilder {
    /// An empty builder.
    pub fn new() -> SegmentBuilder {
        Self::with_capacity(0, RawBuffers::default())
    }

    /// An empty builder with room for `rows` records, whose raw payloads go into `raw` (empty
    /// buffers with capacity, typically reclaimed from the previous segment with
    /// [`RawBuffers::reclaim`]), so a segment's largest column grows without reallocating or
    /// touching fresh pages.
    pub fn with_capacity(rows: usize, mut raw: RawBuffers) -> SegmentBuilder {
        raw.clear();
        let tz = || TimestampNanosecondBuilder::with_capacity(rows).with_timezone("UTC");
        SegmentBuilder {
            rows: 0,
            bytes: 0,
            idx: UInt64Builder::with_capacity(rows),
            kind: UInt8Builder::with_capacity(rows),
            received: tz(),
            source: StringBuilder::with_capacity(rows, rows * 8),
            raw,
            leaf_prefix: FixedSizeBinaryBuilder::with_capacity(rows, LEAF_PREFIX as i32),
            format: StringBuilder::new(),
            category: StringBuilder::new(),
            time: tz(),
            user: StringBuilder::new(),
            user_uid: StringBuilder::new(),
            user_groups: ListBuilder::new(StringBuilder::new()),
            impersonated: StringBuilder::new(),
            action: StringBuilder::new(),
            outcome: StringBuilder::new(),
            code: Int64Builder::new(),
            reason: StringBuilder::new(),
            status_message: StringBuilder::new(),
            ips: ListBuilder::new(StringBuilder::new()),
            trusted_ip: StringBuilder::new(),
            user_agent: StringBuilder::new(),
            host: StringBuilder::new(),
            api_group: StringBuilder::new(),
            api_version: StringBuilder::new(),
            resource: StringBuilder::new(),
            subresource: StringBuilder::new(),
            namespace: StringBuilder::new(),
            name: StringBuilder::new(),
            request_uri: StringBuilder::new(),
            stage: StringBuilder::new(),
            level: StringBuilder::new(),
            decision: StringBuilder::new(),
            authz_reason: StringBuilder::new(),
            pci: ListBuilder::new(StringBuilder::new()),
            message: StringBuilder::new(),
            truncated: BooleanBuilder::new(),
            attrs: StringBuilder::new(),
            quarantine_reason: StringBuilder::new(),
        }
    }

    /// Rows held.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Approximate bytes held (raw payloads).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Append one record.
    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &mut self,
        index: u64,
        kind: RecordKind,
        received: Timestamp,
        source: &str,
        raw: &[u8],
        leaf: &Hash,
        x: Extracted<'_>,
    ) {
        self.rows += 1;
        self.bytes += raw.len();
        self.idx.append_value(index);
        self.kind.append_value(kind as u8);
        self.received.append_value(received.0);
        self.source.append_value(source);
        self.raw.push(raw);
        // the prefix length always matches the column width
        let _ = self.leaf_prefix.append_value(&leaf[..LEAF_PREFIX]);
        let ev = match x {
            Extracted::Event(e) => Some(e),
            _ => None,
        };
        let q = match x {
            Extracted::Quarantine(q) => Some(q),
            _ => None,
        };
        opt(&mut self.format, ev.map(|e| e.format.as_str()));
        opt(&mut self.category, ev.and_then(|e| e.category.as_deref()));
        self.time
            .append_option(ev.and_then(|e| e.time).map(|t| t.0));
        opt(
            &mut self.user,
            ev.and_then(|e| e.user.identity.name.as_deref()),
        );
        opt(
            &mut self.user_uid,
            ev.and_then(|e| e.user.identity.uid.as_deref()),
        );
        opt_list(
            &mut self.user_groups,
            ev.and_then(|e| e.user.identity.groups.as_deref()),
        );
        opt(
            &mut self.impersonated,
            ev.and_then(|e| e.user.impersonated.as_ref())
                .and_then(|i| i.name.as_deref()),
        );
        opt(&mut self.action, ev.and_then(|e| e.action.as_deref()));
        opt(&mut self.outcome, ev.map(|e| e.outcome.result.as_str()));
        self.code.append_option(ev.and_then(|e| e.outcome.code));
        opt(
            &mut self.reason,
            ev.and_then(|e| e.outcome.reason.as_deref()),
        );
        opt(
            &mut self.status_message,
            ev.and_then(|e| e.outcome.message.as_deref()),
        );
        opt_list(&mut self.ips, ev.and_then(|e| e.origin.ips.as_deref()));
        opt(
            &mut self.trusted_ip,
            ev.and_then(|e| e.origin.trusted_ip.as_deref()),
        );
        opt(
            &mut self.user_agent,
            ev.and_then(|e| e.origin.user_agent.as_deref()),
        );
        opt(&mut self.host, ev.and_then(|e| e.origin.host.as_deref()));
        opt(
            &mut self.api_group,
            ev.and_then(|e| e.resource.api_group.as_deref()),
        );
        opt(
            &mut self.api_version,
            ev.and_then(|e| e.resource.api_version.as_deref()),
        );
        opt(
            &mut self.resource,
            ev.and_then(|e| e.resource.resource.as_deref()),
        );
        opt(
            &mut self.subresource,
            ev.and_then(|e| e.resource.subresource.as_deref()),
        );
        opt(
            &mut self.namespace,
            ev.and_then(|e| e.resource.namespace.as_deref()),
        );
        opt(&mut self.name, ev.and_then(|e| e.resource.name.as_deref()));
        opt(
            &mut self.request_uri,
            ev.and_then(|e| e.request_uri.as_deref()),
        );
        opt(&mut self.stage, ev.and_then(|e| e.stage.as_deref()));
        opt(&mut self.level, ev.and_then(|e| e.level.as_deref()));
        opt(
            &mut self.decision,
            ev.and_then(|e| e.authz.decision.as_deref()),
        );
        opt(
            &mut self.authz_reason,
            ev.and_then(|e| e.authz.reason.as_deref()),
        );
        match ev {
            Some(e) => {
                for c in e.pci.iter() {
                    self.pci.values().append_value(c.requirement());
                }
                self.pci.append(true);
            }
            None => self.pci.append(false),
        }
        opt(&mut self.message, ev.and_then(|e| e.message.as_deref()));
        self.truncated.append_option(ev.map(|e| e.truncated));
        match ev.filter(|e| !e.attrs.is_empty()) {
            Some(e) => self
                .attrs
                .append_value(serde_json::to_string(&e.attrs).unwrap_or_default()),
            None => self.attrs.append_null(),
        }
        opt(&mut self.quarantine_reason, q.map(|q| q.reason.as_str()));
    }

    /// Take the rows as a record batch (the builder is left empty).
    pub fn finish(&mut self) -> Result<RecordBatch, LedgerError> {
        let cols: Vec<ArrayRef> = vec![
            Arc::new(self.idx.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.received.finish()),
            Arc::new(self.source.finish()),
            Arc::new(self.raw.finish()?),
            Arc::new(self.leaf_prefix.finish()),
            Arc::new(self.format.finish()),
            Arc::new(self.category.finish()),
            Arc::new(self.time.finish()),
            Arc::new(self.user.finish()),
            Arc::new(self.user_uid.finish()),
            Arc::new(self.user_groups.finish()),
            Arc::new(self.impersonated.finish()),
            Arc::new(self.action.finish()),
            Arc::new(self.outcome.finish()),
            Arc::new(self.code.finish()),
            Arc::new(self.reason.finish()),
            Arc::new(self.status_message.finish()),
            Arc::new(self.ips.finish()),
            Arc::new(self.trusted_ip.finish()),
            Arc::new(self.user_agent.finish()),
            Arc::new(self.host.finish()),
            Arc::new(self.api_group.finish()),
            Arc::new(self.api_version.finish()),
            Arc::new(self.resource.finish()),
            Arc::new(self.subresource.finish()),
            Arc::new(self.namespace.finish()),
            Arc::new(self.name.finish()),
            Arc::new(self.request_uri.finish()),
            Arc::new(self.stage.finish()),
            Arc::new(self.level.finish()),
            Arc::new(self.decision.finish()),
            Arc::new(self.authz_reason.finish()),
            Arc::new(self.pci.finish()),
            Arc::new(self.message.finish()),
            Arc::new(self.truncated.finish()),
            Arc::new(self.attrs.finish()),
            Arc::new(self.quarantine_reason.finish()),
        ];
        self.rows = 0;
        self.bytes = 0;
        RecordBatch::try_new(schema(), cols)
            .map_err(|e| LedgerError::Invalid(format!("building segment rows: {e}")))
    }
}

/// Most raw bytes one segment may hold (the column's offsets are 32-bit); the writer seals
/// before a record would cross it.
pub const MAX_SEGMENT_RAW: usize = 1 << 30;

/// The `raw` column under construction: payload bytes and their offsets, kept as plain vectors
/// so the writer can hand them back and forth with the sealer instead of allocating (and
/// page-faulting) a fresh column for every segment.
#[derive(Debug)]
pub struct RawBuffers {
    values: Vec<u8>,
    offsets: Vec<i32>,
}

impl Default for RawBuffers {
    fn default() -> Self {
        RawBuffers {
            values: Vec::new(),
            offsets: vec![0],
        }
    }
}

impl RawBuffers {
    /// Empty buffers with room for `rows` payloads totalling `bytes`.
    pub fn with_capacity(rows: usize, bytes: usize) -> RawBuffers {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        RawBuffers {
            values: Vec::with_capacity(bytes),
            offsets,
        }
    }

    /// Bytes of payload the buffers can hold without reallocating.
    pub fn capacity(&self) -> usize {
        self.values.capacity()
    }

    fn clear(&mut self) {
        self.values.clear();
        self.offsets.clear();
        self.offsets.push(0);
    }

    fn push(&mut self, raw: &[u8]) {
        self.values.extend_from_slice(raw);
        // the writer seals before MAX_SEGMENT_RAW, far below i32::MAX
        self.offsets
            .push(i32::try_from(self.values.len()).unwrap_or(i32::MAX));
    }

    fn finish(&mut self) -> Result<BinaryArray, LedgerError> {
        let values = std::mem::take(&mut self.values);
        let offsets = std::mem::replace(&mut self.offsets, vec![0]);
        if values.len() > MAX_SEGMENT_RAW {
            return Err(LedgerError::Invalid(format!(
                "segment raw column of {} bytes exceeds {MAX_SEGMENT_RAW}",
                values.len()
            )));
        }
        let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
        BinaryArray::try_new(offsets, Buffer::from_vec(values), None)
            .map_err(|e| LedgerError::Invalid(format!("building the raw column: {e}")))
    }

    /// Take back the `raw` column's buffers from a segment batch that is no longer needed, if
    /// nothing else holds them.
    pub fn reclaim(mut batch: RecordBatch) -> Option<RawBuffers> {
        let i = batch.schema().index_of("raw").ok()?;
        let col = batch.remove_column(i);
        drop(batch);
        let arr = col.as_any().downcast_ref::<BinaryArray>()?.clone();
        drop(col);
        let (offsets, values, _) = arr.into_parts();
        let values = values.into_vec::<u8>().ok()?;
        let offsets = offsets.into_inner().into_inner().into_vec::<i32>().ok()?;
        let mut raw = RawBuffers { values, offsets };
        raw.clear();
        Some(raw)
    }
}

/// Binding of a segment file to its ledger and range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentMeta {
    /// Ledger origin.
    pub origin: String,
    /// First index.
    pub first: u64,
    /// Last index (inclusive).
    pub last: u64,
    /// Tree root at size `last + 1` (base64).
    pub seal_root: String,
}

/// Write `batches` as a Parquet segment at `path` (the caller renames it into place).
pub fn write(
    path: &Path,
    meta: &SegmentMeta,
    batches: &[RecordBatch],
    zstd_level: i32,
) -> Result<u64, LedgerError> {
    write_hashed(path, meta, batches, zstd_level).map(|(len, _)| len)
}

/// A file writer that hashes what goes through it.
struct Sha256Writer {
    file: File,
    hash: sha2::Sha256,
}

impl std::io::Write for Sha256Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        sha2::Digest::update(&mut self.hash, &buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// [`write`], returning the file's length and its SHA-256 (hex), hashed as it is written
/// rather than read back (a segment is tens of megabytes).
pub fn write_hashed(
    path: &Path,
    meta: &SegmentMeta,
    batches: &[RecordBatch],
    zstd_level: i32,
) -> Result<(u64, String), LedgerError> {
    let io = |e: std::io::Error| LedgerError::Io {
        context: format!("writing segment {}", path.display()),
        source: e,
    };
    let pq = |e: parquet::errors::ParquetError| {
        LedgerError::Invalid(format!("writing segment {}: {e}", path.display()))
    };
    let level = ZstdLevel::try_new(zstd_level).map_err(pq)?;
    let kv = vec![
        KeyValue::new("trailwarden.format".to_string(), SEGMENT_FORMAT.to_string()),
        KeyValue::new("trailwarden.origin".to_string(), meta.origin.clone()),
        KeyValue::new("trailwarden.first".to_string(), meta.first.to_string()),
        KeyValue::new("trailwarden.last".to_string(), meta.last.to_string()),
        KeyValue::new("trailwarden.seal_root".to_string(), meta.seal_root.clone()),
        KeyValue::new(
            "trailwarden.leaf".to_string(),
            "SHA-256(0x00 || \"TWR1\" || 0x01 || kind u8 || 0u16 || idx u64 || received i64 ns || len(source) u16 || source || len(raw) u32 || raw), all big-endian".to_string(),
        ),
    ];
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_max_row_group_row_count(Some(128 * 1024))
        .set_data_page_size_limit(4 << 20)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_key_value_metadata(Some(kv));
    for col in ["raw", "leaf_prefix"] {
        props = props
            .set_column_dictionary_enabled(ColumnPath::from(col), false)
            .set_column_statistics_enabled(ColumnPath::from(col), EnabledStatistics::None);
    }
    props =
        props.set_column_compression(ColumnPath::from("leaf_prefix"), Compression::UNCOMPRESSED);
    // Sequences and timestamps: deltas are small.
    for col in ["idx", "received", "time"] {
        props = props
            .set_column_dictionary_enabled(ColumnPath::from(col), false)
            .set_column_encoding(ColumnPath::from(col), Encoding::DELTA_BINARY_PACKED);
    }
    let props = props.build();
    let file = Sha256Writer {
        file: File::create(path).map_err(io)?,
        hash: sha2::Digest::new(),
    };
    let mut w = ArrowWriter::try_new(file, schema(), Some(props)).map_err(pq)?;
    for b in batches {
        w.write(b).map_err(pq)?;
    }
    let mut out = w.into_inner().map_err(pq)?;
    std::io::Write::flush(&mut out).map_err(io)?;
    out.file.sync_all().map_err(io)?;
    let len = out.file.metadata().map_err(io)?.len();
    Ok((len, hex::encode(sha2::Digest::finalize(out.hash))))
}

/// Run a Parquet read of `path`, turning a panic of the reader into an error: the arrow and
/// parquet crates panic on some corrupted footers (a flipped bit in the embedded Arrow schema:
/// "Int type with bit width of 0"), and a damaged file must be reported, not crash `verify`.
fn guarded<T>(path: &Path, f: impl FnOnce() -> Result<T, LedgerError>) -> Result<T, LedgerError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let why = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        Err(LedgerError::Corrupt(format!(
            "segment {} cannot be read: the Parquet reader failed on it ({why})",
            path.display()
        )))
    })
}

/// Read a segment's binding metadata.
pub fn read_meta(path: &Path) -> Result<SegmentMeta, LedgerError> {
    guarded(path, || read_meta_unguarded(path))
}

fn read_meta_unguarded(path: &Path) -> Result<SegmentMeta, LedgerError> {
    let f = File::open(path).map_err(|e| LedgerError::Io {
        context: format!("opening segment {}", path.display()),
        source: e,
    })?;
    let b = ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| {
        LedgerError::Invalid(format!(
            "segment {} is not a readable Parquet file: {e}",
            path.display()
        ))
    })?;
    let kv = b
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .cloned()
        .unwrap_or_default();
    let get = |k: &str| kv.iter().find(|e| e.key == k).and_then(|e| e.value.clone());
    let num = |k: &str| -> Result<u64, LedgerError> {
        get(k)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| LedgerError::Invalid(format!("segment {} lacks {k}", path.display())))
    };
    if get("trailwarden.format").as_deref() != Some(SEGMENT_FORMAT) {
        return Err(LedgerError::Invalid(format!(
            "{} is not a trailwarden segment",
            path.display()
        )));
    }
    Ok(SegmentMeta {
        origin: get("trailwarden.origin").unwrap_or_default(),
        first: num("trailwarden.first")?,
        last: num("trailwarden.last")?,
        seal_root: get("trailwarden.seal_root").unwrap_or_default(),
    })
}

/// One row's hashed fields, borrowed from the decoded column batch.
#[derive(Clone, Copy, Debug)]
pub struct HashedRef<'a> {
    /// Leaf index.
    pub index: u64,
    /// Kind code (may be invalid if tampered).
    pub kind: u8,
    /// Receive time.
    pub received: Timestamp,
    /// Source label.
    pub source: &'a str,
    /// Raw bytes.
    pub raw: &'a [u8],
    /// Stored leaf-hash prefix.
    pub leaf_prefix: &'a [u8],
    /// The extracted format, for events.
    pub format: Option<&'a str>,
}

/// Stream the hashed fields of a segment, row by row (nothing is copied).
pub fn for_each_hashed(
    path: &Path,
    f: impl FnMut(HashedRef<'_>) -> Result<(), LedgerError>,
) -> Result<(), LedgerError> {
    guarded(path, || for_each_hashed_unguarded(path, f))
}

/// Stream the hashed fields of the rows of a segment whose first record is `first` and whose
/// indexes are in `want` (sorted, deduplicated): a segment holds its records in index order
/// without gaps, so a record's row is its index minus `first`, and the Parquet reader decodes
/// only the pages those rows are in. Rows whose index is not in `want` are never passed to `f`.
pub fn for_each_hashed_of(
    path: &Path,
    first: u64,
    want: &[u64],
    f: impl FnMut(HashedRef<'_>) -> Result<(), LedgerError>,
) -> Result<(), LedgerError> {
    guarded(path, || {
        for_each_hashed_rows(path, Some(rows_of(first, want)), want, f)
    })
}

/// Runs of skipped and selected rows for the records `want` of a segment starting at `first`.
fn rows_of(first: u64, want: &[u64]) -> parquet::arrow::arrow_reader::RowSelection {
    use parquet::arrow::arrow_reader::RowSelector;
    let mut sel = Vec::new();
    let mut at = 0usize;
    for &i in want {
        let Some(row) = i.checked_sub(first).and_then(|r| usize::try_from(r).ok()) else {
            continue;
        };
        if row < at {
            continue;
        }
        if row > at {
            sel.push(RowSelector::skip(row - at));
        }
        match sel.last_mut() {
            Some(last) if !last.skip => last.row_count += 1,
            _ => sel.push(RowSelector::select(1)),
        }
        at = row + 1;
    }
    sel.into()
}

fn for_each_hashed_unguarded(
    path: &Path,
    f: impl FnMut(HashedRef<'_>) -> Result<(), LedgerError>,
) -> Result<(), LedgerError> {
    for_each_hashed_rows(path, None, &[], f)
}

/// The rows of `selection` (all when `None`); with a selection, only rows whose index is in
/// `want` reach `f`.
fn for_each_hashed_rows(
    path: &Path,
    selection: Option<parquet::arrow::arrow_reader::RowSelection>,
    want: &[u64],
    mut f: impl FnMut(HashedRef<'_>) -> Result<(), LedgerError>,
) -> Result<(), LedgerError> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{TimestampNanosecondType, UInt64Type, UInt8Type};
    let file = File::open(path).map_err(|e| LedgerError::Io {
        context: format!("opening segment {}", path.display()),
        source: e,
    })?;
    let bad = |e: &dyn std::fmt::Display| {
        LedgerError::Corrupt(format!("segment {} cannot be read: {e}", path.display()))
    };
    let selected = selection.is_some();
    let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(
        file,
        // with a selection, the page index lets the reader skip whole pages (optional: a
        // segment written without one is still read, row by row)
        parquet::arrow::arrow_reader::ArrowReaderOptions::new().with_page_index_policy(
            if selected {
                parquet::file::metadata::PageIndexPolicy::Optional
            } else {
                parquet::file::metadata::PageIndexPolicy::Skip
            },
        ),
    )
    .map_err(|e| bad(&e))?;
    let mut cols = HASHED_COLUMNS.to_vec();
    cols.push(FORMAT_COLUMN);
    let mask = ProjectionMask::roots(builder.parquet_schema(), cols);
    let mut builder = builder.with_projection(mask).with_batch_size(8192);
    if let Some(sel) = selection {
        builder = builder.with_row_selection(sel);
    }
    let reader = builder.build().map_err(|e| bad(&e))?;
    for batch in reader {
        let batch = batch.map_err(|e| bad(&e))?;
        if batch.num_columns() != 7 {
            return Err(bad(&"unexpected columns"));
        }
        let idx = batch
            .column(0)
            .as_primitive_opt::<UInt64Type>()
            .ok_or_else(|| bad(&"idx is not UInt64"))?;
        let kind = batch
            .column(1)
            .as_primitive_opt::<UInt8Type>()
            .ok_or_else(|| bad(&"kind is not UInt8"))?;
        let rec = batch
            .column(2)
            .as_primitive_opt::<TimestampNanosecondType>()
            .ok_or_else(|| bad(&"received is not a timestamp"))?;
        let src = batch
            .column(3)
            .as_string_opt::<i32>()
            .ok_or_else(|| bad(&"source is not a string"))?;
        let raw = batch
            .column(4)
            .as_binary_opt::<i32>()
            .ok_or_else(|| bad(&"raw is not binary"))?;
        let leaf = batch
            .column(5)
            .as_fixed_size_binary_opt()
            .ok_or_else(|| bad(&"leaf_prefix is not fixed binary"))?;
        let format = batch
            .column(6)
            .as_string_opt::<i32>()
            .ok_or_else(|| bad(&"format is not a string"))?;
        for i in 0..batch.num_rows() {
            if idx.is_null(i) || raw.is_null(i) || leaf.is_null(i) || src.is_null(i) {
                return Err(bad(&format!("null hashed field in row {i}")));
            }
            if selected && want.binary_search(&idx.value(i)).is_err() {
                // not the row its index should be at: the caller finds the record missing
                continue;
            }
            f(HashedRef {
                index: idx.value(i),
                kind: kind.value(i),
                received: Timestamp(rec.value(i)),
                source: src.value(i),
                raw: raw.value(i),
                leaf_prefix: leaf.value(i),
                format: (!format.is_null(i)).then(|| format.value(i)),
            })?;
        }
    }
    Ok(())
}
