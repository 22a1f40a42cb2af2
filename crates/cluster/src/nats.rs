//! Connecting to NATS, the stream, and the writer's lease.

use crate::config::{ClusterConfig, LEASE_BUCKET};
use crate::ClusterError;
use async_nats::jetstream::{self, kv, stream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Connect to the configured servers (retrying in the background when they are down: an
/// ingest node answers 503 meanwhile).
pub async fn connect(cfg: &ClusterConfig) -> Result<async_nats::Client, ClusterError> {
    let url = cfg
        .nats_url
        .as_deref()
        .ok_or_else(|| ClusterError::Config("cluster.nats_url is not set".into()))?;
    let urls: Vec<async_nats::ServerAddr> = url
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| {
            u.parse().map_err(|e| {
                ClusterError::Config(format!("cluster.nats_url {u:?} is not a NATS URL: {e}"))
            })
        })
        .collect::<Result<_, _>>()?;
    let mut o = async_nats::ConnectOptions::new()
        .name(format!("trailwarden {}", cfg.node_name()))
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5))
        .max_reconnects(None);
    if let Some(f) = &cfg.creds_file {
        o = o.credentials_file(f).await.map_err(|e| {
            ClusterError::Config(format!("cluster.creds_file {}: {e}", f.display()))
        })?;
    }
    if let Some(ca) = &cfg.tls_ca {
        o = o.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let Ok(tok) = std::env::var("TRAILWARDEN_CLUSTER_NATS_TOKEN") {
        o = o.token(tok);
    }
    o.connect(urls)
        .await
        .map_err(|e| ClusterError::Nats(format!("connecting to {url}: {e}")))
}

/// The stream, created with the configured settings when it does not exist yet (file storage,
/// limits retention, no deletes or purges, the duplicate window for idempotent retries).
pub async fn ensure_stream(
    js: &jetstream::Context,
    cfg: &ClusterConfig,
) -> Result<stream::Stream, ClusterError> {
    let config = stream::Config {
        name: cfg.stream.clone(),
        subjects: vec![format!("{}.>", cfg.subject_prefix)],
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        num_replicas: cfg.replicas,
        max_age: Duration::from_secs(cfg.max_age_days * 86_400),
        duplicate_window: Duration::from_secs(cfg.duplicate_window_seconds),
        deny_delete: true,
        deny_purge: true,
        discard: stream::DiscardPolicy::Old,
        description: Some(
            "trailwarden audit batches (raw bytes + normalized fields), one subject per partition"
                .into(),
        ),
        ..Default::default()
    };
    // a NATS cluster that has just started answers with timeouts until it has elected its
    // JetStream leaders: those are waited out (bounded); other refusals are reported at once
    let deadline = Instant::now() + STREAM_WAIT;
    loop {
        match js.get_or_create_stream(config.clone()).await {
            Ok(s) => return Ok(s),
            Err(e) => {
                let text = e.to_string();
                let lower = text.to_ascii_lowercase();
                let transient = ["timed out", "no responders", "unavailable", "leader"]
                    .iter()
                    .any(|t| lower.contains(t));
                if !transient || Instant::now() >= deadline {
                    return Err(ClusterError::Nats(format!(
                        "stream {}: {text}{}",
                        cfg.stream,
                        if transient {
                            format!(" (still so after {}s)", STREAM_WAIT.as_secs())
                        } else {
                            String::new()
                        }
                    )));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// How long a starting node waits for JetStream to answer about the stream.
pub const STREAM_WAIT: Duration = Duration::from_secs(30);

/// A writer's lease on its partition: a key in a JetStream key-value bucket whose entries
/// expire after `lease_seconds`; taken with a create (only when absent), renewed with a
/// compare-and-set on the revision. [`Lease::valid`] is what the ledger writer asks before
/// every write: it turns false `lease_seconds` (less a margin) after the last renewal that
/// was *sent* — before the server lets the key expire — or at once when another node holds it.
pub struct Lease {
    valid_until: Arc<AtomicU64>,
    renewed: Arc<AtomicU64>,
    ttl: Duration,
    lost: Arc<AtomicBool>,
    base: Instant,
    /// The revision the lease was taken at (the writer's epoch; it only grows).
    pub epoch: u64,
    /// Who held the partition before (if the key named someone when we waited for it).
    pub previous: Option<String>,
    task: tokio::task::JoinHandle<()>,
}

/// Margin kept between the local lease deadline and the server's expiry.
const MARGIN: Duration = Duration::from_millis(1500);

impl Lease {
    /// Wait until the lease is ours (a standby waits here), then keep renewing it.
    /// `on_wait` is called once when somebody else holds it.
    pub async fn acquire(
        js: &jetstream::Context,
        cfg: &ClusterConfig,
        on_wait: impl FnOnce(&str),
    ) -> Result<Lease, ClusterError> {
        let created = js
            .create_key_value(kv::Config {
                bucket: LEASE_BUCKET.into(),
                description: "trailwarden writer leases (one writer per partition)".into(),
                history: 1,
                max_age: cfg.lease(),
                storage: stream::StorageType::File,
                num_replicas: cfg.replicas,
                ..Default::default()
            })
            .await;
        let kv = match created {
            Ok(kv) => kv,
            // made by another node (perhaps with other settings): use it as it is
            Err(e) => js
                .get_key_value(LEASE_BUCKET)
                .await
                .map_err(|_| ClusterError::Nats(format!("lease bucket {LEASE_BUCKET}: {e}")))?,
        };
        let key = cfg.lease_key();
        let me = cfg.node_name();
        let mut on_wait = Some(on_wait);
        let mut previous = None;
        let base = Instant::now();
        let (rev, sent) = loop {
            let sent = Instant::now();
            match kv.create(&key, me.clone().into()).await {
                Ok(rev) => break (rev, sent),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                    if let Ok(Some(v)) = kv.get(&key).await {
                        let holder = String::from_utf8_lossy(&v).to_string();
                        if let Some(f) = on_wait.take() {
                            f(&holder);
                        }
                        previous = Some(holder);
                    }
                }
                Err(e) => {
                    return Err(ClusterError::Nats(format!("taking the lease {key}: {e}")));
                }
            }
            tokio::time::sleep(cfg.lease() / 5).await;
        };
        let ttl = cfg.lease();
        let deadline = move |sent: Instant| {
            (sent + ttl)
                .saturating_duration_since(base)
                .saturating_sub(MARGIN)
                .as_nanos() as u64
        };
        let valid_until = Arc::new(AtomicU64::new(deadline(sent)));
        let renewed = Arc::new(AtomicU64::new(base.elapsed().as_nanos() as u64));
        let lost = Arc::new(AtomicBool::new(false));
        let (vu, l, rn) = (valid_until.clone(), lost.clone(), renewed.clone());
        let task = tokio::spawn(async move {
            let mut rev = rev;
            loop {
                tokio::time::sleep(ttl / 4).await;
                let sent = Instant::now();
                match kv.update(&key, me.clone().into(), rev).await {
                    Ok(r) => {
                        rev = r;
                        vu.store(deadline(sent), Ordering::SeqCst);
                        rn.store(base.elapsed().as_nanos() as u64, Ordering::SeqCst);
                    }
                    Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                        // somebody else holds it now: this writer is deposed for good
                        l.store(true, Ordering::SeqCst);
                        vu.store(0, Ordering::SeqCst);
                        return;
                    }
                    Err(_) => {} // NATS unreachable: the deadline runs out by itself
                }
            }
        });
        Ok(Lease {
            valid_until,
            renewed,
            ttl,
            lost,
            base,
            epoch: rev,
            previous,
            task,
        })
    }

    /// Whether this node may still write (checked before every ledger write).
    pub fn valid(&self) -> Result<(), String> {
        let now = self.base.elapsed().as_nanos() as u64;
        if self.lost.load(Ordering::SeqCst) {
            return Err("another node took the partition's lease".into());
        }
        if now >= self.valid_until.load(Ordering::SeqCst) {
            return Err(
                "the lease expired without renewal (NATS unreachable, or this process was paused)"
                    .into(),
            );
        }
        Ok(())
    }

    /// Whether the last renewal is older than half the lease (NATS unreachable): the writer
    /// raises that before the lease lapses.
    pub fn renewal_late(&self) -> bool {
        let now = self.base.elapsed().as_nanos() as u64;
        now.saturating_sub(self.renewed.load(Ordering::SeqCst)) > (self.ttl / 2).as_nanos() as u64
    }

    /// The check as a closure for the ledger writer.
    pub fn fence(self: &Arc<Self>) -> trailwarden_pipeline::Fence {
        let l = self.clone();
        Arc::new(move || l.valid())
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.task.abort();
    }
}
