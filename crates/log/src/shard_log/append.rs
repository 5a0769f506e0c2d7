//! Appends: records prepared into a frame, written to the journal (and the
//! shard's pending segment bytes), settled once their group-commit round is
//! durable, or undone if the write failed.

use super::*;

/// A frame ready to append: encoded, its header sealed under the shard's lock.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(super) kind: FrameKind,
    pub(super) record_count: u16,
    pub(super) frame: Vec<u8>,
    pub(super) payload_crc: u32,
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
pub(super) const PENDING_FLUSH_BYTES: usize = 256 << 10;
/// Capacity of written-behind buffers kept for reuse across all shard logs.
pub(super) const PENDING_RETAINED_MAX: u64 = 16 << 20;

/// What one shard's part of a batched append changed, to take it back if
/// the journal write fails.
pub(super) struct Undo {
    pub(super) pending_len: usize,
    pub(super) base: u64,
    pub(super) written_end: u64,
    pub(super) last_timestamp_ms: u64,
    pub(super) closed_at: Option<u64>,
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
