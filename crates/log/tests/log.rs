//! Behaviour of the storage engine through its public API, on the real file
//! system (temp dirs) and on SimStorage where faults are needed.

use std::sync::Arc;

use sluice_log::{
    AppendError, AppendRecord, Cursor, Durability, Log, LogOptions, OsStorage, ReadError,
    ReadLimits, ShardLogId, SimStorage, StartingPosition, Storage,
};
use sluice_model::ManualClock;

const ALL: ReadLimits = ReadLimits {
    max_records: 10_000,
    max_bytes: 10 << 20,
};

fn rec(data: &[u8]) -> AppendRecord<'_> {
    AppendRecord {
        partition_key: b"pk",
        data,
        flags: 0,
    }
}

fn open(
    storage: Arc<dyn Storage>,
    root: &str,
    options: LogOptions,
    clock: &Arc<ManualClock>,
) -> Log {
    Log::open(storage, root, options, clock.clone()).unwrap()
}

fn os_log(dir: &tempfile::TempDir, options: LogOptions, clock: &Arc<ManualClock>) -> Log {
    Log::open(Arc::new(OsStorage), dir.path(), options, clock.clone()).unwrap()
}

fn datas(batch: &sluice_log::ReadBatch) -> Vec<Vec<u8>> {
    batch.records.iter().map(|r| r.data.to_vec()).collect()
}

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

/// Every shard's appends share the journal: a failed fsync of it poisons
/// the whole log, since the kernel may have dropped any of their bytes.
#[test]
fn a_failed_fsync_poisons_the_log_until_reopen() {
    let storage = SimStorage::new(1);
    let clock = Arc::new(ManualClock::new(1));
    let options = LogOptions {
        journal_spares: false,
        checkpoint_interval_ms: 0,
        ..LogOptions::default()
    };
    let log = open(storage.clone(), "/data", options, &clock);
    let shard = log.create_shard(ShardLogId(1), 1).unwrap();
    let other = log.create_shard(ShardLogId(2), 1).unwrap();
    shard.append(&[rec(b"kept")]).unwrap();
    storage.fail_next_syncs(1);
    assert!(matches!(
        shard.append(&[rec(b"lost")]),
        Err(AppendError::Poisoned)
    ));
    assert!(matches!(
        shard.append(&[rec(b"refused")]),
        Err(AppendError::Poisoned)
    ));
    assert!(shard.info().poisoned);
    // Unacknowledged data never becomes visible; other shards carry on.
    let all = shard
        .read(shard.cursor(StartingPosition::TrimHorizon).unwrap(), ALL)
        .unwrap();
    assert_eq!(datas(&all), [b"kept".to_vec()]);
    assert!(log.is_poisoned());
    assert!(matches!(
        other.append(&[rec(b"refused too")]),
        Err(AppendError::Poisoned)
    ));
    assert!(log.checkpoint().is_err(), "no checkpoint of a poisoned log");
    drop((shard, other, log));
    storage.crash();
    let log = open(storage, "/data", options, &clock);
    let shard = log.shard(ShardLogId(1)).unwrap();
    shard.append(&[rec(b"after")]).unwrap();
    let all = datas(
        &shard
            .read(shard.cursor(StartingPosition::TrimHorizon).unwrap(), ALL)
            .unwrap(),
    );
    assert_eq!(all.first().unwrap(), b"kept");
    assert_eq!(all.last().unwrap(), b"after");
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

/// Segment writes happen behind the journal: one that fails (a disk that
/// fills up mid-write) loses nothing, since the frames stay pending and the
/// journal has them; while the disk is full, appends flush first and fail,
/// and they go on once a flush succeeds. A roll that cannot write fails only
/// its append. Nothing is poisoned.
#[test]
fn a_failed_segment_write_loses_nothing_and_the_shard_goes_on() {
    let storage = SimStorage::new(2);
    let clock = Arc::new(ManualClock::new(1));
    let options = LogOptions {
        segment_bytes: 200,
        journal_spares: false,
        checkpoint_interval_ms: 0,
        ..LogOptions::default()
    };
    let log = open(storage.clone(), "/data", options, &clock);
    let shard = log.create_shard(ShardLogId(1), 1).unwrap();
    shard.append(&[rec(b"before")]).unwrap();
    assert!(log.pending_bytes() > 0);
    // The checkpoint's flush hits a full disk: the checkpoint fails.
    storage.fail_next_writes(1);
    assert!(log.checkpoint().is_err());
    assert!(log.pending_bytes() > 0, "the frames stay pending");
    // The disk is known full: the next append flushes first, and that flush
    // fails too, so the append does (and is not journaled).
    storage.fail_next_writes(1);
    let full = shard.append(&[rec(&[7u8; 60])]);
    assert!(
        matches!(&full, Err(AppendError::Io(e)) if e.raw_os_error() == Some(28)),
        "{full:?}"
    );
    // Room again: appends go on, across segment rolls too.
    for i in 0..5u8 {
        shard.append(&[rec(&[i; 60])]).unwrap();
    }
    assert!(!shard.info().poisoned && !log.is_poisoned());
    // The next append rolls (each segment holds one such frame); the roll's
    // write fails: that append fails, not the shard.
    storage.fail_next_writes(1);
    assert!(shard.append(&[rec(&[9u8; 60])]).is_err());
    for i in 0..4u8 {
        shard.append(&[rec(&[i; 60])]).unwrap();
    }
    assert!(!shard.info().poisoned && !log.is_poisoned());
    let want = |shard: &sluice_log::ShardLog| {
        let all = shard
            .read(shard.cursor(StartingPosition::TrimHorizon).unwrap(), ALL)
            .unwrap();
        assert_eq!(all.records.len(), 10);
        assert_eq!(&all.records[0].data[..], b"before");
        assert!(all.records[1..].iter().all(|r| r.data.len() == 60));
    };
    want(&shard);
    log.checkpoint().unwrap();
    drop((shard, log));
    storage.crash();
    let log = open(storage, "/data", options, &clock);
    want(&log.shard(ShardLogId(1)).unwrap());
}

/// A create that fails part-way (a full disk) leaves nothing that stops the
/// next create of the same id.
#[test]
fn a_failed_create_leaves_nothing_behind() {
    let storage = SimStorage::new(3);
    let clock = Arc::new(ManualClock::new(1));
    let log = open(storage.clone(), "/data", LogOptions::default(), &clock);
    storage.fail_next_writes(1);
    assert!(log.create_shard(ShardLogId(7), 1).is_err());
    assert!(log.shard(ShardLogId(7)).is_none());
    let shard = log.create_shard(ShardLogId(7), 1).unwrap();
    shard.append(&[rec(b"x")]).unwrap();
    // A directory left by a failed create in an earlier life is cleared too.
    storage
        .create_dir(std::path::Path::new("/data/shards/0000000000000008"))
        .unwrap();
    log.create_shard(ShardLogId(8), 1).unwrap();
}

/// Where `needle` last occurs in the file at `path`.
fn last_position(path: &std::path::Path, needle: &[u8]) -> usize {
    let bytes = std::fs::read(path).unwrap();
    bytes
        .windows(needle.len())
        .rposition(|w| w == needle)
        .unwrap_or_else(|| panic!("{needle:?} not in {}", path.display()))
}

/// Flips a byte of `path` at `at`.
fn flip(path: &std::path::Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x5a;
    std::fs::write(path, &bytes).unwrap();
}

fn journal_files(dir: &tempfile::TempDir) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.path().join("journal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    files.sort();
    files
}

/// The journal file holding `needle` (the last written, if several do).
fn journal_holding(dir: &tempfile::TempDir, needle: &[u8]) -> std::path::PathBuf {
    journal_files(dir)
        .into_iter()
        .find(|p| {
            std::fs::read(p)
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle)
        })
        .expect("a journal file holds the record")
}

/// A torn last journal entry (nothing was written after it) was never
/// acknowledged: it is cut, and so is its frame in the segment.
#[test]
fn a_torn_journal_tail_is_cut_off_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1));
    {
        let log = os_log(&dir, LogOptions::default(), &clock);
        let shard = log.create_shard(ShardLogId(1), 1).unwrap();
        shard.append(&[rec(b"one")]).unwrap();
        shard.append(&[rec(b"two-two-two")]).unwrap();
    }
    let journal = journal_holding(&dir, b"two-two-two");
    flip(&journal, last_position(&journal, b"two-two-two") + 4);
    let report = sluice_log::inspect::check(dir.path()).unwrap();
    assert_eq!(report.corruptions().count(), 0, "{report:?}");
    let (log, opened) = sluice_log::Log::open_with_report(
        Arc::new(OsStorage),
        dir.path(),
        LogOptions::default(),
        clock.clone(),
    )
    .unwrap();
    assert_eq!(opened.replayed_entries, 1, "{opened:?}");
    let shard = log.shard(ShardLogId(1)).unwrap();
    let all = shard
        .read(shard.cursor(StartingPosition::TrimHorizon).unwrap(), ALL)
        .unwrap();
    assert_eq!(datas(&all), [b"one".to_vec()]);
    shard.append(&[rec(b"three")]).unwrap();
    drop(log);
    let report = sluice_log::inspect::check(dir.path()).unwrap();
    assert_eq!(
        report.torn_tails().count() + report.corruptions().count(),
        0
    );
}

/// A bad entry followed by one written after the journal was durable past
/// it is damage, not a torn tail: opening (and repair) refuses rather than
/// cut acknowledged records, until the operator says to cut
/// (`ctl repair --cut-journal`).
#[test]
fn a_damaged_journal_entry_refuses_to_open_until_cut() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1));
    {
        let log = os_log(&dir, LogOptions::default(), &clock);
        let shard = log.create_shard(ShardLogId(1), 1).unwrap();
        shard.append(&[rec(b"one")]).unwrap();
        shard.append(&[rec(b"two-two-two")]).unwrap();
        shard.append(&[rec(b"three")]).unwrap();
    }
    let journal = journal_holding(&dir, b"two-two-two");
    flip(&journal, last_position(&journal, b"two-two-two"));
    let report = sluice_log::inspect::check(dir.path()).unwrap();
    assert_eq!(report.corruptions().count(), 1, "{report:?}");
    let opened = sluice_log::Log::open(
        Arc::new(OsStorage),
        dir.path(),
        LogOptions::default(),
        clock.clone(),
    );
    let Err(e) = opened else {
        panic!("opened over a damaged journal")
    };
    assert!(matches!(e, sluice_log::OpenError::JournalDamaged(_)), "{e}");
    assert!(e.to_string().contains("journal is damaged"), "{e}");
    assert!(e.to_string().contains("ctl repair --cut-journal"), "{e}");

    // Repair refuses too, unless told to cut: then the journal ends at the
    // damage, and what was before it is back (what came after is lost).
    let refused = sluice_log::inspect::repair(Arc::new(OsStorage), dir.path(), false);
    assert!(refused
        .unwrap_err()
        .to_string()
        .contains("journal is damaged"));
    let report = sluice_log::inspect::repair(Arc::new(OsStorage), dir.path(), true).unwrap();
    let cut = report.journal_cut.as_ref().expect("the cut is reported");
    assert!(cut.reason.contains("checksum"), "{cut}");
    assert_eq!(report.failed, 0, "{report:?}");
    let report = sluice_log::inspect::check(dir.path()).unwrap();
    assert_eq!(report.corruptions().count(), 0, "{report:?}");
    let log = os_log(&dir, LogOptions::default(), &clock);
    let shard = log.shard(ShardLogId(1)).unwrap();
    let read = |shard: &sluice_log::ShardLog| {
        datas(
            &shard
                .read(shard.cursor(StartingPosition::TrimHorizon).unwrap(), ALL)
                .unwrap(),
        )
    };
    assert_eq!(read(&shard), [b"one".to_vec()]);
    shard.append(&[rec(b"after")]).unwrap();
    assert_eq!(read(&shard), [b"one".to_vec(), b"after".to_vec()]);
}

/// Segment bytes written after the last checkpoint are the journal's to
/// vouch for: damage there (a torn or rotten page) is mended by replay.
#[test]
fn replay_mends_segment_bytes_written_after_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1));
    {
        let log = os_log(&dir, LogOptions::default(), &clock);
        let shard = log.create_shard(ShardLogId(1), 1).unwrap();
        for i in 0..50u32 {
            shard.append(&[rec(&i.to_le_bytes())]).unwrap();
        }
        // A read writes the frames to the segment (behind the journal).
        shard
            .read(shard.cursor(StartingPosition::TrimHorizon).unwrap(), ALL)
            .unwrap();
    }
    let seg = dir
        .path()
        .join("shards/0000000000000001/00000000000000000000.seg");
    let len = std::fs::metadata(&seg).unwrap().len() as usize;
    flip(&seg, len / 2);
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len as u64 - 7).unwrap();
    let log = os_log(&dir, LogOptions::default(), &clock);
    let shard = log.shard(ShardLogId(1)).unwrap();
    assert_eq!(shard.verify(&|| false).unwrap(), None);
    let all = shard
        .read(shard.cursor(StartingPosition::TrimHorizon).unwrap(), ALL)
        .unwrap();
    assert_eq!(all.records.len(), 50);
    assert_eq!(std::fs::metadata(&seg).unwrap().len() as usize, len);
}

#[test]
fn corruption_in_a_sealed_segment_quarantines_the_shard_and_repair_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1));
    let options = LogOptions {
        segment_bytes: 512,
        ..LogOptions::default()
    };
    let log = os_log(&dir, options, &clock);
    let shard = log.create_shard(ShardLogId(1), 1).unwrap();
    for i in 0..10u8 {
        shard.append(&[rec(&[i; 100])]).unwrap();
    }
    // Rot strikes data that the journal no longer covers.
    log.checkpoint().unwrap();
    let seg = dir
        .path()
        .join("shards/0000000000000001/00000000000000000000.seg");
    let mut bytes = std::fs::read(&seg).unwrap();
    let last = bytes.len() - 5;
    bytes[last] ^= 0xff;
    std::fs::write(&seg, &bytes).unwrap();
    // The frames before the damage are read; the read after is refused.
    let start = shard.cursor(StartingPosition::TrimHorizon).unwrap();
    let before = shard.read(start, ALL).unwrap();
    assert!(!before.records.is_empty() && before.records.len() < 10);
    let refused = shard.read(before.next, ALL);
    let Err(ReadError::Quarantined(damage)) = refused else {
        panic!("{refused:?}")
    };
    assert_eq!(damage.first_sequence(), before.next.0);
    // A position at the damage is refused as damaged, not as unknown.
    assert!(matches!(
        shard.cursor(StartingPosition::AtSequence(damage.first_sequence())),
        Err(ReadError::Quarantined(_))
    ));
    assert!(!damage.to_string().contains('/'), "no paths: {damage}");
    assert!(shard.info().damage.is_some());
    assert!(matches!(
        shard.append(&[rec(b"more")]),
        Err(AppendError::Quarantined(_))
    ));
    drop((shard, log));
    let report = sluice_log::inspect::check(dir.path()).unwrap();
    assert_eq!(report.corruptions().count(), 1);
    // Opened again: quarantined still (verify finds it), until repaired.
    let log = os_log(&dir, options, &clock);
    let shard = log.shard(ShardLogId(1)).unwrap();
    assert_eq!(shard.verify(&|| false).unwrap(), Some(damage));
    drop((shard, log));
    let repaired = sluice_log::inspect::repair(Arc::new(OsStorage), dir.path(), false).unwrap();
    assert_eq!(repaired.repaired.len(), 1, "{repaired:?}");
    let log = os_log(&dir, options, &clock);
    let shard = log.shard(ShardLogId(1)).unwrap();
    assert_eq!(shard.verify(&|| false).unwrap(), None);
    let all = shard
        .read(shard.cursor(StartingPosition::TrimHorizon).unwrap(), ALL)
        .unwrap();
    // One frame (one record) was damaged; the nine others are all there.
    let got = datas(&all);
    assert_eq!(got.len(), 9);
    let lost = (0..10u8).find(|i| !got.contains(&vec![*i; 100])).unwrap();
    assert_eq!(usize::from(lost), before.records.len());
    shard.append(&[rec(b"more")]).unwrap();
    let report = sluice_log::inspect::check(dir.path()).unwrap();
    assert_eq!(report.corruptions().count(), 0);
}

/// Bit rot in the middle of the newest segment: recovery used to cut it as a
/// torn tail, losing every acknowledged record after it.
#[test]
fn bit_rot_in_the_newest_segment_is_quarantined_not_cut() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1));
    {
        let log = os_log(&dir, LogOptions::default(), &clock);
        let shard = log.create_shard(ShardLogId(1), 1).unwrap();
        for i in 0..130u32 {
            shard.append(&[rec(&i.to_le_bytes())]).unwrap();
        }
        log.checkpoint().unwrap();
    }
    let seg = dir
        .path()
        .join("shards/0000000000000001/00000000000000000000.seg");
    let mut bytes = std::fs::read(&seg).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&seg, &bytes).unwrap();
    let report = sluice_log::inspect::check(dir.path()).unwrap();
    assert_eq!(report.torn_tails().count(), 0);
    assert_eq!(report.corruptions().count(), 1);
    {
        let log = os_log(&dir, LogOptions::default(), &clock);
        let shard = log.shard(ShardLogId(1)).unwrap();
        // Found by the verify pass the server runs after start (or a read).
        let damage = shard.verify(&|| false).unwrap().expect("quarantined");
        assert_eq!(shard.info().damage.as_ref(), Some(&damage));
        let before = shard
            .read(shard.cursor(StartingPosition::TrimHorizon).unwrap(), ALL)
            .unwrap();
        assert!(
            (60..70).contains(&before.records.len()),
            "{}",
            before.records.len()
        );
        assert!(matches!(
            shard.read(before.next, ALL),
            Err(ReadError::Quarantined(d)) if d == damage
        ));
        // Nothing was cut: the file is as it was.
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), bytes.len() as u64);
    }
    sluice_log::inspect::repair(Arc::new(OsStorage), dir.path(), false).unwrap();
    let log = os_log(&dir, LogOptions::default(), &clock);
    let shard = log.shard(ShardLogId(1)).unwrap();
    assert_eq!(shard.info().damage, None);
    let all = shard
        .read(shard.cursor(StartingPosition::TrimHorizon).unwrap(), ALL)
        .unwrap();
    assert_eq!(all.records.len(), 129, "all but the damaged record");
    shard.append(&[rec(b"after")]).unwrap();
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

/// Several bytes of a sealed segment's header damaged (its salt among them):
/// no single byte explains it, so repair solves the salt from the first
/// frame and checks it against the second; a sealed segment cut short is
/// padded and the cut frame skipped. Nothing else is lost.
#[test]
fn repair_rebuilds_a_header_and_pads_a_segment_cut_short() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1));
    let options = LogOptions {
        segment_bytes: 400,
        ..LogOptions::default()
    };
    {
        let log = os_log(&dir, options, &clock);
        let shard = log.create_shard(ShardLogId(1), 1).unwrap();
        for i in 0..12u8 {
            shard.append(&[rec(&[i; 100])]).unwrap();
        }
        log.checkpoint().unwrap();
    }
    let shard_dir = dir.path().join("shards/0000000000000001");
    let mut segs: Vec<_> = std::fs::read_dir(&shard_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segs.sort();
    assert!(segs.len() >= 4, "{segs:?}");
    let mut bytes = std::fs::read(&segs[1]).unwrap();
    for b in &mut bytes[12..20] {
        *b ^= 0xa5;
    }
    std::fs::write(&segs[1], &bytes).unwrap();
    let short = std::fs::OpenOptions::new()
        .write(true)
        .open(&segs[2])
        .unwrap();
    let len = short.metadata().unwrap().len();
    short.set_len(len - 10).unwrap();
    {
        let log = os_log(&dir, options, &clock);
        let shard = log.shard(ShardLogId(1)).unwrap();
        assert!(
            shard.info().damage.is_some(),
            "the damaged header quarantines"
        );
    }
    let report = sluice_log::inspect::repair(Arc::new(OsStorage), dir.path(), false).unwrap();
    assert!(
        report
            .repaired
            .iter()
            .any(|r| r.what.contains("salt solved")),
        "{report:?}"
    );
    let log = os_log(&dir, options, &clock);
    let shard = log.shard(ShardLogId(1)).unwrap();
    assert_eq!(shard.verify(&|| false).unwrap(), None);
    let all = shard
        .read(shard.cursor(StartingPosition::TrimHorizon).unwrap(), ALL)
        .unwrap();
    // One record (the one the cut went through) is gone, the eleven others are there.
    assert_eq!(all.records.len(), 11, "{report:?}");
    shard.append(&[rec(b"after")]).unwrap();
}

/// A rename replaces a file all at once, and is durable only once its
/// directory is synced: before, a crash finds the old file whole.
#[test]
fn a_rename_survives_a_crash_only_once_its_directory_is_synced() {
    let storage = SimStorage::new(3);
    let dir = std::path::Path::new("/d");
    storage.create_dir_all(dir).unwrap();
    storage.sync_dir(std::path::Path::new("/")).unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let f = storage.create_file(&dir.join(name)).unwrap();
        f.write_all_at(bytes, 0).unwrap();
        f.sync_data().unwrap();
    };
    let read = |name: &str| {
        let f = storage.open_file(&dir.join(name)).unwrap();
        let mut buf = vec![0u8; f.len().unwrap() as usize];
        f.read_full_at(&mut buf, 0).unwrap();
        buf
    };
    write("a", b"old");
    storage.sync_dir(dir).unwrap();
    write("a.tmp", b"new!");
    storage.rename(&dir.join("a.tmp"), &dir.join("a")).unwrap();
    assert_eq!(read("a"), b"new!");
    assert!(storage.open_file(&dir.join("a.tmp")).is_err());
    storage.crash();
    assert_eq!(read("a"), b"old", "the rename was not durable yet");
    write("a.tmp", b"new!");
    storage.rename(&dir.join("a.tmp"), &dir.join("a")).unwrap();
    storage.sync_dir(dir).unwrap();
    storage.crash();
    assert_eq!(read("a"), b"new!");
    assert!(storage.open_file(&dir.join("a.tmp")).is_err());
    assert!(storage
        .rename(&dir.join("missing"), &dir.join("a"))
        .is_err());
}
