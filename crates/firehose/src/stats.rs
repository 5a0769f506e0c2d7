//! What each delivery stream took in and delivered, for `/metrics`:
//! counters bumped by puts and deliveries, read at scrape time.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::delivery::Delivered;

/// One delivery stream's counts since the server started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub incoming_records: u64,
    pub incoming_bytes: u64,
    /// Records refused by the Direct PUT quotas.
    pub throttled_records: u64,
    pub delivered_objects: u64,
    pub delivered_records: u64,
    /// Bytes of the objects as stored (after compression).
    pub delivered_bytes: u64,
    pub failed_deliveries: u64,
    /// How old the oldest record of the last delivery was when it was
    /// delivered: the delivery latency.
    pub last_delivery_latency_ms: u64,
    /// The arrival time of the oldest record not delivered yet, as the
    /// delivery task last saw it (AWS's DeliveryToS3.DataFreshness is the
    /// age of this record).
    pub oldest_undelivered_ms: Option<u64>,
}

/// Counts by `account/region/name`.
#[derive(Debug, Default)]
pub struct Stats {
    counts: Mutex<BTreeMap<String, Counts>>,
}

impl Stats {
    fn with(&self, key: &str, change: impl FnOnce(&mut Counts)) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        match counts.get_mut(key) {
            Some(c) => change(c),
            None => change(counts.entry(key.to_owned()).or_default()),
        }
    }

    pub(crate) fn incoming(&self, key: &str, records: u64, bytes: u64, throttled: u64) {
        self.with(key, |c| {
            c.incoming_records += records;
            c.incoming_bytes += bytes;
            c.throttled_records += throttled;
        });
    }

    pub(crate) fn delivered(&self, key: &str, d: &Delivered, now_ms: u64) {
        self.with(key, |c| {
            c.delivered_objects += 1;
            c.delivered_records += d.records;
            c.delivered_bytes += d.bytes;
            c.last_delivery_latency_ms = now_ms.saturating_sub(d.oldest_ms);
        });
    }

    pub(crate) fn waiting(&self, key: &str, oldest_ms: Option<u64>) {
        self.with(key, |c| c.oldest_undelivered_ms = oldest_ms);
    }

    pub(crate) fn failed(&self, key: &str) {
        self.with(key, |c| c.failed_deliveries += 1);
    }

    pub(crate) fn forget(&self, key: &str) {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// Every delivery stream's counts, by `account/region/name`.
    pub fn snapshot(&self) -> BTreeMap<String, Counts> {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
