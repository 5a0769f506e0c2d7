use std::fmt;
use std::str::FromStr;

/// A Kinesis sequence number.
///
/// Internally a `u128` (the storage engine packs a shard epoch and a log position
/// into it). On the wire it is rendered like AWS's: exactly 56 decimal digits,
/// a leading `4` followed by the value zero-padded to 55 digits. A fixed width
/// means that comparing the strings compares the numbers, which some client code
/// relies on, and every value matches the model's pattern `0|([1-9]\d{0,128})`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SequenceNumber(pub u128);

/// Number of decimal digits in a rendered sequence number (as AWS).
pub const SEQUENCE_NUMBER_DIGITS: usize = 56;
const PREFIX: u8 = b'4';

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseSequenceNumberError {
    /// Not a decimal number matching `0|([1-9]\d{0,128})`.
    Malformed,
    /// A well-formed number that Sluice never issues (wrong width or prefix).
    NotIssued,
}

impl std::error::Error for ParseSequenceNumberError {}

impl fmt::Display for ParseSequenceNumberError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed => f.write_str("sequence number is not a decimal number"),
            Self::NotIssued => f.write_str("sequence number was not issued by this server"),
        }
    }
}

impl SequenceNumber {
    /// The rendering as ASCII digits, without allocating: a PutRecords answer
    /// renders up to 500 of these and a GetRecords answer up to 10,000.
    pub fn to_ascii(self) -> [u8; SEQUENCE_NUMBER_DIGITS] {
        const CHUNK: u128 = 10_000_000_000_000_000_000; // 10^19 fits a u64
        let mut out = [b'0'; SEQUENCE_NUMBER_DIGITS];
        out[0] = PREFIX;
        let low = (self.0 % CHUNK) as u64;
        let rest = self.0 / CHUNK;
        let middle = (rest % CHUNK) as u64;
        let high = (rest / CHUNK) as u64; // u128::MAX / 10^38 < 4
                                          // 55 digits after the prefix: 17 + 19 + 19.
        write_digits(high, &mut out[1..18]);
        write_digits(middle, &mut out[18..37]);
        write_digits(low, &mut out[37..56]);
        out
    }
}

/// Writes `v` zero-padded into all of `out` (which is wide enough).
fn write_digits(mut v: u64, out: &mut [u8]) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ascii = self.to_ascii();
        f.write_str(std::str::from_utf8(&ascii).expect("digits are ASCII"))
    }
}

impl FromStr for SequenceNumber {
    type Err = ParseSequenceNumberError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s.as_bytes();
        let well_formed = !bytes.is_empty()
            && bytes.len() <= 129
            && bytes.iter().all(u8::is_ascii_digit)
            && (bytes == b"0" || bytes[0] != b'0');
        if !well_formed {
            return Err(ParseSequenceNumberError::Malformed);
        }
        if bytes.len() != SEQUENCE_NUMBER_DIGITS || bytes[0] != PREFIX {
            return Err(ParseSequenceNumberError::NotIssued);
        }
        s[1..]
            .parse::<u128>()
            .map(SequenceNumber)
            .map_err(|_| ParseSequenceNumberError::NotIssued)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_56_digits_and_round_trips() {
        for v in [
            0u128,
            1,
            1 << 64,
            (7u128 << 64) | (123 << 16) | 4,
            u128::MAX,
        ] {
            let s = SequenceNumber(v).to_string();
            assert_eq!(s.len(), SEQUENCE_NUMBER_DIGITS, "{s}");
            assert!(s.starts_with('4'));
            assert_eq!(s.parse::<SequenceNumber>(), Ok(SequenceNumber(v)));
        }
    }

    #[test]
    fn fast_rendering_matches_zero_padded_formatting() {
        let mut rng = 0x9e37_79b9_7f4a_7c15_u128;
        let mut values = vec![
            0,
            1,
            9,
            10,
            u128::MAX,
            u128::MAX - 1,
            10u128.pow(19),
            10u128.pow(38),
        ];
        for _ in 0..10_000 {
            rng = rng
                .wrapping_mul(0x2545_f491_4f6c_dd1d_0000_0000_0000_0001)
                .wrapping_add(0x1405_7b7e_f767_814f);
            values.push(rng >> (rng as u32 % 128));
        }
        for v in values {
            assert_eq!(SequenceNumber(v).to_string(), format!("4{v:055}"), "{v}");
        }
    }

    #[test]
    fn string_order_is_numeric_order() {
        let a = SequenceNumber(9).to_string();
        let b = SequenceNumber(10).to_string();
        let c = SequenceNumber(1 << 70).to_string();
        assert!(a < b && b < c);
    }

    #[test]
    fn rejects_what_aws_rejects_or_we_never_issued() {
        use ParseSequenceNumberError::*;
        assert_eq!("".parse::<SequenceNumber>(), Err(Malformed));
        assert_eq!("01".parse::<SequenceNumber>(), Err(Malformed));
        assert_eq!("12a".parse::<SequenceNumber>(), Err(Malformed));
        assert_eq!("0".parse::<SequenceNumber>(), Err(NotIssued));
        assert_eq!("123".parse::<SequenceNumber>(), Err(NotIssued));
        let too_big = format!("4{}", "9".repeat(55));
        assert_eq!(too_big.parse::<SequenceNumber>(), Err(NotIssued));
        let wrong_prefix = format!("5{}", "0".repeat(55));
        assert_eq!(wrong_prefix.parse::<SequenceNumber>(), Err(NotIssued));
    }
}
