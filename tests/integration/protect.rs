//! Disclosure control end to end: what reaches the public tier of the default pipeline, and what
//! stops a release. The structural checks (no relation with a lone suppressed cell, nothing
//! published below the threshold, rounding bases) are computed here from the published files,
//! independently of the code that protected them.

use crate::Counts;
use std::collections::BTreeMap;
use std::path::Path;

use polars::prelude::*;

use crate::{migstat, read_parquet, repo};

/// The partition the checks here read: the default pipeline's latest period of each table.
fn part(table: &str) -> &'static str {
    match table {
        "border_crossings" => "2024-12",
        "permit_stock" => "2024-12-31",
        t if t.starts_with("survey") => "2018",
        _ => "2024",
    }
}

fn public(out: &Path, table: &str) -> DataFrame {
    read_parquet(&out.join(format!(
        "public/tables/{table}/{}/data.parquet",
        part(table)
    )))
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

/// The margin of a finest cell's key over the dimensions set in `mask` (`_T` there).
fn masked(key: &[String], mask: u32) -> Vec<String> {
    key.iter()
        .enumerate()
        .map(|(j, c)| {
            if mask & (1 << j) != 0 {
                "_T".into()
            } else {
                c.clone()
            }
        })
        .collect()
}

/// Check a suppressed table: published values are null exactly where CONF_STATUS is not F, none
/// is below k, and no relation `_T = Σ children` along any dimension holds a single suppressed
/// cell. Returns (primary, secondary) counts.
fn check_suppressed(df: &DataFrame, dims: &[&str], k: u64) -> (usize, usize) {
    let value = df.column("value").unwrap().counts().clone();
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
            "C" => assert_eq!(value.get(i), None, "{:?} suppressed", keys[i]),
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
        conf.iter().filter(|c| *c == "C").count(),
        value
            .iter()
            .filter(|v| v.is_some_and(|v| v > 0 && v < k))
            .count(),
    )
}

#[test]
fn the_default_release_publishes_only_protected_tables() {
    let (_, out, plan) = crate::shared_default_run();
    let m = crate::manifest(out);

    // asylum sets publish_grand_total: its total is published, and true (the sample's accepted
    // registrations of 2024, each person once).
    let asylum = public(out, "asylum");
    let accepted = crate::read_accepted(out, "asylum")
        .lazy()
        .filter(col("raw_registration_date").dt().year().eq(lit(2024)))
        .collect()
        .unwrap();
    let persons = accepted
        .column("raw_person_id")
        .unwrap()
        .as_materialized_series()
        .n_unique()
        .unwrap() as u64;
    let dims = [
        "STATUS",
        "SEX",
        "AGE_GROUP",
        "CITIZENSHIP_REGION",
        "CITIZENSHIP",
    ];
    let cols: Vec<Vec<String>> = dims.iter().map(|d| strings(&asylum, d)).collect();
    let total_row = (0..asylum.height())
        .find(|&i| cols.iter().all(|c| c[i] == "_T"))
        .expect("a grand total row");
    let value = asylum.column("value").unwrap().counts().get(total_row);
    assert_eq!(value, Some(persons), "asylum's grand total is published");

    for (t, dims) in [
        ("trafficking", vec!["SEX", "CHILD", "EXPLOITATION"]),
        (
            "asylum",
            vec![
                "STATUS",
                "SEX",
                "AGE_GROUP",
                "CITIZENSHIP_REGION",
                "CITIZENSHIP",
            ],
        ),
    ] {
        let p = public(out, t);
        let (suppressed, small) = check_suppressed(&p, &dims, 5);
        let truth =
            read_parquet(&out.join(format!("restricted/tables/{t}/{}/data.parquet", part(t))));
        let n = truth.column("n").unwrap().counts().clone();
        let primary = n
            .iter()
            .filter(|v| v.is_some_and(|v| v > 0 && v < 5))
            .count();
        assert_eq!(small, 0, "{t}: a small count published");
        assert!(
            primary > 0 && suppressed > primary,
            "{t} has small cells: {primary} primary, {suppressed} suppressed"
        );
        let s = m.protection.iter().find(|s| s.table == t).unwrap();
        assert!(s.audit_passed && s.failures.is_empty(), "{t}: {s:?}");
        assert!(s.narrowest_interval.unwrap() >= RANGE - 1e-6, "{t}: {s:?}");
        // Every one-way margin that is not itself small is published, except, in trafficking,
        // the one the others force: SEX's margins give the total, so with OTHER (4) suppressed
        // one more EXPLOITATION margin must go.
        let conf = strings(&p, "CONF_STATUS");
        let keys: Vec<Vec<String>> = (0..p.height())
            .map(|i| dims.iter().map(|d| strings(&p, d)[i].clone()).collect())
            .collect();
        let truth_keys: BTreeMap<Vec<String>, u64> = (0..truth.height())
            .map(|i| {
                (
                    dims.iter().map(|d| strings(&truth, d)[i].clone()).collect(),
                    n.get(i).unwrap(),
                )
            })
            .collect();
        let coded = |k: &Vec<String>| k.iter().filter(|c| *c != "_T").count();
        // asylum's country implies its region: a country margin is coded in both.
        let one_way = |k: &Vec<String>| {
            coded(k) == 1 || (t == "asylum" && coded(k) == 2 && k[..3].iter().all(|c| c == "_T"))
        };
        let lost: Vec<&Vec<String>> = (0..p.height())
            .filter(|i| {
                // The series' frame: a code of another year is a zero here.
                let n = truth_keys.get(&keys[*i]).copied().unwrap_or(0);
                one_way(&keys[*i]) && conf[*i] == "C" && n >= 5
            })
            .map(|i| &keys[i])
            .collect();
        // asylum's year is small (about 150 persons over 5 dimensions): a country total may
        // go where each of its cells is small (TUN 2024: 6 persons, every cell 1 to 3), but
        // never most of them.
        let eligible = (0..p.height())
            .filter(|i| one_way(&keys[*i]) && truth_keys.get(&keys[*i]).copied().unwrap_or(0) >= 5)
            .count();
        let allowed = if t == "trafficking" { 1 } else { eligible / 4 };
        assert!(
            lost.len() <= allowed,
            "{t}: one-way margins lost: {lost:?} of {eligible}"
        );
        // The restricted audit table keeps every true value.
        let audit =
            read_parquet(&out.join(format!("restricted/audit/{t}/{}/audit.parquet", part(t))));
        let total = |df: &DataFrame, c: &str| df.column(c).unwrap().counts().sum();
        assert_eq!(total(&audit, "true_value"), total(&truth, "n"));
    }

    // The release audit: the published pattern with the restricted true values for every table;
    // exact LP intervals from the public file alone for trafficking.
    use migstat::protect::{Depth, audit_release};
    let exact = audit_release(out, Depth::Exact, Some("trafficking")).unwrap();
    assert_eq!(exact.len(), 5, "one check per year");
    for e in &exact {
        assert!(e.failures.is_empty(), "{:?}", e.failures);
        assert!(e.narrowest_interval.unwrap() >= RANGE - 1e-6);
    }
    let checks = audit_release(out, Depth::Certified, None).unwrap();
    for (t, periods) in [
        ("trafficking", 5),
        ("asylum", 10),
        ("first_permits", 11),
        ("assisted_returns", 5),
    ] {
        // Every period's file.
        let c: Vec<_> = checks.iter().filter(|c| c.table == t).collect();
        assert_eq!(c.len(), periods, "{t}: {checks:?}");
        for c in c {
            assert!(c.failures.is_empty(), "{t}: {:?}", c.failures);
            if c.method == migstat::manifest::Method::Suppress {
                assert!(c.audited > 0 && c.narrowest_interval.unwrap() >= RANGE - 1e-6);
            }
        }
    }

    // Perturbed tables: the whole frame (every cell of the truth, and zeros), each published
    // value within the method's reach of the truth, and every margin the sum of its finest cells.
    let truth_of = |t: &str, dims: &[&str]| -> BTreeMap<Vec<String>, u64> {
        let truth =
            read_parquet(&out.join(format!("restricted/tables/{t}/{}/data.parquet", part(t))));
        let n = truth.column("n").unwrap().counts().clone();
        let cols: Vec<Vec<String>> = dims.iter().map(|d| strings(&truth, d)).collect();
        (0..truth.height())
            .map(|i| {
                (
                    cols.iter().map(|c| c[i].clone()).collect(),
                    n.get(i).unwrap(),
                )
            })
            .collect()
    };
    for (t, dims, max_diff, multiple) in [
        (
            "first_permits",
            vec!["SEX", "AGE_GROUP", "PERMIT_TYPE"],
            3,
            1,
        ),
        (
            "assisted_returns",
            vec!["SEX", "AGE_GROUP", "COUNTRY_OF_RETURN"],
            3,
            1,
        ),
        (
            "border_crossings",
            vec!["DIRECTION", "SEX", "CITIZENSHIP_REGION"],
            2,
            5,
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
            5,
        ),
    ] {
        let p = public(out, t);
        let truth = truth_of(t, &dims);
        let cols: Vec<Vec<String>> = dims.iter().map(|d| strings(&p, d)).collect();
        let v = p.column("value").unwrap().counts().clone();
        let mut published: BTreeMap<Vec<String>, u64> = BTreeMap::new();
        for i in 0..p.height() {
            let key: Vec<String> = cols.iter().map(|c| c[i].clone()).collect();
            published.insert(key, v.get(i).expect("a perturbed cell is published"));
        }
        assert_eq!(published.len(), p.height(), "{t}: a cell twice");
        let mut changed = 0;
        let mut sums: BTreeMap<Vec<String>, u64> = BTreeMap::new();
        for (key, pv) in &published {
            let n = truth.get(key).copied().unwrap_or(0);
            assert!(
                truth.contains_key(key) || n == 0,
                "{t}: {key:?} is not in the frame"
            );
            if key.iter().all(|c| c != "_T") {
                assert_eq!(pv % multiple, 0, "{t}: {pv}");
                assert!(pv.abs_diff(n) <= max_diff, "{t}: {n} published as {pv}");
                assert!(n != 0 || *pv == 0, "{t}: a zero published as {pv}");
                if multiple == 1 {
                    assert!(*pv != 1 && *pv != 2, "{t}: {n} published as {pv}");
                }
                changed += usize::from(*pv != n);
                for mask in 0..(1u32 << dims.len()) {
                    *sums.entry(masked(key, mask)).or_default() += pv;
                }
            }
        }
        for key in truth.keys() {
            assert!(published.contains_key(key), "{t}: {key:?} not published");
        }
        for (key, pv) in &published {
            assert_eq!(
                sums.get(key).copied().unwrap_or(0),
                *pv,
                "{t}: {key:?} not additive"
            );
        }
        assert!(changed > 0, "{t}: no cell perturbed");
    }

    // Survey tables: suppressed cells lose their estimate; low reliability is flagged.
    let s = public(out, "survey_population");
    let est = s.column("estimate").unwrap().f64().unwrap().clone();
    let conf = strings(&s, "CONF_STATUS");
    let obs = strings(&s, "OBS_STATUS");
    assert!(s.column("n").is_err(), "respondent counts stay restricted");
    for (i, c) in conf.iter().enumerate() {
        // Empty when confidential (Q, C) or too unreliable (U, F); a confidential cell is
        // always empty; an empty value is never marked A (U with a value: use with caution).
        let empty = est.get(i).is_none();
        assert!(
            !empty || c == "C" || obs[i] == "U",
            "row {i}: {c} {}",
            obs[i]
        );
        assert!(c != "C" || empty, "row {i}: a confidential value published");
        assert!(!empty || obs[i] != "A", "row {i}: an empty value marked A");
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
        let columns: Vec<String> = if f.path.ends_with(".parquet") {
            let df = read_parquet(&out.join(&f.path));
            df.get_column_names()
                .iter()
                .map(|c| c.to_string())
                .collect()
        } else if f.path.ends_with(".csv") {
            let text = std::fs::read_to_string(out.join(&f.path)).unwrap();
            let header = text.lines().next().unwrap_or_default();
            header.split(',').map(str::to_string).collect()
        } else {
            continue;
        };
        for c in &columns {
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

/// The default protection range of cell suppression.
const RANGE: f64 = migstat::protect::DEFAULT_PROTECTION_RANGE;

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
    // No pattern can make a small cell's interval a million wide in a table of 117 records whose
    // grand total stays published.
    let plan = with_protection(
        tmp.path(),
        "trafficking",
        "{ method = \"suppress\", threshold = 5, protection_range = 1000000, publish_grand_total = true }",
    );
    let out = tmp.path().join("out");
    let m = crate::run_plan(&plan, &out);
    assert_eq!(m.status, migstat::manifest::RunStatus::Rejected);
    assert!(
        m.rejections.iter().any(|r| r
            .reason
            .contains("table `trafficking`: the disclosure audit failed")),
        "{:?}",
        m.rejections
    );
    assert!(!out.join("current").exists(), "nothing is published");
    assert!(!out.join("releases").exists());
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
    assert_eq!(m.status, migstat::manifest::RunStatus::Rejected);
    assert!(
        m.rejections
            .iter()
            .any(|r| r.reason.contains("column `PERSON`")
                && r.reason.contains("derived from identifier `person`")),
        "{:?}",
        m.rejections
    );
}

#[test]
fn the_release_audit_catches_a_tampered_release() {
    let (_tmp, out, _plan) = crate::default_run();
    // Publish every secondary cell of trafficking: its primary cells become derivable.
    let t = "trafficking";
    let path = out.join(format!("public/tables/{t}/{}/data.parquet", part(t)));
    let audit = read_parquet(&out.join(format!("restricted/audit/{t}/{}/audit.parquet", part(t))));
    let mut df = read_parquet(&path);
    // Primary and secondary cells look alike in public (CONF_STATUS C); the restricted audit
    // table says which is which, and holds the truth.
    let dims = ["SEX", "CHILD", "EXPLOITATION"];
    let key_of = |df: &DataFrame, i: usize| -> Vec<String> {
        dims.iter().map(|d| strings(df, d)[i].clone()).collect()
    };
    let rules = strings(&audit, "rule");
    let true_values = audit.column("true_value").unwrap().counts().clone();
    let by_key: BTreeMap<Vec<String>, (String, Option<u64>)> = (0..audit.height())
        .map(|i| (key_of(&audit, i), (rules[i].clone(), true_values.get(i))))
        .collect();
    let secondary: BooleanChunked = (0..df.height())
        .map(|i| Some(by_key[&key_of(&df, i)].0 == "secondary"))
        .collect();
    let truth: UInt64Chunked = (0..df.height())
        .map(|i| by_key[&key_of(&df, i)].1)
        .collect();
    assert!(secondary.sum().unwrap_or(0) > 0);
    let value = df.column("value").unwrap().counts().clone();
    let revealed: UInt64Chunked = truth
        .iter()
        .zip(value.iter())
        .zip(secondary.iter())
        .map(|((t, v), d)| if d == Some(true) { t } else { v })
        .collect();
    let conf: StringChunked = df
        .column("CONF_STATUS")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .zip(secondary.iter())
        .map(|(c, d)| if d == Some(true) { Some("F") } else { c })
        .collect();
    df.with_column(
        revealed
            .into_series()
            .with_name("value".into())
            .cast(&DataType::Int64)
            .unwrap()
            .into_column(),
    )
    .unwrap();
    df.with_column(
        conf.into_series()
            .with_name("CONF_STATUS".into())
            .into_column(),
    )
    .unwrap();
    let mut f = std::fs::File::create(&path).unwrap();
    ParquetWriter::new(&mut f).finish(&mut df).unwrap();

    use migstat::protect::{Depth, audit_release};
    for depth in [Depth::Certified, Depth::Exact] {
        let checks = audit_release(&out, depth, Some(t)).unwrap();
        let c = checks.iter().find(|c| c.file == path).unwrap();
        // Caught: the published pattern is not the one the ledger recorded.
        assert!(
            c.failures.iter().any(|f| f.contains("the ledger says")),
            "{depth:?}: {:?}",
            c.failures
        );
    }
    // The other tables still pass.
    let checks = audit_release(&out, Depth::Certified, None).unwrap();
    assert!(
        checks
            .iter()
            .filter(|c| c.file != path)
            .all(|c| c.failures.is_empty())
    );
    // A published value that is not the truth is caught too.
    let mut df = read_parquet(&path);
    let v: UInt64Chunked = df
        .column("value")
        .unwrap()
        .counts()
        .iter()
        .enumerate()
        .map(|(i, v)| if i == 0 { v.map(|v| v + 1) } else { v })
        .collect();
    df.with_column(v.into_series().with_name("value".into()).into_column())
        .unwrap();
    ParquetWriter::new(std::fs::File::create(&path).unwrap())
        .finish(&mut df)
        .unwrap();
    let checks = audit_release(&out, Depth::Certified, Some(t)).unwrap();
    let c = checks.iter().find(|c| c.file == path).unwrap();
    assert!(
        c.failures
            .iter()
            .any(|f| f.contains("but the restricted tier says")),
        "{:?}",
        c.failures
    );
}

/// The default spec with a second cell-key table over the returns, coarser than
/// `assisted_returns`, and the returns delivery at `returns` (a Parquet file).
fn cell_key_spec(dir: &Path, returns: &Path, seed: u64) -> migstat::spec::Plan {
    let key = dir.join(format!("key{seed}.txt"));
    std::fs::write(&key, key_text(seed)).unwrap();
    let spec = std::fs::read_to_string(repo().join("pipelines/observatory.toml"))
        .unwrap()
        .replace(
            "key_file = \"../.migstat/protection.key\"",
            &format!("key_file = {:?}", key.display().to_string()),
        )
        .replace(
            "\"../sample_data/assisted_returns.parquet\"",
            &format!("{:?}", returns.display().to_string()),
        )
        .replace("../", &format!("{}/", repo().display()))
        + "\n[tables.returns_by_sex_age]\nsource = \"returns\"\nunit = \"records\"\ndimensions = [\"SEX\", \"AGE_GROUP\"]\nprotect = { method = \"cell_key\" }\n";
    let path = dir.join(format!("p{seed}.toml"));
    std::fs::write(&path, spec).unwrap();
    migstat::spec::compile(&path).unwrap()
}

/// A protection key's text for a test (the spec names the file; never a secret).
fn key_text(seed: u64) -> String {
    format!("test-protection-key-{seed:020}")
}

/// (SEX, AGE_GROUP, COUNTRY_OF_RETURN or "") → published value.
fn published(out: &Path, table: &str) -> BTreeMap<Vec<String>, u64> {
    let df = public(out, table);
    let dims: Vec<&str> = ["SEX", "AGE_GROUP", "COUNTRY_OF_RETURN"]
        .into_iter()
        .filter(|d| df.column(d).is_ok())
        .collect();
    let v = df.column("value").unwrap().counts().clone();
    (0..df.height())
        .map(|i| {
            (
                dims.iter().map(|d| strings(&df, d)[i].clone()).collect(),
                v.get(i).unwrap(),
            )
        })
        .collect()
}

#[test]
fn cell_key_noise_follows_the_records_across_tables_and_releases() {
    let tmp = tempfile::tempdir().unwrap();
    // The delivery without its duplicated return ids (which of two duplicates is kept depends on
    // the order of delivery); release 2 receives the same records in the opposite order.
    let all = read_parquet(&repo().join("sample_data/assisted_returns.parquet"));
    let ids: Vec<String> = (0..all.height())
        .map(|i| all.column("return_id").unwrap().get(i).unwrap().to_string())
        .collect();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for id in &ids {
        *seen.entry(id).or_default() += 1;
    }
    let once: BooleanChunked = ids.iter().map(|id| Some(seen[id.as_str()] == 1)).collect();
    let mut df = all.filter(&once).unwrap();
    assert!(df.height() < all.height() && df.height() > 300);
    let original = tmp.path().join("returns.parquet");
    ParquetWriter::new(std::fs::File::create(&original).unwrap())
        .finish(&mut df)
        .unwrap();
    let mut df = df.reverse();
    let reversed = tmp.path().join("returns_reversed.parquet");
    ParquetWriter::new(std::fs::File::create(&reversed).unwrap())
        .finish(&mut df)
        .unwrap();

    let run = |returns: &Path, seed: u64, name: &str| {
        let out = tmp.path().join(name);
        let m = crate::run_plan(&cell_key_spec(tmp.path(), returns, seed), &out);
        assert_eq!(
            m.status,
            migstat::manifest::RunStatus::Succeeded,
            "{:?}",
            m.rejections
        );
        out.join("current")
    };
    let first = run(&original, 20241231, "r1");
    let second = run(&reversed, 20241231, "r2");
    let other_seed = run(&original, 7, "r3");

    let fine = published(&first, "assisted_returns");
    let coarse = published(&first, "returns_by_sex_age");
    // Two tables: each (sex, age group) cell of the coarse table holds the same records as the
    // fine table's cell with country `_T`, so it gets the same noise.
    let mut compared = 0;
    for (k, v) in &coarse {
        let mut f = k.clone();
        f.push("_T".to_string());
        assert_eq!(fine[&f], *v, "{k:?}");
        compared += 1;
    }
    assert!(compared >= 4);
    // Two releases: the same records give the same published tables.
    assert_eq!(published(&second, "assisted_returns"), fine);
    assert_eq!(published(&second, "returns_by_sex_age"), coarse);
    // The noise does depend on the key: another key publishes something else.
    assert_ne!(published(&other_seed, "assisted_returns"), fine);

    // Independently of the table code: each finest cell's key is the sum of its records' keys
    // mod 1, computed here from the accepted records (of 2024, the partition read); its
    // published count is the perturbation table's for (count, key); every margin is the sum of
    // its published finest cells.
    let accepted = crate::read_accepted(&first, "returns")
        .lazy()
        .filter(col("raw_departure_date").dt().year().eq(lit(2024)))
        .collect()
        .unwrap();
    let ids = strings(
        &accepted
            .clone()
            .lazy()
            .select([col("raw_return_id").cast(DataType::String)])
            .collect()
            .unwrap(),
        "raw_return_id",
    );
    let dims = ["SEX", "AGE_GROUP", "COUNTRY_OF_RETURN"];
    let cols: Vec<Vec<String>> = dims.iter().map(|d| strings(&accepted, d)).collect();
    let key = migstat::protect::Secret::from_text(&key_text(20241231), "test")
        .unwrap()
        .derive("cell key");
    let mut cells: BTreeMap<Vec<String>, (u64, u32)> = BTreeMap::new();
    for i in 0..accepted.height() {
        let k = migstat::protect::record_key(&key, &ids[i]);
        let e = cells
            .entry(cols.iter().map(|c| c[i].clone()).collect())
            .or_default();
        e.0 += 1;
        e.1 = e.1.wrapping_add(k);
    }
    let ptable = migstat::protect::PTable::default();
    let mut margins: BTreeMap<Vec<String>, u64> = BTreeMap::new();
    for (k, (n, sum)) in &cells {
        let want = ptable.perturb(*n, migstat::protect::cell_key(*sum));
        assert_eq!(fine[k], want, "{k:?}");
        for mask in 0..8u32 {
            *margins.entry(masked(k, mask)).or_default() += want;
        }
    }
    for (k, v) in &fine {
        assert_eq!(
            margins.get(k).copied().unwrap_or(0),
            *v,
            "{k:?} is not additive"
        );
    }
}

#[test]
fn a_hierarchy_the_data_break_blocks_the_release() {
    let tmp = tempfile::tempdir().unwrap();
    // Sex does not nest within age group: each sex code lies under every age group.
    let spec = std::fs::read_to_string(repo().join("pipelines/observatory.toml"))
        .unwrap()
        .replace(
            "hierarchies = { CITIZENSHIP = \"CITIZENSHIP_REGION\" }",
            "hierarchies = { CITIZENSHIP = \"CITIZENSHIP_REGION\", SEX = \"AGE_GROUP\" }",
        )
        .replace("../", &format!("{}/", repo().display()));
    assert!(spec.contains("SEX = \"AGE_GROUP\""));
    let path = tmp.path().join("p.toml");
    std::fs::write(&path, spec).unwrap();
    let plan = migstat::spec::compile(&path).unwrap();
    let out = tmp.path().join("out");
    let m = crate::run_plan(&plan, &out);
    assert_eq!(m.status, migstat::manifest::RunStatus::Rejected);
    let reason = m
        .rejections
        .iter()
        .map(|r| r.reason.clone())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        reason.contains("table `asylum`")
            && reason.contains("hierarchy SEX within AGE_GROUP: code `F` lies under"),
        "{reason}"
    );
    // The declared hierarchy of the default spec holds: CITIZENSHIP is not named.
    assert!(!reason.contains("CITIZENSHIP within"), "{reason}");
    assert!(!out.join("current").exists());
}

/// Every file below `dir`, recursively.
fn files_below(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn no_public_byte_carries_a_secret_or_a_restricted_path() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("secret.key");
    let key_text = "a-very-secret-protection-key-0123456789";
    std::fs::write(&key, key_text).unwrap();
    let spec = std::fs::read_to_string(repo().join("pipelines/observatory.toml"))
        .unwrap()
        .replace(
            "key_file = \"../.migstat/protection.key\"",
            &format!("key_file = {:?}", key.display().to_string()),
        )
        .replace("../", &format!("{}/", repo().display()));
    let path = tmp.path().join("p.toml");
    std::fs::write(&path, spec).unwrap();
    let plan = migstat::spec::compile(&path).unwrap();
    let out = tmp.path().join("out");
    let m = crate::run_plan(&plan, &out);
    assert_eq!(
        m.status,
        migstat::manifest::RunStatus::Succeeded,
        "{:?}",
        m.rejections
    );
    let release = out.join("current");
    // What must never appear: the key (as text, and each purpose's derived key in hex and raw),
    // where the key lives, where the deliveries and the restricted tier live.
    let secret = migstat::protect::Secret::from_text(key_text, "test").unwrap();
    let mut needles: Vec<Vec<u8>> = vec![
        key_text.as_bytes().to_vec(),
        key.display().to_string().into_bytes(),
        b"secret.key".to_vec(),
        tmp.path().display().to_string().into_bytes(),
        repo().display().to_string().into_bytes(),
        b"sample_data".to_vec(),
        b"restricted/".to_vec(),
    ];
    for purpose in ["cell key", "random rounding"] {
        let d = secret.derive(purpose);
        needles.push(d.to_vec());
        needles.push(
            d.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
                .into_bytes(),
        );
    }
    let mut scanned = 0;
    for dir in ["public", "report"] {
        for f in files_below(&release.join(dir)) {
            let bytes = std::fs::read(&f).unwrap();
            for n in &needles {
                assert!(
                    !bytes.windows(n.len()).any(|w| w == n.as_slice()),
                    "{} holds {:?}",
                    f.display(),
                    String::from_utf8_lossy(n)
                );
            }
            scanned += 1;
        }
    }
    assert!(scanned >= 10, "{scanned} public files");
}

/// The independent intruder (`tests/attacker.py`, scipy's HiGHS) on the protected count tables
/// of the default release: LP over all relations of each group, integer bounds near the range.
#[test]
fn an_independent_attacker_finds_nothing_in_the_default_release() {
    let (_, out, _) = crate::shared_default_run();
    let o = std::process::Command::new("python3")
        .arg(repo().join("tests/attacker.py"))
        .arg(out)
        .arg("--methods=suppress")
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && stdout.contains(", 0 disclosures"),
        "attacker:\n{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Randomized specs with several linked tables (the same persons counted in several tables of
/// a source, one protection problem per group): the independent attacker finds nothing. The
/// tables are drawn from a fixed generator (the same draws on every run, so a failure can be
/// reproduced), over the asylum and trafficking sources of the bundled sample.
#[test]
fn an_independent_attacker_finds_nothing_in_randomized_linked_tables() {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move |n: usize| -> usize {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let asylum_dims = ["STATUS", "SEX", "AGE_GROUP", "CITIZENSHIP_REGION"];
    for round in 0..2 {
        let threshold = [3, 5, 8][next(3)];
        let keep_total = next(2) == 1;
        let protect = format!(
            "{{ method = \"suppress\", threshold = {threshold}, publish_grand_total = {keep_total} }}"
        );
        let spec = std::fs::read_to_string(repo().join("pipelines/observatory.toml")).unwrap();
        // Every suppression table of the two sources takes the drawn protection (a group has
        // one protection).
        let mut spec = spec
            .lines()
            .map(|l| {
                if l.starts_with("protect = { method = \"suppress\"") {
                    format!("protect = {protect}")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let mut drawn = Vec::new();
        for t in 0..2 + next(2) {
            // Two or three distinct dimensions of the asylum source, in a drawn order.
            let mut pool: Vec<&str> = asylum_dims.to_vec();
            let mut dims = Vec::new();
            for _ in 0..2 + next(2) {
                dims.push(pool.remove(next(pool.len())));
            }
            spec += &format!(
                "\n\n[tables.asylum_extra_{t}]\nsource = \"asylum\"\nunit = \"persons\"\ndimensions = {dims:?}\nprotect = {protect}\n"
            );
            drawn.push(dims);
        }
        let trafficking = [["SEX", "EXPLOITATION"], ["CHILD", "EXPLOITATION"]][next(2)];
        spec += &format!(
            "\n[tables.trafficking_extra]\nsource = \"trafficking\"\nunit = \"records\"\ndimensions = {trafficking:?}\nprotect = {protect}\n"
        );
        let spec = spec.replace("../", &format!("{}/", repo().display()));
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("p.toml");
        std::fs::write(&path, &spec).unwrap();
        let out = tmp.path().join("out");
        let o = migstat(
            &[
                "-q",
                "run",
                path.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
            &[],
        );
        assert_eq!(
            o.status.code(),
            Some(0),
            "round {round} ({protect}, asylum {drawn:?}, trafficking {trafficking:?}): {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let a = std::process::Command::new("python3")
            .arg(repo().join("tests/attacker.py"))
            .arg(out.join("current"))
            .arg("--methods=suppress")
            .output()
            .expect("python3 runs");
        let stdout = String::from_utf8_lossy(&a.stdout);
        assert!(
            a.status.success() && stdout.contains(", 0 disclosures"),
            "round {round} ({protect}, asylum {drawn:?}, trafficking {trafficking:?}): attacker:\n{stdout}\n{}",
            String::from_utf8_lossy(&a.stderr)
        );
        // The extra tables joined their source's group: the attacker saw them together.
        let groups = String::from_utf8_lossy(&a.stderr);
        let asylum_group = groups
            .lines()
            .find(|l| l.contains("tables asylum,"))
            .unwrap_or_else(|| panic!("round {round}: no asylum group attacked:\n{groups}"));
        for t in 0..drawn.len() {
            assert!(
                asylum_group.contains(&format!("asylum_extra_{t}")),
                "round {round}: asylum_extra_{t} not in the asylum group:\n{groups}"
            );
        }
        assert!(
            groups
                .lines()
                .any(|l| l.contains("trafficking,trafficking_extra")),
            "round {round}: trafficking_extra not in trafficking's group:\n{groups}"
        );
    }
}
