//! The set of shard logs under one data directory, and what they share: the
//! storage, the file pool, the group-commit syncer and the clock.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use sluice_model::Clock;

use crate::error::{CreateError, IoContext, OpenError};
use crate::pool::FilePool;
use crate::shard_log::ShardLog;
use crate::storage::Storage;
use crate::syncer::Syncer;
use crate::{Durability, LogOptions, ShardLogId};

#[derive(Debug)]
pub(crate) struct Shared {
    pub storage: Arc<dyn Storage>,
    pub shards_dir: PathBuf,
    pub options: LogOptions,
    pub clock: Arc<dyn Clock>,
    pub pool: FilePool,
    pub syncer: Syncer,
}

/// All shard logs of one data directory.
///
/// Dropping the `Log` stops the sync thread without a final fsync (what a crash
/// would do); call [`Log::flush`] first for a clean shutdown in interval mode.
#[derive(Debug)]
pub struct Log {
    shared: Arc<Shared>,
    shards: RwLock<HashMap<ShardLogId, Arc<ShardLog>>>,
}

impl Log {
    /// Opens (or creates) the log under `root`, recovering every shard log.
    pub fn open(
        storage: Arc<dyn Storage>,
        root: impl Into<PathBuf>,
        options: LogOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, OpenError> {
        let root = root.into();
        let shards_dir = root.join("shards");
        storage.create_dir_all(&shards_dir).at(&shards_dir)?;
        for dir in [root.parent().unwrap_or(&root), &root, &shards_dir] {
            if !dir.as_os_str().is_empty() {
                storage.sync_dir(dir).at(dir)?;
            }
        }
        let mut names = storage.list_dir(&shards_dir).at(&shards_dir)?;
        names.sort();
        let shared = Arc::new(Shared {
            pool: FilePool::new(storage.clone(), options.open_files_max),
            syncer: Syncer::start(options.durability),
            storage,
            shards_dir,
            options,
            clock,
        });
        let mut shards = HashMap::new();
        for name in names {
            let Some(id) = ShardLogId::parse_dir_name(&name) else {
                continue;
            };
            let dir = shared.shards_dir.join(&name);
            if let Some(log) = ShardLog::recover(shared.clone(), id, dir)? {
                shards.insert(id, Arc::new(log));
            }
        }
        Ok(Self {
            shared,
            shards: RwLock::new(shards),
        })
    }

    /// Creates an empty shard log. Its sequence numbers all start with `epoch`
    /// (at least 1): give a child shard a greater epoch than its parents.
    pub fn create_shard(&self, id: ShardLogId, epoch: u64) -> Result<Arc<ShardLog>, CreateError> {
        let mut shards = self.shards.write().unwrap();
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
        self.shards.read().unwrap().get(&id).cloned()
    }

    pub fn shard_ids(&self) -> Vec<ShardLogId> {
        let mut ids: Vec<_> = self.shards.read().unwrap().keys().copied().collect();
        ids.sort();
        ids
    }

    /// Deletes a shard log and its files; false if there was none.
    pub fn delete_shard(&self, id: ShardLogId) -> std::io::Result<bool> {
        // Hold the map while the files go, so that no create of the same id runs meanwhile.
        let mut shards = self.shards.write().unwrap();
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
        self.shared.syncer.stop();
    }
}
