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

mod repair;
pub use repair::{repair, RepairReport, Repaired};

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
