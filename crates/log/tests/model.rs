//! Property test: the log against a simple in-memory model, through appends
//! (one shard at a time, and to every shard in one journal write), reads,
//! trims, closes, checkpoints, clean reopens, crashes (SimStorage keeps any
//! subset of the sectors written since the last fsync, of segments, journal
//! and checkpoint files alike) and bit rot (one byte of any segment garbled
//! on disk, then `inspect::repair`).

use std::sync::Arc;

use proptest::prelude::*;
use sluice_log::{
    AppendError, AppendRecord, Durability, Log, LogOptions, ReadBatch, ReadError, ReadLimits,
    ShardLogId, SimStorage, StartingPosition,
};
use sluice_model::{Clock, ManualClock};

const SHARDS: u64 = 2;
const ROOT: &str = "/data";

#[derive(Debug, Clone)]
enum Op {
    Append {
        shard: u64,
        sizes: Vec<usize>,
    },
    Read {
        shard: u64,
        start: Start,
        max_records: usize,
        max_bytes: usize,
    },
    AdvanceClock(u64),
    Trim {
        shard: u64,
        age_ms: u64,
    },
    Close {
        shard: u64,
    },
    /// One batch to every shard, in one `append_many` (one journal write).
    AppendAll {
        sizes: Vec<usize>,
    },
    Flush,
    /// Fsync the segments, record where each ends, let go of the journal.
    Checkpoint,
    Reopen,
    Crash,
    /// Garble byte `at` (modulo its length) of segment file `file` (modulo
    /// their count) of `shard`, reopen, then repair.
    Garble {
        shard: u64,
        file: usize,
        at: u64,
        xor: u8,
    },
}

#[derive(Debug, Clone, Copy)]
enum Start {
    TrimHorizon,
    Latest,
    /// The nth visible record (modulo the count).
    At(usize),
    After(usize),
    Timestamp(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let shard = 0..SHARDS;
    let start = prop_oneof![
        Just(Start::TrimHorizon),
        Just(Start::Latest),
        any::<usize>().prop_map(Start::At),
        any::<usize>().prop_map(Start::After),
        (0u64..3_000).prop_map(Start::Timestamp),
    ];
    prop_oneof![
        8 => (shard.clone(), prop::collection::vec(0usize..600, 1..12)).prop_map(|(shard, sizes)| Op::Append { shard, sizes }),
        4 => (shard.clone(), start, 1usize..20, 1usize..3000)
            .prop_map(|(shard, start, max_records, max_bytes)| Op::Read { shard, start, max_records, max_bytes }),
        2 => (1u64..200).prop_map(Op::AdvanceClock),
        1 => (shard.clone(), 0u64..1_500).prop_map(|(shard, age_ms)| Op::Trim { shard, age_ms }),
        1 => shard.clone().prop_map(|shard| Op::Close { shard }),
        3 => prop::collection::vec(0usize..600, 1..6).prop_map(|sizes| Op::AppendAll { sizes }),
        1 => Just(Op::Flush),
        2 => Just(Op::Checkpoint),
        1 => Just(Op::Reopen),
        2 => Just(Op::Crash),
        1 => (shard, any::<usize>(), any::<u64>(), 1u8..=255)
            .prop_map(|(shard, file, at, xor)| Op::Garble { shard, file, at, xor }),
    ]
}

#[derive(Debug, Clone, PartialEq)]
struct ModelRecord {
    sequence: u128,
    timestamp_ms: u64,
    key: Vec<u8>,
    data: Vec<u8>,
}

#[derive(Debug, Default)]
struct ModelShard {
    records: Vec<ModelRecord>,
    /// How many of `records` are certainly on disk.
    durable: usize,
    ending: Option<u128>,
    trim_before_ms: u64,
}

impl ModelShard {
    fn visible(&self) -> Vec<&ModelRecord> {
        self.records
            .iter()
            .filter(|r| r.timestamp_ms >= self.trim_before_ms)
            .collect()
    }
}

struct Harness {
    storage: Arc<SimStorage>,
    clock: Arc<ManualClock>,
    options: LogOptions,
    log: Option<Log>,
    model: Vec<ModelShard>,
    next_payload: u64,
}

impl Harness {
    fn new(seed: u64, options: LogOptions) -> Self {
        let storage = SimStorage::new(seed);
        let clock = Arc::new(ManualClock::new(1_000));
        let log = Log::open(storage.clone(), ROOT, options, clock.clone()).unwrap();
        for id in 0..SHARDS {
            log.create_shard(ShardLogId(id), id + 1).unwrap();
        }
        Self {
            storage,
            clock,
            options,
            log: Some(log),
            model: (0..SHARDS).map(|_| ModelShard::default()).collect(),
            next_payload: 0,
        }
    }

    fn log(&self) -> &Log {
        self.log.as_ref().unwrap()
    }

    fn reopen(&mut self) {
        let log = Log::open(self.storage.clone(), ROOT, self.options, self.clock.clone()).unwrap();
        // The trim point is not persisted: the layer above re-applies retention at start.
        for (id, m) in self.model.iter().enumerate() {
            log.shard(ShardLogId(id as u64))
                .unwrap()
                .trim_before(m.trim_before_ms)
                .unwrap();
        }
        self.log = Some(log);
    }

    fn read_all(&self, shard: u64) -> ReadBatch {
        let s = self.log().shard(ShardLogId(shard)).unwrap();
        let limits = ReadLimits {
            max_records: usize::MAX,
            max_bytes: usize::MAX,
        };
        s.read(s.cursor(StartingPosition::TrimHorizon).unwrap(), limits)
            .unwrap()
    }

    fn make_batch(&mut self, sizes: &[usize]) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let payloads: Vec<Vec<u8>> = sizes
            .iter()
            .map(|&n| {
                self.next_payload += 1;
                let mut p = self.next_payload.to_le_bytes().to_vec();
                p.resize(n.max(8), (self.next_payload % 251) as u8);
                p
            })
            .collect();
        let keys: Vec<Vec<u8>> = payloads
            .iter()
            .map(|p| format!("k{}", p[0]).into_bytes())
            .collect();
        (payloads, keys)
    }

    fn record(
        &mut self,
        shard: u64,
        payloads: Vec<Vec<u8>>,
        keys: Vec<Vec<u8>>,
        result: Result<sluice_log::AppendReceipt, AppendError>,
    ) {
        let m = &mut self.model[shard as usize];
        match result {
            Ok(receipt) => {
                assert!(m.ending.is_none(), "append to a closed shard succeeded");
                let last = m.records.last().map(|r| (r.sequence, r.timestamp_ms));
                for (i, (d, k)) in payloads.into_iter().zip(keys).enumerate() {
                    m.records.push(ModelRecord {
                        sequence: receipt.sequence(i),
                        timestamp_ms: receipt.arrival_timestamp_ms,
                        key: k,
                        data: d,
                    });
                }
                if let Some((seq, ts)) = last {
                    assert!(receipt.sequence(0) > seq, "sequence numbers must increase");
                    assert!(receipt.arrival_timestamp_ms >= ts);
                }
                if self.options.durability == Durability::Sync {
                    m.durable = m.records.len();
                }
            }
            Err(AppendError::Closed { ending_sequence }) => {
                assert_eq!(Some(ending_sequence), m.ending)
            }
            Err(e) => panic!("append failed: {e}"),
        }
    }

    fn apply(&mut self, op: &Op) {
        match op.clone() {
            Op::Append { shard, sizes } => {
                let (payloads, keys) = self.make_batch(&sizes);
                let batch = as_records(&payloads, &keys);
                let s = self.log().shard(ShardLogId(shard)).unwrap();
                let result = s.append(&batch);
                self.record(shard, payloads, keys, result);
            }
            Op::AppendAll { sizes } => {
                let batches: Vec<_> = (0..SHARDS).map(|_| self.make_batch(&sizes)).collect();
                let records: Vec<Vec<AppendRecord<'_>>> =
                    batches.iter().map(|(p, k)| as_records(p, k)).collect();
                let logs: Vec<_> = (0..SHARDS)
                    .map(|i| self.log().shard(ShardLogId(i)).unwrap())
                    .collect();
                let pairs: Vec<(&sluice_log::ShardLog, &[AppendRecord<'_>])> = logs
                    .iter()
                    .zip(&records)
                    .map(|(l, r)| (&**l, &r[..]))
                    .collect();
                let results = self.log().append_many(&pairs);
                drop(pairs);
                drop(records);
                for ((shard, (payloads, keys)), result) in (0..SHARDS).zip(batches).zip(results) {
                    self.record(shard, payloads, keys, result);
                }
            }
            Op::Checkpoint => {
                self.log().checkpoint().unwrap();
            }
            Op::Read {
                shard,
                start,
                max_records,
                max_bytes,
            } => self.check_read(shard, start, max_records, max_bytes),
            Op::AdvanceClock(ms) => self.clock.advance_ms(ms),
            Op::Trim { shard, age_ms } => {
                let cutoff = self.clock.now_ms().saturating_sub(age_ms);
                let m = &mut self.model[shard as usize];
                m.trim_before_ms = m.trim_before_ms.max(cutoff);
                let s = self.log().shard(ShardLogId(shard)).unwrap();
                s.trim_before(cutoff).unwrap();
            }
            Op::Close { shard } => {
                let s = self.log().shard(ShardLogId(shard)).unwrap();
                let ending = s.close().unwrap();
                let m = &mut self.model[shard as usize];
                if let Some(prev) = m.ending {
                    assert_eq!(prev, ending);
                }
                assert!(m.records.last().is_none_or(|r| r.sequence < ending));
                m.ending = Some(ending);
                m.durable = m.records.len();
            }
            Op::Flush => {
                assert!(self.log().flush());
                for m in &mut self.model {
                    m.durable = m.records.len();
                }
            }
            Op::Reopen => {
                assert!(self.log().flush());
                self.log = None;
                for m in &mut self.model {
                    m.durable = m.records.len();
                }
                self.reopen();
                self.check_all();
            }
            Op::Crash => {
                self.log = None;
                self.storage.crash();
                self.reopen();
                self.check_after_crash();
            }
            Op::Garble {
                shard,
                file,
                at,
                xor,
            } => self.garble(shard, file, at, xor),
        }
    }

    /// Bit rot in a durable segment: the shard reads up to the damage and
    /// refuses from there on (or, damage in the newest segment's last frame,
    /// cuts it as a torn tail); after repair, every record but those of the
    /// one damaged frame is back, with its sequence number.
    fn garble(&mut self, shard: u64, file: usize, at: u64, xor: u8) {
        assert!(self.log().flush());
        self.log = None;
        for m in &mut self.model {
            m.durable = m.records.len();
        }
        let dir = format!("{ROOT}/shards/{}/", ShardLogId(shard).dir_name());
        let mut segments: Vec<(std::path::PathBuf, u64)> = self
            .storage
            .files()
            .into_iter()
            .filter(|(p, _)| {
                let p = p.to_string_lossy();
                p.starts_with(&dir) && p.ends_with(".seg")
            })
            .collect();
        segments.sort();
        if let Some((path, len)) = segments.get(file % segments.len().max(1)) {
            if *len > 0 {
                assert!(self.storage.garble(path, at % len, xor));
            }
        }
        self.reopen();
        let id = ShardLogId(shard);
        let unlimited = ReadLimits {
            max_records: usize::MAX,
            max_bytes: usize::MAX,
        };
        {
            let s = self.log().shard(id).unwrap();
            let m = &self.model[shard as usize];
            let visible = m.visible();
            let start = s.cursor(StartingPosition::TrimHorizon).unwrap();
            let (got, refused) = match s.read(start, unlimited) {
                Ok(batch) => {
                    let rest = s.read(batch.next, unlimited);
                    let refused = match rest {
                        Ok(rest) => {
                            assert!(rest.records.is_empty(), "a second read found more");
                            false
                        }
                        Err(ReadError::Quarantined(_)) => true,
                        Err(e) => panic!("unexpected read error {e}"),
                    };
                    (batch.records, refused)
                }
                Err(ReadError::Quarantined(_)) => (Vec::new(), true),
                Err(e) => panic!("unexpected read error {e}"),
            };
            assert!(got.len() <= visible.len());
            for (g, want) in got.iter().zip(&visible) {
                assert_eq!(g.sequence, want.sequence, "not a prefix before the damage");
                assert_eq!(&g.data[..], &want.data[..], "a damaged record was returned");
            }
            if refused {
                assert!(s.info().damage.is_some(), "refused without quarantine");
            }
            if let Some(damage) = s.info().damage {
                assert!(got
                    .last()
                    .is_none_or(|r| r.sequence < damage.first_sequence()));
                let rec = AppendRecord {
                    partition_key: b"k",
                    data: b"x",
                    flags: 0,
                };
                assert!(matches!(s.append(&[rec]), Err(AppendError::Quarantined(_))));
            }
        }
        // Repair, offline, then every record that is not itself damaged is back.
        self.log = None;
        sluice_log::inspect::repair(self.storage.clone(), std::path::Path::new(ROOT), false)
            .unwrap();
        self.reopen();
        for shard in 0..SHARDS {
            let s = self.log().shard(ShardLogId(shard)).unwrap();
            assert_eq!(s.info().damage, None, "still quarantined after repair");
            let got = s
                .read(s.cursor(StartingPosition::TrimHorizon).unwrap(), unlimited)
                .unwrap();
            let m = &mut self.model[shard as usize];
            let visible: Vec<ModelRecord> = m.visible().into_iter().cloned().collect();
            let mut got_iter = got.records.iter().peekable();
            let mut missing = Vec::new();
            for want in &visible {
                match got_iter.peek() {
                    Some(g) if g.sequence == want.sequence => {
                        assert_eq!(&g.data[..], &want.data[..], "record changed by repair");
                        assert_eq!(&g.partition_key[..], &want.key[..]);
                        got_iter.next();
                    }
                    _ => missing.push(want.sequence),
                }
            }
            assert!(got_iter.next().is_none(), "records appeared from nowhere");
            // Only the damaged frame's records (one batch) may be gone.
            assert!(
                missing.windows(2).all(|w| w[0] >> 16 == w[1] >> 16),
                "records of more than one frame lost: {missing:?}"
            );
            let missing_frame = missing.first().map(|s| s >> 16);
            m.records
                .retain(|r| Some(r.sequence >> 16) != missing_frame);
            m.durable = m.records.len();
            let ending = s.info().ending_sequence;
            if ending != m.ending {
                // Only a damaged close frame (the newest's last) is cut.
                assert_eq!(ending, None);
                assert!(missing.is_empty());
                m.ending = None;
            }
        }
    }

    /// After a crash each shard holds a prefix of what was appended: at least
    /// everything durable, whole batches only, nothing corrupt.
    fn check_after_crash(&mut self) {
        for shard in 0..SHARDS {
            let got = self.read_all(shard);
            let m = &mut self.model[shard as usize];
            let visible = m.visible();
            assert!(
                got.records.len() <= visible.len(),
                "records appeared from nowhere"
            );
            for (g, want) in got.records.iter().zip(&visible) {
                assert_eq!(g.sequence, want.sequence);
                assert_eq!(&g.data[..], &want.data[..], "corrupt record returned");
                assert_eq!(&g.partition_key[..], &want.key[..]);
            }
            let durable_visible = m.records[..m.durable]
                .iter()
                .filter(|r| r.timestamp_ms >= m.trim_before_ms)
                .count();
            assert!(
                got.records.len() >= durable_visible,
                "lost durable records: {} < {durable_visible}",
                got.records.len()
            );
            let kept = match got.records.last() {
                Some(last) => {
                    m.records
                        .iter()
                        .position(|r| r.sequence == last.sequence)
                        .unwrap()
                        + 1
                }
                None => m.durable.min(
                    m.records
                        .iter()
                        .position(|r| r.timestamp_ms >= m.trim_before_ms)
                        .unwrap_or(m.records.len()),
                ),
            };
            let kept = kept.max(m.durable);
            // Whole batches only: a kept record's batch-mates are kept too.
            if let Some(next) = m.records.get(kept) {
                if let Some(prev) = kept.checked_sub(1).map(|i| &m.records[i]) {
                    let same_batch = (prev.sequence >> 16) == (next.sequence >> 16);
                    assert!(
                        !same_batch || got.records.is_empty(),
                        "half a batch survived"
                    );
                }
            }
            m.records.truncate(kept);
            m.durable = kept;
            let ending = m.ending;
            let s = self.log().shard(ShardLogId(shard)).unwrap();
            assert_eq!(s.info().ending_sequence, ending);
        }
    }

    fn check_all(&self) {
        for shard in 0..SHARDS {
            let got = self.read_all(shard);
            let m = &self.model[shard as usize];
            let want = m.visible();
            assert_eq!(got.records.len(), want.len());
            for (g, w) in got.records.iter().zip(&want) {
                assert_eq!((g.sequence, &g.data[..]), (w.sequence, &w.data[..]));
            }
            assert_eq!(got.end_of_shard, m.ending.is_some());
        }
    }

    fn check_read(&self, shard: u64, start: Start, max_records: usize, max_bytes: usize) {
        let m = &self.model[shard as usize];
        let visible = m.visible();
        let s = self.log().shard(ShardLogId(shard)).unwrap();
        let (position, expect_from) = match start {
            Start::TrimHorizon => (StartingPosition::TrimHorizon, 0),
            Start::Latest => (StartingPosition::Latest, visible.len()),
            Start::At(n) | Start::After(n) if visible.is_empty() => {
                let _ = n;
                (StartingPosition::TrimHorizon, 0)
            }
            Start::At(n) => (
                StartingPosition::AtSequence(visible[n % visible.len()].sequence),
                n % visible.len(),
            ),
            Start::After(n) => (
                StartingPosition::AfterSequence(visible[n % visible.len()].sequence),
                n % visible.len() + 1,
            ),
            Start::Timestamp(t) => (
                StartingPosition::AtTimestamp(t + 900),
                visible
                    .iter()
                    .position(|r| r.timestamp_ms >= t + 900)
                    .unwrap_or(visible.len()),
            ),
        };
        let cursor = s.cursor(position).unwrap();
        let limits = ReadLimits {
            max_records,
            max_bytes,
        };
        let got = s.read(cursor, limits).unwrap();
        let mut expected = Vec::new();
        let mut bytes = 0;
        for r in &visible[expect_from..] {
            let size = r.key.len() + r.data.len();
            if expected.len() >= max_records || (!expected.is_empty() && bytes + size > max_bytes) {
                break;
            }
            bytes += size;
            expected.push(r.sequence);
        }
        assert_eq!(
            got.records.iter().map(|r| r.sequence).collect::<Vec<_>>(),
            expected,
            "{position:?}"
        );
        for (g, w) in got.records.iter().zip(&visible[expect_from..]) {
            assert_eq!(&g.data[..], &w.data[..]);
            assert_eq!(g.arrival_timestamp_ms, w.timestamp_ms);
        }
        // Continuing from `next` yields exactly the rest.
        let rest = s
            .read(
                got.next,
                ReadLimits {
                    max_records: usize::MAX,
                    max_bytes: usize::MAX,
                },
            )
            .unwrap();
        let rest_expected: Vec<u128> = visible[expect_from + expected.len()..]
            .iter()
            .map(|r| r.sequence)
            .collect();
        assert_eq!(
            rest.records.iter().map(|r| r.sequence).collect::<Vec<_>>(),
            rest_expected
        );
        assert_eq!(rest.end_of_shard, m.ending.is_some());
        if !rest_expected.is_empty() && !got.records.is_empty() {
            assert!(
                got.millis_behind_latest > 0
                    || visible.last().unwrap().timestamp_ms
                        == visible[expect_from + expected.len()].timestamp_ms
            );
        }
    }
}

fn as_records<'a>(payloads: &'a [Vec<u8>], keys: &'a [Vec<u8>]) -> Vec<AppendRecord<'a>> {
    payloads
        .iter()
        .zip(keys)
        .map(|(d, k)| AppendRecord {
            partition_key: k,
            data: d,
            flags: 0,
        })
        .collect()
}

fn run(seed: u64, segment_bytes: u64, durability: Durability, ops: &[Op]) {
    let options = LogOptions {
        segment_bytes,
        durability,
        open_files_max: 3,
        // Small journal files, so that entries cross into new files (and
        // some frames need a file of their own); checkpoints only when the
        // test says, so that a run is reproducible.
        journal_file_bytes: 4096 + 64,
        checkpoint_bytes: u64::MAX,
        checkpoint_interval_ms: 0,
        journal_spares: false,
        // Little written behind, so that appends flush now and then too.
        pending_bytes_max: 2048,
        // Crashes tear the journal's tail only: damage is never to be cut.
        cut_damaged_journal: false,
    };
    let mut h = Harness::new(seed, options);
    for op in ops {
        h.apply(op);
    }
    h.apply(&Op::Crash);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn interval_mode_matches_the_model(seed in any::<u64>(), segment_bytes in 256u64..8192, ops in prop::collection::vec(op(), 1..80)) {
        run(seed, segment_bytes, Durability::Interval { fsync_interval_ms: 3_600_000 }, &ops);
    }

    #[test]
    fn sync_mode_matches_the_model_and_loses_nothing(seed in any::<u64>(), segment_bytes in 256u64..8192, ops in prop::collection::vec(op(), 1..80)) {
        run(seed, segment_bytes, Durability::Sync, &ops);
    }
}
