//! Amazon Kinesis Data Streams' requests and responses, typed: generated
//! from `spec/kinesis-2013-12-02.json` into [`shapes`] (checked by
//! `tests/codegen.rs`), and what the server reads of a request before it is
//! typed (the stream and shard it names, for limits, faults and the log).

// Generated: formatted as rendered, so that the check compares like with like.
#[rustfmt::skip]
mod shapes;

pub use shapes::*;

pub mod views;

use serde_json::Value;

/// SubscribeToShard's event type (the member of its event-stream shape).
pub const SUBSCRIBE_TO_SHARD_EVENT: &str = "SubscribeToShardEvent";

/// Members that name a request's stream, directly or inside an ARN.
const STREAM_MEMBERS: [&str; 3] = ["StreamName", "StreamARN", "ConsumerARN"];
/// Members that name a request's shard (a split or merge names the first).
const SHARD_MEMBERS: [&str; 3] = ["ShardId", "ShardToSplit", "ShardToMerge"];

/// The stream a request (in the JSON form) names: StreamName, or the stream
/// in StreamARN or ConsumerARN.
pub fn stream_of(input: &Value) -> Option<&str> {
    if let Some(name) = input.get(STREAM_MEMBERS[0]).and_then(Value::as_str) {
        return Some(name);
    }
    STREAM_MEMBERS[1..].iter().find_map(|m| {
        let arn = input.get(*m)?.as_str()?;
        let stream = sluice_model::Arn::parse(arn).ok()?;
        // Borrowed from the text: the stream name follows `stream/`.
        let at = arn.find(":stream/")? + 8;
        arn.get(at..at + stream.stream_name().len())
    })
}

/// The shard a request names (ShardId, or the shard a split or merge names).
pub fn shard_of(input: &Value) -> Option<&str> {
    SHARD_MEMBERS.iter().find_map(|m| input.get(*m)?.as_str())
}

fn input_has_any(operation: &str, members: &[&str]) -> bool {
    let model = crate::kinesis();
    model
        .operation(operation)
        .and_then(|o| o.input.as_deref())
        .is_some_and(|shape| {
            model
                .member_names(shape)
                .iter()
                .any(|m| members.contains(m))
        })
}

/// Whether `operation`'s requests can name a stream.
pub fn names_a_stream(operation: &str) -> bool {
    input_has_any(operation, &STREAM_MEMBERS)
}

/// Whether `operation`'s requests can name a shard.
pub fn names_a_shard(operation: &str) -> bool {
    input_has_any(operation, &SHARD_MEMBERS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn streams_and_shards_named_by_a_request() {
        assert_eq!(stream_of(&json!({"StreamName": "s"})), Some("s"));
        assert_eq!(
            stream_of(&json!({"StreamARN": "arn:aws:kinesis:us-east-1:000000000000:stream/t"})),
            Some("t")
        );
        assert_eq!(
            stream_of(
                &json!({"ConsumerARN": "arn:aws:kinesis:us-east-1:000000000000:stream/u/consumer/c:1"})
            ),
            Some("u")
        );
        assert_eq!(stream_of(&json!({})), None);
        assert_eq!(
            shard_of(&json!({"ShardToSplit": "shardId-000000000001"})),
            Some("shardId-000000000001")
        );
        assert!(names_a_stream("PutRecord"));
        assert!(names_a_stream("SubscribeToShard"));
        assert!(!names_a_stream("ListStreams"));
        assert!(names_a_shard("MergeShards"));
        assert!(!names_a_shard("PutRecords"));
    }
}
