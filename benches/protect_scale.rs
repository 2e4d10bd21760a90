//! Secondary suppression (hypercubes, pruning) and its audit at scale: a register table of
//! region × citizenship × sex × age band × status (12 × 40 × 2 × 18 × 6 inner cells, every
//! margin: about 190,000 cells) drawn from a skewed population so that many cells are small.
//! Run: `cargo bench --bench protect_scale [-- PERSONS]` (prints the figures for BENCHMARKS.md;
//! one run, as the point is the wall time of one table, not a distribution).

use std::collections::BTreeMap;
use std::time::Instant;

use migstat::protect::{Conf, Grid, Proof, suppress_and_audit};

fn main() {
    let persons: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2_000_000);
    let dims = [12u32, 40, 2, 18, 6];
    // Skewed marginal shares per dimension (Zipf-like), so small cells are common.
    let shares: Vec<Vec<f64>> = dims
        .iter()
        .map(|&n| {
            let w: Vec<f64> = (1..=n).map(|i| 1.0 / f64::from(i).powf(1.1)).collect();
            let s: f64 = w.iter().sum();
            w.into_iter().map(|x| x / s).collect()
        })
        .collect();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    // Expected count per inner cell from the product of shares, with multiplicative noise.
    let t0 = Instant::now();
    let mut finest: BTreeMap<Vec<u32>, u64> = BTreeMap::new();
    let mut idx = vec![0u32; 5];
    loop {
        let p: f64 = idx
            .iter()
            .enumerate()
            .map(|(j, i)| shares[j][*i as usize])
            .product();
        let v = (p * persons as f64 * (0.2 + 1.6 * next())).round() as u64;
        if v > 0 {
            finest.insert(idx.clone(), v);
        }
        let mut j = 0;
        while j < 5 {
            idx[j] += 1;
            if idx[j] < dims[j] {
                break;
            }
            idx[j] = 0;
            j += 1;
        }
        if j == 5 {
            break;
        }
    }
    let grid = Grid::from_finest(&finest, 5);
    let n = grid.values.len();
    let built = t0.elapsed();
    let t1 = Instant::now();
    let (status, audited) = suppress_and_audit(&grid, 5, 5.0).expect("protect");
    let took = t1.elapsed();
    let count = |c: Conf| status.iter().filter(|s| **s == c).count();
    let secondary_total: u64 = (0..n)
        .filter(|c| status[*c] == Conf::Secondary)
        .map(|c| grid.values[c])
        .sum();
    let by_lp = audited
        .intervals
        .values()
        .filter(|i| i.2 == Proof::Lp)
        .count();
    println!(
        "{n} cells ({} inner, {} relations), {persons} persons: table built in {:.1} s",
        finest.len(),
        grid.relations.len(),
        built.as_secs_f64()
    );
    println!(
        "suppression + audit: {:.1} s; {} primary, {} secondary (holding {secondary_total} persons), {} audited ({by_lp} by LP), {} audit failures, narrowest interval {:.2}",
        took.as_secs_f64(),
        count(Conf::Primary),
        count(Conf::Secondary),
        audited.intervals.len(),
        audited.failing(5.0).len(),
        audited
            .intervals
            .values()
            .map(|(l, h, _)| h - l)
            .fold(f64::INFINITY, f64::min)
    );
}
