//! KQL tokens. Positions are byte offsets into the query text; [`crate::Position`] turns them
//! into line, column and a caret.

use crate::KqlError;

/// A token and where it is.
#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    /// What it is.
    pub kind: Tok,
    /// Byte offset of its first character.
    pub start: usize,
    /// Byte offset after its last character.
    pub end: usize,
}

/// Token kinds.
#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    /// An identifier or keyword (keywords are recognized by the parser), including the
    /// hyphenated operator names (`project-away`, `mv-expand`, …) and `['quoted names']`.
    Ident(String),
    /// `$left` / `$right`.
    Dollar(String),
    /// A string literal (escapes resolved).
    Str(String),
    /// An integer literal.
    Int(i64),
    /// A real literal.
    Real(f64),
    /// A timespan literal (`1d`, `30m`, `100ms`…), in nanoseconds.
    Timespan(i64),
    /// The raw text inside `datetime(…)`, `timespan(…)` or `dynamic(…)`: `(function, text)`.
    Raw(String, String),
    /// Punctuation and operators.
    Sym(&'static str),
    /// End of input.
    Eof,
}

/// Operator names written with a hyphen.
const HYPHENATED: &[&str] = &[
    "project-away",
    "project-rename",
    "project-keep",
    "project-reorder",
    "mv-expand",
    "mv-apply",
    "make-series",
    "top-nested",
    "top-hitters",
    "parse-where",
    "parse-kv",
];

/// Symbols, longest first.
const SYMBOLS: &[&str] = &[
    "!between",
    "!contains",
    "!startswith",
    "!endswith",
    "!has",
    "!in~",
    "!in",
    "..",
    "==",
    "!=",
    "<>",
    "<=",
    ">=",
    "=~",
    "!~",
    "=>",
    "|",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    ";",
    ".",
    "=",
    "<",
    ">",
    "+",
    "-",
    "*",
    "/",
    "%",
    ":",
];

/// Timespan units with their length in nanoseconds, longest names first.
const UNITS: &[(&str, i64)] = &[
    ("microseconds", 1_000),
    ("microsecond", 1_000),
    ("milliseconds", 1_000_000),
    ("millisecond", 1_000_000),
    ("seconds", 1_000_000_000),
    ("second", 1_000_000_000),
    ("minutes", 60_000_000_000),
    ("minute", 60_000_000_000),
    ("hours", 3_600_000_000_000),
    ("hour", 3_600_000_000_000),
    ("days", 86_400_000_000_000),
    ("day", 86_400_000_000_000),
    ("ticks", 100),
    ("tick", 100),
    ("micros", 1_000),
    ("micro", 1_000),
    ("millis", 1_000_000),
    ("milli", 1_000_000),
    ("ms", 1_000_000),
    ("d", 86_400_000_000_000),
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
];

/// Split `text` into tokens.
pub fn lex(text: &str) -> Result<Vec<Token>, KqlError> {
    let b = text.as_bytes();
    let mut out: Vec<Token> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let start = i;
        // strings
        if c == b'"' || c == b'\'' {
            let (s, end) = string(text, i, false)?;
            out.push(tok(Tok::Str(s), start, end));
            i = end;
            continue;
        }
        if (c == b'@' || c == b'h' || c == b'H') && matches!(b.get(i + 1), Some(b'"') | Some(b'\''))
        {
            let (s, end) = string(text, i + 1, c == b'@')?;
            out.push(tok(Tok::Str(s), start, end));
            i = end;
            continue;
        }
        if text[i..].starts_with("```") {
            let close = text[i + 3..]
                .find("```")
                .ok_or_else(|| KqlError::syntax(text, i, "a multi-line string closed by ```"))?;
            let s = text[i + 3..i + 3 + close].to_string();
            i += 3 + close + 3;
            out.push(tok(Tok::Str(s), start, i));
            continue;
        }
        // numbers and timespans
        if c.is_ascii_digit() {
            let (t, end) = number(text, i)?;
            out.push(tok(t, start, end));
            i = end;
            continue;
        }
        // identifiers, keywords, typed literals
        if c.is_ascii_alphabetic() || c == b'_' {
            let mut j = i;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                j += 1;
            }
            let mut word = text[i..j].to_string();
            // hyphenated operator names
            if b.get(j) == Some(&b'-') {
                let mut k = j + 1;
                while k < b.len() && (b[k].is_ascii_alphanumeric() || b[k] == b'_') {
                    k += 1;
                }
                let joined = &text[i..k];
                if HYPHENATED.contains(&joined) {
                    word = joined.to_string();
                    j = k;
                }
            }
            // in~ / has_cs are plain identifiers; in~ needs the tilde
            if (word == "in" || word == "has_any") && b.get(j) == Some(&b'~') {
                word.push('~');
                j += 1;
            }
            if matches!(word.as_str(), "datetime" | "timespan" | "dynamic" | "time") {
                let mut k = j;
                while k < b.len() && b[k].is_ascii_whitespace() {
                    k += 1;
                }
                if b.get(k) == Some(&b'(') {
                    let close = matching_paren(text, k)?;
                    let inner = text[k + 1..close].trim().to_string();
                    let func = if word == "time" {
                        "timespan".to_string()
                    } else {
                        word
                    };
                    out.push(tok(Tok::Raw(func, inner), start, close + 1));
                    i = close + 1;
                    continue;
                }
            }
            out.push(tok(Tok::Ident(word), start, j));
            i = j;
            continue;
        }
        if c == b'$' {
            let mut j = i + 1;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                j += 1;
            }
            out.push(tok(Tok::Dollar(text[i + 1..j].to_string()), start, j));
            i = j;
            continue;
        }
        // ['quoted identifier']
        if c == b'[' {
            let mut k = i + 1;
            while k < b.len() && b[k].is_ascii_whitespace() {
                k += 1;
            }
            if matches!(b.get(k), Some(b'"') | Some(b'\'')) {
                let (s, end) = string(text, k, false)?;
                let mut e = end;
                while e < b.len() && b[e].is_ascii_whitespace() {
                    e += 1;
                }
                // only a lone string in brackets after something that is not a value is a
                // quoted name; `x["key"]` indexing is decided by the parser (it sees Ident
                // tokens marked by position). Keep both readings: emit the bracket form.
                if b.get(e) == Some(&b']') && !follows_value(&out) {
                    out.push(tok(Tok::Ident(s), start, e + 1));
                    i = e + 1;
                    continue;
                }
            }
        }
        if let Some(s) = SYMBOLS.iter().find(|s| text[i..].starts_with(**s)) {
            // `!in~`/`!has` etc. must not swallow the start of a longer identifier
            let end = i + s.len();
            if s.starts_with('!')
                && s.len() > 2
                && b.get(end)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
            {
                // e.g. `!has_cs`, `!contains_cs`, `!hasprefix`
                let mut j = end;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                    j += 1;
                }
                out.push(tok(Tok::Ident(text[i..j].to_string()), start, j));
                i = j;
                continue;
            }
            out.push(tok(Tok::Sym(s), start, end));
            i = end;
            continue;
        }
        let ch = text[i..].chars().next().unwrap_or('?');
        return Err(KqlError::syntax(
            text,
            i,
            &format!("a KQL token (found {ch:?})"),
        ));
    }
    out.push(tok(Tok::Eof, b.len(), b.len()));
    Ok(out)
}

fn tok(kind: Tok, start: usize, end: usize) -> Token {
    Token { kind, start, end }
}

/// Whether the previous token ends a value (so `[` starts an index, not a quoted name).
fn follows_value(out: &[Token]) -> bool {
    match out.last().map(|t| &t.kind) {
        Some(Tok::Ident(w)) => !is_operator_word(w),
        Some(Tok::Sym(s)) => matches!(*s, ")" | "]"),
        Some(Tok::Str(_)) | Some(Tok::Raw(..)) | Some(Tok::Dollar(_)) => true,
        _ => false,
    }
}

/// Words after which a name, not an index, follows.
fn is_operator_word(w: &str) -> bool {
    matches!(
        w,
        "project"
            | "project-away"
            | "project-keep"
            | "project-rename"
            | "extend"
            | "by"
            | "summarize"
            | "where"
            | "filter"
            | "distinct"
            | "on"
            | "mv-expand"
            | "let"
            | "and"
            | "or"
            | "with"
    )
}

fn matching_paren(text: &str, open: usize) -> Result<usize, KqlError> {
    let b = text.as_bytes();
    let mut depth = 0usize;
    let mut i = open;
    while i < b.len() {
        match b[i] {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Ok(i);
                }
            }
            b'"' | b'\'' => {
                let (_, end) = string(text, i, false)?;
                i = end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    Err(KqlError::syntax(text, open, "a closing ')'"))
}

/// A quoted string starting at `i` (the quote). Returns its value and the offset after it.
fn string(text: &str, i: usize, verbatim: bool) -> Result<(String, usize), KqlError> {
    let b = text.as_bytes();
    let q = b[i];
    let mut out = String::new();
    let mut j = i + 1;
    while j < b.len() {
        let c = b[j];
        if c == q {
            if verbatim && b.get(j + 1) == Some(&q) {
                out.push(q as char);
                j += 2;
                continue;
            }
            return Ok((out, j + 1));
        }
        if c == b'\\' && !verbatim {
            let e = *b
                .get(j + 1)
                .ok_or_else(|| KqlError::syntax(text, j, "an escape after '\\'"))?;
            let ch = match e {
                b'n' => '\n',
                b't' => '\t',
                b'r' => '\r',
                b'0' => '\0',
                b'\\' => '\\',
                b'\'' => '\'',
                b'"' => '"',
                b'u' => {
                    let hex = text
                        .get(j + 2..j + 6)
                        .and_then(|h| u32::from_str_radix(h, 16).ok())
                        .and_then(char::from_u32)
                        .ok_or_else(|| KqlError::syntax(text, j, "four hex digits after \\u"))?;
                    out.push(hex);
                    j += 6;
                    continue;
                }
                _ => {
                    return Err(KqlError::syntax(
                        text,
                        j,
                        "a known escape (\\n \\t \\\\ \\\" \\' \\u)",
                    ))
                }
            };
            out.push(ch);
            j += 2;
            continue;
        }
        if c == b'\n' {
            return Err(KqlError::syntax(
                text,
                i,
                "a string closed on the same line",
            ));
        }
        let ch = text[j..].chars().next().unwrap_or('\u{fffd}');
        out.push(ch);
        j += ch.len_utf8();
    }
    Err(KqlError::syntax(text, i, "a closing quote"))
}

/// An integer, real or timespan starting at `i`.
fn number(text: &str, i: usize) -> Result<(Tok, usize), KqlError> {
    let b = text.as_bytes();
    let mut j = i;
    while j < b.len() && b[j].is_ascii_digit() {
        j += 1;
    }
    let mut real = false;
    if b.get(j) == Some(&b'.') && b.get(j + 1).is_some_and(|c| c.is_ascii_digit()) {
        real = true;
        j += 1;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
    }
    if matches!(b.get(j), Some(b'e') | Some(b'E'))
        && (b.get(j + 1).is_some_and(|c| c.is_ascii_digit())
            || (matches!(b.get(j + 1), Some(b'+') | Some(b'-'))
                && b.get(j + 2).is_some_and(|c| c.is_ascii_digit())))
    {
        real = true;
        j += 2;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
    }
    let num = &text[i..j];
    // a unit directly after the number makes it a timespan
    let mut k = j;
    while k < b.len() && b[k].is_ascii_alphabetic() {
        k += 1;
    }
    if k > j {
        let unit = &text[j..k];
        let ns = UNITS
            .iter()
            .find(|(u, _)| *u == unit)
            .map(|(_, ns)| *ns)
            .ok_or_else(|| {
                KqlError::syntax(
                    text,
                    j,
                    "a timespan unit (d, h, m, s, ms, microsecond, tick)",
                )
            })?;
        let v: f64 = num
            .parse()
            .map_err(|_| KqlError::syntax(text, i, "a number"))?;
        return Ok((Tok::Timespan((v * ns as f64).round() as i64), k));
    }
    if real {
        let v: f64 = num
            .parse()
            .map_err(|_| KqlError::syntax(text, i, "a real number"))?;
        Ok((Tok::Real(v), j))
    } else {
        let v: i64 = num
            .parse()
            .map_err(|_| KqlError::syntax(text, i, "an integer that fits in 64 bits"))?;
        Ok((Tok::Int(v), j))
    }
}

/// Parse the text of a timespan literal: `1d`, `1.5h`, `00:30:00`, `1.02:03:04`.
pub fn parse_timespan(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok((Tok::Timespan(ns), end)) = number(s, 0) {
        if end == s.len() {
            return Some(ns);
        }
    }
    if let Ok(n) = s.parse::<i64>() {
        return Some(n * 86_400_000_000_000);
    }
    // [d.]hh:mm[:ss[.fff]]
    let (days, rest) = match s.split_once('.') {
        Some((d, r)) if r.contains(':') && d.chars().all(|c| c.is_ascii_digit()) => {
            (d.parse::<i64>().ok()?, r)
        }
        _ => (0, s),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    if parts.len() < 2 || parts.len() > 3 {
        return None;
    }
    let h: i64 = parts[0].parse().ok()?;
    let m: i64 = parts[1].parse().ok()?;
    let sec: f64 = parts.get(2).map_or(Ok(0.0), |p| p.parse()).ok()?;
    Some(
        days * 86_400_000_000_000
            + h * 3_600_000_000_000
            + m * 60_000_000_000
            + (sec * 1e9).round() as i64,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(s: &str) -> Vec<Tok> {
        lex(s).unwrap().into_iter().map(|t| t.kind).collect()
    }

    #[test]
    fn operators_literals_and_comments() {
        let k = kinds("T | project-away a // note\n| where x !in~ ('a', \"b\") and y =~ @'c\\d' and t > ago(1d)");
        assert!(k.contains(&Tok::Ident("project-away".into())));
        assert!(k.contains(&Tok::Sym("!in~")));
        assert!(k.contains(&Tok::Str("c\\d".into())));
        assert!(k.contains(&Tok::Timespan(86_400_000_000_000)));
        assert!(!k.iter().any(|t| matches!(t, Tok::Ident(w) if w == "note")));
        let k = kinds("datetime(2024-01-01 10:00) - time(1.02:00:00) + dynamic([1, \"a)\"])");
        assert_eq!(k[0], Tok::Raw("datetime".into(), "2024-01-01 10:00".into()));
        assert_eq!(k[2], Tok::Raw("timespan".into(), "1.02:00:00".into()));
        assert_eq!(k[4], Tok::Raw("dynamic".into(), "[1, \"a)\"]".into()));
        assert_eq!(kinds("a - b")[1], Tok::Sym("-"));
        assert_eq!(kinds("x !has_cs 'a'")[1], Tok::Ident("!has_cs".into()));
        assert_eq!(kinds("1.5h")[0], Tok::Timespan(5_400_000_000_000));
        assert_eq!(kinds("100ms")[0], Tok::Timespan(100_000_000));
        assert_eq!(kinds("1e3")[0], Tok::Real(1000.0));
    }

    #[test]
    fn quoted_names_and_indexes() {
        assert_eq!(kinds("project ['a b']")[1], Tok::Ident("a b".into()));
        let k = kinds("x['a b']");
        assert_eq!(k[1], Tok::Sym("["));
    }

    #[test]
    fn timespan_text() {
        assert_eq!(parse_timespan("1d"), Some(86_400_000_000_000));
        assert_eq!(parse_timespan("00:30:00"), Some(1_800_000_000_000));
        assert_eq!(parse_timespan("1.02:00:00"), Some(93_600_000_000_000));
        assert_eq!(parse_timespan("nope"), None);
    }

    #[test]
    fn errors_point_at_the_problem() {
        let e = lex("T | where a == 'open").unwrap_err();
        assert!(e.to_string().contains("line 1, column 16"), "{e}");
        let e = lex("T | where a == 5x").unwrap_err();
        assert!(e.to_string().contains("timespan unit"), "{e}");
    }
}
