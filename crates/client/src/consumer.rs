//! The consumer: every shard of a stream, read by polling GetRecords.
//!
//! - Lineage: a shard is read only after its parents (parent and adjacent
//!   parent, when the stream still lists them) have been read to their end,
//!   so each partition key's records come in order across resharding.
//!   A shard that ends (its iterator runs out) sends the stream's shards
//!   to be listed again, and its children start.
//! - KPL aggregated records are de-aggregated: each user record has the
//!   Kinesis record's sequence number and its index as sub-sequence number.
//! - Starting positions: trim horizon, latest (the open shards from the
//!   tip, shards created later from their start), a timestamp, or a
//!   sequence number (its shard from there, then that shard's descendants).
//! - The handler sees each shard's batches in order; after it returns, its
//!   `checkpoint` is called with where to resume, which
//!   [`ConsumerConfig::checkpoints`] takes back on the next start.
//! - Memory is bounded: readers wait while a few batches (each at most one
//!   GetRecords answer, 10 MiB) are queued for the handler.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sluice_aws::kinesis as k;
use sluice_aws::types::Timestamp;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::api::{Api, Error, StreamRef};
use crate::conn::Target;

/// Calls until an answer or an error not worth retrying (backoff with
/// jitter, from 100 ms to 5 s, at most 20 tries).
macro_rules! retrying {
    ($call:expr) => {{
        let mut attempt = 0u32;
        loop {
            match $call.await {
                Err(e) if e.retryable() && attempt < 20 => {
                    attempt += 1;
                    tokio::time::sleep(backoff(attempt)).await;
                }
                other => break other,
            }
        }
    }};
}

#[derive(Debug, Clone, PartialEq)]
pub enum StartingPosition {
    TrimHorizon,
    Latest,
    /// Seconds since the epoch.
    AtTimestamp(f64),
    AtSequence(String),
}

/// Where a shard's reading resumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checkpoint {
    /// After this record (all of its user records handled).
    After(String),
    /// The shard was read to its end.
    ShardEnd,
    /// At this record, itself included: a chunk of a message not yet whole
    /// was read there, so a restart must read it again.
    At(String),
}

/// Reading records larger than the stream takes ([`crate::large`]).
#[derive(Debug, Clone)]
pub struct LargeRead {
    /// Where claim checks point; without one they are reported unreadable.
    pub store: Option<crate::large::Store>,
    /// The largest message made whole (decompressed, fetched, reassembled).
    pub max_message: usize,
    /// Memory for messages whose chunks are still coming.
    pub max_partial_bytes: usize,
    /// How long the chunks of a message may take to all arrive.
    pub chunk_timeout: Duration,
}

impl Default for LargeRead {
    fn default() -> Self {
        Self {
            store: None,
            max_message: 256 << 20,
            max_partial_bytes: 512 << 20,
            chunk_timeout: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// The stream's name or ARN.
    pub stream: String,
    pub start: StartingPosition,
    /// Where shards resume (from earlier checkpoints); these win over
    /// `start`.
    pub checkpoints: HashMap<String, Checkpoint>,
    /// Keep reading at the tip; otherwise stop once every shard is read up
    /// to the tip.
    pub follow: bool,
    /// The wait between calls that found nothing new.
    pub idle_poll: Duration,
    /// GetRecords' Limit.
    pub limit: i64,
    /// Split KPL aggregated records into their user records.
    pub deaggregate: bool,
    /// Open large-record envelopes; `None` hands them over as they are.
    pub large: Option<LargeRead>,
    /// Enhanced fan-out: SubscribeToShard as this consumer (registered if
    /// it is not); `None` polls GetRecords.
    pub efo: Option<String>,
}

impl ConsumerConfig {
    pub fn new(stream: impl Into<String>, start: StartingPosition) -> Self {
        Self {
            stream: stream.into(),
            start,
            checkpoints: HashMap::new(),
            follow: false,
            idle_poll: Duration::from_millis(500),
            limit: 10_000,
            deaggregate: true,
            large: Some(LargeRead::default()),
            efo: None,
        }
    }
}

/// A user record as read.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub sequence_number: String,
    /// Its index in the aggregated record that carried it.
    pub sub_sequence_number: Option<u32>,
    pub partition_key: String,
    pub explicit_hash_key: Option<String>,
    pub data: Vec<u8>,
    /// When the stream took the record, seconds since the epoch.
    pub arrival: Option<f64>,
}

/// One shard's records from one GetRecords call, in order.
#[derive(Debug, Clone)]
pub struct Batch {
    pub shard_id: String,
    pub records: Vec<UserRecord>,
    pub millis_behind_latest: Option<i64>,
    /// Where to resume once these records are handled.
    pub checkpoint: Checkpoint,
}

/// What the consumer hands records to.
pub trait Handler: Send {
    /// One batch; an error stops the consumer.
    fn records(&mut self, batch: Batch) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Called after `records` returned for a batch (or a shard that ended
    /// without records), with where to resume; again when a shard's
    /// checkpoint moves because a message it held a chunk of is done.
    fn checkpoint(&mut self, _shard_id: &str, _checkpoint: &Checkpoint) -> anyhow::Result<()> {
        Ok(())
    }

    /// A large record that could not be made whole (chunks missing after the
    /// timeout, a checksum that does not hold, an object that cannot be
    /// read). By default it stops the consumer.
    fn problem(&mut self, problem: crate::large::Problem) -> anyhow::Result<()> {
        Err(anyhow::Error::new(problem))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error(transparent)]
    Api(#[from] Error),
    #[error("the handler failed: {0:#}")]
    Handler(anyhow::Error),
    #[error("no shard has sequence number {0}")]
    NoSuchSequence(String),
}

enum Event {
    Batch(Batch),
    /// Read up to the tip (not following).
    CaughtUp,
    Failed(Error),
}

/// Reads the stream into `handler` until every shard is read to the tip
/// (or forever, following), or an error.
pub async fn consume<H: Handler>(
    target: Target,
    config: ConsumerConfig,
    mut handler: H,
) -> Result<(), ConsumeError> {
    let target = Arc::new(target);
    let stream = StreamRef::new(&config.stream);
    let mut control = Api::connect(target.clone()).await?;
    let mut shards = list_shards(&mut control, &stream).await?;
    let initial: HashSet<String> = shards.keys().cloned().collect();
    let initially_open: HashSet<String> = shards
        .values()
        .filter(|s| s.sequence_number_range.ending_sequence_number.is_none())
        .map(|s| s.shard_id.clone())
        .collect();
    // A sequence number's shard: the one that takes it.
    let owner = match &config.start {
        StartingPosition::AtSequence(seq) => {
            let mut found = None;
            let mut ids: Vec<&String> = shards.keys().collect();
            ids.sort();
            for id in ids {
                let input = iterator_input(
                    &stream,
                    id,
                    k::ShardIteratorType::AtSequenceNumber,
                    Some(seq),
                    None,
                );
                // Throttled (five a second per shard on AWS): waited out.
                match retrying!(
                    control.call::<k::GetShardIteratorOutput>("GetShardIterator", &input)
                ) {
                    Ok(_) => {
                        found = Some(id.clone());
                        break;
                    }
                    Err(e) if e.name() == Some("InvalidArgumentException") => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Some(found.ok_or_else(|| ConsumeError::NoSuchSequence(seq.clone()))?)
        }
        _ => None,
    };
    let consumer_arn = match &config.efo {
        Some(name) => Some(register(&mut control, &stream, name).await?),
        None => None,
    };
    let mut done: HashSet<String> = HashSet::new();
    let mut started: HashSet<String> = HashSet::new();
    // Shards never read (not the sequence's lineage, or closed before
    // `latest`): they count as read for their children.
    let mut skipped: HashSet<String> = HashSet::new();
    let mut wanted: HashSet<String> = owner.iter().cloned().collect();
    let (tx, mut rx) = mpsc::channel::<Event>(4);
    let mut large = config.large.clone().map(Large::new);
    let mut readers = JoinSet::new();
    let mut active = 0usize;
    loop {
        // Start every shard whose parents are read.
        let mut progress = true;
        while progress {
            progress = false;
            let mut ids: Vec<String> = shards.keys().cloned().collect();
            ids.sort();
            for id in ids {
                if started.contains(&id) || done.contains(&id) || skipped.contains(&id) {
                    continue;
                }
                let shard = &shards[&id];
                let parents: Vec<&String> =
                    [&shard.parent_shard_id, &shard.adjacent_parent_shard_id]
                        .into_iter()
                        .flatten()
                        .filter(|p| shards.contains_key(*p))
                        .collect();
                if !parents
                    .iter()
                    .all(|p| done.contains(*p) || skipped.contains(*p))
                {
                    continue;
                }
                if owner.is_some() && !wanted.contains(&id) {
                    if parents.iter().any(|p| wanted.contains(*p)) {
                        wanted.insert(id.clone());
                    } else {
                        skipped.insert(id.clone());
                        progress = true;
                        continue;
                    }
                }
                let from = match config.checkpoints.get(&id) {
                    Some(Checkpoint::ShardEnd) => {
                        done.insert(id.clone());
                        progress = true;
                        continue;
                    }
                    Some(Checkpoint::After(seq)) => From::After(seq.clone()),
                    Some(Checkpoint::At(seq)) => From::At(seq.clone()),
                    None => match &config.start {
                        StartingPosition::TrimHorizon => From::TrimHorizon,
                        StartingPosition::AtTimestamp(t) => From::Timestamp(*t),
                        StartingPosition::AtSequence(seq) if Some(&id) == owner.as_ref() => {
                            From::At(seq.clone())
                        }
                        StartingPosition::AtSequence(_) => From::TrimHorizon,
                        StartingPosition::Latest if initially_open.contains(&id) => From::Latest,
                        StartingPosition::Latest if initial.contains(&id) => {
                            skipped.insert(id.clone());
                            progress = true;
                            continue;
                        }
                        StartingPosition::Latest => From::TrimHorizon,
                    },
                };
                started.insert(id.clone());
                active += 1;
                let reader = Reader {
                    target: target.clone(),
                    stream: stream.clone(),
                    shard_id: id.clone(),
                    from,
                    follow: config.follow,
                    idle_poll: config.idle_poll,
                    limit: config.limit,
                    deaggregate: config.deaggregate,
                    tx: tx.clone(),
                    consumer_arn: consumer_arn.clone(),
                };
                readers.spawn(reader.run());
            }
        }
        if active == 0 {
            // Nothing more will come: what is still partial is lost.
            if let Some(large) = &mut large {
                let problems = large.reassembler.expire(large.clock.elapsed(), None);
                large.report(&mut handler, problems)?;
                large.reissue(&mut handler)?;
            }
            return Ok(());
        }
        let tick = large.as_ref().map_or(Duration::from_secs(3600), |l| {
            (l.config.chunk_timeout / 4).max(Duration::from_millis(100))
        });
        let event = tokio::select! {
            event = rx.recv() => event,
            _ = tokio::time::sleep(tick), if large.as_ref().is_some_and(|l| l.reassembler.partial_bytes() > 0) => {
                if let Some(large) = &mut large {
                    let timeout = Some(large.config.chunk_timeout);
                    let problems = large.reassembler.expire(large.clock.elapsed(), timeout);
                    large.report(&mut handler, problems)?;
                    large.reissue(&mut handler)?;
                }
                continue;
            }
        };
        let Some(event) = event else {
            return Ok(());
        };
        match event {
            Event::Batch(mut batch) => {
                let shard_id = batch.shard_id.clone();
                let checkpoint = batch.checkpoint.clone();
                let ended = checkpoint == Checkpoint::ShardEnd;
                if let Some(large) = &mut large {
                    let mut problems = Vec::new();
                    batch.records = large
                        .resolve(&shard_id, std::mem::take(&mut batch.records), &mut problems)
                        .await;
                    large.report(&mut handler, problems)?;
                }
                handler
                    .records(batch)
                    .await
                    .map_err(ConsumeError::Handler)?;
                match &mut large {
                    Some(large) => {
                        large.natural.insert(shard_id.clone(), checkpoint);
                        large.reissue(&mut handler)?;
                    }
                    None => handler
                        .checkpoint(&shard_id, &checkpoint)
                        .map_err(ConsumeError::Handler)?,
                }
                if ended {
                    active -= 1;
                    done.insert(shard_id);
                    // Its children are listed now.
                    shards = list_shards(&mut control, &stream).await?;
                }
            }
            Event::CaughtUp => active -= 1,
            Event::Failed(e) => return Err(e.into()),
        }
    }
}

/// The consumer's large-record state.
struct Large {
    config: LargeRead,
    reassembler: crate::large::Reassembler,
    clock: tokio::time::Instant,
    /// Each shard's checkpoint as read, and as last handed to the handler.
    natural: HashMap<String, Checkpoint>,
    issued: HashMap<String, Checkpoint>,
}

impl Large {
    fn new(config: LargeRead) -> Self {
        Self {
            reassembler: crate::large::Reassembler::new(
                config.max_partial_bytes,
                config.max_message,
            ),
            config,
            clock: tokio::time::Instant::now(),
            natural: HashMap::new(),
            issued: HashMap::new(),
        }
    }

    fn report<H: Handler>(
        &self,
        handler: &mut H,
        problems: Vec<crate::large::Problem>,
    ) -> Result<(), ConsumeError> {
        for p in problems {
            handler.problem(p).map_err(ConsumeError::Handler)?;
        }
        Ok(())
    }

    /// Hands the handler every shard's checkpoint that moved: where it was
    /// read to, or, while a chunk read there waits for its message, that
    /// chunk.
    fn reissue<H: Handler>(&mut self, handler: &mut H) -> Result<(), ConsumeError> {
        let holds = self.reassembler.holds();
        let mut shards: Vec<&String> = self.natural.keys().collect();
        shards.sort();
        for shard in shards {
            let effective = match holds.get(shard) {
                Some(seq) => Checkpoint::At(seq.clone()),
                None => self.natural[shard].clone(),
            };
            if self.issued.get(shard) != Some(&effective) {
                handler
                    .checkpoint(shard, &effective)
                    .map_err(ConsumeError::Handler)?;
                self.issued.insert(shard.clone(), effective);
            }
        }
        Ok(())
    }

    /// Opens the envelopes of a batch: compressed records decompressed,
    /// claim checks fetched, chunks held until their message is whole.
    async fn resolve(
        &mut self,
        shard: &str,
        records: Vec<UserRecord>,
        problems: &mut Vec<crate::large::Problem>,
    ) -> Vec<UserRecord> {
        use crate::large::{decompress, open, Fed, Header, Problem};
        let mut out = Vec::with_capacity(records.len());
        'records: for mut r in records {
            // A message may be an envelope in an envelope: open a few.
            for _ in 0..3 {
                let Some((header, payload)) = open(&r.data) else {
                    break;
                };
                let unreadable = |why: String| Problem::Unreadable {
                    shard: shard.to_owned(),
                    sequence: r.sequence_number.clone(),
                    why,
                };
                let max = self.config.max_message;
                let opened = match &header {
                    Header::Compressed {
                        codec,
                        size,
                        crc32c,
                    } => {
                        if *size > max as u64 {
                            Err(format!(
                                "a compressed record of {size} bytes, more than {max}"
                            ))
                        } else {
                            decompress(*codec, payload, *size as usize).and_then(|d| {
                                if d.len() as u64 == *size && crc32c::crc32c(&d) == *crc32c {
                                    Ok(d)
                                } else {
                                    Err("decompressed, its size or CRC-32C does not hold".into())
                                }
                            })
                        }
                    }
                    Header::ClaimCheck {
                        bucket,
                        key,
                        size,
                        sha256,
                    } => self.fetch(bucket, key, *size, sha256).await,
                    Header::Chunk { .. } => {
                        let now = self.clock.elapsed();
                        match self.reassembler.feed(
                            &header,
                            payload,
                            shard,
                            &r.sequence_number,
                            now,
                            problems,
                        ) {
                            Fed::Complete(message) => Ok(message),
                            Fed::Held | Fed::Duplicate => continue 'records,
                            Fed::Bad(why) => Err(why),
                        }
                    }
                };
                match opened {
                    Ok(data) => r.data = data,
                    Err(why) => {
                        problems.push(unreadable(why));
                        continue 'records;
                    }
                }
            }
            out.push(r);
        }
        out
    }

    async fn fetch(
        &self,
        bucket: &str,
        key: &str,
        size: u64,
        sha256: &str,
    ) -> Result<Vec<u8>, String> {
        let Some(store) = &self.config.store else {
            return Err(format!(
                "a claim check for {bucket}/{key}, and no object store to read it from"
            ));
        };
        if store.bucket != bucket {
            return Err(format!(
                "a claim check for bucket {bucket}; the object store is bucket {}",
                store.bucket
            ));
        }
        if size > self.config.max_message as u64 {
            return Err(format!(
                "a claim check for {size} bytes, more than {}",
                self.config.max_message
            ));
        }
        let mut tries = 0;
        let data = loop {
            match store.get(key, size as usize).await {
                Ok(d) => break d,
                Err(e) if tries >= 3 => return Err(e),
                Err(_) => {
                    tries += 1;
                    tokio::time::sleep(backoff(tries)).await;
                }
            }
        };
        if data.len() as u64 != size || crate::large::sha256_hex(&data) != sha256 {
            return Err(format!(
                "{bucket}/{key}: its size or SHA-256 is not the pointer's"
            ));
        }
        Ok(data)
    }
}

/// The ARN of consumer `name` of the stream, registered if it is not, once
/// it is ACTIVE.
async fn register(api: &mut Api, stream: &StreamRef, name: &str) -> Result<String, Error> {
    let stream_arn = match &stream.arn {
        Some(arn) => arn.clone(),
        None => {
            let out: k::DescribeStreamSummaryOutput = retrying!(api.call(
                "DescribeStreamSummary",
                &k::DescribeStreamSummaryInput {
                    stream_name: stream.name.clone(),
                    ..Default::default()
                }
            ))?;
            out.stream_description_summary.stream_arn
        }
    };
    let registered: Result<k::RegisterStreamConsumerOutput, Error> = api
        .call(
            "RegisterStreamConsumer",
            &k::RegisterStreamConsumerInput {
                stream_arn: stream_arn.clone(),
                consumer_name: name.to_owned(),
                ..Default::default()
            },
        )
        .await;
    match registered {
        Ok(_) => {}
        Err(e) if e.name() == Some("ResourceInUseException") => {}
        Err(e) => return Err(e),
    }
    for attempt in 0..600u32 {
        let d: k::DescribeStreamConsumerOutput = retrying!(api.call(
            "DescribeStreamConsumer",
            &k::DescribeStreamConsumerInput {
                stream_arn: Some(stream_arn.clone()),
                consumer_name: Some(name.to_owned()),
                ..Default::default()
            }
        ))?;
        let c = d.consumer_description;
        if c.consumer_status == k::ConsumerStatus::Active {
            return Ok(c.consumer_arn);
        }
        tokio::time::sleep(Duration::from_millis(100).min(backoff(attempt.min(3)))).await;
    }
    Err(Error::Transport(format!(
        "consumer {name} did not become ACTIVE within a minute"
    )))
}

async fn list_shards(
    api: &mut Api,
    stream: &StreamRef,
) -> Result<HashMap<String, k::Shard>, Error> {
    let shards = retrying!(api.list_shards(stream))?;
    Ok(shards
        .into_iter()
        .map(|s| (s.shard_id.clone(), s))
        .collect())
}

fn backoff(attempt: u32) -> Duration {
    let exp = Duration::from_millis(100).saturating_mul(1 << attempt.min(6));
    exp.min(Duration::from_secs(5))
        .mul_f64(0.5 + fastrand::f64() / 2.0)
}

fn iterator_input(
    stream: &StreamRef,
    shard_id: &str,
    kind: k::ShardIteratorType,
    seq: Option<&String>,
    at: Option<f64>,
) -> k::GetShardIteratorInput {
    k::GetShardIteratorInput {
        stream_name: stream.name.clone(),
        stream_arn: stream.arn.clone(),
        shard_id: shard_id.to_owned(),
        shard_iterator_type: kind,
        starting_sequence_number: seq.cloned(),
        timestamp: at.map(Timestamp),
        ..Default::default()
    }
}

#[derive(Debug, Clone)]
enum From {
    TrimHorizon,
    Latest,
    Timestamp(f64),
    At(String),
    After(String),
}

struct Reader {
    target: Arc<Target>,
    stream: StreamRef,
    shard_id: String,
    from: From,
    follow: bool,
    idle_poll: Duration,
    limit: i64,
    deaggregate: bool,
    tx: mpsc::Sender<Event>,
    consumer_arn: Option<String>,
}

impl Reader {
    async fn run(mut self) {
        let tx = self.tx.clone();
        if let Err(e) = self.read().await {
            let _ = tx.send(Event::Failed(e)).await;
        }
    }

    async fn iterator(&mut self, api: &mut Api) -> Result<Option<String>, Error> {
        use k::ShardIteratorType as T;
        let input = match &self.from {
            From::TrimHorizon => {
                iterator_input(&self.stream, &self.shard_id, T::TrimHorizon, None, None)
            }
            From::Latest => iterator_input(&self.stream, &self.shard_id, T::Latest, None, None),
            From::Timestamp(t) => {
                iterator_input(&self.stream, &self.shard_id, T::AtTimestamp, None, Some(*t))
            }
            From::At(s) => iterator_input(
                &self.stream,
                &self.shard_id,
                T::AtSequenceNumber,
                Some(s),
                None,
            ),
            From::After(s) => iterator_input(
                &self.stream,
                &self.shard_id,
                T::AfterSequenceNumber,
                Some(s),
                None,
            ),
        };
        let out: k::GetShardIteratorOutput = retrying!(api.call("GetShardIterator", &input))?;
        Ok(out.shard_iterator)
    }

    async fn read(&mut self) -> Result<(), Error> {
        let mut api = retrying!(Api::connect(self.target.clone()))?;
        if let Some(arn) = self.consumer_arn.clone() {
            return self.subscribe(&mut api, &arn).await;
        }
        let mut iterator = self.iterator(&mut api).await?;
        let mut throttled = 0u32;
        loop {
            let Some(it) = iterator.clone() else {
                return self.send(Vec::new(), None, Checkpoint::ShardEnd).await;
            };
            let input = k::GetRecordsInput {
                shard_iterator: it,
                limit: Some(self.limit),
                stream_arn: self.stream.arn.clone(),
                ..Default::default()
            };
            let out: k::GetRecordsOutput = match api.call("GetRecords", &input).await {
                Ok(out) => {
                    throttled = 0;
                    out
                }
                Err(e) if e.name() == Some("ExpiredIteratorException") => {
                    iterator = self.iterator(&mut api).await?;
                    continue;
                }
                Err(e) if e.retryable() => {
                    throttled += 1;
                    tokio::time::sleep(backoff(throttled)).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let behind = out.millis_behind_latest;
            let got = !out.records.is_empty();
            let mut users = Vec::new();
            let mut last = None;
            for r in out.records {
                last = Some(r.sequence_number.clone());
                self.split(r, &mut users);
            }
            if let Some(seq) = &last {
                // An expired iterator resumes after what was read.
                self.from = From::After(seq.clone());
            }
            iterator = out.next_shard_iterator;
            match (&iterator, last) {
                (None, _) => return self.send(users, behind, Checkpoint::ShardEnd).await,
                (Some(_), Some(seq)) => self.send(users, behind, Checkpoint::After(seq)).await?,
                (Some(_), None) => {}
            }
            let at_tip = behind.is_none_or(|b| b == 0);
            if !got && at_tip {
                if !self.follow {
                    let _ = self.tx.send(Event::CaughtUp).await;
                    return Ok(());
                }
                tokio::time::sleep(self.idle_poll).await;
            }
        }
    }

    /// Enhanced fan-out: subscriptions (each up to 5 minutes) one after
    /// another, from where the last one ended.
    async fn subscribe(&mut self, api: &mut Api, consumer_arn: &str) -> Result<(), Error> {
        use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
        use http_body_util::BodyExt;
        use k::ShardIteratorType as T;
        let mut failures = 0u32;
        loop {
            let (kind, seq, at) = match &self.from {
                From::TrimHorizon => (T::TrimHorizon, None, None),
                From::Latest => (T::Latest, None, None),
                From::Timestamp(t) => (T::AtTimestamp, None, Some(Timestamp(*t))),
                From::At(s) => (T::AtSequenceNumber, Some(s.clone()), None),
                From::After(s) => (T::AfterSequenceNumber, Some(s.clone()), None),
            };
            let input = k::SubscribeToShardInput {
                consumer_arn: consumer_arn.to_owned(),
                shard_id: self.shard_id.clone(),
                starting_position: k::StartingPosition {
                    r#type: kind,
                    sequence_number: seq,
                    timestamp: at,
                },
                ..Default::default()
            };
            let mut events = match api.call_events("SubscribeToShard", &input).await {
                Ok(events) => events,
                // Another subscription of this shard is ending, or limits.
                Err(e)
                    if (e.retryable() || e.name() == Some("ResourceInUseException"))
                        && failures < 30 =>
                {
                    failures += 1;
                    tokio::time::sleep(backoff(failures)).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut decoder = MessageFrameDecoder::new();
            let mut buffer = bytes::BytesMut::new();
            loop {
                let message = match decoder.decode_frame(&mut buffer) {
                    Ok(DecodedFrame::Complete(m)) => m,
                    Ok(DecodedFrame::Incomplete) => match events.frame().await {
                        Some(Ok(frame)) => {
                            if let Ok(data) = frame.into_data() {
                                buffer.extend_from_slice(&data);
                            }
                            continue;
                        }
                        // The subscription ended (its 5 minutes, or the
                        // connection): the next one goes on from here.
                        Some(Err(_)) | None => break,
                    },
                    Err(e) => {
                        return Err(Error::Transport(format!(
                            "SubscribeToShard: a malformed event: {e}"
                        )))
                    }
                };
                let header = |name: &str| {
                    message
                        .headers()
                        .iter()
                        .find(|h| h.name().as_str() == name)
                        .and_then(|h| h.value().as_string().ok())
                        .map(|v| v.as_str().to_owned())
                        .unwrap_or_default()
                };
                if header(":message-type") == "exception" {
                    let e = Error::Service {
                        status: 400,
                        name: header(":exception-type"),
                        message: String::from_utf8_lossy(message.payload()).into_owned(),
                    };
                    if e.retryable() && failures < 30 {
                        failures += 1;
                        tokio::time::sleep(backoff(failures)).await;
                        break;
                    }
                    return Err(e);
                }
                if header(":event-type") != k::SUBSCRIBE_TO_SHARD_EVENT {
                    continue;
                }
                failures = 0;
                let event: k::views::SubscribeEvent = serde_json::from_slice(message.payload())
                    .map_err(|e| {
                        Error::Transport(format!(
                            "SubscribeToShard: an event that does not decode: {e}"
                        ))
                    })?;
                let behind = event.millis_behind_latest;
                let got = !event.records.is_empty();
                let mut users = Vec::new();
                let mut last = None;
                for r in event.records {
                    last = Some(r.sequence_number.clone());
                    self.split(r, &mut users);
                }
                let Some(continuation) = event.continuation_sequence_number else {
                    return self.send(users, behind, Checkpoint::ShardEnd).await;
                };
                self.from = From::After(continuation);
                if let Some(seq) = last {
                    self.send(users, behind, Checkpoint::After(seq)).await?;
                }
                // At the tip: an empty event (one comes at least every 5 s)
                // that says so. An event with records and no lag may still
                // leave records of the same millisecond to come.
                if !got && behind.is_none_or(|b| b == 0) && !self.follow {
                    let _ = self.tx.send(Event::CaughtUp).await;
                    return Ok(());
                }
            }
        }
    }

    fn split(&self, r: k::Record, out: &mut Vec<UserRecord>) {
        let arrival = r.approximate_arrival_timestamp.map(|t| t.0);
        if self.deaggregate {
            if let Some(users) = crate::kpl::deaggregate(&r.data.0) {
                for (i, u) in users.into_iter().enumerate() {
                    out.push(UserRecord {
                        sequence_number: r.sequence_number.clone(),
                        sub_sequence_number: Some(i as u32),
                        partition_key: u.partition_key.to_owned(),
                        explicit_hash_key: u.explicit_hash_key.map(str::to_owned),
                        data: u.data.to_vec(),
                        arrival,
                    });
                }
                return;
            }
        }
        out.push(UserRecord {
            sequence_number: r.sequence_number,
            sub_sequence_number: None,
            partition_key: r.partition_key,
            explicit_hash_key: None,
            data: r.data.0,
            arrival,
        });
    }

    async fn send(
        &self,
        records: Vec<UserRecord>,
        behind: Option<i64>,
        checkpoint: Checkpoint,
    ) -> Result<(), Error> {
        let batch = Batch {
            shard_id: self.shard_id.clone(),
            records,
            millis_behind_latest: behind,
            checkpoint,
        };
        // The consumer gone: nothing more to do.
        let _ = self.tx.send(Event::Batch(batch)).await;
        Ok(())
    }
}
