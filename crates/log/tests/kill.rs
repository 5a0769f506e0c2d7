//! A real process appends in a loop and is killed with SIGKILL at random
//! moments, 60 times; after each kill every acknowledged record reads back
//! intact and in order, and no corrupt record is ever returned.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use sluice_log::{Log, LogOptions, OsStorage, ReadLimits, ShardLogId, StartingPosition};
use sluice_model::SystemClock;

const KILLS: u32 = 60;

/// Parses and verifies one record written by the torture binary.
fn parse(data: &[u8]) -> (u32, u32, u64) {
    assert!(data.len() >= 20, "record too short: corrupt");
    let run = u32::from_le_bytes(data[0..4].try_into().unwrap());
    let thread = u32::from_le_bytes(data[4..8].try_into().unwrap());
    let counter = u64::from_le_bytes(data[8..16].try_into().unwrap());
    let filler = u32::from_le_bytes(data[16..20].try_into().unwrap()) as usize;
    assert_eq!(
        data.len(),
        20 + filler,
        "record length does not match its header: corrupt"
    );
    let mut x =
        counter.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(run) ^ (u64::from(thread) << 40);
    for &b in &data[20..] {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        assert_eq!(b, x as u8, "filler differs: corrupt record returned");
    }
    (run, thread, counter)
}

#[test]
fn acknowledged_records_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = fastrand::Rng::with_seed(0x51u64 ^ u64::from(std::process::id()));
    // (run, thread) -> highest acknowledged counter + 1
    let mut acked: HashMap<(u32, u32), u64> = HashMap::new();
    let mut total_acks = 0u64;
    for run in 0..KILLS {
        let mode = if run % 2 == 0 { "sync" } else { "interval" };
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice-log-torture"))
            .args([
                dir.path().to_str().unwrap(),
                &run.to_string(),
                mode,
                &rng.u64(..).to_string(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // Kill after a random number of acknowledgements; sometimes during startup.
        let kill_after = if rng.u8(0..8) == 0 {
            0
        } else {
            rng.u64(1..400)
        };
        let mut seen = 0;
        if kill_after > 0 {
            for line in lines.by_ref() {
                let line = line.unwrap();
                let f: Vec<&str> = line.split(' ').collect();
                if f[0] != "ACK" {
                    continue;
                }
                let (thread, first, count): (u32, u64, u64) = (
                    f[3].parse().unwrap(),
                    f[4].parse().unwrap(),
                    f[5].parse().unwrap(),
                );
                let e = acked.entry((run, thread)).or_default();
                *e = (*e).max(first + count);
                seen += 1;
                total_acks += 1;
                if seen >= kill_after {
                    break;
                }
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        // Lines already written by the child before it died were acknowledged too.
        for line in lines.map_while(Result::ok) {
            let f: Vec<&str> = line.split(' ').collect();
            if f[0] == "ACK" {
                let (thread, first, count): (u32, u64, u64) = (
                    f[3].parse().unwrap(),
                    f[4].parse().unwrap(),
                    f[5].parse().unwrap(),
                );
                let e = acked.entry((run, thread)).or_default();
                *e = (*e).max(first + count);
            }
        }
        verify(dir.path(), &acked);
    }
    assert!(
        total_acks > 1000,
        "too few acknowledged appends ({total_acks}) to mean much"
    );
}

fn verify(dir: &std::path::Path, acked: &HashMap<(u32, u32), u64>) {
    let report = sluice_log::inspect::check(dir).unwrap();
    assert_eq!(
        report.corruptions().count(),
        0,
        "{:?}",
        report.corruptions().collect::<Vec<_>>()
    );
    let log = Log::open(
        Arc::new(OsStorage),
        dir,
        LogOptions::default(),
        Arc::new(SystemClock),
    )
    .unwrap();
    // (run, thread) -> every counter found, across shards
    let mut found: BTreeMap<(u32, u32), Vec<u64>> = BTreeMap::new();
    for id in log.shard_ids() {
        let shard = log.shard(id).unwrap();
        let mut cursor = shard.cursor(StartingPosition::TrimHorizon).unwrap();
        let mut last_in_shard: HashMap<(u32, u32), u64> = HashMap::new();
        let mut last_seq = 0;
        loop {
            let batch = shard
                .read(
                    cursor,
                    ReadLimits {
                        max_records: 1000,
                        max_bytes: 1 << 20,
                    },
                )
                .unwrap();
            for r in &batch.records {
                assert!(
                    r.sequence > last_seq,
                    "sequence numbers out of order in {id:?}"
                );
                last_seq = r.sequence;
                let (run, thread, counter) = parse(&r.data);
                if let Some(prev) = last_in_shard.insert((run, thread), counter) {
                    assert!(
                        counter > prev,
                        "records of one writer out of order in shard {id:?}"
                    );
                }
                found.entry((run, thread)).or_default().push(counter);
            }
            if batch.records.is_empty() {
                break;
            }
            cursor = batch.next;
        }
        assert!(id.0 < 4, "unexpected shard {id:?}");
        let _ = ShardLogId(id.0);
    }
    for (&(run, thread), &want) in acked {
        let mut counters = found.get(&(run, thread)).cloned().unwrap_or_default();
        counters.sort_unstable();
        // Contiguous from 0: a writer's batch k+1 starts only after batch k is acknowledged.
        for (i, c) in counters.iter().enumerate() {
            assert_eq!(
                *c, i as u64,
                "run {run} thread {thread}: gap or duplicate at {i}"
            );
        }
        assert!(
            counters.len() as u64 >= want,
            "run {run} thread {thread}: acknowledged {want} records, found {}",
            counters.len()
        );
    }
}
