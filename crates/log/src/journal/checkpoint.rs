//! Checkpoints: two slots written in turn, the newest valid one read back
//! (where replay starts, and each shard log's durable end).

use super::*;

impl Journal {
    /// The newest valid checkpoint, if any.
    pub fn read_checkpoint(&self) -> io::Result<Option<Checkpoint>> {
        let mut best: Option<Checkpoint> = None;
        for slot in CHECKPOINT_SLOTS {
            let path = self.dir.join(slot);
            let file = match self.storage.open_file(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let len = file.len()?;
            if len > (CHECKPOINT_HEADER_LEN + CHECKPOINT_ENTRY_LEN * (1 << 24) + 4) as u64 {
                continue;
            }
            let mut b = vec![0u8; len as usize];
            let n = file.read_full_at(&mut b, 0)?;
            b.truncate(n);
            match decode_checkpoint(&b) {
                Ok(Some(cp)) if best.as_ref().is_none_or(|b| cp.sequence > b.sequence) => {
                    best = Some(cp)
                }
                Ok(_) => {}
                Err(version) => {
                    return Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        format!(
                            "{} is of data directory format {version}; this binary reads format {DATA_FORMAT_VERSION}",
                            path.display()
                        ),
                    ))
                }
            }
        }
        if let Some(cp) = &best {
            let mut st = self.state.lock().unwrap();
            st.checkpoint_sequence = cp.sequence;
        }
        Ok(best)
    }

    /// Writes a checkpoint durably into the older slot.
    pub fn write_checkpoint(
        &self,
        replay_from: u64,
        entries: &[CheckpointEntry],
    ) -> io::Result<()> {
        // The sequence (and so the slot) advances only once this one is
        // durable: a failed write is retried into the same slot, never into
        // the one holding the newest durable checkpoint.
        let sequence = self.state.lock().unwrap().checkpoint_sequence + 1;
        let bytes = encode_checkpoint(&Checkpoint {
            sequence,
            replay_from,
            entries: entries.to_vec(),
        });
        let path = self.dir.join(CHECKPOINT_SLOTS[(sequence % 2) as usize]);
        let file = match self.storage.open_file(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let f = self.storage.create_file(&path)?;
                self.storage.sync_dir(&self.dir)?;
                f
            }
            Err(e) => return Err(e),
        };
        file.write_all_at(&bytes, 0)?;
        if file.len()? > bytes.len() as u64 {
            file.set_len(bytes.len() as u64)?;
        }
        file.sync_data()?;
        let mut st = self.state.lock().unwrap();
        st.checkpoint_sequence = st.checkpoint_sequence.max(sequence);
        Ok(())
    }
}

pub(super) fn encode_checkpoint(cp: &Checkpoint) -> Vec<u8> {
    let mut b =
        Vec::with_capacity(CHECKPOINT_HEADER_LEN + cp.entries.len() * CHECKPOINT_ENTRY_LEN + 4);
    b.extend_from_slice(&CHECKPOINT_MAGIC);
    b.extend_from_slice(&DATA_FORMAT_VERSION.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&cp.sequence.to_le_bytes());
    b.extend_from_slice(&cp.replay_from.to_le_bytes());
    b.extend_from_slice(&(cp.entries.len() as u64).to_le_bytes());
    for e in &cp.entries {
        b.extend_from_slice(&e.shard.to_le_bytes());
        b.extend_from_slice(&e.segment_base.to_le_bytes());
        b.extend_from_slice(&e.segment_salt.to_le_bytes());
        b.extend_from_slice(&u32::from(e.closed_at.is_some()).to_le_bytes());
        b.extend_from_slice(&e.end.to_le_bytes());
        b.extend_from_slice(&e.closed_at.unwrap_or(0).to_le_bytes());
        b.extend_from_slice(&e.last_timestamp_ms.to_le_bytes());
        b.extend_from_slice(&[0u8; 8]);
    }
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

/// `Ok(None)`: not a whole, valid checkpoint (a torn write). `Err(version)`:
/// a valid checkpoint of another format.
pub(super) fn decode_checkpoint(b: &[u8]) -> Result<Option<Checkpoint>, u32> {
    if b.len() < CHECKPOINT_HEADER_LEN + 4 || b[0..8] != CHECKPOINT_MAGIC {
        return Ok(None);
    }
    let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
    let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
    let count = u64_at(32);
    let Some(len) = usize::try_from(count)
        .ok()
        .and_then(|c| c.checked_mul(CHECKPOINT_ENTRY_LEN))
        .and_then(|n| n.checked_add(CHECKPOINT_HEADER_LEN + 4))
    else {
        return Ok(None);
    };
    if b.len() != len || crc32c::crc32c(&b[..len - 4]) != u32_at(len - 4) {
        return Ok(None);
    }
    if u32_at(8) != DATA_FORMAT_VERSION {
        return Err(u32_at(8));
    }
    let entries = (0..count as usize)
        .map(|i| {
            let at = CHECKPOINT_HEADER_LEN + i * CHECKPOINT_ENTRY_LEN;
            CheckpointEntry {
                shard: u64_at(at),
                segment_base: u64_at(at + 8),
                segment_salt: u32_at(at + 16),
                closed_at: (u32_at(at + 20) & 1 == 1).then(|| u64_at(at + 32)),
                end: u64_at(at + 24),
                last_timestamp_ms: u64_at(at + 40),
            }
        })
        .collect();
    Ok(Some(Checkpoint {
        sequence: u64_at(16),
        replay_from: u64_at(24),
        entries,
    }))
}
