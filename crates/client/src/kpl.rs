//! KPL aggregated records (awslabs/amazon-kinesis-producer,
//! aggregation-format.md): the magic `F3 89 9A C2`, a protobuf
//! `AggregatedRecord`, then the 16-byte MD5 of the protobuf bytes.
//!
//! ```text
//! message AggregatedRecord {
//!   repeated string partition_key_table     = 1;
//!   repeated string explicit_hash_key_table = 2;
//!   repeated Record records                 = 3;
//! }
//! message Record {
//!   required uint64 partition_key_index     = 1;
//!   optional uint64 explicit_hash_key_index = 2;
//!   required bytes  data                    = 3;
//!   repeated Tag    tags                    = 4;
//! }
//! ```
//!
//! A record that does not have the magic, or whose checksum or protobuf does
//! not hold, is an ordinary record, as the KCL treats it.

use md5::{Digest, Md5};

/// The four bytes an aggregated record starts with.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];

/// The bytes an aggregate adds around its protobuf: magic and checksum.
const FRAME: usize = MAGIC.len() + 16;

/// One user record of an aggregated record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord<'a> {
    pub partition_key: &'a str,
    pub explicit_hash_key: Option<&'a str>,
    pub data: &'a [u8],
}

/// The user records in `data`, if it is an aggregated record.
pub fn deaggregate<'a>(data: &'a [u8]) -> Option<Vec<UserRecord<'a>>> {
    let body = data.strip_prefix(&MAGIC)?;
    if body.len() < 16 {
        return None;
    }
    let (message, digest) = body.split_at(body.len() - 16);
    if Md5::digest(message).as_slice() != digest {
        return None;
    }
    let (mut keys, mut hashes, mut records) = (Vec::new(), Vec::new(), Vec::new());
    for field in Fields(message) {
        match field? {
            (1, Value::Bytes(key)) => keys.push(std::str::from_utf8(key).ok()?),
            (2, Value::Bytes(hash)) => hashes.push(std::str::from_utf8(hash).ok()?),
            (3, Value::Bytes(record)) => records.push(record),
            _ => {}
        }
    }
    let mut out = Vec::with_capacity(records.len());
    for record in records {
        let (mut key, mut hash, mut data) = (None, None, None);
        for field in Fields(record) {
            match field? {
                (1, Value::Varint(i)) => key = Some(i),
                (2, Value::Varint(i)) => hash = Some(i),
                (3, Value::Bytes(d)) => data = Some(d),
                _ => {}
            }
        }
        let index =
            |table: &[&'a str], i: u64| usize::try_from(i).ok().and_then(|i| table.get(i).copied());
        out.push(UserRecord {
            partition_key: index(&keys, key?)?,
            explicit_hash_key: match hash {
                Some(i) => Some(index(&hashes, i)?),
                None => None,
            },
            data: data?,
        });
    }
    Some(out)
}

/// Builds one aggregated record, refusing what would make it larger than
/// its limit (the stream's record size less the outer partition key).
#[derive(Debug)]
pub struct Aggregator {
    limit: usize,
    keys: Vec<String>,
    hashes: Vec<String>,
    /// Each record's encoded `Record` message.
    records: Vec<Vec<u8>>,
    /// The protobuf's size so far.
    size: usize,
}

impl Aggregator {
    /// An empty aggregate whose bytes (magic, protobuf, checksum) stay
    /// within `limit`.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            keys: Vec::new(),
            hashes: Vec::new(),
            records: Vec::new(),
            size: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The aggregate's size as [`Aggregator::finish`] would write it.
    pub fn size(&self) -> usize {
        FRAME + self.size
    }

    /// The size the aggregate would have with this record added.
    pub fn size_with(
        &self,
        partition_key: &str,
        explicit_hash_key: Option<&str>,
        data: &[u8],
    ) -> usize {
        self.size() + self.growth(partition_key, explicit_hash_key, data.len()).0
    }

    /// Bytes added by a record, and the indexes its keys would take.
    fn growth(&self, key: &str, hash: Option<&str>, data: usize) -> (usize, usize, Option<usize>) {
        let mut added = 0;
        let key_index = self.keys.iter().position(|k| k == key).unwrap_or_else(|| {
            added += field_len(1, key.len());
            self.keys.len()
        });
        let hash_index = hash.map(|h| {
            self.hashes.iter().position(|k| k == h).unwrap_or_else(|| {
                added += field_len(2, h.len());
                self.hashes.len()
            })
        });
        let record = record_len(key_index, hash_index, data);
        (added + field_len(3, record), key_index, hash_index)
    }

    /// Adds a user record; false (and nothing added) if the aggregate would
    /// pass its limit.
    pub fn try_add(
        &mut self,
        partition_key: &str,
        explicit_hash_key: Option<&str>,
        data: &[u8],
    ) -> bool {
        let (added, key_index, hash_index) =
            self.growth(partition_key, explicit_hash_key, data.len());
        if FRAME + self.size + added > self.limit {
            return false;
        }
        if key_index == self.keys.len() {
            self.keys.push(partition_key.to_owned());
        }
        if let (Some(i), Some(h)) = (hash_index, explicit_hash_key) {
            if i == self.hashes.len() {
                self.hashes.push(h.to_owned());
            }
        }
        let mut record = Vec::with_capacity(record_len(key_index, hash_index, data.len()));
        put_varint(&mut record, 1 << 3);
        put_varint(&mut record, key_index as u64);
        if let Some(i) = hash_index {
            put_varint(&mut record, 2 << 3);
            put_varint(&mut record, i as u64);
        }
        put_bytes(&mut record, 3, data);
        self.records.push(record);
        self.size += added;
        true
    }

    /// The aggregated record's bytes.
    pub fn finish(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FRAME + self.size);
        out.extend_from_slice(&MAGIC);
        for key in &self.keys {
            put_bytes(&mut out, 1, key.as_bytes());
        }
        for hash in &self.hashes {
            put_bytes(&mut out, 2, hash.as_bytes());
        }
        for record in &self.records {
            put_bytes(&mut out, 3, record);
        }
        let digest = Md5::digest(&out[MAGIC.len()..]);
        out.extend_from_slice(&digest);
        debug_assert_eq!(out.len(), FRAME + self.size);
        out
    }
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// A length-delimited field's size (field numbers here take one byte).
fn field_len(_number: u64, len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

fn record_len(key_index: usize, hash_index: Option<usize>, data: usize) -> usize {
    1 + varint_len(key_index as u64)
        + hash_index.map_or(0, |i| 1 + varint_len(i as u64))
        + field_len(3, data)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, number: u64, bytes: &[u8]) {
    put_varint(out, number << 3 | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

enum Value<'a> {
    Varint(u64),
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
                0 => Value::Varint(varint(&mut self.0)?),
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
    use proptest::prelude::*;

    /// An aggregated record as the KPL's aggregation-format.md example lays
    /// it out, written byte by byte: two keys, one hash key, three records.
    #[test]
    fn the_documented_layout() {
        let mut a = Aggregator::new(1 << 20);
        assert!(a.try_add("a", None, b"x"));
        assert!(a.try_add("b", Some("5"), b"yz"));
        assert!(a.try_add("a", Some("5"), b""));
        let size = a.size();
        let bytes = a.finish();
        let message: &[u8] = &[
            0x0a, 1, b'a', // partition_key_table[0] = "a"
            0x0a, 1, b'b', // partition_key_table[1] = "b"
            0x12, 1, b'5', // explicit_hash_key_table[0] = "5"
            0x1a, 5, 0x08, 0, 0x1a, 1, b'x', // {pk 0, data "x"}
            0x1a, 8, 0x08, 1, 0x10, 0, 0x1a, 2, b'y', b'z', // {pk 1, ehk 0, "yz"}
            0x1a, 6, 0x08, 0, 0x10, 0, 0x1a, 0, // {pk 0, ehk 0, ""}
        ];
        let mut expected = MAGIC.to_vec();
        expected.extend_from_slice(message);
        expected.extend_from_slice(&Md5::digest(message));
        assert_eq!(bytes, expected);
        assert_eq!(size, bytes.len());
        let users = deaggregate(&bytes).unwrap();
        assert_eq!(
            users,
            [
                UserRecord {
                    partition_key: "a",
                    explicit_hash_key: None,
                    data: b"x"
                },
                UserRecord {
                    partition_key: "b",
                    explicit_hash_key: Some("5"),
                    data: b"yz"
                },
                UserRecord {
                    partition_key: "a",
                    explicit_hash_key: Some("5"),
                    data: b""
                },
            ]
        );
    }

    #[test]
    fn the_limit_holds() {
        let mut a = Aggregator::new(100);
        assert!(a.try_add("k", None, &[1; 40]));
        assert!(!a.try_add("k", None, &[1; 60]), "past the limit");
        assert_eq!(a.len(), 1);
        assert!(a.try_add("k", None, &[1; 20]));
        let size = a.size();
        assert!(size <= 100);
        assert_eq!(a.finish().len(), size);
    }

    #[test]
    fn anything_else_is_an_ordinary_record() {
        assert!(deaggregate(b"plain").is_none());
        let mut a = Aggregator::new(1 << 20);
        a.try_add("pk", None, b"one");
        let mut agg = a.finish();
        let last = agg.len() - 1;
        agg[last] ^= 1;
        assert!(deaggregate(&agg).is_none(), "a bad checksum");
        let mut short = MAGIC.to_vec();
        short.extend_from_slice(&[0; 10]);
        assert!(deaggregate(&short).is_none());
        // The checksum holds but the bytes are not a message.
        let frame = |message: &[u8]| {
            let mut bad = MAGIC.to_vec();
            bad.extend_from_slice(message);
            bad.extend_from_slice(&Md5::digest(message));
            bad
        };
        assert!(deaggregate(&frame(&[0x1a, 0x05, 0x01])).is_none());
        // A record naming a partition key the table does not have.
        assert!(deaggregate(&frame(&[0x1a, 5, 0x08, 3, 0x1a, 1, b'x'])).is_none());
    }

    proptest! {
        #[test]
        fn what_is_aggregated_comes_back(
            records in proptest::collection::vec(
                ("[a-c]{1,3}", proptest::option::of("[0-9]{1,5}"), proptest::collection::vec(any::<u8>(), 0..300)),
                1..40,
            ),
            limit in 30usize..4000,
        ) {
            let mut a = Aggregator::new(limit);
            let mut taken = Vec::new();
            for (k, h, d) in &records {
                let predicted = a.size_with(k, h.as_deref(), d);
                if a.try_add(k, h.as_deref(), d) {
                    prop_assert_eq!(a.size(), predicted);
                    taken.push((k.as_str(), h.as_deref(), &d[..]));
                } else {
                    prop_assert!(predicted > limit);
                }
            }
            let size = a.size();
            let bytes = a.finish();
            prop_assert_eq!(bytes.len(), size);
            prop_assert!(size <= limit);
            let back: Vec<_> = deaggregate(&bytes)
                .unwrap()
                .into_iter()
                .map(|u| (u.partition_key, u.explicit_hash_key, u.data))
                .collect();
            prop_assert_eq!(back, taken);
        }
    }
}
