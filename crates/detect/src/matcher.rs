//! Value matchers: one Sigma value with its modifiers compiled once (wildcards resolved to the
//! cheapest test: equality, prefix, suffix, substring; a regex only when the pattern needs one).

use crate::doc::Val;
use base64::Engine as _;
use regex::{Regex, RegexBuilder};
use std::borrow::Cow;
use std::net::IpAddr;

/// A string test.
#[derive(Clone, Debug)]
pub enum Pattern {
    /// Any non-null value (`*`).
    Any,
    /// The whole value.
    Eq(String),
    /// A prefix.
    Prefix(String),
    /// A suffix.
    Suffix(String),
    /// A substring.
    Contains(String),
    /// Anything else (several wildcards, `?`, or the `re` modifier).
    Regex(Regex),
}

/// One compiled value test.
#[derive(Clone, Debug)]
pub enum Matcher {
    /// A string pattern; `cased` = case-sensitive (`|cased`, or `|re` without `i`).
    Str {
        /// The test.
        pattern: Pattern,
        /// Case-sensitive.
        cased: bool,
    },
    /// A number: equal to it (as a number, or as its text in a string field).
    Num(f64),
    /// `lt`, `lte`, `gt`, `gte`.
    Cmp(CmpOp, f64),
    /// `null`: the field is absent or null.
    Null,
    /// A boolean.
    Bool(bool),
    /// `exists`: the field is (or is not) present.
    Exists(bool),
    /// `cidr`: an IP address inside the network.
    Cidr(IpAddr, u8),
    /// `fieldref`: equal to the value of another field.
    FieldRef(String),
}

/// A numeric comparison.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CmpOp {
    /// `<`
    Lt,
    /// `<=`
    Lte,
    /// `>`
    Gt,
    /// `>=`
    Gte,
}

/// `s` as case-insensitive patterns compare it: lowercase when it has an uppercase letter.
pub fn lower(s: &str) -> Cow<'_, str> {
    if s.is_ascii() {
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(s.to_ascii_lowercase())
        } else {
            Cow::Borrowed(s)
        }
    } else if s.chars().any(char::is_uppercase) {
        Cow::Owned(s.to_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// A list of case-insensitive string patterns, any of which may match, tested in one step:
/// the value is lowercased once, equality is one hash lookup, substrings one Aho-Corasick pass,
/// prefixes and suffixes compared in turn.
#[derive(Clone, Debug, Default)]
pub struct StrSet {
    any: bool,
    eq: std::collections::HashSet<String, foldhash::fast::RandomState>,
    prefix: Vec<String>,
    suffix: Vec<String>,
    contains: Option<aho_corasick::AhoCorasick>,
    regex: Vec<Regex>,
}

impl StrSet {
    /// The set of `matchers` when every one is a case-insensitive string pattern (else `None`).
    pub fn new(matchers: &[Matcher]) -> Option<StrSet> {
        let mut set = StrSet::default();
        let mut contains = Vec::new();
        for m in matchers {
            let Matcher::Str {
                pattern,
                cased: false,
            } = m
            else {
                return None;
            };
            match pattern {
                Pattern::Any => set.any = true,
                Pattern::Eq(p) => {
                    set.eq.insert(p.clone());
                }
                Pattern::Prefix(p) => set.prefix.push(p.clone()),
                Pattern::Suffix(p) => set.suffix.push(p.clone()),
                Pattern::Contains(p) => contains.push(p.clone()),
                Pattern::Regex(r) => set.regex.push(r.clone()),
            }
        }
        if !contains.is_empty() {
            // ASCII letters case-insensitively (the value may be ASCII and not lowered);
            // patterns are lowercase, so a lowered non-ASCII value matches as before
            set.contains = Some(
                aho_corasick::AhoCorasick::builder()
                    .ascii_case_insensitive(true)
                    .build(&contains)
                    .ok()?,
            );
        }
        Some(set)
    }

    /// Does testing a value cost more than a hash lookup (substrings, several prefixes or
    /// suffixes, a regex)? Such sets are worth remembering per value (see `rule::ValueCache`).
    pub fn is_costly(&self) -> bool {
        !self.any
            && (self.contains.is_some()
                || !self.regex.is_empty()
                || self.prefix.len() + self.suffix.len() > 2)
    }

    /// Does the string `v` match any pattern?
    pub fn test_str(&self, v: &str) -> bool {
        if self.any {
            return true;
        }
        if self.regex.iter().any(|r| r.is_match(v)) {
            return true;
        }
        // patterns are lowercase; see `comparable`
        let v = comparable(v);
        let b = v.as_bytes();
        (!self.eq.is_empty() && with_ascii_lower(&v, |l| self.eq.contains(l)))
            || self.prefix.iter().any(|p| ci_prefix(b, p))
            || self.suffix.iter().any(|p| ci_suffix(b, p))
            || self
                .contains
                .as_ref()
                .is_some_and(|ac| ac.is_match(v.as_ref()))
    }

    /// Does one value of a field match? (Strings, numbers by their text, booleans as
    /// `true`/`false`, as [`Matcher::test`].)
    pub fn test(&self, v: &Val<'_>) -> bool {
        match v {
            Val::Str(s) | Val::Num(_, s) => self.test_str(s),
            Val::Bool(true) => self.test_str("true"),
            Val::Bool(false) => self.test_str("false"),
            _ => false,
        }
    }
}

impl Pattern {
    /// Case-insensitive test of a value (keywords).
    pub fn test(&self, v: &Val<'_>) -> bool {
        match v {
            Val::Str(s) | Val::Num(_, s) => self.test_str(s, false),
            _ => false,
        }
    }

    fn test_str(&self, v: &str, cased: bool) -> bool {
        if cased || matches!(self, Pattern::Regex(_) | Pattern::Any) {
            return match self {
                Pattern::Any => true,
                Pattern::Eq(p) => v == p,
                Pattern::Prefix(p) => v.starts_with(p.as_str()),
                Pattern::Suffix(p) => v.ends_with(p.as_str()),
                Pattern::Contains(p) => v.contains(p.as_str()),
                Pattern::Regex(r) => r.is_match(v),
            };
        }
        // the pattern is lowercase; see `comparable`
        let v = comparable(v);
        let b = v.as_bytes();
        match self {
            Pattern::Eq(p) => ci(b, p),
            Pattern::Prefix(p) => ci_prefix(b, p),
            Pattern::Suffix(p) => ci_suffix(b, p),
            Pattern::Contains(p) => with_ascii_lower(&v, |v| v.contains(p.as_str())),
            Pattern::Any | Pattern::Regex(_) => true, // answered above
        }
    }
}

/// `v` as case-insensitive tests compare it with lowercase patterns: ASCII text as it is
/// (compared ignoring ASCII case, without lowering it), other text lowered.
fn comparable(v: &str) -> Cow<'_, str> {
    if v.is_ascii() {
        Cow::Borrowed(v)
    } else {
        lower(v)
    }
}

/// Equal ignoring ASCII case.
fn ci(a: &[u8], p: &str) -> bool {
    a.eq_ignore_ascii_case(p.as_bytes())
}

/// Starts with `p`, ignoring ASCII case.
fn ci_prefix(a: &[u8], p: &str) -> bool {
    a.len() >= p.len() && ci(&a[..p.len()], p)
}

/// Ends with `p`, ignoring ASCII case.
fn ci_suffix(a: &[u8], p: &str) -> bool {
    a.len() >= p.len() && ci(&a[a.len() - p.len()..], p)
}

/// `f` of the ASCII text `v` in lowercase (on the stack when short).
fn with_ascii_lower<T>(v: &str, f: impl FnOnce(&str) -> T) -> T {
    if !v.bytes().any(|b| b.is_ascii_uppercase()) {
        return f(v);
    }
    let mut buf = [0u8; 256];
    match buf.get_mut(..v.len()) {
        Some(b) => {
            b.copy_from_slice(v.as_bytes());
            b.make_ascii_lowercase();
            match std::str::from_utf8(b) {
                Ok(s) => f(s),
                Err(_) => f(&v.to_ascii_lowercase()),
            }
        }
        None => f(&v.to_ascii_lowercase()),
    }
}

impl Matcher {
    /// Is this a test of one value on its own (not `Null`, `Exists` or `FieldRef`, which look
    /// at all of a field's values or at another field)?
    pub fn is_per_value(&self) -> bool {
        !matches!(
            self,
            Matcher::Null | Matcher::Exists(_) | Matcher::FieldRef(_)
        )
    }

    /// Does testing a value cost more than a comparison (a substring, a regex, an address
    /// parsed for a network)?
    pub fn is_costly(&self) -> bool {
        matches!(
            self,
            Matcher::Cidr(..)
                | Matcher::Str {
                    pattern: Pattern::Regex(_) | Pattern::Contains(_),
                    ..
                }
        )
    }

    /// Does one value of the field match? (`Null`, `Exists` and `FieldRef` are decided by the
    /// caller, which sees all of the field's values.)
    pub fn test(&self, v: &Val<'_>) -> bool {
        match (self, v) {
            (Matcher::Str { pattern, cased }, Val::Str(s)) => pattern.test_str(s, *cased),
            (Matcher::Str { pattern, cased }, Val::Num(_, s)) => pattern.test_str(s, *cased),
            (Matcher::Str { pattern, cased }, Val::Bool(b)) => {
                pattern.test_str(if *b { "true" } else { "false" }, *cased)
            }
            (Matcher::Num(n), Val::Num(x, _)) => n == x,
            (Matcher::Num(n), Val::Str(s)) => s.trim().parse::<f64>().is_ok_and(|x| x == *n),
            (Matcher::Cmp(op, n), Val::Num(x, _)) => cmp(*op, *x, *n),
            (Matcher::Cmp(op, n), Val::Str(s)) => {
                s.trim().parse::<f64>().is_ok_and(|x| cmp(*op, x, *n))
            }
            (Matcher::Bool(b), Val::Bool(x)) => b == x,
            (Matcher::Bool(b), Val::Str(s)) => {
                s.eq_ignore_ascii_case(if *b { "true" } else { "false" })
            }
            (Matcher::Cidr(net, bits), Val::Str(s)) => s
                .trim()
                .parse::<IpAddr>()
                .is_ok_and(|ip| in_network(ip, *net, *bits)),
            (Matcher::Null, Val::Null) => true,
            _ => false,
        }
    }
}

fn cmp(op: CmpOp, x: f64, n: f64) -> bool {
    match op {
        CmpOp::Lt => x < n,
        CmpOp::Lte => x <= n,
        CmpOp::Gt => x > n,
        CmpOp::Gte => x >= n,
    }
}

fn in_network(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(bits.min(32)))
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(bits.min(128)))
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// Parse `10.0.0.0/8`, `fe80::/10` or a bare address.
pub fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (addr, bits) = match s.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    let ip: IpAddr = addr.trim().parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let bits = match bits {
        Some(b) => b.trim().parse::<u8>().ok().filter(|b| *b <= max)?,
        None => max,
    };
    Some((ip, bits))
}

/// A piece of a Sigma string value.
#[derive(Clone, Debug, PartialEq)]
pub enum Piece {
    /// Literal text.
    Lit(String),
    /// `*`
    Star,
    /// `?`
    One,
}

/// Split a Sigma string into literals and wildcards. `\*`, `\?` and `\\` are escapes; any other
/// backslash is literal (so `C:\Windows\` stays as written).
pub fn pieces(s: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '\\' => match it.peek() {
                Some(&n @ ('*' | '?' | '\\')) => {
                    lit.push(n);
                    it.next();
                }
                _ => lit.push('\\'),
            },
            '*' | '?' => {
                if !lit.is_empty() {
                    out.push(Piece::Lit(std::mem::take(&mut lit)));
                }
                out.push(if c == '*' { Piece::Star } else { Piece::One });
            }
            c => lit.push(c),
        }
    }
    if !lit.is_empty() {
        out.push(Piece::Lit(lit));
    }
    out
}

/// The text of pieces, wildcards escaped again (after a transformation of the literal parts).
pub fn escape_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Compile wildcard pieces into the cheapest pattern.
pub fn compile_pieces(p: &[Piece], cased: bool) -> Result<Pattern, String> {
    let norm = |s: &str| {
        if cased {
            s.to_string()
        } else {
            s.to_lowercase()
        }
    };
    Ok(match p {
        [] => Pattern::Eq(String::new()),
        [Piece::Star] => Pattern::Any,
        [Piece::Lit(a)] => Pattern::Eq(norm(a)),
        [Piece::Lit(a), Piece::Star] => Pattern::Prefix(norm(a)),
        [Piece::Star, Piece::Lit(a)] => Pattern::Suffix(norm(a)),
        [Piece::Star, Piece::Lit(a), Piece::Star] => Pattern::Contains(norm(a)),
        _ => {
            let mut re = String::from("^");
            for piece in p {
                match piece {
                    Piece::Lit(s) => re.push_str(&regex::escape(s)),
                    Piece::Star => re.push_str(".*"),
                    Piece::One => re.push('.'),
                }
            }
            re.push('$');
            Pattern::Regex(build_regex(&re, !cased, false, true)?)
        }
    })
}

/// Build a regex once, with a size limit (rules come from users).
pub fn build_regex(re: &str, i: bool, m: bool, s: bool) -> Result<Regex, String> {
    RegexBuilder::new(re)
        .case_insensitive(i)
        .multi_line(m)
        .dot_matches_new_line(s)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format!("invalid regular expression {re:?}: {e}"))
}

/// `base64`: the value's bytes as base64.
pub fn base64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// `base64offset`: the three encodings of the value at byte offsets 0, 1 and 2 of a larger
/// base64 text, each trimmed to the characters that do not depend on the neighbours.
pub fn base64_offsets(b: &[u8]) -> Vec<String> {
    let starts = [0usize, 2, 3];
    let ends = [None, Some(3usize), Some(2usize)];
    (0..3)
        .map(|i| {
            let mut buf = vec![b' '; i];
            buf.extend_from_slice(b);
            let enc = base64(&buf);
            let start = starts[i];
            let cut = match ends[(b.len() + i) % 3] {
                Some(n) => enc.len().saturating_sub(n),
                None => enc.len(),
            };
            enc.get(start..cut.max(start))
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

/// `windash`: a command-line flag written with `-`, `/`, en dash, em dash or horizontal bar.
pub fn windash(s: &str) -> Vec<String> {
    let dashes = ['-', '/', '\u{2013}', '\u{2014}', '\u{2015}'];
    let mut out: Vec<String> = dashes
        .iter()
        .map(|d| {
            let mut t = String::with_capacity(s.len());
            let mut prev_space = true;
            for c in s.chars() {
                if prev_space && (c == '-' || c == '/') {
                    t.push(*d);
                } else {
                    t.push(c);
                }
                prev_space = c == ' ';
            }
            t
        })
        .collect();
    out.dedup();
    out
}

/// `wide` / `utf16le`, `utf16be`, `utf16` (little endian with a byte-order mark).
pub fn utf16(s: &str, enc: &str) -> Vec<u8> {
    let mut out = Vec::new();
    if enc == "utf16" {
        out.extend_from_slice(&[0xff, 0xfe]);
    }
    for u in s.encode_utf16() {
        let b = if enc == "utf16be" {
            u.to_be_bytes()
        } else {
            u.to_le_bytes()
        };
        out.extend_from_slice(&b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Val<'_> {
        Val::Str(Cow::Borrowed(v))
    }

    #[test]
    fn wildcards_compile_to_the_cheapest_test() {
        let c = |v: &str| compile_pieces(&pieces(v), false).map(|p| format!("{p:?}"));
        assert_eq!(c("abc").as_deref(), Ok("Eq(\"abc\")"));
        assert_eq!(c("AB*").as_deref(), Ok("Prefix(\"ab\")"));
        assert_eq!(c("*ab").as_deref(), Ok("Suffix(\"ab\")"));
        assert_eq!(c("*ab*").as_deref(), Ok("Contains(\"ab\")"));
        assert_eq!(c("*").as_deref(), Ok("Any"));
        assert!(c("a*b").is_ok_and(|p| p.starts_with("Regex")));
        assert_eq!(c("a\\*b").as_deref(), Ok("Eq(\"a*b\")"));
        assert_eq!(
            c("C:\\Windows\\").as_deref(),
            Ok("Eq(\"c:\\\\windows\\\\\")")
        );
    }

    #[test]
    fn matching_is_case_insensitive_unless_cased() {
        let m = Matcher::Str {
            pattern: compile_pieces(&pieces("*Secret*"), false).unwrap_or(Pattern::Any),
            cased: false,
        };
        assert!(m.test(&s("my-SECRET-x")));
        assert!(!m.test(&s("my-secre")));
        let m = Matcher::Str {
            pattern: compile_pieces(&pieces("a?c*"), true).unwrap_or(Pattern::Any),
            cased: true,
        };
        assert!(m.test(&s("abcd")));
        assert!(!m.test(&s("ABCD")));
        assert!(!m.test(&s("ac")));
    }

    #[test]
    fn numbers_cidr_and_encodings() {
        assert!(Matcher::Num(403.0).test(&Val::Num(403.0, Cow::Borrowed("403"))));
        assert!(Matcher::Num(403.0).test(&s("403")));
        assert!(Matcher::Cmp(CmpOp::Gte, 400.0).test(&Val::Num(403.0, Cow::Borrowed("403"))));
        assert!(!Matcher::Cmp(CmpOp::Lt, 400.0).test(&s("403")));
        let (net, bits) = parse_cidr("10.0.0.0/8").unwrap_or((IpAddr::from([0, 0, 0, 0]), 32));
        assert!(Matcher::Cidr(net, bits).test(&s("10.244.1.7")));
        assert!(!Matcher::Cidr(net, bits).test(&s("11.0.0.1")));
        assert!(parse_cidr("10.0.0.0/33").is_none());
        assert_eq!(base64(b"/bin/sh"), "L2Jpbi9zaA==");
        // each offset variant is a substring of the encoding of the value embedded at that offset
        for (i, v) in base64_offsets(b"/etc/shadow").iter().enumerate() {
            let mut text = b"xyz".to_vec();
            text.truncate(i);
            text.extend_from_slice(b"/etc/shadow and more");
            assert!(base64(&text).contains(v.as_str()), "{i}: {v}");
        }
        assert_eq!(windash("-enc x").len(), 5);
        assert_eq!(utf16("A", "utf16le"), vec![0x41, 0]);
    }

    proptest::proptest! {
        /// Case-insensitive tests compare ASCII text without lowering it, and a list is one
        /// set: both must answer as lowering the value and comparing does (Unicode included:
        /// the Kelvin sign lowers to `k`, `İ` to two characters).
        #[test]
        fn case_insensitive_shortcuts_agree_with_lowering(
            pats in proptest::collection::vec("[aAbBkK\u{212A}ßİ*]{0,4}", 1..6),
            v in "[aAbBkK \u{212A}ßİ]{0,6}",
        ) {
            let ms: Vec<Matcher> = pats
                .iter()
                .filter_map(|p| compile_pieces(&pieces(p), false).ok())
                .map(|pattern| Matcher::Str { pattern, cased: false })
                .collect();
            let lowered = v.to_lowercase();
            let lv = if v.chars().any(char::is_uppercase) { lowered.as_str() } else { v.as_str() };
            let reference = |m: &Matcher| match m {
                Matcher::Str { pattern, .. } => match pattern {
                    Pattern::Any => true,
                    Pattern::Eq(p) => lv == p,
                    Pattern::Prefix(p) => lv.starts_with(p.as_str()),
                    Pattern::Suffix(p) => lv.ends_with(p.as_str()),
                    Pattern::Contains(p) => lv.contains(p.as_str()),
                    Pattern::Regex(r) => r.is_match(&v),
                },
                _ => false,
            };
            let want = ms.iter().any(reference);
            let val = Val::Str(Cow::Borrowed(v.as_str()));
            proptest::prop_assert_eq!(ms.iter().any(|m| m.test(&val)), want);
            if let Some(set) = StrSet::new(&ms) {
                proptest::prop_assert_eq!(set.test(&val), want);
            }
        }
    }
}
