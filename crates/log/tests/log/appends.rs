//! Appends, reads, closes, retention and deletes, alone and concurrent.

use super::*;

#[test]
fn append_read_and_every_starting_position() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000));
    let log = os_log(&dir, LogOptions::default(), &clock);
    let shard = log.create_shard(ShardLogId(7), 1).unwrap();
    let a = shard.append(&[rec(b"a0"), rec(b"a1"), rec(b"a2")]).unwrap();
    clock.advance_ms(10);
    let b = shard.append(&[rec(b"b0")]).unwrap();
    assert_eq!(a.arrival_timestamp_ms, 1_000);
    assert_eq!(b.arrival_timestamp_ms, 1_010);
    let seqs = [a.sequence(0), a.sequence(1), a.sequence(2), b.sequence(0)];
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));

    let read_from = |p| shard.read(shard.cursor(p).unwrap(), ALL).unwrap();
    let all = read_from(StartingPosition::TrimHorizon);
    assert_eq!(
        datas(&all),
        [b"a0", b"a1", b"a2", b"b0"].map(|d| d.to_vec())
    );
    assert_eq!(
        all.records.iter().map(|r| r.sequence).collect::<Vec<_>>(),
        seqs
    );
    assert_eq!(all.millis_behind_latest, 0);
    assert!(!all.end_of_shard);
    assert_eq!(&all.records[0].partition_key[..], b"pk");

    assert_eq!(
        datas(&read_from(StartingPosition::AtSequence(seqs[1])))[0],
        b"a1"
    );
    assert_eq!(
        datas(&read_from(StartingPosition::AfterSequence(seqs[1])))[0],
        b"a2"
    );
    assert_eq!(
        datas(&read_from(StartingPosition::AfterSequence(seqs[2])))[0],
        b"b0"
    );
    assert!(read_from(StartingPosition::AfterSequence(seqs[3]))
        .records
        .is_empty());
    assert_eq!(
        datas(&read_from(StartingPosition::AtTimestamp(1_005))),
        [b"b0".to_vec()]
    );
    assert_eq!(read_from(StartingPosition::AtTimestamp(0)).records.len(), 4);
    assert!(read_from(StartingPosition::AtTimestamp(2_000))
        .records
        .is_empty());

    let latest = shard.cursor(StartingPosition::Latest).unwrap();
    assert!(shard.read(latest, ALL).unwrap().records.is_empty());
    let c = shard.append(&[rec(b"c0")]).unwrap();
    assert_eq!(datas(&shard.read(latest, ALL).unwrap()), [b"c0".to_vec()]);
    assert!(c.sequence(0) > seqs[3]);

    // Limits: records, then bytes, and the cursor resumes inside a batch.
    let two = shard
        .read(
            shard.cursor(StartingPosition::TrimHorizon).unwrap(),
            ReadLimits {
                max_records: 2,
                max_bytes: 1 << 20,
            },
        )
        .unwrap();
    assert_eq!(datas(&two), [b"a0".to_vec(), b"a1".to_vec()]);
    assert_eq!(two.millis_behind_latest, 10);
    let rest = shard.read(two.next, ALL).unwrap();
    assert_eq!(
        datas(&rest),
        [b"a2".to_vec(), b"b0".to_vec(), b"c0".to_vec()]
    );
    let one = shard
        .read(
            two.next,
            ReadLimits {
                max_records: 100,
                max_bytes: 1,
            },
        )
        .unwrap();
    assert_eq!(
        one.records.len(),
        1,
        "a record larger than max_bytes still comes alone"
    );

    // Positions that name nothing.
    let bad = [
        StartingPosition::AtSequence(seqs[0] + 3), // index past the batch
        StartingPosition::AtSequence(sluice_log::sequence(2, 0, 0)), // another epoch
        StartingPosition::AtSequence(c.sequence(0) + (1 << 20)), // beyond the end
        StartingPosition::AtSequence(sluice_log::sequence(1, 5, 0)), // not a frame boundary
    ];
    for p in bad {
        assert!(
            matches!(shard.cursor(p), Err(ReadError::InvalidPosition)),
            "{p:?}"
        );
    }
    assert!(matches!(
        shard.read(Cursor(sluice_log::sequence(9, 0, 0)), ALL),
        Err(ReadError::InvalidPosition)
    ));
}

#[test]
fn sequences_keep_increasing_across_restarts_and_segments() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(5));
    let options = LogOptions {
        segment_bytes: 4096,
        ..LogOptions::default()
    };
    let mut last = 0u128;
    let payload = vec![7u8; 300];
    for round in 0..3 {
        let log = os_log(&dir, options, &clock);
        let shard = match log.shard(ShardLogId(1)) {
            Some(s) => s,
            None => log.create_shard(ShardLogId(1), 1).unwrap(),
        };
        for _ in 0..40 {
            let r = shard.append(&[rec(&payload), rec(&payload)]).unwrap();
            assert!(r.sequence(0) > last);
            last = r.sequence(1);
        }
        let all = shard
            .read(shard.cursor(StartingPosition::TrimHorizon).unwrap(), ALL)
            .unwrap();
        assert_eq!(all.records.len(), 80 * (round + 1));
        assert!(all
            .records
            .windows(2)
            .all(|w| w[0].sequence < w[1].sequence));
        assert!(shard.info().segment_count > 5);
    }
}

#[test]
fn close_is_durable_and_ends_the_shard() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(5));
    let options = LogOptions {
        durability: Durability::Interval {
            fsync_interval_ms: 60_000,
        },
        ..LogOptions::default()
    };
    let ending = {
        let log = os_log(&dir, options, &clock);
        let shard = log.create_shard(ShardLogId(1), 3).unwrap();
        let r = shard.append(&[rec(b"x")]).unwrap();
        let ending = shard.close().unwrap();
        assert!(ending > r.sequence(0));
        assert_eq!(shard.close().unwrap(), ending);
        assert!(
            matches!(shard.append(&[rec(b"y")]), Err(AppendError::Closed { ending_sequence }) if ending_sequence == ending)
        );
        ending
        // Dropped without flush: the close must already be durable.
    };
    let log = os_log(&dir, options, &clock);
    let shard = log.shard(ShardLogId(1)).unwrap();
    assert_eq!(shard.info().ending_sequence, Some(ending));
    let all = shard
        .read(shard.cursor(StartingPosition::TrimHorizon).unwrap(), ALL)
        .unwrap();
    assert_eq!(datas(&all), [b"x".to_vec()]);
    assert!(all.end_of_shard);
    let at_end = shard.read(all.next, ALL).unwrap();
    assert!(at_end.end_of_shard && at_end.records.is_empty());
    let latest = shard
        .read(shard.cursor(StartingPosition::Latest).unwrap(), ALL)
        .unwrap();
    assert!(latest.end_of_shard);
    assert_eq!(
        shard.cursor(StartingPosition::AtSequence(ending)).unwrap(),
        all.next
    );
}

#[test]
fn retention_trims_whole_segments_and_moves_the_horizon() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000));
    let options = LogOptions {
        segment_bytes: 1024,
        ..LogOptions::default()
    };
    let log = os_log(&dir, options, &clock);
    let shard = log.create_shard(ShardLogId(1), 1).unwrap();
    let data = vec![1u8; 200];
    for i in 0..30u64 {
        clock.set_ms(1_000 + i * 100);
        shard.append(&[rec(&data)]).unwrap();
    }
    let before = shard.info();
    let stale_cursor = shard.cursor(StartingPosition::TrimHorizon).unwrap();
    // Records stamped before 2_000 expire: that is the first 10.
    let removed = shard.trim_before(2_000).unwrap();
    assert!(removed > 0);
    assert!(shard.info().segment_count < before.segment_count);
    let all = shard
        .read(shard.cursor(StartingPosition::TrimHorizon).unwrap(), ALL)
        .unwrap();
    assert_eq!(all.records.len(), 20);
    assert!(all.records.iter().all(|r| r.arrival_timestamp_ms >= 2_000));
    // A cursor into deleted data continues from the horizon.
    assert_eq!(shard.read(stale_cursor, ALL).unwrap().records.len(), 20);
    // Everything expires: the active segment rolls and goes too.
    clock.set_ms(10_000);
    shard.trim_before(9_000).unwrap();
    assert_eq!(shard.info().segment_count, 1);
    assert!(shard
        .read(shard.cursor(StartingPosition::TrimHorizon).unwrap(), ALL)
        .unwrap()
        .records
        .is_empty());
    let next = shard.append(&[rec(b"new")]).unwrap();
    assert!(next.sequence(0) > all.records.last().unwrap().sequence);
    drop(log);
    let log = os_log(&dir, options, &clock);
    let shard = log.shard(ShardLogId(1)).unwrap();
    let all = shard
        .read(shard.cursor(StartingPosition::TrimHorizon).unwrap(), ALL)
        .unwrap();
    assert_eq!(datas(&all), [b"new".to_vec()]);
}

/// Appends that do not wait: the journal has them, nothing is visible or
/// acknowledged until the round is awaited (async, no thread waits), and a
/// round whose fsync failed settles them as failures.
#[test]
fn unsynced_appends_settle_on_their_round() {
    let storage = SimStorage::new(3);
    let clock = Arc::new(ManualClock::new(1));
    let options = LogOptions {
        journal_spares: false,
        checkpoint_interval_ms: 0,
        ..LogOptions::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let log = open(storage.clone(), "/data", options, &clock);
    let a = log.create_shard(ShardLogId(1), 1).unwrap();
    let b = log.create_shard(ShardLogId(2), 1).unwrap();
    let read = |shard: &sluice_log::ShardLog| {
        datas(
            &shard
                .read(shard.cursor(StartingPosition::TrimHorizon).unwrap(), ALL)
                .unwrap(),
        )
    };

    let (mut results, unsynced) =
        log.append_many_unsynced(&[(&a, &[rec(b"a1")][..]), (&b, &[rec(b"b1")][..])]);
    let unsynced = unsynced.expect("sync mode: a round to wait for");
    assert!(results.iter().all(Result::is_ok));
    runtime.block_on(unsynced.wait_async(&mut results));
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(read(&a), [b"a1".to_vec()]);
    assert_eq!(read(&b), [b"b1".to_vec()]);

    // The round's fsync fails: both appends fail, and stay invisible.
    storage.fail_next_syncs(1);
    let (mut results, unsynced) =
        log.append_many_unsynced(&[(&a, &[rec(b"a2")][..]), (&b, &[rec(b"b2")][..])]);
    assert!(
        results.iter().all(Result::is_ok),
        "provisional until the round"
    );
    runtime.block_on(unsynced.unwrap().wait_async(&mut results));
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Err(AppendError::Poisoned))),
        "{results:?}"
    );
    assert_eq!(read(&a), [b"a1".to_vec()]);
    assert_eq!(read(&b), [b"b1".to_vec()]);
}

#[test]
fn ten_thousand_shards_with_a_small_file_pool() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1));
    let options = LogOptions {
        open_files_max: 64,
        durability: Durability::Interval {
            fsync_interval_ms: 5,
        },
        ..LogOptions::default()
    };
    let n = 10_000u64;
    {
        let log = os_log(&dir, options, &clock);
        for id in 0..n {
            let shard = log.create_shard(ShardLogId(id), 1).unwrap();
            shard.append(&[rec(&id.to_le_bytes())]).unwrap();
            assert!(log.open_files() <= 64);
        }
        assert!(log.flush());
    }
    let log = os_log(&dir, options, &clock);
    assert_eq!(log.shard_ids().len(), n as usize);
    for id in (0..n).step_by(97) {
        let shard = log.shard(ShardLogId(id)).unwrap();
        let all = shard
            .read(shard.cursor(StartingPosition::TrimHorizon).unwrap(), ALL)
            .unwrap();
        assert_eq!(datas(&all), [id.to_le_bytes().to_vec()]);
    }
    assert!(log.open_files() <= 64 + 1);
}

#[test]
fn delete_removes_the_shard_and_an_interrupted_delete_finishes_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1));
    let log = os_log(&dir, LogOptions::default(), &clock);
    let shard = log.create_shard(ShardLogId(1), 1).unwrap();
    shard.append(&[rec(b"x")]).unwrap();
    log.create_shard(ShardLogId(2), 1).unwrap();
    assert!(log.delete_shard(ShardLogId(1)).unwrap());
    assert!(!log.delete_shard(ShardLogId(1)).unwrap());
    assert!(matches!(
        shard.append(&[rec(b"y")]),
        Err(AppendError::Deleted)
    ));
    assert!(!dir.path().join("shards/0000000000000001").exists());
    drop(log);
    std::fs::write(dir.path().join("shards/0000000000000002/DELETED"), b"").unwrap();
    let log = os_log(&dir, LogOptions::default(), &clock);
    assert!(log.shard_ids().is_empty());
    assert!(!dir.path().join("shards/0000000000000002").exists());
}

#[test]
fn concurrent_appends_across_shards_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1));
    let log = Arc::new(os_log(&dir, LogOptions::default(), &clock));
    let threads = 16;
    let per_thread = 50;
    let shards: Vec<_> = (0..4)
        .map(|i| log.create_shard(ShardLogId(i), 1).unwrap())
        .collect();
    let rounds_before = log.sync_rounds();
    std::thread::scope(|s| {
        for t in 0..threads {
            let shard = shards[t % shards.len()].clone();
            s.spawn(move || {
                for i in 0..per_thread {
                    shard.append(&[rec(format!("{t}-{i}").as_bytes())]).unwrap();
                }
            });
        }
    });
    let rounds = log.sync_rounds() - rounds_before;
    let appends = (threads * per_thread) as u64;
    assert!(
        rounds < appends,
        "{rounds} fsync rounds for {appends} appends"
    );
    let total: usize = shards
        .iter()
        .map(|s| {
            s.read(s.cursor(StartingPosition::TrimHorizon).unwrap(), ALL)
                .unwrap()
                .records
                .len()
        })
        .sum();
    assert_eq!(total, threads * per_thread);
}

#[test]
fn bad_batches_are_refused_whole() {
    let storage = SimStorage::new(3);
    let clock = Arc::new(ManualClock::new(1));
    let log = open(storage, "/data", LogOptions::default(), &clock);
    let shard = log.create_shard(ShardLogId(1), 1).unwrap();
    assert!(matches!(shard.append(&[]), Err(AppendError::EmptyBatch)));
    let key = vec![b'k'; 70_000];
    let long_key = AppendRecord {
        partition_key: &key,
        data: b"",
        flags: 0,
    };
    assert!(matches!(
        shard.append(&[rec(b"ok"), long_key]),
        Err(AppendError::PartitionKeyTooLong { index: 1, .. })
    ));
    let big = vec![0u8; sluice_log::FRAME_PAYLOAD_MAX_BYTES];
    assert!(matches!(
        shard.append(&[rec(&big)]),
        Err(AppendError::BatchTooLarge { .. })
    ));
    assert!(matches!(
        log.create_shard(ShardLogId(1), 1),
        Err(sluice_log::CreateError::AlreadyExists)
    ));
    assert!(matches!(
        log.create_shard(ShardLogId(2), 0),
        Err(sluice_log::CreateError::InvalidEpoch)
    ));
    assert!(shard
        .read(shard.cursor(StartingPosition::TrimHorizon).unwrap(), ALL)
        .unwrap()
        .records
        .is_empty());
}

#[test]
fn a_shard_deleted_and_created_again_starts_empty() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1));
    let log = os_log(&dir, LogOptions::default(), &clock);
    let old = log.create_shard(ShardLogId(5), 1).unwrap();
    old.append(&[rec(b"old")]).unwrap();
    // A reader of the old shard holds its segment open across the delete.
    let cursor = old.cursor(StartingPosition::TrimHorizon).unwrap();
    assert!(log.delete_shard(ShardLogId(5)).unwrap());
    assert!(matches!(old.read(cursor, ALL), Err(ReadError::Deleted)));
    let new = log.create_shard(ShardLogId(5), 2).unwrap();
    new.append(&[rec(b"new")]).unwrap();
    let read_all = |log: &Log| {
        let s = log.shard(ShardLogId(5)).unwrap();
        datas(
            &s.read(s.cursor(StartingPosition::TrimHorizon).unwrap(), ALL)
                .unwrap(),
        )
    };
    assert_eq!(read_all(&log), [b"new".to_vec()]);
    drop((old, new, log));
    assert_eq!(
        read_all(&os_log(&dir, LogOptions::default(), &clock)),
        [b"new".to_vec()]
    );
}

#[test]
fn concurrent_closes_agree_and_both_wait_for_durability() {
    let storage = SimStorage::new(9);
    let clock = Arc::new(ManualClock::new(1));
    let log = open(storage.clone(), "/data", LogOptions::default(), &clock);
    let shard = log.create_shard(ShardLogId(1), 1).unwrap();
    shard.append(&[rec(b"x")]).unwrap();
    let endings: Vec<u128> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4).map(|_| s.spawn(|| shard.close().unwrap())).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(endings.windows(2).all(|w| w[0] == w[1]));
    drop((shard, log));
    storage.crash();
    let log = open(storage, "/data", LogOptions::default(), &clock);
    assert_eq!(
        log.shard(ShardLogId(1)).unwrap().info().ending_sequence,
        Some(endings[0])
    );
}
