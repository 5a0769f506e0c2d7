//! Changes to the catalog as data. Every change is a [`Command`] applied
//! with [`Catalog::apply`]: the command carries every input (names, keys,
//! durations) and `apply` takes the time, so the same commands applied to
//! the same catalog in the same order give the same catalog. That is what a
//! replicated store (etcd) needs, and what lets a test replay a history.
//!
//! Commands check what the catalog alone can check (the stream exists, the
//! shard is open, the split key is inside it, 50 tags at most, the consumer
//! limits). AWS's scope limits and its wording stay with the caller,
//! which checks them on the same catalog under the same lock.

use super::*;
use crate::catalog::scope_key;
use crate::scaling::Action;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    CreateStream(CreateStream),
    /// DELETING for `deleting_ms` ([`Command::Sweep`] removes it after), or
    /// removed at once when 0, with its resource policies and its consumers'.
    DeleteStream {
        scope: Scope,
        name: String,
        deleting_ms: u64,
    },
    /// SplitShard: `new_start` more than one above the shard's start and
    /// below its end, as AWS requires.
    SplitShard {
        scope: Scope,
        name: String,
        index: u32,
        #[serde(with = "decimal")]
        new_start: u128,
        updating_ms: u64,
    },
    MergeShards {
        scope: Scope,
        name: String,
        index: u32,
        adjacent: u32,
        updating_ms: u64,
    },
    /// UniformScaling to `target` open shards: UpdateShardCount (`counted`
    /// against the scalings per rolling day) or a warm-throughput pre-split.
    ScaleUniformly {
        scope: Scope,
        name: String,
        target: u32,
        updating_ms: u64,
        counted: bool,
    },
    /// One on-demand scaling window of the stream created at `created_ms`
    /// (a stream deleted and created again since is not it): each action
    /// that still applies is carried out, the others (a user's split closed
    /// the shard meanwhile) are skipped. Refused if none applies.
    Autoscale {
        scope: Scope,
        name: String,
        created_ms: u64,
        actions: Vec<Action>,
    },
    /// Closed shards' ending sequence numbers, once their logs are closed.
    /// A stream deleted meanwhile is no error: there is nothing to record.
    RecordEndings {
        scope: Scope,
        name: String,
        endings: Vec<Ending>,
    },
    /// Increase (or decrease) the retention period, within AWS's bounds.
    SetRetention {
        scope: Scope,
        name: String,
        hours: u32,
        increase: bool,
    },
    AddTags {
        scope: Scope,
        name: String,
        tags: BTreeMap<String, String>,
    },
    RemoveTags {
        scope: Scope,
        name: String,
        keys: Vec<String>,
    },
    SetMaxRecordSize {
        scope: Scope,
        name: String,
        kib: u32,
        updating_ms: u64,
    },
    /// Enables (or disables) shard-level metrics; `ALL` stands for every
    /// metric. [`Applied::metrics`] has them before and after.
    SetMetrics {
        scope: Scope,
        name: String,
        metrics: Vec<String>,
        enable: bool,
    },
    /// Starts (`Some` key) or stops server-side encryption.
    SetEncryption {
        scope: Scope,
        name: String,
        key_id: Option<String>,
        updating_ms: u64,
    },
    /// UpdateStreamMode: a switch of mode counts against the switches per
    /// rolling day; warm throughput stays only with ON_DEMAND.
    SetMode {
        scope: Scope,
        name: String,
        mode: StreamMode,
        warm_mibps: Option<u32>,
        updating_ms: u64,
    },
    SetWarmThroughput {
        scope: Scope,
        name: String,
        mibps: u32,
    },
    /// CREATING for `creating_ms`, then ACTIVE.
    RegisterConsumer {
        scope: Scope,
        stream: String,
        name: String,
        creating_ms: u64,
        tags: BTreeMap<String, String>,
    },
    /// DELETING for `deleting_ms` (gone at once when 0); its resource
    /// policy goes at once.
    DeregisterConsumer {
        scope: Scope,
        stream: String,
        name: String,
        deleting_ms: u64,
    },
    /// Adds or overwrites a consumer's tags (the caller checks AWS's limit
    /// of 50 on what is asked).
    TagConsumer {
        scope: Scope,
        stream: String,
        name: String,
        tags: BTreeMap<String, String>,
    },
    UntagConsumer {
        scope: Scope,
        stream: String,
        name: String,
        keys: Vec<String>,
    },
    PutPolicy {
        arn: String,
        policy: String,
    },
    DeletePolicy {
        arn: String,
    },
    /// The scope's minimum-throughput billing commitment on or off.
    SetCommitment {
        scope: Scope,
        enable: bool,
    },
    /// Removes the streams whose deletion is over (and their resource
    /// policies), and consumers whose deregistration is.
    Sweep,
    /// Removes closed shards whose records have all expired.
    ExpireShards,
    /// Removes every stream of every scope and every resource policy (a
    /// test control). Log ids and epochs keep counting up.
    Reset,
}

/// A closed shard's ending sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ending {
    pub index: u32,
    #[serde(with = "decimal")]
    pub sequence: u128,
}

/// What applying a command asks of the storage, and what it answers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Shard logs to create (log id, epoch) before the catalog that names
    /// them is committed.
    pub created: Vec<(u64, u64)>,
    /// Shards closed (index, log id): their logs close after the commit and
    /// a [`Command::RecordEndings`] records where they ended.
    pub closed: Vec<(u32, u64)>,
    /// Shard logs no stream names any more: deleted after the commit.
    pub removed: Vec<u64>,
    /// Streams removed from the catalog.
    pub removed_streams: Vec<Stream>,
    /// SetMetrics: the shard-level metrics before and after.
    pub metrics: (Vec<String>, Vec<String>),
    /// Autoscale: the actions carried out, in order.
    pub actions: Vec<Action>,
}

impl Applied {
    fn reshard(r: Reshard) -> Self {
        Self {
            created: r.created,
            closed: r.closed,
            ..Self::default()
        }
    }

    fn removing(streams: Vec<Stream>) -> Self {
        Self {
            removed: streams
                .iter()
                .flat_map(|s| s.shards.iter().map(|sh| sh.log_id))
                .collect(),
            removed_streams: streams,
            ..Self::default()
        }
    }
}

impl Command {
    /// The stream whose shards the command splits or merges, if it does.
    pub fn stream(&self) -> Option<(&Scope, &str)> {
        match self {
            Self::SplitShard { scope, name, .. }
            | Self::MergeShards { scope, name, .. }
            | Self::ScaleUniformly { scope, name, .. }
            | Self::Autoscale { scope, name, .. } => Some((scope, name)),
            _ => None,
        }
    }

    /// Whether the command frees disk space (a store may give up its
    /// reserve on a full disk to commit it).
    pub fn frees_space(&self) -> bool {
        matches!(
            self,
            Self::DeleteStream { .. } | Self::Sweep | Self::ExpireShards | Self::Reset
        )
    }
}

impl Catalog {
    /// Applies `command` at `now_ms`: all of it, or (on an error) none of it.
    pub fn apply(&mut self, command: &Command, now_ms: u64) -> Result<Applied, MetaError> {
        let (next, applied) = self.applied(command, now_ms)?;
        *self = next;
        Ok(applied)
    }

    /// The catalog `command` makes of this one at `now_ms` (this one stays
    /// as it is, to be replaced once the new one is stored).
    pub fn applied(&self, command: &Command, now_ms: u64) -> Result<(Self, Applied), MetaError> {
        let mut next = self.clone();
        let applied = next.apply_in_place(command, now_ms)?;
        Ok((next, applied))
    }

    fn apply_in_place(&mut self, command: &Command, now: u64) -> Result<Applied, MetaError> {
        use Command as C;
        Ok(match command {
            C::CreateStream(create) => {
                let stream = self.create_stream(create.clone(), now)?;
                Applied {
                    created: stream.shards.iter().map(|s| (s.log_id, s.epoch)).collect(),
                    ..Applied::default()
                }
            }
            C::DeleteStream {
                scope,
                name,
                deleting_ms,
            } => {
                if *deleting_ms > 0 {
                    self.start_delete(scope, name, now, *deleting_ms)?;
                    Applied::default()
                } else {
                    let stream = self.delete_stream(scope, name)?;
                    self.remove_policies_of(scope, name, None);
                    Applied::removing(vec![stream])
                }
            }
            C::SplitShard {
                scope,
                name,
                index,
                new_start,
                updating_ms,
            } => Applied::reshard(self.split_shard(
                scope,
                name,
                *index,
                *new_start,
                now,
                *updating_ms,
            )?),
            C::MergeShards {
                scope,
                name,
                index,
                adjacent,
                updating_ms,
            } => Applied::reshard(self.merge_shards(
                scope,
                name,
                *index,
                *adjacent,
                now,
                *updating_ms,
            )?),
            C::ScaleUniformly {
                scope,
                name,
                target,
                updating_ms,
                counted,
            } => {
                if *counted {
                    let stream = self.stream_mut(scope, name)?;
                    within_a_day(&mut stream.scalings_ms, now);
                    stream.scalings_ms.push(now);
                }
                Applied::reshard(self.update_shard_count(
                    scope,
                    name,
                    *target,
                    now,
                    *updating_ms,
                )?)
            }
            C::Autoscale {
                scope,
                name,
                created_ms,
                actions,
            } => self.autoscale(scope, name, *created_ms, actions, now)?,
            C::RecordEndings {
                scope,
                name,
                endings,
            } => {
                for e in endings {
                    // The stream may have been deleted meanwhile.
                    let _ = self.set_ending_sequence(scope, name, e.index, e.sequence);
                }
                Applied::default()
            }
            C::SetRetention {
                scope,
                name,
                hours,
                increase,
            } => {
                self.stream_mut(scope, name)?
                    .set_retention(*hours, *increase)?;
                Applied::default()
            }
            C::AddTags { scope, name, tags } => {
                self.stream_mut(scope, name)?.add_tags(tags)?;
                Applied::default()
            }
            C::RemoveTags { scope, name, keys } => {
                self.stream_mut(scope, name)?.remove_tags(keys);
                Applied::default()
            }
            C::SetMaxRecordSize {
                scope,
                name,
                kib,
                updating_ms,
            } => {
                let stream = self.stream_mut(scope, name)?;
                stream.max_record_size_kib = *kib;
                stream.start_update(now, *updating_ms);
                Applied::default()
            }
            C::SetMetrics {
                scope,
                name,
                metrics,
                enable,
            } => Applied {
                metrics: self.stream_mut(scope, name)?.set_metrics(metrics, *enable),
                ..Applied::default()
            },
            C::SetEncryption {
                scope,
                name,
                key_id,
                updating_ms,
            } => {
                let stream = self.stream_mut(scope, name)?;
                stream.encryption_key_id.clone_from(key_id);
                stream.start_update(now, *updating_ms);
                Applied::default()
            }
            C::SetMode {
                scope,
                name,
                mode,
                warm_mibps,
                updating_ms,
            } => {
                let stream = self.stream_mut(scope, name)?;
                if stream.mode != *mode {
                    within_a_day(&mut stream.mode_switches_ms, now);
                    stream.mode_switches_ms.push(now);
                }
                stream.mode = *mode;
                stream.warm_throughput_mibps = match mode {
                    StreamMode::OnDemand => *warm_mibps,
                    StreamMode::Provisioned => None,
                };
                stream.start_update(now, *updating_ms);
                Applied::default()
            }
            C::SetWarmThroughput { scope, name, mibps } => {
                self.stream_mut(scope, name)?.warm_throughput_mibps = Some(*mibps);
                Applied::default()
            }
            C::RegisterConsumer {
                scope,
                stream,
                name,
                creating_ms,
                tags,
            } => {
                self.register_consumer(scope, stream, name, now, *creating_ms)?;
                self.stream_mut(scope, stream)?
                    .consumer_mut(name, now)?
                    .tags
                    .clone_from(tags);
                Applied::default()
            }
            C::DeregisterConsumer {
                scope,
                stream,
                name,
                deleting_ms,
            } => {
                self.stream_mut(scope, stream)?
                    .deregister_consumer(name, now, *deleting_ms)?;
                self.remove_policies_of(scope, stream, Some(name));
                Applied::default()
            }
            C::TagConsumer {
                scope,
                stream,
                name,
                tags,
            } => {
                let consumer = self.stream_mut(scope, stream)?.consumer_mut(name, now)?;
                consumer
                    .tags
                    .extend(tags.iter().map(|(k, v)| (k.clone(), v.clone())));
                Applied::default()
            }
            C::UntagConsumer {
                scope,
                stream,
                name,
                keys,
            } => {
                let consumer = self.stream_mut(scope, stream)?.consumer_mut(name, now)?;
                for k in keys {
                    consumer.tags.remove(k);
                }
                Applied::default()
            }
            C::PutPolicy { arn, policy } => {
                self.resource_policies.insert(arn.clone(), policy.clone());
                Applied::default()
            }
            C::DeletePolicy { arn } => {
                self.resource_policies.remove(arn);
                Applied::default()
            }
            C::SetCommitment { scope, enable } => {
                self.commitments
                    .entry(scope_key(scope))
                    .or_default()
                    .set(*enable, now);
                Applied::default()
            }
            C::Sweep => {
                let gone = self.sweep(now);
                for s in &gone {
                    self.remove_policies_of(&s.scope(), &s.name, None);
                }
                Applied::removing(gone)
            }
            C::ExpireShards => Applied {
                removed: self.expire_shards(now),
                ..Applied::default()
            },
            C::Reset => Applied::removing(self.take_streams()),
        })
    }

    /// See [`Command::Autoscale`].
    fn autoscale(
        &mut self,
        scope: &Scope,
        name: &str,
        created_ms: u64,
        actions: &[Action],
        now: u64,
    ) -> Result<Applied, MetaError> {
        let current = self
            .stream(scope, name)
            .filter(|s| s.created_ms == created_ms && s.mode == StreamMode::OnDemand)
            .filter(|s| matches!(s.status(now), StreamStatus::Active | StreamStatus::Updating));
        if current.is_none() {
            return Err(MetaError::StreamNotFound(name.to_owned()));
        }
        let mut all = Applied::default();
        for action in actions {
            let result = match *action {
                Action::Split {
                    index,
                    new_starting_hash_key,
                } => self.split_shard(scope, name, index, new_starting_hash_key, now, 0),
                Action::Merge { index, adjacent } => {
                    self.merge_shards(scope, name, index, adjacent, now, 0)
                }
            };
            if let Ok(r) = result {
                all.created.extend(r.created);
                all.closed.extend(r.closed);
                all.actions.push(*action);
            }
        }
        if all.actions.is_empty() {
            return Err(MetaError::NothingToScale(name.to_owned()));
        }
        Ok(all)
    }

    /// Removes the closed shards whose records have all expired; their log ids.
    fn expire_shards(&mut self, now: u64) -> Vec<u64> {
        let mut removed = Vec::new();
        for stream in self.streams.values_mut() {
            let gone = stream.expired_closed_shards(stream.retention_cutoff_ms(now));
            if !gone.is_empty() {
                let indexes: Vec<u32> = gone.iter().map(|g| g.0).collect();
                stream.remove_shards(&indexes);
                removed.extend(gone.iter().map(|g| g.1));
            }
        }
        removed
    }
}

#[cfg(test)]
mod tests;
