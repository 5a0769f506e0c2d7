//! A stream's record in the catalog: its shards (hash-key ranges, epochs,
//! shard-log ids, lineage, closed state), its consumers, settings and tags,
//! and the changes made to one stream alone.

use super::*;

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
    /// The region it lives in; empty only while a snapshot from before
    /// regions is loaded.
    #[serde(default)]
    pub region: String,
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
pub(crate) const DAY_MS: u64 = 24 * 3600 * 1000;

/// Drops the times older than a rolling day; how many are left.
pub(crate) fn within_a_day(times: &mut Vec<u64>, now_ms: u64) -> usize {
    times.retain(|&t| now_ms.saturating_sub(t) < DAY_MS);
    times.len()
}

/// How many of `times` are within a rolling day of `now_ms`.
pub fn count_within_a_day(times: &[u64], now_ms: u64) -> usize {
    times
        .iter()
        .filter(|&&t| now_ms.saturating_sub(t) < DAY_MS)
        .count()
}

impl Stream {
    /// The account and region it lives in.
    pub fn scope(&self) -> Scope {
        Scope::new(self.account.clone(), self.region.clone())
    }

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
    pub(crate) fn start_update(&mut self, now_ms: u64, duration_ms: u64) {
        self.updating_until_ms = now_ms.saturating_add(duration_ms);
    }

    /// Increase (or decrease) the retention period, within AWS's bounds.
    pub(crate) fn set_retention(&mut self, hours: u32, increase: bool) -> Result<(), MetaError> {
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
    pub(crate) fn add_tags(&mut self, tags: &BTreeMap<String, String>) -> Result<(), MetaError> {
        let new_keys = tags.keys().filter(|k| !self.tags.contains_key(*k)).count();
        if self.tags.len() + new_keys > TAGS_PER_STREAM_MAX {
            return Err(MetaError::TooManyTags(self.name.clone()));
        }
        self.tags
            .extend(tags.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ok(())
    }

    pub(crate) fn remove_tags(&mut self, keys: &[String]) {
        for k in keys {
            self.tags.remove(k);
        }
    }

    /// Enables (or disables) shard-level metrics; `ALL` stands for every metric.
    /// Returns (before, after).
    pub(crate) fn set_metrics(
        &mut self,
        names: &[String],
        enable: bool,
    ) -> (Vec<String>, Vec<String>) {
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
    pub(crate) fn remove_shards(&mut self, indexes: &[u32]) {
        self.shards.retain(|s| !indexes.contains(&s.index));
    }

    /// A registered consumer (DELETING ones included, until they are gone).
    pub fn consumer(&self, name: &str, now_ms: u64) -> Option<&Consumer> {
        self.consumers
            .iter()
            .find(|c| c.name == name && !c.is_gone(now_ms))
    }

    pub(crate) fn consumer_mut(
        &mut self,
        name: &str,
        now_ms: u64,
    ) -> Result<&mut Consumer, MetaError> {
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
    pub(crate) fn deregister_consumer(
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

    pub(crate) fn next_index(&self) -> u32 {
        self.shards.iter().map(|s| s.index + 1).max().unwrap_or(0)
    }

    pub(crate) fn open_shard(&self, index: u32) -> Result<&Shard, MetaError> {
        let shard = self
            .shard(index)
            .ok_or_else(|| MetaError::ShardNotFound(self.name.clone(), shard_id(index)))?;
        if !shard.is_open() {
            return Err(MetaError::ShardClosed(self.name.clone(), shard_id(index)));
        }
        Ok(shard)
    }

    pub(crate) fn close_shard(&mut self, index: u32, now_ms: u64) {
        if let Some(s) = self.shards.iter_mut().find(|s| s.index == index) {
            s.closed = Some(Closed {
                at_ms: now_ms,
                ending_sequence: None,
            });
        }
    }
}
