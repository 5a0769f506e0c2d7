//! AWS CBOR 1.1 (`application/x-amz-cbor-1.1`), as the Java SDKs (and so KCL
//! and KPL) send it: the same members as JSON, but blobs are CBOR byte strings
//! and timestamps are tag 1 holding an integer of epoch milliseconds (what the
//! Java SDKs' `SdkCborGenerator` writes, `writeTag(1)` then the time's
//! `getTime()`/`toEpochMilli()`, and what their CBOR unmarshallers read).
//! A tag-1 float is read as seconds (RFC 8949's meaning, for other CBOR
//! clients).
//!
//! Requests are turned into the JSON form the rest of the server uses (byte
//! strings become base64 text, tag-1 timestamps become numbers), so validation
//! and the operations see one shape (timestamps in seconds, as JSON has them).
//! Responses walk the operation's output shape
//! to know which members are blobs and timestamps.

use base64::Engine;
use ciborium::value::{Integer, Value as Cbor};
use serde_json::{Map, Number, Value as Json};

use crate::error::{AwsError, ErrorCode};
use crate::model::{ApiModel, Shape};

pub const CBOR_CONTENT_TYPE: &str = "application/x-amz-cbor-1.1";

fn serialization(message: impl Into<String>) -> AwsError {
    AwsError::new(ErrorCode::SerializationException, message)
}

/// Decodes a CBOR request body into its JSON equivalent.
pub fn decode_cbor_body(body: &[u8]) -> Result<Json, AwsError> {
    // As in JSON: an empty body, one that does not decode, or one that is
    // not a map is a bare SerializationException.
    let value: Cbor = ciborium::de::from_reader(body).map_err(|_| serialization(""))?;
    match to_json(value)? {
        v @ Json::Object(_) => Ok(v),
        _ => Err(serialization("")),
    }
}

fn to_json(value: Cbor) -> Result<Json, AwsError> {
    Ok(match value {
        Cbor::Null => Json::Null,
        Cbor::Bool(b) => Json::Bool(b),
        Cbor::Integer(i) => {
            let i: i128 = i.into();
            if let Ok(u) = u64::try_from(i) {
                Json::Number(u.into())
            } else if let Ok(s) = i64::try_from(i) {
                Json::Number(s.into())
            } else {
                return Err(serialization("Integer out of range"));
            }
        }
        Cbor::Float(f) => Number::from_f64(f)
            .map(Json::Number)
            .ok_or_else(|| serialization("Number out of range"))?,
        Cbor::Text(s) => Json::String(s),
        Cbor::Bytes(b) => Json::String(base64::engine::general_purpose::STANDARD.encode(b)),
        // Tag 1: epoch-based date/time; an integer is milliseconds (the Java
        // SDKs' form), a float seconds.
        Cbor::Tag(1, inner) => match *inner {
            Cbor::Integer(i) => {
                let ms: i128 = i.into();
                Number::from_f64(ms as f64 / 1000.0)
                    .map(Json::Number)
                    .ok_or_else(|| serialization("Timestamp out of range"))?
            }
            Cbor::Float(_) => to_json(*inner)?,
            _ => return Err(serialization("Tag 1 must hold a number")),
        },
        Cbor::Tag(_, inner) => to_json(*inner)?,
        Cbor::Array(items) => {
            Json::Array(items.into_iter().map(to_json).collect::<Result<_, _>>()?)
        }
        Cbor::Map(entries) => {
            let mut map = Map::new();
            for (k, v) in entries {
                let Cbor::Text(k) = k else {
                    return Err(serialization("Map keys must be text"));
                };
                map.insert(k, to_json(v)?);
            }
            Json::Object(map)
        }
        _ => return Err(serialization("Unsupported CBOR value")),
    })
}

/// Encodes an operation's JSON output as CBOR, typed by the output shape.
pub fn encode_cbor_output(model: &ApiModel, operation: &str, output: &Json) -> Vec<u8> {
    let shape = model.operation(operation).and_then(|op| op.output.clone());
    let value = to_cbor(model, shape.as_deref(), output);
    let mut out = Vec::new();
    ciborium::ser::into_writer(&value, &mut out).expect("writing CBOR to a Vec cannot fail");
    out
}

/// Encodes a value of a named shape as CBOR (event-stream payloads).
pub fn encode_cbor_shape(model: &ApiModel, shape: &str, value: &Json) -> Vec<u8> {
    let value = to_cbor(model, Some(shape), value);
    let mut out = Vec::new();
    ciborium::ser::into_writer(&value, &mut out).expect("writing CBOR to a Vec cannot fail");
    out
}

/// An error in CBOR: the same `__type` and message map as JSON.
pub fn encode_cbor_error(error: &AwsError) -> Vec<u8> {
    let mut entries = vec![(
        Cbor::Text("__type".into()),
        Cbor::Text(error.code.name().into()),
    )];
    if let Some(key) = error.message_key() {
        entries.push((Cbor::Text(key.into()), Cbor::Text(error.message.clone())));
    }
    let value = Cbor::Map(entries);
    let mut out = Vec::new();
    ciborium::ser::into_writer(&value, &mut out).expect("writing CBOR to a Vec cannot fail");
    out
}

fn to_cbor(model: &ApiModel, shape_name: Option<&str>, value: &Json) -> Cbor {
    let shape = shape_name.and_then(|n| model.shape(n));
    match (shape, value) {
        (Some(Shape::Blob { .. }), Json::String(s)) => Cbor::Bytes(
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .unwrap_or_default(),
        ),
        (Some(Shape::Timestamp), Json::Number(n)) => {
            // Seconds in the JSON form; epoch milliseconds in CBOR.
            let ms = (n.as_f64().unwrap_or_default() * 1000.0).round() as i64;
            Cbor::Tag(1, Box::new(Cbor::Integer(Integer::from(ms))))
        }
        (Some(Shape::Structure { members, .. }), Json::Object(map)) => Cbor::Map(
            map.iter()
                .map(|(k, v)| {
                    let member_shape = members
                        .iter()
                        .find(|(m, _)| m == k)
                        .map(|(_, s)| s.as_str());
                    (Cbor::Text(k.clone()), to_cbor(model, member_shape, v))
                })
                .collect(),
        ),
        (Some(Shape::List { member, .. }), Json::Array(items)) => Cbor::Array(
            items
                .iter()
                .map(|v| to_cbor(model, Some(member), v))
                .collect(),
        ),
        (Some(Shape::Map { value: v_shape, .. }), Json::Object(map)) => Cbor::Map(
            map.iter()
                .map(|(k, v)| (Cbor::Text(k.clone()), to_cbor(model, Some(v_shape), v)))
                .collect(),
        ),
        (_, Json::Null) => Cbor::Null,
        (_, Json::Bool(b)) => Cbor::Bool(*b),
        (_, Json::Number(n)) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Cbor::Integer(Integer::from(u)),
            (None, Some(i)) => Cbor::Integer(Integer::from(i)),
            _ => Cbor::Float(n.as_f64().unwrap_or_default()),
        },
        (_, Json::String(s)) => Cbor::Text(s.clone()),
        (_, Json::Array(items)) => {
            Cbor::Array(items.iter().map(|v| to_cbor(model, None, v)).collect())
        }
        (_, Json::Object(map)) => Cbor::Map(
            map.iter()
                .map(|(k, v)| (Cbor::Text(k.clone()), to_cbor(model, None, v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// A PutRecord request as the Java SDK encodes it: Data is a byte string.
    #[test]
    fn put_record_request_fixture() {
        // {"StreamName": "s", "Data": h'68656c6c6f', "PartitionKey": "pk"}
        let body = unhex(
            "a3 6a 53747265616d4e616d65 61 73
                64 44617461 45 68656c6c6f
                6c 506172746974696f6e4b6579 62 706b",
        );
        let v = decode_cbor_body(&body).unwrap();
        assert_eq!(
            v,
            json!({"StreamName": "s", "Data": "aGVsbG8=", "PartitionKey": "pk"})
        );
        crate::validate::validate_input(crate::kinesis(), "PutRecord", &mut v.clone()).unwrap();
    }

    /// GetShardIterator's AT_TIMESTAMP as the Java SDKs send it: tag 1, then
    /// the epoch milliseconds as an integer (`SdkCborGenerator.writeValue`:
    /// `writeTag(1)`, `writeNumber(date.getTime())`; Jackson writes the
    /// shortest integer). A tag-1 float (RFC 8949's seconds) reads as seconds.
    #[test]
    fn timestamp_request_fixture() {
        // {"Timestamp": 1(1700000000500)}
        let body = unhex("a1 69 54696d657374616d70 c1 1b 0000018bcfe569f4");
        assert_eq!(
            decode_cbor_body(&body).unwrap(),
            json!({"Timestamp": 1700000000.5})
        );
        // {"Timestamp": 1(1700000000.5)}
        let body = unhex("a1 69 54696d657374616d70 c1 fb 41d954fc40200000");
        assert_eq!(
            decode_cbor_body(&body).unwrap(),
            json!({"Timestamp": 1700000000.5})
        );
        // {"Timestamp": 1(0)}: the epoch, the shortest integer.
        let body = unhex("a1 69 54696d657374616d70 c1 00");
        assert_eq!(decode_cbor_body(&body).unwrap(), json!({"Timestamp": 0.0}));
        // {"Timestamp": 1("x")}
        let body = unhex("a1 69 54696d657374616d70 c1 61 78");
        assert_eq!(
            decode_cbor_body(&body).unwrap_err().code,
            ErrorCode::SerializationException
        );
    }

    /// GetRecords' response: Data becomes a byte string, the arrival time tag
    /// 1 with an integer of epoch milliseconds, which the Java SDKs read back
    /// as the time (a float there read as milliseconds: a date in 1970).
    #[test]
    fn get_records_response_fixture() {
        let out = json!({
            "Records": [{"SequenceNumber": "1", "ApproximateArrivalTimestamp": 1700000000.5,
                         "Data": "aGk=", "PartitionKey": "k"}],
            "MillisBehindLatest": 0,
        });
        let bytes = encode_cbor_output(crate::kinesis(), "GetRecords", &out);
        assert_eq!(
            hex(&bytes),
            concat!(
                "a2",
                "67",
                "5265636f726473",
                "81",
                "a4",
                "6e",
                "53657175656e63654e756d626572",
                "61",
                "31",
                "78",
                "1b",
                "417070726f78696d6174654172726976616c54696d657374616d70",
                "c1",
                "1b",
                "0000018bcfe569f4",
                "64",
                "44617461",
                "42",
                "6869",
                "6c",
                "506172746974696f6e4b6579",
                "61",
                "6b",
                "72",
                "4d696c6c6973426568696e644c6174657374",
                "00",
            )
        );
        // And it reads back.
        assert_eq!(
            decode_cbor_body(&bytes).unwrap()["Records"][0]["Data"],
            "aGk="
        );
    }

    /// A SubscribeToShardEvent payload (fan-out to a CBOR client): typed by
    /// the event's shape like an operation's output.
    #[test]
    fn subscribe_to_shard_event_fixture() {
        let event = json!({
            "Records": [{"SequenceNumber": "1", "ApproximateArrivalTimestamp": 1700000000.5,
                         "Data": "aGk=", "PartitionKey": "k"}],
            "ContinuationSequenceNumber": "2",
            "MillisBehindLatest": 0,
        });
        let bytes = encode_cbor_shape(crate::kinesis(), "SubscribeToShardEvent", &event);
        assert_eq!(
            hex(&bytes),
            concat!(
                "a3",
                "67",
                "5265636f726473",
                "81",
                "a4",
                "6e",
                "53657175656e63654e756d626572",
                "61",
                "31",
                "78",
                "1b",
                "417070726f78696d6174654172726976616c54696d657374616d70",
                "c1",
                "1b",
                "0000018bcfe569f4",
                "64",
                "44617461",
                "42",
                "6869",
                "6c",
                "506172746974696f6e4b6579",
                "61",
                "6b",
                "78",
                "1a",
                "436f6e74696e756174696f6e53657175656e63654e756d626572",
                "61",
                "32",
                "72",
                "4d696c6c6973426568696e644c6174657374",
                "00",
            )
        );
    }

    #[test]
    fn error_fixture_and_bad_bodies() {
        let e = AwsError::new(ErrorCode::ResourceNotFoundException, "x");
        assert_eq!(
            hex(&encode_cbor_error(&e)),
            "a2665f5f7479706578195265736f757263654e6f74466f756e64457863657074696f6e676d6573736167656178"
        );
        assert_eq!(
            decode_cbor_body(b"\xff").unwrap_err().code,
            ErrorCode::SerializationException
        );
        assert_eq!(
            decode_cbor_body(b"\x01").unwrap_err().code,
            ErrorCode::SerializationException
        );
        assert_eq!(
            decode_cbor_body(b"\xa1\x01\x02").unwrap_err().code,
            ErrorCode::SerializationException
        );
        assert_eq!(
            decode_cbor_body(b"").unwrap_err(),
            AwsError::new(ErrorCode::SerializationException, "")
        );
        // No message, no message key: AWS's answer to an empty CBOR body is
        // `bf 66 "__type" 76 "SerializationException" ff` (kinesalite's
        // connection tests); the same map, of definite length.
        let bare = encode_cbor_error(&AwsError::new(ErrorCode::SerializationException, ""));
        assert_eq!(
            hex(&bare),
            "a1665f5f747970657653657269616c697a6174696f6e457863657074696f6e"
        );
        let aws = b"\xbf\x66__type\x76SerializationException\xff";
        let theirs: Cbor = ciborium::de::from_reader(&aws[..]).unwrap();
        let ours: Cbor = ciborium::de::from_reader(bare.as_slice()).unwrap();
        assert_eq!(theirs, ours);
    }
}
