//! Enhanced fan-out's data plane: SubscribeToShard's event stream.
//!
//! A subscription is a task that reads its shard from a cursor and sends
//! `application/vnd.amazon.eventstream` messages into a channel of one; the
//! response body drains the channel. Records are pushed when the append that
//! makes them visible wakes the task (no polling). A subscriber that reads
//! slowly fills the channel and the connection's flow-control window, and the
//! task then waits: memory stays bounded by one event per subscription, and
//! subscriptions are bounded by consumers x shards (one per pair).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_aws::{AwsError, ErrorCode};
use sluice_log::{Cursor, ReadBatch, ReadLimits, ShardLog};
use sluice_meta::{ConsumerStatus, StreamStatus};
use sluice_model::SequenceNumber;
use tokio::sync::{mpsc, Notify};

use crate::engine::Engine;

/// AWS: a subscription lasts 5 minutes.
pub const SUBSCRIPTION_LIFETIME_MS: u64 = 5 * 60 * 1000;
/// AWS: a second subscription for the same consumer and shard within 5 s of
/// the first fails; after that it takes over.
pub const TAKEOVER_AFTER_MS: u64 = 5_000;
/// AWS: 2 MiB/s per shard per consumer (enforced under the `aws` limits).
pub const BYTES_PER_SECOND: u64 = 2 << 20;
/// Most record bytes one event carries (a larger single record goes alone).
const EVENT_MAX_BYTES: usize = 1 << 20;
const EVENT_MAX_RECORDS: usize = 10_000;
/// An event goes out at least this often, records or not (wall time).
const HEARTBEAT: Duration = Duration::from_secs(5);
/// How often an idle subscription checks its end, its consumer and its stream
/// (wall time; these follow the injected clock, which has no wake-ups).
const HOUSEKEEPING: Duration = Duration::from_millis(200);

/// Tells one subscription to end.
#[derive(Debug, Default)]
pub struct Stop {
    stopped: AtomicBool,
    /// A newer subscription took this one's place.
    taken_over: AtomicBool,
    notify: Notify,
    /// MillisBehindLatest of the last event sent (for `/metrics`).
    pub millis_behind: AtomicU64,
}

impl Stop {
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    fn take_over(&self) {
        self.taken_over.store(true, Ordering::SeqCst);
        self.stop();
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    async fn wait(&self) {
        loop {
            let mut notified = std::pin::pin!(self.notify.notified());
            notified.as_mut().enable();
            if self.is_stopped() {
                return;
            }
            notified.await;
        }
    }
}

#[derive(Debug)]
struct Active {
    id: u64,
    started_ms: u64,
    stop: Arc<Stop>,
}

#[derive(Debug, Default)]
struct Registry {
    /// By consumer ARN and shard index: the live subscription, or the last
    /// one for 5 s after it started (a new call within 5 s fails even if the
    /// old subscription ended).
    active: HashMap<(String, u32), Active>,
    next_id: u64,
    /// Set at shutdown: no new subscriptions.
    closed: bool,
}

/// The live subscriptions: at most one per consumer and shard.
#[derive(Debug, Default)]
pub struct Subscriptions {
    registry: Arc<Mutex<Registry>>,
}

/// A subscription's place in the registry; released when dropped.
#[derive(Debug)]
pub struct Claim {
    registry: Arc<Mutex<Registry>>,
    key: (String, u32),
    id: u64,
    pub stop: Arc<Stop>,
}

impl Drop for Claim {
    /// The subscription ended: its entry stays (marked stopped) until
    /// [`Subscriptions::claim`] finds it older than 5 s.
    fn drop(&mut self) {
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(a) = registry.active.get(&self.key).filter(|a| a.id == self.id) {
            a.stop.stop();
        }
    }
}

impl Subscriptions {
    /// Claims `(consumer, shard)` for a new subscription. Fails within 5 s of
    /// the pair's last successful call (as AWS does, whether or not that
    /// subscription still runs); after that an older subscription is told to
    /// end and the new one takes its place.
    pub(crate) fn claim(&self, consumer_arn: &str, shard: u32, now_ms: u64) -> Result<Claim, ()> {
        let mut registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        if registry.closed {
            return Err(());
        }
        let key = (consumer_arn.to_owned(), shard);
        if let Some(old) = registry.active.get(&key) {
            if now_ms.saturating_sub(old.started_ms) < TAKEOVER_AFTER_MS {
                return Err(());
            }
            old.stop.take_over();
        }
        // Ended subscriptions stay only while they still block a new call.
        registry.active.retain(|_, a| {
            !a.stop.is_stopped() || now_ms.saturating_sub(a.started_ms) < TAKEOVER_AFTER_MS
        });
        registry.next_id += 1;
        let id = registry.next_id;
        let stop = Arc::new(Stop::default());
        registry.active.insert(
            key.clone(),
            Active {
                id,
                started_ms: now_ms,
                stop: stop.clone(),
            },
        );
        Ok(Claim {
            registry: self.registry.clone(),
            key,
            id,
            stop,
        })
    }

    /// Ends every subscription of a consumer (it is being deregistered).
    pub fn stop_consumer(&self, consumer_arn: &str) {
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        for ((arn, _), active) in &registry.active {
            if arn == consumer_arn {
                active.stop.stop();
            }
        }
    }

    /// Ends every subscription (a reset).
    pub fn stop_every(&self) {
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        for active in registry.active.values() {
            active.stop.stop();
        }
    }

    /// Ends every subscription and refuses new ones (shutdown).
    pub fn stop_all(&self) {
        let mut registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        registry.closed = true;
        for active in registry.active.values() {
            active.stop.stop();
        }
    }

    /// Per live subscription: consumer ARN, shard id, and its last event's
    /// MillisBehindLatest.
    pub fn lag(&self) -> Vec<(String, String, u64)> {
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        let mut lag: Vec<(String, String, u64)> = registry
            .active
            .iter()
            .filter(|(_, a)| !a.stop.is_stopped())
            .map(|((arn, shard), a)| {
                (
                    arn.clone(),
                    sluice_meta::shard_id(*shard),
                    a.stop.millis_behind.load(Ordering::Relaxed),
                )
            })
            .collect();
        lag.sort_unstable();
        lag
    }

    /// How many subscriptions are live.
    pub fn count(&self) -> usize {
        self.registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .active
            .values()
            .filter(|a| !a.stop.is_stopped())
            .count()
    }
}

/// A subscription that passed SubscribeToShard's checks.
#[derive(Debug)]
pub struct Subscription {
    pub claim: Claim,
    pub reader: Reader,
    pub cursor: Cursor,
    pub ends_at_ms: u64,
}

/// What a subscription sends, in order: the initial response, records
/// events (perhaps empty: heartbeats), and perhaps an error that ends it.
/// The caller encodes them (`application/vnd.amazon.eventstream`).
#[derive(Debug)]
pub enum Event {
    Initial,
    /// A SubscribeToShardEvent.
    Records {
        records: Vec<sluice_log::Record>,
        millis_behind_latest: u64,
        /// Where a next subscription starts; absent at the end of a closed
        /// shard, where `child_shards` say where to go on.
        continuation_sequence_number: Option<String>,
        child_shards: Vec<sluice_aws::fast::ChildShard>,
    },
    Error(AwsError),
}

/// Starts pushing events for `sub` into a channel of one (the response
/// body drains it); the channel closes when the subscription ends.
pub fn start(state: Arc<Engine>, sub: Subscription) -> mpsc::Receiver<Event> {
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(run(state, sub, tx));
    rx
}

/// AWS's per-consumer, per-shard read rate, on the injected clock.
struct Bucket {
    tokens: f64,
    at_ms: u64,
}

impl Bucket {
    fn new(now_ms: u64) -> Self {
        Self {
            tokens: BYTES_PER_SECOND as f64,
            at_ms: now_ms,
        }
    }

    /// Takes `bytes` if the bucket holds them (or is full: one larger record
    /// may go, and the bucket owes the rest); else how long to wait.
    fn take(&mut self, now_ms: u64, bytes: usize) -> Result<(), Duration> {
        let capacity = BYTES_PER_SECOND as f64;
        let elapsed = now_ms.saturating_sub(self.at_ms) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed * capacity).min(capacity);
        self.at_ms = self.at_ms.max(now_ms);
        let bytes = bytes as f64;
        if self.tokens >= bytes || self.tokens >= capacity {
            self.tokens -= bytes;
            return Ok(());
        }
        let wait = (bytes.min(capacity) - self.tokens) / capacity;
        Err(Duration::from_secs_f64(wait.clamp(0.001, 1.0)))
    }
}

/// Who a subscription reads as, and what: the stream and consumer as they
/// were when it started (by creation time), and the shard.
#[derive(Debug, Clone)]
pub struct Reader {
    pub scope: sluice_meta::Scope,
    pub stream: String,
    pub stream_created_ms: u64,
    pub consumer: String,
    pub consumer_created_ms: u64,
    pub shard_index: u32,
    pub log: Arc<ShardLog>,
}

impl Reader {
    /// The shard is gone (retention removed it, or the stream went).
    fn shard_gone(&self) -> AwsError {
        AwsError::new(
            ErrorCode::ResourceNotFoundException,
            format!(
                "Shard {} in stream {} under account {} does not exist",
                sluice_meta::shard_id(self.shard_index),
                self.stream,
                self.scope.account
            ),
        )
    }
}

/// Why the stream or consumer can no longer be read, if so.
fn still_readable(state: &Engine, r: &Reader) -> Result<(), AwsError> {
    let now = state.now_ms();
    let catalog = state.catalog();
    let stream = catalog
        .stream(&r.scope, &r.stream)
        .filter(|s| s.created_ms == r.stream_created_ms)
        .filter(|s| s.status(now) != StreamStatus::Deleting);
    let Some(stream) = stream else {
        return Err(AwsError::new(
            ErrorCode::ResourceNotFoundException,
            format!(
                "Stream {} under account {} not found.",
                r.stream, r.scope.account
            ),
        ));
    };
    if stream.shard(r.shard_index).is_none() {
        return Err(r.shard_gone());
    }
    let consumer = stream
        .consumer(&r.consumer, now)
        .filter(|c| c.created_ms == r.consumer_created_ms)
        .filter(|c| c.status(now) == ConsumerStatus::Active);
    if consumer.is_none() {
        return Err(AwsError::new(
            ErrorCode::ResourceNotFoundException,
            format!(
                "Consumer {} under stream {} under account {} not found.",
                r.consumer, r.stream, r.scope.account
            ),
        ));
    }
    Ok(())
}

/// One step on the blocking pool: the checks, a read from `cursor`, and at
/// the end of a closed shard its children (looked up after the read: a
/// reshard commits them before it closes the parent).
fn step(
    state: &Engine,
    r: &Reader,
    cursor: Cursor,
) -> Result<(ReadBatch, Vec<sluice_aws::fast::ChildShard>), AwsError> {
    still_readable(state, r)?;
    let failure = |e: &dyn std::fmt::Display| {
        AwsError::new(
            ErrorCode::InternalFailureException,
            format!("Internal service failure: {e}"),
        )
    };
    if r.log.info().poisoned {
        return Err(failure(&"the shard's storage failed"));
    }
    let batch = r
        .log
        .read(
            cursor,
            ReadLimits {
                max_records: EVENT_MAX_RECORDS,
                max_bytes: EVENT_MAX_BYTES,
            },
        )
        .map_err(|e| match e {
            sluice_log::ReadError::Deleted => r.shard_gone(),
            sluice_log::ReadError::Quarantined(damage) => {
                let e =
                    crate::ops::quarantined(&r.scope.account, &r.stream, r.shard_index, &damage);
                AwsError::new(ErrorCode::InternalFailureException, e.message)
            }
            other => failure(&other),
        })?;
    let children = if batch.end_of_shard {
        let catalog = state.catalog();
        catalog
            .stream(&r.scope, &r.stream)
            .map(|s| crate::ops::child_shards(s, r.shard_index))
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    Ok((batch, children))
}

/// Waits for `f`, unless the subscription is told to stop or its end (on the
/// server's clock, checked every HOUSEKEEPING) comes first: None then.
async fn unless_ended<F: std::future::Future>(
    state: &Engine,
    stop: &Stop,
    ends_at_ms: u64,
    f: F,
) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    loop {
        tokio::select! {
            out = &mut f => return Some(out),
            () = stop.wait() => return None,
            () = tokio::time::sleep(HOUSEKEEPING) => {
                if state.now_ms() >= ends_at_ms {
                    return None;
                }
            }
        }
    }
}

async fn run(state: Arc<Engine>, sub: Subscription, tx: mpsc::Sender<Event>) {
    let Subscription {
        claim,
        reader,
        mut cursor,
        ends_at_ms,
    } = sub;
    let stop = claim.stop.clone();
    let reader = Arc::new(reader);
    // Sends one message; false when the subscriber left or the subscription
    // ended (a reader that stops reading still ends on time).
    let send = |message: Event| {
        let (state, stop, tx) = (state.clone(), stop.clone(), tx.clone());
        async move {
            unless_ended(&state, &stop, ends_at_ms, tx.send(message))
                .await
                .is_some_and(|sent| sent.is_ok())
        }
    };
    let finish = |tx: &mpsc::Sender<Event>| {
        // Taken over: the older stream fails with ResourceInUseException, as
        // AWS describes (if the subscriber has room for it).
        if stop.taken_over.load(Ordering::SeqCst) {
            let e = AwsError::new(
                ErrorCode::ResourceInUseException,
                format!(
                    "Another active subscription exists for this consumer: {}:{}:{}:{}",
                    reader.scope.account,
                    reader.stream,
                    sluice_meta::shard_id(reader.shard_index),
                    reader.consumer
                ),
            );
            let _ = tx.try_send(Event::Error(e));
        }
    };
    if !send(Event::Initial).await {
        return finish(&tx);
    }
    let limited = state.config.enforce_limits;
    let mut bucket = Bucket::new(state.now_ms());
    let mut last_event: Option<tokio::time::Instant> = None;
    loop {
        if stop.is_stopped() || state.now_ms() >= ends_at_ms {
            return finish(&tx);
        }
        let (st, r) = (state.clone(), reader.clone());
        let stepped = tokio::task::spawn_blocking(move || step(&st, &r, cursor)).await;
        let (batch, children) = match stepped {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => {
                send(Event::Error(e)).await;
                return;
            }
            Err(_) => return,
        };
        let due = last_event.is_none_or(|at| at.elapsed() >= HEARTBEAT);
        let (caught_up, end_of_shard, next) =
            (batch.records.is_empty(), batch.end_of_shard, batch.next);
        if !caught_up || end_of_shard || due {
            if limited {
                while let Err(wait) = bucket.take(state.now_ms(), batch.bytes()) {
                    let waited =
                        unless_ended(&state, &stop, ends_at_ms, tokio::time::sleep(wait)).await;
                    if waited.is_none() {
                        return finish(&tx);
                    }
                }
            }
            let continuation =
                (!batch.end_of_shard).then(|| sluice_log::position_before(batch.next));
            stop.millis_behind
                .store(batch.millis_behind_latest, Ordering::Relaxed);
            let event = Event::Records {
                records: batch.records,
                millis_behind_latest: batch.millis_behind_latest,
                continuation_sequence_number: continuation.map(|c| SequenceNumber(c).to_string()),
                child_shards: children,
            };
            if !send(event).await {
                return finish(&tx);
            }
            last_event = Some(tokio::time::Instant::now());
        }
        cursor = next;
        if end_of_shard {
            return;
        }
        if caught_up {
            // Caught up: wait for an append (or a poisoned shard, which the
            // next step reports), the subscriber leaving, the end, or the
            // next heartbeat. Housekeeping wakes check only the end.
            let next_beat =
                last_event.map_or(HEARTBEAT, |at| HEARTBEAT.saturating_sub(at.elapsed()));
            let woke = unless_ended(&state, &stop, ends_at_ms, async {
                tokio::select! {
                    () = reader.log.data_after(cursor) => true,
                    () = tx.closed() => false,
                    () = tokio::time::sleep(next_beat) => true,
                }
            })
            .await;
            if woke != Some(true) {
                return finish(&tx);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refills_on_the_given_clock() {
        let mut b = Bucket::new(0);
        let cap = BYTES_PER_SECOND as usize;
        assert!(b.take(0, cap).is_ok());
        assert!(b.take(0, 1).is_err(), "empty");
        assert!(
            b.take(500, cap / 2 - 1).is_ok(),
            "half a second refills half"
        );
        assert!(b.take(500, 16).is_err());
        // A full bucket lets one record larger than a second's worth through,
        // and then owes it.
        assert!(b.take(10_000, 3 * cap).is_ok());
        assert!(b.take(10_000, 1).is_err());
        assert!(b.take(11_000, 1).is_err(), "still in debt after 1 s");
        assert!(b.take(12_001, 1).is_ok());
    }

    #[test]
    fn one_subscription_per_consumer_and_shard() {
        let subs = Subscriptions::default();
        let first = subs.claim("arn", 0, 1_000).unwrap();
        assert!(subs.claim("arn", 0, 5_999).is_err(), "within 5 s");
        let other_shard = subs.claim("arn", 1, 1_000).unwrap();
        let second = subs.claim("arn", 0, 6_000).unwrap();
        assert!(first.stop.is_stopped(), "taken over");
        assert!(!second.stop.is_stopped());
        drop(first);
        assert_eq!(
            subs.count(),
            2,
            "the old claim does not release the new one"
        );
        // An ended subscription still blocks a new call within 5 s of its start.
        drop(second);
        assert_eq!(subs.count(), 1);
        assert!(subs.claim("arn", 0, 10_999).is_err());
        let third = subs.claim("arn", 0, 11_000).unwrap();
        subs.stop_consumer("arn");
        assert!(third.stop.is_stopped() && other_shard.stop.is_stopped());
        drop(other_shard);
        assert_eq!(subs.count(), 0);
        let fourth = subs.claim("arn", 1, 20_000).unwrap();
        subs.stop_all();
        assert!(fourth.stop.is_stopped());
        assert!(subs.claim("other", 0, 0).is_err(), "closed");
        drop(third);
    }
}
