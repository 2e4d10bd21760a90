//! Incremental reuse: what a run can take over from the current release unchanged.
//!
//! Input: the plan and the current release's manifest. Output: each source's input key (blake3 of
//! migstat's version, the spec hash and its input files), which files of the release a source
//! produced (read back from their paths by `layout::Release::owner`), and those files linked
//! into the new release.

use super::*;

/// The key of a source's results (see [`SourceReport::input_key`]) and the identity (bytes,
/// blake3) of each of its files, hashed here once: the source pass takes these identities and
/// checks, with the hash it computes while reading, that it read the same bytes.
pub(super) fn input_key(plan: &Plan, src: &SourcePlan) -> Result<(String, Vec<(u64, String)>)> {
    let mut h = blake3::Hasher::new();
    h.update(crate::VERSION.as_bytes());
    h.update(&crate::layout::VERSION.to_le_bytes());
    h.update(plan.spec_hash.as_bytes());
    h.update(src.id.as_bytes());
    let mut identities = Vec::with_capacity(src.files.len());
    for f in &src.files {
        let identity = hash_file(f)?;
        h.update(identity.1.as_bytes());
        identities.push(identity);
    }
    Ok((h.finalize().to_hex().to_string(), identities))
}

/// The source an output file belongs to, from its path in the release.
pub(super) fn output_source<'a>(plan: &'a Plan, path: &str) -> Option<&'a str> {
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
            .find(|x| Release::ledger_name(&x.id) == g)
            .map(|x| x.source.as_str()),
    }
}

/// Put a previous release's file in the staging directory: a hard link (the file is never
/// written again), or a copy where links are not possible.
pub(super) fn reuse_file(from: &Path, to: &Path) -> Result<()> {
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).at(dir)?;
    }
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to).at(to)?;
    }
    Ok(())
}

/// What a run revises (`--revise`, `--period`), checked against the plan before anything runs.
pub(super) struct Revision {
    /// Every protected table (`--revise all`, or `--period` alone).
    all: bool,
    /// The tables named by `--revise`.
    tables: Vec<String>,
}

impl Revision {
    /// The revision the options ask for; a table or period the plan does not publish is a usage
    /// error naming what it does publish.
    pub(super) fn check(plan: &Plan, opts: &RunOptions) -> Result<Revision> {
        for t in &opts.revise {
            if t != "all" && !plan.groups.iter().any(|g| g.members.contains(t)) {
                return Err(Error::Usage(format!(
                    "--revise {}: no published table `{}` (published: {})",
                    crate::spec::cap(t),
                    crate::spec::cap(t),
                    plan.groups
                        .iter()
                        .flat_map(|g| g.members.iter().cloned())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        // `--period` alone revises those periods of every table.
        let revision = Revision {
            all: (opts.revise.is_empty() && !opts.periods.is_empty())
                || opts.revise.iter().any(|r| r == "all"),
            tables: opts.revise.clone(),
        };
        for p in &opts.periods {
            let has = |t: &crate::spec::TableSpec| t.periods.list.iter().any(|x| x.label() == *p);
            let chosen =
                |t: &crate::spec::TableSpec| revision.all || revision.tables.contains(&t.id);
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
        Ok(revision)
    }

    /// Whether the run revises the published periods of group `g`.
    pub(super) fn revises(&self, g: &crate::spec::GroupSpec) -> bool {
        self.all || self.tables.iter().any(|t| g.members.contains(t))
    }
}

/// What a source whose inputs did not change takes over from the current release.
pub(super) struct Reused {
    pub(super) report: SourceReport,
    pub(super) outputs: Vec<OutputFile>,
    pub(super) protection: Vec<crate::protect::Summary>,
    pub(super) periods: BTreeMap<String, TablePeriods>,
}

/// Link the previous release's files of source `src` and of its tables into `staging`, and
/// take over their report, protection summaries and periods.
pub(super) fn reuse_source(
    plan: &Plan,
    src: &SourcePlan,
    prev: &Manifest,
    report: &SourceReport,
    current_dir: &Path,
    staging: &Path,
) -> Result<Reused> {
    let mut outputs = Vec::new();
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
    let protection = prev
        .protection
        .iter()
        .filter(|p| tables.contains(&p.table.as_str()))
        .cloned()
        .collect();
    let periods = tables
        .iter()
        .filter_map(|t| prev.periods.get(*t).map(|p| (t.to_string(), p.clone())))
        .collect();
    let mut report = report.clone();
    report.reused = true;
    tracing::info!(source = %src.id, "inputs unchanged: reused from the current release");
    Ok(Reused {
        report,
        outputs,
        protection,
        periods,
    })
}
