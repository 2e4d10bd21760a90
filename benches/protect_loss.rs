//! Information loss and time of secondary suppression on the default pipeline's tables: the
//! Gaussian method (the default) against the hypercube, with the audit and its repair, on the
//! same cells. Prints one line per table and method: cells, primary, secondary (and of those,
//! repaired), persons in suppressed cells, one-way margins published, seconds.
//!
//! Run: `cargo bench --bench protect_loss [-- RELEASE]` (RELEASE: a release directory to read
//! the true tables from; by default the default pipeline is run into a temporary directory).
//! `MIGSTAT_BENCH_RANGE=5` for another protection range. asylum keeps its grand total, as the
//! default spec asks.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic here is a failing test or bench

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use migstat::protect::{Conf, Problem, Secondary, Settings};
use polars::prelude::*;

fn finest(release: &Path, table: &str, dims: &[&str]) -> BTreeMap<Vec<String>, u64> {
    let path = release.join(format!("restricted/tables/{table}/2024/data.parquet"));
    let df = ParquetReader::new(std::fs::File::open(&path).expect("table"))
        .finish()
        .expect("parquet");
    let cols: Vec<Vec<String>> = dims
        .iter()
        .map(|d| {
            df.column(d)
                .unwrap()
                .str()
                .unwrap()
                .iter()
                .map(|v| v.unwrap_or_default().to_string())
                .collect()
        })
        .collect();
    let n = df.column("n").unwrap().cast(&DataType::UInt64).unwrap();
    let n = n.u64().unwrap();
    let mut out = BTreeMap::new();
    for i in 0..df.height() {
        let key: Vec<String> = cols.iter().map(|c| c[i].clone()).collect();
        if key.iter().all(|c| c != "_T") {
            out.insert(key, n.get(i).unwrap_or(0));
        }
    }
    out
}

/// The protection range: `MIGSTAT_BENCH_RANGE`, else the default.
fn range() -> f64 {
    std::env::var("MIGSTAT_BENCH_RANGE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(migstat::protect::DEFAULT_PROTECTION_RANGE)
}

/// A table of the default pipeline: id, dimensions, hierarchies (child, parent), threshold.
type BenchTable<'a> = (&'a str, &'a [&'a str], &'a [(usize, usize)], u64);

fn main() {
    let arg = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let (_tmp, release) = match arg {
        Some(r) => (None, PathBuf::from(r)),
        None => {
            let tmp = tempfile::tempdir().expect("temp dir");
            let mut plan =
                migstat::spec::compile(Path::new("pipelines/observatory.toml")).expect("spec");
            // A fixed key (reproducible noise) in a key file, not the environment.
            let key = tmp.path().join("protection.key");
            std::fs::write(&key, "benchmark-key-not-a-secret").expect("key file");
            plan.protection_key = migstat::spec::KeySource {
                env: "MIGSTAT_BENCH_KEY_UNSET".into(),
                file: Some(key),
            };
            migstat::runner::run(
                &plan,
                &migstat::runner::RunOptions {
                    out_dir: tmp.path().join("out"),
                    ..Default::default()
                },
            )
            .expect("the default pipeline runs");
            let r = tmp.path().join("out/current");
            (Some(tmp), r)
        }
    };
    let tables: &[BenchTable] = &[
        ("trafficking", &["SEX", "CHILD", "EXPLOITATION"], &[], 5),
        (
            "asylum",
            &[
                "STATUS",
                "SEX",
                "AGE_GROUP",
                "CITIZENSHIP_REGION",
                "CITIZENSHIP",
            ],
            &[(4, 3)],
            5,
        ),
        (
            "survey_population",
            &["SEX", "AGE_GROUP", "MIGRATION_TYPE", "REGION"],
            &[],
            10,
        ),
    ];
    println!(
        "{:<18} {:<10} {:>6} {:>6} {:>7} {:>8} {:>9} {:>8} {:>8}",
        "table", "method", "cells", "prim.", "second.", "repaired", "persons", "one-way", "seconds"
    );
    for (t, dims, hier, k) in tables {
        let f = finest(&release, t, dims);
        let d = dims.len();
        let masks: Vec<u32> = (0..(1u32 << d)).collect();
        let p = Problem::new(
            dims.iter().map(|s| s.to_string()).collect(),
            &f,
            hier,
            &[],
            &masks,
        )
        .expect("problem");
        for m in [Secondary::Gauss, Secondary::Hypercube] {
            let s = Settings {
                threshold: *k,
                range: range(),
                keep_grand_total: *t == "asylum",
                secondary: m,
                gauss_work: migstat::protect::GAUSS_WORK,
            };
            let t0 = Instant::now();
            let pat = migstat::protect::suppress_problem(&p, &s, &[], &[]);
            let secs = t0.elapsed().as_secs_f64();
            let count = |c: Conf| pat.status.iter().filter(|x| **x == c).count();
            let persons: u64 = (0..p.cells.len())
                .filter(|c| pat.status[*c] == Conf::Secondary)
                .map(|c| p.values[c])
                .sum();
            let one_way = (0..p.cells.len())
                .filter(|c| p.margins(*c) + 1 == d)
                .count();
            let one_way_pub = (0..p.cells.len())
                .filter(|c| p.margins(*c) + 1 == d && pat.status[*c] == Conf::Free)
                .count();
            for c in 0..p.cells.len() {
                if p.margins(c) + 1 >= d && pat.status[c] != Conf::Free {
                    eprintln!(
                        "  one-way margin suppressed: {:?} = {} ({:?})",
                        p.names(c),
                        p.values[c],
                        pat.status[c]
                    );
                }
            }
            println!(
                "{:<18} {:<10} {:>6} {:>6} {:>7} {:>8} {:>9} {:>4}/{:<3} {:>8.2}  {} failures",
                t,
                format!("{m:?}"),
                p.cells.len(),
                count(Conf::Primary),
                count(Conf::Secondary),
                pat.repaired,
                persons,
                one_way_pub,
                one_way,
                secs,
                pat.failures.len()
            );
        }
    }
}
