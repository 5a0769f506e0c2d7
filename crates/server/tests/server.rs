//! The server in-process on port 0, spoken to over raw HTTP/1.1: the protocol
//! edges that SDKs never produce (bad targets, bad JSON, no signature, oversized
//! bodies, forged or expired iterators) and a restart.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use serde_json::{json, Value};
use sluice_model::ManualClock;
use sluice_server::{Config, Server};

struct Harness {
    runtime: tokio::runtime::Runtime,
    server: Option<Server>,
    clock: Arc<ManualClock>,
    dir: tempfile::TempDir,
    tweak: fn(&mut Config),
}

impl Harness {
    fn new() -> Self {
        Self::with(|_| {})
    }

    /// A harness whose server config is adjusted by `tweak`.
    fn with(tweak: fn(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let mut h = Self {
            runtime,
            server: None,
            clock,
            dir,
            tweak,
        };
        h.start();
        h
    }

    fn start(&mut self) {
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: self.dir.path().to_path_buf(),
            request_body_max_bytes: 1 << 20,
            ..Config::default()
        };
        (self.tweak)(&mut config);
        let clock = self.clock.clone();
        self.server = Some(self.runtime.block_on(Server::start(config, clock)).unwrap());
    }

    fn restart(&mut self) {
        let server = self.server.take().unwrap();
        self.runtime.block_on(server.stop());
        self.start();
    }

    fn addr(&self) -> SocketAddr {
        self.server.as_ref().unwrap().local_addr()
    }

    /// Sends one request; returns (status, body).
    fn raw(&self, headers: &[(&str, &str)], body: &[u8]) -> (u16, Vec<u8>) {
        let mut s = TcpStream::connect(self.addr()).unwrap();
        let mut req = format!(
            "POST / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            req += &format!("{k}: {v}\r\n");
        }
        req += "\r\n";
        s.write_all(req.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&out[..split]).to_string();
        let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
        let mut body = out[split + 4..].to_vec();
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            body = dechunk(&body);
        }
        (status, body)
    }

    fn call(&self, operation: &str, input: Value) -> (u16, Value) {
        let target = format!("Kinesis_20131202.{operation}");
        let (status, body) = self.raw(
            &[
                ("X-Amz-Target", &target),
                ("Content-Type", "application/x-amz-json-1.1"),
                ("Authorization", "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/kinesis/aws4_request, SignedHeaders=host, Signature=00"),
                ("X-Amz-Date", "20260101T000000Z"),
            ],
            &serde_json::to_vec(&input).unwrap(),
        );
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    fn ok(&self, operation: &str, input: Value) -> Value {
        let (status, body) = self.call(operation, input);
        assert_eq!(status, 200, "{operation}: {body}");
        body
    }

    fn error(&self, operation: &str, input: Value) -> (u16, String, String) {
        let (status, body) = self.call(operation, input);
        assert_ne!(status, 200, "{operation} succeeded: {body}");
        (
            status,
            body["__type"].as_str().unwrap_or_default().to_owned(),
            body["message"].as_str().unwrap_or_default().to_owned(),
        )
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&b[..line_end]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[line_end + 2..line_end + 2 + size]);
        b = &b[line_end + 2 + size + 2..];
    }
}

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
        expect(403, "MissingAuthenticationTokenException")
    );
    assert_eq!(
        kind_of(&[auth, json_type, list], b"{}"),
        expect(403, "IncompleteSignatureException")
    );
    assert_eq!(
        kind_of(&[auth, date, json_type, list], b"{\"Limit\":"),
        expect(400, "SerializationException")
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
    let (_, it) = call(
        "GetShardIterator",
        Cbor::Map(vec![
            (text("StreamName"), text("c")),
            (text("ShardId"), text("shardId-000000000000")),
            (text("ShardIteratorType"), text("AT_TIMESTAMP")),
            (
                text("Timestamp"),
                Cbor::Tag(1, Box::new(Cbor::Integer(0.into()))),
            ),
        ]),
    );
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
    assert!(matches!(
        get(&record, "ApproximateArrivalTimestamp"),
        Cbor::Tag(1, _)
    ));
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
    let shards = catalog["streams"]["000000000000/s"]["shards"]
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
    assert!(matches!(
        get(&record, "ApproximateArrivalTimestamp"),
        Cbor::Tag(1, _)
    ));
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

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
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

/// A GET of `path`: (status, content type, body).
fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        String::from_utf8(dechunk(body.as_bytes())).unwrap()
    } else {
        body.to_owned()
    };
    (status, content_type, body)
}

/// The value of the sample `series` (name and labels exactly) in a scrape.
fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse().unwrap())
    })
}

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
    let stream = "{account=\"000000000000\",stream=\"m\"}";
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
        at("sluice_stream_open_shards{account=\"000000000000\",stream=\"m\",status=\"ACTIVE\"}"),
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
    let stream = "{account=\"000000000000\",stream=\"t\"}";
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
