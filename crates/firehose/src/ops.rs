//! The twelve Firehose operations on the registry, typed by the model's
//! shapes. What the model cannot say is checked here, in AWS's words where
//! they are known (moto's messages, which it copies from AWS); otherwise
//! the words are Sluice's.

use std::collections::BTreeMap;

use sluice_aws::firehose::{self as f, Request, Response};
use sluice_aws::types::Timestamp;
use sluice_aws::{AwsError, ErrorCode};
use sluice_meta::Scope;

use crate::describe;
use crate::registry::{DeliveryStream, Destination, DESTINATION_ID};
use crate::Firehose;

/// AWS: at most 50 tags on a delivery stream.
pub const TAGS_MAX: usize = 50;
/// AWS's default quota of delivery streams per account and region.
pub const DELIVERY_STREAMS_MAX: usize = 5000;

fn err(code: ErrorCode, message: impl Into<String>) -> AwsError {
    AwsError::new(code, message)
}

fn invalid(message: impl Into<String>) -> AwsError {
    err(ErrorCode::InvalidArgumentException, message)
}

/// moto's words (copied from AWS's).
pub(crate) fn not_found(scope: &Scope, name: &str) -> AwsError {
    err(
        ErrorCode::ResourceNotFoundException,
        format!("Firehose {name} under account {} not found.", scope.account),
    )
}

fn limit(limit: Option<i64>, default: usize) -> usize {
    limit.map_or(default, |n| usize::try_from(n).unwrap_or(default))
}

pub(crate) fn call(f: &Firehose, scope: &Scope, request: Request) -> Result<Response, AwsError> {
    Ok(match request {
        Request::CreateDeliveryStream(i) => {
            let _lifecycle = f.lifecycle();
            Response::CreateDeliveryStream(create(f, scope, i)?)
        }
        Request::DeleteDeliveryStream(i) => {
            let _lifecycle = f.lifecycle();
            f.change(|r| {
                r.remove(scope, &i.delivery_stream_name)
                    .map(drop)
                    .ok_or_else(|| not_found(scope, &i.delivery_stream_name))
            })?;
            forget(f, scope, &i.delivery_stream_name);
            Response::DeleteDeliveryStream(Default::default())
        }
        Request::DescribeDeliveryStream(i) => {
            let registry = f.registry();
            let stream = registry
                .get(scope, &i.delivery_stream_name)
                .ok_or_else(|| not_found(scope, &i.delivery_stream_name))?;
            Response::DescribeDeliveryStream(f::DescribeDeliveryStreamOutput {
                delivery_stream_description: describe::delivery_stream(
                    stream,
                    i.exclusive_start_destination_id.as_deref(),
                    limit(i.limit, 10_000),
                ),
            })
        }
        Request::ListDeliveryStreams(i) => Response::ListDeliveryStreams(list(f, scope, i)),
        Request::TagDeliveryStream(i) => {
            change_stream(f, scope, &i.delivery_stream_name, |s| {
                let mut next = s.tags.clone();
                next.extend(i.tags.iter().map(|t| (t.key.clone(), t.value.clone())));
                if next.len() > TAGS_MAX {
                    return Err(too_many_tags(&s.name));
                }
                s.tags = next;
                Ok(())
            })?;
            Response::TagDeliveryStream(Default::default())
        }
        Request::UntagDeliveryStream(i) => {
            change_stream(f, scope, &i.delivery_stream_name, |s| {
                for k in &i.tag_keys {
                    s.tags.remove(k);
                }
                Ok(())
            })?;
            Response::UntagDeliveryStream(Default::default())
        }
        Request::ListTagsForDeliveryStream(i) => {
            let registry = f.registry();
            let stream = registry
                .get(scope, &i.delivery_stream_name)
                .ok_or_else(|| not_found(scope, &i.delivery_stream_name))?;
            let start = i.exclusive_start_tag_key.as_deref();
            let limit = limit(i.limit, TAGS_MAX);
            let tags: Vec<f::Tag> = stream
                .tags
                .iter()
                .filter(|(k, _)| start.is_none_or(|s| k.as_str() > s))
                .map(|(k, v)| f::Tag {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect();
            Response::ListTagsForDeliveryStream(f::ListTagsForDeliveryStreamOutput {
                has_more_tags: tags.len() > limit,
                tags: tags.into_iter().take(limit).collect(),
            })
        }
        Request::UpdateDestination(i) => {
            update_destination(f, scope, i)?;
            // The next delivery follows the new configuration.
            f.wake();
            Response::UpdateDestination(Default::default())
        }
        Request::StartDeliveryStreamEncryption(i) => {
            let wanted = enabled(i.delivery_stream_encryption_configuration_input.as_ref())?;
            let now = f.now_ms();
            change_stream(f, scope, &i.delivery_stream_name, |s| {
                count_encryption_change(s, now)?;
                if s.kind != f::DeliveryStreamType::DirectPut {
                    return Err(invalid(format!(
                        "Server-side encryption is only for delivery streams of type DirectPut; {} is {}.",
                        s.name,
                        s.kind.as_str()
                    )));
                }
                s.encryption = wanted;
                Ok(())
            })?;
            Response::StartDeliveryStreamEncryption(Default::default())
        }
        Request::StopDeliveryStreamEncryption(i) => {
            let now = f.now_ms();
            change_stream(f, scope, &i.delivery_stream_name, |s| {
                count_encryption_change(s, now)?;
                s.encryption = disabled();
                Ok(())
            })?;
            Response::StopDeliveryStreamEncryption(Default::default())
        }
        Request::PutRecord(i) => {
            let (mut results, encrypted) = crate::put::put(
                f,
                scope,
                &i.delivery_stream_name,
                &[i.record.data.0.as_slice()],
                false,
            )?;
            let record_id = results.pop().expect("one result per record")?;
            Response::PutRecord(f::PutRecordOutput {
                record_id,
                encrypted: Some(encrypted),
            })
        }
        Request::PutRecordBatch(i) => {
            let data: Vec<&[u8]> = i.records.iter().map(|r| r.data.0.as_slice()).collect();
            let (results, encrypted) =
                crate::put::put(f, scope, &i.delivery_stream_name, &data, true)?;
            let failed = results.iter().filter(|r| r.is_err()).count();
            Response::PutRecordBatch(f::PutRecordBatchOutput {
                failed_put_count: failed as i64,
                encrypted: Some(encrypted),
                request_responses: results
                    .into_iter()
                    .map(|r| match r {
                        Ok(id) => f::PutRecordBatchResponseEntry {
                            record_id: Some(id),
                            ..Default::default()
                        },
                        Err(e) => f::PutRecordBatchResponseEntry {
                            error_code: Some(e.code.name().to_owned()),
                            error_message: Some(e.message),
                            ..Default::default()
                        },
                    })
                    .collect(),
            })
        }
    })
}

/// What a deleted delivery stream leaves: its task, its records, its
/// position, its counts and quotas all go.
pub(crate) fn forget(f: &Firehose, scope: &Scope, name: &str) {
    f.stop_worker(scope, name);
    let internal = Scope::internal(crate::delivery::SERVICE, scope);
    if let Err(e) = sluice_streams::ops::delete_internal(&f.engine, &internal, name) {
        tracing::warn!(
            "firehose: deleting the records of {name} failed (removed at the next start): {}",
            e.message
        );
    }
    let k = crate::delivery::key(scope, name);
    if let Err(e) = f.positions.save(&k, None) {
        tracing::warn!("firehose: forgetting the position of {name} failed: {e}");
    }
    f.stats.forget(&k);
    f.quotas
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&k);
}

/// AWS: StartDeliveryStreamEncryption and StopDeliveryStreamEncryption
/// together at most 25 times per delivery stream in 24 hours.
const ENCRYPTION_CHANGES_PER_DAY: usize = 25;

fn count_encryption_change(s: &mut DeliveryStream, now: u64) -> Result<(), AwsError> {
    const DAY_MS: u64 = 24 * 3600 * 1000;
    s.encryption_changes_ms
        .retain(|&t| now.saturating_sub(t) < DAY_MS);
    if s.encryption_changes_ms.len() >= ENCRYPTION_CHANGES_PER_DAY {
        return Err(err(
            ErrorCode::LimitExceededException,
            format!(
                "Encryption of {} was started or stopped {ENCRYPTION_CHANGES_PER_DAY} times in the last 24 hours, the most AWS allows.",
                s.name
            ),
        ));
    }
    s.encryption_changes_ms.push(now);
    Ok(())
}

/// Changes one delivery stream, stored durably, or nothing.
fn change_stream(
    f: &Firehose,
    scope: &Scope,
    name: &str,
    change: impl FnOnce(&mut DeliveryStream) -> Result<(), AwsError>,
) -> Result<(), AwsError> {
    f.change(|r| {
        change(
            r.get_mut(scope, name)
                .ok_or_else(|| not_found(scope, name))?,
        )
    })
}

const DELIVERS: &str = "Sluice delivers to S3, extended S3 and HTTP endpoint destinations";

fn create(
    f: &Firehose,
    scope: &Scope,
    i: f::CreateDeliveryStreamInput,
) -> Result<f::CreateDeliveryStreamOutput, AwsError> {
    let name = i.delivery_stream_name.clone();
    // The destinations Sluice refuses rather than accept and drop.
    let refused = [
        (
            "RedshiftDestination",
            i.redshift_destination_configuration.is_some(),
        ),
        (
            "ElasticsearchDestination",
            i.elasticsearch_destination_configuration.is_some(),
        ),
        (
            "AmazonopensearchserviceDestination",
            i.amazonopensearchservice_destination_configuration
                .is_some(),
        ),
        (
            "SplunkDestination",
            i.splunk_destination_configuration.is_some(),
        ),
        (
            "AmazonOpenSearchServerlessDestination",
            i.amazon_open_search_serverless_destination_configuration
                .is_some(),
        ),
        (
            "SnowflakeDestination",
            i.snowflake_destination_configuration.is_some(),
        ),
        (
            "IcebergDestination",
            i.iceberg_destination_configuration.is_some(),
        ),
    ];
    let mut destinations: Vec<Destination> = Vec::new();
    destinations.extend(
        i.s3_destination_configuration
            .map(|c| Destination::S3(Box::new(c))),
    );
    destinations.extend(
        i.extended_s3_destination_configuration
            .map(|c| Destination::ExtendedS3(Box::new(c))),
    );
    destinations.extend(
        i.http_endpoint_destination_configuration
            .map(|c| Destination::HttpEndpoint(Box::new(c))),
    );
    let others = refused.iter().filter(|(_, given)| *given).count();
    if destinations.len() + others != 1 {
        // moto's words (copied from AWS's).
        return Err(invalid(
            "Exactly one destination configuration is supported for a Firehose",
        ));
    }
    if let Some((kind, _)) = refused.iter().find(|(_, given)| *given) {
        return Err(invalid(format!("{DELIVERS}; {kind} is not one of them.")));
    }
    let destination = destinations.pop().expect("one destination, counted above");
    if i.msk_source_configuration.is_some() || i.database_source_configuration.is_some() {
        return Err(invalid(
            "Sluice reads DirectPut and Kinesis stream sources; MSK and database sources are not built.",
        ));
    }
    check_prefixes(&destination)?;
    check_conversion(&destination)?;
    if let Destination::ExtendedS3(c) = &destination {
        let partitioned = c
            .dynamic_partitioning_configuration
            .as_ref()
            .is_some_and(|d| d.enabled == Some(true));
        if partitioned
            && c.error_output_prefix
                .as_deref()
                .unwrap_or_default()
                .is_empty()
        {
            // AWS: "You must specify an S3 error bucket prefix" with dynamic
            // partitioning (its dynamic-partitioning error-handling page).
            return Err(invalid(
                "ErrorOutputPrefix is required when dynamic partitioning is enabled.",
            ));
        }
    }
    let kind = i
        .delivery_stream_type
        .unwrap_or(f::DeliveryStreamType::DirectPut);
    if kind != f::DeliveryStreamType::DirectPut && i.direct_put_source_configuration.is_some() {
        return Err(invalid(
            "DirectPutSourceConfiguration is only for delivery streams of type DirectPut.",
        ));
    }
    let now = f.now_ms();
    let source = match (kind, i.kinesis_stream_source_configuration) {
        (f::DeliveryStreamType::DirectPut, None) => {
            i.direct_put_source_configuration.map(|c| f::SourceDescription {
                direct_put_source_description: Some(f::DirectPutSourceDescription {
                    throughput_hint_in_mbs: Some(c.throughput_hint_in_mbs),
                }),
                ..Default::default()
            })
        }
        (f::DeliveryStreamType::KinesisStreamAsSource, Some(c)) => Some(f::SourceDescription {
            kinesis_stream_source_description: Some(f::KinesisStreamSourceDescription {
                kinesis_stream_arn: Some(c.kinesis_stream_arn),
                role_arn: Some(c.role_arn),
                delivery_start_timestamp: Some(Timestamp::from_millis(now)),
            }),
            ..Default::default()
        }),
        (f::DeliveryStreamType::KinesisStreamAsSource, None) => {
            return Err(invalid(
                "KinesisStreamSourceConfiguration is required for a delivery stream of type KinesisStreamAsSource.",
            ))
        }
        (f::DeliveryStreamType::DirectPut, Some(_)) => {
            return Err(invalid(
                "KinesisStreamSourceConfiguration is only for delivery streams of type KinesisStreamAsSource.",
            ))
        }
        (other, _) => {
            return Err(invalid(format!(
                "Sluice reads DirectPut and Kinesis stream sources; {} is not one of them.",
                other.as_str()
            )))
        }
    };
    let encryption = match i.delivery_stream_encryption_configuration_input {
        None => disabled(),
        Some(_) if kind != f::DeliveryStreamType::DirectPut => {
            return Err(invalid(
                "Server-side encryption is only for delivery streams of type DirectPut.",
            ))
        }
        Some(e) => enabled(Some(&e))?,
    };
    let tags: BTreeMap<String, Option<String>> = i
        .tags
        .unwrap_or_default()
        .into_iter()
        .map(|t| (t.key, t.value))
        .collect();
    if tags.len() > TAGS_MAX {
        return Err(too_many_tags(&name));
    }
    let stream = DeliveryStream {
        account: scope.account.clone(),
        region: scope.region.clone(),
        name: name.clone(),
        kind,
        source,
        created_ms: now,
        updated_ms: None,
        version: 1,
        encryption,
        destination,
        tags,
        encryption_changes_ms: Vec::new(),
    };
    let arn = stream.arn();
    // Direct PUT records need their log before the first PutRecord: made
    // first, and removed again if the delivery stream is not made (a crash
    // in between leaves one that the next start removes).
    let direct = kind == f::DeliveryStreamType::DirectPut;
    // A Kinesis source is read from LATEST now: where that is, per shard.
    let start = match &stream.source {
        Some(f::SourceDescription {
            kinesis_stream_source_description: Some(k),
            ..
        }) => {
            let arn = k.kinesis_stream_arn.as_deref().unwrap_or_default();
            let found = crate::source::stream_of(arn)
                .filter(|(s, _)| s == scope)
                .and_then(|(s, n)| crate::source::start_position(&f.engine, &s, &n));
            // Sluice's words: AWS names the stream it cannot read.
            Some(found.ok_or_else(|| {
                invalid(format!(
                    "Kinesis stream {arn} was not found in account {} and region {} (Sluice reads streams of the delivery stream's own account and region).",
                    scope.account, scope.region
                ))
            })?)
        }
        _ => None,
    };
    let internal = Scope::internal(crate::delivery::SERVICE, scope);
    if direct && f.registry().get(scope, &name).is_none() {
        sluice_streams::ops::delete_internal(&f.engine, &internal, &name)?;
        sluice_streams::ops::create_internal(&f.engine, &internal, &name)?;
    }
    let made = f.change(|r| {
        if r.get(scope, &name).is_some() {
            // moto's words (copied from AWS's).
            return Err(err(
                ErrorCode::ResourceInUseException,
                format!(
                    "Firehose {name} under accountId {} already exists",
                    scope.account
                ),
            ));
        }
        if r.of(scope).count() >= DELIVERY_STREAMS_MAX {
            return Err(err(
                ErrorCode::LimitExceededException,
                format!(
                    "You have already consumed your firehose quota of {DELIVERY_STREAMS_MAX} hoses."
                ),
            ));
        }
        r.insert(stream);
        Ok(())
    });
    if let Err(e) = made {
        if direct && f.registry().get(scope, &name).is_none() {
            let _ = sluice_streams::ops::delete_internal(&f.engine, &internal, &name);
        }
        return Err(e);
    }
    let k = crate::delivery::key(scope, &name);
    if let Err(e) = f.positions.save(&k, start) {
        tracing::warn!("firehose: setting the position of {name} failed: {e}");
    }
    f.spawn(scope, &name);
    // Accepted as AWS would accept it; say now, not only at the first put,
    // that Sluice will refuse its records.
    if let Some(why) = f
        .registry()
        .get(scope, &name)
        .and_then(|s| crate::delivery::plan(s, f).err())
    {
        tracing::warn!(
            "firehose: {name} was created, but Sluice refuses its records until it can deliver them: {why}"
        );
    }
    Ok(f::CreateDeliveryStreamOutput {
        delivery_stream_arn: Some(arn),
    })
}

/// Data format conversion's requirements (AWS's developer guide, "Record
/// format conversion requirements"): S3 compression off (the Parquet
/// pages are compressed instead) and a buffer of at least 64 MiB; each of
/// its three parts given when it is enabled. The words are Sluice's.
fn check_conversion(destination: &Destination) -> Result<(), AwsError> {
    let Destination::ExtendedS3(c) = destination else {
        return Ok(());
    };
    let Some(d) = c
        .data_format_conversion_configuration
        .as_ref()
        .filter(|d| d.enabled != Some(false))
    else {
        return Ok(());
    };
    if d.schema_configuration.is_none()
        || d.input_format_configuration.is_none()
        || d.output_format_configuration.is_none()
    {
        return Err(invalid(
            "SchemaConfiguration, InputFormatConfiguration and OutputFormatConfiguration are required when data format conversion is enabled.",
        ));
    }
    if c.compression_format
        .is_some_and(|f| f != f::CompressionFormat::Uncompressed)
    {
        return Err(invalid(
            "CompressionFormat must be UNCOMPRESSED when data format conversion is enabled.",
        ));
    }
    if c.buffering_hints
        .as_ref()
        .and_then(|h| h.size_in_mbs)
        .is_some_and(|s| s < 64)
    {
        return Err(invalid(
            "BufferingHints.SizeInMBs must be at least 64 when data format conversion is enabled.",
        ));
    }
    Ok(())
}

/// The destination's prefixes, checked as AWS checks them when a delivery
/// stream is configured (InvalidArgumentException, in Sluice's words).
fn check_prefixes(destination: &Destination) -> Result<(), AwsError> {
    use crate::keys::check;
    let s3 = |prefix: &Option<String>, error: &Option<String>, dynamic: bool| {
        check(prefix.as_deref(), false, dynamic)?;
        check(error.as_deref().filter(|e| !e.is_empty()), true, dynamic)
    };
    let checked = match destination {
        Destination::S3(c) => s3(&c.prefix, &c.error_output_prefix, false),
        Destination::ExtendedS3(c) => {
            let dynamic = c
                .dynamic_partitioning_configuration
                .as_ref()
                .is_some_and(|d| d.enabled == Some(true));
            s3(&c.prefix, &c.error_output_prefix, dynamic)
        }
        Destination::HttpEndpoint(c) => s3(
            &c.s3_configuration.prefix,
            &c.s3_configuration.error_output_prefix,
            false,
        ),
    };
    checked.map_err(|e| invalid(format!("Invalid prefix: {e}.")))?;
    let (bucket_arn, prefix, error_prefix, dynamic) = match destination {
        Destination::S3(c) => (&c.bucket_arn, &c.prefix, &c.error_output_prefix, false),
        Destination::ExtendedS3(c) => (
            &c.bucket_arn,
            &c.prefix,
            &c.error_output_prefix,
            c.dynamic_partitioning_configuration
                .as_ref()
                .is_some_and(|d| d.enabled == Some(true)),
        ),
        Destination::HttpEndpoint(c) => (
            &c.s3_configuration.bucket_arn,
            &c.s3_configuration.prefix,
            &c.s3_configuration.error_output_prefix,
            false,
        ),
    };
    if prefix.as_deref().is_some_and(|p| p.contains("!{"))
        && error_prefix.as_deref().unwrap_or_default().is_empty()
    {
        // AWS's words, typo included (terraform-provider-aws#13416 and
        // serverless#6015 quote them).
        return Err(invalid(
            "Ths supplied prefix(es) do not satisfy the following constraint: ErrorOutputPrefix cannot be null or empty when Prefix contains expressions",
        ));
    }
    check_directory(bucket_arn, prefix.as_deref(), None, dynamic)?;
    check_directory(
        bucket_arn,
        error_prefix.as_deref().filter(|e| !e.is_empty()),
        Some("processing-failed"),
        dynamic,
    )?;
    // Extended S3's backup of source records: its own bucket and prefix.
    if let Destination::ExtendedS3(c) = destination {
        // Sluice's words: AWS's for an unknown zone are not known.
        crate::keys::zone(c.custom_time_zone.as_deref())
            .map_err(|e| invalid(format!("{e} (an IANA name such as America/New_York).")))?;
        if c.s3_backup_mode == Some(f::S3BackupMode::Enabled) {
            let Some(b) = &c.s3_backup_configuration else {
                return Err(invalid(
                    "S3BackupConfiguration is required when S3BackupMode is Enabled.",
                ));
            };
            check(b.prefix.as_deref(), false, false)
                .map_err(|e| invalid(format!("Invalid prefix: {e}.")))?;
            check_directory(&b.bucket_arn, b.prefix.as_deref(), None, false)?;
        }
    }
    Ok(())
}

/// A bucket is a directory under the data directory: its name must be one,
/// and the keys a prefix makes must be paths in it (no empty, `.` or `..`
/// segment). Sluice's words: AWS has no such rule.
fn check_directory(
    bucket_arn: &str,
    prefix: Option<&str>,
    error_type: Option<&str>,
    dynamic: bool,
) -> Result<(), AwsError> {
    let bucket = crate::objects::bucket_of(bucket_arn)
        .ok_or_else(|| invalid(format!("BucketARN {bucket_arn} names no bucket.")))?;
    if error_type.is_some() && prefix.is_none() {
        return Ok(());
    }
    // Partition keys are only known at delivery; the rest is checked here.
    let key = if dynamic {
        "k".to_owned()
    } else {
        let at = crate::keys::Utc::from_millis(0);
        crate::keys::evaluate(prefix, at, error_type, &mut || "r".repeat(11))
            .map_err(|e| invalid(format!("Invalid prefix: {e}.")))?
            + "k"
    };
    crate::objects::path_of(std::path::Path::new("/"), bucket, &key)
        .map(drop)
        .map_err(|e| {
            // Name what was configured, not the sample key.
            let what = if crate::objects::path_of(std::path::Path::new("/"), bucket, "k").is_err() {
                e
            } else {
                format!(
                    "prefix {:?} makes object keys with an empty, '.' or '..' path segment, which a directory bucket cannot hold",
                    prefix.unwrap_or_default()
                )
            };
            invalid(format!(
                "Sluice keeps buckets as directories, and this one cannot be: {what}."
            ))
        })
}

fn disabled() -> f::DeliveryStreamEncryptionConfiguration {
    f::DeliveryStreamEncryptionConfiguration {
        status: Some(f::DeliveryStreamEncryptionStatus::Disabled),
        ..Default::default()
    }
}

/// The encryption a `DeliveryStreamEncryptionConfigurationInput` asks for
/// (none given: an AWS-owned key).
fn enabled(
    given: Option<&f::DeliveryStreamEncryptionConfigurationInput>,
) -> Result<f::DeliveryStreamEncryptionConfiguration, AwsError> {
    let key_type = given.map_or(f::KeyType::AwsOwnedCmk, |g| g.key_type);
    let key_arn = given.and_then(|g| g.key_arn.clone());
    match (key_type, &key_arn) {
        (f::KeyType::CustomerManagedCmk, None) => Err(invalid(
            "KeyARN is required when KeyType is CUSTOMER_MANAGED_CMK.",
        )),
        // AWS: with AWS_OWNED_CMK, Firehose uses a service-account key
        // (a KeyARN given is not that key).
        _ => Ok(f::DeliveryStreamEncryptionConfiguration {
            key_arn: key_arn.filter(|_| key_type == f::KeyType::CustomerManagedCmk),
            key_type: Some(key_type),
            status: Some(f::DeliveryStreamEncryptionStatus::Enabled),
            failure_description: None,
        }),
    }
}

fn too_many_tags(name: &str) -> AwsError {
    err(
        ErrorCode::LimitExceededException,
        format!("A delivery stream can have at most {TAGS_MAX} tags; {name} would have more."),
    )
}

fn list(
    f: &Firehose,
    scope: &Scope,
    i: f::ListDeliveryStreamsInput,
) -> f::ListDeliveryStreamsOutput {
    let start = i.exclusive_start_delivery_stream_name.as_deref();
    let limit = limit(i.limit, 10);
    let registry = f.registry();
    let names: Vec<String> = registry
        .of(scope)
        .filter(|s| i.delivery_stream_type.is_none_or(|k| s.kind == k))
        .filter(|s| start.is_none_or(|start| s.name.as_str() > start))
        .map(|s| s.name.clone())
        .collect();
    f::ListDeliveryStreamsOutput {
        has_more_delivery_streams: names.len() > limit,
        delivery_stream_names: names.into_iter().take(limit).collect(),
    }
}

fn update_destination(
    f: &Firehose,
    scope: &Scope,
    i: f::UpdateDestinationInput,
) -> Result<(), AwsError> {
    let name = i.delivery_stream_name.clone();
    let now = f.now_ms();
    let refused = i.redshift_destination_update.is_some()
        || i.elasticsearch_destination_update.is_some()
        || i.amazonopensearchservice_destination_update.is_some()
        || i.splunk_destination_update.is_some()
        || i.amazon_open_search_serverless_destination_update.is_some()
        || i.snowflake_destination_update.is_some()
        || i.iceberg_destination_update.is_some();
    change_stream(f, scope, &name, |s| {
        if i.current_delivery_stream_version_id.parse::<u64>().ok() != Some(s.version) {
            return Err(err(
                ErrorCode::ConcurrentModificationException,
                format!(
                    "Cannot update firehose: {name} since the current version id: {} and the specified version id: {} do not match",
                    s.version, i.current_delivery_stream_version_id
                ),
            ));
        }
        if i.destination_id != DESTINATION_ID {
            return Err(invalid(format!(
                "Destination Id {} not found for delivery stream {name}.",
                i.destination_id
            )));
        }
        let updates = usize::from(i.s3_destination_update.is_some())
            + usize::from(i.extended_s3_destination_update.is_some())
            + usize::from(i.http_endpoint_destination_update.is_some())
            + usize::from(refused);
        if updates != 1 || refused {
            return Err(invalid(format!(
                "Exactly one destination update is supported for a Firehose; {DELIVERS}."
            )));
        }
        let next = match (&s.destination, &i) {
            (Destination::S3(c), i) if i.s3_destination_update.is_some() => {
                let mut c = c.clone();
                merge_s3(&mut c, i.s3_destination_update.as_ref().expect("checked"));
                Destination::S3(c)
            }
            (Destination::S3(c), i) if i.extended_s3_destination_update.is_some() => {
                let mut c = Box::new(describe::extended(c));
                merge_extended(
                    &mut c,
                    i.extended_s3_destination_update.as_ref().expect("checked"),
                )?;
                Destination::ExtendedS3(c)
            }
            (Destination::ExtendedS3(c), i) => {
                let mut c = c.clone();
                match (&i.s3_destination_update, &i.extended_s3_destination_update) {
                    (Some(u), _) => merge_extended(&mut c, &extended_update(u))?,
                    (_, Some(u)) => merge_extended(&mut c, u)?,
                    _ => return Err(wrong_kind()),
                }
                Destination::ExtendedS3(c)
            }
            (Destination::HttpEndpoint(c), i) => {
                let Some(u) = &i.http_endpoint_destination_update else {
                    return Err(wrong_kind());
                };
                let mut c = c.clone();
                merge_http(&mut c, u);
                Destination::HttpEndpoint(c)
            }
            _ => return Err(wrong_kind()),
        };
        check_prefixes(&next)?;
        check_conversion(&next)?;
        // A delivery stream that takes records keeps a configuration Sluice
        // delivers: records it accepted must not wait for a delivery that
        // never comes.
        if crate::delivery::plan(s, f).is_ok() {
            let mut changed = s.clone();
            changed.destination = next.clone();
            if let Err(why) = crate::delivery::plan(&changed, f) {
                return Err(invalid(format!(
                    "Sluice does not deliver this configuration yet: {why} (issue #16). {name} takes records, which would not be delivered, so its destination was not changed."
                )));
            }
        }
        s.destination = next;
        s.version += 1;
        s.updated_ms = Some(now);
        Ok(())
    })
}

fn wrong_kind() -> AwsError {
    invalid("The update does not apply to this delivery stream's destination; Sluice does not change a destination's kind.")
}

fn set<T: Clone>(field: &mut Option<T>, update: &Option<T>) {
    if update.is_some() {
        field.clone_from(update);
    }
}

fn merge_buffering(field: &mut Option<f::BufferingHints>, update: &Option<f::BufferingHints>) {
    if let Some(u) = update {
        let b = field.get_or_insert_with(Default::default);
        set(&mut b.size_in_mbs, &u.size_in_mbs);
        set(&mut b.interval_in_seconds, &u.interval_in_seconds);
    }
}

fn merge_s3(c: &mut f::S3DestinationConfiguration, u: &f::S3DestinationUpdate) {
    if let Some(v) = &u.role_arn {
        c.role_arn.clone_from(v);
    }
    if let Some(v) = &u.bucket_arn {
        c.bucket_arn.clone_from(v);
    }
    set(&mut c.prefix, &u.prefix);
    set(&mut c.error_output_prefix, &u.error_output_prefix);
    merge_buffering(&mut c.buffering_hints, &u.buffering_hints);
    set(&mut c.compression_format, &u.compression_format);
    set(&mut c.encryption_configuration, &u.encryption_configuration);
    merge_logging(
        &mut c.cloud_watch_logging_options,
        &u.cloud_watch_logging_options,
    );
}

/// Members given replace those there; the others are kept (AWS: "If any
/// of the parameters are not specified in the call, the existing values
/// are retained").
fn merge_logging(
    field: &mut Option<f::CloudWatchLoggingOptions>,
    update: &Option<f::CloudWatchLoggingOptions>,
) {
    if let Some(u) = update {
        let o = field.get_or_insert_with(Default::default);
        set(&mut o.enabled, &u.enabled);
        set(&mut o.log_group_name, &u.log_group_name);
        set(&mut o.log_stream_name, &u.log_stream_name);
    }
}

fn merge_processing(
    field: &mut Option<f::ProcessingConfiguration>,
    update: &Option<f::ProcessingConfiguration>,
) {
    if let Some(u) = update {
        let p = field.get_or_insert_with(Default::default);
        set(&mut p.enabled, &u.enabled);
        set(&mut p.processors, &u.processors);
    }
}

/// An S3 backup update: merged into the backup there, or, if there is
/// none, the backup (which then needs its role and bucket).
fn merge_backup(
    field: &mut Option<f::S3DestinationConfiguration>,
    update: &Option<f::S3DestinationUpdate>,
) -> Result<(), AwsError> {
    let Some(u) = update else {
        return Ok(());
    };
    match field {
        Some(b) => merge_s3(b, u),
        None => {
            let (Some(role), Some(bucket)) = (&u.role_arn, &u.bucket_arn) else {
                return Err(invalid(
                    "S3BackupUpdate needs RoleARN and BucketARN: the delivery stream has no S3 backup yet.",
                ));
            };
            let mut b = f::S3DestinationConfiguration {
                role_arn: role.clone(),
                bucket_arn: bucket.clone(),
                ..Default::default()
            };
            merge_s3(&mut b, u);
            *field = Some(b);
        }
    }
    Ok(())
}

/// An S3 update as an extended one.
fn extended_update(u: &f::S3DestinationUpdate) -> f::ExtendedS3DestinationUpdate {
    f::ExtendedS3DestinationUpdate {
        role_arn: u.role_arn.clone(),
        bucket_arn: u.bucket_arn.clone(),
        prefix: u.prefix.clone(),
        error_output_prefix: u.error_output_prefix.clone(),
        buffering_hints: u.buffering_hints.clone(),
        compression_format: u.compression_format,
        encryption_configuration: u.encryption_configuration.clone(),
        cloud_watch_logging_options: u.cloud_watch_logging_options.clone(),
        ..Default::default()
    }
}

fn merge_extended(
    c: &mut f::ExtendedS3DestinationConfiguration,
    u: &f::ExtendedS3DestinationUpdate,
) -> Result<(), AwsError> {
    if let Some(v) = &u.role_arn {
        c.role_arn.clone_from(v);
    }
    if let Some(v) = &u.bucket_arn {
        c.bucket_arn.clone_from(v);
    }
    set(&mut c.prefix, &u.prefix);
    set(&mut c.error_output_prefix, &u.error_output_prefix);
    merge_buffering(&mut c.buffering_hints, &u.buffering_hints);
    set(&mut c.compression_format, &u.compression_format);
    // A choice of one (no encryption, or a KMS key): replaced whole.
    set(&mut c.encryption_configuration, &u.encryption_configuration);
    merge_logging(
        &mut c.cloud_watch_logging_options,
        &u.cloud_watch_logging_options,
    );
    merge_processing(&mut c.processing_configuration, &u.processing_configuration);
    set(&mut c.s3_backup_mode, &u.s3_backup_mode);
    merge_backup(&mut c.s3_backup_configuration, &u.s3_backup_update)?;
    set(
        &mut c.data_format_conversion_configuration,
        &u.data_format_conversion_configuration,
    );
    set(
        &mut c.dynamic_partitioning_configuration,
        &u.dynamic_partitioning_configuration,
    );
    set(&mut c.file_extension, &u.file_extension);
    set(&mut c.custom_time_zone, &u.custom_time_zone);
    Ok(())
}

fn merge_http(
    c: &mut f::HttpEndpointDestinationConfiguration,
    u: &f::HttpEndpointDestinationUpdate,
) {
    if let Some(e) = &u.endpoint_configuration {
        let endpoint = &mut c.endpoint_configuration;
        endpoint.url.clone_from(&e.url);
        set(&mut endpoint.name, &e.name);
        // The access key is kept unless a new one is given.
        set(&mut endpoint.access_key, &e.access_key);
    }
    if let Some(b) = &u.buffering_hints {
        let hints = c.buffering_hints.get_or_insert_with(Default::default);
        set(&mut hints.size_in_mbs, &b.size_in_mbs);
        set(&mut hints.interval_in_seconds, &b.interval_in_seconds);
    }
    merge_logging(
        &mut c.cloud_watch_logging_options,
        &u.cloud_watch_logging_options,
    );
    if let Some(r) = &u.request_configuration {
        let request = c.request_configuration.get_or_insert_with(Default::default);
        set(&mut request.content_encoding, &r.content_encoding);
        set(&mut request.common_attributes, &r.common_attributes);
    }
    merge_processing(&mut c.processing_configuration, &u.processing_configuration);
    set(&mut c.role_arn, &u.role_arn);
    if let Some(r) = &u.retry_options {
        let retry = c.retry_options.get_or_insert_with(Default::default);
        set(&mut retry.duration_in_seconds, &r.duration_in_seconds);
    }
    set(&mut c.s3_backup_mode, &u.s3_backup_mode);
    if let Some(s3) = &u.s3_update {
        merge_s3(&mut c.s3_configuration, s3);
    }
    set(
        &mut c.secrets_manager_configuration,
        &u.secrets_manager_configuration,
    );
}
