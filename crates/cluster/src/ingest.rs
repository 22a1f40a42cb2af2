//! The ingest node: the pipeline's jobs are published to JetStream instead of written to a
//! ledger. A batch is answered only after JetStream acknowledged every message of it; message
//! ids derived from the request make a retried request (to this node or another) a duplicate
//! that JetStream stores once.

use crate::config::ClusterConfig;
use crate::wire::{self, Control, EncodedRecord};
use crate::ClusterError;
use async_nats::jetstream::{self, context::PublishAckFuture};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use trailwarden_model::Timestamp;
use trailwarden_pipeline::metrics::{BatchCounts, Metrics};
use trailwarden_pipeline::{Batch, Job, Pipeline, Stored};

/// What an ingest node counts (exposed on `/metrics`).
#[derive(Default, Debug)]
pub struct PublishStats {
    /// Messages JetStream acknowledged.
    pub messages: AtomicU64,
    /// Of those, duplicates (a retry JetStream had already stored).
    pub duplicates: AtomicU64,
    /// Batches refused because JetStream did not acknowledge (answered 503).
    pub failures: AtomicU64,
    /// 1 while the last publish failed.
    pub down: AtomicU64,
}

impl PublishStats {
    /// Prometheus exposition lines.
    pub fn exposition(&self) -> String {
        format!(
            "# HELP trailwarden_cluster_published_messages_total Messages JetStream acknowledged.\n# TYPE trailwarden_cluster_published_messages_total counter\ntrailwarden_cluster_published_messages_total {}\n\
             # HELP trailwarden_cluster_duplicate_messages_total Retried messages JetStream had stored already.\n# TYPE trailwarden_cluster_duplicate_messages_total counter\ntrailwarden_cluster_duplicate_messages_total {}\n\
             # HELP trailwarden_cluster_publish_failures_total Batches refused (503) because JetStream did not acknowledge them.\n# TYPE trailwarden_cluster_publish_failures_total counter\ntrailwarden_cluster_publish_failures_total {}\n\
             # HELP trailwarden_cluster_publish_down 1 while JetStream does not acknowledge.\n# TYPE trailwarden_cluster_publish_down gauge\ntrailwarden_cluster_publish_down {}\n",
            self.messages.load(Ordering::Relaxed),
            self.duplicates.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
            self.down.load(Ordering::Relaxed),
        )
    }
}

/// Start an ingest node's pipeline: jobs go to JetStream. Fails when NATS cannot be set up
/// (the stream cannot be created or read) within `publish_timeout_seconds` × 2.
pub fn start(
    cfg: &ClusterConfig,
    metrics: Arc<Metrics>,
    max_events: u64,
    max_bytes: u64,
    stats: Arc<PublishStats>,
) -> Result<(Arc<Pipeline>, std::thread::JoinHandle<()>), ClusterError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("nats-publish")
        .enable_all()
        .build()
        .map_err(|e| ClusterError::Nats(format!("starting the runtime: {e}")))?;
    let wait = crate::nats::STREAM_WAIT + Duration::from_secs(cfg.publish_timeout_seconds * 2);
    let (js, max_payload) = rt.block_on(async {
        let client = crate::nats::connect(cfg).await?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(Duration::from_secs(cfg.publish_timeout_seconds));
        match tokio::time::timeout(wait, crate::nats::ensure_stream(&js, cfg)).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(ClusterError::Nats(format!(
                    "NATS at {} did not answer within {}s",
                    cfg.nats_url.as_deref().unwrap_or(""),
                    wait.as_secs()
                )))
            }
        };
        Ok::<_, ClusterError>((js, client.server_info().max_payload))
    })?;
    let key = cfg.message_key().map_err(ClusterError::Config)?;
    let f = Forwarder {
        rt,
        js,
        key,
        subject: cfg.subject(),
        partition: cfg.partition.clone(),
        timeout: Duration::from_secs(cfg.publish_timeout_seconds),
        budget: max_payload.saturating_sub(4096).max(64 * 1024),
        max_payload,
        metrics: metrics.clone(),
        stats,
        outage: None,
        node: cfg.node_name(),
    };
    Ok(Pipeline::start_with(
        metrics,
        max_events,
        max_bytes,
        move |rx, failed| f.run(rx, failed),
    ))
}

struct Forwarder {
    rt: tokio::runtime::Runtime,
    js: jetstream::Context,
    /// The cluster's message key: every message is signed with it.
    key: Option<Vec<u8>>,
    subject: String,
    partition: String,
    timeout: Duration,
    budget: usize,
    max_payload: usize,
    metrics: Arc<Metrics>,
    stats: Arc<PublishStats>,
    /// Since when, and how many batches were refused: raised as a control failure through the
    /// stream once JetStream answers again.
    outage: Option<(Timestamp, u64, String)>,
    node: String,
}

/// The answer owed for one job once its messages are acknowledged.
enum Owed {
    Batch(Batch, BatchCounts),
    Index(Option<tokio::sync::oneshot::Sender<Result<u64, String>>>),
    Nothing,
}

impl Forwarder {
    fn run(mut self, rx: Receiver<Job>, _failed: Arc<Mutex<Option<String>>>) {
        loop {
            let first = match rx.recv_timeout(Duration::from_millis(500)) {
                Ok(j) => j,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut jobs = vec![first];
            while jobs.len() < 256 {
                match rx.try_recv() {
                    Ok(j) => jobs.push(j),
                    Err(_) => break,
                }
            }
            if self.forward(jobs) {
                return;
            }
        }
    }

    /// Publish a group of jobs concurrently, then answer each. Returns true on stop.
    fn forward(&mut self, jobs: Vec<Job>) -> bool {
        let mut pending: Vec<Pending> = Vec::new();
        let mut stop = None;
        for j in jobs {
            match j {
                Job::Batch(b) => {
                    b.dequeued(&self.metrics);
                    let (msgs, ids, err) = self.batch_messages(&b);
                    let counts = counts(&b);
                    pending.push((Owed::Batch(b, counts), msgs, ids, err));
                }
                Job::Access(a, reply) => {
                    let (m, err) = match wire::access_message(&a) {
                        Ok(m) => (vec![m], None),
                        Err(e) => (Vec::new(), Some(e.to_string())),
                    };
                    pending.push((Owed::Index(reply), m, vec![nuid()], err));
                }
                Job::Control {
                    kind,
                    subject,
                    title,
                    summary,
                } => {
                    let c = Control {
                        kind,
                        subject,
                        title,
                        summary: format!("{summary} (ingest node {})", self.node),
                    };
                    if let Ok(m) = wire::control_message(&c) {
                        pending.push((Owed::Nothing, vec![m], vec![nuid()], None));
                    }
                }
                Job::Stop { reply, .. } => stop = Some(reply),
                other => refuse(other),
            }
        }
        // the outage's record goes first once JetStream answers again
        let outage = self.outage.as_ref().map(|(since, n, why)| {
            let c = Control {
                kind: "cluster-publish".into(),
                subject: Some(self.partition.clone()),
                title: "Ingest could not publish to JetStream: batches refused (503)".into(),
                summary: format!(
                    "ingest node {}: JetStream did not acknowledge from {since} to {}; {n} batches were refused with 503 and Retry-After (nothing acknowledged was lost): {why}",
                    self.node,
                    Timestamp::now()
                ),
            };
            wire::control_message(&c).unwrap_or_default()
        });
        let results = self.rt.block_on(publish_all(
            &self.js,
            self.key.as_deref(),
            &self.subject,
            self.timeout,
            outage.into_iter().map(|m| (m, nuid())).collect(),
            &pending,
            &self.stats,
        ));
        let (outage_ok, results) = results;
        if outage_ok {
            self.outage = None;
        }
        for ((owed, _, _, _), r) in pending.into_iter().zip(results) {
            match &r {
                Ok(_) => self.stats.down.store(0, Ordering::Relaxed),
                Err(why) => {
                    self.stats.down.store(1, Ordering::Relaxed);
                    if matches!(owed, Owed::Batch(..)) {
                        self.stats.failures.fetch_add(1, Ordering::Relaxed);
                        let o = self
                            .outage
                            .get_or_insert_with(|| (Timestamp::now(), 0, why.clone()));
                        o.1 += 1;
                    }
                }
            }
            match owed {
                Owed::Batch(b, c) => {
                    if r.is_ok() {
                        self.metrics.stored(&b.endpoint, &b.sender, &c);
                    }
                    if let Some(reply) = b.reply {
                        let _ = reply.send(r.map(|_| Stored::default()));
                    }
                }
                Owed::Index(Some(reply)) => {
                    let _ = reply.send(r.map(|_| 0));
                }
                Owed::Index(None) | Owed::Nothing => {}
            }
        }
        if let Some(reply) = stop {
            // nothing to close: every acknowledged batch is in JetStream
            let _ = reply.send(Err(
                "an ingest node has no ledger: nothing to close (every acknowledged batch is in JetStream)"
                    .into(),
            ));
            return true;
        }
        false
    }

    /// A batch's messages and their ids (from the request's id when it has one).
    fn batch_messages(&self, b: &Batch) -> (Vec<Vec<u8>>, Vec<String>, Option<String>) {
        let mut enc = Vec::with_capacity(b.records.len());
        for r in &b.records {
            match EncodedRecord::new(r) {
                Ok(e) => enc.push(e),
                Err(e) => return (Vec::new(), Vec::new(), Some(e.to_string())),
            }
        }
        let base = b.id.clone().unwrap_or_else(nuid);
        let mut msgs = Vec::new();
        let mut ids = Vec::new();
        for (n, range) in wire::chunks(&enc, self.budget).into_iter().enumerate() {
            let m = wire::records_message(&b.endpoint, &b.sender, &enc[range]);
            if m.len() > self.max_payload {
                return (
                    Vec::new(),
                    Vec::new(),
                    Some(format!(
                        "one record takes {} bytes, over the NATS server's max_payload ({} bytes): raise max_payload in the NATS configuration (up to 64 MiB; the chart sets 8 MiB)",
                        m.len(),
                        self.max_payload
                    )),
                );
            }
            msgs.push(m);
            ids.push(format!("{base}.{n}"));
        }
        (msgs, ids, None)
    }
}

type Pending = (Owed, Vec<Vec<u8>>, Vec<String>, Option<String>);

/// Publish every message of every job at once, then wait for the acknowledgements: one result
/// per job (`Err` when any of its messages was not acknowledged within the timeout).
async fn publish_all(
    js: &jetstream::Context,
    key: Option<&[u8]>,
    subject: &str,
    timeout: Duration,
    first: Vec<(Vec<u8>, String)>,
    jobs: &[Pending],
    stats: &PublishStats,
) -> (bool, Vec<Result<(), String>>) {
    let deadline = Instant::now() + timeout;
    let send = |m: &Vec<u8>, id: &str| {
        let mut msg = jetstream::message::PublishMessage::build()
            .payload(bytes::Bytes::from(m.clone()))
            .message_id(id);
        if let Some(k) = key {
            msg = msg.header(wire::SIGNATURE_HEADER, wire::sign(k, m).as_str());
        }
        js.send_publish(subject.to_string(), msg)
    };
    let mut first_ok = true;
    for (m, id) in &first {
        match tokio::time::timeout_at(deadline.into(), send(m, id)).await {
            Ok(Ok(f)) => first_ok &= f.await.is_ok(),
            _ => first_ok = false,
        }
    }
    let mut futs: Vec<Result<Vec<PublishAckFuture>, String>> = Vec::with_capacity(jobs.len());
    for (_, msgs, ids, err) in jobs {
        if let Some(e) = err {
            futs.push(Err(e.clone()));
            continue;
        }
        let mut v = Vec::with_capacity(msgs.len());
        let mut failed = None;
        for (m, id) in msgs.iter().zip(ids) {
            match tokio::time::timeout_at(deadline.into(), send(m, id)).await {
                Ok(Ok(f)) => v.push(f),
                Ok(Err(e)) => {
                    failed = Some(format!("JetStream refused the message: {e}"));
                    break;
                }
                Err(_) => {
                    failed = Some(format!(
                        "JetStream did not take the message within {}s",
                        timeout.as_secs()
                    ));
                    break;
                }
            }
        }
        futs.push(match failed {
            Some(e) => Err(e),
            None => Ok(v),
        });
    }
    let mut out = Vec::with_capacity(futs.len());
    for f in futs {
        out.push(match f {
            Err(e) => Err(e),
            Ok(v) => {
                let acks = futures::future::join_all(
                    v.into_iter().map(std::future::IntoFuture::into_future),
                )
                .await;
                let mut r = Ok(());
                for a in acks {
                    match a {
                        Ok(ack) => {
                            stats.messages.fetch_add(1, Ordering::Relaxed);
                            if ack.duplicate {
                                stats.duplicates.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(e) => {
                            r = Err(format!("JetStream did not acknowledge the batch: {e}"));
                        }
                    }
                }
                r
            }
        });
    }
    (first_ok, out)
}

fn refuse(j: Job) {
    let why = "this is a cluster ingest node: it has no ledger (ask the partition's writer)";
    match j {
        Job::Record(_, _, r) | Job::Streamed(_, _, _, r) => {
            let _ = r.send(Err(why.into()));
        }
        Job::Maintain(_, r) => {
            let _ = r.send(Err(why.into()));
        }
        Job::Raise(_, r) => {
            let _ = r.send(Err(why.into()));
        }
        Job::AlertChange(c) => {
            let _ = c
                .reply
                .send(Err(trailwarden_pipeline::ChangeError::Storage(why.into())));
        }
        Job::Silence(c) => {
            let _ = c
                .reply
                .send(Err(trailwarden_pipeline::ChangeError::Storage(why.into())));
        }
        _ => {}
    }
}

fn counts(b: &Batch) -> BatchCounts {
    let mut c = BatchCounts::default();
    for r in &b.records {
        c.add(r);
    }
    c
}

/// A message id no other message has: this process's start, a counter.
fn nuid() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    static START: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    let start = START.get_or_init(|| Timestamp::now().0);
    format!(
        "{}-{start:x}-{:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
