//! Firehose on the same port as Kinesis: routed by target prefix, signed
//! for `firehose`, answered in JSON or CBOR, counted under its own name.

use super::*;

fn firehose_call(
    h: &Harness,
    operation: &str,
    body: &[u8],
    content_type: &str,
    auth: &str,
) -> (u16, Vec<u8>) {
    let target = format!("Firehose_20150804.{operation}");
    h.raw(
        &[
            ("X-Amz-Target", &target),
            ("Content-Type", content_type),
            ("Authorization", auth),
            ("X-Amz-Date", "20231114T221320Z"),
        ],
        body,
    )
}

const FIREHOSE_AUTH: &str = "AWS4-HMAC-SHA256 Credential=AKID/20231114/us-east-1/firehose/aws4_request, SignedHeaders=host, Signature=00";

#[test]
fn firehose_is_served_beside_kinesis() {
    let h = Harness::new();
    let json_type = "application/x-amz-json-1.1";
    let create = json!({
        "DeliveryStreamName": "d",
        "S3DestinationConfiguration": {"RoleARN": "arn:aws:iam::000000000000:role/r", "BucketARN": "arn:aws:s3:::b"},
    });
    let (status, body) = firehose_call(
        &h,
        "CreateDeliveryStream",
        &serde_json::to_vec(&create).unwrap(),
        json_type,
        FIREHOSE_AUTH,
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    // A Kinesis stream of the same name is another thing.
    let (_, kind, _) = h.error("DescribeStreamSummary", json!({"StreamName": "d"}));
    assert_eq!(kind, "ResourceNotFoundException");
    // An unknown Firehose operation is unknown, without a message.
    let (status, body) = firehose_call(&h, "Frobnicate", b"{}", json_type, FIREHOSE_AUTH);
    assert_eq!(
        (status, body.as_slice()),
        (400, &br#"{"__type":"UnknownOperationException"}"#[..])
    );
    // CBOR answers, typed by the Firehose model: the creation time is tag 1
    // with epoch milliseconds.
    let mut request = Vec::new();
    ciborium::ser::into_writer(&json!({"DeliveryStreamName": "d"}), &mut request).unwrap();
    let (status, body) = firehose_call(
        &h,
        "DescribeDeliveryStream",
        &request,
        "application/x-amz-cbor-1.1",
        FIREHOSE_AUTH,
    );
    assert_eq!(status, 200);
    let answer: ciborium::value::Value = ciborium::de::from_reader(body.as_slice()).unwrap();
    let description = answer.as_map().unwrap()[0].1.as_map().unwrap();
    let created = description
        .iter()
        .find(|(k, _)| k.as_text() == Some("CreateTimestamp"))
        .map(|(_, v)| v.clone())
        .unwrap();
    assert_eq!(
        created,
        ciborium::value::Value::Tag(
            1,
            Box::new(ciborium::value::Value::Integer(1_700_000_000_000i64.into()))
        )
    );
    // Counted under its own name in /metrics.
    let (head, metrics) = super::protocol::exchange(
        h.addr(),
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains("operation=\"Firehose.CreateDeliveryStream\",status=\"200\"} 1"),
        "{metrics}"
    );
}

#[test]
fn a_kinesis_signature_is_not_one_for_firehose() {
    let h = Harness::with(|c| {
        c.credentials.insert(
            "AKID".into(),
            sluice_server::Credential {
                secret: "secret".into(),
                account_id: None,
            },
        );
    });
    let kinesis_scoped = "AWS4-HMAC-SHA256 Credential=AKID/20231114/us-east-1/kinesis/aws4_request, SignedHeaders=host, Signature=00";
    let (status, body) = firehose_call(
        &h,
        "ListDeliveryStreams",
        b"{}",
        "application/x-amz-json-1.1",
        kinesis_scoped,
    );
    assert_eq!(status, 400);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        body,
        json!({"__type": "InvalidSignatureException", "message": "Credential should be scoped to correct service: 'firehose'."})
    );
}
