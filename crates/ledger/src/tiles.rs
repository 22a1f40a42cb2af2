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
/// Bytes per tile root in the file.
const ROOT_BYTES: u64 = 32;

/// The tile cache as a reader loads it: every complete tile's root, from the file.
pub struct Tiles {
    hashes: Vec<Hash>,
}

impl Tiles {
    /// Load `path` (missing = empty).
    pub fn load(path: &Path) -> Result<Tiles, LedgerError> {
        let mut hashes = Vec::new();
        match File::open(path) {
            Ok(mut f) => {
                let mut buf = Vec::new();
                f.read_to_end(&mut buf).map_err(|e| LedgerError::Io {
                    context: format!("reading {}", path.display()),
                    source: e,
                })?;
                for c in buf.chunks_exact(ROOT_BYTES as usize) {
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
        Ok(Tiles { hashes })
    }

    /// All tile roots.
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }
}

/// The tile cache as the ledger writer keeps it: the count of complete tiles in the file, the
/// tiles completed since the last flush and the leaves of the partial tile. Tiles already in
/// the file are not held: the writer only appends, and holding every root (32 bytes per 256
/// records) grew `serve` by 108 MiB a day at 10k events/s.
pub struct TileWriter {
    path: PathBuf,
    /// Complete tiles in the file.
    written: u64,
    /// Complete tiles not in the file yet.
    new: Vec<Hash>,
    partial: Vec<Hash>,
    /// A flush failed part-way: the file may end in part of a tile, cut before appending.
    torn: bool,
}

impl TileWriter {
    /// Open `path` (missing = empty) for appending: only its length is read; a torn last tile
    /// (a crash in the middle of a write) is cut off.
    pub fn open(path: &Path) -> Result<TileWriter, LedgerError> {
        let len = match std::fs::metadata(path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => {
                return Err(LedgerError::Io {
                    context: format!("reading the size of {}", path.display()),
                    source: e,
                })
            }
        };
        let w = TileWriter {
            path: path.to_path_buf(),
            written: len / ROOT_BYTES,
            new: Vec::new(),
            partial: Vec::new(),
            torn: false,
        };
        if len % ROOT_BYTES != 0 {
            w.cut_file(w.written)?;
        }
        Ok(w)
    }

    /// Complete tiles known (in the file or not yet).
    pub fn len(&self) -> u64 {
        self.written + self.new.len() as u64
    }

    /// Whether no tile is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Complete tiles held in memory (those not flushed yet).
    pub fn held(&self) -> usize {
        self.new.len()
    }

    /// Keep only the first `n` tiles (the file is cut now when it holds more).
    pub fn truncate(&mut self, n: u64) -> Result<(), LedgerError> {
        if n >= self.written {
            self.new.truncate((n - self.written) as usize);
        } else {
            self.new.clear();
            self.cut_file(n)?;
            self.written = n;
        }
        Ok(())
    }

    fn cut_file(&self, tiles: u64) -> Result<(), LedgerError> {
        OpenOptions::new()
            .write(true)
            .open(&self.path)
            .and_then(|f| f.set_len(tiles * ROOT_BYTES))
            .map_err(|e| LedgerError::Io {
                context: format!("cutting {} to {tiles} tiles", self.path.display()),
                source: e,
            })
    }

    /// Add the next leaf hash of the tree.
    pub fn push(&mut self, leaf: Hash) {
        self.partial.push(leaf);
        if self.partial.len() as u64 == TILE {
            self.new.push(root_of(&self.partial));
            self.partial.clear();
        }
    }

    /// Flush and fsync: after this the tiles on disk survive a crash.
    pub fn sync(&mut self) -> Result<(), LedgerError> {
        self.flush()?;
        if self.written == 0 {
            return Ok(());
        }
        File::open(&self.path)
            .and_then(|f| f.sync_all())
            .map_err(|e| LedgerError::Io {
                context: format!("syncing {}", self.path.display()),
                source: e,
            })
    }

    /// Append the new tiles to the file (not fsynced: the cache is rebuildable) and stop
    /// holding them.
    pub fn flush(&mut self) -> Result<(), LedgerError> {
        if self.new.is_empty() {
            return Ok(());
        }
        let err = |e| LedgerError::Io {
            context: format!("writing {}", self.path.display()),
            source: e,
        };
        if self.torn {
            self.cut_file(self.written)?;
            self.torn = false;
        }
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(err)?;
        if let Err(e) = f.write_all(self.new.as_flattened()) {
            self.torn = true;
            return Err(err(e));
        }
        self.written += self.new.len() as u64;
        self.new.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::leaf_hash;

    fn dir(name: &str) -> PathBuf {
        let d = crate::test_path(&format!("tiles-{name}"));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    #[test]
    fn regression_the_writer_does_not_hold_the_tiles_it_has_written() {
        let path = dir("held").join("tiles");
        let mut w = TileWriter::open(&path).unwrap();
        let all = leaves(10 * TILE + 17);
        for (i, l) in all.iter().enumerate() {
            w.push(*l);
            if i % 300 == 299 {
                w.flush().unwrap();
                assert_eq!(w.held(), 0, "after the flush at leaf {i}");
            }
        }
        assert_eq!(w.len(), 10);
        assert_eq!(
            w.held(),
            1,
            "the tenth tile, completed after the last flush"
        );
        w.sync().unwrap();
        assert_eq!(w.held(), 0);
        let read = Tiles::load(&path).unwrap();
        let want: Vec<Hash> = all.chunks(TILE as usize).take(10).map(root_of).collect();
        assert_eq!(read.hashes(), &want[..]);
    }

    #[test]
    fn reopening_counts_the_file_and_cuts_a_torn_last_tile() {
        let path = dir("torn").join("tiles");
        let mut w = TileWriter::open(&path).unwrap();
        for l in leaves(3 * TILE) {
            w.push(l);
        }
        w.flush().unwrap();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[7u8; 13]).unwrap();
        drop(f);
        let w = TileWriter::open(&path).unwrap();
        assert_eq!((w.len(), w.held()), (3, 0));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 3 * 32);
    }

    #[test]
    fn truncating_below_the_file_cuts_it_and_appends_after() {
        let path = dir("truncate").join("tiles");
        let mut w = TileWriter::open(&path).unwrap();
        let all = leaves(6 * TILE);
        for l in &all[..4 * TILE as usize] {
            w.push(*l);
        }
        w.flush().unwrap();
        w.truncate(2).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 2 * 32);
        for l in &all[2 * TILE as usize..] {
            w.push(*l);
        }
        assert_eq!(w.len(), 6);
        w.truncate(5).unwrap();
        assert_eq!((w.len(), w.held()), (5, 3));
        w.flush().unwrap();
        let want: Vec<Hash> = all.chunks(TILE as usize).take(5).map(root_of).collect();
        assert_eq!(Tiles::load(&path).unwrap().hashes(), &want[..]);
    }
}
