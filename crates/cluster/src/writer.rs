//! The partition's ledger writer: takes the lease (a standby waits for it), then consumes the
//! partition's subject in stream order from the ledger's own last record, appends each
//! message's records with their stream position, and acknowledges the messages only once the
//! ledger committed them (fsync).

use crate::config::ClusterConfig;
use crate::nats::Lease;
use crate::wire::{self, Message};
use crate::ClusterError;
use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use trailwarden_ledger::StreamPos;
use trailwarden_model::{Body, Quarantine, Record, RecordKind, Timestamp};
use trailwarden_pipeline::{Batch, Pipeline, Refused};

/// What a writer counts (exposed on `/metrics`).
#[derive(Default, Debug)]
pub struct ConsumeStats {
    /// Messages applied (committed, then acknowledged).
    pub messages: AtomicU64,
    /// Messages skipped because the ledger already held them (redeliveries, replays).
    pub skipped: AtomicU64,
    /// Messages that were not trailwarden messages (quarantined with their bytes).
    pub foreign: AtomicU64,
    /// The stream sequence of the newest message applied.
    pub position: AtomicU64,
    /// 1 while this node holds the partition's lease.
    pub leader: AtomicU64,
    /// Times the writer dropped what it fetched and started its consumer again at the ledger's
    /// position (messages delivered out of order, or to nobody).
    pub resyncs: AtomicU64,
    /// Time from an ingest node receiving a batch to this writer's commit: counts per bucket
    /// of [`LATENCY_BUCKETS`] (cumulative in the exposition), and the sum in microseconds.
    latency: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    latency_sum_us: AtomicU64,
}

/// Upper bounds (seconds) of the end-to-end latency histogram.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0,
];

impl ConsumeStats {
    /// Count one batch's latency (seconds from its receipt on an ingest node to the commit).
    pub fn observe(&self, seconds: f64) {
        let i = LATENCY_BUCKETS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.latency[i].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us
            .fetch_add((seconds.max(0.0) * 1e6) as u64, Ordering::Relaxed);
    }

    /// Prometheus exposition lines.
    pub fn exposition(&self) -> String {
        let mut h = String::from(
            "# HELP trailwarden_cluster_end_to_end_seconds Time from an ingest node receiving a batch to the writer's commit (fsync); clocks of both nodes.\n# TYPE trailwarden_cluster_end_to_end_seconds histogram\n",
        );
        let mut cum = 0;
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            cum += self.latency[i].load(Ordering::Relaxed);
            h.push_str(&format!(
                "trailwarden_cluster_end_to_end_seconds_bucket{{le=\"{b}\"}} {cum}\n"
            ));
        }
        cum += self.latency[LATENCY_BUCKETS.len()].load(Ordering::Relaxed);
        h.push_str(&format!(
            "trailwarden_cluster_end_to_end_seconds_bucket{{le=\"+Inf\"}} {cum}\ntrailwarden_cluster_end_to_end_seconds_sum {}\ntrailwarden_cluster_end_to_end_seconds_count {cum}\n",
            self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6
        ));
        h + &format!(
            "# HELP trailwarden_cluster_applied_messages_total JetStream messages committed to the ledger.\n# TYPE trailwarden_cluster_applied_messages_total counter\ntrailwarden_cluster_applied_messages_total {}\n\
             # HELP trailwarden_cluster_skipped_messages_total Redelivered messages the ledger already held.\n# TYPE trailwarden_cluster_skipped_messages_total counter\ntrailwarden_cluster_skipped_messages_total {}\n\
             # HELP trailwarden_cluster_foreign_messages_total Messages that were not trailwarden's (quarantined).\n# TYPE trailwarden_cluster_foreign_messages_total counter\ntrailwarden_cluster_foreign_messages_total {}\n\
             # HELP trailwarden_cluster_stream_position Stream sequence of the newest message applied.\n# TYPE trailwarden_cluster_stream_position gauge\ntrailwarden_cluster_stream_position {}\n\
             # HELP trailwarden_cluster_leader 1 while this writer holds its partition's lease.\n# TYPE trailwarden_cluster_leader gauge\ntrailwarden_cluster_leader {}\n\
             # HELP trailwarden_cluster_resyncs_total Fetches dropped and the consumer restarted at the ledger's position (out-of-order or lost deliveries).\n# TYPE trailwarden_cluster_resyncs_total counter\ntrailwarden_cluster_resyncs_total {}\n",
            self.messages.load(Ordering::Relaxed),
            self.skipped.load(Ordering::Relaxed),
            self.foreign.load(Ordering::Relaxed),
            self.position.load(Ordering::Relaxed),
            self.leader.load(Ordering::Relaxed),
            self.resyncs.load(Ordering::Relaxed),
        )
    }
}

/// A writer node: its NATS connection and lease, on a runtime of their own (the lease is
/// renewed while the ledger opens and recovers).
pub struct WriterNode {
    rt: tokio::runtime::Runtime,
    js: jetstream::Context,
    cfg: ClusterConfig,
    /// The lease: [`Lease::fence`] goes to the ledger writer.
    pub lease: Arc<Lease>,
    /// Counters.
    pub stats: Arc<ConsumeStats>,
}

impl WriterNode {
    /// Connect and take the partition's lease, waiting as a standby while another node holds
    /// it (`on_wait` is told who, once).
    pub fn start(
        cfg: &ClusterConfig,
        on_wait: impl FnOnce(&str),
    ) -> Result<WriterNode, ClusterError> {
        cfg.message_key().map_err(ClusterError::Config)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("nats-writer")
            .enable_all()
            .build()
            .map_err(|e| ClusterError::Nats(format!("starting the runtime: {e}")))?;
        let (js, lease) = rt.block_on(async {
            let client = crate::nats::connect(cfg).await?;
            let js = jetstream::new(client);
            crate::nats::ensure_stream(&js, cfg).await?;
            let lease = Lease::acquire(&js, cfg, on_wait).await?;
            Ok::<_, ClusterError>((js, lease))
        })?;
        let stats = Arc::new(ConsumeStats::default());
        stats.leader.store(1, Ordering::Relaxed);
        Ok(WriterNode {
            rt,
            js,
            cfg: cfg.clone(),
            lease: Arc::new(lease),
            stats,
        })
    }

    /// Start consuming into `pipeline` after `from` (the ledger's stream position). The
    /// returned receiver answers when consuming stopped, with why.
    pub fn consume(
        &self,
        pipeline: Arc<Pipeline>,
        from: Option<StreamPos>,
    ) -> tokio::sync::oneshot::Receiver<ClusterError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let key = match self.cfg.message_key() {
            Ok(k) => k,
            Err(e) => {
                let _ = tx.send(ClusterError::Config(e));
                return rx;
            }
        };
        let js = self.js.clone();
        let cfg = self.cfg.clone();
        let stats = self.stats.clone();
        let lease = self.lease.clone();
        self.rt.spawn(async move {
            let e = consume(&js, &cfg, &pipeline, from, &stats, &lease, key.as_deref()).await;
            stats.leader.store(0, Ordering::Relaxed);
            let _ = tx.send(e);
        });
        rx
    }
}

/// Queue a batch, waiting while the pipeline's queue is full.
async fn submit(p: &Pipeline, mut b: Batch) -> Result<(), ClusterError> {
    loop {
        match p.submit(b) {
            Ok(()) => return Ok(()),
            Err((Refused::Backpressure, back)) => {
                b = back;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err((Refused::Stopped(why), _)) => return Err(ClusterError::Stopped(why)),
        }
    }
}

async fn consume(
    js: &jetstream::Context,
    cfg: &ClusterConfig,
    pipeline: &Pipeline,
    mut pos: Option<StreamPos>,
    stats: &ConsumeStats,
    lease: &Lease,
    key: Option<&[u8]>,
) -> ClusterError {
    match run(js, cfg, pipeline, &mut pos, stats, lease, key).await {
        Ok(()) => ClusterError::Stopped("consuming stopped".into()),
        Err(e) => e,
    }
}

async fn run(
    js: &jetstream::Context,
    cfg: &ClusterConfig,
    pipeline: &Pipeline,
    pos: &mut Option<StreamPos>,
    stats: &ConsumeStats,
    lease: &Lease,
    key: Option<&[u8]>,
) -> Result<(), ClusterError> {
    let nats = |what: &str, e: &dyn std::fmt::Display| ClusterError::Nats(format!("{what}: {e}"));
    let stream = crate::nats::ensure_stream(js, cfg).await?;
    if let Some(prev) = &lease.previous {
        pipeline.control_for(
            "cluster-takeover",
            Some(&cfg.partition),
            "Ledger writer taken over",
            format!(
                "{} took partition {} over from {prev} (its lease lapsed); consuming resumes after stream sequence {}",
                cfg.node_name(),
                cfg.partition,
                pos.map_or(0, |p| p.seq)
            ),
        );
    }
    let info = stream
        .get_info()
        .await
        .map_err(|e| nats("reading the stream", &e))?;
    if let Some(p) = pos {
        if info.state.messages > 0 && info.state.first_sequence > p.seq + 1 {
            pipeline.control_for(
                "cluster-gap",
                Some(&cfg.partition),
                "Stream messages expired before the ledger writer applied them",
                format!(
                    "the ledger of partition {} holds messages up to stream sequence {}, but the stream {} now starts at {}: messages in between were removed by its limits (max_age_days = {}) before this writer applied them; some may have been this partition's",
                    cfg.partition, p.seq, cfg.stream, info.state.first_sequence, cfg.max_age_days
                ),
            );
        }
    }
    // the consumer starts at the ledger's own position, whatever an earlier consumer acked
    let mut consumer = writer_consumer(&stream, cfg, *pos).await?;
    // the consumer sequence the next first delivery must carry: a fresh consumer numbers its
    // deliveries 1, 2, 3…; a number skipped went to someone else (a fetch given up on, a pull
    // whose answers were lost with a connection) and those messages would come back only as
    // redeliveries after later ones
    let mut next_delivery = 1u64;
    let mut failing_since: Option<Instant> = None;
    loop {
        if let Some(f) = pipeline.failure() {
            return Err(ClusterError::Stopped(f));
        }
        lease.valid().map_err(ClusterError::Fenced)?;
        let mut msgs = Vec::new();
        let mut error: Option<String>;
        let mut cut_short = false;
        if js.client().connection_state() != async_nats::connection::State::Connected {
            error = Some("the connection to NATS is down".into());
        } else {
            // bounded: with NATS unreachable a fetch can wait for ever
            let fetch = async {
                let mut error = None;
                match consumer
                    .fetch()
                    .max_messages(512)
                    .max_bytes(32 << 20)
                    .expires(Duration::from_millis(500))
                    .messages()
                    .await
                {
                    Ok(mut s) => {
                        while let Some(m) = s.next().await {
                            match m {
                                Ok(m) => msgs.push(m),
                                Err(e) => {
                                    error = Some(e.to_string());
                                    break;
                                }
                            }
                        }
                    }
                    Err(e) => error = Some(e.to_string()),
                }
                error
            };
            // a status from the server (batch complete, expired, max bytes) ends a fetch: what
            // came is processed. Only a fetch this side gave up on can leave the rest of its
            // batch delivered to nobody (those would come back as redeliveries after later
            // messages): nothing of it is applied, the consumer starts again at the ledger's
            // position (stream order kept).
            error = match tokio::time::timeout(Duration::from_secs(10), fetch).await {
                Ok(e) => e,
                Err(_) => {
                    cut_short = true;
                    Some("JetStream did not finish a fetch within 10s".into())
                }
            };
        }
        if cut_short {
            msgs.clear();
            stats.resyncs.fetch_add(1, Ordering::Relaxed);
            if let Ok(c) = writer_consumer(&stream, cfg, *pos).await {
                consumer = c;
                next_delivery = 1;
            }
        }
        if error.is_none() && msgs.is_empty() && lease.renewal_late() {
            error = Some("the lease could not be renewed".into());
        }
        match (&error, msgs.is_empty()) {
            (Some(e), true) => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                // raised at once: the lease lapses soon after (this writer stops writing then)
                {
                    pipeline.control_for(
                        "cluster-consume",
                        Some(&cfg.partition),
                        "Ledger writer cannot read from JetStream",
                        format!(
                            "the writer of partition {} has not reached JetStream for {}s ({e}); ingest nodes refuse new batches with 503 until it is back, nothing acknowledged is lost; if its lease lapses meanwhile the writer stops (restart it, or let Kubernetes do so, once NATS is back)",
                            cfg.partition,
                            since.elapsed().as_secs()
                        ),
                    );
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
            _ => failing_since = None,
        }
        // stream order or nothing: a first delivery whose consumer sequence skips a number
        // (messages delivered to nobody here), a redelivery of a message the ledger does not
        // hold yet, or sequences going backwards, mean this writer would apply messages out of
        // order; the batch is dropped and the consumer starts again at the ledger's position
        // (never skip ahead)
        let mut last = pos.map(|p| p.seq);
        let mut expect = next_delivery;
        let mut in_order = true;
        for m in &msgs {
            let Ok(info) = m.info() else {
                in_order = false;
                break;
            };
            let seq = info.stream_sequence;
            let behind = pos.is_some_and(|p| seq <= p.seq);
            if info.delivered == 1 {
                if info.consumer_sequence != expect {
                    in_order = false;
                    break;
                }
                expect += 1;
            }
            if !behind && (info.delivered > 1 || last.is_some_and(|l| seq < l)) {
                in_order = false;
                break;
            }
            last = Some(last.map_or(seq, |l| l.max(seq)));
        }
        if !in_order {
            msgs.clear();
            stats.resyncs.fetch_add(1, Ordering::Relaxed);
            consumer = writer_consumer(&stream, cfg, *pos).await?;
            next_delivery = 1;
            continue;
        }
        next_delivery = expect;
        let mut waits = Vec::new();
        for m in &msgs {
            let info = m.info().map_err(|e| nats("a message's metadata", &e))?;
            let seq = info.stream_sequence;
            let done_k = match *pos {
                Some(p) if seq < p.seq => {
                    stats.skipped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Some(p) if seq == p.seq => Some(p.k),
                _ => None,
            };
            let skip = done_k.map_or(0, |k| k as usize + 1);
            // with a cluster key, only a message an ingest node signed is trailwarden's
            let signed = key.is_none_or(|k| {
                m.headers
                    .as_ref()
                    .and_then(|h| h.get(wire::SIGNATURE_HEADER))
                    .is_some_and(|sig| wire::verify(k, &m.payload, sig.as_str()))
            });
            let decoded = if signed {
                wire::decode(&m.payload)
            } else {
                Err(ClusterError::Message(format!(
                    "no valid {} (not signed with the cluster's message key)",
                    wire::SIGNATURE_HEADER
                )))
            };
            match decoded {
                Ok(Message::Records {
                    endpoint,
                    sender,
                    records,
                }) => {
                    let n = records.len();
                    let received = records.first().map(|r| r.received);
                    if skip >= n {
                        stats.skipped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    let mut b = Batch::new(
                        endpoint,
                        sender,
                        records.into_iter().skip(skip).collect(),
                        Some(tx),
                    );
                    b.stream = Some(StreamPos {
                        seq,
                        k: skip as u32,
                    });
                    submit(pipeline, b).await?;
                    waits.push(Wait::Batch(rx, received));
                    *pos = Some(StreamPos {
                        seq,
                        k: (n - 1) as u32,
                    });
                }
                Ok(Message::Access(a)) => {
                    if done_k.is_some() {
                        stats.skipped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let body = serde_json::to_value(&a)
                        .map_err(|e| ClusterError::Message(e.to_string()))?;
                    let p = StreamPos { seq, k: 0 };
                    let rx = pipeline
                        .record_from(RecordKind::Access, body, p)
                        .map_err(ClusterError::Stopped)?;
                    waits.push(Wait::Index(rx));
                    *pos = Some(p);
                }
                Ok(Message::Control(c)) => {
                    // not a ledger record of its own (the alert is): a replay merges into it
                    pipeline.control_for(&c.kind, c.subject.as_deref(), &c.title, c.summary);
                }
                Err(e) => {
                    if done_k.is_some() {
                        continue;
                    }
                    stats.foreign.fetch_add(1, Ordering::Relaxed);
                    let rec = Record {
                        source: format!("nats:{}/{}", cfg.stream, m.subject),
                        received: Timestamp::now(),
                        raw: m.payload.to_vec(),
                        location: None,
                        body: Body::Quarantine(Quarantine {
                            format: None,
                            reason: format!(
                                "JetStream message {seq} on {} is not a trailwarden message: {e}",
                                m.subject
                            ),
                            full_len: None,
                            full_sha256: None,
                        }),
                    };
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    let mut b = Batch::new("nats".into(), "jetstream".into(), vec![rec], Some(tx));
                    b.stream = Some(StreamPos { seq, k: 0 });
                    submit(pipeline, b).await?;
                    waits.push(Wait::Batch(rx, None));
                    *pos = Some(StreamPos { seq, k: 0 });
                }
            }
        }
        // durable first, then acknowledged
        for w in waits {
            let r = match w {
                Wait::Batch(rx, received) => {
                    let r = rx.await.map(|r| r.map(|_| ()));
                    if let (Ok(Ok(())), Some(t)) = (&r, received) {
                        stats.observe((Timestamp::now().0 - t.0) as f64 / 1e9);
                    }
                    r
                }
                Wait::Index(rx) => rx.await.map(|r| r.map(|_| ())),
            };
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(ClusterError::Stopped(e)),
                Err(_) => return Err(ClusterError::Stopped("the ledger writer stopped".into())),
            }
        }
        // bounded (acks wait on a connection that may be gone); a lost ack only means a
        // redelivery, which the ledger's position skips
        if js.client().connection_state() == async_nats::connection::State::Connected {
            let acks = futures::future::join_all(msgs.iter().map(|m| m.ack()));
            let _ = tokio::time::timeout(Duration::from_secs(1), acks).await;
        }
        stats
            .messages
            .fetch_add(msgs.len() as u64, Ordering::Relaxed);
        if let Some(p) = pos {
            stats.position.store(p.seq, Ordering::Relaxed);
        }
    }
}

/// The writer's durable consumer, made afresh at the ledger's position (deleted first: what an
/// earlier consumer acknowledged or had in flight does not count).
async fn writer_consumer(
    stream: &async_nats::jetstream::stream::Stream,
    cfg: &ClusterConfig,
    pos: Option<StreamPos>,
) -> Result<consumer::Consumer<consumer::pull::Config>, ClusterError> {
    let name = cfg.writer_consumer();
    let _ = stream.delete_consumer(&name).await;
    stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some(name.clone()),
            description: Some(format!("trailwarden ledger writer of {}", cfg.partition)),
            filter_subject: cfg.subject(),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_secs(60),
            max_ack_pending: 20_000,
            deliver_policy: match pos {
                Some(p) => consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: p.seq,
                },
                None => consumer::DeliverPolicy::All,
            },
            ..Default::default()
        })
        .await
        .map_err(|e| ClusterError::Nats(format!("creating the writer's consumer: {e}")))
}

enum Wait {
    Batch(
        tokio::sync::oneshot::Receiver<Result<trailwarden_pipeline::Stored, String>>,
        Option<Timestamp>,
    ),
    Index(tokio::sync::oneshot::Receiver<Result<u64, String>>),
}
