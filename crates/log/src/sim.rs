//! An in-memory [`Storage`] that models what a crash does to a disk.
//!
//! Every file keeps a *live* image (what the page cache holds) and a *durable*
//! image (what `fdatasync` has pushed to disk); every directory entry is durable
//! only after `sync_dir` of its parent. [`SimStorage::crash`] throws the live
//! state away: each file keeps its durable bytes plus any subset of the
//! 512-byte sectors written after its last sync (writes reach the disk out of
//! order), with a length between the two, sometimes with a byte of a kept
//! sector garbled. Syncs and writes can be made to fail; a failed sync loses the
//! bytes it did not write, as Linux may.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use crate::storage::{Storage, StorageFile};

/// In-memory storage with crash simulation and fault injection, for tests.
#[derive(Debug)]
pub struct SimStorage {
    state: Mutex<SimState>,
    faults: Arc<Faults>,
}

type FileCell = Arc<Mutex<SimFile>>;

#[derive(Debug)]
struct SimState {
    rng: fastrand::Rng,
    live: Namespace,
    durable: Namespace,
}

#[derive(Debug, Default, Clone)]
struct Namespace {
    files: BTreeMap<PathBuf, FileCell>,
    dirs: BTreeSet<PathBuf>,
}

#[derive(Debug, Default)]
struct SimFile {
    live: Vec<u8>,
    durable: Vec<u8>,
}

#[derive(Debug, Default)]
struct Faults {
    failing_syncs: AtomicU32,
    failing_writes: AtomicU32,
}

#[derive(Debug)]
struct SimHandle {
    file: FileCell,
    faults: Arc<Faults>,
}

fn take_one(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} not found", path.display()),
    )
}

fn injected(what: &str) -> io::Error {
    io::Error::other(format!("injected {what} failure"))
}

impl SimStorage {
    /// A new, empty storage; `seed` makes crashes reproducible.
    pub fn new(seed: u64) -> Arc<Self> {
        let mut live = Namespace::default();
        live.dirs.insert(PathBuf::from("/"));
        Arc::new(Self {
            state: Mutex::new(SimState {
                rng: fastrand::Rng::with_seed(seed),
                durable: live.clone(),
                live,
            }),
            faults: Arc::default(),
        })
    }

    /// Makes the next `n` `sync_data` calls fail with an I/O error.
    pub fn fail_next_syncs(&self, n: u32) {
        self.faults.failing_syncs.store(n, Ordering::SeqCst);
    }

    /// Makes the next `n` writes fail with ENOSPC after writing the first half
    /// of their bytes, as a disk that fills up mid-write.
    pub fn fail_next_writes(&self, n: u32) {
        self.faults.failing_writes.store(n, Ordering::SeqCst);
    }

    /// Simulates power loss: only durable state survives, plus possibly a torn
    /// prefix of each file's unsynced tail. Handles opened before must not be used.
    pub fn crash(&self) {
        let mut state = self.state.lock().unwrap();
        let SimState { rng, live, durable } = &mut *state;
        let reachable = |p: &Path| {
            p.ancestors()
                .skip(1)
                .all(|a| a.as_os_str().is_empty() || durable.dirs.contains(a))
        };
        let mut survivors = Namespace {
            files: BTreeMap::new(),
            dirs: durable
                .dirs
                .iter()
                .filter(|d| reachable(d))
                .cloned()
                .collect(),
        };
        for (path, file) in durable.files.iter().filter(|(p, _)| reachable(p)) {
            let file = file.lock().unwrap();
            let kept = torn_image(rng, &file.live, &file.durable);
            let fresh = SimFile {
                live: kept.clone(),
                durable: kept,
            };
            survivors
                .files
                .insert(path.clone(), Arc::new(Mutex::new(fresh)));
        }
        *live = survivors.clone();
        *durable = survivors;
        self.faults.failing_syncs.store(0, Ordering::SeqCst);
        self.faults.failing_writes.store(0, Ordering::SeqCst);
    }

    /// Flips the bits `xor` of the byte at `position` of a file, on disk and
    /// in the page cache alike: bit rot or a bad sector, not a torn write.
    /// False if there is no such file or byte.
    pub fn garble(&self, path: &Path, position: u64, xor: u8) -> bool {
        let state = self.state.lock().unwrap();
        let Some(cell) = state.live.files.get(path) else {
            return false;
        };
        let mut guard = cell.lock().unwrap();
        let file = &mut *guard;
        let at = position as usize;
        let mut hit = false;
        for image in [&mut file.live, &mut file.durable] {
            if let Some(b) = image.get_mut(at) {
                *b ^= xor;
                hit = true;
            }
        }
        hit
    }

    /// Every file (live view) and its length.
    pub fn files(&self) -> Vec<(PathBuf, u64)> {
        let state = self.state.lock().unwrap();
        state
            .live
            .files
            .iter()
            .map(|(p, f)| (p.clone(), f.lock().unwrap().live.len() as u64))
            .collect()
    }

    fn handle(&self, file: FileCell) -> Arc<dyn StorageFile> {
        Arc::new(SimHandle {
            file,
            faults: self.faults.clone(),
        })
    }
}

/// Bytes the disk may hold after power loss: the durable image, with each
/// 512-byte sector written since the last sync kept or lost independently
/// (the disk and the page cache reorder writes), the file's length anywhere
/// between its durable and its live length, and sometimes one byte of a
/// kept sector garbled (a sector torn mid-write).
fn torn_image(rng: &mut fastrand::Rng, live: &[u8], durable: &[u8]) -> Vec<u8> {
    const SECTOR: usize = 512;
    let (lo, hi) = if live.len() >= durable.len() {
        (durable.len(), live.len())
    } else {
        (live.len(), durable.len())
    };
    let len = rng.usize(lo..=hi);
    let at = |image: &[u8], i: usize| image.get(i).copied().unwrap_or(0);
    let mut kept = vec![0u8; len];
    let mut fresh_sectors = Vec::new();
    for start in (0..len).step_by(SECTOR) {
        let end = (start + SECTOR).min(len);
        let differs = (start..end).any(|i| at(live, i) != at(durable, i));
        let take_live = differs && rng.bool();
        for (i, b) in kept[start..end].iter_mut().enumerate() {
            *b = if take_live {
                at(live, start + i)
            } else {
                at(durable, start + i)
            };
        }
        if take_live {
            fresh_sectors.push(start);
        }
    }
    // Sectors are written whole or not at all, but a sector being written
    // may hold garbage where its new bytes were going (never where its
    // bytes did not change).
    if !fresh_sectors.is_empty() && rng.u8(0..4) == 0 {
        let start = fresh_sectors[rng.usize(0..fresh_sectors.len())];
        let changed: Vec<usize> = (start..(start + SECTOR).min(len))
            .filter(|&i| at(live, i) != at(durable, i))
            .collect();
        if !changed.is_empty() {
            kept[changed[rng.usize(0..changed.len())]] ^= 0x5a;
        }
    }
    kept
}

fn parent(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

impl Storage for SimStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock().unwrap();
        for ancestor in path.ancestors() {
            if !ancestor.as_os_str().is_empty() {
                state.live.dirs.insert(ancestor.to_path_buf());
            }
        }
        Ok(())
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock().unwrap();
        if !state.live.dirs.contains(&parent(path)) {
            return Err(not_found(&parent(path)));
        }
        if state.live.dirs.contains(path) || state.live.files.contains_key(path) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, "exists"));
        }
        state.live.dirs.insert(path.to_path_buf());
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let state = self.state.lock().unwrap();
        if !state.live.dirs.contains(path) {
            return Err(not_found(path));
        }
        let files = state.live.files.keys();
        let dirs = state.live.dirs.iter();
        Ok(files
            .chain(dirs)
            .filter(|p| p.parent() == Some(path))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn create_file(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        let mut state = self.state.lock().unwrap();
        if !state.live.dirs.contains(&parent(path)) {
            return Err(not_found(&parent(path)));
        }
        if state.live.files.contains_key(path) || state.live.dirs.contains(path) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, "exists"));
        }
        let cell = FileCell::default();
        state.live.files.insert(path.to_path_buf(), cell.clone());
        Ok(self.handle(cell))
    }

    fn open_file(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        let state = self.state.lock().unwrap();
        let cell = state.live.files.get(path).ok_or_else(|| not_found(path))?;
        Ok(self.handle(cell.clone()))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock().unwrap();
        state
            .live
            .files
            .remove(path)
            .map(drop)
            .ok_or_else(|| not_found(path))
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock().unwrap();
        if !state.live.dirs.remove(path) {
            return Err(not_found(path));
        }
        state.live.files.retain(|p, _| !p.starts_with(path));
        state.live.dirs.retain(|p| !p.starts_with(path));
        Ok(())
    }

    /// The file's contents move to `to` in the live view; the durable view
    /// keeps the old entries until the directory is synced.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state.lock().unwrap();
        if !state.live.dirs.contains(&parent(to)) {
            return Err(not_found(&parent(to)));
        }
        if state.live.dirs.contains(to) {
            return Err(io::Error::new(io::ErrorKind::IsADirectory, "a directory"));
        }
        let cell = state
            .live
            .files
            .remove(from)
            .ok_or_else(|| not_found(from))?;
        state.live.files.insert(to.to_path_buf(), cell);
        Ok(())
    }

    /// Makes the live set of entries directly inside `path` durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock().unwrap();
        let SimState { live, durable, .. } = &mut *state;
        if !live.dirs.contains(path) {
            return Err(not_found(path));
        }
        let child = |p: &Path| p.parent() == Some(path);
        durable.files.retain(|p, _| !child(p));
        durable.dirs.retain(|p| !child(p));
        for (p, c) in live.files.iter().filter(|(p, _)| child(p)) {
            durable.files.insert(p.clone(), c.clone());
        }
        for d in live.dirs.iter().filter(|d| child(d)) {
            durable.dirs.insert(d.clone());
        }
        Ok(())
    }
}

impl StorageFile for SimHandle {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let file = self.file.lock().unwrap();
        let start = (offset as usize).min(file.live.len());
        let n = buf.len().min(file.live.len() - start);
        buf[..n].copy_from_slice(&file.live[start..start + n]);
        Ok(n)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let failing = take_one(&self.faults.failing_writes);
        let buf = if failing { &buf[..buf.len() / 2] } else { buf };
        let mut file = self.file.lock().unwrap();
        let end = offset as usize + buf.len();
        if file.live.len() < end {
            file.live.resize(end, 0);
        }
        file.live[offset as usize..end].copy_from_slice(buf);
        if failing {
            return Err(io::Error::from_raw_os_error(28)); // ENOSPC
        }
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut file = self.file.lock().unwrap();
        if take_one(&self.faults.failing_syncs) {
            // Linux reports a writeback error once and may drop the dirty pages:
            // the unsynced bytes are gone, and a later fsync "succeeds".
            let len = file.live.len();
            let mut reverted = file.durable.clone();
            reverted.resize(len, 0);
            file.live = reverted;
            return Err(injected("fsync"));
        }
        file.durable = file.live.clone();
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.lock().unwrap().live.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.lock().unwrap().live.resize(len as usize, 0);
        Ok(())
    }
}
