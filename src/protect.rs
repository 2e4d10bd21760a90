//! Statistical disclosure control: what may leave the restricted tier.
//!
//! Input: a finished table ([`CountTable`]: every cell with its true value, margins included) and
//! its [`Protect`] settings, or a survey table with its n/CV flags. Output: a [`ProtectedTable`]
//! — the public frame (published value, null when suppressed, `OBS_STATUS`, `CONF_STATUS`) and,
//! for the restricted tier, an audit frame (true value, rule that fired, feasible interval).
//!
//! Suppression works on the table's additive relations: for every cell with `_T` in dimension j,
//! `cell = Σ children along j` (the present cells that differ only in j). Primary suppression
//! (threshold rule, `A`) is followed by secondary suppression (`D`) until no relation holds a
//! single suppressed cell, choosing the cheapest partner (never the grand total unless it is the
//! only one; then the smallest value, then the finest cell). The audit then solves, for every
//! primary cell, min and max of its value subject to the relations, the published cells and
//! non-negativity (a linear program per connected group of suppressed cells, `microlp`); a cell
//! whose interval is narrower than the protection range gets more secondary suppression, and a
//! table that still fails is not published.

use std::collections::{BTreeMap, HashMap};

use polars::prelude::*;

use crate::disaggregate::{CountTable, TOTAL};
use crate::error::{Error, PolarsContext, Result};
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
    pub narrowest_interval: Option<f64>,
    pub audit_passed: bool,
    pub failures: Vec<String>,
}

/// A table's cells as code ids with their values, and its additive relations.
pub struct Grid {
    /// Per cell, one code id per dimension; [`TOTAL_ID`] is `_T`.
    pub cells: Vec<Vec<u32>>,
    pub values: Vec<u64>,
    /// Relations `parent = Σ children`.
    pub relations: Vec<Relation>,
    /// Relations each cell takes part in.
    member_of: Vec<Vec<usize>>,
}

pub const TOTAL_ID: u32 = u32::MAX;

/// Feasible (min, max) per primary-suppressed cell.
pub type Intervals = BTreeMap<usize, (f64, f64)>;

#[derive(Debug, Clone)]
pub struct Relation {
    pub parent: usize,
    pub children: Vec<usize>,
}

impl Relation {
    fn members(&self) -> impl Iterator<Item = usize> + '_ {
        std::iter::once(self.parent).chain(self.children.iter().copied())
    }
}

impl Grid {
    /// Build the relations of `cells` (code ids per dimension, `TOTAL_ID` for `_T`).
    pub fn new(cells: Vec<Vec<u32>>, values: Vec<u64>) -> Self {
        let d = cells.first().map_or(0, Vec::len);
        let mut relations = Vec::new();
        for j in 0..d {
            // Cells that agree everywhere but in dimension j form one relation.
            let mut groups: BTreeMap<Vec<u32>, (Option<usize>, Vec<usize>)> = BTreeMap::new();
            for (i, c) in cells.iter().enumerate() {
                let mut key = c.clone();
                key[j] = 0;
                let g = groups.entry(key).or_default();
                if c[j] == TOTAL_ID {
                    g.0 = Some(i);
                } else {
                    g.1.push(i);
                }
            }
            for (_, (parent, children)) in groups {
                if let Some(parent) = parent.filter(|_| !children.is_empty()) {
                    relations.push(Relation { parent, children });
                }
            }
        }
        let mut member_of = vec![Vec::new(); cells.len()];
        for (r, rel) in relations.iter().enumerate() {
            for m in rel.members() {
                member_of[m].push(r);
            }
        }
        Grid {
            cells,
            values,
            relations,
            member_of,
        }
    }

    /// The grid of a full cube: `finest` cells (code ids, no `_T`) rolled up to every margin
    /// combination of their `d` dimensions, the grand total included.
    pub fn from_finest(finest: &BTreeMap<Vec<u32>, u64>, d: usize) -> Self {
        let mut all: BTreeMap<Vec<u32>, u64> = BTreeMap::new();
        all.insert(vec![TOTAL_ID; d], 0);
        for mask in 0..(1u32 << d) {
            for (k, v) in finest {
                let key: Vec<u32> = k
                    .iter()
                    .enumerate()
                    .map(|(j, c)| if mask & (1 << j) != 0 { TOTAL_ID } else { *c })
                    .collect();
                *all.entry(key).or_default() += v;
            }
        }
        let (cells, values) = all.into_iter().unzip();
        Grid::new(cells, values)
    }

    fn margins(&self, i: usize) -> usize {
        self.cells[i].iter().filter(|c| **c == TOTAL_ID).count()
    }

    fn is_grand_total(&self, i: usize) -> bool {
        self.margins(i) == self.cells[i].len()
    }

    /// What it costs to suppress a cell: never the grand total unless it is the only choice,
    /// then the least information (smallest value), then the finest cell, then a fixed order.
    fn cost(&self, i: usize) -> (bool, u64, usize, usize) {
        (self.is_grand_total(i), self.values[i], self.margins(i), i)
    }
}

/// Threshold rule: 0 < value < k.
pub fn primary(grid: &Grid, k: u64) -> Vec<Conf> {
    grid.values
        .iter()
        .map(|v| {
            if *v > 0 && *v < k {
                Conf::Primary
            } else {
                Conf::Free
            }
        })
        .collect()
}

/// Secondary suppression until no relation holds exactly one suppressed cell.
pub fn secondary(grid: &Grid, status: &mut [Conf]) {
    let mut count: Vec<usize> = grid
        .relations
        .iter()
        .map(|r| r.members().filter(|m| status[*m] != Conf::Free).count())
        .collect();
    // Process relations in index order, revisiting those a new suppression touches.
    let mut pending: std::collections::BTreeSet<usize> = (0..grid.relations.len())
        .filter(|r| count[*r] == 1)
        .collect();
    while let Some(r) = pending.pop_first() {
        if count[r] != 1 {
            continue;
        }
        // Prefer a cell that also completes another relation holding a single suppressed
        // cell: one suppression then does the work of two.
        let Some(pick) = grid.relations[r]
            .members()
            .filter(|m| status[*m] == Conf::Free)
            .min_by_key(|m| {
                let double = grid.member_of[*m].iter().any(|o| *o != r && count[*o] == 1);
                let (grand, value, margins, i) = grid.cost(*m);
                (grand, !double, value, margins, i)
            })
        else {
            continue;
        };
        suppress(grid, status, &mut count, &mut pending, pick);
    }
}

fn suppress(
    grid: &Grid,
    status: &mut [Conf],
    count: &mut [usize],
    pending: &mut std::collections::BTreeSet<usize>,
    cell: usize,
) {
    status[cell] = Conf::Secondary;
    for &r in &grid.member_of[cell] {
        count[r] += 1;
        if count[r] == 1 {
            pending.insert(r);
        }
    }
}

/// The feasible interval of each primary cell: min and max of its value over all non-negative
/// tables that agree with the published cells and satisfy every relation — or, where that is
/// already at least `range` wide, an interval inside it.
///
/// Each cell is first solved on its neighbourhood: the suppressed cells a few relations away
/// are variables, the farther ones are held at their true values. Holding cells fixed only adds
/// constraints, so the local interval lies inside the true one: when it is wide enough the cell
/// is protected. Otherwise the neighbourhood doubles until it is the whole connected group of
/// suppressed cells, where the interval is exact. Most cells are settled by a small LP.
pub fn audit(grid: &Grid, status: &[Conf], range: f64) -> Result<BTreeMap<usize, (f64, f64)>> {
    let mut out = BTreeMap::new();
    for c in (0..grid.cells.len()).filter(|c| status[*c] == Conf::Primary) {
        let mut depth = 2;
        loop {
            let (cells, whole) = neighbourhood(grid, status, c, depth);
            let (lo, hi) = interval(grid, &cells, c)?;
            if whole || hi - lo >= range - 1e-7 {
                out.insert(c, (lo, hi));
                break;
            }
            depth *= 2;
        }
    }
    Ok(out)
}

/// The suppressed cells within `depth` relations of `start` (breadth first, in a fixed order),
/// and whether that is its whole connected group.
fn neighbourhood(grid: &Grid, status: &[Conf], start: usize, depth: usize) -> (Vec<usize>, bool) {
    let mut seen = std::collections::BTreeSet::from([start]);
    let mut frontier = vec![start];
    let mut whole = false;
    for _ in 0..depth {
        let mut next = Vec::new();
        for &c in &frontier {
            for &r in &grid.member_of[c] {
                for m in grid.relations[r].members() {
                    if status[m] != Conf::Free && seen.insert(m) {
                        next.push(m);
                    }
                }
            }
        }
        if next.is_empty() {
            whole = true;
            break;
        }
        frontier = next;
    }
    (seen.into_iter().collect(), whole)
}

/// Min and max of `target` (one of `cells`) with `cells` as the only variables: every other
/// cell, published or suppressed, at its value.
fn interval(grid: &Grid, cells: &[usize], target: usize) -> Result<(f64, f64)> {
    let var: HashMap<usize, usize> = cells.iter().enumerate().map(|(v, c)| (*c, v)).collect();
    let mut rels: Vec<usize> = cells
        .iter()
        .flat_map(|c| grid.member_of[*c].iter().copied())
        .collect();
    rels.sort_unstable();
    rels.dedup();
    let constraints: Vec<(Vec<(usize, f64)>, f64)> = rels
        .iter()
        .map(|&r| {
            let rel = &grid.relations[r];
            let mut terms = Vec::new();
            let mut rhs = 0.0;
            match var.get(&rel.parent) {
                Some(v) => terms.push((*v, -1.0)),
                None => rhs += grid.values[rel.parent] as f64,
            }
            for c in &rel.children {
                match var.get(c) {
                    Some(v) => terms.push((*v, 1.0)),
                    None => rhs -= grid.values[*c] as f64,
                }
            }
            (terms, rhs)
        })
        .collect();
    let t = var[&target];
    let lo = optimise(cells.len(), &constraints, t, false)?;
    let hi = optimise(cells.len(), &constraints, t, true)?;
    Ok((lo, hi))
}

/// Min or max of variable `target` subject to the constraints and x >= 0 (∞ when unbounded).
fn optimise(
    vars: usize,
    constraints: &[(Vec<(usize, f64)>, f64)],
    target: usize,
    maximise: bool,
) -> Result<f64> {
    use microlp::{ComparisonOp, OptimizationDirection, Problem};
    // The relations of a cube are redundant (every total is reached along several dimensions),
    // which can make the simplex declare a feasible system infeasible; the second attempt
    // states each equality as two inequalities with a tolerance of 1e-6 persons.
    let solve = |slack: Option<f64>| {
        let mut p = Problem::new(if maximise {
            OptimizationDirection::Maximize
        } else {
            OptimizationDirection::Minimize
        });
        // The simplex may cycle on degenerate systems: bound each solve.
        p.set_time_limit(std::time::Duration::from_secs(2));
        let x: Vec<_> = (0..vars)
            .map(|v| p.add_var(if v == target { 1.0 } else { 0.0 }, (0.0, f64::INFINITY)))
            .collect();
        for (terms, rhs) in constraints {
            let expr: Vec<(microlp::Variable, f64)> =
                terms.iter().map(|(v, c)| (x[*v], *c)).collect();
            match slack {
                None => p.add_constraint(expr.as_slice(), ComparisonOp::Eq, *rhs),
                Some(e) => {
                    p.add_constraint(expr.as_slice(), ComparisonOp::Le, *rhs + e);
                    p.add_constraint(expr.as_slice(), ComparisonOp::Ge, *rhs - e);
                }
            }
        }
        p.solve().map(|o| o.solution().map(|s| s.objective()))
    };
    // The solver is third-party code: a panic in it is an audit failure, not a crash.
    let attempt = |slack| std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| solve(slack)));
    let first = attempt(None);
    let result = match first {
        Ok(Err(microlp::Error::Infeasible)) | Ok(Ok(None)) | Err(_) => attempt(Some(1e-6)),
        other => other,
    };
    match result {
        Ok(Ok(Some(v))) => Ok(v),
        Ok(Err(microlp::Error::Unbounded)) => Ok(f64::INFINITY),
        Ok(Ok(None)) => Err(Error::Internal(
            "disclosure audit: the LP solver stopped before an optimum".into(),
        )),
        Ok(Err(e)) => Err(Error::Internal(format!(
            "disclosure audit: the LP solver failed ({e:?}) on a system the true table satisfies"
        ))),
        Err(_) => Err(Error::Internal(
            "disclosure audit: the LP solver panicked".into(),
        )),
    }
}

/// Suppress, audit, and add suppression around primary cells that are not protected enough,
/// until every primary cell's interval is at least `range` wide; returns the status of every
/// cell, the primary cells' intervals and the cells still failing (empty when the audit passes).
pub fn suppress_and_audit(
    grid: &Grid,
    k: u64,
    range: f64,
) -> Result<(Vec<Conf>, Intervals, Vec<usize>)> {
    let mut status = primary(grid, k);
    secondary(grid, &mut status);
    let failing = |iv: &BTreeMap<usize, (f64, f64)>| -> Vec<usize> {
        iv.iter()
            .filter(|(_, (lo, hi))| hi - lo < range - 1e-7)
            .map(|(c, _)| *c)
            .collect()
    };
    let mut intervals = audit(grid, &status, range)?;
    // Widen each failing cell's group with the cheapest free cell of one of its relations (the
    // grand total excepted: it is what every interval is bounded by), then close again.
    for _round in 0..50 {
        let bad = failing(&intervals);
        if bad.is_empty() {
            break;
        }
        let mut changed = false;
        for c in &bad {
            let pick = grid.member_of[*c]
                .iter()
                .flat_map(|r| grid.relations[*r].members())
                .filter(|m| status[*m] == Conf::Free && !grid.is_grand_total(*m))
                .min_by_key(|m| grid.cost(*m));
            if let Some(m) = pick {
                status[m] = Conf::Secondary;
                changed = true;
            }
        }
        if !changed {
            break;
        }
        secondary(grid, &mut status);
        intervals = audit(grid, &status, range)?;
    }
    let bad = failing(&intervals);
    Ok((status, intervals, bad))
}

/// Round `n` to a multiple of `base`: to the nearest (halves up), or at random, up with
/// probability (n mod base)/base from `u` in [0, 1).
pub fn round(n: u64, base: u64, u: Option<f64>) -> u64 {
    let r = n % base;
    if r == 0 {
        return n;
    }
    let up = match u {
        None => 2 * r >= base,
        Some(u) => u < r as f64 / base as f64,
    };
    if up { n - r + base } else { n - r }
}

/// A uniform number in [0, 1) from a keyed hash of the cell: the same seed, table and cell give
/// the same number in every run.
fn uniform(seed: u64, table: &str, cell: &[String]) -> f64 {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    let mut h = blake3::Hasher::new_keyed(&key);
    h.update(table.as_bytes());
    for c in cell {
        h.update(&[0]);
        h.update(c.as_bytes());
    }
    let b = h.finalize();
    let mut x = [0u8; 8];
    x.copy_from_slice(&b.as_bytes()[..8]);
    (u64::from_le_bytes(x) >> 11) as f64 / (1u64 << 53) as f64
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
        }
        .to_string(),
        cells: values.len() as u64,
        audit_passed: true,
        ..Summary::default()
    };
    let (published, status, intervals): (Vec<Option<u64>>, Vec<Conf>, Intervals) = match p.method {
        ProtectMethod::Suppress => {
            let grid = Grid::new(cells, values.clone());
            let (status, intervals, failing) =
                suppress_and_audit(&grid, p.threshold, p.protection_range)?;
            summary.primary = status.iter().filter(|s| **s == Conf::Primary).count() as u64;
            summary.secondary = status.iter().filter(|s| **s == Conf::Secondary).count() as u64;
            summary.audited = intervals.len() as u64;
            summary.narrowest_interval = intervals
                .values()
                .map(|(lo, hi)| hi - lo)
                .min_by(f64::total_cmp);
            summary.failures = failing
                    .iter()
                    .map(|c| {
                        let (lo, hi) = intervals[c];
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
            (published, status, intervals)
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
            (published, vec![Conf::Free; values.len()], BTreeMap::new())
        }
    };

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
                (Conf::Free, ProtectMethod::Suppress) => "none",
            })
            .collect::<Vec<_>>(),
    ));
    let bound = |hi: bool| -> Vec<Option<f64>> {
        (0..keys.len())
            .map(|i| intervals.get(&i).map(|(l, h)| if hi { *h } else { *l }))
            .collect()
    };
    audit.push(Column::new("feasible_min".into(), bound(false)));
    audit.push(Column::new("feasible_max".into(), bound(true)));
    let audit = DataFrame::new(keys.len(), audit).ctx(|| ctx("audit frame"))?;
    Ok(ProtectedTable {
        ref_year: t.ref_year,
        public,
        audit,
        summary,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A 2-dimensional table with margins from its inner cells (rows × columns).
    pub(crate) fn table2(inner: &[&[u64]]) -> Grid {
        let (r, c) = (inner.len(), inner[0].len());
        let mut cells = Vec::new();
        let mut values = Vec::new();
        for i in 0..=r {
            for j in 0..=c {
                let ri = if i == r { TOTAL_ID } else { i as u32 };
                let cj = if j == c { TOTAL_ID } else { j as u32 };
                let v: u64 = (0..r)
                    .filter(|a| i == r || *a == i)
                    .flat_map(|a| {
                        (0..c)
                            .filter(move |b| j == c || *b == j)
                            .map(move |b| (a, b))
                    })
                    .map(|(a, b)| inner[a][b])
                    .sum();
                cells.push(vec![ri, cj]);
                values.push(v);
            }
        }
        Grid::new(cells, values)
    }

    #[test]
    fn relations_of_a_two_way_table() {
        let g = table2(&[&[1, 2], &[3, 4]]);
        // 2 row relations + the column-total row, 2 column relations + the row-total column.
        assert_eq!(g.relations.len(), 6);
        for rel in &g.relations {
            let sum: u64 = rel.children.iter().map(|c| g.values[*c]).sum();
            assert_eq!(sum, g.values[rel.parent]);
        }
    }

    #[test]
    fn a_lone_primary_gets_partners_in_its_row_and_column() {
        let g = table2(&[&[2, 40, 50], &[30, 60, 70], &[45, 55, 65]]);
        let (status, intervals, failing) = suppress_and_audit(&g, 5, 5.0).unwrap();
        assert!(failing.is_empty());
        let suppressed = status.iter().filter(|s| **s != Conf::Free).count();
        assert_eq!(suppressed, 4, "the cheapest 2×2 pattern: {status:?}");
        let (lo, hi) = intervals[&0];
        assert!(lo <= 0.0 + 1e-9 && hi >= 5.0, "[{lo}, {hi}]");
    }

    #[test]
    fn the_audit_sees_a_cell_that_stands_alone() {
        // Only the primary cell suppressed: its row gives it away.
        let g = table2(&[&[2, 40], &[30, 60]]);
        let status: Vec<Conf> = (0..g.values.len())
            .map(|i| if i == 0 { Conf::Primary } else { Conf::Free })
            .collect();
        let iv = audit(&g, &status, 5.0).unwrap();
        let (lo, hi) = iv[&0];
        assert!((lo - 2.0).abs() < 1e-9 && (hi - 2.0).abs() < 1e-9);
    }

    #[test]
    fn rounding() {
        assert_eq!(round(7, 5, None), 5);
        assert_eq!(round(8, 5, None), 10);
        assert_eq!(round(10, 5, None), 10);
        assert_eq!(round(0, 3, Some(0.0)), 0);
        // 7 = 5 + 2: up with probability 2/5.
        assert_eq!(round(7, 5, Some(0.39)), 10);
        assert_eq!(round(7, 5, Some(0.41)), 5);
        let u = uniform(1, "t", &["F".into(), "A".into()]);
        assert_eq!(u, uniform(1, "t", &["F".into(), "A".into()]));
        assert_ne!(u, uniform(2, "t", &["F".into(), "A".into()]));
        assert!((0.0..1.0).contains(&u));
    }

    /// A 3-dimensional table with every margin, from random inner cells (zeros left out, as a
    /// count table has no row for an empty cell).
    fn table3(dims: [usize; 3], inner: &[u64]) -> Grid {
        let mut finest: BTreeMap<Vec<u32>, u64> = BTreeMap::new();
        for (i, v) in inner.iter().enumerate().filter(|(_, v)| **v > 0) {
            let a = (i % dims[0]) as u32;
            let b = ((i / dims[0]) % dims[1]) as u32;
            let c = ((i / dims[0] / dims[1]) % dims[2]) as u32;
            *finest.entry(vec![a, b, c]).or_default() += v;
        }
        Grid::from_finest(&finest, 3)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        #[test]
        fn protected_random_tables_publish_nothing_small_and_pass_the_audit(
            dims in (2usize..5, 2usize..4, 1usize..4),
            inner in proptest::collection::vec(
                proptest::prop_oneof![3 => 0u64..4, 2 => 4u64..40, 1 => 40u64..400],
                48,
            ),
        ) {
            let g = table3([dims.0, dims.1, dims.2], &inner);
            let (status, intervals, failing) = suppress_and_audit(&g, 5, 5.0).unwrap();
            // Nothing published in (0, k).
            for (v, s) in g.values.iter().zip(&status) {
                proptest::prop_assert!(!(*s == Conf::Free && *v > 0 && *v < 5));
            }
            // No relation with exactly one suppressed cell.
            for rel in &g.relations {
                let n = rel.members().filter(|m| status[*m] != Conf::Free).count();
                proptest::prop_assert!(n != 1, "lone suppressed cell in {:?}", rel);
            }
            // The audit passes: every primary cell's interval is at least 5 wide and holds
            // its true value.
            proptest::prop_assert!(failing.is_empty(), "audit failures {:?}", failing);
            for (c, (lo, hi)) in &intervals {
                let v = g.values[*c] as f64;
                proptest::prop_assert!(*lo <= v + 1e-6 && v <= *hi + 1e-6);
                proptest::prop_assert!(hi - lo >= 5.0 - 1e-6);
            }
            // Deterministic.
            let again = suppress_and_audit(&g, 5, 5.0).unwrap().0;
            proptest::prop_assert_eq!(status, again);
        }
    }
}
