//! A shard log's lifecycle, used by `Log`: creating one, recovering it at
//! open (segments scanned, torn tails cut, damage quarantined), journal
//! replay into it, checkpoint entries, and deletion.

use super::*;

impl ShardLog {
    pub(crate) fn create(
        shared: Arc<Shared>,
        id: ShardLogId,
        dir: PathBuf,
        epoch: u64,
    ) -> Result<Self, CreateError> {
        if epoch == 0 {
            return Err(CreateError::InvalidEpoch);
        }
        // Fails if the directory exists (for example a delete that could not finish).
        shared.storage.create_dir(&dir)?;
        let log = Self::new(shared, id, dir, epoch);
        let made = log.create_segment(0, 0).and_then(|header| {
            log.lock().segments.push_back(header);
            log.shared.storage.sync_dir(&log.shared.shards_dir)
        });
        if let Err(e) = made {
            log.shared.pool.remove((log.instance, 0));
            return Err(e.into());
        }
        Ok(log)
    }

    /// Opens a shard directory; cuts off a torn tail of the newest segment
    /// (bad bytes with no valid frame after them) and quarantines the shard
    /// log on damage (bad bytes with valid frames after them, or a damaged
    /// segment header), never cutting acknowledged data. `None` if the
    /// directory holds no acknowledged shard (an interrupted create or
    /// delete), which is then removed.
    pub(crate) fn recover(
        shared: Arc<Shared>,
        id: ShardLogId,
        dir: PathBuf,
        scan: bool,
        journaled: &[u64],
    ) -> Result<Option<Self>, OpenError> {
        let storage = shared.storage.clone();
        let names = storage.list_dir(&dir).at(&dir)?;
        let mut bases: Vec<u64> = names
            .iter()
            .filter_map(|n| segment::parse_segment_file_name(n))
            .collect();
        bases.sort_unstable();
        if names.iter().any(|n| n == DELETED_MARKER) {
            remove_shard_dir(&shared, &dir).at(&dir)?;
            return Ok(None);
        }
        // The newest segment first: a header that never became durable (an
        // interrupted roll or create; the file holds nothing more) means no frames.
        let mut newest = None;
        while let Some(&base) = bases.last() {
            let path = segment::segment_path(&dir, base);
            let file = storage.open_file(&path).at(&path)?;
            match SegmentHeader::read_from(&*file).at(&path)? {
                // Frames for it in the journal: its header was durable once
                // (frames are journaled only after it is), so this is rot.
                Err(_)
                    if file.len().at(&path)? <= SEGMENT_HEADER_LEN as u64
                        && !journaled.contains(&base) =>
                {
                    // The only segment of a shard log that holds no records:
                    // a whole header that one changed byte damaged (bit rot,
                    // not an interrupted create) is rewritten, so that the
                    // empty shard log is not taken for an unfinished one.
                    if bases.len() == 1 {
                        let mut b = [0u8; SEGMENT_HEADER_LEN];
                        let n = file.read_full_at(&mut b, 0).at(&path)?;
                        if let Some(h) = SegmentHeader::mend(&b[..n], base, None) {
                            file.write_all_at(&h.encode(), 0).at(&path)?;
                            file.sync_data().at(&path)?;
                            newest = Some((base, file, Ok(h)));
                            break;
                        }
                    }
                    storage.remove_file(&path).at(&path)?;
                    storage.sync_dir(&dir).at(&dir)?;
                    bases.pop();
                }
                header => {
                    newest = Some((base, file, header));
                    break;
                }
            }
        }
        let Some((newest_base, newest_file, newest_header)) = newest else {
            remove_shard_dir(&shared, &dir).at(&dir)?;
            return Ok(None);
        };
        let newest_path = segment::segment_path(&dir, newest_base);
        let mut epoch = newest_header.as_ref().ok().map(|h| h.epoch);
        let mut older = Vec::with_capacity(bases.len());
        for &base in &bases[..bases.len() - 1] {
            let path = segment::segment_path(&dir, base);
            let file = storage.open_file(&path).at(&path)?;
            let header = SegmentHeader::read_from(&*file).at(&path)?;
            if let (Ok(h), None) = (&header, epoch) {
                epoch = Some(h.epoch);
            }
            older.push((base, path, header));
        }
        let epoch = match epoch {
            Some(epoch) => epoch,
            // Every header is damaged: the newest one, mended, still tells the epoch.
            None => {
                let mut b = [0u8; SEGMENT_HEADER_LEN];
                let n = newest_file.read_full_at(&mut b, 0).at(&newest_path)?;
                match SegmentHeader::mend(&b[..n], newest_base, None) {
                    Some(h) => h.epoch,
                    None => {
                        return Err(OpenError::CorruptSegmentHeader {
                            path: newest_path,
                            reason: newest_header.err().unwrap_or(SegmentHeaderError::Checksum),
                        })
                    }
                }
            }
        };
        // A damaged header hides its segment's salt: nothing in it can be
        // verified, so the damage starts at its base. A stand-in header keeps
        // the offsets; its floor is unknown, and the greatest one keeps
        // retention from deleting the segment before it (a floor bounds the
        // previous segment's timestamps from above).
        let stand_in = |base: u64| SegmentHeader {
            epoch,
            base_offset: base,
            timestamp_floor_ms: u64::MAX,
            frame_salt: 0,
        };
        let last_floor = |segments: &VecDeque<SegmentHeader>| {
            segments
                .iter()
                .rev()
                .map(|s| s.timestamp_floor_ms)
                .find(|&f| f != u64::MAX)
                .unwrap_or(0)
        };
        let mut damage: Option<Damage> = None;
        let mut segments = VecDeque::with_capacity(bases.len());
        for (base, path, header) in older {
            match header {
                Ok(h) => {
                    check_header(&path, &h, epoch, base)?;
                    segments.push_back(h);
                }
                Err(reason) => {
                    damage.get_or_insert(Damage {
                        epoch,
                        offset: base,
                        resume: None,
                        reason: format!("segment header: {reason}"),
                    });
                    segments.push_back(stand_in(base));
                }
            }
        }
        let file_len = newest_file.len().at(&newest_path)?;
        let logical_end = newest_base + file_len.saturating_sub(SEGMENT_HEADER_LEN as u64);
        let newest_header_damaged = newest_header.is_err();
        let newest = match newest_header {
            Ok(h) => {
                check_header(&newest_path, &h, epoch, newest_base)?;
                h
            }
            Err(reason) => {
                damage.get_or_insert(Damage {
                    epoch,
                    offset: newest_base,
                    resume: None,
                    reason: format!("segment header: {reason}"),
                });
                stand_in(newest_base)
            }
        };
        let mut last_timestamp_ms = match newest.timestamp_floor_ms {
            u64::MAX => last_floor(&segments),
            floor => floor,
        };
        segments.push_back(newest);
        if !scan {
            // The journal decides where this shard log ends: see `finish_replay`.
            let log = Self::new(shared, id, dir, epoch);
            {
                let mut st = log.lock();
                st.segments = segments;
                st.written_end = logical_end;
                st.flushed_end = logical_end;
                st.last_timestamp_ms = last_timestamp_ms;
                st.damage = damage;
                st.newest_header_damaged = newest_header_damaged;
            }
            log.shared
                .pool
                .replace((log.instance, newest_base), newest_file);
            return Ok(Some(log));
        }

        // Scan the newest segment's frames.
        let mut closed_at = None;
        // Damage in this segment: nothing in it is cut (repair decides).
        // A stand-in header is never scanned: its salt is not the segment's.
        let mut damaged_here = newest_header_damaged;
        let mut good_end = if damaged_here {
            logical_end
        } else {
            newest_base
        };
        if !damaged_here {
            let mut scanner = FrameScanner::new(
                newest_file.clone(),
                &newest,
                newest_base,
                logical_end,
                1 << 20,
            );
            loop {
                match scanner.next().at(&newest_path)? {
                    Scan::Frame(f) if closed_at.is_none() => {
                        last_timestamp_ms = last_timestamp_ms.max(f.header.timestamp_ms);
                        if f.header.kind == FrameKind::Close {
                            closed_at = Some(f.offset);
                        }
                        good_end = scanner.next_offset();
                    }
                    // Nothing may follow a close frame; anything that does is cut off.
                    Scan::Frame(_) | Scan::End => break,
                    Scan::Bad { .. } if damaged_here || closed_at.is_some() => break,
                    Scan::Bad { offset, reason } => {
                        let after = offset + FRAME_HEADER_LEN as u64;
                        let next =
                            segment::find_next_frame(&newest_file, &newest, after, logical_end)
                                .at(&newest_path)?;
                        // No valid frame after the bad bytes: a torn tail, cut below.
                        let Some(resume) = next else { break };
                        damaged_here = true;
                        damage.get_or_insert(Damage {
                            epoch,
                            offset,
                            resume: Some(resume),
                            reason: reason.to_string(),
                        });
                        // Follow the frames after the damage, to know the end.
                        scanner = FrameScanner::new(
                            newest_file.clone(),
                            &newest,
                            resume,
                            logical_end,
                            1 << 20,
                        );
                    }
                }
            }
        }
        if !damaged_here {
            let good_len = segment::file_position(newest_base, good_end);
            if good_len < file_len {
                newest_file.set_len(good_len).at(&newest_path)?;
                shared
                    .recovery_cut_bytes
                    .fetch_add(file_len - good_len, Ordering::Relaxed);
            }
        }
        // What survived a process crash may still be only in the page cache:
        // make it durable before any reader can see it.
        newest_file.sync_data().at(&newest_path)?;
        storage.sync_dir(&dir).at(&dir)?;
        let log = Self::new(shared, id, dir, epoch);
        log.progress.durable_end.store(good_end, Ordering::SeqCst);
        log.progress.visible_end.store(good_end, Ordering::SeqCst);
        {
            let mut st = log.lock();
            st.segments = segments;
            st.written_end = good_end;
            st.flushed_end = good_end;
            st.last_timestamp_ms = last_timestamp_ms;
            st.closed_at = closed_at;
            st.damage = damage;
        }
        log.shared
            .pool
            .replace((log.instance, newest_base), newest_file);
        Ok(Some(log))
    }

    /// Writes a journal entry's frame back into its segment, if the segment
    /// (same base, same salt) still exists; returns what the frame was.
    pub(crate) fn replay_entry(
        &self,
        segment_base: u64,
        segment_salt: u32,
        offset: u64,
        body: &[u8],
    ) -> io::Result<Option<FrameHeader>> {
        let st = self.lock();
        // A segment whose header is damaged stands in with salt 0: its salt is
        // unknown, so entries for its base are taken as its own (the header
        // stays damaged, and the shard log quarantined, until repair).
        let ours = st.segments.iter().any(|s| {
            s.base_offset == segment_base && (s.frame_salt == segment_salt || is_stand_in(s))
        });
        if !ours {
            return Ok(None);
        }
        let Ok(header) = FrameHeader::decode(body, segment_salt) else {
            return Ok(None);
        };
        if offset < segment_base || header.frame_len() != body.len() as u64 {
            return Ok(None);
        }
        let file = self.segment_file(segment_base)?;
        file.write_all_at(body, segment::file_position(segment_base, offset))?;
        Ok(Some(header))
    }

    /// Settles where this shard log ends after the journal was replayed: at
    /// the last replayed frame of its newest segment, else where the
    /// checkpoint put it, else (a segment made after the checkpoint, with
    /// nothing journaled) empty. Bytes past that end were never acknowledged
    /// and are cut. Returns the newest segment's file if it changed.
    pub(crate) fn finish_replay(
        &self,
        checkpoint: Option<&crate::journal::CheckpointEntry>,
        replayed: Option<&Replayed>,
    ) -> io::Result<Option<Arc<dyn StorageFile>>> {
        let mut st = self.lock();
        let newest = *st.segments.back().unwrap();
        let mut last_ts = st.last_timestamp_ms;
        if let Some(cp) = checkpoint {
            // This shard log's (its segment is here, or was a later one that
            // vanished: see below), not an earlier one's under the same id.
            if cp.segment_base > newest.base_offset
                || st
                    .segments
                    .iter()
                    .any(|s| s.base_offset == cp.segment_base && s.frame_salt == cp.segment_salt)
            {
                last_ts = last_ts.max(cp.last_timestamp_ms);
            }
        }
        if let Some(r) = replayed {
            last_ts = last_ts.max(r.max_timestamp_ms);
        }
        st.last_timestamp_ms = last_ts;
        if st.newest_header_damaged {
            // Nothing in it can be verified or cut (the damage says so): it
            // ends where its file does, replayed frames included.
            let file = self.segment_file(newest.base_offset)?;
            let end = newest.base_offset + file.len()?.saturating_sub(SEGMENT_HEADER_LEN as u64);
            st.written_end = end;
            st.flushed_end = end;
            self.progress.durable_end.store(end, Ordering::SeqCst);
            self.progress.visible_end.store(end, Ordering::SeqCst);
            let replayed_here = replayed.is_some_and(|r| r.touched.contains(&newest.base_offset));
            return Ok(replayed_here.then_some(file));
        }
        let cp_here = checkpoint.filter(|cp| {
            cp.segment_base == newest.base_offset && cp.segment_salt == newest.frame_salt
        });
        let replayed_here = replayed.is_some_and(|r| r.touched.contains(&newest.base_offset));
        let file = self.segment_file(newest.base_offset)?;
        // Replay may have written past where the file ended when opened.
        let file_end = newest.base_offset + file.len()?.saturating_sub(SEGMENT_HEADER_LEN as u64);
        let (end, closed_at) = match replayed.filter(|r| r.last_base == newest.base_offset) {
            Some(r) => (r.last_end, r.closed_at.filter(|&c| c >= newest.base_offset)),
            None => match (cp_here, checkpoint) {
                (Some(cp), _) => (cp.end, cp.closed_at),
                // The checkpoint's segment came after this one and is gone
                // (it held nothing: an empty segment whose header rotted):
                // this one was sealed, fsynced whole when the next began.
                (None, Some(cp)) if cp.segment_base > newest.base_offset => (file_end, None),
                // Made after the checkpoint, and nothing in it was journaled.
                _ => (newest.base_offset, None),
            },
        };
        let mut changed = replayed_here;
        // A checkpoint line is checksummed, not trusted blindly: never
        // before the segment's base.
        let end = end.max(newest.base_offset);
        if file_end > end {
            file.set_len(segment::file_position(newest.base_offset, end))?;
            self.shared
                .recovery_cut_bytes
                .fetch_add(file_end - end, Ordering::Relaxed);
            changed = true;
        } else if file_end < end {
            // The checkpoint vouched for bytes the file no longer has.
            st.damage.get_or_insert(Damage {
                epoch: self.epoch,
                offset: file_end,
                resume: None,
                reason: format!(
                    "the segment ends at {file_end}, short of its checkpointed end {end}"
                ),
            });
        }
        st.written_end = end;
        st.flushed_end = end;
        st.closed_at = closed_at;
        self.progress.durable_end.store(end, Ordering::SeqCst);
        self.progress.visible_end.store(end, Ordering::SeqCst);
        Ok(changed.then_some(file))
    }

    /// What a checkpoint records of this shard log (and the active
    /// segment's file if written since the last checkpoint, to fsync).
    #[allow(clippy::type_complexity)]
    pub(crate) fn checkpoint_entry(
        &self,
    ) -> io::Result<
        Option<(
            crate::journal::CheckpointEntry,
            Option<Arc<dyn StorageFile>>,
        )>,
    > {
        let mut st = self.lock();
        if st.deleted {
            return Ok(None);
        }
        self.flush_pending(&mut st)?;
        let newest = *st.segments.back().unwrap();
        let entry = crate::journal::CheckpointEntry {
            shard: self.id.0,
            segment_base: newest.base_offset,
            segment_salt: newest.frame_salt,
            end: st.written_end,
            closed_at: st.closed_at,
            last_timestamp_ms: st.last_timestamp_ms,
        };
        let file = if st.dirty {
            let f = self.segment_file(newest.base_offset)?;
            st.dirty = false;
            Some(f)
        } else {
            None
        };
        Ok(Some((entry, file)))
    }

    /// The file of segment `base` unless it is the newest (or gone).
    pub(crate) fn sealed_segment_file(
        &self,
        base: u64,
    ) -> io::Result<Option<Arc<dyn StorageFile>>> {
        let st = self.lock();
        if st.segments.back().is_some_and(|s| s.base_offset == base)
            || !st.segments.iter().any(|s| s.base_offset == base)
        {
            return Ok(None);
        }
        drop(st);
        self.segment_file(base).map(Some)
    }

    /// Marks the active segment written again (its checkpoint fsync failed).
    pub(crate) fn mark_dirty(&self) {
        self.lock().dirty = true;
    }

    /// Removes every file; the shard log refuses all further use.
    pub(crate) fn delete(&self) -> io::Result<()> {
        let mut st = self.lock();
        if st.deleted {
            return Ok(());
        }
        st.deleted = true;
        let dropped = std::mem::take(&mut st.pending).len() as u64;
        self.shared
            .pending_bytes
            .fetch_sub(dropped, Ordering::Relaxed);
        self.shared
            .pending_retained
            .fetch_sub(std::mem::take(&mut st.pending_retained), Ordering::Relaxed);
        for seg in &st.segments {
            self.shared.pool.remove((self.instance, seg.base_offset));
        }
        // The marker makes an interrupted delete finish at the next open.
        match self
            .shared
            .storage
            .create_file(&self.dir.join(DELETED_MARKER))
        {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        self.shared.storage.sync_dir(&self.dir)?;
        remove_shard_dir(&self.shared, &self.dir)
    }
}
