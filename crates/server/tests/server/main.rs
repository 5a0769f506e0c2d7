//! The server in-process on port 0, spoken to over raw HTTP/1.1: the protocol
//! edges that SDKs never produce (bad targets, bad JSON, no signature, oversized
//! bodies, forged or expired iterators) and a restart.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use serde_json::{json, Value};
use sluice_model::ManualClock;
use sluice_server::{Config, Server};

mod edges;
mod fanout;
mod firehose;
mod lifecycle;
mod limits;
mod metrics;
mod protocol;

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

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
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
