//! HTTP: one connection, routing, body limit, target, decoding, validation,
//! and turning results and errors into AWS-shaped responses.

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::Watcher;
use sluice_wire::{cbor, kinesis, AwsError, ErrorCode};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::fanout::{self, EventBody};
use crate::ops;
use crate::sigv4;
use crate::state::State;

const JSON_CONTENT_TYPE: &str = "application/x-amz-json-1.1";
const EVENT_STREAM_CONTENT_TYPE: &str = "application/vnd.amazon.eventstream";

/// A whole answer, or SubscribeToShard's event stream.
type ResponseBody = Either<Full<Bytes>, EventBody>;

/// Serves one connection on its own task: TLS first if configured, then
/// HTTP/1.1 or HTTP/2 (h2c by preface, or h2 by ALPN), watched by `watcher` so
/// that shutdown can drain it.
pub fn spawn_connection(
    stream: TcpStream,
    state: Arc<State>,
    tls: Option<TlsAcceptor>,
    watcher: Watcher,
) {
    tokio::spawn(async move {
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

const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

async fn serve<IO>(io: IO, state: Arc<State>, watcher: Watcher)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    static BUILDER: OnceLock<auto::Builder<TokioExecutor>> = OnceLock::new();
    let service = service_fn(move |req| handle(req, state.clone()));
    let connection = BUILDER
        .get_or_init(|| auto::Builder::new(TokioExecutor::new()))
        .serve_connection(TokioIo::new(io), service);
    let _ = watcher.watch(connection).await;
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
) -> Result<Response<ResponseBody>, Infallible> {
    let request_id = format!("{:032x}", fastrand::u128(..));
    // Answer in the encoding the client used.
    let cbor = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("cbor"));
    let (status, body) = match route(req, state, cbor).await {
        Ok(Reply::Body(body)) => (StatusCode::OK, body),
        Ok(Reply::Text(text)) => {
            let mut response =
                Response::new(Either::Left(Full::new(Bytes::from_static(text.as_bytes()))));
            response
                .headers_mut()
                .insert("x-amzn-RequestId", header(&request_id));
            return Ok(response);
        }
        Ok(Reply::Control(status, body)) => {
            let mut response = Response::new(Either::Left(Full::new(body)));
            *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            return Ok(response);
        }
        Ok(Reply::Events(events)) => {
            let mut response = Response::new(Either::Right(events));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(EVENT_STREAM_CONTENT_TYPE),
            );
            response
                .headers_mut()
                .insert("x-amzn-RequestId", header(&request_id));
            return Ok(response);
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
    let mut response = Response::new(Either::Left(Full::new(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
        .headers_mut()
        .insert("x-amzn-RequestId", header(&request_id));
    Ok(response)
}

fn header(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

enum Reply {
    /// An operation's output, encoded.
    Body(Bytes),
    Text(&'static str),
    /// A test control's answer: status and JSON.
    Control(u16, Bytes),
    /// SubscribeToShard's event stream.
    Events(EventBody),
}

/// What the blocking part of a request produced.
enum Done {
    Body(Bytes),
    Subscription(fanout::Subscription),
}

async fn route(req: Request<Incoming>, state: Arc<State>, cbor: bool) -> Result<Reply, AwsError> {
    if req.method() == Method::GET && req.uri().path() == "/health" {
        return Ok(Reply::Text("ok"));
    }
    if state.config.test_controls && req.uri().path().starts_with(crate::admin::PREFIX) {
        return Ok(control(req, state).await);
    }
    if req.method() != Method::POST || req.uri().path() != "/" {
        return Err(AwsError::new(ErrorCode::UnknownOperationException, ""));
    }
    let (parts, body) = req.into_parts();
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok());
    let operation = sluice_wire::target::parse(kinesis(), target)?;
    let limit = state.config.request_body_max_bytes;
    let body = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(AwsError::new(
                ErrorCode::RequestEntityTooLargeException,
                format!("Request body exceeds {limit} bytes"),
            ))
        }
        // The client went away or sent a broken body: nothing was done.
        Err(e) => {
            return Err(AwsError::new(
                ErrorCode::SerializationException,
                e.to_string(),
            ))
        }
    };
    // Signature checks, decoding, validation, the operation (which may wait on
    // fsyncs) and encoding are CPU or blocking work: keep them off the async
    // workers that drive connections.
    let operation = operation.to_owned();
    let events_state = state.clone();
    let run = move || -> Result<Done, AwsError> {
        let account = authenticate(&parts, &body, &state)?;
        if !cbor && operation == "PutRecords" && state.faults.is_empty() {
            if let Some(request) = sluice_wire::fast::decode_put_records(&body) {
                return ops::put_records_fast(&state, account, &request)
                    .map(|out| Done::Body(Bytes::from(out)));
            }
        }
        let input = if cbor {
            cbor::decode_cbor_body(&body)?
        } else {
            sluice_wire::validate::decode_json_body(&body)?
        };
        sluice_wire::validate::validate_input(kinesis(), &operation, &input)?;
        if state.config.enforce_limits {
            let stream = crate::admin::stream_of(&input);
            if !state
                .throttles
                .admit_call(&account, &operation, stream, state.now_ms())
            {
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
            let stream = crate::admin::stream_of(&input);
            let shard = crate::admin::shard_of(&input);
            if let Some((latency_ms, error)) = state.faults.take(&operation, stream, shard) {
                // Injected latency holds this blocking thread, as slow
                // storage would.
                std::thread::sleep(std::time::Duration::from_millis(latency_ms));
                if let Some(e) = error {
                    return Err(e);
                }
            }
        }
        if operation == "SubscribeToShard" {
            return ops::subscribe(&input, &state, account, cbor).map(Done::Subscription);
        }
        Ok(Done::Body(
            match ops::dispatch(&operation, &input, &state, account, cbor)? {
                ops::Output::Json(bytes) => Bytes::from(bytes),
                ops::Output::Value(value) if cbor => {
                    Bytes::from(cbor::encode_cbor_output(kinesis(), &operation, &value))
                }
                ops::Output::Value(value) => {
                    Bytes::from(serde_json::to_vec(&value).expect("JSON values serialize"))
                }
            },
        ))
    };
    match tokio::task::spawn_blocking(run).await {
        Ok(Ok(Done::Body(body))) => Ok(Reply::Body(body)),
        Ok(Ok(Done::Subscription(sub))) => Ok(Reply::Events(fanout::start(events_state, sub))),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(AwsError::new(
            ErrorCode::InternalFailure,
            "Internal service failure.",
        )),
    }
}

/// A test control (`--test-controls`): plain JSON in and out, on the
/// blocking pool.
async fn control(req: Request<Incoming>, state: Arc<State>) -> Reply {
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let body = match Limited::new(req.into_body(), 1 << 20).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return control_reply(Err((400, e.to_string()))),
    };
    let run = move || crate::admin::handle(&state, &method, &path, &body);
    control_reply(
        tokio::task::spawn_blocking(run)
            .await
            .unwrap_or_else(|_| Err((500, "the control failed".to_owned()))),
    )
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

/// Every request must be SigV4-signed; with credentials configured, correctly.
/// Returns the account the caller acts as.
fn authenticate(
    parts: &hyper::http::request::Parts,
    body: &[u8],
    state: &State,
) -> Result<String, AwsError> {
    let mut headers: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push(',');
                v.push_str(&value);
            })
            .or_insert(value);
    }
    // HTTP/2 carries the host in :authority.
    if let Some(authority) = parts.uri.authority() {
        headers
            .entry("host".to_owned())
            .or_insert_with(|| authority.to_string());
    }
    let request = sigv4::RequestParts {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query(),
        headers: &headers,
        body,
    };
    let signature = sigv4::parse(&request)?;
    let account = state.config.account_for(&signature.access_key);
    if state.config.credentials.is_empty() {
        return Ok(account);
    }
    let credential = state
        .config
        .credentials
        .get(&signature.access_key)
        .ok_or_else(|| {
            AwsError::new(
                ErrorCode::UnrecognizedClientException,
                "The security token included in the request is invalid.",
            )
        })?;
    sigv4::check_scope(&request, &signature, state.now_ms())?;
    // A signature for another service or region is not one for this server.
    if signature.service != "kinesis" {
        return Err(AwsError::new(
            ErrorCode::InvalidSignatureException,
            "Credential should be scoped to correct service: 'kinesis'.",
        ));
    }
    if signature.region != state.config.region {
        return Err(AwsError::new(
            ErrorCode::InvalidSignatureException,
            format!(
                "Credential should be scoped to a valid region, not '{}'.",
                signature.region
            ),
        ));
    }
    if !sigv4::verify(&request, &signature, &credential.secret) {
        return Err(AwsError::new(
            ErrorCode::InvalidSignatureException,
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
        ));
    }
    Ok(account)
}
