//! Statistical disclosure control: what may leave the restricted tier.
//!
//! Input: a group of linked tables ([`GroupSpec`]: the published tables that count the same
//! records), the finest cells of their union cube (true counts, and the sums of the records'
//! cell keys), survey estimates for a survey group, the protection key, and the earlier
//! publications of the same period (the [`ledger`]). Output: one [`ProtectedTable`] per member —
//! the only thing the public writer accepts — and the group's new ledger entry.
//!
//! **The intruder** (README "Disclosure control") holds every public file of every release,
//! knows the methods and their parameters (not the key), that every finest cell is a
//! non-negative integer, which codes occur, and combines all tables of a release. What must
//! hold: no cell with 0 < n < threshold can be recomputed, or narrowed to an interval shorter
//! than the protection range, from one release or from several together.
//!
//! - **`suppress`** (count groups) and **survey groups** (respondent counts below the design's
//!   `min_n`): the group's cells are one [`Problem`]; secondary suppression by Gaussian
//!   elimination with the audit and its repair ([`suppress`]). Every cell of the frame is
//!   published (zeros included), so the presence of a row says nothing; a suppressed cell reads
//!   `OBS_STATUS` `Q`, `CONF_STATUS` `C` (primary and secondary look alike: telling them apart
//!   would tell the intruder which cells are small).
//! - **`round`, `random_round`, `cell_key`**: the finest cells are perturbed, every published
//!   cell is the sum of its perturbed finest cells ([`noise`]), so tables are additive and agree.
//! - **Revisions** ([`ledger`]): a period already published is published again unchanged
//!   (`freeze`) until a revision, which keeps earlier suppressions and protects small changes.
//!
//! Survey estimates are additionally withheld for quality (CV above `cv_suppress`): `OBS_STATUS`
//! `U`, `CONF_STATUS` `F`, value empty — not confidential, so not protected further.

mod audit;
mod cellkey;
mod elim;
mod hypercube;
pub mod ledger;
mod lp;
mod noise;
mod problem;
mod release;
mod secret;
mod suppress;

use std::collections::{BTreeMap, BTreeSet};

use polars::prelude::*;

pub use crate::spec::KeySource;
pub use crate::spec::{PTable, Secondary};
pub use audit::{Auditor, Interval, Proof};
pub use cellkey::{cell_key, record_key};
pub use elim::Scratch;
pub use hypercube::Grid;
pub use ledger::{Ledger, Vintage};
pub use noise::{Noise, round};
pub use problem::{Problem, TOTAL_ID, codes_in_several_periods};
pub use release::{Depth, TableCheck, audit_release};
pub use secret::{Secret, create_key_file, new_key_text};
pub use suppress::{
    GAUSS_WORK, Pattern, Rule, Settings, protect as suppress_problem, publication_order,
};

/// Failures a table's summary (the manifest) lists by name; the rest are counted.
pub const MAX_LISTED_FAILURES: usize = 100;

pub use crate::spec::DEFAULT_PROTECTION_RANGE;

use crate::disaggregate::Cells;
use crate::error::{Error, PolarsContext, Result};
pub use crate::manifest::{Method, PublicProtection, Summary};
use crate::spec::{GroupSpec, Plan, ProtectMethod, TableSpec};
use crate::vocab::{TOTAL, column};

/// Confidentiality status of a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Conf {
    /// Free for publication.
    Free,
    /// Needs protection: too few contributors (or too small a change since an earlier
    /// publication).
    Primary,
    /// Suppressed to protect another cell (or because an earlier publication suppressed it).
    Secondary,
}

impl Conf {
    /// The restricted tier's code (SDMX CONF_STATUS): `F`, `A` primary, `D` secondary.
    pub fn code(self) -> &'static str {
        match self {
            Conf::Free => "F",
            Conf::Primary => "A",
            Conf::Secondary => "D",
        }
    }

    /// The public tier's code: `F`, or `C` for any suppressed cell.
    pub fn public_code(self) -> &'static str {
        match self {
            Conf::Free => "F",
            Conf::Primary | Conf::Secondary => "C",
        }
    }

    pub fn from_code(c: &str) -> Option<Self> {
        match c {
            "F" => Some(Conf::Free),
            "A" => Some(Conf::Primary),
            "D" => Some(Conf::Secondary),
            _ => None,
        }
    }
}

/// Survey columns that may be published, in order (an allow-list: a new column of the estimate
/// frame stays restricted until it is added here).
pub const SURVEY_PUBLIC: &[&str] = &[
    "estimate",
    "se",
    "ci_low",
    "ci_high",
    "ci_low_t",
    "ci_high_t",
    "cv",
    "deff",
    "df",
];

/// A member table ready for the public tier. Its fields are private: only this module builds
/// one, from a protected group, and only `export::public` writes one.
pub struct ProtectedTable {
    table: String,
    period: crate::spec::period::RefPeriod,
    public: DataFrame,
    audit: DataFrame,
    summary: Summary,
}

impl ProtectedTable {
    pub fn table(&self) -> &str {
        &self.table
    }
    /// The reference period the table is of.
    pub fn period(&self) -> &crate::spec::period::RefPeriod {
        &self.period
    }
    /// The public frame (read-only).
    pub fn public(&self) -> &DataFrame {
        &self.public
    }
    /// The restricted audit frame: true values, rules, intervals.
    pub fn audit(&self) -> &DataFrame {
        &self.audit
    }
    pub fn summary(&self) -> &Summary {
        &self.summary
    }
    /// What the public file's metadata may say of its protection.
    pub fn public_protection(&self) -> PublicProtection {
        PublicProtection::from(&self.summary)
    }
}

/// Everything a group's protection needs.
pub struct GroupInput<'a> {
    pub group: &'a GroupSpec,
    /// The union cube's finest cells (codes over `group.union.dimensions`).
    pub finest: &'a Cells,
    /// Survey groups: each member's estimate frame.
    pub surveys: BTreeMap<String, DataFrame>,
    pub secret: Option<&'a Secret>,
    /// Earlier publications of this period (a revision), if any.
    pub previous: Option<&'a Ledger>,
    /// The reference period (each period of a group is protected on its own: no cell adds
    /// over periods).
    pub period: crate::spec::period::RefPeriod,
    /// The series' frame: the finest cells of every period (each period publishes them all,
    /// zeros included, so the rows of a series are the same every period).
    pub series_frame: &'a [Vec<String>],
    /// Per union dimension, the codes that occur in more than one period of the series (no
    /// floor of 1 in any one period: see `Problem::without_floor`).
    pub shared_codes: &'a [std::collections::BTreeSet<String>],
    /// The period is not closed yet: published values carry OBS_STATUS `P`.
    pub provisional: bool,
}

/// A protected group: its members and the new ledger entry.
pub struct GroupOutcome {
    pub tables: Vec<ProtectedTable>,
    pub ledger: Ledger,
}

/// Per member: its spec and its margin combinations over the union dimensions.
fn member_masks(group: &GroupSpec, t: &TableSpec) -> Vec<u32> {
    if matches!(t.kind, crate::spec::TableKind::SurveyContrast { .. }) {
        // A contrast adds no cell of its own: it combines cells of the table it contrasts.
        return Vec::new();
    }
    let union = &group.union.dimensions;
    let kept_sets: Vec<Vec<String>> = match &t.grouping_sets {
        Some(sets) => sets.clone(),
        None => {
            let d = t.dimensions.len();
            (0..(1u32 << d))
                .map(|m| {
                    (0..d)
                        .filter(|j| m & (1 << j) == 0)
                        .map(|j| t.dimensions[j].clone())
                        .collect()
                })
                .collect()
        }
    };
    kept_sets
        .iter()
        .map(|kept| {
            union
                .iter()
                .enumerate()
                .filter(|(_, d)| !kept.contains(d))
                .fold(0u32, |m, (j, _)| m | (1 << j))
        })
        .collect()
}

fn mask_of(cell: &[u32]) -> u32 {
    cell.iter()
        .enumerate()
        .filter(|(_, c)| **c == TOTAL_ID)
        .fold(0u32, |m, (j, _)| m | (1 << j))
}

/// Protect a group of linked tables.
pub fn protect_group(plan: &Plan, input: GroupInput<'_>) -> Result<GroupOutcome> {
    let group = input.group;
    let members: Vec<&TableSpec> = group
        .members
        .iter()
        .map(|id| {
            plan.tables
                .iter()
                .find(|t| &t.id == id)
                .ok_or_else(|| Error::Internal(format!("group {}: no table {id}", group.id)))
        })
        .collect::<Result<_>>()?;
    let union = &group.union;
    let hierarchies: Vec<(usize, usize)> = union
        .hierarchies
        .iter()
        .filter_map(|(c, p)| {
            let pos = |x: &str| union.dimensions.iter().position(|d| d == x);
            Some((pos(c)?, pos(p)?))
        })
        .collect();
    let masks: Vec<Vec<u32>> = members.iter().map(|t| member_masks(group, t)).collect();
    let all_masks: Vec<u32> = {
        let mut m: Vec<u32> = masks.iter().flatten().copied().collect();
        m.sort_unstable();
        m.dedup();
        m
    };
    // The finest cells by reference (cloning every key per period was a tenth of the sample's
    // protection time).
    let finest: Vec<(&[String], u64)> = input
        .finest
        .iter()
        .map(|(k, t)| (k.as_slice(), t.n))
        .collect();
    // A declared hierarchy the data break rejects the group before anything is computed.
    let keys: Vec<&[String]> = finest.iter().map(|(k, _)| *k).collect();
    let nesting = check_hierarchies(union, &keys);
    if !nesting.is_empty() {
        return Err(Error::Rejected(vec![crate::error::Rejection::new(
            group.source.as_str(),
            format!(
                "table `{}`: {}",
                group.members.join("`, `"),
                nesting.join("; ")
            ),
        )]));
    }
    let latest = input.previous.and_then(|l| l.vintages.last());
    let frame_extra: Vec<&[String]> = latest
        .into_iter()
        .flat_map(|v| v.rows.keys())
        .chain(input.series_frame.iter())
        .map(Vec::as_slice)
        .collect();
    let p = Problem::of_cells(
        union.dimensions.clone(),
        &finest,
        &hierarchies,
        &frame_extra,
        &all_masks,
    )?
    .without_floor(input.shared_codes);
    let row_names: Vec<Vec<String>> = p
        .rows
        .iter()
        .map(|r| {
            r.iter()
                .enumerate()
                .map(|(j, c)| p.codes[j][*c as usize].clone())
                .collect()
        })
        .collect();
    let cell_names: Vec<Vec<String>> = (0..p.cells.len()).map(|c| p.names(c)).collect();
    let vintage = input.previous.map_or(1, |l| l.next_vintage());

    // What each cell publishes, its status, rule and interval.
    let method = if group.survey {
        None
    } else {
        union.protect.as_ref().map(|x| x.method)
    };
    let mut published: Vec<Option<u64>> = vec![None; p.cells.len()];
    let mut row_published: Vec<Option<u64>> = vec![None; p.rows.len()];
    let mut status = vec![Conf::Free; p.cells.len()];
    let mut rule = vec![Rule::None; p.cells.len()];
    let mut intervals: BTreeMap<usize, Interval> = BTreeMap::new();
    let mut failures: Vec<String> = Vec::new();
    let mut repaired = 0;
    let mut secondary_used = None;
    let threshold;
    let range;
    let mut base = None;
    let method_name;
    let additive;
    match method {
        None | Some(ProtectMethod::Suppress) => {
            let (settings, extra_primary) = if group.survey {
                let design = plan
                    .sources
                    .iter()
                    .find(|s| s.id == group.source)
                    .and_then(|s| s.design.as_ref())
                    .ok_or_else(|| {
                        Error::Internal(format!("survey group {}: no design", group.id))
                    })?;
                // A member whose own count of respondents (a mean leaves out missing values)
                // is below min_n in a cell where the union's is not: that cell too.
                let mut extra = BTreeSet::new();
                for t in &members {
                    if matches!(t.kind, crate::spec::TableKind::SurveyContrast { .. }) {
                        continue; // its n is its terms' (already counted by its base table)
                    }
                    let Some(frame) = input.surveys.get(&t.id) else {
                        continue;
                    };
                    for (key, n) in survey_counts(frame, t)? {
                        if n > 0
                            && n < design.min_n
                            && let Some(c) = p.find(&to_union(&key, t, union))
                        {
                            extra.insert(c);
                        }
                    }
                }
                (
                    Settings {
                        threshold: design.min_n,
                        range: DEFAULT_PROTECTION_RANGE,
                        keep_grand_total: false,
                        secondary: Secondary::Gauss,
                        gauss_work: suppress::GAUSS_WORK,
                    },
                    extra,
                )
            } else {
                let pr = union
                    .protect
                    .as_ref()
                    .ok_or_else(|| Error::Internal(format!("group {}: no protection", group.id)))?;
                (
                    Settings {
                        threshold: pr.threshold,
                        range: pr.protection_range,
                        keep_grand_total: pr.publish_grand_total,
                        secondary: pr.secondary,
                        gauss_work: suppress::GAUSS_WORK,
                    },
                    BTreeSet::new(),
                )
            };
            threshold = settings.threshold;
            range = settings.range;
            let (mut change, sticky) = revision_cells(&p, &cell_names, input.previous, threshold);
            change.extend(extra_primary.iter().copied());
            change.sort_unstable();
            change.dedup();
            let pattern = suppress::protect(&p, &settings, &change, &sticky);
            status = pattern.status;
            rule = pattern.rule;
            for c in &extra_primary {
                rule[*c] = Rule::Threshold;
            }
            intervals = pattern.intervals;
            failures = pattern.failures.into_iter().map(|(_, why)| why).collect();
            repaired = pattern.repaired;
            secondary_used = Some(pattern.secondary);
            for c in 0..p.cells.len() {
                if status[c] == Conf::Free {
                    published[c] = Some(p.values[c]);
                }
            }
            row_published.iter_mut().for_each(|r| *r = None);
            method_name = if group.survey {
                Method::SurveyQuality
            } else {
                Method::Suppress
            };
            additive = !group.survey;
        }
        Some(m) => {
            let pr = union
                .protect
                .as_ref()
                .ok_or_else(|| Error::Internal(format!("group {}: no protection", group.id)))?;
            threshold = pr.threshold;
            range = pr.protection_range;
            let noise = match m {
                ProtectMethod::Round => Noise::Round { base: pr.base },
                ProtectMethod::RandomRound => Noise::RandomRound { base: pr.base },
                ProtectMethod::CellKey => Noise::CellKey {
                    ptable: match &pr.ptable {
                        Some(path) => PTable::read(path)?,
                        None => PTable::default(),
                    },
                },
                ProtectMethod::Suppress => unreachable_method()?,
            };
            if matches!(m, ProtectMethod::Round | ProtectMethod::RandomRound) {
                base = Some(pr.base);
            }
            if matches!(m, ProtectMethod::RandomRound | ProtectMethod::CellKey)
                && input.secret.is_none()
            {
                return Err(Error::Usage(format!(
                    "tables {} are protected by {}, which needs the protection key: set ${} or name a key file under [protection] key_file",
                    group.members.join(", "),
                    m.name(),
                    plan.protection_key.env
                )));
            }
            let keys: Vec<u32> = row_names
                .iter()
                .map(|k| input.finest.get(k).map_or(0, |t| t.key))
                .collect();
            let scope = format!("{}|{}", group.id, input.period.key());
            let mut rows = noise::perturb_rows(&p, &noise, &keys, input.secret, &scope);
            // A revision keeps a finest cell's earlier published count unless its true count
            // moved by at least the threshold since (a smaller change would show).
            if let Some(prev) = latest {
                for (r, name) in row_names.iter().enumerate() {
                    if let Some((t0, Some(v0))) = prev.rows.get(name) {
                        let now = p.row_values[r];
                        if now.abs_diff(*t0) < threshold {
                            rows[r] = *v0;
                        }
                    }
                }
            }
            let cells = noise::sums(&p, &rows);
            let bounds = noise::intervals(&p, &noise, &rows);
            for c in 0..p.cells.len() {
                published[c] = Some(cells[c]);
                let v = p.values[c];
                if v > 0 && v < threshold {
                    let (mut lo, hi) = bounds[c];
                    // A one-way margin of a code that occurs is at least 1.
                    lo = lo.max(p.floor(c));
                    let i = Interval {
                        lo: lo as f64,
                        hi: hi as f64,
                        proof: Proof::Direction,
                    };
                    if i.width() < range - 1e-9 {
                        failures.push(format!(
                            "cell {} (value {v}) is published as {} and can only be {lo} to {hi}, narrower than the protection range {range}: choose a perturbation table that never maps a count to a single value",
                            cell_names[c].join("|"),
                            cells[c]
                        ));
                    }
                    intervals.insert(c, i);
                }
            }
            for (r, v) in rows.iter().enumerate() {
                row_published[r] = Some(*v);
            }
            method_name = Method::from(m);
            additive = true;
        }
    }

    // The members.
    let mut tables = Vec::new();
    for (t, tm) in members.iter().zip(&masks) {
        // The member's cells by their codes (each projected once), the first union cell of
        // each code combination kept.
        let at = positions(union, t);
        let mut keyed: Vec<(Vec<&str>, usize)> = (0..p.cells.len())
            .filter(|c| tm.contains(&mask_of(&p.cells[*c])))
            .map(|c| (project(&cell_names[c], &at), c))
            .collect();
        keyed.sort_unstable();
        keyed.dedup_by(|a, b| a.0 == b.0);
        let (keys, cells): (Vec<Vec<&str>>, Vec<usize>) = keyed.into_iter().unzip();
        // The manifest names the first failures and counts the rest (a table can fail on
        // thousands of cells; the restricted audit table has every cell's interval).
        let mut member_failures: Vec<String> =
            failures.iter().take(MAX_LISTED_FAILURES).cloned().collect();
        if failures.len() > MAX_LISTED_FAILURES {
            member_failures.push(format!(
                "… and {} more (truncated; every cell's interval is in the restricted audit table)",
                failures.len() - MAX_LISTED_FAILURES
            ));
        }
        let mut summary = Summary {
            table: t.id.clone(),
            ref_period: input.period.label(),
            group: group.id.clone(),
            members: group.members.clone(),
            method: method_name,
            cells: cells.len() as u64,
            primary: cells
                .iter()
                .filter(|c| status[**c] == Conf::Primary)
                .count() as u64,
            secondary: cells
                .iter()
                .filter(|c| status[**c] == Conf::Secondary)
                .count() as u64,
            audited: cells.iter().filter(|c| intervals.contains_key(c)).count() as u64,
            proved_by_lp: cells
                .iter()
                .filter(|c| intervals.get(c).is_some_and(|i| i.proof == Proof::Lp))
                .count() as u64,
            narrowest_interval: cells
                .iter()
                .filter_map(|c| intervals.get(c).map(Interval::width))
                .min_by(f64::total_cmp),
            audit_passed: member_failures.is_empty(),
            failures: member_failures,
            dimensions: t.dimensions.clone(),
            contrast: match &t.kind {
                crate::spec::TableKind::SurveyContrast { across, terms, .. } => Some((
                    across.clone(),
                    terms.iter().map(|(c, _)| c.clone()).collect(),
                )),
                _ => None,
            },
            threshold: Some(threshold),
            protection_range: Some(range),
            publish_grand_total: union
                .protect
                .as_ref()
                .is_some_and(|x| x.publish_grand_total),
            base,
            additive,
            vintage,
            frozen: false,
            pending_changes: 0,
            repaired: repaired as u64,
            provisional: input.provisional,
            revised_cells: latest.map_or(0, |v| {
                cells
                    .iter()
                    .filter(|c| {
                        v.cells
                            .get(&cell_names[**c])
                            .is_none_or(|(_, before, _, _)| *before != published[**c])
                    })
                    .count() as u64
            }),
            secondary_method: secondary_used.map(|m| {
                let asked = union
                    .protect
                    .as_ref()
                    .map_or(Secondary::Gauss, |x| x.secondary);
                match (asked, m) {
                    (Secondary::Gauss, Secondary::Hypercube) => {
                        "hypercube (the Gaussian elimination reached its work limit)".to_string()
                    }
                    (_, Secondary::Gauss) => "gauss".to_string(),
                    (_, Secondary::Hypercube) => "hypercube".to_string(),
                }
            }),
        };
        let (public, audit) = if group.survey {
            let frame = input
                .surveys
                .get(&t.id)
                .ok_or_else(|| Error::Internal(format!("survey table {}: no estimates", t.id)))?;
            survey_frames(
                plan,
                t,
                union,
                frame,
                &p,
                &status,
                &rule,
                &intervals,
                &mut summary,
            )?
        } else {
            count_frames(
                &input.period,
                input.provisional,
                t,
                &cells,
                &keys,
                &p,
                &published,
                &status,
                &rule,
                &intervals,
            )?
        };
        tables.push(ProtectedTable {
            table: t.id.clone(),
            period: input.period,
            public,
            audit,
            summary,
        });
    }

    // The ledger: this vintage after the earlier ones.
    let mut ledger = input.previous.cloned().unwrap_or_default();
    ledger.definition = ledger::definition(group);
    let mut v = Vintage {
        number: vintage,
        ..Default::default()
    };
    // The names move into the ledger (collected: sorted once, not inserted one by one).
    v.cells = cell_names
        .into_iter()
        .enumerate()
        .filter(|(c, _)| p.visible[*c])
        .map(|(c, name)| (name, (p.values[c], published[c], status[c], rule[c])))
        .collect();
    v.rows = row_names
        .into_iter()
        .enumerate()
        .map(|(r, name)| (name, (p.row_values[r], row_published[r])))
        .collect();
    ledger.vintages.push(v);
    Ok(GroupOutcome { tables, ledger })
}

fn unreachable_method() -> Result<Noise> {
    Err(Error::Internal("suppression is not a noise".into()))
}

/// Cells suppressed in an earlier publication of the period (they stay suppressed), and cells
/// published then whose true value moved by less than the threshold since (protected now like
/// small cells: publishing them would publish the change).
fn revision_cells(
    p: &Problem,
    names: &[Vec<String>],
    previous: Option<&Ledger>,
    k: u64,
) -> (Vec<usize>, Vec<usize>) {
    let (mut change, mut sticky) = (BTreeSet::new(), BTreeSet::new());
    let Some(prev) = previous else {
        return (Vec::new(), Vec::new());
    };
    for v in &prev.vintages {
        for (c, name) in names.iter().enumerate() {
            if !p.visible[c] {
                continue;
            }
            match v.cells.get(name) {
                Some((t0, published, _, _)) => {
                    let now = p.values[c];
                    if published.is_none() {
                        sticky.insert(c);
                    } else {
                        let delta = now.abs_diff(*t0);
                        if delta > 0 && delta < k {
                            change.insert(c);
                        }
                    }
                }
                // A cell the earlier publication did not have (a new code): its whole value
                // is the change.
                None => {
                    let now = p.values[c];
                    if now > 0 && now < k {
                        change.insert(c);
                    }
                }
            }
        }
    }
    (change.into_iter().collect(), sticky.into_iter().collect())
}

/// A member cell's codes (member dimensions) as the union cube's (other dimensions `_T`).
fn to_union(key: &[String], t: &TableSpec, union: &TableSpec) -> Vec<String> {
    union
        .dimensions
        .iter()
        .map(|d| match t.dimensions.iter().position(|x| x == d) {
            Some(i) => key[i].clone(),
            None => TOTAL.to_string(),
        })
        .collect()
}

/// A union cell's codes on a member's dimensions.
/// `at`: per member dimension, its position among the union's (see [`positions`]).
fn project<'k>(key: &'k [String], at: &[Option<usize>]) -> Vec<&'k str> {
    at.iter()
        .map(|i| i.map_or(TOTAL, |i| key[i].as_str()))
        .collect()
}

/// Per dimension of `t`, its position among the union's dimensions.
fn positions(union: &TableSpec, t: &TableSpec) -> Vec<Option<usize>> {
    t.dimensions
        .iter()
        .map(|d| union.dimensions.iter().position(|x| x == d))
        .collect()
}

/// Each cell of a survey frame with its respondent count.
fn survey_counts(frame: &DataFrame, t: &TableSpec) -> Result<Vec<(Vec<String>, u64)>> {
    let ctx = |what: &str| format!("table {}: {what}", t.id);
    let dims: Vec<StringChunked> = t
        .dimensions
        .iter()
        .map(|d| {
            Ok(frame
                .column(d)
                .ctx(|| ctx(d))?
                .str()
                .ctx(|| ctx(d))?
                .clone())
        })
        .collect::<Result<_>>()?;
    let n = frame
        .column(column::COUNT)
        .ctx(|| ctx(column::COUNT))?
        .cast(&DataType::UInt64)
        .ctx(|| ctx(column::COUNT))?;
    let n = n.u64().ctx(|| ctx(column::COUNT))?;
    Ok((0..frame.height())
        .map(|i| {
            (
                dims.iter()
                    .map(|c| c.get(i).unwrap_or_default().to_string())
                    .collect(),
                n.get(i).unwrap_or(0),
            )
        })
        .collect())
}

#[allow(clippy::too_many_arguments)]
fn count_frames(
    period: &crate::spec::period::RefPeriod,
    provisional: bool,
    t: &TableSpec,
    cells: &[usize],
    keys: &[Vec<&str>],
    p: &Problem,
    published: &[Option<u64>],
    status: &[Conf],
    rule: &[Rule],
    intervals: &BTreeMap<usize, Interval>,
) -> Result<(DataFrame, DataFrame)> {
    let ctx = |what: &str| format!("table {}: {what}", t.id);
    let unit = match t.unit {
        crate::spec::Unit::Persons => "persons",
        crate::spec::Unit::Records => "records",
        crate::spec::Unit::Events => "events",
    };
    let h = cells.len();
    let mut public = crate::disaggregate::cell_columns(t, period, unit, keys.iter());
    let values: Vec<Option<u64>> = cells.iter().map(|c| published[*c]).collect();
    public.push(Column::new("value".into(), values.clone()));
    public.push(Column::new(
        "OBS_STATUS".into(),
        values
            .iter()
            .map(|v| match v {
                None => "Q",
                Some(_) if provisional => "P",
                Some(_) => "A",
            })
            .collect::<Vec<_>>(),
    ));
    public.push(Column::new(
        "CONF_STATUS".into(),
        cells
            .iter()
            .map(|c| status[*c].public_code())
            .collect::<Vec<_>>(),
    ));
    let public = DataFrame::new(h, public).ctx(|| ctx("public frame"))?;

    let mut audit = crate::disaggregate::cell_columns(t, period, unit, keys.iter());
    audit.push(Column::new(
        "true_value".into(),
        cells.iter().map(|c| p.values[*c]).collect::<Vec<u64>>(),
    ));
    audit.push(Column::new("published".into(), values));
    audit.push(Column::new(
        "conf".into(),
        cells.iter().map(|c| status[*c].code()).collect::<Vec<_>>(),
    ));
    audit.push(Column::new(
        "rule".into(),
        cells.iter().map(|c| rule[*c].code()).collect::<Vec<_>>(),
    ));
    let bound = |hi: bool| -> Vec<Option<f64>> {
        cells
            .iter()
            .map(|c| intervals.get(c).map(|i| if hi { i.hi } else { i.lo }))
            .collect()
    };
    audit.push(Column::new("feasible_min".into(), bound(false)));
    audit.push(Column::new("feasible_max".into(), bound(true)));
    audit.push(Column::new(
        "proof".into(),
        cells
            .iter()
            .map(|c| intervals.get(c).map(|i| i.proof.code()))
            .collect::<Vec<_>>(),
    ));
    let audit = DataFrame::new(h, audit).ctx(|| ctx("audit frame"))?;
    Ok((public, audit))
}

/// A survey table's public form: the allow-listed estimate columns, withheld (`OBS_STATUS` `Q`,
/// `CONF_STATUS` `C`) where the group's suppression says so, or for quality (`U`, `F`, no value)
/// where the CV exceeds the design's `cv_suppress`.
#[allow(clippy::too_many_arguments)]
fn survey_frames(
    plan: &Plan,
    t: &TableSpec,
    union: &TableSpec,
    frame: &DataFrame,
    p: &Problem,
    status: &[Conf],
    rule: &[Rule],
    intervals: &BTreeMap<usize, Interval>,
    summary: &mut Summary,
) -> Result<(DataFrame, DataFrame)> {
    let ctx = |what: &str| format!("table {}: {what}", t.id);
    let design = plan
        .sources
        .iter()
        .find(|s| s.id == t.source)
        .and_then(|s| s.design.as_ref())
        .ok_or_else(|| Error::Internal(format!("survey table {}: no design", t.id)))?;
    let keys: Vec<Vec<String>> = survey_counts(frame, t)?.into_iter().map(|x| x.0).collect();
    let cells: Vec<Option<usize>> = match &t.kind {
        crate::spec::TableKind::SurveyContrast { across, terms, .. } => {
            // A contrast's cell stands for its terms (cells of the table it contrasts): it is
            // withheld when any of them is, under that term's rule (a difference of a
            // published and a withheld estimate would disclose the latter).
            let base = t.contrast_base();
            let j = base.dimensions.iter().position(|d| d == across);
            keys.iter()
                .map(|k| {
                    let j = j?;
                    let mut found = Vec::new();
                    for (code, _) in terms {
                        let mut bk: Vec<String> = base
                            .dimensions
                            .iter()
                            .map(|d| {
                                t.dimensions
                                    .iter()
                                    .position(|x| x == d)
                                    .map_or_else(String::new, |i| k[i].clone())
                            })
                            .collect();
                        bk[j] = code.clone();
                        found.push(p.find(&to_union(&bk, &base, union)));
                    }
                    let withheld = found
                        .iter()
                        .find(|c| c.is_none_or(|c| status[c] != Conf::Free));
                    match withheld {
                        Some(c) => *c,
                        None => found.first().copied().flatten(),
                    }
                })
                .collect()
        }
        _ => keys
            .iter()
            .map(|k| p.find(&to_union(k, t, union)))
            .collect(),
    };
    let confidential: Vec<bool> = cells
        .iter()
        .map(|c| c.is_none_or(|c| status[c] != Conf::Free))
        .collect();
    let cv = frame
        .column("cv")
        .ctx(|| ctx("cv"))?
        .f64()
        .ctx(|| ctx("cv"))?
        .clone();
    let unreliable: Vec<bool> = cv
        .iter()
        .map(|c| c.is_none_or(|c| c > design.cv_suppress))
        .collect();
    let caution: Vec<bool> = cv
        .iter()
        .map(|c| c.is_none_or(|c| c > design.cv_caution))
        .collect();
    let withheld: Vec<bool> = confidential
        .iter()
        .zip(&unreliable)
        .map(|(a, b)| *a || *b)
        .collect();
    let keep = BooleanChunked::from_iter_values("keep".into(), withheld.iter().map(|w| !w));
    let mut public = Vec::new();
    let lead = ["table_id", "source_id", "unit", "ref_period"];
    for name in lead
        .iter()
        .copied()
        .chain(t.dimensions.iter().map(String::as_str))
    {
        public.push(frame.column(name).ctx(|| ctx(name))?.clone());
    }
    for name in SURVEY_PUBLIC {
        let Ok(c) = frame.column(name) else {
            continue;
        };
        let s = c.as_materialized_series();
        let nulls = Series::full_null((*name).into(), s.len(), s.dtype());
        public.push(s.zip_with(&keep, &nulls).ctx(|| ctx(name))?.into_column());
    }
    public.push(Column::new(
        "OBS_STATUS".into(),
        (0..frame.height())
            .map(|i| {
                if confidential[i] {
                    "Q"
                } else if caution[i] {
                    "U"
                } else if summary.provisional {
                    "P"
                } else {
                    "A"
                }
            })
            .collect::<Vec<_>>(),
    ));
    public.push(Column::new(
        "CONF_STATUS".into(),
        confidential
            .iter()
            .map(|c| if *c { "C" } else { "F" })
            .collect::<Vec<_>>(),
    ));
    let public = DataFrame::new(frame.height(), public).ctx(|| ctx("public frame"))?;
    let mut audit: Vec<Column> = frame
        .columns()
        .iter()
        .filter(|c| {
            let name = c.name().as_str();
            name != column::SUPPRESS && name != column::OBS_STATUS
        })
        .cloned()
        .collect();
    audit.push(Column::new(
        "conf".into(),
        cells
            .iter()
            .map(|c| c.map_or("A", |c| status[c].code()))
            .collect::<Vec<_>>(),
    ));
    audit.push(Column::new(
        "rule".into(),
        cells
            .iter()
            .zip(&unreliable)
            .map(|(c, u)| match c.map(|c| rule[c]) {
                Some(Rule::None) | None if *u => "quality",
                Some(r) => r.code(),
                None => "none",
            })
            .collect::<Vec<_>>(),
    ));
    audit.push(Column::new(
        "feasible_min".into(),
        cells
            .iter()
            .map(|c| c.and_then(|c| intervals.get(&c)).map(|i| i.lo))
            .collect::<Vec<_>>(),
    ));
    audit.push(Column::new(
        "feasible_max".into(),
        cells
            .iter()
            .map(|c| c.and_then(|c| intervals.get(&c)).map(|i| i.hi))
            .collect::<Vec<_>>(),
    ));
    let audit = DataFrame::new(frame.height(), audit).ctx(|| ctx("audit frame"))?;
    summary.cells = frame.height() as u64;
    summary.primary = cells
        .iter()
        .filter(|c| c.is_some_and(|c| status[c] == Conf::Primary))
        .count() as u64;
    summary.secondary = cells
        .iter()
        .filter(|c| c.is_some_and(|c| status[c] == Conf::Secondary))
        .count() as u64;
    summary.additive = false;
    Ok((public, audit))
}

/// Declared hierarchies that the data break: one message per child code found under more
/// than one parent code.
pub fn check_hierarchies<K: AsRef<[String]>>(table: &TableSpec, keys: &[K]) -> Vec<String> {
    let mut out = Vec::new();
    for (child, parent) in &table.hierarchies {
        let pos = |d: &str| table.dimensions.iter().position(|x| x == d);
        let (Some(c), Some(p)) = (pos(child), pos(parent)) else {
            continue;
        };
        let mut parents: BTreeMap<&str, BTreeSet<&str>> = Default::default();
        for k in keys {
            let k = k.as_ref();
            if k[c] != TOTAL && k[p] != TOTAL {
                parents.entry(&k[c]).or_default().insert(&k[p]);
            }
        }
        for (code, ps) in parents.iter().filter(|(_, ps)| ps.len() > 1) {
            out.push(format!(
                "hierarchy {child} within {parent}: code `{code}` lies under {} ({}); fix the crosswalks or drop the hierarchy",
                ps.len(),
                ps.iter().copied().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    out
}

/// The method a spec names, as the outputs record it.
impl From<crate::spec::ProtectMethod> for Method {
    fn from(m: crate::spec::ProtectMethod) -> Self {
        use crate::spec::ProtectMethod as P;
        match m {
            P::Suppress => Method::Suppress,
            P::Round => Method::Round,
            P::RandomRound => Method::RandomRound,
            P::CellKey => Method::CellKey,
        }
    }
}
