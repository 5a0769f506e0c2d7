//! `sluice bench` against Sluice started in-process on port 0.

use std::sync::Arc;
use std::time::Duration;

use sluice_bench::{Consumer, Producer, Target, Workload};
use sluice_server::{Config, Credential, Server};

async fn start(credentials: bool) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        // A load generator measures the server, not AWS's per-shard limits.
        enforce_limits: false,
        ..Config::default()
    };
    if credentials {
        config.credentials.insert(
            "AKIDBENCH".into(),
            Credential {
                secret: "bench-secret".into(),
                account_id: None,
            },
        );
    }
    let server = Server::start(config, Arc::new(sluice_model::SystemClock))
        .await
        .unwrap();
    (server, dir)
}

fn target(server: &Server, secret: &str) -> Target {
    Target {
        endpoint: format!("http://{}", server.local_addr()),
        region: "us-east-1".into(),
        access_key: "AKIDBENCH".into(),
        secret_key: secret.into(),
        session_token: None,
    }
}

fn workload(producer: Producer, records: u64) -> Workload {
    Workload {
        stream: "bench".into(),
        shards: 3,
        producer,
        record_size: 64,
        batch: 100,
        keys: 50,
        concurrency: 3,
        duration: Duration::from_secs(600),
        records: Some(records),
        consumer: Consumer::Poll,
        poll_interval: Duration::from_millis(1),
        ..Workload::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_put_is_acknowledged_and_seen() {
    let (server, _dir) = start(true).await;
    // Signed with aws-sigv4 and verified by the server: a real signature check.
    let report = sluice_bench::run(
        target(&server, "bench-secret"),
        workload(Producer::PutRecords, 3_050),
    )
    .await
    .unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!((report.records_ok, report.records_failed), (3_050, 0));
    assert_eq!(report.put_requests, 31, "30 full batches and one of 50");
    assert_eq!(report.payload_bytes, 3_050 * 64);
    assert_eq!(report.records_consumed, 3_050);
    let e2e = report.end_to_end_latency_ms.as_ref().unwrap();
    assert_eq!(e2e.count, 3_050, "every record carried a stamp");
    assert_eq!(report.put_latency_ms.as_ref().unwrap().count, 31);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["workload"]["producer"], "put-records");
    assert!(report.human().contains("3050 records ok, 0 failed"));

    // The stream exists now: a second run reuses it; PutRecord, read all
    // back, then delete it.
    let mut single = workload(Producer::PutRecord, 40);
    single.delete = true;
    single.read_back = true;
    let report = sluice_bench::run(target(&server, "bench-secret"), single)
        .await
        .unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!((report.records_ok, report.put_requests), (40, 40));
    assert_eq!(report.records_consumed, 40);
    let read = report.read_back.as_ref().unwrap();
    assert_eq!((read.records, read.payload_bytes), (3_090, 3_090 * 64));

    // Without a consumer, full batches come from a reused pool; the last,
    // partial batch is built on its own. Every record still lands.
    let mut pooled = workload(Producer::PutRecords, 2_550);
    pooled.consumer = Consumer::None;
    pooled.read_back = true;
    pooled.delete = true;
    let report = sluice_bench::run(target(&server, "bench-secret"), pooled)
        .await
        .unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!((report.records_ok, report.put_requests), (2_550, 26));
    assert_eq!(report.read_back.as_ref().unwrap().records, 2_550);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_reported_by_exception_name() {
    let (server, _dir) = start(true).await;
    let err = sluice_bench::run(
        target(&server, "wrong-secret"),
        workload(Producer::PutRecords, 10),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("InvalidSignatureException"),
        "{err}"
    );
    // A record of 1 MiB plus its partition key is over the limit: each request
    // fails, counted by exception name, and the run goes on.
    let mut big = workload(Producer::PutRecord, 3);
    big.record_size = 1024 * 1024;
    big.consumer = Consumer::None;
    let report = sluice_bench::run(target(&server, "bench-secret"), big)
        .await
        .unwrap();
    assert_eq!((report.records_ok, report.records_failed), (0, 3));
    assert_eq!(
        report.errors.get("PutRecord/ValidationException"),
        Some(&3),
        "{:?}",
        report.errors
    );
    assert!(report
        .human()
        .contains("error PutRecord/ValidationException: 3"));
    let mut missing = workload(Producer::PutRecord, 3);
    missing.create = false;
    missing.stream = "absent".into();
    let err = sluice_bench::run(target(&server, "bench-secret"), missing)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("ResourceNotFoundException"),
        "{err}"
    );
    server.stop().await;
}

/// The enhanced fan-out consumer: a registered consumer subscribed to every
/// shard sees every record, and the run deregisters it afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fan_out_consumer_sees_every_record() {
    let (server, _dir) = start(true).await;
    let mut w = workload(Producer::PutRecords, 3_000);
    w.consumer = Consumer::Subscribe;
    w.stream = "fan-out".into();
    let report = sluice_bench::run(target(&server, "bench-secret"), w)
        .await
        .unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.records_consumed, 3_000);
    assert_eq!(report.end_to_end_latency_ms.as_ref().unwrap().count, 3_000);
    let consumers_left = {
        let catalog = server.state().catalog();
        let stream = catalog.streams().find(|s| s.name == "fan-out").unwrap();
        stream.consumers.len()
    };
    assert_eq!(consumers_left, 0, "the run deregistered its consumer");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_firehose_producer_sees_every_record_delivered() {
    let (server, dir) = start(true).await;
    let w = sluice_bench::firehose::FirehoseWorkload {
        delivery_stream: "bench".into(),
        create: true,
        delete: true,
        record_size: 100,
        batch: 200,
        concurrency: 2,
        duration: std::time::Duration::from_secs(60),
        records: Some(2_050),
        buffer_mb: 1,
        // Delivered as records arrive.
        buffer_seconds: 0,
        bucket_dir: Some(dir.path().join("s3").join(sluice_bench::firehose::BUCKET)),
        drain: std::time::Duration::from_secs(60),
    };
    let report = sluice_bench::firehose::run(target(&server, "bench-secret"), w)
        .await
        .unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!((report.records_ok, report.records_failed), (2_050, 0));
    assert_eq!(report.put_requests, 11, "ten full batches and one of 50");
    assert_eq!(report.records_delivered, 2_050, "every record in an object");
    assert!(report.objects >= 1);
    let latency = report.put_to_object_ms.expect("stamps were read");
    assert_eq!(latency.count, 2_050);
    server.stop().await;
}
