//! `[alerting]`: sinks, routes, and how hard delivery tries.

use crate::NotifyError;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use trailwarden_alert::{Route, Routing};

/// `[alerting]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Alerting {
    /// Base URL of this server as people reach it (links in messages: `<url>/v1/alerts/<id>`).
    pub external_url: Option<String>,
    /// Cluster name, sent as the `cluster` label / field.
    pub cluster: Option<String>,
    /// An open alert that fires again after this long without a notification is sent again
    /// (`reraised`; 0 = never).
    pub renotify_after: String,
    /// The sinks (`[[alerting.sink]]`).
    #[serde(rename = "sink", skip_serializing_if = "Vec::is_empty")]
    pub sinks: Vec<Sink>,
    /// The routes (`[[alerting.route]]`); none: the default route (the server's log only).
    #[serde(rename = "route", skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
}

impl Default for Alerting {
    fn default() -> Self {
        Alerting {
            external_url: None,
            cluster: None,
            renotify_after: "1h".into(),
            sinks: Vec::new(),
            routes: Vec::new(),
        }
    }
}

/// What a sink is.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SinkKind {
    /// Prometheus Alertmanager, API v2.
    Alertmanager,
    /// HTTP POST signed per Standard Webhooks.
    Webhook,
    /// Slack incoming webhook (Block Kit).
    Slack,
    /// Syslog to a SIEM (RFC 5424 over TCP, TLS or UDP; CEF optional).
    Syslog,
    /// E-mail over SMTP.
    Email,
}

/// One `[[alerting.sink]]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Sink {
    /// Name routes refer to.
    pub name: String,
    /// alertmanager | webhook | slack | syslog | email.
    pub kind: SinkKind,
    /// URL (webhook, slack, one Alertmanager).
    pub url: Option<String>,
    /// Several Alertmanagers (an HA pair): each message goes to all.
    pub urls: Vec<String>,
    /// The URL is a secret (Slack's): read it from this file …
    pub url_file: Option<PathBuf>,
    /// … or this environment variable.
    pub url_env: Option<String>,
    /// Webhook signing secret (`whsec_…` base64, Standard Webhooks) from this file …
    pub secret_file: Option<PathBuf>,
    /// … or this environment variable.
    pub secret_env: Option<String>,
    /// Extra CA certificates (PEM) to trust for this sink (HTTPS, syslog TLS, SMTP TLS);
    /// the system's roots are trusted as well.
    pub ca_file: Option<PathBuf>,
    /// Syslog: `host:port`.
    pub address: Option<String>,
    /// Syslog: tcp | tls | udp.
    pub protocol: String,
    /// Syslog: rfc5424 | cef (the CEF payload inside an RFC 5424 message).
    pub format: String,
    /// Syslog facility (13 = log audit).
    pub facility: u8,
    /// E-mail: SMTP server host.
    pub smtp_host: Option<String>,
    /// E-mail: port (587 STARTTLS, 465 implicit TLS).
    pub smtp_port: Option<u16>,
    /// E-mail: starttls | tls | none (none only on loopback).
    pub smtp_tls: String,
    /// E-mail: user name for AUTH.
    pub username: Option<String>,
    /// E-mail: password from this file …
    pub password_file: Option<PathBuf>,
    /// … or this environment variable.
    pub password_env: Option<String>,
    /// E-mail: sender address.
    pub from: Option<String>,
    /// E-mail: recipients.
    pub to: Vec<String>,
    /// Seconds one attempt may take.
    pub timeout_seconds: u64,
    /// Deliveries sent to this sink at once.
    pub concurrency: usize,
    /// Attempts before a delivery is dead-lettered.
    pub max_attempts: u32,
    /// Age after which a delivery still not sent is dead-lettered (`24h`).
    pub max_age: String,
    /// First retry delay (`1s`); doubles per attempt, with jitter, up to `backoff_max`.
    pub backoff_initial: String,
    /// Longest retry delay (`5m`).
    pub backoff_max: String,
    /// Alertmanager: how often firing alerts are sent again (below its resolve_timeout, 5m).
    pub resend_interval: String,
}

impl Default for Sink {
    fn default() -> Self {
        Sink {
            name: String::new(),
            kind: SinkKind::Webhook,
            url: None,
            urls: Vec::new(),
            url_file: None,
            url_env: None,
            secret_file: None,
            secret_env: None,
            ca_file: None,
            address: None,
            protocol: "tcp".into(),
            format: "rfc5424".into(),
            facility: 13,
            smtp_host: None,
            smtp_port: None,
            smtp_tls: "starttls".into(),
            username: None,
            password_file: None,
            password_env: None,
            from: None,
            to: Vec::new(),
            timeout_seconds: 10,
            concurrency: 4,
            max_attempts: 20,
            max_age: "24h".into(),
            backoff_initial: "1s".into(),
            backoff_max: "5m".into(),
            resend_interval: "1m".into(),
        }
    }
}

/// Parse `30s`, `15m`, `1h`, `1d` (or `0`) into nanoseconds.
pub fn duration_ns(s: &str) -> Option<i64> {
    if s.trim() == "0" {
        return Some(0);
    }
    trailwarden_model::parse_duration(s).ok()
}

/// A secret from a file or an environment variable (file wins; trailing newline trimmed).
pub(crate) fn secret(
    what: &str,
    file: &Option<PathBuf>,
    env: &Option<String>,
) -> Result<Option<String>, String> {
    if let Some(f) = file {
        return match std::fs::read_to_string(f) {
            Ok(s) => Ok(Some(s.trim_end_matches(['\n', '\r']).to_string())),
            Err(e) => Err(format!("{what}_file {}: {e}", f.display())),
        };
    }
    if let Some(v) = env {
        return match std::env::var(v) {
            Ok(s) if !s.is_empty() => Ok(Some(s)),
            _ => Err(format!("{what}_env: environment variable {v} is not set")),
        };
    }
    Ok(None)
}

fn http_url(u: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = u.parse().map_err(|e| format!("{u:?} is not a URL ({e})"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(format!("{u:?} is not an http:// or https:// URL")),
    }
    if uri.host().is_none() {
        return Err(format!("{u:?} has no host"));
    }
    Ok(uri)
}

impl Sink {
    /// The URLs to post to (secrets resolved).
    pub(crate) fn resolved_urls(&self) -> Result<Vec<http::Uri>, String> {
        let mut out = Vec::new();
        if let Some(u) = secret("url", &self.url_file, &self.url_env)? {
            out.push(http_url(&u).map_err(|e| format!("url_file/url_env: {e}"))?);
        }
        for u in self.url.iter().chain(self.urls.iter()) {
            out.push(http_url(u).map_err(|e| format!("url: {e}"))?);
        }
        Ok(out)
    }

    /// Check the sink: the settings its kind needs, URLs, secrets readable.
    pub fn check(&self) -> Result<(), String> {
        if self.name.is_empty() || self.name == trailwarden_alert::route::LOG_SINK {
            return Err(format!(
                "name {:?} is empty or reserved (\"log\" is the default route's sink)",
                self.name
            ));
        }
        for (k, v) in [
            ("max_age", &self.max_age),
            ("backoff_initial", &self.backoff_initial),
            ("backoff_max", &self.backoff_max),
            ("resend_interval", &self.resend_interval),
        ] {
            if duration_ns(v).is_none_or(|n| n <= 0) {
                return Err(format!("{k} {v:?} is not a duration (30s, 15m, 1h, 1d)"));
            }
        }
        if self.concurrency == 0 || self.max_attempts == 0 || self.timeout_seconds == 0 {
            return Err("concurrency, max_attempts and timeout_seconds must be > 0".into());
        }
        if let Some(ca) = &self.ca_file {
            crate::tls::read_certs(ca)?;
        }
        match self.kind {
            SinkKind::Alertmanager | SinkKind::Slack => {
                if self.resolved_urls()?.is_empty() {
                    return Err("needs url (or urls, url_file, url_env)".into());
                }
            }
            SinkKind::Webhook => {
                if self.resolved_urls()?.is_empty() {
                    return Err("needs url".into());
                }
                match secret("secret", &self.secret_file, &self.secret_env)? {
                    None => {
                        return Err(
                            "needs secret_file or secret_env (webhooks are signed: whsec_ + base64 of 24-64 bytes)".into(),
                        )
                    }
                    Some(s) => {
                        crate::sinks::webhook_key(&s)
                            .map_err(|e| format!("secret: {e}"))?;
                    }
                }
            }
            SinkKind::Syslog => {
                let a = self.address.as_deref().ok_or("needs address (host:port)")?;
                if a.rsplit_once(':')
                    .and_then(|(_, p)| p.parse::<u16>().ok())
                    .is_none()
                {
                    return Err(format!("address {a:?} is not host:port"));
                }
                if !["tcp", "tls", "udp"].contains(&self.protocol.as_str()) {
                    return Err(format!(
                        "protocol {:?} is not tcp, tls or udp",
                        self.protocol
                    ));
                }
                if !["rfc5424", "cef"].contains(&self.format.as_str()) {
                    return Err(format!("format {:?} is not rfc5424 or cef", self.format));
                }
                if self.facility > 23 {
                    return Err(format!("facility {} is not 0-23", self.facility));
                }
            }
            SinkKind::Email => {
                let host = self.smtp_host.as_deref().ok_or("needs smtp_host")?;
                if self.from.is_none() || self.to.is_empty() {
                    return Err("needs from and to".into());
                }
                for a in self.from.iter().chain(self.to.iter()) {
                    a.parse::<lettre::message::Mailbox>()
                        .map_err(|e| format!("{a:?} is not an e-mail address ({e})"))?;
                }
                match self.smtp_tls.as_str() {
                    "starttls" | "tls" => {}
                    "none" => {
                        let loopback = host == "localhost"
                            || host
                                .parse::<std::net::IpAddr>()
                                .is_ok_and(|ip| ip.is_loopback());
                        if !loopback {
                            return Err(format!(
                                "smtp_tls = \"none\" to {host}, which is not loopback: credentials and alerts would cross the network in clear text"
                            ));
                        }
                    }
                    t => return Err(format!("smtp_tls {t:?} is not starttls, tls or none")),
                }
                if self.username.is_some() {
                    secret("password", &self.password_file, &self.password_env)?
                        .ok_or("username needs password_file or password_env")?;
                }
            }
        }
        Ok(())
    }
}

impl Alerting {
    /// Check every sink and route; errors name the setting and why.
    pub fn check(&self) -> Result<(), NotifyError> {
        let bad = |m: String| Err(NotifyError::Config(m));
        if duration_ns(&self.renotify_after).is_none() {
            return bad(format!(
                "alerting.renotify_after {:?} is not a duration (0, 30m, 1h)",
                self.renotify_after
            ));
        }
        if let Some(u) = &self.external_url {
            if let Err(e) = http_url(u) {
                return bad(format!("alerting.external_url: {e}"));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, s) in self.sinks.iter().enumerate() {
            if let Err(e) = s.check() {
                return bad(format!("alerting.sink[{i}] ({:?}): {e}", s.name));
            }
            if !names.insert(s.name.as_str()) {
                return bad(format!(
                    "alerting.sink[{i}]: the name {:?} is used twice",
                    s.name
                ));
            }
        }
        for (i, r) in self.routes.iter().enumerate() {
            if let Err(e) = r.matcher().check() {
                return bad(format!("alerting.route[{i}]: {e}"));
            }
            if r.sinks.is_empty() {
                return bad(format!("alerting.route[{i}]: sinks is empty"));
            }
            for s in &r.sinks {
                if !names.contains(s.as_str()) && s != trailwarden_alert::route::LOG_SINK {
                    return bad(format!(
                        "alerting.route[{i}]: sink {s:?} is not defined (defined: {})",
                        names.iter().cloned().collect::<Vec<_>>().join(", ")
                    ));
                }
            }
            for e in &r.events {
                if !trailwarden_alert::route::EVENTS.contains(&e.as_str()) {
                    return bad(format!(
                        "alerting.route[{i}]: event {e:?} is not one of {}",
                        trailwarden_alert::route::EVENTS.join(", ")
                    ));
                }
            }
        }
        Ok(())
    }

    /// The routing the alert store uses.
    pub fn routing(&self) -> Routing {
        Routing {
            routes: self.routes.clone(),
            renotify_after_ns: duration_ns(&self.renotify_after).unwrap_or(0),
        }
    }

    /// One line per route saying where alerts go (for `config check`).
    pub fn describe(&self) -> Vec<String> {
        if self.routes.is_empty() {
            return vec![
                "alerting: no [[alerting.route]]: the default route sends every alert change to the server's log and metrics only".into(),
            ];
        }
        self.routes
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let m = serde_json::to_string(&r.matcher()).unwrap_or_default();
                format!(
                    "alerting.route[{i}]: {} → {}{}",
                    if m == "{}" { "every alert".into() } else { m },
                    r.sinks.join(", "),
                    if r.continue_ { " (continue)" } else { "" }
                )
            })
            .collect()
    }
}
