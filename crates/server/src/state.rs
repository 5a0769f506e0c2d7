//! The server's state: the engine (`sluice-streams`: streams, shard logs,
//! subscriptions) and what only the HTTP side needs beside it: its
//! configuration, the test controls' faults, `/metrics`' counters, and the
//! budget of request bodies in memory. Derefs to the engine.

use std::sync::Arc;

use sluice_model::Clock;
use sluice_streams::Engine;

use crate::Config;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot listen: {0}")]
    Bind(std::io::Error),
    #[error(transparent)]
    Open(#[from] sluice_streams::OpenError),
    #[error("TLS: {0}")]
    Tls(String),
    #[error(transparent)]
    Firehose(#[from] sluice_firehose::OpenError),
    #[error("{0}")]
    Buckets(String),
}

#[derive(Debug)]
pub struct State {
    pub engine: Arc<Engine>,
    /// Firehose's delivery streams (`firehose.json` beside the catalog).
    pub firehose: Arc<sluice_firehose::Firehose>,
    pub config: Config,
    /// Faults injected by the test controls.
    pub faults: crate::admin::Faults,
    /// What `/metrics` reports.
    pub metrics: crate::metrics::Metrics,
    /// Room for request bodies, in bytes (`Config::body_bytes_in_flight_max`).
    pub body_budget: Arc<tokio::sync::Semaphore>,
    body_budget_bytes: usize,
}

impl std::ops::Deref for State {
    type Target = Engine;

    fn deref(&self) -> &Engine {
        &self.engine
    }
}

impl State {
    pub fn open(config: Config, clock: Arc<dyn Clock>) -> Result<Self, StateError> {
        let engine = Arc::new(Engine::open(config.engine(), clock)?);
        let firehose = Arc::new(
            sluice_firehose::Firehose::open(
                engine.clone(),
                Arc::new(sluice_log::OsStorage),
                config.data_dir.clone(),
            )?
            .with_http_timeout(std::time::Duration::from_millis(
                config.firehose_http_timeout_ms.max(1),
            ))
            .with_lambdas(config.firehose_lambdas.clone())
            .with_tables(config.firehose_tables.clone())
            .with_secrets(config.firehose_secrets.clone())
            .with_buckets(&config.firehose_s3)
            .map_err(StateError::Buckets)?,
        );
        let body_budget = config
            .body_bytes_in_flight_max
            .max(config.request_body_max_bytes)
            .min(tokio::sync::Semaphore::MAX_PERMITS);
        Ok(Self {
            engine,
            firehose,
            config,
            faults: crate::admin::Faults::default(),
            metrics: crate::metrics::Metrics::default(),
            body_budget: Arc::new(tokio::sync::Semaphore::new(body_budget)),
            body_budget_bytes: body_budget,
        })
    }

    /// Bytes of request bodies held now (read, or reserved for reading).
    pub fn body_bytes_held(&self) -> usize {
        self.body_budget_bytes - self.body_budget.available_permits()
    }

    /// What `/metrics` reads at scrape time.
    pub fn gauges(&self) -> crate::metrics::Gauges {
        let now = self.now_ms();
        let catalog = self.catalog();
        // Services' internal streams (Firehose's records) are not streams
        // a client has.
        let streams: Vec<(sluice_meta::Scope, String, &'static str, u64)> = catalog
            .streams()
            .filter(|s| !s.scope().is_internal())
            .map(|s| {
                (
                    s.scope(),
                    s.name.clone(),
                    sluice_streams::ops::status_name(s.status(now)),
                    s.open_shards().count() as u64,
                )
            })
            .collect();
        let live = streams
            .iter()
            .map(|(scope, name, _, _)| {
                (scope.account.as_str(), scope.region.as_str(), name.as_str())
            })
            .collect();
        crate::metrics::Gauges {
            stream_counts: self.stats.counts(&live),
            streams,
            subscriptions: self.subscriptions.lag(),
            fsync: Some(self.log().fsync_times()),
            sync_rounds: self.log().sync_rounds(),
            open_segment_files: self.log().open_files() as u64,
            body_bytes_in_flight: self.body_bytes_held() as u64,
            healthy: self.problems().is_empty(),
            firehose: self.firehose.stats.snapshot(),
            now_ms: now,
        }
    }
}
