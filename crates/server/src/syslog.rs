//! The syslog receiver: RFC 5424 and RFC 3164 messages over TCP (octet-counting and newline
//! framing, RFC 6587), TLS (RFC 5425) and UDP (RFC 5426), into the same pipeline as the HTTP
//! endpoints. A full queue slows senders down (TCP flow control); nothing is dropped by us.

use crate::config::Config;
use crate::http::AppState;
use crate::ServerError;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use trailwarden_model::Format;
use trailwarden_pipeline::{Batch, Refused};

/// The running listeners.
pub struct Syslog {
    /// (kind, address) of each listener.
    pub addrs: Vec<(String, SocketAddr)>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Syslog {
    /// Stop accepting.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Wait for the listeners (and what they hold) to be stored.
    pub async fn drain(self, grace: Duration) {
        for t in self.tasks {
            let _ = tokio::time::timeout(grace, t).await;
        }
    }
}

/// Start the configured listeners.
pub async fn start(
    cfg: &Config,
    tls: Option<Arc<rustls::ServerConfig>>,
    state: Arc<AppState>,
) -> Result<Syslog, ServerError> {
    let (stop, rx) = watch::channel(false);
    let mut s = Syslog {
        addrs: Vec::new(),
        stop,
        tasks: Vec::new(),
    };
    let bind = |a: &String, e: std::io::Error| ServerError::Bind {
        addr: a.clone(),
        source: e,
    };
    if let Some(a) = &cfg.syslog.tcp {
        let l = TcpListener::bind(a).await.map_err(|e| bind(a, e))?;
        s.addrs
            .push(("tcp".into(), l.local_addr().map_err(|e| bind(a, e))?));
        s.tasks
            .push(tokio::spawn(accept(l, None, state.clone(), rx.clone())));
    }
    if let Some(a) = &cfg.syslog.tls {
        let l = TcpListener::bind(a).await.map_err(|e| bind(a, e))?;
        s.addrs
            .push(("tls".into(), l.local_addr().map_err(|e| bind(a, e))?));
        let mut c = tls
            .as_ref()
            .map(|c| (**c).clone())
            .ok_or_else(|| ServerError::Config("syslog.tls needs http.tls".into()))?;
        c.alpn_protocols.clear();
        s.tasks.push(tokio::spawn(accept(
            l,
            Some(Arc::new(c)),
            state.clone(),
            rx.clone(),
        )));
    }
    if let Some(a) = &cfg.syslog.udp {
        let u = UdpSocket::bind(a).await.map_err(|e| bind(a, e))?;
        s.addrs
            .push(("udp".into(), u.local_addr().map_err(|e| bind(a, e))?));
        s.tasks
            .push(tokio::spawn(udp(u, state.clone(), rx.clone())));
    }
    Ok(s)
}

async fn accept(
    l: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    state: Arc<AppState>,
    mut stop: watch::Receiver<bool>,
) {
    let mut conns = Vec::new();
    loop {
        let (sock, peer) = tokio::select! {
            r = l.accept() => match r { Ok(x) => x, Err(_) => continue },
            _ = stop.changed() => break,
        };
        let state = state.clone();
        let tls = tls.clone();
        let stop = stop.clone();
        let hs = Duration::from_secs(state.cfg.http.tls_handshake_timeout_seconds);
        conns.push(tokio::spawn(async move {
            match tls {
                Some(c) => {
                    let acc = tokio_rustls::TlsAcceptor::from(c);
                    if let Ok(Ok(s)) = tokio::time::timeout(hs, acc.accept(sock)).await {
                        stream(s, peer, "syslog-tls", state, stop).await;
                    }
                }
                None => stream(sock, peer, "syslog-tcp", state, stop).await,
            }
        }));
        conns.retain(|h| !h.is_finished());
    }
    for c in conns {
        let _ = c.await;
    }
}

/// Read one message (octet-counted when the frame starts with a digit, else up to LF).
/// `Ok(None)` at the end of the stream.
async fn frame<R: AsyncRead + Unpin>(
    r: &mut BufReader<R>,
    max: usize,
) -> Result<Option<Vec<u8>>, FrameError> {
    let buf = r.fill_buf().await?;
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    if first.is_ascii_digit() {
        let mut len = Vec::new();
        r.read_until(b' ', &mut len).await?;
        let digits = len.strip_suffix(b" ").unwrap_or(&len);
        let Some(n) = std::str::from_utf8(digits)
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|_| digits.len() <= 10)
        else {
            return Err(FrameError::BadCount(len));
        };
        let keep = n.min(max.saturating_mul(16));
        let mut msg = vec![0u8; keep];
        r.read_exact(&mut msg).await?;
        // beyond 16× the limit the rest is skipped (the kept prefix is quarantined as too large)
        let mut rest = (n - keep) as u64;
        while rest > 0 {
            let b = r.fill_buf().await?;
            if b.is_empty() {
                break;
            }
            let k = (b.len() as u64).min(rest) as usize;
            r.consume(k);
            rest -= k as u64;
        }
        return Ok(Some(msg));
    }
    let mut msg = Vec::new();
    loop {
        let b = r.fill_buf().await?;
        if b.is_empty() {
            break;
        }
        match memchr_lf(b) {
            Some(i) => {
                if msg.len() < max.saturating_mul(16) {
                    msg.extend_from_slice(&b[..i]);
                }
                r.consume(i + 1);
                break;
            }
            None => {
                let n = b.len();
                if msg.len() < max.saturating_mul(16) {
                    msg.extend_from_slice(b);
                }
                r.consume(n);
            }
        }
    }
    if msg.last() == Some(&b'\r') {
        msg.pop();
    }
    Ok(Some(msg))
}

/// Why a stream cannot be read on.
enum FrameError {
    /// Reading failed (connection reset, TLS error).
    Io,
    /// The frame starts with digits that are not an octet count: these bytes were consumed.
    BadCount(Vec<u8>),
}

impl From<std::io::Error> for FrameError {
    fn from(e: std::io::Error) -> Self {
        let _ = e;
        FrameError::Io
    }
}

fn memchr_lf(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

async fn stream<S: AsyncRead + Unpin>(
    s: S,
    peer: SocketAddr,
    kind: &str,
    state: Arc<AppState>,
    mut stop: watch::Receiver<bool>,
) {
    let mut r = BufReader::with_capacity(64 << 10, s);
    let max = state.cfg.syslog.max_message_bytes;
    let window = Duration::from_millis(state.cfg.syslog.batch_ms.max(1));
    let mut pending: Vec<Vec<u8>> = Vec::new();
    let mut deadline = None;
    let mut bad = None;
    loop {
        let timeout = until(deadline);
        tokio::select! {
            m = frame(&mut r, max) => match m {
                Ok(Some(m)) => {
                    if !m.is_empty() {
                        pending.push(m);
                    }
                    deadline.get_or_insert_with(|| tokio::time::Instant::now() + window);
                    if pending.len() >= 2000 {
                        store(&state, kind, peer, std::mem::take(&mut pending)).await;
                        deadline = None;
                    }
                }
                Ok(None) => break,
                Err(FrameError::Io) => break,
                Err(FrameError::BadCount(raw)) => {
                    // the rest of the stream cannot be framed: what was read is quarantined with
                    // its bytes and the connection closed (the sender reconnects)
                    bad = Some(raw);
                    break;
                }
            },
            _ = timeout => {
                store(&state, kind, peer, std::mem::take(&mut pending)).await;
                deadline = None;
            }
            _ = stop.changed() => break,
        }
    }
    store(&state, kind, peer, pending).await;
    if let Some(raw) = bad {
        let rec = trailwarden_model::Record {
            source: format!("{kind} {}", peer.ip()),
            received: trailwarden_model::Timestamp::now(),
            raw,
            location: None,
            body: trailwarden_model::Body::Quarantine(trailwarden_model::Quarantine {
                format: Some(Format::Syslog),
                reason: "RFC 6587 framing: digits not followed by a space are not an octet count; the connection was closed".into(),
                full_len: None,
                full_sha256: None,
            }),
        };
        submit_waiting(&state, kind, peer, vec![rec]).await;
    }
}

/// Wait until the batch deadline (forever when no batch is open).
async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn udp(u: UdpSocket, state: Arc<AppState>, mut stop: watch::Receiver<bool>) {
    let mut buf = vec![0u8; 65_536];
    let window = Duration::from_millis(state.cfg.syslog.batch_ms.max(1));
    let mut pending: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
    let mut deadline = None;
    loop {
        let timeout = until(deadline);
        tokio::select! {
            r = u.recv_from(&mut buf) => if let Ok((n, peer)) = r {
                let mut m = buf[..n].to_vec();
                while m.last().is_some_and(|c| *c == b'\n' || *c == b'\r') {
                    m.pop();
                }
                pending.push((peer, m));
                deadline.get_or_insert_with(|| tokio::time::Instant::now() + window);
            },
            _ = timeout => {
                flush_udp(&state, std::mem::take(&mut pending)).await;
                deadline = None;
            }
            _ = stop.changed() => break,
        }
    }
    flush_udp(&state, pending).await;
}

async fn flush_udp(state: &Arc<AppState>, pending: Vec<(SocketAddr, Vec<u8>)>) {
    let mut by_peer: std::collections::BTreeMap<SocketAddr, Vec<Vec<u8>>> = Default::default();
    for (p, m) in pending {
        by_peer.entry(p).or_default().push(m);
    }
    for (p, ms) in by_peer {
        store(state, "syslog-udp", p, ms).await;
    }
}

/// Parse and store messages; waits while the queue is full (backpressure reaches the sender).
async fn store(state: &Arc<AppState>, kind: &str, peer: SocketAddr, msgs: Vec<Vec<u8>>) {
    if msgs.is_empty() {
        return;
    }
    let source = format!("{kind} {}", peer.ip());
    let classifier = state.classifier.clone();
    let max = state.cfg.syslog.max_message_bytes;
    let records = tokio::task::spawn_blocking(move || {
        let inputs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
        crate::http::parse_many(
            &classifier,
            None,
            Some(Format::Syslog),
            max,
            &source,
            &inputs,
        )
    })
    .await
    .unwrap_or_default();
    submit_waiting(state, kind, peer, records).await;
}

/// Queue records, waiting while the queue is full; returns once they are durable (or refused
/// because the server stops).
async fn submit_waiting(
    state: &Arc<AppState>,
    kind: &str,
    peer: SocketAddr,
    records: Vec<trailwarden_model::Record>,
) {
    let (tx, mut rx) = tokio::sync::oneshot::channel();
    let mut b = Batch::new(
        "syslog".into(),
        format!("{kind} {}", peer.ip()),
        records,
        Some(tx),
    );
    state.metrics.bytes("syslog", b.bytes());
    let mut warned = false;
    loop {
        match state.pipeline.submit(b) {
            Ok(()) => {
                let _ = (&mut rx).await;
                return;
            }
            Err((Refused::Backpressure, back)) => {
                b = back;
                if !warned {
                    state.metrics.rejected("backpressure");
                    state.pipeline.control(
                        "backpressure",
                        "Ingest slowed under backpressure (syslog)",
                        format!("the ledger writer's queue is full; syslog from {peer} waits"),
                    );
                    warned = true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err((Refused::Stopped(_), _)) => return,
        }
    }
}
