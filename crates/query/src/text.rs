//! Scalar functions of the KQL reference over arrays and text that return dynamic values:
//! `strcat_array`, `zip`, `parse_url`, `parse_path`, `format_timespan`, and the helpers
//! `mv-expand with_itemindex` and `evaluate bag_unpack` need.

use crate::udf::{map_str, Strs};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int64Builder, ListBuilder, StringBuilder,
};
use datafusion::common::Result;
use serde_json::{Map, Value};
use std::sync::Arc;

/// A JSON value as text the way `tostring()` shows it (strings without quotes).
fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `strcat_array(array, delimiter)`.
pub fn k_strcat_array(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    let delim = Strs::of(&a[1])?;
    let one = a[1].len() == 1;
    let s = Strs::of(&a[0])?;
    let mut b = StringBuilder::with_capacity(n, n * 16);
    for i in 0..n {
        let d = delim.get(if one { 0 } else { i }).unwrap_or_default();
        match s.get(i).and_then(|t| serde_json::from_str::<Value>(t).ok()) {
            Some(Value::Array(v)) => {
                b.append_value(v.iter().map(plain).collect::<Vec<_>>().join(d))
            }
            _ => b.append_null(),
        }
    }
    Ok(Arc::new(b.finish()))
}

/// `zip(a1, a2, …)`: element i of each array in one array; the shorter ones give null.
pub fn k_zip(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    let cols: Vec<Strs> = a.iter().map(Strs::of).collect::<Result<_>>()?;
    let mut b = StringBuilder::with_capacity(n, n * 32);
    for i in 0..n {
        let arrays: Option<Vec<Vec<Value>>> = cols
            .iter()
            .map(
                |c| match c.get(i).and_then(|t| serde_json::from_str(t).ok()) {
                    Some(Value::Array(v)) => Some(v),
                    _ => None,
                },
            )
            .collect();
        match arrays {
            Some(arrays) => {
                let len = arrays.iter().map(Vec::len).max().unwrap_or(0);
                let out: Vec<Value> = (0..len)
                    .map(|k| {
                        Value::Array(
                            arrays
                                .iter()
                                .map(|v| v.get(k).cloned().unwrap_or(Value::Null))
                                .collect(),
                        )
                    })
                    .collect();
                b.append_value(Value::Array(out).to_string());
            }
            None => b.append_null(),
        }
    }
    Ok(Arc::new(b.finish()))
}

/// `parse_url(url)`: Scheme, Host, Port, Path, Username, Password, Query Parameters, Fragment
/// (the property names Kusto uses); an empty bag when it is not an absolute URL.
pub fn parse_url(u: &str) -> Value {
    let mut m = Map::new();
    let Some((scheme, rest)) = u.split_once("://") else {
        return Value::Object(m);
    };
    let (rest, fragment) = rest.split_once('#').unwrap_or((rest, ""));
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (userinfo, hostport) = authority.rsplit_once('@').unwrap_or(("", authority));
    let (user, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let (host, port) = if hostport.starts_with('[') {
        match hostport.find(']') {
            Some(i) => (&hostport[..=i], hostport[i + 1..].trim_start_matches(':')),
            None => (hostport, ""),
        }
    } else {
        hostport.split_once(':').unwrap_or((hostport, ""))
    };
    let mut params = Map::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        params.insert(k.to_string(), Value::String(v.to_string()));
    }
    for (k, v) in [
        ("Scheme", scheme),
        ("Host", host),
        ("Port", port),
        ("Path", path),
        ("Username", user),
        ("Password", pass),
    ] {
        m.insert(k.into(), Value::String(v.into()));
    }
    m.insert("Query Parameters".into(), Value::Object(params));
    m.insert("Fragment".into(), Value::String(fragment.into()));
    Value::Object(m)
}

/// `parse_url(url)`.
pub fn k_parse_url(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    map_str(&a[0], n, |t| Some(parse_url(t).to_string()))
}

/// `parse_path(path)`: Scheme, RootPath, DirectoryPath, DirectoryName, Filename, Extension,
/// AlternateDataStreamName, for Windows and POSIX paths and URLs.
pub fn parse_path(p: &str) -> Value {
    let (scheme, rest) = match p.split_once("://") {
        Some((s, r)) => (s, r),
        None => ("", p),
    };
    let sep = |c: char| c == '/' || c == '\\';
    let root = if rest.len() >= 2 && rest.as_bytes()[1] == b':' {
        &rest[..2]
    } else if let Some(unc) = rest.strip_prefix("\\\\") {
        unc.find('\\').map_or(rest, |i| &rest[..i + 2])
    } else {
        ""
    };
    let (dir, file) = match rest.rfind(sep) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => ("", rest),
    };
    let (file, ads) = file.split_once(':').unwrap_or((file, ""));
    let ext = file.rsplit_once('.').map_or("", |(_, e)| e);
    let dir_name = dir.rsplit(sep).next().unwrap_or("");
    let mut m = Map::new();
    for (k, v) in [
        ("Scheme", scheme),
        ("RootPath", root),
        ("DirectoryPath", dir),
        ("DirectoryName", dir_name),
        ("Filename", file),
        ("Extension", ext),
        ("AlternateDataStreamName", ads),
    ] {
        m.insert(k.into(), Value::String(v.into()));
    }
    Value::Object(m)
}

/// `parse_path(path)`.
pub fn k_parse_path(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    map_str(&a[0], n, |t| Some(parse_path(t).to_string()))
}

/// Format a timespan with Kusto's `format_timespan` specifiers: `d`… (days), `h`/`hh` and
/// `H`/`HH` (hours of the day), `m`/`mm`, `s`/`ss`, `f`…`fffffff`, `F`…`FFFFFFF`; `'text'` and
/// the separators `: . - /` and space are copied.
pub fn format_timespan(ns: i64, fmt: &str) -> String {
    let neg = ns < 0;
    let ns = ns.unsigned_abs();
    let secs = ns / 1_000_000_000;
    let (d, h, mi, s) = (
        secs / 86_400,
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60,
    );
    let frac = format!("{:09}", ns % 1_000_000_000);
    let chars: Vec<char> = fmt.chars().collect();
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' || c == '"' {
            let end = chars[i + 1..]
                .iter()
                .position(|x| *x == c)
                .map_or(chars.len(), |p| i + 1 + p);
            out.extend(&chars[i + 1..end]);
            i = end + 1;
            continue;
        }
        let mut run = 1;
        while i + run < chars.len() && chars[i + run] == c {
            run += 1;
        }
        match c {
            'd' => out.push_str(&format!("{d:0run$}")),
            'h' | 'H' => out.push_str(&format!("{h:0w$}", w = run.min(2))),
            'm' => out.push_str(&format!("{mi:0w$}", w = run.min(2))),
            's' => out.push_str(&format!("{s:0w$}", w = run.min(2))),
            'f' => out.push_str(&frac[..run.min(7)]),
            'F' => {
                let f = frac[..run.min(7)].trim_end_matches('0');
                if f.is_empty() && out.ends_with('.') {
                    out.pop();
                }
                out.push_str(f);
            }
            other => out.extend(std::iter::repeat_n(other, run)),
        }
        i += run;
    }
    out
}

/// `format_timespan(timespan, format)`.
pub fn k_format_timespan(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    let ts = a[0].as_primitive_opt::<datafusion::arrow::datatypes::DurationNanosecondType>();
    let fmt = Strs::of(&a[1])?;
    let one = a[1].len() == 1;
    let mut b = StringBuilder::with_capacity(n, n * 16);
    for i in 0..n {
        match (ts, fmt.get(if one { 0 } else { i })) {
            (Some(t), Some(f)) if !t.is_null(i) => b.append_value(format_timespan(t.value(i), f)),
            _ => b.append_null(),
        }
    }
    Ok(Arc::new(b.finish()))
}

/// The indexes 0..len of a dynamic array (or of a bag's properties), for
/// `mv-expand with_itemindex=`.
pub fn k_indexes(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    let s = Strs::of(&a[0])?;
    let mut b = ListBuilder::new(Int64Builder::new());
    for i in 0..n {
        match s.get(i).and_then(|t| serde_json::from_str::<Value>(t).ok()) {
            Some(Value::Array(v)) => {
                (0..v.len() as i64).for_each(|k| b.values().append_value(k));
                b.append(true);
            }
            Some(Value::Object(m)) => {
                (0..m.len() as i64).for_each(|k| b.values().append_value(k));
                b.append(true);
            }
            Some(Value::Null) | None => b.append(false),
            Some(_) => {
                b.values().append_value(0);
                b.append(true);
            }
        }
    }
    Ok(Arc::new(b.finish()))
}

/// The KQL type of a JSON value, as `bag_unpack` types a column.
pub fn json_type(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "string",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_i64() || n.is_u64() => "long",
        Value::Number(_) => "real",
        _ => "dynamic",
    }
}

/// For `evaluate bag_unpack`: each property of a bag as `name\u{1}type` (nulls leave no type).
pub fn k_bag_key_types(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    let s = Strs::of(&a[0])?;
    let mut b = ListBuilder::new(StringBuilder::new());
    for i in 0..n {
        if let Some(Value::Object(m)) = s.get(i).and_then(|t| serde_json::from_str::<Value>(t).ok())
        {
            for (k, v) in &m {
                if !v.is_null() {
                    b.values().append_value(format!("{k}\u{1}{}", json_type(v)));
                } else {
                    b.values().append_value(format!("{k}\u{1}"));
                }
            }
        }
        b.append(true);
    }
    Ok(Arc::new(b.finish()))
}

/// `mv-expand bagexpansion=array`: a bag becomes an array of `[name, value]` pairs (arrays
/// stay as they are).
pub fn k_bag_pairs(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    map_str(&a[0], n, |t| {
        match serde_json::from_str::<Value>(t).ok()? {
            Value::Object(m) => Some(
                Value::Array(
                    m.into_iter()
                        .map(|(k, v)| Value::Array(vec![Value::String(k), v]))
                        .collect(),
                )
                .to_string(),
            ),
            _ => Some(t.to_string()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_paths_and_timespans() {
        let u = parse_url("https://user:pw@example.com:8443/a/b.txt?k=v&x=1#frag");
        assert_eq!(u["Host"], "example.com");
        assert_eq!(u["Port"], "8443");
        assert_eq!(u["Path"], "/a/b.txt");
        assert_eq!(u["Username"], "user");
        assert_eq!(u["Query Parameters"]["x"], "1");
        assert_eq!(u["Fragment"], "frag");
        let p = parse_path(r"C:\Windows\System32\cmd.exe");
        assert_eq!(p["RootPath"], "C:");
        assert_eq!(p["DirectoryName"], "System32");
        assert_eq!(p["Extension"], "exe");
        let ns = ((((2 * 24 + 3) * 60 + 4) * 60 + 5) * 1_000_000_000) + 120_000_000;
        assert_eq!(format_timespan(ns, "d:hh:mm:ss.fff"), "2:03:04:05.120");
        assert_eq!(format_timespan(ns, "dd.hh:mm:ss.FFFF"), "02.03:04:05.12");
        assert_eq!(format_timespan(-60_000_000_000, "hh:mm"), "-00:01");
    }
}
