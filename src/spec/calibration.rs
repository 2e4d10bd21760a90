//! A survey design's calibration to known population totals (`[sources.<id>.design.calibration]`).
//!
//! Input: the TOML table, the columns a margin may name (derived codes and schema fields) and
//! the totals files. Output: a [`Calibration`] with R `survey`'s meaning: `poststratify` is
//! `postStratify(design, ~a + b, totals)` on the cells of one margin; `linear`, `raking` and
//! `logit` are `calibrate(design, ~m1 + m2 + …, population, calfun = …, bounds = …, trim = …,
//! epsilon = …, maxit = …)` on the margins' categories (each margin's `by` columns crossed);
//! `ipf` is `rake(design, list(~m1, ~m2, …), …, control = list(epsilon = …, maxit = …))`. A
//! [`Nonresponse`] adjustment (`[sources.<id>.design.nonresponse]`) comes before either.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;
use toml::Value;

use super::{Ctx, Section};

/// How the design weights are brought to the totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CalMethod {
    /// One margin: each cell's weights scaled to its total (R's `postStratify`).
    Poststratify,
    /// g = 1 + x'λ, optionally bounded (R's `calfun = "linear"`; GREG).
    Linear,
    /// g = exp(x'λ), optionally bounded: the raking ratio (R's `calfun = "raking"`).
    Raking,
    /// A logistic g between two bounds, which are required (R's `calfun = "logit"`).
    Logit,
    /// Iterative proportional fitting, R's `rake()`: each margin post-stratified in turn until
    /// a pass moves no cell of the crossed margins by `epsilon`; its variance is R's (the
    /// linearized values residualized by ten sweeps over the last pass's post-strata).
    Ipf,
}

impl CalMethod {
    pub fn name(self) -> &'static str {
        match self {
            CalMethod::Poststratify => "poststratify",
            CalMethod::Linear => "linear",
            CalMethod::Raking => "raking",
            CalMethod::Logit => "logit",
            CalMethod::Ipf => "ipf",
        }
    }
}

/// One margin: population totals by the categories of its columns (crossed).
#[derive(Debug, Clone, Serialize)]
pub struct Margin {
    pub by: Vec<String>,
    pub path: PathBuf,
    /// Category (one code per `by` column) → population total (read from `path`, whose
    /// bytes the pipeline hash covers).
    #[serde(skip)]
    pub totals: BTreeMap<Vec<String>, f64>,
}

/// Calibration of the design weights (Deville and Särndal), as R's `calibrate`.
#[derive(Debug, Clone, Serialize)]
pub struct Calibration {
    pub method: CalMethod,
    pub margins: Vec<Margin>,
    /// Bounds on g = calibrated weight / design weight (R's `bounds`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bounds: Option<(f64, f64)>,
    /// g trimmed to these limits afterwards, the trimmed weight spread over the others
    /// (R's `trim`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trim: Option<(f64, f64)>,
    /// Convergence: every total within epsilon·(1 + |total|) (R's `epsilon`).
    pub epsilon: f64,
    /// Newton steps at most (R's `maxit`); not converging rejects the source.
    pub max_iterations: u32,
    /// The population the totals count, as (column, codes): records outside it (e.g. a
    /// survey's emigrants abroad, whom a census does not count) keep their design weights —
    /// in R, a category of their own in every margin, its total their weighted sum.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub population: Option<(String, std::collections::BTreeSet<String>)>,
}

/// The code a record outside the calibrated population has in every margin column (never a
/// delivered code: a control character).
pub const OUTSIDE: &str = "\u{1e}";

impl Calibration {
    /// Every column a margin names, each once, in order of first mention.
    pub fn columns(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for m in &self.margins {
            for c in &m.by {
                if !out.contains(&c.as_str()) {
                    out.push(c);
                }
            }
        }
        out
    }
}

fn pair(v: &Value) -> Option<(f64, f64)> {
    let a = v.as_array()?;
    let n = |v: &Value| v.as_float().or_else(|| v.as_integer().map(|i| i as f64));
    match a.as_slice() {
        [lo, hi] => Some((n(lo)?, n(hi)?)),
        _ => None,
    }
}

/// Parse `[sources.<id>.design.calibration]`; `known` are the columns a margin may name.
pub(crate) fn parse(
    c: &Section<'_>,
    known: &[String],
    base: &Path,
    cx: &mut Ctx<'_>,
) -> Option<Calibration> {
    let cp = format!("{}.", c.path());
    let method = match cx.str(c, "method", true) {
        Some("poststratify") => Some(CalMethod::Poststratify),
        Some("linear") => Some(CalMethod::Linear),
        Some("raking") => Some(CalMethod::Raking),
        Some("logit") => Some(CalMethod::Logit),
        Some("ipf") => Some(CalMethod::Ipf),
        Some(other) => {
            cx.push(
                format!("{cp}method"),
                format!(
                    "`{}` is not a method (poststratify, linear, raking, logit or ipf)",
                    super::cap(other)
                ),
            );
            None
        }
        None => None,
    };
    let mut margins = Vec::new();
    match c.get("margins") {
        Some(Value::Array(a)) if !a.is_empty() => {
            for (i, m) in a.iter().enumerate() {
                let at = format!("{cp}margins[{i}]");
                match margin(m, &at, known, base, cx) {
                    Some(m) => margins.push(m),
                    None => continue,
                }
            }
        }
        _ => cx.push(
            format!("{cp}margins"),
            "must list the margins, e.g. [{ by = [\"SEX\", \"AGE_GROUP\"], totals = \"census.csv\" }]",
        ),
    }
    // Every margin counts the same population: otherwise no weights can meet them all.
    if let Some(first) = margins.first() {
        let n: f64 = first.totals.values().sum();
        for (i, m) in margins.iter().enumerate().skip(1) {
            let t: f64 = m.totals.values().sum();
            if (t - n).abs() > 1e-9 * n.abs().max(1.0) {
                cx.push(
                    format!("{cp}margins[{i}]"),
                    format!(
                        "its totals add up to {t} but the first margin's to {n}: margins of one population must agree on its size"
                    ),
                );
            }
        }
    }
    let bounds = match c.get("bounds") {
        None => None,
        Some(v) => match pair(v) {
            Some((lo, hi)) if lo < 1.0 && hi > 1.0 && lo >= 0.0 => Some((lo, hi)),
            _ => {
                cx.push(
                    format!("{cp}bounds"),
                    "must be [lower, upper] around 1, e.g. [0.5, 2.0]: the limits of calibrated / design weight",
                );
                None
            }
        },
    };
    let trim = match c.get("trim") {
        None => None,
        Some(v) => match pair(v) {
            Some((lo, hi)) if lo < hi && lo >= 0.0 => Some((lo, hi)),
            _ => {
                cx.push(
                    format!("{cp}trim"),
                    "must be [lower, upper], e.g. [0.3, 3.0]: g outside them is trimmed",
                );
                None
            }
        },
    };
    // IPF follows R's rake(): epsilon 1 (a weight of one unit in any cell; below 1 a fraction
    // of the total weight) and 10 passes.
    let ipf = method == Some(CalMethod::Ipf);
    let epsilon = match c.get("epsilon") {
        None if ipf => 1.0,
        None => 1e-7,
        Some(v) => match v.as_float().or_else(|| v.as_integer().map(|i| i as f64)) {
            Some(e) if e > 0.0 && (e < 1.0 || (ipf && e.is_finite())) => e,
            _ => {
                cx.push(
                    format!("{cp}epsilon"),
                    if ipf {
                        "must be a positive number: the largest change of a cell in the last pass (below 1, a fraction of the total weight)"
                    } else {
                        "must be a small positive number, e.g. 1e-7"
                    },
                );
                1e-7
            }
        },
    };
    let population = match c.get("population") {
        None => None,
        Some(Value::Table(t))
            if t.keys().all(|k| k == "column" || k == "in")
                && t.get("column").and_then(Value::as_str).is_some()
                && t.get("in")
                    .and_then(Value::as_array)
                    .is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_str)) =>
        {
            let column = t
                .get("column")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if !known.contains(&column) {
                cx.push(
                    format!("{cp}population.column"),
                    format!(
                        "`{}` is neither a column derived by the source nor one of its fields",
                        super::cap(&column)
                    ),
                );
            }
            let codes = t
                .get("in")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            Some((column, codes))
        }
        Some(_) => {
            cx.push(
                format!("{cp}population"),
                "must be { column = \"…\", in = [\"code\", …] }: the records the totals count",
            );
            None
        }
    };
    let max_iterations = match c.get("max_iterations") {
        None if ipf => 10,
        None => 50,
        Some(v) => match v.as_integer().and_then(|i| u32::try_from(i).ok()) {
            Some(n) if n >= 1 => n,
            _ => {
                cx.push(format!("{cp}max_iterations"), "must be a positive integer");
                50
            }
        },
    };
    match method {
        Some(CalMethod::Poststratify) => {
            if margins.len() > 1 {
                cx.push(
                    format!("{cp}margins"),
                    "post-stratification takes one margin (its cells are the post-strata): use raking or linear for several",
                );
            }
            for k in ["bounds", "trim"] {
                if c.has(k) {
                    cx.push(format!("{cp}{k}"), "does not apply to post-stratification");
                }
            }
        }
        Some(CalMethod::Ipf) => {
            for k in ["bounds", "trim"] {
                if c.has(k) {
                    cx.push(
                        format!("{cp}{k}"),
                        "does not apply to ipf (R's rake() has neither): use raking with bounds",
                    );
                }
            }
        }
        Some(CalMethod::Logit) if bounds.is_none() && !c.has("bounds") => cx.push(
            format!("{cp}bounds"),
            "logit calibration needs bounds, e.g. [0.5, 2.0]",
        ),
        _ => {}
    }
    c.finish(cx);
    Some(Calibration {
        method: method?,
        margins,
        bounds,
        trim,
        epsilon,
        max_iterations,
        population,
    })
}

/// One `{ by = [...], totals = "file.csv" }`: the file has a column per `by` column and a
/// `total` column, one row per category.
fn margin(m: &Value, at: &str, known: &[String], base: &Path, cx: &mut Ctx<'_>) -> Option<Margin> {
    let Some(t) = m.as_table() else {
        cx.push(at, "must be { by = [columns], totals = \"file.csv\" }");
        return None;
    };
    for k in t.keys() {
        if k != "by" && k != "totals" {
            cx.push(
                format!("{at}.{}", super::cap(k)),
                "unknown key (by, totals)",
            );
        }
    }
    let by: Vec<String> = match t.get("by") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) if !a.is_empty() && a.iter().all(Value::is_str) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => {
            cx.push(
                format!("{at}.by"),
                "must name the margin's columns, e.g. [\"SEX\", \"AGE_GROUP\"]",
            );
            return None;
        }
    };
    for b in &by {
        if !known.contains(b) {
            cx.push(
                format!("{at}.by"),
                format!(
                    "`{}` is neither a derived column nor a field of the source",
                    super::cap(b)
                ),
            );
        }
    }
    let Some(file) = t.get("totals").and_then(Value::as_str) else {
        cx.push(format!("{at}.totals"), "must name a CSV file of totals");
        return None;
    };
    let path = super::clean_path(&base.join(file));
    let (cols, rows) = match super::codelist::read_table(&path) {
        Ok(x) => x,
        Err(e) => {
            cx.push(
                format!("{at}.totals"),
                format!("cannot read {}: {e}", path.display()),
            );
            return None;
        }
    };
    let index: Vec<Option<usize>> = by
        .iter()
        .map(|b| cols.iter().position(|c| c == b))
        .collect();
    let total_at = cols.iter().position(|c| c == "total");
    if index.iter().any(Option::is_none) || total_at.is_none() {
        cx.push(
            format!("{at}.totals"),
            format!(
                "{} needs the columns {} and `total`",
                path.display(),
                by.iter()
                    .map(|b| format!("`{}`", super::cap(b)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
        return None;
    }
    let total_at = total_at?;
    let mut totals = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        let key: Vec<String> = index
            .iter()
            .flatten()
            .map(|&j| r[j].trim().to_string())
            .collect();
        let line = i + 2;
        match r[total_at].trim().parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => {
                if totals.insert(key.clone(), v).is_some() {
                    cx.push(
                        format!("{at}.totals"),
                        format!(
                            "{} line {line}: the category {} is given twice",
                            path.display(),
                            super::cap(&key.join(" × "))
                        ),
                    );
                }
            }
            _ => cx.push(
                format!("{at}.totals"),
                format!(
                    "{} line {line}: `{}` is not a population total (a number ≥ 0)",
                    path.display(),
                    super::cap(&r[total_at])
                ),
            ),
        }
    }
    if totals.is_empty() {
        cx.push(
            format!("{at}.totals"),
            format!("{} has no totals", path.display()),
        );
        return None;
    }
    Some(Margin { by, path, totals })
}

/// Nonresponse adjustment by weighting classes (`[sources.<id>.design.nonresponse]`): the
/// source holds every sampled unit (answers empty for the nonrespondents), `status` says who
/// responded, and within each class (the `classes` columns' codes crossed) the respondents'
/// weights are scaled by (respondents' + nonrespondents' weight) / respondents' weight. The
/// ineligible (out of scope) keep no weight and none is moved to them. Nonrespondents and
/// ineligible units stay in the design (their strata and PSUs), not in the tables.
#[derive(Debug, Clone, Serialize)]
pub struct Nonresponse {
    /// Column (derived code or field) whose value says whether a unit responded.
    pub status: String,
    /// Codes of `status` that mark a respondent.
    pub respondent: std::collections::BTreeSet<String>,
    /// Codes of `status` that mark a unit out of scope; every other value (empty included) is
    /// a nonrespondent.
    pub ineligible: std::collections::BTreeSet<String>,
    /// The weighting classes' columns (known for every sampled unit, e.g. stratum, region).
    pub classes: Vec<String>,
}

/// A non-empty list of strings, else `None`.
fn string_list(v: Option<&Value>) -> Option<Vec<String>> {
    let a = v?.as_array()?;
    (!a.is_empty() && a.iter().all(Value::is_str)).then(|| {
        a.iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect()
    })
}

/// Parse `[sources.<id>.design.nonresponse]`; `known` are the columns it may name.
pub(crate) fn parse_nonresponse(
    c: &Section<'_>,
    known: &[String],
    cx: &mut Ctx<'_>,
) -> Option<Nonresponse> {
    let cp = format!("{}.", c.path());
    let column = |key: &str, name: &str, cx: &mut Ctx<'_>| {
        if !known.iter().any(|k| k == name) {
            cx.push(
                format!("{cp}{key}"),
                format!(
                    "`{}` is neither a column derived by the source nor one of its fields",
                    super::cap(name)
                ),
            );
        }
    };
    let codes = |key: &str, required: bool, cx: &mut Ctx<'_>| -> Option<BTreeSet<String>> {
        match c.get(key) {
            None if !required => Some(BTreeSet::new()),
            v => match string_list(v) {
                Some(l) => Some(l.into_iter().collect()),
                None => {
                    cx.push(
                        format!("{cp}{key}"),
                        "must list codes of `status`, e.g. [\"1\"]",
                    );
                    None
                }
            },
        }
    };
    let status = cx.str(c, "status", true).map(str::to_string);
    if let Some(s) = &status {
        column("status", s, cx);
    }
    let respondent = codes("respondent", true, cx);
    let ineligible = codes("ineligible", false, cx);
    if let (Some(r), Some(i)) = (&respondent, &ineligible)
        && let Some(both) = r.intersection(i).next()
    {
        cx.push(
            format!("{cp}ineligible"),
            format!(
                "`{}` is listed as respondent and as ineligible",
                super::cap(both)
            ),
        );
    }
    let classes = string_list(c.get("classes"));
    if classes.is_none() {
        cx.push(
            format!("{cp}classes"),
            "must name the weighting classes' columns, e.g. [\"STRATUM\", \"URBAN\"]",
        );
    }
    for k in classes.iter().flatten() {
        column("classes", k, cx);
    }
    c.finish(cx);
    Some(Nonresponse {
        status: status?,
        respondent: respondent?,
        ineligible: ineligible?,
        classes: classes?,
    })
}
