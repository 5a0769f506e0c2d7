//! One HTTP/1.1 connection to a Kinesis endpoint, SigV4-signing each request
//! with `aws-sigv4` (what the AWS SDKs use). A worker owns its connection, so
//! concurrency is the number of workers and nothing is shared on the hot path.

use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{anyhow, bail, Context};
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use hyper_util::rt::TokioIo;

/// Largest answer read (a GetRecords answer is at most 10 MiB of data, base64).
const RESPONSE_MAX_BYTES: usize = 32 << 20;

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http://host:port` or `https://host[:port]`.
    pub endpoint: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
    /// Temporary credentials' token (`x-amz-security-token`).
    pub session_token: Option<String>,
}

impl Target {
    fn parts(&self) -> anyhow::Result<(bool, String, u16)> {
        let (tls, rest) = if let Some(r) = self.endpoint.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = self.endpoint.strip_prefix("http://") {
            (false, r)
        } else {
            bail!(
                "the endpoint must start with http:// or https://, not {:?}",
                self.endpoint
            );
        };
        let authority = rest.trim_end_matches('/');
        if authority.contains('/') {
            bail!("the endpoint must not have a path: {:?}", self.endpoint);
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (
                h.to_owned(),
                p.parse()
                    .with_context(|| format!("bad port in {authority:?}"))?,
            ),
            None => (authority.to_owned(), if tls { 443 } else { 80 }),
        };
        Ok((tls, host, port))
    }
}

/// The outcome of one call that got an HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Bytes,
}

impl Reply {
    /// The exception name of an error answer (`__type` without its namespace).
    pub fn error_name(&self) -> Option<String> {
        if self.status == 200 {
            return None;
        }
        #[derive(serde::Deserialize)]
        struct Error {
            #[serde(rename = "__type")]
            kind: Option<String>,
        }
        // AWS JSON, or AWS CBOR for a CBOR request.
        let kind = serde_json::from_slice::<Error>(&self.body)
            .ok()
            .or_else(|| ciborium::de::from_reader::<Error, _>(&self.body[..]).ok())
            .and_then(|e| e.kind);
        let name = kind
            .map(|t| t.rsplit('#').next().unwrap_or(&t).to_owned())
            .unwrap_or_else(|| format!("HTTP {}", self.status));
        Some(name)
    }
}

/// The content types of AWS JSON 1.1 and AWS CBOR 1.1 bodies.
pub const JSON: &str = "application/x-amz-json-1.1";
pub const CBOR: &str = "application/x-amz-cbor-1.1";

/// The service a client calls: its `X-Amz-Target` prefix and SigV4 name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service {
    pub target_prefix: &'static str,
    pub signing_name: &'static str,
}

pub const KINESIS: Service = Service {
    target_prefix: "Kinesis_20131202",
    signing_name: "kinesis",
};
pub const FIREHOSE: Service = Service {
    target_prefix: "Firehose_20150804",
    signing_name: "firehose",
};

#[derive(Debug)]
pub struct Client {
    service: Service,
    sender: SendRequest<Full<Bytes>>,
    target: Arc<Target>,
    authority: String,
    url: String,
    identity: aws_smithy_runtime_api::client::identity::Identity,
}

impl Client {
    pub async fn connect(target: Arc<Target>) -> anyhow::Result<Self> {
        let (sender, authority, url) = open(&target).await?;
        let identity = aws_credential_types::Credentials::new(
            &target.access_key,
            &target.secret_key,
            target.session_token.clone(),
            None,
            "sluice",
        )
        .into();
        Ok(Self {
            service: KINESIS,
            sender,
            target,
            authority,
            url,
            identity,
        })
    }

    /// This client, calling `service` instead.
    pub fn to(mut self, service: Service) -> Self {
        self.service = service;
        self
    }

    pub fn target(&self) -> Arc<Target> {
        self.target.clone()
    }

    /// Calls `operation` with a JSON body; errors only if no HTTP answer came.
    pub async fn call(&mut self, operation: &str, body: impl Into<Bytes>) -> anyhow::Result<Reply> {
        self.call_as(operation, body, JSON).await
    }

    /// [`Client::call`] with a body of this content type (AWS JSON or CBOR).
    pub async fn call_as(
        &mut self,
        operation: &str,
        body: impl Into<Bytes>,
        content_type: &str,
    ) -> anyhow::Result<Reply> {
        let response = self.send(operation, body.into(), content_type).await?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), RESPONSE_MAX_BYTES)
            .collect()
            .await
            .map_err(|e| anyhow!("reading the answer: {e}"))?
            .to_bytes();
        Ok(Reply { status, body })
    }

    /// Calls `operation` and hands back the answer as it arrives (an event
    /// stream); an error answer is read whole.
    pub async fn call_streaming(
        &mut self,
        operation: &str,
        body: impl Into<Bytes>,
    ) -> anyhow::Result<Result<hyper::body::Incoming, Reply>> {
        let response = self.send(operation, body.into(), JSON).await?;
        let status = response.status().as_u16();
        if status == 200 {
            return Ok(Ok(response.into_body()));
        }
        let body = Limited::new(response.into_body(), RESPONSE_MAX_BYTES)
            .collect()
            .await
            .map_err(|e| anyhow!("reading the answer: {e}"))?
            .to_bytes();
        Ok(Err(Reply { status, body }))
    }

    async fn send(
        &mut self,
        operation: &str,
        body: Bytes,
        content_type: &str,
    ) -> anyhow::Result<hyper::Response<hyper::body::Incoming>> {
        let amz_target = format!("{}.{operation}", self.service.target_prefix);
        let headers = [
            ("host", self.authority.as_str()),
            ("content-type", content_type),
            ("x-amz-target", amz_target.as_str()),
        ];
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&self.target.region)
            .name(self.service.signing_name)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()?
            .into();
        let signable = SignableRequest::new(
            "POST",
            &self.url,
            headers.iter().copied(),
            SignableBody::Bytes(&body),
        )?;
        let (instructions, _) = sign(signable, &params)?.into_parts();
        let mut request = Request::post("/");
        for (name, value) in headers {
            request = request.header(name, value);
        }
        for (name, value) in instructions.headers() {
            request = request.header(name, value);
        }
        let request = request.body(Full::new(body))?;
        // A server may close an idle connection (Node's default after 5 s):
        // nothing was sent yet, so open a new one.
        if self.sender.is_closed() || self.sender.ready().await.is_err() {
            self.sender = open(&self.target).await?.0;
            self.sender.ready().await?;
        }
        Ok(self.sender.send_request(request).await?)
    }
}

/// Connects (and handshakes TLS): the sender, the `host` to sign, the URL.
async fn open(target: &Target) -> anyhow::Result<(SendRequest<Full<Bytes>>, String, String)> {
    let (tls, host, port) = target.parts()?;
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .with_context(|| format!("cannot connect to {}", target.endpoint))?;
    tcp.set_nodelay(true)?;
    let sender = if tls {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(host.clone())?;
        let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await?;
        handshake(stream).await?
    } else {
        handshake(tcp).await?
    };
    let default_port = if tls { 443 } else { 80 };
    let authority = if port == default_port {
        host
    } else {
        format!("{host}:{port}")
    };
    let url = format!("{}://{authority}/", if tls { "https" } else { "http" });
    Ok((sender, authority, url))
}

async fn handshake<IO>(io: IO) -> anyhow::Result<SendRequest<Full<Bytes>>>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(endpoint: &str) -> Target {
        Target {
            endpoint: endpoint.into(),
            region: "us-east-1".into(),
            access_key: "a".into(),
            secret_key: "s".into(),
            session_token: None,
        }
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            target("http://127.0.0.1:4567").parts().unwrap(),
            (false, "127.0.0.1".into(), 4567)
        );
        assert_eq!(
            target("https://kinesis.us-east-1.amazonaws.com/")
                .parts()
                .unwrap(),
            (true, "kinesis.us-east-1.amazonaws.com".into(), 443)
        );
        assert!(target("kinesis.example").parts().is_err());
        assert!(target("http://h:4567/path").parts().is_err());
        assert!(target("http://h:port").parts().is_err());
    }
}
