//! Reads: where a reader starts (a cursor from a starting position) and
//! batches of records from it, through verified frames (`Walker`).

use super::*;

impl ShardLog {
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
}

/// Walks verified frames from an offset across segments, up to the visible end.
pub(super) struct Walker<'a> {
    log: &'a ShardLog,
    /// Offset of the next frame to return.
    offset: u64,
    /// Set when the walk skipped trimmed data and jumped to the horizon.
    jumped: bool,
    scanner: Option<(FrameScanner, Located)>,
    chunk_bytes: usize,
}

impl<'a> Walker<'a> {
    pub(super) fn set_chunk_bytes(&mut self, chunk_bytes: usize) {
        self.chunk_bytes = chunk_bytes;
        if let Some((scanner, _)) = &mut self.scanner {
            scanner.set_chunk_bytes(chunk_bytes);
        }
    }

    pub(super) fn new(log: &'a ShardLog, offset: u64, chunk_bytes: usize) -> Self {
        Self {
            log,
            offset,
            jumped: false,
            scanner: None,
            chunk_bytes,
        }
    }

    /// The next frame and the trim point in force, or `None` at the visible end.
    pub(super) fn next(&mut self) -> Result<Option<(segment::ScannedFrame, u64)>, ReadError> {
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
