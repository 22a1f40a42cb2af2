//! The HTTP API: routes, authentication and authorization of every route, self-audit, ingest.
// An early answer (`Err(Response)`) is the handler's result itself; boxing it would only add an
// allocation on the refusal path.
#![allow(clippy::result_large_err)]

use crate::auth::{Authenticator, Permission, Principal};
use crate::config::Config;
use crate::query_api::{self, Limits, QueryRequest};
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use trailwarden_alert::{AlertStore, DeliveryFilter, DeliveryState, Filter, Status};
use trailwarden_ledger::record::Access;
use trailwarden_model::{Body as RecBody, Classifier, ClassifierConfig, Format, Record};
use trailwarden_pipeline::metrics::Metrics;
use trailwarden_pipeline::{Batch, ChangeError, Pipeline, Refused};

/// What the connection tells about the caller.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// Peer address.
    pub peer: SocketAddr,
    /// Subject CN of a verified client certificate.
    pub cert_cn: Option<String>,
    /// The caller as the web UI's session established it. Set only by the UI on the requests it
    /// makes to the API on a signed-in user's behalf (never taken from anything the client
    /// sends), so a UI page and the API answer the same question with the same rules.
    pub session: Option<Principal>,
}

impl ConnInfo {
    /// The interface recorded in access records: `ui` for the web UI's requests, else `api`.
    pub fn interface(&self) -> &'static str {
        if self.session.is_some() {
            "ui"
        } else {
            "api"
        }
    }
}

/// The last verification run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct VerifyStatus {
    /// When it finished.
    pub at: trailwarden_model::Timestamp,
    /// `ok`, `warnings`, `failed`, or `error` (could not run).
    pub status: String,
    /// One line.
    pub summary: String,
    /// Records checked.
    pub size: u64,
    /// Seconds taken.
    pub elapsed_seconds: f64,
    /// Failures (at most 20).
    pub failures: Vec<Value>,
}

/// Shared state of the handlers.
pub struct AppState {
    /// Configuration.
    pub cfg: Config,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Authenticator.
    pub auth: Authenticator,
    /// The writer.
    pub pipeline: Arc<Pipeline>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Delivery counters.
    pub notify: Arc<trailwarden_notify::Stats>,
    /// Scheduled-rule counters.
    pub scheduled: Arc<crate::scheduled::Stats>,
    /// A read connection to the alert store.
    pub alerts: Mutex<AlertStore>,
    /// Query slots.
    pub queries: Arc<tokio::sync::Semaphore>,
    /// The last verification.
    pub verify: Mutex<Option<VerifyStatus>>,
    /// One verification at a time.
    pub verify_running: tokio::sync::Mutex<()>,
    /// The classifier for ingest.
    pub classifier: Classifier,
    /// The fields detection reads under `requestObject`, pulled out by the parser (`None` when
    /// this node does not detect).
    pub pull: Option<Arc<trailwarden_parse::paths::Paths>>,
    /// The rules detection runs (Sigma and scheduled), as `GET /v1/rules` lists them.
    pub rules: Vec<Value>,
    /// The archive tier's passes.
    pub archive: Arc<crate::archiving::Stats>,
    /// A cluster node's own counters (`/metrics`).
    pub cluster: Option<ClusterMetrics>,
    /// On a cluster ingest node: whether JetStream acknowledges (`/readyz`).
    pub publish: Option<Arc<trailwarden_cluster::ingest::PublishStats>>,
}

/// A cluster node's counters in the Prometheus exposition format.
pub type ClusterMetrics = Arc<dyn Fn() -> String + Send + Sync>;

type St = State<Arc<AppState>>;

/// The router of a cluster ingest node: health, metrics and the ingest endpoints (it has no
/// ledger to read: queries, alerts and reviews are the partition writer's).
pub fn ingest_router(state: Arc<AppState>) -> Router {
    edge_routes().fallback(fallback).with_state(state)
}

/// What every node serves: health, the API document, metrics and ingest.
fn edge_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
        .route("/v1/ingest/{endpoint}", post(ingest))
}

/// The router.
pub fn router(state: Arc<AppState>) -> Router {
    edge_routes()
        .route("/v1/query", post(query))
        .route("/v1/alerts", get(alerts_list))
        .route("/v1/alerts/{id}", get(alerts_show))
        .route("/v1/alerts/{id}/ack", post(alerts_ack))
        .route("/v1/alerts/{id}/resolve", post(alerts_resolve))
        .route(
            "/v1/alerts/{id}/assign",
            post(crate::compliance_api::alerts_assign),
        )
        .route("/v1/deliveries", get(deliveries_list))
        .route("/v1/deliveries/{id}/retry", post(deliveries_retry))
        .route("/v1/silences", get(silences_list).post(silences_create))
        .route("/v1/silences/{id}", axum::routing::delete(silences_expire))
        .route("/v1/verify", get(verify_get).post(verify_run))
        .route("/v1/archive", get(archive_get).post(archive_run))
        .route("/v1/proofs/inclusion/{index}", get(proof_inclusion))
        .route("/v1/proofs/consistency", get(proof_consistency))
        .route("/v1/sources", get(sources))
        .route(
            "/v1/reviews",
            get(crate::compliance_api::reviews_list).post(crate::compliance_api::reviews_generate),
        )
        .route("/v1/reviews/{id}", get(crate::compliance_api::reviews_show))
        .route(
            "/v1/reviews/{id}/sign-off",
            post(crate::compliance_api::reviews_sign_off),
        )
        .route("/v1/controls", get(crate::compliance_api::controls_list))
        .route("/v1/reports/pci", get(crate::compliance_api::reports_pci))
        .route(
            "/v1/controls/{id}/note",
            post(crate::compliance_api::controls_note),
        )
        .route("/v1/tables", get(crate::admin_api::tables))
        .route("/v1/rules", get(crate::admin_api::rules))
        .route(
            "/v1/tokens",
            get(crate::admin_api::tokens_list).post(crate::admin_api::tokens_create),
        )
        .route(
            "/v1/tokens/{id}",
            axum::routing::delete(crate::admin_api::tokens_revoke),
        )
        .route("/v1/config", get(crate::admin_api::config))
        .route(
            "/v1/check",
            get(crate::compliance_api::check_running).post(crate::compliance_api::check_file),
        )
        .fallback(fallback)
        .with_state(state)
}

pub(crate) fn error(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, axum::Json(json!({ "error": msg.into() }))).into_response()
}

fn retry_after(code: StatusCode, secs: u64, body: Value) -> Response {
    let mut r = (code, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// The route template for metrics (bounded label values).
fn route_label(path: &str) -> &'static str {
    match path {
        "/healthz" => "/healthz",
        "/readyz" => "/readyz",
        "/openapi.json" => "/openapi.json",
        "/metrics" => "/metrics",
        "/v1/query" => "/v1/query",
        "/v1/alerts" => "/v1/alerts",
        "/v1/verify" => "/v1/verify",
        "/v1/deliveries" => "/v1/deliveries",
        "/v1/silences" => "/v1/silences",
        p if p.starts_with("/v1/deliveries/") => "/v1/deliveries/{id}/retry",
        p if p.starts_with("/v1/silences/") => "/v1/silences/{id}",
        "/v1/sources" => "/v1/sources",
        "/v1/reviews" => "/v1/reviews",
        "/v1/controls" => "/v1/controls",
        "/v1/reports/pci" => "/v1/reports/pci",
        p if p.starts_with("/v1/controls/") => "/v1/controls/{id}/note",
        "/v1/tables" => "/v1/tables",
        "/v1/rules" => "/v1/rules",
        "/v1/tokens" => "/v1/tokens",
        p if p.starts_with("/v1/tokens/") => "/v1/tokens/{id}",
        "/v1/config" => "/v1/config",
        "/v1/check" => "/v1/check",
        p if p.starts_with("/ui/") || p == "/ui" || p == "/" => "/ui",
        p if p.starts_with("/v1/reviews/") => "/v1/reviews/{id}",
        p if p.starts_with("/v1/ingest/") => "/v1/ingest/{endpoint}",
        p if p.starts_with("/v1/alerts/") => "/v1/alerts/{id}",
        p if p.starts_with("/v1/proofs/") => "/v1/proofs",
        _ => "other",
    }
}

/// Authenticate and authorize; a refusal is counted and recorded in the ledger (10.2.1.4).
pub(crate) fn authorize(
    s: &AppState,
    conn: &ConnInfo,
    headers: &HeaderMap,
    perm: Permission,
    action: &str,
    resource: &str,
) -> Result<Principal, Response> {
    let authz = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or("(not text)"));
    let origin = conn.peer.ip().to_string();
    let refuse = |subject: String, outcome: &str, why: String, code: StatusCode| {
        s.metrics.auth_failure(outcome);
        s.pipeline.access_nowait(Access {
            subject,
            interface: conn.interface().into(),
            action: action.into(),
            target: format!("{resource} ({why})"),
            records: 0,
            outcome: outcome.into(),
            origin: origin.clone(),
        });
        let mut r = error(
            code,
            if code == StatusCode::UNAUTHORIZED {
                "authentication required: send `Authorization: Bearer <token>` (see `trailwarden tokens create`)".to_string()
            } else {
                format!("forbidden: {why}")
            },
        );
        if code == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"trailwarden\""),
            );
        }
        r
    };
    let who = match &conn.session {
        Some(p) => Ok(Some(p.clone())),
        None => s.auth.authenticate(authz, conn.cert_cn.as_deref()),
    };
    match who {
        Ok(Some(p)) => {
            if p.role.allows(perm) {
                Ok(p)
            } else {
                let why = format!("role {} may not {action}", p.role.as_str());
                Err(refuse(
                    p.subject.clone(),
                    "forbidden",
                    why,
                    StatusCode::FORBIDDEN,
                ))
            }
        }
        Ok(None) => Err(refuse(
            "anonymous".into(),
            "unauthenticated",
            "no credentials".into(),
            StatusCode::UNAUTHORIZED,
        )),
        Err(f) => Err(refuse(
            format!("unauthenticated ({})", f.presented),
            "unauthenticated",
            f.reason,
            StatusCode::UNAUTHORIZED,
        )),
    }
}

/// Record a read of audit data and wait until it is durable; a read that cannot be recorded is
/// not served.
pub(crate) async fn audited(
    s: &AppState,
    p: &Principal,
    conn: &ConnInfo,
    action: &str,
    target: String,
    records: u64,
) -> Result<u64, Response> {
    s.pipeline
        .access(Access {
            subject: p.subject.clone(),
            interface: conn.interface().into(),
            action: action.into(),
            target,
            records,
            outcome: "success".into(),
            origin: conn.peer.ip().to_string(),
        })
        .await
        .map_err(|e| {
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("this read could not be recorded in the ledger, so it is not served: {e}"),
            )
        })
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): St) -> Response {
    if let Some(f) = s.pipeline.failure() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("ledger writer stopped: {f}"),
        );
    }
    if s.pipeline.stopping() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "stopping");
    }
    if s.publish
        .as_ref()
        .is_some_and(|p| p.down.load(Ordering::Relaxed) == 1)
    {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "JetStream does not acknowledge: ingest answers 503",
        );
    }
    if s.metrics.disk_low.load(Ordering::Relaxed) == 1 {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "free disk space is under ingest.min_free_disk_bytes",
        );
    }
    (StatusCode::OK, "ready\n").into_response()
}

async fn openapi(State(s): St, Extension(c): Extension<ConnInfo>, h: HeaderMap) -> Response {
    or_return!(authorize(
        &s,
        &c,
        &h,
        Permission::Read,
        "read-api-document",
        "/openapi.json",
    ));
    axum::Json(crate::openapi::document()).into_response()
}

async fn metrics(State(s): St, Extension(c): Extension<ConnInfo>, h: HeaderMap) -> Response {
    or_return!(authorize(
        &s,
        &c,
        &h,
        Permission::Read,
        "read-metrics",
        "/metrics"
    ));
    let (counts, sinks): (Vec<(String, u64)>, _) = {
        let store = crate::lock(&s.alerts);
        (
            store
                .counts()
                .map(|v| {
                    v.into_iter()
                        .map(|(st, n)| (st.as_str().to_string(), n))
                        .collect()
                })
                .unwrap_or_default(),
            store.sink_status().unwrap_or_default(),
        )
    };
    let mut text = s.metrics.render(&counts);
    text.push_str(
        &s.notify
            .render(&sinks, trailwarden_model::Timestamp::now().0),
    );
    text.push_str(&s.scheduled.render());
    text.push_str(&s.archive.render());
    if let Some(c) = &s.cluster {
        text.push_str(&c());
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn fallback(
    State(s): St,
    Extension(c): Extension<ConnInfo>,
    h: HeaderMap,
    m: Method,
    uri: axum::http::Uri,
) -> Response {
    or_return!(authorize(
        &s,
        &c,
        &h,
        Permission::Read,
        "request",
        uri.path()
    ));
    error(
        StatusCode::NOT_FOUND,
        format!("no route {m} {}", uri.path()),
    )
}

/// The format an ingest endpoint forces (`None`: detected per record).
fn endpoint_format(endpoint: &str) -> Option<Option<Format>> {
    match endpoint {
        "k8s-audit" => Some(Some(Format::K8sAudit)),
        "aks" => Some(Some(Format::Aks)),
        "gke" => Some(Some(Format::Gke)),
        "eks" => Some(None),
        "app" => Some(Some(Format::App)),
        "azure" => Some(None),
        _ => None,
    }
}

const JSON_TYPES: [&str; 6] = [
    "application/json",
    "application/x-ndjson",
    "application/jsonl",
    "application/x-jsonlines",
    "application/json-seq",
    "application/jsonlines",
];

/// Read a body under a byte limit and a time limit, decoding gzip.
async fn read_body(s: &AppState, body: Body, headers: &HeaderMap) -> Result<Bytes, Response> {
    let limit = s.cfg.http.max_body_bytes;
    let limited = http_body_util::Limited::new(body, limit);
    let collected = tokio::time::timeout(
        Duration::from_secs(s.cfg.http.body_timeout_seconds),
        limited.collect(),
    )
    .await;
    let bytes = match collected {
        Err(_) => {
            return Err(error(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the body did not arrive within {} s",
                    s.cfg.http.body_timeout_seconds
                ),
            ))
        }
        Ok(Err(e)) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                return Err(error(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is larger than http.max_body_bytes ({limit} bytes); send smaller batches")));
            }
            return Err(error(
                StatusCode::BAD_REQUEST,
                format!("reading the body: {e}"),
            ));
        }
        Ok(Ok(c)) => c.to_bytes(),
    };
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("identity") | Some("") => Ok(bytes),
        Some("gzip") | Some("x-gzip") => {
            let max = s.cfg.http.max_decoded_bytes;
            tokio::task::spawn_blocking(move || {
                use std::io::Read;
                let mut out = Vec::with_capacity(bytes.len() * 4);
                let mut d = flate2::read::MultiGzDecoder::new(&bytes[..]).take(max as u64 + 1);
                match d.read_to_end(&mut out) {
                    Ok(_) if out.len() > max => Err(error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!(
                            "the body decodes to more than http.max_decoded_bytes ({max} bytes)"
                        ),
                    )),
                    Ok(_) => Ok(Bytes::from(out)),
                    Err(e) => Err(error(
                        StatusCode::BAD_REQUEST,
                        format!("Content-Encoding gzip: the body is not valid gzip: {e}"),
                    )),
                }
            })
            .await
            .unwrap_or_else(|e| Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())))
        }
        Some(other) => Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Encoding {other:?} is not supported (gzip or identity)"),
        )),
    }
}

/// Parse a body into records (blocking work).
pub fn parse_body(
    classifier: &Classifier,
    pull: Option<Arc<trailwarden_parse::paths::Paths>>,
    format: Option<Format>,
    max_record_bytes: usize,
    source: &str,
    bytes: &[u8],
) -> Vec<Record> {
    parse_many(classifier, pull, format, max_record_bytes, source, &[bytes])
}

/// Parse several inputs (syslog messages) with one parser.
pub fn parse_many(
    classifier: &Classifier,
    pull: Option<Arc<trailwarden_parse::paths::Paths>>,
    format: Option<Format>,
    max_record_bytes: usize,
    source: &str,
    inputs: &[&[u8]],
) -> Vec<Record> {
    let mut records = Vec::new();
    let opts = trailwarden_parse::Options {
        format,
        max_record_bytes,
        classifier: classifier.clone(),
        pull,
        ..trailwarden_parse::Options::default()
    };
    let mut sink = |r: Record| -> Result<(), String> {
        records.push(r);
        Ok(())
    };
    let mut ing = trailwarden_parse::Ingestor::new(opts, &mut sink);
    for b in inputs {
        // in-memory input: the only error is the sink's, which never fails
        let _ = ing.ingest_bytes(source, b);
    }
    drop(ing);
    records
}

async fn ingest(
    State(s): St,
    Extension(c): Extension<ConnInfo>,
    Path(endpoint): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let route = format!("/v1/ingest/{endpoint}");
    let p = or_return!(authorize(
        &s,
        &c,
        &headers,
        Permission::Ingest,
        "ingest",
        &route
    ));
    let Some(format) = endpoint_format(&endpoint) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no ingest endpoint {endpoint:?} (k8s-audit, aks, app, azure)"),
        );
    };
    let retry = s.cfg.ingest.retry_after_seconds;
    if s.pipeline.stopping() {
        s.metrics.rejected("stopping");
        return retry_after(
            StatusCode::SERVICE_UNAVAILABLE,
            retry,
            json!({"error": "the server is stopping; retry against the next instance"}),
        );
    }
    if let Some(f) = s.pipeline.failure() {
        s.metrics.rejected("ledger");
        return retry_after(
            StatusCode::SERVICE_UNAVAILABLE,
            retry,
            json!({"error": format!("the ledger cannot store events: {f}")}),
        );
    }
    if s.metrics.disk_low.load(Ordering::Relaxed) == 1 {
        s.metrics.rejected("disk");
        return retry_after(
            StatusCode::SERVICE_UNAVAILABLE,
            retry,
            json!({"error": "free disk space is under ingest.min_free_disk_bytes: events are refused, not dropped; retry later"}),
        );
    }
    let sent = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let bytes = or_return!(read_body(&s, body, &headers).await);
    s.metrics
        .bytes(&endpoint, sent.unwrap_or(bytes.len() as u64));
    // checked after the body is read: an HTTP/2 answer before the request body is consumed
    // resets the stream, and the client would see a protocol error instead of the reason
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    match ctype.as_deref() {
        Some(t) if JSON_TYPES.contains(&t) => {}
        other => {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "Content-Type {:?} is not accepted; send one of {}",
                    other.unwrap_or("(none)"),
                    JSON_TYPES.join(", ")
                ),
            )
        }
    }
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return error(StatusCode::BAD_REQUEST, "the body is empty");
    }
    let source = format!("api:{endpoint} {} {}", p.subject, c.peer.ip());
    let classifier = s.classifier.clone();
    let pull = s.pull.clone();
    let max_record = s.cfg.ingest.max_record_bytes;
    let clustered = s.publish.is_some();
    let (records, body_sha) = match tokio::task::spawn_blocking(move || {
        let sha = clustered.then(|| trailwarden_model::sha256_hex(&bytes));
        (
            parse_body(&classifier, pull, format, max_record, &source, &bytes),
            sha,
        )
    })
    .await
    {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("parsing failed: {e}"),
            )
        }
    };
    let mut problems = Vec::new();
    for (i, r) in records.iter().enumerate() {
        if let RecBody::Quarantine(q) = &r.body {
            problems.push(json!({
                "item": i,
                "line": r.location.as_ref().map(|l| l.line),
                "offset": r.location.as_ref().map(|l| l.offset),
                "format": q.format.map(|f| f.as_str()),
                "reason": q.reason,
            }));
        }
    }
    let total = records.len();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut b = Batch::new(endpoint.clone(), p.subject.clone(), records, Some(tx));
    // the same body to the same endpoint is the same batch (a cluster ingest node derives its
    // JetStream message ids from this, so a retry is stored once)
    b.id = body_sha.map(|h| format!("{endpoint}.{}", &h[..32]));
    match s.pipeline.submit(b) {
        Ok(()) => {}
        Err((Refused::Backpressure, _)) => {
            s.metrics.rejected("backpressure");
            s.pipeline.control(
                "backpressure",
                "Ingest refused under backpressure (429)",
                format!("the ledger writer's queue is full ({} events, {} bytes); senders were told to retry", s.metrics.queue_events.load(Ordering::Relaxed), s.metrics.queue_bytes.load(Ordering::Relaxed)),
            );
            return retry_after(
                StatusCode::TOO_MANY_REQUESTS,
                retry,
                json!({"error": "the ledger writer's queue is full; nothing of this batch was stored: retry after the given seconds"}),
            );
        }
        Err((Refused::Stopped(why), _)) => {
            s.metrics.rejected("stopped");
            return retry_after(
                StatusCode::SERVICE_UNAVAILABLE,
                retry,
                json!({"error": format!("not stored: {why}")}),
            );
        }
    }
    let stored = match rx.await {
        Ok(Ok(st)) => st,
        Ok(Err(e)) => {
            return retry_after(
                StatusCode::SERVICE_UNAVAILABLE,
                retry,
                json!({"error": format!("the batch could not be made durable, so it is not acknowledged: {e}")}),
            )
        }
        Err(_) => {
            return retry_after(
                StatusCode::SERVICE_UNAVAILABLE,
                retry,
                json!({"error": "the ledger writer stopped before the batch was durable"}),
            )
        }
    };
    let quarantined = problems.len();
    let body = json!({
        "stored": total - quarantined,
        "quarantined": quarantined,
        "first_index": stored.first,
        "last_index": stored.last,
        "errors": problems,
    });
    if quarantined == 0 {
        (StatusCode::OK, axum::Json(body)).into_response()
    } else {
        let mut body = body;
        body["error"] = Value::String(format!(
            "{quarantined} of {total} items could not be parsed: they are quarantined with their raw bytes; the other {} are stored",
            total - quarantined
        ));
        (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
    }
}

async fn query(
    State(s): St,
    Extension(c): Extension<ConnInfo>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let p = or_return!(authorize(
        &s,
        &c,
        &headers,
        Permission::Query,
        "query",
        "/v1/query"
    ));
    let bytes = match http_body_util::Limited::new(body, 1 << 20).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "a query request is at most 1 MiB",
            )
        }
    };
    let req: QueryRequest = match serde_json::from_slice(&bytes) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                "the body is not a query request ({{\"kql\": \"…\"}} or {{\"sql\": \"…\"}}): {e}"
            ),
            )
        }
    };
    let permit = match s.queries.clone().try_acquire_owned() {
        Ok(p) => p,
        Err(_) => {
            return retry_after(
                StatusCode::TOO_MANY_REQUESTS,
                5,
                json!({"error": format!("{} queries are running (query.max_concurrent); retry shortly", s.cfg.query.max_concurrent)}),
            )
        }
    };
    let limits = Limits {
        max_rows: s.cfg.query.max_rows,
        timeout: Duration::from_secs(s.cfg.query.timeout_seconds),
        memory: s.cfg.query.memory_limit_bytes,
        threads: s.cfg.query.threads,
    };
    let (ptx, prx) = tokio::sync::oneshot::channel();
    let (ltx, lrx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    let job = query_api::QueryJob {
        data_dir: s.data_dir.clone(),
        req,
        limits,
        pipeline: s.pipeline.clone(),
        subject: p.subject.clone(),
        origin: c.peer.ip().to_string(),
        interface: c.interface(),
        archive: s.cfg.archive.clone(),
    };
    query_api::spawn(job, ptx, ltx, permit);
    match prx.await {
        Ok(Ok(())) => {}
        Ok(Err((code, msg))) => {
            return error(
                StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST),
                msg,
            )
        }
        Err(_) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the query stopped before it was planned",
            )
        }
    }
    let stream = futures_util::stream::unfold(lrx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::io::Error>(Bytes::from(b)), rx))
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response()
}

#[derive(Deserialize)]
struct AlertQuery {
    status: Option<String>,
    level: Option<String>,
    rule_id: Option<String>,
    namespace: Option<String>,
    assignee: Option<String>,
    limit: Option<usize>,
}

async fn alerts_list(
    State(s): St,
    Extension(c): Extension<ConnInfo>,
    h: HeaderMap,
    Query(q): Query<AlertQuery>,
) -> Response {
    let p = or_return!(authorize(
        &s,
        &c,
        &h,
        Permission::Read,
        "alerts-list",
        "/v1/alerts"
    ));
    let mut f = Filter {
        min_level: q.level.clone(),
        rule_id: q.rule_id.clone(),
        namespace: q.namespace.clone(),
        assignee: q.assignee.clone(),
        limit: Some(q.limit.unwrap_or(500).min(10_000)),
        ..Filter::default()
    };
    if let Some(st) = &q.status {
        for x in st.split(',') {
            match Status::parse(x.trim()) {
                Some(v) => f.status.push(v),
                None => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!(
                            "status {x:?}: expected new, acknowledged, resolved, false-positive"
                        ),
                    )
                }
            }
        }
    }
    let list = {
        let store = crate::lock(&s.alerts);
        store.list(&f)
    };
    let list = match list {
        Ok(l) => l,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let target = format!(
        "alerts status={} level={} rule={} namespace={} assignee={}",
        q.status.as_deref().unwrap_or("*"),
        q.level.as_deref().unwrap_or("*"),
        q.rule_id.as_deref().unwrap_or("*"),
        q.namespace.as_deref().unwrap_or("*"),
        q.assignee.as_deref().unwrap_or("*")
    );
    or_return!(audited(&s, &p, &c, "alerts-list", target, list.len() as u64).await);
    axum::Json(json!(list)).into_response()
}

/// A JSON body, or a 400 naming what was wrong and the shape `expected`.
pub(crate) fn json_body<T: serde::de::DeserializeOwned>(
    body: &Bytes,
    expected: &str,
) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!("body: {e} (expected {expected})"),
        )
    })
}

pub(crate) fn parse_id(id: &str) -> Result<i64, Response> {
    id.parse::<i64>().map_err(|_| {
        error(
            StatusCode::BAD_REQUEST,
            format!("alert id {id:?} is not a number"),
        )
    })
}

async fn alerts_show(
    State(s): St,
    Extension(c): Extension<ConnInfo>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let p = or_return!(authorize(
        &s,
        &c,
        &h,
        Permission::Read,
        "alerts-show",
        &format!("/v1/alerts/{id}"),
    ));
    let id = or_return!(parse_id(&id));
    let a = {
        let store = crate::lock(&s.alerts);
        store.get(id)
    };
    match a {
        Ok(a) => {
            or_return!(audited(&s, &p, &c, "alerts-show", format!("alert {id}"), 1).await);
            axum::Json(json!(a)).into_response()
        }
        Err(trailwarden_alert::AlertError::NotFound(_)) => {
            error(StatusCode::NOT_FOUND, format!("no alert {id}"))
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ChangeBody {
    #[serde(default)]
    note: String,
    #[serde(default)]
    false_positive: bool,
}

async fn change(
    s: Arc<AppState>,
    c: ConnInfo,
    h: HeaderMap,
    id: String,
    body: Bytes,
    resolve: bool,
) -> Response {
    let (perm, action) = if resolve {
        (Permission::Resolve, "alerts-resolve")
    } else {
        (Permission::Acknowledge, "alerts-ack")
    };
    let p = or_return!(authorize(
        &s,
        &c,
        &h,
        perm,
        action,
        &format!("/v1/alerts/{id}")
    ));
    let id = or_return!(parse_id(&id));
    let b: ChangeBody = if body.iter().all(|b| b.is_ascii_whitespace()) {
        ChangeBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("body: {e} (expected {{\"note\": \"…\", \"false_positive\": false}})"),
                )
            }
        }
    };
    let to = match (resolve, b.false_positive) {
        (false, _) => Status::Acknowledged,
        (true, false) => Status::Resolved,
        (true, true) => Status::FalsePositive,
    };
    if resolve && b.note.trim().is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "resolving needs a note saying why (the assessor reads it)",
        );
    }
    match s.pipeline.change_alert(id, to, p.subject.clone(), b.note).await {
        Ok((index, ch)) => axum::Json(json!({"id": id, "status": to, "from": ch.from, "actor": ch.actor, "note": ch.note, "ledger_index": index})).into_response(),
        Err(ChangeError::NotFound) => error(StatusCode::NOT_FOUND, format!("no alert {id}")),
        Err(e) => change_error(e, "alert"),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DeliveryQuery {
    state: Option<String>,
    sink: Option<String>,
    alert_id: Option<i64>,
    limit: Option<usize>,
}

async fn deliveries_list(
    State(s): St,
    Extension(c): Extension<ConnInfo>,
    h: HeaderMap,
    Query(q): Query<DeliveryQuery>,
) -> Response {
    let p = or_return!(authorize(
        &s,
        &c,
        &h,
        Permission::Read,
        "deliveries-list",
        "/v1/deliveries",
    ));
    let state = match q.state.as_deref().map(|x| (x, DeliveryState::parse(x))) {
        None => None,
        Some((_, Some(st))) => Some(st),
        Some((x, None)) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("state {x:?}: expected pending, delivered, dead, silenced"),
            )
        }
    };
    let f = DeliveryFilter {
        state,
        sink: q.sink.clone(),
        alert_id: q.alert_id,
        limit: Some(q.limit.unwrap_or(500).min(10_000)),
    };
    let (list, sinks) = {
        let store = crate::lock(&s.alerts);
        (store.deliveries(&f), store.sink_status())
    };
    let (list, sinks) = match (list, sinks) {
        (Ok(l), Ok(st)) => (l, st),
        (Err(e), _) | (_, Err(e)) => {
            return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
    };
    let target = format!(
        "deliveries state={} sink={} alert={}",
        q.state.as_deref().unwrap_or("*"),
        q.sink.as_deref().unwrap_or("*"),
        q.alert_id.map_or("*".into(), |a| a.to_string())
    );
    or_return!(audited(&s, &p, &c, "deliveries-list", target, list.len() as u64).await);
    axum::Json(json!({"sinks": sinks, "deliveries": list})).into_response()
}

async fn deliveries_retry(
    State(s): St,
    Extension(c): Extension<ConnInfo>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let p = or_return!(authorize(
        &s,
        &c,
        &h,
        Permission::Administer,
        "deliveries-retry",
        &format!("/v1/deliveries/{id}/retry"),
    ));
    let id = or_return!(parse_id(&id));
    or_return!(audited(&s, &p, &c, "deliveries-retry", format!("delivery {id}"), 1).await);
    let r = {
        let mut store = crate::lock(&s.alerts);
        store.retry_delivery(id, trailwarden_model::Timestamp::now().0)
    };
    match r {
        Ok(d) => axum::Json(json!(d)).into_response(),
        Err(trailwarden_alert::AlertError::NoDelivery(_)) => {
            error(StatusCode::NOT_FOUND, format!("no delivery {id}"))
        }
        Err(e @ trailwarden_alert::AlertError::DeliveryState { .. }) => {
            error(StatusCode::CONFLICT, e.to_string())
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn silences_list(State(s): St, Extension(c): Extension<ConnInfo>, h: HeaderMap) -> Response {
    let p = or_return!(authorize(
        &s,
        &c,
        &h,
        Permission::Read,
        "silences-list",
        "/v1/silences",
    ));
    let list = {
        let store = crate::lock(&s.alerts);
        store.silences()
    };
    match list {
        Ok(l) => {
            or_return!(
                audited(
                    &s,
                    &p,
                    &c,
                    "silences-list",
                    "silences".into(),
                    l.len() as u64,
                )
                .await
            );
            axum::Json(json!(l)).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SilenceBody {
    matcher: trailwarden_alert::Matcher,
    /// RFC 3339 end, or a duration from now (`2h`).
    ends: String,
    reason: String,
}

async fn silences_create(
    State(s): St,
    Extension(c): Extension<ConnInfo>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    let p = or_return!(authorize(
        &s,
        &c,
        &h,
        Permission::Resolve,
        "silences-create",
        "/v1/silences",
    ));
    let b: SilenceBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("body: {e} (expected {{\"matcher\": {{\"rule_id\": \"…\"}}, \"ends\": \"2h\", \"reason\": \"…\"}})"),
            )
        }
    };
    match silence_end(&b.ends) {
        Err(m) => error(StatusCode::BAD_REQUEST, m),
        Ok(_) if b.reason.trim().is_empty() => {
            error(StatusCode::BAD_REQUEST, "a silence needs a reason (it is recorded)")
        }
        Ok(_) if b.matcher == trailwarden_alert::Matcher::default() => error(
            StatusCode::BAD_REQUEST,
            "the matcher is empty: a silence of every alert is refused",
        ),
        Ok(ends) => match b.matcher.check() {
            Err(m) => error(StatusCode::BAD_REQUEST, m),
            Ok(()) => match s
                .pipeline
                .silence(Some((b.matcher, ends)), None, p.subject.clone(), b.reason)
                .await
            {
                Ok((index, id)) => axum::Json(json!({"id": id, "ends_at": trailwarden_model::Timestamp(ends), "ledger_index": index})).into_response(),
                Err(e) => change_error(e, "silence"),
            },
        },
    }
}

/// The end of a silence: an RFC 3339 time or a duration from now; at most 30 days.
pub fn silence_end(s: &str) -> Result<i64, String> {
    let now = trailwarden_model::Timestamp::now().0;
    let end = match trailwarden_model::Timestamp::parse(s) {
        Ok(t) => t.0,
        Err(_) => match trailwarden_model::parse_duration(s) {
            Ok(d) => now.saturating_add(d),
            Err(_) => {
                return Err(format!(
                    "ends {s:?}: neither an RFC 3339 time nor a duration like 2h"
                ))
            }
        },
    };
    if end <= now {
        return Err(format!("ends {s:?} is in the past"));
    }
    if end - now > 30 * 86_400 * 1_000_000_000 {
        return Err(format!("ends {s:?} is more than 30 days away: silences are for maintenance windows, change the routes instead"));
    }
    Ok(end)
}

async fn silences_expire(
    State(s): St,
    Extension(c): Extension<ConnInfo>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let p = or_return!(authorize(
        &s,
        &c,
        &h,
        Permission::Resolve,
        "silences-expire",
        &format!("/v1/silences/{id}"),
    ));
    let id = or_return!(parse_id(&id));
    match s
        .pipeline
        .silence(None, Some(id), p.subject.clone(), "expired".into())
        .await
    {
        Ok((index, id)) => {
            axum::Json(json!({"id": id, "expired": true, "ledger_index": index})).into_response()
        }
        Err(e) => change_error(e, "silence"),
    }
}

fn change_error(e: ChangeError, what: &str) -> Response {
    match e {
        ChangeError::NotFound => error(StatusCode::NOT_FOUND, format!("no such active {what}")),
        ChangeError::Transition(m) => error(StatusCode::CONFLICT, m),
        ChangeError::Storage(m) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the change could not be recorded in the ledger, so it was not made: {m}"),
        ),
    }
}

async fn alerts_ack(
    State(s): St,
    Extension(c): Extension<ConnInfo>,
    h: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    change(s, c, h, id, body, false).await
}

async fn alerts_resolve(
    State(s): St,
    Extension(c): Extension<ConnInfo>,
    h: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    change(s, c, h, id, body, true).await
}

async fn archive_get(State(s): St, Extension(c): Extension<ConnInfo>, h: HeaderMap) -> Response {
    let p = or_return!(authorize(
        &s,
        &c,
        &h,
        Permission::Read,
        "archive-status",
        "/v1/archive"
    ));
    let dir = trailwarden_ledger::datadir::DataDir::new(&s.data_dir);
    let segments =
        match tokio::task::spawn_blocking(move || trailwarden_archive::local_status(&dir, None))
            .await
        {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        };
    or_return!(audited(&s, &p, &c, "archive-status", "/v1/archive".into(), 0).await);
    let a = &s.cfg.archive;
    axum::Json(json!({
        "url": a.url,
        "hot_days": a.hot_days,
        "retain_days": a.retain_days,
        "max_lag_seconds": a.max_lag_seconds,
        "last_pass": s.archive.last(),
        "segments": segments,
    }))
    .into_response()
}

async fn archive_run(State(s): St, Extension(c): Extension<ConnInfo>, h: HeaderMap) -> Response {
    let p = or_return!(authorize(
        &s,
        &c,
        &h,
        Permission::Administer,
        "archive-sync",
        "/v1/archive"
    ));
    if s.cfg.archive.url.is_none() {
        return error(
            StatusCode::CONFLICT,
            "no archive is configured ([archive] url)",
        );
    }
    or_return!(audited(&s, &p, &c, "archive-sync", "/v1/archive".into(), 0).await);
    axum::Json(crate::archiving::pass(&s).await).into_response()
}

async fn verify_get(State(s): St, Extension(c): Extension<ConnInfo>, h: HeaderMap) -> Response {
    let p = or_return!(authorize(
        &s,
        &c,
        &h,
        Permission::Read,
        "verify-status",
        "/v1/verify"
    ));
    let data_dir = s.data_dir.clone();
    let cp = tokio::task::spawn_blocking(move || {
        trailwarden_ledger::reader::LedgerReader::open(&data_dir, None)
            .and_then(|r| r.latest_checkpoint())
    })
    .await;
    let cp = match cp {
        Ok(Ok(cp)) => cp,
        Ok(Err(e)) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    or_return!(audited(&s, &p, &c, "verify-status", "/v1/verify".into(), 0).await);
    let last = s.verify.lock().ok().and_then(|g| g.clone());
    axum::Json(json!({
        "checkpoint": cp.as_ref().map(|c| json!({"size": c.checkpoint.size, "root": hex::encode(c.checkpoint.root), "note": c.note})),
        "last_verify": last,
    }))
    .into_response()
}

async fn verify_run(State(s): St, Extension(c): Extension<ConnInfo>, h: HeaderMap) -> Response {
    let p = or_return!(authorize(
        &s,
        &c,
        &h,
        Permission::RunVerify,
        "verify",
        "/v1/verify"
    ));
    let st = crate::server::run_verify(&s).await;
    or_return!(
        audited(
            &s,
            &p,
            &c,
            "verify",
            format!("whole ledger: {}", st.status),
            st.size,
        )
        .await
    );
    axum::Json(json!(st)).into_response()
}

async fn proof_inclusion(
    State(s): St,
    Extension(c): Extension<ConnInfo>,
    h: HeaderMap,
    Path(index): Path<String>,
) -> Response {
    let p = or_return!(authorize(
        &s,
        &c,
        &h,
        Permission::Query,
        "prove",
        &format!("/v1/proofs/inclusion/{index}"),
    ));
    let Ok(index) = index.parse::<u64>() else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("index {index:?} is not a number"),
        );
    };
    let data_dir = s.data_dir.clone();
    proof_answer(&s, &p, &c, move || {
        use trailwarden_ledger::proof;
        let reader = trailwarden_ledger::reader::LedgerReader::open(&data_dir, None)
            .map_err(|e| e.to_string())?;
        let cp = reader
            .latest_checkpoint()
            .map_err(|e| e.to_string())?
            .ok_or("the ledger has no signed checkpoint yet")?;
        let (encoded, pf) = proof::inclusion(&reader, index, &cp).map_err(|e| e.to_string())?;
        Ok((
            proof::inclusion_file(&encoded, index, &pf, &cp),
            format!("inclusion of record {index} at size {}", cp.checkpoint.size),
            1,
        ))
    })
    .await
}

/// Build a proof off the runtime, record the read, answer the proof text (404: not provable).
async fn proof_answer(
    s: &AppState,
    p: &Principal,
    c: &ConnInfo,
    work: impl FnOnce() -> Result<(String, String, u64), String> + Send + 'static,
) -> Response {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok((text, target, records))) => {
            or_return!(audited(s, p, c, "prove", target, records).await);
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
        }
        Ok(Err(e)) => error(StatusCode::NOT_FOUND, e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Deserialize)]
struct ConsistencyQuery {
    from: u64,
    to: Option<u64>,
}

async fn proof_consistency(
    State(s): St,
    Extension(c): Extension<ConnInfo>,
    h: HeaderMap,
    Query(q): Query<ConsistencyQuery>,
) -> Response {
    let p = or_return!(authorize(
        &s,
        &c,
        &h,
        Permission::Query,
        "prove",
        "/v1/proofs/consistency",
    ));
    let data_dir = s.data_dir.clone();
    proof_answer(&s, &p, &c, move || {
        use trailwarden_ledger::proof;
        let reader = trailwarden_ledger::reader::LedgerReader::open(&data_dir, None)
            .map_err(|e| e.to_string())?;
        let new = match q.to {
            Some(t) => reader
                .checkpoint_at(t)
                .map_err(|e| e.to_string())?
                .ok_or(format!("no checkpoint was signed at size {t}"))?,
            None => reader
                .latest_checkpoint()
                .map_err(|e| e.to_string())?
                .ok_or("the ledger has no signed checkpoint yet")?,
        };
        let pf = if q.from == 0 {
            Vec::new()
        } else {
            let old = reader
                .checkpoint_at(q.from)
                .map_err(|e| e.to_string())?
                .ok_or(format!("no checkpoint was signed at size {}", q.from))?;
            proof::consistency(&reader, &old, &new).map_err(|e| e.to_string())?
        };
        Ok((
            proof::consistency_file(q.from, &pf, &new),
            format!(
                "consistency from size {} to {}",
                q.from, new.checkpoint.size
            ),
            0,
        ))
    })
    .await
}

async fn sources(State(s): St, Extension(c): Extension<ConnInfo>, h: HeaderMap) -> Response {
    let p = or_return!(authorize(
        &s,
        &c,
        &h,
        Permission::Read,
        "sources",
        "/v1/sources"
    ));
    let list = s.metrics.sources();
    or_return!(
        audited(
            &s,
            &p,
            &c,
            "sources",
            "/v1/sources".into(),
            list.len() as u64,
        )
        .await
    );
    axum::Json(json!({ "sources": list })).into_response()
}

/// Bytes of a request body read before the handler runs.
const PREREAD_BYTES: usize = 256 << 10;

/// Read small request bodies completely before the handler runs. A handler that refuses a
/// request (401, 403, 415) answers without reading the body; over HTTP/2 that resets the
/// stream, and some clients (curl) then report a protocol error instead of the answer. Bodies
/// up to 256 KiB are therefore read first; larger ones stream to the handler as before.
pub async fn preread_body(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use futures_util::StreamExt;
    let (parts, body) = req.into_parts();
    let mut stream = body.into_data_stream();
    let mut prefix = Vec::new();
    let mut ended = true;
    let read = tokio::time::timeout(Duration::from_secs(1), async {
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(c) => {
                    prefix.extend_from_slice(&c);
                    if prefix.len() > PREREAD_BYTES {
                        ended = false;
                        return Ok(());
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    })
    .await;
    let body = match read {
        Ok(Ok(())) if ended => Body::from(prefix),
        Ok(Ok(())) | Err(_) => {
            // large or slow: hand over what was read followed by the rest
            let first =
                futures_util::stream::once(
                    async move { Ok::<Bytes, axum::Error>(Bytes::from(prefix)) },
                );
            Body::from_stream(first.chain(stream))
        }
        Ok(Err(e)) => return error(StatusCode::BAD_REQUEST, format!("reading the body: {e}")),
    };
    next.run(axum::extract::Request::from_parts(parts, body))
        .await
}

/// Count every answer per route (a layer over the router).
pub async fn count_responses(
    State(m): State<Arc<Metrics>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let route = route_label(req.uri().path());
    let r = next.run(req).await;
    m.http(route, r.status().as_u16());
    r
}

/// The classifier from the configuration.
pub fn classifier(cfg: &Config) -> Classifier {
    let mut c = ClassifierConfig::default();
    if !cfg.ingest.cde_namespaces.is_empty() {
        c.cde_namespaces = cfg.ingest.cde_namespaces.clone();
    }
    Classifier::new(c)
}
