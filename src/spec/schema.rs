//! Frictionless Table Schema (Data Package v2) — the subset migstat supports, compiled into typed
//! checks. Input: a `schemas/*.schema.json` file. Output: a [`TableSchema`], or every problem in
//! the file at once as [`SpecIssue`]s. A key migstat does not support is an error, never ignored,
//! so a schema never means less here than it does in the Python `frictionless` package.

use std::collections::BTreeSet;
use std::path::Path;

use regex::Regex;
use serde_json::{Map, Value};

use crate::error::SpecIssue;

/// How the header of a file must relate to the schema's fields (`fieldsMatch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldsMatch {
    /// Same fields, same order (the Table Schema default).
    Exact,
    /// Same fields, any order.
    Equal,
}

/// A field's logical type and, for dates, how to read it.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldType {
    String,
    Integer,
    Number,
    Boolean,
    Date(Dates),
    Year,
}

impl FieldType {
    pub fn name(&self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Integer => "integer",
            FieldType::Number => "number",
            FieldType::Boolean => "boolean",
            FieldType::Date(_) => "date",
            FieldType::Year => "year",
        }
    }
}

/// How a date field is read: its formats, tried in order (a list whose formats could read one
/// text as two different dates is refused when the schema is read), and what a time of day in
/// the value means.
#[derive(Debug, Clone, PartialEq)]
pub struct Dates {
    pub formats: Vec<DateFormat>,
    pub time: TimeOfDay,
}

/// What a date field does with a time of day (`"time"` on the field; needed when a format has
/// `%H`). Deliveries exported from databases write dates as datetimes at midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeOfDay {
    /// The formats have no time part.
    None,
    /// The time must be 00:00:00 (a date written as a datetime); any other time is not a date.
    Midnight,
    /// The date part is kept, whatever the time (a timestamp recorded at the event).
    Drop,
}

impl TimeOfDay {
    pub fn name(self) -> &'static str {
        match self {
            TimeOfDay::None => "none",
            TimeOfDay::Midnight => "midnight",
            TimeOfDay::Drop => "drop",
        }
    }
}

/// Why a value is not a date of its field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateMiss {
    /// No format reads it (or it is not a calendar date).
    NoFormat,
    /// A format reads it, with a time of day other than midnight, under `"time": "midnight"`.
    NotMidnight,
}

impl Dates {
    pub fn iso() -> Self {
        Dates {
            formats: vec![DateFormat::iso()],
            time: TimeOfDay::None,
        }
    }

    /// The date a value holds: the first format that reads it.
    pub fn parse_date(&self, s: &str) -> Result<chrono::NaiveDate, DateMiss> {
        for f in &self.formats {
            if let Some((d, seconds)) = f.parse_datetime(s) {
                return match self.time {
                    TimeOfDay::Midnight if seconds != 0 => Err(DateMiss::NotMidnight),
                    _ => Ok(d),
                };
            }
        }
        Err(DateMiss::NoFormat)
    }

    /// The formats as a message or a codebook lists them: `%d/%m/%Y or %Y-%m-%d`.
    pub fn patterns(&self) -> String {
        self.formats
            .iter()
            .map(|f| f.pattern.as_str())
            .collect::<Vec<_>>()
            .join(" or ")
    }

    /// The first text two of the formats read as two different dates, if any: (text, format,
    /// its date, other format, its date). Found by writing every day of a leap year under each
    /// format, with and without leading zeros, and reading it under the others — the only way
    /// two patterns of %Y, %m, %d and literals can disagree is on such a text.
    pub fn ambiguity(
        &self,
    ) -> Option<(String, usize, chrono::NaiveDate, usize, chrono::NaiveDate)> {
        use chrono::Datelike;
        let first = chrono::NaiveDate::from_ymd_opt(2000, 1, 1)?;
        for (i, a) in self.formats.iter().enumerate() {
            for (j, b) in self.formats.iter().enumerate().filter(|(j, _)| *j != i) {
                for day in first.iter_days().take_while(|d| d.year() == 2000) {
                    for pad in [(true, true), (false, false), (true, false), (false, true)] {
                        let text = a.write(day, pad);
                        if let Some((other, _)) = b.parse_datetime(&text)
                            && other != day
                        {
                            return Some((text, i, day, j, other));
                        }
                    }
                }
            }
        }
        None
    }

    /// Whether a format has a time part (then the field must say what a time means).
    pub fn has_time(&self) -> bool {
        self.formats
            .iter()
            .any(|f| f.tokens.contains(&DateToken::Hour))
    }
}

/// A strptime-style pattern restricted to `%Y`, `%m`, `%d`, `%H`, `%M`, `%S` and literal
/// characters — what real deliveries use (`%Y-%m-%d`, `%d/%m/%Y`, `%d.%m.%Y`,
/// `%Y-%m-%d %H:%M:%S`), parsed without allocation.
#[derive(Debug, Clone, PartialEq)]
pub struct DateFormat {
    pub pattern: String,
    tokens: Vec<DateToken>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum DateToken {
    Year,
    Month,
    Day,
    Hour,
    Minute,
    /// Seconds, with an optional fraction (`05.123`).
    Second,
    Literal(char),
}

impl DateFormat {
    pub fn iso() -> Self {
        Self::parse("%Y-%m-%d").unwrap_or_else(|_| unreachable!("the ISO pattern is valid"))
    }

    /// Compile a pattern; errors name the directive that is not supported.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        let mut tokens = Vec::new();
        let mut chars = pattern.chars();
        let mut seen = [0u8; 6];
        while let Some(c) = chars.next() {
            if c == '%' {
                let (t, k) = match chars.next() {
                    Some('Y') => (DateToken::Year, 0),
                    Some('m') => (DateToken::Month, 1),
                    Some('d') => (DateToken::Day, 2),
                    Some('H') => (DateToken::Hour, 3),
                    Some('M') => (DateToken::Minute, 4),
                    Some('S') => (DateToken::Second, 5),
                    Some(other) => {
                        return Err(format!(
                            "date format directive `%{other}` is not supported (use %Y, %m, %d, optionally %H, %M, %S, and literal characters)"
                        ));
                    }
                    None => return Err("date format ends with a lone `%`".into()),
                };
                seen[k] += 1;
                tokens.push(t);
            } else {
                tokens.push(DateToken::Literal(c));
            }
        }
        if seen[..3] != [1, 1, 1] || seen[3..].iter().any(|n| *n > 1) {
            return Err(format!(
                "date format `{pattern}` must contain %Y, %m and %d exactly once each (and %H, %M, %S at most once)"
            ));
        }
        if seen[3] == 0 && (seen[4] > 0 || seen[5] > 0) {
            return Err(format!(
                "date format `{pattern}` has minutes or seconds without %H"
            ));
        }
        Ok(DateFormat {
            pattern: pattern.to_string(),
            tokens,
        })
    }

    /// Parse a value; `None` when it does not match the pattern or is not a calendar date.
    pub fn parse_date(&self, s: &str) -> Option<chrono::NaiveDate> {
        self.parse_datetime(s).map(|(d, _)| d)
    }

    /// Parse a value into its date and its time of day in seconds (0 without a time part).
    /// `%Y` takes exactly four digits; `%m` and `%d` one or two; `%H`, `%M`, `%S` two.
    fn parse_datetime(&self, s: &str) -> Option<(chrono::NaiveDate, u32)> {
        let b = s.as_bytes();
        let mut i = 0;
        let (mut y, mut m, mut d) = (0i32, 0u32, 0u32);
        let (mut hh, mut mm, mut ss, mut fraction) = (0u32, 0u32, 0u32, false);
        for t in &self.tokens {
            match *t {
                // Separators are nearly always one ASCII byte: compare it without `memcmp`.
                DateToken::Literal(c) if c.is_ascii() => {
                    if b.get(i) != Some(&(c as u8)) {
                        return None;
                    }
                    i += 1;
                }
                DateToken::Literal(c) => {
                    let mut buf = [0u8; 4];
                    let lit = c.encode_utf8(&mut buf).as_bytes();
                    if !b[i..].starts_with(lit) {
                        return None;
                    }
                    i += lit.len();
                }
                DateToken::Year => {
                    let (v, n) = digits(&b[i..], 4, 4)?;
                    y = v as i32;
                    i += n;
                }
                DateToken::Month => {
                    let (v, n) = digits(&b[i..], 1, 2)?;
                    m = v;
                    i += n;
                }
                DateToken::Day => {
                    let (v, n) = digits(&b[i..], 1, 2)?;
                    d = v;
                    i += n;
                }
                DateToken::Hour => {
                    let (v, n) = digits(&b[i..], 2, 2)?;
                    hh = v;
                    i += n;
                }
                DateToken::Minute => {
                    let (v, n) = digits(&b[i..], 2, 2)?;
                    mm = v;
                    i += n;
                }
                DateToken::Second => {
                    let (v, n) = digits(&b[i..], 2, 2)?;
                    ss = v;
                    i += n;
                    if b.get(i) == Some(&b'.') {
                        let (f, k) = digits(&b[i + 1..], 1, 9)?;
                        fraction = f != 0;
                        i += 1 + k;
                    }
                }
            }
        }
        if i != b.len() || hh > 23 || mm > 59 || ss > 60 {
            return None;
        }
        let date = chrono::NaiveDate::from_ymd_opt(y, m, d)?;
        Some((date, hh * 3600 + mm * 60 + ss + u32::from(fraction)))
    }

    /// `day` written in this format, months and days with or without leading zeros
    /// (`pad` = (month, day)); a time part as midnight.
    pub fn write(&self, day: chrono::NaiveDate, (pad_m, pad_d): (bool, bool)) -> String {
        use chrono::Datelike;
        let mut out = String::new();
        for t in &self.tokens {
            match *t {
                DateToken::Literal(c) => out.push(c),
                DateToken::Year => out.push_str(&format!("{:04}", day.year())),
                DateToken::Month if pad_m => out.push_str(&format!("{:02}", day.month())),
                DateToken::Month => out.push_str(&day.month().to_string()),
                DateToken::Day if pad_d => out.push_str(&format!("{:02}", day.day())),
                DateToken::Day => out.push_str(&day.day().to_string()),
                DateToken::Hour | DateToken::Minute | DateToken::Second => out.push_str("00"),
            }
        }
        out
    }
}

fn digits(b: &[u8], min: usize, max: usize) -> Option<(u32, usize)> {
    let n = b
        .iter()
        .take(max)
        .take_while(|c| c.is_ascii_digit())
        .count();
    if n < min {
        return None;
    }
    let v = b[..n]
        .iter()
        .fold(0u32, |acc, c| acc * 10 + u32::from(c - b'0'));
    Some((v, n))
}

/// A typed bound for `minimum` / `maximum`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    Int(i64),
    Float(f64),
    /// Days since 1970-01-01.
    Date(i32),
}

/// The permitted values of an `enum` constraint, typed like the field.
#[derive(Debug, Clone, PartialEq)]
pub enum EnumValues {
    Strings(BTreeSet<String>),
    Ints(BTreeSet<i64>),
}

#[derive(Debug, Clone, Default)]
pub struct Constraints {
    pub required: bool,
    pub unique: bool,
    pub enumeration: Option<EnumValues>,
    pub minimum: Option<Bound>,
    pub maximum: Option<Bound>,
    /// Anchored: the whole value must match, as in Table Schema.
    pub pattern: Option<Pattern>,
    pub min_length: Option<usize>,
    pub max_length: Option<usize>,
}

/// A field's `pattern`: the regular expression, anchored as Table Schema reads it, and for the
/// usual shape of a code's pattern — literal characters and ASCII classes, each a fixed number
/// of times (`E[0-9]{12}`, `[A-Z]{3}`, `MA-[0-9]{2}`) — a matcher of one byte set per byte
/// that answers as the regex does without running its engine (every row of a register goes
/// through it). Anything else (alternation, `+`, `*`, ranges of counts, Unicode classes such
/// as `\d`, anchors) is matched by the regex.
#[derive(Debug, Clone)]
pub struct Pattern {
    regex: Regex,
    /// One allowed byte set per byte of a matching value (a 256-bit set each).
    bytes: Option<Vec<[u64; 4]>>,
}

impl Pattern {
    /// Compile `pattern` (unanchored text, as a schema writes it).
    pub fn new(pattern: &str) -> Result<Pattern, regex::Error> {
        let regex = Regex::new(&format!("^(?:{pattern})$"))?;
        let bytes = regex_syntax::Parser::new()
            .parse(pattern)
            .ok()
            .and_then(|hir| {
                let mut sets = Vec::new();
                fixed_bytes(&hir, &mut sets).then_some(sets)
            });
        Ok(Pattern { regex, bytes })
    }

    /// Whether the whole of `s` matches.
    pub fn is_match(&self, s: &str) -> bool {
        match &self.bytes {
            Some(sets) => {
                s.len() == sets.len()
                    && s.bytes()
                        .zip(sets)
                        .all(|(b, set)| (set[usize::from(b >> 6)] >> (b & 63)) & 1 == 1)
            }
            None => self.regex.is_match(s),
        }
    }

    /// The anchored expression, as messages quote it.
    pub fn as_str(&self) -> &str {
        self.regex.as_str()
    }

    /// Whether the byte matcher answers (for tests and benchmarks).
    pub fn is_fixed(&self) -> bool {
        self.bytes.is_some()
    }
}

/// Append to `sets` one byte set per byte `hir` matches, if it matches a fixed sequence of
/// literal bytes and ASCII classes; false for any other shape.
fn fixed_bytes(hir: &regex_syntax::hir::Hir, sets: &mut Vec<[u64; 4]>) -> bool {
    use regex_syntax::hir::{Class, HirKind};
    const MAX_LEN: usize = 256;
    let one = |b: u8| {
        let mut set = [0u64; 4];
        set[usize::from(b >> 6)] |= 1 << (b & 63);
        set
    };
    match hir.kind() {
        HirKind::Literal(lit) => {
            sets.extend(lit.0.iter().map(|b| one(*b)));
            sets.len() <= MAX_LEN
        }
        HirKind::Class(class) => {
            let mut set = [0u64; 4];
            let mut add = |lo: u32, hi: u32| -> bool {
                if hi > 0x7F {
                    return false;
                }
                for b in lo..=hi {
                    set[(b >> 6) as usize] |= 1 << (b & 63);
                }
                true
            };
            let ascii = match class {
                Class::Unicode(c) => c
                    .ranges()
                    .iter()
                    .all(|r| add(u32::from(r.start()), u32::from(r.end()))),
                Class::Bytes(c) => c
                    .ranges()
                    .iter()
                    .all(|r| add(u32::from(r.start()), u32::from(r.end()))),
            };
            sets.push(set);
            ascii
        }
        HirKind::Repetition(rep) if Some(rep.min) == rep.max => {
            let mut once = Vec::new();
            if !fixed_bytes(&rep.sub, &mut once)
                || once.len().saturating_mul(rep.min as usize) > MAX_LEN
            {
                return false;
            }
            for _ in 0..rep.min {
                sets.extend_from_slice(&once);
            }
            true
        }
        HirKind::Empty => true,
        HirKind::Capture(cap) => fixed_bytes(&cap.sub, sets),
        HirKind::Concat(parts) => parts.iter().all(|h| fixed_bytes(h, sets)),
        _ => false,
    }
}

#[derive(Debug, Clone)]
pub struct Field {
    pub name: String,
    pub field_type: FieldType,
    pub constraints: Constraints,
    /// Raw strings read as null (field-level `missingValues`, else the schema's).
    pub missing_values: Vec<String>,
    pub true_values: Vec<String>,
    pub false_values: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct TableSchema {
    pub fields: Vec<Field>,
    pub primary_key: Vec<String>,
    pub fields_match: FieldsMatch,
}

impl TableSchema {
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    pub fn field_index(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }
}

/// Names migstat adds to every accepted record; a schema may not use them.
pub const RESERVED_COLUMNS: [&str; 2] = ["_file", "_line"];

const TOP_KEYS: &[&str] = &[
    "$schema",
    "name",
    "title",
    "description",
    "fields",
    "missingValues",
    "primaryKey",
    "fieldsMatch",
];
const FIELD_KEYS: &[&str] = &[
    "name",
    "title",
    "description",
    "example",
    "type",
    "format",
    "time",
    "constraints",
    "missingValues",
    "trueValues",
    "falseValues",
];
const CONSTRAINT_KEYS: &[&str] = &[
    "required",
    "unique",
    "enum",
    "minimum",
    "maximum",
    "pattern",
    "minLength",
    "maxLength",
];

struct Issues<'a> {
    file: &'a Path,
    list: Vec<SpecIssue>,
}

impl Issues<'_> {
    fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.list.push(SpecIssue {
            file: self.file.to_path_buf(),
            key: key.into(),
            message: message.into(),
        });
    }

    fn unknown_keys(&mut self, obj: &Map<String, Value>, allowed: &[&str], path: &str) {
        for k in obj.keys() {
            if !allowed.contains(&k.as_str()) {
                self.push(
                    join(path, k),
                    format!(
                        "key `{k}` is not supported by migstat (supported here: {})",
                        allowed.join(", ")
                    ),
                );
            }
        }
    }

    fn strings(&mut self, v: &Value, path: &str) -> Option<Vec<String>> {
        match v.as_array() {
            Some(a) if a.iter().all(Value::is_string) => Some(
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect(),
            ),
            _ => {
                self.push(path, "expected an array of strings");
                None
            }
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Read and compile a schema file. Every problem is reported, not only the first.
pub fn load(path: &Path) -> Result<TableSchema, Vec<SpecIssue>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            return Err(vec![SpecIssue {
                file: path.to_path_buf(),
                key: String::new(),
                message: format!("cannot read schema: {e}"),
            }]);
        }
    };
    parse(&text, path)
}

/// Compile schema JSON text; `file` is used in messages only.
pub fn parse(text: &str, file: &Path) -> Result<TableSchema, Vec<SpecIssue>> {
    let mut is = Issues {
        file,
        list: Vec::new(),
    };
    let root: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            is.push("", format!("not valid JSON: {e}"));
            return Err(is.list);
        }
    };
    let Some(obj) = root.as_object() else {
        is.push("", "a Table Schema must be a JSON object");
        return Err(is.list);
    };
    is.unknown_keys(obj, TOP_KEYS, "");

    let schema_missing = match obj.get("missingValues") {
        Some(v) => is.strings(v, "missingValues").unwrap_or_default(),
        None => vec![String::new()],
    };
    let fields_match = match obj.get("fieldsMatch").map(|v| v.as_str()) {
        None | Some(Some("exact")) => FieldsMatch::Exact,
        Some(Some("equal")) => FieldsMatch::Equal,
        Some(other) => {
            is.push(
                "fieldsMatch",
                format!(
                    "{} is not supported (use \"exact\" or \"equal\")",
                    other.map_or("a non-string value".to_string(), |s| format!("\"{s}\""))
                ),
            );
            FieldsMatch::Exact
        }
    };

    let mut fields = Vec::new();
    match obj.get("fields").and_then(Value::as_array) {
        Some(arr) if !arr.is_empty() => {
            for (i, fv) in arr.iter().enumerate() {
                if let Some(f) = parse_field(fv, &format!("fields[{i}]"), &schema_missing, &mut is)
                {
                    fields.push(f);
                }
            }
        }
        _ => is.push("fields", "required: a non-empty array of field descriptors"),
    }
    let mut seen = BTreeSet::new();
    for (i, f) in fields.iter().enumerate() {
        if !seen.insert(f.name.as_str()) {
            is.push(
                format!("fields[{i}].name"),
                format!("duplicate field name `{}`", f.name),
            );
        }
    }

    let primary_key = match obj.get("primaryKey") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(v) => is.strings(v, "primaryKey").unwrap_or_default(),
    };
    for k in &primary_key {
        if !fields.iter().any(|f| &f.name == k) {
            is.push(
                "primaryKey",
                format!("names `{k}`, which is not a field of this schema"),
            );
        }
    }

    if is.list.is_empty() {
        Ok(TableSchema {
            fields,
            primary_key,
            fields_match,
        })
    } else {
        Err(is.list)
    }
}

/// A date field's `format` — one pattern, or a list tried in order (a migstat extension of
/// Table Schema for registers that mix formats) — and its `time`: what a time of day in the
/// value means (required when a format reads one: `"midnight"` or `"drop"`).
fn date_formats(obj: &Map<String, Value>, path: &str, is: &mut Issues) -> Dates {
    let key = join(path, "format");
    let written: Vec<&str> = match obj.get("format") {
        None => vec!["default"],
        Some(Value::String(f)) => vec![f.as_str()],
        Some(Value::Array(a)) if !a.is_empty() && a.iter().all(Value::is_string) => {
            a.iter().filter_map(Value::as_str).collect()
        }
        Some(_) => {
            is.push(&key, "must be a date pattern or a non-empty list of them, e.g. [\"%Y-%m-%d\", \"%d/%m/%Y\"]");
            vec!["default"]
        }
    };
    let mut formats = Vec::new();
    for f in written {
        match f {
            "default" => formats.push(DateFormat::iso()),
            "any" => is.push(
                &key,
                "format \"any\" guesses and is not supported: name the pattern, e.g. \"%d/%m/%Y\", or list them",
            ),
            p => match DateFormat::parse(p) {
                Ok(df) if formats.contains(&df) => {
                    is.push(&key, format!("`{p}` is listed twice"));
                }
                Ok(df) => formats.push(df),
                Err(msg) => is.push(&key, msg),
            },
        }
    }
    if formats.is_empty() {
        formats.push(DateFormat::iso());
    }
    let mut dates = Dates {
        formats,
        time: TimeOfDay::None,
    };
    if let Some((text, i, a, j, b)) = dates.ambiguity() {
        is.push(
            &key,
            format!(
                "ambiguous: `{text}` is {a} under {} and {b} under {}; a list may not hold formats that read one text as two dates (a register that mixes day-first and month-first dates cannot be read without a rule per record)",
                dates.formats[i].pattern, dates.formats[j].pattern
            ),
        );
    }
    let tkey = join(path, "time");
    dates.time = match (obj.get("time").map(|v| v.as_str()), dates.has_time()) {
        (None, false) => TimeOfDay::None,
        (None, true) => {
            is.push(
                &tkey,
                "a format reads a time of day: say what it means, \"midnight\" (a date written as a datetime: any other time is not a date) or \"drop\" (the date part is kept)",
            );
            TimeOfDay::Drop
        }
        (Some(Some("midnight")), _) => TimeOfDay::Midnight,
        (Some(Some("drop")), _) => TimeOfDay::Drop,
        (Some(_), _) => {
            is.push(&tkey, "must be \"midnight\" or \"drop\"");
            TimeOfDay::Drop
        }
    };
    dates
}

fn parse_field(
    v: &Value,
    path: &str,
    schema_missing: &[String],
    is: &mut Issues<'_>,
) -> Option<Field> {
    let Some(obj) = v.as_object() else {
        is.push(path, "a field descriptor must be a JSON object");
        return None;
    };
    is.unknown_keys(obj, FIELD_KEYS, path);
    let name = match obj.get("name").and_then(Value::as_str) {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => {
            is.push(join(path, "name"), "required: a non-empty string");
            return None;
        }
    };
    if RESERVED_COLUMNS.contains(&name.as_str()) {
        is.push(
            join(path, "name"),
            format!("`{name}` is reserved for the column migstat adds to every record"),
        );
    }
    let type_name = match obj.get("type") {
        None => "string",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => {
            is.push(join(path, "type"), "must be a string");
            "string"
        }
    };
    let format = obj.get("format").and_then(Value::as_str);
    let field_type = match type_name {
        "string" | "integer" | "number" | "boolean" | "year" => {
            if let Some(f) = format.filter(|f| *f != "default") {
                is.push(
                    join(path, "format"),
                    format!(
                        "format `{f}` is not supported for type {type_name} (only \"default\")"
                    ),
                );
            }
            match type_name {
                "string" => FieldType::String,
                "integer" => FieldType::Integer,
                "number" => FieldType::Number,
                "boolean" => FieldType::Boolean,
                _ => FieldType::Year,
            }
        }
        "date" => FieldType::Date(date_formats(obj, path, is)),
        other => {
            is.push(
                join(path, "type"),
                format!(
                    "type `{other}` is not supported (use string, integer, number, boolean, date or year)"
                ),
            );
            FieldType::String
        }
    };
    if type_name != "date" && obj.get("format").is_some_and(|f| !f.is_string()) {
        is.push(join(path, "format"), "must be a string");
    }
    if type_name != "date" && obj.get("time").is_some() {
        is.push(
            join(path, "time"),
            "only date fields have a time of day to read",
        );
    }

    let missing_values = match obj.get("missingValues") {
        Some(v) => is
            .strings(v, &join(path, "missingValues"))
            .unwrap_or_default(),
        None => schema_missing.to_vec(),
    };
    let mut bool_values = |key: &str, default: &[&str]| -> Vec<String> {
        match obj.get(key) {
            Some(v) => {
                if field_type != FieldType::Boolean {
                    is.push(join(path, key), "only allowed on boolean fields");
                }
                is.strings(v, &join(path, key)).unwrap_or_default()
            }
            None => default.iter().map(|s| s.to_string()).collect(),
        }
    };
    let true_values = bool_values("trueValues", &["true", "True", "TRUE", "1"]);
    let false_values = bool_values("falseValues", &["false", "False", "FALSE", "0"]);

    let constraints = match obj.get("constraints") {
        None => Constraints::default(),
        Some(Value::Object(c)) => parse_constraints(c, &join(path, "constraints"), &field_type, is),
        Some(_) => {
            is.push(join(path, "constraints"), "must be a JSON object");
            Constraints::default()
        }
    };
    Some(Field {
        name,
        field_type,
        constraints,
        missing_values,
        true_values,
        false_values,
    })
}

fn parse_constraints(
    c: &Map<String, Value>,
    path: &str,
    ft: &FieldType,
    is: &mut Issues<'_>,
) -> Constraints {
    is.unknown_keys(c, CONSTRAINT_KEYS, path);
    let mut out = Constraints::default();
    let flag = |key: &str, is: &mut Issues<'_>| match c.get(key) {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            is.push(join(path, key), "must be true or false");
            false
        }
    };
    out.required = flag("required", is);
    out.unique = flag("unique", is);

    if let Some(v) = c.get("enum") {
        let p = join(path, "enum");
        match (ft, v.as_array()) {
            (FieldType::String, Some(a)) => match is.strings(v, &p) {
                Some(s) if !a.is_empty() => {
                    out.enumeration = Some(EnumValues::Strings(s.into_iter().collect()))
                }
                _ => is.push(&p, "must be a non-empty array of strings"),
            },
            (FieldType::Integer | FieldType::Year, Some(a)) => {
                let ints: Option<BTreeSet<i64>> = a
                    .iter()
                    .map(|x| {
                        x.as_i64()
                            .or_else(|| x.as_str().and_then(|s| s.parse().ok()))
                    })
                    .collect();
                match ints {
                    Some(s) if !s.is_empty() => out.enumeration = Some(EnumValues::Ints(s)),
                    _ => is.push(&p, "must be a non-empty array of integers"),
                }
            }
            (FieldType::String | FieldType::Integer | FieldType::Year, None) => {
                is.push(&p, "must be an array")
            }
            _ => is.push(
                &p,
                format!(
                    "enum on {} fields is not supported (only string, integer, year)",
                    ft.name()
                ),
            ),
        }
    }

    for key in ["minimum", "maximum"] {
        let Some(v) = c.get(key) else { continue };
        let p = join(path, key);
        let bound = match ft {
            FieldType::Integer | FieldType::Year => v
                .as_i64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                .map(Bound::Int),
            FieldType::Number => v
                .as_f64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                .map(Bound::Float),
            // As in Table Schema, a date bound is written in the field's own format.
            FieldType::Date(fmt) => v
                .as_str()
                .and_then(|s| fmt.parse_date(s).ok())
                .map(|d| Bound::Date(crate::calendar::days_of_date(d))),
            FieldType::String | FieldType::Boolean => {
                is.push(&p, format!("not allowed on {} fields", ft.name()));
                continue;
            }
        };
        match bound {
            Some(b) if key == "minimum" => out.minimum = Some(b),
            Some(b) => out.maximum = Some(b),
            None => is.push(
                &p,
                match ft {
                    FieldType::Date(fmt) => format!(
                        "must be a date written in the field's format {}",
                        fmt.patterns()
                    ),
                    _ => format!("must be a {} value", ft.name()),
                },
            ),
        }
    }

    if let Some(v) = c.get("pattern") {
        let p = join(path, "pattern");
        match v.as_str() {
            Some(pat) => match Pattern::new(pat) {
                Ok(re) => out.pattern = Some(re),
                Err(e) => is.push(&p, format!("invalid regular expression: {e}")),
            },
            None => is.push(&p, "must be a string"),
        }
        if *ft != FieldType::String {
            is.push(&p, "only allowed on string fields");
        }
    }
    for key in ["minLength", "maxLength"] {
        let Some(v) = c.get(key) else { continue };
        let p = join(path, key);
        match v.as_u64().and_then(|n| usize::try_from(n).ok()) {
            Some(n) if key == "minLength" => out.min_length = Some(n),
            Some(n) => out.max_length = Some(n),
            None => is.push(&p, "must be a non-negative integer"),
        }
        if *ft != FieldType::String {
            is.push(&p, "only allowed on string fields");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issues(json: &str) -> Vec<String> {
        match parse(json, Path::new("t.schema.json")) {
            Ok(_) => vec![],
            Err(v) => v.into_iter().map(|i| i.key).collect(),
        }
    }

    #[test]
    fn date_formats_parse_strictly() {
        let iso = DateFormat::iso();
        assert_eq!(
            iso.parse_date("2024-02-29"),
            chrono::NaiveDate::from_ymd_opt(2024, 2, 29)
        );
        assert_eq!(iso.parse_date("2023-02-29"), None);
        assert_eq!(
            iso.parse_date("2024-1-5"),
            chrono::NaiveDate::from_ymd_opt(2024, 1, 5)
        );
        assert_eq!(iso.parse_date("24-01-05"), None);
        assert_eq!(iso.parse_date("2024-01-05 "), None);
        let fr = DateFormat::parse("%d/%m/%Y").unwrap();
        assert_eq!(
            fr.parse_date("31/12/2023"),
            chrono::NaiveDate::from_ymd_opt(2023, 12, 31)
        );
        assert_eq!(fr.parse_date("31/02/2023"), None);
        assert_eq!(fr.parse_date("2023-12-31"), None);
        assert!(DateFormat::parse("%d/%m/%y").is_err());
        assert!(DateFormat::parse("%d/%m").is_err());
    }

    /// The date field `d` of a one-field schema with `extra` JSON keys, or its issues' messages.
    fn date_field(extra: &str) -> Result<Dates, Vec<String>> {
        let json = format!(r#"{{"fields": [{{"name": "d", "type": "date"{extra}}}]}}"#);
        match parse(&json, Path::new("t.schema.json")) {
            Ok(s) => match &s.fields[0].field_type {
                FieldType::Date(d) => Ok(d.clone()),
                other => panic!("{other:?}"),
            },
            Err(v) => Err(v
                .into_iter()
                .map(|i| format!("{}: {}", i.key, i.message))
                .collect()),
        }
    }

    #[test]
    fn a_list_of_date_formats_is_tried_in_order() {
        let ymd = |y, m, d| chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap();
        // The Moroccan register's mix: ISO and day-first with slashes (read by hand).
        let d = date_field(r#", "format": ["%Y-%m-%d", "%d/%m/%Y"]"#).unwrap();
        assert_eq!(d.parse_date("2020-02-01"), Ok(ymd(2020, 2, 1)));
        assert_eq!(d.parse_date("01/02/2020"), Ok(ymd(2020, 2, 1)));
        assert_eq!(d.parse_date("1/2/2020"), Ok(ymd(2020, 2, 1)));
        assert_eq!(d.parse_date("02-01-2020"), Err(DateMiss::NoFormat));
        assert_eq!(d.parse_date("31/02/2020"), Err(DateMiss::NoFormat));
        assert_eq!(d.patterns(), "%Y-%m-%d or %d/%m/%Y");
        // Day-first and day-first with dots do not overlap; day-first and month-first do.
        assert!(date_field(r#", "format": ["%d/%m/%Y", "%d.%m.%Y"]"#).is_ok());
        let e = date_field(r#", "format": ["%d/%m/%Y", "%m/%d/%Y"]"#).unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("fields[0].format: ambiguous: `02/01/2000` is 2000-01-02 under %d/%m/%Y and 2000-02-01 under %m/%d/%Y"),
            "{e:?}"
        );
        // Without separators the same swap: `02012000` is 2 January or 1 February.
        assert!(date_field(r#", "format": ["%d%m%Y", "%m%d%Y"]"#).is_err());
        // Empty lists, duplicates and "any" are refused.
        assert!(date_field(r#", "format": []"#).is_err());
        assert!(date_field(r#", "format": ["%Y-%m-%d", "%Y-%m-%d"]"#).is_err());
        assert!(date_field(r#", "format": ["%Y-%m-%d", "any"]"#).is_err());
    }

    #[test]
    fn a_time_of_day_needs_a_declared_rule() {
        let ymd = |y, m, d| chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap();
        let e = date_field(r#", "format": "%Y-%m-%d %H:%M:%S""#).unwrap_err();
        assert!(
            e[0].starts_with("fields[0].time: a format reads a time of day"),
            "{e:?}"
        );
        let midnight =
            date_field(r#", "format": ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d"], "time": "midnight""#)
                .unwrap();
        assert_eq!(
            midnight.parse_date("2020-03-04 00:00:00"),
            Ok(ymd(2020, 3, 4))
        );
        assert_eq!(
            midnight.parse_date("2020-03-04 00:00:00.000"),
            Ok(ymd(2020, 3, 4))
        );
        assert_eq!(midnight.parse_date("2020-03-04"), Ok(ymd(2020, 3, 4)));
        assert_eq!(
            midnight.parse_date("2020-03-04 13:05:00"),
            Err(DateMiss::NotMidnight)
        );
        assert_eq!(
            midnight.parse_date("2020-03-04 00:00:00.5"),
            Err(DateMiss::NotMidnight)
        );
        assert_eq!(
            midnight.parse_date("2020-03-04 24:00:00"),
            Err(DateMiss::NoFormat)
        );
        let drop = date_field(r#", "format": "%Y-%m-%dT%H:%M:%S", "time": "drop""#).unwrap();
        assert_eq!(drop.parse_date("2020-03-04T23:59:59"), Ok(ymd(2020, 3, 4)));
        assert!(date_field(r#", "time": "noon""#).is_err());
        assert!(DateFormat::parse("%Y-%m-%d %M").is_err());
        assert!(DateFormat::parse("%Y-%m-%d %H %H").is_err());
    }

    #[test]
    fn epoch_days_match_arrow() {
        assert_eq!(
            crate::calendar::days_of_date(chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()),
            0
        );
        assert_eq!(
            crate::calendar::days_of_date(chrono::NaiveDate::from_ymd_opt(2000, 3, 1).unwrap()),
            11017
        );
    }

    #[test]
    fn reports_every_unsupported_key_at_once() {
        let keys = issues(
            r#"{"fields": [
                {"name": "a", "type": "integer", "constraints": {"exclusiveMinimum": 0}},
                {"name": "b", "type": "geopoint"},
                {"name": "c", "type": "date", "format": "any", "rdfType": "x"}
              ], "foreignKeys": []}"#,
        );
        assert_eq!(
            keys,
            vec![
                "foreignKeys",
                "fields[0].constraints.exclusiveMinimum",
                "fields[1].type",
                "fields[2].rdfType",
                "fields[2].format"
            ]
        );
    }

    #[test]
    fn typed_constraints_are_checked_against_the_field_type() {
        let keys = issues(
            r#"{"fields": [
                {"name": "a", "type": "integer", "constraints": {"minimum": "x", "pattern": "[0-9]+"}},
                {"name": "b", "type": "string", "constraints": {"maximum": 3, "pattern": "("}},
                {"name": "a"}
              ], "primaryKey": ["zz"]}"#,
        );
        assert_eq!(
            keys,
            vec![
                "fields[0].constraints.minimum",
                "fields[0].constraints.pattern",
                "fields[1].constraints.maximum",
                "fields[1].constraints.pattern",
                "fields[2].name",
                "primaryKey"
            ]
        );
    }

    #[test]
    fn a_fixed_pattern_answers_as_its_regex_does() {
        // Each pattern against strings made of its own characters, neighbours and non-ASCII:
        // the byte matcher (where the pattern has the fixed shape) must agree with the regex.
        let cases = [
            ("E[0-9]{12}", true),
            ("T[0-9]{10}", true),
            ("[A-Z]{3}", true),
            ("MA-[0-9]{2}", true),
            ("(?i)ab[c-e]", true),
            ("(x[0-9]){2}y", true),
            ("é[a-c]", true),
            ("", true),
            ("[^0-9]{2}", false),
            (r"\d{3}", false),
            ("[A-Z]{2,3}", false),
            ("[A-Z]+", false),
            ("a|b", true), // one character of two: a class
            ("ab|c", false),
            ("[A-Zé]{2}", false),
        ];
        let alphabet: Vec<char> = "ABCEMTXYZabcdexy0123456789-é٣ ".chars().collect();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for (pattern, fixed) in cases {
            let p = Pattern::new(pattern).unwrap();
            assert_eq!(p.is_fixed(), fixed, "{pattern}");
            let regex = Regex::new(&format!("^(?:{pattern})$")).unwrap();
            for _ in 0..20_000 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let len = (state % 15) as usize;
                let s: String = (0..len)
                    .map(|i| alphabet[((state >> (4 + 3 * i)) as usize) % alphabet.len()])
                    .collect();
                assert_eq!(p.is_match(&s), regex.is_match(&s), "{pattern} on {s:?}");
            }
            // Values that do match, written out by hand.
            for yes in match pattern {
                "E[0-9]{12}" => &["E000000000001", "E999999999999"][..],
                "MA-[0-9]{2}" => &["MA-01"][..],
                "(?i)ab[c-e]" => &["ABC", "abe", "aBd"][..],
                "(x[0-9]){2}y" => &["x1x2y"][..],
                "é[a-c]" => &["éb"][..],
                "" => &[""][..],
                _ => &[][..],
            } {
                assert!(p.is_match(yes), "{pattern} on {yes}");
            }
        }
    }

    #[test]
    fn a_valid_schema_compiles() {
        let s = parse(
            r#"{"$schema": "https://datapackage.org/profiles/2.0/tableschema.json",
                "missingValues": ["", "NA"], "primaryKey": "id", "fields": [
                {"name": "id", "type": "string", "constraints": {"required": true, "unique": true, "pattern": "P[0-9]+"}},
                {"name": "age", "type": "integer", "constraints": {"minimum": 0, "maximum": 120}},
                {"name": "d", "type": "date", "format": "%d/%m/%Y", "constraints": {"minimum": "01/01/1900"}},
                {"name": "s", "type": "string", "missingValues": ["-"], "constraints": {"enum": ["M", "F"]}}
              ]}"#,
            Path::new("t"),
        )
        .unwrap();
        assert_eq!(s.primary_key, vec!["id"]);
        assert_eq!(s.fields[0].missing_values, vec!["", "NA"]);
        assert_eq!(s.fields[3].missing_values, vec!["-"]);
        assert!(
            s.fields[0]
                .constraints
                .pattern
                .as_ref()
                .unwrap()
                .is_match("P12")
        );
        assert!(
            !s.fields[0]
                .constraints
                .pattern
                .as_ref()
                .unwrap()
                .is_match("xP12")
        );
        assert_eq!(s.fields[2].constraints.minimum, Some(Bound::Date(-25567)));
    }
}
