//! Opening inputs (files, stdin; gzip and zstd detected by their magic bytes) and reading them
//! as lines with bounded memory.

use crate::error::ParseError;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// How an input was compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Plain bytes.
    None,
    /// gzip (RFC 1952), possibly multi-member.
    Gzip,
    /// Zstandard.
    Zstd,
}

/// A reader that counts the bytes pulled through it (for progress bars over compressed files).
pub struct CountingReader<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// An opened input: a buffered reader of the decompressed bytes, plus what is known about it.
pub struct Input {
    /// The decompressed byte stream.
    pub reader: Box<dyn BufRead + Send>,
    /// The source label (`file:PATH` or `stdin`).
    pub source: String,
    /// Detected compression.
    pub compression: Compression,
    /// Size on disk, when known (for progress).
    pub size: Option<u64>,
    /// Bytes consumed from the underlying (compressed) stream so far.
    pub consumed: Arc<AtomicU64>,
}

/// Open a path (`-` is stdin) with transparent gzip / zstd decompression.
pub fn open(path: &str) -> Result<Input, ParseError> {
    let count = Arc::new(AtomicU64::new(0));
    let (raw, source, size): (Box<dyn Read + Send>, String, Option<u64>) = if path == "-" {
        (Box::new(io::stdin()), "stdin".to_string(), None)
    } else {
        let f = File::open(Path::new(path)).map_err(|e| ParseError::Open {
            path: path.to_string(),
            source: e,
        })?;
        let size = f.metadata().ok().map(|m| m.len());
        (Box::new(f), format!("file:{path}"), size)
    };
    let counted = CountingReader {
        inner: raw,
        count: count.clone(),
    };
    let mut buffered = BufReader::with_capacity(256 * 1024, counted);
    let magic = buffered
        .fill_buf()
        .map_err(|e| ParseError::Read {
            source_name: source.clone(),
            source: e,
        })?
        .to_vec();
    let compression = if magic.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    };
    let reader: Box<dyn BufRead + Send> = match compression {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(BufReader::with_capacity(
            256 * 1024,
            flate2::bufread::MultiGzDecoder::new(buffered),
        )),
        Compression::Zstd => {
            let dec = zstd::stream::read::Decoder::with_buffer(buffered).map_err(|e| {
                ParseError::Read {
                    source_name: source.clone(),
                    source: e,
                }
            })?;
            Box::new(BufReader::with_capacity(256 * 1024, dec))
        }
    };
    Ok(Input {
        reader,
        source,
        compression,
        size,
        consumed: count,
    })
}

/// A gzip-compressing writer (finishes the stream when dropped).
pub fn gzip_writer<W: std::io::Write>(w: W) -> impl std::io::Write {
    flate2::write::GzEncoder::new(w, flate2::Compression::default())
}

/// A zstd-compressing writer (finishes the frame when dropped).
pub fn zstd_writer<W: std::io::Write + 'static>(w: W) -> io::Result<impl std::io::Write> {
    Ok(zstd::stream::write::Encoder::new(w, 3)?.auto_finish())
}

/// One line of input (without its `\n` / `\r\n` terminator).
#[derive(Debug)]
pub struct Line<'a> {
    /// The bytes kept (all of them, unless the line exceeded the cap).
    pub bytes: &'a [u8],
    /// 1-based line number.
    pub number: u64,
    /// Byte offset of the line's first byte in the decompressed input.
    pub offset: u64,
    /// Set when the line was longer than the cap: its full length and SHA-256 (only a prefix of
    /// `cap` bytes is in `bytes`).
    pub overflow: Option<(u64, [u8; 32])>,
    /// Whether the line ended with a newline (false only for the last line of an input).
    pub terminated: bool,
}

/// Reads lines from a `BufRead`, keeping at most `cap` bytes of any one line in memory; the rest
/// of an over-long line is hashed and counted, never buffered.
pub struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    cap: usize,
    number: u64,
    offset: u64,
    strip_bom: bool,
    bom: bool,
}

impl<R: BufRead> LineReader<R> {
    /// A line reader keeping at most `cap` bytes of a line. A UTF-8 BOM at the very start is
    /// skipped (and counted in offsets).
    pub fn new(inner: R, cap: usize) -> Self {
        LineReader {
            inner,
            buf: Vec::with_capacity(64 * 1024),
            cap,
            number: 0,
            offset: 0,
            strip_bom: true,
            bom: false,
        }
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Whether the input started with a UTF-8 byte-order mark (skipped; offsets count it).
    pub fn had_bom(&self) -> bool {
        self.bom
    }

    /// Read the next line; `Ok(None)` at the end of input.
    pub fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        self.buf.clear();
        if self.strip_bom {
            self.strip_bom = false;
            let head = loop {
                match self.inner.fill_buf() {
                    Ok(c) => break c,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            };
            if head.starts_with(&[0xEF, 0xBB, 0xBF]) {
                self.inner.consume(3);
                self.offset += 3;
                self.bom = true;
            }
        }
        let start = self.offset;
        let mut total: u64 = 0;
        let mut hasher: Option<Sha256> = None;
        let mut terminated = false;
        loop {
            let chunk = match self.inner.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                break;
            }
            let (take, found) = match memchr::memchr(b'\n', chunk) {
                Some(i) => (i, true),
                None => (chunk.len(), false),
            };
            let piece = &chunk[..take];
            total += piece.len() as u64;
            if let Some(h) = hasher.as_mut() {
                h.update(piece);
            } else if self.buf.len() + piece.len() > self.cap {
                let mut h = Sha256::new();
                h.update(&self.buf);
                h.update(piece);
                let room = self.cap - self.buf.len();
                self.buf.extend_from_slice(&piece[..room]);
                hasher = Some(h);
            } else {
                self.buf.extend_from_slice(piece);
            }
            let consumed = take + usize::from(found);
            self.inner.consume(consumed);
            self.offset += consumed as u64;
            if found {
                terminated = true;
                break;
            }
        }
        if total == 0 && !terminated {
            return Ok(None);
        }
        self.number += 1;
        let mut bytes: &[u8] = &self.buf;
        let offset = start;
        let overflow = hasher.map(|h| {
            let digest: [u8; 32] = h.finalize().into();
            (total, digest)
        });
        if overflow.is_none() && bytes.last() == Some(&b'\r') {
            bytes = &bytes[..bytes.len() - 1];
        }
        Ok(Some(Line {
            bytes,
            number: self.number,
            offset,
            overflow,
            terminated,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_with_bom_crlf_and_no_final_newline() {
        let data = b"\xEF\xBB\xBFone\r\ntwo\n\nthree";
        let mut r = LineReader::new(&data[..], 100);
        let l = r.next_line().unwrap().unwrap();
        assert_eq!((l.bytes, l.number, l.offset), (&b"one"[..], 1, 3));
        let l = r.next_line().unwrap().unwrap();
        assert_eq!((l.bytes, l.number, l.offset), (&b"two"[..], 2, 8));
        let l = r.next_line().unwrap().unwrap();
        assert_eq!((l.bytes, l.number), (&b""[..], 3));
        let l = r.next_line().unwrap().unwrap();
        assert_eq!((l.bytes, l.terminated), (&b"three"[..], false));
        assert!(r.next_line().unwrap().is_none());
    }

    #[test]
    fn overlong_line_is_capped_and_hashed() {
        let long = vec![b'x'; 1000];
        let mut data = long.clone();
        data.extend_from_slice(b"\nok\n");
        // tiny buffer to force many fill_buf rounds
        let mut r = LineReader::new(BufReader::with_capacity(7, &data[..]), 10);
        let l = r.next_line().unwrap().unwrap();
        assert_eq!(l.bytes.len(), 10);
        let (len, digest) = l.overflow.unwrap();
        assert_eq!(len, 1000);
        let want: [u8; 32] = Sha256::digest(&long).into();
        assert_eq!(digest, want);
        let l = r.next_line().unwrap().unwrap();
        assert_eq!(l.bytes, b"ok");
        assert_eq!(l.offset, 1001);
    }
}
