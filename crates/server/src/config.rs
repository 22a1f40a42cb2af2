//! The server's configuration: a TOML file with documented defaults, overridden by environment
//! variables `TRAILWARDEN_<SECTION>_<KEY>` (e.g. `TRAILWARDEN_HTTP_LISTEN=0.0.0.0:8443`).

use crate::auth::Role;
use crate::ServerError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The whole configuration.
#[derive(Clone, Debug, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Data directory (ledger, keys, tokens, alerts). Unset: the `--data-dir` of the command.
    pub data_dir: Option<PathBuf>,
    /// The HTTP API and webhook.
    pub http: Http,
    /// Ingest queue, backpressure and classification.
    pub ingest: Ingest,
    /// Query API limits.
    pub query: Query,
    /// Detection in the pipeline.
    pub detection: Detection,
    /// Syslog receiver (off unless an address is set).
    pub syslog: Syslog,
    /// OIDC JWT bearer tokens (off unless `issuer` is set).
    pub oidc: Oidc,
    /// Background integrity verification.
    pub verify: Verify,
    /// Alert delivery: sinks and routes (`[[alerting.sink]]`, `[[alerting.route]]`).
    pub alerting: trailwarden_notify::Alerting,
    /// Log reviews (10.4): period time zone, alert SLAs, silent sources, clock skew, sign-off
    /// delay, periodic reviews of other logs.
    pub review: trailwarden_compliance::review::ReviewConfig,
    /// The web UI at `/ui/`.
    pub ui: Ui,
    /// The archive tier on object storage (10.3.3, 10.5.1): `url`, `hot_days`, `retain_days`.
    pub archive: trailwarden_archive::ArchiveConfig,
    /// Scale-out on NATS JetStream: `nats_url`, `role` (`all`, `ingest`, `writer`),
    /// `partition`.
    pub cluster: trailwarden_cluster::ClusterConfig,
}

/// `[ui]`: the web UI served next to the API.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ui {
    /// Serve it (`false`: the API only).
    pub enabled: bool,
    /// Sign a session out after this many seconds without a request (PCI DSS 8.2.8: at most
    /// 15 minutes, the default).
    pub idle_timeout_seconds: u64,
    /// Sign a session out after this many hours whatever happens.
    pub session_max_hours: u64,
}

impl Default for Ui {
    fn default() -> Self {
        Ui {
            enabled: true,
            idle_timeout_seconds: 900,
            session_max_hours: 12,
        }
    }
}

/// `[http]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    /// Listen address.
    pub listen: String,
    /// Serve HTTPS (HTTP/1.1 and HTTP/2 by ALPN). Plain HTTP is refused on non-loopback addresses
    /// unless `allow_plaintext`.
    pub tls: bool,
    /// Server certificate chain (PEM). Empty: `keys/tls.crt`, self-signed, created on first start.
    pub cert: Option<PathBuf>,
    /// Server private key (PEM, mode 0600). Empty: `keys/tls.key`.
    pub key: Option<PathBuf>,
    /// CA bundle (PEM) that client certificates are verified against: enables mTLS.
    pub client_ca: Option<PathBuf>,
    /// Refuse TLS clients without a valid certificate (otherwise a certificate is optional and
    /// bearer tokens work as well).
    pub client_cert_required: bool,
    /// Client certificate subject CN → role (e.g. `kube-apiserver = "ingest"`). A verified
    /// certificate whose CN is not listed authenticates nobody.
    pub client_roles: BTreeMap<String, Role>,
    /// Plain HTTP on a non-loopback address (behind a TLS-terminating proxy only).
    pub allow_plaintext: bool,
    /// Largest request body as sent (413 beyond).
    pub max_body_bytes: usize,
    /// Largest request body after gzip decoding (413 beyond).
    pub max_decoded_bytes: usize,
    /// A client must send its request headers within this many seconds (slowloris).
    pub header_timeout_seconds: u64,
    /// … and its body within this many.
    pub body_timeout_seconds: u64,
    /// A TLS handshake must finish within this many seconds.
    pub tls_handshake_timeout_seconds: u64,
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Seconds SIGTERM waits for requests in flight before stopping anyway.
    pub shutdown_grace_seconds: u64,
}

impl Default for Http {
    fn default() -> Self {
        Http {
            listen: "127.0.0.1:8443".into(),
            tls: true,
            cert: None,
            key: None,
            client_ca: None,
            client_cert_required: false,
            client_roles: BTreeMap::new(),
            allow_plaintext: false,
            max_body_bytes: 32 << 20,
            max_decoded_bytes: 256 << 20,
            header_timeout_seconds: 10,
            body_timeout_seconds: 60,
            tls_handshake_timeout_seconds: 10,
            max_connections: 1024,
            shutdown_grace_seconds: 20,
        }
    }
}

/// `[ingest]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ingest {
    /// Events waiting for the writer before new batches are refused with 429.
    pub queue_events: u64,
    /// Bytes waiting for the writer before new batches are refused with 429.
    pub queue_bytes: u64,
    /// Under this much free space on the data directory's file system, ingest answers 503.
    pub min_free_disk_bytes: u64,
    /// `Retry-After` of 429 and 503 answers.
    pub retry_after_seconds: u64,
    /// Records larger than this are quarantined.
    pub max_record_bytes: usize,
    /// Namespaces of the cardholder-data environment (globs; empty: the classifier's defaults).
    pub cde_namespaces: Vec<String>,
}

impl Default for Ingest {
    fn default() -> Self {
        Ingest {
            queue_events: 200_000,
            queue_bytes: 512 << 20,
            min_free_disk_bytes: 1 << 30,
            retry_after_seconds: 2,
            max_record_bytes: 1 << 20,
            cde_namespaces: Vec::new(),
        }
    }
}

/// `[query]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Query {
    /// Rows a query may return (a request may ask for fewer).
    pub max_rows: u64,
    /// Seconds a query may run (a request may ask for less).
    pub timeout_seconds: u64,
    /// Memory a query may use.
    pub memory_limit_bytes: usize,
    /// Queries running at once (429 beyond).
    pub max_concurrent: usize,
    /// Threads per query.
    pub threads: usize,
}

impl Default for Query {
    fn default() -> Self {
        Query {
            max_rows: 100_000,
            timeout_seconds: 60,
            memory_limit_bytes: 1 << 30,
            max_concurrent: 2,
            threads: 2,
        }
    }
}

/// `[detection]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Detection {
    /// Run detection on every durable batch.
    pub enabled: bool,
    /// Load the built-in rule pack.
    pub builtin_rules: bool,
    /// More Sigma rule files or directories (the data directory's `rules/` is always loaded).
    pub rules: Vec<PathBuf>,
    /// Detections of one rule and group within this window merge into one alert.
    pub dedup_window: String,
    /// Identities the rules never alert on (Sigma values: `*` wildcards), added to the
    /// `%allowed_users%` placeholder the built-in pack's rules filter on: CI deployers, GitOps
    /// controllers, break-glass accounts you review elsewhere.
    pub allow_users: Vec<String>,
    /// Namespaces whose workload changes the pack's pod and workload rules do not alert on
    /// (`%allowed_namespaces%`).
    pub allow_namespaces: Vec<String>,
    /// Image patterns (`registry.example.com/*`) trusted besides the public registries of
    /// Kubernetes and the clouds (`%trusted_registries%`).
    pub trusted_registries: Vec<String>,
    /// Placeholder values replacing the built-in ones wholesale (`system_identities`,
    /// `privileged_images`, or a name your own rules use with `|expand`).
    pub placeholders: std::collections::BTreeMap<String, Vec<String>>,
}

impl Default for Detection {
    fn default() -> Self {
        Detection {
            enabled: true,
            builtin_rules: true,
            rules: Vec::new(),
            dedup_window: "15m".into(),
            allow_users: Vec::new(),
            allow_namespaces: Vec::new(),
            trusted_registries: Vec::new(),
            placeholders: Default::default(),
        }
    }
}

/// `[syslog]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Syslog {
    /// TCP listen address (octet-counting and newline framing, RFC 6587).
    pub tcp: Option<String>,
    /// UDP listen address (one message per datagram, RFC 5426).
    pub udp: Option<String>,
    /// TLS listen address (RFC 5425; the `[http]` certificate and client CA).
    pub tls: Option<String>,
    /// Largest message; longer ones are quarantined.
    pub max_message_bytes: usize,
    /// Messages are committed in batches of at most this many milliseconds.
    pub batch_ms: u64,
}

impl Default for Syslog {
    fn default() -> Self {
        Syslog {
            tcp: None,
            udp: None,
            tls: None,
            max_message_bytes: 64 << 10,
            batch_ms: 20,
        }
    }
}

/// `[oidc]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Oidc {
    /// Expected `iss` (empty: OIDC off).
    pub issuer: Option<String>,
    /// Expected `aud`.
    pub audience: Option<String>,
    /// JWKS document (file).
    pub jwks_file: Option<PathBuf>,
    /// Accepted clock skew in seconds for `exp` / `nbf`.
    pub leeway_seconds: u64,
    /// Claim naming the user.
    pub username_claim: String,
    /// Claim holding the user's groups (a string or an array of strings).
    pub roles_claim: String,
    /// Group → role. The highest role of the user's groups applies; no listed group, no access.
    pub roles: BTreeMap<String, Role>,
    /// Sign-in to the web UI by redirect (authorization code with PKCE): the provider's
    /// authorization endpoint. Unset: the UI takes a pasted JWT only.
    pub authorization_endpoint: Option<String>,
    /// The provider's token endpoint (where the UI exchanges the code for an ID token).
    pub token_endpoint: Option<String>,
    /// The UI's client id at the provider (default: `audience`, which the ID token's `aud` is).
    pub client_id: Option<String>,
    /// The client secret, for a confidential client (a file; a public client uses PKCE alone).
    pub client_secret_file: Option<PathBuf>,
    /// Scopes asked for (`openid` is always asked).
    pub scopes: Vec<String>,
    /// The redirect URL registered at the provider (default: `https://<host>/ui/login/oidc/callback`
    /// from the request).
    pub redirect_url: Option<String>,
    /// CA certificates (PEM) to trust for the token endpoint, beyond the system's.
    pub ca_file: Option<PathBuf>,
}

impl Default for Oidc {
    fn default() -> Self {
        Oidc {
            issuer: None,
            audience: None,
            jwks_file: None,
            leeway_seconds: 60,
            username_claim: "sub".into(),
            roles_claim: "groups".into(),
            roles: BTreeMap::new(),
            authorization_endpoint: None,
            token_endpoint: None,
            client_id: None,
            client_secret_file: None,
            scopes: vec!["openid".into(), "profile".into()],
            redirect_url: None,
            ca_file: None,
        }
    }
}

/// `[verify]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Verify {
    /// Verify the whole ledger this often in the background (`0` = never; e.g. `1h`).
    pub interval: String,
}

impl Default for Verify {
    fn default() -> Self {
        Verify {
            interval: "1h".into(),
        }
    }
}

/// The sections and keys environment variables may override.
fn merge_env(
    v: &mut serde_json::Value,
    env: &[(String, String)],
) -> Result<Vec<String>, ServerError> {
    let mut applied = Vec::new();
    let Some(root) = v.as_object_mut() else {
        return Ok(applied);
    };
    for (name, value) in env {
        let Some(rest) = name.strip_prefix("TRAILWARDEN_") else {
            continue;
        };
        let rest = rest.to_ascii_lowercase();
        for (section, table) in root.iter_mut() {
            let Some(table) = table.as_object_mut() else {
                continue;
            };
            let Some(key) = rest.strip_prefix(&format!("{section}_")) else {
                continue;
            };
            let Some(old) = table.get(key) else {
                continue;
            };
            let new = env_value(old, value).map_err(|why| {
                ServerError::Config(format!("environment variable {name}={value:?}: {why}"))
            })?;
            table.insert(key.to_string(), new);
            applied.push(name.clone());
        }
    }
    Ok(applied)
}

/// An environment value in the type of the setting it overrides.
fn env_value(old: &serde_json::Value, s: &str) -> Result<serde_json::Value, String> {
    use serde_json::Value;
    Ok(match old {
        Value::Bool(_) => Value::Bool(match s {
            "true" | "1" | "yes" => true,
            "false" | "0" | "no" => false,
            _ => return Err("expected true or false".into()),
        }),
        Value::Number(_) => Value::Number(
            s.parse::<u64>()
                .map_err(|_| "expected a whole number".to_string())?
                .into(),
        ),
        Value::Array(_) => Value::Array(
            s.split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(|x| Value::String(x.into()))
                .collect(),
        ),
        Value::Object(_) => {
            // `A=role,B=role`
            let mut m = serde_json::Map::new();
            for kv in s.split(',').map(str::trim).filter(|x| !x.is_empty()) {
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| format!("{kv:?} is not NAME=VALUE"))?;
                m.insert(k.trim().into(), Value::String(v.trim().into()));
            }
            Value::Object(m)
        }
        _ => Value::String(s.into()),
    })
}

impl Config {
    /// Load `path` (none: the defaults) and apply `TRAILWARDEN_<SECTION>_<KEY>` variables from
    /// `env`. Returns the configuration and the variables applied.
    pub fn load(
        path: Option<&Path>,
        env: &[(String, String)],
    ) -> Result<(Config, Vec<String>), ServerError> {
        let mut v = serde_json::to_value(Config::default())
            .map_err(|e| ServerError::Config(e.to_string()))?;
        if let Some(p) = path {
            let text = std::fs::read_to_string(p).map_err(|e| ServerError::io(p, e))?;
            let table: toml::Table = toml::from_str(&text)
                .map_err(|e| ServerError::Config(format!("{}: {e}", p.display())))?;
            let file =
                serde_json::to_value(table).map_err(|e| ServerError::Config(e.to_string()))?;
            merge(&mut v, file);
        }
        let applied = merge_env(&mut v, env)?;
        let c: Config = serde_json::from_value(v).map_err(|e| {
            ServerError::Config(format!(
                "{}: {e}",
                path.map_or("defaults".into(), |p| p.display().to_string())
            ))
        })?;
        c.check()?;
        Ok((c, applied))
    }

    /// Check the values that types alone do not.
    pub fn check(&self) -> Result<(), ServerError> {
        let bad = |m: String| Err(ServerError::Config(m));
        if self.ui.idle_timeout_seconds == 0 || self.ui.session_max_hours == 0 {
            return bad(
                "ui.idle_timeout_seconds and ui.session_max_hours must be at least 1".into(),
            );
        }
        let addr: std::net::SocketAddr = match self.http.listen.parse() {
            Ok(a) => a,
            Err(_) => return bad(format!("http.listen {:?} is not IP:PORT", self.http.listen)),
        };
        if !self.http.tls && !addr.ip().is_loopback() && !self.http.allow_plaintext {
            return bad(format!(
                "http.tls = false on {addr}, which is not a loopback address: audit data and tokens would cross the network in clear text (set http.allow_plaintext = true only behind a TLS-terminating proxy)"
            ));
        }
        if self.http.cert.is_some() != self.http.key.is_some() {
            return bad("http.cert and http.key go together".into());
        }
        if self.http.client_cert_required && self.http.client_ca.is_none() {
            return bad("http.client_cert_required needs http.client_ca".into());
        }
        if self.http.max_body_bytes == 0 || self.http.max_decoded_bytes < self.http.max_body_bytes {
            return bad("http.max_decoded_bytes must be at least http.max_body_bytes (> 0)".into());
        }
        for (name, a) in [
            ("syslog.tcp", &self.syslog.tcp),
            ("syslog.udp", &self.syslog.udp),
            ("syslog.tls", &self.syslog.tls),
        ] {
            if let Some(a) = a {
                if a.parse::<std::net::SocketAddr>().is_err() {
                    return bad(format!("{name} {a:?} is not IP:PORT"));
                }
            }
        }
        if self.syslog.tls.is_some() && !self.http.tls {
            return bad("syslog.tls uses the [http] certificate: set http.tls = true".into());
        }
        if self.dedup_window_ns().is_none() {
            return bad(format!(
                "detection.dedup_window {:?} is not a duration (30s, 15m, 1h)",
                self.detection.dedup_window
            ));
        }
        if self.verify_interval_ns().is_none() {
            return bad(format!(
                "verify.interval {:?} is not a duration (0, 30m, 1h, 1d)",
                self.verify.interval
            ));
        }
        if self.oidc.issuer.is_some() {
            if self.oidc.jwks_file.is_none() {
                return bad("oidc.issuer needs oidc.jwks_file".into());
            }
            if self.oidc.audience.is_none() {
                return bad("oidc.issuer needs oidc.audience".into());
            }
            if self.oidc.authorization_endpoint.is_some() != self.oidc.token_endpoint.is_some() {
                return bad(
                    "oidc.authorization_endpoint and oidc.token_endpoint go together (sign-in by redirect needs both)"
                        .into(),
                );
            }
        }
        if self.query.max_concurrent == 0 || self.query.max_rows == 0 {
            return bad("query.max_concurrent and query.max_rows must be > 0".into());
        }
        self.review
            .settings()
            .map_err(|e| ServerError::Config(format!("review: {e}")))?;
        self.cluster.check().map_err(ServerError::Config)?;
        if self.cluster.role == trailwarden_cluster::Role::Ingest && self.archive.url.is_some() {
            return bad(
                "archive.url is set on an ingest node: the partition's writer archives its ledger (an ingest node has none)"
                    .into(),
            );
        }
        self.alerting.check().map_err(|e| {
            ServerError::Config(
                e.to_string()
                    .trim_start_matches("configuration: ")
                    .to_string(),
            )
        })?;
        Ok(())
    }

    /// What the Requirement 10 report cites from this configuration.
    pub fn report_facts(&self) -> trailwarden_compliance::report::ServerFacts {
        trailwarden_compliance::report::ServerFacts {
            detection: self.detection.enabled,
            routes: self.alerting.routes.len(),
            sinks: self.alerting.sinks.iter().map(|k| k.name.clone()).collect(),
            verify_interval_ns: self.verify_interval_ns().unwrap_or(0),
            periodic_reviews: self
                .review
                .periodic
                .iter()
                .map(|r| r.name.clone())
                .collect(),
        }
    }

    /// The dedup window in nanoseconds.
    pub fn dedup_window_ns(&self) -> Option<i64> {
        trailwarden_detect::correlation::parse_timespan(&self.detection.dedup_window)
    }

    /// The verify interval in nanoseconds (`Some(0)`: never).
    pub fn verify_interval_ns(&self) -> Option<i64> {
        if self.verify.interval.trim() == "0" {
            return Some(0);
        }
        trailwarden_detect::correlation::parse_timespan(&self.verify.interval)
    }

    /// The configuration as TOML (what `config check` prints).
    pub fn to_toml(&self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| serde_json::from_value::<toml::Table>(strip_nulls(v)).ok())
            .map(|t| t.to_string())
            .unwrap_or_default()
    }
}

fn strip_nulls(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => serde_json::Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        other => other,
    }
}

fn merge(base: &mut serde_json::Value, over: serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(b), serde_json::Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot)
                        if slot.is_object()
                            && v.is_object()
                            && k != "client_roles"
                            && k != "roles" =>
                    {
                        merge(slot, v)
                    }
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_typed_values_and_unknown_keys_fail() {
        let env = vec![
            (
                "TRAILWARDEN_HTTP_LISTEN".to_string(),
                "127.0.0.1:9".to_string(),
            ),
            ("TRAILWARDEN_HTTP_TLS".to_string(), "false".to_string()),
            ("TRAILWARDEN_QUERY_MAX_ROWS".to_string(), "7".to_string()),
            (
                "TRAILWARDEN_INGEST_CDE_NAMESPACES".to_string(),
                "pay, card".to_string(),
            ),
            (
                "TRAILWARDEN_HTTP_CLIENT_ROLES".to_string(),
                "kube-apiserver=ingest".to_string(),
            ),
        ];
        let (c, applied) = Config::load(None, &env).expect("config");
        assert_eq!(applied.len(), 5);
        assert_eq!(c.http.listen, "127.0.0.1:9");
        assert!(!c.http.tls);
        assert_eq!(c.query.max_rows, 7);
        assert_eq!(c.ingest.cde_namespaces, vec!["pay", "card"]);
        assert_eq!(
            c.http.client_roles.get("kube-apiserver"),
            Some(&Role::Ingest)
        );
        let bad = vec![("TRAILWARDEN_QUERY_MAX_ROWS".to_string(), "many".to_string())];
        assert!(Config::load(None, &bad).is_err());
    }

    #[test]
    fn the_documented_example_file_is_the_defaults() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/deploy/trailwarden.toml");
        let (c, _) = Config::load(Some(&p), &[]).expect("docs/deploy/trailwarden.toml loads");
        assert_eq!(c.to_toml(), Config::default().to_toml());
    }

    #[test]
    fn plaintext_off_loopback_is_refused() {
        let env = vec![
            (
                "TRAILWARDEN_HTTP_LISTEN".to_string(),
                "0.0.0.0:8080".to_string(),
            ),
            ("TRAILWARDEN_HTTP_TLS".to_string(), "false".to_string()),
        ];
        let e = Config::load(None, &env).expect_err("must refuse");
        assert!(e.to_string().contains("clear text"), "{e}");
    }

    #[test]
    fn toml_file_unknown_key_is_an_error_naming_it() {
        let dir = trailwarden_model::scratch::dir("tw-config", "files");
        std::fs::create_dir_all(&dir).expect("dir");
        let p = dir.join("c.toml");
        std::fs::write(&p, "[http]\nlisten = \"127.0.0.1:1\"\nlisten_port = 3\n").expect("w");
        let e = Config::load(Some(&p), &[]).expect_err("unknown key");
        assert!(e.to_string().contains("listen_port"), "{e}");
        std::fs::write(
            &p,
            "[http]\nlisten = \"127.0.0.1:1\"\n[http.client_roles]\napiserver = \"ingest\"\n",
        )
        .expect("w");
        let (c, _) = Config::load(Some(&p), &[]).expect("ok");
        assert_eq!(c.http.listen, "127.0.0.1:1");
        assert!(c.to_toml().contains("apiserver"));
        // the detection allow-lists and placeholders
        std::fs::write(
            &p,
            "[detection]\nallow_users = [\"ci-*\"]\nallow_namespaces = [\"sandbox\"]\ntrusted_registries = [\"registry.example.com/*\"]\n[detection.placeholders]\nsecret_operators = [\"system:serviceaccount:vault:*\"]\n",
        )
        .expect("w");
        let (c, _) = Config::load(Some(&p), &[]).expect("ok");
        assert_eq!(c.detection.allow_users, vec!["ci-*".to_string()]);
        assert_eq!(c.detection.allow_namespaces, vec!["sandbox".to_string()]);
        assert_eq!(c.detection.placeholders["secret_operators"].len(), 1);
        assert!(c.to_toml().contains("registry.example.com/*"));
    }
}
