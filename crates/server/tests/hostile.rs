//! Hostile clients against the server in-process on port 0, over real
//! sockets: what a client can hold before it is authenticated and while it is
//! idle, keep-alive after answers given before the body was read, the test
//! controls' origin checks, and error messages that never echo unbounded
//! input. Timeouts are configured short; every wait is a blocking read that
//! the server's own action (an answer, a close) ends, with a generous read
//! timeout only so that a regression fails instead of hanging.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use sluice_model::ManualClock;
use sluice_server::{Config, Credential, Server};

struct Harness {
    runtime: tokio::runtime::Runtime,
    server: Option<Server>,
    _dir: tempfile::TempDir,
}

impl Harness {
    fn new(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().to_path_buf(),
            request_body_max_bytes: 1 << 20,
            enforce_limits: false,
            ..Config::default()
        };
        tweak(&mut config);
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let server = runtime.block_on(Server::start(config, clock)).unwrap();
        Self {
            runtime,
            server: Some(server),
            _dir: dir,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.server.as_ref().unwrap().local_addr()
    }

    fn server(&self) -> &Server {
        self.server.as_ref().unwrap()
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        s
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            self.runtime.block_on(server.stop());
        }
    }
}

/// One response read off `s`: (status, head, body); `None` if the server
/// closed the connection first.
fn read_response(s: &mut TcpStream) -> Option<(u16, String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(0) | Err(_) => return None,
            Ok(_) => buf.push(byte[0]),
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    s.read_exact(&mut body).ok()?;
    Some((status, head.to_ascii_lowercase(), body))
}

/// True once the server has closed the connection (a read sees the end).
fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut rest = Vec::new();
    match s.read_to_end(&mut rest) {
        Ok(_) => true,
        // A reset is a close too; only the safety timeout is not.
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

const SIGNED: &str = "Authorization: AWS4-HMAC-SHA256 Credential=AKID/20231114/us-east-1/kinesis/aws4_request, SignedHeaders=host;x-amz-date, Signature=00\r\nX-Amz-Date: 20231114T221320Z\r\n";

fn kinesis_request(target: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "POST / HTTP/1.1\r\nHost: localhost\r\nX-Amz-Target: Kinesis_20131202.{target}\r\nContent-Type: application/x-amz-json-1.1\r\n{extra}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

/// Case 3: with credentials configured, a caller that cannot be right is
/// refused from its headers, before a byte of its (huge) body is read, and
/// told the connection closes.
#[test]
fn bodies_of_callers_that_cannot_be_right_are_never_read() {
    let h = Harness::new(|c| {
        c.credentials.insert(
            "AKIDKNOWN".into(),
            Credential {
                secret: "secret".into(),
                account_id: None,
            },
        );
        c.request_body_max_bytes = 16 << 20;
    });
    let headers = [
        // No signature at all.
        ("", "MissingAuthenticationTokenException"),
        // A key the server does not know.
        (SIGNED, "UnrecognizedClientException"),
        // A known key whose signature over the claimed payload hash is wrong.
        (
            "Authorization: AWS4-HMAC-SHA256 Credential=AKIDKNOWN/20231114/us-east-1/kinesis/aws4_request, SignedHeaders=host;x-amz-date, Signature=00\r\nX-Amz-Date: 20231114T221320Z\r\nX-Amz-Content-Sha256: 44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a\r\n",
            "InvalidSignatureException",
        ),
    ];
    let mut open = Vec::new();
    // AWS JSON, and the old `application/json`, which AWS answers in an
    // envelope after reading the body: not before the caller is known here.
    for content_type in ["application/x-amz-json-1.1", "application/json"]
        .into_iter()
        .cycle()
        .take(16)
    {
        for (extra, expected) in headers {
            let mut s = h.connect();
            // Headers only: 15 MiB are announced and never sent.
            let head = format!(
                "POST / HTTP/1.1\r\nHost: localhost\r\nX-Amz-Target: Kinesis_20131202.PutRecord\r\nContent-Type: {content_type}\r\n{extra}Content-Length: {}\r\n\r\n",
                15 << 20
            );
            s.write_all(head.as_bytes()).unwrap();
            let (status, head, body) = read_response(&mut s).expect("an answer");
            assert_eq!(status, 400, "{head}");
            assert!(
                String::from_utf8_lossy(&body).contains(expected),
                "{}",
                String::from_utf8_lossy(&body)
            );
            assert!(head.contains("connection: close"), "{head}");
            open.push(s);
        }
    }
    assert_eq!(h.server().state().body_bytes_held(), 0);
}

/// Case 3: bodies that stall are cut (no waiting forever), and all bodies
/// held together stay within the in-flight budget.
#[test]
fn stalled_bodies_are_cut_and_the_budget_holds() {
    let budget = 2 << 20;
    let h = Harness::new(|c| {
        c.body_timeout_ms = 300;
        // Fast enough that the half sent gives no more time than the stall.
        c.body_min_bytes_per_second = 64 << 20;
        c.body_bytes_in_flight_max = budget;
        c.request_body_max_bytes = 1 << 20;
    });
    let mut stalled = Vec::new();
    for _ in 0..6 {
        let mut s = h.connect();
        let head = format!(
            "POST / HTTP/1.1\r\nHost: localhost\r\nX-Amz-Target: Kinesis_20131202.PutRecord\r\nContent-Type: application/x-amz-json-1.1\r\n{SIGNED}Content-Length: {}\r\n\r\n",
            1 << 20
        );
        // Bodies that find no room are refused while being sent: a failed
        // write is part of the test, not an error of it.
        let _ = s.write_all(head.as_bytes());
        let _ = s.write_all(&vec![b' '; 512 << 10]);
        stalled.push(s);
    }
    assert!(h.server().state().body_bytes_held() <= budget);
    for mut s in stalled {
        // The server answers (or closes) on its own: the body stalled.
        if let Some((status, head, body)) = read_response(&mut s) {
            // Stalled part-way (400), or found no room in time (500: busy, retryable).
            let text = String::from_utf8_lossy(&body);
            assert!(
                (status == 400 && text.contains("stalled"))
                    || (status == 500 && text.contains("busy")),
                "{head}{text}"
            );
            assert!(head.contains("connection: close"), "{head}");
        }
        assert!(closed_by_server(&mut s));
    }
    assert_eq!(h.server().state().body_bytes_held(), 0);
}

/// Case 4: a head that never ends and a connection that never speaks are
/// closed after the header timeout; an idle keep-alive connection after the
/// idle timeout.
#[test]
fn slow_and_idle_connections_are_closed() {
    let h = Harness::new(|c| {
        c.header_timeout_ms = 200;
        c.idle_timeout_ms = 200;
    });
    let mut partial = h.connect();
    partial
        .write_all(b"POST / HTTP/1.1\r\nHost: localhost\r\nX-Amz-Tar")
        .unwrap();
    let mut silent = h.connect();
    let mut idle = h.connect();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let (status, _, body) = read_response(&mut idle).unwrap();
    assert_eq!((status, &body[..]), (200, &b"ok"[..]));
    assert!(closed_by_server(&mut partial));
    assert!(closed_by_server(&mut silent));
    assert!(closed_by_server(&mut idle));
}

/// Case 4: at the connection cap, new clients wait (in the backlog) instead
/// of failing, and are served as soon as the idle connections holding the
/// slots are closed by the timeouts.
#[test]
fn the_connection_cap_holds_and_slots_come_back() {
    let h = Harness::new(|c| {
        c.max_connections = 4;
        c.header_timeout_ms = 300;
    });
    let hogs: Vec<TcpStream> = (0..4).map(|_| h.connect()).collect();
    let mut late = h.connect();
    late.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (status, _, body) = read_response(&mut late).expect("served once a slot frees");
    assert_eq!((status, &body[..]), (200, &b"ok"[..]));
    for mut hog in hogs {
        assert!(closed_by_server(&mut hog));
    }
}

/// Case 7: an answer given before the body was read drains a small body and
/// keeps the connection; a large one is announced with `Connection: close`.
#[test]
fn early_answers_keep_or_close_the_connection_cleanly() {
    let h = Harness::new(|_| {});
    let mut s = h.connect();
    for i in 0..50 {
        let body = [b'x'; 27];
        let req = match i % 2 {
            0 => kinesis_request("NoSuchOperation", SIGNED, &body),
            _ => {
                let mut r =
                    b"POST /elsewhere HTTP/1.1\r\nHost: localhost\r\nContent-Length: 27\r\n\r\n"
                        .to_vec();
                r.extend_from_slice(&body);
                r
            }
        };
        s.write_all(&req).unwrap();
        let (status, head, _) = read_response(&mut s).expect("the connection is still open");
        assert!(status >= 400, "{head}");
        assert!(!head.contains("connection: close"), "{head}");
    }
    s.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut s).unwrap().0, 200);
    // A caller refused for its credentials is told the connection closes
    // (it holds no slot).
    let mut unsigned = h.connect();
    unsigned
        .write_all(&kinesis_request("ListStreams", "", b"{}"))
        .unwrap();
    let (status, head, _) = read_response(&mut unsigned).unwrap();
    assert_eq!(status, 400);
    assert!(head.contains("connection: close"), "{head}");
    assert!(closed_by_server(&mut unsigned));
    // A large body is not read just to be thrown away (200 KiB announced,
    // the first KiB sent).
    let big = kinesis_request("NoSuchOperation", SIGNED, &vec![b'x'; 200 << 10]);
    s.write_all(&big[..big.len() - (199 << 10)]).unwrap();
    let (status, head, _) = read_response(&mut s).unwrap();
    assert_eq!(status, 400);
    assert!(head.contains("connection: close"), "{head}");
    assert!(closed_by_server(&mut s));
}

/// Case 8: the test controls answer only requests a web page elsewhere could
/// not have made.
#[test]
fn test_controls_answer_only_their_own_origin() {
    let h = Harness::new(|c| c.test_controls = true);
    let create = kinesis_request(
        "CreateStream",
        SIGNED,
        br#"{"StreamName":"keep","ShardCount":1}"#,
    );
    let mut s = h.connect();
    s.write_all(&create).unwrap();
    assert_eq!(read_response(&mut s).unwrap().0, 200);
    let port = h.addr().port();
    let reset = |host: &str, extra: &str| {
        let mut s = h.connect();
        let req = format!(
            "POST /_sluice/reset HTTP/1.1\r\nHost: {host}\r\n{extra}Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        );
        s.write_all(req.as_bytes()).unwrap();
        let (status, _, body) = read_response(&mut s).unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    };
    let own = format!("127.0.0.1:{port}");
    let json = "Content-Type: application/json\r\n";
    for (host, extra) in [
        // A cross-site form post: text/plain needs no preflight.
        (own.clone(), "Content-Type: text/plain\r\n".to_owned()),
        (own.clone(), String::new()),
        (
            own.clone(),
            format!("{json}Origin: http://evil.example\r\n"),
        ),
        (
            own.clone(),
            "Content-Type: text/plain\r\nOrigin: null\r\n".to_owned(),
        ),
        (own.clone(), format!("{json}Sec-Fetch-Site: cross-site\r\n")),
        // DNS rebinding: a name that is not the server's.
        (format!("evil.example:{port}"), json.to_owned()),
    ] {
        let (status, body) = reset(&host, &extra);
        assert_eq!(status, 403, "{host} {extra}: {body}");
    }
    let mut s = h.connect();
    s.write_all(&kinesis_request("ListStreams", SIGNED, b"{}"))
        .unwrap();
    let (_, _, body) = read_response(&mut s).unwrap();
    assert!(
        String::from_utf8_lossy(&body).contains("keep"),
        "nothing was reset"
    );
    let (status, body) = reset(&own, &format!("{json}Origin: http://{own}\r\n"));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"streamsDeleted\":1"), "{body}");
    let (status, _) = reset(&format!("localhost:{port}"), json);
    assert_eq!(status, 200);
}

/// Case 9: errors never repeat more than a few hundred bytes of input.
#[test]
fn errors_never_echo_unbounded_input() {
    let h = Harness::new(|_| {});
    let huge = "A".repeat(200_000);
    for auth in [
        format!("AWS4-HMAC-SHA256 Credential={huge}"),
        format!("Basic {huge}"),
        format!("AWS4-HMAC-SHA256 {huge}=1, SignedHeaders=host, Signature=00"),
    ] {
        let mut s = h.connect();
        let extra = format!("Authorization: {auth}\r\nX-Amz-Date: 20231114T221320Z\r\n");
        s.write_all(&kinesis_request("ListStreams", &extra, b"{}"))
            .unwrap();
        let (status, head, body) = read_response(&mut s).unwrap();
        assert_eq!(status, 400, "{head}");
        assert!(body.len() < 1024, "{} bytes echoed", body.len());
    }
    let mut s = h.connect();
    let name = "n".repeat(100_000);
    s.write_all(&kinesis_request(
        "DescribeStream",
        SIGNED,
        format!(r#"{{"StreamName":"{name}"}}"#).as_bytes(),
    ))
    .unwrap();
    let (status, _, body) = read_response(&mut s).unwrap();
    assert_eq!(status, 400);
    assert!(body.len() < 1200, "{} bytes echoed", body.len());
}
