//! Delivery: one task per Direct PUT delivery stream reads its internal
//! stream (where PutRecord left the records, durable) from the position
//! last delivered, buffers by size and time, and writes objects.
//!
//! The buffer is the log itself: the task counts what arrived since the
//! last delivery (reading ahead, never holding records) and, once
//! `SizeInMBs` are there or `IntervalInSeconds` have passed since the
//! oldest of them arrived (on the server's clock), writes them as one
//! object, stops before a record that would make the object larger than
//! `SizeInMBs`, then saves the new position. Memory does not grow with the
//! data: a delivery streams records from the log to the object file.
//!
//! A failed delivery (a full disk, say) is retried, at growing intervals up
//! to 30 s, until retention removes the records (24 hours, as AWS retries S3
//! delivery for 24 hours); nothing is confirmed before its object is
//! durable.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use sluice_aws::firehose as f;
use sluice_log::{Cursor, ReadLimits, ShardLog, StartingPosition};
use sluice_meta::Scope;

use crate::keys;
use crate::objects::{self, ObjectWriter};
use crate::positions::Position;
use crate::registry::{DeliveryStream, Destination};
use crate::Firehose;

/// The internal streams' service name: `firehose.<region>` scopes.
pub(crate) const SERVICE: &str = "firehose";

/// A record is read from the log in batches of at most this many bytes.
const READ_BYTES: usize = 4 << 20;
/// The longest wait between retries of a failed delivery.
const RETRY_MAX: Duration = Duration::from_secs(30);

/// A version 4 UUID, as Firehose puts in object names.
pub fn uuid() -> String {
    let hi = fastrand::u64(..);
    let lo = fastrand::u64(..);
    let hi = (hi & !0xf000) | 0x4000;
    let lo = (lo & !(0xc << 60)) | (0x8 << 60);
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xffff,
        hi & 0xffff,
        lo >> 48,
        lo & 0xffff_ffff_ffff
    )
}

/// `!{firehose:random-string}`: 11 letters and digits.
pub(crate) fn random_string() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..11)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect()
}

/// What a delivery stream's records become: the parts of its configuration
/// that delivery follows.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    bucket: String,
    prefix: Option<String>,
    error_prefix: Option<String>,
    pipeline: Option<crate::process::Pipeline>,
    compression: f::CompressionFormat,
    extension: String,
    size_bytes: u64,
    interval_ms: u64,
    version: u64,
    /// Dynamic partitioning: records go to their partition's object.
    pub(crate) partitioned: bool,
    /// The delivery stream's ARN and region (a Lambda's event names them).
    arn: String,
    region: String,
    /// An HTTP endpoint destination (its S3 configuration is the backup's).
    pub(crate) http: Option<crate::http::Endpoint>,
    /// A Kinesis stream source: the stream read (else Direct PUT).
    pub(crate) kinesis: Option<(Scope, String)>,
    /// Data format conversion: objects are Parquet files of the records.
    conversion: Option<Arc<crate::convert::Conversion>>,
    /// A Kinesis source's stream ARN (a Lambda's event names it).
    source_arn: Option<String>,
    /// Extended S3's CustomTimeZone: object keys' times are its.
    zone: Option<jiff::tz::TimeZone>,
    /// Extended S3's S3BackupMode Enabled: the source records, as they
    /// came, into objects of this bucket too.
    backup: Option<Backup>,
}

/// Where an extended S3 destination backs its source records up.
#[derive(Debug, Clone)]
pub(crate) struct Backup {
    bucket: String,
    prefix: Option<String>,
    compression: f::CompressionFormat,
    extension: String,
}

impl Plan {
    /// The Lambda function its processing invokes, if any.
    pub(crate) fn lambda_arn(&self) -> Option<&str> {
        self.pipeline
            .as_ref()
            .and_then(|p| p.lambda.as_ref())
            .map(|l| l.arn.as_str())
    }
}

/// The plan for `stream`, or why Sluice does not deliver it yet (its
/// records are then refused, never accepted and left undelivered).
pub(crate) fn plan(stream: &DeliveryStream, f: &Firehose) -> Result<Plan, String> {
    let kinesis = match stream.kind {
        f::DeliveryStreamType::DirectPut => None,
        f::DeliveryStreamType::KinesisStreamAsSource => {
            let arn = stream
                .source
                .as_ref()
                .and_then(|s| s.kinesis_stream_source_description.as_ref())
                .and_then(|k| k.kinesis_stream_arn.as_deref())
                .unwrap_or_default();
            Some(
                crate::source::stream_of(arn)
                    .ok_or_else(|| format!("{arn} is not a Kinesis stream ARN"))?,
            )
        }
        other => return Err(format!("{} sources are not built", other.as_str())),
    };
    let source_arn = stream
        .source
        .as_ref()
        .and_then(|s| s.kinesis_stream_source_description.as_ref())
        .and_then(|k| k.kinesis_stream_arn.clone())
        .filter(|_| kinesis.is_some());
    let mut http = None;
    let mut partitioned = false;
    let mut conversion = None;
    let mut backup = None;
    let mut zone = None;
    let http_hints;
    let (bucket_arn, prefix, error_prefix, hints, compression, extension, pipeline) = match &stream
        .destination
    {
        Destination::S3(c) => (
            &c.bucket_arn,
            &c.prefix,
            &c.error_output_prefix,
            &c.buffering_hints,
            c.compression_format,
            None,
            None,
        ),
        Destination::ExtendedS3(c) => {
            let pipeline = crate::process::pipeline(c.processing_configuration.as_ref())?;
            if let Some(d) = &c.data_format_conversion_configuration {
                conversion =
                    crate::convert::Conversion::new(d, &f.tables, &stream.region)?.map(Arc::new);
            }
            if c.dynamic_partitioning_configuration
                .as_ref()
                .is_some_and(|d| d.enabled == Some(true))
            {
                let query = pipeline
                    .as_ref()
                    .is_some_and(|p| p.metadata_query.is_some());
                let lambda = pipeline.as_ref().is_some_and(|p| p.lambda.is_some());
                if !query && !lambda {
                    return Err(
                        "dynamic partitioning needs a MetadataExtraction or Lambda processor"
                            .to_owned(),
                    );
                }
                if !lambda
                    && c.prefix
                        .as_deref()
                        .unwrap_or_default()
                        .contains("!{partitionKeyFromLambda:")
                {
                    return Err("partitionKeyFromLambda needs a Lambda processor".to_owned());
                }
                partitioned = true;
            }
            if c.s3_backup_mode == Some(f::S3BackupMode::Enabled) {
                let b = c
                    .s3_backup_configuration
                    .as_ref()
                    .ok_or("S3BackupMode Enabled needs an S3BackupConfiguration")?;
                let compression = b.compression_format.unwrap_or_default();
                if !objects::writes(compression) {
                    return Err(format!(
                        "{} compression is not built yet",
                        compression.as_str()
                    ));
                }
                backup = Some(Backup {
                    bucket: objects::bucket_of(&b.bucket_arn)
                        .ok_or_else(|| format!("{} names no bucket", b.bucket_arn))?
                        .to_owned(),
                    prefix: b.prefix.clone(),
                    compression,
                    extension: objects::extension(compression, None),
                });
            }
            zone = keys::zone(c.custom_time_zone.as_deref())?;
            (
                &c.bucket_arn,
                &c.prefix,
                &c.error_output_prefix,
                &c.buffering_hints,
                c.compression_format,
                c.file_extension.as_deref(),
                pipeline,
            )
        }
        Destination::HttpEndpoint(c) => {
            // Sluice has no Secrets Manager: its configuration maps the
            // secret's ARN to a file holding the secret (`{"api_key": ...}`).
            let secret = match c
                .secrets_manager_configuration
                .as_ref()
                .filter(|m| m.enabled)
            {
                None => None,
                Some(m) => {
                    let arn = m.secret_arn.as_deref().unwrap_or_default();
                    Some(f.secrets.get(arn).cloned().ok_or_else(|| {
                        format!("the secret {arn} is not mapped to a file in Sluice's configuration (--firehose-secret SECRET_ARN=FILE)")
                    })?)
                }
            };
            let url = &c.endpoint_configuration.url;
            if !crate::http::allowed(url) {
                return Err(format!(
                    "{url} is neither https nor http to a loopback address"
                ));
            }
            let attributes: serde_json::Map<String, serde_json::Value> = c
                .request_configuration
                .as_ref()
                .and_then(|r| r.common_attributes.as_ref())
                .into_iter()
                .flatten()
                .map(|a| {
                    (
                        a.attribute_name.clone(),
                        serde_json::Value::String(a.attribute_value.clone()),
                    )
                })
                .collect();
            http = Some(crate::http::Endpoint {
                url: url.clone(),
                access_key: c
                    .endpoint_configuration
                    .access_key
                    .clone()
                    .filter(|k| !k.is_empty()),
                gzip: c
                    .request_configuration
                    .as_ref()
                    .and_then(|r| r.content_encoding)
                    == Some(f::ContentEncoding::Gzip),
                common_attributes: serde_json::json!({"commonAttributes": attributes}).to_string(),
                retry_ms: c
                    .retry_options
                    .as_ref()
                    .and_then(|r| r.duration_in_seconds)
                    .unwrap_or(300)
                    .max(0) as u64
                    * 1000,
                backup_all: c.s3_backup_mode == Some(f::HttpEndpointS3BackupMode::AllData),
                source_arn: stream.arn(),
                secret,
            });
            http_hints = Some(f::BufferingHints {
                size_in_mbs: c.buffering_hints.as_ref().and_then(|h| h.size_in_mbs),
                interval_in_seconds: c
                    .buffering_hints
                    .as_ref()
                    .and_then(|h| h.interval_in_seconds),
            });
            let b = &c.s3_configuration;
            (
                &b.bucket_arn,
                &b.prefix,
                &b.error_output_prefix,
                &http_hints,
                b.compression_format,
                None,
                crate::process::pipeline(c.processing_configuration.as_ref())?,
            )
        }
    };
    let compression = compression.unwrap_or_default();
    if !objects::writes(compression) {
        return Err(format!(
            "{} compression is not built yet",
            compression.as_str()
        ));
    }
    let bucket = objects::bucket_of(bucket_arn)
        .ok_or_else(|| format!("{bucket_arn} names no bucket"))?
        .to_owned();
    let hints = crate::describe::buffering(hints, conversion.is_some());
    Ok(Plan {
        bucket,
        prefix: prefix.clone(),
        error_prefix: error_prefix.clone(),
        pipeline,
        compression,
        extension: objects::extension(compression, extension),
        size_bytes: hints.size_in_mbs.unwrap_or(5).max(1) as u64 * (1 << 20),
        interval_ms: hints.interval_in_seconds.unwrap_or(300).max(0) as u64 * 1000,
        version: stream.version,
        partitioned,
        arn: stream.arn(),
        region: stream.region.clone(),
        http,
        kinesis,
        conversion,
        backup,
        zone,
        source_arn,
    })
}

/// The delivery tasks.
#[derive(Debug)]
pub(crate) struct Deliveries {
    /// Bumped to make every task look again (the clock moved, a
    /// configuration changed).
    wake: tokio::sync::watch::Sender<u64>,
    workers: Mutex<HashMap<String, Arc<Worker>>>,
    runtime: OnceLock<(tokio::runtime::Handle, Weak<Firehose>)>,
}

impl Default for Deliveries {
    fn default() -> Self {
        Self {
            wake: tokio::sync::watch::channel(0).0,
            workers: Mutex::default(),
            runtime: OnceLock::new(),
        }
    }
}

/// One delivery task's state, as others see it.
#[derive(Debug, Default)]
struct Worker {
    /// The last wake-up generation after which it found nothing due.
    seen: AtomicU64,
    stop: AtomicBool,
    /// An HTTP endpoint request not yet accepted, between its retries.
    pending: Mutex<Option<HttpPending>>,
}

/// An HTTP endpoint request being retried (kept in memory: after a
/// restart its records are read and sent again, with a new requestId).
#[derive(Debug)]
struct HttpPending {
    request_id: String,
    /// The records as sent (processed).
    records: Vec<Vec<u8>>,
    /// The records as they arrived, with their arrival times: backed up to
    /// S3 if the request fails for good (or always, with AllData).
    raw: Vec<(u64, Vec<u8>)>,
    /// Records processing refused, for the error output.
    failed: Vec<(u64, Vec<u8>, crate::process::Failure)>,
    oldest_ms: u64,
    first_attempt_ms: u64,
    attempts: u32,
    next_attempt_ms: u64,
    /// Where the next delivery starts once this one is done.
    after: Position,
}

impl Deliveries {
    fn workers(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Worker>>> {
        self.workers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a task counts between deliveries: the records after the position.
#[derive(Debug, Default)]
struct Buffer {
    /// The position the count starts from.
    from: Option<Cursor>,
    /// How far the count has read.
    scanned: Option<Cursor>,
    records: u64,
    bytes: u64,
    /// The arrival time of the oldest record counted.
    oldest_ms: Option<u64>,
}

enum Step {
    /// The delivery stream is gone: the task ends.
    Gone,
    /// One object delivered; more may be due.
    Delivered,
    /// Nothing due: wait for data after `cursor` (if known), or the
    /// deadline on the server's clock (if any).
    Wait {
        log: Option<Arc<ShardLog>>,
        cursor: Option<Cursor>,
        deadline_ms: Option<u64>,
    },
    Failed(String),
}

pub(crate) fn key(scope: &Scope, name: &str) -> String {
    format!("{}/{}/{name}", scope.account, scope.region)
}

impl Firehose {
    fn buckets_root(&self) -> PathBuf {
        self.data_dir.join(objects::BUCKETS_DIR)
    }

    /// Starts delivering on `runtime`: the internal streams are made to
    /// match the delivery streams (a crash may have left one without the
    /// other), then a task starts per Direct PUT delivery stream.
    pub fn start(self: &Arc<Self>, runtime: tokio::runtime::Handle) {
        objects::clear_tmp(&*self.storage, &self.buckets_root());
        let every: Vec<(Scope, String)> = self
            .registry()
            .all()
            .map(|s| (s.scope(), s.name.clone()))
            .collect();
        let wanted: Vec<(Scope, String)> = self
            .registry()
            .all()
            .filter(|s| s.kind == f::DeliveryStreamType::DirectPut)
            .map(|s| (s.scope(), s.name.clone()))
            .collect();
        let wanted_keys: std::collections::HashSet<String> =
            wanted.iter().map(|(s, n)| key(s, n)).collect();
        let every_key: std::collections::HashSet<String> =
            every.iter().map(|(s, n)| key(s, n)).collect();
        for (internal, name, _) in sluice_streams::ops::internal_streams(&self.engine) {
            let Some(region) = internal.region.strip_prefix("firehose.") else {
                continue;
            };
            let scope = Scope::new(internal.account.clone(), region);
            if !wanted_keys.contains(&key(&scope, &name)) {
                if let Err(e) = sluice_streams::ops::delete_internal(&self.engine, &internal, &name)
                {
                    tracing::warn!("firehose: removing the records of deleted delivery stream {name} failed: {}", e.message);
                }
            }
        }
        for (scope, name) in &wanted {
            let internal = Scope::internal(SERVICE, scope);
            if sluice_streams::ops::internal_log(&self.engine, &internal, name).is_none() {
                if let Err(e) = sluice_streams::ops::create_internal(&self.engine, &internal, name)
                {
                    tracing::warn!(
                        "firehose: creating the record log of {name} failed: {}",
                        e.message
                    );
                }
            }
        }
        // With `--fsync` at an interval, records are read (and may be
        // delivered) before they are durable; after a power loss the log can
        // end before a saved position. Such a position moves back to the
        // log's end: new records are written from there.
        for (scope, name) in &wanted {
            let internal = Scope::internal(SERVICE, scope);
            let k = key(scope, name);
            let Some((log, _)) = sluice_streams::ops::internal_log(&self.engine, &internal, name)
            else {
                continue;
            };
            let Some(saved) = self.positions.get(&k) else {
                continue;
            };
            let Ok(end) = log.cursor(StartingPosition::Latest) else {
                continue;
            };
            let (epoch, offset, _) = sluice_log::split_sequence(saved.next);
            if epoch == log.epoch() && offset > sluice_log::split_sequence(end.0).1 {
                tracing::warn!("firehose: {name}'s log ends before its delivery position (a power loss with --fsync at an interval); delivery goes on from the log's end");
                let moved = Position {
                    next: end.0,
                    ..saved.clone()
                };
                if let Err(e) = self.positions.save(&k, Some(moved)) {
                    tracing::warn!("firehose: moving {name}'s delivery position failed: {e}");
                }
            }
        }
        if let Err(e) = self.positions.retain(|k| every_key.contains(k)) {
            tracing::warn!(
                "firehose: forgetting positions of deleted delivery streams failed: {e}"
            );
        }
        let _ = self.deliveries.runtime.set((runtime, Arc::downgrade(self)));
        for (scope, name) in every {
            self.spawn(&scope, &name);
        }
    }

    /// Starts the task of one delivery stream (once started).
    pub(crate) fn spawn(&self, scope: &Scope, name: &str) {
        let Some((runtime, me)) = self.deliveries.runtime.get() else {
            return;
        };
        let Some(me) = me.upgrade() else { return };
        let k = key(scope, name);
        let worker = Arc::new(Worker::default());
        if let Some(old) = self.deliveries.workers().insert(k, worker.clone()) {
            old.stop.store(true, Ordering::SeqCst);
        }
        runtime.spawn(run(me, scope.clone(), name.to_owned(), worker));
    }

    /// Ends the task of one delivery stream.
    pub(crate) fn stop_worker(&self, scope: &Scope, name: &str) {
        if let Some(w) = self.deliveries.workers().remove(&key(scope, name)) {
            w.stop.store(true, Ordering::SeqCst);
        }
        self.wake();
    }

    /// Makes every task look again now.
    pub fn wake(&self) {
        self.deliveries.wake.send_modify(|g| *g += 1);
    }

    /// Makes every task look again, and waits (at most `timeout`) until
    /// each has delivered what is due at the clock's time now. The test
    /// controls call this after moving the clock, so that a test sees what
    /// the new time delivers as soon as the clock call returns.
    pub async fn settle(&self, timeout: Duration) -> bool {
        self.wake();
        let generation = *self.deliveries.wake.borrow();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let pending = self.deliveries.workers().values().any(|w| {
                !w.stop.load(Ordering::SeqCst) && w.seen.load(Ordering::SeqCst) < generation
            });
            if !pending {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// One look at a delivery stream: count what arrived, deliver if due.
    fn step(&self, scope: &Scope, name: &str, buffer: &mut Buffer, worker: &Worker) -> Step {
        let plan = {
            let registry = self.registry();
            match registry.get(scope, name) {
                None => return Step::Gone,
                Some(stream) => plan(stream, self),
            }
        };
        if let Ok(plan) = &plan {
            if let Some((source, stream)) = &plan.kinesis {
                return self.step_kinesis(scope, name, plan, source, stream, worker);
            }
        }
        let internal = Scope::internal(SERVICE, scope);
        let Some((log, created_ms)) =
            sluice_streams::ops::internal_log(&self.engine, &internal, name)
        else {
            return Step::Gone;
        };
        let Ok(plan) = plan else {
            // Not deliverable (its puts are refused): wait for a change.
            return Step::Wait {
                log: None,
                cursor: None,
                deadline_ms: None,
            };
        };
        let k = key(scope, name);
        let from = match self
            .positions
            .get(&k)
            // A position in another stream of the same name (deleted and
            // made again in the same millisecond) is not this one's.
            .filter(|p| {
                p.stream_created_ms == created_ms
                    && sluice_log::split_sequence(p.next).0 == log.epoch()
            }) {
            Some(p) => Cursor(p.next),
            None => match log.cursor(StartingPosition::TrimHorizon) {
                Ok(c) => c,
                Err(e) => return Step::Failed(format!("reading its records failed: {e}")),
            },
        };
        if buffer.from != Some(from) {
            *buffer = Buffer {
                from: Some(from),
                scanned: Some(from),
                ..Buffer::default()
            };
        }
        // Count what arrived since the last look, up to a full buffer.
        while buffer.bytes < plan.size_bytes {
            let at = buffer.scanned.unwrap_or(from);
            let room = (plan.size_bytes - buffer.bytes).min(READ_BYTES as u64) as usize;
            let batch = match log.read(
                at,
                ReadLimits {
                    max_records: 10_000,
                    max_bytes: room,
                },
            ) {
                Ok(b) => b,
                Err(e) => return Step::Failed(format!("reading its records failed: {e}")),
            };
            // Past what retention removed, too: waits start after it.
            buffer.scanned = Some(batch.next);
            if batch.records.is_empty() {
                break;
            }
            for r in &batch.records {
                buffer.records += 1;
                buffer.bytes += r.data.len() as u64;
                buffer.oldest_ms.get_or_insert(r.arrival_timestamp_ms);
            }
            buffer.scanned = Some(batch.next);
        }
        let now = self.now_ms();
        let deadline_ms = buffer.oldest_ms.map(|o| o.saturating_add(plan.interval_ms));
        let due = buffer.records > 0
            && (buffer.bytes >= plan.size_bytes || deadline_ms.is_some_and(|d| now >= d));
        self.stats.waiting(&k, buffer.oldest_ms);
        if plan.http.is_some() {
            let at = (from, created_ms, due, deadline_ms);
            return self.step_http(&k, name, &plan, worker, &log, at, buffer);
        }
        if !due {
            return Step::Wait {
                log: Some(log),
                cursor: buffer.scanned,
                deadline_ms,
            };
        }
        let mut source = crate::source::LogSource::new(&log, from);
        match self.deliver(name, &plan, &mut source) {
            Ok(delivered) => {
                let next = source.cursor;
                // A task told to stop (its delivery stream was deleted,
                // perhaps made again) saves nothing.
                if worker.stop.load(Ordering::SeqCst) {
                    return Step::Gone;
                }
                let saved = self.positions.save(
                    &k,
                    Some(Position {
                        stream_created_ms: created_ms,
                        next: next.0,
                        shards: Default::default(),
                    }),
                );
                *buffer = Buffer::default();
                if let Some(delivered) = delivered {
                    self.stats.delivered(&k, &delivered, now);
                }
                match saved {
                    Ok(()) => Step::Delivered,
                    // Delivered again after a restart: a duplicate, never a loss.
                    Err(e) => Step::Failed(format!("saving its delivery position failed: {e}")),
                }
            }
            Err(e) => Step::Failed(e),
        }
    }

    /// One look at a delivery stream with an HTTP endpoint: a request
    /// waiting for its retry, or a new one when the buffer is due.
    #[allow(clippy::too_many_arguments)]
    fn step_http(
        &self,
        k: &str,
        name: &str,
        plan: &Plan,
        worker: &Worker,
        log: &Arc<ShardLog>,
        at: (Cursor, u64, bool, Option<u64>),
        buffer: &mut Buffer,
    ) -> Step {
        let (from, created_ms, due, deadline_ms) = at;
        let mut pending = worker.pending.lock().unwrap_or_else(|p| p.into_inner());
        if pending.is_none() {
            if !due {
                return Step::Wait {
                    log: Some(log.clone()),
                    cursor: buffer.scanned,
                    deadline_ms,
                };
            }
            let mut source = crate::source::LogSource::new(log, from);
            let gathered = self.gather(plan, &mut source);
            let after = Position {
                stream_created_ms: created_ms,
                next: source.cursor.0,
                shards: Default::default(),
            };
            match gathered {
                Ok(Some(mut p)) => {
                    p.after = after;
                    *pending = Some(p);
                }
                // Retention removed what was counted: go on after it.
                Ok(None) => {
                    *buffer = Buffer::default();
                    let saved = self.positions.save(k, Some(after));
                    return match saved {
                        Ok(()) => Step::Delivered,
                        Err(e) => Step::Failed(format!("saving its delivery position failed: {e}")),
                    };
                }
                Err(e) => return Step::Failed(e),
            }
        }
        self.send(k, name, plan, worker, &mut pending, Some(buffer))
    }

    /// Sends the HTTP endpoint request `pending` holds (or waits for its
    /// retry); once it is done (accepted, or failed for good and backed
    /// up), saves its position and clears it.
    #[allow(clippy::too_many_arguments)]
    fn send(
        &self,
        k: &str,
        name: &str,
        plan: &Plan,
        worker: &Worker,
        pending: &mut Option<HttpPending>,
        buffer: Option<&mut Buffer>,
    ) -> Step {
        let endpoint = plan.http.as_ref().expect("an HTTP endpoint plan");
        let p = pending.as_mut().expect("set above");
        let now = self.now_ms();
        if now < p.next_attempt_ms {
            return Step::Wait {
                log: None,
                cursor: None,
                deadline_ms: Some(p.next_attempt_ms),
            };
        }
        p.attempts += 1;
        if p.attempts == 1 {
            p.first_attempt_ms = now;
        }
        // Nothing to send when processing dropped or failed every record
        // (AWS's requests carry at least one).
        let sent = if p.records.is_empty() {
            Ok(())
        } else {
            let body = crate::http::body(&p.request_id, now, &p.records, endpoint.gzip);
            tokio::runtime::Handle::current().block_on(crate::http::post(
                endpoint,
                &p.request_id,
                body,
                self.http_timeout,
            ))
        };
        let now = self.now_ms();
        let refusal = match sent {
            Ok(()) => None,
            Err(refusal) => {
                self.stats.failed(k);
                let next = now.saturating_add(crate::http::backoff_ms(p.attempts));
                if !refusal.last && next < p.first_attempt_ms.saturating_add(endpoint.retry_ms) {
                    sluice_streams::health::warn_limited(
                        "firehose-http",
                        format_args!(
                            "firehose: {name}: request {} to its HTTP endpoint failed (attempt {}, retried): {}",
                            p.request_id, p.attempts, refusal.message
                        ),
                    );
                    p.next_attempt_ms = next;
                    return Step::Wait {
                        log: None,
                        cursor: None,
                        deadline_ms: Some(next),
                    };
                }
                tracing::warn!(
                    "firehose: {name}: request {} to its HTTP endpoint failed for good after {} attempts ({}); its records go to the S3 backup",
                    p.request_id, p.attempts, refusal.message
                );
                Some(refusal)
            }
        };
        // Done with the endpoint: the S3 backup (all records, or those
        // that failed), then the position.
        let mut batch = ObjectBatch::new(self, plan);
        let written = (|| {
            if endpoint.backup_all {
                for (arrival, raw) in &p.raw {
                    batch.write(raw, *arrival)?;
                }
            }
            if let Some(refusal) = &refusal {
                let failure = crate::process::Failure {
                    output_type: "http-endpoint-failed",
                    code: refusal.code,
                    message: refusal.message.clone(),
                };
                for (arrival, raw) in &p.raw {
                    batch.fail(*arrival, raw, &failure, p.attempts, now)?;
                }
            }
            for (arrival, raw, failure) in &p.failed {
                batch.fail(*arrival, raw, failure, 1, now)?;
            }
            Ok::<_, String>(())
        })();
        let finished = match written {
            Ok(()) => batch.finish(name, &self.buckets_root()),
            Err(e) => {
                batch.abandon();
                Err(e)
            }
        };
        if let Err(e) = finished {
            // Sent again later: a duplicate at worst.
            p.next_attempt_ms = now;
            return Step::Failed(e);
        }
        let p = pending.take().expect("set above");
        if worker.stop.load(Ordering::SeqCst) {
            return Step::Gone;
        }
        if let Some(buffer) = buffer {
            *buffer = Buffer::default();
        }
        let saved = self.positions.save(k, Some(p.after));
        if refusal.is_none() {
            self.stats.delivered(
                k,
                &Delivered {
                    records: p.raw.len() as u64,
                    bytes: p.records.iter().map(|r| r.len() as u64).sum(),
                    oldest_ms: p.oldest_ms,
                },
                now,
            );
        }
        match saved {
            Ok(()) => Step::Delivered,
            Err(e) => Step::Failed(format!("saving its delivery position failed: {e}")),
        }
    }

    /// The records of one HTTP request from `from`: up to the buffer size
    /// and 10,000 records, processed. `None` if there were none (retention
    /// removed them), with where the log goes on.
    fn gather(
        &self,
        plan: &Plan,
        source: &mut dyn crate::source::Source,
    ) -> Result<Option<HttpPending>, String> {
        let (mut taken, mut oldest) = (0u64, None);
        let (mut records, mut raw, mut failed) = (Vec::new(), Vec::new(), Vec::new());
        let mut processed = Vec::new();
        // Records waiting for a Lambda invocation, and their bytes.
        let (mut lambda_items, mut lambda_bytes) = (Vec::new(), 0u64);
        while taken < plan.size_bytes && raw.len() < crate::http::RECORDS_MAX {
            let room = plan.size_bytes - taken;
            source.limit_records(crate::http::RECORDS_MAX - raw.len());
            let read = source.peek(room)?;
            let shard = source.shard();
            let Some(first) = read.first() else {
                break;
            };
            if !raw.is_empty() && first.data.len() as u64 > room {
                break;
            }
            source.take();
            for r in &read {
                taken += r.data.len() as u64;
                let arrival = r.arrival_timestamp_ms;
                oldest = Some(oldest.map_or(arrival, |o: u64| o.min(arrival)));
                for (part, data) in user_records(plan, r).into_iter().enumerate() {
                    raw.push((arrival, data.to_vec()));
                    match &plan.pipeline {
                        None => records.push(data.to_vec()),
                        Some(p) if p.lambda.is_some() => match p.pre(data) {
                            Ok(pre) => {
                                for record in pre {
                                    lambda_bytes += record.len() as u64;
                                    lambda_items.push((
                                        r.arrival_timestamp_ms,
                                        record,
                                        meta(shard, r, part),
                                    ));
                                }
                                if lambda_bytes >= p.lambda.as_ref().map_or(0, |l| l.buffer_bytes) {
                                    lambda_bytes = 0;
                                    self.transform_for_http(
                                        plan,
                                        p,
                                        &mut lambda_items,
                                        &mut records,
                                        &mut failed,
                                    )?;
                                }
                            }
                            Err(failure) => {
                                failed.push((r.arrival_timestamp_ms, data.to_vec(), failure))
                            }
                        },
                        Some(p) => {
                            processed.clear();
                            match p.apply(data, &mut processed) {
                                Ok(()) => records.append(&mut processed),
                                Err(failure) => {
                                    failed.push((r.arrival_timestamp_ms, data.to_vec(), failure))
                                }
                            }
                        }
                    }
                }
            }
        }
        if let Some(p) = plan.pipeline.as_ref().filter(|p| p.lambda.is_some()) {
            self.transform_for_http(plan, p, &mut lambda_items, &mut records, &mut failed)?;
        }
        let Some(oldest_ms) = oldest else {
            return Ok(None);
        };
        Ok(Some(HttpPending {
            request_id: uuid(),
            records,
            raw,
            failed,
            oldest_ms,
            first_attempt_ms: 0,
            attempts: 0,
            next_attempt_ms: 0,
            // The caller's source knows.
            after: Position {
                stream_created_ms: 0,
                next: 0,
                shards: Default::default(),
            },
        }))
    }

    /// The Lambda's answer for each of `items` (arrival, data).
    fn invoke(
        &self,
        plan: &Plan,
        lambda: &crate::process::Lambda,
        items: &[LambdaItem],
    ) -> Result<Vec<crate::lambda::Outcome>, String> {
        let url = self.lambda_url(&lambda.arn).ok_or_else(|| {
            format!(
                "Lambda function {} is not mapped to a URL in Sluice's configuration",
                lambda.arn
            )
        })?;
        let sent: Vec<crate::lambda::Sent<'_>> = items
            .iter()
            .enumerate()
            .map(|(i, (arrival, data, kinesis))| crate::lambda::Sent {
                id: format!("{i}"),
                arrival_ms: *arrival,
                data,
                kinesis: kinesis.as_deref(),
            })
            .collect();
        Ok(crate::lambda::invoke(
            url,
            lambda,
            &plan.arn,
            plan.source_arn.as_deref(),
            &plan.region,
            &sent,
            self.http_timeout,
        ))
    }

    /// Sends `items` to an HTTP endpoint delivery's Lambda: what it keeps,
    /// through the stages after it, into `records`; what fails into
    /// `failed`.
    fn transform_for_http(
        &self,
        plan: &Plan,
        p: &crate::process::Pipeline,
        items: &mut Vec<LambdaItem>,
        records: &mut Vec<Vec<u8>>,
        failed: &mut Vec<(u64, Vec<u8>, crate::process::Failure)>,
    ) -> Result<(), String> {
        if items.is_empty() {
            return Ok(());
        }
        let lambda = p.lambda.as_ref().expect("a Lambda pipeline");
        let outcomes = self.invoke(plan, lambda, items)?;
        let (mut out, mut keys) = (Vec::new(), Vec::new());
        for ((arrival, data, _), outcome) in items.drain(..).zip(outcomes) {
            match outcome {
                crate::lambda::Outcome::Dropped => {}
                crate::lambda::Outcome::Failed(failure) => failed.push((arrival, data, failure)),
                crate::lambda::Outcome::Ok(transformed, _) => {
                    out.clear();
                    keys.clear();
                    match p.post(vec![transformed], None, &mut out, &mut keys) {
                        Ok(()) => records.append(&mut out),
                        Err(failure) => failed.push((arrival, data, failure)),
                    }
                }
            }
        }
        Ok(())
    }

    /// Sends `items` (arrival, data after the stages before a Lambda) to
    /// the Lambda, then the stages after it, into `batch`.
    fn transform(
        &self,
        plan: &Plan,
        p: &crate::process::Pipeline,
        items: &mut Vec<LambdaItem>,
        batch: &mut ObjectBatch<'_>,
        query: Option<&crate::partition::Query>,
    ) -> Result<(), String> {
        if items.is_empty() {
            return Ok(());
        }
        let lambda = p.lambda.as_ref().expect("a Lambda pipeline");
        let outcomes = self.invoke(plan, lambda, items)?;
        let now = self.now_ms();
        let (mut out, mut keys) = (Vec::new(), Vec::new());
        for ((arrival, data, _), outcome) in items.drain(..).zip(outcomes) {
            match outcome {
                crate::lambda::Outcome::Dropped => {}
                crate::lambda::Outcome::Failed(failure) => {
                    batch.fail(arrival, &data, &failure, 1 + lambda.retries, now)?
                }
                crate::lambda::Outcome::Ok(transformed, lambda_keys) => {
                    out.clear();
                    keys.clear();
                    if let Err(failure) = p.post(vec![transformed], query, &mut out, &mut keys) {
                        batch.fail(arrival, &data, &failure, 1, now)?;
                        continue;
                    }
                    for (i, record) in out.iter().enumerate() {
                        if !plan.partitioned {
                            batch.write(record, arrival)?;
                            continue;
                        }
                        let none = crate::partition::Keys::new();
                        let from_query = keys.get(i).unwrap_or(&none);
                        let prefix = crate::partition::substitute_both(
                            plan.prefix.as_deref().unwrap_or_default(),
                            from_query,
                            &lambda_keys,
                        );
                        batch.write_partitioned(prefix, record, &data, arrival, now)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// One look at a delivery stream reading a Kinesis stream.
    fn step_kinesis(
        &self,
        scope: &Scope,
        name: &str,
        plan: &Plan,
        source: &Scope,
        stream: &str,
        worker: &Worker,
    ) -> Step {
        let idle = Step::Wait {
            log: None,
            cursor: None,
            deadline_ms: None,
        };
        let k = key(scope, name);
        if plan.http.is_some() {
            // A request being retried goes first.
            let mut pending = worker.pending.lock().unwrap_or_else(|p| p.into_inner());
            if pending.is_some() {
                return self.send(&k, name, plan, worker, &mut pending, None);
            }
        }
        let position = match self.positions.get(&k) {
            Some(p) => p,
            // Made before the source existed (or the position was lost):
            // from LATEST now.
            None => match crate::source::start_position(&self.engine, source, stream) {
                Some(p) => {
                    if let Err(e) = self.positions.save(&k, Some(p.clone())) {
                        return Step::Failed(format!("saving its read position failed: {e}"));
                    }
                    p
                }
                None => return idle,
            },
        };
        let mut shards =
            match crate::source::ShardsSource::open(&self.engine, source, stream, &position) {
                Ok(Some(s)) => s,
                // The source stream is gone: nothing more will come.
                Ok(None) => return idle,
                Err(e) => return Step::Failed(e),
            };
        let (records, bytes, oldest) = match shards.pending(plan.size_bytes) {
            Ok(p) => p,
            Err(e) => return Step::Failed(e),
        };
        let now = self.now_ms();
        let deadline_ms = oldest.map(|o| o.saturating_add(plan.interval_ms));
        self.stats.waiting(&k, oldest);
        let due =
            records > 0 && (bytes >= plan.size_bytes || deadline_ms.is_some_and(|d| now >= d));
        if !due {
            // Shards read to their end let their children be read.
            let next = shards.position(position.clone());
            if next != position {
                if let Err(e) = self.positions.save(&k, Some(next)) {
                    return Step::Failed(format!("saving its read position failed: {e}"));
                }
                return Step::Delivered;
            }
            return Step::Wait {
                log: None,
                cursor: None,
                deadline_ms,
            };
        }
        if plan.http.is_some() {
            let mut pending = worker.pending.lock().unwrap_or_else(|p| p.into_inner());
            return match self.gather(plan, &mut shards) {
                Ok(Some(mut p)) => {
                    p.after = shards.position(position);
                    *pending = Some(p);
                    self.send(&k, name, plan, worker, &mut pending, None)
                }
                // Retention removed what was counted: go on after it.
                Ok(None) => match self.positions.save(&k, Some(shards.position(position))) {
                    Ok(()) => Step::Delivered,
                    Err(e) => Step::Failed(format!("saving its delivery position failed: {e}")),
                },
                Err(e) => Step::Failed(e),
            };
        }
        match self.deliver(name, plan, &mut shards) {
            Ok(delivered) => {
                if worker.stop.load(Ordering::SeqCst) {
                    return Step::Gone;
                }
                let saved = self.positions.save(&k, Some(shards.position(position)));
                if let Some(delivered) = delivered {
                    self.stats.delivered(&k, &delivered, now);
                }
                match saved {
                    Ok(()) => Step::Delivered,
                    Err(e) => Step::Failed(format!("saving its delivery position failed: {e}")),
                }
            }
            Err(e) => Step::Failed(e),
        }
    }

    /// Writes one object from `from`: records up to the buffer size (at
    /// least one), processed if the configuration says so; records that
    /// fail processing go to an error object beside it. Returns where the
    /// next delivery starts, and what was delivered (nothing if retention
    /// removed the records counted).
    fn deliver(
        &self,
        name: &str,
        plan: &Plan,
        source: &mut dyn crate::source::Source,
    ) -> Result<Option<Delivered>, String> {
        let root = self.buckets_root();
        let mut batch = ObjectBatch::new(self, plan);
        let mut taken = 0u64;
        let mut records = 0u64;
        let mut oldest = None;
        let mut processed = Vec::new();
        let mut partition_keys = Vec::new();
        // Records waiting for a Lambda invocation, and their bytes.
        let mut lambda_items: Vec<LambdaItem> = Vec::new();
        let mut lambda_bytes = 0u64;
        // Compiled for this delivery (jaq's values are not Send).
        let query = match plan
            .pipeline
            .as_ref()
            .and_then(|p| p.metadata_query.as_deref())
        {
            Some(q) if plan.partitioned => Some(crate::partition::Query::compile(q)?),
            _ => None,
        };
        let read = (|| {
            while taken < plan.size_bytes {
                let room = plan.size_bytes - taken;
                let read = source.peek(room)?;
                let shard = source.shard();
                let Some(first) = read.first() else {
                    break;
                };
                // A read returns its first record even when it is larger
                // than asked: it waits for the next object.
                if records > 0 && first.data.len() as u64 > room {
                    break;
                }
                source.take();
                for r in &read {
                    batch.back_up(&r.data, r.arrival_timestamp_ms)?;
                    taken += r.data.len() as u64;
                    records += 1;
                    oldest = Some(oldest.map_or(r.arrival_timestamp_ms, |o: u64| {
                        o.min(r.arrival_timestamp_ms)
                    }));
                    for (part, data) in user_records(plan, r).into_iter().enumerate() {
                        match &plan.pipeline {
                            None => batch.write(data, r.arrival_timestamp_ms)?,
                            Some(p) if p.lambda.is_some() => match p.pre(data) {
                                Ok(records) => {
                                    for record in records {
                                        lambda_bytes += record.len() as u64;
                                        lambda_items.push((
                                            r.arrival_timestamp_ms,
                                            record,
                                            meta(shard, r, part),
                                        ));
                                    }
                                    let limit = p.lambda.as_ref().map_or(0, |l| l.buffer_bytes);
                                    if lambda_bytes >= limit {
                                        lambda_bytes = 0;
                                        self.transform(
                                            plan,
                                            p,
                                            &mut lambda_items,
                                            &mut batch,
                                            query.as_ref(),
                                        )?;
                                    }
                                }
                                Err(failure) => batch.fail(
                                    r.arrival_timestamp_ms,
                                    data,
                                    &failure,
                                    1,
                                    self.now_ms(),
                                )?,
                            },
                            Some(p) => {
                                processed.clear();
                                partition_keys.clear();
                                let applied = p.apply_with(
                                    data,
                                    query.as_ref(),
                                    &mut processed,
                                    &mut partition_keys,
                                );
                                match applied {
                                    Ok(()) if query.is_some() => {
                                        for (out, keys) in processed.iter().zip(&partition_keys) {
                                            let prefix = crate::partition::substitute(
                                                plan.prefix.as_deref().unwrap_or_default(),
                                                keys,
                                            );
                                            batch.write_partitioned(
                                                prefix,
                                                out,
                                                data,
                                                r.arrival_timestamp_ms,
                                                self.now_ms(),
                                            )?;
                                        }
                                    }
                                    Ok(()) => {
                                        for out in &processed {
                                            batch.write(out, r.arrival_timestamp_ms)?;
                                        }
                                    }
                                    Err(failure) => batch.fail(
                                        r.arrival_timestamp_ms,
                                        data,
                                        &failure,
                                        1,
                                        self.now_ms(),
                                    )?,
                                }
                            }
                        }
                    }
                }
            }
            if let Some(p) = plan.pipeline.as_ref().filter(|p| p.lambda.is_some()) {
                self.transform(plan, p, &mut lambda_items, &mut batch, query.as_ref())?;
            }
            Ok::<_, String>(())
        })();
        if let Err(e) = read {
            batch.abandon();
            return Err(e);
        }
        let Some(oldest) = oldest else {
            batch.abandon();
            return Ok(None);
        };
        let (objects, stored) = batch.finish(name, &root)?;
        tracing::debug!("firehose: {name} delivered {records} records in {objects} objects");
        Ok(Some(Delivered {
            records,
            bytes: stored,
            oldest_ms: oldest,
        }))
    }
}

/// The objects of one delivery: the records (processed), and per error
/// output type the records that failed processing, as JSON lines.
struct ObjectBatch<'a> {
    firehose: &'a Firehose,
    plan: &'a Plan,
    main: Option<(ObjectWriter, u64)>,
    /// With dynamic partitioning: an object per partition (its prefix with
    /// the keys in), at most [`crate::partition::ACTIVE_PARTITIONS_MAX`].
    partitions: Vec<(String, ObjectWriter, u64)>,
    errors: Vec<(&'static str, ObjectWriter, u64)>,
    /// The source records, for the backup bucket.
    backup: Option<(ObjectWriter, u64)>,
}

impl<'a> ObjectBatch<'a> {
    fn new(firehose: &'a Firehose, plan: &'a Plan) -> Self {
        Self {
            firehose,
            plan,
            main: None,
            partitions: Vec::new(),
            errors: Vec::new(),
            backup: None,
        }
    }

    /// One record into its partition's object; `Ok(false)` if that would
    /// be one partition more than AWS allows at once.
    fn write_partition(
        &mut self,
        prefix: String,
        data: &[u8],
        arrival_ms: u64,
    ) -> Result<bool, String> {
        let i = match self.partitions.iter().position(|(p, _, _)| *p == prefix) {
            Some(i) => i,
            None if self.partitions.len() >= crate::partition::ACTIVE_PARTITIONS_MAX => {
                return Ok(false)
            }
            None => {
                let writer = self.start_main()?;
                self.partitions.push((prefix, writer, arrival_ms));
                self.partitions.len() - 1
            }
        };
        let (_, writer, _) = &mut self.partitions[i];
        if let Some(failure) = put(writer, data)? {
            self.fail_conversion(arrival_ms, data, failure)?;
            return Ok(true);
        }
        let (_, _, oldest) = &mut self.partitions[i];
        *oldest = (*oldest).min(arrival_ms);
        Ok(true)
    }

    /// An object of records: Parquet with data format conversion, else
    /// compressed as configured.
    fn start_main(&self) -> Result<ObjectWriter, String> {
        match &self.plan.conversion {
            Some(c) => ObjectWriter::start_parquet(
                self.firehose.storage.clone(),
                &self.firehose.buckets_root(),
                c.clone(),
            )
            .map_err(|e| format!("starting an object failed: {e}")),
            None => self.start(self.plan.compression),
        }
    }

    /// A source record, as it came, into the backup object (if the plan
    /// backs records up).
    fn back_up(&mut self, data: &[u8], arrival_ms: u64) -> Result<(), String> {
        let Some(backup) = &self.plan.backup else {
            return Ok(());
        };
        if self.backup.is_none() {
            self.backup = Some((self.start(backup.compression)?, arrival_ms));
        }
        let (writer, oldest) = self.backup.as_mut().expect("started above");
        *oldest = (*oldest).min(arrival_ms);
        writer
            .write(data)
            .map_err(|e| format!("writing a backup object failed: {e}"))
    }

    /// A record that does not convert, to `format-conversion-failed` as
    /// AWS's "Handling errors for data format conversion" shows it.
    fn fail_conversion(&mut self, arrival_ms: u64, data: &[u8], why: String) -> Result<(), String> {
        use base64::Engine as _;
        let table = self
            .plan
            .conversion
            .as_ref()
            .map_or(serde_json::Value::Null, |c| c.table.clone());
        let record = serde_json::json!({
            "attemptsMade": 1,
            "arrivalTimestamp": arrival_ms,
            "lastErrorCode": "DataFormatConversion.MalformedData",
            "lastErrorMessage": why,
            "attemptEndingTimestamp": self.firehose.now_ms(),
            "rawData": base64::engine::general_purpose::STANDARD.encode(data),
            "dataCatalogTable": table,
        });
        self.error_line("format-conversion-failed", arrival_ms, record)
    }

    fn start(&self, compression: f::CompressionFormat) -> Result<ObjectWriter, String> {
        ObjectWriter::start(
            self.firehose.storage.clone(),
            &self.firehose.buckets_root(),
            compression,
        )
        .map_err(|e| format!("starting an object failed: {e}"))
    }

    /// One record (processed) into the object; `arrival_ms` names it.
    fn write(&mut self, data: &[u8], arrival_ms: u64) -> Result<(), String> {
        if self.main.is_none() {
            self.main = Some((self.start_main()?, arrival_ms));
        }
        let (writer, _) = self.main.as_mut().expect("started above");
        if let Some(failure) = put(writer, data)? {
            return self.fail_conversion(arrival_ms, data, failure);
        }
        // Named by its oldest record (shards of a source interleave).
        let (_, oldest) = self.main.as_mut().expect("started above");
        *oldest = (*oldest).min(arrival_ms);
        Ok(())
    }

    /// A processed record into the partition `prefix` names (its keys
    /// filled in), or, if it has no partition (a key missing, or one
    /// partition more than AWS allows), its `raw` data to the error output.
    fn write_partitioned(
        &mut self,
        prefix: Result<String, crate::process::Failure>,
        record: &[u8],
        raw: &[u8],
        arrival_ms: u64,
        now_ms: u64,
    ) -> Result<(), String> {
        let failure = match prefix {
            Ok(prefix) => {
                if self.write_partition(prefix, record, arrival_ms)? {
                    return Ok(());
                }
                crate::process::Failure {
                    output_type: "partitioning-failed",
                    code: "DynamicPartitioning.ActivePartitionsLimitExceeded",
                    message: format!(
                        "More than {} partitions are active.",
                        crate::partition::ACTIVE_PARTITIONS_MAX
                    ),
                }
            }
            Err(failure) => failure,
        };
        self.fail(arrival_ms, raw, &failure, 1, now_ms)
    }

    /// A record that failed processing, as AWS writes it to the error
    /// output: a JSON line with the attempt, the arrival, the error and
    /// the record as it arrived (base64).
    fn fail(
        &mut self,
        arrival_ms: u64,
        data: &[u8],
        failure: &crate::process::Failure,
        attempts: u32,
        now_ms: u64,
    ) -> Result<(), String> {
        use base64::Engine as _;
        let mut record = serde_json::json!({
            "attemptsMade": attempts,
            "arrivalTimestamp": arrival_ms,
            "errorCode": failure.code,
            "errorMessage": failure.message,
            "attemptEndingTimestamp": now_ms,
            "rawData": base64::engine::general_purpose::STANDARD.encode(data),
        });
        if let (Some(arn), true) = (self.plan.lambda_arn(), failure.code.starts_with("Lambda.")) {
            // AWS's Lambda failures name the function.
            record["lambdaArn"] = serde_json::Value::String(arn.to_owned());
        }
        self.error_line(failure.output_type, arrival_ms, record)
    }

    /// A JSON line into the error output of `output_type`.
    fn error_line(
        &mut self,
        output_type: &'static str,
        arrival_ms: u64,
        record: serde_json::Value,
    ) -> Result<(), String> {
        let i = match self.errors.iter().position(|(t, _, _)| *t == output_type) {
            Some(i) => i,
            None => {
                let writer = self.start(f::CompressionFormat::Uncompressed)?;
                self.errors.push((output_type, writer, arrival_ms));
                self.errors.len() - 1
            }
        };
        let mut line = serde_json::to_vec(&record).expect("JSON values serialize");
        line.push(b'\n');
        let (_, writer, oldest) = &mut self.errors[i];
        *oldest = (*oldest).min(arrival_ms);
        writer
            .write(&line)
            .map_err(|e| format!("writing an error object failed: {e}"))
    }

    fn abandon(self) {
        if let Some((w, _)) = self.main {
            w.abandon();
        }
        for (_, w, _) in self.partitions {
            w.abandon();
        }
        for (_, w, _) in self.errors {
            w.abandon();
        }
        if let Some((w, _)) = self.backup {
            w.abandon();
        }
    }

    /// Names and places every object, durably. Returns how many there
    /// were and their bytes as stored.
    fn finish(self, name: &str, root: &std::path::Path) -> Result<(u64, u64), String> {
        let plan = self.plan;
        let durable = &self.firehose.durable_dirs;
        let mut named = Vec::new();
        if let Some((writer, oldest)) = self.main {
            let at = keys::local(oldest, plan.zone.as_ref());
            let key = keys::evaluate(plan.prefix.as_deref(), at, None, &mut random_string).map(
                |prefix| prefix + &keys::suffix(name, plan.version, at, &uuid(), &plan.extension),
            );
            named.push((writer, plan.bucket.as_str(), key));
        }
        for (prefix, writer, oldest) in self.partitions {
            let at = keys::local(oldest, plan.zone.as_ref());
            let key = keys::evaluate_with(Some(&prefix), at, None, &mut random_string, false).map(
                |prefix| prefix + &keys::suffix(name, plan.version, at, &uuid(), &plan.extension),
            );
            named.push((writer, plan.bucket.as_str(), key));
        }
        for (output_type, writer, oldest) in self.errors {
            let at = keys::local(oldest, plan.zone.as_ref());
            // Without an ErrorOutputPrefix, AWS writes under
            // `<error-output-type>/yyyy/MM/dd/HH/`.
            let prefix = match plan.error_prefix.as_deref().filter(|p| !p.is_empty()) {
                Some(p) => keys::evaluate(Some(p), at, Some(output_type), &mut random_string),
                None => {
                    keys::format_time(keys::DEFAULT_TIME, at).map(|t| format!("{output_type}/{t}"))
                }
            };
            let key =
                prefix.map(|prefix| prefix + &keys::suffix(name, plan.version, at, &uuid(), ""));
            named.push((writer, plan.bucket.as_str(), key));
        }
        if let (Some((writer, oldest)), Some(backup)) = (self.backup, &plan.backup) {
            let at = keys::local(oldest, plan.zone.as_ref());
            let key = keys::evaluate(backup.prefix.as_deref(), at, None, &mut random_string).map(
                |prefix| prefix + &keys::suffix(name, plan.version, at, &uuid(), &backup.extension),
            );
            named.push((writer, backup.bucket.as_str(), key));
        }
        let mut placed = Vec::new();
        for (writer, bucket, key) in named {
            let key = key.map_err(|e| format!("its prefix does not evaluate: {e}"));
            let place = match self.firehose.remotes.client(bucket) {
                None => key
                    .and_then(|k| objects::path_of(root, bucket, &k))
                    .map(Place::Dir),
                Some(client) => client.and_then(|client| {
                    key.and_then(|k| crate::buckets::key_of(&k))
                        .map(|k| Place::Remote(client, k))
                }),
            };
            placed.push((writer, place));
        }
        if let Some(e) = placed.iter().find_map(|(_, p)| p.as_ref().err()).cloned() {
            for (w, _) in placed {
                w.abandon();
            }
            return Err(e);
        }
        let (mut count, mut bytes) = (0, 0);
        let mut placed = placed.into_iter();
        while let Some((writer, path)) = placed.next() {
            let finished = match path.expect("checked above") {
                Place::Dir(path) => writer.finish(&path, durable),
                Place::Remote(client, key) => writer.upload(&client, &key),
            };
            match finished {
                Ok(size) => {
                    count += 1;
                    bytes += size;
                }
                Err(e) => {
                    for (w, _) in placed {
                        w.abandon();
                    }
                    return Err(format!("writing an object failed: {e}"));
                }
            }
        }
        Ok((count, bytes))
    }
}

/// Writes a record into `writer`: converted to rows if it is Parquet.
/// `Ok(Some(why))` if the record does not convert (nothing written).
fn put(writer: &mut ObjectWriter, data: &[u8]) -> Result<Option<String>, String> {
    let written = if writer.is_parquet() {
        match writer.convert(data) {
            Ok(written) => written,
            Err(why) => return Ok(Some(why)),
        }
    } else {
        writer.write(data)
    };
    written
        .map(|()| None)
        .map_err(|e| format!("writing an object failed: {e}"))
}

/// The records `r` holds: a Kinesis source's KPL aggregated record is its
/// user records; anything else is itself.
fn user_records<'a>(plan: &Plan, r: &'a sluice_log::Record) -> Vec<&'a [u8]> {
    plan.kinesis
        .as_ref()
        .and_then(|_| sluice_client::kpl::deaggregate(&r.data))
        .map(|users| users.into_iter().map(|u| u.data).collect())
        .unwrap_or_else(|| vec![&r.data[..]])
}

/// A record waiting for a Lambda invocation: arrival, data, and where a
/// Kinesis source had it.
type LambdaItem = (u64, Vec<u8>, Option<Arc<crate::lambda::KinesisMeta>>);

/// The `kinesisRecordMetadata` of user record `part` of `r`, read from
/// shard `shard` of a Kinesis source.
fn meta(
    shard: Option<u32>,
    r: &sluice_log::Record,
    part: usize,
) -> Option<Arc<crate::lambda::KinesisMeta>> {
    let shard = shard?;
    Some(Arc::new(crate::lambda::KinesisMeta {
        shard_id: sluice_model::ShardId(shard).to_string(),
        partition_key: String::from_utf8_lossy(&r.partition_key).into_owned(),
        sequence_number: sluice_model::SequenceNumber(r.sequence).to_string(),
        subsequence_number: part as u64,
        arrival_ms: r.arrival_timestamp_ms,
    }))
}

/// Where an object goes.
enum Place {
    /// A file under the data directory.
    Dir(std::path::PathBuf),
    /// A key of a bucket on an S3-compatible endpoint.
    Remote(
        std::sync::Arc<object_store::aws::AmazonS3>,
        object_store::path::Path,
    ),
}

/// What one delivery wrote.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Delivered {
    pub records: u64,
    /// Bytes of the object as stored.
    pub bytes: u64,
    pub oldest_ms: u64,
}

/// A delivery stream's task.
async fn run(f: Arc<Firehose>, scope: Scope, name: String, me: Arc<Worker>) {
    let mut wake = f.deliveries.wake.subscribe();
    let mut buffer = Buffer::default();
    let mut failures = 0u32;
    // Where the last wait for data was, and whether data ended it: data
    // that wakes the task but is not there (a poisoned log) must not spin.
    let mut last_wait: (Option<Cursor>, bool) = (None, false);
    loop {
        if me.stop.load(Ordering::SeqCst) || f.engine.stopping.load(Ordering::Relaxed) {
            break;
        }
        let generation = *wake.borrow_and_update();
        let looked = {
            let (f, scope, name) = (f.clone(), scope.clone(), name.clone());
            let mut b = std::mem::take(&mut buffer);
            let me = me.clone();
            tokio::task::spawn_blocking(move || {
                let step = f.step(&scope, &name, &mut b, &me);
                (step, b)
            })
            .await
        };
        let Ok((step, b)) = looked else { break };
        buffer = b;
        let (log, cursor, deadline_ms) = match step {
            Step::Gone => break,
            Step::Delivered => {
                if failures > 0 {
                    tracing::info!(
                        "firehose: delivering {name} succeeded again after {failures} failed attempts"
                    );
                }
                failures = 0;
                continue;
            }
            Step::Wait {
                log,
                cursor,
                deadline_ms,
            } => {
                failures = 0;
                (log, cursor, deadline_ms)
            }
            Step::Failed(e) => {
                failures = failures.saturating_add(1);
                f.stats.failed(&key(&scope, &name));
                sluice_streams::health::warn_limited(
                    "firehose-delivery",
                    format_args!(
                        "firehose: delivering {name} failed (attempt {failures}, retried): {e}"
                    ),
                );
                me.seen.store(generation, Ordering::SeqCst);
                let backoff = Duration::from_millis(100u64 << failures.min(9)).min(RETRY_MAX);
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = wake.changed() => {}
                }
                continue;
            }
        };
        me.seen.store(generation, Ordering::SeqCst);
        // Real time until the deadline (a frozen clock's deadline comes
        // with a wake-up when the clock is moved), looked at again at
        // least every second.
        let now = f.now_ms();
        let sleep = deadline_ms.map_or(1000, |d| d.saturating_sub(now).clamp(1, 1000));
        let spinning = last_wait == (cursor, true);
        let data = async {
            match (&log, cursor) {
                (Some(log), Some(cursor)) if !spinning => log.data_after(cursor).await,
                _ => std::future::pending().await,
            }
        };
        let by_data = tokio::select! {
            () = data => true,
            _ = wake.changed() => false,
            () = tokio::time::sleep(Duration::from_millis(sleep)) => false,
        };
        last_wait = (cursor, by_data);
    }
    me.seen.store(u64::MAX, Ordering::SeqCst);
    let mut workers = f.deliveries.workers();
    if workers
        .get(&key(&scope, &name))
        .is_some_and(|w| Arc::ptr_eq(w, &me))
    {
        workers.remove(&key(&scope, &name));
    }
}
