//! Validate: checks every row of a raw chunk against its Table Schema and splits the chunk.
//!
//! Input: [`RawChunk`]s of one source, in order. Output: [`ValidatedChunk`]s — the accepted rows
//! as a typed polars frame (schema types plus `_file`, `_record`, `_line` lineage columns) and the
//! quarantine rows, one per problem. Every row lands on exactly one side.
//!
//! Checks run column by column (both cores, no allocation per value); `unique` and `primaryKey`
//! keep a set of 128-bit key hashes across chunks and files, so memory grows with the number of
//! distinct keys only. The first occurrence of a key is kept; later ones are quarantined.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};

use polars::prelude::*;
use rayon::prelude::*;

use crate::error::{PolarsContext, Result};
use crate::ingest::RawChunk;
use crate::quarantine::{Issue, QuarantineBuilder, RowOrigin, Rule};
use crate::spec::schema::{Bound, EnumValues, Field, FieldType, TableSchema, days_since_epoch};

/// The accepted and quarantined parts of one chunk.
pub struct ValidatedChunk {
    pub accepted: DataFrame,
    pub quarantine: DataFrame,
    pub rows_read: u64,
    pub rows_quarantined: u64,
    /// Problems per rule (a row with two problems counts under both).
    pub by_rule: BTreeMap<Rule, u64>,
}

/// Where a key was first seen: file index and record number.
#[derive(Clone, Copy)]
struct Seen {
    file: usize,
    record: u64,
}

pub struct Validator {
    source_id: String,
    schema: TableSchema,
    /// Display names of the source's files, by file index.
    files: Vec<String>,
    /// Per `unique` field: key hash → first occurrence.
    unique: Vec<(usize, HashMap<u128, Seen>)>,
    /// Primary-key fields and key hash → first occurrence.
    primary_key: Option<(Vec<usize>, HashMap<u128, Seen>)>,
}

impl Validator {
    pub fn new(source_id: &str, schema: &TableSchema, files: Vec<String>) -> Self {
        let unique = schema
            .fields
            .iter()
            .enumerate()
            .filter(|(_, f)| f.constraints.unique)
            .map(|(i, _)| (i, HashMap::new()))
            .collect();
        let pk: Vec<usize> = schema
            .primary_key
            .iter()
            .filter_map(|k| schema.field_index(k))
            .collect();
        Validator {
            source_id: source_id.to_string(),
            schema: schema.clone(),
            files,
            unique,
            primary_key: (!pk.is_empty()).then(|| (pk, HashMap::new())),
        }
    }

    /// Output schema of the accepted rows.
    pub fn accepted_schema(&self) -> Schema {
        let mut s: Schema = self
            .schema
            .fields
            .iter()
            .map(|f| polars::prelude::Field::new(f.name.as_str().into(), dtype(&f.field_type)))
            .collect();
        s.with_column("_file".into(), DataType::String);
        s.with_column("_record".into(), DataType::UInt64);
        s.with_column("_line".into(), DataType::UInt64);
        s
    }

    pub fn validate(&mut self, mut chunk: RawChunk) -> Result<ValidatedChunk> {
        let height = chunk.height();
        let pk_fields: Vec<usize> = self
            .primary_key
            .as_ref()
            .map(|(k, _)| k.clone())
            .unwrap_or_default();
        let checked: Vec<Result<(Series, Vec<Issue>)>> = self
            .schema
            .fields
            .par_iter()
            .zip(chunk.columns.par_iter())
            .enumerate()
            .map(|(fi, (field, col))| {
                check_column(fi, field, col, &chunk.broken, pk_fields.contains(&fi))
            })
            .collect();
        let mut columns = Vec::with_capacity(checked.len());
        let mut issues = std::mem::take(&mut chunk.issues);
        for c in checked {
            let (s, is) = c?;
            columns.push(s);
            issues.extend(is);
        }

        // Keys: checked in row order so the first occurrence wins, across chunks and files.
        let file = chunk.file_index;
        let record_of = |row: usize| chunk.first_record + row as u64;
        let mut key_issues = Vec::new();
        let unusable: Vec<bool> = {
            let mut u = chunk.broken.clone();
            for i in &issues {
                if i.rule == Rule::Type || i.rule == Rule::InvalidEncoding {
                    u[i.row as usize] = true;
                }
            }
            u
        };
        let physical: Vec<Series> = columns
            .iter()
            .map(|s| s.to_physical_repr().into_owned())
            .collect();
        for (fi, seen) in &mut self.unique {
            let fi = *fi;
            first_wins(
                seen,
                &[&physical[fi]],
                &unusable,
                file,
                chunk.first_record,
                |row, first| {
                    key_issues.push(Issue {
                        row: row as u32,
                        field: Some(fi),
                        rule: Rule::Unique,
                        raw: raw_at(&chunk.columns[fi], row),
                        message: format!(
                            "duplicate value; first seen in {} record {}",
                            self.files[first.file], first.record
                        ),
                    })
                },
            );
        }
        if let Some((fields, seen)) = &mut self.primary_key {
            let cols: Vec<&Series> = fields.iter().map(|&i| &physical[i]).collect();
            first_wins(
                seen,
                &cols,
                &unusable,
                file,
                chunk.first_record,
                |row, first| {
                    let raw = fields
                        .iter()
                        .filter_map(|&i| raw_at(&chunk.columns[i], row))
                        .collect::<Vec<_>>()
                        .join("|");
                    key_issues.push(Issue {
                        row: row as u32,
                        field: (fields.len() == 1).then(|| fields[0]),
                        rule: Rule::PrimaryKey,
                        raw: Some(raw),
                        message: format!(
                            "duplicate primary key ({}); first seen in {} record {}",
                            self.schema.primary_key.join(", "),
                            self.files[first.file],
                            first.record
                        ),
                    })
                },
            );
        }
        issues.extend(key_issues);
        // Stable: within a row, structural problems first, then fields in schema order.
        issues.sort_by_key(|i| i.row);

        let mut bad = vec![false; height];
        let mut by_rule = BTreeMap::new();
        let mut q = QuarantineBuilder::default();
        let file_name = self.files[file].as_str();
        for issue in issues {
            let row = issue.row as usize;
            bad[row] = true;
            *by_rule.entry(issue.rule).or_insert(0u64) += 1;
            let at = RowOrigin {
                source_id: &self.source_id,
                file: file_name,
                line: chunk.line(row),
                record: record_of(row),
            };
            let field = issue.field.map(|f| self.schema.fields[f].name.as_str());
            q.push(&at, field, issue);
        }
        let rows_quarantined = bad.iter().filter(|b| **b).count() as u64;

        let mut cols: Vec<Column> = columns.into_iter().map(Column::from).collect();
        cols.push(Column::new_scalar(
            "_file".into(),
            Scalar::from(PlSmallStr::from(file_name)),
            height,
        ));
        cols.push(Column::new(
            "_record".into(),
            (0..height).map(record_of).collect::<Vec<u64>>(),
        ));
        cols.push(match &chunk.lines {
            Some(l) => Column::new("_line".into(), l.clone()),
            None => Column::full_null("_line".into(), height, &DataType::UInt64),
        });
        let all = DataFrame::new(height, cols)
            .ctx(|| format!("assembling a chunk of source {}", self.source_id))?;
        let keep: BooleanChunked = bad.iter().map(|b| !b).collect();
        let accepted = all
            .filter(&keep)
            .ctx(|| format!("filtering accepted rows of source {}", self.source_id))?;
        Ok(ValidatedChunk {
            accepted,
            quarantine: q.finish()?,
            rows_read: height as u64,
            rows_quarantined,
            by_rule,
        })
    }
}

fn dtype(t: &FieldType) -> DataType {
    match t {
        FieldType::String => DataType::String,
        FieldType::Integer => DataType::Int64,
        FieldType::Number => DataType::Float64,
        FieldType::Boolean => DataType::Boolean,
        FieldType::Date(_) => DataType::Date,
        FieldType::Year => DataType::Int32,
    }
}

fn raw_at(col: &StringChunked, row: usize) -> Option<String> {
    col.get(row).map(str::to_string)
}

/// Record each usable row's key; call `duplicate` with the row and the first occurrence when
/// the key was seen before (in this chunk, an earlier one, or an earlier file).
fn first_wins(
    seen: &mut HashMap<u128, Seen>,
    cols: &[&Series],
    unusable: &[bool],
    file: usize,
    first_record: u64,
    mut duplicate: impl FnMut(usize, Seen),
) {
    for (row, skip) in unusable.iter().enumerate() {
        if *skip {
            continue;
        }
        let Some(h) = key_hash(cols, row) else {
            continue;
        };
        match seen.entry(h) {
            std::collections::hash_map::Entry::Occupied(e) => duplicate(row, *e.get()),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(Seen {
                    file,
                    record: first_record + row as u64,
                });
            }
        }
    }
}

/// A 128-bit hash of the key at `row` (two independently seeded 64-bit hashes); `None` when a
/// key value is null. Collisions are negligible (about n²/2¹²⁹ for n keys).
fn key_hash(cols: &[&Series], row: usize) -> Option<u128> {
    let mut a = std::collections::hash_map::DefaultHasher::new();
    let mut b = std::collections::hash_map::DefaultHasher::new();
    a.write_u8(1);
    b.write_u8(2);
    for s in cols {
        let v = s.get(row).ok()?;
        if v.is_null() {
            return None;
        }
        for h in [&mut a, &mut b] {
            match &v {
                AnyValue::String(x) => x.hash(h),
                AnyValue::Int64(x) => x.hash(h),
                AnyValue::Int32(x) => x.hash(h),
                AnyValue::Float64(x) => x.to_bits().hash(h),
                AnyValue::Boolean(x) => x.hash(h),
                other => other.to_string().hash(h),
            }
            h.write_u8(0xff);
        }
    }
    Some((u128::from(a.finish()) << 64) | u128::from(b.finish()))
}

/// Check one column: read each value as the field's type and test its constraints.
fn check_column(
    fi: usize,
    field: &Field,
    col: &StringChunked,
    broken: &[bool],
    in_primary_key: bool,
) -> Result<(Series, Vec<Issue>)> {
    let mut issues = Vec::new();
    let name: PlSmallStr = field.name.as_str().into();
    let required = field.constraints.required || in_primary_key;
    let mut issue = |row: usize, rule: Rule, raw: &str, message: String| {
        issues.push(Issue {
            row: row as u32,
            field: Some(fi),
            rule,
            raw: Some(raw.to_string()),
            message,
        })
    };
    // Yields (row, Some(text)) for values to check, after missing-value and required handling.
    let values = col.iter().enumerate().map(|(row, v)| match v {
        _ if broken[row] => (row, None, false),
        None => (row, None, true),
        Some(s) if field.missing_values.iter().any(|m| m == s) => (row, None, true),
        Some(s) => (row, Some(s), false),
    });
    let c = &field.constraints;
    let series = match &field.field_type {
        FieldType::String => {
            let mut out: Vec<Option<&str>> = Vec::with_capacity(col.len());
            for (row, v, missing) in values {
                let Some(s) = v else {
                    if missing && required {
                        issue(
                            row,
                            Rule::Required,
                            col.get(row).unwrap_or(""),
                            "a required value is missing".into(),
                        );
                    }
                    out.push(None);
                    continue;
                };
                if let Some(EnumValues::Strings(set)) = &c.enumeration {
                    if !set.contains(s) {
                        issue(
                            row,
                            Rule::Enum,
                            s,
                            format!(
                                "`{s}` is not one of the allowed values ({})",
                                list(set.iter())
                            ),
                        );
                    }
                }
                if let Some(re) = &c.pattern {
                    if !re.is_match(s) {
                        issue(
                            row,
                            Rule::Pattern,
                            s,
                            format!("`{s}` does not match the pattern {}", re.as_str()),
                        );
                    }
                }
                if c.min_length.is_some() || c.max_length.is_some() {
                    let n = s.chars().count();
                    if let Some(min) = c.min_length.filter(|m| n < *m) {
                        issue(
                            row,
                            Rule::MinLength,
                            s,
                            format!("{n} characters, fewer than the minimum {min}"),
                        );
                    }
                    if let Some(max) = c.max_length.filter(|m| n > *m) {
                        issue(
                            row,
                            Rule::MaxLength,
                            s,
                            format!("{n} characters, more than the maximum {max}"),
                        );
                    }
                }
                out.push(Some(s));
            }
            Series::new(name, out)
        }
        FieldType::Integer | FieldType::Year => {
            let is_year = field.field_type == FieldType::Year;
            let mut out: Vec<Option<i64>> = Vec::with_capacity(col.len());
            for (row, v, missing) in values {
                let Some(s) = v else {
                    if missing && required {
                        issue(
                            row,
                            Rule::Required,
                            col.get(row).unwrap_or(""),
                            "a required value is missing".into(),
                        );
                    }
                    out.push(None);
                    continue;
                };
                // A year is exactly four characters (as in Table Schema and frictionless).
                let parsed = if is_year {
                    Some(s)
                        .filter(|s| s.len() == 4)
                        .and_then(|s| s.parse::<i64>().ok())
                        .filter(|y| (0..=9999).contains(y))
                } else {
                    s.trim().parse::<i64>().ok()
                };
                let Some(x) = parsed else {
                    issue(
                        row,
                        Rule::Type,
                        s,
                        format!(
                            "`{s}` is not {}",
                            if is_year { "a year" } else { "an integer" }
                        ),
                    );
                    out.push(None);
                    continue;
                };
                if let Some(EnumValues::Ints(set)) = &c.enumeration {
                    if !set.contains(&x) {
                        issue(
                            row,
                            Rule::Enum,
                            s,
                            format!(
                                "{x} is not one of the allowed values ({})",
                                list(set.iter())
                            ),
                        );
                    }
                }
                check_bounds(c.minimum, c.maximum, Bound::Int(x), s, row, &mut issue);
                out.push(Some(x));
            }
            if is_year {
                Series::new(
                    name,
                    out.into_iter()
                        .map(|o| o.map(|x| x as i32))
                        .collect::<Vec<Option<i32>>>(),
                )
            } else {
                Series::new(name, out)
            }
        }
        FieldType::Number => {
            let mut out: Vec<Option<f64>> = Vec::with_capacity(col.len());
            for (row, v, missing) in values {
                let Some(s) = v else {
                    if missing && required {
                        issue(
                            row,
                            Rule::Required,
                            col.get(row).unwrap_or(""),
                            "a required value is missing".into(),
                        );
                    }
                    out.push(None);
                    continue;
                };
                let Some(x) = s.trim().parse::<f64>().ok().filter(|x| x.is_finite()) else {
                    issue(
                        row,
                        Rule::Type,
                        s,
                        format!("`{s}` is not a finite number (use `.` as the decimal mark)"),
                    );
                    out.push(None);
                    continue;
                };
                check_bounds(c.minimum, c.maximum, Bound::Float(x), s, row, &mut issue);
                out.push(Some(x));
            }
            Series::new(name, out)
        }
        FieldType::Boolean => {
            let mut out: Vec<Option<bool>> = Vec::with_capacity(col.len());
            for (row, v, missing) in values {
                let Some(s) = v else {
                    if missing && required {
                        issue(
                            row,
                            Rule::Required,
                            col.get(row).unwrap_or(""),
                            "a required value is missing".into(),
                        );
                    }
                    out.push(None);
                    continue;
                };
                let x = if field.true_values.iter().any(|t| t == s) {
                    Some(true)
                } else if field.false_values.iter().any(|t| t == s) {
                    Some(false)
                } else {
                    issue(
                        row,
                        Rule::Type,
                        s,
                        format!(
                            "`{s}` is not a boolean (true: {}; false: {})",
                            field.true_values.join("/"),
                            field.false_values.join("/")
                        ),
                    );
                    None
                };
                out.push(x);
            }
            Series::new(name, out)
        }
        FieldType::Date(fmt) => {
            let mut out: Vec<Option<i32>> = Vec::with_capacity(col.len());
            for (row, v, missing) in values {
                let Some(s) = v else {
                    if missing && required {
                        issue(
                            row,
                            Rule::Required,
                            col.get(row).unwrap_or(""),
                            "a required value is missing".into(),
                        );
                    }
                    out.push(None);
                    continue;
                };
                let Some(d) = fmt.parse_date(s) else {
                    issue(
                        row,
                        Rule::Type,
                        s,
                        format!("`{s}` is not a date in the format {}", fmt.pattern),
                    );
                    out.push(None);
                    continue;
                };
                let days = days_since_epoch(d);
                check_bounds(c.minimum, c.maximum, Bound::Date(days), s, row, &mut issue);
                out.push(Some(days));
            }
            Series::new(name, out)
                .cast(&DataType::Date)
                .ctx(|| format!("typing field {} as date", field.name))?
        }
    };
    Ok((series, issues))
}

fn check_bounds(
    min: Option<Bound>,
    max: Option<Bound>,
    x: Bound,
    raw: &str,
    row: usize,
    issue: &mut impl FnMut(usize, Rule, &str, String),
) {
    let below = |b: Bound| match (x, b) {
        (Bound::Int(v), Bound::Int(m)) => v < m,
        (Bound::Float(v), Bound::Float(m)) => v < m,
        (Bound::Date(v), Bound::Date(m)) => v < m,
        _ => false,
    };
    let above = |b: Bound| match (x, b) {
        (Bound::Int(v), Bound::Int(m)) => v > m,
        (Bound::Float(v), Bound::Float(m)) => v > m,
        (Bound::Date(v), Bound::Date(m)) => v > m,
        _ => false,
    };
    if let Some(m) = min.filter(|m| below(*m)) {
        issue(
            row,
            Rule::Minimum,
            raw,
            format!("`{raw}` is below the minimum {}", show(m)),
        );
    }
    if let Some(m) = max.filter(|m| above(*m)) {
        issue(
            row,
            Rule::Maximum,
            raw,
            format!("`{raw}` is above the maximum {}", show(m)),
        );
    }
}

fn show(b: Bound) -> String {
    match b {
        Bound::Int(i) => i.to_string(),
        Bound::Float(f) => f.to_string(),
        Bound::Date(d) => chrono::NaiveDate::from_num_days_from_ce_opt(d + 719_163)
            .map_or_else(|| d.to_string(), |x| x.to_string()),
    }
}

fn list<T: std::fmt::Display>(items: impl Iterator<Item = T>) -> String {
    let v: Vec<String> = items.take(12).map(|x| x.to_string()).collect();
    v.join(", ")
}
