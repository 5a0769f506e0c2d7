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

/// botocore's Firehose model (copied from `shared/spec/`).
pub const FIREHOSE_MODEL_JSON: &str = include_str!("../spec/firehose-2015-08-04.json");

/// The Firehose model, parsed once.
pub fn firehose() -> &'static ApiModel {
    static MODEL: OnceLock<ApiModel> = OnceLock::new();
    MODEL.get_or_init(|| {
        // Sluice delivers to http:// URLs on loopback addresses too (a local
        // receiver needs no certificate); AWS takes https:// only.
        let aws = "\"min\": 1,\n   \"pattern\": \"https://.*\",";
        let sluice = "\"min\": 1,\n   \"pattern\": \"https://.*|http://(localhost|127\\\\.[0-9]+\\\\.[0-9]+\\\\.[0-9]+|\\\\[::1\\\\])(:[0-9]+)?(/.*)?\",";
        assert_eq!(FIREHOSE_MODEL_JSON.matches(aws).count(), 1, "HttpEndpointUrl's pattern");
        let json = FIREHOSE_MODEL_JSON.replacen(aws, sluice, 1);
        ApiModel::parse(&json).expect("the embedded Firehose model parses")
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
    /// String shapes whose pattern uses look-around, which the regex crate
    /// cannot run: their values are not checked against it.
    unchecked_patterns: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Operation {
    pub name: String,
    pub input: Option<String>,
    pub output: Option<String>,
    pub errors: Vec<String>,
    /// `http.method` and `http.requestUri` (REST-JSON routes by them; AWS
    /// JSON operations are all `POST /`).
    pub method: String,
    pub request_uri: String,
}

/// Where a REST-JSON member travels, when not in the JSON body
/// (botocore's `location` and `locationName`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A `{Label}` of the request URI.
    Uri(String),
    /// A query-string parameter.
    Query(String),
    /// A header.
    Header(String),
}

#[derive(Debug)]
pub enum Shape {
    Structure {
        /// (member name, shape name), in the model's order.
        members: Vec<(String, String)>,
        required: Vec<String>,
        /// Members bound to the URI, query string or headers (REST-JSON).
        locations: Vec<(String, Location)>,
        /// The member that is the whole body, if one is (`payload`).
        payload: Option<String>,
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
        /// A `long` (64 bits) rather than an `integer` (32).
        long: bool,
    },
    Double {
        min: Option<f64>,
        max: Option<f64>,
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

/// A Java pattern's `\w`, `\d` and `\s` (and their negations) as the
/// ASCII classes Java means by them (the regex crate's are Unicode, and
/// far larger to compile: Firehose's `[\w\.\-]{1,255}` would pass its
/// size limit).
fn java_classes(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('w') => out.push_str("[0-9A-Za-z_]"),
            Some('W') => out.push_str("[^0-9A-Za-z_]"),
            Some('d') => out.push_str("[0-9]"),
            Some('D') => out.push_str("[^0-9]"),
            Some('s') => out.push_str("[ \\t\\n\\x0B\\f\\r]"),
            Some('S') => out.push_str("[^ \\t\\n\\x0B\\f\\r]"),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// A member's `location`, if it has one botocore binds outside the body.
fn location(member: &str, v: &Value) -> Option<Location> {
    let name = v["locationName"].as_str().unwrap_or(member).to_owned();
    match v["location"].as_str()? {
        "uri" => Some(Location::Uri(name)),
        "querystring" => Some(Location::Query(name)),
        "header" => Some(Location::Header(name)),
        _ => None,
    }
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
                    method: op["http"]["method"].as_str().unwrap_or("POST").to_owned(),
                    request_uri: op["http"]["requestUri"].as_str().unwrap_or("/").to_owned(),
                },
            );
        }
        let mut shapes = HashMap::new();
        let mut unchecked_patterns = Vec::new();
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
                    locations: s["members"]
                        .as_object()
                        .map(|m| {
                            m.iter()
                                .filter_map(|(k, v)| Some((k.clone(), location(k, v)?)))
                                .collect()
                        })
                        .unwrap_or_default(),
                    payload: s["payload"].as_str().map(str::to_owned),
                },
                "string" => Shape::String {
                    min,
                    max,
                    pattern: match s["pattern"].as_str() {
                        // The model's patterns must match the whole value (Java semantics).
                        Some(p) => match Regex::new(&format!("^(?:{})$", java_classes(p))) {
                            Ok(regex) => Some((p.to_owned(), regex)),
                            // Java's look-around, which the regex crate does not
                            // have (Firehose's JDBC URLs): not checked, and listed.
                            Err(_)
                                if p.contains("(?!") || p.contains("(?<") || p.contains("(?=") =>
                            {
                                unchecked_patterns.push(name.clone());
                                None
                            }
                            Err(e) => return Err(format!("{name}: {e}")),
                        },
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
                    long: s["type"] == "long",
                },
                "double" | "float" => Shape::Double {
                    min: s["min"].as_f64(),
                    max: s["max"].as_f64(),
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
        unchecked_patterns.sort();
        Ok(Self {
            protocol,
            signing_name,
            target_prefix,
            operations,
            shapes,
            unchecked_patterns,
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

    /// String shapes whose pattern uses look-around (Java's, which the regex
    /// crate cannot run): values of these shapes are not checked against it.
    pub fn unchecked_patterns(&self) -> &[String] {
        &self.unchecked_patterns
    }

    pub fn operations(&self) -> impl Iterator<Item = &Operation> {
        self.operations.values()
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
    fn java_classes_are_ascii() {
        use super::java_classes;
        assert_eq!(java_classes(r"\d{12}"), "[0-9]{12}");
        assert_eq!(java_classes(r"[\w\.\-]+"), r"[[0-9A-Za-z_]\.\-]+");
        assert_eq!(java_classes(r"\\w"), r"\\w", "an escaped backslash stays");
        let r = regex::Regex::new(&format!("^(?:{})$", java_classes(r"\S+:\d"))).unwrap();
        assert!(r.is_match("ab:1"));
        assert!(
            !r.is_match("ab:\u{0661}"),
            "an Arabic-Indic digit is not Java's \\d"
        );
        assert!(!r.is_match("a b:1"));
    }

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
