//! The engine's own limit, for the benchmark: JetStream publish of the very messages an ingest
//! node would send (`nats bench`-style: as many in flight as the window allows, each
//! acknowledged), with nothing of trailwarden's around it.

use crate::config::ClusterConfig;
use crate::ClusterError;
use async_nats::jetstream;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// What a raw publish run did.
#[derive(Debug, Clone, Copy)]
pub struct RawPublish {
    /// Messages acknowledged.
    pub messages: u64,
    /// Records in them.
    pub records: u64,
    /// Bytes in them.
    pub bytes: u64,
    /// Wall time.
    pub seconds: f64,
}

/// Publish `messages` (bytes, records each) round and round for `seconds`, at most `window`
/// unacknowledged at a time, each with a fresh message id; the stream is created as `cfg` says.
pub async fn publish_raw(
    cfg: &ClusterConfig,
    messages: &[(Vec<u8>, usize)],
    seconds: f64,
    window: usize,
) -> Result<RawPublish, ClusterError> {
    let client = crate::nats::connect(cfg).await?;
    let js = jetstream::new(client);
    crate::nats::ensure_stream(&js, cfg).await?;
    let subject = cfg.subject();
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    let mut inflight = VecDeque::new();
    let mut out = RawPublish {
        messages: 0,
        records: 0,
        bytes: 0,
        seconds: 0.0,
    };
    let mut i = 0usize;
    let run = format!("raw-{}", std::process::id());
    while Instant::now() < end {
        let (m, n) = &messages[i % messages.len()];
        let msg = jetstream::message::PublishMessage::build()
            .payload(bytes::Bytes::from(m.clone()))
            .message_id(format!("{run}-{i}"));
        let f = js
            .send_publish(subject.clone(), msg)
            .await
            .map_err(|e| ClusterError::Nats(e.to_string()))?;
        inflight.push_back((f, *n, m.len()));
        i += 1;
        if inflight.len() >= window {
            if let Some((f, n, b)) = inflight.pop_front() {
                f.await.map_err(|e| ClusterError::Nats(e.to_string()))?;
                out.messages += 1;
                out.records += n as u64;
                out.bytes += b as u64;
            }
        }
    }
    while let Some((f, n, b)) = inflight.pop_front() {
        f.await.map_err(|e| ClusterError::Nats(e.to_string()))?;
        out.messages += 1;
        out.records += n as u64;
        out.bytes += b as u64;
    }
    out.seconds = start.elapsed().as_secs_f64();
    Ok(out)
}
