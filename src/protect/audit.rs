//! The audit of a suppression pattern: for each cell that needs protection, the interval of
//! values the intruder cannot rule out.
//!
//! Input: a [`Problem`] (rows = finest cells, cells = sums of rows), which cells are published,
//! and the cells to check. Output: per cell an [`Interval`] with its [`Proof`].
//!
//! The intruder's knowledge: every published cell's exact value, that every finest cell is a
//! non-negative integer, and that every code of the frame occurs (its sum is at least 1). The
//! interval of a cell is the least and greatest value it takes over all tables consistent with
//! that knowledge.
//!
//! 1. **Determined.** The published cells span a linear space ([`Basis`]); a cell whose vector
//!    lies in it is known exactly (interval of width 0).
//! 2. **Directions (certificates).** Otherwise the cell's remainder has non-zeros at rows that
//!    are no pivot; for such a row, [`Basis::direction`] gives an integer vector δ along which
//!    every published cell keeps its value. It is checked again from scratch (every published
//!    cell that meets it sums to zero over it, exactly), and the true table moved by `t·δ` stays
//!    non-negative and keeps every code present for integer `t` in a range computed from the
//!    true values: every such table is consistent with what is published, so the cell's values
//!    over that range lie in the intruder's interval. The union over a few directions is a
//!    proved *inner* bound of the exact interval.
//! 3. **Linear program.** A cell the directions do not prove wide enough gets the exact bounds
//!    of the LP relaxation (minimum and maximum subject to the published cells, the bounds and
//!    the code sums), rounded inward to integers; on a large problem the LP keeps the rows near
//!    the cell free and the others at their true values (a smaller feasible set, so again an
//!    inner bound). Every optimal table an LP finds is consistent with what is published, so
//!    the least and greatest value each other cell takes over the tables found so far bound
//!    its interval from inside too: a cell they already prove wide enough gets no LP of its
//!    own ([`Auditor::intervals`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::elim::{Basis, Scratch, SparseVec};
use super::lp::{Lp, LpError};
use super::problem::Problem;

/// Directions tried per cell before the LP.
pub const DIRECTIONS_PER_CELL: usize = 24;

/// Cells an LP of the audit keeps free at most (the nearest unpublished ones; on larger groups
/// the others stay at their true values, which only narrows the interval).
pub const LP_CELLS: usize = 4_000;

/// Cells whose LPs one round of [`Auditor::intervals`] solves side by side: a fixed number, so
/// which cells get an LP of their own does not depend on the thread count.
pub const LP_ROUND: usize = 4;

/// How an interval was proved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Proof {
    /// The published cells determine the cell: the interval is its value.
    Determined,
    /// Checked null-space directions of the published cells (an inner bound).
    Direction,
    /// The linear program's bounds, rounded inward.
    Lp,
    /// A hypercube of suppressed cells along which the cell moves (an inner bound).
    Hypercube,
}

impl Proof {
    pub fn code(self) -> &'static str {
        match self {
            Proof::Determined => "determined",
            Proof::Direction => "direction",
            Proof::Lp => "lp",
            Proof::Hypercube => "hypercube",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub lo: f64,
    pub hi: f64,
    pub proof: Proof,
}

impl Interval {
    pub fn width(&self) -> f64 {
        self.hi - self.lo
    }
}

/// Why an interval could not be computed.
#[derive(Debug, Clone, PartialEq)]
pub enum AuditError {
    /// The linear program did not settle (its iteration bound, or a numerical failure).
    Lp(LpError),
}

/// The published pattern of a problem, ready to bound cells.
pub struct Auditor<'a> {
    p: &'a Problem,
    published: Vec<bool>,
    basis: Basis,
    basis_rows: Vec<Vec<u32>>,
    known: Knowledge,
}

impl<'a> Auditor<'a> {
    /// `published[c]`: whether cell `c` is published; `order`: the cells by decreasing value to
    /// the user (the basis is built in this order, so the same pattern gives the same basis).
    pub fn new(p: &'a Problem, published: &[bool], order: &[usize]) -> Self {
        let mut basis = Basis::new(p.rows.len());
        let mut s = Scratch::default();
        let pref: Vec<u64> = p.row_values.clone();
        // Rows under a published zero are each zero.
        for c in (0..p.cells.len()).filter(|c| published[*c] && p.values[*c] == 0) {
            for r in &p.support[c] {
                if let Ok(u) = basis.reduce(&[(*r, 1)], &mut s)
                    && !u.is_empty()
                {
                    basis.push(u, |_| *r);
                }
            }
        }
        // The span does not depend on the order its cells are added in, but the fill-in does:
        // finest cells first (fewest rows), so that a margin is reduced by the small vectors of
        // its published children rather than the other way round; ties in publication order.
        let mut cells: Vec<usize> = order.iter().copied().filter(|c| published[*c]).collect();
        cells.sort_by_key(|c| p.support[*c].len());
        for c in cells {
            let v: SparseVec = p.support[c].iter().map(|r| (*r, 1)).collect();
            // An overflow leaves the cell out of the basis: the span is then smaller than the
            // published one, so the audit's intervals can only be too wide... which is not
            // conservative; such a cell is therefore treated as fixing all its rows.
            match basis.reduce(&v, &mut s) {
                Ok(u) if !u.is_empty() => {
                    basis.push(u, |cands| pick_pivot(cands, &pref));
                }
                Ok(_) => {}
                // Undecidable in i64: take each of its rows as known (a larger span than the
                // published one, so the audit errs on the safe side).
                Err(_) => {
                    for r in &p.support[c] {
                        if let Ok(u) = basis.reduce(&[(*r, 1)], &mut s)
                            && !u.is_empty()
                        {
                            basis.push(u, |cands| pick_pivot(cands, &pref));
                        }
                    }
                }
            }
        }
        let basis_rows = basis.row_index();
        let known = Knowledge::new(p, published);
        Auditor {
            p,
            published: published.to_vec(),
            basis,
            basis_rows,
            known,
        }
    }

    /// The remainder of a vector modulo the published span (`None` on overflow).
    pub fn remainder(&self, v: &SparseVec, s: &mut Scratch) -> Option<SparseVec> {
        self.basis.reduce(v, s).ok()
    }

    /// Whether the published cells determine `cell` exactly.
    pub fn determined(&self, cell: usize, s: &mut Scratch) -> bool {
        let v: SparseVec = self.p.support[cell].iter().map(|r| (*r, 1)).collect();
        self.basis.reduce(&v, s).is_ok_and(|u| u.is_empty())
    }

    /// The interval checked directions prove for `cell` (no LP): `None` when the reduction
    /// fails; a zero-width interval when the cell is determined.
    pub fn cheap_interval(&self, cell: usize, s: &mut Scratch) -> Option<Interval> {
        let v = self.p.values[cell] as f64;
        let red = self
            .basis
            .reduce(
                &self.p.support[cell]
                    .iter()
                    .map(|r| (*r, 1))
                    .collect::<Vec<_>>(),
                s,
            )
            .ok()?;
        if red.is_empty() {
            return Some(Interval {
                lo: v,
                hi: v,
                proof: Proof::Determined,
            });
        }
        Some(self.directions(cell, &red))
    }

    /// The interval of `cell`: directions first, the LP when they do not reach `range`.
    pub fn interval(
        &self,
        cell: usize,
        range: f64,
        s: &mut Scratch,
    ) -> Result<Interval, AuditError> {
        let v = self.p.values[cell] as f64;
        let red = match self.basis.reduce(
            &self.p.support[cell]
                .iter()
                .map(|r| (*r, 1))
                .collect::<Vec<_>>(),
            s,
        ) {
            Ok(u) => u,
            Err(_) => return self.lp_interval(cell),
        };
        if red.is_empty() {
            return Ok(Interval {
                lo: v,
                hi: v,
                proof: Proof::Determined,
            });
        }
        let d = self.directions(cell, &red);
        if d.width() >= range - 1e-9 {
            return Ok(d);
        }
        self.lp_interval(cell)
    }

    /// The intervals of `cells`, in the order given: checked directions, else the extremes the
    /// optimal tables of earlier LPs give the cell, else its own LP (both bounds).
    ///
    /// Every LP solution is a table consistent with what is published (the LP's variables at
    /// their solution, every other cell at its true value), so each cell's value in it lies in
    /// that cell's LP interval: the least and greatest values over the solutions seen so far
    /// are an inner bound of it, rounded inward like the LP's own bounds. A cell they prove
    /// wide enough needs no LP; most cells of a suppression pattern are proved by the tables
    /// their neighbours' LPs found. The LPs run in rounds of [`LP_ROUND`] cells (in parallel),
    /// each round checked against the solutions of the rounds before: the same cells are solved
    /// whatever the thread count, and a minimum or maximum does not depend on the order its
    /// values arrive in.
    pub fn intervals(
        &self,
        cells: &[usize],
        range: f64,
    ) -> Vec<(usize, Result<Interval, AuditError>)> {
        use rayon::prelude::*;
        let p = self.p;
        let wide = |i: &Interval| i.width() >= range - 1e-9;
        let cheap: Vec<(usize, Option<Interval>)> = cells
            .par_iter()
            .map(|&c| (c, self.cheap_interval(c, &mut Scratch::default())))
            .collect();
        let mut out: HashMap<usize, Result<Interval, AuditError>> = HashMap::new();
        let mut pending = Vec::new();
        for (c, i) in cheap {
            match i {
                Some(i) if wide(&i) => {
                    out.insert(c, Ok(i));
                }
                _ => pending.push(c),
            }
        }
        let mut lo: Vec<f64> = p.values.iter().map(|v| *v as f64).collect();
        let mut hi = lo.clone();
        let view = LpView {
            p,
            published: &self.published,
        };
        for round in pending.chunks(LP_ROUND) {
            let mut todo = Vec::new();
            for &c in round {
                let v = p.values[c] as f64;
                let seen = Interval {
                    lo: round_in(lo[c], v, false).min(v),
                    hi: round_in(hi[c], v, true).max(v),
                    proof: Proof::Lp,
                };
                if wide(&seen) {
                    out.insert(c, Ok(seen));
                } else {
                    todo.push(c);
                }
            }
            type Points = Vec<(Vec<u32>, Vec<f64>)>;
            let solved: Vec<(usize, Result<Interval, AuditError>, Points)> = todo
                .par_iter()
                .map(|&c| {
                    let mut points: Points = Vec::new();
                    let i = view.bounds_and_points(c, LP_CELLS, &mut |vars, x| {
                        points.push((vars.to_vec(), x.to_vec()))
                    });
                    (c, i, points)
                })
                .collect();
            for (c, i, points) in solved {
                for (vars, x) in points {
                    for (v, x) in vars.iter().zip(x) {
                        let v = *v as usize;
                        lo[v] = lo[v].min(x);
                        hi[v] = hi[v].max(x);
                    }
                }
                out.insert(c, i);
            }
        }
        cells
            .iter()
            .map(|c| {
                let i = out.remove(c).unwrap_or_else(|| {
                    Err(AuditError::Lp(LpError::Failed(
                        "no interval was computed".into(),
                    )))
                });
                (*c, i)
            })
            .collect()
    }

    /// The union of the intervals along a few checked null-space directions.
    pub fn directions(&self, cell: usize, red: &SparseVec) -> Interval {
        let p = self.p;
        let v = p.values[cell] as f64;
        let mut free: Vec<u32> = red.iter().map(|(r, _)| *r).collect();
        free.sort_by_key(|r| (std::cmp::Reverse(p.row_values[*r as usize]), *r));
        free.truncate(DIRECTIONS_PER_CELL);
        let (mut lo, mut hi) = (v, v);
        for j in free {
            let Some(delta) = self.basis.direction(j, &self.basis_rows) else {
                continue;
            };
            let Some((tmin, tmax, sc)) = self.check(cell, &delta) else {
                continue;
            };
            let a = v - (sc.abs() as f64) * tmin;
            let b = v + (sc.abs() as f64) * tmax;
            lo = lo.min(a);
            hi = hi.max(b);
        }
        Interval {
            lo,
            hi,
            proof: Proof::Direction,
        }
    }

    /// Check a direction from scratch and return how far the true table can move along it, in
    /// integer steps: (steps against the cell's growth, steps with it, the cell's change per
    /// step). `None` when it changes a published cell (or not `cell`).
    fn check(&self, cell: usize, delta: &SparseVec) -> Option<(f64, f64, i64)> {
        let p = self.p;
        // Each cell's change along δ: (cell, coefficient) pairs, sorted and summed per cell.
        let mut sums: Vec<(u32, i64)> = delta
            .iter()
            .flat_map(|&(r, c)| p.containing[r as usize].iter().map(move |&q| (q, c)))
            .collect();
        sums.sort_unstable_by_key(|(q, _)| *q);
        let mut sc = 0;
        let mut at = 0;
        while at < sums.len() {
            let q = sums[at].0;
            let mut s = 0i64;
            while at < sums.len() && sums[at].0 == q {
                s += sums[at].1;
                at += 1;
            }
            if s != 0 && self.published[q as usize] {
                return None;
            }
            if q as usize == cell {
                sc = s;
            }
        }
        if sc == 0 {
            return None;
        }
        // Orient δ so that the cell grows.
        let sign = sc.signum();
        // t in [−down, up]: each row stays ≥ 0, each code sum ≥ its bound.
        let (mut up, mut down) = (f64::INFINITY, f64::INFINITY);
        for &(r, c) in delta {
            let c = c * sign;
            let x = p.row_values[r as usize] as f64;
            if c < 0 {
                up = up.min((x / (-c) as f64).floor());
            } else {
                down = down.min((x / c as f64).floor());
            }
        }
        let mut touched: Vec<u32> = delta
            .iter()
            .flat_map(|&(r, _)| self.known.at_least_of[r as usize].iter().copied())
            .collect();
        touched.sort_unstable();
        touched.dedup();
        // δ is sorted by row (as `Basis::direction` returns it).
        debug_assert!(delta.windows(2).all(|w| w[0].0 < w[1].0));
        let at = |r: &u32| {
            delta
                .binary_search_by_key(r, |(row, _)| *row)
                .ok()
                .map(|i| delta[i].1)
        };
        for i in touched {
            let (rows, bound) = &self.known.at_least[i as usize];
            let s: i64 = rows.iter().filter_map(at).sum::<i64>() * sign;
            if s == 0 {
                continue;
            }
            let cur: u64 = rows.iter().map(|r| p.row_values[*r as usize]).sum();
            let slack = cur.saturating_sub(*bound) as f64;
            if s < 0 {
                up = up.min((slack / (-s) as f64).floor());
            } else {
                down = down.min((slack / s as f64).floor());
            }
        }
        Some((down, up, sc))
    }

    /// The LP bounds of `cell` (rounded inward to integers), over the cells within
    /// [`LP_CELLS`] of it (the others held at their values: a narrower interval, never a wider
    /// one).
    pub fn lp_interval(&self, cell: usize) -> Result<Interval, AuditError> {
        self.lp_over(cell, false)
    }

    /// The LP bounds of `cell` with every row of the problem free: the exact relaxation.
    pub fn exact_interval(&self, cell: usize) -> Result<Interval, AuditError> {
        self.lp_over(cell, true)
    }

    fn lp_over(&self, cell: usize, all: bool) -> Result<Interval, AuditError> {
        let view = LpView {
            p: self.p,
            published: &self.published,
        };
        view.bounds(cell, if all { usize::MAX } else { LP_CELLS })
    }
}

/// What the LP of a cell reads: the published pattern (which the repair changes between
/// calls, without rebuilding a basis).
pub struct LpView<'a> {
    pub p: &'a Problem,
    pub published: &'a [bool],
}

/// What the intruder knows besides the published values and non-negativity: the sums known to
/// be at least some number (every code of the frame occurs). A suppressed cell may be empty
/// (the whole frame is published, and a zero may be suppressed as a secondary cell).
#[derive(Debug, Clone)]
pub struct Knowledge {
    pub at_least: Vec<(Vec<u32>, u64)>,
    pub at_least_of: Vec<Vec<u32>>,
}

impl Knowledge {
    pub fn new(p: &Problem, _published: &[bool]) -> Self {
        let mut k = Knowledge {
            at_least: Vec::new(),
            at_least_of: vec![Vec::new(); p.rows.len()],
        };
        for (rows, b) in &p.at_least {
            k.add(rows.clone(), *b);
        }
        k
    }

    fn add(&mut self, rows: Vec<u32>, bound: u64) {
        let i = self.at_least.len() as u32;
        for r in &rows {
            self.at_least_of[*r as usize].push(i);
        }
        self.at_least.push((rows, bound));
    }
}

impl LpView<'_> {
    /// The least value the intruder allows cell `c` when it is a variable: 1 for a one-way
    /// margin (every code of the frame occurs); else 0 (the frame is published whole, zeros
    /// included, and a zero may be suppressed as a secondary cell, so a suppressed cell may
    /// be empty).
    fn lower(&self, c: usize) -> f64 {
        self.p.floor(c) as f64
    }

    /// The cells within reach of `cell` through the cube's relations (breadth first), at most
    /// `max` of them; with `only_unpublished`, only through cells that are not published (the
    /// LP's variables). The flag says whether that is the whole connected group.
    fn near(&self, cell: usize, max: usize, only_unpublished: bool) -> (Vec<u32>, bool) {
        let p = self.p;
        let mut seen: BTreeSet<u32> = BTreeSet::from([cell as u32]);
        let mut frontier = vec![cell as u32];
        while !frontier.is_empty() {
            let mut next = Vec::new();
            for &c in &frontier {
                for &r in &p.member_of[c as usize] {
                    let (parent, children) = &p.relations[r as usize];
                    for m in std::iter::once(parent).chain(children.iter()) {
                        if only_unpublished && self.published[*m as usize] {
                            continue;
                        }
                        if seen.insert(*m) {
                            next.push(*m);
                            if seen.len() >= max {
                                return (seen.into_iter().collect(), false);
                            }
                        }
                    }
                }
            }
            frontier = next;
        }
        (seen.into_iter().collect(), true)
    }

    /// The LP bounds of `cell` (rounded inward to integers) over the cube's relations: the
    /// unpublished cells within reach of it are the variables (at most `max_cells`; the others
    /// at their true values, which only narrows the interval), the published ones constants.
    pub fn bounds(&self, cell: usize, max_cells: usize) -> Result<Interval, AuditError> {
        self.bounds_and_points(cell, max_cells, &mut |_, _| {})
    }

    /// [`bounds`](Self::bounds), handing each optimal table the solver found to `seen` (the
    /// LP's variables, as cells, and their values; every other cell keeps its true value).
    pub fn bounds_and_points(
        &self,
        cell: usize,
        max_cells: usize,
        seen: &mut dyn FnMut(&[u32], &[f64]),
    ) -> Result<Interval, AuditError> {
        let p = self.p;
        let value = p.values[cell] as f64;
        if self.published[cell] {
            return Ok(Interval {
                lo: value,
                hi: value,
                proof: Proof::Determined,
            });
        }
        let (vars, _) = self.near(cell, max_cells, true);
        let var: HashMap<u32, u32> = vars
            .iter()
            .enumerate()
            .map(|(i, c)| (*c, i as u32))
            .collect();
        let mut lp = Lp {
            vars: vars.len(),
            lower: vars.iter().map(|c| self.lower(*c as usize)).collect(),
            ..Default::default()
        };
        let mut rels: BTreeSet<u32> = BTreeSet::new();
        for c in &vars {
            rels.extend(p.member_of[*c as usize].iter().copied());
        }
        // Only relations independent of the ones before: the cube's relations are redundant
        // (every total is reached along several dimensions), which the solver does not like.
        let mut basis = Basis::new(vars.len());
        let mut scratch = Scratch::default();
        for r in rels {
            let (parent, children) = &p.relations[r as usize];
            let mut terms: SparseVec = Vec::new();
            let mut rhs = 0.0;
            match var.get(parent) {
                Some(v) => terms.push((*v, 1)),
                None => rhs -= p.values[*parent as usize] as f64,
            }
            for ch in children {
                match var.get(ch) {
                    Some(v) => terms.push((*v, -1)),
                    None => rhs += p.values[*ch as usize] as f64,
                }
            }
            if terms.is_empty() {
                continue;
            }
            terms.sort_unstable();
            match basis.reduce(&terms, &mut scratch) {
                Ok(u) if u.is_empty() => continue,
                Ok(u) => {
                    basis.push(u, |c| c[0].0);
                }
                Err(_) => {}
            }
            lp.eq
                .push((terms.iter().map(|(v, c)| (*v, *c as f64)).collect(), rhs));
        }
        let objective = [(var[&(cell as u32)], 1.0)];
        let (max, min) = lp.range(&objective).map_err(AuditError::Lp)?;
        for o in [&max, &min] {
            if o.point.len() == vars.len() {
                seen(&vars, &o.point);
            }
        }
        // Rounded inward (`round_in`).
        let hi = max
            .value
            .map_or(f64::INFINITY, |m| round_in(m, value, true));
        let lo = min.value.map_or(0.0, |m| round_in(m, value, false));
        Ok(Interval {
            lo: lo.min(value),
            hi: hi.max(value),
            proof: Proof::Lp,
        })
    }
}

/// An LP bound `m` of a cell whose true value is `value`, rounded inward to an integer with a
/// tolerance for the interior-point method's accuracy, which is relative to the optimum's size
/// (255.9999975 for 256 and 6.99997913 for 7 were seen), capped far below the distance of a
/// fractional vertex (a ratio of small determinants) from the nearest integer: inside the cap a
/// bound is the integer, beyond it the bound rounds inward (narrower: more protection).
fn round_in(m: f64, value: f64, upper: bool) -> f64 {
    let tol = (1e-6 * (1.0 + value) + 1e-5 * m.abs()).min(1e-3);
    if upper {
        (m + tol).floor()
    } else {
        (m - tol).ceil().max(0.0)
    }
}

/// The pivot of a new basis vector: among the candidates (entries of the smallest magnitude),
/// the row of the smallest true value (ties: the last row). Small rows are seldom published,
/// so they are reached by few later vectors: little fill-in.
pub fn pick_pivot(cands: &[(u32, i64)], values: &[u64]) -> u32 {
    cands
        .iter()
        .min_by_key(|(r, _)| (values[*r as usize], std::cmp::Reverse(*r)))
        .map_or(0, |(r, _)| *r)
}

/// Every cell's interval, keyed by cell.
pub type Intervals = BTreeMap<usize, Interval>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protect::problem::Problem;

    fn problem(inner: &[&[u64]]) -> Problem {
        let mut f = BTreeMap::new();
        for (i, row) in inner.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                if *v > 0 {
                    f.insert(vec![format!("r{i}"), format!("c{j}")], *v);
                }
            }
        }
        Problem::new(vec!["R".into(), "C".into()], &f, &[], &[], &[0, 1, 2, 3]).unwrap()
    }

    fn cell(p: &Problem, a: &str, b: &str) -> usize {
        p.find(&[a.to_string(), b.to_string()]).unwrap()
    }

    #[test]
    fn intervals_of_a_suppressed_rectangle() {
        let p = problem(&[&[2, 40, 50], &[30, 60, 70], &[45, 55, 65]]);
        let order: Vec<usize> = (0..p.cells.len()).collect();
        let hidden = [
            cell(&p, "r0", "c0"),
            cell(&p, "r0", "c1"),
            cell(&p, "r1", "c0"),
            cell(&p, "r1", "c1"),
        ];
        let published: Vec<bool> = (0..p.cells.len()).map(|c| !hidden.contains(&c)).collect();
        let a = Auditor::new(&p, &published, &order);
        let mut s = Scratch::default();
        let x = cell(&p, "r0", "c0");
        // 2 can go down to 0 (then 40 → 42, 30 → 32, 60 → 58) and up by min(40, 30) = 30.
        let i = a.interval(x, 5.0, &mut s).unwrap();
        assert_eq!((i.lo, i.hi, i.proof), (0.0, 32.0, Proof::Direction));
        let l = a.lp_interval(x).unwrap();
        assert_eq!((l.lo, l.hi), (0.0, 32.0));
        // Publish the whole table but one cell: it is determined.
        let alone: Vec<bool> = (0..p.cells.len()).map(|c| c != x).collect();
        let a = Auditor::new(&p, &alone, &order);
        let i = a.interval(x, 5.0, &mut s).unwrap();
        assert_eq!((i.lo, i.hi, i.proof), (2.0, 2.0, Proof::Determined));
    }

    #[test]
    fn intervals_answer_for_every_cell_inside_its_exact_interval() {
        // The 2 × 2 block suppressed: every cell moves with the others along one direction,
        // r0c0 = 2 + t with t in [−2, 30] (r0c1 = 40 − t, r1c0 = 30 − t, r1c1 = 60 + t): by
        // hand, r0c0 in [0, 32], r0c1 in [10, 42], r1c0 in [0, 32], r1c1 in [58, 90].
        let p = problem(&[&[2, 40, 50], &[30, 60, 70], &[45, 55, 65]]);
        let order: Vec<usize> = (0..p.cells.len()).collect();
        let names = [("r0", "c0"), ("r0", "c1"), ("r1", "c0"), ("r1", "c1")];
        let hidden: Vec<usize> = names.iter().map(|(r, c)| cell(&p, r, c)).collect();
        let published: Vec<bool> = (0..p.cells.len()).map(|c| !hidden.contains(&c)).collect();
        let a = Auditor::new(&p, &published, &order);
        let exact = [(0.0, 32.0), (10.0, 42.0), (0.0, 32.0), (58.0, 90.0)];
        // Range 32: the checked directions reach it.
        for ((c, i), (lo, hi)) in a.intervals(&hidden, 32.0).iter().zip(exact) {
            let i = i.as_ref().unwrap();
            assert_eq!(
                (i.lo, i.hi, i.proof),
                (lo, hi, Proof::Direction),
                "cell {c}"
            );
        }
        // Range 33: nothing reaches it; the LPs (or the tables they found) give the exact
        // intervals, every cell answered in the order asked, none dropped.
        let got = a.intervals(&hidden, 33.0);
        assert_eq!(
            got.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
            hidden,
            "one answer per cell, in order"
        );
        for ((c, i), (lo, hi)) in got.iter().zip(exact) {
            let i = i.as_ref().unwrap();
            assert_eq!((i.lo, i.hi, i.proof), (lo, hi, Proof::Lp), "cell {c}");
        }
    }

    #[test]
    fn a_suppressed_zero_may_hold_the_person() {
        // Row r0 holds (r0, c0) = 2 and a zero; with the row total and the zero suppressed too,
        // the two persons could sit in the zero's cell: the cell's interval reaches 0.
        let p = problem(&[&[2, 0], &[30, 40]]);
        let order: Vec<usize> = (0..p.cells.len()).collect();
        let hidden = [
            cell(&p, "r0", "c0"),
            cell(&p, "r0", "_T"),
            cell(&p, "r1", "c0"),
            cell(&p, "r1", "_T"),
            cell(&p, "r0", "c1"),
            cell(&p, "r1", "c1"),
        ];
        let published: Vec<bool> = (0..p.cells.len()).map(|c| !hidden.contains(&c)).collect();
        let a = Auditor::new(&p, &published, &order);
        let l = a.lp_interval(cell(&p, "r0", "c0")).unwrap();
        assert_eq!((l.lo, l.hi), (0.0, 32.0), "{l:?}");
    }

    #[test]
    fn codes_that_occur_bound_the_interval() {
        // The same, but the zero beside (r0, c0) is published: row r0 occurs, so the cell is
        // at least 1.
        let p = problem(&[&[2, 0], &[30, 40]]);
        let order: Vec<usize> = (0..p.cells.len()).collect();
        let hidden = [
            cell(&p, "r0", "c0"),
            cell(&p, "r0", "_T"),
            cell(&p, "r1", "c0"),
            cell(&p, "r1", "_T"),
            cell(&p, "r1", "c1"),
        ];
        let published: Vec<bool> = (0..p.cells.len()).map(|c| !hidden.contains(&c)).collect();
        let a = Auditor::new(&p, &published, &order);
        let l = a.lp_interval(cell(&p, "r0", "c0")).unwrap();
        assert_eq!((l.lo, l.hi), (1.0, 32.0), "{l:?}");
    }
}
