//! Survey estimates (part of the disaggregate stage): design-based totals, means, proportions,
//! ratios and quantiles for every cell of a table, and contrasts of another table's cells, with
//! standard errors, intervals, CVs and design effects as R's `survey` package computes them.
//!
//! Input: harmonized chunks of a survey source and its [`Design`]; the survey [`TableSpec`]s of
//! the source. Output: one row per cell (every margin included) with the estimate, its standard
//! error, normal and Student-t intervals (for shares by any of R's `svyciprop` methods but the
//! profile likelihood, with the design's or each domain's degrees of freedom), the CV, the
//! design effect, the unweighted n, the degrees of freedom and the quality flags of disclosure
//! control.
//!
//! One pass, no loop per cell. [`DesignPartial`] reads the design once per chunk (stratum, PSU and
//! SSU ids, weights, replicate weights) for every table of the source. Each table's [`Partial`]
//! adds the weighted sums of its records to (finest cell, stratum, PSU, SSU) — a mergeable
//! partial, summed in record order so results do not depend on threads — and, with replicate
//! weights, to each finest cell's replicate totals. At the end the unit sums are rolled up to
//! every margin (they are additive) and each cell's variance is computed from them:
//!
//! - Taylor linearization, with z the linearized values (y for a total; (y − R̂·x)/X̂ for a
//!   ratio, a mean or a share) summed per PSU:
//!   V = Σ_h (1 − f_h)·n_h/(n_h − 1)·Σ_i (z_hi − z̄_h)²  +  Σ_hi (n_h/N_h)·V₂(hi),
//!   the second stage counting only with an FPC at both stages (R's `multistage`). Every PSU of
//!   every stratum counts, with z = 0 where the cell has no record: a domain is estimated on the
//!   whole design, never on a subset. Lonely PSUs follow the design's policy as R does.
//! - Replicate weights: V = scale·Σ_r rscale_r (θ̂_r − θ̄)², θ̄ the replicates' mean (or θ̂ with
//!   `mse`).
//!
//! Quantiles keep, per (finest cell, unit, value), the value's weight and its first and last
//! record (`survey/quantile.rs` explains why that decides every rule); their intervals are
//! Woodruff's (the share at or below the estimate, mapped back) or the replicates' quantiles. A
//! contrast gathers its base table's sums, keeps each cell's linearized values (or replicate
//! estimates) and combines them, so its variance is the quadratic form of the cells' covariance.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use polars::prelude::*;

use crate::error::{Error, PolarsContext, Rejection, Result};
use crate::spec::{
    CalMethod, Calibration, Design, LonelyPsu, PropInterval, QuantileInterval, Replicates,
    TableKind, TableSpec,
};
use crate::vocab::TOTAL;
use crate::vocab::raw_column;

mod likelihood;
mod merge;
mod quantile;

pub use merge::{ByPart, SourceSums};

/// Most dimensions a survey table may have (the spec allows 8).
const MAX_DIMS: usize = 8;

/// Code id of a margin (`_T`) in an interned cell key.
const TOTAL_ID: u32 = u32::MAX;

/// A cell as interned code ids, one per dimension (unused slots 0).
type CellIds = [u32; MAX_DIMS];

/// A design unit and calibration class: (stratum, PSU, SSU, class) ids; the SSU is 0 in a
/// one-stage design, the class 0 without calibration. The variance sums over units; the class
/// is what calibration scales and residualizes (its records share one auxiliary vector).
type Unit = (u32, u32, u32, u32);

/// (cell, unit).
type Key = (CellIds, Unit);

/// A cell's replicate sums (keyed by the cell alone).
type RepEntry = ((CellIds, ()), Vec<f64>);

/// Strings interned as ids in first-seen (record) order.
#[derive(Default, Clone, serde::Serialize, serde::Deserialize)]
#[serde(from = "Vec<String>", into = "Vec<String>")]
struct Interner {
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

impl From<Vec<String>> for Interner {
    fn from(names: Vec<String>) -> Self {
        let ids = names.iter().zip(0..).map(|(n, i)| (n.clone(), i)).collect();
        Interner { ids, names }
    }
}

impl From<Interner> for Vec<String> {
    fn from(i: Interner) -> Self {
        i.names
    }
}

impl Interner {
    fn id(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.ids.get(s) {
            return i;
        }
        let i = self.names.len() as u32;
        self.ids.insert(s.to_string(), i);
        self.names.push(s.to_string());
        i
    }

    fn name(&self, i: u32) -> &str {
        if i == TOTAL_ID {
            TOTAL
        } else {
            self.names.get(i as usize).map_or("", String::as_str)
        }
    }
}

fn text(df: &DataFrame, name: &str, ctx: &dyn Fn(&str) -> String) -> Result<StringChunked> {
    let c = df
        .column(name)
        .ctx(|| ctx(name))?
        .cast(&DataType::String)
        .ctx(|| ctx(name))?;
    Ok(c.str().ctx(|| ctx(name))?.clone())
}

fn numbers(df: &DataFrame, name: &str, ctx: &dyn Fn(&str) -> String) -> Result<Float64Chunked> {
    let c = df
        .column(name)
        .ctx(|| ctx(name))?
        .cast(&DataType::Float64)
        .ctx(|| ctx(name))?;
    Ok(c.f64().ctx(|| ctx(name))?.clone())
}

/// The design units, weights and replicate weights of one chunk's records.
pub struct Units {
    unit: Vec<Unit>,
    w: Vec<f64>,
    /// One vector per replicate column.
    reps: Vec<Vec<f64>>,
    /// With a nonresponse adjustment, whether each record responded (the others are in the
    /// design, not in any table); empty without one.
    respondent: Vec<bool>,
}

/// A record's response in its class key (the key's last character under a nonresponse
/// adjustment).
const RESPONDENT: char = 'r';
const NONRESPONDENT: char = 'n';
const INELIGIBLE: char = 'i';

/// The design as seen so far: its strata, PSUs and SSUs, the FPC values, and for replicate
/// weights the cross-products that give their rank (R's degrees of freedom).
#[derive(Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct DesignPartial {
    strata: Interner,
    psus: Interner,
    ssus: Interner,
    /// Stratum → PSU → SSUs.
    tree: BTreeMap<u32, BTreeMap<u32, BTreeSet<u32>>>,
    /// PSU ids when every record is its own PSU.
    next_record_psu: u32,
    fpc1: BTreeMap<u32, f64>,
    fpc2: BTreeMap<(u32, u32), f64>,
    problems: BTreeSet<String>,
    /// Upper triangle of Σ w_a·w_b over records, for the rank of the replicate weights.
    gram: Vec<f64>,
    /// Calibration classes (the margins' codes of a record, joined) and the design weight of
    /// each (unit, class).
    classes: Interner,
    class_w: BTreeMap<Unit, f64>,
    class_n: BTreeMap<Unit, u64>,
    /// Per class, with replicate weights: each replicate's weight total, and (when R
    /// recomputes the degrees of freedom after calibrating) the cross-products of the
    /// replicate weights within the class (upper triangle).
    class_reps: BTreeMap<u32, Vec<f64>>,
    class_gram: BTreeMap<u32, Vec<f64>>,
    /// Replicate weights from their own file, by record key (read at the first chunk; not
    /// sent with a partial computed elsewhere).
    #[serde(skip)]
    rep_file: Option<HashMap<String, Vec<f64>>>,
    /// What reading that file found (kept apart from `problems`, whose number is capped, so
    /// that a partial handed the file already read lists the same problems).
    rep_problems: BTreeSet<String>,
    /// Records without a row in that file: how many, and the first few keys.
    rep_missing: (u64, Vec<String>),
}

/// Keys of records without replicate weights named in a rejection.
const MISSING_SHOWN: usize = 5;

/// Problems of a design listed at most, while reading a file and while merging files.
const PROBLEMS_SHOWN: usize = 10;

/// The stage of a design an FPC belongs to: stratum (one) or PSU (two).
#[derive(Clone, Copy)]
enum FpcStage {
    One,
    Two,
}

/// The problem an FPC that differs within its stratum (stage 1) or its PSU (stage 2) is, with
/// the unit quoted. One text whether the two values were met in one file or in two (the
/// problem set keeps each text once).
fn fpc_differs(stage: FpcStage, column: &str, unit: &str, first: f64, other: f64) -> String {
    let unit = crate::error::quote(unit);
    match stage {
        FpcStage::One => format!(
            "`{column}` differs within stratum {unit} ({first} and {other}): the FPC is one value per stratum"
        ),
        FpcStage::Two => format!(
            "`{column}` differs within PSU {unit} ({first} and {other}): the stage-2 FPC is one value per PSU"
        ),
    }
}

impl DesignPartial {
    /// One chunk's replicate weights from the design's weights file, joined on the record id.
    fn file_reps(
        &mut self,
        r: &Replicates,
        f: &crate::spec::ReplicateFile,
        df: &DataFrame,
        ctx: &dyn Fn(&str) -> String,
    ) -> Result<Vec<Vec<f64>>> {
        if self.rep_file.is_none() {
            let (map, problems) = read_replicate_file(r, f);
            self.rep_problems.extend(problems);
            self.rep_file = Some(map);
        }
        let map = self.rep_file.take().unwrap_or_default();
        let keys = match text(df, &raw_column(&f.record_id), ctx) {
            Ok(k) => k,
            Err(e) => {
                self.rep_file = Some(map);
                return Err(e);
            }
        };
        let mut reps = vec![Vec::with_capacity(df.height()); r.columns.len()];
        for key in keys.iter() {
            let key = key.unwrap_or("");
            match map.get(key) {
                Some(v) => {
                    for (col, x) in reps.iter_mut().zip(v) {
                        col.push(*x);
                    }
                }
                None => {
                    self.rep_missing.0 += 1;
                    if self.rep_missing.1.len() < MISSING_SHOWN {
                        self.rep_missing.1.push(key.to_string());
                    }
                    for col in &mut reps {
                        col.push(0.0);
                    }
                }
            }
        }
        self.rep_file = Some(map);
        Ok(reps)
    }

    /// Read the design columns of one chunk (every record: a filter never shrinks the design).
    #[allow(clippy::needless_range_loop)] // a row indexes every column of the chunk
    pub fn add_chunk(&mut self, design: &Design, df: &DataFrame) -> Result<Units> {
        let ctx = |what: &str| format!("survey design: column {what}");
        // Without a weight column every record counts 1 until the design is complete and the
        // FPC-derived weight of its unit scales its sums (see `DesignInfo::unit_weight`).
        let w = match &design.weight {
            Some(c) => numbers(df, &raw_column(c), &ctx)?,
            None => Float64Chunked::full("w".into(), 1.0, df.height()),
        };
        let col = |c: &Option<String>| c.as_deref().map(|s| text(df, &raw_column(s), &ctx));
        let strata = col(&design.strata).transpose()?;
        let psu = col(&design.psu).transpose()?;
        let ssu = col(&design.ssu).transpose()?;
        let num = |c: &Option<String>| c.as_deref().map(|s| numbers(df, &raw_column(s), &ctx));
        let fpc1 = num(&design.fpc).transpose()?;
        let fpc2 = num(&design.fpc_ssu).transpose()?;
        let reps: Vec<Vec<f64>> = match &design.replicates {
            None => Vec::new(),
            Some(r) => match &r.file {
                Some(f) => self.file_reps(r, f, df, &ctx)?,
                None => r
                    .columns
                    .iter()
                    .map(|c| {
                        numbers(df, &raw_column(c), &ctx)
                            .map(|v| v.iter().map(|x| x.unwrap_or(0.0)).collect())
                    })
                    .collect::<Result<_>>()?,
            },
        };
        let rows = df.height();
        // The calibration margins' columns: derived codes, else delivered fields.
        let margins: Vec<StringChunked> = match &design.calibration {
            None => Vec::new(),
            Some(c) => c
                .columns()
                .iter()
                .map(|name| {
                    let col = if df.column(name).is_ok() {
                        name.to_string()
                    } else {
                        raw_column(name)
                    };
                    text(df, &col, &ctx)
                })
                .collect::<Result<_>>()?,
        };
        // The calibrated population's column: a record outside it is a class of its own.
        let population: Option<(StringChunked, &BTreeSet<String>)> = match design
            .calibration
            .as_ref()
            .and_then(|c| c.population.as_ref())
        {
            None => None,
            Some((name, codes)) => {
                let col = if df.column(name).is_ok() {
                    name.to_string()
                } else {
                    raw_column(name)
                };
                Some((text(df, &col, &ctx)?, codes))
            }
        };
        // Nonresponse: each record's status and weighting class.
        let code_column = |name: &str| {
            let col = if df.column(name).is_ok() {
                name.to_string()
            } else {
                raw_column(name)
            };
            text(df, &col, &ctx)
        };
        let nonresponse: Option<(StringChunked, Vec<StringChunked>)> = match &design.nonresponse {
            None => None,
            Some(nr) => Some((
                code_column(&nr.status)?,
                nr.classes
                    .iter()
                    .map(|c| code_column(c))
                    .collect::<Result<_>>()?,
            )),
        };
        let weights: Vec<f64> = w.iter().map(|x| x.unwrap_or(0.0)).collect();
        let class_gram = recomputes_df(design) || design.nonresponse.is_some();
        let mut key = String::new();
        let mut unit = Vec::with_capacity(rows);
        let mut respondent = Vec::with_capacity(if nonresponse.is_some() { rows } else { 0 });
        for row in 0..rows {
            let h = self
                .strata
                .id(strata.as_ref().and_then(|s| s.get(row)).unwrap_or(""));
            let i = match &psu {
                Some(p) => self.psus.id(p.get(row).unwrap_or("")),
                None => {
                    self.next_record_psu += 1;
                    self.next_record_psu
                }
            };
            let j = ssu
                .as_ref()
                .map_or(0, |s| self.ssus.id(s.get(row).unwrap_or("")));
            self.tree
                .entry(h)
                .or_default()
                .entry(i)
                .or_default()
                .insert(j);
            if let Some(f) = &fpc1 {
                let v = f.get(row).unwrap_or(f64::NAN);
                let first = *self.fpc1.entry(h).or_insert(v);
                if first != v && self.problems.len() < PROBLEMS_SHOWN {
                    self.problems.insert(fpc_differs(
                        FpcStage::One,
                        design.fpc.as_deref().unwrap_or_default(),
                        self.strata.name(h),
                        first,
                        v,
                    ));
                }
            }
            if let Some(f) = &fpc2 {
                let v = f.get(row).unwrap_or(f64::NAN);
                let first = *self.fpc2.entry((h, i)).or_insert(v);
                if first != v && self.problems.len() < PROBLEMS_SHOWN {
                    self.problems.insert(fpc_differs(
                        FpcStage::Two,
                        design.fpc_ssu.as_deref().unwrap_or_default(),
                        self.psus.name(i),
                        first,
                        v,
                    ));
                }
            }
            let class = if margins.is_empty() && nonresponse.is_none() {
                0
            } else {
                key.clear();
                let outside = population
                    .as_ref()
                    .is_some_and(|(p, codes)| !p.get(row).is_some_and(|v| codes.contains(v)));
                for (n, m) in margins.iter().enumerate() {
                    if n > 0 {
                        key.push('\u{1f}');
                    }
                    if outside {
                        key.push_str(crate::spec::calibration::OUTSIDE);
                    } else {
                        key.push_str(m.get(row).unwrap_or(crate::vocab::UNKNOWN));
                    }
                }
                // The weighting class's codes and the response (`r`, `n` or `i`) follow the
                // margins' codes.
                if let (Some((status, classes)), Some(nr)) = (&nonresponse, &design.nonresponse) {
                    for (n, c) in classes.iter().enumerate() {
                        if n > 0 || !margins.is_empty() {
                            key.push('\u{1f}');
                        }
                        key.push_str(c.get(row).unwrap_or(crate::vocab::UNKNOWN));
                    }
                    let s = status.get(row).unwrap_or("");
                    let flag = if nr.respondent.contains(s) {
                        RESPONDENT
                    } else if nr.ineligible.contains(s) {
                        INELIGIBLE
                    } else {
                        NONRESPONDENT
                    };
                    key.push('\u{1f}');
                    key.push(flag);
                    respondent.push(flag == RESPONDENT);
                }
                let c = self.classes.id(&key);
                // Replicate designs need class totals only (their variance is the replicates').
                let u = if reps.is_empty() {
                    (h, i, j, c)
                } else {
                    (0, 0, 0, c)
                };
                *self.class_w.entry(u).or_default() += weights[row];
                *self.class_n.entry(u).or_default() += 1;
                if !reps.is_empty() {
                    let r = reps.len();
                    let t = self.class_reps.entry(c).or_insert_with(|| vec![0.0; r]);
                    for (a, col) in reps.iter().enumerate() {
                        t[a] += col[row];
                    }
                    if class_gram {
                        let g = self.class_gram.entry(c).or_insert_with(|| vec![0.0; r * r]);
                        for a in 0..r {
                            let x = reps[a][row];
                            for b in a..r {
                                g[a * r + b] += x * reps[b][row];
                            }
                        }
                    }
                }
                c
            };
            unit.push((h, i, j, class));
        }
        if design.replicates.as_ref().is_some_and(|r| r.df.is_none()) {
            // Record by record, so that the sums do not depend on where chunks are cut.
            let r = reps.len();
            self.gram.resize(r * r, 0.0);
            for row in 0..rows {
                for a in 0..r {
                    let x = reps[a][row];
                    if x != 0.0 {
                        for b in a..r {
                            self.gram[a * r + b] += x * reps[b][row];
                        }
                    }
                }
            }
        }
        Ok(Units {
            unit,
            w: weights,
            reps,
            respondent,
        })
    }

    /// Check the design as a whole (FPCs, lonely PSUs) and fix what each stratum and PSU
    /// contributes to a variance.
    pub fn finish(
        &self,
        design: &Design,
        source_id: &str,
    ) -> std::result::Result<DesignInfo, Rejection> {
        let reject = |reason: String| Rejection::new(source_id, format!("survey design: {reason}"));
        let mut problems: Vec<String> = self.problems.union(&self.rep_problems).cloned().collect();
        if let (Some(f), (n @ 1.., keys)) = (
            design.replicates.as_ref().and_then(|r| r.file.as_ref()),
            &self.rep_missing,
        ) {
            problems.push(format!(
                "{n} record(s) have no row in the replicate weights file {} (column `{}`): {}{}",
                f.path.display(),
                f.key,
                crate::error::quote_list(keys.iter().map(String::as_str)),
                if *n as usize > keys.len() {
                    ", …"
                } else {
                    ""
                }
            ));
        }
        if !problems.is_empty() {
            return Err(reject(problems.join("; ")));
        }
        let two_stage = design.ssu.is_some() && design.fpc_ssu.is_some();
        // R's as.fpc: all values >= 1 are population sizes, all <= 1 sampling fractions.
        let values: Vec<f64> = self
            .fpc1
            .values()
            .chain(self.fpc2.values())
            .copied()
            .collect();
        if let Some(bad) = values.iter().find(|v| !(v.is_finite() && **v > 0.0)) {
            return Err(reject(format!(
                "FPC value {bad}: give population sizes (>= 1) or sampling fractions (0 < f <= 1)"
            )));
        }
        let sizes = values.iter().any(|v| *v > 1.0);
        if sizes && values.iter().any(|v| *v < 1.0) {
            return Err(reject(
                "the FPC columns mix population sizes (> 1) and sampling fractions (< 1); use one kind"
                    .into(),
            ));
        }
        let popsize = |fpc: Option<f64>, n: usize| -> Option<f64> {
            fpc.map(|v| if sizes { v } else { n as f64 / v })
        };
        let mut strata = Vec::with_capacity(self.tree.len());
        let mut stage2 = BTreeMap::new();
        let mut lonely = Vec::new();
        let mut lonely_ssu = Vec::new();
        for (&h, psus) in &self.tree {
            let n = psus.len();
            let pop = popsize(self.fpc1.get(&h).copied(), n);
            if pop.is_some_and(|p| p < n as f64) {
                return Err(reject(format!(
                    "stratum {}: the FPC implies {} PSUs in the population but {n} are in the sample",
                    crate::error::quote(self.strata.name(h)),
                    pop.unwrap_or_default()
                )));
            }
            let f = pop.map_or(1.0, |p| (p - n as f64) / p);
            if n == 1 && f >= 1e-7 {
                lonely.push(self.strata.name(h).to_string());
            }
            let mult = pop.map_or(1.0, |p| n as f64 / p);
            if two_stage {
                for (&i, ssus) in psus {
                    let m = ssus.len();
                    let pop2 = popsize(self.fpc2.get(&(h, i)).copied(), m);
                    if pop2.is_some_and(|p| p < m as f64) {
                        return Err(reject(format!(
                            "PSU {}: the stage-2 FPC implies {} SSUs in the population but {m} are in the sample",
                            crate::error::quote(self.psus.name(i)),
                            pop2.unwrap_or_default()
                        )));
                    }
                    let f2 = pop2.map_or(1.0, |p| (p - m as f64) / p);
                    if m == 1 && f2 >= 1e-7 {
                        lonely_ssu.push(self.psus.name(i).to_string());
                    }
                    stage2.insert((h, i), Stage { n: m, f: f2, mult });
                }
            }
            while strata.len() < h as usize {
                strata.push(Stage::default());
            }
            strata.push(Stage { n, f, mult });
        }
        // Each code quoted and capped, at most `LIST_MAX` of them with a count of the rest.
        let list = |v: &[String]| crate::error::quote_list(v.iter().map(String::as_str));
        if design.replicates.is_none() && !lonely.is_empty() && design.lonely_psu == LonelyPsu::Fail
        {
            return Err(reject(format!(
                "{} stratum(s) with a single PSU (lonely PSU): {}; the design's lonely_psu policy is \"fail\" (choose remove, certainty, adjust or average)",
                lonely.len(),
                list(&lonely)
            )));
        }
        if !lonely_ssu.is_empty() {
            match design.lonely_psu {
                LonelyPsu::Fail => {
                    return Err(reject(format!(
                        "{} PSU(s) with a single second-stage unit: {}; the design's lonely_psu policy is \"fail\"",
                        lonely_ssu.len(),
                        list(&lonely_ssu)
                    )));
                }
                LonelyPsu::Average => {
                    return Err(reject(format!(
                        "{} PSU(s) with a single second-stage unit: {}; \"average\" has no other unit to average over within a PSU (R gives NaN); choose remove, certainty or adjust",
                        lonely_ssu.len(),
                        list(&lonely_ssu)
                    )));
                }
                _ => {}
            }
        }
        // R's weights from the FPCs: Π_stage (units in the population / units sampled).
        let unit_weight = design.weight.is_none().then(|| {
            let mut out = BTreeMap::new();
            for (&h, psus) in &self.tree {
                let n = psus.len();
                let w1 = popsize(self.fpc1.get(&h).copied(), n).map_or(1.0, |p| p / n as f64);
                for (&i, ssus) in psus {
                    let m = ssus.len();
                    let w2 = if two_stage {
                        popsize(self.fpc2.get(&(h, i)).copied(), m).map_or(1.0, |p| p / m as f64)
                    } else {
                        1.0
                    };
                    out.insert((h, i), w1 * w2);
                }
            }
            out
        });
        let weight_of = |u: &Unit| {
            unit_weight
                .as_ref()
                .map_or(1.0, |m| m.get(&(u.0, u.1)).copied().unwrap_or(f64::NAN))
        };
        let calibration = if design.calibration.is_some() || design.nonresponse.is_some() {
            Some(self.adjust(design, &weight_of).map_err(reject)?)
        } else {
            None
        };
        let df = match &design.replicates {
            Some(r)
                if r.df.is_none() && (recomputes_df(design) || design.nonresponse.is_some()) =>
            {
                // R recomputes the rank of the adjusted replicate weights: after
                // postStratify and unbounded linear calibrate, and of the weights a
                // nonresponse adjustment gives (a new svrepdesign): Σ_c g_a(c)·g_b(c)·Σ_{i∈c}
                // w_ai·w_bi, g the factor of the adjustments that recompute it.
                let n = r.columns.len();
                let mut gram = vec![0.0; n * n];
                if let Some(cal) = &calibration {
                    let factors = if recomputes_df(design) {
                        &cal.g_reps[..]
                    } else {
                        cal.f_reps()
                    };
                    for (c, g) in &self.class_gram {
                        let gc = |a: usize| factors.get(a).map_or(f64::NAN, |v| v[*c as usize]);
                        for a in 0..n {
                            for b in a..n {
                                gram[a * n + b] += gc(a) * gc(b) * g[a * n + b];
                            }
                        }
                    }
                }
                rank(&gram, n).saturating_sub(1) as u64
            }
            Some(r) => {
                r.df.unwrap_or_else(|| rank(&self.gram, r.columns.len()).saturating_sub(1) as u64)
            }
            None => {
                let n_psu: usize = self.tree.values().map(BTreeMap::len).sum();
                n_psu.saturating_sub(self.tree.len()) as u64
            }
        };
        Ok(DesignInfo {
            unit_weight,
            calibration,
            strata,
            stage2: two_stage.then_some(stage2),
            lonely: design.lonely_psu,
            df,
            replicates: design.replicates.clone(),
            confidence: design.confidence,
            cv_caution: design.cv_caution,
            cv_suppress: design.cv_suppress,
            min_n: design.min_n,
        })
    }
}

/// Whether R recomputes a replicate design's degrees of freedom after calibrating it (its
/// `postStratify`, `rake` and unbounded linear `calibrate` drop `degf`; the other methods keep
/// it).
fn recomputes_df(design: &Design) -> bool {
    design.replicates.is_some()
        && design.calibration.as_ref().is_some_and(|c| {
            c.method == CalMethod::Poststratify
                || c.method == CalMethod::Ipf
                || (c.method == CalMethod::Linear && c.bounds.is_none())
        })
}

/// The nonresponse adjustment of a design's classes (see [`DesignPartial::adjust`]).
struct NrAdjust {
    /// Each class's factor: (respondents' + nonrespondents' weight) / respondents' weight of
    /// its weighting class for respondents, 0 for the others.
    f: Vec<f64>,
    /// The same from each replicate's weights.
    f_reps: Vec<Vec<f64>>,
    /// Each class's weighting class (`None` for the ineligible).
    of: Vec<Option<u32>>,
    /// Each weighting class's design weight of respondents and nonrespondents.
    total: Vec<f64>,
    /// Each class's response: [`RESPONDENT`], [`NONRESPONDENT`] or [`INELIGIBLE`].
    flag: Vec<char>,
}

impl DesignPartial {
    /// The design's weight adjustments, in order: nonresponse by weighting classes, then
    /// calibration to the population totals. Each replicate is adjusted on its own weights
    /// (as svrep's `adjust_weights_for_nonresponse` and R's `calibrate.svyrep.design` do).
    #[allow(clippy::needless_range_loop)] // classes × auxiliary variables, by index
    fn adjust(
        &self,
        design: &Design,
        unit_weight: &dyn Fn(&Unit) -> f64,
    ) -> std::result::Result<CalInfo, String> {
        let k = self.classes.names.len();
        let mut w = vec![0.0; k];
        for (u, v) in &self.class_w {
            w[u.3 as usize] += v * unit_weight(u);
        }
        let r = design.replicates.as_ref().map_or(0, |r| r.columns.len());
        let rep_w = |a: usize| -> Vec<f64> {
            (0..k)
                .map(|c| self.class_reps.get(&(c as u32)).map_or(0.0, |t| t[a]))
                .collect()
        };
        let nr = match &design.nonresponse {
            None => None,
            Some(spec) => Some(self.nonresponse(spec, design, &w, r, &rep_w)?),
        };
        let ones = vec![1.0; k];
        let f = nr.as_ref().map_or(&ones, |n| &n.f);
        let adjusted: Vec<f64> = w.iter().zip(f).map(|(a, b)| a * b).collect();
        let mut g_cal = vec![1.0; k];
        let mut g_cal_reps: Vec<Vec<f64>> = vec![vec![1.0; k]; r];
        let (mut x, mut pinv, mut ipf) = (vec![Vec::new(); k], Vec::new(), None);
        if let Some(cal) = &design.calibration {
            let model = self.calibration_model(cal, &adjusted)?;
            let rep_adjusted = |a: usize| -> Vec<f64> {
                rep_w(a)
                    .iter()
                    .enumerate()
                    .map(|(c, v)| v * nr.as_ref().map_or(1.0, |n| n.f_reps[a][c]))
                    .collect()
            };
            let replicate = |a: usize, e: String| match &design.replicates {
                Some(reps) => format!("replicate {} (`{}`): {e}", a + 1, reps.columns[a]),
                None => e,
            };
            if cal.method == CalMethod::Ipf {
                let rake = |w: &[f64], passes: Option<u32>| {
                    crate::calibrate::ipf(
                        &crate::calibrate::Ipf {
                            category: &model.category,
                            totals: &model.totals,
                            cell: &model.cell,
                            w,
                            epsilon: cal.epsilon,
                            max_iterations: cal.max_iterations,
                        },
                        passes,
                    )
                };
                let solution = rake(&adjusted, None)?;
                if !solution.converged {
                    tracing::warn!(
                        passes = solution.passes,
                        epsilon = cal.epsilon,
                        "raking (ipf) did not converge: the weights of the last pass are used, as R's rake() does"
                    );
                }
                // Each replicate raked on its own weights, as many passes as the full sample
                // (R's rake() post-stratifies the replicate design as a whole).
                for (a, ga) in g_cal_reps.iter_mut().enumerate() {
                    *ga = rake(&rep_adjusted(a), Some(solution.passes))
                        .map_err(|e| replicate(a, e))?
                        .g;
                }
                g_cal = solution.g;
                let mut n = vec![0.0; k];
                for (u, m) in &self.class_n {
                    if adjusted[u.3 as usize] > 0.0 {
                        n[u.3 as usize] += *m as f64;
                    }
                }
                ipf = Some(IpfVar {
                    category: model.category,
                    steps: solution.steps,
                    n,
                });
            } else {
                let solve = |w: &[f64]| {
                    crate::calibrate::solve(&crate::calibrate::Problem {
                        method: match cal.method {
                            CalMethod::Poststratify => CalMethod::Linear,
                            m => m,
                        },
                        x: &model.x,
                        w,
                        population: &model.population,
                        bounds: cal.bounds,
                        trim: cal.trim,
                        epsilon: cal.epsilon,
                        max_iterations: cal.max_iterations,
                    })
                };
                g_cal = solve(&adjusted)?.g;
                for (a, ga) in g_cal_reps.iter_mut().enumerate() {
                    *ga = solve(&rep_adjusted(a)).map_err(|e| replicate(a, e))?.g;
                }
                let p = model.population.len();
                let mut xtwx = vec![0.0; p * p];
                for c in 0..k {
                    for a in 0..p {
                        for b in 0..p {
                            xtwx[a * p + b] += adjusted[c] * model.x[c][a] * model.x[c][b];
                        }
                    }
                }
                pinv = crate::calibrate::pinv(&xtwx, p);
                x = model.x;
            }
        }
        let g: Vec<f64> = (0..k).map(|c| f[c] * g_cal[c]).collect();
        let g_reps: Vec<Vec<f64>> = if design.calibration.is_some() || nr.is_some() {
            (0..r)
                .map(|a| {
                    (0..k)
                        .map(|c| g_cal_reps[a][c] * nr.as_ref().map_or(1.0, |n| n.f_reps[a][c]))
                        .collect()
                })
                .collect()
        } else {
            Vec::new()
        };
        let units = self
            .class_w
            .iter()
            .map(|(u, v)| (*u, v * unit_weight(u)))
            .collect();
        let records = self
            .class_n
            .iter()
            .filter(|(u, _)| {
                nr.as_ref()
                    .is_none_or(|n| n.flag[u.3 as usize] == RESPONDENT)
            })
            .map(|(_, n)| n)
            .sum();
        Ok(CalInfo {
            ipf,
            g,
            g_cal,
            g_reps,
            calibrated: design.calibration.is_some(),
            x,
            pinv,
            units,
            records,
            nr,
        })
    }

    /// Each class's nonresponse factor from the design weights `w` of the classes (and from
    /// each of the `r` replicates' weights).
    fn nonresponse(
        &self,
        spec: &crate::spec::Nonresponse,
        design: &Design,
        w: &[f64],
        r: usize,
        rep_w: &dyn Fn(usize) -> Vec<f64>,
    ) -> std::result::Result<NrAdjust, String> {
        let k = self.classes.names.len();
        let skip = design.calibration.as_ref().map_or(0, |c| c.columns().len());
        let mut ids = Interner::default();
        let mut of = Vec::with_capacity(k);
        let mut flag = Vec::with_capacity(k);
        for name in &self.classes.names {
            let parts: Vec<&str> = name.split('\u{1f}').collect();
            let fl = parts
                .last()
                .and_then(|p| p.chars().next())
                .unwrap_or(NONRESPONDENT);
            let codes = parts
                .get(skip..skip + spec.classes.len())
                .unwrap_or_default()
                .join("\u{1f}");
            flag.push(fl);
            of.push((fl != INELIGIBLE).then(|| ids.id(&codes)));
        }
        let m = ids.names.len();
        let factors = |w: &[f64]| -> (Vec<f64>, Vec<f64>, Vec<f64>) {
            let (mut all, mut resp) = (vec![0.0; m], vec![0.0; m]);
            for c in 0..k {
                if let Some(j) = of[c] {
                    all[j as usize] += w[c];
                    if flag[c] == RESPONDENT {
                        resp[j as usize] += w[c];
                    }
                }
            }
            let f = (0..k)
                .map(|c| match of[c] {
                    Some(j) if flag[c] == RESPONDENT => all[j as usize] / resp[j as usize],
                    _ => 0.0,
                })
                .collect();
            (f, all, resp)
        };
        let (f, total, resp) = factors(w);
        let mut empty: Vec<(String, f64)> = (0..m)
            .filter(|&j| resp[j] == 0.0 && total[j] > 0.0)
            .map(|j| (ids.names[j].replace('\u{1f}', " × "), total[j]))
            .collect();
        if !empty.is_empty() {
            empty.sort_by(|a, b| a.0.cmp(&b.0));
            let more = empty.len().saturating_sub(MISSING_SHOWN);
            let shown: Vec<String> = empty
                .iter()
                .take(MISSING_SHOWN)
                .map(|(c, w)| format!("{} (nonrespondents' weight {w:.2})", crate::error::quote(c)))
                .collect();
            return Err(format!(
                "nonresponse: weighting class(es) {}{} of {} have nonrespondents but no respondent (with a weight): merge them with other classes",
                shown.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                },
                spec.classes.join(" × ")
            ));
        }
        let mut f_reps = Vec::with_capacity(r);
        for a in 0..r {
            // A class without respondents in a replicate (all its PSUs dropped) has no
            // nonrespondents there either: its factor is 0 × ∞, taken as 0.
            let (fa, _, _) = factors(&rep_w(a));
            f_reps.push(
                fa.into_iter()
                    .map(|v| if v.is_finite() { v } else { 0.0 })
                    .collect(),
            );
        }
        Ok(NrAdjust {
            f,
            f_reps,
            of,
            total,
            flag,
        })
    }

    /// The calibration model on the classes, checked against the classes' weights `w` (a
    /// class of weight 0, e.g. of nonrespondents, is in no category): each class's category in
    /// each margin with the margins' totals, and its auxiliary vector (an intercept and the
    /// indicators of its category in each margin, all but each margin's first category: the
    /// span of R's `~m1 + m2 + …`) with the population totals.
    #[allow(clippy::needless_range_loop)] // classes × auxiliary variables, by index
    fn calibration_model(
        &self,
        cal: &Calibration,
        w: &[f64],
    ) -> std::result::Result<Model, String> {
        use crate::error::quote;
        let columns = cal.columns();
        let k = self.classes.names.len();
        // Each class's category in each margin.
        let codes: Vec<Vec<&str>> = self
            .classes
            .names
            .iter()
            .map(|n| n.split('\u{1f}').collect())
            .collect();
        let category = |c: usize, m: &crate::spec::Margin| -> Vec<String> {
            m.by.iter()
                .map(|b| {
                    let at = columns.iter().position(|x| x == b).unwrap_or(0);
                    codes[c].get(at).copied().unwrap_or_default().to_string()
                })
                .collect()
        };
        // Records outside the calibrated population: a category of their own in every margin,
        // whose total is their design weight (so their g is 1).
        let outside_w: f64 = (0..k)
            .filter(|&c| {
                codes[c]
                    .iter()
                    .take(columns.len())
                    .all(|x| *x == crate::spec::calibration::OUTSIDE)
            })
            .map(|c| w[c])
            .sum();
        let mut model = Model {
            x: vec![vec![1.0]; k],
            population: vec![0.0],
            category: Vec::new(),
            totals: Vec::new(),
            cell: Vec::new(),
        };
        for (mi, m) in cal.margins.iter().enumerate() {
            let mut totals = m.totals.clone();
            if outside_w > 0.0 {
                totals.insert(
                    vec![crate::spec::calibration::OUTSIDE.to_string(); m.by.len()],
                    outside_w,
                );
            }
            let m = &crate::spec::Margin {
                by: m.by.clone(),
                path: m.path.clone(),
                totals,
            };
            let cats: Vec<&Vec<String>> = m.totals.keys().collect();
            let mut seen = vec![0.0; cats.len()];
            let mut of = vec![None; k];
            for c in 0..k {
                if w[c] == 0.0 {
                    continue;
                }
                let mine = category(c, m);
                let Some(at) = cats.iter().position(|x| **x == mine) else {
                    return Err(format!(
                        "calibration: category {} of margin {} has respondents but no population total in {}",
                        quote(&mine.join(" × ")),
                        m.by.join(" × "),
                        m.path.display()
                    ));
                };
                seen[at] += w[c];
                of[c] = Some(at);
            }
            for (at, t) in m.totals.values().enumerate() {
                if seen[at] == 0.0 && *t > 0.0 {
                    return Err(format!(
                        "calibration: category {} of margin {} has a population total of {t} but no respondent (with a weight): merge it with another category",
                        quote(&cats[at].join(" × ")),
                        m.by.join(" × ")
                    ));
                }
            }
            if mi == 0 {
                model.population[0] = m.totals.values().sum();
            }
            // Indicators of every category but the first that has respondents.
            let used: Vec<usize> = (0..cats.len()).filter(|a| seen[*a] > 0.0).collect();
            for &a in used.iter().skip(1) {
                model.population.push(m.totals[cats[a]]);
                for c in 0..k {
                    let on = category(c, m) == *cats[a];
                    model.x[c].push(if on { 1.0 } else { 0.0 });
                }
            }
            model.category.push(of);
            model.totals.push(m.totals.values().copied().collect());
        }
        // Each class's cell of the margins' columns crossed (R's svytable in rake()).
        let mut cells = Interner::default();
        model.cell = codes
            .iter()
            .map(|c| {
                cells.id(&c
                    .iter()
                    .take(columns.len())
                    .copied()
                    .collect::<Vec<_>>()
                    .join("\u{1f}")) as usize
            })
            .collect();
        Ok(model)
    }
}

/// A calibration's model on the classes (see [`DesignPartial::calibration_model`]).
struct Model {
    x: Vec<Vec<f64>>,
    population: Vec<f64>,
    /// Per margin: each class's category (`None` for a class of weight 0).
    category: Vec<Vec<Option<usize>>>,
    /// Per margin: each category's total.
    totals: Vec<Vec<f64>>,
    /// Each class's cell of the margins' columns crossed.
    cell: Vec<usize>,
}

impl DesignInfo {
    /// The design weight of a unit's records when it is derived from the FPCs; 1 otherwise
    /// (the records' own weights are in their sums).
    fn weight_of(&self, u: &Unit) -> f64 {
        self.unit_weight
            .as_ref()
            .map_or(1.0, |m| m.get(&(u.0, u.1)).copied().unwrap_or(f64::NAN))
    }

    /// Each accepted record's weights for the restricted tier, when the design is calibrated:
    /// its record id (the source's `record_id` field, when it has one), file and record number,
    /// design weight, g and calibrated weight (what R's `weights(design)` gives after
    /// `calibrate`). `records` are the accepted records in the order the design read them;
    /// `partial` is the finished design, replayed on them to find each record's unit and class.
    pub fn record_weights(
        &self,
        design: &Design,
        partial: &DesignPartial,
        records: &DataFrame,
        record_id: Option<&str>,
    ) -> Result<DataFrame> {
        let Some(cal) = &self.calibration else {
            return Err(Error::Internal(
                "record weights of an unadjusted design".into(),
            ));
        };
        let mut replay = partial.clone();
        replay.next_record_psu = 0;
        let mut weight = Vec::with_capacity(records.height());
        let mut g = Vec::with_capacity(records.height());
        let mut calibrated = Vec::with_capacity(records.height());
        let mut response: Vec<&str> = Vec::new();
        const SLICE: usize = 1 << 16;
        let mut start = 0;
        while start < records.height() {
            let chunk = records.slice(start as i64, SLICE);
            let units = replay.add_chunk(design, &chunk)?;
            for (u, w) in units.unit.iter().zip(&units.w) {
                let w = w * self.weight_of(u);
                let gc = cal.g.get(u.3 as usize).copied().unwrap_or(f64::NAN);
                weight.push(w);
                g.push(gc);
                calibrated.push(w * gc);
                if let Some(nr) = &cal.nr {
                    response.push(response_name(
                        nr.flag.get(u.3 as usize).copied().unwrap_or(NONRESPONDENT),
                    ));
                }
            }
            start += SLICE;
        }
        let mut columns = Vec::new();
        if let Some(id) = record_id {
            let c = records
                .column(&raw_column(id))
                .ctx(|| format!("survey weights: {id}"))?;
            columns.push(c.clone().with_name("record_id".into()));
        }
        for c in ["_file", "_record"] {
            if let Ok(col) = records.column(c) {
                columns.push(col.clone());
            }
        }
        if cal.nr.is_some() {
            columns.push(Column::new("response".into(), response));
        }
        columns.push(Column::new("weight".into(), weight));
        columns.push(Column::new("g".into(), g));
        columns.push(Column::new("calibrated_weight".into(), calibrated));
        DataFrame::new(records.height(), columns).ctx(|| "survey weights".to_string())
    }

    /// The weight adjustment of the design by class, for the restricted tier: one row per
    /// combination of the margins' codes (and, with a nonresponse adjustment, of the weighting
    /// class's codes and the response) with its records, design weight total, nonresponse
    /// factor, g (nonresponse × calibration) and calibrated weight total (a record's
    /// calibrated weight is its design weight × g of its class). `None` without adjustment.
    pub fn calibration_frame(
        &self,
        design: &Design,
        partial: &DesignPartial,
    ) -> Option<Result<DataFrame>> {
        let cal = self.calibration.as_ref()?;
        let mut columns: Vec<&str> = design
            .calibration
            .as_ref()
            .map(|c| c.columns())
            .unwrap_or_default();
        let named = columns.len();
        if let Some(nr) = &design.nonresponse {
            let more: Vec<&str> = nr
                .classes
                .iter()
                .map(String::as_str)
                .filter(|c| !columns.contains(c))
                .collect();
            columns.extend(more);
        }
        let k = partial.classes.names.len();
        let (mut w, mut n) = (vec![0.0; k], vec![0u64; k]);
        for (u, v) in &partial.class_w {
            w[u.3 as usize] += v * self.weight_of(u);
        }
        for (u, c) in &partial.class_n {
            n[u.3 as usize] += c;
        }
        // A class's code in each column: the margins' codes first, then the weighting
        // class's (a column in both is read from the margins).
        let parts: Vec<Vec<&str>> = partial
            .classes
            .names
            .iter()
            .map(|n| n.split('\u{1f}').collect())
            .collect();
        let at = |j: usize| -> usize {
            if j < named {
                return j;
            }
            let name = columns[j];
            design
                .nonresponse
                .as_ref()
                .and_then(|nr| nr.classes.iter().position(|c| c == name))
                .map_or(usize::MAX, |i| named + i)
        };
        let code = |c: usize, j: usize| -> String {
            match parts[c].get(at(j)).copied() {
                // Outside the calibrated population (`_Z`: not applicable).
                Some(crate::spec::calibration::OUTSIDE) => "_Z".to_string(),
                code => code.unwrap_or_default().to_string(),
            }
        };
        // Rows sorted by their codes.
        let mut order: Vec<usize> = (0..k).collect();
        order.sort_by(|a, b| partial.classes.names[*a].cmp(&partial.classes.names[*b]));
        let mut out: Vec<Column> = (0..columns.len())
            .map(|j| {
                Column::new(
                    columns[j].into(),
                    order.iter().map(|c| code(*c, j)).collect::<Vec<String>>(),
                )
            })
            .collect();
        if let Some(nr) = &cal.nr {
            out.push(Column::new(
                "response".into(),
                order
                    .iter()
                    .map(|c| response_name(nr.flag[*c]))
                    .collect::<Vec<&str>>(),
            ));
        }
        out.push(Column::new(
            "respondents".into(),
            order.iter().map(|c| n[*c]).collect::<Vec<u64>>(),
        ));
        out.push(Column::new(
            "design_weight".into(),
            order.iter().map(|c| w[*c]).collect::<Vec<f64>>(),
        ));
        if let Some(nr) = &cal.nr {
            out.push(Column::new(
                "nonresponse_factor".into(),
                order.iter().map(|c| nr.f[*c]).collect::<Vec<f64>>(),
            ));
        }
        out.push(Column::new(
            "g".into(),
            order.iter().map(|c| cal.g[*c]).collect::<Vec<f64>>(),
        ));
        out.push(Column::new(
            "calibrated_weight".into(),
            order
                .iter()
                .map(|c| w[*c] * cal.g[*c])
                .collect::<Vec<f64>>(),
        ));
        Some(DataFrame::new(k, out).ctx(|| "the calibration table".to_string()))
    }
}

/// How a response flag is written in the restricted tier.
fn response_name(flag: char) -> &'static str {
    match flag {
        RESPONDENT => "respondent",
        INELIGIBLE => "ineligible",
        _ => "nonrespondent",
    }
}

/// An adjusted design (nonresponse, calibration or both): what scales the sums and
/// residualizes the linearized values.
pub struct CalInfo {
    /// Each class's factor: calibrated weight / design weight (nonresponse × calibration).
    g: Vec<f64>,
    /// Each class's calibration g (1 without calibration).
    g_cal: Vec<f64>,
    /// The factor of each class in each replicate (replicate designs).
    g_reps: Vec<Vec<f64>>,
    /// Whether the weights are calibrated (not only adjusted for nonresponse).
    calibrated: bool,
    /// Auxiliary vector of each class (empty without calibration).
    x: Vec<Vec<f64>>,
    /// (Σ_c w_c·x_c·x_c')⁺ with the nonresponse-adjusted weights.
    pinv: Vec<f64>,
    /// Design weight of each (unit, class) of the design, sorted.
    units: Vec<(Unit, f64)>,
    /// Respondent records of the design: R's `nrow()` of any subset of a calibrated design,
    /// which keeps every record (at weight 0 outside it); Korn–Graubard intervals scale by it.
    records: u64,
    /// The nonresponse adjustment, when the design has one.
    nr: Option<NrAdjust>,
    /// What R's `rake()` variance needs, when the calibration is IPF.
    ipf: Option<IpfVar>,
}

/// R's variance after `rake()` residualizes the linearized values x by ten sweeps over the
/// last pass's post-strata: x ← x − w_k·ave(x / w_k) in each category of each margin k, with
/// w_k a record's weight after step k and `ave` the unweighted mean over the category's
/// records. With x = w·u (w the weight before raking), a class's records share w_k / w, so the
/// sweeps need per class its factor after each step, its records and Σu.
struct IpfVar {
    /// Per margin: each class's category.
    category: Vec<Vec<Option<usize>>>,
    /// Per margin: each class's weight after that margin's step of the last pass / its weight
    /// before raking.
    steps: Vec<Vec<f64>>,
    /// Records of each class (0 for a class of weight 0).
    n: Vec<f64>,
}

impl CalInfo {
    /// R's ten sweeps over the last IPF pass's post-strata on `out` (Σx per (unit, class) of
    /// the design, in `units` order), from the cell's `us` (Σu per (unit, class)).
    fn rake_sweeps(&self, ipf: &IpfVar, out: &mut [(Unit, f64)], us: &[(Unit, f64)]) {
        let k = ipf.n.len();
        // The weight before raking is the design weight × the nonresponse factor: u and the
        // sweeps' weights are relative to it (`us` carries the whole factor g = f·g_ipf).
        let f = |c: usize| self.nr.as_ref().map_or(1.0, |n| n.f[c]);
        let mut u = vec![0.0; k];
        for (unit, v) in us {
            let c = unit.3 as usize;
            if c < k && f(c) > 0.0 {
                u[c] += v / f(c);
            }
        }
        for _ in 0..10 {
            for (cats, steps) in ipf.category.iter().zip(&ipf.steps) {
                let m = cats.iter().flatten().max().map_or(0, |a| a + 1);
                let (mut sum, mut n) = (vec![0.0; m], vec![0.0; m]);
                for c in 0..k {
                    if let Some(a) = cats[c] {
                        sum[a] += u[c] / steps[c];
                        n[a] += ipf.n[c];
                    }
                }
                let ave: Vec<f64> = sum
                    .iter()
                    .zip(&n)
                    .map(|(s, n)| if *n > 0.0 { s / n } else { 0.0 })
                    .collect();
                for c in 0..k {
                    if let Some(a) = cats[c] {
                        u[c] -= steps[c] * ave[a] * ipf.n[c];
                    }
                }
                for ((unit, x), (_, w)) in out.iter_mut().zip(&self.units) {
                    let c = unit.3 as usize;
                    if let Some(a) = cats.get(c).copied().flatten() {
                        *x -= steps[c] * ave[a] * w * f(c);
                    }
                }
            }
        }
    }

    /// The nonresponse factors of each class in each replicate (empty without nonresponse).
    fn f_reps(&self) -> &[Vec<f64>] {
        self.nr.as_ref().map_or(&[], |n| &n.f_reps)
    }

    /// R's `nrow()` of a domain of the design: every respondent record when the design is
    /// calibrated (its subsets keep every row), the domain's own otherwise.
    fn subset_rows(&self) -> Option<u64> {
        self.calibrated.then_some(self.records)
    }

    /// The linearized values of a cell (per unit and class, sorted, with the adjusted
    /// weights) as R's `svyrecvar` takes them, over every (unit, class) of the design.
    ///
    /// Calibration: residuals of the calibration model, e = z − w·f·g·x'β with
    /// β = (Σ w f x x')⁺ Σ x z / g (`qr.resid` on x·√(w f)). Nonresponse (the two-phase
    /// linearization of Σ_k N̂_k·Ȳ_rk, as the delta method on the weighting classes' totals
    /// gives it): a unit's value in weighting class k gains M_k·w·(1 − f), where
    /// M_k = Σ_{k} e / N̂_k is the class's respondent mean and N̂_k its respondents' and
    /// nonrespondents' design weight: respondents' values are centred at M_k and every
    /// eligible unit carries M_k for the class total it estimates.
    ///
    /// After IPF (R's `rake()`), the calibration step is R's sweeps instead (see [`IpfVar`]);
    /// they need `us`, the cell's unweighted linearized values × g per (unit, class).
    fn residuals(&self, zs: &[(Unit, f64)], us: &[(Unit, f64)]) -> Vec<(Unit, f64)> {
        let f = |c: usize| self.nr.as_ref().map_or(1.0, |n| n.f[c]);
        let mut mine = zs.iter().peekable();
        let mut out: Vec<(Unit, f64)> = self
            .units
            .iter()
            .map(|(u, _)| match mine.peek() {
                Some((v, z)) if v == u => {
                    let z = *z;
                    mine.next();
                    (*u, z)
                }
                _ => (*u, 0.0),
            })
            .collect();
        if let Some(ipf) = &self.ipf {
            self.rake_sweeps(ipf, &mut out, us);
        }
        let p = self.pinv.len().isqrt();
        if p > 0 {
            let mut xz = vec![0.0; p];
            for (u, z) in zs {
                let c = u.3 as usize;
                for (a, v) in xz.iter_mut().enumerate() {
                    *v += self.x[c][a] * z / self.g_cal[c];
                }
            }
            let beta: Vec<f64> = (0..p)
                .map(|a| (0..p).map(|b| self.pinv[a * p + b] * xz[b]).sum())
                .collect();
            let fitted: Vec<f64> = self
                .x
                .iter()
                .map(|x| x.iter().zip(&beta).map(|(a, b)| a * b).sum())
                .collect();
            for ((u, e), (_, w)) in out.iter_mut().zip(&self.units) {
                let c = u.3 as usize;
                *e -= w * f(c) * self.g_cal[c] * fitted[c];
            }
        }
        if let Some(nr) = &self.nr {
            let mut mean = vec![0.0; nr.total.len()];
            for (u, e) in &out {
                if let Some(k) = nr.of[u.3 as usize] {
                    mean[k as usize] += e;
                }
            }
            for (m, t) in mean.iter_mut().zip(&nr.total) {
                *m = if *t > 0.0 { *m / t } else { 0.0 };
            }
            for ((u, e), (_, w)) in out.iter_mut().zip(&self.units) {
                let c = u.3 as usize;
                if let Some(k) = nr.of[c] {
                    *e += mean[k as usize] * w * (1.0 - nr.f[c]);
                }
            }
        }
        out
    }
}

/// Read a replicate weights file: each row's key and its replicate columns as numbers. A
/// problem (unreadable file, a value that is not a number, a key given twice) is named with its
/// line, at most ten of them.
fn read_replicate_file(
    r: &Replicates,
    f: &crate::spec::ReplicateFile,
) -> (HashMap<String, Vec<f64>>, Vec<String>) {
    let mut map = HashMap::new();
    let mut problems = Vec::new();
    let file = f.path.display();
    let mut rdr = match csv::ReaderBuilder::new()
        .has_headers(true)
        .from_path(&f.path)
    {
        Ok(r) => r,
        Err(e) => {
            return (
                map,
                vec![format!(
                    "cannot read the replicate weights file {file}: {e}"
                )],
            );
        }
    };
    let header: Vec<String> = match rdr.headers() {
        Ok(h) => h
            .iter()
            .map(|h| h.trim_start_matches('\u{feff}').trim().to_string())
            .collect(),
        Err(e) => return (map, vec![format!("cannot read the header of {file}: {e}")]),
    };
    let at = |c: &str| header.iter().position(|h| h == c);
    let (Some(key_at), Some(cols)) = (
        at(&f.key),
        r.columns
            .iter()
            .map(|c| at(c))
            .collect::<Option<Vec<usize>>>(),
    ) else {
        return (
            map,
            vec![format!("{file} no longer has the columns the spec names")],
        );
    };
    let mut problem = |p: String| {
        if problems.len() < 10 {
            problems.push(p);
        }
    };
    for (i, rec) in rdr.records().enumerate() {
        let line = i + 2;
        let rec = match rec {
            Ok(rec) => rec,
            Err(e) => {
                problem(format!("{file} line {line}: {e}"));
                continue;
            }
        };
        let key = rec.get(key_at).unwrap_or("").trim().to_string();
        let mut values = Vec::with_capacity(cols.len());
        for (c, &j) in r.columns.iter().zip(&cols) {
            let v = rec.get(j).unwrap_or("").trim();
            match v.parse::<f64>() {
                Ok(x) if x.is_finite() => values.push(x),
                _ => {
                    problem(format!(
                        "{file} line {line}, column `{c}`: {} is not a replicate weight (a number)",
                        crate::error::quote(v)
                    ));
                    values.push(0.0);
                }
            }
        }
        if map.insert(key.clone(), values).is_some() {
            problem(format!(
                "{file} line {line}: record {} has a second row of replicate weights",
                crate::error::quote(&key)
            ));
        }
    }
    (map, problems)
}

/// The rank of the replicate weights matrix from its cross-products, with R's `qr()` criterion
/// (a column whose norm after removing the earlier ones is below 1e-5 of its own is dependent).
fn rank(gram: &[f64], r: usize) -> usize {
    if gram.len() < r * r {
        return r;
    }
    // Gram–Schmidt on the Gram matrix: a Cholesky factor of the kept columns.
    let g = |a: usize, b: usize| gram[a.min(b) * r + a.max(b)];
    let mut kept: Vec<usize> = Vec::new();
    let mut l: Vec<Vec<f64>> = Vec::new(); // rows of L for kept columns
    for c in 0..r {
        let norm2 = g(c, c);
        let mut coef = Vec::with_capacity(kept.len());
        for (k, &kc) in kept.iter().enumerate() {
            let dot: f64 = g(c, kc) - (0..k).map(|m| coef[m] * l[k][m]).sum::<f64>();
            coef.push(dot / l[k][k]);
        }
        let resid2 = norm2 - coef.iter().map(|x| x * x).sum::<f64>();
        if norm2 > 0.0 && resid2 > 1e-10 * norm2 {
            coef.push(resid2.sqrt());
            l.push(coef);
            kept.push(c);
        }
    }
    kept.len()
}

#[derive(Default, Clone, Copy)]
struct Stage {
    /// Units sampled (PSUs of a stratum, SSUs of a PSU).
    n: usize,
    /// 1 − sampling fraction (1 without an FPC).
    f: f64,
    /// The stratum's sampling fraction n_h/N_h, which weighs its PSUs' second stage.
    mult: f64,
}

impl Stage {
    /// A single unit sampled without certainty.
    fn is_lonely(&self) -> bool {
        self.n == 1 && self.f >= 1e-7
    }

    /// One stratum's (or PSU's) contribution from its units' totals `t` (units absent from the
    /// cell count as zeros); `None` for a lonely unit under "average".
    fn variance(&self, t: &[f64], lonely: LonelyPsu) -> Option<f64> {
        if self.f < 1e-7 {
            return Some(0.0);
        }
        if self.n > 1 {
            let n = self.n as f64;
            let mean = t.iter().sum::<f64>() / n;
            let present: f64 = t.iter().map(|x| (x - mean).powi(2)).sum();
            return Some(self.f * n / (n - 1.0) * (present + (n - t.len() as f64) * mean * mean));
        }
        match lonely {
            LonelyPsu::Adjust => Some(self.f * t.iter().map(|x| x * x).sum::<f64>()),
            LonelyPsu::Average => None,
            _ => Some(0.0),
        }
    }
}

/// The finished design: what each stratum and PSU contributes, and the degrees of freedom.
pub struct DesignInfo {
    /// The weight of each (stratum, PSU) when the design derives it from the FPCs (no weight
    /// column): the sums, gathered with weight 1, are scaled by it.
    unit_weight: Option<BTreeMap<(u32, u32), f64>>,
    /// The calibration, when the design has one.
    calibration: Option<CalInfo>,
    /// Indexed by stratum id.
    strata: Vec<Stage>,
    /// Per PSU, when the second stage counts.
    stage2: Option<BTreeMap<(u32, u32), Stage>>,
    lonely: LonelyPsu,
    pub df: u64,
    replicates: Option<Replicates>,
    confidence: f64,
    cv_caution: f64,
    cv_suppress: f64,
    min_n: u64,
}

impl DesignInfo {
    /// Taylor variance from linearized values per unit, sorted by unit.
    fn taylor(&self, zs: &[(Unit, f64)]) -> f64 {
        self.taylor_in(zs, None)
    }

    /// [`Self::taylor`] where, under the "average" lonely-PSU policy, the strata that count are
    /// `strata` ids (R's influence functions over a whole (sub)design, as `svyby(…, covmat =
    /// TRUE)` stacks them) rather than those of the domain.
    fn taylor_in(&self, zs: &[(Unit, f64)], strata: Option<&BTreeSet<u32>>) -> f64 {
        let (mut v1, mut v2) = (0.0, 0.0);
        let mut psu_totals = Vec::new();
        let mut ssu_totals = Vec::new();
        for stratum in runs(zs, |u| u.0.0) {
            let h = stratum[0].0.0;
            psu_totals.clear();
            for psu in runs(stratum, |u| u.0.1) {
                psu_totals.push(psu.iter().map(|e| e.1).sum::<f64>());
                if let Some(stage2) = &self.stage2 {
                    ssu_totals.clear();
                    for ssu in runs(psu, |u| u.0.2) {
                        ssu_totals.push(ssu.iter().map(|e| e.1).sum::<f64>());
                    }
                    if let Some(s) = stage2.get(&(h, psu[0].0.1)) {
                        v2 += s.mult * s.variance(&ssu_totals, self.lonely).unwrap_or(f64::NAN);
                    }
                }
            }
            if let Some(s) = self.strata.get(h as usize) {
                v1 += s.variance(&psu_totals, self.lonely).unwrap_or(0.0);
            }
        }
        // Under "average", R scales the sum by (strata in the domain)/(those not lonely): a
        // domain is a subset of the design in `svyby`, so only strata with a record in it count.
        if self.lonely == LonelyPsu::Average {
            let (mut present, mut ok) = (0.0, 0.0);
            let ids: Vec<u32> = match strata {
                Some(s) => s.iter().copied().collect(),
                None => runs(zs, |u| u.0.0).map(|s| s[0].0.0).collect(),
            };
            for h in ids {
                present += 1.0;
                if self.strata.get(h as usize).is_some_and(|s| !s.is_lonely()) {
                    ok += 1.0;
                }
            }
            if present > 0.0 {
                v1 *= present / ok;
            }
        }
        v1 + v2
    }

    /// Replicate variance of an estimate from its replicates.
    fn replicated(&self, r: &Replicates, est: f64, thetas: &[f64]) -> f64 {
        // Replicates without an estimate (an empty denominator) are left out, as R's na.omit.
        let ok: Vec<(f64, f64)> = thetas
            .iter()
            .zip(&r.rscales)
            .filter(|(t, _)| t.is_finite())
            .map(|(t, s)| (*t, *s))
            .collect();
        let centre = if r.mse {
            est
        } else {
            let used: Vec<f64> = ok.iter().filter(|e| e.1 > 0.0).map(|e| e.0).collect();
            used.iter().sum::<f64>() / used.len() as f64
        };
        r.scale
            * ok.iter()
                .map(|(t, s)| s * (t - centre).powi(2))
                .sum::<f64>()
    }
}

/// Consecutive runs of `v` with the same key.
fn runs<T, K: PartialEq>(v: &[T], key: impl Fn(&T) -> K) -> impl Iterator<Item = &[T]> {
    let mut rest = v;
    std::iter::from_fn(move || {
        let first = rest.first()?;
        let k = key(first);
        let n = rest.iter().take_while(|e| key(e) == k).count();
        let (run, tail) = rest.split_at(n);
        rest = tail;
        Some(run)
    })
}

/// Weighted sums of one (cell, unit): y the numerator variable, x the denominator's.
#[derive(Default, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct Sums {
    w: f64,
    y: f64,
    x: f64,
    yy: f64,
    xy: f64,
    xx: f64,
    /// Records, and records with a non-zero weight (R's nobs).
    n: u64,
    nz: u64,
    /// Σy and Σx unweighted, × g of an adjusted design's class: what R's variance after
    /// `rake()` averages (see [`IpfVar`]).
    uy: f64,
    ux: f64,
}

impl Sums {
    /// The sums of an adjusted design's class, each record's weight and its unweighted
    /// values multiplied by the class's factor `g`.
    fn adjust(&mut self, g: f64) {
        self.scale(g);
        self.uy *= g;
        self.ux *= g;
    }

    /// The sums of the same records with every weight multiplied by `g`.
    fn scale(&mut self, g: f64) {
        self.w *= g;
        self.y *= g;
        self.x *= g;
        self.yy *= g;
        self.xy *= g;
        self.xx *= g;
    }

    fn add(&mut self, o: &Sums) {
        self.w += o.w;
        self.y += o.y;
        self.x += o.x;
        self.yy += o.yy;
        self.xy += o.xy;
        self.xx += o.xx;
        self.n += o.n;
        self.nz += o.nz;
        self.uy += o.uy;
        self.ux += o.ux;
    }
}

/// One table's sums per (finest cell, unit) and, with replicate weights, per finest cell.
#[derive(Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct Partial {
    z: HashMap<Key, Sums>,
    /// (stratum, PSU) of the table's universe (records its filter keeps, with a weight): a
    /// filtered table's degrees of freedom are R's `degf()` of the subset design.
    domain: BTreeSet<(u32, u32)>,
    /// Per cell: Σ w_r·y for each replicate r, then Σ w_r·x.
    reps: HashMap<(CellIds, u32), Vec<f64>>,
    codes: Vec<Interner>,
    /// Records seen (every chunk's rows): the record order that quantile rules break ties by.
    seen: u64,
    /// A quantile table's weighted distribution: per (cell, unit, value) the weight of its
    /// records and its first and last record.
    q: HashMap<(CellIds, Unit, u64), QSums>,
    /// The same per (cell, class, value) for each replicate.
    qreps: HashMap<(CellIds, u32, u64), QReps>,
    /// Per cell, with replicate weights and the cells' own degrees of freedom: the
    /// cross-products of its records' replicate weights (upper triangle), whose rank less one
    /// is R's `degf()` of the cell's subset.
    qgram: HashMap<CellIds, Vec<f64>>,
    /// A share table with likelihood intervals: its records counted per (cell, unit, weight),
    /// from which R's fit starts (each record's own starting value).
    lik: HashMap<(CellIds, Unit, u64), u64>,
}

/// Records of one weight in one (cell, unit): ((cell, unit, weight bits), records).
type LikEntry = ((CellIds, Unit, u64), u64);

/// A quantile table's sums of (cell, (value, unit)), and of (cell, (value, class)) per replicate.
type QEntry = ((CellIds, (u64, Unit)), QSums);
type QRepEntry = ((CellIds, (u64, u32)), QReps);

/// A sortable key of a value: increasing keys are increasing values (−0 is 0).
fn value_key(x: f64) -> u64 {
    let b = (x + 0.0).to_bits();
    if b >> 63 == 1 { !b } else { b | (1 << 63) }
}

fn key_value(k: u64) -> f64 {
    f64::from_bits(if k >> 63 == 1 { k & !(1 << 63) } else { !k })
}

/// The records of one value in one (cell, unit): all of them (`n`), those of non-zero weight
/// (`nz`, the only ones a quantile rule sees, as R drops weights of 0), their weight, and the
/// (record number, weight) of the first and last of those.
#[derive(Default, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct QSums {
    w: f64,
    n: u64,
    nz: u64,
    first: Option<(u64, f64)>,
    last: Option<(u64, f64)>,
}

impl QSums {
    fn add_record(&mut self, seq: u64, w: f64) {
        self.n += 1;
        if w != 0.0 {
            self.w += w;
            self.nz += 1;
            self.first.get_or_insert((seq, w));
            self.last = Some((seq, w));
        }
    }

    fn scale(&mut self, g: f64) {
        self.w *= g;
        for e in [&mut self.first, &mut self.last].into_iter().flatten() {
            e.1 *= g;
        }
    }
}

impl Merge for QSums {
    fn merge(&mut self, o: &Self) {
        self.w += o.w;
        self.n += o.n;
        self.nz += o.nz;
        self.first = match (self.first, o.first) {
            (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
            (a, b) => a.or(b),
        };
        self.last = match (self.last, o.last) {
            (Some(a), Some(b)) => Some(if b.0 > a.0 { b } else { a }),
            (a, b) => a.or(b),
        };
    }
}

/// [`QSums`] of each replicate (`n` counts records of non-zero replicate weight).
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct QReps {
    w: Vec<f64>,
    n: Vec<u64>,
    first: Vec<(u64, f64)>,
    last: Vec<(u64, f64)>,
}

impl QReps {
    fn new(r: usize) -> Self {
        QReps {
            w: vec![0.0; r],
            n: vec![0; r],
            first: vec![(u64::MAX, 0.0); r],
            last: vec![(0, 0.0); r],
        }
    }

    fn add_record(&mut self, k: usize, seq: u64, w: f64) {
        if w != 0.0 {
            self.w[k] += w;
            if self.n[k] == 0 {
                self.first[k] = (seq, w);
            }
            self.n[k] += 1;
            self.last[k] = (seq, w);
        }
    }

    fn scale(&mut self, k: usize, g: f64) {
        self.w[k] *= g;
        self.first[k].1 *= g;
        self.last[k].1 *= g;
    }
}

impl Merge for QReps {
    fn merge(&mut self, o: &Self) {
        for k in 0..self.w.len().min(o.w.len()) {
            if o.n[k] == 0 {
                continue;
            }
            if self.n[k] == 0 || o.first[k].0 < self.first[k].0 {
                self.first[k] = o.first[k];
            }
            if self.n[k] == 0 || o.last[k].0 > self.last[k].0 {
                self.last[k] = o.last[k];
            }
            self.w[k] += o.w[k];
            self.n[k] += o.n[k];
        }
    }
}

impl Partial {
    /// Add one harmonized chunk, whose design units `units` come from [`DesignPartial::add_chunk`].
    pub fn add_chunk(&mut self, table: &TableSpec, units: &Units, df: &DataFrame) -> Result<()> {
        if matches!(table.kind, TableKind::SurveyContrast { .. }) {
            // A contrast gathers what the table it contrasts gathers.
            return self.add_chunk(&table.contrast_base(), units, df);
        }
        let ctx = |what: &str| format!("table {}: column {what}", table.id);
        let dims: Vec<StringChunked> = table
            .dimensions
            .iter()
            .map(|d| text(df, d, &ctx))
            .collect::<Result<_>>()?;
        if dims.len() > MAX_DIMS {
            return Err(Error::Internal(format!(
                "table {}: more than {MAX_DIMS} dimensions",
                table.id
            )));
        }
        let keep: Option<StringChunked> = table
            .filter
            .as_ref()
            .map(|(c, _)| text(df, c, &ctx))
            .transpose()?;
        // A numeric variable: a derived column, else a delivered field.
        let variable = |v: &str| -> Result<Float64Chunked> {
            let name = if df.column(v).is_ok() {
                v.to_string()
            } else {
                raw_column(v)
            };
            numbers(df, &name, &ctx)
        };
        let (y, x) = match &table.kind {
            TableKind::SurveyTotal { variable: Some(v) }
            | TableKind::SurveyMean { variable: v }
            | TableKind::SurveyQuantile { variable: v, .. } => (Some(variable(v)?), None),
            TableKind::SurveyRatio {
                numerator,
                denominator,
            } => (Some(variable(numerator)?), Some(variable(denominator)?)),
            _ => (None, None),
        };
        if self.codes.len() < dims.len() {
            self.codes.resize_with(dims.len(), Interner::default);
        }
        let r = units.reps.len();
        let quantile = matches!(table.kind, TableKind::SurveyQuantile { .. });
        // A cell's own degrees of freedom on a replicate design: the rank of its records'
        // replicate weights (R's degf() of the subset), for quantiles and for shares whose
        // interval takes the domain's (beta always does, as R's).
        let domain_rank = matches!(
            table.kind,
            TableKind::SurveyQuantile {
                design_df: false,
                ..
            } | TableKind::SurveyProportion {
                domain_df: true,
                ..
            } | TableKind::SurveyProportion {
                interval: PropInterval::Beta,
                ..
            }
        );
        let likelihood = matches!(
            table.kind,
            TableKind::SurveyProportion {
                interval: PropInterval::Likelihood,
                ..
            }
        );
        let first_seq = self.seen;
        self.seen += df.height() as u64;
        for row in 0..df.height() {
            // Nonrespondents and ineligible units are in the design, in no table.
            if units.respondent.get(row) == Some(&false) {
                continue;
            }
            if let (Some(k), Some((_, values))) = (&keep, &table.filter)
                && !k.get(row).is_some_and(|v| values.contains(v))
            {
                continue;
            }
            if units.w[row] != 0.0 {
                self.domain.insert((units.unit[row].0, units.unit[row].1));
            }
            // A missing value leaves the record out of the cell (R's na.rm = TRUE).
            let yv = match &y {
                None => 1.0,
                Some(y) => match y.get(row) {
                    Some(v) => v,
                    None => continue,
                },
            };
            let xv = match &x {
                None => 1.0,
                Some(x) => match x.get(row) {
                    Some(v) => v,
                    None => continue,
                },
            };
            let mut cell: CellIds = [0; MAX_DIMS];
            for (j, c) in dims.iter().enumerate() {
                cell[j] = self.codes[j].id(c.get(row).unwrap_or(crate::vocab::UNKNOWN));
            }
            let w = units.w[row];
            if quantile {
                if yv.is_nan() {
                    continue;
                }
                let seq = first_seq + row as u64;
                let value = value_key(yv);
                self.q
                    .entry((cell, units.unit[row], value))
                    .or_default()
                    .add_record(seq, w);
                if r > 0 {
                    let acc = self
                        .qreps
                        .entry((cell, units.unit[row].3, value))
                        .or_insert_with(|| QReps::new(r));
                    for (k, rw) in units.reps.iter().enumerate() {
                        acc.add_record(k, seq, rw[row]);
                    }
                    if domain_rank {
                        self.add_gram(cell, units, row);
                    }
                }
                continue;
            }
            self.z
                .entry((cell, units.unit[row]))
                .or_default()
                .add(&Sums {
                    w,
                    y: w * yv,
                    x: w * xv,
                    yy: w * yv * yv,
                    xy: w * xv * yv,
                    xx: w * xv * xv,
                    n: 1,
                    nz: u64::from(w != 0.0),
                    uy: yv,
                    ux: xv,
                });
            if likelihood && w != 0.0 {
                *self
                    .lik
                    .entry((cell, units.unit[row], w.to_bits()))
                    .or_default() += 1;
            }
            if r > 0 {
                let acc = self
                    .reps
                    .entry((cell, units.unit[row].3))
                    .or_insert_with(|| vec![0.0; 2 * r]);
                for (k, rw) in units.reps.iter().enumerate() {
                    acc[k] += rw[row] * yv;
                    acc[r + k] += rw[row] * xv;
                }
                if domain_rank {
                    self.add_gram(cell, units, row);
                }
            }
        }
        Ok(())
    }

    /// Add one record's replicate weights to its cell's cross-products.
    fn add_gram(&mut self, cell: CellIds, units: &Units, row: usize) {
        let r = units.reps.len();
        let g = self.qgram.entry(cell).or_insert_with(|| vec![0.0; r * r]);
        for a in 0..r {
            let wa = units.reps[a][row];
            if wa != 0.0 {
                for b in a..r {
                    g[a * r + b] += wa * units.reps[b][row];
                }
            }
        }
    }

    /// The finest cells' replicate cross-products summed to margin combination `mask`.
    fn rolled_grams(&self, mask: u32, d: usize) -> BTreeMap<CellIds, Vec<f64>> {
        let mut grams: Vec<(&CellIds, &Vec<f64>)> = self.qgram.iter().collect();
        grams.sort_unstable_by_key(|e| *e.0);
        let mut rolled: BTreeMap<CellIds, Vec<f64>> = BTreeMap::new();
        for (cell, g) in grams {
            let key = masked(cell, mask, d);
            match rolled.get_mut(&key) {
                Some(acc) => acc.merge(g),
                None => {
                    rolled.insert(key, g.clone());
                }
            }
        }
        rolled
    }

    /// Roll up to every margin and compute each cell's estimate, variance and design effect.
    pub fn finish(&self, table: &TableSpec, info: &DesignInfo) -> Result<DataFrame> {
        if let TableKind::SurveyQuantile {
            quantile,
            rule,
            interval,
            design_df,
            ..
        } = &table.kind
        {
            let cells = self.quantiles(table, info, quantile.0, *rule, *interval, *design_df);
            return to_frame(table, info, self.design_df(table, info), &cells);
        }
        if let TableKind::SurveyContrast {
            across,
            terms,
            ratio,
            ..
        } = &table.kind
        {
            let base = table.contrast_base();
            let (_, parts) = self.cells(&base, info, true);
            // The strata of the table's universe: R's covariances come from influence
            // functions over its whole (sub)design.
            let universe: BTreeSet<u32> = self.domain.iter().map(|u| u.0).collect();
            let cells = contrast(table, &base, info, &parts, across, terms, *ratio, &universe);
            return to_frame(table, info, self.design_df(&base, info), &cells);
        }
        let (cells, _) = self.cells(table, info, false);
        to_frame(table, info, self.design_df(table, info), &cells)
    }

    /// Every cell of the table, and (`collect`) each cell's linearized values and replicate
    /// estimates, which contrasts combine.
    fn cells(
        &self,
        table: &TableSpec,
        info: &DesignInfo,
        collect: bool,
    ) -> (BTreeMap<Vec<String>, Cell>, BTreeMap<Vec<String>, Parts>) {
        let mut parts: BTreeMap<Vec<String>, Parts> = BTreeMap::new();
        let d = table.dimensions.len();
        let (category, interval) = match &table.kind {
            TableKind::SurveyProportion {
                category, interval, ..
            } => (
                table.dimensions.iter().position(|x| x == category),
                *interval,
            ),
            _ => (None, PropInterval::Mean),
        };
        let total = matches!(table.kind, TableKind::SurveyTotal { .. });
        // The finest sums in key order: every roll-up below adds them in this fixed order.
        let mut finest: Vec<(Key, Sums)> = self.z.iter().map(|(k, s)| (*k, *s)).collect();
        finest.sort_unstable_by_key(|e| e.0);
        if info.unit_weight.is_some() {
            // Weights derived from the FPCs: each unit's sums, gathered with weight 1, scale.
            for (k, s) in &mut finest {
                s.scale(info.weight_of(&k.1));
            }
        }
        if let Some(cal) = &info.calibration {
            // Calibrated weights: every weighted sum of a class scales by its g.
            for (k, s) in &mut finest {
                s.adjust(cal.g.get(k.1.3 as usize).copied().unwrap_or(f64::NAN));
            }
        }
        // Replicate sums per finest cell: its classes' sums, each replicate's scaled by that
        // replicate's g of the class when the design is calibrated, added in class order.
        let mut by_class: Vec<(&(CellIds, u32), &Vec<f64>)> = self.reps.iter().collect();
        by_class.sort_unstable_by_key(|e| *e.0);
        let mut finest_reps: Vec<RepEntry> = Vec::new();
        for ((cell, class), v) in by_class {
            let mut v = v.clone();
            if let Some(cal) = info.calibration.as_ref().filter(|c| !c.g_reps.is_empty()) {
                let r = cal.g_reps.len();
                for (a, ga) in cal.g_reps.iter().enumerate() {
                    let g = ga.get(*class as usize).copied().unwrap_or(f64::NAN);
                    v[a] *= g;
                    if let Some(x) = v.get_mut(r + a) {
                        *x *= g;
                    }
                }
            }
            match finest_reps.last_mut() {
                Some(last) if last.0.0 == *cell => last.1.merge(&v),
                _ => finest_reps.push(((*cell, ()), v)),
            }
        }

        // A likelihood interval's records, by (cell, unit, weight), in key order.
        let mut lik_records: Vec<LikEntry> = self.lik.iter().map(|(k, n)| (*k, *n)).collect();
        lik_records.sort_unstable_by_key(|e| e.0);
        let mut out: BTreeMap<Vec<String>, Cell> = BTreeMap::new();
        // One margin combination at a time (bit j of a mask: dimension j is `_T`), so memory
        // holds the unit sums of one combination, not of the whole cube.
        for mask in 0u32..(1 << d) {
            if category.is_some_and(|c| mask & (1 << c) != 0) {
                continue; // the denominators of shares are not published
            }
            let rolled = roll(&finest, mask, d);
            let rolled_reps = roll(&finest_reps, mask, d);
            let den_mask = category.map(|c| mask | (1 << c));
            let den_rolled = den_mask.map(|m| roll(&finest, m, d));
            let den_reps = den_mask.map(|m| roll(&finest_reps, m, d));
            // Each domain's df on a replicate design, once per domain (not per category).
            let den_df: BTreeMap<CellIds, u64> = match (den_mask, &info.replicates) {
                (Some(m), Some(r)) if !self.qgram.is_empty() => self
                    .rolled_grams(m, d)
                    .into_iter()
                    .map(|(k, g)| (k, rank(&g, r.columns.len()).saturating_sub(1) as u64))
                    .collect(),
                _ => BTreeMap::new(),
            };
            let den: Option<BTreeMap<CellIds, &[(Key, Sums)]>> = den_rolled
                .as_ref()
                .map(|v| runs(v, |e| e.0.0).map(|g| (g[0].0.0, g)).collect());
            // R's intercept-only quasibinomial fit of each share, from its domain's records.
            let fits = match (category, &den) {
                (Some(c), Some(den)) if interval == PropInterval::Likelihood => {
                    self.likelihood_fits(&lik_records, info, mask, c, d, den)
                }
                _ => BTreeMap::new(),
            };
            let reps_of = |v: &[RepEntry], cell: &CellIds| -> Option<Vec<f64>> {
                v.binary_search_by_key(cell, |e| e.0.0)
                    .ok()
                    .map(|i| v[i].1.clone())
            };
            for group in runs(&rolled, |e| e.0.0) {
                let cell = group[0].0.0;
                let (den_group, den_cell) = match (category, &den) {
                    (Some(c), Some(den)) => {
                        let mut dk = cell;
                        dk[c] = TOTAL_ID;
                        match den.get(&dk) {
                            Some(g) => (*g, dk),
                            None => continue,
                        }
                    }
                    _ => (group, cell),
                };
                let e = estimate(total, category.is_some(), group, den_group);
                let mut var_logit = None;
                let mut replicates = None;
                let var = match &info.replicates {
                    None => match &info.calibration {
                        None => info.taylor(&e.zs),
                        Some(cal) => info.taylor(&cal.residuals(&e.zs, &e.us)),
                    },
                    Some(r) => {
                        let num = reps_of(&rolled_reps, &cell);
                        let dr = match &den_reps {
                            Some(v) => reps_of(v, &den_cell),
                            None => num.clone(),
                        };
                        let n = r.columns.len();
                        let thetas: Vec<f64> = match (num, dr) {
                            (Some(num), Some(dr)) => (0..n)
                                .map(|k| if total { num[k] } else { num[k] / dr[n + k] })
                                .collect(),
                            _ => vec![f64::NAN; n],
                        };
                        if matches!(interval, PropInterval::Logit | PropInterval::Likelihood) {
                            // R's svyglm refits the logit on each replicate.
                            let logit = |p: f64| (p / (1.0 - p)).ln();
                            let lt: Vec<f64> = thetas.iter().map(|t| logit(*t)).collect();
                            var_logit = Some(info.replicated(r, logit(e.estimate), &lt));
                        }
                        let v = info.replicated(r, e.estimate, &thetas);
                        if collect {
                            replicates = Some(thetas);
                        }
                        v
                    }
                };
                // The domain a share is estimated in (its denominator cell), as R's svyby
                // subsets the design: its records, and its PSUs with a weight less its strata.
                let domain = category.map(|_| {
                    let rows: u64 = match (
                        info.calibration.as_ref().and_then(CalInfo::subset_rows),
                        &info.replicates,
                    ) {
                        (Some(records), None) => records,
                        _ => den_group.iter().map(|(_, s)| s.n).sum(),
                    };
                    if info.replicates.is_some() {
                        // R's subset of a replicate design drops the other rows and recomputes
                        // its df from what is left: the rank of the domain's replicate weights.
                        return (rows, den_df.get(&den_cell).copied().unwrap_or(info.df));
                    }
                    let psus: BTreeSet<(u32, u32)> = den_group
                        .iter()
                        .filter(|(_, s)| s.nz > 0)
                        .map(|(k, _)| (k.1.0, k.1.1))
                        .collect();
                    let strata: BTreeSet<u32> = psus.iter().map(|u| u.0).collect();
                    (rows, (psus.len() - strata.len()) as u64)
                });
                let names = self.names(&cell, d);
                let deff =
                    (e.vsrs > 0.0 && e.vsrs.is_finite() && var.is_finite()).then(|| var / e.vsrs);
                if collect {
                    parts.insert(
                        names.clone(),
                        Parts {
                            estimate: e.estimate,
                            zs: e.zs,
                            us: e.us,
                            replicates,
                            n: e.n,
                            var,
                        },
                    );
                }
                out.insert(
                    names,
                    Cell {
                        estimate: e.estimate,
                        var,
                        n: e.n,
                        deff,
                        var_logit,
                        domain,
                        bounds: None,
                        cv: None,
                        lik: fits.get(&cell).copied(),
                    },
                );
            }
        }
        if let Some(c) = category {
            // A category absent from a domain is a share of 0 with no variance there, as R's
            // svymean of the category's indicator gives it: every domain lists every category
            // of the table's universe.
            let codes: Vec<String> = self
                .codes
                .get(c)
                .map(|i| i.names.clone())
                .unwrap_or_default();
            let mut domains: BTreeMap<Vec<String>, Option<(u64, u64)>> = BTreeMap::new();
            for (names, cell) in &out {
                let mut key = names.clone();
                key[c] = TOTAL.to_string();
                domains.entry(key).or_insert(cell.domain);
            }
            for (key, domain) in domains {
                for code in &codes {
                    let mut names = key.clone();
                    names[c] = code.clone();
                    if collect && !parts.contains_key(&names) {
                        let r = info.replicates.as_ref().map(|r| vec![0.0; r.columns.len()]);
                        parts.insert(
                            names.clone(),
                            Parts {
                                estimate: 0.0,
                                zs: Vec::new(),
                                us: Vec::new(),
                                replicates: r,
                                n: 0,
                                var: 0.0,
                            },
                        );
                    }
                    out.entry(names).or_insert(Cell {
                        estimate: 0.0,
                        var: 0.0,
                        n: 0,
                        deff: None,
                        var_logit: None,
                        domain,
                        bounds: None,
                        cv: None,
                        lik: None,
                    });
                }
            }
        } else {
            // The grand total exists even when no record is in the table.
            out.entry(vec![TOTAL.to_string(); d]).or_insert(Cell {
                estimate: 0.0,
                var: 0.0,
                n: 0,
                deff: None,
                var_logit: None,
                domain: None,
                bounds: None,
                cv: None,
                lik: None,
            });
        }
        (out, parts)
    }

    /// R's fit of `svyglm(y ~ 1, family = quasibinomial)` for every share of margin combination
    /// `mask` (category dimension `c`): each domain (a cell of `den`) a subset of the design
    /// whose weights R normalises to mean 1 over its rows, the share's records y = 1 and the
    /// rest of the domain's y = 0.
    fn likelihood_fits(
        &self,
        records: &[LikEntry],
        info: &DesignInfo,
        mask: u32,
        c: usize,
        d: usize,
        den: &BTreeMap<CellIds, &[(Key, Sums)]>,
    ) -> BTreeMap<CellIds, likelihood::Fit> {
        // Each domain's normalising factor (its rows over its weight) and rows: R's NROW of the
        // subset, the whole sample's for a calibrated design (whose subsets keep every row).
        let scale: BTreeMap<CellIds, (f64, u64)> = den
            .iter()
            .map(|(k, g)| {
                let rows = match info.calibration.as_ref().and_then(CalInfo::subset_rows) {
                    Some(records) => records,
                    None => g.iter().map(|(_, s)| s.n).sum(),
                };
                let sw: f64 = g.iter().map(|(_, s)| s.w).sum();
                (*k, (rows as f64 / sw, rows))
            })
            .collect();
        let mut domains: BTreeMap<CellIds, Vec<(CellIds, f64, u64)>> = BTreeMap::new();
        for ((cell, unit, w), count) in records {
            let num = masked(cell, mask, d);
            let mut dk = num;
            dk[c] = TOTAL_ID;
            let Some((f, _)) = scale.get(&dk) else {
                continue;
            };
            let mut w = f64::from_bits(*w) * info.weight_of(unit);
            if let Some(cal) = &info.calibration {
                w *= cal.g.get(unit.3 as usize).copied().unwrap_or(f64::NAN);
            }
            domains.entry(dk).or_default().push((num, w * f, *count));
        }
        let mut fits = BTreeMap::new();
        for (dk, recs) in &domains {
            let rows = scale.get(dk).map_or(0, |s| s.1);
            let shares: BTreeSet<CellIds> = recs.iter().map(|r| r.0).collect();
            for share in shares {
                let domain = recs.iter().map(|(k, w, n)| (*w, *k == share, *n));
                if let Some(f) = likelihood::fit(domain, rows) {
                    fits.insert(share, f);
                }
            }
        }
        fits
    }

    /// A cell's codes, one per dimension (`_T` for a margin).
    fn names(&self, cell: &CellIds, d: usize) -> Vec<String> {
        (0..d)
            .map(|j| {
                self.codes
                    .get(j)
                    .map_or(TOTAL, |c| c.name(cell[j]))
                    .to_string()
            })
            .collect()
    }

    /// R's degf() of a subset design: PSUs minus strata with a record of the universe
    /// (replicate designs keep their rank).
    fn design_df(&self, table: &TableSpec, info: &DesignInfo) -> u64 {
        match (&table.filter, &info.replicates) {
            (Some(_), None) => {
                let strata: BTreeSet<u32> = self.domain.iter().map(|u| u.0).collect();
                (self.domain.len() as u64).saturating_sub(strata.len() as u64)
            }
            _ => info.df,
        }
    }

    /// Every cell's quantile at `p` by `rule` and its interval, as R's `svyby(~v, ~dims,
    /// design, svyquantile, quantiles = p, qrule = rule, interval.type = interval)`: each cell
    /// a subset of the design with its own degrees of freedom (unless `design_df`). A cell
    /// without a record of non-zero weight has no quantile and is left out.
    fn quantiles(
        &self,
        table: &TableSpec,
        info: &DesignInfo,
        p: f64,
        rule: crate::spec::QuantileRule,
        method: QuantileInterval,
        design_df: bool,
    ) -> BTreeMap<Vec<String>, Cell> {
        use quantile::{Run, quantile};
        let d = table.dimensions.len();
        let whole_df = self.design_df(table, info);
        // The finest sums in key order (cell, value, unit), weights as the design makes them.
        let mut finest: Vec<QEntry> = self
            .q
            .iter()
            .map(|((c, u, v), s)| ((*c, (*v, *u)), *s))
            .collect();
        finest.sort_unstable_by_key(|e| e.0);
        for (k, s) in &mut finest {
            let u = k.1.1;
            if info.unit_weight.is_some() {
                s.scale(info.weight_of(&u));
            }
            if let Some(cal) = &info.calibration {
                s.scale(cal.g.get(u.3 as usize).copied().unwrap_or(f64::NAN));
            }
        }
        let mut finest_reps: Vec<QRepEntry> = self
            .qreps
            .iter()
            .map(|((c, class, v), s)| ((*c, (*v, *class)), s.clone()))
            .collect();
        finest_reps.sort_unstable_by_key(|e| e.0);
        if let Some(cal) = info.calibration.as_ref().filter(|c| !c.g_reps.is_empty()) {
            for (k, s) in &mut finest_reps {
                for (a, ga) in cal.g_reps.iter().enumerate() {
                    s.scale(a, ga.get(k.1.1 as usize).copied().unwrap_or(f64::NAN));
                }
            }
        }
        let level = info.confidence;
        let mut out = BTreeMap::new();
        for mask in 0u32..(1 << d) {
            let rolled = roll(&finest, mask, d);
            let rolled_reps = roll(&finest_reps, mask, d);
            let rolled_grams = self.rolled_grams(mask, d);
            for group in runs(&rolled, |e| e.0.0) {
                let cell = group[0].0.0;
                // The cell's distribution: its values' sums over units, in value order.
                let runs_of: Vec<Run> = runs(group, |e| e.0.1.0)
                    .filter_map(|v| {
                        let mut t = QSums::default();
                        for (_, s) in v {
                            t.merge(s);
                        }
                        Some(Run {
                            x: key_value(v[0].0.1.0),
                            w: t.w,
                            n: t.nz,
                            first: t.first?.1,
                            last: t.last?.1,
                        })
                    })
                    .collect();
                let Some(qhat) = quantile(rule, &runs_of, p) else {
                    continue;
                };
                // Per unit: the weight at or below the estimate (R's x <= qhat) and in all.
                let g_of = |u: &Unit| {
                    info.calibration
                        .as_ref()
                        .map_or(1.0, |c| c.g.get(u.3 as usize).copied().unwrap_or(f64::NAN))
                };
                let mut rows = 0;
                let mut psus: BTreeSet<(u32, u32)> = BTreeSet::new();
                for ((_, (_, u)), s) in group {
                    rows += s.n;
                    if s.nz > 0 {
                        psus.insert((u.0, u.1));
                    }
                }
                let strata: BTreeSet<u32> = psus.iter().map(|u| u.0).collect();
                // R's degf() of the cell's subset: PSUs less strata, or with replicate weights
                // the rank of the cell's replicate weights less one.
                let domain_df = match (&info.replicates, rolled_grams.get(&cell)) {
                    (Some(r), Some(g)) => rank(g, r.columns.len()).saturating_sub(1) as u64,
                    _ => (psus.len() - strata.len()) as u64,
                };
                let (num, den) = split_at(group, cell, qhat, &g_of);
                let share = estimate(false, true, &num, &den);
                // The cell's replicate sums, by value then class.
                let lo = rolled_reps.partition_point(|e| e.0.0 < cell);
                let hi = rolled_reps.partition_point(|e| e.0.0 <= cell);
                let cell_reps = &rolled_reps[lo..hi];
                let (var_p, var_q) = match &info.replicates {
                    None => {
                        let v = match &info.calibration {
                            None => info.taylor(&share.zs),
                            Some(cal) => info.taylor(&cal.residuals(&share.zs, &share.us)),
                        };
                        (v, None)
                    }
                    Some(r) => {
                        let n = r.columns.len();
                        let mut below = vec![0.0; n];
                        let mut all = vec![0.0; n];
                        let mut by_value: Vec<(u64, QReps)> = Vec::new();
                        for ((_, (v, _)), s) in cell_reps {
                            for k in 0..n {
                                all[k] += s.w[k];
                                if key_value(*v) <= qhat {
                                    below[k] += s.w[k];
                                }
                            }
                            match by_value.last_mut() {
                                Some(last) if last.0 == *v => last.1.merge(s),
                                _ => by_value.push((*v, s.clone())),
                            }
                        }
                        let thetas: Vec<f64> = (0..n).map(|k| below[k] / all[k]).collect();
                        let var_p = info.replicated(r, share.estimate, &thetas);
                        // interval = "quantile": each replicate's own quantile.
                        let var_q = (method == QuantileInterval::Quantile).then(|| {
                            let qs: Vec<f64> = (0..n)
                                .map(|k| {
                                    let runs_k: Vec<Run> = by_value
                                        .iter()
                                        .filter(|(_, s)| s.n[k] > 0)
                                        .map(|(v, s)| Run {
                                            x: key_value(*v),
                                            w: s.w[k],
                                            n: s.n[k],
                                            first: s.first[k].1,
                                            last: s.last[k].1,
                                        })
                                        .collect();
                                    quantile(rule, &runs_k, p).unwrap_or(f64::NAN)
                                })
                                .collect();
                            info.replicated(r, qhat, &qs)
                        });
                        (var_p, var_q)
                    }
                };
                let df = if design_df { whole_df } else { domain_df };
                let (z, t) = quantiles(level, df);
                let at = |pr: f64| {
                    (pr.is_finite() && (0.0..=1.0).contains(&pr))
                        .then(|| quantile(rule, &runs_of, pr))
                        .flatten()
                };
                // interval = "score": R's ffullerCI — the roots, between min + IQR/100 and
                // max − IQR/100 of the cell's values (unweighted, type 7), of the test
                // statistic of P(X > θ) = 1 − p at ± the critical value, by R's uniroot with
                // tol 1/(100·√rows); each root θ gives the quantile at the share of the cell's
                // records at or below it (unweighted, as R's mean(x <= θ)).
                let values: Vec<(f64, u64)> = if method == QuantileInterval::Score {
                    runs(group, |e| e.0.1.0)
                        .map(|v| (key_value(v[0].0.1.0), v.iter().map(|(_, s)| s.n).sum()))
                        .collect()
                } else {
                    Vec::new()
                };
                let statistic = |theta: f64| -> f64 {
                    let (num, den) = split_at(group, cell, theta, &g_of);
                    let below = estimate(false, true, &num, &den);
                    // svymean(U(θ)) / SE: U = (x > θ) − (1 − p).
                    (p - below.estimate) / info.taylor(&below.zs).max(0.0).sqrt()
                };
                let score_bounds = |c: f64| -> (Option<f64>, Option<f64>) {
                    let (Some(lo), Some(hi), Some(q1), Some(q3)) = (
                        values.first().map(|v| v.0),
                        values.last().map(|v| v.0),
                        quantile::type7(&values, 0.25),
                        quantile::type7(&values, 0.75),
                    ) else {
                        return (None, None);
                    };
                    let iqr = q3 - q1;
                    let (lower, upper) = (lo + iqr / 100.0, hi - iqr / 100.0);
                    let tol = 1.0 / (100.0 * (rows as f64).sqrt());
                    let at_root = |theta: Option<f64>| {
                        let theta = theta?;
                        let below: u64 = values.iter().filter(|v| v.0 <= theta).map(|v| v.1).sum();
                        at(below as f64 / rows as f64)
                    };
                    // R stops when either root cannot be found: no interval then.
                    match (
                        quantile::uniroot(&|t| statistic(t) - c, lower, upper, tol),
                        quantile::uniroot(&|t| statistic(t) + c, lower, upper, tol),
                    ) {
                        (Some(a), Some(b)) => (at_root(Some(a)), at_root(Some(b))),
                        _ => (None, None),
                    }
                };
                let bounds_at = |q: f64| -> (Option<f64>, Option<f64>) {
                    if method == QuantileInterval::Score {
                        return score_bounds(q);
                    }
                    match var_q {
                        Some(v) => {
                            let sd = v.max(0.0).sqrt();
                            let ok = |b: f64| b.is_finite().then_some(b);
                            (ok(qhat - q * sd), ok(qhat + q * sd))
                        }
                        None => {
                            let (lo, hi) = woodruff(
                                method,
                                share.estimate,
                                var_p,
                                q,
                                level,
                                info.calibration
                                    .as_ref()
                                    .and_then(CalInfo::subset_rows)
                                    .unwrap_or(rows),
                                domain_df,
                            );
                            (at(lo), at(hi))
                        }
                    }
                };
                let normal = bounds_at(z);
                let student = t.map_or((None, None), bounds_at);
                // R's SE: the t interval's width over 2·t.
                let se = match (student, t) {
                    ((Some(lo), Some(hi)), Some(t)) => Some((hi - lo) / (2.0 * t)),
                    _ => None,
                };
                let names = self.names(&cell, d);
                out.insert(
                    names,
                    Cell {
                        estimate: qhat,
                        var: se.map_or(f64::NAN, |s| s * s),
                        n: rows,
                        deff: None,
                        var_logit: None,
                        domain: Some((rows, domain_df)),
                        bounds: Some([normal, student]),
                        cv: None,
                        lik: None,
                    },
                );
            }
        }
        out
    }
}

/// A cell's sums per unit, in unit order.
type UnitSums = Vec<(Key, Sums)>;

/// A quantile cell's weight per unit at or below `theta` (R's `x <= θ`) and in all, as the
/// numerator and denominator sums of a share; the unweighted sums are the records × the
/// class's g (`g_of`), which R's `rake()` variance averages.
fn split_at(
    group: &[QEntry],
    cell: CellIds,
    theta: f64,
    g_of: &dyn Fn(&Unit) -> f64,
) -> (UnitSums, UnitSums) {
    let mut per_unit: BTreeMap<Unit, (Sums, Sums)> = BTreeMap::new();
    for ((_, (v, u)), s) in group {
        let e = per_unit.entry(*u).or_default();
        let all = Sums {
            w: s.w,
            y: s.w,
            x: s.w,
            yy: s.w,
            xy: s.w,
            xx: s.w,
            n: s.n,
            nz: s.nz,
            uy: s.n as f64 * g_of(u),
            ux: s.n as f64 * g_of(u),
        };
        e.1.add(&all);
        if key_value(*v) <= theta {
            e.0.add(&all);
        }
    }
    per_unit
        .into_iter()
        .map(|(u, (below, all))| (((cell, u), below), ((cell, u), all)))
        .unzip()
}

/// Woodruff's interval for a quantile: the interval of p̂, the cell's share at or below the
/// estimate (variance `var`), at quantile `q` by `method` — bounds outside [0, 1] or not a
/// number give no quantile. `beta` (Korn–Graubard) takes the cell's records and degrees of
/// freedom, as R's `woodruffCI` takes `nrow()` and `degf()` of the subset design.
fn woodruff(
    method: QuantileInterval,
    p: f64,
    var: f64,
    q: f64,
    level: f64,
    rows: u64,
    df: u64,
) -> (f64, f64) {
    let se = var.max(0.0).sqrt();
    let method = match method {
        QuantileInterval::Mean | QuantileInterval::Quantile | QuantileInterval::Score => {
            PropInterval::Mean
        }
        QuantileInterval::Beta => PropInterval::Beta,
        QuantileInterval::Xlogit => PropInterval::Xlogit,
        QuantileInterval::Asin => PropInterval::Asin,
    };
    let cell = Cell {
        estimate: p,
        var: if var.is_finite() { var } else { f64::NAN },
        n: rows,
        deff: None,
        var_logit: None,
        domain: Some((rows, df)),
        bounds: None,
        cv: None,
        lik: None,
    };
    if !se.is_finite() {
        return (f64::NAN, f64::NAN);
    }
    share_interval(method, &cell, q, level).unwrap_or((f64::NAN, f64::NAN))
}

/// Sum sorted entries of a finer key into the margin combination `mask` (dimension j becomes
/// `_T` where bit j is set); the result is sorted, and each sum is added in input order.
fn roll<U: Copy + Ord, S: Clone + Merge>(
    finest: &[((CellIds, U), S)],
    mask: u32,
    d: usize,
) -> Vec<((CellIds, U), S)>
where
    (CellIds, U): Ord,
{
    let mut v: Vec<((CellIds, U), S)> = finest
        .iter()
        .map(|((cell, u), s)| ((masked(cell, mask, d), *u), s.clone()))
        .collect();
    v.sort_by_key(|e| e.0); // stable: equal keys keep their input order
    let mut out: Vec<((CellIds, U), S)> = Vec::with_capacity(v.len());
    for (k, s) in v {
        match out.last_mut() {
            Some(last) if last.0 == k => last.1.merge(&s),
            _ => out.push((k, s)),
        }
    }
    out
}

/// `cell` with dimension j at `_T` where bit j of `mask` is set.
fn masked(cell: &CellIds, mask: u32, d: usize) -> CellIds {
    let mut key = *cell;
    for (j, k) in key.iter_mut().enumerate().take(d) {
        if mask & (1 << j) != 0 {
            *k = TOTAL_ID;
        }
    }
    key
}

trait Merge {
    fn merge(&mut self, o: &Self);
}

impl Merge for Sums {
    fn merge(&mut self, o: &Self) {
        self.add(o);
    }
}

impl Merge for Vec<f64> {
    fn merge(&mut self, o: &Self) {
        for (a, b) in self.iter_mut().zip(o) {
            *a += b;
        }
    }
}

/// A cell's point estimate, its linearized values per unit, its unweighted n and the variance
/// the same estimate would have under simple random sampling of the same size (R's `deff`).
struct Estimate {
    estimate: f64,
    zs: Vec<(Unit, f64)>,
    /// The same linearized values unweighted (× an adjusted class's g), per unit.
    us: Vec<(Unit, f64)>,
    n: u64,
    vsrs: f64,
}

/// `num`: the cell's unit sums; `den`: the denominator cell's (the same cell but for a share).
fn estimate(total: bool, share: bool, num: &[(Key, Sums)], den: &[(Key, Sums)]) -> Estimate {
    let sum = |g: &[(Key, Sums)]| {
        let mut t = Sums::default();
        for (_, s) in g {
            t.add(s);
        }
        t
    };
    let (tn, td) = (sum(num), sum(den));
    // The SRS variance of a weighted total Σ w·v in a domain of N = Σw, nobs records, from
    // Σw·v and Σw·v²: svyvar(v)·N²·(N − nobs)/(N·nobs), svyvar = nobs/(nobs − 1)·(weighted var).
    let srs = |n_w: f64, nobs: u64, sv: f64, svv: f64| {
        let nobs = nobs as f64;
        let var = nobs / (nobs - 1.0) * (svv / n_w - (sv / n_w).powi(2));
        var * n_w * n_w * (n_w - nobs) / (n_w * nobs)
    };
    if total {
        return Estimate {
            estimate: tn.y,
            zs: num.iter().map(|(k, s)| (k.1, s.y)).collect(),
            us: num.iter().map(|(k, s)| (k.1, s.uy)).collect(),
            n: tn.n,
            vsrs: srs(tn.w, tn.nz, tn.y, tn.yy),
        };
    }
    let big_x = td.x;
    let r = tn.y / big_x;
    // (Σw·z, Σz) per unit for z = (y − R·x)/X̂.
    type PerUnit = Vec<(Unit, f64)>;
    let (zs, us): (PerUnit, PerUnit) = if share {
        // The cell's units are a subset of its denominator's: merge by unit.
        let mut mine = num.iter().peekable();
        den.iter()
            .map(|(k, s)| {
                let (y, uy) = match mine.peek() {
                    Some((nk, ns)) if nk.1 == k.1 => {
                        let y = (ns.y, ns.uy);
                        mine.next();
                        y
                    }
                    _ => (0.0, 0.0),
                };
                ((k.1, (y - r * s.x) / big_x), (k.1, (uy - r * s.ux) / big_x))
            })
            .unzip()
    } else {
        num.iter()
            .map(|(k, s)| {
                (
                    (k.1, (s.y - r * s.x) / big_x),
                    (k.1, (s.uy - r * s.ux) / big_x),
                )
            })
            .unzip()
    };
    // Σ w·r_i² for r_i = (y_i − R·x_i)/X̂; its weighted mean is 0. For a share y is the cell's
    // indicator within the denominator cell: Σw·y² = Σw·x·y = Σw·y.
    let (yy, xy, xx) = if share {
        (tn.y, tn.y, td.xx)
    } else {
        (tn.yy, tn.xy, tn.xx)
    };
    let srr = (yy - 2.0 * r * xy + r * r * xx) / (big_x * big_x);
    Estimate {
        estimate: r,
        zs,
        us,
        n: tn.n,
        vsrs: srs(td.w, td.nz, 0.0, srr),
    }
}

/// A cell's estimate with what its variance is computed from: linearized values per unit
/// (sorted by unit) and, on a replicate design, the replicates' estimates.
struct Parts {
    estimate: f64,
    zs: Vec<(Unit, f64)>,
    us: Vec<(Unit, f64)>,
    replicates: Option<Vec<f64>>,
    n: u64,
    var: f64,
}

/// The contrast of `parts` (the cells of `base`) across `across` in every cell of the other
/// dimensions: Σ c_k·θ_k, or θ_a/θ_b, linearized as R's `svycontrast` does on the cells'
/// covariance (Taylor: the same combination of their linearized values, whose variance is the
/// quadratic form of their covariance matrix; replicates: of their replicate estimates). Its
/// `n` is the smallest of its terms' and its CV the largest, so that it is as reliable, and as
/// protected, as its weakest term. A cell missing a term is left out.
#[allow(clippy::too_many_arguments)]
fn contrast(
    table: &TableSpec,
    base: &TableSpec,
    info: &DesignInfo,
    parts: &BTreeMap<Vec<String>, Parts>,
    across: &str,
    terms: &[(String, crate::spec::Coefficient)],
    ratio: bool,
    universe: &BTreeSet<u32>,
) -> BTreeMap<Vec<String>, Cell> {
    let Some(j) = base.dimensions.iter().position(|d| d == across) else {
        return BTreeMap::new();
    };
    // Output dimension i is base dimension order[i].
    let order: Vec<usize> = table
        .dimensions
        .iter()
        .filter_map(|d| base.dimensions.iter().position(|b| b == d))
        .collect();
    let others: BTreeSet<Vec<String>> = parts
        .keys()
        .map(|k| order.iter().map(|&i| k[i].clone()).collect())
        .collect();
    let mut out = BTreeMap::new();
    for o in others {
        let key_of = |code: &str| -> Vec<String> {
            let mut k = vec![String::new(); base.dimensions.len()];
            for (i, &b) in order.iter().enumerate() {
                k[b] = o[i].clone();
            }
            k[j] = code.to_string();
            k
        };
        let Some(ps): Option<Vec<(&Parts, f64)>> = terms
            .iter()
            .map(|(code, c)| parts.get(&key_of(code)).map(|p| (p, c.0)))
            .collect()
        else {
            continue;
        };
        // The linear combination whose variance is the contrast's: its coefficients.
        let (estimate, coefs) = if ratio {
            let (a, b) = (ps[0].0.estimate, ps[1].0.estimate);
            let r = a / b;
            (r, vec![1.0 / b, -r / b])
        } else {
            (
                ps.iter().map(|(p, c)| c * p.estimate).sum::<f64>(),
                ps.iter().map(|(_, c)| *c).collect(),
            )
        };
        let var = match &info.replicates {
            None => {
                let mut z: BTreeMap<Unit, f64> = BTreeMap::new();
                let mut uz: BTreeMap<Unit, f64> = BTreeMap::new();
                for ((p, _), c) in ps.iter().zip(&coefs) {
                    for (u, v) in &p.zs {
                        *z.entry(*u).or_default() += c * v;
                    }
                    for (u, v) in &p.us {
                        *uz.entry(*u).or_default() += c * v;
                    }
                }
                let zs: Vec<(Unit, f64)> = z.into_iter().collect();
                let us: Vec<(Unit, f64)> = uz.into_iter().collect();
                match &info.calibration {
                    None => info.taylor_in(&zs, Some(universe)),
                    Some(cal) => info.taylor_in(&cal.residuals(&zs, &us), Some(universe)),
                }
            }
            Some(r) => {
                let n = r.columns.len();
                let mut lin = vec![0.0; n];
                for ((p, _), c) in ps.iter().zip(&coefs) {
                    let reps = p.replicates.as_deref().unwrap_or(&[]);
                    for (k, l) in lin.iter_mut().enumerate() {
                        *l += c * reps.get(k).copied().unwrap_or(f64::NAN);
                    }
                }
                // Centred as the terms' covariance is: at their estimates (mse) or at the
                // replicates' mean, which the combination keeps.
                let centre: f64 = ps
                    .iter()
                    .zip(&coefs)
                    .map(|((p, _), c)| c * p.estimate)
                    .sum();
                info.replicated(r, centre, &lin)
            }
        };
        let cv = ps
            .iter()
            .map(|(p, _)| {
                let se = p.var.max(0.0).sqrt();
                Some(se / p.estimate.abs()).filter(|c| c.is_finite())
            })
            .try_fold(0.0f64, |m, c| c.map(|c| m.max(c)));
        out.insert(
            o,
            Cell {
                estimate,
                var,
                n: ps.iter().map(|(p, _)| p.n).min().unwrap_or(0),
                deff: None,
                var_logit: None,
                domain: None,
                bounds: None,
                cv: Some(cv),
                lik: None,
            },
        );
    }
    out
}

struct Cell {
    estimate: f64,
    var: f64,
    n: u64,
    deff: Option<f64>,
    /// A share's variance on the logit scale from its replicates (`interval = "logit"`).
    var_logit: Option<f64>,
    /// A share's domain: its records and degrees of freedom (R's `nrow` and `degf` of the
    /// subset design).
    domain: Option<(u64, u64)>,
    /// A quantile's normal and Student-t bounds, computed with it (a bound may be missing).
    bounds: Option<[(Option<f64>, Option<f64>); 2]>,
    /// The CV that judges the cell's reliability when it is not its own (a contrast's: its
    /// terms' largest).
    cv: Option<Option<f64>>,
    /// A share's intercept-only quasibinomial fit (`interval = "likelihood"`).
    lik: Option<likelihood::Fit>,
}

/// A share's confidence interval by one of R's `svyciprop` methods, at quantile `q`
/// (`mean`, `logit`, `xlogit`, `asin`) or, for `beta`, at the confidence `level` with the
/// domain's records and degrees of freedom. `None` where R's interval is not a number (a share
/// of 0 or 1 under the transforming methods, a domain without degrees of freedom).
fn share_interval(method: PropInterval, cell: &Cell, q: f64, level: f64) -> Option<(f64, f64)> {
    use statrs::distribution::{Beta, ContinuousCDF, StudentsT};
    let p = cell.estimate;
    let se = cell.var.is_finite().then(|| cell.var.max(0.0).sqrt())?;
    let inside = p > 0.0 && p < 1.0;
    let expit = |x: f64| 1.0 / (1.0 + (-x).exp());
    let out = match method {
        PropInterval::Mean => (p - q * se, p + q * se),
        PropInterval::Xlogit | PropInterval::Logit if inside => {
            let l = (p / (1.0 - p)).ln();
            let s = match (method, cell.var_logit) {
                (PropInterval::Logit, Some(v)) => v.is_finite().then(|| v.max(0.0).sqrt())?,
                _ => se / (p * (1.0 - p)),
            };
            (expit(l - q * s), expit(l + q * s))
        }
        PropInterval::Asin if inside => {
            let a = p.sqrt().asin();
            let s = se / (2.0 * (p * (1.0 - p)).sqrt());
            // R squares the sine of a bound past 0 or π/2, which folds it back inside; the
            // bound is the end of the range instead.
            let lo = (a - q * s).max(0.0).sin().powi(2);
            let hi = (a + q * s).min(std::f64::consts::FRAC_PI_2).sin().powi(2);
            (lo, hi)
        }
        PropInterval::Beta if inside => {
            let (rows, df) = cell.domain?;
            let alpha = 1.0 - level;
            let t = |df: f64| {
                StudentsT::new(0.0, 1.0, df)
                    .ok()
                    .map(|t| t.inverse_cdf(alpha / 2.0))
            };
            let ratio = t(rows.checked_sub(1)? as f64)? / t(df as f64)?;
            let n_eff = p * (1.0 - p) / cell.var * ratio * ratio;
            if !(n_eff.is_finite() && n_eff > 0.0) {
                return None;
            }
            let lo = Beta::new(n_eff * p, n_eff * (1.0 - p) + 1.0)
                .ok()?
                .inverse_cdf(alpha / 2.0);
            let hi = Beta::new(n_eff * p + 1.0, n_eff * (1.0 - p))
                .ok()?
                .inverse_cdf(1.0 - alpha / 2.0);
            (lo, hi)
        }
        _ => return None,
    };
    (out.0.is_finite() && out.1.is_finite()).then_some(out)
}

/// A share's bounds by `method` at quantile `q`: [`share_interval`]'s, or the profile
/// likelihood's, either of whose bounds may be missing on its own.
fn share_bounds(
    method: PropInterval,
    cell: &Cell,
    q: f64,
    level: f64,
) -> (Option<f64>, Option<f64>) {
    if method == PropInterval::Likelihood {
        let Some(fit) = &cell.lik else {
            return (None, None);
        };
        // The logit's design-based SE: its replicates' (R refits the model on each), else the
        // share's by the delta method at the fitted value (R's sandwich of the fit).
        let se = match cell.var_logit {
            Some(v) => v.sqrt(),
            None => {
                let mu = 1.0 / (1.0 + (-fit.beta).exp());
                cell.var.sqrt() / (mu * (1.0 - mu))
            }
        };
        return likelihood::interval(fit, se, q);
    }
    match share_interval(method, cell, q, level) {
        Some((lo, hi)) => (Some(lo), Some(hi)),
        None => (None, None),
    }
}

/// The two-sided quantile of a confidence level: normal, and Student's t with `df` degrees of
/// freedom (`None` when the design has none).
fn quantiles(level: f64, df: u64) -> (f64, Option<f64>) {
    use statrs::distribution::{ContinuousCDF, Normal, StudentsT};
    let p = 1.0 - (1.0 - level) / 2.0;
    let z = Normal::standard().inverse_cdf(p);
    let t = (df > 0)
        .then(|| StudentsT::new(0.0, 1.0, df as f64).ok())
        .flatten()
        .map(|t| t.inverse_cdf(p));
    (z, t)
}

/// The most cells one covariance matrix takes (its pairs grow with their square: 2,000 cells
/// are 2,001,000 rows); more rejects the source, naming the count.
pub const COVARIANCE_CELLS_MAX: usize = 2_000;

/// A cell's contribution to a covariance: its linearized values (residualized on an adjusted
/// design) summed per (stratum, PSU, SSU), or its replicate estimates.
enum CovPart {
    Taylor(Vec<(Unit, f64)>),
    Replicates(Vec<f64>),
}

/// The covariance matrix of every cell of `tables` (survey totals, means, shares or ratios of
/// one design), lower triangle with the diagonal, as R's `vcov()` of `svyby(…, covmat = TRUE)`
/// or of `svycontrast` over several tables: one row per pair (table, cell) × (table, cell) in
/// table order, then cell order. A cell is written `DIM=code;DIM=code` (`_T` a total). The
/// covariance is the polarization (V(a + b) − V(a − b)) / 4 of the variance the tables publish,
/// so the diagonal is their variance, on every design and lonely-PSU policy.
pub fn covariance_frame(
    tables: &[(&TableSpec, &Partial)],
    info: &DesignInfo,
) -> std::result::Result<DataFrame, String> {
    let mut cells: Vec<(String, String, f64, CovPart)> = Vec::new();
    for (t, p) in tables {
        let (_, parts) = p.cells(t, info, true);
        for (names, part) in parts {
            let cell = t
                .dimensions
                .iter()
                .zip(&names)
                .map(|(d, c)| format!("{d}={c}"))
                .collect::<Vec<_>>()
                .join(";");
            let cov = match &info.replicates {
                Some(_) => CovPart::Replicates(part.replicates.unwrap_or_default()),
                None => {
                    let zs = match &info.calibration {
                        None => part.zs,
                        Some(cal) => cal.residuals(&part.zs, &part.us),
                    };
                    let mut by_unit: BTreeMap<Unit, f64> = BTreeMap::new();
                    for (u, z) in zs {
                        *by_unit.entry((u.0, u.1, u.2, 0)).or_default() += z;
                    }
                    CovPart::Taylor(by_unit.into_iter().collect())
                }
            };
            cells.push((t.id.clone(), cell, part.estimate, cov));
        }
        if cells.len() > COVARIANCE_CELLS_MAX {
            return Err(format!(
                "the covariance of tables {} has more than {COVARIANCE_CELLS_MAX} cells (their pairs grow with its square): list fewer tables or give them fewer dimensions",
                tables
                    .iter()
                    .map(|(t, _)| format!("`{}`", t.id))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    // (V(a·sa + b·sb)) for the polarization, each cell scaled to unit variance first so that
    // a cell of small variance keeps its digits beside one of large variance.
    let combine = |a: &CovPart, b: &CovPart, sa: f64, sb: f64, centre: f64| -> f64 {
        match (a, b, &info.replicates) {
            (CovPart::Taylor(a), CovPart::Taylor(b), _) => {
                let mut z: Vec<(Unit, f64)> = Vec::with_capacity(a.len() + b.len());
                let (mut i, mut j) = (0, 0);
                while i < a.len() || j < b.len() {
                    match (a.get(i), b.get(j)) {
                        (Some(x), Some(y)) if x.0 == y.0 => {
                            z.push((x.0, sa * x.1 + sb * y.1));
                            i += 1;
                            j += 1;
                        }
                        (Some(x), Some(y)) if x.0 < y.0 => {
                            z.push((x.0, sa * x.1));
                            i += 1;
                        }
                        (Some(x), None) => {
                            z.push((x.0, sa * x.1));
                            i += 1;
                        }
                        (_, Some(y)) => {
                            z.push((y.0, sb * y.1));
                            j += 1;
                        }
                        (None, None) => break,
                    }
                }
                info.taylor(&z)
            }
            (CovPart::Replicates(a), CovPart::Replicates(b), Some(r)) => {
                let lin: Vec<f64> = a.iter().zip(b).map(|(x, y)| sa * x + sb * y).collect();
                info.replicated(r, centre, &lin)
            }
            _ => f64::NAN,
        }
    };
    let n = cells.len() * (cells.len() + 1) / 2;
    let (mut ta, mut ca, mut tb, mut cb, mut cov) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let sd: Vec<f64> = cells
        .iter()
        .map(|c| combine(&c.3, &c.3, 1.0, 0.0, c.2).max(0.0).sqrt())
        .collect();
    for (i, a) in cells.iter().enumerate() {
        for (j, b) in cells[..=i].iter().enumerate() {
            let c = if i == j {
                sd[i] * sd[i]
            } else if sd[i] > 0.0 && sd[j] > 0.0 {
                let (sa, sb) = (1.0 / sd[i], 1.0 / sd[j]);
                let plus = combine(&a.3, &b.3, sa, sb, sa * a.2 + sb * b.2);
                let minus = combine(&a.3, &b.3, sa, -sb, sa * a.2 - sb * b.2);
                sd[i] * sd[j] * (plus - minus) / 4.0
            } else {
                0.0
            };
            ta.push(a.0.clone());
            ca.push(a.1.clone());
            tb.push(b.0.clone());
            cb.push(b.1.clone());
            cov.push(c);
        }
    }
    DataFrame::new(
        n,
        vec![
            Column::new("table_a".into(), ta),
            Column::new("cell_a".into(), ca),
            Column::new("table_b".into(), tb),
            Column::new("cell_b".into(), cb),
            Column::new("covariance".into(), cov),
        ],
    )
    .map_err(|e| format!("the covariance table: {e}"))
}

fn to_frame(
    table: &TableSpec,
    info: &DesignInfo,
    df: u64,
    cells: &BTreeMap<Vec<String>, Cell>,
) -> Result<DataFrame> {
    let h = cells.len();
    let unit = match &table.kind {
        TableKind::SurveyMean { .. } => "mean per person (weighted)",
        TableKind::SurveyProportion { .. } => "share of persons (weighted)",
        TableKind::SurveyRatio { .. } => "ratio of weighted totals",
        TableKind::SurveyQuantile { .. } => "quantile (weighted)",
        TableKind::SurveyContrast { ratio: true, .. } => "ratio of two estimates",
        TableKind::SurveyContrast { .. } => "contrast of estimates",
        TableKind::SurveyTotal { variable: Some(_) } => "total (weighted)",
        _ => "persons (weighted)",
    };
    let period = table.periods.list.first().ok_or_else(|| {
        crate::Error::Internal(format!("table {}: no reference period", table.id))
    })?;
    let mut columns = crate::disaggregate::cell_columns(table, period, unit, cells.keys());
    let est: Vec<f64> = cells.values().map(|c| c.estimate).collect();
    // A variance that cannot be computed (e.g. no replicate with an estimate) is null.
    let se: Vec<Option<f64>> = cells
        .values()
        .map(|c| c.var.is_finite().then(|| c.var.max(0.0).sqrt()))
        .collect();
    let n: Vec<u64> = cells.values().map(|c| c.n).collect();
    columns.push(Column::new("n".into(), n.clone()));
    columns.push(Column::new("estimate".into(), est.clone()));
    columns.push(Column::new("se".into(), se.clone()));
    let (z, t) = quantiles(info.confidence, df);
    let (method, domain_df) = match &table.kind {
        TableKind::SurveyProportion {
            interval,
            domain_df,
            ..
        } => (*interval, *domain_df),
        TableKind::SurveyQuantile { design_df, .. } => (PropInterval::Mean, !design_df),
        _ => (PropInterval::Mean, false),
    };
    // Each cell's degrees of freedom: the design's, or its domain's.
    let dfs: Vec<u64> = cells
        .values()
        .map(|c| match c.domain {
            Some((_, d)) if domain_df => d,
            _ => df,
        })
        .collect();
    // Each cell's interval at quantile q, by the table's method (p̂ ± q·SE for all but shares
    // and quantiles, whose bounds come with them).
    let normal: Vec<(Option<f64>, Option<f64>)> = cells
        .values()
        .map(|c| match c.bounds {
            Some(b) => b[0],
            None => share_bounds(method, c, z, info.confidence),
        })
        .collect();
    let student: Vec<(Option<f64>, Option<f64>)> = cells
        .values()
        .zip(&dfs)
        .map(|(c, d)| {
            if let Some(b) = c.bounds {
                return b[1];
            }
            let t = if *d == df {
                t
            } else {
                quantiles(info.confidence, *d).1
            };
            t.map_or((None, None), |t| {
                share_bounds(method, c, t, info.confidence)
            })
        })
        .collect();
    let bound = |v: &[(Option<f64>, Option<f64>)], high: bool| -> Vec<Option<f64>> {
        v.iter().map(|b| if high { b.1 } else { b.0 }).collect()
    };
    columns.push(Column::new("ci_low".into(), bound(&normal, false)));
    columns.push(Column::new("ci_high".into(), bound(&normal, true)));
    columns.push(Column::new("ci_low_t".into(), bound(&student, false)));
    columns.push(Column::new("ci_high_t".into(), bound(&student, true)));
    let cv: Vec<Option<f64>> = est
        .iter()
        .zip(&se)
        .zip(cells.values())
        .map(|((e, s), c)| match c.cv {
            Some(cv) => cv,
            None => Some((*s)? / e.abs()).filter(|c| c.is_finite()),
        })
        .collect();
    columns.push(Column::new("cv".into(), cv.clone()));
    columns.push(Column::new(
        "deff".into(),
        cells.values().map(|c| c.deff).collect::<Vec<Option<f64>>>(),
    ));
    columns.push(Column::new("df".into(), dfs));
    // Quality flags for disclosure control (defaults after Statistics Canada): a cell without a
    // CV is unreliable.
    columns.push(Column::new(
        crate::vocab::column::OBS_STATUS.into(),
        cv.iter()
            .map(|c| {
                if c.is_none_or(|c| c > info.cv_caution) {
                    "U"
                } else {
                    "A"
                }
            })
            .collect::<Vec<&str>>(),
    ));
    columns.push(Column::new(
        crate::vocab::column::SUPPRESS.into(),
        cv.iter()
            .zip(&n)
            .map(|(c, n)| *n < info.min_n || c.is_none_or(|c| c > info.cv_suppress))
            .collect::<Vec<bool>>(),
    ));
    DataFrame::new(h, columns).ctx(|| format!("table {}: assembling", table.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_intervals_stay_in_the_unit_interval() {
        let cell = |p: f64, var: f64| Cell {
            estimate: p,
            var,
            n: 10,
            deff: None,
            var_logit: None,
            domain: Some((10, 5)),
            bounds: None,
            cv: None,
            lik: None,
        };
        let q = 1.96;
        // A share of 0 or 1: only the Wald interval is a number (R's others are NaN).
        for m in [
            PropInterval::Logit,
            PropInterval::Xlogit,
            PropInterval::Asin,
            PropInterval::Beta,
        ] {
            assert_eq!(share_interval(m, &cell(0.0, 0.0), q, 0.95), None, "{m:?}");
            assert_eq!(share_interval(m, &cell(1.0, 0.0), q, 0.95), None, "{m:?}");
        }
        assert_eq!(
            share_interval(PropInterval::Mean, &cell(0.0, 0.0), q, 0.95),
            Some((0.0, 0.0))
        );
        // A small share with a wide SE: Wald goes below 0, the others stay inside, and the
        // arcsine's lower bound is 0 rather than R's folded-back value.
        let small = cell(0.02, 0.03f64.powi(2));
        let (lo, _) = share_interval(PropInterval::Mean, &small, q, 0.95).unwrap();
        assert!(lo < 0.0);
        for m in [
            PropInterval::Logit,
            PropInterval::Xlogit,
            PropInterval::Asin,
            PropInterval::Beta,
        ] {
            let (lo, hi) = share_interval(m, &small, q, 0.95).unwrap();
            assert!(
                (0.0..0.02).contains(&lo) && hi > 0.02 && hi < 1.0,
                "{m:?}: {lo} {hi}"
            );
        }
        assert_eq!(
            share_interval(PropInterval::Asin, &small, q, 0.95)
                .unwrap()
                .0,
            0.0
        );
        // logit(0.5) = 0: the logit interval is symmetric about 1/2.
        let (lo, hi) = share_interval(PropInterval::Logit, &cell(0.5, 0.01), q, 0.95).unwrap();
        assert!((lo + hi - 1.0).abs() < 1e-12);
        // A domain without degrees of freedom has no Korn–Graubard interval.
        let flat = Cell {
            domain: Some((10, 0)),
            ..cell(0.3, 0.01)
        };
        assert_eq!(share_interval(PropInterval::Beta, &flat, q, 0.95), None);
    }

    #[test]
    fn stratum_variance_counts_absent_psus_as_zeros() {
        // Stratum of 4 PSUs, the cell present in two with totals 2 and 6: mean 2,
        // Σ(t − 2)² = 0 + 16 + 2·4 = 24, times 4/3.
        let s = Stage {
            n: 4,
            f: 1.0,
            mult: 1.0,
        };
        let v = s.variance(&[2.0, 6.0], LonelyPsu::Fail).unwrap();
        assert!((v - 32.0).abs() < 1e-12, "{v}");
        // An FPC of 1 − 1/2 halves it; a census stratum contributes nothing.
        let half = Stage { f: 0.5, ..s };
        assert!((half.variance(&[2.0, 6.0], LonelyPsu::Fail).unwrap() - 16.0).abs() < 1e-12);
        let census = Stage { f: 0.0, ..s };
        assert_eq!(census.variance(&[2.0, 6.0], LonelyPsu::Fail), Some(0.0));
    }

    #[test]
    fn lonely_psu_policies() {
        let s = Stage {
            n: 1,
            f: 1.0,
            mult: 1.0,
        };
        assert_eq!(s.variance(&[3.0], LonelyPsu::Remove), Some(0.0));
        assert_eq!(s.variance(&[3.0], LonelyPsu::Certainty), Some(0.0));
        assert_eq!(s.variance(&[3.0], LonelyPsu::Adjust), Some(9.0));
        assert_eq!(s.variance(&[3.0], LonelyPsu::Average), None);
    }

    #[test]
    fn nonresponse_linearization_moves_the_class_mean_to_nonrespondents() {
        // One weighting class: a respondent unit (weight 2, y = 3) and a nonrespondent unit
        // (weight 2). f = 4 / 2 = 2, the adjusted total 2·2·3 = 12, the class mean 3: by hand,
        // w·(f·(y − ȳ) + ȳ) = 2·(0 + 3) = 6 for the respondent and w·ȳ = 6 for the other.
        let (u1, u2) = ((0, 1, 0, 0), (0, 2, 0, 1));
        let cal = CalInfo {
            ipf: None,
            g: vec![2.0, 0.0],
            g_cal: vec![1.0, 1.0],
            g_reps: Vec::new(),
            calibrated: false,
            x: vec![Vec::new(); 2],
            pinv: Vec::new(),
            units: vec![(u1, 2.0), (u2, 2.0)],
            records: 1,
            nr: Some(NrAdjust {
                f: vec![2.0, 0.0],
                f_reps: Vec::new(),
                of: vec![Some(0), Some(0)],
                total: vec![4.0],
                flag: vec![RESPONDENT, NONRESPONDENT],
            }),
        };
        let e = cal.residuals(&[(u1, 12.0)], &[]);
        assert_eq!(e, vec![(u1, 6.0), (u2, 6.0)]);
        // A class the cell misses entirely still spreads nothing.
        assert_eq!(cal.residuals(&[], &[]), vec![(u1, 0.0), (u2, 0.0)]);
    }

    #[test]
    fn rank_of_dependent_replicates() {
        // Columns a, b, a + b over three records: rank 2.
        let cols = [[1.0, 0.0, 2.0], [0.0, 1.0, 1.0], [1.0, 1.0, 3.0]];
        let r = cols.len();
        let mut gram = vec![0.0; r * r];
        for a in 0..r {
            for b in a..r {
                gram[a * r + b] = (0..3).map(|i| cols[a][i] * cols[b][i]).sum();
            }
        }
        assert_eq!(rank(&gram, r), 2);
        assert_eq!(
            rank(&gram[..0], r),
            3,
            "no cross-products: full rank assumed"
        );
    }

    #[test]
    fn runs_split_on_key_changes() {
        let v = [1, 1, 2, 3, 3, 3];
        let lens: Vec<usize> = runs(&v, |x| *x).map(<[i32]>::len).collect();
        assert_eq!(lens, vec![2, 1, 3]);
    }
}
