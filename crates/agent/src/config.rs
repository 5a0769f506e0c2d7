//! `agent.json`, as the Kinesis Agent (awslabs/amazon-kinesis-agent) reads
//! it: global settings and `flows`, each a file pattern and a destination.

use std::time::Duration;

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentConfig {
    #[serde(rename = "kinesis.endpoint", default)]
    pub kinesis_endpoint: Option<String>,
    #[serde(rename = "firehose.endpoint", default)]
    pub firehose_endpoint: Option<String>,
    #[serde(default)]
    pub aws_access_key_id: Option<String>,
    #[serde(default)]
    pub aws_secret_access_key: Option<String>,
    #[serde(default)]
    pub aws_session_token: Option<String>,
    /// Where checkpoints are kept (the agent's own default is under
    /// /var/run; `sluice agent --checkpoints` overrides it).
    #[serde(default)]
    pub checkpoint_file: Option<String>,
    /// Accepted and ignored: there is no CloudWatch here.
    #[serde(rename = "cloudwatch.emitMetrics", default)]
    pub cloudwatch_emit_metrics: Option<serde_json::Value>,
    #[serde(rename = "cloudwatch.endpoint", default)]
    pub cloudwatch_endpoint: Option<serde_json::Value>,
    #[serde(default)]
    pub flows: Vec<FlowConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowConfig {
    pub file_pattern: String,
    #[serde(default)]
    pub kinesis_stream: Option<String>,
    #[serde(default)]
    pub delivery_stream: Option<String>,
    #[serde(default)]
    pub partition_key_option: Option<String>,
    #[serde(default)]
    pub initial_position: Option<String>,
    #[serde(default)]
    pub max_buffer_age_millis: Option<u64>,
    #[serde(default)]
    pub max_buffer_size_bytes: Option<u64>,
    #[serde(default)]
    pub max_buffer_size_records: Option<u64>,
    #[serde(default)]
    pub multi_line_start_pattern: Option<String>,
    #[serde(default)]
    pub skip_header_lines: Option<u64>,
    #[serde(default)]
    pub truncated_record_terminator: Option<String>,
    #[serde(default)]
    pub data_processing_options: Vec<serde_json::Value>,
    /// Accepted (the agent's tuning knobs); Sluice paces itself.
    #[serde(default)]
    pub min_time_between_file_polls_millis: Option<u64>,
    #[serde(default)]
    pub max_time_between_file_tracker_refresh_millis: Option<u64>,
    #[serde(default)]
    pub retry_initial_backoff_millis: Option<u64>,
    #[serde(default)]
    pub retry_max_backoff_millis: Option<u64>,
    #[serde(default)]
    pub publish_queue_capacity: Option<u64>,
    /// Settings Sluice does not know (newer agents' tuning, such as
    /// aggregatedRecordSizeBytes): accepted, and named in a warning.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// Where a flow's records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Kinesis(String),
    Firehose(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionKeys {
    Random,
    Deterministic,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitialPosition {
    StartOfFile,
    EndOfFile,
}

/// A flow, checked.
#[derive(Debug, Clone)]
pub struct Flow {
    pub file_pattern: String,
    pub destination: Destination,
    pub partition_keys: PartitionKeys,
    pub initial_position: InitialPosition,
    pub max_buffer_age: Duration,
    pub max_buffer_bytes: usize,
    pub max_buffer_records: usize,
    pub multi_line_start: Option<regex::bytes::Regex>,
    pub skip_header_lines: u64,
    pub truncated_record_terminator: Vec<u8>,
    /// The largest record (data, and for Kinesis the partition key).
    pub max_record_bytes: usize,
    /// dataProcessingOptions, in order.
    pub converters: std::sync::Arc<crate::process::Chain>,
}

impl Flow {
    /// A name for logs and checkpoints: destination and pattern.
    pub fn id(&self) -> String {
        match &self.destination {
            Destination::Kinesis(s) => format!("kinesis:{s}:{}", self.file_pattern),
            Destination::Firehose(s) => format!("fh:{s}:{}", self.file_pattern),
        }
    }
}

/// Kinesis's and Firehose's largest records, as the agent counts them.
const KINESIS_MAX_RECORD: usize = 1024 * 1024;
const FIREHOSE_MAX_RECORD: usize = 1000 * 1024;

impl AgentConfig {
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        serde_json::from_str(text).map_err(|e| anyhow::anyhow!("agent.json: {e}"))
    }

    /// The flows, checked as the agent checks them (ranges, one destination,
    /// known options).
    pub fn flows(&self) -> anyhow::Result<Vec<Flow>> {
        if self.flows.is_empty() {
            anyhow::bail!("agent.json has no flows");
        }
        self.flows
            .iter()
            .enumerate()
            .map(|(i, f)| f.check().map_err(|e| anyhow::anyhow!("flows[{i}]: {e}")))
            .collect()
    }
}

impl FlowConfig {
    fn check(&self) -> anyhow::Result<Flow> {
        let destination = match (&self.kinesis_stream, &self.delivery_stream) {
            (Some(s), None) => Destination::Kinesis(s.clone()),
            (None, Some(d)) => Destination::Firehose(d.clone()),
            _ => anyhow::bail!("a flow has one of kinesisStream and deliveryStream"),
        };
        if !self.file_pattern.starts_with('/') {
            anyhow::bail!(
                "filePattern is an absolute path, not {:?}",
                self.file_pattern
            );
        }
        let dir = std::path::Path::new(&self.file_pattern)
            .parent()
            .and_then(|d| d.to_str())
            .unwrap_or("");
        if dir.contains(['*', '?']) {
            anyhow::bail!(
                "filePattern {:?}: only the file name may have * or ?, not the directory",
                self.file_pattern
            );
        }
        let kinesis = matches!(destination, Destination::Kinesis(_));
        let partition_keys = match self.partition_key_option.as_deref() {
            None | Some("RANDOM") => PartitionKeys::Random,
            Some("DETERMINISTIC") => PartitionKeys::Deterministic,
            Some(other) => {
                anyhow::bail!("partitionKeyOption is RANDOM or DETERMINISTIC, not {other:?}")
            }
        };
        let initial_position = match self.initial_position.as_deref() {
            None | Some("END_OF_FILE") => InitialPosition::EndOfFile,
            Some("START_OF_FILE") => InitialPosition::StartOfFile,
            Some(other) => {
                anyhow::bail!("initialPosition is START_OF_FILE or END_OF_FILE, not {other:?}")
            }
        };
        let (max_bytes, default_age) = if kinesis {
            (5 << 20, 60_000)
        } else {
            (4 << 20, 60_000)
        };
        let age = self.max_buffer_age_millis.unwrap_or(default_age);
        if !(1_000..=900_000).contains(&age) {
            anyhow::bail!("maxBufferAgeMillis is 1000 to 900000, not {age}");
        }
        let bytes = self.max_buffer_size_bytes.unwrap_or(max_bytes);
        if !(1..=max_bytes).contains(&bytes) {
            anyhow::bail!("maxBufferSizeBytes is 1 to {max_bytes}, not {bytes}");
        }
        let records = self.max_buffer_size_records.unwrap_or(500);
        if !(1..=500).contains(&records) {
            anyhow::bail!("maxBufferSizeRecords is 1 to 500, not {records}");
        }
        let multi_line_start = match self.multi_line_start_pattern.as_deref() {
            None | Some("") => None,
            Some(p) => Some(
                regex::bytes::Regex::new(p)
                    .map_err(|e| anyhow::anyhow!("multiLineStartPattern {p:?}: {e}"))?,
            ),
        };
        let max_record_bytes = if kinesis {
            KINESIS_MAX_RECORD
        } else {
            FIREHOSE_MAX_RECORD
        };
        let terminator = self
            .truncated_record_terminator
            .clone()
            .unwrap_or_else(|| "\n".into())
            .into_bytes();
        if terminator.is_empty() || terminator.len() >= max_record_bytes {
            anyhow::bail!("truncatedRecordTerminator is not empty and shorter than a record");
        }
        let converters = crate::process::Chain::parse(&self.data_processing_options)
            .map_err(|e| anyhow::anyhow!("dataProcessingOptions: {e}"))?;
        Ok(Flow {
            file_pattern: self.file_pattern.clone(),
            destination,
            partition_keys,
            initial_position,
            max_buffer_age: Duration::from_millis(age),
            max_buffer_bytes: bytes as usize,
            max_buffer_records: records as usize,
            multi_line_start,
            skip_header_lines: self.skip_header_lines.unwrap_or(0),
            truncated_record_terminator: terminator,
            max_record_bytes,
            converters: std::sync::Arc::new(converters),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_parses() {
        // The agent's README example, with a Firehose flow beside it.
        let config = AgentConfig::parse(
            r#"{
              "cloudwatch.emitMetrics": true,
              "kinesis.endpoint": "http://127.0.0.1:4567",
              "firehose.endpoint": "http://127.0.0.1:4567",
              "flows": [
                { "filePattern": "/tmp/app.log*", "kinesisStream": "yourkinesisstream",
                  "partitionKeyOption": "RANDOM", "multiLineStartPattern": "^\\[" },
                { "filePattern": "/tmp/app2.log*", "deliveryStream": "yourdeliverystream",
                  "initialPosition": "START_OF_FILE", "maxBufferAgeMillis": 1000 }
              ]
            }"#,
        )
        .unwrap();
        let flows = config.flows().unwrap();
        assert_eq!(
            flows[0].destination,
            Destination::Kinesis("yourkinesisstream".into())
        );
        assert_eq!(flows[0].initial_position, InitialPosition::EndOfFile);
        assert_eq!(flows[0].max_buffer_age, Duration::from_secs(60));
        assert!(flows[0]
            .multi_line_start
            .as_ref()
            .unwrap()
            .is_match(b"[2026"));
        assert_eq!(
            flows[1].destination,
            Destination::Firehose("yourdeliverystream".into())
        );
        assert_eq!(flows[1].max_record_bytes, 1000 * 1024);
    }

    #[test]
    fn bad_flows_are_refused_with_the_setting_named() {
        let bad = |flow: &str| {
            let config = AgentConfig::parse(&format!(r#"{{"flows":[{flow}]}}"#));
            match config {
                Err(e) => e.to_string(),
                Ok(c) => c.flows().unwrap_err().to_string(),
            }
        };
        assert!(bad(r#"{"filePattern":"/x"}"#).contains("one of kinesisStream"));
        assert!(
            bad(r#"{"filePattern":"/x","kinesisStream":"a","deliveryStream":"b"}"#)
                .contains("one of")
        );
        assert!(bad(r#"{"filePattern":"x","kinesisStream":"a"}"#).contains("absolute"));
        assert!(
            bad(r#"{"filePattern":"/x","kinesisStream":"a","maxBufferSizeRecords":501}"#)
                .contains("maxBufferSizeRecords")
        );
        assert!(
            bad(r#"{"filePattern":"/x","kinesisStream":"a","maxBufferAgeMillis":10}"#)
                .contains("maxBufferAgeMillis")
        );
        assert!(
            bad(r#"{"filePattern":"/x","kinesisStream":"a","partitionKeyOption":"X"}"#)
                .contains("partitionKeyOption")
        );
        assert!(
            bad(r#"{"filePattern":"/x","kinesisStream":"a","multiLineStartPattern":"("}"#)
                .contains("multiLineStartPattern")
        );
        assert!(bad(r#"{"filePattern":"/x/*/y.log","kinesisStream":"a"}"#).contains("directory"));
        // Settings of newer agents are accepted (and warned about).
        let other = AgentConfig::parse(
            r#"{"flows":[{"filePattern":"/x","kinesisStream":"a","aggregatedRecordSizeBytes":262144}]}"#,
        )
        .unwrap();
        assert!(other.flows[0]
            .other
            .contains_key("aggregatedRecordSizeBytes"));
        assert!(other.flows().is_ok());
        assert!(AgentConfig::parse(r#"{"flows":[]}"#)
            .unwrap()
            .flows()
            .is_err());
    }
}
