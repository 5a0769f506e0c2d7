//! AWS limits on the virtual clock: paging, on-demand streams, throughput, rates.

use super::*;

#[test]
fn limits_and_bad_paging_inputs_are_refused_cleanly() {
    let h = Harness::new();
    // The model has no maximum ShardCount: the account shard limit is the guard.
    for count in [501u64, 1 << 40] {
        let (_, kind, message) = h.error(
            "CreateStream",
            json!({"StreamName": "huge", "ShardCount": count}),
        );
        assert_eq!(kind, "LimitExceededException");
        assert!(
            message.starts_with(
                "This request would exceed the shard limit for the account 000000000000"
            ),
            "{message}"
        );
    }
    let tags: serde_json::Map<String, Value> =
        (0..51).map(|i| (format!("k{i}"), json!("v"))).collect();
    let (_, kind, _) = h.error(
        "CreateStream",
        json!({"StreamName": "t", "ShardCount": 1, "Tags": tags}),
    );
    assert_eq!(kind, "InvalidArgumentException");
    h.ok("CreateStream", json!({"StreamName": "s", "ShardCount": 2}));
    let (_, kind, _) = h.error(
        "ListShards",
        json!({"StreamName": "s", "ExclusiveStartShardId": "bogus"}),
    );
    assert_eq!(kind, "InvalidArgumentException");
    let (_, kind, _) = h.error(
        "DescribeStream",
        json!({"StreamName": "s", "ExclusiveStartShardId": "bogus"}),
    );
    assert_eq!(kind, "InvalidArgumentException");
    // A missing catalog next to existing shard logs stops the start instead of deleting them.
    let mut h = h;
    let server = h.server.take().unwrap();
    h.runtime.block_on(server.stop());
    std::fs::remove_file(h.dir.path().join("catalog.json")).unwrap();
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: h.dir.path().to_path_buf(),
        ..Config::default()
    };
    let err = h
        .runtime
        .block_on(Server::start(config, h.clock.clone()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("is missing but the data directory holds shard logs"),
        "{err}"
    );
    assert!(h
        .dir
        .path()
        .join("log/shards")
        .read_dir()
        .unwrap()
        .next()
        .is_some());
}

#[test]
fn paging_tokens_expire_after_300_seconds() {
    let h = Harness::new();
    h.ok("CreateStream", json!({"StreamName": "a", "ShardCount": 3}));
    h.ok("CreateStream", json!({"StreamName": "b", "ShardCount": 1}));
    let shards = h.ok("ListShards", json!({"StreamName": "a", "MaxResults": 1}));
    let streams = h.ok("ListStreams", json!({"Limit": 1}));
    let (shard_token, stream_token) = (
        shards["NextToken"].as_str().unwrap().to_owned(),
        streams["NextToken"].as_str().unwrap().to_owned(),
    );
    h.clock.advance_ms(300_000);
    let next = h.ok("ListShards", json!({"NextToken": shard_token}));
    assert_eq!(next["Shards"][0]["ShardId"], "shardId-000000000001");
    let next = h.ok("ListStreams", json!({"NextToken": stream_token}));
    assert_eq!(next["StreamNames"], json!(["b"]));
    h.clock.advance_ms(1);
    for (op, token) in [("ListShards", &shard_token), ("ListStreams", &stream_token)] {
        let (status, kind, message) = h.error(op, json!({"NextToken": token}));
        assert_eq!(
            (status, kind.as_str()),
            (400, "ExpiredNextTokenException"),
            "{op}: {message}"
        );
    }
    let (_, kind, _) = h.error("ListShards", json!({"NextToken": "bm90IGEgdG9rZW4="}));
    assert_eq!(kind, "InvalidArgumentException");
}

#[test]
fn the_on_demand_stream_limit_is_enforced() {
    let h = Harness::with(|c| c.on_demand_stream_limit = 1);
    let on_demand = json!({"StreamMode": "ON_DEMAND"});
    h.ok(
        "CreateStream",
        json!({"StreamName": "a", "StreamModeDetails": on_demand}),
    );
    let (_, kind, message) = h.error(
        "CreateStream",
        json!({"StreamName": "b", "StreamModeDetails": on_demand}),
    );
    assert_eq!(kind, "LimitExceededException", "{message}");
    h.ok("CreateStream", json!({"StreamName": "c", "ShardCount": 1}));
    let arn = "arn:aws:kinesis:us-east-1:000000000000:stream/c";
    let (_, kind, _) = h.error(
        "UpdateStreamMode",
        json!({"StreamARN": arn, "StreamModeDetails": on_demand}),
    );
    assert_eq!(kind, "LimitExceededException");
    let limits = h.ok("DescribeLimits", json!({}));
    assert_eq!(
        (
            limits["OnDemandStreamCount"].as_u64(),
            limits["OnDemandStreamCountLimit"].as_u64()
        ),
        (Some(1), Some(1))
    );
}

/// AWS's per-shard limits on the manual clock: 1,000 records or 1 MiB a
/// second of writes (per entry in PutRecords), 5 GetRecords calls and 2 MiB
/// a second of reads with the pause after a 10 MiB answer, 5
/// GetShardIterator calls a second.
#[test]
fn per_shard_throughput_limits_on_the_virtual_clock() {
    let h = Harness::with(|c| c.request_body_max_bytes = 16 << 20);
    h.ok("CreateStream", json!({"StreamName": "t", "ShardCount": 1}));
    let put = |n: usize, size: usize| {
        let data = base64_of(&vec![b'x'; size]);
        let records: Vec<Value> = (0..n)
            .map(|_| json!({"PartitionKey": "k", "Data": data}))
            .collect();
        h.ok("PutRecords", json!({"StreamName": "t", "Records": records}))
    };
    // Records: 1,000 a second; the rest of the batch fails entry by entry.
    put(500, 10);
    let out = put(500, 10);
    assert_eq!(out["FailedRecordCount"], 0);
    let out = put(500, 10);
    assert_eq!(out["FailedRecordCount"], 500);
    assert_eq!(
        out["Records"][0]["ErrorCode"],
        "ProvisionedThroughputExceededException"
    );
    assert_eq!(
        out["Records"][0]["ErrorMessage"],
        "Rate exceeded for shard shardId-000000000000 in stream t under account 000000000000."
    );
    let (status, kind, _) = h.error(
        "PutRecord",
        json!({"StreamName": "t", "PartitionKey": "k", "Data": "eA=="}),
    );
    assert_eq!(
        (status, kind.as_str()),
        (400, "ProvisionedThroughputExceededException")
    );
    // Bytes: 1 MiB a second, in request order.
    h.clock.advance_ms(1_000);
    let out = put(300, 4096);
    let failed = out["FailedRecordCount"].as_u64().unwrap();
    assert_eq!(failed, 300 - (1 << 20) / 4097, "what fits in 1 MiB goes");
    assert!(out["Records"][0]["SequenceNumber"].is_string());
    assert_eq!(
        out["Records"][299]["ErrorCode"],
        "ProvisionedThroughputExceededException"
    );
    h.clock.advance_ms(500);
    assert_eq!(
        put(100, 4096)["FailedRecordCount"],
        0,
        "half a second refills half"
    );

    // Reads: 5 calls a second.
    let iterator = |h: &Harness| {
        h.ok("GetShardIterator", json!({"StreamName": "t", "ShardId": "shardId-000000000000", "ShardIteratorType": "TRIM_HORIZON"}))["ShardIterator"].clone()
    };
    h.clock.advance_ms(1_000);
    let it = iterator(&h);
    for _ in 0..5 {
        h.ok("GetRecords", json!({"ShardIterator": it, "Limit": 1}));
    }
    let (_, kind, message) = h.error("GetRecords", json!({"ShardIterator": it, "Limit": 1}));
    assert_eq!(kind, "ProvisionedThroughputExceededException");
    assert!(message.starts_with("Rate exceeded for shard shardId-000000000000"));
    // GetShardIterator: 5 a second (one was used above).
    for _ in 0..4 {
        iterator(&h);
    }
    let (_, kind, _) = h.error(
        "GetShardIterator",
        json!({"StreamName": "t", "ShardId": "shardId-000000000000", "ShardIteratorType": "LATEST"}),
    );
    assert_eq!(kind, "ProvisionedThroughputExceededException");

    // A 10 MiB answer: fill the shard a second at a time, read it all, and
    // the next 5 seconds are refused.
    for _ in 0..12 {
        h.clock.advance_ms(1_000);
        assert_eq!(put(15, 64 << 10)["FailedRecordCount"], 0);
    }
    h.clock.advance_ms(1_000);
    let got = h.ok("GetRecords", json!({"ShardIterator": iterator(&h)}));
    let returned: usize = got["Records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Data"].as_str().unwrap().len() / 4 * 3)
        .sum();
    assert!(returned > 9 << 20, "{returned}");
    let next = got["NextShardIterator"].clone();
    h.clock.advance_ms(4_999);
    let (_, kind, _) = h.error("GetRecords", json!({"ShardIterator": next}));
    assert_eq!(kind, "ProvisionedThroughputExceededException");
    h.clock.advance_ms(1);
    h.ok("GetRecords", json!({"ShardIterator": next}));
}

/// `--limits off`: nothing is counted.
#[test]
fn limits_off_counts_nothing() {
    let h = Harness::with(|c| c.enforce_limits = false);
    h.ok("CreateStream", json!({"StreamName": "o", "ShardCount": 1}));
    for _ in 0..5 {
        let records: Vec<Value> = (0..500)
            .map(|_| json!({"PartitionKey": "k", "Data": "eA=="}))
            .collect();
        let out = h.ok("PutRecords", json!({"StreamName": "o", "Records": records}));
        assert_eq!(out["FailedRecordCount"], 0);
    }
    for _ in 0..10 {
        h.ok("GetShardIterator", json!({"StreamName": "o", "ShardId": "shardId-000000000000", "ShardIteratorType": "LATEST"}));
    }
}

/// AWS's rolling-day rates under the `aws` limits: UpdateShardCount scales a
/// stream at most 10 times a day, UpdateStreamMode switches it twice.
#[test]
fn scaling_and_mode_switches_per_rolling_day() {
    let h = Harness::new();
    h.ok("CreateStream", json!({"StreamName": "d", "ShardCount": 1}));
    let scale = |n: u32| {
        h.call(
            "UpdateShardCount",
            json!({"StreamName": "d", "TargetShardCount": n, "ScalingType": "UNIFORM_SCALING"}),
        )
    };
    for i in 0..10 {
        h.clock.advance_ms(60_000);
        let (status, body) = scale(if i % 2 == 0 { 2 } else { 1 });
        assert_eq!(status, 200, "scaling {i}: {body}");
    }
    h.clock.advance_ms(60_000);
    let (status, body) = scale(2);
    assert_eq!(
        (status, body["__type"].as_str()),
        (400, Some("LimitExceededException"))
    );
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("at most 10 times per rolling 24-hour period"));
    // A day after the first scaling, one more is allowed.
    h.clock.advance_ms(24 * 3600 * 1000 - 10 * 60_000);
    assert_eq!(scale(2).0, 200);

    let mode = |m: &str| {
        h.call(
            "UpdateStreamMode",
            json!({"StreamARN": "arn:aws:kinesis:us-east-1:000000000000:stream/d", "StreamModeDetails": {"StreamMode": m}}),
        )
    };
    assert_eq!(mode("ON_DEMAND").0, 200);
    assert_eq!(mode("ON_DEMAND").0, 200, "no switch, no count");
    assert_eq!(mode("PROVISIONED").0, 200);
    let (status, body) = mode("ON_DEMAND");
    assert_eq!(
        (status, body["__type"].as_str()),
        (400, Some("LimitExceededException"))
    );
    h.clock.advance_ms(24 * 3600 * 1000);
    assert_eq!(mode("ON_DEMAND").0, 200);
}

/// AWS's control-plane rates under the `aws` limits, on the manual clock:
/// CreateStream 5 a second per account, DescribeStreamSummary 20, and at most
/// 5 streams CREATING at once.
#[test]
fn control_plane_rates_and_the_creating_limit() {
    let h = Harness::with(|c| c.stream_creating_ms = 60_000);
    for i in 0..5 {
        h.ok(
            "CreateStream",
            json!({"StreamName": format!("c{i}"), "ShardCount": 1}),
        );
    }
    h.clock.advance_ms(1_000);
    let (_, kind, message) = h.error("CreateStream", json!({"StreamName": "c5", "ShardCount": 1}));
    assert_eq!(kind, "LimitExceededException");
    assert!(
        message.contains("5 streams in the CREATING state"),
        "{message}"
    );
    h.clock.advance_ms(60_000);
    for i in 5..10 {
        h.ok(
            "CreateStream",
            json!({"StreamName": format!("c{i}"), "ShardCount": 1}),
        );
    }
    let (_, kind, message) = h.error(
        "CreateStream",
        json!({"StreamName": "c10", "ShardCount": 1}),
    );
    assert_eq!(kind, "LimitExceededException");
    assert_eq!(
        message,
        "Rate exceeded for stream c10 under account 000000000000."
    );
    for _ in 0..20 {
        h.ok("DescribeStreamSummary", json!({"StreamName": "c0"}));
    }
    let (_, kind, _) = h.error("DescribeStreamSummary", json!({"StreamName": "c0"}));
    assert_eq!(kind, "LimitExceededException");
    // A second later the buckets have refilled.
    h.clock.advance_ms(1_000);
    h.ok("DescribeStreamSummary", json!({"StreamName": "c0"}));
    let (_, kind, message) = h.error(
        "CreateStream",
        json!({"StreamName": "c10", "ShardCount": 1}),
    );
    assert_eq!(
        kind, "LimitExceededException",
        "c5..c9 are CREATING: {message}"
    );
}
