//! Disclosure control end to end: what reaches the public tier of the default pipeline, and what
//! stops a release. The structural checks (no relation with a lone suppressed cell, nothing
//! published below the threshold, rounding bases) are computed here from the published files,
//! independently of the code that protected them.

use std::collections::BTreeMap;
use std::path::Path;

use polars::prelude::*;

use crate::{read_parquet, repo};

fn public(out: &Path, table: &str) -> DataFrame {
    read_parquet(&out.join(format!("public/tables/{table}/ref_year=2024/data.parquet")))
}

fn strings(df: &DataFrame, c: &str) -> Vec<String> {
    df.column(c)
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|v| v.unwrap_or_default().to_string())
        .collect()
}

/// Check a suppressed table: published values are null exactly where CONF_STATUS is not F, none
/// is below k, and no relation `_T = Σ children` along any dimension holds a single suppressed
/// cell. Returns (primary, secondary) counts.
fn check_suppressed(df: &DataFrame, dims: &[&str], k: u64) -> (usize, usize) {
    let value = df.column("value").unwrap().u64().unwrap().clone();
    let conf = strings(df, "CONF_STATUS");
    let keys: Vec<Vec<String>> = (0..df.height())
        .map(|i| dims.iter().map(|d| strings(df, d)[i].clone()).collect())
        .collect();
    for i in 0..df.height() {
        match conf[i].as_str() {
            "F" => {
                let v = value.get(i).expect("a free cell is published");
                assert!(v == 0 || v >= k, "{:?} published with {v} < {k}", keys[i]);
            }
            "A" | "D" => assert_eq!(value.get(i), None, "{:?} suppressed", keys[i]),
            other => panic!("CONF_STATUS {other}"),
        }
    }
    for j in 0..dims.len() {
        // Group cells that agree except in dimension j.
        let mut groups: BTreeMap<Vec<String>, Vec<usize>> = BTreeMap::new();
        for (i, k) in keys.iter().enumerate() {
            let mut g = k.clone();
            g[j] = String::new();
            groups.entry(g).or_default().push(i);
        }
        for (g, members) in groups {
            let has_total = members.iter().any(|i| keys[*i][j] == "_T");
            if !has_total || members.len() < 2 {
                continue;
            }
            let suppressed = members.iter().filter(|i| conf[**i] != "F").count();
            assert_ne!(
                suppressed, 1,
                "a lone suppressed cell along {} in {g:?}",
                dims[j]
            );
        }
    }
    (
        conf.iter().filter(|c| *c == "A").count(),
        conf.iter().filter(|c| *c == "D").count(),
    )
}

#[test]
fn the_default_release_publishes_only_protected_tables() {
    let (_tmp, out, plan) = crate::default_run();
    let m = crate::manifest(&out);

    let (a, d) = check_suppressed(
        &public(&out, "trafficking"),
        &["SEX", "CHILD", "EXPLOITATION"],
        5,
    );
    assert!(
        a > 0 && d > 0,
        "trafficking has small cells: {a} primary, {d} secondary"
    );
    {
        let t = "trafficking";
        let s = m.protection.iter().find(|s| s.table == t).unwrap();
        assert!(s.audit_passed && s.failures.is_empty(), "{t}: {s:?}");
        assert!(s.narrowest_interval.unwrap() >= 5.0 - 1e-6, "{t}: {s:?}");
        // The restricted audit table keeps every true value.
        let audit = read_parquet(&out.join(format!("restricted/audit/{t}.parquet")));
        let truth =
            read_parquet(&out.join(format!("restricted/tables/{t}/ref_year=2024/data.parquet")));
        let total = |df: &DataFrame, c: &str| df.column(c).unwrap().u64().unwrap().sum();
        assert_eq!(total(&audit, "true_value"), total(&truth, "n"));
    }

    // Rounded tables: multiples of 5 within 5 of the truth (nearest: within 2).
    for (t, dims, max_diff) in [
        (
            "border_crossings",
            vec!["MONTH", "DIRECTION", "SEX", "CITIZENSHIP_REGION"],
            2,
        ),
        (
            "permit_stock",
            vec![
                "SEX",
                "AGE_GROUP",
                "PERMIT_TYPE",
                "CITIZENSHIP_REGION",
                "REGION",
            ],
            4,
        ),
    ] {
        let p = public(&out, t);
        let truth =
            read_parquet(&out.join(format!("restricted/tables/{t}/ref_year=2024/data.parquet")));
        assert_eq!(p.height(), truth.height());
        let v = p.column("value").unwrap().u64().unwrap().clone();
        let n = truth.column("n").unwrap().u64().unwrap().clone();
        for i in 0..p.height() {
            for d in &dims {
                assert_eq!(strings(&p, d)[i], strings(&truth, d)[i]);
            }
            let (v, n) = (v.get(i).unwrap(), n.get(i).unwrap());
            assert_eq!(v % 5, 0, "{t}: {v}");
            assert!(v.abs_diff(n) <= max_diff, "{t}: {n} published as {v}");
        }
    }

    // Survey tables: suppressed cells lose their estimate; low reliability is flagged.
    let s = public(&out, "survey_population");
    let est = s.column("estimate").unwrap().f64().unwrap().clone();
    let conf = strings(&s, "CONF_STATUS");
    let n = s.column("n").unwrap().u64().unwrap().clone();
    for (i, c) in conf.iter().enumerate() {
        assert_eq!(est.get(i).is_none(), c == "A");
        if let Some(n) = n.get(i) {
            assert!(n >= 10, "a published survey cell has {n} respondents");
        }
    }

    // Only protected tables are public: the unprotected count tables are not.
    let public_tables: Vec<String> = std::fs::read_dir(out.join("public/tables"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    for t in &plan.tables {
        let expected = t.protect.is_some() || t.kind.is_survey();
        assert_eq!(public_tables.contains(&t.id), expected, "{}", t.id);
    }
    // No identifier column anywhere in the public tier.
    for f in m.outputs.iter().filter(|o| o.path.starts_with("public/")) {
        let df = read_parquet(&out.join(&f.path));
        for c in df.get_column_names() {
            let c = c.as_str();
            assert!(
                !c.starts_with("raw_")
                    && !["person_id", "id_personne", "case_id", "event_id"].contains(&c),
                "{}: column {c}",
                f.path
            );
        }
    }
}

/// The default spec with one table's protection replaced.
fn with_protection(dir: &Path, table: &str, protect: &str) -> migstat::spec::Plan {
    let spec = std::fs::read_to_string(repo().join("pipelines/observatory.toml")).unwrap();
    let start = spec.find(&format!("[tables.{table}]")).unwrap();
    let at = start + spec[start..].find("protect = ").unwrap();
    let end = at + spec[at..].find('\n').unwrap();
    let spec = format!("{}protect = {protect}{}", &spec[..at], &spec[end..]);
    let spec = spec.replace("../", &format!("{}/", repo().display()));
    let path = dir.join("p.toml");
    std::fs::write(&path, spec).unwrap();
    migstat::spec::compile(&path).unwrap()
}

#[test]
fn a_failed_audit_blocks_the_release() {
    let tmp = tempfile::tempdir().unwrap();
    // No pattern can make a small cell's interval a million wide in a table of 117 records.
    let plan = with_protection(
        tmp.path(),
        "trafficking",
        "{ method = \"suppress\", threshold = 5, protection_range = 1000000 }",
    );
    let out = tmp.path().join("out");
    let m = crate::run_plan(&plan, &out);
    assert_eq!(m.status, "rejected");
    assert!(
        m.rejections.iter().any(|r| r
            .reason
            .contains("table `trafficking`: the disclosure audit failed")),
        "{:?}",
        m.rejections
    );
    assert!(!out.join("public").exists(), "nothing is published");
    assert!(!out.join("restricted").exists());
}

#[test]
fn an_identifier_never_reaches_the_public_tier() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = repo().join("tests/fixtures/stock_flow");
    for f in std::fs::read_dir(&fx).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, tmp.path().join(f.file_name().unwrap())).unwrap();
    }
    // A code derived from the person identifier, in a table headed for the public tier.
    let spec = std::fs::read_to_string(fx.join("pipeline.toml"))
        .unwrap()
        .replace("\"../../../", &format!("\"{}/", repo().display()))
        .replace(
            "TYPE = {",
            "PERSON = { from = \"person\", crosswalk = \"types.csv\", unmapped = \"_U\" }\nTYPE = {",
        )
        + "\n[tables.by_person]\nsource = \"permits\"\nunit = \"records\"\ndimensions = [\"PERSON\"]\nprotect = { method = \"round\", base = 5 }\n";
    let path = tmp.path().join("pipeline.toml");
    std::fs::write(&path, spec).unwrap();
    let plan = migstat::spec::compile(&path).unwrap();
    let m = crate::run_plan(&plan, &tmp.path().join("out"));
    assert_eq!(m.status, "rejected");
    assert!(
        m.rejections
            .iter()
            .any(|r| r.reason.contains("column `PERSON`")
                && r.reason.contains("derived from identifier `person`")),
        "{:?}",
        m.rejections
    );
}
