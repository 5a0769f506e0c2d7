//! One shard's log: appends, reads, close, trim, and recovery at open.

mod append;
mod read;
mod recovery;

pub(crate) use append::{append_prepared, append_prepared_unsynced, settle, Prepared};
use append::{Undo, PENDING_FLUSH_BYTES, PENDING_RETAINED_MAX};
use read::Walker;

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use crate::error::{AppendError, CreateError, IoContext, OpenError, ReadError};
use crate::frame::{self, AppendRecord, FrameHeader, FrameKind, FRAME_HEADER_LEN};
use crate::frame::{FRAME_PAYLOAD_MAX_BYTES, FRAME_RECORDS_MAX};
use crate::log::Shared;
use crate::segment::{
    self, FrameScanner, Scan, SegmentHeader, SegmentHeaderError, SEGMENT_HEADER_LEN,
};
use crate::storage::StorageFile;
use crate::syncer::{PendingSync, ShardProgress};
use crate::{
    sequence, split_sequence, Durability, ShardLogId, OFFSET_LIMIT, POSITION_MARKER_INDEX,
};

/// Longest partition key the log stores, in bytes (AWS: 256 characters).
pub const PARTITION_KEY_MAX_BYTES: usize = u16::MAX as usize;
/// Name of the marker that says a shard directory is being deleted.
pub(crate) const DELETED_MARKER: &str = "DELETED";

/// Where a reader starts (Kinesis' shard iterator types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartingPosition {
    TrimHorizon,
    Latest,
    AtSequence(u128),
    AfterSequence(u128),
    AtTimestamp(u64),
}

/// The position of the next record to read: a sequence number, which may be one
/// not yet assigned (the end of the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cursor(pub u128);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    pub max_records: usize,
    /// Partition key plus data bytes; one record is returned even if larger.
    pub max_bytes: usize,
}

/// A record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub sequence: u128,
    pub arrival_timestamp_ms: u64,
    pub partition_key: Bytes,
    pub data: Bytes,
    pub flags: u8,
}

#[derive(Debug, Clone)]
pub struct ReadBatch {
    pub records: Vec<Record>,
    /// Where the next read continues.
    pub next: Cursor,
    /// The reader reached the end of a closed shard: no record will ever follow.
    pub end_of_shard: bool,
    /// Arrival time of the newest record minus that of the next unread one; 0 when caught up.
    pub millis_behind_latest: u64,
}

impl ReadBatch {
    /// Partition key plus data bytes of the records (what read limits count).
    pub fn bytes(&self) -> usize {
        self.records
            .iter()
            .map(|r| r.partition_key.len() + r.data.len())
            .sum()
    }
}

/// Bytes of a shard log that fail their checksums although data follows them:
/// corruption, not a torn tail. The shard log is *quarantined*: readable up
/// to `offset`, refused from there on, and closed to appends, until
/// `sluice ctl repair` (`inspect::repair`) marks the damage skipped or
/// retention deletes the segment that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub epoch: u64,
    /// Logical offset of the first damaged byte: a frame boundary, or the base
    /// of a segment whose header is damaged.
    pub offset: u64,
    /// Where the next valid frame after the damage starts, if one was found
    /// in the same segment; `None`: the damage runs to the end of its segment.
    pub resume: Option<u64>,
    pub reason: String,
}

impl Damage {
    /// The sequence number the damage starts at (records before it read fine).
    pub fn first_sequence(&self) -> u128 {
        sequence(self.epoch, self.offset, 0)
    }

    /// The sequence number of the next readable frame after the damage, if known.
    pub fn resume_sequence(&self) -> Option<u128> {
        self.resume.map(|r| sequence(self.epoch, r, 0))
    }
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "data from sequence number {}",
            sluice_model::SequenceNumber(self.first_sequence())
        )?;
        match self.resume_sequence() {
            Some(r) => write!(
                f,
                " up to (not including) {}",
                sluice_model::SequenceNumber(r)
            )?,
            None => f.write_str(" to the end of its segment")?,
        }
        write!(f, " fails its checksums ({})", self.reason)
    }
}

/// What an acknowledged append was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendReceipt {
    pub epoch: u64,
    pub offset: u64,
    pub record_count: u16,
    pub arrival_timestamp_ms: u64,
}

impl AppendReceipt {
    /// Sequence number of the `index`th record of the batch.
    pub fn sequence(&self, index: usize) -> u128 {
        assert!(index < usize::from(self.record_count));
        sequence(self.epoch, self.offset, index as u16)
    }
}

/// A snapshot of a shard log's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    pub id: ShardLogId,
    pub epoch: u64,
    /// Sequence number of the oldest retained position (the trim horizon).
    pub horizon_sequence: u128,
    /// Offset readers can read up to.
    pub visible_end: u64,
    pub last_timestamp_ms: u64,
    /// Set once closed: greater than every record's sequence number.
    pub ending_sequence: Option<u128>,
    pub segment_count: usize,
    pub stored_bytes: u64,
    pub poisoned: bool,
    /// Set while the shard log is quarantined.
    pub damage: Option<Damage>,
}

#[derive(Debug)]
pub struct ShardLog {
    id: ShardLogId,
    /// Unique per opened instance: keys its files in the pool, so that a shard log
    /// deleted and created again under the same id never shares a stale handle.
    instance: u64,
    epoch: u64,
    dir: PathBuf,
    shared: Arc<Shared>,
    pub(crate) progress: Arc<ShardProgress>,
    state: Mutex<ShardState>,
}

#[derive(Debug)]
struct ShardState {
    /// Oldest first; the last one is active (appended to).
    segments: VecDeque<SegmentMeta>,
    written_end: u64,
    last_timestamp_ms: u64,
    closed_at: Option<u64>,
    trim_before_ms: u64,
    deleted: bool,
    /// Written since the last checkpoint fsynced the active segment.
    dirty: bool,
    /// Frames of the active segment not yet written to its file: the bytes
    /// `[flushed_end, written_end)`. The journal holds them durably; they
    /// reach the segment file in one write when this grows past
    /// `PENDING_FLUSH_BYTES`, when a reader needs them, at a roll and at a
    /// checkpoint.
    pending: Vec<u8>,
    flushed_end: u64,
    /// Capacity of `pending` counted in `Shared::pending_retained`.
    pending_retained: u64,
    /// At recovery: the newest segment's header is damaged (its salt unknown).
    newest_header_damaged: bool,
    /// The earliest damage found (at open, by a read, or by `verify`).
    damage: Option<Damage>,
}

/// What the log keeps in memory per segment: its header.
type SegmentMeta = SegmentHeader;

/// The segment holding an offset, as seen at one moment.
#[derive(Debug, Clone, Copy)]
struct Located {
    offset: u64,
    segment: SegmentHeader,
    segment_end: u64,
    visible_end: u64,
    trim_before_ms: u64,
    /// Where damage starts, if the shard log is quarantined.
    damage_from: Option<u64>,
}

impl ShardLog {
    pub fn id(&self) -> ShardLogId {
        self.id
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Appends a batch as one frame: all of it becomes visible, or none of it.
    ///
    /// Returns once the batch is acknowledged in the log's [`Durability`] mode.
    pub fn append(&self, records: &[AppendRecord<'_>]) -> Result<AppendReceipt, AppendError> {
        let prepared = Prepared::records(records)?;
        let mut items = [(self, prepared)];
        let (offset, timestamp_ms) = append_prepared(&self.shared, &mut items, false)
            .pop()
            .unwrap()?;
        Ok(AppendReceipt {
            epoch: self.epoch,
            offset,
            record_count: records.len() as u16,
            arrival_timestamp_ms: timestamp_ms,
        })
    }

    /// Closes the log for appends, durably; returns the ending sequence number
    /// (greater than that of every record). Closing again returns the same number.
    pub fn close(&self) -> Result<u128, AppendError> {
        let mut items = [(self, Prepared::close())];
        match append_prepared(&self.shared, &mut items, true)
            .pop()
            .unwrap()
        {
            Ok((offset, _)) => Ok(sequence(self.epoch, offset, 0)),
            // Closed already, possibly by a call still waiting for its fsync:
            // answer only once that close is durable too.
            Err(AppendError::Closed { ending_sequence }) => {
                if !self.shared.syncer.flush() {
                    return Err(AppendError::ShutDown);
                }
                if self.progress.poisoned.load(Ordering::SeqCst)
                    || self.shared.journal.is_poisoned()
                {
                    return Err(AppendError::Poisoned);
                }
                Ok(ending_sequence)
            }
            Err(e) => Err(e),
        }
    }

    /// Writes a prepared frame into the active segment (rolling first if it
    /// would not fit); the caller journals it and registers it.
    fn write_segment(
        &self,
        st: &mut ShardState,
        p: &mut Prepared,
    ) -> Result<(Undo, u64, u64), AppendError> {
        self.check_writable(st)?;
        if self.shared.journal.is_poisoned() {
            return Err(AppendError::Poisoned);
        }
        let timestamp_ms = self.shared.clock.now_ms().max(st.last_timestamp_ms);
        let frame_len = p.frame.len() as u64;
        if st.written_end + frame_len >= OFFSET_LIMIT {
            return Err(AppendError::OffsetsExhausted);
        }
        let active_len = st.written_end - st.segments.back().unwrap().base_offset;
        if active_len > 0 && active_len + frame_len > self.shared.options.segment_bytes {
            self.roll(st)?;
        }
        let offset = st.written_end;
        let active = *st.segments.back().unwrap();
        frame::seal_frame(
            &mut p.frame,
            active.frame_salt,
            p.kind,
            p.record_count,
            timestamp_ms,
            p.payload_crc,
        );
        let base = active.base_offset;
        // Written behind: into memory now, into the file in one write later.
        // Flushed first when it would grow too big, when the log holds too
        // much unflushed, or when the disk was found full (so that a full
        // disk fails appends, and they go on once the flush succeeds).
        if !st.pending.is_empty()
            && (st.pending.len() + p.frame.len() > PENDING_FLUSH_BYTES
                || self.shared.pending_bytes.load(Ordering::Relaxed)
                    > self.shared.pending_bytes_max()
                || self.shared.disk_full.load(Ordering::Relaxed))
        {
            self.flush_pending(st)?;
        }
        let undo = Undo {
            pending_len: st.pending.len(),
            base,
            written_end: st.written_end,
            last_timestamp_ms: st.last_timestamp_ms,
            closed_at: st.closed_at,
        };
        st.pending.extend_from_slice(&p.frame);
        self.shared
            .pending_bytes
            .fetch_add(frame_len, Ordering::Relaxed);
        st.written_end = offset + frame_len;
        st.last_timestamp_ms = timestamp_ms;
        st.dirty = true;
        if p.kind == FrameKind::Close {
            st.closed_at = Some(offset);
        }
        // The disk was found full: write through, so that an append whose
        // frame cannot reach its segment fails instead of piling up.
        if self.shared.disk_full.load(Ordering::Relaxed) {
            if let Err(e) = self.flush_pending(st) {
                self.undo_write(st, undo);
                return Err(AppendError::Io(e));
            }
        }
        Ok((undo, offset, timestamp_ms))
    }

    /// Takes back a frame whose journal (or write-through) write failed.
    fn undo_write(&self, st: &mut ShardState, u: Undo) {
        if st.flushed_end > u.written_end {
            // Written through already: the file's bytes past the frame's
            // start are never read (nor kept by recovery) and are written over.
            st.flushed_end = u.written_end;
        } else {
            let taken = (st.pending.len() - u.pending_len) as u64;
            st.pending.truncate(u.pending_len);
            self.shared
                .pending_bytes
                .fetch_sub(taken, Ordering::Relaxed);
        }
        debug_assert_eq!(st.segments.back().unwrap().base_offset, u.base);
        st.written_end = u.written_end;
        st.last_timestamp_ms = u.last_timestamp_ms;
        st.closed_at = u.closed_at;
    }

    /// Hides records older than `cutoff_ms` from readers and deletes the segments
    /// that hold nothing newer. Returns the number of segments deleted.
    ///
    /// The cutoff itself is kept in memory only: after reopening, the owner
    /// applies retention again before serving reads (deleted segments stay deleted).
    pub fn trim_before(&self, cutoff_ms: u64) -> io::Result<usize> {
        let mut st = self.lock();
        if st.deleted {
            return Ok(0);
        }
        st.trim_before_ms = st.trim_before_ms.max(cutoff_ms);
        let active = *st.segments.back().unwrap();
        let active_has_frames = st.written_end > active.base_offset;
        let writable = st.closed_at.is_none() && !self.progress.poisoned.load(Ordering::SeqCst);
        let writable = writable && st.damage.is_none();
        let mut result = Ok(());
        if writable && active_has_frames && st.last_timestamp_ms < cutoff_ms {
            // Everything is expired: start a fresh segment so the old one can
            // go. If that fails (a full disk), the older segments still go.
            if let Err(e) = self.roll(&mut st) {
                result = Err(match e {
                    AppendError::Io(e) => e,
                    other => io::Error::other(other.to_string()),
                });
            }
        }
        let mut removed = 0;
        while st.segments.len() > 1 && st.segments[1].timestamp_floor_ms < cutoff_ms {
            let old = st.segments[0].base_offset;
            let path = segment::segment_path(&self.dir, old);
            if let Err(e) = self.shared.storage.remove_file(&path) {
                result = Err(e);
                break;
            }
            st.segments.pop_front();
            self.shared.pool.remove((self.instance, old));
            removed += 1;
        }
        if removed > 0 {
            // Retention took the damaged bytes away: nothing is quarantined any more.
            let horizon = st.segments[0].base_offset;
            if st.damage.as_ref().is_some_and(|d| d.offset < horizon) {
                st.damage = None;
            }
            self.shared.storage.sync_dir(&self.dir)?;
        }
        result.map(|()| removed)
    }

    /// Reads every frame still on disk (those behind the trim point too) and
    /// verifies its checksums; quarantines the shard log at the first damage,
    /// which it returns. Opening checks only the newest segment's frames: the
    /// server runs this over every shard log after it starts.
    /// `stop` is asked between frames: true ends the walk early (as clean).
    pub fn verify(&self, stop: &dyn Fn() -> bool) -> Result<Option<Damage>, ReadError> {
        let start = self.lock_readable()?.segments[0].base_offset;
        let mut walker = Walker::new(self, start, 1 << 20);
        loop {
            match walker.next() {
                Ok(Some(_)) if stop() => return Ok(None),
                Ok(Some(_)) => {}
                Ok(None) => return Ok(None),
                Err(ReadError::Quarantined(damage)) => return Ok(Some(damage)),
                Err(e) => return Err(e),
            }
        }
    }

    /// The damage that quarantines this shard log, if any.
    pub fn damage(&self) -> Option<Damage> {
        self.lock().damage.clone()
    }

    fn quarantined(&self) -> ReadError {
        match self.damage() {
            Some(d) => ReadError::Quarantined(d),
            // Retention removed the damage meanwhile: the reader tries again.
            None => ReadError::InvalidPosition,
        }
    }

    /// The segment holding `offset` and where its bytes end (the next
    /// segment's base, or the written end).
    fn segment_of(&self, offset: u64) -> Result<(SegmentHeader, u64), ReadError> {
        let mut st = self.lock_readable()?;
        self.flush_pending(&mut st)?;
        let i = st
            .segments
            .partition_point(|s| s.base_offset <= offset)
            .max(1)
            - 1;
        let end = st
            .segments
            .get(i + 1)
            .map_or(st.written_end, |s| s.base_offset);
        Ok((st.segments[i], end))
    }

    /// Records damage found at `offset` of `segment` (the earliest found
    /// wins) and returns the error that refuses reading it.
    fn quarantine(&self, segment: &SegmentHeader, offset: u64, reason: String) -> ReadError {
        let end = match self.segment_of(offset) {
            Ok((_, end)) => end,
            Err(e) => return e,
        };
        let resume = self
            .segment_file(segment.base_offset)
            .and_then(|file| {
                segment::find_next_frame(&file, segment, offset + FRAME_HEADER_LEN as u64, end)
            })
            .unwrap_or(None);
        let mut st = self.lock();
        if st.damage.as_ref().is_none_or(|d| offset < d.offset) {
            st.damage = Some(Damage {
                epoch: self.epoch,
                offset,
                resume,
                reason,
            });
        }
        ReadError::Quarantined(st.damage.clone().unwrap())
    }

    pub fn info(&self) -> ShardInfo {
        let st = self.lock();
        let horizon = st.segments[0].base_offset;
        ShardInfo {
            id: self.id,
            epoch: self.epoch,
            horizon_sequence: sequence(self.epoch, horizon, 0),
            visible_end: self.progress.visible_end.load(Ordering::SeqCst),
            last_timestamp_ms: st.last_timestamp_ms,
            ending_sequence: st.closed_at.map(|at| sequence(self.epoch, at, 0)),
            segment_count: st.segments.len(),
            stored_bytes: st.written_end - horizon,
            poisoned: self.progress.poisoned.load(Ordering::SeqCst),
            damage: st.damage.clone(),
        }
    }

    /// Blocks until the visible end moves past `offset` or `timeout` passes
    /// (for readers that wait for new records instead of polling).
    pub fn wait_for_data(&self, cursor: Cursor, timeout: std::time::Duration) -> bool {
        let (_, offset, _) = split_sequence(cursor.0);
        self.progress.sleepers.fetch_add(1, Ordering::SeqCst);
        let changes = self.progress.changes.lock().unwrap();
        let (guard, _) = self
            .progress
            .changed
            .wait_timeout_while(changes, timeout, |_| {
                self.progress.visible_end.load(Ordering::SeqCst) <= offset
                    && !self.progress.poisoned.load(Ordering::SeqCst)
            })
            .unwrap();
        drop(guard);
        self.progress.sleepers.fetch_sub(1, Ordering::SeqCst);
        self.progress.visible_end.load(Ordering::SeqCst) > offset
    }

    /// Resolves once the visible end moves past `cursor` or the shard is
    /// poisoned: the async form of [`ShardLog::wait_for_data`], woken by the
    /// append itself (no polling).
    pub async fn data_after(&self, cursor: Cursor) {
        let (_, offset, _) = split_sequence(cursor.0);
        // Counted before the check below, so that a publish either sees the
        // count or stored its end before the check reads it; uncounted when
        // done or dropped.
        struct Counted<'a>(&'a std::sync::atomic::AtomicUsize);
        impl Drop for Counted<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.progress.async_sleepers.fetch_add(1, Ordering::SeqCst);
        let _counted = Counted(&self.progress.async_sleepers);
        loop {
            let notified = std::pin::pin!(self.progress.appended.notified());
            let mut notified = notified;
            // Registered before the check, so a publish in between is not missed.
            notified.as_mut().enable();
            if self.progress.visible_end.load(Ordering::SeqCst) > offset
                || self.progress.poisoned.load(Ordering::SeqCst)
            {
                return;
            }
            notified.await;
        }
    }
}

impl ShardLog {
    fn new(shared: Arc<Shared>, id: ShardLogId, dir: PathBuf, epoch: u64) -> Self {
        static INSTANCES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Self {
            id,
            instance: INSTANCES.fetch_add(1, Ordering::Relaxed),
            epoch,
            dir,
            shared,
            progress: Arc::default(),
            state: Mutex::new(ShardState {
                segments: VecDeque::new(),
                written_end: 0,
                last_timestamp_ms: 0,
                closed_at: None,
                trim_before_ms: 0,
                deleted: false,
                dirty: false,
                pending: Vec::new(),
                flushed_end: 0,
                pending_retained: 0,
                newest_header_damaged: false,
                damage: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ShardState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_readable(&self) -> Result<MutexGuard<'_, ShardState>, ReadError> {
        let st = self.lock();
        if st.deleted {
            return Err(ReadError::Deleted);
        }
        Ok(st)
    }

    fn check_writable(&self, st: &ShardState) -> Result<(), AppendError> {
        if st.deleted {
            return Err(AppendError::Deleted);
        }
        if self.progress.poisoned.load(Ordering::SeqCst) {
            return Err(AppendError::Poisoned);
        }
        if let Some(damage) = &st.damage {
            return Err(AppendError::Quarantined(damage.clone()));
        }
        if let Some(at) = st.closed_at {
            return Err(AppendError::Closed {
                ending_sequence: sequence(self.epoch, at, 0),
            });
        }
        Ok(())
    }

    fn poison(&self) {
        self.progress.poisoned.store(true, Ordering::SeqCst);
        self.progress.publish(0);
    }

    /// Writes the pending frames into the active segment's file. On failure
    /// they stay pending (the journal has them): a later flush writes them
    /// again, over whatever part reached the file.
    fn flush_pending(&self, st: &mut ShardState) -> io::Result<()> {
        if st.pending.is_empty() {
            return Ok(());
        }
        let base = st.segments.back().unwrap().base_offset;
        let written = self.segment_file(base).and_then(|file| {
            file.write_all_at(&st.pending, segment::file_position(base, st.flushed_end))
        });
        if let Err(e) = written {
            if crate::journal::is_disk_full(&e) {
                self.shared.disk_full.store(true, Ordering::Relaxed);
            }
            return Err(e);
        }
        self.shared
            .pending_bytes
            .fetch_sub(st.pending.len() as u64, Ordering::Relaxed);
        st.flushed_end = st.written_end;
        // Let the buffer go: ten thousand shards each keeping a flushed
        // buffer's capacity would hold hundreds of MiB for nothing.
        st.pending.clear();
        // Keep the buffer for the next frames while the log's kept buffers
        // stay within budget (freeing and growing one per flush costs more
        // memory in the allocator than it saves); let it go beyond that (ten
        // thousand shards each keeping one would hold hundreds of MiB).
        let retained = &self.shared.pending_retained;
        retained.fetch_sub(st.pending_retained, Ordering::Relaxed);
        let capacity = st.pending.capacity() as u64;
        let kept = capacity <= 2 * PENDING_FLUSH_BYTES as u64
            && retained.fetch_add(capacity, Ordering::Relaxed) + capacity <= PENDING_RETAINED_MAX;
        if kept {
            st.pending_retained = capacity;
        } else {
            if capacity <= 2 * PENDING_FLUSH_BYTES as u64 {
                retained.fetch_sub(capacity, Ordering::Relaxed);
            }
            st.pending_retained = 0;
            st.pending = Vec::new();
        }
        Ok(())
    }

    /// Flushes pending frames (for the checkpointer, when too much is pending).
    pub(crate) fn flush(&self) -> io::Result<()> {
        let mut st = self.lock();
        if st.deleted {
            return Ok(());
        }
        self.flush_pending(&mut st)
    }

    fn segment_file(&self, base: u64) -> io::Result<Arc<dyn StorageFile>> {
        self.shared.pool.get(
            (self.instance, base),
            &segment::segment_path(&self.dir, base),
        )
    }

    /// Creates and durably names a new, empty segment.
    fn create_segment(&self, base: u64, timestamp_floor_ms: u64) -> io::Result<SegmentHeader> {
        let path = segment::segment_path(&self.dir, base);
        let file = self.shared.storage.create_file(&path)?;
        let header = SegmentHeader {
            epoch: self.epoch,
            base_offset: base,
            timestamp_floor_ms,
            frame_salt: fastrand::u32(..),
        };
        file.write_all_at(&header.encode(), 0)?;
        file.sync_data()?;
        self.shared.storage.sync_dir(&self.dir)?;
        self.shared.pool.replace((self.instance, base), file);
        Ok(header)
    }

    /// Seals the active segment (made durable first, so that only the newest
    /// segment can ever have a torn tail) and starts a new one.
    fn roll(&self, st: &mut ShardState) -> Result<(), AppendError> {
        self.flush_pending(st)?;
        let base = st.segments.back().unwrap().base_offset;
        if let Err(e) = self.segment_file(base).and_then(|f| f.sync_data()) {
            // A failed fsync: what it covered may be lost.
            self.poison();
            return Err(AppendError::Io(e));
        }
        match self.create_segment(st.written_end, st.last_timestamp_ms) {
            // Visibility is left to the syncer, which still has the sealed
            // segment's writes pending and checks for poison before publishing.
            Ok(header) => {
                st.segments.push_back(header);
                Ok(())
            }
            // Nothing was appended to the new segment (a full disk, say):
            // remove what of it exists, so that the next append can roll again.
            Err(e) => {
                let path = segment::segment_path(&self.dir, st.written_end);
                self.shared.pool.remove((self.instance, st.written_end));
                // Durably gone, or a crash could bring it back and hide what
                // is appended to the previous segment meanwhile.
                let removed = match self.shared.storage.remove_file(&path) {
                    Ok(()) => self.shared.storage.sync_dir(&self.dir),
                    Err(gone) if gone.kind() == io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(e),
                };
                if removed.is_err() {
                    self.poison();
                }
                Err(AppendError::Io(e))
            }
        }
    }

    fn header_at(&self, offset: u64) -> Result<FrameHeader, ReadError> {
        let loc = self.locate(offset)?;
        if loc.offset != offset || offset + FRAME_HEADER_LEN as u64 > loc.segment_end {
            return Err(ReadError::InvalidPosition);
        }
        let file = self.segment_file(loc.segment.base_offset)?;
        let mut b = [0u8; FRAME_HEADER_LEN];
        let n = file.read_full_at(
            &mut b,
            segment::file_position(loc.segment.base_offset, offset),
        )?;
        FrameHeader::decode(&b[..n], loc.segment.frame_salt).map_err(|_| ReadError::InvalidPosition)
    }

    /// The segment holding `offset`, or the horizon if `offset` was trimmed.
    fn locate(&self, offset: u64) -> Result<Located, ReadError> {
        let mut st = self.lock_readable()?;
        let visible_end = self.progress.visible_end.load(Ordering::SeqCst);
        if visible_end > st.flushed_end {
            self.flush_pending(&mut st)?;
        }
        let offset = offset.max(st.segments[0].base_offset);
        let i = st.segments.partition_point(|s| s.base_offset <= offset) - 1;
        let next_base = st
            .segments
            .get(i + 1)
            .map_or(st.written_end, |s| s.base_offset);
        let damage_from = st.damage.as_ref().map(|d| d.offset);
        Ok(Located {
            offset,
            segment: st.segments[i],
            segment_end: next_base
                .min(visible_end)
                .min(damage_from.unwrap_or(u64::MAX)),
            visible_end,
            trim_before_ms: st.trim_before_ms,
            damage_from,
        })
    }
}

/// What replay wrote into one shard log.
#[derive(Debug, Default)]
pub(crate) struct Replayed {
    /// Base of the segment of the last replayed frame, and where it ends.
    pub last_base: u64,
    pub last_end: u64,
    /// Set if the last replayed frame closes the shard log.
    pub closed_at: Option<u64>,
    pub max_timestamp_ms: u64,
    /// Segments written into.
    pub touched: Vec<u64>,
}

/// The header recovery puts in place of a damaged one (see `recover`).
fn is_stand_in(h: &SegmentHeader) -> bool {
    h.frame_salt == 0 && h.timestamp_floor_ms == u64::MAX
}

fn check_header(
    path: &Path,
    header: &SegmentHeader,
    epoch: u64,
    base: u64,
) -> Result<(), OpenError> {
    if header.epoch != epoch || header.base_offset != base || base >= OFFSET_LIMIT {
        return Err(OpenError::ForeignSegment {
            path: path.to_path_buf(),
            detail: format!(
                "header says epoch {} base {}, expected epoch {epoch} base {base}",
                header.epoch, header.base_offset
            ),
        });
    }
    Ok(())
}

fn remove_shard_dir(shared: &Shared, dir: &Path) -> io::Result<()> {
    shared.storage.remove_dir_all(dir)?;
    shared.storage.sync_dir(&shared.shards_dir)
}

#[cfg(test)]
mod tests;
