//! The client crate against Sluice started in-process on port 0.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_aws::kinesis as k;
use sluice_client::consumer::{self, Batch, Checkpoint, ConsumerConfig, Handler, StartingPosition};
use sluice_client::producer::{Producer, ProducerConfig, PutError, Record};
use sluice_client::{kpl, Api, Target};
use sluice_server::{Config, Server};

async fn start(limits: bool) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        enforce_limits: limits,
        ..Config::default()
    };
    // Few records per second per shard, so that a short test is throttled.
    config.capacity.write_records_per_s = 200;
    let server = Server::start(config, Arc::new(sluice_model::SystemClock))
        .await
        .unwrap();
    (server, dir)
}

fn target(server: &Server) -> Target {
    Target {
        endpoint: format!("http://{}", server.local_addr()),
        region: "us-east-1".into(),
        access_key: "AKIDCLIENT".into(),
        secret_key: "secret".into(),
        session_token: None,
    }
}

async fn create(server: &Server, stream: &str, shards: i64) -> Api {
    let mut api = Api::connect(Arc::new(target(server))).await.unwrap();
    let _: serde_json::Value = api
        .call(
            "CreateStream",
            &k::CreateStreamInput {
                stream_name: stream.into(),
                shard_count: Some(shards),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    api
}

/// UpdateShardCount, uniform scaling.
async fn reshard(api: &mut Api, stream: &str, shards: i64) {
    let _: serde_json::Value = api
        .call(
            "UpdateShardCount",
            &k::UpdateShardCountInput {
                stream_name: Some(stream.into()),
                target_shard_count: shards,
                scaling_type: k::ScalingType::UniformScaling,
                ..Default::default()
            },
        )
        .await
        .unwrap();
}

/// Collects what the consumer hands over, and the checkpoints.
#[derive(Clone, Default)]
struct Collect {
    records: Arc<Mutex<Vec<(String, consumer::UserRecord)>>>,
    checkpoints: Arc<Mutex<HashMap<String, Checkpoint>>>,
    /// Fail after this many records (a crash of the consuming program).
    stop_after: Option<usize>,
}

impl Handler for Collect {
    async fn records(&mut self, batch: Batch) -> anyhow::Result<()> {
        let mut records = self.records.lock().unwrap();
        if self.stop_after.is_some_and(|n| records.len() >= n) {
            anyhow::bail!("stopped");
        }
        for r in batch.records {
            records.push((batch.shard_id.clone(), r));
        }
        Ok(())
    }

    fn checkpoint(&mut self, shard_id: &str, checkpoint: &Checkpoint) -> anyhow::Result<()> {
        self.checkpoints
            .lock()
            .unwrap()
            .insert(shard_id.to_owned(), checkpoint.clone());
        Ok(())
    }
}

/// Records by partition key, in the order read.
fn by_key(records: &[(String, consumer::UserRecord)]) -> BTreeMap<String, Vec<Vec<u8>>> {
    let mut out: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for (_, r) in records {
        out.entry(r.partition_key.clone())
            .or_default()
            .push(r.data.clone());
    }
    out
}

/// What was sent: key i % keys, data "key/n" with n counting per key.
fn records(count: usize, keys: usize) -> Vec<Record> {
    let mut next = vec![0usize; keys];
    (0..count)
        .map(|i| {
            let key = i % keys;
            let n = next[key];
            next[key] += 1;
            Record::new(
                format!("key-{key}"),
                format!("key-{key}/{n:06}").into_bytes(),
            )
        })
        .collect()
}

/// Equal, or a short account of the first key that differs.
#[track_caller]
fn assert_same(got: &BTreeMap<String, Vec<Vec<u8>>>, want: &BTreeMap<String, Vec<Vec<u8>>>) {
    let count = |m: &BTreeMap<String, Vec<Vec<u8>>>| m.values().map(Vec::len).sum::<usize>();
    assert_eq!(count(got), count(want), "records read and sent");
    for (key, want) in want {
        let text = |v: &[Vec<u8>]| {
            v.iter()
                .map(|d| String::from_utf8_lossy(d).into_owned())
                .collect::<Vec<_>>()
        };
        let got = got.get(key).map(|v| text(v)).unwrap_or_default();
        assert_eq!(got, text(want), "key {key}");
    }
}

fn expected(sent: &[Record]) -> BTreeMap<String, Vec<Vec<u8>>> {
    let mut out: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for r in sent {
        out.entry(r.partition_key.clone())
            .or_default()
            .push(r.data.clone());
    }
    out
}

async fn produce(
    server: &Server,
    config: ProducerConfig,
    sent: &[Record],
) -> Vec<sluice_client::producer::Ack> {
    let producer = Producer::start(target(server), config).await.unwrap();
    let mut receipts = Vec::new();
    for r in sent {
        receipts.push(producer.send(r.clone()).await.unwrap());
    }
    producer.flush().await;
    let mut acks = Vec::new();
    for r in receipts {
        acks.push(r.await.unwrap());
    }
    producer.close().await;
    acks
}

async fn read_all(server: &Server, stream: &str, deaggregate: bool) -> Collect {
    let collect = Collect::default();
    let mut config = ConsumerConfig::new(stream, StartingPosition::TrimHorizon);
    config.deaggregate = deaggregate;
    config.idle_poll = Duration::from_millis(10);
    consumer::consume(target(server), config, collect.clone())
        .await
        .unwrap();
    collect
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_produced_is_consumed_in_order_per_key() {
    let (server, _dir) = start(false).await;
    create(&server, "plain", 3).await;
    let sent = records(3000, 40);
    let mut config = ProducerConfig::new("plain");
    config.ordered = false;
    config.linger = Duration::from_millis(5);
    let acks = produce(&server, config, &sent).await;
    assert!(acks.iter().all(|a| a.sub_sequence_number.is_none()));
    let got = read_all(&server, "plain", true).await;
    let records = got.records.lock().unwrap();
    assert_eq!(records.len(), sent.len());
    // Unordered: each key's records all arrive; sorting gives what was sent.
    let mut keys = by_key(&records);
    for v in keys.values_mut() {
        v.sort();
    }
    assert_same(&keys, &expected(&sent));
    // Every shard was read to the tip; nothing is closed, so no ShardEnd.
    let checkpoints = got.checkpoints.lock().unwrap();
    assert_eq!(checkpoints.len(), 3);
    assert!(checkpoints
        .values()
        .all(|c| matches!(c, Checkpoint::After(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_entries_are_retried_without_reordering_a_key() {
    let (server, _dir) = start(true).await;
    create(&server, "throttled", 1).await;
    // 200 records/s for the shard: 1200 records need several seconds of
    // retries.
    let sent = records(1200, 8);
    let mut config = ProducerConfig::new("throttled");
    config.linger = Duration::from_millis(1);
    config.base_backoff = Duration::from_millis(20);
    config.max_backoff = Duration::from_millis(200);
    config.record_ttl = None;
    let acks = produce(&server, config, &sent).await;
    assert!(
        acks.iter().any(|a| a.attempts > 1),
        "the shard's limit was never reached"
    );
    let got = read_all(&server, "throttled", true).await;
    let records = got.records.lock().unwrap();
    assert_same(&by_key(&records), &expected(&sent));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregated_records_land_on_their_shards_and_come_back() {
    let (server, _dir) = start(false).await;
    create(&server, "agg", 4).await;
    let mut sent = records(5000, 100);
    // Some records name their hash key.
    for (i, r) in sent.iter_mut().enumerate().filter(|(i, _)| i % 7 == 0) {
        r.explicit_hash_key = Some((u128::MAX / 5000 * i as u128).to_string());
    }
    let mut config = ProducerConfig::new("agg");
    config.aggregate = true;
    config.linger = Duration::from_millis(20);
    let acks = produce(&server, config, &sent).await;
    assert!(acks
        .iter()
        .any(|a| a.sub_sequence_number.is_some_and(|s| s > 0)));
    // Read as stored: far fewer Kinesis records, each an aggregate whose
    // user records all hash into the shard it is in.
    let raw = read_all(&server, "agg", false).await;
    let raw = raw.records.lock().unwrap().clone();
    assert!(raw.len() * 10 < sent.len(), "{} stream records", raw.len());
    let mut api = Api::connect(Arc::new(target(&server))).await.unwrap();
    let shards: k::ListShardsOutput = api
        .call(
            "ListShards",
            &k::ListShardsInput {
                stream_name: Some("agg".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let ranges: HashMap<String, (u128, u128)> = shards
        .shards
        .unwrap()
        .into_iter()
        .map(|s| {
            let r = s.hash_key_range;
            (
                s.shard_id,
                (
                    r.starting_hash_key.parse().unwrap(),
                    r.ending_hash_key.parse().unwrap(),
                ),
            )
        })
        .collect();
    let mut users = 0;
    for (shard, r) in raw.iter() {
        let (lo, hi) = ranges[shard];
        let parts = kpl::deaggregate(&r.data)
            .map(|u| {
                u.into_iter()
                    .map(|u| {
                        (
                            u.partition_key.to_owned(),
                            u.explicit_hash_key.map(str::to_owned),
                        )
                    })
                    .collect()
            })
            .unwrap_or_else(|| vec![(r.partition_key.clone(), None)]);
        for (pk, ehk) in parts {
            users += 1;
            let hash = match ehk {
                Some(h) => h.parse().unwrap(),
                None => sluice_client::producer::hash_key(&pk),
            };
            assert!(lo <= hash && hash <= hi, "a user record outside its shard");
        }
    }
    assert_eq!(users, sent.len());
    let got = read_all(&server, "agg", true).await;
    let records = got.records.lock().unwrap();
    // Records with their own hash key go to other shards than their
    // partition key's: in order among themselves, like the rest.
    let split = |ehk: bool| -> BTreeMap<String, Vec<Vec<u8>>> {
        let mut out: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
        for (pk, ehk_of, data) in records
            .iter()
            .map(|(_, r)| (&r.partition_key, r.explicit_hash_key.is_some(), &r.data))
        {
            if ehk_of == ehk {
                out.entry(format!("{pk}/{ehk}"))
                    .or_default()
                    .push(data.clone());
            }
        }
        out
    };
    let sent_split = |ehk: bool| -> BTreeMap<String, Vec<Vec<u8>>> {
        let mut out: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
        for r in sent.iter().filter(|r| r.explicit_hash_key.is_some() == ehk) {
            out.entry(format!("{}/{ehk}", r.partition_key))
                .or_default()
                .push(r.data.clone());
        }
        out
    };
    assert_same(&split(false), &sent_split(false));
    let mut with = split(true);
    for v in with.values_mut() {
        v.sort();
    }
    assert_same(&with, &sent_split(true));
    // Explicit hash keys come back with their records.
    let with_ehk = records
        .iter()
        .filter(|(_, r)| r.explicit_hash_key.is_some())
        .count();
    assert_eq!(
        with_ehk,
        sent.iter()
            .filter(|r| r.explicit_hash_key.is_some())
            .count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resharding_between_puts_keeps_each_key_in_order() {
    let (server, _dir) = start(false).await;
    let mut api = create(&server, "reshard", 2).await;
    let sent = records(4000, 30);
    let (first, second) = sent.split_at(2000);
    let mut config = ProducerConfig::new("reshard");
    config.aggregate = true;
    config.linger = Duration::from_millis(5);
    produce(&server, config.clone(), first).await;
    reshard(&mut api, "reshard", 3).await;
    produce(&server, config, second).await;
    let got = read_all(&server, "reshard", true).await;
    let records = got.records.lock().unwrap().clone();
    assert_same(&by_key(&records), &expected(&sent));
    // The closed shards were read to their end, and checkpointed so.
    let listed: k::ListShardsOutput = api
        .call(
            "ListShards",
            &k::ListShardsInput {
                stream_name: Some("reshard".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let checkpoints = got.checkpoints.lock().unwrap();
    let shards = listed.shards.unwrap();
    assert_eq!(checkpoints.len(), shards.len());
    for s in shards {
        let closed = s.sequence_number_range.ending_sequence_number.is_some();
        assert_eq!(
            checkpoints[&s.shard_id] == Checkpoint::ShardEnd,
            closed,
            "{}",
            s.shard_id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_resumes_from_its_checkpoints() {
    let (server, _dir) = start(false).await;
    create(&server, "resume", 2).await;
    let sent = records(3000, 10);
    let mut config = ProducerConfig::new("resume");
    config.ordered = false;
    produce(&server, config, &sent).await;
    let mut first = Collect {
        stop_after: Some(1000),
        ..Collect::default()
    };
    let mut config = ConsumerConfig::new("resume", StartingPosition::TrimHorizon);
    config.limit = 200;
    config.idle_poll = Duration::from_millis(10);
    let stopped = consumer::consume(target(&server), config.clone(), first.clone()).await;
    assert!(matches!(stopped, Err(consumer::ConsumeError::Handler(_))));
    // Only checkpointed batches count as done: keep exactly those.
    let checkpoints = first.checkpoints.lock().unwrap().clone();
    {
        let mut records = first.records.lock().unwrap();
        let done: Vec<_> = records
            .drain(..)
            .filter(|(shard, r)| match checkpoints.get(shard) {
                Some(Checkpoint::After(seq)) => seq_le(&r.sequence_number, seq),
                Some(Checkpoint::At(seq)) => !seq_le(seq, &r.sequence_number),
                Some(Checkpoint::ShardEnd) => true,
                None => false,
            })
            .collect();
        *records = done;
    }
    first.stop_after = None;
    config.checkpoints = checkpoints;
    consumer::consume(target(&server), config, first.clone())
        .await
        .unwrap();
    let records = first.records.lock().unwrap();
    let mut keys = by_key(&records);
    for v in keys.values_mut() {
        v.sort();
    }
    assert_same(&keys, &expected(&sent));
}

fn seq_le(a: &str, b: &str) -> bool {
    (a.len(), a) <= (b.len(), b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_fail_the_record_and_are_not_retried() {
    let (server, _dir) = start(false).await;
    // A stream that is not there fails at start.
    let err = Producer::start(target(&server), ProducerConfig::new("missing"))
        .await
        .unwrap_err();
    assert_eq!(err.name(), Some("ResourceNotFoundException"));
    // Records that can never be put are refused at once.
    create(&server, "there", 1).await;
    let producer = Producer::start(target(&server), ProducerConfig::new("there"))
        .await
        .unwrap();
    assert!(matches!(
        producer.send(Record::new("", b"x".to_vec())).await,
        Err(PutError::Invalid(_))
    ));
    assert!(matches!(
        producer.send(Record::new("k", vec![0; 1 << 20])).await,
        Err(PutError::Invalid(_))
    ));
    // A record the server refuses (a hash key past the stream's range
    // cannot be, so: the stream deleted under the producer) fails without
    // retries.
    let mut api = Api::connect(Arc::new(target(&server))).await.unwrap();
    let _: serde_json::Value = api
        .call(
            "DeleteStream",
            &k::DeleteStreamInput {
                stream_name: Some("there".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let receipt = producer
        .send(Record::new("k", b"x".to_vec()))
        .await
        .unwrap();
    match receipt.await {
        Err(PutError::Failed(why)) => assert!(why.contains("ResourceNotFoundException"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        producer
            .metrics()
            .retries
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    producer.close().await;
    // Aggregation needs the shard map: a missing stream fails at start.
    let mut config = ProducerConfig::new("missing");
    config.aggregate = true;
    let err = Producer::start(target(&server), config).await.unwrap_err();
    assert_eq!(err.name(), Some("ResourceNotFoundException"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_buffer_holds_senders_back_and_loses_nothing() {
    let (server, _dir) = start(false).await;
    create(&server, "small", 1).await;
    let mut config = ProducerConfig::new("small");
    config.max_buffered_bytes = 64 << 10;
    config.max_record_bytes = 32 << 10;
    config.linger = Duration::from_millis(1);
    let sent: Vec<Record> = (0..400)
        .map(|i| Record::new("one-key", vec![(i % 251) as u8; 16 << 10]))
        .collect();
    let acks = produce(&server, config, &sent).await;
    assert_eq!(acks.len(), 400);
    let got = read_all(&server, "small", true).await;
    let records = got.records.lock().unwrap();
    assert_same(&by_key(&records), &expected(&sent));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_reads_only_what_comes_after() {
    let (server, _dir) = start(false).await;
    create(&server, "latest", 2).await;
    let mut config = ProducerConfig::new("latest");
    config.linger = Duration::from_millis(1);
    let before = records(50, 5);
    produce(&server, config.clone(), &before).await;
    let collect = Collect {
        stop_after: Some(1),
        ..Collect::default()
    };
    let mut cc = ConsumerConfig::new("latest", StartingPosition::Latest);
    cc.follow = true;
    cc.idle_poll = Duration::from_millis(10);
    let reading = tokio::spawn(consumer::consume(target(&server), cc, collect.clone()));
    // Each shard's LATEST iterator exists once a checkpoint-free poll came
    // back; put until the follower sees something.
    let after: Vec<Record> = (0..20)
        .map(|i| Record::new(format!("late-{i}"), format!("late-{i}").into_bytes()))
        .collect();
    let producer = Producer::start(target(&server), config).await.unwrap();
    while !reading.is_finished() {
        for r in &after {
            producer.send(r.clone()).await.unwrap();
        }
        producer.flush().await;
        tokio::task::yield_now().await;
    }
    producer.close().await;
    let _ = reading.await.unwrap();
    let records = collect.records.lock().unwrap();
    assert!(!records.is_empty());
    assert!(records
        .iter()
        .all(|(_, r)| r.partition_key.starts_with("late-")));
}

mod large {
    use super::*;
    use sluice_client::consumer::LargeRead;
    use sluice_client::large::{self, Codec, Header, LargeProducer, Mode, Problem, Store};

    /// Collects records, checkpoints and problems.
    #[derive(Clone, Default)]
    struct Seen {
        inner: Collect,
        problems: Arc<Mutex<Vec<Problem>>>,
    }

    impl Handler for Seen {
        async fn records(&mut self, batch: Batch) -> anyhow::Result<()> {
            self.inner.records(batch).await
        }

        fn checkpoint(&mut self, shard_id: &str, checkpoint: &Checkpoint) -> anyhow::Result<()> {
            self.inner.checkpoint(shard_id, checkpoint)
        }

        fn problem(&mut self, problem: Problem) -> anyhow::Result<()> {
            self.problems.lock().unwrap().push(problem);
            Ok(())
        }
    }

    /// Puts one record and waits until it is in.
    async fn put_one(producer: &Producer, key: &str, data: &[u8]) {
        producer
            .send(Record::new(key, data.to_vec()))
            .await
            .unwrap()
            .await
            .unwrap();
    }

    fn message(n: usize, seed: u8) -> Vec<u8> {
        // Half compressible, half not.
        let mut rng = fastrand::Rng::with_seed(u64::from(seed));
        (0..n)
            .map(|i| if i % 2 == 0 { rng.u8(..) } else { seed })
            .collect()
    }

    async fn large_producer(
        server: &Server,
        stream: &str,
        mode: Mode,
        store: Option<Store>,
    ) -> LargeProducer {
        let mut config = ProducerConfig::new(stream);
        config.linger = Duration::from_millis(1);
        let producer = Producer::start(target(server), config).await.unwrap();
        LargeProducer::new(producer, mode, store, stream, 1 << 20)
    }

    async fn read(server: &Server, stream: &str, store: Option<Store>) -> Seen {
        let seen = Seen::default();
        let mut config = ConsumerConfig::new(stream, StartingPosition::TrimHorizon);
        config.idle_poll = Duration::from_millis(10);
        config.large = Some(LargeRead {
            store,
            ..LargeRead::default()
        });
        consumer::consume(target(server), config, seen.clone())
            .await
            .unwrap();
        seen
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_mode_carries_records_past_the_stream_limit() {
        let (server, _dir) = start(false).await;
        create(&server, "large", 2).await;
        let objects = tempfile::tempdir().unwrap();
        let store = Store::local(objects.path(), "bucket").unwrap();
        let modes = [
            Mode::Compress(Codec::Gzip),
            Mode::Compress(Codec::Zstd),
            Mode::Compress(Codec::Lz4),
            Mode::Compress(Codec::Snappy),
            Mode::ClaimCheck,
            Mode::Chunk,
            Mode::Auto,
        ];
        let mut sent = Vec::new();
        for (i, mode) in modes.into_iter().enumerate() {
            let p = large_producer(&server, "large", mode, Some(store.clone())).await;
            // 1.5 MiB (compresses below 1 MiB) and 3 MiB (does not).
            for (j, size) in [1_500_000usize, 3_000_000].into_iter().enumerate() {
                let data = message(size, (i * 2 + j) as u8);
                let key = format!("{mode:?}-{j}");
                sent.push((key.clone(), data.clone()));
                p.send(Record::new(key, data))
                    .await
                    .unwrap()
                    .wait()
                    .await
                    .unwrap();
            }
            p.into_producer().close().await;
        }
        let seen = read(&server, "large", Some(store)).await;
        assert!(seen.problems.lock().unwrap().is_empty());
        let got: HashMap<String, Vec<u8>> = seen
            .inner
            .records
            .lock()
            .unwrap()
            .iter()
            .map(|(_, r)| (r.partition_key.clone(), r.data.clone()))
            .collect();
        assert_eq!(got.len(), sent.len());
        for (key, data) in &sent {
            assert!(got[key] == *data, "{key}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn chunks_survive_resharding_duplicates_and_interleaving() {
        let (server, _dir) = start(false).await;
        let mut api = create(&server, "chunks", 2).await;
        let mut config = ProducerConfig::new("chunks");
        config.linger = Duration::from_millis(1);
        let producer = Producer::start(target(&server), config.clone())
            .await
            .unwrap();
        // Two messages on two keys, chunked by hand, interleaved.
        let cut = |id: &str, data: &[u8]| -> Vec<Vec<u8>> {
            let parts: Vec<&[u8]> = data.chunks(100_000).collect();
            parts
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    large::envelope(
                        &Header::Chunk {
                            id: id.into(),
                            index: i as u32,
                            count: parts.len() as u32,
                            size: data.len() as u64,
                            sha256: large::sha256_hex(data),
                            crc32c: crc32c::crc32c(p),
                        },
                        p,
                    )
                })
                .collect()
        };
        let (a, b) = (message(1_000_000, 1), message(700_000, 2));
        let (ca, cb) = (cut("aa", &a), cut("bb", &b));
        let mut order: Vec<(&str, &Vec<u8>)> = Vec::new();
        for i in 0..ca.len().max(cb.len()) {
            if let Some(c) = ca.get(i) {
                order.push(("key-a", c));
            }
            if let Some(c) = cb.get(i) {
                order.push(("key-b", c));
            }
        }
        let half = order.len() / 2;
        for (key, chunk) in &order[..half] {
            put_one(&producer, key, chunk).await;
        }
        // A duplicate of an early chunk (a retried put).
        put_one(&producer, "key-a", &ca[0]).await;
        reshard(&mut api, "chunks", 3).await;
        for (key, chunk) in &order[half..] {
            put_one(&producer, key, chunk).await;
        }
        // And a duplicate after the message is whole.
        put_one(&producer, "key-b", &cb[0]).await;
        producer.close().await;
        let seen = read(&server, "chunks", None).await;
        assert!(
            seen.problems.lock().unwrap().is_empty(),
            "{:?}",
            seen.problems.lock().unwrap()
        );
        let records = seen.inner.records.lock().unwrap();
        assert_eq!(records.len(), 2, "each message once");
        for (_, r) in records.iter() {
            let want = if r.partition_key == "key-a" { &a } else { &b };
            assert!(r.data == *want, "{}", r.partition_key);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_missing_chunk_is_reported_and_its_shard_is_read_again_from_it() {
        let (server, _dir) = start(false).await;
        create(&server, "gap", 1).await;
        let data = message(300_000, 3);
        let parts: Vec<&[u8]> = data.chunks(100_000).collect();
        let producer = Producer::start(target(&server), ProducerConfig::new("gap"))
            .await
            .unwrap();
        let mut seqs = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            if i == 1 {
                continue; // lost
            }
            let chunk = large::envelope(
                &Header::Chunk {
                    id: "cc".into(),
                    index: i as u32,
                    count: 3,
                    size: data.len() as u64,
                    sha256: large::sha256_hex(&data),
                    crc32c: crc32c::crc32c(p),
                },
                p,
            );
            let ack = producer
                .send(Record::new("k", chunk))
                .await
                .unwrap()
                .await
                .unwrap();
            seqs.push(ack.sequence_number);
        }
        // An ordinary record after the gap.
        producer
            .send(Record::new("k", b"after".to_vec()))
            .await
            .unwrap()
            .await
            .unwrap();
        producer.close().await;
        let seen = read(&server, "gap", None).await;
        let problems = seen.problems.lock().unwrap().clone();
        assert!(
            matches!(&problems[..], [Problem::MissingChunks { have: 2, count: 3, first_sequence, .. }] if *first_sequence == seqs[0]),
            "{problems:?}"
        );
        let records = seen.inner.records.lock().unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].1.data, b"after");
        // While the message waited, the shard's checkpoint stayed at its
        // first chunk; given up, it moved on past the last record.
        let checkpoints = seen.inner.checkpoints.lock().unwrap();
        assert!(matches!(
            &checkpoints["shardId-000000000000"],
            Checkpoint::After(_)
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn claim_checks_clean_up_after_themselves_and_are_verified() {
        let (server, _dir) = start(false).await;
        let mut api = create(&server, "claims", 1).await;
        let objects = tempfile::tempdir().unwrap();
        let store = Store::local(objects.path(), "bucket").unwrap();
        let count = |dir: &std::path::Path| walk(dir);
        let p = large_producer(&server, "claims", Mode::ClaimCheck, Some(store.clone())).await;
        p.send(Record::new("k", message(2_000_000, 4)))
            .await
            .unwrap()
            .wait()
            .await
            .unwrap();
        assert_eq!(count(objects.path()), 1);
        // A pointer that is not put: its object is deleted.
        let _: serde_json::Value = api
            .call(
                "DeleteStream",
                &k::DeleteStreamInput {
                    stream_name: Some("claims".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let failed = p
            .send(Record::new("k", message(2_000_000, 5)))
            .await
            .unwrap()
            .wait()
            .await;
        assert!(failed.is_err());
        assert_eq!(count(objects.path()), 1, "the orphan is gone");
        p.into_producer().close().await;
        // The sweep removes what is older than the retention.
        assert_eq!(
            store
                .sweep(
                    "claims",
                    std::time::SystemTime::now() - Duration::from_secs(60)
                )
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            store
                .sweep(
                    "claims",
                    std::time::SystemTime::now() + Duration::from_secs(1)
                )
                .await
                .unwrap(),
            1
        );
        assert_eq!(count(objects.path()), 0);
        // An object changed under its pointer is refused.
        create(&server, "claims2", 1).await;
        let p = large_producer(&server, "claims2", Mode::ClaimCheck, Some(store.clone())).await;
        p.send(Record::new("k", message(10_000, 6)))
            .await
            .unwrap()
            .wait()
            .await
            .unwrap();
        p.into_producer().close().await;
        let file = find_file(objects.path()).unwrap();
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[0] ^= 1;
        std::fs::write(&file, bytes).unwrap();
        let seen = read(&server, "claims2", Some(store)).await;
        let problems = seen.problems.lock().unwrap().clone();
        assert!(
            matches!(&problems[..], [Problem::Unreadable { why, .. }] if why.contains("SHA-256")),
            "{problems:?}"
        );
        assert!(seen.inner.records.lock().unwrap().is_empty());
    }

    fn walk(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p)
                } else {
                    1
                }
            })
            .sum()
    }

    fn find_file(dir: &std::path::Path) -> Option<std::path::PathBuf> {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                if let Some(f) = find_file(&p) {
                    return Some(f);
                }
            } else {
                return Some(p);
            }
        }
        None
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enhanced_fan_out_reads_what_polling_reads_across_resharding() {
    let (server, _dir) = start(false).await;
    let mut api = create(&server, "efo", 2).await;
    let sent = records(2000, 20);
    let (first, second) = sent.split_at(1000);
    let mut config = ProducerConfig::new("efo");
    config.aggregate = true;
    config.linger = Duration::from_millis(2);
    produce(&server, config.clone(), first).await;
    reshard(&mut api, "efo", 3).await;
    produce(&server, config, second).await;
    let collect = Collect::default();
    let mut cc = ConsumerConfig::new("efo", StartingPosition::TrimHorizon);
    cc.efo = Some("efo-reader".into());
    consumer::consume(target(&server), cc.clone(), collect.clone())
        .await
        .unwrap();
    let records = collect.records.lock().unwrap().clone();
    assert_same(&by_key(&records), &expected(&sent));
}
