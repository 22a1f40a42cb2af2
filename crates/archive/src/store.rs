//! The object store behind an archive URL, and the create-only primitives.

use crate::{ArchiveConfig, ArchiveError};
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use trailwarden_model::Timestamp;

/// Which kind of store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    S3 { bucket: String },
    Azure { container: String },
    File,
}

/// An archive: an object store and the prefix this ledger's objects live under.
#[derive(Clone)]
pub struct Archive {
    pub(crate) url: String,
    /// Plain HTTP to the store is allowed (test servers on loopback).
    pub(crate) http_ok: bool,
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) prefix: ObjPath,
    pub(crate) kind: Kind,
    pub(crate) cfg: ArchiveConfig,
    /// For the immutability checks, which object_store has no API for.
    pub(crate) s3: Option<Arc<object_store::aws::AmazonS3>>,
    pub(crate) azure: Option<Arc<object_store::azure::MicrosoftAzure>>,
    pub(crate) s3_endpoint: Option<String>,
    pub(crate) s3_region: String,
    pub(crate) azure_endpoint: Option<String>,
    pub(crate) azure_account: String,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive").field("url", &self.url).finish()
    }
}

fn retry(cfg: &ArchiveConfig) -> object_store::RetryConfig {
    object_store::RetryConfig {
        backoff: object_store::BackoffConfig {
            init_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            base: 2.0,
        },
        max_retries: 5,
        retry_timeout: Duration::from_secs(cfg.request_timeout_seconds.max(1) * 3),
    }
}

/// `allow_http` from the settings or the store's usual variable (`AWS_ALLOW_HTTP`,
/// `AZURE_ALLOW_HTTP`, or the Azure emulator).
fn allow_http(cfg: &ArchiveConfig, vars: &[&str]) -> bool {
    cfg.allow_http
        || vars
            .iter()
            .any(|v| std::env::var(v).is_ok_and(|x| x.eq_ignore_ascii_case("true") || x == "1"))
}

fn client_options(cfg: &ArchiveConfig, allow_http: bool) -> object_store::ClientOptions {
    object_store::ClientOptions::new()
        .with_allow_http(allow_http)
        .with_timeout(Duration::from_secs(cfg.request_timeout_seconds.max(1)))
        .with_connect_timeout(Duration::from_secs(10))
}

fn s3_headers(cfg: &ArchiveConfig) -> Result<http::HeaderMap, ArchiveError> {
    let mut h = http::HeaderMap::new();
    // S3 refuses uploads into a bucket with Object Lock unless they carry a checksum header
    h.insert(
        "x-amz-sdk-checksum-algorithm",
        http::HeaderValue::from_static("SHA256"),
    );
    if let Some(mode) = cfg.object_lock {
        let until =
            Timestamp(Timestamp::now().0 + i64::from(cfg.retain_days) * 86_400 * 1_000_000_000);
        let date = until.to_string();
        h.insert(
            "x-amz-object-lock-mode",
            http::HeaderValue::from_static(mode.header()),
        );
        h.insert(
            "x-amz-object-lock-retain-until-date",
            http::HeaderValue::from_str(&date)
                .map_err(|e| ArchiveError::Config(format!("retain-until date {date}: {e}")))?,
        );
    }
    Ok(h)
}

impl Archive {
    /// Open the archive of `cfg.url`. Nothing is sent to the store yet (see [`Archive::probe`]).
    /// The per-object lock date (`object_lock`) is fixed when this is called: open a new one
    /// for each pass.
    pub fn open(cfg: &ArchiveConfig) -> Result<Archive, ArchiveError> {
        let url_text = cfg
            .url
            .clone()
            .ok_or_else(|| ArchiveError::Config("archive.url is not set".into()))?;
        for p in cfg.problems() {
            if p.contains("concurrency") {
                return Err(ArchiveError::Config(p));
            }
        }
        let url = url::Url::parse(&url_text)
            .map_err(|e| ArchiveError::Config(format!("archive.url {url_text:?}: {e}")))?;
        let prefix_of = |u: &url::Url| ObjPath::from(u.path().trim_matches('/'));
        match url.scheme() {
            "s3" | "s3a" => {
                let bucket = url
                    .host_str()
                    .ok_or_else(|| ArchiveError::Config(format!("{url_text}: no bucket")))?
                    .to_string();
                let http_ok = allow_http(cfg, &["AWS_ALLOW_HTTP"]);
                let mut b = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(&bucket)
                    .with_checksum_algorithm(object_store::aws::Checksum::SHA256)
                    .with_retry(retry(cfg))
                    .with_client_options(
                        client_options(cfg, http_ok).with_default_headers(s3_headers(cfg)?),
                    );
                if let Some(e) = &cfg.endpoint {
                    b = b.with_endpoint(e);
                }
                let region = b
                    .get_config_value(&object_store::aws::AmazonS3ConfigKey::Region)
                    .unwrap_or_else(|| "us-east-1".into());
                let endpoint = b
                    .get_config_value(&object_store::aws::AmazonS3ConfigKey::Endpoint)
                    .unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
                let s3 = Arc::new(
                    b.build()
                        .map_err(|e| ArchiveError::Config(format!("{url_text}: {e}")))?,
                );
                Ok(Archive {
                    http_ok,
                    url: url_text,
                    store: s3.clone(),
                    prefix: prefix_of(&url),
                    kind: Kind::S3 { bucket },
                    cfg: cfg.clone(),
                    s3: Some(s3),
                    azure: None,
                    s3_endpoint: Some(endpoint),
                    s3_region: region,
                    azure_endpoint: None,
                    azure_account: String::new(),
                })
            }
            "az" | "azure" | "abfs" => {
                let container = url
                    .host_str()
                    .ok_or_else(|| ArchiveError::Config(format!("{url_text}: no container")))?
                    .to_string();
                let b = object_store::azure::MicrosoftAzureBuilder::from_env();
                let emulator = b
                    .get_config_value(&object_store::azure::AzureConfigKey::UseEmulator)
                    .is_some_and(|v| v == "true");
                let http_ok = emulator || allow_http(cfg, &["AZURE_ALLOW_HTTP"]);
                let b = b
                    .with_container_name(&container)
                    .with_retry(retry(cfg))
                    .with_client_options(client_options(cfg, http_ok));
                let account = b
                    .get_config_value(&object_store::azure::AzureConfigKey::AccountName)
                    .unwrap_or_else(|| "devstoreaccount1".into());
                let endpoint = if emulator {
                    let base = std::env::var("AZURITE_BLOB_STORAGE_URL")
                        .unwrap_or_else(|_| "http://127.0.0.1:10000".into());
                    format!("{}/{account}", base.trim_end_matches('/'))
                } else {
                    b.get_config_value(&object_store::azure::AzureConfigKey::Endpoint)
                        .unwrap_or_else(|| format!("https://{account}.blob.core.windows.net"))
                };
                let az = Arc::new(
                    b.build()
                        .map_err(|e| ArchiveError::Config(format!("{url_text}: {e}")))?,
                );
                Ok(Archive {
                    http_ok,
                    url: url_text,
                    store: az.clone(),
                    prefix: prefix_of(&url),
                    kind: Kind::Azure { container },
                    cfg: cfg.clone(),
                    s3: None,
                    azure: Some(az),
                    s3_endpoint: None,
                    s3_region: String::new(),
                    azure_endpoint: Some(endpoint),
                    azure_account: account,
                })
            }
            "file" => {
                let dir = url
                    .to_file_path()
                    .map_err(|_| ArchiveError::Config(format!("{url_text}: not a local path")))?;
                std::fs::create_dir_all(&dir).map_err(|e| ArchiveError::Io {
                    context: format!("creating the archive directory {}", dir.display()),
                    source: e,
                })?;
                let fs = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|e| ArchiveError::Config(format!("{url_text}: {e}")))?;
                Ok(Archive {
                    http_ok: false,
                    url: url_text,
                    store: Arc::new(fs),
                    prefix: ObjPath::default(),
                    kind: Kind::File,
                    cfg: cfg.clone(),
                    s3: None,
                    azure: None,
                    s3_endpoint: None,
                    s3_region: String::new(),
                    azure_endpoint: None,
                    azure_account: String::new(),
                })
            }
            other => Err(ArchiveError::Config(format!(
                "{url_text}: scheme {other:?} is not one of s3://, az://, file://"
            ))),
        }
    }

    /// The archive URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The settings.
    pub fn config(&self) -> &ArchiveConfig {
        &self.cfg
    }

    /// The object store for DataFusion's `register_object_store` under [`Archive::store_url`]
    /// (for a directory archive, the whole local file system: DataFusion names files by
    /// absolute path).
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        match self.kind {
            Kind::File => Arc::new(object_store::local::LocalFileSystem::new()),
            _ => self.store.clone(),
        }
    }

    /// The URL of the store's root as DataFusion names it (`s3://bucket`, `az://container`,
    /// `file://`).
    pub fn store_url(&self) -> String {
        match &self.kind {
            Kind::S3 { bucket } => format!("s3://{bucket}"),
            Kind::Azure { container } => format!("az://{container}"),
            Kind::File => "file://".into(),
        }
    }

    /// The object path of `rel` under the prefix.
    pub(crate) fn key(&self, rel: &str) -> ObjPath {
        let mut parts: Vec<String> = self
            .prefix
            .parts()
            .map(|p| p.as_ref().to_string())
            .collect();
        parts.extend(rel.split('/').filter(|s| !s.is_empty()).map(String::from));
        ObjPath::from_iter(parts)
    }

    /// The full URL of an object (what DataFusion lists and reads).
    pub fn object_url(&self, rel: &str) -> String {
        let key = self.key(rel);
        match &self.kind {
            Kind::File => match url::Url::parse(&self.url)
                .ok()
                .and_then(|u| u.to_file_path().ok())
            {
                Some(dir) => format!("file://{}", dir.join(key.as_ref()).display()),
                None => format!("file:///{key}"),
            },
            _ => format!("{}/{key}", self.store_url()),
        }
    }

    /// Create `rel` with `data`, never overwriting: an object already there with the same bytes
    /// is success (a retried upload), with other bytes a [`ArchiveError::Conflict`].
    pub(crate) async fn put_create(&self, rel: &str, data: Bytes) -> Result<(), ArchiveError> {
        let key = self.key(rel);
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&key, PutPayload::from_bytes(data.clone()), opts)
            .await
        {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => {
                let have = self.get(rel).await?.ok_or_else(|| ArchiveError::Conflict {
                    key: key.to_string(),
                    detail: "the store says it exists but it cannot be read".into(),
                })?;
                if have == data {
                    Ok(())
                } else {
                    Err(ArchiveError::Conflict {
                        key: key.to_string(),
                        detail: format!(
                            "an object with other bytes is already there (SHA-256 {} here, {} in the archive); it was not overwritten",
                            hex::encode(Sha256::digest(&data)),
                            hex::encode(Sha256::digest(&have))
                        ),
                    })
                }
            }
            Err(e) => Err(ArchiveError::Store {
                op: "put",
                key: key.to_string(),
                error: e,
            }),
        }
    }

    /// The bytes of `rel`, or `None` when it does not exist.
    pub(crate) async fn get(&self, rel: &str) -> Result<Option<Bytes>, ArchiveError> {
        let key = self.key(rel);
        let r = match self.store.get(&key).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => {
                return Err(ArchiveError::Store {
                    op: "get",
                    key: key.to_string(),
                    error: e,
                })
            }
        };
        r.bytes().await.map(Some).map_err(|e| ArchiveError::Store {
            op: "get",
            key: key.to_string(),
            error: e,
        })
    }

    /// Names (relative to `dir`) and sizes of the objects under `dir`, sorted.
    pub(crate) async fn list(&self, dir: &str) -> Result<Vec<(String, u64)>, ArchiveError> {
        let key = self.key(dir);
        let mut out: Vec<(String, u64)> = self
            .store
            .list(Some(&key))
            .map_ok(|m| {
                (
                    m.location.filename().unwrap_or_default().to_string(),
                    m.size,
                )
            })
            .try_collect()
            .await
            .map_err(|e| ArchiveError::Store {
                op: "list",
                key: key.to_string(),
                error: e,
            })?;
        out.sort();
        Ok(out)
    }

    /// Delete `rel` (a missing object is fine).
    pub(crate) async fn delete(&self, rel: &str) -> Result<(), ArchiveError> {
        let key = self.key(rel);
        match self.store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(ArchiveError::Store {
                op: "delete",
                key: key.to_string(),
                error: e,
            }),
        }
    }

    /// Check that the store answers and the credentials work (a list of the prefix): the clear
    /// error at start.
    pub async fn probe(&self) -> Result<(), ArchiveError> {
        self.list("manifest").await.map(|_| ())
    }
}
