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
use sluice_log::{AppendRecord, ReadError, ReadLimits, StartingPosition};
use sluice_meta::{parse_shard_id, CreateStream, Shard, Stream, StreamMode, StreamStatus};
use sluice_model::SequenceNumber;

use crate::consumers;
use crate::engine::Engine;
use crate::iterator::{ShardIterator, ITERATOR_LIFETIME_MS};

mod put;
pub use put::records_size_exceeded;
use put::*;
mod read;
pub use put::{
    begin_put_record_fast, begin_put_records_fast, EntryError, PendingPut, PutAnswer,
    PutRecordsAnswer,
};
use read::*;
pub(crate) use read::{child_shards, starting_position, PositionWords};
pub use read::{is_encrypted, Records};

/// GetRecords returns at most this much data per call (AWS: 10 MiB).
const GET_RECORDS_MAX_BYTES: usize = 10 << 20;
/// PutRecords carries at most this much data and partition key per call (AWS: 10 MiB).
const PUT_RECORDS_MAX_BYTES: usize = 10 << 20;

/// One request: the engine and the caller's account.
pub(crate) struct Ctx<'a> {
    state: &'a Engine,
    pub(crate) account: String,
}

impl std::ops::Deref for Ctx<'_> {
    type Target = Engine;
    fn deref(&self) -> &Engine {
        self.state
    }
}

impl Ctx<'_> {
    pub(crate) fn arn(&self, name: &str) -> String {
        self.state.stream_arn(&self.account, name)
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
pub fn dispatch(request: Request, state: &Engine, account: String) -> Result<Begun, AwsError> {
    let state = &Ctx { state, account };
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

pub(crate) fn err(code: ErrorCode, message: impl Into<String>) -> AwsError {
    AwsError::new(code, message)
}

/// An unexpected failure: the detail goes to the server's log, the caller
/// gets AWS's words (never a path or an error of the host).
pub(crate) fn internal(e: impl std::fmt::Display) -> AwsError {
    crate::health::warn_limited("internal", format_args!("internal failure: {e}"));
    err(ErrorCode::InternalFailure, "Internal service failure.")
}

/// A quarantined shard's refusal: which records are damaged, never where on
/// disk (`sluice_log::Damage`).
pub(crate) fn quarantined(
    account: &str,
    stream: &str,
    shard: u32,
    damage: &sluice_log::Damage,
) -> AwsError {
    quarantined_range(
        account,
        stream,
        shard,
        damage.first_sequence(),
        damage.resume_sequence(),
    )
}

/// [`quarantined`] from the damaged range: its first sequence number, and
/// the first one after it, if known.
fn quarantined_range(
    account: &str,
    stream: &str,
    shard: u32,
    from: u128,
    until: Option<u128>,
) -> AwsError {
    let until = match until {
        Some(next) => format!(
            " up to (not including) {}",
            sluice_model::SequenceNumber(next)
        ),
        None => " to the end of a storage segment".to_owned(),
    };
    err(
        ErrorCode::InternalFailure,
        format!(
            "Shard {} in stream {stream} under account {account} is quarantined: its records from sequence number {}{until} are damaged on disk. Records before them can be read; the operator can run `sluice ctl repair` to skip the damaged records and keep the rest.",
            sluice_meta::shard_id(shard),
            sluice_model::SequenceNumber(from)
        ),
    )
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

pub(crate) fn not_found(state: &Ctx, name: &str) -> AwsError {
    err(
        ErrorCode::ResourceNotFoundException,
        format!("Stream {name} under account {} not found.", state.account),
    )
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
        let prefix = format!(
            "arn:aws:kinesis:{}:{}:stream/",
            state.config.region, state.account
        );
        let name = arn.strip_prefix(&prefix).ok_or_else(|| {
            err(
                ErrorCode::ResourceNotFoundException,
                format!("Stream {arn} not found."),
            )
        })?;
        if let Some(given) = input.name {
            if given != name {
                return Err(err(
                    ErrorCode::InvalidArgumentException,
                    "StreamARN and StreamName name different streams.",
                ));
            }
        }
        return Ok(name.to_owned());
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
        .stream(&state.account, name)
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
                state.account,
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
            starting_sequence_number: SequenceNumber(u128::from(shard.epoch) << 64).to_string(),
            ending_sequence_number: shard
                .closed
                .as_ref()
                .and_then(|c| c.ending_sequence)
                .map(|end| SequenceNumber(end).to_string()),
        },
    }
}

// ---- streams ----

/// StreamModeDetails and WarmThroughputMiBps, as CreateStream and
/// UpdateStreamMode take them: warm throughput only with ON_DEMAND.
fn mode_and_warm_throughput(
    details: Option<&k::StreamModeDetails>,
    warm: Option<i64>,
) -> Result<(StreamMode, Option<u32>), AwsError> {
    let mode = match details.map(|d| d.stream_mode) {
        Some(k::StreamMode::OnDemand) => StreamMode::OnDemand,
        _ => StreamMode::Provisioned,
    };
    let warm = warm.map(count_u32);
    if warm.is_some() && mode != StreamMode::OnDemand {
        return Err(err(
            ErrorCode::InvalidArgumentException,
            "WarmThroughputMiBps is only valid with StreamMode ON_DEMAND.",
        ));
    }
    Ok((mode, warm))
}

fn create_stream(state: &Ctx, input: k::CreateStreamInput) -> Result<(), AwsError> {
    let name = input.stream_name;
    let (mode, warm) = mode_and_warm_throughput(
        input.stream_mode_details.as_ref(),
        input.warm_throughput_mibps,
    )?;
    let shard_count = match (mode, input.shard_count) {
        // ON_DEMAND starts at 4 shards, or as many as the warm throughput needs.
        (StreamMode::OnDemand, _) => warm.map_or(4, |w| shards_for_mibps(w).max(4)),
        (StreamMode::Provisioned, Some(n)) => count_u32(n),
        (StreamMode::Provisioned, None) => {
            return Err(err(
                ErrorCode::InvalidArgumentException,
                "ShardCount is required for streams in PROVISIONED mode.",
            ))
        }
    };
    let tags: BTreeMap<String, String> = input.tags.unwrap_or_default();
    if tags.len() > sluice_meta::TAGS_PER_STREAM_MAX {
        return Err(meta_error(state, sluice_meta::MetaError::TooManyTags(name)));
    }
    let cmd = CreateStream {
        account: state.account.clone(),
        name: name.clone(),
        shard_count,
        mode,
        max_record_size_kib: input.max_record_size_in_kib.map_or(1024, count_u32),
        tags,
        creating_ms: state.config.stream_creating_ms,
    };
    let now = state.now_ms();
    state.sweep_deleted().map_err(internal)?;
    let mut catalog = state.catalog_mut();
    if mode == StreamMode::OnDemand {
        check_on_demand_limit(state, &catalog)?;
    }
    if state.config.enforce_limits {
        let creating = catalog
            .streams_of(&state.account)
            .filter(|s| s.status(now) == StreamStatus::Creating)
            .count();
        if creating >= crate::limits::STREAMS_CREATING_MAX {
            return Err(err(
                ErrorCode::LimitExceededException,
                format!(
                    "This request would exceed the limit of {} streams in the CREATING state at once for account {} in {}.",
                    crate::limits::STREAMS_CREATING_MAX,
                    state.account,
                    state.config.region
                ),
            ));
        }
    }
    let open = catalog.open_shard_count(&state.account) as u64;
    let limit = u64::from(state.config.shard_limit);
    if open + u64::from(shard_count) > limit {
        return Err(err(
            ErrorCode::LimitExceededException,
            format!(
                "This request would exceed the shard limit for the account {} in {}. Current shard count for the account: {open}. Limit: {limit}. Number of additional shards that would have resulted from this request: {shard_count}.",
                state.account, state.config.region
            ),
        ));
    }
    let mut next = catalog.clone();
    let stream = next.create_stream(cmd, now).map_err(|_| {
        err(
            ErrorCode::ResourceInUseException,
            format!(
                "Stream {name} under account {} already exists.",
                state.account
            ),
        )
    })?;
    // Shard logs first, then the catalog: a crash in between leaves orphan logs,
    // which the next start deletes, never a catalog naming missing logs.
    let shards: Vec<(u64, u64)> = stream.shards.iter().map(|s| (s.log_id, s.epoch)).collect();
    if let Ok(stream) = next.stream_mut(&state.account, &name) {
        stream.warm_throughput_mibps = warm;
    }
    let created = shards.iter().try_for_each(|&(log_id, epoch)| {
        state
            .log()
            .create_shard(sluice_log::ShardLogId(log_id), epoch)
            .map(drop)
            .map_err(internal)
    });
    let cleanup = || {
        // Leave nothing behind, so that the ids can be handed out again.
        for &(log_id, _) in &shards {
            let _ = state.log().delete_shard(sluice_log::ShardLogId(log_id));
        }
    };
    if let Err(e) = created {
        cleanup();
        return Err(e);
    }
    if let Err(e) = state.commit(&mut catalog, next) {
        // A failure after the rename leaves the stream in the catalog: keep its logs.
        if catalog.stream(&state.account, &name).is_none() {
            cleanup();
        }
        return Err(internal(e));
    }
    Ok(())
}

fn delete_stream(state: &Ctx, input: k::DeleteStreamInput) -> Result<(), AwsError> {
    let name = stream_name(state, StreamRef::new(&input.stream_name, &input.stream_arn))?;
    let enforce = input.enforce_consumer_deletion.unwrap_or(false);
    let now = state.now_ms();
    let deleting_ms = state.config.stream_deleting_ms;
    // The consumer check and the deletion under one lock: a consumer
    // registered in between cannot be deleted without EnforceConsumerDeletion.
    let (consumer_arns, deleted) = {
        let mut catalog = state.catalog_mut();
        let stream = catalog
            .stream(&state.account, &name)
            .filter(|s| !s.is_gone(now))
            .ok_or_else(|| not_found(state, &name))?;
        if !enforce && stream.live_consumers(now).next().is_some() {
            return Err(err(
                ErrorCode::ResourceInUseException,
                format!(
                    "Stream {name} under account {} has registered consumers. Deregister them first, or set EnforceConsumerDeletion.",
                    state.account
                ),
            ));
        }
        let arns: Vec<String> = stream
            .live_consumers(now)
            .map(|c| consumers::consumer_arn(state, &name, c))
            .collect();
        let mut next = catalog.clone();
        let deleted = if deleting_ms > 0 {
            // DELETING first; the periodic sweep removes it and its data afterwards.
            next.start_delete(&state.account, &name, now, deleting_ms)
                .map_err(|_| not_found(state, &name))?;
            None
        } else {
            let stream = next
                .delete_stream(&state.account, &name)
                .map_err(|_| not_found(state, &name))?;
            next.remove_policies_of(&state.arn(&name));
            Some(stream)
        };
        state.commit_freeing(&mut catalog, next).map_err(internal)?;
        (arns, deleted)
    };
    for arn in &consumer_arns {
        state.subscriptions.stop_consumer(arn);
    }
    for shard in deleted.iter().flat_map(|s| &s.shards) {
        state
            .log()
            .delete_shard(sluice_log::ShardLogId(shard.log_id))
            .map_err(internal)?;
    }
    if deleted.is_some() {
        state.ensure_reserve();
    }
    Ok(())
}

/// The shard-level metrics a stream has on, as AWS lists them.
fn metrics_of<'a>(names: impl IntoIterator<Item = &'a String>) -> Vec<k::MetricsName> {
    names
        .into_iter()
        .filter_map(|n| k::MetricsName::parse(n))
        .collect()
}

fn enhanced_monitoring(stream: &Stream) -> Vec<k::EnhancedMetrics> {
    vec![k::EnhancedMetrics {
        shard_level_metrics: Some(metrics_of(&stream.shard_level_metrics)),
    }]
}

fn retention_hours(stream: &Stream) -> i64 {
    i64::from(stream.retention_period_hours)
}

fn int(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(crate) fn encryption_type(stream: &Stream) -> k::EncryptionType {
    if stream.encryption_key_id.is_some() {
        k::EncryptionType::Kms
    } else {
        k::EncryptionType::None
    }
}

/// Record flag bit: the record was written while encryption was on.
const FLAG_ENCRYPTED: u8 = 1;

fn record_flags(stream: &Stream) -> u8 {
    if stream.encryption_key_id.is_some() {
        FLAG_ENCRYPTED
    } else {
        0
    }
}

fn describe_stream_summary(
    state: &Ctx,
    input: k::DescribeStreamSummaryInput,
) -> Result<k::DescribeStreamSummaryOutput, AwsError> {
    let named = StreamRef::new(&input.stream_name, &input.stream_arn);
    with_stream(state, named, |stream| {
        Ok(k::DescribeStreamSummaryOutput {
            stream_description_summary: k::StreamDescriptionSummary {
                stream_name: stream.name.clone(),
                stream_arn: state.arn(&stream.name),
                stream_id: None,
                stream_status: stream_status(stream.status(state.now_ms())),
                stream_mode_details: mode_details(stream.mode),
                retention_period_hours: retention_hours(stream),
                stream_creation_timestamp: seconds(stream.created_ms),
                enhanced_monitoring: enhanced_monitoring(stream),
                encryption_type: Some(encryption_type(stream)),
                key_id: stream.encryption_key_id.clone(),
                open_shard_count: int(stream.open_shards().count()),
                consumer_count: Some(int(stream.live_consumers(state.now_ms()).count())),
                warm_throughput: warm_throughput(stream),
                max_record_size_in_kib: Some(i64::from(stream.max_record_size_kib)),
            },
        })
    })
}

fn describe_stream(
    state: &Ctx,
    input: k::DescribeStreamInput,
) -> Result<k::DescribeStreamOutput, AwsError> {
    let limit = count(input.limit, 100);
    let after = exclusive_start_shard(input.exclusive_start_shard_id.as_deref())?;
    let named = StreamRef::new(&input.stream_name, &input.stream_arn);
    with_stream(state, named, |stream| {
        let shards: Vec<&Shard> = stream
            .shards
            .iter()
            .filter(|s| after.is_none_or(|a| s.index > a))
            .collect();
        Ok(k::DescribeStreamOutput {
            stream_description: k::StreamDescription {
                stream_name: stream.name.clone(),
                stream_arn: state.arn(&stream.name),
                stream_status: stream_status(stream.status(state.now_ms())),
                stream_mode_details: mode_details(stream.mode),
                shards: shards.iter().take(limit).map(|s| shard_out(s)).collect(),
                has_more_shards: shards.len() > limit,
                retention_period_hours: retention_hours(stream),
                stream_creation_timestamp: seconds(stream.created_ms),
                enhanced_monitoring: enhanced_monitoring(stream),
                encryption_type: Some(encryption_type(stream)),
                key_id: stream.encryption_key_id.clone(),
            },
        })
    })
}

fn list_streams(state: &Ctx, input: k::ListStreamsInput) -> Result<k::ListStreamsOutput, AwsError> {
    let limit = count(input.limit, 100);
    let token_start = input
        .next_token
        .as_deref()
        .map(|t| decode_token(state, t))
        .transpose()?;
    let start = token_start.or(input.exclusive_start_stream_name);
    let catalog = state.catalog();
    let names: Vec<&str> = catalog
        .streams_of(&state.account)
        .filter(|s| !s.is_gone(state.now_ms()))
        .map(|s| s.name.as_str())
        .filter(|n| start.as_deref().is_none_or(|s| *n > s))
        .collect();
    let page = &names[..names.len().min(limit)];
    let summaries = page
        .iter()
        .filter_map(|n| catalog.stream(&state.account, n))
        .map(|s| k::StreamSummary {
            stream_name: s.name.clone(),
            stream_arn: state.arn(&s.name),
            stream_status: stream_status(s.status(state.now_ms())),
            stream_mode_details: mode_details(s.mode),
            stream_creation_timestamp: Some(seconds(s.created_ms)),
        })
        .collect();
    let more = names.len() > page.len();
    Ok(k::ListStreamsOutput {
        stream_names: page.iter().map(|n| (*n).to_owned()).collect(),
        has_more_streams: more,
        next_token: page
            .last()
            .filter(|_| more)
            .map(|last| encode_token(state, last)),
        stream_summaries: Some(summaries),
    })
}

fn exclusive_start_shard(id: Option<&str>) -> Result<Option<u32>, AwsError> {
    match id {
        None => Ok(None),
        Some(id) => parse_shard_id(id).map(Some).ok_or_else(|| {
            err(
                ErrorCode::InvalidArgumentException,
                format!("Invalid ExclusiveStartShardId: {id}"),
            )
        }),
    }
}

/// AWS: a ListShards NextToken is good for 300 seconds (Sluice applies the
/// same to ListStreams' tokens).
const NEXT_TOKEN_LIFETIME_MS: u64 = 300_000;

/// A paging token: when it was issued, and where the next page starts.
pub(crate) fn encode_token(state: &Ctx, text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{}|{text}", state.now_ms()))
}

pub(crate) fn decode_token(state: &Ctx, token: &str) -> Result<String, AwsError> {
    let invalid = || err(ErrorCode::InvalidArgumentException, "Invalid NextToken.");
    let text = base64::engine::general_purpose::STANDARD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(invalid)?;
    let (issued, rest) = text.split_once('|').ok_or_else(invalid)?;
    let issued: u64 = issued.parse().map_err(|_| invalid())?;
    if state.now_ms().saturating_sub(issued) > NEXT_TOKEN_LIFETIME_MS {
        return Err(err(
            ErrorCode::ExpiredNextTokenException,
            format!(
                "The NextToken has expired: it is valid for {} seconds.",
                NEXT_TOKEN_LIFETIME_MS / 1000
            ),
        ));
    }
    Ok(rest.to_owned())
}

/// ListShards' ShardFilter, checked against its required members.
enum ShardFilter {
    All,
    AfterShardId(u32),
    AtLatest,
    AtTrimHorizon,
    FromTrimHorizon,
    AtTimestamp(u64),
    FromTimestamp(u64),
}

fn shard_filter(filter: Option<&k::ShardFilter>) -> Result<ShardFilter, AwsError> {
    use k::ShardFilterType as T;
    let Some(filter) = filter else {
        return Ok(ShardFilter::All);
    };
    let kind = filter.r#type;
    let timestamp = || {
        filter.timestamp.map(Timestamp::as_millis).ok_or_else(|| {
            err(
                ErrorCode::InvalidArgumentException,
                format!("Timestamp must be provided for ShardFilter type {kind}."),
            )
        })
    };
    let no_timestamp = || {
        if filter.timestamp.is_some() {
            return Err(err(
                ErrorCode::InvalidArgumentException,
                format!("Timestamp must not be provided for ShardFilter type {kind}."),
            ));
        }
        Ok(())
    };
    let no_shard_id = || {
        if filter.shard_id.is_some() {
            return Err(err(
                ErrorCode::InvalidArgumentException,
                format!("ShardId must not be provided for ShardFilter type {kind}."),
            ));
        }
        Ok(())
    };
    Ok(match kind {
        T::AfterShardId => {
            no_timestamp()?;
            let id = filter.shard_id.as_deref().ok_or_else(|| {
                err(
                    ErrorCode::InvalidArgumentException,
                    "ShardId must be provided for ShardFilter type AFTER_SHARD_ID.",
                )
            })?;
            ShardFilter::AfterShardId(parse_shard_id(id).ok_or_else(|| {
                err(
                    ErrorCode::InvalidArgumentException,
                    format!("Invalid ShardId in ShardFilter: {id}"),
                )
            })?)
        }
        T::AtTimestamp | T::FromTimestamp => {
            no_shard_id()?;
            let ts = timestamp()?;
            if kind == T::AtTimestamp {
                ShardFilter::AtTimestamp(ts)
            } else {
                ShardFilter::FromTimestamp(ts)
            }
        }
        T::AtLatest | T::AtTrimHorizon | T::FromTrimHorizon => {
            no_shard_id()?;
            no_timestamp()?;
            match kind {
                T::AtLatest => ShardFilter::AtLatest,
                T::AtTrimHorizon => ShardFilter::AtTrimHorizon,
                _ => ShardFilter::FromTrimHorizon,
            }
        }
    })
}

impl ShardFilter {
    /// Whether the filter keeps `shard`; `horizon_ms` is the stream's trim
    /// horizon (records older have expired). A shard is open from its
    /// creation (a stream's first shards: from always) until it closed.
    fn keeps(&self, shard: &Shard, horizon_ms: u64) -> bool {
        let open_after = |t: u64| shard.closed.as_ref().is_none_or(|c| c.at_ms > t);
        let open_at = |t: u64| (shard.parent.is_none() || shard.created_ms <= t) && open_after(t);
        match self {
            ShardFilter::All => true,
            ShardFilter::AfterShardId(after) => shard.index > *after,
            ShardFilter::AtLatest => shard.is_open(),
            ShardFilter::AtTrimHorizon => open_at(horizon_ms),
            ShardFilter::FromTrimHorizon => open_after(horizon_ms),
            ShardFilter::AtTimestamp(ts) => open_at(*ts),
            ShardFilter::FromTimestamp(ts) => open_after(*ts),
        }
    }
}

fn list_shards(state: &Ctx, input: k::ListShardsInput) -> Result<k::ListShardsOutput, AwsError> {
    // AWS: "If you specify a value greater than 1000, at most 1000 results are returned."
    let limit = count(input.max_results, 1000).min(1000);
    // The token carries the stream (name and creation time), the last shard
    // index returned, and the first page's ShardFilter: later pages may not
    // repeat the filter, and must keep applying it.
    let (name, created, after, filter) = match input.next_token.as_deref() {
        Some(token) => {
            let together =
                |message: &'static str| Err(err(ErrorCode::InvalidArgumentException, message));
            if input.stream_name.is_some() {
                return together("NextToken and StreamName cannot be provided together.");
            }
            if input.stream_arn.is_some() {
                return together("NextToken and StreamARN cannot be provided together.");
            }
            if input.shard_filter.is_some() {
                return together("NextToken and ShardFilter cannot be provided together.");
            }
            if input.exclusive_start_shard_id.is_some() {
                return together(
                    "NextToken and ExclusiveStartShardId cannot be provided together.",
                );
            }
            let text = decode_token(state, token)?;
            let invalid = || err(ErrorCode::InvalidArgumentException, "Invalid NextToken.");
            let mut parts = text.splitn(4, '|');
            let (Some(name), Some(created), Some(index), Some(filter)) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(invalid());
            };
            let created: u64 = created.parse().map_err(|_| invalid())?;
            let index: u32 = index.parse().map_err(|_| invalid())?;
            let filter: Option<k::ShardFilter> =
                serde_json::from_str(filter).map_err(|_| invalid())?;
            (name.to_owned(), Some(created), Some(index), filter)
        }
        None => (
            stream_name(state, StreamRef::new(&input.stream_name, &input.stream_arn))?,
            None,
            exclusive_start_shard(input.exclusive_start_shard_id.as_deref())?,
            input.shard_filter,
        ),
    };
    let filter_json = serde_json::to_string(&filter).expect("a filter serializes");
    let filter = shard_filter(filter.as_ref())?;
    let catalog = state.catalog();
    let now = state.now_ms();
    let stream = catalog
        .stream(&state.account, &name)
        .filter(|s| !s.is_gone(now))
        .ok_or_else(|| not_found(state, &name))?;
    if created.is_some_and(|c| c != stream.created_ms) {
        // The stream the token was issued for is gone.
        return Err(not_found(state, &name));
    }
    // AWS lists the shards of ACTIVE and UPDATING streams only.
    let status = stream.status(now);
    if matches!(status, StreamStatus::Creating | StreamStatus::Deleting) {
        return Err(err(
            ErrorCode::ResourceInUseException,
            format!(
                "Stream {name} under account {} not ACTIVE or UPDATING, instead in state {}",
                state.account,
                status_name(status)
            ),
        ));
    }
    let shards: Vec<&Shard> = stream
        .shards
        .iter()
        .filter(|s| {
            after.is_none_or(|a| s.index > a) && filter.keeps(s, stream.retention_cutoff_ms(now))
        })
        .collect();
    let page: Vec<&Shard> = shards.iter().take(limit).copied().collect();
    let next_token = page
        .last()
        .filter(|_| shards.len() > page.len())
        .map(|last| {
            encode_token(
                state,
                &format!("{name}|{}|{}|{filter_json}", stream.created_ms, last.index),
            )
        });
    Ok(k::ListShardsOutput {
        shards: Some(page.iter().map(|s| shard_out(s)).collect()),
        next_token,
    })
}

// ---- records: PutRecord and PutRecords are in put.rs, the reads in read.rs ----

// ---- resharding ----

fn shard_not_found(state: &Ctx, stream: &str, shard: &str) -> AwsError {
    err(
        ErrorCode::ResourceNotFoundException,
        format!(
            "Could not find shard {shard} in stream {stream} under account {}.",
            state.account
        ),
    )
}

fn reshard_error(state: &Ctx, e: sluice_meta::MetaError) -> AwsError {
    use sluice_meta::MetaError;
    match e {
        MetaError::StreamNotFound(name) => not_found(state, &name),
        MetaError::ShardNotFound(stream, shard) => shard_not_found(state, &stream, &shard),
        MetaError::ShardClosed(stream, shard) => err(
            ErrorCode::InvalidArgumentException,
            format!(
                "Shard {shard} in stream {stream} under account {} has already been merged or split, and thus is not eligible for merging or splitting.",
                state.account
            ),
        ),
        MetaError::NotAdjacent(stream, a, b) => err(
            ErrorCode::InvalidArgumentException,
            format!(
                "Shards {a} and {b} in stream {stream} under account {} are not an adjacent pair of shards eligible for merging",
                state.account
            ),
        ),
        other => err(ErrorCode::InvalidArgumentException, other.to_string()),
    }
}

/// Runs a split or merge: checks the stream and the shard limit, creates the
/// children's logs, commits the catalog (children open, parents closed),
/// then closes the parents' logs and records their ending sequence numbers.
/// Appends that race the close fail on the closed log and are routed again
/// to the children. A crash before the last step is finished at the next start.
fn reshard(
    state: &Ctx,
    name: &str,
    added_open_shards: u64,
    require_active: bool,
    change: impl FnOnce(&mut sluice_meta::Catalog, u64, u64) -> Result<sluice_meta::Reshard, AwsError>,
) -> Result<(), AwsError> {
    let now = state.now_ms();
    let reshard = {
        let mut catalog = state.catalog_mut();
        let stream = catalog
            .stream(&state.account, name)
            .filter(|s| !s.is_gone(now))
            .ok_or_else(|| not_found(state, name))?;
        if require_active {
            check_active(state, stream)?;
        }
        let open = catalog.open_shard_count(&state.account) as u64;
        let limit = u64::from(state.config.shard_limit);
        if open + added_open_shards > limit {
            return Err(err(
                ErrorCode::LimitExceededException,
                format!(
                    "This request would exceed the shard limit for the account {} in {}. Current shard count for the account: {open}. Limit: {limit}. Number of additional shards that would have resulted from this request: {added_open_shards}.",
                    state.account, state.config.region
                ),
            ));
        }
        let mut next = catalog.clone();
        let reshard = change(&mut next, now, state.config.stream_updating_ms)?;
        let cleanup = |upto: usize| {
            for &(log_id, _) in &reshard.created[..upto] {
                let _ = state.log().delete_shard(sluice_log::ShardLogId(log_id));
            }
        };
        for (n, &(log_id, epoch)) in reshard.created.iter().enumerate() {
            if let Err(e) = state
                .log()
                .create_shard(sluice_log::ShardLogId(log_id), epoch)
            {
                cleanup(n);
                return Err(internal(e));
            }
        }
        let first_child = reshard.created.first().map(|c| c.0);
        if let Err(e) = state.commit(&mut catalog, next) {
            let committed = first_child.is_none_or(|id| {
                catalog
                    .streams()
                    .any(|s| s.shards.iter().any(|sh| sh.log_id == id))
            });
            if !committed {
                cleanup(reshard.created.len());
            }
            return Err(internal(e));
        }
        reshard
    };
    state
        .finish_closes(&state.account, name, &reshard.closed)
        .map_err(internal)
}

/// Closes the on-demand measuring window if it is over and carries out what
/// the scaling policy (`sluice_meta::scaling`) asks for. Returns what it did,
/// one line per split or merge. Run every few hundred milliseconds by the
/// server, and by tests after they move the clock.
pub fn autoscale(state: &Engine) -> Vec<String> {
    use sluice_meta::scaling::Action;
    let mut scalers = state.autoscaler.scalers();
    let now = state.now_ms();
    let Some((elapsed, loads)) = state.autoscaler.close_window(now) else {
        return Vec::new();
    };
    let decisions: Vec<(String, String, u64, Vec<Action>)> = {
        let catalog = state.catalog();
        scalers.retain(|key, _| {
            key.split_once('/')
                .is_some_and(|(a, n)| catalog.stream(a, n).is_some())
        });
        catalog
            .streams()
            .filter(|s| s.mode == StreamMode::OnDemand)
            .filter(|s| matches!(s.status(now), StreamStatus::Active | StreamStatus::Updating))
            .filter_map(|s| {
                let scaler = scalers
                    .entry(format!("{}/{}", s.account, s.name))
                    .or_default();
                let actions = scaler.window(s, &loads, elapsed, now);
                (!actions.is_empty())
                    .then(|| (s.account.clone(), s.name.clone(), s.created_ms, actions))
            })
            .collect()
    };
    let mut done = Vec::new();
    for (account, name, created_ms, actions) in decisions {
        let ctx = Ctx { state, account };
        let splits = actions
            .iter()
            .filter(|a| matches!(a, Action::Split { .. }))
            .count() as u64;
        let mut applied = Vec::new();
        // One commit for the stream's whole window. Checked again under the
        // catalog lock: the stream may have been deleted, re-created or
        // switched to PROVISIONED since the decision, and a user's split or
        // merge may have closed a shard (that action is skipped). Splits count
        // against the account's shard limit like SplitShard's; a refused
        // window is tried again at the next one if still needed.
        let outcome = reshard(&ctx, &name, splits, false, |catalog, now, _| {
            let current = catalog
                .stream(&ctx.account, &name)
                .filter(|s| s.created_ms == created_ms && s.mode == StreamMode::OnDemand)
                .filter(|s| matches!(s.status(now), StreamStatus::Active | StreamStatus::Updating));
            if current.is_none() {
                return Err(not_found(&ctx, &name));
            }
            let mut all = sluice_meta::Reshard {
                closed: Vec::new(),
                created: Vec::new(),
            };
            for action in &actions {
                let (result, line) = match *action {
                    Action::Split {
                        index,
                        new_starting_hash_key,
                    } => (
                        catalog.split_shard(
                            &ctx.account,
                            &name,
                            index,
                            new_starting_hash_key,
                            now,
                            0,
                        ),
                        format!(
                            "split {} of {}/{name}",
                            sluice_meta::shard_id(index),
                            ctx.account
                        ),
                    ),
                    Action::Merge { index, adjacent } => (
                        catalog.merge_shards(&ctx.account, &name, index, adjacent, now, 0),
                        format!(
                            "merged {} and {} of {}/{name}",
                            sluice_meta::shard_id(index),
                            sluice_meta::shard_id(adjacent),
                            ctx.account
                        ),
                    ),
                };
                if let Ok(r) = result {
                    all.closed.extend(r.closed);
                    all.created.extend(r.created);
                    applied.push(line);
                }
            }
            if applied.is_empty() {
                return Err(internal("nothing to change"));
            }
            Ok(all)
        });
        match outcome {
            Ok(_) => done.append(&mut applied),
            Err(e) if e.code != ErrorCode::InternalFailure => tracing::info!(
                "on-demand scaling of stream {name} under account {} was refused (tried again next window): {}",
                ctx.account,
                e.message
            ),
            Err(_) => {}
        }
    }
    done
}

fn split_shard(state: &Ctx, input: k::SplitShardInput) -> Result<(), AwsError> {
    let name = stream_name(state, StreamRef::new(&input.stream_name, &input.stream_arn))?;
    let shard_text = input.shard_to_split.as_str();
    let key_text = input.new_starting_hash_key.as_str();
    let index =
        parse_shard_id(shard_text).ok_or_else(|| shard_not_found(state, &name, shard_text))?;
    let new_start: u128 = key_text.parse().map_err(|_| {
        err(
            ErrorCode::InvalidArgumentException,
            format!("NewStartingHashKey {key_text} must be in the range: [0, 2^128-1]"),
        )
    })?;
    reshard(state, &name, 1, true, |catalog, now, updating_ms| {
        catalog
            .split_shard(&state.account, &name, index, new_start, now, updating_ms)
            .map_err(|e| match e {
                sluice_meta::MetaError::SplitKeyOutside(..) => {
                    let shard = catalog
                        .stream(&state.account, &name)
                        .and_then(|s| s.shard(index))
                        .map(|s| (s.starting_hash_key, s.ending_hash_key))
                        .unwrap_or_default();
                    err(
                        ErrorCode::InvalidArgumentException,
                        format!(
                            "NewStartingHashKey {new_start} used in SplitShard() on shard {} in stream {name} under account {} is not both greater than one plus the shard's StartingHashKey {} and less than the shard's EndingHashKey {}.",
                            sluice_meta::shard_id(index),
                            state.account,
                            shard.0,
                            shard.1
                        ),
                    )
                }
                other => reshard_error(state, other),
            })
    })
}

fn merge_shards(state: &Ctx, input: k::MergeShardsInput) -> Result<(), AwsError> {
    let name = stream_name(state, StreamRef::new(&input.stream_name, &input.stream_arn))?;
    let first_text = input.shard_to_merge.as_str();
    let second_text = input.adjacent_shard_to_merge.as_str();
    let first =
        parse_shard_id(first_text).ok_or_else(|| shard_not_found(state, &name, first_text))?;
    let second =
        parse_shard_id(second_text).ok_or_else(|| shard_not_found(state, &name, second_text))?;
    if first == second {
        return Err(err(
            ErrorCode::InvalidArgumentException,
            format!(
                "Shards {first_text} and {second_text} in stream {name} under account {} are not an adjacent pair of shards eligible for merging",
                state.account
            ),
        ));
    }
    reshard(state, &name, 0, true, |catalog, now, updating_ms| {
        catalog
            .merge_shards(&state.account, &name, first, second, now, updating_ms)
            .map_err(|e| reshard_error(state, e))
    })
}

/// AWS: UpdateShardCount goes from half to double the open shard count.
fn scaling_bounds(open: u32, target: u32) -> Result<(), AwsError> {
    if u64::from(target) > 2 * u64::from(open) {
        return Err(err(
            ErrorCode::LimitExceededException,
            format!("UpdateShardCount cannot scale up over double your current open shard count. Current open shard count: {open} Target shard count: {target}"),
        ));
    }
    if target < open.div_ceil(2) {
        return Err(err(
            ErrorCode::LimitExceededException,
            format!("UpdateShardCount cannot scale down below half your current open shard count. Current open shard count: {open} Target shard count: {target}"),
        ));
    }
    Ok(())
}

fn update_shard_count(
    state: &Ctx,
    input: k::UpdateShardCountInput,
) -> Result<k::UpdateShardCountOutput, AwsError> {
    let name = stream_name(state, StreamRef::new(&input.stream_name, &input.stream_arn))?;
    let target = count_u32(input.target_shard_count);
    let (open, mode) = with_named_stream(state, &name, |stream| {
        Ok((stream.open_shards().count() as u32, stream.mode))
    })?;
    if mode == StreamMode::OnDemand {
        return Err(err(
            ErrorCode::InvalidArgumentException,
            format!(
                "UpdateShardCount is not supported for stream {name} under account {} in ON_DEMAND mode.",
                state.account
            ),
        ));
    }
    scaling_bounds(open, target)?;
    if target != open {
        let added = u64::from(target.saturating_sub(open));
        reshard(state, &name, added, true, |catalog, now, updating_ms| {
            // Checked again under the catalog lock: another reshard may have
            // changed the open count since.
            let open_now = catalog
                .stream(&state.account, &name)
                .map_or(0, |s| s.open_shards().count() as u32);
            scaling_bounds(open_now, target)?;
            let stream = catalog
                .stream_mut(&state.account, &name)
                .map_err(|e| reshard_error(state, e))?;
            if state.config.enforce_limits
                && sluice_meta::within_a_day(&mut stream.scalings_ms, now)
                    >= sluice_meta::SCALINGS_PER_DAY
            {
                return Err(err(
                    ErrorCode::LimitExceededException,
                    format!(
                        "UpdateShardCount can scale stream {name} under account {} at most {} times per rolling 24-hour period.",
                        state.account,
                        sluice_meta::SCALINGS_PER_DAY
                    ),
                ));
            }
            stream.scalings_ms.push(now);
            catalog
                .update_shard_count(&state.account, &name, target, now, updating_ms)
                .map_err(|e| reshard_error(state, e))
        })?;
    }
    Ok(k::UpdateShardCountOutput {
        stream_arn: Some(state.arn(&name)),
        stream_name: Some(name),
        current_shard_count: Some(i64::from(open)),
        target_shard_count: Some(input.target_shard_count),
    })
}

/// AWS: an account has at most 50 ON_DEMAND streams (DescribeLimits reports it).
fn check_on_demand_limit(state: &Ctx, catalog: &sluice_meta::Catalog) -> Result<(), AwsError> {
    let now = state.now_ms();
    let count = catalog
        .streams_of(&state.account)
        .filter(|s| s.mode == StreamMode::OnDemand && !s.is_gone(now))
        .count() as u64;
    let limit = u64::from(state.config.on_demand_stream_limit);
    if count >= limit {
        return Err(err(
            ErrorCode::LimitExceededException,
            format!(
                "This request would exceed the on-demand stream limit for the account {} in {}. Current on-demand stream count: {count}. Limit: {limit}.",
                state.account, state.config.region
            ),
        ));
    }
    Ok(())
}

/// Open shards an ON_DEMAND stream needs for a warm throughput (AWS: a shard
/// takes 1 MiB/s of writes).
fn shards_for_mibps(mibps: u32) -> u32 {
    mibps.max(1)
}

/// Splits an ON_DEMAND stream up to the shards its warm throughput needs
/// (`require_active`: false when it follows a mode change of our own).
fn prewarm(state: &Ctx, name: &str, mibps: u32, require_active: bool) -> Result<(), AwsError> {
    let needed = shards_for_mibps(mibps);
    let open = with_named_stream(state, name, |s| Ok(s.open_shards().count() as u32))?;
    if needed > open {
        reshard(
            state,
            name,
            u64::from(needed - open),
            require_active,
            |catalog, now, updating_ms| {
                catalog
                    .update_shard_count(&state.account, name, needed, now, updating_ms)
                    .map_err(|e| reshard_error(state, e))
            },
        )?;
    }
    Ok(())
}

fn warm_throughput(stream: &Stream) -> Option<k::WarmThroughputObject> {
    stream
        .warm_throughput_mibps
        .map(|target| k::WarmThroughputObject {
            target_mibps: Some(i64::from(target)),
            current_mibps: Some(int(stream.open_shards().count())),
        })
}

fn update_stream_mode(state: &Ctx, input: k::UpdateStreamModeInput) -> Result<(), AwsError> {
    let name = stream_name(state, StreamRef::arn(&input.stream_arn))?;
    let (mode, warm) = mode_and_warm_throughput(
        Some(&input.stream_mode_details),
        input.warm_throughput_mibps,
    )?;
    let (now, updating_ms) = (state.now_ms(), state.config.stream_updating_ms);
    {
        let mut catalog = state.catalog_mut();
        let stream = catalog
            .stream(&state.account, &name)
            .filter(|s| !s.is_gone(now))
            .ok_or_else(|| not_found(state, &name))?;
        check_active(state, stream)?;
        if stream.mode == mode && warm.is_none() {
            return Ok(());
        }
        if mode == StreamMode::OnDemand && stream.mode != StreamMode::OnDemand {
            check_on_demand_limit(state, &catalog)?;
        }
        let switch = stream.mode != mode;
        let mut next = catalog.clone();
        let stream = next
            .stream_mut(&state.account, &name)
            .map_err(|e| meta_error(state, e))?;
        if switch {
            if state.config.enforce_limits
                && sluice_meta::within_a_day(&mut stream.mode_switches_ms, now)
                    >= sluice_meta::MODE_SWITCHES_PER_DAY
            {
                return Err(err(
                    ErrorCode::LimitExceededException,
                    format!(
                        "The stream mode of stream {name} under account {} can be updated at most {} times per rolling 24-hour period.",
                        state.account,
                        sluice_meta::MODE_SWITCHES_PER_DAY
                    ),
                ));
            }
            stream.mode_switches_ms.push(now);
        }
        stream.mode = mode;
        stream.warm_throughput_mibps = if mode == StreamMode::OnDemand {
            warm
        } else {
            None
        };
        stream.start_update(now, updating_ms);
        state.commit(&mut catalog, next).map_err(internal)?;
    }
    if let Some(mibps) = warm {
        // The stream is UPDATING for the mode change: pre-split regardless.
        prewarm(state, &name, mibps, false)?;
    }
    Ok(())
}

fn update_warm_throughput(
    state: &Ctx,
    input: k::UpdateStreamWarmThroughputInput,
) -> Result<k::UpdateStreamWarmThroughputOutput, AwsError> {
    let name = stream_name(state, StreamRef::new(&input.stream_name, &input.stream_arn))?;
    let mibps = count_u32(input.warm_throughput_mibps);
    let check = |s: &Stream| {
        check_active(state, s)?;
        if s.mode != StreamMode::OnDemand {
            return Err(err(
                ErrorCode::InvalidArgumentException,
                format!(
                    "Warm throughput is only supported for streams in ON_DEMAND mode; stream {name} under account {} is PROVISIONED.",
                    state.account
                ),
            ));
        }
        Ok(())
    };
    with_named_stream(state, &name, |s| check(s))?;
    // Again on the catalog being changed: a mode switch may have committed
    // since.
    mutate_stream(state, &name, |s| {
        check(s)?;
        s.warm_throughput_mibps = Some(mibps);
        Ok(())
    })?;
    prewarm(state, &name, mibps, true)?;
    with_named_stream(state, &name, |s| {
        Ok(k::UpdateStreamWarmThroughputOutput {
            stream_arn: Some(state.arn(&name)),
            stream_name: Some(name.clone()),
            warm_throughput: warm_throughput(s),
        })
    })
}

// ---- stream settings, tags, policies, account ----

fn meta_error(state: &Ctx, e: sluice_meta::MetaError) -> AwsError {
    match e {
        sluice_meta::MetaError::StreamNotFound(name) => not_found(state, &name),
        other => err(ErrorCode::InvalidArgumentException, other.to_string()),
    }
}

/// Changes one stream and persists the catalog, all or nothing.
fn mutate_stream<T>(
    state: &Ctx,
    name: &str,
    f: impl FnOnce(&mut Stream) -> Result<T, AwsError>,
) -> Result<T, AwsError> {
    let mut catalog = state.catalog_mut();
    let mut next = catalog.clone();
    let stream = next
        .stream_mut(&state.account, name)
        .map_err(|e| meta_error(state, e))?;
    check_not_deleting(state, stream)?;
    let out = f(stream)?;
    state.commit(&mut catalog, next).map_err(internal)?;
    Ok(out)
}

/// Changes the catalog outside any one stream and persists it, all or nothing.
fn mutate_catalog<T>(
    state: &Ctx,
    f: impl FnOnce(&mut sluice_meta::Catalog) -> T,
) -> Result<T, AwsError> {
    let mut catalog = state.catalog_mut();
    let mut next = catalog.clone();
    let out = f(&mut next);
    state.commit(&mut catalog, next).map_err(internal)?;
    Ok(out)
}

/// What a `ResourceARN` names: a stream, or a registered consumer.
enum Resource {
    Stream(String),
    /// Stream and consumer names.
    Consumer(String, String),
}

fn resource(state: &Ctx, arn: &str) -> Result<Resource, AwsError> {
    let prefix = format!(
        "arn:aws:kinesis:{}:{}:stream/",
        state.config.region, state.account
    );
    let now = state.now_ms();
    let found = match arn.strip_prefix(&prefix) {
        Some(name) if !name.contains('/') => state
            .catalog()
            .stream(&state.account, name)
            .filter(|s| !s.is_gone(now))
            .map(|_| Resource::Stream(name.to_owned())),
        Some(_) => consumers::existing(state, arn).map(|(s, c)| Resource::Consumer(s, c)),
        None => None,
    };
    found.ok_or_else(|| {
        err(
            ErrorCode::ResourceNotFoundException,
            format!("Resource {arn} not found."),
        )
    })
}

fn set_retention(
    state: &Ctx,
    named: StreamRef<'_>,
    hours: i64,
    increase: bool,
) -> Result<(), AwsError> {
    let name = stream_name(state, named)?;
    let hours = count_u32(hours);
    mutate_stream(state, &name, |stream| {
        check_active(state, stream)?;
        stream
            .set_retention(hours, increase)
            .map_err(|e| meta_error(state, e))
    })?;
    if !increase {
        state.apply_retention().map_err(internal)?;
    }
    Ok(())
}

fn add_tags(state: &Ctx, tags: &BTreeMap<String, String>, name: String) -> Result<(), AwsError> {
    mutate_stream(state, &name, |stream| {
        stream.add_tags(tags).map_err(|e| meta_error(state, e))
    })
}

fn remove_tags(state: &Ctx, keys: &[String], name: String) -> Result<(), AwsError> {
    mutate_stream(state, &name, |stream| {
        stream.remove_tags(keys);
        Ok(())
    })
}

pub(crate) fn tag_list<'a>(tags: impl Iterator<Item = (&'a String, &'a String)>) -> Vec<k::Tag> {
    tags.map(|(key, value)| k::Tag {
        key: key.clone(),
        value: Some(value.clone()),
    })
    .collect()
}

fn list_tags_for_stream(
    state: &Ctx,
    input: k::ListTagsForStreamInput,
) -> Result<k::ListTagsForStreamOutput, AwsError> {
    let limit = count(input.limit, 50);
    let after = input.exclusive_start_tag_key.as_deref();
    let named = StreamRef::new(&input.stream_name, &input.stream_arn);
    with_stream(state, named, |stream| {
        let tags: Vec<(&String, &String)> = stream
            .tags
            .iter()
            .filter(|(k, _)| after.is_none_or(|a| k.as_str() > a))
            .collect();
        Ok(k::ListTagsForStreamOutput {
            tags: tag_list(tags.iter().take(limit).copied()),
            has_more_tags: tags.len() > limit,
        })
    })
}

fn list_tags_for_resource(
    state: &Ctx,
    input: k::ListTagsForResourceInput,
) -> Result<k::ListTagsForResourceOutput, AwsError> {
    let (stream, consumer) = match resource(state, &input.resource_arn)? {
        Resource::Stream(name) => (name, None),
        Resource::Consumer(stream, name) => (stream, Some(name)),
    };
    let catalog = state.catalog();
    let now = state.now_ms();
    let s = catalog
        .stream(&state.account, &stream)
        .ok_or_else(|| not_found(state, &stream))?;
    let tags = match consumer {
        None => &s.tags,
        Some(name) => {
            &s.consumer(&name, now)
                .ok_or_else(|| not_found(state, &stream))?
                .tags
        }
    };
    Ok(k::ListTagsForResourceOutput {
        tags: Some(tag_list(tags.iter())),
    })
}

fn update_max_record_size(state: &Ctx, input: k::UpdateMaxRecordSizeInput) -> Result<(), AwsError> {
    let name = stream_name(state, StreamRef::new(&None, &input.stream_arn))?;
    let kib = count_u32(input.max_record_size_in_kib);
    let (now, updating_ms) = (state.now_ms(), state.config.stream_updating_ms);
    mutate_stream(state, &name, |stream| {
        check_active(state, stream)?;
        stream.max_record_size_kib = kib;
        stream.start_update(now, updating_ms);
        Ok(())
    })
}

fn describe_limits(state: &Ctx) -> Result<k::DescribeLimitsOutput, AwsError> {
    let catalog = state.catalog();
    let on_demand = catalog
        .streams_of(&state.account)
        .filter(|s| s.mode == StreamMode::OnDemand)
        .count();
    let u32_count = i64::from;
    Ok(k::DescribeLimitsOutput {
        shard_limit: u32_count(state.config.shard_limit),
        open_shard_count: int(catalog.open_shard_count(&state.account)),
        on_demand_stream_count: int(on_demand),
        on_demand_stream_count_limit: u32_count(state.config.on_demand_stream_limit),
    })
}

fn commitment_out(
    state: &Ctx,
    c: &sluice_meta::Commitment,
) -> k::MinimumThroughputBillingCommitmentOutput {
    use k::MinimumThroughputBillingCommitmentOutputStatus as S;
    k::MinimumThroughputBillingCommitmentOutput {
        status: match c.status(state.now_ms()) {
            sluice_meta::CommitmentStatus::Enabled => S::Enabled,
            sluice_meta::CommitmentStatus::Disabled => S::Disabled,
            sluice_meta::CommitmentStatus::EnabledUntilEarliestAllowedEnd => {
                S::EnabledUntilEarliestAllowedEnd
            }
        },
        started_at: c.started_at_ms.map(seconds),
        ended_at: c.ended_at_ms.map(seconds),
        earliest_allowed_end_at: c.earliest_allowed_end_ms.map(seconds),
    }
}

fn describe_account_settings(state: &Ctx) -> Result<k::DescribeAccountSettingsOutput, AwsError> {
    let catalog = state.catalog();
    Ok(k::DescribeAccountSettingsOutput {
        minimum_throughput_billing_commitment: Some(commitment_out(
            state,
            &catalog.commitment(&state.account),
        )),
    })
}

fn update_account_settings(
    state: &Ctx,
    input: k::UpdateAccountSettingsInput,
) -> Result<k::UpdateAccountSettingsOutput, AwsError> {
    let enable = input.minimum_throughput_billing_commitment.status
        == k::MinimumThroughputBillingCommitmentInputStatus::Enabled;
    let now = state.now_ms();
    let commitment = mutate_catalog(state, |c| {
        let commitment = c.commitments.entry(state.account.clone()).or_default();
        commitment.set(enable, now);
        commitment.clone()
    })?;
    Ok(k::UpdateAccountSettingsOutput {
        minimum_throughput_billing_commitment: Some(commitment_out(state, &commitment)),
    })
}

fn set_monitoring(
    state: &Ctx,
    named: StreamRef<'_>,
    metrics: &[k::MetricsName],
    enable: bool,
) -> Result<k::EnhancedMonitoringOutput, AwsError> {
    let name = stream_name(state, named)?;
    let metrics: Vec<String> = metrics.iter().map(|m| m.as_str().to_owned()).collect();
    let (before, after) = mutate_stream(state, &name, |stream| {
        check_active(state, stream)?;
        Ok(stream.set_metrics(&metrics, enable))
    })?;
    Ok(k::EnhancedMonitoringOutput {
        stream_arn: Some(state.arn(&name)),
        stream_name: Some(name),
        current_shard_level_metrics: Some(metrics_of(&before)),
        desired_shard_level_metrics: Some(metrics_of(&after)),
    })
}

fn put_resource_policy(state: &Ctx, input: k::PutResourcePolicyInput) -> Result<(), AwsError> {
    // Checked with the writer lock held, so that no DeleteStream (which
    // drops the stream's policies) commits between the check and the insert.
    let mut catalog = state.catalog_mut();
    resource(state, &input.resource_arn)?;
    let (arn, policy) = (input.resource_arn, input.policy);
    if serde_json::from_str::<Value>(&policy)
        .map(|v| !v.is_object())
        .unwrap_or(true)
    {
        return Err(err(
            ErrorCode::InvalidArgumentException,
            "Policy must be a JSON document.",
        ));
    }
    let mut next = catalog.clone();
    next.resource_policies.insert(arn, policy);
    state.commit(&mut catalog, next).map_err(internal)
}

fn get_resource_policy(
    state: &Ctx,
    input: k::GetResourcePolicyInput,
) -> Result<k::GetResourcePolicyOutput, AwsError> {
    resource(state, &input.resource_arn)?;
    let policy = state
        .catalog()
        .resource_policies
        .get(&input.resource_arn)
        .cloned();
    Ok(k::GetResourcePolicyOutput {
        policy: policy.unwrap_or_else(|| "{}".to_owned()),
    })
}

fn delete_resource_policy(
    state: &Ctx,
    input: k::DeleteResourcePolicyInput,
) -> Result<(), AwsError> {
    resource(state, &input.resource_arn)?;
    mutate_catalog(state, |c| c.resource_policies.remove(&input.resource_arn))?;
    Ok(())
}

fn set_encryption(
    state: &Ctx,
    named: StreamRef<'_>,
    kind: k::EncryptionType,
    key: String,
    start: bool,
) -> Result<(), AwsError> {
    let name = stream_name(state, named)?;
    if kind != k::EncryptionType::Kms {
        return Err(err(
            ErrorCode::InvalidArgumentException,
            "EncryptionType must be KMS.",
        ));
    }
    let (now, updating_ms) = (state.now_ms(), state.config.stream_updating_ms);
    mutate_stream(state, &name, |stream| {
        check_active(state, stream)?;
        stream.encryption_key_id = if start { Some(key) } else { None };
        stream.start_update(now, updating_ms);
        Ok(())
    })
}
