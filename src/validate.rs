//! Validate: checks every row of a raw chunk against its Table Schema and splits the chunk.
//!
//! Input: [`RawChunk`]s of one source, in order. Output: [`ValidatedChunk`]s — the accepted rows
//! as a typed polars frame (each schema field as `raw_<field>`, plus `_file`, `_record`, `_line`
//! lineage columns) and the
//! quarantine rows, one per problem. Every row lands on exactly one side.
//!
//! Checks run column by column (both cores, no allocation per value); `unique` and `primaryKey`
//! keep a set of 96-bit key hashes across chunks and files. The first occurrence of a key is
//! kept; later ones are quarantined. A key set holds at most [`key_window`] keys in memory:
//! when full, its keys are written sorted to a run file (16 bytes a key) and it starts empty,
//! so memory does not grow with the rows. A duplicate inside the window is quarantined as its
//! chunk is validated; one whose first occurrence went to an earlier run is found after the
//! pass, by merging the runs ([`Validator::finish_keys`]), and the runner takes it out of the
//! accepted rows then (see `runner::source`). Either way the same rows are accepted.
//! What can differ when a window spills: the quarantine rows of late duplicates come after the
//! others, without a raw value when the row had already failed another check (it then shows
//! both reasons, as an in-window duplicate with a bad value does); and a repeat inside one
//! window of a key first seen in an earlier run names the window's first occurrence as "first
//! seen" (the run merge names the true first for that one).

use std::collections::BTreeMap;

use polars::prelude::*;
use rayon::prelude::*;

use crate::calendar::days_of_date;
use crate::error::{PolarsContext, Result, quote};
use crate::ingest::RawChunk;
use crate::quarantine::{Issue, QuarantineBuilder, RowOrigin, Rule};
use crate::spec::schema::{Bound, DateMiss, EnumValues, Field, FieldType, TableSchema};
use crate::vocab::raw_column;

/// The accepted and quarantined parts of one chunk.
pub struct ValidatedChunk {
    pub accepted: DataFrame,
    pub quarantine: DataFrame,
    pub rows_read: u64,
    pub rows_quarantined: u64,
    /// Problems per rule (a row with two problems counts under both).
    pub by_rule: BTreeMap<Rule, u64>,
    /// The value labels of the chunk's file (SPSS, Stata), passed on to harmonization.
    pub labels: Option<std::sync::Arc<crate::ingest::ValueLabels>>,
}

mod keytable;
use keytable::{KeyTable, Slot};

/// A key as the first 96 bits of its XXH3-128 hash (see [`key_hash`]): 12 bytes, so that a key
/// and where it was first seen fill a 16-byte slot of the key table ([`KeyTable`]): the
/// position is the row number across the whole source, from 0, mapped back to file and record
/// through `chunks`. Collisions: about n²/2⁹⁷ for n keys, 6·10⁻¹⁴ at 100 million.
type Key = [u32; 3];

/// Keys held in memory by one key set before they are spilled to a run file: 3 × 2^20 keys fill
/// a table of 2^22 16-byte slots three quarters (64 MiB; a spill sorts the slots in place).
/// `MIGSTAT_KEY_WINDOW` sets another number (tests use a small one to spill on small inputs);
/// the accepted rows do not depend on it. Measured at 30 M rows: a 7 M window peaked 100 MiB
/// higher at the same speed.
pub fn key_window() -> usize {
    crate::tuning::count("MIGSTAT_KEY_WINDOW", 3 << 20)
}

/// Where a chunk starts: its first position, file index and first record.
type ChunkStart = (u64, usize, u64);

/// Where one shard's keys are ([`Validator::into_runs`]): its chunks (first position in the
/// shard, file index, first record), its rows, and per key set its sorted run files.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KeyRuns {
    pub chunks: Vec<(u64, usize, u64)>,
    pub rows: u64,
    pub sets: Vec<Vec<std::path::PathBuf>>,
    /// The key table the runs became ([`KeyRuns::into_table`]), if they did.
    #[serde(default)]
    pub table: Option<std::path::PathBuf>,
}

impl KeyRuns {
    /// Every key of the runs as one Parquet table at `path` (columns `shard` = `shard`, `key_set`,
    /// `k0`, `k1`, `k2` (the key's 96 bits), `pos`), for an engine that groups the key tables
    /// of all shards; the runs are removed.
    pub fn into_table(mut self, shard: usize, path: &std::path::Path) -> Result<Self> {
        let mut cols: [Vec<u32>; 6] = Default::default();
        for (set, paths) in self.sets.iter().enumerate() {
            for p in paths {
                let mut run = Run::open(p)?;
                while let Some(r) = run.next()? {
                    let w = |i: usize| u32::from_be_bytes([r[i], r[i + 1], r[i + 2], r[i + 3]]);
                    let row = [shard as u32, set as u32, w(0), w(4), w(8), w(12)];
                    for (c, v) in cols.iter_mut().zip(row) {
                        c.push(v);
                    }
                }
            }
        }
        let names = ["shard", "key_set", "k0", "k1", "k2", "pos"];
        let columns: Vec<Column> = names
            .iter()
            .zip(cols)
            .map(|(n, v)| Column::new((*n).into(), v))
            .collect();
        let mut frame = DataFrame::new(columns.first().map_or(0, |c| c.len()), columns)
            .ctx(|| format!("building the key table {}", path.display()))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| crate::Error::io(dir, e))?;
        }
        let file = std::fs::File::create(path).map_err(|e| crate::Error::io(path, e))?;
        ParquetWriter::new(file)
            .with_compression(ParquetCompression::Lz4Raw)
            .finish(&mut frame)
            .ctx(|| format!("writing the key table {}", path.display()))?;
        for p in self.sets.iter().flatten() {
            let _ = std::fs::remove_file(p);
        }
        for s in &mut self.sets {
            s.clear();
        }
        self.table = Some(path.to_path_buf());
        Ok(self)
    }
}

/// One `unique` field's or the primary key's set: the window in memory and the runs spilled.
#[derive(Default)]
struct KeySet {
    mem: KeyTable,
    /// Run files, oldest first: (key, position) records sorted by key, 16 bytes each.
    runs: Vec<std::path::PathBuf>,
}

/// A duplicate found after the pass: its source position and where the key was first seen.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LateDuplicate {
    /// Row number across the source (from 0; across its shards in file order when the pass
    /// was sharded), file index and record number in that file.
    pub position: u64,
    pub file: usize,
    pub record: u64,
    /// The rule (`Unique` or `PrimaryKey`) and the field (one-field keys).
    pub rule: Rule,
    pub field: Option<usize>,
    /// The key's fields (schema indices), for the quarantine's raw value.
    pub key_fields: Vec<usize>,
    /// The quarantine message (names the first occurrence).
    pub message: String,
}

/// Where a key was first seen: file index and record number.
#[derive(Clone, Copy)]
struct Seen {
    file: usize,
    record: u64,
}

pub struct Validator {
    source_id: String,
    schema: TableSchema,
    /// Display names of the source's files, by file index.
    files: Vec<String>,
    /// Per `unique` field: key hash → first occurrence.
    unique: Vec<(usize, KeySet)>,
    /// Primary-key fields and key hash → first occurrence.
    primary_key: Option<(Vec<usize>, KeySet)>,
    /// Per chunk validated: its first position in the source, file index and first record.
    chunks: Vec<(u64, usize, u64)>,
    /// Rows validated so far (the next chunk's first position).
    position: u64,
    /// Keys per key set held in memory ([`key_window`]) and where runs are spilled.
    window: usize,
    spill_dir: std::path::PathBuf,
    /// Run files written so far (their names).
    spilled: usize,
}

/// The file and record of source position `pos`.
fn locate(chunks: &[(u64, usize, u64)], pos: u64) -> Seen {
    let i = chunks.partition_point(|c| c.0 <= pos).saturating_sub(1);
    match chunks.get(i) {
        Some((start, file, first)) => Seen {
            file: *file,
            record: first + (pos - start),
        },
        None => Seen { file: 0, record: 0 },
    }
}

impl Validator {
    pub fn new(source_id: &str, schema: &TableSchema, files: Vec<String>) -> Self {
        let unique = schema
            .fields
            .iter()
            .enumerate()
            .filter(|(_, f)| f.constraints.unique)
            .map(|(i, _)| (i, KeySet::default()))
            .collect();
        let pk: Vec<usize> = schema
            .primary_key
            .iter()
            .filter_map(|k| schema.field_index(k))
            .collect();
        Validator {
            source_id: source_id.to_string(),
            schema: schema.clone(),
            files,
            unique,
            primary_key: (!pk.is_empty()).then(|| (pk, KeySet::default())),
            chunks: Vec::new(),
            position: 0,
            window: key_window(),
            spill_dir: std::env::temp_dir().join(format!(
                "migstat-keys-{}-{}",
                std::process::id(),
                SPILLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            )),
            spilled: 0,
        }
    }

    /// Spill key runs under `dir` (the run's staging directory, so a killed run leaves nothing
    /// behind) rather than the system's temporary directory; and hold `window` keys per set.
    pub fn spill_to(mut self, dir: std::path::PathBuf, window: usize) -> Self {
        self.spill_dir = dir;
        self.window = window.max(1);
        self
    }

    /// After the last chunk: the duplicates whose first occurrence was spilled before them,
    /// sorted by position (then rule), found by merging each key set's runs. Removes the runs.
    pub fn finish_keys(&mut self) -> Result<Vec<LateDuplicate>> {
        let mut runs: Vec<Vec<(Run, u64)>> = Vec::new();
        for set in self.key_sets_mut() {
            let mut r = Vec::with_capacity(set.runs.len() + 1);
            if !set.runs.is_empty() {
                for path in &set.runs {
                    r.push((Run::open(path)?, 0));
                }
                let window: Vec<[u8; 16]> = set
                    .mem
                    .drain_sorted(|slots| slots.iter().map(run_record).collect());
                r.push((Run::Mem(window.into_iter()), 0));
            }
            runs.push(r);
        }
        let chunks = self.chunks.clone();
        let late = self.late_duplicates(runs, &chunks)?;
        for set in self.key_sets_mut() {
            for path in set.runs.drain(..) {
                let _ = std::fs::remove_file(&path);
            }
        }
        if self.spilled > 0 {
            let _ = std::fs::remove_dir_all(&self.spill_dir);
        }
        Ok(late)
    }

    /// The key sets in a fixed order: each `unique` field's in schema order, then the primary
    /// key's. [`KeyRuns::sets`] follows it.
    fn key_sets_mut(&mut self) -> Vec<&mut KeySet> {
        let mut sets: Vec<&mut KeySet> = self.unique.iter_mut().map(|(_, s)| s).collect();
        if let Some((_, set)) = &mut self.primary_key {
            sets.push(set);
        }
        sets
    }

    /// Each key set's fields and rule, in the order of [`Validator::key_sets_mut`].
    fn key_set_rules(&self) -> Vec<(Vec<usize>, Rule)> {
        let mut sets: Vec<(Vec<usize>, Rule)> = self
            .unique
            .iter()
            .map(|(fi, _)| (vec![*fi], Rule::Unique))
            .collect();
        if let Some((fields, _)) = &self.primary_key {
            sets.push((fields.clone(), Rule::PrimaryKey));
        }
        sets
    }

    /// The duplicates the merged runs of each key set find (`runs[s]`: the runs of set `s`,
    /// each with the offset of its positions), placed in files and records through `chunks`,
    /// sorted by position then rule.
    fn late_duplicates(
        &self,
        runs: Vec<Vec<(Run, u64)>>,
        chunks: &[(u64, usize, u64)],
    ) -> Result<Vec<LateDuplicate>> {
        let pairs = runs
            .into_iter()
            .map(|r| {
                if r.is_empty() {
                    Ok(Vec::new())
                } else {
                    merge_runs(r)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(self.duplicates_of(pairs, chunks))
    }

    /// The duplicates of each key set's (duplicate position, first position) pairs (`pairs[s]`
    /// for set `s`), placed in files and records through `chunks`, sorted by position then rule.
    fn duplicates_of(
        &self,
        pairs: Vec<Vec<(u64, u64)>>,
        chunks: &[(u64, usize, u64)],
    ) -> Vec<LateDuplicate> {
        let mut late = Vec::new();
        for ((key_fields, rule), pairs) in self.key_set_rules().into_iter().zip(pairs) {
            let field = (key_fields.len() == 1).then(|| key_fields[0]);
            for (dup, first) in pairs {
                let at = locate(chunks, dup);
                let first = locate(chunks, first);
                let message = duplicate_message(
                    rule,
                    &self.schema.primary_key,
                    &self.files[first.file],
                    first.record,
                );
                late.push(LateDuplicate {
                    position: dup,
                    file: at.file,
                    record: at.record,
                    rule,
                    field,
                    key_fields: key_fields.clone(),
                    message,
                });
            }
        }
        late.sort();
        late
    }

    /// After the last chunk of a shard (one file of a source validated on its own): every key
    /// of each key set in sorted runs on disk (the window written as the last run), and where
    /// the shard's positions lie, for [`Validator::merge_shards`] on the coordinator.
    pub fn into_runs(mut self) -> Result<KeyRuns> {
        let mut spill = Spill {
            dir: &self.spill_dir,
            window: self.window,
            count: &mut self.spilled,
        };
        let mut sets = Vec::new();
        for set in self
            .unique
            .iter_mut()
            .map(|(_, s)| s)
            .chain(self.primary_key.as_mut().map(|(_, s)| s))
        {
            if !set.mem.is_empty() {
                spill_run(set, &mut spill)?;
            }
            sets.push(std::mem::take(&mut set.runs));
        }
        Ok(KeyRuns {
            chunks: self.chunks.clone(),
            rows: self.position,
            sets,
            table: None,
        })
    }

    /// The global chunks of `shards` (positions counted across them in file order) and each
    /// shard's offset.
    fn across(&self, shards: &[KeyRuns]) -> Result<(Vec<ChunkStart>, Vec<u64>)> {
        let sets = self.key_set_rules().len();
        let mut chunks = Vec::new();
        let mut offsets = Vec::with_capacity(shards.len());
        let mut offset = 0u64;
        for shard in shards {
            if shard.sets.len() != sets && shard.table.is_none() {
                return Err(crate::Error::Internal(format!(
                    "source `{}`: a shard returned {} key sets, the schema has {sets}",
                    self.source_id,
                    shard.sets.len()
                )));
            }
            offsets.push(offset);
            chunks.extend(shard.chunks.iter().map(|(p, f, r)| (p + offset, *f, *r)));
            offset += shard.rows;
        }
        Ok((chunks, offsets))
    }

    /// The duplicates across shards from the rows of their key tables whose key was seen more
    /// than once (what an engine's group-by on the key tables returns, in any order: columns
    /// `shard` (index into `shards`), `key_set`, `k0`, `k1`, `k2`, `pos`): as
    /// [`Validator::merge_shards`] finds them from the runs.
    pub fn duplicates_in(
        &self,
        shards: &[KeyRuns],
        repeated: &DataFrame,
    ) -> Result<Vec<LateDuplicate>> {
        let (chunks, offsets) = self.across(shards)?;
        let sets = self.key_set_rules().len();
        if repeated.height() == 0 {
            return Ok(Vec::new());
        }
        let column = |name: &str| -> Result<Vec<Option<u64>>> {
            repeated
                .column(name)
                .and_then(|c| c.cast(&DataType::UInt64))
                .and_then(|c| c.u64().map(|c| c.iter().collect()))
                .ctx(|| format!("reading column `{name}` of the repeated keys"))
        };
        let cols: Vec<Vec<Option<u64>>> = ["shard", "key_set", "k0", "k1", "k2", "pos"]
            .iter()
            .map(|c| column(c))
            .collect::<Result<_>>()?;
        let mut rows: Vec<(usize, [u64; 3], u64)> = Vec::with_capacity(repeated.height());
        for i in 0..repeated.height() {
            let v: Vec<u64> = cols
                .iter()
                .map(|c| c[i])
                .collect::<Option<_>>()
                .ok_or_else(|| {
                    crate::Error::Internal("a repeated key with a null field".to_string())
                })?;
            let (shard, set) = (v[0] as usize, v[1] as usize);
            let offset = offsets
                .get(shard)
                .copied()
                .filter(|_| set < sets)
                .ok_or_else(|| {
                    crate::Error::Internal(format!(
                        "a repeated key of shard {shard}, set {set}: no such shard or set"
                    ))
                })?;
            rows.push((set, [v[2], v[3], v[4]], offset + v[5]));
        }
        rows.sort_unstable();
        let mut pairs: Vec<Vec<(u64, u64)>> = vec![Vec::new(); sets];
        let mut current: Option<(usize, [u64; 3], u64)> = None;
        for (set, key, pos) in rows {
            match current {
                Some((s, k, first)) if s == set && k == key => pairs[set].push((pos, first)),
                _ => current = Some((set, key, pos)),
            }
        }
        for p in &mut pairs {
            p.sort_unstable();
        }
        Ok(self.duplicates_of(pairs, &chunks))
    }

    /// The duplicates across the shards of a source (their [`KeyRuns`] in file order), on a
    /// validator of the same source that validated nothing itself: a key's first occurrence
    /// is its first in file order, as in one pass over the files. Every duplicate a shard did
    /// not find itself (its first occurrence in an earlier file, or spilled earlier in the same
    /// file) comes back, with source positions counted across the shards. Removes the runs.
    pub fn merge_shards(&self, shards: &[KeyRuns]) -> Result<Vec<LateDuplicate>> {
        let sets = self.key_set_rules().len();
        let mut runs: Vec<Vec<(Run, u64)>> = (0..sets).map(|_| Vec::new()).collect();
        let (chunks, offsets) = self.across(shards)?;
        for (shard, offset) in shards.iter().zip(offsets) {
            for (s, paths) in shard.sets.iter().enumerate() {
                for path in paths {
                    runs[s].push((Run::open(path)?, offset));
                }
            }
        }
        let late = self.late_duplicates(runs, &chunks)?;
        for path in shards.iter().flat_map(|s| s.sets.iter().flatten()) {
            let _ = std::fs::remove_file(path);
        }
        Ok(late)
    }

    /// Make room for about `rows` more keys in each key set, so a large source does not pay
    /// for repeated growth of its tables (the runner estimates `rows` from the file sizes).
    pub fn reserve_keys(&mut self, rows: usize) {
        let rows = rows.min(self.window);
        for (_, seen) in &mut self.unique {
            seen.mem.reserve(rows);
        }
        if let Some((_, seen)) = &mut self.primary_key {
            seen.mem.reserve(rows);
        }
    }

    /// Output schema of the accepted rows.
    pub fn accepted_schema(&self) -> Schema {
        let mut s: Schema = self
            .schema
            .fields
            .iter()
            .map(|f| polars::prelude::Field::new(raw_column(&f.name).into(), dtype(&f.field_type)))
            .collect();
        s.with_column("_file".into(), DataType::String);
        s.with_column("_record".into(), DataType::UInt64);
        s.with_column("_line".into(), DataType::UInt64);
        s
    }

    pub fn validate(&mut self, mut chunk: RawChunk) -> Result<ValidatedChunk> {
        let height = chunk.height();
        let pk_fields: Vec<usize> = self
            .primary_key
            .as_ref()
            .map(|(k, _)| k.clone())
            .unwrap_or_default();
        let checked: Vec<Result<(Series, Vec<Issue>)>> = self
            .schema
            .fields
            .par_iter()
            .zip(chunk.columns.par_iter())
            .enumerate()
            .map(|(fi, (field, col))| {
                check_column(fi, field, col, &chunk.broken, pk_fields.contains(&fi))
            })
            .collect();
        let mut columns = Vec::with_capacity(checked.len());
        let mut issues = std::mem::take(&mut chunk.issues);
        for c in checked {
            let (s, is) = c?;
            columns.push(s);
            issues.extend(is);
        }

        // Keys: checked in row order so the first occurrence wins, across chunks and files.
        let file = chunk.file_index;
        let record_of = |row: usize| chunk.first_record + row as u64;
        // Key sets record positions as u32: a source of more rows must be split.
        let base = self.position;
        if base + height as u64 > u64::from(u32::MAX) {
            return Err(crate::Error::Usage(format!(
                "source `{}`: more than {} rows in one source; split it into several sources (its key checks count rows in 32 bits)",
                self.source_id,
                u32::MAX
            )));
        }
        self.chunks.push((base, file, chunk.first_record));
        self.position += height as u64;
        let chunks = &self.chunks;
        let mut key_issues = Vec::new();
        let unusable: Vec<bool> = {
            let mut u = chunk.broken.clone();
            for i in &issues {
                if i.rule == Rule::Type || i.rule == Rule::InvalidEncoding {
                    u[i.row as usize] = true;
                }
            }
            u
        };
        let physical: Vec<Series> = columns
            .iter()
            .map(|s| s.to_physical_repr().into_owned())
            .collect();
        let mut spill = Spill {
            dir: &self.spill_dir,
            window: self.window,
            count: &mut self.spilled,
        };
        for (fi, seen) in &mut self.unique {
            let fi = *fi;
            first_wins(
                seen,
                &mut spill,
                &[KeyCol::new(&physical[fi])?],
                &unusable,
                base as u32,
                |row, first| {
                    let first = locate(chunks, u64::from(first));
                    key_issues.push(Issue {
                        row: row as u32,
                        field: Some(fi),
                        rule: Rule::Unique,
                        raw: raw_at(&chunk.columns[fi], row),
                        message: duplicate_message(
                            Rule::Unique,
                            &self.schema.primary_key,
                            &self.files[first.file],
                            first.record,
                        ),
                    })
                },
            )?;
        }
        if let Some((fields, seen)) = &mut self.primary_key {
            let cols = fields
                .iter()
                .map(|&i| KeyCol::new(&physical[i]))
                .collect::<Result<Vec<_>>>()?;
            first_wins(
                seen,
                &mut spill,
                &cols,
                &unusable,
                base as u32,
                |row, first| {
                    let first = locate(chunks, u64::from(first));
                    let raw = fields
                        .iter()
                        .filter_map(|&i| raw_at(&chunk.columns[i], row))
                        .collect::<Vec<_>>()
                        .join("|");
                    key_issues.push(Issue {
                        row: row as u32,
                        field: (fields.len() == 1).then(|| fields[0]),
                        rule: Rule::PrimaryKey,
                        raw: Some(raw),
                        message: duplicate_message(
                            Rule::PrimaryKey,
                            &self.schema.primary_key,
                            &self.files[first.file],
                            first.record,
                        ),
                    })
                },
            )?;
        }
        issues.extend(key_issues);
        // Stable: within a row, structural problems first, then fields in schema order.
        issues.sort_by_key(|i| i.row);

        let mut bad = vec![false; height];
        let mut by_rule = BTreeMap::new();
        let mut q = QuarantineBuilder::default();
        let file_name = self.files[file].as_str();
        for issue in issues {
            let row = issue.row as usize;
            bad[row] = true;
            *by_rule.entry(issue.rule).or_insert(0u64) += 1;
            let at = RowOrigin {
                source_id: &self.source_id,
                file: file_name,
                line: chunk.line(row),
                record: record_of(row),
            };
            let field = issue.field.map(|f| self.schema.fields[f].name.as_str());
            q.push(&at, field, issue);
        }
        let rows_quarantined = bad.iter().filter(|b| **b).count() as u64;

        let mut cols: Vec<Column> = columns
            .into_iter()
            .map(|mut s| {
                let name = raw_column(s.name());
                s.rename(name.into());
                Column::from(s)
            })
            .collect();
        cols.push(Column::new_scalar(
            "_file".into(),
            Scalar::from(PlSmallStr::from(file_name)),
            height,
        ));
        cols.push(Column::new(
            "_record".into(),
            (0..height).map(record_of).collect::<Vec<u64>>(),
        ));
        cols.push(match &chunk.lines {
            Some(l) => Column::new("_line".into(), l.clone()),
            None => Column::full_null("_line".into(), height, &DataType::UInt64),
        });
        let all = DataFrame::new(height, cols)
            .ctx(|| format!("assembling a chunk of source {}", self.source_id))?;
        let keep: BooleanChunked = bad.iter().map(|b| !b).collect();
        let accepted = all
            .filter(&keep)
            .ctx(|| format!("filtering accepted rows of source {}", self.source_id))?;
        Ok(ValidatedChunk {
            accepted,
            quarantine: q.finish()?,
            rows_read: height as u64,
            rows_quarantined,
            by_rule,
            labels: chunk.labels.take(),
        })
    }
}

fn dtype(t: &FieldType) -> DataType {
    match t {
        FieldType::String => DataType::String,
        FieldType::Integer => DataType::Int64,
        FieldType::Number => DataType::Float64,
        FieldType::Boolean => DataType::Boolean,
        FieldType::Date(_) => DataType::Date,
        FieldType::Year => DataType::Int32,
    }
}

fn raw_at(col: &StringChunked, row: usize) -> Option<String> {
    col.get(row).map(str::to_string)
}

/// Record each usable row's key; call `duplicate` with the row and the first occurrence when
/// the key was seen before (in this chunk, an earlier one, or an earlier file).
///
/// The chunk's keys are hashed in parallel, then probed in the order of the table slot they hash
/// to (ties by row, so that the first row still wins): the probes then walk the table forwards
/// instead of jumping at random, which matters once it is larger than the caches. `duplicate`
/// is called in that order; callers sort issues by row.
fn first_wins(
    set: &mut KeySet,
    spill: &mut Spill<'_>,
    cols: &[KeyCol<'_>],
    unusable: &[bool],
    base: u32,
    mut duplicate: impl FnMut(usize, u32),
) -> Result<()> {
    let keys: Vec<(u64, u32, Key)> = (0..unusable.len())
        .into_par_iter()
        .filter(|row| !unusable[*row])
        .map_init(
            || Vec::with_capacity(64),
            |buf, row| {
                key_hash(cols, row, buf).map(|h| {
                    (
                        h as u64,
                        row as u32,
                        [h as u32, (h >> 32) as u32, (h >> 64) as u32],
                    )
                })
            },
        )
        .flatten()
        .collect();
    // A full window goes to a run file first; the chunk's keys start the next window.
    if !set.mem.is_empty() && set.mem.len() + keys.len() > spill.window {
        spill_run(set, spill)?;
    }
    let seen = &mut set.mem;
    // Room first, so that the slot mask holds for the whole chunk: a key goes to slot
    // `hash & mask` or just after it.
    seen.reserve(keys.len());
    let mask = seen.mask();
    let keys = by_slot(keys, mask);
    for (_, row, key) in keys {
        if let Some(first) = seen.first_seen(key, base + row) {
            duplicate(row as usize, first);
        }
    }
    Ok(())
}

/// Bits of a slot index sorted in one pass of [`by_slot`] (a 2,048-entry count table).
const RADIX_BITS: u32 = 11;

/// `keys` (hash, row, key; rows ascending) in the order of the slot each hashes to
/// (`hash & mask`), ties by row: a stable least-significant-digit radix sort on the slot's bits,
/// two passes for a table of up to 2^22 slots. The hashes are uniform and the slot index is
/// short, so this is two linear passes; with the comparison sort it replaces
/// (`par_sort_unstable_by_key`), the pass's sorts took 4.0% of its CPU, with this 3.4%
/// (BENCHMARKS.md, "Raw text columns as dictionaries").
fn by_slot(mut keys: Vec<(u64, u32, Key)>, mask: u64) -> Vec<(u64, u32, Key)> {
    let bits = u64::BITS - mask.leading_zeros();
    let mut other = Vec::with_capacity(keys.len());
    let mut shift = 0;
    while shift < bits {
        let digit = |h: u64| (((h & mask) >> shift) & ((1 << RADIX_BITS) - 1)) as usize;
        let mut starts = [0usize; 1 << RADIX_BITS];
        for k in &keys {
            starts[digit(k.0)] += 1;
        }
        let mut at = 0;
        for s in starts.iter_mut() {
            let n = *s;
            *s = at;
            at += n;
        }
        other.clear();
        other.resize(keys.len(), (0, 0, [0; 3]));
        for k in &keys {
            let d = digit(k.0);
            other[starts[d]] = *k;
            starts[d] += 1;
        }
        std::mem::swap(&mut keys, &mut other);
        shift += RADIX_BITS;
    }
    keys
}

/// The quarantine message of a duplicate of `rule` (`Unique` or `PrimaryKey`) whose key was
/// first seen in `file` at `record`, found while its chunk was validated or when runs merged.
fn duplicate_message(rule: Rule, primary_key: &[String], file: &str, record: u64) -> String {
    match rule {
        Rule::Unique => format!("duplicate value; first seen in {file} record {record}"),
        _ => format!(
            "duplicate primary key ({}); first seen in {file} record {record}",
            primary_key.join(", ")
        ),
    }
}

/// Numbers the spill directories of the validators of one process.
static SPILLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Where and when key sets spill.
struct Spill<'a> {
    dir: &'a std::path::Path,
    window: usize,
    count: &'a mut usize,
}

/// The bytes of one run record: the key's 12 bytes and the position, as big-endian words, so
/// that byte order is the slots' order (key, then position).
fn run_record(slot: &Slot) -> [u8; 16] {
    let mut b = [0u8; 16];
    for (i, w) in slot.iter().enumerate() {
        b[4 * i..4 * i + 4].copy_from_slice(&w.to_be_bytes());
    }
    b
}

/// Write the window's keys, sorted, to a new run file and empty the window.
fn spill_run(set: &mut KeySet, spill: &mut Spill<'_>) -> Result<()> {
    use std::io::Write as _;
    std::fs::create_dir_all(spill.dir).map_err(|e| crate::Error::io(spill.dir, e))?;
    let path = spill.dir.join(format!("run-{:06}.keys", *spill.count));
    *spill.count += 1;
    let file = std::fs::File::create(&path).map_err(|e| crate::Error::io(&path, e))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    set.mem
        .drain_sorted(|slots| {
            for slot in slots {
                w.write_all(&run_record(slot))?;
            }
            w.flush()
        })
        .map_err(|e| crate::Error::io(&path, e))?;
    set.runs.push(path);
    Ok(())
}

/// One sorted run being merged: a run file, or the window still in memory.
enum Run {
    File(std::path::PathBuf, std::io::BufReader<std::fs::File>),
    Mem(std::vec::IntoIter<[u8; 16]>),
}

impl Run {
    fn open(path: &std::path::Path) -> Result<Self> {
        let f = std::fs::File::open(path).map_err(|e| crate::Error::io(path, e))?;
        Ok(Run::File(
            path.to_path_buf(),
            std::io::BufReader::with_capacity(1 << 16, f),
        ))
    }

    fn next(&mut self) -> Result<Option<[u8; 16]>> {
        use std::io::Read as _;
        match self {
            Run::Mem(it) => Ok(it.next()),
            Run::File(path, r) => {
                let mut b = [0u8; 16];
                match r.read_exact(&mut b) {
                    Ok(()) => Ok(Some(b)),
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
                    Err(e) => Err(crate::Error::io(path, e)),
                }
            }
        }
    }
}

/// The key and the position (plus the run's `offset`) of a run record.
fn run_entry(r: &[u8; 16], offset: u64) -> ([u8; 12], u64) {
    let mut key = [0u8; 12];
    key.copy_from_slice(&r[..12]);
    let pos = u32::from_be_bytes([r[12], r[13], r[14], r[15]]);
    (key, offset + u64::from(pos))
}

/// Merge sorted runs, each with the offset of its positions: every (duplicate position, first
/// position) whose first occurrence is in another run (within a run keys are distinct). Records
/// come out sorted by key, then position (offsets grow with the runs' order of positions): the
/// first of each key is its first occurrence.
fn merge_runs(mut runs: Vec<(Run, u64)>) -> Result<Vec<(u64, u64)>> {
    let mut heap = std::collections::BinaryHeap::with_capacity(runs.len());
    for (k, (run, offset)) in runs.iter_mut().enumerate() {
        if let Some(r) = run.next()? {
            let (key, pos) = run_entry(&r, *offset);
            heap.push(std::cmp::Reverse((key, pos, k)));
        }
    }
    let mut pairs = Vec::new();
    let mut current: Option<([u8; 12], u64)> = None;
    while let Some(std::cmp::Reverse((key, pos, k))) = heap.pop() {
        match current {
            Some((ck, first)) if ck == key => pairs.push((pos, first)),
            _ => current = Some((key, pos)),
        }
        let (run, offset) = &mut runs[k];
        if let Some(r) = run.next()? {
            let (key, pos) = run_entry(&r, *offset);
            heap.push(std::cmp::Reverse((key, pos, k)));
        }
    }
    pairs.sort_unstable();
    Ok(pairs)
}

/// Typed, allocation-free access to one key column (physical representation).
enum KeyCol<'a> {
    Str(&'a StringChunked),
    I64(&'a Int64Chunked),
    I32(&'a Int32Chunked),
    F64(&'a Float64Chunked),
    Bool(&'a BooleanChunked),
}

impl<'a> KeyCol<'a> {
    fn new(s: &'a Series) -> Result<Self> {
        let ctx = || format!("reading key column {}", s.name());
        Ok(match s.dtype() {
            DataType::String => KeyCol::Str(s.str().ctx(ctx)?),
            DataType::Int64 => KeyCol::I64(s.i64().ctx(ctx)?),
            DataType::Int32 => KeyCol::I32(s.i32().ctx(ctx)?),
            DataType::Float64 => KeyCol::F64(s.f64().ctx(ctx)?),
            _ => KeyCol::Bool(s.bool().ctx(ctx)?),
        })
    }

    /// Append the value at `row` to `buf`; `None` when it is null.
    fn append(&self, row: usize, buf: &mut Vec<u8>) -> Option<()> {
        match self {
            KeyCol::Str(c) => {
                let v = c.get(row)?;
                buf.extend_from_slice(&(v.len() as u64).to_le_bytes());
                buf.extend_from_slice(v.as_bytes());
            }
            KeyCol::I64(c) => buf.extend_from_slice(&c.get(row)?.to_le_bytes()),
            KeyCol::I32(c) => buf.extend_from_slice(&c.get(row)?.to_le_bytes()),
            KeyCol::F64(c) => buf.extend_from_slice(&c.get(row)?.to_bits().to_le_bytes()),
            KeyCol::Bool(c) => buf.push(u8::from(c.get(row)?)),
        }
        Some(())
    }
}

/// The 128-bit XXH3 hash of the key at `row` (values length-prefixed, so `("ab","c")` and
/// `("a","bc")` differ), of which the key sets keep 96 bits ([`Key`]); `None` when a key value
/// is null. `buf` is scratch space, reused across rows.
fn key_hash(cols: &[KeyCol<'_>], row: usize, buf: &mut Vec<u8>) -> Option<u128> {
    buf.clear();
    for c in cols {
        c.append(row, buf)?;
    }
    Some(xxhash_rust::xxh3::xxh3_128(buf))
}

/// Collects the issues of one column.
struct Sink {
    field: usize,
    issues: Vec<Issue>,
}

impl Sink {
    fn push(&mut self, row: usize, rule: Rule, raw: &str, message: String) {
        self.issues.push(Issue {
            row: row as u32,
            field: Some(self.field),
            rule,
            raw: Some(raw.to_string()),
            message,
        });
    }
}

/// Walk a column. Nulls, missing-value markers and broken rows become null (with a `required`
/// issue where the field is required); every other value goes to `read`, which returns the typed
/// value or `None` after pushing its issue. Also returns how many non-null raw values became null.
fn walk<'a, T>(
    col: &'a StringChunked,
    field: &Field,
    broken: &[bool],
    required: bool,
    sink: &mut Sink,
    mut read: impl FnMut(usize, &'a str, &mut Sink) -> Option<T>,
) -> (Vec<Option<T>>, usize) {
    let mut out = Vec::with_capacity(col.len());
    let mut nulled = 0;
    for (row, v) in col.iter().enumerate() {
        if broken[row] {
            out.push(None);
            nulled += usize::from(v.is_some());
            continue;
        }
        match v {
            Some(s) if !field.missing_values.iter().any(|m| m == s) => out.push(read(row, s, sink)),
            _ => {
                if required {
                    let raw = v.unwrap_or("");
                    sink.push(
                        row,
                        Rule::Required,
                        raw,
                        "a required value is missing".into(),
                    );
                }
                nulled += usize::from(v.is_some());
                out.push(None);
            }
        }
    }
    (out, nulled)
}

/// Check one column: read each value as the field's type and test its constraints.
fn check_column(
    fi: usize,
    field: &Field,
    col: &StringChunked,
    broken: &[bool],
    in_primary_key: bool,
) -> Result<(Series, Vec<Issue>)> {
    let mut sink = Sink {
        field: fi,
        issues: Vec::new(),
    };
    let name: PlSmallStr = field.name.as_str().into();
    let required = field.constraints.required || in_primary_key;
    let c = &field.constraints;
    let series = match &field.field_type {
        FieldType::String => {
            let (kept, nulled) = walk(col, field, broken, required, &mut sink, |row, s, sink| {
                if let Some(EnumValues::Strings(set)) = &c.enumeration
                    && !set.contains(s)
                {
                    let allowed = list(set.iter());
                    sink.push(
                        row,
                        Rule::Enum,
                        s,
                        format!("{} is not one of the allowed values ({allowed})", quote(s)),
                    );
                }
                if let Some(re) = &c.pattern
                    && !re.is_match(s)
                {
                    sink.push(
                        row,
                        Rule::Pattern,
                        s,
                        format!("{} does not match the pattern {}", quote(s), re.as_str()),
                    );
                }
                if c.min_length.is_some() || c.max_length.is_some() {
                    let n = s.chars().count();
                    if let Some(min) = c.min_length.filter(|m| n < *m) {
                        sink.push(
                            row,
                            Rule::MinLength,
                            s,
                            format!("{n} characters, fewer than the minimum {min}"),
                        );
                    }
                    if let Some(max) = c.max_length.filter(|m| n > *m) {
                        sink.push(
                            row,
                            Rule::MaxLength,
                            s,
                            format!("{n} characters, more than the maximum {max}"),
                        );
                    }
                }
                Some(())
            });
            if nulled == 0 {
                // Nothing to blank out: the column is its own typed self (no copy).
                col.clone().with_name(name).into_series()
            } else {
                let keep: BooleanChunked = kept.iter().map(Option::is_some).collect();
                col.zip_with(&keep, &StringChunked::full_null(name.clone(), col.len()))
                    .ctx(|| format!("blanking missing values of field {}", field.name))?
                    .with_name(name)
                    .into_series()
            }
        }
        FieldType::Integer | FieldType::Year => {
            let is_year = field.field_type == FieldType::Year;
            let (out, _) = walk(col, field, broken, required, &mut sink, |row, s, sink| {
                // A year is exactly four characters (as in Table Schema and frictionless).
                let parsed = if is_year {
                    Some(s)
                        .filter(|s| s.len() == 4)
                        .and_then(|s| s.parse::<i64>().ok())
                        .filter(|y| (0..=9999).contains(y))
                } else {
                    s.trim().parse::<i64>().ok()
                };
                let Some(x) = parsed else {
                    let what = if is_year { "a year" } else { "an integer" };
                    sink.push(row, Rule::Type, s, format!("{} is not {what}", quote(s)));
                    return None;
                };
                if let Some(EnumValues::Ints(set)) = &c.enumeration
                    && !set.contains(&x)
                {
                    let allowed = list(set.iter());
                    sink.push(
                        row,
                        Rule::Enum,
                        s,
                        format!("{x} is not one of the allowed values ({allowed})"),
                    );
                }
                check_bounds(c.minimum, c.maximum, Bound::Int(x), s, row, sink);
                Some(x)
            });
            if is_year {
                let years: Vec<Option<i32>> =
                    out.into_iter().map(|o| o.map(|x| x as i32)).collect();
                Series::new(name, years)
            } else {
                Series::new(name, out)
            }
        }
        FieldType::Number => {
            let (out, _) = walk(col, field, broken, required, &mut sink, |row, s, sink| {
                let Some(x) = s.trim().parse::<f64>().ok().filter(|x| x.is_finite()) else {
                    sink.push(
                        row,
                        Rule::Type,
                        s,
                        format!(
                            "{} is not a finite number (use `.` as the decimal mark)",
                            quote(s)
                        ),
                    );
                    return None;
                };
                check_bounds(c.minimum, c.maximum, Bound::Float(x), s, row, sink);
                Some(x)
            });
            Series::new(name, out)
        }
        FieldType::Boolean => {
            let (out, _) = walk(col, field, broken, required, &mut sink, |row, s, sink| {
                if field.true_values.iter().any(|t| t == s) {
                    Some(true)
                } else if field.false_values.iter().any(|t| t == s) {
                    Some(false)
                } else {
                    let (t, f) = (field.true_values.join("/"), field.false_values.join("/"));
                    sink.push(
                        row,
                        Rule::Type,
                        s,
                        format!("{} is not a boolean (true: {t}; false: {f})", quote(s)),
                    );
                    None
                }
            });
            Series::new(name, out)
        }
        FieldType::Date(fmt) => {
            let (out, _) = walk(col, field, broken, required, &mut sink, |row, s, sink| {
                let d = match fmt.parse_date(s) {
                    Ok(d) => d,
                    Err(DateMiss::NoFormat) => {
                        let what = if fmt.formats.len() == 1 {
                            "the format"
                        } else {
                            "any of the formats"
                        };
                        sink.push(
                            row,
                            Rule::Type,
                            s,
                            format!("{} is not a date in {what} {}", quote(s), fmt.patterns()),
                        );
                        return None;
                    }
                    Err(DateMiss::NotMidnight) => {
                        sink.push(
                            row,
                            Rule::Type,
                            s,
                            format!(
                                "{} has a time of day other than midnight, and the field's `time` is \"midnight\" (a date written as a datetime)",
                                quote(s)
                            ),
                        );
                        return None;
                    }
                };
                let days = days_of_date(d);
                check_bounds(c.minimum, c.maximum, Bound::Date(days), s, row, sink);
                Some(days)
            });
            Series::new(name, out)
                .cast(&DataType::Date)
                .ctx(|| format!("typing field {} as date", field.name))?
        }
    };
    Ok((series, sink.issues))
}

fn check_bounds(
    min: Option<Bound>,
    max: Option<Bound>,
    x: Bound,
    raw: &str,
    row: usize,
    sink: &mut Sink,
) {
    let cmp = |b: Bound| match (x, b) {
        (Bound::Int(v), Bound::Int(m)) => v.partial_cmp(&m),
        (Bound::Float(v), Bound::Float(m)) => v.partial_cmp(&m),
        (Bound::Date(v), Bound::Date(m)) => v.partial_cmp(&m),
        _ => None,
    };
    if let Some(m) = min.filter(|m| cmp(*m) == Some(std::cmp::Ordering::Less)) {
        sink.push(
            row,
            Rule::Minimum,
            raw,
            format!("{} is below the minimum {}", quote(raw), show(m)),
        );
    }
    if let Some(m) = max.filter(|m| cmp(*m) == Some(std::cmp::Ordering::Greater)) {
        sink.push(
            row,
            Rule::Maximum,
            raw,
            format!("{} is above the maximum {}", quote(raw), show(m)),
        );
    }
}

fn show(b: Bound) -> String {
    match b {
        Bound::Int(i) => i.to_string(),
        Bound::Float(f) => f.to_string(),
        Bound::Date(d) => chrono::NaiveDate::from_num_days_from_ce_opt(d + 719_163)
            .map_or_else(|| d.to_string(), |x| x.to_string()),
    }
}

fn list<T: std::fmt::Display>(items: impl Iterator<Item = T>) -> String {
    let v: Vec<String> = items.take(12).map(|x| x.to_string()).collect();
    v.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A validator of one file under `schema` (Table Schema JSON).
    fn validator(schema: &str) -> Validator {
        let s = crate::spec::schema::parse(schema, Path::new("t.json")).unwrap();
        Validator::new("t", &s, vec!["t.csv".to_string()])
    }

    /// A chunk of raw rows (one inner vector per row; `None` is an empty cell), lines 2, 3, ….
    fn chunk(first_record: u64, rows: &[&[Option<&str>]]) -> RawChunk {
        let width = rows.first().map_or(0, |r| r.len());
        let columns = (0..width)
            .map(|c| {
                StringChunked::from_iter_options(format!("c{c}").into(), rows.iter().map(|r| r[c]))
            })
            .collect();
        RawChunk {
            file_index: 0,
            columns,
            lines: Some(
                (0..rows.len() as u64)
                    .map(|i| first_record + 1 + i)
                    .collect(),
            ),
            first_record,
            broken: vec![false; rows.len()],
            issues: Vec::new(),
            labels: None,
        }
    }

    /// (record, field, rule) of each quarantine row, in order.
    fn problems(v: &ValidatedChunk) -> Vec<(u64, String, String)> {
        let q = &v.quarantine;
        let rec = q.column("record").unwrap().u64().unwrap().clone();
        let field = q.column("field").unwrap().str().unwrap().clone();
        let rule = q.column("rule").unwrap().str().unwrap().clone();
        (0..q.height())
            .map(|i| {
                (
                    rec.get(i).unwrap(),
                    field.get(i).unwrap_or_default().to_string(),
                    rule.get(i).unwrap().to_string(),
                )
            })
            .collect()
    }

    const PEOPLE: &str = r#"{"fields": [
        {"name": "id", "constraints": {"required": true}},
        {"name": "age", "type": "integer", "constraints": {"minimum": 0, "maximum": 120}},
        {"name": "sex", "constraints": {"enum": ["M", "F"]}},
        {"name": "born", "type": "date", "format": "%d/%m/%Y"},
        {"name": "code", "constraints": {"pattern": "[A-Z]{3}", "maxLength": 3}}
    ], "primaryKey": "id"}"#;

    #[test]
    fn each_rule_quarantines_its_row_and_names_its_field() {
        let mut v = validator(PEOPLE);
        // Expected problems written by hand, one bad value per row after the first.
        let out = v
            .validate(chunk(
                1,
                &[
                    &[
                        Some("a"),
                        Some("30"),
                        Some("F"),
                        Some("01/02/1990"),
                        Some("MAR"),
                    ],
                    &[None, Some("30"), Some("F"), None, None],
                    &[Some("b"), Some("x"), Some("F"), None, None],
                    &[Some("c"), Some("121"), Some("M"), None, None],
                    &[Some("d"), Some("-1"), None, None, None],
                    &[Some("e"), None, Some("f"), None, None],
                    &[Some("f"), None, None, Some("1990-02-01"), None],
                    &[Some("g"), None, None, None, Some("ma")],
                    &[Some("h"), None, None, None, Some("MARO")],
                    &[Some("a"), None, None, None, None],
                ],
            ))
            .unwrap();
        let want: Vec<(u64, String, String)> = [
            (2, "id", "required"),
            (3, "age", "type"),
            (4, "age", "maximum"),
            (5, "age", "minimum"),
            (6, "sex", "enum"),
            (7, "born", "type"),
            (8, "code", "pattern"),
            (9, "code", "max_length"),
            (9, "code", "pattern"),
            (10, "id", "primary_key"),
        ]
        .iter()
        .map(|(r, f, x)| (*r, f.to_string(), x.to_string()))
        .collect();
        let mut got = problems(&out);
        got.sort();
        assert_eq!(got, want);
        assert_eq!((out.rows_read, out.rows_quarantined), (10, 9));
        assert_eq!(out.accepted.height(), 1);
        // The accepted row is typed: age an integer, born a date.
        let age = out.accepted.column("raw_age").unwrap();
        assert_eq!(age.dtype(), &DataType::Int64);
        assert!(matches!(
            out.accepted.column("raw_born").unwrap().dtype(),
            DataType::Date
        ));
    }

    #[test]
    fn keys_stay_unique_across_chunks() {
        let mut v = validator(PEOPLE);
        let row =
            |id: &'static str| -> [Option<&'static str>; 5] { [Some(id), None, None, None, None] };
        let first = v.validate(chunk(1, &[&row("a"), &row("b")])).unwrap();
        assert_eq!(first.rows_quarantined, 0);
        // `a` again in the next chunk: the later record is the duplicate.
        let second = v.validate(chunk(3, &[&row("c"), &row("a")])).unwrap();
        assert_eq!(
            problems(&second),
            vec![(4, "id".to_string(), "primary_key".to_string())]
        );
    }

    #[test]
    fn shards_merged_find_the_duplicates_across_files_in_file_order() {
        let row =
            |id: &'static str| -> [Option<&'static str>; 5] { [Some(id), None, None, None, None] };
        let files = vec!["one.csv".to_string(), "two.csv".to_string()];
        let s = crate::spec::schema::parse(PEOPLE, Path::new("t.json")).unwrap();
        let base = std::env::temp_dir().join(format!("migstat-shard-test-{}", std::process::id()));
        // File one: a b c (records 1-3); file two: d a | e b a (records 1-5). Worked out by
        // hand: two.csv record 2 (a) and 4 (b) repeat one.csv records 1 and 2; two.csv record
        // 5 (a) repeats two.csv record 2, which its own shard finds while validating when the
        // window holds it, and the merge finds (naming one.csv record 1, the first occurrence)
        // when a window of one key spilled it.
        // Each way the coordinator finds them: merging the shards' runs, or from the rows of
        // repeated keys an engine's group-by returns on their key tables (the group-by done
        // here with polars, as an engine would).
        for tables in [false, true] {
            for (window, in_shard) in [(100, vec![5]), (1, vec![])] {
                let mut a = Validator::new("t", &s, files.clone()).spill_to(base.join("a"), window);
                assert!(
                    problems(
                        &a.validate(chunk(1, &[&row("a"), &row("b"), &row("c")]))
                            .unwrap()
                    )
                    .is_empty()
                );
                let mut b = Validator::new("t", &s, files.clone()).spill_to(base.join("b"), window);
                let mut found = Vec::new();
                for (first, rows) in [
                    (1, vec![row("d"), row("a")]),
                    (3, vec![row("e"), row("b"), row("a")]),
                ] {
                    let rows: Vec<&[Option<&str>]> = rows.iter().map(|r| &r[..]).collect();
                    let mut c = chunk(first, &rows);
                    c.file_index = 1;
                    found.extend(problems(&b.validate(c).unwrap()).into_iter().map(|p| p.0));
                }
                assert_eq!(found, in_shard, "window {window}");
                let mut runs = vec![a.into_runs().unwrap(), b.into_runs().unwrap()];
                assert_eq!((runs[0].rows, runs[1].rows), (3, 5));
                let coordinator = Validator::new("t", &s, files.clone());
                let late = if tables {
                    let dir = base.join("keys");
                    runs = runs
                        .into_iter()
                        .enumerate()
                        .map(|(i, r)| r.into_table(i, &dir.join(format!("{i}.parquet"))).unwrap())
                        .collect();
                    let mut all = DataFrame::empty();
                    for r in &runs {
                        let f = std::fs::File::open(r.table.as_ref().unwrap()).unwrap();
                        all.vstack_mut(&ParquetReader::new(f).finish().unwrap())
                            .unwrap();
                    }
                    let keys = ["key_set", "k0", "k1", "k2"];
                    let repeated = all
                        .clone()
                        .lazy()
                        .filter(len().over(keys.map(col)).unwrap().gt(lit(1)))
                        .collect()
                        .unwrap();
                    // Two keys, a twice and b twice (window 100) or a three times (window 1).
                    assert_eq!(repeated.height(), if in_shard.is_empty() { 5 } else { 4 });
                    coordinator.duplicates_in(&runs, &repeated).unwrap()
                } else {
                    coordinator.merge_shards(&runs).unwrap()
                };
                let got: Vec<(u64, usize, u64, &str)> = late
                    .iter()
                    .map(|d| (d.position, d.file, d.record, d.message.as_str()))
                    .collect();
                let mut expected = vec![
                    (
                        4,
                        1,
                        2,
                        "duplicate primary key (id); first seen in one.csv record 1",
                    ),
                    (
                        6,
                        1,
                        4,
                        "duplicate primary key (id); first seen in one.csv record 2",
                    ),
                ];
                if in_shard.is_empty() {
                    expected.push((
                        7,
                        1,
                        5,
                        "duplicate primary key (id); first seen in one.csv record 1",
                    ));
                }
                assert_eq!(got, expected, "window {window}, tables {tables}");
                for r in runs.iter().flat_map(|r| r.sets.iter().flatten()) {
                    assert!(!r.exists(), "{} was not removed", r.display());
                }
            }
        }
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn spilled_keys_find_the_same_duplicates_after_the_pass() {
        let row =
            |id: &'static str| -> [Option<&'static str>; 5] { [Some(id), None, None, None, None] };
        // Records 1..=7 carry a b | c a d | b c: records 4 (a), 6 (b) and 7 (c) repeat records
        // 1, 2 and 3 (worked out by hand).
        let chunks = || {
            vec![
                chunk(1, &[&row("a"), &row("b")]),
                chunk(3, &[&row("c"), &row("a"), &row("d")]),
                chunk(6, &[&row("b"), &row("c")]),
            ]
        };
        // A window of two keys: each chunk spills the one before, so no duplicate is found
        // while the chunks go by and all three are found by merging the runs.
        let dir = std::env::temp_dir().join(format!("migstat-spill-test-{}", std::process::id()));
        let mut small = validator(PEOPLE).spill_to(dir.clone(), 2);
        let mut during = Vec::new();
        for c in chunks() {
            during.extend(problems(&small.validate(c).unwrap()));
        }
        assert!(during.is_empty(), "{during:?}");
        assert!(
            dir.exists(),
            "the runs were not written under the spill directory"
        );
        let late = small.finish_keys().unwrap();
        let got: Vec<(u64, u64, Rule, Option<usize>)> = late
            .iter()
            .map(|d| (d.position, d.record, d.rule, d.field))
            .collect();
        assert_eq!(
            got,
            vec![
                (3, 4, Rule::PrimaryKey, Some(0)),
                (5, 6, Rule::PrimaryKey, Some(0)),
                (6, 7, Rule::PrimaryKey, Some(0)),
            ]
        );
        for (d, first) in late.iter().zip(["record 1", "record 2", "record 3"]) {
            assert!(d.message.ends_with(first), "{}", d.message);
            assert_eq!(d.key_fields, vec![0]);
        }
        assert!(!dir.exists(), "the runs were not removed");
        // The default window finds the same three records while the chunks go by.
        let mut big = validator(PEOPLE);
        let mut found = Vec::new();
        for c in chunks() {
            found.extend(problems(&big.validate(c).unwrap()));
        }
        assert!(big.finish_keys().unwrap().is_empty());
        let records: Vec<u64> = found.iter().map(|p| p.0).collect();
        assert_eq!(records, vec![4, 6, 7]);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Whatever the window and the chunking, the duplicates found while the chunks go by
        /// plus those found when the runs merge are exactly the repeats of each key, per rule.
        #[test]
        fn spilling_finds_every_repeat_and_nothing_else(
            rows in proptest::collection::vec((0u8..12, 0u8..30), 1..160),
            size in 1usize..25,
            window in 1usize..40,
        ) {
            const KEYS: &str = r#"{"fields": [
                {"name": "id"},
                {"name": "u", "constraints": {"unique": true}}
            ], "primaryKey": "id"}"#;
            // Expected, by a plain scan: a record repeats a key seen in an earlier record.
            let mut want = std::collections::BTreeSet::new();
            let (mut ids, mut us) = (std::collections::HashSet::new(), std::collections::HashSet::new());
            for (i, (id, u)) in rows.iter().enumerate() {
                let record = i as u64 + 1;
                if !ids.insert(*id) {
                    want.insert((record, "primary_key".to_string()));
                }
                if !us.insert(*u) {
                    want.insert((record, "unique".to_string()));
                }
            }
            let dir = std::env::temp_dir().join(format!(
                "migstat-spill-prop-{}-{size}-{window}",
                std::process::id()
            ));
            let s = crate::spec::schema::parse(KEYS, Path::new("t.json")).unwrap();
            let mut v = Validator::new("t", &s, vec!["t.csv".to_string()]).spill_to(dir.clone(), window);
            let text: Vec<(String, String)> =
                rows.iter().map(|(id, u)| (format!("i{id}"), format!("u{u}"))).collect();
            let mut got = std::collections::BTreeSet::new();
            for (c, part) in text.chunks(size).enumerate() {
                let raw: Vec<[Option<&str>; 2]> =
                    part.iter().map(|(a, b)| [Some(a.as_str()), Some(b.as_str())]).collect();
                let refs: Vec<&[Option<&str>]> = raw.iter().map(|r| &r[..]).collect();
                let out = v.validate(chunk(1 + (c * size) as u64, &refs)).unwrap();
                for (record, _, rule) in problems(&out) {
                    proptest::prop_assert!(got.insert((record, rule)));
                }
            }
            for d in v.finish_keys().unwrap() {
                let rule = d.rule.as_str().to_string();
                proptest::prop_assert!(got.insert((d.record, rule)));
            }
            proptest::prop_assert_eq!(got, want);
            proptest::prop_assert!(!dir.exists());
        }
    }

    #[test]
    fn keys_are_probed_in_slot_order_ties_by_row() {
        // Against the comparison sort it replaces, on pseudo-random hashes (an LCG), for masks
        // of 0 to 30 bits: one pass, two, three, none.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for bits in [0u32, 1, 5, 11, 12, 22, 23, 30] {
            let mask = (1u64 << bits) - 1;
            let keys: Vec<(u64, u32, Key)> = (0..5000u32)
                .map(|row| {
                    x = x
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    // Few distinct slots at small masks: many ties, which must keep row order.
                    (x >> 7, row, [row, 0, 0])
                })
                .collect();
            let mut want = keys.clone();
            want.sort_by_key(|(h, row, _)| (h & mask, *row));
            assert_eq!(by_slot(keys, mask), want, "mask of {bits} bits");
        }
    }

    #[test]
    fn a_run_record_sorts_by_key_then_position() {
        let a = run_record(&[0, 0, 1, 9]);
        let b = run_record(&[0, 1, 0, 2]);
        let c = run_record(&[0, 1, 0, 3]);
        assert!(a < b && b < c);
        // The key table sorts its slots as arrays of words; the merge reads the records' bytes:
        // both orders must agree, words above 2^8 and 2^31 included.
        let mut slots: Vec<[u32; 4]> = (0..500u32)
            .map(|i| {
                let w = i.wrapping_mul(2_654_435_761);
                [w % 7, w.rotate_left(9), w ^ 0x8000_0100, i]
            })
            .collect();
        let mut records: Vec<[u8; 16]> = slots.iter().map(run_record).collect();
        slots.sort_unstable();
        records.sort_unstable();
        assert_eq!(records, slots.iter().map(run_record).collect::<Vec<_>>());
    }

    #[test]
    fn a_broken_row_is_quarantined_without_further_checks() {
        let mut v = validator(PEOPLE);
        let mut c = chunk(1, &[&[Some("a"), Some("x"), None, None, None]]);
        c.broken = vec![true];
        c.issues.push(Issue {
            row: 0,
            field: None,
            rule: Rule::RaggedRow,
            raw: None,
            message: "3 values, expected 5".into(),
        });
        let out = v.validate(c).unwrap();
        // Only the structural problem: the bad integer of a broken row is not checked.
        assert_eq!(
            problems(&out),
            vec![(1, String::new(), "ragged_row".to_string())]
        );
        assert_eq!(out.accepted.height(), 0);
    }
}
