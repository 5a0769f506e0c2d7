//! CORS, so that the AWS SDK for JavaScript works from a web page, as it
//! does against AWS: a preflight (`OPTIONS` with `Origin` and
//! `Access-Control-Request-Method`) is answered at once, before any
//! credentials (browsers send none with it), and every answer to a request
//! that carries `Origin` lets any origin read it.
//!
//! The headers are Kinesis' own, as AWS answered a preflight to
//! `https://kinesis.us-east-1.amazonaws.com/` (recorded by the AWS SDK
//! team's cors-test, AllanZhengYP/cors-test, output.md): 200, no body,
//! `Access-Control-Allow-Origin: *`, the requested headers allowed, `POST`,
//! the exposed headers below and a max age of 172800 s.

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::header::{
    HeaderMap, HeaderValue, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, CONTENT_LENGTH, ORIGIN,
};
use hyper::{Method, Request, Response, StatusCode};

use crate::events::EventBody;

/// What Kinesis lets a page read of its answers.
const EXPOSED: &str =
    "x-amzn-RequestId,x-amzn-ErrorType,x-amz-request-id,x-amz-id-2,x-amzn-ErrorMessage,Date";
/// How long a browser may keep a preflight's answer, in seconds.
const MAX_AGE: &str = "172800";

/// The answer to a CORS preflight, if `req` is one.
pub(crate) fn preflight<B>(req: &Request<B>) -> Option<Response<Either<Full<Bytes>, EventBody>>> {
    let headers = req.headers();
    if req.method() != Method::OPTIONS
        || !headers.contains_key(ORIGIN)
        || !headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD)
    {
        return None;
    }
    let mut response = Response::new(Either::Left(Full::new(Bytes::new())));
    *response.status_mut() = StatusCode::OK;
    let out = response.headers_mut();
    out.insert(
        "x-amzn-RequestId",
        HeaderValue::from_str(&format!("{:032x}", fastrand::u128(..)))
            .expect("hex is a header value"),
    );
    out.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    // The headers asked for are the ones allowed (as AWS answers).
    if let Some(asked) = headers.get(ACCESS_CONTROL_REQUEST_HEADERS) {
        out.insert(ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
    }
    out.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST"),
    );
    out.insert(
        ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSED),
    );
    out.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static(MAX_AGE));
    out.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    Some(response)
}

/// Lets any origin read an answer (its request carried `Origin`).
pub(crate) fn allow(headers: &mut HeaderMap) {
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers.insert(
        ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSED),
    );
}
