//! The set of shard logs under one data directory, and what they share: the
//! storage, the file pool, the journal, the group-commit syncer, the
//! checkpointer and the clock.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sluice_model::Clock;

use crate::error::{CreateError, IoContext, OpenError};
use crate::journal::{CheckpointEntry, Journal};
use crate::pool::FilePool;
use crate::shard_log::{append_prepared_unsynced, settle, Prepared, Replayed, ShardLog};
use crate::storage::{Storage, StorageFile};
use crate::syncer::{ShardProgress, Syncer};
use crate::{AppendError, AppendReceipt, AppendRecord, Durability, LogOptions, ShardLogId};

#[derive(Debug)]
pub(crate) struct Shared {
    pub storage: Arc<dyn Storage>,
    pub shards_dir: PathBuf,
    pub options: LogOptions,
    pub clock: Arc<dyn Clock>,
    pub pool: FilePool,
    pub journal: Arc<Journal>,
    pub syncer: Syncer,
    pub shards: RwLock<HashMap<ShardLogId, Arc<ShardLog>>>,
    /// One checkpoint at a time.
    checkpoint_lock: Mutex<()>,
    checkpoints: AtomicU64,
    /// Bytes of frames written to the journal but not yet to their segments.
    pub pending_bytes: AtomicU64,
    /// A segment write found the disk full; appends flush first until one succeeds.
    pub disk_full: AtomicBool,
    /// Capacity of flushed buffers that shard logs keep for reuse.
    pub pending_retained: AtomicU64,
    /// Bytes cut off newest segments at open (torn tails, unacknowledged
    /// bytes past the replayed end).
    pub recovery_cut_bytes: AtomicU64,
}

impl Shared {
    /// Unflushed frames the log holds at most (beyond it, appends flush
    /// their own shard's frames first, and the checkpointer flushes all).
    pub fn pending_bytes_max(&self) -> u64 {
        self.options.pending_bytes_max
    }
}

/// Appends in the journal whose group-commit round has not been waited for
/// (from [`Log::append_many_unsynced`]). Waiting settles the results: an
/// append whose round failed (a poisoned journal or shard) or never came
/// (shut down) turns into an error. Dropping it without waiting leaves the
/// appends unacknowledged, which is always safe.
#[must_use = "appends are not durable until waited for"]
#[derive(Debug)]
pub struct Unsynced {
    shared: Arc<Shared>,
    ticket: u64,
    /// Per result: the shard whose append succeeded so far.
    shards: Vec<Option<Arc<ShardProgress>>>,
}

impl Unsynced {
    /// Blocks the thread until the round is done, then settles `results`
    /// (those returned with this).
    pub fn wait(self, results: &mut [Result<AppendReceipt, AppendError>]) {
        let synced = self.shared.syncer.wait(self.ticket, false);
        self.settle(synced, results);
    }

    /// The same, awaiting the round instead of blocking a thread.
    pub async fn wait_async(self, results: &mut [Result<AppendReceipt, AppendError>]) {
        let synced = self.shared.syncer.wait_async(self.ticket).await;
        self.settle(synced, results);
    }

    fn settle(&self, synced: bool, results: &mut [Result<AppendReceipt, AppendError>]) {
        settle(&self.shared, synced, results, |i| {
            self.shards.get(i).and_then(|s| s.as_deref())
        });
    }
}

/// All shard logs of one data directory.
///
/// Dropping the `Log` stops the sync and checkpoint threads without a final
/// fsync (what a crash would do); call [`Log::flush`] first for a clean
/// shutdown in interval mode.
#[derive(Debug)]
pub struct Log {
    shared: Arc<Shared>,
    background: Background,
}

/// The checkpointer thread: makes spare journal files ahead of need and
/// checkpoints when enough journal has accumulated or enough time passed.
#[derive(Debug)]
struct Background {
    wake: Arc<(Mutex<bool>, Condvar)>,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// What opening a log found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// The directory was of format 1 (no journal) and was migrated.
    pub migrated_from_v1: bool,
    /// Journal entries and bytes replayed into segments.
    pub replayed_entries: u64,
    pub replayed_bytes: u64,
    /// Segment files fsynced after replay.
    pub segments_synced: u64,
    /// The journal was damaged and, as `LogOptions::cut_damaged_journal`
    /// allowed, cut there: every entry from this point on was dropped.
    pub journal_cut: Option<crate::JournalDamage>,
    /// Shard logs opened, and their segment files.
    pub shard_logs: u64,
    pub segments: u64,
    /// Bytes cut off the end of newest segments: torn tails, or bytes past
    /// what the journal and checkpoint vouch for (never acknowledged).
    pub bytes_cut: u64,
    /// Shard logs found damaged and quarantined.
    pub quarantined: u64,
}

impl Log {
    /// Opens (or creates) the log under `root`, recovering every shard log.
    pub fn open(
        storage: Arc<dyn Storage>,
        root: impl Into<PathBuf>,
        options: LogOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, OpenError> {
        Self::open_with_report(storage, root, options, clock).map(|(log, _)| log)
    }

    /// [`Log::open`], also saying what recovery did.
    pub fn open_with_report(
        storage: Arc<dyn Storage>,
        root: impl Into<PathBuf>,
        options: LogOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<(Self, OpenReport), OpenError> {
        let root = root.into();
        let shards_dir = root.join("shards");
        let journal_dir = root.join("journal");
        storage.create_dir_all(&shards_dir).at(&shards_dir)?;
        let journal = Journal::open(
            storage.clone(),
            journal_dir.clone(),
            options.journal_file_bytes,
        )
        .at(&journal_dir)?;
        for dir in [
            root.parent().unwrap_or(&root),
            &root,
            &shards_dir,
            &journal_dir,
        ] {
            if !dir.as_os_str().is_empty() {
                storage.sync_dir(dir).at(dir)?;
            }
        }
        let checkpoint = journal.read_checkpoint().at(&journal_dir)?;
        if checkpoint.is_none() && journal.has_files_in_use() {
            return Err(OpenError::Journal {
                path: journal_dir,
                detail: "journal files are in use but no checkpoint says where replay starts (was a checkpoint file deleted?)".into(),
            });
        }
        let mut names = storage.list_dir(&shards_dir).at(&shards_dir)?;
        names.sort();
        let journal = Arc::new(journal);
        let shared = Arc::new(Shared {
            pool: FilePool::new(storage.clone(), options.open_files_max),
            syncer: Syncer::start(options.durability, journal.clone()),
            journal,
            storage,
            shards_dir,
            options,
            clock,
            shards: RwLock::new(HashMap::new()),
            checkpoint_lock: Mutex::new(()),
            checkpoints: AtomicU64::new(0),
            pending_bytes: AtomicU64::new(0),
            disk_full: AtomicBool::new(false),
            pending_retained: AtomicU64::new(0),
            recovery_cut_bytes: AtomicU64::new(0),
        });
        let mut report = OpenReport {
            migrated_from_v1: checkpoint.is_none() && !names.is_empty(),
            ..OpenReport::default()
        };
        // Without a checkpoint (format 1, or a new directory) every shard
        // log is recovered by scanning its newest segment, as format 1 did.
        let scan = checkpoint.is_none();
        let journal_path = shared.journal.dir().to_path_buf();
        let replay_from = checkpoint.as_ref().map_or(0, |c| c.replay_from);
        let cut = shared.options.cut_damaged_journal;
        // Two walks of the journal, neither holding it in memory: the first
        // finds its end and which segments it has frames for (recovery of
        // each shard log needs that), the second writes the frames back.
        let mut journaled: HashMap<u64, Vec<u64>> = HashMap::new();
        let walked = shared
            .journal
            .walk(replay_from, cut, None, &mut |e| {
                let bases = journaled.entry(e.shard).or_default();
                if !bases.contains(&e.segment_base) {
                    bases.push(e.segment_base);
                }
                Ok(())
            })
            .at(&journal_path)?
            .map_err(|damage| OpenError::JournalDamaged(Box::new(damage)))?;
        let mut shards = HashMap::new();
        for name in names {
            let Some(id) = ShardLogId::parse_dir_name(&name) else {
                continue;
            };
            let dir = shared.shards_dir.join(&name);
            let bases = journaled.get(&id.0).map_or(&[][..], |b| &b[..]);
            if let Some(log) = ShardLog::recover(shared.clone(), id, dir, scan, bases)? {
                shards.insert(id, Arc::new(log));
            }
        }
        if let Some(cp) = &checkpoint {
            let mut replayed: HashMap<ShardLogId, Replayed> = HashMap::new();
            shared
                .journal
                .walk(replay_from, cut, Some(walked.end), &mut |e| {
                    let id = ShardLogId(e.shard);
                    let Some(log) = shards.get(&id) else {
                        return Ok(());
                    };
                    let Some(header) =
                        log.replay_entry(e.segment_base, e.segment_salt, e.offset, &e.body)?
                    else {
                        return Ok(());
                    };
                    let r = replayed.entry(id).or_default();
                    r.last_base = e.segment_base;
                    r.last_end = e.offset + header.frame_len();
                    r.closed_at =
                        (header.kind == crate::frame::FrameKind::Close).then_some(e.offset);
                    r.max_timestamp_ms = r.max_timestamp_ms.max(header.timestamp_ms);
                    if !r.touched.contains(&e.segment_base) {
                        r.touched.push(e.segment_base);
                    }
                    Ok(())
                })
                .at(&journal_path)?
                // Not damage: the first walk would have said so.
                .map_err(|damage| OpenError::JournalDamaged(Box::new(damage)))?;
            report.journal_cut = walked.cut.clone();
            report.replayed_entries = walked.entries;
            report.replayed_bytes = walked.bytes;
            let by_shard: HashMap<u64, &CheckpointEntry> =
                cp.entries.iter().map(|e| (e.shard, e)).collect();
            let mut to_sync: Vec<Arc<dyn StorageFile>> = Vec::new();
            for (id, log) in &shards {
                let r = replayed.get(id);
                if let Some(file) = log
                    .finish_replay(by_shard.get(&id.0).copied(), r)
                    .at(&shared.shards_dir)?
                {
                    to_sync.push(file);
                }
                // Sealed segments that replay wrote into.
                for &base in r.map_or(&[][..], |r| &r.touched[..]) {
                    if let Some(file) = log.sealed_segment_file(base).at(&shared.shards_dir)? {
                        to_sync.push(file);
                    }
                }
            }
            report.segments_synced = to_sync.len() as u64;
            sync_all(&to_sync).at(&shared.shards_dir)?;
        }
        report.shard_logs = shards.len() as u64;
        for log in shards.values() {
            let info = log.info();
            report.segments += info.segment_count as u64;
            report.quarantined += u64::from(info.damage.is_some());
        }
        report.bytes_cut = shared.recovery_cut_bytes.load(Ordering::Relaxed);
        *shared.shards.write().unwrap() = shards;
        // A fresh journal chain, and a checkpoint that starts replay there:
        // everything recovered is in the segments, durably.
        shared.journal.start_fresh();
        let start = shared.journal.begin().at(&journal_path)?;
        write_checkpoint(&shared, start).at(&journal_path)?;
        shared.journal.trim(start).at(&journal_path)?;
        let background = Background::start(shared.clone());
        Ok((Self { shared, background }, report))
    }

    /// Appends one batch to each of several shard logs of this log (each
    /// shard log at most once): all frames go into the journal with one
    /// write and share one group-commit round. Results in order.
    pub fn append_many(
        &self,
        batches: &[(&ShardLog, &[AppendRecord<'_>])],
    ) -> Vec<Result<AppendReceipt, AppendError>> {
        let (mut results, unsynced) = self.append_many_unsynced(batches);
        if let Some(unsynced) = unsynced {
            unsynced.wait(&mut results);
        }
        results
    }

    /// [`Log::append_many`] without the wait: the appends are in the journal
    /// but not yet acknowledged. In sync mode the caller must wait on the
    /// [`Unsynced`] (blocking or async) before taking any `Ok` as durable;
    /// in interval mode, and when nothing was written, there is none.
    pub fn append_many_unsynced(
        &self,
        batches: &[(&ShardLog, &[AppendRecord<'_>])],
    ) -> (Vec<Result<AppendReceipt, AppendError>>, Option<Unsynced>) {
        let mut results: Vec<Option<Result<AppendReceipt, AppendError>>> =
            (0..batches.len()).map(|_| None).collect();
        let mut items = Vec::with_capacity(batches.len());
        let mut positions = Vec::with_capacity(batches.len());
        for (i, (log, records)) in batches.iter().enumerate() {
            match Prepared::records(records) {
                Ok(p) => {
                    items.push((*log, p));
                    positions.push(i);
                }
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        let (outcomes, ticket) = append_prepared_unsynced(&self.shared, &mut items);
        let mut shards: Vec<Option<Arc<ShardProgress>>> = vec![None; batches.len()];
        for ((&i, outcome), (log, _)) in positions.iter().zip(&outcomes).zip(&items) {
            if outcome.is_ok() {
                shards[i] = Some(log.progress.clone());
            }
        }
        for ((i, outcome), (log, _)) in positions.into_iter().zip(outcomes).zip(&items) {
            let count = batches[i].1.len() as u16;
            results[i] = Some(outcome.map(|(offset, timestamp_ms)| AppendReceipt {
                epoch: log.epoch(),
                offset,
                record_count: count,
                arrival_timestamp_ms: timestamp_ms,
            }));
        }
        let results = results.into_iter().map(|r| r.unwrap()).collect();
        let unsynced = ticket
            .filter(|_| self.shared.options.durability == Durability::Sync)
            .map(|ticket| Unsynced {
                shared: self.shared.clone(),
                ticket,
                shards,
            });
        (results, unsynced)
    }

    /// Checkpoints now: fsyncs every segment written since the last
    /// checkpoint, records where each shard log ends, and lets go of the
    /// journal before that point.
    pub fn checkpoint(&self) -> io::Result<()> {
        checkpoint(&self.shared)
    }

    /// Checkpoints completed since the log was opened.
    pub fn checkpoints(&self) -> u64 {
        self.shared.checkpoints.load(Ordering::Relaxed)
    }

    /// Bytes of frames not yet written to their segments (the journal holds them).
    pub fn pending_bytes(&self) -> u64 {
        self.shared.pending_bytes.load(Ordering::Relaxed)
    }

    /// Journal bytes written since the last checkpoint.
    pub fn journal_bytes_pending(&self) -> u64 {
        self.shared.journal.bytes_since_checkpoint()
    }

    /// Journal files on disk (in use and spare).
    pub fn journal_files(&self) -> usize {
        self.shared.journal.file_count()
    }

    /// True once a journal write or fsync failed: every shard log refuses
    /// appends until the process restarts.
    pub fn is_poisoned(&self) -> bool {
        self.shared.journal.is_poisoned()
    }

    /// Creates an empty shard log. Its sequence numbers all start with `epoch`
    /// (at least 1): give a child shard a greater epoch than its parents.
    pub fn create_shard(&self, id: ShardLogId, epoch: u64) -> Result<Arc<ShardLog>, CreateError> {
        let mut shards = self.shared.shards.write().unwrap();
        if shards.contains_key(&id) {
            return Err(CreateError::AlreadyExists);
        }
        let dir = self.shared.shards_dir.join(id.dir_name());
        let storage = &self.shared.storage;
        // A directory that no shard log owns is what a failed create or delete
        // left behind: nothing in it was ever acknowledged. Clear it first.
        if storage.list_dir(&dir).is_ok() {
            storage.remove_dir_all(&dir)?;
            storage.sync_dir(&self.shared.shards_dir)?;
        }
        match ShardLog::create(self.shared.clone(), id, dir.clone(), epoch) {
            Ok(log) => {
                let log = Arc::new(log);
                shards.insert(id, log.clone());
                Ok(log)
            }
            Err(e) => {
                // Leave nothing behind (a full disk, no descriptors left): the
                // next create of this id starts clean even if this fails too.
                if storage.remove_dir_all(&dir).is_ok() {
                    let _ = storage.sync_dir(&self.shared.shards_dir);
                }
                Err(e)
            }
        }
    }

    pub fn shard(&self, id: ShardLogId) -> Option<Arc<ShardLog>> {
        self.shared.shards.read().unwrap().get(&id).cloned()
    }

    /// [`Log::shard`] for many ids under one lock (a PutRecords may touch
    /// hundreds of shards).
    pub fn shards(&self, ids: impl IntoIterator<Item = ShardLogId>) -> Vec<Option<Arc<ShardLog>>> {
        let shards = self.shared.shards.read().unwrap();
        ids.into_iter().map(|id| shards.get(&id).cloned()).collect()
    }

    pub fn shard_ids(&self) -> Vec<ShardLogId> {
        let mut ids: Vec<_> = self.shared.shards.read().unwrap().keys().copied().collect();
        ids.sort();
        ids
    }

    /// Deletes a shard log and its files; false if there was none.
    pub fn delete_shard(&self, id: ShardLogId) -> std::io::Result<bool> {
        // Hold the map while the files go, so that no create of the same id runs meanwhile.
        let mut shards = self.shared.shards.write().unwrap();
        let Some(log) = shards.remove(&id) else {
            return Ok(false);
        };
        log.delete()?;
        Ok(true)
    }

    /// Makes every acknowledged append durable (a no-op in sync mode).
    pub fn flush(&self) -> bool {
        self.shared.syncer.flush()
    }

    pub fn durability(&self) -> Durability {
        self.shared.options.durability
    }

    /// Group-commit rounds run so far.
    pub fn sync_rounds(&self) -> u64 {
        self.shared.syncer.rounds()
    }

    /// How long the group-commit rounds' journal fsyncs took.
    pub fn fsync_times(&self) -> sluice_model::HistogramSnapshot {
        self.shared.syncer.fsync_times()
    }

    /// The most segment files the pool holds open.
    pub fn open_files_max(&self) -> usize {
        self.shared.options.open_files_max
    }

    /// Files the pool holds open now.
    pub fn open_files(&self) -> usize {
        self.shared.pool.open_count()
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.background.stop();
        self.shared.syncer.stop();
        // Shard logs point back at what they share: let go of them.
        self.shared.shards.write().unwrap().clear();
    }
}

/// Writes a checkpoint of every shard log with replay starting at `replay_from`.
fn write_checkpoint(shared: &Shared, replay_from: u64) -> io::Result<()> {
    let logs: Vec<Arc<ShardLog>> = shared.shards.read().unwrap().values().cloned().collect();
    let mut entries = Vec::with_capacity(logs.len());
    for log in &logs {
        if let Some((entry, _)) = log.checkpoint_entry()? {
            entries.push(entry);
        }
    }
    entries.sort_by_key(|e| e.shard);
    shared.journal.write_checkpoint(replay_from, &entries)?;
    shared.checkpoints.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

fn checkpoint(shared: &Shared) -> io::Result<()> {
    let _one = shared.checkpoint_lock.lock().unwrap();
    if shared.journal.is_poisoned() {
        return Err(io::Error::other("the journal is poisoned"));
    }
    // Everything journaled before this point is in its shard's pending
    // buffer or segment already: a frame is added there before its journal
    // entry is written, under the shard's lock, which the snapshot below
    // takes (and writes the pending frames to the segment under).
    let replay_from = shared.journal.written_lsn();
    let logs: Vec<Arc<ShardLog>> = shared.shards.read().unwrap().values().cloned().collect();
    let mut entries = Vec::with_capacity(logs.len());
    let mut dirty: Vec<(Arc<ShardLog>, Arc<dyn StorageFile>)> = Vec::new();
    for log in &logs {
        match log.checkpoint_entry() {
            Ok(Some((entry, file))) => {
                entries.push(entry);
                if let Some(file) = file {
                    dirty.push((log.clone(), file));
                }
            }
            Ok(None) => {}
            Err(e) => {
                // Those already taken were not fsynced: the next checkpoint must.
                for (log, _) in &dirty {
                    log.mark_dirty();
                }
                return Err(e);
            }
        }
    }
    let files: Vec<Arc<dyn StorageFile>> = dirty.iter().map(|(_, f)| f.clone()).collect();
    if let Err(e) = sync_all(&files) {
        // The kernel may have dropped what it failed to write: the journal
        // still holds it, but nothing more may become visible.
        shared.journal.poison();
        for (log, _) in &dirty {
            log.mark_dirty();
        }
        return Err(e);
    }
    entries.sort_by_key(|e| e.shard);
    if let Err(e) = shared.journal.write_checkpoint(replay_from, &entries) {
        for (log, _) in &dirty {
            log.mark_dirty();
        }
        return Err(e);
    }
    shared.checkpoints.fetch_add(1, Ordering::Relaxed);
    // Every segment took its frames: the disk has room again (if it was full).
    shared.disk_full.store(false, Ordering::Relaxed);
    shared.journal.trim(replay_from)
}

/// Most fsyncs issued at once (they overlap in the kernel).
const SYNC_WORKERS_MAX: usize = 8;

/// Fsyncs every file, several at once; the first error, if any.
fn sync_all(files: &[Arc<dyn StorageFile>]) -> io::Result<()> {
    if let [file] = files {
        return file.sync_data();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failed: Mutex<Option<io::Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..files.len().min(SYNC_WORKERS_MAX) {
            scope.spawn(|| {
                while let Some(file) = files.get(next.fetch_add(1, Ordering::Relaxed)) {
                    if let Err(e) = file.sync_data() {
                        failed.lock().unwrap().get_or_insert(e);
                    }
                }
            });
        }
    });
    match failed.into_inner().unwrap() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

impl Background {
    fn start(shared: Arc<Shared>) -> Self {
        let wake = Arc::new((Mutex::new(false), Condvar::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (w, st) = (wake.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("sluice-log-checkpoint".into())
            .spawn(move || background_loop(&shared, &w, &st))
            .expect("spawn the log checkpoint thread");
        Self {
            wake,
            stop,
            thread: Mutex::new(Some(thread)),
        }
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        *self.wake.0.lock().unwrap() = true;
        self.wake.1.notify_all();
        if let Some(t) = self.thread.lock().unwrap().take() {
            let _ = t.join();
        }
    }
}

/// How long after failing to make a spare journal file the next try waits.
const SPARE_RETRY: Duration = Duration::from_secs(60);

/// Failed flushes are reported at most this often.
const FLUSH_WARN_EVERY: Duration = Duration::from_secs(5);

/// How often the checkpointer looks at the journal.
const BACKGROUND_TICK: Duration = Duration::from_millis(50);

fn background_loop(shared: &Shared, wake: &(Mutex<bool>, Condvar), stop: &AtomicBool) {
    let options = shared.options;
    let mut last = Instant::now();
    let mut failures = 0u32;
    let mut spare_retry_at = Instant::now();
    let mut last_flush_warning = None;
    while !stop.load(Ordering::SeqCst) {
        {
            let guard = wake.0.lock().unwrap();
            let (mut guard, _) = wake.1.wait_timeout(guard, BACKGROUND_TICK).unwrap();
            *guard = false;
        }
        if stop.load(Ordering::SeqCst) || shared.journal.is_poisoned() {
            continue;
        }
        if options.journal_spares && Instant::now() >= spare_retry_at {
            if let Err(e) = shared.journal.prepare_spare() {
                tracing::warn!("making a spare journal file failed (retried in a minute): {e}");
                // A full disk: writes make a (smaller) file when they need one,
                // or fail; the spare is tried again much later, so that zeros
                // written and taken back do not keep the disk full meanwhile.
                spare_retry_at = Instant::now() + SPARE_RETRY;
            }
        }
        // Too much written behind: flush every shard's frames to its segment.
        if shared.pending_bytes.load(Ordering::Relaxed) > shared.pending_bytes_max() / 2 {
            let logs: Vec<Arc<ShardLog>> =
                shared.shards.read().unwrap().values().cloned().collect();
            let mut failed = None;
            for log in logs {
                if let Err(e) = log.flush() {
                    failed.get_or_insert((log.id(), e));
                }
            }
            // At most one line per FLUSH_WARN_EVERY: a full disk fails every tick.
            if let Some((id, e)) = failed {
                if last_flush_warning.is_none_or(|at: Instant| at.elapsed() >= FLUSH_WARN_EVERY) {
                    last_flush_warning = Some(Instant::now());
                    tracing::warn!(
                        "writing frames behind the journal failed (shard log {:016x}, and perhaps others): {e}",
                        id.0
                    );
                }
            }
        }
        let pending = shared.journal.bytes_since_checkpoint();
        let by_bytes = pending >= options.checkpoint_bytes;
        // A full disk: try again soon, so that appends resume once there is room.
        let by_disk = shared.disk_full.load(Ordering::Relaxed) && pending > 0;
        let by_time = options.checkpoint_interval_ms > 0
            && pending > 0
            && last.elapsed() >= Duration::from_millis(options.checkpoint_interval_ms);
        // After a failure, back off (at most about 5 s) before trying again.
        let backoff = BACKGROUND_TICK * (1 << failures.min(7));
        if (by_bytes || by_time || by_disk) && last.elapsed() >= backoff.min(Duration::from_secs(5))
        {
            match checkpoint(shared) {
                Ok(()) => failures = 0,
                Err(e) => {
                    failures += 1;
                    tracing::warn!(
                        "a checkpoint failed (try {failures}, retried with backoff): {e}"
                    );
                }
            }
            last = Instant::now();
        }
    }
}
