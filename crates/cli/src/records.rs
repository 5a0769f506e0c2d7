//! `sluice put` and `sluice tail`: records into and out of a stream on any
//! Kinesis endpoint, through the client crate.

use std::io::{BufRead, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use base64::Engine;
use sluice_client::api::StreamRef;
use sluice_client::consumer::{self, Batch, ConsumerConfig, Handler, StartingPosition};
use sluice_client::large::{LargeProducer, Mode, Store};
use sluice_client::producer::{Producer, ProducerConfig, Record};
use sluice_client::{Api, Target};

/// Where and as whom: shared by put and tail.
#[derive(Debug, clap::Args)]
pub struct Endpoint {
    /// The endpoint [default: AWS_ENDPOINT_URL_KINESIS, AWS_ENDPOINT_URL,
    /// or http://127.0.0.1:4567].
    #[arg(long)]
    endpoint: Option<String>,
    /// The region [default: AWS_REGION, AWS_DEFAULT_REGION, the profile's, or us-east-1].
    #[arg(long)]
    region: Option<String>,
    /// The profile of ~/.aws/credentials and ~/.aws/config to use
    /// [default: AWS_PROFILE or default].
    #[arg(long)]
    profile: Option<String>,
}

impl Endpoint {
    /// The target: flags, then the environment and profile files as the AWS
    /// CLI reads them. Without any keys, placeholder ones (Sluice without
    /// configured credentials accepts any).
    fn target(&self) -> Target {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let found = sluice_client::credentials::discover_with(|name| {
            if name == "AWS_PROFILE" {
                if let Some(p) = &self.profile {
                    return Some(p.clone());
                }
            }
            env(name)
        });
        Target {
            endpoint: self
                .endpoint
                .clone()
                .or_else(|| env("AWS_ENDPOINT_URL_KINESIS"))
                .or_else(|| env("AWS_ENDPOINT_URL"))
                .unwrap_or_else(|| "http://127.0.0.1:4567".into()),
            region: self
                .region
                .clone()
                .or(found.region)
                .unwrap_or_else(|| "us-east-1".into()),
            access_key: found.access_key.unwrap_or_else(|| "sluice".into()),
            secret_key: found.secret_key.unwrap_or_else(|| "sluice".into()),
            session_token: found.session_token,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct PutArgs {
    /// The stream's name or ARN.
    #[arg(long)]
    stream: String,
    /// Read this file [default: standard input].
    #[arg(long)]
    file: Option<PathBuf>,
    /// Each line is a record (without its line ending); otherwise the whole
    /// input is one record.
    #[arg(long)]
    lines: bool,
    /// Every record's partition key [default: a random one per record].
    /// One key keeps the records in order, also when retried: without
    /// --aggregate that is one record per round trip.
    #[arg(long)]
    partition_key: Option<String>,
    /// Every record's explicit hash key (a decimal below 2^128).
    #[arg(long)]
    explicit_hash_key: Option<String>,
    /// Pack records into KPL aggregated records (consumers must de-aggregate:
    /// the KCL, Lambda, Firehose and `sluice tail` do).
    #[arg(long)]
    aggregate: bool,
    /// Do not keep a partition key's records in order when retried (more
    /// records per request with one key).
    #[arg(long)]
    unordered: bool,
    /// How long a record waits for others to fill its request, in ms.
    #[arg(long, default_value_t = 50)]
    linger_ms: u64,
    /// Connections, each with one request in flight.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Give up on a record retried this long, in seconds [default: 0,
    /// never: throttling is waited out, refusals fail at once].
    #[arg(long, default_value_t = 0)]
    record_ttl: u64,
    /// Records larger than the stream takes: auto (as is if it fits, else
    /// zstd if that fits, else a claim check when --large-store is given,
    /// else chunks), compress, claim-check, chunk, or off (refused).
    #[arg(long, default_value = "auto", value_parser = ["auto", "compress", "claim-check", "chunk", "off"])]
    large_records: String,
    /// --large-records compress: gzip, zstd, lz4 or snappy.
    #[arg(long, default_value = "zstd")]
    codec: String,
    #[command(flatten)]
    store: StoreArgs,
    /// The largest record read from the input, in MiB.
    #[arg(long, default_value_t = 256)]
    max_record_mib: u64,
    #[command(flatten)]
    endpoint: Endpoint,
}

/// Where claim checks' objects are.
#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    /// A directory, or s3://BUCKET[?endpoint=URL&region=REGION] (keys as for
    /// the stream) [default: ~/.local/share/sluice/large-records].
    #[arg(long)]
    large_store: Option<String>,
}

/// The bucket name claim checks use in a local directory.
const LOCAL_BUCKET: &str = "sluice-large-records";

impl StoreArgs {
    fn store(&self, target: &Target) -> anyhow::Result<Store> {
        let Some(spec) = &self.large_store else {
            let base = std::env::var_os("XDG_DATA_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
                .ok_or_else(|| {
                    anyhow::anyhow!("no HOME to keep large records under: give --large-store")
                })?;
            return Store::local(&base.join("sluice/large-records"), LOCAL_BUCKET)
                .map_err(anyhow::Error::msg);
        };
        if let Some(rest) = spec.strip_prefix("s3://") {
            let (bucket, query) = rest.split_once('?').unwrap_or((rest, ""));
            let bucket = bucket.trim_end_matches('/');
            let (mut endpoint, mut region) = (None, target.region.clone());
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                match pair.split_once('=') {
                    Some(("endpoint", v)) => endpoint = Some(v.to_owned()),
                    Some(("region", v)) => region = v.to_owned(),
                    _ => anyhow::bail!(
                        "--large-store s3://BUCKET takes endpoint= and region=, not {pair:?}"
                    ),
                }
            }
            return Store::s3(
                bucket,
                endpoint.as_deref(),
                &region,
                (
                    &target.access_key,
                    &target.secret_key,
                    target.session_token.as_deref(),
                ),
            )
            .map_err(anyhow::Error::msg);
        }
        let dir = spec.strip_prefix("file://").unwrap_or(spec);
        Store::local(std::path::Path::new(dir), LOCAL_BUCKET).map_err(anyhow::Error::msg)
    }
}

pub fn put(args: PutArgs) -> anyhow::Result<ExitCode> {
    let target = args.endpoint.target();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(put_async(args, target))
}

async fn put_async(args: PutArgs, target: Target) -> anyhow::Result<ExitCode> {
    let (input, size): (Box<dyn Read + Send>, Option<u64>) = match &args.file {
        Some(path) => {
            let file = std::fs::File::open(path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
            let size = file.metadata().ok().map(|m| m.len());
            (Box::new(file), size)
        }
        None => (Box::new(std::io::stdin()), None),
    };
    let stream = StreamRef::new(&args.stream);
    let mut api = Api::connect(std::sync::Arc::new(target.clone()))
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e}", target.endpoint))?;
    let limits = api
        .stream_limits(&stream)
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e}", target.endpoint))?;
    let mode = match args.large_records.as_str() {
        "off" => Mode::Off,
        "compress" => Mode::Compress(args.codec.parse().map_err(anyhow::Error::msg)?),
        "claim-check" => Mode::ClaimCheck,
        "chunk" => Mode::Chunk,
        _ => Mode::Auto,
    };
    // Claim checks in auto mode only where the user said to keep them.
    let store = match mode {
        Mode::ClaimCheck => Some(args.store.store(&target)?),
        Mode::Auto if args.store.large_store.is_some() => Some(args.store.store(&target)?),
        _ => None,
    };
    let mut config = ProducerConfig::new(&args.stream);
    config.aggregate = args.aggregate;
    config.ordered = !args.unordered;
    config.linger = Duration::from_millis(args.linger_ms);
    config.connections = args.connections.max(1);
    config.record_ttl = (args.record_ttl > 0).then(|| Duration::from_secs(args.record_ttl));
    config.max_record_bytes = limits.max_record_bytes;
    let producer = Producer::start(target.clone(), config)
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e}", target.endpoint))?;
    let producer = LargeProducer::new(
        producer,
        mode,
        store.clone(),
        &args.stream,
        limits.max_record_bytes,
    );
    let metrics = producer.producer().metrics();
    let bar = progress(size);
    let started = Instant::now();
    // Records are read on a blocking thread and handed over in order.
    // Batches of lines (at most 1000 or 1 MiB each, or one record), a few
    // at a time: memory stays bounded whatever the input.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Vec<u8>>>(4);
    let lines = args.lines;
    let reader_bar = bar.clone();
    let max_input = args.max_record_mib.saturating_mul(1 << 20);
    let reader = tokio::task::spawn_blocking(move || {
        read_records(input, lines, max_input, &tx, &reader_bar)
    });
    let (mut failed, mut first_error) = (0u64, None::<String>);
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    while let Some(batch) = rx.recv().await {
        for data in batch {
            let record = Record {
                partition_key: args
                    .partition_key
                    .clone()
                    .unwrap_or_else(|| format!("{:032x}", fastrand::u128(..))),
                explicit_hash_key: args.explicit_hash_key.clone(),
                data,
            };
            let len = record.data.len() as u64;
            let receipt = match producer.send(record).await {
                Ok(r) => r,
                Err(e) => {
                    failed += 1;
                    first_error.get_or_insert(e.to_string());
                    continue;
                }
            };
            let done = done_tx.clone();
            tokio::spawn(async move {
                let _ = done.send(receipt.wait().await.map(|_| len));
            });
        }
    }
    reader.await??;
    drop(done_tx);
    producer.producer().flush().await;
    let (mut records, mut bytes) = (0u64, 0u64);
    while let Some(result) = done_rx.recv().await {
        if let Ok(len) = result {
            records += 1;
            bytes += len;
        }
        if let Err(e) = result {
            failed += 1;
            first_error.get_or_insert(e.to_string());
        }
    }
    producer.into_producer().close().await;
    bar.finish_and_clear();
    // Objects the stream no longer points to (older than its retention).
    if let Some(store) = &store {
        let prefix = args.stream.rsplit('/').next().unwrap_or(&args.stream);
        let before = std::time::SystemTime::now() - limits.retention;
        match store.sweep(prefix, before).await {
            Ok(0) => {}
            Ok(n) => eprintln!("swept {n} claim-check objects older than the stream's retention"),
            Err(e) => eprintln!("warning: sweeping old claim-check objects: {e}"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64().max(1e-6);
    eprintln!(
        "put {records} records ({bytes} bytes) into {} in {elapsed:.2} s: {:.0} records/s, {:.1} MB/s; \
         {} entries sent (retries included) in {} requests, {} entries retried, {failed} records failed",
        args.stream,
        records as f64 / elapsed,
        bytes as f64 / elapsed / 1e6,
        metrics.entries.load(Ordering::Relaxed),
        metrics.requests.load(Ordering::Relaxed),
        metrics.retries.load(Ordering::Relaxed),
    );
    if let Some(e) = first_error {
        eprintln!("error: {failed} records were not put; the first: {e}");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn progress(size: Option<u64>) -> indicatif::ProgressBar {
    let bar = match size {
        // Files of a megabyte or more show a bar (on a terminal only).
        Some(n) if n >= 1 << 20 => indicatif::ProgressBar::new(n),
        _ => return indicatif::ProgressBar::hidden(),
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {elapsed_precise}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// Reads the input as records and sends them, in order.
fn read_records(
    input: Box<dyn Read + Send>,
    lines: bool,
    max: u64,
    tx: &tokio::sync::mpsc::Sender<Vec<Vec<u8>>>,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<()> {
    let mut input = std::io::BufReader::with_capacity(1 << 20, input);
    if !lines {
        let mut data = Vec::new();
        (&mut input).take(max + 1).read_to_end(&mut data)?;
        if data.len() as u64 > max {
            anyhow::bail!("the input is more than --max-record-mib ({max} bytes); use --lines?");
        }
        bar.inc(data.len() as u64);
        let _ = tx.blocking_send(vec![data]);
        return Ok(());
    }
    let (mut batch, mut batch_bytes) = (Vec::new(), 0usize);
    loop {
        let mut line = Vec::new();
        let n = (&mut input).take(max + 1).read_until(b'\n', &mut line)?;
        if n == 0 {
            if !batch.is_empty() {
                let _ = tx.blocking_send(batch);
            }
            return Ok(());
        }
        if line.len() as u64 > max {
            anyhow::bail!("a line is longer than --max-record-mib ({max} bytes)");
        }
        bar.inc(n as u64);
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        batch_bytes += line.len();
        batch.push(line);
        if batch.len() >= 1000 || batch_bytes >= 1 << 20 {
            if tx.blocking_send(std::mem::take(&mut batch)).is_err() {
                return Ok(());
            }
            batch_bytes = 0;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The data, then a newline.
    Raw,
    /// One JSON object per record (data as text when it is UTF-8, else base64).
    Json,
    /// Shard, sequence number, partition key, then the data in hex.
    Hex,
}

#[derive(Debug, clap::Args)]
pub struct TailArgs {
    /// The stream's name or ARN.
    #[arg(long)]
    stream: String,
    /// trim-horizon, latest, a time (RFC 3339, or seconds since the epoch),
    /// or a sequence number (its shard from there, then its descendants).
    #[arg(long, default_value = "trim-horizon")]
    from: String,
    /// Keep reading new records (until interrupted); otherwise stop at the tip.
    #[arg(long)]
    follow: bool,
    #[arg(long, value_enum, default_value = "raw")]
    format: Format,
    /// Print KPL aggregated records as stored instead of their user records.
    #[arg(long)]
    no_deaggregate: bool,
    /// Stop after this many records.
    #[arg(long)]
    max_records: Option<u64>,
    /// Print large-record envelopes as stored instead of what they carry.
    #[arg(long)]
    no_large_records: bool,
    #[command(flatten)]
    store: StoreArgs,
    /// How long the chunks of a message may take to all arrive, in seconds.
    #[arg(long, default_value_t = 300)]
    chunk_timeout: u64,
    /// Read by enhanced fan-out (SubscribeToShard) as this consumer,
    /// registered if it is not; otherwise GetRecords polling.
    #[arg(long, value_name = "CONSUMER")]
    efo: Option<String>,
    #[command(flatten)]
    endpoint: Endpoint,
}

/// A starting position from its text.
pub fn starting_position(from: &str) -> anyhow::Result<StartingPosition> {
    match from {
        "trim-horizon" | "TRIM_HORIZON" => return Ok(StartingPosition::TrimHorizon),
        "latest" | "LATEST" => return Ok(StartingPosition::Latest),
        _ => {}
    }
    // Sequence numbers are long decimals (AWS's have 56 digits); seconds
    // since the epoch are short.
    if from.len() >= 20 && from.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(StartingPosition::AtSequence(from.to_owned()));
    }
    if let Ok(seconds) = from.parse::<f64>() {
        if seconds.is_finite() && seconds >= 0.0 {
            return Ok(StartingPosition::AtTimestamp(seconds));
        }
    }
    if let Ok(t) = from.parse::<jiff::Timestamp>() {
        return Ok(StartingPosition::AtTimestamp(
            t.as_millisecond() as f64 / 1000.0,
        ));
    }
    anyhow::bail!(
        "--from takes trim-horizon, latest, a time (2026-12-05T10:00:00Z or seconds since the epoch) \
         or a sequence number, not {from:?}"
    )
}

pub fn tail(args: TailArgs) -> anyhow::Result<ExitCode> {
    let target = args.endpoint.target();
    let mut config = ConsumerConfig::new(&args.stream, starting_position(&args.from)?);
    config.follow = args.follow;
    config.deaggregate = !args.no_deaggregate;
    config.idle_poll = Duration::from_millis(250);
    config.efo = args.efo.clone();
    config.large = if args.no_large_records {
        None
    } else {
        Some(consumer::LargeRead {
            store: Some(args.store.store(&target)?),
            chunk_timeout: Duration::from_secs(args.chunk_timeout),
            ..consumer::LargeRead::default()
        })
    };
    let printer = Printer {
        out: std::io::BufWriter::new(std::io::stdout()),
        format: args.format,
        left: args.max_records,
        problems: Default::default(),
    };
    let problems = printer.problems.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match runtime.block_on(consumer::consume(target, config, printer)) {
        Ok(()) => {}
        Err(consumer::ConsumeError::Handler(e)) if e.is::<Enough>() => {}
        Err(consumer::ConsumeError::Handler(e)) => return Err(e),
        Err(e) => return Err(e.into()),
    }
    match problems.load(Ordering::Relaxed) {
        0 => Ok(ExitCode::SUCCESS),
        n => {
            eprintln!("error: {n} large records could not be made whole");
            Ok(ExitCode::from(1))
        }
    }
}

/// --max-records reached.
#[derive(Debug)]
struct Enough;

impl std::fmt::Display for Enough {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("enough records")
    }
}

impl std::error::Error for Enough {}

struct Printer {
    out: std::io::BufWriter<std::io::Stdout>,
    format: Format,
    left: Option<u64>,
    /// Large records that could not be made whole.
    problems: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Handler for Printer {
    async fn records(&mut self, batch: Batch) -> anyhow::Result<()> {
        for r in &batch.records {
            if self.left == Some(0) {
                self.out.flush()?;
                return Err(Enough.into());
            }
            match self.format {
                Format::Raw => {
                    self.out.write_all(&r.data)?;
                    self.out.write_all(b"\n")?;
                }
                Format::Json => {
                    let mut line = serde_json::Map::new();
                    line.insert("shardId".into(), batch.shard_id.clone().into());
                    line.insert("sequenceNumber".into(), r.sequence_number.clone().into());
                    if let Some(sub) = r.sub_sequence_number {
                        line.insert("subSequenceNumber".into(), sub.into());
                    }
                    line.insert("partitionKey".into(), r.partition_key.clone().into());
                    if let Some(h) = &r.explicit_hash_key {
                        line.insert("explicitHashKey".into(), h.clone().into());
                    }
                    if let Some(t) = r.arrival {
                        line.insert("approximateArrivalTimestamp".into(), t.into());
                    }
                    match std::str::from_utf8(&r.data) {
                        Ok(text) => line.insert("data".into(), text.into()),
                        Err(_) => line.insert(
                            "dataBase64".into(),
                            base64::engine::general_purpose::STANDARD
                                .encode(&r.data)
                                .into(),
                        ),
                    };
                    serde_json::to_writer(&mut self.out, &line)?;
                    self.out.write_all(b"\n")?;
                }
                Format::Hex => {
                    let sub = r
                        .sub_sequence_number
                        .map(|s| format!(":{s}"))
                        .unwrap_or_default();
                    write!(
                        self.out,
                        "{} {}{sub} {} ",
                        batch.shard_id, r.sequence_number, r.partition_key
                    )?;
                    for b in &r.data {
                        write!(self.out, "{b:02x}")?;
                    }
                    self.out.write_all(b"\n")?;
                }
            }
            if let Some(left) = &mut self.left {
                *left -= 1;
            }
        }
        self.out.flush()?;
        if self.left == Some(0) {
            return Err(Enough.into());
        }
        Ok(())
    }

    /// Said on standard error; the records go on.
    fn problem(&mut self, problem: sluice_client::large::Problem) -> anyhow::Result<()> {
        self.problems.fetch_add(1, Ordering::Relaxed);
        eprintln!("warning: {problem}");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starting_positions() {
        assert_eq!(
            starting_position("trim-horizon").unwrap(),
            StartingPosition::TrimHorizon
        );
        assert_eq!(
            starting_position("latest").unwrap(),
            StartingPosition::Latest
        );
        assert_eq!(
            starting_position("1764928800").unwrap(),
            StartingPosition::AtTimestamp(1764928800.0)
        );
        assert_eq!(
            starting_position("2026-12-05T10:00:00Z").unwrap(),
            StartingPosition::AtTimestamp(1796464800.0)
        );
        let seq = "49590338271490256608559692538361571095921575989136588898";
        assert_eq!(
            starting_position(seq).unwrap(),
            StartingPosition::AtSequence(seq.into())
        );
        assert!(starting_position("yesterday").is_err());
        assert!(starting_position("-5").is_err());
    }
}

#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// The Kinesis Agent's agent.json.
    #[arg(long, default_value = "/etc/aws-kinesis/agent.json")]
    config: PathBuf,
    /// Where checkpoints are kept [default: agent.json's checkpointFile, or
    /// ~/.local/share/sluice/agent-checkpoints.json].
    #[arg(long)]
    checkpoints: Option<PathBuf>,
    /// How often progress is said, in seconds (0: never).
    #[arg(long, default_value_t = 30)]
    progress_seconds: u64,
    #[command(flatten)]
    endpoint: Endpoint,
}

/// `sluice agent`: runs until interrupted (SIGINT or SIGTERM), then sends
/// what it read, waits for it to be acknowledged and checkpoints.
pub fn agent(args: AgentArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.config)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", args.config.display()))?;
    let config = sluice_agent::config::AgentConfig::parse(&text)?;
    config.flows()?;
    let mut target = args.endpoint.target();
    if let (Some(key), Some(secret)) = (&config.aws_access_key_id, &config.aws_secret_access_key) {
        target.access_key = key.clone();
        target.secret_key = secret.clone();
        target.session_token = config.aws_session_token.clone();
    }
    let endpoint_given = args.endpoint.endpoint.is_some();
    let mut kinesis = target.clone();
    let mut firehose = target;
    if !endpoint_given {
        if let Some(e) = &config.kinesis_endpoint {
            kinesis.endpoint = with_scheme(e);
        }
        if let Some(e) = &config.firehose_endpoint {
            firehose.endpoint = with_scheme(e);
        }
    }
    let checkpoints = match args
        .checkpoints
        .or(config.checkpoint_file.as_ref().map(PathBuf::from))
    {
        Some(p) => p,
        None => std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
            .ok_or_else(|| anyhow::anyhow!("no HOME for the checkpoints: give --checkpoints"))?
            .join("sluice/agent-checkpoints.json"),
    };
    let options = sluice_agent::Options {
        checkpoints,
        poll: Duration::from_millis(100),
        kinesis,
        firehose,
        progress: (args.progress_seconds > 0).then(|| Duration::from_secs(args.progress_seconds)),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("a SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            eprintln!("sluice agent: stopping: sending what was read, then a checkpoint");
            let _ = stop_tx.send(true);
        });
        for (i, flow) in config.flows.iter().enumerate() {
            for key in flow.other.keys() {
                eprintln!("sluice agent: warning: flows[{i}].{key} is not a setting Sluice knows; ignored");
            }
        }
        eprintln!("sluice agent: running {} flows", config.flows.len());
        let stats = sluice_agent::run(&config, options, stop).await?;
        eprintln!("sluice agent: stopped: {}", stats.line());
        Ok(if stats.failed.load(Ordering::Relaxed) > 0 {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        })
    })
}

/// agent.json's endpoints may leave out the scheme (`kinesis.us-east-1.amazonaws.com`).
fn with_scheme(endpoint: &str) -> String {
    if endpoint.starts_with("http://") || endpoint.starts_with("https://") {
        endpoint.to_owned()
    } else {
        format!("https://{endpoint}")
    }
}
