//! `/ui/integrity`: the latest signed checkpoint, the last verification, a verification run
//! (reviewer) and proof downloads (inclusion of a record, consistency between two sizes) that
//! `trailwarden verify-proof` checks offline with the public key shown here.

use super::{api_error, ok, param, Params};
use crate::api::qs;
use crate::html::{self, badge, csrf, s, ts_text};
use crate::{done, Page, Posted};
use axum::extract::Path;
use axum::http::{header, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use maud::html;
use trailwarden_server::auth::Permission;

/// The page.
pub async fn page(Page { ui, c }: Page, _q: Params) -> Response {
    let v = match c.api.get("/v1/verify").await {
        Ok(v) => v,
        Err(e) => return api_error(&c, "/ui/integrity", "Integrity", &e),
    };
    let vkey = std::fs::read_to_string(ui.state.data_dir.join("keys/checkpoint.vkey"))
        .map(|k| k.trim().to_string())
        .unwrap_or_default();
    let cp = &v["checkpoint"];
    let last = &v["last_verify"];
    let size = cp["size"].as_u64().unwrap_or(0);
    let body = html! {
        section aria-labelledby="cp" {
            h2 #cp { "Latest signed checkpoint" }
            @if cp.is_null() { p.muted { "No checkpoint yet." } }
            @else {
                dl.facts {
                    dt { "Size" } dd #size { (size) " records" }
                    dt { "Root hash" } dd { code { (s(cp, "root")) } }
                    dt { "Checkpoint key" } dd { code #vkey { (vkey) } }
                }
                details { summary { "Signed note" } pre.json { (s(cp, "note")) } }
            }
        }
        section aria-labelledby="lv" {
            h2 #lv { "Last verification" }
            @if last.is_null() { p.muted { "Not run since the server started." } }
            @else {
                dl.facts {
                    dt { "Result" } dd #verify-status { (badge(s(last, "status"))) " " (s(last, "summary")) }
                    dt { "When" } dd { (ts_text(&last["at"])) }
                    dt { "Records" } dd { (last["size"].as_u64().unwrap_or(0)) " in " (format!("{:.2}", last["elapsed_seconds"].as_f64().unwrap_or(0.0))) " s" }
                }
                @if let Some(f) = last["failures"].as_array().filter(|f| !f.is_empty()) {
                    h3 { "Failures" }
                    (html::json_block(&serde_json::Value::Array(f.clone())))
                }
            }
            @if c.may(Permission::RunVerify) {
                form.action method="post" action="/ui/integrity/verify" {
                    (csrf(&c.session.csrf))
                    button #verify type="submit" { "Verify the whole ledger now" }
                }
            }
        }
        section aria-labelledby="pf" {
            h2 #pf { "Proofs" }
            @if c.may(Permission::Query) {
                form.filters method="get" action="/ui/proofs/inclusion/0" #incl-form {
                    label { "Inclusion of record " input #incl-index type="number" name="index" min="0" max=(size.saturating_sub(1)) required; }
                    button type="submit" { "Download" }
                }
                form.filters method="get" action="/ui/proofs/consistency" {
                    label { "Consistency from size " input type="number" name="from" min="1" max=(size) required; }
                    label { "to " input type="number" name="to" min="1" max=(size) placeholder=(size); }
                    button type="submit" { "Download" }
                }
                p.muted {
                    "Check one offline: " code { "trailwarden verify-proof record-N.tlog-proof --public-key '" (vkey) "'" }
                }
            } @else {
                p.muted { "Your role (" (c.session.principal.role.as_str()) ") may not download proofs (they carry audit records)." }
            }
        }
    };
    ok(&c, "/ui/integrity", "Integrity", body)
}

/// `POST /ui/integrity/verify` (reviewer).
pub async fn verify(Posted { ui, c, form: _f }: Posted) -> Response {
    match c.api.json(Method::POST, "/v1/verify", None).await {
        Ok(v) => done(
            &ui,
            &c,
            "/ui/integrity",
            format!("Verification: {} — {}", s(&v, "status"), s(&v, "summary")),
        ),
        Err(e) => api_error(&c, "/ui/integrity", "Integrity", &e),
    }
}

fn attachment(bytes: Vec<u8>, name: &str) -> Response {
    let mut r = bytes.into_response();
    let hs = r.headers_mut();
    hs.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        hs.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

/// `GET /ui/proofs/inclusion/{index}` (the form sends `?index=`): the proof file.
pub async fn inclusion(
    Page { ui: _, c }: Page,
    Path(index): Path<String>,
    axum::extract::Query(q): Params,
) -> Response {
    let index = match param(&q, "index") {
        "" => index,
        i => i.to_string(),
    };
    let path = format!("/v1/proofs/inclusion/{}", crate::api::enc(&index));
    match c.api.bytes(Method::GET, &path, None).await {
        Ok((b, _)) => attachment(b, &format!("record-{index}.tlog-proof")),
        Err(e) => api_error(&c, "/ui/integrity", "Proof", &e),
    }
}

/// `GET /ui/proofs/consistency?from=&to=`.
pub async fn consistency(Page { ui: _, c }: Page, axum::extract::Query(q): Params) -> Response {
    let path = format!(
        "/v1/proofs/consistency{}",
        qs(&[("from", param(&q, "from")), ("to", param(&q, "to"))])
    );
    match c.api.bytes(Method::GET, &path, None).await {
        Ok((b, _)) => attachment(
            b,
            &format!(
                "consistency-{}-{}.tlog-proof",
                param(&q, "from"),
                param(&q, "to")
            ),
        ),
        Err(e) => api_error(&c, "/ui/integrity", "Proof", &e),
    }
}
