//! The registry through the crate's API: persistence, scopes, versions, and
//! a save that fails.

use std::sync::Arc;

use serde_json::json;
use sluice_aws::ErrorCode;
use sluice_log::OsStorage;
use sluice_meta::Scope;
use sluice_model::ManualClock;

use serde_json::Value;
use sluice_firehose::Firehose;
use sluice_streams::{Config, Engine};

/// The engine that keeps Direct PUT records, in `dir`.
fn engine(dir: &std::path::Path, clock: &Arc<ManualClock>) -> Arc<Engine> {
    let config = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    Arc::new(Engine::open(config, clock.clone()).unwrap())
}

fn open(dir: &std::path::Path, clock: &Arc<ManualClock>) -> Firehose {
    Firehose::open(engine(dir, clock), Arc::new(OsStorage), dir.to_path_buf()).unwrap()
}

fn east() -> Scope {
    Scope::new("111122223333", "us-east-1")
}

fn s3_stream(name: &str) -> Value {
    json!({
        "DeliveryStreamName": name,
        "ExtendedS3DestinationConfiguration": {
            "RoleARN": "arn:aws:iam::111122223333:role/r",
            "BucketARN": "arn:aws:s3:::bucket",
            "BufferingHints": {"SizeInMBs": 1},
        },
        "Tags": [{"Key": "team", "Value": "data"}],
    })
}

#[test]
fn delivery_streams_survive_a_restart_and_stay_in_their_region() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let f = open(dir.path(), &clock);
    let arn = f
        .call(&east(), "CreateDeliveryStream", &s3_stream("d"))
        .unwrap();
    assert_eq!(
        arn,
        json!({"DeliveryStreamARN": "arn:aws:firehose:us-east-1:111122223333:deliverystream/d"})
    );
    let west = Scope::new("111122223333", "us-west-2");
    let e = f
        .call(
            &west,
            "DescribeDeliveryStream",
            &json!({"DeliveryStreamName": "d"}),
        )
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::ResourceNotFoundException);
    assert_eq!(
        e.message,
        "Firehose d under account 111122223333 not found."
    );
    drop(f);
    let f = open(dir.path(), &clock);
    let d = f
        .call(
            &east(),
            "DescribeDeliveryStream",
            &json!({"DeliveryStreamName": "d"}),
        )
        .unwrap();
    let d = &d["DeliveryStreamDescription"];
    assert_eq!(d["VersionId"], "1");
    assert_eq!(d["DeliveryStreamType"], "DirectPut");
    assert_eq!(d["CreateTimestamp"], 1_700_000_000.0);
    assert_eq!(
        d["DeliveryStreamEncryptionConfiguration"],
        json!({"Status": "DISABLED"})
    );
    let s3 = &d["Destinations"][0]["ExtendedS3DestinationDescription"];
    assert_eq!(
        s3["BufferingHints"],
        json!({"SizeInMBs": 1, "IntervalInSeconds": 300})
    );
    assert_eq!(s3["CompressionFormat"], "UNCOMPRESSED");
    assert_eq!(s3["S3BackupMode"], "Disabled");
    let tags = f
        .call(
            &east(),
            "ListTagsForDeliveryStream",
            &json!({"DeliveryStreamName": "d"}),
        )
        .unwrap();
    assert_eq!(
        tags,
        json!({"Tags": [{"Key": "team", "Value": "data"}], "HasMoreTags": false})
    );
}

#[test]
fn updates_need_the_current_version() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let f = open(dir.path(), &clock);
    f.call(&east(), "CreateDeliveryStream", &s3_stream("d"))
        .unwrap();
    let update = |version: &str| {
        json!({
            "DeliveryStreamName": "d",
            "CurrentDeliveryStreamVersionId": version,
            "DestinationId": "destinationId-000000000001",
            "ExtendedS3DestinationUpdate": {"Prefix": "p/", "BufferingHints": {"IntervalInSeconds": 60}},
        })
    };
    clock.advance_ms(5_000);
    f.call(&east(), "UpdateDestination", &update("1")).unwrap();
    let e = f
        .call(&east(), "UpdateDestination", &update("1"))
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::ConcurrentModificationException);
    let d = f
        .call(
            &east(),
            "DescribeDeliveryStream",
            &json!({"DeliveryStreamName": "d"}),
        )
        .unwrap();
    let d = &d["DeliveryStreamDescription"];
    assert_eq!(d["VersionId"], "2");
    assert_eq!(d["LastUpdateTimestamp"], 1_700_000_005.0);
    let s3 = &d["Destinations"][0]["ExtendedS3DestinationDescription"];
    assert_eq!(s3["Prefix"], "p/");
    // Structures merge member by member.
    assert_eq!(
        s3["BufferingHints"],
        json!({"SizeInMBs": 1, "IntervalInSeconds": 60})
    );
}

#[test]
fn a_failed_save_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let engine_dir = dir.path().join("engine");
    let engine = engine(&engine_dir, &clock);
    // The directory goes away: the next save fails.
    let gone = dir.path().join("gone");
    let f2 = Firehose::open(engine.clone(), Arc::new(OsStorage), gone.clone()).unwrap();
    let e = f2
        .call(&east(), "CreateDeliveryStream", &s3_stream("x"))
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InternalFailure);
    let listed = f2.call(&east(), "ListDeliveryStreams", &json!({})).unwrap();
    assert_eq!(listed["DeliveryStreamNames"], json!([]));
    assert!(!gone.exists());
    // The record log made for it went again.
    assert!(sluice_streams::ops::internal_streams(&engine).is_empty());
}

#[test]
fn encryption_changes_at_most_25_times_a_day_and_reset_empties_all() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let f = open(dir.path(), &clock);
    f.call(&east(), "CreateDeliveryStream", &s3_stream("d"))
        .unwrap();
    let name = json!({"DeliveryStreamName": "d"});
    for i in 0..25 {
        let op = if i % 2 == 0 {
            "StartDeliveryStreamEncryption"
        } else {
            "StopDeliveryStreamEncryption"
        };
        f.call(&east(), op, &name).unwrap();
    }
    let e = f
        .call(&east(), "StopDeliveryStreamEncryption", &name)
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::LimitExceededException);
    // A day after the first change, one more is allowed.
    clock.advance_ms(24 * 3600 * 1000);
    f.call(&east(), "StopDeliveryStreamEncryption", &name)
        .unwrap();
    assert_eq!(f.reset().unwrap(), 1);
    let listed = f.call(&east(), "ListDeliveryStreams", &json!({})).unwrap();
    assert_eq!(listed["DeliveryStreamNames"], json!([]));
}
