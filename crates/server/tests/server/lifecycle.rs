//! Streams over time and restarts: durability, retention, encryption, states, resharding.

use super::*;

#[test]
fn streams_records_and_sequence_numbers_survive_a_restart() {
    let mut h = Harness::new();
    h.ok(
        "CreateStream",
        json!({"StreamName": "keep", "ShardCount": 2}),
    );
    let first = h.ok(
        "PutRecord",
        json!({"StreamName": "keep", "PartitionKey": "a", "ExplicitHashKey": "0", "Data": "b25l"}),
    );
    h.restart();
    let summary = h.ok("DescribeStreamSummary", json!({"StreamName": "keep"}));
    assert_eq!(summary["StreamDescriptionSummary"]["OpenShardCount"], 2);
    let second = h.ok(
        "PutRecord",
        json!({"StreamName": "keep", "PartitionKey": "a", "ExplicitHashKey": "0", "Data": "dHdv"}),
    );
    let (a, b) = (
        first["SequenceNumber"].as_str().unwrap(),
        second["SequenceNumber"].as_str().unwrap(),
    );
    assert_eq!(a.len(), 56);
    assert!(b > a, "{b} <= {a}");
    let it = h.ok("GetShardIterator", json!({"StreamName": "keep", "ShardId": "shardId-000000000000", "ShardIteratorType": "AT_SEQUENCE_NUMBER", "StartingSequenceNumber": a}));
    let got = h.ok("GetRecords", json!({"ShardIterator": it["ShardIterator"]}));
    let datas: Vec<&str> = got["Records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Data"].as_str().unwrap())
        .collect();
    assert_eq!(datas, ["b25l", "dHdv"]);
    // Iterators handed out before a restart stay valid (the key is persisted).
    let old_iterator = it["ShardIterator"].clone();
    h.restart();
    h.ok("GetRecords", json!({"ShardIterator": old_iterator}));
    h.ok("DeleteStream", json!({"StreamName": "keep"}));
    h.restart();
    let (_, kind, _) = h.error("DescribeStream", json!({"StreamName": "keep"}));
    assert_eq!(kind, "ResourceNotFoundException");
}

#[test]
fn retention_trims_on_the_injected_clock() {
    let mut h = Harness::new();
    h.ok("CreateStream", json!({"StreamName": "r", "ShardCount": 1}));
    h.ok(
        "PutRecord",
        json!({"StreamName": "r", "PartitionKey": "p", "Data": "b2xk"}),
    );
    h.clock.advance_ms(3600 * 1000);
    h.ok(
        "PutRecord",
        json!({"StreamName": "r", "PartitionKey": "p", "Data": "bmV3"}),
    );
    let read = |h: &Harness| {
        let it = h.ok("GetShardIterator", json!({"StreamName": "r", "ShardId": "shardId-000000000000", "ShardIteratorType": "TRIM_HORIZON"}));
        let got = h.ok("GetRecords", json!({"ShardIterator": it["ShardIterator"]}));
        got["Records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["Data"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    // 24 hours and a minute after the first record: it has expired, the second has not.
    h.clock.advance_ms(23 * 3600 * 1000 + 60_000);
    h.server
        .as_ref()
        .unwrap()
        .state()
        .apply_retention()
        .unwrap();
    assert_eq!(read(&h), ["bmV3"]);
    // Raising retention keeps what is left; a restart re-applies it before serving.
    h.ok(
        "IncreaseStreamRetentionPeriod",
        json!({"StreamName": "r", "RetentionPeriodHours": 48}),
    );
    h.clock.advance_ms(24 * 3600 * 1000);
    h.restart();
    assert_eq!(read(&h), ["bmV3"]);
    // Lowering it trims at once.
    h.ok(
        "DecreaseStreamRetentionPeriod",
        json!({"StreamName": "r", "RetentionPeriodHours": 24}),
    );
    assert!(read(&h).is_empty());
    let (_, kind, message) = h.error(
        "IncreaseStreamRetentionPeriod",
        json!({"StreamName": "r", "RetentionPeriodHours": 9000}),
    );
    assert_eq!(kind, "InvalidArgumentException");
    assert_eq!(message, "Maximum allowed retention period is 8760 hours. Requested retention period (9000 hours) is too long.");
}

#[test]
fn encryption_marks_records_written_while_it_is_on() {
    let h = Harness::new();
    h.ok("CreateStream", json!({"StreamName": "e", "ShardCount": 1}));
    h.ok(
        "PutRecord",
        json!({"StreamName": "e", "PartitionKey": "p", "Data": "MQ=="}),
    );
    h.ok(
        "StartStreamEncryption",
        json!({"StreamName": "e", "EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"}),
    );
    let put = h.ok(
        "PutRecord",
        json!({"StreamName": "e", "PartitionKey": "p", "Data": "Mg=="}),
    );
    assert_eq!(put["EncryptionType"], "KMS");
    let summary = h.ok("DescribeStreamSummary", json!({"StreamName": "e"}));
    assert_eq!(summary["StreamDescriptionSummary"]["EncryptionType"], "KMS");
    assert_eq!(
        summary["StreamDescriptionSummary"]["KeyId"],
        "alias/aws/kinesis"
    );
    h.ok(
        "StopStreamEncryption",
        json!({"StreamName": "e", "EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"}),
    );
    let it = h.ok("GetShardIterator", json!({"StreamName": "e", "ShardId": "shardId-000000000000", "ShardIteratorType": "TRIM_HORIZON"}));
    let got = h.ok("GetRecords", json!({"ShardIterator": it["ShardIterator"]}));
    let types: Vec<Value> = got["Records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["EncryptionType"].clone())
        .collect();
    assert_eq!(types, [Value::Null, json!("KMS")]);
}

#[test]
fn one_process_per_data_directory() {
    let h = Harness::new();
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: h.dir.path().to_path_buf(),
        ..Config::default()
    };
    let second = h.runtime.block_on(Server::start(config, h.clock.clone()));
    let message = second.unwrap_err().to_string();
    assert!(
        message.contains("is in use by another Sluice process"),
        "{message}"
    );
}

/// A client that goes away in the middle of a PutRecords body leaves nothing behind.
#[test]
fn a_dropped_put_records_leaves_nothing() {
    let h = Harness::new();
    h.ok("CreateStream", json!({"StreamName": "d", "ShardCount": 1}));
    let body = serde_json::to_vec(&json!({
        "StreamName": "d",
        "Records": [{"PartitionKey": "p", "Data": "aGk="}, {"PartitionKey": "q", "Data": "aGk="}],
    }))
    .unwrap();
    {
        let mut s = TcpStream::connect(h.addr()).unwrap();
        let head = format!(
            "POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: Kinesis_20131202.PutRecords\r\nContent-Type: application/x-amz-json-1.1\r\nX-Amz-Date: 20260101T000000Z\r\nAuthorization: AWS4-HMAC-SHA256 Credential=A/20260101/us-east-1/kinesis/aws4_request, SignedHeaders=host, Signature=0\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(&body[..body.len() / 2]).unwrap();
        // Dropped here, half-way through the body.
    }
    // A full request on a new connection is answered, and the stream is empty.
    let it = h.ok("GetShardIterator", json!({"StreamName": "d", "ShardId": "shardId-000000000000", "ShardIteratorType": "TRIM_HORIZON"}));
    let got = h.ok("GetRecords", json!({"ShardIterator": it["ShardIterator"]}));
    assert_eq!(got["Records"], json!([]));
}

#[test]
fn creating_updating_and_deleting_take_their_configured_time() {
    let h = Harness::with(|c| {
        c.stream_creating_ms = 1_000;
        c.stream_updating_ms = 500;
        c.stream_deleting_ms = 700;
    });
    let status = |h: &Harness| {
        let (code, body) = h.call("DescribeStreamSummary", json!({"StreamName": "t"}));
        match code {
            200 => body["StreamDescriptionSummary"]["StreamStatus"]
                .as_str()
                .unwrap()
                .to_owned(),
            _ => body["__type"].as_str().unwrap().to_owned(),
        }
    };
    h.ok("CreateStream", json!({"StreamName": "t", "ShardCount": 1}));
    assert_eq!(status(&h), "CREATING");
    h.clock.advance_ms(1_000);
    assert_eq!(status(&h), "ACTIVE");
    h.ok(
        "StartStreamEncryption",
        json!({"StreamName": "t", "EncryptionType": "KMS", "KeyId": "k"}),
    );
    assert_eq!(status(&h), "UPDATING");
    let (_, kind, message) = h.error("UpdateMaxRecordSize", json!({"StreamARN": "arn:aws:kinesis:us-east-1:000000000000:stream/t", "MaxRecordSizeInKiB": 2048}));
    assert_eq!(kind, "ResourceInUseException");
    assert_eq!(
        message,
        "Stream t under account 000000000000 not ACTIVE, instead in state UPDATING"
    );
    // Writes go on while UPDATING.
    h.ok(
        "PutRecord",
        json!({"StreamName": "t", "PartitionKey": "p", "Data": "aGk="}),
    );
    h.clock.advance_ms(500);
    assert_eq!(status(&h), "ACTIVE");
    h.ok("DeleteStream", json!({"StreamName": "t"}));
    assert_eq!(status(&h), "DELETING");
    let (_, kind, _) = h.error(
        "PutRecord",
        json!({"StreamName": "t", "PartitionKey": "p", "Data": "aGk="}),
    );
    assert_eq!(kind, "ResourceNotFoundException");
    let (_, kind, _) = h.error("CreateStream", json!({"StreamName": "t", "ShardCount": 1}));
    assert_eq!(kind, "ResourceInUseException");
    h.clock.advance_ms(700);
    assert_eq!(status(&h), "ResourceNotFoundException");
    // The name is free again, and the new stream starts empty.
    h.ok("CreateStream", json!({"StreamName": "t", "ShardCount": 1}));
    h.clock.advance_ms(1_000);
    let it = h.ok("GetShardIterator", json!({"StreamName": "t", "ShardId": "shardId-000000000000", "ShardIteratorType": "TRIM_HORIZON"}));
    assert_eq!(
        h.ok("GetRecords", json!({"ShardIterator": it["ShardIterator"]}))["Records"],
        json!([])
    );
}

#[test]
fn an_interrupted_reshard_is_finished_at_the_next_start() {
    let mut h = Harness::with(|c| c.stream_updating_ms = 1_000);
    h.ok("CreateStream", json!({"StreamName": "s", "ShardCount": 2}));
    h.ok(
        "PutRecord",
        json!({"StreamName": "s", "PartitionKey": "p", "Data": "aGk=", "ExplicitHashKey": "0"}),
    );
    h.ok(
        "SplitShard",
        json!({"StreamName": "s", "ShardToSplit": "shardId-000000000000", "NewStartingHashKey": "1000"}),
    );
    // UPDATING for a second on the injected clock: no second reshard yet.
    let (_, kind, message) = h.error(
        "MergeShards",
        json!({"StreamName": "s", "ShardToMerge": "shardId-000000000002", "AdjacentShardToMerge": "shardId-000000000003"}),
    );
    assert_eq!(kind, "ResourceInUseException");
    assert!(message.contains("instead in state UPDATING"), "{message}");
    h.clock.advance_ms(1_000);
    let ending = |h: &Harness| {
        h.ok("ListShards", json!({"StreamName": "s"}))["Shards"][0]["SequenceNumberRange"]
            ["EndingSequenceNumber"]
            .clone()
    };
    let before = ending(&h);
    assert!(before.is_string(), "closed with an ending sequence number");

    // Simulate a crash between committing the split and recording the
    // parent's ending sequence number.
    let server = h.server.take().unwrap();
    h.runtime.block_on(server.stop());
    let path = h.dir.path().join("catalog.json");
    let mut catalog: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let shards = catalog["streams"]["000000000000/us-east-1/s"]["shards"]
        .as_array_mut()
        .unwrap();
    shards[0]["closed"]["ending_sequence"] = Value::Null;
    std::fs::write(&path, serde_json::to_vec(&catalog).unwrap()).unwrap();
    h.start();
    assert_eq!(
        ending(&h),
        before,
        "the restart closed the log again and recorded it"
    );
    let put = h.ok(
        "PutRecord",
        json!({"StreamName": "s", "PartitionKey": "p", "Data": "aGk=", "ExplicitHashKey": "0"}),
    );
    assert_eq!(put["ShardId"], "shardId-000000000002");
    let it = h.ok("GetShardIterator", json!({"StreamName": "s", "ShardId": "shardId-000000000000", "ShardIteratorType": "TRIM_HORIZON"}));
    let got = h.ok("GetRecords", json!({"ShardIterator": it["ShardIterator"]}));
    assert_eq!(got["Records"].as_array().unwrap().len(), 1);
    assert!(got.get("NextShardIterator").is_none());
    assert_eq!(got["ChildShards"][0]["ShardId"], "shardId-000000000002");
    assert_eq!(got["ChildShards"][1]["ShardId"], "shardId-000000000003");
}

/// A closed shard stays listed and readable until its records expire; then
/// retention removes it and its data, while its children keep naming it.
#[test]
fn retention_removes_closed_shards_whose_records_expired() {
    let h = Harness::new();
    h.ok("CreateStream", json!({"StreamName": "x", "ShardCount": 1}));
    h.ok(
        "PutRecord",
        json!({"StreamName": "x", "PartitionKey": "p", "Data": "b2xk"}),
    );
    h.ok(
        "SplitShard",
        json!({"StreamName": "x", "ShardToSplit": "shardId-000000000000", "NewStartingHashKey": "1000"}),
    );
    let ids = |h: &Harness| -> Vec<String> {
        h.ok("ListShards", json!({"StreamName": "x"}))["Shards"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["ShardId"].as_str().unwrap().to_owned())
            .collect()
    };
    let state = h.server.as_ref().unwrap().state().clone();
    h.clock.advance_ms(24 * 3600 * 1000 - 1);
    state.apply_retention().unwrap();
    assert_eq!(ids(&h).len(), 3, "not yet expired");
    let parent_log = state.catalog().streams().next().unwrap().shards[0].log_id;
    h.clock.advance_ms(2);
    state.apply_retention().unwrap();
    assert_eq!(ids(&h), ["shardId-000000000001", "shardId-000000000002"]);
    let shards = h.ok("ListShards", json!({"StreamName": "x"}));
    assert_eq!(shards["Shards"][0]["ParentShardId"], "shardId-000000000000");
    assert!(state.shard_log(parent_log).is_none(), "its log is deleted");
    let (_, kind, _) = h.error(
        "GetShardIterator",
        json!({"StreamName": "x", "ShardId": "shardId-000000000000", "ShardIteratorType": "TRIM_HORIZON"}),
    );
    assert_eq!(kind, "ResourceNotFoundException");
    // New shards keep counting up.
    h.ok(
        "SplitShard",
        json!({"StreamName": "x", "ShardToSplit": "shardId-000000000002", "NewStartingHashKey": "100000"}),
    );
    assert_eq!(ids(&h).last().unwrap(), "shardId-000000000004");
}
