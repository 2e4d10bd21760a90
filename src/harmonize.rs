//! Harmonize: brings validated records onto standard code lists and derives the variables every
//! table is disaggregated by.
//!
//! Input: typed columns of accepted records (a birth date, a single-year age) and the code lists
//! in `schemas/codelists/`. Output: standard codes — age in completed years at a reference date,
//! and any age banding of it.
//!
//! [`Harmonizer`] runs per chunk after validation: it appends the derived columns a source's
//! `[sources.<id>.harmonize]` declares (a code column with `value_labels = true` reads each value's
//! label in its own file first: SPSS, Stata) and moves rows whose raw code no crosswalk maps to the
//! quarantine (rule `unmapped_code`), or maps them to the code the spec names (e.g. `_U`); either
//! way every unmapped raw value is counted for the run report. Plausibility is checked here too: a
//! derived age outside its range (`age_range`) and the source's `checks` between fields or against
//! the reference date (`not_after`, `not_before`) quarantine the record. Bandings are always
//! derived from single-year age, never from a producer's own bands, because producers' bands do not
//! nest. A missing (null) raw value becomes `_U`; a code-list attribute that is empty becomes `_Z`.
//!
//! A derived code column whose codes the spec fixes is made as a polars `Enum` of them (see
//! `EnumCodes`): each distinct raw value is looked up once with its code's index, and the
//! Parquet writer takes the indices as the dictionary. [`as_text`] gives a chunk's codes as
//! text, for the readers of a chunk in the pass.

// Per-chunk caches of raw value → code: few distinct values, looked up millions of times;
// XXH3 hashes them faster than the default SipHash (the keys are the chunk's own values and
// each map lives for one chunk).
use std::collections::{BTreeMap, HashMap};
use xxhash_rust::xxh3::Xxh3Builder;

use chrono::NaiveDate;
use polars::prelude::*;

use crate::calendar::{age_at, date_of_days, days_of_date};
use crate::error::{Error, PolarsContext, Result};
pub use crate::manifest::UnmappedValue;
use crate::quarantine::{Issue, QuarantineBuilder, RowOrigin, Rule};
use crate::spec::Unmapped;
use crate::spec::{Against, Check, CheckRule, CodeList, Derivation, Plan, SourcePlan};
use crate::vocab::{FOREIGN, NATIONAL, NOT_APPLICABLE, UNKNOWN, raw_column};

/// The harmonized part of one chunk.
pub struct Harmonized {
    pub accepted: DataFrame,
    pub quarantine: DataFrame,
    pub rows_quarantined: u64,
    /// Quarantine rows per rule (unmapped codes and plausibility rules).
    pub by_rule: BTreeMap<Rule, u64>,
}

/// The most unmapped raw values a source's report lists (the most frequent first).
pub const UNMAPPED_LISTED: usize = 100;

/// Derives a source's standard columns, chunk by chunk.
pub struct Harmonizer<'p> {
    plan: &'p Plan,
    source: &'p SourcePlan,
    /// Per code column: normalized code → code, for values that already are codes of the list.
    identity: Vec<HashMap<String, String>>,
    /// Per derived column: its codes as an `Enum`, when the spec fixes every code it can take.
    enums: Vec<Option<EnumCodes>>,
    unmapped: UnmappedCounts,
}

/// A derived code column whose every possible code the spec fixes (a crosswalk's and code
/// list's codes, a banding's bands, a code list's attribute values, plus `_U` and the
/// like): built as a polars `Enum` of those codes, sorted. The Parquet writer then takes the
/// codes' indices as the column's dictionary instead of hashing every value again (about a
/// quarter of the writer's work on the benchmark's derived columns, BENCHMARKS.md), and the
/// files still declare the column as text (`ParquetSink`), so every reader sees the same
/// strings. The same codes in the same order for every chunk: the bytes do not depend on
/// how the rows were chunked.
struct EnumCodes {
    dtype: DataType,
    index: HashMap<String, u32>,
}

impl EnumCodes {
    fn new(codes: std::collections::BTreeSet<String>) -> Option<Self> {
        let categories = FrozenCategories::new(codes.iter().map(String::as_str)).ok()?;
        let index = codes
            .into_iter()
            .enumerate()
            .map(|(i, c)| u32::try_from(i).map(|i| (c, i)))
            .collect::<std::result::Result<_, _>>()
            .ok()?;
        Some(EnumCodes {
            dtype: DataType::from_frozen_categories(categories),
            index,
        })
    }

    /// The index of `code`; an error naming the column for a code outside the set, which
    /// would be a fault of [`closed_codes`].
    fn of(&self, code: &str, column: &str) -> Result<u32> {
        self.index.get(code).copied().ok_or_else(|| {
            Error::Internal(format!(
                "derived column {column}: code {} is not among the codes its spec fixes",
                crate::error::quote(code)
            ))
        })
    }

    /// A column of these codes from their indices (`None`: null).
    fn column(&self, name: &str, idx: &[Option<u32>]) -> Result<Column> {
        macro_rules! build {
            ($chunked:ty, $native:ty, $cat:ty) => {{
                let ca: $chunked = idx
                    .iter()
                    .map(|i| i.and_then(|i| <$native>::try_from(i).ok()))
                    .collect();
                CategoricalChunked::<$cat>::from_cats_and_dtype(
                    ca.with_name(name.into()),
                    self.dtype.clone(),
                )
                .into_series()
                .into_column()
            }};
        }
        Ok(match self.dtype.cat_physical() {
            Ok(CategoricalPhysical::U8) => build!(UInt8Chunked, u8, Categorical8Type),
            Ok(CategoricalPhysical::U16) => build!(UInt16Chunked, u16, Categorical16Type),
            Ok(CategoricalPhysical::U32) => build!(UInt32Chunked, u32, Categorical32Type),
            Err(e) => {
                return Err(Error::Internal(format!(
                    "derived column {name}: its Enum type has no physical type ({e})"
                )));
            }
        })
    }
}

/// A derived code column's values as they are made: the codes, or their indices in the
/// column's `Enum` (each pushed value carries both; the one the column is built of is kept).
enum Out<'a> {
    Text(Vec<Option<&'a str>>),
    Index(Vec<Option<u32>>),
}

impl<'a> Out<'a> {
    fn new(indexed: bool, rows: usize) -> Self {
        match indexed {
            true => Out::Index(Vec::with_capacity(rows)),
            false => Out::Text(Vec::with_capacity(rows)),
        }
    }

    #[inline]
    fn push(&mut self, code: Option<(&'a str, u32)>) {
        match self {
            Out::Text(v) => v.push(code.map(|c| c.0)),
            Out::Index(v) => v.push(code.map(|c| c.1)),
        }
    }

    fn column(self, name: &str, codes: Option<&EnumCodes>) -> Result<Column> {
        match (self, codes) {
            (Out::Index(idx), Some(e)) => e.column(name, &idx),
            (Out::Text(v), _) => Ok(Column::new(name.into(), v)),
            (Out::Index(_), None) => Err(Error::Internal(format!(
                "derived column {name}: indices without its codes"
            ))),
        }
    }
}

/// Every code derived column `d` can take, when its spec fixes them; `None` for a column whose
/// codes are the data's own (pass-through codes, months, ages, statuses).
fn closed_codes(
    plan: &Plan,
    d: &crate::spec::Derived,
    identity: &HashMap<String, String>,
) -> Option<std::collections::BTreeSet<String>> {
    let mut codes = std::collections::BTreeSet::new();
    codes.insert(UNKNOWN.to_string());
    match &d.derivation {
        Derivation::Code { map, unmapped, .. } => {
            match unmapped {
                Unmapped::Observed => return None,
                Unmapped::Code(c) => {
                    codes.insert(c.clone());
                }
                Unmapped::Quarantine => {}
            }
            codes.extend(map.values().cloned());
            codes.extend(identity.values().cloned());
        }
        Derivation::Band { banding, .. } => {
            codes.extend(banding.bands.iter().map(|b| b.2.clone()));
        }
        Derivation::Lookup {
            codelist,
            column,
            national,
            ..
        } => {
            let list = plan.codelists.get(codelist)?;
            for code in list.rows.keys() {
                codes.insert(
                    match list.attribute(code, column) {
                        Some("") => NOT_APPLICABLE,
                        Some(v) => v,
                        None => UNKNOWN,
                    }
                    .to_string(),
                );
            }
            if national.is_some() {
                codes.insert(NATIONAL.to_string());
            }
        }
        Derivation::Foreign { .. } => {
            codes.extend([NATIONAL.to_string(), FOREIGN.to_string()]);
        }
        Derivation::Age { .. }
        | Derivation::Status { .. }
        | Derivation::Month { .. }
        | Derivation::Year { .. } => return None,
    }
    Some(codes)
}

/// `df` with every `Enum` column as text: what the pass's own readers of a chunk (the streamed
/// tables, the survey sums) take, as they would read it back from the file.
pub fn as_text(mut df: DataFrame) -> Result<DataFrame> {
    let names: Vec<PlSmallStr> = df
        .columns()
        .iter()
        .filter(|c| matches!(c.dtype(), DataType::Enum(..)))
        .map(|c| c.name().clone())
        .collect();
    for n in names {
        let c = df
            .column(&n)
            .and_then(|c| c.cast(&DataType::String))
            .ctx(|| format!("column {n} as text"))?;
        df.with_column(c).ctx(|| format!("column {n} as text"))?;
    }
    Ok(df)
}

/// Each row of code column `c` (text, or an earlier derived column's `Enum`) mapped through
/// `f`, which runs once per distinct value: once per code of an `Enum`, else once per
/// distinct string of the chunk. `None` is a missing value.
fn map_codes<T: Copy>(
    c: &Column,
    what: &str,
    mut f: impl FnMut(Option<&str>) -> Result<T>,
) -> Result<Vec<T>> {
    let missing = f(None)?;
    if let DataType::Enum(categories, _) = c.dtype() {
        let table = categories
            .categories()
            .values_iter()
            .map(|code| f(Some(code)))
            .collect::<Result<Vec<T>>>()?;
        // The codes' indices, read from the physical array (a Series of u8 or u16 would need
        // polars features this build does not have).
        let s = c.as_materialized_series();
        let what_codes = || format!("the codes of {what}");
        let idx: Vec<Option<u32>> = match categories.physical() {
            CategoricalPhysical::U8 => s
                .cat8()
                .ctx(what_codes)?
                .physical()
                .iter()
                .map(|i| i.map(u32::from))
                .collect(),
            CategoricalPhysical::U16 => s
                .cat16()
                .ctx(what_codes)?
                .physical()
                .iter()
                .map(|i| i.map(u32::from))
                .collect(),
            CategoricalPhysical::U32 => s.cat32().ctx(what_codes)?.physical().iter().collect(),
        };
        return idx
            .into_iter()
            .map(|i| match i {
                None => Ok(missing),
                Some(i) => table.get(i as usize).copied().ok_or_else(|| {
                    Error::Internal(format!("{what}: code index {i} outside its Enum"))
                }),
            })
            .collect();
    }
    let mut cache: HashMap<&str, T, Xxh3Builder> = HashMap::with_hasher(Xxh3Builder::new());
    let mut out = Vec::with_capacity(c.len());
    for v in c.str().ctx(|| format!("the codes of {what}"))?.iter() {
        out.push(match v {
            None => missing,
            Some(v) => match cache.get(v) {
                Some(t) => *t,
                None => {
                    let t = f(Some(v))?;
                    cache.insert(v, t);
                    t
                }
            },
        });
    }
    Ok(out)
}

impl<'p> Harmonizer<'p> {
    pub fn new(plan: &'p Plan, source: &'p SourcePlan) -> Self {
        let identity = source
            .harmonize
            .iter()
            .map(|d| match &d.derivation {
                Derivation::Code {
                    codelist: Some(c),
                    normalize,
                    ..
                } => plan
                    .codelists
                    .get(c)
                    .map(|l| {
                        l.rows
                            .keys()
                            .map(|k| (normalize.apply(k), k.clone()))
                            .collect()
                    })
                    .unwrap_or_default(),
                _ => HashMap::new(),
            })
            .collect();
        let enums = source
            .harmonize
            .iter()
            .zip(&identity)
            .map(|(d, id)| closed_codes(plan, d, id).and_then(EnumCodes::new))
            .collect();
        Harmonizer {
            plan,
            source,
            identity,
            enums,
            unmapped: BTreeMap::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.source.harmonize.is_empty() && self.source.checks.is_empty()
    }

    /// The unmapped raw values seen so far, most frequent first.
    ///
    /// At most [`UNMAPPED_LISTED`] values, each at most `error::QUOTE_MAX` bytes (marked when
    /// cut): the list goes to the manifest and the report, and a wrongly mapped column (names
    /// instead of codes) must not carry a register into them. Returns the list and how many
    /// distinct values it leaves out.
    pub fn unmapped(&self) -> (Vec<UnmappedValue>, u64) {
        let mut v = self.unmapped_all();
        v.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then(a.column.cmp(&b.column))
                .then(a.raw.cmp(&b.raw))
        });
        let omitted = v.len().saturating_sub(UNMAPPED_LISTED) as u64;
        v.truncate(UNMAPPED_LISTED);
        for u in &mut v {
            u.raw = crate::error::cap_bytes(&u.raw, crate::error::QUOTE_MAX);
        }
        (v, omitted)
    }

    /// Every unmapped value counted so far, uncapped and unsorted: what a shard hands to the
    /// coordinator, which adds them up with [`Harmonizer::add_unmapped`] before listing them.
    pub fn unmapped_all(&self) -> Vec<UnmappedValue> {
        self.unmapped
            .iter()
            .map(|((column, raw), (field, count, action))| UnmappedValue {
                column: column.clone(),
                field: field.clone(),
                raw: raw.clone(),
                count: *count,
                action: action.clone(),
            })
            .collect()
    }

    /// Add the unmapped values another harmonizer of the same source counted (a shard's).
    pub fn add_unmapped(&mut self, values: Vec<UnmappedValue>) {
        for v in values {
            let e = self
                .unmapped
                .entry((v.column, v.raw))
                .or_insert((v.field, 0, v.action));
            e.1 += v.count;
        }
    }

    /// Append the derived columns to an accepted chunk; rows with a quarantined unmapped code
    /// leave it for the quarantine. `labels` are the value labels of the chunk's file (SPSS,
    /// Stata), which code columns with `value_labels = true` map through first.
    pub fn apply(
        &mut self,
        mut df: DataFrame,
        labels: Option<&crate::ingest::ValueLabels>,
    ) -> Result<Harmonized> {
        let height = df.height();
        let mut issues: Vec<Issue> = Vec::new();
        let (plan, source): (&'p Plan, &'p SourcePlan) = (self.plan, self.source);
        let ctx = |what: &str| format!("harmonizing source {}: {what}", source.id);
        for (di, d) in source.harmonize.iter().enumerate() {
            let col: Column = match &d.derivation {
                Derivation::Code {
                    from,
                    map,
                    normalize,
                    unmapped,
                    crosswalk,
                    value_labels,
                    ..
                } => {
                    // This file's labels of the field, when the column maps through them.
                    let labelled = labels
                        .filter(|_| *value_labels)
                        .and_then(|l| l.get(from.as_str()));
                    let raw = df
                        .column(&raw_column(from))
                        .ctx(|| ctx(from))?
                        .cast(&DataType::String)
                        .ctx(|| ctx(from))?;
                    let raw = raw.str().ctx(|| ctx(from))?;
                    let identity = &self.identity[di];
                    let codes = self.enums[di].as_ref();
                    let index = |code: &str| codes.map_or(Ok(0), |e| e.of(code, &d.name));
                    let unknown = (UNKNOWN, index(UNKNOWN)?);
                    let fallback = match unmapped {
                        Unmapped::Code(c) => Some((c.as_str(), index(c)?)),
                        _ => None,
                    };
                    // Codes borrow from the crosswalk and the code list: no allocation per row;
                    // each distinct value is looked up once, with its code's index.
                    let mut cache: HashMap<&str, Option<(&str, u32)>, Xxh3Builder> =
                        HashMap::with_hasher(Xxh3Builder::new());
                    let mut out = Out::new(codes.is_some(), height);
                    for (row, v) in raw.iter().enumerate() {
                        let Some(v) = v else {
                            out.push(Some(unknown));
                            continue;
                        };
                        // The value the crosswalk reads: its label, when it has one.
                        let label = labelled.and_then(|l| l.get(v)).map(String::as_str);
                        let read = label.unwrap_or(v);
                        let code = match cache.get(v) {
                            Some(c) => *c,
                            None => {
                                let key = normalize.apply(read);
                                let c = match map.get(&key).or_else(|| identity.get(&key)) {
                                    Some(c) => Some((c.as_str(), index(c)?)),
                                    None => None,
                                };
                                cache.insert(v, c);
                                c
                            }
                        };
                        match (code, unmapped) {
                            (Some(c), _) => out.push(Some(c)),
                            (None, Unmapped::Quarantine) => {
                                count_unmapped(
                                    &mut self.unmapped,
                                    &d.name,
                                    from,
                                    read,
                                    "quarantined",
                                );
                                let shown = match label {
                                    Some(l) => format!(
                                        "{} (the label of {})",
                                        crate::error::quote(l),
                                        crate::error::quote(v)
                                    ),
                                    None => crate::error::quote(v),
                                };
                                issues.push(Issue {
                                    row: row as u32,
                                    field: source.schema.field_index(from),
                                    rule: Rule::UnmappedCode,
                                    raw: Some(v.to_string()),
                                    message: format!(
                                        "no code for {shown} (derived column {}{}); add it to the crosswalk",
                                        d.name,
                                        crosswalk.first().map(|p| format!(", crosswalk {}", p.display())).unwrap_or_default()
                                    ),
                                });
                                out.push(None);
                            }
                            (None, Unmapped::Code(c)) => {
                                count_unmapped(&mut self.unmapped, &d.name, from, read, c);
                                out.push(fallback);
                            }
                            // A pass-through column: the value is the code (an empty one is
                            // unknown), listed in the run report.
                            (None, Unmapped::Observed) => {
                                let code = read.trim();
                                if code.is_empty() {
                                    out.push(Some(unknown));
                                } else {
                                    count_unmapped(
                                        &mut self.unmapped,
                                        &d.name,
                                        from,
                                        read,
                                        "observed",
                                    );
                                    // Never an Enum (`closed_codes`): no index.
                                    out.push(Some((code, 0)));
                                }
                            }
                        }
                    }
                    out.column(&d.name, codes)?
                }
                Derivation::Age {
                    birth_date,
                    birth_year,
                    age,
                    at: event,
                    range,
                } => {
                    let at = plan.reference_date;
                    // The event date of each record (days since 1970-01-01), when `at` names one.
                    let events: Option<Vec<Option<i32>>> = match event {
                        Some(e) => {
                            let c = df.column(&raw_column(e)).ctx(|| ctx(e))?.to_physical_repr();
                            Some(c.i32().ctx(|| ctx(e))?.iter().collect())
                        }
                        None => None,
                    };
                    let births: Option<Vec<Option<i32>>> = match birth_date {
                        Some(b) => {
                            let c = df.column(&raw_column(b)).ctx(|| ctx(b))?.to_physical_repr();
                            Some(c.i32().ctx(|| ctx(b))?.iter().collect())
                        }
                        None => None,
                    };
                    let years: Option<Vec<Option<i64>>> = match birth_year {
                        Some(y) => {
                            let c = df
                                .column(&raw_column(y))
                                .ctx(|| ctx(y))?
                                .cast(&DataType::Int64)
                                .ctx(|| ctx(y))?;
                            Some(c.i64().ctx(|| ctx(y))?.iter().collect())
                        }
                        None => None,
                    };
                    let reported: Option<Vec<Option<i64>>> = match age {
                        Some(a) => Some(
                            df.column(&raw_column(a))
                                .ctx(|| ctx(a))?
                                .i64()
                                .ctx(|| ctx(a))?
                                .iter()
                                .collect(),
                        ),
                        None => None,
                    };
                    let [lo, hi] = *range;
                    let mut ages: Vec<Option<u32>> = Vec::with_capacity(height);
                    for row in 0..height {
                        // With `at`, a record without its event date has no age from its birth
                        // date (never the reference date's age in its place).
                        let on = match &events {
                            Some(e) => e[row].and_then(date_of_days),
                            None => Some(at),
                        };
                        let birth = births.as_ref().and_then(|b| b[row]).and_then(date_of_days);
                        let year = years.as_ref().and_then(|y| y[row]);
                        let told = reported.as_ref().and_then(|r| r[row]);
                        // The age in (signed) years, and the field it comes from.
                        let found: Option<(i64, &String, String)> = if let (
                            Some(b),
                            Some(on),
                            Some(f),
                        ) =
                            (birth, on, birth_date.as_ref())
                        {
                            let years = age_at(b, on).map_or(-1, i64::from);
                            Some((years, f, b.to_string()))
                        } else if let (Some(y), Some(on), Some(f)) = (year, on, birth_year.as_ref())
                        {
                            Some((i64::from(chrono::Datelike::year(&on)) - y, f, y.to_string()))
                        } else if let (Some(a), Some(f)) = (told, age.as_ref()) {
                            Some((a, f, a.to_string()))
                        } else {
                            None
                        };
                        match found {
                            Some((a, _, _)) if (i64::from(lo)..=i64::from(hi)).contains(&a) => {
                                ages.push(u32::try_from(a).ok());
                            }
                            Some((a, field, raw)) => {
                                let when = on.map_or_else(String::new, |d| format!(" on {d}"));
                                let what = if a < 0 {
                                    format!("born after the date of its age{when}")
                                } else {
                                    format!("age {a}{when}")
                                };
                                issues.push(Issue {
                                    row: row as u32,
                                    field: source.schema.field_index(field),
                                    rule: Rule::AgeRange,
                                    raw: Some(raw),
                                    message: format!(
                                        "{what}: outside the plausible ages {lo}–{hi} of derived column {} (its `range`)",
                                        d.name
                                    ),
                                });
                                ages.push(None);
                            }
                            None => ages.push(None),
                        }
                    }
                    Column::new(d.name.as_str().into(), ages)
                }
                Derivation::Band { age, banding } => {
                    let c = df.column(age).ctx(|| ctx(age))?;
                    let ages = c.u32().ctx(|| ctx(age))?;
                    match self.enums[di].as_ref() {
                        Some(e) => {
                            // Each band's index once; each age then finds its band.
                            let bands = banding
                                .bands
                                .iter()
                                .map(|b| e.of(&b.2, &d.name))
                                .collect::<Result<Vec<u32>>>()?;
                            let unknown = e.of(UNKNOWN, &d.name)?;
                            let idx: Vec<Option<u32>> = ages
                                .iter()
                                .map(|a| Some(banding.band(a).map_or(unknown, |b| bands[b])))
                                .collect();
                            e.column(&d.name, &idx)?
                        }
                        None => {
                            let codes: Vec<&str> = ages.iter().map(|a| banding.code(a)).collect();
                            Column::new(d.name.as_str().into(), codes)
                        }
                    }
                }
                Derivation::Status { history, at, .. } => {
                    let on: Option<Vec<Option<i32>>> = match at {
                        Some(a) => {
                            let c = df.column(&raw_column(a)).ctx(|| ctx(a))?.to_physical_repr();
                            Some(c.i32().ctx(|| ctx(a))?.iter().collect())
                        }
                        None => None,
                    };
                    let reference = days_of_date(plan.reference_date);
                    let out = statuses(&df, history, |row| {
                        on.as_ref().map_or(Some(reference), |o| o[row])
                    })
                    .ctx(|| ctx("the status history"))?;
                    Column::new(d.name.as_str().into(), out)
                }
                Derivation::Foreign { from, national } => {
                    let c = df.column(from).ctx(|| ctx(from))?;
                    let codes = self.enums[di].as_ref();
                    let index = |code: &str| codes.map_or(Ok(0), |e| e.of(code, &d.name));
                    let values = map_codes(c, from, |code| {
                        let f = foreign_code(code, national);
                        Ok(Some((f, index(f)?)))
                    })?;
                    let mut out = Out::new(codes.is_some(), height);
                    for v in values {
                        out.push(v);
                    }
                    out.column(&d.name, codes)?
                }
                Derivation::Lookup {
                    from,
                    codelist,
                    column,
                    national,
                } => {
                    let list: &CodeList = plan
                        .codelists
                        .get(codelist)
                        .ok_or_else(|| Error::Internal(format!("code list {codelist} vanished")))?;
                    let c = df.column(from).ctx(|| ctx(from))?;
                    let codes = self.enums[di].as_ref();
                    let index = |code: &str| codes.map_or(Ok(0), |e| e.of(code, &d.name));
                    let values = map_codes(c, from, |code| {
                        let a = match code {
                            None => UNKNOWN,
                            Some(k) if national.as_deref() == Some(k) => NATIONAL,
                            Some(k) => match list.attribute(k, column) {
                                Some("") => NOT_APPLICABLE,
                                Some(v) => v,
                                None => UNKNOWN,
                            },
                        };
                        Ok(Some((a, index(a)?)))
                    })?;
                    let mut out = Out::new(codes.is_some(), height);
                    for v in values {
                        out.push(v);
                    }
                    out.column(&d.name, codes)?
                }
                Derivation::Month { date } | Derivation::Year { date } => {
                    let pattern = if matches!(d.derivation, Derivation::Month { .. }) {
                        "%Y-%m"
                    } else {
                        "%Y"
                    };
                    let c = df
                        .column(&raw_column(date))
                        .ctx(|| ctx(date))?
                        .to_physical_repr();
                    let days = c.i32().ctx(|| ctx(date))?;
                    // Few distinct dates: format each once.
                    let mut labels: HashMap<i32, String> = HashMap::new();
                    for day in days.iter().flatten() {
                        labels.entry(day).or_insert_with(|| {
                            NaiveDate::from_num_days_from_ce_opt(day + 719_163).map_or_else(
                                || UNKNOWN.to_string(),
                                |d| d.format(pattern).to_string(),
                            )
                        });
                    }
                    let months: Vec<&str> = days
                        .iter()
                        .map(|day| {
                            day.and_then(|d| labels.get(&d))
                                .map_or(UNKNOWN, String::as_str)
                        })
                        .collect();
                    Column::new(d.name.as_str().into(), months)
                }
            };
            df.with_column(col).ctx(|| ctx(&d.name))?;
        }

        for check in &source.checks {
            self.check(&df, check, &mut issues)?;
        }
        issues.sort_by_key(|i| i.row);
        let mut q = QuarantineBuilder::default();
        let mut bad = vec![false; height];
        let mut by_rule: BTreeMap<Rule, u64> = BTreeMap::new();
        for i in &issues {
            *by_rule.entry(i.rule).or_default() += 1;
        }
        if !issues.is_empty() {
            let files = df
                .column("_file")
                .ctx(|| ctx("_file"))?
                .str()
                .ctx(|| ctx("_file"))?
                .clone();
            let lines = df
                .column("_line")
                .ctx(|| ctx("_line"))?
                .u64()
                .ctx(|| ctx("_line"))?
                .clone();
            let records = df
                .column("_record")
                .ctx(|| ctx("_record"))?
                .u64()
                .ctx(|| ctx("_record"))?
                .clone();
            for issue in issues {
                let row = issue.row as usize;
                bad[row] = true;
                let field = issue.field.map(|f| source.schema.fields[f].name.as_str());
                let at = RowOrigin {
                    source_id: &source.id,
                    file: files.get(row).unwrap_or(""),
                    line: lines.get(row),
                    record: records.get(row).unwrap_or(0),
                };
                q.push(&at, field, issue);
            }
        }
        let rows_quarantined = bad.iter().filter(|b| **b).count() as u64;
        let accepted = if rows_quarantined == 0 {
            df
        } else {
            let keep: BooleanChunked = bad.iter().map(|b| !b).collect();
            df.filter(&keep).ctx(|| ctx("dropping quarantined rows"))?
        };
        Ok(Harmonized {
            accepted,
            quarantine: q.finish()?,
            rows_quarantined,
            by_rule,
        })
    }

    /// Apply one plausibility rule to a chunk: an issue for each record whose `field` comes
    /// after (`not_after`) or before (`not_before`) the other side. Dates compare as days, years
    /// and integers as numbers; the reference date is its year for a year or integer field.
    fn check(&self, df: &DataFrame, check: &Check, issues: &mut Vec<Issue>) -> Result<()> {
        let source = self.source;
        let ctx = |what: &str| format!("checking source {}: {what}", source.id);
        let values = |name: &str| -> Result<(Vec<Option<i64>>, bool)> {
            let c = df.column(&raw_column(name)).ctx(|| ctx(name))?;
            let is_date = c.dtype() == &DataType::Date;
            let v = c
                .to_physical_repr()
                .cast(&DataType::Int64)
                .ctx(|| ctx(name))?;
            Ok((v.i64().ctx(|| ctx(name))?.iter().collect(), is_date))
        };
        let (mine, is_date) = values(&check.field)?;
        let show = |v: i64| {
            if is_date {
                i32::try_from(v)
                    .ok()
                    .and_then(date_of_days)
                    .map_or_else(|| v.to_string(), |d| d.to_string())
            } else {
                v.to_string()
            }
        };
        let reference = if is_date {
            i64::from(days_of_date(self.plan.reference_date))
        } else {
            i64::from(chrono::Datelike::year(&self.plan.reference_date))
        };
        let (theirs, what): (Vec<Option<i64>>, String) = match &check.against {
            Against::ReferenceDate => (
                vec![Some(reference); mine.len()],
                "the reference date".into(),
            ),
            Against::Field(f) => (values(f)?.0, format!("`{f}`")),
        };
        for (row, (a, b)) in mine.iter().zip(&theirs).enumerate() {
            let (Some(a), Some(b)) = (a, b) else { continue };
            let (broken, rule, word) = match check.rule {
                CheckRule::NotAfter => (a > b, Rule::NotAfter, "after"),
                CheckRule::NotBefore => (a < b, Rule::NotBefore, "before"),
            };
            if broken {
                issues.push(Issue {
                    row: row as u32,
                    field: source.schema.field_index(&check.field),
                    rule,
                    raw: Some(show(*a)),
                    message: format!(
                        "`{}` {} is {word} {what} {}: not plausible ([sources.{}.checks])",
                        check.field,
                        show(*a),
                        show(*b),
                        source.id
                    ),
                });
            }
        }
        Ok(())
    }

    /// The derived columns' types as the accepted file is read: every code as text.
    pub fn extend_schema(&self, schema: &mut Schema) {
        for d in &self.source.harmonize {
            let dt = match d.derivation {
                Derivation::Age { .. } => DataType::UInt32,
                _ => DataType::String,
            };
            schema.with_column(d.name.as_str().into(), dt);
        }
    }

    /// The derived columns' types as [`Harmonizer::apply`] makes them and the accepted file is
    /// written: a code column whose codes the spec fixes is an `Enum` of them (the file still
    /// declares it as text, see `ParquetSink`).
    pub fn extend_write_schema(&self, schema: &mut Schema) {
        for (d, e) in self.source.harmonize.iter().zip(&self.enums) {
            let dt = match (&d.derivation, e) {
                (_, Some(e)) => e.dtype.clone(),
                (Derivation::Age { .. }, None) => DataType::UInt32,
                (_, None) => DataType::String,
            };
            schema.with_column(d.name.as_str().into(), dt);
        }
    }
}

type UnmappedCounts = BTreeMap<(String, String), (String, u64, String)>;

fn count_unmapped(counts: &mut UnmappedCounts, column: &str, field: &str, raw: &str, action: &str) {
    let e = counts
        .entry((column.to_string(), raw.to_string()))
        .or_insert_with(|| (field.to_string(), 0, action.to_string()));
    e.1 += 1;
}

/// Each row's status from its `history` (code, date field) columns of `df` (raw fields), on
/// the day `on(row)` (see [`status_on`]).
pub fn statuses<'a>(
    df: &DataFrame,
    history: &'a [(String, String)],
    on: impl Fn(usize) -> Option<i32>,
) -> PolarsResult<Vec<&'a str>> {
    let steps: Vec<Vec<Option<i32>>> = history
        .iter()
        .map(|(_, f)| -> PolarsResult<Vec<Option<i32>>> {
            let c = df.column(&raw_column(f))?.to_physical_repr();
            Ok(c.i32()?.iter().collect())
        })
        .collect::<PolarsResult<_>>()?;
    let codes: Vec<&str> = history.iter().map(|(c, _)| c.as_str()).collect();
    let mut dates = vec![None; steps.len()];
    Ok((0..df.height())
        .map(|row| {
            for (d, s) in dates.iter_mut().zip(&steps) {
                *d = s[row];
            }
            status_on(&codes, &dates, on(row))
        })
        .collect())
}

/// A record's status on day `on` (days since 1970-01-01) from its history: the steps `codes`
/// entered on `dates` (in the history's order). The step entered last on or before `on` (a
/// tie: the step listed later); `_Z` when every dated step is later; `_U` when no step has a
/// date or the record has no date to take the status on.
pub fn status_on<'a>(codes: &[&'a str], dates: &[Option<i32>], on: Option<i32>) -> &'a str {
    let Some(on) = on.filter(|_| dates.iter().any(Option::is_some)) else {
        return UNKNOWN;
    };
    let mut best: Option<(i32, usize)> = None;
    for (i, d) in dates.iter().enumerate() {
        if let Some(d) = *d
            && d <= on
            && best.is_none_or(|(b, _)| d >= b)
        {
            best = Some((d, i));
        }
    }
    best.map_or(NOT_APPLICABLE, |(_, i)| codes[i])
}

/// `NAT`, `FOR` or `_U` for a derived country code (`_U` and `_Z` stay unknown).
pub fn foreign_code<'a>(code: Option<&str>, national: &str) -> &'a str {
    match code {
        None | Some(UNKNOWN) | Some(NOT_APPLICABLE) => UNKNOWN,
        Some(c) if c == national => NATIONAL,
        Some(_) => FOREIGN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nationals_and_foreigners() {
        assert_eq!(foreign_code(Some("MAR"), "MAR"), "NAT");
        assert_eq!(foreign_code(Some("SEN"), "MAR"), "FOR");
        assert_eq!(foreign_code(Some("_U"), "MAR"), "_U");
        assert_eq!(foreign_code(None, "MAR"), "_U");
    }

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn status_on_a_date_follows_the_history() {
        let codes = ["ASYLUM_SEEKER", "REFUGEE"];
        let d = |s: &str| {
            Some(days_of_date(
                NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap(),
            ))
        };
        let (reg, rec) = (d("2015-03-26"), d("2016-05-30"));
        // Before registration, on it, the day before recognition, on it, after it.
        assert_eq!(status_on(&codes, &[reg, rec], d("2015-03-25")), "_Z");
        assert_eq!(status_on(&codes, &[reg, rec], reg), "ASYLUM_SEEKER");
        assert_eq!(
            status_on(&codes, &[reg, rec], d("2016-05-29")),
            "ASYLUM_SEEKER"
        );
        assert_eq!(status_on(&codes, &[reg, rec], rec), "REFUGEE");
        assert_eq!(
            status_on(&codes, &[reg, None], d("2024-12-31")),
            "ASYLUM_SEEKER"
        );
        // Recognised on the day of registration: the later step.
        assert_eq!(status_on(&codes, &[reg, reg], reg), "REFUGEE");
        // No dated step, or no date to take it on: unknown.
        assert_eq!(status_on(&codes, &[None, None], reg), "_U");
        assert_eq!(status_on(&codes, &[reg, rec], None), "_U");
        // Steps out of order in the data: the one entered last by the date.
        assert_eq!(status_on(&codes, &[rec, reg], d("2015-12-31")), "REFUGEE");
    }

    #[test]
    fn age_in_completed_years() {
        let ref_date = d(2024, 12, 31);
        assert_eq!(age_at(d(2000, 3, 1), ref_date), Some(24));
        assert_eq!(
            age_at(d(2000, 12, 31), ref_date),
            Some(24),
            "birthday on the reference date"
        );
        assert_eq!(age_at(d(2001, 1, 1), ref_date), Some(23));
        assert_eq!(age_at(d(2024, 12, 31), ref_date), Some(0));
        assert_eq!(
            age_at(d(2025, 1, 1), ref_date),
            None,
            "born after the reference date"
        );
    }

    #[test]
    fn leap_day_birthdays_turn_over_on_the_first_of_march() {
        let born = d(2000, 2, 29);
        assert_eq!(age_at(born, d(2023, 2, 28)), Some(22));
        assert_eq!(age_at(born, d(2023, 3, 1)), Some(23));
        assert_eq!(age_at(born, d(2024, 2, 28)), Some(23));
        assert_eq!(age_at(born, d(2024, 2, 29)), Some(24));
    }
}
