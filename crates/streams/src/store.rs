//! Where the catalog lives: a store behind a trait (a file in the data
//! directory now; a consensus store such as etcd later). Written through the
//! storage engine's `Storage` trait, so that the crash tests of the log's
//! simulated disk cover it too.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use sluice_log::Storage;

/// A save that failed, and whether the new snapshot had already replaced
/// the old one (in memory, if not yet durably) when it did.
#[derive(Debug)]
pub struct SaveError {
    pub error: io::Error,
    pub replaced: bool,
}

impl std::fmt::Display for SaveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

/// The catalog's snapshots: the last one saved is what the next start loads.
pub trait CatalogStore: Send + Sync + std::fmt::Debug {
    /// The last snapshot saved durably, if any was.
    fn load(&self) -> io::Result<Option<Vec<u8>>>;
    /// Saves `snapshot` durably, replacing the last one all at once: after a
    /// crash at any point, `load` finds the old one or the new one whole.
    fn save(&self, snapshot: &[u8]) -> Result<(), SaveError>;
}

/// The catalog as `catalog.json` in the data directory: written to a
/// temporary file, fsynced, renamed over the old one, and the directory
/// fsynced.
#[derive(Debug)]
pub struct FileCatalogStore {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    file: &'static str,
}

pub const CATALOG_FILE: &str = "catalog.json";

impl FileCatalogStore {
    pub fn new(storage: Arc<dyn Storage>, dir: PathBuf) -> Self {
        Self::named(storage, dir, CATALOG_FILE)
    }

    /// Another snapshot kept the same way, as `file` in `dir` (Firehose's
    /// delivery streams).
    pub fn named(storage: Arc<dyn Storage>, dir: PathBuf, file: &'static str) -> Self {
        Self { storage, dir, file }
    }

    fn path(&self) -> PathBuf {
        self.dir.join(self.file)
    }
}

impl CatalogStore for FileCatalogStore {
    fn load(&self) -> io::Result<Option<Vec<u8>>> {
        let file = match self.storage.open_file(&self.path()) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let len = usize::try_from(file.len()?).map_err(io::Error::other)?;
        let mut bytes = vec![0u8; len];
        let n = file.read_full_at(&mut bytes, 0)?;
        bytes.truncate(n);
        Ok(Some(bytes))
    }

    fn save(&self, snapshot: &[u8]) -> Result<(), SaveError> {
        let before = |error| SaveError {
            error,
            replaced: false,
        };
        let tmp = self.dir.join(format!("{}.tmp", self.file));
        // A temporary file left by a failed save.
        match self.storage.remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(before(e)),
        }
        let file = self.storage.create_file(&tmp).map_err(before)?;
        file.write_all_at(snapshot, 0).map_err(before)?;
        file.sync_data().map_err(before)?;
        self.storage.rename(&tmp, &self.path()).map_err(before)?;
        self.storage.sync_dir(&self.dir).map_err(|error| SaveError {
            error,
            replaced: true,
        })
    }
}
