//! Survey estimates against R's `survey` package: tests/golden/*_r.csv hold svytotal / svymean
//! results (through svyby) for every margin combination of the default survey tables, computed by
//! tests/r/survey_golden.R from the same harmonized records (tests/golden/survey_input.csv).

use crate::Counts;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::{read_parquet, repo};

/// Cell → (estimate, se, t interval low, high, df, normal interval when R gives one other
/// than estimate ± z·se) from R.
type Golden = BTreeMap<Vec<String>, (f64, f64, f64, f64, u64, Option<(f64, f64)>)>;

fn golden(file: &str, dims: usize) -> Golden {
    let mut rdr = csv::Reader::from_path(repo().join("tests/golden").join(file)).unwrap();
    rdr.records()
        .map(|rec| {
            let rec = rec.unwrap();
            let key = (0..dims).map(|i| rec[i].to_string()).collect();
            let f = |i: usize| rec[dims + i].parse::<f64>().unwrap();
            let normal = (rec.len() > dims + 6).then(|| (f(5), f(6)));
            let v = (
                f(0),
                f(1),
                f(2),
                f(3),
                rec[dims + 4].parse().unwrap(),
                normal,
            );
            (key, v)
        })
        .collect()
}

/// Compare a published survey table with R, cell by cell; returns the largest relative
/// differences of estimates and standard errors.
fn compare(out: &Path, table: &str, dims: &[&str], r: &Golden) -> (f64, f64) {
    let df = read_parquet(&out.join(format!("restricted/tables/{table}/2018/data.parquet")));
    assert_eq!(
        df.height(),
        r.len(),
        "{table}: the same cells as svyby over every margin combination"
    );
    let cols: Vec<Column> = dims.iter().map(|d| df.column(d).unwrap().clone()).collect();
    let est = df.column("estimate").unwrap().f64().unwrap().clone();
    let se = df.column("se").unwrap().f64().unwrap().clone();
    let n = df.column("n").unwrap().counts().clone();
    let dfree = df.column("df").unwrap().counts().clone();
    let status = df.column("OBS_STATUS").unwrap().str().unwrap().clone();
    let f64col = |name: &str| df.column(name).unwrap().f64().unwrap().clone();
    let (lo, hi, lo_t, hi_t) = (
        f64col("ci_low"),
        f64col("ci_high"),
        f64col("ci_low_t"),
        f64col("ci_high_t"),
    );
    let suppress = df.column("suppress").unwrap().bool().unwrap().clone();
    let (mut worst_est, mut worst_se) = (0.0f64, 0.0f64);
    let mut diverged = 0;
    for i in 0..df.height() {
        let key: Vec<String> = cols
            .iter()
            .map(|c| c.str().unwrap().get(i).unwrap().to_string())
            .collect();
        let (re, rse, rlo, rhi, rdf, rnormal) = *r
            .get(&key)
            .unwrap_or_else(|| panic!("{table}: R has no cell {key:?}"));
        // Intervals: t with the design's df as R's confint(…, df = degf(design)) (or its
        // svyciprop interval, fitted by IRLS to 1e-8: 1e-6 there); normal with qnorm(0.975) =
        // 1.959963984540054. R's NaN (a logit interval of a share of 0) is null here.
        let tol = if rnormal.is_some() { 1e-6 } else { 1e-9 };
        // A logit interval that does not hold R's own estimate (NaN, or (0, 0)): R's svyglm
        // fit of the logit diverged on this domain of the calibrated design (an intercept of
        // 3e15: its IRLS on a subset with zero weights). A share strictly inside (0, 1) has a
        // logit interval, which must lie inside (0, 1) around it.
        let r_failed = rnormal.is_some() && re > 0.0 && re < 1.0 && !(rlo < re && re < rhi);
        if r_failed {
            diverged += 1;
            let (l, h) = (lo_t.get(i).unwrap(), hi_t.get(i).unwrap());
            assert!(
                0.0 < l && l < re && re < h && h < 1.0,
                "{table} {key:?}: ({l}, {h})"
            );
        }
        let close = |a: Option<f64>, b: f64| match a {
            None => b.is_nan(),
            Some(a) => (a - b).abs() <= tol * b.abs().max(re.abs()) + 1e-9,
        };
        assert!(
            r_failed || close(lo_t.get(i), rlo) && close(hi_t.get(i), rhi),
            "{table} {key:?}: t interval ({:?}, {:?}) vs R ({rlo}, {rhi})",
            lo_t.get(i),
            hi_t.get(i)
        );
        let z = 1.959_963_984_540_054;
        let (nlo, nhi) = rnormal.unwrap_or((re - z * rse, re + z * rse));
        assert!(
            r_failed || close(lo.get(i), nlo) && close(hi.get(i), nhi),
            "{table} {key:?}: normal interval"
        );
        let (e, s) = (est.get(i).unwrap(), se.get(i).unwrap());
        worst_est = worst_est.max((e - re).abs() / re.abs());
        if rse > 1e-12 * re.abs() {
            worst_se = worst_se.max((s - rse).abs() / rse);
        } else {
            // 0, or rounding noise: a total the weights are calibrated to.
            assert!(
                s.abs() <= 1e-12 * re.abs().max(1.0),
                "{table} {key:?}: R's SE is {rse}, ours {s}"
            );
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
    assert!(
        diverged <= 4,
        "{table}: R's logit fit diverged on {diverged} cells"
    );
    (worst_est, worst_se)
}

#[test]
fn survey_totals_means_and_shares_match_r_survey() {
    let (_, out, _) = crate::shared_default_run();

    let dims = ["SEX", "AGE_GROUP", "MIGRATION_TYPE", "REGION"];
    let (e, s) = compare(
        out,
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
        out,
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
        out,
        "survey_migration_share",
        &dims,
        &golden("survey_migration_share_r.csv", 3),
    );
    assert!(
        e < 1e-9 && s < 1e-6,
        "migration-type shares: largest relative differences {e:e} (estimates), {s:e} (SEs)"
    );

    // The emigrants abroad: their own universe (R's subset of the same design).
    let dims = ["SEX", "AGE_GROUP", "REGION"];
    let (e, s) = compare(
        out,
        "survey_emigrants",
        &dims,
        &golden("survey_emigrants_r.csv", 3),
    );
    assert!(
        e < 1e-9 && s < 1e-6,
        "emigrant totals: largest relative differences {e:e} (estimates), {s:e} (SEs)"
    );
}

/// The designs of tests/r/survey_designs.R, as `[sources.<id>.design]` bodies (weights added).
pub(crate) const DESIGNS: &[(&str, &str, f64)] = &[
    ("strat", r#"strata = "stratum""#, 0.95),
    (
        "strat_fpc",
        "strata = \"stratum\"\nfpc = \"n_elem_pop\"",
        0.95,
    ),
    ("clus", r#"psu = "psu""#, 0.95),
    (
        "clus_fpc_90",
        "psu = \"psu\"\nfpc = \"psu_fraction\"\nconfidence = 0.90",
        0.90,
    ),
    ("strat_clus", "strata = \"stratum\"\npsu = \"psu\"", 0.95),
    (
        "two_stage",
        "strata = \"stratum\"\npsu = \"psu\"\nssu = \"ssu\"",
        0.95,
    ),
    (
        "two_stage_fpc",
        "strata = \"stratum\"\npsu = \"psu\"\nssu = \"ssu\"\nfpc = \"n_psu_pop\"\nfpc_ssu = \"n_ssu_pop\"",
        0.95,
    ),
    (
        "strat_fpc_only",
        "# no weight\nstrata = \"stratum\"\nfpc = \"n_elem_pop\"",
        0.95,
    ),
    (
        "two_stage_fpc_only",
        "# no weight\nstrata = \"stratum\"\npsu = \"psu\"\nssu = \"ssu\"\nfpc = \"n_psu_pop\"\nfpc_ssu = \"n_ssu_pop\"",
        0.95,
    ),
    (
        "lonely_remove",
        "strata = \"stratum_l\"\npsu = \"psu\"\nlonely_psu = \"remove\"",
        0.95,
    ),
    (
        "lonely_certainty",
        "strata = \"stratum_l\"\npsu = \"psu\"\nlonely_psu = \"certainty\"",
        0.95,
    ),
    (
        "lonely_adjust",
        "strata = \"stratum_l\"\npsu = \"psu\"\nlonely_psu = \"adjust\"",
        0.95,
    ),
    (
        "lonely_average",
        "strata = \"stratum_l\"\npsu = \"psu\"\nlonely_psu = \"average\"",
        0.95,
    ),
    (
        "jk1",
        r#"replicates = { columns = "jk1_*", type = "JK1" }"#,
        0.95,
    ),
    (
        "boot",
        r#"replicates = { columns = "boot_*", type = "bootstrap" }"#,
        0.95,
    ),
];

/// The tables of tests/r/survey_designs.R: (name, kind and its keys, dimensions).
pub(crate) const DESIGN_TABLES: &[(&str, &str, &str)] = &[
    (
        "population",
        r#"kind = "survey_total""#,
        r#"["SEX", "GRP"]"#,
    ),
    (
        "total_y",
        "kind = \"survey_total\"\nvariable = \"y\"",
        r#"["SEX", "GRP"]"#,
    ),
    (
        "mean_y",
        "kind = \"survey_mean\"\nvariable = \"y\"",
        r#"["SEX", "GRP"]"#,
    ),
    (
        "ratio_y_x",
        "kind = \"survey_ratio\"\nnumerator = \"y\"\ndenominator = \"x\"",
        r#"["SEX", "GRP"]"#,
    ),
    (
        "share_grp",
        "kind = \"survey_proportion\"\ncategory = \"GRP\"",
        r#"["GRP", "SEX"]"#,
    ),
    // Stratum S1 has no C: a share of 0 with SE 0 there, as R gives it.
    (
        "share_grp_stratum",
        "kind = \"survey_proportion\"\ncategory = \"GRP\"",
        r#"["GRP", "STRATUM"]"#,
    ),
];

/// A spec with one source per design over tests/fixtures/survey_designs/survey.csv.
fn designs_spec(dir: &Path, designs: &[(&str, &str, f64)]) -> PathBuf {
    let tables: Vec<(String, String, String)> = DESIGN_TABLES
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    designs_spec_with(dir, designs, |_| tables.clone())
}

/// [`designs_spec`] with the tables `tables` gives each design.
fn designs_spec_with(
    dir: &Path,
    designs: &[(&str, &str, f64)],
    tables: impl Fn(&str) -> Vec<(String, String, String)>,
) -> PathBuf {
    let fx = repo().join("tests/fixtures/survey_designs");
    let survey = fx.join("survey.csv").display().to_string();
    designs_spec_at(dir, designs, tables, &survey)
}

/// The survey of tests/fixtures/survey_designs as three delivery files in `dir`, cut inside a
/// PSU and inside a stratum (records in the same order): its files' glob.
pub(crate) fn survey_in_three_files(dir: &Path) -> String {
    let text =
        std::fs::read_to_string(repo().join("tests/fixtures/survey_designs/survey.csv")).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let records: Vec<&str> = lines.collect();
    assert_eq!(records.len(), 215);
    // Records 49 and 50 are in the same PSU (S2-P2) and 129 and 130 in the same SSU
    // (S4-P4-H4): strata, PSUs, SSUs and codes straddle files.
    assert_eq!(records[49].split(',').nth(3), records[50].split(',').nth(3));
    assert_eq!(
        records[129].split(',').nth(4),
        records[130].split(',').nth(4)
    );
    for (k, rows) in [&records[..50], &records[50..130], &records[130..]]
        .iter()
        .enumerate()
    {
        let mut body = format!("{header}\n");
        for r in rows.iter() {
            body += r;
            body += "\n";
        }
        std::fs::write(dir.join(format!("survey_{k}.csv")), body).unwrap();
    }
    dir.join("survey_*.csv").display().to_string()
}

/// [`designs_spec_with`] over the survey at `survey` (a path or glob).
pub(crate) fn designs_spec_at(
    dir: &Path,
    designs: &[(&str, &str, f64)],
    tables: impl Fn(&str) -> Vec<(String, String, String)>,
    survey: &str,
) -> PathBuf {
    let fx = repo().join("tests/fixtures/survey_designs");
    let mut spec = format!(
        "version = 1\nid = \"fixture-survey-designs\"\nreference_date = 2024-12-31\nreference_period = \"2024\"\ncodelists = \"{}\"\n[defaults]\nmax_invalid_fraction = 0.0\n",
        repo().join("schemas/codelists").display()
    );
    for (name, design, _) in designs {
        spec += &format!(
            "\n[sources.{name}]\npath = \"{survey}\"\nformat = \"csv\"\nschema = \"{fx}/survey.schema.json\"\nrecord_id = \"id\"\n\
             [sources.{name}.design]\n{weight}{design}\n\
             [sources.{name}.harmonize]\nSEX = {{ from = \"sex\", crosswalk = \"{sex}\", codelist = \"sex\" }}\nGRP = {{ from = \"grp\", crosswalk = \"{fx}/grp.csv\" }}\nSTRATUM = {{ from = \"stratum\", crosswalk = \"{fx}/stratum.csv\" }}\n",
            fx = fx.display(),
            sex = repo().join("schemas/crosswalks/sex.csv").display(),
            // A design written `# no weight` takes R's weights from its FPCs.
            weight = if design.starts_with("# no weight") {
                ""
            } else {
                "weight = \"weight\"\n"
            }
        );
        for (table, kind, dims) in tables(name) {
            spec += &format!(
                "\n[tables.{name}-{table}]\nsource = \"{name}\"\nunit = \"persons\"\n{kind}\ndimensions = {dims}\n"
            );
        }
    }
    let path = dir.join("designs.toml");
    std::fs::write(&path, spec).unwrap();
    path
}

#[test]
fn every_design_and_estimator_matches_r_survey() {
    let tmp = tempfile::tempdir().unwrap();
    let plan = migstat::spec::compile(&designs_spec(tmp.path(), DESIGNS)).expect("spec compiles");
    let root = tmp.path().join("out");
    crate::run_plan(&plan, &root);
    designs_match_r(&root.join("current"));
}

#[test]
fn a_survey_delivered_as_several_files_gives_r_s_estimates_whichever_engine_sums_it() {
    // Each file's sums are made on their own and merged in file order (what a cluster's
    // executors do): strata, PSUs, SSUs and codes first seen in one file and met again in the
    // next are the same units and cells, and the replicate designs' sums add up.
    let tmp = tempfile::tempdir().unwrap();
    let survey = survey_in_three_files(tmp.path());
    let tables: Vec<(String, String, String)> = DESIGN_TABLES
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    let spec = designs_spec_at(tmp.path(), DESIGNS, |_| tables.clone(), &survey);
    let plan = migstat::spec::compile(&spec).expect("spec compiles");
    assert_eq!(plan.sources[0].files.len(), 3);
    let root = tmp.path().join("out");
    let m = crate::run_plan(&plan, &root);
    assert!(m.rejections.is_empty(), "{:?}", m.rejections);
    designs_match_r(&root.join("current"));
    // Summed after the pass, part by part (the reference a cluster is tested against): the
    // same bits as summed while the files were read.
    let after = tmp.path().join("out-after");
    let m2 = migstat::runner::run(
        &plan,
        &migstat::runner::RunOptions {
            out_dir: after.clone(),
            engine: Some(migstat::engine::from_name("local-after-pass").unwrap()),
            ..Default::default()
        },
    )
    .expect("the pipeline runs");
    let files = |m: &migstat::runner::Manifest| -> Vec<(String, String)> {
        m.outputs
            .iter()
            .map(|f| (f.path.clone(), f.blake3.clone()))
            .collect()
    };
    assert!(files(&m).len() > 2 * DESIGNS.len() * DESIGN_TABLES.len());
    assert_eq!(files(&m), files(&m2));
}

/// Check the tables of [`DESIGNS`] × [`DESIGN_TABLES`] in release `out` against R's.
fn designs_match_r(out: &Path) {
    // R: design,table,SEX,GRP,STRATUM,estimate,se,ci_low_t,ci_high_t,df,deff
    let mut rdr = csv::Reader::from_path(repo().join("tests/golden/survey_designs_r.csv")).unwrap();
    let mut expected: BTreeMap<(String, String), Vec<csv::StringRecord>> = BTreeMap::new();
    for rec in rdr.records() {
        let rec = rec.unwrap();
        expected
            .entry((rec[0].to_string(), rec[1].to_string()))
            .or_default()
            .push(rec);
    }
    assert_eq!(expected.len(), DESIGNS.len() * DESIGN_TABLES.len());
    let finite = |s: &str| s.parse::<f64>().ok().filter(|v| v.is_finite());
    let mut worst = (0.0f64, 0.0f64, 0.0f64);
    for ((design, table), rows) in &expected {
        let level = DESIGNS.iter().find(|d| d.0 == design).unwrap().2;
        let z = if level == 0.95 {
            1.959_963_984_540_054
        } else {
            1.644_853_626_951_472_2 // qnorm(0.95)
        };
        let df = read_parquet(&out.join(format!(
            "restricted/tables/{design}-{table}/2024/data.parquet"
        )));
        assert_eq!(
            df.height(),
            rows.len(),
            "{design}-{table}: the cells of svyby"
        );
        let f = |c: &str| df.column(c).unwrap().f64().unwrap().clone();
        // The cell's codes: a dimension the table lacks is NA in R's rows.
        let dims: Vec<(usize, Option<StringChunked>)> = ["SEX", "GRP", "STRATUM"]
            .iter()
            .enumerate()
            .map(|(k, c)| (2 + k, df.column(c).ok().map(|c| c.str().unwrap().clone())))
            .collect();
        let (est, se, deff) = (f("estimate"), f("se"), f("deff"));
        let (lo, hi, lo_t, hi_t) = (f("ci_low"), f("ci_high"), f("ci_low_t"), f("ci_high_t"));
        let dfree = df.column("df").unwrap().counts().clone();
        for r in rows {
            let i = (0..df.height())
                .find(|&i| {
                    dims.iter().all(|(k, col)| match col {
                        Some(c) => c.get(i) == Some(&r[*k]),
                        None => &r[*k] == "NA",
                    })
                })
                .unwrap_or_else(|| panic!("{design}-{table}: no cell {:?}", &r));
            let at = format!(
                "{design}-{table} SEX={} GRP={} STRATUM={}",
                &r[2], &r[3], &r[4]
            );
            let re = finite(&r[5]).unwrap();
            let Some(rse) = finite(&r[6]) else {
                // R has no variance (a domain all of whose strata are lonely, under
                // "average"): nor has migstat.
                assert!(
                    se.get(i).is_none() && lo_t.get(i).is_none(),
                    "{at}: R's SE is {}",
                    &r[6]
                );
                continue;
            };
            let (e, s) = (est.get(i).unwrap(), se.get(i).unwrap());
            let rel_e = (e - re).abs() / re.abs().max(1e-300);
            assert!(rel_e < 1e-9, "{at}: estimate {e} vs R {re}");
            let rel_s = if rse > 0.0 {
                (s - rse).abs() / rse
            } else if re == 0.0 {
                s.abs() // a share of 0: R's SE is 0
            } else {
                s.abs() / re.abs()
            };
            assert!(rel_s < 1e-6, "{at}: se {s} vs R {rse}");
            let tol = 1e-6 * rse + 1e-9 * re.abs();
            let (rlo, rhi) = (finite(&r[7]).unwrap(), finite(&r[8]).unwrap());
            assert!(
                (lo_t.get(i).unwrap() - rlo).abs() <= tol
                    && (hi_t.get(i).unwrap() - rhi).abs() <= tol,
                "{at}: t interval ({:?}, {:?}) vs R ({rlo}, {rhi})",
                lo_t.get(i),
                hi_t.get(i)
            );
            assert!(
                (lo.get(i).unwrap() - (re - z * rse)).abs() <= tol
                    && (hi.get(i).unwrap() - (re + z * rse)).abs() <= tol,
                "{at}: normal interval"
            );
            assert_eq!(dfree.get(i), r[9].parse().ok(), "{at}: degrees of freedom");
            match (deff.get(i), finite(&r[10])) {
                (Some(a), Some(b)) => {
                    let rel = if b == 0.0 {
                        a.abs()
                    } else {
                        (a - b).abs() / b.abs()
                    };
                    assert!(rel < 1e-6, "{at}: deff {a} vs R {b}");
                    worst.2 = worst.2.max(rel);
                }
                (None, None) => {}
                // The SRS variance of a constant (the population, y = 1) is 0: no design effect.
                // R divides by its rounding noise instead (deff ~1e32).
                (None, Some(b)) if table == "population" && b.abs() > 1e12 => {}
                // R has no design effect for ratios under replicate weights; ours is the same
                // formula as for the other estimators.
                (Some(_), None) if table == "ratio_y_x" && r[10].eq("NA") => {}
                (a, _) => panic!("{at}: deff {a:?} vs R {}", &r[10]),
            }
            worst.0 = worst.0.max(rel_e);
            worst.1 = worst.1.max(rel_s);
        }
    }
    eprintln!(
        "largest relative differences from R: estimates {:e}, SEs {:e}, design effects {:e}",
        worst.0, worst.1, worst.2
    );
}

#[test]
fn share_intervals_match_every_svyciprop_method() {
    // R: design,method,df_mode,SEX,GRP,estimate,ci_low,ci_high,df (tests/r/survey_designs.R).
    let mut rdr = csv::Reader::from_path(repo().join("tests/golden/survey_ciprop_r.csv")).unwrap();
    let rows: Vec<csv::StringRecord> = rdr.records().map(|r| r.unwrap()).collect();
    let combos: BTreeSet<(String, String, String)> = rows
        .iter()
        .map(|r| (r[0].to_string(), r[1].to_string(), r[2].to_string()))
        .collect();
    // Every method on every design (likelihood on linearized ones), both df choices.
    // Replicate designs also by stratum ("stratum": small domains, their own rank).
    assert_eq!(combos.len(), 13 * 6 * 2 + 2 * 5 * 2 + 2 * 2, "{combos:?}");
    let tmp = tempfile::tempdir().unwrap();
    let spec = designs_spec_with(tmp.path(), DESIGNS, |design| {
        combos
            .iter()
            .filter(|c| c.0 == design)
            .map(|(_, m, d)| {
                let (df, dims) = match d.as_str() {
                    "stratum" => ("domain", r#"["GRP", "STRATUM"]"#),
                    d => (d, r#"["GRP", "SEX"]"#),
                };
                (
                    format!("share-{m}-{d}"),
                    format!(
                        "kind = \"survey_proportion\"\ncategory = \"GRP\"\ninterval = \"{m}\"\ninterval_df = \"{df}\""
                    ),
                    dims.to_string(),
                )
            })
            .collect()
    });
    let plan = migstat::spec::compile(&spec).expect("spec compiles");
    let root = tmp.path().join("out");
    crate::run_plan(&plan, &root);
    let out = root.join("current");
    let mut worst: BTreeMap<String, f64> = BTreeMap::new();
    let mut frames: BTreeMap<String, DataFrame> = BTreeMap::new();
    for r in &rows {
        let (design, method, mode) = (&r[0], &r[1], &r[2]);
        let table = format!("{design}-share-{method}-{mode}");
        let df = frames.entry(table.clone()).or_insert_with(|| {
            read_parquet(&out.join(format!("restricted/tables/{table}/2024/data.parquet")))
        });
        let s = |c: &str| df.column(c).unwrap().str().unwrap().clone();
        let f = |c: &str| df.column(c).unwrap().f64().unwrap().clone();
        let (sex, grp) = (
            s(if mode == "stratum" { "STRATUM" } else { "SEX" }),
            s("GRP"),
        );
        let i = (0..df.height())
            .find(|&i| sex.get(i) == Some(&r[3]) && grp.get(i) == Some(&r[4]))
            .unwrap_or_else(|| panic!("{table}: no cell {} {}", &r[3], &r[4]));
        let at = format!("{table} SEX={} GRP={}", &r[3], &r[4]);
        let num = |k: usize| r[k].parse::<f64>().unwrap();
        let (rlo, rhi) = (num(6), num(7));
        let (lo, hi) = (
            f("ci_low_t").get(i).unwrap_or(f64::NAN),
            f("ci_high_t").get(i).unwrap_or(f64::NAN),
        );
        if rlo.is_nan() || rhi.is_nan() {
            // R's interval is not a number (a share of 0 or 1 under a transform): null here.
            assert!(lo.is_nan() && hi.is_nan(), "{at}: ({lo}, {hi}) vs R NaN");
            continue;
        }
        // Relative, but bounds at 0 to rounding (a domain with 1 df) compare absolutely.
        let rel = ((lo - rlo).abs() / rlo.abs().max(1e-6)).max((hi - rhi).abs() / rhi.abs());
        // R fits the logit by IRLS (glm's convergence at 1e-8 in deviance): 1e-6 there. The
        // likelihood interval follows R's iterations and profile grid, so it agrees as closely
        // as the closed forms do.
        let tol = if method == "logit" { 1e-6 } else { 1e-9 };
        assert!(
            rel < tol,
            "{at}: ({lo}, {hi}) vs R ({rlo}, {rhi}), relative {rel:e}"
        );
        assert!((0.0..=1.0).contains(&lo) && (0.0..=1.0).contains(&hi) || method == "mean");
        let dfree = df.column("df").unwrap().counts().get(i);
        assert_eq!(dfree, r[8].parse().ok(), "{at}: degrees of freedom");
        let w = worst.entry(method.to_string()).or_default();
        *w = w.max(rel);
    }
    eprintln!("largest relative differences from R's svyciprop intervals: {worst:?}");
}

/// A published quantile table against R's values for the same cells: estimate, SE, t and
/// normal intervals (a null here where R's is NaN) and degrees of freedom.
fn compare_quantiles(df: &DataFrame, table: &str, dims: &[&str], rows: &[Vec<String>]) -> usize {
    let cols: Vec<StringChunked> = dims
        .iter()
        .map(|d| df.column(d).unwrap().str().unwrap().clone())
        .collect();
    let nd = dims.len();
    let mut compared = 0;
    for r in rows {
        let i = (0..df.height())
            .find(|&i| (0..nd).all(|j| cols[j].get(i) == Some(r[j].as_str())))
            .unwrap_or_else(|| panic!("{table}: no cell {:?}", &r[..nd]));
        let at = format!("{table} {:?}", &r[..nd]);
        // The quantile at the cell's largest value: the share at or below it is 1, whose logit
        // or arcsine interval is NaN in R (null here) — or, where R's sum rounds the share to
        // 1 − ε, an interval of width 0 (SE 0). That rounding is not reproducible: such a cell
        // is checked for its estimate only.
        let degenerate =
            r[nd + 1] == "0" && df.column("se").unwrap().f64().unwrap().get(i).is_none();
        for (k, col) in [
            "estimate",
            "se",
            "ci_low_t",
            "ci_high_t",
            "ci_low",
            "ci_high",
        ]
        .iter()
        .enumerate()
        {
            if degenerate && k > 0 {
                continue;
            }
            // R's NA: no bound (its score test found no root).
            let want: f64 = match r[nd + k].as_str() {
                "NA" => f64::NAN,
                v => v.parse().unwrap(),
            };
            match df.column(col).unwrap().f64().unwrap().get(i) {
                None => assert!(want.is_nan(), "{at} {col}: null here, R {want}"),
                Some(g) => {
                    assert!(!want.is_nan(), "{at} {col}: {g} here, R NaN");
                    let rel = (g - want).abs() / want.abs().max(1e-300);
                    assert!(
                        rel < 1e-9 || (g - want).abs() < 1e-12,
                        "{at} {col}: {g} vs R {want} (relative {rel:e})"
                    );
                    compared += 1;
                }
            }
        }
        let dfree = df.column("df").unwrap().counts().get(i);
        assert_eq!(dfree, r[nd + 6].parse().ok(), "{at}: degrees of freedom");
    }
    compared
}

#[test]
fn default_median_age_matches_svyquantile() {
    let (_, out, _) = crate::shared_default_run();
    let df = read_parquet(&out.join("restricted/tables/survey_median_age/2018/data.parquet"));
    let mut rdr =
        csv::Reader::from_path(repo().join("tests/golden/survey_median_age_r.csv")).unwrap();
    let rows: Vec<Vec<String>> = rdr
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect();
    assert_eq!(
        df.height(),
        rows.len(),
        "the cells of svyby over every margin"
    );
    let n = compare_quantiles(
        &df,
        "survey_median_age",
        &["SEX", "MIGRATION_TYPE", "REGION"],
        &rows,
    );
    assert!(n > 500, "{n} values compared");
}

#[test]
fn a_contrast_is_published_only_where_its_terms_are() {
    // survey_mean_age_gap = survey_mean_age(F) − survey_mean_age(M) in each MIGRATION_TYPE ×
    // REGION cell: published exactly where both terms are, and then equal to their difference.
    let (_, out, _) = crate::shared_default_run();
    let public = |t: &str| read_parquet(&out.join(format!("public/tables/{t}/2018/data.parquet")));
    let (gap, mean) = (public("survey_mean_age_gap"), public("survey_mean_age"));
    let s = |df: &DataFrame, c: &str| df.column(c).unwrap().str().unwrap().clone();
    let (mt, rg, sx) = (
        s(&mean, "MIGRATION_TYPE"),
        s(&mean, "REGION"),
        s(&mean, "SEX"),
    );
    let est = mean.column("estimate").unwrap().f64().unwrap().clone();
    let term = |m: &str, r: &str, x: &str| {
        let i = (0..mean.height())
            .find(|&i| mt.get(i) == Some(m) && rg.get(i) == Some(r) && sx.get(i) == Some(x))
            .unwrap();
        est.get(i)
    };
    let (gm, gr) = (s(&gap, "MIGRATION_TYPE"), s(&gap, "REGION"));
    let gest = gap.column("estimate").unwrap().f64().unwrap().clone();
    let conf = s(&gap, "CONF_STATUS");
    let conf = &conf;
    let (mut published, mut withheld) = (0, 0);
    for i in 0..gap.height() {
        let (m, r) = (gm.get(i).unwrap(), gr.get(i).unwrap());
        match (term(m, r, "F"), term(m, r, "M"), gest.get(i)) {
            (Some(f), Some(mm), Some(g)) => {
                assert!((g - (f - mm)).abs() < 1e-9, "{m} {r}: {g} vs {f} − {mm}");
                published += 1;
            }
            (f, mm, None) => {
                // Withheld only for a withheld term (its CV is the largest term's, so it is
                // unreliable only where a term is).
                assert!(
                    f.is_none() || mm.is_none(),
                    "{m} {r}: gap withheld though both terms are published"
                );
                assert_eq!(conf.get(i), Some("C"), "{m} {r}");
                withheld += 1;
            }
            (f, mm, Some(g)) => {
                panic!("{m} {r}: gap {g} published with a withheld term ({f:?}, {mm:?})")
            }
        }
    }
    assert!(
        published > 0 && withheld > 0,
        "{published} published, {withheld} withheld"
    );
}

#[test]
fn quantiles_match_svyquantile() {
    quantiles_match(false);
}

#[test]
fn quantiles_of_a_survey_delivered_as_several_files_match_svyquantile() {
    // The record order that breaks ties runs on from one file to the next.
    quantiles_match(true);
}

/// The quantiles of tests/r/survey_designs.R against R's, the survey in one file or three.
fn quantiles_match(split: bool) {
    // R: design,table,SEX,GRP,estimate,se,ci_low_t,ci_high_t,ci_low,ci_high,df, the table named
    // q-<var>-<rule>-<interval>-<100·p>-<df> (tests/r/survey_designs.R `quantiles`).
    let mut rdr =
        csv::Reader::from_path(repo().join("tests/golden/survey_quantile_r.csv")).unwrap();
    let rows: Vec<csv::StringRecord> = rdr.records().map(|r| r.unwrap()).collect();
    let fx = repo().join("tests/fixtures/survey_designs");
    let margins = format!(
        "margins = [{{ by = [\"SEX\"], totals = \"{fx}/margin_sex.csv\" }}, {{ by = [\"GRP\"], totals = \"{fx}/margin_grp.csv\" }}]",
        fx = fx.display()
    );
    let mut designs: Vec<(String, String, f64)> = DESIGNS
        .iter()
        .filter(|d| rows.iter().any(|r| &r[0] == d.0))
        .map(|(a, b, c)| (a.to_string(), b.to_string(), *c))
        .collect();
    for (name, base, cal) in [
        ("strat_clus_rak", "strat_clus", "method = \"raking\""),
        (
            "two_stage_fpc_lin_b",
            "two_stage_fpc",
            "method = \"linear\"\nbounds = [0.9, 1.3]",
        ),
    ] {
        let body = DESIGNS.iter().find(|x| x.0 == base).unwrap().1;
        designs.push((
            name.to_string(),
            format!("{body}\n[sources.{name}.design.calibration]\n{cal}\n{margins}"),
            0.95,
        ));
    }
    assert_eq!(designs.len(), 13, "every design of the golden file");
    let refs: Vec<(&str, &str, f64)> = designs
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), *c))
        .collect();
    let tables: BTreeSet<(String, String)> = rows
        .iter()
        .map(|r| (r[0].to_string(), r[1].to_string()))
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let survey = match split {
        true => survey_in_three_files(tmp.path()),
        false => repo()
            .join("tests/fixtures/survey_designs/survey.csv")
            .display()
            .to_string(),
    };
    let spec = designs_spec_at(
        tmp.path(),
        &refs,
        |design| {
            tables
            .iter()
            .filter(|t| t.0 == design)
            .map(|(_, name)| {
                let parts: Vec<&str> = name.split('-').collect();
                let p: f64 = parts[4].parse::<f64>().unwrap() / 100.0;
                (
                    name.clone(),
                    format!(
                        "kind = \"survey_quantile\"\nvariable = \"{}\"\nrule = \"{}\"\ninterval = \"{}\"\nquantile = {p}\ninterval_df = \"{}\"",
                        parts[1], parts[2], parts[3], parts[5]
                    ),
                    r#"["SEX", "GRP"]"#.to_string(),
                )
            })
            .collect()
        },
        &survey,
    );
    let plan = migstat::spec::compile(&spec).expect("spec compiles");
    let root = tmp.path().join("out");
    let m = crate::run_plan(&plan, &root);
    assert!(m.rejections.is_empty(), "{:?}", m.rejections);
    let out = root.join("current");
    let mut frames: BTreeMap<String, DataFrame> = BTreeMap::new();
    let mut compared = 0;
    for r in &rows {
        let table = format!("{}-{}", &r[0], &r[1]);
        let df = frames.entry(table.clone()).or_insert_with(|| {
            read_parquet(&out.join(format!("restricted/tables/{table}/2024/data.parquet")))
        });
        let cell: Vec<String> = r.iter().skip(2).map(str::to_string).collect();
        compared += compare_quantiles(df, &table, &["SEX", "GRP"], &[cell]);
    }
    eprintln!("{compared} quantile values agree with svyquantile");
    assert!(compared > 15_000, "{compared} values compared");
}

#[test]
fn contrasts_match_svycontrast() {
    // R: design,table,SEX,GRP,estimate,se (tests/r/survey_designs.R `contrasts`); the cell is
    // SEX or GRP, the other dimension being the one contrasted across.
    let mut rdr =
        csv::Reader::from_path(repo().join("tests/golden/survey_contrast_r.csv")).unwrap();
    let rows: Vec<csv::StringRecord> = rdr.records().map(|r| r.unwrap()).collect();
    let fx = repo().join("tests/fixtures/survey_designs");
    let mut designs: Vec<(String, String, f64)> = DESIGNS
        .iter()
        .filter(|d| rows.iter().any(|r| &r[0] == d.0))
        .map(|(a, b, c)| (a.to_string(), b.to_string(), *c))
        .collect();
    assert_eq!(designs.len(), 9, "every design of the golden file");
    // R cannot give the covariances of a calibrated design's svyby (4.1): there a contrast of
    // one term must reproduce the base table's cell.
    let strat_clus = DESIGNS.iter().find(|x| x.0 == "strat_clus").unwrap().1;
    designs.push((
        "strat_clus_rak".to_string(),
        format!(
            "{strat_clus}\n[sources.strat_clus_rak.design.calibration]\nmethod = \"raking\"\nmargins = [{{ by = [\"SEX\"], totals = \"{fx}/margin_sex.csv\" }}, {{ by = [\"GRP\"], totals = \"{fx}/margin_grp.csv\" }}]",
            fx = fx.display()
        ),
        0.95,
    ));
    let refs: Vec<(&str, &str, f64)> = designs
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), *c))
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let spec = designs_spec_with(tmp.path(), &refs, |design| {
        let t = |name: &str, body: String, dims: &str| (name.to_string(), body, dims.to_string());
        let contrast = |of: &str, across: &str, how: &str| {
            format!(
                "kind = \"survey_contrast\"\nof = \"{design}-{of}\"\nacross = \"{across}\"\n{how}"
            )
        };
        vec![
            t(
                "mean_x",
                "kind = \"survey_mean\"\nvariable = \"x\"".into(),
                r#"["SEX", "GRP"]"#,
            ),
            t(
                "total_x",
                "kind = \"survey_total\"\nvariable = \"x\"".into(),
                r#"["GRP", "SEX"]"#,
            ),
            t(
                "share_grp",
                "kind = \"survey_proportion\"\ncategory = \"GRP\"".into(),
                r#"["GRP", "SEX"]"#,
            ),
            t(
                "c_mean_sex",
                contrast("mean_x", "SEX", "coefficients = { F = 1, M = -1 }"),
                r#"["GRP"]"#,
            ),
            t(
                "c_mean_ratio",
                contrast("mean_x", "SEX", "ratio = [\"F\", \"M\"]"),
                r#"["GRP"]"#,
            ),
            t(
                "c_total_grp",
                contrast(
                    "total_x",
                    "GRP",
                    "coefficients = { A = 1, B = -0.5, C = -0.5 }",
                ),
                r#"["SEX"]"#,
            ),
            t(
                "c_share_sex",
                contrast("share_grp", "SEX", "coefficients = { F = 1, M = -1 }"),
                r#"["GRP"]"#,
            ),
            t(
                "c_share_grp",
                contrast("share_grp", "GRP", "coefficients = { A = 1, B = -1 }"),
                r#"["SEX"]"#,
            ),
            t(
                "c_mean_f",
                contrast("mean_x", "SEX", "coefficients = { F = 1 }"),
                r#"["GRP"]"#,
            ),
        ]
    });
    let plan = migstat::spec::compile(&spec).expect("spec compiles");
    let root = tmp.path().join("out");
    let m = crate::run_plan(&plan, &root);
    assert!(m.rejections.is_empty(), "{:?}", m.rejections);
    let out = root.join("current");
    let read = |table: &str| {
        read_parquet(&out.join(format!("restricted/tables/{table}/2024/data.parquet")))
    };
    let value = |df: &DataFrame, dim: &str, code: &str, col: &str| -> f64 {
        let c = df.column(dim).unwrap().str().unwrap().clone();
        let i = (0..df.height())
            .find(|&i| c.get(i) == Some(code))
            .unwrap_or_else(|| panic!("no cell {dim}={code}"));
        df.column(col).unwrap().f64().unwrap().get(i).unwrap()
    };
    let mut worst = 0.0f64;
    for r in &rows {
        let table = format!("{}-{}", &r[0], &r[1]);
        let df = read(&table);
        let (dim, code) = if r[2].is_empty() {
            ("GRP", &r[3])
        } else {
            ("SEX", &r[2])
        };
        for (k, col) in [(4, "estimate"), (5, "se")] {
            let want: f64 = r[k].parse().unwrap();
            let got = value(&df, dim, code, col);
            let rel = (got - want).abs() / want.abs();
            assert!(
                rel < 1e-9,
                "{table} {dim}={code} {col}: {got} vs R {want} ({rel:e})"
            );
            worst = worst.max(rel);
        }
        // The Wald interval with the design's df.
        let (est, se) = (
            value(&df, dim, code, "estimate"),
            value(&df, dim, code, "se"),
        );
        let z = 1.959_963_984_540_054;
        assert!(
            (value(&df, dim, code, "ci_low") - (est - z * se)).abs() < 1e-9 * est.abs().max(1.0)
        );
    }
    // One term: the base table's own cell, on every design (calibrated included) but
    // "average" lonely PSUs, where R scales a covariance by the strata of the whole design and
    // a domain's own variance by the domain's (as the golden values above show).
    for (design, _, _) in designs.iter().filter(|d| d.0 != "lonely_average") {
        let base = read(&format!("{design}-mean_x"));
        let one = read(&format!("{design}-c_mean_f"));
        let sex = base.column("SEX").unwrap().str().unwrap().clone();
        let grp = base.column("GRP").unwrap().str().unwrap().clone();
        for g in ["A", "B", "C", "_T"] {
            let i = (0..base.height())
                .find(|&i| sex.get(i) == Some("F") && grp.get(i) == Some(g))
                .unwrap();
            for col in ["estimate", "se", "cv"] {
                let want = base.column(col).unwrap().f64().unwrap().get(i).unwrap();
                let got = value(&one, "GRP", g, col);
                assert!(
                    (got - want).abs() <= 1e-12 * want.abs(),
                    "{design} F,{g} {col}: {got} vs the base table's {want}"
                );
            }
        }
    }
    eprintln!(
        "{} contrasts agree with svycontrast (largest relative difference {worst:e})",
        rows.len()
    );
}

/// The calibrations of tests/r/survey_designs.R (`calibrated`): name, `[…design.calibration]`
/// body with `{fx}` for the fixture directory, and whether R iterates.
/// The row of `df` holding the cell of an R golden row whose columns 2..5 are SEX, GRP and
/// STRATUM (`NA` where the table lacks that dimension).
fn golden_cell(df: &DataFrame, table: &str, r: &csv::StringRecord) -> usize {
    let dims: Vec<(usize, Option<StringChunked>)> = ["SEX", "GRP", "STRATUM"]
        .iter()
        .enumerate()
        .map(|(k, c)| (2 + k, df.column(c).ok().map(|c| c.str().unwrap().clone())))
        .collect();
    (0..df.height())
        .find(|&i| {
            dims.iter().all(|(k, col)| match col {
                Some(c) => c.get(i) == Some(&r[*k]),
                None => &r[*k] == "NA",
            })
        })
        .unwrap_or_else(|| panic!("{table}: no cell {:?}", r))
}

const CALIBRATIONS: &[(&str, &str, bool)] = &[
    (
        "ps",
        r#"method = "poststratify"
margins = [{ by = ["SEX", "GRP"], totals = "{fx}/margin_sex_grp.csv" }]"#,
        false,
    ),
    ("lin", "method = \"linear\"\n{margins}", false),
    (
        "lin_b",
        "method = \"linear\"\nbounds = [0.9, 1.3]\n{margins}",
        true,
    ),
    ("rak", "method = \"raking\"\n{margins}", true),
    (
        "rak_b",
        "method = \"raking\"\nbounds = [0.9, 1.3]\n{margins}",
        true,
    ),
    (
        "rak_trim",
        "method = \"raking\"\ntrim = [0.95, 1.2]\n{margins}",
        true,
    ),
    (
        "logit",
        "method = \"logit\"\nbounds = [0.8, 1.5]\n{margins}",
        true,
    ),
    ("ipf", "method = \"ipf\"\n{margins}", true),
    (
        "ipf_tight",
        "method = \"ipf\"\nepsilon = 1e-12\n{margins}",
        true,
    ),
    (
        "ipf_2",
        "method = \"ipf\"\nepsilon = 1e-12\nmax_iterations = 2\n{margins}",
        true,
    ),
];

#[test]
fn calibrated_designs_match_r_survey() {
    let fx = repo().join("tests/fixtures/survey_designs");
    let margins = format!(
        "margins = [{{ by = [\"SEX\"], totals = \"{fx}/margin_sex.csv\" }}, {{ by = [\"GRP\"], totals = \"{fx}/margin_grp.csv\" }}]",
        fx = fx.display()
    );
    let names = [
        "strat",
        "strat_fpc",
        "clus",
        "strat_clus",
        "two_stage_fpc",
        "lonely_adjust",
        "lonely_average",
        "jk1",
        "boot",
    ];
    let mut designs: Vec<(String, String, f64)> = Vec::new();
    for d in names {
        let (_, body, level) = DESIGNS.iter().find(|x| x.0 == d).unwrap();
        for (c, cal, _) in CALIBRATIONS {
            // Bounds no replicate meets (tests/r/survey_designs.R): tested apart.
            if ["jk1", "boot"].contains(&d) && ["lin_b", "rak_b", "logit"].contains(c) {
                continue;
            }
            let name = format!("{d}_{c}");
            let cal = cal
                .replace("{margins}", &margins)
                .replace("{fx}", &fx.display().to_string());
            designs.push((
                name.clone(),
                format!("{body}\n[sources.{name}.design.calibration]\n{cal}"),
                *level,
            ));
        }
    }
    let refs: Vec<(&str, &str, f64)> = designs
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), *c))
        .collect();
    let tables = vec![
        (
            "population".to_string(),
            "kind = \"survey_total\"".to_string(),
            r#"["STRATUM"]"#.to_string(),
        ),
        (
            "total_y".to_string(),
            "kind = \"survey_total\"\nvariable = \"y\"".to_string(),
            r#"["SEX", "GRP"]"#.to_string(),
        ),
        (
            "mean_y".to_string(),
            "kind = \"survey_mean\"\nvariable = \"y\"".to_string(),
            r#"["SEX", "GRP"]"#.to_string(),
        ),
        (
            "share_grp_stratum".to_string(),
            "kind = \"survey_proportion\"\ncategory = \"GRP\"".to_string(),
            r#"["GRP", "STRATUM"]"#.to_string(),
        ),
    ];
    // The profile-likelihood interval of shares, each stratum its own domain (R's is NA on
    // replicate designs, where migstat refuses it).
    let lik = (
        "share_grp_stratum_lik".to_string(),
        "kind = \"survey_proportion\"\ncategory = \"GRP\"\ninterval = \"likelihood\"\ninterval_df = \"domain\"".to_string(),
        r#"["GRP", "STRATUM"]"#.to_string(),
    );
    let tmp = tempfile::tempdir().unwrap();
    let spec = designs_spec_with(tmp.path(), &refs, |design| {
        let mut t = tables.clone();
        if !design.starts_with("jk1") && !design.starts_with("boot") {
            t.push(lik.clone());
        }
        t
    });
    let plan = migstat::spec::compile(&spec).expect("spec compiles");
    let root = tmp.path().join("out");
    let m = crate::run_plan(&plan, &root);
    assert!(m.rejections.is_empty(), "{:?}", m.rejections);
    let out = root.join("current");

    // g of each class, against R's weights(calibrated) / weights(design).
    let mut rdr =
        csv::Reader::from_path(repo().join("tests/golden/survey_calibration_g_r.csv")).unwrap();
    let mut worst_g = 0.0f64;
    for r in rdr.records() {
        let r = r.unwrap();
        let df = read_parquet(&out.join(format!("restricted/calibration/{}.parquet", &r[0])));
        let (sex, grp) = (
            df.column("SEX").unwrap().str().unwrap().clone(),
            df.column("GRP").unwrap().str().unwrap().clone(),
        );
        let i = (0..df.height())
            .find(|&i| sex.get(i) == Some(&r[1]) && grp.get(i) == Some(&r[2]))
            .unwrap_or_else(|| panic!("{}: no class {} {}", &r[0], &r[1], &r[2]));
        let g = df.column("g").unwrap().f64().unwrap().get(i).unwrap();
        let rg: f64 = r[3].parse().unwrap();
        let rel = (g - rg).abs() / rg;
        assert!(
            rel < 1e-9,
            "{}: g of {} {}: {g} vs R {rg}",
            &r[0],
            &r[1],
            &r[2]
        );
        worst_g = worst_g.max(rel);
    }

    // Estimates, SEs and intervals of every table.
    let mut rdr =
        csv::Reader::from_path(repo().join("tests/golden/survey_calibrated_r.csv")).unwrap();
    let mut frames: BTreeMap<String, DataFrame> = BTreeMap::new();
    let (mut worst_e, mut worst_s, mut worst_lik) = (0.0f64, 0.0f64, 0.0f64);
    let (mut n, mut n_lik) = (0, 0);
    for r in rdr.records() {
        let r = r.unwrap();
        let table = format!("{}-{}", &r[0], &r[1]);
        let df = frames.entry(table.clone()).or_insert_with(|| {
            read_parquet(&out.join(format!("restricted/tables/{table}/2024/data.parquet")))
        });
        let i = golden_cell(df, &table, &r);
        let at = format!("{table} {:?}", &r);
        let f = |c: &str| df.column(c).unwrap().f64().unwrap().get(i);
        let num = |k: usize| r[k].parse::<f64>().unwrap();
        let (re, rse) = (num(5), num(6));
        let e = f("estimate").unwrap();
        let rel_e = if re == 0.0 {
            e.abs()
        } else {
            (e - re).abs() / re.abs()
        };
        assert!(rel_e < 1e-9, "{at}: estimate {e} vs R {re}");
        if rse.is_nan() {
            assert!(f("se").is_none(), "{at}: R has no SE");
            continue;
        }
        let s = f("se").unwrap();
        // A calibrated total (the population) has no variance: both are rounding noise.
        let noise = 1e-9 * re.abs();
        let rel_s = if rse <= noise {
            if s <= noise { 0.0 } else { f64::INFINITY }
        } else {
            (s - rse).abs() / rse
        };
        assert!(rel_s < 1e-7, "{at}: se {s} vs R {rse}");
        let tol = 1e-7 * rse + 1e-9 * re.abs();
        if &r[7] == "NA" || r[1].ends_with("_lik") && rse <= noise {
            // R's profile-likelihood interval fails, or is rounding noise, where the profile
            // is flat (a share the calibration fixes, SE 0): no bounds here.
            assert!(
                f("ci_low_t").is_none() && f("ci_high_t").is_none(),
                "{at}: R has no interval"
            );
            continue;
        }
        let (lo, hi) = (
            f("ci_low_t").unwrap_or(f64::NAN),
            f("ci_high_t").unwrap_or(f64::NAN),
        );
        assert!(
            (lo - num(7)).abs() <= tol && (hi - num(8)).abs() <= tol,
            "{at}: t interval ({lo}, {hi})"
        );
        let dfree = df.column("df").unwrap().counts().get(i);
        assert_eq!(dfree, r[9].parse().ok(), "{at}: degrees of freedom");
        if r[1].ends_with("_lik") {
            let rel = ((lo - num(7)).abs() / num(7)).max((hi - num(8)).abs() / num(8));
            worst_lik = worst_lik.max(rel);
            n_lik += 1;
        }
        worst_e = worst_e.max(rel_e);
        worst_s = worst_s.max(rel_s);
        n += 1;
    }
    assert!(n > 2000, "{n} cells compared");
    assert!(n_lik > 400, "{n_lik} likelihood intervals compared");
    eprintln!(
        "calibrated designs against R: {n} cells; largest relative differences: g {worst_g:e}, estimates {worst_e:e}, SEs {worst_s:e}; {n_lik} likelihood intervals {worst_lik:e}"
    );
}

#[test]
fn the_default_survey_is_raked_to_its_census_margins_but_not_its_emigrants() {
    // restricted/calibration/survey.parquet: one row per class (SEX × AGE_GROUP × REGION of the
    // residents; `_Z` for the emigrants abroad, outside the census population).
    let (_, out, _) = crate::shared_default_run();
    let cal = read_parquet(&out.join("restricted/calibration/survey.parquet"));
    let s = |c: &str| cal.column(c).unwrap().str().unwrap().clone();
    let (sex, age, region) = (s("SEX"), s("AGE_GROUP"), s("REGION"));
    let f = |c: &str| cal.column(c).unwrap().f64().unwrap().clone();
    let (g, w) = (f("g"), f("calibrated_weight"));
    let abroad: Vec<usize> = (0..cal.height())
        .filter(|&i| sex.get(i) == Some("_Z"))
        .collect();
    assert_eq!(abroad.len(), 1, "the emigrants are one class");
    assert_eq!(age.get(abroad[0]), Some("_Z"));
    assert_eq!(region.get(abroad[0]), Some("_Z"));
    assert!(
        (g.get(abroad[0]).unwrap() - 1.0).abs() < 1e-12,
        "their weights stay"
    );
    // The residents' calibrated weights add up to every census total.
    let fx = repo().join("sample_data/census");
    for (file, cols) in [
        ("residents_sex_age.csv", vec!["SEX", "AGE_GROUP"]),
        ("residents_region.csv", vec!["REGION"]),
    ] {
        let mut rdr = csv::Reader::from_path(fx.join(file)).unwrap();
        for rec in rdr.records() {
            let rec = rec.unwrap();
            let total: f64 = rec[cols.len()].parse().unwrap();
            let got: f64 = (0..cal.height())
                .filter(|&i| {
                    cols.iter().enumerate().all(|(j, c)| {
                        let col = match *c {
                            "SEX" => &sex,
                            "AGE_GROUP" => &age,
                            _ => &region,
                        };
                        col.get(i) == Some(&rec[j])
                    })
                })
                .map(|i| w.get(i).unwrap())
                .sum();
            assert!(
                (got - total).abs() <= 1e-7 * (1.0 + total),
                "{file} {:?}: {got} vs {total}",
                rec
            );
        }
    }

    // Each record's weights (restricted/weights/survey.parquet), joined to the
    // accepted records by file and record number: its delivered weight, g = 1 abroad, and the
    // residents' calibrated weights add up to the census totals by sex and age group.
    let weights = read_parquet(&out.join("restricted/weights/survey.parquet"));
    let acc = crate::read_accepted(out, "survey");
    let acc_rows = acc.height();
    assert_eq!(weights.height(), acc_rows, "one row per accepted record");
    let joined = weights
        .lazy()
        .join(
            acc.lazy(),
            [col("_file"), col("_record")],
            [col("_file"), col("_record")],
            JoinArgs::new(JoinType::Inner),
        )
        .collect()
        .unwrap();
    assert_eq!(joined.height(), acc_rows, "every record joins");
    let f = |c: &str| {
        joined
            .column(c)
            .unwrap()
            .cast(&DataType::Float64)
            .unwrap()
            .f64()
            .unwrap()
            .clone()
    };
    let s = |c: &str| joined.column(c).unwrap().str().unwrap().clone();
    let (w, raw, g, cw) = (f("weight"), f("raw_weight"), f("g"), f("calibrated_weight"));
    let (sex, age, mt) = (s("SEX"), s("AGE_GROUP"), s("MIGRATION_TYPE"));
    let ids = s("record_id");
    let mut totals: BTreeMap<(String, String), f64> = BTreeMap::new();
    for i in 0..joined.height() {
        assert_eq!(w.get(i), raw.get(i), "row {i}: the delivered weight");
        assert!(
            ids.get(i).is_some_and(|x| !x.is_empty()),
            "row {i}: record id"
        );
        let (gi, ci) = (g.get(i).unwrap(), cw.get(i).unwrap());
        assert!((ci - w.get(i).unwrap() * gi).abs() <= 1e-9 * ci.abs());
        if mt.get(i) == Some("EMIGRANT") {
            assert!(
                (gi - 1.0).abs() < 1e-12,
                "row {i}: an emigrant keeps the design weight"
            );
        } else {
            *totals
                .entry((sex.get(i).unwrap().into(), age.get(i).unwrap().into()))
                .or_default() += ci;
        }
    }
    let mut rdr = csv::Reader::from_path(fx.join("residents_sex_age.csv")).unwrap();
    for rec in rdr.records() {
        let rec = rec.unwrap();
        let total: f64 = rec[2].parse().unwrap();
        let got = totals
            .get(&(rec[0].into(), rec[1].into()))
            .copied()
            .unwrap_or(0.0);
        assert!(
            (got - total).abs() <= 1e-7 * (1.0 + total),
            "{rec:?}: {got} vs {total}"
        );
    }
}

#[test]
fn the_totals_a_survey_is_calibrated_to_are_part_of_the_pipeline() {
    // Editing a totals file changes the pipeline hash (a nightly rerun recomputes), and the
    // plan still reads as JSON (`migstat explain --format json`).
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let totals = d.join("sex.csv");
    std::fs::write(&totals, "SEX,total\nF,40000\nM,40000\n").unwrap();
    let strat = DESIGNS.iter().find(|x| x.0 == "strat").unwrap().1;
    let body = format!(
        "{strat}\n[sources.cal.design.calibration]\nmethod = \"poststratify\"\nmargins = [{{ by = [\"SEX\"], totals = \"{}\" }}]",
        totals.display()
    );
    let spec = designs_spec_with(d, &[("cal", body.as_str(), 0.95)], |_| {
        vec![(
            "t".into(),
            "kind = \"survey_total\"".into(),
            r#"["SEX"]"#.into(),
        )]
    });
    let before = migstat::spec::compile(&spec).unwrap();
    assert!(serde_json::to_string(&before).is_ok());
    std::fs::write(&totals, "SEX,total\nF,40000\nM,40001\n").unwrap();
    let after = migstat::spec::compile(&spec).unwrap();
    assert_ne!(before.spec_hash, after.spec_hash);
}

#[test]
fn a_design_without_weights_needs_the_fpc_of_every_stage() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = designs_spec_with(
        tmp.path(),
        &[
            ("no_fpc", "# no weight\nstrata = \"stratum\"", 0.95),
            (
                "no_fpc_ssu",
                "# no weight\nstrata = \"stratum\"\npsu = \"psu\"\nssu = \"ssu\"\nfpc = \"n_psu_pop\"",
                0.95,
            ),
        ],
        |_| {
            vec![(
                "t".into(),
                "kind = \"survey_total\"".into(),
                r#"["SEX"]"#.into(),
            )]
        },
    );
    let Err(e) = migstat::spec::compile(&spec) else {
        panic!("the spec compiles");
    };
    let e = e.to_string();
    for name in ["no_fpc", "no_fpc_ssu"] {
        assert!(
            e.contains(&format!(
                "sources.{name}.design.weight: a design needs `weight`, or the FPC of every stage"
            )),
            "{name}: {e}"
        );
    }
}

#[test]
fn calibration_problems_are_named() {
    let fx = repo().join("tests/fixtures/survey_designs");
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(d.join("sex_off.csv"), "SEX,total\nF,40000\nM,40001\n").unwrap();
    std::fs::write(d.join("sex_f.csv"), "SEX,total\nF,80000\n").unwrap();
    std::fs::write(
        d.join("grp_extra.csv"),
        "GRP,total\nA,40000\nB,25000\nC,10000\nD,5000\n",
    )
    .unwrap();
    let strat = DESIGNS.iter().find(|x| x.0 == "strat").unwrap().1;
    let body =
        |name: &str, cal: &str| format!("{strat}\n[sources.{name}.design.calibration]\n{cal}");
    let m = |f: &str| format!("{{ by = [\"SEX\"], totals = \"{}\" }}", d.join(f).display());
    let grp = format!(
        "{{ by = [\"GRP\"], totals = \"{}/margin_grp.csv\" }}",
        fx.display()
    );
    let spec_errors = [
        (
            "two_ps",
            body(
                "two_ps",
                &format!(
                    "method = \"poststratify\"\nmargins = [{}, {grp}]",
                    m("sex_f.csv")
                ),
            ),
            "post-stratification takes one margin",
        ),
        (
            "disagree",
            body(
                "disagree",
                &format!(
                    "method = \"raking\"\nmargins = [{grp}, {}]",
                    m("sex_off.csv")
                ),
            ),
            "margins of one population must agree on its size",
        ),
        (
            "nobounds",
            body(
                "nobounds",
                &format!("method = \"logit\"\nmargins = [{grp}]"),
            ),
            "logit calibration needs bounds",
        ),
        (
            "unknown",
            body(
                "unknown",
                "method = \"raking\"\nmargins = [{ by = [\"AGE\"], totals = \"x.csv\" }]",
            ),
            "`AGE` is neither a derived column nor a field of the source",
        ),
    ];
    let refs: Vec<(&str, &str, f64)> = spec_errors
        .iter()
        .map(|(n, b, _)| (*n, b.as_str(), 0.95))
        .collect();
    let spec = designs_spec_with(d, &refs, |_| {
        vec![(
            "t".into(),
            "kind = \"survey_total\"".into(),
            r#"["SEX"]"#.into(),
        )]
    });
    let Err(e) = migstat::spec::compile(&spec) else {
        panic!("the spec compiles");
    };
    let e = e.to_string();
    for (name, _, want) in &spec_errors {
        assert!(
            e.contains(&format!("sources.{name}.design.calibration")) && e.contains(want),
            "{name}: {want}\nin:\n{e}"
        );
    }
    // At run time: a category of the sample missing from the totals, and one of the totals
    // with no respondent, reject the source, naming them.
    let runs = [
        (
            "missing_m",
            body(
                "missing_m",
                &format!("method = \"linear\"\nmargins = [{}]", m("sex_f.csv")),
            ),
            "category `M` of margin SEX has respondents but no population total",
        ),
        (
            "extra_d",
            body(
                "extra_d",
                "method = \"raking\"\nmargins = [{ by = [\"GRP\"], totals = \"GRP_EXTRA\" }]",
            )
            .replace("GRP_EXTRA", &d.join("grp_extra.csv").display().to_string()),
            "category `D` of margin GRP has a population total of 5000 but no respondent",
        ),
    ];
    let refs: Vec<(&str, &str, f64)> = runs
        .iter()
        .map(|(n, b, _)| (*n, b.as_str(), 0.95))
        .collect();
    let spec = designs_spec_with(d, &refs, |_| {
        vec![(
            "t".into(),
            "kind = \"survey_total\"".into(),
            r#"["SEX"]"#.into(),
        )]
    });
    let plan = migstat::spec::compile(&spec).expect("spec compiles");
    let m = crate::run_plan(&plan, &d.join("out"));
    for (name, _, want) in &runs {
        assert!(
            m.rejections
                .iter()
                .any(|r| r.source_id == *name && r.reason.contains(want)),
            "{name}: {want}\nin: {:?}",
            m.rejections
        );
    }
}

#[test]
fn share_interval_choices_a_design_cannot_give_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let jk1 = DESIGNS.iter().find(|d| d.0 == "jk1").unwrap();
    let share = |name: &str, keys: &str| {
        (
            name.to_string(),
            format!("kind = \"survey_proportion\"\ncategory = \"GRP\"\n{keys}"),
            r#"["GRP", "SEX"]"#.to_string(),
        )
    };
    let spec = designs_spec_with(tmp.path(), &[*jk1], |_| {
        vec![
            share("beta", "interval = \"beta\""),
            share("domain", "interval_df = \"domain\""),
            share("likelihood", "interval = \"likelihood\""),
            share("wilson", "interval = \"wilson\""),
            share("fine", "interval = \"logit\""),
        ]
    });
    let Err(e) = migstat::spec::compile(&spec) else {
        panic!("the spec compiles");
    };
    let e = e.to_string();
    for want in [
        "tables.jk1-likelihood.interval: `likelihood` scales its cut-off by the model-based variance of the logit, which R's fit on a replicate design does not give",
        "tables.jk1-wilson.interval: `wilson` is not an interval method",
    ] {
        assert!(e.contains(want), "{want}\nin:\n{e}");
    }
    // Beta and each domain's df come from the rank of a domain's replicate weights.
    for fine in ["jk1-fine", "jk1-beta", "jk1-domain"] {
        assert!(!e.contains(fine), "{fine}: {e}");
    }
}

#[test]
fn quantile_and_contrast_mistakes_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let jk1 = DESIGNS.iter().find(|d| d.0 == "jk1").unwrap();
    let t =
        |name: &str, body: &str, dims: &str| (name.to_string(), body.to_string(), dims.to_string());
    let spec = designs_spec_with(tmp.path(), &[*jk1], |_| {
        vec![
            t(
                "mean",
                "kind = \"survey_mean\"\nvariable = \"y\"",
                r#"["SEX", "GRP"]"#,
            ),
            t(
                "median",
                "kind = \"survey_quantile\"\nvariable = \"y\"",
                r#"["SEX"]"#,
            ),
            t(
                "q_beta",
                "kind = \"survey_quantile\"\nvariable = \"y\"\ninterval = \"beta\"",
                r#"["SEX"]"#,
            ),
            t(
                "q_sv",
                "kind = \"survey_quantile\"\nvariable = \"y\"\nrule = \"shahvaish\"",
                r#"["SEX"]"#,
            ),
            t(
                "q_p",
                "kind = \"survey_quantile\"\nvariable = \"y\"\nquantile = 1",
                r#"["SEX"]"#,
            ),
            t(
                "q_score",
                "kind = \"survey_quantile\"\nvariable = \"y\"\ninterval = \"score\"",
                r#"["SEX"]"#,
            ),
            t(
                "c_none",
                "kind = \"survey_contrast\"\nof = \"nowhere\"\nacross = \"SEX\"\ncoefficients = { F = 1 }",
                r#"["GRP"]"#,
            ),
            t(
                "c_across",
                "kind = \"survey_contrast\"\nof = \"jk1-mean\"\nacross = \"STRATUM\"\ncoefficients = { F = 1 }",
                r#"["GRP"]"#,
            ),
            t(
                "c_dims",
                "kind = \"survey_contrast\"\nof = \"jk1-mean\"\nacross = \"SEX\"\ncoefficients = { F = 1, M = -1 }",
                r#"["SEX"]"#,
            ),
            t(
                "c_quant",
                "kind = \"survey_contrast\"\nof = \"jk1-median\"\nacross = \"SEX\"\ncoefficients = { F = 1 }",
                r#"["GRP"]"#,
            ),
            t(
                "c_both",
                "kind = \"survey_contrast\"\nof = \"jk1-mean\"\nacross = \"SEX\"\ncoefficients = { F = 1 }\nratio = [\"F\", \"M\"]",
                r#"["GRP"]"#,
            ),
            t(
                "c_fine",
                "kind = \"survey_contrast\"\nof = \"jk1-mean\"\nacross = \"SEX\"\nratio = [\"F\", \"M\"]",
                r#"["GRP"]"#,
            ),
        ]
    });
    let Err(e) = migstat::spec::compile(&spec) else {
        panic!("the spec compiles");
    };
    let e = e.to_string();
    for want in [
        "tables.jk1-q_beta.interval: `beta` needs each domain's degrees of freedom",
        "tables.jk1-q_sv.rule: `shahvaish` is not offered",
        "tables.jk1-q_p.quantile: must be strictly between 0 and 1",
        "tables.jk1-q_score.interval: `score` is offered on linearized designs",
        "tables.jk1-c_none.of: no table `nowhere`",
        "tables.jk1-c_across.across: `STRATUM` is not a dimension of `jk1-mean`",
        "tables.jk1-c_dims.dimensions: a contrast of `jk1-mean` across SEX is taken in the cells of its other dimensions: [GRP]",
        "tables.jk1-c_quant.of: `jk1-median` is a survey_quantile table",
        "tables.jk1-c_both: a contrast needs either",
    ] {
        assert!(e.contains(want), "{want}\nin:\n{e}");
    }
    for fine in ["jk1-c_fine", "jk1-median:", "jk1-mean:"] {
        assert!(!e.contains(fine), "{fine}: {e}");
    }
}

#[test]
fn a_lonely_psu_rejects_the_source_under_fail() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = designs_spec(
        tmp.path(),
        &[("lonely_fail", "strata = \"stratum_l\"\npsu = \"psu\"", 0.95)],
    );
    let plan = migstat::spec::compile(&spec).unwrap();
    let m = crate::run_plan(&plan, &tmp.path().join("out"));
    assert_eq!(m.status, migstat::manifest::RunStatus::Rejected);
    let msg = &m.rejections[0].reason;
    assert!(
        msg.contains("2 stratum(s) with a single PSU")
            && msg.contains("`S3-P1`")
            && msg.contains("`S3-P2`"),
        "{msg}"
    );
    assert!(
        m.outputs.iter().all(|o| !o.path.contains("tables")),
        "no table is built from a rejected source"
    );
}

#[test]
fn an_fpc_that_differs_within_a_stratum_is_named_with_the_stratum_quoted_and_capped() {
    // Stratum S1's code made 302 bytes long with a line break in it, and one of its records
    // given another population size: the rejection names the stratum as every message quotes
    // input (escaped, at most 64 bytes, the cut marked), whole files of codes never reach the
    // manifest or a log line.
    let tmp = tempfile::tempdir().unwrap();
    let text =
        std::fs::read_to_string(repo().join("tests/fixtures/survey_designs/survey.csv")).unwrap();
    let long = format!("S1\n{}", "x".repeat(299));
    let mut out = String::new();
    let mut s1 = 0;
    for (i, line) in text.lines().enumerate() {
        let mut f: Vec<String> = line.split(',').map(str::to_string).collect();
        if i > 0 && f[2] == "S1" {
            f[2] = format!("\"{long}\"");
            s1 += 1;
            if s1 == 2 {
                assert_eq!(f[6], "740");
                f[6] = "741".into();
            }
        }
        out += &f.join(",");
        out += "\n";
    }
    assert_eq!(s1, 37);
    let survey = tmp.path().join("survey.csv");
    std::fs::write(&survey, out).unwrap();
    let tables: Vec<(String, String, String)> = DESIGN_TABLES
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    let spec = designs_spec_at(
        tmp.path(),
        &[(
            "fpc_conflict",
            "strata = \"stratum_l\"\nfpc = \"n_elem_pop\"",
            0.95,
        )],
        |_| tables.clone(),
        survey.to_str().unwrap(),
    );
    let plan = migstat::spec::compile(&spec).unwrap();
    let m = crate::run_plan(&plan, &tmp.path().join("out"));
    assert_eq!(m.status, migstat::manifest::RunStatus::Rejected);
    let msg = &m.rejections[0].reason;
    // 64 bytes shown: `S1`, the escaped line break (2 bytes) and 60 of the x's; of the
    // 302 bytes of input, 63 are shown and 239 cut.
    let shown = format!("`S1\\n{}`…(+239 bytes)", "x".repeat(60));
    assert!(
        msg.contains(&format!(
            "`n_elem_pop` differs within stratum {shown} (740 and 741)"
        )),
        "{msg}"
    );
    assert!(
        !msg.contains('\n') && !msg.contains(&"x".repeat(61)),
        "{msg}"
    );
}

#[test]
fn a_large_jkn_design_has_r_s_degrees_of_freedom() {
    // tests/r/survey_designs.R jkn: 150 strata of 2 to 5 PSUs (473 replicates), weights over six
    // orders of magnitude. R's df is qr(replicate weights, tol = 1e-5)$rank − 1 = 315, well below
    // PSUs − strata (323): replicates that differ only in PSUs of tiny weight are dependent at
    // that tolerance. The JKn weights are built here from the design, as as.svrepdesign does.
    let fx = repo().join("tests/fixtures/survey_designs/jkn.csv");
    let mut rdr = csv::Reader::from_path(&fx).unwrap();
    let rows: Vec<csv::StringRecord> = rdr.records().map(|r| r.unwrap()).collect();
    // PSUs by stratum, in order of appearance.
    let mut psus: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &rows {
        let v = psus.entry(r[1].to_string()).or_default();
        if !v.iter().any(|p| p == &r[2]) {
            v.push(r[2].to_string());
        }
    }
    let reps: Vec<(String, String, f64)> = psus
        .iter()
        .flat_map(|(h, ps)| {
            let n = ps.len() as f64;
            ps.iter().map(move |p| (h.clone(), p.clone(), n))
        })
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let mut csv_out = String::from("id,stratum,psu,weight,sex,y");
    for k in 0..reps.len() {
        csv_out += &format!(",r{k:04}");
    }
    csv_out.push('\n');
    for r in &rows {
        let w: f64 = r[3].parse().unwrap();
        csv_out += &r.iter().collect::<Vec<_>>().join(",");
        for (h, p, n) in &reps {
            let rw = if &r[1] != h {
                w
            } else if &r[2] == p {
                0.0
            } else {
                w * n / (n - 1.0)
            };
            csv_out += &format!(",{rw:?}");
        }
        csv_out.push('\n');
    }
    std::fs::write(tmp.path().join("jkn.csv"), csv_out).unwrap();
    let mut fields = vec![
        r#"{"name": "id", "constraints": {"required": true}}"#.to_string(),
        r#"{"name": "stratum", "constraints": {"required": true}}"#.to_string(),
        r#"{"name": "psu", "constraints": {"required": true}}"#.to_string(),
        r#"{"name": "weight", "type": "number", "constraints": {"required": true}}"#.to_string(),
        r#"{"name": "sex", "constraints": {"required": true}}"#.to_string(),
        r#"{"name": "y", "type": "number"}"#.to_string(),
    ];
    for k in 0..reps.len() {
        fields.push(format!(
            r#"{{"name": "r{k:04}", "type": "number", "constraints": {{"required": true}}}}"#
        ));
    }
    std::fs::write(
        tmp.path().join("jkn.schema.json"),
        format!("{{\"fields\": [{}]}}", fields.join(",\n")),
    )
    .unwrap();
    let rscales: Vec<String> = reps
        .iter()
        .map(|(_, _, n)| format!("{:?}", (n - 1.0) / n))
        .collect();
    let spec = format!(
        "version = 1\nid = \"fixture-jkn\"\nreference_date = 2024-12-31\nreference_period = \"2024\"\ncodelists = \"{codelists}\"\n\
         [defaults]\nmax_invalid_fraction = 0.0\n\
         [sources.jkn]\npath = \"{dir}/jkn.csv\"\nformat = \"csv\"\nschema = \"{dir}/jkn.schema.json\"\nrecord_id = \"id\"\n\
         [sources.jkn.design]\nweight = \"weight\"\nreplicates = {{ columns = \"r*\", type = \"JKn\", rscales = [{rscales}] }}\n\
         [sources.jkn.harmonize]\nSEX = {{ from = \"sex\", crosswalk = \"{sex}\", codelist = \"sex\" }}\n\
         [tables.jkn-total_y]\nsource = \"jkn\"\nunit = \"persons\"\nkind = \"survey_total\"\nvariable = \"y\"\ndimensions = [\"SEX\"]\n",
        codelists = repo().join("schemas/codelists").display(),
        dir = tmp.path().display(),
        sex = repo().join("schemas/crosswalks/sex.csv").display(),
        rscales = rscales.join(", "),
    );
    let spec_path = tmp.path().join("jkn.toml");
    std::fs::write(&spec_path, spec).unwrap();
    let plan = migstat::spec::compile(&spec_path).expect("spec compiles");
    let root = tmp.path().join("out");
    let m = crate::run_plan(&plan, &root);
    assert!(m.rejections.is_empty(), "{:?}", m.rejections);
    let df = read_parquet(&root.join("current/restricted/tables/jkn-total_y/2024/data.parquet"));
    let mut golden = csv::Reader::from_path(repo().join("tests/golden/survey_jkn_r.csv")).unwrap();
    let mut n = 0;
    for r in golden.records() {
        let r = r.unwrap();
        assert_eq!(r[4].parse::<usize>().unwrap(), reps.len(), "replicates");
        let sex = df.column("SEX").unwrap().str().unwrap().clone();
        let i = (0..df.height())
            .find(|&i| sex.get(i) == Some(&r[0]))
            .unwrap_or_else(|| panic!("no cell SEX={}", &r[0]));
        let f = |c: &str| df.column(c).unwrap().f64().unwrap().get(i).unwrap();
        let num = |k: usize| r[k].parse::<f64>().unwrap();
        assert!((f("estimate") / num(1) - 1.0).abs() < 1e-9, "{:?}", &r);
        assert!(
            (f("se") / num(2) - 1.0).abs() < 1e-9,
            "{:?}: se {}",
            &r,
            f("se")
        );
        let dfree = df.column("df").unwrap().counts().get(i);
        assert_eq!(
            dfree,
            r[3].parse().ok(),
            "SEX={}: degrees of freedom",
            &r[0]
        );
        n += 1;
    }
    assert_eq!(n, 3);
}

#[test]
fn replicate_weights_from_their_own_file_are_joined_on_the_record_id() {
    // The jk1 weights of the fixture moved to a file of their own (rows in reverse order, a
    // BOM, the key named differently): every table must come out as with the columns.
    let fx = repo().join("tests/fixtures/survey_designs/survey.csv");
    let mut rdr = csv::Reader::from_path(&fx).unwrap();
    let header = rdr.headers().unwrap().clone();
    let jk: Vec<usize> = (0..header.len())
        .filter(|&i| header[i].starts_with("jk1_"))
        .collect();
    let rows: Vec<csv::StringRecord> = rdr.records().map(|r| r.unwrap()).collect();
    let write = |path: &Path, rows: &[&csv::StringRecord], bad: Option<usize>| {
        let mut out = String::from("\u{feff}respondent");
        for &i in &jk {
            out += &format!(",{}", &header[i]);
        }
        out.push('\n');
        for (n, r) in rows.iter().enumerate() {
            out += &r[0];
            for &i in &jk {
                let v = if bad == Some(n) && i == jk[3] {
                    "n/a"
                } else {
                    &r[i]
                };
                out += &format!(",{v}");
            }
            out.push('\n');
        }
        std::fs::write(path, out).unwrap();
    };
    let tmp = tempfile::tempdir().unwrap();
    let weights = tmp.path().join("jk1_weights.csv");
    let reversed: Vec<&csv::StringRecord> = rows.iter().rev().collect();
    write(&weights, &reversed, None);
    let file_design = format!(
        r#"replicates = {{ file = "{}", key = "respondent", columns = "jk1_*", type = "JK1" }}"#,
        weights.display()
    );
    let jk1 = DESIGNS.iter().find(|d| d.0 == "jk1").unwrap();
    let spec = designs_spec(tmp.path(), &[*jk1, ("jk1_file", &file_design, 0.95)]);
    let plan = migstat::spec::compile(&spec).expect("spec compiles");
    let root = tmp.path().join("out");
    let m = crate::run_plan(&plan, &root);
    assert!(m.rejections.is_empty(), "{:?}", m.rejections);
    let out = root.join("current/restricted/tables");
    for (table, _, _) in DESIGN_TABLES {
        let read = |d: &str| {
            let df = read_parquet(&out.join(format!("{d}-{table}/2024/data.parquet")));
            df.drop("table_id").unwrap_or(df)
        };
        let (a, b) = (read("jk1"), read("jk1_file"));
        assert!(a.height() > 0, "{table}");
        for name in ["estimate", "se", "df", "n"] {
            assert_eq!(
                a.column(name).unwrap(),
                b.column(name).unwrap(),
                "{table}: {name}"
            );
        }
    }

    // The survey delivered as three files: the file is read for the first and handed on to
    // the next (locally) or read by each (an engine elsewhere), the same sums either way.
    let split = tmp.path().join("split");
    std::fs::create_dir_all(&split).unwrap();
    let survey = survey_in_three_files(&split);
    let tables: Vec<(String, String, String)> = DESIGN_TABLES
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    let spec = designs_spec_at(
        &split,
        &[*jk1, ("jk1_file", &file_design, 0.95)],
        |_| tables.clone(),
        &survey,
    );
    let plan = migstat::spec::compile(&spec).expect("spec compiles");
    let (during, after) = (split.join("out"), split.join("out-after"));
    let m = crate::run_plan(&plan, &during);
    assert!(m.rejections.is_empty(), "{:?}", m.rejections);
    let m2 = migstat::runner::run(
        &plan,
        &migstat::runner::RunOptions {
            out_dir: after.clone(),
            engine: Some(migstat::engine::from_name("local-after-pass").unwrap()),
            ..Default::default()
        },
    )
    .expect("the pipeline runs");
    let files = |m: &migstat::runner::Manifest| -> Vec<(String, String)> {
        m.outputs
            .iter()
            .map(|f| (f.path.clone(), f.blake3.clone()))
            .collect()
    };
    assert_eq!(files(&m), files(&m2));
    let out = during.join("current/restricted/tables");
    for (table, _, _) in DESIGN_TABLES {
        let read = |d: &str| {
            let df = read_parquet(&out.join(format!("{d}-{table}/2024/data.parquet")));
            df.drop("table_id").unwrap_or(df)
        };
        let (a, b) = (read("jk1"), read("jk1_file"));
        assert!(a.height() > 0, "{table}");
        for name in ["estimate", "se", "df", "n"] {
            assert_eq!(
                a.column(name).unwrap(),
                b.column(name).unwrap(),
                "{table} from three files: {name}"
            );
        }
    }

    // A record without a row, and a weight that is not a number: the source is rejected,
    // naming both.
    let short: Vec<&csv::StringRecord> = rows.iter().skip(1).collect();
    write(&weights, &short, Some(4));
    let spec = designs_spec(tmp.path(), &[("jk1_file", &file_design, 0.95)]);
    let plan = migstat::spec::compile(&spec).expect("spec compiles");
    let m = crate::run_plan(&plan, &tmp.path().join("out2"));
    assert_eq!(m.status, migstat::manifest::RunStatus::Rejected);
    let msg = &m.rejections[0].reason;
    assert!(
        msg.contains("1 record(s) have no row in the replicate weights file")
            && msg.contains(&format!("`{}`", &rows[0][0]))
            && msg.contains("line 6, column `jk1_04`: `n/a` is not a replicate weight"),
        "{msg}"
    );
    // The same from three files: each problem named once.
    let spec = designs_spec_at(
        &split,
        &[("jk1_file", &file_design, 0.95)],
        |_| tables.clone(),
        &survey,
    );
    let plan = migstat::spec::compile(&spec).expect("spec compiles");
    let m = crate::run_plan(&plan, &split.join("out2"));
    assert_eq!(m.status, migstat::manifest::RunStatus::Rejected);
    let split_msg = &m.rejections[0].reason;
    assert_eq!(split_msg, msg);
    assert_eq!(split_msg.matches("is not a replicate weight").count(), 1);

    // A key column the file lacks is a spec mistake.
    let bad = format!(
        r#"replicates = {{ file = "{}", key = "id_no", columns = "jk1_*", type = "JK1" }}"#,
        weights.display()
    );
    let spec = designs_spec(tmp.path(), &[("jk1_bad", &bad, 0.95)]);
    let e = migstat::spec::compile(&spec).unwrap_err().to_string();
    assert!(e.contains("has no column `id_no`"), "{e}");
}

#[test]
fn a_table_without_dimensions_is_the_whole_population() {
    // `dimensions = []`: one cell, R's estimate over the whole design (svytotal(~y, des), not
    // svyby), against the all-`_T` rows of tests/golden/survey_designs_r.csv.
    let whole: Vec<(String, String, String)> = DESIGN_TABLES
        .iter()
        .filter(|t| !t.0.starts_with("share"))
        .map(|(n, k, _)| (format!("{n}_whole"), k.to_string(), "[]".to_string()))
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let spec = designs_spec_with(tmp.path(), DESIGNS, |_| whole.clone());
    let plan = migstat::spec::compile(&spec).expect("spec compiles");
    let root = tmp.path().join("out");
    let m = crate::run_plan(&plan, &root);
    assert!(m.rejections.is_empty(), "{:?}", m.rejections);
    let mut rdr = csv::Reader::from_path(repo().join("tests/golden/survey_designs_r.csv")).unwrap();
    let mut n = 0;
    for r in rdr.records() {
        let r = r.unwrap();
        if r[1].starts_with("share") || &r[2] != "_T" || &r[3] != "_T" {
            continue;
        }
        let table = format!("{}-{}_whole", &r[0], &r[1]);
        let df = read_parquet(&root.join(format!(
            "current/restricted/tables/{table}/2024/data.parquet"
        )));
        assert_eq!(df.height(), 1, "{table}: one cell");
        // The lead columns, the period's typed `ref_year`, the estimates: no dimension column.
        assert_eq!(
            df.width(),
            17,
            "{table}: no dimension column: {:?}",
            df.get_column_names()
        );
        let f = |c: &str| df.column(c).unwrap().f64().unwrap().get(0).unwrap();
        let num = |k: usize| r[k].parse::<f64>().unwrap();
        let rel = |a: f64, b: f64| (a - b).abs() / b.abs();
        assert!(rel(f("estimate"), num(5)) < 1e-9, "{table}: estimate");
        // A total the FPCs fix has an SE of rounding noise in both.
        let se_scale = num(6).abs().max(1e-9 * num(5).abs());
        assert!(
            (f("se") - num(6)).abs() < 1e-9 * se_scale,
            "{table}: se {} vs {}",
            f("se"),
            num(6)
        );
        assert!(rel(f("ci_low_t"), num(7)) < 1e-9, "{table}: t interval");
        let dfree = df.column("df").unwrap().counts().get(0);
        assert_eq!(dfree, r[9].parse().ok(), "{table}: df");
        n += 1;
    }
    assert_eq!(n, DESIGNS.len() * 4, "cells compared");
}

#[test]
fn a_contrast_without_dimensions_is_the_whole_population_s() {
    // Women minus men, and women over men, of the mean of x over the whole design: a contrast
    // across the only dimension of its base leaves no dimension. R: the GRP = _T rows of
    // c_mean_sex and c_mean_ratio in tests/golden/survey_contrast_r.csv.
    let mut rdr =
        csv::Reader::from_path(repo().join("tests/golden/survey_contrast_r.csv")).unwrap();
    let rows: Vec<csv::StringRecord> = rdr
        .records()
        .map(|r| r.unwrap())
        .filter(|r| r[1].starts_with("c_mean_") && &r[3] == "_T")
        .collect();
    let designs: Vec<(&str, &str, f64)> = DESIGNS
        .iter()
        .filter(|d| rows.iter().any(|r| &r[0] == d.0))
        .copied()
        .collect();
    assert!(designs.len() >= 8, "{designs:?}");
    let tmp = tempfile::tempdir().unwrap();
    let spec = designs_spec_with(tmp.path(), &designs, |design| {
        let c = |how: &str| {
            format!(
                "kind = \"survey_contrast\"\nof = \"{design}-mean_x_sex\"\nacross = \"SEX\"\n{how}"
            )
        };
        vec![
            (
                "mean_x_sex".to_string(),
                "kind = \"survey_mean\"\nvariable = \"x\"".to_string(),
                r#"["SEX"]"#.to_string(),
            ),
            (
                "c_mean_sex".to_string(),
                c("coefficients = { F = 1, M = -1 }"),
                "[]".to_string(),
            ),
            (
                "c_mean_ratio".to_string(),
                c("ratio = [\"F\", \"M\"]"),
                "[]".to_string(),
            ),
        ]
    });
    let plan = migstat::spec::compile(&spec).expect("spec compiles");
    let root = tmp.path().join("out");
    let m = crate::run_plan(&plan, &root);
    assert!(m.rejections.is_empty(), "{:?}", m.rejections);
    for r in &rows {
        let table = format!("{}-{}", &r[0], &r[1]);
        let df = read_parquet(&root.join(format!(
            "current/restricted/tables/{table}/2024/data.parquet"
        )));
        assert_eq!(df.height(), 1, "{table}");
        let f = |c: &str| df.column(c).unwrap().f64().unwrap().get(0).unwrap();
        let num = |k: usize| r[k].parse::<f64>().unwrap();
        assert!(
            (f("estimate") / num(4) - 1.0).abs() < 1e-9,
            "{table}: estimate"
        );
        assert!((f("se") / num(5) - 1.0).abs() < 1e-9, "{table}: se");
    }
}

#[test]
fn nonresponse_adjusted_designs_match_r() {
    // tests/r/survey_designs.R nonresponse: status from `x` (1–4 respondents, 5 ineligible,
    // 6 nonrespondents), weighting classes by stratum or by sex × group, alone or followed by
    // post-stratification or raking; linearized designs against svycontrast's delta method on
    // the full sample's totals, replicate designs against svrepdesign on replicate weights
    // adjusted one by one.
    let fx = repo().join("tests/fixtures/survey_designs");
    let nr = |name: &str, classes: &str| {
        format!(
            "\n[sources.{name}.design.nonresponse]\nstatus = \"x\"\nrespondent = [\"1\", \"2\", \"3\", \"4\"]\nineligible = [\"5\"]\nclasses = {classes}"
        )
    };
    let ps = format!(
        "method = \"poststratify\"\nmargins = [{{ by = [\"SEX\", \"GRP\"], totals = \"{fx}/margin_sex_grp.csv\" }}]",
        fx = fx.display()
    );
    let rak = format!(
        "method = \"raking\"\nmargins = [{{ by = [\"SEX\"], totals = \"{fx}/margin_sex.csv\" }}, {{ by = [\"GRP\"], totals = \"{fx}/margin_grp.csv\" }}]",
        fx = fx.display()
    );
    let cases: &[(&str, &str, &str, Option<&str>)] = &[
        ("strat_clus_nr", "strat_clus", r#"["STRATUM"]"#, None),
        ("two_stage_fpc_nr", "two_stage_fpc", r#"["STRATUM"]"#, None),
        ("clus_nr_sexgrp", "clus", r#"["SEX", "GRP"]"#, None),
        (
            "strat_fpc_only_nr",
            "strat_fpc_only",
            r#"["STRATUM"]"#,
            None,
        ),
        (
            "strat_clus_nr_ps",
            "strat_clus",
            r#"["STRATUM"]"#,
            Some(&ps),
        ),
        ("jk1_nr", "jk1", r#"["STRATUM"]"#, None),
        ("boot_nr_sexgrp", "boot", r#"["SEX", "GRP"]"#, None),
        ("jk1_nr_rak", "jk1", r#"["STRATUM"]"#, Some(&rak)),
        ("boot_nr_ps", "boot", r#"["STRATUM"]"#, Some(&ps)),
    ];
    let designs: Vec<(String, String, f64)> = cases
        .iter()
        .map(|(name, base, classes, cal)| {
            let body = DESIGNS.iter().find(|d| d.0 == *base).unwrap().1;
            let mut d = format!("{body}{}", nr(name, classes));
            if let Some(cal) = cal {
                d += &format!("\n[sources.{name}.design.calibration]\n{cal}");
            }
            (name.to_string(), d, 0.95)
        })
        .collect();
    let refs: Vec<(&str, &str, f64)> = designs
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), *c))
        .collect();
    let tables: Vec<(String, String, String)> = [
        ("population", "kind = \"survey_total\"", r#"["STRATUM"]"#),
        (
            "total_y",
            "kind = \"survey_total\"\nvariable = \"y\"",
            r#"["SEX", "GRP"]"#,
        ),
        (
            "mean_y",
            "kind = \"survey_mean\"\nvariable = \"y\"",
            r#"["SEX", "GRP"]"#,
        ),
        (
            "share_grp_stratum",
            "kind = \"survey_proportion\"\ncategory = \"GRP\"",
            r#"["GRP", "STRATUM"]"#,
        ),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    let tmp = tempfile::tempdir().unwrap();
    let spec = designs_spec_with(tmp.path(), &refs, |_| tables.clone());
    let plan = migstat::spec::compile(&spec).expect("spec compiles");
    let root = tmp.path().join("out");
    let m = crate::run_plan(&plan, &root);
    assert!(m.rejections.is_empty(), "{:?}", m.rejections);
    let out = root.join("current");

    let mut rdr =
        csv::Reader::from_path(repo().join("tests/golden/survey_nonresponse_r.csv")).unwrap();
    let mut frames: BTreeMap<String, DataFrame> = BTreeMap::new();
    let (mut worst_e, mut worst_s, mut worst_direct, mut n) = (0.0f64, 0.0f64, 0.0f64, 0);
    for r in rdr.records() {
        let r = r.unwrap();
        let table = format!("{}-{}", &r[0], &r[1]);
        let df = frames.entry(table.clone()).or_insert_with(|| {
            read_parquet(&out.join(format!("restricted/tables/{table}/2024/data.parquet")))
        });
        let i = golden_cell(df, &table, &r);
        let at = format!("{table} {:?}", &r);
        let f = |c: &str| df.column(c).unwrap().f64().unwrap().get(i);
        let (re, rse): (f64, f64) = (r[5].parse().unwrap(), r[6].parse().unwrap());
        let e = f("estimate").unwrap();
        let rel_e = if re == 0.0 {
            e.abs()
        } else {
            (e - re).abs() / re.abs()
        };
        assert!(rel_e < 1e-9, "{at}: estimate {e} vs R {re}");
        let s = f("se").unwrap();
        // A total the adjustment fixes has no variance: both are rounding noise.
        let noise = 1e-9 * re.abs().max(1.0);
        let rel_s = if rse <= noise {
            if s <= noise { 0.0 } else { f64::INFINITY }
        } else {
            (s - rse).abs() / rse
        };
        // Raking iterates (R stops within its epsilon): 1e-6.
        let tol = if r[0].ends_with("_rak") { 1e-6 } else { 1e-9 };
        assert!(rel_s < tol, "{at}: se {s} vs R {rse}");
        let dfree = df.column("df").unwrap().counts().get(i);
        assert_eq!(dfree, r[7].parse().ok(), "{at}: degrees of freedom");
        worst_e = worst_e.max(rel_e);
        worst_s = worst_s.max(rel_s);
        if !r[0].ends_with("_rak") {
            worst_direct = worst_direct.max(rel_s);
        }
        n += 1;
    }
    assert_eq!(n, 9 * 52, "cells compared");

    // Each record's adjusted weight (restricted tier): within a stratum, the respondents carry
    // the weight of every eligible unit; nonrespondents and the ineligible carry none.
    let mut eligible: BTreeMap<String, f64> = BTreeMap::new();
    let mut status: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut rdr = csv::Reader::from_path(fx.join("survey.csv")).unwrap();
    for r in rdr.deserialize::<BTreeMap<String, String>>() {
        let r = r.unwrap();
        let w: f64 = r["weight"].parse().unwrap();
        if r["x"] != "5" {
            *eligible.entry(r["stratum"].clone()).or_default() += w;
        }
        let response = match r["x"].as_str() {
            "5" => "ineligible",
            "6" => "nonrespondent",
            _ => "respondent",
        };
        status.insert(r["id"].clone(), (r["stratum"].clone(), response.into()));
    }
    let w = read_parquet(&out.join("restricted/weights/strat_clus_nr.parquet"));
    assert_eq!(w.height(), status.len(), "one row per sampled unit");
    let ids = w.column("record_id").unwrap().str().unwrap().clone();
    let resp = w.column("response").unwrap().str().unwrap().clone();
    let cw = w
        .column("calibrated_weight")
        .unwrap()
        .f64()
        .unwrap()
        .clone();
    let mut got: BTreeMap<String, f64> = BTreeMap::new();
    for i in 0..w.height() {
        let (stratum, response) = &status[ids.get(i).unwrap()];
        assert_eq!(resp.get(i), Some(response.as_str()), "{:?}", ids.get(i));
        let v = cw.get(i).unwrap();
        if response != "respondent" {
            assert_eq!(v, 0.0, "{:?}: weight of a {response}", ids.get(i));
        }
        *got.entry(stratum.clone()).or_default() += v;
    }
    for (stratum, want) in &eligible {
        assert!(
            (got[stratum] - want).abs() < 1e-9 * want,
            "{stratum}: {} vs {want}",
            got[stratum]
        );
    }
    eprintln!(
        "nonresponse-adjusted designs against R: {n} cells; largest relative differences: estimates {worst_e:e}, SEs {worst_s:e} ({worst_direct:e} without raking)"
    );
}

#[test]
fn nonresponse_problems_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let strat = DESIGNS.iter().find(|x| x.0 == "strat").unwrap().1;
    let body = |name: &str, nr: &str| format!("{strat}\n[sources.{name}.design.nonresponse]\n{nr}");
    let spec_errors = [
        (
            "no_resp",
            body("no_resp", "status = \"x\"\nclasses = [\"STRATUM\"]"),
            "respondent",
            "must list codes of `status`",
        ),
        (
            "unknown",
            body(
                "unknown",
                "status = \"x\"\nrespondent = [\"1\"]\nclasses = [\"REGION\"]",
            ),
            "classes",
            "`REGION` is neither a column derived by the source nor one of its fields",
        ),
        (
            "both",
            body(
                "both",
                "status = \"x\"\nrespondent = [\"1\", \"5\"]\nineligible = [\"5\"]\nclasses = [\"STRATUM\"]",
            ),
            "ineligible",
            "`5` is listed as respondent and as ineligible",
        ),
    ];
    let refs: Vec<(&str, &str, f64)> = spec_errors
        .iter()
        .map(|(n, b, _, _)| (*n, b.as_str(), 0.95))
        .collect();
    let table = |_: &str| {
        vec![(
            "t".to_string(),
            "kind = \"survey_total\"".to_string(),
            r#"["SEX"]"#.to_string(),
        )]
    };
    let spec = designs_spec_with(d, &refs, table);
    let Err(e) = migstat::spec::compile(&spec) else {
        panic!("the spec compiles");
    };
    let e = e.to_string();
    for (name, _, key, want) in &spec_errors {
        assert!(
            e.contains(&format!("sources.{name}.design.nonresponse.{key}")) && e.contains(want),
            "{name}: {want}\nin:\n{e}"
        );
    }
    // At run time: weighting classes with nonrespondents and no respondent reject the source,
    // naming them (classes by `x`: only x = 1 responds).
    let runs = [(
        "empty",
        body(
            "empty",
            "status = \"x\"\nrespondent = [\"1\"]\nclasses = [\"x\"]",
        ),
    )];
    let refs: Vec<(&str, &str, f64)> = runs.iter().map(|(n, b)| (*n, b.as_str(), 0.95)).collect();
    let spec = designs_spec_with(d, &refs, table);
    let plan = migstat::spec::compile(&spec).expect("spec compiles");
    let m = crate::run_plan(&plan, &d.join("out"));
    let want = "nonresponse: weighting class(es) `2` (nonrespondents' weight";
    assert!(
        m.rejections.iter().any(|r| r.source_id == "empty"
            && r.reason.contains(want)
            && r.reason.contains("merge them")),
        "{want}\nin: {:?}",
        m.rejections
    );
}

#[test]
fn covariances_across_tables_match_r() {
    // tests/r/survey_designs.R covariances: every pair of cells of three tables (total and mean
    // of y by SEX, share of GRP within SEX, margins included) against vcov(svycontrast(…)) of
    // R on the totals they are functions of.
    let fx = repo().join("tests/fixtures/survey_designs");
    let rak = format!(
        "\n[sources.strat_clus_rak.design.calibration]\nmethod = \"raking\"\nmargins = [{{ by = [\"SEX\"], totals = \"{fx}/margin_sex.csv\" }}, {{ by = [\"GRP\"], totals = \"{fx}/margin_grp.csv\" }}]",
        fx = fx.display()
    );
    let ps = format!(
        "\n[sources.boot_ps.design.calibration]\nmethod = \"poststratify\"\nmargins = [{{ by = [\"SEX\", \"GRP\"], totals = \"{fx}/margin_sex_grp.csv\" }}]",
        fx = fx.display()
    );
    let cases: [(&str, &str, &str); 7] = [
        ("strat_clus", "strat_clus", ""),
        ("two_stage_fpc", "two_stage_fpc", ""),
        ("lonely_average", "lonely_average", ""),
        ("strat_clus_rak", "strat_clus", &rak),
        ("jk1", "jk1", ""),
        ("boot", "boot", ""),
        ("boot_ps", "boot", &ps),
    ];
    let designs: Vec<(String, String, f64)> = cases
        .iter()
        .map(|(name, base, after)| {
            let body = DESIGNS.iter().find(|d| d.0 == *base).unwrap().1;
            (
                name.to_string(),
                format!(
                    "{body}\ncovariance = [\"{name}-total_y\", \"{name}-mean_y\", \"{name}-share_grp\"]{after}"
                ),
                0.95,
            )
        })
        .collect();
    let refs: Vec<(&str, &str, f64)> = designs
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), *c))
        .collect();
    let tables: Vec<(String, String, String)> = [
        (
            "total_y",
            "kind = \"survey_total\"\nvariable = \"y\"",
            r#"["SEX"]"#,
        ),
        (
            "mean_y",
            "kind = \"survey_mean\"\nvariable = \"y\"",
            r#"["SEX"]"#,
        ),
        (
            "share_grp",
            "kind = \"survey_proportion\"\ncategory = \"GRP\"",
            r#"["GRP", "SEX"]"#,
        ),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    let tmp = tempfile::tempdir().unwrap();
    let spec = designs_spec_with(tmp.path(), &refs, |_| tables.clone());
    let plan = migstat::spec::compile(&spec).expect("spec compiles");
    let root = tmp.path().join("out");
    let m = crate::run_plan(&plan, &root);
    assert!(m.rejections.is_empty(), "{:?}", m.rejections);
    let out = root.join("current");

    type Pair = (String, String, String, String);
    let mut got: BTreeMap<String, BTreeMap<Pair, f64>> = BTreeMap::new();
    let mut estimates: BTreeMap<(String, String, String), f64> = BTreeMap::new();
    for (name, _, _) in &cases {
        let df = read_parquet(&out.join(format!("restricted/covariance/{name}.parquet")));
        assert_eq!(df.height(), 120, "{name}: 15 cells, 120 pairs");
        let s = |c: &str| df.column(c).unwrap().str().unwrap().clone();
        let (ta, ca, tb, cb) = (s("table_a"), s("cell_a"), s("table_b"), s("cell_b"));
        let cov = df.column("covariance").unwrap().f64().unwrap().clone();
        let strip = |t: Option<&str>| {
            t.unwrap()
                .trim_start_matches(&format!("{name}-"))
                .to_string()
        };
        let m = got.entry(name.to_string()).or_default();
        for i in 0..df.height() {
            let (a, b) = (
                (strip(ta.get(i)), ca.get(i).unwrap().to_string()),
                (strip(tb.get(i)), cb.get(i).unwrap().to_string()),
            );
            let v = cov.get(i).unwrap();
            m.insert((a.0.clone(), a.1.clone(), b.0.clone(), b.1.clone()), v);
            m.insert((b.0, b.1, a.0, a.1), v);
        }
        // The diagonal is each table's published variance.
        for t in ["total_y", "mean_y", "share_grp"] {
            let df =
                read_parquet(&out.join(format!("restricted/tables/{name}-{t}/2024/data.parquet")));
            let dims: Vec<String> = if t == "share_grp" {
                vec!["GRP".into(), "SEX".into()]
            } else {
                vec!["SEX".into()]
            };
            for i in 0..df.height() {
                let cell = dims
                    .iter()
                    .map(|d| {
                        let c = df.column(d).unwrap().str().unwrap().get(i).unwrap();
                        format!("{d}={c}")
                    })
                    .collect::<Vec<_>>()
                    .join(";");
                let se = df.column("se").unwrap().f64().unwrap().get(i).unwrap();
                let e = df
                    .column("estimate")
                    .unwrap()
                    .f64()
                    .unwrap()
                    .get(i)
                    .unwrap();
                estimates.insert((name.to_string(), t.to_string(), cell.clone()), e);
                let v = m[&(t.to_string(), cell.clone(), t.to_string(), cell.clone())];
                assert!(
                    (v - se * se).abs() <= 1e-12 * se * se,
                    "{name} {t} {cell}: variance {v} vs se² {}",
                    se * se
                );
            }
        }
    }
    let mut rdr =
        csv::Reader::from_path(repo().join("tests/golden/survey_covariance_r.csv")).unwrap();
    let (mut n, mut worst) = (0, 0.0f64);
    for r in rdr.records() {
        let r = r.unwrap();
        let m = &got[&r[0]];
        let key = (
            r[1].to_string(),
            r[2].to_string(),
            r[3].to_string(),
            r[4].to_string(),
        );
        let v = *m
            .get(&key)
            .unwrap_or_else(|| panic!("{}: no pair {key:?}", &r[0]));
        let want: f64 = r[5].parse().unwrap();
        // Relative to the scale of the two variances (a covariance may be near 0).
        let va = m[&(key.0.clone(), key.1.clone(), key.0.clone(), key.1.clone())];
        let vb = m[&(key.2.clone(), key.3.clone(), key.2.clone(), key.3.clone())];
        // A variance the calibration removes (a share it fixes) is rounding noise, and so is
        // its covariance: both must be within that noise.
        let noise = |t: &str, c: &str| {
            (1e-8 * estimates[&(r[0].to_string(), t.to_string(), c.to_string())]).powi(2)
        };
        let (na, nb) = (noise(&key.0, &key.1), noise(&key.2, &key.3));
        if va <= na || vb <= nb {
            let bound = 1e-6 * (va.max(na) * vb.max(nb)).sqrt();
            assert!(
                v.abs() <= bound && want.abs() <= bound,
                "{}: {key:?}: noise {v} vs R {want}",
                &r[0]
            );
            n += 1;
            continue;
        }
        let scale = (va * vb).sqrt();
        let rel = (v - want).abs() / scale;
        let tol = if r[0].ends_with("_rak") { 1e-6 } else { 1e-9 };
        assert!(rel < tol, "{}: {key:?}: {v} vs R {want}", &r[0]);
        worst = worst.max(rel);
        n += 1;
    }
    assert_eq!(n, 7 * 120);
    eprintln!("covariances against R: {n} pairs, largest difference {worst:e} of √(Va·Vb)");
}

#[test]
fn covariance_mistakes_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let strat = DESIGNS.iter().find(|x| x.0 == "strat").unwrap().1;
    let designs = [
        (
            "a",
            format!("{strat}\ncovariance = [\"a-q\", \"a-nope\", \"b-t\", \"a-t\", \"a-t\"]"),
        ),
        ("b", strat.to_string()),
    ];
    let refs: Vec<(&str, &str, f64)> = designs
        .iter()
        .map(|(n, b)| (*n, b.as_str(), 0.95))
        .collect();
    let spec = designs_spec_with(tmp.path(), &refs, |_| {
        vec![
            (
                "t".to_string(),
                "kind = \"survey_total\"".to_string(),
                r#"["SEX"]"#.to_string(),
            ),
            (
                "q".to_string(),
                "kind = \"survey_quantile\"\nvariable = \"y\"\nquantile = 0.5".to_string(),
                r#"["SEX"]"#.to_string(),
            ),
        ]
    });
    let Err(e) = migstat::spec::compile(&spec) else {
        panic!("the spec compiles");
    };
    let e = e.to_string();
    for want in [
        "sources.a.design.covariance: `a-q` is a survey_quantile table",
        "sources.a.design.covariance: no table `a-nope`",
        "sources.a.design.covariance: `b-t` estimates source `b`, not this one",
        "sources.a.design.covariance: `a-t` is listed twice",
    ] {
        assert!(e.contains(want), "{want}\nin:\n{e}");
    }
}
