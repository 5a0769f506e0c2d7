//! HTTP: one connection, routing, body limit, target, decoding, validation,
//! and turning results and errors into AWS-shaped responses (the watchdog is
//! `conn`, SigV4 at the door `auth`).

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::{Body as _, Incoming};
use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE, ORIGIN};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::Watcher;
use sluice_aws::{cbor, kinesis, AwsError, ErrorCode};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_rustls::TlsAcceptor;

use crate::auth::{authenticate_body, authenticate_head, PendingAuth};
use crate::conn::{watchdog, ConnWatch, Counted, Watched};
use crate::cors;
use crate::encode;
use crate::events::{self, EventBody};
use crate::state::State;
use sluice_streams::ops;

const JSON_CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// A whole answer, or SubscribeToShard's event stream.
type ResponseBody = Either<Full<Bytes>, EventBody>;

/// Serves one connection on its own task: TLS first if configured, then
/// HTTP/1.1 or HTTP/2 (h2c by preface, or h2 by ALPN), watched by `watcher` so
/// that shutdown can drain it, and by a watchdog that closes it when it holds
/// a slot without using it (see [`ConnWatch`]). `permit` is its slot under the
/// connection cap, given back when the connection ends.
pub fn spawn_connection(
    stream: TcpStream,
    state: Arc<State>,
    tls: Option<TlsAcceptor>,
    watcher: Watcher,
    permit: OwnedSemaphorePermit,
) {
    tokio::spawn(async move {
        let _permit = permit;
        let _open = OpenConnection::count(&state);
        match tls {
            None => serve(stream, state, watcher).await,
            Some(acceptor) => {
                let handshake =
                    tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                if let Ok(Ok(stream)) = handshake.await {
                    serve(stream, state, watcher).await;
                }
            }
        }
    });
}

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Counts a connection as open (for `/metrics`) while it lives.
struct OpenConnection(Arc<State>);

impl OpenConnection {
    fn count(state: &Arc<State>) -> Self {
        state
            .metrics
            .connections_open
            .fetch_add(1, Ordering::Relaxed);
        state
            .metrics
            .connections_total
            .fetch_add(1, Ordering::Relaxed);
        Self(state.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0
            .metrics
            .connections_open
            .fetch_sub(1, Ordering::Relaxed);
    }
}

async fn serve<IO>(io: IO, state: Arc<State>, watcher: Watcher)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    static BUILDER: OnceLock<auto::Builder<TokioExecutor>> = OnceLock::new();
    let watch = Arc::new(ConnWatch::new(state.config.body_min_bytes_per_second));
    let io = Watched {
        inner: io,
        watch: watch.clone(),
    };
    let header = Duration::from_millis(state.config.header_timeout_ms.max(1));
    let idle = Duration::from_millis(state.config.idle_timeout_ms.max(1));
    let requests = watch.clone();
    let service = service_fn(move |req| handle(req, state.clone(), requests.clone()));
    let connection = BUILDER
        .get_or_init(|| auto::Builder::new(TokioExecutor::new()))
        .serve_connection(TokioIo::new(io), service);
    tokio::select! {
        _ = watcher.watch(connection) => {}
        // Dropping the connection closes it.
        () = watchdog(&watch, header, idle) => {}
    }
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
    watch: Arc<ConnWatch>,
) -> Result<Response<Counted<ResponseBody>>, Infallible> {
    let in_flight = watch.start_request();
    let started = Instant::now();
    let http1 = req.version() < hyper::Version::HTTP_2;
    // Browsers (the JS SDK in a web page) ask first, without credentials.
    if let Some(preflight) = cors::preflight(&req) {
        return Ok(preflight.map(|body| Counted::new(body, in_flight)));
    }
    let cross_origin = req.headers().contains_key(ORIGIN);
    let mut seen = Seen::default();
    let (mut response, unread) = respond(req, state.clone(), &mut seen).await;
    if cross_origin {
        cors::allow(response.headers_mut());
    }
    if let Some(op) = seen.operation {
        let elapsed = started.elapsed();
        let status = response.status().as_u16();
        state.metrics.request(op, status, seen.throttled, elapsed);
        tracing::debug!(
            operation = state.metrics.op_name(op),
            stream = seen.stream.as_deref().unwrap_or("-"),
            status,
            error = seen.error.unwrap_or("-"),
            latency_us = elapsed.as_micros() as u64,
            "request"
        );
    }
    let mut response = response.map(|body| Counted::new(body, in_flight));
    // Answered before the body was read: read a small one (with the body
    // limits), so that the connection stays usable; else say it closes, so
    // that the client does not send its next request into a dead connection.
    let reusable = match unread {
        Leftover::Nothing => true,
        Leftover::Unread(body) if body.is_end_stream() => true,
        // HTTP/2 resets the stream; the connection stays usable.
        Leftover::Unread(_) if !http1 => true,
        Leftover::Unread(mut body) => {
            let small = body
                .size_hint()
                .upper()
                .is_some_and(|n| n <= DRAIN_MAX_BYTES);
            small && drain(&mut body, &state, DRAIN_MAX_BYTES).await
        }
        Leftover::Broken => false,
    };
    // A caller refused for its credentials keeps no connection (and no slot
    // under the cap) open.
    if (!reusable || seen.refused) && http1 {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(response)
}

/// Bodies of requests answered before reading them are read (and dropped)
/// up to this size, to keep their connection.
const DRAIN_MAX_BYTES: u64 = 64 << 10;

/// Reads and drops at most `max` more bytes of a body, within the body
/// limits (a stall limit and a minimum rate) but outside the in-flight budget:
/// nothing is kept. True if the body ended in time. This lets a client that
/// is still sending read the answer it was given early.
async fn drain(body: &mut Incoming, state: &State, max: u64) -> bool {
    let clock = BodyClock::start(state);
    let mut seen = 0u64;
    loop {
        match tokio::time::timeout_at(clock.deadline(seen), body.frame()).await {
            Ok(None) => return true,
            Ok(Some(Ok(frame))) => {
                seen += frame.data_ref().map_or(0, |d| d.len() as u64);
                if seen > max {
                    return false;
                }
            }
            Ok(Some(Err(_))) | Err(_) => return false,
        }
    }
}

/// When the next piece of a body must have arrived: the body timeout from
/// the start, plus the time the bytes received so far may take at the
/// minimum rate.
struct BodyClock {
    start: tokio::time::Instant,
    grace: Duration,
    bytes_per_second: f64,
}

impl BodyClock {
    fn start(state: &State) -> Self {
        Self {
            start: tokio::time::Instant::now(),
            grace: Duration::from_millis(state.config.body_timeout_ms.max(1)),
            bytes_per_second: state.config.body_min_bytes_per_second.max(1) as f64,
        }
    }

    fn deadline(&self, received: u64) -> tokio::time::Instant {
        self.start + self.grace + Duration::from_secs_f64(received as f64 / self.bytes_per_second)
    }
}

/// What is left of a request's body once it is answered.
enum Leftover {
    /// It was read whole.
    Nothing,
    /// It was not read.
    Unread(Incoming),
    /// Reading it failed part-way (too large, stalled, broken): the
    /// connection cannot carry another request.
    Broken,
}

/// What the request log and `/metrics` learn of an API request on its way.
#[derive(Debug, Default)]
struct Seen {
    /// Set for API requests (not `/health`, `/metrics` or test controls).
    operation: Option<crate::metrics::OpIndex>,
    /// Only when the request log is on (debug).
    stream: Option<String>,
    error: Option<&'static str>,
    throttled: bool,
    /// The caller's credentials or signature were refused.
    refused: bool,
}

/// The response, and what is left of the request body.
async fn respond(
    req: Request<Incoming>,
    state: Arc<State>,
    seen: &mut Seen,
) -> (Response<ResponseBody>, Leftover) {
    let request_id = format!("{:032x}", fastrand::u128(..));
    // Answer in the encoding the client used; AWS answers CBOR to a body
    // it cannot type (see `BodyType`).
    let cbor = !matches!(BodyType::of(&req), BodyType::Json | BodyType::LegacyJson);
    let (routed, unread) = route(req, state.clone(), cbor, seen).await;
    if let Err(e) = &routed {
        seen.error = Some(e.code.name());
        seen.refused = e.code.is_auth();
        seen.throttled = matches!(
            e.code,
            ErrorCode::ProvisionedThroughputExceededException | ErrorCode::LimitExceededException
        );
        if e.status() >= 500 {
            sluice_streams::health::warn_limited(
                "internal",
                format_args!("answered {}: {}", e.code.name(), e.message),
            );
        }
    }
    let (status, body) = match routed {
        Ok(Reply::Body(body)) => (StatusCode::OK, body),
        Ok(Reply::Text(status, text, content_type)) => {
            let mut response = Response::new(Either::Left(Full::new(Bytes::from(text))));
            *response.status_mut() = status;
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            response
                .headers_mut()
                .insert("x-amzn-RequestId", header(&request_id));
            return (response, unread);
        }
        Ok(Reply::Raw(status, text)) => {
            let mut response = Response::new(Either::Left(Full::new(Bytes::from(text))));
            *response.status_mut() = status;
            response
                .headers_mut()
                .insert("x-amzn-RequestId", header(&request_id));
            return (response, unread);
        }
        Ok(Reply::Control(status, body)) => {
            let mut response = Response::new(Either::Left(Full::new(body)));
            *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            return (response, unread);
        }
        Ok(Reply::Events(events)) => {
            let mut response = Response::new(Either::Right(events));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(sluice_aws::eventstream::CONTENT_TYPE),
            );
            response
                .headers_mut()
                .insert("x-amzn-RequestId", header(&request_id));
            return (response, unread);
        }
        Err(e) => (
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
            Bytes::from(if cbor {
                cbor::encode_cbor_error(&e)
            } else {
                e.to_json()
            }),
        ),
    };
    let content_type = if cbor {
        cbor::CBOR_CONTENT_TYPE
    } else {
        JSON_CONTENT_TYPE
    };
    state
        .metrics
        .bytes_out
        .fetch_add(body.len() as u64, Ordering::Relaxed);
    let mut response = Response::new(Either::Left(Full::new(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
        .headers_mut()
        .insert("x-amzn-RequestId", header(&request_id));
    (response, unread)
}

/// What a request's `Content-Type` (the part before any `;`) says its
/// body is. AWS serves AWS JSON 1.1 and CBOR; it answers the older
/// `application/json` in its own envelope, and anything else with a
/// refusal (kinesalite's connection tests, recorded against AWS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyType {
    Json,
    Cbor,
    LegacyJson,
    Other,
}

impl BodyType {
    fn of(req: &Request<Incoming>) -> Self {
        Self::of_headers(req.headers())
    }

    fn of_parts(parts: &hyper::http::request::Parts) -> Self {
        Self::of_headers(&parts.headers)
    }

    fn of_headers(headers: &hyper::HeaderMap) -> Self {
        let essence = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::trim)
            .unwrap_or_default();
        match essence {
            "application/x-amz-json-1.1" => Self::Json,
            "application/x-amz-cbor-1.1" => Self::Cbor,
            "application/json" => Self::LegacyJson,
            _ => Self::Other,
        }
    }
}

/// AWS's answers to a body typed neither AWS JSON 1.1 nor CBOR, before any
/// authentication: an empty body gets a bare CBOR error (UnknownOperation
/// if the target names no operation, else Serialization); `application/json`
/// gets a 200 in the old envelope, saying the body did not parse or that
/// no operation takes it; any other body a 404 `<UnknownOperationException/>`,
/// or a 403 when the target does not even name a service and an
/// operation.
async fn untyped_body(
    body_type: BodyType,
    parts: &hyper::http::request::Parts,
    target: Option<&str>,
    body: Incoming,
    state: &State,
) -> Routed {
    let empty = body.is_end_stream() || body.size_hint().exact() == Some(0);
    if empty {
        let model = sluice_aws::service::by_target(target).model();
        let e = match sluice_aws::target::parse(model, target) {
            Ok(_) => AwsError::new(ErrorCode::SerializationException, ""),
            Err(e) => e,
        };
        return (Err(e), Leftover::Unread(body));
    }
    if body_type == BodyType::LegacyJson {
        // With credentials, no unauthenticated body is read, here either.
        if !state.config.credentials.is_empty() {
            let service = sluice_aws::service::by_target(target);
            if let Err(e) = authenticate_head(parts, state, service) {
                return (Err(e), Leftover::Unread(body));
            }
        }
        let limit = state.config.request_body_max_bytes as u64;
        let (bytes, budget) = match read_body(body, state, limit).await {
            Ok(read) => read,
            Err(e) => return (Err(e), Leftover::Broken),
        };
        // Parsing up to the body limit is CPU work: off the async workers.
        let parses = tokio::task::spawn_blocking(move || {
            let _budget = budget;
            sluice_aws::validate::decode_json_body(&bytes).is_ok()
        })
        .await
        .unwrap_or(false);
        let output = if parses {
            r#"{"Output":{"__type":"com.amazon.coral.service#UnknownOperationException","message":null},"Version":"1.0"}"#
        } else {
            r#"{"Output":{"__type":"com.amazon.coral.service#SerializationException","Message":null},"Version":"1.0"}"#
        };
        let reply = Reply::Text(StatusCode::OK, output.to_owned(), "application/json");
        return (Ok(reply), Leftover::Nothing);
    }
    let names_an_operation = target
        .and_then(|t| t.split_once('.'))
        .is_some_and(|(service, op)| !service.is_empty() && !op.is_empty());
    let reply = if names_an_operation {
        Reply::Raw(
            StatusCode::NOT_FOUND,
            "<UnknownOperationException/>\n".to_owned(),
        )
    } else {
        Reply::Raw(
            StatusCode::FORBIDDEN,
            "<AccessDeniedException>\n  <Message>Unable to determine service/operation name to be authorized</Message>\n</AccessDeniedException>\n".to_owned(),
        )
    };
    (Ok(reply), Leftover::Unread(body))
}

/// An AWS JSON or CBOR body as a value tree.
fn decode(body: &[u8], cbor: bool) -> Result<serde_json::Value, AwsError> {
    if cbor {
        cbor::decode_cbor_body(body)
    } else {
        sluice_aws::validate::decode_json_body(body)
    }
}

/// AWS's answer to a method other than POST: 403 in XML, with no content
/// type; a request with no signature at all is missing its token, any
/// other cannot be matched to an operation (kinesalite's connection tests,
/// recorded against AWS).
fn not_post(parts: &hyper::http::request::Parts) -> Reply {
    let signed = parts.headers.contains_key(hyper::header::AUTHORIZATION)
        || parts
            .uri
            .query()
            .is_some_and(|q| q.contains("X-Amz-Algorithm="));
    let (kind, message) = if signed {
        (
            "AccessDeniedException",
            "Unable to determine service/operation name to be authorized",
        )
    } else {
        (
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        )
    };
    Reply::Raw(
        StatusCode::FORBIDDEN,
        format!("<{kind}>\n  <Message>{message}</Message>\n</{kind}>\n"),
    )
}

fn header(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

enum Reply {
    /// An operation's output, encoded.
    Body(Bytes),
    /// `/health`: status, body and its content type.
    Text(StatusCode, String, &'static str),
    /// A status and a body with no content type (AWS's XML refusals).
    Raw(StatusCode, String),
    /// A test control's answer: status and JSON.
    Control(u16, Bytes),
    /// SubscribeToShard's event stream.
    Events(EventBody),
}

/// What the blocking part of a request produced.
enum Done {
    Body(Bytes),
    Subscription(sluice_streams::fanout::Subscription),
    /// A put, in the journal: its answer once durable.
    Put(ops::PendingPut),
}

/// Puts with bodies up to this size run on the connection's task (their
/// CPU work is short); larger ones go to the blocking pool. Either way the
/// wait for the fsync is async, so no thread waits on it.
const INLINE_PUT_MAX_BYTES: usize = 64 << 10;

type Routed = (Result<Reply, AwsError>, Leftover);

async fn route(req: Request<Incoming>, state: Arc<State>, cbor: bool, seen: &mut Seen) -> Routed {
    let (parts, body) = req.into_parts();
    if parts.method == Method::GET && parts.uri.path() == "/health" {
        return (Ok(health(&state)), Leftover::Unread(body));
    }
    if parts.method == Method::GET && parts.uri.path() == "/metrics" {
        let text = crate::metrics::render(&state.metrics, &state.gauges());
        return (
            Ok(Reply::Text(
                StatusCode::OK,
                text,
                crate::metrics::CONTENT_TYPE,
            )),
            Leftover::Unread(body),
        );
    }
    if state.config.test_controls && parts.uri.path().starts_with(crate::admin::PREFIX) {
        return control(parts, body, state).await;
    }
    seen.operation = Some(state.metrics.op(""));
    // AWS answers any other method in XML before looking at anything else,
    // and takes a POST to any path (kinesalite's connection tests).
    if parts.method != Method::POST {
        sluice_streams::health::warn_limited(
            "unknown-target",
            format_args!(
                "answered 403 to {} {}: the API is POST",
                parts.method,
                parts.uri.path()
            ),
        );
        seen.refused = true;
        return (Ok(not_post(&parts)), Leftover::Unread(body));
    }
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok());
    let body_type = BodyType::of_parts(&parts);
    if !matches!(body_type, BodyType::Json | BodyType::Cbor) {
        return untyped_body(body_type, &parts, target, body, &state).await;
    }
    // AWS reports an undecodable body before an unknown target or missing
    // authentication: those wait until the body is decoded (see `run`).
    // The target's prefix names the service (Kinesis, or Firehose on the
    // same port); its model types the body and its signing name the scope.
    let service = sluice_aws::service::by_target(target);
    let (operation, unknown_target) = match sluice_aws::target::parse(service.model(), target) {
        Ok(operation) => (operation.to_owned(), None),
        Err(e) => {
            sluice_streams::health::warn_limited(
                "unknown-target",
                format_args!(
                    "answered {} to X-Amz-Target {:?}: not an operation this server knows",
                    e.code.name(),
                    target.unwrap_or("(none)")
                ),
            );
            (String::new(), Some(e))
        }
    };
    if unknown_target.is_none() {
        seen.operation = Some(
            state
                .metrics
                .op(&crate::metrics::op_label(service, &operation)),
        );
    }
    // Who is calling, from the headers alone: with credentials configured, a
    // caller that cannot be right is refused before its body is read (a
    // deviation from AWS's order, which decodes the body first); without,
    // the refusal waits for the body like an unknown target.
    let (scope, pending, refused) = match authenticate_head(&parts, &state, service) {
        Ok((scope, pending)) => (scope, pending, None),
        Err(e) if state.config.credentials.is_empty() => {
            let scope = sluice_meta::Scope::new(
                state.config.account_id.clone(),
                state.config.region.clone(),
            );
            (scope, PendingAuth::None, Some(e))
        }
        Err(e) => {
            let e = unknown_target.unwrap_or(e);
            return (Err(e), Leftover::Unread(body));
        }
    };
    if let (Some(e), false) = (&unknown_target, state.config.credentials.is_empty()) {
        return (Err(e.clone()), Leftover::Unread(body));
    }
    let waiting = unknown_target.or(refused);
    let limit = state.config.request_body_max_bytes as u64;
    let (body, budget) = match read_body(body, &state, limit).await {
        Ok(read) => read,
        // A PutRecords too large to read says what one too large to store
        // says (the same limit, whatever the size).
        Err(e)
            if e.code == ErrorCode::RequestEntityTooLargeException && operation == "PutRecords" =>
        {
            return (Err(ops::records_size_exceeded()), Leftover::Broken)
        }
        Err(e) => return (Err(e), Leftover::Broken),
    };
    state
        .metrics
        .bytes_in
        .fetch_add(body.len() as u64, Ordering::Relaxed);
    if tracing::enabled!(tracing::Level::DEBUG) {
        // For the request log only: decoded again by the operation.
        let input = if cbor {
            cbor::decode_cbor_body(&body).ok()
        } else {
            sluice_aws::validate::decode_json_body(&body).ok()
        };
        seen.stream = input
            .as_ref()
            .and_then(sluice_aws::kinesis::stream_of)
            .map(str::to_owned);
    }
    // Signature checks, decoding, validation, the operation and encoding are
    // CPU or blocking work: kept off the async workers that drive
    // connections, except small puts (short CPU work, then an async wait
    // for their fsync round: no thread waits on it).
    let events_state = state.clone();
    let is_put = std::ptr::eq(service, &sluice_aws::KINESIS)
        && (operation == "PutRecords" || operation == "PutRecord");
    let inline = is_put && body.len() <= INLINE_PUT_MAX_BYTES && state.faults.is_empty();
    let run = move || -> Result<Done, AwsError> {
        // The body's memory stays counted until the operation is done with it.
        let _budget = budget;
        if let Some(e) = waiting {
            // An empty body with an operation named is undecodable; else
            // the body decodes, and the unknown target or the refusal is
            // the answer.
            if !body.is_empty() || e.code != ErrorCode::UnknownOperationException {
                decode(&body, cbor)?;
            }
            return Err(e);
        }
        authenticate_body(&parts, &body, pending)?;
        if std::ptr::eq(service, &sluice_aws::FIREHOSE) {
            let mut input = decode(&body, cbor)?;
            sluice_aws::validate::validate_input(service.model(), &operation, &mut input)?;
            let output = state.firehose.call(&scope, &operation, &input)?;
            return Ok(Done::Body(encode::shape(
                service.model(),
                &operation,
                &output,
                cbor,
            )));
        }
        if operation == "PutRecords" && state.faults.is_empty() {
            // Plainly valid requests skip the value tree (and, in CBOR, base64).
            let fast = if cbor {
                sluice_aws::fast_cbor::decode_put_records_cbor(&body)
            } else {
                sluice_aws::fast::decode_put_records(&body)
            };
            if let Some(request) = fast {
                return ops::begin_put_records_fast(&state, scope, &request).map(Done::Put);
            }
        }
        if operation == "PutRecord" && state.faults.is_empty() {
            let fast = if cbor {
                sluice_aws::fast_cbor::decode_put_record_cbor(&body)
            } else {
                sluice_aws::fast::decode_put_record(&body)
            };
            if let Some(request) = fast {
                return ops::begin_put_record_fast(&state, scope, &request).map(Done::Put);
            }
        }
        let mut input = decode(&body, cbor)?;
        sluice_aws::validate::validate_input(kinesis(), &operation, &mut input)?;
        if state.config.enforce_limits {
            let stream = sluice_aws::kinesis::stream_of(&input);
            if !state
                .throttles
                .admit_call(&scope, &operation, stream, state.now_ms())
            {
                let account = &scope.account;
                let message = match stream {
                    Some(stream) => {
                        format!("Rate exceeded for stream {stream} under account {account}.")
                    }
                    None => format!("Rate exceeded for account {account}."),
                };
                return Err(AwsError::new(ErrorCode::LimitExceededException, message));
            }
        }
        if !state.faults.is_empty() {
            let stream = sluice_aws::kinesis::stream_of(&input);
            let shard = sluice_aws::kinesis::shard_of(&input);
            if let Some((latency_ms, error)) = state.faults.take(&operation, stream, shard) {
                // Injected latency holds this blocking thread, as slow
                // storage would.
                std::thread::sleep(std::time::Duration::from_millis(latency_ms));
                if let Some(e) = error {
                    return Err(e);
                }
            }
        }
        let request = sluice_aws::kinesis::Request::decode(&operation, &input)?;
        Ok(match ops::dispatch(request, &state, scope)? {
            ops::Begun::Answer(answer) => Done::Body(encode::response(&answer, cbor)),
            ops::Begun::Records(records) => Done::Body(encode::records(&records, cbor)),
            ops::Begun::Put(put) => Done::Put(put),
            ops::Begun::Subscription(sub) => Done::Subscription(sub),
        })
    };
    // A panic is an InternalFailure either way, never a dropped connection.
    let done = if inline {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).map_err(|_| ())
    } else {
        tokio::task::spawn_blocking(run).await.map_err(|_| ())
    };
    let outcome = match done {
        Ok(Ok(Done::Body(body))) => Ok(Reply::Body(body)),
        Ok(Ok(Done::Subscription(sub))) => {
            Ok(Reply::Events(events::start(events_state, sub, cbor)))
        }
        Ok(Ok(Done::Put(put))) => put
            .finish(&events_state)
            .await
            .map(|answer| Reply::Body(encode::put(answer, cbor))),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(AwsError::new(
            ErrorCode::InternalFailure,
            "Internal service failure.",
        )),
    };
    (outcome, Leftover::Nothing)
}

/// `GET /health`: `ok`, or 503 with what is wrong (a full disk, poisoned or
/// quarantined shards).
fn health(state: &State) -> Reply {
    let problems = state.problems();
    if problems.is_empty() {
        return Reply::Text(StatusCode::OK, "ok".to_owned(), "text/plain");
    }
    let body = serde_json::json!({"status": "degraded", "problems": problems});
    Reply::Text(
        StatusCode::SERVICE_UNAVAILABLE,
        body.to_string(),
        "application/json",
    )
}

/// Reads a request body within the server's limits: at most `limit` bytes;
/// no pause longer than the body timeout, and on average at least the
/// minimum rate beyond it; and all bodies being read or worked on together
/// within the in-flight budget (a request waits for room, within the same
/// deadline). Returns the body and its share of the budget.
async fn read_body(
    mut body: Incoming,
    state: &State,
    limit: u64,
) -> Result<(Bytes, OwnedSemaphorePermit), AwsError> {
    let too_large = || {
        AwsError::new(
            ErrorCode::RequestEntityTooLargeException,
            format!("Request body exceeds {limit} bytes"),
        )
    };
    let clock = BodyClock::start(state);
    let deadline = |received: u64| clock.deadline(received);
    let timed_out = |received: u64| {
        AwsError::new(
            ErrorCode::SerializationException,
            format!(
                "The request body stalled: {received} bytes arrived in {} ms.",
                clock.start.elapsed().as_millis()
            ),
        )
    };
    let budget = state.body_budget.clone();
    let declared = body.size_hint().exact();
    // Too large: the body is read and dropped (up to twice the limit, within
    // the body limits), so that the client gets to read the 413.
    if let Some(declared) = declared.filter(|&n| n > limit) {
        if declared <= limit.saturating_mul(2) {
            drain(&mut body, state, declared).await;
        }
        return Err(too_large());
    }
    // A declared length is reserved whole, so that no two bodies hold half
    // of the budget each while waiting for the rest.
    let reserve = |n: u64| {
        let budget = budget.clone();
        async move {
            let n = u32::try_from(n.max(1)).unwrap_or(u32::MAX);
            budget.acquire_many_owned(n).await.expect("never closed")
        }
    };
    // No room in time: the server is busy, which a client may retry.
    let busy = || {
        AwsError::new(
            ErrorCode::InternalFailure,
            "The server is busy receiving other requests. Retry later.",
        )
    };
    let mut permit =
        match tokio::time::timeout_at(deadline(0), reserve(declared.unwrap_or(0))).await {
            Ok(permit) => permit,
            Err(_) => return Err(busy()),
        };
    let mut held = u64::from(permit.num_permits() as u32);
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(0) as usize);
    loop {
        let received = buf.len() as u64;
        let frame = match tokio::time::timeout_at(deadline(received), body.frame()).await {
            Err(_) => return Err(timed_out(received)),
            Ok(None) => break,
            // The client went away or sent a broken body: nothing was done.
            Ok(Some(Err(e))) => {
                return Err(AwsError::new(
                    ErrorCode::SerializationException,
                    e.to_string(),
                ))
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        let total = received + data.len() as u64;
        if total > limit {
            // Nothing read is kept while the rest is dropped.
            drop((permit, buf, data));
            drain(&mut body, state, limit).await;
            return Err(too_large());
        }
        if total > held {
            let more = tokio::time::timeout_at(deadline(received), reserve(total - held)).await;
            match more {
                Ok(more) => {
                    held += u64::from(more.num_permits() as u32);
                    permit.merge(more);
                }
                Err(_) => return Err(busy()),
            }
        }
        buf.extend_from_slice(&data);
    }
    Ok((buf.freeze(), permit))
}

/// A test control (`--test-controls`): plain JSON in and out, on the
/// blocking pool. Only from the server's own origin (a web page elsewhere
/// must not reset a developer's streams): the Host must be an address or
/// `localhost`, an Origin must be that host, and a POST must say JSON (which
/// a cross-site form or a no-preflight fetch cannot).
async fn control(parts: hyper::http::request::Parts, body: Incoming, state: Arc<State>) -> Routed {
    if let Err(message) = crate::admin::check_origin(&parts) {
        return (
            Ok(control_reply(Err((403, message)))),
            Leftover::Unread(body),
        );
    }
    let method = parts.method.as_str().to_owned();
    let path = parts.uri.path().to_owned();
    let body = match read_body(body, &state, 1 << 20).await {
        Ok((body, _)) => body,
        Err(e) => return (Ok(control_reply(Err((400, e.message)))), Leftover::Broken),
    };
    let run = move || crate::admin::handle(&state, &method, &path, &body);
    let reply = control_reply(
        tokio::task::spawn_blocking(run)
            .await
            .unwrap_or_else(|_| Err((500, "the control failed".to_owned()))),
    );
    (Ok(reply), Leftover::Nothing)
}

fn control_reply(answer: Result<serde_json::Value, (u16, String)>) -> Reply {
    let (status, value) = match answer {
        Ok(v) => (200, v),
        Err((status, message)) => (status, serde_json::json!({"message": message})),
    };
    Reply::Control(
        status,
        Bytes::from(serde_json::to_vec(&value).expect("JSON values serialize")),
    )
}
