//! A cache of level-8 subtree roots (one 32-byte hash per 256 leaves, `tree/tiles`), so that
//! proofs over millions of records hash a few thousand nodes instead of every leaf. The cache is
//! derived data: it is rebuilt when missing or short, and every proof built from it is checked
//! against a signed checkpoint before it is handed out.

use crate::merkle::{root_of, Hash};
use crate::LedgerError;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Leaves per tile.
pub const TILE: u64 = 256;
/// Tile level (2^8 = 256).
pub const TILE_LEVEL: u32 = 8;

/// The tile cache file plus the leaves of the current partial tile.
pub struct Tiles {
    path: PathBuf,
    hashes: Vec<Hash>,
    partial: Vec<Hash>,
    unflushed: usize,
}

impl Tiles {
    /// Load `path` (missing = empty) for a tree whose first `complete_tiles * 256` leaves are known.
    pub fn load(path: &Path) -> Result<Tiles, LedgerError> {
        let mut hashes = Vec::new();
        match File::open(path) {
            Ok(mut f) => {
                let mut buf = Vec::new();
                f.read_to_end(&mut buf).map_err(|e| LedgerError::Io {
                    context: format!("reading {}", path.display()),
                    source: e,
                })?;
                for c in buf.chunks_exact(32) {
                    let mut h = [0u8; 32];
                    h.copy_from_slice(c);
                    hashes.push(h);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(LedgerError::Io {
                    context: format!("opening {}", path.display()),
                    source: e,
                })
            }
        }
        Ok(Tiles {
            path: path.to_path_buf(),
            hashes,
            partial: Vec::new(),
            unflushed: 0,
        })
    }

    /// Complete tiles known.
    pub fn len(&self) -> u64 {
        self.hashes.len() as u64
    }

    /// Whether no tile is known.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Keep only the first `n` tiles (the file is rewritten at the next flush).
    pub fn truncate(&mut self, n: u64) {
        self.hashes.truncate(n as usize);
        self.unflushed = usize::MAX;
    }

    /// Set the leaves of the partial tile after the complete ones.
    pub fn set_partial(&mut self, leaves: Vec<Hash>) {
        self.partial = leaves;
    }

    /// Add the next leaf hash of the tree.
    pub fn push(&mut self, leaf: Hash) {
        self.partial.push(leaf);
        if self.partial.len() as u64 == TILE {
            self.hashes.push(root_of(&self.partial));
            self.partial.clear();
            if self.unflushed != usize::MAX {
                self.unflushed += 1;
            }
        }
    }

    /// The root of tile `k`, if complete.
    pub fn get(&self, k: u64) -> Option<Hash> {
        self.hashes.get(k as usize).copied()
    }

    /// All tile roots.
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// Flush and fsync: after this the tiles on disk survive a crash.
    pub fn sync(&mut self) -> Result<(), LedgerError> {
        self.flush()?;
        if self.hashes.is_empty() {
            return Ok(());
        }
        File::open(&self.path)
            .and_then(|f| f.sync_all())
            .map_err(|e| LedgerError::Io {
                context: format!("syncing {}", self.path.display()),
                source: e,
            })
    }

    /// Write new tiles to disk (not fsynced: the cache is rebuildable).
    pub fn flush(&mut self) -> Result<(), LedgerError> {
        let err = |e| LedgerError::Io {
            context: format!("writing {}", self.path.display()),
            source: e,
        };
        if self.unflushed == usize::MAX {
            let mut f = File::create(&self.path).map_err(err)?;
            for h in &self.hashes {
                f.write_all(h).map_err(err)?;
            }
        } else if self.unflushed > 0 {
            let mut f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(err)?;
            for h in &self.hashes[self.hashes.len() - self.unflushed..] {
                f.write_all(h).map_err(err)?;
            }
        }
        self.unflushed = 0;
        Ok(())
    }
}
