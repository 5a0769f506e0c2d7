//! AWS's answers at the edges (issue #15), table by table: each case is a
//! request and the status and body AWS gives, with where that is known
//! from, run in AWS JSON 1.1 and again in CBOR (the answer's map is the
//! same; CBOR answers are decoded to compare).
//!
//! Sources: "kinesalite" is mhart/kinesalite's tests (connection.js,
//! helpers.js and one file per operation), which were recorded against
//! AWS; others are named in the case.

use super::*;

const SIGNED: &str = "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/kinesis/aws4_request, SignedHeaders=host, Signature=00";

#[derive(Clone, Copy, PartialEq)]
enum Encoding {
    Json,
    Cbor,
}

#[derive(Clone)]
enum Body {
    Value(Value),
    Empty,
    /// Not JSON (`{`), not CBOR (`0xff`).
    Garbage,
}

#[derive(Clone, Copy)]
enum Auth {
    Signed,
    Unsigned,
    /// This Authorization header, with an X-Amz-Date.
    Header(&'static str),
}

enum Expect {
    /// 200.
    Ok,
    /// An AWS error map: `__type`, and the message under its key if any.
    Error(u16, Value),
    /// A raw body (AWS's XML refusals) with no content type.
    Raw(u16, &'static str),
}

struct Case {
    what: &'static str,
    method: &'static str,
    path: &'static str,
    target: Option<&'static str>,
    auth: Auth,
    body: Body,
    expect: Expect,
    /// Where the expected answer comes from.
    source: &'static str,
    /// Some cases only make sense in one encoding (base64 text is JSON's).
    json_only: bool,
}

fn case(
    what: &'static str,
    target: &'static str,
    body: Value,
    expect: Expect,
    source: &'static str,
) -> Case {
    Case {
        what,
        method: "POST",
        path: "/",
        target: Some(target),
        auth: Auth::Signed,
        body: Body::Value(body),
        expect,
        source,
        json_only: false,
    }
}

fn error(status: u16, kind: &str, message: Option<(&str, &str)>) -> Expect {
    let mut map = serde_json::Map::new();
    map.insert("__type".into(), kind.into());
    if let Some((key, text)) = message {
        map.insert(key.into(), text.into());
    }
    Expect::Error(status, Value::Object(map))
}

/// An error with its message under `message`.
fn refused(kind: &str, message: &str) -> Expect {
    error(400, kind, Some(("message", message)))
}

/// A SerializationException: its message under `Message`.
fn unserializable(message: &str) -> Expect {
    error(400, "SerializationException", Some(("Message", message)))
}

/// Sends one request; (status, content type, body).
fn send(addr: SocketAddr, c: &Case, encoding: Encoding) -> (u16, Option<String>, Vec<u8>) {
    let body = match (&c.body, encoding) {
        (Body::Value(v), Encoding::Json) => serde_json::to_vec(v).unwrap(),
        (Body::Value(v), Encoding::Cbor) => {
            let mut out = Vec::new();
            ciborium::ser::into_writer(v, &mut out).unwrap();
            out
        }
        (Body::Empty, _) => Vec::new(),
        (Body::Garbage, Encoding::Json) => b"{".to_vec(),
        (Body::Garbage, Encoding::Cbor) => b"\xff".to_vec(),
    };
    let content_type = match encoding {
        Encoding::Json => "application/x-amz-json-1.1",
        Encoding::Cbor => "application/x-amz-cbor-1.1",
    };
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
        c.method,
        c.path,
        body.len()
    );
    if let Some(target) = c.target {
        head += &format!("X-Amz-Target: {target}\r\n");
    }
    match c.auth {
        Auth::Signed => {
            head += &format!("Authorization: {SIGNED}\r\nX-Amz-Date: 20260101T000000Z\r\n")
        }
        Auth::Header(h) => {
            head += &format!("Authorization: {h}\r\nX-Amz-Date: 20260101T000000Z\r\n")
        }
        Auth::Unsigned => {}
    }
    head += "\r\n";
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&out[..split]).to_ascii_lowercase();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| l.strip_prefix("content-type: "))
        .map(str::to_owned);
    (status, content_type, out[split + 4..].to_vec())
}

fn run(h: &Harness, cases: &[Case]) {
    for c in cases {
        for encoding in [Encoding::Json, Encoding::Cbor] {
            if c.json_only && encoding == Encoding::Cbor {
                continue;
            }
            let label = format!(
                "{} ({}; source: {})",
                c.what,
                if encoding == Encoding::Json {
                    "JSON"
                } else {
                    "CBOR"
                },
                c.source
            );
            let (status, content_type, body) = send(h.addr(), c, encoding);
            match &c.expect {
                Expect::Ok => {
                    assert_eq!(status, 200, "{label}: {}", String::from_utf8_lossy(&body))
                }
                Expect::Raw(want, text) => {
                    assert_eq!(status, *want, "{label}");
                    assert_eq!(String::from_utf8_lossy(&body), *text, "{label}");
                    assert_eq!(content_type, None, "{label}");
                }
                Expect::Error(want, map) => {
                    assert_eq!(status, *want, "{label}");
                    let got: Value = match encoding {
                        Encoding::Json => {
                            assert_eq!(
                                content_type.as_deref(),
                                Some("application/x-amz-json-1.1"),
                                "{label}"
                            );
                            serde_json::from_slice(&body).unwrap()
                        }
                        Encoding::Cbor => {
                            assert_eq!(
                                content_type.as_deref(),
                                Some("application/x-amz-cbor-1.1"),
                                "{label}"
                            );
                            ciborium::de::from_reader(body.as_slice()).unwrap()
                        }
                    };
                    assert_eq!(&got, map, "{label}");
                }
            }
        }
    }
}

/// Methods, targets, bodies and signatures, and which AWS reports first
/// when several are wrong: an undecodable body, then an unknown target,
/// then the signature, then the members' types, then their constraints,
/// then the resources.
#[test]
fn protocol_errors_and_their_precedence() {
    let h = Harness::new();
    let kinesalite = "kinesalite connection.js";
    let post = |what, target: Option<&'static str>, auth, body, expect| Case {
        what,
        method: "POST",
        path: "/",
        target,
        auth,
        body,
        expect,
        source: kinesalite,
        json_only: false,
    };
    let list = Some("Kinesis_20131202.ListStreams");
    let unknown = || error(400, "UnknownOperationException", None);
    let bare = || error(400, "SerializationException", None);
    let missing_token = || {
        refused(
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        )
    };
    let mut cases = vec![
        Case {
            method: "GET",
            ..post("GET, unsigned", list, Auth::Unsigned, Body::Empty, Expect::Raw(403, "<MissingAuthenticationTokenException>\n  <Message>Missing Authentication Token</Message>\n</MissingAuthenticationTokenException>\n"))
        },
        Case {
            method: "PUT",
            ..post("PUT, signed", list, Auth::Signed, Body::Value(json!({})), Expect::Raw(403, "<AccessDeniedException>\n  <Message>Unable to determine service/operation name to be authorized</Message>\n</AccessDeniedException>\n"))
        },
        post("no target", None, Auth::Signed, Body::Value(json!({})), unknown()),
        post("an unknown operation", Some("Kinesis_20131202.Frobnicate"), Auth::Signed, Body::Value(json!({})), unknown()),
        post("another service", Some("Foo.ListStreams"), Auth::Signed, Body::Value(json!({})), unknown()),
        post("an empty body", list, Auth::Signed, Body::Empty, bare()),
        post("an empty body, no target: the target first", None, Auth::Signed, Body::Empty, unknown()),
        post("a body that does not decode, no target: the body first", Some("Kinesis_20131202.Nope"), Auth::Signed, Body::Garbage, bare()),
        post("a body that does not decode, unsigned: the body first", list, Auth::Unsigned, Body::Garbage, bare()),
        post("an empty body, unsigned: the body first", list, Auth::Unsigned, Body::Empty, bare()),
        post("unsigned", list, Auth::Unsigned, Body::Value(json!({})), missing_token()),
        post("unsigned, no target: the target first", None, Auth::Unsigned, Body::Value(json!({})), unknown()),
        post(
            "an incomplete Authorization header",
            list,
            Auth::Header("AWS4-HMAC-SHA256 Credential=a"),
            Body::Value(json!({})),
            refused("IncompleteSignatureException", "Authorization header requires 'Signature' parameter. Authorization header requires 'SignedHeaders' parameter. Authorization=AWS4-HMAC-SHA256 Credential=a"),
        ),
        Case {
            path: "/any/path",
            ..post("a POST to any path", list, Auth::Signed, Body::Value(json!({})), Expect::Ok)
        },
        Case {
            source: "kinesalite helpers.js (serialization before validation and resources)",
            ..post(
                "a wrong type and a missing stream: the type first",
                Some("Kinesis_20131202.DescribeStreamSummary"),
                Auth::Signed,
                Body::Value(json!({"StreamName": 5})),
                unserializable("class com.amazon.coral.value.json.numbers.TruncatingBigNumber can not be converted to an String"),
            )
        },
        Case {
            source: "kinesalite helpers.js (validation before resources)",
            ..post(
                "a bad name and a missing stream: the name first",
                Some("Kinesis_20131202.DescribeStreamSummary"),
                Auth::Signed,
                Body::Value(json!({"StreamName": "bad name"})),
                refused("ValidationException", "1 validation error detected: Value 'bad name' at 'streamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"),
            )
        },
    ];
    cases.push(post(
        "a wrong type, unsigned: the signature first",
        Some("Kinesis_20131202.DescribeStreamSummary"),
        Auth::Unsigned,
        Body::Value(json!({"StreamName": 5})),
        missing_token(),
    ));
    run(&h, &cases);
}

/// Bodies typed neither AWS JSON 1.1 nor CBOR (these answers do not depend
/// on the encoding, so they run once, by hand).
#[test]
fn bodies_of_other_types() {
    let h = Harness::new();
    let raw = |content_type: Option<&str>, target: &str, body: &str| {
        let mut head = format!(
            "POST / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-Amz-Target: {target}\r\nContent-Length: {}\r\n",
            body.len()
        );
        if let Some(t) = content_type {
            head += &format!("Content-Type: {t}\r\n");
        }
        let (head, body) = super::protocol::exchange(h.addr(), &format!("{head}\r\n{body}"));
        let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
        let content_type = head
            .lines()
            .find_map(|l| l.strip_prefix("content-type: "))
            .map(str::to_owned);
        (status, content_type, body)
    };
    let list = "Kinesis_20131202.ListStreams";
    // kinesalite connection.js: a typed-nowhere body.
    let (status, ct, body) = raw(Some("text/plain"), list, "{}");
    assert_eq!(
        (status, ct, body.as_slice()),
        (404, None, &b"<UnknownOperationException/>\n"[..])
    );
    let (status, _, body) = raw(None, "nothing", "{}");
    assert_eq!(status, 403);
    assert!(String::from_utf8_lossy(&body).starts_with("<AccessDeniedException>"));
    // An empty one: a bare CBOR error (Serialization for a known target).
    for (target, kind) in [
        (list, "SerializationException"),
        ("Nope", "UnknownOperationException"),
    ] {
        let (status, ct, body) = raw(None, target, "");
        assert_eq!(
            (status, ct.as_deref()),
            (400, Some("application/x-amz-cbor-1.1"))
        );
        let got: Value = ciborium::de::from_reader(body.as_slice()).unwrap();
        assert_eq!(got, json!({"__type": kind}));
    }
    // The old `application/json`: 200, in AWS's envelope.
    let (status, _, body) = raw(Some("application/json"), list, "{}");
    assert_eq!(status, 200);
    assert_eq!(
        String::from_utf8_lossy(&body),
        r#"{"Output":{"__type":"com.amazon.coral.service#UnknownOperationException","message":null},"Version":"1.0"}"#
    );
    let (_, _, body) = raw(Some("application/json; charset=utf-8"), list, "{");
    assert_eq!(
        String::from_utf8_lossy(&body),
        r#"{"Output":{"__type":"com.amazon.coral.service#SerializationException","Message":null},"Version":"1.0"}"#
    );
}

/// Members of the wrong type, in the deserializer's words.
#[test]
fn serialization_errors() {
    let h = Harness::new();
    let src = "kinesalite validations/index.js and helpers.js";
    let number = "class com.amazon.coral.value.json.numbers.TruncatingBigNumber";
    let cases = vec![
        case("a string for an integer", "Kinesis_20131202.CreateStream", json!({"StreamName": "x", "ShardCount": "1"}), unserializable("class java.lang.String can not be converted to an Integer"), src),
        case("a boolean for a string", "Kinesis_20131202.CreateStream", json!({"StreamName": true}), unserializable("class java.lang.Boolean can not be converted to an String"), src),
        case("a list for a string", "Kinesis_20131202.CreateStream", json!({"StreamName": ["x"]}), unserializable("Start of list found where not expected"), src),
        case("a map for a string", "Kinesis_20131202.CreateStream", json!({"StreamName": {"a": 1}}), unserializable("Start of structure or map found where not expected."), src),
        case("a string for a boolean", "Kinesis_20131202.DeleteStream", json!({"StreamName": "x", "EnforceConsumerDeletion": "yes"}), unserializable("'YES' can not be converted to an Boolean"), src),
        case("a number for a blob", "Kinesis_20131202.PutRecord", json!({"StreamName": "s", "PartitionKey": "p", "Data": 23}), unserializable(&format!("{number} can not be converted to a Blob")), src),
        case("a map for a list", "Kinesis_20131202.PutRecords", json!({"StreamName": "s", "Records": {"a": 1}}), unserializable("Start of structure or map found where not expected."), src),
        case("a string for a structure", "Kinesis_20131202.ListShards", json!({"StreamName": "s", "ShardFilter": "x"}), unserializable("Expected null"), src),
        Case {
            json_only: true,
            ..case("bad base64", "Kinesis_20131202.PutRecord", json!({"StreamName": "s", "PartitionKey": "p", "Data": "23456"}), unserializable("'23456' can not be converted to a Blob: Base64 encoded length is expected a multiple of 4 bytes but found: 5"), src)
        },
    ];
    run(&h, &cases);
}

/// Constraints, in AWS's wording and order.
#[test]
fn validation_errors() {
    let h = Harness::new();
    let src = "kinesalite helpers.js and per-operation tests";
    let cases = vec![
        case("an empty name: the pattern, then the length", "Kinesis_20131202.DescribeStreamSummary", json!({"StreamName": ""}),
            refused("ValidationException", "2 validation errors detected: Value '' at 'streamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+; Value '' at 'streamName' failed to satisfy constraint: Member must have length greater than or equal to 1"), src),
        case("an enum", "Kinesis_20131202.GetShardIterator", json!({"StreamName": "s", "ShardId": "0", "ShardIteratorType": "FIRST"}),
            refused("ValidationException", "1 validation error detected: Value 'FIRST' at 'shardIteratorType' failed to satisfy constraint: Member must satisfy enum value set: [AT_SEQUENCE_NUMBER, AFTER_SEQUENCE_NUMBER, TRIM_HORIZON, LATEST, AT_TIMESTAMP]"), src),
        case("two members missing, in the model's order", "Kinesis_20131202.PutRecord", json!({"StreamName": "s"}),
            refused("ValidationException", "2 validation errors detected: Value null at 'data' failed to satisfy constraint: Member must not be null; Value null at 'partitionKey' failed to satisfy constraint: Member must not be null"), src),
        case("an empty tag key", "Kinesis_20131202.AddTagsToStream", json!({"StreamName": "s", "Tags": {"": "v"}}),
            refused("ValidationException", "1 validation error detected: Value '{=v}' at 'tags' failed to satisfy constraint: Map keys must satisfy constraint: [Member must have length less than or equal to 128, Member must have length greater than or equal to 1]"), src),
    ];
    run(&h, &cases);
}

/// Shard ids as AWS reads them, and which of a missing stream and a
/// missing shard it reports.
#[test]
fn shards_and_streams_not_found() {
    let h = Harness::new();
    h.ok("CreateStream", json!({"StreamName": "s", "ShardCount": 2}));
    let src = "kinesalite getShardIterator.js, splitShard.js, mergeShards.js; db.resolveShardId";
    let gsi = "Kinesis_20131202.GetShardIterator";
    let cases = vec![
        case("an unreadable shard id, missing stream", gsi, json!({"StreamName": "nope", "ShardId": "shardId-00000000000a", "ShardIteratorType": "LATEST"}),
            refused("ResourceNotFoundException", "Could not find shard shardId-00000000000a in stream nope under account 000000000000."), src),
        case("a readable shard id, missing stream", gsi, json!({"StreamName": "nope", "ShardId": "5", "ShardIteratorType": "LATEST"}),
            refused("ResourceNotFoundException", "Shard shardId-000000000005 in stream nope under account 000000000000 does not exist"), src),
        case("a missing shard", gsi, json!({"StreamName": "s", "ShardId": "shardId-000000000009", "ShardIteratorType": "LATEST"}),
            refused("ResourceNotFoundException", "Shard shardId-000000000009 in stream s under account 000000000000 does not exist"), src),
        case("a loose shard id", gsi, json!({"StreamName": "s", "ShardId": "shard-1", "ShardIteratorType": "TRIM_HORIZON"}), Expect::Ok, src),
        case("SplitShard, an unreadable id, missing stream", "Kinesis_20131202.SplitShard", json!({"StreamName": "nope", "ShardToSplit": "x-y", "NewStartingHashKey": "1"}),
            refused("ResourceNotFoundException", "Could not find shard x-y in stream nope under account 000000000000."), src),
        case("SplitShard, a readable id, missing stream", "Kinesis_20131202.SplitShard", json!({"StreamName": "nope", "ShardToSplit": "1", "NewStartingHashKey": "1"}),
            refused("ResourceNotFoundException", "Stream nope under account 000000000000 not found."), src),
        case("MergeShards, a missing shard", "Kinesis_20131202.MergeShards", json!({"StreamName": "s", "ShardToMerge": "7", "AdjacentShardToMerge": "8"}),
            refused("ResourceNotFoundException", "Could not find shard shardId-000000000007 in stream s under account 000000000000."), src),
    ];
    run(&h, &cases);
}

/// Arguments AWS refuses once the request is well formed.
#[test]
fn invalid_arguments() {
    let h = Harness::new();
    h.ok("CreateStream", json!({"StreamName": "s", "ShardCount": 1}));
    let cases = vec![
        case("a SequenceNumberForOrdering that is no sequence number", "Kinesis_20131202.PutRecord",
            json!({"StreamName": "s", "PartitionKey": "p", "Data": "", "SequenceNumberForOrdering": "5"}),
            refused("InvalidArgumentException", "ExclusiveMinimumSequenceNumber 5 used in PutRecord on stream s under account 000000000000 is invalid."),
            "kinesalite putRecord.js"),
        case("LATEST with a StartingSequenceNumber", "Kinesis_20131202.GetShardIterator",
            json!({"StreamName": "s", "ShardId": "0", "ShardIteratorType": "LATEST", "StartingSequenceNumber": "1"}),
            refused("InvalidArgumentException", "Must either specify (1) AT_SEQUENCE_NUMBER or AFTER_SEQUENCE_NUMBER and StartingSequenceNumber or (2) TRIM_HORIZON or LATEST and no StartingSequenceNumber. Request specified LATEST and also a StartingSequenceNumber."),
            "kinesalite getShardIterator.js"),
        case("a tag character AWS refuses", "Kinesis_20131202.AddTagsToStream",
            json!({"StreamName": "s", "Tags": {"a;b": "v"}}),
            refused("InvalidArgumentException", "Some tags contain invalid characters. Valid characters: Unicode letters, digits, white space, _ . / = + - % @."),
            "kinesalite addTagsToStream.js"),
        case("a percent sign in a tag", "Kinesis_20131202.AddTagsToStream",
            json!({"StreamName": "s", "Tags": {"k": "50%"}}),
            refused("InvalidArgumentException", "Failed to add tags to stream s under account 000000000000 because some tags contained illegal characters. The allowed characters are Unicode letters, white-spaces, '_',',','/','=','+','-','@'."),
            "kinesalite addTagsToStream.js"),
    ];
    run(&h, &cases);
}
