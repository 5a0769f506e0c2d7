//! A latency histogram of atomic counters: recorded from any thread without a
//! lock, read whole for `/metrics` (Prometheus' cumulative `le` buckets).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds (one more bucket holds the rest).
pub const LATENCY_BOUNDS_SECONDS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

const BOUNDS_NANOS: [u64; 16] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// Durations counted into [`LATENCY_BOUNDS_SECONDS`] buckets, and their sum.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; 17],
    sum_nanos: AtomicU64,
}

/// What a [`Histogram`] held when read.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Per bucket (not cumulative); the last one is above every bound.
    pub counts: [u64; 17],
    pub sum_seconds: f64,
}

impl Histogram {
    pub fn record(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_NANOS.partition_point(|&bound| bound < nanos);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            counts: std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
            sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

impl HistogramSnapshot {
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// (upper bound, how many took at most that long), ending with `+Inf`.
    pub fn cumulative(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        let mut total = 0;
        self.counts.iter().enumerate().map(move |(i, &n)| {
            total += n;
            (
                LATENCY_BOUNDS_SECONDS
                    .get(i)
                    .copied()
                    .unwrap_or(f64::INFINITY),
                total,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_land_in_the_bucket_of_their_upper_bound() {
        let h = Histogram::default();
        h.record(Duration::from_micros(100)); // on the first bound: le 0.0001
        h.record(Duration::from_micros(101));
        h.record(Duration::from_millis(3));
        h.record(Duration::from_secs(60));
        let s = h.snapshot();
        assert_eq!(s.count(), 4);
        assert_eq!(s.counts[0], 1);
        assert_eq!(s.counts[1], 1);
        assert_eq!(s.counts[5], 1, "3 ms is at most 5 ms");
        assert_eq!(s.counts[16], 1, "above every bound");
        let cumulative: Vec<(f64, u64)> = s.cumulative().collect();
        assert_eq!(cumulative[0], (0.0001, 1));
        assert_eq!(cumulative[4], (0.0025, 2));
        assert_eq!(cumulative[5], (0.005, 3));
        assert_eq!(cumulative[16], (f64::INFINITY, 4));
        assert!((s.sum_seconds - 60.003201).abs() < 1e-9);
    }

    #[test]
    fn bounds_agree_in_both_units() {
        for (s, n) in LATENCY_BOUNDS_SECONDS.iter().zip(BOUNDS_NANOS) {
            assert_eq!((s * 1e9).round() as u64, n);
        }
    }
}
