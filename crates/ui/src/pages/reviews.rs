//! `/ui/reviews`: the daily (and periodic) reviews, a review's exceptions and totals, and the
//! reviewer's sign-off with a note (10.4.1).

use super::{api_error, ok, param, Params};
use crate::html::{self, badge, csrf, s, ts_text};
use crate::{done, Page, Posted};
use axum::extract::Path;
use axum::http::Method;
use axum::response::Response;
use maud::html;
use serde_json::{json, Value};
use trailwarden_server::auth::Permission;

/// The list.
pub async fn list(Page { ui: _, c }: Page, _q: Params) -> Response {
    let rows = match c.api.get("/v1/reviews").await {
        Ok(v) => v.as_array().cloned().unwrap_or_default(),
        Err(e) => return api_error(&c, "/ui/reviews", "Reviews", &e),
    };
    let body = html! {
        @if c.may(Permission::Resolve) {
            form.filters method="post" action="/ui/reviews" {
                (csrf(&c.session.csrf))
                label { "Generate the daily review of " input type="date" name="date" required; }
                label { input type="checkbox" name="replace" value="true"; " replace an unsigned one" }
                button type="submit" { "Generate" }
            }
        }
        table.grid.sortable #reviews {
            thead { tr {
                th scope="col" { "Review" } th scope="col" { "Period" } th scope="col" { "Exceptions" }
                th scope="col" { "Generated" } th scope="col" { "Sign-off" } th scope="col" { "Ledger record" }
            } }
            tbody {
                @for r in &rows {
                    tr {
                        td { a href={"/ui/reviews/" (s(r, "id"))} { (s(r, "id")) } }
                        td { (ts_text(&r["period_start"])) " – " (ts_text(&r["period_end"])) }
                        td data-sort=(r["exceptions"].as_u64().unwrap_or(0)) { (r["exceptions"].as_u64().unwrap_or(0)) }
                        td { (ts_text(&r["generated_at"])) " by " (s(r, "generated_by")) }
                        td {
                            @if r["sign_off"].is_null() { (badge("pending")) }
                            @else { (badge("signed-off")) " " (s(&r["sign_off"], "reviewer")) " " (ts_text(&r["sign_off"]["at"])) }
                        }
                        td { (r["ledger_index"].as_u64().unwrap_or(0)) }
                    }
                }
            }
        }
        @if rows.is_empty() { p.muted { "No reviews yet: serve generates each day's after it ends." } }
    };
    ok(&c, "/ui/reviews", "Reviews", body)
}

/// `POST /ui/reviews` (reviewer): generate a day's review now.
pub async fn generate(Posted { ui, c, form: f }: Posted) -> Response {
    let body = json!({"date": param(&f, "date"), "replace": param(&f, "replace") == "true"});
    match c.api.json(Method::POST, "/v1/reviews", Some(body)).await {
        Ok(v) => {
            let id = v["review"]["id"]
                .as_str()
                .or(v["id"].as_str())
                .unwrap_or("");
            let to = if id.is_empty() {
                "/ui/reviews".to_string()
            } else {
                format!("/ui/reviews/{id}")
            };
            done(&ui, &c, &to, format!("Review {id} generated."))
        }
        Err(e) => api_error(&c, "/ui/reviews", "Reviews", &e),
    }
}

fn map_rows(v: &Value) -> Vec<(String, String)> {
    v.as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), html::cell(v))).collect())
        .unwrap_or_default()
}

/// One review.
pub async fn show(Page { ui: _, c }: Page, Path(id): Path<String>) -> Response {
    let v = match c
        .api
        .get(&format!("/v1/reviews/{}", crate::api::enc(&id)))
        .await
    {
        Ok(v) => v,
        Err(e) => return api_error(&c, "/ui/reviews", &format!("Review {id}"), &e),
    };
    let r = &v["review"];
    let so = &v["sign_off"];
    let body = html! {
        dl.facts {
            dt { "Period" } dd { (s(&r["period"], "label")) " (" (s(&r["period"], "kind")) ", UTC offset " (s(r, "utc_offset")) ")" }
            dt { "Generated" } dd { (ts_text(&r["generated_at"])) " by " (s(r, "generated_by")) }
            dt { "Hash" } dd { code { (s(&v, "hash")) } }
            dt { "Ledger record" } dd { (v["ledger_index"].as_u64().unwrap_or(0)) }
            dt { "Verification" } dd { (badge(s(&r["verification"], "status"))) " " (r["verification"]["records_checked"].as_u64().unwrap_or(0)) " records checked" }
            dt { "Sign-off" } dd #signoff {
                @if so.is_null() { (badge("pending")) }
                @else { (badge("signed-off")) " by " (s(so, "reviewer")) " " (ts_text(&so["at"])) ": " (s(so, "note")) " (ledger record " (so["ledger_index"].as_u64().unwrap_or(0)) ")" }
            }
        }
        @if so.is_null() && c.may(Permission::Resolve) {
            form.action method="post" action={"/ui/reviews/" (crate::api::enc(&id)) "/sign-off"} {
                (csrf(&c.session.csrf))
                label { "Note (required) " input #signoff-note name="note" required size="60" placeholder="exceptions followed up: …"; }
                button #sign type="submit" { "Sign off" }
            }
        }
        h2 { "Exceptions (" (r["exceptions"].as_array().map_or(0, Vec::len)) ")" }
        table.grid #exceptions {
            thead { tr { th scope="col" { "Severity" } th scope="col" { "Kind" } th scope="col" { "Title" } th scope="col" { "Detail" } th scope="col" { "References" } } }
            tbody {
                @for e in r["exceptions"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
                    tr {
                        td { (html::level(s(e, "severity"))) }
                        td { (s(e, "kind")) }
                        td { (s(e, "title")) }
                        td { (s(e, "detail")) }
                        td { @for x in e["refs"].as_array().map(Vec::as_slice).unwrap_or(&[]) { code { (html::cell(x)) } " " } }
                    }
                }
            }
        }
        h2 { "Events by PCI DSS 10.2.1 category" }
        table.grid {
            thead { tr { th scope="col" { "Requirement" } th scope="col" { "What" } th scope="col" { "Events" } } }
            tbody {
                @for k in r["categories"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
                    tr { td { (s(k, "requirement")) } td { (s(k, "title")) } td { (k["total"].as_u64().unwrap_or(0)) } }
                }
            }
        }
        div.cards {
            section.card { h2 { "Events by source" } ul.plain { @for (k, n) in map_rows(&r["events_by_source"]) { li { code { (k) } " " (n) } } } }
            section.card { h2 { "Alerts raised" } ul.plain { @for (k, n) in map_rows(&r["alerts"]["raised"]) { li { (html::level(&k)) " " (n) } } } }
            section.card { h2 { "Open at the end" } ul.plain { @for (k, n) in map_rows(&r["alerts"]["open_at_end"]) { li { (html::level(&k)) " " (n) } } } }
            section.card { h2 { "Reads of the audit trail" } p { (r["audit_log_access"]["reads"].as_u64().unwrap_or(0)) " reads, " (r["audit_log_access"]["refused"].as_u64().unwrap_or(0)) " refused" } }
        }
    };
    ok(&c, "/ui/reviews", &format!("Review {id}"), body)
}

/// `POST /ui/reviews/{id}/sign-off` (reviewer).
pub async fn sign_off(Path(id): Path<String>, Posted { ui, c, form: f }: Posted) -> Response {
    let id = crate::api::enc(&id);
    let body = json!({"note": param(&f, "note")});
    match c
        .api
        .json(
            Method::POST,
            &format!("/v1/reviews/{id}/sign-off"),
            Some(body),
        )
        .await
    {
        Ok(v) => {
            let at = v["sign_off"]["ledger_index"].as_u64().unwrap_or(0);
            done(
                &ui,
                &c,
                &format!("/ui/reviews/{id}"),
                format!("Signed off (ledger record {at})."),
            )
        }
        Err(e) => api_error(&c, "/ui/reviews", &format!("Review {id}"), &e),
    }
}
