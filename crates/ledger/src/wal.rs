//! The write-ahead log: framed records appended with group commit, and the scanner that
//! recovers it after a crash.
//!
//! ```text
//! frame := "TWW1" | flags u8 (bit 0: last frame of its commit batch) | 0u8 | 0u16
//!          | batch u64 BE (commit batch number) | rec_len u32 BE | meta_len u32 BE
//!          | record[rec_len] | meta[meta_len] | leaf_hash[32] | chain[32]
//!          | crc32c u32 BE (over every preceding byte of the frame)
//! ```
//!
//! Recovery (see [`scan`]): a crash before `fdatasync` returns may persist any subset of the
//! last batch's pages, so damage confined to the final, unacknowledged batch is a torn tail
//! (truncated and recorded); damage anywhere before it — a bad frame followed by frames of a
//! later batch, or a bad region longer than one batch — is corruption, and the writer refuses to
//! start. The batch numbers and end flags make the two distinguishable.
//!
//! `record` is the hashed encoding (see [`crate::record`]); `meta` is the JSON of what was
//! extracted from it (not hashed: query columns are derived data); `chain` links each frame to
//! the previous one (`SHA-256(0x02 || previous chain || leaf hash)`) so that a garbled frame in
//! the middle can never be skipped silently.

use crate::merkle::{chain_next, leaf_hash, Hash};
use crate::record;
use std::io;

/// Frame magic.
pub const FRAME_MAGIC: &[u8; 4] = b"TWW1";
/// Header size (magic, flags, batch, two lengths).
pub const FRAME_HEADER: usize = 24;
/// Header plus trailer (two hashes + CRC).
pub const FRAME_OVERHEAD: usize = FRAME_HEADER + 32 + 32 + 4;
/// Largest frame accepted when scanning (a record of the maximum payload plus meta).
pub const MAX_FRAME: usize = record::MAX_PAYLOAD + (4 << 20);

/// Append one frame to `out`.
pub fn encode_frame(
    batch: u64,
    record: &[u8],
    meta: &[u8],
    leaf: &Hash,
    chain: &Hash,
    out: &mut Vec<u8>,
) {
    let start = begin_frame(batch, record.len() + meta.len(), out);
    out.extend_from_slice(record);
    finish_frame(start, meta, leaf, chain, out);
}

/// Append one frame whose record `write_record` encodes straight into `out` (no intermediate
/// copy of the payload). Returns the record's leaf hash and the new chain value; on error `out`
/// is left as it was.
pub fn append_frame<E>(
    batch: u64,
    meta: &[u8],
    prev_chain: &Hash,
    out: &mut Vec<u8>,
    size_hint: usize,
    write_record: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
) -> Result<(Hash, Hash), E> {
    let start = begin_frame(batch, size_hint + meta.len(), out);
    let rec_start = out.len();
    if let Err(e) = write_record(out) {
        out.truncate(start);
        return Err(e);
    }
    let leaf = leaf_hash(&out[rec_start..]);
    let chain = chain_next(prev_chain, &leaf);
    finish_frame(start, meta, &leaf, &chain, out);
    Ok((leaf, chain))
}

fn begin_frame(batch: u64, body_hint: usize, out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.reserve(FRAME_OVERHEAD + body_hint);
    out.extend_from_slice(FRAME_MAGIC);
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&batch.to_be_bytes());
    // record and meta lengths, filled in by finish_frame
    out.extend_from_slice(&[0; 8]);
    start
}

fn finish_frame(start: usize, meta: &[u8], leaf: &Hash, chain: &Hash, out: &mut Vec<u8>) {
    let rec_len = out.len() - start - FRAME_HEADER;
    out[start + 16..start + 20].copy_from_slice(&(rec_len as u32).to_be_bytes());
    out[start + 20..start + 24].copy_from_slice(&(meta.len() as u32).to_be_bytes());
    out.extend_from_slice(meta);
    out.extend_from_slice(leaf);
    out.extend_from_slice(chain);
    let crc = crc32c::crc32c(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// Mark the frame that starts at `frame_start` in `buf` as the last of its batch (the CRC is
/// recomputed). Called once per commit, on the batch's final frame.
pub fn mark_batch_end(buf: &mut [u8], frame_start: usize) {
    buf[frame_start + 4] |= 1;
    let rec_len = u32::from_be_bytes(
        buf[frame_start + 16..frame_start + 20]
            .try_into()
            .unwrap_or_default(),
    ) as usize;
    let meta_len = u32::from_be_bytes(
        buf[frame_start + 20..frame_start + 24]
            .try_into()
            .unwrap_or_default(),
    ) as usize;
    let crc_at = frame_start + FRAME_OVERHEAD + rec_len + meta_len - 4;
    let crc = crc32c::crc32c(&buf[frame_start..crc_at]);
    buf[crc_at..crc_at + 4].copy_from_slice(&crc.to_be_bytes());
}

/// A structurally valid frame (magic, bounds and CRC checked).
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// Commit batch number.
    pub batch: u64,
    /// Whether this is the last frame of its batch.
    pub batch_end: bool,
    /// The hashed record bytes.
    pub record: &'a [u8],
    /// The extraction metadata.
    pub meta: &'a [u8],
    /// Stored leaf hash.
    pub leaf: Hash,
    /// Stored chain value.
    pub chain: Hash,
    /// Offset of the frame in the file.
    pub offset: u64,
    /// Total frame length.
    pub len: usize,
}

/// Why bytes at an offset are not a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The bytes end before the frame does.
    Incomplete,
    /// Not a frame (magic, bounds or checksum).
    Invalid(String),
}

/// Read the frame at `off`, checking magic, bounds and CRC.
pub fn frame_at(buf: &[u8], off: usize) -> Result<Frame<'_>, FrameError> {
    let b = &buf[off..];
    if b.len() < FRAME_HEADER {
        return if FRAME_MAGIC.starts_with(&b[..b.len().min(4)]) {
            Err(FrameError::Incomplete)
        } else {
            Err(FrameError::Invalid("bad frame magic".into()))
        };
    }
    if &b[..4] != FRAME_MAGIC {
        return Err(FrameError::Invalid("bad frame magic".into()));
    }
    let batch = u64::from_be_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]);
    let rec_len = u32::from_be_bytes([b[16], b[17], b[18], b[19]]) as usize;
    let meta_len = u32::from_be_bytes([b[20], b[21], b[22], b[23]]) as usize;
    let len = FRAME_OVERHEAD + rec_len + meta_len;
    if len > MAX_FRAME {
        return Err(FrameError::Invalid(format!(
            "frame length {len} over the limit"
        )));
    }
    if b.len() < len {
        return Err(FrameError::Incomplete);
    }
    let crc_at = len - 4;
    let want = u32::from_be_bytes([b[crc_at], b[crc_at + 1], b[crc_at + 2], b[crc_at + 3]]);
    if crc32c::crc32c(&b[..crc_at]) != want {
        return Err(FrameError::Invalid("frame checksum mismatch".into()));
    }
    let rec_end = FRAME_HEADER + rec_len;
    let meta_end = rec_end + meta_len;
    let mut leaf = [0u8; 32];
    leaf.copy_from_slice(&b[meta_end..meta_end + 32]);
    let mut chain = [0u8; 32];
    chain.copy_from_slice(&b[meta_end + 32..meta_end + 64]);
    Ok(Frame {
        batch,
        batch_end: b[4] & 1 == 1,
        record: &b[FRAME_HEADER..rec_end],
        meta: &b[rec_end..meta_end],
        leaf,
        chain,
        offset: off as u64,
        len,
    })
}

/// How a scan ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanEnd {
    /// Every byte belongs to a good frame.
    Clean,
    /// The last bytes are an incomplete or garbled final batch (a crash during write): safe to
    /// truncate at `offset`.
    TornTail {
        /// Where the good frames end.
        offset: u64,
        /// How many bytes follow.
        bytes: u64,
    },
    /// A bad frame with good data after it, or a bad region larger than one batch: refuse.
    Corrupt {
        /// Offset of the first bad frame.
        offset: u64,
        /// The index that frame should have had.
        index: u64,
        /// What is wrong.
        reason: String,
    },
}

/// The result of scanning a WAL.
#[derive(Debug)]
pub struct Scan<'a> {
    /// Good frames, in order.
    pub frames: Vec<Frame<'a>>,
    /// Chain value after the last good frame.
    pub chain: Hash,
    /// How the scan ended.
    pub end: ScanEnd,
}

/// Scan a WAL holding records from `first_index`, validating every frame fully: structure,
/// index, leaf hash and chain. `max_tail` is the largest garbled tail treated as a torn write.
pub fn scan(buf: &[u8], first_index: u64, chain_prev: Hash, max_tail: u64) -> Scan<'_> {
    let mut frames = Vec::new();
    let mut off = 0usize;
    let mut expect = first_index;
    let mut chain = chain_prev;
    while off < buf.len() {
        // A frame whose checksum holds but whose content is wrong was written wrong or
        // tampered with: never a torn write. Structural damage may be a torn final batch.
        let (problem, structural) = match frame_at(buf, off) {
            Ok(f) => match record::decode(f.record) {
                Err(e) => (Some(format!("record {expect}: {e}")), false),
                Ok(d) if d.index != expect => (
                    Some(format!(
                        "frame holds index {} where {expect} belongs",
                        d.index
                    )),
                    false,
                ),
                Ok(_) if leaf_hash(f.record) != f.leaf => (
                    Some(format!(
                        "record {expect}: leaf hash does not match its bytes"
                    )),
                    false,
                ),
                Ok(_) if chain_next(&chain, &f.leaf) != f.chain => {
                    (Some(format!("record {expect}: hash chain broken")), false)
                }
                Ok(_) => {
                    chain = f.chain;
                    off += f.len;
                    expect += 1;
                    frames.push(f);
                    (None, false)
                }
            },
            Err(FrameError::Incomplete) => (Some("incomplete frame".to_string()), true),
            Err(FrameError::Invalid(e)) => (Some(e), true),
        };
        if let Some(reason) = problem {
            let end = if structural {
                classify_damage(buf, off, frames.last(), expect, reason, max_tail)
            } else {
                ScanEnd::Corrupt {
                    offset: off as u64,
                    index: expect,
                    reason,
                }
            };
            return Scan { frames, chain, end };
        }
    }
    Scan {
        frames,
        chain,
        end: ScanEnd::Clean,
    }
}

/// Decide whether damage at `off` is the torn tail of the final batch or corruption.
fn classify_damage(
    buf: &[u8],
    off: usize,
    prev: Option<&Frame<'_>>,
    index: u64,
    reason: String,
    max_tail: u64,
) -> ScanEnd {
    let rest = (buf.len() - off) as u64;
    let later = valid_frames_after(buf, off + 1);
    if rest > max_tail {
        return ScanEnd::Corrupt {
            offset: off as u64,
            index,
            reason: format!("{reason}; {rest} bytes follow, more than one batch ({max_tail})"),
        };
    }
    if let Some(first) = later.first() {
        let batch = first.1;
        let same_batch = later.iter().all(|(_, b)| *b == batch);
        // The damaged frame must belong to that same (final) batch: either it starts it right
        // after a completed batch, or it is inside it.
        let damaged_in_final = match prev {
            None => true,
            Some(p) if p.batch_end => p.batch + 1 == batch,
            Some(p) => p.batch == batch,
        };
        if !(same_batch && damaged_in_final) {
            return ScanEnd::Corrupt {
                offset: off as u64,
                index,
                reason: format!(
                    "{reason}; a valid frame of batch {batch} follows at byte {}",
                    first.0
                ),
            };
        }
    }
    ScanEnd::TornTail {
        offset: off as u64,
        bytes: rest,
    }
}

/// `(offset, batch)` of every structurally valid frame at or after `from`.
fn valid_frames_after(buf: &[u8], from: usize) -> Vec<(usize, u64)> {
    let mut out = Vec::new();
    let mut at = from;
    while at < buf.len() {
        let Some(p) = memmem(&buf[at..], FRAME_MAGIC) else {
            break;
        };
        let off = at + p;
        match frame_at(buf, off) {
            Ok(f) => {
                out.push((off, f.batch));
                at = off + f.len;
            }
            Err(_) => at = off + 1,
        }
    }
    out
}

fn memmem(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The file operations the writer needs, so that tests can inject write and fsync failures.
pub trait WalIo: Send {
    /// Append bytes (the file is opened for appending).
    fn append(&mut self, buf: &[u8]) -> io::Result<()>;
    /// `fdatasync`.
    fn sync(&mut self) -> io::Result<()>;
}

impl WalIo for std::fs::File {
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        io::Write::write_all(self, buf)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::chain_seed;
    use trailwarden_model::{RecordKind, Timestamp};

    /// `n` records in batches of `per` frames; returns the bytes and each frame's end offset.
    fn wal_batches(n: u64, per: u64) -> (Vec<u8>, Vec<usize>) {
        let mut buf = Vec::new();
        let mut ends = Vec::new();
        let mut chain = chain_seed("o");
        for i in 0..n {
            let mut rec = Vec::new();
            record::encode(
                RecordKind::Event,
                i,
                Timestamp(i as i64),
                "t",
                format!("payload {i}").as_bytes(),
                &mut rec,
            )
            .unwrap();
            let leaf = leaf_hash(&rec);
            chain = chain_next(&chain, &leaf);
            let start = buf.len();
            encode_frame(i / per, &rec, b"{}", &leaf, &chain, &mut buf);
            if i % per == per - 1 || i == n - 1 {
                mark_batch_end(&mut buf, start);
            }
            ends.push(buf.len());
        }
        (buf, ends)
    }

    fn wal(n: u64) -> (Vec<u8>, Vec<usize>) {
        wal_batches(n, 5)
    }

    #[test]
    fn clean_scan() {
        let (buf, _) = wal(10);
        let s = scan(&buf, 0, chain_seed("o"), 1 << 20);
        assert_eq!(s.frames.len(), 10);
        assert_eq!(s.end, ScanEnd::Clean);
    }

    #[test]
    fn truncation_at_every_offset_of_the_last_batch_is_a_torn_tail() {
        let (buf, ends) = wal(20);
        let batch_start = ends[14];
        for cut in batch_start + 1..buf.len() {
            let s = scan(&buf[..cut], 0, chain_seed("o"), 1 << 20);
            let good = ends.iter().filter(|e| **e <= cut).count();
            assert_eq!(s.frames.len(), good, "cut {cut}");
            match s.end {
                ScanEnd::Clean => assert!(ends.contains(&cut)),
                ScanEnd::TornTail { offset, .. } => {
                    assert_eq!(offset as usize, *ends.iter().rfind(|e| **e <= cut).unwrap())
                }
                ScanEnd::Corrupt { .. } => panic!("cut {cut} seen as corruption"),
            }
        }
    }

    #[test]
    fn garbage_or_zeros_over_the_last_batch_is_a_torn_tail() {
        let (buf, ends) = wal(20);
        for fill in [0u8, 0xAB] {
            let mut b = buf.clone();
            for x in &mut b[ends[16]..] {
                *x = fill;
            }
            let s = scan(&b, 0, chain_seed("o"), 1 << 20);
            assert_eq!(s.frames.len(), 17);
            assert!(matches!(s.end, ScanEnd::TornTail { .. }), "{:?}", s.end);
        }
    }

    #[test]
    fn a_bad_frame_before_good_ones_is_corruption() {
        let (buf, ends) = wal(20);
        let mut b = buf.clone();
        b[ends[5] + 20] ^= 1;
        let s = scan(&b, 0, chain_seed("o"), 1 << 20);
        assert_eq!(s.frames.len(), 6);
        match s.end {
            ScanEnd::Corrupt { index, offset, .. } => {
                assert_eq!(index, 6);
                assert_eq!(offset as usize, ends[5]);
            }
            other => panic!("{other:?}"),
        }
        // a bad region larger than the batch limit is corruption even at the tail
        let mut b = buf.clone();
        let last = b.len() - 1;
        b[last] ^= 1;
        let s = scan(&b, 0, chain_seed("o"), 4);
        assert!(matches!(s.end, ScanEnd::Corrupt { .. }));
    }

    #[test]
    fn pages_of_the_last_batch_lost_out_of_order_is_a_torn_tail() {
        // batches of 5: frames 15..19 are the final, unacknowledged batch
        let (buf, ends) = wal_batches(20, 5);
        let mut b = buf.clone();
        for x in &mut b[ends[15] + 3..ends[16] + 10] {
            *x = 0; // a hole inside the final batch, frames 17.. still intact
        }
        let s = scan(&b, 0, chain_seed("o"), 1 << 20);
        assert_eq!(s.frames.len(), 16);
        assert!(
            matches!(s.end, ScanEnd::TornTail { offset, .. } if offset as usize == ends[15]),
            "{:?}",
            s.end
        );
        // the same hole one batch earlier: acknowledged data is damaged
        let mut b = buf.clone();
        for x in &mut b[ends[10] + 3..ends[11] + 10] {
            *x = 0;
        }
        let s = scan(&b, 0, chain_seed("o"), 1 << 20);
        assert!(
            matches!(s.end, ScanEnd::Corrupt { index: 11, .. }),
            "{:?}",
            s.end
        );
    }

    #[test]
    fn index_and_chain_are_checked() {
        let (buf, _) = wal(3);
        let s = scan(&buf, 5, chain_seed("o"), 1 << 20);
        assert!(
            matches!(s.end, ScanEnd::Corrupt { ref reason, .. } if reason.contains("index")),
            "{:?}",
            s.end
        );
        let s = scan(&buf, 0, chain_seed("other"), 1 << 20);
        assert!(
            matches!(s.end, ScanEnd::Corrupt { ref reason, .. } if reason.contains("chain")),
            "{:?}",
            s.end
        );
    }
}
