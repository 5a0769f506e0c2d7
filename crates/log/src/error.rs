use std::io;
use std::path::PathBuf;

use crate::segment::SegmentHeaderError;
use crate::Damage;

/// Why an append (or close) was refused. Nothing of a refused batch is visible,
/// except after `Io`/`Poisoned` where the batch may or may not have reached disk.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("an append needs at least one record")]
    EmptyBatch,
    #[error("an append holds at most {max} records, got {count}")]
    TooManyRecords { count: usize, max: usize },
    #[error("record {index} has a partition key of {len} bytes; at most {max}")]
    PartitionKeyTooLong {
        index: usize,
        len: usize,
        max: usize,
    },
    #[error("the batch encodes to {bytes} bytes; at most {max}")]
    BatchTooLarge { bytes: usize, max: usize },
    #[error("the shard log is closed")]
    Closed { ending_sequence: u128 },
    #[error("the shard log was deleted")]
    Deleted,
    #[error(
        "the shard log is poisoned by an earlier I/O failure; writes are refused until restart"
    )]
    Poisoned,
    #[error("the log is shutting down")]
    ShutDown,
    /// Damaged data was found in the shard log; it takes no appends until
    /// repaired (`sluice ctl repair`).
    #[error("the shard log is quarantined: {0}")]
    Quarantined(Damage),
    #[error("log offsets are exhausted for this shard")]
    OffsetsExhausted,
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// A sequence number or cursor that does not name a record of this shard log.
    #[error("the position is not a record of this shard log")]
    InvalidPosition,
    #[error("the shard log was deleted")]
    Deleted,
    /// The read reached damaged data: what lies before it can be read, what
    /// lies from it on cannot until the shard log is repaired.
    #[error("the shard log is quarantined: {0}")]
    Quarantined(Damage),
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("corrupt segment header in {path}: {reason}")]
    CorruptSegmentHeader {
        path: PathBuf,
        reason: SegmentHeaderError,
    },
    #[error("segment {path} does not belong to its shard log: {detail}")]
    ForeignSegment { path: PathBuf, detail: String },
    #[error("I/O error on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("the journal in {path} cannot be used: {detail}")]
    Journal { path: PathBuf, detail: String },
    /// An acknowledged journal entry fails its checksums: never cut silently.
    #[error("the journal is damaged: {0}. Entries after the checkpoint were acknowledged; they are not cut without an operator's say (`sluice ctl repair --cut-journal`)")]
    JournalDamaged(Box<crate::JournalDamage>),
}

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("a shard log with this id exists")]
    AlreadyExists,
    #[error("epoch must be at least 1")]
    InvalidEpoch,
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

pub(crate) trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> Result<T, OpenError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T, OpenError> {
        self.map_err(|source| OpenError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}
