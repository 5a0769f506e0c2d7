//! The fast paths of [`crate::fast`] in AWS CBOR 1.1, what the Java SDKs
//! (and so KCL and KPL) send: PutRecords requests decoded straight into typed
//! records with their data as the bytes the client sent (no base64 on the
//! way), and PutRecords, GetRecords and SubscribeToShardEvent answers written
//! straight into CBOR with data as byte strings.
//!
//! As in JSON, the decoder only accepts plainly valid requests and otherwise
//! leaves the request to the general path (which words the error); the
//! writers produce the bytes the general encoder (`cbor::encode_cbor_output`
//! over the JSON form) produces, which the tests pin.

use std::borrow::Cow;

use ciborium_ll::{Encoder, Header};

use crate::fast::{
    check_put_records, ChildShard, GotRecord, PutRecordsEntry, PutRecordsRequest, PutRecordsResult,
};
/// Reads CBOR items off a slice, accepting only the plain forms a PutRecords
/// needs: definite-length text, byte strings, arrays and maps, no tags. Any
/// other form (a tag, an indefinite length, a byte-string key, a float) is
/// `None`: the general path decides, and words the error.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// The next item's major type and length (or value).
    fn head(&mut self) -> Option<(u8, u64)> {
        let (&first, rest) = self.rest.split_first()?;
        let (major, info) = (first >> 5, first & 0x1f);
        let (value, rest) = match info {
            0..=23 => (u64::from(info), rest),
            24 => (u64::from(*rest.first()?), rest.get(1..)?),
            25 => (
                u64::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?)),
                rest.get(2..)?,
            ),
            26 => (
                u64::from(u32::from_be_bytes(rest.get(..4)?.try_into().ok()?)),
                rest.get(4..)?,
            ),
            27 => (
                u64::from_be_bytes(rest.get(..8)?.try_into().ok()?),
                rest.get(8..)?,
            ),
            _ => return None,
        };
        self.rest = rest;
        Some((major, value))
    }

    fn take(&mut self, len: u64) -> Option<&'a [u8]> {
        let len = usize::try_from(len).ok()?;
        let (taken, rest) = (self.rest.get(..len)?, self.rest.get(len..)?);
        self.rest = rest;
        Some(taken)
    }

    fn text(&mut self) -> Option<&'a str> {
        match self.head()? {
            (3, len) => std::str::from_utf8(self.take(len)?).ok(),
            _ => None,
        }
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        match self.head()? {
            (2, len) => self.take(len),
            _ => None,
        }
    }

    /// A map's or array's number of entries (`major` 5 or 4).
    fn count(&mut self, major: u8) -> Option<usize> {
        match self.head()? {
            (m, n) if m == major => usize::try_from(n).ok(),
            _ => None,
        }
    }
}

/// Decodes a CBOR PutRecord body like [`crate::fast::decode_put_record`].
pub fn decode_put_record_cbor(body: &[u8]) -> Option<PutRecordsRequest<'_>> {
    let mut r = Reader { rest: body };
    let (mut name, mut got_data, mut key, mut hash) = (None, None, None, None);
    for _ in 0..r.count(5)? {
        match r.text()? {
            "StreamName" if name.is_none() => name = Some(r.text()?),
            "Data" if got_data.is_none() => got_data = Some(r.bytes()?),
            "PartitionKey" if key.is_none() => key = Some(r.text()?),
            "ExplicitHashKey" if hash.is_none() => hash = Some(r.text()?),
            _ => return None,
        }
    }
    let data = got_data?.to_vec();
    let entry = PutRecordsEntry {
        data: 0..data.len(),
        partition_key: Cow::Borrowed(key?),
        explicit_hash_key: hash.map(Cow::Borrowed),
    };
    check_put_records(Cow::Borrowed(name?), vec![entry], data)
}

/// Decodes a CBOR PutRecords body if, and only if, it is plainly valid.
pub fn decode_put_records_cbor(body: &[u8]) -> Option<PutRecordsRequest<'_>> {
    let mut r = Reader { rest: body };
    let mut stream_name = None;
    let mut records = None;
    let mut data = Vec::new();
    for _ in 0..r.count(5)? {
        match r.text()? {
            "StreamName" if stream_name.is_none() => stream_name = Some(r.text()?),
            "Records" if records.is_none() => {
                let n = r.count(4)?;
                // Each entry takes at least a few bytes: a bogus count
                // cannot make this allocate more than the body.
                let mut entries = Vec::with_capacity(n.min(body.len() / 4));
                for _ in 0..n {
                    let (mut got_data, mut key, mut hash) = (None, None, None);
                    for _ in 0..r.count(5)? {
                        match r.text()? {
                            "Data" if got_data.is_none() => got_data = Some(r.bytes()?),
                            "PartitionKey" if key.is_none() => key = Some(r.text()?),
                            "ExplicitHashKey" if hash.is_none() => hash = Some(r.text()?),
                            _ => return None,
                        }
                    }
                    let start = data.len();
                    data.extend_from_slice(got_data?);
                    entries.push(PutRecordsEntry {
                        data: start..data.len(),
                        partition_key: Cow::Borrowed(key?),
                        explicit_hash_key: hash.map(Cow::Borrowed),
                    });
                }
                records = Some(entries);
            }
            _ => return None,
        }
    }
    check_put_records(Cow::Borrowed(stream_name?), records?, data)
}

/// The CBOR writer over a buffer (writing to a `Vec` cannot fail).
struct Out<'a>(Encoder<&'a mut Vec<u8>>);

impl<'a> Out<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        Self(Encoder::from(out))
    }

    fn push(&mut self, header: Header) {
        self.0.push(header).expect("writing to a Vec");
    }

    fn map(&mut self, entries: usize) {
        self.push(Header::Map(Some(entries)));
    }

    fn array(&mut self, items: usize) {
        self.push(Header::Array(Some(items)));
    }

    fn text(&mut self, s: &str) {
        self.0.text(s, None).expect("writing to a Vec");
    }

    fn bytes(&mut self, b: &[u8]) {
        self.0.bytes(b, None).expect("writing to a Vec");
    }

    fn uint(&mut self, n: u64) {
        self.push(Header::Positive(n));
    }
}

/// A PutRecords answer: `FailedRecordCount`, `Records`, `EncryptionType`.
pub fn write_put_records_output_cbor<'a>(
    failed: usize,
    results: impl ExactSizeIterator<Item = PutRecordsResult<'a>>,
    encryption_type: &str,
    out: &mut Vec<u8>,
) {
    let mut w = Out::new(out);
    w.map(3);
    w.text("FailedRecordCount");
    w.uint(failed as u64);
    w.text("Records");
    w.array(results.len());
    for r in results {
        w.map(2);
        match r {
            PutRecordsResult::Ok {
                sequence_number,
                shard_id,
            } => {
                w.text("SequenceNumber");
                w.text(sequence_number);
                w.text("ShardId");
                w.text(shard_id);
            }
            PutRecordsResult::Failed {
                error_code,
                error_message,
            } => {
                w.text("ErrorCode");
                w.text(error_code);
                w.text("ErrorMessage");
                w.text(error_message);
            }
        }
    }
    w.text("EncryptionType");
    w.text(encryption_type);
}

/// What follows the records of a [`write_records_answer_cbor`] answer.
#[derive(Debug, Clone, Copy)]
pub enum RecordsTail<'a> {
    /// GetRecords: the `NextShardIterator`.
    NextShardIterator(&'a str),
    /// A SubscribeToShardEvent: the `ContinuationSequenceNumber`.
    ContinuationSequenceNumber(&'a str),
}

/// A GetRecords answer or a SubscribeToShardEvent: the records, then
/// `MillisBehindLatest`, the tail if any, and `ChildShards` if any.
pub fn write_records_answer_cbor<'a>(
    records: impl ExactSizeIterator<Item = GotRecord<'a>>,
    millis_behind_latest: u64,
    tail: Option<RecordsTail<'_>>,
    child_shards: &[ChildShard],
    out: &mut Vec<u8>,
) {
    let mut w = Out::new(out);
    w.map(2 + usize::from(tail.is_some()) + usize::from(!child_shards.is_empty()));
    w.text("Records");
    w.array(records.len());
    for r in records {
        w.map(4 + usize::from(r.encrypted));
        w.text("SequenceNumber");
        w.text(r.sequence_number);
        w.text("ApproximateArrivalTimestamp");
        // Tag 1: epoch milliseconds as an integer, as the Java SDKs read it
        // (and the general encoder writes it).
        w.push(Header::Tag(1));
        w.push(Header::Positive(r.arrival_timestamp_ms));
        w.text("Data");
        w.bytes(r.data);
        w.text("PartitionKey");
        w.text(r.partition_key);
        if r.encrypted {
            w.text("EncryptionType");
            w.text("KMS");
        }
    }
    w.text("MillisBehindLatest");
    w.uint(millis_behind_latest);
    match tail {
        Some(RecordsTail::NextShardIterator(value)) => {
            w.text("NextShardIterator");
            w.text(value);
        }
        Some(RecordsTail::ContinuationSequenceNumber(value)) => {
            w.text("ContinuationSequenceNumber");
            w.text(value);
        }
        None => {}
    }
    if !child_shards.is_empty() {
        w.text("ChildShards");
        w.array(child_shards.len());
        for c in child_shards {
            w.map(3);
            w.text("ShardId");
            w.text(&c.shard_id);
            w.text("ParentShards");
            w.array(c.parent_shards.len());
            for p in &c.parent_shards {
                w.text(p);
            }
            w.text("HashKeyRange");
            w.map(2);
            w.text("StartingHashKey");
            w.text(&c.starting_hash_key);
            w.text("EndingHashKey");
            w.text(&c.ending_hash_key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use ciborium::value::Value as Cbor;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    use crate::cbor::{decode_cbor_body, encode_cbor_output, encode_cbor_shape};
    use crate::fast::write_put_records_output;
    use crate::kinesis;
    use crate::validate::validate_input;

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn b64(data: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(data)
    }

    fn cbor(value: &Cbor) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::ser::into_writer(value, &mut out).unwrap();
        out
    }

    /// A PutRecords as the Java SDK encodes it (RFC 8949 by hand): a map of
    /// StreamName and Records, Data as byte strings.
    #[test]
    fn a_java_style_put_records_is_decoded_with_its_bytes() {
        // {"StreamName": "s", "Records": [{"Data": h'0001ff', "PartitionKey": "pk"},
        //   {"Data": h'', "PartitionKey": "q", "ExplicitHashKey": "7"}]}
        let body = unhex(
            "a2 6a 53747265616d4e616d65 61 73
                67 5265636f726473 82
                  a2 64 44617461 43 0001ff 6c 506172746974696f6e4b6579 62 706b
                  a3 64 44617461 40 6c 506172746974696f6e4b6579 61 71
                     6f 4578706c69636974486173684b6579 61 37",
        );
        let req = decode_put_records_cbor(&body).unwrap();
        assert_eq!(req.stream_name, "s");
        assert_eq!(req.data_of(&req.records[0]), [0, 1, 0xff]);
        assert_eq!(req.records[0].partition_key, "pk");
        assert_eq!(req.data_of(&req.records[1]), b"");
        assert_eq!(req.records[1].explicit_hash_key.as_deref(), Some("7"));
        // The general path reads the same.
        let mut general = decode_cbor_body(&body).unwrap();
        validate_input(kinesis(), "PutRecords", &mut general).unwrap();
        assert_eq!(general["Records"][0]["Data"], "AAH/");
        // A byte-string key, a tag (here tag 1 on the stream name) and an
        // indefinite-length map are left to the general path.
        let bytes_key = unhex("a1 4a 53747265616d4e616d65 61 73");
        assert!(decode_put_records_cbor(&bytes_key).is_none());
        assert!(decode_cbor_body(&bytes_key).is_err());
        let tagged = unhex("a2 6a 53747265616d4e616d65 c1 61 73 67 5265636f726473 80");
        assert!(decode_put_records_cbor(&tagged).is_none());
        assert!(decode_cbor_body(&tagged).is_err());
        assert!(decode_put_records_cbor(&unhex("bf ff")).is_none());
        // Truncated: refused, whatever the cut.
        for n in 0..body.len() {
            assert!(decode_put_records_cbor(&body[..n]).is_none(), "cut at {n}");
        }
    }

    #[test]
    fn put_records_answers_are_the_general_encoders_bytes() {
        let results = [
            PutRecordsResult::Ok {
                sequence_number: "49590338271490256608559692538361571095921575989136588898",
                shard_id: "shardId-000000000000",
            },
            PutRecordsResult::Failed {
                error_code: "ProvisionedThroughputExceededException",
                error_message: "Rate exceeded for shard shardId-000000000001 in stream s under account 000000000000.",
            },
        ];
        let mut json_out = Vec::new();
        write_put_records_output(1, results.clone().into_iter(), "NONE", &mut json_out);
        let general: Value = serde_json::from_slice(&json_out).unwrap();
        let mut out = Vec::new();
        write_put_records_output_cbor(1, results.into_iter(), "NONE", &mut out);
        assert_eq!(out, encode_cbor_output(kinesis(), "PutRecords", &general));
    }

    fn got<'a>(data: &'a [u8], ms: u64, encrypted: bool) -> GotRecord<'a> {
        GotRecord {
            sequence_number: "49",
            arrival_timestamp_ms: ms,
            data,
            partition_key: "k\u{e9}",
            encrypted,
        }
    }

    fn record_value(r: &GotRecord<'_>) -> Value {
        let mut v = json!({
            "SequenceNumber": r.sequence_number,
            "ApproximateArrivalTimestamp": r.arrival_timestamp_ms as f64 / 1000.0,
            "Data": b64(r.data),
            "PartitionKey": r.partition_key,
        });
        if r.encrypted {
            v["EncryptionType"] = json!("KMS");
        }
        v
    }

    #[test]
    fn records_answers_are_the_general_encoders_bytes() {
        // Timestamps of every integer width.
        let records = [
            got(b"", 0, false),
            got(b"a", 1_700_000_000_000, true),
            got(&[0xff, 0, 7], 1_700_000_000_123, false),
            got(&[1; 300], 65_504_000, false),
        ];
        let child = ChildShard {
            shard_id: "shardId-000000000002".into(),
            parent_shards: vec!["shardId-000000000000".into(), "shardId-000000000001".into()],
            starting_hash_key: "0".into(),
            ending_hash_key: "9".into(),
        };
        let values: Vec<Value> = records.iter().map(record_value).collect();
        // GetRecords, with an iterator.
        let mut out = Vec::new();
        write_records_answer_cbor(
            records.iter().cloned(),
            7,
            Some(RecordsTail::NextShardIterator("it")),
            &[],
            &mut out,
        );
        let general =
            json!({"Records": values, "MillisBehindLatest": 7, "NextShardIterator": "it"});
        assert_eq!(out, encode_cbor_output(kinesis(), "GetRecords", &general));
        // The end of a closed shard: children, no iterator.
        let mut out = Vec::new();
        write_records_answer_cbor(
            std::iter::empty(),
            0,
            None,
            std::slice::from_ref(&child),
            &mut out,
        );
        let general =
            json!({"Records": [], "MillisBehindLatest": 0, "ChildShards": [child.to_value()]});
        assert_eq!(out, encode_cbor_output(kinesis(), "GetRecords", &general));
        // A SubscribeToShardEvent.
        let mut out = Vec::new();
        write_records_answer_cbor(
            records.iter().cloned(),
            3,
            Some(RecordsTail::ContinuationSequenceNumber("49")),
            &[],
            &mut out,
        );
        let general =
            json!({"Records": values, "MillisBehindLatest": 3, "ContinuationSequenceNumber": "49"});
        assert_eq!(
            out,
            encode_cbor_shape(kinesis(), "SubscribeToShardEvent", &general)
        );
    }

    fn entry() -> impl Strategy<Value = Cbor> {
        (
            prop_oneof![
                9 => prop::collection::vec(any::<u8>(), 0..40),
                1 => prop::collection::vec(any::<u8>(), 4097..6000),
            ],
            prop_oneof![
                Just(None),
                Just(Some(Cbor::Null)),
                Just(Some(Cbor::Text("aGk=".into()))),
                Just(Some(Cbor::Integer(12.into()))),
                Just(Some(Cbor::Tag(24, Box::new(Cbor::Bytes(b"x".to_vec()))))),
                Just(Some(Cbor::Tag(2, Box::new(Cbor::Bytes(vec![1, 2]))))),
            ],
            prop_oneof![
                "[a-z]{1,4}".prop_map(Cbor::Text),
                Just(Cbor::Text(String::new())),
                Just(Cbor::Text("x".repeat(257))),
                Just(Cbor::Text("\u{e9}".repeat(256))),
                Just(Cbor::Null),
                Just(Cbor::Bytes(b"k".to_vec())),
                Just(Cbor::Tag(32, Box::new(Cbor::Text("k".into())))),
            ],
            prop_oneof![
                Just(None),
                Just(Some(Cbor::Null)),
                "(0|[1-9][0-9]{0,40}|-1|01)".prop_map(|s| Some(Cbor::Text(s))),
            ],
            prop::bool::weighted(0.05),
            prop::bool::weighted(0.05),
        )
            .prop_map(|(data, data_override, key, hash, extra, bytes_key)| {
                let mut e = vec![(
                    Cbor::Text("Data".into()),
                    data_override.unwrap_or(Cbor::Bytes(data)),
                )];
                // A byte-string key, which the general path refuses.
                let key_name = if bytes_key {
                    Cbor::Bytes(b"PartitionKey".to_vec())
                } else {
                    Cbor::Text("PartitionKey".into())
                };
                e.push((key_name, key));
                if let Some(h) = hash {
                    e.push((Cbor::Text("ExplicitHashKey".into()), h));
                }
                if extra {
                    e.push((Cbor::Text("Unknown".into()), Cbor::Integer(1.into())));
                }
                Cbor::Map(e)
            })
    }

    /// Whether a tag is anywhere in `v` (the fast decoder leaves tagged
    /// values to the general path).
    fn has_tag(v: &Cbor) -> bool {
        match v {
            Cbor::Tag(..) => true,
            Cbor::Array(items) => items.iter().any(has_tag),
            Cbor::Map(entries) => entries.iter().any(|(k, v)| has_tag(k) || has_tag(v)),
            _ => false,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// PutRecord in CBOR: the same agreement.
        #[test]
        fn fast_cbor_put_record_agrees_with_the_general_path(
            name in prop_oneof!["[a-zA-Z0-9_.-]{1,10}", Just(String::new()), Just("a b".to_owned())],
            record in entry(),
        ) {
            let Cbor::Map(mut members) = record else { unreachable!() };
            members.insert(0, (Cbor::Text("StreamName".into()), Cbor::Text(name)));
            let request = Cbor::Map(members);
            let tagged = has_tag(&request);
            let body = cbor(&request);
            let general = decode_cbor_body(&body)
                .and_then(|mut v| validate_input(kinesis(), "PutRecord", &mut v).map(|()| v));
            match decode_put_record_cbor(&body) {
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
                    let json = decode_cbor_body(&body).map(|v| v.to_string()).unwrap_or_default();
                    let unusual = tagged || json.contains("Unknown") || json.contains("null")
                        || json.contains("\"aGk=\"") || json.contains("\"Data\":12")
                        || json.contains("\"PartitionKey\":\"aw==\"")
                        || json.contains("\"PartitionKey\":\"PartitionKey\"");
                    prop_assert!(unusual || general.is_err(), "refused a valid request: {}", json);
                }
            }
        }

        /// Whatever the fast decoder accepts, the general path accepts with
        /// the same values; and it accepts every plainly valid request.
        #[test]
        fn fast_cbor_decoding_agrees_with_the_general_path(
            tagged_name in prop::bool::weighted(0.05),
            name in prop_oneof!["[a-zA-Z0-9_.-]{1,10}", Just(String::new()), Just("a b".to_owned()), Just("x".repeat(129))],
            records in prop::collection::vec(entry(), 0..6),
        ) {
            let name = if tagged_name {
                Cbor::Tag(1, Box::new(Cbor::Text(name)))
            } else {
                Cbor::Text(name)
            };
            let request = Cbor::Map(vec![
                (Cbor::Text("StreamName".into()), name),
                (Cbor::Text("Records".into()), Cbor::Array(records)),
            ]);
            let tagged = has_tag(&request);
            let body = cbor(&request);
            let general = decode_cbor_body(&body)
                .and_then(|mut v| validate_input(kinesis(), "PutRecords", &mut v).map(|()| v));
            match decode_put_records_cbor(&body) {
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
                    // Refused only when it has to be: every Data a byte
                    // string, no nulls, no unknown members, and a valid
                    // general decoding mean the fast path should take it.
                    let json = decode_cbor_body(&body).map(|v| v.to_string()).unwrap_or_default();
                    let unusual = tagged || json.contains("Unknown") || json.contains("null")
                        || json.contains("\"aGk=\"") || json.contains("\"Data\":12")
                        || json.contains("\"PartitionKey\":\"aw==\"");
                    prop_assert!(unusual || general.is_err(), "refused a valid request: {}", json);
                }
            }
        }
    }
}
