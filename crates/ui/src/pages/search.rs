//! `/ui/search`: the KQL / SQL editor over `POST /v1/query`. Everything is in the URL (query,
//! language, time range, page, sort), so the address is the permalink. Results: a grid with
//! paging and column sort, a chart for `render`, CSV / JSON downloads of every row (streamed).

use super::{ok, param, Params};
use crate::api::{qs, ApiError, Client};
use crate::chart::{self, Column};
use crate::html::{self, cell};
use crate::{respond, Page};
use axum::body::Body;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use maud::{html, Markup};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// Rows a page of the grid shows.
const PAGE_ROWS: usize = 100;
/// Rows the grid reads at most (the downloads have every row).
const GRID_ROWS: u64 = 10_000;

/// The time ranges of the picker: (value, label).
const RANGES: &[(&str, &str)] = &[
    ("15m", "Last 15 minutes"),
    ("1h", "Last hour"),
    ("4h", "Last 4 hours"),
    ("24h", "Last 24 hours"),
    ("7d", "Last 7 days"),
    ("30d", "Last 30 days"),
    ("90d", "Last 90 days"),
    ("all", "All time"),
    ("custom", "Between (UTC)…"),
];

/// One statement's result.
pub struct Table {
    /// Columns (name, KQL type).
    pub columns: Vec<Column>,
    /// Rows.
    pub rows: Vec<Map<String, Value>>,
    /// The `render` hint.
    pub render: Option<String>,
}

/// A whole answer.
pub struct Answer {
    /// One table per statement.
    pub tables: Vec<Table>,
    /// The `@summary` line.
    pub summary: Value,
}

/// The request the page's parameters make: (body, description).
fn request(q: &HashMap<String, String>, limit: Option<u64>) -> Result<Value, String> {
    let text = param(q, "q");
    let lang = match param(q, "lang") {
        "" | "kql" => "kql",
        "sql" => "sql",
        other => return Err(format!("language {other:?}: kql or sql")),
    };
    let mut body = json!({ lang: text });
    match param(q, "range") {
        "all" => {}
        "custom" => {
            let t = |k: &str| -> Result<Option<String>, String> {
                let v = param(q, k);
                if v.is_empty() {
                    return Ok(None);
                }
                // a datetime-local input gives 2026-12-03T07:00 (UTC here)
                let full = match v.len() {
                    16 => format!("{v}:00Z"),
                    19 => format!("{v}Z"),
                    _ => v.to_string(),
                };
                trailwarden_model::Timestamp::parse(&full)
                    .map(|t| Some(t.to_rfc3339()))
                    .map_err(|e| format!("{k}: {e}"))
            };
            if let Some(f) = t("from")? {
                body["since"] = json!(f);
            }
            if let Some(u) = t("to")? {
                body["until"] = json!(u);
            }
        }
        "" => body["since"] = json!("24h"),
        r if RANGES.iter().any(|(v, _)| *v == r) => body["since"] = json!(r),
        other => return Err(format!("time range {other:?} is not one of the picker's")),
    }
    if let Some(l) = limit {
        body["limit"] = json!(l);
    }
    Ok(body)
}

/// Run a query through the API and read its JSON lines.
pub async fn run(api: &Client, body: Value) -> Result<Answer, ApiError> {
    let (bytes, _) = api.bytes(Method::POST, "/v1/query", Some(body)).await?;
    let mut tables: Vec<Table> = Vec::new();
    let mut summary = Value::Null;
    for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(line) else {
            continue;
        };
        if let Some(cols) = m.get("@columns").and_then(|c| c.as_array()) {
            tables.push(Table {
                columns: cols
                    .iter()
                    .map(|c| {
                        (
                            html::s(c, "name").to_string(),
                            html::s(c, "type").to_string(),
                        )
                    })
                    .collect(),
                rows: Vec::new(),
                render: m
                    .get("@render")
                    .and_then(|r| r.as_str())
                    .map(str::to_string),
            });
        } else if let Some(s) = m.get("@summary") {
            summary = s.clone();
        } else if let Some(t) = tables.last_mut() {
            t.rows.push(m);
        }
    }
    Ok(Answer { tables, summary })
}

fn compare(a: &Value, b: &Value) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Greater,
        (_, Value::Null) => Ordering::Less,
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (x, y) => x.to_string().cmp(&y.to_string()),
    }
}

/// The search page.
pub async fn page(Page { ui: _, c }: Page, axum::extract::Query(q): Params) -> Response {
    let tables = c.api.get("/v1/tables").await.unwrap_or(Value::Null);
    let text = param(&q, "q");
    let mut status = StatusCode::OK;
    let result: Option<Result<Answer, String>> = if text.is_empty() {
        None
    } else {
        Some(match request(&q, Some(GRID_ROWS)) {
            Err(e) => Err(e),
            Ok(body) => run(&c.api, body).await.map_err(|e| {
                status = match e.status {
                    StatusCode::FORBIDDEN => StatusCode::FORBIDDEN,
                    s if s.is_client_error() => StatusCode::BAD_REQUEST,
                    _ => StatusCode::BAD_GATEWAY,
                };
                if e.status == StatusCode::FORBIDDEN {
                    format!(
                        "Your role ({}) may not run queries: {}",
                        c.session.principal.role.as_str(),
                        e.message
                    )
                } else {
                    e.message
                }
            }),
        })
    };
    if matches!(result, Some(Err(_))) && status == StatusCode::OK {
        status = StatusCode::BAD_REQUEST;
    }
    let body = html! {
        div.search {
            (editor(&q, &tables))
            section.results aria-live="polite" {
                @match &result {
                    None => p.muted { "Write a query and run it (Ctrl+Enter). Example: " code { "events | summarize count() by bin(TimeGenerated, 1h) | render timechart" } },
                    Some(Err(e)) => (html::error_box(e)),
                    Some(Ok(a)) => (results(&q, a)),
                }
            }
        }
    };
    let mut r = ok(&c, "/ui/search", "Search", body);
    *r.status_mut() = status;
    r
}

fn editor(q: &HashMap<String, String>, tables: &Value) -> Markup {
    let range = match param(q, "range") {
        "" => "24h",
        r => r,
    };
    html! {
        form.editor method="get" action="/ui/search" {
            label for="q" { "Query" }
            textarea #q name="q" rows="6" spellcheck="false" autocomplete="off" required
                aria-describedby="q-help" { (param(q, "q")) }
            p #q-help .muted { "KQL (Log Analytics dialect) or SQL; Ctrl+Enter runs it. The tables and their columns are listed under the editor." }
            div.row {
                label { "Language "
                    select name="lang" {
                        option value="kql" selected[param(q, "lang") != "sql"] { "KQL" }
                        option value="sql" selected[param(q, "lang") == "sql"] { "SQL" }
                    }
                }
                label { "Time range "
                    select #range name="range" {
                        @for (v, l) in RANGES {
                            option value=(v) selected[*v == range] { (l) }
                        }
                    }
                }
                label { "From " input type="datetime-local" name="from" step="1" value=(param(q, "from")); }
                label { "To " input type="datetime-local" name="to" step="1" value=(param(q, "to")); }
                button #run type="submit" { "Run" }
            }
        }
        @if let Some(list) = tables.as_array() {
            details.tables {
                summary { "Tables (" (list.len()) ")" }
                @for t in list {
                    details {
                        summary { code.tbl { (html::s(t, "name")) } }
                        p.muted { (html::s(t, "description")) }
                        ul.cols {
                            @for col in t["columns"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
                                li title=(html::s(col, "description")) { code { (html::s(col, "name")) } " " span.muted { (html::s(col, "type")) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn link(q: &HashMap<String, String>, over: &[(&str, &str)], path: &str) -> String {
    let keys = [
        "q", "lang", "range", "from", "to", "sort", "dir", "page", "t", "format",
    ];
    let pairs: Vec<(&str, &str)> = keys
        .iter()
        .map(|k| {
            let v = over
                .iter()
                .find(|(ok, _)| ok == k)
                .map(|(_, v)| *v)
                .unwrap_or_else(|| param(q, k));
            (*k, v)
        })
        .collect();
    format!("{path}{}", qs(&pairs))
}

fn results(q: &HashMap<String, String>, a: &Answer) -> Markup {
    let s = &a.summary;
    let rows = s["rows"].as_u64().unwrap_or(0);
    let truncated = s["truncated"].as_bool().unwrap_or(false);
    html! {
        div.summary {
            span { strong #rowcount { (rows) } " rows" }
            @if truncated { " " span.badge.warn { "first " (rows) " shown; the downloads have all" } }
            " · " (s["elapsed_ms"].as_u64().unwrap_or(0)) " ms"
            @if let Some(i) = s["access_record"].as_u64() { " · recorded as ledger record " (i) }
            " · "
            a.button #csv href=(link(q, &[("format", "csv"), ("page", ""), ("sort", ""), ("dir", ""), ("t", "")], "/ui/search/export")) { "Download CSV" }
            " "
            a.button #json href=(link(q, &[("format", "json"), ("page", ""), ("sort", ""), ("dir", ""), ("t", "")], "/ui/search/export")) { "Download JSON" }
            " "
            a #permalink href=(link(q, &[], "/ui/search")) { "Permalink" }
        }
        @if let Some(e) = s["error"].as_str() { (html::error_box(e)) }
        @for (ti, t) in a.tables.iter().enumerate() {
            @if a.tables.len() > 1 { h2 { "Statement " (ti + 1) } }
            @if let Some(kind) = &t.render {
                figure.chart {
                    @match chart::svg(kind, &t.columns, &t.rows) {
                        Ok(svg) => (html::trusted(svg)),
                        Err(e) => p.muted { (e) },
                    }
                    figcaption { "render " (kind) }
                }
            }
            (grid(q, t, ti))
        }
    }
}

fn grid(q: &HashMap<String, String>, t: &Table, ti: usize) -> Markup {
    let this = param(q, "t").parse::<usize>().unwrap_or(0) == ti;
    let sort = if this { param(q, "sort") } else { "" };
    let desc = param(q, "dir") == "desc";
    let mut order: Vec<usize> = (0..t.rows.len()).collect();
    if t.columns.iter().any(|(n, _)| n == sort) {
        order.sort_by(|&a, &b| {
            let o = compare(
                t.rows[a].get(sort).unwrap_or(&Value::Null),
                t.rows[b].get(sort).unwrap_or(&Value::Null),
            );
            if desc {
                o.reverse()
            } else {
                o
            }
        });
    }
    let pages = t.rows.len().div_ceil(PAGE_ROWS).max(1);
    let page = if this {
        param(q, "page")
            .parse::<usize>()
            .unwrap_or(1)
            .clamp(1, pages)
    } else {
        1
    };
    let ti_s = ti.to_string();
    html! {
        div.gridwrap {
            table.grid {
                thead { tr {
                    @for (name, ty) in &t.columns {
                        @let state = if sort == name { if desc { "descending" } else { "ascending" } } else { "none" };
                        @let next = if sort == name && !desc { "desc" } else { "asc" };
                        th scope="col" aria-sort=(state) {
                            a.sort href=(link(q, &[("sort", name), ("dir", next), ("page", "1"), ("t", &ti_s)], "/ui/search")) {
                                (name) span.muted { " " (ty) }
                                @match state { "ascending" => " ▲", "descending" => " ▼", _ => "" }
                            }
                        }
                    }
                } }
                tbody {
                    @for &i in order.iter().skip((page - 1) * PAGE_ROWS).take(PAGE_ROWS) {
                        tr {
                            @for (name, ty) in &t.columns {
                                @let v = t.rows[i].get(name).unwrap_or(&Value::Null);
                                @if ty == "datetime" && v.is_string() { td { (html::ts_text(v)) } }
                                @else if ty == "dynamic" { td { code { (cell(v)) } } }
                                @else { td { (cell(v)) } }
                            }
                        }
                    }
                }
            }
        }
        @if pages > 1 {
            nav.pager aria-label="Pages" {
                @if page > 1 { a rel="prev" href=(link(q, &[("page", &(page - 1).to_string()), ("t", &ti_s)], "/ui/search")) { "← Previous" } }
                span { "Page " (page) " of " (pages) }
                @if page < pages { a rel="next" href=(link(q, &[("page", &(page + 1).to_string()), ("t", &ti_s)], "/ui/search")) { "Next →" } }
            }
        }
    }
}

/// A CSV cell: RFC 4180 quoting, and a cell a spreadsheet would run as a formula is neutralised
/// with a leading `'` (OWASP "CSV Injection").
pub fn csv_cell(v: &Value) -> String {
    let mut s = cell(v);
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        s.insert(0, '\'');
    }
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// Turns the API's JSON lines into CSV or JSON-lines rows as they arrive.
struct Convert {
    csv: bool,
    buf: Vec<u8>,
    columns: Vec<String>,
}

impl Convert {
    fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(nl) = self.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=nl).collect();
            self.line(&line[..line.len() - 1], &mut out);
        }
        out
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<u8>) {
        let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(line) else {
            return;
        };
        if let Some(cols) = m.get("@columns").and_then(|c| c.as_array()) {
            self.columns = cols
                .iter()
                .map(|c| html::s(c, "name").to_string())
                .collect();
            if self.csv {
                let head: Vec<String> = self.columns.iter().map(|c| csv_cell(&json!(c))).collect();
                out.extend_from_slice(head.join(",").as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        } else if let Some(s) = m.get("@summary") {
            // a query stopped half-way is said in the file, not left looking complete
            if let Some(e) = s["error"].as_str() {
                let msg = format!("# the query stopped: {e}");
                if self.csv {
                    out.extend_from_slice(csv_cell(&json!(msg)).as_bytes());
                    out.extend_from_slice(b"\r\n");
                } else {
                    out.extend_from_slice(json!({"@error": e}).to_string().as_bytes());
                    out.push(b'\n');
                }
            }
        } else if self.csv {
            let row: Vec<String> = self
                .columns
                .iter()
                .map(|c| csv_cell(m.get(c).unwrap_or(&Value::Null)))
                .collect();
            out.extend_from_slice(row.join(",").as_bytes());
            out.extend_from_slice(b"\r\n");
        } else {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
    }
}

/// `GET /ui/search/export?format=csv|json&…`: every row of the query (up to the server's
/// `query.max_rows`), streamed as it is read.
pub async fn export(Page { ui: _, c }: Page, axum::extract::Query(q): Params) -> Response {
    let csv = param(&q, "format") != "json";
    let fail = |code: StatusCode, msg: &str| {
        respond(
            code,
            html::page(&c.viewer(), "/ui/search", "Download", html::error_box(msg)),
        )
    };
    if param(&q, "q").is_empty() {
        return fail(StatusCode::BAD_REQUEST, "No query to download.");
    }
    let body = match request(&q, None) {
        Ok(b) => b,
        Err(e) => return fail(StatusCode::BAD_REQUEST, &e),
    };
    let resp = match c.api.send(Method::POST, "/v1/query", Some(body)).await {
        Ok(r) => r,
        Err(e) => return fail(StatusCode::BAD_GATEWAY, &e.message),
    };
    if !resp.status().is_success() {
        let status = resp.status();
        let bytes = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .map(|b| b.to_bytes().to_vec())
            .unwrap_or_default();
        let msg = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_default();
        return fail(status, &msg);
    }
    let mut conv = Convert {
        csv,
        buf: Vec::new(),
        columns: Vec::new(),
    };
    let stream = resp
        .into_body()
        .into_data_stream()
        .map(move |chunk| chunk.map(|b| axum::body::Bytes::from(conv.feed(&b))));
    let stamp = trailwarden_model::Timestamp::now()
        .to_rfc3339()
        .replace(':', "");
    let (ctype, ext) = if csv {
        ("text/csv; charset=utf-8", "csv")
    } else {
        ("application/x-ndjson", "jsonl")
    };
    let mut r = Body::from_stream(stream).into_response();
    let hs = r.headers_mut();
    hs.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"trailwarden-query-{stamp}.{ext}\""
    )) {
        hs.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_and_neutralises_formulas() {
        assert_eq!(csv_cell(&json!("plain")), "plain");
        assert_eq!(csv_cell(&json!("a,b")), "\"a,b\"");
        assert_eq!(csv_cell(&json!("say \"hi\"")), "\"say \"\"hi\"\"\"");
        assert_eq!(
            csv_cell(&json!("=HYPERLINK(\"x\")")),
            "\"'=HYPERLINK(\"\"x\"\")\""
        );
        assert_eq!(csv_cell(&json!("@SUM(A1)")), "'@SUM(A1)");
        assert_eq!(csv_cell(&json!(-3)), "'-3");
        assert_eq!(csv_cell(&Value::Null), "");
    }

    #[test]
    fn convert_streams_rows_across_chunk_boundaries_and_keeps_a_late_error() {
        let mut c = Convert {
            csv: true,
            buf: Vec::new(),
            columns: Vec::new(),
        };
        let text = "{\"@columns\":[{\"name\":\"user\",\"type\":\"string\"},{\"name\":\"n\",\"type\":\"long\"}],\"@statement\":0}\n{\"user\":\"alice\",\"n\":2}\n{\"user\":\"b,ob\",\"n\":1}\n{\"@summary\":{\"rows\":2,\"error\":\"timeout\"}}\n";
        let mut out = Vec::new();
        for ch in text.as_bytes().chunks(7) {
            out.extend(c.feed(ch));
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "user,n\r\nalice,2\r\n\"b,ob\",1\r\n# the query stopped: timeout\r\n"
        );
    }

    #[test]
    fn the_picker_and_custom_ranges_become_since_and_until() {
        let q: HashMap<String, String> = [
            ("q", "events"),
            ("range", "custom"),
            ("from", "2026-12-01T10:00"),
            ("to", ""),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let b = request(&q, Some(10)).unwrap();
        assert_eq!(
            b,
            json!({"kql": "events", "since": "2026-12-01T10:00:00Z", "limit": 10})
        );
        let mut q2 = q.clone();
        q2.insert("range".into(), "7d".into());
        assert_eq!(request(&q2, None).unwrap()["since"], "7d");
        q2.insert("range".into(), "1y; drop".into());
        assert!(request(&q2, None).is_err());
    }
}
