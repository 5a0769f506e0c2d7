//! `sluice bench`: drives any Kinesis endpoint (Sluice, an emulator, AWS) with
//! producers and consumers and reports throughput, latency and errors.
//!
//! Producers send PutRecords or PutRecord; every record carries a stamp (a
//! magic and the send time in microseconds) so that consumers can measure
//! put -> seen latency. Each worker owns one connection.

pub use sluice_client::conn as client;
mod consume;
pub mod firehose;
mod report;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use sluice_aws::kinesis::views::{PutRecordsErrorCodes, PutRecordsFailedCount, RecordsPage};
use sluice_aws::kinesis::{self as k};
use sluice_aws::types::Blob;

use consume::*;
pub use report::{Latency, ReadBack, Report};

pub use client::{Client, Reply, Target};

/// What producers send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Producer {
    PutRecords,
    PutRecord,
}

/// How consumers read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Consumer {
    None,
    /// GetRecords in a loop on every shard, from LATEST at the start.
    Poll,
    /// Enhanced fan-out: a registered consumer and SubscribeToShard on every
    /// shard, from LATEST at the start (resubscribing after each 5-minute end).
    Subscribe,
}

/// One benchmark run.
#[derive(Debug, Clone, Serialize)]
pub struct Workload {
    pub stream: String,
    pub shards: u32,
    /// Create the stream (and wait for ACTIVE) if it does not exist.
    pub create: bool,
    /// Delete the stream afterwards.
    pub delete: bool,
    pub producer: Producer,
    pub record_size: usize,
    /// Records per PutRecords call (with a `rate`, at most a tenth of a
    /// second of a worker's share).
    pub batch: usize,
    /// Distinct partition keys.
    pub keys: usize,
    /// Producer connections.
    pub concurrency: usize,
    #[serde(serialize_with = "seconds")]
    pub duration: Duration,
    /// Stop after this many records (whichever of this and `duration` comes first).
    pub records: Option<u64>,
    /// Target records per second in total; none: as fast as possible.
    pub rate: Option<u64>,
    pub consumer: Consumer,
    /// After producing, read every shard back from TRIM_HORIZON to its end.
    pub read_back: bool,
    /// Pause between GetRecords calls that returned nothing.
    #[serde(serialize_with = "seconds")]
    pub poll_interval: Duration,
    #[serde(skip)]
    pub progress: bool,
    /// Producers speak AWS CBOR 1.1 (as the Java SDK, KCL and KPL do)
    /// instead of AWS JSON 1.1.
    pub cbor: bool,
}

pub(crate) fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl Default for Workload {
    fn default() -> Self {
        Self {
            stream: "sluice-bench".into(),
            shards: 4,
            create: true,
            delete: false,
            producer: Producer::PutRecords,
            record_size: 100,
            batch: 500,
            keys: 1000,
            concurrency: 4,
            duration: Duration::from_secs(10),
            records: None,
            rate: None,
            consumer: Consumer::None,
            read_back: false,
            poll_interval: Duration::from_millis(200),
            progress: false,
            cbor: false,
        }
    }
}

/// Each record starts with this, then the send time (µs since the epoch, LE).
const STAMP_MAGIC: &[u8; 4] = b"SLB1";
pub(crate) const STAMP_LEN: usize = 12;

pub(crate) fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or_default()
}

/// The send time in a record's data, if it carries a stamp.
pub(crate) fn stamp_of(data: &[u8]) -> Option<u64> {
    if data.len() < STAMP_LEN || &data[..4] != STAMP_MAGIC {
        return None;
    }
    Some(u64::from_le_bytes(data[4..12].try_into().ok()?))
}

pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant figures is valid")
}

/// Counters shared with the progress display.
#[derive(Debug, Default)]
struct Live {
    records_ok: AtomicU64,
    errors: AtomicU64,
    consumed: AtomicU64,
    /// Records handed to producers so far (for `Workload::records`).
    claimed: AtomicU64,
    producers_done: AtomicBool,
}

/// What one worker measured.
#[derive(Debug)]
pub(crate) struct Tally {
    pub(crate) requests: u64,
    pub(crate) records_ok: u64,
    pub(crate) records_failed: u64,
    pub(crate) payload_bytes: u64,
    pub(crate) latency: Histogram<u64>,
    pub(crate) errors: BTreeMap<String, u64>,
}

impl Tally {
    pub(crate) fn new() -> Self {
        Self {
            requests: 0,
            records_ok: 0,
            records_failed: 0,
            payload_bytes: 0,
            latency: histogram(),
            errors: BTreeMap::new(),
        }
    }

    pub(crate) fn error(&mut self, operation: &str, name: &str, n: u64) {
        *self
            .errors
            .entry(format!("{operation}/{name}"))
            .or_default() += n;
    }

    pub(crate) fn merge(&mut self, other: Tally) {
        self.requests += other.requests;
        self.records_ok += other.records_ok;
        self.records_failed += other.records_failed;
        self.payload_bytes += other.payload_bytes;
        let _ = self.latency.add(&other.latency);
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
    }
}

/// Runs `workload` against `target`.
pub async fn run(target: Target, mut workload: Workload) -> anyhow::Result<Report> {
    if let Some(rate) = workload.rate.filter(|r| *r > 0) {
        // Paced: a batch holds at most a tenth of a second of a worker's
        // share, so that the rate is smooth and the run ends on time.
        let share = (rate as usize / workload.concurrency.max(1) / 10).max(1);
        workload.batch = workload.batch.min(share);
    }
    if workload.record_size == 0 || workload.record_size > 1 << 20 {
        bail!("the record size must be 1 B to 1 MiB");
    }
    if workload.batch == 0 || workload.batch > 500 {
        bail!("a PutRecords batch holds 1 to 500 records");
    }
    if workload.concurrency == 0 || workload.keys == 0 {
        bail!("concurrency and keys must be at least 1");
    }
    let target = Arc::new(target);
    let mut control = Client::connect(target.clone()).await?;
    if workload.create {
        ensure_stream(&mut control, &workload.stream, workload.shards).await?;
    }
    let shards = list_shards(&mut control, &workload.stream).await?;
    let live = Arc::new(Live::default());

    // Consumers start at LATEST before any record is put.
    let mut consumers = Vec::new();
    let fan_out = if workload.consumer == Consumer::Subscribe {
        let arn = register_consumer(&mut control, &workload.stream).await?;
        for shard in &shards {
            let client = Client::connect(target.clone()).await?;
            let started = Arc::new(tokio::sync::Notify::new());
            let first_event = started.notified();
            let (live, arn, shard) = (live.clone(), arn.clone(), shard.clone());
            let ready = started.clone();
            consumers.push(tokio::spawn(async move {
                subscribe(client, arn, shard, live, ready).await
            }));
            // Producers start once every subscription is in place.
            first_event.await;
        }
        Some(arn)
    } else {
        None
    };
    if workload.consumer == Consumer::Poll {
        for shard in &shards {
            let mut client = Client::connect(target.clone()).await?;
            let iterator = shard_iterator(&mut client, &workload.stream, shard).await?;
            let (live, interval) = (live.clone(), workload.poll_interval);
            consumers.push(tokio::spawn(async move {
                poll(client, iterator, live, interval).await
            }));
        }
    }

    let started = Instant::now();
    let progress = workload
        .progress
        .then(|| spawn_progress(live.clone(), started, &workload));
    let mut producers = Vec::new();
    for worker in 0..workload.concurrency {
        let client = Client::connect(target.clone()).await?;
        let (live, workload) = (live.clone(), workload.clone());
        producers.push(tokio::spawn(async move {
            produce(client, worker, live, workload, started).await
        }));
    }
    let mut tally = Tally::new();
    for p in producers {
        tally.merge(p.await.context("a producer failed")?);
    }
    let elapsed = started.elapsed();
    live.producers_done.store(true, Ordering::Release);

    let mut end_to_end = histogram();
    let mut consumed = 0;
    let mut get_requests = 0;
    for c in consumers {
        let (mut t, h, n) = c.await.context("a consumer failed")?;
        get_requests += std::mem::take(&mut t.requests);
        tally.merge(t);
        let _ = end_to_end.add(&h);
        consumed += n;
    }
    if let Some((bar, task)) = progress {
        task.abort();
        bar.finish_and_clear();
    }
    if let Some(arn) = fan_out {
        let reply = control
            .call(
                "DeregisterStreamConsumer",
                json_body(&k::DeregisterStreamConsumerInput {
                    consumer_arn: Some(arn),
                    ..Default::default()
                }),
            )
            .await?;
        if let Some(name) = reply.error_name() {
            tally.error("DeregisterStreamConsumer", &name, 1);
        }
    }
    let read_back = if workload.read_back {
        let mut client = Client::connect(target.clone()).await?;
        Some(
            read_back(
                &mut client,
                &workload.stream,
                &shards,
                workload.cbor,
                &mut tally,
            )
            .await?,
        )
    } else {
        None
    };
    if workload.delete {
        let body = json_body(&k::DeleteStreamInput {
            stream_name: Some(workload.stream.clone()),
            ..Default::default()
        });
        let reply = control.call("DeleteStream", body).await?;
        if let Some(name) = reply.error_name() {
            tally.error("DeleteStream", &name, 1);
        }
    }
    let secs = elapsed.as_secs_f64().max(1e-9);
    Ok(Report {
        endpoint: target.endpoint.clone(),
        elapsed_s: secs,
        put_requests: tally.requests,
        get_requests,
        records_ok: tally.records_ok,
        records_failed: tally.records_failed,
        payload_bytes: tally.payload_bytes,
        records_per_s: tally.records_ok as f64 / secs,
        payload_mb_per_s: tally.payload_bytes as f64 / secs / 1e6,
        put_latency_ms: Latency::of(&tally.latency),
        records_consumed: consumed,
        end_to_end_latency_ms: Latency::of(&end_to_end),
        read_back,
        errors: tally.errors,
        workload,
    })
}

/// A request in AWS JSON.
pub(crate) fn json_body<T: Serialize>(input: &T) -> Vec<u8> {
    serde_json::to_vec(input).expect("typed requests serialize")
}

/// Calls `operation`; an error answer becomes an error naming its exception.
async fn call_ok<I: Serialize, O: serde::de::DeserializeOwned>(
    client: &mut Client,
    operation: &str,
    input: &I,
) -> anyhow::Result<O> {
    let reply = client.call(operation, json_body(input)).await?;
    if let Some(name) = reply.error_name() {
        bail!(
            "{operation}: {name}: {}",
            String::from_utf8_lossy(&reply.body)
        );
    }
    Ok(serde_json::from_slice(&reply.body)?)
}

/// Creates the stream unless it exists, then waits until it is ACTIVE.
async fn ensure_stream(client: &mut Client, stream: &str, shards: u32) -> anyhow::Result<()> {
    let body = json_body(&k::CreateStreamInput {
        stream_name: stream.to_owned(),
        shard_count: Some(i64::from(shards)),
        ..Default::default()
    });
    let reply = client.call("CreateStream", body).await?;
    match reply.error_name().as_deref() {
        None | Some("ResourceInUseException") => {}
        Some(other) => bail!(
            "CreateStream: {other}: {}",
            String::from_utf8_lossy(&reply.body)
        ),
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let summary: k::DescribeStreamSummaryOutput = call_ok(
            client,
            "DescribeStreamSummary",
            &k::DescribeStreamSummaryInput {
                stream_name: Some(stream.to_owned()),
                ..Default::default()
            },
        )
        .await?;
        if summary.stream_description_summary.stream_status == k::StreamStatus::Active {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("stream {stream} did not become ACTIVE within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn list_shards(client: &mut Client, stream: &str) -> anyhow::Result<Vec<String>> {
    let mut shards = Vec::new();
    let mut body = k::ListShardsInput {
        stream_name: Some(stream.to_owned()),
        ..Default::default()
    };
    loop {
        let page: k::ListShardsOutput = call_ok(client, "ListShards", &body).await?;
        for s in page.shards.into_iter().flatten() {
            // Open shards only: a closed one has an ending sequence number.
            if s.sequence_number_range.ending_sequence_number.is_none() {
                shards.push(s.shard_id);
            }
        }
        match page.next_token {
            Some(token) => {
                body = k::ListShardsInput {
                    next_token: Some(token),
                    ..Default::default()
                }
            }
            None => return Ok(shards),
        }
    }
}

async fn shard_iterator(client: &mut Client, stream: &str, shard: &str) -> anyhow::Result<String> {
    iterator_at(client, stream, shard, k::ShardIteratorType::Latest).await
}

async fn iterator_at(
    client: &mut Client,
    stream: &str,
    shard: &str,
    kind: k::ShardIteratorType,
) -> anyhow::Result<String> {
    let out: k::GetShardIteratorOutput = call_ok(
        client,
        "GetShardIterator",
        &k::GetShardIteratorInput {
            stream_name: Some(stream.to_owned()),
            shard_id: shard.to_owned(),
            shard_iterator_type: kind,
            ..Default::default()
        },
    )
    .await?;
    out.shard_iterator
        .context("GetShardIterator returned no iterator")
}

/// Builds the data of one record: the stamp, then filler.
pub(crate) fn record_data(filler: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(filler);
    if out.len() >= STAMP_LEN {
        out[..4].copy_from_slice(STAMP_MAGIC);
        out[4..12].copy_from_slice(&now_us().to_le_bytes());
    }
}

/// Distinct request bodies a producer cycles through when records need no stamp.
const POOL_SIZE: usize = 8;

/// One PutRecords (n records) or PutRecord body, in AWS JSON or (with
/// `cbor`) AWS CBOR, where data travels as byte strings.
fn request_body(
    w: &Workload,
    n: usize,
    filler: &[u8],
    data: &mut Vec<u8>,
    rng: &mut fastrand::Rng,
) -> bytes::Bytes {
    let mut entry = || {
        record_data(filler, data);
        (Blob(data.clone()), format!("k{}", rng.usize(..w.keys)))
    };
    let stream_name = Some(w.stream.clone());
    let body = match w.producer {
        Producer::PutRecords => encode_request(
            w.cbor,
            &k::PutRecordsInput {
                records: (0..n)
                    .map(|_| {
                        let (data, partition_key) = entry();
                        k::PutRecordsRequestEntry {
                            data,
                            partition_key,
                            explicit_hash_key: None,
                        }
                    })
                    .collect(),
                stream_name,
                ..Default::default()
            },
        ),
        Producer::PutRecord => {
            let (data, partition_key) = entry();
            encode_request(
                w.cbor,
                &k::PutRecordInput {
                    stream_name,
                    data,
                    partition_key,
                    ..Default::default()
                },
            )
        }
    };
    bytes::Bytes::from(body)
}

/// The content type of a body in AWS CBOR (`cbor`) or AWS JSON.
fn content_type(cbor: bool) -> &'static str {
    if cbor {
        crate::client::CBOR
    } else {
        crate::client::JSON
    }
}

fn encode_request<T: Serialize>(cbor: bool, input: &T) -> Vec<u8> {
    if cbor {
        let mut out = Vec::new();
        ciborium::ser::into_writer(input, &mut out).expect("writing CBOR to a Vec");
        out
    } else {
        json_body(input)
    }
}

/// An answer in the protocol of the request.
fn decode_answer<T: serde::de::DeserializeOwned>(cbor: bool, body: &[u8]) -> Option<T> {
    if cbor {
        ciborium::de::from_reader(body).ok()
    } else {
        serde_json::from_slice(body).ok()
    }
}

async fn produce(
    mut client: Client,
    worker: usize,
    live: Arc<Live>,
    w: Workload,
    started: Instant,
) -> Tally {
    let mut tally = Tally::new();
    let mut rng = fastrand::Rng::with_seed(worker as u64 + 1);
    let filler: Vec<u8> = (0..w.record_size).map(|_| rng.u8(..)).collect();
    let per_request = match w.producer {
        Producer::PutRecords => w.batch,
        Producer::PutRecord => 1,
    };
    // Pacing: each worker sends its share of the rate.
    let interval = w.rate.filter(|r| *r > 0).map(|rate| {
        Duration::from_secs_f64(per_request as f64 * w.concurrency as f64 / rate as f64)
    });
    let mut next_send = tokio::time::Instant::now();
    let mut data = Vec::with_capacity(w.record_size);
    let stamped = w.consumer != Consumer::None;
    let mut pool: Vec<bytes::Bytes> = Vec::new();
    let mut pool_next = 0;
    let operation = match w.producer {
        Producer::PutRecords => "PutRecords",
        Producer::PutRecord => "PutRecord",
    };
    while started.elapsed() < w.duration {
        let n = match w.records {
            Some(limit) => {
                let from = live
                    .claimed
                    .fetch_add(per_request as u64, Ordering::Relaxed);
                if from >= limit {
                    break;
                }
                (limit - from).min(per_request as u64) as usize
            }
            None => per_request,
        };
        if let Some(interval) = interval {
            tokio::time::sleep_until(next_send).await;
            next_send += interval;
            if started.elapsed() >= w.duration {
                break;
            }
        }
        // Without a consumer no stamp is read: full requests come from a
        // small pool built once, so the load generator spends its CPU on
        // sending, not on encoding.
        let body = if !stamped && n == per_request {
            if pool.len() < POOL_SIZE {
                pool.push(request_body(&w, n, &filler, &mut data, &mut rng));
            }
            pool_next = (pool_next + 1) % pool.len();
            pool[pool_next].clone()
        } else {
            request_body(&w, n, &filler, &mut data, &mut rng)
        };
        let sent = Instant::now();
        let reply = client.call_as(operation, body, content_type(w.cbor)).await;
        tally.requests += 1;
        let reply = match reply {
            Ok(reply) => reply,
            Err(_) => {
                tally.error(operation, "ConnectionError", 1);
                tally.records_failed += n as u64;
                live.errors.fetch_add(1, Ordering::Relaxed);
                match Client::connect(client.target()).await {
                    Ok(c) => client = c,
                    Err(_) => break,
                }
                continue;
            }
        };
        let _ = tally
            .latency
            .record(sent.elapsed().as_micros().max(1) as u64);
        if let Some(name) = reply.error_name() {
            tally.error(operation, &name, 1);
            tally.records_failed += n as u64;
            live.errors.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let failed = match w.producer {
            Producer::PutRecord => 0,
            Producer::PutRecords => {
                // Entries are read only on failure.
                let failed = decode_answer::<PutRecordsFailedCount>(w.cbor, &reply.body)
                    .map_or(0, |head| head.failed_record_count);
                if failed > 0 {
                    if let Some(entries) =
                        decode_answer::<PutRecordsErrorCodes>(w.cbor, &reply.body)
                    {
                        for code in entries.records.iter().filter_map(|e| e.error_code.as_ref()) {
                            tally.error(operation, code, 1);
                        }
                    }
                    live.errors.fetch_add(failed, Ordering::Relaxed);
                }
                failed.min(n as u64)
            }
        };
        let ok = n as u64 - failed;
        tally.records_ok += ok;
        tally.records_failed += failed;
        tally.payload_bytes += ok * w.record_size as u64;
        live.records_ok.fetch_add(ok, Ordering::Relaxed);
    }
    tally
}

fn spawn_progress(
    live: Arc<Live>,
    started: Instant,
    w: &Workload,
) -> (indicatif::ProgressBar, tokio::task::JoinHandle<()>) {
    let bar = match w.records {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::new(w.duration.as_millis() as u64),
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {elapsed_precise} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let by_records = w.records.is_some();
    let handle = bar.clone();
    let task = tokio::spawn(async move {
        let mut last = (Instant::now(), 0u64);
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let ok = live.records_ok.load(Ordering::Relaxed);
            let now = Instant::now();
            let rate = (ok - last.1) as f64 / now.duration_since(last.0).as_secs_f64();
            last = (now, ok);
            handle.set_position(if by_records {
                ok
            } else {
                started.elapsed().as_millis() as u64
            });
            handle.set_message(format!(
                "{ok} records, {rate:.0}/s, {} consumed, {} errors",
                live.consumed.load(Ordering::Relaxed),
                live.errors.load(Ordering::Relaxed)
            ));
        }
    });
    (bar, task)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The producers' bodies take the server's fast decoders, in both
    /// protocols (a body they refuse would measure the general path).
    #[test]
    fn producer_bodies_are_what_the_fast_decoders_take() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut data = Vec::new();
        let filler = vec![b'x'; 100];
        for cbor in [false, true] {
            for producer in [Producer::PutRecords, Producer::PutRecord] {
                let w = Workload {
                    stream: "bench".into(),
                    producer,
                    cbor,
                    ..Workload::default()
                };
                let n = if producer == Producer::PutRecords {
                    500
                } else {
                    1
                };
                let body = request_body(&w, n, &filler, &mut data, &mut rng);
                let decoded = match (cbor, producer) {
                    (false, Producer::PutRecords) => sluice_aws::fast::decode_put_records(&body),
                    (false, Producer::PutRecord) => sluice_aws::fast::decode_put_record(&body),
                    (true, Producer::PutRecords) => {
                        sluice_aws::fast_cbor::decode_put_records_cbor(&body)
                    }
                    (true, Producer::PutRecord) => {
                        sluice_aws::fast_cbor::decode_put_record_cbor(&body)
                    }
                };
                let decoded = decoded.unwrap_or_else(|| panic!("{producer:?} cbor={cbor}"));
                assert_eq!(decoded.records.len(), n);
                assert_eq!(&*decoded.stream_name, "bench");
                let got = decoded.data_of(&decoded.records[0]);
                assert_eq!(got.len(), filler.len());
                assert_eq!(
                    got[STAMP_LEN..],
                    filler[STAMP_LEN..],
                    "the stamp, then the filler"
                );
            }
        }
    }

    #[test]
    fn a_mostly_throttled_run_says_so() {
        let mut report = Report {
            endpoint: "http://127.0.0.1:1".into(),
            workload: Workload::default(),
            elapsed_s: 1.0,
            put_requests: 10,
            get_requests: 0,
            records_ok: 400,
            records_failed: 600,
            payload_bytes: 0,
            records_per_s: 400.0,
            payload_mb_per_s: 0.0,
            put_latency_ms: None,
            records_consumed: 0,
            end_to_end_latency_ms: None,
            read_back: None,
            errors: BTreeMap::from([(
                "PutRecords/ProvisionedThroughputExceededException".to_owned(),
                600,
            )]),
        };
        assert_eq!(report.warnings().len(), 1);
        assert!(report.human().contains("--limits off"));
        report.errors.insert(
            "PutRecords/ProvisionedThroughputExceededException".to_owned(),
            500,
        );
        assert!(report.warnings().is_empty(), "half is not most");
    }

    #[test]
    fn stamps_round_trip() {
        let mut data = Vec::new();
        record_data(&[0u8; 100], &mut data);
        assert_eq!(data.len(), 100);
        let sent = stamp_of(&data).unwrap();
        assert!(sent.abs_diff(now_us()) < 60_000_000);
        // The stamp survives decoding just the head of the base64 text.
        use base64::Engine as _;
        let encoded = base64::engine::general_purpose::STANDARD.encode(&data);
        let head = sluice_aws::kinesis::views::RecordBytes::Base64(encoded).head(STAMP_LEN);
        assert_eq!(stamp_of(&head), Some(sent));
        record_data(&[0u8; 8], &mut data);
        assert_eq!(stamp_of(&data), None, "too small for a stamp");
    }
}
