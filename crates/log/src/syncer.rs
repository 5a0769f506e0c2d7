//! Group commit: one thread fsyncs the journal for all shards at once, and
//! wakes the appenders whose writes that round covered.
//!
//! An append writes its frames into the journal, then registers `(shard, end
//! offset)` and gets a ticket: the number of the round that will include it. Rounds run back to back while there is
//! work, so every append that arrives during a round's fsyncs shares the next one.
//! In interval mode rounds run every `fsync_interval_ms` instead (or at once when
//! someone needs a durable point, such as closing a shard).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::journal::Journal;
use crate::Durability;

/// The parts of a shard log that the syncer updates.
#[derive(Debug, Default)]
pub struct ShardProgress {
    /// Logical offset up to which the shard's bytes are on disk.
    pub durable_end: AtomicU64,
    /// Logical offset up to which readers may read.
    pub visible_end: AtomicU64,
    /// Set by a failed write or fsync (of the shard or of the journal); the
    /// shard refuses writes until reopened.
    pub poisoned: AtomicBool,
    /// Bumped whenever `visible_end` moves, for readers that wait for data.
    pub changes: Mutex<u64>,
    pub changed: Condvar,
    /// Threads blocked in `wait_for_data`: a publish with none skips the
    /// lock and the wake-up (a round may publish to thousands of shards).
    pub sleepers: std::sync::atomic::AtomicUsize,
    /// The same wake-up for async readers (fan-out subscriptions), and how
    /// many wait on it (the wake-up takes a lock: skipped when none do).
    pub appended: tokio::sync::Notify,
    pub async_sleepers: std::sync::atomic::AtomicUsize,
}

impl ShardProgress {
    pub fn publish(&self, visible_end: u64) {
        self.visible_end.fetch_max(visible_end, Ordering::SeqCst);
        // A sleeper counted after this check reads the new end before it waits.
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            *self.changes.lock().unwrap() += 1;
            self.changed.notify_all();
        }
        if self.async_sleepers.load(Ordering::SeqCst) > 0 {
            self.appended.notify_waiters();
        }
    }
}

#[derive(Debug)]
pub struct PendingSync {
    pub shard: Arc<ShardProgress>,
    pub end: u64,
}

#[derive(Debug)]
pub struct Syncer {
    inner: Arc<Inner>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Debug)]
struct Inner {
    durability: Durability,
    journal: Arc<Journal>,
    state: Mutex<State>,
    work: Condvar,
    done: Condvar,
    rounds: AtomicU64,
    /// `State::completed_round` and `State::stop`, for async waiters, who
    /// wait on `round_done` rather than on the condvar.
    completed: AtomicU64,
    stopped: AtomicBool,
    round_done: tokio::sync::Notify,
    /// How long each round's journal fsync took.
    fsync_times: sluice_model::Histogram,
}

#[derive(Debug, Default)]
struct State {
    /// One entry per shard written to (keyed by its progress), holding the
    /// furthest end written: bounded by the number of shards, not of appends.
    pending: HashMap<usize, PendingSync>,
    next_round: u64,
    completed_round: u64,
    urgent: bool,
    stop: bool,
}

impl Syncer {
    pub fn start(durability: Durability, journal: Arc<Journal>) -> Self {
        let inner = Arc::new(Inner {
            durability,
            journal,
            state: Mutex::new(State {
                next_round: 1,
                ..State::default()
            }),
            work: Condvar::new(),
            done: Condvar::new(),
            rounds: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
            round_done: tokio::sync::Notify::new(),
            fsync_times: sluice_model::Histogram::default(),
        });
        let worker = inner.clone();
        let thread = std::thread::Builder::new()
            .name("sluice-log-sync".into())
            .spawn(move || worker.run())
            .expect("spawn the log sync thread");
        Self {
            inner,
            thread: Mutex::new(Some(thread)),
        }
    }

    /// Registers several shards' writes at once (one lock); returns the ticket.
    pub fn register_many(&self, pending: impl IntoIterator<Item = PendingSync>) -> u64 {
        let mut state = self.inner.state.lock().unwrap();
        let was_idle = state.pending.is_empty();
        for p in pending {
            match state.pending.entry(Arc::as_ptr(&p.shard) as usize) {
                std::collections::hash_map::Entry::Occupied(mut e) => {
                    let entry = e.get_mut();
                    entry.end = entry.end.max(p.end);
                }
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(p);
                }
            }
        }
        if was_idle || matches!(self.inner.durability, Durability::Sync) {
            self.inner.work.notify_one();
        }
        state.next_round
    }

    /// Waits until the round `ticket` has completed. `urgent` starts a round now
    /// even in interval mode. Returns false if the syncer stopped first.
    pub fn wait(&self, ticket: u64, urgent: bool) -> bool {
        let mut state = self.inner.state.lock().unwrap();
        if urgent && state.completed_round < ticket {
            state.urgent = true;
            self.inner.work.notify_one();
        }
        while state.completed_round < ticket && !state.stop {
            state = self.inner.done.wait(state).unwrap();
        }
        state.completed_round >= ticket
    }

    /// [`Syncer::wait`] for async callers: the task, not a thread, waits
    /// (never urgent: rounds run back to back in sync mode).
    pub async fn wait_async(&self, ticket: u64) -> bool {
        loop {
            let notified = self.inner.round_done.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the check, so no round's wake-up is missed.
            notified.as_mut().enable();
            if self.inner.completed.load(Ordering::SeqCst) >= ticket {
                return true;
            }
            if self.inner.stopped.load(Ordering::SeqCst) {
                return false;
            }
            notified.await;
        }
    }

    /// Makes everything registered so far durable.
    pub fn flush(&self) -> bool {
        let ticket = self.inner.state.lock().unwrap().next_round;
        self.wait(ticket, true)
    }

    /// Rounds completed so far (for tests and metrics).
    pub fn rounds(&self) -> u64 {
        self.inner.rounds.load(Ordering::Relaxed)
    }

    /// How long the rounds' journal fsyncs took.
    pub fn fsync_times(&self) -> sluice_model::HistogramSnapshot {
        self.inner.fsync_times.snapshot()
    }

    /// Stops the thread without syncing what is pending (a crash keeps it unsynced too).
    pub fn stop(&self) {
        self.inner.state.lock().unwrap().stop = true;
        self.inner.stopped.store(true, Ordering::SeqCst);
        self.inner.work.notify_all();
        self.inner.done.notify_all();
        self.inner.round_done.notify_waiters();
        if let Some(thread) = self.thread.lock().unwrap().take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Inner {
    fn run(&self) {
        loop {
            let (batch, round) = {
                let mut state = self.state.lock().unwrap();
                let mut deadline = None;
                loop {
                    if state.stop {
                        return;
                    }
                    let due = match self.durability {
                        Durability::Sync => state.urgent || !state.pending.is_empty(),
                        // The interval starts with the first pending write; an idle
                        // log sleeps until a write or an urgent request wakes it.
                        Durability::Interval { .. } if state.pending.is_empty() => {
                            deadline = None;
                            state.urgent
                        }
                        Durability::Interval { fsync_interval_ms } => {
                            let at = *deadline.get_or_insert_with(|| {
                                Instant::now() + Duration::from_millis(fsync_interval_ms)
                            });
                            state.urgent || Instant::now() >= at
                        }
                    };
                    if due {
                        break;
                    }
                    state = match (self.durability, deadline) {
                        (Durability::Interval { .. }, Some(at)) => {
                            let wait = at.saturating_duration_since(Instant::now());
                            let wait = wait.max(Duration::from_millis(1));
                            self.work.wait_timeout(state, wait).unwrap().0
                        }
                        _ => self.work.wait(state).unwrap(),
                    };
                }
                let round = state.next_round;
                state.next_round += 1;
                state.urgent = false;
                let batch: Vec<PendingSync> =
                    std::mem::take(&mut state.pending).into_values().collect();
                (batch, round)
            };
            self.sync_batch(batch);
            self.rounds.fetch_add(1, Ordering::Relaxed);
            let mut state = self.state.lock().unwrap();
            state.completed_round = round;
            self.completed.store(round, Ordering::SeqCst);
            self.done.notify_all();
            drop(state);
            self.round_done.notify_waiters();
        }
    }

    fn sync_batch(&self, batch: Vec<PendingSync>) {
        // One fsync of the journal, however many shards the round touched.
        let started = Instant::now();
        let failed = self.journal.sync().is_err();
        self.fsync_times.record(started.elapsed());
        for p in batch {
            let shard = p.shard;
            // Once poisoned, never publish again: a later fsync may "succeed"
            // after the kernel dropped the pages an earlier one failed to write.
            if failed || self.journal.is_poisoned() || shard.poisoned.load(Ordering::SeqCst) {
                shard.poisoned.store(true, Ordering::SeqCst);
                shard.publish(0);
                continue;
            }
            shard.durable_end.fetch_max(p.end, Ordering::SeqCst);
            if matches!(self.durability, Durability::Sync) {
                shard.publish(p.end);
            }
        }
    }
}
