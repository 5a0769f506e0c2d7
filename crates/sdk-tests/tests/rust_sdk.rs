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

/// Signs `body` for `operation` in the query-string (presigned) form with the
/// SDKs' own signer, at `time`, good for `expires`.
fn presign(
    addr: std::net::SocketAddr,
    operation: &str,
    body: &[u8],
    secret: &str,
    time: std::time::SystemTime,
    expires: std::time::Duration,
) -> String {
    use aws_sigv4::http_request::{
        sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
    };
    let identity: aws_smithy_runtime_api::client::identity::Identity =
        Credentials::new("AKIDPRESIGN", secret, None, None, "test").into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(expires);
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("kinesis")
        .time(time)
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let target = format!("Kinesis_20131202.{operation}");
    let headers = [
        ("content-type", "application/x-amz-json-1.1"),
        ("x-amz-target", target.as_str()),
    ];
    let signable = SignableRequest::new(
        "POST",
        format!("http://{addr}/"),
        headers.into_iter(),
        SignableBody::Bytes(body),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    assert_eq!(
        instructions.headers().count(),
        0,
        "a presigned request carries its signature in the query"
    );
    let encode = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    let query: Vec<String> = instructions
        .params()
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    format!(
        "POST /?{} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-amz-json-1.1\r\nX-Amz-Target: {target}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        query.join("&"),
        body.len()
    )
}

/// Sends a request head and body over HTTP/1.1; returns (status, JSON body).
fn send(addr: std::net::SocketAddr, head: &str, body: &[u8]) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&out[..split]);
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    assert!(
        !head.to_ascii_lowercase().contains("chunked"),
        "answers carry a length"
    );
    let json = serde_json::from_slice(&out[split + 4..]).unwrap_or_default();
    (status, json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_query_string_requests_are_verified() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        credentials: [(
            "AKIDPRESIGN".to_owned(),
            sluice_server::Credential {
                secret: "presign-secret".to_owned(),
                account_id: Some("444455556666".to_owned()),
            },
        )]
        .into(),
        ..Config::default()
    };
    let server = Server::start(config, Arc::new(sluice_model::SystemClock))
        .await
        .unwrap();
    let addr = server.local_addr();
    let now = std::time::SystemTime::now();
    let minute = std::time::Duration::from_secs(60);
    let result = tokio::task::spawn_blocking(move || {
        let create = br#"{"StreamName":"signed","ShardCount":1}"#;
        let head = presign(
            addr,
            "CreateStream",
            create,
            "presign-secret",
            now,
            5 * minute,
        );
        assert_eq!(send(addr, &head, create), (200, serde_json::json!({})));

        // The account comes from the access key's configuration.
        let describe = br#"{"StreamName":"signed"}"#;
        let head = presign(
            addr,
            "DescribeStreamSummary",
            describe,
            "presign-secret",
            now,
            5 * minute,
        );
        let (status, body) = send(addr, &head, describe);
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["StreamDescriptionSummary"]["StreamARN"],
            "arn:aws:kinesis:us-east-1:444455556666:stream/signed"
        );

        // The body is covered by the signature.
        let other = br#"{"StreamName":"signeX"}"#;
        let (status, body) = send(addr, &head, other);
        assert_eq!(
            (status, body["__type"].as_str()),
            (400, Some("InvalidSignatureException"))
        );

        // So is the secret.
        let head = presign(
            addr,
            "DescribeStreamSummary",
            describe,
            "wrong",
            now,
            5 * minute,
        );
        let (status, body) = send(addr, &head, describe);
        assert_eq!(
            (status, body["__type"].as_str()),
            (400, Some("InvalidSignatureException"))
        );

        // A presigned request is good for X-Amz-Expires, then no longer.
        let earlier = now - 10 * minute;
        let head = presign(
            addr,
            "DescribeStreamSummary",
            describe,
            "presign-secret",
            earlier,
            20 * minute,
        );
        assert_eq!(send(addr, &head, describe).0, 200);
        let head = presign(
            addr,
            "DescribeStreamSummary",
            describe,
            "presign-secret",
            earlier,
            5 * minute,
        );
        let (status, body) = send(addr, &head, describe);
        assert_eq!(
            (status, body["__type"].as_str()),
            (400, Some("InvalidSignatureException"))
        );
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .starts_with("Signature expired"),
            "{body}"
        );
    })
    .await;
    server.stop().await;
    result.unwrap();
}

/// SubscribeToShard with the Rust SDK over TLS, where ALPN picks HTTP/2 (as
/// against AWS), on a virtual clock: records pushed as they are written, the
/// 5-second rule and takeover, and the end after 5 minutes.
#[tokio::test]
async fn subscribe_to_shard_over_http2_on_a_virtual_clock() {
    use aws_sdk_kinesis::types::{StartingPosition, SubscribeToShardEventStream};
    use std::time::Duration;

    let fixtures =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../server/tests/fixtures");
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(sluice_model::ManualClock::new(1_800_000_000_000));
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        tls: Some(sluice_server::TlsFiles {
            cert: fixtures.join("localhost.crt"),
            key: fixtures.join("localhost.key"),
        }),
        ..Config::default()
    };
    let server = Server::start(config, clock.clone()).await.unwrap();
    let pem = std::fs::read(fixtures.join("localhost.crt")).unwrap();
    let tls_context = tls::TlsContext::builder()
        .with_trust_store(tls::TrustStore::empty().with_pem_certificate(pem))
        .build()
        .unwrap();
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .tls_context(tls_context)
        .build_https();
    let sdk = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(format!("https://localhost:{}", server.local_addr().port()))
        .credentials_provider(Credentials::new(
            "AKIDEXAMPLE",
            "secret",
            None,
            None,
            "test",
        ))
        .http_client(http)
        .build();
    let client = Client::from_conf(sdk);

    client
        .create_stream()
        .stream_name("efo")
        .shard_count(1)
        .send()
        .await
        .unwrap();
    let arn = client
        .describe_stream_summary()
        .stream_name("efo")
        .send()
        .await
        .unwrap()
        .stream_description_summary()
        .unwrap()
        .stream_arn()
        .to_owned();
    let consumer = client
        .register_stream_consumer()
        .stream_arn(&arn)
        .consumer_name("rust")
        .send()
        .await
        .unwrap();
    let consumer_arn = consumer.consumer().unwrap().consumer_arn().to_owned();
    let put = |data: &'static str| {
        client
            .put_record()
            .stream_name("efo")
            .partition_key("k")
            .data(Blob::new(data.as_bytes().to_vec()))
            .send()
    };
    put("r0").await.unwrap();
    let subscribe = || {
        client
            .subscribe_to_shard()
            .consumer_arn(&consumer_arn)
            .shard_id("shardId-000000000000")
            .starting_position(
                StartingPosition::builder()
                    .r#type(ShardIteratorType::TrimHorizon)
                    .build()
                    .unwrap(),
            )
            .send()
    };
    // Every wait is bounded, so a bug fails the test instead of hanging it.
    async fn bounded<F: std::future::Future>(
        f: F,
    ) -> Result<F::Output, tokio::time::error::Elapsed> {
        tokio::time::timeout(Duration::from_secs(30), f).await
    }
    let mut first = subscribe().await.unwrap().event_stream;
    let mut records = Vec::new();
    while records.len() < 2 {
        let event = bounded(first.recv()).await.unwrap().unwrap().unwrap();
        let SubscribeToShardEventStream::SubscribeToShardEvent(event) = event else {
            panic!("{event:?}")
        };
        assert_eq!(event.continuation_sequence_number().len(), 56);
        records.extend(event.records().iter().map(|r| r.data().as_ref().to_vec()));
        if records.len() == 1 {
            put("r1").await.unwrap();
        }
    }
    assert_eq!(records, [b"r0".to_vec(), b"r1".to_vec()]);

    // Within 5 s (of the virtual clock) a second subscription is refused.
    clock.advance_ms(4_999);
    let refused = subscribe().await.unwrap_err().into_service_error();
    assert!(refused.is_resource_in_use_exception(), "{refused:?}");
    // After 5 s it takes over, and the first one ends.
    clock.advance_ms(1);
    let mut second = subscribe().await.unwrap().event_stream;
    // The first one ends with ResourceInUseException (AWS: the previous
    // connection "expires or fails with a ResourceInUseException").
    let ended = loop {
        match bounded(first.recv()).await.unwrap() {
            Ok(Some(_)) => continue,
            Ok(None) => break None,
            Err(e) => break Some(e.into_service_error()),
        }
    };
    let ended = ended.expect("the old stream fails");
    assert!(ended.is_resource_in_use_exception(), "{ended:?}");
    let event = bounded(second.recv()).await.unwrap().unwrap().unwrap();
    let SubscribeToShardEventStream::SubscribeToShardEvent(event) = event else {
        panic!("{event:?}")
    };
    assert_eq!(
        event.records().len(),
        2,
        "the backlog again from TRIM_HORIZON"
    );

    // A subscription lasts 5 minutes.
    clock.advance_ms(5 * 60 * 1000);
    while bounded(second.recv()).await.unwrap().unwrap().is_some() {}
    server.stop().await;
}
