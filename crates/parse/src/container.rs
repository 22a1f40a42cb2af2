//! Container logs: Docker json-file lines (`{"log":"…\n","stream":"stdout","time":"…"}`) and
//! CRI text lines (`2016-10-06T00:17:09.669794202Z stdout F message`), with reassembly of lines
//! the runtime split: Docker marks a piece by the missing trailing `\n`, CRI by the `P` tag.
//!
//! A reassembled event's raw bytes are its pieces' lines joined by `\n`, exactly as read.
//! When a log line is itself a structured application audit event, its fields are lifted into
//! the event (the container event stays a container event; `attrs.inner_format` says `app`).

use crate::error::FormatError;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::HashMap;
use trailwarden_model::{Event, Format, Location, Timestamp};

#[derive(Deserialize)]
struct DockerLine {
    log: String,
    #[serde(default)]
    stream: Option<String>,
    #[serde(default)]
    time: Option<String>,
    #[serde(default)]
    attrs: Option<Map<String, Value>>,
}

/// Whether a JSON object is a Docker json-file line.
pub fn is_docker(obj_keys: &[&str]) -> bool {
    obj_keys.contains(&"log") && (obj_keys.contains(&"stream") || obj_keys.contains(&"time"))
}

/// Whether a text line is a CRI log line.
pub fn looks_like_cri(line: &[u8]) -> bool {
    split_cri(line).is_some()
}

/// `(time, stream, partial, content)` of a CRI line.
fn split_cri(line: &[u8]) -> Option<(&str, &str, bool, &[u8])> {
    // Only the header must be text; the content may be any bytes.
    let b = line;
    let t_end = b.iter().position(|&c| c == b' ')?;
    let time = std::str::from_utf8(&b[..t_end]).ok()?;
    if time.len() < 20
        || !time.as_bytes()[..4].iter().all(u8::is_ascii_digit)
        || time.as_bytes()[10] != b'T'
    {
        return None;
    }
    let rest = &b[t_end + 1..];
    let s_end = rest.iter().position(|&c| c == b' ')?;
    let stream = std::str::from_utf8(&rest[..s_end]).ok()?;
    if stream != "stdout" && stream != "stderr" {
        return None;
    }
    let rest = &rest[s_end + 1..];
    let tag_end = rest.iter().position(|&c| c == b' ').unwrap_or(rest.len());
    let tag = std::str::from_utf8(&rest[..tag_end]).ok()?;
    let partial = match tag.split(':').next() {
        Some("P") => true,
        Some("F") => false,
        _ => return None,
    };
    let content = if tag_end < rest.len() {
        &rest[tag_end + 1..]
    } else {
        &[][..]
    };
    Some((time, stream, partial, content))
}

/// One line's contribution to an event.
struct Piece<'a> {
    line: &'a [u8],
    location: Location,
    time: Option<Timestamp>,
    content: &'a [u8],
    attrs: Vec<(String, String)>,
    complete: bool,
}

struct Partial {
    raw: Vec<u8>,
    location: Location,
    time: Option<Timestamp>,
    message: Vec<u8>,
    attrs: Vec<(String, String)>,
}

/// A finished container log event.
#[derive(Debug)]
pub struct Assembled {
    /// The raw bytes (one line, or the pieces' lines joined by `\n`).
    pub raw: Vec<u8>,
    /// Location of the first piece.
    pub location: Location,
    /// The normalized event.
    pub event: Event,
}

/// Reassembles split container log lines, per format and stream.
#[derive(Default)]
pub struct Reassembler {
    open: HashMap<(Format, String), Partial>,
}

impl Reassembler {
    /// A reassembler with nothing open.
    pub fn new() -> Reassembler {
        Reassembler::default()
    }

    fn add(&mut self, format: Format, stream: &str, p: Piece<'_>) -> Option<Assembled> {
        let key = (format, stream.to_string());
        let entry = self.open.entry(key.clone()).or_insert_with(|| Partial {
            raw: Vec::new(),
            location: p.location,
            time: p.time,
            message: Vec::new(),
            attrs: p.attrs,
        });
        if !entry.raw.is_empty() {
            entry.raw.push(b'\n');
        }
        entry.raw.extend_from_slice(p.line);
        entry.message.extend_from_slice(p.content);
        if p.complete {
            let done = self.open.remove(&key)?;
            Some(finish(format, stream, done))
        } else {
            None
        }
    }

    /// Add a Docker json-file line.
    pub fn push_docker(
        &mut self,
        line: &[u8],
        location: Location,
    ) -> Result<Option<Assembled>, FormatError> {
        let d: DockerLine = serde_json::from_slice(line)
            .map_err(|e| FormatError::invalid(format!("Docker json-file line: {e}")))?;
        let time = match d.time.as_deref() {
            Some(t) => Some(
                Timestamp::parse(t)
                    .map_err(|e| FormatError::invalid(format!("Docker json-file time: {e}")))?,
            ),
            None => None,
        };
        let stream = d.stream.unwrap_or_else(|| "stdout".to_string());
        let complete = d.log.ends_with('\n');
        let piece = d.log.strip_suffix('\n').unwrap_or(&d.log);
        let attrs = d
            .attrs
            .map(|m| {
                m.into_iter()
                    .filter_map(|(k, v)| match v {
                        Value::String(s) => Some((format!("attr.{k}"), s)),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(self.add(
            Format::Docker,
            &stream,
            Piece {
                line,
                location,
                time,
                content: piece.as_bytes(),
                attrs,
                complete,
            },
        ))
    }

    /// Add a CRI text line.
    pub fn push_cri(
        &mut self,
        line: &[u8],
        location: Location,
    ) -> Result<Option<Assembled>, FormatError> {
        let (time, stream, partial, content) = split_cri(line).ok_or_else(|| {
            FormatError::invalid("CRI log line: expected `TIME STREAM F|P MESSAGE`")
        })?;
        let t = Timestamp::parse(time)
            .map_err(|e| FormatError::invalid(format!("CRI log time: {e}")))?;
        let stream = stream.to_string();
        Ok(self.add(
            Format::Cri,
            &stream,
            Piece {
                line,
                location,
                time: Some(t),
                content,
                attrs: Vec::new(),
                complete: !partial,
            },
        ))
    }

    /// Close everything still open (end of input); such events are flagged `partial`.
    pub fn flush(&mut self) -> Vec<Assembled> {
        let mut keys: Vec<(Format, String)> = self.open.keys().cloned().collect();
        keys.sort_by_key(|k| self.open.get(k).map(|p| p.location.offset));
        keys.into_iter()
            .filter_map(|k| {
                let p = self.open.remove(&k)?;
                let mut a = finish(k.0, &k.1, p);
                a.event.attrs.insert("partial".into(), "true".into());
                Some(a)
            })
            .collect()
    }
}

fn finish(format: Format, stream: &str, p: Partial) -> Assembled {
    let mut ev = Event::new(format);
    ev.time = p.time;
    ev.category = Some(stream.to_string());
    let message = String::from_utf8_lossy(&p.message).into_owned();
    for (k, v) in p.attrs {
        ev.attrs.insert(k, v);
    }
    ev.attrs.insert("stream".into(), stream.to_string());
    if message.starts_with('{') {
        if let Ok(inner) = crate::app::parse(message.as_bytes()) {
            ev.user = inner.user;
            ev.action = inner.action;
            ev.outcome = inner.outcome;
            ev.origin = inner.origin;
            ev.resource = inner.resource;
            ev.audit_id = inner.audit_id;
            ev.attrs.insert("inner_format".into(), "app".into());
            if inner.time.is_some() {
                ev.attrs.insert(
                    "inner_time".into(),
                    inner.time.map(|t| t.to_rfc3339()).unwrap_or_default(),
                );
            }
        }
    }
    ev.message = Some(message);
    Assembled {
        raw: p.raw,
        location: p.location,
        event: ev,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(n: u64) -> Location {
        Location { line: n, offset: 0 }
    }

    #[test]
    fn cri_partials_reassemble() {
        let mut r = Reassembler::new();
        assert!(r
            .push_cri(b"2023-01-01T00:00:00.1Z stdout P hello ", loc(1))
            .unwrap()
            .is_none());
        assert!(r
            .push_cri(b"2023-01-01T00:00:00.2Z stderr F other", loc(2))
            .unwrap()
            .is_some());
        let a = r
            .push_cri(b"2023-01-01T00:00:00.3Z stdout F world", loc(3))
            .unwrap()
            .unwrap();
        assert_eq!(a.event.message.as_deref(), Some("hello world"));
        assert_eq!(
            a.raw,
            b"2023-01-01T00:00:00.1Z stdout P hello \n2023-01-01T00:00:00.3Z stdout F world"
        );
        assert_eq!(a.location.line, 1);
        assert_eq!(
            a.event.time.unwrap().to_rfc3339(),
            "2023-01-01T00:00:00.100Z"
        );
    }

    #[test]
    fn cri_empty_message_and_bad_lines() {
        let mut r = Reassembler::new();
        let a = r
            .push_cri(b"2023-01-01T00:00:00Z stdout F", loc(1))
            .unwrap()
            .unwrap();
        assert_eq!(a.event.message.as_deref(), Some(""));
        assert!(!looks_like_cri(b"2023-01-01T00:00:00Z stdin F x"));
        assert!(!looks_like_cri(b"hello world F x"));
    }

    #[test]
    fn docker_split_lines_and_flush() {
        let mut r = Reassembler::new();
        assert!(r
            .push_docker(
                br#"{"log":"part one ","stream":"stdout","time":"2019-04-01T17:58:33.598656444Z"}"#,
                loc(1)
            )
            .unwrap()
            .is_none());
        let a = r
            .push_docker(
                br#"{"log":"and two\n","stream":"stdout","time":"2019-04-01T17:58:33.6Z"}"#,
                loc(2),
            )
            .unwrap()
            .unwrap();
        assert_eq!(a.event.message.as_deref(), Some("part one and two"));
        assert!(r
            .push_docker(
                br#"{"log":"dangling","stream":"stderr","time":"2019-04-01T17:58:33.6Z"}"#,
                loc(3)
            )
            .unwrap()
            .is_none());
        let rest = r.flush();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].event.attrs["partial"], "true");
    }

    #[test]
    fn app_event_inside_container_log() {
        let mut r = Reassembler::new();
        let line = br#"{"log":"{\"timestamp\":\"2025-01-01T00:00:00Z\",\"user_id\":\"alice\",\"action\":\"refund\",\"resource\":\"payment/9\",\"result\":\"success\",\"source_ip\":\"10.0.0.9\"}\n","stream":"stdout","time":"2025-01-01T00:00:00.1Z"}"#;
        let a = r.push_docker(line, loc(1)).unwrap().unwrap();
        assert_eq!(a.event.user.identity.name.as_deref(), Some("alice"));
        assert_eq!(a.event.attrs["inner_format"], "app");
    }
}
