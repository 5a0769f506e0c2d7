//! REST-JSON (Kinesis Video): the operation is found by method and path,
//! from each operation's `http.requestUri` in the model, and the members
//! bound to the URI, the query string or headers are gathered into the same
//! JSON form an AWS JSON body has, so one validator and one set of typed
//! requests serve both protocols. (REST-JSON clients read an error's name
//! from the `x-amzn-ErrorType` header first: the server sets it when it
//! serves a REST-JSON service.)

use serde_json::{Map, Value};

use crate::error::{AwsError, ErrorCode};
use crate::model::{ApiModel, Location, Shape};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `{Name}`: one path segment.
    Label(String),
    /// `{Name+}`: the rest of the path.
    Greedy(String),
}

#[derive(Debug)]
struct Route {
    method: String,
    segments: Vec<Segment>,
    /// Query parameters the URI requires (`?versioning` or `?x=y`).
    query: Vec<(String, Option<String>)>,
    operation: String,
}

/// Every operation's route, from a REST-JSON model.
#[derive(Debug)]
pub struct Routes {
    routes: Vec<Route>,
}

/// The operation a request routes to, and its URI labels (decoded).
#[derive(Debug, PartialEq, Eq)]
pub struct Found<'a> {
    pub operation: &'a str,
    pub labels: Vec<(&'a str, String)>,
}

fn unknown() -> AwsError {
    AwsError::new(ErrorCode::UnknownOperationException, "")
}

/// Percent-decodes one URI component; `None` if it is not valid UTF-8 or
/// holds a bad escape.
fn decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `a=1&b&c=%20` as decoded pairs (a parameter without `=` has value "").
pub fn query_pairs(query: &str) -> Result<Vec<(String, String)>, AwsError> {
    let bad = || AwsError::new(ErrorCode::SerializationException, "Malformed query string.");
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let plus = |s: &str| s.replace('+', " ");
            Ok((
                decode(&plus(k)).ok_or_else(bad)?,
                decode(&plus(v)).ok_or_else(bad)?,
            ))
        })
        .collect()
}

impl Routes {
    pub fn of(model: &ApiModel) -> Self {
        let mut routes: Vec<Route> = model
            .operations()
            .map(|op| {
                let (path, query) = op
                    .request_uri
                    .split_once('?')
                    .unwrap_or((&op.request_uri, ""));
                let segments = path
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .map(
                        |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                            Some(label) => match label.strip_suffix('+') {
                                Some(greedy) => Segment::Greedy(greedy.to_owned()),
                                None => Segment::Label(label.to_owned()),
                            },
                            None => Segment::Literal(s.to_owned()),
                        },
                    )
                    .collect();
                let query = query
                    .split('&')
                    .filter(|p| !p.is_empty())
                    .map(|p| match p.split_once('=') {
                        Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                        None => (p.to_owned(), None),
                    })
                    .collect();
                Route {
                    method: op.method.clone(),
                    segments,
                    query,
                    operation: op.name.clone(),
                }
            })
            .collect();
        // The most specific route first: more literal segments, then more
        // required query parameters, then the name (a stable order).
        routes.sort_by(|a, b| {
            let literals = |r: &Route| {
                r.segments
                    .iter()
                    .filter(|s| matches!(s, Segment::Literal(_)))
                    .count()
            };
            literals(b)
                .cmp(&literals(a))
                .then(b.query.len().cmp(&a.query.len()))
                .then(a.operation.cmp(&b.operation))
        });
        Self { routes }
    }

    /// The operation `method path?query` names. A path no route takes is
    /// UnknownOperationException, as AWS JSON's unknown targets are.
    pub fn find(&self, method: &str, path: &str, query: &str) -> Result<Found<'_>, AwsError> {
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let pairs = query_pairs(query)?;
        'routes: for route in &self.routes {
            if !route.method.eq_ignore_ascii_case(method) {
                continue;
            }
            let mut labels = Vec::new();
            let mut i = 0;
            for segment in &route.segments {
                match segment {
                    Segment::Literal(lit) => {
                        if parts.get(i) != Some(&lit.as_str()) {
                            continue 'routes;
                        }
                        i += 1;
                    }
                    Segment::Label(name) => {
                        let Some(value) = parts.get(i).and_then(|p| decode(p)) else {
                            continue 'routes;
                        };
                        labels.push((name.as_str(), value));
                        i += 1;
                    }
                    Segment::Greedy(name) => {
                        if i >= parts.len() {
                            continue 'routes;
                        }
                        let Some(value) = decode(&parts[i..].join("/")) else {
                            continue 'routes;
                        };
                        labels.push((name.as_str(), value));
                        i = parts.len();
                    }
                }
            }
            if i != parts.len() {
                continue;
            }
            let required = route.query.iter().all(|(k, v)| {
                pairs
                    .iter()
                    .any(|(pk, pv)| pk == k && v.as_ref().is_none_or(|v| v == pv))
            });
            if required {
                return Ok(Found {
                    operation: &route.operation,
                    labels,
                });
            }
        }
        Err(unknown())
    }
}

/// The JSON form of a REST-JSON request: the body's members (or the body
/// as the `payload` member), then each member bound to a URI label, a
/// query parameter or a header. Numbers and booleans outside the body are
/// read as their shape says; what does not parse is SerializationException.
pub fn bind(
    model: &ApiModel,
    input_shape: &str,
    labels: &[(&str, String)],
    query: &[(String, String)],
    header: &dyn Fn(&str) -> Option<String>,
    body: &[u8],
) -> Result<Value, AwsError> {
    let malformed = |what: &str| {
        AwsError::new(
            ErrorCode::SerializationException,
            format!("Malformed {what}."),
        )
    };
    let Some(Shape::Structure {
        members,
        locations,
        payload,
        ..
    }) = model.shape(input_shape)
    else {
        return Ok(Value::Object(Map::new()));
    };
    let mut out = match payload {
        Some(member) => {
            let mut m = Map::new();
            if !body.is_empty() {
                let value = serde_json::from_slice(body).map_err(|_| malformed("body"))?;
                m.insert(member.clone(), value);
            }
            m
        }
        None if body.iter().all(u8::is_ascii_whitespace) => Map::new(),
        None => match serde_json::from_slice(body) {
            Ok(Value::Object(m)) => m,
            _ => return Err(malformed("body")),
        },
    };
    for (member, location) in locations {
        let shape = members
            .iter()
            .find(|(m, _)| m == member)
            .and_then(|(_, s)| model.shape(s));
        let texts: Vec<String> = match location {
            Location::Uri(name) => labels
                .iter()
                .filter(|(l, _)| l == name)
                .map(|(_, v)| v.clone())
                .collect(),
            Location::Query(name) => query
                .iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .collect(),
            Location::Header(name) => header(name).into_iter().collect(),
        };
        if texts.is_empty() {
            continue;
        }
        let scalar = |text: &str, shape: Option<&Shape>| -> Result<Value, AwsError> {
            Ok(match shape {
                Some(Shape::Integer { .. }) => Value::from(
                    text.parse::<i64>()
                        .map_err(|_| malformed(&format!("value for {member}")))?,
                ),
                Some(Shape::Double { .. }) => text
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .ok_or_else(|| malformed(&format!("value for {member}")))?,
                Some(Shape::Boolean) => match text {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    _ => return Err(malformed(&format!("value for {member}"))),
                },
                _ => Value::String(text.to_owned()),
            })
        };
        let value = match shape {
            Some(Shape::List { member: item, .. }) => Value::Array(
                texts
                    .iter()
                    .map(|t| scalar(t, model.shape(item)))
                    .collect::<Result<_, _>>()?,
            ),
            _ => scalar(&texts[0], shape)?,
        };
        out.insert(member.clone(), value);
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIDEO: &str = include_str!("../spec/kinesisvideo-2017-09-30.json");
    const MEDIA: &str = include_str!("../spec/kinesis-video-media-2017-09-30.json");
    const ARCHIVED: &str = include_str!("../spec/kinesis-video-archived-media-2017-09-30.json");

    /// A small REST-JSON model in botocore's format, with every binding.
    const BOUND: &str = r#"{
      "metadata": {"protocol": "rest-json", "endpointPrefix": "things", "signingName": "things"},
      "operations": {
        "GetThing": {"name": "GetThing", "http": {"method": "GET", "requestUri": "/things/{Name}"},
                     "input": {"shape": "GetThingInput"}},
        "GetThingVersions": {"name": "GetThingVersions",
                     "http": {"method": "GET", "requestUri": "/things/{Name}?versions"},
                     "input": {"shape": "GetThingInput"}},
        "PutFile": {"name": "PutFile", "http": {"method": "PUT", "requestUri": "/files/{Key+}"},
                    "input": {"shape": "PutFileInput"}},
        "ListThings": {"name": "ListThings", "http": {"method": "GET", "requestUri": "/things"},
                       "input": {"shape": "ListThingsInput"}}
      },
      "shapes": {
        "GetThingInput": {"type": "structure", "required": ["Name"], "members": {
          "Name": {"shape": "Text", "location": "uri", "locationName": "Name"},
          "Limit": {"shape": "Count", "location": "querystring", "locationName": "limit"},
          "Tags": {"shape": "TextList", "location": "querystring", "locationName": "tag"},
          "Exact": {"shape": "Flag", "location": "header", "locationName": "x-exact"},
          "Note": {"shape": "Text"}}},
        "PutFileInput": {"type": "structure", "members": {
          "Key": {"shape": "Text", "location": "uri", "locationName": "Key"},
          "Body": {"shape": "Doc"}}, "payload": "Body"},
        "ListThingsInput": {"type": "structure", "members": {}},
        "Doc": {"type": "structure", "members": {"A": {"shape": "Text"}}},
        "Text": {"type": "string"},
        "TextList": {"type": "list", "member": {"shape": "Text"}},
        "Count": {"type": "integer"},
        "Flag": {"type": "boolean"}
      }
    }"#;

    #[test]
    fn every_kinesis_video_operation_routes_to_itself() {
        for json in [VIDEO, MEDIA, ARCHIVED] {
            let model = ApiModel::parse(json).unwrap();
            assert_eq!(model.protocol(), crate::Protocol::RestJson);
            assert_eq!(model.signing_name(), "kinesisvideo");
            let routes = Routes::of(&model);
            let mut n = 0;
            for op in model.operations() {
                let found = routes.find(&op.method, &op.request_uri, "").unwrap();
                assert_eq!(found.operation, op.name);
                assert!(found.labels.is_empty());
                n += 1;
            }
            assert!(n > 0);
            for (method, path) in [("GET", "/createStream"), ("POST", "/nope"), ("POST", "/")] {
                assert_eq!(
                    routes.find(method, path, "").unwrap_err().code,
                    ErrorCode::UnknownOperationException
                );
            }
        }
        let video = ApiModel::parse(VIDEO).unwrap();
        assert_eq!(video.operation_names().len(), 32);
        let routes = Routes::of(&video);
        let found = routes.find("POST", "/describeStream", "").unwrap();
        assert_eq!(found.operation, "DescribeStream");
    }

    #[test]
    fn the_other_models_load_through_the_same_parser() {
        for (json, prefix, signing, ops) in [
            (
                include_str!("../spec/firehose-2015-08-04.json"),
                "Firehose_20150804",
                "firehose",
                12,
            ),
            (
                include_str!("../spec/kinesisanalytics-2015-08-14.json"),
                "KinesisAnalytics_20150814",
                "kinesisanalytics",
                20,
            ),
        ] {
            let model = ApiModel::parse(json).unwrap();
            assert_eq!(model.protocol(), crate::Protocol::Json);
            assert_eq!(model.target_prefix(), prefix);
            assert_eq!(model.signing_name(), signing);
            assert_eq!(model.operation_names().len(), ops);
        }
        // Kinesis' own patterns are all checked; Firehose's look-around ones
        // are listed (for the Firehose service to check another way).
        assert!(crate::kinesis().unchecked_patterns().is_empty());
        let firehose = ApiModel::parse(include_str!("../spec/firehose-2015-08-04.json")).unwrap();
        assert!(firehose
            .unchecked_patterns()
            .iter()
            .any(|s| s == "ClusterJDBCURL"));
    }

    #[test]
    fn labels_queries_and_headers_bind_into_the_json_form() {
        let model = ApiModel::parse(BOUND).unwrap();
        let routes = Routes::of(&model);
        let found = routes
            .find("GET", "/things/a%20b", "limit=5&tag=x&tag=y+z")
            .unwrap();
        assert_eq!(found.operation, "GetThing");
        assert_eq!(found.labels, vec![("Name", "a b".to_owned())]);
        // The route with the required `?versions` wins when it is there.
        let versions = routes.find("GET", "/things/a", "versions").unwrap();
        assert_eq!(versions.operation, "GetThingVersions");
        assert_eq!(
            routes.find("GET", "/things", "").unwrap().operation,
            "ListThings"
        );
        assert_eq!(
            routes.find("GET", "/things/a/b", "").unwrap_err().code,
            ErrorCode::UnknownOperationException
        );
        let query = query_pairs("limit=5&tag=x&tag=y+z").unwrap();
        let header = |name: &str| (name == "x-exact").then(|| "true".to_owned());
        let v = bind(
            &model,
            "GetThingInput",
            &found.labels,
            &query,
            &header,
            br#"{"Note":"n"}"#,
        )
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"Name": "a b", "Limit": 5, "Tags": ["x", "y z"], "Exact": true, "Note": "n"})
        );
        // A greedy label takes the rest of the path; the payload member is the body.
        let put = routes.find("PUT", "/files/dir/sub/f%2Fg", "").unwrap();
        assert_eq!(put.labels, vec![("Key", "dir/sub/f/g".to_owned())]);
        let none = |_: &str| None;
        let v = bind(
            &model,
            "PutFileInput",
            &put.labels,
            &[],
            &none,
            br#"{"A":"1"}"#,
        )
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"Key": "dir/sub/f/g", "Body": {"A": "1"}})
        );
    }

    #[test]
    fn hostile_requests_are_serialization_errors() {
        let model = ApiModel::parse(BOUND).unwrap();
        let routes = Routes::of(&model);
        assert_eq!(
            routes
                .find("GET", "/things/a", "limit=%zz")
                .unwrap_err()
                .code,
            ErrorCode::SerializationException
        );
        // A label that is not UTF-8 once decoded takes no route.
        assert!(routes.find("GET", "/things/%ff", "").is_err());
        let none = |_: &str| None;
        let labels = [("Name", "a".to_owned())];
        for (query, body) in [
            (vec![("limit".to_owned(), "five".to_owned())], &b""[..]),
            (vec![], &b"{\"Note\":"[..]),
            (vec![], &b"[1]"[..]),
        ] {
            assert_eq!(
                bind(&model, "GetThingInput", &labels, &query, &none, body)
                    .unwrap_err()
                    .code,
                ErrorCode::SerializationException,
                "{query:?} {body:?}"
            );
        }
        let bad_flag = |_: &str| Some("yes".to_owned());
        assert!(bind(&model, "GetThingInput", &labels, &[], &bad_flag, b"").is_err());
    }
}
