//! `sluice`: the command-line entry point.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod ctl;
mod records;
use ctl::Ctl;

#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    about = "A streaming-data platform that speaks Amazon Kinesis Data Streams and Firehose"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (Kinesis Data Streams and Firehose, on one port).
    Serve(Box<ServeArgs>),
    /// Load a Kinesis endpoint (Sluice, an emulator or AWS) and report
    /// throughput, latency and errors.
    Bench(Box<BenchArgs>),
    /// Put records into a stream (Sluice or AWS): a file or standard input,
    /// whole or line by line.
    Put(Box<records::PutArgs>),
    /// Print a stream's records in order per shard, following resharding and
    /// de-aggregating KPL records.
    Tail(Box<records::TailArgs>),
    /// Tail files into Kinesis streams and Firehose delivery streams, as the
    /// Kinesis Agent does, from its agent.json.
    Agent(Box<records::AgentArgs>),
    /// Offline tools that work on a data directory (stop the server first).
    Ctl {
        #[command(subcommand)]
        command: Ctl,
    },
}

#[derive(Debug, clap::Args)]
struct BenchArgs {
    /// The endpoint, `http://host:port` or `https://host`.
    #[arg(
        long,
        env = "SLUICE_BENCH_ENDPOINT",
        default_value = "http://127.0.0.1:4567"
    )]
    endpoint: String,
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    region: String,
    #[arg(long, env = "AWS_ACCESS_KEY_ID", default_value = "AKIDSLUICEBENCH")]
    access_key: String,
    #[arg(
        long,
        env = "AWS_SECRET_ACCESS_KEY",
        default_value = "sluice-bench",
        hide_env_values = true
    )]
    secret_key: String,
    /// The stream to use; created with --shards unless it exists (see --no-create).
    #[arg(long, default_value = "sluice-bench")]
    stream: String,
    #[arg(long, default_value_t = 4)]
    shards: u32,
    /// Use the stream as it is; fail if it does not exist.
    #[arg(long)]
    no_create: bool,
    /// Delete the stream afterwards.
    #[arg(long)]
    delete: bool,
    /// `put-records` (batches) or `put-record` (one record per request).
    #[arg(long, default_value = "put-records", value_parser = ["put-records", "put-record"])]
    producer: String,
    /// Bytes of data per record.
    #[arg(long, default_value_t = 100)]
    record_size: usize,
    /// Records per PutRecords request (1-500).
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Distinct partition keys.
    #[arg(long, default_value_t = 1000)]
    keys: usize,
    /// Producer connections, each with one request in flight.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// How long to produce, in seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Stop after this many records (or at --duration, whichever is first).
    #[arg(long)]
    records: Option<u64>,
    /// Target records per second in total [default: as fast as possible].
    #[arg(long)]
    rate: Option<u64>,
    /// `none`; `poll`: GetRecords on every shard; `subscribe`: a registered
    /// consumer and SubscribeToShard on every shard (enhanced fan-out). Both
    /// measure put -> seen latency.
    #[arg(long, default_value = "none", value_parser = ["none", "poll", "subscribe"])]
    consumer: String,
    /// After producing, read every shard back from TRIM_HORIZON and report
    /// the read throughput.
    #[arg(long)]
    read_back: bool,
    /// Pause between GetRecords calls that return nothing, in milliseconds
    /// (AWS allows 5 calls per shard per second).
    #[arg(long, default_value_t = 200)]
    poll_interval_ms: u64,
    /// Print the report as JSON instead of text.
    #[arg(long)]
    json: bool,
    /// What the producers speak: `json` (AWS JSON 1.1, as boto3, the CLI
    /// and the JavaScript SDK) or `cbor` (AWS CBOR 1.1, as the Java SDK, KCL
    /// and KPL). Everything else is JSON.
    #[arg(long, default_value = "json", value_parser = ["json", "cbor"])]
    protocol: String,
    /// No live progress bar.
    #[arg(long)]
    no_progress: bool,
    /// `kinesis` (PutRecords/PutRecord into --stream) or `firehose`
    /// (PutRecordBatch into --delivery-stream, an S3 destination with bucket
    /// `sluice-bench`).
    #[arg(long, default_value = "kinesis", value_parser = ["kinesis", "firehose"])]
    service: String,
    /// Firehose: the delivery stream; created unless it exists (see --no-create).
    #[arg(long, default_value = "sluice-bench")]
    delivery_stream: String,
    /// Firehose: BufferingHints of the delivery stream the bench creates.
    #[arg(long, default_value_t = 64)]
    buffer_mb: i64,
    #[arg(long, default_value_t = 60)]
    buffer_seconds: i64,
    /// Firehose: the bucket's directory (`<data-dir>/s3/sluice-bench` for a
    /// local Sluice), watched to measure put -> object-visible latency.
    #[arg(long)]
    bucket_dir: Option<std::path::PathBuf>,
    /// Firehose: how long to wait for the last objects after producing, in seconds.
    #[arg(long, default_value_t = 120.0)]
    drain: f64,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// A TOML file with any of the settings below (same names, `_` for `-`).
    /// Flags and environment variables override it.
    #[arg(long, env = "SLUICE_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:4567] (port 0 picks a free port;
    /// the chosen address is printed).
    #[arg(long, env = "SLUICE_LISTEN")]
    listen: Option<std::net::SocketAddr>,
    /// Where streams and records are stored; created if missing [default: ./sluice-data].
    #[arg(long, env = "SLUICE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The region of requests whose signature names none, and of streams
    /// from data directories written before regions [default: us-east-1].
    /// Signed requests are served in the region their signature is scoped to.
    #[arg(long, env = "SLUICE_REGION")]
    region: Option<String>,
    /// The account of callers whose access key is not a 12-digit account id
    /// and has no account configured [default: 000000000000].
    #[arg(long, env = "SLUICE_ACCOUNT_ID")]
    account_id: Option<String>,
    /// How long a new stream stays CREATING before it is ACTIVE, in milliseconds [default: 0].
    #[arg(long, env = "SLUICE_STREAM_CREATING_MS")]
    stream_creating_ms: Option<u64>,
    /// How long a stream stays UPDATING after a settings change, in milliseconds [default: 0].
    #[arg(long, env = "SLUICE_STREAM_UPDATING_MS")]
    stream_updating_ms: Option<u64>,
    /// How long a deleted stream stays DELETING, in milliseconds [default: 0].
    #[arg(long, env = "SLUICE_STREAM_DELETING_MS")]
    stream_deleting_ms: Option<u64>,
    /// How long a registered consumer stays CREATING before it is ACTIVE, in milliseconds [default: 0].
    #[arg(long, env = "SLUICE_CONSUMER_CREATING_MS")]
    consumer_creating_ms: Option<u64>,
    /// How long a deregistered consumer stays DELETING, in milliseconds [default: 0].
    #[arg(long, env = "SLUICE_CONSUMER_DELETING_MS")]
    consumer_deleting_ms: Option<u64>,
    /// Acknowledge writes once fsynced (`sync`), or once written and fsynced at most
    /// this many milliseconds later (a number) [default: sync].
    #[arg(long, env = "SLUICE_FSYNC")]
    fsync: Option<String>,
    /// Verify SigV4 signatures against these credentials,
    /// `ACCESS_KEY:SECRET_KEY[:ACCOUNT_ID]` (repeat, or comma-separate in the
    /// variable). Without any, every well-formed signature is accepted.
    #[arg(
        long = "credentials",
        env = "SLUICE_CREDENTIALS",
        value_delimiter = ','
    )]
    credentials: Vec<String>,
    /// Firehose's Lambda processor calls an HTTP URL instead of a Lambda
    /// function: `FUNCTION_ARN=URL` (repeat, or comma-separate in the
    /// variable). The URL gets the invocation event and answers as the
    /// function would.
    #[arg(
        long = "firehose-lambda",
        env = "SLUICE_FIREHOSE_LAMBDAS",
        value_delimiter = ','
    )]
    firehose_lambda: Vec<String>,
    /// A Firehose bucket on an S3-compatible endpoint instead of a
    /// directory under the data directory: `BUCKET=URL` (`*` for every
    /// bucket not named; repeat, or comma-separate in the variable), the URL
    /// `http[s]://[ACCESS_KEY:SECRET_KEY@]HOST[:PORT][?region=R&path_style=false]`;
    /// without credentials in it, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
    #[arg(
        long = "firehose-s3",
        env = "SLUICE_FIREHOSE_S3",
        value_delimiter = ','
    )]
    firehose_s3: Vec<String>,
    /// A table for Firehose's data format conversion, as Glue would hold
    /// it: `DATABASE.TABLE=COLUMNS`, the columns as Hive lists them (`id
    /// bigint, name string, tags array<string>`); repeat, or `;`-separate
    /// in the variable.
    #[arg(
        long = "firehose-table",
        env = "SLUICE_FIREHOSE_TABLES",
        value_delimiter = ';'
    )]
    firehose_table: Vec<String>,
    /// A Secrets Manager secret for Firehose, as a file:
    /// `SECRET_ARN=FILE` (repeat, or comma-separate in the variable). An
    /// HTTP endpoint's access key from that secret is the `api_key` of the
    /// JSON in FILE, read for each request.
    #[arg(
        long = "firehose-secret",
        env = "SLUICE_FIREHOSE_SECRETS",
        value_delimiter = ','
    )]
    firehose_secret: Vec<String>,
    /// Serve TLS with this PEM certificate chain (needs --tls-key); ALPN offers h2 and http/1.1.
    #[arg(long, env = "SLUICE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "SLUICE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Limits profile: `aws` or `off` [default: aws]. `aws`: per-shard write
    /// and read throughput (ProvisionedThroughputExceededException), enhanced
    /// fan-out's 2 MiB/s per consumer and shard, control-plane calls per
    /// second, 5 streams CREATING, and the daily UpdateShardCount and
    /// UpdateStreamMode rates (LimitExceededException).
    #[arg(long, env = "SLUICE_LIMITS", value_parser = ["aws", "off"])]
    limits: Option<String>,
    /// Serve the test controls under /_sluice/ (a virtual clock, fault
    /// injection, shard throttling, reset); see docs/test-controls.md.
    #[arg(long, env = "SLUICE_TEST_CONTROLS")]
    test_controls: bool,
    /// Open shards an account may have (DescribeLimits' ShardLimit) [default: 500].
    #[arg(long, env = "SLUICE_SHARD_LIMIT")]
    shard_limit: Option<u32>,
    /// ON_DEMAND streams an account may have [default: 50].
    #[arg(long, env = "SLUICE_ON_DEMAND_STREAM_LIMIT")]
    on_demand_stream_limit: Option<u32>,
    /// Under `aws` limits: bytes a shard may take per second [default: 1048576].
    #[arg(long, env = "SLUICE_SHARD_WRITE_BYTES_PER_SECOND")]
    shard_write_bytes_per_second: Option<u64>,
    /// Under `aws` limits: records a shard may take per second [default: 1000].
    #[arg(long, env = "SLUICE_SHARD_WRITE_RECORDS_PER_SECOND")]
    shard_write_records_per_second: Option<u64>,
    /// Under `aws` limits: bytes a shard may return per second [default: 2097152].
    #[arg(long, env = "SLUICE_SHARD_READ_BYTES_PER_SECOND")]
    shard_read_bytes_per_second: Option<u64>,
    /// Under `aws` limits: GetRecords calls per shard per second [default: 5].
    #[arg(long, env = "SLUICE_SHARD_GET_RECORDS_PER_SECOND")]
    shard_get_records_per_second: Option<u64>,
    /// Connections served at once; more wait in the listen backlog. Kept below
    /// the open-file limit minus what storage needs [default: 4096].
    #[arg(long, env = "SLUICE_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// A new connection must send a whole request head within this many
    /// milliseconds, and any later head within this long of its first byte [default: 10000].
    #[arg(long, env = "SLUICE_HEADER_TIMEOUT_MS")]
    header_timeout_ms: Option<u64>,
    /// Close a keep-alive connection idle this many milliseconds [default: 60000].
    #[arg(long, env = "SLUICE_IDLE_TIMEOUT_MS")]
    idle_timeout_ms: Option<u64>,
    /// A Firehose HTTP endpoint, or the S3-compatible endpoint of a bucket
    /// (--firehose-s3), must answer a request within this many
    /// milliseconds, else the request is retried [default: 180000].
    #[arg(long, env = "SLUICE_FIREHOSE_HTTP_TIMEOUT_MS")]
    firehose_http_timeout_ms: Option<u64>,
    /// A request body may stall this many milliseconds; beyond it, it must
    /// average --body-min-bytes-per-second [default: 10000].
    #[arg(long, env = "SLUICE_BODY_TIMEOUT_MS")]
    body_timeout_ms: Option<u64>,
    /// The slowest a request body may arrive, on average [default: 65536].
    #[arg(long, env = "SLUICE_BODY_MIN_BYTES_PER_SECOND")]
    body_min_bytes_per_second: Option<u64>,
    /// Bytes of request bodies held in memory at once, over all connections;
    /// more wait for room [default: 268435456].
    #[arg(long, env = "SLUICE_BODY_BYTES_IN_FLIGHT_MAX")]
    body_bytes_in_flight_max: Option<usize>,
    /// Size at which a shard's storage segment is sealed and a new one
    /// started; retention deletes whole segments [default: 67108864].
    #[arg(long, env = "SLUICE_SEGMENT_BYTES")]
    segment_bytes: Option<u64>,
    /// What the log on standard error shows: `error`, `warn`, `info`
    /// (startup, recovery, scaling, problems), `debug` (also a line per
    /// request: operation, stream, status, latency) or `trace`. RUST_LOG,
    /// when set, filters in its own syntax unless this is given [default: info].
    #[arg(long, env = "SLUICE_LOG_LEVEL", value_parser = ["off", "error", "warn", "info", "debug", "trace"])]
    log_level: Option<String>,
}

/// The `--config` file: the same settings as the flags.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<std::net::SocketAddr>,
    data_dir: Option<PathBuf>,
    region: Option<String>,
    account_id: Option<String>,
    stream_creating_ms: Option<u64>,
    stream_updating_ms: Option<u64>,
    stream_deleting_ms: Option<u64>,
    consumer_creating_ms: Option<u64>,
    consumer_deleting_ms: Option<u64>,
    fsync: Option<FsyncSetting>,
    #[serde(default)]
    credentials: Vec<String>,
    #[serde(default)]
    firehose_lambda: Vec<String>,
    #[serde(default)]
    firehose_s3: Vec<String>,
    #[serde(default)]
    firehose_table: Vec<String>,
    #[serde(default)]
    firehose_secret: Vec<String>,
    limits: Option<String>,
    shard_write_bytes_per_second: Option<u64>,
    shard_write_records_per_second: Option<u64>,
    shard_read_bytes_per_second: Option<u64>,
    shard_get_records_per_second: Option<u64>,
    test_controls: Option<bool>,
    shard_limit: Option<u32>,
    on_demand_stream_limit: Option<u32>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    max_connections: Option<usize>,
    header_timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    firehose_http_timeout_ms: Option<u64>,
    body_timeout_ms: Option<u64>,
    body_min_bytes_per_second: Option<u64>,
    body_bytes_in_flight_max: Option<usize>,
    segment_bytes: Option<u64>,
    log_level: Option<String>,
}

/// `fsync = "sync"` or `fsync = 20` (milliseconds) in the file.
#[derive(Debug, serde::Deserialize)]
#[serde(untagged)]
enum FsyncSetting {
    Text(String),
    Millis(u64),
}

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        // A reader that went away (`sluice ctl dump | head`) is not an error.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// `ARN=VALUE` settings (Firehose's stand-ins for Lambda functions and
/// secrets) by ARN; `form` says what a bad one should have been.
fn arn_map(
    pairs: &[String],
    form: &str,
) -> anyhow::Result<std::collections::HashMap<String, String>> {
    pairs
        .iter()
        .map(|pair| {
            pair.split_once('=')
                .filter(|(arn, value)| arn.starts_with("arn:") && !value.is_empty())
                .map(|(arn, value)| (arn.to_owned(), value.to_owned()))
                .ok_or_else(|| anyhow::anyhow!("{form}, not {pair:?}"))
        })
        .collect()
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let file: FileConfig = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
        None => FileConfig::default(),
    };
    init_logging(args.log_level.as_deref(), file.log_level.as_deref())?;
    let fsync = args.fsync.or(file.fsync.map(|f| match f {
        FsyncSetting::Text(t) => t,
        FsyncSetting::Millis(ms) => ms.to_string(),
    }));
    let durability = match fsync.as_deref().unwrap_or("sync") {
        "sync" => sluice_log::Durability::Sync,
        ms => sluice_log::Durability::Interval {
            fsync_interval_ms: ms.parse().map_err(|_| {
                anyhow::anyhow!("fsync takes `sync` or a number of milliseconds, not {ms:?}")
            })?,
        },
    };
    let limits = args.limits.or(file.limits).unwrap_or_else(|| "aws".into());
    if limits != "aws" && limits != "off" {
        anyhow::bail!("limits takes `aws` or `off`, not {limits:?}");
    }
    // A list given as flags (or variables) replaces the file's.
    let listed =
        |flags: Vec<String>, file: Vec<String>| if flags.is_empty() { file } else { flags };
    let pairs = listed(args.credentials, file.credentials);
    let firehose_lambdas = arn_map(
        &listed(args.firehose_lambda, file.firehose_lambda),
        "--firehose-lambda takes FUNCTION_ARN=URL",
    )?;
    let firehose_s3 = listed(args.firehose_s3, file.firehose_s3)
        .iter()
        .map(|spec| {
            sluice_server::RemoteBucket::parse(spec, |k| std::env::var(k).ok())
                .map_err(anyhow::Error::msg)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let tables = listed(args.firehose_table, file.firehose_table);
    let firehose_tables = sluice_server::Tables::parse(tables.iter().map(String::as_str))
        .map_err(anyhow::Error::msg)?;
    let firehose_secrets = arn_map(
        &listed(args.firehose_secret, file.firehose_secret),
        "--firehose-secret takes SECRET_ARN=FILE",
    )?
    .into_iter()
    .map(|(arn, path)| (arn, PathBuf::from(path)))
    .collect();
    let mut credentials = std::collections::BTreeMap::new();
    for pair in &pairs {
        let bad =
            || anyhow::anyhow!("credentials take ACCESS_KEY:SECRET_KEY[:ACCOUNT_ID], not {pair:?}");
        let (access, rest) = pair.split_once(':').ok_or_else(bad)?;
        let (secret, account_id) = match rest.split_once(':') {
            Some((secret, account)) if sluice_server::is_account_id(account) => {
                (secret, Some(account.to_owned()))
            }
            Some(_) => return Err(bad()),
            None => (rest, None),
        };
        if access.is_empty() || secret.is_empty() {
            return Err(bad());
        }
        credentials.insert(
            access.to_owned(),
            sluice_server::Credential {
                secret: secret.to_owned(),
                account_id,
            },
        );
    }
    let account_id = args
        .account_id
        .or(file.account_id)
        .unwrap_or_else(|| sluice_server::Config::default().account_id);
    if !sluice_server::is_account_id(&account_id) {
        anyhow::bail!("an account id is 12 digits, not {account_id:?}");
    }
    let tls = match (
        args.tls_cert.or(file.tls_cert),
        args.tls_key.or(file.tls_key),
    ) {
        (Some(cert), Some(key)) => Some(sluice_server::TlsFiles { cert, key }),
        (None, None) => None,
        _ => anyhow::bail!("TLS needs both a certificate (tls_cert) and a key (tls_key)"),
    };
    let defaults = sluice_server::Config::default();
    let region = args
        .region
        .or(file.region)
        .unwrap_or(defaults.region.clone());
    if !sluice_model::is_region(&region) {
        anyhow::bail!(
            "a region is lowercase letters, digits and inner hyphens (us-east-1), not {region:?}"
        );
    }
    let config = sluice_server::Config {
        credentials,
        firehose_lambdas,
        firehose_s3,
        firehose_tables,
        firehose_secrets,
        account_id,
        listen: args.listen.or(file.listen).unwrap_or(defaults.listen),
        data_dir: args
            .data_dir
            .or(file.data_dir)
            .unwrap_or(defaults.data_dir.clone()),
        region,
        stream_creating_ms: args
            .stream_creating_ms
            .or(file.stream_creating_ms)
            .unwrap_or(0),
        stream_updating_ms: args
            .stream_updating_ms
            .or(file.stream_updating_ms)
            .unwrap_or(0),
        stream_deleting_ms: args
            .stream_deleting_ms
            .or(file.stream_deleting_ms)
            .unwrap_or(0),
        consumer_creating_ms: args
            .consumer_creating_ms
            .or(file.consumer_creating_ms)
            .unwrap_or(0),
        consumer_deleting_ms: args
            .consumer_deleting_ms
            .or(file.consumer_deleting_ms)
            .unwrap_or(0),
        enforce_limits: limits == "aws",
        test_controls: args.test_controls || file.test_controls.unwrap_or(false),
        shard_limit: args
            .shard_limit
            .or(file.shard_limit)
            .unwrap_or(defaults.shard_limit),
        on_demand_stream_limit: args
            .on_demand_stream_limit
            .or(file.on_demand_stream_limit)
            .unwrap_or(defaults.on_demand_stream_limit),
        capacity: {
            let d = sluice_server::ShardCapacity::default();
            let positive = |v: Option<u64>, name: &str, default: u64| -> anyhow::Result<u64> {
                match v {
                    Some(0) => anyhow::bail!("{name} must be at least 1"),
                    Some(v) => Ok(v),
                    None => Ok(default),
                }
            };
            sluice_server::ShardCapacity {
                write_bytes_per_s: positive(
                    args.shard_write_bytes_per_second
                        .or(file.shard_write_bytes_per_second),
                    "shard_write_bytes_per_second",
                    d.write_bytes_per_s,
                )?,
                write_records_per_s: positive(
                    args.shard_write_records_per_second
                        .or(file.shard_write_records_per_second),
                    "shard_write_records_per_second",
                    d.write_records_per_s,
                )?,
                read_bytes_per_s: positive(
                    args.shard_read_bytes_per_second
                        .or(file.shard_read_bytes_per_second),
                    "shard_read_bytes_per_second",
                    d.read_bytes_per_s,
                )?,
                get_records_per_s: positive(
                    args.shard_get_records_per_second
                        .or(file.shard_get_records_per_second),
                    "shard_get_records_per_second",
                    d.get_records_per_s,
                )?,
                ..d
            }
        },
        durability,
        tls,
        max_connections: args
            .max_connections
            .or(file.max_connections)
            .unwrap_or(defaults.max_connections),
        header_timeout_ms: args
            .header_timeout_ms
            .or(file.header_timeout_ms)
            .unwrap_or(defaults.header_timeout_ms),
        idle_timeout_ms: args
            .idle_timeout_ms
            .or(file.idle_timeout_ms)
            .unwrap_or(defaults.idle_timeout_ms),
        firehose_http_timeout_ms: args
            .firehose_http_timeout_ms
            .or(file.firehose_http_timeout_ms)
            .unwrap_or(defaults.firehose_http_timeout_ms),
        body_timeout_ms: args
            .body_timeout_ms
            .or(file.body_timeout_ms)
            .unwrap_or(defaults.body_timeout_ms),
        body_min_bytes_per_second: args
            .body_min_bytes_per_second
            .or(file.body_min_bytes_per_second)
            .unwrap_or(defaults.body_min_bytes_per_second),
        body_bytes_in_flight_max: args
            .body_bytes_in_flight_max
            .or(file.body_bytes_in_flight_max)
            .unwrap_or(defaults.body_bytes_in_flight_max),
        segment_bytes: args
            .segment_bytes
            .or(file.segment_bytes)
            .unwrap_or(defaults.segment_bytes),
        ..defaults
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let server =
            // A clock the test controls can freeze; wall time until then.
            sluice_server::Server::start(
                config,
                std::sync::Arc::new(sluice_model::ControlledClock::default()),
            )
                .await?;
        println!("sluice listening on {}", server.local_addr());
        std::io::stdout().flush()?;
        // Stop cleanly on Ctrl-C or SIGTERM (what service managers and tests send).
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r?,
            _ = term.recv() => {}
        }
        tracing::info!("stopping: open requests finish, then a checkpoint");
        server.stop().await;
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// Logs to standard error: `--log-level` (or SLUICE_LOG_LEVEL) if given, else
/// RUST_LOG if set (its own syntax, per module), else the config file's
/// `log_level`, else `info`. A level applies to Sluice's own modules; the
/// libraries under it (hyper, h2) log their warnings only.
fn init_logging(flag: Option<&str>, file: Option<&str>) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let rust_log = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let filter = match (flag, rust_log) {
        (None, Some(rust_log)) => EnvFilter::try_new(&rust_log)
            .map_err(|e| anyhow::anyhow!("RUST_LOG={rust_log:?}: {e}"))?,
        (flag, _) => {
            let level = flag.or(file).unwrap_or("info");
            if !["off", "error", "warn", "info", "debug", "trace"].contains(&level) {
                anyhow::bail!(
                    "log_level {level:?}: expected off, error, warn, info, debug or trace"
                );
            }
            let libraries = if level == "off" { "off" } else { "warn" };
            EnvFilter::try_new(format!(
                "{libraries},sluice={level},sluice_server={level},sluice_log={level},sluice_meta={level}"
            ))?
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init()
        .map_err(|e| anyhow::anyhow!("starting the log: {e}"))
}

fn bench_firehose(args: BenchArgs, target: sluice_bench::Target) -> anyhow::Result<ExitCode> {
    if !(args.drain >= 0.0 && args.drain.is_finite()) {
        anyhow::bail!("--drain must be a number of seconds");
    }
    let workload = sluice_bench::firehose::FirehoseWorkload {
        delivery_stream: args.delivery_stream,
        create: !args.no_create,
        delete: args.delete,
        record_size: args.record_size,
        batch: args.batch,
        concurrency: args.concurrency,
        duration: std::time::Duration::from_secs_f64(args.duration),
        records: args.records,
        buffer_mb: args.buffer_mb,
        buffer_seconds: args.buffer_seconds,
        bucket_dir: args.bucket_dir,
        drain: std::time::Duration::from_secs_f64(args.drain),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(sluice_bench::firehose::run(target, workload))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.human());
    }
    Ok(ExitCode::SUCCESS)
}

fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if !(args.duration > 0.0 && args.duration.is_finite()) {
        anyhow::bail!("--duration must be a positive number of seconds");
    }
    let target = sluice_bench::Target {
        endpoint: args.endpoint.clone(),
        region: args.region.clone(),
        access_key: args.access_key.clone(),
        secret_key: args.secret_key.clone(),
        session_token: None,
    };
    if args.service == "firehose" {
        return bench_firehose(args, target);
    }
    let workload = sluice_bench::Workload {
        stream: args.stream,
        shards: args.shards,
        create: !args.no_create,
        delete: args.delete,
        producer: if args.producer == "put-record" {
            sluice_bench::Producer::PutRecord
        } else {
            sluice_bench::Producer::PutRecords
        },
        record_size: args.record_size,
        batch: args.batch,
        keys: args.keys,
        concurrency: args.concurrency,
        duration: std::time::Duration::from_secs_f64(args.duration),
        records: args.records,
        rate: args.rate,
        consumer: match args.consumer.as_str() {
            "poll" => sluice_bench::Consumer::Poll,
            "subscribe" => sluice_bench::Consumer::Subscribe,
            _ => sluice_bench::Consumer::None,
        },
        read_back: args.read_back,
        cbor: args.protocol == "cbor",
        poll_interval: std::time::Duration::from_millis(args.poll_interval_ms),
        progress: !args.no_progress && !args.json,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(sluice_bench::run(target, workload))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        for warning in report.warnings() {
            eprintln!("warning: {warning}");
        }
    } else {
        print!("{}", report.human());
    }
    Ok(ExitCode::SUCCESS)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Bench(args) => bench(*args),
        Command::Put(args) => records::put(*args),
        Command::Tail(args) => records::tail(*args),
        Command::Agent(args) => records::agent(*args),
        Command::Ctl { command } => ctl::run(command),
    }
}
