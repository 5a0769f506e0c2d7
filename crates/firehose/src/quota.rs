//! AWS's Direct PUT quotas, per delivery stream, enforced under the `aws`
//! limits profile (`--limits aws`): records, requests and bytes per second
//! (AWS's Firehose quotas page: 500,000 records/s, 2,000 requests/s and
//! 5 MiB/s in us-east-1, us-west-2 and eu-west-1; 100,000, 1,000 and
//! 1 MiB/s elsewhere). Each is a token bucket on the server's clock that
//! holds one second's worth. Beyond them AWS answers
//! ServiceUnavailableException "Slow down.": the whole PutRecord, or the
//! PutRecordBatch entries over the quota (boto3#2804 shows such an answer).

/// One second's allowance of one quota.
#[derive(Debug, Clone)]
struct Bucket {
    per_second: f64,
    tokens: f64,
    at_ms: u64,
}

impl Bucket {
    fn new(per_second: u64, now_ms: u64) -> Self {
        Self {
            per_second: per_second as f64,
            tokens: per_second as f64,
            at_ms: now_ms,
        }
    }

    fn refill(&mut self, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.at_ms) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.per_second);
        self.at_ms = self.at_ms.max(now_ms);
    }
}

/// A delivery stream's three quotas.
#[derive(Debug, Clone)]
pub(crate) struct Quotas {
    records: Bucket,
    requests: Bucket,
    bytes: Bucket,
}

/// The regions with the higher Direct PUT quotas.
const LARGE_REGIONS: [&str; 3] = ["us-east-1", "us-west-2", "eu-west-1"];

impl Quotas {
    pub(crate) fn for_region(region: &str, now_ms: u64) -> Self {
        let (records, requests, bytes) = if LARGE_REGIONS.contains(&region) {
            (500_000, 2_000, 5 << 20)
        } else {
            (100_000, 1_000, 1 << 20)
        };
        Self {
            records: Bucket::new(records, now_ms),
            requests: Bucket::new(requests, now_ms),
            bytes: Bucket::new(bytes, now_ms),
        }
    }

    /// Takes one request; false if the request quota is spent.
    pub(crate) fn admit_request(&mut self, now_ms: u64) -> bool {
        self.requests.refill(now_ms);
        if self.requests.tokens < 1.0 {
            return false;
        }
        self.requests.tokens -= 1.0;
        true
    }

    /// Takes one record of `bytes`; false (and nothing taken) if either
    /// the record or the byte quota cannot cover it.
    pub(crate) fn admit_record(&mut self, bytes: usize, now_ms: u64) -> bool {
        self.records.refill(now_ms);
        self.bytes.refill(now_ms);
        let bytes = bytes as f64;
        // A record larger than a second's bytes passes on a full bucket
        // (or it could never pass), leaving the bucket in debt.
        let fits = self.bytes.tokens >= bytes || self.bytes.tokens >= self.bytes.per_second;
        if self.records.tokens < 1.0 || !fits {
            return false;
        }
        self.records.tokens -= 1.0;
        self.bytes.tokens -= bytes;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_of_bytes_then_slow_down_then_refilled() {
        let mut q = Quotas::for_region("ap-south-1", 0);
        // 1 MiB/s elsewhere: 1,024 records of 1 KiB, then no more.
        for _ in 0..1024 {
            assert!(q.admit_record(1024, 0));
        }
        assert!(!q.admit_record(1024, 0));
        // Half a second later, half a second's worth.
        for _ in 0..512 {
            assert!(q.admit_record(1024, 500));
        }
        assert!(!q.admit_record(1024, 500));
    }

    #[test]
    fn requests_and_records_count_separately() {
        let mut q = Quotas::for_region("us-east-1", 0);
        for _ in 0..2000 {
            assert!(q.admit_request(0));
        }
        assert!(!q.admit_request(0));
        assert!(q.admit_request(1));
        let mut q = Quotas::for_region("eu-central-1", 0);
        for _ in 0..100_000 {
            assert!(q.admit_record(1, 0));
        }
        assert!(!q.admit_record(1, 0), "100,000 records a second elsewhere");
    }

    #[test]
    fn a_record_larger_than_a_second_passes_on_a_full_bucket_only() {
        let mut q = Quotas::for_region("ap-south-1", 0);
        assert!(q.admit_record(1_000_000, 0));
        assert!(q.admit_record(48_576, 0));
        assert!(!q.admit_record(1, 0));
    }
}
