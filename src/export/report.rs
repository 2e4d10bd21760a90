//! HTML report of a release: `report/index.html`, one self-contained page (inline CSS and SVG,
//! no network, a content security policy that forbids any fetch).
//!
//! Input: the release's [`TableDoc`]s, its manifest and the output directory's run history.
//! Output: population pyramids (sex × age band) for each table that has both, and within it for
//! each migrant population (each code of a migration-status dimension); every table's one-way
//! margins with their quality flags, suppressed cells shown as such; the validation summary
//! (rows, quarantine counts by rule, unmapped codes) and its trend over the last runs.
//!
//! The page is a pure function of those inputs: the same release and history give the same
//! bytes. A few lines of script only check, once loaded, that each pyramid has bars (the
//! headless-browser test reads the result from the `body` element's data attributes).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use polars::prelude::*;

use crate::export::codebook::{DimDoc, TableDoc};
use crate::export::escape_markup as esc;
use crate::manifest::Manifest;
use crate::manifest::{HistoryRecord, RunStatus};

/// Runs of the history shown in the trend.
const TREND_RUNS: usize = 10;
/// Codes listed per dimension in a margin table.
const MAX_CODES: usize = 40;
/// Pyramids per table (one per migrant population).
const MAX_PYRAMIDS: usize = 8;

/// Whether a table's values are shown with decimals: estimated means, shares and ratios; counts
/// and estimated totals are shown as whole numbers.
fn decimals(d: &TableDoc) -> bool {
    !d.unit_measure.whole()
}

fn fmt_value(v: f64, decimals: bool) -> String {
    if !decimals || (v.fract() == 0.0 && v.abs() >= 1.0) {
        // Thousands separated by a thin space.
        let n = v.round() as i64;
        let s = n.abs().to_string();
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                out.push('\u{202f}');
            }
            out.push(c);
        }
        if n < 0 { format!("-{out}") } else { out }
    } else if v.abs() < 1.0 {
        format!("{v:.3}")
    } else {
        format!("{v:.1}")
    }
}

/// One table's cells, indexed by their codes.
struct Cells<'a> {
    doc: &'a TableDoc,
    dims: Vec<&'a StringChunked>,
    value: Float64Chunked,
    obs: &'a StringChunked,
    conf: &'a StringChunked,
    cv: Option<Float64Chunked>,
    index: BTreeMap<Vec<&'a str>, usize>,
}

impl<'a> Cells<'a> {
    fn new(doc: &'a TableDoc) -> Option<Self> {
        let f = &doc.frame;
        let dims: Vec<&StringChunked> = doc
            .dimensions
            .iter()
            .map(|d| f.column(&d.id).ok().and_then(|c| c.str().ok()))
            .collect::<Option<_>>()?;
        let value = f
            .column(&doc.measure)
            .ok()?
            .cast(&DataType::Float64)
            .ok()?
            .f64()
            .ok()?
            .clone();
        let obs = f.column("OBS_STATUS").ok()?.str().ok()?;
        let conf = f.column("CONF_STATUS").ok()?.str().ok()?;
        let cv = f
            .column("cv")
            .ok()
            .and_then(|c| c.cast(&DataType::Float64).ok())
            .and_then(|c| c.f64().ok().cloned());
        // A series shows its latest period (the last partition).
        let periods = f.column("ref_period").ok().and_then(|c| c.str().ok());
        let latest = periods.and_then(|p| p.get(f.height().checked_sub(1)?));
        let mut index = BTreeMap::new();
        for i in 0..f.height() {
            if periods.map(|p| p.get(i)) != latest.map(Some) {
                continue;
            }
            let key: Vec<&str> = dims.iter().map(|c| c.get(i).unwrap_or_default()).collect();
            index.insert(key, i);
        }
        Some(Cells {
            doc,
            dims,
            value,
            obs,
            conf,
            cv,
            index,
        })
    }

    /// The row of the cell with `fixed` codes on the given dimensions and `_T` elsewhere.
    fn at(&self, fixed: &[(usize, &str)]) -> Option<usize> {
        let key: Vec<&str> = (0..self.dims.len())
            .map(|i| {
                fixed
                    .iter()
                    .find(|(j, _)| *j == i)
                    .map_or(crate::vocab::TOTAL, |(_, c)| c)
            })
            .collect();
        self.index.get(&key).copied()
    }

    fn cell_html(&self, row: Option<usize>) -> String {
        let Some(i) = row else {
            return "<td class=\"num\">–</td><td></td>".to_string();
        };
        let conf = self.conf.get(i).unwrap_or_default();
        let obs = self.obs.get(i).unwrap_or_default();
        let flags = format!("{obs}/{conf}");
        match self.value.get(i) {
            None => format!(
                "<td class=\"num suppressed\" title=\"{}\">x</td><td class=\"flag\">{flags}</td>",
                if conf == "C" {
                    "confidential"
                } else {
                    "withheld: too unreliable"
                }
            ),
            Some(v) => {
                let cv = self
                    .cv
                    .as_ref()
                    .and_then(|c| c.get(i))
                    .map(|c| format!(" <span class=\"cv\">CV {:.0}%</span>", c * 100.0))
                    .unwrap_or_default();
                let class = if obs == "U" { "num unreliable" } else { "num" };
                format!(
                    "<td class=\"{class}\">{}{cv}</td><td class=\"flag\">{flags}</td>",
                    fmt_value(v, decimals(self.doc))
                )
            }
        }
    }
}

fn label(dim: &DimDoc, code: &str) -> String {
    dim.codes
        .iter()
        .find(|(c, _)| c == code)
        .map_or(code.to_string(), |(_, l)| l.en.clone())
}

/// A pyramid: males left, females right, one row per age band (youngest at the bottom).
fn pyramid(
    cells: &Cells<'_>,
    sex: usize,
    age: usize,
    fixed: &[(usize, &str)],
    title: &str,
) -> String {
    let age_dim = &cells.doc.dimensions[age];
    // The codebook lists bands youngest first.
    let bands: Vec<&str> = age_dim
        .codes
        .iter()
        .map(|(c, _)| c.as_str())
        .filter(|c| *c != crate::vocab::TOTAL && *c != crate::vocab::UNKNOWN)
        .collect();
    // A cell's value; `None` when suppressed, 0 when the cube has no such cell.
    let value = |s: &str, b: &str| -> Option<f64> {
        let mut f = fixed.to_vec();
        f.push((sex, s));
        f.push((age, b));
        match cells.at(&f) {
            Some(i) => cells.value.get(i),
            None => Some(0.0),
        }
    };
    let rows: Vec<(&str, Option<f64>, Option<f64>)> = bands
        .iter()
        .map(|b| (*b, value("M", b), value("F", b)))
        .collect();
    let largest = rows
        .iter()
        .flat_map(|(_, m, f)| [*m, *f])
        .flatten()
        .fold(None, |a: Option<f64>, v| Some(a.map_or(v, |a| a.max(v))));
    let max = largest.unwrap_or(0.0).max(f64::MIN_POSITIVE);
    let (row_h, half, label_w, top) = (18.0, 190.0, 120.0, 30.0);
    let width = 2.0 * half + label_w + 20.0;
    let height = top + row_h * rows.len() as f64 + 30.0;
    let cx = 10.0 + half + label_w / 2.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<figure><svg class=\"pyramid\" role=\"img\" viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\" xmlns=\"http://www.w3.org/2000/svg\"><title>{}</title>",
        esc(title)
    );
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"18\" text-anchor=\"middle\" class=\"axis\">Males</text><text x=\"{}\" y=\"18\" text-anchor=\"middle\" class=\"axis\">Females</text>",
        10.0 + half / 2.0,
        cx + label_w / 2.0 + half / 2.0
    );
    for (k, (band, m, f)) in rows.iter().rev().enumerate() {
        let y = top + row_h * k as f64;
        let _ = writeln!(
            s,
            "<text x=\"{cx}\" y=\"{}\" text-anchor=\"middle\" class=\"band\">{}</text>",
            y + row_h * 0.7,
            esc(&label(age_dim, band))
        );
        for (side, v, sexname) in [(-1.0, m, "Males"), (1.0, f, "Females")] {
            let x0 = if side < 0.0 {
                cx - label_w / 2.0
            } else {
                cx + label_w / 2.0
            };
            match v {
                Some(v) => {
                    let w = half * v / max;
                    let x = if side < 0.0 { x0 - w } else { x0 };
                    let class = if side < 0.0 { "bar male" } else { "bar female" };
                    let _ = writeln!(
                        s,
                        "<rect class=\"{class}\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{:.1}\"><title>{sexname}, {}: {}</title></rect>",
                        y + 1.0,
                        row_h - 2.0,
                        esc(&label(age_dim, band)),
                        fmt_value(*v, decimals(cells.doc))
                    );
                }
                None => {
                    // Suppressed: an outlined marker, never a value.
                    let x = if side < 0.0 { x0 - 24.0 } else { x0 };
                    let _ = writeln!(
                        s,
                        "<rect class=\"bar suppressed\" x=\"{x:.1}\" y=\"{:.1}\" width=\"24\" height=\"{:.1}\"><title>{sexname}, {}: suppressed</title></rect><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" class=\"x\">x</text>",
                        y + 1.0,
                        row_h - 2.0,
                        esc(&label(age_dim, band)),
                        x + 12.0,
                        y + row_h * 0.72
                    );
                }
            }
        }
    }
    let _ = writeln!(
        s,
        "<text x=\"{cx}\" y=\"{}\" text-anchor=\"middle\" class=\"axis\">largest bar: {}</text></svg><figcaption>{}</figcaption></figure>",
        height - 8.0,
        largest.map_or("none published".to_string(), |v| fmt_value(
            v,
            decimals(cells.doc)
        )),
        esc(title)
    );
    s
}

/// The pyramids of one table: the whole population, then each migrant population.
fn pyramids(cells: &Cells<'_>) -> Vec<String> {
    let d = cells.doc;
    let Some(sex) = d.dimensions.iter().position(|x| x.id == "SEX") else {
        return Vec::new();
    };
    let Some(age) = d
        .dimensions
        .iter()
        .position(|x| x.codelist.starts_with("CL_AGE"))
    else {
        return Vec::new();
    };
    let mut out = vec![pyramid(cells, sex, age, &[], &format!("{}: all", d.title))];
    if let Some(pop) = d
        .dimensions
        .iter()
        .position(|x| x.codelist == "CL_MIGRATION_STATUS")
    {
        let dim = &d.dimensions[pop];
        for (code, l) in dim
            .codes
            .iter()
            .filter(|(c, _)| c != crate::vocab::TOTAL)
            .take(MAX_PYRAMIDS)
        {
            out.push(pyramid(
                cells,
                sex,
                age,
                &[(pop, code.as_str())],
                &format!("{}: {}", d.title, l.en),
            ));
        }
    }
    out
}

fn margins(cells: &Cells<'_>) -> String {
    let d = cells.doc;
    let mut s = String::new();
    let total = cells.at(&[]);
    let _ = writeln!(
        s,
        "<table class=\"cells\"><tr><th>Total</th><th></th>{}</tr></table>",
        cells.cell_html(total)
    );
    for (i, dim) in d.dimensions.iter().enumerate() {
        let _ = writeln!(
            s,
            "<details><summary>by {} ({} codes)</summary><table class=\"cells\"><thead><tr><th>code</th><th>label</th><th>{}</th><th>flags</th></tr></thead><tbody>",
            esc(&dim.name),
            dim.codes.len(),
            esc(&d.measure)
        );
        let codes: Vec<&(String, _)> = dim
            .codes
            .iter()
            .filter(|(c, _)| c != crate::vocab::TOTAL)
            .collect();
        for (code, l) in codes.iter().take(MAX_CODES) {
            let _ = writeln!(
                s,
                "<tr><td><code>{}</code></td><td>{}</td>{}</tr>",
                esc(code),
                esc(&l.en),
                cells.cell_html(cells.at(&[(i, code.as_str())]))
            );
        }
        if codes.len() > MAX_CODES {
            let _ = writeln!(
                s,
                "<tr><td colspan=\"4\">… {} more codes in the table files</td></tr>",
                codes.len() - MAX_CODES
            );
        }
        s.push_str("</tbody></table></details>\n");
    }
    s
}

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#1b1b1b;padding:0 1rem}
h1{font-size:1.6rem}h2{margin-top:2.2rem;border-bottom:1px solid #ccc}h3{margin-top:1.6rem}
table{border-collapse:collapse;margin:.5rem 0}td,th{padding:2px 8px;border-bottom:1px solid #eee;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}td.suppressed{color:#a33;font-weight:bold}
td.unreliable{color:#8a6d00}td.flag{color:#777;font-size:12px}.cv{color:#777;font-size:12px}
.pyramids{display:flex;flex-wrap:wrap;gap:1rem}figure{margin:0}figcaption{font-size:12px;color:#555;text-align:center}
rect.male{fill:#3b6ea8}rect.female{fill:#c0504d}rect.suppressed{fill:none;stroke:#a33;stroke-dasharray:3 2}
text{font:11px system-ui,sans-serif;fill:#333}text.x{fill:#a33;font-weight:bold}text.axis{fill:#555}
.legend{color:#555;font-size:13px}.bad{color:#a33}";

const CHECK: &str = "window.migstatErrors=[];window.addEventListener('error',function(e){window.migstatErrors.push(String(e.message))});
document.addEventListener('DOMContentLoaded',function(){var p=document.querySelectorAll('svg.pyramid'),d=0;
for(var i=0;i<p.length;i++){if(p[i].querySelectorAll('rect.bar').length>0)d++}
document.body.setAttribute('data-pyramids',String(p.length));document.body.setAttribute('data-drawn',String(d));
document.body.setAttribute('data-errors',String(window.migstatErrors.length));});";

/// A run in the trend: its id, status, and per source (quarantined, read).
type TrendRow = (String, RunStatus, BTreeMap<String, (u64, u64)>);

/// The report page.
pub fn html(
    plan: &crate::spec::Plan,
    manifest: &Manifest,
    docs: &[TableDoc],
    history: &[HistoryRecord],
) -> String {
    let title = plan.title.as_deref().unwrap_or(&plan.pipeline_id);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{} — {}</title>\n<style>{STYLE}</style>\n<script>{CHECK}</script>\n</head><body>",
        esc(title),
        esc(&manifest.reference_date)
    );
    let _ = writeln!(
        s,
        "<h1>{}</h1>\n<p>Pipeline <code>{}</code>, content key <code>{}</code>, migstat {}. Reference date {}; reference period {} to {}.</p>",
        esc(title),
        esc(&plan.pipeline_id),
        esc(crate::export::codebook::short_key(&manifest.run_key)),
        crate::VERSION,
        esc(&manifest.reference_date),
        esc(&manifest.reference_period[0]),
        esc(&manifest.reference_period[1])
    );
    s.push_str("<p class=\"legend\">Flags: OBS_STATUS / CONF_STATUS. <b>x</b> = suppressed to protect confidentiality (A primary: too few persons; D secondary: would let a primary cell be recomputed). U = low reliability (survey CV above the caution limit). Counts may be rounded or perturbed; see each table's protection.</p>\n");

    let all: Vec<Cells<'_>> = docs.iter().filter_map(Cells::new).collect();
    s.push_str("<h2 id=\"pyramids\">Population pyramids</h2>\n");
    for c in &all {
        let p = pyramids(c);
        if p.is_empty() {
            continue;
        }
        let _ = writeln!(
            s,
            "<h3 id=\"p-{}\">{} <small>({})</small></h3><div class=\"pyramids\">",
            esc(&c.doc.id),
            esc(&c.doc.title),
            esc(&c.doc.unit)
        );
        for svg in p {
            s.push_str(&svg);
        }
        s.push_str("</div>\n");
    }

    s.push_str("<h2 id=\"tables\">Tables</h2>\n");
    for c in &all {
        let d = c.doc;
        let _ = writeln!(
            s,
            "<h3 id=\"t-{}\">{} <small><code>{}</code></small></h3>\n<p class=\"legend\">{}; {}; {}. Protection: {}.{}</p>",
            esc(&d.id),
            esc(&d.title),
            esc(&d.id),
            esc(&d.kind),
            esc(&d.unit),
            esc(&match d.periods.len() {
                0 | 1 => d.ref_period.clone(),
                _ => format!(
                    "{}; shown: {}",
                    d.ref_period,
                    d.periods.last().map_or("", String::as_str)
                ),
            }),
            esc(&d.protection),
            d.protection_summary
                .as_ref()
                .filter(|p| p.primary + p.secondary > 0)
                .map(|p| format!(
                    " {} of {} cells suppressed ({} primary, {} secondary); audit {}.",
                    p.primary + p.secondary,
                    p.cells,
                    p.primary,
                    p.secondary,
                    if p.audit_passed { "passed" } else { "failed" }
                ))
                .unwrap_or_default()
        );
        s.push_str(&margins(c));
    }

    s.push_str("<h2 id=\"validation\">Validation</h2>\n<table><thead><tr><th>source</th><th class=\"num\">rows read</th><th class=\"num\">accepted</th><th class=\"num\">quarantined</th><th>by rule</th></tr></thead><tbody>\n");
    for src in &manifest.sources {
        let rules = src
            .quarantine_by_rule
            .iter()
            .map(|(r, n)| format!("{} {}", esc(r), fmt_value(*n as f64, false)))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            esc(&src.id),
            fmt_value(src.rows_read as f64, false),
            fmt_value(src.rows_accepted as f64, false),
            fmt_value(src.rows_quarantined as f64, false),
            rules
        );
    }
    s.push_str("</tbody></table>\n<h3>Unmapped codes</h3>\n");
    let unmapped: Vec<(&str, &crate::harmonize::UnmappedValue)> = manifest
        .sources
        .iter()
        .flat_map(|src| src.unmapped_codes.iter().map(move |u| (src.id.as_str(), u)))
        .collect();
    if unmapped.is_empty() {
        s.push_str("<p>None: every raw code was mapped.</p>\n");
    } else {
        s.push_str("<table><thead><tr><th>source</th><th>column</th><th>raw value</th><th class=\"num\">rows</th><th>action</th></tr></thead><tbody>\n");
        for (src, u) in unmapped.iter().take(50) {
            let _ = writeln!(
                s,
                "<tr><td>{}</td><td>{} ← {}</td><td><code>{}</code></td><td class=\"num\">{}</td><td>{}</td></tr>",
                esc(src),
                esc(&u.column),
                esc(&u.field),
                esc(&u.raw),
                fmt_value(u.count as f64, false),
                esc(&u.action)
            );
        }
        s.push_str("</tbody></table>\n");
        let left: u64 = manifest
            .sources
            .iter()
            .map(|x| x.unmapped_omitted)
            .sum::<u64>()
            + unmapped.len().saturating_sub(50) as u64;
        if left > 0 {
            let _ = writeln!(
                s,
                "<p class=\"legend\">… and {left} more unmapped values, the most frequent first in <code>manifest.json</code> (<code>unmapped_codes</code>); the quarantine holds every one.</p>"
            );
        }
    }

    // Trend: the last runs of the history, then this one.
    s.push_str("<h3>Trend over the last runs</h3>\n<p class=\"legend\">Rows quarantined / rows read per source and run (this release last).</p>\n");
    let mut runs: Vec<TrendRow> = history
        .iter()
        .filter(|h| !h.sources.is_empty())
        .map(|h| {
            (
                h.run_id.clone(),
                h.status,
                h.sources
                    .iter()
                    .map(|x| (x.id.clone(), (x.rows_quarantined, x.rows_read)))
                    .collect(),
            )
        })
        .collect();
    runs.push((
        "this release".to_string(),
        RunStatus::Succeeded,
        manifest
            .sources
            .iter()
            .map(|x| (x.id.clone(), (x.rows_quarantined, x.rows_read)))
            .collect(),
    ));
    let start = runs.len().saturating_sub(TREND_RUNS);
    let runs = &runs[start..];
    s.push_str("<table><thead><tr><th>run</th><th>status</th>");
    for src in &manifest.sources {
        let _ = write!(s, "<th class=\"num\">{}</th>", esc(&src.id));
    }
    s.push_str("</tr></thead><tbody>\n");
    for (id, status, by) in runs {
        let _ = write!(
            s,
            "<tr><td><code>{}</code></td><td{}>{}</td>",
            esc(id),
            if matches!(status, RunStatus::Rejected | RunStatus::Failed) {
                " class=\"bad\""
            } else {
                ""
            },
            esc(status.name())
        );
        for src in &manifest.sources {
            match by.get(&src.id) {
                Some((q, r)) => {
                    let _ = write!(
                        s,
                        "<td class=\"num\">{} / {}</td>",
                        fmt_value(*q as f64, false),
                        fmt_value(*r as f64, false)
                    );
                }
                None => s.push_str("<td class=\"num\">–</td>"),
            }
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</tbody></table>\n</body></html>\n");
    s
}
