//! Delivery across power loss: the engine and Firehose on the log's
//! simulated disk (`SimStorage`, where only fsynced bytes and synced
//! directory entries survive), records put and delivered in random rounds,
//! some deliveries failing on injected fsync errors, then a crash. After a
//! restart every acknowledged record is delivered: in an object that
//! survived, or again from the log. None is lost; an object that survived
//! is whole.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sluice_firehose::Firehose;
use sluice_log::{SimStorage, Storage};
use sluice_meta::Scope;
use sluice_model::ManualClock;
use sluice_streams::{Config, Engine};

fn scope() -> Scope {
    Scope::new("000000000000", "us-east-1")
}

struct Server {
    engine: Arc<Engine>,
    firehose: Arc<Firehose>,
}

fn open(
    sim: &Arc<SimStorage>,
    dir: &Path,
    clock: &Arc<ManualClock>,
    rt: &tokio::runtime::Runtime,
) -> Server {
    let config = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    let engine = Arc::new(Engine::open_with(config, clock.clone(), sim.clone()).unwrap());
    let firehose =
        Arc::new(Firehose::open(engine.clone(), sim.clone(), dir.to_path_buf()).unwrap());
    let f = firehose.clone();
    let handle = rt.handle().clone();
    rt.block_on(async move { tokio::task::spawn_blocking(move || f.start(handle)).await })
        .unwrap();
    Server { engine, firehose }
}

impl Server {
    /// Moves the clock and waits for the deliveries it makes due.
    fn advance(&self, clock: &ManualClock, ms: u64, rt: &tokio::runtime::Runtime) {
        clock.advance_ms(ms);
        assert!(rt.block_on(self.firehose.settle(Duration::from_secs(30))));
    }

    /// Stops the tasks, as a crash would (their state is in memory only).
    fn stop(self, rt: tokio::runtime::Runtime) {
        self.engine
            .stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        rt.shutdown_timeout(Duration::from_secs(10));
    }
}

/// Every file under `dir` on the simulated disk, with its bytes.
fn objects(sim: &SimStorage, dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(names) = sim.list_dir(dir) else {
        return out;
    };
    for name in names {
        let path = dir.join(name);
        if sim.list_dir(&path).is_ok() {
            out.extend(objects(sim, &path));
        } else {
            let file = sim.open_file(&path).unwrap();
            let mut bytes = vec![0; file.len().unwrap() as usize];
            let n = file.read_full_at(&mut bytes, 0).unwrap();
            bytes.truncate(n);
            out.push((path, bytes));
        }
    }
    out
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn no_acknowledged_record_is_lost_to_power_loss() {
    for seed in 0..8u64 {
        let sim = SimStorage::new(seed);
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut acked: Vec<String> = Vec::new();
        let rt = runtime();
        let server = open(&sim, dir.path(), &clock, &rt);
        server
            .firehose
            .call(
                &scope(),
                "CreateDeliveryStream",
                &json!({
                    "DeliveryStreamName": "d",
                    "S3DestinationConfiguration": {
                        "RoleARN": "arn:aws:iam::000000000000:role/r",
                        "BucketARN": "arn:aws:s3:::b",
                        "Prefix": "p/!{timestamp:yyyy/MM/dd/HH/mm}/",
                        "ErrorOutputPrefix": "e/!{firehose:error-output-type}/",
                        "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 60},
                    },
                }),
            )
            .unwrap();
        let mut n = 0;
        for _ in 0..rng.usize(1..6) {
            let batch: Vec<String> = (0..rng.usize(1..40))
                .map(|_| {
                    n += 1;
                    format!("{seed}-{n:06}\n")
                })
                .collect();
            let records: Vec<_> = batch
                .iter()
                .map(|r| json!({"Data": base64_of(r.as_bytes())}))
                .collect();
            let out = server
                .firehose
                .call(
                    &scope(),
                    "PutRecordBatch",
                    &json!({"DeliveryStreamName": "d", "Records": records}),
                )
                .unwrap();
            assert_eq!(out["FailedPutCount"], 0);
            acked.extend(batch);
            match rng.u8(..4) {
                // Deliver (a new minute: a new directory).
                0 | 1 => server.advance(&clock, 60_000, &rt),
                // A delivery whose fsync fails: retried later.
                2 => {
                    sim.fail_next_syncs(1);
                    server.advance(&clock, 60_000, &rt);
                }
                _ => {}
            }
        }
        server.stop(rt);
        sim.crash();
        let root = dir.path().join("s3").join("b");
        // What survived the crash is whole: records end where objects end.
        for (path, bytes) in objects(&sim, &root) {
            assert!(bytes.ends_with(b"\n"), "{} is torn", path.display());
        }
        // After a restart, what was not delivered durably is delivered.
        let rt = runtime();
        let server = open(&sim, dir.path(), &clock, &rt);
        server.advance(&clock, 3_600_000, &rt);
        let mut seen = std::collections::BTreeMap::<String, usize>::new();
        for (_, bytes) in objects(&sim, &root) {
            for line in String::from_utf8(bytes).unwrap().lines() {
                *seen.entry(format!("{line}\n")).or_default() += 1;
            }
        }
        let lost: Vec<_> = acked.iter().filter(|r| !seen.contains_key(*r)).collect();
        assert!(lost.is_empty(), "seed {seed}: lost {lost:?}");
        server.stop(rt);
    }
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
