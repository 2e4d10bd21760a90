//! End-to-end tests, in one binary (each test binary linking polars is large).
//!
//! Expectations are independent of the code under test: hand-written fixtures
//! (`tests/fixtures/`), the sample generator's own row counts, the committed sample's bytes, and
//! properties with a known answer. The Python `frictionless` package cross-checks validation of
//! the whole sample separately (`tests/frictionless_check.py`, run by `.ci/run`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic here is a failing test or bench

mod cli;
mod codelists;
#[cfg(feature = "distributed")]
mod distributed;
mod fixtures;
mod fuzz;
mod ingest;
mod properties;
mod protect;
mod publish;
mod releases;
#[cfg(feature = "sample")]
mod sample;
#[cfg(feature = "readstat")]
mod statfiles;
mod structure;
mod survey;
mod tables;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use polars::prelude::*;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn migstat(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_migstat"));
    cmd.args(args).current_dir(repo());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("the migstat binary runs")
}

/// A count column of a written file as unsigned values, after checking it is written as
/// Int64 (every integer of a release is signed, so readers can subtract counts).
pub trait Counts {
    fn counts(&self) -> UInt64Chunked;
}

impl Counts for Column {
    fn counts(&self) -> UInt64Chunked {
        assert_eq!(
            self.dtype(),
            &DataType::Int64,
            "{}: every integer a release writes is Int64",
            self.name()
        );
        self.cast(&DataType::UInt64)
            .expect("a count is not negative")
            .u64()
            .expect("UInt64")
            .clone()
    }
}

pub fn read_parquet(path: &Path) -> DataFrame {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    ParquetReader::new(f).finish().expect("read parquet")
}

/// A source's accepted records in a release: every part (`delivery=<k>/part-0.parquet`, one
/// per delivery file) in file order, as one frame. Anything else in the directory fails.
pub fn read_accepted(release: &Path, source: &str) -> DataFrame {
    read_accepted_parts(release, source)
        .iter()
        .map(|p| read_parquet(p))
        .reduce(|mut a, b| {
            a.vstack_mut_owned(b).expect("parts of one schema");
            a
        })
        .unwrap_or_else(|| panic!("no accepted part of {source}"))
}

/// The parts of a source's accepted records in a release, in file order.
pub fn read_accepted_parts(release: &Path, source: &str) -> Vec<PathBuf> {
    let dir = release.join("restricted/accepted").join(source);
    let mut parts: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    parts.sort();
    parts
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            assert_eq!(
                d.file_name().unwrap().to_string_lossy(),
                format!("delivery={i:06}"),
                "{}",
                d.display()
            );
            let names: Vec<_> = std::fs::read_dir(&d)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(names, ["part-0.parquet"], "{}", d.display());
            d.join("part-0.parquet")
        })
        .collect()
}

/// Run one of the Python reference checks (`tests/<script>`) on the default pipeline's output in
/// `out`; it must succeed and print `<done>`.
pub fn python_check(script: &str, out: &Path, done: &str) {
    python_check_with(
        script,
        &repo().join("pipelines/observatory.toml"),
        out,
        done,
    )
}

/// [`python_check`] for another pipeline (a fixture's).
pub fn python_check_with(script: &str, pipeline: &Path, out: &Path, done: &str) {
    let o = Command::new("python3")
        .arg(repo().join("tests").join(script))
        .arg(pipeline)
        .arg(out)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && stdout.contains(done),
        "{script} failed (install its packages with `python3 -m pip install -r tests/requirements.txt`):\n{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Run the default pipeline into a fresh temporary directory: (the directory, the release it
/// published — `out/current` —, the plan).
pub fn default_run() -> (tempfile::TempDir, PathBuf, migstat::spec::Plan) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = tmp.path().join("out");
    let plan = migstat::spec::compile(&repo().join("pipelines/observatory.toml"))
        .expect("the default spec compiles");
    run_plan(&plan, &out);
    (tmp, out.join("current"), plan)
}

/// The default pipeline's output directory, run once per test process and shared by every test
/// that only reads it (a test that changes a release makes its own with [`default_run`]).
/// Returns (the output directory, its current release, the plan).
pub fn shared_default_run() -> &'static (PathBuf, PathBuf, migstat::spec::Plan) {
    static RUN: std::sync::OnceLock<(PathBuf, PathBuf, migstat::spec::Plan)> =
        std::sync::OnceLock::new();
    RUN.get_or_init(|| {
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("shared-default-run");
        if out.exists() {
            std::fs::remove_dir_all(&out).expect("remove the previous shared run");
        }
        let plan = migstat::spec::compile(&repo().join("pipelines/observatory.toml"))
            .expect("the default spec compiles");
        run_plan(&plan, &out);
        let current = out.join("current");
        (out, current, plan)
    })
}

/// Run a compiled plan into `out`, without progress bars.
pub fn run_plan(plan: &migstat::spec::Plan, out: &Path) -> migstat::runner::Manifest {
    migstat::runner::run(
        plan,
        &migstat::runner::RunOptions {
            out_dir: out.to_path_buf(),
            ..Default::default()
        },
    )
    .expect("the pipeline runs")
}

/// The manifest of a release directory, or of an output directory's current release.
pub fn manifest(out: &Path) -> migstat::runner::Manifest {
    let dir = if out.join("manifest.json").is_file() {
        out.to_path_buf()
    } else {
        out.join("current")
    };
    let text = std::fs::read_to_string(dir.join("manifest.json")).expect("manifest.json exists");
    serde_json::from_str(&text).expect("manifest.json parses")
}
