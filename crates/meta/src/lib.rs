//! Sluice's control plane: the catalog of streams and their shards, changed only
//! through methods that take the current time as an argument (no clock, no I/O),
//! so every transition is deterministic and testable without waiting.
//!
//! The catalog serializes to a JSON snapshot; the server stores the bytes.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

mod catalog;
mod command;
pub mod scaling;
mod stream;

pub use catalog::Catalog;
pub use command::{Applied, Command, Ending};
pub use stream::*;

/// Largest hash key: shards tile `0..=HASH_KEY_MAX`.
pub const HASH_KEY_MAX: u128 = u128::MAX;
/// AWS: retention is 24 hours to 365 days.
pub const RETENTION_HOURS_MIN: u32 = 24;
pub const RETENTION_HOURS_MAX: u32 = 8760;
/// AWS: a stream carries at most 50 tags.
pub const TAGS_PER_STREAM_MAX: usize = 50;
/// The shard-level metrics enhanced monitoring can enable (`ALL` means these).
pub const SHARD_LEVEL_METRICS: [&str; 7] = [
    "IncomingBytes",
    "IncomingRecords",
    "OutgoingBytes",
    "OutgoingRecords",
    "WriteProvisionedThroughputExceeded",
    "ReadProvisionedThroughputExceeded",
    "IteratorAgeMilliseconds",
];
/// How long a minimum-throughput billing commitment lasts at least (Sluice's choice).
pub const COMMITMENT_MIN_MS: u64 = 24 * 3600 * 1000;
/// AWS: at most 20 registered consumers per stream.
pub const CONSUMERS_PER_STREAM_MAX: usize = 20;
/// AWS: at most 5 consumers of an account CREATING at once.
pub const CONSUMERS_CREATING_MAX: usize = 5;
/// The account of streams from snapshots written before accounts existed.
pub const DEFAULT_ACCOUNT: &str = "000000000000";
/// The region of streams from snapshots written before regions existed.
pub const DEFAULT_REGION: &str = "us-east-1";

/// Where streams live: AWS scopes a stream's name, the shard limit, resource
/// policies and the throughput commitment by account and region.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Scope {
    pub account: String,
    pub region: String,
}

impl Scope {
    pub fn new(account: impl Into<String>, region: impl Into<String>) -> Self {
        Self {
            account: account.into(),
            region: region.into(),
        }
    }

    /// The scope a service built on the engine keeps its own streams in
    /// for `of` (Firehose's Direct PUT records: `firehose.us-east-1`). Its
    /// region holds a `.`, which no region name has (`sluice_model::is_region`),
    /// so no client request ever reaches these streams.
    pub fn internal(service: &str, of: &Scope) -> Self {
        Self::new(of.account.clone(), format!("{service}.{}", of.region))
    }

    /// Whether this is a service's own scope ([`Scope::internal`]).
    pub fn is_internal(&self) -> bool {
        self.region.contains('.')
    }

    /// Whether `arn` names a resource of this account and region.
    pub fn owns(&self, arn: &sluice_model::Arn) -> bool {
        arn.account() == self.account && arn.region() == self.region
    }

    /// A stream's ARN.
    pub fn stream_arn(&self, name: &str) -> sluice_model::Arn {
        sluice_model::Arn::stream(&self.region, &self.account, name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    #[error("stream {0} already exists")]
    StreamExists(String),
    #[error("stream {0} not found")]
    StreamNotFound(String),
    #[error("shard {1} not found in stream {0}")]
    ShardNotFound(String, String),
    /// The shard was split or merged already.
    #[error("shard {1} of stream {0} is closed")]
    ShardClosed(String, String),
    /// A split's new starting hash key is not strictly inside the shard.
    #[error("the new starting hash key {new_start} is not inside shard {shard} of stream {stream} ({start} to {end})")]
    SplitKeyOutside {
        stream: String,
        shard: String,
        new_start: u128,
        start: u128,
        end: u128,
    },
    /// A merge of two shards whose ranges do not touch.
    #[error("shards {1} and {2} of stream {0} are not adjacent")]
    NotAdjacent(String, String, String),
    #[error("the snapshot does not parse: {0}")]
    Snapshot(String),
    #[error("Minimum allowed retention period is {RETENTION_HOURS_MIN} hours. Requested retention period ({0} hours) is too short.")]
    RetentionTooShort(u32),
    #[error("Maximum allowed retention period is {RETENTION_HOURS_MAX} hours. Requested retention period ({0} hours) is too long.")]
    RetentionTooLong(u32),
    #[error("Requested retention period ({requested} hours) for stream {stream} can not be shorter than existing retention period ({current} hours). Use DecreaseRetentionPeriod API.")]
    RetentionNotIncrease {
        stream: String,
        requested: u32,
        current: u32,
    },
    #[error("Requested retention period ({requested} hours) for stream {stream} can not be longer than existing retention period ({current} hours). Use IncreaseRetentionPeriod API.")]
    RetentionNotDecrease {
        stream: String,
        requested: u32,
        current: u32,
    },
    #[error("Failed to add tags to stream {0} because a given stream can have a maximum of {TAGS_PER_STREAM_MAX} tags.")]
    TooManyTags(String),
    #[error("Consumer {0} already exists")]
    ConsumerExists(String),
    #[error("consumer {1} of stream {0} not found")]
    ConsumerNotFound(String, String),
    #[error(
        "Stream {0} has reached the limit of {CONSUMERS_PER_STREAM_MAX} registered consumers."
    )]
    TooManyConsumers(String),
    #[error("Only {CONSUMERS_CREATING_MAX} consumers can be in CREATING status at the same time.")]
    TooManyConsumersCreating,
    /// An on-demand scaling window none of whose actions still applies.
    #[error("nothing to scale in stream {0}")]
    NothingToScale(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamMode {
    Provisioned,
    OnDemand,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamStatus {
    Creating,
    Active,
    Updating,
    Deleting,
}

/// What a split or merge changed in the storage: shard logs to close (their
/// ending sequence numbers then go into the catalog with
/// [`Catalog::set_ending_sequence`]) and shard logs to create (id, epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reshard {
    pub closed: Vec<(u32, u64)>,
    pub created: Vec<(u64, u64)>,
}

/// What CreateStream asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateStream {
    pub scope: Scope,
    pub name: String,
    pub shard_count: u32,
    pub mode: StreamMode,
    pub max_record_size_kib: u32,
    pub tags: BTreeMap<String, String>,
    /// How long the stream stays CREATING.
    pub creating_ms: u64,
    /// ON_DEMAND only: the write throughput to keep the stream split for.
    #[serde(default)]
    pub warm_throughput_mibps: Option<u32>,
}

/// The account's minimum-throughput billing commitment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commitment {
    pub enabled: bool,
    pub started_at_ms: Option<u64>,
    pub ended_at_ms: Option<u64>,
    pub earliest_allowed_end_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitmentStatus {
    Enabled,
    Disabled,
    EnabledUntilEarliestAllowedEnd,
}

impl Commitment {
    pub fn status(&self, now_ms: u64) -> CommitmentStatus {
        match (self.enabled, self.ended_at_ms) {
            (true, Some(end)) if now_ms < end => CommitmentStatus::EnabledUntilEarliestAllowedEnd,
            (true, None) => CommitmentStatus::Enabled,
            _ => CommitmentStatus::Disabled,
        }
    }

    /// Enabling starts a commitment that cannot end before `COMMITMENT_MIN_MS`;
    /// disabling early keeps it on until then.
    pub fn set(&mut self, enable: bool, now_ms: u64) {
        match (enable, self.status(now_ms)) {
            (true, CommitmentStatus::Enabled) => {}
            (true, _) => {
                *self = Self {
                    enabled: true,
                    started_at_ms: Some(now_ms),
                    ended_at_ms: None,
                    earliest_allowed_end_ms: Some(now_ms + COMMITMENT_MIN_MS),
                }
            }
            (false, CommitmentStatus::Disabled) => {}
            (false, _) => {
                let earliest = self.earliest_allowed_end_ms.unwrap_or(now_ms);
                self.ended_at_ms = Some(earliest.max(now_ms));
            }
        }
    }
}

/// The hash key of a partition key: MD5 as a big-endian 128-bit integer.
pub fn hash_key_from_md5(digest: [u8; 16]) -> u128 {
    u128::from_be_bytes(digest)
}

pub(crate) mod decimal {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

mod decimal_option {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<u128>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(&v.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u128>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| s.parse().map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// The shard of `open` (from [`Stream::open_shards_by_hash_key`]) whose hash
/// key range holds `hash_key`.
pub fn route<'a>(open: &[&'a Shard], hash_key: u128) -> &'a Shard {
    let i = open.partition_point(|s| s.starting_hash_key <= hash_key);
    let shard = open[i.max(1) - 1];
    debug_assert!(shard.starting_hash_key <= hash_key && hash_key <= shard.ending_hash_key);
    shard
}

#[cfg(test)]
mod tests {
    use super::*;

    static A: std::sync::LazyLock<Scope> =
        std::sync::LazyLock::new(|| Scope::new(DEFAULT_ACCOUNT, DEFAULT_REGION));
    use proptest::prelude::*;

    #[test]
    fn shard_ids_are_twelve_digits() {
        assert_eq!(shard_id(0), "shardId-000000000000");
        assert_eq!(shard_id(7), "shardId-000000000007");
        assert_eq!(shard_id(1_234_567), "shardId-000001234567");
        assert_eq!(shard_id(u32::MAX), "shardId-004294967295");
        for n in [10, 99, 100, 65_535, (1 << 31) - 1] {
            assert_eq!(shard_id(n), format!("shardId-{n:012}"));
            assert_eq!(parse_shard_id(&shard_id(n)), Some(n));
        }
    }

    fn create(name: &str, shard_count: u32) -> CreateStream {
        CreateStream {
            scope: A.clone(),
            name: name.into(),
            shard_count,
            mode: StreamMode::Provisioned,
            max_record_size_kib: 1024,
            tags: BTreeMap::new(),
            creating_ms: 0,
            warm_throughput_mibps: None,
        }
    }

    #[test]
    fn consumers_register_activate_and_go() {
        let mut c = Catalog::new();
        c.create_stream(create("s", 1), 0).unwrap();
        let arn = c
            .register_consumer(&A, "s", "app", 5_500, 1_000)
            .unwrap()
            .arn_suffix();
        assert_eq!(arn, "/consumer/app:5");
        let s = c.stream(&A, "s").unwrap();
        assert_eq!(
            s.consumer("app", 6_000).unwrap().status(6_000),
            ConsumerStatus::Creating
        );
        assert_eq!(
            s.consumer("app", 6_500).unwrap().status(6_500),
            ConsumerStatus::Active
        );
        assert_eq!(
            c.register_consumer(&A, "s", "app", 7_000, 0).map(|_| ()),
            Err(MetaError::ConsumerExists("app".into()))
        );
        let s = c.stream_mut(&A, "s").unwrap();
        s.deregister_consumer("app", 8_000, 2_000).unwrap();
        assert_eq!(
            s.consumer("app", 9_000).unwrap().status(9_000),
            ConsumerStatus::Deleting
        );
        assert!(s.consumer("app", 10_000).is_none());
        assert!(!c.has_gone(9_999));
        assert!(c.has_gone(10_000));
        c.sweep(10_000);
        assert!(c.stream(&A, "s").unwrap().consumers.is_empty());
        // The name is free again, with another ARN.
        let again = c.register_consumer(&A, "s", "app", 12_000, 0).unwrap();
        assert_eq!(again.arn_suffix(), "/consumer/app:12");
        // Deregistering with no DELETING time removes it at once.
        let s = c.stream_mut(&A, "s").unwrap();
        s.deregister_consumer("app", 13_000, 0).unwrap();
        assert!(s.consumers.is_empty());
        assert!(matches!(
            s.deregister_consumer("app", 13_000, 0),
            Err(MetaError::ConsumerNotFound(_, _))
        ));
    }

    #[test]
    fn consumer_limits() {
        let mut c = Catalog::new();
        c.create_stream(create("s", 1), 0).unwrap();
        c.create_stream(create("t", 1), 0).unwrap();
        for i in 0..CONSUMERS_CREATING_MAX {
            c.register_consumer(&A, "s", &format!("c{i}"), 0, 10)
                .unwrap();
        }
        assert_eq!(
            c.register_consumer(&A, "t", "x", 0, 10).map(|_| ()),
            Err(MetaError::TooManyConsumersCreating),
            "the CREATING limit is per account"
        );
        for i in CONSUMERS_CREATING_MAX..CONSUMERS_PER_STREAM_MAX {
            c.register_consumer(&A, "s", &format!("c{i}"), 10, 0)
                .unwrap();
        }
        assert_eq!(
            c.register_consumer(&A, "s", "one-more", 20, 0).map(|_| ()),
            Err(MetaError::TooManyConsumers("s".into()))
        );
        c.register_consumer(&A, "t", "one-more", 20, 0).unwrap();
        // Snapshots keep consumers.
        let back = Catalog::from_snapshot(&c.snapshot()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn accounts_and_regions_are_separate_namespaces() {
        let mut c = Catalog::new();
        let other = Scope::new("123456789012", DEFAULT_REGION);
        let west = Scope::new(DEFAULT_ACCOUNT, "us-west-2");
        c.create_stream(create("s", 2), 0).unwrap();
        c.create_stream(create("t", 1), 0).unwrap();
        let mut theirs = create("s", 3);
        theirs.scope = other.clone();
        c.create_stream(theirs, 0).unwrap();
        let mut in_west = create("s", 4);
        in_west.scope = west.clone();
        c.create_stream(in_west, 0).unwrap();
        assert_eq!(c.stream(&A, "s").unwrap().shards.len(), 2);
        assert_eq!(c.stream(&other, "s").unwrap().shards.len(), 3);
        assert_eq!(c.stream(&west, "s").unwrap().shards.len(), 4);
        assert_eq!(c.stream(&west, "s").unwrap().scope(), west);
        assert!(c.stream(&other, "t").is_none());
        assert!(c.stream(&west, "t").is_none());
        let names = |scope: &Scope| {
            c.streams_of(scope)
                .map(|s| s.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&A), ["s", "t"]);
        assert_eq!(names(&other), ["s"]);
        assert_eq!(names(&west), ["s"]);
        assert!(
            names(&Scope::new("12345678901", DEFAULT_REGION)).is_empty(),
            "a prefix of an account is not it"
        );
        assert!(
            names(&Scope::new(DEFAULT_ACCOUNT, "us-east")).is_empty(),
            "a prefix of a region is not it"
        );
        assert_eq!(c.open_shard_count(&A), 3);
        assert_eq!(c.open_shard_count(&other), 3);
        assert_eq!(c.open_shard_count(&west), 4);
        // Log ids and epochs stay unique across accounts and regions.
        let ids: BTreeSet<u64> = c
            .streams()
            .flat_map(|s| s.shards.iter().map(|h| h.log_id))
            .collect();
        assert_eq!(ids.len(), 10);
        c.delete_stream(&other, "s").unwrap();
        c.delete_stream(&west, "s").unwrap();
        assert!(c.stream(&A, "s").is_some());
    }

    #[test]
    fn snapshots_from_before_accounts_load_into_the_default_account() {
        let mut c = Catalog::new();
        c.create_stream(create("old", 1), 0).unwrap();
        let mut v: serde_json::Value = serde_json::from_slice(&c.snapshot()).unwrap();
        let stream = v["streams"]["000000000000/us-east-1/old"].take();
        let mut stream = stream.as_object().unwrap().clone();
        stream.remove("account");
        stream.remove("region");
        v["streams"] = serde_json::json!({"old": stream});
        let bytes = serde_json::to_vec(&v).unwrap();
        assert_eq!(Catalog::from_snapshot(&bytes).unwrap(), c);
        // A server whose default account was another one owned them.
        let mine = Scope::new("123456789012", "eu-west-1");
        let theirs = Catalog::from_snapshot_in(&bytes, &mine).unwrap();
        assert!(theirs.stream(&mine, "old").is_some());
        assert!(theirs.stream(&A, "old").is_none());
    }

    #[test]
    fn snapshots_from_before_regions_load_into_the_default_region() {
        let mut c = Catalog::new();
        c.create_stream(create("old", 1), 0).unwrap();
        c.apply(
            &Command::SetCommitment {
                scope: A.clone(),
                enable: true,
            },
            5,
        )
        .unwrap();
        let mut v: serde_json::Value = serde_json::from_slice(&c.snapshot()).unwrap();
        let mut stream = v["streams"]["000000000000/us-east-1/old"].take();
        stream.as_object_mut().unwrap().remove("region");
        v["streams"] = serde_json::json!({"000000000000/old": stream});
        let commitment = v["commitments"]["000000000000/us-east-1"].take();
        v["commitments"] = serde_json::json!({"000000000000": commitment});
        let bytes = serde_json::to_vec(&v).unwrap();
        assert_eq!(Catalog::from_snapshot(&bytes).unwrap(), c);
        let west = Scope::new(DEFAULT_ACCOUNT, "us-west-2");
        let theirs = Catalog::from_snapshot_in(&bytes, &west).unwrap();
        assert!(theirs.stream(&west, "old").is_some());
        assert!(theirs.commitment(&west).enabled);
        assert!(!theirs.commitment(&A).enabled);
    }

    #[test]
    fn aws_split_points() {
        let mut c = Catalog::new();
        let s = c.create_stream(create("s", 2), 0).unwrap();
        assert_eq!(
            s.shards[0].ending_hash_key.to_string(),
            "170141183460469231731687303715884105727"
        );
        assert_eq!(
            s.shards[1].starting_hash_key.to_string(),
            "170141183460469231731687303715884105728"
        );
        assert_eq!(s.shards[1].shard_id(), "shardId-000000000001");
        assert_eq!(parse_shard_id("shardId-000000000001"), Some(1));
        assert_eq!(parse_shard_id("shardId-x"), None);
    }

    #[test]
    fn creating_then_active_and_snapshot_round_trip() {
        let mut c = Catalog::new();
        let mut cmd = create("s", 3);
        cmd.creating_ms = 500;
        c.create_stream(cmd.clone(), 1_000).unwrap();
        assert_eq!(
            c.stream(&A, "s").unwrap().status(1_499),
            StreamStatus::Creating
        );
        assert_eq!(
            c.stream(&A, "s").unwrap().status(1_500),
            StreamStatus::Active
        );
        assert_eq!(
            c.create_stream(cmd, 2_000).unwrap_err(),
            MetaError::StreamExists("s".into())
        );
        let back = Catalog::from_snapshot(&c.snapshot()).unwrap();
        assert_eq!(back, c);
        c.create_stream(create("t", 1), 0).unwrap();
        let epochs: Vec<u64> = c
            .stream(&A, "t")
            .unwrap()
            .shards
            .iter()
            .map(|s| s.epoch)
            .collect();
        assert!(epochs.iter().all(|e| *e > 3), "epochs are never reused");
        c.delete_stream(&A, "s").unwrap();
        assert_eq!(
            c.delete_stream(&A, "s").unwrap_err(),
            MetaError::StreamNotFound("s".into())
        );
    }

    #[test]
    fn updating_and_deleting_states() {
        let mut c = Catalog::new();
        c.create_stream(create("s", 1), 0).unwrap();
        c.stream_mut(&A, "s").unwrap().start_update(100, 50);
        assert_eq!(
            c.stream(&A, "s").unwrap().status(120),
            StreamStatus::Updating
        );
        assert_eq!(c.stream(&A, "s").unwrap().status(150), StreamStatus::Active);
        c.start_delete(&A, "s", 200, 30).unwrap();
        assert_eq!(
            c.stream(&A, "s").unwrap().status(210),
            StreamStatus::Deleting
        );
        assert!(c.sweep(229).is_empty());
        assert_eq!(c.sweep(230).len(), 1);
        assert!(c.stream(&A, "s").is_none());
    }

    #[test]
    fn retention_tags_metrics_and_commitment_rules() {
        let mut c = Catalog::new();
        c.create_stream(create("s", 1), 0).unwrap();
        let s = c.stream_mut(&A, "s").unwrap();
        assert_eq!(
            s.set_retention(23, true),
            Err(MetaError::RetentionTooShort(23))
        );
        assert_eq!(
            s.set_retention(8761, true),
            Err(MetaError::RetentionTooLong(8761))
        );
        s.set_retention(48, true).unwrap();
        assert!(matches!(
            s.set_retention(24, true),
            Err(MetaError::RetentionNotIncrease { current: 48, .. })
        ));
        assert!(matches!(
            s.set_retention(72, false),
            Err(MetaError::RetentionNotDecrease { current: 48, .. })
        ));
        s.set_retention(24, false).unwrap();
        assert_eq!(s.retention_cutoff_ms(25 * 3600 * 1000), 3600 * 1000);
        let tags: BTreeMap<String, String> =
            (0..50).map(|i| (format!("k{i}"), "v".into())).collect();
        s.add_tags(&tags).unwrap();
        s.add_tags(&BTreeMap::from([("k1".into(), "new".into())]))
            .unwrap();
        assert_eq!(
            s.add_tags(&BTreeMap::from([("k50".into(), "v".into())])),
            Err(MetaError::TooManyTags("s".into()))
        );
        s.remove_tags(&["k1".into()]);
        assert_eq!(s.tags.len(), 49);
        let (before, after) = s.set_metrics(&["ALL".into()], true);
        assert!(before.is_empty() && after.len() == 7);
        let (_, after) = s.set_metrics(&["IncomingBytes".into()], false);
        assert_eq!(after.len(), 6);

        let mut m = Commitment::default();
        assert_eq!(m.status(0), CommitmentStatus::Disabled);
        m.set(true, 1_000);
        assert_eq!(m.status(1_000), CommitmentStatus::Enabled);
        m.set(false, 2_000);
        assert_eq!(
            m.status(2_000),
            CommitmentStatus::EnabledUntilEarliestAllowedEnd
        );
        assert_eq!(
            m.status(1_000 + COMMITMENT_MIN_MS),
            CommitmentStatus::Disabled
        );
    }

    proptest! {
        #[test]
        fn shards_tile_the_hash_space(n in 1u32..2000, key in any::<u128>()) {
            let mut c = Catalog::new();
            let s = c.create_stream(create("s", n), 0).unwrap();
            prop_assert_eq!(s.shards[0].starting_hash_key, 0);
            prop_assert_eq!(s.shards.last().unwrap().ending_hash_key, HASH_KEY_MAX);
            for w in s.shards.windows(2) {
                prop_assert_eq!(w[0].ending_hash_key + 1, w[1].starting_hash_key);
                prop_assert!(w[0].starting_hash_key <= w[0].ending_hash_key);
            }
            let shard = s.shard_for_hash_key(key);
            prop_assert!(shard.starting_hash_key <= key && key <= shard.ending_hash_key);
        }

        /// Any sequence of splits and merges keeps the open shards tiling the
        /// hash space exactly, and every closed shard's children cover its range.
        #[test]
        fn resharding_keeps_the_tiling(
            n in 1u32..6,
            steps in prop::collection::vec((0u8..3, any::<u16>(), any::<u128>()), 1..40),
            key in any::<u128>(),
        ) {
            let mut c = Catalog::new();
            c.create_stream(create("s", n), 0).unwrap();
            for (t, (op, pick, at)) in steps.into_iter().enumerate() {
                let split = op == 0;
                let now = t as u64 + 1;
                let s = c.stream(&A, "s").unwrap();
                let mut open: Vec<&Shard> = s.open_shards().collect();
                open.sort_by_key(|sh| sh.starting_hash_key);
                let i = pick as usize % open.len();
                let outcome = if op == 2 {
                    // UpdateShardCount within AWS's bounds: half to double.
                    let count = open.len() as u32;
                    let low = count.div_ceil(2);
                    let target = low + u32::from(pick) % (2 * count - low + 1);
                    let r = c.update_shard_count(&A, "s", target, now, 0);
                    let mut uniform: Vec<(u128, u128)> = c
                        .stream(&A, "s")
                        .unwrap()
                        .open_shards()
                        .map(|sh| (sh.starting_hash_key, sh.ending_hash_key))
                        .collect();
                    uniform.sort();
                    let mut fresh = Catalog::new();
                    fresh.create_stream(create("u", target), 0).unwrap();
                    let expected: Vec<(u128, u128)> = fresh
                        .stream(&A, "u")
                        .unwrap()
                        .shards
                        .iter()
                        .map(|sh| (sh.starting_hash_key, sh.ending_hash_key))
                        .collect();
                    prop_assert_eq!(uniform, expected, "uniform ranges after scaling to {}", target);
                    r
                } else if split {
                    let sh = open[i];
                    let span = sh.ending_hash_key - sh.starting_hash_key;
                    let new_start = sh.starting_hash_key.saturating_add(at % span.max(1));
                    c.split_shard(&A, "s", sh.index, new_start, now, 0)
                } else if open.len() > 1 {
                    let (a, b) = (open[i % (open.len() - 1)], open[i % (open.len() - 1) + 1]);
                    let (first, second) = if at % 2 == 0 { (a.index, b.index) } else { (b.index, a.index) };
                    c.merge_shards(&A, "s", first, second, now, 0)
                } else {
                    continue;
                };
                match outcome {
                    Ok(r) => {
                        for (index, _) in r.closed {
                            c.set_ending_sequence(&A, "s", index, u128::from(now) << 64).unwrap();
                        }
                    }
                    Err(MetaError::SplitKeyOutside { .. }) => {}
                    Err(e) => prop_assert!(false, "{e}"),
                }
            }
            let s = c.stream(&A, "s").unwrap();
            let mut open: Vec<&Shard> = s.open_shards().collect();
            open.sort_by_key(|sh| sh.starting_hash_key);
            prop_assert_eq!(open[0].starting_hash_key, 0);
            prop_assert_eq!(open.last().unwrap().ending_hash_key, HASH_KEY_MAX);
            for w in open.windows(2) {
                prop_assert_eq!(w[0].ending_hash_key + 1, w[1].starting_hash_key);
            }
            let shard = s.shard_for_hash_key(key);
            prop_assert!(shard.is_open() && shard.starting_hash_key <= key && key <= shard.ending_hash_key);
            // The binary search PutRecords routes with agrees, at every border too.
            let by_hash = s.open_shards_by_hash_key();
            prop_assert_eq!(route(&by_hash, key).index, shard.index);
            for sh in &by_hash {
                prop_assert_eq!(route(&by_hash, sh.starting_hash_key).index, sh.index);
                prop_assert_eq!(route(&by_hash, sh.ending_hash_key).index, sh.index);
            }
            for closed in s.shards.iter().filter(|sh| !sh.is_open()) {
                let mut children: Vec<&Shard> = s.children_of(closed.index).collect();
                prop_assert!(!children.is_empty());
                children.sort_by_key(|sh| sh.starting_hash_key);
                prop_assert!(children[0].starting_hash_key <= closed.starting_hash_key);
                prop_assert!(children.last().unwrap().ending_hash_key >= closed.ending_hash_key);
                for w in children.windows(2) {
                    prop_assert_eq!(w[0].ending_hash_key + 1, w[1].starting_hash_key);
                }
                for child in &children {
                    prop_assert!(child.epoch > closed.epoch, "children's sequence numbers come after the parent's");
                }
                prop_assert!(closed.closed.as_ref().unwrap().ending_sequence.is_some());
            }
            let ids: BTreeSet<u64> = s.shards.iter().map(|sh| sh.log_id).collect();
            prop_assert_eq!(ids.len(), s.shards.len());
            let back = Catalog::from_snapshot(&c.snapshot()).unwrap();
            prop_assert_eq!(back, c);
        }
    }
}
