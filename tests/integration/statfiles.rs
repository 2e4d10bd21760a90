//! SPSS and Stata deliveries (feature `readstat`): the same delivery as the CSV gives the same
//! records and quarantine; value labels serve as crosswalks, file by file; a damaged file is
//! rejected, never a crash. Files written by pyreadstat and pandas (tests/parquet_writers.py).

use std::path::Path;

use polars::prelude::*;

/// The parquet_writers fixture in a temporary directory, its files written, its
/// `statfiles.toml` pointing at the repository's code lists; and its plan.
fn fixture() -> (tempfile::TempDir, migstat::spec::Plan) {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let fixture = crate::repo().join("tests/fixtures/parquet_writers");
    for f in [
        "delivery.csv",
        "delivery.schema.json",
        "waves.schema.json",
        "sex.csv",
    ] {
        std::fs::copy(fixture.join(f), d.join(f)).unwrap();
    }
    let spec = std::fs::read_to_string(fixture.join("statfiles.toml"))
        .unwrap()
        .replace(
            "\"../../../schemas/codelists\"",
            &format!("{:?}", crate::repo().join("schemas/codelists")),
        );
    std::fs::write(d.join("statfiles.toml"), spec).unwrap();
    let o = std::process::Command::new("python3")
        .arg(crate::repo().join("tests/parquet_writers.py"))
        .arg(d)
        .output()
        .expect("python3 runs");
    assert!(
        o.status.success(),
        "parquet_writers.py (pip install -r tests/requirements.txt): {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let plan = migstat::spec::compile(&d.join("statfiles.toml")).unwrap();
    (tmp, plan)
}

fn column(df: &DataFrame, c: &str) -> Vec<String> {
    let s = df.column(c).unwrap().cast(&DataType::String).unwrap();
    s.str()
        .unwrap()
        .iter()
        .map(|v| v.unwrap_or("").to_string())
        .collect()
}

/// (record, field, rule) of each quarantine row of a source, sorted.
fn quarantine(current: &Path, id: &str) -> Vec<String> {
    let df = crate::read_parquet(&current.join(format!("quarantine/{id}.parquet")));
    let (r, f, rule) = (
        column(&df, "record"),
        column(&df, "field"),
        column(&df, "rule"),
    );
    let mut out: Vec<String> = (0..df.height())
        .map(|i| format!("{},{},{}", r[i], f[i], rule[i]))
        .collect();
    out.sort();
    out
}

#[test]
fn spss_and_stata_files_read_like_the_csv() {
    let (tmp, plan) = fixture();
    let m = crate::run_plan(&plan, &tmp.path().join("out"));
    let current = tmp.path().join("out/current");
    let accepted = |id: &str| {
        let df = crate::read_accepted(&current, id);
        df.select([
            "raw_id",
            "raw_born",
            "raw_arrived",
            "raw_children",
            "raw_weight",
            "raw_year",
            "raw_active",
        ])
        .unwrap()
    };
    let csv = accepted("csv");
    // By hand, as for the Parquet writers: a1 and a2 accepted; a3 (13:30 in `arrived`), a4
    // (34.5 children) and a5 (-1 children) quarantined as records 3, 4 and 5.
    assert_eq!(column(&csv, "raw_id"), ["a1", "a2"]);
    for id in ["sav", "zsav", "por", "dta", "pandas_dta"] {
        let s = m.sources.iter().find(|s| s.id == id).unwrap();
        assert_eq!(
            (s.rows_read, s.rows_accepted, s.rows_quarantined),
            (5, 2, 3),
            "{id}: {:?}",
            s.quarantine_by_rule
        );
        assert_eq!(
            quarantine(&current, id),
            ["3,arrived,type", "4,children,type", "5,children,minimum"],
            "{id}"
        );
        assert!(
            accepted(id).equals_missing(&csv),
            "{id}:\n{}\nvs csv:\n{csv}",
            accepted(id)
        );
    }
    // The quarantine shows the datetime, not SPSS's seconds since 1582 or Stata's
    // milliseconds since 1960, and says where it is.
    let q = crate::read_parquet(&current.join("quarantine/sav.parquet"));
    let (raw, msg) = (column(&q, "raw_value"), column(&q, "message"));
    let i = column(&q, "field")
        .iter()
        .position(|f| f == "arrived")
        .unwrap();
    assert_eq!(raw[i], "2021-06-30 13:30:00");
    assert!(msg[i].contains("case 3, variable `arrived`"), "{}", msg[i]);
}

#[test]
fn value_labels_are_crosswalks_file_by_file() {
    let (tmp, plan) = fixture();
    let m = crate::run_plan(&plan, &tmp.path().join("out"));
    let current = tmp.path().join("out/current");
    let sexes = |id: &str| {
        let df = crate::read_accepted(&current, id);
        let (ids, sex) = (column(&df, "raw_id"), column(&df, "SEX"));
        ids.into_iter()
            .zip(sex)
            .map(|(i, s)| format!("{i}={s}"))
            .collect::<Vec<_>>()
    };
    // Wave 1 labels 1 Homme, 2 Femme; wave 2 the other way round; its 9 has no label and no
    // crosswalk entry.
    for id in ["sav_waves", "dta_waves"] {
        assert_eq!(
            sexes(id),
            ["w1-1=M", "w1-2=F", "w1-3=M", "w2-1=F", "w2-2=M"],
            "{id}"
        );
        assert_eq!(quarantine(&current, id), ["3,sex,unmapped_code"], "{id}");
        let s = m.sources.iter().find(|s| s.id == id).unwrap();
        assert_eq!((s.rows_read, s.rows_accepted), (6, 5), "{id}");
    }
    // Without the labels the codes read as the crosswalk's survey codes: wave 2 comes out wrong.
    assert_eq!(
        sexes("codes_only"),
        ["w1-1=M", "w1-2=F", "w1-3=M", "w2-1=M", "w2-2=F"]
    );
}

#[test]
fn text_that_is_not_utf8_is_quarantined_not_replaced() {
    let (tmp, plan) = fixture();
    let m = crate::run_plan(&plan, &tmp.path().join("out"));
    let s = m.sources.iter().find(|s| s.id == "bad_text").unwrap();
    assert_eq!((s.rows_read, s.rows_accepted), (2, 1));
    let current = tmp.path().join("out/current");
    assert_eq!(quarantine(&current, "bad_text"), ["2,id,invalid_encoding"]);
}

/// A small deterministic generator (xorshift) for damaging files.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn a_damaged_or_foreign_file_is_rejected_not_crashed() {
    let (tmp, plan) = fixture();
    let d = tmp.path();
    // Damaged copies of each file: cut at many lengths, and bytes overwritten at random. Each
    // must read to an end or to an error: no panic, no crash, no unbounded message.
    let mut rng = Rng(0x5eed_cafe);
    for (id, file) in [
        ("sav", "spss.sav"),
        ("zsav", "spss.zsav"),
        ("dta", "stata.dta"),
    ] {
        let good = std::fs::read(d.join(file)).unwrap();
        let mut src = plan.sources.iter().find(|s| s.id == id).unwrap().clone();
        let damaged = d.join(format!("damaged-{file}"));
        src.files = vec![damaged.clone()];
        let mut variants: Vec<Vec<u8>> = (0..good.len())
            .step_by(good.len() / 40 + 1)
            .map(|n| good[..n].to_vec())
            .collect();
        for _ in 0..150 {
            let mut v = good.clone();
            for _ in 0..1 + rng.next() % 4 {
                let at = (rng.next() % v.len() as u64) as usize;
                v[at] = rng.next() as u8;
            }
            variants.push(v);
        }
        let (mut read, mut refused) = (0, 0);
        for v in variants {
            std::fs::write(&damaged, &v).unwrap();
            let identity = migstat::manifest::hash_file(&damaged).unwrap();
            let outcome =
                migstat::ingest::FileChunks::open(&src, 0, 2, identity).and_then(|mut c| {
                    let mut rows = 0;
                    while let Some(chunk) = c.next_chunk()? {
                        rows += chunk.height();
                    }
                    Ok(rows)
                });
            match outcome {
                Ok(_) => read += 1,
                Err(e) => {
                    refused += 1;
                    assert!(e.to_string().len() < 4096, "{id}: {e}");
                }
            }
        }
        assert!(
            refused > 0 && read > 0,
            "{id}: {read} read, {refused} refused"
        );
    }
    // A CSV named .sav is not an SPSS file, and says so.
    let mut src = plan.sources.iter().find(|s| s.id == "sav").unwrap().clone();
    let fake = d.join("fake.sav");
    std::fs::copy(d.join("delivery.csv"), &fake).unwrap();
    src.files = vec![fake.clone()];
    let identity = migstat::manifest::hash_file(&fake).unwrap();
    let err = migstat::ingest::FileChunks::open(&src, 0, 2, identity)
        .err()
        .expect("a CSV is not an SPSS file")
        .to_string();
    assert!(err.contains("cannot be read as an SPSS file"), "{err}");
}

#[test]
fn an_spss_file_that_changes_while_it_is_read_is_rejected() {
    let (_tmp, plan) = fixture();
    for id in ["sav", "dta"] {
        let src = plan.sources.iter().find(|s| s.id == id).unwrap();
        let (bytes, _) = migstat::manifest::hash_file(&src.files[0]).unwrap();
        let other = blake3::hash(b"the delivery as it was").to_hex().to_string();
        let mut changed = migstat::ingest::FileChunks::open(src, 0, 2, (bytes, other)).unwrap();
        let err = loop {
            match changed.next_chunk() {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("{id}: a changed file was read to its end without complaint"),
                Err(e) => break e.to_string(),
            }
        };
        assert!(
            err.contains("the file changed while it was read"),
            "{id}: {err}"
        );
        // A reader dropped half-way stops its thread (the test would hang otherwise).
        let identity = migstat::manifest::hash_file(&src.files[0]).unwrap();
        let mut half = migstat::ingest::FileChunks::open(src, 0, 1, identity).unwrap();
        assert!(half.next_chunk().unwrap().is_some());
        drop(half);
    }
}

#[test]
fn value_labels_are_refused_where_no_file_carries_them() {
    let (tmp, _) = fixture();
    let d = tmp.path();
    let spec = std::fs::read_to_string(d.join("statfiles.toml"))
        .unwrap()
        .replace(
            "[sources.sav_waves]\npath = \"wave?.sav\"\nformat = \"spss\"",
            "[sources.sav_waves]\npath = \"delivery.csv\"\nformat = \"csv\"",
        );
    std::fs::write(d.join("csv-labels.toml"), spec).unwrap();
    let Err(err) = migstat::spec::compile(&d.join("csv-labels.toml")) else {
        panic!("value_labels on a CSV source is refused");
    };
    let err = err.to_string();
    assert!(
        err.contains("sources.sav_waves.harmonize.SEX.value_labels: only SPSS and Stata files carry value labels"),
        "{err}"
    );
}
