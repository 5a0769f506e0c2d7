//! `sluice bench --service firehose`: PutRecordBatch producers into one
//! delivery stream (S3 destination, buffered as asked), and, when the bucket
//! is a directory the bench can see (Sluice's `<data-dir>/s3/<bucket>`), a
//! watcher that measures put -> object-visible latency from the stamp in
//! each record.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde::Serialize;
use sluice_aws::firehose as f;
use sluice_aws::types::Blob;

use crate::client::{Client, Target, FIREHOSE};
use crate::report::Latency;
use crate::{histogram, json_body, now_us, record_data, seconds, stamp_of, Tally, STAMP_LEN};

/// The bucket the bench's delivery stream writes to.
pub const BUCKET: &str = "sluice-bench";

/// One Firehose benchmark run.
#[derive(Debug, Clone, Serialize)]
pub struct FirehoseWorkload {
    pub delivery_stream: String,
    /// Create the delivery stream if it does not exist.
    pub create: bool,
    /// Delete it afterwards.
    pub delete: bool,
    pub record_size: usize,
    /// Records per PutRecordBatch (1-500).
    pub batch: usize,
    pub concurrency: usize,
    #[serde(serialize_with = "seconds")]
    pub duration: Duration,
    pub records: Option<u64>,
    /// BufferingHints of a delivery stream the bench creates.
    pub buffer_mb: i64,
    pub buffer_seconds: i64,
    /// Where the bucket's objects appear (Sluice: `<data-dir>/s3/sluice-bench`).
    pub bucket_dir: Option<PathBuf>,
    /// How long to wait after producing for the last objects.
    #[serde(serialize_with = "seconds")]
    pub drain: Duration,
}

/// What a Firehose run measured.
#[derive(Debug, Clone, Serialize)]
pub struct FirehoseReport {
    pub endpoint: String,
    pub workload: FirehoseWorkload,
    pub elapsed_s: f64,
    pub put_requests: u64,
    pub records_ok: u64,
    pub records_failed: u64,
    pub payload_bytes: u64,
    pub records_per_s: f64,
    pub payload_mb_per_s: f64,
    pub put_latency_ms: Option<Latency>,
    /// Objects that appeared in the bucket directory during the run.
    pub objects: u64,
    /// Records found in them.
    pub records_delivered: u64,
    /// Put -> object visible in the bucket directory.
    pub put_to_object_ms: Option<Latency>,
    pub errors: BTreeMap<String, u64>,
}

impl FirehoseReport {
    pub fn human(&self) -> String {
        let w = &self.workload;
        let mut out = format!(
            "PutRecordBatch against {}: {} B records, {} per request, {} producers, delivery stream {} (buffer {} MiB / {} s)\n",
            self.endpoint, w.record_size, w.batch, w.concurrency, w.delivery_stream, w.buffer_mb, w.buffer_seconds
        );
        out += &format!(
            "  {:.1} s: {} records ({} failed), {:.0} records/s, {:.1} MB/s of data, {} requests\n",
            self.elapsed_s,
            self.records_ok,
            self.records_failed,
            self.records_per_s,
            self.payload_mb_per_s,
            self.put_requests
        );
        if let Some(l) = &self.put_latency_ms {
            out += &format!(
                "  PutRecordBatch latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}\n",
                l.p50, l.p90, l.p99, l.max
            );
        }
        if w.bucket_dir.is_some() {
            out += &format!(
                "  delivered: {} objects, {} records\n",
                self.objects, self.records_delivered
            );
        }
        if let Some(l) = &self.put_to_object_ms {
            out += &format!(
                "  put -> object visible ms: p50 {:.0}  p90 {:.0}  p99 {:.0}  max {:.0}\n",
                l.p50, l.p90, l.p99, l.max
            );
        }
        for (k, v) in &self.errors {
            out += &format!("  error {k}: {v}\n");
        }
        out
    }
}

/// Runs `w` against `target`.
pub async fn run(target: Target, w: FirehoseWorkload) -> anyhow::Result<FirehoseReport> {
    if w.batch == 0 || w.batch > 500 {
        bail!("a PutRecordBatch holds 1 to 500 records");
    }
    if w.record_size == 0 || w.record_size > 1_024_000 {
        bail!("a Firehose record is 1 B to 1,000 KiB");
    }
    if w.bucket_dir.is_some() && w.record_size < STAMP_LEN {
        bail!("measuring delivery needs records of at least {STAMP_LEN} bytes");
    }
    if w.concurrency == 0 {
        bail!("concurrency must be at least 1");
    }
    let target = Arc::new(target);
    let mut control = Client::connect(target.clone()).await?.to(FIREHOSE);
    if w.create {
        let input = f::CreateDeliveryStreamInput {
            delivery_stream_name: w.delivery_stream.clone(),
            extended_s3_destination_configuration: Some(f::ExtendedS3DestinationConfiguration {
                role_arn: "arn:aws:iam::000000000000:role/sluice-bench".into(),
                bucket_arn: format!("arn:aws:s3:::{BUCKET}"),
                buffering_hints: Some(f::BufferingHints {
                    size_in_mbs: Some(w.buffer_mb),
                    interval_in_seconds: Some(w.buffer_seconds),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let reply = control
            .call("CreateDeliveryStream", json_body(&input))
            .await?;
        match reply.error_name() {
            None => {}
            Some(name) if name == "ResourceInUseException" => {}
            Some(name) => bail!("CreateDeliveryStream failed: {name}"),
        }
    }
    let done = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let watcher = w.bucket_dir.clone().map(|dir| {
        let before = files(&dir);
        let (done, acked, w) = (done.clone(), acked.clone(), w.clone());
        tokio::spawn(async move { watch(dir, before, done, acked, w).await })
    });
    let started = Instant::now();
    let claimed = Arc::new(AtomicU64::new(0));
    let mut producers = Vec::new();
    for worker in 0..w.concurrency {
        let client = Client::connect(target.clone()).await?.to(FIREHOSE);
        let (w, claimed, acked) = (w.clone(), claimed.clone(), acked.clone());
        let stamped = w.bucket_dir.is_some();
        producers.push(tokio::spawn(async move {
            produce(client, worker, w, claimed, acked, started, stamped).await
        }));
    }
    let mut tally = Tally::new();
    for p in producers {
        tally.merge(p.await?);
    }
    let elapsed = started.elapsed();
    done.store(true, Ordering::SeqCst);
    let (objects, delivered, latency) = match watcher {
        Some(task) => task.await?,
        None => (0, 0, histogram()),
    };
    if w.delete {
        let input = f::DeleteDeliveryStreamInput {
            delivery_stream_name: w.delivery_stream.clone(),
            ..Default::default()
        };
        let reply = control
            .call("DeleteDeliveryStream", json_body(&input))
            .await?;
        if let Some(name) = reply.error_name() {
            tally.error("DeleteDeliveryStream", &name, 1);
        }
    }
    let secs = elapsed.as_secs_f64().max(1e-9);
    Ok(FirehoseReport {
        endpoint: target.endpoint.clone(),
        workload: w,
        elapsed_s: secs,
        put_requests: tally.requests,
        records_ok: tally.records_ok,
        records_failed: tally.records_failed,
        payload_bytes: tally.payload_bytes,
        records_per_s: tally.records_ok as f64 / secs,
        payload_mb_per_s: tally.payload_bytes as f64 / secs / 1e6,
        put_latency_ms: Latency::of(&tally.latency),
        objects,
        records_delivered: delivered,
        put_to_object_ms: Latency::of(&latency),
        errors: tally.errors,
    })
}

async fn produce(
    mut client: Client,
    worker: usize,
    w: FirehoseWorkload,
    claimed: Arc<AtomicU64>,
    acked: Arc<AtomicU64>,
    started: Instant,
    stamped: bool,
) -> Tally {
    let mut tally = Tally::new();
    let mut rng = fastrand::Rng::with_seed(worker as u64 + 1);
    let filler: Vec<u8> = (0..w.record_size).map(|_| rng.u8(..)).collect();
    let mut data = Vec::with_capacity(w.record_size);
    // Unstamped bodies are built once and sent again.
    let mut pool: Option<bytes::Bytes> = None;
    while started.elapsed() < w.duration {
        let n = match w.records {
            Some(limit) => {
                let from = claimed.fetch_add(w.batch as u64, Ordering::Relaxed);
                if from >= limit {
                    break;
                }
                (limit - from).min(w.batch as u64) as usize
            }
            None => w.batch,
        };
        let mut body = || {
            let records = (0..n)
                .map(|_| {
                    record_data(&filler, &mut data);
                    f::Record {
                        data: Blob(data.clone()),
                    }
                })
                .collect();
            bytes::Bytes::from(json_body(&f::PutRecordBatchInput {
                delivery_stream_name: w.delivery_stream.clone(),
                records,
            }))
        };
        let body = match (&pool, stamped || n != w.batch) {
            (Some(b), false) => b.clone(),
            (None, false) => pool.insert(body()).clone(),
            (_, true) => body(),
        };
        let sent = Instant::now();
        tally.requests += 1;
        let reply = match client.call("PutRecordBatch", body).await {
            Ok(r) => r,
            Err(_) => {
                tally.error("PutRecordBatch", "ConnectionError", 1);
                tally.records_failed += n as u64;
                match Client::connect(client.target()).await {
                    Ok(c) => client = c.to(FIREHOSE),
                    Err(_) => break,
                }
                continue;
            }
        };
        let _ = tally
            .latency
            .record(sent.elapsed().as_micros().max(1) as u64);
        if let Some(name) = reply.error_name() {
            tally.error("PutRecordBatch", &name, 1);
            tally.records_failed += n as u64;
            continue;
        }
        let failed = serde_json::from_slice::<f::PutRecordBatchOutput>(&reply.body)
            .map_or(n as u64, |o| o.failed_put_count.max(0) as u64);
        if failed > 0 {
            tally.error("PutRecordBatch", "FailedRecords", failed);
        }
        let ok = (n as u64).saturating_sub(failed);
        tally.records_ok += ok;
        tally.records_failed += failed;
        tally.payload_bytes += ok * w.record_size as u64;
        acked.fetch_add(ok, Ordering::Relaxed);
    }
    tally
}

/// Every file under `dir`.
fn files(dir: &Path) -> HashSet<PathBuf> {
    let mut out = HashSet::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => pending.push(e.path()),
                Ok(_) => {
                    out.insert(e.path());
                }
                Err(_) => {}
            }
        }
    }
    out
}

/// Watches the bucket directory: each new object's records (fixed size,
/// concatenated as Firehose delivers them), their stamps against the time
/// the object was first seen. Ends when producing is done and every
/// acknowledged record was seen, or `drain` after producing ends.
async fn watch(
    dir: PathBuf,
    mut seen: HashSet<PathBuf>,
    done: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    w: FirehoseWorkload,
) -> (u64, u64, hdrhistogram::Histogram<u64>) {
    let mut latency = histogram();
    let (mut objects, mut records) = (0u64, 0u64);
    let mut drain_from: Option<Instant> = None;
    loop {
        let now = files(&dir);
        let at = now_us();
        for path in now.difference(&seen.clone()) {
            let Ok(body) = std::fs::read(path) else {
                continue;
            };
            objects += 1;
            for record in body.chunks(w.record_size) {
                records += 1;
                if let Some(stamp) = stamp_of(record) {
                    let _ = latency.record(at.saturating_sub(stamp).max(1));
                }
            }
            seen.insert(path.clone());
        }
        if done.load(Ordering::SeqCst) {
            let since = *drain_from.get_or_insert_with(Instant::now);
            if records >= acked.load(Ordering::SeqCst) || since.elapsed() >= w.drain {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (objects, records, latency)
}
