//! `migstat audit RELEASE`: the disclosure checks again, on what a release actually published.
//!
//! Input: a release directory (its `manifest.json`, `public/tables/<id>/ref_year=*/data.parquet`
//! and, for the default check, `restricted/audit/<id>.parquet`). Output: one [`TableCheck`] per
//! published file of a suppressed or cell-key table.
//!
//! For every table the manifest says was suppressed, from the public file: no free cell may hold
//! a value in (0, threshold) and every suppressed cell must have a null value. Then every primary
//! cell's feasible interval — its value over every non-negative table that agrees with the
//! published cells and satisfies the relations `total = Σ parts` — must be at least the
//! protection range wide:
//! - by default ([`Depth::Certified`]) as the run's own audit does, but from the published
//!   pattern and the restricted tier's true values (which must agree with every published
//!   value): a hypercube of suppressed cells searched afresh, else a linear program;
//! - with [`Depth::Exact`], from the public file alone, each bound by a linear program over the
//!   cell's whole connected group of suppressed cells: the exact interval an outsider could
//!   compute (slower: minutes for a table of a thousand suppressed cells).
//!
//! Tables perturbed by the cell key method must publish no 1 or 2.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use super::{Conf, Grid, Summary, TOTAL_ID, audit, exact_interval};
use crate::disaggregate::TOTAL;
use crate::error::{Error, PolarsContext, Result};

/// The outcome for one published file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TableCheck {
    pub table: String,
    pub file: PathBuf,
    pub method: String,
    pub cells: usize,
    pub primary: usize,
    pub secondary: usize,
    /// The narrowest exact interval among primary cells.
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

/// Audit every suppressed or cell-key table of the release in `dir` (or only `table`).
pub fn audit_release(dir: &Path, depth: Depth, table: Option<&str>) -> Result<Vec<TableCheck>> {
    let manifest_path = dir.join("manifest.json");
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
    let mut out = Vec::new();
    for s in summaries
        .iter()
        .filter(|s| s.method == "suppress" || s.method == "cell_key")
        .filter(|s| table.is_none_or(|t| t == s.table))
    {
        let root = dir.join("public").join("tables").join(&s.table);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&root)
            .map_err(|e| Error::io(&root, e))?
            .filter_map(|e| e.ok().map(|e| e.path().join("data.parquet")))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(Error::Usage(format!(
                "{}: the manifest lists table `{}` as published, but it has no data.parquet",
                root.display(),
                s.table
            )));
        }
        let truth = if depth == Depth::Certified && s.method == "suppress" {
            let path = dir
                .join("restricted")
                .join("audit")
                .join(format!("{}.parquet", s.table));
            if !path.is_file() {
                return Err(Error::Usage(format!(
                    "{}: missing; audit from the public files alone with --exact",
                    path.display()
                )));
            }
            Some(true_values(s, &path)?)
        } else {
            None
        };
        for f in files {
            out.push(check_file(s, &f, truth.as_ref())?);
        }
    }
    if let Some(t) = table.filter(|_| out.is_empty()) {
        return Err(Error::Usage(format!(
            "{}: no suppressed or cell-key table `{t}` in this release",
            manifest_path.display()
        )));
    }
    Ok(out)
}

/// The restricted audit table's true values, by the cell's codes joined with `|` (and its
/// reference period: a table has one audit file for all its years).
fn true_values(s: &Summary, path: &Path) -> Result<HashMap<String, u64>> {
    let ctx = |what: &str| format!("{}: {what}", path.display());
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let df = ParquetReader::new(file).finish().ctx(|| ctx("reading"))?;
    let v = df
        .column("true_value")
        .ctx(|| ctx("true_value"))?
        .cast(&DataType::UInt64)
        .ctx(|| ctx("true_value"))?;
    let v = v.u64().ctx(|| ctx("true_value"))?;
    let names = cell_names(&df, s, path)?;
    Ok(names
        .into_iter()
        .zip(v.iter())
        .map(|(n, v)| (n, v.unwrap_or(0)))
        .collect())
}

/// Each row's reference period and dimension codes, joined with `|`.
fn cell_names(df: &DataFrame, s: &Summary, path: &Path) -> Result<Vec<String>> {
    let ctx = |what: &str| format!("{}: {what}", path.display());
    let mut cols = vec!["ref_period".to_string()];
    cols.extend(s.dimensions.iter().cloned());
    let cols: Vec<StringChunked> = cols
        .iter()
        .map(|d| Ok(df.column(d).ctx(|| ctx(d))?.str().ctx(|| ctx(d))?.clone()))
        .collect::<Result<_>>()?;
    Ok((0..df.height())
        .map(|i| {
            cols.iter()
                .map(|c| c.get(i).unwrap_or_default())
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect())
}

fn check_file(
    s: &Summary,
    path: &Path,
    truth: Option<&HashMap<String, u64>>,
) -> Result<TableCheck> {
    let ctx = |what: &str| format!("{}: {what}", path.display());
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let df = ParquetReader::new(file).finish().ctx(|| ctx("reading"))?;
    let value = df
        .column("value")
        .ctx(|| ctx("value"))?
        .cast(&DataType::UInt64)
        .ctx(|| ctx("value"))?;
    let value = value.u64().ctx(|| ctx("value"))?;
    let conf = df.column("CONF_STATUS").ctx(|| ctx("CONF_STATUS"))?;
    let conf = conf.str().ctx(|| ctx("CONF_STATUS"))?;
    let mut check = TableCheck {
        table: s.table.clone(),
        file: path.to_path_buf(),
        method: s.method.clone(),
        cells: df.height(),
        primary: 0,
        secondary: 0,
        narrowest_interval: None,
        failures: Vec::new(),
    };
    if s.method == "cell_key" {
        for (i, v) in value.iter().enumerate() {
            if matches!(v, Some(1 | 2)) {
                check.failures.push(format!(
                    "row {i}: a count of {} is published",
                    v.unwrap_or(0)
                ));
            }
        }
        return Ok(check);
    }
    let (Some(k), Some(range)) = (s.threshold, s.protection_range) else {
        return Err(Error::Usage(format!(
            "{}: the manifest does not record table `{}`'s threshold and protection range (a release from an older migstat: run it again)",
            path.display(),
            s.table
        )));
    };
    if s.dimensions.is_empty() {
        return Err(Error::Usage(format!(
            "{}: the manifest does not record table `{}`'s dimensions (a release from an older migstat: run it again)",
            path.display(),
            s.table
        )));
    }
    let dims: Vec<StringChunked> = s
        .dimensions
        .iter()
        .map(|d| Ok(df.column(d).ctx(|| ctx(d))?.str().ctx(|| ctx(d))?.clone()))
        .collect::<Result<_>>()?;
    let full = cell_names(&df, s, path)?;
    let mut codes: Vec<HashMap<String, u32>> = vec![HashMap::new(); dims.len()];
    let mut cells = Vec::with_capacity(df.height());
    let mut values = Vec::with_capacity(df.height());
    let mut status = Vec::with_capacity(df.height());
    let mut names = Vec::with_capacity(df.height());
    for i in 0..df.height() {
        let key: Vec<&str> = dims.iter().map(|c| c.get(i).unwrap_or_default()).collect();
        cells.push(
            key.iter()
                .zip(codes.iter_mut())
                .map(|(k, ids)| {
                    if *k == TOTAL {
                        TOTAL_ID
                    } else {
                        let next = ids.len() as u32;
                        *ids.entry(k.to_string()).or_insert(next)
                    }
                })
                .collect::<Vec<u32>>(),
        );
        names.push(key.join("|"));
        let st = match conf.get(i) {
            Some("F") => Conf::Free,
            Some("A") => Conf::Primary,
            Some("D") => Conf::Secondary,
            other => {
                check
                    .failures
                    .push(format!("cell {}: CONF_STATUS {other:?}", names[i]));
                Conf::Secondary
            }
        };
        match (st, value.get(i)) {
            (Conf::Free, Some(v)) if v > 0 && v < k => check.failures.push(format!(
                "cell {}: {v} is published, below the threshold {k}",
                names[i]
            )),
            (Conf::Free, None) => check
                .failures
                .push(format!("cell {}: free but without a value", names[i])),
            (Conf::Primary | Conf::Secondary, Some(v)) => check.failures.push(format!(
                "cell {}: suppressed but {v} is published",
                names[i]
            )),
            _ => {}
        }
        // Without the true values, suppressed cells are the exact LP's variables: their
        // stored value is never read.
        let v = match truth {
            None => value.get(i).unwrap_or(0),
            Some(t) => match t.get(&full[i]) {
                None => {
                    check.failures.push(format!(
                        "cell {}: not in the restricted audit table",
                        names[i]
                    ));
                    value.get(i).unwrap_or(0)
                }
                Some(t) => {
                    if st == Conf::Free && value.get(i) != Some(*t) {
                        check.failures.push(format!(
                            "cell {}: published {:?}, but the restricted tier says {t}",
                            names[i],
                            value.get(i)
                        ));
                    }
                    *t
                }
            },
        };
        values.push(v);
        status.push(st);
    }
    check.primary = status.iter().filter(|s| **s == Conf::Primary).count();
    check.secondary = status.iter().filter(|s| **s == Conf::Secondary).count();
    let mut grid = Grid::new(cells, values);
    if s.publish_grand_total {
        grid = grid.keep_grand_total();
    }
    let intervals: Vec<(usize, f64, f64)> = match truth {
        Some(_) => audit(&grid, &status, range, &Default::default())?
            .intervals
            .into_iter()
            .map(|(c, (lo, hi, _))| (c, lo, hi))
            .collect(),
        None => (0..status.len())
            .filter(|c| status[*c] == Conf::Primary)
            .map(|c| exact_interval(&grid, &status, c).map(|(lo, hi)| (c, lo, hi)))
            .collect::<Result<_>>()?,
    };
    for (c, lo, hi) in intervals {
        let width = hi - lo;
        check.narrowest_interval = Some(check.narrowest_interval.map_or(width, |w| w.min(width)));
        if width < range - 1e-7 {
            check.failures.push(format!(
                "cell {}: can be narrowed to [{lo:.2}, {hi:.2}] from the published cells, narrower than the protection range {range}",
                names[c]
            ));
        }
    }
    Ok(check)
}
