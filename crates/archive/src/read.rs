//! Reading the archive back: its segment list, a data directory rebuilt from it (what
//! `verify --archive` checks), and segments restored into a hot data directory.

use crate::sync::{seal_key, seg_key};
use crate::{Archive, ArchiveError};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use trailwarden_ledger::datadir::{self, DataDir, ManifestEntry};
use trailwarden_model::Timestamp;

/// A segment as the archive lists it.
#[derive(Clone, Debug, Serialize)]
pub struct ArchivedSegment {
    /// Its manifest entry (state `sealed`, or `pruned` once purged).
    pub entry: ManifestEntry,
    /// The object's URL (for DataFusion).
    pub url: String,
}

/// What `archive restore` brought back.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Restored {
    /// Segments restored (`[first, last]`).
    pub segments: Vec<(u64, u64)>,
    /// Bytes written.
    pub bytes: u64,
}

fn write_file(p: &Path, data: &[u8]) -> Result<(), ArchiveError> {
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).map_err(|e| ArchiveError::Io {
            context: format!("creating {}", d.display()),
            source: e,
        })?;
    }
    std::fs::write(p, data).map_err(|e| ArchiveError::Io {
        context: format!("writing {}", p.display()),
        source: e,
    })
}

impl Archive {
    /// The segments the archive holds, from its manifest objects (a pruned entry replaces the
    /// sealed one), in index order.
    pub async fn segments(&self) -> Result<Vec<ArchivedSegment>, ArchiveError> {
        let mut by_first: BTreeMap<u64, ManifestEntry> = BTreeMap::new();
        // the entries are small: fetch many at once (a year is thousands of segments)
        let fetched: Vec<(String, String, Option<bytes::Bytes>)> =
            futures::stream::iter(self.list("manifest").await?.into_iter().map(
                |(name, _)| async move {
                    let rel = format!("manifest/{name}");
                    let body = self.get(&rel).await?;
                    Ok::<_, ArchiveError>((name, rel, body))
                },
            ))
            .buffered(32)
            .try_collect()
            .await?;
        for (name, rel, body) in fetched {
            let Some(body) = body else {
                continue;
            };
            let e: ManifestEntry =
                serde_json::from_slice(&body).map_err(|x| ArchiveError::Conflict {
                    key: self.key(&rel).to_string(),
                    detail: format!("not a manifest entry: {x}"),
                })?;
            let pruned = name.ends_with(".pruned.json");
            match by_first.get(&e.first) {
                Some(have) if have.state == "pruned" && !pruned => {}
                _ => {
                    by_first.insert(e.first, e);
                }
            }
        }
        Ok(by_first
            .into_values()
            .map(|mut entry| {
                if entry.state != "pruned" {
                    entry.state = "sealed".into();
                }
                ArchivedSegment {
                    url: self.object_url(&seg_key(&entry)),
                    entry,
                }
            })
            .collect())
    }

    /// `(first, last, object URL)` of the sealed segments the archive holds, in index order:
    /// what the query engine reads (`trailwarden_query::RemoteSegments::segments`).
    pub async fn sealed_segments(&self) -> Result<Vec<(u64, u64, String)>, ArchiveError> {
        Ok(self
            .segments()
            .await?
            .into_iter()
            .filter(|s| s.entry.state == "sealed")
            .map(|s| (s.entry.first, s.entry.last, s.url))
            .collect())
    }

    /// Rebuild a data directory at `target` from the archive alone: identity.json, the
    /// segments and seal notes, manifest.log, checkpoints.log, keys.log. Objects that are
    /// missing are left missing (verify names them). Returns the records the segments cover.
    pub async fn materialize(&self, target: &Path) -> Result<u64, ArchiveError> {
        let d = DataDir::new(target);
        let identity = self.get("identity.json").await?.ok_or_else(|| {
            ArchiveError::Config(format!(
                "{} holds no identity.json: not a trailwarden archive (or nothing was archived yet)",
                self.url
            ))
        })?;
        write_file(&d.identity_path(), &identity)?;
        std::fs::create_dir_all(d.seg_dir()).map_err(|e| ArchiveError::Io {
            context: format!("creating {}", d.seg_dir().display()),
            source: e,
        })?;
        let segs = self.segments().await?;
        let mut manifest = Vec::new();
        for s in &segs {
            let e = &s.entry;
            manifest
                .extend(serde_json::to_vec(e).map_err(|x| ArchiveError::Config(x.to_string()))?);
            manifest.push(b'\n');
            if e.state == "pruned" {
                continue;
            }
            if let Some(b) = self.get(&seg_key(e)).await? {
                write_file(&d.seg_dir().join(&e.file), &b)?;
            }
            if let Some(b) = self.get(&seal_key(e)).await? {
                write_file(&d.seal_file(e.first, e.last), &b)?;
            }
        }
        write_file(&d.manifest_path(), &manifest)?;
        for (dir, path) in [
            ("log/checkpoints", d.checkpoints_log()),
            ("log/keys", d.key_log_path()),
        ] {
            let mut all = Vec::new();
            for (name, _) in self.list(dir).await? {
                if let Some(b) = self.get(&format!("{dir}/{name}")).await? {
                    all.extend_from_slice(&b);
                }
            }
            write_file(&path, &all)?;
        }
        Ok(segs.last().map_or(0, |s| s.entry.last + 1))
    }

    /// Bring evicted segments whose records were received in `[from, to)` back into the hot
    /// data directory (each checked against the SHA-256 its seal note signs, written 0444,
    /// recorded in the manifest as sealed). The caller holds the writer.
    pub async fn restore(
        &self,
        dir: &DataDir,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Restored, ArchiveError> {
        let manifest = datadir::read_manifest(&dir.manifest_path())?;
        let mut out = Restored::default();
        let mut prev_newest: Option<Timestamp> = None;
        for e in &manifest {
            // a segment holds what was received after the previous one's newest record
            let oldest = prev_newest;
            prev_newest = e.newest_received.or(prev_newest);
            if e.state != "evicted" {
                continue;
            }
            let newest = e.newest_received.unwrap_or(Timestamp(i64::MAX));
            if newest < from || oldest.is_some_and(|o| o >= to) {
                continue;
            }
            let data = self
                .get(&seg_key(e))
                .await?
                .ok_or_else(|| ArchiveError::Conflict {
                    key: self.key(&seg_key(e)).to_string(),
                    detail: "evicted locally, but missing from the archive".into(),
                })?;
            crate::sync::expect_sha(self.key(&seg_key(e)).to_string(), &data, e, "restored")?;
            let seal = self
                .get(&seal_key(e))
                .await?
                .ok_or_else(|| ArchiveError::Conflict {
                    key: self.key(&seal_key(e)).to_string(),
                    detail: "the seal note is missing from the archive".into(),
                })?;
            let path = dir.seg_dir().join(&e.file);
            datadir::write_atomic(&dir.seal_file(e.first, e.last), &seal)?;
            datadir::write_atomic(&path, &data)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444));
            }
            datadir::append_manifest(
                &dir.manifest_path(),
                &ManifestEntry {
                    state: "sealed".into(),
                    compact_range: Vec::new(),
                    // kept: marks the segment as restored (it stays hot for the hot period)
                    tombstone: e.tombstone,
                    at: Timestamp::now(),
                    ..e.clone()
                },
            )?;
            out.bytes += (data.len() + seal.len()) as u64;
            out.segments.push((e.first, e.last));
        }
        Ok(out)
    }
}
