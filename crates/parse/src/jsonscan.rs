//! Byte-level JSON structure scanning: bracket balance across lines (to find where a
//! pretty-printed document ends) and repair of documents cut off mid-way (AKS truncates
//! `properties.log` at 16 KiB) so that the fields before the cut can still be extracted.

/// Incremental bracket-balance tracker. Feed it lines; it reports when the top-level value closed.
#[derive(Debug, Default, Clone)]
pub struct Balance {
    depth: i64,
    in_string: bool,
    escape: bool,
    started: bool,
}

/// What a fed chunk did to the balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BalanceState {
    /// The top-level value is still open.
    Open,
    /// The top-level value closed at this byte offset (exclusive end) within the chunk.
    Closed(usize),
    /// A closing bracket appeared with nothing open: the input is not balanced JSON.
    Invalid,
}

impl Balance {
    /// A fresh tracker.
    pub fn new() -> Balance {
        Balance::default()
    }

    /// Current nesting depth.
    pub fn depth(&self) -> i64 {
        self.depth
    }

    /// Feed the next chunk. Stops at the byte that closes the top-level value.
    pub fn feed(&mut self, chunk: &[u8]) -> BalanceState {
        for (i, &c) in chunk.iter().enumerate() {
            if self.in_string {
                if self.escape {
                    self.escape = false;
                } else if c == b'\\' {
                    self.escape = true;
                } else if c == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match c {
                b'"' => self.in_string = true,
                b'{' | b'[' => {
                    self.depth += 1;
                    self.started = true;
                }
                b'}' | b']' => {
                    self.depth -= 1;
                    if self.depth < 0 {
                        return BalanceState::Invalid;
                    }
                    if self.depth == 0 && self.started {
                        return BalanceState::Closed(i + 1);
                    }
                }
                _ => {}
            }
        }
        // A raw newline cannot be inside a JSON string; a string still open at the end of a line
        // means the line is broken, which the parser will report.
        self.in_string = false;
        self.escape = false;
        BalanceState::Open
    }
}

/// Close a JSON text that was cut off: drop the incomplete trailing member and append the
/// closing brackets, so that everything before the last complete member parses.
///
/// Returns `None` when no complete member precedes the cut (or the text is not an object/array).
pub fn repair_truncated(text: &[u8]) -> Option<Vec<u8>> {
    // Stack of open containers; at each comma outside strings remember the cut point and the
    // stack as it was, so that the repair can close exactly what was open there.
    let mut stack: Vec<u8> = Vec::new();
    let mut in_string = false;
    let mut escape = false;
    let mut best: Option<(usize, Vec<u8>)> = None;
    let start = text.iter().position(|c| !c.is_ascii_whitespace())?;
    if text[start] != b'{' && text[start] != b'[' {
        return None;
    }
    for (i, &c) in text.iter().enumerate().skip(start) {
        if in_string {
            if escape {
                escape = false;
            } else if c == b'\\' {
                escape = true;
            } else if c == b'"' {
                in_string = false;
            }
            continue;
        }
        match c {
            b'"' => in_string = true,
            b'{' => stack.push(b'}'),
            b'[' => stack.push(b']'),
            b'}' | b']' => {
                if stack.pop() != Some(c) {
                    return None;
                }
                if stack.is_empty() {
                    // Not truncated at all: the value closed.
                    return Some(text[..=i].to_vec());
                }
            }
            b',' => best = Some((i, stack.clone())),
            _ => {}
        }
    }
    let (cut, open) = best?;
    let mut out = Vec::with_capacity(cut + open.len());
    out.extend_from_slice(&text[..cut]);
    out.extend(open.iter().rev());
    Some(out)
}

/// Decode a JSON string literal (with its quotes) faster than a general JSON parser can for
/// strings dense with escapes (an audit event embedded in AKS `properties.log`). `None` when the
/// literal is not a valid JSON string.
pub fn unescape_string(lit: &str) -> Option<String> {
    let b = lit.as_bytes();
    if b.len() < 2 || b[0] != b'"' || b[b.len() - 1] != b'"' {
        return None;
    }
    let body = &lit[1..lit.len() - 1];
    let bytes = body.as_bytes();
    let mut out = String::with_capacity(body.len());
    let mut i = 0;
    while i < bytes.len() {
        let Some(p) = memchr::memchr2(b'\\', b'"', &bytes[i..]) else {
            if bytes[i..].iter().any(|&c| c < 0x20) {
                return None;
            }
            out.push_str(&body[i..]);
            break;
        };
        let run = &bytes[i..i + p];
        if run.iter().any(|&c| c < 0x20) {
            return None;
        }
        out.push_str(&body[i..i + p]);
        i += p;
        if bytes[i] == b'"' {
            return None; // an unescaped quote inside the literal
        }
        let esc = *bytes.get(i + 1)?;
        i += 2;
        match esc {
            b'"' => out.push('"'),
            b'\\' => out.push('\\'),
            b'/' => out.push('/'),
            b'b' => out.push('\u{8}'),
            b'f' => out.push('\u{c}'),
            b'n' => out.push('\n'),
            b'r' => out.push('\r'),
            b't' => out.push('\t'),
            b'u' => {
                let hi = hex4(bytes.get(i..i + 4)?)?;
                i += 4;
                let c = if (0xD800..0xDC00).contains(&hi) {
                    // a surrogate pair must follow
                    if bytes.get(i..i + 2)? != b"\\u" {
                        return None;
                    }
                    let lo = hex4(bytes.get(i + 2..i + 6)?)?;
                    if !(0xDC00..0xE000).contains(&lo) {
                        return None;
                    }
                    i += 6;
                    char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))?
                } else {
                    char::from_u32(hi)?
                };
                out.push(c);
            }
            _ => return None,
        }
    }
    Some(out)
}

fn hex4(h: &[u8]) -> Option<u32> {
    let s = std::str::from_utf8(h).ok()?;
    u32::from_str_radix(s, 16)
        .ok()
        .filter(|_| h.iter().all(u8::is_ascii_hexdigit))
}

/// Whether bytes are one valid JSON value (nothing is kept).
pub fn is_valid_json(b: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(b).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balance_across_lines() {
        let mut b = Balance::new();
        assert_eq!(b.feed(b"{"), BalanceState::Open);
        assert_eq!(b.feed(br#"  "a": "}{\"","#), BalanceState::Open);
        assert_eq!(b.feed(b"  \"b\": [1, {}]"), BalanceState::Open);
        assert_eq!(b.feed(b"} trailing"), BalanceState::Closed(1));
    }

    #[test]
    fn balance_invalid() {
        let mut b = Balance::new();
        assert_eq!(b.feed(br#""log":"x"}"#), BalanceState::Invalid);
    }

    #[test]
    fn repair_cuts_at_last_member() {
        let t = br#"{"kind":"Event","verb":"get","user":{"username":"bob","groups":["a","b"#;
        let r = repair_truncated(t).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&r).unwrap();
        assert_eq!(v["verb"], "get");
        assert_eq!(v["user"]["username"], "bob");
        assert_eq!(v["user"]["groups"][0], "a");
    }

    #[test]
    fn repair_inside_string_with_comma() {
        let t = br#"{"a":1,"b":"x, y, z and more"#;
        let r = repair_truncated(t).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&r).unwrap();
        assert_eq!(v["a"], 1);
        assert!(v.get("b").is_none());
    }

    #[test]
    fn repair_gives_up_without_members() {
        assert!(repair_truncated(br#"{"a":"#).is_none());
        assert!(repair_truncated(b"hello").is_none());
    }

    #[test]
    fn unescape_matches_serde() {
        for lit in [
            r#""""#,
            r#""a\"b\\c\/d\n\t\u0026\u00e9\ud83d\ude00""#,
            r#""plain""#,
        ] {
            assert_eq!(
                unescape_string(lit),
                serde_json::from_str::<String>(lit).ok(),
                "{lit}"
            );
        }
        for bad in [
            r#""a"b""#,
            r#""\x""#,
            r#""\ud83d""#,
            "\"a\u{1}\"",
            r#""\u12""#,
            "x",
        ] {
            assert_eq!(unescape_string(bad), None, "{bad}");
            assert!(serde_json::from_str::<String>(bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn unescape_agrees_with_serde_json(s in "\\PC{0,60}") {
            let lit = serde_json::to_string(&s).unwrap();
            proptest::prop_assert_eq!(unescape_string(&lit), Some(s));
        }

        #[test]
        fn unescape_never_accepts_what_serde_rejects(s in "\"[ -~\\\\]{0,30}\"") {
            let ours = unescape_string(&s);
            let theirs = serde_json::from_str::<String>(&s).ok();
            proptest::prop_assert_eq!(ours, theirs);
        }

        #[test]
        fn repair_of_any_prefix_is_valid_or_none(cut in 0usize..400) {
            let doc = br#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a-b-c","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/x/pods?a=b,c","verb":"list","user":{"username":"u","groups":["g1","g2"],"extra":{"k":["v,w"]}},"sourceIPs":["10.0.0.1","::1"],"objectRef":{"resource":"pods","namespace":"x"},"responseStatus":{"metadata":{},"code":200},"annotations":{"a":"b"}}"#;
            let cut = cut.min(doc.len());
            if let Some(r) = repair_truncated(&doc[..cut]) {
                proptest::prop_assert!(serde_json::from_slice::<serde_json::Value>(&r).is_ok(),
                    "repair of {:?} gave {:?}", String::from_utf8_lossy(&doc[..cut]), String::from_utf8_lossy(&r));
            }
        }
    }
}
