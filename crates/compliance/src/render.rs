//! Reviews and reports as self-contained HTML (inline CSS, no scripts, printable) and CSV.

use crate::review::Review;
use crate::store::ReviewRow;
use std::fmt::Write as _;

/// Escape text for HTML.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// The page's style: readable on screen, black on white in print.
pub const STYLE: &str = "body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1100px;color:#1b1b1b;padding:0 1em}\
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;margin-top:1.8em;border-bottom:1px solid #ccc;padding-bottom:.2em}\
table{border-collapse:collapse;width:100%;margin:.5em 0}th,td{border:1px solid #ddd;padding:.3em .5em;text-align:left;vertical-align:top}\
th{background:#f3f3f3}td.n{text-align:right;font-variant-numeric:tabular-nums}code{font-size:.92em;word-break:break-all}\
.meta{color:#555}.sev-critical,.sev-high,.gap{color:#a40000;font-weight:600}.sev-medium,.attest{color:#8a5a00;font-weight:600}.met,.ok{color:#0a6b2b;font-weight:600}\
.box{border:1px solid #ccc;border-radius:4px;padding:.6em 1em;margin:1em 0;background:#fafafa}\
@media print{body{margin:0;max-width:none}.box{background:none}a{color:inherit}}";

fn table(o: &mut String, head: &[&str], rows: &[Vec<String>]) {
    if rows.is_empty() {
        o.push_str("<p class=meta>None.</p>\n");
        return;
    }
    o.push_str("<table><tr>");
    for h in head {
        let _ = write!(o, "<th>{}</th>", esc(h));
    }
    o.push_str("</tr>\n");
    for r in rows {
        o.push_str("<tr>");
        for c in r {
            let numeric = !c.is_empty() && c.chars().all(|x| x.is_ascii_digit() || x == '-');
            if numeric {
                let _ = write!(o, "<td class=n>{}</td>", esc(c));
            } else {
                let _ = write!(o, "<td>{}</td>", esc(c));
            }
        }
        o.push_str("</tr>\n");
    }
    o.push_str("</table>\n");
}

/// The review as one HTML page, exceptions first.
pub fn review_html(r: &Review, row: Option<&ReviewRow>) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Review {id}</title><style>{STYLE}</style></head><body>\n\
         <h1>Log review {id}</h1>\n<p class=meta>PCI DSS 4.0.1 10.4.1 / 10.4.1.1 — period {s} to {e} (UTC offset {off}); generated {g} by {by}</p>\n",
        id = esc(&r.id),
        s = r.period.start_ts(),
        e = r.period.end_ts(),
        off = esc(&r.utc_offset),
        g = r.generated_at,
        by = esc(&r.generated_by),
    );
    o.push_str("<div class=box>");
    let _ = write!(o, "<div>Hash: <code>{}</code></div>", esc(&r.hash()));
    if let Some(row) = row {
        let _ = write!(
            o,
            "<div>Ledger record: <code>{}</code></div>",
            row.ledger_index
        );
        match &row.sign_off {
            Some(s) => {
                let _ = write!(
                    o,
                    "<div class=ok>Signed off by {} at {} (ledger record {}): {}</div>",
                    esc(&s.reviewer),
                    s.at,
                    s.ledger_index,
                    esc(&s.note)
                );
            }
            None => o.push_str("<div class=gap>Not signed off yet.</div>"),
        }
    }
    let v = &r.verification;
    let _ = write!(
        o,
        "<div>Verification: <span class={cls}>{st}</span> — {n} records checked, tree size {size}{fail}</div>",
        cls = if v.status == "ok" { "ok" } else { "gap" },
        st = esc(&v.status),
        n = v.records_checked,
        size = v.size,
        fail = v.first_failure.as_deref().map(|f| format!("; first failure: {}", esc(f))).unwrap_or_default(),
    );
    if let Some(c) = &v.checkpoint {
        let _ = write!(o, "<div>Checkpoint covered:<pre>{}</pre></div>", esc(c));
    }
    o.push_str("</div>\n");

    let _ = writeln!(o, "<h2>Exceptions ({})</h2>", r.exceptions.len());
    let rows: Vec<Vec<String>> = r
        .exceptions
        .iter()
        .map(|x| {
            vec![
                x.severity.clone(),
                x.kind.clone(),
                x.title.clone(),
                x.detail.clone(),
                x.refs.join(", "),
            ]
        })
        .collect();
    table(
        &mut o,
        &["severity", "kind", "what", "detail", "refs"],
        &rows,
    );

    o.push_str("<h2>Events per PCI DSS 10.2.1 category</h2>\n");
    let rows: Vec<Vec<String>> = r
        .categories
        .iter()
        .map(|c| {
            vec![
                c.requirement.clone(),
                c.title.clone(),
                c.total.to_string(),
                c.by_source
                    .iter()
                    .map(|(s, n)| format!("{s}: {n}"))
                    .collect::<Vec<_>>()
                    .join("; "),
            ]
        })
        .collect();
    table(
        &mut o,
        &["requirement", "category", "events", "per source"],
        &rows,
    );
    let rows: Vec<Vec<String>> = r
        .events_by_source
        .iter()
        .map(|(s, n)| vec![s.clone(), n.to_string()])
        .collect();
    o.push_str("<h2>Events per source</h2>\n");
    table(&mut o, &["source", "events"], &rows);

    o.push_str("<h2>Admin actions by identity (10.2.1.2)</h2>\n");
    let rows: Vec<Vec<String>> = r
        .admin_actions
        .iter()
        .map(|a| {
            vec![
                a.identity.clone(),
                a.count.to_string(),
                a.actions
                    .iter()
                    .map(|(k, n)| format!("{k}: {n}"))
                    .collect::<Vec<_>>()
                    .join("; "),
            ]
        })
        .collect();
    table(
        &mut o,
        &["identity", "events", "most frequent actions"],
        &rows,
    );

    let a = &r.audit_log_access;
    let _ = writeln!(o, "<h2>Access to audit logs (10.2.1.3)</h2>\n<p>{} read(s) through trailwarden, {} refused.</p>",
        a.reads, a.refused
    );
    let rows: Vec<Vec<String>> = a
        .by_subject
        .iter()
        .map(|(s, (ok, no))| vec![s.clone(), ok.to_string(), no.to_string()])
        .collect();
    table(&mut o, &["subject", "reads", "refused"], &rows);

    o.push_str("<h2>Alerts by level</h2>\n");
    let mut levels: Vec<&String> = r
        .alerts
        .raised
        .keys()
        .chain(r.alerts.open_at_end.keys())
        .chain(r.alerts.resolved.keys())
        .collect();
    levels.sort_by_key(|l| std::cmp::Reverse(trailwarden_alert::level_rank(l)));
    levels.dedup();
    let n = |m: &std::collections::BTreeMap<String, u64>, l: &str| {
        m.get(l).copied().unwrap_or(0).to_string()
    };
    let rows: Vec<Vec<String>> = levels
        .iter()
        .map(|l| {
            vec![
                (*l).clone(),
                n(&r.alerts.raised, l),
                n(&r.alerts.open_at_end, l),
                n(&r.alerts.resolved, l),
            ]
        })
        .collect();
    table(
        &mut o,
        &["level", "raised", "open at the end", "resolved"],
        &rows,
    );

    for (title, list) in [
        ("Identities first seen in the period", &r.new_identities),
        ("Source IPs first seen in the period", &r.new_source_ips),
    ] {
        let _ = writeln!(o, "<h2>{} ({})</h2>", esc(title), list.len());
        let rows: Vec<Vec<String>> = list
            .iter()
            .take(200)
            .map(|f| vec![f.value.clone(), f.at.to_string(), f.index.to_string()])
            .collect();
        table(&mut o, &["value", "first seen", "ledger record"], &rows);
    }

    o.push_str("<h2>Time (10.6)</h2>\n");
    let rows: Vec<Vec<String>> = r.time_changes.iter().map(|t| vec![t.clone()]).collect();
    table(&mut o, &["time-change events"], &rows);
    let rows: Vec<Vec<String>> = r
        .clock_skew
        .iter()
        .map(|h| {
            vec![
                h.source.clone(),
                h.hour.to_string(),
                h.samples.to_string(),
                h.p50_ms.to_string(),
                h.p99_ms.to_string(),
                h.max_ms.to_string(),
            ]
        })
        .collect();
    table(
        &mut o,
        &[
            "source",
            "hour",
            "events",
            "skew p50 ms",
            "p99 ms",
            "max ms",
        ],
        &rows,
    );

    o.push_str("<h2>The trail itself (10.2.1.6)</h2>\n");
    let rows: Vec<Vec<String>> = r
        .lifecycle
        .iter()
        .map(|(k, n)| vec![k.clone(), n.to_string()])
        .collect();
    table(&mut o, &["lifecycle record", "count"], &rows);
    let rows: Vec<Vec<String>> = r
        .quarantined
        .iter()
        .map(|(k, n)| vec![k.clone(), n.to_string()])
        .collect();
    table(&mut o, &["quarantined from", "records"], &rows);
    let (first, last, count) = r.ledger_records;
    let _ = writeln!(o, "<p class=meta>{count} ledger records received in the period (indexes {} to {}).</p>\n</body></html>",
        first.map_or("-".into(), |x| x.to_string()),
        last.map_or("-".into(), |x| x.to_string())
    );
    o
}

/// One CSV cell (RFC 4180).
pub fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The review as CSV: `section,key,value,detail` rows.
pub fn review_csv(r: &Review) -> String {
    let mut rows: Vec<[String; 4]> = vec![
        ["review".into(), "id".into(), r.id.clone(), String::new()],
        [
            "review".into(),
            "period_start".into(),
            r.period.start_ts().to_string(),
            String::new(),
        ],
        [
            "review".into(),
            "period_end".into(),
            r.period.end_ts().to_string(),
            String::new(),
        ],
        ["review".into(), "hash".into(), r.hash(), String::new()],
        [
            "verification".into(),
            "status".into(),
            r.verification.status.clone(),
            r.verification.first_failure.clone().unwrap_or_default(),
        ],
    ];
    for x in &r.exceptions {
        rows.push([
            "exception".into(),
            format!("{}:{}", x.severity, x.kind),
            x.title.clone(),
            x.detail.clone(),
        ]);
    }
    for c in &r.categories {
        rows.push([
            "category".into(),
            c.requirement.clone(),
            c.total.to_string(),
            c.title.clone(),
        ]);
    }
    for (s, n) in &r.events_by_source {
        rows.push(["source".into(), s.clone(), n.to_string(), String::new()]);
    }
    for a in &r.admin_actions {
        rows.push([
            "admin".into(),
            a.identity.clone(),
            a.count.to_string(),
            String::new(),
        ]);
    }
    rows.push([
        "access".into(),
        "reads".into(),
        r.audit_log_access.reads.to_string(),
        String::new(),
    ]);
    rows.push([
        "access".into(),
        "refused".into(),
        r.audit_log_access.refused.to_string(),
        String::new(),
    ]);
    for (k, m) in [
        ("raised", &r.alerts.raised),
        ("open_at_end", &r.alerts.open_at_end),
        ("resolved", &r.alerts.resolved),
    ] {
        for (l, n) in m {
            rows.push([
                format!("alerts_{k}"),
                l.clone(),
                n.to_string(),
                String::new(),
            ]);
        }
    }
    for f in &r.new_identities {
        rows.push([
            "new_identity".into(),
            f.value.clone(),
            f.at.to_string(),
            f.index.to_string(),
        ]);
    }
    for f in &r.new_source_ips {
        rows.push([
            "new_source_ip".into(),
            f.value.clone(),
            f.at.to_string(),
            f.index.to_string(),
        ]);
    }
    let mut o = String::from("section,key,value,detail\r\n");
    for r in rows {
        let cells: Vec<String> = r.iter().map(|c| csv_cell(c)).collect();
        o.push_str(&cells.join(","));
        o.push_str("\r\n");
    }
    o
}
