//! The journal: one write-ahead log shared by every shard log, so that a
//! group-commit round costs one `fdatasync` however many shards it touched.
//!
//! An append writes its frame into the shard's segment (the page cache only)
//! and a copy of it into the journal; the round fsyncs the journal, not the
//! segments. A checkpoint, in the background, fsyncs the segments written
//! since the previous one and records in a checkpoint file where each shard
//! log ends and where replay starts; journal files wholly before that point
//! become spares, reused for later entries. After a crash, the journal is
//! replayed from the checkpoint into the segments, and every segment is cut
//! at the end the checkpoint and the journal vouch for. See
//! `docs/storage-format.md` for the bytes.
//!
//! Journal files are filled with zeros and fsynced when made, so that writing
//! entries into them never changes their size or their block map: the
//! round's `fdatasync` writes data, never file-system metadata.
//!
//! Positions in the journal are LSNs: a byte position in one endless stream
//! that the journal files cover in turn (each file's header says where its
//! range starts). Every entry carries the LSN up to which the journal was
//! already durable when it was written: a bad entry followed by a valid one
//! that says the journal was durable past it is damage (bit rot), never a
//! torn tail, and is never cut.

mod checkpoint;
mod replay;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::storage::{Storage, StorageFile};

pub(crate) const FILE_HEADER_LEN: u64 = 64;
pub(crate) const ENTRY_HEADER_LEN: usize = 56;
const FILE_MAGIC: [u8; 8] = *b"SLUICEJL";
const ENTRY_MAGIC: [u8; 4] = *b"SLJE";
const JOURNAL_VERSION: u32 = 1;
const KIND_FRAME: u8 = 1;
const KIND_NEXT_FILE: u8 = 2;
const CHECKPOINT_MAGIC: [u8; 8] = *b"SLUICECP";
/// The data directory format this checkpoint belongs to (segments of
/// format 1 plus this journal).
pub(crate) const DATA_FORMAT_VERSION: u32 = 2;
const CHECKPOINT_SLOTS: [&str; 2] = ["checkpoint-0", "checkpoint-1"];
const CHECKPOINT_HEADER_LEN: usize = 40;
const CHECKPOINT_ENTRY_LEN: usize = 56;
/// Spare files kept for reuse; more are deleted.
const SPARES_MAX: usize = 2;
const ZERO_CHUNK: usize = 1 << 20;
/// How much of the journal replay reads at once.
const READ_CHUNK: usize = 4 << 20;

/// One frame to journal.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry<'a> {
    pub shard: u64,
    pub segment_base: u64,
    pub segment_salt: u32,
    pub offset: u64,
    pub body: &'a [u8],
}

/// An entry read back by replay.
#[derive(Debug)]
pub(crate) struct ReadEntry {
    pub shard: u64,
    pub segment_base: u64,
    pub segment_salt: u32,
    pub offset: u64,
    pub body: Vec<u8>,
}

/// A bad entry that a later entry proves was durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalDamage {
    pub file: PathBuf,
    pub position: u64,
    pub reason: String,
}

impl std::fmt::Display for JournalDamage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at byte {}: {}",
            self.file.display(),
            self.position,
            self.reason
        )
    }
}

/// One shard log's line in a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CheckpointEntry {
    pub shard: u64,
    /// The newest segment at the checkpoint.
    pub segment_base: u64,
    pub segment_salt: u32,
    /// Durable end of the newest segment (logical offset).
    pub end: u64,
    pub closed_at: Option<u64>,
    pub last_timestamp_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    pub sequence: u64,
    pub replay_from: u64,
    pub entries: Vec<CheckpointEntry>,
}

#[derive(Debug)]
struct JFile {
    index: u64,
    file: Arc<dyn StorageFile>,
    /// LSN of the file's byte 0; 0 with `salt` 0 for a spare.
    start: u64,
    len: u64,
    salt: u32,
}

impl JFile {
    fn end(&self) -> u64 {
        self.start.saturating_add(self.len)
    }
}

#[derive(Debug)]
struct State {
    /// The files in use, oldest first; the last is written to.
    chain: Vec<JFile>,
    spares: Vec<JFile>,
    /// Next position to write.
    write_lsn: u64,
    next_index: u64,
    /// Reused buffer for one call's entries.
    buf: Vec<u8>,
    checkpoint_sequence: u64,
    /// Where replay starts now: the last checkpoint's `replay_from`.
    checkpointed_lsn: u64,
}

#[derive(Debug)]
pub(crate) struct Journal {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    file_bytes: u64,
    state: Mutex<State>,
    synced_lsn: AtomicU64,
    written_lsn: AtomicU64,
    poisoned: AtomicBool,
    /// Serialises fsync rounds (the syncer's and a checkpoint's).
    sync_lock: Mutex<()>,
}

pub(crate) fn is_disk_full(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::StorageFull || e.raw_os_error() == Some(28)
}

fn file_name(index: u64) -> String {
    format!("{index:016x}.wal")
}

fn parse_file_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".wal")?;
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

fn encode_file_header(start: u64, len: u64, salt: u32) -> [u8; FILE_HEADER_LEN as usize] {
    let mut b = [0u8; FILE_HEADER_LEN as usize];
    b[0..8].copy_from_slice(&FILE_MAGIC);
    b[8..12].copy_from_slice(&JOURNAL_VERSION.to_le_bytes());
    b[12..16].copy_from_slice(&salt.to_le_bytes());
    b[16..24].copy_from_slice(&start.to_le_bytes());
    b[24..32].copy_from_slice(&len.to_le_bytes());
    let crc = crc32c::crc32c(&b[..60]);
    b[60..64].copy_from_slice(&crc.to_le_bytes());
    b
}

/// (start, len, salt) of a valid header.
fn decode_file_header(b: &[u8]) -> Option<(u64, u64, u32)> {
    let b = b.get(..FILE_HEADER_LEN as usize)?;
    let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
    let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
    if b[0..8] != FILE_MAGIC || crc32c::crc32c(&b[..60]) != u32_at(60) {
        return None;
    }
    if u32_at(8) != JOURNAL_VERSION {
        return None;
    }
    Some((u64_at(16), u64_at(24), u32_at(12)))
}

/// The salted checksum of an entry header at `lsn`: bytes inside a record
/// cannot pass for an entry without the file's salt and the position.
fn entry_crc(salt: u32, lsn: u64, header: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c_append(salt, &lsn.to_le_bytes()), header)
}

#[allow(clippy::too_many_arguments)]
fn encode_entry_header(
    out: &mut Vec<u8>,
    salt: u32,
    lsn: u64,
    kind: u8,
    e: &Entry<'_>,
    body_crc: u32,
    synced_before: u64,
) {
    let at = out.len();
    out.extend_from_slice(&ENTRY_MAGIC);
    out.push(kind);
    out.extend_from_slice(&[0; 3]);
    out.extend_from_slice(&(e.body.len() as u32).to_le_bytes());
    out.extend_from_slice(&e.segment_salt.to_le_bytes());
    out.extend_from_slice(&e.shard.to_le_bytes());
    out.extend_from_slice(&e.segment_base.to_le_bytes());
    out.extend_from_slice(&e.offset.to_le_bytes());
    out.extend_from_slice(&synced_before.to_le_bytes());
    out.extend_from_slice(&body_crc.to_le_bytes());
    let crc = entry_crc(salt, lsn, &out[at..at + 52]);
    out.extend_from_slice(&crc.to_le_bytes());
}

struct EntryHeader {
    kind: u8,
    body_len: u32,
    segment_salt: u32,
    shard: u64,
    segment_base: u64,
    offset: u64,
    synced_before: u64,
    body_crc: u32,
}

fn decode_entry_header(b: &[u8], salt: u32, lsn: u64) -> Option<EntryHeader> {
    let b = b.get(..ENTRY_HEADER_LEN)?;
    let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
    let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
    if b[0..4] != ENTRY_MAGIC || entry_crc(salt, lsn, &b[..52]) != u32_at(52) {
        return None;
    }
    let kind = b[4];
    if kind != KIND_FRAME && kind != KIND_NEXT_FILE {
        return None;
    }
    Some(EntryHeader {
        kind,
        body_len: u32_at(8),
        segment_salt: u32_at(12),
        shard: u64_at(16),
        segment_base: u64_at(24),
        offset: u64_at(32),
        synced_before: u64_at(40),
        body_crc: u32_at(48),
    })
}

/// Every entry a walk found, in memory (tests).
#[derive(Debug)]
#[cfg(test)]
pub(crate) struct Replay {
    pub entries: Vec<ReadEntry>,
}

/// What a walk of the journal found.
#[derive(Debug, Default)]
pub(crate) struct Walked {
    /// Entries and bytes (headers included) walked.
    pub entries: u64,
    pub bytes: u64,
    /// Where the walk ended: the first LSN not walked.
    pub end: u64,
    /// Damage that the walk stopped at, when told to cut there: everything
    /// from it on is to be dropped.
    pub cut: Option<JournalDamage>,
}

impl Journal {
    /// Opens the journal directory (creating it) without reading entries.
    pub fn open(storage: Arc<dyn Storage>, dir: PathBuf, file_bytes: u64) -> io::Result<Self> {
        storage.create_dir_all(&dir)?;
        let file_bytes = file_bytes.max(FILE_HEADER_LEN + 4096);
        let mut files = Vec::new();
        let mut next_index = 0;
        let mut names = storage.list_dir(&dir)?;
        names.sort();
        for name in names {
            let Some(index) = parse_file_name(&name) else {
                continue;
            };
            next_index = next_index.max(index + 1);
            let file = storage.open_file(&dir.join(&name))?;
            let len = file.len()?;
            let mut b = [0u8; FILE_HEADER_LEN as usize];
            let n = file.read_full_at(&mut b, 0)?;
            let (start, salt) = match decode_file_header(&b[..n]) {
                Some((start, hlen, salt)) if hlen == len => (start, salt),
                _ => (0, 0),
            };
            files.push(JFile {
                index,
                file,
                start,
                len,
                salt,
            });
        }
        Ok(Self {
            storage,
            dir,
            file_bytes,
            state: Mutex::new(State {
                chain: files,
                spares: Vec::new(),
                write_lsn: 0,
                next_index,
                buf: Vec::new(),
                checkpoint_sequence: 0,
                checkpointed_lsn: 0,
            }),
            synced_lsn: AtomicU64::new(0),
            written_lsn: AtomicU64::new(0),
            poisoned: AtomicBool::new(false),
            sync_lock: Mutex::new(()),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// True if any journal file has a valid header (a journal that was used).
    pub fn has_files_in_use(&self) -> bool {
        self.state.lock().unwrap().chain.iter().any(|f| f.salt != 0)
    }

    /// Makes the first file of the fresh chain, durably, so that a checkpoint
    /// can name its start. Returns the start.
    pub fn begin(&self) -> io::Result<u64> {
        let mut st = self.state.lock().unwrap();
        let start = st.write_lsn;
        self.switch_to_new_file(&mut st, start, 0)?;
        let f = st.chain.last().unwrap();
        f.file.sync_data()?;
        Ok(start)
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::SeqCst)
    }

    pub fn poison(&self) {
        self.poisoned.store(true, Ordering::SeqCst);
    }

    /// Bytes written so far (an LSN).
    pub fn written_lsn(&self) -> u64 {
        self.written_lsn.load(Ordering::SeqCst)
    }

    /// Bytes written since the last checkpoint.
    pub fn bytes_since_checkpoint(&self) -> u64 {
        let st = self.state.lock().unwrap();
        st.write_lsn.saturating_sub(st.checkpointed_lsn)
    }

    pub fn file_count(&self) -> usize {
        let st = self.state.lock().unwrap();
        st.chain.len() + st.spares.len()
    }

    /// Writes entries (one `pwrite` per journal file touched); returns the
    /// LSN after the last one. On failure nothing of the call counts: the
    /// next write goes where this one began. If some of the call's bytes
    /// were already written, the journal is poisoned: a crash before they
    /// are overwritten could replay them over later frames.
    pub fn write(&self, entries: &[Entry<'_>]) -> io::Result<u64> {
        if self.is_poisoned() {
            return Err(io::Error::other("the journal is poisoned"));
        }
        let crcs: Vec<u32> = entries.iter().map(|e| crc32c::crc32c(e.body)).collect();
        let synced_before = self.synced_lsn.load(Ordering::SeqCst);
        let mut st = self.state.lock().unwrap();
        let begin_lsn = st.write_lsn;
        let begin_chain = st.chain.len();
        let mut wrote_any = false;
        let result = self.write_locked(&mut st, entries, &crcs, synced_before, &mut wrote_any);
        match result {
            Ok(()) => {
                self.written_lsn.store(st.write_lsn, Ordering::SeqCst);
                Ok(st.write_lsn)
            }
            Err(e) => {
                if wrote_any {
                    self.poison();
                }
                st.write_lsn = begin_lsn;
                // Files switched to during the failed call go back to the
                // spares, their headers wiped: a header left claiming a start
                // could be taken for part of the chain by a later replay.
                while st.chain.len() > begin_chain {
                    let mut f = st.chain.pop().unwrap();
                    if f.file
                        .write_all_at(&[0u8; FILE_HEADER_LEN as usize], 0)
                        .is_err()
                    {
                        self.poison();
                    }
                    f.salt = 0;
                    f.start = 0;
                    st.spares.push(f);
                }
                Err(e)
            }
        }
    }

    fn write_locked(
        &self,
        st: &mut State,
        entries: &[Entry<'_>],
        crcs: &[u32],
        synced_before: u64,
        wrote_any: &mut bool,
    ) -> io::Result<()> {
        let mut buf = std::mem::take(&mut st.buf);
        buf.clear();
        let mut buf_lsn = st.write_lsn;
        let result = (|| {
            for (e, &crc) in entries.iter().zip(crcs) {
                let need = ENTRY_HEADER_LEN as u64 + e.body.len() as u64;
                let cur_end = st.chain.last().map_or(0, JFile::end);
                if st.chain.is_empty() || st.write_lsn + need > cur_end {
                    // The next file first: if there is none to be had (a
                    // full disk), nothing of this call was written yet.
                    let next = self.take_file(st, need)?;
                    if !buf.is_empty() {
                        *wrote_any = true;
                    }
                    // A marker alone is harmless: the next write goes over it.
                    let ended = self.flush_buf(st, &mut buf, buf_lsn).and_then(|()| {
                        match st.chain.is_empty() {
                            true => Ok(()),
                            false => self.write_next_marker(st, synced_before),
                        }
                    });
                    if let Err(e) = ended {
                        st.spares.push(next);
                        return Err(e);
                    }
                    let start = st.chain.last().map_or(st.write_lsn, JFile::end);
                    self.start_file(st, next, start)?;
                    buf_lsn = st.write_lsn;
                }
                let f = st.chain.last().unwrap();
                encode_entry_header(
                    &mut buf,
                    f.salt,
                    st.write_lsn,
                    KIND_FRAME,
                    e,
                    crc,
                    synced_before,
                );
                buf.extend_from_slice(e.body);
                st.write_lsn += need;
            }
            if !buf.is_empty() {
                *wrote_any = true;
            }
            self.flush_buf(st, &mut buf, buf_lsn)
        })();
        buf.clear();
        if buf.capacity() > 16 << 20 {
            buf = Vec::new();
        }
        st.buf = buf;
        result
    }

    fn flush_buf(&self, st: &State, buf: &mut Vec<u8>, buf_lsn: u64) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let f = st.chain.last().unwrap();
        f.file.write_all_at(buf, buf_lsn - f.start)?;
        buf.clear();
        Ok(())
    }

    /// Ends the current file: a marker says the chain goes on in the next.
    fn write_next_marker(&self, st: &mut State, synced_before: u64) -> io::Result<()> {
        let f = st.chain.last().unwrap();
        if st.write_lsn + ENTRY_HEADER_LEN as u64 <= f.end() {
            let mut b = Vec::with_capacity(ENTRY_HEADER_LEN);
            let marker = Entry {
                shard: 0,
                segment_base: 0,
                segment_salt: 0,
                offset: 0,
                body: &[],
            };
            encode_entry_header(
                &mut b,
                f.salt,
                st.write_lsn,
                KIND_NEXT_FILE,
                &marker,
                crc32c::crc32c(&[]),
                synced_before,
            );
            f.file.write_all_at(&b, st.write_lsn - f.start)?;
        }
        Ok(())
    }

    /// Takes a spare (or makes a file) for the range starting at `start`,
    /// big enough for an entry of `need` bytes, and writes its header.
    fn switch_to_new_file(&self, st: &mut State, start: u64, need: u64) -> io::Result<()> {
        let f = self.take_file(st, need)?;
        self.start_file(st, f, start)
    }

    /// A spare big enough for an entry of `need` bytes, or a new file: of
    /// the configured size, smaller if the disk has no room for that (down
    /// to what the entry needs), larger if the entry needs more.
    fn take_file(&self, st: &mut State, need: u64) -> io::Result<JFile> {
        let least = FILE_HEADER_LEN + need + ENTRY_HEADER_LEN as u64;
        if let Some(i) = st.spares.iter().position(|f| f.len >= least) {
            return Ok(st.spares.swap_remove(i));
        }
        let mut len = if least > self.file_bytes {
            least.div_ceil(ZERO_CHUNK as u64) * ZERO_CHUNK as u64
        } else {
            self.file_bytes
        };
        loop {
            match self.make_file(st, len) {
                Ok(f) => return Ok(f),
                Err(e) if is_disk_full(&e) && len / 2 >= least.max(ZERO_CHUNK as u64) => len /= 2,
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes `f`'s header for the range starting at `start` and makes it
    /// the file written to.
    fn start_file(&self, st: &mut State, mut f: JFile, start: u64) -> io::Result<()> {
        let salt = loop {
            let s = fastrand::u32(..);
            if s != 0 {
                break s;
            }
        };
        if let Err(e) = f
            .file
            .write_all_at(&encode_file_header(start, f.len, salt), 0)
        {
            st.spares.push(f);
            return Err(e);
        }
        f.start = start;
        f.salt = salt;
        st.write_lsn = start + FILE_HEADER_LEN;
        st.chain.push(f);
        Ok(())
    }

    /// Creates a zero-filled, fsynced file of `len` bytes.
    fn make_file(&self, st: &mut State, len: u64) -> io::Result<JFile> {
        let index = st.next_index;
        st.next_index += 1;
        self.zero_filled(index, len)
    }

    /// Creates journal file `index`, `len` zero bytes, fsynced and durably
    /// named; on failure (a full disk) leaves no half-made file behind.
    fn zero_filled(&self, index: u64, len: u64) -> io::Result<JFile> {
        let path = self.dir.join(file_name(index));
        let made = (|| {
            let file = self.storage.create_file(&path)?;
            let zeros = vec![0u8; ZERO_CHUNK];
            let mut at = 0u64;
            while at < len {
                let n = (len - at).min(ZERO_CHUNK as u64) as usize;
                file.write_all_at(&zeros[..n], at)?;
                at += n as u64;
            }
            file.sync_data()?;
            self.storage.sync_dir(&self.dir)?;
            Ok(file)
        })();
        match made {
            Ok(file) => Ok(JFile {
                index,
                file,
                start: 0,
                len,
                salt: 0,
            }),
            Err(e) => {
                if self.storage.remove_file(&path).is_ok() {
                    let _ = self.storage.sync_dir(&self.dir);
                }
                Err(e)
            }
        }
    }

    /// Makes a spare ahead of need (so that a write seldom waits for one).
    /// Returns whether one was made.
    pub fn prepare_spare(&self) -> io::Result<bool> {
        let index = {
            let mut st = self.state.lock().unwrap();
            // Needed soon only once the current file is half used.
            let half_used = st
                .chain
                .last()
                .is_some_and(|f| st.write_lsn.saturating_sub(f.start) >= f.len / 2);
            if !st.spares.is_empty() || !half_used {
                return Ok(false);
            }
            let i = st.next_index;
            st.next_index += 1;
            i
        };
        // Made without holding the lock: writers go on meanwhile. A spare
        // is only ever the full size (never halved to fit a nearly full disk).
        let f = self.zero_filled(index, self.file_bytes)?;
        self.state.lock().unwrap().spares.push(f);
        Ok(true)
    }

    /// Fsyncs the journal up to what is written now; returns the LSN made
    /// durable. A failure poisons the journal.
    pub fn sync(&self) -> io::Result<u64> {
        let _round = self.sync_lock.lock().unwrap();
        let (target, files) = {
            let st = self.state.lock().unwrap();
            let synced = self.synced_lsn.load(Ordering::SeqCst);
            let target = st.write_lsn;
            let files: Vec<Arc<dyn StorageFile>> = st
                .chain
                .iter()
                .filter(|f| f.end() > synced && f.start < target)
                .map(|f| f.file.clone())
                .collect();
            (target, files)
        };
        if self.is_poisoned() {
            return Err(io::Error::other("the journal is poisoned"));
        }
        for f in files {
            if let Err(e) = f.sync_data() {
                self.poison();
                return Err(e);
            }
        }
        self.synced_lsn.fetch_max(target, Ordering::SeqCst);
        Ok(target)
    }

    /// Files wholly before `replay_from` become spares (or are deleted).
    pub fn trim(&self, replay_from: u64) -> io::Result<()> {
        let removed = {
            let mut st = self.state.lock().unwrap();
            st.checkpointed_lsn = st.checkpointed_lsn.max(replay_from);
            let mut removed = Vec::new();
            while st.chain.len() > 1 && st.chain[0].end() <= replay_from {
                let mut f = st.chain.remove(0);
                if st.spares.len() < SPARES_MAX && f.len == self.file_bytes {
                    f.start = 0;
                    f.salt = 0;
                    st.spares.push(f);
                } else {
                    removed.push(self.dir.join(file_name(f.index)));
                }
            }
            // Spares that replay left (the files of an earlier run) beyond the limit.
            while st.spares.len() > SPARES_MAX {
                let f = st.spares.pop().unwrap();
                removed.push(self.dir.join(file_name(f.index)));
            }
            removed
        };
        if !removed.is_empty() {
            for path in &removed {
                self.storage.remove_file(path)?;
            }
            self.storage.sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
