//! Survey estimates (part of the disaggregate stage): design-based estimated population per cell,
//! with standard errors by Taylor linearization, as R's `survey` package computes them.
//!
//! Input: harmonized chunks of a survey source, its [`Design`] (weights, strata, PSUs) and a
//! `survey_total` [`TableSpec`]. Output: one row per cell (every margin included) with the
//! estimate Ŷ = Σ w (or a mean), its standard error, the CV, the
//! unweighted n and the design's degrees of freedom; intervals at the design's confidence level,
//! normal (`ci_low`, `ci_high`) and Student's t with the design's degrees of freedom
//! (`ci_low_t`, `ci_high_t`, as R's `confint(…, df = degf(design))`).
//!
//! One pass, no loop per cell: each chunk adds its weights to (finest cell, stratum, PSU) totals
//! (a mergeable partial, summed in record order so results do not depend on threads); at the end
//! the PSU totals are rolled up to every margin (they are additive) and each cell's variance is
//!
//!   V = Σ_h n_h/(n_h − 1) · Σ_i (z_hi − z̄_h)²
//!
//! over all n_h PSUs of every stratum h — a PSU with no record in the cell counts with z_hi = 0,
//! which is how a domain is estimated on the whole design rather than on a subset.

use std::collections::{BTreeMap, BTreeSet};

use polars::prelude::*;

use crate::disaggregate::TOTAL;
use crate::error::{Error, PolarsContext, Rejection, Result};
use crate::spec::{Design, Plan, TableKind, TableSpec};
use crate::validate::raw_column;

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

/// Per (finest cell, stratum, PSU): Σw, Σw·y and the respondents; and the design's PSUs per stratum.
#[derive(Default, Clone)]
pub struct Partial {
    z: BTreeMap<(Vec<String>, String, String), Sums>,
    psus: BTreeMap<String, BTreeSet<String>>,
}

/// (margin cell, stratum, PSU).
type RolledKey<'a> = (Vec<String>, &'a str, &'a str);

#[derive(Default, Clone, Copy)]
struct Sums {
    w: f64,
    wy: f64,
    n: u64,
}

impl Sums {
    fn add(&mut self, o: &Sums) {
        self.w += o.w;
        self.wy += o.wy;
        self.n += o.n;
    }
}

impl Partial {
    /// Add one harmonized chunk (all its records: the design's PSUs are counted from every
    /// record, not only those of a filter).
    pub fn add_chunk(&mut self, table: &TableSpec, design: &Design, df: &DataFrame) -> Result<()> {
        let ctx = |what: &str| format!("table {}: {what}", table.id);
        let text = |name: &str| -> Result<StringChunked> {
            let c = df
                .column(name)
                .ctx(|| ctx(name))?
                .cast(&DataType::String)
                .ctx(|| ctx(name))?;
            Ok(c.str().ctx(|| ctx(name))?.clone())
        };
        let w = df
            .column(&raw_column(&design.weight))
            .ctx(|| ctx(&design.weight))?
            .cast(&DataType::Float64)
            .ctx(|| ctx(&design.weight))?;
        let w = w.f64().ctx(|| ctx(&design.weight))?;
        let strata = design
            .strata
            .as_deref()
            .map(|s| text(&raw_column(s)))
            .transpose()?;
        let psu = design
            .psu
            .as_deref()
            .map(|p| text(&raw_column(p)))
            .transpose()?;
        let (files, records) = (text("_file")?, text("_record")?);
        let dims: Vec<StringChunked> = table
            .dimensions
            .iter()
            .map(|d| text(d))
            .collect::<Result<_>>()?;
        let keep: Option<StringChunked> =
            table.filter.as_ref().map(|(c, _)| text(c)).transpose()?;
        // The variable of a mean: a derived column, else a delivered field.
        let y: Option<Float64Chunked> = match &table.kind {
            TableKind::SurveyMean { variable } => {
                let name = if df.column(variable).is_ok() {
                    variable.clone()
                } else {
                    raw_column(variable)
                };
                let c = df
                    .column(&name)
                    .ctx(|| ctx(variable))?
                    .cast(&DataType::Float64)
                    .ctx(|| ctx(variable))?;
                Some(c.f64().ctx(|| ctx(variable))?.clone())
            }
            _ => None,
        };
        for row in 0..df.height() {
            let h = strata
                .as_ref()
                .and_then(|s| s.get(row))
                .unwrap_or("")
                .to_string();
            // Without PSUs, every record is its own PSU.
            let i = match &psu {
                Some(p) => p.get(row).unwrap_or("").to_string(),
                None => format!(
                    "{}#{}",
                    files.get(row).unwrap_or(""),
                    records.get(row).unwrap_or("")
                ),
            };
            self.psus.entry(h.clone()).or_default().insert(i.clone());
            if let (Some(k), Some((_, values))) = (&keep, &table.filter) {
                if !k.get(row).is_some_and(|v| values.contains(v)) {
                    continue;
                }
            }
            let yv = match &y {
                None => 1.0,
                Some(y) => match y.get(row) {
                    Some(v) => v,
                    None => continue, // a missing value is left out of the mean
                },
            };
            let cell: Vec<String> = dims
                .iter()
                .map(|c| c.get(row).unwrap_or(crate::harmonize::UNKNOWN).to_string())
                .collect();
            let wk = w.get(row).unwrap_or(0.0);
            self.z.entry((cell, h, i)).or_default().add(&Sums {
                w: wk,
                wy: wk * yv,
                n: 1,
            });
        }
        Ok(())
    }

    /// Roll up to every margin and compute each cell's estimate and standard error.
    pub fn finish(
        &self,
        plan: &Plan,
        table: &TableSpec,
        design: &Design,
        source_id: &str,
    ) -> Result<DataFrame> {
        let d = table.dimensions.len();
        let lonely: Vec<&String> = self
            .psus
            .iter()
            .filter(|(_, p)| p.len() < 2)
            .map(|(h, _)| h)
            .collect();
        if !lonely.is_empty() {
            return Err(Error::Rejected(vec![Rejection {
                source_id: source_id.to_string(),
                reason: format!(
                    "table {}: stratum {} has a single PSU (lonely PSU); the design's lonely_psu policy is \"fail\"",
                    table.id,
                    lonely
                        .iter()
                        .map(|h| format!("`{h}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }]));
        }
        let n_psu: usize = self.psus.values().map(BTreeSet::len).sum();
        let df = n_psu.saturating_sub(self.psus.len()) as u64;

        // PSU sums rolled up to every margin: (cell, stratum, psu) → sums.
        let mut rolled: BTreeMap<RolledKey<'_>, Sums> = BTreeMap::new();
        for mask in 0u32..(1 << d) {
            for ((cell, h, i), sums) in &self.z {
                let key: Vec<String> = cell
                    .iter()
                    .enumerate()
                    .map(|(j, c)| {
                        if mask & (1 << j) != 0 {
                            TOTAL.to_string()
                        } else {
                            c.clone()
                        }
                    })
                    .collect();
                rolled
                    .entry((key, h.as_str(), i.as_str()))
                    .or_default()
                    .add(sums);
            }
        }
        rolled
            .entry((vec![TOTAL.to_string(); d], "", ""))
            .or_default();

        // Each cell's entries (stratum, PSU, sums), in key order.
        let entries: Vec<(&RolledKey<'_>, &Sums)> = rolled.iter().collect();
        let mut groups: BTreeMap<&Vec<String>, &[(&RolledKey<'_>, &Sums)]> = BTreeMap::new();
        let mut start = 0;
        while start < entries.len() {
            let cell = &entries[start].0.0;
            let end = start
                + entries[start..]
                    .iter()
                    .take_while(|e| &e.0.0 == cell)
                    .count();
            groups.insert(cell, &entries[start..end]);
            start = end;
        }
        let total = |g: &[(&RolledKey<'_>, &Sums)]| {
            let mut t = Sums::default();
            for (_, s) in g {
                t.add(s);
            }
            t
        };

        // Per cell: the estimate, n, and Σ_h n_h/(n_h-1) Σ_i (z_hi - z̄_h)² over all PSUs, with
        // z_hi = Y_hi for a total; (Y_hi - R̂ X_hi) / X̂ for a mean, R̂ = Ŷ/X̂; and for the share
        // of a category within its denominator cell (the same cell with the category at `_T`),
        // (Y_hi - p̂ D_hi) / D̂ over the denominator's PSUs.
        let mut out: BTreeMap<Vec<String>, (f64, u64, f64)> = BTreeMap::new();
        for (cell, group) in &groups {
            let tot = total(group);
            let (est, zs): (f64, Vec<(&str, f64)>) = match &table.kind {
                TableKind::SurveyMean { .. } => {
                    let r = tot.wy / tot.w;
                    (
                        r,
                        group
                            .iter()
                            .map(|(k, s)| (k.1, (s.wy - r * s.w) / tot.w))
                            .collect(),
                    )
                }
                TableKind::SurveyProportion { category } => {
                    let ci = table
                        .dimensions
                        .iter()
                        .position(|d| d == category)
                        .unwrap_or(0);
                    if cell[ci] == TOTAL {
                        continue; // the denominators themselves (a share of 1)
                    }
                    let mut den_key = (*cell).clone();
                    den_key[ci] = TOTAL.to_string();
                    let Some(den) = groups.get(&den_key) else {
                        continue;
                    };
                    let d = total(den).wy;
                    let p = tot.wy / d;
                    let mine: BTreeMap<(&str, &str), f64> =
                        group.iter().map(|(k, s)| ((k.1, k.2), s.wy)).collect();
                    let zs = den
                        .iter()
                        .map(|(k, s)| {
                            (
                                k.1,
                                (mine.get(&(k.1, k.2)).copied().unwrap_or(0.0) - p * s.wy) / d,
                            )
                        })
                        .collect();
                    (p, zs)
                }
                _ => (tot.wy, group.iter().map(|(k, s)| (k.1, s.wy)).collect()),
            };
            let mut var = 0.0;
            let mut j = 0;
            while j < zs.len() {
                let h = zs[j].0;
                let k = j + zs[j..].iter().take_while(|e| e.0 == h).count();
                if let Some(psus) = self.psus.get(h) {
                    let nh = psus.len() as f64;
                    let m = zs[j..k].iter().map(|e| e.1).sum::<f64>() / nh;
                    let present: f64 = zs[j..k].iter().map(|e| (e.1 - m).powi(2)).sum();
                    var += nh / (nh - 1.0) * (present + (nh - (k - j) as f64) * m * m);
                }
                j = k;
            }
            out.insert((*cell).clone(), (est, tot.n, var));
        }
        to_frame(plan, table, design, &out, df)
    }
}

fn to_frame(
    plan: &Plan,
    table: &TableSpec,
    design: &Design,
    cells: &BTreeMap<Vec<String>, (f64, u64, f64)>,
    df: u64,
) -> Result<DataFrame> {
    let h = cells.len();
    let period = format!(
        "{}/{}",
        plan.reference_period.start, plan.reference_period.end
    );
    let mut columns = vec![
        Column::new_scalar(
            "table_id".into(),
            Scalar::from(PlSmallStr::from(table.id.as_str())),
            h,
        ),
        Column::new_scalar(
            "source_id".into(),
            Scalar::from(PlSmallStr::from(table.source.as_str())),
            h,
        ),
        Column::new_scalar(
            "unit".into(),
            Scalar::from(PlSmallStr::from("persons (weighted)")),
            h,
        ),
        Column::new_scalar(
            "ref_period".into(),
            Scalar::from(PlSmallStr::from(period.as_str())),
            h,
        ),
    ];
    for (i, d) in table.dimensions.iter().enumerate() {
        let v: Vec<&str> = cells.keys().map(|k| k[i].as_str()).collect();
        columns.push(Column::new(d.as_str().into(), v));
    }
    let est: Vec<f64> = cells.values().map(|v| v.0).collect();
    let se: Vec<f64> = cells.values().map(|v| v.2.max(0.0).sqrt()).collect();
    columns.push(Column::new(
        "n".into(),
        cells.values().map(|v| v.1).collect::<Vec<u64>>(),
    ));
    columns.push(Column::new("estimate".into(), est.clone()));
    columns.push(Column::new("se".into(), se.clone()));
    let (z, t) = quantiles(design.confidence, df);
    let interval = |q: Option<f64>, sign: f64| -> Vec<Option<f64>> {
        est.iter()
            .zip(&se)
            .map(|(e, s)| q.map(|q| e + sign * q * s))
            .collect()
    };
    columns.push(Column::new("ci_low".into(), interval(Some(z), -1.0)));
    columns.push(Column::new("ci_high".into(), interval(Some(z), 1.0)));
    columns.push(Column::new("ci_low_t".into(), interval(t, -1.0)));
    columns.push(Column::new("ci_high_t".into(), interval(t, 1.0)));
    columns.push(Column::new(
        "cv".into(),
        est.iter()
            .zip(&se)
            .map(|(e, s)| if *e > 0.0 { Some(s / e) } else { None })
            .collect::<Vec<Option<f64>>>(),
    ));
    columns.push(Column::new_scalar("df".into(), Scalar::from(df), h));
    // Quality flags for disclosure control (defaults after Statistics Canada).
    let cv: Vec<Option<f64>> = est
        .iter()
        .zip(&se)
        .map(|(e, s)| (*e > 0.0).then(|| s / e))
        .collect();
    let n: Vec<u64> = cells.values().map(|v| v.1).collect();
    columns.push(Column::new(
        "obs_status".into(),
        cv.iter()
            .map(|c| {
                if c.is_none_or(|c| c > design.cv_caution) {
                    "U"
                } else {
                    "A"
                }
            })
            .collect::<Vec<&str>>(),
    ));
    columns.push(Column::new(
        "suppress".into(),
        cv.iter()
            .zip(&n)
            .map(|(c, n)| *n < design.min_n || c.is_none_or(|c| c > design.cv_suppress))
            .collect::<Vec<bool>>(),
    ));
    DataFrame::new(h, columns).ctx(|| format!("table {}: assembling", table.id))
}
