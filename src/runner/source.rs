//! The source pass: one source read, validated, harmonized and written chunk by chunk, with the
//! tables counted as the chunks go by.
//!
//! Input: a source of the plan and the staging directory. Output: a [`SourcePass`] (the
//! source's report, its accepted and quarantine files, the partial cells of its streamed tables,
//! its survey partials) and, when too many rows failed, the rejection.

use super::shard::{Shards, Tally};
use super::tables::counted_tables;
use super::*;

/// What a source's pass leaves for the tables: its report, its files, and the partial aggregates of
/// the tables counted while it was read.
pub(super) struct SourcePass {
    /// The source's row accounting (seconds and input key filled in by the runner).
    pub(super) report: SourceReport,
    /// Its accepted records and quarantine.
    pub(super) outputs: Vec<OutputFile>,
    /// The partial cells of each table counted while the source was read, by table id.
    pub(super) cells: BTreeMap<String, PeriodCells>,
    /// The partial sums of each survey table, by table id.
    pub(super) surveys: SurveyTables,
    /// Design problems found in the data (a stratum with one PSU under `lonely_psu = "fail"`, …).
    pub(super) rejections: Vec<Rejection>,
    /// Seconds the engine took to count the source's tables after the pass (an engine that
    /// does not count while the source is read).
    pub(super) engine_seconds: Option<f64>,
}

/// The rejection of a source whose quarantined fraction exceeds its tolerance, naming the top rules.
pub(super) fn tolerance(
    r: &SourceReport,
    src: &SourcePlan,
    failed_dir: &Path,
) -> Option<Rejection> {
    if r.rows_read == 0 {
        return None;
    }
    let fraction = r.rows_quarantined as f64 / r.rows_read as f64;
    if fraction <= src.max_invalid_fraction {
        return None;
    }
    let mut top: Vec<(&String, &u64)> = r.quarantine_by_rule.iter().collect();
    top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let reasons = top
        .iter()
        .take(3)
        .map(|(rule, n)| format!("{rule} ×{n}"))
        .collect::<Vec<_>>()
        .join(", ");
    Some(Rejection::new(
        src.id.as_str(),
        format!(
            "{} of {} rows ({:.2}%) failed validation, above max_invalid_fraction {:.2}%; top reasons: {reasons}. \
             Its quarantine is kept in {}",
            r.rows_quarantined,
            r.rows_read,
            fraction * 100.0,
            src.max_invalid_fraction * 100.0,
            Release(failed_dir).quarantine(&src.id).display()
        ),
    ))
}

pub(super) fn run_source(
    plan: &Plan,
    src: &SourcePlan,
    identities: &[(u64, String)],
    spec_dir: &Path,
    staging: &Path,
    opts: &RunOptions,
    secret: Option<&crate::protect::Secret>,
) -> Result<SourcePass> {
    // File names as the spec reaches them (relative to the spec file): stable whatever the cwd.
    let names = super::shard::file_names(src, spec_dir);
    // Each file's identity as hashed when the run began (`reuse::input_key`).
    let mut files = Vec::new();
    for (i, (f, name)) in src.files.iter().zip(&names).enumerate() {
        let (bytes, blake3) = match identities.get(i) {
            Some(identity) => identity.clone(),
            None => hash_file(f)?,
        };
        files.push(InputFile {
            path: name.clone(),
            bytes,
            blake3,
        });
    }
    // Key sets spill under the staging directory: a killed run leaves nothing elsewhere.
    let mut validator = Validator::new(&src.id, &src.schema, names.clone()).spill_to(
        staging.join(".keys").join(&src.id),
        crate::validate::key_window(),
    );
    let mut harmonizer = Harmonizer::new(plan, src);
    // Tables of records and events are counted as the chunks go by: mergeable partials. A
    // protected table is counted through its group's union cube.
    let streamed: Vec<&crate::spec::TableSpec> = counted_tables(plan)
        .into_iter()
        .filter(|t| t.source == src.id && crate::disaggregate::is_streamed(t))
        .collect();
    // An engine that does not count while the source is read gets the accepted file after
    // the pass (see `engine`).
    let engine = opts.engine();
    let stream = engine.counts_while_reading();
    let cell_key = secret.map(|s| s.derive("cell key"));
    let mut partials: Vec<PeriodCells> = vec![PeriodCells::default(); streamed.len()];
    let surveyed: Vec<&crate::spec::TableSpec> = plan
        .tables
        .iter()
        .filter(|t| t.source == src.id && t.kind.is_survey())
        .collect();
    let mut survey_partials: Vec<crate::survey::Partial> = vec![Default::default(); surveyed.len()];
    let mut design_partial = crate::survey::DesignPartial::default();

    let metadata = vec![
        ("migstat_version".to_string(), crate::VERSION.to_string()),
        ("pipeline_id".to_string(), plan.pipeline_id.clone()),
        ("pipeline_hash".to_string(), plan.spec_hash.clone()),
        ("source_id".to_string(), src.id.clone()),
        (
            "input_blake3".to_string(),
            files
                .iter()
                .map(|f| format!("{}={}", f.path, f.blake3))
                .collect::<Vec<_>>()
                .join(";"),
        ),
    ];
    let accepted_path = Release(staging).accepted(&src.id);
    let quarantine_path = Release(staging).quarantine(&src.id);
    let mut accepted_schema = validator.accepted_schema();
    harmonizer.extend_schema(&mut accepted_schema);
    let mut accepted = ParquetSink::create(&accepted_path, &accepted_schema, &metadata)?;
    let mut quarantined = ParquetSink::create(&quarantine_path, &quarantine::schema(), &metadata)?;

    let total_bytes: u64 = files.iter().map(|f| f.bytes).sum();
    let bar: Box<dyn SourceProgress> = match &opts.progress {
        Some(p) => p.source(&src.id, total_bytes),
        None => Box::new(NoProgress),
    };
    let mut tally = Tally::default();
    let identities: Vec<(u64, String)> =
        files.iter().map(|f| (f.bytes, f.blake3.clone())).collect();
    let sharded = opts.shards != Shards::Off && src.files.len() > 1;
    // The accepted rows still to be put together (with the duplicates found after the pass
    // taken out): the shards' parts, or the pass's own file when such duplicates were found.
    let mut parts: Vec<PathBuf> = Vec::new();
    let late = if sharded {
        let outcomes = super::shard::run_shards(
            plan,
            src,
            &identities,
            staging,
            &opts.shards,
            engine.as_ref(),
        )?;
        for o in &outcomes {
            tally.add(o)?;
            harmonizer.add_unmapped(o.unmapped.clone());
            let dir = super::shard::shard_dir(staging, &src.id, o.file);
            copy_part(
                &super::shard::quarantine_part(&dir),
                &quarantine::schema(),
                plan.chunk_rows,
                |df| quarantined.write(df),
            )?;
            parts.push(super::shard::accepted_part(&dir));
            bar.set_position(files[..=o.file].iter().map(|f| f.bytes).sum());
        }
        let keys: Vec<crate::validate::KeyRuns> = outcomes.into_iter().map(|o| o.keys).collect();
        // Keys seen in several shards: by the engine's group-by on the shards' key tables, or
        // by merging their sorted runs here.
        let tables = super::shard::key_tables(staging, &src.id);
        let late = if !keys.is_empty() && keys.iter().all(|k| k.table.is_some()) {
            let repeated = match tables.is_dir() {
                true => engine.repeated_keys(&tables)?,
                false => polars::prelude::DataFrame::empty(),
            };
            validator.duplicates_in(&keys, &repeated)?
        } else {
            validator.merge_shards(&keys)?
        };
        tracing::info!(source = %src.id, files = src.files.len(), duplicates_across_files = late.len(), "source passed one file per shard");
        late
    } else {
        one_pass(
            plan,
            src,
            &identities,
            total_bytes,
            &mut validator,
            &mut harmonizer,
            &mut tally,
            &mut accepted,
            &mut quarantined,
            bar.as_ref(),
            |rows| {
                for (t, cells) in streamed.iter().zip(partials.iter_mut()).filter(|_| stream) {
                    crate::disaggregate::add_chunk(src, t, rows, cells, cell_key.as_ref())?;
                }
                if let Some(design) = src
                    .design
                    .as_ref()
                    .filter(|_| stream && !surveyed.is_empty())
                {
                    let units = design_partial.add_chunk(design, rows)?;
                    for (t, p) in surveyed.iter().zip(survey_partials.iter_mut()) {
                        p.add_chunk(t, &units, rows)?;
                    }
                }
                Ok(())
            },
        )?;
        validator.finish_keys()?
    };
    bar.finish();
    // The spill directories' parent, once no source's runs are left in it.
    let _ = std::fs::remove_dir(staging.join(".keys"));
    if !sharded && !late.is_empty() {
        // Duplicates whose first occurrence had been spilled with a full key window: the
        // accepted file is written again without them, and the tables counted again.
        let written = accepted.finish(staging)?;
        debug_assert_eq!(written.rows, tally.good);
        let aside = accepted_path.with_extension("before-late-duplicates.parquet");
        std::fs::rename(&accepted_path, &aside).at(&accepted_path)?;
        accepted = ParquetSink::create(&accepted_path, &accepted_schema, &metadata)?;
        parts.push(aside);
        partials = vec![PeriodCells::default(); streamed.len()];
        survey_partials = vec![Default::default(); surveyed.len()];
        design_partial = crate::survey::DesignPartial::default();
    }
    let removed = drop_late_duplicates(
        &late,
        &files,
        &parts,
        &mut accepted,
        &accepted_schema,
        plan.chunk_rows,
        |rows| {
            for (t, cells) in streamed.iter().zip(partials.iter_mut()).filter(|_| stream) {
                crate::disaggregate::add_chunk(src, t, rows, cells, cell_key.as_ref())?;
            }
            if let Some(design) = src
                .design
                .as_ref()
                .filter(|_| stream && !surveyed.is_empty())
            {
                let units = design_partial.add_chunk(design, rows)?;
                for (t, p) in surveyed.iter().zip(survey_partials.iter_mut()) {
                    p.add_chunk(t, &units, rows)?;
                }
            }
            Ok(())
        },
    )?;
    for part in &parts {
        std::fs::remove_file(part).at(part)?;
    }
    if sharded {
        let dir = staging.join(".shards").join(&src.id);
        std::fs::remove_dir_all(&dir).at(&dir)?;
        let _ = std::fs::remove_dir(staging.join(".shards"));
    }
    if !late.is_empty() {
        let mut q = quarantine::QuarantineBuilder::default();
        for d in &late {
            let origin = removed.get(&(d.file, d.record));
            let at = quarantine::RowOrigin {
                source_id: &src.id,
                file: &files[d.file].path,
                line: origin.and_then(|o| o.0),
                record: d.record,
            };
            let raw = origin.map(|o| {
                d.key_fields
                    .iter()
                    .filter_map(|f| o.1.get(f).cloned().flatten())
                    .collect::<Vec<_>>()
                    .join("|")
            });
            *tally.by_rule.entry(d.rule).or_default() += 1;
            q.push(
                &at,
                d.field.map(|f| src.schema.fields[f].name.as_str()),
                quarantine::Issue {
                    row: 0,
                    field: d.field,
                    rule: d.rule,
                    raw,
                    message: d.message.clone(),
                },
            );
        }
        quarantined.write(q.finish()?)?;
        let taken = removed.len() as u64;
        tally.bad += taken;
        tally.good -= taken.min(tally.good);
        tracing::info!(
            source = %src.id,
            duplicates = late.len(),
            rows_taken_out = taken,
            "duplicate keys found after the pass (their first occurrence was spilled or in another shard); accepted rows put together without them"
        );
    }
    let acc = accepted.finish(staging)?;
    let Tally {
        read,
        bad,
        good,
        by_rule,
    } = tally;
    let mut engine_seconds = None;
    if !stream {
        let t0 = std::time::Instant::now();
        let accepted = crate::engine::Accepted {
            path: accepted_path.clone(),
            schema: accepted_schema.clone(),
            chunk_rows: plan.chunk_rows,
            spec: Some((plan.spec_path.clone(), plan.spec_hash.clone())),
        };
        partials = streamed
            .iter()
            .map(|t| engine.cells(src, t, &accepted, cell_key.as_ref()))
            .collect::<Result<_>>()?;
        if src.design.is_some() && !surveyed.is_empty() {
            (design_partial, survey_partials) = engine.survey(src, &surveyed, &accepted)?;
        }
        let took = (t0.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
        tracing::info!(source = %src.id, engine = %engine.name(), tables = streamed.len(), seconds = took, "tables counted by the engine");
        engine_seconds = Some(took);
    }
    // The design is checked as a whole once every record is in (FPCs, lonely PSUs).
    let mut design_rejections = Vec::new();
    let mut survey_tables = SurveyTables::new();
    let mut calibration_out = None;
    let mut weights_out = None;
    let mut covariance_out = None;
    if let Some(design) = src.design.as_ref().filter(|_| !surveyed.is_empty()) {
        match design_partial.finish(design, &src.id) {
            Ok(info) => {
                if let Some(frame) = info.calibration_frame(design, &design_partial) {
                    let frame = frame?;
                    let path = Release(staging).calibration(&src.id);
                    let mut sink = ParquetSink::create(&path, frame.schema(), &metadata)?;
                    sink.write(frame)?;
                    calibration_out = Some(sink.finish(staging)?);
                    // Each record's calibrated weight, for analyses outside migstat.
                    let acc_path = staging.join(&acc.path);
                    let records = std::fs::File::open(&acc_path)
                        .map_err(|e| Error::Io {
                            path: acc_path.clone(),
                            source: e,
                        })
                        .and_then(|f| {
                            ParquetReader::new(f).finish().map_err(|e| Error::Polars {
                                context: format!("reading {}", acc_path.display()),
                                source: e,
                            })
                        })?;
                    let frame = info.record_weights(
                        design,
                        &design_partial,
                        &records,
                        src.record_id.as_deref(),
                    )?;
                    let path = Release(staging).calibrated_weights(&src.id);
                    let mut sink = ParquetSink::create(&path, frame.schema(), &metadata)?;
                    sink.write(frame)?;
                    weights_out = Some(sink.finish(staging)?);
                }
                if !design.covariance.is_empty() {
                    let listed: Vec<(&crate::spec::TableSpec, &crate::survey::Partial)> = design
                        .covariance
                        .iter()
                        .filter_map(|id| {
                            surveyed
                                .iter()
                                .zip(&survey_partials)
                                .find(|(t, _)| &t.id == id)
                                .map(|(t, p)| (*t, p))
                        })
                        .collect();
                    match crate::survey::covariance_frame(&listed, &info) {
                        Ok(frame) => {
                            let path = Release(staging).covariance(&src.id);
                            let mut sink = ParquetSink::create(&path, frame.schema(), &metadata)?;
                            sink.write(frame)?;
                            covariance_out = Some(sink.finish(staging)?);
                        }
                        Err(reason) => design_rejections.push(Rejection::new(
                            src.id.as_str(),
                            format!("survey design: {reason}"),
                        )),
                    }
                }
                let info = Arc::new(info);
                for (t, p) in surveyed.iter().zip(survey_partials) {
                    survey_tables.insert(t.id.clone(), (Arc::clone(&info), p));
                }
            }
            Err(r) => design_rejections.push(r),
        }
    }
    let qua = quarantined.finish(staging)?;
    let (unmapped_codes, unmapped_omitted) = harmonizer.unmapped();
    if acc.rows != good {
        return Err(Error::Internal(format!(
            "source `{}`: {} accepted rows counted, {} written",
            src.id, good, acc.rows
        )));
    }
    Ok(SourcePass {
        report: SourceReport {
            id: src.id.clone(),
            files,
            rows_read: read,
            rows_accepted: acc.rows,
            rows_quarantined: bad,
            max_invalid_fraction: src.max_invalid_fraction,
            unmapped_codes,
            unmapped_omitted,
            quarantine_by_rule: by_rule
                .into_iter()
                .map(|(r, n)| (r.as_str().to_string(), n))
                .collect(),
            seconds: 0.0,
            input_key: String::new(),
            reused: false,
        },
        outputs: [acc, qua]
            .into_iter()
            .chain(calibration_out)
            .chain(weights_out)
            .chain(covariance_out)
            .collect(),
        cells: streamed
            .iter()
            .map(|t| t.id.clone())
            .zip(partials)
            .collect(),
        surveys: survey_tables,
        rejections: design_rejections,
        engine_seconds,
    })
}

/// One pass over the files of `src` in order: parsing, validating and (harmonizing, counting,
/// writing) on three threads, one chunk ahead of each other (a bounded channel: at most three
/// chunks in memory), so the stages share both cores. `counted` sees each chunk's accepted
/// rows before they are written.
#[allow(clippy::too_many_arguments)]
fn one_pass(
    plan: &Plan,
    src: &SourcePlan,
    identities: &[(u64, String)],
    total_bytes: u64,
    validator: &mut Validator,
    harmonizer: &mut Harmonizer<'_>,
    tally: &mut Tally,
    accepted: &mut ParquetSink,
    quarantined: &mut ParquetSink,
    bar: &dyn SourceProgress,
    mut counted: impl FnMut(&polars::prelude::DataFrame) -> Result<()>,
) -> Result<()> {
    let sizes: Vec<u64> = identities.iter().map(|f| f.0).collect();
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<(RawChunk, u64)>>(1);
    std::thread::scope(|scope| -> Result<()> {
        scope.spawn(move || {
            let mut done_bytes = 0;
            for (fi, size) in sizes.iter().enumerate() {
                let expected = identities[fi].clone();
                let mut chunks = match FileChunks::open(src, fi, plan.chunk_rows, expected) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                loop {
                    let item = match chunks.next_chunk() {
                        Ok(Some(c)) => Ok((c, done_bytes + chunks.position())),
                        Ok(None) => break,
                        Err(e) => Err(e),
                    };
                    let failed = item.is_err();
                    if tx.send(item).is_err() || failed {
                        return; // the consumer stopped, or this was the last item
                    }
                }
                done_bytes += size;
            }
        });
        // Validation runs on a thread of its own too (its key sets see the chunks in order), so
        // that harmonizing, counting and handing chunk n to the writer overlaps validating n + 1.
        let (vtx, vrx) = std::sync::mpsc::sync_channel::<Result<(ValidatedChunk, u64)>>(1);
        scope.spawn(move || {
            let mut reserved = false;
            for item in rx {
                let validated = item.and_then(|(chunk, position)| {
                    if !reserved && position > 0 {
                        // Rows to come, estimated from the first chunk's bytes per row.
                        let rows = chunk.height() as f64 * total_bytes as f64 / position as f64;
                        validator.reserve_keys((rows * 1.05) as usize);
                        reserved = true;
                    }
                    Ok((validator.validate(chunk)?, position))
                });
                let failed = validated.is_err();
                if vtx.send(validated).is_err() || failed {
                    return; // the consumer stopped, or this was the last item
                }
            }
        });
        for item in vrx {
            // A SIGTERM or SIGINT stops the pass here (dropping the channel stops the others).
            crate::interrupt::check()?;
            let (v, position) = item?;
            let rows = tally.take(v, harmonizer, quarantined)?;
            counted(&rows)?;
            accepted.write(rows)?;
            bar.set_position(position);
        }
        Ok(())
    })
}

/// A row taken out of the accepted file: its line and its fields' values as text, by schema index.
type Removed = (Option<u64>, BTreeMap<usize, Option<String>>);

/// The rows taken out of the accepted file, by (file index, record).
type RemovedRows = BTreeMap<(usize, u64), Removed>;

/// Every row of the Parquet file `path` in slices of `chunk_rows`, typed as `schema` (the file
/// holds unsigned integers as Int64).
fn copy_part(
    path: &Path,
    schema: &polars::prelude::Schema,
    chunk_rows: usize,
    mut f: impl FnMut(polars::prelude::DataFrame) -> Result<()>,
) -> Result<()> {
    use crate::error::PolarsContext;
    let rows = std::fs::File::open(path).at(path).and_then(|file| {
        ParquetReader::new(file)
            .num_rows()
            .ctx(|| format!("reading {}", path.display()))
    })?;
    let step = chunk_rows.max(1);
    let mut offset = 0usize;
    while offset < rows {
        let len = step.min(rows - offset);
        let df = crate::engine::read_slice(path, offset, len)?;
        offset += len;
        f(crate::engine::with_types(df, schema, path)?)?;
    }
    Ok(())
}

/// Write the accepted rows of `parts` (in order) to `sink` without the rows of `late` (found by
/// file index and record), in slices of `chunk_rows`; `kept` sees every slice that stays, typed
/// as the pass wrote it. Returns the rows taken out, by (file index, record).
fn drop_late_duplicates(
    late: &[crate::validate::LateDuplicate],
    files: &[InputFile],
    parts: &[PathBuf],
    sink: &mut ParquetSink,
    schema: &polars::prelude::Schema,
    chunk_rows: usize,
    mut kept: impl FnMut(&polars::prelude::DataFrame) -> Result<()>,
) -> Result<RemovedRows> {
    use crate::error::PolarsContext;
    use polars::prelude::*;
    let index: std::collections::HashMap<&str, usize> = files
        .iter()
        .enumerate()
        .map(|(i, f)| (f.path.as_str(), i))
        .collect();
    let drop: std::collections::HashSet<(usize, u64)> =
        late.iter().map(|d| (d.file, d.record)).collect();
    let fields: Vec<(usize, String)> = {
        let mut keyed: Vec<usize> = late.iter().flat_map(|d| d.key_fields.clone()).collect();
        keyed.sort_unstable();
        keyed.dedup();
        keyed
            .into_iter()
            .filter_map(|i| {
                let name = schema.get_at_index(i).map(|(n, _)| n.to_string())?;
                Some((i, name))
            })
            .collect()
    };
    let mut removed = BTreeMap::new();
    for part in parts {
        copy_part(part, schema, chunk_rows, |df| {
            if drop.is_empty() {
                kept(&df)?;
                return sink.write(df);
            }
            let file = df.column("_file").and_then(|c| c.str().cloned());
            let record = df.column("_record").and_then(|c| c.u64().cloned());
            let line = df.column("_line").and_then(|c| c.u64().cloned());
            let (file, record, line) = match (file, record, line) {
                (Ok(f), Ok(r), Ok(l)) => (f, r, l),
                _ => {
                    return Err(Error::Internal(format!(
                        "{}: the accepted rows lack their _file, _record or _line column",
                        part.display()
                    )));
                }
            };
            let mut keep = Vec::with_capacity(df.height());
            let mut out = Vec::new();
            for (i, (f, r)) in file.iter().zip(record.iter()).enumerate() {
                let at = f
                    .and_then(|f| index.get(f).copied())
                    .zip(r)
                    .filter(|k| drop.contains(k));
                keep.push(at.is_none());
                if let Some(k) = at {
                    out.push((i, k));
                }
            }
            if !out.is_empty() {
                let text: Vec<(usize, StringChunked)> = fields
                    .iter()
                    .map(|(i, name)| {
                        df.column(name)
                            .and_then(|c| c.cast(&DataType::String))
                            .and_then(|c| c.str().cloned())
                            .map(|s| (*i, s))
                            .ctx(|| format!("reading column `{name}` of {}", part.display()))
                    })
                    .collect::<Result<_>>()?;
                for (row, k) in out {
                    let values = text
                        .iter()
                        .map(|(i, s)| (*i, s.get(row).map(str::to_string)))
                        .collect();
                    removed.insert(k, (line.get(row), values));
                }
            }
            let mask = BooleanChunked::from_slice("keep".into(), &keep);
            let df = df
                .filter(&mask)
                .ctx(|| format!("filtering {}", part.display()))?;
            kept(&df)?;
            sink.write(df)
        })?;
    }
    Ok(removed)
}

/// `path` relative to `base` even when it is not below it (`../sample_data/x.csv`).
pub(super) fn relative_to(path: &Path, base: &Path) -> PathBuf {
    let p: Vec<Component<'_>> = path.components().collect();
    let b: Vec<Component<'_>> = base.components().collect();
    let common = p.iter().zip(&b).take_while(|(x, y)| x == y).count();
    if common == 0 && (path.is_absolute() != base.is_absolute()) {
        return path.to_path_buf();
    }
    let mut out = PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &p[common..] {
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_cleaned_lexically() {
        assert_eq!(
            clean_path(Path::new("pipelines/../sample_data/./a.csv")),
            PathBuf::from("sample_data/a.csv")
        );
        assert_eq!(clean_path(Path::new("../x/../y")), PathBuf::from("../y"));
        assert_eq!(
            relative_to(Path::new("sample_data/a.csv"), Path::new("pipelines")),
            PathBuf::from("../sample_data/a.csv")
        );
        assert_eq!(
            relative_to(Path::new("pipelines/d/a.csv"), Path::new("pipelines")),
            PathBuf::from("d/a.csv")
        );
    }
}
