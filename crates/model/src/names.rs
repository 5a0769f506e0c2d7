//! Names and keys, validated when made: a value of these types is well
//! formed (AWS's patterns and bounds), so code that holds one need not check
//! it again. The one ARN parser lives here too.

use std::fmt;

/// Why a name or key was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// What was being parsed ("stream name", "shard id", …).
    pub what: &'static str,
    pub text: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.what, self.text)
    }
}

impl std::error::Error for Invalid {}

fn invalid(what: &'static str, text: &str) -> Invalid {
    Invalid {
        what,
        text: text.to_owned(),
    }
}

/// A stream's name: 1 to 128 of `[a-zA-Z0-9_.-]` (AWS's StreamName).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamName(String);

impl StreamName {
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        let ok = (1..=128).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if ok {
            Ok(Self(text.to_owned()))
        } else {
            Err(invalid("stream name", text))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An AWS account id: twelve digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountId(String);

impl AccountId {
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        if text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(text.to_owned()))
        } else {
            Err(invalid("account id", text))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A shard's id, `shardId-` and twelve digits: its index in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardId(pub u32);

impl ShardId {
    /// As AWS reads a shard id: the digits after the first `-` (up to a
    /// second one), or the whole text if it has none, any number of them
    /// (leading zeros too) up to 2^31 - 1. So `shardId-000000000007`,
    /// `shardId-7`, `7` and `shard-7` all name shard 7 (kinesalite's
    /// `resolveShardId`, whose tests ran against AWS).
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        let digits = match text.split('-').nth(1) {
            Some(part) if !part.is_empty() => part,
            _ => text,
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("shard id", text));
        }
        let significant = digits.trim_start_matches('0');
        if significant.len() > 10 {
            return Err(invalid("shard id", text));
        }
        significant
            .parse::<u32>()
            .ok()
            .or(significant.is_empty().then_some(0))
            .filter(|&n| n <= i32::MAX as u32)
            .map(Self)
            .ok_or_else(|| invalid("shard id", text))
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shardId-{:012}", self.0)
    }
}

/// A hash key: a decimal number in [0, 2^128 - 1].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HashKey(pub u128);

impl HashKey {
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("hash key", text));
        }
        text.parse::<u128>()
            .map(Self)
            .map_err(|_| invalid("hash key", text))
    }
}

impl fmt::Display for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A Kinesis ARN: a stream's, or a registered consumer's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arn {
    /// `arn:aws:kinesis:REGION:ACCOUNT:stream/NAME`
    Stream {
        region: String,
        account: String,
        stream: String,
    },
    /// `arn:aws:kinesis:REGION:ACCOUNT:stream/NAME/consumer/CONSUMER:SECONDS`,
    /// SECONDS being when the consumer was registered.
    Consumer {
        region: String,
        account: String,
        stream: String,
        consumer: String,
        created_s: u64,
    },
}

impl Arn {
    /// The one ARN parser: any `aws` partition (`aws`, `aws-cn`, …).
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        let bad = || invalid("ARN", text);
        let mut parts = text.splitn(6, ':');
        let (
            Some("arn"),
            Some(partition),
            Some("kinesis"),
            Some(region),
            Some(account),
            Some(rest),
        ) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        )
        else {
            return Err(bad());
        };
        if !partition.starts_with("aws") {
            return Err(bad());
        }
        let account = AccountId::parse(account).map_err(|_| bad())?.0;
        let resource = rest.strip_prefix("stream/").ok_or_else(bad)?;
        let region = region.to_owned();
        match resource.split_once("/consumer/") {
            None => Ok(Self::Stream {
                region,
                account,
                stream: StreamName::parse(resource).map_err(|_| bad())?.0,
            }),
            Some((stream, consumer)) => {
                let (consumer, seconds) = consumer.rsplit_once(':').ok_or_else(bad)?;
                if consumer.is_empty() || consumer.contains('/') {
                    return Err(bad());
                }
                Ok(Self::Consumer {
                    region,
                    account,
                    stream: StreamName::parse(stream).map_err(|_| bad())?.0,
                    consumer: consumer.to_owned(),
                    created_s: seconds.parse().map_err(|_| bad())?,
                })
            }
        }
    }

    pub fn stream(region: &str, account: &str, stream: &str) -> Self {
        Self::Stream {
            region: region.to_owned(),
            account: account.to_owned(),
            stream: stream.to_owned(),
        }
    }

    pub fn region(&self) -> &str {
        match self {
            Self::Stream { region, .. } | Self::Consumer { region, .. } => region,
        }
    }

    pub fn account(&self) -> &str {
        match self {
            Self::Stream { account, .. } | Self::Consumer { account, .. } => account,
        }
    }

    /// The stream it names (a consumer's stream, for a consumer's ARN).
    pub fn stream_name(&self) -> &str {
        match self {
            Self::Stream { stream, .. } | Self::Consumer { stream, .. } => stream,
        }
    }
}

/// A region name as AWS spells them (`us-east-1`, `cn-north-1`,
/// `us-gov-west-1`), or a short lowercase name a local setup may use
/// (`local`): lowercase letters, digits and inner hyphens, at most 32
/// characters. Anything else cannot be part of an ARN.
pub fn is_region(region: &str) -> bool {
    (1..=32).contains(&region.len())
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !region.starts_with('-')
        && !region.ends_with('-')
}

/// The ARN partition of a region: `aws-cn` for China, `aws-us-gov` for
/// GovCloud, `aws-iso` and `aws-iso-b` for the isolated regions, `aws` for
/// the rest (AWS's partitions.json).
pub fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else if region.starts_with("us-isob-") {
        "aws-iso-b"
    } else if region.starts_with("us-iso-") {
        "aws-iso"
    } else {
        "aws"
    }
}

impl fmt::Display for Arn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stream {
                region,
                account,
                stream,
            } => write!(
                f,
                "arn:{}:kinesis:{region}:{account}:stream/{stream}",
                partition(region)
            ),
            Self::Consumer {
                region,
                account,
                stream,
                consumer,
                created_s,
            } => write!(
                f,
                "arn:{}:kinesis:{region}:{account}:stream/{stream}/consumer/{consumer}:{created_s}",
                partition(region)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_parse_and_print_back() {
        for text in [
            "arn:aws:kinesis:us-east-1:000000000000:stream/s",
            "arn:aws:kinesis:eu-west-1:123456789012:stream/a.b-c_d/consumer/app:1700000000",
        ] {
            assert_eq!(Arn::parse(text).unwrap().to_string(), text);
        }
        let arn = Arn::parse("arn:aws-cn:kinesis:cn-north-1:123456789012:stream/t").unwrap();
        assert_eq!(arn.stream_name(), "t");
        assert_eq!(arn.account(), "123456789012");
        assert_eq!(arn.region(), "cn-north-1");
        let consumer =
            Arn::parse("arn:aws:kinesis:us-east-1:000000000000:stream/s/consumer/c:5").unwrap();
        assert!(matches!(consumer, Arn::Consumer { created_s: 5, .. }));
        // As the old prefix check did: leading zeros in the seconds, and an
        // empty region (a server configured without one).
        let zeros =
            Arn::parse("arn:aws:kinesis:us-east-1:000000000000:stream/s/consumer/c:007").unwrap();
        assert!(matches!(zeros, Arn::Consumer { created_s: 7, .. }));
        assert_eq!(
            Arn::parse("arn:aws:kinesis::000000000000:stream/s")
                .unwrap()
                .region(),
            ""
        );
        assert_eq!(consumer.stream_name(), "s");
        for bad in [
            "",
            "arn:aws:kinesis:us-east-1:000000000000:stream/",
            "arn:aws:kinesis:us-east-1:12:stream/s",
            "arn:aws:sqs:us-east-1:000000000000:stream/s",
            "arn:aws:kinesis:us-east-1:000000000000:table/s",
            "arn:aws:kinesis:us-east-1:000000000000:stream/s/consumer/c",
            "arn:aws:kinesis:us-east-1:000000000000:stream/s/consumer/c:x",
            "arn:aws:kinesis:us-east-1:000000000000:stream/s t",
            "nope:aws:kinesis:us-east-1:000000000000:stream/s",
        ] {
            assert!(Arn::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_and_keys_are_checked_when_made() {
        // What AWS resolves, and what not (kinesalite's tests of
        // resolveShardId, recorded against AWS).
        for (good, n) in [
            ("shardId-000000000007", 7),
            ("shardId-7", 7),
            ("7", 7),
            ("shard-0", 0),
            ("anything-0", 0),
            ("a-00002147483647", 2_147_483_647),
            ("-00002147483647", 2_147_483_647),
            ("2147483647", 2_147_483_647),
            ("shardId-1-2", 1),
            ("000", 0),
        ] {
            assert_eq!(ShardId::parse(good), Ok(ShardId(n)), "{good:?}");
        }
        assert_eq!(ShardId(7).to_string(), "shardId-000000000007");
        for bad in [
            "",
            "shardId-",
            "shardId-x",
            "shardId-00000000000a",
            "ABKLFD8",
            "2.14E4",
            "2147483648",
            "shardId-002147483648",
            "shardId-9999999999999",
            "99999999999",
            "-",
        ] {
            assert!(ShardId::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            HashKey::parse("340282366920938463463374607431768211455"),
            Ok(HashKey(u128::MAX))
        );
        for bad in [
            "",
            "-1",
            "+1",
            "1e3",
            "340282366920938463463374607431768211456",
        ] {
            assert!(HashKey::parse(bad).is_err(), "{bad:?}");
        }
        assert!(StreamName::parse("a.b-c_D9").is_ok());
        for bad in ["", "a b", "a/b", &"x".repeat(129)] {
            assert!(StreamName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(AccountId::parse("000000000000").is_ok());
        for bad in ["", "00000000000", "0000000000000", "00000000000a"] {
            assert!(AccountId::parse(bad).is_err(), "{bad:?}");
        }
    }
}
