//! What `GET /metrics` reports, in Prometheus' text exposition format
//! (version 0.0.4). Counters and histograms are atomics bumped on the request
//! path (no lock, no label lookup by hashing); gauges (streams, open shards,
//! subscriptions, connections) are read when scraped.
//!
//! The format is written here rather than through a registry crate: it is a
//! few lines of text per family, and a registry would put a hashed label-set
//! lookup on every request.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use std::time::Duration;

use sluice_model::{Histogram, HistogramSnapshot};

/// The content type Prometheus expects of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// HTTP statuses counted apart; any other counts as `other`.
const STATUSES: [u16; 7] = [200, 400, 403, 404, 413, 500, 503];

/// Requests of one operation.
#[derive(Debug, Default)]
struct OpMetrics {
    /// By [`STATUSES`] index; the last slot is any other status.
    statuses: [AtomicU64; STATUSES.len() + 1],
    /// Answered ProvisionedThroughputExceededException or LimitExceededException.
    throttled: AtomicU64,
    latency: Histogram,
}

#[derive(Debug)]
pub struct Metrics {
    /// Operation names, sorted; one more slot in `ops` counts requests that
    /// named no operation the server knows.
    names: Vec<&'static str>,
    ops: Vec<OpMetrics>,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub connections_open: AtomicI64,
    pub connections_total: AtomicU64,
}

/// An operation's name in `/metrics`: Kinesis' bare, other services'
/// prefixed (`Firehose.PutRecord`).
pub fn op_label<'a>(
    service: &sluice_aws::Service,
    operation: &'a str,
) -> std::borrow::Cow<'a, str> {
    if std::ptr::eq(service, &sluice_aws::KINESIS) {
        std::borrow::Cow::Borrowed(operation)
    } else {
        std::borrow::Cow::Owned(format!("{}.{operation}", service.name))
    }
}

impl Default for Metrics {
    fn default() -> Self {
        static FIREHOSE: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        let firehose = FIREHOSE.get_or_init(|| {
            sluice_aws::firehose()
                .operation_names()
                .into_iter()
                .map(|op| op_label(&sluice_aws::FIREHOSE, op).into_owned())
                .collect()
        });
        let mut names = sluice_aws::kinesis().operation_names();
        names.extend(firehose.iter().map(String::as_str));
        names.sort_unstable();
        let ops = (0..=names.len()).map(|_| OpMetrics::default()).collect();
        Self {
            names,
            ops,
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            connections_open: AtomicI64::new(0),
            connections_total: AtomicU64::new(0),
        }
    }
}

/// A request's operation, as an index into [`Metrics`]' table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpIndex(usize);

impl Metrics {
    /// The operation's slot (unknown names share one).
    pub fn op(&self, name: &str) -> OpIndex {
        OpIndex(self.names.binary_search(&name).unwrap_or(self.names.len()))
    }

    pub fn op_name(&self, op: OpIndex) -> &'static str {
        self.names.get(op.0).copied().unwrap_or("unknown")
    }

    /// Counts one answered request.
    pub fn request(&self, op: OpIndex, status: u16, throttled: bool, latency: Duration) {
        let m = &self.ops[op.0];
        let slot = STATUSES
            .iter()
            .position(|&s| s == status)
            .unwrap_or(STATUSES.len());
        m.statuses[slot].fetch_add(1, Ordering::Relaxed);
        if throttled {
            m.throttled.fetch_add(1, Ordering::Relaxed);
        }
        m.latency.record(latency);
    }
}

/// Everything the scrape reads besides [`Metrics`] itself.
#[derive(Debug, Default)]
pub struct Gauges {
    /// Per stream: account and region, name, status, open shards.
    pub streams: Vec<(sluice_meta::Scope, String, &'static str, u64)>,
    /// Per stream: what it took in (`sluice_streams::stats`), sorted.
    pub stream_counts: Vec<sluice_streams::stats::StreamCounts>,
    /// Per live subscription: consumer ARN, shard id, MillisBehindLatest.
    pub subscriptions: Vec<(String, String, u64)>,
    pub fsync: Option<HistogramSnapshot>,
    pub sync_rounds: u64,
    pub open_segment_files: u64,
    pub body_bytes_in_flight: u64,
    pub healthy: bool,
    /// Per delivery stream (`account/region/name`): what it took in and
    /// delivered.
    pub firehose: std::collections::BTreeMap<String, sluice_firehose::stats::Counts>,
    /// The server's clock at the scrape.
    pub now_ms: u64,
}

/// Renders the scrape.
pub fn render(metrics: &Metrics, gauges: &Gauges) -> String {
    let mut out = String::with_capacity(16 << 10);
    family(
        &mut out,
        "sluice_requests_total",
        "counter",
        "API requests answered, by operation and HTTP status.",
    );
    for (i, m) in metrics.ops.iter().enumerate() {
        let op = metrics.op_name(OpIndex(i));
        for (slot, n) in m.statuses.iter().enumerate() {
            let n = n.load(Ordering::Relaxed);
            if n == 0 {
                continue;
            }
            let status = STATUSES
                .get(slot)
                .map_or_else(|| "other".to_owned(), u16::to_string);
            let _ = writeln!(
                out,
                "sluice_requests_total{{operation=\"{op}\",status=\"{status}\"}} {n}"
            );
        }
    }
    family(
        &mut out,
        "sluice_throttled_requests_total",
        "counter",
        "Requests answered ProvisionedThroughputExceededException or LimitExceededException, by operation.",
    );
    for (i, m) in metrics.ops.iter().enumerate() {
        let n = m.throttled.load(Ordering::Relaxed);
        if n > 0 {
            let op = metrics.op_name(OpIndex(i));
            let _ = writeln!(
                out,
                "sluice_throttled_requests_total{{operation=\"{op}\"}} {n}"
            );
        }
    }
    family(
        &mut out,
        "sluice_request_duration_seconds",
        "histogram",
        "Time from a request's head to its answer (an event stream: to its first response), by operation.",
    );
    for (i, m) in metrics.ops.iter().enumerate() {
        let snapshot = m.latency.snapshot();
        if snapshot.count() > 0 {
            let op = metrics.op_name(OpIndex(i));
            histogram(
                &mut out,
                "sluice_request_duration_seconds",
                &format!("operation=\"{op}\""),
                &snapshot,
            );
        }
    }
    counter(
        &mut out,
        "sluice_request_bytes_total",
        "Bytes of API request bodies read.",
        metrics.bytes_in.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "sluice_response_bytes_total",
        "Bytes of API response bodies, event streams included.",
        metrics.bytes_out.load(Ordering::Relaxed),
    );
    gauge(
        &mut out,
        "sluice_open_connections",
        "Connections open now.",
        metrics.connections_open.load(Ordering::Relaxed).max(0) as u64,
    );
    counter(
        &mut out,
        "sluice_connections_accepted_total",
        "Connections accepted.",
        metrics.connections_total.load(Ordering::Relaxed),
    );
    gauge(
        &mut out,
        "sluice_request_body_bytes_in_flight",
        "Bytes of request bodies held now (within the in-flight budget).",
        gauges.body_bytes_in_flight,
    );
    family(
        &mut out,
        "sluice_stream_open_shards",
        "gauge",
        "Open shards of each stream, by account, region, stream and status.",
    );
    for (scope, name, status, open) in &gauges.streams {
        let _ = writeln!(
            out,
            "sluice_stream_open_shards{{account=\"{}\",region=\"{}\",stream=\"{}\",status=\"{status}\"}} {open}",
            escape(&scope.account),
            escape(&scope.region),
            escape(name)
        );
    }
    type Read = fn(&sluice_streams::stats::StreamCounts) -> u64;
    for (metric, help, read) in [
        (
            "sluice_stream_incoming_records_total",
            "Records acknowledged by PutRecord and PutRecords, by stream.",
            (|c| c.incoming_records) as Read,
        ),
        (
            "sluice_stream_incoming_bytes_total",
            "Bytes (data and partition key) of the records acknowledged, by stream.",
            |c| c.incoming_bytes,
        ),
        (
            "sluice_stream_throttled_records_total",
            "PutRecord and PutRecords entries refused for a shard's write limit, by stream.",
            |c| c.throttled_records,
        ),
    ] {
        family(&mut out, metric, "counter", help);
        for c in &gauges.stream_counts {
            let _ = writeln!(
                out,
                "{metric}{{account=\"{}\",region=\"{}\",stream=\"{}\"}} {}",
                escape(&c.scope.account),
                escape(&c.scope.region),
                escape(&c.stream),
                read(c)
            );
        }
    }
    firehose(&mut out, gauges);
    family(
        &mut out,
        "sluice_consumer_millis_behind_latest",
        "gauge",
        "Enhanced fan-out: how far each live subscription's last event was behind the shard's newest record, in milliseconds.",
    );
    for (consumer, shard, behind) in &gauges.subscriptions {
        let _ = writeln!(
            out,
            "sluice_consumer_millis_behind_latest{{consumer_arn=\"{}\",shard_id=\"{shard}\"}} {behind}",
            escape(consumer)
        );
    }
    if let Some(fsync) = &gauges.fsync {
        family(
            &mut out,
            "sluice_fsync_round_seconds",
            "histogram",
            "How long each group-commit round's journal fsync took.",
        );
        histogram(&mut out, "sluice_fsync_round_seconds", "", fsync);
    }
    counter(
        &mut out,
        "sluice_group_commit_rounds_total",
        "Group-commit rounds run (each fsyncs the journal once).",
        gauges.sync_rounds,
    );
    gauge(
        &mut out,
        "sluice_open_segment_files",
        "Segment files the storage engine holds open.",
        gauges.open_segment_files,
    );
    gauge(
        &mut out,
        "sluice_healthy",
        "1 while GET /health answers ok, else 0.",
        u64::from(gauges.healthy),
    );
    out
}

/// Firehose's families, per delivery stream.
fn firehose(out: &mut String, gauges: &Gauges) {
    type Read = fn(&sluice_firehose::stats::Counts, u64) -> f64;
    for (metric, kind, help, read) in [
        (
            "sluice_firehose_incoming_records_total",
            "counter",
            "Records acknowledged by PutRecord and PutRecordBatch, by delivery stream.",
            (|c, _| c.incoming_records as f64) as Read,
        ),
        (
            "sluice_firehose_incoming_bytes_total",
            "counter",
            "Bytes of the records acknowledged, by delivery stream.",
            |c, _| c.incoming_bytes as f64,
        ),
        (
            "sluice_firehose_throttled_records_total",
            "counter",
            "Records refused by the Direct PUT quotas (--limits aws), by delivery stream.",
            |c, _| c.throttled_records as f64,
        ),
        (
            "sluice_firehose_delivered_objects_total",
            "counter",
            "Objects delivered, by delivery stream.",
            |c, _| c.delivered_objects as f64,
        ),
        (
            "sluice_firehose_delivered_records_total",
            "counter",
            "Records delivered, by delivery stream.",
            |c, _| c.delivered_records as f64,
        ),
        (
            "sluice_firehose_delivered_bytes_total",
            "counter",
            "Bytes of the objects delivered, as stored (compressed), by delivery stream.",
            |c, _| c.delivered_bytes as f64,
        ),
        (
            "sluice_firehose_failed_deliveries_total",
            "counter",
            "Delivery attempts that failed (each is retried), by delivery stream.",
            |c, _| c.failed_deliveries as f64,
        ),
        (
            "sluice_firehose_delivery_latency_seconds",
            "gauge",
            "Age of the oldest record of the last delivery when it was delivered, by delivery stream.",
            |c, _| c.last_delivery_latency_ms as f64 / 1000.0,
        ),
        (
            "sluice_firehose_data_freshness_seconds",
            "gauge",
            "Age of the oldest record not delivered yet (0 when all are), by delivery stream: AWS's DataFreshness.",
            |c, now| c.oldest_undelivered_ms.map_or(0.0, |o| now.saturating_sub(o) as f64 / 1000.0),
        ),
    ] {
        family(out, metric, kind, help);
        for (key, c) in &gauges.firehose {
            let mut parts = key.splitn(3, '/');
            let (account, region, name) = (
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
            );
            let _ = writeln!(
                out,
                "{metric}{{account=\"{}\",region=\"{}\",delivery_stream=\"{}\"}} {}",
                escape(account),
                escape(region),
                escape(name),
                read(c, gauges.now_ms)
            );
        }
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    family(out, name, "counter", help);
    let _ = writeln!(out, "{name} {value}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    family(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {value}");
}

fn histogram(out: &mut String, name: &str, labels: &str, h: &HistogramSnapshot) {
    let sep = if labels.is_empty() { "" } else { "," };
    for (bound, n) in h.cumulative() {
        let le = if bound.is_infinite() {
            "+Inf".to_owned()
        } else {
            bound.to_string()
        };
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {n}");
    }
    let braces = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    };
    let _ = writeln!(out, "{name}_sum{braces} {}", h.sum_seconds);
    let _ = writeln!(out, "{name}_count{braces} {}", h.count());
}

/// A label value as the text format wants it: backslash, quote and newline escaped.
fn escape(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return value.into();
    }
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_operation_status_and_latency() {
        let m = Metrics::default();
        let put = m.op("PutRecord");
        assert_eq!(m.op_name(put), "PutRecord");
        assert_eq!(m.op_name(m.op("NoSuchThing")), "unknown");
        m.request(put, 200, false, Duration::from_micros(700));
        m.request(put, 200, false, Duration::from_millis(2));
        m.request(put, 400, true, Duration::from_micros(50));
        m.request(m.op("Nope"), 418, false, Duration::from_micros(50));
        let text = render(&m, &Gauges::default());
        assert!(text.contains("sluice_requests_total{operation=\"PutRecord\",status=\"200\"} 2\n"));
        assert!(text.contains("sluice_requests_total{operation=\"PutRecord\",status=\"400\"} 1\n"));
        assert!(text.contains("sluice_requests_total{operation=\"unknown\",status=\"other\"} 1\n"));
        assert!(text.contains("sluice_throttled_requests_total{operation=\"PutRecord\"} 1\n"));
        assert!(text.contains(
            "sluice_request_duration_seconds_bucket{operation=\"PutRecord\",le=\"0.001\"} 2\n"
        ));
        assert!(text.contains(
            "sluice_request_duration_seconds_bucket{operation=\"PutRecord\",le=\"+Inf\"} 3\n"
        ));
        assert!(text.contains("sluice_request_duration_seconds_count{operation=\"PutRecord\"} 3\n"));
        // No series for operations never called.
        assert!(!text.contains("operation=\"ListStreams\""));
    }

    #[test]
    fn streams_are_reported_with_their_counts() {
        let m = Metrics::default();
        let scope = sluice_meta::Scope::new("111111111111", "eu-west-1");
        let gauges = Gauges {
            streams: vec![(scope.clone(), "a".into(), "ACTIVE", 2)],
            stream_counts: vec![sluice_streams::stats::StreamCounts {
                scope,
                stream: "a".into(),
                incoming_records: 5,
                incoming_bytes: 0,
                throttled_records: 0,
            }],
            ..Gauges::default()
        };
        let text = render(&m, &gauges);
        assert!(text.contains(
            "sluice_stream_incoming_records_total{account=\"111111111111\",region=\"eu-west-1\",stream=\"a\"} 5\n"
        ));
        assert!(text.contains(
            "sluice_stream_open_shards{account=\"111111111111\",region=\"eu-west-1\",stream=\"a\",status=\"ACTIVE\"} 2\n"
        ));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("plain-name_1.x"), "plain-name_1.x");
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn every_family_is_announced_once_with_help_and_type() {
        let m = Metrics::default();
        m.request(m.op("ListStreams"), 200, false, Duration::from_millis(1));
        let gauges = Gauges {
            fsync: Some(Histogram::default().snapshot()),
            ..Gauges::default()
        };
        let text = render(&m, &gauges);
        let mut seen = std::collections::HashSet::new();
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = line.split_whitespace().nth(2).unwrap();
            assert!(seen.insert(name.to_owned()), "{name} announced twice");
            assert!(text.contains(&format!("# HELP {name} ")));
        }
        // Every sample belongs to an announced family.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            let base = name
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            assert!(
                seen.contains(name) || seen.contains(base),
                "{line}: no family"
            );
        }
    }
}
