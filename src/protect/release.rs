//! `migstat audit RELEASE`: the disclosure checks again, on what a release actually published.
//!
//! Input: a release directory (its `manifest.json` and `public/tables/<id>/ref_year=*/data.parquet`).
//! Output: one [`TableCheck`] per published file of a suppressed table.
//!
//! Only the public files are read — what anyone outside the observatory sees. For every table the
//! manifest says was suppressed: no free cell may hold a value in (0, threshold), every suppressed
//! cell must have a null value, and every primary cell's **exact** feasible interval — min and
//! max of its value over every non-negative table that agrees with the published cells and
//! satisfies the relations `total = Σ parts`, one linear program per bound over the cell's whole
//! connected group of suppressed cells — must be at least the protection range wide. Tables
//! perturbed by the cell key method must publish no 1 or 2. This is independent of the hypercube
//! certificates the run used: it needs neither the true values nor the run's code paths.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use super::{Conf, Grid, Summary, TOTAL_ID, exact_interval};
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

/// Audit every suppressed or cell-key table of the release in `dir`.
pub fn audit_release(dir: &Path) -> Result<Vec<TableCheck>> {
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
        for f in files {
            out.push(check_file(s, &f)?);
        }
    }
    Ok(out)
}

fn check_file(s: &Summary, path: &Path) -> Result<TableCheck> {
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
        // Suppressed cells are the LP's variables: their stored value is never read.
        values.push(value.get(i).unwrap_or(0));
        status.push(st);
    }
    check.primary = status.iter().filter(|s| **s == Conf::Primary).count();
    check.secondary = status.iter().filter(|s| **s == Conf::Secondary).count();
    let grid = Grid::new(cells, values);
    for c in (0..status.len()).filter(|c| status[*c] == Conf::Primary) {
        let (lo, hi) = exact_interval(&grid, &status, c)?;
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
