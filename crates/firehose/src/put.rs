//! PutRecord and PutRecordBatch: records into the delivery stream's
//! internal stream, durable (fsynced) before the answer, under AWS's Direct
//! PUT quotas when limits are on.

use sluice_aws::firehose as f;
use sluice_aws::{AwsError, ErrorCode};
use sluice_meta::Scope;
use sluice_streams::ops::PutAnswer;

use crate::delivery::{self, SERVICE};
use crate::quota::Quotas;
use crate::Firehose;

/// AWS: a PutRecordBatch carries at most 4 MiB of data.
const BATCH_BYTES_MAX: usize = 4 << 20;

fn invalid(message: impl Into<String>) -> AwsError {
    AwsError::new(ErrorCode::InvalidArgumentException, message)
}

/// AWS's answer beyond the Direct PUT quotas.
fn slow_down() -> AwsError {
    AwsError::new(ErrorCode::ServiceUnavailableException, "Slow down.")
}

/// Puts `records`: per record, its RecordId or why it was refused; and
/// whether the delivery stream encrypts at rest. `batch` is PutRecordBatch
/// (quotas refuse single records; PutRecord is refused whole).
pub(crate) fn put(
    f: &Firehose,
    scope: &Scope,
    name: &str,
    records: &[&[u8]],
    batch: bool,
) -> Result<(Vec<Result<String, AwsError>>, bool), AwsError> {
    let encrypted = {
        let registry = f.registry();
        let stream = registry
            .get(scope, name)
            .ok_or_else(|| crate::ops::not_found(scope, name))?;
        if stream.kind != f::DeliveryStreamType::DirectPut {
            // moto's words (copied from AWS's).
            return Err(invalid(
                "This operation is not permitted on KinesisStreamAsSource delivery stream type.",
            ));
        }
        let plan = delivery::plan(stream, f);
        let unmapped = plan
            .as_ref()
            .ok()
            .and_then(|p| p.lambda_arn())
            .filter(|arn| f.lambda_url(arn).is_none());
        if let Some(arn) = unmapped {
            return Err(invalid(format!(
                "Sluice does not deliver this delivery stream's records yet: its Lambda function {arn} is not mapped to a URL in Sluice's configuration (--firehose-lambda ARN=URL). No record was accepted by {name}."
            )));
        }
        if let Err(why) = plan {
            // Never accepted and left undelivered: not retryable, so that no
            // SDK keeps trying.
            return Err(invalid(format!(
                "Sluice does not deliver this delivery stream's records yet: {why} (issue #16). No record was accepted by {name}."
            )));
        }
        stream.encryption.status == Some(f::DeliveryStreamEncryptionStatus::Enabled)
    };
    let total: usize = records.iter().map(|r| r.len()).sum();
    if batch && total > BATCH_BYTES_MAX {
        // AWS's words (as osquery's logs recorded them).
        return Err(invalid("Records size exceeds 4 MB limit"));
    }
    let k = delivery::key(scope, name);
    let mut admitted = vec![true; records.len()];
    if f.engine.config.enforce_limits {
        let now = f.now_ms();
        let mut quotas = f.quotas.lock().unwrap_or_else(|p| p.into_inner());
        let q = quotas
            .entry(k.clone())
            .or_insert_with(|| Quotas::for_region(&scope.region, now));
        if !q.admit_request(now) {
            return Err(slow_down());
        }
        for (ok, r) in admitted.iter_mut().zip(records) {
            *ok = q.admit_record(r.len(), now);
        }
        if !batch && !admitted[0] {
            return Err(slow_down());
        }
    }
    let taken: Vec<&[u8]> = records
        .iter()
        .zip(&admitted)
        .filter(|(_, ok)| **ok)
        .map(|(r, _)| *r)
        .collect();
    let mut ids: Vec<Result<String, AwsError>> = Vec::with_capacity(taken.len());
    if !taken.is_empty() {
        let internal = Scope::internal(SERVICE, scope);
        let pending = sluice_streams::ops::begin_internal_put(&f.engine, &internal, name, &taken)
            .map_err(|e| {
            if e.code == ErrorCode::ResourceNotFoundException {
                // The delivery stream went while this put ran.
                crate::ops::not_found(scope, name)
            } else {
                e
            }
        })?;
        let answer = crate::block_on(pending.finish(&f.engine))?;
        let PutAnswer::Records(answer) = answer else {
            unreachable!("internal puts answer as PutRecords")
        };
        ids.extend(answer.results.into_iter().map(|r| match r {
            Ok((sequence, _)) => Ok(sluice_model::SequenceNumber(sequence).to_string()),
            Err(e) => Err(AwsError::new(ErrorCode::InternalFailure, e.message)),
        }));
    }
    let mut ids = ids.into_iter();
    let results: Vec<Result<String, AwsError>> = admitted
        .iter()
        .map(|ok| match ok {
            true => ids.next().expect("one answer per record taken"),
            false => Err(slow_down()),
        })
        .collect();
    let (ok, bytes) = results
        .iter()
        .zip(records)
        .filter(|(r, _)| r.is_ok())
        .fold((0u64, 0u64), |(n, b), (_, r)| (n + 1, b + r.len() as u64));
    let throttled = admitted.iter().filter(|a| !**a).count() as u64;
    f.stats.incoming(&k, ok, bytes, throttled);
    if !batch {
        if let Some(Err(e)) = results.first() {
            return Err(e.clone());
        }
    }
    Ok((results, encrypted))
}
