//! Replay: walking the journal from a checkpoint's start along its chain
//! of files, an entry at a time (a torn tail ends it; damage fails it unless
//! the operator cuts there), then a fresh chain.

use super::*;

impl Journal {
    /// Walks the entries from `replay_from` along the chain to the journal's
    /// end, handing each to `visit` in order (one at a time: the journal is
    /// never held in memory). The end is a torn tail, or `stop_at` (an end an
    /// earlier walk found). Damage fails the walk, unless `cut_at_damage`
    /// (the operator's say): then the walk ends there, as at a torn tail,
    /// and says where. Changes nothing; see [`Journal::start_fresh`].
    pub fn walk(
        &self,
        replay_from: u64,
        cut_at_damage: bool,
        stop_at: Option<u64>,
        visit: &mut dyn FnMut(ReadEntry) -> io::Result<()>,
    ) -> io::Result<Result<Walked, JournalDamage>> {
        let st = self.state.lock().unwrap();
        let all = &st.chain;
        // The chain: the file holding `replay_from`, then each file starting
        // where the previous one ends.
        let by_start: HashMap<u64, usize> = all
            .iter()
            .enumerate()
            .filter(|(_, f)| f.salt != 0)
            .map(|(i, f)| (f.start, i))
            .collect();
        let mut chain_idx = Vec::new();
        if let Some((i, _)) = all
            .iter()
            .enumerate()
            .find(|(_, f)| f.salt != 0 && f.start <= replay_from && replay_from < f.end())
        {
            chain_idx.push(i);
            while let Some(&next) = by_start.get(&all[*chain_idx.last().unwrap()].end()) {
                if chain_idx.contains(&next) {
                    break;
                }
                chain_idx.push(next);
            }
        }
        let mut walked = Walked::default();
        let mut lsn = replay_from.max(
            chain_idx
                .first()
                .map_or(0, |&i| all[i].start + FILE_HEADER_LEN),
        );
        'files: for (n, &i) in chain_idx.iter().enumerate() {
            let f = &all[i];
            if lsn < f.start + FILE_HEADER_LEN {
                lsn = f.start + FILE_HEADER_LEN;
            }
            let mut reader = ChunkReader::new(f.file.clone(), f.len);
            loop {
                if stop_at.is_some_and(|end| lsn >= end) {
                    break 'files;
                }
                let pos = lsn - f.start;
                if pos + ENTRY_HEADER_LEN as u64 > f.len {
                    lsn = f.end();
                    continue 'files;
                }
                let header = reader.read(pos, ENTRY_HEADER_LEN)?;
                let bad = |reason: &str| (pos, reason.to_owned());
                let outcome = match decode_entry_header(&header, f.salt, lsn) {
                    None => Err(bad("entry header fails its checksum")),
                    Some(h) if h.kind == KIND_NEXT_FILE => {
                        lsn = f.end();
                        continue 'files;
                    }
                    Some(h) if pos + ENTRY_HEADER_LEN as u64 + u64::from(h.body_len) > f.len => {
                        Err(bad("entry runs past the end of its file"))
                    }
                    Some(h) => {
                        let body =
                            reader.read(pos + ENTRY_HEADER_LEN as u64, h.body_len as usize)?;
                        if crc32c::crc32c(&body) != h.body_crc {
                            Err(bad("entry body fails its checksum"))
                        } else {
                            Ok((h, body))
                        }
                    }
                };
                match outcome {
                    Ok((h, body)) => {
                        let len = ENTRY_HEADER_LEN as u64 + body.len() as u64;
                        walked.entries += 1;
                        walked.bytes += len;
                        lsn += len;
                        visit(ReadEntry {
                            shard: h.shard,
                            segment_base: h.segment_base,
                            segment_salt: h.segment_salt,
                            offset: h.offset,
                            body,
                        })?;
                    }
                    Err((pos, reason)) => {
                        if stop_at.is_some() {
                            // Before the end an earlier walk found: the bytes
                            // changed between the walks.
                            return Err(io::Error::other(format!(
                                "{} at byte {pos}: {reason}, where an earlier read found a valid entry",
                                self.dir.join(file_name(f.index)).display()
                            )));
                        }
                        // A torn tail unless a later entry says the journal was
                        // durable past this point.
                        let later = chain_idx[n..].iter().map(|&j| &all[j]);
                        if let Some(proof) = find_durable_after(later, lsn)? {
                            let damage = JournalDamage {
                                file: self.dir.join(file_name(f.index)),
                                position: pos,
                                reason: format!(
                                    "{reason}, yet a later entry at LSN {proof} was written after the journal was durable past it"
                                ),
                            };
                            if !cut_at_damage {
                                return Ok(Err(damage));
                            }
                            walked.cut = Some(damage);
                        }
                        break 'files;
                    }
                }
            }
        }
        walked.end = lsn;
        Ok(Ok(walked))
    }

    /// After replay: a fresh chain starts after every file that has ever
    /// held entries, so that no stale file can be taken for part of it.
    pub fn start_fresh(&self) {
        let mut st = self.state.lock().unwrap();
        let all = std::mem::take(&mut st.chain);
        let fresh_start = all
            .iter()
            .filter(|f| f.salt != 0)
            .map(|f| f.end())
            .max()
            .unwrap_or(0);
        // Files that hold entries stay in the chain (ahead of the fresh one)
        // until the checkpoint naming the fresh start is durable: `trim`
        // then lets them go. Reusing one before that could destroy what the
        // previous checkpoint still needs.
        let (mut used, spares): (Vec<JFile>, Vec<JFile>) =
            all.into_iter().partition(|f| f.salt != 0);
        used.sort_by_key(|f| f.start);
        st.spares = spares;
        st.chain = used;
        st.write_lsn = fresh_start;
        self.written_lsn.store(fresh_start, Ordering::SeqCst);
        self.synced_lsn.store(fresh_start, Ordering::SeqCst);
        st.checkpointed_lsn = fresh_start;
    }

    /// Walks the whole journal into memory, then starts fresh (tests).
    #[cfg(test)]
    pub fn replay(
        &self,
        replay_from: u64,
        cut_at_damage: bool,
    ) -> io::Result<Result<Replay, JournalDamage>> {
        let mut entries = Vec::new();
        let walked = self.walk(replay_from, cut_at_damage, None, &mut |e| {
            entries.push(e);
            Ok(())
        })?;
        if let Err(damage) = walked {
            return Ok(Err(damage));
        }
        self.start_fresh();
        Ok(Ok(Replay { entries }))
    }
}

/// Looks past a bad entry for one that proves the bad one was durable: a
/// valid entry whose `synced_before` lies beyond `bad_lsn`. Returns its LSN.
pub(super) fn find_durable_after<'a>(
    files: impl Iterator<Item = &'a JFile>,
    bad_lsn: u64,
) -> io::Result<Option<u64>> {
    for f in files {
        // Past the bad entry's first byte in its own file; from the first
        // entry in the files after it.
        let mut pos = if bad_lsn >= f.start {
            bad_lsn - f.start + 1
        } else {
            FILE_HEADER_LEN
        };
        let mut reader = ChunkReader::new(f.file.clone(), f.len);
        while pos + ENTRY_HEADER_LEN as u64 <= f.len {
            let window = reader.read_available(pos, READ_CHUNK)?;
            if window.len() < ENTRY_HEADER_LEN {
                break;
            }
            let mut i = 0;
            while let Some(k) = window[i..].windows(4).position(|w| w == ENTRY_MAGIC) {
                let at = i + k;
                if at + ENTRY_HEADER_LEN > window.len() {
                    break;
                }
                let lsn = f.start + pos + at as u64;
                if let Some(h) = decode_entry_header(&window[at..], f.salt, lsn) {
                    if h.synced_before > bad_lsn {
                        return Ok(Some(lsn));
                    }
                }
                i = at + 1;
            }
            // Overlap the windows so that a header across their border is seen.
            pos += (window.len() - (ENTRY_HEADER_LEN - 1)).max(1) as u64;
        }
    }
    Ok(None)
}

/// Sequential reads of a file through one large buffer.
pub(super) struct ChunkReader {
    file: Arc<dyn StorageFile>,
    len: u64,
    buf: Vec<u8>,
    at: u64,
}

impl ChunkReader {
    fn new(file: Arc<dyn StorageFile>, len: u64) -> Self {
        Self {
            file,
            len,
            buf: Vec::new(),
            at: 0,
        }
    }

    /// Exactly `n` bytes at `pos` (fewer only at the end of the file).
    fn read(&mut self, pos: u64, n: usize) -> io::Result<Vec<u8>> {
        if n > READ_CHUNK {
            let mut out = vec![0u8; n];
            let got = self.file.read_full_at(&mut out, pos)?;
            out.truncate(got);
            return Ok(out);
        }
        let have = pos >= self.at && pos + n as u64 <= self.at + self.buf.len() as u64;
        if !have {
            self.fill(pos)?;
        }
        let from = (pos - self.at) as usize;
        let to = (from + n).min(self.buf.len());
        Ok(self.buf[from.min(to)..to].to_vec())
    }

    /// Up to `n` bytes from `pos`, as many as the buffer holds after a fill.
    fn read_available(&mut self, pos: u64, n: usize) -> io::Result<&[u8]> {
        let have = pos >= self.at && pos + n as u64 <= self.at + self.buf.len() as u64;
        if !have {
            self.fill(pos)?;
        }
        let from = ((pos - self.at) as usize).min(self.buf.len());
        let to = (from + n).min(self.buf.len());
        Ok(&self.buf[from..to])
    }

    fn fill(&mut self, pos: u64) -> io::Result<()> {
        let want = (self.len.saturating_sub(pos)).min(READ_CHUNK as u64) as usize;
        self.buf.resize(want, 0);
        let got = self.file.read_full_at(&mut self.buf, pos)?;
        self.buf.truncate(got);
        self.at = pos;
        Ok(())
    }
}
