//! Runner: executes a compiled [`Plan`] stage by stage and accounts for every row.
//!
//! Input: a [`Plan`] and an output directory. Output: a release (`out/releases/<run-id>/`, made
//! current by [`crate::release`]) holding the accepted records
//! (`restricted/accepted/<source>.parquet`), the quarantine (`quarantine/<source>.parquet`), the
//! tables (`restricted/tables/`, `public/tables/`, `restricted/audit/`) and `manifest.json`; or,
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

/// Failing cells a rejection names at most (the rest are counted; messages stay bounded).
const MAX_NAMED_FAILURES: usize = 10;

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub out_dir: PathBuf,
    /// Draw progress bars on stderr (the CLI sets this only when stderr is a terminal).
    pub progress: bool,
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
                r.error = Some(
                    m.rejections
                        .iter()
                        .map(|x| x.to_string())
                        .collect::<Vec<_>>()
                        .join("; "),
                );
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
                    r.tables_published = m.protection.iter().map(|p| p.table.clone()).collect();
                }
                r.seconds = m.seconds.clone();
            }
        }
        Err(e) => {
            r.exit_code = e.exit_code();
            r.error = Some(e.to_string());
        }
    }
    r
}

/// The key of a source's results (see [`SourceReport::input_key`]).
fn input_key(plan: &Plan, src: &SourcePlan) -> Result<String> {
    let mut h = blake3::Hasher::new();
    h.update(crate::VERSION.as_bytes());
    h.update(plan.spec_hash.as_bytes());
    h.update(src.id.as_bytes());
    for f in &src.files {
        let (_, hash) = hash_file(f)?;
        h.update(hash.as_bytes());
    }
    Ok(h.finalize().to_hex().to_string())
}

/// The source an output file belongs to, from its path in the release.
fn output_source<'a>(plan: &'a Plan, path: &str) -> Option<&'a str> {
    match Release::owner(path)? {
        Owner::Source(id) => plan
            .sources
            .iter()
            .find(|s| s.id == id)
            .map(|s| s.id.as_str()),
        Owner::Table(t) => plan
            .tables
            .iter()
            .find(|x| x.id == t)
            .map(|x| x.source.as_str()),
        Owner::Group(g) => plan
            .groups
            .iter()
            .find(|x| x.id == g)
            .map(|x| x.source.as_str()),
    }
}

/// Put a previous release's file in the staging directory: a hard link (the file is never
/// written again), or a copy where links are not possible.
fn reuse_file(from: &Path, to: &Path) -> Result<()> {
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).at(dir)?;
    }
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to).at(to)?;
    }
    Ok(())
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

    // What changed since the current release.
    let keys: BTreeMap<String, String> = plan
        .sources
        .iter()
        .map(|s| Ok((s.id.clone(), input_key(plan, s)?)))
        .collect::<Result<_>>()?;
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
    for t in &opts.revise {
        if t != "all" && !plan.groups.iter().any(|g| g.members.contains(t)) {
            return Err(Error::Usage(format!(
                "--revise {t}: no published table `{t}` (published: {})",
                plan.groups
                    .iter()
                    .flat_map(|g| g.members.iter().cloned())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    // `--period` alone revises those periods of every table.
    let revise_all = opts.revise.is_empty() && !opts.periods.is_empty();
    for p in &opts.periods {
        let has = |t: &crate::spec::TableSpec| t.periods.list.iter().any(|x| x.label() == *p);
        let chosen = |t: &crate::spec::TableSpec| {
            revise_all || opts.revise.iter().any(|r| r == "all" || *r == t.id)
        };
        if !plan
            .tables
            .iter()
            .any(|t| t.protect.is_some() && chosen(t) && has(t))
        {
            return Err(Error::Usage(format!(
                "--period {}: no period with that label in the tables to revise (labels are SDMX TIME_PERIODs: 2024, 2024-Q1, 2024-01, 2024-12-31)",
                crate::spec::cap(p)
            )));
        }
    }
    let revised = |g: &crate::spec::GroupSpec| {
        revise_all
            || opts
                .revise
                .iter()
                .any(|t| t == "all" || g.members.contains(t))
    };
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
    tracing::info!(run_id = %run_id, pipeline = %plan.pipeline_id, "run started");

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
    for src in &plan.sources {
        let t0 = Instant::now();
        if let (Some(prev), Some(report)) = (previous.as_ref(), reusable.get(src.id.as_str())) {
            // Unchanged inputs: the previous release's files for this source and its tables.
            for f in prev
                .outputs
                .iter()
                .filter(|f| output_source(plan, &f.path) == Some(src.id.as_str()))
            {
                reuse_file(&current_dir.join(&f.path), &staging.join(&f.path))?;
                outputs.push(f.clone());
            }
            let tables: Vec<&str> = plan
                .tables
                .iter()
                .filter(|t| t.source == src.id)
                .map(|t| t.id.as_str())
                .collect();
            reused_protection.extend(
                prev.protection
                    .iter()
                    .filter(|p| tables.contains(&p.table.as_str()))
                    .cloned(),
            );
            for t in &tables {
                if let Some(p) = prev.periods.get(*t) {
                    placement.insert(t.to_string(), p.clone());
                }
            }
            let mut report = (*report).clone();
            report.reused = true;
            tracing::info!(source = %src.id, "inputs unchanged: reused from the current release");
            sources.push(report);
            continue;
        }
        match run_source(plan, src, &spec_dir, &staging, opts, secret.as_ref()) {
            Ok((mut report, outs, cells, surveys, design_rejections)) => {
                partial_tables.extend(cells);
                survey_tables.extend(surveys);
                rejections.extend(design_rejections);
                report.seconds = (t0.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
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
        let reused = |source: &str| sources.iter().any(|s| s.id == source && s.reused);
        let inputs_of = |source: &str| {
            sources
                .iter()
                .find(|s: &&SourceReport| s.id == source)
                .map(|s| {
                    s.files
                        .iter()
                        .map(|f| format!("{}={}", f.path, f.blake3))
                        .collect::<Vec<_>>()
                        .join(";")
                })
                .unwrap_or_default()
        };
        // Tables outside any protected group (restricted only), and survey tables (their
        // estimates, for their group).
        let mut survey_frames: BTreeMap<String, polars::prelude::DataFrame> = BTreeMap::new();
        for table in &plan.tables {
            if reused(&table.source) || in_count_group(plan, &table.id) {
                continue;
            }
            let t0 = Instant::now();
            let partial = match survey_tables.remove(&table.id) {
                Some((info, p)) => Partial::Survey(info, p),
                None => partial_tables
                    .remove(&table.id)
                    .map_or(Partial::None, Partial::Cells),
            };
            match build_table(
                plan,
                table,
                &staging,
                inputs_of(&table.source),
                partial,
                secret.as_ref(),
            ) {
                Ok((files, tables, outside)) => {
                    outputs.extend(files);
                    placement.insert(table.id.clone(), table_periods(plan, table, outside));
                    if table.kind.is_survey()
                        && let Some(t) = tables.into_iter().next()
                    {
                        survey_frames.insert(table.id.clone(), t.frame);
                    }
                }
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&staging);
                    return Err(e);
                }
            }
            let took = (t0.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
            seconds.insert(format!("table:{}", table.id), took);
        }
        for group in &plan.groups {
            if reused(&group.source) {
                continue;
            }
            let t0 = Instant::now();
            let ctx = GroupContext {
                plan,
                staging: &staging,
                current: &current_dir,
                published: published.as_ref(),
                secret: secret.as_ref(),
                revise: revised(group),
                revise_periods: &opts.periods,
                inputs: inputs_of(&group.source),
            };
            let union = partial_tables.remove(&group.union.id);
            match protect_group(&ctx, group, union, &mut survey_frames) {
                Ok(done) => {
                    outputs.extend(done.outputs);
                    for m in &group.members {
                        if let Some(t) = plan.tables.iter().find(|t| &t.id == m)
                            && !t.kind.is_survey()
                        {
                            placement.insert(m.clone(), table_periods(plan, t, done.outside));
                        }
                    }
                    for summary in done.summaries {
                        if !summary.audit_passed {
                            rejections.push(Rejection {
                                source_id: group.source.clone(),
                                reason: format!(
                                    "table `{}`: the disclosure audit failed, nothing is published: {}{}",
                                    summary.table,
                                    summary.failures.iter().take(MAX_NAMED_FAILURES).cloned().collect::<Vec<_>>().join("; "),
                                    if summary.failures.len() > MAX_NAMED_FAILURES {
                                        format!(
                                            "; … and {} more (all in the restricted audit table)",
                                            summary.failures.len() - MAX_NAMED_FAILURES
                                        )
                                    } else {
                                        String::new()
                                    }
                                ),
                            });
                        }
                        protection.push(summary);
                    }
                }
                Err(Error::Rejected(r)) => rejections.extend(r),
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&staging);
                    return Err(e);
                }
            }
            let took = (t0.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
            seconds.insert(format!("group:{}", group.id), took);
            tracing::info!(group = %group.id, seconds = took, "tables protected");
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
        match crate::export::documents(plan, &staging, &manifest, &history) {
            Ok(files) => {
                manifest.outputs.extend(files);
                manifest.outputs.sort_by(|a, b| a.path.cmp(&b.path));
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

/// What a source's pass leaves for the tables: its report, its files, and the partial aggregates of
/// the tables counted while it was read.
type SourceRun = (
    SourceReport,
    Vec<OutputFile>,
    BTreeMap<String, PeriodCells>,
    SurveyTables,
    Vec<Rejection>,
);

/// Survey tables' partials with their source's finished design.
type SurveyTables = BTreeMap<String, (Arc<crate::survey::DesignInfo>, crate::survey::Partial)>;

/// A table's aggregate gathered during its source's pass, if any.
enum Partial {
    None,
    Cells(PeriodCells),
    Survey(Arc<crate::survey::DesignInfo>, crate::survey::Partial),
}

/// Build a table from its source's harmonized records in `staging` and write it with its true
/// values to the restricted tier, one Hive partition per reference period; returns the files,
/// the tables (one per period) and the records left out of every period.
fn build_table(
    plan: &Plan,
    table: &crate::spec::TableSpec,
    staging: &Path,
    inputs: String,
    partial: Partial,
    secret: Option<&crate::protect::Secret>,
) -> Result<(
    Vec<OutputFile>,
    Vec<crate::disaggregate::CountTable>,
    Outside,
)> {
    let source = source_of(plan, table)?;
    let accepted = Release(staging).accepted(&source.id);
    let key = secret.map(|s| s.derive("cell key"));
    let (tables, outside) = match partial {
        Partial::Cells(cells) => (
            crate::disaggregate::finish_all(table, &cells)?,
            cells.outside,
        ),
        Partial::Survey(info, p) => {
            let period = *table.periods.list.first().ok_or_else(|| {
                Error::Internal(format!("table {}: no reference period", table.id))
            })?;
            let frame = p.finish(table, &info)?;
            (
                vec![crate::disaggregate::CountTable { period, frame }],
                Outside::default(),
            )
        }
        Partial::None => crate::disaggregate::build(source, table, &accepted, key.as_ref())?,
    };
    let mut files = Vec::new();
    for t in &tables {
        files.push(write_restricted_table(plan, table, staging, inputs.clone(), t)?.0);
    }
    Ok((files, tables, outside))
}

fn source_of<'a>(plan: &'a Plan, table: &crate::spec::TableSpec) -> Result<&'a SourcePlan> {
    plan.sources
        .iter()
        .find(|s| s.id == table.source)
        .ok_or_else(|| Error::Internal(format!("table {} names an unknown source", table.id)))
}

/// Write a table's true values to `restricted/tables/<id>/<period partition>/data.parquet`.
fn write_restricted_table(
    plan: &Plan,
    table: &crate::spec::TableSpec,
    staging: &Path,
    inputs: String,
    t: &crate::disaggregate::CountTable,
) -> Result<(OutputFile, Metadata)> {
    let definition = serde_json::to_string(table)
        .map_err(|e| Error::Internal(format!("serialising table {}: {e}", table.id)))?;
    let metadata = vec![
        ("migstat_version".to_string(), crate::VERSION.to_string()),
        ("pipeline_id".to_string(), plan.pipeline_id.clone()),
        ("pipeline_hash".to_string(), plan.spec_hash.clone()),
        ("input_blake3".to_string(), inputs),
        ("table".to_string(), definition),
        (
            "codelists_blake3".to_string(),
            crate::export::public::codelist_hashes(plan),
        ),
    ];
    let path = Release(staging).restricted_table(&table.id, &t.period.partition());
    let mut sink = ParquetSink::create(&path, t.frame.schema(), &metadata)?;
    sink.write(t.frame.clone())?;
    Ok((sink.finish(staging)?, metadata))
}

/// The tables the source pass counts: every table outside a protected count group, and each
/// group's union cube (survey groups count their respondents that way).
fn counted_tables(plan: &Plan) -> Vec<&crate::spec::TableSpec> {
    plan.tables
        .iter()
        .filter(|t| !in_count_group(plan, &t.id))
        .chain(plan.groups.iter().map(|g| &g.union))
        .collect()
}

/// Whether a table is counted through a protected count group's union cube.
fn in_count_group(plan: &Plan, id: &str) -> bool {
    plan.groups
        .iter()
        .any(|g| !g.survey && g.members.iter().any(|m| m == id))
}

/// What protecting a group needs from the run.
struct GroupContext<'a> {
    plan: &'a Plan,
    staging: &'a Path,
    /// The current release (earlier publications are read from it).
    current: &'a Path,
    published: Option<&'a Manifest>,
    secret: Option<&'a crate::protect::Secret>,
    /// Revise the group's periods already published.
    revise: bool,
    /// Only these periods (all when empty).
    revise_periods: &'a [String],
    inputs: String,
}

/// What a protected group left in the release.
struct GroupDone {
    outputs: Vec<OutputFile>,
    summaries: Vec<crate::protect::Summary>,
    /// The records left out of every period.
    outside: Outside,
}

/// Count a group's union cube, write its members' true tables, and publish each period: again
/// as it was when it is frozen, else protected (a revision when it was published before).
fn protect_group(
    ctx: &GroupContext<'_>,
    group: &crate::spec::GroupSpec,
    union: Option<PeriodCells>,
    survey_frames: &mut BTreeMap<String, polars::prelude::DataFrame>,
) -> Result<GroupDone> {
    let plan = ctx.plan;
    let source = source_of(plan, &group.union)?;
    let key = ctx.secret.map(|s| s.derive("cell key"));
    let cells = match union {
        Some(c) => c,
        None => {
            let accepted = Release(ctx.staging).accepted(&source.id);
            crate::disaggregate::build_cells(source, &group.union, &accepted, key.as_ref())?
        }
    };
    let mut done = GroupDone {
        outputs: Vec::new(),
        summaries: Vec::new(),
        outside: cells.outside,
    };
    // The series' frame (every period publishes the same rows) and the codes that occur in
    // more than one period.
    let frame: std::collections::BTreeSet<&Vec<String>> =
        cells.by_period.values().flat_map(|c| c.keys()).collect();
    let series = Series {
        frame: frame.into_iter().cloned().collect(),
        shared: crate::protect::codes_in_several_periods(
            cells
                .by_period
                .values()
                .map(|c| c.iter().map(|(k, t)| (k.as_slice(), t.n))),
            group.union.dimensions.len(),
        ),
    };
    let empty = crate::disaggregate::Cells::new();
    for (i, period) in group.union.periods.list.iter().enumerate() {
        let finest = cells.by_period.get(&i).unwrap_or(&empty);
        let d = protect_period(ctx, group, period, finest, &series, survey_frames)?;
        done.outputs.extend(d.outputs);
        done.summaries.extend(d.summaries);
    }
    Ok(done)
}

/// What every period of a group's series shares.
struct Series {
    /// The finest cells of every period.
    frame: Vec<Vec<String>>,
    /// Per union dimension, the codes that occur in more than one period.
    shared: Vec<std::collections::BTreeSet<String>>,
}

/// Protect and publish one period of a group (see [`protect_group`]).
fn protect_period(
    ctx: &GroupContext<'_>,
    group: &crate::spec::GroupSpec,
    period: &crate::spec::period::RefPeriod,
    finest: &crate::disaggregate::Cells,
    series: &Series,
    survey_frames: &mut BTreeMap<String, polars::prelude::DataFrame>,
) -> Result<GroupDone> {
    let plan = ctx.plan;
    let part = period.partition();
    let mut outputs = Vec::new();
    let members: Vec<&crate::spec::TableSpec> = group
        .members
        .iter()
        .filter_map(|m| plan.tables.iter().find(|t| &t.id == m))
        .collect();
    if !group.survey {
        for t in &members {
            let cells =
                crate::disaggregate::project(finest, &group.union.dimensions, &t.dimensions);
            let table = crate::disaggregate::finish(t, period, &cells)?;
            outputs
                .push(write_restricted_table(plan, t, ctx.staging, ctx.inputs.clone(), &table)?.0);
        }
    }
    // Earlier publications of this period, when the group is the same.
    let ledger_path = crate::protect::Ledger::path(ctx.current, &group.id, period);
    let definition = crate::protect::ledger::definition(group);
    let previous = if ledger_path.is_file() {
        crate::protect::Ledger::read(&ledger_path, &group.union.dimensions)
            .ok()
            .filter(|l| l.definition == definition)
    } else {
        None
    };
    if ledger_path.is_file() && previous.is_none() {
        tracing::warn!(group = %group.id, "the tables' definition changed since the period was last published: it is published as a new series (the earlier publication is not taken into account)");
    }
    let provisional = period.is_provisional(
        plan.reference_date,
        group.union.kind.provisional_months(plan.provisional_months),
    );
    // A period published while provisional and now closed is published again, final (a
    // revision: earlier suppressions kept, small changes protected).
    let closing = !provisional
        && ctx.published.is_some_and(|m| {
            m.protection.iter().any(|s| {
                group.members.contains(&s.table) && s.ref_period == period.label() && s.provisional
            })
        });
    let revise = ctx.revise
        && (ctx.revise_periods.is_empty() || ctx.revise_periods.contains(&period.label()));
    let frozen = previous.is_some() && !revise && !closing && {
        let every = group
            .union
            .protect
            .as_ref()
            .is_some_and(|p| p.revisions == crate::spec::Revisions::EveryRelease);
        !every
    };
    if let (true, Some(prev), Some(manifest)) = (frozen, previous.as_ref(), ctx.published) {
        // Published again byte for byte; what changed waits for a revision.
        let latest = prev.vintages.last();
        let pending = latest.map_or(0, |v| {
            let mut changed = finest
                .iter()
                .filter(|(k, t)| v.rows.get(*k).is_none_or(|(t0, _)| *t0 != t.n))
                .count();
            changed += v
                .rows
                .iter()
                .filter(|(k, (t0, _))| *t0 > 0 && !finest.contains_key(*k))
                .count();
            changed as u64
        });
        let mut files: Vec<String> = vec![crate::export::relative(&ledger_path, ctx.current)];
        for m in &group.members {
            files.push(Release::public_table_entry(m, &part));
            files.push(Release::audit_entry(m, &part));
        }
        let mut summaries = Vec::new();
        for f in &files {
            let entry = manifest.outputs.iter().find(|o| &o.path == f);
            match entry {
                Some(e) => {
                    reuse_file(&ctx.current.join(f), &ctx.staging.join(f))?;
                    outputs.push(e.clone());
                }
                None => {
                    return Err(Error::Internal(format!(
                        "group {}: the current release lists no {f}",
                        group.id
                    )));
                }
            }
        }
        for m in &group.members {
            let mut s = manifest
                .protection
                .iter()
                .find(|p| &p.table == m && p.ref_period == period.label())
                .cloned()
                .ok_or_else(|| {
                    Error::Internal(format!(
                        "table {m}: no protection summary of {} in the current release",
                        period.label()
                    ))
                })?;
            s.frozen = true;
            s.pending_changes = pending;
            summaries.push(s);
        }
        tracing::info!(group = %group.id, pending_changes = pending, "period already published: published again unchanged (revisions = freeze)");
        return Ok(GroupDone {
            outputs,
            summaries,
            outside: Outside::default(),
        });
    }
    let surveys: BTreeMap<String, polars::prelude::DataFrame> = if group.survey {
        group
            .members
            .iter()
            .filter_map(|m| survey_frames.remove(m).map(|f| (m.clone(), f)))
            .collect()
    } else {
        BTreeMap::new()
    };
    let done = crate::protect::protect_group(
        plan,
        crate::protect::GroupInput {
            group,
            finest,
            surveys,
            secret: ctx.secret,
            previous: previous.as_ref(),
            period: *period,
            series_frame: &series.frame,
            shared_codes: &series.shared,
            provisional,
        },
    )?;
    let mut summaries = Vec::new();
    for t in &done.tables {
        outputs.push(crate::export::public::write_table(plan, ctx.staging, t)?);
        let audit = Release(ctx.staging).audit(t.table(), &part);
        let meta = vec![
            ("migstat_version".to_string(), crate::VERSION.to_string()),
            ("pipeline_id".to_string(), plan.pipeline_id.clone()),
            ("table".to_string(), t.table().to_string()),
        ];
        let mut sink = ParquetSink::create(&audit, t.audit().schema(), &meta)?;
        sink.write(t.audit().clone())?;
        outputs.push(sink.finish(ctx.staging)?);
        tracing::info!(
            table = %t.table(),
            primary = t.summary().primary,
            secondary = t.summary().secondary,
            audit_passed = t.summary().audit_passed,
            "table protected"
        );
        summaries.push(t.summary().clone());
    }
    let ledger_out = crate::protect::Ledger::path(ctx.staging, &group.id, period);
    let frame = done.ledger.frame(&group.union.dimensions)?;
    let meta = vec![("definition".to_string(), definition)];
    let mut sink = ParquetSink::create(&ledger_out, frame.schema(), &meta)?;
    sink.write(frame)?;
    outputs.push(sink.finish(ctx.staging)?);
    Ok(GroupDone {
        outputs,
        summaries,
        outside: Outside::default(),
    })
}

type Metadata = Vec<(String, String)>;

/// Every column name that would carry an identifier: each source's person and record ids and
/// primary-key fields, delivered (`raw_<field>`) or as a code derived from them.
fn identifier_columns(plan: &Plan) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for s in &plan.sources {
        let ids: Vec<&String> = s
            .person_id
            .iter()
            .chain(&s.record_id)
            .chain(&s.schema.primary_key)
            .collect();
        for id in &ids {
            let why = format!("identifier `{id}` of source `{}`", s.id);
            out.insert(id.to_string(), why.clone());
            out.insert(crate::vocab::raw_column(id), why);
        }
        for d in &s.harmonize {
            if let crate::spec::Derivation::Code { from, .. } = &d.derivation
                && ids.contains(&from)
            {
                out.insert(
                    d.name.clone(),
                    format!("derived from identifier `{from}` of source `{}`", s.id),
                );
            }
        }
    }
    out
}

/// Scan the columns of every file written to the public tier (Parquet schemas, SDMX-CSV header
/// rows) for identifiers.
fn check_public_columns(plan: &Plan, staging: &Path) -> Result<Vec<Rejection>> {
    let ids = identifier_columns(plan);
    let mut found = Vec::new();
    let pattern = Release(staging).public().join("**").join("*.parquet");
    let files = glob::glob(&pattern.to_string_lossy())
        .map_err(|e| Error::Internal(format!("public tier scan: {e}")))?;
    // SDMX-CSV files: their header row.
    let csv_pattern = Release(staging).public().join("**").join("*.csv");
    let csv_files = glob::glob(&csv_pattern.to_string_lossy())
        .map_err(|e| Error::Internal(format!("public tier scan: {e}")))?;
    let mut headers: Vec<(PathBuf, Vec<String>)> = Vec::new();
    for file in files.flatten() {
        let f = std::fs::File::open(&file).at(&file)?;
        let schema = ParquetReader::new(f)
            .schema()
            .map_err(|e| Error::Internal(format!("reading {}: {e}", file.display())))?;
        headers.push((file, schema.iter_names().map(|n| n.to_string()).collect()));
    }
    for file in csv_files.flatten() {
        let mut rdr = csv::Reader::from_path(&file)
            .map_err(|e| Error::Internal(format!("reading {}: {e}", file.display())))?;
        let names = rdr
            .headers()
            .map_err(|e| Error::Internal(format!("reading {}: {e}", file.display())))?
            .iter()
            .map(str::to_string)
            .collect();
        headers.push((file, names));
    }
    for (file, names) in headers {
        for name in names {
            if let Some(why) = ids.get(name.as_str()) {
                found.push(Rejection {
                    source_id: plan.pipeline_id.clone(),
                    reason: format!(
                        "public file {} has column `{name}`, {why}: identifiers never leave the restricted tier",
                        relative_to(&file, staging).display()
                    ),
                });
            }
        }
    }
    Ok(found)
}

/// The rejection of a source whose quarantined fraction exceeds its tolerance, naming the top rules.
fn tolerance(r: &SourceReport, src: &SourcePlan, failed_dir: &Path) -> Option<Rejection> {
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
    Some(Rejection {
        source_id: src.id.clone(),
        reason: format!(
            "{} of {} rows ({:.2}%) failed validation, above max_invalid_fraction {:.2}%; top reasons: {reasons}. \
             Its quarantine is kept in {}",
            r.rows_quarantined,
            r.rows_read,
            fraction * 100.0,
            src.max_invalid_fraction * 100.0,
            Release(failed_dir).quarantine(&src.id).display()
        ),
    })
}

fn run_source(
    plan: &Plan,
    src: &SourcePlan,
    spec_dir: &Path,
    staging: &Path,
    opts: &RunOptions,
    secret: Option<&crate::protect::Secret>,
) -> Result<SourceRun> {
    // File names as the spec reaches them (relative to the spec file): stable whatever the cwd.
    let spec_dir = clean_path(spec_dir);
    let names: Vec<String> = src
        .files
        .iter()
        .map(|f| {
            relative_to(&clean_path(f), &spec_dir)
                .to_string_lossy()
                .replace('\\', "/")
        })
        .collect();
    let mut files = Vec::new();
    for (f, name) in src.files.iter().zip(&names) {
        let (bytes, blake3) = hash_file(f)?;
        files.push(InputFile {
            path: name.clone(),
            bytes,
            blake3,
        });
    }
    let mut validator = Validator::new(&src.id, &src.schema, names);
    let mut harmonizer = Harmonizer::new(plan, src);
    // Tables of records and events are counted as the chunks go by: mergeable partials. A
    // protected table is counted through its group's union cube.
    let streamed: Vec<&crate::spec::TableSpec> = counted_tables(plan)
        .into_iter()
        .filter(|t| t.source == src.id && crate::disaggregate::is_streamed(t))
        .collect();
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
    let bar = progress_bar(opts.progress, total_bytes, &src.id);
    let (mut read, mut bad, mut good) = (0u64, 0u64, 0u64);
    let mut by_rule: BTreeMap<Rule, u64> = BTreeMap::new();
    let sizes: Vec<u64> = files.iter().map(|f| f.bytes).collect();
    // Parsing runs on its own thread, one chunk ahead of validation and writing (a bounded
    // channel: at most three chunks in memory), so the two stages share both cores.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<(RawChunk, u64)>>(1);
    std::thread::scope(|scope| -> Result<()> {
        scope.spawn(move || {
            let mut done_bytes = 0;
            for (fi, size) in sizes.iter().enumerate() {
                let mut chunks = match FileChunks::open(src, fi, plan.chunk_rows) {
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
        let validator = &mut validator;
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
            let (v, position) = item?;
            read += v.rows_read;
            bad += v.rows_quarantined;
            for (r, n) in v.by_rule {
                *by_rule.entry(r).or_default() += n;
            }
            quarantined.write(v.quarantine)?;
            let rows = if harmonizer.is_empty() {
                v.accepted
            } else {
                let h = harmonizer.apply(v.accepted)?;
                bad += h.rows_quarantined;
                if h.quarantine.height() > 0 {
                    *by_rule.entry(Rule::UnmappedCode).or_default() += h.quarantine.height() as u64;
                }
                quarantined.write(h.quarantine)?;
                h.accepted
            };
            good += rows.height() as u64;
            for (t, cells) in streamed.iter().zip(partials.iter_mut()) {
                crate::disaggregate::add_chunk(src, t, &rows, cells, cell_key.as_ref())?;
            }
            if let Some(design) = src.design.as_ref().filter(|_| !surveyed.is_empty()) {
                let units = design_partial.add_chunk(design, &rows)?;
                for (t, p) in surveyed.iter().zip(survey_partials.iter_mut()) {
                    p.add_chunk(t, &units, &rows)?;
                }
            }
            accepted.write(rows)?;
            bar.set_position(position);
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    let acc = accepted.finish(staging)?;
    // The design is checked as a whole once every record is in (FPCs, lonely PSUs).
    let mut design_rejections = Vec::new();
    let mut survey_tables = SurveyTables::new();
    if let Some(design) = src.design.as_ref().filter(|_| !surveyed.is_empty()) {
        match design_partial.finish(design, &src.id) {
            Ok(info) => {
                let info = Arc::new(info);
                for (t, p) in surveyed.iter().zip(survey_partials) {
                    survey_tables.insert(t.id.clone(), (Arc::clone(&info), p));
                }
            }
            Err(r) => design_rejections.push(r),
        }
    }
    let qua = quarantined.finish(staging)?;
    if acc.rows != good {
        return Err(Error::Internal(format!(
            "source `{}`: {} accepted rows counted, {} written",
            src.id, good, acc.rows
        )));
    }
    Ok((
        SourceReport {
            id: src.id.clone(),
            files,
            rows_read: read,
            rows_accepted: acc.rows,
            rows_quarantined: bad,
            max_invalid_fraction: src.max_invalid_fraction,
            unmapped_codes: harmonizer.unmapped(),
            quarantine_by_rule: by_rule
                .into_iter()
                .map(|(r, n)| (r.as_str().to_string(), n))
                .collect(),
            seconds: 0.0,
            input_key: String::new(),
            reused: false,
        },
        vec![acc, qua],
        streamed
            .iter()
            .map(|t| t.id.clone())
            .zip(partials)
            .collect(),
        survey_tables,
        design_rejections,
    ))
}

/// `path` relative to `base` even when it is not below it (`../sample_data/x.csv`).
fn relative_to(path: &Path, base: &Path) -> PathBuf {
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

fn progress_bar(show: bool, total: u64, label: &str) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{prefix:>14} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(label.to_string());
    bar
}

/// A short text summary of a manifest, for people (`--report text`).
pub fn summary(m: &Manifest) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "run {} of pipeline {}: {}",
        m.run_id, m.pipeline_id, m.status
    );
    let _ = writeln!(
        s,
        "{:<22} {:>12} {:>12} {:>12}  top rules",
        "source", "read", "accepted", "quarantined"
    );
    for src in &m.sources {
        let mut top: Vec<_> = src.quarantine_by_rule.iter().collect();
        top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let rules = top
            .iter()
            .take(4)
            .map(|(r, n)| format!("{r} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            s,
            "{:<22} {:>12} {:>12} {:>12}  {}",
            src.id, src.rows_read, src.rows_accepted, src.rows_quarantined, rules
        );
    }
    s
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
