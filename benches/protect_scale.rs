//! Secondary suppression (Gaussian elimination, audit, repair) at scale: a register table of
//! region × citizenship × sex × age band × status (9 × 25 × 2 × 18 × 6 inner cells, every
//! margin: 103,740 cells) drawn from a skewed population so that many cells are small.
//! Run: `cargo bench --bench protect_scale [-- PERSONS]` (prints the figures for BENCHMARKS.md;
//! one run, as the point is the wall time of one table, not a distribution).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic here is a failing test or bench

use std::collections::BTreeMap;
use std::time::Instant;

use migstat::protect::{Conf, Problem, Proof, Secondary, Settings, suppress_problem};

fn main() {
    let persons: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2_000_000);
    // MIGSTAT_BENCH_DIMS=9,25,2,18,6 (five category counts) for another table size.
    let dims: [u32; 5] = std::env::var("MIGSTAT_BENCH_DIMS")
        .ok()
        .and_then(|s| {
            let v: Vec<u32> = s.split(',').filter_map(|x| x.trim().parse().ok()).collect();
            v.try_into().ok()
        })
        .unwrap_or([9, 25, 2, 18, 6]);
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
    let names: Vec<String> = ["REGION", "CITIZENSHIP", "SEX", "AGE", "STATUS"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let finest: BTreeMap<Vec<String>, u64> = finest
        .into_iter()
        .map(|(k, v)| (k.iter().map(|c| format!("c{c:02}")).collect(), v))
        .collect();
    let masks: Vec<u32> = (0..32).collect();
    let p = Problem::new(names, &finest, &[], &[], &masks).expect("problem");
    let n = p.cells.len();
    let built = t0.elapsed();
    let t1 = Instant::now();
    let settings = Settings {
        threshold: 5,
        range: migstat::protect::DEFAULT_PROTECTION_RANGE,
        keep_grand_total: false,
        secondary: match std::env::var("MIGSTAT_BENCH_METHOD").as_deref() {
            Ok("hypercube") => Secondary::Hypercube,
            _ => Secondary::Gauss,
        },
        // MIGSTAT_BENCH_GAUSS_WORK=N for another work limit (0: none).
        gauss_work: match std::env::var("MIGSTAT_BENCH_GAUSS_WORK")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            Some(0) => u64::MAX,
            Some(n) => n,
            None => migstat::protect::GAUSS_WORK,
        },
    };
    let pat = suppress_problem(&p, &settings, &[], &[]);
    let took = t1.elapsed();
    let count = |c: Conf| pat.status.iter().filter(|s| **s == c).count();
    let secondary_total: u64 = (0..n)
        .filter(|c| pat.status[*c] == Conf::Secondary)
        .map(|c| p.values[c])
        .sum();
    let by = |proof: Proof| pat.intervals.values().filter(|i| i.proof == proof).count();
    let one_way = (0..n).filter(|c| p.margins(*c) + 1 == 5).count();
    let one_way_pub = (0..n)
        .filter(|c| p.margins(*c) + 1 == 5 && pat.status[*c] == Conf::Free)
        .count();
    println!(
        "{n} cells ({} non-empty inner), {persons} persons: table built in {:.1} s",
        finest.len(),
        built.as_secs_f64()
    );
    println!(
        "suppression + audit ({:?}): {:.1} s; {} primary, {} secondary (holding {secondary_total} persons), one-way margins published {one_way_pub}/{one_way}, {} audited ({} hypercube, {} directions, {} LP), {} failures, narrowest interval {:.2}",
        pat.secondary,
        took.as_secs_f64(),
        count(Conf::Primary),
        count(Conf::Secondary),
        pat.intervals.len(),
        by(Proof::Hypercube),
        by(Proof::Direction),
        by(Proof::Lp),
        pat.failures.len(),
        pat.intervals
            .values()
            .map(|i| i.hi - i.lo)
            .fold(f64::INFINITY, f64::min)
    );
}
