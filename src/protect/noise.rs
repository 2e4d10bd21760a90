//! Perturbative methods on the finest cells of a group of linked tables: conventional and
//! random rounding, and the cell key method; what a published count tells an intruder.
//!
//! Input: a [`Problem`] (finest cells with their true counts and, for the cell key method, the
//! sums of their records' keys) and the [`Noise`]. Output: each finest cell's published count,
//! and each published cell's count as the **sum** of the published finest cells below it, so
//! every table of the group is additive and the tables agree with each other. A margin then
//! carries no information beyond its cells: the independent rounding of every cell of a cube,
//! which its margins undo (the true table is pinned where the rounded margins and cells
//! intersect), is not what is published.
//!
//! An intruder who knows the method learns from a published finest count `v` only that the
//! true count lies in its [`support`] (every count that can be published as `v`), and from a
//! margin only the sum of those supports: with the built-in methods every support holds at
//! least two counts, so no cell is ever pinned.

use super::cellkey::PTable;
use super::problem::Problem;
use super::secret::Secret;

/// A perturbative method.
#[derive(Debug, Clone)]
pub enum Noise {
    /// Nearest multiple of `base` (halves up).
    Round { base: u64 },
    /// Up or down to a multiple of `base`, up with probability (n mod base)/base, from a keyed
    /// hash of the group, the period and the cell.
    RandomRound { base: u64 },
    /// The cell key method: the perturbation table applied to (count, cell key).
    CellKey { ptable: PTable },
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

/// A uniform number in [0, 1) from a keyed hash of the cell: the same key, group, period and
/// cell give the same number in every run.
pub fn uniform(key: &[u8; 32], scope: &str, cell: &[&str]) -> f64 {
    let mut h = blake3::Hasher::new_keyed(key);
    h.update(scope.as_bytes());
    for c in cell {
        h.update(&[0]);
        h.update(c.as_bytes());
    }
    let b = h.finalize();
    let mut x = [0u8; 8];
    x.copy_from_slice(&b.as_bytes()[..8]);
    (u64::from_le_bytes(x) >> 11) as f64 / (1u64 << 53) as f64
}

/// The published count of every finest cell (`keys`: the cell key sums, one per row, for the
/// cell key method; `scope`: the group and period, for random rounding).
pub fn perturb_rows(
    p: &Problem,
    noise: &Noise,
    keys: &[u32],
    secret: Option<&Secret>,
    scope: &str,
) -> Vec<u64> {
    let rr_key = secret.map(|s| s.derive("random rounding"));
    (0..p.rows.len())
        .map(|r| {
            let n = p.row_values[r];
            match noise {
                Noise::Round { base } => round(n, *base, None),
                Noise::RandomRound { base } => {
                    let names: Vec<&str> = p.rows[r]
                        .iter()
                        .enumerate()
                        .map(|(j, c)| p.codes[j][*c as usize].as_str())
                        .collect();
                    let u = rr_key.as_ref().map(|k| uniform(k, scope, &names));
                    round(n, *base, Some(u.unwrap_or(0.5)))
                }
                Noise::CellKey { ptable } => ptable.perturb(
                    n,
                    super::cellkey::cell_key(keys.get(r).copied().unwrap_or(0)),
                ),
            }
        })
        .collect()
}

/// The true counts that can be published as `v` (inclusive), `None` when `v` cannot be
/// published at all.
pub fn support(noise: &Noise, v: u64) -> Option<(u64, u64)> {
    match noise {
        Noise::Round { base } => {
            if !v.is_multiple_of(*base) {
                return None;
            }
            let half = base.div_ceil(2);
            Some((v.saturating_sub(base - half), v + half - 1))
        }
        Noise::RandomRound { base } => {
            if !v.is_multiple_of(*base) {
                return None;
            }
            Some((v.saturating_sub(base - 1), v + base - 1))
        }
        Noise::CellKey { ptable } => ptable.support(v),
    }
}

/// Each published cell's count: the sum of its finest cells' published counts.
pub fn sums(p: &Problem, rows: &[u64]) -> Vec<u64> {
    p.support
        .iter()
        .map(|s| s.iter().map(|r| rows[*r as usize]).sum())
        .collect()
}

/// What the intruder can say of each cell's true count: the sum of its finest cells' supports,
/// at least 1 for a code that occurs alone in the cell's margin... (the code sums of
/// `Problem::at_least` are applied by the caller where they matter).
pub fn intervals(p: &Problem, noise: &Noise, rows: &[u64]) -> Vec<(u64, u64)> {
    let per_row: Vec<(u64, u64)> = rows
        .iter()
        .map(|v| support(noise, *v).unwrap_or((*v, *v)))
        .collect();
    p.support
        .iter()
        .map(|s| {
            s.iter().fold((0u64, 0u64), |(lo, hi), r| {
                let (a, b) = per_row[*r as usize];
                (lo + a, hi + b)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding() {
        assert_eq!(round(7, 5, None), 5);
        assert_eq!(round(8, 5, None), 10);
        assert_eq!(round(10, 5, None), 10);
        assert_eq!(round(0, 3, Some(0.0)), 0);
        // 7 = 5 + 2: up with probability 2/5.
        assert_eq!(round(7, 5, Some(0.39)), 10);
        assert_eq!(round(7, 5, Some(0.41)), 5);
        let k = [1u8; 32];
        let u = uniform(&k, "t", &["F", "A"]);
        assert_eq!(u, uniform(&k, "t", &["F", "A"]));
        assert_ne!(u, uniform(&[2u8; 32], "t", &["F", "A"]));
        assert!((0.0..1.0).contains(&u));
    }

    #[test]
    fn supports_hold_every_count_that_publishes_the_value() {
        for base in [3u64, 5, 10] {
            for noise in [Noise::Round { base }, Noise::RandomRound { base }] {
                for n in 0..60u64 {
                    for u in [None, Some(0.0), Some(0.3), Some(0.7), Some(0.99)] {
                        let v = match noise {
                            Noise::Round { .. } => round(n, base, None),
                            _ => round(n, base, Some(u.unwrap_or(0.5))),
                        };
                        let (lo, hi) = support(&noise, v).unwrap();
                        assert!(
                            lo <= n && n <= hi,
                            "{noise:?}: {n} -> {v} not in [{lo}, {hi}]"
                        );
                        // Never a single count: a published value never pins the truth.
                        assert!(hi > lo, "{noise:?}: {v} pins {lo}");
                    }
                }
            }
        }
        // Nearest rounding to 5: 0 comes from 0..2, 5 from 3..7.
        assert_eq!(support(&Noise::Round { base: 5 }, 0), Some((0, 2)));
        assert_eq!(support(&Noise::Round { base: 5 }, 5), Some((3, 7)));
        assert_eq!(support(&Noise::RandomRound { base: 5 }, 5), Some((1, 9)));
        assert_eq!(support(&Noise::RandomRound { base: 5 }, 7), None);
    }
}
