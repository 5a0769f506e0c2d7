//! A bounded pool of open segment files, so that ten thousand shards do not
//! need ten thousand file descriptors.
//!
//! The pool hands out `Arc`s: evicting an entry only drops the pool's reference,
//! and a handle in use (by a reader, or by the syncer until its fsync is done)
//! stays open until its user drops it.

use std::collections::{BTreeMap, HashMap};
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
    /// The same entries by last use, oldest first: eviction is O(log n), not
    /// a scan (ten thousand shards written round-robin miss on every write).
    by_use: BTreeMap<u64, FileKey>,
    tick: u64,
}

impl PoolInner {
    /// Marks `key` (present) used now.
    fn touch(&mut self, key: FileKey) {
        self.tick += 1;
        let tick = self.tick;
        if let Some(entry) = self.files.get_mut(&key) {
            self.by_use.remove(&entry.1);
            entry.1 = tick;
            self.by_use.insert(tick, key);
        }
    }
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
        if let Some(entry) = inner.files.get_mut(&key) {
            if replace {
                entry.0 = file;
            }
        } else {
            inner.tick += 1;
            let tick = inner.tick;
            inner.files.insert(key, (file, tick));
            inner.by_use.insert(tick, key);
        }
        // The newest entry now: eviction below never takes it (capacity >= 1).
        inner.touch(key);
        let file = inner.files[&key].0.clone();
        while inner.files.len() > self.capacity {
            let Some((_, victim)) = inner.by_use.pop_first() else {
                break;
            };
            inner.files.remove(&victim);
        }
        file
    }

    pub fn remove(&self, key: FileKey) {
        let mut inner = self.inner.lock().unwrap();
        if let Some((_, tick)) = inner.files.remove(&key) {
            inner.by_use.remove(&tick);
        }
    }

    pub fn open_count(&self) -> usize {
        self.inner.lock().unwrap().files.len()
    }

    fn lookup(&self, key: FileKey) -> Option<Arc<dyn StorageFile>> {
        let mut inner = self.inner.lock().unwrap();
        let file = inner.files.get(&key)?.0.clone();
        inner.touch(key);
        Some(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SimStorage;

    #[test]
    fn the_least_recently_used_file_goes_first() {
        let storage = SimStorage::new(1);
        storage.create_dir_all(Path::new("/d")).unwrap();
        for i in 0..4 {
            storage
                .create_file(&Path::new("/d").join(i.to_string()))
                .unwrap();
        }
        let pool = FilePool::new(storage, 2);
        let path = |i: u64| Path::new("/d").join(i.to_string());
        pool.get((1, 0), &path(0)).unwrap();
        pool.get((1, 1), &path(1)).unwrap();
        // 0 used again: 1 is now the oldest.
        pool.get((1, 0), &path(0)).unwrap();
        pool.get((1, 2), &path(2)).unwrap();
        assert_eq!(pool.open_count(), 2);
        assert!(pool.lookup((1, 0)).is_some());
        assert!(pool.lookup((1, 1)).is_none());
        assert!(pool.lookup((1, 2)).is_some());
        pool.remove((1, 0));
        pool.replace((1, 3), storage_file(&path(3)));
        assert_eq!(pool.open_count(), 2);
        let inner = pool.inner.lock().unwrap();
        assert_eq!(inner.by_use.len(), inner.files.len());
    }

    fn storage_file(path: &Path) -> Arc<dyn StorageFile> {
        let storage = SimStorage::new(2);
        storage.create_dir_all(path.parent().unwrap()).unwrap();
        storage.create_file(path).unwrap()
    }
}
