//! The sinks: how an [`AlertMessage`] is written for each receiver, and sent.

use crate::config::{Sink, SinkKind};
use crate::http::post;
use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use trailwarden_alert::AlertMessage;
use trailwarden_model::Timestamp;

/// How one attempt ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The receiver took it.
    Delivered,
    /// Try again (after `retry_after` when the receiver said so).
    Retry {
        /// What went wrong.
        error: String,
        /// The receiver's `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// The receiver refused it for good (a 4xx other than 408/425/429): dead-lettered now.
    Refused {
        /// What went wrong.
        error: String,
    },
}

/// The HTTP status's outcome (Standard Webhooks / Alertmanager's retrier semantics).
fn http_outcome(status: u16, retry_after: Option<Duration>, body: &str) -> Outcome {
    let snippet: String = body.chars().take(200).collect();
    match status {
        200..=299 => Outcome::Delivered,
        408 | 425 | 429 | 500 | 502..=599 => Outcome::Retry {
            error: format!("HTTP {status} {snippet}").trim_end().to_string(),
            retry_after,
        },
        _ => Outcome::Refused {
            error: format!("HTTP {status} {snippet}").trim_end().to_string(),
        },
    }
}

/// The Standard Webhooks key: `whsec_` + base64 of 24–64 random bytes.
pub fn webhook_key(secret: &str) -> Result<Vec<u8>, String> {
    let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| format!("not whsec_ + base64 ({e})"))?;
    if !(24..=64).contains(&key.len()) {
        return Err(format!(
            "the key is {} bytes; Standard Webhooks keys are 24 to 64 bytes",
            key.len()
        ));
    }
    Ok(key)
}

/// `webhook-signature` for `id`, `timestamp` (Unix seconds) and the raw body:
/// `v1,` + base64(HMAC-SHA256(key, "id.timestamp.body")).
pub fn webhook_signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length; new_from_slice cannot fail for it
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

fn ts(ns: i64) -> String {
    Timestamp(ns).to_rfc3339()
}

/// Link to the alert in the API, when `external_url` is set.
pub fn link(external: Option<&str>, m: &AlertMessage) -> Option<String> {
    external.map(|u| format!("{}/v1/alerts/{}", u.trim_end_matches('/'), m.alert_id))
}

/// The JSON body of a webhook delivery (documented in the OpenAPI document as
/// `AlertWebhook`).
pub fn webhook_body(m: &AlertMessage, external: Option<&str>, cluster: Option<&str>) -> String {
    json!({
        "type": format!("alert.{}", m.event),
        "timestamp": ts(Timestamp::now().0),
        "data": {
            "id": m.key, "event": m.event, "alert_id": m.alert_id, "version": m.version,
            "rule_id": m.rule_id, "title": m.title, "level": m.level, "tags": m.tags,
            "status": m.status, "summary": m.summary, "group_key": m.group_key,
            "namespace": m.namespace, "source": m.source, "cluster": cluster,
            "evidence": m.evidence, "evidence_truncated": m.evidence_truncated,
            "count": m.count, "first_seen": ts(m.first_seen), "last_seen": ts(m.last_seen),
            "created_at": ts(m.created_at), "actor": m.actor, "note": m.note,
            "link": link(external, m),
        }
    })
    .to_string()
}

fn tag_values(m: &AlertMessage, prefix: &str) -> String {
    m.tags
        .iter()
        .filter_map(|t| t.strip_prefix(prefix))
        .collect::<Vec<_>>()
        .join(",")
}

fn evidence_text(m: &AlertMessage) -> String {
    let shown: Vec<String> = m.evidence.iter().take(20).map(|i| i.to_string()).collect();
    let mut s = format!("ledger indexes {}", shown.join(", "));
    if m.evidence.len() > 20 || m.evidence_truncated {
        s.push_str(&format!(" … ({} events counted)", m.count));
    }
    s
}

/// One Alertmanager API v2 alert: labels identify it (the alert id is one, so two alerts of a
/// rule stay two), `endsAt` in the future while it is open, the change time once resolved.
pub fn alertmanager_alert(
    m: &AlertMessage,
    external: Option<&str>,
    cluster: Option<&str>,
    now: i64,
    firing_for: Duration,
) -> serde_json::Value {
    let mut labels = serde_json::Map::new();
    labels.insert("alertname".into(), json!(m.title));
    labels.insert("severity".into(), json!(m.level));
    labels.insert("rule_id".into(), json!(m.rule_id));
    labels.insert("alert_id".into(), json!(m.alert_id.to_string()));
    labels.insert("source".into(), json!("trailwarden"));
    for (k, v) in [
        ("pci_dss", tag_values(m, "pci_dss.")),
        ("attack", tag_values(m, "attack.")),
    ] {
        if !v.is_empty() {
            labels.insert(k.into(), json!(v));
        }
    }
    if let Some(ns) = &m.namespace {
        labels.insert("namespace".into(), json!(ns));
    }
    if let Some(c) = cluster {
        labels.insert("cluster".into(), json!(c));
    }
    let ends = if m.firing() {
        now + firing_for.as_nanos() as i64
    } else {
        now
    };
    let mut a = json!({
        "labels": labels,
        "annotations": {
            "summary": m.summary,
            "description": format!("{} ({}): {} — {} events, status {}, version {}",
                m.title, m.level, m.summary, m.count, m.status, m.version),
            "evidence": evidence_text(m),
            "status": m.status,
            "idempotency_key": m.key,
        },
        "startsAt": ts(m.first_seen.min(now)),
        "endsAt": ts(ends),
    });
    if let Some(l) = link(external, m) {
        a["generatorURL"] = json!(l);
        a["annotations"]["link"] = json!(l);
    }
    a
}

fn level_badge(level: &str) -> &'static str {
    match level {
        "critical" => ":red_circle: CRITICAL",
        "high" => ":large_orange_circle: HIGH",
        "medium" => ":large_yellow_circle: MEDIUM",
        "low" => ":large_blue_circle: LOW",
        _ => ":white_circle: INFO",
    }
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_string();
    }
    let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A Slack incoming-webhook message (Block Kit; `text` is the notification fallback).
pub fn slack_body(m: &AlertMessage, external: Option<&str>) -> String {
    let head = format!("{} {} ({})", level_badge(&m.level), m.title, m.event);
    let mut fields = vec![
        json!({"type": "mrkdwn", "text": format!("*Status*\n{}", m.status)}),
        json!({"type": "mrkdwn", "text": format!("*Rule*\n`{}`", clip(&m.rule_id, 200))}),
        json!({"type": "mrkdwn", "text": format!("*Events*\n{}", m.count)}),
        json!({"type": "mrkdwn", "text": format!("*Evidence*\n{}", clip(&evidence_text(m), 500))}),
    ];
    if let Some(ns) = &m.namespace {
        fields.push(json!({"type": "mrkdwn", "text": format!("*Namespace*\n{}", clip(ns, 200))}));
    }
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": clip(&head, 150), "emoji": true}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": clip(&m.summary, 2900)}}),
        json!({"type": "section", "fields": fields}),
    ];
    let mut ctx = format!("alert {} · {} · ", m.alert_id, m.key);
    if let (Some(a), Some(n)) = (&m.actor, &m.note) {
        ctx.push_str(&format!("{a}: {} · ", clip(n, 500)));
    }
    match link(external, m) {
        Some(l) => ctx.push_str(&format!("<{l}|open in trailwarden>")),
        None => ctx.push_str("trailwarden"),
    }
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": ctx}]}));
    json!({
        "text": clip(&format!("[{}] {}: {}", m.level.to_uppercase(), m.title, m.summary), 3000),
        "blocks": blocks,
    })
    .to_string()
}

/// RFC 5424 severity of a Sigma level.
fn severity(level: &str) -> u8 {
    match level {
        "critical" => 2,
        "high" => 3,
        "medium" => 4,
        "low" => 5,
        _ => 6,
    }
}

/// CEF severity (0–10) of a Sigma level.
fn cef_severity(level: &str) -> u8 {
    match level {
        "critical" => 10,
        "high" => 8,
        "medium" => 5,
        "low" => 3,
        _ => 1,
    }
}

/// Escape an RFC 5424 SD-PARAM value (`"`, `\` and `]`).
fn sd_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '"' | '\\' | ']') {
            o.push('\\');
        }
        o.push(c);
    }
    o
}

/// Escape a CEF header field (`\` and `|`).
pub fn cef_header(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\n', '\r'], " ")
}

/// Escape a CEF extension value (`\`, `=`, newlines).
pub fn cef_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('=', "\\=")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

/// The CEF payload (ArcSight Common Event Format) of a message.
pub fn cef(m: &AlertMessage, cluster: Option<&str>, external: Option<&str>) -> String {
    let mut ext = vec![
        format!("rt={}", m.last_seen / 1_000_000),
        format!("act={}", cef_value(&m.event)),
        format!("cat={}", cef_value(&m.tags.join(","))),
        format!("msg={}", cef_value(&m.summary)),
        format!("externalId={}", cef_value(&m.key)),
        format!("cnt={}", m.count),
        "cs1Label=status".into(),
        format!("cs1={}", cef_value(&m.status)),
        "cs2Label=evidence".into(),
        format!("cs2={}", cef_value(&evidence_text(m))),
    ];
    if let Some(ns) = &m.namespace {
        ext.push("cs3Label=namespace".into());
        ext.push(format!("cs3={}", cef_value(ns)));
    }
    if let Some(c) = cluster {
        ext.push("cs4Label=cluster".into());
        ext.push(format!("cs4={}", cef_value(c)));
    }
    if let Some(l) = link(external, m) {
        ext.push(format!("request={}", cef_value(&l)));
    }
    format!(
        "CEF:0|trailwarden|trailwarden|{}|{}|{}|{}|{}",
        env!("CARGO_PKG_VERSION"),
        cef_header(&m.rule_id),
        cef_header(&m.title),
        cef_severity(&m.level),
        ext.join(" ")
    )
}

/// Our structured-data id. 32473 is the documentation PEN of RFC 5612 (trailwarden has no
/// enterprise number of its own).
pub const SD_ID: &str = "trailwarden@32473";

/// One RFC 5424 message (without framing).
pub fn rfc5424(
    m: &AlertMessage,
    facility: u8,
    hostname: &str,
    cef_payload: bool,
    cluster: Option<&str>,
    external: Option<&str>,
) -> String {
    let pri = u16::from(facility) * 8 + u16::from(severity(&m.level));
    let mut sd = format!("[{SD_ID}");
    let params: Vec<(&str, String)> = vec![
        ("id", m.key.clone()),
        ("event", m.event.clone()),
        ("alert_id", m.alert_id.to_string()),
        ("version", m.version.to_string()),
        ("rule_id", m.rule_id.clone()),
        ("level", m.level.clone()),
        ("status", m.status.clone()),
        ("count", m.count.to_string()),
        ("tags", m.tags.join(",")),
        ("namespace", m.namespace.clone().unwrap_or_default()),
        ("evidence", evidence_text(m)),
    ];
    for (k, v) in params {
        sd.push_str(&format!(" {k}=\"{}\"", sd_escape(&v)));
    }
    sd.push(']');
    let msg = if cef_payload {
        cef(m, cluster, external)
    } else {
        format!("{}: {}", m.title, m.summary)
    };
    let host: String = hostname
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    format!(
        "<{pri}>1 {} {} trailwarden - ALERT {sd} {}",
        ts(Timestamp::now().0),
        if host.is_empty() { "-".into() } else { host },
        msg.replace(['\n', '\r'], " ")
    )
}

/// A subject and the plain-text and HTML parts of an e-mail.
pub fn email_parts(m: &AlertMessage, external: Option<&str>) -> (String, String, String) {
    let subject = clip(
        &format!(
            "[trailwarden {}] {} ({})",
            m.level.to_uppercase(),
            m.title,
            m.event
        ),
        200,
    );
    let mut text = format!(
        "{}\n\nLevel: {}\nStatus: {}\nRule: {}\nEvents: {}\nFirst seen: {}\nLast seen: {}\nEvidence: {}\nTags: {}\n",
        m.summary,
        m.level,
        m.status,
        m.rule_id,
        m.count,
        ts(m.first_seen),
        ts(m.last_seen),
        evidence_text(m),
        m.tags.join(", ")
    );
    if let Some(ns) = &m.namespace {
        text.push_str(&format!("Namespace: {ns}\n"));
    }
    if let (Some(a), Some(n)) = (&m.actor, &m.note) {
        text.push_str(&format!("{a}: {n}\n"));
    }
    if let Some(l) = link(external, m) {
        text.push_str(&format!("\n{l}\n"));
    }
    text.push_str(&format!("\nIdempotency key: {}\n", m.key));
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let rows: String = text
        .lines()
        .skip(2)
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| {
            format!(
                "<tr><th align=\"left\">{}</th><td>{}</td></tr>",
                esc(k),
                esc(v)
            )
        })
        .collect();
    let html = format!(
        "<!doctype html><html><body><h2>{}</h2><p>{}</p><table>{rows}</table>{}</body></html>",
        esc(&m.title),
        esc(&m.summary),
        link(external, m)
            .map(|l| format!("<p><a href=\"{}\">open in trailwarden</a></p>", esc(&l)))
            .unwrap_or_default()
    );
    (subject, text, html)
}

/// A configured sink, ready to send.
pub struct Sender {
    /// Its configuration.
    pub cfg: Sink,
    urls: Vec<http::Uri>,
    key: Option<Vec<u8>>,
    tls: Arc<rustls::ClientConfig>,
    pool: Arc<crate::http::Pool>,
    smtp: Option<lettre::AsyncSmtpTransport<lettre::Tokio1Executor>>,
    hostname: String,
    external: Option<String>,
    cluster: Option<String>,
    timeout: Duration,
}

impl Sender {
    /// Build the sink (secrets read now; errors name the setting).
    pub fn new(
        cfg: &Sink,
        external: Option<String>,
        cluster: Option<String>,
    ) -> Result<Sender, String> {
        cfg.check()?;
        let urls = cfg.resolved_urls()?;
        let key = match crate::config::secret("secret", &cfg.secret_file, &cfg.secret_env)? {
            Some(s) => Some(webhook_key(&s)?),
            None => None,
        };
        let tls = crate::tls::client_config(cfg.ca_file.as_deref(), true)?;
        let timeout = Duration::from_secs(cfg.timeout_seconds);
        let smtp = if cfg.kind == SinkKind::Email {
            Some(smtp_transport(cfg, timeout)?)
        } else {
            None
        };
        Ok(Sender {
            cfg: cfg.clone(),
            urls,
            key,
            tls,
            pool: Arc::default(),
            smtp,
            hostname: hostname(),
            external,
            cluster,
            timeout,
        })
    }

    /// How long an Alertmanager keeps an alert firing after a send: 4 × the resend interval,
    /// as Prometheus does.
    pub fn firing_for(&self) -> Duration {
        Duration::from_nanos(
            crate::config::duration_ns(&self.cfg.resend_interval).unwrap_or(60_000_000_000) as u64
                * 4,
        )
    }

    /// Send `msgs` (one claim's worth); one outcome per message, in order.
    pub async fn send_all(&self, msgs: &[AlertMessage]) -> Vec<Outcome> {
        match self.cfg.kind {
            SinkKind::Alertmanager => {
                let o = self.alertmanager(msgs).await;
                vec![o; msgs.len()]
            }
            SinkKind::Syslog => self.syslog(msgs).await,
            _ => {
                let mut out = Vec::with_capacity(msgs.len());
                let futs = msgs.iter().map(|m| self.send_one(m));
                for o in futures_util::future::join_all(futs).await {
                    out.push(o);
                }
                out
            }
        }
    }

    async fn send_one(&self, m: &AlertMessage) -> Outcome {
        match self.cfg.kind {
            SinkKind::Webhook => self.webhook(m).await,
            SinkKind::Slack => {
                self.http_all(slack_body(m, self.external.as_deref()), &[])
                    .await
            }
            SinkKind::Email => self.email(m).await,
            SinkKind::Alertmanager => self.alertmanager(std::slice::from_ref(m)).await,
            SinkKind::Syslog => self
                .syslog(std::slice::from_ref(m))
                .await
                .pop()
                .unwrap_or(Outcome::Delivered),
        }
    }

    /// POST to every URL: delivered when one of them took it (an HA pair gossips the rest).
    async fn http_all(&self, body: String, headers: &[(&str, String)]) -> Outcome {
        let body = Bytes::from(body);
        let mut errors = Vec::new();
        let mut retry_after = None;
        let mut refused = true;
        let mut delivered = false;
        for u in &self.urls {
            match post(
                &self.tls,
                &self.pool,
                u,
                headers,
                body.clone(),
                self.timeout,
            )
            .await
            {
                Ok(a) => match http_outcome(a.status, a.retry_after, &a.body) {
                    Outcome::Delivered => delivered = true,
                    Outcome::Retry {
                        error,
                        retry_after: r,
                    } => {
                        refused = false;
                        retry_after = retry_after.max(r);
                        errors.push(format!("{u}: {error}"));
                    }
                    Outcome::Refused { error } => errors.push(format!("{u}: {error}")),
                },
                Err(e) => {
                    refused = false;
                    errors.push(format!("{u}: {e}"));
                }
            }
        }
        if delivered {
            Outcome::Delivered
        } else if refused && !errors.is_empty() {
            Outcome::Refused {
                error: errors.join("; "),
            }
        } else {
            Outcome::Retry {
                error: errors.join("; "),
                retry_after,
            }
        }
    }

    async fn webhook(&self, m: &AlertMessage) -> Outcome {
        let body = webhook_body(m, self.external.as_deref(), self.cluster.as_deref());
        let now = Timestamp::now().secs();
        let sig = self
            .key
            .as_ref()
            .map(|k| webhook_signature(k, &m.key, now, body.as_bytes()))
            .unwrap_or_default();
        let headers = [
            ("webhook-id", m.key.clone()),
            ("webhook-timestamp", now.to_string()),
            ("webhook-signature", sig),
        ];
        self.http_all(body, &headers).await
    }

    /// Alertmanager takes a batch as one array.
    async fn alertmanager(&self, msgs: &[AlertMessage]) -> Outcome {
        let now = Timestamp::now().0;
        let alerts: Vec<_> = msgs
            .iter()
            .map(|m| {
                alertmanager_alert(
                    m,
                    self.external.as_deref(),
                    self.cluster.as_deref(),
                    now,
                    self.firing_for(),
                )
            })
            .collect();
        let body = serde_json::Value::Array(alerts).to_string();
        let mut urls_fixed = Vec::new();
        for u in &self.urls {
            let s = u.to_string();
            let base = s.trim_end_matches('/');
            let full = if base.ends_with("/api/v2/alerts") {
                base.to_string()
            } else {
                format!("{base}/api/v2/alerts")
            };
            match full.parse() {
                Ok(x) => urls_fixed.push(x),
                Err(e) => {
                    return Outcome::Refused {
                        error: format!("{full}: {e}"),
                    }
                }
            }
        }
        let me = Sender {
            urls: urls_fixed,
            ..self.shallow()
        };
        me.http_all(body, &[]).await
    }

    fn shallow(&self) -> Sender {
        Sender {
            cfg: self.cfg.clone(),
            urls: self.urls.clone(),
            key: self.key.clone(),
            tls: self.tls.clone(),
            pool: self.pool.clone(),
            smtp: None,
            hostname: self.hostname.clone(),
            external: self.external.clone(),
            cluster: self.cluster.clone(),
            timeout: self.timeout,
        }
    }

    /// Re-send `msgs` as firing (Alertmanager forgets alerts not re-sent within its
    /// resolve_timeout).
    pub async fn refresh(&self, msgs: &[AlertMessage]) -> Outcome {
        if msgs.is_empty() {
            return Outcome::Delivered;
        }
        self.alertmanager(msgs).await
    }

    /// Syslog: one connection per claim, every message framed (octet counting on TCP/TLS, one
    /// datagram each on UDP). Written and flushed = delivered (syslog has no acknowledgment).
    async fn syslog(&self, msgs: &[AlertMessage]) -> Vec<Outcome> {
        let addr = self.cfg.address.clone().unwrap_or_default();
        let cef_payload = self.cfg.format == "cef";
        let lines: Vec<String> = msgs
            .iter()
            .map(|m| {
                rfc5424(
                    m,
                    self.cfg.facility,
                    &self.hostname,
                    cef_payload,
                    self.cluster.as_deref(),
                    self.external.as_deref(),
                )
            })
            .collect();
        let r = tokio::time::timeout(self.timeout, self.syslog_send(&addr, &lines)).await;
        let err = match r {
            Ok(Ok(())) => return vec![Outcome::Delivered; msgs.len()],
            Ok(Err(e)) => e,
            Err(_) => format!("no progress within {}s", self.timeout.as_secs()),
        };
        vec![
            Outcome::Retry {
                error: format!("syslog {} {addr}: {err}", self.cfg.protocol),
                retry_after: None
            };
            msgs.len()
        ]
    }

    async fn syslog_send(&self, addr: &str, lines: &[String]) -> Result<(), String> {
        if self.cfg.protocol == "udp" {
            let sock = tokio::net::UdpSocket::bind(if addr.starts_with('[') {
                "[::]:0"
            } else {
                "0.0.0.0:0"
            })
            .await
            .map_err(|e| e.to_string())?;
            sock.connect(addr).await.map_err(|e| e.to_string())?;
            for l in lines {
                sock.send(l.as_bytes()).await.map_err(|e| e.to_string())?;
            }
            return Ok(());
        }
        let mut framed = Vec::new();
        for l in lines {
            framed.extend_from_slice(format!("{} ", l.len()).as_bytes());
            framed.extend_from_slice(l.as_bytes());
        }
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        if self.cfg.protocol == "tls" {
            let host = addr
                .rsplit_once(':')
                .map_or(addr, |(h, _)| h)
                .trim_start_matches('[')
                .trim_end_matches(']');
            let name = rustls_pki_types::ServerName::try_from(host.to_string())
                .map_err(|e| format!("TLS server name {host:?}: {e}"))?;
            let tls = crate::tls::client_config(self.cfg.ca_file.as_deref(), false)?;
            let mut s = tokio_rustls::TlsConnector::from(tls)
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            s.write_all(&framed).await.map_err(|e| e.to_string())?;
            s.flush().await.map_err(|e| e.to_string())?;
            let _ = s.shutdown().await;
        } else {
            let mut s = tcp;
            s.write_all(&framed).await.map_err(|e| e.to_string())?;
            s.flush().await.map_err(|e| e.to_string())?;
            let _ = s.shutdown().await;
        }
        Ok(())
    }

    async fn email(&self, m: &AlertMessage) -> Outcome {
        use lettre::message::{header::ContentType, MultiPart, SinglePart};
        use lettre::AsyncTransport;
        let Some(t) = &self.smtp else {
            return Outcome::Refused {
                error: "no SMTP transport".into(),
            };
        };
        let (subject, text, html) = email_parts(m, self.external.as_deref());
        let mut b = lettre::Message::builder()
            .subject(subject)
            .message_id(Some(format!("<{}@{}>", m.key, self.hostname)));
        match self.cfg.from.as_deref().map(str::parse) {
            Some(Ok(f)) => b = b.from(f),
            _ => {
                return Outcome::Refused {
                    error: "from is not an address".into(),
                }
            }
        }
        for to in &self.cfg.to {
            match to.parse() {
                Ok(a) => b = b.to(a),
                Err(e) => {
                    return Outcome::Refused {
                        error: format!("to {to:?}: {e}"),
                    }
                }
            }
        }
        let msg = match b.multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(text),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(html),
                ),
        ) {
            Ok(m) => m,
            Err(e) => {
                return Outcome::Refused {
                    error: format!("message: {e}"),
                }
            }
        };
        match tokio::time::timeout(self.timeout, t.send(msg)).await {
            Ok(Ok(_)) => Outcome::Delivered,
            Ok(Err(e)) if e.is_permanent() => Outcome::Refused {
                error: format!("SMTP: {e}"),
            },
            Ok(Err(e)) => Outcome::Retry {
                error: format!("SMTP: {e}"),
                retry_after: None,
            },
            Err(_) => Outcome::Retry {
                error: format!("SMTP: no answer within {}s", self.timeout.as_secs()),
                retry_after: None,
            },
        }
    }
}

fn smtp_transport(
    cfg: &Sink,
    timeout: Duration,
) -> Result<lettre::AsyncSmtpTransport<lettre::Tokio1Executor>, String> {
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    let host = cfg.smtp_host.clone().unwrap_or_default();
    let mut b = lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous(&host)
        .timeout(Some(timeout));
    let tls_params = || -> Result<TlsParameters, String> {
        let mut p = TlsParameters::builder(host.clone());
        if let Some(ca) = &cfg.ca_file {
            let pem = std::fs::read(ca).map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
            p = p.add_root_certificate(
                Certificate::from_pem(&pem).map_err(|e| format!("ca_file: {e}"))?,
            );
        }
        p.build_rustls().map_err(|e| format!("SMTP TLS: {e}"))
    };
    let (tls, port) = match cfg.smtp_tls.as_str() {
        "tls" => (Tls::Wrapper(tls_params()?), 465),
        "starttls" => (Tls::Required(tls_params()?), 587),
        _ => (Tls::None, 25),
    };
    b = b.tls(tls).port(cfg.smtp_port.unwrap_or(port));
    if let Some(user) = &cfg.username {
        let pw = crate::config::secret("password", &cfg.password_file, &cfg.password_env)?
            .unwrap_or_default();
        b = b.credentials(Credentials::new(user.clone(), pw));
    }
    Ok(b.build())
}

/// This host's name (syslog HOSTNAME, Message-ID domain).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "trailwarden".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_webhooks_test_vector() {
        let key = webhook_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap_or_default();
        assert_eq!(
            webhook_signature(
                &key,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert!(
            webhook_key("whsec_c2hvcnQ=").is_err(),
            "5 bytes is too short"
        );
    }

    #[test]
    fn cef_escapes_what_the_standard_says() {
        assert_eq!(cef_header(r"a|b\c"), r"a\|b\\c");
        assert_eq!(cef_value("k=v\nx\\y"), r"k\=v\nx\\y");
    }

    #[test]
    fn http_statuses_decide_retry_or_give_up() {
        assert_eq!(http_outcome(204, None, ""), Outcome::Delivered);
        assert!(
            matches!(http_outcome(429, Some(Duration::from_secs(3)), ""),
            Outcome::Retry { retry_after: Some(d), .. } if d.as_secs() == 3)
        );
        assert!(matches!(http_outcome(503, None, ""), Outcome::Retry { .. }));
        assert!(matches!(
            http_outcome(501, None, ""),
            Outcome::Refused { .. }
        ));
        assert!(matches!(
            http_outcome(410, None, ""),
            Outcome::Refused { .. }
        ));
        assert!(matches!(
            http_outcome(400, None, "invalid_payload"),
            Outcome::Refused { error } if error.contains("invalid_payload")
        ));
    }
}
