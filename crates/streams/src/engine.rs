//! The engine's state: the catalog (persisted as a snapshot file), the shard
//! logs, the clock and the key that authenticates shard iterators, and what
//! lives beside them (subscriptions, throughput buckets, scaling, health).

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use sluice_log::{Log, LogOptions, OsStorage, ShardLog, ShardLogId, Storage};
use sluice_meta::{Applied, Catalog, Command, Ending, Scope};
use sluice_model::Clock;

use crate::store::{CatalogStore, FileCatalogStore, CATALOG_FILE};
use crate::Config;

/// Why a data directory could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("data directory {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    // Not marked as sources: the message says them already, and a chain
    // printed with `{:#}` would say them twice.
    #[error("catalog: {0}")]
    Catalog(sluice_meta::MetaError),
    #[error("storage: {0}")]
    Log(sluice_log::OpenError),
    #[error("data directory {0} is in use by another Sluice process")]
    InUse(PathBuf),
    #[error("{0} is missing but the data directory holds shard logs; refusing to start rather than delete them")]
    MissingCatalog(PathBuf),
}

impl From<sluice_meta::MetaError> for OpenError {
    fn from(e: sluice_meta::MetaError) -> Self {
        Self::Catalog(e)
    }
}

impl From<sluice_log::OpenError> for OpenError {
    fn from(e: sluice_log::OpenError) -> Self {
        Self::Log(e)
    }
}

#[derive(Debug)]
pub struct Engine {
    pub config: Config,
    pub clock: Arc<dyn Clock>,
    /// The catalog as last committed, for readers (the data plane): they
    /// take a snapshot and never wait for a commit's fsyncs.
    published: RwLock<Arc<Catalog>>,
    /// The writers' copy: held by a control-plane change while it builds
    /// and commits the next catalog (one change at a time).
    writer: Mutex<Arc<Catalog>>,
    log: Log,
    /// The disk, for the catalog, the reserve and the iterator key (the
    /// log's own files go through it too).
    storage: Arc<dyn Storage>,
    store: Box<dyn CatalogStore>,
    iterator_key: [u8; 32],
    /// Live SubscribeToShard event streams.
    pub subscriptions: crate::fanout::Subscriptions,
    /// On-demand streams' load, and the scaling policy's memory.
    pub autoscaler: crate::autoscale::Autoscaler,
    /// Per-shard throughput buckets (the `aws` limits profile).
    pub throttles: crate::limits::Throttles,
    /// What `/health` reports beyond the shards' own state.
    pub health: crate::health::Health,
    /// What each stream took in and refused.
    pub stats: crate::stats::Stats,
    /// Set when the server stops: background work ends early.
    pub stopping: std::sync::atomic::AtomicBool,
    /// Held (flock) while this state lives: one process per data directory.
    _lock: std::fs::File,
}

/// Why [`Engine::change`] made no change (or, for `Io` after the catalog
/// file was replaced, made one that may not survive a power loss).
#[derive(Debug)]
pub enum Refused<E> {
    /// The caller's check refused it.
    Check(E),
    /// The catalog refused the command.
    Meta(sluice_meta::MetaError),
    /// The disk failed.
    Io(std::io::Error),
}

impl Refused<std::convert::Infallible> {
    /// For changes with no check that can refuse: a catalog refusal as an
    /// I/O error of kind `Other`.
    pub fn into_io(self) -> std::io::Error {
        match self {
            Self::Check(never) => match never {},
            Self::Meta(e) => std::io::Error::other(e),
            Self::Io(e) => e,
        }
    }
}

/// The catalog held for a change (see [`Engine::catalog_mut`]).
#[derive(Debug)]
struct CatalogWriter<'a>(MutexGuard<'a, Arc<Catalog>>);

impl std::ops::Deref for CatalogWriter<'_> {
    type Target = Catalog;

    fn deref(&self) -> &Catalog {
        &self.0
    }
}

/// Space set aside so that deleting streams works on a full disk (the
/// catalog must be written to delete anything): see [`Engine::commit_freeing`].
const RESERVE_FILE: &str = "reserve";
/// The reserve is at least this large, and at least twice the catalog.
const RESERVE_MIN_BYTES: u64 = 4 << 20;

/// A stream's account and name, and some of its shards (index, log id):
/// closed shards whose ending sequence number is not recorded yet, or
/// shards whose records all expired.
type StreamShards = (Scope, String, Vec<(u32, u64)>);
const KEY_FILE: &str = "iterator.key";

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> OpenError + '_ {
    move |error| OpenError::Io {
        path: path.to_path_buf(),
        error,
    }
}

impl Engine {
    /// Opens the data directory on the real file system.
    pub fn open(config: Config, clock: Arc<dyn Clock>) -> Result<Self, OpenError> {
        Self::open_with(config, clock, Arc::new(OsStorage))
    }

    /// Opens the data directory with its files on `storage` (a simulated
    /// disk in crash tests; the lock file is always the real one, at the
    /// same path).
    pub fn open_with(
        config: Config,
        clock: Arc<dyn Clock>,
        storage: Arc<dyn Storage>,
    ) -> Result<Self, OpenError> {
        let dir = config.data_dir.clone();
        std::fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        storage.create_dir_all(&dir).map_err(io_at(&dir))?;
        // The directory's own entry (and its parents', if just made) must
        // survive a crash too, or everything in it goes with it. Best
        // effort above the data directory: a parent we cannot open is not
        // ours to sync.
        for ancestor in dir.ancestors().skip(1) {
            if !ancestor.as_os_str().is_empty() {
                let _ = storage.sync_dir(ancestor);
            }
        }
        let lock_path = dir.join("LOCK");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_at(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(OpenError::InUse(dir)),
            Err(std::fs::TryLockError::Error(e)) => return Err(io_at(&lock_path)(e)),
        }
        let catalog_path = dir.join(CATALOG_FILE);
        let store: Box<dyn CatalogStore> =
            Box::new(FileCatalogStore::new(storage.clone(), dir.clone()));
        let (catalog, catalog_missing) = match store.load().map_err(io_at(&catalog_path))? {
            Some(bytes) => (
                Catalog::from_snapshot_in(&bytes, &config.default_scope())?,
                false,
            ),
            None => (Catalog::new(), true),
        };
        let iterator_key = load_or_create_key(&*storage, &dir.join(KEY_FILE))?;
        // Segment files held open: half of the open-file limit (up to 64k),
        // so that connections and the rest always find descriptors, and a
        // write round-robin over thousands of shards does not reopen a file
        // per write.
        let limit = crate::open_file_limit().unwrap_or(1024);
        let options = LogOptions {
            durability: config.durability,
            segment_bytes: config.segment_bytes.max(4096),
            journal_file_bytes: config.journal_file_bytes,
            open_files_max: (limit / 2).clamp(16, 65_536),
            ..LogOptions::default()
        };
        let (log, report) =
            Log::open_with_report(storage.clone(), dir.join("log"), options, clock.clone())?;
        tracing::info!(
            "opened {}: {} streams; {} shard logs in {} segment files; replayed {} journal entries ({} bytes) into {} segments; cut {} unacknowledged bytes off segment ends; {} shard logs in quarantine{}{}",
            dir.display(),
            catalog.streams().count(),
            report.shard_logs,
            report.segments,
            report.replayed_entries,
            report.replayed_bytes,
            report.segments_synced,
            report.bytes_cut,
            report.quarantined,
            if report.migrated_from_v1 { "; migrated from format 1" } else { "" },
            match &report.journal_cut {
                Some(damage) => format!("; the damaged journal was cut at {damage}"),
                None => String::new(),
            },
        );
        if catalog_missing && !log.shard_ids().is_empty() {
            return Err(OpenError::MissingCatalog(catalog_path));
        }
        if catalog_missing {
            // A new data directory gets its (empty) catalog at once: from
            // here on, shard logs without a catalog mean it was lost, never
            // that the first stream's creation was cut short.
            store
                .save(&catalog.snapshot())
                .map_err(|e| io_at(&catalog_path)(e.error))?;
        }
        // Shard logs whose stream is gone (a crash between the two deletes) go now.
        let live: std::collections::HashSet<u64> = catalog
            .streams()
            .flat_map(|s| s.shards.iter().map(|sh| sh.log_id))
            .collect();
        for id in log.shard_ids() {
            if !live.contains(&id.0) {
                log.delete_shard(id).map_err(io_at(&dir))?;
            }
        }
        let state = Self {
            config,
            clock,
            published: RwLock::new(Arc::new(catalog.clone())),
            writer: Mutex::new(Arc::new(catalog)),
            log,
            storage,
            store,
            iterator_key,
            subscriptions: crate::fanout::Subscriptions::default(),
            autoscaler: crate::autoscale::Autoscaler::default(),
            throttles: crate::limits::Throttles::default(),
            health: crate::health::Health::default(),
            stats: crate::stats::Stats::default(),
            stopping: std::sync::atomic::AtomicBool::new(false),
            _lock: lock,
        };
        for problem in state.shard_problems() {
            crate::warn(problem);
        }
        // A close frame that damage took away (the newest segment's last
        // frame is cut as a torn tail) goes back at the same offset, so the
        // recorded ending sequence number holds again.
        for log_id in state.closed_in_catalog() {
            if let Some(log) = state.shard_log(log_id) {
                if log.info().ending_sequence.is_none() && log.info().damage.is_none() {
                    if let Err(e) = log.close() {
                        crate::warn(format_args!("closing shard log {log_id:016x}: {e}"));
                    }
                }
            }
        }
        // Housekeeping that fails here (a full disk) is retried periodically;
        // the server starts anyway so that streams can be deleted.
        if let Err(e) = state.finish_pending_closes() {
            crate::warn(format_args!("finishing closes at start: {e}"));
        }
        // The log keeps its trim point in memory only: re-apply retention first.
        if let Err(e) = state.apply_retention() {
            crate::warn(format_args!("applying retention at start: {e}"));
        }
        if let Err(e) = state.sweep_deleted() {
            crate::warn(format_args!("removing deleted streams at start: {e}"));
        }
        state.ensure_reserve();
        Ok(state)
    }

    /// Shard logs of closed shards, by the catalog.
    fn closed_in_catalog(&self) -> Vec<u64> {
        self.catalog()
            .streams()
            .flat_map(|s| {
                s.shards
                    .iter()
                    .filter(|sh| {
                        sh.closed
                            .as_ref()
                            .is_some_and(|c| c.ending_sequence.is_some())
                    })
                    .map(|sh| sh.log_id)
            })
            .collect()
    }

    /// Poisoned and quarantined shards, named as callers know them.
    pub fn shard_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (name, log_id) in self.named_shards() {
            let Some(log) = self.shard_log(log_id) else {
                continue;
            };
            let info = log.info();
            if info.poisoned {
                problems.push(format!(
                    "{name} refuses writes after a failed fsync; restart the server to recover it"
                ));
            }
            if let Some(damage) = info.damage {
                problems.push(quarantine_problem(&name, &damage));
            }
        }
        problems
    }

    /// "shard S of stream N under account A in REGION" and the shard log
    /// id, for every shard in the catalog.
    fn named_shards(&self) -> Vec<(String, u64)> {
        self.catalog()
            .streams()
            .flat_map(|s| {
                s.shards.iter().map(|sh| {
                    let name = format!(
                        "shard {} of stream {} under account {} in {}",
                        sluice_meta::shard_id(sh.index),
                        s.name,
                        s.account,
                        s.region
                    );
                    (name, sh.log_id)
                })
            })
            .collect()
    }

    /// Everything `/health` reports; empty when all is well.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = self.health.problems();
        problems.extend(self.shard_problems());
        problems
    }

    /// Verifies every frame of every shard log (opening checks only the
    /// newest segments), quarantining and reporting damage: run in the
    /// background after start. Returns how many shard logs are damaged.
    pub fn verify_all(&self) -> usize {
        let mut damaged = 0;
        for id in self.log.shard_ids() {
            if self.stopping.load(Ordering::Relaxed) {
                break;
            }
            let Some(log) = self.log.shard(id) else {
                continue;
            };
            let known = log.damage().is_some();
            match log.verify(&|| self.stopping.load(Ordering::Relaxed)) {
                Ok(Some(damage)) => {
                    damaged += 1;
                    if !known {
                        let name = self
                            .named_shards()
                            .into_iter()
                            .find(|(_, log_id)| *log_id == id.0)
                            .map_or_else(|| format!("shard log {id}"), |(name, _)| name);
                        crate::warn(quarantine_problem(&name, &damage));
                    }
                }
                Ok(None) | Err(sluice_log::ReadError::Deleted) => {}
                Err(e) => crate::warn(format_args!("verifying shard log {id}: {e}")),
            }
        }
        damaged
    }

    /// Makes one change to the catalog. Under the writer lock (one change
    /// at a time), `check` sees the catalog as it is at `now` and names the
    /// command, or refuses with its own error; the command is applied to a
    /// copy; the shard logs it needs are created; the copy is committed
    /// (giving up the reserve on a full disk if the command frees space).
    /// Then the shard logs it removed are deleted and those it closed are
    /// closed, their ends recorded by a second command.
    pub fn change<E>(
        &self,
        check: impl FnOnce(&Catalog, u64) -> Result<Command, E>,
    ) -> Result<Applied, Refused<E>> {
        self.change_with(|c, now| check(c, now).map(Some), |_| {})
    }

    /// [`Engine::change`] whose check may find nothing to do (`None`), and
    /// which runs `after_commit` once the catalog is committed, before any
    /// shard log is deleted or closed.
    pub fn change_with<E>(
        &self,
        check: impl FnOnce(&Catalog, u64) -> Result<Option<Command>, E>,
        after_commit: impl FnOnce(&Applied),
    ) -> Result<Applied, Refused<E>> {
        let now = self.now_ms();
        let (command, applied) = {
            let mut writer = self.catalog_mut();
            let Some(command) = check(&writer, now).map_err(Refused::Check)? else {
                return Ok(Applied::default());
            };
            let (next, applied) = writer.applied(&command, now).map_err(Refused::Meta)?;
            // Shard logs first, then the catalog: a crash in between leaves
            // orphan logs, which the next start deletes, never a catalog
            // naming missing logs.
            let delete_created = |upto: usize| {
                // Leave nothing behind, so that the ids can be handed out again.
                for &(log_id, _) in &applied.created[..upto] {
                    let _ = self.log.delete_shard(ShardLogId(log_id));
                }
            };
            for (n, &(log_id, epoch)) in applied.created.iter().enumerate() {
                if let Err(e) = self.log.create_shard(ShardLogId(log_id), epoch) {
                    delete_created(n);
                    return Err(Refused::Io(std::io::Error::other(e)));
                }
            }
            let committed = if command.frees_space() {
                self.commit_freeing(&mut writer, next)
            } else {
                self.commit(&mut writer, next)
            };
            if let Err(e) = committed {
                // A failure after the rename leaves the change in the
                // catalog: its logs stay.
                let kept = applied.created.first().is_none_or(|&(id, _)| {
                    writer
                        .streams()
                        .any(|s| s.shards.iter().any(|sh| sh.log_id == id))
                });
                if !kept {
                    delete_created(applied.created.len());
                }
                return Err(Refused::Io(e));
            }
            (command, applied)
        };
        after_commit(&applied);
        for &log_id in &applied.removed {
            self.log
                .delete_shard(ShardLogId(log_id))
                .map_err(Refused::Io)?;
        }
        if !applied.removed.is_empty() {
            self.ensure_reserve();
        }
        if let (false, Some((scope, name))) = (applied.closed.is_empty(), command.stream()) {
            self.finish_closes(scope, name, &applied.closed)
                .map_err(Refused::Io)?;
        }
        Ok(applied)
    }

    /// Closes the shard logs of shards that a split or merge closed, and
    /// records their ending sequence numbers in the catalog. Closing a log
    /// again returns the same number, so this also finishes a reshard that a
    /// crash interrupted.
    fn finish_closes(
        &self,
        scope: &Scope,
        name: &str,
        closed: &[(u32, u64)],
    ) -> std::io::Result<()> {
        let mut endings = Vec::new();
        for &(index, log_id) in closed {
            if let Some(log) = self.shard_log(log_id) {
                match log.close() {
                    Ok(sequence) => endings.push(Ending { index, sequence }),
                    // Damaged data takes no close frame until repaired; the
                    // other shards close, and this one stays pending.
                    Err(sluice_log::AppendError::Quarantined(_)) => {}
                    Err(e) => return Err(std::io::Error::other(e)),
                }
            }
        }
        if endings.is_empty() {
            return Ok(());
        }
        let record = Command::RecordEndings {
            scope: scope.clone(),
            name: name.to_owned(),
            endings,
        };
        self.change(|_, _| Ok::<_, std::convert::Infallible>(record))
            .map(drop)
            .map_err(Refused::into_io)
    }

    /// Finishes the closes of every reshard that did not get to record its
    /// parents' ending sequence numbers (a crash, or a failed close or
    /// commit): at start, and from the periodic housekeeping.
    pub fn finish_pending_closes(&self) -> std::io::Result<()> {
        for (scope, name, closing) in self.unfinished_closes() {
            self.finish_closes(&scope, &name, &closing)?;
        }
        Ok(())
    }

    /// Closed shards whose ending sequence number is not recorded (a crash
    /// during a reshard): by stream, the shards to finish closing.
    fn unfinished_closes(&self) -> Vec<StreamShards> {
        self.catalog()
            .streams()
            .filter_map(|s| {
                let closing: Vec<(u32, u64)> = s
                    .shards
                    .iter()
                    .filter(|sh| {
                        sh.closed
                            .as_ref()
                            .is_some_and(|c| c.ending_sequence.is_none())
                    })
                    .map(|sh| (sh.index, sh.log_id))
                    .collect();
                (!closing.is_empty()).then(|| (s.scope(), s.name.clone(), closing))
            })
            .collect()
    }

    /// Removes the streams whose DELETING time is over, and their shard logs.
    pub fn sweep_deleted(&self) -> std::io::Result<()> {
        self.change_with(
            |catalog, now| {
                Ok::<_, std::convert::Infallible>(catalog.has_gone(now).then_some(Command::Sweep))
            },
            |_| {},
        )
        .map(drop)
        .map_err(Refused::into_io)
    }

    /// Trims every shard log to its stream's retention period, and removes
    /// closed shards whose records have all expired (catalog first, then
    /// their logs; a crash in between leaves logs no stream names, which the
    /// next start deletes).
    pub fn apply_retention(&self) -> std::io::Result<()> {
        let now = self.now_ms();
        // The trim points first: readers must never see expired records, even
        // when what follows fails (a full disk).
        let cutoffs: Vec<(u64, u64)> = self
            .catalog()
            .streams()
            .flat_map(|s| {
                let cutoff = s.retention_cutoff_ms(now);
                s.shards.iter().map(move |sh| (sh.log_id, cutoff))
            })
            .collect();
        let mut result = Ok(());
        for (log_id, cutoff) in cutoffs {
            if let Some(log) = self.shard_log(log_id) {
                if let Err(e) = log.trim_before(cutoff) {
                    result = result.and(Err(e));
                }
            }
        }
        self.change_with(
            |catalog, now| {
                let expired = catalog.streams().any(|s| {
                    !s.expired_closed_shards(s.retention_cutoff_ms(now))
                        .is_empty()
                });
                Ok::<_, std::convert::Infallible>(expired.then_some(Command::ExpireShards))
            },
            |_| {},
        )
        .map_err(Refused::into_io)?;
        // Forget the throughput buckets of shards that are gone.
        self.throttles
            .retain(|id| self.log.shard(ShardLogId(id)).is_some(), now);
        result
    }

    /// Everything the clock makes due: deleted streams and consumers go,
    /// unfinished closes finish, retention trims, on-demand streams scale.
    /// Periodic, and at once when a test moves the virtual clock.
    pub fn housekeeping(&self) {
        let _ = self.sweep_deleted();
        let _ = self.finish_pending_closes();
        let _ = self.apply_retention();
        self.autoscale();
    }

    /// Deletes every stream of every account at once (a test control);
    /// how many there were.
    pub fn reset(&self) -> std::io::Result<usize> {
        let applied = self
            .change_with(
                |_, _| Ok::<_, std::convert::Infallible>(Some(Command::Reset)),
                |_| {
                    self.subscriptions.stop_every();
                    self.throttles.unblock_all();
                },
            )
            .map_err(Refused::into_io)?;
        Ok(applied.removed_streams.len())
    }

    /// Lets ON_DEMAND streams follow their load if a measuring window is
    /// over (see `sluice_meta::scaling`); what it split and merged.
    pub fn autoscale(&self) -> Vec<String> {
        crate::ops::autoscale(self)
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// The catalog as last committed: a snapshot to read (a change
    /// committed meanwhile is not in it).
    pub fn catalog(&self) -> Arc<Catalog> {
        self.published
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The catalog, to change: held until dropped, so that changes happen
    /// one at a time; [`Engine::commit`] makes the next one current.
    fn catalog_mut(&self) -> CatalogWriter<'_> {
        CatalogWriter(self.writer.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Replaces the catalog with `next`, durably: temp file, fsync, rename,
    /// fsync the directory. Memory follows the file: if anything fails before
    /// the rename, `current` stays as it was; once the rename is done, `current`
    /// becomes `next` even if the directory fsync then fails (the error is
    /// still returned, since the change may not survive a power loss).
    /// [`Engine::commit`] for a change that frees space (deleting streams or
    /// expired shards): on a full disk it gives up the reserve file, so that
    /// space can always be freed through the API.
    fn commit_freeing(
        &self,
        current: &mut CatalogWriter<'_>,
        next: Catalog,
    ) -> std::io::Result<()> {
        match self.commit(current, next.clone()) {
            Err(e) if is_disk_full(&e) => {
                let reserve = self.config.data_dir.join(RESERVE_FILE);
                match self.storage.remove_file(&reserve) {
                    Ok(()) => {
                        self.health.reserve_missing.store(true, Ordering::Relaxed);
                        crate::warn("the disk is full: the reserve was given up to delete streams");
                        self.commit(current, next)
                    }
                    Err(_) => Err(e),
                }
            }
            other => other,
        }
    }

    /// Sets the reserve aside if it is missing (at start, and after space
    /// was freed): max(4 MiB, twice the catalog) of zeros, fsynced.
    pub fn ensure_reserve(&self) {
        let dir = &self.config.data_dir;
        let path = dir.join(RESERVE_FILE);
        let want = RESERVE_MIN_BYTES.max(2 * self.catalog().snapshot().len() as u64);
        let storage = &*self.storage;
        if storage
            .open_file(&path)
            .and_then(|f| f.len())
            .is_ok_and(|len| len >= want)
        {
            self.health.reserve_missing.store(false, Ordering::Relaxed);
            return;
        }
        let tmp = path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            let _ = storage.remove_file(&tmp);
            let f = storage.create_file(&tmp)?;
            let zeros = vec![0u8; 64 << 10];
            let mut written = 0;
            while written < want {
                let n = zeros.len().min((want - written) as usize);
                f.write_all_at(&zeros[..n], written)?;
                written += n as u64;
            }
            f.sync_data()?;
            storage.rename(&tmp, &path)?;
            storage.sync_dir(dir)
        };
        match write() {
            Ok(()) => self.health.reserve_missing.store(false, Ordering::Relaxed),
            Err(e) => {
                let _ = storage.remove_file(&tmp);
                if !self.health.reserve_missing.swap(true, Ordering::Relaxed) {
                    crate::warn(format_args!(
                        "cannot set aside {want} bytes for deleting streams on a full disk: {e}"
                    ));
                }
            }
        }
    }

    /// Writes `next` durably and makes it the catalog: for the writer, and
    /// (once durable) for readers. Readers never wait for the fsyncs: they
    /// read the previous catalog meanwhile.
    fn commit(&self, current: &mut CatalogWriter<'_>, next: Catalog) -> std::io::Result<()> {
        // The writer's copy follows the store; readers see it only once it
        // is durable: a put acknowledged into a new stream must never
        // outlive the stream's catalog entry. (After a save that replaced
        // the snapshot but could not make it durable, the next commit that
        // succeeds publishes both.)
        let saved = self.store.save(&next.snapshot());
        let replaced = saved.as_ref().map_or_else(|e| e.replaced, |()| true);
        if !replaced {
            return saved.map_err(|e| e.error);
        }
        let next = Arc::new(next);
        *current.0 = next.clone();
        if saved.is_ok() {
            *self.published.write().unwrap_or_else(|p| p.into_inner()) = next;
        }
        saved.map_err(|e| e.error)
    }

    pub fn log(&self) -> &Log {
        &self.log
    }

    pub fn shard_log(&self, log_id: u64) -> Option<Arc<ShardLog>> {
        self.log.shard(ShardLogId(log_id))
    }

    pub fn iterator_key(&self) -> &[u8; 32] {
        &self.iterator_key
    }

    pub fn stream_arn(&self, scope: &Scope, name: &str) -> String {
        scope.stream_arn(name).to_string()
    }

    /// `text` as an ARN of `scope`'s account, region and partition, if it
    /// is one.
    pub fn own_arn(&self, scope: &Scope, text: &str) -> Option<sluice_model::Arn> {
        let partition = sluice_model::partition(&scope.region);
        let ours = text
            .strip_prefix("arn:")
            .and_then(|t| t.strip_prefix(partition))
            .is_some_and(|t| t.starts_with(':'));
        if !ours {
            return None;
        }
        sluice_model::Arn::parse(text)
            .ok()
            .filter(|arn| scope.owns(arn))
    }

    /// At shutdown: everything acknowledged made durable, then a checkpoint,
    /// so that the next start has no journal to replay.
    pub fn flush(&self) {
        self.log.flush();
        if let Err(e) = self.log.checkpoint() {
            crate::warn(format_args!("checkpoint at shutdown: {e}"));
        }
    }
}

/// How a quarantined shard is reported (start-up log, `/health`).
fn quarantine_problem(name: &str, damage: &sluice_log::Damage) -> String {
    format!(
        "{name} is quarantined: {damage}; stop the server and run `sluice ctl repair` on its data directory"
    )
}

/// ENOSPC or EDQUOT.
pub fn is_disk_full(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull || e.raw_os_error() == Some(122)
}

/// The iterator key survives restarts so that iterators handed out stay valid.
fn load_or_create_key(storage: &dyn Storage, path: &Path) -> Result<[u8; 32], OpenError> {
    if let Ok(file) = storage.open_file(path) {
        let mut key = [0u8; 32];
        if file.len().ok() == Some(32) && file.read_full_at(&mut key, 0).ok() == Some(32) {
            return Ok(key);
        }
    }
    let mut key = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut key))
        .map_err(io_at(Path::new("/dev/urandom")))?;
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let _ = storage.remove_file(&tmp);
        let f = storage.create_file(&tmp)?;
        f.write_all_at(&key, 0)?;
        f.sync_data()?;
        storage.rename(&tmp, path)?;
        storage.sync_dir(path.parent().unwrap_or(Path::new(".")))
    };
    write().map_err(io_at(path))?;
    Ok(key)
}
