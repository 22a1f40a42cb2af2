//! `[cluster]`: the NATS JetStream scale-out settings.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// What a `serve` process does in a cluster.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything in one process, without NATS (the embedded default).
    #[default]
    All,
    /// Stateless: parse and normalize, publish each batch to JetStream, acknowledge the sender
    /// after JetStream's acknowledgement.
    Ingest,
    /// The partition's one ledger writer (under a lease): consumes the stream in order,
    /// appends, acknowledges after fsync; runs detection, alerting, scheduled rules and the API.
    Writer,
    /// A detection worker of its own. Not available yet: the writer runs detection (one owner
    /// of alerts and correlation state per partition, under the writer's lease).
    Detect,
}

impl Role {
    /// The role's name as written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::Ingest => "ingest",
            Role::Writer => "writer",
            Role::Detect => "detect",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "all" => Ok(Role::All),
            "ingest" => Ok(Role::Ingest),
            "writer" => Ok(Role::Writer),
            "detect" => Ok(Role::Detect),
            _ => Err(format!("{s:?} is not a role (all, ingest, writer, detect)")),
        }
    }
}

/// `[cluster]` (environment: `TRAILWARDEN_CLUSTER_<KEY>`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// NATS server URLs, comma-separated (`nats://a:4222,nats://b:4222`; `tls://` for TLS).
    /// Unset: no cluster (role `all`).
    pub nats_url: Option<String>,
    /// `all`, `ingest`, `writer` (or `detect`, not available yet).
    pub role: Role,
    /// The partition (one ledger each): usually the Kubernetes cluster's name. Letters, digits,
    /// `-` and `_`.
    pub partition: String,
    /// The JetStream stream (created when missing).
    pub stream: String,
    /// Subjects are `<subject_prefix>.<partition>`.
    pub subject_prefix: String,
    /// Stream replicas when the stream is created (1, or 3 / 5 on a NATS cluster).
    pub replicas: usize,
    /// The stream keeps messages this many days (a writer down longer loses the rest: that
    /// gap is raised as a control failure).
    pub max_age_days: u64,
    /// Retries of the same batch within this many seconds are stored once (JetStream's
    /// duplicate window, `Nats-Msg-Id`).
    pub duplicate_window_seconds: u64,
    /// A writer's lease lasts this long without renewal; a standby takes over after it.
    pub lease_seconds: u64,
    /// How long an ingest node waits for JetStream's acknowledgement before answering 503.
    pub publish_timeout_seconds: u64,
    /// NATS credentials file (`.creds`: JWT + NKey), if the server wants one.
    pub creds_file: Option<PathBuf>,
    /// A PEM file of CA certificates to trust for `tls://` URLs (besides the system's).
    pub tls_ca: Option<PathBuf>,
    /// This node's name in leases and alerts (default: host name and process id).
    pub node: Option<String>,
    /// A file holding the cluster's message key (at least 32 bytes, mode 0600): ingest nodes
    /// sign every message with it (HMAC-SHA256), the writer quarantines a message without a
    /// valid signature instead of storing it as an event. Unset: messages are not signed (then
    /// NATS permissions alone decide who can feed the ledger; `check` reports it).
    pub message_key_file: Option<PathBuf>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            nats_url: None,
            role: Role::All,
            partition: "default".into(),
            stream: "TRAILWARDEN".into(),
            subject_prefix: "tw.audit".into(),
            replicas: 1,
            max_age_days: 7,
            duplicate_window_seconds: 600,
            lease_seconds: 10,
            publish_timeout_seconds: 5,
            creds_file: None,
            tls_ca: None,
            node: None,
            message_key_file: None,
        }
    }
}

impl ClusterConfig {
    /// Check the values that types alone do not.
    pub fn check(&self) -> Result<(), String> {
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !name_ok(&self.partition) {
            return Err(format!(
                "cluster.partition {:?}: use 1-64 letters, digits, '-' or '_'",
                self.partition
            ));
        }
        if !name_ok(&self.stream) {
            return Err(format!(
                "cluster.stream {:?}: use 1-64 letters, digits, '-' or '_'",
                self.stream
            ));
        }
        if self.subject_prefix.is_empty()
            || self.subject_prefix.contains(['*', '>', ' '])
            || self.subject_prefix.ends_with('.')
        {
            return Err(format!(
                "cluster.subject_prefix {:?} is not a subject prefix (tw.audit)",
                self.subject_prefix
            ));
        }
        if !(1..=5).contains(&self.replicas) {
            return Err(format!(
                "cluster.replicas = {}: JetStream takes 1 to 5",
                self.replicas
            ));
        }
        if self.lease_seconds < 3 {
            return Err("cluster.lease_seconds must be at least 3".into());
        }
        if self.publish_timeout_seconds == 0 || self.max_age_days == 0 {
            return Err(
                "cluster.publish_timeout_seconds and cluster.max_age_days must be at least 1"
                    .into(),
            );
        }
        match (self.role, &self.nats_url) {
            (Role::All, Some(_)) => Err(
                "cluster.nats_url is set but cluster.role is \"all\" (one process, no NATS): choose \"ingest\" or \"writer\""
                    .into(),
            ),
            (Role::Ingest | Role::Writer, None) => Err(format!(
                "cluster.role = {:?} needs cluster.nats_url",
                self.role.as_str()
            )),
            (Role::Detect, _) => Err(
                "cluster.role = \"detect\" is not available yet: the writer runs detection for its partition (one owner of alerts and correlation state)"
                    .into(),
            ),
            _ => Ok(()),
        }
    }

    /// The message key, read from `message_key_file` (refused when shorter than 32 bytes,
    /// readable by others or writable by its group).
    pub fn message_key(&self) -> Result<Option<Vec<u8>>, String> {
        let Some(p) = &self.message_key_file else {
            return Ok(None);
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(p)
                .map_err(|e| format!("cluster.message_key_file {}: {e}", p.display()))?
                .permissions()
                .mode();
            // group read stays allowed: Kubernetes mounts Secrets group-readable for fsGroup
            if mode & 0o027 != 0 {
                return Err(format!(
                    "cluster.message_key_file {} is readable by others or writable by its group (mode {:o}): chmod 600 it",
                    p.display(),
                    mode & 0o777
                ));
            }
        }
        let key = std::fs::read(p)
            .map_err(|e| format!("cluster.message_key_file {}: {e}", p.display()))?;
        let key = key.trim_ascii().to_vec();
        if key.len() < 32 {
            return Err(format!(
                "cluster.message_key_file {}: {} bytes, at least 32 needed (e.g. `openssl rand -hex 32`)",
                p.display(),
                key.len()
            ));
        }
        Ok(Some(key))
    }

    /// The partition's subject.
    pub fn subject(&self) -> String {
        format!("{}.{}", self.subject_prefix, self.partition)
    }

    /// The writer's lease key (in the KV bucket [`LEASE_BUCKET`]).
    pub fn lease_key(&self) -> String {
        format!("writer.{}", self.partition)
    }

    /// The writer's durable consumer.
    pub fn writer_consumer(&self) -> String {
        format!("writer-{}", self.partition)
    }

    /// The lease's time to live.
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_seconds)
    }

    /// This node's name.
    pub fn node_name(&self) -> String {
        if let Some(n) = &self.node {
            return n.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "node".into());
        format!("{host}-{}", std::process::id())
    }
}

/// The JetStream key-value bucket holding the writers' leases.
pub const LEASE_BUCKET: &str = "trailwarden_leases";
