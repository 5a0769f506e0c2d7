//! Stream settings, tags, policies and the account: retention, tags on
//! streams and consumers, record size, limits, account settings, enhanced
//! monitoring, resource policies, encryption.

use super::*;

/// Changes one stream: `f` sees it (checked not DELETING) and names the
/// command.
pub(super) fn change_stream(
    state: &Ctx,
    name: &str,
    f: impl FnOnce(&Stream) -> Result<Command, AwsError>,
) -> Result<Applied, AwsError> {
    state.change(|catalog, _| {
        let stream = catalog
            .stream(&state.scope, name)
            .ok_or_else(|| not_found(state, name))?;
        check_not_deleting(state, stream)?;
        f(stream)
    })
}

/// What a `ResourceARN` names: a stream, or a registered consumer.
pub(super) enum Resource {
    Stream(String),
    /// Stream and consumer names.
    Consumer(String, String),
}

pub(super) fn resource(state: &Ctx, arn: &str) -> Result<Resource, AwsError> {
    resource_in(state, &state.catalog(), state.now_ms(), arn)
}

/// [`resource`] in a given catalog.
pub(super) fn resource_in(
    state: &Ctx,
    catalog: &sluice_meta::Catalog,
    now: u64,
    arn: &str,
) -> Result<Resource, AwsError> {
    let found = match state.own_arn(&state.scope, arn) {
        Some(sluice_model::Arn::Stream { stream, .. }) => catalog
            .stream(&state.scope, &stream)
            .filter(|s| !s.is_gone(now))
            .map(|_| Resource::Stream(stream)),
        Some(sluice_model::Arn::Consumer { .. }) => {
            consumers::existing_in(state, catalog, now, arn).map(|(s, c)| Resource::Consumer(s, c))
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
    change_stream(state, &name, |stream| {
        check_active(state, stream)?;
        Ok(Command::SetRetention {
            scope: state.scope.clone(),
            name: name.clone(),
            hours,
            increase,
        })
    })?;
    if !increase {
        state.apply_retention().map_err(internal)?;
    }
    Ok(())
}

/// Whether AWS takes `c` in a tag key or value: Unicode letters (as the
/// ranges AWS's check uses), digits, white space (a space), and
/// `_ . / = + - % @ :` (kinesalite's tag checks, recorded against AWS; the
/// colon is allowed since AWS was seen to take it, kinesalite#106).
fn tag_character(c: char) -> bool {
    matches!(u32::from(c), 0xC0..=0x1FFF | 0x2C00..=0xD7FF)
        || c.is_ascii_alphanumeric()
        || "_./=+-%@: ".contains(c)
}

/// AWS's two character checks on tag keys and values, after the stream is
/// found: characters outside [`tag_character`], then `%`, which the first
/// lets through and the second refuses.
pub(super) fn check_tag_text<'a>(
    state: &Ctx,
    name: &str,
    adding: bool,
    texts: impl Iterator<Item = &'a str> + Clone,
) -> Result<(), AwsError> {
    if texts.clone().any(|t| !t.chars().all(tag_character)) {
        return Err(err(
            ErrorCode::InvalidArgumentException,
            "Some tags contain invalid characters. Valid characters: Unicode letters, digits, white space, _ . / = + - % @.",
        ));
    }
    if texts.clone().any(|t| t.contains('%')) {
        let what = if adding {
            "add tags to"
        } else {
            "remove tags from"
        };
        return Err(err(
            ErrorCode::InvalidArgumentException,
            format!(
                "Failed to {what} stream {name} under account {} because some tags contained illegal characters. The allowed characters are Unicode letters, white-spaces, '_',',','/','=','+','-','@'.",
                state.scope.account
            ),
        ));
    }
    Ok(())
}

pub(super) fn add_tags(
    state: &Ctx,
    tags: &BTreeMap<String, String>,
    name: String,
) -> Result<(), AwsError> {
    change_stream(state, &name, |_| {
        let texts = tags.iter().flat_map(|(k, v)| [k.as_str(), v.as_str()]);
        check_tag_text(state, &name, true, texts)?;
        Ok(Command::AddTags {
            scope: state.scope.clone(),
            name: name.clone(),
            tags: tags.clone(),
        })
    })?;
    Ok(())
}

pub(super) fn remove_tags(state: &Ctx, keys: &[String], name: String) -> Result<(), AwsError> {
    change_stream(state, &name, |_| {
        check_tag_text(state, &name, false, keys.iter().map(String::as_str))?;
        Ok(Command::RemoveTags {
            scope: state.scope.clone(),
            name: name.clone(),
            keys: keys.to_vec(),
        })
    })?;
    Ok(())
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
        .stream(&state.scope, &stream)
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
    let updating_ms = state.config.stream_updating_ms;
    change_stream(state, &name, |stream| {
        check_active(state, stream)?;
        Ok(Command::SetMaxRecordSize {
            scope: state.scope.clone(),
            name: name.clone(),
            kib,
            updating_ms,
        })
    })?;
    Ok(())
}

pub(super) fn describe_limits(state: &Ctx) -> Result<k::DescribeLimitsOutput, AwsError> {
    let catalog = state.catalog();
    let on_demand = catalog
        .streams_of(&state.scope)
        .filter(|s| s.mode == StreamMode::OnDemand)
        .count();
    let u32_count = i64::from;
    Ok(k::DescribeLimitsOutput {
        shard_limit: u32_count(state.config.shard_limit),
        open_shard_count: int(catalog.open_shard_count(&state.scope)),
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
            &catalog.commitment(&state.scope),
        )),
    })
}

pub(super) fn update_account_settings(
    state: &Ctx,
    input: k::UpdateAccountSettingsInput,
) -> Result<k::UpdateAccountSettingsOutput, AwsError> {
    let enable = input.minimum_throughput_billing_commitment.status
        == k::MinimumThroughputBillingCommitmentInputStatus::Enabled;
    state.change(|_, _| {
        Ok(Command::SetCommitment {
            scope: state.scope.clone(),
            enable,
        })
    })?;
    let commitment = state.catalog().commitment(&state.scope);
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
    let applied = change_stream(state, &name, |stream| {
        check_active(state, stream)?;
        Ok(Command::SetMetrics {
            scope: state.scope.clone(),
            name: name.clone(),
            metrics,
            enable,
        })
    })?;
    let (before, after) = applied.metrics;
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
    let (arn, policy) = (input.resource_arn, input.policy);
    // Checked with the writer lock held, so that no DeleteStream (which
    // drops the stream's policies) commits between the check and the insert.
    state.change(|catalog, now| {
        resource_in(state, catalog, now, &arn)?;
        if serde_json::from_str::<Value>(&policy)
            .map(|v| !v.is_object())
            .unwrap_or(true)
        {
            return Err(err(
                ErrorCode::InvalidArgumentException,
                "Policy must be a JSON document.",
            ));
        }
        Ok(Command::PutPolicy { arn, policy })
    })?;
    Ok(())
}

pub(super) fn get_resource_policy(
    state: &Ctx,
    input: k::GetResourcePolicyInput,
) -> Result<k::GetResourcePolicyOutput, AwsError> {
    resource(state, &input.resource_arn)?;
    let policy = state
        .catalog()
        .policy(&input.resource_arn)
        .unwrap_or("{}")
        .to_owned();
    Ok(k::GetResourcePolicyOutput { policy })
}

pub(super) fn delete_resource_policy(
    state: &Ctx,
    input: k::DeleteResourcePolicyInput,
) -> Result<(), AwsError> {
    let arn = input.resource_arn;
    state.change(|catalog, now| {
        resource_in(state, catalog, now, &arn)?;
        // AWS: a resource with no policy is ResourceNotFoundException.
        if catalog.policy(&arn).is_none() {
            return Err(err(
                ErrorCode::ResourceNotFoundException,
                format!("No resource policy found for resource {arn}."),
            ));
        }
        Ok(Command::DeletePolicy { arn })
    })?;
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
    let updating_ms = state.config.stream_updating_ms;
    change_stream(state, &name, |stream| {
        check_active(state, stream)?;
        Ok(Command::SetEncryption {
            scope: state.scope.clone(),
            name: name.clone(),
            key_id: start.then_some(key),
            updating_ms,
        })
    })?;
    Ok(())
}
