//! Scalar functions of the KQL reference that are plain text or time formatting:
//! `format_datetime`, `dayofweek`, `trim`, `reverse`, `hash_sha256`, `base64_encode_tostring`,
//! `base64_decode_tostring`, `ipv4_is_private`, `ipv4_is_in_range`.

use crate::udf::{map_str, Strs};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, DurationNanosecondArray, StringBuilder,
};
use datafusion::arrow::datatypes::TimestampNanosecondType;
use datafusion::common::Result;
use std::net::Ipv4Addr;
use std::sync::Arc;

const DAY_NS: i64 = 86_400_000_000_000;

fn exec(m: String) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::Execution(m)
}

/// Civil date of days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Format nanoseconds since the epoch with Kusto's `format_datetime` specifiers: `yyyy yy y`,
/// `MM M`, `dd d`, `HH H`, `hh h`, `mm m`, `ss s`, `f`…`fffffff` (fraction), `F`…`FFFFFFF`
/// (fraction without trailing zeros), `tt` (AM/PM); anything else is copied.
pub fn format_datetime(ns: i64, fmt: &str) -> String {
    let days = ns.div_euclid(DAY_NS);
    let in_day = ns.rem_euclid(DAY_NS);
    let (y, mo, d) = civil(days);
    let secs = in_day / 1_000_000_000;
    let (h, mi, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    let frac = format!("{:09}", in_day % 1_000_000_000);
    let chars: Vec<char> = fmt.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let mut run = 1;
        while i + run < chars.len() && chars[i + run] == c {
            run += 1;
        }
        let h12 = if h % 12 == 0 { 12 } else { h % 12 };
        match c {
            'y' => match run {
                1 => out.push_str(&(y % 100).to_string()),
                2 => out.push_str(&format!("{:02}", y % 100)),
                _ => out.push_str(&format!("{y:0run$}")),
            },
            'M' => out.push_str(&if run >= 2 {
                format!("{mo:02}")
            } else {
                mo.to_string()
            }),
            'd' => out.push_str(&if run >= 2 {
                format!("{d:02}")
            } else {
                d.to_string()
            }),
            'H' => out.push_str(&if run >= 2 {
                format!("{h:02}")
            } else {
                h.to_string()
            }),
            'h' => out.push_str(&if run >= 2 {
                format!("{h12:02}")
            } else {
                h12.to_string()
            }),
            'm' => out.push_str(&if run >= 2 {
                format!("{mi:02}")
            } else {
                mi.to_string()
            }),
            's' => out.push_str(&if run >= 2 {
                format!("{s:02}")
            } else {
                s.to_string()
            }),
            'f' => out.push_str(&frac[..run.min(9)]),
            'F' => out.push_str(frac[..run.min(9)].trim_end_matches('0')),
            't' => out.push_str(match (h < 12, run) {
                (true, 1) => "A",
                (false, 1) => "P",
                (true, _) => "AM",
                (false, _) => "PM",
            }),
            _ => {
                for _ in 0..run {
                    out.push(c);
                }
            }
        }
        i += run;
    }
    out
}

/// `format_datetime(datetime, format)`.
pub fn k_format_datetime(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    let t = a[0]
        .as_primitive_opt::<TimestampNanosecondType>()
        .ok_or_else(|| exec("format_datetime() takes a datetime".into()))?;
    let f = Strs::of(&a[1])?;
    let mut b = StringBuilder::with_capacity(n, n * 24);
    for i in 0..n {
        let fi = if a[1].len() == 1 { 0 } else { i };
        match (t.is_null(i), f.get(fi)) {
            (false, Some(fmt)) => b.append_value(format_datetime(t.value(i), fmt)),
            _ => b.append_null(),
        }
    }
    Ok(Arc::new(b.finish()))
}

/// `dayofweek(datetime)`: days since the last Sunday, as a timespan.
pub fn k_dayofweek(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    let t = a[0]
        .as_primitive_opt::<TimestampNanosecondType>()
        .ok_or_else(|| exec("dayofweek() takes a datetime".into()))?;
    // 1970-01-01 was a Thursday (4 days after a Sunday)
    let v: Vec<Option<i64>> = (0..n)
        .map(|i| {
            (!t.is_null(i)).then(|| (t.value(i).div_euclid(DAY_NS) + 4).rem_euclid(7) * DAY_NS)
        })
        .collect();
    Ok(Arc::new(DurationNanosecondArray::from(v)))
}

/// `trim(regex, text)`: leading and trailing matches of the regex removed.
pub fn k_trim(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    let re_s = Strs::of(&a[0])?;
    let pattern = re_s.get(0).unwrap_or_default();
    let lead = regex::Regex::new(&format!("^(?:{pattern})+"))
        .map_err(|e| exec(format!("trim(): bad regex {pattern:?}: {e}")))?;
    let trail = regex::Regex::new(&format!("(?:{pattern})+$"))
        .map_err(|e| exec(format!("trim(): bad regex {pattern:?}: {e}")))?;
    map_str(&a[1], n, |t| {
        let t = lead.replace(t, "");
        Some(trail.replace(&t, "").into_owned())
    })
}

/// `reverse(text)`.
pub fn k_reverse(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    map_str(&a[0], n, |t| Some(t.chars().rev().collect()))
}

/// `hash_sha256(text)`: lower-case hex of the UTF-8 bytes' SHA-256.
pub fn k_hash_sha256(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    use sha2::Digest;
    map_str(&a[0], n, |t| {
        Some(hex::encode(sha2::Sha256::digest(t.as_bytes())))
    })
}

/// `base64_encode_tostring(text)`.
pub fn k_base64_encode(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    use base64::Engine as _;
    map_str(&a[0], n, |t| {
        Some(base64::engine::general_purpose::STANDARD.encode(t.as_bytes()))
    })
}

/// `base64_decode_tostring(text)`: null when it is not base64 of UTF-8 text.
pub fn k_base64_decode(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    use base64::Engine as _;
    map_str(&a[0], n, |t| {
        base64::engine::general_purpose::STANDARD
            .decode(t.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
    })
}

/// An IPv4 address or range `a.b.c.d[/bits]`: (address, prefix length).
fn v4(s: &str) -> Option<(u32, u32)> {
    let (ip, bits) = match s.trim().split_once('/') {
        Some((ip, b)) => (ip, b.parse::<u32>().ok().filter(|b| *b <= 32)?),
        None => (s.trim(), 32),
    };
    Some((u32::from(ip.parse::<Ipv4Addr>().ok()?), bits))
}

fn in_range(ip: u32, (net, bits): (u32, u32)) -> bool {
    let mask = if bits == 0 {
        0
    } else {
        u32::MAX << (32 - bits)
    };
    ip & mask == net & mask
}

fn bools(a: &ArrayRef, n: usize, f: impl Fn(usize, &str) -> Option<bool>) -> Result<ArrayRef> {
    let s = Strs::of(a)?;
    let mut b = BooleanBuilder::with_capacity(n);
    for i in 0..n {
        b.append_option(s.get(i).and_then(|t| f(i, t)));
    }
    Ok(Arc::new(b.finish()))
}

/// `ipv4_is_private(ip)`: in 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16 (RFC 1918); null when
/// it is not an IPv4 address.
pub fn k_ipv4_is_private(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    const PRIVATE: [(u32, u32); 3] = [(0x0A00_0000, 8), (0xAC10_0000, 12), (0xC0A8_0000, 16)];
    bools(&a[0], n, |_, t| {
        let (ip, _) = v4(t)?;
        Some(PRIVATE.iter().any(|r| in_range(ip, *r)))
    })
}

/// `ipv4_is_in_range(ip, range)`.
pub fn k_ipv4_is_in_range(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    let r = Strs::of(&a[1])?;
    let one = a[1].len() == 1;
    bools(&a[0], n, |i, t| {
        let (ip, _) = v4(t)?;
        let range = v4(r.get(if one { 0 } else { i })?)?;
        Some(in_range(ip, range))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_datetime_follows_the_reference_examples() {
        // 2017-01-29 09:00:05.123456 UTC
        let t = 1_485_680_405_123_456_000;
        assert_eq!(
            format_datetime(t, "yy-MM-dd [HH:mm:ss]"),
            "17-01-29 [09:00:05]"
        );
        assert_eq!(
            format_datetime(t, "yyyy-M-dd [H:mm:ss]"),
            "2017-1-29 [9:00:05]"
        );
        assert_eq!(
            format_datetime(t, "yy-MM-dd [hh:mm:ss tt]"),
            "17-01-29 [09:00:05 AM]"
        );
        assert_eq!(format_datetime(t, "HH:mm:ss.fff"), "09:00:05.123");
        assert_eq!(format_datetime(1_485_680_405_100_000_000, "ss.FFF"), "05.1");
        assert_eq!(format_datetime(-DAY_NS, "yyyy-MM-dd"), "1969-12-31");
    }

    #[test]
    fn ipv4_ranges() {
        assert!(in_range(
            v4("10.1.2.3").unwrap().0,
            v4("10.0.0.0/8").unwrap()
        ));
        assert!(!in_range(
            v4("11.1.2.3").unwrap().0,
            v4("10.0.0.0/8").unwrap()
        ));
        assert!(in_range(v4("1.2.3.4").unwrap().0, v4("0.0.0.0/0").unwrap()));
        assert!(v4("10.0.0.0/33").is_none() && v4("::1").is_none());
    }
}
