//! A delivery stream described as DescribeDeliveryStream answers: the
//! configuration given, with AWS's defaults filled in and secrets left
//! out. (Defaults from AWS's API reference and a DescribeDeliveryStream
//! answer of AWS recorded in turbot/steampipe-plugin-aws#769.)

use sluice_aws::firehose as f;
use sluice_aws::types::Timestamp;

use crate::registry::{DeliveryStream, Destination, DESTINATION_ID};

/// AWS's buffering defaults: 5 MB or 300 seconds, whichever comes first.
/// Buffering hints with AWS's defaults: 5 MB (128 with data format
/// conversion) and 300 s.
pub(crate) fn buffering(given: &Option<f::BufferingHints>, converting: bool) -> f::BufferingHints {
    let given = given.clone().unwrap_or_default();
    f::BufferingHints {
        size_in_mbs: given.size_in_mbs.or(Some(if converting { 128 } else { 5 })),
        interval_in_seconds: given.interval_in_seconds.or(Some(300)),
    }
}

fn logging(given: &Option<f::CloudWatchLoggingOptions>) -> Option<f::CloudWatchLoggingOptions> {
    let mut options = given.clone().unwrap_or_default();
    options.enabled = options.enabled.or(Some(false));
    Some(options)
}

fn encryption(given: &Option<f::EncryptionConfiguration>) -> f::EncryptionConfiguration {
    given.clone().unwrap_or(f::EncryptionConfiguration {
        no_encryption_config: Some(f::NoEncryptionConfig::NoEncryption),
        kms_encryption_config: None,
    })
}

/// An `S3DestinationDescription` of an S3 configuration.
pub(crate) fn s3(c: &f::S3DestinationConfiguration) -> f::S3DestinationDescription {
    f::S3DestinationDescription {
        role_arn: c.role_arn.clone(),
        bucket_arn: c.bucket_arn.clone(),
        prefix: c.prefix.clone(),
        error_output_prefix: c.error_output_prefix.clone(),
        buffering_hints: buffering(&c.buffering_hints, false),
        compression_format: c
            .compression_format
            .unwrap_or(f::CompressionFormat::Uncompressed),
        encryption_configuration: encryption(&c.encryption_configuration),
        cloud_watch_logging_options: logging(&c.cloud_watch_logging_options),
    }
}

/// The S3 part of an extended S3 configuration.
fn s3_part(c: &f::ExtendedS3DestinationConfiguration) -> f::S3DestinationConfiguration {
    f::S3DestinationConfiguration {
        role_arn: c.role_arn.clone(),
        bucket_arn: c.bucket_arn.clone(),
        prefix: c.prefix.clone(),
        error_output_prefix: c.error_output_prefix.clone(),
        buffering_hints: c.buffering_hints.clone(),
        compression_format: c.compression_format,
        encryption_configuration: c.encryption_configuration.clone(),
        cloud_watch_logging_options: c.cloud_watch_logging_options.clone(),
    }
}

/// An S3 configuration as the extended kind (what AWS describes both ways).
pub(crate) fn extended(c: &f::S3DestinationConfiguration) -> f::ExtendedS3DestinationConfiguration {
    f::ExtendedS3DestinationConfiguration {
        role_arn: c.role_arn.clone(),
        bucket_arn: c.bucket_arn.clone(),
        prefix: c.prefix.clone(),
        error_output_prefix: c.error_output_prefix.clone(),
        buffering_hints: c.buffering_hints.clone(),
        compression_format: c.compression_format,
        encryption_configuration: c.encryption_configuration.clone(),
        cloud_watch_logging_options: c.cloud_watch_logging_options.clone(),
        ..Default::default()
    }
}

/// An `ExtendedS3DestinationDescription`.
pub(crate) fn extended_s3(
    c: &f::ExtendedS3DestinationConfiguration,
) -> f::ExtendedS3DestinationDescription {
    let mut s3 = s3(&s3_part(c));
    let converting = c
        .data_format_conversion_configuration
        .as_ref()
        .is_some_and(|d| d.enabled != Some(false));
    s3.buffering_hints = buffering(&c.buffering_hints, converting);
    f::ExtendedS3DestinationDescription {
        role_arn: s3.role_arn,
        bucket_arn: s3.bucket_arn,
        prefix: s3.prefix,
        error_output_prefix: s3.error_output_prefix,
        buffering_hints: s3.buffering_hints,
        compression_format: s3.compression_format,
        encryption_configuration: s3.encryption_configuration,
        cloud_watch_logging_options: s3.cloud_watch_logging_options,
        processing_configuration: c.processing_configuration.clone(),
        s3_backup_mode: Some(c.s3_backup_mode.unwrap_or(f::S3BackupMode::Disabled)),
        s3_backup_description: c.s3_backup_configuration.as_ref().map(self::s3),
        data_format_conversion_configuration: c.data_format_conversion_configuration.clone(),
        dynamic_partitioning_configuration: c.dynamic_partitioning_configuration.clone(),
        file_extension: c.file_extension.clone(),
        custom_time_zone: c.custom_time_zone.clone(),
    }
}

/// An `HttpEndpointDestinationDescription` (the access key left out).
pub(crate) fn http_endpoint(
    c: &f::HttpEndpointDestinationConfiguration,
) -> f::HttpEndpointDestinationDescription {
    let given = c.buffering_hints.clone().unwrap_or_default();
    let mut request = c.request_configuration.clone().unwrap_or_default();
    request.content_encoding = request.content_encoding.or(Some(f::ContentEncoding::None));
    let mut retry = c.retry_options.clone().unwrap_or_default();
    retry.duration_in_seconds = retry.duration_in_seconds.or(Some(300));
    f::HttpEndpointDestinationDescription {
        endpoint_configuration: Some(f::HttpEndpointDescription {
            url: Some(c.endpoint_configuration.url.clone()),
            name: c.endpoint_configuration.name.clone(),
        }),
        buffering_hints: Some(f::HttpEndpointBufferingHints {
            size_in_mbs: given.size_in_mbs.or(Some(5)),
            interval_in_seconds: given.interval_in_seconds.or(Some(300)),
        }),
        cloud_watch_logging_options: logging(&c.cloud_watch_logging_options),
        request_configuration: Some(request),
        processing_configuration: c.processing_configuration.clone(),
        role_arn: c.role_arn.clone(),
        retry_options: Some(retry),
        s3_backup_mode: Some(
            c.s3_backup_mode
                .unwrap_or(f::HttpEndpointS3BackupMode::FailedDataOnly),
        ),
        s3_destination_description: Some(s3(&c.s3_configuration)),
        secrets_manager_configuration: c.secrets_manager_configuration.clone(),
    }
}

/// The `DestinationDescription`. An S3 destination is described both ways,
/// as AWS does.
pub(crate) fn destination(stream: &DeliveryStream) -> f::DestinationDescription {
    let mut out = f::DestinationDescription {
        destination_id: DESTINATION_ID.to_owned(),
        ..Default::default()
    };
    match &stream.destination {
        Destination::S3(c) => {
            out.s3_destination_description = Some(s3(c));
            out.extended_s3_destination_description = Some(extended_s3(&extended(c)));
        }
        Destination::ExtendedS3(c) => {
            out.s3_destination_description = Some(s3(&s3_part(c)));
            out.extended_s3_destination_description = Some(extended_s3(c));
        }
        Destination::HttpEndpoint(c) => {
            out.http_endpoint_destination_description = Some(http_endpoint(c));
        }
    }
    out
}

/// The `DeliveryStreamDescription`, with the destinations after
/// `exclusive_start` (there is one) up to `limit`.
pub(crate) fn delivery_stream(
    stream: &DeliveryStream,
    exclusive_start: Option<&str>,
    limit: usize,
) -> f::DeliveryStreamDescription {
    let destinations = match exclusive_start {
        Some(id) if id >= DESTINATION_ID => Vec::new(),
        _ => vec![destination(stream)],
    };
    let more = destinations.len() > limit;
    f::DeliveryStreamDescription {
        delivery_stream_name: stream.name.clone(),
        delivery_stream_arn: stream.arn(),
        delivery_stream_status: f::DeliveryStreamStatus::Active,
        failure_description: None,
        delivery_stream_encryption_configuration: Some(stream.encryption.clone()),
        delivery_stream_type: stream.kind,
        version_id: stream.version.to_string(),
        create_timestamp: Some(Timestamp::from_millis(stream.created_ms)),
        last_update_timestamp: stream.updated_ms.map(Timestamp::from_millis),
        source: stream.source.clone(),
        destinations: destinations.into_iter().take(limit).collect(),
        has_more_destinations: more,
    }
}
