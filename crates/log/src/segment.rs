//! Segments: the files a shard log is made of, and a scanner over their frames.
//!
//! ```text
//! segment header (48 bytes, little-endian)
//!   0  [u8; 8] magic "SLUICSEG"
//!   8  u32 format_version (1)
//!  12  u32 frame_salt            random; seeds every frame header checksum in this segment
//!  16  u64 epoch                 the shard log's epoch (high 64 bits of its sequence numbers)
//!  24  u64 base_offset           logical offset of the first frame in this segment
//!  32  u64 timestamp_floor_ms    no frame in this or a later segment is older
//!  40  u32 reserved (0)
//!  44  u32 header_crc32c         CRC32C of bytes 0..44
//! frames follow back to back
//! ```
//! The file name is the base offset, zero-padded to 20 digits, plus `.seg`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::frame::{
    FrameError, FrameHeader, FRAME_HEADER_LEN, FRAME_MAGIC, FRAME_PAYLOAD_MAX_BYTES,
};
use crate::storage::StorageFile;

pub const SEGMENT_HEADER_LEN: usize = 48;
pub const FORMAT_VERSION: u32 = 1;
const SEGMENT_MAGIC: [u8; 8] = *b"SLUICSEG";
const SEGMENT_SUFFIX: &str = ".seg";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub epoch: u64,
    pub base_offset: u64,
    pub timestamp_floor_ms: u64,
    pub frame_salt: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SegmentHeaderError {
    #[error("segment header is cut short")]
    Truncated,
    #[error("bad segment magic")]
    BadMagic,
    #[error("segment header checksum mismatch")]
    Checksum,
    #[error("unsupported segment format version {0}")]
    Version(u32),
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&self.frame_salt.to_le_bytes());
        b[16..24].copy_from_slice(&self.epoch.to_le_bytes());
        b[24..32].copy_from_slice(&self.base_offset.to_le_bytes());
        b[32..40].copy_from_slice(&self.timestamp_floor_ms.to_le_bytes());
        let crc = crc32c::crc32c(&b[..44]);
        b[44..48].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<Self, SegmentHeaderError> {
        let b = b
            .get(..SEGMENT_HEADER_LEN)
            .ok_or(SegmentHeaderError::Truncated)?;
        if b[0..8] != SEGMENT_MAGIC {
            return Err(SegmentHeaderError::BadMagic);
        }
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
        if crc32c::crc32c(&b[..44]) != u32_at(44) {
            return Err(SegmentHeaderError::Checksum);
        }
        if u32_at(8) != FORMAT_VERSION {
            return Err(SegmentHeaderError::Version(u32_at(8)));
        }
        Ok(Self {
            epoch: u64_at(16),
            base_offset: u64_at(24),
            timestamp_floor_ms: u64_at(32),
            frame_salt: u32_at(12),
        })
    }

    /// A header that fails its checksum, mended if one byte of it changed:
    /// every single-byte substitution in bytes 0..44 is tried against the
    /// stored checksum; if none fits and the fields are sane (magic, version,
    /// `base_offset` as named, `epoch` if known), the checksum field itself
    /// was hit. `None` if neither holds.
    pub fn mend(b: &[u8], base_offset: u64, epoch: Option<u64>) -> Option<Self> {
        Self::mend_one_byte(b, base_offset, epoch).or_else(|| Self::resum(b, base_offset, epoch))
    }

    /// The header as it was before one byte of bytes 0..44 changed, found by
    /// the stored checksum (a false match has odds of about 1 in 400,000).
    pub fn mend_one_byte(b: &[u8], base_offset: u64, epoch: Option<u64>) -> Option<Self> {
        let b: [u8; SEGMENT_HEADER_LEN] = b.get(..SEGMENT_HEADER_LEN)?.try_into().ok()?;
        let fits = |h: &Self| h.base_offset == base_offset && epoch.is_none_or(|e| e == h.epoch);
        if let Ok(h) = Self::decode(&b) {
            return fits(&h).then_some(h);
        }
        for i in 0..44 {
            for v in 0..=255u8 {
                if v == b[i] {
                    continue;
                }
                let mut c = b;
                c[i] = v;
                if let Ok(h) = Self::decode(&c) {
                    if fits(&h) {
                        return Some(h);
                    }
                }
            }
        }
        None
    }

    /// The header with its checksum recomputed, if its fields look sane: right
    /// when only the checksum field was hit, wrong when several bytes were
    /// (check the salt against a frame before trusting it).
    pub fn resum(b: &[u8], base_offset: u64, epoch: Option<u64>) -> Option<Self> {
        let b: [u8; SEGMENT_HEADER_LEN] = b.get(..SEGMENT_HEADER_LEN)?.try_into().ok()?;
        let fits = |h: &Self| h.base_offset == base_offset && epoch.is_none_or(|e| e == h.epoch);
        let mut c = b;
        let crc = crc32c::crc32c(&c[..44]);
        c[44..48].copy_from_slice(&crc.to_le_bytes());
        Self::decode(&c).ok().filter(|h| fits(h) && h.epoch >= 1)
    }

    pub fn read_from(file: &dyn StorageFile) -> std::io::Result<Result<Self, SegmentHeaderError>> {
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        let n = file.read_full_at(&mut b, 0)?;
        Ok(Self::decode(&b[..n]))
    }
}

pub fn segment_file_name(base_offset: u64) -> String {
    format!("{base_offset:020}{SEGMENT_SUFFIX}")
}

pub fn segment_path(dir: &Path, base_offset: u64) -> PathBuf {
    dir.join(segment_file_name(base_offset))
}

/// Parses a segment file name back into its base offset.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Position in a segment file of a logical offset.
pub fn file_position(segment_base: u64, offset: u64) -> u64 {
    SEGMENT_HEADER_LEN as u64 + (offset - segment_base)
}

/// A frame read and verified by [`FrameScanner`].
#[derive(Debug, Clone)]
pub struct ScannedFrame {
    pub offset: u64,
    pub header: FrameHeader,
    pub payload: Bytes,
}

#[derive(Debug)]
pub enum Scan {
    Frame(ScannedFrame),
    /// No more frames before the end given to the scanner.
    End,
    /// The bytes at `offset` are not a valid frame (torn, corrupt or not a frame boundary).
    Bad {
        offset: u64,
        reason: FrameError,
    },
}

/// The offset of the first valid frame (both checksums verify) that starts at
/// or after `from` and ends by `end`, searched byte by byte.
///
/// This is how damage is told from a torn tail: a crash can only tear the end
/// of what was written, so bad bytes with a valid frame somewhere after them
/// are corruption of data that was once whole. Header checksums are seeded
/// with the segment's random salt, so record data cannot pass for a frame.
pub fn find_next_frame(
    file: &Arc<dyn StorageFile>,
    header: &SegmentHeader,
    from: u64,
    end: u64,
) -> std::io::Result<Option<u64>> {
    const CHUNK: usize = 1 << 20;
    let mut buf = vec![0u8; CHUNK + FRAME_HEADER_LEN];
    let mut pos = from;
    while pos + FRAME_HEADER_LEN as u64 <= end {
        let want = ((end - pos) as usize).min(buf.len());
        let n = file.read_full_at(&mut buf[..want], file_position(header.base_offset, pos))?;
        if n < FRAME_HEADER_LEN {
            break;
        }
        let b = &buf[..n];
        // Candidates start at 0..=last; each needs a whole header in `b`.
        let last = n - FRAME_HEADER_LEN;
        let mut i = 0;
        while i <= last {
            let Some(found) = b[i..last + 4].windows(4).position(|w| w == FRAME_MAGIC) else {
                break;
            };
            let at = i + found;
            if FrameHeader::decode(&b[at..], header.frame_salt).is_ok() {
                let candidate = pos + at as u64;
                let mut scanner = FrameScanner::new(file.clone(), header, candidate, end, 4096);
                if let Scan::Frame(_) = scanner.next()? {
                    return Ok(Some(candidate));
                }
            }
            i = at + 1;
        }
        if n < want {
            break;
        }
        pos += (last + 1) as u64;
    }
    Ok(None)
}

/// The salt a frame header's checksum was seeded with: CRC32C is affine in
/// its starting value, so the 32 unknown bits follow from the stored checksum
/// by Gaussian elimination over GF(2). `None` if the header's magic is wrong
/// or no salt makes it verify.
pub fn solve_salt(frame_header: &[u8]) -> Option<u32> {
    let b = frame_header.get(..FRAME_HEADER_LEN)?;
    if b[0..4] != FRAME_MAGIC {
        return None;
    }
    let data = &b[8..FRAME_HEADER_LEN];
    let target = u32::from_le_bytes(b[4..8].try_into().unwrap());
    let c0 = crc32c::crc32c_append(0, data);
    let columns: Vec<u32> = (0..32)
        .map(|i| crc32c::crc32c_append(1 << i, data) ^ c0)
        .collect();
    let rhs = target ^ c0;
    // Row j: which salt bits feed output bit j, and what bit j must be.
    let mut rows: Vec<(u32, u32)> = (0..32)
        .map(|j| {
            let mask = (0..32).fold(0u32, |m, i| m | ((columns[i] >> j & 1) << i));
            (mask, rhs >> j & 1)
        })
        .collect();
    for col in 0..32 {
        let pivot = (col..32).find(|&r| rows[r].0 >> col & 1 == 1)?;
        rows.swap(col, pivot);
        let (mask, bit) = rows[col];
        for (r, row) in rows.iter_mut().enumerate() {
            if r != col && row.0 >> col & 1 == 1 {
                row.0 ^= mask;
                row.1 ^= bit;
            }
        }
    }
    let salt = rows
        .iter()
        .enumerate()
        .fold(0u32, |s, (i, row)| s | (row.1 << i));
    FrameHeader::decode(b, salt).is_ok().then_some(salt)
}

/// Reads frames of one segment in order, in chunks, verifying both checksums.
#[derive(Debug)]
pub struct FrameScanner {
    file: Arc<dyn StorageFile>,
    segment_base: u64,
    frame_salt: u32,
    next_offset: u64,
    end: u64,
    buf: Bytes,
    buf_offset: u64,
    chunk_bytes: usize,
}

impl FrameScanner {
    /// Scans from logical `offset` (a frame boundary) up to logical `end`.
    pub fn new(
        file: Arc<dyn StorageFile>,
        header: &SegmentHeader,
        offset: u64,
        end: u64,
        chunk_bytes: usize,
    ) -> Self {
        Self {
            file,
            segment_base: header.base_offset,
            frame_salt: header.frame_salt,
            next_offset: offset,
            end,
            buf: Bytes::new(),
            buf_offset: offset,
            chunk_bytes: chunk_bytes.clamp(4096, 16 << 20),
        }
    }

    /// How much to read ahead at the next refill (the caller's remaining budget).
    pub fn set_chunk_bytes(&mut self, chunk_bytes: usize) {
        self.chunk_bytes = chunk_bytes.clamp(4096, 16 << 20);
    }

    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    pub fn next(&mut self) -> std::io::Result<Scan> {
        let offset = self.next_offset;
        if offset >= self.end {
            return Ok(Scan::End);
        }
        let bad = |reason| Ok(Scan::Bad { offset, reason });
        if !self.fill(FRAME_HEADER_LEN)? {
            return bad(FrameError::Truncated);
        }
        let at = (offset - self.buf_offset) as usize;
        let header = match FrameHeader::decode(&self.buf[at..], self.frame_salt) {
            Ok(h) => h,
            Err(reason) => return bad(reason),
        };
        let frame_len = header.frame_len();
        if offset + frame_len > self.end || !self.fill(frame_len as usize)? {
            return bad(FrameError::Truncated);
        }
        let at = (offset - self.buf_offset) as usize;
        let payload = self
            .buf
            .slice(at + FRAME_HEADER_LEN..at + frame_len as usize);
        if crc32c::crc32c(&payload) != header.payload_crc {
            return bad(FrameError::PayloadChecksum);
        }
        self.next_offset = offset + frame_len;
        Ok(Scan::Frame(ScannedFrame {
            offset,
            header,
            payload,
        }))
    }

    /// Makes sure `len` bytes from `next_offset` are buffered; false if the file
    /// (or the scan range) ends first.
    fn fill(&mut self, len: usize) -> std::io::Result<bool> {
        let have_from = self.next_offset;
        let buffered_end = self.buf_offset + self.buf.len() as u64;
        if have_from >= self.buf_offset && have_from + len as u64 <= buffered_end {
            return Ok(true);
        }
        let want = len
            .max(self.chunk_bytes)
            .min(FRAME_HEADER_LEN + FRAME_PAYLOAD_MAX_BYTES);
        let want = want.min((self.end - have_from) as usize);
        if want < len {
            return Ok(false);
        }
        let mut buf = BytesMut::zeroed(want);
        let n = self
            .file
            .read_full_at(&mut buf, file_position(self.segment_base, have_from))?;
        buf.truncate(n);
        self.buf = buf.freeze();
        self.buf_offset = have_from;
        Ok(n >= len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_corruption() {
        let h = SegmentHeader {
            epoch: 3,
            base_offset: 1 << 40,
            timestamp_floor_ms: 1_700_000_000_000,
            frame_salt: 0xdead_beef,
        };
        let b = h.encode();
        assert_eq!(SegmentHeader::decode(&b), Ok(h));
        for i in 0..SEGMENT_HEADER_LEN {
            let mut c = b;
            c[i] ^= 0x80;
            assert!(SegmentHeader::decode(&c).is_err(), "flip at {i}");
        }
        assert_eq!(
            SegmentHeader::decode(&b[..10]),
            Err(SegmentHeaderError::Truncated)
        );
    }

    #[test]
    fn a_salt_is_solved_from_a_frame_header() {
        use crate::frame::{seal_frame, FrameKind};
        for salt in [0u32, 1, 0xdead_beef, u32::MAX, 0x8000_0000] {
            let mut frame = vec![0u8; FRAME_HEADER_LEN + 5];
            let crc = crc32c::crc32c(&frame[FRAME_HEADER_LEN..]);
            seal_frame(
                &mut frame,
                salt,
                FrameKind::Records,
                1,
                1_700_000_000_000,
                crc,
            );
            assert_eq!(solve_salt(&frame), Some(salt));
            frame[20] ^= 1;
            assert!(solve_salt(&frame).is_none_or(|s| s != salt));
        }
    }

    #[test]
    fn file_names() {
        assert_eq!(segment_file_name(42), "00000000000000000042.seg");
        assert_eq!(
            parse_segment_file_name("00000000000000000042.seg"),
            Some(42)
        );
        assert_eq!(parse_segment_file_name("42.seg"), None);
        assert_eq!(parse_segment_file_name("0000000000000000004x.seg"), None);
    }
}
