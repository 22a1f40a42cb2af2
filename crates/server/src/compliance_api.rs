//! The compliance endpoints: reviews (`/v1/reviews`), control-failure incidents
//! (`/v1/controls`) and the Req 10 evidence report (`/v1/reports/pci`). The work is done by
//! `trailwarden-compliance`; this is the HTTP edge (auth, audit of every read, the writer for
//! ledger records).
// handlers answer early with a `Response` as their error, like the rest of the HTTP edge
#![allow(clippy::result_large_err)]

use crate::auth::Permission;
use crate::http::{audited, authorize, error, json_body, parse_id, AppState, ConnInfo};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use trailwarden_compliance::review::{self, Review};
use trailwarden_compliance::store::{self as rstore, ReviewStore, SignOff};
use trailwarden_compliance::{controls, render, ComplianceError};
use trailwarden_model::{RecordKind, Timestamp};

type St = State<Arc<AppState>>;

fn compliance_error(e: ComplianceError) -> Response {
    match e {
        ComplianceError::NoReview(_) => error(StatusCode::NOT_FOUND, e.to_string()),
        ComplianceError::ReviewState { .. } => error(StatusCode::CONFLICT, e.to_string()),
        ComplianceError::Config(_) => error(StatusCode::BAD_REQUEST, e.to_string()),
        e => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ComplianceError> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(compliance_error),
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

/// `GET /v1/reviews`.
pub async fn reviews_list(
    State(s): St,
    Extension(c): Extension<ConnInfo>,
    h: HeaderMap,
) -> Response {
    let p = or_return!(authorize(
        &s,
        &c,
        &h,
        Permission::Read,
        "reviews-list",
        "/v1/reviews"
    ));
    let dir = s.data_dir.clone();
    let rows = or_return!(blocking(move || ReviewStore::open(&dir)?.list()).await);
    or_return!(
        audited(
            &s,
            &p,
            &c,
            "reviews-list",
            "reviews".into(),
            rows.len() as u64,
        )
        .await
    );
    axum::Json(json!(rows)).into_response()
}

/// `?format=` of `GET /v1/reviews/{id}`.
#[derive(Deserialize)]
pub struct ShowQuery {
    format: Option<String>,
}

fn typed(body: String, ct: &'static str) -> Response {
    let mut r = body.into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    r
}

/// `GET /v1/reviews/{id}?format=json|html|csv`.
pub async fn reviews_show(
    State(s): St,
    Extension(c): Extension<ConnInfo>,
    h: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<ShowQuery>,
) -> Response {
    let p = or_return!(authorize(
        &s,
        &c,
        &h,
        Permission::Read,
        "review-show",
        &format!("/v1/reviews/{id}"),
    ));
    let format = q.format.unwrap_or_else(|| "json".into());
    if !matches!(format.as_str(), "json" | "html" | "csv") {
        return error(
            StatusCode::BAD_REQUEST,
            format!("format {format:?}: json, html or csv"),
        );
    }
    let (dir, id2) = (s.data_dir.clone(), id.clone());
    let (row, r) = or_return!(blocking(move || ReviewStore::open(&dir)?.get(&id2)).await);
    or_return!(audited(&s, &p, &c, "review-show", id.clone(), 1).await);
    match format.as_str() {
        "html" => typed(render::review_html(&r, Some(&row)), "text/html; charset=utf-8"),
        "csv" => typed(render::review_csv(&r), "text/csv; charset=utf-8"),
        _ => axum::Json(json!({"review": r, "hash": row.hash, "ledger_index": row.ledger_index, "sign_off": row.sign_off})).into_response(),
    }
}

/// Body of `POST /v1/reviews`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateBody {
    date: String,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    days: Option<i64>,
    #[serde(default)]
    replace: bool,
}

/// Generate the review of a period, record its hash in the ledger, store it. Shared by the
/// endpoint and the daily thread.
pub fn generate_blocking(
    s: &AppState,
    kind: &str,
    date: &str,
    days: i64,
    replace: bool,
    by: &str,
) -> Result<(Review, u64), ComplianceError> {
    let settings = s.cfg.review.settings()?;
    let period = review::period(kind, date, days, &settings)?;
    let mut store = ReviewStore::open(&s.data_dir)?;
    store.check_insert(&period.id(), replace)?;
    let r = review::build(&s.data_dir, &period, &s.cfg.review, by, None)?;
    let index = s
        .pipeline
        .record_blocking(RecordKind::Alert, rstore::generated_record(&r))
        .map_err(ComplianceError::Ledger)?;
    store.insert(&r, index)?;
    Ok((r, index))
}

/// `POST /v1/reviews` (reviewer): `{"date": "2026-12-02", "kind": "daily", "days": 1}`.
pub async fn reviews_generate(
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
        "review-generate",
        "/v1/reviews",
    ));
    let b: GenerateBody = or_return!(json_body(
        &body,
        r#"{"date": "YYYY-MM-DD", "kind": "daily", "days": 1, "replace": false}"#,
    ));
    let s2 = s.clone();
    let by = p.subject.clone();
    match blocking(move || {
        generate_blocking(
            &s2,
            b.kind.as_deref().unwrap_or("daily"),
            &b.date,
            b.days.unwrap_or(1),
            b.replace,
            &by,
        )
    })
    .await
    {
        Ok((r, index)) => axum::Json(json!({"id": r.id, "hash": r.hash(), "ledger_index": index,
            "exceptions": r.exceptions.len(), "verification": r.verification.status}))
        .into_response(),
        Err(r) => r,
    }
}

/// Body of `POST /v1/reviews/{id}/sign-off`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignOffBody {
    note: String,
}

/// `POST /v1/reviews/{id}/sign-off` (reviewer): a ledger record binding the review's hash, the
/// caller and the note, then the store.
pub async fn reviews_sign_off(
    State(s): St,
    Extension(c): Extension<ConnInfo>,
    h: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let p = or_return!(authorize(
        &s,
        &c,
        &h,
        Permission::Resolve,
        "review-sign-off",
        &format!("/v1/reviews/{id}/sign-off"),
    ));
    let b: SignOffBody = or_return!(json_body(&body, r#"{"note": "…"}"#));
    let (dir, id2, note) = (s.data_dir.clone(), id.clone(), b.note.clone());
    let row =
        or_return!(blocking(move || ReviewStore::open(&dir)?.check_sign_off(&id2, &note)).await);
    let at = Timestamp::now();
    let index = match s
        .pipeline
        .record(
            RecordKind::Alert,
            rstore::signed_record(&id, &row.hash, &p.subject, &b.note, at),
        )
        .await
    {
        Ok(i) => i,
        Err(e) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the sign-off could not be recorded in the ledger, so it was not made: {e}"
                ),
            )
        }
    };
    let so = SignOff {
        reviewer: p.subject.clone(),
        at,
        note: b.note,
        ledger_index: index,
    };
    let (dir, id2, so2) = (s.data_dir.clone(), id.clone(), so.clone());
    or_return!(blocking(move || ReviewStore::open(&dir)?.sign_off(&id2, &so2)).await);
    axum::Json(json!({"id": id, "hash": row.hash, "sign_off": so})).into_response()
}

/// `GET /v1/controls`: control-failure incidents, newest first.
pub async fn controls_list(
    State(s): St,
    Extension(c): Extension<ConnInfo>,
    h: HeaderMap,
) -> Response {
    let p = or_return!(authorize(
        &s,
        &c,
        &h,
        Permission::Read,
        "controls-list",
        "/v1/controls",
    ));
    let alerts = {
        let store = crate::lock(&s.alerts);
        store.list(&trailwarden_alert::Filter::default())
    };
    let alerts = match alerts {
        Ok(a) => a,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let list = controls::incidents(&alerts, Timestamp::now().0);
    or_return!(
        audited(
            &s,
            &p,
            &c,
            "controls-list",
            "incidents".into(),
            list.len() as u64,
        )
        .await
    );
    axum::Json(json!(list)).into_response()
}

/// `POST /v1/controls/{id}/note` (reviewer): close an incident with its remediation note.
pub async fn controls_note(
    State(s): St,
    Extension(c): Extension<ConnInfo>,
    h: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let p = or_return!(authorize(
        &s,
        &c,
        &h,
        Permission::Resolve,
        "controls-note",
        &format!("/v1/controls/{id}/note"),
    ));
    let id = or_return!(parse_id(&id));
    let b: SignOffBody = or_return!(json_body(&body, r#"{"note": "…"}"#));
    if b.note.trim().is_empty() {
        return error(StatusCode::BAD_REQUEST, "the remediation note is required");
    }
    let alert = {
        let store = crate::lock(&s.alerts);
        store.get(id)
    };
    match alert
        .ok()
        .and_then(|a| controls::incident(&a, Timestamp::now().0))
    {
        None => {
            return error(
                StatusCode::NOT_FOUND,
                format!("no control-failure incident {id}"),
            )
        }
        Some(i) if i.state != "open" => {
            return error(
                StatusCode::CONFLICT,
                format!("incident {id} is closed already"),
            )
        }
        Some(_) => {}
    }
    match s
        .pipeline
        .change_alert(
            id,
            trailwarden_alert::Status::Resolved,
            p.subject.clone(),
            b.note,
        )
        .await
    {
        Ok((index, ch)) => {
            axum::Json(json!({"id": id, "ledger_index": index, "change": ch})).into_response()
        }
        Err(e) => error(StatusCode::CONFLICT, format!("{e:?}")),
    }
}

/// `?from=&to=&format=` of `GET /v1/reports/pci`.
#[derive(Deserialize)]
pub struct ReportQuery {
    from: String,
    to: Option<String>,
    format: Option<String>,
}

/// `GET /v1/reports/pci?from=30d&to=0s&format=json|html` (viewer): the Requirement 10
/// evidence report; its hash is recorded in the ledger (prove it with
/// `/v1/proofs/inclusion/{ledger_index}`).
pub async fn reports_pci(
    State(s): St,
    Extension(c): Extension<ConnInfo>,
    h: HeaderMap,
    Query(q): Query<ReportQuery>,
) -> Response {
    let p = or_return!(authorize(
        &s,
        &c,
        &h,
        Permission::Read,
        "report-pci",
        "/v1/reports/pci",
    ));
    let now = Timestamp::now();
    let parse = |v: &str| trailwarden_model::parse_time_or_ago(v, now).map(|t| t.0);
    let (from, to) = match (parse(&q.from), parse(q.to.as_deref().unwrap_or("0s"))) {
        (Ok(f), Ok(t)) if t > f => (f, t),
        (Ok(_), Ok(_)) => return error(StatusCode::BAD_REQUEST, "to must be after from"),
        (Err(e), _) | (_, Err(e)) => {
            return error(StatusCode::BAD_REQUEST, format!("from/to: {e}"))
        }
    };
    let format = q.format.unwrap_or_else(|| "json".into());
    if !matches!(format.as_str(), "json" | "html") {
        return error(
            StatusCode::BAD_REQUEST,
            format!("format {format:?}: json or html"),
        );
    }
    let cfg = &s.cfg;
    let facts = cfg.report_facts();
    let (dir, by, rcfg) = (s.data_dir.clone(), p.subject.clone(), cfg.review.clone());
    let report = match blocking(move || {
        let roles = crate::tokens::TokenStore::open(&dir)
            .map(|t| t.count_by_role())
            .unwrap_or_default();
        trailwarden_compliance::report::assemble(
            &dir,
            from,
            to,
            &[],
            Some(facts),
            &rcfg,
            roles,
            &by,
            None,
        )
    })
    .await
    {
        Ok(r) => r,
        Err(r) => return r,
    };
    let text = match serde_json::to_string_pretty(&report) {
        Ok(t) => t + "\n",
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let hash = trailwarden_compliance::report::sha256(text.as_bytes());
    let index = match s
        .pipeline
        .record(
            RecordKind::Alert,
            trailwarden_compliance::report::record(&report, &hash),
        )
        .await
    {
        Ok(i) => i,
        Err(e) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                "the report's hash could not be recorded in the ledger, so it is not served: {e}"
            ),
            )
        }
    };
    if format == "html" {
        return typed(
            trailwarden_compliance::report::html(&report, &hash, Some(index)),
            "text/html; charset=utf-8",
        );
    }
    let mut r = typed(text, "application/json");
    for (k, v) in [
        ("x-trailwarden-report-hash", hash),
        ("x-trailwarden-ledger-index", index.to_string()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&v) {
            r.headers_mut().insert(k, v);
        }
    }
    r
}

/// Body of `POST /v1/alerts/{id}/assign`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignBody {
    assignee: String,
    #[serde(default)]
    due: Option<String>,
}

/// `POST /v1/alerts/{id}/assign` (analyst): who follows the alert up and, optionally, by when
/// (10.4.3); recorded in the ledger, then applied.
pub async fn alerts_assign(
    State(s): St,
    Extension(c): Extension<ConnInfo>,
    h: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let p = or_return!(authorize(
        &s,
        &c,
        &h,
        Permission::Acknowledge,
        "alert-assign",
        &format!("/v1/alerts/{id}/assign"),
    ));
    let id = or_return!(parse_id(&id));
    let b: AssignBody = or_return!(json_body(&body, r#"{"assignee": "…", "due": "RFC 3339"}"#));
    if b.assignee.trim().is_empty() {
        return error(StatusCode::BAD_REQUEST, "assignee is empty");
    }
    let due = match &b.due {
        None => None,
        Some(d) => match Timestamp::parse(d) {
            Ok(t) => Some(t.0),
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("due: {e}")),
        },
    };
    if let Err(e) = crate::lock(&s.alerts).get(id) {
        return error(StatusCode::NOT_FOUND, e.to_string());
    }
    let rec = json!({"action": "assigned", "alert_id": id, "assignee": b.assignee,
        "due_at": due.map(Timestamp), "actor": p.subject, "at": Timestamp::now()});
    let index = match s.pipeline.record(RecordKind::Alert, rec).await {
        Ok(i) => i,
        Err(e) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the assignment could not be recorded in the ledger, so it was not made: {e}"
                ),
            )
        }
    };
    let r = crate::lock(&s.alerts).assign(id, &b.assignee, due);
    match r {
        Ok(()) => axum::Json(json!({"id": id, "assignee": b.assignee, "due_at": due.map(Timestamp), "ledger_index": index})).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("recorded as ledger record {index}, but: {e}")),
    }
}

/// Body of `POST /v1/check`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckBody {
    /// The file's name (its extension and contents say what it is).
    file: String,
    /// Its contents.
    text: String,
    /// Namespaces of the cardholder-data environment (default: `payments`).
    #[serde(default)]
    cde_namespaces: Option<Vec<String>>,
}

fn check_options(cde: Option<Vec<String>>) -> trailwarden_compliance::check::Options {
    let mut o = trailwarden_compliance::check::Options::default();
    if let Some(n) = cde.filter(|n| !n.is_empty()) {
        o.cde_namespaces = n;
    }
    o
}

/// `GET /v1/check` (viewer): the posture checks of `trailwarden check` over the configuration
/// this server runs with.
pub async fn check_running(
    State(s): St,
    Extension(c): Extension<ConnInfo>,
    h: HeaderMap,
) -> Response {
    let p = or_return!(authorize(
        &s,
        &c,
        &h,
        Permission::Read,
        "check",
        "/v1/check"
    ));
    let text = match toml::to_string(&s.cfg) {
        Ok(t) => t,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let report = match trailwarden_compliance::check::check_text(
        "trailwarden.toml (running)",
        &text,
        &check_options(None),
    ) {
        Ok(r) => r,
        Err(e) => return compliance_error(e),
    };
    or_return!(audited(&s, &p, &c, "check", "running configuration".into(), 0).await);
    axum::Json(json!([report])).into_response()
}

/// `POST /v1/check` (viewer): check one file sent in the body (an audit policy, an API server
/// manifest or flags, AKS diagnostic settings, a trailwarden configuration).
pub async fn check_file(
    State(s): St,
    Extension(c): Extension<ConnInfo>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    let p = or_return!(authorize(
        &s,
        &c,
        &h,
        Permission::Read,
        "check",
        "/v1/check"
    ));
    let b: CheckBody = or_return!(json_body(
        &body,
        "{\"file\": \"audit-policy.yaml\", \"text\": \"…\", \"cde_namespaces\": [\"payments\"]}",
    ));
    let report = match trailwarden_compliance::check::check_text(
        &b.file,
        &b.text,
        &check_options(b.cde_namespaces),
    ) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    or_return!(audited(&s, &p, &c, "check", format!("file {}", b.file), 0).await);
    axum::Json(json!(report)).into_response()
}
