//! Offline inspection of a data directory: `sluice ctl check`, `ctl dump` and
//! `ctl repair`.
//!
//! Reads files directly (never through a running [`crate::Log`]); only
//! [`repair`] writes, and only when asked.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::frame::{
    self, FrameHeader, FrameKind, FRAME_HEADER_LEN, FRAME_MAGIC, FRAME_PAYLOAD_MAX_BYTES,
};
use crate::journal::Journal;
use crate::segment::{self, FrameScanner, Scan, SegmentHeader, SEGMENT_HEADER_LEN};
use crate::storage::{OsStorage, Storage, StorageFile};
use crate::{sequence, ShardLogId};

/// The storage engine's directory inside `dir`: `dir` itself if it holds
/// `shards/`, else `dir/log` when `dir` is a server's data directory (it holds
/// `catalog.json` or `log/`). Anything else is refused, so that a wrong path
/// never passes a check for want of files to check.
pub fn log_root(dir: &Path) -> io::Result<PathBuf> {
    if !dir.exists() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} does not exist", dir.display()),
        ));
    }
    if dir.join("shards").is_dir() {
        return Ok(dir.to_path_buf());
    }
    if dir.join("log").is_dir() || dir.join("catalog.json").is_file() {
        return Ok(dir.join("log"));
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!(
            "{} is not a Sluice data directory (it holds no catalog.json, log/ or shards/)",
            dir.display()
        ),
    ))
}

/// What `check` found in one segment file.
#[derive(Debug, Clone)]
pub struct SegmentReport {
    pub path: PathBuf,
    pub base_offset: u64,
    pub frames: u64,
    pub records: u64,
    pub bytes: u64,
    /// The first problem, if any.
    pub problem: Option<String>,
    /// The newest segment of its shard log.
    pub newest: bool,
    /// The problem is a torn tail (bad bytes at the end of the newest
    /// segment with no valid frame after them), which the next open cuts off.
    /// Any other problem is damage: the server quarantines the shard log.
    pub torn: bool,
    /// Bytes marked skipped by an earlier repair.
    pub skipped_bytes: u64,
}

#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    pub shards: usize,
    pub segments: Vec<SegmentReport>,
    /// Frames (and bytes) in the journal since the last checkpoint: the next
    /// start replays them into their segments.
    pub journal_entries: u64,
    pub journal_bytes: u64,
}

impl CheckReport {
    /// Problems that recovery would not repair.
    pub fn corruptions(&self) -> impl Iterator<Item = &SegmentReport> {
        self.segments
            .iter()
            .filter(|s| s.problem.is_some() && !s.torn)
    }

    pub fn torn_tails(&self) -> impl Iterator<Item = &SegmentReport> {
        self.segments
            .iter()
            .filter(|s| s.problem.is_some() && s.torn)
    }
}

/// Verifies every frame of every segment under the log directory `root`
/// (see [`log_root`]), and the journal's entries after its checkpoint. The
/// newest segment of a shard log is verified up to where the checkpoint
/// says it ends: what follows is replayed from the journal at the next open.
pub fn check(root: &Path) -> io::Result<CheckReport> {
    let storage = OsStorage;
    let mut report = CheckReport::default();
    let journal_dir = root.join("journal");
    let mut checkpointed: std::collections::HashMap<u64, (u64, u32, u64)> = Default::default();
    if journal_dir.is_dir() {
        let journal = Journal::open(Arc::new(OsStorage), journal_dir.clone(), 1 << 20)?;
        if let Some(cp) = journal.read_checkpoint()? {
            for e in &cp.entries {
                checkpointed.insert(e.shard, (e.segment_base, e.segment_salt, e.end));
            }
            let replayed = journal.walk(cp.replay_from, false, None, &mut |_| Ok(()))?;
            if let Ok(r) = &replayed {
                report.journal_entries = r.entries;
                report.journal_bytes = r.bytes;
            }
            if let Err(damage) = replayed {
                report.segments.push(SegmentReport {
                    path: damage.file.clone(),
                    base_offset: 0,
                    frames: 0,
                    records: 0,
                    bytes: 0,
                    problem: Some(format!("journal damage: {damage}")),
                    newest: false,
                    torn: false,
                    skipped_bytes: 0,
                });
            }
        }
    }
    for (id, dir) in shard_dirs(&storage, root)? {
        report.shards += 1;
        let bases = segment_bases(&storage, &dir)?;
        let mut expected_base: Option<(u64, u64)> = None; // (epoch, base)
        for (i, &base) in bases.iter().enumerate() {
            let mut seg = SegmentReport {
                path: segment::segment_path(&dir, base),
                base_offset: base,
                frames: 0,
                records: 0,
                bytes: 0,
                problem: None,
                newest: i + 1 == bases.len(),
                torn: false,
                skipped_bytes: 0,
            };
            let newest = seg.newest;
            let mut closed = false;
            // The newest segment: up to its checkpointed end, if the directory has a journal.
            let until = match (newest, checkpointed.get(&id.0)) {
                (false, _) => None,
                (true, Some(&(cp_base, _, end))) if cp_base == base => Some(end),
                (true, _) if !checkpointed.is_empty() => Some(base),
                (true, _) => None,
            };
            let end = visit_segment(
                &storage,
                &seg.path.clone(),
                until,
                &mut |event| match event {
                    Visit::Header(h) => {
                        if let Some((epoch, want)) = expected_base {
                            if h.epoch != epoch || h.base_offset != want {
                                seg.problem.get_or_insert(format!(
                                "header says epoch {} base {}; expected epoch {epoch} base {want}",
                                h.epoch, h.base_offset
                            ));
                            }
                        }
                    }
                    Visit::Frame {
                        kind,
                        records,
                        bytes,
                        frame_len,
                        ..
                    } => {
                        if closed && seg.problem.is_none() {
                            // Opening cuts off what follows a close frame in the newest segment.
                            seg.torn = newest;
                            seg.problem = Some("a frame follows the close frame".into());
                        }
                        closed |= kind == FrameKind::Close;
                        seg.frames += 1;
                        seg.records += records.len() as u64;
                        seg.bytes += bytes;
                        if kind == FrameKind::Skip {
                            seg.skipped_bytes += frame_len;
                        }
                    }
                    Visit::Bad {
                        offset,
                        reason,
                        valid_after,
                    } => {
                        if seg.problem.is_none() {
                            // Only the newest segment can be torn by a crash, and
                            // only where nothing valid follows.
                            seg.torn = newest && !valid_after;
                            let at = match offset {
                                // Header problems are reported at offset 0 of the file.
                                0 if reason.starts_with("segment header") => {
                                    "the header".to_owned()
                                }
                                _ => format!(
                                    "log offset {offset} (byte {} of this file)",
                                    segment::file_position(base, offset)
                                ),
                            };
                            seg.problem = Some(match valid_after {
                                true => {
                                    format!("{at}: {reason}; valid frames follow (not counted)")
                                }
                                false => format!("{at}: {reason}"),
                            });
                        }
                    }
                },
            )?;
            if let Some((epoch, end)) = end {
                expected_base = Some((epoch, end));
            }
            report.segments.push(seg);
        }
    }
    Ok(report)
}

/// Prints every shard log, segment, frame and record under `root`.
/// `names` says what each shard log is (its stream and shard), where known.
pub fn dump(
    root: &Path,
    out: &mut dyn Write,
    preview_bytes: usize,
    names: &std::collections::HashMap<u64, String>,
) -> io::Result<()> {
    let storage = OsStorage;
    for (id, dir) in shard_dirs(&storage, root)? {
        match names.get(&id.0) {
            Some(name) => writeln!(out, "shard log {id}: {name} ({})", dir.display())?,
            None => writeln!(out, "shard log {id}: in no stream ({})", dir.display())?,
        }
        for base in segment_bases(&storage, &dir)? {
            let path = segment::segment_path(&dir, base);
            let mut epoch = 0;
            let mut failed = None;
            visit_segment(&storage, &path, None, &mut |event| {
                let line = match event {
                    Visit::Header(h) => {
                        epoch = h.epoch;
                        format!(
                            "  segment {} epoch {} base {} timestamp_floor_ms {}",
                            path.file_name().unwrap_or_default().to_string_lossy(),
                            h.epoch,
                            h.base_offset,
                            h.timestamp_floor_ms
                        )
                    }
                    Visit::Frame {
                        offset,
                        kind,
                        timestamp_ms,
                        records,
                        bytes,
                        ..
                    } => {
                        let mut s = format!(
                            "    frame offset {offset} {kind:?} timestamp_ms {timestamp_ms} records {} bytes {bytes}",
                            records.len()
                        );
                        if kind == FrameKind::Close {
                            s += &format!(" ending_sequence {}", sequence(epoch, offset, 0));
                        }
                        for (i, r) in records.iter().enumerate() {
                            let shown = &r.data[..r.data.len().min(preview_bytes)];
                            s +=
                                &format!(
                                "\n      record {} seq {} flags {} key {:?} data_len {} data {}{}",
                                i,
                                sequence(epoch, offset, i as u16),
                                r.flags,
                                String::from_utf8_lossy(&r.partition_key),
                                r.data.len(),
                                shown.iter().map(|b| format!("{b:02x}")).collect::<String>(),
                                if shown.len() < r.data.len() { "…" } else { "" },
                            );
                        }
                        s
                    }
                    Visit::Bad {
                        offset,
                        reason,
                        valid_after,
                    } => {
                        let after = if valid_after {
                            " (valid frames follow)"
                        } else {
                            ""
                        };
                        format!("    INVALID at offset {offset}: {reason}{after}")
                    }
                };
                if let Err(e) = writeln!(out, "{line}") {
                    failed.get_or_insert(e);
                }
            })?;
            if let Some(e) = failed {
                return Err(e);
            }
        }
    }
    Ok(())
}

enum Visit<'a> {
    Header(SegmentHeader),
    Frame {
        offset: u64,
        kind: FrameKind,
        timestamp_ms: u64,
        records: &'a [frame::StoredRecord],
        bytes: u64,
        frame_len: u64,
    },
    /// The scan stops here; `valid_after`: a valid frame follows in the segment.
    Bad {
        offset: u64,
        reason: String,
        valid_after: bool,
    },
}

/// Walks one segment; returns (epoch, logical end) when its header is valid.
fn visit_segment(
    storage: &dyn Storage,
    path: &Path,
    until: Option<u64>,
    visit: &mut dyn FnMut(Visit<'_>),
) -> io::Result<Option<(u64, u64)>> {
    let file = storage.open_file(path)?;
    let header = match SegmentHeader::read_from(&*file)? {
        Ok(h) => h,
        Err(reason) => {
            let interrupted = file.len()? <= SEGMENT_HEADER_LEN as u64;
            visit(Visit::Bad {
                offset: 0,
                reason: match interrupted {
                    true => format!(
                        "segment header: {reason} (an interrupted roll: the segment holds nothing)"
                    ),
                    false => format!("segment header: {reason}"),
                },
                valid_after: !interrupted,
            });
            return Ok(None);
        }
    };
    visit(Visit::Header(header));
    let len = file.len()?;
    if header.base_offset >= crate::OFFSET_LIMIT {
        visit(Visit::Bad {
            offset: 0,
            reason: format!(
                "segment header: base offset {} out of range",
                header.base_offset
            ),
            valid_after: true,
        });
        return Ok(None);
    }
    let end = header
        .base_offset
        .saturating_add(len.saturating_sub(SEGMENT_HEADER_LEN as u64));
    let end = until.map_or(end, |u| end.min(u.max(header.base_offset)));
    let mut scanner =
        FrameScanner::new(Arc::clone(&file), &header, header.base_offset, end, 4 << 20);
    let bad = |offset: u64, reason: String, visit: &mut dyn FnMut(Visit<'_>)| {
        let after = offset + FRAME_HEADER_LEN as u64;
        let valid_after = segment::find_next_frame(&file, &header, after, end)?.is_some();
        visit(Visit::Bad {
            offset,
            reason,
            valid_after,
        });
        io::Result::Ok(())
    };
    loop {
        match scanner.next()? {
            Scan::End => break,
            Scan::Bad { offset, reason } => {
                bad(offset, reason.to_string(), visit)?;
                break;
            }
            Scan::Frame(f) if f.header.kind == FrameKind::Skip => visit(Visit::Frame {
                offset: f.offset,
                kind: f.header.kind,
                timestamp_ms: f.header.timestamp_ms,
                records: &[],
                bytes: 0,
                frame_len: f.header.frame_len(),
            }),
            Scan::Frame(f) => match frame::decode_records(&f.header, &f.payload) {
                Ok(records) => visit(Visit::Frame {
                    offset: f.offset,
                    kind: f.header.kind,
                    timestamp_ms: f.header.timestamp_ms,
                    bytes: records.iter().map(|r| r.data.len() as u64).sum(),
                    records: &records,
                    frame_len: f.header.frame_len(),
                }),
                Err(reason) => {
                    bad(f.offset, reason.to_string(), visit)?;
                    break;
                }
            },
        }
    }
    Ok(Some((header.epoch, end)))
}

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

fn shard_dirs(storage: &dyn Storage, root: &Path) -> io::Result<Vec<(ShardLogId, PathBuf)>> {
    let shards = root.join("shards");
    let mut dirs: Vec<_> = match storage.list_dir(&shards) {
        Ok(names) => names,
        // A data directory whose first open was interrupted has no shards/ yet.
        Err(e) if e.kind() == io::ErrorKind::NotFound && storage.list_dir(root).is_ok() => {
            Vec::new()
        }
        // A server's data directory that has no log/ yet: nothing stored.
        Err(e) if e.kind() == io::ErrorKind::NotFound && root.ends_with("log") => Vec::new(),
        Err(e) => return Err(e),
    }
    .into_iter()
    .filter_map(|n| ShardLogId::parse_dir_name(&n).map(|id| (id, shards.join(n))))
    .collect();
    dirs.sort();
    Ok(dirs)
}

fn segment_bases(storage: &dyn Storage, dir: &Path) -> io::Result<Vec<u64>> {
    let mut bases: Vec<u64> = storage
        .list_dir(dir)?
        .iter()
        .filter_map(|n| segment::parse_segment_file_name(n))
        .collect();
    bases.sort_unstable();
    Ok(bases)
}
