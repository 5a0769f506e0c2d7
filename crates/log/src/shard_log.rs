//! One shard's log: appends, reads, close, trim, and recovery at open.

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

    /// Finds where a reader starts.
    pub fn cursor(&self, start: StartingPosition) -> Result<Cursor, ReadError> {
        let (horizon, visible_end, closed_at, damage_from) = {
            let st = self.lock_readable()?;
            let visible_end = self.progress.visible_end.load(Ordering::SeqCst);
            let damage_from = st.damage.as_ref().map(|d| d.offset);
            (
                st.segments[0].base_offset,
                visible_end,
                st.closed_at,
                damage_from,
            )
        };
        // A position at or past damage is refused as such, not as unknown.
        if let StartingPosition::AtSequence(seq) | StartingPosition::AfterSequence(seq) = start {
            let (epoch, offset, _) = split_sequence(seq.wrapping_add(1));
            if epoch == self.epoch && damage_from.is_some_and(|d| offset >= d) {
                return Err(self.quarantined());
            }
        }
        let at = |offset: u64| Ok(Cursor(sequence(self.epoch, offset, 0)));
        let latest = closed_at
            .filter(|c| *c < visible_end)
            .unwrap_or(visible_end);
        match start {
            StartingPosition::TrimHorizon => at(horizon),
            StartingPosition::Latest => at(latest),
            StartingPosition::AtSequence(seq) | StartingPosition::AfterSequence(seq)
                if seq as u16 == POSITION_MARKER_INDEX =>
            {
                // A marker from `position_before`: no record has this index, so
                // at and after it both mean the frame boundary that follows.
                let (epoch, offset, _) = split_sequence(seq.wrapping_add(1));
                if epoch != self.epoch || seq == u128::MAX {
                    return Err(ReadError::InvalidPosition);
                }
                if offset < horizon {
                    return at(horizon);
                }
                // Nothing past what readers may see (a close frame still
                // being fsynced included).
                if offset > visible_end {
                    return Err(ReadError::InvalidPosition);
                }
                if offset == visible_end || Some(offset) == closed_at {
                    return at(offset);
                }
                self.header_at(offset)?;
                at(offset)
            }
            StartingPosition::AtSequence(seq) | StartingPosition::AfterSequence(seq) => {
                let (epoch, offset, index) = split_sequence(seq);
                if epoch != self.epoch {
                    return Err(ReadError::InvalidPosition);
                }
                if offset < horizon {
                    return at(horizon);
                }
                if Some(offset) == closed_at && index == 0 && offset < visible_end {
                    return at(offset);
                }
                if offset >= visible_end {
                    return Err(ReadError::InvalidPosition);
                }
                let header = self.header_at(offset)?;
                if header.kind != FrameKind::Records || index >= header.record_count {
                    return Err(ReadError::InvalidPosition);
                }
                match start {
                    StartingPosition::AtSequence(_) => Ok(Cursor(seq)),
                    _ if index + 1 < header.record_count => {
                        Ok(Cursor(sequence(self.epoch, offset, index + 1)))
                    }
                    _ => at(offset + header.frame_len()),
                }
            }
            StartingPosition::AtTimestamp(ts) => {
                let start = {
                    let st = self.lock_readable()?;
                    // Segment i holds nothing newer than the floor of segment i+1.
                    let i = (0..st.segments.len())
                        .find(|&i| {
                            st.segments
                                .get(i + 1)
                                .is_none_or(|n| n.timestamp_floor_ms >= ts)
                        })
                        .unwrap_or(0);
                    st.segments[i].base_offset
                };
                let mut walker = Walker::new(self, start, 1 << 20);
                while let Some((frame, _)) = walker.next()? {
                    let kind = frame.header.kind;
                    if kind == FrameKind::Close
                        || (kind == FrameKind::Records && frame.header.timestamp_ms >= ts)
                    {
                        return at(frame.offset);
                    }
                }
                at(walker.offset)
            }
        }
    }

    /// Reads records from `cursor`, at most `limits`. Never returns a record
    /// whose checksum does not verify, nor one older than the trim point.
    pub fn read(&self, cursor: Cursor, limits: ReadLimits) -> Result<ReadBatch, ReadError> {
        let (epoch, offset, mut index) = split_sequence(cursor.0);
        if epoch != self.epoch {
            return Err(ReadError::InvalidPosition);
        }
        let max_records = limits.max_records.max(1);
        // Read ahead no further than the byte budget left (plus a frame's slack),
        // so a call never reads much more than it returns.
        // Records count too: a one-record read must not pull in megabytes.
        let read_ahead = |used: usize, returned: usize| {
            let by_records = max_records
                .saturating_sub(returned)
                .saturating_mul(16 << 10);
            limits
                .max_bytes
                .saturating_sub(used)
                .min(by_records)
                .saturating_add(64 << 10)
        };
        let mut walker = Walker::new(self, offset, read_ahead(0, 0));
        let mut records = Vec::new();
        let mut bytes = 0usize;
        let mut behind_from = None;
        let mut end_of_shard = false;
        'frames: loop {
            walker.set_chunk_bytes(read_ahead(bytes, records.len()));
            let (frame, trim_before_ms) = match walker.next() {
                Ok(Some(next)) => next,
                Ok(None) => break,
                // What comes before the damage is handed out; the next read
                // starts at the damage and is refused.
                Err(ReadError::Quarantined(_)) if !records.is_empty() => {
                    index = 0;
                    break;
                }
                Err(e) => return Err(e),
            };
            if walker.jumped {
                index = 0;
                walker.jumped = false;
            }
            match frame.header.kind {
                FrameKind::Close => {
                    end_of_shard = true;
                    walker.offset = frame.offset;
                    break;
                }
                FrameKind::Skip => {
                    index = 0;
                    continue;
                }
                FrameKind::Records if frame.header.timestamp_ms < trim_before_ms => {
                    index = 0;
                    continue;
                }
                FrameKind::Records => {}
            }
            let stored = match frame::decode_records(&frame.header, &frame.payload) {
                Ok(stored) => stored,
                Err(reason) => {
                    let (segment, _) = self.segment_of(frame.offset)?;
                    let e = self.quarantine(&segment, frame.offset, reason.to_string());
                    if records.is_empty() {
                        return Err(e);
                    }
                    walker.offset = frame.offset;
                    index = 0;
                    break;
                }
            };
            if usize::from(index) >= stored.len() {
                return Err(ReadError::InvalidPosition);
            }
            for (i, r) in stored.into_iter().enumerate().skip(usize::from(index)) {
                let size = r.partition_key.len() + r.data.len();
                if records.len() >= max_records
                    || (!records.is_empty() && bytes + size > limits.max_bytes)
                {
                    behind_from = Some(frame.header.timestamp_ms);
                    walker.offset = frame.offset;
                    index = i as u16;
                    break 'frames;
                }
                bytes += size;
                records.push(Record {
                    sequence: sequence(self.epoch, frame.offset, i as u16),
                    arrival_timestamp_ms: frame.header.timestamp_ms,
                    partition_key: r.partition_key,
                    data: r.data,
                    flags: r.flags,
                });
            }
            index = 0;
        }
        if walker.jumped {
            index = 0;
        }
        let last_timestamp_ms = self.lock().last_timestamp_ms;
        Ok(ReadBatch {
            records,
            next: Cursor(sequence(self.epoch, walker.offset, index)),
            end_of_shard,
            millis_behind_latest: behind_from.map_or(0, |ts| last_timestamp_ms.saturating_sub(ts)),
        })
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

    // ---- lifecycle, used by `Log` ----

    pub(crate) fn create(
        shared: Arc<Shared>,
        id: ShardLogId,
        dir: PathBuf,
        epoch: u64,
    ) -> Result<Self, CreateError> {
        if epoch == 0 {
            return Err(CreateError::InvalidEpoch);
        }
        // Fails if the directory exists (for example a delete that could not finish).
        shared.storage.create_dir(&dir)?;
        let log = Self::new(shared, id, dir, epoch);
        let made = log.create_segment(0, 0).and_then(|header| {
            log.lock().segments.push_back(header);
            log.shared.storage.sync_dir(&log.shared.shards_dir)
        });
        if let Err(e) = made {
            log.shared.pool.remove((log.instance, 0));
            return Err(e.into());
        }
        Ok(log)
    }

    /// Opens a shard directory; cuts off a torn tail of the newest segment
    /// (bad bytes with no valid frame after them) and quarantines the shard
    /// log on damage (bad bytes with valid frames after them, or a damaged
    /// segment header), never cutting acknowledged data. `None` if the
    /// directory holds no acknowledged shard (an interrupted create or
    /// delete), which is then removed.
    pub(crate) fn recover(
        shared: Arc<Shared>,
        id: ShardLogId,
        dir: PathBuf,
        scan: bool,
        journaled: &[u64],
    ) -> Result<Option<Self>, OpenError> {
        let storage = shared.storage.clone();
        let names = storage.list_dir(&dir).at(&dir)?;
        let mut bases: Vec<u64> = names
            .iter()
            .filter_map(|n| segment::parse_segment_file_name(n))
            .collect();
        bases.sort_unstable();
        if names.iter().any(|n| n == DELETED_MARKER) {
            remove_shard_dir(&shared, &dir).at(&dir)?;
            return Ok(None);
        }
        // The newest segment first: a header that never became durable (an
        // interrupted roll or create; the file holds nothing more) means no frames.
        let mut newest = None;
        while let Some(&base) = bases.last() {
            let path = segment::segment_path(&dir, base);
            let file = storage.open_file(&path).at(&path)?;
            match SegmentHeader::read_from(&*file).at(&path)? {
                // Frames for it in the journal: its header was durable once
                // (frames are journaled only after it is), so this is rot.
                Err(_)
                    if file.len().at(&path)? <= SEGMENT_HEADER_LEN as u64
                        && !journaled.contains(&base) =>
                {
                    // The only segment of a shard log that holds no records:
                    // a whole header that one changed byte damaged (bit rot,
                    // not an interrupted create) is rewritten, so that the
                    // empty shard log is not taken for an unfinished one.
                    if bases.len() == 1 {
                        let mut b = [0u8; SEGMENT_HEADER_LEN];
                        let n = file.read_full_at(&mut b, 0).at(&path)?;
                        if let Some(h) = SegmentHeader::mend(&b[..n], base, None) {
                            file.write_all_at(&h.encode(), 0).at(&path)?;
                            file.sync_data().at(&path)?;
                            newest = Some((base, file, Ok(h)));
                            break;
                        }
                    }
                    storage.remove_file(&path).at(&path)?;
                    storage.sync_dir(&dir).at(&dir)?;
                    bases.pop();
                }
                header => {
                    newest = Some((base, file, header));
                    break;
                }
            }
        }
        let Some((newest_base, newest_file, newest_header)) = newest else {
            remove_shard_dir(&shared, &dir).at(&dir)?;
            return Ok(None);
        };
        let newest_path = segment::segment_path(&dir, newest_base);
        let mut epoch = newest_header.as_ref().ok().map(|h| h.epoch);
        let mut older = Vec::with_capacity(bases.len());
        for &base in &bases[..bases.len() - 1] {
            let path = segment::segment_path(&dir, base);
            let file = storage.open_file(&path).at(&path)?;
            let header = SegmentHeader::read_from(&*file).at(&path)?;
            if let (Ok(h), None) = (&header, epoch) {
                epoch = Some(h.epoch);
            }
            older.push((base, path, header));
        }
        let epoch = match epoch {
            Some(epoch) => epoch,
            // Every header is damaged: the newest one, mended, still tells the epoch.
            None => {
                let mut b = [0u8; SEGMENT_HEADER_LEN];
                let n = newest_file.read_full_at(&mut b, 0).at(&newest_path)?;
                match SegmentHeader::mend(&b[..n], newest_base, None) {
                    Some(h) => h.epoch,
                    None => {
                        return Err(OpenError::CorruptSegmentHeader {
                            path: newest_path,
                            reason: newest_header.err().unwrap_or(SegmentHeaderError::Checksum),
                        })
                    }
                }
            }
        };
        // A damaged header hides its segment's salt: nothing in it can be
        // verified, so the damage starts at its base. A stand-in header keeps
        // the offsets; its floor is unknown, and the greatest one keeps
        // retention from deleting the segment before it (a floor bounds the
        // previous segment's timestamps from above).
        let stand_in = |base: u64| SegmentHeader {
            epoch,
            base_offset: base,
            timestamp_floor_ms: u64::MAX,
            frame_salt: 0,
        };
        let last_floor = |segments: &VecDeque<SegmentHeader>| {
            segments
                .iter()
                .rev()
                .map(|s| s.timestamp_floor_ms)
                .find(|&f| f != u64::MAX)
                .unwrap_or(0)
        };
        let mut damage: Option<Damage> = None;
        let mut segments = VecDeque::with_capacity(bases.len());
        for (base, path, header) in older {
            match header {
                Ok(h) => {
                    check_header(&path, &h, epoch, base)?;
                    segments.push_back(h);
                }
                Err(reason) => {
                    damage.get_or_insert(Damage {
                        epoch,
                        offset: base,
                        resume: None,
                        reason: format!("segment header: {reason}"),
                    });
                    segments.push_back(stand_in(base));
                }
            }
        }
        let file_len = newest_file.len().at(&newest_path)?;
        let logical_end = newest_base + file_len.saturating_sub(SEGMENT_HEADER_LEN as u64);
        let newest_header_damaged = newest_header.is_err();
        let newest = match newest_header {
            Ok(h) => {
                check_header(&newest_path, &h, epoch, newest_base)?;
                h
            }
            Err(reason) => {
                damage.get_or_insert(Damage {
                    epoch,
                    offset: newest_base,
                    resume: None,
                    reason: format!("segment header: {reason}"),
                });
                stand_in(newest_base)
            }
        };
        let mut last_timestamp_ms = match newest.timestamp_floor_ms {
            u64::MAX => last_floor(&segments),
            floor => floor,
        };
        segments.push_back(newest);
        if !scan {
            // The journal decides where this shard log ends: see `finish_replay`.
            let log = Self::new(shared, id, dir, epoch);
            {
                let mut st = log.lock();
                st.segments = segments;
                st.written_end = logical_end;
                st.flushed_end = logical_end;
                st.last_timestamp_ms = last_timestamp_ms;
                st.damage = damage;
                st.newest_header_damaged = newest_header_damaged;
            }
            log.shared
                .pool
                .replace((log.instance, newest_base), newest_file);
            return Ok(Some(log));
        }

        // Scan the newest segment's frames.
        let mut closed_at = None;
        // Damage in this segment: nothing in it is cut (repair decides).
        // A stand-in header is never scanned: its salt is not the segment's.
        let mut damaged_here = newest_header_damaged;
        let mut good_end = if damaged_here {
            logical_end
        } else {
            newest_base
        };
        if !damaged_here {
            let mut scanner = FrameScanner::new(
                newest_file.clone(),
                &newest,
                newest_base,
                logical_end,
                1 << 20,
            );
            loop {
                match scanner.next().at(&newest_path)? {
                    Scan::Frame(f) if closed_at.is_none() => {
                        last_timestamp_ms = last_timestamp_ms.max(f.header.timestamp_ms);
                        if f.header.kind == FrameKind::Close {
                            closed_at = Some(f.offset);
                        }
                        good_end = scanner.next_offset();
                    }
                    // Nothing may follow a close frame; anything that does is cut off.
                    Scan::Frame(_) | Scan::End => break,
                    Scan::Bad { .. } if damaged_here || closed_at.is_some() => break,
                    Scan::Bad { offset, reason } => {
                        let after = offset + FRAME_HEADER_LEN as u64;
                        let next =
                            segment::find_next_frame(&newest_file, &newest, after, logical_end)
                                .at(&newest_path)?;
                        // No valid frame after the bad bytes: a torn tail, cut below.
                        let Some(resume) = next else { break };
                        damaged_here = true;
                        damage.get_or_insert(Damage {
                            epoch,
                            offset,
                            resume: Some(resume),
                            reason: reason.to_string(),
                        });
                        // Follow the frames after the damage, to know the end.
                        scanner = FrameScanner::new(
                            newest_file.clone(),
                            &newest,
                            resume,
                            logical_end,
                            1 << 20,
                        );
                    }
                }
            }
        }
        if !damaged_here {
            let good_len = segment::file_position(newest_base, good_end);
            if good_len < file_len {
                newest_file.set_len(good_len).at(&newest_path)?;
                shared
                    .recovery_cut_bytes
                    .fetch_add(file_len - good_len, Ordering::Relaxed);
            }
        }
        // What survived a process crash may still be only in the page cache:
        // make it durable before any reader can see it.
        newest_file.sync_data().at(&newest_path)?;
        storage.sync_dir(&dir).at(&dir)?;
        let log = Self::new(shared, id, dir, epoch);
        log.progress.durable_end.store(good_end, Ordering::SeqCst);
        log.progress.visible_end.store(good_end, Ordering::SeqCst);
        {
            let mut st = log.lock();
            st.segments = segments;
            st.written_end = good_end;
            st.flushed_end = good_end;
            st.last_timestamp_ms = last_timestamp_ms;
            st.closed_at = closed_at;
            st.damage = damage;
        }
        log.shared
            .pool
            .replace((log.instance, newest_base), newest_file);
        Ok(Some(log))
    }

    /// Writes a journal entry's frame back into its segment, if the segment
    /// (same base, same salt) still exists; returns what the frame was.
    pub(crate) fn replay_entry(
        &self,
        segment_base: u64,
        segment_salt: u32,
        offset: u64,
        body: &[u8],
    ) -> io::Result<Option<FrameHeader>> {
        let st = self.lock();
        // A segment whose header is damaged stands in with salt 0: its salt is
        // unknown, so entries for its base are taken as its own (the header
        // stays damaged, and the shard log quarantined, until repair).
        let ours = st.segments.iter().any(|s| {
            s.base_offset == segment_base && (s.frame_salt == segment_salt || is_stand_in(s))
        });
        if !ours {
            return Ok(None);
        }
        let Ok(header) = FrameHeader::decode(body, segment_salt) else {
            return Ok(None);
        };
        if offset < segment_base || header.frame_len() != body.len() as u64 {
            return Ok(None);
        }
        let file = self.segment_file(segment_base)?;
        file.write_all_at(body, segment::file_position(segment_base, offset))?;
        Ok(Some(header))
    }

    /// Settles where this shard log ends after the journal was replayed: at
    /// the last replayed frame of its newest segment, else where the
    /// checkpoint put it, else (a segment made after the checkpoint, with
    /// nothing journaled) empty. Bytes past that end were never acknowledged
    /// and are cut. Returns the newest segment's file if it changed.
    pub(crate) fn finish_replay(
        &self,
        checkpoint: Option<&crate::journal::CheckpointEntry>,
        replayed: Option<&Replayed>,
    ) -> io::Result<Option<Arc<dyn StorageFile>>> {
        let mut st = self.lock();
        let newest = *st.segments.back().unwrap();
        let mut last_ts = st.last_timestamp_ms;
        if let Some(cp) = checkpoint {
            // This shard log's (its segment is here, or was a later one that
            // vanished: see below), not an earlier one's under the same id.
            if cp.segment_base > newest.base_offset
                || st
                    .segments
                    .iter()
                    .any(|s| s.base_offset == cp.segment_base && s.frame_salt == cp.segment_salt)
            {
                last_ts = last_ts.max(cp.last_timestamp_ms);
            }
        }
        if let Some(r) = replayed {
            last_ts = last_ts.max(r.max_timestamp_ms);
        }
        st.last_timestamp_ms = last_ts;
        if st.newest_header_damaged {
            // Nothing in it can be verified or cut (the damage says so): it
            // ends where its file does, replayed frames included.
            let file = self.segment_file(newest.base_offset)?;
            let end = newest.base_offset + file.len()?.saturating_sub(SEGMENT_HEADER_LEN as u64);
            st.written_end = end;
            st.flushed_end = end;
            self.progress.durable_end.store(end, Ordering::SeqCst);
            self.progress.visible_end.store(end, Ordering::SeqCst);
            let replayed_here = replayed.is_some_and(|r| r.touched.contains(&newest.base_offset));
            return Ok(replayed_here.then_some(file));
        }
        let cp_here = checkpoint.filter(|cp| {
            cp.segment_base == newest.base_offset && cp.segment_salt == newest.frame_salt
        });
        let replayed_here = replayed.is_some_and(|r| r.touched.contains(&newest.base_offset));
        let file = self.segment_file(newest.base_offset)?;
        // Replay may have written past where the file ended when opened.
        let file_end = newest.base_offset + file.len()?.saturating_sub(SEGMENT_HEADER_LEN as u64);
        let (end, closed_at) = match replayed.filter(|r| r.last_base == newest.base_offset) {
            Some(r) => (r.last_end, r.closed_at.filter(|&c| c >= newest.base_offset)),
            None => match (cp_here, checkpoint) {
                (Some(cp), _) => (cp.end, cp.closed_at),
                // The checkpoint's segment came after this one and is gone
                // (it held nothing: an empty segment whose header rotted):
                // this one was sealed, fsynced whole when the next began.
                (None, Some(cp)) if cp.segment_base > newest.base_offset => (file_end, None),
                // Made after the checkpoint, and nothing in it was journaled.
                _ => (newest.base_offset, None),
            },
        };
        let mut changed = replayed_here;
        // A checkpoint line is checksummed, not trusted blindly: never
        // before the segment's base.
        let end = end.max(newest.base_offset);
        if file_end > end {
            file.set_len(segment::file_position(newest.base_offset, end))?;
            self.shared
                .recovery_cut_bytes
                .fetch_add(file_end - end, Ordering::Relaxed);
            changed = true;
        } else if file_end < end {
            // The checkpoint vouched for bytes the file no longer has.
            st.damage.get_or_insert(Damage {
                epoch: self.epoch,
                offset: file_end,
                resume: None,
                reason: format!(
                    "the segment ends at {file_end}, short of its checkpointed end {end}"
                ),
            });
        }
        st.written_end = end;
        st.flushed_end = end;
        st.closed_at = closed_at;
        self.progress.durable_end.store(end, Ordering::SeqCst);
        self.progress.visible_end.store(end, Ordering::SeqCst);
        Ok(changed.then_some(file))
    }

    /// What a checkpoint records of this shard log (and the active
    /// segment's file if written since the last checkpoint, to fsync).
    #[allow(clippy::type_complexity)]
    pub(crate) fn checkpoint_entry(
        &self,
    ) -> io::Result<
        Option<(
            crate::journal::CheckpointEntry,
            Option<Arc<dyn StorageFile>>,
        )>,
    > {
        let mut st = self.lock();
        if st.deleted {
            return Ok(None);
        }
        self.flush_pending(&mut st)?;
        let newest = *st.segments.back().unwrap();
        let entry = crate::journal::CheckpointEntry {
            shard: self.id.0,
            segment_base: newest.base_offset,
            segment_salt: newest.frame_salt,
            end: st.written_end,
            closed_at: st.closed_at,
            last_timestamp_ms: st.last_timestamp_ms,
        };
        let file = if st.dirty {
            let f = self.segment_file(newest.base_offset)?;
            st.dirty = false;
            Some(f)
        } else {
            None
        };
        Ok(Some((entry, file)))
    }

    /// The file of segment `base` unless it is the newest (or gone).
    pub(crate) fn sealed_segment_file(
        &self,
        base: u64,
    ) -> io::Result<Option<Arc<dyn StorageFile>>> {
        let st = self.lock();
        if st.segments.back().is_some_and(|s| s.base_offset == base)
            || !st.segments.iter().any(|s| s.base_offset == base)
        {
            return Ok(None);
        }
        drop(st);
        self.segment_file(base).map(Some)
    }

    /// Marks the active segment written again (its checkpoint fsync failed).
    pub(crate) fn mark_dirty(&self) {
        self.lock().dirty = true;
    }

    /// Removes every file; the shard log refuses all further use.
    pub(crate) fn delete(&self) -> io::Result<()> {
        let mut st = self.lock();
        if st.deleted {
            return Ok(());
        }
        st.deleted = true;
        let dropped = std::mem::take(&mut st.pending).len() as u64;
        self.shared
            .pending_bytes
            .fetch_sub(dropped, Ordering::Relaxed);
        self.shared
            .pending_retained
            .fetch_sub(std::mem::take(&mut st.pending_retained), Ordering::Relaxed);
        for seg in &st.segments {
            self.shared.pool.remove((self.instance, seg.base_offset));
        }
        // The marker makes an interrupted delete finish at the next open.
        match self
            .shared
            .storage
            .create_file(&self.dir.join(DELETED_MARKER))
        {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        self.shared.storage.sync_dir(&self.dir)?;
        remove_shard_dir(&self.shared, &self.dir)
    }

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

/// A frame ready to append: encoded, its header sealed under the shard's lock.
#[derive(Debug)]
pub(crate) struct Prepared {
    kind: FrameKind,
    record_count: u16,
    frame: Vec<u8>,
    payload_crc: u32,
}

impl Prepared {
    pub(crate) fn records(records: &[AppendRecord<'_>]) -> Result<Self, AppendError> {
        if records.is_empty() {
            return Err(AppendError::EmptyBatch);
        }
        if records.len() > FRAME_RECORDS_MAX {
            return Err(AppendError::TooManyRecords {
                count: records.len(),
                max: FRAME_RECORDS_MAX,
            });
        }
        let mut bytes = 0usize;
        for (index, r) in records.iter().enumerate() {
            if r.partition_key.len() > PARTITION_KEY_MAX_BYTES {
                return Err(AppendError::PartitionKeyTooLong {
                    index,
                    len: r.partition_key.len(),
                    max: PARTITION_KEY_MAX_BYTES,
                });
            }
            bytes = bytes
                .saturating_add(frame::RECORD_HEADER_LEN + r.partition_key.len() + r.data.len());
        }
        if bytes > FRAME_PAYLOAD_MAX_BYTES {
            return Err(AppendError::BatchTooLarge {
                bytes,
                max: FRAME_PAYLOAD_MAX_BYTES,
            });
        }
        let frame = frame::encode_records(records);
        Ok(Self {
            kind: FrameKind::Records,
            record_count: records.len() as u16,
            payload_crc: crc32c::crc32c(&frame[FRAME_HEADER_LEN..]),
            frame,
        })
    }

    pub(crate) fn close() -> Self {
        Self {
            kind: FrameKind::Close,
            record_count: 0,
            frame: vec![0u8; FRAME_HEADER_LEN],
            payload_crc: crc32c::crc32c(&[]),
        }
    }
}

/// A shard log's pending frames are written to its segment once they pass this.
const PENDING_FLUSH_BYTES: usize = 256 << 10;
/// Capacity of written-behind buffers kept for reuse across all shard logs.
const PENDING_RETAINED_MAX: u64 = 16 << 20;

/// What one shard's part of a batched append changed, to take it back if
/// the journal write fails.
struct Undo {
    pending_len: usize,
    base: u64,
    written_end: u64,
    last_timestamp_ms: u64,
    closed_at: Option<u64>,
}

/// Appends one frame to each shard log (distinct shard logs of one `Log`):
/// each frame goes into its segment, all of them into the journal with one
/// write, and the call waits for one group-commit round (in sync mode, or if
/// `urgent`). Returns (offset, timestamp) per item, in order.
pub(crate) fn append_prepared(
    shared: &Shared,
    items: &mut [(&ShardLog, Prepared)],
    urgent: bool,
) -> Vec<Result<(u64, u64), AppendError>> {
    let (mut results, ticket) = append_prepared_unsynced(shared, items);
    let Some(ticket) = ticket else {
        return results;
    };
    if urgent || shared.options.durability == Durability::Sync {
        let synced = shared.syncer.wait(ticket, urgent);
        settle(shared, synced, &mut results, |i| {
            Some(&*items[i].0.progress)
        });
    }
    results
}

/// After the round that was to make appends durable: an append whose round
/// never came (`synced` false: shut down) or whose shard or journal was
/// poisoned fails; `progress(i)` is the shard of result `i` (None for one
/// that never reached the journal).
pub(crate) fn settle<'a, T>(
    shared: &Shared,
    synced: bool,
    results: &mut [Result<T, AppendError>],
    progress: impl Fn(usize) -> Option<&'a ShardProgress>,
) {
    for (i, result) in results.iter_mut().enumerate() {
        if result.is_err() {
            continue;
        }
        let Some(progress) = progress(i) else {
            continue;
        };
        if !synced {
            *result = Err(AppendError::ShutDown);
        } else if progress.poisoned.load(Ordering::SeqCst) || shared.journal.is_poisoned() {
            *result = Err(AppendError::Poisoned);
        }
    }
}

/// Where one append went: (offset, timestamp), or why it failed.
type Appended = Result<(u64, u64), AppendError>;

/// [`append_prepared`] up to the durable point: the results so far and the
/// ticket of the group-commit round to wait for, if anything was written.
/// In interval mode the frames are already visible.
pub(crate) fn append_prepared_unsynced(
    shared: &Shared,
    items: &mut [(&ShardLog, Prepared)],
) -> (Vec<Appended>, Option<u64>) {
    let mut results: Vec<Appended> = (0..items.len())
        .map(|_| Err(AppendError::ShutDown))
        .collect();
    // Locks are taken in id order, so that concurrent batches never deadlock.
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| items[i].0.id);
    if order
        .windows(2)
        .any(|w| items[w[0]].0.id == items[w[1]].0.id)
    {
        // The same shard twice: one frame after the other, each on its own.
        let mut last = None;
        for (i, (log, p)) in items.iter_mut().enumerate() {
            let one = std::mem::replace(p, Prepared::close());
            let mut single = [(*log, one)];
            let (mut r, ticket) = append_prepared_unsynced(shared, &mut single);
            results[i] = r.pop().unwrap();
            last = last.max(ticket);
        }
        return (results, last);
    }
    let mut guards: Vec<Option<MutexGuard<'_, ShardState>>> =
        (0..items.len()).map(|_| None).collect();
    for &i in &order {
        guards[i] = Some(items[i].0.lock());
    }
    let mut undo: Vec<Option<Undo>> = (0..items.len()).map(|_| None).collect();
    for &i in &order {
        let (log, prepared) = &mut items[i];
        let st = guards[i].as_mut().unwrap();
        match log.write_segment(st, prepared) {
            Ok((u, offset, ts)) => {
                undo[i] = Some(u);
                results[i] = Ok((offset, ts));
            }
            Err(e) => results[i] = Err(e),
        }
    }
    let entries: Vec<crate::journal::Entry<'_>> = order
        .iter()
        .filter_map(|&i| {
            let u = undo[i].as_ref()?;
            let (log, prepared) = &items[i];
            let st = guards[i].as_ref().unwrap();
            let segment = st.segments.back().unwrap();
            Some(crate::journal::Entry {
                shard: log.id.0,
                segment_base: u.base,
                segment_salt: segment.frame_salt,
                offset: u.written_end,
                body: &prepared.frame,
            })
        })
        .collect();
    let mut ticket = None;
    if !entries.is_empty() {
        let written = shared.journal.write(&entries);
        drop(entries);
        match written {
            Ok(_) => {
                let written: Vec<usize> = order
                    .iter()
                    .copied()
                    .filter(|&i| undo[i].is_some())
                    .collect();
                ticket = Some(
                    shared
                        .syncer
                        .register_many(written.iter().map(|&i| PendingSync {
                            shard: items[i].0.progress.clone(),
                            end: guards[i].as_ref().unwrap().written_end,
                        })),
                );
                if let Durability::Interval { .. } = shared.options.durability {
                    for &i in &written {
                        let end = guards[i].as_ref().unwrap().written_end;
                        items[i].0.progress.publish(end);
                    }
                }
            }
            Err(e) => {
                if crate::journal::is_disk_full(&e) {
                    shared.disk_full.store(true, Ordering::Relaxed);
                }
                // Nothing of these frames was acknowledged or shown: take them
                // back from their segments, as if never written.
                let kind = e.kind();
                let text = e.to_string();
                for &i in &order {
                    let Some(u) = undo[i].take() else { continue };
                    let log = items[i].0;
                    let st = guards[i].as_mut().unwrap();
                    log.undo_write(st, u);
                    results[i] = Err(if shared.journal.is_poisoned() {
                        AppendError::Poisoned
                    } else {
                        AppendError::Io(io::Error::new(kind, text.clone()))
                    });
                }
            }
        }
    }
    drop(guards);
    (results, ticket)
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

/// Walks verified frames from an offset across segments, up to the visible end.
struct Walker<'a> {
    log: &'a ShardLog,
    /// Offset of the next frame to return.
    offset: u64,
    /// Set when the walk skipped trimmed data and jumped to the horizon.
    jumped: bool,
    scanner: Option<(FrameScanner, Located)>,
    chunk_bytes: usize,
}

impl<'a> Walker<'a> {
    fn set_chunk_bytes(&mut self, chunk_bytes: usize) {
        self.chunk_bytes = chunk_bytes;
        if let Some((scanner, _)) = &mut self.scanner {
            scanner.set_chunk_bytes(chunk_bytes);
        }
    }

    fn new(log: &'a ShardLog, offset: u64, chunk_bytes: usize) -> Self {
        Self {
            log,
            offset,
            jumped: false,
            scanner: None,
            chunk_bytes,
        }
    }

    /// The next frame and the trim point in force, or `None` at the visible end.
    fn next(&mut self) -> Result<Option<(segment::ScannedFrame, u64)>, ReadError> {
        let mut missing_retries = 0;
        loop {
            if self.scanner.is_none() {
                let loc = self.log.locate(self.offset)?;
                if loc.offset != self.offset {
                    self.offset = loc.offset;
                    self.jumped = true;
                }
                if loc.damage_from.is_some_and(|d| self.offset >= d) {
                    return Err(self.log.quarantined());
                }
                if self.offset >= loc.segment_end {
                    return Ok(None);
                }
                let file = match self.log.segment_file(loc.segment.base_offset) {
                    Ok(f) => f,
                    // Trimmed away between locate and open: locate again.
                    Err(e) if e.kind() == io::ErrorKind::NotFound && missing_retries < 3 => {
                        missing_retries += 1;
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                };
                let scanner = FrameScanner::new(
                    file,
                    &loc.segment,
                    self.offset,
                    loc.segment_end,
                    self.chunk_bytes,
                );
                self.scanner = Some((scanner, loc));
            }
            let (scanner, loc) = self.scanner.as_mut().unwrap();
            match scanner.next()? {
                Scan::Frame(f) => {
                    self.offset = scanner.next_offset();
                    return Ok(Some((f, loc.trim_before_ms)));
                }
                Scan::End => {
                    let at_visible_end = scanner.next_offset() >= loc.visible_end;
                    let at_damage = loc.damage_from.is_some_and(|d| scanner.next_offset() >= d);
                    self.offset = scanner.next_offset();
                    self.scanner = None;
                    if at_damage {
                        return Err(self.log.quarantined());
                    }
                    if at_visible_end {
                        return Ok(None);
                    }
                }
                Scan::Bad { offset, reason } => {
                    // Everything here is durable and was whole when written
                    // (torn tails are cut at open): this is damage.
                    self.offset = offset;
                    let segment = loc.segment;
                    self.scanner = None;
                    return Err(self.log.quarantine(&segment, offset, reason.to_string()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sluice_model::ManualClock;

    use crate::frame::{self, AppendRecord, FrameKind, FRAME_HEADER_LEN};
    use crate::{sequence, Log, LogOptions, ReadError, ShardLogId, SimStorage, StartingPosition};

    /// `position_before` a reading position resumes there with AFTER (and,
    /// at frame boundaries, with AT too), before and after records exist.
    #[test]
    fn position_markers_resume_where_reading_stopped() {
        use crate::{position_before, Cursor, ReadLimits};
        let log = Log::open(
            SimStorage::new(4),
            "/d",
            LogOptions::default(),
            Arc::new(ManualClock::new(1)),
        )
        .unwrap();
        let shard = log.create_shard(ShardLogId(1), 7).unwrap();
        let start = shard.cursor(StartingPosition::TrimHorizon).unwrap();
        let marker = position_before(start);
        assert!(
            marker < sequence(7, 0, 0),
            "a marker sorts before what follows"
        );
        for pos in [
            StartingPosition::AfterSequence(marker),
            StartingPosition::AtSequence(marker),
        ] {
            assert_eq!(shard.cursor(pos).unwrap(), start, "empty shard: {pos:?}");
        }
        let rec = |k: &'static [u8]| AppendRecord {
            partition_key: k,
            data: b"x",
            flags: 0,
        };
        shard.append(&[rec(b"a"), rec(b"b"), rec(b"c")]).unwrap();
        shard.append(&[rec(b"d")]).unwrap();
        // The empty shard's marker still means the start now that records exist.
        let read_from = |c: Cursor| {
            shard
                .read(
                    c,
                    ReadLimits {
                        max_records: 10,
                        max_bytes: 1 << 20,
                    },
                )
                .unwrap()
                .records
                .iter()
                .map(|r| r.partition_key[0])
                .collect::<Vec<_>>()
        };
        let after = shard
            .cursor(StartingPosition::AfterSequence(marker))
            .unwrap();
        assert_eq!(read_from(after), b"abcd");
        // Stop after two records (mid-frame), then after four (a frame boundary).
        for (n, rest) in [(2, &b"cd"[..]), (4, &b""[..]), (3, &b"d"[..])] {
            let batch = shard
                .read(
                    start,
                    ReadLimits {
                        max_records: n,
                        max_bytes: 1 << 20,
                    },
                )
                .unwrap();
            let cont = position_before(batch.next);
            let resumed = shard.cursor(StartingPosition::AfterSequence(cont)).unwrap();
            assert_eq!(resumed, batch.next, "after {n} records");
            assert_eq!(read_from(resumed), rest);
            if let Some(last) = batch.records.last() {
                assert!(
                    cont >= last.sequence,
                    "the marker is not before what was read"
                );
            }
        }
        // A marker of a position that is no frame boundary is refused.
        let inside = sequence(7, 3, 0) - 1;
        assert!(matches!(
            shard.cursor(StartingPosition::AfterSequence(inside)),
            Err(ReadError::InvalidPosition)
        ));
        // Past the end, or of another shard's epoch: refused.
        let end = shard.cursor(StartingPosition::Latest).unwrap();
        assert!(shard
            .cursor(StartingPosition::AfterSequence(position_before(Cursor(
                end.0 + (1 << 16)
            ))))
            .is_err());
        assert!(shard
            .cursor(StartingPosition::AfterSequence(sequence(8, 0, 0) - 1))
            .is_err());
    }

    /// Record data that embeds a well-formed frame (here a close frame) must not
    /// be accepted as a position, whatever salt the forger guessed.
    #[test]
    fn frames_forged_inside_record_data_are_not_positions() {
        let storage = SimStorage::new(4);
        let log = Log::open(
            storage,
            "/d",
            LogOptions::default(),
            Arc::new(ManualClock::new(1)),
        )
        .unwrap();
        let shard = log.create_shard(ShardLogId(1), 1).unwrap();
        let mut data = Vec::new();
        for salt in [0u32, 1, 0xffff_ffff] {
            let mut forged = vec![0u8; FRAME_HEADER_LEN];
            frame::seal_frame(
                &mut forged,
                salt,
                FrameKind::Close,
                0,
                1,
                crc32c::crc32c(&[]),
            );
            data.extend_from_slice(&forged);
        }
        let r = shard
            .append(&[AppendRecord {
                partition_key: b"k",
                data: &data,
                flags: 0,
            }])
            .unwrap();
        // The record's data starts after the frame header, the record header and the key.
        let data_at = r.offset + (FRAME_HEADER_LEN + frame::RECORD_HEADER_LEN + 1) as u64;
        for i in 0..3u64 {
            let forged_seq = sequence(1, data_at + i * FRAME_HEADER_LEN as u64, 0);
            assert!(matches!(
                shard.cursor(StartingPosition::AtSequence(forged_seq)),
                Err(ReadError::InvalidPosition)
            ));
        }
    }
}
