//! Disaggregate: count tables with every margin.
//!
//! Input: a source's harmonized records (its accepted Parquet parts, in file order) and a [`TableSpec`]: unit
//! (persons, records, events), kind (count, stock on each period's last day, flow), periods
//! (see `spec::period`), dimensions, optional filter. Output: one [`CountTable`] per reference
//! period in long form — one row per cell, each dimension holding a code or `_T` for its
//! margin, over all 2^d combinations, with the unweighted count `n` — sorted by its
//! dimensions; and the records left out because their event date is in no period
//! ([`Outside`]).
//!
//! Each record is placed in the period of its event date (a count's `date`, a flow's
//! `start`); persons are counted once per period; a stock counts the persons with a valid
//! record on each stock date, with ages restated on that date.
//!
//! The records are aggregated once, to the finest cells (a polars group-by), and every margin is
//! rolled up from those cells in integer arithmetic; the records are never rescanned per margin.
//! Counting persons keeps one record per person (see [`TableKind`]), so that each person falls in
//! exactly one finest cell and the margins stay additive.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::error::{PolarsContext, Result};
pub use crate::manifest::Outside;
use crate::spec::Banding;
use crate::spec::Derivation;
use crate::spec::period::{Periods, Placed, RefPeriod};
use crate::spec::{SourcePlan, TableKind, TableSpec, Unit};
use crate::vocab::{MAX_DIMENSIONS, TOTAL, raw_column};

mod dictcube;

/// A finished count table of one reference period, with all margins.
pub struct CountTable {
    pub period: RefPeriod,
    pub frame: DataFrame,
}

/// A table's finest cells per period (the index into its `periods.list`), and the records
/// left out: a mergeable partial, like [`Cells`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PeriodCells {
    pub by_period: BTreeMap<usize, Cells>,
    pub outside: Outside,
}

/// What a cell holds: its count and, for the cell key method, the sum of its records' keys
/// modulo 2^32 (a cell key of `key / 2^32` in [0, 1)). Both add exactly, in any order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub n: u64,
    pub key: u32,
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, o: Tally) {
        self.n += o.n;
        self.key = self.key.wrapping_add(o.key);
    }
}

impl std::ops::AddAssign for PeriodCells {
    /// Merge another partial (a bucket of persons, an executor's share): integer sums, in any
    /// order.
    fn add_assign(&mut self, other: PeriodCells) {
        for (period, cells) in other.by_period {
            let mine = self.by_period.entry(period).or_default();
            for (key, tally) in cells {
                *mine.entry(key).or_default() += tally;
            }
        }
        self.outside += other.outside;
    }
}

/// A cell on the wire: its codes, count and key sum.
type WireCell = (Vec<String>, u64, u32);

/// [`PeriodCells`] as bytes between processes (an engine's executors and its coordinator).
#[derive(serde::Serialize, serde::Deserialize)]
struct WireCells {
    periods: Vec<(usize, Vec<WireCell>)>,
    outside: Outside,
}

impl PeriodCells {
    /// The partial as bytes (JSON), read back by [`PeriodCells::from_bytes`].
    pub fn to_bytes(&self) -> Vec<u8> {
        let wire = WireCells {
            periods: self
                .by_period
                .iter()
                .map(|(p, cells)| {
                    let cells = cells.iter().map(|(k, t)| (k.clone(), t.n, t.key)).collect();
                    (*p, cells)
                })
                .collect(),
            outside: self.outside,
        };
        serde_json::to_vec(&wire).unwrap_or_default()
    }

    /// A partial written by [`PeriodCells::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> std::result::Result<PeriodCells, String> {
        let wire: WireCells = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let mut out = PeriodCells {
            outside: wire.outside,
            ..PeriodCells::default()
        };
        for (p, cells) in wire.periods {
            let mine = out.by_period.entry(p).or_default();
            for (k, n, key) in cells {
                *mine.entry(k).or_default() += Tally { n, key };
            }
        }
        Ok(out)
    }
}

/// The finest cells: dimension codes → tally.
pub type Cells = BTreeMap<Vec<String>, Tally>;

/// Roll finest cells up to every margin combination: for each subset of dimensions replaced by
/// `_T`, the sum of the cells below it. `cells` must hold no `_T` code itself. The grand total is
/// always there, zero for a table with no records.
pub fn roll_up<V: Copy + Default + std::ops::AddAssign>(
    cells: &BTreeMap<Vec<String>, V>,
    dims: usize,
) -> BTreeMap<Vec<String>, V> {
    roll_up_masks(cells, dims, &(0u32..(1 << dims)).collect::<Vec<_>>())
}

/// As [`roll_up`], for the given margin combinations only: bit `i` of a mask set means
/// dimension `i` is `_T`. Codes are interned to integers first, so that the 2^d passes hash
/// small integer keys instead of cloning strings; values are integers, so the order in which
/// they are added does not matter.
pub fn roll_up_masks<V: Copy + Default + std::ops::AddAssign>(
    cells: &BTreeMap<Vec<String>, V>,
    dims: usize,
    masks: &[u32],
) -> BTreeMap<Vec<String>, V> {
    const MARGIN: u32 = u32::MAX;
    let mut names: Vec<Vec<&str>> = vec![Vec::new(); dims];
    let mut ids: Vec<std::collections::HashMap<&str, u32>> =
        vec![std::collections::HashMap::new(); dims];
    let interned: Vec<(Vec<u32>, V)> = cells
        .iter()
        .map(|(key, v)| {
            let k = key
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    *ids[i].entry(c.as_str()).or_insert_with(|| {
                        names[i].push(c.as_str());
                        names[i].len() as u32 - 1
                    })
                })
                .collect();
            (k, *v)
        })
        .collect();
    let mut acc: std::collections::HashMap<Vec<u32>, V> =
        std::collections::HashMap::with_capacity(interned.len() * 2);
    if masks.contains(&((1u32 << dims) - 1)) {
        acc.insert(vec![MARGIN; dims], V::default());
    }
    let mut buf = vec![0u32; dims];
    for &mask in masks {
        for (key, n) in &interned {
            for (i, c) in key.iter().enumerate() {
                buf[i] = if mask & (1 << i) != 0 { MARGIN } else { *c };
            }
            match acc.get_mut(buf.as_slice()) {
                Some(v) => *v += *n,
                None => {
                    acc.insert(buf.clone(), *n);
                }
            }
        }
    }
    acc.into_iter()
        .map(|(k, v)| {
            let key = k
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    if *c == MARGIN {
                        TOTAL.to_string()
                    } else {
                        names[i][*c as usize].to_string()
                    }
                })
                .collect();
            (key, v)
        })
        .collect()
}

/// Build one table, one [`CountTable`] per period, from the harmonized records in `accepted`
/// (the parts, in file order)
/// (`key`: the cell-key key, for a table protected by the cell key method).
pub fn build(
    source: &SourcePlan,
    table: &TableSpec,
    accepted: &[PathBuf],
    key: Option<&[u8; 32]>,
) -> Result<(Vec<CountTable>, Outside)> {
    let cells = build_cells(source, table, accepted, key, None)?;
    Ok((finish_all(table, &cells)?, cells.outside))
}

/// Every period of a table from its partial cells (a period without records is a table of
/// zeros: the series has no holes).
pub fn finish_all(table: &TableSpec, cells: &PeriodCells) -> Result<Vec<CountTable>> {
    let empty = Cells::new();
    table
        .periods
        .list
        .iter()
        .enumerate()
        .map(|(i, p)| finish(table, p, cells.by_period.get(&i).unwrap_or(&empty)))
        .collect()
}

/// Column of period indexes added by [`place`].
pub const PERIOD: &str = "_period";

/// The period a record dated `day` (days since 1970; `None`: no date) falls in, or `None` with
/// `weight` records counted in `outside` under the reason.
fn period_of(
    day: Option<i32>,
    periods: &Periods,
    outside: &mut Outside,
    weight: u64,
) -> Option<u32> {
    match day.and_then(crate::calendar::date_of_days) {
        None => {
            outside.no_date += weight;
            None
        }
        Some(d) => match periods.place(d) {
            Placed::In(i) => Some(i as u32),
            Placed::Before => {
                outside.before += weight;
                None
            }
            Placed::After => {
                outside.after += weight;
                None
            }
            Placed::Gap => {
                outside.between += weight;
                None
            }
        },
    }
}

/// Add the `_period` column (the index of the period each record's event date falls in) and
/// keep the records placed; count the others.
fn place(df: DataFrame, periods: &Periods) -> PolarsResult<(DataFrame, Outside)> {
    let mut outside = Outside::default();
    let idx: Vec<Option<u32>> = match &periods.date {
        None => vec![Some(0); df.height()],
        Some(date) => {
            let days = df.column(&raw_column(date))?.to_physical_repr();
            let days = days.i32()?;
            days.iter()
                .map(|d| period_of(d, periods, &mut outside, 1))
                .collect()
        }
    };
    let mut df = df;
    let col = Column::new(PERIOD.into(), idx);
    let keep = col.is_not_null();
    df.with_column(col)?;
    let df = if outside.total() > 0 {
        df.filter(&keep)?
    } else {
        df
    };
    Ok((df, outside))
}

/// The table's dimension columns of `frame` as strings (the codes of a cell's key).
fn dimension_strings(
    table: &TableSpec,
    frame: &DataFrame,
    ctx: &dyn Fn(&str) -> String,
) -> Result<Vec<StringChunked>> {
    table
        .dimensions
        .iter()
        .map(|d| -> Result<StringChunked> {
            let c = frame
                .column(d)
                .ctx(|| ctx(d))?
                .cast(&DataType::String)
                .ctx(|| ctx(d))?;
            Ok(c.str().ctx(|| ctx(d))?.clone())
        })
        .collect()
}

/// The column of an engine's grouped result that holds each group's period when the engine
/// placed the records itself: the period's index (0 and up), or one of the [`placed_code`]s.
pub const PERIOD_CODE: &str = "_period_code";

/// The codes of [`PERIOD_CODE`] for records outside every period, by reason.
pub mod placed_code {
    /// No event date (or one outside the calendar's range).
    pub const NO_DATE: i32 = -1;
    /// Before the first period.
    pub const BEFORE: i32 = -2;
    /// After the last period (every dated record, for a table without periods).
    pub const AFTER: i32 = -3;
    /// Between two periods.
    pub const BETWEEN: i32 = -4;
}

/// Add to `cells` a streamed table's records already grouped elsewhere (an engine's result):
/// one row per (event date, cell) with the date column `date` (the table's `periods.date`, raw;
/// absent for a table without one) — or per (period, cell) with a [`PERIOD_CODE`] column when
/// the engine placed the dates itself —, the table's dimensions, the count `n` and, for the
/// cell key method, the sum of the records' keys `_key`. Each date is placed in its period as
/// [`add_chunk`] places each record, the records outside every period counted by reason.
pub fn add_grouped(
    table: &TableSpec,
    date: Option<&str>,
    grouped: DataFrame,
    cells: &mut PeriodCells,
) -> Result<()> {
    let ctx = |what: &str| format!("table {}: {what} of the grouped records", table.id);
    let u64s = |name: &str| -> Result<Vec<u64>> {
        let c = grouped
            .column(name)
            .ctx(|| ctx(name))?
            .cast(&DataType::UInt64)
            .ctx(|| ctx(name))?;
        Ok(c.u64()
            .ctx(|| ctx(name))?
            .iter()
            .map(|v| v.unwrap_or(0))
            .collect())
    };
    let n = u64s(crate::vocab::column::COUNT)?;
    let keys = match grouped.column("_key") {
        Ok(_) => Some(u64s("_key")?),
        Err(_) => None,
    };
    let days: Option<Vec<Option<i32>>> = match date {
        None => None,
        Some(d) => {
            let c = grouped
                .column(d)
                .ctx(|| ctx(d))?
                .cast(&DataType::Date)
                .ctx(|| ctx(d))?
                .to_physical_repr();
            Some(c.i32().ctx(|| ctx(d))?.iter().collect())
        }
    };
    let codes: Option<Vec<Option<i32>>> = match grouped.column(PERIOD_CODE) {
        Err(_) => None,
        Ok(c) => {
            let c = c.cast(&DataType::Int32).ctx(|| ctx(PERIOD_CODE))?;
            Some(c.i32().ctx(|| ctx(PERIOD_CODE))?.iter().collect())
        }
    };
    let dims = dimension_strings(table, &grouped, &ctx)?;
    for row in 0..grouped.height() {
        let period = match (&codes, &days) {
            (Some(codes), _) => {
                let outside = &mut cells.outside;
                match codes[row] {
                    Some(i) if i >= 0 => {
                        if i as usize >= table.periods.list.len() {
                            return Err(crate::Error::Internal(format!(
                                "table {}: the engine placed records in period {i} of {}",
                                table.id,
                                table.periods.list.len()
                            )));
                        }
                        Some(i as u32)
                    }
                    Some(placed_code::BEFORE) => {
                        outside.before += n[row];
                        None
                    }
                    Some(placed_code::AFTER) => {
                        outside.after += n[row];
                        None
                    }
                    Some(placed_code::BETWEEN) => {
                        outside.between += n[row];
                        None
                    }
                    _ => {
                        outside.no_date += n[row];
                        None
                    }
                }
            }
            (None, None) => Some(0),
            (None, Some(days)) => period_of(days[row], &table.periods, &mut cells.outside, n[row]),
        };
        let Some(period) = period else { continue };
        let key: Vec<String> = dims
            .iter()
            .map(|c| c.get(row).unwrap_or(crate::vocab::UNKNOWN).to_string())
            .collect();
        *cells
            .by_period
            .entry(period as usize)
            .or_default()
            .entry(key)
            .or_default() += Tally {
            n: n[row],
            key: keys.as_ref().map_or(0, |k| k[row] as u32),
        };
    }
    Ok(())
}

/// The finest cells of one table, per period, from the harmonized records in `accepted`.
pub fn build_cells(
    source: &SourcePlan,
    table: &TableSpec,
    accepted: &[PathBuf],
    key: Option<&[u8; 32]>,
    shared: Option<&SharedPersonSplit>,
) -> Result<PeriodCells> {
    build_cells_in(source, table, accepted, key, person_bucket_rows(), shared)
}

/// How many records a table of persons reads at once (`MIGSTAT_PERSON_BUCKET_ROWS`, default
/// 1,000,000): above that its records are split into buckets of persons (see
/// [`build_cells_in`]), so that its memory does not grow with the register.
pub fn person_bucket_rows() -> usize {
    crate::tuning::count("MIGSTAT_PERSON_BUCKET_ROWS", 1_000_000)
}

/// At most this many bucket files are open at once (beyond `MAX_PERSON_BUCKETS ×
/// bucket_rows` records a bucket holds more than `bucket_rows`).
pub const MAX_PERSON_BUCKETS: usize = 256;

/// [`build_cells`] reading at most about `bucket_rows` records at once for a table whose units
/// need all of a person's records (persons, stocks, flows, migrations): when the source holds
/// more, its needed columns are first written to `ceil(rows / bucket_rows)` bucket files by a
/// hash of the person identifier (every record of a person in one bucket, in delivery order),
/// and each bucket's finest cells and left-out records are added to the table's: a partial per
/// bucket of persons. A unit is always made from one person's records, so the sums are the
/// same cells, counts and key sums as from the whole file (integers: in any order).
///
/// With `shared` (the source's tables of persons built in one run, see [`SharedPersonSplit`])
/// the source is split once for all of them, and each reads its own columns of the buckets.
pub fn build_cells_in(
    source: &SourcePlan,
    table: &TableSpec,
    accepted: &[PathBuf],
    key: Option<&[u8; 32]>,
    bucket_rows: usize,
    shared: Option<&SharedPersonSplit>,
) -> Result<PeriodCells> {
    let keyed = record_keys(source, table, key);
    let mut out = PeriodCells::default();
    let person = source.person_id.as_deref().filter(|_| by_person(table));
    let rows = match person {
        Some(_) => parts_rows(accepted)?,
        None => 0,
    };
    let bucket_rows = bucket_rows.max(1);
    match person {
        Some(person) if rows > bucket_rows => {
            let needed = needed_columns(source, table, keyed.as_ref(), false);
            let n_buckets = rows.div_ceil(bucket_rows).min(MAX_PERSON_BUCKETS);
            let shared = shared.filter(|s| s.covers(&needed));
            let buckets = match shared {
                Some(s) => s.buckets(accepted, &raw_column(person), rows, n_buckets)?,
                None => std::sync::Arc::new(PersonBuckets::write(
                    accepted,
                    ("table", &table.id),
                    &needed,
                    &raw_column(person),
                    rows,
                    n_buckets,
                )?),
            };
            tracing::info!(
                table = %table.id,
                rows,
                buckets = buckets.files.iter().filter(|p| !p.is_empty()).count(),
                shared = shared.is_some(),
                "building a table of persons bucket by bucket"
            );
            for parts in buckets.files.iter().filter(|p| !p.is_empty()) {
                let mut df = DataFrame::empty();
                for (i, path) in parts.iter().enumerate() {
                    // A split of this table's own is read once: each part is removed as soon
                    // as it is read. A shared one is removed after its last table.
                    let part = match shared {
                        Some(_) => read_columns(path, Some(&needed))?,
                        None => {
                            let part = read_columns(path, None)?;
                            std::fs::remove_file(path).map_err(|e| crate::Error::io(path, e))?;
                            part
                        }
                    };
                    if i == 0 {
                        df = part;
                    } else {
                        df.vstack_mut_owned(part)
                            .ctx(|| format!("table {}: reading a bucket of persons", table.id))?;
                    }
                }
                out += person_cells(source, table, df, key)?;
            }
        }
        _ => {
            let (lf, outside) = unit_frame(source, table, accepted, keyed.as_ref(), false)?;
            out.outside = outside;
            if let Some(lf) = lf {
                add_finest(lf, table, keyed.as_ref(), &mut out)?;
            }
        }
    }
    Ok(out)
}

/// The finest cells of a table of persons over records already read that hold every record of
/// each of their persons (a bucket of persons; [`person_columns`] of the accepted file): what
/// each bucket adds in [`build_cells_in`], and what an engine's executor computes for its share
/// of the persons.
pub fn person_cells(
    source: &SourcePlan,
    table: &TableSpec,
    records: DataFrame,
    key: Option<&[u8; 32]>,
) -> Result<PeriodCells> {
    let keyed = record_keys(source, table, key);
    let mut out = PeriodCells::default();
    let (lf, outside) = units_of(source, table, records, false)?;
    out.outside = outside;
    if let Some(lf) = lf {
        add_finest(lf, table, keyed.as_ref(), &mut out)?;
    }
    Ok(out)
}

/// The accepted columns [`person_cells`] reads for `table`.
pub fn person_columns(
    source: &SourcePlan,
    table: &TableSpec,
    key: Option<&[u8; 32]>,
) -> Vec<String> {
    needed_columns(
        source,
        table,
        record_keys(source, table, key).as_ref(),
        false,
    )
}

/// The bucket of persons a record goes to (of `buckets`): a hash of its person identifier, the
/// same in every process (xxh3); a missing identifier goes to bucket 0.
pub fn person_bucket(id: Option<&str>, buckets: u64) -> u64 {
    id.map_or(0, |id| {
        xxhash_rust::xxh3::xxh3_64(id.as_bytes()) % buckets.max(1)
    })
}

/// The number of records in a Parquet file (from its footer).
pub fn parquet_rows(path: &Path) -> Result<usize> {
    let file = std::fs::File::open(path).map_err(|e| crate::Error::io(path, e))?;
    crate::error::guard_reader(path, || {
        ParquetReader::new(file)
            .num_rows()
            .ctx(|| format!("reading the footer of {}", path.display()))
    })
}

/// The records of every part of a source's accepted records.
pub fn parts_rows(parts: &[PathBuf]) -> Result<usize> {
    parts.iter().map(|p| parquet_rows(p)).sum()
}

/// Every record of a Parquet file: `columns` of it, or all of them (`None`).
fn read_columns(path: &Path, columns: Option<&[String]>) -> Result<DataFrame> {
    let file = std::fs::File::open(path).map_err(|e| crate::Error::io(path, e))?;
    crate::error::guard_reader(path, || {
        ParquetReader::new(file)
            .with_columns(columns.map(<[String]>::to_vec))
            .finish()
            .ctx(|| format!("reading {}", path.display()))
    })
}

/// Whether `table` is built from per-person partials (a table of persons): neither counted
/// while its source streams nor a survey estimate.
fn by_person(table: &TableSpec) -> bool {
    !is_streamed(table) && !table.kind.is_survey()
}

/// The split of a source's records into buckets of persons (see [`build_cells_in`]), shared
/// by the tables of persons one run builds from the source (tables and the unions of
/// protected groups): written once, on the first table's demand, with every column any of
/// them reads; each table then reads its own columns of each bucket. Splitting is most of a
/// table of persons' time on a large register (two tables split the same 30 M records twice
/// in 42 s, BENCHMARKS.md), so it is done once per source, not once per table.
///
/// The files are removed when the last of the `users` tables has taken the split and is done
/// with it, or when this is dropped (a table that never came, an error).
#[derive(Debug)]
pub struct SharedPersonSplit {
    source: String,
    /// The columns written to the buckets: the union of the tables' needs, sorted.
    columns: Vec<String>,
    /// How many tables will ask for the split.
    users: usize,
    state: std::sync::Mutex<SplitState>,
}

#[derive(Debug, Default)]
struct SplitState {
    buckets: Option<std::sync::Arc<PersonBuckets>>,
    /// Tables that took the split so far.
    served: usize,
    /// Times the records were split (1 once any table asked, unless a split failed).
    written: usize,
}

impl SharedPersonSplit {
    /// The split shared by `tables` (those of `source` a run builds after its pass), when
    /// at least two of them are tables of persons; `key`: the cell key, whose record keys
    /// some tables read.
    pub fn for_tables(
        source: &SourcePlan,
        tables: &[&TableSpec],
        key: Option<&[u8; 32]>,
    ) -> Option<Self> {
        source.person_id.as_ref()?;
        let persons: Vec<&&TableSpec> = tables
            .iter()
            .filter(|t| t.source == source.id && by_person(t))
            .collect();
        if persons.len() < 2 {
            return None;
        }
        let columns: std::collections::BTreeSet<String> = persons
            .iter()
            .flat_map(|t| needed_columns(source, t, record_keys(source, t, key).as_ref(), false))
            .collect();
        Some(SharedPersonSplit {
            source: source.id.clone(),
            columns: columns.into_iter().collect(),
            users: persons.len(),
            state: Default::default(),
        })
    }

    /// Whether the buckets hold every column of `needed`.
    fn covers(&self, needed: &[String]) -> bool {
        needed.iter().all(|c| self.columns.binary_search(c).is_ok())
    }

    /// How many times the records were split (for tests and logs).
    pub fn times_written(&self) -> usize {
        self.state.lock().map_or(0, |s| s.written)
    }

    /// The buckets, written now if no table asked before (the others wait for them).
    fn buckets(
        &self,
        accepted: &[PathBuf],
        person: &str,
        rows: usize,
        n_buckets: usize,
    ) -> Result<std::sync::Arc<PersonBuckets>> {
        let mut state = self.state.lock().map_err(|_| {
            crate::Error::Internal(format!(
                "source {}: the shared split of persons was poisoned by a failed table",
                self.source
            ))
        })?;
        let buckets = match &state.buckets {
            Some(b) => b.clone(),
            None => {
                state.written += 1;
                let b = std::sync::Arc::new(PersonBuckets::write(
                    accepted,
                    ("source", &self.source),
                    &self.columns,
                    person,
                    rows,
                    n_buckets,
                )?);
                state.buckets = Some(b.clone());
                b
            }
        };
        state.served += 1;
        if state.served >= self.users {
            // The last table: the files go when it is done with them.
            state.buckets = None;
        }
        Ok(buckets)
    }
}

/// Records split into files by person (see [`build_cells_in`]), in a hidden directory beside
/// the accepted file that is removed when this is dropped.
#[derive(Debug)]
struct PersonBuckets {
    dir: std::path::PathBuf,
    /// Each bucket's part files, in the order they were written.
    files: Vec<Vec<std::path::PathBuf>>,
}

/// Row groups a bucket's part file takes before it is closed and the next one begun: an open
/// Parquet writer keeps every row group's footer entry (about 20 KiB each here, measured: 30 M
/// records in 256 buckets, a row group per slice and bucket, peaked at 3.9 GiB with one file
/// per bucket), so the memory of the split is bounded by open files, not by records.
const GROUPS_PER_PART: usize = 8;

type BucketWriter = polars::io::parquet::write::BatchedWriter<std::io::BufWriter<std::fs::File>>;

impl Drop for PersonBuckets {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl PersonBuckets {
    /// Read `needed` columns of `accepted` a slice at a time and append each slice's records to
    /// bucket `xxh3(person) mod buckets` (a missing identifier: bucket 0); `owner` (`table`
    /// or `source`, and its id) names the split in messages and its directory.
    fn write(
        accepted: &[PathBuf],
        owner: (&str, &str),
        needed: &[String],
        person: &str,
        rows: usize,
        buckets: usize,
    ) -> Result<PersonBuckets> {
        let (kind, id) = owner;
        let ctx = |what: &str| format!("{kind} {id}: {what}");
        // Beside the first part (in the staging directory, removed when the table is built).
        let Some(first) = accepted.first() else {
            return Err(crate::Error::Internal(ctx(
                "a source without accepted parts",
            )));
        };
        let dir = first.with_file_name(format!(".persons-{kind}-{id}"));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| crate::Error::io(&dir, e))?;
        }
        std::fs::create_dir_all(&dir).map_err(|e| crate::Error::io(&dir, e))?;
        let mut this = PersonBuckets {
            dir,
            files: vec![Vec::new(); buckets],
        };
        // Each bucket's open part and the row groups written to it.
        let mut writers: Vec<Option<(BucketWriter, usize)>> = (0..buckets).map(|_| None).collect();
        // Slices of about a bucket (at least 1,024 records, at most 2^20).
        let step = rows.div_ceil(buckets).clamp(1 << 10, 1 << 20);
        for path in accepted {
            let part_rows = parquet_rows(path)?;
            let mut offset = 0;
            while offset < part_rows {
                let len = step.min(part_rows - offset);
                let file = std::fs::File::open(path).map_err(|e| crate::Error::io(path, e))?;
                let df = crate::error::guard_reader(path, || {
                    ParquetReader::new(file)
                        .with_columns(Some(needed.to_vec()))
                        .with_slice(Some((offset, len)))
                        .finish()
                        .ctx(|| ctx(&format!("reading records {offset}..")))
                })?;
                offset += len;
                let ids = df
                    .column(person)
                    .and_then(|c| c.cast(&DataType::String))
                    .ctx(|| ctx(person))?;
                let mut parts: Vec<Vec<IdxSize>> = vec![Vec::new(); buckets];
                for (row, id) in ids.str().ctx(|| ctx(person))?.iter().enumerate() {
                    let b = person_bucket(id, buckets as u64) as usize;
                    parts[b].push(row as IdxSize);
                }
                for (b, part) in parts.into_iter().enumerate() {
                    if part.is_empty() {
                        continue;
                    }
                    let part = df
                        .take(&IdxCa::from_vec("".into(), part))
                        .ctx(|| ctx("splitting the records by person"))?;
                    let (writer, groups) = match &mut writers[b] {
                        Some(w) => w,
                        slot => {
                            let path = this
                                .dir
                                .join(format!("{b:05}-{:06}.parquet", this.files[b].len()));
                            let file = std::fs::File::create(&path)
                                .map_err(|e| crate::Error::io(&path, e))?;
                            this.files[b].push(path);
                            let writer = ParquetWriter::new(std::io::BufWriter::with_capacity(
                                1 << 16,
                                file,
                            ))
                            .with_compression(ParquetCompression::Lz4Raw)
                            .with_statistics(StatisticsOptions::empty())
                            .batched(df.schema())
                            .ctx(|| ctx("creating a bucket of persons"))?;
                            slot.insert((writer, 0))
                        }
                    };
                    writer
                        .write_batch(&part)
                        .ctx(|| ctx("writing a bucket of persons"))?;
                    *groups += 1;
                    if *groups >= GROUPS_PER_PART
                        && let Some((full, _)) = writers[b].take()
                    {
                        full.finish().ctx(|| ctx("finishing a bucket of persons"))?;
                    }
                }
            }
        }
        for (w, _) in writers.into_iter().flatten() {
            w.finish().ctx(|| ctx("finishing a bucket of persons"))?;
        }
        Ok(this)
    }
}

/// A survey source's response-status column (as the accepted records name it) and its
/// respondent codes, when its design adjusts for nonresponse.
fn respondent_status(source: &SourcePlan) -> Option<(String, std::collections::BTreeSet<String>)> {
    let nr = source.design.as_ref()?.nonresponse.as_ref()?;
    let derived = source.harmonize.iter().any(|d| d.name == nr.status);
    let column = if derived {
        nr.status.clone()
    } else {
        raw_column(&nr.status)
    };
    Some((column, nr.respondent.clone()))
}

/// The units a count table counts, one row each — a record, a person in a period, a person
/// valid on a stock date, a first permit, a migration — with the table's dimensions and
/// [`PERIOD`] (the index of its period), and each unit's lineage: the `_file`, `_record` and
/// `_line` of the record that makes it and the source's `record_id`. What `migstat trace`
/// lists for a cell: exactly the rows [`build_cells`] counts into it; for a survey estimate,
/// the respondents it weighs (its `n`).
pub fn units(source: &SourcePlan, table: &TableSpec, accepted: &[PathBuf]) -> Result<DataFrame> {
    let (lf, _) = unit_frame(source, table, accepted, None, true)?;
    match lf {
        Some(lf) => lf
            .collect()
            .ctx(|| format!("table {}: its counted units", table.id)),
        None => Ok(DataFrame::empty()),
    }
}

/// The columns of the harmonized records a table's units are made from: dimensions, filter,
/// person and dates, record keys, and the delivery order (with `lineage`, each record's identity).
fn needed_columns(
    source: &SourcePlan,
    table: &TableSpec,
    keyed: Option<&(String, [u8; 32])>,
    lineage: bool,
) -> Vec<String> {
    let mut needed: Vec<String> = table.dimensions.clone();
    needed.extend(table.filter.iter().map(|(c, _)| c.clone()));
    needed.extend(source.person_id.as_deref().map(raw_column));
    needed.extend(table.periods.date.as_deref().map(raw_column));
    needed.extend(keyed.map(|k| k.0.clone()));
    if lineage {
        needed.extend(["_file", "_record", "_line"].map(String::from));
        needed.extend(source.record_id.as_deref().map(raw_column));
        if table.kind.is_survey() {
            needed.extend(respondent_status(source).map(|(c, _)| c));
        }
    }
    match &table.kind {
        TableKind::Count
        | TableKind::SurveyTotal { .. }
        | TableKind::SurveyMean { .. }
        | TableKind::SurveyProportion { .. }
        | TableKind::SurveyRatio { .. }
        | TableKind::SurveyQuantile { .. }
        | TableKind::SurveyContrast { .. } => {}
        TableKind::Stock {
            valid_from,
            valid_to,
            ..
        } => {
            needed.push(raw_column(valid_from));
            needed.extend(valid_to.as_deref().map(raw_column));
            if let Some((birth, _)) = ages_at_stock_date(source, table) {
                needed.push(raw_column(&birth));
            }
            for (_, history) in statuses_at_stock_date(source, table) {
                needed.extend(history.iter().map(|(_, f)| raw_column(f)));
            }
        }
        TableKind::Flow {
            start,
            eurostat_end,
        } => {
            needed.push(raw_column(start));
            needed.extend(eurostat_end.as_deref().map(raw_column));
        }
        TableKind::Migration {
            date,
            direction,
            duration,
            ..
        } => {
            needed.extend([raw_column(date), direction.clone()]);
            // The duration column is made here, not read.
            needed.retain(|c| Some(c) != duration.as_ref());
        }
    }
    if table.unit == Unit::Persons || table.kind != TableKind::Count {
        needed.extend(["_file".to_string(), "_record".to_string()]);
    }
    needed.sort();
    needed.dedup();
    needed
}

/// The units of a count table (see [`units`]) as a lazy frame (`None`: a stock without stock
/// dates), and the records left out of every period; with `lineage`, every unit's record
/// identity too.
fn unit_frame(
    source: &SourcePlan,
    table: &TableSpec,
    accepted: &[PathBuf],
    keyed: Option<&(String, [u8; 32])>,
    lineage: bool,
) -> Result<(Option<LazyFrame>, Outside)> {
    let needed = needed_columns(source, table, keyed, lineage);
    let mut df: Option<DataFrame> = None;
    for path in accepted {
        let file = std::fs::File::open(path).map_err(|e| crate::Error::io(path, e))?;
        let part = crate::error::guard_reader(path, || {
            ParquetReader::new(file)
                .with_columns(Some(needed.clone()))
                .finish()
                .ctx(|| format!("table {}: reading the harmonized records", table.id))
        })?;
        df = Some(match df {
            None => part,
            Some(mut d) => {
                d.vstack_mut_owned(part)
                    .ctx(|| format!("table {}: reading the harmonized records", table.id))?;
                d
            }
        });
    }
    let df = df.ok_or_else(|| {
        crate::Error::Internal(format!(
            "table {}: a source without accepted parts",
            table.id
        ))
    })?;
    units_of(source, table, df, lineage)
}

/// [`unit_frame`] over records already read (all of a person's records among them).
fn units_of(
    source: &SourcePlan,
    table: &TableSpec,
    df: DataFrame,
    lineage: bool,
) -> Result<(Option<LazyFrame>, Outside)> {
    let ctx = |what: &str| format!("table {}: {what}", table.id);
    // A stock's filter applies to the ages restated on each stock date, a migration table's
    // to the migrations (every crossing of a person makes their history), below.
    let df = if matches!(
        table.kind,
        TableKind::Stock { .. } | TableKind::Migration { .. }
    ) {
        df
    } else {
        filtered(df.lazy(), table)
            .collect()
            .ctx(|| ctx("the filter"))?
    };
    let person = source
        .person_id
        .as_deref()
        .map(raw_column)
        .unwrap_or_default();
    let order = |first: &str| -> Vec<PlSmallStr> {
        [first, PERIOD, "_file", "_record"]
            .iter()
            .filter(|c| !c.is_empty())
            .map(|c| PlSmallStr::from(*c))
            .collect()
    };
    let mut out = PeriodCells::default();
    let lf = match &table.kind {
        TableKind::Count => {
            let (df, outside) =
                place(df, &table.periods).ctx(|| ctx("placing the records in their periods"))?;
            out.outside = outside;
            if table.unit == Unit::Persons {
                // Each person once per period: their last record of the period in file order.
                df.lazy()
                    .sort(order(&person), SortMultipleOptions::default())
                    .unique_stable(
                        Some(cols([person.as_str(), PERIOD])),
                        UniqueKeepStrategy::Last,
                    )
            } else {
                df.lazy()
            }
        }
        TableKind::SurveyTotal { .. }
        | TableKind::SurveyMean { .. }
        | TableKind::SurveyProportion { .. }
        | TableKind::SurveyRatio { .. }
        | TableKind::SurveyQuantile { .. }
        | TableKind::SurveyContrast { .. } => {
            if !lineage {
                return Err(crate::Error::Internal(format!(
                    "table {}: survey estimates are built from their design partials",
                    table.id
                )));
            }
            // The respondents an estimate weighs (its `n`): the filtered records, without the
            // nonrespondents a nonresponse adjustment keeps in the design.
            let df = match respondent_status(source) {
                Some((status, codes)) => {
                    let s = df
                        .column(&status)
                        .and_then(|c| c.cast(&DataType::String))
                        .ctx(|| ctx(&status))?;
                    let s = s.str().ctx(|| ctx(&status))?;
                    let keep: BooleanChunked = s
                        .iter()
                        .map(|v| Some(v.is_some_and(|v| codes.contains(v.trim()))))
                        .collect();
                    df.filter(&keep).ctx(|| ctx("the respondents"))?
                }
                None => df,
            };
            df.lazy().with_column(lit(0u32).alias(PERIOD))
        }
        TableKind::Stock {
            valid_from,
            valid_to,
            open_end_valid,
        } => {
            let valid_from = raw_column(valid_from);
            let valid_to = valid_to.as_deref().map(raw_column);
            let ages = ages_at_stock_date(source, table);
            let statuses = statuses_at_stock_date(source, table);
            let mut frames = Vec::new();
            for (i, p) in table.periods.list.iter().enumerate() {
                let at = p.end;
                // Without an end date a record is valid from its start on, or not counted.
                let until = match &valid_to {
                    None => lit(*open_end_valid),
                    Some(to) if *open_end_valid => col(to.as_str())
                        .is_null()
                        .or(col(to.as_str()).gt_eq(lit(at))),
                    Some(to) => col(to.as_str()).gt_eq(lit(at)),
                };
                let valid = df
                    .clone()
                    .lazy()
                    .filter(col(valid_from.as_str()).lt_eq(lit(at)).and(until))
                    .sort(
                        [person.as_str(), valid_from.as_str(), "_file", "_record"],
                        SortMultipleOptions::default(),
                    )
                    .unique_stable(Some(cols([person.as_str()])), UniqueKeepStrategy::Last)
                    .with_column(lit(i as u32).alias(PERIOD))
                    .collect()
                    .ctx(|| ctx("the records valid on the stock date"))?;
                let valid = match &ages {
                    Some((birth, columns)) => restate_ages(valid, birth, columns, at)
                        .ctx(|| ctx("ages at the stock date"))?,
                    None => valid,
                };
                let valid = restate_statuses(valid, &statuses, at)
                    .ctx(|| ctx("statuses at the stock date"))?;
                frames.push(filtered(valid.lazy(), table));
            }
            out.outside.no_date = df
                .column(&valid_from)
                .ctx(|| ctx(&valid_from))?
                .null_count() as u64;
            match frames.len() {
                0 => return Ok((None, out.outside)),
                _ => concat(frames, UnionArgs::default()).ctx(|| ctx("stock dates"))?,
            }
        }
        TableKind::Flow {
            start,
            eurostat_end,
        } => {
            let start = raw_column(start);
            let sorted = df
                .lazy()
                .sort(
                    [person.as_str(), start.as_str(), "_file", "_record"],
                    SortMultipleOptions::default(),
                )
                .collect()
                .ctx(|| ctx("sorting the records"))?;
            let firsts = match eurostat_end {
                None => sorted
                    .lazy()
                    .unique_stable(Some(cols([person.as_str()])), UniqueKeepStrategy::First)
                    .collect()
                    .ctx(|| ctx("each person's first record"))?,
                Some(end) => {
                    let keep = eurostat_first(&sorted, &person, &start, &raw_column(end))
                        .ctx(|| ctx("the Eurostat first-permit rule"))?;
                    sorted
                        .filter(&keep)
                        .ctx(|| ctx("the Eurostat first-permit rule"))?
                }
            };
            let (df, outside) = place(firsts, &table.periods)
                .ctx(|| ctx("placing the records in their periods"))?;
            out.outside = outside;
            // Each person once per period (under Eurostat's rule a person may have a first
            // permit in several periods, never two in one).
            df.lazy().unique_stable(
                Some(cols([person.as_str(), PERIOD])),
                UniqueKeepStrategy::First,
            )
        }
        TableKind::Migration {
            flow,
            rule,
            date,
            direction,
            arrival,
            departure,
            observed_to,
            duration,
        } => {
            let (df, outside) = migrations(
                df,
                &person,
                (&raw_column(date), direction, arrival, departure),
                (*rule, *flow, *observed_to, duration.as_deref()),
                table,
            )
            .ctx(|| ctx("the migrations in the crossing histories"))?;
            out.outside = outside;
            // Each person once per period: their first migration in it.
            filtered(df.lazy(), table).unique_stable(
                Some(cols([person.as_str(), PERIOD])),
                UniqueKeepStrategy::First,
            )
        }
    };
    Ok((Some(lf), out.outside))
}

/// The crossings of `df` that are migrations of `flow` (see [`crate::residence`]), placed in
/// their periods and sorted by person, date and delivery order; and what was left out: the
/// crossings outside the periods (as any table's records) and those in a period, passing the
/// table's filter, that may be such migrations but cannot be decided yet (`undetermined`). A crossing without a date or
/// with a direction that is neither code is no part of any history (`no_date`).
fn migrations(
    df: DataFrame,
    person: &str,
    (date, direction, arrival, departure): (&str, &str, &str, &str),
    (rule, flow, observed_to, duration): (
        crate::spec::ResidenceRule,
        crate::spec::MigrationFlow,
        chrono::NaiveDate,
        Option<&str>,
    ),
    table: &TableSpec,
) -> PolarsResult<(DataFrame, Outside)> {
    let periods = &table.periods;
    use crate::residence::Outcome;
    use crate::spec::MigrationFlow;
    // What any table of these records would leave out of its periods.
    let (_, mut outside) = place(df.clone(), periods)?;
    let observed = crate::calendar::days_of_date(observed_to);
    let dir = col(direction).cast(DataType::String);
    let usable = col(date).is_not_null().and(
        dir.clone()
            .eq(lit(arrival))
            .or(dir.clone().eq(lit(departure))),
    );
    let unusable = df
        .clone()
        .lazy()
        .filter(usable.clone().not())
        .collect()?
        .height() as u64;
    let placed_unusable = unusable.saturating_sub(outside.no_date);
    outside.no_date += placed_unusable;
    let df = df
        .lazy()
        .filter(usable.and(col(date).to_physical().lt_eq(lit(observed))))
        .with_column(dir.eq(lit(arrival)).alias("_arrival"))
        .sort(
            [person, date, "_file", "_record"],
            SortMultipleOptions::default(),
        )
        .collect()?;
    let persons = df.column(person)?.cast(&DataType::String)?;
    let persons: Vec<Option<&str>> = persons.str()?.iter().collect();
    let dates = df.column(date)?.to_physical_repr();
    let dates: Vec<i32> = dates.i32()?.iter().map(|d| d.unwrap_or_default()).collect();
    let arrivals: Vec<bool> = df
        .column("_arrival")?
        .bool()?
        .iter()
        .map(|a| a.unwrap_or(false))
        .collect();
    let outcomes = crate::residence::classify(&persons, &dates, &arrivals, rule, observed_to);
    let mut df = df;
    if let Some(name) = duration {
        let codes = crate::residence::durations(&persons, &dates, &arrivals, observed_to);
        df.with_column(Column::new(name.into(), codes))?;
    }
    let wanted = match flow {
        MigrationFlow::Immigration => Outcome::Immigration,
        MigrationFlow::Emigration => Outcome::Emigration,
    };
    let keep: Vec<bool> = outcomes.iter().map(|o| *o == wanted).collect();
    // Undetermined crossings of the flow's direction, counted when they fall in a period.
    let open: Vec<bool> = outcomes
        .iter()
        .zip(&arrivals)
        .map(|(o, a)| *o == Outcome::Undetermined && *a == (wanted == Outcome::Immigration))
        .collect();
    let open = df.filter(&BooleanChunked::from_slice("open".into(), &open))?;
    let open = filtered(open.lazy(), table).collect()?;
    let (open, _) = place(open, periods)?;
    outside.undetermined = open.height() as u64;
    let df = df
        .filter(&BooleanChunked::from_slice("keep".into(), &keep))?
        .drop("_arrival")?;
    let (df, _) = place(df, periods)?;
    Ok((df, outside))
}

/// Which records of `df` (sorted by person, start, file, record) are first permits under
/// Eurostat's rule (see [`TableKind::Flow`]): valid at least 3 months, and no earlier record
/// of the person valid in the 6 months before the start. A record without an end is valid
/// from its start on (it blocks every later one).
fn eurostat_first(
    df: &DataFrame,
    person: &str,
    start: &str,
    end: &str,
) -> PolarsResult<BooleanChunked> {
    use chrono::Months;
    let persons = df.column(person)?.cast(&DataType::String)?;
    let persons = persons.str()?;
    let starts = df.column(start)?.to_physical_repr();
    let starts = starts.i32()?;
    let ends = df.column(end)?.to_physical_repr();
    let ends = ends.i32()?;
    let mut keep = Vec::with_capacity(df.height());
    // The latest end among the person's earlier records (None: none yet; i32::MAX: open).
    let mut latest: Option<i32> = None;
    for i in 0..df.height() {
        if i == 0 || persons.get(i) != persons.get(i - 1) {
            latest = None;
        }
        let s = starts.get(i).and_then(crate::calendar::date_of_days);
        let e = ends.get(i);
        let ok = match s {
            None => false,
            Some(s) => {
                let long_enough = match e.and_then(crate::calendar::date_of_days) {
                    None => e.is_none(),
                    Some(e) => s
                        .checked_add_months(Months::new(3))
                        .and_then(|d| d.pred_opt())
                        .is_some_and(|min_end| e >= min_end),
                };
                let gap = match latest {
                    None => true,
                    Some(l) => {
                        let cutoff = s.checked_sub_months(Months::new(6));
                        l != i32::MAX
                            && crate::calendar::date_of_days(l)
                                .zip(cutoff)
                                .is_some_and(|(l, c)| l < c)
                    }
                };
                long_enough && gap
            }
        };
        keep.push(ok);
        let this_end = e.unwrap_or(i32::MAX);
        latest = Some(latest.map_or(this_end, |l| l.max(this_end)));
    }
    Ok(BooleanChunked::from_slice("keep".into(), &keep))
}

/// Age columns of a table with their banding (`None`: the age itself).
type AgeColumns = Vec<(String, Option<Banding>)>;

/// The age columns a stock table must restate at its stock date: when the source derives its
/// age at each record's event (`AGE = { birth_date, at }`), the birth date field and, for each
/// of the table's dimensions or filter columns that is that age or a banding of it, the
/// banding (`None` for the age itself).
fn ages_at_stock_date(source: &SourcePlan, table: &TableSpec) -> Option<(String, AgeColumns)> {
    let (age, birth) = source.harmonize.iter().find_map(|d| match &d.derivation {
        Derivation::Age {
            birth_date: Some(b),
            at: Some(_),
            ..
        } => Some((d.name.clone(), b.clone())),
        _ => None,
    })?;
    let used: Vec<&String> = table
        .dimensions
        .iter()
        .chain(table.filter.iter().map(|(c, _)| c))
        .collect();
    let mut columns: AgeColumns = Vec::new();
    for d in &source.harmonize {
        let entry = match &d.derivation {
            Derivation::Age { .. } if d.name == age => (d.name.clone(), None),
            Derivation::Band { age: a, banding } if *a == age => {
                (d.name.clone(), Some(banding.clone()))
            }
            _ => continue,
        };
        if used.contains(&&entry.0) && !columns.iter().any(|c| c.0 == entry.0) {
            columns.push(entry);
        }
    }
    (!columns.is_empty()).then_some((birth, columns))
}

/// The status columns (`history` derivations) among a stock table's dimensions and filter,
/// with their histories: restated on each stock date.
fn statuses_at_stock_date(
    source: &SourcePlan,
    table: &TableSpec,
) -> Vec<(String, Vec<(String, String)>)> {
    let used = |c: &String| {
        table.dimensions.contains(c) || table.filter.as_ref().is_some_and(|(f, _)| f == c)
    };
    source
        .harmonize
        .iter()
        .filter(|d| used(&d.name))
        .filter_map(|d| match &d.derivation {
            Derivation::Status { history, .. } => Some((d.name.clone(), history.clone())),
            _ => None,
        })
        .collect()
}

/// Replace each status column by the status on `on` from the record's history.
fn restate_statuses(
    mut df: DataFrame,
    statuses: &[(String, Vec<(String, String)>)],
    on: chrono::NaiveDate,
) -> PolarsResult<DataFrame> {
    let on = Some(crate::calendar::days_of_date(on));
    for (name, history) in statuses {
        let v = crate::harmonize::statuses(&df, history, |_| on)?;
        let old = df.column(name)?.dtype().clone();
        df.with_column(Column::new(name.as_str().into(), v).cast(&old)?)?;
    }
    Ok(df)
}

/// Replace the age columns (and their bandings) by the age at `on` wherever the record has a
/// birth date; a record without one keeps its harmonized age (a reported age, or unknown).
fn restate_ages(
    mut df: DataFrame,
    birth: &str,
    columns: &[(String, Option<Banding>)],
    on: chrono::NaiveDate,
) -> PolarsResult<DataFrame> {
    let births: Vec<Option<i32>> = df
        .column(&raw_column(birth))?
        .to_physical_repr()
        .i32()?
        .iter()
        .collect();
    let ages: Vec<Option<u32>> = births
        .iter()
        .map(|b| {
            b.and_then(crate::calendar::date_of_days)
                .and_then(|b| crate::calendar::age_at(b, on))
        })
        .collect();
    for (name, banding) in columns {
        let old = df.column(name)?.clone();
        let new = match banding {
            None => {
                let kept = old.cast(&DataType::UInt32)?;
                let kept = kept.u32()?;
                let v: Vec<Option<u32>> = (0..df.height())
                    .map(|i| {
                        if births[i].is_some() {
                            ages[i]
                        } else {
                            kept.get(i)
                        }
                    })
                    .collect();
                Column::new(name.as_str().into(), v)
            }
            Some(b) => {
                let kept = old.cast(&DataType::String)?;
                let kept = kept.str()?;
                let v: Vec<Option<&str>> = (0..df.height())
                    .map(|i| {
                        if births[i].is_some() {
                            Some(b.code(ages[i]))
                        } else {
                            kept.get(i)
                        }
                    })
                    .collect();
                Column::new(name.as_str().into(), v)
            }
        };
        let new = new.cast(old.dtype())?;
        df.with_column(new)?;
    }
    Ok(df)
}

/// Finest cells over `from` dimensions summed onto the `to` dimensions (a subset of them).
pub fn project(cells: &Cells, from: &[String], to: &[String]) -> Cells {
    let pos: Vec<usize> = to
        .iter()
        .filter_map(|d| from.iter().position(|x| x == d))
        .collect();
    let mut out = Cells::new();
    for (k, v) in cells {
        let key: Vec<String> = pos.iter().map(|i| k[*i].clone()).collect();
        *out.entry(key).or_default() += *v;
    }
    out
}

/// For a table protected by the cell key method: the column holding each record's stable
/// identifier (the person's for tables of persons, the record's otherwise) and the key of the
/// record keys (derived from the protection secret; `None` without it).
pub fn record_keys(
    source: &SourcePlan,
    table: &TableSpec,
    key: Option<&[u8; 32]>,
) -> Option<(String, [u8; 32])> {
    table
        .protect
        .as_ref()
        .filter(|p| p.method == crate::spec::ProtectMethod::CellKey)?;
    let id = if table.unit == Unit::Persons || table.kind != TableKind::Count {
        source.person_id.as_deref()
    } else {
        source.record_id.as_deref()
    }?;
    Some((raw_column(id), *key?))
}

/// A record's key: the first 32 bits of a BLAKE3 hash of its stable identifier keyed by the
/// protection secret's cell-key key (`Secret::derive("cell key")`), a fraction of 2^32.
pub fn record_key(key: &[u8; 32], id: &str) -> u32 {
    let h = blake3::keyed_hash(key, id.as_bytes());
    let mut x = [0u8; 4];
    x.copy_from_slice(&h.as_bytes()[..4]);
    u32::from_le_bytes(x)
}

/// Whether a table can be counted chunk by chunk while its source is read (a mergeable partial):
/// records and events are; persons need every record of a person first.
pub fn is_streamed(table: &TableSpec) -> bool {
    table.kind == TableKind::Count && table.unit != Unit::Persons
}

/// Add one harmonized chunk's finest cells to `cells` (for [`is_streamed`] tables of `source`).
pub fn add_chunk(
    source: &SourcePlan,
    table: &TableSpec,
    chunk: &DataFrame,
    cells: &mut PeriodCells,
    key: Option<&[u8; 32]>,
) -> Result<()> {
    let keyed = record_keys(source, table, key);
    let df = filtered(chunk.clone().lazy(), table)
        .collect()
        .ctx(|| format!("table {}: the filter", table.id))?;
    let (df, outside) = place(df, &table.periods)
        .ctx(|| format!("table {}: placing the records in their periods", table.id))?;
    cells.outside += outside;
    add_finest(df.lazy(), table, keyed.as_ref(), cells)
}

fn filtered(lf: LazyFrame, table: &TableSpec) -> LazyFrame {
    match &table.filter {
        None => lf,
        Some((column, values)) => {
            let any = values
                .iter()
                .map(|v| col(column.as_str()).eq(lit(v.as_str())))
                .reduce(|a, b| a.or(b))
                .unwrap_or(lit(false));
            lf.filter(any)
        }
    }
}

/// Group by period and the table's dimensions and add the counts to `cells` — and, with
/// `keyed` (the identifier column and seed of [`record_keys`]), the sums of the records' keys.
fn add_finest(
    lf: LazyFrame,
    table: &TableSpec,
    keyed: Option<&(String, [u8; 32])>,
    cells: &mut PeriodCells,
) -> Result<()> {
    let ctx = |what: &str| format!("table {}: {what}", table.id);
    let mut dims: Vec<Expr> = vec![col(PERIOD)];
    dims.extend(table.dimensions.iter().map(|d| col(d.as_str())));
    let lf = match keyed {
        None => lf,
        Some((id, key)) => {
            let mut df = lf.collect().ctx(|| ctx("reading the records"))?;
            let ids = df
                .column(id)
                .ctx(|| ctx(id))?
                .cast(&DataType::String)
                .ctx(|| ctx(id))?;
            let keys: Vec<u64> = ids
                .str()
                .ctx(|| ctx(id))?
                .iter()
                .map(|v| u64::from(record_key(key, v.unwrap_or_default())))
                .collect();
            df.with_column(Column::new("_record_key".into(), keys))
                .ctx(|| ctx("record keys"))?;
            df.lazy()
        }
    };
    let mut aggs = vec![len().alias("n")];
    if keyed.is_some() {
        aggs.push(col("_record_key").sum().alias("_key"));
    }
    let finest = lf
        .group_by(dims)
        .agg(aggs)
        .collect()
        .ctx(|| ctx("aggregating the finest cells"))?;
    let dim_cols = dimension_strings(table, &finest, &ctx)?;
    let n = finest
        .column(crate::vocab::column::COUNT)
        .ctx(|| ctx(crate::vocab::column::COUNT))?
        .cast(&DataType::UInt64)
        .ctx(|| ctx("n"))?;
    let n = n.u64().ctx(|| ctx("n"))?;
    let periods = finest
        .column(PERIOD)
        .ctx(|| ctx(PERIOD))?
        .cast(&DataType::UInt32)
        .ctx(|| ctx(PERIOD))?;
    let periods = periods.u32().ctx(|| ctx(PERIOD))?;
    let sums = match keyed {
        None => None,
        Some(_) => Some(
            finest
                .column("_key")
                .ctx(|| ctx("record keys"))?
                .cast(&DataType::UInt64)
                .ctx(|| ctx("record keys"))?,
        ),
    };
    let sums = sums
        .as_ref()
        .map(|s| s.u64().ctx(|| ctx("record keys")))
        .transpose()?;
    for row in 0..finest.height() {
        let key: Vec<String> = dim_cols
            .iter()
            .map(|c| c.get(row).unwrap_or(crate::vocab::UNKNOWN).to_string())
            .collect();
        let period = periods.get(row).unwrap_or(0) as usize;
        *cells
            .by_period
            .entry(period)
            .or_default()
            .entry(key)
            .or_default() += Tally {
            n: n.get(row).unwrap_or(0),
            // The sum of the keys modulo 2^32: the low 32 bits of an exact integer sum.
            key: sums.map_or(0, |s| s.get(row).unwrap_or(0) as u32),
        };
    }
    Ok(())
}

/// The researcher's `GROUP BY CUBE`: the number of records of a Parquet file by `dims`, with
/// every margin (`_T`), one row per cell, sorted by the dimensions (`n` last). Only the
/// dimension columns are read; the finest cells are counted on the columns' dictionary codes
/// ([`dictcube`]; row groups in parallel), or else by polars' streaming group-by over the
/// decoded values, and the margins come from [`roll_up`]. A null code counts as `_U` (unknown), as in migstat's own tables.
pub fn tabulate(path: &Path, dims: &[String]) -> Result<DataFrame> {
    let ctx = |what: &str| format!("tabulating {}: {what}", path.display());
    if dims.is_empty() || dims.len() > MAX_DIMENSIONS {
        return Err(crate::Error::Usage(format!(
            "tabulate takes 1 to {MAX_DIMENSIONS} columns (2^{MAX_DIMENSIONS} margin combinations); got {}",
            dims.len()
        )));
    }
    let name = path.to_string_lossy();
    let lf = LazyFrame::scan_parquet(PlRefPath::new(name.as_ref()), ScanArgsParquet::default())
        .ctx(|| ctx("opening the file"))?;
    let schema = lf
        .clone()
        .collect_schema()
        .ctx(|| ctx("reading the schema"))?;
    let missing: Vec<&str> = dims
        .iter()
        .filter(|d| schema.get(d.as_str()).is_none())
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(crate::Error::Usage(format!(
            "{}: no column {}; it has {}",
            path.display(),
            missing.join(", "),
            schema
                .iter_names()
                .map(|n| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let counted = crate::error::guard_reader(path, || Ok(dictcube::finest_cells(path, dims)))?;
    let cells = match counted {
        Ok(cells) => {
            tracing::info!(
                "{}: counted on the columns' dictionary codes",
                path.display()
            );
            cells
        }
        Err(dictcube::Unread::Damaged(detail)) => {
            return Err(crate::Error::Unreadable {
                path: path.to_path_buf(),
                detail,
            });
        }
        Err(unread) => {
            tracing::info!("{}: counted on decoded values ({unread})", path.display());
            crate::error::guard_reader(path, || decoded_cells(lf, path, dims))?
        }
    };
    let all = roll_up(&cells, dims.len());
    let mut columns: Vec<Column> = dims
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let v: Vec<&str> = all.keys().map(|k| k[i].as_str()).collect();
            Column::new(d.as_str().into(), v)
        })
        .collect();
    columns.push(Column::new(
        crate::vocab::column::COUNT.into(),
        all.values().copied().collect::<Vec<u64>>(),
    ));
    DataFrame::new(all.len(), columns).ctx(|| ctx("assembling the table"))
}

/// [`tabulate`]'s general path: the finest cells from polars' streaming group-by over the
/// decoded values (each cast to text), for files [`dictcube`] does not read.
fn decoded_cells(
    lf: LazyFrame,
    path: &Path,
    dims: &[String],
) -> Result<BTreeMap<Vec<String>, u64>> {
    let ctx = |what: &str| format!("tabulating {}: {what}", path.display());
    let keys: Vec<Expr> = dims
        .iter()
        .map(|d| col(d.as_str()).cast(DataType::String))
        .collect();
    // One plan with one sink: the result is a single frame (`unwrap_single` cannot fail here).
    let finest = lf
        .select(keys)
        .group_by(dims.iter().map(|d| col(d.as_str())).collect::<Vec<_>>())
        .agg([len().alias("n")])
        .collect_with_engine(Engine::Streaming)
        .ctx(|| ctx("counting the finest cells"))?
        .unwrap_single();
    let code_cols: Vec<&StringChunked> = dims
        .iter()
        .map(|d| finest.column(d).and_then(|c| c.str()).ctx(|| ctx(d)))
        .collect::<Result<_>>()?;
    let n = finest
        .column(crate::vocab::column::COUNT)
        .and_then(|c| c.cast(&DataType::UInt64))
        .ctx(|| ctx(crate::vocab::column::COUNT))?;
    let n = n.u64().ctx(|| ctx("n"))?;
    let mut cells: BTreeMap<Vec<String>, u64> = BTreeMap::new();
    for row in 0..finest.height() {
        let key = code_cols
            .iter()
            .map(|c| c.get(row).unwrap_or(crate::vocab::UNKNOWN).to_string())
            .collect();
        *cells.entry(key).or_default() += n.get(row).unwrap_or(0);
    }
    Ok(cells)
}

/// Roll the finest cells up to the table's margins and lay them out in long form.
pub fn finish(table: &TableSpec, period: &RefPeriod, cells: &Cells) -> Result<CountTable> {
    let d = table.dimensions.len();
    let all = match &table.grouping_sets {
        None => roll_up(cells, d),
        Some(sets) => {
            let masks: Vec<u32> = sets
                .iter()
                .map(|kept| {
                    (0..d)
                        .filter(|i| !kept.contains(&table.dimensions[*i]))
                        .fold(0u32, |m, i| m | (1 << i))
                })
                .collect();
            roll_up_masks(cells, d, &masks)
        }
    };
    Ok(CountTable {
        period: *period,
        frame: to_frame(table, period, &all)?,
    })
}

fn to_frame(table: &TableSpec, period: &RefPeriod, cells: &Cells) -> Result<DataFrame> {
    let unit = match table.unit {
        Unit::Persons => "persons",
        Unit::Records => "records",
        Unit::Events => "events",
    };
    let mut columns = cell_columns(table, period, unit, cells.keys());
    columns.push(Column::new(
        crate::vocab::column::COUNT.into(),
        cells.values().map(|t| t.n).collect::<Vec<u64>>(),
    ));
    if table
        .protect
        .as_ref()
        .is_some_and(|p| p.method == crate::spec::ProtectMethod::CellKey)
    {
        // The sum of the cell's record keys modulo 2^32 (restricted: it drives the noise).
        columns.push(Column::new(
            crate::vocab::column::RECORD_KEY_SUM.into(),
            cells.values().map(|t| t.key).collect::<Vec<u32>>(),
        ));
    }
    let mut df =
        DataFrame::new(cells.len(), columns).ctx(|| format!("table {}: assembling", table.id))?;
    df.rechunk_mut();
    Ok(df)
}

/// The columns every published table starts with — `table_id`, `source_id`, `unit`,
/// `ref_period` (the period in SDMX form, see [`RefPeriod::column`]), then one column per
/// dimension — for the given cells, in order.
pub fn cell_columns<'a, K, S>(
    table: &TableSpec,
    period: &RefPeriod,
    unit: &str,
    keys: impl ExactSizeIterator<Item = &'a K> + Clone,
) -> Vec<Column>
where
    K: AsRef<[S]> + 'a,
    S: AsRef<str>,
{
    let h = keys.len();
    let period = period.column();
    let text =
        |name: &str, v: &str| Column::new_scalar(name.into(), Scalar::from(PlSmallStr::from(v)), h);
    let mut columns = vec![
        text("table_id", &table.id),
        text("source_id", &table.source),
        text("unit", unit),
        text("ref_period", &period),
    ];
    for (i, d) in table.dimensions.iter().enumerate() {
        let v: Vec<&str> = keys.clone().map(|k| k.as_ref()[i].as_ref()).collect();
        columns.push(Column::new(d.as_str().into(), v));
    }
    columns
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn period_cells_merge_and_travel_as_bytes() {
        let cell = |codes: &[&str]| codes.iter().map(|c| c.to_string()).collect::<Vec<_>>();
        let mut a = PeriodCells::default();
        a.by_period.entry(0).or_default().insert(
            cell(&["F", "Ω"]),
            Tally {
                n: 2,
                key: u32::MAX,
            },
        );
        a.outside.before = 3;
        let mut b = PeriodCells::default();
        b.by_period
            .entry(0)
            .or_default()
            .insert(cell(&["F", "Ω"]), Tally { n: 5, key: 2 });
        b.by_period
            .entry(1)
            .or_default()
            .insert(cell(&["M", "_U"]), Tally { n: 1, key: 7 });
        b.outside.undetermined = 4;
        assert_eq!(PeriodCells::from_bytes(&b.to_bytes()).unwrap(), b);
        a += PeriodCells::from_bytes(&b.to_bytes()).unwrap();
        // Counts add; key sums wrap modulo 2^32 (u32::MAX + 2 = 1).
        assert_eq!(a.by_period[&0][&cell(&["F", "Ω"])], Tally { n: 7, key: 1 });
        assert_eq!(a.by_period[&1][&cell(&["M", "_U"])], Tally { n: 1, key: 7 });
        assert_eq!((a.outside.before, a.outside.undetermined), (3, 4));
        assert!(PeriodCells::from_bytes(b"not cells").is_err());
    }

    #[test]
    fn a_persons_bucket_is_the_same_in_every_process() {
        assert_eq!(person_bucket(None, 10), 0);
        assert_eq!(
            person_bucket(Some("P1"), 10),
            xxhash_rust::xxh3::xxh3_64(b"P1") % 10
        );
        assert_eq!(person_bucket(Some("P1"), 0), 0);
    }

    fn cells(rows: &[(&[&str], u64)]) -> BTreeMap<Vec<String>, u64> {
        rows.iter()
            .map(|(k, n)| (k.iter().map(|s| s.to_string()).collect(), *n))
            .collect()
    }

    #[test]
    fn roll_up_adds_every_margin() {
        let c = cells(&[(&["F", "A"], 2), (&["F", "B"], 3), (&["M", "A"], 5)]);
        let all = roll_up(&c, 2);
        let expected = cells(&[
            (&["F", "A"], 2),
            (&["F", "B"], 3),
            (&["M", "A"], 5),
            (&["_T", "A"], 7),
            (&["_T", "B"], 3),
            (&["F", "_T"], 5),
            (&["M", "_T"], 5),
            (&["_T", "_T"], 10),
        ]);
        assert_eq!(all, expected);
    }

    #[test]
    fn grouping_sets_keep_only_the_declared_margins() {
        let c = cells(&[(&["F", "A"], 2), (&["F", "B"], 3), (&["M", "A"], 5)]);
        // Keep (sex) and () only: masks 0b10 (second dimension totalled) and 0b11.
        let some = roll_up_masks(&c, 2, &[0b10, 0b11]);
        assert_eq!(
            some,
            cells(&[(&["F", "_T"], 5), (&["M", "_T"], 5), (&["_T", "_T"], 10)])
        );
    }

    #[test]
    fn no_dimensions_is_the_grand_total() {
        let c = cells(&[(&[], 4)]);
        assert_eq!(roll_up(&c, 0), c);
    }
}
