//! `[archive]`: where and how long.

use serde::{Deserialize, Serialize};

/// S3 Object Lock mode set on every uploaded object (`x-amz-object-lock-mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockMode {
    /// Nobody, not even the root account, can delete or shorten before the date.
    Compliance,
    /// Users with `s3:BypassGovernanceRetention` can.
    Governance,
}

impl LockMode {
    /// The header value.
    pub fn header(self) -> &'static str {
        match self {
            LockMode::Compliance => "COMPLIANCE",
            LockMode::Governance => "GOVERNANCE",
        }
    }
}

/// `[archive]` (env `TRAILWARDEN_ARCHIVE_URL`, …). Credentials come from the store's usual
/// environment variables (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_REGION`/
/// `AWS_ENDPOINT`, `AZURE_STORAGE_ACCOUNT_NAME`/`AZURE_STORAGE_ACCOUNT_KEY`, …), never from
/// this file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArchiveConfig {
    /// `s3://bucket/prefix`, `az://container/prefix` or `file:///path`. Unset: no archive.
    pub url: Option<String>,
    /// Local (hot) copies are kept at least this many days (PCI DSS 10.5.1: three months
    /// immediately available), then removed once archived and verified.
    pub hot_days: u32,
    /// Archived segments are kept at least this many days (PCI DSS 10.5.1: twelve months).
    pub retain_days: u32,
    /// Per-object S3 Object Lock retention until upload + `retain_days` (unset: rely on the
    /// bucket's default retention, which `trailwarden check` reports).
    pub object_lock: Option<LockMode>,
    /// Seconds between archive passes in `serve`.
    pub interval_seconds: u64,
    /// A sealed segment not archived this many seconds after sealing is a control failure.
    pub max_lag_seconds: u64,
    /// Segments uploaded at once.
    pub concurrency: usize,
    /// S3-compatible endpoint (otherwise `AWS_ENDPOINT` or AWS itself).
    pub endpoint: Option<String>,
    /// Allow plain HTTP to the endpoint (test servers on loopback only).
    pub allow_http: bool,
    /// Seconds before one request to the store times out.
    pub request_timeout_seconds: u64,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        ArchiveConfig {
            url: None,
            hot_days: 90,
            retain_days: 365,
            object_lock: None,
            interval_seconds: 30,
            max_lag_seconds: 300,
            concurrency: 4,
            endpoint: None,
            allow_http: false,
            request_timeout_seconds: 60,
        }
    }
}

impl ArchiveConfig {
    /// An archive at `url` with the defaults.
    pub fn at(url: impl Into<String>) -> ArchiveConfig {
        ArchiveConfig {
            url: Some(url.into()),
            ..ArchiveConfig::default()
        }
    }

    /// Problems with the settings (PCI DSS minimums).
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.hot_days < 90 {
            p.push(format!(
                "archive.hot_days = {}: PCI DSS 10.5.1 wants the latest three months immediately available (90)",
                self.hot_days
            ));
        }
        if self.retain_days < 365 {
            p.push(format!(
                "archive.retain_days = {}: PCI DSS 10.5.1 wants twelve months kept (365)",
                self.retain_days
            ));
        }
        if self.concurrency == 0 {
            p.push("archive.concurrency must be at least 1".into());
        }
        p
    }
}
