//! AWS's per-shard throughput limits (the `aws` limits profile), as token
//! buckets on the server's clock.
//!
//! - Writes: `write_bytes_per_s` (data plus partition key) and
//!   `write_records_per_s`, each a bucket holding one second's worth. A record
//!   larger than a second's worth of bytes (streams with MaxRecordSizeInKiB
//!   above 1024) takes what the bytes bucket holds and draws the whole record
//!   on a burst allowance of `write_burst_bytes` that refills at
//!   `write_bytes_per_s`: an occasional large record goes, a steady stream of
//!   them is throttled, as AWS describes.
//! - Reads: `get_records_per_s` calls, and `read_bytes_per_s` of data: a call
//!   may return more than the bucket holds (up to 10 MiB), which puts the
//!   bucket in debt; calls wait until the debt is repaid, and after a call that
//!   returned 10 MiB the next 5 seconds are refused outright (AWS's rule).
//! - `get_shard_iterator_per_s` GetShardIterator calls.
//!
//! A refusal is ProvisionedThroughputExceededException (per entry in
//! PutRecords). The buckets are kept per shard log; with the `off` profile
//! nothing is counted.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

/// What one shard may do per second (AWS's values by default; raise them for
/// self-hosted use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardCapacity {
    pub write_bytes_per_s: u64,
    pub write_records_per_s: u64,
    pub write_burst_bytes: u64,
    pub read_bytes_per_s: u64,
    pub get_records_per_s: u64,
    pub get_shard_iterator_per_s: u64,
}

impl Default for ShardCapacity {
    fn default() -> Self {
        Self {
            write_bytes_per_s: 1 << 20,
            write_records_per_s: 1_000,
            write_burst_bytes: 10 << 20,
            read_bytes_per_s: 2 << 20,
            get_records_per_s: 5,
            get_shard_iterator_per_s: 5,
        }
    }
}

/// AWS: at most 5 streams of an account CREATING at once.
pub const STREAMS_CREATING_MAX: usize = 5;

/// AWS's control-plane rates: (operation, calls per second, per stream
/// rather than per account). Operations not listed are not limited.
pub const CONTROL_PLANE_RATES: [(&str, u64, bool); 16] = [
    ("CreateStream", 5, false),
    ("DeleteStream", 5, false),
    ("ListStreams", 5, false),
    ("DescribeStream", 10, false),
    ("DescribeStreamSummary", 20, false),
    ("SplitShard", 5, false),
    ("MergeShards", 5, false),
    ("RegisterStreamConsumer", 5, false),
    ("DeregisterStreamConsumer", 5, false),
    ("AddTagsToStream", 5, false),
    ("RemoveTagsFromStream", 5, false),
    ("ListTagsForStream", 5, false),
    ("DescribeLimits", 1, false),
    ("ListShards", 1_000, true),
    ("DescribeStreamConsumer", 20, true),
    ("ListStreamConsumers", 5, true),
];

/// AWS: after a GetRecords that returned 10 MiB, calls within 5 s are throttled.
/// (A full answer stops short of 10 MiB by less than a record: 9 MiB counts.)
pub const BIG_READ_BYTES: u64 = 9 << 20;
pub const BIG_READ_PAUSE_MS: u64 = 5_000;

/// Tokens that refill at `rate` per second up to `capacity`, on the given clock.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: f64,
    capacity: f64,
    rate: f64,
    at_ms: u64,
}

impl Bucket {
    /// A full bucket.
    pub fn new(capacity: u64, rate: u64, now_ms: u64) -> Self {
        Self {
            tokens: capacity as f64,
            capacity: capacity as f64,
            rate: rate as f64,
            at_ms: now_ms,
        }
    }

    fn refill(&mut self, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.at_ms) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.at_ms = self.at_ms.max(now_ms);
    }

    pub fn available(&mut self, now_ms: u64) -> f64 {
        self.refill(now_ms);
        self.tokens
    }

    /// Takes `n` if the bucket holds them.
    pub fn try_take(&mut self, now_ms: u64, n: u64) -> bool {
        self.refill(now_ms);
        if self.tokens >= n as f64 {
            self.tokens -= n as f64;
            true
        } else {
            false
        }
    }

    /// Takes `n` whatever the bucket holds (it may go into debt).
    pub fn charge(&mut self, now_ms: u64, n: u64) {
        self.refill(now_ms);
        self.tokens -= n as f64;
    }
}

#[derive(Debug)]
struct ShardBuckets {
    write_bytes: Bucket,
    write_records: Bucket,
    burst: Bucket,
    get_records: Bucket,
    read_bytes: Bucket,
    reads_paused_until_ms: u64,
    iterators: Bucket,
}

impl ShardBuckets {
    fn new(c: &ShardCapacity, now_ms: u64) -> Self {
        Self {
            write_bytes: Bucket::new(c.write_bytes_per_s, c.write_bytes_per_s, now_ms),
            write_records: Bucket::new(c.write_records_per_s, c.write_records_per_s, now_ms),
            burst: Bucket::new(c.write_burst_bytes, c.write_bytes_per_s, now_ms),
            get_records: Bucket::new(c.get_records_per_s, c.get_records_per_s, now_ms),
            read_bytes: Bucket::new(c.read_bytes_per_s, c.read_bytes_per_s, now_ms),
            reads_paused_until_ms: 0,
            iterators: Bucket::new(
                c.get_shard_iterator_per_s,
                c.get_shard_iterator_per_s,
                now_ms,
            ),
        }
    }
}

/// The buckets of every shard that was used, by shard log id.
#[derive(Debug, Default)]
pub struct Throttles {
    shards: Mutex<HashMap<u64, ShardBuckets>>,
    /// Control-plane calls by account and region, operation and (for
    /// per-stream rates) stream.
    calls: Mutex<HashMap<(sluice_meta::Scope, &'static str, String), Bucket>>,
    /// Shards a test control throttles outright, until a time (whatever the
    /// limits profile).
    blocked: Mutex<HashMap<u64, u64>>,
}

/// One shard's buckets, locked.
pub struct Shard<'a> {
    guard: MutexGuard<'a, HashMap<u64, ShardBuckets>>,
    log_id: u64,
    capacity: ShardCapacity,
    now_ms: u64,
}

impl std::fmt::Debug for Shard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard")
            .field("log_id", &self.log_id)
            .finish()
    }
}

impl Shard<'_> {
    fn buckets(&mut self) -> &mut ShardBuckets {
        let (capacity, now) = (self.capacity, self.now_ms);
        self.guard
            .entry(self.log_id)
            .or_insert_with(|| ShardBuckets::new(&capacity, now))
    }

    /// Admits one record of `bytes` (data plus key) for writing, or not.
    pub fn admit_write(&mut self, bytes: u64) -> bool {
        let (now, per_s) = (self.now_ms, self.capacity.write_bytes_per_s);
        let b = self.buckets();
        if b.write_records.available(now) < 1.0 {
            return false;
        }
        if bytes > per_s {
            // A large record: the burst allowance pays for it, and it empties
            // the per-second bucket on its way.
            if !b.burst.try_take(now, bytes) {
                return false;
            }
            let left = b.write_bytes.available(now).max(0.0) as u64;
            b.write_bytes.charge(now, left);
        } else {
            if !b.write_bytes.try_take(now, bytes) {
                return false;
            }
            // Small records draw on the burst allowance too, so that it
            // refills only from what the stream leaves unused.
            let room = b.burst.available(now).max(0.0) as u64;
            b.burst.charge(now, bytes.min(room));
        }
        b.write_records.charge(now, 1);
        true
    }

    /// Admits a GetRecords call, or not.
    pub fn admit_read(&mut self) -> bool {
        let now = self.now_ms;
        let b = self.buckets();
        if now < b.reads_paused_until_ms || b.read_bytes.available(now) <= 0.0 {
            return false;
        }
        b.get_records.try_take(now, 1)
    }

    /// Charges what a GetRecords returned.
    pub fn charge_read(&mut self, bytes: u64) {
        let now = self.now_ms;
        let b = self.buckets();
        b.read_bytes.charge(now, bytes);
        if bytes >= BIG_READ_BYTES {
            b.reads_paused_until_ms = now + BIG_READ_PAUSE_MS;
        }
    }

    /// Admits a GetShardIterator call, or not.
    pub fn admit_iterator(&mut self) -> bool {
        let now = self.now_ms;
        self.buckets().iterators.try_take(now, 1)
    }
}

impl Throttles {
    /// The buckets of one shard (created full on first use).
    pub fn shard(&self, log_id: u64, capacity: ShardCapacity, now_ms: u64) -> Shard<'_> {
        Shard {
            guard: self.shards.lock().unwrap_or_else(|p| p.into_inner()),
            log_id,
            capacity,
            now_ms,
        }
    }

    /// Forgets shards that no longer exist, and blocks that are over.
    pub fn retain(&self, live: impl Fn(u64) -> bool, now_ms: u64) {
        self.shards
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|id, _| live(*id));
        self.blocked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|id, until| live(*id) && *until > now_ms);
    }

    /// Admits a control-plane call, or not (operations without a rate always).
    pub fn admit_call(
        &self,
        scope: &sluice_meta::Scope,
        operation: &str,
        stream: Option<&str>,
        now_ms: u64,
    ) -> bool {
        let Some(&(operation, rate, per_stream)) =
            CONTROL_PLANE_RATES.iter().find(|(o, _, _)| *o == operation)
        else {
            return true;
        };
        let stream = if per_stream { stream.unwrap_or("") } else { "" };
        let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        // Full buckets are as good as none: forget them when there are many.
        if calls.len() > 10_000 {
            calls.retain(|_, b| b.available(now_ms) < b.capacity);
        }
        calls
            .entry((scope.clone(), operation, stream.to_owned()))
            .or_insert_with(|| Bucket::new(rate, rate, now_ms))
            .try_take(now_ms, 1)
    }

    /// Throttles a shard outright until `until_ms` (a test control).
    pub fn block(&self, log_id: u64, until_ms: u64) {
        self.blocked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(log_id, until_ms);
    }

    /// Lifts every test-control throttle (a reset).
    pub fn unblock_all(&self) {
        self.blocked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Whether any shard is blocked (so that even unlimited calls must look).
    pub fn any_blocked(&self) -> bool {
        !self
            .blocked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    /// Whether a test control throttles the shard now.
    pub fn is_blocked(&self, log_id: u64, now_ms: u64) -> bool {
        self.blocked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&log_id)
            .is_some_and(|&until| now_ms < until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the sequence of waits and requests: a bucket never holds
        /// more than its capacity, and over any run it admits at most its
        /// capacity plus what the elapsed time refilled.
        #[test]
        fn a_bucket_admits_no_more_than_capacity_plus_refill(
            capacity in 1u64..5_000,
            rate in 1u64..5_000,
            steps in proptest::collection::vec((0u64..2_000, 1u64..3_000), 1..200),
        ) {
            let mut b = Bucket::new(capacity, rate, 0);
            let (mut now, mut admitted) = (0u64, 0u64);
            for (wait, n) in steps {
                now += wait;
                if b.try_take(now, n) {
                    admitted += n;
                }
                prop_assert!(b.available(now) <= capacity as f64 + 1e-6);
                prop_assert!(b.available(now) >= -1e-6, "try_take never goes into debt");
                let bound = capacity as f64 + rate as f64 * now as f64 / 1000.0;
                prop_assert!(admitted as f64 <= bound + 1e-6, "{admitted} > {bound}");
            }
        }

        /// Writes to a shard: at most a second's records and bytes (plus
        /// refill), whatever the sizes, the large-record path included.
        #[test]
        fn shard_writes_respect_both_limits(
            writes in proptest::collection::vec((0u64..300, 1u64..(3 << 20)), 1..100),
        ) {
            let t = Throttles::default();
            let c = ShardCapacity::default();
            let (mut now, mut records, mut small_bytes) = (0u64, 0u64, 0u64);
            for (wait, bytes) in writes {
                now += wait;
                if t.shard(1, c, now).admit_write(bytes) {
                    records += 1;
                    if bytes <= c.write_bytes_per_s {
                        small_bytes += bytes;
                    }
                }
                let secs = now as f64 / 1000.0;
                prop_assert!(records as f64 <= c.write_records_per_s as f64 * (1.0 + secs) + 1e-6);
                prop_assert!(small_bytes as f64 <= c.write_bytes_per_s as f64 * (1.0 + secs) + 1e-6);
            }
        }
    }

    fn shard(t: &Throttles, now: u64) -> Shard<'_> {
        t.shard(1, ShardCapacity::default(), now)
    }

    #[test]
    fn writes_by_records_and_by_bytes() {
        let t = Throttles::default();
        let mut s = shard(&t, 0);
        let admitted = (0..1_500).filter(|_| s.admit_write(10)).count();
        assert_eq!(admitted, 1_000, "1,000 records a second");
        drop(s);
        let mut s = shard(&t, 500);
        assert_eq!(
            (0..1_000).filter(|_| s.admit_write(10)).count(),
            500,
            "half a second refills half"
        );
        drop(s);
        // Bytes: 1 MiB a second.
        let t = Throttles::default();
        let mut s = shard(&t, 0);
        assert!(s.admit_write(600 << 10));
        assert!(!s.admit_write(600 << 10));
        assert!(s.admit_write(400 << 10));
        drop(s);
        let mut s = shard(&t, 1_000);
        assert!(s.admit_write(1 << 20), "a full second later");
    }

    #[test]
    fn large_records_draw_on_the_burst_allowance() {
        let t = Throttles::default();
        let mut s = shard(&t, 0);
        assert!(s.admit_write(10 << 20), "one 10 MiB record goes");
        assert!(!s.admit_write(1), "and empties the per-second bucket");
        drop(s);
        let mut s = shard(&t, 1_000);
        assert!(
            s.admit_write(1 << 10),
            "small records flow again a second later"
        );
        assert!(
            !s.admit_write(5 << 20),
            "but another large one waits for the allowance"
        );
        drop(s);
        let mut s = shard(&t, 7_000);
        assert!(s.admit_write(5 << 20));
    }

    #[test]
    fn reads_by_calls_by_bytes_and_the_ten_mib_pause() {
        let t = Throttles::default();
        let mut s = shard(&t, 0);
        assert_eq!(
            (0..10).filter(|_| s.admit_read()).count(),
            5,
            "5 calls a second"
        );
        drop(s);
        let mut s = shard(&t, 1_000);
        assert!(s.admit_read());
        s.charge_read(3 << 20);
        assert!(
            !s.admit_read(),
            "in debt: 3 MiB read against 2 MiB a second"
        );
        drop(s);
        let mut s = shard(&t, 1_600);
        assert!(s.admit_read(), "the debt is repaid after half a second");
        s.charge_read(BIG_READ_BYTES);
        drop(s);
        for at in [1_700, 4_000, 6_599] {
            assert!(!shard(&t, at).admit_read(), "paused at {at}");
        }
        assert!(shard(&t, 6_600).admit_read());
        // GetShardIterator: 5 a second.
        let mut s = shard(&t, 10_000);
        assert_eq!((0..10).filter(|_| s.admit_iterator()).count(), 5);
    }
}
