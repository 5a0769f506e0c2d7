//! The Rust aws-sdk-kinesis against Sluice started in-process on port 0.

use std::sync::Arc;

use aws_credential_types::Credentials;
use aws_sdk_kinesis::config::{BehaviorVersion, Region};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};
use aws_sdk_kinesis::Client;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use sluice_server::{Config, Server};

async fn start() -> (Server, Client, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    let server = Server::start(config, Arc::new(sluice_model::SystemClock))
        .await
        .unwrap();
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let sdk = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(format!("http://{}", server.local_addr()))
        .credentials_provider(Credentials::new(
            "AKIDEXAMPLE",
            "secret",
            None,
            None,
            "test",
        ))
        .http_client(http)
        .build();
    (server, Client::from_conf(sdk), dir)
}

#[tokio::test]
async fn stream_lifecycle_put_and_get() {
    let (server, client, _dir) = start().await;
    client
        .create_stream()
        .stream_name("rust")
        .shard_count(2)
        .send()
        .await
        .unwrap();
    let summary = client
        .describe_stream_summary()
        .stream_name("rust")
        .send()
        .await
        .unwrap();
    let summary = summary.stream_description_summary().unwrap();
    assert_eq!(summary.open_shard_count(), 2);
    assert_eq!(summary.stream_status().as_str(), "ACTIVE");

    let put = client
        .put_record()
        .stream_name("rust")
        .partition_key("k")
        .explicit_hash_key("0")
        .data(Blob::new(b"hello".to_vec()))
        .send()
        .await
        .unwrap();
    assert_eq!(put.shard_id(), "shardId-000000000000");
    assert_eq!(put.sequence_number().len(), 56);

    let entries: Vec<_> = (0..100)
        .map(|i| {
            PutRecordsRequestEntry::builder()
                .partition_key(format!("p{i}"))
                .data(Blob::new(format!("r{i}").into_bytes()))
                .build()
                .unwrap()
        })
        .collect();
    let batch = client
        .put_records()
        .stream_name("rust")
        .set_records(Some(entries))
        .send()
        .await
        .unwrap();
    assert_eq!(batch.failed_record_count(), Some(0));
    assert_eq!(batch.records().len(), 100);

    let mut total = 0;
    for shard in ["shardId-000000000000", "shardId-000000000001"] {
        let it = client
            .get_shard_iterator()
            .stream_name("rust")
            .shard_id(shard)
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap();
        let got = client
            .get_records()
            .shard_iterator(it.shard_iterator().unwrap())
            .send()
            .await
            .unwrap();
        assert!(got.next_shard_iterator().is_some());
        if shard == "shardId-000000000000" {
            assert_eq!(got.records()[0].data().as_ref(), b"hello");
            assert_eq!(got.records()[0].sequence_number(), put.sequence_number());
        }
        total += got.records().len();
    }
    assert_eq!(total, 101);

    let missing = client
        .describe_stream_summary()
        .stream_name("nope")
        .send()
        .await
        .unwrap_err();
    let service_error = missing.into_service_error();
    assert!(
        service_error.is_resource_not_found_exception(),
        "{service_error:?}"
    );
    assert_eq!(
        service_error.meta().message(),
        Some("Stream nope under account 000000000000 not found.")
    );

    client
        .delete_stream()
        .stream_name("rust")
        .send()
        .await
        .unwrap();
    server.stop().await;
}
