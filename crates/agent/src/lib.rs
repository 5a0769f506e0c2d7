//! `sluice agent`: what the Kinesis Agent does, from its `agent.json`.
//! Each flow tails the files of a pattern ([`files`]), cuts records
//! (lines, or multi-line records by a start pattern; header lines skipped;
//! long records truncated with a terminator), and puts them into a Kinesis
//! stream (the client crate's producer) or a Firehose delivery stream
//! (PutRecordBatch), retrying throttling without end. Checkpoints (per
//! file: device, inode, the SHA-256 of its first bytes, and the offset
//! below which every record is acknowledged) are written atomically after
//! acknowledgements, so a restart, even after kill -9, resends only what
//! was not acknowledged.

pub mod checkpoint;
pub mod config;
pub mod files;
mod firehose;
pub mod process;

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use md5::{Digest, Md5};
use sluice_client::producer::{Producer, ProducerConfig, Record};
use sluice_client::Target;
use tokio::sync::{mpsc, watch};

use checkpoint::{Checkpoints, FileCheckpoint};
use config::{AgentConfig, Destination, Flow, InitialPosition, PartitionKeys};
use files::{Acks, Cut, FileId, Splitter};

/// How to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub checkpoints: PathBuf,
    /// How often files are looked at.
    pub poll: Duration,
    /// Where Kinesis and Firehose are, and as whom.
    pub kinesis: Target,
    pub firehose: Target,
    /// How often progress is said on standard error (`None`: never).
    pub progress: Option<Duration>,
}

/// What the agent did, over all flows.
#[derive(Debug, Default)]
pub struct Stats {
    pub parsed: AtomicU64,
    /// Dropped by a converter (a log line that does not parse).
    pub skipped: AtomicU64,
    /// Cut to the destination's largest record.
    pub truncated: AtomicU64,
    /// Sent raw because a converter failed.
    pub conversion_errors: AtomicU64,
    pub sent: AtomicU64,
    pub failed: AtomicU64,
    pub bytes: AtomicU64,
}

impl Stats {
    pub fn line(&self) -> String {
        format!(
            "{} records parsed, {} dropped by dataProcessingOptions, {} truncated, {} sent raw after a conversion error, {} sent ({} bytes), {} failed",
            self.parsed.load(Ordering::Relaxed),
            self.skipped.load(Ordering::Relaxed),
            self.truncated.load(Ordering::Relaxed),
            self.conversion_errors.load(Ordering::Relaxed),
            self.sent.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// Runs every flow until `stop` turns true; then what is in flight is
/// acknowledged and checkpointed before it returns.
pub async fn run(
    config: &AgentConfig,
    options: Options,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<Arc<Stats>> {
    let flows = config.flows()?;
    let checkpoints = Arc::new(Mutex::new(Checkpoints::load(&options.checkpoints)?));
    let stats = Arc::new(Stats::default());
    let mut tasks = tokio::task::JoinSet::new();
    for flow in flows {
        // An endpoint not up yet is waited for; a refusal (no such stream)
        // stops the agent.
        let mut attempt = 0u32;
        let sender = loop {
            match Sender::start(&flow, &options).await {
                Ok(sender) => break sender,
                Err(e)
                    if !*stop.borrow()
                        && e.chain().any(|c| {
                            c.downcast_ref::<sluice_client::Error>()
                                .is_some_and(|e| e.retryable())
                        }) =>
                {
                    eprintln!("sluice agent: {}: {e:#}; trying again", flow.id());
                    attempt += 1;
                    tokio::time::sleep(
                        Duration::from_millis(200)
                            .saturating_mul(1 << attempt.min(6))
                            .min(Duration::from_secs(10)),
                    )
                    .await;
                }
                Err(e) => return Err(e),
            }
        };
        let runner = FlowRunner {
            flow,
            sender,
            checkpoints: checkpoints.clone(),
            stats: stats.clone(),
            poll: options.poll,
            tracked: HashMap::new(),
            redirects: HashMap::new(),
            generation: 0,
            read_buf: vec![0; READ_CHUNK],
        };
        tasks.spawn(runner.run(stop.clone()));
    }
    let progress = options.progress.map(|every| {
        let stats = stats.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                eprintln!("sluice agent: {}", stats.line());
            }
        })
    });
    let mut result = Ok(());
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                result = Err(e);
                tasks.abort_all();
            }
            Err(e) if e.is_cancelled() => {}
            Err(e) => result = Err(anyhow::anyhow!("a flow stopped: {e}")),
        }
    }
    if let Some(p) = progress {
        p.abort();
    }
    result.map(|()| stats)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// An acknowledgement: file, generation, byte range, outcome.
type AckMsg = (FileId, u64, u64, u64, Result<usize, String>);

/// Puts one flow's records.
enum Sender {
    Kinesis(Producer),
    Firehose(firehose::Batcher),
}

impl Sender {
    async fn start(flow: &Flow, options: &Options) -> anyhow::Result<Self> {
        Ok(match &flow.destination {
            Destination::Kinesis(stream) => {
                let mut config = ProducerConfig::new(stream);
                // The agent's buffer: its age, records and bytes.
                config.linger = flow.max_buffer_age;
                config.max_batch_records = flow.max_buffer_records;
                config.max_batch_bytes = flow.max_buffer_bytes;
                config.ordered = false;
                config.connections = 2;
                // Throttling is retried for as long as it lasts.
                config.record_ttl = None;
                config.max_backoff = Duration::from_secs(10);
                let producer = Producer::start(options.kinesis.clone(), config)
                    .await
                    .map_err(|e| {
                        anyhow::Error::new(e).context(format!("kinesisStream {stream}"))
                    })?;
                Self::Kinesis(producer)
            }
            Destination::Firehose(name) => Self::Firehose(
                firehose::Batcher::start(options.firehose.clone(), name.clone(), flow).await?,
            ),
        })
    }

    /// Queues a record; `done` hears its outcome.
    async fn send(
        &self,
        key: String,
        data: Vec<u8>,
        done: impl FnOnce(Result<usize, String>) + Send + 'static,
    ) {
        let len = data.len();
        match self {
            Self::Kinesis(p) => match p.send(Record::new(key, data)).await {
                Ok(receipt) => {
                    tokio::spawn(async move {
                        done(receipt.await.map(|_| len).map_err(|e| e.to_string()));
                    });
                }
                Err(e) => done(Err(e.to_string())),
            },
            Self::Firehose(b) => b.send(data, Box::new(move |r| done(r.map(|()| len)))).await,
        }
    }

    async fn flush(&self) {
        match self {
            Self::Kinesis(p) => p.flush().await,
            Self::Firehose(b) => b.flush().await,
        }
    }
}

struct Tracked {
    path: PathBuf,
    file: File,
    splitter: Splitter,
    acks: Acks,
    generation: u64,
    /// The SHA-256 of the first `head.0` bytes.
    head: (usize, [u8; 32]),
    /// No longer matched by the pattern (renamed away, deleted): read to
    /// its end, then dropped.
    gone: bool,
    /// Records sent and not yet acknowledged.
    in_flight: usize,
}

struct FlowRunner {
    flow: Flow,
    sender: Sender,
    checkpoints: Arc<Mutex<Checkpoints>>,
    stats: Arc<Stats>,
    poll: Duration,
    tracked: HashMap<FileId, Tracked>,
    /// Acknowledgements for (file, generation) that now belong to another
    /// file (a copytruncate's copy).
    redirects: HashMap<(FileId, u64), FileId>,
    generation: u64,
    /// The buffer files are read into (one, not one per read).
    read_buf: Vec<u8>,
}

/// The most read from one file in one poll.
const READ_CHUNK: usize = 1 << 20;

impl FlowRunner {
    async fn run(mut self, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
        let id = self.flow.id();
        let saved: Vec<FileCheckpoint> = self.checkpoints.lock().expect("checkpoints").flow(&id);
        let first_run = saved.is_empty();
        let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<AckMsg>();
        let mut stopping = false;
        let mut started = false;
        loop {
            self.scan(&saved, first_run && !started)?;
            started = true;
            self.read_and_send(&ack_tx).await;
            while let Ok(ack) = ack_rx.try_recv() {
                self.acknowledge(ack);
            }
            self.drop_finished();
            self.save(&id)?;
            if stopping {
                // Everything read is sent; wait for its acknowledgements.
                self.sender.flush().await;
                while self.tracked.values().any(|t| t.in_flight > 0) {
                    match ack_rx.recv().await {
                        Some(ack) => self.acknowledge(ack),
                        None => break,
                    }
                }
                self.save(&id)?;
                return Ok(());
            }
            tokio::select! {
                _ = tokio::time::sleep(self.poll) => {}
                Some(ack) = ack_rx.recv() => self.acknowledge(ack),
                _ = stop.changed() => stopping = *stop.borrow(),
            }
            if *stop.borrow() {
                stopping = true;
            }
        }
    }

    /// Looks for the pattern's files: new ones are tracked, renamed ones
    /// followed, truncated ones (copytruncate) read again from their start.
    fn scan(&mut self, saved: &[FileCheckpoint], first: bool) -> anyhow::Result<()> {
        let paths = files::matching(&self.flow.file_pattern);
        let mut seen = Vec::new();
        let mut new_files = Vec::new();
        for path in paths {
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let id = files::id_of(&meta);
            seen.push(id);
            match self.tracked.get_mut(&id) {
                Some(t) => {
                    t.path = path;
                    t.gone = false;
                }
                None => new_files.push((id, path, meta.len())),
            }
        }
        // Truncated files (shorter than what was read, or starting with
        // other bytes: truncated and written again before this look): the
        // copy (a new file with the same first bytes) goes on from where
        // reading was.
        let truncated: Vec<FileId> = self
            .tracked
            .iter_mut()
            .filter_map(|(id, t)| {
                let len = t.file.metadata().ok()?.len();
                let shorter = len < t.splitter.read_to();
                let rewritten =
                    t.head.0 > 0 && files::head(&mut t.file, t.head.0).is_ok_and(|h| h != t.head);
                (shorter || rewritten).then_some(*id)
            })
            .collect();
        for id in truncated {
            let (head, read_at, acks, old_generation) = {
                let t = &self.tracked[&id];
                (
                    t.head,
                    t.splitter.read_to() - t.splitter.buffered() as u64,
                    t.acks.clone(),
                    t.generation,
                )
            };
            let copy = new_files.iter().position(|(_, path, len)| {
                *len >= head.0 as u64
                    && File::open(path)
                        .and_then(|mut f| files::head(&mut f, head.0))
                        .is_ok_and(|h| h == head)
            });
            if let Some(i) = copy {
                let (copy_id, path, _) = new_files.remove(i);
                if let Ok(file) = File::open(&path) {
                    self.generation += 1;
                    let generation = self.generation;
                    self.tracked.insert(
                        copy_id,
                        Tracked {
                            path,
                            file,
                            splitter: Splitter::new(read_at, 0),
                            acks,
                            generation,
                            head,
                            gone: false,
                            in_flight: self.tracked[&id].in_flight,
                        },
                    );
                    self.redirects.insert((id, old_generation), copy_id);
                }
            }
            self.generation += 1;
            let generation = self.generation;
            let headers = self.flow.skip_header_lines;
            let t = self.tracked.get_mut(&id).expect("tracked");
            t.splitter = Splitter::new(0, headers);
            t.acks = Acks::at(0);
            t.generation = generation;
            t.head = (0, [0; 32]);
            t.in_flight = 0;
        }
        for (id, path, len) in new_files {
            let Ok(mut file) = File::open(&path) else {
                continue;
            };
            let checkpoint = saved
                .iter()
                .find(|c| c.id() == id && c.offset <= len && c.head_matches(&mut file));
            let offset = match checkpoint {
                Some(c) => c.offset,
                None if first && self.flow.initial_position == InitialPosition::EndOfFile => len,
                None => 0,
            };
            let head = files::head(&mut file, files::HEAD_BYTES).unwrap_or((0, [0; 32]));
            self.generation += 1;
            self.tracked.insert(
                id,
                Tracked {
                    path,
                    file,
                    splitter: Splitter::new(offset, self.flow.skip_header_lines),
                    acks: Acks::at(offset),
                    generation: self.generation,
                    head,
                    gone: false,
                    in_flight: 0,
                },
            );
        }
        for (id, t) in &mut self.tracked {
            if !seen.contains(id) {
                t.gone = true;
            }
        }
        Ok(())
    }

    async fn read_and_send(&mut self, ack_tx: &mpsc::UnboundedSender<AckMsg>) {
        let mut ids: Vec<FileId> = self.tracked.keys().copied().collect();
        // The file being written is the newest the pattern matches; the
        // others are rotated: what they hold is all they will hold.
        let current = self
            .tracked
            .iter()
            .filter(|(_, t)| !t.gone)
            // Ties (mtimes are coarse) go to the shorter name: app.log
            // before app.log.1.
            .max_by_key(|(_, t)| {
                let modified = t.file.metadata().and_then(|m| m.modified()).ok();
                (modified, std::cmp::Reverse(t.path.as_os_str().len()))
            })
            .map(|(id, _)| *id);
        // Older files (rotated away) first.
        ids.sort_by_key(|id| {
            let t = &self.tracked[id];
            (!t.gone, t.file.metadata().and_then(|m| m.modified()).ok())
        });
        for id in ids {
            let mut cuts = Vec::new();
            let mut skipped = Vec::new();
            {
                let t = self.tracked.get_mut(&id).expect("tracked");
                let buf = &mut self.read_buf;
                let at = t.splitter.read_to();
                let n = t
                    .file
                    .seek(SeekFrom::Start(at))
                    .and_then(|_| t.file.read(buf))
                    .unwrap_or(0);
                t.splitter.push(&buf[..n]);
                // A rotated file ends at its end; the current one may grow.
                let eof = n == 0 && (t.gone || current != Some(id));
                t.splitter.cut(
                    self.flow.multi_line_start.as_ref(),
                    eof,
                    self.flow.max_record_bytes,
                    &mut cuts,
                    &mut skipped,
                );
                for (s, e) in skipped {
                    t.acks.ack(s, e);
                }
                if t.head.0 < files::HEAD_BYTES {
                    if let Ok(h) = files::head(&mut t.file, files::HEAD_BYTES) {
                        t.head = h;
                    }
                }
                t.in_flight += cuts.len();
            }
            let generation = self.tracked[&id].generation;
            for Cut { start, end, data } in cuts {
                self.stats.parsed.fetch_add(1, Ordering::Relaxed);
                let max = match self.flow.destination {
                    // The partition key counts too; the agent's keys are short.
                    Destination::Kinesis(_) => self.flow.max_record_bytes - 32,
                    Destination::Firehose(_) => self.flow.max_record_bytes,
                };
                let data = if self.flow.converters.is_empty() {
                    data
                } else {
                    match self.flow.converters.convert(&data, now_ms()) {
                        process::Outcome::Data(d) => d,
                        process::Outcome::Raw(why) => {
                            self.stats.conversion_errors.fetch_add(1, Ordering::Relaxed);
                            let _ = why;
                            data
                        }
                        process::Outcome::Skip => {
                            // Dropped, as the agent drops it: nothing to wait for.
                            self.stats.skipped.fetch_add(1, Ordering::Relaxed);
                            let t = self.tracked.get_mut(&id).expect("tracked");
                            t.in_flight -= 1;
                            t.acks.ack(start, end);
                            continue;
                        }
                    }
                };
                if data.len() > max {
                    self.stats.truncated.fetch_add(1, Ordering::Relaxed);
                }
                let data = files::truncate(data, max, &self.flow.truncated_record_terminator);
                let key = match self.flow.partition_keys {
                    PartitionKeys::Random => format!("{}", fastrand::f64() * 1_000_000.0),
                    PartitionKeys::Deterministic => Md5::digest(&data)
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect(),
                };
                let tx = ack_tx.clone();
                self.sender
                    .send(key, data, move |result| {
                        let _ = tx.send((id, generation, start, end, result));
                    })
                    .await;
            }
        }
    }

    fn acknowledge(&mut self, (id, generation, start, end, result): AckMsg) {
        match &result {
            Ok(len) => {
                self.stats.sent.fetch_add(1, Ordering::Relaxed);
                self.stats.bytes.fetch_add(*len as u64, Ordering::Relaxed);
            }
            Err(e) => {
                // Refused (not throttled: that is retried): said, and passed.
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                eprintln!(
                    "sluice agent: {}: a record was not put: {e}",
                    self.flow.id()
                );
            }
        }
        let id = self.redirects.get(&(id, generation)).copied().unwrap_or(id);
        if let Some(t) = self.tracked.get_mut(&id) {
            t.in_flight = t.in_flight.saturating_sub(1);
            if t.generation == generation || self.redirects.values().any(|r| *r == id) {
                t.acks.ack(start, end);
            }
        }
    }

    /// Files rotated away, read to their end and acknowledged, are done.
    fn drop_finished(&mut self) {
        self.tracked.retain(|_, t| {
            let end = t.file.metadata().map(|m| m.len()).unwrap_or(0);
            !(t.gone && t.in_flight == 0 && t.splitter.buffered() == 0 && t.acks.next >= end)
        });
    }

    fn save(&mut self, flow: &str) -> anyhow::Result<()> {
        let entries: Vec<FileCheckpoint> = self
            .tracked
            .iter()
            .map(|(id, t)| FileCheckpoint::new(&t.path, *id, t.head, t.acks.next))
            .collect();
        let mut store = self.checkpoints.lock().expect("checkpoints");
        store.set(flow, entries)
    }
}
