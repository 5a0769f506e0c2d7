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

/// Decodes an AWS JSON 1.1 request body (an empty body counts as `{}`).
pub fn decode_json_body(body: &[u8]) -> Result<Value, AwsError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Default::default()));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(AwsError::new(
            ErrorCode::SerializationException,
            "Request body must be a JSON object",
        )),
        Err(e) => Err(AwsError::new(
            ErrorCode::SerializationException,
            format!("Malformed JSON: {e}"),
        )),
    }
}

/// Validates `input` against the input shape of `operation`.
pub fn validate_input(model: &ApiModel, operation: &str, input: &Value) -> Result<(), AwsError> {
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

fn wrong_type(path: &str, expected: &str) -> AwsError {
    AwsError::new(
        ErrorCode::SerializationException,
        format!("Unexpected value type at '{path}': expected {expected}"),
    )
}

impl Validator<'_> {
    fn fail(&mut self, value: Option<String>, path: &str, constraint: impl AsRef<str>) {
        let value = match value {
            Some(v) => format!("Value '{v}' at"),
            None => "Value at".to_owned(),
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
        value: &Value,
        path: &str,
    ) -> Result<(), AwsError> {
        let Some(Shape::Structure {
            members, required, ..
        }) = self.model.shape(shape_name)
        else {
            return Ok(());
        };
        let object = value
            .as_object()
            .ok_or_else(|| wrong_type(path, "an object"))?;
        for (member, member_shape) in members {
            let member_path = member_path(path, member);
            match object.get(member).filter(|v| !v.is_null()) {
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

    fn value(&mut self, shape_name: &str, value: &Value, path: &str) -> Result<(), AwsError> {
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
                let s = value.as_str().ok_or_else(|| wrong_type(path, "a string"))?;
                let shown = Some(s.to_owned());
                self.length(shown.clone(), path, s.chars().count() as u64, *min, *max);
                if let Some((source, regex)) = pattern {
                    if !regex.is_match(s) {
                        self.fail(
                            shown.clone(),
                            path,
                            format!("Member must satisfy regular expression pattern: {source}"),
                        );
                    }
                }
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
                let s = value
                    .as_str()
                    .ok_or_else(|| wrong_type(path, "a base64 string"))?;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .map_err(|_| {
                        AwsError::new(
                            ErrorCode::SerializationException,
                            format!("Value at '{path}' is not valid base64"),
                        )
                    })?;
                self.length(None, path, bytes.len() as u64, *min, *max);
            }
            Shape::Integer { min, max } => {
                let n = value
                    .as_i64()
                    .ok_or_else(|| wrong_type(path, "an integer"))?;
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
                let n = value.as_f64().ok_or_else(|| wrong_type(path, "a number"))?;
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
            Shape::Boolean => {
                value
                    .as_bool()
                    .ok_or_else(|| wrong_type(path, "a boolean"))?;
            }
            Shape::Timestamp => {
                value
                    .as_f64()
                    .ok_or_else(|| wrong_type(path, "a number of seconds since the epoch"))?;
            }
            Shape::List { member, min, max } => {
                let items = value.as_array().ok_or_else(|| wrong_type(path, "a list"))?;
                self.length(None, path, items.len() as u64, *min, *max);
                for (i, item) in items.iter().enumerate() {
                    let item_path = format!("{path}.{}.member", i + 1);
                    if item.is_null() {
                        self.fail(None, &item_path, "Member must not be null");
                        continue;
                    }
                    self.value(member, item, &item_path)?;
                }
            }
            Shape::Map {
                key,
                value: value_shape,
                min,
                max,
            } => {
                let entries = value.as_object().ok_or_else(|| wrong_type(path, "a map"))?;
                self.length(None, path, entries.len() as u64, *min, *max);
                for (k, v) in entries {
                    self.value(key, &Value::String(k.clone()), &format!("{path}.key"))?;
                    if !v.is_null() {
                        self.value(value_shape, v, &format!("{path}.value"))?;
                    }
                }
            }
        }
        Ok(())
    }
}
