//! Cloud delivery envelopes around audit records: what GCP Pub/Sub and AWS CloudWatch Logs wrap
//! them in on the way out of the cloud.
//!
//! | envelope | what is inside |
//! |---|---|
//! | Pub/Sub push body `{"message":{"data":…},"subscription":…}` | one record, base64 |
//! | Pub/Sub pull response `{"receivedMessages":[{"message":{"data":…}}]}` | one record per message |
//! | CloudWatch Logs subscription (Lambda, Firehose) `{"awslogs":{"data":…}}` | base64 of a gzip DATA_MESSAGE |
//! | CloudWatch Logs DATA_MESSAGE `{"messageType":…,"logGroup":…,"logEvents":[…]}` | one record per `logEvents[].message` |
//! | `aws logs filter-log-events` / `get-log-events` output `{"events":[…]}` | one record per `events[].message` |
//! | CloudWatch Logs export to S3: `2024-05-01T10:00:00.000Z {…}` lines | the JSON after the timestamp |
//!
//! The records inside are then framed and detected like any other input; the envelope's
//! metadata that names where they came from (log group and stream, which names the EKS cluster;
//! Pub/Sub subscription and message id) is kept in the source label, which the ledger hashes
//! with the record, and in the event's attributes.

use base64::Engine as _;
use serde_json::{Map, Value};
use std::io::Read;

/// What an envelope holds: the records (each the exact bytes inside the envelope), and where
/// they came from.
#[derive(Debug, Default, PartialEq)]
pub struct Unwrapped {
    /// The records, as delivered inside the envelope.
    pub records: Vec<Inner>,
}

/// One record inside an envelope.
#[derive(Debug, Default, PartialEq)]
pub struct Inner {
    /// Its bytes (decoded from base64 / gzip or unescaped from a JSON string).
    pub bytes: Vec<u8>,
    /// What names its origin, appended to the source label (`#/aws/eks/prod/cluster/kube-apiserver-audit-…`).
    pub origin: Option<String>,
    /// Attributes for the event (`cluster`, `log_group`, `log_stream`, `pubsub_subscription`, …).
    pub attrs: Vec<(String, String)>,
}

/// Whether `map` is an envelope this module opens.
pub fn is_envelope(map: &Map<String, Value>) -> bool {
    pubsub_message(map).is_some()
        || map.get("receivedMessages").is_some_and(Value::is_array)
        || map
            .get("awslogs")
            .and_then(|a| a.get("data"))
            .is_some_and(Value::is_string)
        || (map.contains_key("messageType") && map.contains_key("logEvents"))
        || map
            .get("events")
            .and_then(Value::as_array)
            .is_some_and(|e| {
                !e.is_empty()
                    && e.iter().all(|i| {
                        i.get("message").is_some_and(Value::is_string)
                            && i.get("timestamp").is_some_and(Value::is_number)
                    })
            })
}

/// Whether JSON text starts like an envelope (its first key), before it is parsed: envelopes
/// are containers, bounded by the document limit rather than the record limit.
pub fn looks_like_envelope(bytes: &[u8]) -> bool {
    let b = bytes.strip_prefix(b"{").unwrap_or(bytes);
    let b = &b[b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len())..];
    [
        &b"\"messageType\""[..],
        b"\"awslogs\"",
        b"\"message\"",
        b"\"receivedMessages\"",
        b"\"events\"",
        b"\"owner\"",
        // re-serialized with sorted keys
        b"\"logEvents\"",
        b"\"logGroup\"",
        b"\"logStream\"",
    ]
    .iter()
    .any(|k| b.starts_with(k))
}

fn pubsub_message(map: &Map<String, Value>) -> Option<&Map<String, Value>> {
    let m = map.get("message")?.as_object()?;
    (m.get("data")?.is_string()
        && (map.contains_key("subscription")
            || m.contains_key("messageId")
            || m.contains_key("message_id")))
    .then_some(m)
}

fn b64(s: &str) -> Result<Vec<u8>, String> {
    let s = s.trim();
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(s))
        .map_err(|e| format!("not base64: {e}"))
}

/// The EKS cluster a CloudWatch log group names (`/aws/eks/<cluster>/cluster`).
pub fn eks_cluster(log_group: &str) -> Option<&str> {
    let rest = log_group.strip_prefix("/aws/eks/")?;
    let (name, tail) = rest.split_once('/')?;
    (tail == "cluster" && !name.is_empty()).then_some(name)
}

fn str_of<'a>(m: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    m.get(k).and_then(Value::as_str)
}

fn pubsub_inner(msg: &Map<String, Value>, subscription: Option<&str>) -> Result<Inner, String> {
    let data = str_of(msg, "data").unwrap_or_default();
    let bytes = b64(data).map_err(|e| format!("Pub/Sub message data {e}"))?;
    let id = str_of(msg, "messageId").or_else(|| str_of(msg, "message_id"));
    let mut attrs = Vec::new();
    if let Some(s) = subscription {
        attrs.push(("pubsub_subscription".into(), s.to_string()));
    }
    if let Some(id) = id {
        attrs.push(("pubsub_message_id".into(), id.to_string()));
    }
    Ok(Inner {
        bytes,
        origin: subscription.map(|s| format!("{s}/{}", id.unwrap_or(""))),
        attrs,
    })
}

fn log_events(
    events: &[Value],
    group: Option<&str>,
    stream: Option<&str>,
    out: &mut Unwrapped,
) -> Result<(), String> {
    for (i, e) in events.iter().enumerate() {
        let msg = e
            .get("message")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("log event {i} has no string `message`"))?;
        let stream = e.get("logStreamName").and_then(Value::as_str).or(stream);
        let mut attrs = Vec::new();
        if let Some(g) = group {
            attrs.push(("log_group".into(), g.to_string()));
            if let Some(c) = eks_cluster(g) {
                attrs.push(("cluster".into(), c.to_string()));
            }
        }
        if let Some(s) = stream {
            attrs.push(("log_stream".into(), s.to_string()));
        }
        if let Some(id) = e
            .get("id")
            .or_else(|| e.get("eventId"))
            .and_then(Value::as_str)
        {
            attrs.push(("cloudwatch_event_id".into(), id.to_string()));
        }
        let origin = match (group, stream) {
            (Some(g), Some(s)) => Some(format!("{g}/{s}")),
            (Some(g), None) => Some(g.to_string()),
            (None, Some(s)) => Some(s.to_string()),
            (None, None) => None,
        };
        out.records.push(Inner {
            bytes: msg.trim_end_matches('\n').as_bytes().to_vec(),
            origin,
            attrs,
        });
    }
    Ok(())
}

/// Open an envelope: the records inside, or why it cannot be opened. `max_bytes` bounds what a
/// gzip body may expand to.
pub fn unwrap(map: &Map<String, Value>, max_bytes: usize) -> Result<Unwrapped, String> {
    let mut out = Unwrapped::default();
    if let Some(msg) = pubsub_message(map) {
        out.records
            .push(pubsub_inner(msg, str_of(map, "subscription"))?);
        return Ok(out);
    }
    if let Some(list) = map.get("receivedMessages").and_then(Value::as_array) {
        for (i, r) in list.iter().enumerate() {
            let msg = r
                .get("message")
                .and_then(Value::as_object)
                .ok_or_else(|| format!("receivedMessages[{i}] has no `message` object"))?;
            out.records.push(pubsub_inner(msg, None)?);
        }
        return Ok(out);
    }
    if let Some(data) = map
        .get("awslogs")
        .and_then(|a| a.get("data"))
        .and_then(Value::as_str)
    {
        let gz = b64(data).map_err(|e| format!("awslogs.data {e}"))?;
        let mut body = Vec::new();
        flate2::read::MultiGzDecoder::new(gz.as_slice())
            .take(max_bytes as u64 + 1)
            .read_to_end(&mut body)
            .map_err(|e| format!("awslogs.data is not gzip: {e}"))?;
        if body.len() > max_bytes {
            return Err(format!(
                "awslogs.data expands beyond the {max_bytes} byte document limit"
            ));
        }
        out.records.push(Inner {
            bytes: body,
            ..Inner::default()
        });
        return Ok(out);
    }
    if map.contains_key("messageType") {
        let kind = str_of(map, "messageType").unwrap_or_default();
        if kind == "CONTROL_MESSAGE" {
            // CloudWatch's reachability check: no log events
            return Ok(out);
        }
        if kind != "DATA_MESSAGE" {
            return Err(format!(
                "CloudWatch Logs messageType {kind:?} is not DATA_MESSAGE"
            ));
        }
        let events = map
            .get("logEvents")
            .and_then(Value::as_array)
            .ok_or("CloudWatch Logs DATA_MESSAGE without a `logEvents` array")?;
        log_events(
            events,
            str_of(map, "logGroup"),
            str_of(map, "logStream"),
            &mut out,
        )?;
        return Ok(out);
    }
    if let Some(events) = map.get("events").and_then(Value::as_array) {
        log_events(events, None, None, &mut out)?;
        return Ok(out);
    }
    Err("not a Pub/Sub or CloudWatch Logs envelope".into())
}

/// A CloudWatch Logs export line, `<RFC 3339 time> <message>`: the time and the message, when
/// the message is a JSON object.
pub fn export_line(line: &[u8]) -> Option<(&str, &[u8])> {
    let sp = memchr::memchr(b' ', line)?;
    let (ts, rest) = (&line[..sp], &line[sp + 1..]);
    // the cheap test first: this runs on every text line (CRI lines also start with a time)
    if rest.first() != Some(&b'{') || !ts.first().is_some_and(u8::is_ascii_digit) {
        return None;
    }
    let ts = std::str::from_utf8(ts).ok()?;
    trailwarden_model::Timestamp::parse(ts)
        .is_ok()
        .then_some((ts, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn eks_log_groups_name_the_cluster() {
        assert_eq!(
            eks_cluster("/aws/eks/prod-payments/cluster"),
            Some("prod-payments")
        );
        assert_eq!(eks_cluster("/aws/lambda/x"), None);
        assert_eq!(eks_cluster("/aws/eks//cluster"), None);
    }

    #[test]
    fn awslogs_bodies_are_base64_gzip() {
        let inner = br#"{"messageType":"DATA_MESSAGE","logGroup":"/aws/eks/c1/cluster","logStream":"kube-apiserver-audit-1","logEvents":[{"id":"1","timestamp":1,"message":"{\"kind\":\"Event\"}"}]}"#;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(inner).unwrap();
        let data = base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap());
        let env = map(serde_json::json!({"awslogs": {"data": data}}));
        assert!(is_envelope(&env));
        let u = unwrap(&env, 1 << 20).unwrap();
        assert_eq!(u.records[0].bytes, inner);
        let dm: Value = serde_json::from_slice(inner).unwrap();
        let u = unwrap(&map(dm), 1 << 20).unwrap();
        assert_eq!(u.records[0].bytes, br#"{"kind":"Event"}"#);
        assert_eq!(
            u.records[0].origin.as_deref(),
            Some("/aws/eks/c1/cluster/kube-apiserver-audit-1")
        );
        assert!(u.records[0]
            .attrs
            .contains(&("cluster".into(), "c1".into())));
        // a gzip bomb stops at the limit
        assert!(unwrap(&env, 10).unwrap_err().contains("document limit"));
    }

    #[test]
    fn bad_envelopes_say_what_is_wrong() {
        let e = unwrap(
            &map(serde_json::json!({"message": {"data": "%%%", "messageId": "1"}})),
            1 << 20,
        )
        .unwrap_err();
        assert!(e.contains("Pub/Sub message data not base64"), "{e}");
        let e = unwrap(
            &map(serde_json::json!({"awslogs": {"data": "aGVsbG8="}})),
            1 << 20,
        )
        .unwrap_err();
        assert!(e.contains("not gzip"), "{e}");
        let e = unwrap(
            &map(serde_json::json!({"messageType": "DATA_MESSAGE", "logEvents": [{"id": "1"}]})),
            1 << 20,
        )
        .unwrap_err();
        assert!(e.contains("no string `message`"), "{e}");
        assert!(unwrap(
            &map(serde_json::json!({"messageType": "CONTROL_MESSAGE", "logEvents": []})),
            1 << 20
        )
        .unwrap()
        .records
        .is_empty());
    }

    #[test]
    fn export_lines_split_at_the_first_space() {
        let (t, m) = export_line(br#"2024-05-01T10:00:00.000Z {"kind":"Event"}"#).unwrap();
        assert_eq!(t, "2024-05-01T10:00:00.000Z");
        assert_eq!(m, br#"{"kind":"Event"}"#);
        assert!(export_line(b"May  1 10:00:00 host sshd[1]: x").is_none());
        assert!(export_line(br#"2024-05-01T10:00:00.000Z plain text"#).is_none());
    }
}
