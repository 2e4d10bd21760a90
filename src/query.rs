//! Query: SQL over a release's public tables, and what each table holds.
//!
//! Input: a release directory (or an output directory: its current release) and a SQL query.
//! Each public table is a SQL table named by its id (`asylum`, `survey_population`, ...), read
//! from its Parquet files, one folder per period (with the period's typed column — `ref_year`, `ref_quarter`,
//! `ref_month` or `ref_date` — included), through polars' SQL engine.
//! Output: a frame, printed as an aligned table, CSV or JSON lines, or written to Parquet.
//! [`describe`] prints the release's tables, or one table's columns and codes with their
//! labels, from the release's `public/datapackage.json`.
//!
//! Only the public tier is visible: restricted files (true values, accepted records) are not
//! registered, so a query cannot reach them.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use polars::sql::SQLContext;

use crate::error::{PolarsContext, Result};

/// The release a path stands for: an output directory's `current` release, else the path itself.
pub fn release_dir(path: &Path) -> PathBuf {
    let current = crate::release::current(path);
    if current.exists() {
        // Resolved once: every file a query reads is then of this one release, even if a run
        // switches `current` meanwhile (a path through the link could reach the next one).
        std::fs::canonicalize(&current).unwrap_or(current)
    } else {
        path.to_path_buf()
    }
}

/// The public tables of a release: (table id, its directory).
pub fn public_tables(release: &Path) -> Result<Vec<(String, PathBuf)>> {
    let dir = crate::layout::Release(release).public_tables();
    let entries = std::fs::read_dir(&dir).map_err(|e| {
        crate::Error::Usage(format!(
            "{}: no public tables ({e}); is this a release or an output directory?",
            release.display()
        ))
    })?;
    let mut out: Vec<(String, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    out.sort();
    Ok(out)
}

/// Run `sql` over the public tables of `release`.
pub fn query(release: &Path, sql: &str) -> Result<DataFrame> {
    let mut ctx = SQLContext::new();
    for (id, dir) in public_tables(release)? {
        // The period's typed column is in the files; the folders are not Hive partitions.
        let args = ScanArgsParquet {
            hive_options: polars::io::HiveOptions {
                enabled: Some(false),
                ..Default::default()
            },
            ..Default::default()
        };
        let lf = LazyFrame::scan_parquet(PlRefPath::new(dir.to_string_lossy().as_ref()), args)
            .ctx(|| format!("reading table {id}"))?;
        ctx.register(&id, lf);
    }
    let tables = ctx.get_tables().join(", ");
    let lf = ctx.execute(sql).map_err(|e| {
        crate::Error::Usage(format!("query: {e}\n(tables in this release: {tables})"))
    })?;
    lf.collect()
        .map_err(|e| crate::Error::Usage(format!("query: {e}\n(tables in this release: {tables})")))
}

fn cell(c: &Column, row: usize) -> String {
    match c.get(row) {
        Ok(AnyValue::Null) | Err(_) => "null".to_string(),
        Ok(v) => v.str_value().into_owned(),
    }
}

/// A frame as an aligned text table (every row; numbers right-aligned).
pub fn aligned(df: &DataFrame) -> String {
    let cols = df.columns();
    let mut cells: Vec<Vec<String>> = vec![cols.iter().map(|c| c.name().to_string()).collect()];
    for r in 0..df.height() {
        cells.push(cols.iter().map(|c| cell(c, r)).collect());
    }
    let widths: Vec<usize> = (0..cols.len())
        .map(|i| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let numeric: Vec<bool> = cols
        .iter()
        .map(|c| c.dtype().is_primitive_numeric())
        .collect();
    let mut s = String::new();
    for (k, row) in cells.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let pad = widths[i] - v.chars().count();
                if numeric[i] && k > 0 {
                    format!("{}{v}", " ".repeat(pad))
                } else {
                    format!("{v}{}", " ".repeat(pad))
                }
            })
            .collect();
        let _ = writeln!(s, "{}", line.join("  ").trim_end());
        if k == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            let _ = writeln!(s, "{}", rule.join("  "));
        }
    }
    let _ = writeln!(s, "({} rows)", df.height());
    s
}

/// A frame as JSON lines: one object per row, columns in order, nulls as `null`.
pub fn json_lines(df: &DataFrame) -> String {
    let cols = df.columns();
    let names: Vec<String> = cols
        .iter()
        .map(|c| serde_json::Value::String(c.name().to_string()).to_string())
        .collect();
    let mut s = String::new();
    for r in 0..df.height() {
        s.push('{');
        for (i, c) in cols.iter().enumerate() {
            let v = match c.get(r) {
                Ok(AnyValue::Null) | Err(_) => serde_json::Value::Null,
                Ok(AnyValue::Boolean(b)) => serde_json::Value::Bool(b),
                Ok(v) if v.dtype().is_unsigned_integer() => v
                    .extract::<u64>()
                    .map_or(serde_json::Value::Null, serde_json::Value::from),
                Ok(v) if v.dtype().is_integer() => v
                    .extract::<i64>()
                    .map_or(serde_json::Value::Null, serde_json::Value::from),
                Ok(v) if v.dtype().is_float() => v
                    .extract::<f64>()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(serde_json::Value::Null, serde_json::Value::Number),
                Ok(v) => serde_json::Value::String(v.str_value().into_owned()),
            };
            if i > 0 {
                s.push(',');
            }
            let _ = write!(s, "{}:{v}", names[i]);
        }
        s.push_str("}\n");
    }
    s
}

/// The release's tables (no `table`), or one table's columns and codes, as text.
pub fn describe(release: &Path, table: Option<&str>) -> Result<String> {
    let path = crate::layout::Release(release).datapackage();
    let text = std::fs::read_to_string(&path).map_err(|e| crate::Error::io(&path, e))?;
    let dp: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| crate::Error::Usage(format!("{}: {e}", path.display())))?;
    let empty = Vec::new();
    let resources = dp["resources"].as_array().unwrap_or(&empty);
    let str_of = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let mut s = String::new();
    match table {
        None => {
            let _ = writeln!(s, "{}\n", str_of(&dp["title"]));
            for r in resources {
                let dims: Vec<String> = r["schema"]["primaryKey"]
                    .as_array()
                    .unwrap_or(&empty)
                    .iter()
                    .map(str_of)
                    .collect();
                let _ = writeln!(
                    s,
                    "{:<24} {}\n{:<24} {} · {} · {} · by {}",
                    str_of(&r["name"]),
                    str_of(&r["title"]),
                    "",
                    str_of(&r["migstat:kind"]),
                    str_of(&r["migstat:unit"]),
                    str_of(&r["migstat:ref_period"]),
                    dims.join(", ")
                );
            }
            let _ = writeln!(
                s,
                "\n`migstat describe TABLE` shows a table's columns and codes; `migstat query \"SELECT ...\"` queries them."
            );
        }
        Some(id) => {
            let Some(r) = resources.iter().find(|r| r["name"] == id) else {
                let names: Vec<String> = resources.iter().map(|r| str_of(&r["name"])).collect();
                return Err(crate::Error::Usage(format!(
                    "no public table `{id}` in {}; tables: {}",
                    release.display(),
                    names.join(", ")
                )));
            };
            let _ = writeln!(s, "{} — {}", id, str_of(&r["title"]));
            let _ = writeln!(
                s,
                "source {} · {} · unit {} · period {}",
                str_of(&r["migstat:source"]),
                str_of(&r["migstat:kind"]),
                str_of(&r["migstat:unit"]),
                str_of(&r["migstat:ref_period"])
            );
            let _ = writeln!(
                s,
                "protection: {}\n\ncolumns:",
                str_of(&r["migstat:protection"])
            );
            let fields = r["schema"]["fields"].as_array().unwrap_or(&empty);
            for f in fields {
                let _ = writeln!(
                    s,
                    "  {:<20} {:<8} {}",
                    str_of(&f["name"]),
                    str_of(&f["type"]),
                    str_of(&f["description"])
                );
            }
            for f in fields {
                let Some(labels) = f["migstat:labels"].as_object() else {
                    continue;
                };
                let _ = writeln!(
                    s,
                    "\n{} — {} ({} codes):",
                    str_of(&f["name"]),
                    str_of(&f["title"]),
                    labels.len()
                );
                // Codes in the codebook's order (age bands youngest first): `categories`.
                let order: Vec<String> = f["categories"]
                    .as_array()
                    .unwrap_or(&empty)
                    .iter()
                    .map(|c| str_of(&c["value"]))
                    .collect();
                for code in &order {
                    let l = &labels[code];
                    let mut line = format!("  {code:<12} {}", str_of(&l["en"]));
                    for lang in ["fr", "ar"] {
                        if let Some(t) = l[lang].as_str() {
                            line.push_str(&format!(" | {t}"));
                        }
                    }
                    let _ = writeln!(s, "{line}");
                }
            }
        }
    }
    Ok(s)
}
