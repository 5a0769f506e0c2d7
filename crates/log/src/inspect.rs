//! Offline inspection of a data directory: `sluice ctl check` and `ctl dump`.
//!
//! Reads files directly (never through a running [`crate::Log`]) and never writes.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::frame::{self, FrameKind};
use crate::segment::{self, FrameScanner, Scan, SegmentHeader, SEGMENT_HEADER_LEN};
use crate::storage::{OsStorage, Storage};
use crate::{sequence, ShardLogId};

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
    /// The newest segment of its shard log: a problem there is a torn tail that
    /// the next open cuts off; anywhere else it is corruption.
    pub newest: bool,
}

#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    pub shards: usize,
    pub segments: Vec<SegmentReport>,
}

impl CheckReport {
    /// Problems that recovery would not repair.
    pub fn corruptions(&self) -> impl Iterator<Item = &SegmentReport> {
        self.segments
            .iter()
            .filter(|s| s.problem.is_some() && !s.newest)
    }

    pub fn torn_tails(&self) -> impl Iterator<Item = &SegmentReport> {
        self.segments
            .iter()
            .filter(|s| s.problem.is_some() && s.newest)
    }
}

/// Verifies every frame of every segment under the data directory `root`.
pub fn check(root: &Path) -> io::Result<CheckReport> {
    let mut report = CheckReport::default();
    for (_, dir) in shard_dirs(root)? {
        report.shards += 1;
        let bases = segment_bases(&dir)?;
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
            };
            let mut closed = false;
            let end = visit_segment(&seg.path.clone(), &mut |event| match event {
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
                    ..
                } => {
                    if closed {
                        seg.problem
                            .get_or_insert("a frame follows the close frame".into());
                    }
                    closed |= kind == FrameKind::Close;
                    seg.frames += 1;
                    seg.records += records.len() as u64;
                    seg.bytes += bytes;
                }
                Visit::Bad { offset, reason } => {
                    seg.problem
                        .get_or_insert(format!("offset {offset}: {reason}"));
                }
            })?;
            if let Some((epoch, end)) = end {
                expected_base = Some((epoch, end));
            }
            report.segments.push(seg);
        }
    }
    Ok(report)
}

/// Prints every shard log, segment, frame and record under `root`.
pub fn dump(root: &Path, out: &mut dyn Write, preview_bytes: usize) -> io::Result<()> {
    for (id, dir) in shard_dirs(root)? {
        writeln!(out, "shard log {id} ({})", dir.display())?;
        for base in segment_bases(&dir)? {
            let path = segment::segment_path(&dir, base);
            let mut epoch = 0;
            let mut failed = None;
            visit_segment(&path, &mut |event| {
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
                    Visit::Bad { offset, reason } => {
                        format!("    INVALID at offset {offset}: {reason}")
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
    },
    Bad {
        offset: u64,
        reason: String,
    },
}

/// Walks one segment; returns (epoch, logical end) when its header is valid.
fn visit_segment(path: &Path, visit: &mut dyn FnMut(Visit<'_>)) -> io::Result<Option<(u64, u64)>> {
    let file = OsStorage.open_file(path)?;
    let header = match SegmentHeader::read_from(&*file)? {
        Ok(h) => h,
        Err(reason) => {
            visit(Visit::Bad {
                offset: 0,
                reason: format!("segment header: {reason}"),
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
        });
        return Ok(None);
    }
    let end = header
        .base_offset
        .saturating_add(len.saturating_sub(SEGMENT_HEADER_LEN as u64));
    let mut scanner =
        FrameScanner::new(Arc::clone(&file), &header, header.base_offset, end, 4 << 20);
    loop {
        match scanner.next()? {
            Scan::End => break,
            Scan::Bad { offset, reason } => {
                visit(Visit::Bad {
                    offset,
                    reason: reason.to_string(),
                });
                break;
            }
            Scan::Frame(f) => match frame::decode_records(&f.header, &f.payload) {
                Ok(records) => visit(Visit::Frame {
                    offset: f.offset,
                    kind: f.header.kind,
                    timestamp_ms: f.header.timestamp_ms,
                    bytes: records.iter().map(|r| r.data.len() as u64).sum(),
                    records: &records,
                }),
                Err(reason) => {
                    visit(Visit::Bad {
                        offset: f.offset,
                        reason: reason.to_string(),
                    });
                    break;
                }
            },
        }
    }
    Ok(Some((header.epoch, end)))
}

fn shard_dirs(root: &Path) -> io::Result<Vec<(ShardLogId, PathBuf)>> {
    let shards = root.join("shards");
    // A data directory whose first open was interrupted has no shards/ yet.
    if root.is_dir() && !shards.exists() {
        return Ok(Vec::new());
    }
    let mut dirs: Vec<_> = OsStorage
        .list_dir(&shards)?
        .into_iter()
        .filter_map(|n| ShardLogId::parse_dir_name(&n).map(|id| (id, shards.join(n))))
        .collect();
    dirs.sort();
    Ok(dirs)
}

fn segment_bases(dir: &Path) -> io::Result<Vec<u64>> {
    let mut bases: Vec<u64> = OsStorage
        .list_dir(dir)?
        .iter()
        .filter_map(|n| segment::parse_segment_file_name(n))
        .collect();
    bases.sort_unstable();
    Ok(bases)
}
