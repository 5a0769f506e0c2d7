//! Fast paths for the two hottest operations in AWS JSON: PutRecords requests
//! decoded straight into typed records, and PutRecords and GetRecords answers
//! written straight into bytes, without a `serde_json::Value` tree per record.
//!
//! The fast decoder only ever *accepts*: it returns `None` for anything that
//! is not plainly valid (unknown members, nulls, a failed constraint, bad
//! base64), and the caller then takes the general path, which words the error.
//! So errors are always the general path's, and a property test pins that
//! whatever the fast decoder accepts, the general path accepts with the same
//! values. Constraints come from the model, not from constants here.

use std::borrow::Cow;
use std::sync::OnceLock;

use base64::Engine;
use serde::Deserialize;

use crate::model::{kinesis, Shape};

/// A PutRecords request that passes the model's validation.
#[derive(Debug, PartialEq, Eq)]
pub struct PutRecordsRequest<'a> {
    pub stream_name: Cow<'a, str>,
    pub records: Vec<PutRecordsEntry<'a>>,
    /// Every record's data, decoded from base64, end to end (one allocation
    /// for the whole batch).
    pub data: Vec<u8>,
}

impl PutRecordsRequest<'_> {
    pub fn data_of(&self, entry: &PutRecordsEntry<'_>) -> &[u8] {
        &self.data[entry.data.clone()]
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct PutRecordsEntry<'a> {
    /// Where its data is in [`PutRecordsRequest::data`].
    pub data: std::ops::Range<usize>,
    pub partition_key: Cow<'a, str>,
    pub explicit_hash_key: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest<'a> {
    #[serde(rename = "StreamName", borrow)]
    stream_name: Cow<'a, str>,
    #[serde(rename = "Records", borrow)]
    records: Vec<RawEntry<'a>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry<'a> {
    #[serde(rename = "Data", borrow)]
    data: Cow<'a, str>,
    #[serde(rename = "PartitionKey", borrow)]
    partition_key: Cow<'a, str>,
    #[serde(rename = "ExplicitHashKey", borrow, default)]
    explicit_hash_key: Option<Cow<'a, str>>,
}

/// The model's constraints on the members the fast decoder accepts.
struct Constraints {
    stream_name: &'static Shape,
    records: &'static Shape,
    data: &'static Shape,
    partition_key: &'static Shape,
    hash_key: &'static Shape,
}

fn member_shape(structure: &str, member: &str) -> Option<&'static str> {
    match kinesis().shape(structure)? {
        Shape::Structure { members, .. } => members
            .iter()
            .find(|(name, _)| name == member)
            .map(|(_, shape)| shape.as_str()),
        _ => None,
    }
}

fn constraints() -> Option<&'static Constraints> {
    static CONSTRAINTS: OnceLock<Option<Constraints>> = OnceLock::new();
    CONSTRAINTS
        .get_or_init(|| {
            let model = kinesis();
            let input = model.operation("PutRecords")?.input.as_deref()?;
            let records = member_shape(input, "Records")?;
            let Shape::List { member: entry, .. } = model.shape(records)? else {
                return None;
            };
            Some(Constraints {
                stream_name: model.shape(member_shape(input, "StreamName")?)?,
                records: model.shape(records)?,
                data: model.shape(member_shape(entry, "Data")?)?,
                partition_key: model.shape(member_shape(entry, "PartitionKey")?)?,
                hash_key: model.shape(member_shape(entry, "ExplicitHashKey")?)?,
            })
        })
        .as_ref()
}

fn within(len: u64, min: Option<u64>, max: Option<u64>) -> bool {
    min.is_none_or(|m| len >= m) && max.is_none_or(|m| len <= m)
}

fn string_ok(shape: &Shape, s: &str) -> bool {
    match shape {
        Shape::String {
            min,
            max,
            pattern,
            enum_values,
        } => {
            within(s.chars().count() as u64, *min, *max)
                && pattern.as_ref().is_none_or(|(_, re)| re.is_match(s))
                && enum_values
                    .as_ref()
                    .is_none_or(|values| values.iter().any(|v| v == s))
        }
        _ => false,
    }
}

/// Decodes a PutRecords body if, and only if, it is plainly valid.
pub fn decode_put_records(body: &[u8]) -> Option<PutRecordsRequest<'_>> {
    let raw: RawRequest<'_> = serde_json::from_slice(body).ok()?;
    let engine = &base64::engine::general_purpose::STANDARD;
    let mut records = Vec::with_capacity(raw.records.len());
    let encoded: usize = raw.records.iter().map(|e| e.data.len()).sum();
    let mut data = Vec::with_capacity(encoded / 4 * 3 + 3);
    for e in raw.records {
        let start = data.len();
        engine.decode_vec(e.data.as_bytes(), &mut data).ok()?;
        records.push(PutRecordsEntry {
            data: start..data.len(),
            partition_key: e.partition_key,
            explicit_hash_key: e.explicit_hash_key,
        });
    }
    check_put_records(raw.stream_name, records, data)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPutRecord<'a> {
    #[serde(rename = "StreamName", borrow)]
    stream_name: Cow<'a, str>,
    #[serde(rename = "Data", borrow)]
    data: Cow<'a, str>,
    #[serde(rename = "PartitionKey", borrow)]
    partition_key: Cow<'a, str>,
    #[serde(rename = "ExplicitHashKey", borrow, default)]
    explicit_hash_key: Option<Cow<'a, str>>,
}

/// Decodes a PutRecord body (StreamName, Data, PartitionKey and perhaps
/// ExplicitHashKey; anything else goes to the general path) if, and only
/// if, it is plainly valid: as a PutRecords of its one record, whose
/// members have the same shapes in the model.
pub fn decode_put_record(body: &[u8]) -> Option<PutRecordsRequest<'_>> {
    let raw: RawPutRecord<'_> = serde_json::from_slice(body).ok()?;
    let mut data = Vec::with_capacity(raw.data.len() / 4 * 3 + 3);
    base64::engine::general_purpose::STANDARD
        .decode_vec(raw.data.as_bytes(), &mut data)
        .ok()?;
    let entry = PutRecordsEntry {
        data: 0..data.len(),
        partition_key: raw.partition_key,
        explicit_hash_key: raw.explicit_hash_key,
    };
    check_put_records(raw.stream_name, vec![entry], data)
}

/// A decoded PutRecords, if it meets the model's constraints (else `None`:
/// the general path words the error).
pub(crate) fn check_put_records<'a>(
    stream_name: Cow<'a, str>,
    records: Vec<PutRecordsEntry<'a>>,
    data: Vec<u8>,
) -> Option<PutRecordsRequest<'a>> {
    let c = constraints()?;
    if !string_ok(c.stream_name, &stream_name) {
        return None;
    }
    let Shape::List { min, max, .. } = c.records else {
        return None;
    };
    if !within(records.len() as u64, *min, *max) {
        return None;
    }
    let Shape::Blob {
        min: data_min,
        max: data_max,
    } = c.data
    else {
        return None;
    };
    for e in &records {
        if !within(e.data.len() as u64, *data_min, *data_max)
            || !string_ok(c.partition_key, &e.partition_key)
            || !e
                .explicit_hash_key
                .as_deref()
                .is_none_or(|k| string_ok(c.hash_key, k))
        {
            return None;
        }
    }
    Some(PutRecordsRequest {
        stream_name,
        records,
        data,
    })
}

/// One entry of a PutRecords answer: a sequence number and shard id (digits,
/// letters and `-` only), or a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutRecordsResult<'a> {
    Ok {
        sequence_number: &'a str,
        shard_id: &'a str,
    },
    Failed {
        error_code: &'a str,
        error_message: &'a str,
    },
}

fn push_json_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
}

/// A string that needs no JSON escaping (sequence numbers, shard ids).
fn push_plain_str(out: &mut Vec<u8>, s: &str) {
    debug_assert!(s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

/// Writes a PutRecords answer as AWS JSON (members in the model's order).
pub fn write_put_records_output<'a>(
    failed: usize,
    results: impl Iterator<Item = PutRecordsResult<'a>>,
    encryption_type: &str,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(b"{\"FailedRecordCount\":");
    out.extend_from_slice(failed.to_string().as_bytes());
    out.extend_from_slice(b",\"Records\":[");
    for (i, r) in results.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match r {
            PutRecordsResult::Ok {
                sequence_number,
                shard_id,
            } => {
                out.extend_from_slice(b"{\"SequenceNumber\":");
                push_plain_str(out, sequence_number);
                out.extend_from_slice(b",\"ShardId\":");
                push_plain_str(out, shard_id);
            }
            PutRecordsResult::Failed {
                error_code,
                error_message,
            } => {
                out.extend_from_slice(b"{\"ErrorCode\":");
                push_json_str(out, error_code);
                out.extend_from_slice(b",\"ErrorMessage\":");
                push_json_str(out, error_message);
            }
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"],\"EncryptionType\":");
    push_json_str(out, encryption_type);
    out.push(b'}');
}

/// One record of a GetRecords answer (`sequence_number` is digits only).
#[derive(Debug, Clone, Copy)]
pub struct GotRecord<'a> {
    pub sequence_number: &'a str,
    pub arrival_timestamp_ms: u64,
    pub data: &'a [u8],
    pub partition_key: &'a str,
    pub encrypted: bool,
}

/// Writes the start of a GetRecords answer; then [`write_get_records_record`]
/// for each record and [`write_get_records_end`].
pub fn write_get_records_start(out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"Records\":[");
}

pub fn write_get_records_record(first: bool, r: &GotRecord<'_>, out: &mut Vec<u8>) {
    if !first {
        out.push(b',');
    }
    out.extend_from_slice(b"{\"SequenceNumber\":");
    push_plain_str(out, r.sequence_number);
    out.extend_from_slice(b",\"ApproximateArrivalTimestamp\":");
    serde_json::to_writer(&mut *out, &(r.arrival_timestamp_ms as f64 / 1000.0))
        .expect("writing to a Vec cannot fail");
    out.extend_from_slice(b",\"Data\":\"");
    let engine = &base64::engine::general_purpose::STANDARD;
    let start = out.len();
    out.resize(start + r.data.len().div_ceil(3) * 4, 0);
    let written = engine
        .encode_slice(r.data, &mut out[start..])
        .expect("the buffer is sized for the encoding");
    out.truncate(start + written);
    out.extend_from_slice(b"\",\"PartitionKey\":");
    push_json_str(out, r.partition_key);
    if r.encrypted {
        out.extend_from_slice(b",\"EncryptionType\":\"KMS\"");
    }
    out.push(b'}');
}

/// A shard that a split or merge made from the one just read to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildShard {
    pub shard_id: String,
    pub parent_shards: Vec<String>,
    pub starting_hash_key: String,
    pub ending_hash_key: String,
}

impl ChildShard {
    /// The member as a JSON value (for the general encoders).
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::json!({
            "ShardId": self.shard_id,
            "ParentShards": self.parent_shards,
            "HashKeyRange": {
                "StartingHashKey": self.starting_hash_key,
                "EndingHashKey": self.ending_hash_key,
            },
        })
    }
}

/// Ends a SubscribeToShardEvent begun like a GetRecords answer
/// ([`write_get_records_start`], then the records).
pub fn write_subscribe_event_end(
    continuation_sequence_number: Option<&str>,
    millis_behind_latest: u64,
    child_shards: &[ChildShard],
    out: &mut Vec<u8>,
) {
    write_records_end(
        millis_behind_latest,
        continuation_sequence_number.map(|c| ("ContinuationSequenceNumber", c)),
        child_shards,
        out,
    );
}

pub fn write_get_records_end(
    millis_behind_latest: u64,
    next_shard_iterator: Option<&str>,
    child_shards: &[ChildShard],
    out: &mut Vec<u8>,
) {
    write_records_end(
        millis_behind_latest,
        next_shard_iterator.map(|n| ("NextShardIterator", n)),
        child_shards,
        out,
    );
}

/// `]`, MillisBehindLatest, the member that says where to go on, ChildShards, `}`.
fn write_records_end(
    millis_behind_latest: u64,
    next: Option<(&str, &str)>,
    child_shards: &[ChildShard],
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(b"],\"MillisBehindLatest\":");
    out.extend_from_slice(millis_behind_latest.to_string().as_bytes());
    if let Some((member, value)) = next {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(member.as_bytes());
        out.extend_from_slice(b"\":");
        push_json_str(out, value);
    }
    if !child_shards.is_empty() {
        out.extend_from_slice(b",\"ChildShards\":");
        let list: Vec<serde_json::Value> = child_shards.iter().map(ChildShard::to_value).collect();
        serde_json::to_writer(&mut *out, &list).expect("writing to a Vec cannot fail");
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    use crate::validate::{decode_json_body, validate_input};

    fn b64(data: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(data)
    }

    #[test]
    fn accepts_plain_requests_and_leaves_the_rest_to_the_general_path() {
        let body = json!({"StreamName": "s", "Records": [
            {"Data": b64(b"hello"), "PartitionKey": "k"},
            {"Data": "", "PartitionKey": "k\u{e9}", "ExplicitHashKey": "12"},
        ]})
        .to_string();
        let req = decode_put_records(body.as_bytes()).unwrap();
        assert_eq!(req.stream_name, "s");
        assert_eq!(req.data_of(&req.records[0]), b"hello");
        assert_eq!(req.data_of(&req.records[1]), b"");
        assert_eq!(req.records[1].explicit_hash_key.as_deref(), Some("12"));
        for refused in [
            json!({"StreamARN": "arn:aws:kinesis:us-east-1:000000000000:stream/s", "Records": [{"Data": "", "PartitionKey": "k"}]}),
            json!({"StreamName": "s", "Records": []}),
            json!({"StreamName": "bad name", "Records": [{"Data": "", "PartitionKey": "k"}]}),
            json!({"StreamName": "s", "Records": [{"Data": "!!", "PartitionKey": "k"}]}),
            json!({"StreamName": "s", "Records": [{"Data": "", "PartitionKey": ""}]}),
            json!({"StreamName": "s", "Records": [{"Data": "", "PartitionKey": "k", "ExplicitHashKey": "-1"}]}),
            json!({"StreamName": "s", "Records": [{"Data": "", "PartitionKey": "k", "Extra": 1}]}),
            json!({"StreamName": null, "Records": [{"Data": "", "PartitionKey": "k"}]}),
            json!({"StreamName": "s", "Records": [null]}),
            json!({"StreamName": "s", "Records": [{"Data": 5, "PartitionKey": "k"}]}),
        ] {
            assert_eq!(
                decode_put_records(refused.to_string().as_bytes()),
                None,
                "{refused}"
            );
        }
        assert_eq!(decode_put_records(b"{not json"), None);
    }

    #[test]
    fn written_answers_match_the_general_encoding() {
        let mut out = Vec::new();
        write_put_records_output(
            1,
            [
                PutRecordsResult::Ok {
                    sequence_number: "49",
                    shard_id: "shardId-000000000000",
                },
                PutRecordsResult::Failed {
                    error_code: "InternalFailure",
                    error_message: "Internal service failure.",
                },
            ]
            .into_iter(),
            "NONE",
            &mut out,
        );
        let expected = json!({"FailedRecordCount": 1, "Records": [
            {"SequenceNumber": "49", "ShardId": "shardId-000000000000"},
            {"ErrorCode": "InternalFailure", "ErrorMessage": "Internal service failure."},
        ], "EncryptionType": "NONE"});
        assert_eq!(out, serde_json::to_vec(&expected).unwrap());

        let mut out = Vec::new();
        write_get_records_start(&mut out);
        for (i, data) in [&b""[..], b"a", b"ab", b"abc", b"\xff\x00\"\\"]
            .iter()
            .enumerate()
        {
            let r = GotRecord {
                sequence_number: "49",
                arrival_timestamp_ms: 1_700_000_000_123,
                data,
                partition_key: "k\"\u{1}\u{e9}",
                encrypted: i == 1,
            };
            write_get_records_record(i == 0, &r, &mut out);
        }
        write_get_records_end(7, Some("it"), &[], &mut out);
        let got: Value = serde_json::from_slice(&out).unwrap();
        let records: Vec<Value> = [&b""[..], b"a", b"ab", b"abc", b"\xff\x00\"\\"]
            .iter()
            .enumerate()
            .map(|(i, data)| {
                let mut v = json!({"SequenceNumber": "49", "ApproximateArrivalTimestamp": 1_700_000_000.123,
                    "Data": b64(data), "PartitionKey": "k\"\u{1}\u{e9}"});
                if i == 1 {
                    v["EncryptionType"] = json!("KMS");
                }
                v
            })
            .collect();
        let expected =
            json!({"Records": records, "MillisBehindLatest": 7, "NextShardIterator": "it"});
        assert_eq!(got, expected);
        assert_eq!(out, serde_json::to_vec(&expected).unwrap());

        let child = ChildShard {
            shard_id: "shardId-000000000002".into(),
            parent_shards: vec!["shardId-000000000000".into(), "shardId-000000000001".into()],
            starting_hash_key: "0".into(),
            ending_hash_key: "9".into(),
        };
        let mut out = Vec::new();
        write_get_records_start(&mut out);
        write_get_records_end(0, None, std::slice::from_ref(&child), &mut out);
        let expected =
            json!({"Records": [], "MillisBehindLatest": 0, "ChildShards": [child.to_value()]});
        assert_eq!(out, serde_json::to_vec(&expected).unwrap());
    }

    fn entry() -> impl Strategy<Value = Value> {
        (
            prop::collection::vec(any::<u8>(), 0..40),
            prop_oneof![
                Just(None),
                Just(Some(json!(null))),
                Just(Some(json!("bad!base64"))),
                Just(Some(json!(12))),
            ],
            prop_oneof![
                "[a-z]{1,4}".prop_map(|s| json!(s)),
                Just(json!("")),
                Just(json!("x".repeat(257))),
                Just(json!("\u{e9}".repeat(256))),
                Just(json!(null)),
            ],
            prop_oneof![
                Just(None),
                Just(Some(json!(null))),
                "(0|[1-9][0-9]{0,40}|-1|01)".prop_map(|s| Some(json!(s))),
            ],
            prop::bool::weighted(0.05),
        )
            .prop_map(|(data, data_override, key, hash, extra)| {
                let mut e = serde_json::Map::new();
                match data_override {
                    None => {
                        e.insert("Data".into(), json!(b64(&data)));
                    }
                    Some(v) => {
                        e.insert("Data".into(), v);
                    }
                }
                e.insert("PartitionKey".into(), key);
                if let Some(h) = hash {
                    e.insert("ExplicitHashKey".into(), h);
                }
                if extra {
                    e.insert("Unknown".into(), json!(1));
                }
                Value::Object(e)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// PutRecord: whatever the fast decoder accepts, the general path
        /// accepts with the same values; and it takes every plain request.
        #[test]
        fn fast_put_record_agrees_with_the_general_path(
            name in prop_oneof!["[a-zA-Z0-9_.-]{1,10}", Just(String::new()), Just("a b".to_owned())],
            record in entry(),
            ordering in prop::bool::weighted(0.05),
        ) {
            let mut body = record.as_object().unwrap().clone();
            body.insert("StreamName".into(), json!(name));
            if ordering {
                body.insert("SequenceNumberForOrdering".into(), json!("1"));
            }
            let body = Value::Object(body).to_string();
            let general = decode_json_body(body.as_bytes())
                .and_then(|mut v| validate_input(kinesis(), "PutRecord", &mut v).map(|()| v));
            match decode_put_record(body.as_bytes()) {
                Some(fast) => {
                    let v = general.expect("the general path accepts what the fast one does");
                    prop_assert_eq!(v["StreamName"].as_str(), Some(&*fast.stream_name));
                    let e = &fast.records[0];
                    let data = base64::engine::general_purpose::STANDARD
                        .decode(v["Data"].as_str().unwrap())
                        .unwrap();
                    prop_assert_eq!(&data[..], fast.data_of(e));
                    prop_assert_eq!(v["PartitionKey"].as_str(), Some(&*e.partition_key));
                    prop_assert_eq!(v["ExplicitHashKey"].as_str(), e.explicit_hash_key.as_deref());
                }
                None => {
                    let plain = !body.contains("Unknown") && !body.contains("null") && !ordering;
                    prop_assert!(!(plain && general.is_ok()), "refused a valid request: {}", body);
                }
            }
        }

        /// Whatever the fast decoder accepts, the general path accepts with
        /// the same values; and it accepts every plainly valid request.
        #[test]
        fn fast_decoding_agrees_with_the_general_path(
            name in prop_oneof!["[a-zA-Z0-9_.-]{1,10}", Just(String::new()), Just("a b".to_owned()), Just("x".repeat(129))],
            records in prop::collection::vec(entry(), 0..6),
        ) {
            let body = json!({"StreamName": name, "Records": records}).to_string();
            let general = decode_json_body(body.as_bytes())
                .and_then(|mut v| validate_input(kinesis(), "PutRecords", &mut v).map(|()| v));
            match decode_put_records(body.as_bytes()) {
                Some(fast) => {
                    let v = general.expect("the general path accepts what the fast one does");
                    prop_assert_eq!(v["StreamName"].as_str(), Some(&*fast.stream_name));
                    let items = v["Records"].as_array().unwrap();
                    prop_assert_eq!(items.len(), fast.records.len());
                    for (item, e) in items.iter().zip(&fast.records) {
                        let data = base64::engine::general_purpose::STANDARD
                            .decode(item["Data"].as_str().unwrap())
                            .unwrap();
                        prop_assert_eq!(&data[..], fast.data_of(e));
                        prop_assert_eq!(item["PartitionKey"].as_str(), Some(&*e.partition_key));
                        prop_assert_eq!(item["ExplicitHashKey"].as_str(), e.explicit_hash_key.as_deref());
                    }
                }
                None => {
                    // Refused only when it has to be: no unknown members and a
                    // valid general decoding means the fast path should take it.
                    let plain = !body.contains("Unknown") && !body.contains("null");
                    prop_assert!(!(plain && general.is_ok()), "refused a valid request: {}", body);
                }
            }
        }
    }
}
