//! Statistical disclosure control: what may leave the restricted tier.
//!
//! Input: a finished table ([`CountTable`]: every cell with its true value, margins included) and
//! its [`Protect`] settings, or a survey table with its n/CV flags. Output: a [`ProtectedTable`]
//! — the public frame (published value, null when suppressed, `OBS_STATUS`, `CONF_STATUS`) and,
//! for the restricted tier, an audit frame (true value, rule that fired, feasible interval).
//!
//! Methods, per table (`[tables.<id>.protect]`): `suppress` (threshold rule, hypercube secondary
//! suppression and an audit that blocks the release when any primary cell's feasible interval is
//! narrower than the protection range: [`suppress`]), `round` and `random_round` (to a base, the
//! random one keyed by seed, table and cell: [`noise`]).

mod cellkey;
mod noise;
mod release;
mod suppress;

use std::collections::HashMap;

use polars::prelude::*;

pub use cellkey::{PTable, cell_key, record_key};
pub use noise::round;
use noise::uniform;
pub use release::{Depth, TableCheck, audit_release};
pub use suppress::{
    Audit, Certificate, Grid, Intervals, Proof, Relation, SEARCH_BUDGET, TOTAL_ID, audit,
    close_singletons, exact_interval, primary, secondary, suppress_and_audit, verify,
};

use crate::disaggregate::{CountTable, TOTAL};
use crate::error::{PolarsContext, Result};
use crate::spec::{Plan, Protect, ProtectMethod, TableSpec};

/// Confidentiality status of a published cell (SDMX `CONF_STATUS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Conf {
    /// Free for publication.
    Free,
    /// Primary confidentiality: too few contributors.
    Primary,
    /// Secondary confidentiality: suppressed to protect a primary cell.
    Secondary,
}

impl Conf {
    pub fn code(self) -> &'static str {
        match self {
            Conf::Free => "F",
            Conf::Primary => "A",
            Conf::Secondary => "D",
        }
    }
}

/// A table ready for the public tier, with its restricted audit.
pub struct ProtectedTable {
    pub ref_year: i32,
    pub public: DataFrame,
    pub audit: DataFrame,
    pub summary: Summary,
}

/// What protection did to a table, for the manifest.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Summary {
    pub table: String,
    pub method: String,
    pub cells: u64,
    pub primary: u64,
    pub secondary: u64,
    /// Audit: primary cells checked, and the narrowest feasible interval found among them.
    pub audited: u64,
    /// Of those, the cells a linear program had to settle (the rest by a hypercube certificate).
    #[serde(default)]
    pub proved_by_lp: u64,
    pub narrowest_interval: Option<f64>,
    pub audit_passed: bool,
    pub failures: Vec<String>,
    /// The table's dimensions, and for suppression its settings: what `migstat audit` needs to
    /// check the published files again.
    #[serde(default)]
    pub dimensions: Vec<String>,
    #[serde(default)]
    pub threshold: Option<u64>,
    #[serde(default)]
    pub protection_range: Option<f64>,
    #[serde(default)]
    pub publish_grand_total: bool,
}

/// Protect a count table as its spec says.
pub fn protect_counts(
    plan: &Plan,
    table: &TableSpec,
    t: &CountTable,
    p: &Protect,
) -> Result<ProtectedTable> {
    let ctx = |what: &str| format!("table {}: {what}", table.id);
    let f = &t.frame;
    let dims: Vec<StringChunked> = table
        .dimensions
        .iter()
        .map(|d| Ok(f.column(d).ctx(|| ctx(d))?.str().ctx(|| ctx(d))?.clone()))
        .collect::<Result<_>>()?;
    let n = f
        .column("n")
        .ctx(|| ctx("n"))?
        .u64()
        .ctx(|| ctx("n"))?
        .clone();
    let mut codes: Vec<HashMap<String, u32>> = vec![HashMap::new(); dims.len()];
    let mut keys: Vec<Vec<String>> = Vec::with_capacity(f.height());
    let mut cells = Vec::with_capacity(f.height());
    let mut values = Vec::with_capacity(f.height());
    for i in 0..f.height() {
        let key: Vec<String> = dims
            .iter()
            .map(|c| c.get(i).unwrap_or_default().to_string())
            .collect();
        cells.push(
            key.iter()
                .zip(codes.iter_mut())
                .map(|(k, ids)| {
                    if k == TOTAL {
                        TOTAL_ID
                    } else {
                        let next = ids.len() as u32;
                        *ids.entry(k.clone()).or_insert(next)
                    }
                })
                .collect(),
        );
        keys.push(key);
        values.push(n.get(i).unwrap_or(0));
    }
    let mut summary = Summary {
        table: table.id.clone(),
        method: match p.method {
            ProtectMethod::Suppress => "suppress",
            ProtectMethod::Round => "round",
            ProtectMethod::RandomRound => "random_round",
            ProtectMethod::CellKey => "cell_key",
        }
        .to_string(),
        cells: values.len() as u64,
        audit_passed: true,
        dimensions: table.dimensions.clone(),
        ..Summary::default()
    };
    if p.method == ProtectMethod::Suppress {
        summary.threshold = Some(p.threshold);
        summary.protection_range = Some(p.protection_range);
        summary.publish_grand_total = p.publish_grand_total;
    }
    let nesting = check_hierarchies(table, &keys);
    let mut cell_keys: Option<Vec<f64>> = None;
    let (published, status, audited): (Vec<Option<u64>>, Vec<Conf>, Audit) = match p.method {
        ProtectMethod::Suppress => {
            let mut grid = Grid::new(cells, values.clone());
            if p.publish_grand_total {
                grid = grid.keep_grand_total();
            }
            let (status, audited) = suppress_and_audit(&grid, p.threshold, p.protection_range)?;
            let failing = audited.failing(p.protection_range);
            summary.primary = status.iter().filter(|s| **s == Conf::Primary).count() as u64;
            summary.secondary = status.iter().filter(|s| **s == Conf::Secondary).count() as u64;
            summary.audited = audited.intervals.len() as u64;
            summary.proved_by_lp = audited
                .intervals
                .values()
                .filter(|i| i.2 == Proof::Lp)
                .count() as u64;
            summary.narrowest_interval = audited
                .intervals
                .values()
                .map(|(lo, hi, _)| hi - lo)
                .min_by(f64::total_cmp);
            summary.failures = failing
                    .iter()
                    .map(|c| {
                        let (lo, hi, _) = audited.intervals[c];
                        format!(
                            "cell {} (value {}) can be narrowed to [{lo:.2}, {hi:.2}], narrower than the protection range {}",
                            keys[*c].join("|"),
                            values[*c],
                            p.protection_range
                        )
                    })
                    .collect();
            summary.audit_passed = failing.is_empty();
            let published = values
                .iter()
                .zip(&status)
                .map(|(v, s)| (*s == Conf::Free).then_some(*v))
                .collect();
            (published, status, audited)
        }
        ProtectMethod::Round | ProtectMethod::RandomRound => {
            let published = values
                .iter()
                .zip(&keys)
                .map(|(v, k)| {
                    let u = (p.method == ProtectMethod::RandomRound)
                        .then(|| uniform(p.seed, &table.id, k));
                    Some(round(*v, p.base, u))
                })
                .collect();
            (published, vec![Conf::Free; values.len()], Audit::default())
        }
        ProtectMethod::CellKey => {
            let ptable = match &p.ptable {
                Some(path) => PTable::read(path)?,
                None => PTable::default(),
            };
            let sums = f
                .column("record_key_sum")
                .ctx(|| ctx("record_key_sum"))?
                .u32()
                .ctx(|| ctx("record_key_sum"))?;
            let ck: Vec<f64> = (0..values.len())
                .map(|i| cell_key(sums.get(i).unwrap_or(0)))
                .collect();
            let published = values
                .iter()
                .zip(&ck)
                .map(|(v, k)| Some(ptable.perturb(*v, *k)))
                .collect();
            cell_keys = Some(ck);
            (published, vec![Conf::Free; values.len()], Audit::default())
        }
    };

    if !nesting.is_empty() {
        summary.audit_passed = false;
        summary.failures.extend(nesting);
    }
    let unit = f
        .column("unit")
        .ctx(|| ctx("unit"))?
        .str()
        .ctx(|| ctx("unit"))?
        .get(0)
        .unwrap_or_default()
        .to_string();
    let mut public = crate::disaggregate::cell_columns(plan, table, &unit, keys.iter());
    public.push(Column::new("value".into(), published.clone()));
    public.push(Column::new("OBS_STATUS".into(), vec!["A"; keys.len()]));
    public.push(Column::new(
        "CONF_STATUS".into(),
        status.iter().map(|s| s.code()).collect::<Vec<_>>(),
    ));
    let public = DataFrame::new(keys.len(), public).ctx(|| ctx("public frame"))?;

    let mut audit = crate::disaggregate::cell_columns(plan, table, &unit, keys.iter());
    audit.push(Column::new("true_value".into(), values.clone()));
    audit.push(Column::new("contributors".into(), values.clone()));
    audit.push(Column::new("published".into(), published));
    audit.push(Column::new(
        "rule".into(),
        status
            .iter()
            .map(|s| match (s, p.method) {
                (Conf::Primary, _) => "threshold",
                (Conf::Secondary, _) => "secondary",
                (Conf::Free, ProtectMethod::Round) => "round",
                (Conf::Free, ProtectMethod::RandomRound) => "random_round",
                (Conf::Free, ProtectMethod::CellKey) => "cell_key",
                (Conf::Free, ProtectMethod::Suppress) => "none",
            })
            .collect::<Vec<_>>(),
    ));
    let bound = |hi: bool| -> Vec<Option<f64>> {
        (0..keys.len())
            .map(|i| {
                audited
                    .intervals
                    .get(&i)
                    .map(|(l, h, _)| if hi { *h } else { *l })
            })
            .collect()
    };
    audit.push(Column::new("feasible_min".into(), bound(false)));
    audit.push(Column::new("feasible_max".into(), bound(true)));
    audit.push(Column::new(
        "proof".into(),
        (0..keys.len())
            .map(|i| audited.intervals.get(&i).map(|(_, _, p)| p.code()))
            .collect::<Vec<_>>(),
    ));
    if let Some(ck) = cell_keys {
        audit.push(Column::new("cell_key".into(), ck));
    }
    let audit = DataFrame::new(keys.len(), audit).ctx(|| ctx("audit frame"))?;
    Ok(ProtectedTable {
        ref_year: t.ref_year,
        public,
        audit,
        summary,
    })
}

/// Declared hierarchies that the data break: one message per child code found under more
/// than one parent code.
pub fn check_hierarchies(table: &TableSpec, keys: &[Vec<String>]) -> Vec<String> {
    let mut out = Vec::new();
    for (child, parent) in &table.hierarchies {
        let pos = |d: &str| table.dimensions.iter().position(|x| x == d);
        let (Some(c), Some(p)) = (pos(child), pos(parent)) else {
            continue;
        };
        let mut parents: std::collections::BTreeMap<&str, std::collections::BTreeSet<&str>> =
            Default::default();
        for k in keys {
            if k[c] != TOTAL && k[p] != TOTAL {
                parents.entry(&k[c]).or_default().insert(&k[p]);
            }
        }
        for (code, ps) in parents.iter().filter(|(_, ps)| ps.len() > 1) {
            out.push(format!(
                "hierarchy {child} within {parent}: code `{code}` lies under {} ({}); fix the crosswalks or drop the hierarchy",
                ps.len(),
                ps.iter().copied().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    out
}

/// A survey table's public form: cells marked for suppression (too few respondents, or a CV
/// above the design's limit) lose their estimate and its precision; `OBS_STATUS` says `U` for
/// low reliability.
pub fn protect_survey(table: &TableSpec, t: &CountTable) -> Result<ProtectedTable> {
    let ctx = |what: &str| format!("table {}: {what}", table.id);
    let f = &t.frame;
    let suppress = f
        .column("suppress")
        .ctx(|| ctx("suppress"))?
        .bool()
        .ctx(|| ctx("suppress"))?
        .clone();
    let keep = !&suppress;
    let mut public = Vec::new();
    for c in f.columns() {
        let name = c.name().as_str();
        match name {
            "suppress" => {}
            "obs_status" => public.push(c.clone().with_name("OBS_STATUS".into())),
            "n" | "estimate" | "se" | "ci_low" | "ci_high" | "ci_low_t" | "ci_high_t" | "cv"
            | "deff" => {
                let s = c.as_materialized_series();
                let nulls = Series::full_null(name.into(), s.len(), s.dtype());
                public.push(s.zip_with(&keep, &nulls).ctx(|| ctx(name))?.into_column());
            }
            _ => public.push(c.clone()),
        }
    }
    public.push(Column::new(
        "CONF_STATUS".into(),
        suppress
            .iter()
            .map(|s| if s == Some(true) { "A" } else { "F" })
            .collect::<Vec<_>>(),
    ));
    let primary = suppress.iter().filter(|s| *s == Some(true)).count() as u64;
    let public = DataFrame::new(f.height(), public).ctx(|| ctx("public frame"))?;
    Ok(ProtectedTable {
        ref_year: t.ref_year,
        public,
        audit: f.clone(),
        summary: Summary {
            table: table.id.clone(),
            method: "survey_quality".into(),
            cells: f.height() as u64,
            primary,
            audit_passed: true,
            ..Summary::default()
        },
    })
}
