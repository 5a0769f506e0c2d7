//! S3 object keys as Firehose builds them: `<evaluated prefix><suffix>`,
//! the suffix `<stream>-<version>-<yyyy-MM-dd-HH-mm-ss>-<uuid><extension>`
//! (AWS's developer guide, "Configure Amazon S3 object name format").
//!
//! A prefix may hold `!{namespace:value}` expressions ("Custom prefixes for
//! Amazon S3 objects"): `timestamp` with a Java DateTimeFormatter pattern,
//! evaluated at the arrival time of the oldest record in the object (every
//! instance at the same instant), `firehose:random-string` (11 characters)
//! and `firehose:error-output-type` (error prefixes). An empty prefix is the
//! default `yyyy/MM/dd/HH/`; a prefix without a timestamp expression gets
//! `!{timestamp:yyyy/MM/dd/HH/}` appended, with no separator (the guide,
//! and what an emulator saw AWS do: `legacy` -> `legacy2026/07/13/14/`).
//! Times are UTC, or in the delivery stream's CustomTimeZone ([`local`]).
//!
//! CreateDeliveryStream and UpdateDestination check prefixes with
//! [`check`]; delivery (issue #16, being built) will name objects with
//! [`evaluate`] and [`suffix`].

/// Why a prefix cannot be evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrefixError {
    /// `!{` without its `}`.
    Unclosed,
    /// A namespace or value this evaluator does not know.
    Unknown(String),
    /// A timestamp pattern field Sluice does not format (`G`, `z`).
    Pattern(String),
    /// AWS: an evaluated prefix is at most 512 characters.
    TooLong,
}

impl std::fmt::Display for PrefixError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unclosed => write!(f, "an expression in the prefix is not closed with }}"),
            Self::Unknown(e) => write!(f, "the prefix expression !{{{e}}} is not supported"),
            Self::Pattern(field) => write!(
                f,
                "the timestamp pattern field {field} is not supported (y, u, M, L, d, D, E, a, H, h, K, k, m, s and S are)"
            ),
            Self::TooLong => write!(f, "the evaluated prefix is longer than 512 characters"),
        }
    }
}

impl std::error::Error for PrefixError {}

/// AWS: an evaluated prefix is at most 512 characters.
pub const PREFIX_MAX_CHARS: usize = 512;

/// The default prefix, and what a prefix without a timestamp gets.
pub const DEFAULT_TIME: &str = "yyyy/MM/dd/HH/";

/// A UTC time broken down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utc {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub millis: u32,
    /// 0 for Monday to 6 for Sunday.
    pub weekday: u32,
    /// 1 to 366.
    pub day_of_year: u32,
}

impl Utc {
    /// From milliseconds since the epoch.
    pub fn from_millis(ms: u64) -> Self {
        let days = (ms / 86_400_000) as i64;
        let in_day = ms % 86_400_000;
        let (year, month, day) = sluice_client::time::civil_date(days);
        // 1970-01-01 was a Thursday.
        let weekday = (days + 3).rem_euclid(7) as u32;
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
        const BEFORE_MONTH: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
        let day_of_year = BEFORE_MONTH[month as usize - 1] + day + u32::from(leap && month > 2);
        Self {
            year,
            month,
            day,
            hour: (in_day / 3_600_000) as u32,
            minute: (in_day / 60_000 % 60) as u32,
            second: (in_day / 1000 % 60) as u32,
            millis: (in_day % 1000) as u32,
            weekday,
            day_of_year,
        }
    }
}

/// The time `ms` shows in `zone` (UTC without one): the delivery stream's
/// CustomTimeZone, with its daylight saving time.
pub fn local(ms: u64, zone: Option<&jiff::tz::TimeZone>) -> Utc {
    let Some(zone) = zone else {
        return Utc::from_millis(ms);
    };
    let offset = jiff::Timestamp::from_millisecond(ms as i64)
        .map(|t| i64::from(zone.to_offset(t).seconds()))
        .unwrap_or(0);
    Utc::from_millis((ms as i64).saturating_add(offset * 1000).max(0) as u64)
}

/// A CustomTimeZone's zone: an IANA name (`America/New_York`), or `None`
/// for UTC (empty or `UTC`).
pub fn zone(name: Option<&str>) -> Result<Option<jiff::tz::TimeZone>, String> {
    match name.filter(|n| !n.is_empty() && *n != "UTC") {
        None => Ok(None),
        Some(n) => jiff::tz::TimeZone::get(n)
            .map(Some)
            .map_err(|_| format!("CustomTimeZone {n} is not a time zone")),
    }
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// Java's text style for a field `run` letters long: 3 or fewer short
/// (`Jan`), 4 full (`January`), 5 narrow (`J`).
fn text(name: &str, run: usize) -> String {
    match run {
        4 => name.to_owned(),
        5 => name[..1].to_owned(),
        _ => name[..3].to_owned(),
    }
}

/// Formats `at` by a Java DateTimeFormatter pattern: the numeric fields
/// (`y`, `M`, `d`, `H`, `m`, `s`, `S`), quoted literals (`'...'`, `''` for a
/// quote) and any other non-letter as itself.
pub fn format_time(pattern: &str, at: Utc) -> Result<String, PrefixError> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            if chars.get(i + 1) == Some(&'\'') {
                out.push('\'');
                i += 2;
                continue;
            }
            let end = chars[i + 1..]
                .iter()
                .position(|&q| q == '\'')
                .map_or(chars.len(), |p| i + 1 + p);
            out.extend(&chars[i + 1..end]);
            i = end + 1;
            continue;
        }
        if !c.is_ascii_alphabetic() {
            out.push(c);
            i += 1;
            continue;
        }
        let run = chars[i..].iter().take_while(|&&x| x == c).count();
        let pad = |n: i64, width: usize| format!("{n:0width$}");
        match c {
            // Java: "yy" is the two-digit year; any other count is the year
            // padded to that width.
            'y' | 'u' if run == 2 => out.push_str(&pad(at.year.rem_euclid(100), 2)),
            'y' | 'u' => out.push_str(&pad(at.year, run)),
            'M' | 'L' if run <= 2 => out.push_str(&pad(i64::from(at.month), run)),
            'M' | 'L' if run <= 5 => out.push_str(&text(MONTHS[at.month as usize - 1], run)),
            'd' if run <= 2 => out.push_str(&pad(i64::from(at.day), run)),
            'D' if run <= 3 => out.push_str(&pad(i64::from(at.day_of_year), run)),
            'E' if run <= 5 => out.push_str(&text(DAYS[at.weekday as usize], run)),
            'a' if run == 1 => out.push_str(if at.hour < 12 { "AM" } else { "PM" }),
            'h' if run <= 2 => out.push_str(&pad(i64::from((at.hour + 11) % 12 + 1), run)),
            'K' if run <= 2 => out.push_str(&pad(i64::from(at.hour % 12), run)),
            'k' if run <= 2 => out.push_str(&pad(
                i64::from(if at.hour == 0 { 24 } else { at.hour }),
                run,
            )),
            'H' if run <= 2 => out.push_str(&pad(i64::from(at.hour), run)),
            'm' if run <= 2 => out.push_str(&pad(i64::from(at.minute), run)),
            's' if run <= 2 => out.push_str(&pad(i64::from(at.second), run)),
            // Fractions of a second: the leading digits of the millisecond.
            'S' => {
                let digits = format!("{:03}000000", at.millis);
                out.push_str(&digits[..run.min(9)]);
            }
            _ => return Err(PrefixError::Pattern(chars[i..i + run].iter().collect())),
        }
        i += run;
    }
    Ok(out)
}

/// Evaluates a prefix at `at` (the oldest record's arrival). `error_type`
/// is the error output type for an error prefix; `random` gives the
/// 11-character random strings.
pub fn evaluate(
    prefix: Option<&str>,
    at: Utc,
    error_type: Option<&str>,
    random: &mut dyn FnMut() -> String,
) -> Result<String, PrefixError> {
    evaluate_with(prefix, at, error_type, random, true)
}

/// [`evaluate`], appending the default time to a prefix without a
/// timestamp expression only if `append_time` (a dynamically partitioned
/// prefix is its keys only).
pub fn evaluate_with(
    prefix: Option<&str>,
    at: Utc,
    error_type: Option<&str>,
    random: &mut dyn FnMut() -> String,
    append_time: bool,
) -> Result<String, PrefixError> {
    let prefix = prefix.unwrap_or_default();
    let mut out = String::new();
    let mut rest = prefix;
    let mut timestamped = false;
    while let Some(start) = rest.find("!{") {
        out.push_str(&rest[..start]);
        let inner = &rest[start + 2..];
        let end = inner.find('}').ok_or(PrefixError::Unclosed)?;
        let expression = &inner[..end];
        match expression.split_once(':') {
            Some(("timestamp", pattern)) => {
                timestamped = true;
                out.push_str(&format_time(pattern, at)?);
            }
            Some(("firehose", "random-string")) => out.push_str(&random()),
            Some(("firehose", "error-output-type")) if error_type.is_some() => {
                out.push_str(error_type.unwrap_or_default());
            }
            _ => return Err(PrefixError::Unknown(expression.to_owned())),
        }
        rest = &inner[end + 1..];
    }
    out.push_str(rest);
    if !timestamped && error_type.is_none() && append_time {
        out.push_str(&format_time(DEFAULT_TIME, at)?);
    }
    if out.chars().count() > PREFIX_MAX_CHARS {
        return Err(PrefixError::TooLong);
    }
    Ok(out)
}

/// Checks a prefix when a delivery stream is configured, as AWS does:
/// every expression known and well formed (the partition keys only with
/// dynamic partitioning), `!{firehose:error-output-type}` only in an error
/// prefix.
pub fn check(prefix: Option<&str>, error_prefix: bool, dynamic: bool) -> Result<(), PrefixError> {
    let mut rest = prefix.unwrap_or_default();
    let mut plain = String::new();
    while let Some(start) = rest.find("!{") {
        plain.push_str(&rest[..start]);
        let inner = &rest[start + 2..];
        let end = inner.find('}').ok_or(PrefixError::Unclosed)?;
        let expression = &inner[..end];
        match expression.split_once(':') {
            Some(("partitionKeyFromQuery" | "partitionKeyFromLambda", key))
                if dynamic && !key.is_empty() => {}
            _ => plain.push_str(&rest[start..start + 2 + end + 1]),
        }
        rest = &inner[end + 1..];
    }
    plain.push_str(rest);
    let error_type = error_prefix.then_some("processing-failed");
    evaluate(Some(&plain), Utc::from_millis(0), error_type, &mut || {
        "r".repeat(11)
    })
    .map(drop)
}

/// The object name after the prefix: `<stream>-<version>-<yyyy-MM-dd-HH-mm-ss>-<uuid><extension>`.
pub fn suffix(stream: &str, version: u64, at: Utc, uuid: &str, extension: &str) -> String {
    format!(
        "{stream}-{version}-{:04}-{:02}-{:02}-{:02}-{:02}-{:02}-{uuid}{extension}",
        at.year, at.month, at.day, at.hour, at.minute, at.second
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2018-03-04T05:06:07.089Z.
    const AT_MS: u64 = 1_520_139_967_089;

    fn at() -> Utc {
        Utc::from_millis(AT_MS)
    }

    fn no_random() -> String {
        unreachable!("no random string asked for")
    }

    #[test]
    fn civil_dates() {
        assert_eq!(
            at(),
            Utc {
                year: 2018,
                month: 3,
                day: 4,
                hour: 5,
                minute: 6,
                second: 7,
                millis: 89,
                weekday: 6,
                day_of_year: 63
            }
        );
        let leap = Utc::from_millis(951_782_400_000); // 2000-02-29T00:00:00Z
        assert_eq!((leap.year, leap.month, leap.day), (2000, 2, 29));
        assert_eq!((leap.weekday, leap.day_of_year), (1, 60));
        let last = Utc::from_millis(1_735_603_200_000); // 2024-12-31T00:00:00Z
        assert_eq!((last.weekday, last.day_of_year), (1, 366));
        let epoch = Utc::from_millis(0);
        assert_eq!((epoch.weekday, epoch.day_of_year), (3, 1));
        assert_eq!(
            (epoch.year, epoch.month, epoch.day, epoch.hour),
            (1970, 1, 1, 0)
        );
        let end_of_year = Utc::from_millis(1_704_067_199_999); // 2023-12-31T23:59:59.999Z
        assert_eq!(
            (
                end_of_year.year,
                end_of_year.month,
                end_of_year.day,
                end_of_year.second
            ),
            (2023, 12, 31, 59)
        );
    }

    #[test]
    fn java_patterns() {
        // The guide's example: in 2018, !{timestamp:yyyy} is 2018.
        assert_eq!(format_time("yyyy", at()).unwrap(), "2018");
        assert_eq!(
            format_time("yyyy/MM/dd/HH/", at()).unwrap(),
            "2018/03/04/05/"
        );
        assert_eq!(
            format_time("yy-M-d H:m:s.SSS", at()).unwrap(),
            "18-3-4 5:6:7.089"
        );
        // Quoted literals, as users write them (yyyy'-'MM'-'dd).
        assert_eq!(format_time("yyyy'-'MM'-'dd", at()).unwrap(), "2018-03-04");
        assert_eq!(format_time("'year='yyyy''", at()).unwrap(), "year=2018'");
        // Text fields in Java's English forms.
        assert_eq!(
            format_time("EEE, d MMM yyyy", at()).unwrap(),
            "Sun, 4 Mar 2018"
        );
        assert_eq!(
            format_time("EEEE MMMM LLLLL D", at()).unwrap(),
            "Sunday March M 63"
        );
        assert_eq!(format_time("hh:mm a K k", at()).unwrap(), "05:06 AM 5 5");
        assert_eq!(
            format_time("G", at()),
            Err(PrefixError::Pattern("G".into()))
        );
    }

    #[test]
    fn custom_time_zones_follow_daylight_saving_time() {
        let new_york = zone(Some("America/New_York")).unwrap();
        let winter = local(AT_MS, new_york.as_ref());
        assert_eq!((winter.day, winter.hour, winter.minute), (4, 0, 6));
        let summer = local(1_530_705_600_000, new_york.as_ref()); // 2018-07-04T12:00Z
        assert_eq!((summer.day, summer.hour), (4, 8));
        let kolkata = zone(Some("Asia/Kolkata")).unwrap();
        let k = local(AT_MS, kolkata.as_ref());
        assert_eq!((k.hour, k.minute), (10, 36));
        assert_eq!(zone(Some("UTC")).unwrap(), None);
        assert_eq!(zone(Some("")).unwrap(), None);
        assert!(zone(Some("Mars/Olympus")).is_err());
        assert_eq!(local(AT_MS, None), at());
    }

    #[test]
    fn prefixes_as_the_guide_evaluates_them() {
        let mut none = no_random;
        // The default, and a prefix without a timestamp (appended as is).
        assert_eq!(
            evaluate(None, at(), None, &mut none).unwrap(),
            "2018/03/04/05/"
        );
        assert_eq!(
            evaluate(Some(""), at(), None, &mut none).unwrap(),
            "2018/03/04/05/"
        );
        assert_eq!(
            evaluate(Some("legacy"), at(), None, &mut none).unwrap(),
            "legacy2018/03/04/05/"
        );
        // Every timestamp at the same instant; literal text kept.
        assert_eq!(
            evaluate(
                Some("dt=!{timestamp:yyyy'-'MM'-'dd}/h=!{timestamp:HH}/"),
                at(),
                None,
                &mut none
            )
            .unwrap(),
            "dt=2018-03-04/h=05/"
        );
        let mut n = 0;
        let mut random = || {
            n += 1;
            format!("r{n:010}")
        };
        assert_eq!(
            evaluate(
                Some("a/!{firehose:random-string}/!{timestamp:yyyy}/"),
                at(),
                None,
                &mut random
            )
            .unwrap(),
            "a/r0000000001/2018/"
        );
        // Error prefixes name the error; no time is appended to them.
        assert_eq!(
            evaluate(
                Some("err/!{firehose:error-output-type}/"),
                at(),
                Some("processing-failed"),
                &mut none
            )
            .unwrap(),
            "err/processing-failed/"
        );
        assert_eq!(
            evaluate(Some("!{firehose:error-output-type}"), at(), None, &mut none),
            Err(PrefixError::Unknown("firehose:error-output-type".into()))
        );
        assert_eq!(
            evaluate(Some("a/!{timestamp:yyyy"), at(), None, &mut none),
            Err(PrefixError::Unclosed)
        );
        assert_eq!(
            evaluate(Some("!{partitionKeyFromQuery:id}"), at(), None, &mut none),
            Err(PrefixError::Unknown("partitionKeyFromQuery:id".into()))
        );
        let long = "x".repeat(PREFIX_MAX_CHARS);
        assert_eq!(
            evaluate(Some(&long), at(), None, &mut none),
            Err(PrefixError::TooLong)
        );
    }

    #[test]
    fn prefixes_are_checked_when_configured() {
        assert_eq!(check(Some("logs/!{timestamp:yyyy}/"), false, false), Ok(()));
        assert_eq!(
            check(Some("!{firehose:error-output-type}/"), false, false),
            Err(PrefixError::Unknown("firehose:error-output-type".into()))
        );
        assert_eq!(
            check(Some("e/!{firehose:error-output-type}/"), true, false),
            Ok(())
        );
        assert_eq!(
            check(Some("k=!{partitionKeyFromQuery:id}/"), false, false),
            Err(PrefixError::Unknown("partitionKeyFromQuery:id".into()))
        );
        assert_eq!(
            check(Some("k=!{partitionKeyFromQuery:id}/"), false, true),
            Ok(())
        );
        assert_eq!(
            check(Some("!{timestamp:GG}"), false, false),
            Err(PrefixError::Pattern("GG".into()))
        );
        assert_eq!(check(None, false, false), Ok(()));
    }

    #[test]
    fn object_names() {
        assert_eq!(
            suffix(
                "orders",
                3,
                at(),
                "0f8fad5b-d9cb-469f-a165-70867728950e",
                ".gz"
            ),
            "orders-3-2018-03-04-05-06-07-0f8fad5b-d9cb-469f-a165-70867728950e.gz"
        );
    }
}
