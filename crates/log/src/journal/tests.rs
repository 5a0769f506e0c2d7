use super::checkpoint::{decode_checkpoint, encode_checkpoint};
use super::*;

#[test]
fn checkpoint_round_trip_and_torn() {
    let cp = Checkpoint {
        sequence: 7,
        replay_from: 12345,
        entries: vec![CheckpointEntry {
            shard: 3,
            segment_base: 4096,
            segment_salt: 99,
            end: 5000,
            closed_at: Some(4990),
            last_timestamp_ms: 42,
        }],
    };
    let b = encode_checkpoint(&cp);
    assert_eq!(decode_checkpoint(&b), Ok(Some(cp)));
    for cut in 0..b.len() {
        assert_eq!(decode_checkpoint(&b[..cut]), Ok(None));
    }
    let mut flipped = b.clone();
    flipped[50] ^= 1;
    assert_eq!(decode_checkpoint(&flipped), Ok(None));
}

#[test]
fn entry_headers_are_bound_to_their_position_and_salt() {
    let e = Entry {
        shard: 1,
        segment_base: 2,
        segment_salt: 3,
        offset: 4,
        body: b"abc",
    };
    let mut b = Vec::new();
    encode_entry_header(&mut b, 77, 1000, KIND_FRAME, &e, crc32c::crc32c(b"abc"), 5);
    assert_eq!(b.len(), ENTRY_HEADER_LEN);
    let h = decode_entry_header(&b, 77, 1000).unwrap();
    assert_eq!(
        (h.shard, h.segment_base, h.segment_salt, h.offset),
        (1, 2, 3, 4)
    );
    assert_eq!((h.body_len, h.synced_before), (3, 5));
    assert!(decode_entry_header(&b, 78, 1000).is_none());
    assert!(decode_entry_header(&b, 77, 1001).is_none());
    for i in 0..b.len() {
        let mut c = b.clone();
        c[i] ^= 0x10;
        assert!(decode_entry_header(&c, 77, 1000).is_none(), "byte {i}");
    }
}

fn sim_journal(storage: &Arc<crate::SimStorage>) -> Journal {
    let storage: Arc<dyn Storage> = storage.clone();
    let j = Journal::open(storage.clone(), PathBuf::from("/j"), 8192).unwrap();
    // As `Log::open` does: the directory itself is durable.
    storage.sync_dir(Path::new("/")).unwrap();
    j
}

fn entry(body: &[u8]) -> Entry<'_> {
    Entry {
        shard: 1,
        segment_base: 0,
        segment_salt: 7,
        offset: 0,
        body,
    }
}

/// Replay walks the journal twice; a second walk that meets other bytes
/// than the first before the end the first found fails, rather than
/// replay less than it promised.
#[test]
fn a_second_walk_that_finds_other_bytes_fails() {
    let storage = crate::SimStorage::new(2);
    let j = sim_journal(&storage);
    j.replay(0, false).unwrap().unwrap();
    let start = j.begin().unwrap();
    j.write_checkpoint(start, &[]).unwrap();
    j.write(&[entry(b"first-entry"), entry(b"second-entry")])
        .unwrap();
    j.sync().unwrap();
    drop(j);
    let j = sim_journal(&storage);
    let cp = j.read_checkpoint().unwrap().unwrap();
    let mut bodies = Vec::new();
    let walked = j
        .walk(cp.replay_from, false, None, &mut |e| {
            bodies.push(e.body);
            Ok(())
        })
        .unwrap()
        .unwrap();
    assert_eq!(bodies, [b"first-entry".to_vec(), b"second-entry".to_vec()]);
    assert_eq!((walked.entries, walked.cut.is_none()), (2, true));
    // The second walk stops at the same end, whatever follows it.
    let mut again = 0;
    j.walk(cp.replay_from, false, Some(walked.end), &mut |_| {
        again += 1;
        Ok(())
    })
    .unwrap()
    .unwrap();
    assert_eq!(again, 2);
    // The first entry's body changes between the walks.
    let (path, at) = storage
        .files()
        .into_iter()
        .find_map(|(path, len)| {
            let file = storage.open_file(&path).ok()?;
            let mut bytes = vec![0u8; len as usize];
            file.read_full_at(&mut bytes, 0).ok()?;
            let at = bytes.windows(11).position(|w| w == b"first-entry")?;
            Some((path, at as u64))
        })
        .expect("the entry is in a journal file");
    assert!(storage.garble(&path, at, 0x01));
    let failed = j.walk(cp.replay_from, false, Some(walked.end), &mut |_| Ok(()));
    let e = failed.expect_err("other bytes than the first walk found");
    assert!(
        e.to_string()
            .contains("an earlier read found a valid entry"),
        "{e}"
    );
}

/// Opening replays, starts a fresh chain and only then writes the
/// checkpoint naming it: a crash in between must leave the files the
/// previous checkpoint needs untouched.
#[test]
fn the_replayed_files_outlive_an_open_that_stops_before_its_checkpoint() {
    let storage = crate::SimStorage::new(1);
    let j = sim_journal(&storage);
    j.replay(0, false).unwrap().unwrap();
    let start = j.begin().unwrap();
    j.write_checkpoint(start, &[]).unwrap();
    j.write(&[entry(b"acknowledged")]).unwrap();
    j.sync().unwrap();
    drop(j);
    // An open that replays and starts a fresh chain, then dies.
    let j = sim_journal(&storage);
    let cp = j.read_checkpoint().unwrap().unwrap();
    assert_eq!(
        j.replay(cp.replay_from, false)
            .unwrap()
            .unwrap()
            .entries
            .len(),
        1
    );
    j.begin().unwrap();
    drop(j);
    storage.crash();
    let j = sim_journal(&storage);
    let cp = j.read_checkpoint().unwrap().unwrap();
    let replay = j.replay(cp.replay_from, false).unwrap().unwrap();
    assert_eq!(
        replay.entries.len(),
        1,
        "the entry is still there to replay"
    );
    assert_eq!(replay.entries[0].body, b"acknowledged");
}

/// A checkpoint write that fails is retried into the same slot, never
/// into the one holding the newest durable checkpoint.
#[test]
fn a_failed_checkpoint_write_never_touches_the_newest_durable_one() {
    let storage = crate::SimStorage::new(2);
    let j = sim_journal(&storage);
    j.write_checkpoint(10, &[]).unwrap();
    j.write_checkpoint(20, &[]).unwrap();
    for _ in 0..2 {
        storage.fail_next_writes(1);
        assert!(j.write_checkpoint(30, &[]).is_err());
    }
    let cp = j.read_checkpoint().unwrap().unwrap();
    assert_eq!((cp.sequence, cp.replay_from), (2, 20));
    j.write_checkpoint(30, &[]).unwrap();
    let cp = j.read_checkpoint().unwrap().unwrap();
    assert_eq!((cp.sequence, cp.replay_from), (3, 30));
}

#[test]
fn file_names() {
    assert_eq!(parse_file_name(&file_name(0x2a)), Some(0x2a));
    assert_eq!(parse_file_name("checkpoint-0"), None);
}
