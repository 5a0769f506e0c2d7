//! How ON_DEMAND streams follow their load: the whole policy, in one place.
//!
//! The server counts what each open shard of an ON_DEMAND stream
//! acknowledged (records, and bytes of data plus partition key) and closes a
//! measuring window every [`WINDOW_MS`] of its clock. At each window:
//! - A shard is **hot** when its rate in the window was above
//!   [`SPLIT_BYTES_PER_S`] or [`SPLIT_RECORDS_PER_S`] (about half of a
//!   shard's 1 MiB/s and 1,000 records/s, so that a shard splits well before
//!   it would be throttled). A shard hot for [`HOT_WINDOWS`] windows in a row
//!   splits at the middle of the hash keys it was written with in the last
//!   window (with many partition keys, about the middle of its range). Every
//!   hot shard splits in the same window, so the shard count can double each
//!   time: a producer ramping up over many partition keys is followed within
//!   seconds. A shard written with a single hash key is never split: no split
//!   could divide its load (one partition key is capped at a shard's limits
//!   on AWS too), and splitting would only multiply shards.
//! - A shard is **cold** while its rate stays below a quarter of both lines.
//!   Two adjacent open shards that have both been cold for [`COOL_DOWN_MS`]
//!   merge (one pair per stream per window, so capacity goes away slowly), as
//!   long as the stream keeps at least [`ON_DEMAND_MIN_SHARDS`] open shards
//!   and at least the shards its warm throughput asks for. A merged shard is
//!   below half of the split line, so it does not split again at once.
//!
//! Everything here is a function of the measurements and `now`: no clock, no
//! I/O, so the policy is tested by feeding it windows.

use std::collections::HashMap;

use crate::{Stream, StreamMode, HASH_KEY_MAX};

/// Length of a measuring window on the server's clock.
pub const WINDOW_MS: u64 = 1_000;
/// A shard writing more than this (data plus partition keys) is hot.
pub const SPLIT_BYTES_PER_S: u64 = 500_000;
/// A shard writing more records than this per second is hot.
pub const SPLIT_RECORDS_PER_S: u64 = 500;
/// Consecutive hot windows before a split.
pub const HOT_WINDOWS: u32 = 2;
/// How long two adjacent shards must both be cold before they merge.
pub const COOL_DOWN_MS: u64 = 10 * 60 * 1000;
/// AWS: an ON_DEMAND stream starts with (and keeps at least) 4 shards.
pub const ON_DEMAND_MIN_SHARDS: usize = 4;

/// What one shard wrote in a window, and the range of hash keys written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    pub records: u64,
    pub bytes: u64,
    pub min_hash: u128,
    pub max_hash: u128,
}

impl Default for Load {
    fn default() -> Self {
        Self {
            records: 0,
            bytes: 0,
            min_hash: u128::MAX,
            max_hash: 0,
        }
    }
}

impl Load {
    /// Counts records written with hash keys from `min_hash` to `max_hash`.
    pub fn add(&mut self, records: u64, bytes: u64, min_hash: u128, max_hash: u128) {
        self.records += records;
        self.bytes += bytes;
        self.min_hash = self.min_hash.min(min_hash);
        self.max_hash = self.max_hash.max(max_hash);
    }
}

/// What the policy remembers of one open shard (by shard log id).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Trend {
    hot_windows: u32,
    /// Start of the current cold run.
    cold_since_ms: Option<u64>,
}

/// A change the policy asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Split shard `index` at `new_starting_hash_key`.
    Split {
        index: u32,
        #[serde(with = "crate::decimal")]
        new_starting_hash_key: u128,
    },
    /// Merge shard `index` with the adjacent shard `adjacent` (higher range).
    Merge { index: u32, adjacent: u32 },
}

/// The policy's memory across windows.
#[derive(Debug, Default)]
pub struct Scaler {
    trends: HashMap<u64, Trend>,
}

impl Scaler {
    /// Closes one window of `elapsed_ms` for `stream`: `loads` by shard log
    /// id (absent: nothing written). Returns what to change.
    pub fn window(
        &mut self,
        stream: &Stream,
        loads: &HashMap<u64, Load>,
        elapsed_ms: u64,
        now_ms: u64,
    ) -> Vec<Action> {
        if stream.mode != StreamMode::OnDemand || elapsed_ms == 0 {
            return Vec::new();
        }
        let mut open: Vec<_> = stream.open_shards().collect();
        open.sort_by_key(|s| s.starting_hash_key);
        let mut actions = Vec::new();
        for shard in &open {
            let load = loads.get(&shard.log_id).copied().unwrap_or_default();
            let per_s = |n: u64| n.saturating_mul(1000) / elapsed_ms;
            let (bytes, records) = (per_s(load.bytes), per_s(load.records));
            let hot = bytes > SPLIT_BYTES_PER_S || records > SPLIT_RECORDS_PER_S;
            let cold = bytes < SPLIT_BYTES_PER_S / 4 && records < SPLIT_RECORDS_PER_S / 4;
            let trend = self.trends.entry(shard.log_id).or_insert(Trend {
                hot_windows: 0,
                // A new shard counts as cold from its creation at the earliest.
                cold_since_ms: None,
            });
            trend.hot_windows = if hot { trend.hot_windows + 1 } else { 0 };
            trend.cold_since_ms = if cold {
                Some(
                    trend
                        .cold_since_ms
                        .unwrap_or(now_ms.saturating_sub(elapsed_ms))
                        .max(shard.created_ms),
                )
            } else {
                None
            };
            if trend.hot_windows >= HOT_WINDOWS && load.min_hash < load.max_hash {
                let (start, end) = (shard.starting_hash_key, shard.ending_hash_key);
                let (lo, hi) = (load.min_hash.max(start), load.max_hash.min(end));
                // Between the lowest and highest key written, so that both
                // children get some of the load.
                let middle = lo + (hi - lo) / 2 + 1;
                // SplitShard's rule: strictly inside, above start + 1.
                if middle > start.saturating_add(1) && middle < end && middle <= hi {
                    actions.push(Action::Split {
                        index: shard.index,
                        new_starting_hash_key: middle,
                    });
                }
            }
        }
        // Forget shards that are no longer open.
        let open_ids: std::collections::HashSet<u64> = open.iter().map(|s| s.log_id).collect();
        self.trends.retain(|id, _| open_ids.contains(id));
        if actions.is_empty() {
            let keep = ON_DEMAND_MIN_SHARDS.max(stream.warm_throughput_mibps.unwrap_or(0) as usize);
            if open.len() > keep {
                let cooled = |log_id: u64| {
                    self.trends
                        .get(&log_id)
                        .and_then(|t| t.cold_since_ms)
                        .is_some_and(|since| now_ms.saturating_sub(since) >= COOL_DOWN_MS)
                };
                if let Some(pair) = open.windows(2).find(|p| {
                    p[0].ending_hash_key.checked_add(1) == Some(p[1].starting_hash_key)
                        && cooled(p[0].log_id)
                        && cooled(p[1].log_id)
                }) {
                    actions.push(Action::Merge {
                        index: pair[0].index,
                        adjacent: pair[1].index,
                    });
                }
            }
        }
        debug_assert!(open
            .last()
            .is_none_or(|s| s.ending_hash_key == HASH_KEY_MAX));
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Catalog, CreateStream, Scope, DEFAULT_ACCOUNT, DEFAULT_REGION};
    use std::sync::LazyLock;

    static A: LazyLock<Scope> = LazyLock::new(|| Scope::new(DEFAULT_ACCOUNT, DEFAULT_REGION));
    use std::collections::BTreeMap;

    fn on_demand(c: &mut Catalog) {
        c.create_stream(
            CreateStream {
                scope: A.clone(),
                name: "s".into(),
                shard_count: ON_DEMAND_MIN_SHARDS as u32,
                mode: StreamMode::OnDemand,
                max_record_size_kib: 1024,
                tags: BTreeMap::new(),
                creating_ms: 0,
                warm_throughput_mibps: None,
            },
            0,
        )
        .unwrap();
    }

    /// `records_per_s` spread evenly over the hash space (many partition
    /// keys): each open shard gets its share of the range.
    fn spread(c: &Catalog, records_per_s: u64) -> HashMap<u64, Load> {
        let s = c.stream(&A, "s").unwrap();
        s.open_shards()
            .map(|sh| {
                let share =
                    (sh.ending_hash_key - sh.starting_hash_key) as f64 / HASH_KEY_MAX as f64;
                let records = (records_per_s as f64 * share).round() as u64;
                let load = Load {
                    records,
                    bytes: records * 100,
                    // Many keys: the whole range is written.
                    min_hash: sh.starting_hash_key,
                    max_hash: sh.ending_hash_key,
                };
                (sh.log_id, load)
            })
            .collect()
    }

    fn apply(c: &mut Catalog, actions: &[Action], now: u64) {
        for a in actions {
            match *a {
                Action::Split {
                    index,
                    new_starting_hash_key,
                } => {
                    c.split_shard(&A, "s", index, new_starting_hash_key, now, 0)
                        .unwrap();
                }
                Action::Merge { index, adjacent } => {
                    c.merge_shards(&A, "s", index, adjacent, now, 0).unwrap();
                }
            }
        }
    }

    fn open(c: &Catalog) -> usize {
        c.stream(&A, "s").unwrap().open_shards().count()
    }

    /// A ramp from 1,000 to 20,000 records/s over many keys: the stream
    /// doubles until no shard is above the line, within seconds; then the
    /// load stops and, after the cool-down, merges bring it back to 4.
    #[test]
    fn a_ramp_is_followed_up_and_back_down() {
        let mut c = Catalog::new();
        on_demand(&mut c);
        let mut scaler = Scaler::default();
        let mut now = 0;
        let mut counts = Vec::new();
        for second in 0..30u64 {
            let rate = (1_000 + second * 1_000).min(20_000);
            now += WINDOW_MS;
            let loads = spread(&c, rate);
            let stream = c.stream(&A, "s").unwrap().clone();
            let actions = scaler.window(&stream, &loads, WINDOW_MS, now);
            apply(&mut c, &actions, now);
            counts.push(open(&c));
        }
        assert!(
            counts.windows(2).all(|w| w[0] <= w[1]),
            "only grows under load: {counts:?}"
        );
        assert_eq!(*counts.last().unwrap(), 64, "{counts:?}");
        let per_shard = spread(&c, 20_000);
        assert!(per_shard.values().all(|l| l.records <= SPLIT_RECORDS_PER_S));
        // Caught up within a few seconds of reaching the top rate.
        let top_at = counts.iter().position(|&n| n == 64).unwrap();
        assert!(top_at <= 22, "{counts:?}");

        // Silence: nothing merges before the cool-down, then one pair per window.
        let stream_at_rest = |c: &Catalog| c.stream(&A, "s").unwrap().clone();
        let quiet_from = now;
        while now - quiet_from < COOL_DOWN_MS - WINDOW_MS {
            now += WINDOW_MS;
            let actions = scaler.window(&stream_at_rest(&c), &HashMap::new(), WINDOW_MS, now);
            assert!(actions.is_empty(), "at {}", now - quiet_from);
        }
        let mut merges = 0;
        for _ in 0..2_000 {
            now += WINDOW_MS;
            let actions = scaler.window(&stream_at_rest(&c), &HashMap::new(), WINDOW_MS, now);
            assert!(actions.len() <= 1);
            merges += actions.len();
            apply(&mut c, &actions, now);
        }
        assert_eq!(open(&c), ON_DEMAND_MIN_SHARDS);
        assert_eq!(merges, 60);
        // The open shards still tile the hash space.
        let s = c.stream(&A, "s").unwrap();
        let mut ranges: Vec<_> = s
            .open_shards()
            .map(|s| (s.starting_hash_key, s.ending_hash_key))
            .collect();
        ranges.sort();
        assert_eq!(ranges[0].0, 0);
        assert_eq!(ranges.last().unwrap().1, HASH_KEY_MAX);
        assert!(ranges.windows(2).all(|w| w[0].1 + 1 == w[1].0));
    }

    #[test]
    fn one_hot_window_is_not_enough_and_provisioned_streams_are_left_alone() {
        let mut c = Catalog::new();
        on_demand(&mut c);
        let mut scaler = Scaler::default();
        let stream = c.stream(&A, "s").unwrap().clone();
        let hot = spread(&c, 40_000);
        assert!(scaler.window(&stream, &hot, WINDOW_MS, 1_000).is_empty());
        assert!(scaler
            .window(&stream, &HashMap::new(), WINDOW_MS, 2_000)
            .is_empty());
        assert!(
            scaler.window(&stream, &hot, WINDOW_MS, 3_000).is_empty(),
            "the streak restarted"
        );
        let splits = scaler.window(&stream, &hot, WINDOW_MS, 4_000);
        assert_eq!(splits.len(), 4);
        // Bytes alone make a shard hot too.
        let mut scaler = Scaler::default();
        let heavy: HashMap<u64, Load> = stream
            .open_shards()
            .map(|s| {
                let load = Load {
                    records: 10,
                    bytes: 2 * SPLIT_BYTES_PER_S,
                    min_hash: s.starting_hash_key,
                    max_hash: s.ending_hash_key,
                };
                (s.log_id, load)
            })
            .collect();
        scaler.window(&stream, &heavy, 2 * WINDOW_MS, 2_000);
        assert!(
            scaler
                .window(&stream, &heavy, 2 * WINDOW_MS, 4_000)
                .is_empty(),
            "exactly at the line is not above it"
        );
        let heavier: HashMap<u64, Load> = heavy
            .iter()
            .map(|(k, l)| {
                (
                    *k,
                    Load {
                        bytes: l.bytes + 2,
                        ..*l
                    },
                )
            })
            .collect();
        scaler.window(&stream, &heavier, 2 * WINDOW_MS, 6_000);
        assert_eq!(
            scaler.window(&stream, &heavier, 2 * WINDOW_MS, 8_000).len(),
            4
        );

        let mut provisioned = stream.clone();
        provisioned.mode = StreamMode::Provisioned;
        let mut scaler = Scaler::default();
        for t in 1..5 {
            assert!(scaler
                .window(&provisioned, &hot, WINDOW_MS, t * 1_000)
                .is_empty());
        }
    }

    /// One hot partition key: no split can divide its load, so none is made,
    /// however long it stays hot; a hot key next to a few others splits only
    /// until it is alone.
    #[test]
    fn a_single_hot_key_is_not_split_forever() {
        let mut c = Catalog::new();
        on_demand(&mut c);
        let mut scaler = Scaler::default();
        let key = 12345u128 << 100;
        let mut now = 0;
        for _ in 0..600 {
            now += WINDOW_MS;
            let stream = c.stream(&A, "s").unwrap().clone();
            let mut one_key: HashMap<u64, Load> = HashMap::new();
            one_key
                .entry(stream.shard_for_hash_key(key).log_id)
                .or_default()
                .add(900, 90_000, key, key);
            let actions = scaler.window(&stream, &one_key, WINDOW_MS, now);
            assert!(actions.is_empty(), "{actions:?}");
        }
        // The hot key and one neighbour: splits between them, then stops.
        let neighbour = key + (1 << 90);
        let mut splits = 0;
        for _ in 0..600 {
            now += WINDOW_MS;
            let stream = c.stream(&A, "s").unwrap().clone();
            let mut loads: HashMap<u64, Load> = HashMap::new();
            loads
                .entry(stream.shard_for_hash_key(key).log_id)
                .or_default()
                .add(900, 90_000, key, key);
            loads
                .entry(stream.shard_for_hash_key(neighbour).log_id)
                .or_default()
                .add(10, 1_000, neighbour, neighbour);
            let actions = scaler.window(&stream, &loads, WINDOW_MS, now);
            splits += actions
                .iter()
                .filter(|a| matches!(a, Action::Split { .. }))
                .count();
            apply(&mut c, &actions, now);
        }
        assert_eq!(splits, 1, "one split separates them");
        let s = c.stream(&A, "s").unwrap();
        assert_ne!(
            s.shard_for_hash_key(key).index,
            s.shard_for_hash_key(neighbour).index
        );
    }

    #[test]
    fn warm_throughput_is_a_floor_for_merges() {
        let mut c = Catalog::new();
        on_demand(&mut c);
        c.update_shard_count(&A, "s", 8, 0, 0).unwrap();
        c.stream_mut(&A, "s").unwrap().warm_throughput_mibps = Some(6);
        let mut scaler = Scaler::default();
        let mut now = 0;
        for _ in 0..2_000 {
            now += WINDOW_MS;
            let stream = c.stream(&A, "s").unwrap().clone();
            let actions = scaler.window(&stream, &HashMap::new(), WINDOW_MS, now);
            apply(&mut c, &actions, now);
        }
        assert_eq!(open(&c), 6);
    }
}
