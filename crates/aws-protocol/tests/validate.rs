//! Validation messages, pinned against AWS's wording, for the model's constraints.

use serde_json::json;
use sluice_aws::validate::{decode_json_body, validate_input};
use sluice_aws::{kinesis, ErrorCode};

fn check(op: &str, mut input: serde_json::Value) -> Result<(), (ErrorCode, String)> {
    validate_input(kinesis(), op, &mut input).map_err(|e| (e.code, e.message))
}

fn validation(op: &str, input: serde_json::Value) -> String {
    match check(op, input) {
        Err((ErrorCode::ValidationException, m)) => m,
        other => panic!("expected a ValidationException, got {other:?}"),
    }
}

#[test]
fn valid_requests_pass() {
    check(
        "CreateStream",
        json!({"StreamName": "orders", "ShardCount": 4}),
    )
    .unwrap();
    check(
        "PutRecord",
        json!({"StreamName": "orders", "PartitionKey": "p", "Data": "aGVsbG8="}),
    )
    .unwrap();
    check(
        "PutRecords",
        json!({"StreamARN": "arn:aws:kinesis:us-east-1:000000000000:stream/orders",
               "Records": [{"PartitionKey": "p", "Data": "", "ExplicitHashKey": "340282366920938463463374607431768211455"}]}),
    )
    .unwrap();
    check("ListStreams", json!({})).unwrap();
    check("GetShardIterator", json!({"StreamName": "s", "ShardId": "shardId-000000000000", "ShardIteratorType": "AT_TIMESTAMP", "Timestamp": 1700000000.5})).unwrap();
    check(
        "AddTagsToStream",
        json!({"StreamName": "s", "Tags": {"team": "data"}}),
    )
    .unwrap();
    // Unknown members are ignored, as AWS does.
    check("ListStreams", json!({"Whatever": 1})).unwrap();
}

#[test]
fn aws_wording_for_each_kind_of_constraint() {
    assert_eq!(
        validation("CreateStream", json!({"StreamName": "orders", "ShardCount": 0})),
        "1 validation error detected: Value '0' at 'shardCount' failed to satisfy constraint: Member must have value greater than or equal to 1"
    );
    assert_eq!(
        validation("DescribeStreamSummary", json!({"StreamName": "bad name!"})),
        "1 validation error detected: Value 'bad name!' at 'streamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"
    );
    assert_eq!(
        validation("GetShardIterator", json!({"StreamName": "s", "ShardId": "shardId-000000000000", "ShardIteratorType": "FIRST"})),
        "1 validation error detected: Value 'FIRST' at 'shardIteratorType' failed to satisfy constraint: Member must satisfy enum value set: [AT_SEQUENCE_NUMBER, AFTER_SEQUENCE_NUMBER, TRIM_HORIZON, LATEST, AT_TIMESTAMP]"
    );
    let eleven_mib = base64_len(10 * 1024 * 1024 + 1);
    assert_eq!(
        validation("PutRecord", json!({"StreamName": "s", "PartitionKey": "p", "Data": eleven_mib})),
        // A blob shows as Java's ByteBuffer (kinesalite's putRecord tests).
        "1 validation error detected: Value 'java.nio.HeapByteBuffer[pos=0 lim=10485761 cap=10485761]' at 'data' failed to satisfy constraint: Member must have length less than or equal to 10485760"
    );
    let too_many: Vec<_> = (0..501)
        .map(|_| json!({"PartitionKey": "p", "Data": ""}))
        .collect();
    let msg = validation(
        "PutRecords",
        json!({"StreamName": "s", "Records": too_many}),
    );
    // A list shows as Java's `[a, b]` (a long one cut to 600 characters).
    assert!(
        msg.starts_with("1 validation error detected: Value '[{PartitionKey=p, Data=}, "),
        "{msg}"
    );
    assert!(msg.ends_with("...' at 'records' failed to satisfy constraint: Member must have length less than or equal to 500"), "{msg}");
    let msg = validation(
        "RemoveTagsFromStream",
        json!({"StreamName": "s", "TagKeys": []}),
    );
    assert_eq!(msg, "1 validation error detected: Value '[]' at 'tagKeys' failed to satisfy constraint: Member must have length greater than or equal to 1");
    // The pattern before the length (kinesalite's tests, recorded against AWS).
    assert_eq!(
        validation("DescribeStreamSummary", json!({"StreamName": ""})),
        "2 validation errors detected: Value '' at 'streamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+; Value '' at 'streamName' failed to satisfy constraint: Member must have length greater than or equal to 1"
    );
    // Map keys and values: the side's whole constraint, once (kinesalite's
    // addTagsToStream tests).
    let long_key = "k".repeat(129);
    assert_eq!(
        validation("AddTagsToStream", json!({"StreamName": "s", "Tags": {long_key.clone(): "v"}})),
        format!("1 validation error detected: Value '{{{long_key}=v}}' at 'tags' failed to satisfy constraint: Map keys must satisfy constraint: [Member must have length less than or equal to 128, Member must have length greater than or equal to 1]")
    );
    let long_value = "v".repeat(257);
    assert_eq!(
        validation("AddTagsToStream", json!({"StreamName": "s", "Tags": {"k": long_value.clone()}})),
        format!("1 validation error detected: Value '{{k={long_value}}}' at 'tags' failed to satisfy constraint: Map value must satisfy constraint: [Member must have length less than or equal to 256, Member must have length greater than or equal to 0]")
    );
    assert_eq!(
        validation("PutRecords", json!({"StreamName": "s", "Records": [{"PartitionKey": "ok", "Data": ""}, {"PartitionKey": "", "Data": ""}]})),
        "1 validation error detected: Value '' at 'records.2.member.partitionKey' failed to satisfy constraint: Member must have length greater than or equal to 1"
    );
    assert_eq!(
        validation("PutRecord", json!({"StreamName": "s"})),
        "2 validation errors detected: Value null at 'data' failed to satisfy constraint: Member must not be null; Value null at 'partitionKey' failed to satisfy constraint: Member must not be null"
    );
    let long_key = "k".repeat(257);
    let msg = validation(
        "PutRecord",
        json!({"StreamName": "s", "PartitionKey": long_key, "Data": ""}),
    );
    assert!(msg.ends_with("at 'partitionKey' failed to satisfy constraint: Member must have length less than or equal to 256"), "{msg}");
    // 256 characters of a multi-byte script are still 256 characters.
    check(
        "PutRecord",
        json!({"StreamName": "s", "PartitionKey": "é".repeat(256), "Data": ""}),
    )
    .unwrap();
    let msg = validation(
        "PutRecord",
        json!({"StreamName": "s", "PartitionKey": "p", "Data": "", "ExplicitHashKey": "01"}),
    );
    assert!(msg.contains("at 'explicitHashKey' failed to satisfy constraint: Member must satisfy regular expression pattern: 0|([1-9]\\d{0,38})"), "{msg}");
    let msg = validation(
        "DescribeStreamSummary",
        json!({"StreamARN": "arn:aws:kinesis:us-east-1:123:stream/s"}),
    );
    assert!(msg.contains("at 'streamARN' failed to satisfy constraint: Member must satisfy regular expression pattern"), "{msg}");
    let msg = validation("AddTagsToStream", json!({"StreamName": "s", "Tags": {}}));
    assert!(msg.contains("at 'tags' failed to satisfy constraint: Member must have length greater than or equal to 1"), "{msg}");
}

/// Each kind of type mismatch, in AWS's words: its JSON deserializer's
/// (kinesalite's tests and validations, recorded against AWS). The first
/// mismatch is the answer.
#[test]
fn wrong_types_and_bad_bodies_are_serialization_errors() {
    let number = "class com.amazon.coral.value.json.numbers.TruncatingBigNumber";
    for (op, input, message) in [
        ("CreateStream", json!({"StreamName": 5, "ShardCount": 1}), format!("{number} can not be converted to an String")),
        ("CreateStream", json!({"StreamName": true}), "class java.lang.Boolean can not be converted to an String".to_owned()),
        ("CreateStream", json!({"StreamName": ["s"]}), "Start of list found where not expected".to_owned()),
        ("CreateStream", json!({"StreamName": {"a": 1}}), "Start of structure or map found where not expected.".to_owned()),
        ("CreateStream", json!({"StreamName": "s", "ShardCount": "1"}), "class java.lang.String can not be converted to an Integer".to_owned()),
        ("CreateStream", json!({"StreamName": "s", "ShardCount": false}), "class java.lang.Boolean can not be converted to an Integer".to_owned()),
        ("DeleteStream", json!({"StreamName": "s", "EnforceConsumerDeletion": "23"}), "'23' can not be converted to an Boolean".to_owned()),
        ("DeleteStream", json!({"StreamName": "s", "EnforceConsumerDeletion": "yes"}), "'YES' can not be converted to an Boolean".to_owned()),
        ("DeleteStream", json!({"StreamName": "s", "EnforceConsumerDeletion": 1}), format!("{number} can not be converted to an Boolean")),
        ("PutRecord", json!({"StreamName": "s", "PartitionKey": "p", "Data": true}), "class java.lang.Boolean can not be converted to a Blob".to_owned()),
        ("PutRecord", json!({"StreamName": "s", "PartitionKey": "p", "Data": 23}), format!("{number} can not be converted to a Blob")),
        ("PutRecord", json!({"StreamName": "s", "PartitionKey": "p", "Data": "23456"}), "'23456' can not be converted to a Blob: Base64 encoded length is expected a multiple of 4 bytes but found: 5".to_owned()),
        ("PutRecord", json!({"StreamName": "s", "PartitionKey": "p", "Data": "=+/="}), "'=+/=' can not be converted to a Blob: Invalid Base64 character: '='".to_owned()),
        ("PutRecord", json!({"StreamName": "s", "PartitionKey": "p", "Data": "+/+="}), "'+/+=' can not be converted to a Blob: Invalid last non-pad Base64 character dectected".to_owned()),
        ("PutRecord", json!({"StreamName": "s", "PartitionKey": "p", "Data": "not base64!!"}), "'not base64!!' can not be converted to a Blob: Invalid Base64 character: ' '".to_owned()),
        ("PutRecords", json!({"StreamName": "s", "Records": {"PartitionKey": "p"}}), "Start of structure or map found where not expected.".to_owned()),
        ("PutRecords", json!({"StreamName": "s", "Records": "r"}), "Expected list or null".to_owned()),
        ("AddTagsToStream", json!({"StreamName": "s", "Tags": ["a"]}), "Start of list found where not expected".to_owned()),
        ("ListShards", json!({"StreamName": "s", "ShardFilter": "AT_LATEST"}), "Expected null".to_owned()),
        ("GetShardIterator", json!({"StreamName": "s", "ShardId": "0", "ShardIteratorType": "AT_TIMESTAMP", "Timestamp": "now"}), "class java.lang.String can not be converted to milliseconds since epoch".to_owned()),
        ("GetShardIterator", json!({"StreamName": "s", "ShardId": "0", "ShardIteratorType": "AT_TIMESTAMP", "Timestamp": true}), "class java.lang.Boolean can not be converted to milliseconds since epoch".to_owned()),
    ] {
        assert_eq!(
            check(op, input.clone()).unwrap_err(),
            (ErrorCode::SerializationException, message),
            "{op} {input}"
        );
    }
    // Structures, lists and maps given the wrong kind of value.
    for (op, input, message) in [
        (
            "ListShards",
            json!({"StreamName": "s", "ShardFilter": ["x"]}),
            "Start of list found where not expected",
        ),
        (
            "PutRecords",
            json!({"StreamName": "s", "Records": {"a": 1}}),
            "Start of structure or map found where not expected.",
        ),
        (
            "AddTagsToStream",
            json!({"StreamName": "s", "Tags": ["a"]}),
            "Start of list found where not expected",
        ),
        (
            "AddTagsToStream",
            json!({"StreamName": "s", "Tags": "a"}),
            "Expected map or null",
        ),
    ] {
        assert_eq!(
            check(op, input.clone()).unwrap_err(),
            (ErrorCode::SerializationException, message.to_owned()),
            "{op} {input}"
        );
    }
    // Numbers for integers: fractions floored, an integer's range clamped.
    let mut input = json!({"StreamName": "s", "ShardCount": 2.9});
    validate_input(kinesis(), "CreateStream", &mut input).unwrap();
    assert_eq!(input["ShardCount"], 2);
    let mut input = json!({"StreamName": "s", "ShardCount": -0.5});
    assert!(validate_input(kinesis(), "CreateStream", &mut input).is_err());
    assert_eq!(input["ShardCount"], -1, "floored, not truncated");
    let mut input = json!({"StreamName": "s", "ShardCount": 1e12});
    validate_input(kinesis(), "CreateStream", &mut input).unwrap();
    assert_eq!(input["ShardCount"], 2_147_483_647);
    // An empty body, one that is not JSON, and JSON that is not an object:
    // a bare SerializationException (no message), as AWS answers.
    for body in [&b""[..], b"   ", b"{", b"[1]", b"true", b"null", b"hello"] {
        let e = decode_json_body(body).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (ErrorCode::SerializationException, "")
        );
        assert_eq!(e.to_json(), br#"{"__type":"SerializationException"}"#);
    }
    assert_eq!(decode_json_body(b" {\"A\": 1} ").unwrap(), json!({"A": 1}));
}

/// Every operation: an empty request fails with exactly one "must not be null"
/// per required member, in the model's order, or passes if none is required.
#[test]
fn every_operation_reports_its_required_members() {
    let spec: serde_json::Value =
        serde_json::from_str(sluice_aws::model::KINESIS_MODEL_JSON).unwrap();
    let model = kinesis();
    for name in model.operation_names() {
        let input = &spec["operations"][name]["input"]["shape"];
        let required: Vec<String> = input
            .as_str()
            .and_then(|s| spec["shapes"][s]["required"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        match check(name, json!({})) {
            Ok(()) => assert!(required.is_empty(), "{name} accepted an empty request"),
            Err((code, msg)) => {
                assert_eq!(code, ErrorCode::ValidationException, "{name}");
                assert!(
                    msg.starts_with(&format!("{} validation error", required.len())),
                    "{name}: {msg}"
                );
                for member in &required {
                    let path: String = member[..1].to_lowercase() + &member[1..];
                    assert!(msg.contains(&format!("Value null at '{path}' failed to satisfy constraint: Member must not be null")), "{name}: {msg}");
                }
            }
        }
    }
}

fn base64_len(n: usize) -> String {
    // 3 zero bytes encode as "AAAA".
    let mut s = "AAAA".repeat(n / 3);
    match n % 3 {
        1 => s.push_str("AA=="),
        2 => s.push_str("AAA="),
        _ => {}
    }
    s
}
