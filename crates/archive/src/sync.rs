//! Copying the sealed ledger to the archive, and where each segment stands.

use crate::{Archive, ArchiveError};
use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use trailwarden_ledger::datadir::{self, DataDir, ManifestEntry};
use trailwarden_model::Timestamp;

/// What one archive pass did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SyncReport {
    /// Segments uploaded and verified in this pass (`[first, last]`).
    pub uploaded: Vec<(u64, u64)>,
    /// Segment and seal bytes written.
    pub bytes: u64,
    /// Segments purged from the archive after their retention (tombstone archived first).
    pub purged: Vec<(u64, u64)>,
    /// Bytes of checkpoints.log and keys.log written.
    pub log_bytes: u64,
    /// Records `[0, archived_end)` are all archived (or tombstoned).
    pub archived_end: u64,
    /// Segments sealed but not archived yet.
    pub pending: usize,
    /// Seconds since the oldest segment still waiting was sealed.
    pub max_lag_seconds: f64,
    /// What failed (each names the segment or object); the rest of the pass went on.
    pub failures: Vec<String>,
    /// Objects that exist with other bytes than the ledger's: integrity incidents.
    pub conflicts: Vec<String>,
    /// Seconds the pass took.
    pub elapsed_seconds: f64,
}

/// One segment's place in the tiers (`archive status`).
#[derive(Clone, Debug, Serialize)]
pub struct SegmentStatus {
    /// First index.
    pub first: u64,
    /// Last index.
    pub last: u64,
    /// The segment file name.
    pub file: String,
    /// The manifest state: sealed, evicted, pruned.
    pub state: String,
    /// The local (hot) copy is there.
    pub local: bool,
    /// When the archived copy was re-read and matched.
    pub archived: Option<Timestamp>,
    /// The archive lists the object (only when the archive was asked).
    pub in_archive: Option<bool>,
    /// When the segment's state last changed (sealed, evicted, pruned).
    pub at: Timestamp,
    /// Newest receive time in the segment.
    pub newest_received: Option<Timestamp>,
    /// For a segment not archived yet: seconds since it was sealed.
    pub lag_seconds: Option<f64>,
}

fn stem(e: &ManifestEntry) -> String {
    format!("{:020}-{:020}", e.first, e.last)
}

/// The object names of a segment.
pub(crate) fn seg_key(e: &ManifestEntry) -> String {
    format!("seg/{}", e.file)
}
pub(crate) fn seal_key(e: &ManifestEntry) -> String {
    format!("seg/{}.seal", stem(e))
}
pub(crate) fn manifest_key(e: &ManifestEntry) -> String {
    format!("manifest/{}.json", stem(e))
}
pub(crate) fn pruned_key(e: &ManifestEntry) -> String {
    format!("manifest/{}.pruned.json", stem(e))
}

fn secs_since(t: Timestamp, now: Timestamp) -> f64 {
    (now.0 - t.0).max(0) as f64 / 1e9
}

fn read_file(p: &std::path::Path) -> Result<Vec<u8>, ArchiveError> {
    std::fs::read(p).map_err(|e| ArchiveError::Io {
        context: format!("reading {}", p.display()),
        source: e,
    })
}

/// `data` must be the segment the seal note of `e` signs (its SHA-256); otherwise an integrity
/// incident naming `key` and `what` was read.
pub(crate) fn expect_sha(
    key: String,
    data: &[u8],
    e: &ManifestEntry,
    what: &str,
) -> Result<(), ArchiveError> {
    let sha = hex::encode(Sha256::digest(data));
    if sha == e.sha256 {
        return Ok(());
    }
    Err(ArchiveError::Conflict {
        key,
        detail: format!("{what}: SHA-256 {sha}, the seal note signs {}", e.sha256),
    })
}

/// The size a checkpoint note signs (its second line), without checking the signature:
/// `verify` does that.
fn note_size(note: &str) -> Option<u64> {
    note.lines().nth(1)?.trim().parse().ok()
}

/// Records `[0, end)` that the archive holds whole: the contiguous run of archived segments
/// (pruned ranges count: their tombstone accounts for them).
pub(crate) fn archived_end(manifest: &[ManifestEntry]) -> u64 {
    let mut end = 0;
    for e in manifest {
        if e.first != end || (e.state != "pruned" && e.archived.is_none()) {
            break;
        }
        end = e.last + 1;
    }
    end
}

impl Archive {
    /// One archive pass over the data directory: upload every sealed segment not archived yet
    /// (create-only, re-read, compared with the SHA-256 the seal note signs, then recorded in
    /// the manifest), the logs up to what the archive covers, and purge from the archive the
    /// segments retention pruned once their tombstone is archived. A failure of one segment is
    /// reported and the rest go on; the next pass retries.
    pub async fn sync(&self, dir: &DataDir) -> Result<SyncReport, ArchiveError> {
        let started = std::time::Instant::now();
        let mut report = SyncReport::default();
        let (_, identity) = dir.read_identity()?;
        self.put_create("identity.json", Bytes::from(identity))
            .await?;
        let manifest = datadir::read_manifest(&dir.manifest_path())?;
        // The manifest's `archived` marks refer to the archive named in archive.url; another
        // archive starts over (create-only uploads of what is still local; what was evicted is
        // only in the previous one, and that is reported).
        let url_file = dir.root().join("archive.url");
        let previous = datadir::read_text_if_exists(&url_file)?;
        let moved = previous.as_deref().map(str::trim) != Some(self.url.as_str());
        if moved {
            if let Some(p) = &previous {
                for e in manifest.iter().filter(|e| e.state == "evicted") {
                    report.failures.push(format!(
                        "segment {}-{} was evicted after archiving to {}; it is not in {} (copy it across, or restore it and sync again)",
                        e.first, e.last, p.trim(), self.url
                    ));
                }
            }
        }
        let listed: BTreeSet<String> = self
            .list("manifest")
            .await?
            .into_iter()
            .map(|(n, _)| n)
            .collect();

        // 1. segments
        let todo: Vec<ManifestEntry> = manifest
            .iter()
            .filter(|e| e.state == "sealed" && (moved || e.archived.is_none()))
            .cloned()
            .collect();
        let mut uploads = futures::stream::iter(todo.into_iter().map(|e| {
            let dir = dir.clone();
            async move {
                let r = self.upload_segment(&dir, &e).await;
                (e, r)
            }
        }))
        .buffer_unordered(self.cfg.concurrency.max(1));
        while let Some((e, r)) = uploads.next().await {
            match r {
                Ok(bytes) => {
                    datadir::append_manifest(
                        &dir.manifest_path(),
                        &ManifestEntry {
                            archived: Some(Timestamp::now()),
                            ..e.clone()
                        },
                    )?;
                    report.bytes += bytes;
                    report.uploaded.push((e.first, e.last));
                }
                Err(ArchiveError::Conflict { key, detail }) => {
                    report.conflicts.push(format!("{key}: {detail}"))
                }
                Err(err) => report
                    .failures
                    .push(format!("segment {}-{}: {err}", e.first, e.last)),
            }
        }
        drop(uploads);

        // 2. pruned ranges: their entries, then (once the tombstone itself is archived) the
        // objects go
        let manifest = datadir::read_manifest(&dir.manifest_path())?;
        let end = archived_end(&manifest);
        for e in manifest.iter().filter(|e| e.state == "pruned") {
            let name = format!("{}.pruned.json", stem(e));
            let tombstone_archived = e.tombstone.is_some_and(|t| t < end);
            if !tombstone_archived {
                continue;
            }
            let r = async {
                if !listed.contains(&name) {
                    let mut body = serde_json::to_vec(&ManifestEntry {
                        archived: None,
                        ..e.clone()
                    })
                    .map_err(|x| ArchiveError::Config(x.to_string()))?;
                    body.push(b'\n');
                    self.put_create(&pruned_key(e), Bytes::from(body)).await?;
                }
                if e.archived.is_some() {
                    self.delete(&seg_key(e)).await?;
                    self.delete(&seal_key(e)).await?;
                    datadir::append_manifest(
                        &dir.manifest_path(),
                        &ManifestEntry {
                            archived: None,
                            at: Timestamp::now(),
                            ..e.clone()
                        },
                    )?;
                    return Ok(true);
                }
                Ok::<bool, ArchiveError>(false)
            }
            .await;
            match r {
                Ok(true) => report.purged.push((e.first, e.last)),
                Ok(false) => {}
                Err(ArchiveError::Conflict { key, detail }) => {
                    report.conflicts.push(format!("{key}: {detail}"))
                }
                Err(err) => report.failures.push(format!(
                    "purging segment {}-{} from the archive: {err}",
                    e.first, e.last
                )),
            }
        }

        // 3. the signed logs, as far as the archive reaches
        let manifest = datadir::read_manifest(&dir.manifest_path())?;
        let end = archived_end(&manifest);
        report.archived_end = end;
        let cp_bytes = datadir::read_if_exists(&dir.checkpoints_log())?.unwrap_or_default();
        let cps = datadir::parse_checkpoint_log(&cp_bytes);
        let mut boundary = 0u64;
        for (i, entry) in cps.entries.iter().enumerate() {
            if note_size(&entry.note).is_none_or(|s| s > end) {
                break;
            }
            boundary = cps.entries.get(i + 1).map_or_else(
                || cps.torn_tail.map_or(cp_bytes.len() as u64, |t| t.0),
                |n| n.offset,
            );
        }
        match self
            .append_log("log/checkpoints", &cp_bytes, boundary)
            .await
        {
            Ok(n) => report.log_bytes += n,
            Err(err) => report.failures.push(format!("checkpoints.log: {err}")),
        }
        let keys = datadir::read_if_exists(&dir.key_log_path())?.unwrap_or_default();
        let mut kb = 0u64;
        let mut off = 0u64;
        for line in keys.split_inclusive(|&c| c == b'\n') {
            off += line.len() as u64;
            if !line.ends_with(b"\n") {
                break;
            }
            let index = serde_json::from_slice::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v.get("index").and_then(|i| i.as_u64()));
            match index {
                Some(i) if i < end => kb = off,
                _ => break,
            }
        }
        match self.append_log("log/keys", &keys, kb).await {
            Ok(n) => report.log_bytes += n,
            Err(err) => report.failures.push(format!("keys.log: {err}")),
        }

        if moved && report.conflicts.is_empty() && report.failures.is_empty() {
            datadir::write_atomic(&url_file, format!("{}\n", self.url).as_bytes())?;
        }
        let now = Timestamp::now();
        let waiting: Vec<&ManifestEntry> = manifest
            .iter()
            .filter(|e| e.state == "sealed" && e.archived.is_none())
            .collect();
        report.pending = waiting.len();
        report.max_lag_seconds = waiting
            .iter()
            .map(|e| secs_since(e.at, now))
            .fold(0.0, f64::max);
        report.elapsed_seconds = started.elapsed().as_secs_f64();
        Ok(report)
    }

    /// Upload one segment, its seal note and its manifest entry; returns the bytes written.
    async fn upload_segment(&self, dir: &DataDir, e: &ManifestEntry) -> Result<u64, ArchiveError> {
        let path = dir.seg_dir().join(&e.file);
        let data = Bytes::from(read_file(&path)?);
        expect_sha(
            path.display().to_string(),
            &data,
            e,
            "the local segment; not archived (run trailwarden verify)",
        )?;
        let seal = Bytes::from(read_file(&dir.seal_file(e.first, e.last))?);
        let n = (data.len() + seal.len()) as u64;
        self.put_create(&seg_key(e), data).await?;
        self.put_create(&seal_key(e), seal).await?;
        // re-read: what the archive holds is what the seal note signs
        let back = self
            .get(&seg_key(e))
            .await?
            .ok_or_else(|| ArchiveError::Conflict {
                key: self.key(&seg_key(e)).to_string(),
                detail: "uploaded, but not found when read back".into(),
            })?;
        expect_sha(self.key(&seg_key(e)).to_string(), &back, e, "read back")?;
        let mut body = serde_json::to_vec(&ManifestEntry {
            archived: None,
            ..e.clone()
        })
        .map_err(|x| ArchiveError::Config(x.to_string()))?;
        body.push(b'\n');
        self.put_create(&manifest_key(e), Bytes::from(body)).await?;
        Ok(n)
    }

    /// Continue an append-only log in the archive: the bytes `[uploaded, upto)` of `local` as one
    /// object named by its offset. Returns the bytes written.
    async fn append_log(&self, dir: &str, local: &[u8], upto: u64) -> Result<u64, ArchiveError> {
        let parts = self.list(dir).await?;
        let mut have = 0u64;
        for (name, size) in &parts {
            let off: u64 = name.parse().map_err(|_| ArchiveError::Conflict {
                key: format!("{dir}/{name}"),
                detail: "not a log part (its name is not a byte offset)".into(),
            })?;
            if off != have {
                return Err(ArchiveError::Conflict {
                    key: format!("{dir}/{name}"),
                    detail: format!("the parts leave a gap: expected one at offset {have}"),
                });
            }
            have = off + size;
        }
        if upto <= have {
            return Ok(0);
        }
        if (upto as usize) > local.len() {
            return Ok(0);
        }
        let chunk = Bytes::copy_from_slice(&local[have as usize..upto as usize]);
        self.put_create(&format!("{dir}/{have:020}"), chunk).await?;
        Ok(upto - have)
    }

    /// Where every segment of the data directory stands; with `ask_archive`, the archive's
    /// listing is compared too.
    pub async fn status(
        &self,
        dir: &DataDir,
        ask_archive: bool,
    ) -> Result<Vec<SegmentStatus>, ArchiveError> {
        let listed: Option<BTreeSet<String>> = if ask_archive {
            Some(
                self.list("seg")
                    .await?
                    .into_iter()
                    .map(|(n, _)| n)
                    .collect(),
            )
        } else {
            None
        };
        local_status(dir, listed.as_ref())
    }
}

/// Whether the manifest's `archived` marks refer to the archive at `url` (the data directory's
/// `archive.url`, written after a complete pass). Eviction trusts the marks only then: after a
/// change of archive, segments are in the previous one until a pass completes.
pub fn marks_refer_to(dir: &DataDir, url: &str) -> bool {
    datadir::read_text_if_exists(&dir.root().join("archive.url"))
        .ok()
        .flatten()
        .is_some_and(|u| u.trim() == url)
}

/// Where every segment stands, from the manifest alone (`listed`: the archive's `seg/` names).
pub fn local_status(
    dir: &DataDir,
    listed: Option<&BTreeSet<String>>,
) -> Result<Vec<SegmentStatus>, ArchiveError> {
    let now = Timestamp::now();
    Ok(datadir::read_manifest(&dir.manifest_path())?
        .into_iter()
        .map(|e| SegmentStatus {
            local: e.state == "sealed" && dir.seg_dir().join(&e.file).exists(),
            in_archive: listed.map(|l| l.contains(&e.file)),
            lag_seconds: (e.state == "sealed" && e.archived.is_none())
                .then(|| secs_since(e.at, now)),
            first: e.first,
            last: e.last,
            file: e.file,
            state: e.state,
            archived: e.archived,
            at: e.at,
            newest_received: e.newest_received,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(first: u64, last: u64, state: &str, archived: bool) -> ManifestEntry {
        ManifestEntry {
            first,
            last,
            state: state.into(),
            file: format!("{first:020}-{last:020}.parquet"),
            sha256: String::new(),
            seal_size: last + 1,
            seal_root: String::new(),
            frontier: Vec::new(),
            chain: String::new(),
            at: Timestamp(0),
            newest_received: None,
            compact_range: Vec::new(),
            tombstone: None,
            archived: archived.then_some(Timestamp(1)),
            stream: None,
        }
    }

    #[test]
    fn the_archived_prefix_stops_at_the_first_gap() {
        let m = [
            entry(0, 9, "pruned", false),
            entry(10, 19, "evicted", true),
            entry(20, 29, "sealed", true),
            entry(30, 39, "sealed", false),
            entry(40, 49, "sealed", true),
        ];
        assert_eq!(archived_end(&m), 30);
        assert_eq!(archived_end(&m[..3]), 30);
        assert_eq!(archived_end(&m[1..]), 0, "a ledger must start at record 0");
        assert_eq!(archived_end(&[]), 0);
    }

    #[test]
    fn eviction_trusts_the_marks_only_for_the_archive_they_were_made_for() {
        let root = std::env::temp_dir().join(format!("tw-arch-marks-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap_or_default();
        let d = DataDir::new(&root);
        assert!(!marks_refer_to(&d, "s3://a/p"), "no pass completed yet");
        std::fs::write(root.join("archive.url"), "s3://a/p\n").unwrap_or_default();
        assert!(marks_refer_to(&d, "s3://a/p"));
        assert!(!marks_refer_to(&d, "s3://b/p"), "another archive");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn note_sizes() {
        assert_eq!(note_size("origin\n42\nroot\n\n— sig\n"), Some(42));
        assert_eq!(note_size("origin\nforty\n"), None);
        assert_eq!(note_size(""), None);
    }
}
