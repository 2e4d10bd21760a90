//! Hypercube secondary suppression (τ-ARGUS's GHMITER), kept to compare with the Gaussian
//! method on the same tables (`protect = { secondary = "hypercube" }`; BENCHMARKS.md).
//!
//! Input: a [`Grid`] — every cell of a table as code ids (`_T` = [`TOTAL_ID`]) with its true
//! value — and the cells already suppressed. Output: a suppression pattern (the audit in
//! `audit` then decides whether it protects, and `suppress` repairs it where it does not).
//!
//! For a primary cell `x` with codes `(a_1 … a_d)`, pick in every dimension a partner `b_j`: a
//! sibling code (another child of the same total; sign −1) or, across the total, `_T` itself or
//! a child of it (sign +1). The 2^d cells with `a_j` or `b_j` in each dimension are the corners
//! of a hypercube. Adding `t × Π signs` to every corner keeps every relation `total = Σ parts`
//! true: each relation that meets a corner meets exactly two, whose changes cancel. So once
//! every corner is suppressed, `x` can move over `[x − min(+ corners), x + min(− corners)]`
//! without contradicting anything published or going negative. For each primary cell (coarsest
//! first) the cheapest hypercube whose interval is at least the protection range is suppressed;
//! cost is 1 + √value summed over the cells newly suppressed (already-suppressed corners are
//! free), and the grand total costs more than any other choice. The search looks at the few
//! best partners per dimension (at most [`SEARCH_BUDGET`] hypercubes per cell). Greedy
//! hypercubes overlap, so [`prune`] then publishes again, largest first, every secondary cell
//! whose primary cells all find another hypercube among the cells still suppressed.
//!
//! On a sparse cube the hypercubes reach the margins: zeros and small siblings cannot absorb a
//! change, so the partners go across `_T`, up to the one-way margins (the measured loss is in
//! BENCHMARKS.md). The Gaussian method (`suppress`) keeps them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::Conf;

/// A table's cells as code ids with their values, and its additive relations.
pub struct Grid {
    /// Per cell, one code id per dimension; [`TOTAL_ID`] is `_T`.
    pub cells: Vec<Vec<u32>>,
    pub values: Vec<u64>,
    /// Relations `parent = Σ children`.
    pub relations: Vec<Relation>,
    /// Relations each cell takes part in.
    member_of: Vec<Vec<usize>>,
    /// Cell index by codes.
    index: HashMap<Vec<u32>, usize>,
    /// Per dimension, the codes present (no `_T`), ascending.
    codes: Vec<Vec<u32>>,
    /// Cells secondary suppression must leave published (see [`Grid::keep_grand_total`]).
    keep: Vec<bool>,
    /// The least value the intruder allows a suppressed cell (1 when zeros are never
    /// suppressed).
    lb: u64,
    /// Cells the search takes only when nothing else closes (one-way margins, for the repair).
    dear: Vec<bool>,
    /// Hypercubes examined per primary cell at most.
    budget: usize,
    /// One-way margins without the floor of 1 (see `Problem::without_floor`).
    floorless: Vec<bool>,
}

pub const TOTAL_ID: u32 = u32::MAX;

/// Hypercubes examined per primary cell at most (the best partners per dimension).
pub const SEARCH_BUDGET: usize = 256;

#[derive(Debug, Clone)]
pub struct Relation {
    pub parent: usize,
    pub children: Vec<usize>,
}

impl Relation {
    pub(crate) fn members(&self) -> impl Iterator<Item = usize> + '_ {
        std::iter::once(self.parent).chain(self.children.iter().copied())
    }
}

/// A primary cell's proof of protection: the corners of a hypercube of suppressed cells with
/// their signs, and the interval the cell moves over.
#[derive(Debug, Clone, PartialEq)]
pub struct Certificate {
    pub corners: Vec<(usize, i8)>,
    pub lo: f64,
    pub hi: f64,
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
        let mut codes: Vec<BTreeSet<u32>> = vec![BTreeSet::new(); d];
        for c in &cells {
            for (j, code) in c.iter().enumerate() {
                if *code != TOTAL_ID {
                    codes[j].insert(*code);
                }
            }
        }
        let index = cells
            .iter()
            .enumerate()
            .map(|(i, c)| (c.clone(), i))
            .collect();
        Grid {
            keep: vec![false; cells.len()],
            dear: vec![false; cells.len()],
            floorless: vec![false; cells.len()],
            budget: SEARCH_BUDGET,
            lb: 0,
            cells,
            values,
            relations,
            member_of,
            index,
            codes: codes.into_iter().map(|s| s.into_iter().collect()).collect(),
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

    /// Never choose the grand total for secondary suppression (for tables whose total is
    /// published elsewhere); a cell that cannot then be protected fails the audit.
    pub fn keep_grand_total(mut self) -> Self {
        for i in 0..self.cells.len() {
            if self.is_grand_total(i) {
                self.keep[i] = true;
            }
        }
        self
    }

    /// Leave these cells published, whatever the search would prefer.
    pub fn keep(mut self, keep: &[bool]) -> Self {
        for (k, x) in self.keep.iter_mut().zip(keep) {
            *k |= *x;
        }
        self
    }

    /// Take these cells only when no hypercube closes without them.
    pub fn dear(mut self, dear: &[bool]) -> Self {
        for (k, x) in self.dear.iter_mut().zip(dear) {
            *k |= *x;
        }
        self
    }

    /// Examine up to `budget` hypercubes per cell.
    pub fn with_budget(mut self, budget: usize) -> Self {
        self.budget = budget.max(1);
        self
    }

    /// The least value the intruder allows cell `c` when it is suppressed: the grid's lower
    /// bound, and 1 for a non-empty one-way margin (every code of the frame occurs: the
    /// intruder knows that margin is at least 1, whatever the rest).
    pub fn floor(&self, c: usize) -> u64 {
        let d = self.cells[c].len();
        if self.values[c] > 0 && self.margins(c) + 1 == d && !self.floorless[c] {
            self.lb.max(1)
        } else {
            self.lb
        }
    }

    /// These one-way margins have no floor of 1 (their code may be absent from the period).
    pub fn without_floor(mut self, floorless: &[bool]) -> Self {
        for (k, x) in self.floorless.iter_mut().zip(floorless) {
            *k |= *x;
        }
        self
    }

    /// Suppressed cells are known to be at least `lb` (see the field).
    pub fn with_lower_bound(mut self, lb: u64) -> Self {
        self.lb = lb;
        self
    }

    /// Whether secondary suppression may take this free cell.
    fn eligible(&self, i: usize) -> bool {
        !self.keep[i]
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

    /// The information lost by suppressing a free cell, as one number for the hypercube search:
    /// 1 + √value (in hundredths), so that both the number of cells lost and their size count.
    /// On the 190k-cell bench table (`benches/protect_scale.rs`) this suppresses 12% fewer
    /// cells, holding 3% fewer persons, than a cost of the value itself (80,809 cells, 28.9 M
    /// persons); a cost of 1 per cell loses fewer cells (56,859) but much larger ones (42.2 M).
    fn loss(&self, i: usize) -> u64 {
        if self.is_grand_total(i) {
            1 << 50
        } else if self.dear[i] {
            1 << 40
        } else {
            (100.0 * (1.0 + (self.values[i] as f64).sqrt())) as u64
        }
    }
}

/// Threshold rule: 0 < value < k.
#[cfg(test)]
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

/// The cheapest hypercube around primary cell `x` whose interval is at least `range` wide, with
/// what it costs to suppress its free corners; with `only_suppressed`, only hypercubes whose
/// corners are all suppressed already (cost 0). `None` when none is found.
fn hypercube(
    grid: &Grid,
    status: &[Conf],
    x: usize,
    range: f64,
    only_suppressed: bool,
) -> Option<(u64, Certificate)> {
    let a = &grid.cells[x];
    let d = a.len();
    let value = grid.values[x];
    let need = (range - value.saturating_sub(grid.floor(x)) as f64).max(0.0);
    let per_dim = (1..=grid.budget)
        .take_while(|m| m.checked_pow(d as u32).is_some_and(|p| p <= grid.budget))
        .last()
        .unwrap_or(1)
        .max(2);
    let mut buf = a.clone();
    // Partners per dimension, best first: (code, sign).
    let mut sides: Vec<Vec<(u32, i8)>> = Vec::with_capacity(d);
    for j in 0..d {
        // (rank: small for its sign, cost, code), (code, sign), the edge cell's value.
        type Option3 = ((bool, u64, u32), (u32, i8), u64);
        let mut options: Vec<Option3> = Vec::new();
        let mut consider = |code: u32, sign: i8, buf: &mut Vec<u32>| {
            buf[j] = code;
            if let Some(&e) = grid.index.get(buf.as_slice()) {
                let free = status[e] == Conf::Free;
                if free && (only_suppressed || !grid.eligible(e)) {
                    return;
                }
                let small =
                    sign < 0 && (grid.values[e].saturating_sub(grid.floor(e)) as f64) < need;
                let cost = if free { grid.loss(e) } else { 0 };
                options.push(((small, cost, code), (code, sign), grid.values[e]));
            }
        };
        if a[j] == TOTAL_ID {
            for &c in &grid.codes[j] {
                consider(c, 1, &mut buf);
            }
        } else {
            for &c in grid.codes[j].iter().filter(|c| **c != a[j]) {
                consider(c, -1, &mut buf);
            }
            consider(TOTAL_ID, 1, &mut buf);
        }
        buf[j] = a[j];
        options.sort_unstable_by_key(|(k, _, _)| *k);
        // The fallback that always closes: `_T` across a code, the largest child across `_T`.
        let fallback = if a[j] == TOTAL_ID {
            options
                .iter()
                .max_by_key(|(k, _, v)| (*v, std::cmp::Reverse(k.2)))
                .map(|(_, s, _)| *s)
        } else {
            options
                .iter()
                .find(|(_, s, _)| s.0 == TOTAL_ID)
                .map(|(_, s, _)| *s)
        };
        let mut keep: Vec<(u32, i8)> = options.iter().take(per_dim).map(|(_, s, _)| *s).collect();
        if let Some(f) = fallback.filter(|f| !keep.contains(f)) {
            keep.pop();
            keep.push(f);
        }
        if keep.is_empty() {
            return None;
        }
        sides.push(keep);
    }

    // Depth-first over the partners, the last dimension outermost (the combinations come in the
    // same order as a mixed-radix count with the first dimension fastest). Choosing dimension j
    // adds the corners whose lowest moved dimension is j; a branch is cut as soon as a corner is
    // missing or not eligible, the cost reaches the best found, or the interval (which only
    // narrows as corners are added) is already narrower than the range.
    let mut search = Search {
        grid,
        status,
        a,
        sides: &sides,
        only_suppressed,
        range,
        value,
        choice: vec![0usize; d],
        buf,
        corners: Vec::with_capacity(1 << d),
        best: None,
    };
    // The cell itself is the corner with no dimension moved.
    let v0 = value.saturating_sub(grid.floor(x));
    search.corners.push((x, 1));
    search.dfs(d, 0, v0, u64::MAX);
    search.best
}

/// The state of one hypercube search (see [`hypercube`]).
struct Search<'a> {
    grid: &'a Grid,
    status: &'a [Conf],
    a: &'a [u32],
    sides: &'a [Vec<(u32, i8)>],
    only_suppressed: bool,
    range: f64,
    value: u64,
    choice: Vec<usize>,
    buf: Vec<u32>,
    corners: Vec<(usize, i8)>,
    best: Option<(u64, Certificate)>,
}

impl Search<'_> {
    /// Dimensions `depth..d` are chosen; returns `true` to stop the whole search (a free
    /// certificate was found).
    fn dfs(&mut self, depth: usize, cost: u64, min_pos: u64, min_neg: u64) -> bool {
        let d = self.a.len();
        if depth == 0 {
            let lo = self.value as f64 - min_pos as f64;
            let hi = if min_neg == u64::MAX {
                f64::INFINITY
            } else {
                self.value as f64 + min_neg as f64
            };
            // Partners may repeat a corner only if a dimension pairs a code with itself, which
            // the options exclude; a duplicate would void the certificate, so check anyway.
            let mut seen: Vec<usize> = self.corners.iter().map(|c| c.0).collect();
            seen.sort_unstable();
            seen.dedup();
            if hi - lo >= self.range - 1e-9 && seen.len() == self.corners.len() {
                self.best = Some((
                    cost,
                    Certificate {
                        corners: self.corners.clone(),
                        lo,
                        hi,
                    },
                ));
                return cost == 0;
            }
            return false;
        }
        let j = depth - 1;
        for k in 0..self.sides[j].len() {
            let bound = self.best.as_ref().map_or(u64::MAX, |b| b.0);
            self.choice[j] = k;
            let mark = self.corners.len();
            let (mut cost, mut min_pos, mut min_neg) = (cost, min_pos, min_neg);
            let mut ok = true;
            // Corners that move dimension j and any of the dimensions above it.
            let high = d - 1 - j;
            for rest in 0..(1usize << high) {
                let mut sign = 1i8;
                for jj in 0..d {
                    if jj < j {
                        self.buf[jj] = self.a[jj];
                    } else if jj == j || rest & (1 << (jj - j - 1)) != 0 {
                        let (code, s) = self.sides[jj][self.choice[jj]];
                        self.buf[jj] = code;
                        sign *= s;
                    } else {
                        self.buf[jj] = self.a[jj];
                    }
                }
                let Some(&c) = self.grid.index.get(self.buf.as_slice()) else {
                    ok = false;
                    break;
                };
                if self.status[c] == Conf::Free {
                    if self.only_suppressed || !self.grid.eligible(c) {
                        ok = false;
                        break;
                    }
                    cost = cost.saturating_add(self.grid.loss(c));
                    if cost >= bound {
                        ok = false;
                        break;
                    }
                }
                let v = self.grid.values[c].saturating_sub(self.grid.floor(c));
                if sign > 0 {
                    min_pos = min_pos.min(v);
                } else {
                    min_neg = min_neg.min(v);
                }
                self.corners.push((c, sign));
            }
            if ok {
                let width = if min_neg == u64::MAX {
                    f64::INFINITY
                } else {
                    (min_pos + min_neg) as f64
                };
                if width >= self.range - 1e-9 && self.dfs(j, cost, min_pos, min_neg) {
                    return true;
                }
            }
            self.corners.truncate(mark);
        }
        false
    }
}

/// Check a certificate against the grid and the statuses from scratch: every corner
/// suppressed and distinct, every relation that meets a corner balanced (its parent's sign equals
/// the sum of its children's), and the interval recomputed from the corners' values.
pub fn verify(grid: &Grid, status: &[Conf], x: usize, cert: &Certificate) -> Option<(f64, f64)> {
    let sign: HashMap<usize, i8> = cert.corners.iter().copied().collect();
    if sign.len() != cert.corners.len() || sign.get(&x) != Some(&1) {
        return None;
    }
    if cert.corners.iter().any(|(c, _)| status[*c] == Conf::Free) {
        return None;
    }
    let mut rels: Vec<usize> = cert
        .corners
        .iter()
        .flat_map(|(c, _)| grid.member_of[*c].iter().copied())
        .collect();
    rels.sort_unstable();
    rels.dedup();
    for r in rels {
        let rel = &grid.relations[r];
        let s = |c: &usize| i64::from(sign.get(c).copied().unwrap_or(0));
        if s(&rel.parent) != rel.children.iter().map(s).sum::<i64>() {
            return None;
        }
    }
    let min = |want: i8| {
        cert.corners
            .iter()
            .filter(|(_, s)| *s == want)
            .map(|(c, _)| grid.values[*c].saturating_sub(grid.floor(*c)))
            .min()
    };
    let v = grid.values[x] as f64;
    let lo = v - min(1).unwrap_or(0) as f64;
    let hi = min(-1).map_or(f64::INFINITY, |m| v + m as f64);
    Some((lo, hi))
}

/// Hypercube secondary suppression: for each primary cell (coarsest first — their hypercubes
/// are the largest, and finer cells then reuse their corners — then largest, then in table
/// order) the cheapest hypercube protecting it to `range` is suppressed. Returns each
/// primary cell's certificate (none only for a cell no hypercube protects).
pub fn secondary(grid: &Grid, status: &mut [Conf], range: f64) -> BTreeMap<usize, Certificate> {
    let mut order: Vec<usize> = (0..grid.cells.len())
        .filter(|c| status[*c] == Conf::Primary)
        .collect();
    order.sort_by_key(|c| {
        (
            std::cmp::Reverse(grid.margins(*c)),
            std::cmp::Reverse(grid.values[*c]),
            *c,
        )
    });
    let mut certs = BTreeMap::new();
    for x in order {
        if let Some((_, cert)) = hypercube(grid, status, x, range, false) {
            for (c, _) in &cert.corners {
                if status[*c] == Conf::Free {
                    status[*c] = Conf::Secondary;
                }
            }
            certs.insert(x, cert);
        }
    }
    certs
}

/// Publish again the secondary cells that protection does not need, largest first: a cell is
/// released when every primary cell whose certificate uses it finds another hypercube among the
/// cells still suppressed. Greedy hypercubes overlap, so later ones often make corners of
/// earlier ones redundant. Only when every primary cell has a certificate (otherwise the
/// suppression pattern is the LP's business and is left alone). Returns the cells released.
pub fn prune(
    grid: &Grid,
    status: &mut [Conf],
    certs: &mut BTreeMap<usize, Certificate>,
    range: f64,
) -> usize {
    let primaries = status.iter().filter(|s| **s == Conf::Primary).count();
    if certs.len() != primaries {
        return 0;
    }
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); grid.cells.len()];
    for (x, cert) in certs.iter() {
        for (c, _) in &cert.corners {
            users[*c].push(*x);
        }
    }
    let mut order: Vec<usize> = (0..status.len())
        .filter(|c| status[*c] == Conf::Secondary)
        .collect();
    order.sort_by_key(|c| (std::cmp::Reverse(grid.values[*c]), *c));
    let mut released = 0;
    for c in order {
        status[c] = Conf::Free;
        let mut replacements = Vec::with_capacity(users[c].len());
        let mut ok = true;
        for &x in &users[c] {
            match hypercube(grid, status, x, range, true) {
                Some((_, cert)) => replacements.push((x, cert)),
                None => {
                    ok = false;
                    break;
                }
            }
        }
        if !ok {
            status[c] = Conf::Secondary;
            continue;
        }
        released += 1;
        for (x, cert) in replacements {
            if let Some(old) = certs.get(&x) {
                for (o, _) in &old.corners {
                    users[*o].retain(|u| *u != x);
                }
            }
            for (n, _) in &cert.corners {
                users[*n].push(x);
            }
            certs.insert(x, cert);
        }
    }
    released
}

/// Secondary suppression until no relation holds exactly one suppressed cell (a repair step
/// for cells the hypercube search could not protect).
pub fn close_singletons(grid: &Grid, status: &mut [Conf]) {
    let mut count: Vec<usize> = grid
        .relations
        .iter()
        .map(|r| r.members().filter(|m| status[*m] != Conf::Free).count())
        .collect();
    // Process relations in index order, revisiting those a new suppression touches.
    let mut pending: BTreeSet<usize> = (0..grid.relations.len())
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
            .filter(|m| status[*m] == Conf::Free && grid.eligible(*m))
            .min_by_key(|m| {
                let double = grid.member_of[*m].iter().any(|o| *o != r && count[*o] == 1);
                let (grand, value, margins, i) = grid.cost(*m);
                (grand, !double, value, margins, i)
            })
        else {
            continue;
        };
        status[pick] = Conf::Secondary;
        for &r in &grid.member_of[pick] {
            count[r] += 1;
            if count[r] == 1 {
                pending.insert(r);
            }
        }
    }
}

/// A hypercube of suppressed cells that proves `x` moves over at least `range`, if the search
/// finds one.
pub fn certificate(grid: &Grid, status: &[Conf], x: usize, range: f64) -> Option<Certificate> {
    hypercube(grid, status, x, range, true).map(|(_, c)| c)
}

/// The cheapest hypercube that protects `x` to `range` given the current pattern (new corners
/// among the eligible free cells): the cells to suppress (possibly none), or `None`.
pub fn repair(grid: &Grid, status: &[Conf], x: usize, range: f64) -> Option<Vec<usize>> {
    let (_, cert) = hypercube(grid, status, x, range, false)?;
    Some(
        cert.corners
            .iter()
            .map(|(c, _)| *c)
            .filter(|c| status[*c] == Conf::Free)
            .collect(),
    )
}

/// The hypercube pattern: `status` holds the primary cells (and cells already suppressed);
/// secondary cells are added, then pruned, then no relation is left with a single suppressed
/// cell.
pub fn pattern(grid: &Grid, status: &mut [Conf], range: f64) {
    let mut certs = secondary(grid, status, range);
    prune(grid, status, &mut certs, range);
    close_singletons(grid, status);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A 2-dimensional table with margins from its inner cells (rows × columns).
    pub(crate) fn table2(inner: &[&[u64]]) -> Grid {
        let mut finest = BTreeMap::new();
        for (i, row) in inner.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                finest.insert(vec![i as u32, j as u32], *v);
            }
        }
        Grid::from_finest(&finest, 2)
    }

    fn at(g: &Grid, codes: &[u32]) -> usize {
        g.index[codes]
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
    fn a_lone_primary_gets_the_cheapest_safe_rectangle() {
        // 2 at (0,0): partners must be at least 3 where they take the other sign. The cheapest
        // rectangle is rows {0,1} × columns {0,1}: 2, 40, 30, 60 (40 and 30 carry sign −1).
        let g = table2(&[&[2, 40, 50], &[30, 60, 70], &[45, 55, 65]]);
        let mut status = primary(&g, 5);
        pattern(&g, &mut status, 5.0);
        let suppressed: Vec<usize> = (0..status.len())
            .filter(|c| status[*c] != Conf::Free)
            .collect();
        let mut want = vec![
            at(&g, &[0, 0]),
            at(&g, &[0, 1]),
            at(&g, &[1, 0]),
            at(&g, &[1, 1]),
        ];
        want.sort_unstable();
        assert_eq!(suppressed, want);
    }

    #[test]
    fn a_forged_certificate_is_refused() {
        let g = table2(&[&[2, 40, 50], &[30, 60, 70], &[45, 55, 65]]);
        let mut status = primary(&g, 5);
        let certs = secondary(&g, &mut status, 5.0);
        let x = at(&g, &[0, 0]);
        let good = &certs[&x];
        assert_eq!(verify(&g, &status, x, good), Some((0.0, 32.0)));
        // A flipped sign unbalances the relations.
        let mut bad = good.clone();
        bad.corners[1].1 = -bad.corners[1].1;
        assert_eq!(verify(&g, &status, x, &bad), None);
        // A corner published again voids it.
        let mut s2 = status.clone();
        s2[good.corners[3].0] = Conf::Free;
        assert_eq!(verify(&g, &s2, x, good), None);
    }
}
