//! Dynamic partitioning keys from records (`MetadataExtraction`): the
//! MetadataExtractionQuery is a jq expression (run by jaq, a jq
//! implementation in Rust) over the record's JSON, which must give one
//! object; its members are the keys a prefix names with
//! `!{partitionKeyFromQuery:KEY}`. A record that is not JSON, or whose
//! query fails or gives no value for a key the prefix needs, is a
//! `DynamicPartitioning.MetadataExtractionFailed` error (AWS's code),
//! delivered under the `partitioning-failed` error output type.

use std::collections::BTreeMap;

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{data, unwrap_valr, Compiler, Ctx, Vars};
use jaq_json::Val;

use crate::process::Failure;

/// AWS: at most 500 partitions active at once per delivery stream.
pub const ACTIVE_PARTITIONS_MAX: usize = 500;

/// Partition keys and their values.
pub type Keys = BTreeMap<String, String>;

/// A compiled MetadataExtractionQuery.
pub struct Query {
    filter: jaq_core::Filter<data::JustLut<Val>>,
}

impl std::fmt::Debug for Query {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Query")
    }
}

impl Query {
    /// Compiles `code`, or says why it does not compile.
    pub fn compile(code: &str) -> Result<Self, String> {
        let defs = jaq_core::defs()
            .chain(jaq_std::defs())
            .chain(jaq_json::defs());
        let funs = jaq_core::funs()
            .chain(jaq_std::funs())
            .chain(jaq_json::funs());
        let loader = Loader::new(defs);
        let arena = Arena::default();
        let modules = loader.load(&arena, File { code, path: () }).map_err(|e| {
            format!(
                "MetadataExtractionQuery {code:?} does not parse ({} errors)",
                e.len()
            )
        })?;
        let filter = Compiler::default()
            .with_funs(funs)
            .compile(modules)
            .map_err(|e| {
                format!(
                    "MetadataExtractionQuery {code:?} does not compile ({} errors)",
                    e.len()
                )
            })?;
        Ok(Self { filter })
    }

    /// The keys `data` (a JSON record) gives.
    pub fn keys(&self, data: &[u8]) -> Result<Keys, Failure> {
        let failed = |message: String| Failure {
            output_type: "partitioning-failed",
            code: "DynamicPartitioning.MetadataExtractionFailed",
            message,
        };
        let input = jaq_json::read::parse_single(data)
            .map_err(|e| failed(format!("The record is not JSON: {e}.")))?;
        let ctx = Ctx::<data::JustLut<Val>>::new(&self.filter.lut, Vars::new([]));
        let mut out = self.filter.id.run((ctx, input)).map(unwrap_valr);
        let value = match out.next() {
            Some(Ok(v)) => v,
            Some(Err(e)) => return Err(failed(format!("The query failed: {e}."))),
            None => return Err(failed("The query gave no value.".to_owned())),
        };
        let Val::Obj(members) = value else {
            return Err(failed("The query did not give an object.".to_owned()));
        };
        let mut keys = Keys::new();
        for (k, v) in members.iter() {
            let name =
                text(k).ok_or_else(|| failed("A partition key is not a string.".to_owned()))?;
            match v {
                Val::Null => {}
                other => {
                    keys.insert(name, text(other).unwrap_or_else(|| other.to_string()));
                }
            }
        }
        Ok(keys)
    }
}

fn text(v: &Val) -> Option<String> {
    match v {
        Val::TStr(b) | Val::BStr(b) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    }
}

/// `prefix` with its `!{partitionKeyFromQuery:KEY}` expressions replaced by
/// `keys`' values; a key with no value (or one that is empty or would
/// make another expression) is a failure.
pub fn substitute(prefix: &str, keys: &Keys) -> Result<String, Failure> {
    replace(prefix, "!{partitionKeyFromQuery:", keys)
}

/// [`substitute`] for keys from the query and from a Lambda
/// (`!{partitionKeyFromLambda:KEY}`).
pub fn substitute_both(prefix: &str, query: &Keys, lambda: &Keys) -> Result<String, Failure> {
    let prefix = replace(prefix, "!{partitionKeyFromLambda:", lambda)?;
    replace(&prefix, "!{partitionKeyFromQuery:", query)
}

fn replace(prefix: &str, expression: &str, keys: &Keys) -> Result<String, Failure> {
    let mut out = String::new();
    let mut rest = prefix;
    while let Some(start) = rest.find(expression) {
        out.push_str(&rest[..start]);
        let inner = &rest[start + expression.len()..];
        let Some(end) = inner.find('}') else {
            break;
        };
        let key = &inner[..end];
        let value = keys
            .get(key)
            .filter(|v| !v.is_empty() && !v.contains("!{"))
            .ok_or_else(|| Failure {
                output_type: "partitioning-failed",
                code: "DynamicPartitioning.MetadataExtractionFailed",
                message: format!("partitionKeys values must not be null or empty: {key} has none."),
            })?;
        out.push_str(value);
        rest = &inner[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_from_a_jq_query() {
        // AWS's guide's example query.
        let q = Query::compile("{customer_id: .customer_id, device: .type.device}").unwrap();
        let keys = q
            .keys(br#"{"customer_id":"123","type":{"device":"mobile"},"n":1}"#)
            .unwrap();
        assert_eq!(keys["customer_id"], "123");
        assert_eq!(keys["device"], "mobile");
        let q = Query::compile("{year: .ts | tostring | .[0:4], n: .n}").unwrap();
        let keys = q.keys(br#"{"ts":20261205,"n":7}"#).unwrap();
        assert_eq!((keys["year"].as_str(), keys["n"].as_str()), ("2026", "7"));
        let e = q.keys(b"not json").unwrap_err();
        assert_eq!(
            (e.output_type, e.code),
            (
                "partitioning-failed",
                "DynamicPartitioning.MetadataExtractionFailed"
            )
        );
        assert!(Query::compile("{a: .a").is_err());
        assert!(Query::compile("nosuchfunction(1)").is_err());
    }

    #[test]
    fn prefixes_get_their_keys() {
        let keys: Keys = [("c".to_owned(), "42".to_owned())].into();
        assert_eq!(
            substitute("c=!{partitionKeyFromQuery:c}/!{timestamp:yyyy}/", &keys).unwrap(),
            "c=42/!{timestamp:yyyy}/"
        );
        assert!(substitute("d=!{partitionKeyFromQuery:d}/", &keys).is_err());
        let injected: Keys = [("c".to_owned(), "!{timestamp:yyyy}".to_owned())].into();
        assert!(substitute("!{partitionKeyFromQuery:c}", &injected).is_err());
    }
}
