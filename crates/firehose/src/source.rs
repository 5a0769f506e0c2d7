//! Where a delivery's records come from: the delivery stream's own log
//! (Direct PUT), or the shards of a Kinesis stream (KinesisStreamAsSource).
//!
//! A Kinesis source is read through the engine from LATEST at the delivery
//! stream's creation: every shard open then starts at its end, shards
//! closed then are done. A shard made later (by a split or merge) is read
//! from its beginning once every parent was read to its end, so a key's
//! records keep their order across resharding. Each look at a shard is a
//! read counted against its limits as a GetRecords call (with `--limits
//! aws`), as Firehose is a consumer of the stream. KPL aggregated records
//! are de-aggregated (sluice_client::kpl). Several delivery streams on one source each
//! keep their own positions, so each gets every record.

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_log::{Cursor, ReadLimits, Record, ShardLog, StartingPosition};
use sluice_meta::Scope;

use crate::positions::{Position, ShardPosition};

/// Records are read in batches of at most this many bytes.
pub(crate) const READ_BYTES: usize = 4 << 20;

/// Records to deliver, read ahead without being taken.
pub(crate) trait Source {
    /// The next records, at most `room` bytes of data (at least one, if
    /// any is left), not taken yet; empty when nothing is left.
    fn peek(&mut self, room: u64) -> Result<Vec<Record>, String>;
    /// Takes what the last `peek` gave.
    fn take(&mut self);
    /// Makes a peek give at most `n` records (at least one).
    fn limit_records(&mut self, n: usize);
    /// The shard (by index) the last `peek` read, for a Kinesis source.
    fn shard(&self) -> Option<u32> {
        None
    }
}

/// One shard log from a cursor.
pub(crate) struct LogSource<'a> {
    pub log: &'a ShardLog,
    pub cursor: Cursor,
    peeked: Option<Cursor>,
    /// Records one peek gives at most.
    pub max_records: usize,
}

impl<'a> LogSource<'a> {
    pub(crate) fn new(log: &'a ShardLog, cursor: Cursor) -> Self {
        Self {
            log,
            cursor,
            peeked: None,
            max_records: 10_000,
        }
    }
}

impl Source for LogSource<'_> {
    fn peek(&mut self, room: u64) -> Result<Vec<Record>, String> {
        let read = self
            .log
            .read(
                self.cursor,
                ReadLimits {
                    max_records: self.max_records.max(1),
                    max_bytes: room.min(READ_BYTES as u64) as usize,
                },
            )
            .map_err(|e| format!("reading its records failed: {e}"))?;
        if read.records.is_empty() {
            // Past what retention removed, too.
            self.cursor = read.next;
        }
        self.peeked = Some(read.next);
        Ok(read.records)
    }

    fn limit_records(&mut self, n: usize) {
        self.max_records = n.max(1);
    }

    fn take(&mut self) {
        if let Some(next) = self.peeked.take() {
            self.cursor = next;
        }
    }
}

/// The Kinesis stream an ARN names, if it is one.
pub(crate) fn stream_of(arn: &str) -> Option<(Scope, String)> {
    match sluice_model::Arn::parse(arn).ok()? {
        a @ sluice_model::Arn::Stream { .. } => Some((
            Scope::new(a.account(), a.region()),
            a.stream_name().to_owned(),
        )),
        sluice_model::Arn::Consumer { .. } => None,
    }
}

/// One shard of a Kinesis source being read.
struct Reader {
    index: u32,
    log: Arc<ShardLog>,
    cursor: Cursor,
    done: bool,
}

/// The readable shards of a Kinesis source, one after another.
pub(crate) struct ShardsSource {
    readers: Vec<Reader>,
    current: usize,
    peeked: Option<(Cursor, bool)>,
    /// Charge reads to the shards' limits.
    engine: Arc<sluice_streams::Engine>,
    /// Records one peek gives at most.
    max_records: usize,
}

impl ShardsSource {
    /// The shards of `stream` that `position` allows reading now (parents
    /// done first), at their positions; `None` if the stream is gone or
    /// is another stream than the position's.
    pub(crate) fn open(
        engine: &Arc<sluice_streams::Engine>,
        scope: &Scope,
        stream: &str,
        position: &Position,
    ) -> Result<Option<Self>, String> {
        let catalog = engine.catalog();
        let Some(s) = catalog
            .stream(scope, stream)
            .filter(|s| s.created_ms == position.stream_created_ms)
        else {
            return Ok(None);
        };
        let done = |index: Option<u32>| {
            index.is_none_or(|i| {
                // A parent retention removed was read, or never will be.
                s.shard(i).is_none() || position.shards.get(&i).is_some_and(|p| p.done)
            })
        };
        let mut readers = Vec::new();
        for shard in &s.shards {
            let Some(log) = engine.shard_log(shard.log_id) else {
                continue;
            };
            let cursor = match position.shards.get(&shard.index) {
                Some(p) if p.done => continue,
                Some(p) => Cursor(p.next),
                None if done(shard.parent) && done(shard.adjacent_parent) => log
                    .cursor(StartingPosition::TrimHorizon)
                    .map_err(|e| format!("reading its source failed: {e}"))?,
                None => continue,
            };
            readers.push(Reader {
                index: shard.index,
                log,
                cursor,
                done: false,
            });
        }
        Ok(Some(Self {
            readers,
            current: 0,
            peeked: None,
            engine: engine.clone(),
            max_records: 10_000,
        }))
    }

    /// The position after what was taken.
    pub(crate) fn position(&self, mut position: Position) -> Position {
        for r in &self.readers {
            position.shards.insert(
                r.index,
                ShardPosition {
                    next: r.cursor.0,
                    done: r.done,
                },
            );
        }
        position
    }

    /// Counts what is there to deliver, up to `size` bytes, without taking
    /// it: (records, bytes, oldest arrival); and marks shards read to their
    /// end as done.
    pub(crate) fn pending(&mut self, size: u64) -> Result<(u64, u64, Option<u64>), String> {
        let (mut records, mut bytes, mut oldest) = (0u64, 0u64, None);
        for r in &mut self.readers {
            let mut cursor = r.cursor;
            while bytes < size {
                let read = read(&self.engine, r, cursor, size - bytes, 10_000)?;
                if read.records.is_empty() {
                    if read.end_of_shard && cursor == r.cursor {
                        r.done = true;
                    }
                    break;
                }
                for rec in &read.records {
                    records += 1;
                    bytes += rec.data.len() as u64;
                    oldest = Some(oldest.map_or(rec.arrival_timestamp_ms, |o: u64| {
                        o.min(rec.arrival_timestamp_ms)
                    }));
                }
                cursor = read.next;
            }
        }
        Ok((records, bytes, oldest))
    }
}

fn read(
    engine: &sluice_streams::Engine,
    r: &Reader,
    cursor: Cursor,
    room: u64,
    max_records: usize,
) -> Result<sluice_log::ReadBatch, String> {
    let read = r
        .log
        .read(
            cursor,
            ReadLimits {
                max_records,
                max_bytes: room.min(READ_BYTES as u64) as usize,
            },
        )
        .map_err(|e| format!("reading its source failed: {e}"))?;
    if engine.config.enforce_limits {
        let now = engine.now_ms();
        engine
            .throttles
            .shard(r.log.id().0, engine.config.capacity, now)
            .charge_read(read.bytes() as u64);
    }
    Ok(read)
}

impl Source for ShardsSource {
    fn peek(&mut self, room: u64) -> Result<Vec<Record>, String> {
        while let Some(r) = self.readers.get_mut(self.current) {
            if r.done {
                self.current += 1;
                continue;
            }
            let read = read(&self.engine, r, r.cursor, room, self.max_records)?;
            if read.records.is_empty() {
                if read.end_of_shard {
                    r.done = true;
                }
                r.cursor = read.next;
                self.current += 1;
                continue;
            }
            self.peeked = Some((read.next, read.end_of_shard));
            return Ok(read.records);
        }
        Ok(Vec::new())
    }

    fn shard(&self) -> Option<u32> {
        self.readers.get(self.current).map(|r| r.index)
    }

    fn limit_records(&mut self, n: usize) {
        self.max_records = n.max(1);
    }

    fn take(&mut self) {
        if let (Some((next, _end)), Some(r)) =
            (self.peeked.take(), self.readers.get_mut(self.current))
        {
            r.cursor = next;
        }
    }
}

/// Where a new delivery stream starts reading `stream`: every open shard
/// at its end (LATEST), every closed one done.
pub(crate) fn start_position(
    engine: &sluice_streams::Engine,
    scope: &Scope,
    stream: &str,
) -> Option<Position> {
    let catalog = engine.catalog();
    let s = catalog.stream(scope, stream)?;
    let mut shards = BTreeMap::new();
    for shard in &s.shards {
        let position = match (&shard.closed, engine.shard_log(shard.log_id)) {
            (None, Some(log)) => ShardPosition {
                next: log.cursor(StartingPosition::Latest).ok()?.0,
                done: false,
            },
            _ => ShardPosition {
                next: 0,
                done: true,
            },
        };
        shards.insert(shard.index, position);
    }
    Some(Position {
        stream_created_ms: s.created_ms,
        next: 0,
        shards,
    })
}
