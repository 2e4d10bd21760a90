//! Exact sparse Gaussian elimination over the finest cells of a protection problem.
//!
//! Input: cells as sparse integer vectors over the problem's rows (its finest cells: a cell is
//! the sum of the finest cells below it). Output: a [`Basis`] of the published cells' span in
//! echelon form, the canonical remainder of any cell modulo that span ([`Basis::reduce`]), and
//! integer directions of the null space ([`Basis::direction`]).
//!
//! A published cell is a linear equation on the finest cells that the intruder knows. A
//! suppressed cell is *determined* by the published ones exactly when its vector lies in their
//! span, i.e. when its remainder is zero. The basis keeps one vector per independent published
//! cell, each with a pivot row where every *earlier* basis vector is zero; reducing a vector by
//! the basis vectors in the order of their index (each subtraction can only create non-zeros at
//! the pivots of *later* vectors) gives a remainder that is zero at every pivot row and differs
//! from the input by an element of the span: the same remainder whatever published cells the
//! span was built from. So two cells' remainders can be compared directly.
//!
//! Arithmetic is in `i64`, fraction-free (a vector is scaled by the pivot's coefficient when it
//! does not divide) and every stored vector is divided by the gcd of its entries; pivots are
//! chosen among entries of the smallest magnitude (almost always ±1 for tables of counts), so
//! the numbers stay small. An overflow is reported, never wrapped: the callers then take the
//! conservative choice (suppress).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A sparse integer vector: (row, coefficient), rows ascending, no zero coefficient.
pub type SparseVec = Vec<(u32, i64)>;

const NONE: u32 = u32::MAX;

/// The arithmetic left `i64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow;

/// Dense scratch space for one reduction, reused between calls (no allocation per vector).
#[derive(Debug, Default)]
pub struct Scratch {
    val: Vec<i64>,
    touched: Vec<u32>,
    seen: Vec<bool>,
    /// Basis entries applied by [`Basis::reduce`] so far: the elimination's work, counted so
    /// that it can be bounded without a clock.
    pub work: u64,
}

impl Scratch {
    fn ensure(&mut self, rows: usize) {
        if self.val.len() < rows {
            self.val.resize(rows, 0);
            self.seen.resize(rows, false);
        }
    }

    fn touch(&mut self, r: u32) {
        if !self.seen[r as usize] {
            self.seen[r as usize] = true;
            self.touched.push(r);
        }
    }

    /// The non-zeros touched so far, sorted, with the scratch cleared.
    fn take(&mut self) -> SparseVec {
        self.touched.sort_unstable();
        let mut out = Vec::with_capacity(self.touched.len());
        for &r in &self.touched {
            let v = self.val[r as usize];
            if v != 0 {
                out.push((r, v));
            }
            self.val[r as usize] = 0;
            self.seen[r as usize] = false;
        }
        self.touched.clear();
        out
    }
}

fn gcd(mut a: i64, mut b: i64) -> i64 {
    a = a.abs();
    b = b.abs();
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Divide by the gcd of the entries and make the first (lowest-row) entry positive: the
/// canonical representative of the vector's direction.
pub fn canonical(v: &mut SparseVec) {
    let g = v.iter().fold(0, |g, (_, c)| gcd(g, *c));
    if g == 0 {
        return;
    }
    let sign = if v[0].1 < 0 { -1 } else { 1 };
    for (_, c) in v.iter_mut() {
        *c = *c / g * sign;
    }
}

/// The published span in echelon form.
#[derive(Debug, Default)]
pub struct Basis {
    rows: usize,
    /// Per row, the index of the basis vector pivoting there, or `NONE`.
    pivot_of: Vec<u32>,
    vecs: Vec<SparseVec>,
    pivots: Vec<u32>,
    /// The pivot's coefficient in its vector (positive).
    pcoef: Vec<i64>,
}

impl Basis {
    pub fn new(rows: usize) -> Self {
        Basis {
            rows,
            pivot_of: vec![NONE; rows],
            ..Default::default()
        }
    }

    #[cfg(test)]
    pub fn rank(&self) -> usize {
        self.vecs.len()
    }

    pub fn is_pivot(&self, row: u32) -> bool {
        self.pivot_of[row as usize] != NONE
    }

    /// The remainder of `v` modulo the span (canonical up to a positive factor: see
    /// [`canonical`]); empty when `v` lies in the span.
    pub fn reduce(&self, v: &[(u32, i64)], s: &mut Scratch) -> Result<SparseVec, Overflow> {
        s.ensure(self.rows);
        let mut heap: BinaryHeap<Reverse<u32>> = BinaryHeap::new();
        for &(r, c) in v {
            s.touch(r);
            s.val[r as usize] += c;
            let p = self.pivot_of[r as usize];
            if p != NONE {
                heap.push(Reverse(p));
            }
        }
        let mut failed = false;
        while let Some(Reverse(i)) = heap.pop() {
            let r = self.pivots[i as usize] as usize;
            let c = s.val[r];
            if c == 0 {
                continue;
            }
            let p = self.pcoef[i as usize];
            let (scale, m) = if c % p == 0 { (1, c / p) } else { (p, c) };
            if scale != 1 {
                for &t in &s.touched {
                    match s.val[t as usize].checked_mul(scale) {
                        Some(x) => s.val[t as usize] = x,
                        None => failed = true,
                    }
                }
            }
            s.work += self.vecs[i as usize].len() as u64;
            for &(row, coef) in &self.vecs[i as usize] {
                let Some(d) = m.checked_mul(coef) else {
                    failed = true;
                    continue;
                };
                s.touch(row);
                let cur = s.val[row as usize];
                match cur.checked_sub(d) {
                    Some(x) => s.val[row as usize] = x,
                    None => failed = true,
                }
                let q = self.pivot_of[row as usize];
                if q != NONE && q > i && s.val[row as usize] != 0 {
                    heap.push(Reverse(q));
                }
            }
            if failed {
                break;
            }
        }
        let mut out = s.take();
        if failed {
            return Err(Overflow);
        }
        canonical(&mut out);
        Ok(out)
    }

    /// Add a remainder (non-empty, zero at every pivot: the output of [`Basis::reduce`]) as a
    /// new basis vector, pivoting on the row `pick` chooses among the entries of smallest
    /// magnitude. Returns the pivot row.
    pub fn push(&mut self, mut u: SparseVec, pick: impl Fn(&[(u32, i64)]) -> u32) -> u32 {
        canonical(&mut u);
        let min = u.iter().map(|(_, c)| c.abs()).min().unwrap_or(1);
        let smallest: Vec<(u32, i64)> = u.iter().copied().filter(|(_, c)| c.abs() == min).collect();
        let r = pick(&smallest);
        let coef = u.iter().find(|(row, _)| *row == r).map_or(1, |x| x.1);
        if coef < 0 {
            for (_, c) in u.iter_mut() {
                *c = -*c;
            }
        }
        let i = self.vecs.len() as u32;
        self.pivot_of[r as usize] = i;
        self.pivots.push(r);
        self.pcoef.push(coef.abs());
        self.vecs.push(u);
        r
    }

    /// An integer direction of the null space of the span (every basis vector, hence every
    /// published cell, sums to zero over it) that moves the non-pivot row `free` by a positive
    /// amount and no other non-pivot row: back-substitution through the basis, last vector
    /// first. `contains[row]` lists the basis vectors with an entry at `row` (see
    /// [`Basis::row_index`]). `None` when `free` is a pivot or the arithmetic overflows.
    pub fn direction(&self, free: u32, contains: &[Vec<u32>]) -> Option<SparseVec> {
        if self.is_pivot(free) {
            return None;
        }
        // δ as integers over a common denominator: δ[free] = den.
        let mut delta: std::collections::BTreeMap<u32, i64> = [(free, 1)].into_iter().collect();
        let mut heap: BinaryHeap<u32> = contains[free as usize].iter().copied().collect();
        let mut done: Vec<u32> = Vec::new();
        while let Some(i) = heap.pop() {
            if done.last() == Some(&i) {
                continue;
            }
            done.push(i);
            let b = &self.vecs[i as usize];
            let r = self.pivots[i as usize];
            // Σ_row b[row]·δ[row] = 0, solved for δ[r].
            let mut acc: i64 = 0;
            for &(row, coef) in b {
                if row == r {
                    continue;
                }
                if let Some(d) = delta.get(&row) {
                    acc = acc.checked_add(coef.checked_mul(*d)?)?;
                }
            }
            if acc == 0 {
                continue;
            }
            let p = self.pcoef[i as usize];
            if acc % p != 0 {
                let g = gcd(acc, p);
                let f = p / g;
                for v in delta.values_mut() {
                    *v = v.checked_mul(f)?;
                }
                acc = acc.checked_mul(f)?;
            }
            let was_zero = !delta.contains_key(&r);
            delta.insert(r, -acc / p);
            if was_zero {
                for &j in &contains[r as usize] {
                    if j < i {
                        heap.push(j);
                    }
                }
            }
        }
        let mut out: SparseVec = delta.into_iter().filter(|(_, v)| *v != 0).collect();
        // Keep the free row's coefficient positive after the gcd.
        let g = out.iter().fold(0, |g, (_, c)| gcd(g, *c));
        if g > 1 {
            for (_, c) in out.iter_mut() {
                *c /= g;
            }
        }
        Some(out)
    }

    /// Per row, the basis vectors with an entry there (for [`Basis::direction`]).
    pub fn row_index(&self) -> Vec<Vec<u32>> {
        let mut out = vec![Vec::new(); self.rows];
        for (i, v) in self.vecs.iter().enumerate() {
            for (row, _) in v {
                out[*row as usize].push(i as u32);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ones(rows: &[u32]) -> SparseVec {
        rows.iter().map(|r| (*r, 1)).collect()
    }

    /// A 2 × 2 table: rows are the four inner cells a b / c d.
    #[test]
    fn a_two_by_two_table_determines_its_inner_cells_from_one_of_them() {
        let mut s = Scratch::default();
        let mut b = Basis::new(4);
        // Publish the grand total, both row totals and one column total.
        for cell in [
            ones(&[0, 1, 2, 3]),
            ones(&[0, 1]),
            ones(&[2, 3]),
            ones(&[0, 2]),
        ] {
            let u = b.reduce(&cell, &mut s).unwrap();
            if !u.is_empty() {
                b.push(u, |c| c[c.len() - 1].0);
            }
        }
        // The second row total is the grand total minus the first: rank 3.
        assert_eq!(b.rank(), 3);
        // The other column total is determined; an inner cell is not.
        assert!(b.reduce(&ones(&[1, 3]), &mut s).unwrap().is_empty());
        let a = b.reduce(&ones(&[0]), &mut s).unwrap();
        assert!(!a.is_empty());
        // All four inner cells have the same remainder up to sign: publishing any one of them
        // determines the others.
        let mut d = b.reduce(&ones(&[3]), &mut s).unwrap();
        canonical(&mut d);
        let mut a2 = a.clone();
        canonical(&mut a2);
        assert_eq!(a2, d);
        // The null space is the alternating direction +a −b −c +d.
        let idx = b.row_index();
        let free = (0..4).find(|r| !b.is_pivot(*r)).unwrap();
        let dir = b.direction(free, &idx).unwrap();
        let signs: Vec<i64> = (0..4)
            .map(|r| dir.iter().find(|x| x.0 == r).map_or(0, |x| x.1))
            .collect();
        let flip = signs[free as usize];
        let signs: Vec<i64> = signs.iter().map(|s| s * flip).collect();
        let want = if free == 0 || free == 3 {
            vec![1, -1, -1, 1]
        } else {
            vec![-1, 1, 1, -1]
        };
        assert_eq!(signs, want);
    }

    #[test]
    fn fraction_free_reduction_stays_exact() {
        let mut s = Scratch::default();
        let mut b = Basis::new(3);
        // 2x + y, then x + y + z: remainders must stay integral.
        let u = b.reduce(&[(0, 2), (1, 1)], &mut s).unwrap();
        b.push(u, |c| c[0].0); // pivot on y (coefficient 1)
        let u = b.reduce(&[(0, 1), (1, 1), (2, 1)], &mut s).unwrap();
        // x + y + z − (2x + y) = −x + z, canonical x − z.
        assert_eq!(u, vec![(0, 1), (2, -1)]);
        b.push(u, |c| c[1].0);
        assert!(
            b.reduce(&[(0, 3), (1, 2), (2, 1)], &mut s)
                .unwrap()
                .is_empty()
        );
        let idx = b.row_index();
        let free = (0..3).find(|r| !b.is_pivot(*r)).unwrap();
        let d = b.direction(free, &idx).unwrap();
        // Both equations vanish on d.
        let dot = |e: &[(u32, i64)]| -> i64 {
            e.iter()
                .map(|(r, c)| c * d.iter().find(|x| x.0 == *r).map_or(0, |x| x.1))
                .sum()
        };
        assert_eq!(dot(&[(0, 2), (1, 1)]), 0);
        assert_eq!(dot(&[(0, 1), (1, 1), (2, 1)]), 0);
    }
}
