//! Records larger than the stream takes: compressed, kept in an object store
//! behind a pointer (claim check), or split into chunks. docs/large-records.md
//! has the wire format for other languages; in short, an envelope is
//!
//! ```text
//! magic  F5 4C 52 31          ("\xF5LR1"; 0xF5 never starts UTF-8 text)
//! u32    header length H, big-endian, at most 4096
//! H      header: a JSON object, "t" its type
//! ...    payload
//! ```
//!
//! - `{"t":"compressed","codec":"gzip|zstd|lz4|snappy","size":N,"crc32c":C}`:
//!   the payload is the data compressed (a gzip member, a zstd frame, an LZ4
//!   frame, snappy's framing format); N and C are the data's size and CRC-32C.
//! - `{"t":"claim-check","bucket":B,"key":K,"size":N,"sha256":HEX}`: the
//!   data is object K of bucket B; no payload.
//! - `{"t":"chunk","id":HEX,"index":I,"count":C,"size":N,"sha256":HEX,"crc32c":X}`:
//!   part I (from 0) of C of message `id`, N bytes in all with that SHA-256;
//!   X is this part's CRC-32C. Parts are cut at equal lengths (the last may
//!   be shorter) and put in order on the message's partition key.
//!
//! A reassembled or fetched message may itself be an envelope (a compressed
//! message split into chunks); at most two levels are opened. Anything that
//! does not parse as an envelope, or whose checksums do not hold, is
//! ordinary data.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt as _;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt as _, PutPayload};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::producer::{Ack, Producer, PutError, Receipt, Record};

pub const MAGIC: [u8; 4] = [0xF5, b'L', b'R', b'1'];
/// The longest header read.
pub const HEADER_MAX: usize = 4096;
/// Room kept in a record for the envelope's header: the largest header
/// this module writes is well under it.
const HEADER_ROOM: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    Gzip,
    Zstd,
    Lz4,
    Snappy,
}

impl std::str::FromStr for Codec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "gzip" => Ok(Self::Gzip),
            "zstd" => Ok(Self::Zstd),
            "lz4" => Ok(Self::Lz4),
            "snappy" => Ok(Self::Snappy),
            _ => Err(format!("a codec is gzip, zstd, lz4 or snappy, not {s:?}")),
        }
    }
}

/// An envelope's header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "kebab-case")]
pub enum Header {
    Compressed {
        codec: Codec,
        size: u64,
        crc32c: u32,
    },
    ClaimCheck {
        bucket: String,
        key: String,
        size: u64,
        sha256: String,
    },
    Chunk {
        id: String,
        index: u32,
        count: u32,
        size: u64,
        sha256: String,
        crc32c: u32,
    },
}

/// An envelope: the header, then the payload.
pub fn envelope(header: &Header, payload: &[u8]) -> Vec<u8> {
    let json = serde_json::to_vec(header).expect("a header is JSON");
    let mut out = Vec::with_capacity(8 + json.len() + payload.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(payload);
    out
}

/// The header and payload of an envelope; `None` for anything else.
pub fn open(data: &[u8]) -> Option<(Header, &[u8])> {
    let rest = data.strip_prefix(&MAGIC)?;
    let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    if len > HEADER_MAX {
        return None;
    }
    let header = rest.get(4..4 + len)?;
    let header: Header = serde_json::from_slice(header).ok()?;
    Some((header, &rest[4 + len..]))
}

pub fn sha256_hex(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn compress(codec: Codec, data: &[u8]) -> Vec<u8> {
    match codec {
        Codec::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).expect("writing to memory");
            e.finish().expect("writing to memory")
        }
        Codec::Zstd => zstd::bulk::compress(data, 3).expect("zstd compresses any input"),
        Codec::Lz4 => {
            let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
            e.write_all(data).expect("writing to memory");
            e.finish().expect("writing to memory")
        }
        Codec::Snappy => {
            let mut e = snap::write::FrameEncoder::new(Vec::new());
            e.write_all(data).expect("writing to memory");
            e.into_inner().expect("writing to memory")
        }
    }
}

/// Decompresses at most `max` bytes; an error for more, or for bytes that
/// are not what the codec writes.
pub fn decompress(codec: Codec, data: &[u8], max: usize) -> Result<Vec<u8>, String> {
    let reader: Box<dyn Read + '_> = match codec {
        Codec::Gzip => Box::new(flate2::read::GzDecoder::new(data)),
        Codec::Zstd => Box::new(zstd::stream::read::Decoder::new(data).map_err(|e| e.to_string())?),
        Codec::Lz4 => Box::new(lz4_flex::frame::FrameDecoder::new(data)),
        Codec::Snappy => Box::new(snap::read::FrameDecoder::new(data)),
    };
    let mut out = Vec::new();
    reader
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("{codec:?} data that does not decompress: {e}"))?;
    if out.len() > max {
        return Err(format!("decompresses to more than {max} bytes"));
    }
    Ok(out)
}

/// How `put` handles a record larger than the stream takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Refuse it.
    Off,
    /// Always compress (with this codec), whatever the size; in chunks if
    /// it is still too large.
    Compress(Codec),
    /// Always keep the data in the object store.
    ClaimCheck,
    /// Always split into chunks (one, if it fits).
    Chunk,
    /// As is if it fits; else compressed with zstd if that fits; else in the
    /// object store if there is one; else in chunks (of the compressed data
    /// when compressing helped).
    Auto,
}

/// An object store for claim checks: one bucket.
#[derive(Debug, Clone)]
pub struct Store {
    pub bucket: String,
    store: Arc<dyn ObjectStore>,
}

impl Store {
    /// A local directory: bucket `bucket` is its subdirectory.
    pub fn local(dir: &std::path::Path, bucket: &str) -> Result<Self, String> {
        let root = dir.join(bucket);
        std::fs::create_dir_all(&root)
            .map_err(|e| format!("cannot create {}: {e}", root.display()))?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(&root)
            .map_err(|e| format!("{}: {e}", root.display()))?;
        Ok(Self {
            bucket: bucket.to_owned(),
            store: Arc::new(fs),
        })
    }

    /// An S3-compatible bucket.
    pub fn s3(
        bucket: &str,
        endpoint: Option<&str>,
        region: &str,
        keys: (&str, &str, Option<&str>),
    ) -> Result<Self, String> {
        let mut builder = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(region)
            .with_access_key_id(keys.0)
            .with_secret_access_key(keys.1)
            .with_retry(object_store::RetryConfig {
                backoff: object_store::BackoffConfig::default(),
                max_retries: 5,
                retry_timeout: Duration::from_secs(60),
            });
        if let Some(token) = keys.2 {
            builder = builder.with_token(token);
        }
        if let Some(endpoint) = endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(true)
                .with_virtual_hosted_style_request(false);
        }
        let s3 = builder
            .build()
            .map_err(|e| format!("bucket {bucket}: {e}"))?;
        Ok(Self {
            bucket: bucket.to_owned(),
            store: Arc::new(s3),
        })
    }

    pub async fn put(&self, key: &str, data: Vec<u8>) -> Result<(), String> {
        self.store
            .put(&Key::from(key), PutPayload::from(data))
            .await
            .map(|_| ())
            .map_err(|e| format!("writing {}/{key}: {e}", self.bucket))
    }

    /// The object, if it is at most `max` bytes.
    pub async fn get(&self, key: &str, max: usize) -> Result<Vec<u8>, String> {
        let got = self
            .store
            .get(&Key::from(key))
            .await
            .map_err(|e| format!("reading {}/{key}: {e}", self.bucket))?;
        if got.meta.size > max as u64 {
            return Err(format!(
                "{}/{key} is {} bytes, more than {max}",
                self.bucket, got.meta.size
            ));
        }
        got.bytes()
            .await
            .map(|b| b.to_vec())
            .map_err(|e| format!("reading {}/{key}: {e}", self.bucket))
    }

    pub async fn delete(&self, key: &str) -> Result<(), String> {
        self.store
            .delete(&Key::from(key))
            .await
            .map_err(|e| format!("deleting {}/{key}: {e}", self.bucket))
    }

    /// Deletes the objects under `prefix` last written before `before`
    /// (what the stream no longer holds a pointer to); how many.
    pub async fn sweep(&self, prefix: &str, before: SystemTime) -> Result<usize, String> {
        let cutoff = before
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let mut listing = self.store.list(Some(&Key::from(prefix)));
        let mut old = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| format!("listing {}/{prefix}: {e}", self.bucket))?;
            if meta.last_modified.timestamp_millis() < cutoff {
                old.push(meta.location);
            }
        }
        for key in &old {
            self.store
                .delete(key)
                .await
                .map_err(|e| format!("deleting {}/{key}: {e}", self.bucket))?;
        }
        Ok(old.len())
    }
}

/// Where claim-check objects of a stream go: `{stream}/{yyyy}/{mm}/{dd}/{id}`.
pub fn object_key(stream: &str, at: SystemTime, id: &str) -> String {
    let secs = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (y, m, d) = crate::time::civil_date((secs / 86_400) as i64);
    let stream = stream.rsplit('/').next().unwrap_or(stream);
    format!("{stream}/{y:04}/{m:02}/{d:02}/{id}")
}

fn new_id() -> String {
    format!("{:032x}", fastrand::u128(..))
}

/// A producer that also takes records larger than the stream does.
#[derive(Debug)]
pub struct LargeProducer {
    producer: Producer,
    mode: Mode,
    store: Option<Store>,
    stream: String,
    /// The stream's largest record (data and partition key).
    max_record: usize,
}

impl LargeProducer {
    pub fn new(
        producer: Producer,
        mode: Mode,
        store: Option<Store>,
        stream: &str,
        max_record: usize,
    ) -> Self {
        Self {
            producer,
            mode,
            store,
            stream: stream.to_owned(),
            max_record,
        }
    }

    pub fn producer(&self) -> &Producer {
        &self.producer
    }

    pub fn into_producer(self) -> Producer {
        self.producer
    }

    /// Queues a record of any size; the receipt resolves when every part of
    /// it is in the stream (the last part's ack), or with the first failure.
    pub async fn send(&self, record: Record) -> Result<LargeReceipt, PutError> {
        let room = self.max_record.saturating_sub(record.partition_key.len());
        let fits = record.data.len() <= room;
        let mode = match self.mode {
            Mode::Off => {
                return Ok(LargeReceipt::one(self.producer.send(record).await?));
            }
            Mode::Auto if fits => return Ok(LargeReceipt::one(self.producer.send(record).await?)),
            m => m,
        };
        let room_in_envelope = room.saturating_sub(HEADER_ROOM + 8);
        let mut data = record.data;
        match mode {
            Mode::Compress(codec) => {
                data = compressed_envelope(codec, &data);
                if data.len() <= room {
                    return self
                        .send_whole(&record.partition_key, &record.explicit_hash_key, data)
                        .await;
                }
                // Still too large: its chunks carry it.
            }
            Mode::Auto => {
                let packed = compressed_envelope(Codec::Zstd, &data);
                if packed.len() <= room {
                    return self
                        .send_whole(&record.partition_key, &record.explicit_hash_key, packed)
                        .await;
                }
                if packed.len() < data.len() {
                    data = packed;
                }
            }
            _ => {}
        }
        match (mode, &self.store) {
            (Mode::ClaimCheck, None) => Err(PutError::Invalid(
                "claim check needs an object store".into(),
            )),
            (Mode::ClaimCheck, Some(store)) | (Mode::Auto, Some(store)) => {
                let key = object_key(&self.stream, SystemTime::now(), &new_id());
                let header = Header::ClaimCheck {
                    bucket: store.bucket.clone(),
                    key: key.clone(),
                    size: data.len() as u64,
                    sha256: sha256_hex(&data),
                };
                store.put(&key, data).await.map_err(PutError::Failed)?;
                let pointer = Record {
                    partition_key: record.partition_key,
                    explicit_hash_key: record.explicit_hash_key,
                    data: envelope(&header, &[]),
                };
                match self.producer.send(pointer).await {
                    Ok(receipt) => Ok(LargeReceipt {
                        parts: vec![receipt],
                        orphan: Some((store.clone(), key)),
                    }),
                    Err(e) => {
                        let _ = store.delete(&key).await;
                        Err(e)
                    }
                }
            }
            _ => {
                // Chunks, each within the room an envelope leaves.
                let len = room_in_envelope.max(1);
                let count = data.len().div_ceil(len).max(1);
                let count = u32::try_from(count)
                    .map_err(|_| PutError::Invalid("too many chunks".into()))?;
                let id = new_id();
                let sha256 = sha256_hex(&data);
                let mut parts = Vec::with_capacity(count as usize);
                for index in 0..count {
                    let start = index as usize * len;
                    let part = &data[start.min(data.len())..(start + len).min(data.len())];
                    let header = Header::Chunk {
                        id: id.clone(),
                        index,
                        count,
                        size: data.len() as u64,
                        sha256: sha256.clone(),
                        crc32c: crc32c::crc32c(part),
                    };
                    let chunk = Record {
                        partition_key: record.partition_key.clone(),
                        explicit_hash_key: record.explicit_hash_key.clone(),
                        data: envelope(&header, part),
                    };
                    parts.push(self.producer.send(chunk).await?);
                }
                Ok(LargeReceipt {
                    parts,
                    orphan: None,
                })
            }
        }
    }

    async fn send_whole(
        &self,
        key: &str,
        ehk: &Option<String>,
        data: Vec<u8>,
    ) -> Result<LargeReceipt, PutError> {
        let record = Record {
            partition_key: key.to_owned(),
            explicit_hash_key: ehk.clone(),
            data,
        };
        Ok(LargeReceipt::one(self.producer.send(record).await?))
    }
}

fn compressed_envelope(codec: Codec, data: &[u8]) -> Vec<u8> {
    let header = Header::Compressed {
        codec,
        size: data.len() as u64,
        crc32c: crc32c::crc32c(data),
    };
    envelope(&header, &compress(codec, data))
}

/// Resolves when every part of a record is in the stream.
#[derive(Debug)]
pub struct LargeReceipt {
    parts: Vec<Receipt>,
    /// A claim check's object, deleted if its pointer is not put.
    orphan: Option<(Store, String)>,
}

impl LargeReceipt {
    fn one(receipt: Receipt) -> Self {
        Self {
            parts: vec![receipt],
            orphan: None,
        }
    }

    /// How many stream records carry it.
    pub fn parts(&self) -> usize {
        self.parts.len()
    }

    pub async fn wait(self) -> Result<Ack, PutError> {
        let mut last = None;
        let mut failed = None;
        for part in self.parts {
            match part.await {
                Ok(ack) => last = Some(ack),
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failed {
            if let Some((store, key)) = self.orphan {
                // Its pointer never made it: nothing will ever read it.
                let _ = store.delete(&key).await;
            }
            return Err(e);
        }
        last.ok_or(PutError::Closed)
    }
}

/// Something read that could not be made whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("message {id}: {have} of {count} chunks after {waited:?} (the first in {shard} at {first_sequence})")]
    MissingChunks {
        id: String,
        have: u32,
        count: u32,
        shard: String,
        first_sequence: String,
        waited: Duration,
    },
    #[error("{shard} at {sequence}: {why}")]
    Unreadable {
        shard: String,
        sequence: String,
        why: String,
    },
}

/// Reassembles chunked messages: duplicates are dropped, messages and keys
/// may interleave, chunks may come from several shards (resharding), and
/// memory for partial messages is bounded (the oldest partial is given up
/// and reported when a new chunk would pass the bound).
#[derive(Debug)]
pub struct Reassembler {
    partial: HashMap<String, Partial>,
    /// Ids completed lately, so that late duplicates are dropped.
    done: VecDeque<String>,
    done_set: HashSet<String>,
    bytes: usize,
    max_bytes: usize,
    max_message: usize,
}

#[derive(Debug)]
struct Partial {
    count: u32,
    size: u64,
    sha256: String,
    parts: BTreeMap<u32, Vec<u8>>,
    /// (shard, sequence number) of each chunk held, for checkpoints.
    places: Vec<(String, String)>,
    started: Duration,
    bytes: usize,
}

/// How many completed message ids are remembered.
const DONE_MEMORY: usize = 100_000;

/// A chunk's outcome.
#[derive(Debug, PartialEq, Eq)]
pub enum Fed {
    /// Held until the rest come.
    Held,
    /// A chunk seen before, or of a message already complete.
    Duplicate,
    /// The message is complete.
    Complete(Vec<u8>),
    /// Broken: the reason.
    Bad(String),
}

impl Reassembler {
    pub fn new(max_bytes: usize, max_message: usize) -> Self {
        Self {
            partial: HashMap::new(),
            done: VecDeque::new(),
            done_set: HashSet::new(),
            bytes: 0,
            max_bytes,
            max_message,
        }
    }

    /// Takes chunk `header`/`payload` read from `shard` at `sequence`;
    /// `now` is the consumer's clock. Partials given up to keep memory
    /// bounded are returned as problems.
    pub fn feed(
        &mut self,
        header: &Header,
        payload: &[u8],
        shard: &str,
        sequence: &str,
        now: Duration,
        problems: &mut Vec<Problem>,
    ) -> Fed {
        let Header::Chunk {
            id,
            index,
            count,
            size,
            sha256,
            crc32c: crc,
        } = header
        else {
            return Fed::Bad("not a chunk".into());
        };
        if *count == 0
            || index >= count
            || *size > self.max_message as u64
            || payload.len() as u64 > *size
        {
            return Fed::Bad(format!("chunk {index} of {count} of a {size}-byte message"));
        }
        if crc32c::crc32c(payload) != *crc {
            return Fed::Bad(format!(
                "chunk {index} of message {id}: its CRC-32C does not hold"
            ));
        }
        if self.done_set.contains(id) {
            return Fed::Duplicate;
        }
        // Room for it, giving up the oldest partials if need be.
        while self.bytes + payload.len() > self.max_bytes {
            let Some(oldest) = self
                .partial
                .iter()
                .filter(|(other, _)| *other != id)
                .min_by_key(|(_, p)| p.started)
                .map(|(id, _)| id.clone())
            else {
                break;
            };
            problems.push(self.give_up(&oldest, now));
        }
        let entry = self.partial.entry(id.clone()).or_insert_with(|| Partial {
            count: *count,
            size: *size,
            sha256: sha256.clone(),
            parts: BTreeMap::new(),
            places: Vec::new(),
            started: now,
            bytes: 0,
        });
        if entry.count != *count || entry.size != *size || entry.sha256 != *sha256 {
            return Fed::Bad(format!(
                "chunk {index} of message {id} disagrees with its other chunks"
            ));
        }
        if entry.parts.contains_key(index) {
            return Fed::Duplicate;
        }
        entry.parts.insert(*index, payload.to_vec());
        entry.places.push((shard.to_owned(), sequence.to_owned()));
        entry.bytes += payload.len();
        self.bytes += payload.len();
        if entry.parts.len() < *count as usize {
            return Fed::Held;
        }
        let p = self.partial.remove(id).expect("present");
        self.bytes -= p.bytes;
        self.remember(id);
        let mut message = Vec::with_capacity(p.size as usize);
        for part in p.parts.into_values() {
            message.extend_from_slice(&part);
        }
        if message.len() as u64 != p.size || sha256_hex(&message) != p.sha256 {
            return Fed::Bad(format!(
                "message {id}: its chunks do not make its size and SHA-256"
            ));
        }
        Fed::Complete(message)
    }

    fn remember(&mut self, id: &str) {
        self.done.push_back(id.to_owned());
        self.done_set.insert(id.to_owned());
        if self.done.len() > DONE_MEMORY {
            if let Some(old) = self.done.pop_front() {
                self.done_set.remove(&old);
            }
        }
    }

    fn give_up(&mut self, id: &str, now: Duration) -> Problem {
        let p = self.partial.remove(id).expect("present");
        self.bytes -= p.bytes;
        self.remember(id);
        let (shard, first_sequence) = p.places.first().cloned().unwrap_or_default();
        Problem::MissingChunks {
            id: id.to_owned(),
            have: p.parts.len() as u32,
            count: p.count,
            shard,
            first_sequence,
            waited: now.saturating_sub(p.started),
        }
    }

    /// Gives up partials older than `timeout` (all of them with `None`:
    /// nothing more will come).
    pub fn expire(&mut self, now: Duration, timeout: Option<Duration>) -> Vec<Problem> {
        let old: Vec<String> = self
            .partial
            .iter()
            .filter(|(_, p)| timeout.is_none_or(|t| now.saturating_sub(p.started) >= t))
            .map(|(id, _)| id.clone())
            .collect();
        let mut out: Vec<Problem> = old.iter().map(|id| self.give_up(id, now)).collect();
        out.sort_by_key(|p| p.to_string());
        out
    }

    /// The earliest sequence number of a held chunk in each shard: where a
    /// restart must read again from.
    pub fn holds(&self) -> HashMap<String, String> {
        let mut out: HashMap<String, String> = HashMap::new();
        for p in self.partial.values() {
            for (shard, seq) in &p.places {
                let e = out.entry(shard.clone()).or_insert_with(|| seq.clone());
                if (seq.len(), seq.as_str()) < (e.len(), e.as_str()) {
                    *e = seq.clone();
                }
            }
        }
        out
    }

    pub fn partial_bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn envelopes_round_trip_and_anything_else_is_data() {
        let h = Header::Compressed {
            codec: Codec::Zstd,
            size: 5,
            crc32c: 7,
        };
        let e = envelope(&h, b"payload");
        assert_eq!(&e[..4], b"\xF5LR1");
        assert_eq!(open(&e), Some((h.clone(), &b"payload"[..])));
        assert_eq!(open(b"plain text"), None);
        assert_eq!(open(&e[..6]), None, "truncated length");
        assert_eq!(open(&e[..12]), None, "truncated header");
        let mut long = MAGIC.to_vec();
        long.extend_from_slice(&(HEADER_MAX as u32 + 1).to_be_bytes());
        long.extend_from_slice(&vec![b' '; HEADER_MAX + 1]);
        assert_eq!(open(&long), None, "a header too long");
        let mut bad = MAGIC.to_vec();
        bad.extend_from_slice(&4u32.to_be_bytes());
        bad.extend_from_slice(b"{\"t\"");
        assert_eq!(open(&bad), None, "not JSON");
        let unknown = envelope(&h, b"").into_iter().collect::<Vec<_>>();
        let text = String::from_utf8_lossy(&unknown[8..]).replace("compressed", "compresses");
        let mut other = MAGIC.to_vec();
        other.extend_from_slice(&(text.len() as u32).to_be_bytes());
        other.extend_from_slice(text.as_bytes());
        assert_eq!(open(&other), None, "an unknown type");
    }

    #[test]
    fn the_documented_header_bytes() {
        let h = Header::Chunk {
            id: "00ff".into(),
            index: 1,
            count: 2,
            size: 10,
            sha256: "ab".into(),
            crc32c: 3,
        };
        let e = envelope(&h, b"xy");
        let json =
            br#"{"t":"chunk","id":"00ff","index":1,"count":2,"size":10,"sha256":"ab","crc32c":3}"#;
        let mut want = vec![0xF5, 0x4C, 0x52, 0x31, 0, 0, 0, json.len() as u8];
        want.extend_from_slice(json);
        want.extend_from_slice(b"xy");
        assert_eq!(e, want);
    }

    #[test]
    fn every_codec_round_trips_and_bounds_its_output() {
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 97).to_be_bytes())
            .collect();
        for codec in [Codec::Gzip, Codec::Zstd, Codec::Lz4, Codec::Snappy] {
            let packed = compress(codec, &data);
            assert!(packed.len() < data.len() / 4, "{codec:?}");
            assert_eq!(decompress(codec, &packed, data.len()).unwrap(), data);
            assert!(
                decompress(codec, &packed, data.len() - 1).is_err(),
                "{codec:?} bound"
            );
            assert!(
                decompress(codec, &packed[..packed.len() / 2], data.len()).is_err(),
                "{codec:?} truncated"
            );
            assert!(
                decompress(codec, b"not compressed at all", 100).is_err(),
                "{codec:?} garbage"
            );
        }
    }

    #[test]
    fn claim_check_keys_carry_the_date() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_464_800);
        assert_eq!(object_key("s", at, "id"), "s/2026/12/05/id");
        let arn = "arn:aws:kinesis:us-east-1:000000000000:stream/orders";
        assert_eq!(
            object_key(arn, SystemTime::UNIX_EPOCH, "x"),
            "orders/1970/01/01/x"
        );
    }

    fn chunks(id: &str, data: &[u8], len: usize) -> Vec<(Header, Vec<u8>)> {
        let count = data.len().div_ceil(len).max(1) as u32;
        (0..count)
            .map(|i| {
                let part = data
                    [(i as usize * len).min(data.len())..((i as usize + 1) * len).min(data.len())]
                    .to_vec();
                (
                    Header::Chunk {
                        id: id.into(),
                        index: i,
                        count,
                        size: data.len() as u64,
                        sha256: sha256_hex(data),
                        crc32c: crc32c::crc32c(&part),
                    },
                    part,
                )
            })
            .collect()
    }

    #[test]
    fn missing_chunks_are_reported_after_the_timeout_and_memory_is_bounded() {
        let mut r = Reassembler::new(1000, 10_000);
        let mut problems = Vec::new();
        let a = chunks("a", &[1; 900], 300);
        assert_eq!(
            r.feed(&a[0].0, &a[0].1, "s0", "10", Duration::ZERO, &mut problems),
            Fed::Held
        );
        assert_eq!(
            r.feed(
                &a[2].0,
                &a[2].1,
                "s0",
                "12",
                Duration::from_secs(1),
                &mut problems
            ),
            Fed::Held
        );
        assert_eq!(r.holds()["s0"], "10");
        assert!(r
            .expire(Duration::from_secs(5), Some(Duration::from_secs(10)))
            .is_empty());
        let lost = r.expire(Duration::from_secs(10), Some(Duration::from_secs(10)));
        assert!(
            matches!(
                &lost[..],
                [Problem::MissingChunks {
                    have: 2,
                    count: 3,
                    ..
                }]
            ),
            "{lost:?}"
        );
        assert!(r.holds().is_empty());
        // Its late chunk is not held again.
        assert_eq!(
            r.feed(
                &a[1].0,
                &a[1].1,
                "s0",
                "11",
                Duration::from_secs(11),
                &mut problems
            ),
            Fed::Duplicate
        );
        // A bound of 1000 bytes: a third partial of 400 gives up the oldest.
        let b = chunks("b", &[2; 800], 400);
        let c = chunks("c", &[3; 800], 400);
        let d = chunks("d", &[4; 800], 400);
        r.feed(
            &b[0].0,
            &b[0].1,
            "s1",
            "1",
            Duration::from_secs(20),
            &mut problems,
        );
        r.feed(
            &c[0].0,
            &c[0].1,
            "s1",
            "2",
            Duration::from_secs(21),
            &mut problems,
        );
        assert!(problems.is_empty());
        r.feed(
            &d[0].0,
            &d[0].1,
            "s1",
            "3",
            Duration::from_secs(22),
            &mut problems,
        );
        assert!(matches!(&problems[..], [Problem::MissingChunks { id, .. }] if id == "b"));
        assert!(r.partial_bytes() <= 1000);
        // A corrupt chunk is refused, not held.
        let mut bad = c[1].1.clone();
        bad[0] ^= 1;
        assert!(matches!(
            r.feed(
                &c[1].0,
                &bad,
                "s1",
                "4",
                Duration::from_secs(23),
                &mut problems
            ),
            Fed::Bad(_)
        ));
        assert_eq!(
            r.feed(
                &c[1].0,
                &c[1].1,
                "s1",
                "5",
                Duration::from_secs(23),
                &mut problems
            ),
            Fed::Complete(vec![3; 800])
        );
    }

    proptest! {
        /// Any bytes: an envelope or data, never a panic; every codec gives
        /// back what it took, and refuses what it did not write.
        #[test]
        fn hostile_bytes_and_codec_round_trips(
            data in proptest::collection::vec(any::<u8>(), 0..5000),
            prefix in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut hostile = MAGIC.to_vec();
            hostile.extend_from_slice(&prefix);
            hostile.extend_from_slice(&data);
            let _ = open(&hostile);
            let _ = open(&data);
            for codec in [Codec::Gzip, Codec::Zstd, Codec::Lz4, Codec::Snappy] {
                let packed = compress(codec, &data);
                prop_assert_eq!(decompress(codec, &packed, data.len()).unwrap(), data.clone());
                let _ = decompress(codec, &data, 10_000);
            }
            let header = Header::ClaimCheck {
                bucket: "b".into(),
                key: String::from_utf8_lossy(&prefix).into_owned(),
                size: data.len() as u64,
                sha256: sha256_hex(&data),
            };
            let e = envelope(&header, &data);
            prop_assert_eq!(open(&e), Some((header, &data[..])));
        }

        /// Messages split into chunks, the chunks of all messages
        /// interleaved, duplicated and some lost: every message whose
        /// chunks all arrive comes out whole, once; every other is
        /// reported; nothing else comes out.
        #[test]
        fn reassembly_under_duplication_interleaving_and_loss(
            sizes in proptest::collection::vec(1usize..3000, 1..8),
            len in 50usize..700,
            order in proptest::collection::vec(any::<u32>(), 0..200),
            dups in proptest::collection::vec(any::<u16>(), 0..40),
            lose in proptest::collection::vec(any::<u16>(), 0..3),
        ) {
            let messages: Vec<(String, Vec<u8>)> = sizes
                .iter()
                .enumerate()
                .map(|(i, n)| (format!("m{i}"), (0..*n).map(|b| (b * 31 + i) as u8).collect()))
                .collect();
            let mut all: Vec<(Header, Vec<u8>)> =
                messages.iter().flat_map(|(id, d)| chunks(id, d, len)).collect();
            // Shuffle by the random keys, then duplicate some, then lose some.
            let mut keyed: Vec<(u32, (Header, Vec<u8>))> = all
                .drain(..)
                .enumerate()
                .map(|(i, c)| (order.get(i).copied().unwrap_or(i as u32), c))
                .collect();
            keyed.sort_by_key(|(k, _)| *k);
            let mut stream: Vec<(Header, Vec<u8>)> = keyed.into_iter().map(|(_, c)| c).collect();
            let stream_len = stream.len();
            let _ = stream_len;
            for d in &dups {
                let c = stream[*d as usize % stream.len()].clone();
                let at = (*d as usize * 7) % (stream.len() + 1);
                stream.insert(at, c);
            }
            for l in &lose {
                let victim = stream[*l as usize % stream.len()].clone();
                stream.retain(|c| c != &victim);
                if stream.is_empty() {
                    break;
                }
            }
            // What arrived of each message: all of it, some, or nothing.
            let mut arrived: HashMap<String, HashSet<u32>> = HashMap::new();
            for (h, _) in &stream {
                if let Header::Chunk { id, index, .. } = h {
                    arrived.entry(id.clone()).or_default().insert(*index);
                }
            }
            let count_of = |data: &Vec<u8>| data.len().div_ceil(len).max(1);
            let mut r = Reassembler::new(usize::MAX, 1 << 20);
            let mut problems = Vec::new();
            let mut out: Vec<Vec<u8>> = Vec::new();
            for (i, (h, p)) in stream.iter().enumerate() {
                match r.feed(h, p, "s", &i.to_string(), Duration::from_millis(i as u64), &mut problems) {
                    Fed::Complete(m) => out.push(m),
                    Fed::Bad(why) => prop_assert!(false, "{}", why),
                    Fed::Held | Fed::Duplicate => {}
                }
            }
            problems.extend(r.expire(Duration::from_secs(1000), None));
            let mut want: Vec<Vec<u8>> = messages
                .iter()
                .filter(|(id, d)| arrived.get(id).is_some_and(|a| a.len() == count_of(d)))
                .map(|(_, d)| d.clone())
                .collect();
            want.sort();
            out.sort();
            prop_assert_eq!(out, want);
            let mut reported: Vec<String> = problems
                .iter()
                .map(|p| match p {
                    Problem::MissingChunks { id, .. } => id.clone(),
                    other => panic!("{other:?}"),
                })
                .collect();
            reported.sort();
            let mut lost: Vec<String> = messages
                .iter()
                .filter(|(id, d)| arrived.get(id).is_some_and(|a| a.len() < count_of(d)))
                .map(|(id, _)| id.clone())
                .collect();
            lost.sort();
            prop_assert_eq!(reported, lost);
        }
    }
}
