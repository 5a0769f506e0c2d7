//! Sluice's storage engine: one durable, segmented, append-only log per shard,
//! behind one journal that all shards share.
//!
//! A [`Log`] owns a data directory holding one directory per [`ShardLog`]; each
//! shard log is a sequence of segment files holding checksummed frames, one
//! frame per appended batch. Every frame is also written to the journal, which
//! is what a group-commit round fsyncs: one `fdatasync` per round however many
//! shards it touched. Checkpoints fsync the segments in the background and let
//! go of the journal before them; after a crash the journal is replayed into
//! the segments (see `docs/storage-format.md`).
//!
//! # Sequence numbers
//! A record's sequence number is `epoch << 64 | frame_offset << 16 | index`:
//! the shard log's epoch (fixed at creation), the logical byte offset of its
//! batch's frame, and its index in the batch. Numbers therefore strictly increase
//! within a shard log, survive restarts (offsets only grow, even after trimming),
//! and locate their record without an index. A child shard created with a greater
//! epoch than its parents gets greater numbers than theirs.
//!
//! # What "acknowledged" means
//! - [`Durability::Sync`] (the default): `append` returns only after the frame and
//!   everything before it are durable in the journal (`fdatasync`). Appends that
//!   arrive while a group-commit round is running share the next round, across all
//!   shard logs; [`Log::append_many`] appends to many shard logs with one journal
//!   write. Readers see a frame only once it is durable, so no reader ever sees
//!   a record that a crash could take back.
//! - [`Durability::Interval`]: `append` returns once the frame is written to the
//!   operating system (it survives the process being killed, not a power loss);
//!   a background round fsyncs at most `fsync_interval_ms` later. Readers see
//!   frames as soon as they are written. After a power loss, each shard log keeps
//!   a prefix of what it had: whole frames only.
//! - In both modes, [`ShardLog::close`] returns after the close is durable, and
//!   segment creation, rolling and deletion fsync the directory.
//!
//! # Failures
//! A batch is one checksummed frame: after a crash it is wholly present or wholly
//! absent. Opening replays the journal from the last checkpoint and cuts each
//! shard log's newest segment where the checkpoint and the journal say it ends
//! (a torn journal tail, with no later entry proving it durable, ends the
//! journal; a proven-durable entry that fails its checksums refuses the open),
//! and fsyncs what it wrote, so that nothing a killed process left in the page
//! cache is shown before it is durable. Bad bytes with a valid frame after
//! them are damage, never cut: the shard log is quarantined ([`Damage`]),
//! readable up to it, refusing reads past it ([`ReadError::Quarantined`]) and
//! appends, until [`inspect::repair`] marks the damage skipped. A failed fsync
//! of the journal poisons every shard log: appends fail with
//! [`AppendError::Poisoned`] until the process restarts and recovery re-reads
//! what is really on disk; nothing poisoned makes another byte visible. A failed write (a full disk)
//! is taken back (the file is truncated to where the frame began) and only
//! that append fails. Reads verify both checksums of every frame and never
//! return a corrupt record. Frame header checksums are seeded with a random
//! per-segment salt, so bytes inside a record cannot pass for a frame when a
//! caller names an arbitrary sequence number.
//!
//! # Retention
//! [`ShardLog::trim_before`] deletes whole segments older than a cutoff and hides
//! older records in the segments it keeps. The cutoff is not persisted: whoever
//! owns the log applies retention again after opening it, before serving reads.
//!
//! # Memory
//! Per shard log: a few hundred bytes plus 16 bytes per segment (segments are
//! `segment_bytes`, 64 MiB by default). Open files are pooled
//! (`open_files_max`). Reads allocate at most their byte limit plus one chunk.

mod error;
mod frame;
pub mod inspect;
mod journal;
mod log;
mod pool;
mod segment;
mod shard_log;
mod sim;
mod storage;
mod syncer;

pub use error::{AppendError, CreateError, OpenError, ReadError};
pub use frame::{AppendRecord, FrameError, FRAME_PAYLOAD_MAX_BYTES, FRAME_RECORDS_MAX};
pub use journal::JournalDamage;
pub use log::{Log, OpenReport, Unsynced};
pub use segment::{SegmentHeaderError, FORMAT_VERSION};
pub use shard_log::{
    AppendReceipt, Cursor, Damage, ReadBatch, ReadLimits, Record, ShardInfo, ShardLog,
    StartingPosition, PARTITION_KEY_MAX_BYTES,
};
pub use sim::SimStorage;
pub use storage::{OsStorage, Storage, StorageFile};

/// Offsets stay below 2^48 so that `offset << 16 | index` fits 64 bits.
pub const OFFSET_LIMIT: u64 = 1 << 48;

/// Identifies a shard log in its data directory (the layer above maps streams
/// and shards to ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardLogId(pub u64);

impl ShardLogId {
    pub fn dir_name(&self) -> String {
        format!("{:016x}", self.0)
    }

    pub fn parse_dir_name(name: &str) -> Option<Self> {
        if name.len() != 16 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u64::from_str_radix(name, 16).ok().map(Self)
    }
}

impl std::fmt::Display for ShardLogId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.dir_name())
    }
}

/// When an append is acknowledged; see the crate documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    Sync,
    Interval { fsync_interval_ms: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOptions {
    /// A segment is sealed once the next frame would take it past this size.
    pub segment_bytes: u64,
    pub durability: Durability,
    /// Most segment files held open at once (handles in use may add to it).
    pub open_files_max: usize,
    /// Size of each journal file (zero-filled when made; a larger one is
    /// made for a frame that does not fit).
    pub journal_file_bytes: u64,
    /// A checkpoint starts once this much journal was written since the last.
    pub checkpoint_bytes: u64,
    /// ... or once this long passed with anything written; 0: never by time.
    pub checkpoint_interval_ms: u64,
    /// Make spare journal files in the background, ahead of need.
    pub journal_spares: bool,
    /// Frames held in memory, written to the journal but not yet to their
    /// segments, at most (about; see `docs/storage-format.md`).
    pub pending_bytes_max: u64,
    /// Open over a damaged journal by cutting it at the damage, losing the
    /// acknowledged entries from there on (`sluice ctl repair --cut-journal`).
    /// Off: opening refuses with [`OpenError::JournalDamaged`].
    pub cut_damaged_journal: bool,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            segment_bytes: 64 << 20,
            durability: Durability::Sync,
            open_files_max: 1024,
            journal_file_bytes: 64 << 20,
            checkpoint_bytes: 128 << 20,
            checkpoint_interval_ms: 5_000,
            journal_spares: true,
            pending_bytes_max: 32 << 20,
            cut_damaged_journal: false,
        }
    }
}

/// Packs a sequence number.
pub fn sequence(epoch: u64, offset: u64, index: u16) -> u128 {
    debug_assert!(offset < OFFSET_LIMIT);
    (u128::from(epoch) << 64) | (u128::from(offset) << 16) | u128::from(index)
}

/// The record index no frame reaches (a frame holds at most `u16::MAX`
/// records, numbered from 0): it marks a position rather than a record.
pub const POSITION_MARKER_INDEX: u16 = u16::MAX;

/// The sequence number just before the reading position `cursor`, such that
/// reading AFTER it starts exactly at `cursor`: the previous record's number
/// inside a frame, or a marker (index [`POSITION_MARKER_INDEX`] of the offset
/// before) at a frame boundary. Markers sort between the records around them.
/// Fan-out hands this out as ContinuationSequenceNumber.
pub fn position_before(cursor: shard_log::Cursor) -> u128 {
    cursor.0.wrapping_sub(1)
}

/// Unpacks a sequence number into (epoch, offset, index).
pub fn split_sequence(seq: u128) -> (u64, u64, u16) {
    (
        (seq >> 64) as u64,
        (seq >> 16) as u64 & (u64::MAX >> 16),
        seq as u16,
    )
}
