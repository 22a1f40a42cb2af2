//! Does the store itself refuse to alter or delete what was archived, and for how long?
//! `object_store` has no API for it, so these are signed requests of their own: S3
//! `GetObjectLockConfiguration`, Azure Get Container Properties.

use crate::store::Kind;
use crate::{Archive, ArchiveError};
use serde::Serialize;

/// What the store enforces.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Immutability {
    /// The store refuses deletes and overwrites of archived objects.
    pub enforced: bool,
    /// `COMPLIANCE`, `GOVERNANCE`, `container policy`, `version-level WORM`.
    pub mode: Option<String>,
    /// The default retention in days, when the store says.
    pub days: Option<u32>,
    /// What was found, for people.
    pub detail: String,
}

/// The check `trailwarden check` reports.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ImmutabilityCheck {
    /// What the store enforces.
    pub immutability: Immutability,
    /// Findings: not enforced, or shorter than `retain_days`.
    pub findings: Vec<String>,
}

fn tag<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let a = xml.find(&open)? + open.len();
    let b = xml[a..].find(&close)? + a;
    Some(xml[a..b].trim())
}

fn store_err(op: &'static str, key: &str, e: impl std::fmt::Display) -> ArchiveError {
    ArchiveError::Store {
        op,
        key: key.to_string(),
        error: object_store::Error::Generic {
            store: "archive",
            source: e.to_string().into(),
        },
    }
}

async fn send(
    req: object_store::client::HttpRequest,
    allow_http: bool,
) -> Result<(u16, http::HeaderMap, String), String> {
    let client = reqwest::Client::builder()
        .https_only(!allow_http)
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    let mut r = client.request(req.method().clone(), req.uri().to_string());
    for (k, v) in req.headers() {
        r = r.header(k, v);
    }
    let resp = r.send().await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.text().await.map_err(|e| e.to_string())?;
    Ok((status, headers, body))
}

impl Archive {
    /// Ask the store what it enforces and compare with `retain_days`.
    pub async fn check_immutability(&self) -> Result<ImmutabilityCheck, ArchiveError> {
        let im = match &self.kind {
            Kind::S3 { bucket } => self.s3_lock(bucket).await?,
            Kind::Azure { container } => self.azure_lock(container).await?,
            Kind::File => Immutability {
                detail: "a local directory enforces nothing: anyone with write access to it can alter the archive (use S3 Object Lock or Azure immutable storage, or a WORM filesystem)".into(),
                ..Immutability::default()
            },
        };
        let mut findings = Vec::new();
        let want = self.cfg.retain_days;
        if !im.enforced {
            findings.push(format!(
                "the archive {} does not enforce immutability (PCI DSS 10.3.3: {})",
                self.url, im.detail
            ));
        } else if let Some(d) = im.days {
            if d < want && self.cfg.object_lock.is_none() {
                findings.push(format!(
                    "the archive {} keeps objects immutable for {d} days, less than archive.retain_days = {want}",
                    self.url
                ));
            }
        }
        Ok(ImmutabilityCheck {
            immutability: im,
            findings,
        })
    }

    async fn s3_lock(&self, bucket: &str) -> Result<Immutability, ArchiveError> {
        let s3 = self
            .s3
            .as_ref()
            .ok_or_else(|| ArchiveError::Config("not an S3 archive".into()))?;
        let endpoint = self.s3_endpoint.clone().unwrap_or_default();
        let url = format!("{}/{bucket}?object-lock=", endpoint.trim_end_matches('/'));
        let cred = s3
            .credentials()
            .get_credential()
            .await
            .map_err(|e| store_err("credentials", bucket, e))?;
        let mut req = http::Request::builder()
            .method("GET")
            .uri(&url)
            .body(object_store::client::HttpRequestBody::empty())
            .map_err(|e| store_err("get object lock", bucket, e))?;
        object_store::aws::AwsAuthorizer::new(&cred, "s3", &self.s3_region)
            .authorize(&mut req, None);
        let (status, _, body) = send(req, self.http_ok)
            .await
            .map_err(|e| store_err("get object lock", bucket, e))?;
        match status {
            200 => {
                let enabled = tag(&body, "ObjectLockEnabled") == Some("Enabled");
                let mode = tag(&body, "Mode").map(String::from);
                let days = tag(&body, "Days")
                    .and_then(|d| d.parse::<u32>().ok())
                    .or_else(|| {
                        tag(&body, "Years")
                            .and_then(|y| y.parse::<u32>().ok())
                            .map(|y| y * 365)
                    });
                let per_object = self.cfg.object_lock.map(|m| m.header().to_string());
                let enforced = enabled && (mode.is_some() || per_object.is_some());
                let detail = match (&mode, days, &per_object) {
                    _ if !enabled => "Object Lock is not enabled on the bucket".to_string(),
                    (Some(m), Some(d), _) => format!("bucket default retention {m} {d} days"),
                    (None, _, Some(m)) => format!(
                        "no bucket default retention; each object is locked {m} for archive.retain_days = {} days on upload",
                        self.cfg.retain_days
                    ),
                    _ => "Object Lock is enabled but no default retention is set and archive.object_lock is not set: objects are not locked".into(),
                };
                Ok(Immutability {
                    enforced,
                    mode: mode.or(per_object),
                    days: days.or(self.cfg.object_lock.map(|_| self.cfg.retain_days)),
                    detail,
                })
            }
            404 if tag(&body, "Code") == Some("NoSuchBucket") => Err(store_err(
                "get object lock",
                bucket,
                format!("HTTP 404 Not Found: bucket {bucket} does not exist"),
            )),
            404 => Ok(Immutability {
                detail: format!(
                    "bucket {bucket} has no Object Lock configuration ({})",
                    tag(&body, "Code").unwrap_or("not found")
                ),
                ..Immutability::default()
            }),
            401 | 403 => Err(ArchiveError::Store {
                op: "get object lock",
                key: bucket.to_string(),
                error: object_store::Error::PermissionDenied {
                    path: bucket.to_string(),
                    source: format!(
                        "HTTP {status}: {}",
                        tag(&body, "Message").or(tag(&body, "Code")).unwrap_or("")
                    )
                    .into(),
                },
            }),
            s => Err(store_err(
                "get object lock",
                bucket,
                format!("HTTP {s}: {}", tag(&body, "Message").unwrap_or(&body)),
            )),
        }
    }

    async fn azure_lock(&self, container: &str) -> Result<Immutability, ArchiveError> {
        let az = self
            .azure
            .as_ref()
            .ok_or_else(|| ArchiveError::Config("not an Azure archive".into()))?;
        let endpoint = self.azure_endpoint.clone().unwrap_or_default();
        let url = format!(
            "{}/{container}?restype=container",
            endpoint.trim_end_matches('/')
        );
        let cred = az
            .credentials()
            .get_credential()
            .await
            .map_err(|e| store_err("credentials", container, e))?;
        let mut req = http::Request::builder()
            .method("GET")
            .uri(&url)
            .header("x-ms-version", "2023-11-03")
            .header(
                "x-ms-date",
                httpdate::fmt_http_date(std::time::SystemTime::now()),
            )
            .body(object_store::client::HttpRequestBody::empty())
            .map_err(|e| store_err("get container properties", container, e))?;
        object_store::azure::AzureAuthorizer::new(&cred, &self.azure_account).authorize(&mut req);
        let (status, headers, body) = send(req, self.http_ok)
            .await
            .map_err(|e| store_err("get container properties", container, e))?;
        if status == 401 || status == 403 {
            return Err(ArchiveError::Store {
                op: "get container properties",
                key: container.to_string(),
                error: object_store::Error::PermissionDenied {
                    path: container.to_string(),
                    source: format!("HTTP {status}: {}", tag(&body, "Message").unwrap_or(""))
                        .into(),
                },
            });
        }
        if status != 200 {
            return Err(store_err(
                "get container properties",
                container,
                format!("HTTP {status}: {}", tag(&body, "Message").unwrap_or(&body)),
            ));
        }
        let flag = |h: &str| {
            headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        };
        let policy = flag("x-ms-has-immutability-policy");
        let versioned = flag("x-ms-immutable-storage-with-versioning-enabled");
        Ok(Immutability {
            enforced: policy || versioned,
            mode: if policy {
                Some("container policy".into())
            } else if versioned {
                Some("version-level WORM".into())
            } else {
                None
            },
            days: None,
            detail: if policy || versioned {
                "the container has an immutability policy; its retention period is visible only through the management API (az storage container immutability-policy show)".into()
            } else {
                format!("container {container} has no immutability policy and no version-level immutability")
            },
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn xml_tags() {
        let x = "<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention><Mode>COMPLIANCE</Mode><Days> 400 </Days></DefaultRetention></Rule></ObjectLockConfiguration>";
        assert_eq!(super::tag(x, "Mode"), Some("COMPLIANCE"));
        assert_eq!(super::tag(x, "Days"), Some("400"));
        assert_eq!(super::tag(x, "Years"), None);
        assert_eq!(super::tag("<Mode>unclosed", "Mode"), None);
    }
}
