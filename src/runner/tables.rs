//! Tables: each table built from its source's partials or harmonized file, then each group of
//! linked tables protected period by period and written to the restricted and public tiers.
//!
//! Input: the partials of the source pass and the staging directory. Output: the files written,
//! the protection summaries and the records placed outside every period.

use super::reuse::reuse_file;
use super::*;

/// Survey tables' partials with their source's finished design.
pub(super) type SurveyTables =
    BTreeMap<String, (Arc<crate::survey::DesignInfo>, crate::survey::Partial)>;

/// A table's aggregate gathered during its source's pass, if any.
pub(super) enum Partial {
    None,
    Cells(PeriodCells),
    Survey(Arc<crate::survey::DesignInfo>, Box<crate::survey::Partial>),
}

/// Build a table from its source's harmonized records in `staging` and write it with its true
/// values to the restricted tier, one Hive partition per reference period; returns the files,
/// the tables (one per period) and the records left out of every period.
pub(super) fn build_table(
    cx: &TablesContext<'_>,
    table: &crate::spec::TableSpec,
    inputs: String,
    partial: Partial,
    persons: &PersonSplits,
) -> Result<(
    Vec<OutputFile>,
    Vec<crate::disaggregate::CountTable>,
    Outside,
)> {
    let (plan, staging) = (cx.plan, cx.staging);
    let source = source_of(plan, table)?;
    let key = cx.secret.map(|s| s.derive("cell key"));
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
        Partial::None => {
            let accepted =
                accepted_of(plan, source, staging).sharing(persons.get(&source.id).cloned());
            let cells = cx.engine.cells(source, table, &accepted, key.as_ref())?;
            (
                crate::disaggregate::finish_all(table, &cells)?,
                cells.outside,
            )
        }
    };
    let mut files = Vec::new();
    for t in &tables {
        files.push(write_restricted_table(plan, table, staging, inputs.clone(), t)?.0);
    }
    Ok((files, tables, outside))
}

/// A source's accepted records in `staging`, with the types its pass gave them.
pub(super) fn accepted_of(
    plan: &Plan,
    source: &SourcePlan,
    staging: &Path,
) -> crate::engine::Accepted {
    crate::engine::Accepted::in_release(plan, source, staging)
}

pub(super) fn source_of<'a>(
    plan: &'a Plan,
    table: &crate::spec::TableSpec,
) -> Result<&'a SourcePlan> {
    plan.sources
        .iter()
        .find(|s| s.id == table.source)
        .ok_or_else(|| Error::Internal(format!("table {} names an unknown source", table.id)))
}

/// Write a table's true values to `restricted/tables/<id>/<period partition>/data.parquet`.
pub(super) fn write_restricted_table(
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
    let frame = crate::export::with_period(t.frame.clone(), &t.period)?;
    let mut sink = ParquetSink::create(&path, frame.schema(), &metadata)?;
    sink.write(frame)?;
    Ok((sink.finish(staging)?, metadata))
}

/// The tables the source pass counts: every table outside a protected count group, and each
/// group's union cube (survey groups count their respondents that way).
pub(super) fn counted_tables(plan: &Plan) -> Vec<&crate::spec::TableSpec> {
    plan.tables
        .iter()
        .filter(|t| !in_count_group(plan, &t.id))
        .chain(plan.groups.iter().map(|g| &g.union))
        .collect()
}

/// Whether a table is counted through a protected count group's union cube.
pub(super) fn in_count_group(plan: &Plan, id: &str) -> bool {
    plan.groups
        .iter()
        .any(|g| !g.survey && g.members.iter().any(|m| m == id))
}

/// What protecting a group needs from the run.
pub(super) struct GroupContext<'a> {
    pub(super) plan: &'a Plan,
    pub(super) staging: &'a Path,
    /// The current release (earlier publications are read from it).
    pub(super) current: &'a Path,
    pub(super) published: Option<&'a Manifest>,
    pub(super) secret: Option<&'a crate::protect::Secret>,
    /// Revise the group's periods already published.
    pub(super) revise: bool,
    /// Only these periods (all when empty).
    pub(super) revise_periods: &'a [String],
    pub(super) inputs: String,
    pub(super) engine: &'a dyn crate::engine::Engine,
    pub(super) persons: &'a PersonSplits,
}

/// Per source, the split into buckets of persons its tables of persons share in this run.
pub(super) type PersonSplits = BTreeMap<String, Arc<crate::disaggregate::SharedPersonSplit>>;

/// The splits of persons shared by the tables `built` (those a run builds from their
/// sources' accepted records after the pass: tables and the unions of protected groups).
fn person_splits(
    plan: &Plan,
    built: &[&crate::spec::TableSpec],
    secret: Option<&crate::protect::Secret>,
) -> PersonSplits {
    let key = secret.map(|s| s.derive("cell key"));
    plan.sources
        .iter()
        .filter_map(|source| {
            crate::disaggregate::SharedPersonSplit::for_tables(source, built, key.as_ref())
                .map(|s| (source.id.clone(), Arc::new(s)))
        })
        .collect()
}

/// What a protected group left in the release.
pub(super) struct GroupDone {
    pub(super) outputs: Vec<OutputFile>,
    pub(super) summaries: Vec<crate::protect::Summary>,
    /// The records left out of every period.
    pub(super) outside: Outside,
}

/// Count a group's union cube, write its members' true tables, and publish each period: again
/// as it was when it is frozen, else protected (a revision when it was published before).
pub(super) fn protect_group(
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
            let accepted = accepted_of(plan, source, ctx.staging)
                .sharing(ctx.persons.get(&source.id).cloned());
            ctx.engine
                .cells(source, &group.union, &accepted, key.as_ref())?
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
    let periods = &group.union.periods.list;
    let each: Vec<Result<GroupDone>> = if group.survey {
        // A survey group hands each member's frame to its period (taken from the map).
        periods
            .iter()
            .enumerate()
            .map(|(i, period)| {
                let finest = cells.by_period.get(&i).unwrap_or(&empty);
                protect_period(ctx, group, period, finest, &series, survey_frames)
            })
            .collect()
    } else {
        // Periods are independent problems (each its own cells, ledger and files; what they
        // share, the series, is computed above): protected side by side, collected in period
        // order, so the release is the same whatever the thread count.
        crate::parallel::map(periods.iter().enumerate().collect(), |(i, period)| {
            let finest = cells.by_period.get(&i).unwrap_or(&empty);
            protect_period(ctx, group, period, finest, &series, &mut BTreeMap::new())
        })
    };
    for d in each {
        let d = d?;
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

pub(super) type Metadata = Vec<(String, String)>;

/// What the table stage reads of the run so far.
pub(super) struct TablesContext<'a> {
    pub(super) plan: &'a Plan,
    pub(super) staging: &'a Path,
    /// The current release (its ledgers: what was published before).
    pub(super) current: &'a Path,
    pub(super) published: Option<&'a Manifest>,
    pub(super) secret: Option<&'a crate::protect::Secret>,
    pub(super) revision: &'a super::reuse::Revision,
    pub(super) revise_periods: &'a [String],
    /// The source pass's reports (reused sources' tables are already in the release).
    pub(super) sources: &'a [SourceReport],
    pub(super) progress: Option<&'a std::sync::Arc<dyn super::Progress>>,
    /// Where the aggregates not counted during the source pass are computed.
    pub(super) engine: &'a dyn crate::engine::Engine,
}

/// What the table stage wrote and found.
#[derive(Default)]
pub(super) struct TablesDone {
    pub(super) outputs: Vec<OutputFile>,
    pub(super) periods: BTreeMap<String, TablePeriods>,
    pub(super) seconds: BTreeMap<String, f64>,
    pub(super) protection: Vec<crate::protect::Summary>,
    pub(super) rejections: Vec<Rejection>,
}

/// Build every table of the sources that were not reused: tables outside any protected group
/// (restricted only), survey estimates, then each group of linked tables protected and
/// published period by period.
pub(super) fn run_tables(
    cx: &TablesContext<'_>,
    mut partial_tables: BTreeMap<String, PeriodCells>,
    mut survey_tables: SurveyTables,
) -> Result<TablesDone> {
    let TablesContext {
        plan,
        staging,
        current,
        published,
        secret,
        revision,
        revise_periods,
        sources,
        progress,
        engine,
    } = *cx;
    let mut done = TablesDone::default();
    let TablesDone {
        outputs,
        periods: placement,
        seconds,
        protection,
        rejections,
    } = &mut done;
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
    let todo: Vec<&crate::spec::TableSpec> = plan
        .tables
        .iter()
        .filter(|t| !reused(&t.source) && !in_count_group(plan, &t.id))
        .collect();
    // The tables and group unions built from the accepted records (not counted in the pass).
    let built: Vec<&crate::spec::TableSpec> = todo
        .iter()
        .copied()
        .chain(
            plan.groups
                .iter()
                .filter(|g| !reused(&g.source))
                .map(|g| &g.union),
        )
        .filter(|t| !partial_tables.contains_key(&t.id) && !survey_tables.contains_key(&t.id))
        .collect();
    let persons = person_splits(plan, &built, secret);
    // Each table outside a group with what was counted of it in the pass.
    let todo: Vec<(&crate::spec::TableSpec, Partial)> = todo
        .into_iter()
        .map(|table| {
            let partial = match survey_tables.remove(&table.id) {
                Some((info, p)) => Partial::Survey(info, Box::new(p)),
                None => partial_tables
                    .remove(&table.id)
                    .map_or(Partial::None, Partial::Cells),
            };
            (table, partial)
        })
        .collect();
    let groups: Vec<&crate::spec::GroupSpec> =
        plan.groups.iter().filter(|g| !reused(&g.source)).collect();
    let group_bar = super::stage(progress, "protection", groups.len() as u64);
    let finished = std::sync::atomic::AtomicU64::new(0);
    // One group: (what it left, or why not; its seconds).
    let run_group = |group: &crate::spec::GroupSpec,
                     union: Option<PeriodCells>,
                     frames: &mut BTreeMap<String, polars::prelude::DataFrame>|
     -> (Result<GroupDone>, f64) {
        let t0 = Instant::now();
        let ctx = GroupContext {
            plan,
            staging,
            current,
            published,
            secret,
            revise: revision.revises(group),
            revise_periods,
            inputs: inputs_of(&group.source),
            engine,
            persons: &persons,
        };
        let r = crate::interrupt::check().and_then(|()| protect_group(&ctx, group, union, frames));
        let step = finished.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        group_bar.set_position(step);
        let took = (t0.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
        tracing::info!(group = %group.id, seconds = took, "tables protected");
        (r, took)
    };
    let jobs: Vec<(usize, &crate::spec::GroupSpec, Option<PeriodCells>)> = groups
        .iter()
        .enumerate()
        .map(|(i, g)| (i, *g, partial_tables.remove(&g.union.id)))
        .collect();
    let (survey_jobs, count_jobs): (Vec<_>, Vec<_>) = jobs.into_iter().partition(|j| j.1.survey);
    // Two lanes side by side: the tables outside any group then the survey groups (which take
    // those tables' estimates, one group after the other); and the count groups (independent
    // problems: their own cells, ledgers and files), side by side. Everything is merged in the
    // plan's order below, so the release is the same whatever the thread count.
    enum Lane<'p> {
        Tables(
            Vec<(&'p crate::spec::TableSpec, Partial)>,
            Vec<(usize, &'p crate::spec::GroupSpec, Option<PeriodCells>)>,
        ),
        Counts(Vec<(usize, &'p crate::spec::GroupSpec, Option<PeriodCells>)>),
    }
    /// A table outside the groups, built: its outputs, periods and seconds.
    type Built = (String, Vec<OutputFile>, TablePeriods, f64);
    enum LaneDone {
        Tables(Result<Vec<Built>>, Vec<(usize, (Result<GroupDone>, f64))>),
        Counts(Vec<(usize, (Result<GroupDone>, f64))>),
    }
    let lanes = crate::parallel::map(
        vec![Lane::Tables(todo, survey_jobs), Lane::Counts(count_jobs)],
        |lane| match lane {
            Lane::Tables(todo, survey_jobs) => {
                let mut survey_frames: BTreeMap<String, polars::prelude::DataFrame> =
                    BTreeMap::new();
                let bar = super::stage(progress, "tables", todo.len() as u64);
                let mut built = Vec::new();
                for (step, (table, partial)) in todo.into_iter().enumerate() {
                    bar.set_position(step as u64);
                    if let Err(e) = crate::interrupt::check() {
                        return LaneDone::Tables(Err(e), Vec::new());
                    }
                    let t0 = Instant::now();
                    match build_table(cx, table, inputs_of(&table.source), partial, &persons) {
                        Ok((files, tables, outside)) => {
                            if table.kind.is_survey()
                                && let Some(t) = tables.into_iter().next()
                            {
                                survey_frames.insert(table.id.clone(), t.frame);
                            }
                            let took = (t0.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
                            built.push((
                                table.id.clone(),
                                files,
                                table_periods(plan, table, outside),
                                took,
                            ));
                        }
                        Err(e) => return LaneDone::Tables(Err(e), Vec::new()),
                    }
                }
                bar.finish();
                // Survey groups take their members' estimates from `survey_frames`.
                let surveyed = survey_jobs
                    .into_iter()
                    .map(|(i, g, union)| (i, run_group(g, union, &mut survey_frames)))
                    .collect();
                LaneDone::Tables(Ok(built), surveyed)
            }
            Lane::Counts(jobs) => LaneDone::Counts(crate::parallel::map(jobs, |(i, g, union)| {
                (i, run_group(g, union, &mut BTreeMap::new()))
            })),
        },
    );
    let mut results: Vec<Option<(Result<GroupDone>, f64)>> = groups.iter().map(|_| None).collect();
    for lane in lanes {
        let done = match lane {
            LaneDone::Tables(built, surveyed) => {
                for (id, files, periods, took) in built? {
                    outputs.extend(files);
                    placement.insert(id.clone(), periods);
                    seconds.insert(format!("table:{id}"), took);
                }
                surveyed
            }
            LaneDone::Counts(counted) => counted,
        };
        for (i, r) in done {
            results[i] = Some(r);
        }
    }
    let groups: Vec<&crate::spec::GroupSpec> =
        plan.groups.iter().filter(|g| !reused(&g.source)).collect();
    for (group, result) in groups.into_iter().zip(results) {
        let Some((result, took)) = result else {
            continue;
        };
        match result {
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
                        rejections.push(Rejection::new(
                            group.source.as_str(),
                            format!(
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
                        ));
                    }
                    protection.push(summary);
                }
            }
            Err(Error::Rejected(r)) => rejections.extend(r),
            Err(e) => return Err(e),
        }
        seconds.insert(format!("group:{}", group.id), took);
    }
    group_bar.finish();
    Ok(done)
}
