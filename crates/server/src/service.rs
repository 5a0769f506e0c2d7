//! HTTP: one connection, routing, body limit, target, decoding, validation,
//! and turning results and errors into AWS-shaped responses.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use sluice_wire::{kinesis, AwsError, ErrorCode};
use tokio::net::TcpStream;

use crate::ops;
use crate::state::State;

const JSON_CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// Serves one connection, HTTP/1.1 or HTTP/2 (detected from the preface).
pub async fn serve_connection(stream: TcpStream, state: Arc<State>) {
    let service = service_fn(move |req| handle(req, state.clone()));
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let _ = builder
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let request_id = format!("{:032x}", fastrand::u128(..));
    let result = route(req, state).await;
    let (status, body) = match result {
        Ok(Reply::Json(value)) => (
            StatusCode::OK,
            Bytes::from(serde_json::to_vec(&value).expect("JSON values serialize")),
        ),
        Ok(Reply::Text(text)) => {
            let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
            response
                .headers_mut()
                .insert("x-amzn-RequestId", header(&request_id));
            return Ok(response);
        }
        Err(e) => (
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
            Bytes::from(e.to_json()),
        ),
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(JSON_CONTENT_TYPE));
    response
        .headers_mut()
        .insert("x-amzn-RequestId", header(&request_id));
    Ok(response)
}

fn header(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

enum Reply {
    Json(serde_json::Value),
    Text(&'static str),
}

async fn route(req: Request<Incoming>, state: Arc<State>) -> Result<Reply, AwsError> {
    if req.method() == Method::GET && req.uri().path() == "/health" {
        return Ok(Reply::Text("ok"));
    }
    if req.method() != Method::POST || req.uri().path() != "/" {
        return Err(AwsError::new(ErrorCode::UnknownOperationException, ""));
    }
    let target = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok());
    let operation = sluice_wire::target::parse(kinesis(), target)?;
    let signed = req.headers().contains_key("authorization")
        || req
            .uri()
            .query()
            .is_some_and(|q| q.contains("X-Amz-Algorithm="));
    if !signed {
        return Err(AwsError::new(
            ErrorCode::MissingAuthenticationTokenException,
            "Missing Authentication Token",
        ));
    }
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or(JSON_CONTENT_TYPE);
    if content_type.contains("cbor") {
        return Err(AwsError::new(
            ErrorCode::SerializationException,
            "CBOR request bodies are not supported yet; use AWS JSON 1.1",
        ));
    }
    let limit = state.config.request_body_max_bytes;
    let body = match Limited::new(req.into_body(), limit).collect().await {
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
    let input = sluice_wire::validate::decode_json_body(&body)?;
    sluice_wire::validate::validate_input(kinesis(), operation, &input)?;
    let operation = operation.to_owned();
    // Operations wait on fsyncs: run them on the blocking pool.
    match tokio::task::spawn_blocking(move || ops::dispatch(&operation, &input, &state)).await {
        Ok(result) => result.map(Reply::Json),
        Err(_) => Err(AwsError::new(
            ErrorCode::InternalFailure,
            "Internal service failure.",
        )),
    }
}
