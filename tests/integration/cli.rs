//! The binary as users run it: exit codes, messages, reports, determinism.

use std::path::Path;

use crate::{manifest, migstat, repo};

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

#[test]
fn check_reports_every_mistake_at_once_and_exits_78() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write(d, "data.csv", "id,age\n1,2\n");
    write(
        d,
        "s.json",
        r#"{"fields": [{"name": "id"}, {"name": "age", "type": "integer"}]}"#,
    );
    write(
        d,
        "bad.toml",
        r#"version = 1
id = "bad"
reference_date = 2024-12-31
reference_period = "2024"

[sources.a]
path = "data.csv"
format = "csv"
schema = "s.json"
delimter = ";"              # mistake 1: unknown key (typo)
person_id = "person"        # mistake 2: a field the schema does not have

[sources.b]
path = "missing.csv"        # mistake 3: no such file
format = "csv"
schema = "nowhere.json"     # mistake 4: no such schema
"#,
    );
    let out = migstat(&["check", d.join("bad.toml").to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "sources.a.delimter: unknown key",
        "sources.a.person_id: field `person` is not in schema",
        "sources.b.path: file not found",
        "sources.b.schema: cannot read schema",
        "4 problem(s)",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    assert!(
        err.contains("bad.toml"),
        "each problem names its file:\n{err}"
    );
}

#[test]
fn unsupported_schema_keys_are_spec_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write(d, "data.csv", "id\n1\n");
    write(
        d,
        "s.json",
        r#"{"fields": [{"name": "id", "type": "integer", "constraints": {"exclusiveMinimum": 0}}], "foreignKeys": []}"#,
    );
    write(
        d,
        "p.toml",
        "version = 1\nid = \"p\"\nreference_date = 2024-12-31\nreference_period = \"2024\"\n[sources.a]\npath = \"data.csv\"\nformat = \"csv\"\nschema = \"s.json\"\n",
    );
    let out = migstat(
        &[
            "run",
            d.join("p.toml").to_str().unwrap(),
            "--out",
            d.join("out").to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("s.json: fields[0].constraints.exclusiveMinimum"),
        "{err}"
    );
    assert!(err.contains("s.json: foreignKeys"), "{err}");
    assert!(
        !d.join("out").exists(),
        "no data is read or written on a spec error"
    );
}

#[test]
fn a_source_beyond_tolerance_is_rejected_with_65_and_out_is_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write(
        d,
        "s.json",
        r#"{"fields": [{"name": "id"}, {"name": "age", "type": "integer", "constraints": {"maximum": 120}}]}"#,
    );
    let spec = "version = 1\nid = \"p\"\nreference_date = 2024-12-31\nreference_period = \"2024\"\n[sources.people]\npath = \"data.csv\"\nformat = \"csv\"\nschema = \"s.json\"\nmax_invalid_fraction = 0.25\n";
    write(d, "p.toml", spec);
    let out_dir = d.join("out");
    let out_arg = out_dir.to_str().unwrap();
    // A good delivery first.
    write(d, "data.csv", "id,age\n1,20\n2,30\n3,40\n4,50\n");
    let ok = migstat(
        &[
            "-q",
            "run",
            d.join("p.toml").to_str().unwrap(),
            "--out",
            out_arg,
        ],
        &[],
    );
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let before = std::fs::read(out_dir.join("current/manifest.json")).unwrap();
    // Then a garbled one: 2 of 4 rows bad, above 25%.
    write(d, "data.csv", "id,age\n1,20\n2,300\n3,x\n4,50\n");
    let bad = migstat(
        &[
            "-q",
            "run",
            d.join("p.toml").to_str().unwrap(),
            "--out",
            out_arg,
        ],
        &[],
    );
    assert_eq!(bad.status.code(), Some(65));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("source `people`")
            && err.contains("2 of 4 rows")
            && err.contains("maximum ×1")
            && err.contains("type ×1"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(out_dir.join("current/manifest.json")).unwrap(),
        before,
        "the previous outputs stay"
    );
    let failed: Vec<_> = std::fs::read_dir(out_dir.join("failed")).unwrap().collect();
    assert_eq!(failed.len(), 1, "the rejected run is kept for inspection");
}

#[test]
fn a_header_that_does_not_match_the_schema_rejects_the_source() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write(
        d,
        "s.json",
        r#"{"fields": [{"name": "id"}, {"name": "age", "type": "integer"}]}"#,
    );
    write(
        d,
        "p.toml",
        "version = 1\nid = \"p\"\nreference_date = 2024-12-31\nreference_period = \"2024\"\n[sources.people]\npath = \"data.csv\"\nformat = \"csv\"\nschema = \"s.json\"\n",
    );
    write(d, "data.csv", "id,agee\n1,20\n");
    let out = migstat(
        &[
            "-q",
            "run",
            d.join("p.toml").to_str().unwrap(),
            "--out",
            d.join("out").to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(65));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("missing: `age`") && err.contains("not in the schema: `agee`"),
        "{err}"
    );
}

/// Two threads spinning until dropped: a loaded machine.
struct BusyLoops(
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    Vec<std::thread::JoinHandle<()>>,
);

impl BusyLoops {
    fn start() -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let handles = (0..2)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                        );
                    }
                })
            })
            .collect();
        BusyLoops(stop, handles)
    }
}

impl Drop for BusyLoops {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        for h in self.1.drain(..) {
            let _ = h.join();
        }
    }
}

#[test]
fn outputs_are_byte_identical_across_runs_thread_counts_time_zones_and_load() {
    let tmp = tempfile::tempdir().unwrap();
    let mut hashes = Vec::new();
    let mut audits = Vec::new();
    // (threads, time zone, two busy loops running)
    for (threads, tz, loaded) in [
        ("1", "UTC", false),
        ("2", "Africa/Casablanca", false),
        ("2", "Pacific/Kiritimati", true),
    ] {
        let out = tmp.path().join(format!("out-{threads}-{}", hashes.len()));
        let busy = loaded.then(BusyLoops::start);
        let envs = [
            ("RAYON_NUM_THREADS", threads),
            ("POLARS_MAX_THREADS", threads),
            ("TZ", tz),
        ];
        let o = migstat(
            &[
                "-q",
                "run",
                "pipelines/observatory.toml",
                "--out",
                out.to_str().unwrap(),
            ],
            &envs,
        );
        // The audit of the release, under the same load: same verdict, same figures.
        let a = migstat(&["audit", out.join("current").to_str().unwrap()], &envs);
        drop(busy);
        assert_eq!(
            a.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&a.stderr)
        );
        audits.push(String::from_utf8_lossy(&a.stdout).to_string());
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let m = manifest(&out);
        // Hash the files ourselves rather than trusting the manifest.
        let files: Vec<(String, String)> = m
            .outputs
            .iter()
            .map(|f| {
                (
                    f.path.clone(),
                    blake3::hash(&std::fs::read(out.join("current").join(&f.path)).unwrap())
                        .to_hex()
                        .to_string(),
                )
            })
            .collect();
        for (f, (_, h)) in m.outputs.iter().zip(&files) {
            assert_eq!(&f.blake3, h, "manifest hash of {}", f.path);
        }
        hashes.push(files);
    }
    assert_eq!(hashes[0], hashes[1]);
    assert_eq!(hashes[1], hashes[2]);
    assert_eq!(audits[0], audits[1]);
    assert_eq!(audits[1], audits[2]);
    assert!(audits[0].contains("passed"), "{}", audits[0]);
}

#[test]
fn report_json_prints_the_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let o = migstat(
        &[
            "-q",
            "run",
            "--report",
            "json",
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0));
    let printed: migstat::runner::Manifest =
        serde_json::from_slice(&o.stdout).expect("stdout is the manifest JSON");
    assert_eq!(printed, manifest(&out));
}

#[test]
fn explain_lists_every_source_and_field() {
    let o = migstat(&["explain"], &[]);
    assert_eq!(o.status.code(), Some(0));
    let text = String::from_utf8_lossy(&o.stdout);
    for s in [
        "source survey",
        "source permits",
        "source asylum",
        "source border",
        "source returns",
        "source trafficking",
    ] {
        assert!(text.contains(s), "{s} in\n{text}");
    }
    assert!(text.contains("date_naissance") && text.contains("format %d/%m/%Y"));
    // The plausibility rules of pipelines/observatory.toml, and the default age range.
    assert!(
        text.contains(
            "check    date_naissance not after date_delivrance (else quarantined: not_after)"
        ),
        "{text}"
    );
    assert!(
        text.contains("plausible 0–120 (else quarantined: age_range)"),
        "{text}"
    );
    let _ = repo();
}

#[test]
fn explain_json_spells_table_kinds_as_the_spec_does() {
    // The kinds the default spec writes (pipelines/observatory.toml), read by hand.
    let o = migstat(&["explain", "--format", "json"], &[]);
    assert_eq!(o.status.code(), Some(0));
    let plan: serde_json::Value = serde_json::from_slice(&o.stdout).expect("explain prints JSON");
    let kind = |id: &str| -> String {
        plan["tables"]
            .as_array()
            .and_then(|ts| ts.iter().find(|t| t["id"] == id))
            .map(|t| t["kind"]["kind"].as_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    };
    assert_eq!(kind("survey_population"), "survey_total");
    assert_eq!(kind("survey_mean_age"), "survey_mean");
    assert_eq!(kind("survey_migration_share"), "survey_proportion");
    assert_eq!(kind("asylum_stock"), "stock");
    assert_eq!(kind("immigration"), "migration");
}

#[test]
fn tabulate_counts_a_parquet_file_with_every_margin() {
    use polars::prelude::*;
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("records.parquet");
    // Five records; one has no region (counted as _U, as in migstat's tables).
    let mut df = df!(
        "SEX" => ["F", "F", "M", "M", "F"],
        "REGION" => [Some("R1"), Some("R2"), Some("R1"), Some("R1"), None],
        "OTHER" => [1, 2, 3, 4, 5],
    )
    .unwrap();
    ParquetWriter::new(std::fs::File::create(&file).unwrap())
        .finish(&mut df)
        .unwrap();
    let out = migstat(
        &["tabulate", file.to_str().unwrap(), "--by", "SEX,REGION"],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut got: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect();
    let header = got.remove(0);
    assert_eq!(header, "SEX,REGION,n");
    got.sort();
    let mut expected: Vec<String> = [
        "F,R1,1", "F,R2,1", "F,_U,1", "F,_T,3", "M,R1,2", "M,_T,2", "_T,R1,3", "_T,R2,1",
        "_T,_U,1", "_T,_T,5",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    expected.sort();
    assert_eq!(got, expected);

    let missing = migstat(
        &["tabulate", file.to_str().unwrap(), "--by", "SEX,AGE"],
        &[],
    );
    assert!(!missing.status.success());
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        err.contains("no column AGE") && err.contains("OTHER"),
        "{err}"
    );
}

/// `migstat tabulate` on the same records as pyarrow (pages v1 and v2, many pages and row
/// groups, plain, overflowing and delta encodings, four compressions), DuckDB, polars and pandas
/// write them: DuckDB's `GROUP BY CUBE` cell for cell, on the dictionary path where the columns
/// allow it (its log says which path counted), and no crash on flipped bits.
#[test]
fn tabulate_agrees_with_duckdb_on_every_writers_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let o = std::process::Command::new("python3")
        .arg(crate::repo().join("tests/tabulate_check.py"))
        .arg(env!("CARGO_BIN_EXE_migstat"))
        .arg(tmp.path())
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success()
            && stdout.contains("tabulate agrees")
            && stdout.contains("damaged files: no crash"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn under_json_logs_every_stderr_line_of_every_failure_is_json_with_its_exit_code() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write(
        d,
        "bad.toml",
        "version = 1\nid = \"bad\"\n[sources.a]\npath = \"x.csv\"\n",
    );
    let bad = d.join("bad.toml");
    let cases: Vec<(Vec<&str>, i32)> = vec![
        // A spec error (78), several lines of text otherwise.
        (
            vec!["run", bad.to_str().unwrap(), "--out", d.to_str().unwrap()],
            78,
        ),
        (vec!["check", bad.to_str().unwrap()], 78),
        // Usage errors (64): a directory that does not exist, an argument clap refuses.
        (vec!["history", "/nonexistent/migstat-out"], 64),
        (vec!["run", "--no-such-flag"], 64),
        (
            vec!["query", "--release", "/nonexistent/release", "SELECT 1"],
            64,
        ),
    ];
    for (args, want) in cases {
        let mut all = vec!["--log-format", "json"];
        all.extend(&args);
        let out = migstat(&all, &[]);
        assert_eq!(out.status.code(), Some(want), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().collect();
        assert!(!lines.is_empty(), "{args:?}: nothing on stderr");
        for l in &lines {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {l}"));
            assert!(v["level"].is_string(), "{args:?}: {l}");
        }
        let last: serde_json::Value = serde_json::from_str(lines[lines.len() - 1]).unwrap();
        assert_eq!(last["level"], "ERROR", "{args:?}");
        assert_eq!(last["fields"]["exit_code"], want, "{args:?}");
        assert!(
            last["fields"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{args:?}"
        );
    }
}
