//! HTTP endpoint delivery, as AWS's "HTTP endpoint delivery request and
//! response specifications" describe it: a POST of
//! `{"requestId", "timestamp" (ms), "records": [{"data": base64}]}` (at most
//! 10,000 records) with `X-Amz-Firehose-Protocol-Version: 1.0`,
//! `X-Amz-Firehose-Request-Id` (the same on every retry of the request),
//! `X-Amz-Firehose-Source-Arn`, `X-Amz-Firehose-Access-Key` (if
//! configured), `X-Amz-Firehose-Common-Attributes` (JSON),
//! `Content-Type: application/json`, and `Content-Encoding: gzip` when the
//! request configuration asks for GZIP. The endpoint must answer 200 with a
//! JSON body naming the same requestId; 413 is final; anything else (or no
//! answer within the timeout) is retried, 1 s after the first failure and
//! doubling, with 15% jitter, at most 2 minutes apart, for RetryDuration
//! on the server's clock. Then the records go to the S3 backup under
//! `http-endpoint-failed`.
//!
//! AWS takes only `https://` URLs (the model's pattern); Sluice also takes
//! `http://` to loopback addresses, so that a local receiver needs no
//! certificate.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};

/// Records in one request at most (AWS).
pub const RECORDS_MAX: usize = 10_000;
/// The longest wait between retries.
const BACKOFF_MAX_MS: u64 = 120_000;
/// An answer's body is read up to this many bytes.
const ANSWER_MAX_BYTES: usize = 1 << 20;

/// Where and how a delivery stream posts.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub url: String,
    pub access_key: Option<String>,
    pub gzip: bool,
    /// `{"commonAttributes": {...}}`, as the header carries it.
    pub common_attributes: String,
    pub retry_ms: u64,
    /// Every record also goes to the S3 backup (AllData), not only failed ones.
    pub backup_all: bool,
    pub source_arn: String,
    /// The access key comes from this file (a Secrets Manager secret's
    /// stand-in: `{"api_key": "..."}`), read for each request.
    pub secret: Option<std::path::PathBuf>,
}

/// Why a request was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// AWS's error code for the backup record.
    pub code: &'static str,
    pub message: String,
    /// Retrying cannot help (413).
    pub last: bool,
}

/// The body of a request: the records as AWS sends them.
pub(crate) fn body(
    request_id: &str,
    timestamp_ms: u64,
    records: &[Vec<u8>],
    gzip: bool,
) -> Vec<u8> {
    let mut json =
        Vec::with_capacity(records.iter().map(|r| r.len() * 4 / 3 + 16).sum::<usize>() + 96);
    json.extend_from_slice(b"{\"requestId\":");
    json.extend_from_slice(
        serde_json::to_string(request_id)
            .expect("a string")
            .as_bytes(),
    );
    json.extend_from_slice(format!(",\"timestamp\":{timestamp_ms},\"records\":[").as_bytes());
    for (i, r) in records.iter().enumerate() {
        if i > 0 {
            json.push(b',');
        }
        json.extend_from_slice(b"{\"data\":\"");
        json.extend_from_slice(
            base64::engine::general_purpose::STANDARD
                .encode(r)
                .as_bytes(),
        );
        json.extend_from_slice(b"\"}");
    }
    json.extend_from_slice(b"]}");
    if !gzip {
        return json;
    }
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(&json).expect("writing to memory");
    e.finish().expect("writing to memory")
}

/// The wait before retry number `attempt` (1 for the first retry): 1 s,
/// doubling, at most 2 minutes, give or take 15%.
pub(crate) fn backoff_ms(attempt: u32) -> u64 {
    let base = 1000u64
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(20))
        .min(BACKOFF_MAX_MS);
    let jitter = (base as f64 * 0.15 * (fastrand::f64() * 2.0 - 1.0)) as i64;
    (base as i64 + jitter).max(1) as u64
}

/// Whether Sluice posts to `url`: https anywhere, http to loopback.
pub(crate) fn allowed(url: &str) -> bool {
    let Ok(uri) = url.parse::<hyper::Uri>() else {
        return false;
    };
    match (uri.scheme_str(), uri.host()) {
        (Some("https"), Some(_)) => true,
        (Some("http"), Some(host)) => {
            host == "localhost"
                || host == "[::1]"
                || host
                    .parse::<std::net::Ipv4Addr>()
                    .is_ok_and(|a| a.is_loopback())
        }
        _ => false,
    }
}

/// Posts one request; `Ok` once the endpoint accepted it.
pub(crate) async fn post(
    endpoint: &Endpoint,
    request_id: &str,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<(), Refusal> {
    let refused = |code: &'static str, message: String| Refusal {
        code,
        message,
        last: false,
    };
    let key = match &endpoint.secret {
        None => endpoint.access_key.clone(),
        Some(path) => Some(api_key(path).map_err(|e| refused("HttpEndpoint.SecretError", e))?),
    };
    let answer = tokio::time::timeout(timeout, send(endpoint, key, request_id, body))
        .await
        .map_err(|_| {
            refused(
                "HttpEndpoint.ResponseTimeout",
                format!(
                    "The endpoint did not answer within {} ms.",
                    timeout.as_millis()
                ),
            )
        })?
        .map_err(|e| refused("HttpEndpoint.DestinationException", e))?;
    let (status, content) = answer;
    if status == 413 {
        return Err(Refusal {
            code: "HttpEndpoint.RequestEntityTooLarge",
            message: "The endpoint answered 413: the request is too large.".to_owned(),
            last: true,
        });
    }
    if status != 200 {
        return Err(refused(
            "HttpEndpoint.DestinationException",
            format!("The endpoint answered {status}."),
        ));
    }
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(rename = "requestId")]
        request_id: Option<String>,
    }
    let answer: Answer = serde_json::from_slice(&content).map_err(|_| {
        refused(
            "HttpEndpoint.InvalidResponseFromDestination",
            "The endpoint's answer is not the JSON Firehose expects.".to_owned(),
        )
    })?;
    if answer.request_id.as_deref() != Some(request_id) {
        return Err(refused(
            "HttpEndpoint.InvalidResponseFromDestination",
            format!(
                "The endpoint's answer names requestId {:?}, not {request_id:?}.",
                answer.request_id.unwrap_or_default()
            ),
        ));
    }
    Ok(())
}

/// The `api_key` of the secret in `path` (the form AWS's guide gives for
/// HTTP endpoint secrets).
fn api_key(path: &std::path::Path) -> Result<String, String> {
    let shown = path.display();
    let text =
        std::fs::read(path).map_err(|e| format!("reading the secret file {shown} failed: {e}"))?;
    let secret: serde_json::Value = serde_json::from_slice(&text)
        .map_err(|_| format!("the secret file {shown} is not JSON ({{\"api_key\": \"...\"}})"))?;
    secret
        .get("api_key")
        .and_then(|k| k.as_str())
        .map(str::to_owned)
        .ok_or_else(|| format!("the secret file {shown} has no \"api_key\" string"))
}

async fn send(
    endpoint: &Endpoint,
    key: Option<String>,
    request_id: &str,
    body: Vec<u8>,
) -> Result<(u16, Bytes), String> {
    let mut headers = vec![
        ("x-amz-firehose-protocol-version", "1.0".to_owned()),
        ("x-amz-firehose-request-id", request_id.to_owned()),
        ("x-amz-firehose-source-arn", endpoint.source_arn.clone()),
        (
            "x-amz-firehose-common-attributes",
            endpoint.common_attributes.clone(),
        ),
    ];
    if let Some(key) = key {
        headers.push(("x-amz-firehose-access-key", key));
    }
    if endpoint.gzip {
        headers.push(("content-encoding", "gzip".to_owned()));
    }
    post_json(&endpoint.url, &headers, body).await
}

/// One POST of a JSON body to `url` (https, or http), with `headers`: the
/// status and (up to 1 MiB of) the answer.
pub(crate) async fn post_json(
    url: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> Result<(u16, Bytes), String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("bad URL: {e}"))?;
    let tls = uri.scheme_str() == Some("https");
    let host = uri.host().ok_or("the URL has no host")?.to_owned();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let connect_host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let tcp = tokio::net::TcpStream::connect((connect_host.as_str(), port))
        .await
        .map_err(|e| format!("cannot connect to {url}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .unwrap_or(host.clone());
    let path = uri
        .path_and_query()
        .map_or("/".to_owned(), |p| p.as_str().to_owned());
    let mut request = hyper::Request::post(path)
        .header("host", authority)
        .header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let response = if tls {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(connect_host)
            .map_err(|e| format!("bad host name: {e}"))?;
        let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with the endpoint failed: {e}"))?;
        exchange(stream, request).await?
    } else {
        exchange(tcp, request).await?
    };
    Ok(response)
}

async fn exchange<IO>(io: IO, request: hyper::Request<Full<Bytes>>) -> Result<(u16, Bytes), String>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // Header names as AWS writes them (X-Amz-Firehose-Request-Id), for
    // receivers that do not fold case.
    let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
        .title_case_headers(true)
        .handshake(hyper_util::rt::TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP with the endpoint failed: {e}"))?;
    let connection = tokio::spawn(async move {
        let _ = connection.await;
    });
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("the endpoint did not answer: {e}"));
    let out = match response {
        Ok(response) => {
            let status = response.status().as_u16();
            let body = Limited::new(response.into_body(), ANSWER_MAX_BYTES)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Ok((status, body))
        }
        Err(e) => Err(e),
    };
    connection.abort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http() {
        assert!(allowed("https://example.com/path"));
        assert!(allowed("http://127.0.0.1:8080/x"));
        assert!(allowed("http://localhost:9/"));
        assert!(allowed("http://[::1]:9/"));
        assert!(!allowed("http://example.com/"));
        assert!(!allowed("http://10.0.0.1/"));
        assert!(!allowed("ftp://127.0.0.1/"));
    }

    #[test]
    fn backoff_doubles_from_a_second_to_two_minutes_with_jitter() {
        for (attempt, base) in [
            (1, 1000u64),
            (2, 2000),
            (3, 4000),
            (8, 120_000),
            (30, 120_000),
        ] {
            for _ in 0..50 {
                let b = backoff_ms(attempt);
                assert!(
                    b as f64 >= base as f64 * 0.85 - 1.0 && b as f64 <= base as f64 * 1.15 + 1.0,
                    "{attempt}: {b}"
                );
            }
        }
    }

    #[test]
    fn bodies_as_aws_sends_them() {
        let b = body(
            "r-1",
            1_700_000_000_123,
            &[b"hi".to_vec(), vec![0xff]],
            false,
        );
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"requestId": "r-1", "timestamp": 1_700_000_000_123u64,
                "records": [{"data": "aGk="}, {"data": "/w=="}]})
        );
        let gz = body("r-1", 1, &[b"hi".to_vec()], true);
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut out).unwrap();
        assert!(out.starts_with(b"{\"requestId\":\"r-1\""));
    }
}
