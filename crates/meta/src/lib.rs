//! Sluice's control plane: the catalog of streams and their shards, changed only
//! through methods that take the current time as an argument (no clock, no I/O),
//! so every transition is deterministic and testable without waiting.
//!
//! The catalog serializes to a JSON snapshot; the server stores the bytes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Largest hash key: shards tile `0..=HASH_KEY_MAX`.
pub const HASH_KEY_MAX: u128 = u128::MAX;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    #[error("stream {0} already exists")]
    StreamExists(String),
    #[error("stream {0} not found")]
    StreamNotFound(String),
    #[error("shard {1} not found in stream {0}")]
    ShardNotFound(String, String),
    #[error("the snapshot does not parse: {0}")]
    Snapshot(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamMode {
    Provisioned,
    OnDemand,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamStatus {
    Creating,
    Active,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// The number in `shardId-000000000000`: creation order, never reused in a stream.
    pub index: u32,
    #[serde(with = "decimal")]
    pub starting_hash_key: u128,
    #[serde(with = "decimal")]
    pub ending_hash_key: u128,
    /// The storage engine's shard log.
    pub log_id: u64,
    /// The high bits of the shard's sequence numbers; greater than every earlier shard's.
    pub epoch: u64,
    pub parent: Option<u32>,
    pub adjacent_parent: Option<u32>,
    pub created_ms: u64,
}

impl Shard {
    pub fn shard_id(&self) -> String {
        shard_id(self.index)
    }
}

/// `shardId-` and 12 digits.
pub fn shard_id(index: u32) -> String {
    format!("shardId-{index:012}")
}

/// Parses `shardId-000000000007` (AWS also accepts the bare number's suffix form).
pub fn parse_shard_id(id: &str) -> Option<u32> {
    let digits = id.strip_prefix("shardId-").unwrap_or(id);
    if digits.is_empty() || digits.len() > 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stream {
    pub name: String,
    pub created_ms: u64,
    /// CREATING until this time, then ACTIVE.
    pub active_from_ms: u64,
    pub mode: StreamMode,
    pub retention_period_hours: u32,
    pub max_record_size_kib: u32,
    pub tags: BTreeMap<String, String>,
    pub shards: Vec<Shard>,
}

impl Stream {
    pub fn status(&self, now_ms: u64) -> StreamStatus {
        if now_ms < self.active_from_ms {
            StreamStatus::Creating
        } else {
            StreamStatus::Active
        }
    }

    pub fn shard(&self, index: u32) -> Option<&Shard> {
        self.shards.iter().find(|s| s.index == index)
    }

    /// The open shard whose range holds `hash_key`.
    pub fn shard_for_hash_key(&self, hash_key: u128) -> &Shard {
        self.shards
            .iter()
            .find(|s| s.starting_hash_key <= hash_key && hash_key <= s.ending_hash_key)
            .expect("open shards tile the whole hash-key space")
    }
}

/// What CreateStream asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateStream {
    pub name: String,
    pub shard_count: u32,
    pub mode: StreamMode,
    pub max_record_size_kib: u32,
    pub tags: BTreeMap<String, String>,
    /// How long the stream stays CREATING.
    pub creating_ms: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    streams: BTreeMap<String, Stream>,
    next_log_id: u64,
    next_epoch: u64,
}

impl Catalog {
    pub fn new() -> Self {
        Self {
            streams: BTreeMap::new(),
            next_log_id: 1,
            next_epoch: 1,
        }
    }

    pub fn from_snapshot(bytes: &[u8]) -> Result<Self, MetaError> {
        serde_json::from_slice(bytes).map_err(|e| MetaError::Snapshot(e.to_string()))
    }

    pub fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("the catalog serializes")
    }

    pub fn stream(&self, name: &str) -> Option<&Stream> {
        self.streams.get(name)
    }

    /// Stream names in order (ListStreams' order).
    pub fn stream_names(&self) -> impl Iterator<Item = &str> {
        self.streams.keys().map(String::as_str)
    }

    pub fn open_shard_count(&self) -> usize {
        self.streams.values().map(|s| s.shards.len()).sum()
    }

    /// Creates a stream whose shards split the hash-key space evenly, as AWS does.
    pub fn create_stream(&mut self, cmd: CreateStream, now_ms: u64) -> Result<&Stream, MetaError> {
        if self.streams.contains_key(&cmd.name) {
            return Err(MetaError::StreamExists(cmd.name));
        }
        let n = u128::from(cmd.shard_count.max(1));
        let shards = (0..n)
            .map(|i| {
                let log_id = self.next_log_id;
                let epoch = self.next_epoch;
                self.next_log_id += 1;
                self.next_epoch += 1;
                Shard {
                    index: i as u32,
                    starting_hash_key: split_point(i, n),
                    ending_hash_key: if i + 1 == n {
                        HASH_KEY_MAX
                    } else {
                        split_point(i + 1, n) - 1
                    },
                    log_id,
                    epoch,
                    parent: None,
                    adjacent_parent: None,
                    created_ms: now_ms,
                }
            })
            .collect();
        let stream = Stream {
            name: cmd.name.clone(),
            created_ms: now_ms,
            active_from_ms: now_ms.saturating_add(cmd.creating_ms),
            mode: cmd.mode,
            retention_period_hours: 24,
            max_record_size_kib: cmd.max_record_size_kib,
            tags: cmd.tags,
            shards,
        };
        Ok(self.streams.entry(cmd.name).or_insert(stream))
    }

    /// Removes a stream; returns it so its shard logs can be deleted.
    pub fn delete_stream(&mut self, name: &str) -> Result<Stream, MetaError> {
        self.streams
            .remove(name)
            .ok_or_else(|| MetaError::StreamNotFound(name.to_owned()))
    }
}

/// `floor(2^128 * i / n)` without overflow, for `i <= n`.
fn split_point(i: u128, n: u128) -> u128 {
    if i == 0 {
        return 0;
    }
    // 2^128 = q*n + r, with 1 <= r <= n.
    let q = HASH_KEY_MAX / n;
    let r = HASH_KEY_MAX % n + 1;
    q * i + (r * i) / n
}

/// The hash key of a partition key: MD5 as a big-endian 128-bit integer.
pub fn hash_key_from_md5(digest: [u8; 16]) -> u128 {
    u128::from_be_bytes(digest)
}

mod decimal {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn create(name: &str, shard_count: u32) -> CreateStream {
        CreateStream {
            name: name.into(),
            shard_count,
            mode: StreamMode::Provisioned,
            max_record_size_kib: 1024,
            tags: BTreeMap::new(),
            creating_ms: 0,
        }
    }

    #[test]
    fn aws_split_points() {
        let mut c = Catalog::new();
        let s = c.create_stream(create("s", 2), 0).unwrap();
        assert_eq!(
            s.shards[0].ending_hash_key.to_string(),
            "170141183460469231731687303715884105727"
        );
        assert_eq!(
            s.shards[1].starting_hash_key.to_string(),
            "170141183460469231731687303715884105728"
        );
        assert_eq!(s.shards[1].shard_id(), "shardId-000000000001");
        assert_eq!(parse_shard_id("shardId-000000000001"), Some(1));
        assert_eq!(parse_shard_id("shardId-x"), None);
    }

    #[test]
    fn creating_then_active_and_snapshot_round_trip() {
        let mut c = Catalog::new();
        let mut cmd = create("s", 3);
        cmd.creating_ms = 500;
        c.create_stream(cmd.clone(), 1_000).unwrap();
        assert_eq!(c.stream("s").unwrap().status(1_499), StreamStatus::Creating);
        assert_eq!(c.stream("s").unwrap().status(1_500), StreamStatus::Active);
        assert_eq!(
            c.create_stream(cmd, 2_000).unwrap_err(),
            MetaError::StreamExists("s".into())
        );
        let back = Catalog::from_snapshot(&c.snapshot()).unwrap();
        assert_eq!(back, c);
        c.create_stream(create("t", 1), 0).unwrap();
        let epochs: Vec<u64> = c
            .stream("t")
            .unwrap()
            .shards
            .iter()
            .map(|s| s.epoch)
            .collect();
        assert!(epochs.iter().all(|e| *e > 3), "epochs are never reused");
        c.delete_stream("s").unwrap();
        assert_eq!(
            c.delete_stream("s").unwrap_err(),
            MetaError::StreamNotFound("s".into())
        );
    }

    proptest! {
        #[test]
        fn shards_tile_the_hash_space(n in 1u32..2000, key in any::<u128>()) {
            let mut c = Catalog::new();
            let s = c.create_stream(create("s", n), 0).unwrap();
            prop_assert_eq!(s.shards[0].starting_hash_key, 0);
            prop_assert_eq!(s.shards.last().unwrap().ending_hash_key, HASH_KEY_MAX);
            for w in s.shards.windows(2) {
                prop_assert_eq!(w[0].ending_hash_key + 1, w[1].starting_hash_key);
                prop_assert!(w[0].starting_hash_key <= w[0].ending_hash_key);
            }
            let shard = s.shard_for_hash_key(key);
            prop_assert!(shard.starting_hash_key <= key && key <= shard.ending_hash_key);
        }
    }
}
