//! `/metrics`: requests, records, throttling, deleted streams.

use super::*;

#[test]
fn metrics_count_requests_records_and_forget_deleted_streams() {
    let h = Harness::new();
    h.ok("CreateStream", json!({"StreamName": "m", "ShardCount": 2}));
    // "hi" (2 bytes) with keys of 1 byte: 3 records, 9 bytes.
    let r = h.ok(
        "PutRecords",
        json!({"StreamName": "m", "Records": [
            {"PartitionKey": "a", "Data": "aGk="},
            {"PartitionKey": "b", "Data": "aGk="},
            {"PartitionKey": "c", "Data": "aGk="},
        ]}),
    );
    assert_eq!(r["FailedRecordCount"], 0);
    // And 4 bytes more.
    h.ok(
        "PutRecord",
        json!({"StreamName": "m", "PartitionKey": "kk", "Data": "aGk="}),
    );
    let (status, _, _) = h.error("DescribeStream", json!({"StreamName": "nope"}));
    assert_eq!(status, 400);
    let (status, _) = h.raw(
        &[
            ("X-Amz-Target", "Kinesis_20131202.Frobnicate"),
            ("Content-Type", "application/x-amz-json-1.1"),
        ],
        b"{}",
    );
    assert_eq!(status, 400);

    let (status, content_type, scrape) = get(h.addr(), "/metrics");
    assert_eq!(status, 200);
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let at = |series: &str| {
        sample(&scrape, series).unwrap_or_else(|| panic!("no {series} in\n{scrape}"))
    };
    assert_eq!(
        at("sluice_requests_total{operation=\"CreateStream\",status=\"200\"}"),
        1.0
    );
    assert_eq!(
        at("sluice_requests_total{operation=\"PutRecords\",status=\"200\"}"),
        1.0
    );
    assert_eq!(
        at("sluice_requests_total{operation=\"PutRecord\",status=\"200\"}"),
        1.0
    );
    assert_eq!(
        at("sluice_requests_total{operation=\"DescribeStream\",status=\"400\"}"),
        1.0
    );
    assert_eq!(
        at("sluice_requests_total{operation=\"unknown\",status=\"400\"}"),
        1.0
    );
    assert_eq!(
        at("sluice_request_duration_seconds_count{operation=\"PutRecords\"}"),
        1.0
    );
    assert_eq!(
        at("sluice_request_duration_seconds_bucket{operation=\"PutRecords\",le=\"+Inf\"}"),
        1.0
    );
    let stream = "{account=\"000000000000\",region=\"us-east-1\",stream=\"m\"}";
    assert_eq!(
        at(&format!("sluice_stream_incoming_records_total{stream}")),
        4.0
    );
    assert_eq!(
        at(&format!("sluice_stream_incoming_bytes_total{stream}")),
        13.0
    );
    assert_eq!(
        at(&format!("sluice_stream_throttled_records_total{stream}")),
        0.0
    );
    assert_eq!(
        at("sluice_stream_open_shards{account=\"000000000000\",region=\"us-east-1\",stream=\"m\",status=\"ACTIVE\"}"),
        2.0
    );
    assert!(at("sluice_fsync_round_seconds_count") >= 1.0);
    assert!(at("sluice_group_commit_rounds_total") >= 1.0);
    assert!(at("sluice_request_bytes_total") > 100.0);
    assert!(at("sluice_response_bytes_total") > 100.0);
    // Five API requests and this scrape, each on its own connection.
    assert!(at("sluice_connections_accepted_total") >= 6.0);
    // The scrape's own, and perhaps one whose task is still ending.
    assert!(at("sluice_open_connections") >= 1.0);
    assert_eq!(at("sluice_healthy"), 1.0);

    h.ok("DeleteStream", json!({"StreamName": "m"}));
    let (_, _, scrape) = get(h.addr(), "/metrics");
    assert!(!scrape.contains("stream=\"m\""), "{scrape}");
    assert_eq!(
        sample(
            &scrape,
            "sluice_requests_total{operation=\"DeleteStream\",status=\"200\"}"
        ),
        Some(1.0)
    );
}

#[test]
fn metrics_count_throttled_records_and_requests() {
    let h = Harness::with(|c| c.capacity.write_records_per_s = 2);
    h.ok("CreateStream", json!({"StreamName": "t", "ShardCount": 1}));
    let records: Vec<Value> = (0..5)
        .map(|i| json!({"PartitionKey": format!("k{i}"), "Data": "aGk="}))
        .collect();
    let r = h.ok("PutRecords", json!({"StreamName": "t", "Records": records}));
    let failed = r["FailedRecordCount"].as_u64().unwrap();
    assert!(failed >= 1, "{r}");
    // The bucket is empty now (the clock does not move): PutRecord is refused whole.
    let (status, kind, _) = h.error(
        "PutRecord",
        json!({"StreamName": "t", "PartitionKey": "k", "Data": "aGk="}),
    );
    assert_eq!(
        (status, kind.as_str()),
        (400, "ProvisionedThroughputExceededException")
    );
    let (_, _, scrape) = get(h.addr(), "/metrics");
    let stream = "{account=\"000000000000\",region=\"us-east-1\",stream=\"t\"}";
    assert_eq!(
        sample(
            &scrape,
            &format!("sluice_stream_throttled_records_total{stream}")
        ),
        Some((failed + 1) as f64)
    );
    assert_eq!(
        sample(
            &scrape,
            &format!("sluice_stream_incoming_records_total{stream}")
        ),
        Some((5 - failed) as f64)
    );
    assert_eq!(
        sample(
            &scrape,
            "sluice_throttled_requests_total{operation=\"PutRecord\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &scrape,
            "sluice_requests_total{operation=\"PutRecord\",status=\"400\"}"
        ),
        Some(1.0)
    );
}
