//! Cell suppression of a protection problem: which cells to publish so that no cell that needs
//! protection can be recomputed, or narrowed below the protection range, from the rest.
//!
//! Input: a [`Problem`] (a group of linked tables over their shared finest cells), the cells
//! that need protection (primary cells: 0 < n < threshold; on a revision, also cells whose
//! change since an earlier publication is that small) and cells that must stay suppressed
//! (suppressed in an earlier publication). Output: a [`Pattern`] — status and rule per cell,
//! and each protected cell's audited [`Interval`].
//!
//! **Secondary suppression by Gaussian elimination** (after Statistics Norway's
//! GaussSuppression): the cells are offered for publication in order of their value to users —
//! the grand total when it must be published, then the coarsest margins first (one-way margins
//! before two-way ones …), larger values first within a level. Each offered cell is reduced
//! modulo the span of the cells published so far ([`Basis`]). A cell already in the span is
//! published (it tells nothing new); a cell whose remainder is parallel to a protected cell's
//! remainder would, once published, determine that cell exactly, so it is suppressed
//! (secondary); otherwise it is published and joins the span. Every protected cell's remainder
//! is kept up to date and hashed, so the test is one lookup. Margins are offered first, so they
//! are published whenever the threshold rule allows: the suppression falls on the small inner
//! cells that carry the least information.
//!
//! **Protection range.** Not being determined is not enough: the intruder also knows that every
//! finest cell is a non-negative integer and that every code of the frame occurs (a suppressed
//! cell may be empty: zeros can be secondary cells). Each protected cell is then bounded as the
//! intruder would, cheapest proof first: a hypercube of suppressed cells along which it moves
//! (verified from scratch), checked null-space directions, else the LP (`audit`). A cell
//! narrower than the range is **repaired** with the cheapest hypercube (τ-ARGUS's GHMITER
//! search, `hypercube`) that spares the one-way margins — a wider search next, and one that may
//! take a one-way margin only when nothing else closes. Suppressing more only widens intervals,
//! so one pass suffices and a cell proved once stays proved. The repair is bounded
//! ([`MAX_REPAIRS`] cells); a cell still too narrow fails, named with its interval (the run is
//! rejected, exit 65). Nothing here is bounded by time: the elimination's work is counted, and
//! a problem beyond [`GAUSS_WORK`] entries is protected by the hypercube method instead (the
//! pattern says which method chose it).

use std::collections::{BTreeMap, HashMap};

use super::Conf;
use super::audit::{Auditor, Interval, Intervals, Proof};
use super::elim::{Basis, Scratch, SparseVec, canonical};
use super::hypercube::{self, Grid, pattern as hypercube_pattern};
use super::problem::Problem;
use crate::spec::Secondary;

/// Cells the repair may suppress in all; a cell still too narrow then fails the audit (exit 65).
pub const MAX_REPAIRS: usize = 200_000;

/// Why a cell is suppressed (or not), for the restricted audit table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    None,
    /// 0 < n < threshold.
    Threshold,
    /// Its change since an earlier publication of the period is below the threshold.
    Change,
    /// Suppressed in an earlier publication of the period.
    Sticky,
    /// Chosen to protect another cell.
    Secondary,
    /// A margin combination no member table publishes.
    Hidden,
}

impl Rule {
    pub fn code(self) -> &'static str {
        match self {
            Rule::None => "none",
            Rule::Threshold => "threshold",
            Rule::Change => "change",
            Rule::Sticky => "sticky",
            Rule::Secondary => "secondary",
            Rule::Hidden => "hidden",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub threshold: u64,
    pub range: f64,
    /// Never suppress the grand total.
    pub keep_grand_total: bool,
    pub secondary: Secondary,
    /// The Gaussian elimination's work limit ([`GAUSS_WORK`] unless a test sets another).
    pub gauss_work: u64,
}

/// What suppression decided.
#[derive(Debug, Clone)]
pub struct Pattern {
    pub status: Vec<Conf>,
    pub rule: Vec<Rule>,
    pub intervals: Intervals,
    /// Protected cells whose interval stays narrower than the range (or could not be
    /// computed), with the reason.
    pub failures: Vec<(usize, String)>,
    /// Cells the repair suppressed.
    pub repaired: usize,
    /// The secondary method that chose the pattern: the one asked for, or the hypercube when
    /// the Gaussian elimination reached its work limit.
    pub secondary: Secondary,
}

/// The order in which cells are offered for publication: forced cells, then coarser margins,
/// then larger values, then the problem's order.
pub fn publication_order(p: &Problem, keep_grand_total: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..p.cells.len()).collect();
    order.sort_by_key(|c| {
        (
            !(keep_grand_total && p.is_grand_total(*c)),
            std::cmp::Reverse(p.margins(*c)),
            std::cmp::Reverse(p.values[*c]),
            *c,
        )
    });
    order
}

/// Protect a problem: `change` cells need protection besides the primary cells, `sticky` cells
/// stay suppressed.
pub fn protect(p: &Problem, s: &Settings, change: &[usize], sticky: &[usize]) -> Pattern {
    let n = p.cells.len();
    let mut status = vec![Conf::Free; n];
    let mut rule = vec![Rule::None; n];
    for c in 0..n {
        if !p.visible[c] {
            status[c] = Conf::Secondary;
            rule[c] = Rule::Hidden;
        }
    }
    for c in sticky {
        status[*c] = Conf::Secondary;
        rule[*c] = Rule::Sticky;
    }
    for c in change {
        status[*c] = Conf::Primary;
        rule[*c] = Rule::Change;
    }
    for c in 0..n {
        let v = p.values[c];
        if p.visible[c] && v > 0 && v < s.threshold {
            status[c] = Conf::Primary;
            rule[c] = Rule::Threshold;
        }
    }
    let order = publication_order(p, s.keep_grand_total);
    let forced: Vec<bool> = (0..n)
        .map(|c| p.visible[c] && s.keep_grand_total && p.is_grand_total(c))
        .collect();
    let mut used = s.secondary;
    if used == Secondary::Gauss {
        let before = status.clone();
        if gauss(p, &order, &forced, &mut status, s.gauss_work).is_err() {
            status = before;
            used = Secondary::Hypercube;
        }
    }
    if used == Secondary::Hypercube {
        let mut grid = Grid::new(p.cells.clone(), p.values.clone());
        if s.keep_grand_total {
            grid = grid.keep_grand_total();
        }
        hypercube_pattern(&grid, &mut status, s.range);
    }
    for c in 0..n {
        if status[c] == Conf::Secondary && rule[c] == Rule::None {
            rule[c] = Rule::Secondary;
        }
    }
    let targets: Vec<usize> = (0..n).filter(|c| status[*c] == Conf::Primary).collect();
    let grids = RepairGrids::new(p, &forced);
    let (repaired, proved) = repair(p, s, &order, &grids, &targets, &mut status, &mut rule);
    // The audit of the final pattern: a hypercube certificate, else an interval proved during
    // the repair (checked directions or the LP: suppressing more since then only widened it),
    // else checked directions or the LP (each cell on its own, in parallel;
    // the results are collected in cell order). The elimination behind the LP is only built
    // when some cell needs it.
    let audited: Vec<(usize, Result<Interval, super::audit::AuditError>)> = {
        use rayon::prelude::*;
        let st: &[Conf] = &status;
        let quick: Vec<(usize, Option<Interval>)> = targets
            .par_iter()
            .map(|&t| {
                (
                    t,
                    cube_interval(&grids, st, t, s.range).or_else(|| proved.get(&t).copied()),
                )
            })
            .collect();
        let auditor = quick.iter().any(|(_, i)| i.is_none()).then(|| {
            let published: Vec<bool> = status.iter().map(|c| *c == Conf::Free).collect();
            Auditor::new(p, &published, &order)
        });
        let open: Vec<usize> = quick
            .iter()
            .filter(|(_, i)| i.is_none())
            .map(|(t, _)| *t)
            .collect();
        let mut found: BTreeMap<usize, Result<Interval, super::audit::AuditError>> = auditor
            .as_ref()
            .map(|a| a.intervals(&open, s.range).into_iter().collect())
            .unwrap_or_default();
        quick
            .into_iter()
            .map(|(t, i)| match i {
                Some(i) => (t, Ok(i)),
                // `intervals` answers for every open cell; one without would fail, never pass.
                None => (
                    t,
                    found.remove(&t).unwrap_or_else(|| {
                        Err(super::audit::AuditError::Lp(super::lp::LpError::Failed(
                            "no interval was computed".into(),
                        )))
                    }),
                ),
            })
            .collect()
    };
    let mut intervals = Intervals::new();
    let mut failures = Vec::new();
    for (t, i) in audited {
        match i {
            Ok(i) => {
                if i.width() < s.range - 1e-9 {
                    failures.push((t, narrow(p, t, &i, s.range)));
                }
                intervals.insert(t, i);
            }
            Err(e) => failures.push((
                t,
                format!(
                    "cell {}: its interval could not be computed ({e:?}); nothing is published",
                    p.names(t).join("|")
                ),
            )),
        }
    }
    Pattern {
        status,
        rule,
        intervals,
        failures,
        repaired,
        secondary: used,
    }
}

fn narrow(p: &Problem, cell: usize, i: &Interval, range: f64) -> String {
    format!(
        "cell {} (value {}) can be narrowed to [{}, {}] ({}), narrower than the protection range {range}",
        p.names(cell).join("|"),
        p.values[cell],
        i.lo,
        i.hi,
        i.proof.code()
    )
}

/// Gaussian-elimination secondary suppression (see the module doc). `status` holds the
/// protected cells (`Primary`) and cells already suppressed (`Secondary`); every other cell is
/// published unless publishing it would determine a protected cell. A forced cell is published
/// whatever it determines (the audit then names what it gives away).
pub fn gauss(
    p: &Problem,
    order: &[usize],
    forced: &[bool],
    status: &mut [Conf],
    limit: u64,
) -> Result<(), WorkLimit> {
    let rows = p.rows.len();
    let mut basis = Basis::new(rows);
    let mut s = Scratch::default();
    let ones = |c: usize| -> SparseVec { p.support[c].iter().map(|r| (*r, 1)).collect() };
    // Protected cells' remainders, their hashes, and which of them each row touches.
    let targets: Vec<usize> = (0..status.len())
        .filter(|c| status[*c] == Conf::Primary)
        .collect();
    if targets.is_empty() {
        return Ok(()); // nothing to protect: every cell is published
    }
    let mut rem: Vec<SparseVec> = Vec::with_capacity(targets.len());
    let mut by_hash: HashMap<u64, Vec<u32>> = HashMap::new();
    let mut row_targets: Vec<Vec<u32>> = vec![Vec::new(); rows];
    for (i, &t) in targets.iter().enumerate() {
        let mut v = ones(t);
        canonical(&mut v);
        for (r, _) in &v {
            row_targets[*r as usize].push(i as u32);
        }
        by_hash.entry(hash(&v)).or_default().push(i as u32);
        rem.push(v);
    }
    // Zeros are always published (so a suppressed cell is known to be at least 1): the rows
    // below a zero cell are each known to be zero.
    let mut zero_rows: Vec<u32> = (0..status.len())
        .filter(|c| p.values[*c] == 0 && status[*c] == Conf::Free && p.visible[*c])
        .flat_map(|c| p.support[c].iter().copied())
        .collect();
    zero_rows.sort_unstable();
    zero_rows.dedup();
    for r in zero_rows {
        if let Ok(u) = basis.reduce(&[(r, 1)], &mut s)
            && !u.is_empty()
        {
            publish(&u, r, &mut basis, &mut rem, &mut by_hash, &mut row_targets);
        }
    }
    let mut work: u64 = 0;
    for &c in order {
        if status[c] != Conf::Free {
            continue;
        }
        let u = match basis.reduce(&ones(c), &mut s) {
            Ok(u) => u,
            Err(_) => {
                // Undecidable in i64: suppress (the safe side) unless forced.
                if !forced[c] {
                    status[c] = Conf::Secondary;
                }
                continue;
            }
        };
        if u.is_empty() {
            continue; // already determined by the published cells: publishing it adds nothing
        }
        if !forced[c]
            && by_hash
                .get(&hash(&u))
                .is_some_and(|ts| ts.iter().any(|t| rem[*t as usize] == u))
        {
            status[c] = Conf::Secondary;
            continue;
        }
        // Publish: the remainder joins the basis; every protected remainder through its pivot
        // row is reduced by it. Computed first, so that an overflow can still suppress the cell.
        let pivot_row = {
            let cands: Vec<(u32, i64)> = {
                let min = u.iter().map(|(_, x)| x.abs()).min().unwrap_or(1);
                u.iter().copied().filter(|(_, x)| x.abs() == min).collect()
            };
            // The row through which the fewest protected remainders pass: each of them is
            // updated (and may fill in) when the basis pivots there; then the largest value.
            cands
                .iter()
                .map(|(r, _)| *r)
                .min_by_key(|r| {
                    (
                        row_targets[*r as usize].len(),
                        std::cmp::Reverse(p.row_values[*r as usize]),
                        *r,
                    )
                })
                .unwrap_or(0)
        };
        let mut updates: Vec<(u32, SparseVec)> = Vec::new();
        let mut overflow = false;
        let mut touched: Vec<u32> = row_targets[pivot_row as usize].clone();
        touched.sort_unstable();
        touched.dedup();
        for &ti in &touched {
            let r = &rem[ti as usize];
            if !r.iter().any(|(row, _)| *row == pivot_row) {
                continue;
            }
            match eliminate(r, &u, pivot_row) {
                Some(nv) => updates.push((ti, nv)),
                None => {
                    overflow = true;
                    break;
                }
            }
        }
        if overflow && !forced[c] {
            status[c] = Conf::Secondary;
            continue;
        }
        work += updates.iter().map(|(_, v)| v.len() as u64).sum::<u64>();
        basis.push(u, |_| pivot_row);
        apply(updates, &mut rem, &mut by_hash, &mut row_targets);
        if work + s.work > limit {
            return Err(WorkLimit);
        }
    }
    Ok(())
}

/// The Gaussian elimination reached its work limit ([`GAUSS_WORK`]): the problem is protected
/// by the hypercube method instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkLimit;

/// Entries the Gaussian elimination may touch (basis entries applied while reducing, plus
/// protected remainders rewritten) before the problem falls back to the hypercube method.
/// Counted, not timed, so that the choice is the same on every machine and under any load.
/// Measured with `benches/protect_scale.rs` (2 cores, about 45 million entries a second): the
/// default pipeline's largest group needs 1.7 million; a 23,940-cell five-way table 1.0
/// billion (22 s); the 103,740-cell one fills in far beyond the limit and is protected by
/// hypercubes (the whole run stays under a minute).
pub const GAUSS_WORK: u64 = 1_500_000_000;

/// The protected remainders after `u` joins the basis at `pivot_row` (`None` on overflow).
fn updates_for(
    u: &SparseVec,
    pivot_row: u32,
    rem: &[SparseVec],
    row_targets: &[Vec<u32>],
) -> Option<Vec<(u32, SparseVec)>> {
    let mut touched: Vec<u32> = row_targets[pivot_row as usize].clone();
    touched.sort_unstable();
    touched.dedup();
    let mut out = Vec::new();
    for &ti in &touched {
        let r = &rem[ti as usize];
        if !r.iter().any(|(row, _)| *row == pivot_row) {
            continue;
        }
        out.push((ti, eliminate(r, u, pivot_row)?));
    }
    Some(out)
}

fn apply(
    updates: Vec<(u32, SparseVec)>,
    rem: &mut [SparseVec],
    by_hash: &mut HashMap<u64, Vec<u32>>,
    row_targets: &mut [Vec<u32>],
) {
    for (ti, nv) in updates {
        let old = std::mem::take(&mut rem[ti as usize]);
        if let Some(list) = by_hash.get_mut(&hash(&old)) {
            list.retain(|x| *x != ti);
        }
        // Rows new in the remainder (both are sorted by row: one merge).
        let mut i = 0;
        for (r, _) in &nv {
            while i < old.len() && old[i].0 < *r {
                i += 1;
            }
            if i >= old.len() || old[i].0 != *r {
                row_targets[*r as usize].push(ti);
            }
        }
        by_hash.entry(hash(&nv)).or_default().push(ti);
        rem[ti as usize] = nv;
    }
}

/// Push a known row (a remainder pivoting at `row`) and update the protected remainders; on
/// overflow the row is left out (the basis is then smaller than the knowledge: the audit, which
/// rebuilds its own, still decides).
fn publish(
    u: &SparseVec,
    row: u32,
    basis: &mut Basis,
    rem: &mut [SparseVec],
    by_hash: &mut HashMap<u64, Vec<u32>>,
    row_targets: &mut [Vec<u32>],
) {
    let pivot = if u.iter().any(|(r, _)| *r == row) {
        row
    } else {
        u[0].0
    };
    if let Some(ups) = updates_for(u, pivot, rem, row_targets) {
        basis.push(u.clone(), |_| pivot);
        apply(ups, rem, by_hash, row_targets);
    }
}

/// `r` with its entry at `row` eliminated by `u` (fraction-free), canonical; `None` on
/// overflow.
fn eliminate(r: &SparseVec, u: &SparseVec, row: u32) -> Option<SparseVec> {
    let a = r.iter().find(|x| x.0 == row)?.1;
    let b = u.iter().find(|x| x.0 == row)?.1;
    // b·r − a·u
    let mut out: SparseVec = Vec::with_capacity(r.len() + u.len());
    let (mut i, mut j) = (0, 0);
    while i < r.len() || j < u.len() {
        let (row_r, row_u) = (
            r.get(i).map_or(u32::MAX, |x| x.0),
            u.get(j).map_or(u32::MAX, |x| x.0),
        );
        let (k, v) = if row_r < row_u {
            i += 1;
            (row_r, r[i - 1].1.checked_mul(b)?)
        } else if row_u < row_r {
            j += 1;
            (row_u, (-u[j - 1].1).checked_mul(a)?)
        } else {
            i += 1;
            j += 1;
            (
                row_r,
                r[i - 1]
                    .1
                    .checked_mul(b)?
                    .checked_sub(u[j - 1].1.checked_mul(a)?)?,
            )
        };
        if v != 0 {
            out.push((k, v));
        }
    }
    if !out.is_empty() {
        canonical(&mut out);
    }
    Some(out)
}

fn hash(v: &SparseVec) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for (r, c) in v {
        h.update(&r.to_le_bytes());
        h.update(&c.to_le_bytes());
    }
    h.digest()
}

/// Hypercubes examined per cell when the quick search finds none that spares the margins.
pub const WIDE_SEARCH: usize = 1 << 15;

/// The two hypercube grids of the repair: the first may not touch a one-way margin, the grand
/// total, a zero or a forced cell; the second only spares zeros and forced cells.
struct RepairGrids {
    inner: Grid,
    wide: Grid,
    any: Grid,
}

impl RepairGrids {
    fn new(p: &Problem, forced: &[bool]) -> Self {
        let d = p.dims.len();
        let keep = |margins_too: bool| -> Vec<bool> {
            (0..p.cells.len())
                .map(|c| forced[c] || (margins_too && p.margins(c) + 1 >= d))
                .collect()
        };
        let one_way: Vec<bool> = (0..p.cells.len()).map(|c| p.margins(c) + 1 >= d).collect();
        RepairGrids {
            inner: Grid::new(p.cells.clone(), p.values.clone())
                .keep(&keep(true))
                .without_floor(&p.floorless)
                .with_lower_bound(0),
            wide: Grid::new(p.cells.clone(), p.values.clone())
                .keep(&keep(true))
                .without_floor(&p.floorless)
                .with_lower_bound(0)
                .with_budget(WIDE_SEARCH),
            any: Grid::new(p.cells.clone(), p.values.clone())
                .keep(&keep(false))
                .without_floor(&p.floorless)
                .dear(&one_way)
                .with_lower_bound(0)
                .with_budget(WIDE_SEARCH),
        }
    }
}

/// A protected cell's interval proved by a hypercube of suppressed cells, if one reaches the
/// range.
fn cube_interval(g: &RepairGrids, status: &[Conf], t: usize, range: f64) -> Option<Interval> {
    certified_interval(&g.any, status, t, range)
}

/// The grid on which certificates are searched and checked: a suppressed cell may be empty.
pub fn certificate_grid(p: &Problem) -> Grid {
    Grid::new(p.cells.clone(), p.values.clone())
        .without_floor(&p.floorless)
        .with_lower_bound(0)
        .with_budget(WIDE_SEARCH)
}

/// A protected cell's interval proved by a hypercube of suppressed cells of `grid` (see
/// [`certificate_grid`]), checked from scratch, if one reaches the range.
pub fn certified_interval(grid: &Grid, status: &[Conf], t: usize, range: f64) -> Option<Interval> {
    let cert = hypercube::certificate(grid, status, t, range)?;
    // Checked again from scratch: every corner suppressed, every relation it meets balanced.
    let (lo, hi) = hypercube::verify(grid, status, t, &cert)?;
    (hi - lo >= range - 1e-9).then_some(Interval {
        lo,
        hi,
        proof: Proof::Hypercube,
    })
}

/// Repair the pattern so that every protected cell's interval reaches the range (see the module
/// doc). Suppressing more only widens intervals, so a cell proved once stays proved: one pass
/// suffices. Returns the number of cells suppressed and the intervals proved on the way by
/// checked directions or the LP (still valid for the final pattern).
fn repair(
    p: &Problem,
    s: &Settings,
    order: &[usize],
    grids: &RepairGrids,
    targets: &[usize],
    status: &mut [Conf],
    rule: &mut [Rule],
) -> (usize, BTreeMap<usize, Interval>) {
    use rayon::prelude::*;
    let wide_enough = |i: &Interval| i.width() >= s.range - 1e-9;
    let mut total = 0;
    let st: &[Conf] = status;
    // Proved wide enough cheaply (a hypercube, or checked directions)?
    let uncertified: Vec<usize> = targets
        .par_iter()
        .copied()
        .filter(|&t| cube_interval(grids, st, t, s.range).is_none())
        .collect();
    // A cell proved here stays proved: the repair only suppresses more, and every table
    // consistent with more published cells is consistent with fewer, so an inner bound of the
    // interval under this pattern is one under the final pattern too. The final audit reuses it.
    let mut proved: BTreeMap<usize, Interval> = BTreeMap::new();
    let mut narrow: Vec<usize> = Vec::new();
    if !uncertified.is_empty() {
        let published: Vec<bool> = status.iter().map(|c| *c == Conf::Free).collect();
        let auditor = Auditor::new(p, &published, order);
        let checked: Vec<(usize, Option<Interval>)> = uncertified
            .into_par_iter()
            .map(|t| (t, auditor.cheap_interval(t, &mut Scratch::default())))
            .collect();
        for (t, i) in checked {
            match i {
                Some(i) if wide_enough(&i) => {
                    proved.insert(t, i);
                }
                _ => narrow.push(t),
            }
        }
    }
    // A hypercube that spares the one-way margins when the quick search finds one; otherwise
    // the LP decides whether the cell needs more.
    let mut hard = Vec::new();
    for &t in &narrow {
        if cube_interval(grids, status, t, s.range).is_some() {
            continue;
        }
        match hypercube::repair(&grids.inner, status, t, s.range) {
            Some(cells) if total + cells.len() <= MAX_REPAIRS => {
                total += suppress_all(&cells, status, rule)
            }
            _ => hard.push(t),
        }
    }
    if hard.is_empty() {
        return (total, proved);
    }
    let published: Vec<bool> = status.iter().map(|c| *c == Conf::Free).collect();
    let auditor = Auditor::new(p, &published, order);
    let st: &[Conf] = status;
    let open: Vec<usize> = hard
        .par_iter()
        .copied()
        .filter(|&t| cube_interval(grids, st, t, s.range).is_none())
        .collect();
    let by_lp: Vec<(usize, Option<Interval>)> = auditor
        .intervals(&open, s.range)
        .into_iter()
        .map(|(t, i)| (t, i.ok()))
        .collect();
    for (t, i) in by_lp {
        match i {
            Some(i) if wide_enough(&i) => {
                proved.insert(t, i);
            }
            Some(_) | None => {
                if cube_interval(grids, status, t, s.range).is_some() {
                    continue;
                }
                // A wider search that spares the margins, then any hypercube (one-way margins
                // only when nothing else closes).
                let cells = hypercube::repair(&grids.wide, status, t, s.range)
                    .or_else(|| hypercube::repair(&grids.any, status, t, s.range));
                if let Some(cells) = cells.filter(|c| total + c.len() <= MAX_REPAIRS) {
                    total += suppress_all(&cells, status, rule);
                }
            }
        }
    }
    (total, proved)
}

/// Suppress `cells` (secondary); returns how many were published before.
fn suppress_all(cells: &[usize], status: &mut [Conf], rule: &mut [Rule]) -> usize {
    let mut n = 0;
    for &q in cells {
        if status[q] == Conf::Free {
            status[q] = Conf::Secondary;
            if rule[q] == Rule::None {
                rule[q] = Rule::Secondary;
            }
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn problem3(dims: [usize; 3], inner: &[u64]) -> Problem {
        let mut f: BTreeMap<Vec<String>, u64> = BTreeMap::new();
        for (i, v) in inner.iter().enumerate().filter(|(_, v)| **v > 0) {
            let a = i % dims[0];
            let b = (i / dims[0]) % dims[1];
            let c = (i / dims[0] / dims[1]) % dims[2];
            *f.entry(vec![format!("a{a}"), format!("b{b}"), format!("c{c}")])
                .or_default() += v;
        }
        Problem::new(
            vec!["A".into(), "B".into(), "C".into()],
            &f,
            &[],
            &[],
            &(0..8).collect::<Vec<_>>(),
        )
        .unwrap()
    }

    fn settings(secondary: Secondary) -> Settings {
        Settings {
            threshold: 5,
            range: 5.0,
            keep_grand_total: false,
            secondary,
            gauss_work: GAUSS_WORK,
        }
    }

    #[test]
    fn a_two_way_table_keeps_its_margins() {
        let mut f = BTreeMap::new();
        for (i, row) in [[2u64, 40, 50], [30, 60, 70], [45, 55, 65]]
            .iter()
            .enumerate()
        {
            for (j, v) in row.iter().enumerate() {
                f.insert(vec![format!("r{i}"), format!("c{j}")], *v);
            }
        }
        let p = Problem::new(vec!["R".into(), "C".into()], &f, &[], &[], &[0, 1, 2, 3]).unwrap();
        let pat = protect(&p, &settings(Secondary::Gauss), &[], &[]);
        assert!(pat.failures.is_empty(), "{:?}", pat.failures);
        // Every margin is published; four inner cells are suppressed (the primary and a
        // rectangle around it).
        for c in 0..p.cells.len() {
            if p.margins(c) > 0 {
                assert_eq!(pat.status[c], Conf::Free, "{:?}", p.names(c));
            }
        }
        let suppressed = pat.status.iter().filter(|s| **s != Conf::Free).count();
        assert_eq!(suppressed, 4);
        let x = p.find(&["r0".into(), "c0".into()]).unwrap();
        assert!(pat.intervals[&x].width() >= 5.0);
    }

    #[test]
    fn gauss_never_publishes_a_cell_that_determines_a_primary() {
        // Row r0: 3 and 40, total 43. Publishing the total and 40 determines 3.
        let mut f = BTreeMap::new();
        f.insert(vec!["r0".to_string(), "c0".to_string()], 3);
        f.insert(vec!["r0".to_string(), "c1".to_string()], 40);
        f.insert(vec!["r1".to_string(), "c0".to_string()], 20);
        f.insert(vec!["r1".to_string(), "c1".to_string()], 30);
        let p = Problem::new(vec!["R".into(), "C".into()], &f, &[], &[], &[0, 1, 2, 3]).unwrap();
        let order = publication_order(&p, false);
        let mut status: Vec<Conf> = p
            .values
            .iter()
            .map(|v| {
                if *v > 0 && *v < 5 {
                    Conf::Primary
                } else {
                    Conf::Free
                }
            })
            .collect();
        gauss(
            &p,
            &order,
            &vec![false; p.cells.len()],
            &mut status,
            GAUSS_WORK,
        )
        .unwrap();
        let published: Vec<bool> = status.iter().map(|s| *s == Conf::Free).collect();
        let a = Auditor::new(&p, &published, &order);
        let x = p.find(&["r0".into(), "c0".into()]).unwrap();
        assert!(!a.determined(x, &mut Scratch::default()));
        // The margins are all published.
        for (c, st) in status.iter().enumerate() {
            if p.margins(c) > 0 {
                assert_eq!(*st, Conf::Free, "{:?}", p.names(c));
            }
        }
    }

    /// Everything a protected problem must satisfy, checked with an LP over the whole problem
    /// (not the pattern's own certificates).
    fn check(p: &Problem, pat: &Pattern) -> Result<(), proptest::test_runner::TestCaseError> {
        for (c, v) in p.values.iter().enumerate() {
            proptest::prop_assert!(
                !(pat.status[c] == Conf::Free && *v > 0 && *v < 5),
                "{:?} = {v} published",
                p.names(c)
            );
        }
        proptest::prop_assert!(pat.failures.is_empty(), "{:?}", pat.failures);
        let published: Vec<bool> = pat.status.iter().map(|s| *s == Conf::Free).collect();
        let order = publication_order(p, false);
        let a = Auditor::new(p, &published, &order);
        for (c, i) in &pat.intervals {
            let exact = a.lp_interval(*c).unwrap();
            proptest::prop_assert!(
                exact.lo <= i.lo + 1e-6 && i.hi <= exact.hi + 1e-6,
                "{:?}: {i:?} not inside the LP's {exact:?}",
                p.names(*c)
            );
            proptest::prop_assert!(exact.width() >= 5.0 - 1e-6);
            let v = p.values[*c] as f64;
            proptest::prop_assert!(i.lo <= v && v <= i.hi);
        }
        Ok(())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        #[test]
        fn random_tables_are_protected_by_both_methods(
            dims in (2usize..5, 2usize..4, 1usize..4),
            inner in proptest::collection::vec(
                proptest::prop_oneof![3 => 0u64..4, 2 => 4u64..40, 1 => 40u64..400],
                48,
            ),
        ) {
            let p = problem3([dims.0, dims.1, dims.2], &inner);
            for m in [Secondary::Gauss, Secondary::Hypercube] {
                let pat = protect(&p, &settings(m), &[], &[]);
                check(&p, &pat)?;
                // Deterministic.
                let again = protect(&p, &settings(m), &[], &[]);
                proptest::prop_assert_eq!(&pat.status, &again.status);
                proptest::prop_assert_eq!(pat.secondary, m);
            }
            // The Gaussian elimination out of work: the hypercube protects the problem, and
            // says so; the pattern is the hypercube's own.
            let tight = Settings { gauss_work: 1, ..settings(Secondary::Gauss) };
            let pat = protect(&p, &tight, &[], &[]);
            check(&p, &pat)?;
            let cube = protect(&p, &settings(Secondary::Hypercube), &[], &[]);
            if pat.status.contains(&Conf::Primary) {
                proptest::prop_assert_eq!(pat.secondary, Secondary::Hypercube);
                proptest::prop_assert_eq!(&pat.status, &cube.status);
            }
        }
    }
}
