//! Resharding: SplitShard, MergeShards, UpdateShardCount, on-demand
//! scaling (`autoscale`), UpdateStreamMode and warm throughput.

use super::*;

/// Runs a split or merge: checks the stream and the shard limit, creates the
/// children's logs, commits the catalog (children open, parents closed),
/// then closes the parents' logs and records their ending sequence numbers.
/// Appends that race the close fail on the closed log and are routed again
/// to the children. A crash before the last step is finished at the next start.
pub(super) fn reshard(
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

pub(super) fn split_shard(state: &Ctx, input: k::SplitShardInput) -> Result<(), AwsError> {
    let name = stream_name(state, StreamRef::new(&input.stream_name, &input.stream_arn))?;
    let shard_text = input.shard_to_split.as_str();
    let key_text = input.new_starting_hash_key.as_str();
    let index =
        parse_shard_id(shard_text).ok_or_else(|| shard_not_found(state, &name, shard_text))?;
    let new_start: u128 = sluice_model::HashKey::parse(key_text)
        .map(|k| k.0)
        .map_err(|_| {
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
                other => meta_error(state, other),
            })
    })
}

pub(super) fn merge_shards(state: &Ctx, input: k::MergeShardsInput) -> Result<(), AwsError> {
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
            .map_err(|e| meta_error(state, e))
    })
}

/// AWS: UpdateShardCount goes from half to double the open shard count.
pub(super) fn scaling_bounds(open: u32, target: u32) -> Result<(), AwsError> {
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

pub(super) fn update_shard_count(
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
                .map_err(|e| meta_error(state, e))?;
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
                .map_err(|e| meta_error(state, e))
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
pub(super) fn check_on_demand_limit(
    state: &Ctx,
    catalog: &sluice_meta::Catalog,
) -> Result<(), AwsError> {
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
pub(super) fn shards_for_mibps(mibps: u32) -> u32 {
    mibps.max(1)
}

/// Splits an ON_DEMAND stream up to the shards its warm throughput needs
/// (`require_active`: false when it follows a mode change of our own).
pub(super) fn prewarm(
    state: &Ctx,
    name: &str,
    mibps: u32,
    require_active: bool,
) -> Result<(), AwsError> {
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
                    .map_err(|e| meta_error(state, e))
            },
        )?;
    }
    Ok(())
}

pub(super) fn warm_throughput(stream: &Stream) -> Option<k::WarmThroughputObject> {
    stream
        .warm_throughput_mibps
        .map(|target| k::WarmThroughputObject {
            target_mibps: Some(i64::from(target)),
            current_mibps: Some(int(stream.open_shards().count())),
        })
}

pub(super) fn update_stream_mode(
    state: &Ctx,
    input: k::UpdateStreamModeInput,
) -> Result<(), AwsError> {
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

pub(super) fn update_warm_throughput(
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
