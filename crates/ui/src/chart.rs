//! Charts for KQL's `render`, drawn on the server as SVG (no chart library, no script; the CSP
//! allows it as it is markup). `timechart` (and `linechart`, `areachart`): the first datetime
//! column on x, each numeric column a line, or one line per value of a string column when there
//! is one (Kusto's split). `barchart` / `columnchart`: the first string column's values as bars
//! of the first numeric column. `piechart`: slices of the same.

use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt::Write;
use trailwarden_model::Timestamp;

/// A result's column: name and KQL type.
pub type Column = (String, String);

const W: f64 = 760.0;
const H: f64 = 300.0;
const PAD_L: f64 = 64.0;
const PAD_B: f64 = 40.0;
const PAD_T: f64 = 16.0;
const PAD_R: f64 = 16.0;
const COLORS: &[&str] = &[
    "#2f7ed8", "#d9534f", "#5cb85c", "#f0ad4e", "#8e6bbf", "#17a2b8", "#e83e8c", "#6c757d",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        _ => None,
    }
}

fn numeric(ty: &str) -> bool {
    matches!(ty, "long" | "int" | "real" | "decimal" | "timespan")
}

fn label(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "(empty)".into(),
        o => o.to_string(),
    }
}

/// Draw `kind` over the rows; `Err` says why it cannot be drawn (the table still shows).
pub fn svg(kind: &str, cols: &[Column], rows: &[Map<String, Value>]) -> Result<String, String> {
    if rows.is_empty() {
        return Err("no rows to draw".into());
    }
    match kind {
        "timechart" | "linechart" | "areachart" => time(kind, cols, rows),
        "barchart" | "columnchart" | "piechart" => {
            let lab = cols
                .iter()
                .find(|(_, t)| t == "string")
                .or_else(|| cols.first())
                .map(|c| c.0.clone())
                .ok_or("no columns")?;
            let val = cols
                .iter()
                .find(|(n, t)| numeric(t) && *n != lab)
                .map(|c| c.0.clone())
                .ok_or("a bar or pie chart needs a numeric column")?;
            let mut items: Vec<(String, f64)> = Vec::new();
            for r in rows.iter().take(60) {
                let l = label(r.get(&lab).unwrap_or(&Value::Null));
                items.push((l, r.get(&val).and_then(num).unwrap_or(0.0)));
            }
            if kind == "piechart" {
                pie(&val, &items)
            } else {
                bars(&val, &items)
            }
        }
        other => Err(format!(
            "`render {other}` is not drawn here (timechart, linechart, areachart, barchart, columnchart, piechart are); the table has its data"
        )),
    }
}

fn open(title: &str) -> String {
    format!(
        "<svg class=\"chart\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{t}\" xmlns=\"http://www.w3.org/2000/svg\"><title>{t}</title>",
        t = esc(title)
    )
}

fn time(kind: &str, cols: &[Column], rows: &[Map<String, Value>]) -> Result<String, String> {
    let x = cols
        .iter()
        .find(|(_, t)| t == "datetime")
        .map(|c| c.0.clone())
        .ok_or("a time chart needs a datetime column")?;
    let split = cols
        .iter()
        .find(|(n, t)| t == "string" && *n != x)
        .map(|c| c.0.clone());
    let ys: Vec<String> = cols
        .iter()
        .filter(|(n, t)| numeric(t) && *n != x)
        .map(|c| c.0.clone())
        .collect();
    if ys.is_empty() {
        return Err("a time chart needs a numeric column".into());
    }
    // series name → points (t ns, y)
    let mut series: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for r in rows {
        let Some(t) = r
            .get(&x)
            .and_then(|v| v.as_str())
            .and_then(|s| Timestamp::parse(s).ok())
        else {
            continue;
        };
        match &split {
            Some(sc) => {
                let name = label(r.get(sc).unwrap_or(&Value::Null));
                if let Some(y) = r.get(&ys[0]).and_then(num) {
                    series.entry(name).or_default().push((t.0, y));
                }
            }
            None => {
                for yc in &ys {
                    if let Some(y) = r.get(yc).and_then(num) {
                        series.entry(yc.clone()).or_default().push((t.0, y));
                    }
                }
            }
        }
    }
    if series.is_empty() {
        return Err("no rows with a time and a number".into());
    }
    let (mut t0, mut t1, mut y1) = (i64::MAX, i64::MIN, 0f64);
    for pts in series.values_mut() {
        pts.sort_by_key(|p| p.0);
        for (t, y) in pts.iter() {
            t0 = t0.min(*t);
            t1 = t1.max(*t);
            y1 = y1.max(*y);
        }
    }
    let y0 = series
        .values()
        .flat_map(|p| p.iter().map(|x| x.1))
        .fold(0f64, f64::min);
    if y1 <= y0 {
        y1 = y0 + 1.0;
    }
    let span = (t1 - t0).max(1) as f64;
    let px = |t: i64| PAD_L + (t - t0) as f64 / span * (W - PAD_L - PAD_R);
    let py = |y: f64| H - PAD_B - (y - y0) / (y1 - y0) * (H - PAD_B - PAD_T);
    let mut out = open(&format!("{kind} of {}", ys.join(", ")));
    axes(&mut out, y0, y1);
    let _ = write!(
        out,
        "<text x=\"{PAD_L}\" y=\"{}\" class=\"axis\" fill=\"currentColor\">{}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\" class=\"axis\" fill=\"currentColor\">{}</text>",
        H - 12.0,
        esc(&crate::html::utc(t0)),
        W - PAD_R,
        H - 12.0,
        esc(&crate::html::utc(t1))
    );
    for (i, (name, pts)) in series.iter().take(COLORS.len()).enumerate() {
        let c = COLORS[i % COLORS.len()];
        let path: Vec<String> = pts
            .iter()
            .map(|(t, y)| format!("{:.1},{:.1}", px(*t), py(*y)))
            .collect();
        let _ = write!(
            out,
            "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" points=\"{}\"><title>{}</title></polyline>",
            path.join(" "),
            esc(name)
        );
        legend(&mut out, i, c, name);
    }
    out.push_str("</svg>");
    Ok(out)
}

fn axes(out: &mut String, y0: f64, y1: f64) {
    let _ = write!(
        out,
        "<line x1=\"{PAD_L}\" y1=\"{PAD_T}\" x2=\"{PAD_L}\" y2=\"{b}\" stroke=\"currentColor\" stroke-opacity=\".4\"/><line x1=\"{PAD_L}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"currentColor\" stroke-opacity=\".4\"/><text x=\"{l}\" y=\"{top}\" text-anchor=\"end\" class=\"axis\" fill=\"currentColor\">{hi}</text><text x=\"{l}\" y=\"{b}\" text-anchor=\"end\" class=\"axis\" fill=\"currentColor\">{lo}</text>",
        b = H - PAD_B,
        r = W - PAD_R,
        l = PAD_L - 6.0,
        top = PAD_T + 8.0,
        hi = short(y1),
        lo = short(y0)
    );
}

fn short(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.2}")
    }
}

fn legend(out: &mut String, i: usize, color: &str, name: &str) {
    let y = PAD_T + 14.0 * i as f64;
    let _ = write!(
        out,
        "<rect x=\"{}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{color}\"/><text x=\"{}\" y=\"{}\" class=\"legend\" fill=\"currentColor\">{}</text>",
        W - 180.0,
        y,
        W - 165.0,
        y + 9.0,
        esc(name)
    );
}

fn bars(val: &str, items: &[(String, f64)]) -> Result<String, String> {
    let max = items.iter().map(|i| i.1).fold(0f64, f64::max).max(1.0);
    let mut out = open(&format!("bars of {val}"));
    axes(&mut out, 0.0, max);
    let n = items.len() as f64;
    let slot = (W - PAD_L - PAD_R) / n;
    for (i, (l, v)) in items.iter().enumerate() {
        let h = v / max * (H - PAD_B - PAD_T);
        let x = PAD_L + slot * i as f64 + slot * 0.1;
        let _ = write!(
            out,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{}\"><title>{}: {}</title></rect>",
            H - PAD_B - h,
            slot * 0.8,
            COLORS[0],
            esc(l),
            short(*v)
        );
        if n <= 20.0 {
            let mut text = l.clone();
            if text.chars().count() > 14 {
                text = text.chars().take(13).collect::<String>() + "…";
            }
            let _ = write!(
                out,
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\" class=\"axis\" fill=\"currentColor\">{}</text>",
                x + slot * 0.4,
                H - PAD_B + 14.0,
                esc(&text)
            );
        }
    }
    out.push_str("</svg>");
    Ok(out)
}

fn pie(val: &str, items: &[(String, f64)]) -> Result<String, String> {
    let total: f64 = items.iter().map(|i| i.1.max(0.0)).sum();
    if total <= 0.0 {
        return Err("nothing to share out: every value is 0".into());
    }
    let mut out = open(&format!("shares of {val}"));
    let (cx, cy, r) = (H / 2.0 + 20.0, H / 2.0, H / 2.0 - 20.0);
    let mut a0 = -std::f64::consts::FRAC_PI_2;
    for (i, (l, v)) in items.iter().take(COLORS.len()).enumerate() {
        let share = v.max(0.0) / total;
        let a1 = a0 + share * std::f64::consts::TAU;
        let c = COLORS[i % COLORS.len()];
        let title = format!("{}: {} ({:.1} %)", esc(l), short(*v), share * 100.0);
        if share >= 0.9999 {
            let _ = write!(out, "<circle cx=\"{cx}\" cy=\"{cy}\" r=\"{r}\" fill=\"{c}\"><title>{title}</title></circle>");
        } else {
            let large = u8::from(share > 0.5);
            let _ = write!(
                out,
                "<path d=\"M{cx},{cy} L{:.2},{:.2} A{r},{r} 0 {large} 1 {:.2},{:.2} Z\" fill=\"{c}\"><title>{title}</title></path>",
                cx + r * a0.cos(),
                cy + r * a0.sin(),
                cx + r * a1.cos(),
                cy + r * a1.sin()
            );
        }
        legend(&mut out, i, c, &format!("{l} ({:.0} %)", share * 100.0));
        a0 = a1;
    }
    out.push_str("</svg>");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rows(v: Value) -> Vec<Map<String, Value>> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_object().unwrap().clone())
            .collect()
    }

    #[test]
    fn timechart_splits_by_the_string_column() {
        let cols = vec![
            ("TimeGenerated".to_string(), "datetime".to_string()),
            ("user".to_string(), "string".to_string()),
            ("n".to_string(), "long".to_string()),
        ];
        let r = rows(json!([
            {"TimeGenerated": "2026-12-01T00:00:00Z", "user": "alice", "n": 3},
            {"TimeGenerated": "2026-12-01T01:00:00Z", "user": "alice", "n": 5},
            {"TimeGenerated": "2026-12-01T00:00:00Z", "user": "<bob>", "n": 1},
        ]));
        let s = svg("timechart", &cols, &r).unwrap();
        assert_eq!(s.matches("<polyline").count(), 2);
        assert!(s.contains("&lt;bob&gt;") && !s.contains("<bob>"));
    }

    #[test]
    fn pie_and_bars_need_a_number_and_unknown_kinds_say_so() {
        let cols = vec![
            ("verb".to_string(), "string".to_string()),
            ("count_".to_string(), "long".to_string()),
        ];
        let r = rows(json!([{"verb": "get", "count_": 3}, {"verb": "delete", "count_": 1}]));
        assert_eq!(
            svg("piechart", &cols, &r).unwrap().matches("<path").count(),
            2
        );
        assert_eq!(
            svg("columnchart", &cols, &r)
                .unwrap()
                .matches("<rect")
                .count(),
            2
        );
        let only_text = vec![("verb".to_string(), "string".to_string())];
        assert!(svg("barchart", &only_text, &r)
            .unwrap_err()
            .contains("numeric"));
        assert!(svg("scatterchart", &cols, &r)
            .unwrap_err()
            .contains("not drawn"));
    }
}
