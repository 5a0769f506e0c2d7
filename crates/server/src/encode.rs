//! Answers in the request's protocol: typed answers through the general
//! encoders, and the large ones (GetRecords, PutRecords, SubscribeToShard's
//! events) written straight into AWS JSON or CBOR bytes from what the engine
//! hands back (no value tree for up to 10 MiB of records).

use std::collections::BTreeMap;

use bytes::Bytes;
use sluice_aws::kinesis::Response;
use sluice_aws::{cbor, kinesis};
use sluice_model::SequenceNumber;
use sluice_streams::fanout::Event;
use sluice_streams::ops::{is_encrypted, PutAnswer, PutRecordsAnswer, Records};

/// Another service's answer (Firehose's): its output shape as JSON, or as
/// CBOR typed by the model.
pub fn shape(
    model: &sluice_aws::ApiModel,
    operation: &str,
    output: &serde_json::Value,
    cbor: bool,
) -> Bytes {
    if !cbor {
        return Bytes::from(serde_json::to_vec(output).expect("JSON values serialize"));
    }
    match model
        .operation(operation)
        .and_then(|op| op.output.as_deref())
    {
        Some(shape) => Bytes::from(sluice_aws::cbor::encode_cbor_shape(model, shape, output)),
        None => Bytes::from_static(b"\xa0"),
    }
}

/// A typed answer in the request's protocol.
pub fn response(response: &Response, cbor: bool) -> Bytes {
    let value = response.to_value();
    if cbor {
        Bytes::from(cbor::encode_cbor_output(
            kinesis(),
            response.operation(),
            &value,
        ))
    } else {
        Bytes::from(serde_json::to_vec(&value).expect("JSON values serialize"))
    }
}

/// GetRecords' answer.
pub fn records(answer: &Records, cbor: bool) -> Bytes {
    if !cbor {
        use sluice_aws::fast::{write_get_records_end, write_get_records_start};
        let mut out = Vec::with_capacity(records_json_size(&answer.records) + 600);
        write_get_records_start(&mut out);
        write_records_json(&answer.records, &mut out);
        write_get_records_end(
            answer.millis_behind_latest,
            answer.next_shard_iterator.as_deref(),
            &answer.child_shards,
            &mut out,
        );
        return Bytes::from(out);
    }
    // Data as byte strings.
    let mut out = Vec::with_capacity(records_cbor_size(&answer.records) + 600);
    write_records_cbor(
        &answer.records,
        answer.millis_behind_latest,
        answer
            .next_shard_iterator
            .as_deref()
            .map(sluice_aws::fast_cbor::RecordsTail::NextShardIterator),
        &answer.child_shards,
        &mut out,
    );
    Bytes::from(out)
}

/// A put's answer.
pub fn put(answer: PutAnswer, cbor: bool) -> Bytes {
    match answer {
        PutAnswer::Record(output) => response(&Response::PutRecord(output), cbor),
        PutAnswer::Records(answer) => Bytes::from(put_records(&answer, cbor)),
    }
}

/// A PutRecords answer, written straight into bytes.
fn put_records(put: &PutRecordsAnswer, cbor: bool) -> Vec<u8> {
    let shard_ids: BTreeMap<u32, String> = put
        .results
        .iter()
        .flatten()
        .map(|(_, shard)| (*shard, sluice_meta::shard_id(*shard)))
        .collect();
    // Every sequence number rendered into one buffer, 56 digits each.
    let digits: Vec<u8> = put
        .results
        .iter()
        .flat_map(|r| SequenceNumber(r.as_ref().map_or(0, |(seq, _)| *seq)).to_ascii())
        .collect();
    let width = sluice_model::SEQUENCE_NUMBER_DIGITS;
    let mut out = Vec::with_capacity(64 + put.results.len() * 112);
    let results = put.results.iter().enumerate().map(|(i, r)| match r {
        Ok((_, shard)) => sluice_aws::fast::PutRecordsResult::Ok {
            sequence_number: std::str::from_utf8(&digits[i * width..(i + 1) * width])
                .expect("digits are ASCII"),
            shard_id: &shard_ids[shard],
        },
        Err(e) => sluice_aws::fast::PutRecordsResult::Failed {
            error_code: e.code,
            error_message: &e.message,
        },
    });
    if cbor {
        sluice_aws::fast_cbor::write_put_records_output_cbor(
            put.failed,
            results,
            put.encryption.as_str(),
            &mut out,
        );
    } else {
        sluice_aws::fast::write_put_records_output(
            put.failed,
            results,
            put.encryption.as_str(),
            &mut out,
        );
    }
    out
}

/// One message of SubscribeToShard's event stream.
pub fn event(event: Event, cbor: bool) -> Bytes {
    let message = match event {
        Event::Initial => sluice_aws::eventstream::initial_response(cbor),
        Event::Error(e) => sluice_aws::eventstream::exception(cbor, &e),
        Event::Records {
            records,
            millis_behind_latest,
            continuation_sequence_number,
            child_shards,
        } => {
            let continuation = continuation_sequence_number.as_deref();
            let payload = if cbor {
                let mut out = Vec::with_capacity(records_cbor_size(&records) + 600);
                write_records_cbor(
                    &records,
                    millis_behind_latest,
                    continuation
                        .map(sluice_aws::fast_cbor::RecordsTail::ContinuationSequenceNumber),
                    &child_shards,
                    &mut out,
                );
                out
            } else {
                let mut out = Vec::with_capacity(records_json_size(&records) + 600);
                sluice_aws::fast::write_get_records_start(&mut out);
                write_records_json(&records, &mut out);
                sluice_aws::fast::write_subscribe_event_end(
                    continuation,
                    millis_behind_latest,
                    &child_shards,
                    &mut out,
                );
                out
            };
            sluice_aws::eventstream::event(
                sluice_aws::kinesis::SUBSCRIBE_TO_SHARD_EVENT,
                cbor,
                payload,
            )
        }
    };
    Bytes::from(message)
}

/// About how many bytes [`write_records_cbor`] writes.
fn records_cbor_size(records: &[sluice_log::Record]) -> usize {
    records
        .iter()
        .map(|r| r.data.len() + r.partition_key.len() + 140)
        .sum()
}

/// A GetRecords answer or SubscribeToShardEvent in AWS CBOR (see
/// `sluice_aws::fast_cbor::write_records_answer_cbor`).
fn write_records_cbor(
    records: &[sluice_log::Record],
    millis_behind_latest: u64,
    tail: Option<sluice_aws::fast_cbor::RecordsTail<'_>>,
    children: &[sluice_aws::fast::ChildShard],
    out: &mut Vec<u8>,
) {
    let width = sluice_model::SEQUENCE_NUMBER_DIGITS;
    let digits: Vec<u8> = records
        .iter()
        .flat_map(|r| SequenceNumber(r.sequence).to_ascii())
        .collect();
    let keys: Vec<std::borrow::Cow<'_, str>> = records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.partition_key))
        .collect();
    let got = records
        .iter()
        .enumerate()
        .map(|(i, r)| sluice_aws::fast::GotRecord {
            sequence_number: std::str::from_utf8(&digits[i * width..(i + 1) * width])
                .expect("digits are ASCII"),
            arrival_timestamp_ms: r.arrival_timestamp_ms,
            data: &r.data,
            partition_key: &keys[i],
            encrypted: is_encrypted(r),
        });
    sluice_aws::fast_cbor::write_records_answer_cbor(
        got,
        millis_behind_latest,
        tail,
        children,
        out,
    );
}

/// About how many bytes [`write_records_json`] writes.
fn records_json_size(records: &[sluice_log::Record]) -> usize {
    records
        .iter()
        .map(|r| r.data.len() / 3 * 4 + r.partition_key.len() * 2 + 160)
        .sum()
}

/// Records as AWS JSON array items, comma-separated (GetRecords and
/// SubscribeToShardEvent).
fn write_records_json(records: &[sluice_log::Record], out: &mut Vec<u8>) {
    use sluice_aws::fast::{write_get_records_record, GotRecord};
    for (i, r) in records.iter().enumerate() {
        let sequence = SequenceNumber(r.sequence).to_ascii();
        let key = String::from_utf8_lossy(&r.partition_key);
        let record = GotRecord {
            sequence_number: std::str::from_utf8(&sequence).expect("digits are ASCII"),
            arrival_timestamp_ms: r.arrival_timestamp_ms,
            data: &r.data,
            partition_key: &key,
            encrypted: is_encrypted(r),
        };
        write_get_records_record(i == 0, &record, out);
    }
}
