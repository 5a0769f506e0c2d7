use std::sync::Arc;

use sluice_model::ManualClock;

use crate::frame::{self, AppendRecord, FrameKind, FRAME_HEADER_LEN};
use crate::{sequence, Log, LogOptions, ReadError, ShardLogId, SimStorage, StartingPosition};

/// `position_before` a reading position resumes there with AFTER (and,
/// at frame boundaries, with AT too), before and after records exist.
#[test]
fn position_markers_resume_where_reading_stopped() {
    use crate::{position_before, Cursor, ReadLimits};
    let log = Log::open(
        SimStorage::new(4),
        "/d",
        LogOptions::default(),
        Arc::new(ManualClock::new(1)),
    )
    .unwrap();
    let shard = log.create_shard(ShardLogId(1), 7).unwrap();
    let start = shard.cursor(StartingPosition::TrimHorizon).unwrap();
    let marker = position_before(start);
    assert!(
        marker < sequence(7, 0, 0),
        "a marker sorts before what follows"
    );
    for pos in [
        StartingPosition::AfterSequence(marker),
        StartingPosition::AtSequence(marker),
    ] {
        assert_eq!(shard.cursor(pos).unwrap(), start, "empty shard: {pos:?}");
    }
    let rec = |k: &'static [u8]| AppendRecord {
        partition_key: k,
        data: b"x",
        flags: 0,
    };
    shard.append(&[rec(b"a"), rec(b"b"), rec(b"c")]).unwrap();
    shard.append(&[rec(b"d")]).unwrap();
    // The empty shard's marker still means the start now that records exist.
    let read_from = |c: Cursor| {
        shard
            .read(
                c,
                ReadLimits {
                    max_records: 10,
                    max_bytes: 1 << 20,
                },
            )
            .unwrap()
            .records
            .iter()
            .map(|r| r.partition_key[0])
            .collect::<Vec<_>>()
    };
    let after = shard
        .cursor(StartingPosition::AfterSequence(marker))
        .unwrap();
    assert_eq!(read_from(after), b"abcd");
    // Stop after two records (mid-frame), then after four (a frame boundary).
    for (n, rest) in [(2, &b"cd"[..]), (4, &b""[..]), (3, &b"d"[..])] {
        let batch = shard
            .read(
                start,
                ReadLimits {
                    max_records: n,
                    max_bytes: 1 << 20,
                },
            )
            .unwrap();
        let cont = position_before(batch.next);
        let resumed = shard.cursor(StartingPosition::AfterSequence(cont)).unwrap();
        assert_eq!(resumed, batch.next, "after {n} records");
        assert_eq!(read_from(resumed), rest);
        if let Some(last) = batch.records.last() {
            assert!(
                cont >= last.sequence,
                "the marker is not before what was read"
            );
        }
    }
    // A marker of a position that is no frame boundary is refused.
    let inside = sequence(7, 3, 0) - 1;
    assert!(matches!(
        shard.cursor(StartingPosition::AfterSequence(inside)),
        Err(ReadError::InvalidPosition)
    ));
    // Past the end, or of another shard's epoch: refused.
    let end = shard.cursor(StartingPosition::Latest).unwrap();
    assert!(shard
        .cursor(StartingPosition::AfterSequence(position_before(Cursor(
            end.0 + (1 << 16)
        ))))
        .is_err());
    assert!(shard
        .cursor(StartingPosition::AfterSequence(sequence(8, 0, 0) - 1))
        .is_err());
}

/// Record data that embeds a well-formed frame (here a close frame) must not
/// be accepted as a position, whatever salt the forger guessed.
#[test]
fn frames_forged_inside_record_data_are_not_positions() {
    let storage = SimStorage::new(4);
    let log = Log::open(
        storage,
        "/d",
        LogOptions::default(),
        Arc::new(ManualClock::new(1)),
    )
    .unwrap();
    let shard = log.create_shard(ShardLogId(1), 1).unwrap();
    let mut data = Vec::new();
    for salt in [0u32, 1, 0xffff_ffff] {
        let mut forged = vec![0u8; FRAME_HEADER_LEN];
        frame::seal_frame(
            &mut forged,
            salt,
            FrameKind::Close,
            0,
            1,
            crc32c::crc32c(&[]),
        );
        data.extend_from_slice(&forged);
    }
    let r = shard
        .append(&[AppendRecord {
            partition_key: b"k",
            data: &data,
            flags: 0,
        }])
        .unwrap();
    // The record's data starts after the frame header, the record header and the key.
    let data_at = r.offset + (FRAME_HEADER_LEN + frame::RECORD_HEADER_LEN + 1) as u64;
    for i in 0..3u64 {
        let forged_seq = sequence(1, data_at + i * FRAME_HEADER_LEN as u64, 0);
        assert!(matches!(
            shard.cursor(StartingPosition::AtSequence(forged_seq)),
            Err(ReadError::InvalidPosition)
        ));
    }
}
