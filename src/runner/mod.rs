//! Runner: executes a compiled [`Plan`] stage by stage and accounts for every row.
//!
//! Input: a [`Plan`] and an output directory. Output: a release (`out/releases/<run-id>/`, made
//! current by [`crate::release`]) holding the accepted records
//! (`restricted/accepted/<source>/delivery=<k>/part-0.parquet`, one part per delivery file),
//! the quarantine (`quarantine/<source>.parquet`), the tables (`restricted/tables/`, `public/tables/`, `restricted/audit/`) and `manifest.json`; or,
//! when a source or table is rejected, the same files under `out/failed/<run-id>/` (`current`
//! unchanged); and a line in `out/history.jsonl` either way. Sources whose input key matches
//! the current release's are reused instead of recomputed.
//!
//! Each source streams through ingest → validate → export one chunk at a time, so memory is
//! bounded by the chunk size (plus the key sets of `unique` fields). After the run,
//! `rows_read == rows_accepted + rows_quarantined` is checked for every source from independent
//! counts (rows written to each side); a violation is an internal error.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use std::time::Instant;

use crate::disaggregate::PeriodCells;
use crate::error::{Error, IoContext, Rejection, Result};
use crate::export::{ParquetSink, write_atomic};
use crate::harmonize::Harmonizer;
use crate::ingest::{FileChunks, RawChunk};
use crate::layout::{Out, Owner, Release};
pub use crate::manifest::{
    InputFile, Manifest, OutputFile, Outside, RunStatus, SourceReport, TablePeriods, UnmappedValue,
    hash_file,
};
use crate::quarantine::{self, Rule};
use crate::spec::{Plan, SourcePlan, clean_path};
use crate::validate::{ValidatedChunk, Validator};
use polars::prelude::{ParquetReader, SerReader};
use std::sync::Arc;

mod gate;
mod reuse;
pub mod shard;
mod source;
mod tables;

use gate::check_public_columns;
use reuse::{Revision, input_key, reuse_source};
use source::{run_source, tolerance};
use tables::{SurveyTables, TablesContext, run_tables};

/// Failing cells a rejection names at most (the rest are counted; messages stay bounded).
const MAX_NAMED_FAILURES: usize = 10;

/// What the caller shows while sources are read. The library draws nothing itself; the CLI
/// draws progress bars when stderr is a terminal.
pub trait Progress: Send + Sync {
    /// Reading source `label` (`total` bytes of input) begins.
    fn source(&self, label: &str, total: u64) -> Box<dyn SourceProgress>;
    /// A stage of `total` steps begins (`tables`, `protection`: one step per table or group;
    /// `documents`); `set_position` counts the steps done.
    fn stage(&self, label: &str, total: u64) -> Box<dyn SourceProgress>;
}

/// The progress of a stage, or nothing when no progress is shown.
pub(crate) fn stage(
    opts: Option<&Arc<dyn Progress>>,
    label: &str,
    total: u64,
) -> Box<dyn SourceProgress> {
    match opts {
        Some(p) => p.stage(label, total),
        None => Box::new(NoProgress),
    }
}

/// The progress of one source's reading.
pub trait SourceProgress: Send + Sync {
    /// Bytes of input read so far.
    fn set_position(&self, bytes: u64);
    /// The source is read.
    fn finish(&self);
}

impl std::fmt::Debug for dyn Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Progress")
    }
}

/// No progress shown.
pub(crate) struct NoProgress;

impl SourceProgress for NoProgress {
    fn set_position(&self, _: u64) {}
    fn finish(&self) {}
}

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub out_dir: PathBuf,
    /// Where to report reading progress (`None`: nowhere).
    pub progress: Option<Arc<dyn Progress>>,
    /// When another run holds the output directory, wait for it instead of failing (exit 75).
    pub wait: bool,
    /// Recompute everything, even sources whose inputs did not change (periods already
    /// published stay as published: see `protect::ledger`).
    pub full_refresh: bool,
    /// Tables whose published periods are revised by this run (`--revise`); `all` for every
    /// protected table.
    pub revise: Vec<String>,
    /// Only these periods (SDMX `TIME_PERIOD` labels, `--period`) are revised: a backfill of
    /// earlier periods. Alone (no `revise`), every table with such a period is revised there.
    pub periods: Vec<String>,
    /// Where the tables' aggregates are computed (`None`: [`crate::engine::Local`]).
    pub engine: Option<Arc<dyn crate::engine::Engine>>,
    /// How the files of a source of several files are passed: one pass (the default), or
    /// each file as a shard of its own (`--shards N`). The release is the same whichever.
    pub shards: shard::Shards,
}

impl RunOptions {
    /// The run's engine.
    pub fn engine(&self) -> Arc<dyn crate::engine::Engine> {
        self.engine
            .clone()
            .unwrap_or_else(|| Arc::new(crate::engine::Local::new()))
    }
}

/// A table's periods for the manifest.
fn table_periods(plan: &Plan, t: &crate::spec::TableSpec, outside: Outside) -> TablePeriods {
    TablePeriods {
        freq: t.periods.freq.sdmx().to_string(),
        periods: t.periods.list.iter().map(|p| p.label()).collect(),
        date: t.periods.date.clone(),
        outside,
        provisional: t
            .periods
            .list
            .iter()
            .filter(|p| {
                p.is_provisional(
                    plan.reference_date,
                    t.kind.provisional_months(plan.provisional_months),
                )
            })
            .map(|p| p.label())
            .collect(),
    }
}

fn new_run_id(plan: &Plan) -> String {
    let now = chrono::Utc::now();
    let salt = format!(
        "{}{}{}",
        plan.spec_hash,
        now.timestamp_nanos_opt().unwrap_or_default(),
        std::process::id()
    );
    format!(
        "{}-{}",
        now.format("%Y%m%dT%H%M%SZ"),
        &blake3::hash(salt.as_bytes()).to_hex()[..6]
    )
}

/// Sources whose deliveries add up to at least this many bytes are read one at a time (beside
/// the smaller ones, read side by side): a source's memory grows with its rows (its key set),
/// and two large ones at once would add up. 16 MiB of CSV is about 200,000 records.
pub const SIDE_BY_SIDE_BYTES: u64 = 16 << 20;

/// Run the plan into the output directory `opts.out_dir` (see [`crate::release`] for its
/// layout). Takes the directory's lock (or fails with [`Error::Locked`]), cleans what a killed
/// run left, and records the run in the history whatever its outcome. When every source is
/// within tolerance and every table passes its disclosure checks, the outputs become a new
/// release and `current` points to it; otherwise (`manifest.status == "rejected"`) they are kept
/// under `out/failed/<run-id>/` and `current` stays where it was. When nothing changed since the
/// current release, nothing is recomputed: the current manifest comes back with status
/// `up_to_date`. Errors are I/O, polars or internal ones.
pub fn run(plan: &Plan, opts: &RunOptions) -> Result<Manifest> {
    let started = chrono::Utc::now();
    let run_id = new_run_id(plan);
    let out = &opts.out_dir;
    let (lock, stale) = match crate::release::Lock::acquire(out, &run_id, opts.wait) {
        Ok(l) => l,
        Err(e) => {
            // A run that could not start is a run too: the history says so (appending is one
            // small O_APPEND write, safe next to the running holder's).
            let result: Result<Manifest> = Err(e);
            let mut record = history_record(plan, &run_id, started, chrono::Utc::now(), &result);
            if record.exit_code == crate::error::exit::LOCKED {
                record.status = RunStatus::Locked;
            }
            let _ = crate::release::append_history(out, &record);
            return result;
        }
    };
    if let Some(holder) = stale {
        tracing::warn!(previous = %holder, "the previous run was killed without cleaning up; its lock is taken over");
    }
    let result = crate::release::clean_leftovers(out).and_then(|removed| {
        for p in removed {
            tracing::warn!(path = %p.display(), "removed what a killed run left");
        }
        run_locked(plan, opts, &run_id, started)
    });
    let finished = chrono::Utc::now();
    let record = history_record(plan, &run_id, started, finished, &result);
    if let Err(e) = crate::release::append_history(out, &record) {
        tracing::error!(error = %e, "could not append to the run history");
    }
    drop(lock);
    result
}

fn history_record(
    plan: &Plan,
    run_id: &str,
    started: chrono::DateTime<chrono::Utc>,
    finished: chrono::DateTime<chrono::Utc>,
    result: &Result<Manifest>,
) -> crate::release::HistoryRecord {
    let mut r = crate::release::HistoryRecord {
        run_id: run_id.to_string(),
        pipeline_id: plan.pipeline_id.clone(),
        started_at: started.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        finished_at: finished.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        status: RunStatus::Failed,
        exit_code: crate::error::exit::RUNTIME,
        error: None,
        sources: Vec::new(),
        tables_published: Vec::new(),
        seconds: BTreeMap::new(),
    };
    match result {
        Ok(m) => {
            r.status = m.status;
            r.exit_code = if m.rejections.is_empty() {
                crate::error::exit::OK
            } else {
                crate::error::exit::DATA_REJECTED
            };
            if !m.rejections.is_empty() {
                r.error = Some(crate::error::cap_bytes(
                    &m.rejections
                        .iter()
                        .map(|x| x.to_string())
                        .collect::<Vec<_>>()
                        .join("; "),
                    crate::manifest::HISTORY_ERROR_MAX,
                ));
            }
            if m.status != RunStatus::UpToDate {
                r.sources = m
                    .sources
                    .iter()
                    .map(|s| crate::release::SourceHistory {
                        id: s.id.clone(),
                        rows_read: s.rows_read,
                        rows_accepted: s.rows_accepted,
                        rows_quarantined: s.rows_quarantined,
                        quarantine_by_rule: s.quarantine_by_rule.clone(),
                        reused: s.reused,
                    })
                    .collect();
                if m.rejections.is_empty() {
                    // Each table once (the protection summaries are one per table and period).
                    let tables: std::collections::BTreeSet<&String> =
                        m.protection.iter().map(|p| &p.table).collect();
                    r.tables_published = tables.into_iter().cloned().collect();
                }
                r.seconds = m.seconds.clone();
            }
        }
        Err(e) => {
            r.exit_code = e.exit_code();
            if matches!(e, Error::Interrupted(_)) {
                r.status = RunStatus::Interrupted;
            }
            r.error = Some(crate::error::cap_bytes(
                &e.to_string(),
                crate::manifest::HISTORY_ERROR_MAX,
            ));
        }
    }
    r
}

fn run_locked(
    plan: &Plan,
    opts: &RunOptions,
    run_id: &str,
    started: chrono::DateTime<chrono::Utc>,
) -> Result<Manifest> {
    let run_id = run_id.to_string();
    let out = &opts.out_dir;
    let mut seconds: BTreeMap<String, f64> = BTreeMap::new();

    // What changed since the current release (each input hashed once, here).
    let mut identities: BTreeMap<String, Vec<(u64, String)>> = BTreeMap::new();
    let mut keys: BTreeMap<String, String> = BTreeMap::new();
    for s in &plan.sources {
        let (key, files) = input_key(plan, s)?;
        keys.insert(s.id.clone(), key);
        identities.insert(s.id.clone(), files);
    }
    let run_key = {
        let mut h = blake3::Hasher::new();
        for (id, k) in &keys {
            h.update(id.as_bytes());
            h.update(k.as_bytes());
        }
        h.finalize().to_hex().to_string()
    };
    let current_dir = crate::release::current(out);
    // The current release: what readers and the intruder already have (its ledgers are read
    // even on a full refresh), and what unchanged sources are reused from.
    let published: Option<Manifest> = std::fs::read_to_string(Release(&current_dir).manifest())
        .ok()
        .and_then(|t| serde_json::from_str::<Manifest>(&t).ok())
        .filter(|m| m.status == RunStatus::Succeeded && m.pipeline_id == plan.pipeline_id);
    let revision = Revision::check(plan, opts)?;
    let revised = |g: &crate::spec::GroupSpec| revision.revises(g);
    let revised_sources: Vec<&str> = plan
        .groups
        .iter()
        .filter(|g| revised(g))
        .map(|g| g.source.as_str())
        .collect();
    let previous: Option<Manifest> = if opts.full_refresh {
        None
    } else {
        published.clone()
    };
    if let Some(prev) = previous
        .as_ref()
        .filter(|m| m.run_key == run_key && opts.revise.is_empty() && opts.periods.is_empty())
    {
        tracing::info!(release = %prev.run_id, "up to date: nothing changed since the current release");
        let mut m = prev.clone();
        m.status = RunStatus::UpToDate;
        return Ok(m);
    }
    let reusable: BTreeMap<&str, &SourceReport> = previous
        .as_ref()
        .map(|m| {
            m.sources
                .iter()
                .filter(|s| {
                    keys.get(&s.id) == Some(&s.input_key)
                        && !revised_sources.contains(&s.id.as_str())
                })
                .map(|s| (s.id.as_str(), s))
                .collect()
        })
        .unwrap_or_default();

    // The protection key, when a table's method needs one (never logged, never written).
    let needs_key = plan.groups.iter().any(|g| {
        g.union.protect.as_ref().is_some_and(|p| {
            matches!(
                p.method,
                crate::spec::ProtectMethod::CellKey | crate::spec::ProtectMethod::RandomRound
            )
        })
    });
    let secret = if needs_key {
        match crate::protect::Secret::resolve(&plan.protection_key)? {
            Some(s) => Some(s),
            None => {
                return Err(Error::Usage(format!(
                    "tables protected by random rounding or the cell key method need the protection key: set ${} or name a key file under [protection] key_file (`migstat keygen FILE` writes one)",
                    plan.protection_key.env
                )));
            }
        }
    } else {
        None
    };

    let staging = Out(out).staging(&run_id);
    std::fs::create_dir_all(&staging).at(&staging)?;
    tracing::info!(run_id = %run_id, pipeline = %plan.pipeline_id, engine = %opts.engine().name(), "run started");

    let spec_dir = plan
        .spec_path
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let mut sources = Vec::new();
    let mut outputs = Vec::new();
    let mut rejections = Vec::new();
    let mut partial_tables: BTreeMap<String, PeriodCells> = BTreeMap::new();
    let mut placement: BTreeMap<String, TablePeriods> = BTreeMap::new();
    let mut survey_tables: SurveyTables = BTreeMap::new();
    let mut reused_protection = Vec::new();
    let engine = opts.engine();
    // Sources are independent (each its own staging folders, files and partials): the small
    // ones are read side by side, beside the large ones read one at a time (their key sets
    // and chunk buffers would add up: see [`SIDE_BY_SIDE_BYTES`]). Their results are taken in
    // the plan's order, so the release, the logs and the first error reported are the same
    // whatever the thread count. A source that fails does not stop the others already under
    // way; its error is returned once they are done.
    enum Pass {
        Reused(Result<reuse::Reused>),
        Ran(Result<source::SourcePass>, f64),
    }
    let pass_of = |src: &SourcePlan| {
        let t0 = Instant::now();
        if let (Some(prev), Some(report)) = (previous.as_ref(), reusable.get(src.id.as_str())) {
            return Pass::Reused(reuse_source(
                plan,
                src,
                prev,
                report,
                &current_dir,
                &staging,
            ));
        }
        let identity = identities.get(&src.id).map_or(&[][..], Vec::as_slice);
        let pass = run_source(
            plan,
            src,
            identity,
            &spec_dir,
            &staging,
            opts,
            secret.as_ref(),
        );
        Pass::Ran(pass, t0.elapsed().as_secs_f64())
    };
    let bytes = |src: &SourcePlan| -> u64 {
        identities
            .get(&src.id)
            .map_or(0, |files| files.iter().map(|(b, _)| *b).sum())
    };
    let (large, small): (Vec<usize>, Vec<usize>) =
        (0..plan.sources.len()).partition(|i| bytes(&plan.sources[*i]) >= SIDE_BY_SIDE_BYTES);
    let lanes = crate::parallel::map(
        vec![(large, false), (small, true)],
        |(lane, side_by_side)| {
            if side_by_side {
                crate::parallel::map(lane, |i| (i, pass_of(&plan.sources[i])))
            } else {
                lane.into_iter()
                    .map(|i| (i, pass_of(&plan.sources[i])))
                    .collect()
            }
        },
    );
    let mut passes: Vec<Option<Pass>> = plan.sources.iter().map(|_| None).collect();
    for (i, pass) in lanes.into_iter().flatten() {
        passes[i] = Some(pass);
    }
    for (src, pass) in plan.sources.iter().zip(passes) {
        let Some(pass) = pass else {
            return Err(Error::Internal(format!("source {}: not read", src.id)));
        };
        let (pass, took) = match pass {
            Pass::Reused(taken) => {
                let taken = match taken {
                    Ok(t) => t,
                    Err(e) => {
                        let _ = std::fs::remove_dir_all(&staging);
                        return Err(e);
                    }
                };
                outputs.extend(taken.outputs);
                reused_protection.extend(taken.protection);
                placement.extend(taken.periods);
                sources.push(taken.report);
                continue;
            }
            Pass::Ran(pass, took) => (pass, took),
        };
        match pass {
            Ok(pass) => {
                let mut report = pass.report;
                let outs = pass.outputs;
                partial_tables.extend(pass.cells);
                survey_tables.extend(pass.surveys);
                rejections.extend(pass.rejections);
                if let Some(took) = pass.engine_seconds {
                    seconds.insert(format!("engine:{}", src.id), took);
                }
                report.seconds = (took * 1000.0).round() / 1000.0;
                report.input_key = keys.get(&src.id).cloned().unwrap_or_default();
                seconds.insert(format!("source:{}", src.id), report.seconds);
                if let Some(r) = tolerance(&report, src, &Out(out).failed(&run_id)) {
                    rejections.push(r);
                }
                tracing::info!(
                    source = %src.id,
                    rows_read = report.rows_read,
                    rows_accepted = report.rows_accepted,
                    rows_quarantined = report.rows_quarantined,
                    seconds = report.seconds,
                    "source done"
                );
                sources.push(report);
                outputs.extend(outs);
            }
            Err(Error::Rejected(r)) => rejections.extend(r),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(e);
            }
        }
    }

    for s in &sources {
        if s.rows_read != s.rows_accepted + s.rows_quarantined {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(Error::Internal(format!(
                "row conservation violated for source `{}`: read {}, accepted {}, quarantined {}",
                s.id, s.rows_read, s.rows_accepted, s.rows_quarantined
            )));
        }
    }

    let mut protection = reused_protection;
    if rejections.is_empty() {
        let ctx = TablesContext {
            plan,
            staging: &staging,
            current: &current_dir,
            published: published.as_ref(),
            secret: secret.as_ref(),
            revision: &revision,
            revise_periods: &opts.periods,
            sources: &sources,
            progress: opts.progress.as_ref(),
            engine: engine.as_ref(),
        };
        match run_tables(&ctx, partial_tables, survey_tables) {
            Ok(done) => {
                outputs.extend(done.outputs);
                placement.extend(done.periods);
                seconds.extend(done.seconds);
                protection.extend(done.protection);
                rejections.extend(done.rejections);
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(e);
            }
        }
    }
    // Outputs and protection summaries in a fixed order, whatever was reused.
    outputs.sort_by(|a, b| a.path.cmp(&b.path));
    protection.sort_by(|a, b| a.table.cmp(&b.table));

    let mut manifest = Manifest {
        run_id: run_id.clone(),
        status: if rejections.is_empty() {
            RunStatus::Succeeded
        } else {
            RunStatus::Rejected
        },
        pipeline_id: plan.pipeline_id.clone(),
        pipeline_hash: plan.spec_hash.clone(),
        spec: clean_path(&plan.spec_path).display().to_string(),
        migstat_version: crate::VERSION.into(),
        started_at: started.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        finished_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        reference_date: plan.reference_date.to_string(),
        reference_period: [
            plan.reference_period.start.to_string(),
            plan.reference_period.end.to_string(),
        ],
        sources,
        rejections,
        protection,
        outputs,
        run_key,
        seconds,
        periods: placement,
    };
    if manifest.rejections.is_empty() {
        // Codebook, SDMX, report: from the protected public tables just written.
        let history = crate::release::read_history(out).unwrap_or_default();
        let t0 = Instant::now();
        let bar = stage(opts.progress.as_ref(), "documents", 1);
        let documents = crate::export::documents(
            plan,
            &staging,
            &manifest,
            &history,
            Some(current_dir.as_path()).filter(|p| p.is_dir()),
        );
        bar.finish();
        match documents {
            Ok(files) => {
                manifest.outputs.extend(files);
                manifest.outputs.sort_by(|a, b| a.path.cmp(&b.path));
                let took = (t0.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
                manifest.seconds.insert("documents".to_string(), took);
                manifest.finished_at =
                    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(e);
            }
        }
    }
    // Nothing that identifies a person may reach the public tier: prove it from the files.
    if manifest.rejections.is_empty() {
        let leaks = check_public_columns(plan, &staging)?;
        if !leaks.is_empty() {
            manifest.rejections = leaks;
            manifest.status = RunStatus::Rejected;
        }
    }
    if !manifest.rejections.is_empty() {
        write_manifest(&staging, &manifest)?;
        let failed = Out(out).failed(&run_id);
        std::fs::create_dir_all(Out(out).failed_root()).at(out)?;
        std::fs::rename(&staging, &failed).at(&failed)?;
        tracing::error!(run_id = %run_id, kept = %failed.display(), "run rejected; its quarantine and manifest are kept for inspection");
        return Ok(manifest);
    }

    crate::release::fault("before_manifest");
    // The last moment a stop is honoured: after it the release is published whole.
    if let Err(e) = crate::interrupt::check() {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    write_manifest(&staging, &manifest)?;
    let pruned = crate::release::publish(out, &staging, &run_id, plan.keep_releases)?;
    for id in pruned {
        tracing::info!(release = %id, "old release removed (publish.keep_releases)");
    }
    let _ = std::fs::remove_dir(Out(out).staging_root());
    tracing::info!(run_id = %run_id, "run succeeded: release published and current");
    Ok(manifest)
}

fn write_manifest(dir: &Path, m: &Manifest) -> Result<()> {
    let json = serde_json::to_vec_pretty(m)
        .map_err(|e| Error::Internal(format!("serialising the manifest: {e}")))?;
    write_atomic(&Release(dir).manifest(), &json)
}
