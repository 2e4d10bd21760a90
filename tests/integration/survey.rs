//! Survey estimates against R's `survey` package: tests/golden/*_r.csv hold svytotal / svymean
//! results (through svyby) for every margin combination of the default survey tables, computed by
//! tests/r/survey_golden.R from the same harmonized records (tests/golden/survey_input.csv).

use std::collections::BTreeMap;
use std::path::Path;

use polars::prelude::*;

use crate::{read_parquet, repo};

/// Cell → (estimate, se, t interval low, high, df) from R.
type Golden = BTreeMap<Vec<String>, (f64, f64, f64, f64, u64)>;

fn golden(file: &str, dims: usize) -> Golden {
    let mut rdr = csv::Reader::from_path(repo().join("tests/golden").join(file)).unwrap();
    rdr.records()
        .map(|rec| {
            let rec = rec.unwrap();
            let key = (0..dims).map(|i| rec[i].to_string()).collect();
            let f = |i: usize| rec[dims + i].parse::<f64>().unwrap();
            let v = (f(0), f(1), f(2), f(3), rec[dims + 4].parse().unwrap());
            (key, v)
        })
        .collect()
}

/// Compare a published survey table with R, cell by cell; returns the largest relative
/// differences of estimates and standard errors.
fn compare(out: &Path, table: &str, dims: &[&str], r: &Golden) -> (f64, f64) {
    let df = read_parquet(&out.join(format!(
        "restricted/tables/{table}/ref_year=2024/data.parquet"
    )));
    assert_eq!(
        df.height(),
        r.len(),
        "{table}: the same cells as svyby over every margin combination"
    );
    let cols: Vec<Column> = dims.iter().map(|d| df.column(d).unwrap().clone()).collect();
    let est = df.column("estimate").unwrap().f64().unwrap().clone();
    let se = df.column("se").unwrap().f64().unwrap().clone();
    let n = df.column("n").unwrap().u64().unwrap().clone();
    let dfree = df.column("df").unwrap().u64().unwrap().clone();
    let status = df.column("obs_status").unwrap().str().unwrap().clone();
    let f64col = |name: &str| df.column(name).unwrap().f64().unwrap().clone();
    let (lo, hi, lo_t, hi_t) = (
        f64col("ci_low"),
        f64col("ci_high"),
        f64col("ci_low_t"),
        f64col("ci_high_t"),
    );
    let suppress = df.column("suppress").unwrap().bool().unwrap().clone();
    let (mut worst_est, mut worst_se) = (0.0f64, 0.0f64);
    for i in 0..df.height() {
        let key: Vec<String> = cols
            .iter()
            .map(|c| c.str().unwrap().get(i).unwrap().to_string())
            .collect();
        let (re, rse, rlo, rhi, rdf) = *r
            .get(&key)
            .unwrap_or_else(|| panic!("{table}: R has no cell {key:?}"));
        // Intervals: t with the design's df as R's confint(…, df = degf(design)); normal with
        // qnorm(0.975) = 1.959963984540054.
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(re.abs()) + 1e-9;
        assert!(
            close(lo_t.get(i).unwrap(), rlo) && close(hi_t.get(i).unwrap(), rhi),
            "{table} {key:?}: t interval"
        );
        let z = 1.959_963_984_540_054;
        assert!(
            close(lo.get(i).unwrap(), re - z * rse) && close(hi.get(i).unwrap(), re + z * rse),
            "{table} {key:?}: normal interval"
        );
        let (e, s) = (est.get(i).unwrap(), se.get(i).unwrap());
        worst_est = worst_est.max((e - re).abs() / re.abs());
        if rse > 0.0 {
            worst_se = worst_se.max((s - rse).abs() / rse);
        } else {
            assert!(s.abs() < 1e-9, "{table} {key:?}: R's SE is 0, ours {s}");
        }
        assert_eq!(dfree.get(i), Some(rdf), "degrees of freedom");
        // Quality flags from R's values and Statistics Canada's thresholds (CV 16.5%, 33.3%, n 10).
        let cv = rse / re;
        assert_eq!(
            status.get(i),
            Some(if cv > 0.165 { "U" } else { "A" }),
            "{table} {key:?} cv {cv}"
        );
        assert_eq!(
            suppress.get(i),
            Some(cv > 0.333 || n.get(i).unwrap() < 10),
            "{table} {key:?} cv {cv}"
        );
    }
    (worst_est, worst_se)
}

#[test]
fn survey_totals_means_and_shares_match_r_survey() {
    let (_tmp, out, _plan) = crate::default_run();

    let dims = ["SEX", "AGE_GROUP", "MIGRATION_TYPE", "REGION"];
    let (e, s) = compare(
        &out,
        "survey_population",
        &dims,
        &golden("survey_population_r.csv", 4),
    );
    assert!(
        e < 1e-9 && s < 1e-6,
        "population totals: largest relative differences {e:e} (estimates), {s:e} (SEs)"
    );

    let dims = ["SEX", "MIGRATION_TYPE", "REGION"];
    let (e, s) = compare(
        &out,
        "survey_mean_age",
        &dims,
        &golden("survey_mean_age_r.csv", 3),
    );
    assert!(
        e < 1e-9 && s < 1e-6,
        "mean age: largest relative differences {e:e} (estimates), {s:e} (SEs)"
    );

    let dims = ["MIGRATION_TYPE", "SEX", "REGION"];
    let (e, s) = compare(
        &out,
        "survey_migration_share",
        &dims,
        &golden("survey_migration_share_r.csv", 3),
    );
    assert!(
        e < 1e-9 && s < 1e-6,
        "migration-type shares: largest relative differences {e:e} (estimates), {s:e} (SEs)"
    );
}
