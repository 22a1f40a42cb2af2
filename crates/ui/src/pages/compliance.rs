//! `/ui/compliance`: the Requirement 10 evidence report per sub-requirement (status, reason,
//! evidence with the query that reproduces it), downloads of the report, and the posture
//! checks of `trailwarden check` — over the running configuration, and over a file pasted here.

use super::{api_error, ok, param, Params};
use crate::api::qs;
use crate::html::{self, badge, csrf, s};
use crate::{respond, Page, Posted, Ui};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde_json::{json, Value};

const PERIODS: &[(&str, &str)] = &[
    ("1d", "Last day"),
    ("7d", "Last 7 days"),
    ("30d", "Last 30 days"),
    ("90d", "Last 90 days"),
    ("365d", "Last 12 months"),
];

fn findings(reports: &[Value]) -> Markup {
    html! {
        @for f in reports {
            h3 { code { (s(f, "file")) } " (" (s(f, "kind")) ")" }
            @let list = f["findings"].as_array().cloned().unwrap_or_default();
            @if list.is_empty() { p { (badge("pass")) " no findings" } }
            @else {
                table.grid.findings {
                    thead { tr { th scope="col" { "Severity" } th scope="col" { "Check" } th scope="col" { "Requirement" } th scope="col" { "Line" } th scope="col" { "Finding" } th scope="col" { "Fix" } } }
                    tbody {
                        @for x in &list {
                            tr {
                                td { (html::level(s(x, "severity"))) }
                                td { code { (s(x, "id")) } }
                                td { (s(x, "requirement")) }
                                td { (html::cell(&x["line"])) }
                                td { strong { (s(x, "title")) } br; span.muted { (s(x, "detail")) } }
                                td { (s(x, "fix")) }
                            }
                        }
                    }
                }
            }
        }
    }
}

async fn page_with(
    ui: &Ui,
    c: &crate::Ctx,
    from: &str,
    pasted: Option<Result<Value, String>>,
) -> Response {
    let _ = ui;
    let report = match c
        .api
        .get(&format!("/v1/reports/pci{}", qs(&[("from", from)])))
        .await
    {
        Ok(v) => v,
        Err(e) => return api_error(c, "/ui/compliance", "Compliance", &e),
    };
    let running = c.api.get("/v1/check").await;
    let body = html! {
        form.filters method="get" action="/ui/compliance" {
            label { "Period "
                select name="from" {
                    @for (v, l) in PERIODS { option value=(v) selected[*v == from] { (l) } }
                }
            }
            button type="submit" { "Show" }
            " "
            a.button href={"/ui/compliance" (qs(&[("from", from), ("download", "json")]))} { "Download JSON" }
            " "
            a.button href={"/ui/compliance" (qs(&[("from", from), ("download", "html")]))} { "Download HTML" }
        }
        p.muted {
            (s(&report, "report")) ": " (html::ts_text(&report["from"])) " – " (html::ts_text(&report["to"]))
            ", generated for " (s(&report, "generated_by")) ". Its hash is recorded in the ledger."
        }
        ul.plain.summary {
            @if let Some(m) = report["summary"].as_object() {
                @for (k, v) in m { li { (badge(k)) " " (html::cell(v)) } }
            }
        }
        table.grid #requirements {
            thead { tr { th scope="col" { "Requirement" } th scope="col" { "Status" } th scope="col" { "Why" } th scope="col" { "Evidence" } } }
            tbody {
                @for r in report["requirements"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
                    tr {
                        th scope="row" { (s(r, "id")) br; span.muted { (s(r, "title")) } }
                        td { (badge(s(r, "status"))) }
                        td { (s(r, "reason")) }
                        td {
                            ul.evidence {
                                @for e in r["evidence"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
                                    li {
                                        (s(e, "text"))
                                        @if let Some(q) = e["query"].as_str() {
                                            " " a href={"/ui/search" (qs(&[("q", q), ("range", "all")]))} { "query" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 #checks { "Posture checks" }
        @match &running {
            Ok(v) => (findings(v.as_array().map(Vec::as_slice).unwrap_or(&[]))),
            Err(e) => (html::error_box(&e.message)),
        }
        h3 { "Check a file" }
        p.muted { "An audit policy, a kube-apiserver manifest or flags, AKS diagnostic settings, or a trailwarden configuration: the checks of " code { "trailwarden check" } "." }
        form.action method="post" action="/ui/compliance/check" {
            (csrf(&c.session.csrf))
            label { "File name " input name="file" required placeholder="audit-policy.yaml" size="30"; }
            label.block { "Contents" textarea name="text" rows="8" required spellcheck="false" {} }
            button type="submit" { "Check" }
        }
        @match &pasted {
            None => {},
            Some(Ok(v)) => (findings(std::slice::from_ref(v))),
            Some(Err(e)) => (html::error_box(e)),
        }
    };
    let mut r = ok(
        c,
        "/ui/compliance",
        "Compliance: PCI DSS Requirement 10",
        body,
    );
    if matches!(pasted, Some(Err(_))) {
        *r.status_mut() = StatusCode::BAD_REQUEST;
    }
    r
}

/// The report page (and its downloads).
pub async fn page(Page { ui, c }: Page, axum::extract::Query(q): Params) -> Response {
    let from = match param(&q, "from") {
        "" => "30d",
        f if PERIODS.iter().any(|(v, _)| *v == f) => f,
        _ => "30d",
    };
    let download = param(&q, "download");
    if download == "json" || download == "html" {
        let path = format!(
            "/v1/reports/pci{}",
            qs(&[("from", from), ("format", download)])
        );
        return match c.api.bytes(Method::GET, &path, None).await {
            Ok((bytes, _)) => {
                let (ctype, ext) = if download == "json" {
                    ("application/json", "json")
                } else {
                    ("text/html; charset=utf-8", "html")
                };
                let mut r = bytes.into_response();
                let hs = r.headers_mut();
                hs.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
                if let Ok(v) = HeaderValue::from_str(&format!(
                    "attachment; filename=\"pci-req10-{from}.{ext}\""
                )) {
                    hs.insert(header::CONTENT_DISPOSITION, v);
                }
                r
            }
            Err(e) => api_error(&c, "/ui/compliance", "Compliance", &e),
        };
    }
    page_with(&ui, &c, from, None).await
}

/// `POST /ui/compliance/check`: check a pasted file (nothing is stored; the check is recorded).
pub async fn check(Posted { ui, c, form: f }: Posted) -> Response {
    let body =
        json!({"file": param(&f, "file"), "text": f.get("text").cloned().unwrap_or_default()});
    let res = c
        .api
        .json(Method::POST, "/v1/check", Some(body))
        .await
        .map_err(|e| e.message);
    if let Err(e) = &res {
        if e.is_empty() {
            return respond(
                StatusCode::BAD_GATEWAY,
                html::page(
                    &c.viewer(),
                    "/ui/compliance",
                    "Compliance",
                    html::error_box("the check failed"),
                ),
            );
        }
    }
    page_with(&ui, &c, "30d", Some(res)).await
}
