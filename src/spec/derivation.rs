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

use super::Ctx;
use super::codelist::{CodeList, Normalize, read_table};
use super::schema::{FieldType, TableSchema};
use crate::spec::Banding;

/// What happens to a value no crosswalk entry maps.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub enum Unmapped {
    /// The row is quarantined with rule `unmapped_code`.
    Quarantine,
    /// The value becomes this code (e.g. `_U`), and is still counted in the run report.
    Code(String),
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

const DERIVE_KEYS: &[&str] = &[
    "from",
    "crosswalk",
    "codelist",
    "normalize",
    "unmapped",
    "birth_date",
    "birth_year",
    "age",
    "at",
    "history",
    "banding",
    "from_age",
    "lookup",
    "column",
    "national",
    "foreign",
    "month",
    "year",
];

/// Compile `[sources.<id>.harmonize]`. Derived columns may read other derived columns, in any
/// key order: each is compiled after what it reads.
pub(crate) fn compile_harmonize(
    t: &Table,
    path: &str,
    base: &Path,
    schema: Option<&TableSchema>,
    lists: &BTreeMap<String, CodeList>,
    bandings: &[Banding],
    cx: &mut Ctx<'_>,
) -> Vec<Derived> {
    let mut out: Vec<Derived> = Vec::new();
    let ordered = dependency_order(t);
    for (name, v) in ordered {
        let p = format!("{path}.{name}");
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
        cx.unknown_keys(d, DERIVE_KEYS, &p);
        let pp = format!("{p}.");
        let derived_before = |col: &str| out.iter().find(|x| x.name == col);
        let derivation = if d.contains_key("from") {
            code_derivation(d, (&p, &pp), base, schema, lists, cx)
        } else if d.contains_key("history") {
            let codelist = cx.str(d, "codelist", &pp, false).map(str::to_string);
            if let Some(c) = &codelist
                && !lists.contains_key(c)
            {
                cx.push(
                    format!("{pp}codelist"),
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
                        format!("{pp}history"),
                        format!("step {}: write [\"<code>\", \"<date field>\"]", i + 1),
                    );
                    continue;
                };
                field_ok(schema, &field, Some(true), &format!("{pp}history"), cx);
                if let Some(l) = codelist.as_ref().and_then(|c| lists.get(c))
                    && !l.rows.contains_key(&code)
                {
                    cx.push(
                        format!("{pp}history"),
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
                    format!("{pp}history"),
                    "required: the steps in order, e.g. [[\"ASYLUM_SEEKER\", \"registration_date\"], [\"REFUGEE\", \"recognition_date\"]]",
                );
            }
            let at = cx.str(d, "at", &pp, false).map(str::to_string);
            if let Some(a) = &at {
                field_ok(schema, a, Some(true), &format!("{pp}at"), cx);
            }
            Derivation::Status {
                history,
                at,
                codelist,
            }
        } else if ["birth_date", "birth_year", "age", "at"]
            .iter()
            .any(|k| d.contains_key(*k))
        {
            let birth_date = cx.str(d, "birth_date", &pp, false).map(str::to_string);
            let birth_year = cx.str(d, "birth_year", &pp, false).map(str::to_string);
            if let Some(y) = &birth_year {
                let is_year = schema
                    .and_then(|s| s.field(y))
                    .is_some_and(|f| matches!(f.field_type, FieldType::Year | FieldType::Integer));
                if schema.is_some() && !is_year {
                    cx.push(
                        format!("{pp}birth_year"),
                        format!("field `{}` must be a year field", super::cap(y)),
                    );
                }
                if birth_date.is_some() {
                    cx.push(
                        format!("{pp}birth_year"),
                        "give a `birth_date` or a `birth_year`, not both",
                    );
                }
            }
            let age = cx.str(d, "age", &pp, false).map(str::to_string);
            if let Some(b) = &birth_date {
                field_ok(schema, b, Some(true), &format!("{pp}birth_date"), cx);
            }
            if let Some(a) = &age {
                field_ok(schema, a, Some(false), &format!("{pp}age"), cx);
            }
            let at = cx.str(d, "at", &pp, false).map(str::to_string);
            if let Some(a) = &at {
                field_ok(schema, a, Some(true), &format!("{pp}at"), cx);
                if birth_date.is_none() && birth_year.is_none() {
                    cx.push(
                        format!("{pp}at"),
                        "`at` needs a `birth_date` or a `birth_year` (a reported age is already at its own date)",
                    );
                }
            }
            Derivation::Age {
                birth_date,
                birth_year,
                age,
                at,
            }
        } else if d.contains_key("banding") {
            let id = cx
                .str(d, "banding", &pp, true)
                .unwrap_or_default()
                .to_string();
            let age = cx
                .str(d, "from_age", &pp, false)
                .map(str::to_string)
                .or_else(|| {
                    out.iter()
                        .find(|x| matches!(x.derivation, Derivation::Age { .. }))
                        .map(|x| x.name.clone())
                });
            let Some(age) = age else {
                cx.push(&p, "a banding needs an age column derived before it (e.g. AGE = { birth_date = \"...\" })");
                continue;
            };
            match bandings.iter().find(|b| b.id == id) {
                Some(b) => Derivation::Band {
                    age,
                    banding: b.clone(),
                },
                None => {
                    cx.push(
                        format!("{pp}banding"),
                        format!("no banding `{id}` in age_bands.csv"),
                    );
                    continue;
                }
            }
        } else if d.contains_key("lookup") {
            let from = cx
                .str(d, "lookup", &pp, true)
                .unwrap_or_default()
                .to_string();
            let codelist = cx
                .str(d, "codelist", &pp, true)
                .unwrap_or_default()
                .to_string();
            let column = cx
                .str(d, "column", &pp, true)
                .unwrap_or_default()
                .to_string();
            if derived_before(&from).is_none() {
                cx.push(
                    format!("{pp}lookup"),
                    format!("`{from}` is not a column derived before this one"),
                );
            }
            match lists.get(&codelist) {
                None => cx.push(
                    format!("{pp}codelist"),
                    format!("no code list `{codelist}`"),
                ),
                Some(l) if !l.columns.contains(&column) => cx.push(
                    format!("{pp}column"),
                    format!(
                        "code list `{codelist}` has no column `{column}` ({})",
                        l.columns.join(", ")
                    ),
                ),
                _ => {}
            }
            let national = national_code(d, &codelist, &pp, lists, cx);
            Derivation::Lookup {
                from,
                codelist,
                column,
                national,
            }
        } else if d.contains_key("foreign") {
            let from = cx
                .str(d, "foreign", &pp, true)
                .unwrap_or_default()
                .to_string();
            if derived_before(&from).is_none() {
                cx.push(
                    format!("{pp}foreign"),
                    format!("`{from}` is not a column derived before this one"),
                );
            }
            let national = cx
                .str(d, "national", &pp, true)
                .unwrap_or_default()
                .to_string();
            Derivation::Foreign { from, national }
        } else if d.contains_key("month") || d.contains_key("year") {
            let key = if d.contains_key("month") {
                "month"
            } else {
                "year"
            };
            let date = cx.str(d, key, &pp, true).unwrap_or_default().to_string();
            field_ok(schema, &date, Some(true), &format!("{pp}{key}"), cx);
            if key == "month" {
                Derivation::Month { date }
            } else {
                Derivation::Year { date }
            }
        } else {
            cx.push(&p, "say how to derive it: `from` (codes), `birth_date`/`birth_year`/`age`, `banding`, `lookup`, `foreign`, `history`, `month` or `year`");
            continue;
        };
        out.push(Derived {
            name: name.clone(),
            derivation,
        });
    }
    out
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
fn code_derivation(
    d: &Table,
    (p, pp): (&str, &str),
    base: &Path,
    schema: Option<&TableSchema>,
    lists: &BTreeMap<String, CodeList>,
    cx: &mut Ctx<'_>,
) -> Derivation {
    let from = cx.str(d, "from", pp, true).unwrap_or_default().to_string();
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
    let codelist = cx.str(d, "codelist", pp, false).map(str::to_string);
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
    if crosswalk.is_empty() && codelist.is_none() {
        cx.push(
            p,
            "a code column needs a `crosswalk`, a `codelist`, or both",
        );
    }
    let unmapped = match cx.str(d, "unmapped", pp, false) {
        None | Some("quarantine") => Unmapped::Quarantine,
        Some(code) => Unmapped::Code(code.to_string()),
    };
    Derivation::Code {
        from,
        crosswalk,
        map,
        codelist,
        normalize,
        unmapped,
    }
}

/// A lookup's `national` code: a code of its code list.
fn national_code(
    d: &Table,
    codelist: &str,
    pp: &str,
    lists: &BTreeMap<String, CodeList>,
    cx: &mut Ctx<'_>,
) -> Option<String> {
    let code = cx.str(d, "national", pp, false)?.to_string();
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
}
