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
/// them, in AWS JSON (data left as base64) or CBOR (data as sent), and what
/// says where to go on.
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

/// A SubscribeToShardEvent read leniently: the end of a closed shard has
/// no ContinuationSequenceNumber (the typed shape requires one).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SubscribeEvent {
    #[serde(rename = "Records", default)]
    pub records: Vec<super::Record>,
    #[serde(rename = "ContinuationSequenceNumber", default)]
    pub continuation_sequence_number: Option<String>,
    #[serde(rename = "MillisBehindLatest", default)]
    pub millis_behind_latest: Option<i64>,
    #[serde(rename = "ChildShards", default)]
    pub child_shards: Option<Vec<super::ChildShard>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RecordData {
    #[serde(rename = "Data")]
    pub data: RecordBytes,
}

/// A record's data as it came: base64 text (AWS JSON) or bytes (AWS CBOR).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordBytes {
    Base64(String),
    Raw(Vec<u8>),
}

impl RecordBytes {
    /// The data's length in bytes.
    pub fn len(&self) -> usize {
        match self {
            Self::Raw(b) => b.len(),
            Self::Base64(t) => {
                let pad = t.bytes().rev().take_while(|b| *b == b'=').count();
                (t.len() / 4 * 3).saturating_sub(pad)
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first `n` bytes of the data (fewer if it is shorter), decoding
    /// only as much base64 as they need.
    pub fn head(&self, n: usize) -> Vec<u8> {
        use base64::Engine;
        match self {
            Self::Raw(b) => b[..n.min(b.len())].to_vec(),
            Self::Base64(t) => {
                let chars = n.div_ceil(3) * 4;
                let text = t.get(..chars.min(t.len())).unwrap_or(t);
                let mut bytes = base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .unwrap_or_default();
                bytes.truncate(n);
                bytes
            }
        }
    }
}

impl<'de> Deserialize<'de> for RecordBytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = RecordBytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("base64 text or a byte string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RecordBytes, E> {
                Ok(RecordBytes::Base64(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<RecordBytes, E> {
                Ok(RecordBytes::Base64(v))
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<RecordBytes, E> {
                Ok(RecordBytes::Raw(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<RecordBytes, E> {
                Ok(RecordBytes::Raw(v))
            }
        }
        d.deserialize_any(Visit)
    }
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
        assert_eq!(page.records[0].data, RecordBytes::Base64("aGk=".into()));
        assert_eq!(page.records[0].data.len(), 2);
        assert_eq!(page.records[0].data.head(1), b"h");
        // The same answer in AWS CBOR: data as bytes.
        let value = serde_json::json!({"Records": [{"SequenceNumber": "1", "Data": "aGk=",
            "PartitionKey": "p", "ApproximateArrivalTimestamp": 1.5}],
            "NextShardIterator": "it", "MillisBehindLatest": 5});
        let cbor = crate::cbor::encode_cbor_output(crate::kinesis(), "GetRecords", &value);
        let page: RecordsPage = ciborium::de::from_reader(&cbor[..]).unwrap();
        assert_eq!(page.records[0].data, RecordBytes::Raw(b"hi".to_vec()));
        assert_eq!(page.records[0].data.head(12), b"hi");
        assert_eq!(page.next_shard_iterator.as_deref(), Some("it"));
        assert_eq!(page.millis_behind_latest, 5);
        let long = RecordBytes::Base64("AAECAwQFBgcICQoLDA0ODw==".into());
        assert_eq!(long.len(), 16);
        assert_eq!(long.head(12), (0u8..12).collect::<Vec<_>>());
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
