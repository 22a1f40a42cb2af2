//! Starting and stopping the server: the data directory's first-start setup (TLS certificate,
//! admin token), the ledger writer, listeners, background checks, graceful shutdown.

use crate::auth::{Authenticator, Role};
use crate::config::Config;
use crate::http::{AppState, ConnInfo, VerifyStatus};
use crate::tokens::TokenStore;
use crate::ServerError;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use trailwarden_alert::AlertStore;
use trailwarden_cluster::Role as ClusterRole;
use trailwarden_ledger::note::SignedCheckpoint;
use trailwarden_ledger::{Ledger, LedgerError};
use trailwarden_model::Timestamp;
use trailwarden_pipeline::detector::{Detector, RuleConfig};
use trailwarden_pipeline::metrics::Metrics;
use trailwarden_pipeline::Pipeline;

/// What a started server tells its operator.
#[derive(Debug, Clone)]
pub struct Started {
    /// Where the API listens.
    pub http: SocketAddr,
    /// `https` or `http`.
    pub scheme: &'static str,
    /// The admin token created on this (first) start: shown once.
    pub admin_token: Option<String>,
    /// The TLS certificate in use, and whether it was created now.
    pub tls_cert: Option<(PathBuf, bool)>,
    /// Its SHA-256 fingerprint.
    pub tls_fingerprint: Option<String>,
    /// Syslog listeners (tcp, udp, tls).
    pub syslog: Vec<(String, SocketAddr)>,
    /// Warnings (rules not loaded, …).
    pub warnings: Vec<String>,
    /// Ledger size at start.
    pub ledger_size: u64,
}

/// Create the first admin token when the data directory has no token at all.
fn first_token(data_dir: &Path) -> Result<Option<String>, ServerError> {
    let mut store = TokenStore::open(data_dir)?;
    if !store.entries().is_empty() {
        return Ok(None);
    }
    let (tok, _) = store.create("initial-admin", Role::Admin, None)?;
    Ok(Some(tok))
}

/// Free bytes on the file system holding `p`.
pub fn free_bytes(p: &Path) -> Option<u64> {
    let s = rustix::fs::statvfs(p).ok()?;
    Some(s.f_bavail.saturating_mul(s.f_frsize))
}

fn could_not_run(why: String) -> VerifyStatus {
    VerifyStatus {
        at: Timestamp::now(),
        status: "error".into(),
        summary: why,
        size: 0,
        elapsed_seconds: 0.0,
        failures: Vec::new(),
    }
}

/// Run a verification of the whole ledger now, and remember its result.
pub async fn run_verify(s: &AppState) -> VerifyStatus {
    let _one = s.verify_running.lock().await;
    let data_dir = s.data_dir.clone();
    let r = tokio::task::spawn_blocking(move || {
        trailwarden_ledger::verify::verify(
            &data_dir,
            trailwarden_ledger::verify::VerifyOptions {
                now: Timestamp::now(),
                threads: 1,
                ..Default::default()
            },
        )
    })
    .await;
    let st = match r {
        Ok(Ok(rep)) => VerifyStatus {
            at: Timestamp::now(),
            status: format!("{:?}", rep.status).to_lowercase(),
            summary: trailwarden_ledger::verify::summary(&rep),
            size: rep.size,
            elapsed_seconds: rep.elapsed_seconds,
            failures: rep
                .failures
                .iter()
                .take(20)
                .filter_map(|f| serde_json::to_value(f).ok())
                .collect(),
        },
        Ok(Err(e)) => could_not_run(e.to_string()),
        Err(e) => could_not_run(e.to_string()),
    };
    s.metrics
        .verified(st.at, st.status == "ok" || st.status == "warnings");
    if st.status == "failed" || st.status == "error" {
        s.pipeline.control(
            "verify",
            "Ledger verification failed",
            format!("background verification: {}", st.summary),
        );
    }
    if let Ok(mut g) = s.verify.lock() {
        *g = Some(st.clone());
    }
    st
}

/// More routes served next to the API: given the shared state and the API's router (to call it
/// on a user's behalf), a router of its own paths. The web UI (`trailwarden-ui`) is one.
pub type Mount = Box<dyn FnOnce(Arc<AppState>, axum::Router) -> axum::Router + Send>;

/// Run the server until `shutdown` completes (or SIGTERM / SIGINT). `ledger_opts` are the
/// writer's options (the binary builds them, with the anchor and segment settings).
pub fn serve(
    cfg: Config,
    data_dir: PathBuf,
    ledger_opts: trailwarden_ledger::Options,
    on_started: impl FnOnce(&Started),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Option<SignedCheckpoint>, ServerError> {
    serve_with(cfg, data_dir, ledger_opts, None, on_started, shutdown)
}

/// [`serve`], with more routes mounted next to the API (the web UI).
pub fn serve_with(
    cfg: Config,
    data_dir: PathBuf,
    ledger_opts: trailwarden_ledger::Options,
    mount: Option<Mount>,
    on_started: impl FnOnce(&Started),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Option<SignedCheckpoint>, ServerError> {
    // the archive before anything starts: refused credentials or a missing bucket stop here
    let archive_warning = match &cfg.archive.url {
        None => None,
        Some(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ServerError::Config(format!("starting the runtime: {e}")))?
            .block_on(crate::archiving::check_at_start(&cfg.archive))?,
    };
    std::fs::create_dir_all(&data_dir).map_err(|e| ServerError::io(&data_dir, e))?;
    let role = cfg.cluster.role;
    let ingest_node = role == ClusterRole::Ingest;
    // a cluster writer takes its partition's lease first (a standby waits here)
    let writer_node = match role {
        ClusterRole::Writer => Some(
            trailwarden_cluster::writer::WriterNode::start(&cfg.cluster, |holder| {
                eprintln!(
                    "standby: partition {} is written by {holder}; taking over when its lease lapses",
                    cfg.cluster.partition
                )
            })
            .map_err(|e| ServerError::Config(e.to_string()))?,
        ),
        _ => None,
    };
    // the start record names the writer's lease epoch (the KV revision it took the lease at,
    // growing with every takeover): the ledger says which tenure wrote what
    let mut ledger_opts = ledger_opts;
    if let Some(w) = &writer_node {
        ledger_opts.reason = format!(
            "{} (cluster writer of partition {}, node {}, lease epoch {}{})",
            ledger_opts.reason,
            cfg.cluster.partition,
            cfg.cluster.node_name(),
            w.lease.epoch,
            w.lease
                .previous
                .as_ref()
                .map_or(String::new(), |p| format!(", taken over from {p}"))
        );
    }
    // the ledger first: it creates the data directory's keys (and refuses a busy directory)
    let ledger = if ingest_node {
        None
    } else {
        Some(open_ledger(
            &data_dir,
            ledger_opts,
            writer_node.as_ref().map(|w| w.lease.clone()),
        )?)
    };
    let stream_from = ledger.as_ref().and_then(|l| l.stream_position());
    let admin_token = first_token(&data_dir)?;
    let mut tls_cert = None;
    let mut fingerprint = None;
    let tls = if cfg.http.tls {
        let created = if cfg.http.cert.is_none() {
            crate::tls::ensure_self_signed(&data_dir)?
        } else {
            false
        };
        let (crt, _) = crate::tls::cert_paths(&cfg.http, &data_dir);
        fingerprint = crate::tls::fingerprint(&crt).ok();
        tls_cert = Some((crt, created));
        Some(crate::tls::server_config(&cfg.http, &data_dir)?)
    } else {
        None
    };
    let auth = Authenticator::new(data_dir.clone(), &cfg.oidc, cfg.http.client_roles.clone())?;
    let d = &cfg.detection;
    let rules = RuleConfig::new(
        d.rules.clone(),
        d.builtin_rules && d.enabled,
        cfg.dedup_window_ns().unwrap_or(15 * 60 * 1_000_000_000),
    )
    .with_lists(
        &d.placeholders,
        &d.allow_users,
        &d.allow_namespaces,
        &d.trusted_registries,
    );
    let (mut detector, warnings) = Detector::open(&data_dir, &rules, true)?;
    // an ingest node detects nothing: the partition's writer does (one owner per partition)
    let detecting = cfg.detection.enabled && !ingest_node;
    // the parser pulls the request-object fields the rules read (`Options::pull`)
    let pull = detecting.then(|| detector.paths());
    // the catalogue `GET /v1/rules` lists (the detector keeps its compiled form to itself)
    let mut catalogue: Vec<serde_json::Value> = if detecting {
        trailwarden_pipeline::detector::load_rules(&data_dir, &rules)
            .0
            .iter()
            .map(|r| {
                serde_json::json!({
                    "id": r.id, "title": r.title, "level": r.level, "kind": "sigma",
                    "logsource": r.logsource.label(), "tags": r.tags, "source": r.source,
                    "state": r.disabled.as_ref().map(|d| format!("disabled: {d}")).unwrap_or_else(|| "enabled".into()),
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    // every alert change from now on queues its deliveries in the same transaction
    detector
        .store_mut()
        .set_routing(Some(cfg.alerting.routing()));
    // new alerts are due within the SLA of their level (10.4.3)
    if let Ok(settings) = cfg.review.settings() {
        detector
            .store_mut()
            .set_sla(Some(settings.sla_ns().clone()));
    }
    let mut warnings = warnings;
    if let (true, Some(ledger)) = (detecting, &ledger) {
        detector.rebuild(&data_dir)?;
        // events committed before a crash but never checked: checked now
        let n = detector.catch_up(&data_dir, ledger.size())?;
        if n > 0 {
            warnings.push(format!(
                "detection caught up on {n} events stored before the last stop but not checked then"
            ));
        }
    }
    // scheduled query rules: the pack's, the data directory's, --rules; a query that does not
    // plan against the tables loads disabled with the reason (and raises nothing)
    let mut scheduled = Vec::new();
    if detecting {
        let (rules, errors) = trailwarden_schedule::load_all(
            &data_dir,
            cfg.detection.builtin_rules,
            &cfg.detection.rules,
        );
        for e in errors {
            warnings.push(format!("scheduled rule not loaded: {e}"));
        }
        for mut r in rules {
            if let Err(e) = trailwarden_schedule::check_plan(&r, &data_dir) {
                r.disabled = Some(e);
            }
            if let Some(d) = &r.disabled {
                warnings.push(format!(
                    "scheduled rule {} ({}) is disabled: {d}",
                    r.title, r.source
                ));
            }
            catalogue.push(serde_json::json!({
                "id": r.id, "title": r.title, "level": r.level, "kind": "scheduled",
                "logsource": format!("every {}s over {}s", r.frequency_ns / 1_000_000_000, r.period_ns / 1_000_000_000),
                "tags": r.tags, "source": r.source,
                "state": r.disabled.as_ref().map(|d| format!("disabled: {d}")).unwrap_or_else(|| "enabled".into()),
            }));
            scheduled.push(r);
        }
    }
    let metrics = Arc::new(Metrics::default());
    let ledger_size = ledger.as_ref().map_or(0, |l| l.size());
    let publish_stats = Arc::new(trailwarden_cluster::ingest::PublishStats::default());
    let (pipeline, writer) = match ledger {
        Some(ledger) => Pipeline::start(
            ledger,
            detector,
            detecting,
            metrics.clone(),
            cfg.ingest.queue_events,
            cfg.ingest.queue_bytes,
            writer_node.as_ref().map(|w| w.lease.fence()),
        ),
        None => trailwarden_cluster::ingest::start(
            &cfg.cluster,
            metrics.clone(),
            cfg.ingest.queue_events,
            cfg.ingest.queue_bytes,
            publish_stats.clone(),
        )
        .map_err(|e| ServerError::Config(e.to_string()))?,
    };
    let cluster_metrics: Option<crate::http::ClusterMetrics> = match (&writer_node, ingest_node) {
        (Some(w), _) => {
            let st = w.stats.clone();
            Some(Arc::new(move || st.exposition()))
        }
        (None, true) => {
            let st = publish_stats.clone();
            Some(Arc::new(move || st.exposition()))
        }
        _ => None,
    };
    let alerts = AlertStore::open(data_dir.join("alerts.db"))?;
    let notify_stats = Arc::new(trailwarden_notify::Stats::default());
    let sched_stats = Arc::new(crate::scheduled::Stats::default());
    let scheduler = crate::scheduled::Scheduler::start(
        scheduled,
        data_dir.clone(),
        pipeline.clone(),
        sched_stats.clone(),
        cfg.query.threads.max(1),
    );
    let p2 = pipeline.clone();
    let control: trailwarden_notify::ControlFn = Arc::new(move |sink: &str, summary: String| {
        p2.control_for(
            "delivery",
            Some(sink),
            &format!("Alert delivery to {sink} failed"),
            summary,
        )
    });
    let worker = trailwarden_notify::Worker::new(
        &cfg.alerting,
        data_dir.join("alerts.db"),
        control,
        notify_stats.clone(),
    )
    .map_err(|e| ServerError::Config(e.to_string().trim_start_matches("configuration: ").into()))?;
    let state = Arc::new(AppState {
        classifier: crate::http::classifier(&cfg),
        pull,
        queries: Arc::new(tokio::sync::Semaphore::new(cfg.query.max_concurrent)),
        cfg: cfg.clone(),
        data_dir: data_dir.clone(),
        auth,
        pipeline: pipeline.clone(),
        metrics: metrics.clone(),
        notify: notify_stats,
        scheduled: sched_stats,
        alerts: Mutex::new(alerts),
        verify: Mutex::new(None),
        verify_running: tokio::sync::Mutex::new(()),
        rules: catalogue,
        archive: Arc::new(crate::archiving::Stats::default()),
        cluster: cluster_metrics,
        publish: ingest_node.then(|| publish_stats.clone()),
    });
    // the automated daily review (10.4.1.1) and its sign-off reminder (not on an ingest node:
    // it has no ledger to review)
    let reviewer = (!ingest_node).then(|| crate::reviews::Reviewer::start(state.clone()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("trailwarden-io")
        .build()
        .map_err(|e| ServerError::Config(format!("starting the runtime: {e}")))?;
    let on_failure = pipeline.clone();
    // a cluster writer consumes its partition from the ledger's own position
    let mut consuming = writer_node
        .as_ref()
        .map(|w| w.consume(pipeline.clone(), stream_from));
    let result = rt.block_on(async move {
        let listener = TcpListener::bind(&cfg.http.listen)
            .await
            .map_err(|e| ServerError::Bind {
                addr: cfg.http.listen.clone(),
                source: e,
            })?;
        let http_addr = listener
            .local_addr()
            .map_err(|e| ServerError::io(&data_dir, e))?;
        let syslog = crate::syslog::start(&cfg, tls.clone(), state.clone()).await?;
        let mut warnings = warnings;
        if let Some(w) = archive_warning {
            state
                .pipeline
                .control("archive-lag", crate::archiving::LAG_TITLE, w.clone());
            warnings.push(w);
        }
        let started = Started {
            http: http_addr,
            scheme: if tls.is_some() { "https" } else { "http" },
            admin_token,
            tls_cert,
            tls_fingerprint: fingerprint,
            syslog: syslog.addrs.clone(),
            warnings,
            ledger_size,
        };
        let deliveries = worker
            .start()
            .map_err(|e| ServerError::Config(format!("alert delivery: {e}")))?;
        on_started(&started);
        let api = if ingest_node {
            crate::http::ingest_router(state.clone())
        } else {
            crate::http::router(state.clone())
        };
        let app = match mount {
            Some(m) if !ingest_node => m(state.clone(), api.clone()).merge(api),
            _ => api,
        };

        let app = app
            .layer(axum::middleware::from_fn(crate::http::preread_body))
            .layer(axum::middleware::from_fn_with_state(
                metrics.clone(),
                crate::http::count_responses,
            ));
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let conns = Arc::new(tokio::sync::Semaphore::new(cfg.http.max_connections));
        background(state.clone());
        if !ingest_node {
            crate::archiving::spawn(state.clone());
        }
        let mut shutdown = std::pin::pin!(shutdown);
        let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| ServerError::Config(format!("installing the SIGTERM handler: {e}")))?;
        let mut cluster_stop = std::pin::pin!(async {
            match consuming.as_mut() {
                Some(rx) => rx.await.map_or_else(|_| "the cluster consumer ended".to_string(), |e| e.to_string()),
                None => std::future::pending().await,
            }
        });
        let reason = loop {
            let permit = tokio::select! {
                p = conns.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break "semaphore closed".to_string() },
                why = &mut cluster_stop => break format!("serve stopped: the cluster writer stopped ({why})"),
                _ = &mut shutdown => break "serve stopped".to_string(),
                _ = sigterm.recv() => break "serve stopped: SIGTERM".to_string(),
                _ = tokio::signal::ctrl_c() => break "serve stopped: SIGINT".to_string(),
            };
            let (sock, peer) = tokio::select! {
                r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
                why = &mut cluster_stop => break format!("serve stopped: the cluster writer stopped ({why})"),
                _ = &mut shutdown => break "serve stopped".to_string(),
                _ = sigterm.recv() => break "serve stopped: SIGTERM".to_string(),
                _ = tokio::signal::ctrl_c() => break "serve stopped: SIGINT".to_string(),
            };
            let _ = sock.set_nodelay(true);
            let app = app.clone();
            let tls = tls.clone();
            let watcher = graceful.watcher();
            let hs_timeout = Duration::from_secs(cfg.http.tls_handshake_timeout_seconds);
            let hdr_timeout = Duration::from_secs(cfg.http.header_timeout_seconds);
            tokio::spawn(async move {
                let _permit = permit;
                match tls {
                    Some(cfg) => {
                        let acc = tokio_rustls::TlsAcceptor::from(cfg);
                        let stream = match tokio::time::timeout(hs_timeout, acc.accept(sock)).await {
                            Ok(Ok(s)) => s,
                            _ => return, // failed or too slow: the connection is closed
                        };
                        let cn = crate::tls::peer_cn(stream.get_ref().1);
                        serve_conn(TokioIo::new(stream), app, ConnInfo { peer, cert_cn: cn, session: None }, watcher, hdr_timeout).await;
                    }
                    None => {
                        serve_conn(TokioIo::new(sock), app, ConnInfo { peer, cert_cn: None, session: None }, watcher, hdr_timeout).await;
                    }
                }
            });
        };
        drop(listener);
        syslog.stop();
        let grace = Duration::from_secs(cfg.http.shutdown_grace_seconds);
        let _ = tokio::time::timeout(grace, graceful.shutdown()).await;
        syslog.drain(grace).await;
        let _ = tokio::task::spawn_blocking(move || scheduler.stop()).await;
        if let Some(reviewer) = reviewer {
            let _ = tokio::task::spawn_blocking(move || reviewer.stop()).await;
        }
        if !ingest_node && state.pipeline.failure().is_none() {
            crate::archiving::at_stop(&state).await;
        }
        // an ingest node has no ledger to close: every batch it acknowledged is in JetStream
        let r = if ingest_node {
            let _ = pipeline.stop(&reason).await;
            Ok(None)
        } else {
            pipeline
                .stop(&reason)
                .await
                .map(Some)
                .map_err(ServerError::Stopped)
        };
        // deliveries queued by the last commits go out during the grace; the rest after the
        // next start (the outbox is durable)
        deliveries.stop(Duration::from_secs(2)).await;
        r
    });
    if let Err(e) = &result {
        // it failed before the shutdown sequence (a listener could not bind): stop the writer
        // too, or joining it below waits for ever (serve hung instead of reporting the error)
        let _ = rt.block_on(on_failure.stop(&format!("serve could not start: {e}")));
    }
    drop(rt);
    let _ = writer.join();
    drop(writer_node);
    result
}

/// Open the ledger; a cluster writer that just took the lease first waits while the previous
/// writer's process still holds the data directory (a paused or dying process keeps its lock;
/// fenced by the lease, it writes nothing more and exits when it runs again).
fn open_ledger(
    data_dir: &Path,
    opts: trailwarden_ledger::Options,
    lease: Option<Arc<trailwarden_cluster::nats::Lease>>,
) -> Result<Ledger, ServerError> {
    if let Some(lease) = &lease {
        let lock = data_dir.join("LOCK");
        let mut told = false;
        loop {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock)
                .map_err(|e| ServerError::io(&lock, e))?;
            if f.try_lock().is_ok() {
                break; // released when `f` drops, right before the ledger takes it
            }
            lease.valid().map_err(|why| {
                ServerError::Config(format!(
                    "lost the lease while waiting for the data directory: {why}"
                ))
            })?;
            if !told {
                eprintln!(
                    "waiting for the previous writer to release {}",
                    data_dir.display()
                );
                told = true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    Ledger::open(data_dir, opts)
        .map(|(l, _)| l)
        .map_err(|e| match e {
            LedgerError::Locked(m) => ServerError::Config(format!(
                "the data directory {} is in use by another trailwarden process ({m}); stop it first",
                data_dir.display()
            )),
            e => ServerError::Ledger(e),
        })
}

async fn serve_conn<I>(
    io: I,
    app: axum::Router,
    info: ConnInfo,
    watcher: hyper_util::server::graceful::Watcher,
    header_timeout: Duration,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    use tower::ServiceExt;
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(info.clone());
        app.clone().oneshot(req.map(axum::body::Body::new))
    });
    let mut b = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    b.http2().timer(TokioTimer::new());
    let conn = b.serve_connection_with_upgrades(io, svc);
    let _ = watcher.watch(conn.into_owned()).await;
}

/// Disk-space watch and periodic verification.
fn background(s: Arc<AppState>) {
    let d = s.clone();
    tokio::spawn(async move {
        let mut low = false;
        loop {
            if let Some(free) = free_bytes(&d.data_dir) {
                d.metrics.disk_free.store(free, Ordering::Relaxed);
                let now_low = free < d.cfg.ingest.min_free_disk_bytes;
                d.metrics
                    .disk_low
                    .store(u64::from(now_low), Ordering::Relaxed);
                if now_low && !low {
                    d.pipeline.control(
                        "disk-low",
                        "Free disk space low: ingest refused (503)",
                        format!(
                            "{free} bytes free on the data directory's file system, under ingest.min_free_disk_bytes ({}); senders are told to retry",
                            d.cfg.ingest.min_free_disk_bytes
                        ),
                    );
                }
                low = now_low;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let every = s.cfg.verify_interval_ns().unwrap_or(0);
    if every > 0 && s.cfg.cluster.role != ClusterRole::Ingest {
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            loop {
                let _ = run_verify(&s).await;
                tokio::time::sleep(Duration::from_nanos(every as u64)).await;
            }
        });
    }
}
