//! `/ui/sources`: per source its last event, rate, clock skew and silence; the control-failure
//! incidents (10.7) with the reviewer's remediation note that closes one.

use super::{api_error, ok, param, Params};
use crate::html::{self, badge, csrf, s, ts_text};
use crate::{done, Page, Posted};
use axum::extract::Path;
use axum::http::Method;
use axum::response::Response;
use maud::html;
use serde_json::{json, Value};
use trailwarden_model::Timestamp;
use trailwarden_server::auth::Permission;

fn ns(v: &Value) -> Option<i64> {
    v.as_str()
        .and_then(|s| Timestamp::parse(s).ok())
        .map(|t| t.0)
}

fn secs(d: i64) -> String {
    let d = d / 1_000_000_000;
    match d.abs() {
        0..=119 => format!("{d} s"),
        120..=7199 => format!("{} min", d / 60),
        7200..=172_799 => format!("{} h", d / 3600),
        _ => format!("{} d", d / 86_400),
    }
}

/// The page.
pub async fn page(Page { ui: _, c }: Page, _q: Params) -> Response {
    let src = match c.api.get("/v1/sources").await {
        Ok(v) => v["sources"].as_array().cloned().unwrap_or_default(),
        Err(e) => return api_error(&c, "/ui/sources", "Sources & controls", &e),
    };
    let controls = c.api.get("/v1/controls").await;
    let now = Timestamp::now().0;
    // sources an open silent-source incident names
    let silent_now: Vec<String> = controls
        .as_ref()
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter(|i| s(i, "state") == "open" && s(i, "control").contains("silent"))
        .filter_map(|i| i["subject"].as_str().map(str::to_string))
        .collect();
    let body = html! {
        h2 { "Sources" }
        p.muted { "Since this server started. Skew: how far a batch's newest event time is from its arrival (the sender's clock, 10.6). Silence: time since the last batch; an open silent-source incident marks it (the threshold is learned per source, or set in [review] expected_sources)." }
        table.grid.sortable #sources {
            thead { tr {
                th scope="col" { "Endpoint" } th scope="col" { "Sender" } th scope="col" { "Events" } th scope="col" { "Quarantined" }
                th scope="col" { "Rate /s" } th scope="col" { "Last event" } th scope="col" { "Last batch" } th scope="col" { "Skew" } th scope="col" { "Silence" }
            } }
            tbody {
                @for x in &src {
                    @let recv = ns(&x["last_received"]);
                    @let skew = match (recv, ns(&x["last_batch_event_time"])) { (Some(r), Some(e)) => Some(r - e), _ => None };
                    @let silent = recv.map(|r| now - r);
                    tr {
                        td { (s(x, "endpoint")) }
                        td { (s(x, "sender")) }
                        td data-sort=(x["events"].as_u64().unwrap_or(0)) { (x["events"].as_u64().unwrap_or(0)) }
                        td data-sort=(x["quarantined"].as_u64().unwrap_or(0)) { (x["quarantined"].as_u64().unwrap_or(0)) }
                        td { (format!("{:.1}", x["rate_per_second"].as_f64().unwrap_or(0.0))) }
                        td { (ts_text(&x["last_event_time"])) }
                        td { (ts_text(&x["last_received"])) }
                        td { @if let Some(k) = skew { (secs(k)) } }
                        td {
                            @if let Some(d) = silent {
                                (secs(d))
                                @if silent_now.iter().any(|n| n == s(x, "sender") || n == s(x, "endpoint") || n == &format!("{}/{}", s(x, "endpoint"), s(x, "sender"))) { " " (badge("silent")) }
                            }
                        }
                    }
                }
            }
        }
        @if src.is_empty() { p.muted { "No source has sent anything since the start." } }
        h2 { "Control failures" }
        @match &controls {
            Err(e) => (html::error_box(&e.message)),
            Ok(v) => {
                @let list = v.as_array().cloned().unwrap_or_default();
                @if list.is_empty() { p { (badge("ok")) " No control failure has been recorded." } }
                @else {
                    table.grid #controls {
                        thead { tr {
                            th scope="col" { "Incident" } th scope="col" { "Control" } th scope="col" { "State" } th scope="col" { "Start" }
                            th scope="col" { "End" } th scope="col" { "Occurrences" } th scope="col" { "Cause" } th scope="col" { "Remediation" }
                        } }
                        tbody {
                            @for i in &list {
                                @let id = i["id"].as_i64().unwrap_or(0);
                                tr {
                                    td { a href={"/ui/alerts/" (id)} { (id) } " " (s(i, "title")) }
                                    td { (s(i, "control")) @if let Some(sub) = i["subject"].as_str() { " (" (sub) ")" } }
                                    td { (badge(s(i, "state"))) }
                                    td { (ts_text(&i["start"])) }
                                    td { (ts_text(&i["end"])) }
                                    td { (i["occurrences"].as_u64().unwrap_or(0)) }
                                    td { (s(i, "cause")) }
                                    td {
                                        (s(i, "remediation"))
                                        @if i["closed_by"].is_string() { span.muted { " — " (s(i, "closed_by")) } }
                                        @if s(i, "state") != "closed" && c.may(Permission::Resolve) {
                                            form.inline method="post" action={"/ui/controls/" (id) "/note"} {
                                                (csrf(&c.session.csrf))
                                                label { span.sr { "Remediation note" } input name="note" required size="24" placeholder="what was done"; }
                                                button type="submit" { "Close" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    ok(&c, "/ui/sources", "Sources & controls", body)
}

/// `POST /ui/controls/{id}/note` (reviewer): close an incident with its remediation.
pub async fn note(Path(id): Path<String>, Posted { ui, c, form: f }: Posted) -> Response {
    let path = format!("/v1/controls/{}/note", crate::api::enc(&id));
    match c
        .api
        .json(
            Method::POST,
            &path,
            Some(json!({"note": param(&f, "note")})),
        )
        .await
    {
        Ok(_) => done(
            &ui,
            &c,
            "/ui/sources",
            format!("Incident {id} closed with its remediation note."),
        ),
        Err(e) => api_error(&c, "/ui/sources", "Sources & controls", &e),
    }
}
