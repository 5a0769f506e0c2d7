//! Behaviour of the storage engine through its public API, on the real file
//! system (temp dirs) and on SimStorage where faults are needed.

use std::sync::Arc;

use sluice_log::{
    AppendError, AppendRecord, Cursor, Durability, Log, LogOptions, OsStorage, ReadError,
    ReadLimits, ShardLogId, SimStorage, StartingPosition, Storage,
};
use sluice_model::ManualClock;

mod appends;
mod faults;

const ALL: ReadLimits = ReadLimits {
    max_records: 10_000,
    max_bytes: 10 << 20,
};

fn rec(data: &[u8]) -> AppendRecord<'_> {
    AppendRecord {
        partition_key: b"pk",
        data,
        flags: 0,
    }
}

fn open(
    storage: Arc<dyn Storage>,
    root: &str,
    options: LogOptions,
    clock: &Arc<ManualClock>,
) -> Log {
    Log::open(storage, root, options, clock.clone()).unwrap()
}

fn os_log(dir: &tempfile::TempDir, options: LogOptions, clock: &Arc<ManualClock>) -> Log {
    Log::open(Arc::new(OsStorage), dir.path(), options, clock.clone()).unwrap()
}

fn datas(batch: &sluice_log::ReadBatch) -> Vec<Vec<u8>> {
    batch.records.iter().map(|r| r.data.to_vec()).collect()
}

/// Where `needle` last occurs in the file at `path`.
fn last_position(path: &std::path::Path, needle: &[u8]) -> usize {
    let bytes = std::fs::read(path).unwrap();
    bytes
        .windows(needle.len())
        .rposition(|w| w == needle)
        .unwrap_or_else(|| panic!("{needle:?} not in {}", path.display()))
}

/// Flips a byte of `path` at `at`.
fn flip(path: &std::path::Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x5a;
    std::fs::write(path, &bytes).unwrap();
}

fn journal_files(dir: &tempfile::TempDir) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.path().join("journal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    files.sort();
    files
}

/// The journal file holding `needle` (the last written, if several do).
fn journal_holding(dir: &tempfile::TempDir, needle: &[u8]) -> std::path::PathBuf {
    journal_files(dir)
        .into_iter()
        .find(|p| {
            std::fs::read(p)
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle)
        })
        .expect("a journal file holds the record")
}
