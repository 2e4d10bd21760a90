//! The `[sources.<id>.harmonize]` section: which standard columns a source derives (codes
//! through crosswalks, age at a date, age bands, statuses from a history, code-list lookups,
//! `NAT`/`FOR`, months and years), compiled in dependency order.
//!
//! Input: the TOML table, the source's schema, the code lists and crosswalk files it names.
//! Output: [`Derived`] columns, or a spec issue for every problem.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use toml::{Table, Value};

use super::codelist::{CodeList, Normalize, read_table};
use super::schema::{FieldType, TableSchema};
use super::{Ctx, Section};
use crate::spec::Banding;

/// What happens to a value no crosswalk entry maps.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub enum Unmapped {
    /// The row is quarantined with rule `unmapped_code`.
    Quarantine,
    /// The value becomes this code (e.g. `_U`), and is still counted in the run report.
    Code(String),
    /// The value itself (trimmed) is the code (`unmapped = "observed"`): a pass-through
    /// column whose code list is what the data hold. Each such value is listed in the run
    /// report (what a crosswalk would map); a published table cannot take it as a dimension.
    Observed,
}

#[derive(Debug, Clone, Serialize)]
pub enum Derivation {
    /// A raw field mapped to a code: through the crosswalk, else (with a code list) the value
    /// itself when, normalized, it equals a code of the list.
    Code {
        from: String,
        crosswalk: Vec<PathBuf>,
        #[serde(skip)]
        map: BTreeMap<String, String>,
        codelist: Option<String>,
        normalize: Normalize,
        unmapped: Unmapped,
        /// An SPSS or Stata source's values go through their file's value labels first
        /// (`value_labels = true`): the crosswalk then maps labels ("Femme"), not the numeric
        /// codes, which change between waves and producers. A value without a label is mapped
        /// as delivered.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        value_labels: bool,
    },
    /// Age in completed years from a birth date, else a reported age: at the date in field `at`
    /// of each record (the event: issue, registration, crossing) when given, else at the
    /// reference date. Stock tables take the age at their stock date whatever `at` says.
    ///
    /// With only a `birth_year` (a year field) the age is the age reached during the year of
    /// the event (or of the reference date): its year minus the year of birth, Eurostat's
    /// "age reached" definition for registers that record no birth date.
    Age {
        birth_date: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        birth_year: Option<String>,
        age: Option<String>,
        #[serde(default)]
        at: Option<String>,
        /// The plausible ages, inclusive: a record whose age (at `at`, or the reference date)
        /// falls outside is quarantined with rule `age_range`.
        #[serde(skip_serializing_if = "is_default_range")]
        range: [u32; 2],
    },
    /// A banding of a derived age column.
    Band {
        age: String,
        #[serde(serialize_with = "ser_banding")]
        banding: Banding,
    },
    /// An attribute of a derived code in a code list (a country's M49 sub-region). With
    /// `national`, the country itself is `NAT` (reporting country), kept apart from its region.
    Lookup {
        from: String,
        codelist: String,
        column: String,
        national: Option<String>,
    },
    /// Nationals and foreigners (Eurostat's `NAT` reporting country / `FOR` foreign country) from
    /// a derived country code: `NAT` where it is `national`, `_U` where unknown, else `FOR`.
    Foreign { from: String, national: String },
    /// A record's status on a date, from its history: each step a code and the date field on
    /// which the record entered it (`history = [["ASYLUM_SEEKER", "registration_date"],
    /// ["REFUGEE", "recognition_date"]]`). On a date, the status is the step entered last on
    /// or before it (on a tie, the step listed later); `_Z` before every known step, `_U`
    /// when no step has a date. Taken on the date in field `at` of each record, else on the
    /// reference date; stock tables restate it on their stock date.
    Status {
        history: Vec<(String, String)>,
        at: Option<String>,
        codelist: Option<String>,
    },
    /// `YYYY-MM` of a date field.
    Month { date: String },
    /// `YYYY` of a date field.
    Year { date: String },
}

fn ser_banding<S: serde::Serializer>(b: &Banding, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&b.id)
}

#[derive(Debug, Clone, Serialize)]
pub struct Derived {
    pub name: String,
    pub derivation: Derivation,
}

/// What every derivation of a source is compiled against: its schema, the code lists and
/// bandings, and the columns derived before it.
struct Known<'a> {
    base: &'a Path,
    schema: Option<&'a TableSchema>,
    lists: &'a BTreeMap<String, CodeList>,
    bandings: &'a [Banding],
    before: &'a [Derived],
}

impl Known<'_> {
    /// Report `key` of `d` unless it names a column derived before this one.
    fn derived_before(&self, d: &Section<'_>, key: &str, col: &str, cx: &mut Ctx<'_>) {
        if !self.before.iter().any(|x| x.name == col) {
            cx.push(
                d.key(key),
                format!(
                    "`{}` is not a column derived before this one",
                    super::cap(col)
                ),
            );
        }
    }
}

/// Compile `[sources.<id>.harmonize]`. Derived columns may read other derived columns, in any
/// key order: each is compiled after what it reads.
pub(crate) fn compile_harmonize(
    h: &Section<'_>,
    base: &Path,
    schema: Option<&TableSchema>,
    lists: &BTreeMap<String, CodeList>,
    bandings: &[Banding],
    cx: &mut Ctx<'_>,
) -> Vec<Derived> {
    let mut out: Vec<Derived> = Vec::new();
    for (name, v) in dependency_order(h.names()) {
        let p = h.key(name);
        if name.starts_with(crate::vocab::RAW_PREFIX)
            || name.starts_with('_')
            || out.iter().any(|d| d.name.eq_ignore_ascii_case(name))
        {
            cx.push(&p, format!("derived column names may not start with `{}` or `_`, nor repeat another's name in any case", crate::vocab::RAW_PREFIX));
        }
        let Value::Table(d) = v else {
            cx.push(&p, "must be a table, e.g. { from = \"sexe\", crosswalk = \"...\", codelist = \"sex\" }");
            continue;
        };
        let d = Section::new(d, p);
        let known = Known {
            base,
            schema,
            lists,
            bandings,
            before: &out,
        };
        // The first key that says how the column is derived chooses the reader; that reader's
        // keys are the ones allowed.
        let derivation = if d.has("from") {
            Some(code_derivation(&d, &known, cx))
        } else if d.has("history") {
            Some(status(&d, &known, cx))
        } else if ["birth_date", "birth_year", "age", "at"]
            .iter()
            .any(|k| d.has(k))
        {
            Some(age(&d, &known, cx))
        } else if d.has("banding") {
            band(&d, &known, cx)
        } else if d.has("lookup") {
            Some(lookup(&d, &known, cx))
        } else if d.has("foreign") {
            Some(foreign(&d, &known, cx))
        } else if d.has("month") || d.has("year") {
            Some(month_or_year(&d, &known, cx))
        } else {
            cx.push(d.path(), "say how to derive it: `from` (codes), `birth_date`/`birth_year`/`age`, `banding`, `lookup`, `foreign`, `history`, `month` or `year`");
            continue;
        };
        d.finish(cx);
        if let Some(derivation) = derivation {
            out.push(Derived {
                name: name.clone(),
                derivation,
            });
        }
    }
    out
}

/// `{ history = [[code, date field], ...], at, codelist }`: the status held at a date.
fn status(d: &Section<'_>, k: &Known<'_>, cx: &mut Ctx<'_>) -> Derivation {
    let codelist = cx.str(d, "codelist", false).map(str::to_string);
    if let Some(c) = &codelist
        && !k.lists.contains_key(c)
    {
        cx.push(
            d.key("codelist"),
            format!("no code list `{}`", super::cap(c)),
        );
    }
    let mut history = Vec::new();
    let steps = d.get("history").and_then(Value::as_array);
    for (i, step) in steps.into_iter().flatten().enumerate() {
        let pair = step.as_array().and_then(|a| match a.as_slice() {
            [Value::String(c), Value::String(f)] => Some((c.clone(), f.clone())),
            _ => None,
        });
        let Some((code, field)) = pair else {
            cx.push(
                d.key("history"),
                format!("step {}: write [\"<code>\", \"<date field>\"]", i + 1),
            );
            continue;
        };
        field_ok(k.schema, &field, Some(true), &d.key("history"), cx);
        if let Some(l) = codelist.as_ref().and_then(|c| k.lists.get(c))
            && !l.rows.contains_key(&code)
        {
            cx.push(
                d.key("history"),
                format!(
                    "`{}` is not a code of code list `{}`",
                    super::cap(&code),
                    codelist.as_deref().unwrap_or_default()
                ),
            );
        }
        history.push((code, field));
    }
    if history.is_empty() {
        cx.push(
            d.key("history"),
            "required: the steps in order, e.g. [[\"ASYLUM_SEEKER\", \"registration_date\"], [\"REFUGEE\", \"recognition_date\"]]",
        );
    }
    let at = cx.str(d, "at", false).map(str::to_string);
    if let Some(a) = &at {
        field_ok(k.schema, a, Some(true), &d.key("at"), cx);
    }
    Derivation::Status {
        history,
        at,
        codelist,
    }
}

/// `{ birth_date | birth_year | age, at }`: age in completed years.
fn age(d: &Section<'_>, k: &Known<'_>, cx: &mut Ctx<'_>) -> Derivation {
    let birth_date = cx.str(d, "birth_date", false).map(str::to_string);
    let birth_year = cx.str(d, "birth_year", false).map(str::to_string);
    if let Some(y) = &birth_year {
        let is_year = k
            .schema
            .and_then(|s| s.field(y))
            .is_some_and(|f| matches!(f.field_type, FieldType::Year | FieldType::Integer));
        if k.schema.is_some() && !is_year {
            cx.push(
                d.key("birth_year"),
                format!("field `{}` must be a year field", super::cap(y)),
            );
        }
        if birth_date.is_some() {
            cx.push(
                d.key("birth_year"),
                "give a `birth_date` or a `birth_year`, not both",
            );
        }
    }
    let age = cx.str(d, "age", false).map(str::to_string);
    if let Some(b) = &birth_date {
        field_ok(k.schema, b, Some(true), &d.key("birth_date"), cx);
    }
    if let Some(a) = &age {
        field_ok(k.schema, a, Some(false), &d.key("age"), cx);
    }
    let at = cx.str(d, "at", false).map(str::to_string);
    if let Some(a) = &at {
        field_ok(k.schema, a, Some(true), &d.key("at"), cx);
        if birth_date.is_none() && birth_year.is_none() {
            cx.push(
                d.key("at"),
                "`at` needs a `birth_date` or a `birth_year` (a reported age is already at its own date)",
            );
        }
    }
    let range = match d.get("range") {
        None => DEFAULT_AGE_RANGE,
        Some(v) => {
            let pair = v.as_array().and_then(|a| match a.as_slice() {
                [lo, hi] => Some((lo.as_integer()?, hi.as_integer()?)),
                _ => None,
            });
            match pair.and_then(|(lo, hi)| Some([u32::try_from(lo).ok()?, u32::try_from(hi).ok()?]))
            {
                Some([lo, hi]) if lo <= hi && hi <= 150 => [lo, hi],
                _ => {
                    cx.push(
                        d.key("range"),
                        "must be the plausible ages [lowest, highest], 0 <= lowest <= highest <= 150, e.g. [0, 120]",
                    );
                    DEFAULT_AGE_RANGE
                }
            }
        }
    };
    Derivation::Age {
        birth_date,
        birth_year,
        age,
        at,
        range,
    }
}

/// The ages a record may plausibly have when nothing else is declared (UN and Eurostat
/// population statistics stop at 100+; nobody documented has lived past 122).
pub const DEFAULT_AGE_RANGE: [u32; 2] = [0, 120];

fn is_default_range(r: &[u32; 2]) -> bool {
    *r == DEFAULT_AGE_RANGE
}

/// `{ banding, from_age }`: an age column in bands (of the age derived before, by default).
fn band(d: &Section<'_>, k: &Known<'_>, cx: &mut Ctx<'_>) -> Option<Derivation> {
    let id = cx.str(d, "banding", true).unwrap_or_default().to_string();
    let age = cx
        .str(d, "from_age", false)
        .map(str::to_string)
        .or_else(|| {
            k.before
                .iter()
                .find(|x| matches!(x.derivation, Derivation::Age { .. }))
                .map(|x| x.name.clone())
        });
    let Some(age) = age else {
        cx.push(
            d.path(),
            "a banding needs an age column derived before it (e.g. AGE = { birth_date = \"...\" })",
        );
        return None;
    };
    match k.bandings.iter().find(|b| b.id == id) {
        Some(b) => Some(Derivation::Band {
            age,
            banding: b.clone(),
        }),
        None => {
            cx.push(
                d.key("banding"),
                format!("no banding `{}` in age_bands.csv", super::cap(&id)),
            );
            None
        }
    }
}

/// `{ lookup, codelist, column, national }`: a column of a code list, for a derived code.
fn lookup(d: &Section<'_>, k: &Known<'_>, cx: &mut Ctx<'_>) -> Derivation {
    let from = cx.str(d, "lookup", true).unwrap_or_default().to_string();
    let codelist = cx.str(d, "codelist", true).unwrap_or_default().to_string();
    let column = cx.str(d, "column", true).unwrap_or_default().to_string();
    if !from.is_empty() {
        k.derived_before(d, "lookup", &from, cx);
    }
    match k.lists.get(&codelist) {
        None if codelist.is_empty() => {}
        None => cx.push(
            d.key("codelist"),
            format!("no code list `{}`", super::cap(&codelist)),
        ),
        Some(l) if !column.is_empty() && !l.columns.contains(&column) => cx.push(
            d.key("column"),
            format!(
                "code list `{codelist}` has no column `{}` ({})",
                super::cap(&column),
                l.columns.join(", ")
            ),
        ),
        _ => {}
    }
    let national = national_code(d, &codelist, k.lists, cx);
    Derivation::Lookup {
        from,
        codelist,
        column,
        national,
    }
}

/// `{ foreign, national }`: national or foreign, from a derived code.
fn foreign(d: &Section<'_>, k: &Known<'_>, cx: &mut Ctx<'_>) -> Derivation {
    let from = cx.str(d, "foreign", true).unwrap_or_default().to_string();
    if !from.is_empty() {
        k.derived_before(d, "foreign", &from, cx);
    }
    let national = cx.str(d, "national", true).unwrap_or_default().to_string();
    Derivation::Foreign { from, national }
}

/// `{ month = date field }` or `{ year = date field }`: the period of a date.
fn month_or_year(d: &Section<'_>, k: &Known<'_>, cx: &mut Ctx<'_>) -> Derivation {
    let key = if d.has("month") { "month" } else { "year" };
    let date = cx.str(d, key, true).unwrap_or_default().to_string();
    if !date.is_empty() {
        field_ok(k.schema, &date, Some(true), &d.key(key), cx);
    }
    if key == "month" {
        Derivation::Month { date }
    } else {
        Derivation::Year { date }
    }
}

/// The derivations of `t` in an order where each one comes after the column it reads.
///
/// Columns derived from raw fields first, then each one derived from another derived column
/// (a band of an age, a lookup or `foreign` of a code) once that column is derived, so that
/// chains (a lookup of a lookup) work whatever order the TOML table lists them in; one that
/// reads a column never derived comes last and is reported where it is compiled.
fn dependency_order(t: &Table) -> Vec<(&String, &Value)> {
    let reads = |v: &Value| -> Option<String> {
        let d = v.as_table()?;
        ["lookup", "foreign", "from_age"]
            .iter()
            .find_map(|k| d.get(*k).and_then(Value::as_str).map(str::to_string))
            // A band of "the" age: any age column, all derived from raw fields.
            .or_else(|| d.contains_key("banding").then(String::new))
    };
    let mut ordered: Vec<(&String, &Value)> =
        t.iter().filter(|(_, v)| reads(v).is_none()).collect();
    let mut pending: Vec<(&String, &Value)> =
        t.iter().filter(|(_, v)| reads(v).is_some()).collect();
    while !pending.is_empty() {
        let (ready, wait): (Vec<_>, Vec<_>) = pending.into_iter().partition(|(_, v)| {
            let r = reads(v).unwrap_or_default();
            r.is_empty() || !t.contains_key(&r) || ordered.iter().any(|(n, _)| **n == r)
        });
        if ready.is_empty() {
            ordered.extend(wait);
            break;
        }
        ordered.extend(ready);
        pending = wait;
    }
    ordered
}

/// Report `name` when it is not a field of the source's schema, or not a date field
/// (`want_date = Some(true)`) or an integer field (`Some(false)`) where one is needed.
fn field_ok(
    schema: Option<&TableSchema>,
    name: &str,
    want_date: Option<bool>,
    key: &str,
    cx: &mut Ctx<'_>,
) {
    let Some(s) = schema else { return };
    match s.field(name) {
        None => cx.push(key, format!("field `{name}` is not in the source's schema")),
        Some(f) => {
            let is_date = matches!(f.field_type, FieldType::Date(_));
            if want_date == Some(true) && !is_date {
                cx.push(key, format!("field `{name}` must be a date field"));
            }
            if want_date == Some(false) && !matches!(f.field_type, FieldType::Integer) {
                cx.push(key, format!("field `{name}` must be an integer field"));
            }
        }
    }
}

/// A code column: a raw field through crosswalks (normalized) onto a code list.
fn code_derivation(d: &Section<'_>, k: &Known<'_>, cx: &mut Ctx<'_>) -> Derivation {
    let (base, schema, lists) = (k.base, k.schema, k.lists);
    let p = d.path();
    let pp = format!("{p}.");
    let from = cx.str(d, "from", true).unwrap_or_default().to_string();
    field_ok(schema, &from, None, &format!("{pp}from"), cx);
    let normalize = match d.get("normalize") {
        None => Normalize {
            trim: true,
            lowercase: true,
            nfc: true,
        },
        Some(Value::Array(a)) => {
            let steps: Vec<&str> = a.iter().filter_map(Value::as_str).collect();
            if steps.len() != a.len() || steps.iter().any(|s| !["trim", "lower", "nfc"].contains(s))
            {
                cx.push(
                    format!("{pp}normalize"),
                    "must list steps among \"trim\", \"lower\", \"nfc\"",
                );
            }
            Normalize {
                trim: steps.contains(&"trim"),
                lowercase: steps.contains(&"lower"),
                nfc: steps.contains(&"nfc"),
            }
        }
        Some(_) => {
            cx.push(
                format!("{pp}normalize"),
                "must be a list, e.g. [\"trim\", \"lower\", \"nfc\"]",
            );
            Normalize {
                trim: true,
                lowercase: true,
                nfc: true,
            }
        }
    };
    let codelist = cx.str(d, "codelist", false).map(str::to_string);
    if let Some(c) = &codelist
        && !lists.contains_key(c)
    {
        cx.push(
            format!("{pp}codelist"),
            format!(
                "no code list `{c}` (known: {})",
                lists.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        );
    }
    let mut map = BTreeMap::new();
    let crosswalk: Vec<PathBuf> = match d.get("crosswalk") {
        None => Vec::new(),
        Some(Value::String(c)) => vec![super::clean_path(&base.join(c))],
        Some(Value::Array(a)) if a.iter().all(Value::is_str) => a
            .iter()
            .filter_map(Value::as_str)
            .map(|c| super::clean_path(&base.join(c)))
            .collect(),
        Some(_) => {
            cx.push(
                format!("{pp}crosswalk"),
                "must be a file or a list of files",
            );
            Vec::new()
        }
    };
    for cw in &crosswalk {
        match read_table(cw) {
            Err(e) => cx.push(
                format!("{pp}crosswalk"),
                format!("cannot read {}: {e}", cw.display()),
            ),
            Ok((cols, rows)) => {
                let (Some(ri), Some(ci)) = (
                    cols.iter().position(|c| c == "raw"),
                    cols.iter().position(|c| c == "code"),
                ) else {
                    cx.push(
                        format!("{pp}crosswalk"),
                        format!("{} needs columns `raw` and `code`", cw.display()),
                    );
                    continue;
                };
                for (i, r) in rows.iter().enumerate() {
                    let key = normalize.apply(&r[ri]);
                    let code = r[ci].clone();
                    if let Some(list) = codelist.as_ref().and_then(|c| lists.get(c))
                        && !list.rows.contains_key(&code)
                    {
                        cx.push(
                            format!("{pp}crosswalk"),
                            format!(
                                "{} line {}: `{code}` is not a code of {}",
                                cw.display(),
                                i + 2,
                                list.name
                            ),
                        );
                    }
                    match map.get(&key) {
                        Some(prev) if prev != &code => cx.push(
                            format!("{pp}crosswalk"),
                            format!("{} line {}: `{}` maps to both `{prev}` and `{code}` once normalized", cw.display(), i + 2, r[ri]),
                        ),
                        _ => {
                            map.insert(key, code);
                        }
                    }
                }
            }
        }
    }
    let unmapped = match cx.str(d, "unmapped", false) {
        None | Some("quarantine") => Unmapped::Quarantine,
        Some("observed") => Unmapped::Observed,
        Some(code) => Unmapped::Code(code.to_string()),
    };
    if unmapped == Unmapped::Observed && codelist.is_some() {
        cx.push(
            format!("{pp}unmapped"),
            "`observed` takes the values as codes: it cannot hold to a code list (drop `codelist`, or map the values with a crosswalk)",
        );
    }
    if crosswalk.is_empty() && codelist.is_none() && unmapped != Unmapped::Observed {
        cx.push(
            p,
            "a code column needs a `crosswalk`, a `codelist`, or both (or `unmapped = \"observed\"` to take the values as codes)",
        );
    }
    let value_labels = match d.get("value_labels") {
        None => false,
        Some(Value::Boolean(b)) => *b,
        Some(_) => {
            cx.push(format!("{pp}value_labels"), "must be true or false");
            false
        }
    };
    Derivation::Code {
        from,
        crosswalk,
        map,
        codelist,
        normalize,
        unmapped,
        value_labels,
    }
}

/// A lookup's `national` code: a code of its code list.
fn national_code(
    d: &Section<'_>,
    codelist: &str,
    lists: &BTreeMap<String, CodeList>,
    cx: &mut Ctx<'_>,
) -> Option<String> {
    let pp = format!("{}.", d.path());
    let code = cx.str(d, "national", false)?.to_string();
    if lists
        .get(codelist)
        .is_some_and(|l| !l.rows.contains_key(&code))
    {
        cx.push(
            format!("{pp}national"),
            format!(
                "`{}` is not a code of code list `{codelist}`",
                super::cap(&code)
            ),
        );
    }
    Some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(toml: &str) -> Vec<String> {
        let t: Table = toml.parse().unwrap();
        dependency_order(&t)
            .iter()
            .map(|(n, _)| n.to_string())
            .collect()
    }

    #[test]
    fn derivations_come_after_the_columns_they_read() {
        // Worked by hand: Z reads a raw field; V reads a column nobody derives (ready at once, to
        // be reported when compiled); W bands "the" age; Y reads Z; X reads Y, so it waits a round.
        let got = order(
            r#"
            V = { lookup = "NOPE", codelist = "c", column = "k" }
            W = { banding = "broad" }
            X = { foreign = "Y", national = "MAR" }
            Y = { lookup = "Z", codelist = "c", column = "k" }
            Z = { from = "a" }
            "#,
        );
        assert_eq!(got, ["Z", "V", "W", "Y", "X"]);
        // Two columns that read each other never become ready: they come last, as listed.
        let got = order(
            r#"
            A = { from = "a" }
            P = { lookup = "Q", codelist = "c", column = "k" }
            Q = { lookup = "P", codelist = "c", column = "k" }
            "#,
        );
        assert_eq!(got, ["A", "P", "Q"]);
    }

    /// Compile a `[sources.s.harmonize]` body against a schema with `d` (date) and `a`
    /// (string), no code lists; the issues as `key: message`.
    fn harmonize(body: &str) -> (Vec<Derived>, Vec<String>) {
        let schema = crate::spec::schema::parse(
            r#"{"fields": [{"name": "d", "type": "date"}, {"name": "a"}]}"#,
            Path::new("s.json"),
        )
        .unwrap();
        let t: Table = body.parse().unwrap();
        let mut cx = Ctx {
            file: Path::new("p.toml"),
            issues: Vec::new(),
        };
        let h = Section::new(&t, "sources.s.harmonize");
        let out = compile_harmonize(
            &h,
            Path::new("."),
            Some(&schema),
            &BTreeMap::new(),
            &[],
            &mut cx,
        );
        h.finish(&mut cx);
        let issues = cx
            .issues
            .iter()
            .map(|i| format!("{}: {}", i.key, i.message))
            .collect();
        (out, issues)
    }

    #[test]
    fn a_derivation_allows_the_keys_of_its_own_kind_only() {
        // A month column reads `month`; `year` (another kind's key, also a date) and `codelist`
        // (read by codes, lookups and statuses) are refused, not silently dropped. Hand-written.
        let (out, issues) = harmonize(r#"M = { month = "d", year = "d", codelist = "x" }"#);
        assert_eq!(out.len(), 1);
        assert_eq!(
            issues,
            [
                "sources.s.harmonize.M.codelist: unknown key `codelist` (read here: month)",
                "sources.s.harmonize.M.year: unknown key `year` (read here: month)",
            ]
        );
        // Empty names are refused before any data is read, once each.
        let (_, issues) = harmonize(
            r#"Y = { year = "" }
N = { foreign = "", national = "" }"#,
        );
        assert_eq!(
            issues,
            [
                "sources.s.harmonize.Y.year: must not be empty: write the name, or leave the key out where it is optional",
                "sources.s.harmonize.N.foreign: must not be empty: write the name, or leave the key out where it is optional",
                "sources.s.harmonize.N.national: must not be empty: write the name, or leave the key out where it is optional",
            ]
        );
        // Nothing says how to derive: that one issue, not every key as unknown.
        let (_, issues) = harmonize(r#"Q = { codelist = "x" }"#);
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert!(issues[0].contains("say how to derive it"), "{issues:?}");
    }
}
