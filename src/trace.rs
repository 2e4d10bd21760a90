//! Cell lineage: where a published number comes from (`migstat trace`).
//!
//! Input: a release directory, the plan it was computed from (its spec hash is checked against
//! the release's manifest), a table, a period and a cell (a code per dimension, `_T` for the
//! others). Output: a [`Trace`] — the published value and its flags; the source and its
//! description; for each dimension the rule that gives the cell's code (the crosswalk rows that
//! map to it, or the derivation); the protection method and what it did to this cell as the
//! public flags say. With the restricted tier (`restricted = true`): the deliveries (path,
//! bytes, blake3), the cell's true value, the protection rule that fired (from the audit), and
//! the records that make the cell — each counted unit's file, line and record id, recomputed from
//! the accepted records by the table's own definition (filter, period, one record per person,
//! stock date, first permit, migration), so their number is the true value.
//!
//! The public part carries nothing a public file does not already say: no delivery path, no
//! hash, no true value, no primary/secondary distinction.

use std::path::Path;

use polars::prelude::*;
use serde::Serialize;

use crate::error::{Error, PolarsContext, Result};
use crate::spec::{Derivation, Plan, TableSpec};
use crate::vocab::TOTAL;

/// Records listed in a trace (all are counted; the list is capped).
pub const DEFAULT_RECORDS: usize = 100;

#[derive(Debug, Clone, Serialize)]
pub struct Trace {
    pub release: String,
    pub table: String,
    pub title: String,
    pub kind: String,
    pub unit: String,
    pub period: String,
    /// The cell: every dimension with its code (`_T`: all codes).
    pub cell: Vec<(String, String)>,
    /// The published value (`None`: suppressed or withheld), `OBS_STATUS`, `CONF_STATUS`.
    pub published: Option<f64>,
    pub obs_status: String,
    pub conf_status: String,
    pub file: String,
    pub source: SourceTrace,
    /// How each dimension's code is obtained.
    pub rules: Vec<RuleTrace>,
    pub protection: ProtectionTrace,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restricted: Option<RestrictedTrace>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SourceTrace {
    pub id: String,
    pub description: Option<String>,
    /// The table's filter (`column in [codes]`), if any.
    pub filter: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RuleTrace {
    pub dimension: String,
    pub code: String,
    /// What the derivation does (the codebook's words).
    pub derivation: String,
    /// Crosswalk rows mapping a raw value to this code (normalized raw values), capped.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub crosswalk_rows: Vec<String>,
    pub crosswalk_rows_total: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProtectionTrace {
    pub method: String,
    pub description: String,
    /// What happened to this cell, as the public flags say.
    pub outcome: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RestrictedTrace {
    pub deliveries: Vec<crate::manifest::InputFile>,
    pub rows_read: u64,
    pub rows_accepted: u64,
    /// The cell's true value (restricted table's `n`).
    pub true_value: Option<u64>,
    /// The protection rule that fired for the cell (audit: `threshold`, `secondary`, `none`, …).
    pub rule: Option<String>,
    /// Counted units making the cell (their number is the true value).
    pub records: u64,
    /// The first of them: (file, line, record id).
    pub record_keys: Vec<RecordKey>,
    /// What the records are where they are not the cell's count (a survey's respondents).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RecordKey {
    pub file: String,
    pub line: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

fn usage(msg: String) -> Error {
    Error::Usage(msg)
}

/// Trace the cell of `table` with `codes` (dimension → code; the others `_T`) in `period` (its
/// label, `2024`, `2024-Q1`, `2024-12-31`; default: the table's last period) of `release`.
pub fn trace(
    plan: &Plan,
    release: &Path,
    table: &str,
    codes: &[(String, String)],
    period: Option<&str>,
    restricted: bool,
    max_records: usize,
) -> Result<Trace> {
    let rel = crate::layout::Release(release);
    let manifest = crate::release::read_manifest(release)?;
    if manifest.pipeline_hash != plan.spec_hash {
        return Err(usage(format!(
            "release {} was computed from another version of the spec (or its schemas and code lists) than {}: trace it with the spec it was made from (--pipeline)",
            manifest.run_id,
            plan.spec_path.display()
        )));
    }
    let t = plan.tables.iter().find(|t| t.id == table).ok_or_else(|| {
        usage(format!(
            "no table `{}` in the spec (tables: {})",
            crate::spec::cap(table),
            crate::spec::cap(
                &plan
                    .tables
                    .iter()
                    .map(|t| t.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        ))
    })?;
    for (d, _) in codes {
        if !t.dimensions.contains(d) {
            return Err(usage(format!(
                "table {table} has no dimension `{}` (its dimensions: {})",
                crate::spec::cap(d),
                t.dimensions.join(", ")
            )));
        }
    }
    let cell: Vec<(String, String)> = t
        .dimensions
        .iter()
        .map(|d| {
            let code = codes
                .iter()
                .find(|(x, _)| x == d)
                .map_or(TOTAL.to_string(), |(_, c)| c.clone());
            (d.clone(), code)
        })
        .collect();
    let (index, p) = match period {
        None => t
            .periods
            .list
            .iter()
            .enumerate()
            .next_back()
            .ok_or_else(|| usage(format!("table {table} has no period")))?,
        Some(label) => t
            .periods
            .list
            .iter()
            .enumerate()
            .find(|(_, p)| p.label() == label || p.partition() == label || p.column() == label)
            .ok_or_else(|| {
                usage(format!(
                    "table {table} has no period `{}` (its periods: {})",
                    crate::spec::cap(label),
                    crate::spec::cap(
                        &t.periods
                            .list
                            .iter()
                            .map(|p| p.label())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                ))
            })?,
    };
    let part = p.partition();

    // The published cell.
    let public = rel.public_table(table, &part);
    if !public.is_file() {
        return Err(usage(format!(
            "{} is not published in release {} (restricted only, or not in this release)",
            table, manifest.run_id
        )));
    }
    let frame = read(&public)?;
    let row = find_row(&frame, &cell).ok_or_else(|| {
        usage(format!(
            "table {table} has no cell {} in period {}",
            crate::spec::cap(&cell_text(&cell)),
            p.label()
        ))
    })?;
    let measure = if t.kind.is_survey() {
        "estimate"
    } else {
        "value"
    };
    let published = frame
        .column(measure)
        .and_then(|c| c.cast(&DataType::Float64))
        .ok()
        .and_then(|c| c.f64().ok().and_then(|v| v.get(row)));
    let text_at = |name: &str| -> String {
        frame
            .column(name)
            .ok()
            .and_then(|c| c.str().ok().and_then(|s| s.get(row).map(str::to_string)))
            .unwrap_or_default()
    };
    let (obs_status, conf_status) = (text_at("OBS_STATUS"), text_at("CONF_STATUS"));
    let unit = text_at("unit");

    // Rules and protection, from the plan (what the codebook says).
    let source = plan
        .sources
        .iter()
        .find(|s| s.id == t.source)
        .ok_or_else(|| Error::Internal(format!("table {table}: no source {}", t.source)))?;
    let rules = cell.iter().map(|(d, c)| rule(plan, source, d, c)).collect();
    let doc_protection = crate::export::codebook::protection_text(plan, t);
    let method = if t.kind.is_survey() {
        crate::manifest::Method::SurveyQuality.name().to_string()
    } else {
        t.protect.as_ref().map_or("none".to_string(), |p| {
            crate::manifest::Method::from(p.method).name().to_string()
        })
    };
    let outcome = match (conf_status.as_str(), obs_status.as_str(), published) {
        ("C", _, _) => "suppressed: confidential (too few contributors, or needed to protect such a cell: the two are not told apart)".to_string(),
        (_, "U", None) => "withheld: too unreliable (survey CV above the suppression limit)".to_string(),
        (_, "U", Some(_)) => "published, flagged low reliability (CV above the caution limit)".to_string(),
        (_, "P", _) => "published, provisional (the period is not closed yet)".to_string(),
        _ => "published".to_string(),
    };

    let restricted = if restricted {
        Some(restricted_part(
            release,
            &manifest,
            source,
            t,
            (index, &part),
            &cell,
            max_records,
        )?)
    } else {
        None
    };
    Ok(Trace {
        release: manifest.run_id.clone(),
        table: table.to_string(),
        title: t.title.clone().unwrap_or_else(|| t.id.clone()),
        kind: t.kind.name().to_string(),
        unit,
        period: p.column(),
        cell,
        published,
        obs_status,
        conf_status,
        file: crate::export::relative(&public, release),
        source: SourceTrace {
            id: source.id.clone(),
            description: source.description.clone(),
            filter: t
                .filter
                .iter()
                .map(|(c, v)| {
                    format!(
                        "{c} in [{}]",
                        v.iter().cloned().collect::<Vec<_>>().join(", ")
                    )
                })
                .collect(),
        },
        rules,
        protection: ProtectionTrace {
            method,
            description: doc_protection,
            outcome,
        },
        restricted,
    })
}

fn read(path: &Path) -> Result<DataFrame> {
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    ParquetReader::new(f)
        .finish()
        .ctx(|| format!("reading {}", path.display()))
}

fn cell_text(cell: &[(String, String)]) -> String {
    cell.iter()
        .map(|(d, c)| format!("{d}={c}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The row of `frame` whose dimension columns hold the cell's codes.
fn find_row(frame: &DataFrame, cell: &[(String, String)]) -> Option<usize> {
    let cols: Vec<&StringChunked> = cell
        .iter()
        .map(|(d, _)| frame.column(d).ok().and_then(|c| c.str().ok()))
        .collect::<Option<_>>()?;
    (0..frame.height()).find(|&i| {
        cols.iter()
            .zip(cell)
            .all(|(c, (_, code))| c.get(i) == Some(code.as_str()))
    })
}

/// How the code `code` of dimension `dim` is obtained.
fn rule(plan: &Plan, source: &crate::spec::SourcePlan, dim: &str, code: &str) -> RuleTrace {
    let derived = source.harmonize.iter().find(|d| d.name == dim);
    let mut rows = Vec::new();
    if code != TOTAL
        && let Some(Derivation::Code { map, .. }) = derived.map(|d| &d.derivation)
    {
        rows = map
            .iter()
            .filter(|(_, c)| c.as_str() == code)
            .map(|(raw, _)| crate::spec::cap(raw))
            .collect();
    }
    let total = rows.len();
    rows.truncate(20);
    RuleTrace {
        dimension: dim.to_string(),
        code: code.to_string(),
        derivation: if code == TOTAL {
            "all codes (the margin)".to_string()
        } else {
            crate::export::codebook::derivation_text(plan, Some(source), dim)
        },
        crosswalk_rows: rows,
        crosswalk_rows_total: total,
    }
}

/// What only the restricted tier can say: deliveries, true value, the rule that fired, records.
fn restricted_part(
    release: &Path,
    manifest: &crate::manifest::Manifest,
    source: &crate::spec::SourcePlan,
    t: &TableSpec,
    (index, part): (usize, &str),
    cell: &[(String, String)],
    max_records: usize,
) -> Result<RestrictedTrace> {
    let rel = crate::layout::Release(release);
    let report = manifest.sources.iter().find(|s| s.id == source.id);
    let truth = rel.restricted_table(&t.id, part);
    let true_value = if truth.is_file() {
        let f = read(&truth)?;
        find_row(&f, cell).and_then(|i| {
            f.column(crate::vocab::column::COUNT)
                .ok()
                .and_then(|c| c.cast(&DataType::Int64).ok())
                .and_then(|c| c.i64().ok().and_then(|v| v.get(i)))
                .and_then(|v| u64::try_from(v).ok())
        })
    } else {
        None
    };
    let audit = rel.audit(&t.id, part);
    let rule = if audit.is_file() {
        let f = read(&audit)?;
        find_row(&f, cell).and_then(|i| {
            f.column("rule")
                .ok()
                .and_then(|c| c.str().ok().and_then(|s| s.get(i).map(str::to_string)))
        })
    } else {
        None
    };
    // As many parts as the release's deliveries (the spec's glob may match more files now).
    let files = report.map_or(source.files.len(), |r| r.files.len());
    let accepted = rel.accepted_parts(&source.id, files);
    let units = crate::disaggregate::units(source, t, &accepted)?;
    let keys = matching(&units, cell, index, source)?;
    let records = keys.len() as u64;
    let record_keys = keys.into_iter().take(max_records).collect();
    let note = t.kind.is_survey().then(|| {
        "the respondents of the cell (its unweighted n); the estimate weighs them by the design's weights".to_string()
    });
    Ok(RestrictedTrace {
        deliveries: report.map(|r| r.files.clone()).unwrap_or_default(),
        rows_read: report.map_or(0, |r| r.rows_read),
        rows_accepted: report.map_or(0, |r| r.rows_accepted),
        true_value,
        rule,
        records,
        record_keys,
        note,
    })
}

/// The counted units of the cell: those of period `index` whose codes are the cell's (any code
/// where the cell has `_T`), in delivery order.
fn matching(
    units: &DataFrame,
    cell: &[(String, String)],
    index: usize,
    source: &crate::spec::SourcePlan,
) -> Result<Vec<RecordKey>> {
    let ctx = || "the records of the cell".to_string();
    let mut keep = col(crate::disaggregate::PERIOD).eq(lit(index as u32));
    for (d, c) in cell {
        if c != TOTAL {
            keep = keep.and(col(d.as_str()).eq(lit(c.as_str())));
        }
    }
    let id = source.record_id.as_deref().map(crate::vocab::raw_column);
    let df = units
        .clone()
        .lazy()
        .filter(keep)
        .sort(["_file", "_record"], SortMultipleOptions::default())
        .collect()
        .ctx(ctx)?;
    let file = df.column("_file").and_then(|c| c.str().cloned()).ctx(ctx)?;
    let line = df
        .column("_line")
        .and_then(|c| c.cast(&DataType::Int64))
        .ctx(ctx)?;
    let line = line.i64().ctx(ctx)?;
    let ids = match &id {
        Some(c) => Some(
            df.column(c)
                .and_then(|c| c.cast(&DataType::String))
                .ctx(ctx)?,
        ),
        None => None,
    };
    Ok((0..df.height())
        .map(|i| RecordKey {
            file: file.get(i).unwrap_or_default().to_string(),
            line: line.get(i).unwrap_or_default(),
            id: ids
                .as_ref()
                .and_then(|c| c.str().ok().and_then(|s| s.get(i).map(str::to_string))),
        })
        .collect())
}

/// The trace as text.
pub fn text(t: &Trace) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "cell      {} {} {}",
        t.table,
        t.period,
        cell_text(&t.cell)
    );
    let _ = writeln!(
        s,
        "published {} (OBS_STATUS {}, CONF_STATUS {}) in {} of release {}",
        t.published
            .map_or("— (empty)".to_string(), |v| format!("{v}")),
        t.obs_status,
        t.conf_status,
        t.file,
        t.release
    );
    let _ = writeln!(
        s,
        "table     {}: {} ({}, {})",
        t.table, t.title, t.kind, t.unit
    );
    let _ = writeln!(
        s,
        "source    {}{}",
        t.source.id,
        t.source
            .description
            .as_ref()
            .map(|d| format!(" — {d}"))
            .unwrap_or_default()
    );
    for f in &t.source.filter {
        let _ = writeln!(s, "filter    {f}");
    }
    let _ = writeln!(s, "rules");
    for r in &t.rules {
        let _ = writeln!(s, "  {} = {}: {}", r.dimension, r.code, r.derivation);
        if r.crosswalk_rows_total > 0 {
            let more = r.crosswalk_rows_total - r.crosswalk_rows.len();
            let _ = writeln!(
                s,
                "      crosswalk rows mapping to {}: {}{}",
                r.code,
                r.crosswalk_rows.join(", "),
                if more > 0 {
                    format!(" … and {more} more")
                } else {
                    String::new()
                }
            );
        }
    }
    let _ = writeln!(
        s,
        "protection {}: {}\n  this cell: {}",
        t.protection.method, t.protection.description, t.protection.outcome
    );
    if let Some(r) = &t.restricted {
        let _ = writeln!(s, "restricted");
        for d in &r.deliveries {
            let _ = writeln!(
                s,
                "  delivery  {} ({} bytes, blake3 {})",
                d.path, d.bytes, d.blake3
            );
        }
        let _ = writeln!(
            s,
            "  rows      {} read, {} accepted",
            r.rows_read, r.rows_accepted
        );
        let _ = writeln!(
            s,
            "  true value {}; rule that fired: {}",
            r.true_value
                .map_or("unknown".to_string(), |v| v.to_string()),
            r.rule.as_deref().unwrap_or("(no audit row)")
        );
        if let Some(n) = &r.note {
            let _ = writeln!(s, "  records   {n}");
        }
        let _ = writeln!(
            s,
            "  records   {} counted{}:",
            r.records,
            if r.record_keys.len() < r.records as usize {
                format!(", the first {} listed", r.record_keys.len())
            } else {
                String::new()
            }
        );
        for k in &r.record_keys {
            let _ = writeln!(
                s,
                "    {}:{}{}",
                k.file,
                k.line,
                k.id.as_ref().map(|i| format!("  {i}")).unwrap_or_default()
            );
        }
    }
    s
}
