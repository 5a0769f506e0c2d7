//! Enhanced fan-out's control plane: registered consumers (Register,
//! Deregister, Describe, ListStreamConsumers), and SubscribeToShard's checks
//! before its event stream starts (the stream itself is `fanout`).

use std::collections::BTreeMap;

use sluice_aws::kinesis as k;
use sluice_aws::{AwsError, ErrorCode};
use sluice_meta::{
    parse_shard_id, Command, Consumer, ConsumerStatus, MetaError, Stream, StreamStatus,
};

use crate::engine::Refused;
use crate::fanout::Subscription;
use crate::ops::{
    check_not_deleting, count, decode_token, encode_token, err, not_found, read_error, seconds,
    shard_start_sequence, starting_position, status_name, stream_name, with_named_stream, Ctx,
    PositionWords, StreamRef,
};

fn consumer_status(status: ConsumerStatus) -> k::ConsumerStatus {
    match status {
        ConsumerStatus::Creating => k::ConsumerStatus::Creating,
        ConsumerStatus::Active => k::ConsumerStatus::Active,
        ConsumerStatus::Deleting => k::ConsumerStatus::Deleting,
    }
}

pub(crate) fn consumer_arn(state: &Ctx, stream: &str, consumer: &Consumer) -> String {
    sluice_model::Arn::Consumer {
        region: state.scope.region.clone(),
        account: state.scope.account.clone(),
        stream: stream.to_owned(),
        consumer: consumer.name.clone(),
        created_s: consumer.created_ms / 1000,
    }
    .to_string()
}

/// The `Consumer` shape (RegisterStreamConsumer, ListStreamConsumers).
fn consumer_out(state: &Ctx, stream: &str, consumer: &Consumer) -> k::Consumer {
    k::Consumer {
        consumer_name: consumer.name.clone(),
        consumer_arn: consumer_arn(state, stream, consumer),
        consumer_status: consumer_status(consumer.status(state.now_ms())),
        consumer_creation_timestamp: seconds(consumer.created_ms),
    }
}

fn consumer_not_found(state: &Ctx, stream: &str, consumer: &str) -> AwsError {
    err(
        ErrorCode::ResourceNotFoundException,
        format!(
            "Consumer {consumer} under stream {stream} under account {} not found.",
            state.scope.account
        ),
    )
}

/// The stream and consumer names a consumer ARN of the caller's account
/// names (the model's pattern was checked already), and the creation second
/// it ends with.
fn parse_consumer_arn(state: &Ctx, arn: &str) -> Result<(String, String, u64), AwsError> {
    match state.own_arn(&state.scope, arn) {
        Some(sluice_model::Arn::Consumer {
            stream,
            consumer,
            created_s,
            ..
        }) => Ok((stream, consumer, created_s)),
        _ => Err(err(
            ErrorCode::ResourceNotFoundException,
            format!("Consumer {arn} not found."),
        )),
    }
}

/// How a request names a consumer: by its ARN, or by StreamARN and
/// ConsumerName (Deregister and Describe take both forms).
#[derive(Debug, Clone, Copy)]
struct ConsumerRef<'a> {
    consumer_arn: Option<&'a str>,
    stream_arn: Option<&'a str>,
    consumer_name: Option<&'a str>,
}

/// The consumer `input` names: (stream name, consumer name, the ARN's
/// creation second if an ARN named it).
fn named_consumer(
    state: &Ctx,
    input: ConsumerRef<'_>,
) -> Result<(String, String, Option<u64>), AwsError> {
    if let Some(arn) = input.consumer_arn {
        let (stream, name, secs) = parse_consumer_arn(state, arn)?;
        return Ok((stream, name, Some(secs)));
    }
    match (input.stream_arn, input.consumer_name) {
        (Some(arn), Some(name)) => Ok((
            stream_name(state, StreamRef::arn(arn))?,
            name.to_owned(),
            None,
        )),
        _ => Err(err(
            ErrorCode::InvalidArgumentException,
            "Either ConsumerARN or both StreamARN and ConsumerName must be provided.",
        )),
    }
}

/// Runs `f` on the consumer `input` names, if it exists (an ARN must carry
/// the consumer's own creation second: an older consumer's ARN names nothing).
fn with_consumer<T>(
    state: &Ctx,
    input: ConsumerRef<'_>,
    f: impl FnOnce(&Stream, &Consumer) -> Result<T, AwsError>,
) -> Result<T, AwsError> {
    let (stream, name, secs) = named_consumer(state, input)?;
    let now = state.now_ms();
    with_named_stream(state, &stream, |s| {
        let consumer = s
            .consumer(&name, now)
            .filter(|c| secs.is_none_or(|secs| c.created_ms / 1000 == secs))
            .ok_or_else(|| consumer_not_found(state, &stream, &name))?;
        f(s, consumer)
    })
}

/// The stream and name of the registered consumer `arn` names, if it is one.
pub(crate) fn existing_in(
    state: &Ctx,
    catalog: &sluice_meta::Catalog,
    now: u64,
    arn: &str,
) -> Option<(String, String)> {
    let (stream, name, secs) = parse_consumer_arn(state, arn).ok()?;
    catalog
        .stream(&state.scope, &stream)
        .filter(|s| !s.is_gone(now))?
        .consumer(&name, now)
        .filter(|c| c.created_ms / 1000 == secs)?;
    Some((stream, name))
}

/// Changes a consumer's tags (TagResource and UntagResource on a consumer
/// ARN): `f` sees the consumer and names the command.
fn change_tags(
    state: &Ctx,
    stream: &str,
    name: &str,
    f: impl FnOnce(&Consumer) -> Result<Command, AwsError>,
) -> Result<(), AwsError> {
    state.change(|catalog, now| {
        let consumer = catalog
            .stream(&state.scope, stream)
            .and_then(|s| s.consumer(name, now))
            .ok_or_else(|| consumer_not_found(state, stream, name))?;
        f(consumer)
    })?;
    Ok(())
}

/// TagResource on a consumer ARN: at most 50 tags.
pub(crate) fn tag(
    state: &Ctx,
    stream: &str,
    name: &str,
    tags: &BTreeMap<String, String>,
) -> Result<(), AwsError> {
    change_tags(state, stream, name, |consumer| {
        let new_keys = tags
            .keys()
            .filter(|k| !consumer.tags.contains_key(*k))
            .count();
        if consumer.tags.len() + new_keys > sluice_meta::TAGS_PER_STREAM_MAX {
            return Err(err(
                ErrorCode::InvalidArgumentException,
                format!(
                    "Failed to add tags to consumer {name} because a given resource can have a maximum of {} tags.",
                    sluice_meta::TAGS_PER_STREAM_MAX
                ),
            ));
        }
        Ok(Command::TagConsumer {
            scope: state.scope.clone(),
            stream: stream.to_owned(),
            name: name.to_owned(),
            tags: tags.clone(),
        })
    })
}

/// UntagResource on a consumer ARN.
pub(crate) fn untag(
    state: &Ctx,
    stream: &str,
    name: &str,
    keys: &[String],
) -> Result<(), AwsError> {
    change_tags(state, stream, name, |_| {
        Ok(Command::UntagConsumer {
            scope: state.scope.clone(),
            stream: stream.to_owned(),
            name: name.to_owned(),
            keys: keys.to_vec(),
        })
    })
}

pub(crate) fn register_stream_consumer(
    state: &Ctx,
    input: k::RegisterStreamConsumerInput,
) -> Result<k::RegisterStreamConsumerOutput, AwsError> {
    let stream = stream_name(state, StreamRef::arn(&input.stream_arn))?;
    let name = input.consumer_name;
    let tags = input.tags.unwrap_or_default();
    if tags.len() > sluice_meta::TAGS_PER_STREAM_MAX {
        return Err(err(
            ErrorCode::InvalidArgumentException,
            format!(
                "A resource can have at most {} tags.",
                sluice_meta::TAGS_PER_STREAM_MAX
            ),
        ));
    }
    let creating_ms = state.config.consumer_creating_ms;
    let mut registered_at = 0;
    let command = Command::RegisterConsumer {
        scope: state.scope.clone(),
        stream: stream.clone(),
        name: name.clone(),
        creating_ms,
        tags: tags.clone(),
    };
    let changed = state.engine().change(|catalog, now| {
        let s = catalog
            .stream(&state.scope, &stream)
            .filter(|s| !s.is_gone(now))
            .ok_or_else(|| not_found(state, &stream))?;
        let status = s.status(now);
        if !matches!(status, StreamStatus::Active | StreamStatus::Updating) {
            return Err(err(
                ErrorCode::ResourceInUseException,
                format!(
                    "Stream {stream} under account {} not ACTIVE or UPDATING, instead in state {}",
                    state.scope.account,
                    status_name(status)
                ),
            ));
        }
        registered_at = now;
        Ok(command)
    });
    match changed {
        Ok(_) => {}
        Err(Refused::Meta(MetaError::ConsumerExists(_))) => {
            return Err(err(
                ErrorCode::ResourceInUseException,
                format!(
                    "Consumer {name} under stream {stream} already exists for account {}.",
                    state.scope.account
                ),
            ))
        }
        Err(e) => return Err(state.refused(e)),
    }
    let consumer = Consumer {
        name,
        created_ms: registered_at,
        active_from_ms: registered_at.saturating_add(creating_ms),
        deleting_until_ms: None,
        tags,
    };
    Ok(k::RegisterStreamConsumerOutput {
        consumer: consumer_out(state, &stream, &consumer),
    })
}

pub(crate) fn deregister_stream_consumer(
    state: &Ctx,
    input: k::DeregisterStreamConsumerInput,
) -> Result<(), AwsError> {
    let input = ConsumerRef {
        consumer_arn: input.consumer_arn.as_deref(),
        stream_arn: input.stream_arn.as_deref(),
        consumer_name: input.consumer_name.as_deref(),
    };
    let arn = with_consumer(state, input, |s, c| Ok(consumer_arn(state, &s.name, c)))?;
    let (stream, name, _) = named_consumer(state, input)?;
    let command = Command::DeregisterConsumer {
        scope: state.scope.clone(),
        stream: stream.clone(),
        name: name.clone(),
        deleting_ms: state.config.consumer_deleting_ms,
    };
    state
        .engine()
        .change(|_, _| Ok::<_, AwsError>(command))
        .map_err(|e| match e {
            Refused::Meta(MetaError::StreamNotFound(_) | MetaError::ConsumerNotFound(..)) => {
                consumer_not_found(state, &stream, &name)
            }
            e => state.refused(e),
        })?;
    // A consumer that is DELETING reads nothing: its subscriptions end now.
    state.subscriptions.stop_consumer(&arn);
    Ok(())
}

pub(crate) fn describe_stream_consumer(
    state: &Ctx,
    input: k::DescribeStreamConsumerInput,
) -> Result<k::DescribeStreamConsumerOutput, AwsError> {
    let input = ConsumerRef {
        consumer_arn: input.consumer_arn.as_deref(),
        stream_arn: input.stream_arn.as_deref(),
        consumer_name: input.consumer_name.as_deref(),
    };
    with_consumer(state, input, |s, c| {
        let consumer = consumer_out(state, &s.name, c);
        Ok(k::DescribeStreamConsumerOutput {
            consumer_description: k::ConsumerDescription {
                consumer_name: consumer.consumer_name,
                consumer_arn: consumer.consumer_arn,
                consumer_status: consumer.consumer_status,
                consumer_creation_timestamp: consumer.consumer_creation_timestamp,
                stream_arn: state.arn(&s.name),
            },
        })
    })
}

pub(crate) fn list_stream_consumers(
    state: &Ctx,
    input: k::ListStreamConsumersInput,
) -> Result<k::ListStreamConsumersOutput, AwsError> {
    let limit = count(input.max_results, 100);
    let stream = stream_name(state, StreamRef::arn(&input.stream_arn))?;
    let now = state.now_ms();
    with_named_stream(state, &stream, |s| {
        // Listed by (registration time, name). The token names the stream
        // (by creation time too) and the last consumer returned; the next
        // page starts after it even if it was deregistered meanwhile.
        let after: Option<(u64, String)> = match input.next_token.as_deref() {
            None => None,
            Some(token) => {
                let text = decode_token(state, token)?;
                let invalid = || err(ErrorCode::InvalidArgumentException, "Invalid NextToken.");
                let mut parts = text.splitn(3, '|');
                let (Some(created), Some(last_created), Some(last)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    return Err(invalid());
                };
                if created != s.created_ms.to_string() {
                    return Err(invalid());
                }
                Some((
                    last_created.parse().map_err(|_| invalid())?,
                    last.to_owned(),
                ))
            }
        };
        let mut live: Vec<&Consumer> = s.live_consumers(now).collect();
        live.sort_by(|a, b| (a.created_ms, &a.name).cmp(&(b.created_ms, &b.name)));
        let start = match &after {
            None => 0,
            Some((at, last)) => live
                .iter()
                .position(|c| (c.created_ms, &c.name) > (*at, last))
                .unwrap_or(live.len()),
        };
        let rest = &live[start..];
        let page = &rest[..rest.len().min(limit)];
        let next_token = page.last().filter(|_| rest.len() > page.len()).map(|last| {
            encode_token(
                state,
                &format!("{}|{}|{}", s.created_ms, last.created_ms, last.name),
            )
        });
        Ok(k::ListStreamConsumersOutput {
            consumers: Some(
                page.iter()
                    .map(|c| consumer_out(state, &s.name, c))
                    .collect(),
            ),
            next_token,
        })
    })
}

/// SubscribeToShard's checks, in AWS's order: the consumer exists and is
/// ACTIVE, the shard exists, the starting position is valid, and no other
/// subscription of this consumer to this shard started in the last 5 s.
pub(crate) fn subscribe_to_shard(
    state: &Ctx,
    input: k::SubscribeToShardInput,
) -> Result<Subscription, AwsError> {
    let shard_text = input.shard_id.as_str();
    let now = state.now_ms();
    let named = ConsumerRef {
        consumer_arn: Some(&input.consumer_arn),
        stream_arn: None,
        consumer_name: None,
    };
    let (arn, stream, consumer, consumer_created_ms, shard, stream_created_ms) =
        with_consumer(state, named, |s, c| {
            check_not_deleting(state, s)?;
            // The canonical ARN keys the subscription (one per consumer and shard).
            let arn = consumer_arn(state, &s.name, c);
            if c.status(now) != ConsumerStatus::Active {
                return Err(err(
                    ErrorCode::ResourceInUseException,
                    format!(
                        "Consumer {arn} is not ACTIVE, instead in state {}.",
                        consumer_status(c.status(now))
                    ),
                ));
            }
            let shard = parse_shard_id(shard_text)
                .and_then(|i| s.shard(i))
                .ok_or_else(|| {
                    let shown = parse_shard_id(shard_text)
                        .map_or_else(|| shard_text.to_owned(), sluice_meta::shard_id);
                    err(
                        ErrorCode::ResourceNotFoundException,
                        format!(
                            "Shard {shown} in stream {} under account {} does not exist",
                            s.name, state.scope.account
                        ),
                    )
                })?;
            Ok((
                arn,
                s.name.clone(),
                c.name.clone(),
                c.created_ms,
                (shard.index, shard.log_id, shard_start_sequence(shard)),
                s.created_ms,
            ))
        })?;
    let (shard_index, log_id, shard_start) = shard;
    let shard_text = &sluice_meta::shard_id(shard_index);
    let position = &input.starting_position;
    let invalid_seq = |seq: &str| {
        err(
            ErrorCode::InvalidArgumentException,
            format!(
                "StartingSequenceNumber {seq} used in SubscribeToShard on shard {shard_text} in stream {stream} under account {} is invalid.",
                state.scope.account
            ),
        )
    };
    let start = starting_position(
        position.r#type,
        position.sequence_number.as_deref(),
        position.timestamp,
        shard_start,
        now,
        PositionWords::SubscribeToShard,
        invalid_seq,
    )?;
    let log = state
        .shard_log(log_id)
        .ok_or_else(|| not_found(state, &stream))?;
    let cursor = log.cursor(start).map_err(|e| {
        read_error(state, &stream, shard_index, e, || {
            invalid_seq(position.sequence_number.as_deref().unwrap_or_default())
        })
    })?;
    let claim = state
        .subscriptions
        .claim(&arn, shard_index, now)
        .map_err(|()| {
            err(
                ErrorCode::ResourceInUseException,
                format!(
                    "Another active subscription exists for this consumer: {}:{stream}:{shard_text}:{consumer}",
                    state.scope.account
                ),
            )
        })?;
    Ok(Subscription {
        claim,
        reader: crate::fanout::Reader {
            scope: state.scope.clone(),
            stream,
            stream_created_ms,
            consumer,
            consumer_created_ms,
            shard_index,
            log,
        },
        cursor,
        ends_at_ms: now.saturating_add(crate::fanout::SUBSCRIPTION_LIFETIME_MS),
    })
}
