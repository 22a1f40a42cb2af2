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
}

fn usage() -> ! {
    eprintln!("usage: tw-loadgen --url URL[,URL…] --token T[,T…] [--ca PEM[,PEM…]] --events FILE.jsonl [--batch 400] [--connections 8] [--seconds 30] [--rate EVENTS_PER_S]\n  several URLs (cluster ingest nodes): connection i posts to URL i mod n with token i mod n");
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

fn connect(a: &Args, host: &str, tls: Option<&Arc<rustls::ClientConfig>>) -> Box<dyn Conn> {
    let tcp = TcpStream::connect(host).unwrap_or_else(|e| panic!("connect {host}: {e}"));
    let _ = tcp.set_nodelay(true);
    match tls {
        Some(cfg) => {
            let name = host.rsplit_once(':').map_or(host, |(h, _)| h).to_string();
            let server =
                rustls::pki_types::ServerName::try_from(name).unwrap_or_else(|e| panic!("{e}"));
            let c = rustls::ClientConnection::new(cfg.clone(), server)
                .unwrap_or_else(|e| panic!("{e}"));
            let _ = a;
            Box::new(rustls::StreamOwned::new(c, tcp))
        }
        None => Box::new(tcp),
    }
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
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        lines
            .chunks(a.batch)
            .filter(|c| c.len() == a.batch)
            .map(|c| format!("{{\"kind\":\"EventList\",\"apiVersion\":\"audit.k8s.io/v1\",\"metadata\":{{}},\"items\":[{}]}}", c.join(",")).into_bytes())
            .collect(),
    );
    assert!(!bodies.is_empty(), "need at least {} events", a.batch);
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
    let lat = Arc::new(Mutex::new(Vec::<f64>::new()));
    let start = Instant::now();
    let mut hs = Vec::new();
    for c in 0..a.connections {
        let host = hosts[c % hosts.len()].clone();
        let token = tokens[c % tokens.len()].clone();
        let (a, bodies, stop, sent, refused, lat, host, tls_cfg) = (
            a.clone(),
            bodies.clone(),
            stop.clone(),
            sent.clone(),
            refused.clone(),
            lat.clone(),
            host.clone(),
            tls_cfg.clone(),
        );
        hs.push(std::thread::spawn(move || {
            let mut r = BufReader::with_capacity(64 << 10, connect(&a, &host, tls_cfg.as_ref()));
            let mut mine = Vec::new();
            // per-connection schedule for the steady rate
            let interval = a.rate.map(|rate| Duration::from_secs_f64(a.batch as f64 * a.connections as f64 / rate));
            let mut due = start + interval.map_or(Duration::ZERO, |i| i.mul_f64(c as f64 / a.connections as f64));
            let mut i = c;
            while !stop.load(Ordering::Relaxed) {
                if interval.is_some() {
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                } else {
                    due = Instant::now();
                }
                let body = &bodies[i % bodies.len()];
                i += a.connections;
                let head = format!(
                    "POST /v1/ingest/k8s-audit HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    token,
                    body.len()
                );
                match post(&mut r, head.as_bytes(), body) {
                    Ok(200) => {
                        mine.push(due.elapsed().as_secs_f64());
                        sent.fetch_add(a.batch as u64, Ordering::Relaxed);
                    }
                    Ok(429) | Ok(503) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(code) => panic!("unexpected answer {code}"),
                    Err(e) => panic!("connection {c}: {e}"),
                }
                if let Some(iv) = interval {
                    due += iv;
                }
            }
            if let Ok(mut g) = lat.lock() {
                g.extend(mine);
            }
        }));
    }
    std::thread::sleep(Duration::from_secs(a.seconds));
    stop.store(true, Ordering::Relaxed);
    for h in hs {
        let _ = h.join();
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
            "ack_ms": {"p50": pct(0.50), "p99": pct(0.99), "p999": pct(0.999), "max": l.last().copied().unwrap_or(0.0) * 1000.0},
            "connections": a.connections,
            "rate": a.rate,
            "tls": tls,
        })
    );
}
