//! Streams: CreateStream, DeleteStream, DescribeStream(Summary),
//! ListStreams, ListShards (with its filters) and the paging tokens.

use super::*;

/// StreamModeDetails and WarmThroughputMiBps, as CreateStream and
/// UpdateStreamMode take them: warm throughput only with ON_DEMAND.
pub(super) fn mode_and_warm_throughput(
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

pub(super) fn create_stream(state: &Ctx, input: k::CreateStreamInput) -> Result<(), AwsError> {
    let name = input.stream_name;
    // AWS takes a CreateStream with neither ShardCount nor StreamModeDetails
    // and makes a 4-shard stream: ON_DEMAND's start (see
    // docs/api-compatibility.md on why ON_DEMAND).
    let details = input.stream_mode_details.or_else(|| {
        input.shard_count.is_none().then_some(k::StreamModeDetails {
            stream_mode: k::StreamMode::OnDemand,
        })
    });
    let (mode, warm) = mode_and_warm_throughput(details.as_ref(), input.warm_throughput_mibps)?;
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
    // The characters AddTagsToStream takes (AWS's words for CreateStream's
    // tags are not known; these are AddTagsToStream's).
    let texts = tags.iter().flat_map(|(k, v)| [k.as_str(), v.as_str()]);
    super::settings::check_tag_text(state, &name, true, texts)?;
    let create = CreateStream {
        scope: state.scope.clone(),
        name: name.clone(),
        shard_count,
        mode,
        max_record_size_kib: input.max_record_size_in_kib.map_or(1024, count_u32),
        tags,
        creating_ms: state.config.stream_creating_ms,
        warm_throughput_mibps: warm,
    };
    state.sweep_deleted().map_err(internal)?;
    state.change(|catalog, now| {
        if mode == StreamMode::OnDemand {
            check_on_demand_limit(state, catalog)?;
        }
        if state.config.enforce_limits {
            let creating = catalog
                .streams_of(&state.scope)
                .filter(|s| s.status(now) == StreamStatus::Creating)
                .count();
            if creating >= crate::limits::STREAMS_CREATING_MAX {
                return Err(err(
                    ErrorCode::LimitExceededException,
                    format!(
                        "This request would exceed the limit of {} streams in the CREATING state at once for account {} in {}.",
                        crate::limits::STREAMS_CREATING_MAX,
                        state.scope.account,
                        state.scope.region
                    ),
                ));
            }
        }
        let open = catalog.open_shard_count(&state.scope) as u64;
        let limit = u64::from(state.config.shard_limit);
        if open + u64::from(shard_count) > limit {
            return Err(err(
                ErrorCode::LimitExceededException,
                format!(
                    "This request would exceed the shard limit for the account {} in {}. Current shard count for the account: {open}. Limit: {limit}. Number of additional shards that would have resulted from this request: {shard_count}.",
                    state.scope.account, state.scope.region
                ),
            ));
        }
        Ok(Command::CreateStream(create))
    })?;
    Ok(())
}

pub(super) fn delete_stream(state: &Ctx, input: k::DeleteStreamInput) -> Result<(), AwsError> {
    let name = stream_name(state, StreamRef::new(&input.stream_name, &input.stream_arn))?;
    let enforce = input.enforce_consumer_deletion.unwrap_or(false);
    let deleting_ms = state.config.stream_deleting_ms;
    // The consumer check and the deletion under one lock: a consumer
    // registered in between cannot be deleted without EnforceConsumerDeletion.
    let consumer_arns = std::cell::RefCell::new(Vec::new());
    let check = |catalog: &sluice_meta::Catalog, now| {
        let stream = catalog
            .stream(&state.scope, &name)
            .filter(|s| !s.is_gone(now))
            .ok_or_else(|| not_found(state, &name))?;
        if !enforce && stream.live_consumers(now).next().is_some() {
            return Err(err(
                ErrorCode::ResourceInUseException,
                format!(
                    "Stream {name} under account {} has registered consumers. Deregister them first, or set EnforceConsumerDeletion.",
                    state.scope.account
                ),
            ));
        }
        consumer_arns.borrow_mut().extend(
            stream
                .live_consumers(now)
                .map(|c| consumers::consumer_arn(state, &name, c)),
        );
        Ok(Some(Command::DeleteStream {
            scope: state.scope.clone(),
            name: name.clone(),
            // DELETING first; the periodic sweep removes it and its data afterwards.
            deleting_ms,
        }))
    };
    // Its subscriptions end before its logs go.
    let stop = |_: &Applied| {
        for arn in consumer_arns.borrow().iter() {
            state.subscriptions.stop_consumer(arn);
        }
    };
    state
        .change_with(check, stop)
        .map_err(|e| state.refused(e))?;
    Ok(())
}

/// The shard-level metrics a stream has on, as AWS lists them.
pub(super) fn metrics_of<'a>(names: impl IntoIterator<Item = &'a String>) -> Vec<k::MetricsName> {
    names
        .into_iter()
        .filter_map(|n| k::MetricsName::parse(n))
        .collect()
}

pub(super) fn enhanced_monitoring(stream: &Stream) -> Vec<k::EnhancedMetrics> {
    vec![k::EnhancedMetrics {
        shard_level_metrics: Some(metrics_of(&stream.shard_level_metrics)),
    }]
}

pub(super) fn retention_hours(stream: &Stream) -> i64 {
    i64::from(stream.retention_period_hours)
}

pub(super) fn int(n: usize) -> i64 {
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
pub(super) const FLAG_ENCRYPTED: u8 = 1;

pub(super) fn record_flags(stream: &Stream) -> u8 {
    if stream.encryption_key_id.is_some() {
        FLAG_ENCRYPTED
    } else {
        0
    }
}

pub(super) fn describe_stream_summary(
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

pub(super) fn describe_stream(
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

pub(super) fn list_streams(
    state: &Ctx,
    input: k::ListStreamsInput,
) -> Result<k::ListStreamsOutput, AwsError> {
    let limit = count(input.limit, 100);
    let token_start = input
        .next_token
        .as_deref()
        .map(|t| decode_token(state, t))
        .transpose()?;
    let start = token_start.or(input.exclusive_start_stream_name);
    let catalog = state.catalog();
    let names: Vec<&str> = catalog
        .streams_of(&state.scope)
        .filter(|s| !s.is_gone(state.now_ms()))
        .map(|s| s.name.as_str())
        .filter(|n| start.as_deref().is_none_or(|s| *n > s))
        .collect();
    let page = &names[..names.len().min(limit)];
    let summaries = page
        .iter()
        .filter_map(|n| catalog.stream(&state.scope, n))
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

pub(super) fn exclusive_start_shard(id: Option<&str>) -> Result<Option<u32>, AwsError> {
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
pub(super) const NEXT_TOKEN_LIFETIME_MS: u64 = 300_000;

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
pub(super) enum ShardFilter {
    All,
    AfterShardId(u32),
    AtLatest,
    AtTrimHorizon,
    FromTrimHorizon,
    AtTimestamp(u64),
    FromTimestamp(u64),
}

pub(super) fn shard_filter(filter: Option<&k::ShardFilter>) -> Result<ShardFilter, AwsError> {
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

pub(super) fn list_shards(
    state: &Ctx,
    input: k::ListShardsInput,
) -> Result<k::ListShardsOutput, AwsError> {
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
        .stream(&state.scope, &name)
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
                state.scope.account,
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
