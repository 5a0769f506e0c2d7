//! Record processing (`ProcessingConfiguration`), in the order Firehose
//! applies it: Decompression (GZIP), CloudWatchLogProcessing (the messages
//! of a CloudWatch Logs subscription record), RecordDeAggregation (JSON or
//! DELIMITED sub-records, at most 500 per record), AppendDelimiterToRecord
//! (a newline after each record). Lambda and MetadataExtraction are not
//! built yet: a configuration with them is not delivered (its puts are
//! refused).
//!
//! A record that cannot be processed goes, as it arrived, to the error
//! output (`decompression-failed` for decompression, as AWS's
//! decompression guide says, `processing-failed` otherwise).

use std::io::Read;

use base64::Engine as _;
use sluice_aws::firehose as f;

/// AWS: de-aggregation makes at most 500 records of one.
pub const SUB_RECORDS_MAX: usize = 500;
/// A decompressed record is at most this large (a bound on memory; AWS's
/// own limit is not documented).
pub const DECOMPRESSED_MAX: usize = 16 << 20;

/// How records are split into sub-records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubRecords {
    /// Consecutive JSON objects (on one line, or one per line).
    Json,
    /// Separated by a delimiter (given base64-encoded).
    Delimited(Vec<u8>),
}

/// The processors of a delivery stream, in the order they apply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pipeline {
    pub decompress: bool,
    pub cloudwatch_messages: bool,
    pub deaggregate: Option<SubRecords>,
    /// MetadataExtraction's jq query (dynamic partitioning keys).
    pub metadata_query: Option<String>,
    /// A Lambda transformation (an HTTP URL Sluice's configuration maps
    /// its ARN to).
    pub lambda: Option<Lambda>,
    pub append_newline: bool,
}

/// The Lambda processor's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lambda {
    pub arn: String,
    /// Retries of a failed invocation (NumberOfRetries, default 3).
    pub retries: u32,
    /// Records are sent in invocations of at most this many bytes of data
    /// (BufferSizeInMBs, default 1 MB).
    pub buffer_bytes: u64,
}

/// Why a record was not processed: its error output type, code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub output_type: &'static str,
    pub code: &'static str,
    pub message: String,
}

fn parameter(p: &f::Processor, name: f::ProcessorParameterName) -> Option<&str> {
    p.parameters
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|q| q.parameter_name == name)
        .map(|q| q.parameter_value.as_str())
}

/// The pipeline a configuration asks for (`None`: no processing), or why
/// Sluice cannot run it.
pub fn pipeline(config: Option<&f::ProcessingConfiguration>) -> Result<Option<Pipeline>, String> {
    let Some(config) = config else {
        return Ok(None);
    };
    let processors = config.processors.as_deref().unwrap_or_default();
    if config.enabled == Some(false) || processors.is_empty() {
        return Ok(None);
    }
    let mut p = Pipeline::default();
    for processor in processors {
        match processor.r#type {
            f::ProcessorType::AppendDelimiterToRecord => p.append_newline = true,
            f::ProcessorType::Decompression => {
                match parameter(processor, f::ProcessorParameterName::CompressionFormat) {
                    None => {}
                    Some(v) if v.eq_ignore_ascii_case("GZIP") => {}
                    Some(v) => return Err(format!("Decompression of {v} is not built (GZIP is)")),
                }
                p.decompress = true;
            }
            f::ProcessorType::CloudWatchLogProcessing => {
                let extract =
                    parameter(processor, f::ProcessorParameterName::DataMessageExtraction);
                if !extract.is_some_and(|v| v.eq_ignore_ascii_case("true")) {
                    return Err(
                        "CloudWatchLogProcessing needs DataMessageExtraction true".to_owned()
                    );
                }
                p.cloudwatch_messages = true;
            }
            f::ProcessorType::RecordDeAggregation => {
                let kind = parameter(processor, f::ProcessorParameterName::SubRecordType);
                p.deaggregate = Some(match kind.map(str::to_ascii_uppercase).as_deref() {
                    Some("JSON") => SubRecords::Json,
                    Some("DELIMITED") => {
                        let given = parameter(processor, f::ProcessorParameterName::Delimiter)
                            .ok_or(
                                "RecordDeAggregation of DELIMITED sub-records needs a Delimiter",
                            )?;
                        let delimiter = base64::engine::general_purpose::STANDARD
                            .decode(given)
                            .ok()
                            .filter(|d| !d.is_empty())
                            .ok_or("the Delimiter of RecordDeAggregation must be base64-encoded")?;
                        SubRecords::Delimited(delimiter)
                    }
                    _ => {
                        return Err(
                            "RecordDeAggregation needs a SubRecordType of JSON or DELIMITED"
                                .to_owned(),
                        )
                    }
                });
            }
            f::ProcessorType::Lambda => {
                let arn = parameter(processor, f::ProcessorParameterName::LambdaArn)
                    .ok_or("the Lambda processor needs a LambdaArn")?;
                let retries = match parameter(processor, f::ProcessorParameterName::NumberOfRetries)
                {
                    None => 3,
                    Some(n) => n
                        .parse::<u32>()
                        .ok()
                        .filter(|n| *n <= 300)
                        .ok_or_else(|| format!("NumberOfRetries {n} is not 0 to 300"))?,
                };
                let mb = match parameter(processor, f::ProcessorParameterName::BufferSizeInMBs) {
                    None => 1.0,
                    Some(v) => v
                        .parse::<f64>()
                        .ok()
                        .filter(|mb| (0.2..=3.0).contains(mb))
                        .ok_or_else(|| format!("BufferSizeInMBs {v} is not 0.2 to 3"))?,
                };
                p.lambda = Some(Lambda {
                    arn: arn.to_owned(),
                    retries,
                    buffer_bytes: (mb * 1_048_576.0) as u64,
                });
            }
            f::ProcessorType::MetadataExtraction => {
                if let Some(engine) =
                    parameter(processor, f::ProcessorParameterName::JsonParsingEngine)
                {
                    if engine != "JQ-1.6" {
                        return Err(format!("JsonParsingEngine {engine} is not JQ-1.6"));
                    }
                }
                let query = parameter(
                    processor,
                    f::ProcessorParameterName::MetadataExtractionQuery,
                )
                .ok_or("MetadataExtraction needs a MetadataExtractionQuery")?;
                crate::partition::Query::compile(query)?;
                p.metadata_query = Some(query.to_owned());
            }
        }
    }
    Ok(Some(p))
}

fn failed(output_type: &'static str, code: &'static str, message: impl Into<String>) -> Failure {
    Failure {
        output_type,
        code,
        message: message.into(),
    }
}

impl Pipeline {
    /// Processes one record into `out` (none, one or many records), or
    /// says why it cannot be.
    pub fn apply(&self, data: &[u8], out: &mut Vec<Vec<u8>>) -> Result<(), Failure> {
        let mut keys = Vec::new();
        self.apply_with(data, None, out, &mut keys)
    }

    /// [`Pipeline::apply`], with each record's partition keys in `keys`
    /// (from `query`, the compiled MetadataExtractionQuery) when there is
    /// a query.
    pub fn apply_with(
        &self,
        data: &[u8],
        query: Option<&crate::partition::Query>,
        out: &mut Vec<Vec<u8>>,
        keys: &mut Vec<crate::partition::Keys>,
    ) -> Result<(), Failure> {
        let records = self.pre(data)?;
        self.post(records, query, out, keys)
    }

    /// The stages before a Lambda: decompression, CloudWatch Logs messages,
    /// de-aggregation.
    pub fn pre(&self, data: &[u8]) -> Result<Vec<Vec<u8>>, Failure> {
        let mut records = vec![if self.decompress {
            gunzip(data)?
        } else {
            data.to_vec()
        }];
        if self.cloudwatch_messages {
            records = cloudwatch_messages(&records[0])?;
        }
        if let Some(kind) = &self.deaggregate {
            let mut split = Vec::new();
            for r in &records {
                split.extend(deaggregate(kind, r)?);
            }
            records = split;
        }
        Ok(records)
    }

    /// The stages after a Lambda: partition keys, the delimiter.
    pub fn post(
        &self,
        mut records: Vec<Vec<u8>>,
        query: Option<&crate::partition::Query>,
        out: &mut Vec<Vec<u8>>,
        keys: &mut Vec<crate::partition::Keys>,
    ) -> Result<(), Failure> {
        if let Some(query) = query {
            let mut found = Vec::with_capacity(records.len());
            for r in &records {
                found.push(query.keys(r)?);
            }
            keys.extend(found);
        }
        if self.append_newline {
            for r in &mut records {
                r.push(b'\n');
            }
        }
        out.extend(records);
        Ok(())
    }
}

fn gunzip(data: &[u8]) -> Result<Vec<u8>, Failure> {
    let mut out = Vec::new();
    let read = flate2::read::MultiGzDecoder::new(data)
        .take(DECOMPRESSED_MAX as u64 + 1)
        .read_to_end(&mut out);
    match read {
        Err(e) => Err(failed(
            "decompression-failed",
            "Decompression.Failed",
            format!("The record is not GZIP data: {e}."),
        )),
        Ok(_) if out.len() > DECOMPRESSED_MAX => Err(failed(
            "decompression-failed",
            "Decompression.TooLarge",
            format!("The record decompresses to more than {DECOMPRESSED_MAX} bytes."),
        )),
        Ok(_) => Ok(out),
    }
}

/// A CloudWatch Logs subscription record: its log events' messages, one
/// record each; a CONTROL_MESSAGE (CloudWatch Logs checking that it can
/// write) gives none.
fn cloudwatch_messages(data: &[u8]) -> Result<Vec<Vec<u8>>, Failure> {
    #[derive(serde::Deserialize)]
    struct Event {
        message: String,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Envelope {
        message_type: String,
        #[serde(default)]
        log_events: Vec<Event>,
    }
    let envelope: Envelope = serde_json::from_slice(data).map_err(|e| {
        failed(
            "processing-failed",
            "CloudWatchLogProcessing.InvalidRecord",
            format!("The record is not a CloudWatch Logs subscription record: {e}."),
        )
    })?;
    Ok(match envelope.message_type.as_str() {
        "DATA_MESSAGE" => envelope
            .log_events
            .into_iter()
            .map(|e| e.message.into_bytes())
            .collect(),
        _ => Vec::new(),
    })
}

fn too_many() -> Failure {
    failed(
        "processing-failed",
        "RecordDeAggregation.TooManyRecords",
        format!("The record holds more than {SUB_RECORDS_MAX} sub-records."),
    )
}

fn deaggregate(kind: &SubRecords, data: &[u8]) -> Result<Vec<Vec<u8>>, Failure> {
    let mut out = Vec::new();
    match kind {
        SubRecords::Delimited(delimiter) => {
            let mut rest = data;
            while !rest.is_empty() {
                let end = rest
                    .windows(delimiter.len())
                    .position(|w| w == delimiter.as_slice());
                let (part, next) = match end {
                    Some(i) => (&rest[..i], &rest[i + delimiter.len()..]),
                    None => (rest, &rest[rest.len()..]),
                };
                if !part.is_empty() {
                    if out.len() == SUB_RECORDS_MAX {
                        return Err(too_many());
                    }
                    out.push(part.to_vec());
                }
                rest = next;
            }
        }
        SubRecords::Json => {
            // Consecutive JSON objects, with or without newlines between.
            let mut stream =
                serde_json::Deserializer::from_slice(data).into_iter::<serde::de::IgnoredAny>();
            let mut start = 0;
            while let Some(next) = stream.next() {
                let end = stream.byte_offset();
                next.map_err(|e| {
                    failed(
                        "processing-failed",
                        "RecordDeAggregation.InvalidJson",
                        format!("The record is not consecutive JSON objects: {e}."),
                    )
                })?;
                let object = data[start..end].trim_ascii();
                if !object.starts_with(b"{") {
                    return Err(failed(
                        "processing-failed",
                        "RecordDeAggregation.InvalidJson",
                        "The record is not consecutive JSON objects (an array or a value is not one).",
                    ));
                }
                if out.len() == SUB_RECORDS_MAX {
                    return Err(too_many());
                }
                out.push(object.to_vec());
                start = end;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn processor(
        kind: f::ProcessorType,
        params: &[(f::ProcessorParameterName, &str)],
    ) -> f::Processor {
        f::Processor {
            r#type: kind,
            parameters: Some(
                params
                    .iter()
                    .map(|(n, v)| f::ProcessorParameter {
                        parameter_name: *n,
                        parameter_value: (*v).to_owned(),
                    })
                    .collect(),
            ),
        }
    }

    fn config(processors: Vec<f::Processor>) -> f::ProcessingConfiguration {
        f::ProcessingConfiguration {
            enabled: Some(true),
            processors: Some(processors),
        }
    }

    fn run(p: &Pipeline, data: &[u8]) -> Result<Vec<Vec<u8>>, Failure> {
        let mut out = Vec::new();
        p.apply(data, &mut out).map(|()| out)
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn json_sub_records_one_line_or_many() {
        use f::ProcessorParameterName as N;
        let p = pipeline(Some(&config(vec![
            processor(
                f::ProcessorType::RecordDeAggregation,
                &[(N::SubRecordType, "JSON")],
            ),
            processor(f::ProcessorType::AppendDelimiterToRecord, &[]),
        ])))
        .unwrap()
        .unwrap();
        // AWS's examples of correct input.
        assert_eq!(
            run(&p, b"{\"a\":1}{\"a\":2}").unwrap(),
            [b"{\"a\":1}\n".to_vec(), b"{\"a\":2}\n".to_vec()]
        );
        assert_eq!(run(&p, b"{\"a\":1}\n{\"a\":2}\n").unwrap().len(), 2);
        // And of incorrect input: an array.
        let e = run(&p, b"[{\"a\":1}, {\"a\":2}]").unwrap_err();
        assert_eq!(
            (e.output_type, e.code),
            ("processing-failed", "RecordDeAggregation.InvalidJson")
        );
        assert!(run(&p, b"{\"a\":1}{\"a\":").is_err());
        let many: Vec<u8> = (0..501).flat_map(|_| b"{}".to_vec()).collect();
        assert_eq!(
            run(&p, &many).unwrap_err().code,
            "RecordDeAggregation.TooManyRecords"
        );
    }

    #[test]
    fn delimited_sub_records_with_a_base64_delimiter() {
        use f::ProcessorParameterName as N;
        // AWS's example: #### is IyMjIw==.
        let p = pipeline(Some(&config(vec![processor(
            f::ProcessorType::RecordDeAggregation,
            &[(N::SubRecordType, "DELIMITED"), (N::Delimiter, "IyMjIw==")],
        )])))
        .unwrap()
        .unwrap();
        assert_eq!(
            run(&p, b"a####bb########c").unwrap(),
            [b"a".to_vec(), b"bb".to_vec(), b"c".to_vec()]
        );
        assert!(pipeline(Some(&config(vec![processor(
            f::ProcessorType::RecordDeAggregation,
            &[(N::SubRecordType, "DELIMITED")],
        )])))
        .is_err());
    }

    #[test]
    fn cloudwatch_logs_records_decompressed_to_their_messages() {
        use f::ProcessorParameterName as N;
        let p = pipeline(Some(&config(vec![
            processor(
                f::ProcessorType::Decompression,
                &[(N::CompressionFormat, "GZIP")],
            ),
            processor(
                f::ProcessorType::CloudWatchLogProcessing,
                &[(N::DataMessageExtraction, "true")],
            ),
            processor(f::ProcessorType::AppendDelimiterToRecord, &[]),
        ])))
        .unwrap()
        .unwrap();
        let data = br#"{"messageType":"DATA_MESSAGE","owner":"123456789012","logGroup":"g","logStream":"s","subscriptionFilters":["f"],"logEvents":[{"id":"1","timestamp":1510109208016,"message":"log message 1"},{"id":"2","timestamp":1510109208017,"message":"log message 2"}]}"#;
        assert_eq!(
            run(&p, &gzip(data)).unwrap(),
            [b"log message 1\n".to_vec(), b"log message 2\n".to_vec()]
        );
        let control = br#"{"messageType":"CONTROL_MESSAGE","owner":"CloudwatchLogs","logGroup":"","logStream":"","subscriptionFilters":[],"logEvents":[{"id":"","timestamp":1,"message":"CWL CONTROL MESSAGE: Checking health of destination Firehose."}]}"#;
        assert!(run(&p, &gzip(control)).unwrap().is_empty());
        let e = run(&p, data).unwrap_err();
        assert_eq!(e.output_type, "decompression-failed");
        assert_eq!(
            run(&p, &gzip(b"not json")).unwrap_err().output_type,
            "processing-failed"
        );
    }

    #[test]
    fn what_is_not_built_or_misconfigured_is_said() {
        use f::ProcessorParameterName as N;
        for (kind, params) in [
            (f::ProcessorType::Lambda, vec![(N::NumberOfRetries, "3")]),
            (
                f::ProcessorType::MetadataExtraction,
                vec![(N::MetadataExtractionQuery, "{a:.a")],
            ),
            (f::ProcessorType::CloudWatchLogProcessing, vec![]),
            (
                f::ProcessorType::Decompression,
                vec![(N::CompressionFormat, "ZSTD")],
            ),
        ] {
            assert!(
                pipeline(Some(&config(vec![processor(kind, &params)]))).is_err(),
                "{kind:?}"
            );
        }
        let off = f::ProcessingConfiguration {
            enabled: Some(false),
            processors: Some(vec![processor(f::ProcessorType::Lambda, &[])]),
        };
        assert_eq!(pipeline(Some(&off)), Ok(None));
    }
}
