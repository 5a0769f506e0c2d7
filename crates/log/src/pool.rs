//! A bounded pool of open segment files, so that ten thousand shards do not
//! need ten thousand file descriptors.
//!
//! The pool hands out `Arc`s: evicting an entry only drops the pool's reference,
//! and a handle in use (by a reader, or by the syncer until its fsync is done)
//! stays open until its user drops it.

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::storage::{Storage, StorageFile};

/// (shard log instance, segment base offset).
pub type FileKey = (u64, u64);

#[derive(Debug)]
pub struct FilePool {
    storage: Arc<dyn Storage>,
    capacity: usize,
    inner: Mutex<PoolInner>,
}

#[derive(Debug, Default)]
struct PoolInner {
    files: HashMap<FileKey, (Arc<dyn StorageFile>, u64)>,
    tick: u64,
}

impl FilePool {
    pub fn new(storage: Arc<dyn Storage>, capacity: usize) -> Self {
        Self {
            storage,
            capacity: capacity.max(1),
            inner: Mutex::default(),
        }
    }

    /// The open file for `key`, opening `path` if the pool does not hold it.
    pub fn get(&self, key: FileKey, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        if let Some(file) = self.lookup(key) {
            return Ok(file);
        }
        // Open without holding the lock; a racing opener's handle wins.
        let file = self.storage.open_file(path)?;
        Ok(self.insert(key, file, false))
    }

    /// Puts a freshly created or recovered file in the pool, replacing any entry.
    pub fn replace(&self, key: FileKey, file: Arc<dyn StorageFile>) {
        self.insert(key, file, true);
    }

    fn insert(
        &self,
        key: FileKey,
        file: Arc<dyn StorageFile>,
        replace: bool,
    ) -> Arc<dyn StorageFile> {
        let mut inner = self.inner.lock().unwrap();
        inner.tick += 1;
        let tick = inner.tick;
        let entry = inner
            .files
            .entry(key)
            .or_insert_with(|| (file.clone(), tick));
        if replace {
            entry.0 = file;
        }
        entry.1 = tick;
        let file = entry.0.clone();
        if inner.files.len() > self.capacity {
            let victim = inner
                .files
                .iter()
                .filter(|(k, _)| **k != key)
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| *k);
            if let Some(victim) = victim {
                inner.files.remove(&victim);
            }
        }
        file
    }

    pub fn remove(&self, key: FileKey) {
        self.inner.lock().unwrap().files.remove(&key);
    }

    pub fn open_count(&self) -> usize {
        self.inner.lock().unwrap().files.len()
    }

    fn lookup(&self, key: FileKey) -> Option<Arc<dyn StorageFile>> {
        let mut inner = self.inner.lock().unwrap();
        inner.tick += 1;
        let tick = inner.tick;
        inner.files.get_mut(&key).map(|(file, t)| {
            *t = tick;
            file.clone()
        })
    }
}
