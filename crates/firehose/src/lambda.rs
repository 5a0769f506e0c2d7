//! The Lambda processor, without Lambda: Sluice's configuration maps a
//! function's ARN to an HTTP URL (`--firehose-lambda ARN=URL`), which gets
//! the invocation event Firehose sends a transformation function and
//! answers what the function would return (AWS's "data transformation"
//! contract):
//!
//! - event: `{"invocationId", "deliveryStreamArn", "region", "records":
//!   [{"recordId", "approximateArrivalTimestamp", "data" (base64)}]}`; read
//!   from a Kinesis stream, also `"sourceKinesisStreamArn"` and per record
//!   `"kinesisRecordMetadata": {"shardId", "partitionKey",
//!   "approximateArrivalTimestamp", "sequenceNumber", "subsequenceNumber"}`;
//! - answer (200, JSON): `{"records": [{"recordId", "result": "Ok" |
//!   "Dropped" | "ProcessingFailed", "data" (base64), "metadata":
//!   {"partitionKeys": {...}}}]}`, every recordId given back once.
//!
//! An invocation that fails (no answer, not 200, not that JSON, a recordId
//! missing or repeated) is tried again NumberOfRetries times; then its
//! records fail. Records go in invocations of at most BufferSizeInMBs of
//! data.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use base64::Engine as _;

use crate::partition::Keys;
use crate::process::{Failure, Lambda};

/// What became of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Transformed: the new data and the partition keys the function gave.
    Ok(Vec<u8>, Keys),
    Dropped,
    Failed(Failure),
}

fn failure(code: &'static str, message: String) -> Failure {
    Failure {
        output_type: "processing-failed",
        code,
        message,
    }
}

/// One record sent: its id, arrival time and data.
pub(crate) struct Sent<'a> {
    pub id: String,
    pub arrival_ms: u64,
    pub data: &'a [u8],
    /// Read from a Kinesis stream: where.
    pub kinesis: Option<&'a KinesisMeta>,
}

/// A Kinesis source record's `kinesisRecordMetadata`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KinesisMeta {
    pub shard_id: String,
    pub partition_key: String,
    pub sequence_number: String,
    /// The user record's place in a KPL aggregated record (0 otherwise).
    pub subsequence_number: u64,
    pub arrival_ms: u64,
}

/// Invokes the function at `url` for `records` (one invocation, retried):
/// an outcome per record, in order.
#[allow(clippy::too_many_arguments)]
pub(crate) fn invoke(
    url: &str,
    lambda: &Lambda,
    delivery_stream_arn: &str,
    source_stream_arn: Option<&str>,
    region: &str,
    records: &[Sent<'_>],
    timeout: Duration,
) -> Vec<Outcome> {
    let b64 = &base64::engine::general_purpose::STANDARD;
    let mut event = serde_json::json!({
        "invocationId": crate::delivery::uuid(),
        "deliveryStreamArn": delivery_stream_arn,
        "region": region,
        "records": records.iter().map(|r| {
            let mut record = serde_json::json!({
                "recordId": r.id,
                "approximateArrivalTimestamp": r.arrival_ms,
                "data": b64.encode(r.data),
            });
            if let Some(k) = r.kinesis {
                record["kinesisRecordMetadata"] = serde_json::json!({
                    "shardId": k.shard_id,
                    "partitionKey": k.partition_key,
                    "approximateArrivalTimestamp": k.arrival_ms,
                    "sequenceNumber": k.sequence_number,
                    "subsequenceNumber": k.subsequence_number,
                });
            }
            record
        }).collect::<Vec<_>>(),
    });
    if let Some(arn) = source_stream_arn {
        event["sourceKinesisStreamArn"] = serde_json::Value::String(arn.to_owned());
    }
    let body = serde_json::to_vec(&event).expect("JSON values serialize");
    let mut last = failure("Lambda.FunctionError", "not invoked".to_owned());
    for _ in 0..=lambda.retries {
        let answer = tokio::runtime::Handle::current().block_on(async {
            tokio::time::timeout(timeout, crate::http::post_json(url, &[], body.clone())).await
        });
        let answer = match answer {
            Err(_) => {
                last = failure(
                    "Lambda.FunctionError",
                    format!(
                        "The function did not answer within {} ms.",
                        timeout.as_millis()
                    ),
                );
                continue;
            }
            Ok(Err(e)) => {
                last = failure(
                    "Lambda.FunctionError",
                    format!("Invoking the function failed: {e}."),
                );
                continue;
            }
            Ok(Ok(a)) => a,
        };
        match outcomes(answer.0, &answer.1, records) {
            Ok(out) => return out,
            Err(e) => last = e,
        }
    }
    records
        .iter()
        .map(|_| Outcome::Failed(last.clone()))
        .collect()
}

fn outcomes(status: u16, body: &[u8], records: &[Sent<'_>]) -> Result<Vec<Outcome>, Failure> {
    if status != 200 {
        return Err(failure(
            "Lambda.FunctionError",
            format!("The function's URL answered {status}."),
        ));
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Answer {
        records: Vec<Record>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Record {
        record_id: String,
        result: String,
        #[serde(default)]
        data: Option<String>,
        #[serde(default)]
        metadata: Option<Metadata>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Metadata {
        #[serde(default)]
        partition_keys: BTreeMap<String, serde_json::Value>,
    }
    let answer: Answer = serde_json::from_slice(body).map_err(|e| {
        failure(
            "Lambda.JsonProcessingException",
            format!("The function's answer is not the JSON Firehose expects: {e}."),
        )
    })?;
    let mut by_id: HashMap<String, Record> = HashMap::with_capacity(answer.records.len());
    for r in answer.records {
        let id = r.record_id.clone();
        if by_id.insert(id.clone(), r).is_some() {
            return Err(failure(
                "Lambda.DuplicatedRecordId",
                format!("The function gave recordId {id} back more than once."),
            ));
        }
    }
    let b64 = &base64::engine::general_purpose::STANDARD;
    let mut out = Vec::with_capacity(records.len());
    for sent in records {
        let r = by_id.remove(&sent.id).ok_or_else(|| {
            failure(
                "Lambda.MissingRecordId",
                format!("The function did not give recordId {} back.", sent.id),
            )
        })?;
        out.push(match r.result.as_str() {
            "Ok" => {
                let data = b64.decode(r.data.unwrap_or_default()).map_err(|e| {
                    failure(
                        "Lambda.JsonProcessingException",
                        format!("Record {}'s data is not base64: {e}.", sent.id),
                    )
                })?;
                let keys = r
                    .metadata
                    .map(|m| {
                        m.partition_keys
                            .into_iter()
                            .filter_map(|(k, v)| match v {
                                serde_json::Value::Null => None,
                                serde_json::Value::String(s) => Some((k, s)),
                                other => Some((k, other.to_string())),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                Outcome::Ok(data, keys)
            }
            "Dropped" => Outcome::Dropped,
            "ProcessingFailed" => Outcome::Failed(failure(
                "Lambda.ProcessingFailedStatus",
                "The function answered ProcessingFailed for the record.".to_owned(),
            )),
            other => {
                return Err(failure(
                    "Lambda.InvalidResult",
                    format!(
                    "The function answered result {other:?}, not Ok, Dropped or ProcessingFailed."
                ),
                ))
            }
        });
    }
    if !by_id.is_empty() {
        return Err(failure(
            "Lambda.JsonProcessingException",
            "The function gave back a recordId it was not sent.".to_owned(),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(ids: &[&str]) -> Vec<Sent<'static>> {
        ids.iter()
            .map(|id| Sent {
                id: (*id).to_owned(),
                arrival_ms: 1,
                data: b"x",
                kinesis: None,
            })
            .collect()
    }

    #[test]
    fn answers_as_the_transformation_contract_says() {
        let body = br#"{"records":[
            {"recordId":"1","result":"Ok","data":"aGk=","metadata":{"partitionKeys":{"c":"7","n":3}}},
            {"recordId":"2","result":"Dropped"},
            {"recordId":"3","result":"ProcessingFailed","data":"eA=="}]}"#;
        let out = outcomes(200, body, &sent(&["1", "2", "3"])).unwrap();
        let keys: Keys = [
            ("c".to_owned(), "7".to_owned()),
            ("n".to_owned(), "3".to_owned()),
        ]
        .into();
        assert_eq!(out[0], Outcome::Ok(b"hi".to_vec(), keys));
        assert_eq!(out[1], Outcome::Dropped);
        assert!(matches!(&out[2], Outcome::Failed(f) if f.code == "Lambda.ProcessingFailedStatus"));
    }

    #[test]
    fn a_broken_answer_fails_the_invocation() {
        let three = sent(&["1", "2"]);
        for (status, body, code) in [
            (500, &b"{}"[..], "Lambda.FunctionError"),
            (200, b"nope", "Lambda.JsonProcessingException"),
            (200, br#"{"records":[{"recordId":"1","result":"Ok","data":""}]}"#, "Lambda.MissingRecordId"),
            (
                200,
                br#"{"records":[{"recordId":"1","result":"Ok"},{"recordId":"1","result":"Ok"}]}"#,
                "Lambda.DuplicatedRecordId",
            ),
            (
                200,
                br#"{"records":[{"recordId":"1","result":"Maybe"},{"recordId":"2","result":"Ok"}]}"#,
                "Lambda.InvalidResult",
            ),
        ] {
            assert_eq!(outcomes(status, body, &three).unwrap_err().code, code);
        }
    }
}
