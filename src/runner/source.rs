//! The source pass: one source read, validated, harmonized and written chunk by chunk, with the
//! tables counted as the chunks go by.
//!
//! Input: a source of the plan and the staging directory. Output: a [`SourcePass`] (the
//! source's report, its accepted and quarantine files, the partial cells of its streamed tables,
//! its survey partials) and, when too many rows failed, the rejection.

use super::shard::{Shards, Tally};
use super::tables::{Metadata, counted_tables};
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
    let surveyed: Vec<&crate::spec::TableSpec> = plan
        .tables
        .iter()
        .filter(|t| t.source == src.id && t.kind.is_survey())
        .collect();
    let mut counters = Counters::new(src, &streamed, &surveyed, cell_key.as_ref());

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
    let quarantine_path = Release(staging).quarantine(&src.id);
    let mut accepted_schema = validator.accepted_schema();
    harmonizer.extend_schema(&mut accepted_schema);
    // As the parts are written: fixed code lists as Enums (`Harmonizer::extend_write_schema`).
    let mut write_schema = validator.accepted_schema();
    harmonizer.extend_write_schema(&mut write_schema);
    // The accepted records: one part per delivery file.
    let part_paths = Release(staging).accepted_parts(&src.id, files.len());
    let part_metadata: Vec<Metadata> = files
        .iter()
        .map(|f| super::shard::part_metadata(plan, src, &f.path, &f.blake3))
        .collect();
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
    // Where each file's accepted rows are before they are put together (the duplicates found
    // after the pass taken out): the shards' parts, or the pass's own.
    let mut parts: Vec<PathBuf> = part_paths.clone();
    // Each part's file as written there (rows, bytes, blake3), when known.
    let mut written: Vec<Option<OutputFile>> = vec![None; files.len()];
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
            crate::engine::for_each_slice_of(
                &super::shard::quarantine_part(&dir),
                &quarantine::schema(),
                plan.chunk_rows,
                |df| quarantined.write(df),
            )?;
            if let (Some(p), Some(w)) = (parts.get_mut(o.file), written.get_mut(o.file)) {
                *p = super::shard::accepted_part(&dir);
                *w = Some(o.part.clone());
            }
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
        let mut accepted = PartSinks {
            staging,
            paths: &part_paths,
            schema: &write_schema,
            metadata: &part_metadata,
            open: None,
            done: Vec::new(),
        };
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
            |file, rows| match stream {
                true => counters.add(file, rows),
                false => Ok(()),
            },
        )?;
        written = accepted.finish()?.into_iter().map(Some).collect();
        validator.finish_keys()?
    };
    bar.finish();
    // The spill directories' parent, once no source's runs are left in it.
    let _ = std::fs::remove_dir(staging.join(".keys"));
    // Counted again as the parts are put together: a sharded pass counted nothing, and a pass
    // that found duplicates after it counted them.
    let recount = stream && (sharded || !late.is_empty());
    if recount {
        counters = Counters::new(src, &streamed, &surveyed, cell_key.as_ref());
    }
    let (removed, accepted_out) = put_together(
        &late,
        &files,
        &parts,
        &written,
        &part_paths,
        &part_metadata,
        &accepted_schema,
        &write_schema,
        plan.chunk_rows,
        staging,
        recount,
        |file, rows| counters.add(file, rows),
    )?;
    let (mut partials, mut sums) = counters.finish();
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
    let accepted_rows: u64 = accepted_out.iter().map(|f| f.rows).sum();
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
            parts: part_paths.clone(),
            schema: accepted_schema.clone(),
            chunk_rows: plan.chunk_rows,
            spec: Some((plan.spec_path.clone(), plan.spec_hash.clone())),
            persons: None,
        };
        partials = streamed
            .iter()
            .map(|t| engine.cells(src, t, &accepted, cell_key.as_ref()))
            .collect::<Result<_>>()?;
        if src.design.is_some() && !surveyed.is_empty() {
            sums = engine.survey(src, &surveyed, &accepted)?;
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
        match sums.design.finish(design, &src.id) {
            Ok(info) => {
                if let Some(frame) = info.calibration_frame(design, &sums.design) {
                    let frame = frame?;
                    let path = Release(staging).calibration(&src.id);
                    let mut sink = ParquetSink::create(&path, frame.schema(), &metadata)?;
                    sink.write(frame)?;
                    calibration_out = Some(sink.finish(staging)?);
                    // Each record's calibrated weight, for analyses outside migstat.
                    let records = crate::engine::read_parts(&part_paths, None)?;
                    let frame = info.record_weights(
                        design,
                        &sums.design,
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
                                .zip(&sums.tables)
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
                for (t, p) in surveyed.iter().zip(sums.tables) {
                    survey_tables.insert(t.id.clone(), (Arc::clone(&info), p));
                }
            }
            Err(r) => design_rejections.push(r),
        }
    }
    let qua = quarantined.finish(staging)?;
    let (unmapped_codes, unmapped_omitted) = harmonizer.unmapped();
    if accepted_rows != good {
        return Err(Error::Internal(format!(
            "source `{}`: {} accepted rows counted, {} written",
            src.id, good, accepted_rows
        )));
    }
    Ok(SourcePass {
        report: SourceReport {
            id: src.id.clone(),
            files,
            rows_read: read,
            rows_accepted: accepted_rows,
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
        outputs: accepted_out
            .into_iter()
            .chain([qua])
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
    accepted: &mut PartSinks<'_>,
    quarantined: &mut ParquetSink,
    bar: &dyn SourceProgress,
    mut counted: impl FnMut(usize, &polars::prelude::DataFrame) -> Result<()>,
) -> Result<()> {
    let sizes: Vec<u64> = identities.iter().map(|f| f.0).collect();
    // Each chunk with the bytes read so far and its file's index (a chunk is of one file).
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<(RawChunk, u64, usize)>>(1);
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
                        Ok(Some(c)) => Ok((c, done_bytes + chunks.position(), fi)),
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
        let (vtx, vrx) = std::sync::mpsc::sync_channel::<Result<(ValidatedChunk, u64, usize)>>(1);
        scope.spawn(move || {
            let mut reserved = false;
            for item in rx {
                let validated = item.and_then(|(chunk, position, file)| {
                    if !reserved && position > 0 {
                        // Rows to come, estimated from the first chunk's bytes per row.
                        let rows = chunk.height() as f64 * total_bytes as f64 / position as f64;
                        validator.reserve_keys((rows * 1.05) as usize);
                        reserved = true;
                    }
                    Ok((validator.validate(chunk)?, position, file))
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
            let (v, position, file) = item?;
            let rows = tally.take(v, harmonizer, quarantined)?;
            counted(file, &rows)?;
            accepted.write(file, rows)?;
            bar.set_position(position);
        }
        Ok(())
    })
}

/// The partial aggregates counted as a source's accepted rows go by: each streamed table's
/// cells, the survey design's partial and each survey table's sums.
struct Counters<'a> {
    src: &'a SourcePlan,
    streamed: &'a [&'a crate::spec::TableSpec],
    surveyed: &'a [&'a crate::spec::TableSpec],
    key: Option<&'a [u8; 32]>,
    cells: Vec<PeriodCells>,
    /// The survey sums, file by file (with a design and survey tables).
    surveys: Option<crate::survey::ByPart<'a>>,
}

impl<'a> Counters<'a> {
    /// Nothing counted yet.
    fn new(
        src: &'a SourcePlan,
        streamed: &'a [&'a crate::spec::TableSpec],
        surveyed: &'a [&'a crate::spec::TableSpec],
        key: Option<&'a [u8; 32]>,
    ) -> Self {
        Counters {
            src,
            streamed,
            surveyed,
            key,
            cells: vec![PeriodCells::default(); streamed.len()],
            surveys: src
                .design
                .as_ref()
                .filter(|_| !surveyed.is_empty())
                .map(|d| crate::survey::ByPart::new(d, surveyed)),
        }
    }

    /// Count accepted rows of file `file` (files in order, each file's rows in record order:
    /// the survey sums depend on it).
    fn add(&mut self, file: usize, rows: &polars::prelude::DataFrame) -> Result<()> {
        if self.streamed.is_empty() && self.surveys.is_none() {
            return Ok(());
        }
        // Codes as text, as the tables read them back from the file.
        let rows = &crate::harmonize::as_text(rows.clone())?;
        for (t, cells) in self.streamed.iter().zip(self.cells.iter_mut()) {
            crate::disaggregate::add_chunk(self.src, t, rows, cells, self.key)?;
        }
        if let Some(sums) = &mut self.surveys {
            sums.add(file, rows)?;
        }
        Ok(())
    }

    /// The streamed tables' cells and the survey sums (empty without a design).
    fn finish(self) -> (Vec<PeriodCells>, crate::engine::SurveySums) {
        let sums = match self.surveys {
            Some(s) => s.finish(),
            None => crate::engine::SurveySums {
                tables: vec![Default::default(); self.surveyed.len()],
                ..Default::default()
            },
        };
        (self.cells, sums)
    }
}

/// A source's accepted records as the pass writes them: one part per delivery file, each
/// opened when its file's first rows come, and a part without rows for a file without any.
pub(super) struct PartSinks<'a> {
    staging: &'a Path,
    /// Each file's part, in file order.
    paths: &'a [PathBuf],
    schema: &'a polars::prelude::Schema,
    metadata: &'a [Metadata],
    /// The part being written (its file's index).
    open: Option<(usize, ParquetSink)>,
    /// Parts finished (the files before the open one), as written.
    done: Vec<OutputFile>,
}

impl PartSinks<'_> {
    /// Write rows of file `file` (files come in order).
    fn write(&mut self, file: usize, rows: polars::prelude::DataFrame) -> Result<()> {
        self.open_part(file)?;
        match &mut self.open {
            Some((_, sink)) => sink.write(rows),
            None => Err(Error::Internal("no accepted part open".into())),
        }
    }

    /// Finish the parts before `file` (those of files without rows too) and open `file`'s.
    fn open_part(&mut self, file: usize) -> Result<()> {
        loop {
            let next = match &self.open {
                Some((i, _)) if *i == file => return Ok(()),
                Some((i, _)) if *i > file => {
                    return Err(Error::Internal(format!(
                        "rows of file {file} came after file {i}'s"
                    )));
                }
                Some((i, _)) => i + 1,
                None => self.done.len(),
            };
            if let Some((_, sink)) = self.open.take() {
                self.done.push(sink.finish(self.staging)?);
            }
            let (Some(path), Some(metadata)) = (self.paths.get(next), self.metadata.get(next))
            else {
                return Err(Error::Internal(format!("no accepted part for file {next}")));
            };
            self.open = Some((next, ParquetSink::create(path, self.schema, metadata)?));
        }
    }

    /// Finish every part (files without rows get theirs): each part's file as written.
    fn finish(mut self) -> Result<Vec<OutputFile>> {
        if let Some(last) = self.paths.len().checked_sub(1) {
            self.open_part(last)?;
        }
        if let Some((_, sink)) = self.open.take() {
            self.done.push(sink.finish(self.staging)?);
        }
        Ok(self.done)
    }
}

/// A row taken out of the accepted records: its line and its fields' values as text, by schema
/// index.
type Removed = (Option<u64>, BTreeMap<usize, Option<String>>);

/// The rows taken out of the accepted records, by (file index, record).
type RemovedRows = BTreeMap<(usize, u64), Removed>;

/// Put each file's accepted rows, now at `from[i]`, in its part `to[i]` without the rows of
/// `late` (found by file index and record): a part holding none of them is moved as it is
/// (nothing rewritten; `written[i]`, when known, its rows, bytes and blake3 as written), one
/// holding some is written again without them (read as `schema`, written as `write_schema`,
/// the pass's types, so it is the part the pass would have written). With `recount`, `kept`
/// sees every row that stays, in file order, `chunk_rows` at a time, typed as `schema`. Returns the rows taken out, by (file index, record), and each part's file.
#[allow(clippy::too_many_arguments)]
fn put_together(
    late: &[crate::validate::LateDuplicate],
    files: &[InputFile],
    from: &[PathBuf],
    written: &[Option<OutputFile>],
    to: &[PathBuf],
    metadata: &[Metadata],
    schema: &polars::prelude::Schema,
    write_schema: &polars::prelude::Schema,
    chunk_rows: usize,
    staging: &Path,
    recount: bool,
    mut kept: impl FnMut(usize, &polars::prelude::DataFrame) -> Result<()>,
) -> Result<(RemovedRows, Vec<OutputFile>)> {
    use crate::error::PolarsContext;
    use polars::prelude::*;
    let drop: std::collections::HashSet<(usize, u64)> =
        late.iter().map(|d| (d.file, d.record)).collect();
    let late_files: std::collections::HashSet<usize> = late.iter().map(|d| d.file).collect();
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
    let mut out = Vec::with_capacity(to.len());
    for (i, (part, dest)) in from.iter().zip(to).enumerate() {
        if !late_files.contains(&i) {
            if part != dest {
                if let Some(dir) = dest.parent() {
                    std::fs::create_dir_all(dir).at(dir)?;
                }
                std::fs::rename(part, dest).at(dest)?;
            }
            if recount {
                crate::engine::for_each_slice_of(dest, schema, chunk_rows, |df| kept(i, &df))?;
            }
            let path = crate::export::relative(dest, staging);
            out.push(match written.get(i).cloned().flatten() {
                Some(w) => OutputFile { path, ..w },
                None => {
                    let (bytes, blake3) = hash_file(dest)?;
                    let rows = crate::disaggregate::parquet_rows(dest)? as u64;
                    OutputFile {
                        path,
                        rows,
                        bytes,
                        blake3,
                    }
                }
            });
            continue;
        }
        // The rows to rewrite, moved aside first when they are in the part itself.
        let aside = dest.with_extension("before-late-duplicates.parquet");
        let part = if part == dest {
            std::fs::rename(dest, &aside).at(&aside)?;
            &aside
        } else {
            part
        };
        let meta = metadata
            .get(i)
            .ok_or_else(|| Error::Internal(format!("no metadata for file {i}")))?;
        let mut sink = ParquetSink::create(dest, write_schema, meta)?;
        crate::engine::for_each_slice_of(part, schema, chunk_rows, |df| {
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
            let mut taken = Vec::new();
            for (row, (f, r)) in file.iter().zip(record.iter()).enumerate() {
                // A part holds one file's rows: its index is `i` (the name is checked).
                let at = r
                    .map(|r| (i, r))
                    .filter(|k| drop.contains(k) && f == files.get(i).map(|x| x.path.as_str()));
                keep.push(at.is_none());
                if let Some(k) = at {
                    taken.push((row, k));
                }
            }
            if !taken.is_empty() {
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
                for (row, k) in taken {
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
            if recount {
                kept(i, &df)?;
            }
            sink.write(df)
        })?;
        out.push(sink.finish(staging)?);
        std::fs::remove_file(part).at(part)?;
    }
    Ok((removed, out))
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
