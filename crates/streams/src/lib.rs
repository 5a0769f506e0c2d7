//! Kinesis Data Streams semantics, with no HTTP: streams and shards (the
//! catalog, `sluice-meta`), put (routing, limits, appends to `sluice-log`),
//! read (iterators, cursors, limits), resharding and lineage, retention,
//! consumers and subscriptions, on-demand scaling.
//!
//! Operations take the typed requests of `sluice_aws::kinesis` and answer
//! with its typed outputs ([`ops::dispatch`]); the server (`sluice-server`) is
//! an adapter that decodes requests into them and encodes the answers.
//! Later services (Firehose, SQL over streams, the agent) call it directly.

pub mod autoscale;
mod consumers;
pub mod engine;
pub mod fanout;
pub mod health;
mod iterator;
pub mod limits;
pub mod ops;
pub mod stats;
pub mod store;

use std::path::PathBuf;

pub use engine::{is_disk_full, Engine, OpenError, Refused};
pub use limits::ShardCapacity;

/// What the engine is told: where its data lives, the account and region of
/// callers whose request names neither, how long transitions take, and AWS's limits.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    /// The region of requests whose signature names none (and of streams
    /// from snapshots written before regions).
    pub region: String,
    /// The account of callers whose access key names none.
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
    pub durability: sluice_log::Durability,
    /// A shard's storage segment is sealed once it reaches this size
    /// (retention deletes whole segments).
    pub segment_bytes: u64,
    /// Each journal file's size (zero-filled ahead of use).
    pub journal_file_bytes: u64,
    /// What DescribeLimits reports (AWS's defaults).
    pub shard_limit: u32,
    pub on_demand_stream_limit: u32,
}

impl Config {
    /// The account and region of callers whose request names neither.
    pub fn default_scope(&self) -> sluice_meta::Scope {
        sluice_meta::Scope::new(self.account_id.clone(), self.region.clone())
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
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
            durability: sluice_log::Durability::Sync,
            segment_bytes: sluice_log::LogOptions::default().segment_bytes,
            journal_file_bytes: sluice_log::LogOptions::default().journal_file_bytes,
            shard_limit: 500,
            on_demand_stream_limit: 50,
        }
    }
}

/// The process's soft limit on open files (`/proc/self/limits`, Linux).
pub fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line.split_whitespace().nth(3)?;
    match soft {
        "unlimited" => Some(usize::MAX / 2),
        n => n.parse().ok(),
    }
}

/// A warning in the log (standard error under `sluice serve`) for what an
/// operator must know: damage found, a disk that filled up, a failure no
/// caller was told the reason of.
pub fn warn(message: impl std::fmt::Display) {
    tracing::warn!("{message}");
}
