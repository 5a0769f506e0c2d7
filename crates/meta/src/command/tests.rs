use super::*;
use proptest::prelude::*;
use std::sync::LazyLock;

static A: LazyLock<Scope> = LazyLock::new(|| Scope::new(DEFAULT_ACCOUNT, DEFAULT_REGION));
/// Another account, and the same account in another region.
static B: LazyLock<Scope> = LazyLock::new(|| Scope::new("111111111111", DEFAULT_REGION));
static C: LazyLock<Scope> = LazyLock::new(|| Scope::new(DEFAULT_ACCOUNT, "eu-west-1"));

fn create(scope: &Scope, name: &str, shards: u32) -> Command {
    Command::CreateStream(CreateStream {
        scope: scope.clone(),
        name: name.into(),
        shard_count: shards,
        mode: StreamMode::Provisioned,
        max_record_size_kib: 1024,
        tags: BTreeMap::new(),
        creating_ms: 0,
        warm_throughput_mibps: None,
    })
}

fn policy(arn: &str) -> Command {
    Command::PutPolicy {
        arn: arn.into(),
        policy: "{}".into(),
    }
}

fn stream_arn(scope: &Scope, name: &str) -> String {
    scope.stream_arn(name).to_string()
}

#[test]
fn a_stream_deleted_at_once_takes_its_policies_and_no_others() {
    let mut c = Catalog::new();
    for (scope, name) in [(&*A, "s"), (&A, "s2"), (&B, "s"), (&C, "s")] {
        c.apply(&create(scope, name, 1), 0).unwrap();
        c.apply(&policy(&stream_arn(scope, name)), 0).unwrap();
    }
    let consumer = format!("{}/consumer/app:0", stream_arn(&A, "s"));
    c.apply(&policy(&consumer), 0).unwrap();
    let applied = c
        .apply(
            &Command::DeleteStream {
                scope: A.clone(),
                name: "s".into(),
                deleting_ms: 0,
            },
            1,
        )
        .unwrap();
    assert_eq!(applied.removed, vec![1], "its one shard log");
    assert_eq!(applied.removed_streams.len(), 1);
    assert!(c.stream(&A, "s").is_none());
    assert!(c.policy(&stream_arn(&A, "s")).is_none());
    assert!(c.policy(&consumer).is_none());
    assert!(c.policy(&stream_arn(&A, "s2")).is_some(), "a longer name");
    assert!(c.policy(&stream_arn(&B, "s")).is_some(), "another account");
    assert!(c.policy(&stream_arn(&C, "s")).is_some(), "another region");
    assert!(c.stream(&C, "s").is_some(), "another region's stream");
}

#[test]
fn deregistering_a_consumer_drops_its_policy_only() {
    let mut c = Catalog::new();
    c.apply(&create(&A, "s", 1), 0).unwrap();
    for name in ["app", "other"] {
        c.apply(
            &Command::RegisterConsumer {
                scope: A.clone(),
                stream: "s".into(),
                name: name.into(),
                creating_ms: 0,
                tags: BTreeMap::from([("k".into(), "v".into())]),
            },
            5_000,
        )
        .unwrap();
        c.apply(
            &policy(&format!("{}/consumer/{name}:5", stream_arn(&A, "s"))),
            5_000,
        )
        .unwrap();
    }
    let s = c.stream(&A, "s").unwrap();
    assert_eq!(s.consumer("app", 5_000).unwrap().tags["k"], "v");
    c.apply(
        &Command::DeregisterConsumer {
            scope: A.clone(),
            stream: "s".into(),
            name: "app".into(),
            deleting_ms: 0,
        },
        6_000,
    )
    .unwrap();
    let app = format!("{}/consumer/app:5", stream_arn(&A, "s"));
    let other = format!("{}/consumer/other:5", stream_arn(&A, "s"));
    assert!(c.policy(&app).is_none());
    assert!(c.policy(&other).is_some());
}

#[test]
fn a_refused_command_changes_nothing() {
    let mut c = Catalog::new();
    c.apply(&create(&A, "s", 2), 0).unwrap();
    let before = c.clone();
    // Counted first, then refused: the count must not stay.
    let scale = Command::ScaleUniformly {
        scope: A.clone(),
        name: "missing".into(),
        target: 4,
        updating_ms: 0,
        counted: true,
    };
    assert!(c.apply(&scale, 1).is_err());
    // Registered, then tagged; refused at the 21st consumer.
    for i in 0..=CONSUMERS_PER_STREAM_MAX {
        let register = Command::RegisterConsumer {
            scope: A.clone(),
            stream: "s".into(),
            name: format!("c{i}"),
            creating_ms: 0,
            tags: BTreeMap::new(),
        };
        let result = c.apply(&register, 2);
        assert_eq!(result.is_err(), i == CONSUMERS_PER_STREAM_MAX);
    }
    let twenty = c.clone();
    let split = Command::SplitShard {
        scope: A.clone(),
        name: "s".into(),
        index: 0,
        new_start: 1,
        updating_ms: 0,
    };
    assert!(matches!(
        c.apply(&split, 3),
        Err(MetaError::SplitKeyOutside { .. })
    ));
    assert_eq!(c, twenty);
    assert_ne!(before, twenty);
}

#[test]
fn an_autoscale_window_skips_what_no_longer_applies() {
    let mut c = Catalog::new();
    let mut on_demand = create(&A, "s", 4);
    if let Command::CreateStream(cs) = &mut on_demand {
        cs.mode = StreamMode::OnDemand;
    }
    c.apply(&on_demand, 0).unwrap();
    let split = |index| scaling::Action::Split {
        index,
        new_starting_hash_key: c
            .stream(&A, "s")
            .unwrap()
            .shard(index)
            .unwrap()
            .starting_hash_key
            + 10,
    };
    let actions = vec![
        split(0),
        scaling::Action::Merge {
            index: 0,
            adjacent: 1,
        },
        split(1),
    ];
    let window = Command::Autoscale {
        scope: A.clone(),
        name: "s".into(),
        created_ms: 0,
        actions,
    };
    let applied = c.apply(&window, 1).unwrap();
    // Shard 0 closed at the split: the merge of it is skipped.
    assert_eq!(applied.actions.len(), 2);
    assert_eq!(applied.closed.len(), 2);
    assert_eq!(applied.created.len(), 4);
    // The same window for a stream created at another time is refused.
    let other = Command::Autoscale {
        scope: A.clone(),
        name: "s".into(),
        created_ms: 7,
        actions: vec![],
    };
    assert!(c.apply(&other, 2).is_err());
    let nothing = Command::Autoscale {
        scope: A.clone(),
        name: "s".into(),
        created_ms: 0,
        actions: vec![scaling::Action::Merge {
            index: 0,
            adjacent: 1,
        }],
    };
    assert_eq!(
        c.apply(&nothing, 2),
        Err(MetaError::NothingToScale("s".into()))
    );
}

/// Any command, on streams that may or may not exist.
fn command() -> impl Strategy<Value = Command> {
    let account = prop::sample::select(vec![A.clone(), B.clone(), C.clone()]);
    let name = prop::sample::select(vec!["s", "t"]).prop_map(String::from);
    let target = (account, name);
    prop_oneof![
        (target.clone(), 1u32..5).prop_map(|((a, n), k)| create(&a, &n, k)),
        (target.clone(), 0u64..3).prop_map(|((scope, name), d)| Command::DeleteStream {
            scope,
            name,
            deleting_ms: d * 10,
        }),
        (target.clone(), 0u32..5, any::<u128>()).prop_map(|((scope, name), index, k)| {
            Command::SplitShard {
                scope,
                name,
                index,
                new_start: k,
                updating_ms: 5,
            }
        }),
        (target.clone(), 0u32..5, 0u32..5).prop_map(|((scope, name), index, adjacent)| {
            Command::MergeShards {
                scope,
                name,
                index,
                adjacent,
                updating_ms: 5,
            }
        }),
        (target.clone(), 1u32..6, any::<bool>()).prop_map(|((scope, name), target, counted)| {
            Command::ScaleUniformly {
                scope,
                name,
                target,
                updating_ms: 5,
                counted,
            }
        }),
        (target.clone(), 0u32..3).prop_map(|((scope, stream), i)| {
            Command::RegisterConsumer {
                scope,
                stream,
                name: format!("c{i}"),
                creating_ms: 3,
                tags: BTreeMap::new(),
            }
        }),
        (target.clone(), 0u32..3).prop_map(|((scope, stream), i)| {
            Command::DeregisterConsumer {
                scope,
                stream,
                name: format!("c{i}"),
                deleting_ms: 4,
            }
        }),
        (target.clone(), 24u32..100, any::<bool>()).prop_map(|((scope, name), hours, increase)| {
            Command::SetRetention {
                scope,
                name,
                hours,
                increase,
            }
        }),
        target.clone().prop_map(|(scope, name)| Command::AddTags {
            scope,
            name,
            tags: BTreeMap::from([("k".into(), "v".into())]),
        }),
        target.prop_map(|(scope, name)| Command::PutPolicy {
            arn: stream_arn(&scope, &name),
            policy: "{}".into(),
        }),
        Just(Command::Sweep),
        Just(Command::ExpireShards),
    ]
}

fn tiles(c: &Catalog) -> bool {
    c.streams().all(|s| {
        let open = s.open_shards_by_hash_key();
        open.first().is_some_and(|f| f.starting_hash_key == 0)
            && open
                .last()
                .is_some_and(|l| l.ending_hash_key == HASH_KEY_MAX)
            && open
                .windows(2)
                .all(|w| w[0].ending_hash_key.checked_add(1) == Some(w[1].starting_hash_key))
    })
}

proptest! {
    /// Commands are data: each survives JSON (the form a replicated
    /// store keeps), a refused one changes nothing, replaying the same
    /// history gives the same catalog, and the open shards of every
    /// stream keep tiling the hash-key space.
    #[test]
    fn a_history_of_commands_replays_to_the_same_catalog(
        history in prop::collection::vec((command(), 0u64..20), 1..60),
    ) {
        let mut c = Catalog::new();
        let mut now = 0;
        let mut accepted = Vec::new();
        for (command, step) in &history {
            now += step;
            let json = serde_json::to_string(command).unwrap();
            prop_assert_eq!(&serde_json::from_str::<Command>(&json).unwrap(), command);
            let before = c.clone();
            match c.apply(command, now) {
                Ok(_) => accepted.push((command.clone(), now)),
                Err(_) => prop_assert_eq!(&c, &before),
            }
            prop_assert!(tiles(&c));
        }
        let mut replayed = Catalog::new();
        for (command, at) in &accepted {
            replayed.apply(command, *at).unwrap();
        }
        prop_assert_eq!(&replayed, &c);
        prop_assert_eq!(Catalog::from_snapshot(&c.snapshot()).unwrap(), c);
    }
}

/// Observed on AWS (risingwavelabs/risingwave#9961): UpdateShardCount 4 -> 3
/// splits shards 1 and 2 and merges the pieces from the lowest range up,
/// leaving shards 6, 9 and 10 open (11 in all), each a third of the space.
#[test]
fn uniform_scaling_four_to_three_as_aws_did_it() {
    let mut c = Catalog::new();
    c.apply(&create(&A, "s", 4), 0).unwrap();
    let scale = Command::ScaleUniformly {
        scope: A.clone(),
        name: "s".into(),
        target: 3,
        updating_ms: 0,
        counted: true,
    };
    let applied = c.apply(&scale, 1).unwrap();
    let s = c.stream(&A, "s").unwrap();
    assert_eq!(s.shards.len(), 11);
    let open: Vec<u32> = s
        .open_shards_by_hash_key()
        .iter()
        .map(|sh| sh.index)
        .collect();
    assert_eq!(open, vec![6, 9, 10]);
    // Which of a merge's two parents AWS calls the adjacent one is not
    // known; that they are the split pieces and their neighbours is.
    for (child, parents) in [(6, [0, 4]), (9, [5, 7]), (10, [8, 3])] {
        let sh = s.shard(child).unwrap();
        let mut got = [sh.parent.unwrap(), sh.adjacent_parent.unwrap()];
        got.sort_unstable();
        let mut want = parents;
        want.sort_unstable();
        assert_eq!(got, want, "shard {child}");
    }
    assert_eq!(applied.closed.len(), 8, "4 originals and 4 pieces");
    assert_eq!(applied.created.len(), 7);
}

/// Whatever the counts, the open shards end up the equal ranges
/// CreateStream would make, within AWS's half-to-double bounds.
#[test]
fn uniform_scaling_ends_at_equal_ranges() {
    for open in 1u32..=12 {
        for target in open.div_ceil(2)..=2 * open {
            let mut c = Catalog::new();
            c.apply(&create(&A, "s", open), 0).unwrap();
            let scale = Command::ScaleUniformly {
                scope: A.clone(),
                name: "s".into(),
                target,
                updating_ms: 0,
                counted: false,
            };
            c.apply(&scale, 1).unwrap();
            let mut fresh = Catalog::new();
            fresh.apply(&create(&A, "t", target), 0).unwrap();
            let ranges = |c: &Catalog, name: &str| -> Vec<(u128, u128)> {
                c.stream(&A, name)
                    .unwrap()
                    .open_shards_by_hash_key()
                    .iter()
                    .map(|s| (s.starting_hash_key, s.ending_hash_key))
                    .collect()
            };
            assert_eq!(ranges(&c, "s"), ranges(&fresh, "t"), "{open} -> {target}");
        }
    }
}
