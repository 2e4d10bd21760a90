//! `migstat audit RELEASE`: the disclosure checks again, on what a release actually published,
//! group by group (the tables an intruder can combine).
//!
//! Input: a release directory — its `manifest.json` (each table's protection summary and
//! group), its public tables, and each group's ledger (`restricted/ledger/`: the true values
//! and what was published). Output: one [`TableCheck`] per published table of a protected
//! group.
//!
//! For every member table, from its public file: each row is a cell of the group's ledger;
//! the published value is the ledger's, null exactly where `CONF_STATUS` is `C` (and
//! `OBS_STATUS` is `Q`); no free cell of a suppressed table holds a value in (0, threshold).
//! Then the group as a whole:
//! - suppression (and survey groups' respondent counts): the problem is rebuilt from the
//!   ledger's finest cells and the published pattern of *all* member tables, and every cell that
//!   needs protection is bounded again — [`Depth::Certified`]: checked directions, else the LP,
//!   as the run does; [`Depth::Exact`]: the LP over the whole group for every such cell, its
//!   right-hand sides the published values: what an outsider computes;
//! - perturbative methods: every published cell equals the sum of the published finest cells
//!   below it (additive), and no cell that needs protection has an interval (the sum of what
//!   its finest cells' published counts allow) narrower than the range.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use polars::prelude::*;

use super::audit::Auditor;
use super::elim::Scratch;
use super::ledger::Ledger;
use super::problem::Problem;
use super::suppress::{Rule, certificate_grid, certified_interval, publication_order};
use super::{Conf, PTable, Summary};
use crate::error::{Error, PolarsContext, Result};
use crate::manifest::Method;
use crate::vocab::TOTAL;
use rayon::prelude::*;

/// The outcome for one published file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TableCheck {
    pub table: String,
    pub group: String,
    pub file: PathBuf,
    pub method: Method,
    pub cells: usize,
    pub suppressed: usize,
    pub audited: usize,
    /// The narrowest interval among cells that need protection.
    pub narrowest_interval: Option<f64>,
    /// Empty when the file passes.
    pub failures: Vec<String>,
}

/// How far `migstat audit` goes (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    Certified,
    Exact,
}

/// Audit every protected group of the release in `dir` (or the group of `table`).
pub fn audit_release(dir: &Path, depth: Depth, table: Option<&str>) -> Result<Vec<TableCheck>> {
    let manifest_path = crate::layout::Release(dir).manifest();
    let text = std::fs::read_to_string(&manifest_path).map_err(|e| Error::io(&manifest_path, e))?;
    let manifest: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        Error::Usage(format!(
            "{}: not a migstat manifest ({e})",
            manifest_path.display()
        ))
    })?;
    let summaries: Vec<Summary> = serde_json::from_value(
        manifest.get("protection").cloned().unwrap_or_default(),
    )
    .map_err(|e| {
        Error::Usage(format!(
            "{}: its `protection` list is unreadable ({e}); was it written by migstat?",
            manifest_path.display()
        ))
    })?;
    let mut groups: BTreeMap<&str, Vec<&Summary>> = BTreeMap::new();
    for s in &summaries {
        if s.group.is_empty() {
            return Err(Error::Usage(format!(
                "{}: table `{}` has no protection group (a release from an older migstat: run it again)",
                manifest_path.display(),
                s.table
            )));
        }
        // One entry per table (a table has a summary per period; their settings are the same).
        let members = groups.entry(s.group.as_str()).or_default();
        if !members.iter().any(|m| m.table == s.table) {
            members.push(s);
        }
    }
    let mut out = Vec::new();
    for (g, members) in groups {
        if table.is_some_and(|t| !members.iter().any(|m| m.table == t)) {
            continue;
        }
        out.extend(audit_group(dir, g, &members, depth)?);
    }
    if let Some(t) = table.filter(|_| out.is_empty()) {
        return Err(Error::Usage(format!(
            "{}: no protected table `{t}` in this release",
            manifest_path.display()
        )));
    }
    Ok(out)
}

/// The union dimensions of a ledger file: its columns between `level` and `true_value`.
fn ledger_dims(path: &Path) -> Result<Vec<String>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let schema = ParquetReader::new(file)
        .schema()
        .ctx(|| format!("{}: schema", path.display()))?;
    let names: Vec<String> = schema.iter_names().map(|n| n.to_string()).collect();
    let a = names.iter().position(|n| n == "level");
    let b = names.iter().position(|n| n == "true_value");
    match (a, b) {
        (Some(a), Some(b)) if a < b => Ok(names[a + 1..b].to_vec()),
        _ => Err(Error::Usage(format!(
            "{}: not a migstat ledger",
            path.display()
        ))),
    }
}

fn strings(df: &DataFrame, c: &str, path: &Path) -> Result<Vec<String>> {
    Ok(df
        .column(c)
        .ctx(|| format!("{}: {c}", path.display()))?
        .cast(&DataType::String)
        .ctx(|| format!("{}: {c}", path.display()))?
        .str()
        .ctx(|| format!("{}: {c}", path.display()))?
        .iter()
        .map(|v| v.unwrap_or_default().to_string())
        .collect())
}

fn audit_group(dir: &Path, g: &str, members: &[&Summary], depth: Depth) -> Result<Vec<TableCheck>> {
    let pattern = crate::layout::Release(dir)
        .ledger_dir(g)
        .join("*")
        .join("ledger.parquet");
    let mut ledgers: Vec<PathBuf> = glob::glob(&pattern.to_string_lossy())
        .map_err(|e| Error::Internal(format!("listing ledgers: {e}")))?
        .flatten()
        .collect();
    ledgers.sort();
    if ledgers.is_empty() {
        return Err(Error::Usage(format!(
            "{}: group `{g}` has no ledger in restricted/ledger/; audit needs the restricted tier",
            dir.display()
        )));
    }
    let first = members[0];
    let mut out = Vec::new();
    // The codes that occur in more than one period of the group's series (no floor of 1 in any
    // one period: `Problem::without_floor`), from each period's latest vintage.
    let mut latest = Vec::new();
    let mut d = 0;
    for lp in &ledgers {
        let dims = ledger_dims(lp)?;
        d = d.max(dims.len());
        latest.extend(Ledger::read(lp, &dims)?.vintages.pop());
    }
    let shared = crate::protect::codes_in_several_periods(
        latest
            .iter()
            .map(|v| v.rows.iter().map(|(k, (t, _))| (k.as_slice(), *t))),
        d,
    );
    for lp in ledgers {
        // The ledger's folder is the period's key (`ref_year=2024`); its tables' folder is the
        // key's value.
        let part = crate::spec::period::partition_of_key(
            &lp.parent()
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default(),
        );
        let dims = ledger_dims(&lp)?;
        let ledger = Ledger::read(&lp, &dims)?;
        let Some(v) = ledger.vintages.last() else {
            continue;
        };
        // The problem from the ledger's frame and the published pattern (all members).
        let rows: BTreeMap<Vec<String>, u64> =
            v.rows.iter().map(|(k, (t, _))| (k.clone(), *t)).collect();
        let masks: Vec<u32> = {
            let mut m: Vec<u32> = v
                .cells
                .keys()
                .map(|k| {
                    k.iter()
                        .enumerate()
                        .filter(|(_, c)| *c == TOTAL)
                        .fold(0u32, |m, (j, _)| m | (1 << j))
                })
                .collect();
            m.sort_unstable();
            m.dedup();
            m
        };
        let p = Problem::from_named_rows(dims.clone(), &rows, &masks).without_floor(&shared);
        let threshold = first.threshold.unwrap_or(0);
        let range = first.protection_range.unwrap_or(0.0);
        let mut group_failures: Vec<String> = Vec::new();
        let mut status = vec![Conf::Free; p.cells.len()];
        let mut targets = Vec::new();
        #[allow(clippy::needless_range_loop)] // `c` indexes the problem and the status alike
        for c in 0..p.cells.len() {
            let names = p.names(c);
            match v.cells.get(&names) {
                Some((t, _, conf, rule)) => {
                    status[c] = *conf;
                    if *t != p.values[c] {
                        group_failures.push(format!(
                            "cell {}: the ledger's value {t} is not the sum of its finest cells ({})",
                            names.join("|"),
                            p.values[c]
                        ));
                    }
                    if matches!(rule, Rule::Threshold | Rule::Change) {
                        targets.push(c);
                    }
                }
                None => group_failures.push(format!(
                    "cell {}: in the frame but not in the ledger",
                    names.join("|")
                )),
            }
        }
        let mut intervals: HashMap<usize, f64> = HashMap::new();
        let noise = match first.method {
            Method::Round => Some(super::Noise::Round {
                base: first.base.unwrap_or(5),
            }),
            Method::RandomRound => Some(super::Noise::RandomRound {
                base: first.base.unwrap_or(5),
            }),
            Method::CellKey => Some(super::Noise::CellKey {
                ptable: PTable::default(),
            }),
            Method::Suppress | Method::SurveyQuality => None,
        };
        if let Some(noise) = noise {
            let row_pub: Vec<u64> = p
                .rows
                .iter()
                .map(|r| {
                    let key: Vec<String> = r
                        .iter()
                        .enumerate()
                        .map(|(j, c)| p.codes[j][*c as usize].clone())
                        .collect();
                    v.rows.get(&key).and_then(|x| x.1).unwrap_or(0)
                })
                .collect();
            let sums = super::noise::sums(&p, &row_pub);
            let bounds = super::noise::intervals(&p, &noise, &row_pub);
            for c in 0..p.cells.len() {
                let names = p.names(c);
                if let Some((_, published, _, _)) = v.cells.get(&names)
                    && *published != Some(sums[c])
                {
                    group_failures.push(format!(
                        "cell {}: published {:?}, not the sum of its published finest cells ({})",
                        names.join("|"),
                        published,
                        sums[c]
                    ));
                }
                let val = p.values[c];
                if val > 0 && val < threshold {
                    let (mut lo, hi) = bounds[c];
                    lo = lo.max(p.floor(c));
                    let w = (hi - lo) as f64;
                    intervals.insert(c, w);
                    if w < range - 1e-9 {
                        group_failures.push(format!(
                            "cell {}: can be narrowed to [{lo}, {hi}], narrower than the protection range {range}",
                            names.join("|")
                        ));
                    }
                }
            }
        } else {
            let published: Vec<bool> = status.iter().map(|s| *s == Conf::Free).collect();
            let order = publication_order(&p, first.publish_grand_total);
            // Certified: a hypercube of suppressed cells checked from scratch, else the
            // elimination's directions and the LP; exact: the LP for every cell. Each cell on
            // its own, in parallel; the results are collected in cell order.
            let grid = certificate_grid(&p);
            let st: &[Conf] = &status;
            let quick: Vec<(usize, Option<super::audit::Interval>)> = targets
                .par_iter()
                .map(|&c| {
                    let cert = (depth == Depth::Certified && st[c] != Conf::Free)
                        .then(|| certified_interval(&grid, st, c, range))
                        .flatten();
                    (c, cert)
                })
                .collect();
            let need_lp = quick
                .iter()
                .any(|(c, i)| i.is_none() && status[*c] != Conf::Free);
            let auditor = need_lp.then(|| Auditor::new(&p, &published, &order));
            let checked: Vec<(
                usize,
                Option<std::result::Result<super::audit::Interval, super::audit::AuditError>>,
            )> = quick
                .into_par_iter()
                .map(|(c, i)| {
                    if st[c] == Conf::Free {
                        return (c, None);
                    }
                    let r = match (i, &auditor) {
                        (Some(i), _) => Ok(i),
                        (None, Some(a)) => match depth {
                            Depth::Certified => a.interval(c, range, &mut Scratch::default()),
                            Depth::Exact => a.exact_interval(c),
                        },
                        (None, None) => {
                            unreachable!("the auditor is built when a cell has no certificate")
                        }
                    };
                    (c, Some(r))
                })
                .collect();
            for (c, interval) in checked {
                let Some(interval) = interval else {
                    group_failures.push(format!(
                        "cell {}: needs protection (value {}) but is published",
                        p.names(c).join("|"),
                        p.values[c]
                    ));
                    continue;
                };
                match interval {
                    Ok(i) => {
                        intervals.insert(c, i.width());
                        if i.width() < range - 1e-9 {
                            group_failures.push(format!(
                                "cell {}: can be narrowed to [{}, {}] from the published cells, narrower than the protection range {range}",
                                p.names(c).join("|"),
                                i.lo,
                                i.hi
                            ));
                        }
                    }
                    Err(e) => group_failures.push(format!(
                        "cell {}: its interval could not be computed ({e:?})",
                        p.names(c).join("|")
                    )),
                }
            }
        }
        // Each member's public file against the ledger.
        for m in members {
            let file = crate::layout::Release(dir).public_table(&m.table, &part);
            let mut check = TableCheck {
                table: m.table.clone(),
                group: g.to_string(),
                file: file.clone(),
                method: m.method,
                cells: 0,
                suppressed: 0,
                audited: 0,
                narrowest_interval: None,
                failures: group_failures.clone(),
            };
            let f = std::fs::File::open(&file).map_err(|e| Error::io(&file, e))?;
            let df = ParquetReader::new(f)
                .finish()
                .ctx(|| format!("reading {}", file.display()))?;
            check.cells = df.height();
            let conf = strings(&df, "CONF_STATUS", &file)?;
            let obs = strings(&df, "OBS_STATUS", &file)?;
            let value_col = if df.column("value").is_ok() {
                "value"
            } else {
                "estimate"
            };
            let present: Vec<bool> = df
                .column(value_col)
                .ctx(|| format!("{}: {value_col}", file.display()))?
                .is_not_null()
                .iter()
                .map(|x| x.unwrap_or(false))
                .collect();
            let value: Option<Vec<Option<u64>>> = (value_col == "value")
                .then(|| -> Result<Vec<Option<u64>>> {
                    Ok(df
                        .column("value")
                        .ctx(|| format!("{}: value", file.display()))?
                        .cast(&DataType::UInt64)
                        .ctx(|| format!("{}: value", file.display()))?
                        .u64()
                        .ctx(|| format!("{}: value", file.display()))?
                        .iter()
                        .collect())
                })
                .transpose()?;
            let cols: Vec<Vec<String>> = m
                .dimensions
                .iter()
                .map(|d| strings(&df, d, &file))
                .collect::<Result<_>>()?;
            for i in 0..df.height() {
                let key: Vec<String> = dims
                    .iter()
                    .map(|d| match m.dimensions.iter().position(|x| x == d) {
                        Some(j) => cols[j][i].clone(),
                        None => TOTAL.to_string(),
                    })
                    .collect();
                let name = key.join("|");
                if let Some((across, codes)) = &m.contrast {
                    // A contrast's cell: withheld exactly when one of its terms is.
                    let suppressed = conf[i] == "C";
                    check.suppressed += usize::from(suppressed);
                    if suppressed && present[i] {
                        check.failures.push(format!(
                            "cell {name}: CONF_STATUS C but its estimate is published"
                        ));
                    }
                    let j = dims.iter().position(|d| d == across);
                    let withheld = codes.iter().any(|code| {
                        let mut k = key.clone();
                        if let Some(j) = j {
                            k[j] = code.clone();
                        }
                        p.find(&k).is_none_or(|c| status[c] != Conf::Free)
                    });
                    if suppressed != withheld {
                        check.failures.push(format!(
                            "cell {name}: CONF_STATUS {} but its terms are {}",
                            conf[i],
                            if withheld {
                                "not all published"
                            } else {
                                "published"
                            }
                        ));
                    }
                    continue;
                }
                let suppressed = conf[i] == "C";
                check.suppressed += usize::from(suppressed);
                if !matches!(conf[i].as_str(), "F" | "C") {
                    check
                        .failures
                        .push(format!("cell {name}: CONF_STATUS {}", conf[i]));
                }
                if suppressed && (present[i] || obs[i] != "Q") {
                    check.failures.push(format!(
                        "cell {name}: suppressed but its value is {} (OBS_STATUS {})",
                        if present[i] { "published" } else { "empty" },
                        obs[i]
                    ));
                }
                let Some(c) = p.find(&key) else {
                    check
                        .failures
                        .push(format!("cell {name}: not in the group's ledger"));
                    continue;
                };
                if let Some(w) = intervals.get(&c) {
                    check.audited += 1;
                    check.narrowest_interval =
                        Some(check.narrowest_interval.map_or(*w, |n: f64| n.min(*w)));
                }
                if suppressed != (status[c] != Conf::Free) {
                    check.failures.push(format!(
                        "cell {name}: CONF_STATUS {} but the ledger says {}",
                        conf[i],
                        status[c].code()
                    ));
                }
                if let Some(values) = &value {
                    let (_, published, _, _) = v.cells.get(&key).cloned().unwrap_or((
                        0,
                        None,
                        Conf::Secondary,
                        Rule::None,
                    ));
                    if values[i] != published {
                        check.failures.push(format!(
                            "cell {name}: published {:?}, but the restricted tier says {:?}",
                            values[i], published
                        ));
                    }
                    if !first.method.is_perturbative()
                        && let Some(x) = values[i]
                        && x > 0
                        && x < threshold
                    {
                        check.failures.push(format!(
                            "cell {name}: {x} is published, below the threshold {threshold}"
                        ));
                    }
                }
                if m.method == Method::SurveyQuality
                    && !suppressed
                    && p.values[c] > 0
                    && p.values[c] < threshold
                {
                    check.failures.push(format!(
                        "cell {name}: {} respondents, below min_n {threshold}, but published",
                        p.values[c]
                    ));
                }
            }
            out.push(check);
        }
    }
    Ok(out)
}
