//! The protocol edges: AWS-shaped errors, forged iterators, CBOR, HTTP/2 and TLS.

use super::*;

#[test]
fn protocol_errors_are_aws_shaped() {
    let h = Harness::new();
    let auth = ("Authorization", "AWS4-HMAC-SHA256 Credential=A/20260101/us-east-1/kinesis/aws4_request, SignedHeaders=host, Signature=0");
    let json_type = ("Content-Type", "application/x-amz-json-1.1");
    let date = ("X-Amz-Date", "20260101T000000Z");
    let parse = |b: &[u8]| serde_json::from_slice::<Value>(b).unwrap();

    let kind_of = |headers: &[(&str, &str)], body: &[u8]| {
        let (status, body) = h.raw(headers, body);
        (status, parse(&body)["__type"].as_str().unwrap().to_owned())
    };
    let list = ("X-Amz-Target", "Kinesis_20131202.ListStreams");
    let expect = |status: u16, kind: &str| (status, kind.to_owned());
    assert_eq!(
        kind_of(&[auth, date, json_type], b"{}"),
        expect(400, "UnknownOperationException")
    );
    let frobnicate = ("X-Amz-Target", "Kinesis_20131202.Frobnicate");
    assert_eq!(
        kind_of(&[auth, date, json_type, frobnicate], b"{}"),
        expect(400, "UnknownOperationException")
    );
    assert_eq!(
        kind_of(&[json_type, list], b"{}"),
        expect(400, "MissingAuthenticationTokenException")
    );
    assert_eq!(
        kind_of(&[auth, json_type, list], b"{}"),
        expect(400, "IncompleteSignatureException")
    );
    assert_eq!(
        kind_of(&[auth, date, json_type, list], b"{\"Limit\":"),
        expect(400, "SerializationException")
    );
    // A region no ARN can carry (the boto3 tests serve several real ones).
    let odd_region = ("Authorization", "AWS4-HMAC-SHA256 Credential=A/20260101/Us_East/kinesis/aws4_request, SignedHeaders=host, Signature=0");
    let (status, body) = h.raw(&[odd_region, date, json_type, list], b"{}");
    assert_eq!(status, 400);
    assert_eq!(
        parse(&body),
        json!({"__type": "InvalidSignatureException", "message": "Credential should be scoped to a valid region, not 'Us_East'."})
    );
    let big = vec![b' '; (1 << 20) + 1];
    assert_eq!(
        kind_of(&[auth, date, json_type, list], &big),
        expect(413, "RequestEntityTooLargeException")
    );

    let (status, kind, message) = h.error(
        "CreateStream",
        json!({"StreamName": "bad name", "ShardCount": 1}),
    );
    assert_eq!((status, kind.as_str()), (400, "ValidationException"));
    assert_eq!(message, "1 validation error detected: Value 'bad name' at 'streamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+");
    let (_, kind, message) = h.error("DescribeStreamSummary", json!({"StreamName": "missing"}));
    assert_eq!(kind, "ResourceNotFoundException");
    assert_eq!(
        message,
        "Stream missing under account 000000000000 not found."
    );
}

#[test]
fn iterators_cannot_be_forged_and_expire_after_five_minutes() {
    let h = Harness::new();
    h.ok("CreateStream", json!({"StreamName": "s", "ShardCount": 1}));
    h.ok(
        "PutRecord",
        json!({"StreamName": "s", "PartitionKey": "p", "Data": "aGk="}),
    );
    let it = h.ok("GetShardIterator", json!({"StreamName": "s", "ShardId": "shardId-000000000000", "ShardIteratorType": "TRIM_HORIZON"}));
    let it = it["ShardIterator"].as_str().unwrap().to_owned();
    let got = h.ok("GetRecords", json!({"ShardIterator": it}));
    assert_eq!(got["Records"][0]["Data"], "aGk=");

    let mut forged = it.clone().into_bytes();
    let i = forged.len() / 2;
    forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
    let (_, kind, message) = h.error(
        "GetRecords",
        json!({"ShardIterator": String::from_utf8(forged).unwrap()}),
    );
    assert_eq!(
        (kind.as_str(), message.as_str()),
        ("InvalidArgumentException", "Invalid ShardIterator.")
    );

    h.clock.advance_ms(5 * 60 * 1000 + 1);
    let (_, kind, message) = h.error("GetRecords", json!({"ShardIterator": it}));
    assert_eq!(kind, "ExpiredIteratorException");
    assert!(message.starts_with("Iterator expired. The iterator was created at time 1700000000000 while right now it is 1700000300001"), "{message}");
}

#[test]
fn cbor_requests_get_cbor_answers() {
    use ciborium::value::Value as Cbor;
    let h = Harness::new();
    h.ok("CreateStream", json!({"StreamName": "c", "ShardCount": 1}));
    let call = |operation: &str, body: Cbor| {
        let mut bytes = Vec::new();
        ciborium::ser::into_writer(&body, &mut bytes).unwrap();
        let target = format!("Kinesis_20131202.{operation}");
        let (status, out) = h.raw(
            &[
                ("X-Amz-Target", &target),
                ("Content-Type", "application/x-amz-cbor-1.1"),
                ("Authorization", "AWS4-HMAC-SHA256 Credential=A/20260101/us-east-1/kinesis/aws4_request, SignedHeaders=host, Signature=0"),
                ("X-Amz-Date", "20260101T000000Z"),
            ],
            &bytes,
        );
        (
            status,
            ciborium::de::from_reader::<Cbor, _>(out.as_slice()).unwrap(),
        )
    };
    let text = |s: &str| Cbor::Text(s.into());
    let get = |v: &Cbor, key: &str| -> Cbor {
        v.as_map()
            .unwrap()
            .iter()
            .find(|(k, _)| k.as_text() == Some(key))
            .map(|(_, v)| v.clone())
            .unwrap_or(Cbor::Null)
    };
    let payload = vec![0u8, 0xff, b'b', b'i', b'n'];
    let (status, put) = call(
        "PutRecord",
        Cbor::Map(vec![
            (text("StreamName"), text("c")),
            (text("PartitionKey"), text("k")),
            (text("Data"), Cbor::Bytes(payload.clone())),
        ]),
    );
    assert_eq!(status, 200, "{put:?}");
    assert_eq!(get(&put, "SequenceNumber").as_text().unwrap().len(), 56);
    // PutRecords as the Java SDK sends it: Data as byte strings.
    let (status, puts) = call(
        "PutRecords",
        Cbor::Map(vec![
            (text("StreamName"), text("c")),
            (
                text("Records"),
                Cbor::Array(vec![
                    Cbor::Map(vec![
                        (text("Data"), Cbor::Bytes(vec![1, 2, 3])),
                        (text("PartitionKey"), text("a")),
                    ]),
                    Cbor::Map(vec![
                        (text("Data"), Cbor::Bytes(vec![])),
                        (text("PartitionKey"), text("b")),
                        (text("ExplicitHashKey"), text("0")),
                    ]),
                ]),
            ),
        ]),
    );
    assert_eq!(status, 200, "{puts:?}");
    assert_eq!(get(&puts, "FailedRecordCount"), Cbor::Integer(0.into()));
    assert_eq!(get(&puts, "EncryptionType"), text("NONE"));
    let results = get(&puts, "Records");
    let results = results.as_array().unwrap();
    assert_eq!(results.len(), 2);
    for r in results {
        assert_eq!(get(r, "ShardId"), text("shardId-000000000000"));
        assert_eq!(get(r, "SequenceNumber").as_text().unwrap().len(), 56);
    }
    // GetShardIterator AT_TIMESTAMP, the time in the Java SDKs' form (tag 1,
    // epoch milliseconds).
    let at_timestamp = |ms: u64| {
        call(
            "GetShardIterator",
            Cbor::Map(vec![
                (text("StreamName"), text("c")),
                (text("ShardId"), text("shardId-000000000000")),
                (text("ShardIteratorType"), text("AT_TIMESTAMP")),
                (
                    text("Timestamp"),
                    Cbor::Tag(1, Box::new(Cbor::Integer(ms.into()))),
                ),
            ]),
        )
    };
    let (_, it) = at_timestamp(0);
    let (status, got) = call(
        "GetRecords",
        Cbor::Map(vec![(text("ShardIterator"), get(&it, "ShardIterator"))]),
    );
    assert_eq!(status, 200);
    let records = get(&got, "Records").as_array().unwrap().clone();
    assert_eq!(records.len(), 3);
    let record = records[0].clone();
    assert_eq!(get(&record, "Data"), Cbor::Bytes(payload));
    assert_eq!(get(&records[1], "Data"), Cbor::Bytes(vec![1, 2, 3]));
    assert_eq!(get(&records[2], "Data"), Cbor::Bytes(vec![]));
    assert_eq!(get(&records[2], "PartitionKey"), text("b"));
    assert!(matches!(get(&got, "NextShardIterator"), Cbor::Text(_)));
    // Tag 1 and epoch milliseconds as an integer, as the Java SDKs read it
    // (the harness's clock stands at 1_700_000_000_000 ms).
    let Cbor::Tag(1, arrival) = get(&record, "ApproximateArrivalTimestamp") else {
        panic!("ApproximateArrivalTimestamp is not tag 1");
    };
    let arrival_ms = u64::try_from(arrival.as_integer().expect("an integer")).unwrap();
    assert!(
        (1_700_000_000_000..1_700_000_000_000 + 86_400_000).contains(&arrival_ms),
        "{arrival_ms}"
    );
    // AT_TIMESTAMP in the Java form: at the arrival, every record; a
    // millisecond later, none (read as seconds, both would be the far
    // future, which AWS refuses).
    sluice_model::Clock::advance(&*h.clock, 10);
    for (at, expected) in [(arrival_ms, 3), (arrival_ms + 1, 0)] {
        let (status, it) = at_timestamp(at);
        assert_eq!(status, 200, "{it:?}");
        let (_, got) = call(
            "GetRecords",
            Cbor::Map(vec![(text("ShardIterator"), get(&it, "ShardIterator"))]),
        );
        assert_eq!(
            get(&got, "Records").as_array().unwrap().len(),
            expected,
            "at {at}"
        );
    }
    let (status, error) = call(
        "DescribeStreamSummary",
        Cbor::Map(vec![(text("StreamName"), text("nope"))]),
    );
    assert_eq!(status, 400);
    assert_eq!(get(&error, "__type"), text("ResourceNotFoundException"));
    let (status, error) = call("ListStreams", Cbor::Array(vec![]));
    assert_eq!(
        (status, get(&error, "__type")),
        (400, text("SerializationException"))
    );
}

/// HTTP/2 with prior knowledge (h2c), as SDKs that speak HTTP/2 use it.
#[test]
fn http2_prior_knowledge() {
    use http_body_util::{BodyExt, Full};
    let h = Harness::new();
    let addr = h.addr();
    let (status, body) = h.runtime.block_on(async move {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let request = hyper::Request::post(format!("http://{addr}/"))
            .header("x-amz-target", "Kinesis_20131202.CreateStream")
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-date", "20260101T000000Z")
            .header("authorization", "AWS4-HMAC-SHA256 Credential=A/20260101/us-east-1/kinesis/aws4_request, SignedHeaders=host, Signature=0")
            .body(Full::new(bytes::Bytes::from_static(br#"{"StreamName":"h2","ShardCount":1}"#)))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.version(), hyper::Version::HTTP_2);
        let status = response.status().as_u16();
        (status, response.into_body().collect().await.unwrap().to_bytes())
    });
    assert_eq!(status, 200, "{body:?}");
    let summary = h.ok("DescribeStreamSummary", json!({"StreamName": "h2"}));
    assert_eq!(
        summary["StreamDescriptionSummary"]["StreamStatus"],
        "ACTIVE"
    );
}

/// TLS with ALPN: h2 and http/1.1 both work over the same port.
#[test]
fn tls_with_alpn_h2_and_http1() {
    use http_body_util::{BodyExt, Full};
    use std::sync::Arc as StdArc;
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        tls: Some(sluice_server::TlsFiles {
            cert: fixtures.join("localhost.crt"),
            key: fixtures.join("localhost.key"),
        }),
        ..Config::default()
    };
    let server = runtime
        .block_on(Server::start(config, Arc::new(ManualClock::new(1))))
        .unwrap();
    let addr = server.local_addr();
    let connector = |alpn: &[u8]| {
        use rustls::pki_types::{pem::PemObject, CertificateDer};
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(fixtures.join("localhost.crt")).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = StdArc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        tokio_rustls::TlsConnector::from(StdArc::new(config))
    };
    let request = |name: &str| {
        hyper::Request::post(format!("https://localhost:{}/", addr.port()))
            .header("host", format!("localhost:{}", addr.port()))
            .header("x-amz-target", "Kinesis_20131202.CreateStream")
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-date", "20260101T000000Z")
            .header("authorization", "AWS4-HMAC-SHA256 Credential=A/20260101/us-east-1/kinesis/aws4_request, SignedHeaders=host, Signature=0")
            .body(Full::new(bytes::Bytes::from(format!(r#"{{"StreamName":"{name}","ShardCount":1}}"#))))
            .unwrap()
    };
    runtime.block_on(async {
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        // h2 by ALPN.
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let tls = connector(b"h2").connect(name.clone(), tcp).await.unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (mut sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tls),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let response = sender.send_request(request("over-h2")).await.unwrap();
        assert_eq!(
            (response.version(), response.status().as_u16()),
            (hyper::Version::HTTP_2, 200)
        );
        // http/1.1 by ALPN.
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let tls = connector(b"http/1.1").connect(name, tcp).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(conn);
        let response = sender.send_request(request("over-h1")).await.unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(status, 200, "{body:?}");
        // Plain HTTP on a TLS port gets nothing useful.
        let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        plain
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let _ = plain.read_to_end(&mut buf).await;
        assert!(!buf.starts_with(b"HTTP/1.1 200"));
    });
    runtime.block_on(server.stop());
}

#[test]
fn the_record_size_error_names_the_key_when_the_data_alone_fits() {
    let h = Harness::with(|c| c.request_body_max_bytes = 4 << 20);
    h.ok("CreateStream", json!({"StreamName": "r", "ShardCount": 1}));
    use base64::Engine as _;
    let data = base64::engine::general_purpose::STANDARD.encode(vec![0u8; 1 << 20]);
    let (status, kind, message) = h.error(
        "PutRecord",
        json!({"StreamName": "r", "PartitionKey": "key", "Data": data}),
    );
    assert_eq!((status, kind.as_str()), (400, "ValidationException"));
    assert!(
        message.contains("the data (1048576 bytes) and the partition key (3 bytes) together"),
        "{message}"
    );
}

#[test]
fn an_oversized_put_records_gets_one_error_whatever_its_size() {
    let h = Harness::new();
    h.ok("CreateStream", json!({"StreamName": "o", "ShardCount": 1}));
    // Over the body limit (1 MiB here, 16 MiB by default): not kept.
    let big = "A".repeat(3 << 19);
    let body = serde_json::to_vec(&json!({
        "StreamName": "o",
        "Records": [{"PartitionKey": "k", "Data": big}],
    }))
    .unwrap();
    let (status, body) = h.raw(
        &[
            ("X-Amz-Target", "Kinesis_20131202.PutRecords"),
            ("Content-Type", "application/x-amz-json-1.1"),
            ("Authorization", "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/kinesis/aws4_request, SignedHeaders=host, Signature=00"),
            ("X-Amz-Date", "20260101T000000Z"),
        ],
        &body,
    );
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["__type"], "InvalidArgumentException");
    assert_eq!(body["message"], "Records size exceeds 10485760 bytes limit");
}

/// One raw HTTP/1.1 exchange: the status line and headers (lowercased) and
/// the body.
pub(crate) fn exchange(addr: SocketAddr, request: &str) -> (String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    (
        String::from_utf8_lossy(&out[..split]).to_ascii_lowercase(),
        out[split + 4..].to_vec(),
    )
}

/// CORS as Kinesis answers it (AWS's preflight answer recorded by the AWS
/// SDK team's cors-test): the JS SDK in a web page asks first, without
/// credentials, then reads answers that name any origin.
#[test]
fn cors_preflight_and_answers() {
    let h = Harness::new();
    let asked = "content-type,x-amz-target,x-amz-date,authorization,amz-sdk-invocation-id";
    let (head, body) = exchange(
        h.addr(),
        &format!(
            "OPTIONS / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nOrigin: https://app.example\r\n\
             Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: {asked}\r\n\r\n"
        ),
    );
    assert!(head.starts_with("http/1.1 200"), "{head}");
    for line in [
        "access-control-allow-origin: *".to_owned(),
        format!("access-control-allow-headers: {asked}"),
        "access-control-allow-methods: post".to_owned(),
        "access-control-expose-headers: x-amzn-requestid,x-amzn-errortype,x-amz-request-id,x-amz-id-2,x-amzn-errormessage,date".to_owned(),
        "access-control-max-age: 172800".to_owned(),
        "content-length: 0".to_owned(),
    ] {
        assert!(head.contains(&line), "{line} not in {head}");
    }
    assert!(body.is_empty());
    // Not a preflight without Origin: a method other than POST, which AWS
    // refuses in XML.
    let (head, body) = exchange(
        h.addr(),
        "OPTIONS / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAccess-Control-Request-Method: POST\r\n\r\n",
    );
    assert!(head.starts_with("http/1.1 403"), "{head}");
    assert_eq!(
        String::from_utf8_lossy(&body),
        "<MissingAuthenticationTokenException>\n  <Message>Missing Authentication Token</Message>\n</MissingAuthenticationTokenException>\n"
    );
    assert!(!head.contains("access-control-allow-origin"), "{head}");
    // Answers to a request with Origin, a success and an error alike.
    let auth = "AWS4-HMAC-SHA256 Credential=A/20260101/us-east-1/kinesis/aws4_request, SignedHeaders=host, Signature=0";
    for (target, status) in [
        ("Kinesis_20131202.ListStreams", "200"),
        ("Kinesis_20131202.Nope", "400"),
    ] {
        let (head, _) = exchange(
            h.addr(),
            &format!(
                "POST / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nOrigin: https://app.example\r\n\
                 X-Amz-Target: {target}\r\nContent-Type: application/x-amz-json-1.1\r\nAuthorization: {auth}\r\n\
                 X-Amz-Date: 20260101T000000Z\r\n\
                 Content-Length: 2\r\n\r\n{{}}"
            ),
        );
        assert!(head.starts_with(&format!("http/1.1 {status}")), "{head}");
        assert!(head.contains("access-control-allow-origin: *"), "{head}");
        assert!(
            head.contains("access-control-expose-headers: x-amzn-requestid"),
            "{head}"
        );
    }
}
