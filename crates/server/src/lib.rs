//! Sluice's Kinesis API server: accepts AWS JSON 1.1 and CBOR requests over
//! HTTP/1.1 and HTTP/2 (h2c with prior knowledge) on one port and answers
//! them from the engine (`sluice-streams`).
//!
//! Layers: [`Server`] (listener, connections) -> `service` (routing, body
//! limit, SigV4, decoding and validation by `sluice-aws`, limits, encoding)
//! -> `sluice_streams::ops` (one function per operation, typed) ->
//! `sluice_streams::Engine` (catalog, shard logs, clock, iterator key).

mod admin;
mod auth;
mod conn;
mod cors;
mod encode;
mod events;
mod metrics;
mod service;
mod state;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use sluice_model::Clock;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use sluice_firehose::{RemoteBucket, Tables};
pub use sluice_streams::ShardCapacity;
pub use state::{State, StateError};
pub use tls::TlsFiles;

/// Everything `sluice serve` can be told.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// The region of requests whose signature names none (a signed request
    /// is served in the region its signature is scoped to).
    pub region: String,
    /// The account of callers whose access key names none (see [`Config::account_for`]).
    pub account_id: String,
    /// How long a new stream stays CREATING before it turns ACTIVE.
    pub stream_creating_ms: u64,
    /// How long a stream stays UPDATING after a settings change (encryption, record size).
    pub stream_updating_ms: u64,
    /// How long a deleted stream stays DELETING before it is gone (0: at once).
    pub stream_deleting_ms: u64,
    /// How long a registered consumer stays CREATING before it turns ACTIVE.
    pub consumer_creating_ms: u64,
    /// How long a deregistered consumer stays DELETING before it is gone (0: at once).
    pub consumer_deleting_ms: u64,
    /// The `aws` limits profile (true) or `off`: per-shard write and read
    /// throughput ([`ShardCapacity`]) and fan-out's 2 MiB/s per consumer and shard.
    pub enforce_limits: bool,
    /// What one shard may do per second under the `aws` profile.
    pub capacity: ShardCapacity,
    /// Serve the test controls under `/_sluice/` (virtual clock, faults,
    /// throttling, reset). Give the server a controllable clock
    /// (`sluice_model::ControlledClock`) for the clock control to work.
    pub test_controls: bool,
    /// Largest request body accepted (PutRecords' 10 MiB of data, base64-encoded, fits).
    pub request_body_max_bytes: usize,
    pub durability: sluice_log::Durability,
    /// A shard's storage segment is sealed once it reaches this size
    /// (retention deletes whole segments).
    pub segment_bytes: u64,
    /// What DescribeLimits reports (AWS's defaults).
    pub shard_limit: u32,
    pub on_demand_stream_limit: u32,
    /// How often expired records are trimmed and deleted streams swept (wall time).
    pub retention_check_ms: u64,
    /// Access key -> secret key (and account). Empty: any well-formed
    /// signature is accepted.
    pub credentials: std::collections::BTreeMap<String, Credential>,
    /// Serve TLS (ALPN h2 and http/1.1) with this certificate and key.
    pub tls: Option<TlsFiles>,
    /// Most connections served at once; more wait in the listen backlog.
    /// Also kept below the process's open-file limit (see [`connection_cap`]).
    pub max_connections: usize,
    /// A new connection must deliver its first request head within this
    /// long, and any later head within this long of its first byte.
    pub header_timeout_ms: u64,
    /// A keep-alive connection with no request in flight is closed after this long.
    pub idle_timeout_ms: u64,
    /// How long a Firehose HTTP endpoint, or a bucket's S3-compatible
    /// endpoint, has to answer a request.
    pub firehose_http_timeout_ms: u64,
    /// Firehose's Lambda processor: function ARN -> the HTTP URL called
    /// instead.
    pub firehose_lambdas: std::collections::HashMap<String, String>,
    /// Firehose buckets on S3-compatible endpoints (the others are
    /// directories under `<data-dir>/s3/`).
    pub firehose_s3: Vec<sluice_firehose::RemoteBucket>,
    /// The tables Firehose's data format conversion reads (Glue's stand-in).
    pub firehose_tables: sluice_firehose::Tables,
    /// Secrets Manager secret ARN -> the file holding the secret.
    pub firehose_secrets: std::collections::HashMap<String, std::path::PathBuf>,
    /// A request body may stall this long; beyond it, it must arrive at
    /// `body_min_bytes_per_second` on average.
    pub body_timeout_ms: u64,
    pub body_min_bytes_per_second: u64,
    /// Bytes of request bodies held at once, across all connections (at
    /// least `request_body_max_bytes`); further bodies wait for room.
    pub body_bytes_in_flight_max: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:4567".parse().unwrap(),
            data_dir: PathBuf::from("./sluice-data"),
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
            stream_creating_ms: 0,
            stream_updating_ms: 0,
            stream_deleting_ms: 0,
            consumer_creating_ms: 0,
            consumer_deleting_ms: 0,
            enforce_limits: true,
            capacity: ShardCapacity::default(),
            test_controls: false,
            request_body_max_bytes: 16 << 20,
            durability: sluice_log::Durability::Sync,
            segment_bytes: sluice_log::LogOptions::default().segment_bytes,
            shard_limit: 500,
            on_demand_stream_limit: 50,
            retention_check_ms: 10_000,
            credentials: std::collections::BTreeMap::new(),
            tls: None,
            max_connections: 4096,
            header_timeout_ms: 10_000,
            firehose_http_timeout_ms: 180_000,
            firehose_lambdas: std::collections::HashMap::new(),
            firehose_s3: Vec::new(),
            firehose_tables: sluice_firehose::Tables::default(),
            firehose_secrets: std::collections::HashMap::new(),
            idle_timeout_ms: 60_000,
            body_timeout_ms: 10_000,
            body_min_bytes_per_second: 64 << 10,
            body_bytes_in_flight_max: 256 << 20,
        }
    }
}

/// File descriptors kept free of connections: segment files, the catalog,
/// the listener, TLS files.
/// (256, or a quarter of a smaller limit).
const DESCRIPTORS_KEPT: usize = 256;

/// How many connections may be open at once: `configured`, but no more than
/// the open-file limit leaves after what storage needs (so that a flood of
/// idle sockets can never take the last descriptor a write needs).
pub fn connection_cap(configured: usize, open_files_max: usize) -> usize {
    let limit = open_file_limit().unwrap_or(1024);
    let kept = DESCRIPTORS_KEPT.min(limit / 4);
    let for_connections = limit.saturating_sub(open_files_max + kept);
    configured.min(for_connections).max(1)
}

pub use sluice_streams::open_file_limit;

/// What a server listening at `addr` with this configuration exposes to
/// other machines: any caller's requests without credentials, and the test
/// controls (which reset streams and freeze the clock).
pub fn exposure_warnings(config: &Config, addr: SocketAddr) -> Vec<String> {
    if addr.ip().is_loopback() {
        return Vec::new();
    }
    let mut warnings = Vec::new();
    if config.credentials.is_empty() {
        warnings.push(format!(
            "listening on {addr}, beyond loopback, with no credentials configured: any well-formed signature is accepted (see --credentials)"
        ));
    }
    if config.test_controls {
        warnings.push(format!(
            "listening on {addr}, beyond loopback, with --test-controls: anyone who can connect can reset streams, inject faults and set the clock"
        ));
    }
    warnings
}

/// A configured access key's secret, and the account it acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub secret: String,
    pub account_id: Option<String>,
}

/// Whether `text` has the shape of an AWS account id: 12 digits.
pub fn is_account_id(text: &str) -> bool {
    sluice_model::AccountId::parse(text).is_ok()
}

impl Config {
    /// What the engine is told of this configuration.
    pub fn engine(&self) -> sluice_streams::Config {
        sluice_streams::Config {
            data_dir: self.data_dir.clone(),
            region: self.region.clone(),
            account_id: self.account_id.clone(),
            stream_creating_ms: self.stream_creating_ms,
            stream_updating_ms: self.stream_updating_ms,
            stream_deleting_ms: self.stream_deleting_ms,
            consumer_creating_ms: self.consumer_creating_ms,
            consumer_deleting_ms: self.consumer_deleting_ms,
            enforce_limits: self.enforce_limits,
            capacity: self.capacity,
            durability: self.durability,
            segment_bytes: self.segment_bytes,
            journal_file_bytes: sluice_streams::Config::default().journal_file_bytes,
            shard_limit: self.shard_limit,
            on_demand_stream_limit: self.on_demand_stream_limit,
        }
    }

    /// The account a request signed with `access_key` acts as: the account
    /// configured for the key; else the key itself when it is 12 digits (as
    /// LocalStack does, so tests can pick an account per client); else the
    /// default account.
    pub fn account_for(&self, access_key: &str) -> String {
        if let Some(account) = self
            .credentials
            .get(access_key)
            .and_then(|c| c.account_id.as_ref())
        {
            return account.clone();
        }
        if is_account_id(access_key) {
            return access_key.to_owned();
        }
        self.account_id.clone()
    }
}

const ACCEPT_BACKOFF_MIN: std::time::Duration = std::time::Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(1);

/// A running server.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    state: Arc<State>,
}

impl Server {
    /// Opens the data directory and starts listening (port 0 picks a free port).
    pub async fn start(config: Config, clock: Arc<dyn Clock>) -> Result<Self, StateError> {
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(StateError::Bind)?;
        let addr = listener.local_addr().map_err(StateError::Bind)?;
        let state = Arc::new(
            tokio::task::spawn_blocking(move || State::open(config, clock))
                .await
                .expect("open task")?,
        );
        // Firehose's delivery tasks (their records are in the engine, open now).
        let firehose = state.firehose.clone();
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || firehose.start(runtime))
            .await
            .expect("starting Firehose's delivery");
        let (shutdown, mut stop) = watch::channel(false);
        // Retention: trim expired records now and then (the clock decides what expired).
        let trimming = state.clone();
        let mut trim_stop = stop.clone();
        let every = std::time::Duration::from_millis(trimming.config.retention_check_ms.max(10));
        let retention = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {
                        let state = trimming.clone();
                        let _ = tokio::task::spawn_blocking(move || {
                            // Retried at the next check; said once a second at most.
                            if let Err(e) = state.sweep_deleted() {
                                sluice_streams::health::warn_limited("sweep", format_args!("removing deleted streams failed: {e}"));
                            }
                            if let Err(e) = state.finish_pending_closes() {
                                sluice_streams::health::warn_limited("closes", format_args!("recording closed shards' ends failed: {e}"));
                            }
                            if let Err(e) = state.apply_retention() {
                                sluice_streams::health::warn_limited("retention", format_args!("applying retention failed: {e}"));
                            }
                        })
                        .await;
                    }
                    _ = trim_stop.changed() => break,
                }
            }
        });
        // On-demand scaling: the policy's windows follow the server's clock;
        // this only looks often enough to notice a window's end.
        let scaling = state.clone();
        let mut scale_stop = stop.clone();
        let autoscaling = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_millis(250)) => {
                        let state = scaling.clone();
                        let _ = tokio::task::spawn_blocking(move || {
                            for line in state.autoscale() {
                                tracing::info!("on-demand scaling: {line}");
                            }
                        })
                        .await;
                    }
                    _ = scale_stop.changed() => break,
                }
            }
        });
        let tls = match &state.config.tls {
            Some(files) => Some(tls::acceptor(files)?),
            None => None,
        };
        for warning in exposure_warnings(&state.config, addr) {
            tracing::warn!("{warning}");
        }
        // Every frame of every shard log is verified once after start (opening
        // reads only the newest segments): damage is logged and quarantined.
        let verifying = state.clone();
        let verify = tokio::task::spawn_blocking(move || {
            verifying.verify_all();
        });
        let serving = state.clone();
        let cap = connection_cap(state.config.max_connections, state.log().open_files_max());
        let slots = Arc::new(tokio::sync::Semaphore::new(cap));
        let task = tokio::spawn(async move {
            let graceful = hyper_util::server::graceful::GracefulShutdown::new();
            let mut backoff = ACCEPT_BACKOFF_MIN;
            loop {
                // At the cap, stop accepting: new clients wait in the backlog
                // until a connection ends (the timeouts make idle ones end).
                let permit = tokio::select! {
                    permit = slots.clone().acquire_owned() => permit.expect("never closed"),
                    _ = stop.changed() => break,
                };
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => {
                            backoff = ACCEPT_BACKOFF_MIN;
                            let _ = stream.set_nodelay(true);
                            service::spawn_connection(stream, serving.clone(), tls.clone(), graceful.watcher(), permit);
                        }
                        // Out of descriptors (or another accept failure): back
                        // off instead of spinning; open connections go on.
                        Err(e) => {
                            serving.health.warn_limited("accept", format_args!("accepting a connection failed: {e}"));
                            tokio::select! {
                                () = tokio::time::sleep(backoff) => {}
                                _ = stop.changed() => break,
                            }
                            backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                        }
                    },
                    _ = stop.changed() => break,
                }
            }
            // Idle keep-alive connections close now; requests in flight finish first.
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(10), graceful.shutdown()).await;
        });
        let verify = tokio::spawn(async move {
            let _ = verify.await;
        });
        Ok(Self {
            addr,
            shutdown,
            tasks: vec![task, retention, autoscaling, verify],
            state,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// Stops accepting connections, lets open ones finish, and releases the
    /// data directory.
    pub async fn stop(self) {
        // Event streams would hold their connections open for minutes.
        self.state.subscriptions.stop_all();
        self.state
            .stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        // Flushing waits on fsync: not on an async worker.
        let state = self.state;
        let _ = tokio::task::spawn_blocking(move || state.flush()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_beyond_loopback_warns_of_what_it_exposes() {
        let mut config = Config::default();
        let loopback: SocketAddr = "127.0.0.1:4567".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:4567".parse().unwrap();
        config.test_controls = true;
        assert!(exposure_warnings(&config, loopback).is_empty());
        assert!(exposure_warnings(&config, "[::1]:4567".parse().unwrap()).is_empty());
        let warnings = exposure_warnings(&config, any);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("no credentials configured"));
        assert!(warnings[1].contains("--test-controls"));
        config.test_controls = false;
        config.credentials.insert(
            "AKID".into(),
            Credential {
                secret: "s".into(),
                account_id: None,
            },
        );
        assert!(exposure_warnings(&config, any).is_empty());
    }
}
