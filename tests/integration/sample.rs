//! The committed sample and the default pipeline on it.

use crate::{read_parquet, repo};
use migstat::spec::compile;

#[test]
fn committed_sample_is_what_the_generator_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let written = migstat::sample::generate(tmp.path(), 1, 2018).unwrap();
    assert_eq!(written.len(), 6);
    for (path, _) in &written {
        let name = path.file_name().unwrap();
        let committed = std::fs::read(repo().join("sample_data").join(name)).unwrap();
        assert!(
            std::fs::read(path).unwrap() == committed,
            "sample_data/{} differs from `migstat sample --out sample_data`",
            name.to_string_lossy()
        );
    }
}

#[test]
fn one_source_alone_is_the_same_bytes_as_with_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let out = crate::migstat(
        &[
            "sample",
            "--out",
            tmp.path().to_str().unwrap(),
            "--only",
            "border,trafficking",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["border_crossings.csv", "trafficking_referrals.csv"]);
    for n in &names {
        assert!(
            std::fs::read(tmp.path().join(n)).unwrap()
                == std::fs::read(repo().join("sample_data").join(n)).unwrap(),
            "{n}"
        );
    }
    let bad = crate::migstat(
        &[
            "sample",
            "--out",
            tmp.path().to_str().unwrap(),
            "--only",
            "visas",
        ],
        &[],
    );
    assert_eq!(bad.status.code(), Some(64), "a usage error");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("border"));
}

#[test]
fn default_pipeline_accounts_for_every_generated_row() {
    let tmp = tempfile::tempdir().unwrap();
    // Rows per file as the generator counted them while writing: an independent count.
    let generated = migstat::sample::generate(tmp.path(), 1, 2018).unwrap();
    let plan = compile(&repo().join("pipelines/observatory.toml")).unwrap();
    let out = tmp.path().join("out");
    let m = crate::run_plan(&plan, &out);
    assert_eq!(m.status, migstat::manifest::RunStatus::Succeeded);
    assert_eq!(m.sources.len(), 6);
    for s in &m.sources {
        let file = &plan.sources.iter().find(|p| p.id == s.id).unwrap().files[0];
        let (_, rows) = generated
            .iter()
            .find(|(p, _)| p.file_name() == file.file_name())
            .unwrap();
        assert_eq!(s.rows_read, *rows, "{}: rows read vs rows generated", s.id);
        let accepted = crate::read_accepted(&out.join("current"), &s.id);
        assert_eq!(accepted.height() as u64, s.rows_accepted, "{}", s.id);
        let q = read_parquet(&out.join(format!("current/quarantine/{}.parquet", s.id)));
        let distinct = q
            .select(["file", "record"])
            .unwrap()
            .unique_stable(None, polars::prelude::UniqueKeepStrategy::First, None)
            .unwrap();
        assert_eq!(distinct.height() as u64, s.rows_quarantined, "{}", s.id);
        // Conservation from the generator's count and the two files (independent of the
        // manifest, which the runner refuses when it does not add up).
        assert_eq!(
            accepted.height() as u64 + distinct.height() as u64,
            *rows,
            "{}: accepted + quarantined records vs rows generated",
            s.id
        );
        assert_eq!(
            s.quarantine_by_rule.values().sum::<u64>(),
            q.height() as u64,
            "{}",
            s.id
        );
        // About 1% of rows are damaged on purpose; a few damages (unknown but well-formed
        // country codes) are for the harmonize stage to catch, not validation.
        let frac = s.rows_quarantined as f64 / s.rows_read as f64;
        assert!(frac > 0.002 && frac < 0.05, "{}: {frac}", s.id);
    }
    let rules: std::collections::BTreeSet<&str> = m
        .sources
        .iter()
        .flat_map(|s| s.quarantine_by_rule.keys().map(String::as_str))
        .collect();
    for r in [
        "ragged_row",
        "required",
        "type",
        "pattern",
        "minimum",
        "maximum",
        "primary_key",
        "not_after",
        "not_before",
        "age_range",
    ] {
        assert!(rules.contains(r), "the sample exercises {r}");
    }
}

/// The reference implementation of Table Schema, on the same files with the same schemas, must
/// find exactly the invalid records migstat quarantined (and agree on the kind of problem).
#[test]
fn frictionless_finds_the_same_invalid_records() {
    let (_, out, _) = crate::shared_default_run();
    crate::python_check(
        "frictionless_check.py",
        out,
        "frictionless cross-check: agreed",
    );
}
