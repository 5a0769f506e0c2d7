//! Faults: failed fsyncs and writes, torn and damaged journals, bit rot, repair, crashes.

use super::*;

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
