//! SubscribeToShard frames and on-demand scaling.

use super::*;

/// SubscribeToShard's event stream on the wire, in JSON and in CBOR: the
/// framing (prelude and message CRCs), the headers of each message, the
/// initial response, typed CBOR payloads, and the end of a closed shard.
#[test]
fn subscribe_to_shard_frames_in_json_and_cbor() {
    use aws_smithy_eventstream::frame::read_message_from;
    use ciborium::value::Value as Cbor;
    let h = Harness::new();
    h.ok("CreateStream", json!({"StreamName": "f", "ShardCount": 1}));
    let arn = h.ok("DescribeStreamSummary", json!({"StreamName": "f"}))["StreamDescriptionSummary"]
        ["StreamARN"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut consumers = Vec::new();
    for name in ["json", "cbor"] {
        let c = h.ok(
            "RegisterStreamConsumer",
            json!({"StreamARN": arn, "ConsumerName": name}),
        );
        consumers.push(c["Consumer"]["ConsumerARN"].as_str().unwrap().to_owned());
    }
    h.ok(
        "PutRecord",
        json!({"StreamName": "f", "PartitionKey": "k", "Data": "AP8="}),
    );
    // A closed shard: the subscription reads it to the end and stops.
    h.ok(
        "SplitShard",
        json!({"StreamName": "f", "ShardToSplit": "shardId-000000000000", "NewStartingHashKey": "100"}),
    );
    let messages = |body: Vec<u8>| {
        let mut buf = bytes::Bytes::from(body);
        let mut out = Vec::new();
        while !buf.is_empty() {
            out.push(read_message_from(&mut buf).expect("a well-formed message"));
        }
        out
    };
    let header = |m: &aws_smithy_types::event_stream::Message, name: &str| -> String {
        m.headers()
            .iter()
            .find(|h| h.name().as_str() == name)
            .map(|h| h.value().as_string().unwrap().as_str().to_owned())
            .unwrap_or_default()
    };
    let input = |consumer: &str| {
        json!({"ConsumerARN": consumer, "ShardId": "shardId-000000000000",
               "StartingPosition": {"Type": "TRIM_HORIZON"}})
    };
    let auth = "AWS4-HMAC-SHA256 Credential=A/20260101/us-east-1/kinesis/aws4_request, SignedHeaders=host, Signature=0";

    // JSON.
    let (status, body) = h.raw(
        &[
            ("X-Amz-Target", "Kinesis_20131202.SubscribeToShard"),
            ("Content-Type", "application/x-amz-json-1.1"),
            ("Authorization", auth),
            ("X-Amz-Date", "20260101T000000Z"),
        ],
        &serde_json::to_vec(&input(&consumers[0])).unwrap(),
    );
    assert_eq!(status, 200);
    let got = messages(body);
    assert_eq!(
        got.len(),
        2,
        "the initial response, then one event to the end"
    );
    assert_eq!(header(&got[0], ":message-type"), "event");
    assert_eq!(header(&got[0], ":event-type"), "initial-response");
    assert_eq!(got[0].payload().as_ref(), b"{}");
    assert_eq!(header(&got[1], ":event-type"), "SubscribeToShardEvent");
    assert_eq!(header(&got[1], ":content-type"), "application/json");
    let event: Value = serde_json::from_slice(got[1].payload()).unwrap();
    assert_eq!(event["Records"][0]["Data"], "AP8=");
    assert_eq!(event["MillisBehindLatest"], 0);
    assert!(event.get("ContinuationSequenceNumber").is_none());
    let children: Vec<&str> = event["ChildShards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["ShardId"].as_str().unwrap())
        .collect();
    assert_eq!(children, ["shardId-000000000001", "shardId-000000000002"]);

    // CBOR.
    let mut request = Vec::new();
    let cbor_input = Cbor::Map(vec![
        (
            Cbor::Text("ConsumerARN".into()),
            Cbor::Text(consumers[1].clone()),
        ),
        (
            Cbor::Text("ShardId".into()),
            Cbor::Text("shardId-000000000000".into()),
        ),
        (
            Cbor::Text("StartingPosition".into()),
            Cbor::Map(vec![(
                Cbor::Text("Type".into()),
                Cbor::Text("TRIM_HORIZON".into()),
            )]),
        ),
    ]);
    ciborium::ser::into_writer(&cbor_input, &mut request).unwrap();
    let (status, body) = h.raw(
        &[
            ("X-Amz-Target", "Kinesis_20131202.SubscribeToShard"),
            ("Content-Type", "application/x-amz-cbor-1.1"),
            ("Authorization", auth),
            ("X-Amz-Date", "20260101T000000Z"),
        ],
        &request,
    );
    assert_eq!(status, 200);
    let got = messages(body);
    assert_eq!(got.len(), 2);
    assert_eq!(header(&got[0], ":event-type"), "initial-response");
    assert_eq!(
        header(&got[1], ":content-type"),
        "application/x-amz-cbor-1.1"
    );
    let event: Cbor = ciborium::de::from_reader(got[1].payload().as_ref()).unwrap();
    let get = |v: &Cbor, key: &str| -> Cbor {
        v.as_map()
            .unwrap()
            .iter()
            .find(|(k, _)| k.as_text() == Some(key))
            .map(|(_, v)| v.clone())
            .unwrap_or(Cbor::Null)
    };
    let record = get(&event, "Records").as_array().unwrap()[0].clone();
    assert_eq!(get(&record, "Data"), Cbor::Bytes(vec![0, 0xff]));
    // Tag 1 and an integer of epoch milliseconds (the harness's clock).
    assert!(
        matches!(
            get(&record, "ApproximateArrivalTimestamp"),
            Cbor::Tag(1, ms) if ms.as_integer().is_some_and(|ms| u64::try_from(ms).unwrap() >= 1_700_000_000_000)
        ),
        "{record:?}"
    );
    assert_eq!(get(&event, "ChildShards").as_array().unwrap().len(), 2);

    // Errors before the stream starts are ordinary answers.
    let (status, kind, _) = h.error("SubscribeToShard", input(&format!("{arn}/consumer/none:1")));
    assert_eq!((status, kind.as_str()), (400, "ResourceNotFoundException"));
}

/// An ON_DEMAND stream follows a producer ramping from 1,000 to 20,000
/// records/s over many partition keys, one virtual second at a time: the
/// open shards double while shards run hot, and stop growing once each is
/// below the policy's line. Writes are throttled (AWS's 1,000 records/s a
/// shard) only briefly, while the stream catches up.
#[test]
fn on_demand_streams_follow_a_ramp_on_the_virtual_clock() {
    let h = Harness::new();
    h.ok(
        "CreateStream",
        json!({"StreamName": "od", "StreamModeDetails": {"StreamMode": "ON_DEMAND"}}),
    );
    let state = h.server.as_ref().unwrap().state().clone();
    let open = || {
        h.ok("DescribeStreamSummary", json!({"StreamName": "od"}))["StreamDescriptionSummary"]
            ["OpenShardCount"]
            .as_u64()
            .unwrap()
    };
    state.autoscale();
    let mut counts = vec![open()];
    let mut throttled = Vec::new();
    let mut last_actions = Vec::new();
    for second in 0..14u64 {
        let rate = (1_000 + second * 2_000).min(20_000);
        let mut failed = 0;
        for call in 0..rate / 500 {
            let records: Vec<Value> = (0..500)
                .map(|i| json!({"PartitionKey": format!("k-{second}-{call}-{i}"), "Data": "AAAAAAAAAA=="}))
                .collect();
            let out = h.ok(
                "PutRecords",
                json!({"StreamName": "od", "Records": records}),
            );
            failed += out["FailedRecordCount"].as_u64().unwrap();
        }
        throttled.push(failed);
        h.clock.advance_ms(1_000);
        last_actions = state.autoscale();
        counts.push(open());
    }
    assert_eq!(counts[0], 4, "an on-demand stream starts with 4 shards");
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
    assert!(
        *counts.last().unwrap() >= 40,
        "20,000 records/s need 40 shards at 500/s: {counts:?}"
    );
    assert!(
        last_actions.is_empty(),
        "settled: {last_actions:?} {counts:?}"
    );
    assert!(
        throttled.iter().any(|&n| n > 0),
        "the ramp outran the stream at first: {throttled:?}"
    );
    assert!(
        throttled[throttled.len() - 5..].iter().all(|&n| n == 0),
        "then throttling stopped: {throttled:?} {counts:?}"
    );
    // Every record is still readable through the lineage: nothing was lost.
    let shards = h.ok("ListShards", json!({"StreamName": "od"}))["Shards"]
        .as_array()
        .unwrap()
        .len();
    assert!(
        shards as u64 > *counts.last().unwrap(),
        "closed parents stay listed"
    );
}
