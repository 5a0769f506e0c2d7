//! The catalog: every stream of every account and region, their commitments
//! and resource policies; the changes made to it (create, delete, split,
//! merge, scale, consumers, sweep), each taking `now`; its JSON snapshot.

use super::*;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    /// Streams by `account/region/name` (none of them contains `/`), so
    /// that one scope's streams are a contiguous range in name order.
    pub(crate) streams: BTreeMap<String, Stream>,
    next_log_id: u64,
    next_epoch: u64,
    /// Resource policies by resource ARN (which names account and region).
    #[serde(default)]
    pub(crate) resource_policies: BTreeMap<String, String>,
    /// Minimum-throughput billing commitments by `account/region`.
    #[serde(default)]
    pub(crate) commitments: BTreeMap<String, Commitment>,
}

pub(crate) fn key(scope: &Scope, name: &str) -> String {
    format!("{}/{}/{name}", scope.account, scope.region)
}

pub(crate) fn scope_key(scope: &Scope) -> String {
    format!("{}/{}", scope.account, scope.region)
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
        Self::from_snapshot_in(bytes, &Scope::new(DEFAULT_ACCOUNT, DEFAULT_REGION))
    }

    /// Loads a snapshot; streams of a snapshot from before accounts, or
    /// before regions, existed belong to `scope`'s account and region (the
    /// server's defaults, which its ARNs and resource policies already
    /// named), as do its commitments.
    pub fn from_snapshot_in(bytes: &[u8], scope: &Scope) -> Result<Self, MetaError> {
        let mut catalog: Self =
            serde_json::from_slice(bytes).map_err(|e| MetaError::Snapshot(e.to_string()))?;
        // Earlier snapshots keyed streams by bare name, then `account/name`.
        if catalog.streams.keys().any(|k| k.matches('/').count() != 2) {
            let streams = std::mem::take(&mut catalog.streams);
            catalog.streams = streams
                .into_values()
                .map(|mut s| {
                    if s.account.is_empty() {
                        s.account.clone_from(&scope.account);
                    }
                    if s.region.is_empty() {
                        s.region.clone_from(&scope.region);
                    }
                    (key(&s.scope(), &s.name), s)
                })
                .collect();
        }
        if catalog.commitments.keys().any(|k| !k.contains('/')) {
            let commitments = std::mem::take(&mut catalog.commitments);
            catalog.commitments = commitments
                .into_iter()
                .map(|(k, c)| match k.contains('/') {
                    true => (k, c),
                    false => (format!("{k}/{}", scope.region), c),
                })
                .collect();
        }
        Ok(catalog)
    }

    pub fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("the catalog serializes")
    }

    pub fn stream(&self, scope: &Scope, name: &str) -> Option<&Stream> {
        self.streams.get(&key(scope, name))
    }

    pub(crate) fn stream_mut(
        &mut self,
        scope: &Scope,
        name: &str,
    ) -> Result<&mut Stream, MetaError> {
        self.streams
            .get_mut(&key(scope, name))
            .ok_or_else(|| MetaError::StreamNotFound(name.to_owned()))
    }

    /// Every scope's streams.
    pub fn streams(&self) -> impl Iterator<Item = &Stream> {
        self.streams.values()
    }

    /// One scope's streams in name order (ListStreams' order).
    pub fn streams_of<'a>(&'a self, scope: &Scope) -> impl Iterator<Item = &'a Stream> + 'a {
        let prefix = key(scope, "");
        self.streams
            .range(prefix.clone()..)
            .take_while(move |(k, _)| k.starts_with(&prefix))
            .map(|(_, s)| s)
    }

    /// Open shards of one scope (the shard limit is per scope).
    pub fn open_shard_count(&self, scope: &Scope) -> usize {
        self.streams_of(scope)
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
    pub(crate) fn split_shard(
        &mut self,
        scope: &Scope,
        name: &str,
        index: u32,
        new_start: u128,
        now_ms: u64,
        updating_ms: u64,
    ) -> Result<Reshard, MetaError> {
        let stream = self.stream_mut(scope, name)?;
        let parent = stream.open_shard(index)?;
        let (start, end) = (parent.starting_hash_key, parent.ending_hash_key);
        if new_start <= start.saturating_add(1) || new_start >= end {
            return Err(MetaError::SplitKeyOutside {
                stream: name.to_owned(),
                shard: shard_id(index),
                new_start,
                start,
                end,
            });
        }
        let reshard = self.split_shard_unchecked(scope, name, index, new_start, now_ms)?;
        self.stream_mut(scope, name)?
            .start_update(now_ms, updating_ms);
        Ok(reshard)
    }

    /// Merges two open, adjacent shards: both close and one child takes their
    /// joint range, with `index` as its parent and `adjacent` as its adjacent
    /// parent.
    pub(crate) fn merge_shards(
        &mut self,
        scope: &Scope,
        name: &str,
        index: u32,
        adjacent: u32,
        now_ms: u64,
        updating_ms: u64,
    ) -> Result<Reshard, MetaError> {
        let stream = self.stream_mut(scope, name)?;
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
        let stream = self.stream_mut(scope, name)?;
        stream.close_shard(index, now_ms);
        stream.close_shard(adjacent, now_ms);
        stream.shards.push(child);
        stream.start_update(now_ms, updating_ms);
        Ok(Reshard { closed, created })
    }

    /// UpdateShardCount with UNIFORM_SCALING: the open shards end up exactly
    /// the `target` equal ranges CreateStream would make, each step a split
    /// or a merge with ordinary lineage. As AWS does it (a 4 -> 3 scaling
    /// observed on AWS leaves shards 6, 9 and 10 open, 11 in all), the
    /// ranges are made from the lowest up: for each, the shard holding its
    /// end is split there, then the pieces inside it are merged, lowest
    /// first. The caller checks AWS's scaling bounds.
    pub(crate) fn update_shard_count(
        &mut self,
        scope: &Scope,
        name: &str,
        target: u32,
        now_ms: u64,
        updating_ms: u64,
    ) -> Result<Reshard, MetaError> {
        let n = u128::from(target.max(1));
        let mut all = Reshard {
            closed: Vec::new(),
            created: Vec::new(),
        };
        let absorb = |all: &mut Reshard, r: Reshard| {
            all.closed.extend(r.closed);
            all.created.extend(r.created);
        };
        let missing = || MetaError::StreamNotFound(name.to_owned());
        for i in 0..n {
            let start = split_point(i, n);
            let end = if i + 1 == n {
                HASH_KEY_MAX
            } else {
                let next = split_point(i + 1, n);
                let holder = self
                    .stream(scope, name)
                    .ok_or_else(missing)?
                    .shard_for_hash_key(next);
                if holder.starting_hash_key != next {
                    let index = holder.index;
                    let r = self.split_shard_unchecked(scope, name, index, next, now_ms)?;
                    absorb(&mut all, r);
                }
                next - 1
            };
            loop {
                let stream = self.stream(scope, name).ok_or_else(missing)?;
                let mut pieces: Vec<&Shard> = stream
                    .open_shards()
                    .filter(|s| s.starting_hash_key >= start && s.ending_hash_key <= end)
                    .collect();
                if pieces.len() < 2 {
                    break;
                }
                pieces.sort_by_key(|s| s.starting_hash_key);
                let (a, b) = (pieces[0].index, pieces[1].index);
                let r = self.merge_shards(scope, name, a, b, now_ms, 0)?;
                absorb(&mut all, r);
            }
        }
        self.stream_mut(scope, name)?
            .start_update(now_ms, updating_ms);
        Ok(all)
    }

    /// A split at any key inside the shard but its first (UpdateShardCount
    /// places its own boundaries; AWS's stricter rule is for SplitShard).
    fn split_shard_unchecked(
        &mut self,
        scope: &Scope,
        name: &str,
        index: u32,
        new_start: u128,
        now_ms: u64,
    ) -> Result<Reshard, MetaError> {
        let stream = self.stream_mut(scope, name)?;
        let parent = stream.open_shard(index)?;
        let (start, end, parent_log) = (
            parent.starting_hash_key,
            parent.ending_hash_key,
            parent.log_id,
        );
        if new_start <= start || new_start > end {
            return Err(MetaError::SplitKeyOutside {
                stream: name.to_owned(),
                shard: shard_id(index),
                new_start,
                start,
                end,
            });
        }
        let first = stream.next_index();
        let mut low = self.new_shard(first, start, new_start - 1, now_ms);
        let mut high = self.new_shard(first + 1, new_start, end, now_ms);
        low.parent = Some(index);
        high.parent = Some(index);
        let created = vec![(low.log_id, low.epoch), (high.log_id, high.epoch)];
        let stream = self.stream_mut(scope, name)?;
        stream.close_shard(index, now_ms);
        stream.shards.extend([low, high]);
        Ok(Reshard {
            closed: vec![(index, parent_log)],
            created,
        })
    }

    /// Records a closed shard's ending sequence number.
    pub(crate) fn set_ending_sequence(
        &mut self,
        scope: &Scope,
        name: &str,
        index: u32,
        ending_sequence: u128,
    ) -> Result<(), MetaError> {
        let stream = self.stream_mut(scope, name)?;
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

    pub fn commitment(&self, scope: &Scope) -> Commitment {
        self.commitments
            .get(&scope_key(scope))
            .cloned()
            .unwrap_or_default()
    }

    /// Creates a stream whose shards split the hash-key space evenly, as AWS does.
    pub(crate) fn create_stream(
        &mut self,
        cmd: CreateStream,
        now_ms: u64,
    ) -> Result<&Stream, MetaError> {
        let stream_key = key(&cmd.scope, &cmd.name);
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
            account: cmd.scope.account,
            region: cmd.scope.region,
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
            warm_throughput_mibps: cmd.warm_throughput_mibps,
            consumers: Vec::new(),
            scalings_ms: Vec::new(),
            mode_switches_ms: Vec::new(),
        };
        Ok(self.streams.entry(stream_key).or_insert(stream))
    }

    /// Marks a stream DELETING for `duration_ms`; [`Catalog::sweep`] removes it after.
    pub(crate) fn start_delete(
        &mut self,
        scope: &Scope,
        name: &str,
        now_ms: u64,
        duration_ms: u64,
    ) -> Result<(), MetaError> {
        let stream = self.stream_mut(scope, name)?;
        if stream.deleting_until_ms.is_none() {
            stream.deleting_until_ms = Some(now_ms.saturating_add(duration_ms));
        }
        Ok(())
    }

    /// Registers a consumer with a stream: CREATING for `creating_ms`, then
    /// ACTIVE. At most [`CONSUMERS_PER_STREAM_MAX`] per stream and
    /// [`CONSUMERS_CREATING_MAX`] of an account and region CREATING at once.
    pub(crate) fn register_consumer(
        &mut self,
        scope: &Scope,
        stream: &str,
        name: &str,
        now_ms: u64,
        creating_ms: u64,
    ) -> Result<&Consumer, MetaError> {
        let creating = self
            .streams_of(scope)
            .flat_map(|s| s.live_consumers(now_ms))
            .filter(|c| c.status(now_ms) == ConsumerStatus::Creating)
            .count();
        let s = self.stream_mut(scope, stream)?;
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

    /// The resource policy attached to `arn`.
    pub fn policy(&self, arn: &str) -> Option<&str> {
        self.resource_policies.get(arn).map(String::as_str)
    }

    /// Drops the resource policies of a stream and of its consumers, or of
    /// one of its consumers.
    pub(crate) fn remove_policies_of(
        &mut self,
        scope: &Scope,
        stream: &str,
        consumer: Option<&str>,
    ) {
        use sluice_model::Arn;
        self.resource_policies.retain(|arn, _| {
            let Ok(arn) = Arn::parse(arn) else {
                return true;
            };
            let its_consumer = match &arn {
                Arn::Stream { .. } => None,
                Arn::Consumer { consumer, .. } => Some(consumer.as_str()),
            };
            let of_it = scope.owns(&arn)
                && arn.stream_name() == stream
                && match (consumer, its_consumer) {
                    (None, _) => true,
                    (Some(wanted), Some(c)) => wanted == c,
                    (Some(_), None) => false,
                };
            !of_it
        });
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
    pub(crate) fn sweep(&mut self, now_ms: u64) -> Vec<Stream> {
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

    /// Removes every stream of every scope, and the resource policies;
    /// returns the streams so that their shard logs can be deleted. Log ids
    /// and epochs keep counting up.
    pub(crate) fn take_streams(&mut self) -> Vec<Stream> {
        self.resource_policies.clear();
        std::mem::take(&mut self.streams).into_values().collect()
    }

    /// Removes a stream; returns it so its shard logs can be deleted.
    pub(crate) fn delete_stream(&mut self, scope: &Scope, name: &str) -> Result<Stream, MetaError> {
        self.streams
            .remove(&key(scope, name))
            .ok_or_else(|| MetaError::StreamNotFound(name.to_owned()))
    }
}

/// `floor(2^128 * i / n)` without overflow, for `i <= n`.
pub(crate) fn split_point(i: u128, n: u128) -> u128 {
    if i == 0 {
        return 0;
    }
    // 2^128 = q*n + r, with 1 <= r <= n.
    let q = HASH_KEY_MAX / n;
    let r = HASH_KEY_MAX % n + 1;
    q * i + (r * i) / n
}
