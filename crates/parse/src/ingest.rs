//! The ingest driver: frames an input into records, detects each record's format, parses,
//! classifies, and hands every record — parsed or quarantined — to a [`RecordSink`].
//!
//! Framing works line by line so that JSONL, pretty-printed documents, and text formats can be
//! mixed in one input:
//! - a line starting with `{` or `[` that parses on its own is one JSON unit;
//! - a line that starts a JSON value and ends with `{`, `[`, `,` or `:` (how pretty-printers break
//!   lines) starts a multi-line document that runs until its brackets balance; a line starting
//!   with `{"` at column 0 while a document is open means the document was cut off (it is
//!   quarantined and the new line starts over);
//! - other lines are auditd records, CRI container lines, or syslog messages.
//!
//! JSON units that are containers — `EventList` (`items`), Event Hub bodies (`records`), JSON
//! arrays, Graph API pages (`value`) — are split into their items, each keeping the exact bytes
//! it had in the input.

use crate::error::{FormatError, ParseError};
use crate::input::{self, LineReader};
use crate::jsonscan::{Balance, BalanceState};
use crate::{aks, app, auditd, azure, cloud, container, gke, k8s, syslog};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::BufRead;
use trailwarden_model::{Body, Classifier, Event, Format, Location, Quarantine, Record, Timestamp};

/// Ingest options.
#[derive(Clone, Debug)]
pub struct Options {
    /// Force a format (`None` = detect per record).
    pub format: Option<Format>,
    /// Records larger than this are quarantined (default 1 MiB).
    pub max_record_bytes: usize,
    /// At most this many raw bytes of a quarantined record are kept; beyond, its length and
    /// SHA-256 are recorded (default 16 MiB).
    pub max_quarantine_bytes: usize,
    /// Largest JSON document (e.g. an `EventList` batch) read as a whole (default 256 MiB).
    pub max_document_bytes: usize,
    /// auditd: records after which an event without `EOE` is considered complete (default 64).
    pub auditd_window: usize,
    /// The PCI DSS classifier.
    pub classifier: Classifier,
    /// Pull these paths' values out of each Kubernetes event's `requestObject` while parsing
    /// it ([`trailwarden_model::Event::pulled`]; the detection engine's
    /// `Engine::paths`), so detection need not read the object's JSON again.
    pub pull: Option<std::sync::Arc<crate::paths::Paths>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            format: None,
            max_record_bytes: 1 << 20,
            max_quarantine_bytes: 16 << 20,
            max_document_bytes: 256 << 20,
            auditd_window: 64,
            classifier: Classifier::default(),
            pull: None,
        }
    }
}

/// Receives every record produced, in input order (auditd and split container lines are
/// emitted when complete).
pub trait RecordSink {
    /// Take one record. An error stops the ingest.
    fn accept(&mut self, record: Record) -> Result<(), String>;
}

impl<F: FnMut(Record) -> Result<(), String>> RecordSink for F {
    fn accept(&mut self, record: Record) -> Result<(), String> {
        self(record)
    }
}

/// One problem found in the input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// Source label.
    pub source: String,
    /// 1-based line.
    pub line: u64,
    /// Byte offset.
    pub offset: u64,
    /// Format the record was read as, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    /// What was wrong.
    pub reason: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: line {}, byte {}: {}",
            self.source, self.line, self.offset, self.reason
        )
    }
}

/// Per-input counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputSummary {
    /// Source label.
    pub source: String,
    /// Compression detected.
    pub compression: String,
    /// Decompressed bytes read.
    pub bytes: u64,
    /// Records produced (events + quarantined).
    pub records: u64,
    /// Of which quarantined.
    pub quarantined: u64,
    /// The input started with a UTF-8 byte-order mark (an encoding mark, not part of any record).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bom: bool,
}

/// What an ingest did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Records produced: events plus quarantined records.
    pub records: u64,
    /// Records parsed into events.
    pub events: u64,
    /// Records quarantined.
    pub quarantined: u64,
    /// Events per format.
    pub by_format: BTreeMap<String, u64>,
    /// Events the source had truncated (kept and flagged).
    pub truncated_events: u64,
    /// Blank lines skipped (they carry no record).
    pub blank_lines: u64,
    /// Decompressed bytes read.
    pub bytes: u64,
    /// Per input.
    pub inputs: Vec<InputSummary>,
    /// The first problems found (at most 1000).
    pub errors: Vec<Problem>,
    /// Problems beyond the first 1000 (counted, not listed).
    pub errors_omitted: u64,
}

const MAX_LISTED_ERRORS: usize = 1000;

/// Per-input parsing state.
struct Stream {
    source: String,
    sticky: Option<Format>,
    auditd: auditd::Assembler,
    containers: container::Reassembler,
    records: u64,
    quarantined: u64,
    /// Attributes of the envelope being opened (CloudWatch log group, Pub/Sub subscription),
    /// given to every event inside it.
    attrs: Vec<(String, String)>,
    /// Envelopes open around the current record.
    depth: u8,
}

/// Envelopes inside envelopes deeper than this are quarantined.
const MAX_ENVELOPE_DEPTH: u8 = 4;

/// Drives parsing of inputs into a sink.
pub struct Ingestor<'s> {
    opts: Options,
    sink: &'s mut dyn RecordSink,
    clock: Box<dyn Fn() -> Timestamp + 's>,
    summary: Summary,
}

/// Marker: a JSON unit ended before its value did.
struct Incomplete;

#[derive(Deserialize)]
struct Container<'a> {
    #[serde(borrow, default)]
    kind: Option<&'a RawValue>,
    #[serde(borrow, default)]
    items: MaybeList<'a>,
    #[serde(borrow, default)]
    records: MaybeList<'a>,
    #[serde(borrow, default)]
    value: MaybeList<'a>,
    #[serde(borrow, default, rename = "@odata.context")]
    odata: Option<&'a RawValue>,
}

/// The raw items of a member when it is an array; `None` for any other value (a member named
/// `value` or `items` may be a plain field of some record).
#[derive(Default)]
struct MaybeList<'a>(Option<Vec<&'a RawValue>>);

impl<'de: 'a, 'a> Deserialize<'de> for MaybeList<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = MaybeList<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(64));
                while let Some(item) = seq.next_element::<&'de RawValue>()? {
                    items.push(item);
                }
                Ok(MaybeList(Some(items)))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                while map
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(MaybeList(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(MaybeList(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(MaybeList(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(MaybeList(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(MaybeList(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(MaybeList(None))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(MaybeList(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// Whether a JSON object starts like a container as producers write them.
fn looks_like_container(bytes: &[u8]) -> bool {
    let b = trim_start(&bytes[1..]);
    b.starts_with(b"\"kind\":\"EventList\"")
        || b.starts_with(b"\"kind\": \"EventList\"")
        || b.starts_with(b"\"records\"")
        || b.starts_with(b"\"items\"")
        || b.starts_with(b"\"@odata.context\"")
}

impl<'s> Ingestor<'s> {
    /// An ingestor writing to `sink`, stamping records with the wall clock.
    pub fn new(opts: Options, sink: &'s mut dyn RecordSink) -> Ingestor<'s> {
        Ingestor {
            opts,
            sink,
            clock: Box::new(Timestamp::now),
            summary: Summary::default(),
        }
    }

    /// Use another clock for receive times (replays, reproducible tests).
    pub fn with_clock(mut self, clock: impl Fn() -> Timestamp + 's) -> Self {
        self.clock = Box::new(clock);
        self
    }

    /// The summary so far.
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// Finish and return the summary.
    pub fn into_summary(self) -> Summary {
        self.summary
    }

    /// Ingest a file (`-` = stdin), decompressing gzip / zstd transparently. `progress` is
    /// called with (compressed bytes consumed, total size if known) as the input is read.
    pub fn ingest_path(
        &mut self,
        path: &str,
        progress: &mut dyn FnMut(u64, Option<u64>),
    ) -> Result<(), ParseError> {
        let inp = input::open(path)?;
        let compression = format!("{:?}", inp.compression).to_lowercase();
        let consumed = inp.consumed.clone();
        let size = inp.size;
        let mut tick = || progress(consumed.load(std::sync::atomic::Ordering::Relaxed), size);
        self.ingest_reader_with(&inp.source, &compression, inp.reader, &mut tick)
    }

    /// Ingest any buffered reader under a source label.
    pub fn ingest_reader(&mut self, source: &str, reader: impl BufRead) -> Result<(), ParseError> {
        self.ingest_reader_with(source, "none", reader, &mut || {})
    }

    /// Ingest one in-memory body (e.g. an HTTP request) under a source label.
    pub fn ingest_bytes(&mut self, source: &str, bytes: &[u8]) -> Result<(), ParseError> {
        self.ingest_reader(source, bytes)
    }

    fn ingest_reader_with(
        &mut self,
        source: &str,
        compression: &str,
        reader: impl BufRead,
        tick: &mut dyn FnMut(),
    ) -> Result<(), ParseError> {
        let mut st = Stream {
            source: source.to_string(),
            sticky: self.opts.format,
            auditd: auditd::Assembler::new(self.opts.auditd_window),
            containers: container::Reassembler::new(),
            records: 0,
            quarantined: 0,
            attrs: Vec::new(),
            depth: 0,
        };
        let mut lines = LineReader::new(reader, self.opts.max_document_bytes);
        // An open multi-line JSON document.
        let mut doc: Option<OpenDoc> = None;
        let mut n: u64 = 0;
        loop {
            let line = match lines.next_line() {
                Ok(Some(l)) => l,
                Ok(None) => break,
                Err(e) => {
                    return Err(ParseError::Read {
                        source_name: source.to_string(),
                        source: e,
                    })
                }
            };
            n += 1;
            if n.is_multiple_of(4096) {
                tick();
            }
            let loc = Location {
                line: line.number,
                offset: line.offset,
            };
            if let Some((len, digest)) = line.overflow {
                let raw = line.bytes.to_vec();
                if let Some(d) = doc.take() {
                    self.quarantine_doc(&mut st, d, "JSON document cut off by an over-long line")?;
                }
                self.quarantine(
                    &mut st,
                    raw,
                    loc,
                    None,
                    format!(
                        "line of {len} bytes exceeds the {} byte document limit",
                        self.opts.max_document_bytes
                    ),
                    Some((len, digest)),
                )?;
                continue;
            }
            let bytes = line.bytes;
            if let Some(mut d) = doc.take() {
                if bytes.starts_with(b"{\"") && d.balance.depth() > 0 {
                    // A compact object at column 0 inside a pretty document: the document was
                    // cut off. Quarantine it and read this line afresh.
                    self.quarantine_doc(
                        &mut st,
                        d,
                        "JSON document ends before its closing bracket",
                    )?;
                } else {
                    d.buf.push(b'\n');
                    let start = d.buf.len();
                    d.buf.extend_from_slice(bytes);
                    match d.balance.feed(bytes) {
                        BalanceState::Open if d.buf.len() > self.opts.max_document_bytes => {
                            self.quarantine_doc(
                                &mut st,
                                d,
                                "JSON document exceeds the document limit",
                            )?;
                        }
                        BalanceState::Open => doc = Some(d),
                        BalanceState::Invalid => {
                            self.quarantine_doc(
                                &mut st,
                                d,
                                "unbalanced brackets in JSON document",
                            )?;
                        }
                        BalanceState::Closed(end) => {
                            let trailing = d.buf.split_off(start + end);
                            if self.json_unit(&mut st, &d.buf, &d.loc)?.is_err() {
                                self.quarantine_doc(&mut st, d, "JSON document is incomplete")?;
                            }
                            let rest = trim(&trailing);
                            if !rest.is_empty() {
                                let off = loc.offset + (bytes.len() - trailing.len()) as u64;
                                self.quarantine(
                                    &mut st,
                                    rest.to_vec(),
                                    Location {
                                        line: loc.line,
                                        offset: off,
                                    },
                                    None,
                                    "unexpected text after the end of a JSON document".into(),
                                    None,
                                )?;
                            }
                        }
                    }
                    continue;
                }
            }
            let t = trim(bytes);
            if t.is_empty() {
                self.summary.blank_lines += 1;
                continue;
            }
            let lead = bytes.len() - trim_start(bytes).len();
            let loc = Location {
                line: loc.line,
                offset: loc.offset + lead as u64,
            };
            if t[0] == b'{' || t[0] == b'[' {
                if self.json_unit(&mut st, t, &loc)?.is_err() {
                    let last = *t.last().unwrap_or(&b' ');
                    if matches!(last, b'{' | b'[' | b',' | b':') {
                        let mut bal = Balance::new();
                        if bal.feed(t) == BalanceState::Open {
                            doc = Some(OpenDoc {
                                buf: t.to_vec(),
                                loc,
                                balance: bal,
                            });
                            continue;
                        }
                    }
                    let forced = self.opts.format;
                    self.quarantine(
                        &mut st,
                        t.to_vec(),
                        loc,
                        forced,
                        "JSON record ends before its value does (truncated line)".into(),
                        None,
                    )?;
                }
            } else {
                self.text_line(&mut st, t, loc)?;
            }
        }
        tick();
        if let Some(d) = doc.take() {
            self.quarantine_doc(
                &mut st,
                d,
                "JSON document is not closed before the end of the input",
            )?;
        }
        for a in st.auditd.flush() {
            self.emit(&mut st, a.raw, a.location, a.event)?;
        }
        for a in st.containers.flush() {
            self.emit(&mut st, a.raw, a.location, a.event)?;
        }
        let bytes = lines.offset();
        self.summary.bytes += bytes;
        self.summary.inputs.push(InputSummary {
            source: st.source.clone(),
            compression: compression.to_string(),
            bytes,
            records: st.records,
            quarantined: st.quarantined,
            bom: lines.had_bom(),
        });
        Ok(())
    }

    /// Handle one complete JSON unit (a line or a document). `Err(Incomplete)` when the bytes
    /// end before the JSON value does.
    fn json_unit(
        &mut self,
        st: &mut Stream,
        bytes: &[u8],
        loc: &Location,
    ) -> Result<Result<(), Incomplete>, ParseError> {
        if bytes[0] == b'[' {
            return match serde_json::from_slice::<Vec<&RawValue>>(bytes) {
                Ok(items) => {
                    self.items(st, bytes, &items, loc)?;
                    Ok(Ok(()))
                }
                Err(e) if e.is_eof() => Ok(Err(Incomplete)),
                Err(e) => {
                    let forced = self.opts.format;
                    self.quarantine(
                        st,
                        bytes.to_vec(),
                        loc.clone(),
                        forced,
                        format!("invalid JSON array: {e}"),
                        None,
                    )?;
                    Ok(Ok(()))
                }
            };
        }
        // Containers as real producers write them (API server EventList, Event Hub body) are
        // recognized by their first key; anything else goes through the sticky fast path first.
        if !looks_like_container(bytes) {
            if let Some(f) = st.sticky {
                if let Some(r) = self.try_sticky(st, f, bytes, loc)? {
                    return Ok(r);
                }
            }
        }
        let c: Container = match serde_json::from_slice(bytes) {
            Ok(c) => c,
            Err(e) if e.is_eof() => return Ok(Err(Incomplete)),
            Err(e) => {
                let forced = self.opts.format;
                self.quarantine(
                    st,
                    bytes.to_vec(),
                    loc.clone(),
                    forced,
                    format!("invalid JSON: {e}"),
                    None,
                )?;
                return Ok(Ok(()));
            }
        };
        let event_list = c.kind.is_some_and(|k| k.get() == "\"EventList\"");
        let items = if event_list || c.kind.is_none() {
            c.items.0
        } else {
            None
        }
        .or(c.records.0)
        .or(if c.odata.is_some() { c.value.0 } else { None });
        match items {
            Some(items) => self.items(st, bytes, &items, loc)?,
            None if event_list => {
                // An EventList without items carries no events; keep it visible.
                self.quarantine(
                    st,
                    bytes.to_vec(),
                    loc.clone(),
                    Some(Format::K8sAudit),
                    "EventList without an `items` array".into(),
                    None,
                )?;
            }
            None => self.object(st, bytes, loc)?,
        }
        Ok(Ok(()))
    }

    /// Handle the items of a container; each keeps its exact bytes and its own location.
    fn items(
        &mut self,
        st: &mut Stream,
        doc: &[u8],
        items: &[&RawValue],
        loc: &Location,
    ) -> Result<(), ParseError> {
        let base = doc.as_ptr() as usize;
        let (mut last_off, mut line) = (0usize, loc.line);
        for item in items {
            let b = item.get().as_bytes();
            let off = (b.as_ptr() as usize).saturating_sub(base).min(doc.len());
            line += memchr::memchr_iter(b'\n', &doc[last_off..off]).count() as u64;
            last_off = off;
            let iloc = Location {
                line,
                offset: loc.offset + off as u64,
            };
            if b.first() != Some(&b'{') {
                let forced = self.opts.format;
                self.quarantine(
                    st,
                    b.to_vec(),
                    iloc,
                    forced,
                    "container item is not a JSON object".into(),
                    None,
                )?;
                continue;
            }
            if let Some(f) = st.sticky {
                if self.try_sticky(st, f, b, &iloc)?.is_some() {
                    continue;
                }
            }
            self.object(st, b, &iloc)?;
        }
        Ok(())
    }

    /// Run a Kubernetes parser (direct, AKS, GKE, CloudWatch) pulling the request-object
    /// fields of [`Options::pull`].
    fn pulling<R>(&self, parse: impl FnOnce() -> R) -> R {
        crate::paths::pulling(self.opts.pull.as_ref(), parse)
    }

    /// Parse with the stream's current format. `Ok(None)` = not that format; fall back to
    /// detection.
    fn try_sticky(
        &mut self,
        st: &mut Stream,
        f: Format,
        bytes: &[u8],
        loc: &Location,
    ) -> Result<Option<Result<(), Incomplete>>, ParseError> {
        if bytes.len() > self.opts.max_record_bytes {
            return Ok(None);
        }
        let parsed = match f {
            Format::K8sAudit => self.pulling(|| k8s::parse_event(bytes)),
            Format::Aks => self.pulling(|| aks::parse_record(bytes)),
            Format::Docker => {
                return match st.containers.push_docker(bytes, loc.clone()) {
                    Ok(done) => {
                        if let Some(a) = done {
                            self.emit(st, a.raw, a.location, a.event)?;
                        }
                        Ok(Some(Ok(())))
                    }
                    Err(_) => Ok(None),
                }
            }
            _ => return Ok(None),
        };
        match parsed {
            Ok(ev) => {
                self.emit(st, bytes.to_vec(), loc.clone(), ev)?;
                Ok(Some(Ok(())))
            }
            Err(_) => Ok(None),
        }
    }

    /// Detect the format of one JSON object and parse it.
    fn object(&mut self, st: &mut Stream, bytes: &[u8], loc: &Location) -> Result<(), ParseError> {
        if bytes.len() > self.opts.max_record_bytes && !cloud::looks_like_envelope(bytes) {
            return self.quarantine(
                st,
                bytes.to_vec(),
                loc.clone(),
                st.sticky,
                format!(
                    "record of {} bytes exceeds the {} byte record limit",
                    bytes.len(),
                    self.opts.max_record_bytes
                ),
                None,
            );
        }
        let map: Map<String, Value> = match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(m)) => m,
            Ok(_) => {
                return self.quarantine(
                    st,
                    bytes.to_vec(),
                    loc.clone(),
                    st.sticky,
                    "expected a JSON object".into(),
                    None,
                )
            }
            Err(e) => {
                let reason = if e.is_eof() {
                    format!("JSON record ends before its value does: {e}")
                } else {
                    format!("invalid JSON: {e}")
                };
                return self.quarantine(
                    st,
                    bytes.to_vec(),
                    loc.clone(),
                    self.opts.format,
                    reason,
                    None,
                );
            }
        };
        if cloud::is_envelope(&map) {
            return self.envelope(st, &map, bytes, loc);
        }
        let detected = match self.opts.format {
            Some(f) => Some(f),
            None => detect(&map),
        };
        let Some(format) = detected else {
            let mut keys: Vec<&str> = map.keys().map(String::as_str).take(12).collect();
            keys.sort_unstable();
            let hint = match map.get("kind") {
                Some(k) if !k.is_string() => {
                    format!("; `kind` is {k}, not a string such as \"Event\"")
                }
                _ => String::new(),
            };
            return self.quarantine(
                st,
                bytes.to_vec(),
                loc.clone(),
                None,
                format!("unrecognized JSON object (keys: {}){hint}", keys.join(", ")),
                None,
            );
        };
        let result = match format {
            Format::K8sAudit => self.pulling(|| k8s::parse_event(bytes)),
            Format::Aks => {
                if is_aks_table_row(&map) {
                    self.pulling(|| aks_table_row(bytes))
                } else {
                    self.pulling(|| aks::parse_record(bytes))
                }
            }
            Format::Gke => self.pulling(|| gke::parse_entry(&map)),
            Format::AzureActivity => {
                if azure::is_activity(&map) {
                    azure::activity_from(&map)
                } else {
                    Err(FormatError::NotThisFormat("an Azure Activity Log record"))
                }
            }
            Format::Signin => {
                if azure::is_signin(&map) {
                    azure::signin_from(&map)
                } else {
                    Err(FormatError::NotThisFormat("an Entra ID sign-in record"))
                }
            }
            Format::EntraAudit => {
                if azure::is_entra_audit(&map) {
                    azure::entra_audit_from(&map)
                } else {
                    Err(FormatError::NotThisFormat(
                        "an Entra ID directory audit record",
                    ))
                }
            }
            Format::App => {
                if app::is_app_event(&map) {
                    app::from_object(&map)
                } else {
                    Err(FormatError::NotThisFormat("an application audit event"))
                }
            }
            Format::Syslog => {
                if syslog::is_row(&map) {
                    syslog::parse_row(&map)
                } else {
                    Err(FormatError::NotThisFormat("a Log Analytics Syslog row"))
                }
            }
            Format::Docker => {
                return match st.containers.push_docker(bytes, loc.clone()) {
                    Ok(done) => {
                        st.sticky = self.opts.format.or(Some(Format::Docker));
                        if let Some(a) = done {
                            self.emit(st, a.raw, a.location, a.event)?;
                        }
                        Ok(())
                    }
                    Err(e) => self.quarantine(
                        st,
                        bytes.to_vec(),
                        loc.clone(),
                        Some(format),
                        e.to_string(),
                        None,
                    ),
                };
            }
            Format::Auditd | Format::Cri => Err(FormatError::NotThisFormat("a text log line")),
        };
        match result {
            Ok(ev) => {
                st.sticky = self.opts.format.or(Some(format));
                self.emit(st, bytes.to_vec(), loc.clone(), ev)
            }
            Err(FormatError::NotThisFormat(what)) => {
                let mut keys: Vec<&str> = map.keys().map(String::as_str).take(12).collect();
                keys.sort_unstable();
                self.quarantine(
                    st,
                    bytes.to_vec(),
                    loc.clone(),
                    Some(format),
                    format!("not {what} (keys: {})", keys.join(", ")),
                    None,
                )
            }
            Err(FormatError::Invalid(reason)) => {
                self.quarantine(st, bytes.to_vec(), loc.clone(), Some(format), reason, None)
            }
        }
    }

    /// Open a cloud delivery envelope (Pub/Sub, CloudWatch Logs) and handle each record inside
    /// as an input unit of its own; the envelope's origin goes into the source label and its
    /// attributes into each event.
    fn envelope(
        &mut self,
        st: &mut Stream,
        map: &Map<String, Value>,
        bytes: &[u8],
        loc: &Location,
    ) -> Result<(), ParseError> {
        let unwrapped = if st.depth >= MAX_ENVELOPE_DEPTH {
            Err(format!(
                "envelopes nested more than {MAX_ENVELOPE_DEPTH} deep"
            ))
        } else {
            cloud::unwrap(map, self.opts.max_document_bytes)
        };
        let inner = match unwrapped {
            Ok(u) => u.records,
            Err(reason) => {
                return self.quarantine(st, bytes.to_vec(), loc.clone(), None, reason, None);
            }
        };
        for rec in inner {
            let source = st.source.clone();
            if let Some(o) = &rec.origin {
                st.source = format!("{source}#{o}");
            }
            let outer = std::mem::replace(&mut st.attrs, rec.attrs);
            st.depth += 1;
            let b = trim(&rec.bytes);
            let r = match b.first() {
                None => Ok(()),
                Some(b'{') | Some(b'[') => match self.json_unit(st, b, loc) {
                    Ok(Err(Incomplete)) => self.quarantine(
                        st,
                        b.to_vec(),
                        loc.clone(),
                        None,
                        "JSON record inside an envelope ends before its value does".into(),
                        None,
                    ),
                    Ok(Ok(())) => Ok(()),
                    Err(e) => Err(e),
                },
                Some(_) => self.text_line(st, b, loc.clone()),
            };
            st.depth -= 1;
            st.attrs = outer;
            st.source = source;
            r?;
        }
        Ok(())
    }

    /// Handle one non-JSON line.
    fn text_line(
        &mut self,
        st: &mut Stream,
        bytes: &[u8],
        loc: Location,
    ) -> Result<(), ParseError> {
        if bytes.len() > self.opts.max_record_bytes {
            return self.quarantine(
                st,
                bytes.to_vec(),
                loc,
                st.sticky,
                format!(
                    "line of {} bytes exceeds the {} byte record limit",
                    bytes.len(),
                    self.opts.max_record_bytes
                ),
                None,
            );
        }
        if let Some((time, json)) = cloud::export_line(bytes) {
            // CloudWatch Logs export (EKS audit logs in S3): `<time> <audit event>`
            if let Ok(mut ev) = self.pulling(|| k8s::parse_event(json)) {
                ev.attrs.insert("cloudwatch_time".into(), time.to_string());
                return self.emit(st, bytes.to_vec(), loc, ev);
            }
        }
        let format = match self.opts.format {
            Some(f) => f,
            None => {
                if auditd::looks_like_record(bytes) {
                    Format::Auditd
                } else if container::looks_like_cri(bytes) {
                    Format::Cri
                } else if syslog::looks_like_syslog(bytes) {
                    Format::Syslog
                } else {
                    return self.quarantine(
                        st,
                        bytes.to_vec(),
                        loc,
                        None,
                        "unrecognized line: not JSON, an auditd record, a CRI container log line, or syslog".into(),
                        None,
                    );
                }
            }
        };
        match format {
            Format::Auditd => match st.auditd.push(bytes, loc.clone()) {
                Ok(done) => {
                    for a in done {
                        self.emit(st, a.raw, a.location, a.event)?;
                    }
                    Ok(())
                }
                Err(e) => self.quarantine(
                    st,
                    bytes.to_vec(),
                    loc,
                    Some(Format::Auditd),
                    e.to_string(),
                    None,
                ),
            },
            Format::Cri => match st.containers.push_cri(bytes, loc.clone()) {
                Ok(done) => {
                    if let Some(a) = done {
                        self.emit(st, a.raw, a.location, a.event)?;
                    }
                    Ok(())
                }
                Err(e) => self.quarantine(
                    st,
                    bytes.to_vec(),
                    loc,
                    Some(Format::Cri),
                    e.to_string(),
                    None,
                ),
            },
            Format::Syslog => match syslog::parse_message(bytes, (self.clock)()) {
                Ok(ev) => self.emit(st, bytes.to_vec(), loc, ev),
                Err(e) => self.quarantine(
                    st,
                    bytes.to_vec(),
                    loc,
                    Some(Format::Syslog),
                    e.to_string(),
                    None,
                ),
            },
            other => self.quarantine(
                st,
                bytes.to_vec(),
                loc,
                Some(other),
                format!(
                    "not {}: a {} record is JSON, this line is text",
                    other, other
                ),
                None,
            ),
        }
    }

    fn emit(
        &mut self,
        st: &mut Stream,
        raw: Vec<u8>,
        loc: Location,
        mut ev: Event,
    ) -> Result<(), ParseError> {
        if raw.len() > self.opts.max_record_bytes {
            return self.quarantine(
                st,
                raw,
                loc,
                Some(ev.format),
                format!(
                    "record exceeds the {} byte record limit",
                    self.opts.max_record_bytes
                ),
                None,
            );
        }
        for (k, v) in &st.attrs {
            ev.attrs.entry(k.clone()).or_insert_with(|| v.clone());
        }
        ev.pci = self.opts.classifier.classify(&ev);
        self.summary.events += 1;
        self.summary.records += 1;
        st.records += 1;
        if ev.truncated {
            self.summary.truncated_events += 1;
        }
        *self
            .summary
            .by_format
            .entry(ev.format.as_str().to_string())
            .or_default() += 1;
        let rec = Record {
            source: st.source.clone(),
            received: (self.clock)(),
            raw,
            location: Some(loc),
            body: Body::Event(Box::new(ev)),
        };
        self.sink.accept(rec).map_err(|message| ParseError::Sink {
            source_name: st.source.clone(),
            location: String::new(),
            message,
        })
    }

    fn quarantine_doc(
        &mut self,
        st: &mut Stream,
        d: OpenDoc,
        reason: &str,
    ) -> Result<(), ParseError> {
        self.quarantine(st, d.buf, d.loc, st.sticky, reason.to_string(), None)
    }

    fn quarantine(
        &mut self,
        st: &mut Stream,
        mut raw: Vec<u8>,
        loc: Location,
        format: Option<Format>,
        reason: String,
        overflow: Option<(u64, [u8; 32])>,
    ) -> Result<(), ParseError> {
        let (full_len, full_sha256) = match overflow {
            Some((len, digest)) => {
                raw.truncate(self.opts.max_quarantine_bytes);
                (Some(len), Some(hex::encode(digest)))
            }
            None if raw.len() > self.opts.max_quarantine_bytes => {
                let len = raw.len() as u64;
                let digest = hex::encode(Sha256::digest(&raw));
                raw.truncate(self.opts.max_quarantine_bytes);
                (Some(len), Some(digest))
            }
            None => (None, None),
        };
        self.summary.quarantined += 1;
        self.summary.records += 1;
        st.records += 1;
        st.quarantined += 1;
        if self.summary.errors.len() < MAX_LISTED_ERRORS {
            self.summary.errors.push(Problem {
                source: st.source.clone(),
                line: loc.line,
                offset: loc.offset,
                format,
                reason: reason.clone(),
            });
        } else {
            self.summary.errors_omitted += 1;
        }
        let rec = Record {
            source: st.source.clone(),
            received: (self.clock)(),
            raw,
            location: Some(loc.clone()),
            body: Body::Quarantine(Quarantine {
                format,
                reason,
                full_len,
                full_sha256,
            }),
        };
        self.sink.accept(rec).map_err(|message| ParseError::Sink {
            source_name: st.source.clone(),
            location: loc.to_string(),
            message,
        })
    }
}

/// A multi-line JSON document being read.
struct OpenDoc {
    buf: Vec<u8>,
    loc: Location,
    balance: Balance,
}

fn trim_start(b: &[u8]) -> &[u8] {
    let i = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    &b[i..]
}

fn trim(b: &[u8]) -> &[u8] {
    let b = trim_start(b);
    let j = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map(|j| j + 1)
        .unwrap_or(0);
    &b[..j]
}

fn is_aks_table_row(map: &Map<String, Value>) -> bool {
    map.get("Type")
        .and_then(Value::as_str)
        .is_some_and(|t| t == "AKSAudit" || t == "AKSAuditAdmin")
        || (map.contains_key("AuditId") && map.contains_key("Verb"))
}

fn aks_table_row(bytes: &[u8]) -> Result<Event, FormatError> {
    let raw: k8s::RawEvent = serde_json::from_slice(bytes)
        .map_err(|e| FormatError::invalid(format!("AKSAudit row: {e}")))?;
    let mut ev = k8s::to_event(raw, Format::Aks)?;
    if ev.category.is_none() {
        ev.category = Some("kube-audit".into());
    }
    Ok(ev)
}

/// Detect the format of a JSON object from its keys (and a few values).
pub fn detect(map: &Map<String, Value>) -> Option<Format> {
    let s = |k: &str| map.get(k).and_then(Value::as_str);
    let has = |k: &str| map.contains_key(k);
    if s("kind") == Some("Event")
        || s("apiVersion").is_some_and(|v| v.starts_with("audit.k8s.io/"))
        || (has("auditID") && (has("verb") || has("stage") || has("requestURI")))
    {
        return Some(Format::K8sAudit);
    }
    if gke::is_audit_log_entry(map) {
        return Some(Format::Gke);
    }
    if is_aks_table_row(map) {
        return Some(Format::Aks);
    }
    if (has("category") && map.get("properties").and_then(|p| p.get("log")).is_some())
        || (has("Category") && has("log_s"))
    {
        return Some(Format::Aks);
    }
    if azure::is_signin(map) {
        return Some(Format::Signin);
    }
    if azure::is_entra_audit(map) {
        return Some(Format::EntraAudit);
    }
    if azure::is_activity(map) {
        return Some(Format::AzureActivity);
    }
    let keys: Vec<&str> = map.keys().map(String::as_str).collect();
    if container::is_docker(&keys) && map.get("log").is_some_and(Value::is_string) {
        return Some(Format::Docker);
    }
    if syslog::is_row(map) {
        return Some(Format::Syslog);
    }
    if app::is_app_event(map) {
        return Some(Format::App);
    }
    None
}

/// Parse one stored record again from its raw bytes, as `format` (used to rebuild derived
/// columns when a write-ahead log is reopened). Multi-line records (auditd events, split
/// container lines) are reassembled from their lines.
pub fn reparse(format: Format, raw: &[u8], received: Timestamp) -> Option<Event> {
    let mut out: Option<Event> = None;
    let mut sink = |r: Record| -> Result<(), String> {
        if out.is_none() {
            if let Body::Event(e) = r.body {
                out = Some(*e);
            }
        }
        Ok(())
    };
    let opts = Options {
        format: Some(format),
        max_record_bytes: usize::MAX,
        ..Options::default()
    };
    let mut ing = Ingestor::new(opts, &mut sink).with_clock(move || received);
    ing.ingest_bytes("reparse", raw).ok()?;
    drop(ing);
    out
}
