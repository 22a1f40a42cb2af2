//! Syslog: RFC 5424 and RFC 3164 messages (with or without the `<PRI>` of a file written by a
//! local daemon, and the RFC 3339 timestamps of rsyslog's high-precision file format), and
//! Log Analytics `Syslog` table rows.
//!
//! Security-relevant message bodies are read further: auditd / AUOMS records forwarded through
//! syslog, sshd logins, sudo and su.

use crate::auditd;
use crate::azure::get_text;
use crate::error::FormatError;
use serde_json::{Map, Value};
use trailwarden_model::{Event, Format, OutcomeResult, Timestamp};

const FACILITIES: [&str; 24] = [
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
];
const SEVERITIES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Whether a text line looks like syslog (5424, 3164, or a file line without PRI).
pub fn looks_like_syslog(line: &[u8]) -> bool {
    if line.first() == Some(&b'<') {
        return parse_pri(line).is_some();
    }
    bsd_time_len(line).is_some() || rfc3339_prefix(line).is_some()
}

/// `(facility, severity, bytes consumed)` of a `<PRI>` prefix.
fn parse_pri(b: &[u8]) -> Option<(u8, u8, usize)> {
    if b.first() != Some(&b'<') {
        return None;
    }
    let end = b.iter().take(5).position(|&c| c == b'>')?;
    let digits = &b[1..end];
    if digits.is_empty() || digits.len() > 3 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let v: u16 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    if v > 191 {
        return None;
    }
    Some(((v / 8) as u8, (v % 8) as u8, end + 1))
}

/// Length of a BSD timestamp `Mmm dd hh:mm:ss` at the start, if any.
fn bsd_time_len(b: &[u8]) -> Option<usize> {
    if b.len() < 16 {
        return None;
    }
    let mon = std::str::from_utf8(&b[..3]).ok()?;
    if !MONTHS.contains(&mon) || b[3] != b' ' {
        return None;
    }
    let day_ok = (b[4] == b' ' || b[4].is_ascii_digit()) && b[5].is_ascii_digit();
    let time_ok = b[6] == b' '
        && b[7].is_ascii_digit()
        && b[8].is_ascii_digit()
        && b[9] == b':'
        && b[12] == b':'
        && b[15] == b' ';
    (day_ok && time_ok).then_some(15)
}

/// Length of an RFC 3339 timestamp at the start followed by a space, if any.
fn rfc3339_prefix(b: &[u8]) -> Option<usize> {
    if b.len() < 20 || !b[..4].iter().all(u8::is_ascii_digit) || b[4] != b'-' || b[10] != b'T' {
        return None;
    }
    let end = b.iter().position(|&c| c == b' ')?;
    Timestamp::parse(std::str::from_utf8(&b[..end]).ok()?).ok()?;
    Some(end)
}

fn bsd_time(s: &str, received: Timestamp) -> Option<Timestamp> {
    let mon = MONTHS.iter().position(|m| *m == &s[..3])? as u32 + 1;
    let day: u32 = s[4..6].trim().parse().ok()?;
    let h: u32 = s[7..9].parse().ok()?;
    let mi: u32 = s[10..12].parse().ok()?;
    let sec: u32 = s[13..15].parse().ok()?;
    if day == 0 || day > 31 || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    // RFC 3164 has no year: take the receive year, or the previous one if that would put the
    // message more than a week in the future.
    let (year, _, _) = trailwarden_model::time::civil_from_days(received.secs().div_euclid(86_400));
    let t = Timestamp::from_civil(year, mon, day, h, mi, sec.min(59), 0);
    if t.0 - received.0 > 7 * 86_400 * trailwarden_model::time::NANOS_PER_SEC {
        Some(Timestamp::from_civil(
            year - 1,
            mon,
            day,
            h,
            mi,
            sec.min(59),
            0,
        ))
    } else {
        Some(t)
    }
}

fn nil(s: &str) -> Option<String> {
    (s != "-" && !s.is_empty()).then(|| s.to_string())
}

fn next_token(s: &str) -> (&str, &str) {
    match s.find(' ') {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, ""),
    }
}

/// Parse RFC 5424 structured data; returns `(params, rest)`.
/// `sd.ID.NAME` → value pairs of RFC 5424 structured data.
type SdParams = Vec<(String, String)>;

fn structured_data(s: &str) -> Result<(SdParams, &str), FormatError> {
    if let Some(rest) = s.strip_prefix('-') {
        return Ok((Vec::new(), rest.strip_prefix(' ').unwrap_or(rest)));
    }
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && b[i] == b'[' {
        i += 1;
        let id_end = s[i..]
            .find([' ', ']'])
            .map(|p| i + p)
            .ok_or_else(|| FormatError::invalid("syslog structured data: unterminated element"))?;
        let id = &s[i..id_end];
        i = id_end;
        loop {
            while i < b.len() && b[i] == b' ' {
                i += 1;
            }
            if i >= b.len() {
                return Err(FormatError::invalid(
                    "syslog structured data: unterminated element",
                ));
            }
            if b[i] == b']' {
                i += 1;
                break;
            }
            let eq = s[i..].find('=').map(|p| i + p).ok_or_else(|| {
                FormatError::invalid("syslog structured data: parameter without `=`")
            })?;
            let name = &s[i..eq];
            i = eq + 1;
            if b.get(i) != Some(&b'"') {
                return Err(FormatError::invalid(
                    "syslog structured data: parameter value not quoted",
                ));
            }
            i += 1;
            let mut val = String::new();
            loop {
                match b.get(i) {
                    None => {
                        return Err(FormatError::invalid(
                            "syslog structured data: unterminated value",
                        ))
                    }
                    Some(b'\\')
                        if matches!(b.get(i + 1), Some(b'"') | Some(b'\\') | Some(b']')) =>
                    {
                        val.push(b[i + 1] as char);
                        i += 2;
                    }
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(_) => {
                        let ch = s[i..].chars().next().unwrap_or('\u{fffd}');
                        val.push(ch);
                        i += ch.len_utf8();
                    }
                }
            }
            out.push((format!("sd.{id}.{name}"), val));
        }
    }
    let rest = &s[i..];
    Ok((out, rest.strip_prefix(' ').unwrap_or(rest)))
}

/// Parse one syslog message (a line of a file, or one frame from the network).
pub fn parse_message(line: &[u8], received: Timestamp) -> Result<Event, FormatError> {
    let text = String::from_utf8_lossy(line);
    let mut s: &str = &text;
    let mut ev = Event::new(Format::Syslog);
    if let Some((fac, sev, n)) = parse_pri(line) {
        ev.attrs
            .insert("facility".into(), FACILITIES[fac as usize].to_string());
        ev.attrs
            .insert("severity".into(), SEVERITIES[sev as usize].to_string());
        ev.level = Some(SEVERITIES[sev as usize].to_string());
        s = &s[n..];
    } else if line.first() == Some(&b'<') {
        return Err(FormatError::invalid("syslog: malformed <PRI>"));
    }
    if let Some(rest) = s.strip_prefix("1 ") {
        // RFC 5424
        let (ts, rest) = next_token(rest);
        if ts != "-" {
            ev.time =
                Some(Timestamp::parse(ts).map_err(|e| {
                    FormatError::invalid(format!("syslog RFC 5424 timestamp: {e}"))
                })?);
        }
        let (host, rest) = next_token(rest);
        let (app, rest) = next_token(rest);
        let (procid, rest) = next_token(rest);
        let (msgid, rest) = next_token(rest);
        let (sd, msg) = structured_data(rest)?;
        ev.origin.host = nil(host);
        ev.attr("app", nil(app));
        ev.attr("procid", nil(procid));
        ev.attr("msgid", nil(msgid));
        for (k, v) in sd {
            ev.attrs.insert(k, v);
        }
        let msg = msg.strip_prefix('\u{feff}').unwrap_or(msg);
        ev.message = Some(msg.to_string());
        ev.attrs.insert("syslog_format".into(), "rfc5424".into());
    } else {
        let (time, rest) = if let Some(n) = bsd_time_len(s.as_bytes()) {
            (bsd_time(&s[..n], received), &s[n + 1..])
        } else if let Some(n) = rfc3339_prefix(s.as_bytes()) {
            (Timestamp::parse(&s[..n]).ok(), &s[n + 1..])
        } else {
            return Err(FormatError::invalid(
                "syslog: expected an RFC 5424 header (`1 TIMESTAMP …`) or an RFC 3164 timestamp (`Mmm dd hh:mm:ss`)",
            ));
        };
        ev.time = time;
        let (host, rest) = next_token(rest.trim_start());
        ev.origin.host = nil(host);
        // TAG[PID]: MSG
        let (tag, msg) = match rest.find(": ") {
            Some(i) if !rest[..i].contains(' ') => (&rest[..i], &rest[i + 2..]),
            _ => match rest.strip_suffix(':') {
                Some(t) if !t.contains(' ') => (t, ""),
                _ => ("", rest),
            },
        };
        if !tag.is_empty() {
            let (app, pid) = match tag.find('[') {
                Some(i) => (&tag[..i], tag[i + 1..].strip_suffix(']')),
                None => (tag, None),
            };
            ev.attr("app", nil(app));
            ev.attr("procid", pid);
        }
        ev.message = Some(msg.to_string());
        ev.attrs.insert("syslog_format".into(), "rfc3164".into());
    }
    interpret_message(&mut ev);
    Ok(ev)
}

/// Parse a Log Analytics `Syslog` table row.
pub fn parse_row(obj: &Map<String, Value>) -> Result<Event, FormatError> {
    let mut ev = Event::new(Format::Syslog);
    for (keys, what) in [
        (&["EventTime"][..], "EventTime"),
        (&["TimeGenerated"][..], "TimeGenerated"),
    ] {
        if ev.time.is_none() {
            if let Some(t) = get_text(obj, keys) {
                ev.time = Some(
                    Timestamp::parse(&t)
                        .map_err(|e| FormatError::invalid(format!("Syslog row {what}: {e}")))?,
                );
            }
        }
    }
    ev.origin.host = get_text(obj, &["HostName", "Computer"]);
    if let Some(ip) = get_text(obj, &["HostIP"]).filter(|s| !s.is_empty() && s != "Unknown IP") {
        ev.origin.ips = Some(vec![ip.clone()]);
        ev.origin.trusted_ip = Some(ip);
    }
    ev.attr("facility", get_text(obj, &["Facility"]));
    ev.attr("severity", get_text(obj, &["SeverityLevel"]));
    ev.level = get_text(obj, &["SeverityLevel"]);
    ev.attr("app", get_text(obj, &["ProcessName"]));
    ev.attr(
        "procid",
        get_text(obj, &["ProcessID"]).filter(|p| !p.is_empty()),
    );
    ev.attr("computer", get_text(obj, &["Computer"]));
    ev.attr("resource_id", get_text(obj, &["_ResourceId"]));
    ev.attrs.insert("table".into(), "Syslog".into());
    ev.message = get_text(obj, &["SyslogMessage"]);
    interpret_message(&mut ev);
    Ok(ev)
}

/// Whether an object is a Log Analytics Syslog row.
pub fn is_row(obj: &Map<String, Value>) -> bool {
    obj.contains_key("SyslogMessage") || get_text(obj, &["Type"]).is_some_and(|t| t == "Syslog")
}

/// Read security-relevant message bodies: forwarded audit records, sshd, sudo, su.
fn interpret_message(ev: &mut Event) {
    let Some(msg) = ev.message.clone() else {
        return;
    };
    let app = ev.attrs.get("app").cloned().unwrap_or_default();
    // auditd / AUOMS records (`type=X msg=audit(…)` or `type=X audit(…)`), possibly after a
    // `node=` prefix or an audispd tag.
    if let Some(pos) = msg.find("type=").filter(|_| msg.contains("audit(")) {
        let start = msg[..pos].rfind("node=").unwrap_or(pos);
        if let Ok(rec) = auditd::parse_record(&msg[start..]) {
            let a = auditd::build_event(std::slice::from_ref(&rec));
            ev.attrs
                .insert("audit_type".into(), rec.record_type.clone());
            ev.user = a.user;
            ev.action = a.action;
            ev.outcome = a.outcome;
            if ev.origin.ips.is_none() {
                ev.origin.ips = a.origin.ips;
                ev.origin.trusted_ip = a.origin.trusted_ip;
            }
            ev.resource = a.resource;
            ev.audit_id = a.audit_id;
            for (k, v) in a.attrs {
                ev.attrs.entry(k).or_insert(v);
            }
            ev.category = Some(rec.record_type);
            return;
        }
    }
    let words: Vec<&str> = msg.split_whitespace().collect();
    let after = |w: &str| {
        words
            .iter()
            .position(|x| *x == w)
            .and_then(|i| words.get(i + 1))
            .map(|s| s.to_string())
    };
    if app == "sshd" {
        if msg.starts_with("Accepted ") {
            ev.action = Some("ssh_login".into());
            ev.outcome.result = OutcomeResult::Success;
            ev.user.identity.name = after("for");
            ev.attr("auth_method", words.get(1).map(|s| s.to_string()));
        } else if msg.starts_with("Failed ") || msg.starts_with("Invalid user ") {
            ev.action = Some("ssh_login".into());
            ev.outcome.result = OutcomeResult::Failure;
            ev.outcome.reason = Some(
                if msg.starts_with("Invalid") {
                    "invalid user"
                } else {
                    "failed authentication"
                }
                .into(),
            );
            ev.user.identity.name =
                if msg.contains("invalid user") || msg.starts_with("Invalid user ") {
                    after("user")
                } else {
                    after("for")
                };
        }
        if let Some(ip) = after("from") {
            ev.origin.ips = Some(vec![ip.clone()]);
            ev.origin.trusted_ip = Some(ip);
        }
    } else if app == "sudo" {
        // `alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/bin/ls`
        if let Some((user, rest)) = msg.split_once(" : ") {
            ev.user.identity.name = Some(user.trim().to_string());
            ev.action = Some("sudo".into());
            ev.outcome.result = if rest.contains("incorrect password")
                || rest.contains("NOT in sudoers")
                || rest.contains("command not allowed")
            {
                OutcomeResult::Failure
            } else {
                OutcomeResult::Success
            };
            for part in rest.split(" ; ") {
                if let Some((k, v)) = part.trim().split_once('=') {
                    match k {
                        "USER" => ev.attrs.insert("target_user".into(), v.to_string()),
                        "COMMAND" => ev.attrs.insert("command".into(), v.to_string()),
                        "TTY" => ev.attrs.insert("tty".into(), v.to_string()),
                        _ => None,
                    };
                }
            }
        }
    } else if app == "su" || app.starts_with("su[") {
        if msg.starts_with("FAILED SU") {
            ev.action = Some("su".into());
            ev.outcome.result = OutcomeResult::Failure;
        } else if msg.starts_with("(to ") || msg.contains("session opened") {
            ev.action = Some("su".into());
            ev.outcome.result = OutcomeResult::Success;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rx() -> Timestamp {
        Timestamp::parse("2024-03-01T00:00:00Z").unwrap()
    }

    #[test]
    fn rfc5424_with_sd() {
        let ev = parse_message(
            br#"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Appl\"ication"] BOMAn application event"#,
            rx(),
        )
        .unwrap();
        assert_eq!(ev.attrs["facility"], "local4");
        assert_eq!(ev.level.as_deref(), Some("notice"));
        assert_eq!(ev.origin.host.as_deref(), Some("mymachine.example.com"));
        assert_eq!(
            ev.attrs["sd.exampleSDID@32473.eventSource"],
            "Appl\"ication"
        );
        assert_eq!(ev.message.as_deref(), Some("BOMAn application event"));
        assert!(!ev.attrs.contains_key("procid"));
    }

    #[test]
    fn rfc3164_sshd_failure_year_inferred() {
        let ev = parse_message(b"<38>Feb 29 23:59:01 bastion sshd[4242]: Failed password for invalid user admin from 203.0.113.9 port 50022 ssh2", rx()).unwrap();
        assert_eq!(ev.time.unwrap().to_rfc3339(), "2024-02-29T23:59:01Z");
        assert_eq!(ev.attrs["app"], "sshd");
        assert_eq!(ev.attrs["procid"], "4242");
        assert_eq!(ev.user.identity.name.as_deref(), Some("admin"));
        assert_eq!(ev.outcome.result, OutcomeResult::Failure);
        assert_eq!(ev.origin.trusted_ip.as_deref(), Some("203.0.113.9"));
    }

    #[test]
    fn december_message_received_in_january_is_last_year() {
        let ev = parse_message(
            b"Dec 31 23:59:59 h cron[1]: x",
            Timestamp::parse("2025-01-01T00:00:10Z").unwrap(),
        )
        .unwrap();
        assert_eq!(ev.time.unwrap().to_rfc3339(), "2024-12-31T23:59:59Z");
    }

    #[test]
    fn sudo_line() {
        let ev = parse_message(b"Mar  1 10:00:00 node1 sudo:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/cat /etc/shadow", rx()).unwrap();
        assert_eq!(ev.user.identity.name.as_deref(), Some("alice"));
        assert_eq!(ev.attrs["command"], "/usr/bin/cat /etc/shadow");
        assert_eq!(ev.attrs["target_user"], "root");
    }

    #[test]
    fn forwarded_audit_record() {
        let ev = parse_message(b"<85>Mar  1 10:00:00 node1 audispd: node=node1 type=USER_AUTH msg=audit(1709287200.000:77): pid=1 uid=0 auid=1000 ses=3 msg='op=PAM:authentication acct=\"bob\" exe=\"/usr/bin/su\" hostname=? addr=? terminal=pts/1 res=failed'", rx()).unwrap();
        assert_eq!(ev.attrs["audit_type"], "USER_AUTH");
        assert_eq!(ev.user.identity.name.as_deref(), Some("bob"));
        assert_eq!(ev.outcome.result, OutcomeResult::Failure);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse_message(b"<999>hello", rx()).is_err());
        assert!(parse_message(b"hello world", rx()).is_err());
        assert!(parse_message(b"<13>1 2003-10-11T22:14:15Z h a p m [unterminated", rx()).is_err());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "(<[0-9]{1,3}>)?(1 )?[ -~]{0,120}") {
            let _ = parse_message(s.as_bytes(), rx());
        }
    }
}
