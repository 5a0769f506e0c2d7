//! Storage-engine throughput, next to the raw bandwidth of the same disk.
//!
//! - `raw_disk`: 1 MiB writes, each followed by `fdatasync`, in the same
//!   directory the logs use: the ceiling for durable appends.
//! - `append/{size}B/batch{n}/{shards}shards`: 64 threads append batches to
//!   shard logs in [`Durability::Sync`] mode (every append acknowledged only
//!   once fsynced; rounds shared across shards).
//! - `read/1KiB`: one shard read back from the page cache, 10 MiB per call.
//!
//! The directory is `$SLUICE_BENCH_DIR` or the system temp dir. Throughput is in
//! bytes of record data; records/s = bytes/s divided by the record size.

use std::io::Write;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sluice_log::{
    AppendRecord, Durability, Log, LogOptions, OsStorage, ReadLimits, ShardLog, ShardLogId,
    StartingPosition,
};
use sluice_model::SystemClock;

const THREADS: usize = 64;

fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("SLUICE_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d).unwrap(),
        None => tempfile::tempdir().unwrap(),
    }
}

fn open_log(dir: &tempfile::TempDir, durability: Durability) -> Log {
    let options = LogOptions {
        durability,
        ..LogOptions::default()
    };
    Log::open(
        Arc::new(OsStorage),
        dir.path(),
        options,
        Arc::new(SystemClock),
    )
    .unwrap()
}

fn raw_disk(c: &mut Criterion) {
    let mut group = c.benchmark_group("raw_disk");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    let dir = bench_dir();
    let block = vec![0x5au8; 1 << 20];
    group.throughput(Throughput::Bytes(block.len() as u64));
    group.bench_function("1MiB_write_fdatasync", |b| {
        let mut file = std::fs::File::create(dir.path().join("raw")).unwrap();
        let mut written = 0u64;
        b.iter(|| {
            if written >= 1 << 30 {
                file = std::fs::File::create(dir.path().join("raw")).unwrap();
                written = 0;
            }
            file.write_all(&block).unwrap();
            file.sync_data().unwrap();
            written += block.len() as u64;
        });
    });
    group.finish();
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    for size in [100usize, 1024] {
        for batch in [1usize, 100, 500] {
            for shards in [4u64, 64] {
                // About 16 MiB per iteration for batches, less for single records.
                let target_bytes = if batch == 1 { 1 << 20 } else { 16 << 20 };
                let appends_per_thread = (target_bytes / (size * batch * THREADS)).max(1);
                let records = appends_per_thread * THREADS * batch;
                group.throughput(Throughput::Bytes((records * size) as u64));
                let id =
                    BenchmarkId::from_parameter(format!("{size}B/batch{batch}/{shards}shards"));
                group.bench_function(id, |b| {
                    let dir = bench_dir();
                    let log = open_log(&dir, Durability::Sync);
                    let logs: Vec<Arc<ShardLog>> = (0..shards)
                        .map(|i| log.create_shard(ShardLogId(i), 1).unwrap())
                        .collect();
                    let data = vec![0xabu8; size];
                    b.iter_custom(|iters| {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            total += run_appenders(&logs, &data, batch, appends_per_thread);
                        }
                        total
                    });
                });
            }
        }
    }
    group.finish();
}

fn run_appenders(
    logs: &[Arc<ShardLog>],
    data: &[u8],
    batch: usize,
    appends_per_thread: usize,
) -> Duration {
    let barrier = Barrier::new(THREADS + 1);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let shard = logs[t % logs.len()].clone();
            let barrier = &barrier;
            s.spawn(move || {
                let key = format!("partition-{t}");
                let records: Vec<_> = (0..batch)
                    .map(|_| AppendRecord {
                        partition_key: key.as_bytes(),
                        data,
                        flags: 0,
                    })
                    .collect();
                barrier.wait();
                for _ in 0..appends_per_thread {
                    shard.append(&records).unwrap();
                }
            });
        }
        barrier.wait();
        let start = Instant::now();
        // Leaving the scope joins every appender.
        start
    })
    .elapsed()
}

fn read(c: &mut Criterion) {
    let mut group = c.benchmark_group("read");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    let dir = bench_dir();
    let log = open_log(
        &dir,
        Durability::Interval {
            fsync_interval_ms: 1000,
        },
    );
    let shard = log.create_shard(ShardLogId(0), 1).unwrap();
    let data = vec![0x42u8; 1024];
    let batch: Vec<_> = (0..500)
        .map(|_| AppendRecord {
            partition_key: b"partition",
            data: &data,
            flags: 0,
        })
        .collect();
    let batches = 512; // 250 MiB of record data
    for _ in 0..batches {
        shard.append(&batch).unwrap();
    }
    let total_bytes = (batches * batch.len() * data.len()) as u64;
    group.throughput(Throughput::Bytes(total_bytes));
    let limits = ReadLimits {
        max_records: 10_000,
        max_bytes: 10 << 20,
    };
    group.bench_function("1KiB/one_shard_from_page_cache", |b| {
        b.iter(|| {
            let mut cursor = shard.cursor(StartingPosition::TrimHorizon).unwrap();
            let mut read = 0u64;
            loop {
                let r = shard.read(cursor, limits).unwrap();
                if r.records.is_empty() {
                    break;
                }
                read += r.records.iter().map(|r| r.data.len() as u64).sum::<u64>();
                cursor = r.next;
            }
            assert_eq!(read, total_bytes);
        });
    });
    group.finish();
    let _ = std::io::stdout().flush();
}

criterion_group!(benches, raw_disk, append, read);
criterion_main!(benches);
