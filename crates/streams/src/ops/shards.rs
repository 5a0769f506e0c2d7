//! Resharding: SplitShard, MergeShards, UpdateShardCount, on-demand
//! scaling (`autoscale`), UpdateStreamMode and warm throughput.

use super::*;

/// Runs a split or merge: checks the stream and the shard limit, then
/// `command` names the change ([`Engine::change`] creates the children's
/// logs, commits the catalog with the children open and the parents closed,
/// then closes the parents' logs and records their ending sequence numbers).
/// Appends that race the close fail on the closed log and are routed again
/// to the children. A crash before the last step is finished at the next start.
pub(super) fn reshard(
    state: &Ctx,
    name: &str,
    added_open_shards: u64,
    require_active: bool,
    command: impl FnOnce(&sluice_meta::Catalog, u64) -> Result<Command, AwsError>,
) -> Result<Applied, AwsError> {
    state.change(|catalog, now| {
        let stream = catalog
            .stream(&state.scope, name)
            .filter(|s| !s.is_gone(now))
            .ok_or_else(|| not_found(state, name))?;
        if require_active {
            check_active(state, stream)?;
        }
        let open = catalog.open_shard_count(&state.scope) as u64;
        let limit = u64::from(state.config.shard_limit);
        if open + added_open_shards > limit {
            return Err(err(
                ErrorCode::LimitExceededException,
                format!(
                    "This request would exceed the shard limit for the account {} in {}. Current shard count for the account: {open}. Limit: {limit}. Number of additional shards that would have resulted from this request: {added_open_shards}.",
                    state.scope.account, state.scope.region
                ),
            ));
        }
        command(catalog, now)
    })
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
    let decisions: Vec<(Scope, String, u64, Vec<Action>)> = {
        let catalog = state.catalog();
        scalers.retain(|(scope, name), _| catalog.stream(scope, name).is_some());
        catalog
            .streams()
            .filter(|s| s.mode == StreamMode::OnDemand)
            .filter(|s| matches!(s.status(now), StreamStatus::Active | StreamStatus::Updating))
            .filter_map(|s| {
                let scaler = scalers.entry((s.scope(), s.name.clone())).or_default();
                let actions = scaler.window(s, &loads, elapsed, now);
                (!actions.is_empty()).then(|| (s.scope(), s.name.clone(), s.created_ms, actions))
            })
            .collect()
    };
    let mut done = Vec::new();
    for (scope, name, created_ms, actions) in decisions {
        let ctx = Ctx { state, scope };
        let splits = actions
            .iter()
            .filter(|a| matches!(a, Action::Split { .. }))
            .count() as u64;
        // One commit for the stream's whole window. The command checks again
        // under the catalog lock: the stream may have been deleted,
        // re-created or switched to PROVISIONED since the decision, and a
        // user's split or merge may have closed a shard (that action is
        // skipped). Splits count against the account's shard limit like
        // SplitShard's; a refused window is tried again at the next one if
        // still needed.
        let command = Command::Autoscale {
            scope: ctx.scope.clone(),
            name: name.clone(),
            created_ms,
            actions,
        };
        match reshard(&ctx, &name, splits, false, |_, _| Ok(command)) {
            Ok(applied) => done.extend(applied.actions.iter().map(|action| match *action {
                Action::Split { index, .. } => format!(
                    "split {} of {}/{name}",
                    sluice_meta::shard_id(index),
                    ctx.scope.account
                ),
                Action::Merge { index, adjacent } => format!(
                    "merged {} and {} of {}/{name}",
                    sluice_meta::shard_id(index),
                    sluice_meta::shard_id(adjacent),
                    ctx.scope.account
                ),
            })),
            Err(e) if e.code != ErrorCode::InternalFailure => tracing::info!(
                "on-demand scaling of stream {name} under account {} was refused (tried again next window): {}",
                ctx.scope.account,
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
    let updating_ms = state.config.stream_updating_ms;
    // A key outside the shard: meta refuses it with the shard's range, which
    // AWS's words need (errors.rs).
    reshard(state, &name, 1, true, |_, _| {
        Ok(Command::SplitShard {
            scope: state.scope.clone(),
            name: name.clone(),
            index,
            new_start,
            updating_ms,
        })
    })?;
    Ok(())
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
                state.scope.account
            ),
        ));
    }
    let updating_ms = state.config.stream_updating_ms;
    reshard(state, &name, 0, true, |_, _| {
        Ok(Command::MergeShards {
            scope: state.scope.clone(),
            name: name.clone(),
            index: first,
            adjacent: second,
            updating_ms,
        })
    })?;
    Ok(())
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
        // AWS's words as moto records them (its messages are copied from AWS).
        return Err(err(
            ErrorCode::ValidationException,
            format!(
                "Request is invalid. Stream {name} under account {} is in On-Demand mode.",
                state.scope.account
            ),
        ));
    }
    scaling_bounds(open, target)?;
    if target != open {
        let added = u64::from(target.saturating_sub(open));
        let updating_ms = state.config.stream_updating_ms;
        reshard(state, &name, added, true, |catalog, now| {
            // Checked again under the catalog lock: another reshard may have
            // changed the open count since.
            let stream = catalog
                .stream(&state.scope, &name)
                .ok_or_else(|| not_found(state, &name))?;
            scaling_bounds(stream.open_shards().count() as u32, target)?;
            if state.config.enforce_limits
                && sluice_meta::count_within_a_day(&stream.scalings_ms, now)
                    >= sluice_meta::SCALINGS_PER_DAY
            {
                return Err(err(
                    ErrorCode::LimitExceededException,
                    format!(
                        "UpdateShardCount can scale stream {name} under account {} at most {} times per rolling 24-hour period.",
                        state.scope.account,
                        sluice_meta::SCALINGS_PER_DAY
                    ),
                ));
            }
            Ok(Command::ScaleUniformly {
                scope: state.scope.clone(),
                name: name.clone(),
                target,
                updating_ms,
                counted: true,
            })
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
        .streams_of(&state.scope)
        .filter(|s| s.mode == StreamMode::OnDemand && !s.is_gone(now))
        .count() as u64;
    let limit = u64::from(state.config.on_demand_stream_limit);
    if count >= limit {
        return Err(err(
            ErrorCode::LimitExceededException,
            format!(
                "This request would exceed the on-demand stream limit for the account {} in {}. Current on-demand stream count: {count}. Limit: {limit}.",
                state.scope.account, state.scope.region
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
            |_, _| {
                Ok(Command::ScaleUniformly {
                    scope: state.scope.clone(),
                    name: name.to_owned(),
                    target: needed,
                    updating_ms: state.config.stream_updating_ms,
                    counted: false,
                })
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
    let updating_ms = state.config.stream_updating_ms;
    let check = |catalog: &sluice_meta::Catalog, now| {
        let stream = catalog
            .stream(&state.scope, &name)
            .filter(|s| !s.is_gone(now))
            .ok_or_else(|| not_found(state, &name))?;
        check_active(state, stream)?;
        if stream.mode == mode && warm.is_none() {
            return Ok(None);
        }
        if mode == StreamMode::OnDemand && stream.mode != StreamMode::OnDemand {
            check_on_demand_limit(state, catalog)?;
        }
        if stream.mode != mode
            && state.config.enforce_limits
            && sluice_meta::count_within_a_day(&stream.mode_switches_ms, now)
                >= sluice_meta::MODE_SWITCHES_PER_DAY
        {
            return Err(err(
                ErrorCode::LimitExceededException,
                format!(
                    "The stream mode of stream {name} under account {} can be updated at most {} times per rolling 24-hour period.",
                    state.scope.account,
                    sluice_meta::MODE_SWITCHES_PER_DAY
                ),
            ));
        }
        Ok(Some(Command::SetMode {
            scope: state.scope.clone(),
            name: name.clone(),
            mode,
            warm_mibps: warm,
            updating_ms,
        }))
    };
    state
        .change_with(check, |_| {})
        .map_err(|e| state.refused(e))?;
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
                    state.scope.account
                ),
            ));
        }
        Ok(())
    };
    with_named_stream(state, &name, |s| check(s))?;
    // Again on the catalog being changed: a mode switch may have committed
    // since.
    change_stream(state, &name, |s| {
        check(s)?;
        Ok(Command::SetWarmThroughput {
            scope: state.scope.clone(),
            name: name.clone(),
            mibps,
        })
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
