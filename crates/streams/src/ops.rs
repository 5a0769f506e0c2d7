//! One function per Kinesis operation: a typed request in (decoded and
//! validated by `sluice_aws`), a typed answer out.
//!
//! Runs on the blocking pool (appends wait for fsync). Error names and wording
//! follow AWS; where AWS's exact text is unknown the message says what is wrong.

use std::collections::BTreeMap;

use base64::Engine as _;
use md5::{Digest, Md5};
use serde_json::Value;
use sluice_aws::kinesis::{self as k, Request, Response};
use sluice_aws::types::Timestamp;
use sluice_aws::{AwsError, ErrorCode};
use sluice_log::{AppendRecord, ReadLimits, StartingPosition};
use sluice_meta::{
    parse_shard_id, Applied, Command, CreateStream, Scope, Shard, Stream, StreamMode, StreamStatus,
};
use sluice_model::SequenceNumber;

use crate::consumers;
use crate::engine::{Engine, Refused};
use crate::iterator::{ShardIterator, ITERATOR_LIFETIME_MS};

mod errors;
mod internal;
mod put;
mod settings;
mod shards;
mod streams;
use errors::*;
pub(crate) use errors::{err, internal, not_found, quarantined, read_error};
pub use internal::{
    begin_internal_put, create_internal, delete_internal, internal_log, internal_streams,
};
pub use put::records_size_exceeded;
use put::*;
use settings::*;
pub use shards::autoscale;
use shards::*;
use streams::*;
pub(crate) use streams::{decode_token, encode_token};
mod read;
pub use put::{
    begin_put_record_fast, begin_put_records_fast, EntryError, PendingPut, PutAnswer,
    PutRecordsAnswer,
};
use read::*;
pub(crate) use read::{child_shards, shard_start_sequence, starting_position, PositionWords};
pub use read::{is_encrypted, Records};

/// GetRecords returns at most this much data per call (AWS: 10 MiB).
const GET_RECORDS_MAX_BYTES: usize = 10 << 20;
/// PutRecords carries at most this much data and partition key per call (AWS: 10 MiB).
const PUT_RECORDS_MAX_BYTES: usize = 10 << 20;

/// One request: the engine and the caller's account.
pub(crate) struct Ctx<'a> {
    state: &'a Engine,
    pub(crate) scope: sluice_meta::Scope,
}

impl std::ops::Deref for Ctx<'_> {
    type Target = Engine;
    fn deref(&self) -> &Engine {
        self.state
    }
}

impl Ctx<'_> {
    pub(crate) fn arn(&self, name: &str) -> String {
        self.state.stream_arn(&self.scope, name)
    }

    pub(crate) fn engine(&self) -> &Engine {
        self.state
    }

    /// [`Engine::change`] in AWS's words: the catalog's refusals through
    /// [`meta_error`], the disk's as InternalFailure.
    pub(crate) fn change(
        &self,
        check: impl FnOnce(&sluice_meta::Catalog, u64) -> Result<Command, AwsError>,
    ) -> Result<Applied, AwsError> {
        self.state.change(check).map_err(|e| self.refused(e))
    }

    pub(crate) fn refused(&self, e: Refused<AwsError>) -> AwsError {
        match e {
            Refused::Check(e) => e,
            Refused::Meta(e) => meta_error(self, e),
            Refused::Io(e) => internal(e),
        }
    }
}

/// What the server does with a request: an answer now, a put to await, or
/// an event stream to start.
#[derive(Debug)]
pub enum Begun {
    /// A typed answer.
    Answer(Response),
    /// GetRecords' records, for the caller to encode (no value tree for up
    /// to 10 MiB of them).
    Records(Records),
    /// A put, up to the durable point: await [`PendingPut::finish`].
    Put(PendingPut),
    /// SubscribeToShard's checks passed: start [`crate::fanout::start`].
    Subscription(crate::fanout::Subscription),
}

/// Runs `request` for `account`.
pub fn dispatch(request: Request, state: &Engine, scope: Scope) -> Result<Begun, AwsError> {
    let state = &Ctx { state, scope };
    match request {
        Request::GetRecords(input) => get_records(state, &input).map(Begun::Records),
        Request::PutRecord(input) => put_record_begin(state, input).map(Begun::Put),
        Request::PutRecords(input) => put_records_begin(state, input).map(Begun::Put),
        Request::SubscribeToShard(input) => {
            consumers::subscribe_to_shard(state, input).map(Begun::Subscription)
        }
        other => route(other, state).map(Begun::Answer),
    }
}

fn route(request: Request, state: &Ctx) -> Result<Response, AwsError> {
    use Request as R;
    match request {
        R::CreateStream(i) => create_stream(state, i).map(|()| Response::CreateStream),
        R::DeleteStream(i) => delete_stream(state, i).map(|()| Response::DeleteStream),
        R::DescribeStream(i) => describe_stream(state, i).map(Response::DescribeStream),
        R::DescribeStreamSummary(i) => {
            describe_stream_summary(state, i).map(Response::DescribeStreamSummary)
        }
        R::ListStreams(i) => list_streams(state, i).map(Response::ListStreams),
        R::ListShards(i) => list_shards(state, i).map(Response::ListShards),
        R::GetShardIterator(i) => get_shard_iterator(state, i).map(Response::GetShardIterator),
        R::IncreaseStreamRetentionPeriod(i) => set_retention(
            state,
            StreamRef::new(&i.stream_name, &i.stream_arn),
            i.retention_period_hours,
            true,
        )
        .map(|()| Response::IncreaseStreamRetentionPeriod),
        R::DecreaseStreamRetentionPeriod(i) => set_retention(
            state,
            StreamRef::new(&i.stream_name, &i.stream_arn),
            i.retention_period_hours,
            false,
        )
        .map(|()| Response::DecreaseStreamRetentionPeriod),
        R::AddTagsToStream(i) => {
            let name = stream_name(state, StreamRef::new(&i.stream_name, &i.stream_arn))?;
            add_tags(state, &i.tags, name).map(|()| Response::AddTagsToStream)
        }
        R::TagResource(i) => match resource(state, &i.resource_arn)? {
            Resource::Stream(name) => {
                add_tags(state, &i.tags, name).map(|()| Response::TagResource)
            }
            Resource::Consumer(stream, name) => {
                consumers::tag(state, &stream, &name, &i.tags).map(|()| Response::TagResource)
            }
        },
        R::RemoveTagsFromStream(i) => {
            let name = stream_name(state, StreamRef::new(&i.stream_name, &i.stream_arn))?;
            remove_tags(state, &i.tag_keys, name).map(|()| Response::RemoveTagsFromStream)
        }
        R::UntagResource(i) => match resource(state, &i.resource_arn)? {
            Resource::Stream(name) => {
                remove_tags(state, &i.tag_keys, name).map(|()| Response::UntagResource)
            }
            Resource::Consumer(stream, name) => {
                consumers::untag(state, &stream, &name, &i.tag_keys)
                    .map(|()| Response::UntagResource)
            }
        },
        R::ListTagsForStream(i) => list_tags_for_stream(state, i).map(Response::ListTagsForStream),
        R::ListTagsForResource(i) => {
            list_tags_for_resource(state, i).map(Response::ListTagsForResource)
        }
        R::UpdateMaxRecordSize(i) => {
            update_max_record_size(state, i).map(|()| Response::UpdateMaxRecordSize)
        }
        R::DescribeLimits(_) => describe_limits(state).map(Response::DescribeLimits),
        R::DescribeAccountSettings(_) => {
            describe_account_settings(state).map(Response::DescribeAccountSettings)
        }
        R::UpdateAccountSettings(i) => {
            update_account_settings(state, i).map(Response::UpdateAccountSettings)
        }
        R::EnableEnhancedMonitoring(i) => set_monitoring(
            state,
            StreamRef::new(&i.stream_name, &i.stream_arn),
            &i.shard_level_metrics,
            true,
        )
        .map(Response::EnableEnhancedMonitoring),
        R::DisableEnhancedMonitoring(i) => set_monitoring(
            state,
            StreamRef::new(&i.stream_name, &i.stream_arn),
            &i.shard_level_metrics,
            false,
        )
        .map(Response::DisableEnhancedMonitoring),
        R::PutResourcePolicy(i) => {
            put_resource_policy(state, i).map(|()| Response::PutResourcePolicy)
        }
        R::GetResourcePolicy(i) => get_resource_policy(state, i).map(Response::GetResourcePolicy),
        R::DeleteResourcePolicy(i) => {
            delete_resource_policy(state, i).map(|()| Response::DeleteResourcePolicy)
        }
        R::SplitShard(i) => split_shard(state, i).map(|()| Response::SplitShard),
        R::MergeShards(i) => merge_shards(state, i).map(|()| Response::MergeShards),
        R::UpdateShardCount(i) => update_shard_count(state, i).map(Response::UpdateShardCount),
        R::UpdateStreamMode(i) => update_stream_mode(state, i).map(|()| Response::UpdateStreamMode),
        R::UpdateStreamWarmThroughput(i) => {
            update_warm_throughput(state, i).map(Response::UpdateStreamWarmThroughput)
        }
        R::StartStreamEncryption(i) => set_encryption(
            state,
            StreamRef::new(&i.stream_name, &i.stream_arn),
            i.encryption_type,
            i.key_id,
            true,
        )
        .map(|()| Response::StartStreamEncryption),
        R::StopStreamEncryption(i) => set_encryption(
            state,
            StreamRef::new(&i.stream_name, &i.stream_arn),
            i.encryption_type,
            i.key_id,
            false,
        )
        .map(|()| Response::StopStreamEncryption),
        R::RegisterStreamConsumer(i) => {
            consumers::register_stream_consumer(state, i).map(Response::RegisterStreamConsumer)
        }
        R::DeregisterStreamConsumer(i) => consumers::deregister_stream_consumer(state, i)
            .map(|()| Response::DeregisterStreamConsumer),
        R::DescribeStreamConsumer(i) => {
            consumers::describe_stream_consumer(state, i).map(Response::DescribeStreamConsumer)
        }
        R::ListStreamConsumers(i) => {
            consumers::list_stream_consumers(state, i).map(Response::ListStreamConsumers)
        }
        R::GetRecords(_) | R::PutRecord(_) | R::PutRecords(_) | R::SubscribeToShard(_) => {
            Err(internal("dispatch takes these"))
        }
    }
}

/// A count (validated against the model's bounds) as a usize; past what
/// usize holds, the most it holds.
pub(crate) fn count(n: Option<i64>, default: usize) -> usize {
    n.map_or(default, |n| usize::try_from(n.max(0)).unwrap_or(usize::MAX))
}

/// A count (validated against the model's bounds) as a u32; past what u32
/// holds, u32::MAX (so that limits refuse it rather than wrap it).
pub(crate) fn count_u32(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

pub(crate) fn seconds(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms)
}

/// How a request names its stream: by name, by ARN, or both.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamRef<'a> {
    pub name: Option<&'a str>,
    pub arn: Option<&'a str>,
}

impl<'a> StreamRef<'a> {
    pub fn new(name: &'a Option<String>, arn: &'a Option<String>) -> Self {
        Self {
            name: name.as_deref(),
            arn: arn.as_deref(),
        }
    }

    pub fn arn(arn: &'a str) -> Self {
        Self {
            name: None,
            arn: Some(arn),
        }
    }
}

/// The stream a request names by `StreamName` or `StreamARN`.
pub(crate) fn stream_name(state: &Ctx, input: StreamRef<'_>) -> Result<String, AwsError> {
    if let Some(arn) = input.arn {
        let name = match state.own_arn(&state.scope, arn) {
            Some(sluice_model::Arn::Stream { stream, .. }) => stream,
            _ => {
                return Err(err(
                    ErrorCode::ResourceNotFoundException,
                    format!("Stream {arn} not found."),
                ))
            }
        };
        if let Some(given) = input.name {
            if given != name {
                return Err(err(
                    ErrorCode::InvalidArgumentException,
                    "StreamARN and StreamName name different streams.",
                ));
            }
        }
        return Ok(name);
    }
    input.name.map(str::to_owned).ok_or_else(|| {
        err(
            ErrorCode::InvalidArgumentException,
            "Either StreamName or StreamARN must be provided.",
        )
    })
}

fn with_stream<T>(
    state: &Ctx,
    input: StreamRef<'_>,
    f: impl FnOnce(&Stream) -> Result<T, AwsError>,
) -> Result<T, AwsError> {
    with_named_stream(state, &stream_name(state, input)?, f)
}

pub(crate) fn with_named_stream<T>(
    state: &Ctx,
    name: &str,
    f: impl FnOnce(&Stream) -> Result<T, AwsError>,
) -> Result<T, AwsError> {
    let catalog = state.catalog();
    let now = state.now_ms();
    let stream = catalog
        .stream(&state.scope, name)
        .filter(|s| !s.is_gone(now))
        .ok_or_else(|| not_found(state, name))?;
    f(stream)
}

/// Records can be written and read only while the stream is not being deleted.
pub(crate) fn check_not_deleting(state: &Ctx, stream: &Stream) -> Result<(), AwsError> {
    if stream.status(state.now_ms()) == StreamStatus::Deleting {
        return Err(not_found(state, &stream.name));
    }
    Ok(())
}

/// Changes of stream settings need an ACTIVE stream.
fn check_active(state: &Ctx, stream: &Stream) -> Result<(), AwsError> {
    let status = stream.status(state.now_ms());
    if status != StreamStatus::Active {
        return Err(err(
            ErrorCode::ResourceInUseException,
            format!(
                "Stream {} under account {} not ACTIVE, instead in state {}",
                stream.name,
                state.scope.account,
                status_name(status)
            ),
        ));
    }
    Ok(())
}

pub(crate) fn stream_status(status: StreamStatus) -> k::StreamStatus {
    match status {
        StreamStatus::Creating => k::StreamStatus::Creating,
        StreamStatus::Active => k::StreamStatus::Active,
        StreamStatus::Updating => k::StreamStatus::Updating,
        StreamStatus::Deleting => k::StreamStatus::Deleting,
    }
}

pub fn status_name(status: StreamStatus) -> &'static str {
    stream_status(status).as_str()
}

fn mode_details(mode: StreamMode) -> Option<k::StreamModeDetails> {
    Some(k::StreamModeDetails {
        stream_mode: match mode {
            StreamMode::Provisioned => k::StreamMode::Provisioned,
            StreamMode::OnDemand => k::StreamMode::OnDemand,
        },
    })
}

fn shard_out(shard: &Shard) -> k::Shard {
    k::Shard {
        shard_id: shard.shard_id(),
        parent_shard_id: shard.parent.map(sluice_meta::shard_id),
        adjacent_parent_shard_id: shard.adjacent_parent.map(sluice_meta::shard_id),
        hash_key_range: k::HashKeyRange {
            starting_hash_key: shard.starting_hash_key.to_string(),
            ending_hash_key: shard.ending_hash_key.to_string(),
        },
        sequence_number_range: k::SequenceNumberRange {
            starting_sequence_number: SequenceNumber(shard_start_sequence(shard)).to_string(),
            ending_sequence_number: shard
                .closed
                .as_ref()
                .and_then(|c| c.ending_sequence)
                .map(|end| SequenceNumber(end).to_string()),
        },
    }
}
