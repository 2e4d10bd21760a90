//! Row-level problems: the rules a row can break and the quarantine dataset they form.
//!
//! Input: [`Issue`]s raised by `ingest` (structure, encoding) and `validate` (schema checks).
//! Output: a quarantine [`DataFrame`] with one row per problem, so a row with several problems
//! appears several times, each naming its field, rule, raw value and a message.

use polars::prelude::*;

use crate::error::{PolarsContext, Result};

/// Why a row was quarantined. The string form is the `rule` column of the quarantine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    /// The record has more or fewer fields than the header.
    RaggedRow,
    /// The bytes of a field are not valid in the source's declared encoding.
    InvalidEncoding,
    /// A required field is empty or holds a missing-value marker.
    Required,
    /// The value cannot be read as the field's type (integer, number, boolean, date, year).
    Type,
    Enum,
    Minimum,
    Maximum,
    Pattern,
    MinLength,
    MaxLength,
    /// A second row with the same value in a `unique` field.
    Unique,
    /// A second row with the same primary key.
    PrimaryKey,
    /// A raw code no crosswalk maps (and the spec says to quarantine it).
    UnmappedCode,
    /// A value after the date (or year) it may not follow: a birth after the reference date,
    /// an arrival after the permit (`not_after` in the source's `checks`).
    NotAfter,
    /// A value before the one it may not precede: an end before its start (`not_before`).
    NotBefore,
    /// A derived age outside its plausible range (`range`, 0–120 unless the spec says otherwise).
    AgeRange,
}

impl Rule {
    pub const ALL: [Rule; 16] = [
        Rule::RaggedRow,
        Rule::InvalidEncoding,
        Rule::Required,
        Rule::Type,
        Rule::Enum,
        Rule::Minimum,
        Rule::Maximum,
        Rule::Pattern,
        Rule::MinLength,
        Rule::MaxLength,
        Rule::Unique,
        Rule::PrimaryKey,
        Rule::UnmappedCode,
        Rule::NotAfter,
        Rule::NotBefore,
        Rule::AgeRange,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rule::RaggedRow => "ragged_row",
            Rule::InvalidEncoding => "invalid_encoding",
            Rule::Required => "required",
            Rule::Type => "type",
            Rule::Enum => "enum",
            Rule::Minimum => "minimum",
            Rule::Maximum => "maximum",
            Rule::Pattern => "pattern",
            Rule::MinLength => "min_length",
            Rule::MaxLength => "max_length",
            Rule::Unique => "unique",
            Rule::PrimaryKey => "primary_key",
            Rule::UnmappedCode => "unmapped_code",
            Rule::NotAfter => "not_after",
            Rule::NotBefore => "not_before",
            Rule::AgeRange => "age_range",
        }
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem with one row of a chunk.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    /// Row index within the chunk.
    pub row: u32,
    /// Schema field index; `None` for problems of the whole row.
    pub field: Option<usize>,
    pub rule: Rule,
    pub raw: Option<String>,
    pub message: String,
}

/// Longest raw value kept in the quarantine (a ragged row's whole text can be long).
const MAX_RAW_CHARS: usize = 500;

pub fn clip(s: &str) -> String {
    match s.char_indices().nth(MAX_RAW_CHARS) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Column names of the quarantine dataset, in order.
pub const COLUMNS: [&str; 8] = [
    "source_id",
    "file",
    "line",
    "record",
    "field",
    "rule",
    "raw_value",
    "message",
];

pub fn schema() -> Schema {
    Schema::from_iter([
        Field::new("source_id".into(), DataType::String),
        Field::new("file".into(), DataType::String),
        Field::new("line".into(), DataType::UInt64),
        Field::new("record".into(), DataType::UInt64),
        Field::new("field".into(), DataType::String),
        Field::new("rule".into(), DataType::String),
        Field::new("raw_value".into(), DataType::String),
        Field::new("message".into(), DataType::String),
    ])
}

/// Accumulates quarantine rows, column by column.
#[derive(Default)]
pub struct QuarantineBuilder {
    source_id: Vec<String>,
    file: Vec<String>,
    line: Vec<Option<u64>>,
    record: Vec<u64>,
    field: Vec<Option<String>>,
    rule: Vec<&'static str>,
    raw: Vec<Option<String>>,
    message: Vec<String>,
}

/// Where a chunk row came from.
pub struct RowOrigin<'a> {
    pub source_id: &'a str,
    pub file: &'a str,
    pub line: Option<u64>,
    pub record: u64,
}

impl QuarantineBuilder {
    pub fn len(&self) -> usize {
        self.rule.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rule.is_empty()
    }

    pub fn push(&mut self, at: &RowOrigin<'_>, field: Option<&str>, issue: Issue) {
        self.source_id.push(at.source_id.to_string());
        self.file.push(at.file.to_string());
        self.line.push(at.line);
        self.record.push(at.record);
        self.field.push(field.map(str::to_string));
        self.rule.push(issue.rule.as_str());
        self.raw.push(issue.raw.as_deref().map(clip));
        self.message.push(issue.message);
    }

    pub fn finish(self) -> Result<DataFrame> {
        DataFrame::new_infer_height(vec![
            Column::new("source_id".into(), self.source_id),
            Column::new("file".into(), self.file),
            Column::new("line".into(), self.line),
            Column::new("record".into(), self.record),
            Column::new("field".into(), self.field),
            Column::new("rule".into(), self.rule),
            Column::new("raw_value".into(), self.raw),
            Column::new("message".into(), self.message),
        ])
        .ctx(|| "building the quarantine table".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_names_are_unique_snake_case() {
        let names: std::collections::BTreeSet<_> = Rule::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), Rule::ALL.len());
        assert!(
            names
                .iter()
                .all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        );
    }

    #[test]
    fn clip_keeps_short_values_and_cuts_long_ones_on_char_boundaries() {
        assert_eq!(clip("abc"), "abc");
        let long = "é".repeat(600);
        let c = clip(&long);
        assert_eq!(c.chars().count(), MAX_RAW_CHARS + 1);
        assert!(c.ends_with('…'));
    }

    #[test]
    fn builder_matches_declared_schema() {
        let mut b = QuarantineBuilder::default();
        let at = RowOrigin {
            source_id: "s",
            file: "f.csv",
            line: Some(3),
            record: 2,
        };
        b.push(
            &at,
            Some("age"),
            Issue {
                row: 0,
                field: Some(1),
                rule: Rule::Maximum,
                raw: Some("150".into()),
                message: "m".into(),
            },
        );
        let df = b.finish().unwrap();
        assert_eq!(df.schema().as_ref(), &schema());
        let names: Vec<&str> = df.get_column_names().iter().map(|n| n.as_str()).collect();
        assert_eq!(names, COLUMNS.to_vec());
    }
}
