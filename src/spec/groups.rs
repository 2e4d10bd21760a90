//! Groups of linked tables: the tables an intruder can combine because they count the same
//! records, protected as one problem.
//!
//! Input: the compiled tables. Output: one [`GroupSpec`] per set of published tables that count
//! the same universe — protected count tables of one source with the same kind (count, stock at
//! the same dates, flow from the same start), unit and filter; and all survey tables of one
//! survey (their unweighted counts share the respondents). Each group's `union` is the table that
//! counts that universe over every dimension of every member (their union cube): every member's
//! cell is one of its cells, so suppression and perturbation act on it once for all members.
//!
//! The members of a group must share their protection settings (a spec error otherwise): two
//! settings for the same records would let the intruder take the weaker. A table filtered
//! differently is a different universe: protected apart when the filters are disjoint (the same
//! column, no code in common: the survey's residents and its emigrants abroad), a spec error
//! otherwise (its difference with the others would be a cell of neither).

use std::collections::BTreeMap;

use serde::Serialize;

use super::Ctx;
use super::{TableKind, TableSpec, Unit};

/// Dimensions a group's union cube may have.
pub const MAX_UNION_DIMENSIONS: usize = 10;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GroupSpec {
    /// The members' ids joined with `+`.
    pub id: String,
    pub source: String,
    /// Member table ids, in spec order.
    pub members: Vec<String>,
    /// A group of survey tables (protected by the design's `min_n` on respondent counts).
    pub survey: bool,
    /// What the group counts, over the union of the members' dimensions.
    pub union: TableSpec,
}

/// What a published table counts, before its filter: tables with the same base and the same
/// filter are linked (one group); tables with the same base and other filters must count
/// disjoint records (see [`groups`]).
fn base(t: &TableSpec) -> Option<String> {
    if t.kind.is_survey() {
        return Some(format!("survey|{}", t.source));
    }
    t.protect.as_ref()?;
    // A migration table's duration column is a dimension, not another universe.
    let mut kind = t.kind.clone();
    if let TableKind::Migration { duration, .. } = &mut kind {
        *duration = None;
    }
    let kind = serde_json::to_string(&kind).unwrap_or_default();
    let unit = serde_json::to_string(&t.unit).unwrap_or_default();
    Some(format!("count|{}|{kind}|{unit}", t.source))
}

/// The universe a published table counts: tables with the same key are linked.
fn universe(t: &TableSpec) -> Option<String> {
    let filter = serde_json::to_string(&t.filter).unwrap_or_default();
    Some(format!("{}|{filter}", base(t)?))
}

/// Tables of one base with different filters are protected apart only when nothing links
/// them: every one filtered on the same column, their code sets pairwise disjoint (residents
/// and emigrants of one survey). Otherwise one table's cell is another's plus a remainder.
fn check_disjoint(tables: &[TableSpec], cx: &mut Ctx<'_>) {
    let mut by_base: BTreeMap<String, Vec<&TableSpec>> = BTreeMap::new();
    for t in tables {
        if let Some(b) = base(t) {
            by_base.entry(b).or_default().push(t);
        }
    }
    for members in by_base.values() {
        for (i, a) in members.iter().enumerate() {
            for b in &members[i + 1..] {
                if a.filter == b.filter {
                    continue;
                }
                let disjoint = match (&a.filter, &b.filter) {
                    (Some((ca, va)), Some((cb, vb))) => ca == cb && va.is_disjoint(vb),
                    _ => false,
                };
                if !disjoint {
                    cx.push(
                        format!("tables.{}.filter", b.id),
                        format!(
                            "tables `{}` and `{}` count the same records with different filters; migstat protects them apart only when both filter the same column on disjoint codes (residents and emigrants): give them the same filter, or put the filter column among the dimensions of one table",
                            a.id, b.id
                        ),
                    );
                }
            }
        }
    }
}

/// The groups of the published tables, in the order of their first member.
pub(crate) fn groups(tables: &[TableSpec], cx: &mut Ctx<'_>) -> Vec<GroupSpec> {
    check_disjoint(tables, cx);
    let mut by_universe: BTreeMap<String, Vec<&TableSpec>> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for t in tables {
        if let Some(u) = universe(t) {
            if !by_universe.contains_key(&u) {
                order.push(u.clone());
            }
            by_universe.entry(u).or_default().push(t);
        }
    }
    let mut out = Vec::new();
    for u in order {
        let members = &by_universe[&u];
        let first = members[0];
        for t in &members[1..] {
            let at = format!("tables.{}", t.id);
            if t.protect != first.protect {
                cx.push(
                    format!("{at}.protect"),
                    format!(
                        "tables `{}` and `{}` count the same records, so they are protected together: give them the same `protect`",
                        first.id, t.id
                    ),
                );
            }
            if t.periods != first.periods || t.periods.list != first.periods.list {
                cx.push(
                    format!("{at}.period"),
                    format!(
                        "tables `{}` and `{}` count the same records, so they are protected together, period by period: give them the same `period` (a table over other periods would let cells be added across them)",
                        first.id, t.id
                    ),
                );
            }
        }
        let mut dims: Vec<String> = Vec::new();
        let mut hierarchies: Vec<(String, String)> = Vec::new();
        for t in members {
            for d in &t.dimensions {
                if !dims.contains(d) {
                    dims.push(d.clone());
                }
            }
            for h in &t.hierarchies {
                if let Some(other) = hierarchies.iter().find(|x| x.0 == h.0 && x.1 != h.1) {
                    cx.push(
                        format!("tables.{}.hierarchies", t.id),
                        format!(
                            "`{}` lies within `{}` here and within `{}` in a linked table",
                            h.0, h.1, other.1
                        ),
                    );
                } else if !hierarchies.contains(h) {
                    hierarchies.push(h.clone());
                }
            }
        }
        if dims.len() > MAX_UNION_DIMENSIONS {
            cx.push(
                format!("tables.{}", first.id),
                format!(
                    "the tables linked with `{}` ({}) span {} dimensions, more than the {MAX_UNION_DIMENSIONS} migstat protects together",
                    first.id,
                    members.iter().map(|t| t.id.as_str()).collect::<Vec<_>>().join(", "),
                    dims.len()
                ),
            );
        }
        let ids: Vec<String> = members.iter().map(|t| t.id.clone()).collect();
        let survey = first.kind.is_survey();
        // The union makes every member's duration column (one name for the group).
        let mut kind = first.kind.clone();
        let named: Vec<&String> = members
            .iter()
            .filter_map(|t| match &t.kind {
                TableKind::Migration {
                    duration: Some(d), ..
                } => Some(d),
                _ => None,
            })
            .collect();
        if let TableKind::Migration { duration, .. } = &mut kind {
            *duration = named.first().map(|d| d.to_string());
        }
        if named.windows(2).any(|w| w[0] != w[1]) {
            cx.push(
                format!("tables.{}.duration", first.id),
                "linked migration tables must name their duration column alike",
            );
        }
        let id = ids.join("+");
        let union = TableSpec {
            id: format!("group:{id}"),
            title: None,
            title_translations: Default::default(),
            metadata: Default::default(),
            source: first.source.clone(),
            kind: if survey { TableKind::Count } else { kind },
            unit: if survey { Unit::Records } else { first.unit },
            dimensions: dims,
            filter: first.filter.clone(),
            grouping_sets: None,
            hierarchies,
            periods: first.periods.clone(),
            protect: if survey { None } else { first.protect.clone() },
        };
        out.push(GroupSpec {
            id,
            source: first.source.clone(),
            members: ids,
            survey,
            union,
        });
    }
    out
}
