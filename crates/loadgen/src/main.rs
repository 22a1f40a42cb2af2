//! `tw-loadgen`: posts `EventList` batches (the API server webhook's default batch of 400
//! events) to `trailwarden serve` over keep-alive HTTP/1.1 connections (TLS or not) and reports
//! throughput and acknowledgement latency as JSON.
//!
//! ```text
//! tw-loadgen --url https://127.0.0.1:8443 --token $T --ca data/keys/tls.crt \
//!     --events audit.jsonl --connections 8 --seconds 30            # as fast as acknowledged
//! tw-loadgen ... --rate 10000 --connections 4 --seconds 60         # steady 10k events/s
//! ```
//!
//! At a steady rate, latency is measured from when each batch was due, not when it was sent, so
//! a slow answer delays the next batch's clock too (no coordinated omission).
//!
//! For endurance runs (`scripts/soak`): `--unique PREFIX` gives every posted event its own
//! `auditID` (`PREFIX` + batch number + position) and `--acked FILE` writes the numbers of the
//! batches the server acknowledged (one per line). In every mode a connection that fails (a
//! server killed and restarted, or one closing the connection after refusing a batch under
//! overload) is reconnected instead of ending the run; failures are counted.
#![warn(missing_docs)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Args {
    url: String,
    token: String,
    ca: Option<String>,
    events: String,
    batch: usize,
    connections: usize,
    seconds: u64,
    rate: Option<f64>,
    unique: Option<String>,
    acked: Option<String>,
}

fn usage() -> ! {
    eprintln!("usage: tw-loadgen --url URL[,URL…] --token T[,T…] [--ca PEM[,PEM…]] --events FILE.jsonl [--batch 400] [--connections 8] [--seconds 30] [--rate EVENTS_PER_S] [--unique PREFIX] [--acked FILE]\n  several URLs (cluster ingest nodes): connection i posts to URL i mod n with token i mod n");
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        url: String::new(),
        token: String::new(),
        ca: None,
        events: String::new(),
        batch: 400,
        connections: 8,
        seconds: 30,
        rate: None,
        unique: None,
        acked: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().unwrap_or_else(|| usage());
        match k.as_str() {
            "--url" => a.url = v(),
            "--token" => a.token = v(),
            "--ca" => a.ca = Some(v()),
            "--events" => a.events = v(),
            "--batch" => a.batch = v().parse().unwrap_or_else(|_| usage()),
            "--connections" => a.connections = v().parse().unwrap_or_else(|_| usage()),
            "--seconds" => a.seconds = v().parse().unwrap_or_else(|_| usage()),
            "--rate" => a.rate = Some(v().parse().unwrap_or_else(|_| usage())),
            "--unique" => a.unique = Some(v()),
            "--acked" => a.acked = Some(v()),
            _ => usage(),
        }
    }
    if a.url.is_empty() || a.token.is_empty() || a.events.is_empty() {
        usage()
    }
    a
}

trait Conn: Read + Write + Send {}
impl<T: Read + Write + Send> Conn for T {}

fn connect(host: &str, tls: Option<&Arc<rustls::ClientConfig>>) -> std::io::Result<Box<dyn Conn>> {
    let tcp = TcpStream::connect(host)?;
    let _ = tcp.set_nodelay(true);
    match tls {
        Some(cfg) => {
            let name = host.rsplit_once(':').map_or(host, |(h, _)| h).to_string();
            let server = rustls::pki_types::ServerName::try_from(name)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let c = rustls::ClientConnection::new(cfg.clone(), server)
                .map_err(std::io::Error::other)?;
            Ok(Box::new(rustls::StreamOwned::new(c, tcp)))
        }
        None => Ok(Box::new(tcp)),
    }
}

/// The events of the file, in batches: joined bodies, or (with `--unique`) each event split
/// around its `auditID` value so that every post can give its events ids of their own.
enum Batches {
    Fixed(Vec<Vec<u8>>),
    Unique {
        prefix: String,
        batches: Vec<Vec<(String, String)>>,
    },
}

const LIST_HEAD: &str =
    "{\"kind\":\"EventList\",\"apiVersion\":\"audit.k8s.io/v1\",\"metadata\":{},\"items\":[";

impl Batches {
    fn len(&self) -> usize {
        match self {
            Batches::Fixed(b) => b.len(),
            Batches::Unique { batches, .. } => batches.len(),
        }
    }

    /// The body of batch number `k` (a post's own number in `--unique` mode).
    fn body(&self, k: u64) -> std::borrow::Cow<'_, [u8]> {
        let i = (k % self.len() as u64) as usize;
        match self {
            Batches::Fixed(b) => std::borrow::Cow::Borrowed(&b[i]),
            Batches::Unique { prefix, batches } => {
                let mut out = String::with_capacity(
                    LIST_HEAD.len()
                        + batches[i]
                            .iter()
                            .map(|(h, t)| h.len() + t.len() + 40)
                            .sum::<usize>(),
                );
                out.push_str(LIST_HEAD);
                for (j, (head, tail)) in batches[i].iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    out.push_str(head);
                    out.push_str(&format!("{prefix}{k:010}-{j:04}"));
                    out.push_str(tail);
                }
                out.push_str("]}");
                std::borrow::Cow::Owned(out.into_bytes())
            }
        }
    }
}

/// Splits an event line around its `auditID` value: (everything up to the value, everything
/// after it).
fn split_audit_id(line: &str) -> Option<(String, String)> {
    const KEY: &str = "\"auditID\":\"";
    let at = line.find(KEY)? + KEY.len();
    let end = at + line[at..].find('"')?;
    Some((line[..at].to_string(), line[end..].to_string()))
}

/// Send one request and read the answer; returns the status code.
fn post(r: &mut BufReader<Box<dyn Conn>>, head: &[u8], body: &[u8]) -> std::io::Result<u16> {
    let w = r.get_mut();
    w.write_all(head)?;
    w.write_all(body)?;
    w.flush()?;
    let mut line = String::new();
    r.read_line(&mut line)?;
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut len = 0usize;
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut sink = vec![0u8; len];
    r.read_exact(&mut sink)?;
    Ok(code)
}

/// `tw-loadgen --jetstream NATS_URL --events FILE [--batch 400] [--seconds 30] [--replicas 1]
/// [--window 32]`: publish the messages an ingest node would make of these batches straight
/// to JetStream (parsed and encoded exactly as `serve --role ingest` does), acknowledged.
fn jetstream_mode(args: &[String]) {
    let get = |k: &str| {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let url = get("--jetstream").unwrap_or_else(|| usage());
    let events = get("--events").unwrap_or_else(|| usage());
    let num = |k: &str, d: usize| get(k).map_or(d, |v| v.parse().unwrap_or_else(|_| usage()));
    let (batch, seconds, replicas, window) = (
        num("--batch", 400),
        num("--seconds", 30),
        num("--replicas", 1),
        num("--window", 32),
    );
    let text = std::fs::read_to_string(&events).unwrap_or_else(|e| panic!("{events}: {e}"));
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut msgs = Vec::new();
    for c in lines.chunks(batch).filter(|c| c.len() == batch) {
        let body = format!("{{\"kind\":\"EventList\",\"apiVersion\":\"audit.k8s.io/v1\",\"metadata\":{{}},\"items\":[{}]}}", c.join(","));
        let mut recs = Vec::new();
        let mut sink = |r: trailwarden_model::Record| -> Result<(), String> {
            recs.push(r);
            Ok(())
        };
        let _ = trailwarden_parse::Ingestor::new(Default::default(), &mut sink).ingest_bytes(
            "api:k8s-audit token:tok-bench(ingest) 127.0.0.1",
            body.as_bytes(),
        );
        let enc: Vec<_> = recs
            .iter()
            .filter_map(|r| trailwarden_cluster::wire::EncodedRecord::new(r).ok())
            .collect();
        for r in trailwarden_cluster::wire::chunks(&enc, (8 << 20) - 4096) {
            let n = r.len();
            msgs.push((
                trailwarden_cluster::wire::records_message("k8s-audit", "bench", &enc[r]),
                n,
            ));
        }
    }
    assert!(!msgs.is_empty(), "need at least {batch} events");
    let cfg = trailwarden_cluster::ClusterConfig {
        nats_url: Some(url),
        role: trailwarden_cluster::Role::Ingest,
        stream: format!("BENCH_R{replicas}"),
        subject_prefix: format!("bench.r{replicas}"),
        replicas,
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let r = rt
        .block_on(trailwarden_cluster::bench::publish_raw(
            &cfg,
            &msgs,
            seconds as f64,
            window,
        ))
        .unwrap_or_else(|e| panic!("{e}"));
    println!(
        "{}",
        serde_json::json!({
            "events": r.records,
            "messages": r.messages,
            "bytes": r.bytes,
            "seconds": r.seconds,
            "events_per_second": (r.records as f64 / r.seconds).round(),
            "mb_per_second": (r.bytes as f64 / r.seconds / 1e6 * 10.0).round() / 10.0,
            "replicas": replicas,
            "window": window,
            "retries": r.retries,
        })
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--jetstream") {
        jetstream_mode(&args);
        return;
    }
    let a = parse_args();
    let text = std::fs::read_to_string(&a.events).unwrap_or_else(|e| panic!("{}: {e}", a.events));
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let full: Vec<&[&str]> = lines
        .chunks(a.batch)
        .filter(|c| c.len() == a.batch)
        .collect();
    let bodies = Arc::new(match &a.unique {
        None => Batches::Fixed(
            full.iter()
                .map(|c| format!("{LIST_HEAD}{}]}}", c.join(",")).into_bytes())
                .collect(),
        ),
        Some(prefix) => Batches::Unique {
            prefix: prefix.clone(),
            batches: full
                .iter()
                .map(|c| {
                    c.iter()
                        .map(|l| {
                            split_audit_id(l).unwrap_or_else(|| {
                                panic!(
                                    "--unique: an event without \"auditID\": {}",
                                    &l[..l.len().min(200)]
                                )
                            })
                        })
                        .collect()
                })
                .collect(),
        },
    });
    assert!(bodies.len() > 0, "need at least {} events", a.batch);
    let mut hosts = Vec::new();
    let mut tls = false;
    for u in a.url.split(',') {
        let (t, rest) = if let Some(r) = u.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = u.strip_prefix("http://") {
            (false, r)
        } else {
            usage()
        };
        tls |= t;
        hosts.push(rest.trim_end_matches('/').to_string());
    }
    let tokens: Vec<String> = a.token.split(',').map(str::to_string).collect();
    let tls_cfg = tls.then(|| {
        let mut roots = rustls::RootCertStore::empty();
        for ca in a.ca.iter().flat_map(|c| c.split(',')) {
            use rustls::pki_types::pem::PemObject;
            for c in rustls::pki_types::CertificateDer::pem_file_iter(ca)
                .unwrap_or_else(|e| panic!("{ca}: {e}"))
            {
                roots
                    .add(c.unwrap_or_else(|e| panic!("{ca}: {e}")))
                    .unwrap_or_else(|e| panic!("{e}"));
            }
        }
        Arc::new(
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap_or_else(|e| panic!("{e}"))
            .with_root_certificates(roots)
            .with_no_client_auth(),
        )
    });
    let a = Arc::new(a);
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let next_batch = Arc::new(AtomicU64::new(0));
    let lat = Arc::new(Mutex::new(Vec::<f64>::new()));
    let acked = Arc::new(Mutex::new(Vec::<u64>::new()));
    let start = Instant::now();
    let mut hs = Vec::new();
    for c in 0..a.connections {
        let host = hosts[c % hosts.len()].clone();
        let token = tokens[c % tokens.len()].clone();
        let (a, bodies, stop, sent, refused, failed, next_batch, lat, acked, tls_cfg) = (
            a.clone(),
            bodies.clone(),
            stop.clone(),
            sent.clone(),
            refused.clone(),
            failed.clone(),
            next_batch.clone(),
            lat.clone(),
            acked.clone(),
            tls_cfg.clone(),
        );
        hs.push(std::thread::spawn(move || {
            let open = || {
                let mut first = true;
                loop {
                    match connect(&host, tls_cfg.as_ref()) {
                        Ok(s) => return Some(BufReader::with_capacity(64 << 10, s)),
                        Err(e) if first && a.unique.is_none() => panic!("connect {host}: {e}"),
                        Err(_) => {}
                    }
                    first = false;
                    if stop.load(Ordering::Relaxed) {
                        return None;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            };
            let Some(mut r) = open() else { return };
            let mut mine = Vec::new();
            let mut mine_acked = Vec::new();
            // per-connection schedule for the steady rate
            let interval = a.rate.map(|rate| Duration::from_secs_f64(a.batch as f64 * a.connections as f64 / rate));
            let mut due = start + interval.map_or(Duration::ZERO, |i| i.mul_f64(c as f64 / a.connections as f64));
            let mut i = c as u64;
            while !stop.load(Ordering::Relaxed) {
                if interval.is_some() {
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                } else {
                    due = Instant::now();
                }
                // unique mode: every post has its own number (and so its own event ids)
                let k = if a.unique.is_some() { next_batch.fetch_add(1, Ordering::Relaxed) } else { i };
                i += a.connections as u64;
                let body = bodies.body(k);
                let head = format!(
                    "POST /v1/ingest/k8s-audit HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    token,
                    body.len()
                );
                match post(&mut r, head.as_bytes(), &body) {
                    Ok(200) => {
                        mine.push(due.elapsed().as_secs_f64());
                        mine_acked.push(k);
                        sent.fetch_add(a.batch as u64, Ordering::Relaxed);
                    }
                    Ok(429) | Ok(503) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(code) => panic!("unexpected answer {code}"),
                    // a server killed and restarted (endurance runs), or one that closed the
                    // connection after refusing a batch under overload: count, reconnect, go
                    // on (a panic here lost every latency this connection had measured)
                    Err(e) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        eprintln!("connection {c}: {e}; reconnecting");
                        match open() {
                            Some(n) => r = n,
                            None => break,
                        }
                        due = Instant::now();
                        continue;
                    }
                }
                if let Some(iv) = interval {
                    due += iv;
                }
            }
            if let Ok(mut g) = lat.lock() {
                g.extend(mine);
            }
            if let Ok(mut g) = acked.lock() {
                g.extend(mine_acked);
            }
        }));
    }
    std::thread::sleep(Duration::from_secs(a.seconds));
    stop.store(true, Ordering::Relaxed);
    for h in hs {
        let _ = h.join();
    }
    if let Some(path) = &a.acked {
        let mut ks = acked.lock().map(|g| g.clone()).unwrap_or_default();
        ks.sort_unstable();
        let text: String = ks.iter().map(|k| format!("{k}\n")).collect();
        std::fs::write(path, text).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut l = lat.lock().map(|g| g.clone()).unwrap_or_default();
    l.sort_by(|x, y| x.total_cmp(y));
    let pct = |p: f64| {
        l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
            * 1000.0
    };
    let events = sent.load(Ordering::Relaxed);
    println!(
        "{}",
        serde_json::json!({
            "events": events,
            "seconds": elapsed,
            "events_per_second": (events as f64 / elapsed).round(),
            "batches": l.len(),
            "refused_batches": refused.load(Ordering::Relaxed),
            "failed_batches": failed.load(Ordering::Relaxed),
            "ack_ms": {"p50": pct(0.50), "p99": pct(0.99), "p999": pct(0.999), "max": l.last().copied().unwrap_or(0.0) * 1000.0},
            "connections": a.connections,
            "rate": a.rate,
            "tls": tls,
        })
    );
}
