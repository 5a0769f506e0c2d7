//! The files of a flow: found by pattern, known by device and inode (so a
//! renamed file is the same file), read through an open handle (so a file
//! renamed away or deleted is still read to its end), and split into
//! records at their byte offsets.
//!
//! Rotation:
//! - rename and create: the old inode keeps its offset under its new name
//!   (or none, if the pattern no longer matches it: the handle reads it to
//!   its end); the new file is new and read from its start;
//! - copytruncate: the file gets shorter than what was read. If a new file
//!   starts with the bytes the old one started with (the copy), reading goes
//!   on in the copy from where it was, and the truncated file is read from
//!   its start.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Device and inode.
pub type FileId = (u64, u64);

/// How many first bytes identify a file's content.
pub const HEAD_BYTES: usize = 1024;

/// The files in `pattern`'s directory whose names match its last
/// component (`*` any run of characters, `?` one character).
pub fn matching(pattern: &str) -> Vec<PathBuf> {
    let path = Path::new(pattern);
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| glob(name.as_bytes(), n.as_bytes()))
        })
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// Whether `name` matches `pattern` (`*` and `?`).
pub fn glob(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while n < name.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == name[n]) {
            p += 1;
            n += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some(p);
            mark = n;
            p += 1;
        } else if let Some(s) = star {
            p = s + 1;
            mark += 1;
            n = mark;
        } else {
            return false;
        }
    }
    while p < pattern.len() && pattern[p] == b'*' {
        p += 1;
    }
    p == pattern.len()
}

pub fn id_of(meta: &std::fs::Metadata) -> FileId {
    (meta.dev(), meta.ino())
}

/// The SHA-256 of a file's first `len` bytes (fewer if it is shorter).
pub fn head(file: &mut File, len: usize) -> std::io::Result<(usize, [u8; 32])> {
    let mut buf = vec![0; len];
    file.seek(SeekFrom::Start(0))?;
    let mut got = 0;
    while got < len {
        let n = file.read(&mut buf[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok((got, Sha256::digest(&buf[..got]).into()))
}

/// What of a file is acknowledged: everything below `next`, and ranges
/// beyond it (acknowledged out of order) until the gap closes.
#[derive(Debug, Default, Clone)]
pub struct Acks {
    pub next: u64,
    ranges: BTreeMap<u64, u64>,
}

impl Acks {
    pub fn at(offset: u64) -> Self {
        Self {
            next: offset,
            ranges: BTreeMap::new(),
        }
    }

    /// Bytes `start..end` are acknowledged (or need none: skipped headers).
    pub fn ack(&mut self, start: u64, end: u64) {
        if end <= self.next {
            return;
        }
        self.ranges.insert(start.max(self.next), end);
        while let Some((&s, &e)) = self.ranges.first_key_value() {
            if s > self.next {
                break;
            }
            self.next = self.next.max(e);
            self.ranges.pop_first();
        }
    }
}

/// One record cut from a file: its bytes and where they were.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    pub start: u64,
    pub end: u64,
    pub data: Vec<u8>,
}

/// Splits what is read of a file into records: lines, or with a start
/// pattern, runs of lines that begin with a matching line. Header lines are
/// skipped (and acknowledged at once).
#[derive(Debug)]
pub struct Splitter {
    /// Bytes read but not yet cut, starting at file offset `at`.
    buf: Vec<u8>,
    at: u64,
    headers_left: u64,
}

impl Splitter {
    pub fn new(at: u64, headers: u64) -> Self {
        Self {
            buf: Vec::new(),
            at,
            headers_left: if at == 0 { headers } else { 0 },
        }
    }

    /// Where the next byte read goes in the file.
    pub fn read_to(&self) -> u64 {
        self.at + self.buf.len() as u64
    }

    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Cuts the complete records; with `eof` (nothing more will come) the
    /// rest too. Skipped header ranges come back as `skipped`.
    pub fn cut(
        &mut self,
        start_pattern: Option<&regex::bytes::Regex>,
        eof: bool,
        max_record: usize,
        out: &mut Vec<Cut>,
        skipped: &mut Vec<(u64, u64)>,
    ) {
        let mut pos = 0;
        // Lines: (start, end incl. newline) within buf.
        let mut record_start: Option<usize> = None;
        while let Some(i) = self.buf[pos..].iter().position(|&b| b == b'\n') {
            let line_end = pos + i + 1;
            if self.headers_left > 0 {
                self.headers_left -= 1;
                skipped.push((self.at + pos as u64, self.at + line_end as u64));
                pos = line_end;
                continue;
            }
            match start_pattern {
                None => {
                    out.push(self.record(pos, line_end));
                }
                Some(re) => {
                    let line = &self.buf[pos..line_end];
                    let line = line.strip_suffix(b"\n").unwrap_or(line);
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    if re.is_match(line) {
                        if let Some(s) = record_start.take() {
                            out.push(self.record(s, pos));
                        }
                        record_start = Some(pos);
                    } else if record_start.is_none() {
                        // Lines before any start line: a record of their own.
                        record_start = Some(pos);
                    }
                    // A record that grows past what a record can be is cut
                    // here (and truncated when sent).
                    if let Some(s) = record_start {
                        if line_end - s > max_record {
                            out.push(self.record(s, line_end));
                            record_start = None;
                        }
                    }
                }
            }
            pos = line_end;
        }
        // With a start pattern, the open record waits for the next start
        // line, unless nothing more will come.
        let keep_from = match record_start {
            Some(s) if !eof => s,
            Some(s) => {
                let end = self.buf.len();
                if end > s {
                    out.push(self.record(s, end));
                }
                end
            }
            None if eof && pos < self.buf.len() => {
                let end = self.buf.len();
                out.push(self.record(pos, end));
                end
            }
            None => pos,
        };
        // A line longer than a record: cut it where it is.
        let keep_from = if self.buf.len() - keep_from > max_record.max(1) * 2 {
            let end = keep_from + max_record;
            out.push(self.record(keep_from, end));
            end
        } else {
            keep_from
        };
        self.buf.drain(..keep_from);
        self.at += keep_from as u64;
    }

    fn record(&self, start: usize, end: usize) -> Cut {
        Cut {
            start: self.at + start as u64,
            end: self.at + end as u64,
            data: self.buf[start..end].to_vec(),
        }
    }
}

/// A record's data as sent, as the agent sends it (line ending and all):
/// longer than `max`, it is cut to `max` bytes whose last are `terminator`.
pub fn truncate(mut data: Vec<u8>, max: usize, terminator: &[u8]) -> Vec<u8> {
    if data.len() > max {
        data.truncate(max);
        let at = max.saturating_sub(terminator.len());
        data.truncate(at);
        data.extend_from_slice(terminator);
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob(b"app.log*", b"app.log"));
        assert!(glob(b"app.log*", b"app.log.1"));
        assert!(!glob(b"app.log*", b"app.lo"));
        assert!(glob(b"*.log", b"x.log"));
        assert!(glob(b"a?c", b"abc"));
        assert!(!glob(b"a?c", b"ac"));
        assert!(glob(b"*a*b*", b"xxaybzz"));
        assert!(!glob(b"*a*b", b"xxaybzz"));
    }

    #[test]
    fn acks_advance_over_what_is_contiguous() {
        let mut a = Acks::at(10);
        a.ack(20, 30);
        assert_eq!(a.next, 10);
        a.ack(10, 20);
        assert_eq!(a.next, 30);
        a.ack(0, 5);
        assert_eq!(a.next, 30);
        a.ack(40, 50);
        a.ack(30, 40);
        assert_eq!(a.next, 50);
    }

    fn cut_all(
        s: &mut Splitter,
        re: Option<&regex::bytes::Regex>,
        eof: bool,
    ) -> (Vec<String>, Vec<(u64, u64)>) {
        let (mut out, mut skipped) = (Vec::new(), Vec::new());
        s.cut(re, eof, 1000, &mut out, &mut skipped);
        (
            out.into_iter()
                .map(|c| format!("{}-{}:{}", c.start, c.end, String::from_utf8_lossy(&c.data)))
                .collect(),
            skipped,
        )
    }

    #[test]
    fn lines_headers_and_partial_lines() {
        let mut s = Splitter::new(0, 1);
        s.push(b"header\none\ntw");
        let (out, skipped) = cut_all(&mut s, None, false);
        assert_eq!(out, ["7-11:one\n"]);
        assert_eq!(skipped, [(0, 7)]);
        s.push(b"o\n");
        assert_eq!(cut_all(&mut s, None, false).0, ["11-15:two\n"]);
        s.push(b"last");
        assert!(cut_all(&mut s, None, false).0.is_empty());
        assert_eq!(cut_all(&mut s, None, true).0, ["15-19:last"]);
    }

    #[test]
    fn multi_line_records() {
        let re = regex::bytes::Regex::new(r"^\[").unwrap();
        let mut s = Splitter::new(0, 0);
        s.push(b"orphan\n[1] a\n  at x\n[2] b\n");
        assert_eq!(
            cut_all(&mut s, Some(&re), false).0,
            ["0-7:orphan\n", "7-20:[1] a\n  at x\n"]
        );
        // A start line is known once it is a whole line.
        s.push(b"  at y\n[3]");
        assert!(cut_all(&mut s, Some(&re), false).0.is_empty());
        s.push(b"\n");
        assert_eq!(
            cut_all(&mut s, Some(&re), false).0,
            ["20-33:[2] b\n  at y\n"]
        );
        assert_eq!(cut_all(&mut s, Some(&re), true).0, ["33-37:[3]\n"]);
    }

    #[test]
    fn truncation_ends_in_the_terminator() {
        assert_eq!(truncate(b"abcdef\n".to_vec(), 4, b"\n"), b"abc\n");
        assert_eq!(truncate(b"abc\r\n".to_vec(), 5, b"\n"), b"abc\r\n");
        assert_eq!(truncate(b"abcdef".to_vec(), 5, b"..."), b"ab...");
    }
}
