//! Timestamps: nanoseconds since the Unix epoch (UTC), with a lenient RFC 3339 parser that accepts
//! every shape seen in real audit data and a canonical formatter.
//!
//! Shapes accepted by [`Timestamp::parse`]:
//! - `2018-10-26T13:38:34.867116Z` (any number of fraction digits; more than 9 are truncated)
//! - `2017-09-11T19:55:05Z` (no fraction)
//! - `2020-05-05T16:16:37.0000000Z` (7 digits, Azure)
//! - `2022-11-29 00:09:04.38` (space separator, no zone: taken as UTC)
//! - `2024-01-02T03:04:05+01:00`, `...-0700` (numeric offsets), lower-case `t` / `z`

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A point in time: nanoseconds since 1970-01-01T00:00:00Z.
///
/// Covers years 1678..2262, which is every timestamp a log can honestly carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

/// Why a timestamp could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid timestamp {input:?}: {reason}")]
pub struct TimeError {
    /// The text that was given (truncated to 64 bytes).
    pub input: String,
    /// What was wrong with it.
    pub reason: &'static str,
}

impl TimeError {
    fn new(input: &str, reason: &'static str) -> Self {
        let mut end = input.len().min(64);
        while !input.is_char_boundary(end) {
            end -= 1;
        }
        TimeError {
            input: input[..end].to_string(),
            reason,
        }
    }
}

/// Nanoseconds in one second.
pub const NANOS_PER_SEC: i64 = 1_000_000_000;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The (year, month, day) of a count of days since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ => {
            if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 {
                29
            } else {
                28
            }
        }
    }
}

fn digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let s = b.get(at..at + n)?;
    let mut v = 0u32;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u32;
    }
    Some(v)
}

impl Timestamp {
    /// The current wall-clock time.
    pub fn now() -> Timestamp {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(d.as_secs() as i64 * NANOS_PER_SEC + d.subsec_nanos() as i64)
    }

    /// Build from whole seconds plus nanoseconds.
    pub fn from_secs_nanos(secs: i64, nanos: u32) -> Timestamp {
        Timestamp(
            secs.saturating_mul(NANOS_PER_SEC)
                .saturating_add(nanos as i64),
        )
    }

    /// Build from a civil UTC date and time.
    pub fn from_civil(y: i64, mo: u32, d: u32, h: u32, mi: u32, s: u32, nanos: u32) -> Timestamp {
        let days = days_from_civil(y, mo, d);
        let secs = days * 86_400 + h as i64 * 3600 + mi as i64 * 60 + s as i64;
        Timestamp::from_secs_nanos(secs, nanos)
    }

    /// Whole seconds since the epoch (floor).
    pub fn secs(self) -> i64 {
        self.0.div_euclid(NANOS_PER_SEC)
    }

    /// Nanoseconds within the second.
    pub fn subsec_nanos(self) -> u32 {
        self.0.rem_euclid(NANOS_PER_SEC) as u32
    }

    /// Parse a unix time written as `SECONDS[.FRACTION]` (auditd's `audit(1594053514.588:4686)`).
    pub fn parse_unix(s: &str) -> Result<Timestamp, TimeError> {
        let (int, frac) = match s.split_once('.') {
            Some((i, f)) => (i, f),
            None => (s, ""),
        };
        if int.is_empty() || !int.bytes().all(|c| c.is_ascii_digit()) || int.len() > 12 {
            return Err(TimeError::new(s, "expected decimal seconds"));
        }
        let secs: i64 = int
            .parse()
            .ok()
            .filter(|v| *v < i64::MAX / NANOS_PER_SEC)
            .ok_or_else(|| TimeError::new(s, "seconds out of range"))?;
        let nanos =
            parse_fraction(frac.as_bytes()).ok_or_else(|| TimeError::new(s, "bad fraction"))?;
        Ok(Timestamp::from_secs_nanos(secs, nanos))
    }

    /// Parse an RFC 3339 timestamp leniently (see the module documentation).
    pub fn parse(s: &str) -> Result<Timestamp, TimeError> {
        let b = s.trim().as_bytes();
        if b.len() < 19 {
            return Err(TimeError::new(s, "too short for a date and time"));
        }
        let y = digits(b, 0, 4).ok_or_else(|| TimeError::new(s, "bad year"))?;
        if b[4] != b'-' || b[7] != b'-' {
            return Err(TimeError::new(s, "expected YYYY-MM-DD"));
        }
        let mo = digits(b, 5, 2).ok_or_else(|| TimeError::new(s, "bad month"))?;
        let d = digits(b, 8, 2).ok_or_else(|| TimeError::new(s, "bad day"))?;
        if !matches!(b[10], b'T' | b't' | b' ') {
            return Err(TimeError::new(
                s,
                "expected 'T' or ' ' between date and time",
            ));
        }
        let h = digits(b, 11, 2).ok_or_else(|| TimeError::new(s, "bad hour"))?;
        let mi = digits(b, 14, 2).ok_or_else(|| TimeError::new(s, "bad minute"))?;
        let sec = digits(b, 17, 2).ok_or_else(|| TimeError::new(s, "bad second"))?;
        if b[13] != b':' || b[16] != b':' {
            return Err(TimeError::new(s, "expected hh:mm:ss"));
        }
        // i64 nanoseconds cover 1677-09-21 .. 2262-04-11; refuse what cannot be represented
        // instead of saturating to a different instant.
        if !(1678..=2261).contains(&y) {
            return Err(TimeError::new(s, "year outside 1678..2261"));
        }
        if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y as i64, mo) {
            return Err(TimeError::new(s, "date out of range"));
        }
        if h > 23 || mi > 59 || sec > 60 {
            return Err(TimeError::new(s, "time out of range"));
        }
        let mut i = 19;
        let mut nanos = 0;
        if i < b.len() && (b[i] == b'.' || b[i] == b',') {
            let start = i + 1;
            let mut end = start;
            while end < b.len() && b[end].is_ascii_digit() {
                end += 1;
            }
            if end == start {
                return Err(TimeError::new(s, "empty fraction"));
            }
            nanos =
                parse_fraction(&b[start..end]).ok_or_else(|| TimeError::new(s, "bad fraction"))?;
            i = end;
        }
        let mut offset_secs: i64 = 0;
        if i < b.len() {
            match b[i] {
                b'Z' | b'z' => i += 1,
                b'+' | b'-' => {
                    let sign = if b[i] == b'-' { -1 } else { 1 };
                    let oh = digits(b, i + 1, 2).ok_or_else(|| TimeError::new(s, "bad offset"))?;
                    let om = if b.get(i + 3) == Some(&b':') {
                        let v =
                            digits(b, i + 4, 2).ok_or_else(|| TimeError::new(s, "bad offset"))?;
                        i += 6;
                        v
                    } else {
                        let v = digits(b, i + 3, 2).unwrap_or(0);
                        i += if b.len() >= i + 5 { 5 } else { 3 };
                        v
                    };
                    if oh > 23 || om > 59 {
                        return Err(TimeError::new(s, "offset out of range"));
                    }
                    offset_secs = sign * (oh as i64 * 3600 + om as i64 * 60);
                }
                _ => return Err(TimeError::new(s, "unexpected text after time")),
            }
        }
        if i != b.len() {
            return Err(TimeError::new(s, "unexpected text after zone"));
        }
        let sec = sec.min(59); // a leap second is folded into :59
        let t = Timestamp::from_civil(y as i64, mo, d, h, mi, sec, nanos);
        Ok(Timestamp(t.0 - offset_secs * NANOS_PER_SEC))
    }

    /// Canonical RFC 3339 in UTC: no fraction when whole, else 3, 6 or 9 digits (the fewest
    /// that keep every nanosecond).
    pub fn to_rfc3339(self) -> String {
        let mut out = String::with_capacity(30);
        self.write_rfc3339(&mut out);
        out
    }

    /// Append the canonical RFC 3339 form to `out`.
    pub fn write_rfc3339(self, out: &mut String) {
        use std::fmt::Write;
        let secs = self.secs();
        let nanos = self.subsec_nanos();
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (y, mo, d) = civil_from_days(days);
        let _ = write!(
            out,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            y,
            mo,
            d,
            rem / 3600,
            (rem / 60) % 60,
            rem % 60
        );
        if nanos != 0 {
            if nanos.is_multiple_of(1_000_000) {
                let _ = write!(out, ".{:03}", nanos / 1_000_000);
            } else if nanos.is_multiple_of(1000) {
                let _ = write!(out, ".{:06}", nanos / 1000);
            } else {
                let _ = write!(out, ".{:09}", nanos);
            }
        }
        out.push('Z');
    }
}

/// Parse decimal fraction digits into nanoseconds (extra digits beyond 9 are truncated).
fn parse_fraction(f: &[u8]) -> Option<u32> {
    let mut nanos: u32 = 0;
    let mut scale = 100_000_000u32;
    for &c in f {
        if !c.is_ascii_digit() {
            return None;
        }
        if scale > 0 {
            nanos += (c - b'0') as u32 * scale;
            scale /= 10;
        }
    }
    Some(nanos)
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl std::str::FromStr for Timestamp {
    type Err = TimeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Timestamp::parse(s)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<str>::deserialize(d)?;
        Timestamp::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A point in time given as RFC 3339 or as a duration ago (`24h`, `7d`, `30m ago`), relative to
/// `now`.
pub fn parse_time_or_ago(s: &str, now: Timestamp) -> Result<Timestamp, TimeError> {
    if let Ok(t) = Timestamp::parse(s) {
        return Ok(t);
    }
    let d = parse_duration(s.trim_end_matches(" ago"))
        .map_err(|_| TimeError::new(s, "neither an RFC 3339 time nor a duration like 24h"))?;
    Ok(Timestamp(now.0 - d))
}

/// Parse a duration such as `30s`, `5m`, `24h`, `7d`, `1w`, `250ms` into nanoseconds.
pub fn parse_duration(s: &str) -> Result<i64, TimeError> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| TimeError::new(s, "missing unit (ms, s, m, h, d, w)"))?;
    let (num, unit) = t.split_at(split);
    let n: i64 = num
        .parse()
        .map_err(|_| TimeError::new(s, "expected a whole number before the unit"))?;
    let mult = match unit {
        "ms" => 1_000_000,
        "s" => NANOS_PER_SEC,
        "m" => 60 * NANOS_PER_SEC,
        "h" => 3600 * NANOS_PER_SEC,
        "d" => 86_400 * NANOS_PER_SEC,
        "w" => 7 * 86_400 * NANOS_PER_SEC,
        _ => return Err(TimeError::new(s, "unknown unit (use ms, s, m, h, d, w)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| TimeError::new(s, "duration out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_real_shapes() {
        let cases = [
            ("2018-10-26T13:38:34.867116Z", "2018-10-26T13:38:34.867116Z"),
            ("2017-09-11T19:55:05Z", "2017-09-11T19:55:05Z"),
            ("2020-05-05T16:16:37.0000000Z", "2020-05-05T16:16:37Z"),
            (
                "2016-03-02T22:58:51.338462311Z",
                "2016-03-02T22:58:51.338462311Z",
            ),
            (
                "2019-04-01T17:58:33.66649744Z",
                "2019-04-01T17:58:33.666497440Z",
            ),
            ("2022-11-29 00:09:04.38", "2022-11-29T00:09:04.380Z"),
            ("2024-01-02T03:04:05+01:00", "2024-01-02T02:04:05Z"),
            ("2024-01-02T03:04:05-0700", "2024-01-02T10:04:05Z"),
            ("2022-05-11T18:10:22.09Z", "2022-05-11T18:10:22.090Z"),
            ("1969-12-31T23:59:59.5Z", "1969-12-31T23:59:59.500Z"),
        ];
        for (input, want) in cases {
            let t = Timestamp::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(t.to_rfc3339(), want, "{input}");
        }
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "2018-13-01T00:00:00Z",
            "2018-02-30T00:00:00Z",
            "2018-10-26X13:38:34Z",
            "2018-10-26T13:38:34Zjunk",
            "yesterday at noon please",
            "2018-10-26T25:00:00Z",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad:?} should fail");
        }
    }

    /// Found by `cargo fuzz run timestamp`: year 1111 saturated to another instant.
    #[test]
    fn regression_year_outside_i64_nanos_is_rejected() {
        assert!(Timestamp::parse("1111-05-01 18:22:00").is_err());
        assert!(Timestamp::parse("2263-01-01T00:00:00Z").is_err());
        assert!(Timestamp::parse_unix("999999999999").is_err());
        assert!(Timestamp::parse("1678-01-01T00:00:00Z").is_ok());
    }

    #[test]
    fn unix_seconds() {
        let t = Timestamp::parse_unix("1594053514.588").unwrap();
        assert_eq!(t.to_rfc3339(), "2020-07-06T16:38:34.588Z");
        assert!(Timestamp::parse_unix("abc").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5m").unwrap(), 300 * NANOS_PER_SEC);
        assert_eq!(parse_duration("250ms").unwrap(), 250_000_000);
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5y").is_err());
    }

    proptest::proptest! {
        #[test]
        fn roundtrip(ns in -9_000_000_000_000_000_000i64..9_000_000_000_000_000_000i64) {
            let t = Timestamp(ns);
            let s = t.to_rfc3339();
            proptest::prop_assert_eq!(Timestamp::parse(&s).unwrap(), t);
        }

        #[test]
        fn never_panics(s in "\\PC{0,40}") {
            let _ = Timestamp::parse(&s);
            let _ = Timestamp::parse_unix(&s);
        }
    }
}
