//! Frames: the unit the log writes, checksums and reads back.
//!
//! ```text
//! frame header (32 bytes, little-endian)
//!   0  u32 magic "SLFR" (0x5246_4c53 as LE bytes 53 4c 46 52)
//!   4  u32 header_crc32c   CRC32C of bytes 8..32, seeded with the segment's frame salt
//!   8  u8  kind            1 = records, 2 = close, 3 = skip (damage marked by `sluice ctl repair`)
//!   9  u8  reserved (0)
//!  10  u16 record_count
//!  12  u32 payload_len
//!  16  u64 timestamp_ms    arrival time of every record in the frame
//!  24  u32 payload_crc32c  CRC32C of the payload
//!  28  u32 reserved (0)
//! payload (records kind): record_count times
//!   u16 key_len | u8 flags | u8 reserved (0) | u32 data_len | key | data
//! ```

use bytes::Bytes;

pub const FRAME_HEADER_LEN: usize = 32;
pub const RECORD_HEADER_LEN: usize = 8;
pub const FRAME_MAGIC: [u8; 4] = *b"SLFR";
/// Largest payload one frame may carry. PutRecords' 10 MiB request limit fits
/// with room to spare; the limit bounds every read allocation.
pub const FRAME_PAYLOAD_MAX_BYTES: usize = 64 << 20;
/// Records per frame: the record index must fit the 16 low bits of a sequence number.
pub const FRAME_RECORDS_MAX: usize = u16::MAX as usize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    Records = 1,
    Close = 2,
    /// Covers bytes that failed their checksums; written only by repair
    /// (`inspect::repair`), skipped by readers. Its payload is whatever was there.
    Skip = 3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub kind: FrameKind,
    pub record_count: u16,
    pub payload_len: u32,
    pub timestamp_ms: u64,
    pub payload_crc: u32,
}

/// Why bytes are not a valid frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame is cut short")]
    Truncated,
    #[error("bad frame magic")]
    BadMagic,
    #[error("frame header checksum mismatch")]
    HeaderChecksum,
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("frame payload of {0} bytes exceeds the limit")]
    PayloadTooLarge(u32),
    #[error("frame payload checksum mismatch")]
    PayloadChecksum,
    #[error("frame payload does not parse as records")]
    MalformedPayload,
}

impl FrameHeader {
    pub fn frame_len(&self) -> u64 {
        FRAME_HEADER_LEN as u64 + u64::from(self.payload_len)
    }

    /// `salt` is the segment's frame salt: it seeds the header checksum, so bytes
    /// inside a record's data cannot pass for a frame header.
    pub fn encode(&self, salt: u32) -> [u8; FRAME_HEADER_LEN] {
        let mut b = [0u8; FRAME_HEADER_LEN];
        b[0..4].copy_from_slice(&FRAME_MAGIC);
        b[8] = self.kind as u8;
        b[10..12].copy_from_slice(&self.record_count.to_le_bytes());
        b[12..16].copy_from_slice(&self.payload_len.to_le_bytes());
        b[16..24].copy_from_slice(&self.timestamp_ms.to_le_bytes());
        b[24..28].copy_from_slice(&self.payload_crc.to_le_bytes());
        let crc = crc32c::crc32c_append(salt, &b[8..]);
        b[4..8].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and verifies a header; never panics on any input.
    pub fn decode(b: &[u8], salt: u32) -> Result<Self, FrameError> {
        let b: &[u8; FRAME_HEADER_LEN] = b
            .get(..FRAME_HEADER_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or(FrameError::Truncated)?;
        if b[0..4] != FRAME_MAGIC {
            return Err(FrameError::BadMagic);
        }
        if crc32c::crc32c_append(salt, &b[8..]) != u32::from_le_bytes(b[4..8].try_into().unwrap()) {
            return Err(FrameError::HeaderChecksum);
        }
        let kind = match b[8] {
            1 => FrameKind::Records,
            2 => FrameKind::Close,
            3 => FrameKind::Skip,
            other => return Err(FrameError::UnknownKind(other)),
        };
        let payload_len = u32::from_le_bytes(b[12..16].try_into().unwrap());
        if payload_len as usize > FRAME_PAYLOAD_MAX_BYTES {
            return Err(FrameError::PayloadTooLarge(payload_len));
        }
        Ok(Self {
            kind,
            record_count: u16::from_le_bytes(b[10..12].try_into().unwrap()),
            payload_len,
            timestamp_ms: u64::from_le_bytes(b[16..24].try_into().unwrap()),
            payload_crc: u32::from_le_bytes(b[24..28].try_into().unwrap()),
        })
    }
}

/// One record to append.
#[derive(Debug, Clone, Copy)]
pub struct AppendRecord<'a> {
    /// The partition key as UTF-8 bytes (the log does not interpret it).
    pub partition_key: &'a [u8],
    pub data: &'a [u8],
    /// Per-record bits for the layer above (for example "encrypted").
    pub flags: u8,
}

/// Encodes a records frame with its header slot left zeroed; returns the buffer
/// and the payload's CRC. The header is filled in by [`seal_frame`] once the
/// timestamp is known.
pub fn encode_records(records: &[AppendRecord<'_>]) -> Vec<u8> {
    let payload_len: usize = records
        .iter()
        .map(|r| RECORD_HEADER_LEN + r.partition_key.len() + r.data.len())
        .sum();
    let mut buf = Vec::with_capacity(FRAME_HEADER_LEN + payload_len);
    buf.resize(FRAME_HEADER_LEN, 0);
    for r in records {
        buf.extend_from_slice(&(r.partition_key.len() as u16).to_le_bytes());
        buf.push(r.flags);
        buf.push(0);
        buf.extend_from_slice(&(r.data.len() as u32).to_le_bytes());
        buf.extend_from_slice(r.partition_key);
        buf.extend_from_slice(r.data);
    }
    buf
}

/// Writes the header into the first [`FRAME_HEADER_LEN`] bytes of `frame`.
pub fn seal_frame(
    frame: &mut [u8],
    salt: u32,
    kind: FrameKind,
    record_count: u16,
    timestamp_ms: u64,
    payload_crc: u32,
) {
    let header = FrameHeader {
        kind,
        record_count,
        payload_len: (frame.len() - FRAME_HEADER_LEN) as u32,
        timestamp_ms,
        payload_crc,
    };
    frame[..FRAME_HEADER_LEN].copy_from_slice(&header.encode(salt));
}

/// One record as stored in a frame payload, borrowed from the read buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub flags: u8,
    pub partition_key: Bytes,
    pub data: Bytes,
}

/// Splits a verified records payload into its records; never panics.
pub fn decode_records(
    header: &FrameHeader,
    payload: &Bytes,
) -> Result<Vec<StoredRecord>, FrameError> {
    let mut records = Vec::with_capacity(usize::from(header.record_count));
    let mut at = 0usize;
    for _ in 0..header.record_count {
        let h = payload
            .get(at..at + RECORD_HEADER_LEN)
            .ok_or(FrameError::MalformedPayload)?;
        let key_len = usize::from(u16::from_le_bytes([h[0], h[1]]));
        let flags = h[2];
        let data_len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize;
        let key_at = at + RECORD_HEADER_LEN;
        let data_at = key_at + key_len;
        let end = data_at
            .checked_add(data_len)
            .ok_or(FrameError::MalformedPayload)?;
        if end > payload.len() {
            return Err(FrameError::MalformedPayload);
        }
        records.push(StoredRecord {
            flags,
            partition_key: payload.slice(key_at..data_at),
            data: payload.slice(data_at..end),
        });
        at = end;
    }
    if at != payload.len() {
        return Err(FrameError::MalformedPayload);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SALT: u32 = 0x1234_5678;

    fn frame(records: &[AppendRecord<'_>], ts: u64) -> Vec<u8> {
        let mut f = encode_records(records);
        let crc = crc32c::crc32c(&f[FRAME_HEADER_LEN..]);
        seal_frame(
            &mut f,
            SALT,
            FrameKind::Records,
            records.len() as u16,
            ts,
            crc,
        );
        f
    }

    #[test]
    fn round_trip() {
        let recs = [
            AppendRecord {
                partition_key: b"pk",
                data: b"hello",
                flags: 1,
            },
            AppendRecord {
                partition_key: b"",
                data: b"",
                flags: 0,
            },
        ];
        let f = frame(&recs, 42);
        let h = FrameHeader::decode(&f, SALT).unwrap();
        assert_eq!(
            FrameHeader::decode(&f, SALT + 1),
            Err(FrameError::HeaderChecksum)
        );
        assert_eq!(h.timestamp_ms, 42);
        assert_eq!(h.frame_len(), f.len() as u64);
        let payload = Bytes::copy_from_slice(&f[FRAME_HEADER_LEN..]);
        assert_eq!(crc32c::crc32c(&payload), h.payload_crc);
        let out = decode_records(&h, &payload).unwrap();
        assert_eq!(&out[0].data[..], b"hello");
        assert_eq!(&out[0].partition_key[..], b"pk");
        assert_eq!(out[0].flags, 1);
        assert!(out[1].data.is_empty());
    }

    #[test]
    fn every_single_byte_flip_in_the_header_is_detected() {
        let f = frame(
            &[AppendRecord {
                partition_key: b"k",
                data: b"v",
                flags: 0,
            }],
            7,
        );
        for i in 0..FRAME_HEADER_LEN {
            let mut g = f.clone();
            g[i] ^= 0x01;
            assert!(
                FrameHeader::decode(&g, SALT).is_err(),
                "flip at {i} undetected"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn decoders_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            check(&data);
        }
    }

    /// Fuzz entry point: decoding arbitrary bytes must not panic.
    fn check(data: &[u8]) {
        if let Ok(h) = FrameHeader::decode(data, 0) {
            let payload = Bytes::copy_from_slice(&data[FRAME_HEADER_LEN.min(data.len())..]);
            let _ = decode_records(&h, &payload);
        }
        let fake = FrameHeader {
            kind: FrameKind::Records,
            record_count: 3,
            payload_len: data.len() as u32,
            timestamp_ms: 0,
            payload_crc: 0,
        };
        let _ = decode_records(&fake, &Bytes::copy_from_slice(data));
    }
}
