//! A survey source's sampling design (`[sources.<id>.design]`), checked against its schema.
//!
//! Input: the TOML table and the source's schema. Output: a [`Design`] with R `survey`'s meaning,
//! so a statistician can write the same design in both:
//!
//! - Taylor linearization: `svydesign(ids = ~psu + ssu, strata = ~strata, fpc = ~fpc + fpc_ssu,
//!   weights = ~weight, nest = TRUE)` with `options(survey.lonely.psu = lonely_psu)`;
//! - replicate weights: `svrepdesign(weights = ~weight, repweights = <columns>, type = …,
//!   scale = …, rscales = …, mse = …, combined.weights = TRUE)`.

use std::path::PathBuf;

use serde::Serialize;
use toml::Value;

use super::schema::{FieldType, TableSchema};
use super::{Ctx, Section};

/// A survey's sampling design.
#[derive(Debug, Clone, Serialize)]
pub struct Design {
    /// The design weight; without it R derives the weights from the FPCs (population sizes
    /// or sampling fractions at every stage): Π_stage N/n.
    pub weight: Option<String>,
    pub strata: Option<String>,
    /// Primary sampling units (nested in strata); without them every record is its own PSU.
    pub psu: Option<String>,
    /// Second-stage units (nested in PSUs). Their variance counts only with an FPC at both
    /// stages, as in R; without an FPC the design is an ultimate-cluster one.
    pub ssu: Option<String>,
    /// Stage-1 finite population correction: the stratum's number of PSUs in the population
    /// (values ≥ 1) or its sampling fraction (values ≤ 1), constant within a stratum.
    pub fpc: Option<String>,
    /// Stage-2 finite population correction: the PSU's number of SSUs in the population or its
    /// sampling fraction, constant within a PSU.
    pub fpc_ssu: Option<String>,
    pub lonely_psu: LonelyPsu,
    /// Replicate weights, when the variance comes from them instead of from the design.
    pub replicates: Option<Replicates>,
    /// Confidence level of the intervals.
    pub confidence: f64,
    /// Above this CV a cell is flagged low reliability (OBS_STATUS `U`); Statistics Canada: 16.5%.
    pub cv_caution: f64,
    /// Above this CV, or with fewer than `min_n` respondents, a cell is marked for suppression.
    pub cv_suppress: f64,
    pub min_n: u64,
    /// Weights calibrated to population totals (`[sources.<id>.design.calibration]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calibration: Option<super::Calibration>,
    /// Nonresponse adjustment by weighting classes, before any calibration
    /// (`[sources.<id>.design.nonresponse]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonresponse: Option<super::Nonresponse>,
    /// Survey tables of the source whose cells' covariance matrix is written to the
    /// restricted tier (R's `svyby(…, covmat = TRUE)` and `vcov(svycontrast(…))` across
    /// tables).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub covariance: Vec<String>,
}

/// What to do with a stratum that has a single PSU (R's `survey.lonely.psu`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LonelyPsu {
    /// Reject the source: the variance cannot be estimated.
    Fail,
    /// The stratum contributes nothing to the variance.
    Remove,
    /// The PSU was sampled with certainty: nothing at this stage.
    Certainty,
    /// The PSU's total is centred at zero (the grand mean of linearized values) instead of the
    /// stratum mean, a conservative choice.
    Adjust,
    /// The stratum is given the average variance contribution of the other strata.
    Average,
}

/// Replicate weights (combined: each column is a full analysis weight).
#[derive(Debug, Clone, Serialize)]
pub struct Replicates {
    pub columns: Vec<String>,
    pub kind: ReplicateKind,
    /// V = scale · Σ_r rscales_r (θ̂_r − θ̄)².
    pub scale: f64,
    pub rscales: Vec<f64>,
    /// Centre the replicates on the full-sample estimate instead of their mean.
    pub mse: bool,
    /// Degrees of freedom of the intervals; by default the rank of the replicate weights − 1,
    /// as R's `degf()`.
    pub df: Option<u64>,
    /// Replicate weights delivered in their own file rather than as columns of the source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<ReplicateFile>,
}

/// A CSV file of replicate weights: one row per record, `key` holding the value of the
/// source's `record_id` field, the replicate columns as numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplicateFile {
    pub path: PathBuf,
    pub key: String,
    pub record_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum ReplicateKind {
    JK1,
    JKn,
    Bootstrap,
    BRR,
    Fay { rho: f64 },
}

fn number(v: &Value) -> Option<f64> {
    v.as_float().or_else(|| v.as_integer().map(|i| i as f64))
}

/// Parse `[sources.<id>.design]`.
pub(crate) fn parse(
    d: &Section<'_>,
    schema: Option<&TableSchema>,
    derived: &[String],
    (base, record_id): (&std::path::Path, Option<&str>),
    cx: &mut Ctx<'_>,
) -> Option<Design> {
    let dp = format!("{}.", d.path());
    let check_field = |name: &str, key: &str, numeric: bool, cx: &mut Ctx<'_>| {
        match schema
        .and_then(|s| s.field(name))
    {
        None if schema.is_some() => {
            cx.push(key, format!("field `{name}` is not in the schema"));
        }
        Some(f)
            if numeric && !matches!(f.field_type, FieldType::Number | FieldType::Integer) =>
        {
            cx.push(key, format!("field `{name}` must be a number"));
        }
        Some(f) if !f.constraints.required => cx.push(
            key,
            format!(
                "field `{name}` must be required in the schema: a record without it has no place in the design"
            ),
        ),
        _ => {}
    }
    };
    let field = |key: &str, required: bool, numeric: bool, cx: &mut Ctx<'_>| {
        let name = cx.str(d, key, required)?.to_string();
        check_field(&name, &format!("{dp}{key}"), numeric, cx);
        Some(name)
    };
    let weight = field("weight", false, true, cx);
    let strata = field("strata", false, false, cx);
    let psu = field("psu", false, false, cx);
    let ssu = field("ssu", false, false, cx);
    let fpc = field("fpc", false, true, cx);
    let fpc_ssu = field("fpc_ssu", false, true, cx);
    if ssu.is_some() && psu.is_none() {
        cx.push(
            format!("{dp}ssu"),
            "second-stage units need `psu` (the first-stage units they are nested in)",
        );
    }
    if fpc_ssu.is_some() && (fpc.is_none() || ssu.is_none()) {
        cx.push(
            format!("{dp}fpc_ssu"),
            "a stage-2 FPC needs `ssu` and the stage-1 `fpc`",
        );
    }
    if ssu.is_some() && fpc.is_some() && fpc_ssu.is_none() {
        cx.push(
            format!("{dp}fpc"),
            "with `ssu`, give the FPC of both stages (`fpc` and `fpc_ssu`), as R's svydesign requires; without any FPC the variance is the ultimate-cluster one",
        );
    }
    let lonely_psu = match cx.str(d, "lonely_psu", false) {
        None | Some("fail") => LonelyPsu::Fail,
        Some("remove") => LonelyPsu::Remove,
        Some("certainty") => LonelyPsu::Certainty,
        Some("adjust") => LonelyPsu::Adjust,
        Some("average") => LonelyPsu::Average,
        Some(other) => {
            cx.push(
                format!("{dp}lonely_psu"),
                format!("`{other}` is not a policy (fail, remove, certainty, adjust or average)"),
            );
            LonelyPsu::Fail
        }
    };
    let replicates = match d.sub("replicates", "{ columns = [...], type = \"JK1\" }", cx) {
        None => None,
        Some(r) => {
            if let Some(k) = ["strata", "psu", "ssu", "fpc", "fpc_ssu"]
                .iter()
                .find(|k| d.has(k))
            {
                cx.push(
                    format!("{dp}{k}"),
                    "replicate weights carry the design: drop strata, psu, ssu and fpc, or the replicates",
                );
            }
            let parsed = replicates(&r, schema, &check_field, (base, record_id), cx);
            r.finish(cx);
            parsed
        }
    };
    let confidence = match d.get("confidence") {
        None => 0.95,
        Some(v) => match v.as_float() {
            Some(c) if c > 0.0 && c < 1.0 => c,
            _ => {
                cx.push(
                    format!("{dp}confidence"),
                    "must be a level between 0 and 1, e.g. 0.95",
                );
                0.95
            }
        },
    };
    let cv_caution = cx.fraction(d, "cv_caution").unwrap_or(0.165);
    let cv_suppress = cx.fraction(d, "cv_suppress").unwrap_or(0.333);
    let min_n = match d.get("min_n") {
        None => 10,
        Some(v) => match v.as_integer().and_then(|i| u64::try_from(i).ok()) {
            Some(n) => n,
            None => {
                cx.push(format!("{dp}min_n"), "must be a non-negative integer");
                10
            }
        },
    };
    if weight.is_none() && !d.has("weight") {
        if replicates.is_some() {
            cx.push(
                format!("{dp}weight"),
                "replicate weights need the full-sample `weight` as well",
            );
        } else if fpc.is_none() || (ssu.is_some() && fpc_ssu.is_none()) {
            cx.push(
                format!("{dp}weight"),
                "a design needs `weight`, or the FPC of every stage (`fpc`, and `fpc_ssu` with `ssu`) from which the weights follow, as R derives them",
            );
        }
    }
    let known: Vec<String> = derived
        .iter()
        .cloned()
        .chain(
            schema
                .iter()
                .flat_map(|s| s.fields.iter().map(|f| f.name.clone())),
        )
        .collect();
    let nonresponse = d
        .sub(
            "nonresponse",
            "{ status = \"response\", respondent = [\"1\"], classes = [\"STRATUM\"] }",
            cx,
        )
        .and_then(|c| super::calibration::parse_nonresponse(&c, &known, cx));
    let covariance: Vec<String> = match d.get("covariance") {
        None => Vec::new(),
        Some(Value::Array(a)) if !a.is_empty() && a.iter().all(Value::is_str) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        Some(_) => {
            cx.push(
                format!("{dp}covariance"),
                "must list survey tables of this source, e.g. [\"mean_age\", \"migration_share\"]",
            );
            Vec::new()
        }
    };
    let calibration = d
        .sub(
            "calibration",
            "{ method = \"raking\", margins = [{ by = [\"SEX\"], totals = \"census_sex.csv\" }] }",
            cx,
        )
        .and_then(|c| super::calibration::parse(&c, &known, base, cx));
    d.finish(cx);
    Some(Design {
        weight,
        strata,
        psu,
        ssu,
        fpc,
        fpc_ssu,
        lonely_psu,
        replicates,
        confidence,
        cv_caution,
        cv_suppress,
        min_n,
        calibration,
        nonresponse,
        covariance,
    })
}

fn replicates(
    r: &Section<'_>,
    schema: Option<&TableSchema>,
    check_field: &dyn Fn(&str, &str, bool, &mut Ctx<'_>),
    (base, record_id): (&std::path::Path, Option<&str>),
    cx: &mut Ctx<'_>,
) -> Option<Replicates> {
    let rp = format!("{}.", r.path());
    // Replicate weights delivered in a file of their own, one row per record by its key.
    let file = match r.get("file") {
        None => {
            if r.has("key") {
                cx.push(
                    format!("{rp}key"),
                    "`key` goes with `file`: the replicate weights file's column of record ids",
                );
            }
            None
        }
        Some(v) => {
            let path = v.as_str().map(|f| super::clean_path(&base.join(f)));
            let key = cx.str(r, "key", false).map(str::to_string);
            match (path, record_id) {
                (None, _) => {
                    cx.push(
                        format!("{rp}file"),
                        "must name a CSV file of replicate weights",
                    );
                    None
                }
                (Some(_), None) => {
                    cx.push(
                        format!("{rp}file"),
                        "replicate weights from a file are joined on the source's `record_id`: declare it",
                    );
                    None
                }
                (Some(path), Some(id)) => match read_header(&path) {
                    Ok(header) => {
                        let key = key.unwrap_or_else(|| id.to_string());
                        if !header.contains(&key) {
                            cx.push(
                                format!("{rp}key"),
                                format!(
                                    "{} has no column `{}` (its record ids, matched to `{id}`)",
                                    path.display(),
                                    super::cap(&key)
                                ),
                            );
                        }
                        Some((
                            ReplicateFile {
                                path,
                                key,
                                record_id: id.to_string(),
                            },
                            header,
                        ))
                    }
                    Err(e) => {
                        cx.push(
                            format!("{rp}file"),
                            format!("cannot read {}: {e}", path.display()),
                        );
                        None
                    }
                },
            }
        }
    };
    // An explicit list, or a glob over the schema's fields (or the file's columns) in order.
    let fields: Vec<String> = match &file {
        Some((_, header)) => header.clone(),
        None => schema
            .map(|s| s.fields.iter().map(|f| f.name.clone()).collect())
            .unwrap_or_default(),
    };
    let columns: Vec<String> = match r.get("columns") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| {
                let s = v.as_str().map(str::to_string);
                if s.is_none() {
                    cx.push(format!("{rp}columns"), "must list field names");
                }
                s
            })
            .collect(),
        Some(Value::String(pattern)) => match glob::Pattern::new(pattern) {
            Ok(g) => fields
                .iter()
                .filter(|f| g.matches(f) && file.as_ref().is_none_or(|(fl, _)| **f != fl.key))
                .cloned()
                .collect(),
            Err(e) => {
                cx.push(format!("{rp}columns"), format!("not a glob pattern: {e}"));
                Vec::new()
            }
        },
        Some(_) => {
            cx.push(
                format!("{rp}columns"),
                "must be a list of fields or a glob such as \"repw*\"",
            );
            Vec::new()
        }
        None => {
            cx.push(format!("{rp}columns"), "required key is missing");
            Vec::new()
        }
    };
    if r.get("columns").is_some() && columns.len() < 2 && (schema.is_some() || file.is_some()) {
        cx.push(
            format!("{rp}columns"),
            format!(
                "{} replicate weight column(s) found: a replicate variance needs at least 2",
                columns.len()
            ),
        );
    }
    match &file {
        None => {
            for c in &columns {
                check_field(c, &format!("{rp}columns"), true, cx);
            }
        }
        Some((f, header)) => {
            for c in columns.iter().filter(|c| !header.contains(c)) {
                cx.push(
                    format!("{rp}columns"),
                    format!("{} has no column `{}`", f.path.display(), super::cap(c)),
                );
            }
        }
    }
    let n = columns.len().max(1) as f64;
    let given = |key: &str, cx: &mut Ctx<'_>| -> Option<f64> {
        let v = r.get(key)?;
        let f = number(v).filter(|f| f.is_finite() && *f > 0.0);
        if f.is_none() {
            cx.push(format!("{rp}{key}"), "must be a positive number");
        }
        f
    };
    let scale_given = given("scale", cx);
    let kind = match cx.str(r, "type", true) {
        Some("JK1") => ReplicateKind::JK1,
        Some("JKn") => ReplicateKind::JKn,
        Some("bootstrap") => ReplicateKind::Bootstrap,
        Some("BRR") => ReplicateKind::BRR,
        Some("Fay") => match r.get("rho").and_then(number) {
            Some(rho) if (0.0..1.0).contains(&rho) => ReplicateKind::Fay { rho },
            _ => {
                cx.push(
                    format!("{rp}rho"),
                    "Fay's method needs its perturbation factor rho, 0 <= rho < 1",
                );
                ReplicateKind::Fay { rho: 0.5 }
            }
        },
        Some(other) => {
            cx.push(
                format!("{rp}type"),
                format!("`{other}` is not a replicate type (JK1, JKn, bootstrap, BRR or Fay)"),
            );
            ReplicateKind::JK1
        }
        None => ReplicateKind::JK1,
    };
    // R's svrepdesign defaults.
    let scale = match kind {
        ReplicateKind::BRR => 1.0 / n,
        ReplicateKind::Fay { rho } => 1.0 / (n * (1.0 - rho).powi(2)),
        ReplicateKind::JK1 => scale_given.unwrap_or((n - 1.0) / n),
        ReplicateKind::Bootstrap => scale_given.unwrap_or(1.0 / (n - 1.0)),
        ReplicateKind::JKn => scale_given.unwrap_or(1.0),
    };
    if scale_given.is_some() && matches!(kind, ReplicateKind::BRR | ReplicateKind::Fay { .. }) {
        cx.push(
            format!("{rp}scale"),
            "BRR and Fay fix the scale (1/R and 1/(R(1-rho)^2)); remove `scale`",
        );
    }
    let rscales = match r.get("rscales") {
        None => {
            if kind == ReplicateKind::JKn {
                cx.push(
                    format!("{rp}rscales"),
                    "JKn needs rscales: (n_h - 1)/n_h for each replicate's stratum",
                );
            }
            vec![1.0; columns.len()]
        }
        Some(Value::Array(a)) => {
            let v: Vec<f64> = a.iter().filter_map(number).collect();
            if v.len() != a.len() || v.len() != columns.len() {
                cx.push(
                    format!("{rp}rscales"),
                    format!(
                        "must be {} numbers, one per replicate column",
                        columns.len()
                    ),
                );
            }
            v
        }
        Some(v) => match number(v) {
            Some(f) => vec![f; columns.len()],
            None => {
                cx.push(
                    format!("{rp}rscales"),
                    "must be a number or a list of numbers",
                );
                vec![1.0; columns.len()]
            }
        },
    };
    let mse = match r.get("mse") {
        None => false,
        Some(Value::Boolean(b)) => *b,
        Some(_) => {
            cx.push(format!("{rp}mse"), "must be true or false");
            false
        }
    };
    let df = match r.get("df") {
        None => None,
        Some(v) => match v.as_integer().and_then(|i| u64::try_from(i).ok()) {
            Some(d) if d > 0 => Some(d),
            _ => {
                cx.push(format!("{rp}df"), "must be a positive integer");
                None
            }
        },
    };
    Some(Replicates {
        columns,
        kind,
        scale,
        rscales,
        mse,
        df,
        file: file.map(|f| f.0),
    })
}

/// The column names of a CSV file (its first line).
fn read_header(path: &std::path::Path) -> Result<Vec<String>, String> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_path(path)
        .map_err(|e| e.to_string())?;
    let header = rdr.headers().map_err(|e| e.to_string())?;
    Ok(header
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').trim().to_string())
        .collect())
}
