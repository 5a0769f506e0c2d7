//! A Firehose flow's sender: records buffered up to the flow's records,
//! bytes and age, sent with PutRecordBatch, failed entries sent again with
//! backoff (throttling lasts as long as it lasts), refusals reported.

use std::sync::Arc;
use std::time::Duration;

use sluice_aws::firehose as f;
use sluice_aws::types::Blob;
use sluice_client::conn::FIREHOSE;
use sluice_client::{Api, Target};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::config::Flow;

pub type Done = Box<dyn FnOnce(Result<(), String>) + Send>;

enum Msg {
    Record(Vec<u8>, Done),
    Flush(oneshot::Sender<()>),
}

pub struct Batcher {
    tx: mpsc::Sender<Msg>,
}

impl Batcher {
    pub async fn start(target: Target, name: String, flow: &Flow) -> anyhow::Result<Self> {
        let mut api = Api::connect_to(Arc::new(target), FIREHOSE)
            .await
            .map_err(|e| anyhow::Error::new(e).context(format!("deliveryStream {name}")))?;
        // The delivery stream must be there.
        let _: f::DescribeDeliveryStreamOutput = api
            .call(
                "DescribeDeliveryStream",
                &f::DescribeDeliveryStreamInput {
                    delivery_stream_name: name.clone(),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| anyhow::Error::new(e).context(format!("deliveryStream {name}")))?;
        let (tx, rx) = mpsc::channel(1024);
        let limits = (
            flow.max_buffer_records,
            flow.max_buffer_bytes,
            flow.max_buffer_age,
        );
        tokio::spawn(run(api, name, limits, rx));
        Ok(Self { tx })
    }

    pub async fn send(&self, data: Vec<u8>, done: Done) {
        if let Err(mpsc::error::SendError(Msg::Record(_, done))) =
            self.tx.send(Msg::Record(data, done)).await
        {
            done(Err("the sender stopped".into()));
        }
    }

    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

async fn run(
    mut api: Api,
    name: String,
    (max_records, max_bytes, max_age): (usize, usize, Duration),
    mut rx: mpsc::Receiver<Msg>,
) {
    let mut buffer: Vec<(Vec<u8>, Done)> = Vec::new();
    let mut bytes = 0usize;
    let mut oldest: Option<Instant> = None;
    loop {
        let deadline = oldest.map(|t| t + max_age);
        let msg = tokio::select! {
            m = rx.recv() => m,
            _ = async { tokio::time::sleep_until(deadline.expect("a deadline")).await }, if deadline.is_some() => {
                send(&mut api, &name, std::mem::take(&mut buffer)).await;
                bytes = 0;
                oldest = None;
                continue;
            }
        };
        match msg {
            Some(Msg::Record(data, done)) => {
                if !buffer.is_empty()
                    && (buffer.len() == max_records || bytes + data.len() > max_bytes)
                {
                    send(&mut api, &name, std::mem::take(&mut buffer)).await;
                    bytes = 0;
                    oldest = None;
                }
                bytes += data.len();
                oldest.get_or_insert_with(Instant::now);
                buffer.push((data, done));
            }
            Some(Msg::Flush(tx)) => {
                send(&mut api, &name, std::mem::take(&mut buffer)).await;
                bytes = 0;
                oldest = None;
                let _ = tx.send(());
            }
            None => {
                send(&mut api, &name, std::mem::take(&mut buffer)).await;
                return;
            }
        }
    }
}

/// Sends until every record is in or refused.
async fn send(api: &mut Api, name: &str, mut batch: Vec<(Vec<u8>, Done)>) {
    let mut attempt = 0u32;
    while !batch.is_empty() {
        let input = f::PutRecordBatchInput {
            delivery_stream_name: name.to_owned(),
            records: batch
                .iter()
                .map(|(d, _)| f::Record {
                    data: Blob(d.clone()),
                })
                .collect(),
        };
        let retry: Vec<(Vec<u8>, Done)> = match api
            .call::<f::PutRecordBatchOutput>("PutRecordBatch", &input)
            .await
        {
            Ok(out) if out.request_responses.len() == batch.len() => {
                let mut retry = Vec::new();
                for ((data, done), r) in batch.into_iter().zip(out.request_responses) {
                    match r.error_code {
                        None => done(Ok(())),
                        Some(code)
                            if code == "ServiceUnavailableException"
                                || code.contains("Throttl")
                                || code.contains("InternalFailure") =>
                        {
                            retry.push((data, done))
                        }
                        Some(code) => done(Err(format!(
                            "{code}: {}",
                            r.error_message.unwrap_or_default()
                        ))),
                    }
                }
                retry
            }
            Ok(_) => batch,
            Err(e) if e.retryable() => batch,
            Err(e) => {
                for (_, done) in batch {
                    done(Err(e.to_string()));
                }
                return;
            }
        };
        batch = retry;
        if !batch.is_empty() {
            attempt += 1;
            let wait = Duration::from_millis(100)
                .saturating_mul(1 << attempt.min(7))
                .min(Duration::from_secs(10));
            tokio::time::sleep(wait.mul_f64(0.5 + fastrand::f64() / 2.0)).await;
        }
    }
}
