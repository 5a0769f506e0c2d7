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
    compression: f::CompressionFormat,
    extension: String,
    size_bytes: u64,
    interval_ms: u64,
    version: u64,
}

/// The plan for `stream`, or why Sluice does not deliver it yet (its
/// records are then refused, never accepted and left undelivered).
pub(crate) fn plan(stream: &DeliveryStream) -> Result<Plan, String> {
    if stream.kind != f::DeliveryStreamType::DirectPut {
        return Err("reading a Kinesis stream source is not built yet".to_owned());
    }
    let (bucket_arn, prefix, hints, compression, extension) = match &stream.destination {
        Destination::S3(c) => (
            &c.bucket_arn,
            &c.prefix,
            &c.buffering_hints,
            c.compression_format,
            None,
        ),
        Destination::ExtendedS3(c) => {
            if c.processing_configuration.as_ref().is_some_and(|p| {
                p.enabled != Some(false) && !p.processors.as_deref().unwrap_or_default().is_empty()
            }) {
                return Err(
                    "record processing (ProcessingConfiguration) is not built yet".to_owned(),
                );
            }
            if c.data_format_conversion_configuration
                .as_ref()
                .is_some_and(|d| d.enabled != Some(false))
            {
                return Err("data format conversion is not built yet".to_owned());
            }
            if c.dynamic_partitioning_configuration
                .as_ref()
                .is_some_and(|d| d.enabled == Some(true))
            {
                return Err("dynamic partitioning is not built yet".to_owned());
            }
            if c.s3_backup_mode == Some(f::S3BackupMode::Enabled) {
                return Err("S3 backup of source records is not built yet".to_owned());
            }
            if c.custom_time_zone
                .as_deref()
                .is_some_and(|z| !z.is_empty() && z != "UTC")
            {
                return Err("CustomTimeZone other than UTC is not built yet".to_owned());
            }
            (
                &c.bucket_arn,
                &c.prefix,
                &c.buffering_hints,
                c.compression_format,
                c.file_extension.as_deref(),
            )
        }
        Destination::HttpEndpoint(_) => {
            return Err("HTTP endpoint delivery is not built yet".to_owned())
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
    let hints = crate::describe::buffering(hints);
    Ok(Plan {
        bucket,
        prefix: prefix.clone(),
        compression,
        extension: objects::extension(compression, extension),
        size_bytes: hints.size_in_mbs.unwrap_or(5).max(1) as u64 * (1 << 20),
        interval_ms: hints.interval_in_seconds.unwrap_or(300).max(0) as u64 * 1000,
        version: stream.version,
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
        let wanted: Vec<(Scope, String)> = self
            .registry()
            .all()
            .filter(|s| s.kind == f::DeliveryStreamType::DirectPut)
            .map(|s| (s.scope(), s.name.clone()))
            .collect();
        let wanted_keys: std::collections::HashSet<String> =
            wanted.iter().map(|(s, n)| key(s, n)).collect();
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
                    ..saved
                };
                if let Err(e) = self.positions.save(&k, Some(moved)) {
                    tracing::warn!("firehose: moving {name}'s delivery position failed: {e}");
                }
            }
        }
        if let Err(e) = self.positions.retain(|k| wanted_keys.contains(k)) {
            tracing::warn!(
                "firehose: forgetting positions of deleted delivery streams failed: {e}"
            );
        }
        let _ = self.deliveries.runtime.set((runtime, Arc::downgrade(self)));
        for (scope, name) in wanted {
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
                Some(stream) => plan(stream),
            }
        };
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
        if !due {
            return Step::Wait {
                log: Some(log),
                cursor: buffer.scanned,
                deadline_ms,
            };
        }
        match self.deliver(name, &plan, &log, from) {
            Ok((next, delivered)) => {
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

    /// Writes one object from `from`: records up to the buffer size (at
    /// least one). Returns where the next delivery starts, and what was
    /// delivered (nothing if retention removed the records counted).
    fn deliver(
        &self,
        name: &str,
        plan: &Plan,
        log: &ShardLog,
        from: Cursor,
    ) -> Result<(Cursor, Option<Delivered>), String> {
        let root = self.buckets_root();
        let mut writer = ObjectWriter::start(self.storage.clone(), &root, plan.compression)
            .map_err(|e| format!("starting an object failed: {e}"))?;
        let mut cursor = from;
        let mut records = 0u64;
        let mut oldest = None;
        let read = (|| {
            while writer.raw_bytes < plan.size_bytes {
                let room = plan.size_bytes - writer.raw_bytes;
                let batch = log
                    .read(
                        cursor,
                        ReadLimits {
                            max_records: 10_000,
                            max_bytes: room.min(READ_BYTES as u64) as usize,
                        },
                    )
                    .map_err(|e| format!("reading its records failed: {e}"))?;
                let Some(first) = batch.records.first() else {
                    cursor = batch.next;
                    break;
                };
                // A read returns its first record even when it is larger
                // than asked: it waits for the next object.
                if records > 0 && first.data.len() as u64 > room {
                    break;
                }
                for r in &batch.records {
                    writer
                        .write(&r.data)
                        .map_err(|e| format!("writing an object failed: {e}"))?;
                    records += 1;
                    oldest.get_or_insert(r.arrival_timestamp_ms);
                }
                cursor = batch.next;
            }
            Ok::<_, String>(())
        })();
        if let Err(e) = read {
            writer.abandon();
            return Err(e);
        }
        let Some(oldest) = oldest else {
            writer.abandon();
            return Ok((cursor, None));
        };
        let at = keys::Utc::from_millis(oldest);
        let object_key = keys::evaluate(plan.prefix.as_deref(), at, None, &mut random_string)
            .map(|prefix| prefix + &keys::suffix(name, plan.version, at, &uuid(), &plan.extension))
            .map_err(|e| format!("its prefix does not evaluate: {e}"));
        let path = object_key.and_then(|k| objects::path_of(&root, &plan.bucket, &k));
        let path = match path {
            Ok(p) => p,
            Err(e) => {
                writer.abandon();
                return Err(e);
            }
        };
        let raw = writer.raw_bytes;
        let stored = writer
            .finish(&path, &self.durable_dirs)
            .map_err(|e| format!("writing an object failed: {e}"))?;
        tracing::debug!(
            "firehose: {name} delivered {records} records ({raw} bytes) to {}",
            path.display()
        );
        Ok((
            cursor,
            Some(Delivered {
                records,
                bytes: stored,
                oldest_ms: oldest,
            }),
        ))
    }
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
