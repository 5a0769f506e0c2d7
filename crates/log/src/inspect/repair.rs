//! `sluice ctl repair`: damage marked skipped (or a torn tail cut), the
//! journal settled first.

use super::*;

/// One stretch of damage that [`repair`] marked skipped (or cut, for a torn tail).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repaired {
    pub shard: ShardLogId,
    /// The first sequence number position the damage covered.
    pub from_sequence: u128,
    /// The position after it: the next valid frame (or the next segment).
    pub to_sequence: u128,
    pub bytes: u64,
    pub what: String,
}

/// What [`repair`] did.
#[derive(Debug, Clone, Default)]
pub struct RepairReport {
    pub shards: usize,
    pub repaired: Vec<Repaired>,
    /// Segments (or shard logs) that could not be repaired.
    pub failed: usize,
    /// The damaged journal was cut here (`cut_journal`): every entry from
    /// it on was lost.
    pub journal_cut: Option<crate::JournalDamage>,
}

/// Repairs the shard logs under the log directory `root` (see [`log_root`])
/// so that they open unquarantined, keeping every valid frame: a segment
/// header that one changed byte damaged is mended (its checksum tells which);
/// damaged bytes followed by valid frames are covered by *skip* frames, which
/// readers pass over (the records in them are lost; every other record keeps
/// its sequence number); a torn tail of a newest segment is cut, as opening
/// would. A header that cannot be mended makes its whole segment skipped.
/// The journal is replayed into the segments first; a damaged journal
/// (acknowledged entries that fail their checksums) is refused, or with
/// `cut_journal` cut at the damage, losing the entries from there on.
/// Run it only on a stopped server's data directory.
pub fn repair(
    storage: Arc<dyn Storage>,
    root: &Path,
    cut_journal: bool,
) -> io::Result<RepairReport> {
    let journal_cut = settle_journal(&storage, root, cut_journal)?;
    let storage = &*storage;
    let mut report = RepairReport {
        journal_cut,
        ..RepairReport::default()
    };
    for (id, dir) in shard_dirs(storage, root)? {
        report.shards += 1;
        if storage
            .list_dir(&dir)?
            .iter()
            .any(|n| n == crate::shard_log::DELETED_MARKER)
        {
            continue;
        }
        let bases = segment_bases(storage, &dir)?;
        // Headers first (files opened one at a time: a shard may have many).
        let mut headers = Vec::with_capacity(bases.len());
        for &base in &bases {
            let file = storage.open_file(&segment::segment_path(&dir, base))?;
            let mut b = [0u8; SEGMENT_HEADER_LEN];
            let n = file.read_full_at(&mut b, 0)?;
            headers.push((base, b, n));
        }
        let epoch = headers
            .iter()
            .find_map(|(_, b, n)| SegmentHeader::decode(&b[..*n]).ok().map(|h| h.epoch))
            .or_else(|| {
                headers
                    .iter()
                    .find_map(|(base, b, n)| SegmentHeader::mend(&b[..*n], *base, None))
                    .map(|h| h.epoch)
            });
        let Some(epoch) = epoch else {
            report.failed += 1;
            report.repaired.push(Repaired {
                shard: id,
                from_sequence: 0,
                to_sequence: 0,
                bytes: 0,
                what: "no segment header tells the shard log's epoch: left as it is".into(),
            });
            continue;
        };
        // The newest timestamp seen so far: the floor for a header rebuilt
        // from nothing (it bounds the segments before from above).
        let mut floor = 0;
        for (i, (base, b, n)) in headers.into_iter().enumerate() {
            let next_base = bases.get(i + 1).copied();
            let file = storage.open_file(&segment::segment_path(&dir, base))?;
            let mut notes = Vec::new();
            let segment = Segment {
                file: &file,
                base,
                next_base,
                epoch,
            };
            let outcome = repair_segment(&segment, &b[..n], &mut floor, &mut notes);
            if let Err(e) = outcome {
                report.failed += 1;
                notes.push((base, base, format!("could not repair this segment: {e}")));
            }
            for (from, to, what) in notes {
                report.repaired.push(Repaired {
                    shard: id,
                    from_sequence: sequence(epoch, from, 0),
                    to_sequence: sequence(epoch, to, 0),
                    bytes: to - from,
                    what,
                });
            }
        }
    }
    Ok(report)
}

/// Replays the journal into the segments (by opening the log once) and then
/// removes it, so that the segments alone hold everything and repair works
/// on them as on format 1. The next open scans the newest segments and
/// starts a new journal and checkpoint.
fn settle_journal(
    storage: &Arc<dyn Storage>,
    root: &Path,
    cut_journal: bool,
) -> io::Result<Option<crate::JournalDamage>> {
    let journal_dir = root.join("journal");
    if storage.list_dir(&journal_dir).is_err() {
        return Ok(None);
    }
    let options = crate::LogOptions {
        journal_spares: false,
        checkpoint_interval_ms: 0,
        checkpoint_bytes: u64::MAX,
        cut_damaged_journal: cut_journal,
        ..crate::LogOptions::default()
    };
    let (log, opened) = crate::Log::open_with_report(
        storage.clone(),
        root,
        options,
        Arc::new(sluice_model::SystemClock),
    )
    .map_err(|e| io::Error::other(e.to_string()))?;
    drop(log);
    // Journal files first: with the checkpoint still there, a crash here
    // leaves a journal with nothing to replay, which is valid.
    let mut names = storage.list_dir(&journal_dir)?;
    names.sort_by_key(|n| n.starts_with("checkpoint"));
    for name in names {
        storage.remove_file(&journal_dir.join(name))?;
    }
    storage.sync_dir(&journal_dir)?;
    storage.remove_dir_all(&journal_dir)?;
    storage.sync_dir(root)?;
    Ok(opened.journal_cut)
}

/// A repair done to one segment: (from offset, to offset, what).
type Note = (u64, u64, String);

/// One segment file being repaired, and where it sits in its shard log.
struct Segment<'a> {
    file: &'a Arc<dyn StorageFile>,
    base: u64,
    /// The next segment's base; `None` for the newest segment.
    next_base: Option<u64>,
    epoch: u64,
}

/// Repairs one segment (see [`repair`]); `floor` carries the newest
/// timestamp seen so far from segment to segment.
fn repair_segment(
    segment: &Segment<'_>,
    header_bytes: &[u8],
    floor: &mut u64,
    notes: &mut Vec<Note>,
) -> io::Result<()> {
    let &Segment {
        file: shared,
        base,
        next_base,
        epoch,
    } = segment;
    let file: &dyn StorageFile = &**shared;
    let newest = next_base.is_none();
    let len = file.len()?;
    if newest && len <= SEGMENT_HEADER_LEN as u64 && SegmentHeader::decode(header_bytes).is_err() {
        return Ok(()); // an interrupted roll: opening removes it
    }
    // A sealed segment ends where the next begins: a file cut short is
    // padded (the padding is then skipped), one too long is cut back (no
    // reader sees past the next segment's base).
    let end = match next_base {
        Some(next) => {
            let want = segment::file_position(base, next);
            if len != want {
                file.set_len(want)?;
                let had = base + len.saturating_sub(SEGMENT_HEADER_LEN as u64);
                // Bytes past the next segment's base were never readable.
                let (from, to) = if len < want {
                    (had, next)
                } else {
                    (next, next)
                };
                notes.push((
                    from,
                    to,
                    format!("segment file was {len} bytes, not {want}: set to its length"),
                ));
            }
            next
        }
        None => base + len.saturating_sub(SEGMENT_HEADER_LEN as u64),
    };
    let mut first = [0u8; FRAME_HEADER_LEN];
    let got = file.read_full_at(&mut first, SEGMENT_HEADER_LEN as u64)?;
    let first = (got == FRAME_HEADER_LEN).then_some(first);
    let header = match SegmentHeader::decode(header_bytes) {
        Ok(h) => h,
        Err(reason) => {
            let mended = SegmentHeader::mend_one_byte(header_bytes, base, Some(epoch))
                .map(|h| (h, "mended"))
                .or_else(|| {
                    // Several bytes were hit: trust the salt only once a frame
                    // verifies with it, and not the floor at all (the
                    // previous segment's newest timestamp is the floor).
                    let mut h = SegmentHeader::resum(header_bytes, base, Some(epoch))?;
                    h.timestamp_floor_ms = *floor;
                    salt_fits(shared, &h, end, 1).then_some((h, "given a new checksum"))
                })
                .or_else(|| {
                    // A solved salt makes the first frame's header verify by
                    // construction: a second frame must confirm it.
                    let salt = first.as_ref().and_then(|f| segment::solve_salt(f))?;
                    let h = SegmentHeader {
                        epoch,
                        base_offset: base,
                        timestamp_floor_ms: *floor,
                        frame_salt: salt,
                    };
                    salt_fits(shared, &h, end, 2)
                        .then_some((h, "rebuilt, its salt solved from the first frame"))
                });
            match mended {
                Some((h, how)) => {
                    file.write_all_at(&h.encode(), 0)?;
                    notes.push((base, base, format!("segment header {how} ({reason})")));
                    h
                }
                None => {
                    // The salt is lost: nothing in the segment can be verified.
                    let h = SegmentHeader {
                        epoch,
                        base_offset: base,
                        timestamp_floor_ms: *floor,
                        frame_salt: fastrand::u32(..),
                    };
                    file.write_all_at(&h.encode(), 0)?;
                    if newest && end - base < FRAME_HEADER_LEN as u64 {
                        // Too short for a frame: a torn tail, cut.
                        file.set_len(SEGMENT_HEADER_LEN as u64)?;
                    } else if end > base {
                        write_skip(file, &h, base, end, *floor)?;
                    }
                    file.sync_data()?;
                    notes.push((base, end, format!("segment header beyond mending ({reason}): the whole segment is skipped")));
                    return Ok(());
                }
            }
        }
    };
    let mut last_ts = (*floor).max(header.timestamp_floor_ms);
    let mut scanner = FrameScanner::new(shared.clone(), &header, base, end, 4 << 20);
    loop {
        match scanner.next()? {
            Scan::End => break,
            Scan::Frame(f) => last_ts = last_ts.max(f.header.timestamp_ms),
            Scan::Bad { offset, reason } => {
                let after = offset + FRAME_HEADER_LEN as u64;
                match segment::find_next_frame(shared, &header, after, end)? {
                    None if newest => {
                        file.set_len(segment::file_position(base, offset))?;
                        notes.push((offset, end, format!("torn tail cut ({reason})")));
                        break;
                    }
                    None => {
                        write_skip(file, &header, offset, end, last_ts)?;
                        notes.push((
                            offset,
                            end,
                            format!("skipped to the end of the segment ({reason})"),
                        ));
                        break;
                    }
                    Some(resume) => {
                        write_skip(file, &header, offset, resume, last_ts)?;
                        notes.push((offset, resume, format!("skipped ({reason})")));
                        scanner = FrameScanner::new(shared.clone(), &header, resume, end, 4 << 20);
                    }
                }
            }
        }
    }
    file.sync_data()?;
    *floor = last_ts;
    Ok(())
}

/// Whether `header`'s salt is the segment's: its first `frames` frames (1 or
/// 2) verify whole. An empty segment has nothing to verify and nothing to lose.
fn salt_fits(file: &Arc<dyn StorageFile>, header: &SegmentHeader, end: u64, frames: usize) -> bool {
    let base = header.base_offset;
    if end <= base {
        return true;
    }
    let mut scanner = FrameScanner::new(file.clone(), header, base, end, 1 << 20);
    (0..frames).all(|_| matches!(scanner.next(), Ok(Scan::Frame(_))))
}

/// Covers `[from, to)` of a segment with skip frames whose payload is what
/// is there now (at least one frame header's worth of bytes).
fn write_skip(
    file: &dyn StorageFile,
    header: &SegmentHeader,
    mut from: u64,
    to: u64,
    timestamp_ms: u64,
) -> io::Result<()> {
    let header_len = FRAME_HEADER_LEN as u64;
    if to - from < header_len {
        return Err(io::Error::other(format!(
            "{} damaged bytes at offset {from} are too few to mark",
            to - from
        )));
    }
    while from < to {
        let mut len = (to - from).min(header_len + FRAME_PAYLOAD_MAX_BYTES as u64);
        // Leave the rest long enough for a frame of its own.
        if to - from - len != 0 && to - from - len < header_len {
            len -= header_len;
        }
        let mut payload = vec![0u8; (len - header_len) as usize];
        let n = file.read_full_at(
            &mut payload,
            segment::file_position(header.base_offset, from + header_len),
        )?;
        payload.truncate(n);
        payload.resize((len - header_len) as usize, 0);
        // Stale frame headers inside (a frame whose payload was damaged) must
        // not pass for positions: break their magic.
        let mut i = 0;
        while let Some(at) = payload[i..].windows(4).position(|w| w == FRAME_MAGIC) {
            payload[i + at..i + at + 4].fill(0);
            i += at + 4;
        }
        let skip = FrameHeader {
            kind: FrameKind::Skip,
            record_count: 0,
            payload_len: payload.len() as u32,
            timestamp_ms,
            payload_crc: crc32c::crc32c(&payload),
        };
        let position = segment::file_position(header.base_offset, from);
        file.write_all_at(&skip.encode(header.frame_salt), position)?;
        file.write_all_at(&payload, position + header_len)?;
        from += len;
    }
    Ok(())
}
