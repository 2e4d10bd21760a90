//! The engine seam: where a table's aggregates are computed. It owns the one interface behind
//! which the finest cells of a count table ([`PeriodCells`]) and the partial sums of a source's
//! survey tables ([`SurveySums`]) are computed from the harmonized records of a source (its
//! accepted Parquet file, [`Accepted`]); everything after them (roll-up, variance, protection,
//! publishing) runs unchanged on what comes back.
//!
//! Input: a source's plan, a table's definition, the accepted records, the cell-key key.
//! Output: mergeable partials — the same values whichever engine computed them.
//!
//! [`Local`] is the default: migstat's own polars code in this process. By default it counts
//! the tables of records and events and the survey sums while the source is read (one pass,
//! nothing read twice); [`Local::after_pass`] counts them from the accepted file instead, the way
//! an engine that runs elsewhere must, and is the reference such an engine is tested against.

#[cfg(feature = "distributed")]
pub mod ballista;

use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::disaggregate::PeriodCells;
use crate::error::{IoContext, PolarsContext};
use crate::spec::{SourcePlan, TableSpec};
use crate::{Error, Result};

/// A source's accepted (harmonized) records: its Parquet parts (one per delivery file, in file
/// order: `layout::Release::accepted_part`), and the types the source pass gave its columns
/// (the files store unsigned integers as signed ones), so that what an engine reads back is
/// what the pass counted.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub parts: Vec<PathBuf>,
    pub schema: Schema,
    /// Records read at once when the file is read in slices.
    pub chunk_rows: usize,
    /// The spec the run compiled (its path and content hash), for an engine whose processes
    /// compile it themselves to run migstat's own code on their share of the records.
    pub spec: Option<(PathBuf, String)>,
    /// The split into buckets of persons that the source's tables of persons share in this
    /// run, when it has several (see [`crate::disaggregate::SharedPersonSplit`]).
    pub persons: Option<std::sync::Arc<crate::disaggregate::SharedPersonSplit>>,
}

impl Accepted {
    /// The accepted records of `source` in the release (or staging) directory `release`.
    pub fn in_release(plan: &crate::spec::Plan, source: &SourcePlan, release: &Path) -> Self {
        let parts = crate::layout::Release(release).accepted_parts(&source.id, source.files.len());
        Self::of(plan, source, parts)
    }

    /// The accepted records of `source` in `parts`, with the column types its pass gives them.
    pub fn of(plan: &crate::spec::Plan, source: &SourcePlan, parts: Vec<PathBuf>) -> Self {
        let mut schema = crate::validate::Validator::new(&source.id, &source.schema, Vec::new())
            .accepted_schema();
        crate::harmonize::Harmonizer::new(plan, source).extend_schema(&mut schema);
        Accepted {
            parts,
            schema,
            chunk_rows: plan.chunk_rows,
            spec: Some((plan.spec_path.clone(), plan.spec_hash.clone())),
            persons: None,
        }
    }

    /// The same records, read by tables of persons that share `persons`.
    pub fn sharing(
        mut self,
        persons: Option<std::sync::Arc<crate::disaggregate::SharedPersonSplit>>,
    ) -> Self {
        self.persons = persons;
        self
    }
}

/// One delivery file of a source to validate and harmonize as a task of its own: a shard of
/// the source pass (see `runner::shard`). Every path is absolute: the task may run in another
/// process, whose working directory is not the coordinator's.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ShardTask {
    /// The spec the run compiled, and its content hash (a spec edited since fails the task).
    pub spec: PathBuf,
    pub spec_hash: String,
    pub source: String,
    /// The names the source's files go by in the accepted rows and the quarantine, as the
    /// coordinator names them (relative to the spec's directory as it reached the spec).
    pub names: Vec<String>,
    /// The file's index among the source's files.
    pub file: usize,
    /// Where the shard writes its files (a directory of the run's staging area).
    pub dir: PathBuf,
    /// The file's size and blake3 as hashed when the run began.
    pub bytes: u64,
    pub blake3: String,
    /// Where the shard writes its keys as a table for the engine to group
    /// ([`Engine::repeated_keys`]); `None`: as sorted runs for the runner to merge.
    #[serde(default)]
    pub key_table: Option<PathBuf>,
}

/// The files of a source cut into at most `batches` runs of consecutive files of about equal
/// bytes (each file in one run, in order; every run non-empty).
pub fn batches(sizes: &[u64], batches: usize) -> Vec<std::ops::Range<usize>> {
    let n = sizes.len();
    let batches = batches.clamp(1, n.max(1));
    let total: u128 = sizes.iter().map(|&b| u128::from(b)).sum();
    let mut out = Vec::with_capacity(batches);
    let (mut start, mut seen) = (0usize, 0u128);
    for (i, &b) in sizes.iter().enumerate() {
        seen += u128::from(b);
        let cut = out.len() + 1;
        // Cut after file i once its run reaches its share of the bytes, keeping a file for
        // each run still to come.
        let reached = seen * batches as u128 >= total * cut as u128;
        let files_left = n - (i + 1);
        let runs_left = batches - cut;
        if cut < batches && (reached || files_left == runs_left) && files_left >= runs_left {
            out.push(start..i + 1);
            start = i + 1;
        }
    }
    if start < n {
        out.push(start..n);
    }
    out
}

/// What runs shards where their task lands: `runner::shard::run_tasks` (the runner sits above
/// the engines, so the binary hands it to an executor it starts). Takes consecutive files of one
/// source (the spec compiled once) and returns each one's reply, JSON text (its outcome, or its
/// failure and exit code): a task never fails the engine's query.
pub type ShardPass = fn(&[ShardTask]) -> Vec<String>;

/// A source's survey sums: the design's partial and each survey table's partial, in the order
/// of the tables asked for.
pub type SurveySums = crate::survey::SourceSums;

/// Where the tables' aggregates are computed.
pub trait Engine: Send + Sync + std::fmt::Debug {
    /// What the run log and manifest call it (`local`, `ballista://host:port`, …).
    fn name(&self) -> String;

    /// Whether the source pass counts its streamed tables and survey sums while it reads the
    /// source (then [`Engine::cells`] is asked only for tables of persons and group unions
    /// that were not counted, and [`Engine::survey`] never).
    fn counts_while_reading(&self) -> bool;

    /// The finest cells of `table`, per period, from its source's accepted records.
    fn cells(
        &self,
        source: &SourcePlan,
        table: &TableSpec,
        accepted: &Accepted,
        key: Option<&[u8; 32]>,
    ) -> Result<PeriodCells>;

    /// The survey sums of `tables` (all of `source`) from its accepted records: each part's
    /// summed on its own, the parts merged in file order ([`crate::survey::ByPart`]), so that
    /// every engine gives the same bits.
    fn survey(
        &self,
        source: &SourcePlan,
        tables: &[&TableSpec],
        accepted: &Accepted,
    ) -> Result<SurveySums>;

    /// Run `tasks` (the files of one source) as tasks of this engine, returning each task's
    /// reply (see [`ShardPass`]) in any order; `work` is a directory of the run's staging area
    /// for the engine's own files. `None`: this engine does not run shards (the runner runs
    /// them in processes or threads of its own).
    fn pass_shards(&self, tasks: &[ShardTask], work: &Path) -> Option<Result<Vec<String>>> {
        let _ = (tasks, work);
        None
    }

    /// Whether this engine finds the keys repeated across shards itself
    /// ([`Engine::repeated_keys`]); then each shard writes its keys as a table.
    fn groups_keys(&self) -> bool {
        false
    }

    /// The rows of the key tables in `dir` (every key of every shard of a source: columns
    /// `shard`, `key_set`, `k0`, `k1`, `k2`, `pos`) whose (`key_set`, key) occurs more than once,
    /// in any order: a group-by on the keys.
    fn repeated_keys(&self, dir: &Path) -> Result<DataFrame> {
        Err(Error::Internal(format!(
            "engine {} groups no key tables ({})",
            self.name(),
            dir.display()
        )))
    }
}

/// migstat's own polars code, in this process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Local {
    after_pass: bool,
}

impl Local {
    /// The default engine: streamed tables counted while the source is read.
    pub fn new() -> Self {
        Local { after_pass: false }
    }

    /// Every aggregate computed from the accepted file after the pass, as a remote engine
    /// computes them (`--engine local-after-pass`).
    pub fn after_pass() -> Self {
        Local { after_pass: true }
    }
}

impl Engine for Local {
    fn name(&self) -> String {
        if self.after_pass {
            "local-after-pass".into()
        } else {
            "local".into()
        }
    }

    fn counts_while_reading(&self) -> bool {
        !self.after_pass
    }

    fn cells(
        &self,
        source: &SourcePlan,
        table: &TableSpec,
        accepted: &Accepted,
        key: Option<&[u8; 32]>,
    ) -> Result<PeriodCells> {
        if !crate::disaggregate::is_streamed(table) {
            return crate::disaggregate::build_cells(
                source,
                table,
                &accepted.parts,
                key,
                accepted.persons.as_deref(),
            );
        }
        let mut cells = PeriodCells::default();
        for_each_slice(accepted, |rows| {
            crate::disaggregate::add_chunk(source, table, rows, &mut cells, key)
        })?;
        Ok(cells)
    }

    fn survey(
        &self,
        source: &SourcePlan,
        tables: &[&TableSpec],
        accepted: &Accepted,
    ) -> Result<SurveySums> {
        let Some(design) = source.design.as_ref().filter(|_| !tables.is_empty()) else {
            return Ok(SurveySums {
                tables: vec![Default::default(); tables.len()],
                ..Default::default()
            });
        };
        let mut sums = crate::survey::ByPart::new(design, tables);
        for (i, path) in accepted.parts.iter().enumerate() {
            for_each_slice_of(path, &accepted.schema, accepted.chunk_rows, |rows| {
                sums.add(i, &rows)
            })?;
        }
        Ok(sums.finish())
    }
}

/// The engine a run names: `local` (the default), `local-after-pass`, or with the
/// `distributed` feature `ballista://HOST:PORT` (connected here: an unreachable scheduler is an
/// error before anything is read).
pub fn from_name(name: &str) -> Result<std::sync::Arc<dyn Engine>> {
    match name {
        "" | "local" => Ok(std::sync::Arc::new(Local::new())),
        "local-after-pass" => Ok(std::sync::Arc::new(Local::after_pass())),
        #[cfg(feature = "distributed")]
        url if url.starts_with("ballista://") => {
            Ok(std::sync::Arc::new(ballista::Ballista::connect(url)?))
        }
        other => Err(Error::Usage(format!(
            "unknown engine {}: use `local` or `local-after-pass`{}",
            crate::error::quote(other),
            if other.starts_with("ballista://") {
                " (a Ballista cluster needs migstat built with `--features distributed`)"
            } else {
                ""
            }
        ))),
    }
}

/// Call `f` on the accepted records, `chunk_rows` at a time in file order (part by part),
/// each slice with the pass's column types.
pub fn for_each_slice(
    accepted: &Accepted,
    mut f: impl FnMut(&DataFrame) -> Result<()>,
) -> Result<()> {
    for path in &accepted.parts {
        for_each_slice_of(path, &accepted.schema, accepted.chunk_rows, |df| f(&df))?;
    }
    Ok(())
}

/// Call `f` on the rows of the Parquet file `path`, `chunk_rows` at a time in order, each
/// slice with `schema`'s column types.
pub fn for_each_slice_of(
    path: &Path,
    schema: &Schema,
    chunk_rows: usize,
    mut f: impl FnMut(DataFrame) -> Result<()>,
) -> Result<()> {
    let rows = std::fs::File::open(path).at(path).and_then(|file| {
        ParquetReader::new(file)
            .num_rows()
            .ctx(|| format!("reading {}", path.display()))
    })?;
    let step = chunk_rows.max(1);
    let mut offset = 0usize;
    while offset < rows {
        crate::interrupt::check()?;
        let len = step.min(rows - offset);
        let df = read_slice(path, offset, len)?;
        offset += len;
        f(with_types(df, schema, path)?)?;
    }
    Ok(())
}

/// Every record of the parts in order; with `schema`, each column in its type (the pass's),
/// else as the files store them.
pub fn read_parts(parts: &[PathBuf], schema: Option<&Schema>) -> Result<DataFrame> {
    let mut all: Option<DataFrame> = None;
    for path in parts {
        let df = crate::error::guard_reader(path, || {
            ParquetReader::new(std::fs::File::open(path).at(path)?)
                .finish()
                .ctx(|| format!("reading {}", path.display()))
        })?;
        let df = match schema {
            Some(schema) => with_types(df, schema, path)?,
            None => df,
        };
        all = Some(match all {
            None => df,
            Some(mut a) => {
                a.vstack_mut_owned(df)
                    .ctx(|| format!("reading {}", path.display()))?;
                a
            }
        });
    }
    all.ok_or_else(|| Error::Internal("records read from no Parquet part".into()))
}

/// Rows `offset..offset + len` of a Parquet file (a damaged file is an error, not a panic).
pub fn read_slice(path: &Path, offset: usize, len: usize) -> Result<DataFrame> {
    crate::error::guard_reader(path, || {
        ParquetReader::new(std::fs::File::open(path).at(path)?)
            .with_slice(Some((offset, len)))
            .finish()
            .ctx(|| format!("reading rows {offset}.. of {}", path.display()))
    })
}

/// `df`'s columns in `schema`'s order and types.
pub fn with_types(df: DataFrame, schema: &Schema, path: &Path) -> Result<DataFrame> {
    let columns = schema
        .iter()
        .map(|(name, dt)| {
            df.column(name)
                .and_then(|c| c.cast(dt))
                .ctx(|| format!("reading column `{name}` of {}", path.display()))
        })
        .collect::<Result<Vec<Column>>>()?;
    DataFrame::new(df.height(), columns).ctx(|| format!("reading {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_cut_into_runs_of_about_equal_bytes() {
        // By hand: equal files halve; one large file takes a run of its own; fewer files than
        // runs give a run each; nothing to cut gives nothing.
        assert_eq!(batches(&[10, 10, 10, 10], 2), [0..2, 2..4]);
        assert_eq!(batches(&[100, 1, 1, 1], 2), [0..1, 1..4]);
        assert_eq!(batches(&[1, 1, 1], 8), [0..1, 1..2, 2..3]);
        assert_eq!(batches(&[5], 4), vec![std::ops::Range { start: 0, end: 1 }]);
        assert_eq!(batches(&[], 4), Vec::<std::ops::Range<usize>>::new());
        // The large file last: the small ones are cut so that every run keeps a file.
        assert_eq!(
            batches(&[1, 1, 1, 1, 1, 1, 1, 100], 4),
            [0..5, 5..6, 6..7, 7..8]
        );
        // 400 files of one size in 8 runs: 50 each.
        let runs = batches(&[7; 400], 8);
        assert_eq!(runs.len(), 8);
        assert!(runs.iter().all(|r| r.len() == 50), "{runs:?}");
    }

    proptest::proptest! {
        #[test]
        fn runs_cover_every_file_once_in_order(
            sizes in proptest::collection::vec(0u64..1_000_000, 0..200),
            n in 1usize..40,
        ) {
            let runs = batches(&sizes, n);
            proptest::prop_assert!(runs.len() <= n);
            proptest::prop_assert!(runs.iter().all(|r| !r.is_empty()));
            let files: Vec<usize> = runs.iter().flat_map(|r| r.clone()).collect();
            proptest::prop_assert_eq!(files, (0..sizes.len()).collect::<Vec<_>>());
            // As many runs as asked for whenever there are enough files.
            proptest::prop_assert_eq!(runs.len(), n.min(sizes.len()));
        }
    }

    #[test]
    fn engines_are_named_and_unknown_ones_refused() {
        let local = from_name("local").unwrap();
        assert!(local.counts_while_reading());
        assert_eq!(local.name(), "local");
        let after = from_name("local-after-pass").unwrap();
        assert!(!after.counts_while_reading());
        for bad in ["spark://h:1", "LOCAL", "local "] {
            let e = from_name(bad).unwrap_err();
            assert!(matches!(e, Error::Usage(_)), "{bad}: {e}");
        }
        // An unbounded name is quoted, capped.
        let long = "x".repeat(10_000);
        assert!(from_name(&long).unwrap_err().to_string().len() < 300);
    }

    #[test]
    fn slices_come_back_in_order_part_by_part_with_the_pass_types() {
        let dir = tempfile::tempdir().unwrap();
        // Two parts, 1,003 and 7 records; a slice never spans two parts.
        let write = |name: &str, range: std::ops::Range<u32>| {
            let path = dir.path().join(name);
            let mut df = df!(
                "AGE" => range.clone().map(i64::from).collect::<Vec<_>>(),
                "SEX" => range.map(|i| if i % 2 == 0 { "F" } else { "M" }).collect::<Vec<_>>(),
            )
            .unwrap();
            ParquetWriter::new(std::fs::File::create(&path).unwrap())
                .finish(&mut df)
                .unwrap();
            path
        };
        let parts = vec![
            write("a.parquet", 0..1_003),
            write("b.parquet", 1_003..1_010),
        ];
        let mut schema = Schema::default();
        schema.with_column("SEX".into(), DataType::String);
        schema.with_column("AGE".into(), DataType::UInt32);
        let accepted = Accepted {
            parts: parts.clone(),
            schema: schema.clone(),
            chunk_rows: 100,
            spec: None,
            persons: None,
        };
        let mut seen = Vec::new();
        let mut heights = Vec::new();
        for_each_slice(&accepted, |rows| {
            heights.push(rows.height());
            let names: Vec<String> = rows
                .get_column_names()
                .iter()
                .map(|n| n.to_string())
                .collect();
            assert_eq!(names, ["SEX", "AGE"]);
            seen.extend(
                rows.column("AGE")
                    .unwrap()
                    .u32()
                    .unwrap()
                    .into_no_null_iter(),
            );
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, (0..1_010).collect::<Vec<_>>());
        assert_eq!(heights.len(), 12);
        assert_eq!(heights[10..], [3, 7]);
        // Read whole: the same records, typed, in part order.
        let all = read_parts(&parts, Some(&schema)).unwrap();
        assert_eq!(all.height(), 1_010);
        assert_eq!(all.column("AGE").unwrap().dtype(), &DataType::UInt32);
        assert_eq!(
            all.column("AGE").unwrap().u32().unwrap().get(1_005),
            Some(1_005)
        );
        assert!(read_parts(&[], Some(&schema)).is_err());
        assert_eq!(
            read_parts(&parts, None)
                .unwrap()
                .column("AGE")
                .unwrap()
                .dtype(),
            &DataType::Int64
        );
    }
}
