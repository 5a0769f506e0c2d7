//! The value types generated shapes are made of, beyond Rust's own: blobs
//! (base64 in AWS JSON) and timestamps (seconds since the epoch).

use base64::Engine;
use serde::de::{Deserializer, Error as _};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

use crate::error::{AwsError, ErrorCode};

/// A blob member: the bytes themselves (base64 only on the JSON wire).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Blob(pub Vec<u8>);

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Blob({} bytes)", self.0.len())
    }
}

/// Base64 text in human-readable formats (AWS JSON), a byte string in
/// binary ones (AWS CBOR, through ciborium).
impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if !d.is_human_readable() {
            return serde_bytes_buf(d).map(Blob);
        }
        let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map(Blob)
            .map_err(|_| D::Error::custom("a blob member is not valid base64"))
    }
}

/// A byte string of a binary format.
fn serde_bytes_buf<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    struct Bytes;
    impl serde::de::Visitor<'_> for Bytes {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a byte string")
        }
        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
    }
    d.deserialize_byte_buf(Bytes)
}

/// A timestamp member: seconds since the epoch, as AWS JSON carries it. In
/// AWS CBOR (a non-human-readable serde format) it is tag 1 and an integer of
/// epoch milliseconds, as the Java SDKs write and read it; a float there is
/// read as seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, PartialOrd)]
pub struct Timestamp(pub f64);

impl Timestamp {
    pub fn from_millis(ms: u64) -> Self {
        Self(ms as f64 / 1000.0)
    }

    /// Milliseconds since the epoch, rounded down; 0 for times before it
    /// (or not a number), `u64::MAX` for times past what u64 holds.
    pub fn as_millis(self) -> u64 {
        let ms = (self.0 * 1000.0).floor();
        if ms.is_nan() || ms <= 0.0 {
            0
        } else if ms >= u64::MAX as f64 {
            u64::MAX
        } else {
            ms as u64
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_f64(self.0)
        } else {
            let ms = (self.0 * 1000.0).round() as i64;
            ciborium::tag::Required::<i64, 1>(ms).serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use ciborium::value::Value;
        if d.is_human_readable() {
            return f64::deserialize(d).map(Timestamp);
        }
        let mut value = Value::deserialize(d)?;
        if let Value::Tag(1, inner) = value {
            value = *inner;
        }
        match value {
            Value::Integer(i) => Ok(Timestamp(i128::from(i) as f64 / 1000.0)),
            Value::Float(f) => Ok(Timestamp(f)),
            _ => Err(serde::de::Error::custom("a timestamp must be a number")),
        }
    }
}

/// A map of strings whose null values read as "" (AWS JSON lets a map
/// value be null; Sluice has always stored it as empty).
pub fn string_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<std::collections::BTreeMap<String, String>, D::Error> {
    let map = std::collections::BTreeMap::<String, Option<String>>::deserialize(d)?;
    Ok(map
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect())
}

/// [`string_map`] for an optional member (null or absent: none).
pub fn optional_string_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<std::collections::BTreeMap<String, String>>, D::Error> {
    let map = Option::<std::collections::BTreeMap<String, Option<String>>>::deserialize(d)?;
    Ok(map.map(|m| {
        m.into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect()
    }))
}

/// A validated request that still does not fit its type (a defect of the
/// validator, or input the model allows and the types do not).
pub fn serialization_error(e: impl std::fmt::Display) -> AwsError {
    AwsError::new(ErrorCode::SerializationException, e.to_string())
}

pub fn unknown_operation(_operation: &str) -> AwsError {
    AwsError::new(ErrorCode::UnknownOperationException, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_base64_on_the_json_wire() {
        let b = Blob(b"hello".to_vec());
        assert_eq!(serde_json::to_string(&b).unwrap(), "\"aGVsbG8=\"");
        assert_eq!(serde_json::from_str::<Blob>("\"aGVsbG8=\"").unwrap(), b);
        assert!(serde_json::from_str::<Blob>("\"***\"").is_err());
        assert!(serde_json::from_str::<Blob>("3").is_err());
    }

    #[test]
    fn blobs_are_byte_strings_in_cbor() {
        let b = Blob(b"hi".to_vec());
        let mut out = Vec::new();
        ciborium::ser::into_writer(&b, &mut out).unwrap();
        // A byte string of two bytes (major type 2), not base64 text.
        assert_eq!(out, [0x42, b'h', b'i']);
        let back: Blob = ciborium::de::from_reader(&out[..]).unwrap();
        assert_eq!(back, b);
    }

    /// What the Java SDKs write for 2023-11-14T22:13:20.500Z: tag 1, then the
    /// epoch milliseconds as the shortest integer.
    #[test]
    fn timestamps_are_tagged_milliseconds_in_cbor() {
        let t = Timestamp::from_millis(1_700_000_000_500);
        let mut out = Vec::new();
        ciborium::ser::into_writer(&t, &mut out).unwrap();
        assert_eq!(
            out,
            [0xc1, 0x1b, 0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x69, 0xf4]
        );
        let back: Timestamp = ciborium::de::from_reader(&out[..]).unwrap();
        assert_eq!(back.as_millis(), 1_700_000_000_500);
        // A tag-1 float is seconds; the epoch is one byte of integer.
        let float = [0xc1, 0xfb, 0x41, 0xd9, 0x54, 0xfc, 0x40, 0x20, 0x00, 0x00];
        let t: Timestamp = ciborium::de::from_reader(&float[..]).unwrap();
        assert_eq!(t.as_millis(), 1_700_000_000_500);
        let t: Timestamp = ciborium::de::from_reader(&[0xc1, 0x00][..]).unwrap();
        assert_eq!(t, Timestamp(0.0));
        assert!(ciborium::de::from_reader::<Timestamp, _>(&[0xc1, 0x61, b'x'][..]).is_err());
    }

    #[test]
    fn timestamps_are_seconds() {
        let t = Timestamp::from_millis(1_700_000_000_500);
        assert_eq!(serde_json::to_string(&t).unwrap(), "1700000000.5");
        assert_eq!(t.as_millis(), 1_700_000_000_500);
        assert_eq!(Timestamp(-5.0).as_millis(), 0);
        assert_eq!(Timestamp(f64::NAN).as_millis(), 0);
        assert_eq!(Timestamp(1e30).as_millis(), u64::MAX);
        assert_eq!(
            serde_json::from_str::<Timestamp>("1459799926.480")
                .unwrap()
                .as_millis(),
            1_459_799_926_480
        );
    }
}
