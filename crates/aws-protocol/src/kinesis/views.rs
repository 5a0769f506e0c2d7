//! Partial views of large answers, for clients that need a member or two
//! (the load generator): decoding skips everything else, and record data
//! stays the base64 text it came as.

use serde::Deserialize;

/// A PutRecords answer's failure count.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct PutRecordsFailedCount {
    #[serde(rename = "FailedRecordCount", default)]
    pub failed_record_count: u64,
}

/// A PutRecords answer's entries, for their error codes.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PutRecordsErrorCodes {
    #[serde(rename = "Records")]
    pub records: Vec<PutRecordsErrorCode>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct PutRecordsErrorCode {
    #[serde(rename = "ErrorCode")]
    pub error_code: Option<String>,
}

/// Records as GetRecords answers them or a SubscribeToShardEvent carries
/// them (AWS JSON): data left as base64, and what says where to go on.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RecordsPage {
    #[serde(rename = "Records", default)]
    pub records: Vec<RecordData>,
    /// GetRecords: where the next call reads.
    #[serde(rename = "NextShardIterator")]
    pub next_shard_iterator: Option<String>,
    /// A SubscribeToShardEvent: where the next subscription starts.
    #[serde(rename = "ContinuationSequenceNumber")]
    pub continuation_sequence_number: Option<String>,
    #[serde(rename = "MillisBehindLatest", default)]
    pub millis_behind_latest: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RecordData {
    /// The record's data, base64 as sent.
    #[serde(rename = "Data")]
    pub data: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_read_what_they_name() {
        let page: RecordsPage = serde_json::from_str(
            r#"{"Records":[{"SequenceNumber":"1","Data":"aGk=","PartitionKey":"p"}],"NextShardIterator":"it","MillisBehindLatest":5}"#,
        )
        .unwrap();
        assert_eq!(page.records[0].data, "aGk=");
        assert_eq!(page.next_shard_iterator.as_deref(), Some("it"));
        assert_eq!(page.millis_behind_latest, 5);
        let n: PutRecordsFailedCount =
            serde_json::from_str(r#"{"FailedRecordCount":2,"Records":[]}"#).unwrap();
        assert_eq!(n.failed_record_count, 2);
        let codes: PutRecordsErrorCodes = serde_json::from_str(
            r#"{"Records":[{"ErrorCode":"InternalFailure"},{"SequenceNumber":"1"}]}"#,
        )
        .unwrap();
        assert_eq!(
            codes.records[0].error_code.as_deref(),
            Some("InternalFailure")
        );
        assert!(codes.records[1].error_code.is_none());
    }
}
