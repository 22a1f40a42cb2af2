//! `/ui/alerts`: the queue with its filters, an alert's page (summary, history, evidence events
//! with their ledger index and inclusion proof, deliveries) and the triage forms (acknowledge,
//! assign, resolve with a note). The forms a role may not use are not shown; one posted anyway
//! is refused by the API (403) and recorded.

use super::{api_error, ok, param, Params};
use crate::api::qs;
use crate::html::{self, badge, csrf, level, s, ts, ts_text};
use crate::{done, Page, Posted};
use axum::extract::Path;
use axum::http::Method;
use axum::response::Response;
use maud::html;
use serde_json::{json, Value};
use trailwarden_server::auth::Permission;

const STATUSES: &[(&str, &str)] = &[
    ("open", "Open (new or acknowledged)"),
    ("new", "New"),
    ("acknowledged", "Acknowledged"),
    ("resolved", "Resolved"),
    ("false-positive", "False positive"),
    ("all", "All"),
];

const LEVELS: &[&str] = &["", "informational", "low", "medium", "high", "critical"];

/// The queue.
pub async fn list(Page { ui: _, c }: Page, axum::extract::Query(q): Params) -> Response {
    let status = match param(&q, "status") {
        "" | "open" => "new,acknowledged",
        "all" => "",
        other => other,
    };
    let path = format!(
        "/v1/alerts{}",
        qs(&[
            ("status", status),
            ("level", param(&q, "level")),
            ("rule_id", param(&q, "rule")),
            ("namespace", param(&q, "namespace")),
            ("assignee", param(&q, "assignee")),
            ("limit", "1000"),
        ])
    );
    let list = match c.api.get(&path).await {
        Ok(v) => v,
        Err(e) => return api_error(&c, "/ui/alerts", "Alerts", &e),
    };
    let list = list.as_array().cloned().unwrap_or_default();
    let st = match param(&q, "status") {
        "" => "open",
        x => x,
    };
    let now = trailwarden_model::Timestamp::now().0;
    let body = html! {
        form.filters method="get" action="/ui/alerts" aria-label="Filters" {
            label { "Status "
                select name="status" {
                    @for (v, l) in STATUSES { option value=(v) selected[*v == st] { (l) } }
                }
            }
            label { "Level at least "
                select name="level" {
                    @for l in LEVELS { option value=(l) selected[*l == param(&q, "level")] { @if l.is_empty() { "any" } @else { (l) } } }
                }
            }
            label { "Rule id " input name="rule" value=(param(&q, "rule")) size="18"; }
            label { "Namespace " input name="namespace" value=(param(&q, "namespace")) size="14"; }
            label { "Assignee " input name="assignee" value=(param(&q, "assignee")) size="12" placeholder="- for none"; }
            button type="submit" { "Filter" }
        }
        p.muted { (list.len()) " alerts" @if list.len() >= 1000 { " (the newest 1000)" } }
        div.gridwrap {
            table.grid.sortable #alerts {
                thead { tr {
                    th scope="col" { "Id" } th scope="col" { "Level" } th scope="col" { "Title" }
                    th scope="col" { "Status" } th scope="col" { "Namespace" } th scope="col" { "Assignee" }
                    th scope="col" { "Events" } th scope="col" { "Last seen" } th scope="col" { "Due" }
                } }
                tbody {
                    @for a in &list {
                        @let id = a["id"].as_i64().unwrap_or(0);
                        tr {
                            td data-sort=(id) { a href={"/ui/alerts/" (id)} { (id) } }
                            td data-sort=(html::level_rank(s(a, "level"))) { (level(s(a, "level"))) }
                            td { a href={"/ui/alerts/" (id)} { (s(a, "title")) } }
                            td { (badge(s(a, "status"))) }
                            td { (s(a, "namespace")) }
                            td { (s(a, "assignee")) }
                            td data-sort=(a["count"].as_u64().unwrap_or(0)) { (a["count"].as_u64().unwrap_or(0)) }
                            td data-sort=(a["last_seen"].as_i64().unwrap_or(0)) { (ts_text(&a["last_seen"])) }
                            td data-sort=(a["due_at"].as_i64().unwrap_or(0)) {
                                (ts_text(&a["due_at"]))
                                @if a["due_at"].as_i64().is_some_and(|d| d < now) && matches!(s(a, "status"), "new" | "acknowledged") { " " (badge("overdue")) }
                            }
                        }
                    }
                }
            }
        }
    };
    ok(&c, "/ui/alerts", "Alerts", body)
}

/// One alert.
pub async fn show(Page { ui: _, c }: Page, Path(id): Path<String>) -> Response {
    let a = match c
        .api
        .get(&format!("/v1/alerts/{}", crate::api::enc(&id)))
        .await
    {
        Ok(v) => v,
        Err(e) => return api_error(&c, "/ui/alerts", &format!("Alert {id}"), &e),
    };
    let id = a["id"].as_i64().unwrap_or(0);
    let evidence: Vec<u64> = a["evidence"]
        .as_array()
        .map(|v| v.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    // the evidence events themselves are audit records: an analyst's read, recorded as a query
    let events = if evidence.is_empty() || !c.may(Permission::Query) {
        None
    } else {
        let list = evidence
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let body = json!({
            "kql": format!("records | where ledger_index in ({list}) | project ledger_index, TimeGenerated, kind, source, raw | order by ledger_index asc"),
        });
        Some(super::search::run(&c.api, body).await)
    };
    let deliveries = c.api.get(&format!("/v1/deliveries?alert_id={id}")).await;
    let open = matches!(s(&a, "status"), "new" | "acknowledged");
    let body = html! {
        div.detail {
            section aria-labelledby="sum" {
                h2 #sum { "Summary" }
                dl.facts {
                    dt { "Title" } dd { (s(&a, "title")) }
                    dt { "Level" } dd { (level(s(&a, "level"))) }
                    dt { "Status" } dd #status { (badge(s(&a, "status"))) }
                    dt { "Rule" } dd { code { (s(&a, "rule_id")) } }
                    dt { "Summary" } dd { (s(&a, "summary")) }
                    dt { "Namespace" } dd { (s(&a, "namespace")) }
                    dt { "Source" } dd { (s(&a, "source")) }
                    dt { "Events" } dd { (a["count"].as_u64().unwrap_or(0)) " in " (a["detections"].as_u64().unwrap_or(0)) " detections" }
                    dt { "First seen" } dd { (ts_text(&a["first_seen"])) }
                    dt { "Last seen" } dd { (ts_text(&a["last_seen"])) }
                    dt { "Raised" } dd { (ts_text(&a["created_at"])) }
                    dt { "Assignee" } dd #assignee { (s(&a, "assignee")) }
                    dt { "Due" } dd { (ts_text(&a["due_at"])) }
                    dt { "Tags" } dd { @for t in a["tags"].as_array().map(Vec::as_slice).unwrap_or(&[]) { span.tag { (html::cell(t)) } " " } }
                }
            }
            section aria-labelledby="act" {
                h2 #act { "Triage" }
                @if !open { p.muted { "This alert is closed." } }
                @if open && c.may(Permission::Acknowledge) {
                    @if s(&a, "status") == "new" {
                        form.action method="post" action={"/ui/alerts/" (id) "/ack"} {
                            (csrf(&c.session.csrf))
                            label { "Note " input name="note" size="40" placeholder="looking into it"; }
                            button #ack type="submit" { "Acknowledge" }
                        }
                    }
                    form.action method="post" action={"/ui/alerts/" (id) "/assign"} {
                        (csrf(&c.session.csrf))
                        label { "Assignee " input name="assignee" required value=(s(&a, "assignee")) size="16"; }
                        label { "Due " input name="due" placeholder="48h or RFC 3339" size="16"; }
                        button type="submit" { "Assign" }
                    }
                }
                @if open && c.may(Permission::Resolve) {
                    form.action method="post" action={"/ui/alerts/" (id) "/resolve"} {
                        (csrf(&c.session.csrf))
                        label { "Classification "
                            select name="classification" {
                                option value="true-positive" { "True positive (resolved)" }
                                option value="benign" { "Benign positive (resolved)" }
                                option value="false-positive" { "False positive" }
                            }
                        }
                        label { "Note (required) " input name="note" required size="40"; }
                        button type="submit" { "Resolve" }
                    }
                }
                @if open && !c.may(Permission::Acknowledge) {
                    p.muted { "Your role (" (c.session.principal.role.as_str()) ") reads alerts; an analyst acknowledges and assigns them, a reviewer resolves them." }
                }
            }
            section aria-labelledby="hist" {
                h2 #hist { "History" }
                table.grid {
                    thead { tr { th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "From" } th scope="col" { "To" } th scope="col" { "Note" } } }
                    tbody #history {
                        @for ch in a["history"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
                            tr {
                                td { (ts(ch["at"].as_i64().unwrap_or(0))) }
                                td { (s(ch, "actor")) }
                                td { (badge(s(ch, "from"))) }
                                td { (badge(s(ch, "to"))) }
                                td { (s(ch, "note")) }
                            }
                        }
                    }
                }
            }
            section aria-labelledby="ev" {
                h2 #ev { "Evidence" }
                @if a["evidence_truncated"].as_bool().unwrap_or(false) { p.muted { "More events counted than kept as evidence; the first ones are listed." } }
                @match &events {
                    None if evidence.is_empty() => p.muted { "No events (a control or scheduled alert)." },
                    None => {
                        p.muted { "Your role may not read the events themselves; their ledger indexes: " (evidence.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")) }
                    },
                    Some(Err(e)) => (html::error_box(&e.message)),
                    Some(Ok(ans)) => {
                        @for t in &ans.tables {
                            @for r in &t.rows {
                                @let idx = r.get("ledger_index").and_then(Value::as_u64).unwrap_or(0);
                                article.event {
                                    header {
                                        "Ledger record " strong { (idx) } " · " (html::ts_text(r.get("TimeGenerated").unwrap_or(&Value::Null)))
                                        " · " (html::cell(r.get("source").unwrap_or(&Value::Null)))
                                        " · " a.proof href={"/ui/proofs/inclusion/" (idx)} download { "inclusion proof" }
                                    }
                                    @let raw = r.get("raw").and_then(Value::as_str).unwrap_or("");
                                    @match serde_json::from_str::<Value>(raw) {
                                        Ok(v) => (html::json_block(&v)),
                                        Err(_) => pre.json { (raw) },
                                    }
                                }
                            }
                        }
                    }
                }
            }
            section aria-labelledby="dl" {
                h2 #dl { "Deliveries" }
                @match &deliveries {
                    Err(e) => (html::error_box(&e.message)),
                    Ok(v) => {
                        @let list = v.as_array().cloned().unwrap_or_default();
                        @if list.is_empty() { p.muted { "None (no route matched, or delivery is off)." } }
                        @else {
                            table.grid {
                                thead { tr { th scope="col" { "Sink" } th scope="col" { "Event" } th scope="col" { "State" } th scope="col" { "Attempts" } th scope="col" { "Delivered" } th scope="col" { "Last error" } th { span.sr { "Action" } } } }
                                tbody {
                                    @for d in &list {
                                        tr {
                                            td { (s(d, "sink")) }
                                            td { (s(d, "event")) " v" (d["version"].as_i64().unwrap_or(0)) }
                                            td { (badge(s(d, "state"))) }
                                            td { (d["attempts"].as_u64().unwrap_or(0)) }
                                            td { (ts_text(&d["delivered_at"])) }
                                            td { (s(d, "last_error")) }
                                            td {
                                                @if s(d, "state") == "dead" && c.may(Permission::Administer) {
                                                    form.inline method="post" action={"/ui/deliveries/" (d["id"].as_i64().unwrap_or(0)) "/retry"} {
                                                        (csrf(&c.session.csrf))
                                                        input type="hidden" name="alert" value=(id);
                                                        button type="submit" { "Retry" }
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
            }
        }
    };
    ok(
        &c,
        "/ui/alerts",
        &format!("Alert {id}: {}", s(&a, "title")),
        body,
    )
}

/// `POST /ui/alerts/{id}/{ack|assign|resolve}`.
pub async fn change(
    Path((id, action)): Path<(String, String)>,
    Posted { ui, c, form: f }: Posted,
) -> Response {
    let id = crate::api::enc(&id);
    let note = param(&f, "note").to_string();
    let (path, body, what) = match action.as_str() {
        "ack" => (
            format!("/v1/alerts/{id}/ack"),
            json!({"note": note}),
            "Acknowledged",
        ),
        "resolve" => {
            let fp = param(&f, "classification") == "false-positive";
            let note = match param(&f, "classification") {
                "benign" => format!("benign positive: {note}"),
                _ => note,
            };
            (
                format!("/v1/alerts/{id}/resolve"),
                json!({"note": note, "false_positive": fp}),
                if fp {
                    "Marked a false positive"
                } else {
                    "Resolved"
                },
            )
        }
        "assign" => {
            let mut b = json!({"assignee": param(&f, "assignee")});
            if !param(&f, "due").is_empty() {
                b["due"] = json!(param(&f, "due"));
            }
            (format!("/v1/alerts/{id}/assign"), b, "Assigned")
        }
        other => {
            return api_error(
                &c,
                "/ui/alerts",
                "Alert",
                &crate::api::ApiError {
                    status: axum::http::StatusCode::NOT_FOUND,
                    message: format!("no action {other:?} (ack, assign, resolve)"),
                },
            )
        }
    };
    match c.api.json(Method::POST, &path, Some(body)).await {
        Ok(v) => {
            let at = v["ledger_index"]
                .as_u64()
                .map(|i| format!(" (ledger record {i})"))
                .unwrap_or_default();
            done(&ui, &c, &format!("/ui/alerts/{id}"), format!("{what}{at}."))
        }
        Err(e) => api_error(&c, "/ui/alerts", &format!("Alert {id}"), &e),
    }
}

/// `POST /ui/deliveries/{id}/retry` (admin): replay a dead-lettered delivery.
pub async fn retry(Path(id): Path<String>, Posted { ui, c, form: f }: Posted) -> Response {
    let path = format!("/v1/deliveries/{}/retry", crate::api::enc(&id));
    match c.api.json(Method::POST, &path, None).await {
        Ok(_) => {
            let back = match param(&f, "alert").parse::<i64>() {
                Ok(a) => format!("/ui/alerts/{a}"),
                Err(_) => "/ui/alerts".into(),
            };
            done(&ui, &c, &back, format!("Delivery {id} queued again."))
        }
        Err(e) => api_error(&c, "/ui/alerts", "Delivery", &e),
    }
}
