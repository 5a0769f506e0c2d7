//! GetShardIterator and GetRecords: iterators, reads within the limits, and
//! the answers written straight into AWS JSON or CBOR (shared with
//! SubscribeToShard's events).

use super::*;
/// Which operation asks for a starting position: GetShardIterator's
/// refusals are AWS's (recorded by kinesalite, whose tests ran against AWS,
/// and seen from AWS by SDK users); SubscribeToShard's own are not known, so
/// it keeps Sluice's words and takes what GetShardIterator refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PositionWords {
    GetShardIterator,
    SubscribeToShard,
}

/// GetShardIterator's words for a sequence number that does not go with
/// the iterator type (`and no StartingSequenceNumber.` or `and also a
/// StartingSequenceNumber.`).
fn sequence_conflict(kind: k::ShardIteratorType, tail: &str) -> AwsError {
    err(
        ErrorCode::InvalidArgumentException,
        format!(
            "Must either specify (1) AT_SEQUENCE_NUMBER or AFTER_SEQUENCE_NUMBER and StartingSequenceNumber or (2) TRIM_HORIZON or LATEST and no StartingSequenceNumber. Request specified {kind} {tail}"
        ),
    )
}

/// A shard's StartingSequenceNumber (ListShards, DescribeStream): below
/// every sequence number of the shard, and the first record's when the first
/// frame is still there.
pub(crate) fn shard_start_sequence(shard: &Shard) -> u128 {
    u128::from(shard.epoch) << 64
}

/// The epoch a sequence number carries: its shard's (see [`shard_start_sequence`]).
fn epoch_of(sequence: u128) -> u64 {
    (sequence >> 64) as u64
}

/// Where a read starts (GetShardIterator and SubscribeToShard): the type,
/// with the sequence number or timestamp it needs. `invalid_seq` words a
/// sequence number that is not one. AT_SEQUENCE_NUMBER at the shard's own
/// StartingSequenceNumber (`shard_start`) is the shard's first record, or
/// where its first record will be: valid on an empty shard too, as on AWS.
/// GetShardIterator also refuses, as AWS does, a sequence number with
/// TRIM_HORIZON or LATEST and a timestamp after `now_ms`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn starting_position(
    kind: k::ShardIteratorType,
    sequence: Option<&str>,
    timestamp: Option<Timestamp>,
    shard_start: u128,
    now_ms: u64,
    words: PositionWords,
    invalid_seq: impl Fn(&str) -> AwsError,
) -> Result<StartingPosition, AwsError> {
    use k::ShardIteratorType as T;
    let gsi = words == PositionWords::GetShardIterator;
    if gsi && sequence.is_some() && matches!(kind, T::TrimHorizon | T::Latest) {
        return Err(sequence_conflict(
            kind,
            "and also a StartingSequenceNumber.",
        ));
    }
    let sequence = || -> Result<u128, AwsError> {
        let seq = sequence.ok_or_else(|| {
            if gsi {
                sequence_conflict(kind, "and no StartingSequenceNumber.")
            } else {
                err(
                    ErrorCode::InvalidArgumentException,
                    format!("SequenceNumber must be provided for StartingPosition type {kind}"),
                )
            }
        })?;
        seq.parse::<SequenceNumber>()
            .map(|s| s.0)
            .map_err(|_| invalid_seq(seq))
    };
    Ok(match kind {
        T::TrimHorizon => StartingPosition::TrimHorizon,
        T::Latest => StartingPosition::Latest,
        T::AtSequenceNumber => match sequence()? {
            s if s == shard_start => StartingPosition::TrimHorizon,
            s => StartingPosition::AtSequence(s),
        },
        T::AfterSequenceNumber => StartingPosition::AfterSequence(sequence()?),
        T::AtTimestamp => {
            let ts = timestamp.ok_or_else(|| {
                err(
                    ErrorCode::InvalidArgumentException,
                    if gsi {
                        "Must specify timestampInMillis parameter for iterator of type AT_TIMESTAMP. Current request has no timestamp parameter.".to_owned()
                    } else {
                        format!("Timestamp must be provided for StartingPosition type {kind}")
                    },
                )
            })?;
            let ms = ts.as_millis();
            if gsi && ms > now_ms {
                return Err(err(
                    ErrorCode::InvalidArgumentException,
                    format!(
                        "The timestampInMillis parameter cannot be greater than the currentTimestampInMillis. timestampInMillis: {ms}, currentTimestampInMillis: {now_ms}"
                    ),
                ));
            }
            StartingPosition::AtTimestamp(ms)
        }
    })
}

pub(super) fn get_shard_iterator(
    state: &Ctx,
    input: k::GetShardIteratorInput,
) -> Result<k::GetShardIteratorOutput, AwsError> {
    let name = stream_name(state, StreamRef::new(&input.stream_name, &input.stream_arn))?;
    // AWS: a shard id it cannot read is not found whether or not the stream
    // is; one it can read names no shard of a missing stream either (in
    // the canonical form; kinesalite's getShardIterator tests).
    let index = parse_shard_id(&input.shard_id)
        .ok_or_else(|| shard_not_found(state, &name, &input.shard_id))?;
    let shard_text = &sluice_meta::shard_id(index);
    let (shard, log_id, created_ms, shard_start) = {
        let catalog = state.catalog();
        let no_shard = || {
            err(
                ErrorCode::ResourceNotFoundException,
                format!(
                    "Shard {shard_text} in stream {name} under account {} does not exist",
                    state.scope.account
                ),
            )
        };
        let stream = catalog.stream(&state.scope, &name).ok_or_else(no_shard)?;
        let shard = stream.shard(index).ok_or_else(no_shard)?;
        check_not_deleting(state, stream)?;
        (
            shard.index,
            shard.log_id,
            stream.created_ms,
            shard_start_sequence(shard),
        )
    };
    let now = state.now_ms();
    if state.throttles.is_blocked(log_id, now)
        || (state.config.enforce_limits
            && !state
                .throttles
                .shard(log_id, state.config.capacity, now)
                .admit_iterator())
    {
        return Err(rate_exceeded(state, &name, shard));
    }
    let invalid_seq = |seq: &str| {
        err(
            ErrorCode::InvalidArgumentException,
            format!(
                "StartingSequenceNumber {seq} used in GetShardIterator on shard {shard_text} in stream {name} under account {} is invalid.",
                state.scope.account
            ),
        )
    };
    let position = starting_position(
        input.shard_iterator_type,
        input.starting_sequence_number.as_deref(),
        input.timestamp,
        shard_start,
        now,
        PositionWords::GetShardIterator,
        invalid_seq,
    )?;
    // A sequence number of another shard, or of no shard of this stream, in
    // AWS's words.
    if let StartingPosition::AtSequence(seq) | StartingPosition::AfterSequence(seq) = position {
        let epoch = epoch_of(seq);
        let shard_id = sluice_meta::shard_id(shard);
        let seq_text = input
            .starting_sequence_number
            .as_deref()
            .unwrap_or_default();
        // Only this shard's own epoch reads on; the catalog is consulted
        // again only to word a refusal.
        let owner = (epoch != epoch_of(shard_start)).then(|| {
            state.catalog().stream(&state.scope, &name).and_then(|s| {
                s.shards
                    .iter()
                    .find(|sh| sh.epoch == epoch)
                    .map(|sh| sh.index)
            })
        });
        match owner {
            None => {}
            Some(Some(index)) => {
                return Err(err(
                    ErrorCode::InvalidArgumentException,
                    format!(
                        "Invalid StartingSequenceNumber. It encodes {}, while it was used in a call to {shard_id}",
                        sluice_meta::shard_id(index)
                    ),
                ))
            }
            Some(None) => {
                return Err(err(
                    ErrorCode::InvalidArgumentException,
                    format!(
                        "StartingSequenceNumber {seq_text} used in GetShardIterator on shard {shard_id} in stream {name} under account {} is invalid because it did not come from this stream.",
                        state.scope.account
                    ),
                ))
            }
        }
    }
    let log = state
        .shard_log(log_id)
        .ok_or_else(|| internal("shard log missing"))?;
    let cursor = log.cursor(position).map_err(|e| {
        read_error(state, &name, shard, e, || {
            invalid_seq(
                input
                    .starting_sequence_number
                    .as_deref()
                    .unwrap_or_default(),
            )
        })
    })?;
    let iterator = ShardIterator {
        issued_ms: state.now_ms(),
        stream_created_ms: created_ms,
        shard_index: shard,
        cursor,
        scope: state.scope.clone(),
        stream_name: name,
    };
    Ok(k::GetShardIteratorOutput {
        shard_iterator: Some(iterator.encode(state.iterator_key())),
    })
}

/// What GetRecords answers: the records as stored (the caller encodes them,
/// with no value tree for up to 10 MiB), how far behind the shard's newest
/// record they are, and where to go on.
#[derive(Debug)]
pub struct Records {
    pub records: Vec<sluice_log::Record>,
    pub millis_behind_latest: u64,
    /// Absent at the end of a closed shard.
    pub next_shard_iterator: Option<String>,
    /// At the end of a closed shard: its children.
    pub child_shards: Vec<sluice_aws::fast::ChildShard>,
}

pub(super) fn get_records(state: &Ctx, input: &k::GetRecordsInput) -> Result<Records, AwsError> {
    let text = input.shard_iterator.as_str();
    // AWS takes an iterator wrapped in double quotes (as some tools pass
    // the CLI's JSON output on).
    let text = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    let limit = count(input.limit, 10_000);
    // An iterator issued to another account, or in another region, is not
    // one for this caller.
    let iterator = ShardIterator::decode(text, state.iterator_key())
        .filter(|it| it.scope == state.scope)
        .ok_or_else(|| {
            err(
                ErrorCode::InvalidArgumentException,
                "Invalid ShardIterator.",
            )
        })?;
    let now = state.now_ms();
    if now.saturating_sub(iterator.issued_ms) > ITERATOR_LIFETIME_MS {
        return Err(err(
            ErrorCode::ExpiredIteratorException,
            format!(
                "Iterator expired. The iterator was created at time {} while right now it is {} which is further in the future than the tolerated delay of {ITERATOR_LIFETIME_MS} milliseconds.",
                iterator.issued_ms, now
            ),
        ));
    }
    let log_id = {
        let catalog = state.catalog();
        let stream = catalog
            .stream(&state.scope, &iterator.stream_name)
            .filter(|s| s.created_ms == iterator.stream_created_ms)
            .ok_or_else(|| not_found(state, &iterator.stream_name))?;
        check_not_deleting(state, stream)?;
        let shard = stream.shard(iterator.shard_index).ok_or_else(|| {
            // Retention removed it.
            shard_not_found(
                state,
                &iterator.stream_name,
                &sluice_meta::shard_id(iterator.shard_index),
            )
        })?;
        shard.log_id
    };
    let log = state
        .shard_log(log_id)
        .ok_or_else(|| not_found(state, &iterator.stream_name))?;
    let limited = state.config.enforce_limits;
    if state.throttles.is_blocked(log_id, now)
        || (limited
            && !state
                .throttles
                .shard(log_id, state.config.capacity, now)
                .admit_read())
    {
        return Err(rate_exceeded(
            state,
            &iterator.stream_name,
            iterator.shard_index,
        ));
    }
    let batch = log
        .read(
            iterator.cursor,
            ReadLimits {
                max_records: limit,
                max_bytes: GET_RECORDS_MAX_BYTES,
            },
        )
        .map_err(|e| {
            read_error(
                state,
                &iterator.stream_name,
                iterator.shard_index,
                e,
                || internal("an iterator's cursor names no record"),
            )
        })?;
    if limited {
        state
            .throttles
            .shard(log_id, state.config.capacity, now)
            .charge_read(batch.bytes() as u64);
    }
    // Children are looked up after the read: a reshard commits them before it
    // closes the parent, so a read that reached the end finds them.
    let children = if batch.end_of_shard {
        let catalog = state.catalog();
        catalog
            .stream(&state.scope, &iterator.stream_name)
            .map(|s| child_shards(s, iterator.shard_index))
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let next = (!batch.end_of_shard).then(|| {
        ShardIterator {
            issued_ms: now,
            cursor: batch.next,
            ..iterator
        }
        .encode(state.iterator_key())
    });
    Ok(Records {
        records: batch.records,
        millis_behind_latest: batch.millis_behind_latest,
        next_shard_iterator: next,
        child_shards: children,
    })
}

/// Whether a record was written while its stream's encryption was on.
pub fn is_encrypted(record: &sluice_log::Record) -> bool {
    record.flags & FLAG_ENCRYPTED != 0
}

/// What GetRecords reports at the end of a closed shard.
pub(crate) fn child_shards(stream: &Stream, index: u32) -> Vec<sluice_aws::fast::ChildShard> {
    stream
        .children_of(index)
        .map(|c| sluice_aws::fast::ChildShard {
            shard_id: c.shard_id(),
            parent_shards: c
                .parent
                .into_iter()
                .chain(c.adjacent_parent)
                .map(sluice_meta::shard_id)
                .collect(),
            starting_hash_key: c.starting_hash_key.to_string(),
            ending_hash_key: c.ending_hash_key.to_string(),
        })
        .collect()
}
