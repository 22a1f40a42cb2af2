//! The ledger writer thread: the one owner of the ledger and the detector. Everything that has to
//! reach the ledger — ingest batches, access records, alert changes, control-failure alerts — is
//! a [`Job`] on its queue. It appends what is waiting, commits once (one `fdatasync` for every
//! batch waiting: group commit), answers each job, and then runs detection over the events that
//! just became durable.

use crate::detector::Detector;
use crate::metrics::{BatchCounts, Metrics};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use trailwarden_alert::{AlertError, Change, Status};
use trailwarden_ledger::note::SignedCheckpoint;
use trailwarden_ledger::record::Access;
use trailwarden_ledger::{Ledger, StreamPos};
use trailwarden_model::{Body, Record, RecordKind, Timestamp};

/// Where a stored batch landed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stored {
    /// First ledger index of the batch.
    pub first: Option<u64>,
    /// Last ledger index of the batch.
    pub last: Option<u64>,
}

/// Records to store, from one request or one syslog batch.
pub struct Batch {
    /// Endpoint or listener (`k8s-audit`, `syslog`, …).
    pub endpoint: String,
    /// Who sent it.
    pub sender: String,
    /// The records (quarantined ones included).
    pub records: Vec<Record>,
    /// Answered once the batch is durable.
    pub reply: Option<oneshot::Sender<Result<Stored, String>>>,
    /// Raw bytes of the records (what the queue limit counts), computed once.
    bytes: u64,
    /// What makes a retry of the same input recognisable (the request body's hash): a cluster
    /// ingest node derives its JetStream message ids from it. `None`: every batch is new.
    pub id: Option<String>,
    /// For records consumed from a stream (cluster writers): the position of the first record;
    /// record `j` is at `k + j` of the same message.
    pub stream: Option<StreamPos>,
}

impl Batch {
    /// A batch of records from `sender` through `endpoint`.
    pub fn new(
        endpoint: String,
        sender: String,
        records: Vec<Record>,
        reply: Option<oneshot::Sender<Result<Stored, String>>>,
    ) -> Batch {
        let bytes = records.iter().map(|r| r.raw.len() as u64).sum();
        Batch {
            endpoint,
            sender,
            records,
            reply,
            bytes,
            id: None,
            stream: None,
        }
    }

    /// Take the batch off the queue's counters (a custom consumer calls this once per batch).
    pub fn dequeued(&self, metrics: &Metrics) {
        metrics
            .queue_events
            .fetch_sub(self.records.len() as u64, Ordering::Relaxed);
        metrics.queue_bytes.fetch_sub(self.bytes, Ordering::Relaxed);
    }

    /// Raw bytes of the records.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// Why an alert change was not made.
#[derive(Debug, Clone)]
pub enum ChangeError {
    /// No such alert.
    NotFound,
    /// The alert cannot move to that status.
    Transition(String),
    /// The ledger or the store failed.
    Storage(String),
}

/// The answer to an alert change: its ledger index and the change, or why not.
pub type ChangeReply = Result<(u64, Change), ChangeError>;

/// A request to an alert's status.
pub struct AlertChange {
    /// Alert id.
    pub id: i64,
    /// New status.
    pub to: Status,
    /// Who.
    pub actor: String,
    /// Why.
    pub note: String,
    /// Answered once recorded and applied: the ledger index and the change.
    pub reply: oneshot::Sender<ChangeReply>,
}

/// A silence to add or end (each is a security-relevant change: recorded in the ledger).
pub struct SilenceChange {
    /// Add this (`None`: end `expire`).
    pub add: Option<(trailwarden_alert::Matcher, i64)>,
    /// End the silence with this id.
    pub expire: Option<i64>,
    /// Who.
    pub actor: String,
    /// Why.
    pub reason: String,
    /// Answered once recorded and applied: the ledger index and the silence id.
    pub reply: oneshot::Sender<Result<(u64, i64), ChangeError>>,
}

/// A maintenance step run on the writer's thread with the ledger.
pub type Maintenance =
    Box<dyn FnOnce(&mut trailwarden_ledger::Ledger) -> Result<serde_json::Value, String> + Send>;

/// Work for the writer.
pub enum Job {
    /// Store records.
    Batch(Batch),
    /// Record a read (or a refused request) of audit data; answered with its ledger index.
    Access(Access, Option<oneshot::Sender<Result<u64, String>>>),
    /// Change an alert's status: recorded in the ledger first, applied after.
    AlertChange(AlertChange),
    /// Raise a control-failure alert (10.7).
    Control {
        /// Short kind (`backpressure`, `disk-low`, …).
        kind: String,
        /// What failed within the kind (a sink's name), if the kind has several.
        subject: Option<String>,
        /// Title.
        title: String,
        /// What happened.
        summary: String,
    },
    /// Add or end a silence: recorded in the ledger first, applied after.
    Silence(SilenceChange),
    /// Raise alerts found outside the event stream (scheduled query rules); answered once the
    /// alerts and their ledger records are durable.
    Raise(
        Vec<trailwarden_alert::NewAlert>,
        oneshot::Sender<Result<usize, String>>,
    ),
    /// Append an internal record (a review, a sign-off, a report's hash); answered with its
    /// ledger index once durable.
    Record(
        RecordKind,
        serde_json::Value,
        oneshot::Sender<Result<u64, String>>,
    ),
    /// Append an internal record consumed from a stream at a position (an ingest node's
    /// access record); answered with its ledger index once durable.
    Streamed(
        RecordKind,
        serde_json::Value,
        StreamPos,
        oneshot::Sender<Result<u64, String>>,
    ),
    /// Ledger maintenance run on the writer (the archive tier's evictions and prunes): the
    /// closure gets the ledger between batches; answered with what it returns.
    Maintain(
        Maintenance,
        oneshot::Sender<Result<serde_json::Value, String>>,
    ),
    /// Stop: drain, stop record, final checkpoint.
    Stop {
        /// Why.
        reason: String,
        /// Answered with the final checkpoint.
        reply: oneshot::Sender<Result<SignedCheckpoint, String>>,
    },
}

/// Why a batch was refused before reaching the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The queue holds too much: retry later.
    Backpressure,
    /// The writer stopped (failure or shutdown).
    Stopped(String),
}

/// A writer's right to write: checked before every write to the ledger. A cluster writer's
/// lease answers `Err(why)` once it may no longer be the partition's writer; the writer thread
/// then stops at once, without one more record (not even its stop record).
pub type Fence = trailwarden_ledger::WriteGuard;

/// The handle the server holds.
pub struct Pipeline {
    tx: Mutex<Option<Sender<Job>>>,
    metrics: Arc<Metrics>,
    max_events: u64,
    max_bytes: u64,
    failed: Arc<Mutex<Option<String>>>,
    stopping: AtomicBool,
    last_control: Mutex<std::collections::HashMap<String, i64>>,
}

impl Pipeline {
    /// Start the writer thread over an open ledger. A writer that holds a lease passes it as
    /// `fence`: it is asked before every write.
    pub fn start(
        ledger: Ledger,
        detector: Detector,
        detect: bool,
        metrics: Arc<Metrics>,
        max_events: u64,
        max_bytes: u64,
        fence: Option<Fence>,
    ) -> (Arc<Pipeline>, std::thread::JoinHandle<()>) {
        metrics.ledger_size.store(ledger.size(), Ordering::Relaxed);
        let mut ledger = ledger;
        // asked again right before each file write, so a writer paused between this writer's
        // own checks and a write still stops at that write
        ledger.set_guard(fence.clone());
        let m = metrics.clone();
        Pipeline::start_with(metrics, max_events, max_bytes, move |rx, failed| {
            let w = Writer {
                ledger: Some(ledger),
                detector,
                detect,
                detect_failed: false,
                metrics: m,
                failed,
                last_heartbeat: Instant::now(),
                last_spool: Instant::now(),
                fence,
            };
            w.run(rx)
        })
    }

    /// A pipeline whose jobs are taken by `body` on a thread of its own instead of the ledger
    /// writer (a cluster ingest node forwards them to JetStream). `body` answers each job, takes
    /// batches off the queue counters ([`Batch::dequeued`]) and writes why it stopped, if it
    /// failed, into the `Mutex` ([`Pipeline::failure`] reads it).
    pub fn start_with(
        metrics: Arc<Metrics>,
        max_events: u64,
        max_bytes: u64,
        body: impl FnOnce(Receiver<Job>, Arc<Mutex<Option<String>>>) + Send + 'static,
    ) -> (Arc<Pipeline>, std::thread::JoinHandle<()>) {
        let (tx, rx) = std::sync::mpsc::channel();
        let failed = Arc::new(Mutex::new(None));
        let f = failed.clone();
        let h = std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || body(rx, f))
            .unwrap_or_else(|e| panic!("cannot start the ledger writer thread: {e}"));
        (
            Arc::new(Pipeline {
                tx: Mutex::new(Some(tx)),
                metrics,
                max_events,
                max_bytes,
                failed,
                stopping: AtomicBool::new(false),
                last_control: Mutex::new(Default::default()),
            }),
            h,
        )
    }

    fn send(&self, j: Job) -> Result<(), Refused> {
        let g = crate::lock(&self.tx);
        match g.as_ref() {
            Some(tx) => tx
                .send(j)
                .map_err(|_| Refused::Stopped(self.failure().unwrap_or("stopped".into()))),
            None => Err(Refused::Stopped("the server is stopping".into())),
        }
    }

    /// Why the writer stopped, if it did.
    pub fn failure(&self) -> Option<String> {
        crate::lock(&self.failed).clone()
    }

    /// Whether new data is refused because the server stops.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// Queue a batch, unless the queue is over its limits (then the caller answers 429). A
    /// refused batch is handed back.
    // the refused batch comes back by value on purpose: the caller retries with it (syslog,
    // the cluster consumer); boxing it would allocate on every refusal for nothing
    #[allow(clippy::result_large_err)]
    pub fn submit(&self, b: Batch) -> Result<(), (Refused, Batch)> {
        if self.stopping() {
            return Err((Refused::Stopped("the server is stopping".into()), b));
        }
        if let Some(f) = self.failure() {
            return Err((Refused::Stopped(f), b));
        }
        let n = b.records.len() as u64;
        let bytes = b.bytes;
        let qe = self.metrics.queue_events.load(Ordering::Relaxed);
        let qb = self.metrics.queue_bytes.load(Ordering::Relaxed);
        // an oversized batch is still taken when the queue is empty (never refused forever)
        if qe > 0 && (qe + n > self.max_events || qb + bytes > self.max_bytes) {
            return Err((Refused::Backpressure, b));
        }
        self.metrics.queue_events.fetch_add(n, Ordering::Relaxed);
        self.metrics.queue_bytes.fetch_add(bytes, Ordering::Relaxed);
        let g = crate::lock(&self.tx);
        let sent = match g.as_ref() {
            Some(tx) => tx.send(Job::Batch(b)).map_err(|e| e.0),
            None => Err(Job::Batch(b)),
        };
        match sent {
            Ok(()) => Ok(()),
            Err(Job::Batch(b)) => {
                self.metrics.queue_events.fetch_sub(n, Ordering::Relaxed);
                self.metrics.queue_bytes.fetch_sub(bytes, Ordering::Relaxed);
                Err((
                    Refused::Stopped(self.failure().unwrap_or_else(|| "stopped".into())),
                    b,
                ))
            }
            Err(_) => Ok(()),
        }
    }

    /// Record an access and wait until it is durable (its ledger index).
    pub async fn access(&self, a: Access) -> Result<u64, String> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Access(a, Some(tx)))
            .map_err(|e| format!("{e:?}"))?;
        rx.await
            .map_err(|_| "the ledger writer stopped".to_string())?
    }

    /// Record an access and wait, from a thread outside the async runtime (the scheduler).
    pub fn access_blocking(&self, a: Access) -> Result<u64, String> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Access(a, Some(tx)))
            .map_err(|e| format!("{e:?}"))?;
        rx.blocking_recv()
            .map_err(|_| "the ledger writer stopped".to_string())?
    }

    /// Raise `alerts` and wait until they are durable (from a thread outside the runtime).
    /// Returns how many were new (the others merged into open alerts).
    pub fn raise_blocking(
        &self,
        alerts: Vec<trailwarden_alert::NewAlert>,
    ) -> Result<usize, String> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Raise(alerts, tx))
            .map_err(|e| format!("{e:?}"))?;
        rx.blocking_recv()
            .map_err(|_| "the ledger writer stopped".to_string())?
    }

    /// Append an internal record and wait until it is durable; its ledger index.
    pub async fn record(&self, kind: RecordKind, body: serde_json::Value) -> Result<u64, String> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Record(kind, body, tx))
            .map_err(|e| format!("{e:?}"))?;
        rx.await
            .map_err(|_| "the ledger writer stopped".to_string())?
    }

    /// [`Self::record`] for a record consumed from a stream at `pos` (kept in the ledger so a
    /// cluster writer resumes after it).
    /// Queued at once; the receiver answers once it is durable.
    pub fn record_from(
        &self,
        kind: RecordKind,
        body: serde_json::Value,
        pos: StreamPos,
    ) -> Result<oneshot::Receiver<Result<u64, String>>, String> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Streamed(kind, body, pos, tx))
            .map_err(|e| format!("{e:?}"))?;
        Ok(rx)
    }

    /// [`Self::record`] from a thread outside the async runtime.
    pub fn record_blocking(
        &self,
        kind: RecordKind,
        body: serde_json::Value,
    ) -> Result<u64, String> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Record(kind, body, tx))
            .map_err(|e| format!("{e:?}"))?;
        rx.blocking_recv()
            .map_err(|_| "the ledger writer stopped".to_string())?
    }

    /// Run `f` with the ledger on the writer's thread, between batches; its answer.
    pub async fn maintain(&self, f: Maintenance) -> Result<serde_json::Value, String> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Maintain(f, tx))
            .map_err(|e| format!("{e:?}"))?;
        rx.await
            .map_err(|_| "the ledger writer stopped".to_string())?
    }

    /// Record an access without waiting (refused requests: the answer does not wait for it).
    pub fn access_nowait(&self, a: Access) {
        let _ = self.send(Job::Access(a, None));
    }

    /// Queue an alert change; its answer comes on the receiver.
    fn queue_change(
        &self,
        id: i64,
        to: Status,
        actor: String,
        note: String,
    ) -> Result<oneshot::Receiver<ChangeReply>, ChangeError> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::AlertChange(AlertChange {
            id,
            to,
            actor,
            note,
            reply: tx,
        }))
        .map_err(|e| ChangeError::Storage(format!("{e:?}")))?;
        Ok(rx)
    }

    /// Change an alert (recorded in the ledger, then applied).
    pub async fn change_alert(
        &self,
        id: i64,
        to: Status,
        actor: String,
        note: String,
    ) -> Result<(u64, Change), ChangeError> {
        self.queue_change(id, to, actor, note)?
            .await
            .map_err(|_| ChangeError::Storage("the ledger writer stopped".into()))?
    }

    /// [`Self::change_alert`] from a thread outside the async runtime.
    pub fn change_alert_blocking(
        &self,
        id: i64,
        to: Status,
        actor: String,
        note: String,
    ) -> Result<(u64, Change), ChangeError> {
        self.queue_change(id, to, actor, note)?
            .blocking_recv()
            .map_err(|_| ChangeError::Storage("the ledger writer stopped".into()))?
    }

    /// Raise a control-failure alert, at most once per 10 s per kind (the store merges
    /// repeats into the open alert anyway).
    pub fn control(&self, kind: &str, title: &str, summary: String) {
        self.control_for(kind, None, title, summary)
    }

    /// Add a silence (`add`) or end one (`expire`); recorded in the ledger, then applied.
    pub async fn silence(
        &self,
        add: Option<(trailwarden_alert::Matcher, i64)>,
        expire: Option<i64>,
        actor: String,
        reason: String,
    ) -> Result<(u64, i64), ChangeError> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Silence(SilenceChange {
            add,
            expire,
            actor,
            reason,
            reply: tx,
        }))
        .map_err(|e| ChangeError::Storage(format!("{e:?}")))?;
        rx.await
            .map_err(|_| ChangeError::Storage("the ledger writer stopped".into()))?
    }

    /// [`Self::control`] for one subject of a kind (e.g. the sink whose delivery failed).
    pub fn control_for(&self, kind: &str, subject: Option<&str>, title: &str, summary: String) {
        let now = Timestamp::now().0;
        {
            let mut g = crate::lock(&self.last_control);
            let key = format!("{kind}|{}", subject.unwrap_or(""));
            let last = g.entry(key).or_insert(i64::MIN / 2);
            if now - *last < 10_000_000_000 {
                return;
            }
            *last = now;
        }
        let _ = self.send(Job::Control {
            kind: kind.into(),
            subject: subject.map(str::to_string),
            title: title.into(),
            summary,
        });
    }

    /// Stop accepting batches, drain the queue, write the stop record and the final checkpoint.
    pub async fn stop(&self, reason: &str) -> Result<SignedCheckpoint, String> {
        self.stopping.store(true, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.send(Job::Stop {
            reason: reason.into(),
            reply: tx,
        })
        .map_err(|e| format!("{e:?}"))?;
        let r = rx
            .await
            .map_err(|_| "the ledger writer stopped".to_string())?;
        if let Ok(mut g) = self.tx.lock() {
            *g = None;
        }
        r
    }
}

struct Writer {
    ledger: Option<Ledger>,
    detector: Detector,
    detect: bool,
    detect_failed: bool,
    metrics: Arc<Metrics>,
    failed: Arc<Mutex<Option<String>>>,
    last_heartbeat: Instant,
    last_spool: Instant,
    fence: Option<Fence>,
}

/// Most jobs (or bytes) taken into one commit.
const GROUP_JOBS: usize = 512;
const GROUP_BYTES: u64 = 32 << 20;

impl Writer {
    fn run(mut self, rx: Receiver<Job>) {
        loop {
            let first = match rx.recv_timeout(Duration::from_millis(500)) {
                Ok(j) => j,
                Err(RecvTimeoutError::Timeout) => {
                    self.idle();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.stop("the server dropped the writer", None);
                    return;
                }
            };
            let mut jobs = vec![first];
            let mut bytes = 0u64;
            while jobs.len() < GROUP_JOBS && bytes < GROUP_BYTES {
                match rx.try_recv() {
                    Ok(j) => {
                        if let Job::Batch(b) = &j {
                            bytes += b.bytes;
                        }
                        let stop = matches!(j, Job::Stop { .. });
                        jobs.push(j);
                        if stop {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
            if self.process(jobs) {
                // drain whatever raced in after the stop, answering it
                while let Ok(j) = rx.try_recv() {
                    self.refuse(j, "the server stopped");
                }
                return;
            }
        }
    }

    fn fail(&mut self, why: String) {
        if let Ok(mut g) = self.failed.lock() {
            if g.is_none() {
                *g = Some(why.clone());
            }
        }
        let _ = self.detector.raise_control(
            "ledger-write",
            "Ledger write failed: audit events are refused",
            &format!("the ledger writer stopped: {why}"),
        );
    }

    fn refuse(&mut self, j: Job, why: &str) {
        match j {
            Job::Batch(b) => {
                self.dequeued(&b);
                if let Some(r) = b.reply {
                    let _ = r.send(Err(why.to_string()));
                }
            }
            Job::Access(_, Some(r)) | Job::Record(_, _, r) | Job::Streamed(_, _, _, r) => {
                let _ = r.send(Err(why.to_string()));
            }
            Job::Maintain(_, r) => {
                let _ = r.send(Err(why.to_string()));
            }
            Job::AlertChange(c) => {
                let _ = c.reply.send(Err(ChangeError::Storage(why.to_string())));
            }
            Job::Silence(c) => {
                let _ = c.reply.send(Err(ChangeError::Storage(why.to_string())));
            }
            Job::Raise(_, reply) => {
                let _ = reply.send(Err(why.to_string()));
            }
            Job::Stop { reply, .. } => {
                let _ = reply.send(Err(why.to_string()));
            }
            _ => {}
        }
    }

    fn dequeued(&self, b: &Batch) {
        b.dequeued(&self.metrics);
    }

    /// Whether this writer lost the right to write (its lease): then it stops without one more
    /// write — the ledger is dropped unclosed, the failure says why.
    fn fenced(&mut self) -> bool {
        let Some(f) = &self.fence else {
            return false;
        };
        let Err(why) = f() else {
            return false;
        };
        if let Ok(mut g) = self.failed.lock() {
            if g.is_none() {
                *g = Some(format!("this writer was fenced off: {why}"));
            }
        }
        self.ledger = None;
        true
    }

    /// Append, commit once, answer, detect. Returns true when the writer stopped.
    fn process(&mut self, jobs: Vec<Job>) -> bool {
        if self.fenced() {
            for j in jobs {
                self.refuse(j, "this writer lost its lease: not stored here");
            }
            return true;
        }
        let Some(mut ledger) = self.ledger.take() else {
            for j in jobs {
                self.refuse(j, "the ledger writer has stopped");
            }
            return false;
        };
        let l = &mut ledger;
        let mut batch_replies = Vec::new();
        let mut access_replies = Vec::new();
        let mut changes = Vec::new();
        let mut silences = Vec::new();
        let mut raised = Vec::new();
        let mut detect_queue: Vec<(u64, Record)> = Vec::new();
        let mut stop = None;
        let mut error: Option<String> = None;
        for j in jobs {
            if let Some(e) = &error {
                // the ledger failed: answer the rest with the error
                let e = e.clone();
                self.refuse(j, &e);
                continue;
            }
            match j {
                Job::Batch(b) => {
                    self.dequeued(&b);
                    let mut stored = Stored::default();
                    let mut counts = BatchCounts::default();
                    for (j, rec) in b.records.into_iter().enumerate() {
                        let pos = b.stream.map(|p| StreamPos {
                            seq: p.seq,
                            k: p.k + j as u32,
                        });
                        match l.append_from(&rec, pos) {
                            Ok(i) => {
                                stored.first.get_or_insert(i);
                                stored.last = Some(i);
                            }
                            Err(e) => {
                                error = Some(e.to_string());
                                break;
                            }
                        }
                        counts.add(&rec);
                        if matches!(rec.body, Body::Event(_)) && self.detect && !self.detect_failed
                        {
                            if let Some(i) = stored.last {
                                detect_queue.push((i, rec));
                            }
                        }
                    }
                    batch_replies.push((b.reply, stored, b.endpoint, b.sender, counts));
                }
                Job::Access(a, reply) => match l.append_internal(RecordKind::Access, &a) {
                    Ok(i) => access_replies.push((reply, i)),
                    Err(e) => {
                        if let Some(r) = reply {
                            let _ = r.send(Err(e.to_string()));
                        }
                        error = Some(e.to_string());
                    }
                },
                Job::Maintain(f, reply) => {
                    let r = f(l);
                    let _ = reply.send(r);
                }
                Job::Streamed(kind, body, pos, reply) => {
                    match l.append_internal_from(kind, &body, Some(pos)) {
                        Ok(i) => access_replies.push((Some(reply), i)),
                        Err(e) => {
                            let _ = reply.send(Err(e.to_string()));
                            error = Some(e.to_string());
                        }
                    }
                }
                Job::Record(kind, body, reply) => match l.append_internal(kind, &body) {
                    Ok(i) => access_replies.push((Some(reply), i)),
                    Err(e) => {
                        let _ = reply.send(Err(e.to_string()));
                        error = Some(e.to_string());
                    }
                },
                Job::AlertChange(c) => {
                    let store = self.detector.store_mut();
                    match store.prepare(c.id, c.to, &c.actor, &c.note, Timestamp::now().0) {
                        Ok(ch) => {
                            let rec = serde_json::json!({
                                "action": c.to.as_str(), "alert_id": c.id, "from": ch.from,
                                "to": ch.to, "actor": ch.actor, "note": ch.note,
                                "at": Timestamp(ch.at),
                            });
                            match l.append_internal(RecordKind::Alert, &rec) {
                                Ok(i) => changes.push((c, ch, i)),
                                Err(e) => {
                                    let _ = c.reply.send(Err(ChangeError::Storage(e.to_string())));
                                    error = Some(e.to_string());
                                }
                            }
                        }
                        Err(AlertError::NotFound(_)) => {
                            let _ = c.reply.send(Err(ChangeError::NotFound));
                        }
                        Err(e @ AlertError::Transition { .. }) => {
                            let _ = c.reply.send(Err(ChangeError::Transition(e.to_string())));
                        }
                        Err(e) => {
                            let _ = c.reply.send(Err(ChangeError::Storage(e.to_string())));
                        }
                    }
                }
                Job::Control {
                    kind,
                    subject,
                    title,
                    summary,
                } => {
                    let _ = self.detector.raise_control_for(
                        &kind,
                        subject.as_deref(),
                        &title,
                        &summary,
                    );
                }
                Job::Raise(alerts, reply) => {
                    let mut new = 0;
                    let mut failed = None;
                    for a in alerts {
                        match self.detector.raise_alert(a) {
                            Ok(trailwarden_alert::Raised::New(_)) => new += 1,
                            Ok(_) => {}
                            Err(e) => {
                                failed = Some(e.to_string());
                                break;
                            }
                        }
                    }
                    raised.push((reply, new, failed));
                }
                Job::Silence(c) => {
                    let known = match c.expire {
                        Some(id) => self
                            .detector
                            .store_mut()
                            .silences()
                            .map(|v| v.iter().any(|s| s.id == id && s.expired_by.is_none())),
                        None => Ok(true),
                    };
                    match known {
                        Ok(false) => {
                            let _ = c.reply.send(Err(ChangeError::NotFound));
                            continue;
                        }
                        Err(e) => {
                            let _ = c.reply.send(Err(ChangeError::Storage(e.to_string())));
                            continue;
                        }
                        Ok(true) => {}
                    }
                    let rec = serde_json::json!({
                        "action": if c.add.is_some() { "silence-created" } else { "silence-expired" },
                        "matcher": c.add.as_ref().map(|a| &a.0),
                        "ends_at": c.add.as_ref().map(|a| Timestamp(a.1)),
                        "silence_id": c.expire, "actor": c.actor, "reason": c.reason,
                        "at": Timestamp::now(),
                    });
                    match l.append_internal(RecordKind::Alert, &rec) {
                        Ok(i) => silences.push((c, i)),
                        Err(e) => {
                            let _ = c.reply.send(Err(ChangeError::Storage(e.to_string())));
                            error = Some(e.to_string());
                        }
                    }
                }
                Job::Stop { reason, reply } => stop = Some((reason, reply)),
            }
        }
        // a writer deposed while appending commits nothing of this group: the ledger asks the
        // fence (its write guard) before the WAL append, the commit fails with "fenced", every
        // job is answered with that, and the writer stops below (the new writer consumes
        // these messages again)
        if error.is_none() {
            let _ = self.detector.record(l);
            let t = Instant::now();
            match l.commit() {
                Ok(size) => {
                    self.metrics.fsync(t.elapsed().as_secs_f64());
                    self.metrics.ledger_size.store(size, Ordering::Relaxed);
                }
                Err(e) => error = Some(e.to_string()),
            }
        }
        // answer: durable now, or the error
        for (reply, stored, endpoint, sender, counts) in batch_replies {
            if error.is_none() {
                self.metrics.stored(&endpoint, &sender, &counts);
            }
            if let Some(r) = reply {
                let _ = r.send(match &error {
                    None => Ok(stored),
                    Some(e) => Err(e.clone()),
                });
            }
        }
        for (reply, i) in access_replies {
            if let Some(r) = reply {
                let _ = r.send(match &error {
                    None => Ok(i),
                    Some(e) => Err(e.clone()),
                });
            }
        }
        for (c, ch, i) in changes {
            let r = match &error {
                None => self
                    .detector
                    .store_mut()
                    .apply(c.id, &ch)
                    .map(|_| (i, ch))
                    .map_err(|e| {
                        ChangeError::Storage(format!("recorded as ledger record {i}, but: {e}"))
                    }),
                Some(e) => Err(ChangeError::Storage(e.clone())),
            };
            let _ = c.reply.send(r);
        }
        for (reply, new, failed) in raised {
            let _ = reply.send(match (&error, failed) {
                (Some(e), _) => Err(e.clone()),
                (None, Some(e)) => Err(e),
                (None, None) => Ok(new),
            });
        }
        for (c, i) in silences {
            let now = Timestamp::now().0;
            let store = self.detector.store_mut();
            let r = match (&error, &c.add, c.expire) {
                (Some(e), _, _) => Err(ChangeError::Storage(e.clone())),
                (None, Some((m, ends)), _) => store
                    .add_silence(m, &c.actor, &c.reason, now, *ends)
                    .map(|s| (i, s.id))
                    .map_err(|e| {
                        ChangeError::Storage(format!("recorded as ledger record {i}, but: {e}"))
                    }),
                (None, None, Some(id)) => store
                    .expire_silence(id, &c.actor, now)
                    .map(|_| (i, id))
                    .map_err(|e| {
                        ChangeError::Storage(format!("recorded as ledger record {i}, but: {e}"))
                    }),
                (None, None, None) => Err(ChangeError::Transition("nothing to do".into())),
            };
            let _ = c.reply.send(r);
        }
        if let Some(e) = error {
            if self.fenced() {
                // the ledger's guard refused a write: deposed, not failed (no control alert
                // written by a writer that may not write)
                if let Some((_, reply)) = stop {
                    let _ = reply.send(Err(e));
                }
                return true;
            }
            self.fail(e.clone());
            if let Some((_, reply)) = stop {
                let _ = reply.send(Err(e));
                return true;
            }
            return false;
        }
        self.ledger = Some(ledger);
        // detection over what just became durable; its alerts are committed right away
        if !detect_queue.is_empty() {
            self.run_detection(detect_queue);
        }
        if let Some((reason, reply)) = stop {
            self.stop(&reason, Some(reply));
            return true;
        }
        false
    }

    fn run_detection(&mut self, events: Vec<(u64, Record)>) {
        let result = self
            .detector
            .check_batch(&events)
            .map_err(|e| e.to_string());
        self.metrics.rule_matches(&self.detector.matches);
        if let Err(e) = result {
            self.detect_failed = true;
            let _ = self.detector.raise_control(
                "detection",
                "Detection stopped: events are stored but not checked",
                &format!("detection failed ({e}); restart the server, then run `trailwarden detect --since` over the gap"),
            );
        }
        if let Some(l) = self.ledger.as_mut() {
            let r = self.detector.record(l).and_then(|_| {
                if l.pending_records() > 0 {
                    l.commit().map(|_| ())
                } else {
                    Ok(())
                }
            });
            if let Err(e) = r {
                self.fail(e.to_string());
                self.ledger = None;
            }
        }
    }

    fn idle(&mut self) {
        if self.fenced() {
            return;
        }
        let Some(l) = self.ledger.as_mut() else {
            return;
        };
        let mut r = Ok(());
        if self.last_spool.elapsed() >= Duration::from_secs(2) {
            self.last_spool = Instant::now();
            r = l.drain_access_spool().map(|_| ());
        }
        if r.is_ok() && self.last_heartbeat.elapsed() >= Duration::from_secs(60) {
            self.last_heartbeat = Instant::now();
            r = l.heartbeat();
        }
        // sign what the last commit left unsigned, so a quiet ledger has a current checkpoint
        if r.is_ok() && l.latest_checkpoint().map(|c| c.checkpoint.size) != Some(l.size()) {
            r = l.checkpoint().map(|_| ());
        }
        if r.is_ok() {
            let _ = self.detector.record(l);
            if l.pending_records() > 0 {
                r = l.commit().map(|_| ());
            }
        }
        if let Err(e) = r {
            if !self.fenced() {
                self.fail(e.to_string());
            }
            self.ledger = None;
        }
    }

    fn stop(
        &mut self,
        reason: &str,
        reply: Option<oneshot::Sender<Result<SignedCheckpoint, String>>>,
    ) {
        let r = match self.ledger.take().filter(|_| {
            // a deposed writer writes no stop record
            self.fence.as_ref().is_none_or(|f| f().is_ok())
        }) {
            Some(mut l) => {
                let _ = self.detector.record(&mut l);
                l.close(reason).map_err(|e| e.to_string())
            }
            None => Err(self
                .failed
                .lock()
                .ok()
                .and_then(|g| g.clone())
                .unwrap_or_else(|| "the ledger writer had stopped".into())),
        };
        if let Some(reply) = reply {
            let _ = reply.send(r);
        }
    }
}
