//! What a run reports: throughput, latency percentiles, read-back, errors,
//! and the warnings a reader should see first.

use super::*;

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Latency {
    pub(crate) fn of(h: &Histogram<u64>) -> Option<Self> {
        if h.is_empty() {
            return None;
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Some(Self {
            count: h.len(),
            mean: h.mean() / 1000.0,
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        })
    }
}

/// Reading shards back from TRIM_HORIZON after producing.
#[derive(Debug, Clone, Serialize)]
pub struct ReadBack {
    pub records: u64,
    /// Data bytes (from the base64 lengths).
    pub payload_bytes: u64,
    pub elapsed_s: f64,
    pub records_per_s: f64,
    pub payload_mb_per_s: f64,
    pub requests: u64,
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub endpoint: String,
    pub workload: Workload,
    pub elapsed_s: f64,
    /// PutRecords or PutRecord calls.
    pub put_requests: u64,
    /// GetRecords calls (SubscribeToShard calls with the fan-out consumer).
    pub get_requests: u64,
    pub records_ok: u64,
    pub records_failed: u64,
    /// Data bytes of the records acknowledged.
    pub payload_bytes: u64,
    pub records_per_s: f64,
    pub payload_mb_per_s: f64,
    /// Put request round trips.
    pub put_latency_ms: Option<Latency>,
    pub records_consumed: u64,
    /// Put -> seen by a consumer.
    pub end_to_end_latency_ms: Option<Latency>,
    /// Reading back from TRIM_HORIZON, if asked for.
    pub read_back: Option<ReadBack>,
    /// `Operation/ExceptionName` -> count (per record for PutRecords entries).
    pub errors: BTreeMap<String, u64>,
}

impl Report {
    /// A few lines for people.
    pub fn human(&self) -> String {
        let w = &self.workload;
        let mut out = format!(
            "{} against {}: {} B records, {} per request, {} keys, {} producers, stream {} ({} shards)\n",
            match w.producer {
                Producer::PutRecords => "PutRecords",
                Producer::PutRecord => "PutRecord",
            },
            self.endpoint,
            w.record_size,
            if w.producer == Producer::PutRecords { w.batch } else { 1 },
            w.keys,
            w.concurrency,
            w.stream,
            w.shards,
        );
        out += &format!(
            "  {:.1} s: {} records ok, {} failed, {} requests\n  {:.0} records/s, {:.2} MB/s of payload\n",
            self.elapsed_s,
            self.records_ok,
            self.records_failed,
            self.put_requests,
            self.records_per_s,
            self.payload_mb_per_s
        );
        let line = |name: &str, l: &Option<Latency>| {
            match l {
            Some(l) => format!(
                "  {name}: p50 {:.3} ms, p90 {:.3}, p99 {:.3}, p99.9 {:.3}, max {:.3} ({} samples)\n",
                l.p50, l.p90, l.p99, l.p999, l.max, l.count
            ),
            None => String::new(),
        }
        };
        out += &line("put latency", &self.put_latency_ms);
        if w.consumer != Consumer::None {
            let calls = match w.consumer {
                Consumer::Subscribe => "SubscribeToShard",
                _ => "GetRecords",
            };
            out += &format!(
                "  {} records consumed with {} {calls} calls\n",
                self.records_consumed, self.get_requests
            );
            out += &line("put -> seen", &self.end_to_end_latency_ms);
        }
        if let Some(r) = &self.read_back {
            out += &format!(
                "  read back from TRIM_HORIZON: {} records in {:.2} s ({} calls): {:.0} records/s, {:.2} MB/s\n",
                r.records, r.elapsed_s, r.requests, r.records_per_s, r.payload_mb_per_s
            );
        }
        for (name, n) in &self.errors {
            out += &format!("  error {name}: {n}\n");
        }
        for warning in self.warnings() {
            out += &format!("warning: {warning}\n");
        }
        out
    }

    /// What makes the figures mean something else than they seem to.
    pub fn warnings(&self) -> Vec<String> {
        let throttled: u64 = self
            .errors
            .iter()
            .filter(|(name, _)| name.ends_with("ProvisionedThroughputExceededException"))
            .map(|(_, n)| n)
            .sum();
        let attempted = self.records_ok + self.records_failed;
        let mut warnings = Vec::new();
        if attempted > 0 && throttled * 2 > attempted {
            warnings.push(format!(
                "{throttled} of {attempted} records were throttled by the shards' write limits (1 MiB/s and 1,000 records/s per shard, as AWS): this measured the limits, not the server. Start Sluice with `--limits off` to measure the server, or add shards"
            ));
        }
        warnings
    }
}
