//! Shard iterators: opaque, authenticated, expiring.
//!
//! An iterator is base64 of `version | issued_ms | stream created_ms | shard
//! index | cursor | account length | account | region length | region |
//! stream name | tag`, where the tag is the first 16 bytes of HMAC-SHA256
//! over everything before it, keyed with the server's secret. A client cannot
//! forge or alter one; one for a deleted and re-created stream of the same
//! name is refused (the creation time differs), and so is one used by another
//! account or in another region.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sluice_log::Cursor;
use sluice_meta::Scope;

const VERSION: u8 = 3;
const TAG_LEN: usize = 16;
/// AWS: an iterator expires five minutes after it was returned.
pub const ITERATOR_LIFETIME_MS: u64 = 5 * 60 * 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardIterator {
    pub issued_ms: u64,
    pub stream_created_ms: u64,
    pub shard_index: u32,
    pub cursor: Cursor,
    pub scope: Scope,
    pub stream_name: String,
}

impl ShardIterator {
    pub fn encode(&self, key: &[u8; 32]) -> String {
        let mut b = Vec::with_capacity(64 + self.stream_name.len());
        b.push(VERSION);
        b.extend_from_slice(&self.issued_ms.to_be_bytes());
        b.extend_from_slice(&self.stream_created_ms.to_be_bytes());
        b.extend_from_slice(&self.shard_index.to_be_bytes());
        b.extend_from_slice(&self.cursor.0.to_be_bytes());
        // Account ids are 12 digits and regions short; the length bytes keep
        // the format exact anyway.
        for part in [&self.scope.account, &self.scope.region] {
            let part = &part.as_bytes()[..part.len().min(255)];
            b.push(part.len() as u8);
            b.extend_from_slice(part);
        }
        b.extend_from_slice(self.stream_name.as_bytes());
        let tag = tag(key, &b);
        b.extend_from_slice(&tag);
        base64::engine::general_purpose::STANDARD.encode(b)
    }

    /// `None` if the text is not an iterator this server issued, unaltered.
    pub fn decode(text: &str, key: &[u8; 32]) -> Option<Self> {
        let b = base64::engine::general_purpose::STANDARD
            .decode(text)
            .ok()?;
        let fixed = 1 + 8 + 8 + 4 + 16 + 1;
        if b.len() < fixed + TAG_LEN || b[0] != VERSION {
            return None;
        }
        let (body, given) = b.split_at(b.len() - TAG_LEN);
        let mut mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
        mac.update(body);
        mac.verify_truncated_left(given).ok()?;
        let account_end = fixed + usize::from(body[fixed - 1]);
        let region_start = account_end + 1;
        let region_end = region_start + usize::from(*body.get(account_end)?);
        let text =
            |range: std::ops::Range<usize>| String::from_utf8(body.get(range)?.to_vec()).ok();
        Some(Self {
            issued_ms: u64::from_be_bytes(body[1..9].try_into().ok()?),
            stream_created_ms: u64::from_be_bytes(body[9..17].try_into().ok()?),
            shard_index: u32::from_be_bytes(body[17..21].try_into().ok()?),
            cursor: Cursor(u128::from_be_bytes(body[21..37].try_into().ok()?)),
            scope: Scope::new(text(fixed..account_end)?, text(region_start..region_end)?),
            stream_name: text(region_end..body.len())?,
        })
    }
}

fn tag(key: &[u8; 32], body: &[u8]) -> [u8; TAG_LEN] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(body);
    let full = mac.finalize().into_bytes();
    full[..TAG_LEN].try_into().unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper_detection() {
        let key = [7u8; 32];
        let it = ShardIterator {
            issued_ms: 1_700_000_000_000,
            stream_created_ms: 1_600_000_000_000,
            shard_index: 3,
            cursor: Cursor(12345 << 64),
            scope: Scope::new("123456789012", "ap-southeast-2"),
            stream_name: "a".repeat(128),
        };
        let text = it.encode(&key);
        assert!(
            text.len() <= 512,
            "the model caps ShardIterator at 512 characters"
        );
        assert_eq!(ShardIterator::decode(&text, &key), Some(it.clone()));
        assert_eq!(ShardIterator::decode(&text, &[8u8; 32]), None);
        let mut raw = base64::engine::general_purpose::STANDARD
            .decode(&text)
            .unwrap();
        for i in 0..raw.len() {
            raw[i] ^= 1;
            let altered = base64::engine::general_purpose::STANDARD.encode(&raw);
            assert_eq!(ShardIterator::decode(&altered, &key), None, "byte {i}");
            raw[i] ^= 1;
        }
        assert_eq!(ShardIterator::decode("not base64!", &key), None);
        assert_eq!(ShardIterator::decode("", &key), None);
    }
}
