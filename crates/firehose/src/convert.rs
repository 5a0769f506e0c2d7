//! Data format conversion: JSON records to Parquet, as Firehose does with
//! a Glue table's columns, a JSON deserializer (OpenX or Hive) and Hive's
//! Parquet serializer.
//!
//! There is no Glue here: the table that `SchemaConfiguration` names comes
//! from Sluice's configuration, `--firehose-table DATABASE.TABLE=COLUMNS`,
//! the columns as a Hive `CREATE TABLE` lists them (`id bigint, name
//! string, tags array<string>, address struct<city:string,zip:int>`).
//!
//! Types as Hive's ParquetHiveSerDe writes them: every column optional;
//! boolean; tinyint, smallint, int as INT32 (INT_8, INT_16); bigint INT64;
//! float, double; decimal(p,s) as a FIXED_LEN_BYTE_ARRAY of the fewest bytes
//! that hold p digits (DECIMAL); string, varchar(n), char(n) as UTF8 BINARY;
//! binary; date as INT32 (DATE); timestamp as INT96 (Julian day and
//! nanoseconds of the day, UTC); array as a LIST, map as a MAP, struct as a
//! group.
//!
//! A record is one or more JSON objects one after the other (`{"a":1}{"a":2}`
//! is two rows). A row that does not fit the table (not JSON, not an object,
//! a value that is not of its column's type) fails the whole record, which
//! goes to the error output as `format-conversion-failed`.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use parquet::basic::Compression;
use parquet::column::writer::ColumnWriter;
use parquet::data_type::{ByteArray, FixedLenByteArray, Int96};
use parquet::file::properties::{WriterProperties, WriterVersion};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type as Schema;
use serde_json::Value;
use sluice_aws::firehose as f;

/// A Hive column type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HiveType {
    Boolean,
    TinyInt,
    SmallInt,
    Int,
    BigInt,
    Float,
    Double,
    /// Precision and scale.
    Decimal(u8, u8),
    String,
    Varchar(u32),
    Char(u32),
    Binary,
    Date,
    Timestamp,
    Array(Box<HiveType>),
    Map(Box<HiveType>, Box<HiveType>),
    Struct(Vec<(String, HiveType)>),
}

/// A table's columns, in order.
pub type Columns = Vec<(String, HiveType)>;

/// Reads a Hive column list: `name type, name type, ...`.
pub fn parse_columns(text: &str) -> Result<Columns, String> {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
    };
    let mut columns = Vec::new();
    loop {
        let name = p.name()?;
        let ty = p.ty()?;
        if columns.iter().any(|(n, _)| *n == name) {
            return Err(format!("column {name} is listed twice"));
        }
        columns.push((name, ty));
        p.space();
        match p.next() {
            None => break,
            Some(b',') => continue,
            Some(c) => return Err(format!("expected ',' at {:?}", c as char)),
        }
    }
    Ok(columns)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn space(&mut self) {
        while self.s.get(self.i).is_some_and(u8::is_ascii_whitespace) {
            self.i += 1;
        }
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.s.get(self.i).copied();
        self.i += usize::from(c.is_some());
        c
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        self.space();
        match self.next() {
            Some(got) if got == c => Ok(()),
            got => Err(format!(
                "expected {:?}, found {}",
                c as char,
                got.map_or("the end".to_owned(), |g| format!("{:?}", g as char))
            )),
        }
    }

    fn word(&mut self) -> String {
        self.space();
        let start = self.i;
        while self
            .s
            .get(self.i)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
        {
            self.i += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.i]).to_ascii_lowercase()
    }

    /// A column or field name (Hive keeps them lowercase).
    fn name(&mut self) -> Result<String, String> {
        let name = self.word();
        if name.is_empty() {
            return Err("expected a column name (letters, digits and _)".into());
        }
        Ok(name)
    }

    fn number(&mut self) -> Result<u32, String> {
        let w = self.word();
        w.parse()
            .map_err(|_| format!("expected a number, found {w:?}"))
    }

    fn ty(&mut self) -> Result<HiveType, String> {
        let word = self.word();
        Ok(match word.as_str() {
            "boolean" => HiveType::Boolean,
            "tinyint" => HiveType::TinyInt,
            "smallint" => HiveType::SmallInt,
            "int" | "integer" => HiveType::Int,
            "bigint" => HiveType::BigInt,
            "float" => HiveType::Float,
            "double" => HiveType::Double,
            "string" => HiveType::String,
            "binary" => HiveType::Binary,
            "date" => HiveType::Date,
            "timestamp" => HiveType::Timestamp,
            "decimal" => {
                self.space();
                if self.s.get(self.i) == Some(&b'(') {
                    self.i += 1;
                    let p = self.number()?;
                    self.expect(b',')?;
                    let s = self.number()?;
                    self.expect(b')')?;
                    if !(1..=38).contains(&p) || s > p {
                        return Err(format!("decimal({p},{s}) is not a Hive decimal"));
                    }
                    HiveType::Decimal(p as u8, s as u8)
                } else {
                    HiveType::Decimal(10, 0)
                }
            }
            "varchar" | "char" => {
                self.expect(b'(')?;
                let n = self.number()?;
                self.expect(b')')?;
                if n == 0 {
                    return Err(format!("{word}(0) holds nothing"));
                }
                if word == "char" {
                    HiveType::Char(n)
                } else {
                    HiveType::Varchar(n)
                }
            }
            "array" => {
                self.expect(b'<')?;
                let t = self.ty()?;
                self.expect(b'>')?;
                HiveType::Array(Box::new(t))
            }
            "map" => {
                self.expect(b'<')?;
                let k = self.ty()?;
                if matches!(
                    k,
                    HiveType::Array(_) | HiveType::Map(..) | HiveType::Struct(_)
                ) {
                    return Err("a map's key is a primitive type".into());
                }
                self.expect(b',')?;
                let v = self.ty()?;
                self.expect(b'>')?;
                HiveType::Map(Box::new(k), Box::new(v))
            }
            "struct" => {
                self.expect(b'<')?;
                let mut fields: Vec<(String, HiveType)> = Vec::new();
                loop {
                    let name = self.name()?;
                    self.expect(b':')?;
                    let t = self.ty()?;
                    if fields.iter().any(|(n, _)| *n == name) {
                        return Err(format!("field {name} is listed twice"));
                    }
                    fields.push((name, t));
                    self.space();
                    match self.next() {
                        Some(b',') => continue,
                        Some(b'>') => break,
                        _ => return Err("expected ',' or '>' in a struct".into()),
                    }
                }
                HiveType::Struct(fields)
            }
            "" => return Err("expected a type".into()),
            other => return Err(format!("{other} is not a Hive type Sluice converts to")),
        })
    }
}

/// The tables Sluice's configuration gives, by `database.table`.
#[derive(Debug, Default, Clone)]
pub struct Tables(HashMap<String, Arc<Columns>>);

impl Tables {
    /// Reads `DATABASE.TABLE=COLUMNS` settings.
    pub fn parse<'a>(specs: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut tables = HashMap::new();
        for spec in specs {
            let (name, columns) = spec.split_once('=').ok_or_else(|| {
                format!("--firehose-table takes DATABASE.TABLE=COLUMNS, not {spec:?}")
            })?;
            let (database, table) = name
                .trim()
                .split_once('.')
                .filter(|(d, t)| !d.is_empty() && !t.is_empty() && !t.contains('.'))
                .ok_or_else(|| format!("--firehose-table: {name:?} is not DATABASE.TABLE"))?;
            let columns =
                parse_columns(columns).map_err(|e| format!("--firehose-table {name}: {e}"))?;
            let key = format!("{}.{}", database.to_lowercase(), table.to_lowercase());
            if tables.insert(key, Arc::new(columns)).is_some() {
                return Err(format!("--firehose-table names {name} twice"));
            }
        }
        Ok(Self(tables))
    }

    fn get(&self, database: &str, table: &str) -> Option<Arc<Columns>> {
        self.0
            .get(&format!(
                "{}.{}",
                database.to_lowercase(),
                table.to_lowercase()
            ))
            .cloned()
    }
}

/// A value of a column, typed.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Null,
    Bool(bool),
    I32(i32),
    I64(i64),
    F32(f32),
    F64(f64),
    Bytes(Vec<u8>),
    /// Nanoseconds since the epoch.
    Time(i128),
    /// The unscaled value.
    Decimal(i128),
    List(Vec<Cell>),
    Map(Vec<(Cell, Cell)>),
    Struct(Vec<Cell>),
}

/// A Joda `DateTimeFormat` pattern of numeric fields, or epoch millis.
#[derive(Debug, Clone)]
enum TimeFormat {
    Millis,
    Pattern(Vec<Token>),
}

#[derive(Debug, Clone)]
enum Token {
    /// A field letter and how many times it is repeated.
    Field(char, usize),
    Literal(String),
}

fn time_format(text: &str) -> Result<TimeFormat, String> {
    if text == "millis" {
        return Ok(TimeFormat::Millis);
    }
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            'y' | 'Y' | 'M' | 'd' | 'H' | 'm' | 's' | 'S' | 'Z' => {
                let mut n = 1;
                while chars.peek() == Some(&c) {
                    chars.next();
                    n += 1;
                }
                tokens.push(Token::Field(if c == 'Y' { 'y' } else { c }, n));
            }
            '\'' => {
                let mut lit = String::new();
                loop {
                    match chars.next() {
                        Some('\'') if chars.peek() == Some(&'\'') => {
                            chars.next();
                            lit.push('\'');
                        }
                        Some('\'') => break,
                        Some(c) => lit.push(c),
                        None => return Err(format!("{text:?} has an unclosed quote")),
                    }
                }
                if lit.is_empty() {
                    lit.push('\'');
                }
                tokens.push(Token::Literal(lit));
            }
            c if c.is_ascii_alphabetic() => {
                return Err(format!(
                    "{text:?}: the pattern letter {c:?} is not one Sluice parses (y M d H m s S Z)"
                ))
            }
            c => tokens.push(Token::Literal(c.to_string())),
        }
    }
    Ok(TimeFormat::Pattern(tokens))
}

/// Days from 1970-01-01 to a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> Option<i64> {
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

const NANOS_PER_DAY: i128 = 86_400 * 1_000_000_000;

/// Parses `text` with a pattern; the time is UTC unless a `Z` field gives
/// an offset.
fn parse_pattern(tokens: &[Token], text: &str) -> Option<i128> {
    let b = text.as_bytes();
    let mut i = 0;
    let (mut y, mut mo, mut d, mut h, mut mi, mut s, mut nanos, mut offset) =
        (1970i64, 1i64, 1i64, 0i64, 0i64, 0i64, 0i128, 0i64);
    let digits = |i: &mut usize, min: usize, max: usize| -> Option<(i64, usize)> {
        let start = *i;
        while *i < b.len() && *i - start < max && b[*i].is_ascii_digit() {
            *i += 1;
        }
        if *i - start < min {
            return None;
        }
        Some((text[start..*i].parse().ok()?, *i - start))
    };
    for (k, t) in tokens.iter().enumerate() {
        // A field followed by another field takes exactly its width.
        let next_is_field = matches!(tokens.get(k + 1), Some(Token::Field(..)));
        match t {
            Token::Literal(l) => {
                if !text[i..].starts_with(l.as_str()) {
                    return None;
                }
                i += l.len();
            }
            Token::Field('Z', _) => {
                if b.get(i) == Some(&b'Z') {
                    i += 1;
                    continue;
                }
                let sign = match b.get(i) {
                    Some(b'+') => 1,
                    Some(b'-') => -1,
                    _ => return None,
                };
                i += 1;
                let (hh, _) = digits(&mut i, 2, 2)?;
                if b.get(i) == Some(&b':') {
                    i += 1;
                }
                let (mm, _) = digits(&mut i, 2, 2)?;
                offset = sign * (hh * 60 + mm);
            }
            Token::Field(c, n) => {
                let max = if next_is_field {
                    *n
                } else if *c == 'S' || *c == 'y' {
                    9
                } else {
                    (*n).max(2)
                };
                let (v, width) = digits(&mut i, if next_is_field { *n } else { 1 }, max)?;
                match c {
                    'y' => y = if *n == 2 && width == 2 { 2000 + v } else { v },
                    'M' => mo = v,
                    'd' => d = v,
                    'H' => h = v,
                    'm' => mi = v,
                    's' => s = v,
                    'S' => nanos = v as i128 * 10i128.pow(9 - width.min(9) as u32),
                    _ => return None,
                }
            }
        }
    }
    if i != b.len() || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let day = days_from_civil(y, mo, d)? as i128;
    Some(
        day * NANOS_PER_DAY
            + ((h * 3600 + mi * 60 + s - offset * 60) as i128) * 1_000_000_000
            + nanos,
    )
}

/// `yyyy-[M]M-[d]d[ T]HH:mm:ss[.fffffffff][Z]`: java.sql.Timestamp's form
/// (Hive's default) and the ISO form the OpenX SerDe also takes.
fn parse_default_time(text: &str) -> Option<i128> {
    let text = text.strip_suffix('Z').unwrap_or(text);
    let (date, time) = text.split_once([' ', 'T'])?;
    let mut parts = date.splitn(3, '-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if y.len() != 4 || !(1..=2).contains(&m.len()) || !(1..=2).contains(&d.len()) {
        return None;
    }
    let day = days_from_civil(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)? as i128;
    let (hms, fraction) = match time.split_once('.') {
        Some((hms, f)) => (hms, f),
        None => (time, ""),
    };
    let mut parts = hms.splitn(3, ':');
    let (h, mi, s) = (parts.next()?, parts.next()?, parts.next()?);
    if [h, mi, s].iter().any(|p| p.len() != 2) || fraction.len() > 9 {
        return None;
    }
    let (h, mi, s): (i64, i64, i64) = (h.parse().ok()?, mi.parse().ok()?, s.parse().ok()?);
    if h > 23 || mi > 59 || s > 60 || !fraction.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let nanos = if fraction.is_empty() {
        0
    } else {
        fraction.parse::<i128>().ok()? * 10i128.pow(9 - fraction.len() as u32)
    };
    Some(day * NANOS_PER_DAY + ((h * 3600 + mi * 60 + s) as i128) * 1_000_000_000 + nanos)
}

/// How JSON becomes rows: the deserializer's settings.
#[derive(Debug, Clone)]
struct Reader {
    openx: bool,
    case_insensitive: bool,
    dots_to_underscores: bool,
    /// Column (or field) name -> the JSON key it is read from.
    mappings: HashMap<String, String>,
    time_formats: Vec<TimeFormat>,
}

impl Reader {
    fn key(&self, k: &str) -> String {
        let k = if self.dots_to_underscores {
            k.replace('.', "_")
        } else {
            k.to_owned()
        };
        if self.case_insensitive {
            k.to_lowercase()
        } else {
            k
        }
    }

    fn fields(
        &self,
        object: &serde_json::Map<String, Value>,
        fields: &[(String, HiveType)],
    ) -> Result<Vec<Cell>, String> {
        let by_key: HashMap<String, &Value> =
            object.iter().map(|(k, v)| (self.key(k), v)).collect();
        fields
            .iter()
            .map(|(name, ty)| {
                let key = self
                    .mappings
                    .get(name)
                    .map_or_else(|| self.key(name), |m| self.key(m));
                match by_key.get(&key) {
                    None => Ok(Cell::Null),
                    Some(v) => self.cell(v, ty).map_err(|e| format!("{name}: {e}")),
                }
            })
            .collect()
    }

    fn time(&self, v: &Value) -> Result<i128, String> {
        const MS: i128 = 1_000_000;
        let bad = || format!("{v} is not a timestamp");
        match v {
            Value::Number(n)
                if self.openx
                    || self
                        .time_formats
                        .iter()
                        .any(|f| matches!(f, TimeFormat::Millis)) =>
            {
                if let Some(i) = n.as_i64() {
                    // OpenX: epoch seconds, or milliseconds when that
                    // large (after 5138 as seconds); Hive's `millis`:
                    // milliseconds.
                    if !self.openx || i.unsigned_abs() >= 100_000_000_000 {
                        Ok(i as i128 * MS)
                    } else {
                        Ok(i as i128 * 1_000 * MS)
                    }
                } else {
                    let secs = n.as_f64().ok_or_else(bad)?;
                    if !self.openx || !secs.is_finite() || secs.abs() > 1e13 {
                        return Err(bad());
                    }
                    Ok((secs * 1e9).round() as i128)
                }
            }
            Value::String(s) => {
                if self.time_formats.is_empty() {
                    if let Some(t) = parse_default_time(s) {
                        return Ok(t);
                    }
                    if self.openx {
                        if let Ok(n) = s.trim().parse::<serde_json::Number>() {
                            return self.time(&Value::Number(n));
                        }
                    }
                    return Err(bad());
                }
                for f in &self.time_formats {
                    match f {
                        TimeFormat::Millis => {
                            if let Ok(ms) = s.trim().parse::<i64>() {
                                return Ok(ms as i128 * MS);
                            }
                        }
                        TimeFormat::Pattern(tokens) => {
                            if let Some(t) = parse_pattern(tokens, s) {
                                return Ok(t);
                            }
                        }
                    }
                }
                Err(bad())
            }
            _ => Err(bad()),
        }
    }

    fn cell(&self, v: &Value, ty: &HiveType) -> Result<Cell, String> {
        if v.is_null() {
            return Ok(Cell::Null);
        }
        let text = || match v {
            Value::String(s) => Some(s.trim().to_owned()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        let int = |min: i64, max: i64| -> Result<i64, String> {
            let i = match v {
                Value::Number(n) => n.as_i64(),
                Value::String(s) => s.trim().parse().ok(),
                _ => None,
            }
            .ok_or_else(|| format!("{v} is not an integer"))?;
            if !(min..=max).contains(&i) {
                return Err(format!("{i} is out of range"));
            }
            Ok(i)
        };
        let float = || -> Result<f64, String> {
            match v {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.trim().parse().ok(),
                _ => None,
            }
            .ok_or_else(|| format!("{v} is not a number"))
        };
        let string = || match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        Ok(match ty {
            HiveType::Boolean => match v {
                Value::Bool(b) => Cell::Bool(*b),
                Value::String(s) if s.eq_ignore_ascii_case("true") => Cell::Bool(true),
                Value::String(s) if s.eq_ignore_ascii_case("false") => Cell::Bool(false),
                _ => return Err(format!("{v} is not a boolean")),
            },
            HiveType::TinyInt => Cell::I32(int(-128, 127)? as i32),
            HiveType::SmallInt => Cell::I32(int(-32768, 32767)? as i32),
            HiveType::Int => Cell::I32(int(i32::MIN as i64, i32::MAX as i64)? as i32),
            HiveType::BigInt => Cell::I64(int(i64::MIN, i64::MAX)?),
            HiveType::Float => Cell::F32(float()? as f32),
            HiveType::Double => Cell::F64(float()?),
            HiveType::Decimal(p, s) => Cell::Decimal(
                decimal(
                    &text().ok_or_else(|| format!("{v} is not a decimal"))?,
                    *p,
                    *s,
                )
                .ok_or_else(|| format!("{v} is not a decimal({p},{s})"))?,
            ),
            HiveType::String => Cell::Bytes(string().into_bytes()),
            HiveType::Varchar(n) => Cell::Bytes(
                string()
                    .chars()
                    .take(*n as usize)
                    .collect::<String>()
                    .into_bytes(),
            ),
            HiveType::Char(n) => {
                let mut s: String = string().chars().take(*n as usize).collect();
                let pad = *n as usize - s.chars().count();
                s.extend(std::iter::repeat_n(' ', pad));
                Cell::Bytes(s.into_bytes())
            }
            HiveType::Binary => Cell::Bytes(string().into_bytes()),
            HiveType::Date => {
                let s = v.as_str().ok_or_else(|| format!("{v} is not a date"))?;
                let day = parse_default_time(&format!("{} 00:00:00", s.trim()))
                    .ok_or_else(|| format!("{v} is not a date (yyyy-MM-dd)"))?
                    / NANOS_PER_DAY;
                Cell::I32(i32::try_from(day).map_err(|_| format!("{v} is out of range"))?)
            }
            HiveType::Timestamp => {
                // Years 1 to 9999, as Hive's timestamps.
                const FIRST: i128 = -62_135_596_800 * 1_000_000_000;
                const END: i128 = 253_402_300_800 * 1_000_000_000;
                let t = self.time(v)?;
                if !(FIRST..END).contains(&t) {
                    return Err(format!("{v} is out of range"));
                }
                Cell::Time(t)
            }
            HiveType::Array(t) => match v {
                Value::Array(items) => Cell::List(
                    items
                        .iter()
                        .map(|i| self.cell(i, t))
                        .collect::<Result<_, _>>()?,
                ),
                _ => return Err(format!("{v} is not an array")),
            },
            HiveType::Map(k, t) => match v {
                Value::Object(o) => Cell::Map(
                    o.iter()
                        .map(|(key, value)| {
                            let key = self.cell(&Value::String(key.clone()), k)?;
                            Ok((key, self.cell(value, t)?))
                        })
                        .collect::<Result<_, String>>()?,
                ),
                _ => return Err(format!("{v} is not an object")),
            },
            HiveType::Struct(fields) => match v {
                Value::Object(o) => Cell::Struct(self.fields(o, fields)?),
                _ => return Err(format!("{v} is not an object")),
            },
        })
    }
}

/// The unscaled value of decimal `text` at `scale`, rounded half up, if it
/// has at most `precision` digits.
fn decimal(text: &str, precision: u8, scale: u8) -> Option<i128> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (mantissa, exponent) = match digits.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().ok()?),
        None => (digits, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let all: String = format!("{whole}{fraction}");
    // value = all * 10^(exponent - fraction.len()); want value * 10^scale.
    let shift = i64::from(exponent) - fraction.len() as i64 + i64::from(scale);
    if shift > 38 {
        return None;
    }
    let all = all.trim_start_matches('0');
    let mut unscaled: i128 = 0;
    let (keep, round_digit) = if shift >= 0 {
        (all.len(), None)
    } else {
        let cut = all.len() as i64 + shift;
        if cut < 0 {
            (0, None)
        } else {
            (cut as usize, all.as_bytes().get(cut as usize).copied())
        }
    };
    for c in all[..keep].bytes() {
        unscaled = unscaled.checked_mul(10)?.checked_add((c - b'0') as i128)?;
    }
    if shift > 0 {
        unscaled = unscaled.checked_mul(10i128.checked_pow(shift as u32)?)?;
    }
    if round_digit.is_some_and(|d| d >= b'5') {
        unscaled += 1;
    }
    if unscaled >= 10i128.pow(precision as u32) {
        return None;
    }
    Some(if negative { -unscaled } else { unscaled })
}

/// The bytes Hive gives a decimal of `precision` digits.
fn decimal_bytes(precision: u8) -> usize {
    (1..=16)
        .find(|n| {
            let max = if *n == 16 {
                i128::MAX
            } else {
                (1i128 << (8 * n - 1)) - 1
            };
            max >= 10i128.pow(precision as u32) - 1
        })
        .unwrap_or(16)
}

/// A delivery stream's conversion: its table, deserializer and Parquet
/// settings.
#[derive(Debug)]
pub(crate) struct Conversion {
    reader: Reader,
    columns: Arc<Columns>,
    schema: Arc<Schema>,
    props: Arc<WriterProperties>,
    /// A row group is written when this many bytes of values are held.
    row_group_bytes: usize,
    /// `dataCatalogTable` of the error records.
    pub(crate) table: Value,
}

/// Row groups are written at most this large (in values held), whatever
/// BlockSizeBytes says (at least 64 MiB on AWS): memory stays bounded.
const ROW_GROUP_BYTES_MAX: usize = 16 << 20;

impl Conversion {
    /// The conversion `c` configures, `None` if it is off, or why Sluice
    /// cannot do it.
    pub(crate) fn new(
        c: &f::DataFormatConversionConfiguration,
        tables: &Tables,
        region: &str,
    ) -> Result<Option<Self>, String> {
        if c.enabled == Some(false) {
            return Ok(None);
        }
        let schema = c
            .schema_configuration
            .as_ref()
            .ok_or("data format conversion needs a SchemaConfiguration")?;
        let (Some(database), Some(table)) = (&schema.database_name, &schema.table_name) else {
            return Err("SchemaConfiguration needs a DatabaseName and a TableName".into());
        };
        let columns = tables.get(database, table).ok_or_else(|| {
            format!("the table {database}.{table} is not in Sluice's configuration (--firehose-table {database}.{table}=COLUMNS)")
        })?;
        let deserializer = c
            .input_format_configuration
            .as_ref()
            .and_then(|i| i.deserializer.as_ref())
            .ok_or("data format conversion needs a Deserializer")?;
        let reader = match (
            &deserializer.open_x_json_ser_de,
            &deserializer.hive_json_ser_de,
        ) {
            (Some(o), None) => Reader {
                openx: true,
                case_insensitive: o.case_insensitive != Some(false),
                dots_to_underscores: o.convert_dots_in_json_keys_to_underscores == Some(true),
                mappings: o
                    .column_to_json_key_mappings
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.to_lowercase(), v.clone()))
                    .collect(),
                time_formats: Vec::new(),
            },
            (None, Some(h)) => Reader {
                openx: false,
                case_insensitive: true,
                dots_to_underscores: false,
                mappings: HashMap::new(),
                time_formats: h
                    .timestamp_formats
                    .iter()
                    .flatten()
                    .map(|t| time_format(t))
                    .collect::<Result<_, _>>()?,
            },
            _ => return Err("a Deserializer is OpenXJsonSerDe or HiveJsonSerDe".into()),
        };
        let serializer = c
            .output_format_configuration
            .as_ref()
            .and_then(|o| o.serializer.as_ref())
            .ok_or("data format conversion needs a Serializer")?;
        let parquet = match (&serializer.parquet_ser_de, &serializer.orc_ser_de) {
            (Some(p), None) => p,
            (None, Some(_)) => {
                return Err("ORC output is not built (Sluice writes Parquet; the Rust ORC writer needs Apache Arrow's arrays, a large dependency)".into())
            }
            _ => return Err("a Serializer is ParquetSerDe or OrcSerDe".into()),
        };
        let compression = match parquet.compression.unwrap_or(f::ParquetCompression::Snappy) {
            f::ParquetCompression::Snappy => Compression::SNAPPY,
            f::ParquetCompression::Gzip => Compression::GZIP(Default::default()),
            _ => Compression::UNCOMPRESSED,
        };
        let props = WriterProperties::builder()
            .set_compression(compression)
            .set_dictionary_enabled(parquet.enable_dictionary_compression == Some(true))
            .set_data_page_size_limit(
                parquet
                    .page_size_bytes
                    .unwrap_or(1 << 20)
                    .clamp(64 << 10, 64 << 20) as usize,
            )
            .set_writer_version(match parquet.writer_version {
                Some(f::ParquetWriterVersion::V2) => WriterVersion::PARQUET_2_0,
                _ => WriterVersion::PARQUET_1_0,
            })
            .build();
        let row_group_bytes = (parquet.block_size_bytes.unwrap_or(256 << 20).max(1) as usize)
            .min(ROW_GROUP_BYTES_MAX);
        let schema = parquet::schema::parser::parse_message_type(&message(&columns))
            .map_err(|e| format!("the table's Parquet schema: {e}"))?;
        let table = serde_json::json!({
            "catalogId": schema_catalog(schema_field(&c.schema_configuration, |s| s.catalog_id.clone())),
            "databaseName": database,
            "tableName": table,
            "region": schema_field(&c.schema_configuration, |s| s.region.clone()).unwrap_or_else(|| region.to_owned()),
            "versionId": schema_field(&c.schema_configuration, |s| s.version_id.clone()).unwrap_or_else(|| "LATEST".to_owned()),
        });
        Ok(Some(Self {
            reader,
            columns,
            schema: Arc::new(schema),
            props: Arc::new(props),
            row_group_bytes,
            table,
        }))
    }

    /// The rows of one record, or why it does not convert.
    fn rows(&self, data: &[u8]) -> Result<Vec<Vec<Cell>>, String> {
        let mut rows = Vec::new();
        for doc in serde_json::Deserializer::from_slice(data).into_iter::<Value>() {
            let doc = doc.map_err(|e| format!("the record is not JSON: {e}"))?;
            let Value::Object(o) = doc else {
                return Err("the record is not a JSON object".into());
            };
            rows.push(self.reader.fields(&o, &self.columns)?);
        }
        if rows.is_empty() {
            return Err("the record has no JSON object".into());
        }
        Ok(rows)
    }
}

fn schema_field(
    s: &Option<f::SchemaConfiguration>,
    get: impl Fn(&f::SchemaConfiguration) -> Option<String>,
) -> Option<String> {
    s.as_ref().and_then(get).filter(|v| !v.is_empty())
}

fn schema_catalog(id: Option<String>) -> Value {
    id.map_or(Value::Null, Value::String)
}

/// The Parquet message type of `columns`, as Hive writes it.
fn message(columns: &Columns) -> String {
    fn field(out: &mut String, name: &str, ty: &HiveType, repetition: &str) {
        let prim = |out: &mut String, t: &str| {
            out.push_str(&format!("{repetition} {t};\n").replace("NAME", name))
        };
        match ty {
            HiveType::Boolean => prim(out, "boolean NAME"),
            HiveType::TinyInt => prim(out, "int32 NAME (INT_8)"),
            HiveType::SmallInt => prim(out, "int32 NAME (INT_16)"),
            HiveType::Int => prim(out, "int32 NAME"),
            HiveType::BigInt => prim(out, "int64 NAME"),
            HiveType::Float => prim(out, "float NAME"),
            HiveType::Double => prim(out, "double NAME"),
            HiveType::Decimal(p, s) => prim(
                out,
                &format!(
                    "fixed_len_byte_array({}) NAME (DECIMAL({p},{s}))",
                    decimal_bytes(*p)
                ),
            ),
            HiveType::String | HiveType::Varchar(_) | HiveType::Char(_) => {
                prim(out, "binary NAME (UTF8)")
            }
            HiveType::Binary => prim(out, "binary NAME"),
            HiveType::Date => prim(out, "int32 NAME (DATE)"),
            HiveType::Timestamp => prim(out, "int96 NAME"),
            HiveType::Array(t) => {
                out.push_str(&format!(
                    "{repetition} group {name} (LIST) {{\nrepeated group list {{\n"
                ));
                field(out, "element", t, "optional");
                out.push_str("}\n}\n");
            }
            HiveType::Map(k, v) => {
                out.push_str(&format!(
                    "{repetition} group {name} (MAP) {{\nrepeated group key_value {{\n"
                ));
                field(out, "key", k, "required");
                field(out, "value", v, "optional");
                out.push_str("}\n}\n");
            }
            HiveType::Struct(fields) => {
                out.push_str(&format!("{repetition} group {name} {{\n"));
                for (n, t) in fields {
                    field(out, n, t, "optional");
                }
                out.push_str("}\n");
            }
        }
    }
    let mut out = String::from("message hive_schema {\n");
    for (name, ty) in columns {
        field(&mut out, name, ty, "optional");
    }
    out.push_str("}\n");
    out
}

/// A node of the schema, with the levels its values get.
#[derive(Debug)]
enum Node {
    Leaf {
        leaf: usize,
        /// The definition level of a value here.
        def: i16,
        ty: HiveType,
    },
    Struct {
        def: i16,
        fields: Vec<Node>,
        leaves: std::ops::Range<usize>,
    },
    /// A list or a map (entries of key and value).
    Repeated {
        /// The definition level of a present (maybe empty) list.
        def: i16,
        /// The repetition level of a second entry.
        rep: i16,
        entries: Vec<Node>,
        map: bool,
        leaves: std::ops::Range<usize>,
    },
}

fn node(ty: &HiveType, def: i16, rep: i16, required: bool, leaves: &mut Vec<HiveType>) -> Node {
    let def = if required { def } else { def + 1 };
    let start = leaves.len();
    match ty {
        HiveType::Struct(fields) => {
            let fields = fields
                .iter()
                .map(|(_, t)| node(t, def, rep, false, leaves))
                .collect();
            Node::Struct {
                def,
                fields,
                leaves: start..leaves.len(),
            }
        }
        HiveType::Array(t) => {
            let entries = vec![node(t, def + 1, rep + 1, false, leaves)];
            Node::Repeated {
                def,
                rep: rep + 1,
                entries,
                map: false,
                leaves: start..leaves.len(),
            }
        }
        HiveType::Map(k, v) => {
            let entries = vec![
                node(k, def + 1, rep + 1, true, leaves),
                node(v, def + 1, rep + 1, false, leaves),
            ];
            Node::Repeated {
                def,
                rep: rep + 1,
                entries,
                map: true,
                leaves: start..leaves.len(),
            }
        }
        t => {
            leaves.push(t.clone());
            Node::Leaf {
                leaf: start,
                def,
                ty: t.clone(),
            }
        }
    }
}

/// One leaf column's values of the row group being gathered.
#[derive(Debug)]
struct Leaf {
    values: Values,
    def: Vec<i16>,
    rep: Vec<i16>,
}

#[derive(Debug)]
enum Values {
    Bool(Vec<bool>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bytes(Vec<ByteArray>),
    I96(Vec<Int96>),
    Fixed(Vec<FixedLenByteArray>, usize),
}

impl Leaf {
    fn new(ty: &HiveType) -> Self {
        let values = match ty {
            HiveType::Boolean => Values::Bool(Vec::new()),
            HiveType::TinyInt | HiveType::SmallInt | HiveType::Int | HiveType::Date => {
                Values::I32(Vec::new())
            }
            HiveType::BigInt => Values::I64(Vec::new()),
            HiveType::Float => Values::F32(Vec::new()),
            HiveType::Double => Values::F64(Vec::new()),
            HiveType::Decimal(p, _) => Values::Fixed(Vec::new(), decimal_bytes(*p)),
            HiveType::Timestamp => Values::I96(Vec::new()),
            _ => Values::Bytes(Vec::new()),
        };
        Self {
            values,
            def: Vec::new(),
            rep: Vec::new(),
        }
    }

    /// Pushes `cell` (of the leaf's type, not null); returns its bytes.
    fn push(&mut self, cell: &Cell) -> usize {
        match (&mut self.values, cell) {
            (Values::Bool(v), Cell::Bool(b)) => v.push(*b),
            (Values::I32(v), Cell::I32(i)) => v.push(*i),
            (Values::I64(v), Cell::I64(i)) => v.push(*i),
            (Values::F32(v), Cell::F32(x)) => v.push(*x),
            (Values::F64(v), Cell::F64(x)) => v.push(*x),
            (Values::Bytes(v), Cell::Bytes(b)) => {
                let n = b.len();
                v.push(ByteArray::from(b.clone()));
                return n + 8;
            }
            (Values::I96(v), Cell::Time(nanos)) => {
                let day = nanos.div_euclid(NANOS_PER_DAY);
                let of_day = nanos.rem_euclid(NANOS_PER_DAY) as u64;
                let mut t = Int96::new();
                t.set_data(
                    of_day as u32,
                    (of_day >> 32) as u32,
                    (day + 2_440_588) as u32,
                );
                v.push(t);
            }
            (Values::Fixed(v, n), Cell::Decimal(d)) => {
                let bytes = d.to_be_bytes();
                v.push(FixedLenByteArray::from(bytes[16 - *n..].to_vec()));
            }
            (values, cell) => unreachable!("{cell:?} is not a value of {values:?}"),
        }
        8
    }
}

fn shred(node: &Node, cell: &Cell, parent_def: i16, rep: i16, leaves: &mut [Leaf]) -> usize {
    let nulls = |range: &std::ops::Range<usize>, def: i16, leaves: &mut [Leaf]| {
        for l in &mut leaves[range.clone()] {
            l.def.push(def);
            l.rep.push(rep);
        }
        4 * range.len()
    };
    match node {
        Node::Leaf { leaf, def, .. } => {
            let l = &mut leaves[*leaf];
            if matches!(cell, Cell::Null) {
                l.def.push(parent_def);
                l.rep.push(rep);
                4
            } else {
                l.def.push(*def);
                l.rep.push(rep);
                4 + l.push(cell)
            }
        }
        Node::Struct {
            def,
            fields,
            leaves: range,
        } => match cell {
            Cell::Struct(cells) => fields
                .iter()
                .zip(cells)
                .map(|(f, c)| shred(f, c, *def, rep, leaves))
                .sum(),
            _ => nulls(range, parent_def, leaves),
        },
        Node::Repeated {
            def,
            rep: entry_rep,
            entries,
            map,
            leaves: range,
        } => {
            let items: Vec<(Option<&Cell>, &Cell)> = match cell {
                Cell::List(items) if !*map => items.iter().map(|i| (None, i)).collect(),
                Cell::Map(items) if *map => items.iter().map(|(k, v)| (Some(k), v)).collect(),
                _ => return nulls(range, parent_def, leaves),
            };
            if items.is_empty() {
                return nulls(range, *def, leaves);
            }
            let mut bytes = 0;
            for (i, (key, value)) in items.into_iter().enumerate() {
                let r = if i == 0 { rep } else { *entry_rep };
                if let Some(key) = key {
                    bytes += shred(&entries[0], key, *def + 1, r, leaves);
                    bytes += shred(&entries[1], value, *def + 1, r, leaves);
                } else {
                    bytes += shred(&entries[0], value, *def + 1, r, leaves);
                }
            }
            bytes
        }
    }
}

/// A Parquet file being written: rows are shredded into their leaf
/// columns as they come, and written as a row group when enough are held.
pub(crate) struct ParquetOut<W: Write + Send> {
    writer: SerializedFileWriter<W>,
    conversion: Arc<Conversion>,
    nodes: Vec<Node>,
    leaves: Vec<Leaf>,
    held: usize,
    rows: usize,
}

impl<W: Write + Send> std::fmt::Debug for ParquetOut<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetOut")
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

fn io(e: parquet::errors::ParquetError) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl<W: Write + Send> ParquetOut<W> {
    pub(crate) fn new(out: W, conversion: Arc<Conversion>) -> std::io::Result<Self> {
        let writer =
            SerializedFileWriter::new(out, conversion.schema.clone(), conversion.props.clone())
                .map_err(io)?;
        let mut types = Vec::new();
        let nodes = conversion
            .columns
            .iter()
            .map(|(_, t)| node(t, 0, 0, false, &mut types))
            .collect();
        Ok(Self {
            writer,
            nodes,
            leaves: types.iter().map(Leaf::new).collect(),
            conversion,
            held: 0,
            rows: 0,
        })
    }

    /// The rows of `record`, or why it does not convert (nothing of it
    /// written then).
    pub(crate) fn write(&mut self, record: &[u8]) -> Result<std::io::Result<()>, String> {
        let rows = self.conversion.rows(record)?;
        for row in rows {
            for (node, cell) in self.nodes.iter().zip(&row) {
                self.held += shred(node, cell, 0, 0, &mut self.leaves);
            }
            self.rows += 1;
        }
        if self.held >= self.conversion.row_group_bytes {
            return Ok(self.flush());
        }
        Ok(Ok(()))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        let mut group = self.writer.next_row_group().map_err(io)?;
        let mut i = 0;
        while let Some(mut column) = group.next_column().map_err(io)? {
            let leaf = &mut self.leaves[i];
            let (def, rep) = (Some(&leaf.def[..]), {
                let max_rep = column_max_rep(&self.nodes, i);
                (max_rep > 0).then_some(&leaf.rep[..])
            });
            let written = match (column.untyped(), &leaf.values) {
                (ColumnWriter::BoolColumnWriter(w), Values::Bool(v)) => w.write_batch(v, def, rep),
                (ColumnWriter::Int32ColumnWriter(w), Values::I32(v)) => w.write_batch(v, def, rep),
                (ColumnWriter::Int64ColumnWriter(w), Values::I64(v)) => w.write_batch(v, def, rep),
                (ColumnWriter::FloatColumnWriter(w), Values::F32(v)) => w.write_batch(v, def, rep),
                (ColumnWriter::DoubleColumnWriter(w), Values::F64(v)) => w.write_batch(v, def, rep),
                (ColumnWriter::ByteArrayColumnWriter(w), Values::Bytes(v)) => {
                    w.write_batch(v, def, rep)
                }
                (ColumnWriter::Int96ColumnWriter(w), Values::I96(v)) => w.write_batch(v, def, rep),
                (ColumnWriter::FixedLenByteArrayColumnWriter(w), Values::Fixed(v, _)) => {
                    w.write_batch(v, def, rep)
                }
                _ => unreachable!("the leaves follow the schema"),
            };
            written.map_err(io)?;
            column.close().map_err(io)?;
            *leaf = Leaf::new(&leaf_type(&self.nodes, i));
            i += 1;
        }
        group.close().map_err(io)?;
        self.held = 0;
        self.rows = 0;
        Ok(())
    }

    /// Writes what is held and the footer; gives the output back.
    pub(crate) fn finish(mut self) -> std::io::Result<W> {
        self.flush()?;
        self.writer.into_inner().map_err(io)
    }
}

fn find_leaf(nodes: &[Node], i: usize, rep: i16) -> Option<(HiveType, i16)> {
    for n in nodes {
        match n {
            Node::Leaf { leaf, ty, .. } if *leaf == i => return Some((ty.clone(), rep)),
            Node::Leaf { .. } => {}
            Node::Struct { fields, leaves, .. } if leaves.contains(&i) => {
                return find_leaf(fields, i, rep)
            }
            Node::Repeated {
                entries,
                leaves,
                rep: r,
                ..
            } if leaves.contains(&i) => return find_leaf(entries, i, *r),
            _ => {}
        }
    }
    None
}

fn column_max_rep(nodes: &[Node], i: usize) -> i16 {
    find_leaf(nodes, i, 0).map_or(0, |(_, r)| r)
}

fn leaf_type(nodes: &[Node], i: usize) -> HiveType {
    find_leaf(nodes, i, 0).map_or(HiveType::String, |(t, _)| t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_hive_column_lists() {
        let c = parse_columns(
            "id BIGINT, name string, price decimal(10,2), tags array<string>, \
             attrs map<string,int>, address struct<city:string, zip:int>, at timestamp",
        )
        .unwrap();
        assert_eq!(c[0], ("id".into(), HiveType::BigInt));
        assert_eq!(c[2].1, HiveType::Decimal(10, 2));
        assert_eq!(
            c[5].1,
            HiveType::Struct(vec![
                ("city".into(), HiveType::String),
                ("zip".into(), HiveType::Int)
            ])
        );
        for bad in [
            "",
            "id",
            "id bigint,",
            "id bigint id2 int",
            "id uuid",
            "m map<array<int>,int>",
            "d decimal(40,2)",
            "id int, id int",
        ] {
            assert!(parse_columns(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn decimals_round_half_up_within_their_precision() {
        assert_eq!(decimal("12.345", 10, 2), Some(1235));
        assert_eq!(decimal("-12.344", 10, 2), Some(-1234));
        assert_eq!(decimal("1e2", 5, 1), Some(1000));
        assert_eq!(decimal("0.004", 3, 2), Some(0));
        assert_eq!(decimal("123456", 5, 0), None);
        assert_eq!(decimal("abc", 5, 0), None);
        assert_eq!(decimal("1.5e2147483647", 5, 2), None);
        assert_eq!(decimal("1.5e-2147483648", 5, 2), Some(0));
        assert_eq!(decimal_bytes(10), 5);
        assert_eq!(decimal_bytes(38), 16);
        assert_eq!(decimal_bytes(2), 1);
    }

    #[test]
    fn timestamps_in_the_forms_the_serdes_take() {
        let t = parse_default_time("2017-02-07 15:13:01.39256").unwrap();
        assert_eq!(t, 1_486_480_381_392_560_000);
        assert_eq!(parse_default_time("2017-02-07T15:13:01.39256Z"), Some(t));
        assert_eq!(parse_default_time("2017-2-7 15:13:01.39256"), Some(t));
        assert_eq!(parse_default_time("2017-02-30 15:13:01"), None);
        let TimeFormat::Pattern(p) = time_format("dd/MM/yyyy HH:mm:ss.SSSZ").unwrap() else {
            panic!()
        };
        assert_eq!(
            parse_pattern(&p, "07/02/2017 16:13:01.392+01:00"),
            Some(1_486_480_381_392_000_000)
        );
        let TimeFormat::Pattern(p) = time_format("yyyyMMddHHmmss").unwrap() else {
            panic!()
        };
        assert_eq!(
            parse_pattern(&p, "20170207151301"),
            Some(1_486_480_381_000_000_000)
        );
        assert!(time_format("EEE, dd MMM").is_err());
    }

    /// Random JSON of roughly the table's shape, good and bad: every
    /// record converts or is refused, nothing panics, and the file reads
    /// back with as many rows as were taken.
    #[test]
    fn random_records_convert_or_are_refused_and_the_file_reads_back() {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let tables = Tables::parse([
            "db.t=id bigint, s string, d decimal(5,2), ts timestamp, b boolean, \
             a array<array<int>>, m map<string,struct<x:int,y:array<string>>>, \
             st struct<p:int,q:map<int,string>>, day date, c char(2)",
        ])
        .unwrap();
        let config = f::DataFormatConversionConfiguration {
            schema_configuration: Some(f::SchemaConfiguration {
                database_name: Some("db".into()),
                table_name: Some("t".into()),
                ..Default::default()
            }),
            input_format_configuration: Some(f::InputFormatConfiguration {
                deserializer: Some(f::Deserializer {
                    open_x_json_ser_de: Some(Default::default()),
                    hive_json_ser_de: None,
                }),
            }),
            output_format_configuration: Some(f::OutputFormatConfiguration {
                serializer: Some(f::Serializer {
                    parquet_ser_de: Some(f::ParquetSerDe {
                        compression: Some(f::ParquetCompression::Gzip),
                        ..Default::default()
                    }),
                    orc_ser_de: None,
                }),
            }),
            enabled: None,
        };
        let conversion = Arc::new(
            Conversion::new(&config, &tables, "us-east-1")
                .unwrap()
                .unwrap(),
        );
        fn value(depth: u32) -> Value {
            let keys = [
                "id", "s", "d", "ts", "b", "a", "m", "st", "day", "c", "x", "y", "p", "q", "1",
            ];
            match fastrand::u32(..if depth > 3 { 6 } else { 9 }) {
                0 => Value::Null,
                1 => Value::Bool(fastrand::bool()),
                2 => serde_json::json!(fastrand::i64(..)),
                3 => serde_json::json!(fastrand::i32(-1000..1000)),
                4 => serde_json::json!(fastrand::f64() * 1e6),
                5 => Value::String(
                    [
                        "2020-01-01",
                        "2017-02-07T15:13:01Z",
                        "12.5",
                        "true",
                        "x",
                        "",
                        "99999999",
                    ][fastrand::usize(..7)]
                    .to_owned(),
                ),
                6 | 7 => Value::Object(
                    (0..fastrand::usize(..5))
                        .map(|_| {
                            (
                                keys[fastrand::usize(..keys.len())].to_owned(),
                                value(depth + 1),
                            )
                        })
                        .collect(),
                ),
                _ => Value::Array(
                    (0..fastrand::usize(..4))
                        .map(|_| value(depth + 1))
                        .collect(),
                ),
            }
        }
        fastrand::seed(7);
        let mut out = ParquetOut::new(Vec::new(), conversion).unwrap();
        let (mut taken, mut refused) = (0, 0);
        for _ in 0..3000 {
            let record = serde_json::to_vec(&value(0)).unwrap();
            match out.write(&record) {
                Ok(written) => {
                    written.unwrap();
                    taken += 1;
                }
                Err(_) => refused += 1,
            }
        }
        assert!(
            taken > 100 && refused > 100,
            "{taken} taken, {refused} refused"
        );
        let bytes = bytes::Bytes::from(out.finish().unwrap());
        let reader = SerializedFileReader::new(bytes).unwrap();
        assert_eq!(reader.metadata().file_metadata().num_rows(), taken);
        let mut rows = 0;
        for row in reader.get_row_iter(None).unwrap() {
            row.unwrap();
            rows += 1;
        }
        assert_eq!(rows as i64, taken);
    }
}
