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

/// Most dimensions a survey table may have (the spec allows 8).
const MAX_DIMS: usize = 8;

/// Code id of a margin (`_T`) in an interned cell key.
const TOTAL_ID: u32 = u32::MAX;

/// A cell as interned code ids, one per dimension (unused slots 0).
type CellIds = [u32; MAX_DIMS];

/// (cell, stratum id, PSU id).
type Key = (CellIds, u32, u32);

/// Per (finest cell, stratum, PSU): Σw, Σw·y and the respondents; and the design's PSUs per
/// stratum. Codes, strata and PSUs are interned as ids in first-seen (record) order, so keys are
/// small and copyable and sums are added in the same order whatever the thread count.
#[derive(Default, Clone)]
pub struct Partial {
    z: BTreeMap<Key, Sums>,
    psus: BTreeMap<u32, BTreeSet<u32>>,
    codes: Vec<Interner>,
    strata: Interner,
    psu_ids: Interner,
}

#[derive(Default, Clone)]
struct Interner {
    ids: std::collections::HashMap<String, u32>,
    names: Vec<String>,
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
        if dims.len() > MAX_DIMS {
            return Err(Error::Internal(format!(
                "table {}: more than {MAX_DIMS} dimensions",
                table.id
            )));
        }
        if self.codes.len() < dims.len() {
            self.codes.resize_with(dims.len(), Interner::default);
        }
        let mut psu_name = String::new();
        for row in 0..df.height() {
            let h = self
                .strata
                .id(strata.as_ref().and_then(|s| s.get(row)).unwrap_or(""));
            // Without PSUs, every record is its own PSU.
            let i = match &psu {
                Some(p) => self.psu_ids.id(p.get(row).unwrap_or("")),
                None => {
                    psu_name.clear();
                    psu_name.push_str(files.get(row).unwrap_or(""));
                    psu_name.push('#');
                    psu_name.push_str(records.get(row).unwrap_or(""));
                    self.psu_ids.id(&psu_name)
                }
            };
            self.psus.entry(h).or_default().insert(i);
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
            let mut cell: CellIds = [0; MAX_DIMS];
            for (j, c) in dims.iter().enumerate() {
                cell[j] = self.codes[j].id(c.get(row).unwrap_or(crate::harmonize::UNKNOWN));
            }
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
        let lonely: Vec<&str> = self
            .psus
            .iter()
            .filter(|(_, p)| p.len() < 2)
            .map(|(h, _)| self.strata.name(*h))
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
        let category = match &table.kind {
            TableKind::SurveyProportion { category } => {
                table.dimensions.iter().position(|x| x == category)
            }
            _ => None,
        };

        // One margin combination at a time (bit j of a mask: dimension j is `_T`), so memory holds
        // the PSU sums of one combination, not of the whole cube.
        let mut out: BTreeMap<Vec<String>, (f64, u64, f64)> = BTreeMap::new();
        for mask in 0u32..(1 << d) {
            if category.is_some_and(|c| mask & (1 << c) != 0) {
                continue; // the denominators of shares are not published
            }
            let rolled = self.roll(mask, d);
            let den: Option<BTreeMap<CellIds, Vec<(Key, Sums)>>> =
                category.map(|c| groups(&self.roll(mask | (1 << c), d)).collect());
            for (cell, group) in groups(&rolled) {
                let tot = total(&group);
                // z_hi: Y_hi for a total; (Y_hi - R̂ X_hi)/X̂ for a mean, R̂ = Ŷ/X̂; for a share,
                // (Y_hi - p̂ D_hi)/D̂ over the PSUs of the denominator cell (category at `_T`).
                let (est, zs): (f64, Vec<(u32, f64)>) = match (&table.kind, category, &den) {
                    (TableKind::SurveyMean { .. }, _, _) => {
                        let r = tot.wy / tot.w;
                        (
                            r,
                            group
                                .iter()
                                .map(|(k, s)| (k.1, (s.wy - r * s.w) / tot.w))
                                .collect(),
                        )
                    }
                    (TableKind::SurveyProportion { .. }, Some(c), Some(den)) => {
                        let mut dk = cell;
                        dk[c] = TOTAL_ID;
                        let Some(dg) = den.get(&dk) else {
                            continue;
                        };
                        let dtot = total(dg).wy;
                        let p = tot.wy / dtot;
                        let mine: BTreeMap<(u32, u32), f64> =
                            group.iter().map(|(k, s)| ((k.1, k.2), s.wy)).collect();
                        let zs = dg
                            .iter()
                            .map(|(k, s)| {
                                (
                                    k.1,
                                    (mine.get(&(k.1, k.2)).copied().unwrap_or(0.0) - p * s.wy)
                                        / dtot,
                                )
                            })
                            .collect();
                        (p, zs)
                    }
                    _ => (tot.wy, group.iter().map(|(k, s)| (k.1, s.wy)).collect()),
                };
                let names: Vec<String> = (0..d)
                    .map(|j| {
                        self.codes
                            .get(j)
                            .map_or(TOTAL, |c| c.name(cell[j]))
                            .to_string()
                    })
                    .collect();
                out.insert(names, (est, tot.n, self.variance(&zs)));
            }
        }
        if category.is_none() {
            out.entry(vec![TOTAL.to_string(); d])
                .or_insert((0.0, 0, 0.0));
        }
        to_frame(plan, table, design, &out, df)
    }

    /// The PSU sums of one margin combination: (cell with `_T` where `mask` says, stratum, PSU).
    fn roll(&self, mask: u32, d: usize) -> BTreeMap<Key, Sums> {
        let mut rolled: BTreeMap<Key, Sums> = BTreeMap::new();
        for ((cell, h, i), sums) in &self.z {
            let mut key = *cell;
            for (j, k) in key.iter_mut().enumerate().take(d) {
                if mask & (1 << j) != 0 {
                    *k = TOTAL_ID;
                }
            }
            rolled.entry((key, *h, *i)).or_default().add(sums);
        }
        rolled
    }

    /// Σ_h n_h/(n_h-1) Σ_i (z_hi - z̄_h)² over all n_h PSUs of each stratum; `zs` holds the PSUs
    /// where the cell has records, sorted by stratum (the others count as zeros).
    fn variance(&self, zs: &[(u32, f64)]) -> f64 {
        let mut var = 0.0;
        let mut j = 0;
        while j < zs.len() {
            let h = zs[j].0;
            let k = j + zs[j..].iter().take_while(|e| e.0 == h).count();
            if let Some(psus) = self.psus.get(&h) {
                let nh = psus.len() as f64;
                let m = zs[j..k].iter().map(|e| e.1).sum::<f64>() / nh;
                let present: f64 = zs[j..k].iter().map(|e| (e.1 - m).powi(2)).sum();
                var += nh / (nh - 1.0) * (present + (nh - (k - j) as f64) * m * m);
            }
            j = k;
        }
        var
    }
}

/// The runs of entries of one cell, in key order.
fn groups(rolled: &BTreeMap<Key, Sums>) -> impl Iterator<Item = (CellIds, Vec<(Key, Sums)>)> + '_ {
    let mut it = rolled.iter().peekable();
    std::iter::from_fn(move || {
        let (first, _) = it.peek()?;
        let cell = first.0;
        let mut g = Vec::new();
        while let Some((k, s)) = it.peek() {
            if k.0 != cell {
                break;
            }
            g.push((**k, **s));
            it.next();
        }
        Some((cell, g))
    })
}

fn total(g: &[(Key, Sums)]) -> Sums {
    let mut t = Sums::default();
    for (_, s) in g {
        t.add(s);
    }
    t
}

fn to_frame(
    plan: &Plan,
    table: &TableSpec,
    design: &Design,
    cells: &BTreeMap<Vec<String>, (f64, u64, f64)>,
    df: u64,
) -> Result<DataFrame> {
    let h = cells.len();
    let unit = match &table.kind {
        TableKind::SurveyMean { .. } => "mean per person (weighted)",
        TableKind::SurveyProportion { .. } => "share of persons (weighted)",
        _ => "persons (weighted)",
    };
    let mut columns = crate::disaggregate::cell_columns(plan, table, unit, cells.keys());
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
