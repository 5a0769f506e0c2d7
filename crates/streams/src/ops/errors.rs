//! The one mapping from what goes wrong inside (the catalog's, the log's
//! and unexpected errors) to AWS's exception names and wording.

use sluice_log::ReadError;
use sluice_meta::MetaError;

use super::*;

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
pub(crate) fn quarantined_range(
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

/// A stream the caller's account does not have.
pub(crate) fn not_found(state: &Ctx, name: &str) -> AwsError {
    err(
        ErrorCode::ResourceNotFoundException,
        format!(
            "Stream {name} under account {} not found.",
            state.scope.account
        ),
    )
}

pub(crate) fn shard_not_found(state: &Ctx, stream: &str, shard: &str) -> AwsError {
    err(
        ErrorCode::ResourceNotFoundException,
        format!(
            "Could not find shard {shard} in stream {stream} under account {}.",
            state.scope.account
        ),
    )
}

/// What a catalog change's refusal tells the caller. (Call sites that know
/// more, such as a split's hash key bounds, word their own first.)
pub(crate) fn meta_error(state: &Ctx, e: MetaError) -> AwsError {
    use ErrorCode::*;
    match e {
        MetaError::StreamExists(name) => err(
            ResourceInUseException,
            format!("Stream {name} under account {} already exists.", state.scope.account),
        ),
        MetaError::StreamNotFound(name) => not_found(state, &name),
        MetaError::ShardNotFound(stream, shard) => shard_not_found(state, &stream, &shard),
        MetaError::ShardClosed(stream, shard) => err(
            InvalidArgumentException,
            format!(
                "Shard {shard} in stream {stream} under account {} has already been merged or split, and thus is not eligible for merging or splitting.",
                state.scope.account
            ),
        ),
        MetaError::NotAdjacent(stream, a, b) => err(
            InvalidArgumentException,
            format!(
                "Shards {a} and {b} in stream {stream} under account {} are not an adjacent pair of shards eligible for merging",
                state.scope.account
            ),
        ),
        MetaError::ConsumerNotFound(stream, consumer) => err(
            ResourceNotFoundException,
            format!(
                "Consumer {consumer} under stream {stream} under account {} not found.",
                state.scope.account
            ),
        ),
        e @ MetaError::ConsumerExists(_) => err(ResourceInUseException, e.to_string()),
        e @ (MetaError::TooManyConsumers(_) | MetaError::TooManyConsumersCreating) => {
            err(LimitExceededException, e.to_string())
        }
        MetaError::SplitKeyOutside {
            stream,
            shard,
            new_start,
            start,
            end,
        } => err(
            InvalidArgumentException,
            format!(
                "NewStartingHashKey {new_start} used in SplitShard() on shard {shard} in stream {stream} under account {} is not both greater than one plus the shard's StartingHashKey {start} and less than the shard's EndingHashKey {end}.",
                state.scope.account
            ),
        ),
        e @ (MetaError::RetentionTooShort(_)
        | MetaError::RetentionTooLong(_)
        | MetaError::RetentionNotIncrease { .. }
        | MetaError::RetentionNotDecrease { .. }) => err(InvalidArgumentException, e.to_string()),
        // AWS's words (kinesalite's addTagsToStream tests), with its limit now.
        MetaError::TooManyTags(stream) => err(
            InvalidArgumentException,
            format!(
                "Failed to add tags to stream {stream} under account {} because a given stream cannot have more than {} tags associated with it.",
                state.scope.account,
                sluice_meta::TAGS_PER_STREAM_MAX
            ),
        ),
        e @ (MetaError::Snapshot(_) | MetaError::NothingToScale(_)) => internal(e),
    }
}

/// What a failed read tells the caller; `invalid_position` words a
/// starting position that names no record of the shard.
pub(crate) fn read_error(
    state: &Ctx,
    stream: &str,
    shard: u32,
    e: ReadError,
    invalid_position: impl FnOnce() -> AwsError,
) -> AwsError {
    match e {
        ReadError::InvalidPosition => invalid_position(),
        // Retention removed the shard (or the stream went) meanwhile.
        ReadError::Deleted => shard_not_found(state, stream, &sluice_meta::shard_id(shard)),
        ReadError::Quarantined(damage) => quarantined(&state.scope.account, stream, shard, &damage),
        other @ ReadError::Io(_) => internal(other),
    }
}
