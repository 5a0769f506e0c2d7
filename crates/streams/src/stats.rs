//! What each stream took in, as AWS's CloudWatch metrics of the same names
//! count it: records and bytes (data plus partition key) acknowledged, and
//! PutRecord(s) entries refused for the shard's write limit. Counted when a
//! put settles; the server's `/metrics` reads them.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use sluice_meta::Scope;

#[derive(Debug, Default)]
pub struct StreamCounters {
    pub incoming_records: AtomicU64,
    pub incoming_bytes: AtomicU64,
    pub throttled_records: AtomicU64,
}

/// One stream's counts, read at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamCounts {
    pub scope: Scope,
    pub stream: String,
    pub incoming_records: u64,
    pub incoming_bytes: u64,
    pub throttled_records: u64,
}

#[derive(Debug, Default)]
pub struct Stats {
    /// By account and region, then stream name.
    streams: RwLock<HashMap<Scope, HashMap<String, Arc<StreamCounters>>>>,
}

impl Stats {
    /// A stream's counters (made on first use).
    pub fn stream(&self, scope: &Scope, name: &str) -> Arc<StreamCounters> {
        if let Some(c) = self
            .streams
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(scope)
            .and_then(|s| s.get(name))
        {
            return c.clone();
        }
        self.streams
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(scope.clone())
            .or_default()
            .entry(name.to_owned())
            .or_default()
            .clone()
    }

    /// The counts of the streams in `live` (account, region, name), sorted; the
    /// counters of streams not in it are forgotten, so that a server
    /// creating and deleting streams does not keep them all.
    pub fn counts(&self, live: &HashSet<(&str, &str, &str)>) -> Vec<StreamCounts> {
        let mut streams = self.streams.write().unwrap_or_else(|p| p.into_inner());
        for (scope, by_name) in streams.iter_mut() {
            by_name.retain(|name, _| {
                live.contains(&(scope.account.as_str(), scope.region.as_str(), name.as_str()))
            });
        }
        streams.retain(|_, by_name| !by_name.is_empty());
        let mut rows: Vec<StreamCounts> = streams
            .iter()
            .flat_map(|(scope, by_name)| {
                by_name.iter().map(move |(name, c)| StreamCounts {
                    scope: scope.clone(),
                    stream: name.clone(),
                    incoming_records: c.incoming_records.load(Ordering::Relaxed),
                    incoming_bytes: c.incoming_bytes.load(Ordering::Relaxed),
                    throttled_records: c.throttled_records.load(Ordering::Relaxed),
                })
            })
            .collect();
        rows.sort_unstable_by(|a, b| (&a.scope, &a.stream).cmp(&(&b.scope, &b.stream)));
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_that_are_gone_are_forgotten() {
        let m = Stats::default();
        let east = Scope::new("111111111111", "us-east-1");
        let west = Scope::new("111111111111", "us-west-2");
        let a = m.stream(&east, "a");
        a.incoming_records.fetch_add(5, Ordering::Relaxed);
        m.stream(&east, "gone")
            .incoming_bytes
            .fetch_add(1, Ordering::Relaxed);
        m.stream(&west, "a")
            .incoming_records
            .fetch_add(7, Ordering::Relaxed);
        let live = HashSet::from([("111111111111", "us-east-1", "a")]);
        let counts = m.counts(&live);
        assert_eq!(counts.len(), 1, "the same name in another region is not it");
        assert_eq!(counts[0].stream, "a");
        assert_eq!(counts[0].incoming_records, 5);
        assert!(Arc::ptr_eq(&a, &m.stream(&east, "a")));
        assert!(m.counts(&HashSet::new()).is_empty());
    }
}
