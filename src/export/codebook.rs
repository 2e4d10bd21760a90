//! Codebook: what a release's public tables contain, for people and for tools.
//!
//! Input: the compiled [`Plan`], a release directory whose `public/tables/` is written, and the
//! run's protection summaries. Output: [`TableDoc`]s (each public table with its dimensions, the
//! codes it uses with their labels in English, French and Arabic where the code lists have them,
//! its measures, unit, reference period and protection), rendered as `public/codebook.md` and as
//! a Frictionless Data Package, `public/datapackage.json`, describing the Parquet files. The SDMX
//! export and the HTML report are built from the same [`TableDoc`]s.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use polars::prelude::*;
use serde::Serialize;

use crate::error::{PolarsContext, Result};
use crate::spec::Derivation;
use crate::spec::{Plan, TableSpec};
use crate::vocab::Lang;

/// A code's labels; French and Arabic where the code list has them.
pub type Labels = crate::vocab::Text;

/// A dimension coded with a code list (labelled from it), else with its own codes.
fn coded(codelist: Option<&str>, dim: &str, how: Labels) -> (String, Labeller, Labels) {
    match codelist {
        Some(cl) => (
            format!("CL_{}", cl.to_uppercase()),
            Labeller::List(cl.to_string()),
            how,
        ),
        None => (format!("CL_{dim}"), Labeller::Code, how),
    }
}

/// One dimension of a public table.
#[derive(Debug, Clone, Serialize)]
pub struct DimDoc {
    /// Column name, also the SDMX dimension id.
    pub id: String,
    /// The concept's name (`concepts.csv` in the code-list directory, else the id in words).
    pub name: Labels,
    /// How the column is derived from the delivery, in the three languages.
    pub derivation: Labels,
    /// SDMX code list id (`CL_SEX`, `CL_AGE_UN_DESA_5Y`, ...).
    pub codelist: String,
    /// The codes the table uses with their labels, in natural order (age bands youngest first),
    /// `_U` unknown and `_T` total last.
    pub codes: Vec<(String, Labels)>,
}

/// One public table of a release.
#[derive(Debug, Clone, Serialize)]
pub struct TableDoc {
    pub id: String,
    /// The spec's `title`, `title_fr`, `title_ar` (the id where the spec gives none).
    pub title: Labels,
    pub source: String,
    pub source_description: Option<Labels>,
    /// `count`, `stock`, `flow`, `survey_total`, `survey_mean`, `survey_proportion`, `survey_ratio`.
    pub kind: String,
    /// What a cell counts or estimates, as in the table's `unit` column.
    pub unit: String,
    /// What the values measure (SDMX `UNIT_MEASURE`, number format).
    #[serde(skip)]
    pub unit_measure: crate::spec::Measure,
    /// The reference periods in words: the period, or the first and last of a series.
    pub ref_period: String,
    /// The periods published (the `ref_period` column's values, in time order) in SDMX
    /// `TIME_PERIOD` form (`2024`, `2024-Q1`, `2024-01`, `2024-12-31`, or `start/P…`).
    pub periods: Vec<String>,
    /// SDMX `FREQ` of the series (`A`, `Q`, `M`; `_O` for another span).
    pub freq: String,
    pub dimensions: Vec<DimDoc>,
    /// The measure column (`value`, or `estimate` for survey tables).
    pub measure: String,
    pub survey: bool,
    /// How the intervals are built when not p̂ ± q·SE (a share's `svyciprop` method, a
    /// quantile's rule and interval type), and whether t quantiles take each domain's degrees
    /// of freedom.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<(String, bool)>,
    /// Protection method and its settings, in words (the three languages).
    pub protection: Labels,
    pub protection_summary: Option<crate::protect::Summary>,
    /// Parquet files, relative to the release's `public/` folder (where the codebook and the
    /// data package are), `/`-separated.
    pub files: Vec<String>,
    pub rows: usize,
    #[serde(skip)]
    pub frame: DataFrame,
}

const TOTAL_LABELS: (&str, &str, &str) = ("Total", "Total", "المجموع");
const UNKNOWN_LABELS: (&str, &str, &str) = ("Unknown", "Inconnu", "غير معروف");
const NATIONAL_LABELS: (&str, &str, &str) = ("Reporting country", "Pays déclarant", "البلد المُبلِّغ");
const FOREIGN_LABELS: (&str, &str, &str) = ("Foreign country", "Pays étranger", "بلد أجنبي");

/// The public tables of the release in `dir`, in the spec's order.
pub fn tables(
    plan: &Plan,
    dir: &Path,
    protection: &[crate::protect::Summary],
) -> Result<Vec<TableDoc>> {
    // Each public table read side by side, listed in the plan's order.
    let published: Vec<&TableSpec> = plan
        .tables
        .iter()
        .filter(|t| {
            // Not published (restricted only) when it has no public folder.
            crate::layout::Release(dir).public_table_dir(&t.id).is_dir()
        })
        .collect();
    let docs: Vec<Option<TableDoc>> =
        crate::parallel::map(published, |t| table_doc_of(plan, t, dir, protection))
            .into_iter()
            .collect::<Result<_>>()?;
    Ok(docs.into_iter().flatten().collect())
}

/// The [`TableDoc`] of a published table (`None` when its folder holds no file).
fn table_doc_of(
    plan: &Plan,
    t: &TableSpec,
    dir: &Path,
    protection: &[crate::protect::Summary],
) -> Result<Option<TableDoc>> {
    let tdir = crate::layout::Release(dir).public_table_dir(&t.id);
    let files = parquet_files(&tdir)?;
    let mut frames = Vec::new();
    for f in &files {
        let file = std::fs::File::open(f).map_err(|e| crate::Error::io(f, e))?;
        frames.push(
            ParquetReader::new(file)
                .finish()
                .ctx(|| format!("reading {}", f.display()))?,
        );
    }
    let frame = match frames.len() {
        0 => return Ok(None),
        _ => {
            let mut it = frames.into_iter();
            let mut df = it.next().unwrap_or_default();
            for f in it {
                df.vstack_mut(&f)
                    .ctx(|| format!("table {}: stacking partitions", t.id))?;
            }
            df
        }
    };
    // Not rechunked: every reader of the frame walks it row by row, which chunks do not slow,
    // and a copy of a 240,000-row table into fresh pages would.
    table_doc(plan, t, dir, &files, frame, protection).map(Some)
}

fn parquet_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let pattern = dir.join("**").join("*.parquet");
    let mut out: Vec<PathBuf> = glob::glob(&pattern.to_string_lossy())
        .map_err(|e| crate::Error::Internal(format!("listing {}: {e}", dir.display())))?
        .flatten()
        .collect();
    out.sort();
    Ok(out)
}

fn first_str(frame: &DataFrame, column: &str) -> String {
    frame
        .column(column)
        .ok()
        .and_then(|c| c.str().ok().and_then(|s| s.get(0).map(str::to_string)))
        .unwrap_or_default()
}

fn table_doc(
    plan: &Plan,
    t: &TableSpec,
    dir: &Path,
    files: &[PathBuf],
    frame: DataFrame,
    protection: &[crate::protect::Summary],
) -> Result<TableDoc> {
    let source = plan.sources.iter().find(|s| s.id == t.source);
    let kind = t.kind.name().to_string();
    let mut dimensions = Vec::new();
    for d in &t.dimensions {
        let used: BTreeSet<String> = match frame.column(d).and_then(|c| c.str().cloned()) {
            // Borrowed while deduplicated (one `String` per code, not per row), each row
            // inserted into the small set of codes seen (collecting would sort every row).
            Ok(s) => {
                let mut seen: BTreeSet<&str> = BTreeSet::new();
                let mut last = None;
                for code in s.iter().flatten() {
                    if last != Some(code) {
                        seen.insert(code);
                        last = Some(code);
                    }
                }
                seen.into_iter().map(str::to_string).collect()
            }
            Err(_) => BTreeSet::new(),
        };
        let mut dim = dimension(plan, source, d, &used);
        if let crate::spec::TableKind::Migration {
            duration: Some(name),
            ..
        } = &t.kind
            && name == d
        {
            if dim.name.fr.is_none() {
                dim.name = Labels::new(
                    "Duration of stay",
                    Some("Durée du séjour"),
                    Some("مدة الإقامة"),
                );
            }
            dim.derivation = text::DURATION.text();
            for (code, labels) in dim.codes.iter_mut() {
                if let Some((_, en, fr, ar)) = crate::residence::DURATIONS
                    .iter()
                    .find(|x| x.0 == code.as_str())
                {
                    *labels = Labels::new(en, Some(fr), Some(ar));
                }
            }
        }
        dimensions.push(dim);
    }
    let survey = t.kind.is_survey();
    let protection_summary = protection.iter().find(|p| p.table == t.id).cloned();
    let protection = protection_texts(plan, t);
    let mut periods: Vec<String> = Vec::new();
    if let Ok(c) = frame.column("ref_period").and_then(|c| c.str().cloned()) {
        for v in c.iter().flatten() {
            if periods.last().map(String::as_str) != Some(v) {
                periods.push(v.to_string());
            }
        }
    }
    let periods: Vec<String> = periods.iter().map(|p| time_period(p)).collect();
    let ref_period = match periods.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [first, .., last] => format!("{first} to {last} ({} periods)", periods.len()),
    };
    Ok(TableDoc {
        id: t.id.clone(),
        title: match &t.title {
            Some(en) => Labels::new(
                en,
                t.title_translations.get(&Lang::Fr).map(String::as_str),
                t.title_translations.get(&Lang::Ar).map(String::as_str),
            ),
            None => Labels::same(&t.id),
        },
        source: t.source.clone(),
        source_description: source.and_then(|s| {
            let en = s.description.as_deref()?;
            let tr = |l: Lang| s.description_translations.get(&l).map(String::as_str);
            Some(Labels::new(en, tr(Lang::Fr), tr(Lang::Ar)))
        }),
        kind,
        unit: first_str(&frame, "unit"),
        unit_measure: t.measure(),
        ref_period,
        periods,
        freq: t.periods.freq.sdmx().to_string(),
        dimensions,
        measure: if survey { "estimate" } else { "value" }.to_string(),
        survey,
        interval: match &t.kind {
            crate::spec::TableKind::SurveyProportion {
                interval,
                domain_df,
                ..
            } if !interval.is_mean() || *domain_df => Some((
                format!("by R's svyciprop method `{}`", interval.name()),
                *domain_df,
            )),
            crate::spec::TableKind::SurveyQuantile {
                quantile,
                rule,
                interval,
                design_df,
                ..
            } => Some((
                format!(
                    "of the quantile at {} by R's svyquantile (qrule `{}`, interval.type `{}`)",
                    quantile.0,
                    rule.name(),
                    interval.name()
                ),
                !*design_df,
            )),
            crate::spec::TableKind::SurveyContrast {
                of,
                across,
                terms,
                ratio,
                ..
            } => Some((
                if *ratio {
                    format!(
                        "of the ratio of `{of}`'s estimates at {across} = {} over {across} = {} (delta method on their covariance, as R's svycontrast)",
                        terms[0].0,
                        terms.get(1).map_or("", |t| t.0.as_str())
                    )
                } else {
                    format!(
                        "of Σ coefficient × `{of}`'s estimate over {across} ({}), from their covariance as R's svycontrast",
                        terms
                            .iter()
                            .map(|(c, k)| format!("{c}: {}", k.0))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                },
                false,
            )),
            _ => None,
        },
        protection,
        protection_summary,
        files: files
            .iter()
            .map(|f| crate::export::relative(f, &crate::layout::Release(dir).public()))
            .collect(),
        rows: frame.height(),
        frame,
    })
}

/// A table's protection method and its settings, in words (the codebook's and `migstat
/// trace`'s).
pub fn protection_text(plan: &Plan, t: &TableSpec) -> String {
    protection_texts(plan, t).en
}

/// [`protection_text`] in the three languages.
pub fn protection_texts(plan: &Plan, t: &TableSpec) -> Labels {
    let source = plan.sources.iter().find(|s| s.id == t.source);
    if t.kind.is_survey() {
        // Percentages as people write them (0.333 → 33.3), not as binary floats print.
        let pct = |x: f64| ((x * 100_000.0).round() / 1000.0).to_string();
        match source.and_then(|s| s.design.as_ref()) {
            Some(d) => t3(
                &text::SURVEY_RULES,
                &[
                    &d.min_n.to_string(),
                    &pct(d.cv_suppress),
                    &pct(d.cv_caution),
                    &pct(d.confidence),
                ],
            ),
            None => text::SURVEY_RULES_SEE.text(),
        }
    } else {
        match &t.protect {
            None => text::NONE.text(),
            Some(p) => match p.method {
                crate::spec::ProtectMethod::Suppress => t3(
                    &text::SUPPRESS,
                    &[
                        &p.threshold.saturating_sub(1).to_string(),
                        &p.protection_range.to_string(),
                    ],
                ),
                crate::spec::ProtectMethod::Round => t3(&text::ROUND, &[&p.base.to_string()]),
                crate::spec::ProtectMethod::RandomRound => {
                    t3(&text::RANDOM_ROUND, &[&p.base.to_string()])
                }
                crate::spec::ProtectMethod::CellKey => text::CELL_KEY.text(),
            },
        }
    }
}

/// What the derivation of dimension `dim` of `source` does, in the codebook's words.
pub fn derivation_text(plan: &Plan, source: Option<&crate::spec::SourcePlan>, dim: &str) -> String {
    dimension(plan, source, dim, &BTreeSet::new()).derivation.en
}

/// A message in the three languages, its placeholders filled with the same `args`.
fn t3(m: &crate::export::i18n::Msg, args: &[&str]) -> Labels {
    per_lang(|lang| m.fill(lang, args))
}

/// A text made in each language.
fn per_lang(f: impl Fn(Lang) -> String) -> Labels {
    Labels::new(&f(Lang::En), Some(&f(Lang::Fr)), Some(&f(Lang::Ar)))
}

/// Two texts joined in each language (`; `, or the Arabic semicolon).
fn join(a: &Labels, b: &Labels) -> Labels {
    per_lang(|lang| format!("{}{}", a.or_en(lang), b.or_en(lang)))
}

/// SDMX `TIME_PERIOD` of a `ref_period`: a calendar year as `YYYY`, a date as itself, another
/// period `start/end` as SDMX's time range `start/PnD`.
pub fn time_period(ref_period: &str) -> String {
    let Some((a, b)) = ref_period.split_once('/') else {
        return ref_period.to_string();
    };
    let (Ok(start), Ok(end)) = (
        chrono::NaiveDate::parse_from_str(a, "%Y-%m-%d"),
        chrono::NaiveDate::parse_from_str(b, "%Y-%m-%d"),
    ) else {
        return ref_period.to_string();
    };
    use chrono::Datelike;
    if start.month() == 1 && start.day() == 1 && end.month() == 12 && end.day() == 31 {
        if start.year() == end.year() {
            return start.year().to_string();
        }
        return format!("{a}/P{}Y", end.year() - start.year() + 1);
    }
    format!("{a}/P{}D", (end - start).num_days() + 1)
}

/// The dimension `dim` of a table of `source`: its derivation, code list and labelled codes.
fn dimension(
    plan: &Plan,
    source: Option<&crate::spec::SourcePlan>,
    dim: &str,
    used: &BTreeSet<String>,
) -> DimDoc {
    let derived = source.and_then(|s| s.harmonize.iter().find(|d| d.name == dim));
    let mut name = concept_name(plan, dim);
    // (code list id, how to label a code, what the derivation says)
    let (codelist, labeller, derivation): (String, Labeller, Labels) =
        match derived.map(|d| &d.derivation) {
            Some(Derivation::Code {
                from,
                crosswalk,
                codelist,
                ..
            }) => {
                let via = crosswalk
                    .iter()
                    .filter_map(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
                    .collect::<Vec<_>>()
                    .join(", ");
                let how = match (via.is_empty(), codelist) {
                    (true, Some(cl)) => t3(&text::CODED, &[from, cl]),
                    (false, Some(cl)) => t3(&text::CROSSWALK_TO, &[from, &via, cl]),
                    (_, None) => t3(&text::CROSSWALK, &[from, &via]),
                };
                coded(codelist.as_deref(), dim, how)
            }
            Some(Derivation::Band { age, banding }) => {
                let with = |s: &str| format!("{s} ({})", banding.id);
                name = Labels::new(
                    &with(&name.en),
                    name.fr.as_deref().map(with).as_deref(),
                    name.ar.as_deref().map(with).as_deref(),
                );
                (
                    format!("CL_AGE_{}", banding.id.to_uppercase()),
                    Labeller::Band(banding.id.clone()),
                    t3(&text::BANDS, &[age, &banding.id]),
                )
            }
            Some(Derivation::Foreign { from, national }) => (
                format!("CL_{dim}"),
                Labeller::Code,
                t3(&text::FOREIGN, &[from, national]),
            ),
            Some(Derivation::Lookup {
                from,
                codelist,
                column,
                national,
            }) => {
                let target = if column.starts_with("m49") {
                    "m49_areas"
                } else if column == "au_region" {
                    "au_regions"
                } else {
                    ""
                };
                let how = t3(&text::LOOKUP, &[column, from, codelist]);
                // With `national`, the reporting country (`NAT`) joins the areas: another list.
                let (how, suffix) = match national {
                    Some(n) => (join(&how, &t3(&text::LOOKUP_NATIONAL, &[from, n])), "_NAT"),
                    None => (how, ""),
                };
                if target.is_empty() {
                    (format!("CL_{dim}"), Labeller::Code, how)
                } else {
                    (
                        format!("CL_{}{suffix}", target.to_uppercase()),
                        Labeller::List(target.to_string()),
                        how,
                    )
                }
            }
            Some(Derivation::Status {
                history,
                at,
                codelist,
            }) => {
                let how = per_lang(|lang| {
                    let steps = history
                        .iter()
                        .map(|(c, f)| text::STEP.fill(lang, &[c, f]))
                        .collect::<Vec<_>>()
                        .join(text::THEN.get(lang));
                    let when = match at {
                        Some(a) => text::DATE_IN.fill(lang, &[a]),
                        None => text::REFERENCE_DATE.get(lang).to_string(),
                    };
                    text::STATUS.fill(lang, &[&when, &steps])
                });
                coded(codelist.as_deref(), dim, how)
            }
            Some(Derivation::Month { date }) => (
                format!("CL_{dim}"),
                Labeller::Month,
                t3(&text::MONTH, &[date]),
            ),
            Some(Derivation::Year { date }) => (
                format!("CL_{dim}"),
                Labeller::Number,
                t3(&text::YEAR, &[date]),
            ),
            Some(Derivation::Age {
                birth_date,
                birth_year,
                age,
                at,
                ..
            }) => (
                format!("CL_{dim}"),
                Labeller::Number,
                match (birth_date, age) {
                    (Some(b), _) => match at {
                        Some(e) => t3(&text::AGE_AT_EVENT, &[b, e]),
                        None => t3(&text::AGE_AT_REFERENCE, &[b]),
                    },
                    (None, _) if birth_year.is_some() => per_lang(|lang| {
                        let when = match at {
                            Some(e) => text::THE_EVENT.fill(lang, &[e]),
                            None => text::REFERENCE_DATE.get(lang).to_string(),
                        };
                        text::AGE_REACHED
                            .fill(lang, &[&when, birth_year.as_deref().unwrap_or_default()])
                    }),
                    (None, Some(a)) => t3(&text::AGE_REPORTED, &[a]),
                    (None, None) => text::AGE.text(),
                },
            ),
            None => (format!("CL_{dim}"), Labeller::Code, text::DELIVERED.text()),
        };
    // `NAT` / `FOR` of a `foreign` derivation or a lookup with `national`.
    let national = matches!(
        derived.map(|d| &d.derivation),
        Some(Derivation::Foreign { .. })
            | Some(Derivation::Lookup {
                national: Some(_),
                ..
            })
    );
    let bands = match &labeller {
        Labeller::Band(id) => band_labels(&plan.codelists_dir.join("age_bands.csv"), id),
        _ => BTreeMap::new(),
    };
    let mut codes: Vec<(String, Labels)> = used
        .iter()
        .map(|code| {
            let labels = match code.as_str() {
                crate::vocab::TOTAL => {
                    Labels::new(TOTAL_LABELS.0, Some(TOTAL_LABELS.1), Some(TOTAL_LABELS.2))
                }
                crate::vocab::UNKNOWN => Labels::new(
                    UNKNOWN_LABELS.0,
                    Some(UNKNOWN_LABELS.1),
                    Some(UNKNOWN_LABELS.2),
                ),
                crate::vocab::NATIONAL if national => Labels::new(
                    NATIONAL_LABELS.0,
                    Some(NATIONAL_LABELS.1),
                    Some(NATIONAL_LABELS.2),
                ),
                crate::vocab::FOREIGN if national => Labels::new(
                    FOREIGN_LABELS.0,
                    Some(FOREIGN_LABELS.1),
                    Some(FOREIGN_LABELS.2),
                ),
                _ => match &labeller {
                    Labeller::List(cl) => match plan.codelists.get(cl) {
                        Some(list) => Labels::new(
                            list.attribute(code, "label_en").unwrap_or(code),
                            list.attribute(code, "label_fr"),
                            list.attribute(code, "label_ar"),
                        ),
                        None => Labels::new(code, None, None),
                    },
                    Labeller::Band(_) => bands
                        .get(code)
                        .map(|(l, _)| l.clone())
                        .unwrap_or_else(|| Labels::new(code, None, None)),
                    Labeller::Month => crate::export::i18n::month_labels(code)
                        .unwrap_or_else(|| Labels::new(code, None, None)),
                    Labeller::Number => Labels::same(code),
                    Labeller::Code => Labels::new(code, None, None),
                },
            };
            (code.clone(), labels)
        })
        .collect();
    // Natural order: age bands youngest first (the code list's `sort`), other codes as
    // strings; unknown and total last.
    let rank = |c: &str| match c {
        crate::vocab::TOTAL => u32::MAX,
        crate::vocab::UNKNOWN => u32::MAX - 1,
        _ => bands.get(c).map_or(0, |(_, sort)| *sort),
    };
    codes.sort_by(|a, b| (rank(&a.0), &a.0).cmp(&(rank(&b.0), &b.0)));
    DimDoc {
        id: dim.to_string(),
        name,
        derivation,
        codelist,
        codes,
    }
}

enum Labeller {
    List(String),
    Band(String),
    /// `YYYY-MM`: month names in each language.
    Month,
    /// Years and ages: the number is its own label in every language.
    Number,
    /// Codes as delivered: labelled by themselves, in English only.
    Code,
}

/// A dimension's name: the concept's labels in `concepts.csv` of the code-list directory, else
/// its id in words (`CITIZENSHIP_REGION` → `Citizenship region`, English only).
fn concept_name(plan: &Plan, dim: &str) -> Labels {
    if let Some(list) = plan.codelists.get("concepts")
        && let Some(en) = list.attribute(dim, "label_en")
    {
        return Labels::new(
            en,
            list.attribute(dim, "label_fr"),
            list.attribute(dim, "label_ar"),
        );
    }
    let lower = dim.to_lowercase().replace('_', " ");
    let mut c = lower.chars();
    Labels::new(
        &c.next()
            .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
            .unwrap_or_default(),
        None,
        None,
    )
}

/// The labels and sort ranks of a banding's codes, from `age_bands.csv`.
fn band_labels(path: &Path, banding: &str) -> BTreeMap<String, (Labels, u32)> {
    let mut out = BTreeMap::new();
    let Ok(mut rdr) = csv::Reader::from_path(path) else {
        return out;
    };
    let Ok(header) = rdr.headers().cloned() else {
        return out;
    };
    let col = |n: &str| header.iter().position(|h| h == n);
    let (Some(b), Some(c), Some(en)) = (col("banding"), col("code"), col("label_en")) else {
        return out;
    };
    let (fr, ar, sort) = (col("label_fr"), col("label_ar"), col("sort"));
    for r in rdr.records().flatten() {
        if r.get(b) == Some(banding) {
            out.insert(
                r.get(c).unwrap_or_default().to_string(),
                (
                    Labels::new(
                        r.get(en).unwrap_or_default(),
                        fr.and_then(|i| r.get(i)),
                        ar.and_then(|i| r.get(i)),
                    ),
                    sort.and_then(|i| r.get(i))
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0),
                ),
            );
        }
    }
    out
}

/// The first 16 hex digits of a release's content key (`run_key`): what its documents cite, so
/// that the same inputs give the same bytes whatever the run id.
pub fn short_key(key: &str) -> &str {
    key.get(..16).unwrap_or(key)
}

/// Fixed texts of the codebook.
mod text {
    use crate::export::i18n::Msg;
    pub const TITLE: Msg = Msg("Codebook", "Dictionnaire des données", "دليل البيانات");
    pub const INTRO: Msg = Msg(
        "Pipeline `{0}`, content key `{1}` (migstat {2}). Reference date {3}; reference period {4} to {5}.",
        "Chaîne `{0}`, clé de contenu `{1}` (migstat {2}). Date de référence {3} ; période de référence du {4} au {5}.",
        "سلسلة المعالجة `{0}`، مفتاح المحتوى `{1}` (migstat {2}). التاريخ المرجعي {3}؛ الفترة المرجعية من {4} إلى {5}.",
    );
    pub const KEY: Msg = Msg(
        "The content key identifies what the release was computed from (inputs, spec, code lists, migstat version): two releases with the same key hold the same tables.",
        "La clé de contenu identifie ce à partir de quoi la diffusion a été calculée (données, spécification, nomenclatures, version de migstat) : deux diffusions de même clé contiennent les mêmes tableaux.",
        "يحدد مفتاح المحتوى ما حُسب منه الإصدار (المدخلات، المواصفات، قوائم الرموز، إصدار migstat): إصداران بالمفتاح نفسه يحتويان على الجداول نفسها.",
    );
    pub const LAYOUT: Msg = Msg(
        "Every table is in long form: one row per cell, one column per dimension holding a code (`_T` for the total over that dimension, `_U` for unknown), the measure, and the SDMX attributes `OBS_STATUS` (`A` normal, `P` provisional: the period is not closed yet, `Q` missing: suppressed, `U` low reliability) and `CONF_STATUS` (`F` free, `C` confidential: primary and secondary suppression look alike). A suppressed or withheld cell has a null measure. Every combination of the codes shown is published, zeros included, in every period of a series. Files: Parquet, one folder per reference period (`YYYY`, `YYYY-Qn`, `YYYY-MM`, or `YYYY-MM-DD` for a stock) under `public/tables/<table>/`, each file holding its period also as a typed column (`ref_year` integer, `ref_quarter`, `ref_month` text, `ref_date` date); SDMX-CSV under `public/sdmx/`.",
        "Chaque tableau est en format long : une ligne par cellule, une colonne par dimension contenant un code (`_T` pour le total de la dimension, `_U` pour inconnu), la mesure, et les attributs SDMX `OBS_STATUS` (`A` normal, `P` provisoire : la période n'est pas close, `Q` manquant : supprimé, `U` fiabilité faible) et `CONF_STATUS` (`F` libre, `C` confidentiel : suppressions primaire et secondaire sont indiscernables). Une cellule supprimée ou retenue a une mesure nulle. Toutes les combinaisons des codes listés sont publiées, zéros compris, pour chaque période d'une série. Fichiers : Parquet, un dossier par période de référence (`YYYY`, `YYYY-Qn`, `YYYY-MM`, ou `YYYY-MM-DD` pour un stock) sous `public/tables/<tableau>/`, chaque fichier portant aussi sa période dans une colonne typée (`ref_year` entier, `ref_quarter`, `ref_month` texte, `ref_date` date) ; SDMX-CSV sous `public/sdmx/`.",
        "كل جدول في الشكل الطويل: صف لكل خلية، وعمود لكل بُعد يحمل رمزًا (`_T` لمجموع البُعد، `_U` لغير المعروف)، والقياس، وسِمتا SDMX ‏`OBS_STATUS` (`A` عادية، `P` مؤقتة: الفترة لم تُغلق بعد، `Q` مفقودة: محجوبة، `U` موثوقية منخفضة) و`CONF_STATUS` (`F` متاحة، `C` سرية: الحجب الأولي والثانوي متماثلان في المظهر). الخلية المحجوبة أو المحتجزة قياسها فارغ. تُنشر كل تركيبات الرموز المذكورة، بما فيها الأصفار، في كل فترة من السلسلة. الملفات: Parquet، مجلد لكل فترة مرجعية (`YYYY`، `YYYY-Qn`، `YYYY-MM`، أو `YYYY-MM-DD` للرصيد) تحت `public/tables/<الجدول>/`، ويحمل كل ملف فترته أيضًا في عمود محدد النوع (`ref_year` عدد صحيح، `ref_quarter` و`ref_month` نص، `ref_date` تاريخ)؛ وSDMX-CSV تحت `public/sdmx/`.",
    );
    pub const TABLES: Msg = Msg("Tables", "Tableaux", "الجداول");
    pub const HEADER: Msg = Msg(
        "| table | title | source | kind | unit | period | cells |",
        "| tableau | titre | source | type | unité | période | cellules |",
        "| الجدول | العنوان | المصدر | النوع | الوحدة | الفترة | الخلايا |",
    );
    pub const SOURCE: Msg = Msg("Source", "Source", "المصدر");
    pub const KIND: Msg = Msg(
        "Kind: {0}; unit: {1}",
        "Type : {0} ; unité : {1}",
        "النوع: {0}؛ الوحدة: {1}",
    );
    pub const PERIODS: Msg = Msg(
        "Reference periods (SDMX FREQ `{0}`, TIME_PERIOD): {1}; one Parquet partition per period",
        "Périodes de référence (SDMX FREQ `{0}`, TIME_PERIOD) : {1} ; une partition Parquet par période",
        "الفترات المرجعية (SDMX FREQ `{0}`، TIME_PERIOD): {1}؛ قسم Parquet لكل فترة",
    );
    pub const PROTECTION: Msg = Msg("Protection", "Protection", "الحماية");
    pub const SUPPRESSED: Msg = Msg(
        "Suppressed: {0} primary, {1} secondary of {2} cells; audit {3}",
        "Supprimées : {0} primaires, {1} secondaires sur {2} cellules ; audit {3}",
        "المحجوب: {0} أولية، {1} ثانوية من أصل {2} خلية؛ التدقيق {3}",
    );
    pub const PASSED: Msg = Msg("passed", "réussi", "ناجح");
    pub const FAILED: Msg = Msg("FAILED", "ÉCHOUÉ", "فاشل");
    pub const FILES: Msg = Msg("Files", "Fichiers", "الملفات");
    pub const COLUMNS: Msg = Msg(
        "| column | meaning |",
        "| colonne | signification |",
        "| العمود | المعنى |",
    );
    pub const CODE_LIST: Msg = Msg("code list", "nomenclature", "قائمة الرموز");
    pub const CODE: Msg = Msg("code", "code", "الرمز");
    pub const CODES: Msg = Msg("{0} codes ({1})", "Codes de {0} ({1})", "رموز {0} ({1})");
    pub const CODED: Msg = Msg(
        "field `{0}`, coded with code list `{1}`",
        "champ `{0}`, codé selon la nomenclature `{1}`",
        "الحقل `{0}`، مرمَّز وفق قائمة الرموز `{1}`",
    );
    pub const CROSSWALK_TO: Msg = Msg(
        "field `{0}` through crosswalk {1} to code list `{2}`",
        "champ `{0}` par la table de correspondance {1} vers la nomenclature `{2}`",
        "الحقل `{0}` عبر جدول المقابلة {1} إلى قائمة الرموز `{2}`",
    );
    pub const CROSSWALK: Msg = Msg(
        "field `{0}` through crosswalk {1}",
        "champ `{0}` par la table de correspondance {1}",
        "الحقل `{0}` عبر جدول المقابلة {1}",
    );
    pub const BANDS: Msg = Msg(
        "age `{0}` in bands `{1}` (age_bands.csv)",
        "âge `{0}` en tranches `{1}` (age_bands.csv)",
        "العمر `{0}` في فئات `{1}` (age_bands.csv)",
    );
    pub const FOREIGN: Msg = Msg(
        "`NAT` where `{0}` is `{1}` (the reporting country), `FOR` for any other country",
        "`NAT` lorsque `{0}` vaut `{1}` (le pays déclarant), `FOR` pour tout autre pays",
        "`NAT` عندما تكون قيمة `{0}` هي `{1}` (البلد المُبلِّغ)، و`FOR` لأي بلد آخر",
    );
    pub const LOOKUP: Msg = Msg(
        "`{0}` of `{1}` in code list `{2}`",
        "`{0}` de `{1}` dans la nomenclature `{2}`",
        "`{0}` الخاص بـ`{1}` في قائمة الرموز `{2}`",
    );
    pub const LOOKUP_NATIONAL: Msg = Msg(
        "; `NAT` where `{0}` is `{1}` (the reporting country)",
        " ; `NAT` lorsque `{0}` vaut `{1}` (le pays déclarant)",
        "؛ `NAT` عندما تكون قيمة `{0}` هي `{1}` (البلد المُبلِّغ)",
    );
    pub const STEP: Msg = Msg(
        "`{0}` from `{1}`",
        "`{0}` à partir de `{1}`",
        "`{0}` ابتداءً من `{1}`",
    );
    pub const THEN: Msg = Msg(", then ", ", puis ", "، ثم ");
    pub const DATE_IN: Msg = Msg(
        "the date in `{0}`",
        "la date de `{0}`",
        "التاريخ الوارد في `{0}`",
    );
    pub const REFERENCE_DATE: Msg = Msg(
        "the reference date",
        "la date de référence",
        "التاريخ المرجعي",
    );
    pub const STATUS: Msg = Msg(
        "status on {0} from the record's history: {1} (the step entered last by that date; `_Z` before the first); in stock tables, on the stock date",
        "statut à {0} d'après l'historique de l'enregistrement : {1} (la dernière étape atteinte à cette date ; `_Z` avant la première) ; dans les tableaux de stock, à la date du stock",
        "الوضع في {0} حسب تاريخ السجل: {1} (آخر مرحلة بلغها في ذلك التاريخ؛ `_Z` قبل الأولى)؛ وفي جداول الرصيد، في تاريخ الرصيد",
    );
    pub const MONTH: Msg = Msg(
        "month (YYYY-MM) of `{0}`",
        "mois (AAAA-MM) de `{0}`",
        "شهر (YYYY-MM) `{0}`",
    );
    pub const YEAR: Msg = Msg("year of `{0}`", "année de `{0}`", "سنة `{0}`");
    pub const AGE_AT_EVENT: Msg = Msg(
        "age in completed years on the date of the event (`{1}`) from `{0}`; in stock tables, on the stock date",
        "âge en années révolues à la date de l'événement (`{1}`) d'après `{0}` ; dans les tableaux de stock, à la date du stock",
        "العمر بالسنوات الكاملة في تاريخ الحدث (`{1}`) انطلاقًا من `{0}`؛ وفي جداول الرصيد، في تاريخ الرصيد",
    );
    pub const AGE_AT_REFERENCE: Msg = Msg(
        "age in completed years at the reference date from `{0}`",
        "âge en années révolues à la date de référence d'après `{0}`",
        "العمر بالسنوات الكاملة في التاريخ المرجعي انطلاقًا من `{0}`",
    );
    pub const THE_EVENT: Msg = Msg("the event (`{0}`)", "l'événement (`{0}`)", "الحدث (`{0}`)");
    pub const AGE_REACHED: Msg = Msg(
        "age reached during the year of {0} (its year minus the year of birth in `{1}`)",
        "âge atteint dans l'année de {0} (son année moins l'année de naissance de `{1}`)",
        "العمر المبلوغ خلال سنة {0} (سنته ناقص سنة الميلاد الواردة في `{1}`)",
    );
    pub const AGE_REPORTED: Msg = Msg(
        "age as reported in `{0}`",
        "âge tel que déclaré dans `{0}`",
        "العمر كما ورد في `{0}`",
    );
    pub const AGE: Msg = Msg("age", "âge", "العمر");
    pub const DELIVERED: Msg = Msg("delivered", "tel que livré", "كما ورد في التسليم");
    pub const DURATION: Msg = Msg(
        "the stay in the country (immigration) or abroad (emigration) that begins with the migration, in completed months until the person crosses back; `_U` while it is still ongoing at the deliveries' last day and shorter than 36 months",
        "le séjour dans le pays (immigration) ou à l'étranger (émigration) qui commence avec la migration, en mois révolus jusqu'au passage de retour ; `_U` tant qu'il dure au dernier jour des livraisons et compte moins de 36 mois",
        "الإقامة في البلد (الهجرة الوافدة) أو في الخارج (الهجرة المغادرة) التي تبدأ بالهجرة، بالأشهر الكاملة إلى أن يعبر الشخص عائدًا؛ `_U` ما دامت مستمرة في آخر يوم من التسليمات وتقل عن 36 شهرًا",
    );
    pub const SURVEY_RULES: Msg = Msg(
        "estimates from fewer than {0} respondents are confidential: suppressed (OBS_STATUS Q, CONF_STATUS C) with secondary suppression over all tables of the survey, so that none can be recomputed; a CV above {1}% withholds the estimate for quality (OBS_STATUS U, CONF_STATUS F, empty); CVs above {2}% are flagged OBS_STATUS U (low reliability); intervals at {3}% confidence; not additive (estimates)",
        "les estimations de moins de {0} répondants sont confidentielles : supprimées (OBS_STATUS Q, CONF_STATUS C) avec une suppression secondaire sur tous les tableaux de l'enquête, pour qu'aucune ne puisse être recalculée ; un CV au-delà de {1} % retient l'estimation pour sa qualité (OBS_STATUS U, CONF_STATUS F, vide) ; les CV au-delà de {2} % sont signalés OBS_STATUS U (fiabilité faible) ; intervalles à {3} % de confiance ; non additif (estimations)",
        "التقديرات المبنية على أقل من {0} مجيبين سرية: محجوبة (OBS_STATUS Q، CONF_STATUS C) مع حجب ثانوي في كل جداول البحث حتى لا يمكن إعادة حساب أي منها؛ ومعامل اختلاف يفوق {1}% يحتجز التقدير لضعف جودته (OBS_STATUS U، CONF_STATUS F، فارغ)؛ ومعاملات الاختلاف التي تفوق {2}% تُعلَّم OBS_STATUS U (موثوقية منخفضة)؛ فترات ثقة {3}%؛ غير جمعية (تقديرات)",
    );
    pub const SURVEY_RULES_SEE: Msg = Msg(
        "survey quality rules (see the source's design)",
        "règles de qualité de l'enquête (voir le plan de sondage de la source)",
        "قواعد جودة البحث (انظر تصميم عينة المصدر)",
    );
    pub const NONE: Msg = Msg("none", "aucune", "لا شيء");
    pub const SUPPRESS: Msg = Msg(
        "cell suppression: cells of 1 to {0} contributors and the secondary cells that protect them are suppressed alike (OBS_STATUS Q, CONF_STATUS C, empty value), chosen over all tables counting the same persons so that no suppressed cell can be narrowed to an interval shorter than {1} from everything published; audited; published cells are exact and additive",
        "suppression de cellules : les cellules de 1 à {0} contributeurs et les cellules secondaires qui les protègent sont supprimées de la même façon (OBS_STATUS Q, CONF_STATUS C, valeur vide), choisies sur tous les tableaux qui comptent les mêmes personnes pour qu'aucune cellule supprimée ne puisse être ramenée à un intervalle de moins de {1} à partir de tout ce qui est publié ; auditée ; les cellules publiées sont exactes et additives",
        "حجب الخلايا: تُحجب الخلايا التي يساهم فيها من 1 إلى {0} أشخاص والخلايا الثانوية التي تحميها بالطريقة نفسها (OBS_STATUS Q، CONF_STATUS C، قيمة فارغة)، وتُختار عبر كل الجداول التي تعدّ الأشخاص أنفسهم بحيث لا يمكن حصر أي خلية محجوبة في مجال أضيق من {1} انطلاقًا من كل ما نُشر؛ مع تدقيق؛ والخلايا المنشورة دقيقة وجمعية",
    );
    pub const ROUND: Msg = Msg(
        "rounding to base {0}: the finest cells are rounded and every margin is the sum of its rounded cells (additive; a margin may differ from its own rounded true value)",
        "arrondi en base {0} : les cellules les plus fines sont arrondies et chaque marge est la somme de ses cellules arrondies (additif ; une marge peut différer de sa propre valeur vraie arrondie)",
        "تقريب إلى الأساس {0}: تُقرَّب أدق الخلايا وكل هامش هو مجموع خلاياه المقرَّبة (جمعي؛ قد يختلف الهامش عن قيمته الحقيقية المقرَّبة)",
    );
    pub const RANDOM_ROUND: Msg = Msg(
        "unbiased random rounding to base {0} of the finest cells, keyed by a secret protection key (reruns give the same values); margins are sums of the rounded cells (additive)",
        "arrondi aléatoire sans biais en base {0} des cellules les plus fines, piloté par une clé de protection secrète (une nouvelle exécution donne les mêmes valeurs) ; les marges sont les sommes des cellules arrondies (additif)",
        "تقريب عشوائي غير متحيز إلى الأساس {0} لأدق الخلايا، مرتبط بمفتاح حماية سري (إعادة التشغيل تعطي القيم نفسها)؛ والهوامش مجاميع الخلايا المقرَّبة (جمعي)",
    );
    pub const CELL_KEY: Msg = Msg(
        "cell key method: noise from a perturbation table keyed by the records in each finest cell (the same records get the same noise in every table and release); margins are sums of the perturbed cells (additive); counts of 1 and 2 never appear in finest cells",
        "méthode des clés de cellule : un bruit tiré d'une table de perturbation selon les enregistrements de chaque cellule la plus fine (les mêmes enregistrements reçoivent le même bruit dans chaque tableau et chaque diffusion) ; les marges sont les sommes des cellules perturbées (additif) ; les effectifs 1 et 2 n'apparaissent jamais dans les cellules les plus fines",
        "طريقة مفتاح الخلية: تشويش من جدول تشويش حسب السجلات في كل خلية من أدق الخلايا (السجلات نفسها تتلقى التشويش نفسه في كل جدول وإصدار)؛ والهوامش مجاميع الخلايا المشوَّشة (جمعي)؛ والعددان 1 و2 لا يظهران أبدًا في أدق الخلايا",
    );
    pub const METHODS_IN_ENGLISH: Msg = Msg(
        "",
        "Les textes des métadonnées de référence (SIMS), en fin de document, et les noms des méthodes d'intervalle de R restent en anglais.",
        "تبقى نصوص البيانات الوصفية المرجعية (SIMS)، في آخر الوثيقة، وأسماء طرق فترات الثقة في R بالإنجليزية.",
    );
}

/// The codebook as Markdown, in `lang` (titles, names and labels in that language; the
/// technical descriptions of derivations and protection in English). Arabic is wrapped in a
/// right-to-left block.
pub fn markdown(
    plan: &Plan,
    manifest: &crate::manifest::Manifest,
    docs: &[TableDoc],
    lang: Lang,
) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    if lang.dir() == "rtl" {
        let _ = writeln!(s, "<div dir=\"rtl\" lang=\"{}\">\n", lang.code());
    }
    let _ = writeln!(
        s,
        "# {} — {}\n",
        text::TITLE.get(lang),
        plan_title(plan).or_en(lang)
    );
    let _ = writeln!(
        s,
        "{}\n",
        text::INTRO.fill(
            lang,
            &[
                &plan.pipeline_id,
                short_key(&manifest.run_key),
                crate::VERSION,
                &manifest.reference_date,
                &manifest.reference_period[0],
                &manifest.reference_period[1],
            ]
        )
    );
    let _ = writeln!(s, "{}\n", text::KEY.get(lang));
    let _ = writeln!(s, "{}\n", text::LAYOUT.get(lang));
    if lang != Lang::En {
        let _ = writeln!(s, "{}\n", text::METHODS_IN_ENGLISH.get(lang));
    }
    let _ = writeln!(s, "## {}\n", text::TABLES.get(lang));
    let _ = writeln!(s, "{}", text::HEADER.get(lang));
    let _ = writeln!(s, "| --- | --- | --- | --- | --- | --- | ---: |");
    for d in docs {
        let _ = writeln!(
            s,
            "| [`{}`](#{}) | {} | {} | {} | {} | {} | {} |",
            d.id,
            d.id,
            d.title.or_en(lang),
            d.source,
            crate::export::i18n::kind(&d.kind).or_en(lang),
            crate::export::i18n::unit(&d.unit).or_en(lang),
            d.ref_period,
            crate::export::i18n::number(d.rows as f64, 0, lang)
        );
    }
    for d in docs {
        let _ = writeln!(s, "\n## {}\n\n{}\n", d.id, d.title.or_en(lang));
        match &d.source_description {
            Some(desc) => {
                let desc = desc.or_en(lang);
                let _ = writeln!(s, "- {}: `{}` — {desc}", text::SOURCE.get(lang), d.source);
            }
            None => {
                let _ = writeln!(s, "- {}: `{}`", text::SOURCE.get(lang), d.source);
            }
        }
        let _ = writeln!(
            s,
            "- {}",
            text::KIND.fill(
                lang,
                &[
                    crate::export::i18n::kind(&d.kind).or_en(lang),
                    crate::export::i18n::unit(&d.unit).or_en(lang)
                ]
            )
        );
        let periods = d
            .periods
            .iter()
            .map(|p| format!("`{p}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(s, "- {}", text::PERIODS.fill(lang, &[&d.freq, &periods]));
        let _ = writeln!(
            s,
            "- {}: {}",
            text::PROTECTION.get(lang),
            d.protection.or_en(lang)
        );
        if let Some(p) = &d.protection_summary
            && (p.primary > 0 || p.secondary > 0)
        {
            let n = |v: u64| crate::export::i18n::number(v as f64, 0, lang);
            let _ = writeln!(
                s,
                "- {}",
                text::SUPPRESSED.fill(
                    lang,
                    &[
                        &n(p.primary),
                        &n(p.secondary),
                        &n(p.cells),
                        if p.audit_passed {
                            text::PASSED.get(lang)
                        } else {
                            text::FAILED.get(lang)
                        }
                    ]
                )
            );
        }
        let _ = writeln!(s, "- {}: {}", text::FILES.get(lang), d.files.join(", "));
        let _ = writeln!(s, "\n{}\n| --- | --- |", text::COLUMNS.get(lang));
        for dim in &d.dimensions {
            let _ = writeln!(
                s,
                "| `{}` | {} — {}; {} {} |",
                dim.id,
                dim.name.or_en(lang),
                dim.derivation.or_en(lang),
                text::CODE_LIST.get(lang),
                dim.codelist
            );
        }
        for (c, m) in measure_columns(d, lang) {
            if d.frame.column(c).is_ok() {
                let _ = writeln!(s, "| `{c}` | {m} |");
            }
        }
        for dim in &d.dimensions {
            let _ = writeln!(
                s,
                "\n### {}\n",
                text::CODES.fill(lang, &[&dim.id, &dim.codelist])
            );
            // Every language's labels side by side, the page's own first.
            let order: Vec<Lang> = std::iter::once(lang)
                .chain(Lang::ALL.into_iter().filter(|l| *l != lang))
                .collect();
            let _ = writeln!(
                s,
                "| {} | {} |",
                text::CODE.get(lang),
                order
                    .iter()
                    .map(|l| l.endonym())
                    .collect::<Vec<_>>()
                    .join(" | ")
            );
            let _ = writeln!(s, "| --- | --- | --- | --- |");
            for (code, l) in &dim.codes {
                let _ = writeln!(
                    s,
                    "| `{code}` | {} |",
                    order
                        .iter()
                        .map(|x| l.get(*x).unwrap_or(""))
                        .collect::<Vec<_>>()
                        .join(" | ")
                );
            }
        }
    }
    if lang.dir() == "rtl" {
        let _ = writeln!(s, "\n</div>");
    }
    s
}

/// The pipeline's title in every language it is given in (its id where it has none).
pub fn plan_title(plan: &Plan) -> Labels {
    match &plan.title {
        Some(en) => Labels::new(
            en,
            plan.title_translations.get(&Lang::Fr).map(String::as_str),
            plan.title_translations.get(&Lang::Ar).map(String::as_str),
        ),
        None => Labels::same(&plan.pipeline_id),
    }
}

/// The non-dimension columns of a public table and what they hold.
pub fn measure_columns(d: &TableDoc, lang: Lang) -> Vec<(&'static str, String)> {
    use crate::export::i18n::Msg;
    let m = |msg: Msg, args: &[&str]| msg.fill(lang, args);
    let unit = crate::export::i18n::unit(&d.unit);
    let unit = unit.or_en(lang);
    let mut v = vec![
        (
            "table_id",
            m(
                Msg("the table's id", "l'identifiant du tableau", "معرّف الجدول"),
                &[],
            ),
        ),
        (
            "source_id",
            m(
                Msg(
                    "the source it is built from",
                    "la source dont il est tiré",
                    "المصدر الذي بُني منه",
                ),
                &[],
            ),
        ),
        (
            "unit",
            m(
                Msg(
                    "what a cell counts or estimates",
                    "ce qu'une cellule compte ou estime",
                    "ما تعدّه الخلية أو تقدّره",
                ),
                &[],
            ),
        ),
        (
            "ref_period",
            m(
                Msg(
                    "reference period in SDMX TIME_PERIOD form (2024, 2024-Q1, 2024-01; a stock's date 2024-12-31; start/end for another span)",
                    "période de référence au format SDMX TIME_PERIOD (2024, 2024-Q1, 2024-01 ; la date d'un stock 2024-12-31 ; début/fin pour une autre durée)",
                    "الفترة المرجعية بصيغة SDMX TIME_PERIOD (2024، 2024-Q1، 2024-01؛ تاريخ الرصيد 2024-12-31؛ بداية/نهاية لمدة أخرى)",
                ),
                &[],
            ),
        ),
    ];
    if d.survey {
        v.extend([
            (
                "n",
                if d.kind == "survey_contrast" {
                    m(
                        Msg(
                            "respondents in the smallest of the contrasted cells (unweighted)",
                            "répondants de la plus petite des cellules comparées (non pondéré)",
                            "المجيبون في أصغر الخلايا المقارَنة (غير مرجَّح)",
                        ),
                        &[],
                    )
                } else {
                    m(
                        Msg(
                            "respondents in the cell (unweighted)",
                            "répondants de la cellule (non pondéré)",
                            "المجيبون في الخلية (غير مرجَّح)",
                        ),
                        &[],
                    )
                },
            ),
            (
                "estimate",
                m(
                    Msg(
                        "the estimate ({0}); null when suppressed",
                        "l'estimation ({0}) ; vide si supprimée",
                        "التقدير ({0})؛ فارغ إذا حُجب",
                    ),
                    &[unit],
                ),
            ),
            (
                "se",
                m(
                    Msg(
                        "its design-based standard error",
                        "son erreur type selon le plan de sondage",
                        "خطؤه المعياري حسب تصميم العينة",
                    ),
                    &[],
                ),
            ),
        ]);
        let domain = d.interval.as_ref().is_some_and(|(_, domain)| *domain);
        let how = d
            .interval
            .as_ref()
            .map_or(String::new(), |(h, _)| format!(" {h}"));
        let dfs = if domain {
            m(
                Msg(
                    "the domain's degrees of freedom (its PSUs less its strata)",
                    "les degrés de liberté du domaine (ses UPE moins ses strates)",
                    "درجات حرية المجال (وحداته الأولية ناقص طبقاته)",
                ),
                &[],
            )
        } else {
            m(
                Msg(
                    "the design's degrees of freedom",
                    "les degrés de liberté du plan de sondage",
                    "درجات حرية التصميم",
                ),
                &[],
            )
        };
        v.extend([
            ("ci_low", m(Msg("lower limit of the confidence interval{0}, normal quantile", "borne inférieure de l'intervalle de confiance{0}, quantile normal", "الحد الأدنى لفترة الثقة{0}، بالمئين الطبيعي"), &[&how])),
            ("ci_high", m(Msg("upper limit of the confidence interval{0}, normal quantile", "borne supérieure de l'intervalle de confiance{0}, quantile normal", "الحد الأعلى لفترة الثقة{0}، بالمئين الطبيعي"), &[&how])),
            ("ci_low_t", m(Msg("lower limit{0} with Student's t on {1}", "borne inférieure{0} avec le t de Student sur {1}", "الحد الأدنى{0} بتوزيع t لستيودنت على {1}"), &[&how, &dfs])),
            ("ci_high_t", m(Msg("upper limit{0} with Student's t", "borne supérieure{0} avec le t de Student", "الحد الأعلى{0} بتوزيع t لستيودنت"), &[&how])),
            (
                "cv",
                if d.kind == "survey_contrast" {
                    m(Msg("the largest coefficient of variation of the contrasted estimates (a contrast is as reliable as its least reliable term)", "le plus grand coefficient de variation des estimations comparées (un écart est aussi fiable que son terme le moins fiable)", "أكبر معامل اختلاف بين التقديرات المقارَنة (الفرق موثوق بقدر أقل حدوده موثوقية)"), &[])
                } else {
                    m(Msg("coefficient of variation (se / estimate)", "coefficient de variation (se / estimation)", "معامل الاختلاف (se / التقدير)"), &[])
                },
            ),
            ("deff", m(Msg("design effect", "effet de plan", "أثر التصميم"), &[])),
            ("df", m(Msg("degrees of freedom: {0}", "degrés de liberté : {0}", "درجات الحرية: {0}"), &[&dfs])),
        ]);
    } else {
        v.push((
            "value",
            m(
                Msg(
                    "number of {0} (protected); null when suppressed",
                    "nombre de {0} (protégé) ; vide si supprimé",
                    "عدد {0} (محمي)؛ فارغ إذا حُجب",
                ),
                &[unit],
            ),
        ));
    }
    v.extend([
        (
            "OBS_STATUS",
            m(Msg(
                "SDMX observation status: A normal, P provisional (the period is not closed yet), Q missing (suppressed), U low reliability",
                "statut d'observation SDMX : A normal, P provisoire (la période n'est pas close), Q manquant (supprimé), U fiabilité faible",
                "حالة الرصد SDMX: A عادية، P مؤقتة (الفترة لم تُغلق بعد)، Q مفقودة (محجوبة)، U موثوقية منخفضة",
            ), &[]),
        ),
        (
            "CONF_STATUS",
            m(Msg(
                "SDMX confidentiality status: F free, C confidential (suppressed)",
                "statut de confidentialité SDMX : F libre, C confidentiel (supprimé)",
                "حالة السرية SDMX: F متاحة، C سرية (محجوبة)",
            ), &[]),
        ),
        ("ref_year", m(Msg("the period's year, a 64-bit integer (a span's first year)", "l'année de la période, un entier 64 bits (la première année d'une durée)", "سنة الفترة، عدد صحيح من 64 بت (أول سنة في المدة)"), &[])),
        ("ref_quarter", m(Msg("the period's quarter, text `YYYY-Qn`", "le trimestre de la période, texte `YYYY-Qn`", "فصل الفترة، نص `YYYY-Qn`"), &[])),
        ("ref_month", m(Msg("the period's month, text `YYYY-MM`", "le mois de la période, texte `YYYY-MM`", "شهر الفترة، نص `YYYY-MM`"), &[])),
        ("ref_date", m(Msg("a stock's date (a date)", "la date d'un stock (une date)", "تاريخ الرصيد (تاريخ)"), &[])),
    ]);
    v
}

/// The release's public tables as a Frictionless Data Package (v2): one resource per table,
/// its Parquet files, its fields with types and, for dimensions, their codes as `categories`.
pub fn datapackage(
    plan: &Plan,
    manifest: &crate::manifest::Manifest,
    docs: &[TableDoc],
) -> serde_json::Value {
    use serde_json::json;
    let resources: Vec<serde_json::Value> = docs
        .iter()
        .map(|d| {
            let meanings: BTreeMap<&str, String> =
                measure_columns(d, Lang::En).into_iter().collect();
            let mut fields = Vec::new();
            for (name, dtype) in d.frame.schema().iter() {
                let name = name.as_str();
                let ty = match dtype {
                    DataType::String => "string",
                    DataType::Float32 | DataType::Float64 => "number",
                    DataType::Boolean => "boolean",
                    dt if dt.is_integer() => "integer",
                    _ => "any",
                };
                let mut f = json!({ "name": name, "type": ty });
                if let Some(dim) = d.dimensions.iter().find(|x| x.id == name) {
                    f["title"] = json!(dim.name.en);
                    f["description"] = json!(format!("{}; SDMX code list {}", dim.derivation.en, dim.codelist));
                    f["categories"] = json!(
                        dim.codes
                            .iter()
                            .map(|(c, l)| json!({ "value": c, "label": l.en }))
                            .collect::<Vec<_>>()
                    );
                    f["constraints"] = json!({
                        "required": true,
                        "enum": dim.codes.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>(),
                    });
                    f["migstat:labels"] = json!(dim.codes.iter().cloned().collect::<BTreeMap<_, _>>());
                } else if let Some(m) = meanings.get(name) {
                    f["description"] = json!(m);
                }
                fields.push(f);
            }
            json!({
                "name": d.id,
                "title": d.title.en,
                "path": d.files,
                "format": "parquet",
                "mediatype": "application/vnd.apache.parquet",
                "description": "One folder per reference period (`YYYY`, `YYYY-Qn`, `YYYY-MM`, or `YYYY-MM-DD` for a stock); each file holds its period as a typed column (`ref_year` integer, `ref_quarter` or `ref_month` text, `ref_date` date) and in SDMX TIME_PERIOD form (`ref_period`).",
                "schema": {
                    "fields": fields,
                    // Suppressed cells are nulls; some Parquet readers (pandas) show a null
                    // integer as NaN.
                    "missingValues": ["", "nan"],
                    "primaryKey": std::iter::once("ref_period".to_string())
                        .chain(d.dimensions.iter().map(|x| x.id.clone()))
                        .collect::<Vec<_>>(),
                },
                "migstat:source": d.source,
                "migstat:kind": d.kind,
                "migstat:unit": d.unit,
                "migstat:ref_period": d.ref_period,
                "migstat:periods": d.periods,
                "migstat:freq": d.freq,
                "migstat:protection": d.protection.en,
            })
        })
        .collect();
    json!({
        "$schema": "https://datapackage.org/profiles/2.0/datapackage.json",
        "name": plan.pipeline_id.to_lowercase().replace('_', "-"),
        "title": plan.title.clone().unwrap_or_else(|| plan.pipeline_id.clone()),
        "migstat:content_key": manifest.run_key,
        "description": format!(
            "Public tables of pipeline {} (content key {}, reference date {}, period {} to {}), produced by migstat {}.",
            plan.pipeline_id, short_key(&manifest.run_key), manifest.reference_date, manifest.reference_period[0],
            manifest.reference_period[1], crate::VERSION
        ),
        "resources": resources,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_periods_become_sdmx_time_periods() {
        // By hand, SDMX 2.1 TIME_PERIOD forms: a calendar year, years, and other spans in days.
        assert_eq!(time_period("2024-01-01/2024-12-31"), "2024");
        assert_eq!(time_period("2022-01-01/2024-12-31"), "2022-01-01/P3Y");
        assert_eq!(time_period("2024-01-01/2024-03-31"), "2024-01-01/P91D");
        assert_eq!(time_period("2024-Q1"), "2024-Q1");
        assert_eq!(time_period("not/a-period"), "not/a-period");
    }

    #[test]
    fn a_short_key_is_its_first_sixteen_characters() {
        assert_eq!(short_key("0123456789abcdef0123"), "0123456789abcdef");
        assert_eq!(short_key("abc"), "abc");
    }
}
