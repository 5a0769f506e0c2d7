//! Sluice's control plane: the catalog of streams and their shards, changed only
//! through methods that take the current time as an argument (no clock, no I/O),
//! so every transition is deterministic and testable without waiting.
//!
//! The catalog serializes to a JSON snapshot; the server stores the bytes.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

pub mod scaling;

/// Largest hash key: shards tile `0..=HASH_KEY_MAX`.
pub const HASH_KEY_MAX: u128 = u128::MAX;
/// AWS: retention is 24 hours to 365 days.
pub const RETENTION_HOURS_MIN: u32 = 24;
pub const RETENTION_HOURS_MAX: u32 = 8760;
/// AWS: a stream carries at most 50 tags.
pub const TAGS_PER_STREAM_MAX: usize = 50;
/// The shard-level metrics enhanced monitoring can enable (`ALL` means these).
pub const SHARD_LEVEL_METRICS: [&str; 7] = [
    "IncomingBytes",
    "IncomingRecords",
    "OutgoingBytes",
    "OutgoingRecords",
    "WriteProvisionedThroughputExceeded",
    "ReadProvisionedThroughputExceeded",
    "IteratorAgeMilliseconds",
];
/// How long a minimum-throughput billing commitment lasts at least (Sluice's choice).
pub const COMMITMENT_MIN_MS: u64 = 24 * 3600 * 1000;
/// AWS: at most 20 registered consumers per stream.
pub const CONSUMERS_PER_STREAM_MAX: usize = 20;
/// AWS: at most 5 consumers of an account CREATING at once.
pub const CONSUMERS_CREATING_MAX: usize = 5;
/// The account of streams from snapshots written before accounts existed.
pub const DEFAULT_ACCOUNT: &str = "000000000000";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    #[error("stream {0} already exists")]
    StreamExists(String),
    #[error("stream {0} not found")]
    StreamNotFound(String),
    #[error("shard {1} not found in stream {0}")]
    ShardNotFound(String, String),
    /// The shard was split or merged already.
    #[error("shard {1} of stream {0} is closed")]
    ShardClosed(String, String),
    /// A split's new starting hash key is not strictly inside the shard.
    #[error("the new starting hash key is not inside shard {1} of stream {0}")]
    SplitKeyOutside(String, String),
    /// A merge of two shards whose ranges do not touch.
    #[error("shards {1} and {2} of stream {0} are not adjacent")]
    NotAdjacent(String, String, String),
    #[error("the snapshot does not parse: {0}")]
    Snapshot(String),
    #[error("Minimum allowed retention period is {RETENTION_HOURS_MIN} hours. Requested retention period ({0} hours) is too short.")]
    RetentionTooShort(u32),
    #[error("Maximum allowed retention period is {RETENTION_HOURS_MAX} hours. Requested retention period ({0} hours) is too long.")]
    RetentionTooLong(u32),
    #[error("Requested retention period ({requested} hours) for stream {stream} can not be shorter than existing retention period ({current} hours). Use DecreaseRetentionPeriod API.")]
    RetentionNotIncrease {
        stream: String,
        requested: u32,
        current: u32,
    },
    #[error("Requested retention period ({requested} hours) for stream {stream} can not be longer than existing retention period ({current} hours). Use IncreaseRetentionPeriod API.")]
    RetentionNotDecrease {
        stream: String,
        requested: u32,
        current: u32,
    },
    #[error("Failed to add tags to stream {0} because a given stream can have a maximum of {TAGS_PER_STREAM_MAX} tags.")]
    TooManyTags(String),
    #[error("Consumer {0} already exists")]
    ConsumerExists(String),
    #[error("consumer {1} of stream {0} not found")]
    ConsumerNotFound(String, String),
    #[error(
        "Stream {0} has reached the limit of {CONSUMERS_PER_STREAM_MAX} registered consumers."
    )]
    TooManyConsumers(String),
    #[error("Only {CONSUMERS_CREATING_MAX} consumers can be in CREATING status at the same time.")]
    TooManyConsumersCreating,
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
    Updating,
    Deleting,
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
    /// Set once a split or merge closed the shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed: Option<Closed>,
}

/// When a shard closed and its last sequence number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Closed {
    pub at_ms: u64,
    /// The shard log's ending sequence number: known once the log's close is
    /// durable (a crash in between is finished at the next start).
    #[serde(default, with = "decimal_option")]
    pub ending_sequence: Option<u128>,
}

impl Shard {
    pub fn is_open(&self) -> bool {
        self.closed.is_none()
    }

    pub fn shard_id(&self) -> String {
        shard_id(self.index)
    }
}

/// `shardId-` and 12 digits.
pub fn shard_id(index: u32) -> String {
    // Written digit by digit: PutRecords names a shard per record, and
    // `format!` costs several times more. A u32 has at most 10 digits.
    let mut digits = *b"shardId-000000000000";
    let mut n = index;
    let mut at = digits.len();
    while n > 0 {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    String::from_utf8(digits.to_vec()).expect("ASCII")
}

/// Parses `shardId-000000000007` (AWS also accepts the bare number's suffix form).
pub fn parse_shard_id(id: &str) -> Option<u32> {
    sluice_model::ShardId::parse(id).ok().map(|s| s.0)
}

/// An enhanced fan-out consumer registered with a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consumer {
    pub name: String,
    /// Registration time; its whole seconds end the consumer's ARN, so a
    /// consumer registered again under the same name gets another ARN.
    pub created_ms: u64,
    /// CREATING until this time, then ACTIVE.
    pub active_from_ms: u64,
    /// Set by DeregisterStreamConsumer: DELETING until this time, then gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleting_until_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerStatus {
    Creating,
    Active,
    Deleting,
}

impl Consumer {
    pub fn status(&self, now_ms: u64) -> ConsumerStatus {
        if self.deleting_until_ms.is_some() {
            ConsumerStatus::Deleting
        } else if now_ms < self.active_from_ms {
            ConsumerStatus::Creating
        } else {
            ConsumerStatus::Active
        }
    }

    pub fn is_gone(&self, now_ms: u64) -> bool {
        self.deleting_until_ms.is_some_and(|t| now_ms >= t)
    }

    /// What follows the stream's ARN in the consumer's ARN.
    pub fn arn_suffix(&self) -> String {
        format!("/consumer/{}:{}", self.name, self.created_ms / 1000)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stream {
    /// The owning account: streams of different accounts never see each other.
    /// Empty only while a snapshot from before accounts is loaded (see
    /// [`Catalog::from_snapshot_in`]).
    #[serde(default)]
    pub account: String,
    pub name: String,
    pub created_ms: u64,
    /// CREATING until this time, then ACTIVE.
    pub active_from_ms: u64,
    pub mode: StreamMode,
    pub retention_period_hours: u32,
    pub max_record_size_kib: u32,
    pub tags: BTreeMap<String, String>,
    pub shards: Vec<Shard>,
    /// Enabled shard-level metrics.
    #[serde(default)]
    pub shard_level_metrics: BTreeSet<String>,
    /// Set while server-side encryption is on: the KMS key id given.
    #[serde(default)]
    pub encryption_key_id: Option<String>,
    /// UPDATING until this time.
    #[serde(default)]
    pub updating_until_ms: u64,
    /// Set by DeleteStream: DELETING until this time, then gone.
    #[serde(default)]
    pub deleting_until_ms: Option<u64>,
    /// ON_DEMAND only: the write throughput the stream is kept split for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm_throughput_mibps: Option<u32>,
    /// Enhanced fan-out consumers in registration order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumers: Vec<Consumer>,
    /// When UpdateShardCount scaled the stream, for AWS's 10 per rolling 24 hours.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scalings_ms: Vec<u64>,
    /// When UpdateStreamMode switched the mode, for AWS's 2 per rolling 24 hours.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mode_switches_ms: Vec<u64>,
}

/// AWS: UpdateShardCount scales a stream at most this often per rolling 24 hours.
pub const SCALINGS_PER_DAY: usize = 10;
/// AWS: UpdateStreamMode switches a stream at most this often per rolling 24 hours.
pub const MODE_SWITCHES_PER_DAY: usize = 2;
const DAY_MS: u64 = 24 * 3600 * 1000;

/// Drops the times older than a rolling day; how many are left.
pub fn within_a_day(times: &mut Vec<u64>, now_ms: u64) -> usize {
    times.retain(|&t| now_ms.saturating_sub(t) < DAY_MS);
    times.len()
}

impl Stream {
    pub fn status(&self, now_ms: u64) -> StreamStatus {
        if self.deleting_until_ms.is_some() {
            StreamStatus::Deleting
        } else if now_ms < self.active_from_ms {
            StreamStatus::Creating
        } else if now_ms < self.updating_until_ms {
            StreamStatus::Updating
        } else {
            StreamStatus::Active
        }
    }

    /// A stream whose deletion has run its course no longer exists.
    pub fn is_gone(&self, now_ms: u64) -> bool {
        self.deleting_until_ms.is_some_and(|t| now_ms >= t)
    }

    /// The stream is UPDATING for `duration_ms` (encryption, record size, resharding).
    pub fn start_update(&mut self, now_ms: u64, duration_ms: u64) {
        self.updating_until_ms = now_ms.saturating_add(duration_ms);
    }

    /// Increase (or decrease) the retention period, within AWS's bounds.
    pub fn set_retention(&mut self, hours: u32, increase: bool) -> Result<(), MetaError> {
        if hours < RETENTION_HOURS_MIN {
            return Err(MetaError::RetentionTooShort(hours));
        }
        if hours > RETENTION_HOURS_MAX {
            return Err(MetaError::RetentionTooLong(hours));
        }
        let current = self.retention_period_hours;
        if increase && hours < current {
            return Err(MetaError::RetentionNotIncrease {
                stream: self.name.clone(),
                requested: hours,
                current,
            });
        }
        if !increase && hours > current {
            return Err(MetaError::RetentionNotDecrease {
                stream: self.name.clone(),
                requested: hours,
                current,
            });
        }
        self.retention_period_hours = hours;
        Ok(())
    }

    /// Records arrived before this time have expired.
    pub fn retention_cutoff_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(u64::from(self.retention_period_hours) * 3600 * 1000)
    }

    /// Adds or overwrites tags; the stream keeps at most 50.
    pub fn add_tags(&mut self, tags: &BTreeMap<String, String>) -> Result<(), MetaError> {
        let new_keys = tags.keys().filter(|k| !self.tags.contains_key(*k)).count();
        if self.tags.len() + new_keys > TAGS_PER_STREAM_MAX {
            return Err(MetaError::TooManyTags(self.name.clone()));
        }
        self.tags
            .extend(tags.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ok(())
    }

    pub fn remove_tags(&mut self, keys: &[String]) {
        for k in keys {
            self.tags.remove(k);
        }
    }

    /// Enables (or disables) shard-level metrics; `ALL` stands for every metric.
    /// Returns (before, after).
    pub fn set_metrics(&mut self, names: &[String], enable: bool) -> (Vec<String>, Vec<String>) {
        let before: Vec<String> = self.shard_level_metrics.iter().cloned().collect();
        let expanded: Vec<String> = if names.iter().any(|n| n == "ALL") {
            SHARD_LEVEL_METRICS.iter().map(|s| s.to_string()).collect()
        } else {
            names.to_vec()
        };
        for name in expanded {
            if enable {
                self.shard_level_metrics.insert(name);
            } else {
                self.shard_level_metrics.remove(&name);
            }
        }
        (before, self.shard_level_metrics.iter().cloned().collect())
    }

    /// Closed shards whose every record has expired (closed before
    /// `cutoff_ms`) and whose close is recorded: retention removes them, as
    /// on AWS. Their children keep naming them as parents.
    pub fn expired_closed_shards(&self, cutoff_ms: u64) -> Vec<(u32, u64)> {
        self.shards
            .iter()
            .filter(|s| {
                s.closed
                    .as_ref()
                    .is_some_and(|c| c.at_ms < cutoff_ms && c.ending_sequence.is_some())
            })
            .map(|s| (s.index, s.log_id))
            .collect()
    }

    /// Removes shards from the catalog (see [`Stream::expired_closed_shards`]).
    /// Shard indexes are never reused: a closed shard always has a child with
    /// a greater index, so the greatest index stays.
    pub fn remove_shards(&mut self, indexes: &[u32]) {
        self.shards.retain(|s| !indexes.contains(&s.index));
    }

    /// A registered consumer (DELETING ones included, until they are gone).
    pub fn consumer(&self, name: &str, now_ms: u64) -> Option<&Consumer> {
        self.consumers
            .iter()
            .find(|c| c.name == name && !c.is_gone(now_ms))
    }

    pub fn consumer_mut(&mut self, name: &str, now_ms: u64) -> Result<&mut Consumer, MetaError> {
        let stream = self.name.clone();
        self.consumers
            .iter_mut()
            .find(|c| c.name == name && !c.is_gone(now_ms))
            .ok_or_else(|| MetaError::ConsumerNotFound(stream, name.to_owned()))
    }

    /// Consumers that are not gone.
    pub fn live_consumers(&self, now_ms: u64) -> impl Iterator<Item = &Consumer> {
        self.consumers.iter().filter(move |c| !c.is_gone(now_ms))
    }

    /// Starts deregistering a consumer: DELETING for `deleting_ms`, then gone
    /// (at once when 0).
    pub fn deregister_consumer(
        &mut self,
        name: &str,
        now_ms: u64,
        deleting_ms: u64,
    ) -> Result<(), MetaError> {
        let consumer = self.consumer_mut(name, now_ms)?;
        if consumer.deleting_until_ms.is_none() {
            consumer.deleting_until_ms = Some(now_ms.saturating_add(deleting_ms));
        }
        self.consumers.retain(|c| !c.is_gone(now_ms));
        Ok(())
    }

    pub fn shard(&self, index: u32) -> Option<&Shard> {
        self.shards.iter().find(|s| s.index == index)
    }

    /// The open shard whose range holds `hash_key`.
    pub fn shard_for_hash_key(&self, hash_key: u128) -> &Shard {
        self.open_shards()
            .find(|s| s.starting_hash_key <= hash_key && hash_key <= s.ending_hash_key)
            .expect("open shards tile the whole hash-key space")
    }

    /// The open shards by starting hash key, for [`route`]: routing many
    /// records costs a sort once and a binary search each.
    pub fn open_shards_by_hash_key(&self) -> Vec<&Shard> {
        let mut open: Vec<&Shard> = self.open_shards().collect();
        open.sort_unstable_by_key(|s| s.starting_hash_key);
        open
    }

    pub fn open_shards(&self) -> impl Iterator<Item = &Shard> {
        self.shards.iter().filter(|s| s.is_open())
    }

    /// The shards a split or merge of `index` produced.
    pub fn children_of(&self, index: u32) -> impl Iterator<Item = &Shard> {
        self.shards
            .iter()
            .filter(move |s| s.parent == Some(index) || s.adjacent_parent == Some(index))
    }

    fn next_index(&self) -> u32 {
        self.shards.iter().map(|s| s.index + 1).max().unwrap_or(0)
    }

    fn open_shard(&self, index: u32) -> Result<&Shard, MetaError> {
        let shard = self
            .shard(index)
            .ok_or_else(|| MetaError::ShardNotFound(self.name.clone(), shard_id(index)))?;
        if !shard.is_open() {
            return Err(MetaError::ShardClosed(self.name.clone(), shard_id(index)));
        }
        Ok(shard)
    }

    fn close_shard(&mut self, index: u32, now_ms: u64) {
        if let Some(s) = self.shards.iter_mut().find(|s| s.index == index) {
            s.closed = Some(Closed {
                at_ms: now_ms,
                ending_sequence: None,
            });
        }
    }
}

/// What a split or merge changed in the storage: shard logs to close (their
/// ending sequence numbers then go into the catalog with
/// [`Catalog::set_ending_sequence`]) and shard logs to create (id, epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reshard {
    pub closed: Vec<(u32, u64)>,
    pub created: Vec<(u64, u64)>,
}

/// What CreateStream asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateStream {
    pub account: String,
    pub name: String,
    pub shard_count: u32,
    pub mode: StreamMode,
    pub max_record_size_kib: u32,
    pub tags: BTreeMap<String, String>,
    /// How long the stream stays CREATING.
    pub creating_ms: u64,
}

/// The account's minimum-throughput billing commitment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commitment {
    pub enabled: bool,
    pub started_at_ms: Option<u64>,
    pub ended_at_ms: Option<u64>,
    pub earliest_allowed_end_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitmentStatus {
    Enabled,
    Disabled,
    EnabledUntilEarliestAllowedEnd,
}

impl Commitment {
    pub fn status(&self, now_ms: u64) -> CommitmentStatus {
        match (self.enabled, self.ended_at_ms) {
            (true, Some(end)) if now_ms < end => CommitmentStatus::EnabledUntilEarliestAllowedEnd,
            (true, None) => CommitmentStatus::Enabled,
            _ => CommitmentStatus::Disabled,
        }
    }

    /// Enabling starts a commitment that cannot end before `COMMITMENT_MIN_MS`;
    /// disabling early keeps it on until then.
    pub fn set(&mut self, enable: bool, now_ms: u64) {
        match (enable, self.status(now_ms)) {
            (true, CommitmentStatus::Enabled) => {}
            (true, _) => {
                *self = Self {
                    enabled: true,
                    started_at_ms: Some(now_ms),
                    ended_at_ms: None,
                    earliest_allowed_end_ms: Some(now_ms + COMMITMENT_MIN_MS),
                }
            }
            (false, CommitmentStatus::Disabled) => {}
            (false, _) => {
                let earliest = self.earliest_allowed_end_ms.unwrap_or(now_ms);
                self.ended_at_ms = Some(earliest.max(now_ms));
            }
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    /// Streams by `account/name` (names cannot contain `/`), so that one
    /// account's streams are a contiguous range in name order.
    streams: BTreeMap<String, Stream>,
    next_log_id: u64,
    next_epoch: u64,
    /// Resource policies by resource ARN (which names the account).
    #[serde(default)]
    pub resource_policies: BTreeMap<String, String>,
    /// Minimum-throughput billing commitments by account.
    #[serde(default)]
    pub commitments: BTreeMap<String, Commitment>,
}

fn key(account: &str, name: &str) -> String {
    format!("{account}/{name}")
}

impl Catalog {
    pub fn new() -> Self {
        Self {
            streams: BTreeMap::new(),
            next_log_id: 1,
            next_epoch: 1,
            resource_policies: BTreeMap::new(),
            commitments: BTreeMap::new(),
        }
    }

    pub fn from_snapshot(bytes: &[u8]) -> Result<Self, MetaError> {
        Self::from_snapshot_in(bytes, DEFAULT_ACCOUNT)
    }

    /// Loads a snapshot; streams of a snapshot from before accounts existed
    /// belong to `account` (the server's default account, which its ARNs
    /// and resource policies already named).
    pub fn from_snapshot_in(bytes: &[u8], account: &str) -> Result<Self, MetaError> {
        let mut catalog: Self =
            serde_json::from_slice(bytes).map_err(|e| MetaError::Snapshot(e.to_string()))?;
        // Snapshots from before accounts keyed streams by bare name.
        if catalog.streams.keys().any(|k| !k.contains('/')) {
            let streams = std::mem::take(&mut catalog.streams);
            catalog.streams = streams
                .into_values()
                .map(|mut s| {
                    if s.account.is_empty() {
                        s.account = account.to_owned();
                    }
                    (key(&s.account, &s.name), s)
                })
                .collect();
        }
        Ok(catalog)
    }

    pub fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("the catalog serializes")
    }

    pub fn stream(&self, account: &str, name: &str) -> Option<&Stream> {
        self.streams.get(&key(account, name))
    }

    pub fn stream_mut(&mut self, account: &str, name: &str) -> Result<&mut Stream, MetaError> {
        self.streams
            .get_mut(&key(account, name))
            .ok_or_else(|| MetaError::StreamNotFound(name.to_owned()))
    }

    /// Every account's streams.
    pub fn streams(&self) -> impl Iterator<Item = &Stream> {
        self.streams.values()
    }

    /// One account's streams in name order (ListStreams' order).
    pub fn streams_of<'a>(&'a self, account: &str) -> impl Iterator<Item = &'a Stream> + 'a {
        let prefix = key(account, "");
        self.streams
            .range(prefix.clone()..)
            .take_while(move |(k, _)| k.starts_with(&prefix))
            .map(|(_, s)| s)
    }

    /// Open shards of one account (the shard limit is per account).
    pub fn open_shard_count(&self, account: &str) -> usize {
        self.streams_of(account)
            .map(|s| s.open_shards().count())
            .sum()
    }

    fn new_shard(&mut self, index: u32, start: u128, end: u128, now_ms: u64) -> Shard {
        let shard = Shard {
            index,
            starting_hash_key: start,
            ending_hash_key: end,
            log_id: self.next_log_id,
            epoch: self.next_epoch,
            parent: None,
            adjacent_parent: None,
            created_ms: now_ms,
            closed: None,
        };
        self.next_log_id += 1;
        self.next_epoch += 1;
        shard
    }

    /// Splits an open shard at `new_start` (strictly inside its range, as AWS
    /// requires: more than one above its start, below its end): the shard
    /// closes and two children take its range. The stream is UPDATING for
    /// `updating_ms`.
    pub fn split_shard(
        &mut self,
        account: &str,
        name: &str,
        index: u32,
        new_start: u128,
        now_ms: u64,
        updating_ms: u64,
    ) -> Result<Reshard, MetaError> {
        let stream = self.stream_mut(account, name)?;
        let parent = stream.open_shard(index)?;
        let (start, end) = (parent.starting_hash_key, parent.ending_hash_key);
        if new_start <= start.saturating_add(1) || new_start >= end {
            return Err(MetaError::SplitKeyOutside(name.to_owned(), shard_id(index)));
        }
        let reshard = self.split_shard_unchecked(account, name, index, new_start, now_ms)?;
        self.stream_mut(account, name)?
            .start_update(now_ms, updating_ms);
        Ok(reshard)
    }

    /// Merges two open, adjacent shards: both close and one child takes their
    /// joint range, with `index` as its parent and `adjacent` as its adjacent
    /// parent.
    pub fn merge_shards(
        &mut self,
        account: &str,
        name: &str,
        index: u32,
        adjacent: u32,
        now_ms: u64,
        updating_ms: u64,
    ) -> Result<Reshard, MetaError> {
        let stream = self.stream_mut(account, name)?;
        let a = stream.open_shard(index)?;
        let b = stream.open_shard(adjacent)?;
        let touching = a.ending_hash_key.checked_add(1) == Some(b.starting_hash_key)
            || b.ending_hash_key.checked_add(1) == Some(a.starting_hash_key);
        if !touching {
            return Err(MetaError::NotAdjacent(
                name.to_owned(),
                shard_id(index),
                shard_id(adjacent),
            ));
        }
        let start = a.starting_hash_key.min(b.starting_hash_key);
        let end = a.ending_hash_key.max(b.ending_hash_key);
        let closed = vec![(index, a.log_id), (adjacent, b.log_id)];
        let next = stream.next_index();
        let mut child = self.new_shard(next, start, end, now_ms);
        child.parent = Some(index);
        child.adjacent_parent = Some(adjacent);
        let created = vec![(child.log_id, child.epoch)];
        let stream = self.stream_mut(account, name)?;
        stream.close_shard(index, now_ms);
        stream.close_shard(adjacent, now_ms);
        stream.shards.push(child);
        stream.start_update(now_ms, updating_ms);
        Ok(Reshard { closed, created })
    }

    /// UpdateShardCount with UNIFORM_SCALING: splits at every boundary of
    /// `target` equal ranges that is not a boundary yet, then merges the
    /// pieces inside each range, so the open shards end up exactly the
    /// uniform ranges (as CreateStream would make them) and every step is a
    /// split or merge with ordinary lineage. The caller checks AWS's scaling
    /// bounds.
    pub fn update_shard_count(
        &mut self,
        account: &str,
        name: &str,
        target: u32,
        now_ms: u64,
        updating_ms: u64,
    ) -> Result<Reshard, MetaError> {
        let n = u128::from(target.max(1));
        let boundaries: Vec<u128> = (1..n).map(|i| split_point(i, n)).collect();
        let mut all = Reshard {
            closed: Vec::new(),
            created: Vec::new(),
        };
        let absorb = |all: &mut Reshard, r: Reshard| {
            all.closed.extend(r.closed);
            all.created.extend(r.created);
        };
        let missing = || MetaError::StreamNotFound(name.to_owned());
        for &b in &boundaries {
            let holder = self
                .stream(account, name)
                .ok_or_else(missing)?
                .shard_for_hash_key(b);
            if holder.starting_hash_key == b {
                continue;
            }
            let index = holder.index;
            let r = self.split_shard_unchecked(account, name, index, b, now_ms)?;
            absorb(&mut all, r);
        }
        let mut starts = vec![0u128];
        starts.extend(&boundaries);
        for (i, &start) in starts.iter().enumerate() {
            let end = starts.get(i + 1).map_or(HASH_KEY_MAX, |next| next - 1);
            loop {
                let stream = self.stream(account, name).ok_or_else(missing)?;
                let mut pieces: Vec<&Shard> = stream
                    .open_shards()
                    .filter(|s| s.starting_hash_key >= start && s.ending_hash_key <= end)
                    .collect();
                if pieces.len() < 2 {
                    break;
                }
                pieces.sort_by_key(|s| s.starting_hash_key);
                let (a, b) = (pieces[0].index, pieces[1].index);
                let r = self.merge_shards(account, name, a, b, now_ms, 0)?;
                absorb(&mut all, r);
            }
        }
        self.stream_mut(account, name)?
            .start_update(now_ms, updating_ms);
        Ok(all)
    }

    /// A split at any key inside the shard but its first (UpdateShardCount
    /// places its own boundaries; AWS's stricter rule is for SplitShard).
    fn split_shard_unchecked(
        &mut self,
        account: &str,
        name: &str,
        index: u32,
        new_start: u128,
        now_ms: u64,
    ) -> Result<Reshard, MetaError> {
        let stream = self.stream_mut(account, name)?;
        let parent = stream.open_shard(index)?;
        let (start, end, parent_log) = (
            parent.starting_hash_key,
            parent.ending_hash_key,
            parent.log_id,
        );
        if new_start <= start || new_start > end {
            return Err(MetaError::SplitKeyOutside(name.to_owned(), shard_id(index)));
        }
        let first = stream.next_index();
        let mut low = self.new_shard(first, start, new_start - 1, now_ms);
        let mut high = self.new_shard(first + 1, new_start, end, now_ms);
        low.parent = Some(index);
        high.parent = Some(index);
        let created = vec![(low.log_id, low.epoch), (high.log_id, high.epoch)];
        let stream = self.stream_mut(account, name)?;
        stream.close_shard(index, now_ms);
        stream.shards.extend([low, high]);
        Ok(Reshard {
            closed: vec![(index, parent_log)],
            created,
        })
    }

    /// Records a closed shard's ending sequence number.
    pub fn set_ending_sequence(
        &mut self,
        account: &str,
        name: &str,
        index: u32,
        ending_sequence: u128,
    ) -> Result<(), MetaError> {
        let stream = self.stream_mut(account, name)?;
        if let Some(closed) = stream
            .shards
            .iter_mut()
            .find(|s| s.index == index)
            .and_then(|s| s.closed.as_mut())
        {
            closed.ending_sequence = Some(ending_sequence);
        }
        Ok(())
    }

    pub fn commitment(&self, account: &str) -> Commitment {
        self.commitments.get(account).cloned().unwrap_or_default()
    }

    /// Creates a stream whose shards split the hash-key space evenly, as AWS does.
    pub fn create_stream(&mut self, cmd: CreateStream, now_ms: u64) -> Result<&Stream, MetaError> {
        let stream_key = key(&cmd.account, &cmd.name);
        if self.streams.contains_key(&stream_key) {
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
                    closed: None,
                }
            })
            .collect();
        let stream = Stream {
            account: cmd.account,
            name: cmd.name.clone(),
            created_ms: now_ms,
            active_from_ms: now_ms.saturating_add(cmd.creating_ms),
            mode: cmd.mode,
            retention_period_hours: 24,
            max_record_size_kib: cmd.max_record_size_kib,
            tags: cmd.tags,
            shards,
            shard_level_metrics: BTreeSet::new(),
            encryption_key_id: None,
            updating_until_ms: 0,
            deleting_until_ms: None,
            warm_throughput_mibps: None,
            consumers: Vec::new(),
            scalings_ms: Vec::new(),
            mode_switches_ms: Vec::new(),
        };
        Ok(self.streams.entry(stream_key).or_insert(stream))
    }

    /// Marks a stream DELETING for `duration_ms`; [`Catalog::sweep`] removes it after.
    pub fn start_delete(
        &mut self,
        account: &str,
        name: &str,
        now_ms: u64,
        duration_ms: u64,
    ) -> Result<(), MetaError> {
        let stream = self.stream_mut(account, name)?;
        if stream.deleting_until_ms.is_none() {
            stream.deleting_until_ms = Some(now_ms.saturating_add(duration_ms));
        }
        Ok(())
    }

    /// Registers a consumer with a stream: CREATING for `creating_ms`, then
    /// ACTIVE. At most [`CONSUMERS_PER_STREAM_MAX`] per stream and
    /// [`CONSUMERS_CREATING_MAX`] of an account CREATING at once.
    pub fn register_consumer(
        &mut self,
        account: &str,
        stream: &str,
        name: &str,
        now_ms: u64,
        creating_ms: u64,
    ) -> Result<&Consumer, MetaError> {
        let creating = self
            .streams_of(account)
            .flat_map(|s| s.live_consumers(now_ms))
            .filter(|c| c.status(now_ms) == ConsumerStatus::Creating)
            .count();
        let s = self.stream_mut(account, stream)?;
        s.consumers.retain(|c| !c.is_gone(now_ms));
        if s.consumers.iter().any(|c| c.name == name) {
            return Err(MetaError::ConsumerExists(name.to_owned()));
        }
        if s.consumers.len() >= CONSUMERS_PER_STREAM_MAX {
            return Err(MetaError::TooManyConsumers(stream.to_owned()));
        }
        if creating_ms > 0 && creating >= CONSUMERS_CREATING_MAX {
            return Err(MetaError::TooManyConsumersCreating);
        }
        s.consumers.push(Consumer {
            name: name.to_owned(),
            created_ms: now_ms,
            active_from_ms: now_ms.saturating_add(creating_ms),
            deleting_until_ms: None,
            tags: BTreeMap::new(),
        });
        Ok(s.consumers.last().expect("just pushed"))
    }

    /// Drops the resource policies of a stream (by its ARN) and of its consumers.
    pub fn remove_policies_of(&mut self, stream_arn: &str) {
        let consumers = format!("{stream_arn}/consumer/");
        self.resource_policies
            .retain(|arn, _| arn != stream_arn && !arn.starts_with(&consumers));
    }

    /// Whether [`Catalog::sweep`] has anything to remove.
    pub fn has_gone(&self, now_ms: u64) -> bool {
        self.streams
            .values()
            .any(|s| s.is_gone(now_ms) || s.consumers.iter().any(|c| c.is_gone(now_ms)))
    }

    /// Removes the streams whose deletion is over, and consumers whose
    /// deregistration is; returns the streams so that their shard logs can be
    /// deleted.
    pub fn sweep(&mut self, now_ms: u64) -> Vec<Stream> {
        for s in self.streams.values_mut() {
            s.consumers.retain(|c| !c.is_gone(now_ms));
        }
        let gone: Vec<String> = self
            .streams
            .iter()
            .filter(|(_, s)| s.is_gone(now_ms))
            .map(|(k, _)| k.clone())
            .collect();
        gone.iter().filter_map(|n| self.streams.remove(n)).collect()
    }

    /// Removes every stream of every account, and the resource policies;
    /// returns the streams so that their shard logs can be deleted. Log ids
    /// and epochs keep counting up.
    pub fn take_streams(&mut self) -> Vec<Stream> {
        self.resource_policies.clear();
        std::mem::take(&mut self.streams).into_values().collect()
    }

    /// Removes a stream; returns it so its shard logs can be deleted.
    pub fn delete_stream(&mut self, account: &str, name: &str) -> Result<Stream, MetaError> {
        self.streams
            .remove(&key(account, name))
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

mod decimal_option {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<u128>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(&v.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u128>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| s.parse().map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// The shard of `open` (from [`Stream::open_shards_by_hash_key`]) whose hash
/// key range holds `hash_key`.
pub fn route<'a>(open: &[&'a Shard], hash_key: u128) -> &'a Shard {
    let i = open.partition_point(|s| s.starting_hash_key <= hash_key);
    let shard = open[i.max(1) - 1];
    debug_assert!(shard.starting_hash_key <= hash_key && hash_key <= shard.ending_hash_key);
    shard
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = DEFAULT_ACCOUNT;
    use proptest::prelude::*;

    #[test]
    fn shard_ids_are_twelve_digits() {
        assert_eq!(shard_id(0), "shardId-000000000000");
        assert_eq!(shard_id(7), "shardId-000000000007");
        assert_eq!(shard_id(1_234_567), "shardId-000001234567");
        assert_eq!(shard_id(u32::MAX), "shardId-004294967295");
        for n in [10, 99, 100, 65_535, 1 << 31] {
            assert_eq!(shard_id(n), format!("shardId-{n:012}"));
            assert_eq!(parse_shard_id(&shard_id(n)), Some(n));
        }
    }

    fn create(name: &str, shard_count: u32) -> CreateStream {
        CreateStream {
            account: DEFAULT_ACCOUNT.into(),
            name: name.into(),
            shard_count,
            mode: StreamMode::Provisioned,
            max_record_size_kib: 1024,
            tags: BTreeMap::new(),
            creating_ms: 0,
        }
    }

    #[test]
    fn consumers_register_activate_and_go() {
        let mut c = Catalog::new();
        c.create_stream(create("s", 1), 0).unwrap();
        let arn = c
            .register_consumer(A, "s", "app", 5_500, 1_000)
            .unwrap()
            .arn_suffix();
        assert_eq!(arn, "/consumer/app:5");
        let s = c.stream(A, "s").unwrap();
        assert_eq!(
            s.consumer("app", 6_000).unwrap().status(6_000),
            ConsumerStatus::Creating
        );
        assert_eq!(
            s.consumer("app", 6_500).unwrap().status(6_500),
            ConsumerStatus::Active
        );
        assert_eq!(
            c.register_consumer(A, "s", "app", 7_000, 0).map(|_| ()),
            Err(MetaError::ConsumerExists("app".into()))
        );
        let s = c.stream_mut(A, "s").unwrap();
        s.deregister_consumer("app", 8_000, 2_000).unwrap();
        assert_eq!(
            s.consumer("app", 9_000).unwrap().status(9_000),
            ConsumerStatus::Deleting
        );
        assert!(s.consumer("app", 10_000).is_none());
        assert!(!c.has_gone(9_999));
        assert!(c.has_gone(10_000));
        c.sweep(10_000);
        assert!(c.stream(A, "s").unwrap().consumers.is_empty());
        // The name is free again, with another ARN.
        let again = c.register_consumer(A, "s", "app", 12_000, 0).unwrap();
        assert_eq!(again.arn_suffix(), "/consumer/app:12");
        // Deregistering with no DELETING time removes it at once.
        let s = c.stream_mut(A, "s").unwrap();
        s.deregister_consumer("app", 13_000, 0).unwrap();
        assert!(s.consumers.is_empty());
        assert!(matches!(
            s.deregister_consumer("app", 13_000, 0),
            Err(MetaError::ConsumerNotFound(_, _))
        ));
    }

    #[test]
    fn consumer_limits() {
        let mut c = Catalog::new();
        c.create_stream(create("s", 1), 0).unwrap();
        c.create_stream(create("t", 1), 0).unwrap();
        for i in 0..CONSUMERS_CREATING_MAX {
            c.register_consumer(A, "s", &format!("c{i}"), 0, 10)
                .unwrap();
        }
        assert_eq!(
            c.register_consumer(A, "t", "x", 0, 10).map(|_| ()),
            Err(MetaError::TooManyConsumersCreating),
            "the CREATING limit is per account"
        );
        for i in CONSUMERS_CREATING_MAX..CONSUMERS_PER_STREAM_MAX {
            c.register_consumer(A, "s", &format!("c{i}"), 10, 0)
                .unwrap();
        }
        assert_eq!(
            c.register_consumer(A, "s", "one-more", 20, 0).map(|_| ()),
            Err(MetaError::TooManyConsumers("s".into()))
        );
        c.register_consumer(A, "t", "one-more", 20, 0).unwrap();
        // Snapshots keep consumers.
        let back = Catalog::from_snapshot(&c.snapshot()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn accounts_are_separate_namespaces() {
        let mut c = Catalog::new();
        let other = "123456789012";
        c.create_stream(create("s", 2), 0).unwrap();
        c.create_stream(create("t", 1), 0).unwrap();
        let mut theirs = create("s", 3);
        theirs.account = other.into();
        c.create_stream(theirs, 0).unwrap();
        assert_eq!(c.stream(A, "s").unwrap().shards.len(), 2);
        assert_eq!(c.stream(other, "s").unwrap().shards.len(), 3);
        assert!(c.stream(other, "t").is_none());
        let names = |acct| {
            c.streams_of(acct)
                .map(|s| s.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(A), ["s", "t"]);
        assert_eq!(names(other), ["s"]);
        assert!(
            names("12345678901").is_empty(),
            "a prefix of an account is not it"
        );
        assert_eq!(c.open_shard_count(A), 3);
        assert_eq!(c.open_shard_count(other), 3);
        // Log ids and epochs stay unique across accounts.
        let ids: BTreeSet<u64> = c
            .streams()
            .flat_map(|s| s.shards.iter().map(|h| h.log_id))
            .collect();
        assert_eq!(ids.len(), 6);
        c.delete_stream(other, "s").unwrap();
        assert!(c.stream(A, "s").is_some());
    }

    #[test]
    fn snapshots_from_before_accounts_load_into_the_default_account() {
        let mut c = Catalog::new();
        c.create_stream(create("old", 1), 0).unwrap();
        let mut v: serde_json::Value = serde_json::from_slice(&c.snapshot()).unwrap();
        let stream = v["streams"]["000000000000/old"].take();
        let mut stream = stream.as_object().unwrap().clone();
        stream.remove("account");
        v["streams"] = serde_json::json!({"old": stream});
        let bytes = serde_json::to_vec(&v).unwrap();
        assert_eq!(Catalog::from_snapshot(&bytes).unwrap(), c);
        // A server whose default account was another one owned them.
        let theirs = Catalog::from_snapshot_in(&bytes, "123456789012").unwrap();
        assert!(theirs.stream("123456789012", "old").is_some());
        assert!(theirs.stream(A, "old").is_none());
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
        assert_eq!(
            c.stream(A, "s").unwrap().status(1_499),
            StreamStatus::Creating
        );
        assert_eq!(
            c.stream(A, "s").unwrap().status(1_500),
            StreamStatus::Active
        );
        assert_eq!(
            c.create_stream(cmd, 2_000).unwrap_err(),
            MetaError::StreamExists("s".into())
        );
        let back = Catalog::from_snapshot(&c.snapshot()).unwrap();
        assert_eq!(back, c);
        c.create_stream(create("t", 1), 0).unwrap();
        let epochs: Vec<u64> = c
            .stream(A, "t")
            .unwrap()
            .shards
            .iter()
            .map(|s| s.epoch)
            .collect();
        assert!(epochs.iter().all(|e| *e > 3), "epochs are never reused");
        c.delete_stream(A, "s").unwrap();
        assert_eq!(
            c.delete_stream(A, "s").unwrap_err(),
            MetaError::StreamNotFound("s".into())
        );
    }

    #[test]
    fn updating_and_deleting_states() {
        let mut c = Catalog::new();
        c.create_stream(create("s", 1), 0).unwrap();
        c.stream_mut(A, "s").unwrap().start_update(100, 50);
        assert_eq!(
            c.stream(A, "s").unwrap().status(120),
            StreamStatus::Updating
        );
        assert_eq!(c.stream(A, "s").unwrap().status(150), StreamStatus::Active);
        c.start_delete(A, "s", 200, 30).unwrap();
        assert_eq!(
            c.stream(A, "s").unwrap().status(210),
            StreamStatus::Deleting
        );
        assert!(c.sweep(229).is_empty());
        assert_eq!(c.sweep(230).len(), 1);
        assert!(c.stream(A, "s").is_none());
    }

    #[test]
    fn retention_tags_metrics_and_commitment_rules() {
        let mut c = Catalog::new();
        c.create_stream(create("s", 1), 0).unwrap();
        let s = c.stream_mut(A, "s").unwrap();
        assert_eq!(
            s.set_retention(23, true),
            Err(MetaError::RetentionTooShort(23))
        );
        assert_eq!(
            s.set_retention(8761, true),
            Err(MetaError::RetentionTooLong(8761))
        );
        s.set_retention(48, true).unwrap();
        assert!(matches!(
            s.set_retention(24, true),
            Err(MetaError::RetentionNotIncrease { current: 48, .. })
        ));
        assert!(matches!(
            s.set_retention(72, false),
            Err(MetaError::RetentionNotDecrease { current: 48, .. })
        ));
        s.set_retention(24, false).unwrap();
        assert_eq!(s.retention_cutoff_ms(25 * 3600 * 1000), 3600 * 1000);
        let tags: BTreeMap<String, String> =
            (0..50).map(|i| (format!("k{i}"), "v".into())).collect();
        s.add_tags(&tags).unwrap();
        s.add_tags(&BTreeMap::from([("k1".into(), "new".into())]))
            .unwrap();
        assert_eq!(
            s.add_tags(&BTreeMap::from([("k50".into(), "v".into())])),
            Err(MetaError::TooManyTags("s".into()))
        );
        s.remove_tags(&["k1".into()]);
        assert_eq!(s.tags.len(), 49);
        let (before, after) = s.set_metrics(&["ALL".into()], true);
        assert!(before.is_empty() && after.len() == 7);
        let (_, after) = s.set_metrics(&["IncomingBytes".into()], false);
        assert_eq!(after.len(), 6);

        let mut m = Commitment::default();
        assert_eq!(m.status(0), CommitmentStatus::Disabled);
        m.set(true, 1_000);
        assert_eq!(m.status(1_000), CommitmentStatus::Enabled);
        m.set(false, 2_000);
        assert_eq!(
            m.status(2_000),
            CommitmentStatus::EnabledUntilEarliestAllowedEnd
        );
        assert_eq!(
            m.status(1_000 + COMMITMENT_MIN_MS),
            CommitmentStatus::Disabled
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

        /// Any sequence of splits and merges keeps the open shards tiling the
        /// hash space exactly, and every closed shard's children cover its range.
        #[test]
        fn resharding_keeps_the_tiling(
            n in 1u32..6,
            steps in prop::collection::vec((0u8..3, any::<u16>(), any::<u128>()), 1..40),
            key in any::<u128>(),
        ) {
            let mut c = Catalog::new();
            c.create_stream(create("s", n), 0).unwrap();
            for (t, (op, pick, at)) in steps.into_iter().enumerate() {
                let split = op == 0;
                let now = t as u64 + 1;
                let s = c.stream(A, "s").unwrap();
                let mut open: Vec<&Shard> = s.open_shards().collect();
                open.sort_by_key(|sh| sh.starting_hash_key);
                let i = pick as usize % open.len();
                let outcome = if op == 2 {
                    // UpdateShardCount within AWS's bounds: half to double.
                    let count = open.len() as u32;
                    let low = count.div_ceil(2);
                    let target = low + u32::from(pick) % (2 * count - low + 1);
                    let r = c.update_shard_count(A, "s", target, now, 0);
                    let mut uniform: Vec<(u128, u128)> = c
                        .stream(A, "s")
                        .unwrap()
                        .open_shards()
                        .map(|sh| (sh.starting_hash_key, sh.ending_hash_key))
                        .collect();
                    uniform.sort();
                    let mut fresh = Catalog::new();
                    fresh.create_stream(create("u", target), 0).unwrap();
                    let expected: Vec<(u128, u128)> = fresh
                        .stream(A, "u")
                        .unwrap()
                        .shards
                        .iter()
                        .map(|sh| (sh.starting_hash_key, sh.ending_hash_key))
                        .collect();
                    prop_assert_eq!(uniform, expected, "uniform ranges after scaling to {}", target);
                    r
                } else if split {
                    let sh = open[i];
                    let span = sh.ending_hash_key - sh.starting_hash_key;
                    let new_start = sh.starting_hash_key.saturating_add(at % span.max(1));
                    c.split_shard(A, "s", sh.index, new_start, now, 0)
                } else if open.len() > 1 {
                    let (a, b) = (open[i % (open.len() - 1)], open[i % (open.len() - 1) + 1]);
                    let (first, second) = if at % 2 == 0 { (a.index, b.index) } else { (b.index, a.index) };
                    c.merge_shards(A, "s", first, second, now, 0)
                } else {
                    continue;
                };
                match outcome {
                    Ok(r) => {
                        for (index, _) in r.closed {
                            c.set_ending_sequence(A, "s", index, u128::from(now) << 64).unwrap();
                        }
                    }
                    Err(MetaError::SplitKeyOutside(..)) => {}
                    Err(e) => prop_assert!(false, "{e}"),
                }
            }
            let s = c.stream(A, "s").unwrap();
            let mut open: Vec<&Shard> = s.open_shards().collect();
            open.sort_by_key(|sh| sh.starting_hash_key);
            prop_assert_eq!(open[0].starting_hash_key, 0);
            prop_assert_eq!(open.last().unwrap().ending_hash_key, HASH_KEY_MAX);
            for w in open.windows(2) {
                prop_assert_eq!(w[0].ending_hash_key + 1, w[1].starting_hash_key);
            }
            let shard = s.shard_for_hash_key(key);
            prop_assert!(shard.is_open() && shard.starting_hash_key <= key && key <= shard.ending_hash_key);
            // The binary search PutRecords routes with agrees, at every border too.
            let by_hash = s.open_shards_by_hash_key();
            prop_assert_eq!(route(&by_hash, key).index, shard.index);
            for sh in &by_hash {
                prop_assert_eq!(route(&by_hash, sh.starting_hash_key).index, sh.index);
                prop_assert_eq!(route(&by_hash, sh.ending_hash_key).index, sh.index);
            }
            for closed in s.shards.iter().filter(|sh| !sh.is_open()) {
                let mut children: Vec<&Shard> = s.children_of(closed.index).collect();
                prop_assert!(!children.is_empty());
                children.sort_by_key(|sh| sh.starting_hash_key);
                prop_assert!(children[0].starting_hash_key <= closed.starting_hash_key);
                prop_assert!(children.last().unwrap().ending_hash_key >= closed.ending_hash_key);
                for w in children.windows(2) {
                    prop_assert_eq!(w[0].ending_hash_key + 1, w[1].starting_hash_key);
                }
                for child in &children {
                    prop_assert!(child.epoch > closed.epoch, "children's sequence numbers come after the parent's");
                }
                prop_assert!(closed.closed.as_ref().unwrap().ending_sequence.is_some());
            }
            let ids: BTreeSet<u64> = s.shards.iter().map(|sh| sh.log_id).collect();
            prop_assert_eq!(ids.len(), s.shards.len());
            let back = Catalog::from_snapshot(&c.snapshot()).unwrap();
            prop_assert_eq!(back, c);
        }
    }
}
