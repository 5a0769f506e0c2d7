//! Stream settings, tags, policies and the account: retention, tags on
//! streams and consumers, record size, limits, account settings, enhanced
//! monitoring, resource policies, encryption.

use super::*;

/// Changes one stream and persists the catalog, all or nothing.
pub(super) fn mutate_stream<T>(
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
pub(super) fn mutate_catalog<T>(
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
pub(super) enum Resource {
    Stream(String),
    /// Stream and consumer names.
    Consumer(String, String),
}

pub(super) fn resource(state: &Ctx, arn: &str) -> Result<Resource, AwsError> {
    let now = state.now_ms();
    let found = match state.own_arn(&state.account, arn) {
        Some(sluice_model::Arn::Stream { stream, .. }) => state
            .catalog()
            .stream(&state.account, &stream)
            .filter(|s| !s.is_gone(now))
            .map(|_| Resource::Stream(stream)),
        Some(sluice_model::Arn::Consumer { .. }) => {
            consumers::existing(state, arn).map(|(s, c)| Resource::Consumer(s, c))
        }
        None => None,
    };
    found.ok_or_else(|| {
        err(
            ErrorCode::ResourceNotFoundException,
            format!("Resource {arn} not found."),
        )
    })
}

pub(super) fn set_retention(
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

pub(super) fn add_tags(
    state: &Ctx,
    tags: &BTreeMap<String, String>,
    name: String,
) -> Result<(), AwsError> {
    mutate_stream(state, &name, |stream| {
        stream.add_tags(tags).map_err(|e| meta_error(state, e))
    })
}

pub(super) fn remove_tags(state: &Ctx, keys: &[String], name: String) -> Result<(), AwsError> {
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

pub(super) fn list_tags_for_stream(
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

pub(super) fn list_tags_for_resource(
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

pub(super) fn update_max_record_size(
    state: &Ctx,
    input: k::UpdateMaxRecordSizeInput,
) -> Result<(), AwsError> {
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

pub(super) fn describe_limits(state: &Ctx) -> Result<k::DescribeLimitsOutput, AwsError> {
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

pub(super) fn commitment_out(
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

pub(super) fn describe_account_settings(
    state: &Ctx,
) -> Result<k::DescribeAccountSettingsOutput, AwsError> {
    let catalog = state.catalog();
    Ok(k::DescribeAccountSettingsOutput {
        minimum_throughput_billing_commitment: Some(commitment_out(
            state,
            &catalog.commitment(&state.account),
        )),
    })
}

pub(super) fn update_account_settings(
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

pub(super) fn set_monitoring(
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

pub(super) fn put_resource_policy(
    state: &Ctx,
    input: k::PutResourcePolicyInput,
) -> Result<(), AwsError> {
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

pub(super) fn get_resource_policy(
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

pub(super) fn delete_resource_policy(
    state: &Ctx,
    input: k::DeleteResourcePolicyInput,
) -> Result<(), AwsError> {
    resource(state, &input.resource_arn)?;
    mutate_catalog(state, |c| c.resource_policies.remove(&input.resource_arn))?;
    Ok(())
}

pub(super) fn set_encryption(
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
