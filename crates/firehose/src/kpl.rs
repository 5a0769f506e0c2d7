//! KPL aggregated records, as Firehose de-aggregates them when it reads a
//! Kinesis stream: the magic `F3 89 9A C2`, a protobuf `AggregatedRecord`,
//! then the MD5 of the protobuf (awslabs/amazon-kinesis-producer,
//! aggregation-format.md). Each `Record` of it carries its data in field 3;
//! the partition and hash-key tables (fields 1 and 2) are not needed here.
//! A record that does not have the magic, or whose checksum or protobuf
//! does not hold, is an ordinary record, as the KCL treats it.

use md5::{Digest, Md5};

/// The four bytes an aggregated record starts with.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];

/// The data of the user records in `data`, if it is an aggregated record.
pub fn deaggregate(data: &[u8]) -> Option<Vec<&[u8]>> {
    let body = data.strip_prefix(&MAGIC)?;
    if body.len() < 16 {
        return None;
    }
    let (message, digest) = body.split_at(body.len() - 16);
    if Md5::digest(message).as_slice() != digest {
        return None;
    }
    let mut out = Vec::new();
    for field in Fields(message) {
        let (number, value) = field?;
        if let (3, Value::Bytes(record)) = (number, value) {
            let mut data = None;
            for inner in Fields(record) {
                if let (3, Value::Bytes(d)) = inner? {
                    data = Some(d);
                }
            }
            out.push(data.unwrap_or_default());
        }
    }
    Some(out)
}

enum Value<'a> {
    Varint,
    Bytes(&'a [u8]),
    Fixed,
}

/// The fields of a protobuf message: (field number, value); `None` if the
/// bytes are not a message.
struct Fields<'a>(&'a [u8]);

fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

impl<'a> Iterator for Fields<'a> {
    type Item = Option<(u64, Value<'a>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let field = (|| {
            let key = varint(&mut self.0)?;
            let value = match key & 7 {
                0 => varint(&mut self.0).map(|_| Value::Varint)?,
                1 | 5 => {
                    let n = if key & 7 == 1 { 8 } else { 4 };
                    self.0 = self.0.get(n..)?;
                    Value::Fixed
                }
                2 => {
                    let len = usize::try_from(varint(&mut self.0)?).ok()?;
                    let bytes = self.0.get(..len)?;
                    self.0 = &self.0[len..];
                    Value::Bytes(bytes)
                }
                _ => return None,
            };
            Some((key >> 3, value))
        })();
        if field.is_none() {
            // Not a message: stop after saying so.
            self.0 = &[];
        }
        Some(field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn field(out: &mut Vec<u8>, number: u64, bytes: &[u8]) {
        put_varint(out, number << 3 | 2);
        put_varint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }

    /// An aggregated record as the KPL writes it (aggregation-format.md).
    pub(crate) fn aggregate(records: &[&[u8]]) -> Vec<u8> {
        let mut message = Vec::new();
        field(&mut message, 1, b"pk");
        for data in records {
            let mut record = Vec::new();
            put_varint(&mut record, 1 << 3);
            put_varint(&mut record, 0);
            field(&mut record, 3, data);
            field(&mut message, 3, &record);
        }
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&message);
        out.extend_from_slice(&Md5::digest(&message));
        out
    }

    #[test]
    fn aggregated_records_give_their_user_records() {
        let big = vec![7u8; 300];
        let agg = aggregate(&[b"one", b"", &big]);
        assert_eq!(deaggregate(&agg).unwrap(), [&b"one"[..], b"", &big[..]]);
    }

    #[test]
    fn anything_else_is_an_ordinary_record() {
        assert!(deaggregate(b"plain").is_none());
        let mut agg = aggregate(&[b"one"]);
        let last = agg.len() - 1;
        agg[last] ^= 1;
        assert!(deaggregate(&agg).is_none(), "a bad checksum");
        let mut short = MAGIC.to_vec();
        short.extend_from_slice(&[0; 10]);
        assert!(deaggregate(&short).is_none());
        // The checksum holds but the bytes are not a message.
        let mut bad = MAGIC.to_vec();
        let message = [0x1a, 0x05, 0x01];
        bad.extend_from_slice(&message);
        bad.extend_from_slice(&Md5::digest(message));
        assert!(deaggregate(&bad).is_none());
    }
}
