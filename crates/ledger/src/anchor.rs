//! Anchoring checkpoints outside the writer's control.
//!
//! [`WormDir`] is a write-once directory with retention: objects are created, never
//! overwritten, and cannot be deleted before their retain-until time. Mounted on separate
//! storage (another volume, an object-store mount with immutability) it is where checkpoints are
//! published by [`DirAnchor`]; a writer that finds fewer records than the anchor saw refuses to
//! start, and `verify` treats anchored checkpoints like any other signed size (so a cut-off
//! tail or a rolled-back checkpoint file is caught).

use crate::writer::Anchor;
use crate::LedgerError;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use trailwarden_model::Timestamp;

/// A write-once directory: create-only objects with a retain-until time.
#[derive(Clone, Debug)]
pub struct WormDir {
    root: PathBuf,
    retention_ns: i64,
}

/// Why a WORM operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum WormError {
    /// The object exists (objects are never overwritten).
    #[error("precondition failed: {0} already exists")]
    Exists(String),
    /// The object is under retention.
    #[error("access denied: {0} is retained until {1}")]
    Retained(String, Timestamp),
    /// An I/O error.
    #[error("{0}")]
    Io(String),
}

impl WormDir {
    /// A WORM directory at `root` whose objects are retained `retention_ns` after creation.
    pub fn new(root: impl Into<PathBuf>, retention_ns: i64) -> Result<WormDir, LedgerError> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(|e| LedgerError::Io {
            context: format!("creating {}", root.display()),
            source: e,
        })?;
        Ok(WormDir { root, retention_ns })
    }

    /// The root path.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Create `name` with `data`; refuses if it exists.
    pub fn put(&self, name: &str, data: &[u8], now: Timestamp) -> Result<(), WormError> {
        let p = self.root.join(name);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&p)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    WormError::Exists(name.to_string())
                } else {
                    WormError::Io(format!("creating {}: {e}", p.display()))
                }
            })?;
        f.write_all(data)
            .and_then(|_| f.sync_all())
            .map_err(|e| WormError::Io(format!("writing {}: {e}", p.display())))?;
        let until = Timestamp(now.0.saturating_add(self.retention_ns));
        fs::write(self.root.join(format!("{name}.retain")), until.to_rfc3339())
            .map_err(|e| WormError::Io(e.to_string()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = fs::set_permissions(&p, fs::Permissions::from_mode(0o444));
        }
        Ok(())
    }

    /// When `name` may be deleted.
    pub fn retain_until(&self, name: &str) -> Option<Timestamp> {
        fs::read_to_string(self.root.join(format!("{name}.retain")))
            .ok()
            .and_then(|s| Timestamp::parse(s.trim()).ok())
    }

    /// Delete `name`; refused while it is retained.
    pub fn delete(&self, name: &str, now: Timestamp) -> Result<(), WormError> {
        if let Some(until) = self.retain_until(name) {
            if now < until {
                return Err(WormError::Retained(name.to_string(), until));
            }
        }
        fs::remove_file(self.root.join(name)).map_err(|e| WormError::Io(e.to_string()))?;
        let _ = fs::remove_file(self.root.join(format!("{name}.retain")));
        Ok(())
    }

    /// Object names (without retention markers).
    pub fn list(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(&self.root)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .filter(|n| !n.ends_with(".retain"))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Read an object.
    pub fn get(&self, name: &str) -> Option<Vec<u8>> {
        fs::read(self.root.join(name)).ok()
    }
}

/// Publishes checkpoints into a [`WormDir`] as `ckpt/<size:020>.note`.
pub struct DirAnchor {
    worm: WormDir,
}

impl DirAnchor {
    /// An anchor in `root` retaining notes for `retention_ns`.
    pub fn new(root: impl Into<PathBuf>, retention_ns: i64) -> Result<DirAnchor, LedgerError> {
        Ok(DirAnchor {
            worm: WormDir::new(root, retention_ns)?,
        })
    }

    /// Every anchored note, by size.
    pub fn notes(&self) -> Vec<(u64, String)> {
        self.worm
            .list()
            .into_iter()
            .filter_map(|n| {
                let size = n.strip_suffix(".note")?.parse::<u64>().ok()?;
                let text = String::from_utf8(self.worm.get(&n)?).ok()?;
                Some((size, text))
            })
            .collect()
    }
}

impl Anchor for DirAnchor {
    fn publish(&mut self, size: u64, note: &str) -> Result<(), LedgerError> {
        match self.worm.put(
            &format!("{size:020}.note"),
            note.as_bytes(),
            Timestamp::now(),
        ) {
            Ok(()) => Ok(()),
            // The same size again (e.g. re-published after a restart): fine only if identical.
            Err(WormError::Exists(n)) => {
                if self.worm.get(&n).as_deref() == Some(note.as_bytes()) {
                    Ok(())
                } else {
                    Err(LedgerError::Corrupt(format!(
                        "the anchor already holds a different checkpoint for size {size}: refusing to sign a fork"
                    )))
                }
            }
            Err(e) => Err(LedgerError::Invalid(format!("anchor: {e}"))),
        }
    }

    fn latest_size(&self) -> Result<u64, LedgerError> {
        Ok(self.notes().iter().map(|(s, _)| *s).max().unwrap_or(0))
    }
}
