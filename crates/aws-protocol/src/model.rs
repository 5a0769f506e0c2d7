//! The AWS API model: shapes and operations, read from botocore's service JSON.

use std::collections::HashMap;
use std::sync::OnceLock;

use regex::Regex;
use serde_json::Value;

/// botocore's Kinesis model, as shipped in `shared/spec/` (copied here so the
/// crate builds on its own).
pub const KINESIS_MODEL_JSON: &str = include_str!("../spec/kinesis-2013-12-02.json");

/// The Kinesis model, parsed once.
pub fn kinesis() -> &'static ApiModel {
    static MODEL: OnceLock<ApiModel> = OnceLock::new();
    MODEL.get_or_init(|| {
        ApiModel::parse(KINESIS_MODEL_JSON).expect("the embedded Kinesis model parses")
    })
}

/// How a service's requests travel (botocore's `metadata.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// AWS JSON 1.1: `POST /`, the operation in `X-Amz-Target` (Kinesis,
    /// Firehose, Kinesis Analytics); AWS CBOR 1.1 is its binary twin.
    Json,
    /// REST-JSON: the operation by method and path (Kinesis Video).
    RestJson,
}

#[derive(Debug)]
pub struct ApiModel {
    protocol: Protocol,
    /// The name SigV4 scopes a signature to (`signingName`, else `endpointPrefix`).
    signing_name: String,
    /// AWS JSON's `X-Amz-Target` prefix; REST-JSON services have none.
    target_prefix: Option<String>,
    operations: HashMap<String, Operation>,
    shapes: HashMap<String, Shape>,
}

#[derive(Debug, Clone)]
pub struct Operation {
    pub name: String,
    pub input: Option<String>,
    pub output: Option<String>,
    pub errors: Vec<String>,
}

#[derive(Debug)]
pub enum Shape {
    Structure {
        /// (member name, shape name), in the model's order.
        members: Vec<(String, String)>,
        required: Vec<String>,
    },
    String {
        min: Option<u64>,
        max: Option<u64>,
        pattern: Option<(String, Regex)>,
        enum_values: Option<Vec<String>>,
    },
    Blob {
        min: Option<u64>,
        max: Option<u64>,
    },
    Integer {
        min: Option<i64>,
        max: Option<i64>,
    },
    Boolean,
    Timestamp,
    List {
        member: String,
        min: Option<u64>,
        max: Option<u64>,
    },
    Map {
        key: String,
        value: String,
        min: Option<u64>,
        max: Option<u64>,
    },
}

impl ApiModel {
    pub fn parse(json: &str) -> Result<Self, String> {
        let doc: Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
        let metadata = &doc["metadata"];
        let protocol = match metadata["protocol"].as_str() {
            Some("json") => Protocol::Json,
            Some("rest-json") => Protocol::RestJson,
            other => return Err(format!("unsupported protocol {other:?}")),
        };
        let signing_name = metadata["signingName"]
            .as_str()
            .or(metadata["endpointPrefix"].as_str())
            .ok_or("metadata names no signing name or endpoint prefix")?
            .to_owned();
        let target_prefix = metadata["targetPrefix"].as_str().map(str::to_owned);
        if protocol == Protocol::Json && target_prefix.is_none() {
            return Err("an AWS JSON model without metadata.targetPrefix".to_owned());
        }
        let shape_name = |v: &Value| v["shape"].as_str().map(str::to_owned);
        let mut operations = HashMap::new();
        for (name, op) in doc["operations"].as_object().ok_or("operations missing")? {
            let errors = op["errors"]
                .as_array()
                .map(|a| a.iter().filter_map(shape_name).collect())
                .unwrap_or_default();
            operations.insert(
                name.clone(),
                Operation {
                    name: name.clone(),
                    input: shape_name(&op["input"]),
                    output: shape_name(&op["output"]),
                    errors,
                },
            );
        }
        let mut shapes = HashMap::new();
        for (name, s) in doc["shapes"].as_object().ok_or("shapes missing")? {
            let min = s["min"].as_u64();
            let max = s["max"].as_u64();
            let shape = match s["type"].as_str().unwrap_or_default() {
                "structure" => Shape::Structure {
                    members: s["members"]
                        .as_object()
                        .map(|m| {
                            m.iter()
                                .filter_map(|(k, v)| Some((k.clone(), shape_name(v)?)))
                                .collect()
                        })
                        .unwrap_or_default(),
                    required: s["required"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|v| v.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default(),
                },
                "string" => Shape::String {
                    min,
                    max,
                    pattern: match s["pattern"].as_str() {
                        // The model's patterns must match the whole value (Java semantics).
                        Some(p) => Some((
                            p.to_owned(),
                            Regex::new(&format!("^(?:{p})$"))
                                .map_err(|e| format!("{name}: {e}"))?,
                        )),
                        None => None,
                    },
                    enum_values: s["enum"].as_array().map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    }),
                },
                "blob" => Shape::Blob { min, max },
                "integer" | "long" => Shape::Integer {
                    min: s["min"].as_i64(),
                    max: s["max"].as_i64(),
                },
                "boolean" => Shape::Boolean,
                "timestamp" => Shape::Timestamp,
                "list" => Shape::List {
                    member: shape_name(&s["member"])
                        .ok_or(format!("{name}: list without member"))?,
                    min,
                    max,
                },
                "map" => Shape::Map {
                    key: shape_name(&s["key"]).ok_or(format!("{name}: map without key"))?,
                    value: shape_name(&s["value"]).ok_or(format!("{name}: map without value"))?,
                    min,
                    max,
                },
                other => return Err(format!("{name}: unsupported shape type {other:?}")),
            };
            shapes.insert(name.clone(), shape);
        }
        Ok(Self {
            protocol,
            signing_name,
            target_prefix,
            operations,
            shapes,
        })
    }

    /// AWS JSON's `X-Amz-Target` prefix ("" for REST-JSON services).
    pub fn target_prefix(&self) -> &str {
        self.target_prefix.as_deref().unwrap_or_default()
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The service name a SigV4 credential scope must carry.
    pub fn signing_name(&self) -> &str {
        &self.signing_name
    }

    pub fn operation(&self, name: &str) -> Option<&Operation> {
        self.operations.get(name)
    }

    pub fn operation_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.operations.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    pub fn shape(&self, name: &str) -> Option<&Shape> {
        self.shapes.get(name)
    }

    /// The member names of a structure shape (none for other shapes).
    pub fn member_names(&self, shape: &str) -> Vec<&str> {
        match self.shape(shape) {
            Some(Shape::Structure { members, .. }) => {
                members.iter().map(|(m, _)| m.as_str()).collect()
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_embedded_model_has_every_operation() {
        let m = super::kinesis();
        assert_eq!(m.operation_names().len(), 39);
        assert_eq!(m.target_prefix(), "Kinesis_20131202");
        assert_eq!(m.signing_name(), "kinesis");
        assert_eq!(m.protocol(), super::Protocol::Json);
        let put = m.operation("PutRecords").unwrap();
        assert_eq!(put.input.as_deref(), Some("PutRecordsInput"));
        assert!(put
            .errors
            .iter()
            .any(|e| e == "ProvisionedThroughputExceededException"));
    }
}
