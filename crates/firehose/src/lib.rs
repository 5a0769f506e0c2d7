//! Amazon Data Firehose: delivery streams per account and region, with
//! their source, their one destination, encryption state, tags and
//! version, kept in `firehose.json` in the data directory (written as the
//! Kinesis catalog is: a temporary file, fsynced, renamed); and delivery.
//!
//! Requests arrive validated against the Firehose model and are typed by
//! the shapes generated from it (`sluice_aws::firehose`); a destination's
//! configuration is kept as given and described back as AWS describes it
//! (defaults filled in, secrets left out).
//!
//! Direct PUT records go into an internal Kinesis stream of the engine (one
//! per delivery stream, in a scope no client can name) and are durable
//! before PutRecord answers; a task per delivery stream buffers and
//! delivers them ([`delivery`]) to HTTP endpoints (http.rs) or to buckets,
//! directories under the data directory ([`objects`]) or on S3-compatible
//! endpoints (buckets.rs), keeping its position durably
//! ([`positions`]), through AWS's built-in processors ([`process`]). A
//! Kinesis stream source is read through the engine instead (source.rs,
//! sluice_client::kpl). Data format conversion writes Parquet objects ([`convert`]),
//! typed by tables from Sluice's configuration. What Sluice cannot deliver
//! yet (an unmapped Lambda or secret, ORC, a table it was not given) is
//! accepted as configuration, but its records
//! are refused, never accepted and left undelivered (issue #16).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use sluice_aws::AwsError;
use sluice_log::Storage;
use sluice_meta::Scope;
use sluice_model::Clock;
use sluice_streams::store::{CatalogStore, FileCatalogStore};

mod buckets;
pub mod convert;
pub mod delivery;
mod describe;
mod http;
pub mod keys;
mod lambda;
pub mod objects;
mod ops;
pub mod partition;
pub mod positions;
pub mod process;
mod put;
mod quota;
mod registry;
mod source;
pub mod stats;

pub use buckets::RemoteBucket;
pub use convert::Tables;
pub use registry::{DeliveryStream, Registry};
use sluice_streams::Engine;

/// Where Firehose's delivery streams are kept, beside the Kinesis catalog.
pub const FIREHOSE_FILE: &str = "firehose.json";

/// The Firehose service of one server.
#[derive(Debug)]
pub struct Firehose {
    store: Box<dyn CatalogStore>,
    registry: Mutex<Registry>,
    clock: Arc<dyn Clock>,
    /// Direct PUT records are kept in its internal streams.
    engine: Arc<Engine>,
    /// Every file Firehose writes goes through it.
    storage: Arc<dyn Storage>,
    data_dir: PathBuf,
    positions: positions::Positions,
    deliveries: delivery::Deliveries,
    /// Direct PUT quotas by delivery stream (`--limits aws`).
    quotas: Mutex<std::collections::HashMap<String, quota::Quotas>>,
    /// What each delivery stream took in and delivered.
    pub stats: stats::Stats,
    /// Held while delivery streams are created, deleted or reset, so that
    /// one name's internal stream, task and position change together.
    lifecycle: Mutex<()>,
    /// Bucket directories known to be durable (objects.rs).
    durable_dirs: objects::DurableDirs,
    /// How long an HTTP endpoint has to answer a request.
    http_timeout: std::time::Duration,
    /// Lambda function ARNs and the HTTP URLs that stand for them.
    lambdas: std::collections::HashMap<String, String>,
    /// Buckets on S3-compatible endpoints; the others are directories.
    remotes: buckets::Remotes,
    /// The tables data format conversion reads (Sluice's stand-in for Glue).
    tables: convert::Tables,
    /// Secrets Manager secret ARNs and the files that hold them.
    secrets: std::collections::HashMap<String, PathBuf>,
}

/// Why the delivery streams could not be loaded.
#[derive(Debug)]
pub enum OpenError {
    Io(std::io::Error),
    Snapshot(serde_json::Error),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(e) => write!(f, "cannot read {FIREHOSE_FILE}: {e}"),
            Self::Snapshot(e) => write!(f, "{FIREHOSE_FILE} does not parse: {e}"),
        }
    }
}

impl std::error::Error for OpenError {}

impl Firehose {
    /// Loads the delivery streams kept in `dir` (none if there is no file);
    /// their records live in `engine`. Delivery starts with
    /// [`Firehose::start`].
    pub fn open(
        engine: Arc<Engine>,
        storage: Arc<dyn Storage>,
        dir: PathBuf,
    ) -> Result<Self, OpenError> {
        let store = FileCatalogStore::named(storage.clone(), dir.clone(), FIREHOSE_FILE);
        let registry = match store.load().map_err(OpenError::Io)? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(OpenError::Snapshot)?,
            None => Registry::default(),
        };
        let positions =
            positions::Positions::open(storage.clone(), dir.clone()).map_err(OpenError::Io)?;
        Ok(Self {
            store: Box::new(store),
            registry: Mutex::new(registry),
            clock: engine.clock.clone(),
            engine,
            storage,
            data_dir: dir,
            positions,
            deliveries: delivery::Deliveries::default(),
            quotas: Mutex::default(),
            stats: stats::Stats::default(),
            lifecycle: Mutex::default(),
            durable_dirs: objects::DurableDirs::default(),
            http_timeout: std::time::Duration::from_secs(180),
            lambdas: std::collections::HashMap::new(),
            remotes: buckets::Remotes::default(),
            tables: convert::Tables::default(),
            secrets: std::collections::HashMap::new(),
        })
    }

    /// The HTTP URLs that stand for Lambda functions (by ARN) in the
    /// Lambda processor.
    pub fn with_lambdas(mut self, lambdas: std::collections::HashMap<String, String>) -> Self {
        self.lambdas = lambdas;
        self
    }

    /// Buckets that live on S3-compatible endpoints (the others are
    /// directories under the data directory); a request to one has the
    /// HTTP timeout ([`Firehose::with_http_timeout`], set first) to answer.
    pub fn with_buckets(mut self, buckets: &[RemoteBucket]) -> Result<Self, String> {
        self.remotes = buckets::Remotes::new(buckets, self.http_timeout)?;
        Ok(self)
    }

    /// The tables (columns by `database.table`) that data format
    /// conversion reads, as Glue's would be.
    pub fn with_tables(mut self, tables: Tables) -> Self {
        self.tables = tables;
        self
    }

    /// Files that stand for Secrets Manager secrets (by ARN): an HTTP
    /// endpoint's access key from a secret is read from its file.
    pub fn with_secrets(mut self, secrets: std::collections::HashMap<String, PathBuf>) -> Self {
        self.secrets = secrets;
        self
    }

    pub(crate) fn lambda_url(&self, arn: &str) -> Option<&str> {
        self.lambdas.get(arn).map(String::as_str)
    }

    /// How long an HTTP endpoint, or the S3-compatible endpoint of a
    /// bucket, has to answer a request (default 3 minutes).
    pub fn with_http_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.http_timeout = timeout;
        self
    }

    /// Runs `operation` (validated against the Firehose model) for the
    /// caller's account and region; the answer is the operation's output
    /// shape as JSON.
    pub fn call(&self, scope: &Scope, operation: &str, input: &Value) -> Result<Value, AwsError> {
        let request = sluice_aws::firehose::Request::decode(operation, input)?;
        ops::call(self, scope, request).map(|answer| answer.to_value())
    }

    fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    fn lifecycle(&self) -> MutexGuard<'_, ()> {
        self.lifecycle.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `change` to a copy of the registry, stores the copy durably,
    /// then makes it the registry: all or nothing, as the Kinesis catalog.
    fn change<T>(
        &self,
        change: impl FnOnce(&mut Registry) -> Result<T, AwsError>,
    ) -> Result<T, AwsError> {
        let mut registry = self.registry();
        let mut next = registry.clone();
        let out = change(&mut next)?;
        let bytes = serde_json::to_vec_pretty(&next).expect("the registry serializes");
        // A save that failed before replacing the file leaves the registry
        // as it was. One that replaced it but could not make the directory
        // durable leaves the new snapshot in the file: the registry follows
        // the file (as the Kinesis catalog does), and the caller hears of
        // the failure.
        match self.store.save(&bytes) {
            Ok(()) => {
                *registry = next;
                Ok(out)
            }
            Err(e) => {
                if e.replaced {
                    *registry = next;
                }
                Err(AwsError::new(
                    sluice_aws::ErrorCode::InternalFailure,
                    "Internal service failure.",
                ))
            }
        }
    }

    /// Deletes every delivery stream of every account (the test controls'
    /// reset). Returns how many there were.
    pub fn reset(&self) -> Result<usize, AwsError> {
        let _lifecycle = self.lifecycle();
        let gone: Vec<(Scope, String)> = self
            .registry()
            .all()
            .map(|s| (s.scope(), s.name.clone()))
            .collect();
        let n = self.change(|r| Ok(std::mem::take(r).len()))?;
        for (scope, name) in gone {
            ops::forget(self, &scope, &name);
        }
        Ok(n)
    }
}

/// Waits for `future` from a thread that may block: the server's blocking
/// pool (delivery steps, puts), or a test without a runtime.
pub(crate) fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle.block_on(future),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for one wait")
            .block_on(future),
    }
}
