//! The perturbation table of the cell key method, as the spec names it (`protect = { method =
//! "cell_key", ptable = "file.csv" }`, written by R's `ptable` package) or built in.
//!
//! Input: an `i,j,p` CSV file. Output: a checked [`PTable`] (every `i` from 0 to the largest,
//! each row's probabilities summing to 1), read when the spec is compiled so a bad table stops
//! `migstat check`; `protect` perturbs counts with it (see `protect::cellkey` for the method).

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Result};

/// A perturbation table: per original count `i`, the published counts `j` with the upper ends
/// of their key intervals.
#[derive(Debug, Clone, PartialEq)]
pub struct PTable {
    rows: BTreeMap<u64, Vec<(u64, f64)>>,
    max_i: u64,
}

/// The built-in table: (i, j, p).
const DEFAULT: &[(u64, u64, f64)] = &[
    (0, 0, 1.0),
    (1, 0, 2.0 / 3.0),
    (1, 3, 1.0 / 3.0),
    (2, 0, 1.0 / 3.0),
    (2, 3, 2.0 / 3.0),
    (3, 0, 0.05),
    (3, 3, 0.825),
    (3, 4, 0.1),
    (3, 5, 0.025),
    (4, 3, 0.2),
    (4, 4, 0.6),
    (4, 5, 0.2),
    (5, 3, 0.05),
    (5, 4, 0.2),
    (5, 5, 0.5),
    (5, 6, 0.2),
    (5, 7, 0.05),
];

impl Default for PTable {
    fn default() -> Self {
        // The built-in rows are checked by a unit test, so this cannot fail.
        PTable::from_rows(DEFAULT.to_vec()).unwrap_or(PTable {
            rows: BTreeMap::from([(0, vec![(0, 1.0)])]),
            max_i: 0,
        })
    }
}

impl PTable {
    /// A table from (i, j, p) rows: every `i` from 0 to the largest present, each with
    /// probabilities that sum to 1.
    pub fn from_rows(mut rows: Vec<(u64, u64, f64)>) -> std::result::Result<Self, String> {
        rows.sort_by_key(|r| (r.0, r.1));
        let mut out: BTreeMap<u64, Vec<(u64, f64)>> = BTreeMap::new();
        for (i, j, p) in rows {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("i = {i}, j = {j}: p = {p} is not a probability"));
            }
            if p == 0.0 {
                continue;
            }
            let row = out.entry(i).or_default();
            if row.last().is_some_and(|(last, _)| *last == j) {
                return Err(format!("i = {i}: j = {j} appears twice"));
            }
            let cum = row.last().map_or(0.0, |r| r.1) + p;
            row.push((j, cum));
        }
        let max_i = *out.keys().last().ok_or("the table is empty")?;
        for i in 0..=max_i {
            let Some(row) = out.get_mut(&i) else {
                return Err(format!("no row for i = {i} (rows must cover 0 to {max_i})"));
            };
            let total = row.last().map_or(0.0, |r| r.1);
            if (total - 1.0).abs() > 1e-6 {
                return Err(format!("i = {i}: probabilities sum to {total}, not 1"));
            }
            if i == max_i && row.iter().any(|(j, _)| *j + max_i < i) {
                return Err(format!("i = {i}: noise below -{i}"));
            }
            // Close the last interval at exactly 1 so that every key in [0, 1) lands.
            if let Some(last) = row.last_mut() {
                last.1 = 1.0;
            }
        }
        Ok(PTable { rows: out, max_i })
    }

    /// Read a CSV with (at least) columns `i`, `j` and `p`.
    pub fn read(path: &Path) -> Result<Self> {
        let bad =
            |why: String| Error::Usage(format!("perturbation table {}: {why}", path.display()));
        let mut r = csv::Reader::from_path(path).map_err(|e| bad(e.to_string()))?;
        let headers = r.headers().map_err(|e| bad(e.to_string()))?.clone();
        let col = |name: &str| {
            headers
                .iter()
                .position(|h| h.trim().trim_matches('"') == name)
                .ok_or_else(|| bad(format!("no column `{name}` (it needs i, j and p)")))
        };
        let (ci, cj, cp) = (col("i")?, col("j")?, col("p")?);
        let mut rows = Vec::new();
        for (n, rec) in r.records().enumerate() {
            let rec = rec.map_err(|e| bad(e.to_string()))?;
            let field = |c: usize| rec.get(c).unwrap_or("").trim();
            let line = n + 2;
            let int = |c: usize| {
                field(c)
                    .parse::<f64>()
                    .ok()
                    .filter(|v| *v >= 0.0 && v.fract() == 0.0)
                    .map(|v| v as u64)
                    .ok_or_else(|| bad(format!("line {line}: `{}` is not a count", field(c))))
            };
            let p = field(cp)
                .parse::<f64>()
                .map_err(|_| bad(format!("line {line}: `{}` is not a probability", field(cp))))?;
            rows.push((int(ci)?, int(cj)?, p));
        }
        PTable::from_rows(rows).map_err(bad)
    }

    /// The published count for a cell of count `n` and key `key` in [0, 1).
    pub fn perturb(&self, n: u64, key: f64) -> u64 {
        let i = n.min(self.max_i);
        let Some(row) = self.rows.get(&i) else {
            return n;
        };
        let j = row
            .iter()
            .find(|(_, upper)| key < *upper)
            .or(row.last())
            .map_or(i, |(j, _)| *j);
        if n > self.max_i {
            (n + j).saturating_sub(self.max_i)
        } else {
            j
        }
    }

    /// The least and the greatest original count that can be published as `j` (`None` when no
    /// count can): what an intruder who knows the table learns from a published `j`.
    pub fn support(&self, j: u64) -> Option<(u64, u64)> {
        let mut lo: Option<u64> = None;
        let mut hi: Option<u64> = None;
        let mut note = |i: u64| {
            lo = Some(lo.map_or(i, |l| l.min(i)));
            hi = Some(hi.map_or(i, |h| h.max(i)));
        };
        for (&i, row) in &self.rows {
            if row.iter().any(|(x, _)| *x == j) {
                note(i);
            }
        }
        // Beyond the table: i > max_i is published as i + (j' − max_i) for each j' of the last
        // row.
        if let Some(last) = self.rows.get(&self.max_i) {
            for (x, _) in last {
                // i = j − (x − max_i), when that is above max_i.
                let i = (j + self.max_i).checked_sub(*x);
                if let Some(i) = i.filter(|i| *i > self.max_i) {
                    note(i);
                }
            }
        }
        Some((lo?, hi?))
    }

    /// Mean and variance of the published count for original count `i` (for reports and tests).
    pub fn moments(&self, i: u64) -> (f64, f64) {
        let row = &self.rows[&i.min(self.max_i)];
        let shift = i.saturating_sub(self.max_i) as f64;
        let mut prev = 0.0;
        let (mut m, mut m2) = (0.0, 0.0);
        for (j, upper) in row {
            let p = upper - prev;
            prev = *upper;
            let v = *j as f64 + shift;
            m += p * v;
            m2 += p * v * v;
        }
        (m, m2 - m * m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_table_is_unbiased_and_never_publishes_one_or_two() {
        let t = PTable::from_rows(DEFAULT.to_vec()).unwrap();
        assert_eq!(t, PTable::default());
        for i in 0..40u64 {
            let (mean, var) = t.moments(i);
            assert!((mean - i as f64).abs() < 1e-12, "i = {i}: mean {mean}");
            assert!(var <= 2.0 + 1e-12, "i = {i}: variance {var}");
            for k in 0..1000 {
                let j = t.perturb(i, f64::from(k) / 1000.0);
                assert!(j != 1 && j != 2, "i = {i} published as {j}");
                assert!(j.abs_diff(i) <= 3, "i = {i} published as {j}");
                assert!(i != 0 || j == 0, "a zero must stay zero");
            }
        }
        // Key intervals: 1 → 0 for keys below 2/3, else 3.
        assert_eq!(t.perturb(1, 0.66), 0);
        assert_eq!(t.perturb(1, 0.67), 3);
        // Above the table, the last row's noise: 100 with a key in the middle interval stays.
        assert_eq!(t.perturb(100, 0.5), 100);
        assert_eq!(t.perturb(100, 0.01), 98);
        assert_eq!(t.perturb(100, 0.99), 102);
    }

    #[test]
    fn what_a_published_count_says_of_the_original() {
        let t = PTable::default();
        // 0 comes from 0, 1, 2 or 3; 3 from 1 to 5 (5 − 2); 4 from 3 to 6; 100 from 98 to 102.
        assert_eq!(t.support(0), Some((0, 3)));
        assert_eq!(t.support(3), Some((1, 5)));
        assert_eq!(t.support(4), Some((3, 6)));
        assert_eq!(t.support(100), Some((98, 102)));
        // 1 and 2 are never published.
        assert_eq!(t.support(1), None);
        // Checked against the table itself: every (i, key) lands inside the support of what
        // it publishes.
        for i in 0..60u64 {
            for k in 0..200 {
                let j = t.perturb(i, f64::from(k) / 200.0);
                let (lo, hi) = t.support(j).unwrap();
                assert!(lo <= i && i <= hi, "{i} -> {j} outside [{lo}, {hi}]");
            }
        }
    }

    #[test]
    fn a_bad_table_is_refused_with_its_reason() {
        let e = PTable::from_rows(vec![(0, 0, 1.0), (1, 0, 0.5), (1, 3, 0.4)]).unwrap_err();
        assert!(e.contains("i = 1: probabilities sum to 0.9"), "{e}");
        let e = PTable::from_rows(vec![(0, 0, 1.0), (2, 2, 1.0)]).unwrap_err();
        assert!(e.contains("no row for i = 1"), "{e}");
    }
}
