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
    /// Publishes JetStream refused for the moment (e.g. 429, its ingest queue full) and that were
    /// sent again, with the same message id, after a pause.
    pub retries: u64,
}

/// How often one message is sent again before the run gives up.
const MAX_ATTEMPTS: u32 = 30;

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
        retries: 0,
    };
    let mut i = 0usize;
    let run = format!("raw-{}-{}", std::process::id(), start.elapsed().as_nanos());
    let send = |i: usize| {
        let (m, _) = &messages[i % messages.len()];
        let msg = jetstream::message::PublishMessage::build()
            .payload(bytes::Bytes::from(m.clone()))
            .message_id(format!("{run}-{i}"));
        js.send_publish(subject.clone(), msg)
    };
    while Instant::now() < end || !inflight.is_empty() {
        if Instant::now() < end && inflight.len() < window.max(1) {
            match send(i).await {
                Ok(f) => inflight.push_back((f, i)),
                Err(e) => {
                    // not sent: the same message again after a pause, as for a refused ack
                    out.retries += 1;
                    retry(&send, i, &mut out, &e.to_string()).await?;
                    account(&mut out, &messages[i % messages.len()]);
                }
            }
            i += 1;
            continue;
        }
        let Some((f, k)) = inflight.pop_front() else {
            break;
        };
        if let Err(e) = f.await {
            // JetStream refused (429 when its ingest queue is full) or the ack timed out: the
            // same message id again, which its duplicate window stores once at most
            out.retries += 1;
            retry(&send, k, &mut out, &e.to_string()).await?;
        }
        account(&mut out, &messages[k % messages.len()]);
    }
    out.seconds = start.elapsed().as_secs_f64();
    Ok(out)
}

fn account(out: &mut RawPublish, (m, n): &(Vec<u8>, usize)) {
    out.messages += 1;
    out.records += *n as u64;
    out.bytes += m.len() as u64;
}

/// Send message `k` again until JetStream acknowledges it: pauses from 10 ms doubling to 1 s,
/// at most [`MAX_ATTEMPTS`] times; `first` is the error that started it.
async fn retry<F, Fut>(
    send: &F,
    k: usize,
    out: &mut RawPublish,
    first: &str,
) -> Result<(), ClusterError>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<
        Output = Result<jetstream::context::PublishAckFuture, jetstream::context::PublishError>,
    >,
{
    let mut pause = Duration::from_millis(10);
    let mut last = first.to_string();
    for _ in 0..MAX_ATTEMPTS {
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
        let acked = match send(k).await {
            Ok(f) => f.await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match acked {
            Ok(()) => return Ok(()),
            Err(e) => {
                out.retries += 1;
                last = e;
            }
        }
    }
    Err(ClusterError::Nats(format!(
        "message {k} not acknowledged after {MAX_ATTEMPTS} attempts: {last}"
    )))
}
