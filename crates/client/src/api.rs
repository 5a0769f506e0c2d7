//! Typed calls: a request shape in, an answer shape or an AWS error out.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::conn::{Client, Service, Target, KINESIS};

/// Why a call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The service answered with an error.
    #[error("{name}: {message}")]
    Service {
        status: u16,
        name: String,
        message: String,
    },
    /// No answer: the connection failed, or the answer was not readable.
    #[error("{0}")]
    Transport(String),
}

/// AWS error names a client retries (with backoff).
const RETRYABLE: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "LimitExceededException",
    "ThrottlingException",
    "KMSThrottlingException",
    "InternalFailure",
    "InternalFailureException",
    "ServiceUnavailableException",
    "ServiceUnavailable",
];

impl Error {
    /// The exception name of a service error.
    pub fn name(&self) -> Option<&str> {
        match self {
            Self::Service { name, .. } => Some(name),
            Self::Transport(_) => None,
        }
    }

    /// Whether trying again later may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Service { status, name, .. } => {
                *status >= 500 || RETRYABLE.contains(&name.as_str())
            }
            Self::Transport(_) => true,
        }
    }

    /// Whether an error code of a PutRecords entry is worth retrying.
    pub fn retryable_code(code: &str) -> bool {
        !matches!(
            code,
            "ValidationException"
                | "ResourceNotFoundException"
                | "AccessDeniedException"
                | "KMSDisabledException"
                | "KMSNotFoundException"
                | "KMSAccessDeniedException"
                | "KMSInvalidStateException"
                | "KMSOptInRequired"
        )
    }
}

/// A connection that calls Kinesis (or Firehose) operations with typed shapes.
#[derive(Debug)]
pub struct Api {
    conn: Client,
}

impl Api {
    pub async fn connect(target: Arc<Target>) -> Result<Self, Error> {
        Self::connect_to(target, KINESIS).await
    }

    pub async fn connect_to(target: Arc<Target>, service: Service) -> Result<Self, Error> {
        let conn = Client::connect(target)
            .await
            .map_err(|e| Error::Transport(format!("{e:#}")))?;
        Ok(Self {
            conn: conn.to(service),
        })
    }

    /// Calls `operation` with `input` and decodes the answer.
    pub async fn call<O: DeserializeOwned>(
        &mut self,
        operation: &str,
        input: &impl Serialize,
    ) -> Result<O, Error> {
        let body = serde_json::to_vec(input)
            .map_err(|e| Error::Transport(format!("encoding {operation}: {e}")))?;
        let reply = self
            .conn
            .call(operation, body)
            .await
            .map_err(|e| Error::Transport(format!("{operation}: {e:#}")))?;
        if reply.status == 200 {
            return serde_json::from_slice(&reply.body).map_err(|e| {
                Error::Transport(format!("{operation}: an answer that does not decode: {e}"))
            });
        }
        Err(service_error(&reply))
    }
}

impl Api {
    /// Every shard of the stream, all pages of ListShards.
    pub async fn list_shards(
        &mut self,
        stream: &StreamRef,
    ) -> Result<Vec<sluice_aws::kinesis::Shard>, Error> {
        use sluice_aws::kinesis as k;
        let mut shards = Vec::new();
        let mut next_token: Option<String> = None;
        loop {
            let input = k::ListShardsInput {
                stream_name: next_token.is_none().then(|| stream.name.clone()).flatten(),
                stream_arn: next_token.is_none().then(|| stream.arn.clone()).flatten(),
                next_token: next_token.take(),
                ..Default::default()
            };
            let page: k::ListShardsOutput = self.call("ListShards", &input).await?;
            shards.extend(page.shards.unwrap_or_default());
            match page.next_token {
                Some(t) => next_token = Some(t),
                None => return Ok(shards),
            }
        }
    }

    /// Calls an event-stream operation (SubscribeToShard): the answer's body
    /// as it arrives, or the error.
    pub async fn call_events(
        &mut self,
        operation: &str,
        input: &impl Serialize,
    ) -> Result<hyper::body::Incoming, Error> {
        let body = serde_json::to_vec(input)
            .map_err(|e| Error::Transport(format!("encoding {operation}: {e}")))?;
        match self.conn.call_streaming(operation, body).await {
            Ok(Ok(events)) => Ok(events),
            Ok(Err(reply)) => Err(service_error(&reply)),
            Err(e) => Err(Error::Transport(format!("{operation}: {e:#}"))),
        }
    }
}

/// An error answer as an [`Error`]: its exception name and message.
fn service_error(reply: &crate::conn::Reply) -> Error {
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(alias = "Message")]
        message: Option<String>,
    }
    let message = serde_json::from_slice::<Body>(&reply.body)
        .ok()
        .and_then(|b| b.message)
        .unwrap_or_else(|| {
            String::from_utf8_lossy(&reply.body[..reply.body.len().min(300)]).into_owned()
        });
    Error::Service {
        status: reply.status,
        name: reply.error_name().unwrap_or_default(),
        message,
    }
}

/// Where a stream is named: its ARN (`arn:...`) or its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRef {
    pub name: Option<String>,
    pub arn: Option<String>,
}

impl StreamRef {
    pub fn new(stream: &str) -> Self {
        if stream.starts_with("arn:") {
            Self {
                name: None,
                arn: Some(stream.to_owned()),
            }
        } else {
            Self {
                name: Some(stream.to_owned()),
                arn: None,
            }
        }
    }
}

/// What a producer needs to know of a stream: its largest record (data and
/// partition key; 1 MiB unless raised) and its retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    pub max_record_bytes: usize,
    pub retention: std::time::Duration,
}

impl Api {
    pub async fn stream_limits(&mut self, stream: &StreamRef) -> Result<StreamLimits, Error> {
        let out: sluice_aws::kinesis::DescribeStreamSummaryOutput = self
            .call(
                "DescribeStreamSummary",
                &sluice_aws::kinesis::DescribeStreamSummaryInput {
                    stream_name: stream.name.clone(),
                    stream_arn: stream.arn.clone(),
                    ..Default::default()
                },
            )
            .await?;
        let s = out.stream_description_summary;
        Ok(StreamLimits {
            max_record_bytes: s
                .max_record_size_in_kib
                .map_or(1 << 20, |k| k.max(1) as usize * 1024),
            retention: std::time::Duration::from_secs(
                s.retention_period_hours.max(1) as u64 * 3600,
            ),
        })
    }
}
