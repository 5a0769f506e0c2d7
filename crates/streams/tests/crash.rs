//! The catalog survives crashes: the engine on the log's simulated disk
//! (`SimStorage`), control-plane changes (create, delete, split) with
//! injected write and fsync failures, then power loss at the end of each
//! round. After every crash the catalog is the last one acknowledged, or
//! (when the round's last change failed) the one that change would have
//! made; every shard it names has its shard log, and no other shard log is
//! left.

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_aws::kinesis::{self as k, Request};
use sluice_log::SimStorage;
use sluice_model::ManualClock;
use sluice_streams::ops::{self, Begun};
use sluice_streams::{Config, Engine};

const ACCOUNT: &str = "000000000000";

/// Stream name -> shards (open and closed), as the catalog should list them.
type Model = BTreeMap<String, usize>;

#[derive(Debug, Clone)]
enum Change {
    Create(String, usize),
    Delete(String),
    Split(String),
}

impl Change {
    fn request(&self) -> Request {
        match self {
            Change::Create(name, shards) => Request::CreateStream(k::CreateStreamInput {
                stream_name: name.clone(),
                shard_count: Some(*shards as i64),
                ..Default::default()
            }),
            Change::Delete(name) => Request::DeleteStream(k::DeleteStreamInput {
                stream_name: Some(name.clone()),
                ..Default::default()
            }),
            Change::Split(name) => Request::SplitShard(k::SplitShardInput {
                stream_name: Some(name.clone()),
                shard_to_split: "shardId-000000000000".into(),
                new_starting_hash_key: (1u128 << 126).to_string(),
                ..Default::default()
            }),
        }
    }

    /// The model after the change, if it can succeed.
    fn apply(&self, model: &Model) -> Option<Model> {
        let mut next = model.clone();
        match self {
            Change::Create(name, shards) => {
                if next.insert(name.clone(), *shards).is_some() {
                    return None;
                }
            }
            Change::Delete(name) => {
                next.remove(name)?;
            }
            Change::Split(name) => {
                let shards = next.get_mut(name)?;
                // Shard 0 can be split once; its children come after it.
                if *shards != 1 && *shards != 2 {
                    return None;
                }
                *shards += 2;
            }
        }
        Some(next)
    }
}

fn catalog_of(engine: &Engine) -> Model {
    engine
        .catalog()
        .streams()
        .map(|s| (s.name.clone(), s.shards.len()))
        .collect()
}

/// Every shard the catalog names has its log; no other log is left.
fn check_logs(engine: &Engine) {
    let catalog = engine.catalog();
    let named: std::collections::BTreeSet<u64> = catalog
        .streams()
        .flat_map(|s| s.shards.iter().map(|sh| sh.log_id))
        .collect();
    for id in &named {
        assert!(engine.shard_log(*id).is_some(), "shard log {id} missing");
    }
    let on_disk: std::collections::BTreeSet<u64> =
        engine.log().shard_ids().iter().map(|id| id.0).collect();
    assert_eq!(on_disk, named, "shard logs on disk vs the catalog");
}

fn open(sim: &Arc<SimStorage>, dir: &std::path::Path) -> Engine {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let config = Config {
        data_dir: dir.to_path_buf(),
        enforce_limits: false,
        // Small files: the simulated disk holds every byte in memory.
        journal_file_bytes: 256 << 10,
        segment_bytes: 64 << 10,
        ..Config::default()
    };
    Engine::open_with(config, clock, sim.clone()).expect("the engine opens after a crash")
}

#[test]
fn the_catalog_is_the_last_acknowledged_after_any_crash() {
    // Changes refused under a failing disk, and how many of those survived.
    let (mut refused, mut survived) = (0, 0);
    for seed in 0..40u64 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let sim = SimStorage::new(seed);
        let dir = tempfile::tempdir().unwrap();
        let mut model = Model::new();
        for round in 0..6 {
            let engine = open(&sim, dir.path());
            assert_eq!(catalog_of(&engine), model, "seed {seed} round {round}");
            check_logs(&engine);
            let mut alternative = None;
            for step in 0..rng.usize(1..6) {
                let name = format!("s{}", rng.u8(0..4));
                let change = match rng.u8(0..3) {
                    0 => Change::Create(name, rng.usize(1..3)),
                    1 => Change::Delete(name),
                    _ => Change::Split(name),
                };
                // The round's last change may meet a failing disk.
                let last = step > 0 && rng.u8(0..3) == 0;
                if last {
                    match rng.u8(0..2) {
                        0 => sim.fail_next_syncs(1),
                        _ => sim.fail_next_writes(1),
                    }
                }
                let result = ops::dispatch(
                    change.request(),
                    &engine,
                    sluice_meta::Scope::new(ACCOUNT, "us-east-1"),
                );
                match (result, change.apply(&model)) {
                    // Acknowledged: durable, whatever failed around it.
                    (Ok(Begun::Answer(_)), Some(next)) => model = next,
                    (Ok(Begun::Answer(_)), None) => {
                        panic!("seed {seed}: {change:?} succeeded against the model")
                    }
                    (Ok(other), _) => panic!("seed {seed}: {change:?} answered {other:?}"),
                    // Refused under a failing disk: either outcome may be
                    // what survives.
                    (Err(_), Some(next)) if last => {
                        refused += 1;
                        alternative = Some(next);
                    }
                    (Err(e), Some(_)) => {
                        panic!("seed {seed}: {change:?} failed: {}", e.message)
                    }
                    (Err(_), None) => {}
                }
                if last {
                    break;
                }
            }
            drop(engine);
            sim.crash();
            let engine = open(&sim, dir.path());
            let found = catalog_of(&engine);
            match alternative {
                Some(next) if found == next => {
                    survived += 1;
                    model = next;
                }
                _ => assert_eq!(found, model, "seed {seed} round {round}: after the crash"),
            }
            check_logs(&engine);
        }
    }
    // The faults did reach changes (else this test would prove nothing).
    assert!(
        refused >= 10,
        "{refused} changes refused, {survived} of them survived"
    );
}
