//! The engine without HTTP: typed requests in, typed answers (and records)
//! out, on a real data directory and a manual clock. What a later service
//! (Firehose, the agent, SQL over streams) sees when it calls the engine.

use std::sync::Arc;

use sluice_aws::kinesis::{self as k, Request, Response};
use sluice_aws::types::Blob;
use sluice_aws::ErrorCode;
use sluice_model::ManualClock;
use sluice_streams::fanout::Event;
use sluice_streams::ops::{self, Begun, PutAnswer, Records};
use sluice_streams::{Config, Engine};

const ACCOUNT: &str = "000000000000";

struct Harness {
    engine: Arc<Engine>,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

impl Harness {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        let engine = Engine::open(config, clock.clone()).unwrap();
        Self {
            engine: Arc::new(engine),
            clock,
            _dir: dir,
        }
    }

    fn begin(&self, request: Request) -> Result<Begun, sluice_aws::AwsError> {
        ops::dispatch(
            request,
            &self.engine,
            sluice_meta::Scope::new(ACCOUNT, "us-east-1"),
        )
    }

    fn answer(&self, request: Request) -> Response {
        match self.begin(request) {
            Ok(Begun::Answer(answer)) => answer,
            Ok(other) => panic!("not a typed answer: {other:?}"),
            Err(e) => panic!("{}: {}", e.code.name(), e.message),
        }
    }

    fn error(&self, request: Request) -> ErrorCode {
        match self.begin(request) {
            Err(e) => e.code,
            Ok(other) => panic!("succeeded: {other:?}"),
        }
    }

    fn create(&self, name: &str, shards: i64) {
        let answer = self.answer(Request::CreateStream(k::CreateStreamInput {
            stream_name: name.into(),
            shard_count: Some(shards),
            ..Default::default()
        }));
        assert_eq!(answer, Response::CreateStream);
    }

    async fn put(&self, name: &str, records: &[(&str, &[u8])]) -> ops::PutRecordsAnswer {
        let request = Request::PutRecords(k::PutRecordsInput {
            stream_name: Some(name.into()),
            records: records
                .iter()
                .map(|(key, data)| k::PutRecordsRequestEntry {
                    data: Blob(data.to_vec()),
                    partition_key: (*key).into(),
                    explicit_hash_key: None,
                })
                .collect(),
            ..Default::default()
        });
        let Ok(Begun::Put(pending)) = self.begin(request) else {
            panic!("not a put")
        };
        match pending.finish(&self.engine).await.unwrap() {
            PutAnswer::Records(answer) => answer,
            other => panic!("{other:?}"),
        }
    }

    fn iterator(&self, name: &str, shard: &str, kind: k::ShardIteratorType) -> String {
        let Response::GetShardIterator(out) =
            self.answer(Request::GetShardIterator(k::GetShardIteratorInput {
                stream_name: Some(name.into()),
                shard_id: shard.into(),
                shard_iterator_type: kind,
                ..Default::default()
            }))
        else {
            panic!()
        };
        out.shard_iterator.unwrap()
    }

    fn read(&self, iterator: &str) -> Records {
        match self.begin(Request::GetRecords(k::GetRecordsInput {
            shard_iterator: iterator.into(),
            ..Default::default()
        })) {
            Ok(Begun::Records(records)) => records,
            other => panic!("{other:?}"),
        }
    }

    fn shards(&self, name: &str) -> Vec<k::Shard> {
        let Response::ListShards(out) = self.answer(Request::ListShards(k::ListShardsInput {
            stream_name: Some(name.into()),
            ..Default::default()
        })) else {
            panic!()
        };
        out.shards.unwrap()
    }
}

#[tokio::test]
async fn records_put_are_read_back_in_order_per_shard() {
    let h = Harness::new();
    h.create("s", 1);
    let answer = h
        .put("s", &[("a", b"one"), ("b", b"two"), ("c", b"three")])
        .await;
    assert_eq!(answer.failed, 0);
    let sequences: Vec<u128> = answer
        .results
        .iter()
        .map(|r| r.as_ref().unwrap().0)
        .collect();
    assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{sequences:?}");
    let it = h.iterator(
        "s",
        "shardId-000000000000",
        k::ShardIteratorType::TrimHorizon,
    );
    let records = h.read(&it);
    let data: Vec<&[u8]> = records.records.iter().map(|r| &r.data[..]).collect();
    assert_eq!(data, [&b"one"[..], b"two", b"three"]);
    assert_eq!(&records.records[0].partition_key[..], b"a");
    assert_eq!(records.records[1].sequence, sequences[1]);
    assert_eq!(records.millis_behind_latest, 0);
    // Caught up: the next iterator reads nothing until more arrives.
    let next = records.next_shard_iterator.unwrap();
    assert!(h.read(&next).records.is_empty());
    h.put("s", &[("d", b"four")]).await;
    assert_eq!(&h.read(&next).records[0].data[..], b"four");
}

#[tokio::test]
async fn a_split_closes_the_parent_and_readers_find_the_children() {
    let h = Harness::new();
    h.create("s", 1);
    h.put("s", &[("a", b"before")]).await;
    let answer = h.answer(Request::SplitShard(k::SplitShardInput {
        stream_name: Some("s".into()),
        shard_to_split: "shardId-000000000000".into(),
        new_starting_hash_key: (1u128 << 127).to_string(),
        ..Default::default()
    }));
    assert_eq!(answer, Response::SplitShard);
    let shards = h.shards("s");
    assert_eq!(shards.len(), 3);
    assert!(shards[0]
        .sequence_number_range
        .ending_sequence_number
        .is_some());
    for child in &shards[1..] {
        assert_eq!(
            child.parent_shard_id.as_deref(),
            Some("shardId-000000000000")
        );
        assert!(child.sequence_number_range.ending_sequence_number.is_none());
    }
    // The parent's reader gets its records, then the end: no next
    // iterator, and the children to go on with.
    let it = h.iterator(
        "s",
        "shardId-000000000000",
        k::ShardIteratorType::TrimHorizon,
    );
    let records = h.read(&it);
    assert_eq!(records.records.len(), 1);
    let records = match records.next_shard_iterator {
        Some(next) => h.read(&next),
        None => records,
    };
    assert!(records.next_shard_iterator.is_none());
    let children: Vec<&str> = records
        .child_shards
        .iter()
        .map(|c| c.shard_id.as_str())
        .collect();
    assert_eq!(children, ["shardId-000000000001", "shardId-000000000002"]);
    // New records go to a child.
    let answer = h.put("s", &[("a", b"after")]).await;
    assert_ne!(answer.results[0].as_ref().unwrap().1, 0);
}

#[tokio::test]
async fn errors_are_aws_shaped() {
    let h = Harness::new();
    let describe = |name: &str| {
        Request::DescribeStreamSummary(k::DescribeStreamSummaryInput {
            stream_name: Some(name.into()),
            ..Default::default()
        })
    };
    assert_eq!(
        h.error(describe("nope")),
        ErrorCode::ResourceNotFoundException
    );
    h.create("s", 2);
    assert_eq!(
        h.error(Request::CreateStream(k::CreateStreamInput {
            stream_name: "s".into(),
            shard_count: Some(1),
            ..Default::default()
        })),
        ErrorCode::ResourceInUseException
    );
    // Beyond the account's shard limit (500 by default).
    assert_eq!(
        h.error(Request::CreateStream(k::CreateStreamInput {
            stream_name: "huge".into(),
            shard_count: Some(1 << 40),
            ..Default::default()
        })),
        ErrorCode::LimitExceededException
    );
    assert_eq!(
        h.error(Request::GetRecords(k::GetRecordsInput {
            shard_iterator: "garbage".into(),
            ..Default::default()
        })),
        ErrorCode::InvalidArgumentException
    );
    let Response::DescribeStreamSummary(out) = h.answer(describe("s")) else {
        panic!()
    };
    assert_eq!(out.stream_description_summary.open_shard_count, 2);
    assert_eq!(
        out.stream_description_summary.stream_status,
        k::StreamStatus::Active
    );
}

#[tokio::test]
async fn an_iterator_expires_on_the_engines_clock() {
    let h = Harness::new();
    h.create("s", 1);
    let it = h.iterator("s", "shardId-000000000000", k::ShardIteratorType::Latest);
    h.clock.advance_ms(5 * 60 * 1000 + 1);
    assert_eq!(
        h.error(Request::GetRecords(k::GetRecordsInput {
            shard_iterator: it,
            ..Default::default()
        })),
        ErrorCode::ExpiredIteratorException
    );
}

#[tokio::test]
async fn a_subscription_pushes_what_is_put() {
    let h = Harness::new();
    h.create("s", 1);
    let Response::DescribeStreamSummary(summary) = h.answer(Request::DescribeStreamSummary(
        k::DescribeStreamSummaryInput {
            stream_name: Some("s".into()),
            ..Default::default()
        },
    )) else {
        panic!()
    };
    let Response::RegisterStreamConsumer(registered) = h.answer(Request::RegisterStreamConsumer(
        k::RegisterStreamConsumerInput {
            stream_arn: summary.stream_description_summary.stream_arn,
            consumer_name: "c".into(),
            ..Default::default()
        },
    )) else {
        panic!()
    };
    let subscribe = Request::SubscribeToShard(k::SubscribeToShardInput {
        consumer_arn: registered.consumer.consumer_arn,
        shard_id: "shardId-000000000000".into(),
        starting_position: k::StartingPosition {
            r#type: k::ShardIteratorType::TrimHorizon,
            ..Default::default()
        },
        ..Default::default()
    });
    let Ok(Begun::Subscription(sub)) = h.begin(subscribe.clone()) else {
        panic!("no subscription")
    };
    // AWS: a second subscription within 5 s of the first is refused.
    assert_eq!(h.error(subscribe), ErrorCode::ResourceInUseException);
    let mut events = sluice_streams::fanout::start(h.engine.clone(), sub);
    assert!(matches!(events.recv().await, Some(Event::Initial)));
    h.put("s", &[("a", b"pushed")]).await;
    loop {
        match events.recv().await {
            Some(Event::Records { records, .. }) if records.is_empty() => continue,
            Some(Event::Records {
                records,
                continuation_sequence_number,
                ..
            }) => {
                assert_eq!(&records[0].data[..], b"pushed");
                assert!(continuation_sequence_number.is_some());
                break;
            }
            other => panic!("{other:?}"),
        }
    }
}
