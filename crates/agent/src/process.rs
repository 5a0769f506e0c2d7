//! `dataProcessingOptions`: the Kinesis Agent's converters, applied in
//! order to each record (which still ends in its newline), each to the
//! previous one's output. A converter that cannot parse a record drops it
//! (LOGTOJSON); one that fails otherwise sends the raw record instead, as
//! the agent does. JSON comes out as Jackson writes it (keys in order,
//! control characters as `\u00XX` in upper case, PRETTYPRINT's layout),
//! then a newline.

use regex::Regex;
use serde_json::Value;

#[derive(Debug)]
pub enum Converter {
    SingleLine,
    CsvToJson {
        names: Vec<String>,
        delimiter: Regex,
        pretty: bool,
    },
    LogToJson(LogParser),
    AddMetadata {
        metadata: Value,
        timestamp: bool,
        pretty: bool,
    },
    AddBrackets,
}

#[derive(Debug)]
pub struct LogParser {
    pattern: Regex,
    names: Vec<String>,
    /// Apache formats: a field that is `-` is null.
    dash_is_null: bool,
    pretty: bool,
}

/// What a chain makes of a record.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Data(Vec<u8>),
    /// Dropped (a log line that does not parse).
    Skip,
    /// A converter failed: the raw record goes (and why).
    Raw(String),
}

#[derive(Debug, Default)]
pub struct Chain(Vec<Converter>);

impl Chain {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn parse(options: &[Value]) -> anyhow::Result<Self> {
        options
            .iter()
            .map(converter)
            .collect::<anyhow::Result<Vec<_>>>()
            .map(Self)
    }

    /// Converts `input`; `now_ms` is the time for ADDMETADATA's `ts`.
    pub fn convert(&self, input: &[u8], now_ms: u64) -> Outcome {
        let mut data = input.to_vec();
        for c in &self.0 {
            match c.convert(&data, now_ms) {
                Ok(Some(out)) => data = out,
                Ok(None) => return Outcome::Skip,
                Err(why) => return Outcome::Raw(why),
            }
        }
        Outcome::Data(data)
    }
}

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

fn strip_newline(s: &str) -> &str {
    s.strip_suffix('\n').unwrap_or(s)
}

impl Converter {
    fn convert(&self, data: &[u8], now_ms: u64) -> Result<Option<Vec<u8>>, String> {
        match self {
            Self::SingleLine => {
                let s = text(data);
                let mut out: String = s.split('\n').map(java_trim).collect();
                out.push('\n');
                Ok(Some(out.into_bytes()))
            }
            Self::CsvToJson {
                names,
                delimiter,
                pretty,
            } => {
                let s = text(data);
                let columns = java_split(delimiter, strip_newline(&s));
                let mut map = serde_json::Map::new();
                for (i, name) in names.iter().enumerate() {
                    let v = columns
                        .get(i)
                        .map_or(Value::Null, |c| Value::String((*c).to_owned()));
                    map.insert(name.clone(), v);
                }
                Ok(Some(json_line(&Value::Object(map), *pretty)))
            }
            Self::LogToJson(parser) => {
                let s = text(data);
                Ok(parser
                    .parse(strip_newline(&s))
                    .map(|m| json_line(&Value::Object(m), parser.pretty)))
            }
            Self::AddMetadata {
                metadata,
                timestamp,
                pretty,
            } => {
                let s = text(data);
                let mut map = serde_json::Map::new();
                if *timestamp {
                    map.insert(
                        "ts".into(),
                        Value::String(sluice_client::time::utc_millis(now_ms)),
                    );
                }
                map.insert("metadata".into(), metadata.clone());
                map.insert("data".into(), Value::String(strip_newline(&s).to_owned()));
                Ok(Some(json_line(&Value::Object(map), *pretty)))
            }
            Self::AddBrackets => {
                let mut out = b"{".to_vec();
                out.extend_from_slice(text(data).as_bytes());
                out.push(b'}');
                Ok(Some(out))
            }
        }
    }
}

impl LogParser {
    fn parse(&self, line: &str) -> Option<serde_json::Map<String, Value>> {
        let caps = self.pattern.captures(line)?;
        if caps.len() - 1 != self.names.len() {
            return None;
        }
        let mut map = serde_json::Map::new();
        for (i, name) in self.names.iter().enumerate() {
            let v = match caps.get(i + 1).map(|m| m.as_str()) {
                None => Value::Null,
                Some("-") if self.dash_is_null => Value::Null,
                Some(v) => Value::String(v.to_owned()),
            };
            map.insert(name.clone(), v);
        }
        Some(map)
    }
}

fn converter(option: &Value) -> anyhow::Result<Converter> {
    let name = option
        .get("optionName")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow::anyhow!("Required configuration value missing: optionName"))?;
    let pretty = match option.get("jsonFormat").and_then(Value::as_str) {
        None | Some("COMPACT") => false,
        Some("PRETTYPRINT") => true,
        Some(other) => anyhow::bail!("jsonFormat is COMPACT or PRETTYPRINT, not {other:?}"),
    };
    let names = |key: &str| -> anyhow::Result<Option<Vec<String>>> {
        match option.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => Ok(Some(
                items
                    .iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                    .collect(),
            )),
            Some(_) => anyhow::bail!("Configuration value is not a list: {key}"),
        }
    };
    Ok(match name {
        "SINGLELINE" => Converter::SingleLine,
        "ADDBRACKETS" => Converter::AddBrackets,
        "CSVTOJSON" => {
            let names = names("customFieldNames")?
                .ok_or_else(|| anyhow::anyhow!("Required list missing: customFieldNames"))?;
            let delimiter = option.get("delimiter").and_then(Value::as_str).unwrap_or(",");
            let delimiter =
                Regex::new(&java_regex(delimiter)).map_err(|e| anyhow::anyhow!("delimiter {delimiter:?}: {e}"))?;
            Converter::CsvToJson { names, delimiter, pretty }
        }
        "LOGTOJSON" => Converter::LogToJson(log_parser(option, names("customFieldNames")?, pretty)?),
        "ADDMETADATA" => {
            let timestamp = match option.get("timestamp") {
                None | Some(Value::Null) => false,
                Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
                Some(_) => anyhow::bail!("ADDMETADATA's timestamp is a string (\"true\"), as the agent reads it"),
            };
            if option.get("logFormat").is_some() {
                anyhow::bail!("ADDMETADATA with a logFormat is not supported; use LOGTOJSON before ADDMETADATA");
            }
            Converter::AddMetadata {
                metadata: option.get("metadata").cloned().unwrap_or(Value::Null),
                timestamp,
                pretty,
            }
        }
        "ADDEC2METADATA" => anyhow::bail!("ADDEC2METADATA needs EC2's instance metadata, which is not here"),
        other => anyhow::bail!(
            "Value({other}) is not legally accepted by key: optionName. Legal values are ADDMETADATA,SINGLELINE,CSVTOJSON,LOGTOJSON,ADDBRACKETS"
        ),
    })
}

/// The built-in log formats: (pattern, field names, `-` is null).
fn log_format(name: &str) -> Option<(String, &'static [&'static str], bool)> {
    const MONTH: &str = r"\b(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|Jun(?:e)?|Jul(?:y)?|Aug(?:ust)?|Sep(?:tember)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\b";
    const MONTHDAY: &str = r"(?:(?:0[1-9])|(?:[12][0-9])|(?:3[01])|[1-9])";
    const TIME: &str =
        r"(?:(?:2[0123]|[01]?[0-9]):(?:[0-5][0-9]):(?:(?:[0-5]?[0-9]|60)(?:[:\.,][0-9]+)?))";
    const IPORHOST: &str = r"(?:(?:[\w\-]+)(?:\.(?:[\w\-]+))*(?:\.?|\b)|(?:[\d\.]+))";
    const USER: &str = r"(?:[a-zA-Z0-9._-]+)";
    const INT: &str = r"(?:[+-]?(?:[0-9]+))";
    const PROG: &str = r"([\w\._/%-]+)";
    const FACILITY: &str = r"(?:<(?:[0-9]+).(?:[0-9]+)> )?";
    let common = format!(
        r#"^({IPORHOST}) ({USER}) ({USER}) \[((?:{MONTHDAY}/{MONTH}/(?:[1-9]\d*):{TIME}\s{INT}))\] "([^"]+)" ({INT}|\-) ({INT}|\-)"#
    );
    Some(match name {
        "COMMONAPACHELOG" => (
            format!("{common}.*"),
            &[
                "host", "ident", "authuser", "datetime", "request", "response", "bytes",
            ],
            true,
        ),
        "COMBINEDAPACHELOG" => (
            format!(r#"{common} "([^"]+)" "([^"]+)".*"#),
            &[
                "host", "ident", "authuser", "datetime", "request", "response", "bytes", "referer",
                "agent",
            ],
            true,
        ),
        "APACHEERRORLOG" => (
            format!(
                r"^\[((?:(?:Mon(?:day)?|Tue(?:sday)?|Wed(?:nesday)?|Thu(?:rsday)?|Fri(?:day)?|Sat(?:urday)?|Sun(?:day)?)\s+{MONTH}\s+{MONTHDAY}\s+{TIME}\s+(?:[1-9]\d*)))\] \[(?:(\w+):)?(\w+)\] \[pid ((?:[0-9]+))(?::tid ((?:[0-9]+)))?\] \[client ((?:{IPORHOST}(?::(?:[1-9][0-9]*))?))\] (.*)"
            ),
            &[
                "timestamp",
                "module",
                "severity",
                "processid",
                "threadid",
                "client",
                "message",
            ],
            true,
        ),
        "SYSLOG" => (
            format!(
                r"^((?:{MONTH}\s+{MONTHDAY}\s+{TIME})) {FACILITY}({USER}) {PROG}(?:\[((?:[1-9][0-9]*))\])?: (.*)"
            ),
            &["timestamp", "hostname", "program", "processid", "message"],
            false,
        ),
        "RFC3339SYSLOG" => (
            format!(
                r"^((?:\d{{4}}-\d{{2}}-\d{{2}}T\d{{2}}:\d{{2}}:\d{{2}}(?:\.\d+)?)(?:Z|(?:[-+]\d{{2}}:\d{{2}}))) {FACILITY}({USER}) {PROG}(?:\[((?:[1-9][0-9]*))\])?: (.*)"
            ),
            &["timestamp", "hostname", "program", "processid", "message"],
            false,
        ),
        _ => return None,
    })
}

fn log_parser(
    option: &Value,
    custom: Option<Vec<String>>,
    pretty: bool,
) -> anyhow::Result<LogParser> {
    let format = option
        .get("logFormat")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow::anyhow!("Required configuration value missing: logFormat"))?;
    let (builtin, fields, dash_is_null) = log_format(format).ok_or_else(|| {
        anyhow::anyhow!(
            "Value({format}) is not legally accepted by key: logFormat. Legal values are COMMONAPACHELOG,COMBINEDAPACHELOG,APACHEERRORLOG,SYSLOG,RFC3339SYSLOG"
        )
    })?;
    let (pattern, names) = match (option.get("matchPattern").and_then(Value::as_str), custom) {
        (Some(p), Some(names)) => (p.to_owned(), names),
        (Some(_), None) => {
            anyhow::bail!("customFieldNames must be specified when matchPattern is specified")
        }
        (None, Some(names)) if names.len() != fields.len() => anyhow::bail!(
            "Invalid custom field names for the selected log format: {format} has {} fields",
            fields.len()
        ),
        (None, Some(names)) => (builtin, names),
        (None, None) => (builtin, fields.iter().map(|f| (*f).to_owned()).collect()),
    };
    let whole = format!(r"\A(?:{})\z", java_regex(&pattern));
    let pattern = Regex::new(&whole).map_err(|e| anyhow::anyhow!("matchPattern: {e}"))?;
    Ok(LogParser {
        pattern,
        names,
        dash_is_null,
        pretty,
    })
}

/// A Java regex in the `regex` crate's terms: Java's `\w`, `\d`, `\s` and
/// `\b` are ASCII, and its `.` matches neither `\r` nor the other line
/// terminators.
fn java_regex(java: &str) -> String {
    let mut out = String::with_capacity(java.len() + 16);
    let mut chars = java.chars().peekable();
    let mut class = 0usize;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let Some(n) = chars.next() else {
                    out.push('\\');
                    break;
                };
                let ascii = match (n, class > 0) {
                    ('w', false) => Some("[A-Za-z0-9_]"),
                    ('d', false) => Some("[0-9]"),
                    ('s', false) => Some(r"[ \t\n\x0B\f\r]"),
                    ('W', false) => Some("[^A-Za-z0-9_]"),
                    ('D', false) => Some("[^0-9]"),
                    ('S', false) => Some(r"[^ \t\n\x0B\f\r]"),
                    ('b', false) => Some(r"(?-u:\b)"),
                    ('w', true) => Some("A-Za-z0-9_"),
                    ('d', true) => Some("0-9"),
                    ('s', true) => Some(r" \t\n\x0B\f\r"),
                    _ => None,
                };
                match ascii {
                    Some(a) => out.push_str(a),
                    None => {
                        out.push('\\');
                        out.push(n);
                    }
                }
            }
            '[' => {
                class += 1;
                out.push(c);
                // A `]` first in a class is a character.
                if chars.peek() == Some(&'^') {
                    out.push(chars.next().expect("peeked"));
                }
                if chars.peek() == Some(&']') {
                    out.push_str(r"\]");
                    chars.next();
                }
            }
            ']' if class > 0 => {
                class -= 1;
                out.push(c);
            }
            '.' if class == 0 => out.push_str(r"[^\n\r\x{85}\x{2028}\x{2029}]"),
            _ => out.push(c),
        }
    }
    out
}

/// Java's `String.trim`: characters up to U+0020 off both ends.
fn java_trim(s: &str) -> &str {
    s.trim_matches(|c: char| c <= ' ')
}

/// Java's `String.split(regex)`: trailing empty strings dropped.
fn java_split<'a>(re: &Regex, s: &'a str) -> Vec<&'a str> {
    let mut parts: Vec<&str> = re.split(s).collect();
    if parts.len() > 1
        && parts.first() == Some(&"")
        && re.find(s).is_some_and(|m| m.start() == 0 && m.end() == 0)
    {
        parts.remove(0);
    }
    while parts.len() > 1 && parts.last() == Some(&"") {
        parts.pop();
    }
    if parts.len() == 1 && parts[0].is_empty() && !s.is_empty() {
        return Vec::new();
    }
    parts
}

/// JSON as Jackson writes it, then a newline.
fn json_line(v: &Value, pretty: bool) -> Vec<u8> {
    let mut out = String::new();
    write_json(&mut out, v, pretty, 0);
    out.push('\n');
    out.into_bytes()
}

fn write_json(out: &mut String, v: &Value, pretty: bool, depth: usize) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            if items.is_empty() {
                out.push_str(if pretty { "[ ]" } else { "[]" });
                return;
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                if pretty {
                    out.push(' ');
                }
                write_json(out, item, pretty, depth);
            }
            out.push_str(if pretty { " ]" } else { "]" });
        }
        Value::Object(map) => {
            if map.is_empty() {
                out.push_str(if pretty { "{ }" } else { "{}" });
                return;
            }
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                if pretty {
                    out.push('\n');
                    out.push_str(&"  ".repeat(depth + 1));
                }
                write_string(out, k);
                out.push_str(if pretty { " : " } else { ":" });
                write_json(out, item, pretty, depth + 1);
            }
            if pretty {
                out.push('\n');
                out.push_str(&"  ".repeat(depth));
            }
            out.push('}');
        }
    }
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if c < ' ' => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(json: &str) -> Chain {
        Chain::parse(&serde_json::from_str::<Vec<Value>>(json).unwrap()).unwrap()
    }

    fn run(c: &Chain, input: &str) -> String {
        match c.convert(input.as_bytes(), 1_714_566_896_789) {
            Outcome::Data(d) => String::from_utf8(d).unwrap(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn single_line_as_the_agents_test_has_it() {
        let c = chain(r#"[{"optionName":"SINGLELINE"}]"#);
        let input = "{\n   \"a\": {\n           \"b\": 1,\n           \"c\": null,\n           \"d\": true\n    },\n   \"e\": \"f\",\n   \"g\": 2\n     }\n";
        assert_eq!(
            run(&c, input),
            "{\"a\": {\"b\": 1,\"c\": null,\"d\": true},\"e\": \"f\",\"g\": 2}\n"
        );
        assert_eq!(run(&c, "  foo bar \r\n"), "foo bar\n");
    }

    #[test]
    fn csv_to_json_as_the_agents_test_has_it() {
        let c = chain(
            r#"[{"optionName":"CSVTOJSON","customFieldNames":["column1","column2","column3","column4"]}]"#,
        );
        assert_eq!(
            run(&c, "value1, value2,valu\ne3,    value4\n"),
            "{\"column1\":\"value1\",\"column2\":\" value2\",\"column3\":\"valu\\ne3\",\"column4\":\"    value4\"}\n"
        );
        assert_eq!(
            run(&c, "value1, value2,value3\n"),
            "{\"column1\":\"value1\",\"column2\":\" value2\",\"column3\":\"value3\",\"column4\":null}\n"
        );
        let tabs = chain(
            r#"[{"optionName":"CSVTOJSON","customFieldNames":["a","b","c","d"],"delimiter":"\\t"}]"#,
        );
        assert_eq!(
            run(&tabs, "1\t2\n"),
            "{\"a\":\"1\",\"b\":\"2\",\"c\":null,\"d\":null}\n"
        );
        let four = chain(r#"[{"optionName":"CSVTOJSON","customFieldNames":["a","b","c","d"]}]"#);
        assert_eq!(
            run(&four, "1,,3,,\n"),
            "{\"a\":\"1\",\"b\":\"\",\"c\":\"3\",\"d\":null}\n"
        );
    }

    #[test]
    fn log_to_json_as_the_agents_test_has_it() {
        let c = chain(r#"[{"optionName":"LOGTOJSON","logFormat":"COMBINEDAPACHELOG"}]"#);
        assert_eq!(
            run(&c, "123.45.67.89 - - [27/Oct/2000:09:27:09 -0400] \"GET /java/javaResources.html HTTP/1.0\" 200 10450 \"-\" \"Mozilla/4.6 [en] (X11; U; OpenBSD 2.8 i386; Nav)\" \"ANY_RANDOM_DATA\"\n"),
            "{\"host\":\"123.45.67.89\",\"ident\":null,\"authuser\":null,\"datetime\":\"27/Oct/2000:09:27:09 -0400\",\"request\":\"GET /java/javaResources.html HTTP/1.0\",\"response\":\"200\",\"bytes\":\"10450\",\"referer\":null,\"agent\":\"Mozilla/4.6 [en] (X11; U; OpenBSD 2.8 i386; Nav)\"}\n"
        );
        assert_eq!(run(&c, "not a log line\n"), "Skip");
        let err = chain(r#"[{"optionName":"LOGTOJSON","logFormat":"APACHEERRORLOG"}]"#);
        assert_eq!(
            run(&err, "[Fri Sep 09 10:42:29 2011] [core:error] [pid 35708] [client 72.15.99.187] File does not exist: /x\n"),
            "{\"timestamp\":\"Fri Sep 09 10:42:29 2011\",\"module\":\"core\",\"severity\":\"error\",\"processid\":\"35708\",\"threadid\":null,\"client\":\"72.15.99.187\",\"message\":\"File does not exist: /x\"}\n"
        );
        let sys = chain(r#"[{"optionName":"LOGTOJSON","logFormat":"SYSLOG"}]"#);
        assert_eq!(
            run(&sys, "Mar 12 12:01:02 server4 snort: Ports to decode telnet on: 21 23 25 119\n"),
            "{\"timestamp\":\"Mar 12 12:01:02\",\"hostname\":\"server4\",\"program\":\"snort\",\"processid\":null,\"message\":\"Ports to decode telnet on: 21 23 25 119\"}\n"
        );
        assert!(run(&sys, "Mar 12 12:01:02 host1 rcd[308]: -\n")
            .contains("\"processid\":\"308\",\"message\":\"-\""));
        // A CRLF line does not match (Java's `.` stops at \r).
        assert_eq!(run(&sys, "Mar 12 12:01:02 server4 snort: x\r\n"), "Skip");
        let rfc = chain(r#"[{"optionName":"LOGTOJSON","logFormat":"RFC3339SYSLOG"}]"#);
        assert_eq!(
            run(&rfc, "2017-10-01T12:34:56.789+00:00 ip-10-0-0-1 sshd[1234]: Accepted publickey\n"),
            "{\"timestamp\":\"2017-10-01T12:34:56.789+00:00\",\"hostname\":\"ip-10-0-0-1\",\"program\":\"sshd\",\"processid\":\"1234\",\"message\":\"Accepted publickey\"}\n"
        );
        let custom = chain(
            r#"[{"optionName":"LOGTOJSON","logFormat":"COMMONAPACHELOG","matchPattern":"^([\\d.]+) (\\S+) (\\S+) \\[([\\w:/]+\\s[+\\-]\\d{4})\\] \"(.+?)\" (\\d{3})","customFieldNames":["column1","column2","column3","column4","column5","column6"]}]"#,
        );
        assert_eq!(
            run(&custom, "123.45.67.89 - - [27/Oct/2000:09:27:09 -0400] \"GET /java/javaResources.html HTTP/1.0\" 200\n"),
            "{\"column1\":\"123.45.67.89\",\"column2\":null,\"column3\":null,\"column4\":\"27/Oct/2000:09:27:09 -0400\",\"column5\":\"GET /java/javaResources.html HTTP/1.0\",\"column6\":\"200\"}\n"
        );
    }

    #[test]
    fn add_metadata_and_chains() {
        let c = chain(
            r#"[{"optionName":"ADDMETADATA","metadata":{"key":"value","foo":{"bar":"baz"}}}]"#,
        );
        assert_eq!(
            run(&c, "this is my raw data\n"),
            "{\"metadata\":{\"key\":\"value\",\"foo\":{\"bar\":\"baz\"}},\"data\":\"this is my raw data\"}\n"
        );
        let ts = chain(r#"[{"optionName":"ADDMETADATA","timestamp":"true"}]"#);
        assert_eq!(
            run(&ts, "x\u{1f}\n"),
            "{\"ts\":\"2024-05-01T12:34:56.789Z\",\"metadata\":null,\"data\":\"x\\u001F\"}\n"
        );
        let both = chain(
            r#"[{"optionName":"SINGLELINE"},{"optionName":"CSVTOJSON","customFieldNames":["a","b"]}]"#,
        );
        assert_eq!(run(&both, "  1, 2 \n"), "{\"a\":\"1\",\"b\":\" 2\"}\n");
        let pretty = chain(
            r#"[{"optionName":"CSVTOJSON","customFieldNames":["a","b"],"jsonFormat":"PRETTYPRINT"}]"#,
        );
        assert_eq!(
            run(&pretty, "1\n"),
            "{\n  \"a\" : \"1\",\n  \"b\" : null\n}\n"
        );
        let brackets = chain(r#"[{"optionName":"ADDBRACKETS"}]"#);
        assert_eq!(run(&brackets, "hello there!! :)"), "{hello there!! :)}");
    }

    #[test]
    fn bad_options_are_refused() {
        let bad = |json: &str| {
            Chain::parse(&serde_json::from_str::<Vec<Value>>(json).unwrap())
                .unwrap_err()
                .to_string()
        };
        assert!(bad(r#"[{"optionName":"NOPE"}]"#).contains("NOPE"));
        assert!(bad(r#"[{"optionName":"CSVTOJSON"}]"#).contains("customFieldNames"));
        assert!(bad(r#"[{"optionName":"LOGTOJSON"}]"#).contains("logFormat"));
        assert!(bad(
            r#"[{"optionName":"LOGTOJSON","logFormat":"SYSLOG","customFieldNames":["a"]}]"#
        )
        .contains("Invalid custom field names"));
        assert!(
            bad(r#"[{"optionName":"LOGTOJSON","logFormat":"SYSLOG","matchPattern":"x"}]"#)
                .contains("customFieldNames")
        );
        assert!(bad(r#"[{"optionName":"SINGLELINE","jsonFormat":"X"}]"#).contains("jsonFormat"));
        assert!(bad(r#"[{}]"#).contains("optionName"));
    }
}
