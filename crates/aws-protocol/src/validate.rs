//! Request validation against the model, worded as AWS words it:
//!
//! `2 validation errors detected: Value null at 'streamName' failed to satisfy
//! constraint: Member must not be null; Value '0' at 'shardCount' failed to
//! satisfy constraint: Member must have value greater than or equal to 1`
//!
//! Paths use the member names with a lowercase first letter; list elements are
//! `records.1.member.data` (1-based). A value of the wrong JSON type is a
//! `SerializationException`, not a validation error. Members the model does not
//! know are ignored, as AWS does.

use base64::Engine;
use serde_json::Value;

use crate::error::{AwsError, ErrorCode};
use crate::model::{ApiModel, Shape};

/// Decodes an AWS JSON 1.1 request body. AWS answers an empty body, one
/// that is not JSON, and JSON that is not an object with a bare
/// SerializationException (no message; kinesalite's connection tests).
pub fn decode_json_body(body: &[u8]) -> Result<Value, AwsError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(AwsError::new(ErrorCode::SerializationException, "")),
    }
}

/// Validates `input` against the input shape of `operation`. As AWS's
/// deserializer does, a fractional number for an integer member is rounded
/// down (floored) and one beyond an `integer`'s range is clamped, in
/// `input`.
pub fn validate_input(
    model: &ApiModel,
    operation: &str,
    input: &mut Value,
) -> Result<(), AwsError> {
    let op = model
        .operation(operation)
        .ok_or_else(|| AwsError::new(ErrorCode::UnknownOperationException, ""))?;
    let Some(shape) = &op.input else {
        return Ok(());
    };
    let mut v = Validator {
        model,
        errors: Vec::new(),
    };
    v.structure_members(shape, input, "")?;
    match v.errors.len() {
        0 => Ok(()),
        1 => Err(AwsError::new(
            ErrorCode::ValidationException,
            format!("1 validation error detected: {}", v.errors[0]),
        )),
        n => Err(AwsError::new(
            ErrorCode::ValidationException,
            format!("{n} validation errors detected: {}", v.errors.join("; ")),
        )),
    }
}

struct Validator<'m> {
    model: &'m ApiModel,
    errors: Vec<String>,
}

fn member_path(parent: &str, member: &str) -> String {
    let mut chars = member.chars();
    let lower: String = chars
        .next()
        .map(|c| c.to_ascii_lowercase())
        .into_iter()
        .chain(chars)
        .collect();
    if parent.is_empty() {
        lower
    } else {
        format!("{parent}.{lower}")
    }
}

fn serialization(message: impl Into<String>) -> AwsError {
    AwsError::new(ErrorCode::SerializationException, message)
}

/// The Java class AWS's deserializer names for a JSON scalar it cannot
/// convert.
fn java_class(value: &Value) -> &'static str {
    match value {
        Value::Bool(_) => "class java.lang.Boolean",
        Value::Number(_) => "class com.amazon.coral.value.json.numbers.TruncatingBigNumber",
        _ => "class java.lang.String",
    }
}

/// What AWS's JSON deserializer says when `value` is not of the member's
/// type (`target`: "an String", "an Integer", "a Blob"...; AWS's grammar).
/// A list or an object where a scalar belongs is a structural complaint.
fn not_convertible(value: &Value, target: &str) -> AwsError {
    match value {
        Value::Array(_) => serialization("Start of list found where not expected"),
        Value::Object(_) => serialization("Start of structure or map found where not expected."),
        _ => serialization(format!(
            "{} can not be converted to {target}",
            java_class(value)
        )),
    }
}

/// A value as Java's `toString` shows it in a validation message: lists
/// as `[a, b]`, maps as `{k=v}`.
fn java_display(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(java_display)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{k}={}", java_display(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

/// Whether a length breaks its bounds.
fn out_of_range(len: u64, min: Option<u64>, max: Option<u64>) -> bool {
    min.is_some_and(|m| len < m) || max.is_some_and(|m| len > m)
}

/// A list's or map's [`java_display`], cut to keep the message whole (a
/// 500-entry list would push the constraint out of a 1 KiB message).
fn shown_collection(value: &Value) -> String {
    const MAX_CHARS: usize = 600;
    let text = java_display(value);
    match text.char_indices().nth(MAX_CHARS) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text,
    }
}

/// Why AWS's Base64 decoder refuses `text`, if it does, in its words.
fn base64_problem(text: &str) -> Option<String> {
    let refuse = |why: String| Some(format!("'{text}' can not be converted to a Blob: {why}"));
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return refuse(format!(
            "Base64 encoded length is expected a multiple of 4 bytes but found: {}",
            bytes.len()
        ));
    }
    let pad = bytes
        .iter()
        .rev()
        .take(2)
        .take_while(|&&b| b == b'=')
        .count();
    let digits = &bytes[..bytes.len() - pad];
    let value = |b: u8| match b {
        b'A'..=b'Z' => Some(b - b'A'),
        b'a'..=b'z' => Some(b - b'a' + 26),
        b'0'..=b'9' => Some(b - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    if let Some(at) = digits.iter().position(|&b| value(b).is_none()) {
        // The first byte refused starts a character (those before are ASCII).
        let shown = text.get(at..).and_then(|t| t.chars().next()).unwrap_or('?');
        return refuse(format!("Invalid Base64 character: '{shown}'"));
    }
    // The bits of the last digit that padding leaves over must be zero.
    let spare_bits = match pad {
        1 => 0b11,
        2 => 0b1111,
        _ => 0,
    };
    let last = digits.last().and_then(|&b| value(b)).unwrap_or(0);
    if last & spare_bits != 0 {
        return refuse("Invalid last non-pad Base64 character dectected".to_owned());
    }
    None
}

impl Validator<'_> {
    fn fail(&mut self, value: Option<String>, path: &str, constraint: impl AsRef<str>) {
        let value = match value {
            Some(v) => format!("Value '{v}' at"),
            None => "Value null at".to_owned(),
        };
        self.errors.push(format!(
            "{value} '{path}' failed to satisfy constraint: {}",
            constraint.as_ref()
        ));
    }

    fn length(
        &mut self,
        value: Option<String>,
        path: &str,
        len: u64,
        min: Option<u64>,
        max: Option<u64>,
    ) {
        if let Some(min) = min.filter(|m| len < *m) {
            self.fail(
                value.clone(),
                path,
                format!("Member must have length greater than or equal to {min}"),
            );
        }
        if let Some(max) = max.filter(|m| len > *m) {
            self.fail(
                value,
                path,
                format!("Member must have length less than or equal to {max}"),
            );
        }
    }

    fn structure_members(
        &mut self,
        shape_name: &str,
        value: &mut Value,
        path: &str,
    ) -> Result<(), AwsError> {
        let Some(Shape::Structure {
            members, required, ..
        }) = self.model.shape(shape_name)
        else {
            return Ok(());
        };
        let Value::Object(object) = value else {
            return Err(match value {
                Value::Array(_) => serialization("Start of list found where not expected"),
                _ => serialization("Expected null"),
            });
        };
        for (member, member_shape) in members {
            let member_path = member_path(path, member);
            match object.get_mut(member).filter(|v| !v.is_null()) {
                None if required.contains(member) => {
                    self.errors.push(format!(
                        "Value null at '{member_path}' failed to satisfy constraint: Member must not be null"
                    ));
                }
                None => {}
                Some(v) => self.value(member_shape, v, &member_path)?,
            }
        }
        Ok(())
    }

    fn value(&mut self, shape_name: &str, value: &mut Value, path: &str) -> Result<(), AwsError> {
        let Some(shape) = self.model.shape(shape_name) else {
            return Ok(());
        };
        match shape {
            Shape::Structure { .. } => self.structure_members(shape_name, value, path)?,
            Shape::String {
                min,
                max,
                pattern,
                enum_values,
            } => {
                let Value::String(s) = &*value else {
                    return Err(not_convertible(value, "an String"));
                };
                // AWS's order: the pattern, the length, the enum.
                let shown = Some(s.clone());
                if let Some((source, regex)) = pattern {
                    if !regex.is_match(s) {
                        self.fail(
                            shown.clone(),
                            path,
                            format!("Member must satisfy regular expression pattern: {source}"),
                        );
                    }
                }
                self.length(shown.clone(), path, s.chars().count() as u64, *min, *max);
                if let Some(values) = enum_values {
                    if !values.iter().any(|v| v == s) {
                        self.fail(
                            shown,
                            path,
                            format!(
                                "Member must satisfy enum value set: [{}]",
                                values.join(", ")
                            ),
                        );
                    }
                }
            }
            Shape::Blob { min, max } => {
                let Value::String(s) = &*value else {
                    return Err(not_convertible(value, "a Blob"));
                };
                if let Some(problem) = base64_problem(s) {
                    return Err(serialization(problem));
                }
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .map_err(|_| serialization(format!("'{s}' can not be converted to a Blob")))?;
                let n = bytes.len();
                let shown = format!("java.nio.HeapByteBuffer[pos=0 lim={n} cap={n}]");
                self.length(Some(shown), path, n as u64, *min, *max);
            }
            Shape::Integer { min, max, long } => {
                let target = if *long { "an Long" } else { "an Integer" };
                let Value::Number(number) = &*value else {
                    return Err(not_convertible(value, target));
                };
                // Fractions are floored, and an `integer` beyond 32 bits
                // clamped, as AWS's deserializer does.
                let n = match number.as_i64() {
                    Some(n) => n,
                    None => number.as_f64().unwrap_or_default().floor() as i64,
                };
                let n = if *long {
                    n
                } else {
                    n.clamp(i64::from(i32::MIN), i64::from(i32::MAX))
                };
                *value = Value::from(n);
                if let Some(min) = min.filter(|m| n < *m) {
                    self.fail(
                        Some(n.to_string()),
                        path,
                        format!("Member must have value greater than or equal to {min}"),
                    );
                }
                if let Some(max) = max.filter(|m| n > *m) {
                    self.fail(
                        Some(n.to_string()),
                        path,
                        format!("Member must have value less than or equal to {max}"),
                    );
                }
            }
            Shape::Double { min, max } => {
                let Some(n) = value.as_f64() else {
                    return Err(not_convertible(value, "an Double"));
                };
                if let Some(min) = min.filter(|m| n < *m) {
                    self.fail(
                        Some(n.to_string()),
                        path,
                        format!("Member must have value greater than or equal to {min}"),
                    );
                }
                if let Some(max) = max.filter(|m| n > *m) {
                    self.fail(
                        Some(n.to_string()),
                        path,
                        format!("Member must have value less than or equal to {max}"),
                    );
                }
            }
            Shape::Boolean => match &*value {
                Value::Bool(_) => {}
                Value::String(s) => {
                    return Err(serialization(format!(
                        "'{}' can not be converted to an Boolean",
                        s.to_uppercase()
                    )))
                }
                other => return Err(not_convertible(other, "an Boolean")),
            },
            Shape::Timestamp => {
                if !value.is_number() {
                    return Err(not_convertible(value, "milliseconds since epoch"));
                }
            }
            Shape::List { member, min, max } => {
                let len = match &*value {
                    Value::Array(items) => items.len() as u64,
                    Value::Object(_) => {
                        return Err(serialization(
                            "Start of structure or map found where not expected.",
                        ))
                    }
                    _ => return Err(serialization("Expected list or null")),
                };
                // Shown only when a constraint fails (a list can be large).
                if out_of_range(len, *min, *max) {
                    self.length(Some(shown_collection(value)), path, len, *min, *max);
                }
                if let Value::Array(items) = value {
                    for (i, item) in items.iter_mut().enumerate() {
                        let item_path = format!("{path}.{}.member", i + 1);
                        if item.is_null() {
                            self.fail(None, &item_path, "Member must not be null");
                            continue;
                        }
                        self.value(member, item, &item_path)?;
                    }
                }
            }
            Shape::Map {
                key,
                value: value_shape,
                min,
                max,
            } => {
                let entries = match &*value {
                    Value::Object(entries) => entries,
                    Value::Array(_) => {
                        return Err(serialization("Start of list found where not expected"))
                    }
                    _ => return Err(serialization("Expected map or null")),
                };
                let len = entries.len() as u64;
                // AWS states each side's whole length constraint once, for
                // the map, when any key or value breaks it.
                let (mut keys_ok, mut values_ok) = (true, true);
                for (k, v) in entries {
                    keys_ok &= self.map_side_ok(key, k);
                    match v {
                        Value::String(text) => values_ok &= self.map_side_ok(value_shape, text),
                        Value::Null => {}
                        other => return Err(not_convertible(other, "an String")),
                    }
                }
                if out_of_range(len, *min, *max) {
                    self.length(Some(shown_collection(value)), path, len, *min, *max);
                }
                for (ok, side, shape) in [
                    (keys_ok, "Map keys", key),
                    (values_ok, "Map value", value_shape),
                ] {
                    if !ok {
                        let constraint = self.map_side_constraint(shape);
                        self.fail(
                            Some(shown_collection(value)),
                            path,
                            format!("{side} must satisfy constraint: [{constraint}]"),
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether a map's key or value meets its string shape.
    fn map_side_ok(&self, shape: &str, text: &str) -> bool {
        let Some(Shape::String {
            min, max, pattern, ..
        }) = self.model.shape(shape)
        else {
            return true;
        };
        let n = text.chars().count() as u64;
        min.is_none_or(|m| n >= m)
            && max.is_none_or(|m| n <= m)
            && pattern.as_ref().is_none_or(|(_, r)| r.is_match(text))
    }

    /// A map side's constraints as AWS lists them: the maximum length, then
    /// the minimum (then the pattern).
    fn map_side_constraint(&self, shape: &str) -> String {
        let Some(Shape::String {
            min, max, pattern, ..
        }) = self.model.shape(shape)
        else {
            return String::new();
        };
        let mut parts = Vec::new();
        if let Some(max) = max {
            parts.push(format!(
                "Member must have length less than or equal to {max}"
            ));
        }
        if let Some(min) = min {
            parts.push(format!(
                "Member must have length greater than or equal to {min}"
            ));
        }
        if let Some((source, _)) = pattern {
            parts.push(format!(
                "Member must satisfy regular expression pattern: {source}"
            ));
        }
        parts.join(", ")
    }
}
