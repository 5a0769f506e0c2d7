//! The generated shapes are what the model says: rendered again here and
//! compared with the checked-in file. `SLUICE_REGENERATE=1` rewrites it.

use std::path::Path;

/// Renders `model_json` and compares it with the checked-in `file`.
fn shapes_match(model_json: &str, spec: &str, file: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rendered = sluice_aws::codegen::render(model_json, spec).expect("the model renders");
    let path = root.join(file);
    if std::env::var_os("SLUICE_REGENERATE").is_some() {
        std::fs::write(&path, &rendered).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == rendered,
        "{} differs from what the model renders: run `SLUICE_REGENERATE=1 cargo test -p sluice-aws --test codegen`",
        path.display()
    );
}

#[test]
fn kinesis_shapes_match_the_model() {
    shapes_match(
        sluice_aws::model::KINESIS_MODEL_JSON,
        "spec/kinesis-2013-12-02.json",
        "src/kinesis/shapes.rs",
    );
}

#[test]
fn firehose_shapes_match_the_model() {
    shapes_match(
        sluice_aws::model::FIREHOSE_MODEL_JSON,
        "spec/firehose-2015-08-04.json",
        "src/firehose/shapes.rs",
    );
}

#[test]
fn every_operation_decodes_into_its_typed_request() {
    use serde_json::json;
    use sluice_aws::kinesis::{Request, ShardFilterType, ShardIteratorType};
    let model = sluice_aws::kinesis();
    assert_eq!(Request::OPERATIONS, model.operation_names().as_slice());
    // A blob arrives as its bytes, a timestamp as seconds, enums typed.
    let put = Request::decode(
        "PutRecords",
        &json!({"StreamName": "s", "Records": [{"Data": "aGk=", "PartitionKey": "p"}]}),
    )
    .unwrap();
    let Request::PutRecords(put) = put else {
        panic!("{put:?}")
    };
    assert_eq!(put.records[0].data.0, b"hi");
    assert_eq!(put.stream_name.as_deref(), Some("s"));
    let Request::GetShardIterator(it) = Request::decode(
        "GetShardIterator",
        &json!({"StreamName": "s", "ShardId": "shardId-000000000000",
                "ShardIteratorType": "AT_TIMESTAMP", "Timestamp": 1459799926.480}),
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(it.shard_iterator_type, ShardIteratorType::AtTimestamp);
    assert_eq!(it.timestamp.unwrap().as_millis(), 1_459_799_926_480);
    let Request::ListShards(list) = Request::decode(
        "ListShards",
        &json!({"StreamName": "s", "ShardFilter": {"Type": "AFTER_SHARD_ID", "ShardId": "x"}}),
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(
        list.shard_filter.unwrap().r#type,
        ShardFilterType::AfterShardId
    );
    // Every operation decodes a request with just its required members
    // (strings "x", numbers 1, lists and maps empty), and names itself.
    for op in Request::OPERATIONS {
        let input = model.operation(op).unwrap().input.clone().unwrap();
        let request = Request::decode(op, &minimal(model, &input)).unwrap_or_else(|e| {
            panic!("{op}: {}", e.message);
        });
        assert_eq!(request.operation(), *op);
    }
    assert_eq!(
        Request::decode("Nope", &json!({})).unwrap_err().code,
        sluice_aws::ErrorCode::UnknownOperationException
    );
    // A null tag value reads as "", as it always has.
    let Request::AddTagsToStream(tags) = Request::decode(
        "AddTagsToStream",
        &json!({"StreamName": "s", "Tags": {"k": null, "j": "v"}}),
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(tags.tags["k"], "");
    assert_eq!(tags.tags["j"], "v");
    let Request::CreateStream(create) = Request::decode(
        "CreateStream",
        &json!({"StreamName": "s", "Tags": {"k": null}}),
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(create.tags.unwrap()["k"], "");
    // What validation lets through but the types cannot hold is an AWS error.
    assert_eq!(
        Request::decode("PutRecord", &json!({"PartitionKey": "p", "Data": 5}))
            .unwrap_err()
            .code,
        sluice_aws::ErrorCode::SerializationException
    );
}

/// A value of `shape` with only its required members.
fn minimal(model: &sluice_aws::ApiModel, shape: &str) -> serde_json::Value {
    use serde_json::json;
    use sluice_aws::model::Shape;
    match model.shape(shape).unwrap() {
        Shape::Structure {
            members, required, ..
        } => {
            let mut out = serde_json::Map::new();
            for (name, target) in members {
                if required.contains(name) {
                    out.insert(name.clone(), minimal(model, target));
                }
            }
            serde_json::Value::Object(out)
        }
        Shape::String {
            enum_values: Some(values),
            ..
        } => json!(values[0]),
        Shape::String { .. } => json!("x"),
        Shape::Blob { .. } => json!("aGk="),
        Shape::Integer { .. } => json!(1),
        Shape::Double { .. } => json!(1.5),
        Shape::Boolean => json!(true),
        Shape::Timestamp => json!(1.5),
        Shape::List { .. } => json!([]),
        Shape::Map { .. } => json!({}),
    }
}
