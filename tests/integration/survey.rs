//! Survey estimates against R's `survey` package: tests/golden/survey_population_r.csv holds
//! svytotal/svyby results for every margin combination of the default survey table, computed by
//! tests/r/survey_golden.R from the same harmonized records (tests/golden/survey_input.csv).

use std::collections::BTreeMap;

use polars::prelude::*;

use crate::{read_parquet, repo};
use migstat::runner::{RunOptions, run};
use migstat::spec::compile;

#[test]
fn survey_totals_and_standard_errors_match_r_survey() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let plan = compile(&repo().join("pipelines/observatory.toml")).unwrap();
    run(
        &plan,
        &RunOptions {
            out_dir: out.clone(),
            progress: false,
        },
    )
    .unwrap();

    let dims = ["SEX", "AGE_GROUP", "MIGRATION_TYPE", "REGION"];
    let mut r: BTreeMap<Vec<String>, (f64, f64, u64)> = BTreeMap::new();
    let mut rdr =
        csv::Reader::from_path(repo().join("tests/golden/survey_population_r.csv")).unwrap();
    for rec in rdr.records() {
        let rec = rec.unwrap();
        let key = (0..4).map(|i| rec[i].to_string()).collect();
        r.insert(
            key,
            (
                rec[4].parse().unwrap(),
                rec[5].parse().unwrap(),
                rec[6].parse().unwrap(),
            ),
        );
    }

    let df =
        read_parquet(&out.join("restricted/tables/survey_population/ref_year=2024/data.parquet"));
    let cols: Vec<Column> = dims.iter().map(|d| df.column(d).unwrap().clone()).collect();
    let est = df.column("estimate").unwrap().f64().unwrap().clone();
    let se = df.column("se").unwrap().f64().unwrap().clone();
    let dfree = df.column("df").unwrap().u64().unwrap().clone();
    assert_eq!(
        df.height(),
        r.len(),
        "the same cells as svyby over every margin combination"
    );
    let (mut worst_est, mut worst_se) = (0.0f64, 0.0f64);
    for i in 0..df.height() {
        let key: Vec<String> = cols
            .iter()
            .map(|c| c.str().unwrap().get(i).unwrap().to_string())
            .collect();
        let (re, rse, rdf) = r
            .get(&key)
            .unwrap_or_else(|| panic!("R has no cell {key:?}"));
        let (e, s) = (est.get(i).unwrap(), se.get(i).unwrap());
        worst_est = worst_est.max((e - re).abs() / re.abs());
        worst_se = worst_se.max((s - rse).abs() / rse.abs().max(1e-300));
        assert_eq!(dfree.get(i), Some(*rdf), "degrees of freedom");
    }
    assert!(
        worst_est < 1e-9,
        "largest relative difference in estimates: {worst_est:e}"
    );
    assert!(
        worst_se < 1e-6,
        "largest relative difference in standard errors: {worst_se:e}"
    );
}
