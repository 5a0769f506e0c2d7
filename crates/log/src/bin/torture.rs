//! Child process for the kill test (`tests/kill.rs`): appends verifiable
//! records from several threads (to one shard, or to several in one
//! `append_many`) and prints `ACK` lines for acknowledged batches until it is
//! killed. Small journal files, frequent checkpoints and little written
//! behind, so that kills land in file switches, checkpoints and flushes.
//!
//! Usage: `sluice-log-torture DIR RUN_ID sync|interval SEED`
//!
//! Each record's data is `run u32 | thread u32 | counter u64 | len u32 | filler`,
//! where the filler bytes are derived from the header, so a reader can tell an
//! intact record from a corrupt one without knowing what was written.

use std::io::Write;
use std::sync::Arc;

use sluice_log::{AppendRecord, Durability, Log, LogOptions, OsStorage, ShardLogId};
use sluice_model::SystemClock;

const SHARDS: u64 = 4;
const THREADS: u32 = 4;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, run, mode, seed] = &args[..] else {
        eprintln!("usage: sluice-log-torture DIR RUN_ID sync|interval SEED");
        std::process::exit(2);
    };
    let run: u32 = run.parse().expect("RUN_ID");
    let seed: u64 = seed.parse().expect("SEED");
    let durability = match mode.as_str() {
        "sync" => Durability::Sync,
        _ => Durability::Interval {
            fsync_interval_ms: 20,
        },
    };
    let options = LogOptions {
        segment_bytes: 64 << 10,
        durability,
        open_files_max: 8,
        journal_file_bytes: 256 << 10,
        checkpoint_bytes: 512 << 10,
        checkpoint_interval_ms: 20,
        pending_bytes_max: 128 << 10,
        ..LogOptions::default()
    };
    let log = Arc::new(
        Log::open(Arc::new(OsStorage), dir, options, Arc::new(SystemClock)).expect("open"),
    );
    for id in 0..SHARDS {
        if log.shard(ShardLogId(id)).is_none() {
            log.create_shard(ShardLogId(id), id + 1).expect("create");
        }
    }
    println!("READY");
    let threads: Vec<_> = (0..THREADS)
        .map(|thread| {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(seed ^ (u64::from(thread) << 32));
                let mut counter = 0u64;
                loop {
                    // One shard, or two to all of them in one append_many.
                    let mut ids: Vec<u64> = (0..SHARDS).collect();
                    rng.shuffle(&mut ids);
                    let n = if rng.bool() {
                        1
                    } else {
                        rng.usize(2..=SHARDS as usize)
                    };
                    ids.truncate(n);
                    // Counters in id order, the order the journal holds the
                    // frames: a write cut short by the kill keeps a prefix.
                    ids.sort_unstable();
                    let shards: Vec<_> = ids
                        .iter()
                        .map(|&id| log.shard(ShardLogId(id)).unwrap())
                        .collect();
                    let mut firsts = Vec::new();
                    let mut datas: Vec<Vec<Vec<u8>>> = Vec::new();
                    for _ in &shards {
                        let count = rng.usize(1..40);
                        firsts.push((counter, count));
                        datas.push(
                            (0..count)
                                .map(|i| {
                                    record_data(run, thread, counter + i as u64, rng.usize(0..3000))
                                })
                                .collect(),
                        );
                        counter += count as u64;
                    }
                    let batches: Vec<Vec<AppendRecord<'_>>> = datas
                        .iter()
                        .map(|ds| {
                            ds.iter()
                                .map(|d| AppendRecord {
                                    partition_key: b"k",
                                    data: d,
                                    flags: 0,
                                })
                                .collect()
                        })
                        .collect();
                    let pairs: Vec<(&sluice_log::ShardLog, &[AppendRecord<'_>])> = shards
                        .iter()
                        .zip(&batches)
                        .map(|(s, b)| (&**s, &b[..]))
                        .collect();
                    let receipts = log.append_many(&pairs);
                    let mut out = std::io::stdout().lock();
                    for ((shard, (first, count)), receipt) in
                        shards.iter().zip(&firsts).zip(receipts)
                    {
                        let receipt = receipt.expect("append");
                        let line = format!(
                            "ACK {} {run} {thread} {first} {count} {}\n",
                            shard.id().0,
                            receipt.sequence(0)
                        );
                        out.write_all(line.as_bytes()).unwrap();
                    }
                    out.flush().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

/// The bytes of one record: a header and a filler derived from it.
pub fn record_data(run: u32, thread: u32, counter: u64, filler: usize) -> Vec<u8> {
    let mut d = Vec::with_capacity(20 + filler);
    d.extend_from_slice(&run.to_le_bytes());
    d.extend_from_slice(&thread.to_le_bytes());
    d.extend_from_slice(&counter.to_le_bytes());
    d.extend_from_slice(&(filler as u32).to_le_bytes());
    let mut x =
        counter.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(run) ^ (u64::from(thread) << 40);
    for _ in 0..filler {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        d.push(x as u8);
    }
    d
}
