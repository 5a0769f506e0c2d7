//! The producer: user records in, PutRecords requests out.
//!
//! - Records are batched into PutRecords requests (at most 500 entries and
//!   5 MiB), each sent when full or when its oldest record has waited the
//!   linger time, over `connections` connections with one request each.
//! - Failed entries are retried with exponential backoff and full jitter
//!   until the record's time to live; throttling and 5xx answers and lost
//!   connections are retried too, refusals (validation, no such stream) are
//!   not.
//! - Ordering per partition key (`ordered`, the default): a key has at most
//!   one entry in flight, so a retried record is never overtaken by a later
//!   one of its key. Without aggregation that is one record per key per round
//!   trip; with aggregation the entry holds as many of the key's records as
//!   fit.
//! - Aggregation (`aggregate`) packs user records bound for one shard into KPL
//!   aggregated records ([`crate::kpl`]), as the KPL does: the shard map comes
//!   from ListShards, the aggregate carries the partition key of its first
//!   record and, as explicit hash key, that record's hash key, so it lands on
//!   the shard its records hash to. An aggregate of one record is sent as the
//!   plain record.
//! - Memory is bounded: [`Producer::send`] waits while `max_buffered_bytes`
//!   of records are unacknowledged (backpressure).
//!
//! Each record's [`Receipt`] resolves when the stream has it (shard,
//! sequence number, and its index in the aggregate) or when it failed.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use md5::{Digest, Md5};
use sluice_aws::kinesis as k;
use sluice_aws::types::Blob;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::api::{Api, Error, StreamRef};
use crate::conn::Target;
use crate::kpl::Aggregator;

/// The most entries and bytes (data and partition keys) of one PutRecords.
pub const MAX_BATCH_RECORDS: usize = 500;
pub const MAX_BATCH_BYTES: usize = 5 << 20;
/// A record's default maximum (data and partition key), 1 MiB.
pub const MAX_RECORD_BYTES: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// The stream's name or ARN.
    pub stream: String,
    /// How long a record may wait for others to fill its request.
    pub linger: Duration,
    /// Connections, each with one request in flight.
    pub connections: usize,
    /// Unacknowledged bytes before [`Producer::send`] waits.
    pub max_buffered_bytes: usize,
    /// KPL-aggregate records bound for one shard.
    pub aggregate: bool,
    /// Keep each partition key's records in order, also under retries.
    pub ordered: bool,
    /// How long a record is retried before it fails; `None`: until it is in.
    pub record_ttl: Option<Duration>,
    /// The stream's largest record (data and partition key).
    pub max_record_bytes: usize,
    /// The first retry's backoff, doubled for each further retry up to
    /// `max_backoff`, with full jitter.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// A request's most entries and bytes (at most PutRecords' 500 and
    /// 5 MiB): a request goes once it is this full, without lingering.
    pub max_batch_records: usize,
    pub max_batch_bytes: usize,
}

impl ProducerConfig {
    pub fn new(stream: impl Into<String>) -> Self {
        Self {
            stream: stream.into(),
            linger: Duration::from_millis(100),
            connections: 4,
            max_buffered_bytes: 64 << 20,
            aggregate: false,
            ordered: true,
            record_ttl: Some(Duration::from_secs(30)),
            max_record_bytes: MAX_RECORD_BYTES,
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            max_batch_records: MAX_BATCH_RECORDS,
            max_batch_bytes: MAX_BATCH_BYTES,
        }
    }
}

/// A user record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub partition_key: String,
    pub explicit_hash_key: Option<String>,
    pub data: Vec<u8>,
}

impl Record {
    pub fn new(partition_key: impl Into<String>, data: impl Into<Vec<u8>>) -> Self {
        Self {
            partition_key: partition_key.into(),
            explicit_hash_key: None,
            data: data.into(),
        }
    }
}

/// Where a record was put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub shard_id: String,
    pub sequence_number: String,
    /// The record's index in the aggregated record that carried it.
    pub sub_sequence_number: Option<u32>,
    /// Requests it took (1: no retry).
    pub attempts: u32,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum PutError {
    /// The record can never be put (the reason says why).
    #[error("invalid record: {0}")]
    Invalid(String),
    /// Refused, or retried until its time to live (the last error).
    #[error("{0}")]
    Failed(String),
    #[error("the producer has stopped")]
    Closed,
}

/// Resolves when the record is in the stream or has failed.
#[derive(Debug)]
pub struct Receipt(oneshot::Receiver<Result<Ack, PutError>>);

impl Future for Receipt {
    type Output = Result<Ack, PutError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(PutError::Closed)))
    }
}

/// Counters, for progress reports.
#[derive(Debug, Default)]
pub struct Metrics {
    /// User records acknowledged.
    pub records: AtomicU64,
    /// Their data bytes.
    pub bytes: AtomicU64,
    /// PutRecords requests sent.
    pub requests: AtomicU64,
    /// Stream records sent (an aggregate is one).
    pub entries: AtomicU64,
    /// User records sent again.
    pub retries: AtomicU64,
    /// User records failed.
    pub failed: AtomicU64,
}

enum Msg {
    Record(Box<Entry>),
    Flush(oneshot::Sender<()>),
}

/// Sends records to one stream.
#[derive(Debug)]
pub struct Producer {
    tx: mpsc::Sender<Msg>,
    budget: Arc<Semaphore>,
    max_buffered: usize,
    max_record: usize,
    metrics: Arc<Metrics>,
    task: tokio::task::JoinHandle<()>,
}

impl Producer {
    /// Connects and reads the stream's shard map; fails if the stream cannot
    /// be reached.
    pub async fn start(target: Target, config: ProducerConfig) -> Result<Self, Error> {
        let target = Arc::new(target);
        let mut idle = Vec::new();
        for _ in 0..config.connections.max(1) {
            idle.push(Api::connect(target.clone()).await?);
        }
        let stream = StreamRef::new(&config.stream);
        // The shard map, for aggregation; and a stream that is not there
        // fails here rather than record by record. Without the right to list
        // shards, aggregates group records by partition key instead.
        let shards = match shard_map(&mut idle[0], &stream).await {
            Ok(shards) => shards,
            Err(e) if e.name() == Some("AccessDeniedException") => Vec::new(),
            Err(e) => return Err(e),
        };
        let max_buffered = config.max_buffered_bytes.max(config.max_record_bytes);
        let budget = Arc::new(Semaphore::new(max_buffered));
        let metrics = Arc::new(Metrics::default());
        let (tx, rx) = mpsc::channel(1024);
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let dispatcher = Dispatcher {
            stream,
            max_record: config.max_record_bytes,
            config,
            rx,
            next_id: 0,
            queues: HashMap::new(),
            heads: BTreeMap::new(),
            inflight_keys: HashSet::new(),
            outstanding: BTreeSet::new(),
            pending_bytes: 0,
            pending_count: 0,
            flushes: Vec::new(),
            idle,
            done_tx,
            done_rx,
            shards,
            refreshing: false,
            metrics: metrics.clone(),
        };
        let max_record = dispatcher.max_record;
        Ok(Self {
            tx,
            budget,
            max_buffered,
            max_record,
            metrics,
            task: tokio::spawn(dispatcher.run()),
        })
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Queues a record, waiting while the buffer is full; the receipt
    /// resolves when it is in the stream.
    pub async fn send(&self, record: Record) -> Result<Receipt, PutError> {
        let hash = validate(&record, self.max_record).map_err(PutError::Invalid)?;
        let size = record.data.len() + record.partition_key.len();
        let permits = size.clamp(1, self.max_buffered);
        let permit = self
            .budget
            .clone()
            .acquire_many_owned(permits as u32)
            .await
            .map_err(|_| PutError::Closed)?;
        let (ack, receipt) = oneshot::channel();
        let now = Instant::now();
        let entry = Entry {
            id: 0,
            record,
            hash,
            size,
            _permit: permit,
            ack,
            arrived: now,
            not_before: now,
            attempts: 0,
            last_error: None,
        };
        self.tx
            .send(Msg::Record(Box::new(entry)))
            .await
            .map_err(|_| PutError::Closed)?;
        Ok(Receipt(receipt))
    }

    /// Waits until every record sent before is in the stream or has failed.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Flushes and stops.
    pub async fn close(self) {
        self.flush().await;
        drop(self.tx);
        let _ = self.task.await;
    }
}

/// The record's hash key, or why it cannot be put.
fn validate(record: &Record, max_record: usize) -> Result<u128, String> {
    let key_chars = record.partition_key.chars().count();
    if !(1..=256).contains(&key_chars) {
        return Err(format!(
            "a partition key has 1 to 256 characters, not {key_chars}"
        ));
    }
    let size = record.data.len() + record.partition_key.len();
    if size > max_record {
        return Err(format!(
            "the record is {size} bytes with its partition key, more than the stream's {max_record}"
        ));
    }
    match &record.explicit_hash_key {
        Some(h) => {
            if h.is_empty() || h.len() > 39 || !h.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "an explicit hash key is a decimal below 2^128, not {h:?}"
                ));
            }
            h.parse::<u128>()
                .map_err(|_| format!("an explicit hash key is a decimal below 2^128, not {h:?}"))
        }
        None => Ok(hash_key(&record.partition_key)),
    }
}

/// The hash key Kinesis gives a partition key: its MD5 as a 128-bit number.
pub fn hash_key(partition_key: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into())
}

/// The open shards' hash key ranges, by starting key.
async fn shard_map(api: &mut Api, stream: &StreamRef) -> Result<Vec<(u128, u128, String)>, Error> {
    let mut shards: Vec<(u128, u128, String)> = api
        .list_shards(stream)
        .await?
        .into_iter()
        .filter(|s| s.sequence_number_range.ending_sequence_number.is_none())
        .filter_map(|s| {
            let r = &s.hash_key_range;
            Some((
                r.starting_hash_key.parse().ok()?,
                r.ending_hash_key.parse().ok()?,
                s.shard_id,
            ))
        })
        .collect();
    shards.sort();
    Ok(shards)
}

struct Entry {
    /// Arrival order.
    id: u64,
    record: Record,
    hash: u128,
    size: usize,
    _permit: OwnedSemaphorePermit,
    ack: oneshot::Sender<Result<Ack, PutError>>,
    arrived: Instant,
    not_before: Instant,
    attempts: u32,
    last_error: Option<String>,
}

/// One stream record of a request: a user record, or an aggregate of them.
struct Sent {
    users: Vec<Entry>,
    /// The aggregate being built (sent only for more than one record).
    agg: Option<Aggregator>,
    aggregated: bool,
    predicted_shard: Option<String>,
}

struct Dispatcher {
    config: ProducerConfig,
    stream: StreamRef,
    max_record: usize,
    rx: mpsc::Receiver<Msg>,
    next_id: u64,
    /// Waiting records by queue (the partition key, or one queue when
    /// unordered), in arrival order.
    queues: HashMap<Arc<str>, BTreeMap<u64, Entry>>,
    /// The queues that may send, by their first record's id.
    heads: BTreeMap<u64, Arc<str>>,
    /// Keys with an entry in flight (ordered only).
    inflight_keys: HashSet<Arc<str>>,
    /// Ids of records not yet acknowledged or failed.
    outstanding: BTreeSet<u64>,
    pending_bytes: usize,
    pending_count: usize,
    /// Flushes waiting for every record below an id.
    flushes: Vec<(u64, oneshot::Sender<()>)>,
    idle: Vec<Api>,
    done_tx: mpsc::UnboundedSender<Done>,
    done_rx: mpsc::UnboundedReceiver<Done>,
    /// Open shards (start, end, id); empty when unknown.
    shards: Vec<(u128, u128, String)>,
    refreshing: bool,
    metrics: Arc<Metrics>,
}

enum Done {
    Request(Api, Vec<Sent>, Result<k::PutRecordsOutput, Error>),
    Shards(Api, Result<Vec<(u128, u128, String)>, Error>),
}

const EMPTY: &str = "";

/// A queue's records chosen for a request: (queue, [(record id, entry index)]).
type Taken = (Arc<str>, Vec<(u64, usize)>);

impl Dispatcher {
    async fn run(mut self) {
        let mut open = true;
        loop {
            let now = Instant::now();
            if !self.idle.is_empty() && self.pending_count > 0 && self.should_send(now) {
                if let Some(batch) = self.form(now) {
                    self.dispatch(batch);
                    continue;
                }
            }
            if !open && self.outstanding.is_empty() {
                break;
            }
            let wake = self.next_wake(now);
            tokio::select! {
                msg = self.rx.recv(), if open => match msg {
                    Some(Msg::Record(entry)) => self.admit(*entry),
                    Some(Msg::Flush(tx)) => {
                        self.flushes.push((self.next_id, tx));
                        self.settle_flushes();
                    }
                    None => open = false,
                },
                Some(done) = self.done_rx.recv() => self.complete(done),
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    fn flushing(&self) -> bool {
        !self.flushes.is_empty()
    }

    fn should_send(&self, now: Instant) -> bool {
        self.flushing()
            || self.pending_bytes
                >= self
                    .batch_bytes()
                    .saturating_sub(MAX_RECORD_BYTES)
                    .max(self.batch_bytes() / 2)
            || (!self.config.aggregate && self.pending_count >= self.batch_records())
            || self.heads.first_key_value().is_some_and(|(_, key)| {
                let first = self.queues[key].first_key_value().map(|(_, e)| e);
                first.is_some_and(|e| e.arrived + self.config.linger <= now || e.attempts > 0)
            })
    }

    fn batch_records(&self) -> usize {
        self.config.max_batch_records.clamp(1, MAX_BATCH_RECORDS)
    }

    fn batch_bytes(&self) -> usize {
        self.config.max_batch_bytes.clamp(1, MAX_BATCH_BYTES)
    }

    fn next_wake(&self, now: Instant) -> Instant {
        let later = now + Duration::from_secs(3600);
        if self.pending_count == 0 || self.idle.is_empty() {
            return later;
        }
        match self.heads.first_key_value() {
            Some((_, key)) => match self.queues[key].first_key_value() {
                Some((_, e)) => (e.arrived + self.config.linger)
                    .max(e.not_before)
                    .max(now + Duration::from_millis(1)),
                None => later,
            },
            // Every key in flight: a completion wakes us.
            None => later,
        }
    }

    fn key_of(&self, record: &Record) -> Arc<str> {
        if self.config.ordered {
            Arc::from(record.partition_key.as_str())
        } else {
            Arc::from(EMPTY)
        }
    }

    fn admit(&mut self, mut entry: Entry) {
        entry.id = self.next_id;
        self.next_id += 1;
        self.outstanding.insert(entry.id);
        self.enqueue(entry);
    }

    /// Puts a record (new or to retry) in its queue, in arrival order.
    fn enqueue(&mut self, entry: Entry) {
        let key = self.key_of(&entry.record);
        self.pending_bytes += entry.size;
        self.pending_count += 1;
        let key = self
            .queues
            .get_key_value(&key)
            .map(|(k, _)| k.clone())
            .unwrap_or(key);
        let queue = self.queues.entry(key.clone()).or_default();
        let old_head = queue.first_key_value().map(|(id, _)| *id);
        queue.insert(entry.id, entry);
        let new_head = *queue.first_key_value().unwrap().0;
        if !self.inflight_keys.contains(&key) {
            if let Some(old) = old_head {
                self.heads.remove(&old);
            }
            self.heads.insert(new_head, key);
        }
    }

    /// The shard a hash key maps to.
    fn shard_of(&self, hash: u128) -> Option<usize> {
        let i = self.shards.partition_point(|(start, _, _)| *start <= hash);
        let i = i.checked_sub(1)?;
        (hash <= self.shards[i].1).then_some(i)
    }

    /// Takes the records of the next request.
    fn form(&mut self, now: Instant) -> Option<Vec<Sent>> {
        let aggregate = self.config.aggregate;
        let ordered = self.config.ordered;
        let mut sent: Vec<Sent> = Vec::new();
        let mut aggregators: Vec<Option<Aggregator>> = Vec::new();
        let mut sizes: Vec<usize> = Vec::new();
        // Each entry's partition key (its first record's) length.
        let mut first_key_len: Vec<usize> = Vec::new();
        // Open aggregate by group (shard, or partition key without a map).
        let mut groups: HashMap<GroupKey, usize> = HashMap::new();
        let mut bytes = 0usize;
        let mut full = false;
        // (queue key, ids taken, entry index for each)
        let mut taken: Vec<Taken> = Vec::new();
        let agg_limit = self.max_record;
        let (max_entries, max_bytes) = (self.batch_records(), self.batch_bytes());
        for (_, key) in self.heads.iter() {
            if full {
                break;
            }
            let queue = &self.queues[key];
            let mut mine: Vec<(u64, usize)> = Vec::new();
            // Ordered + aggregated: the one entry this key's records go to.
            let mut key_entry: Option<usize> = None;
            for (id, e) in queue {
                if e.not_before > now {
                    if ordered {
                        break;
                    }
                    continue;
                }
                let r = &e.record;
                let plain = r.data.len() + r.partition_key.len();
                if aggregate {
                    let group = match self.shard_of(e.hash) {
                        Some(i) => GroupKey::Shard(i),
                        None => GroupKey::Key(r.partition_key.clone(), r.explicit_hash_key.clone()),
                    };
                    let ehk = r.explicit_hash_key.as_deref();
                    let mut placed = None;
                    if let Some(&i) = groups.get(&group) {
                        let agg = aggregators[i].as_mut().expect("open aggregate");
                        let pk_len = first_key_len[i];
                        let grown = agg.size_with(&r.partition_key, ehk, &r.data) + pk_len;
                        if (!ordered || key_entry.is_none_or(|k| k == i))
                            && bytes - sizes[i] + grown <= max_bytes
                            && agg.try_add(&r.partition_key, ehk, &r.data)
                        {
                            bytes = bytes - sizes[i] + grown;
                            sizes[i] = grown;
                            placed = Some(i);
                        }
                    }
                    if placed.is_none() {
                        if ordered && key_entry.is_some() {
                            // Its next records wait for the next request.
                            break;
                        }
                        if sent.len() == max_entries
                            || (!sent.is_empty() && bytes + plain > max_bytes)
                        {
                            full = true;
                            break;
                        }
                        let mut agg =
                            Aggregator::new(agg_limit.saturating_sub(r.partition_key.len()));
                        let i = sent.len();
                        if agg.try_add(&r.partition_key, ehk, &r.data) {
                            let size = agg.size() + r.partition_key.len();
                            groups.insert(group, i);
                            aggregators.push(Some(agg));
                            // Counted as aggregated; one record alone goes plain.
                            sizes.push(size.max(plain));
                            bytes += size.max(plain);
                        } else {
                            // Too large to aggregate: alone and plain.
                            aggregators.push(None);
                            sizes.push(plain);
                            bytes += plain;
                        }
                        first_key_len.push(r.partition_key.len());
                        sent.push(Sent {
                            users: Vec::new(),
                            agg: None,
                            aggregated: true,
                            predicted_shard: self
                                .shard_of(e.hash)
                                .map(|s| self.shards[s].2.clone()),
                        });
                        placed = Some(i);
                    }
                    let i = placed.expect("placed");
                    key_entry = Some(i);
                    mine.push((*id, i));
                } else {
                    if sent.len() == max_entries || (!sent.is_empty() && bytes + plain > max_bytes)
                    {
                        full = true;
                        break;
                    }
                    bytes += plain;
                    mine.push((*id, sent.len()));
                    first_key_len.push(r.partition_key.len());
                    sent.push(Sent {
                        users: Vec::new(),
                        agg: None,
                        aggregated: false,
                        predicted_shard: None,
                    });
                    aggregators.push(None);
                    sizes.push(plain);
                    if ordered {
                        break;
                    }
                }
            }
            if !mine.is_empty() {
                taken.push((key.clone(), mine));
            }
        }
        if sent.is_empty() {
            return None;
        }
        // Move the chosen records out of their queues.
        for (key, ids) in taken {
            let queue = self.queues.get_mut(&key).expect("queue");
            let old_head = *queue.first_key_value().expect("non-empty").0;
            for (id, i) in ids {
                let e = queue.remove(&id).expect("taken record");
                self.pending_bytes -= e.size;
                self.pending_count -= 1;
                sent[i].users.push(e);
            }
            self.heads.remove(&old_head);
            if ordered {
                self.inflight_keys.insert(key.clone());
            } else if let Some((&id, _)) = queue.first_key_value() {
                self.heads.insert(id, key.clone());
            }
            if queue.is_empty() {
                self.queues.remove(&key);
            }
        }
        for (s, agg) in sent.iter_mut().zip(aggregators) {
            s.aggregated = s.users.len() > 1;
            s.agg = agg.filter(|_| s.aggregated);
        }
        Some(sent)
    }

    fn dispatch(&mut self, mut batch: Vec<Sent>) {
        let mut api = self.idle.pop().expect("an idle connection");
        let mut records = Vec::with_capacity(batch.len());
        for s in &mut batch {
            let first = &s.users[0].record;
            if let Some(agg) = s.agg.take() {
                // Lands where its first record hashes, as the KPL sends it.
                let ehk = if self.shards.is_empty() {
                    first.explicit_hash_key.clone()
                } else {
                    Some(s.users[0].hash.to_string())
                };
                records.push(k::PutRecordsRequestEntry {
                    data: Blob(agg.finish()),
                    explicit_hash_key: ehk,
                    partition_key: first.partition_key.clone(),
                });
            } else {
                records.push(k::PutRecordsRequestEntry {
                    data: Blob(first.data.clone()),
                    explicit_hash_key: first.explicit_hash_key.clone(),
                    partition_key: first.partition_key.clone(),
                });
            }
        }
        self.metrics.requests.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .entries
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        let input = k::PutRecordsInput {
            records,
            stream_name: self.stream.name.clone(),
            stream_arn: self.stream.arn.clone(),
            ..Default::default()
        };
        let done = self.done_tx.clone();
        tokio::spawn(async move {
            let result = api.call("PutRecords", &input).await;
            let _ = done.send(Done::Request(api, batch, result));
        });
    }

    fn complete(&mut self, done: Done) {
        match done {
            Done::Shards(api, result) => {
                self.idle.push(api);
                self.refreshing = false;
                if let Ok(shards) = result {
                    self.shards = shards;
                }
            }
            Done::Request(api, batch, result) => {
                self.idle.push(api);
                let now = Instant::now();
                let mut refresh = false;
                let keys: Vec<Arc<str>> = if self.config.ordered {
                    batch
                        .iter()
                        .flat_map(|s| {
                            s.users
                                .iter()
                                .map(|u| Arc::from(u.record.partition_key.as_str()))
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                match result {
                    Ok(out) if out.records.len() == batch.len() => {
                        for (s, r) in batch.into_iter().zip(out.records) {
                            match (r.error_code, r.shard_id, r.sequence_number) {
                                (None, Some(shard_id), Some(seq)) => {
                                    refresh |=
                                        s.predicted_shard.as_ref().is_some_and(|p| *p != shard_id);
                                    self.acknowledge(s, &shard_id, &seq);
                                }
                                (code, _, _) => {
                                    let code =
                                        code.unwrap_or_else(|| "an entry without a result".into());
                                    let why =
                                        format!("{code}: {}", r.error_message.unwrap_or_default());
                                    let retry = Error::retryable_code(&code);
                                    for u in s.users {
                                        self.retry_or_fail(u, why.clone(), retry, now);
                                    }
                                }
                            }
                        }
                    }
                    Ok(out) => {
                        let why = format!(
                            "PutRecords answered {} entries for {}",
                            out.records.len(),
                            batch.len()
                        );
                        for u in batch.into_iter().flat_map(|s| s.users) {
                            self.retry_or_fail(u, why.clone(), true, now);
                        }
                    }
                    Err(e) => {
                        let retry = e.retryable();
                        refresh |=
                            e.name() == Some("InvalidArgumentException") && !self.shards.is_empty();
                        for u in batch.into_iter().flat_map(|s| s.users) {
                            self.retry_or_fail(u, e.to_string(), retry, now);
                        }
                    }
                }
                for key in keys {
                    if self.inflight_keys.remove(&key) {
                        if let Some((&id, _)) =
                            self.queues.get(&key).and_then(|q| q.first_key_value())
                        {
                            self.heads.insert(id, key);
                        }
                    }
                }
                if refresh && !self.refreshing && !self.idle.is_empty() {
                    self.refreshing = true;
                    let mut api = self.idle.pop().expect("idle");
                    let stream = self.stream.clone();
                    let done = self.done_tx.clone();
                    tokio::spawn(async move {
                        let result = shard_map(&mut api, &stream).await;
                        let _ = done.send(Done::Shards(api, result));
                    });
                }
                self.settle_flushes();
            }
        }
    }

    fn acknowledge(&mut self, s: Sent, shard_id: &str, seq: &str) {
        let aggregated = s.aggregated;
        for (i, u) in s.users.into_iter().enumerate() {
            self.outstanding.remove(&u.id);
            self.metrics.records.fetch_add(1, Ordering::Relaxed);
            self.metrics
                .bytes
                .fetch_add(u.record.data.len() as u64, Ordering::Relaxed);
            let _ = u.ack.send(Ok(Ack {
                shard_id: shard_id.to_owned(),
                sequence_number: seq.to_owned(),
                sub_sequence_number: aggregated.then_some(i as u32),
                attempts: u.attempts + 1,
            }));
        }
    }

    fn retry_or_fail(&mut self, mut u: Entry, why: String, retryable: bool, now: Instant) {
        u.attempts += 1;
        let expired = self
            .config
            .record_ttl
            .is_some_and(|ttl| now.duration_since(u.arrived) >= ttl);
        if !retryable || expired {
            self.outstanding.remove(&u.id);
            self.metrics.failed.fetch_add(1, Ordering::Relaxed);
            let why = if retryable {
                format!(
                    "{why} (retried {} times until its time to live)",
                    u.attempts
                )
            } else {
                why
            };
            let _ = u.ack.send(Err(PutError::Failed(why)));
            return;
        }
        self.metrics.retries.fetch_add(1, Ordering::Relaxed);
        let exp = self
            .config
            .base_backoff
            .saturating_mul(1u32 << (u.attempts - 1).min(16))
            .min(self.config.max_backoff);
        // Full jitter: anywhere from nothing to the backoff.
        let wait = exp.mul_f64(fastrand::f64());
        u.not_before = now + wait;
        u.last_error = Some(why);
        self.enqueue(u);
    }

    fn settle_flushes(&mut self) {
        let lowest = self.outstanding.first().copied().unwrap_or(u64::MAX);
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.flushes)
            .into_iter()
            .partition(|(below, _)| lowest >= *below);
        for (_, tx) in done {
            let _ = tx.send(());
        }
        self.flushes = waiting;
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum GroupKey {
    Shard(usize),
    Key(String, Option<String>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_that_can_never_be_put() {
        let ok = Record::new("k", b"data".to_vec());
        assert_eq!(validate(&ok, 100).unwrap(), hash_key("k"));
        assert!(validate(&Record::new("", b"x".to_vec()), 100).is_err());
        assert!(validate(&Record::new("k".repeat(257), b"x".to_vec()), 10_000).is_err());
        assert!(
            validate(&Record::new("k", vec![0; 100]), 100).is_err(),
            "key counts"
        );
        let mut ehk = Record::new("k", b"x".to_vec());
        ehk.explicit_hash_key = Some(u128::MAX.to_string());
        assert_eq!(validate(&ehk, 100).unwrap(), u128::MAX);
        ehk.explicit_hash_key = Some("340282366920938463463374607431768211456".into());
        assert!(validate(&ehk, 100).is_err(), "2^128");
        ehk.explicit_hash_key = Some("-1".into());
        assert!(validate(&ehk, 100).is_err());
    }

    #[test]
    fn hash_keys_are_md5_as_kinesis_computes_them() {
        // md5("a") = 0cc175b9c0f1b6a831c399e269772661
        assert_eq!(hash_key("a"), 0x0cc175b9c0f1b6a831c399e269772661);
    }
}
