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
//! bytes. A few lines of script only check, once loaded, that each pyramid has bars and in which
//! direction the page was laid out (the headless-browser test reads the result from the `body`
//! element's data attributes).
//!
//! One page per publication language (`[publish] languages`): `index.html` in the first,
//! `index.<lang>.html` in the others, linked to each other; Arabic right to left; numbers as
//! each locale writes them ([`i18n::number`]); labels from the code lists.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use polars::prelude::*;

use crate::export::codebook::{DimDoc, TableDoc};
use crate::export::escape_markup as esc;
use crate::export::i18n;
use crate::manifest::Manifest;
use crate::manifest::{HistoryRecord, RunStatus};
use crate::vocab::Lang;

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

/// A value as `lang` writes numbers: whole numbers grouped by thousands, shares and other
/// values below 1 with three decimals, other decimals with one.
fn fmt_value(v: f64, decimals: bool, lang: Lang) -> String {
    let digits = if !decimals || (v.fract() == 0.0 && v.abs() >= 1.0) {
        0
    } else if v.abs() < 1.0 {
        3
    } else {
        1
    };
    i18n::number(v, digits, lang)
}

/// Dates, periods and codes inside a sentence keep their left-to-right order on an Arabic page
/// (`2024-12-31` would otherwise show as `31-12-2024`): escaped and isolated.
fn ltr(s: &str) -> String {
    format!("<bdi dir=\"ltr\">{}</bdi>", esc(s))
}

/// A count as `lang` writes it.
fn fmt_count(n: u64, lang: Lang) -> String {
    i18n::number(n as f64, 0, lang)
}

/// The report's fixed texts.
mod text {
    use crate::export::i18n::Msg;
    pub const INTRO: Msg = Msg(
        "Pipeline <code>{0}</code>, content key <code>{1}</code>, migstat {2}. Reference date {3}; reference period {4} to {5}.",
        "Chaîne <code>{0}</code>, clé de contenu <code>{1}</code>, migstat {2}. Date de référence {3} ; période de référence du {4} au {5}.",
        "سلسلة المعالجة <code>{0}</code>، مفتاح المحتوى <code>{1}</code>، migstat {2}. التاريخ المرجعي {3}؛ الفترة المرجعية من {4} إلى {5}.",
    );
    pub const LEGEND: Msg = Msg(
        "Flags: OBS_STATUS / CONF_STATUS. <b>x</b> = suppressed to protect confidentiality (Q/C: cells of too few persons and the cells that would let them be recomputed look alike). U = low reliability (survey CV above the caution limit). P = provisional (the period is not closed yet). Counts may be rounded or perturbed; see each table's protection.",
        "Indicateurs : OBS_STATUS / CONF_STATUS. <b>x</b> = supprimé pour protéger la confidentialité (Q/C : les cellules de trop peu de personnes et celles qui permettraient de les recalculer sont indiscernables). U = fiabilité faible (CV de l'enquête au-delà du seuil de prudence). P = provisoire (la période n'est pas close). Les effectifs peuvent être arrondis ou perturbés ; voir la protection de chaque tableau.",
        "المؤشرات: OBS_STATUS / CONF_STATUS. ‏<b>x</b> = محجوب لحماية السرية (Q/C: خلايا العدد القليل من الأشخاص والخلايا التي قد تسمح بإعادة حسابها متماثلة). U = موثوقية منخفضة (معامل اختلاف البحث فوق حد الحذر). P = مؤقتة (الفترة لم تُغلق بعد). قد تكون الأعداد مقرّبة أو مشوَّشة؛ انظر حماية كل جدول.",
    );
    pub const PYRAMIDS: Msg = Msg(
        "Population pyramids",
        "Pyramides des âges",
        "الأهرام السكانية",
    );
    pub const TABLES: Msg = Msg("Tables", "Tableaux", "الجداول");
    pub const VALIDATION: Msg = Msg("Validation", "Validation", "التحقق من صحة البيانات");
    pub const MALES: Msg = Msg("Males", "Hommes", "ذكور");
    pub const FEMALES: Msg = Msg("Females", "Femmes", "إناث");
    pub const ALL: Msg = Msg("{0}: all", "{0} : ensemble", "{0}: المجموع");
    pub const OF: Msg = Msg("{0}: {1}", "{0} : {1}", "{0}: {1}");
    pub const SUPPRESSED: Msg = Msg("suppressed", "supprimé", "محجوب");
    pub const LARGEST: Msg = Msg(
        "largest bar: {0}",
        "barre la plus longue : {0}",
        "أطول عمود: {0}",
    );
    pub const NONE_PUBLISHED: Msg = Msg("none published", "aucune publiée", "لا شيء منشور");
    pub const CONFIDENTIAL: Msg = Msg("confidential", "confidentiel", "سري");
    pub const UNRELIABLE: Msg = Msg(
        "withheld: too unreliable",
        "retenu : trop peu fiable",
        "محتجز: غير موثوق بما يكفي",
    );
    pub const CV: Msg = Msg("CV {0}%", "CV {0} %", "معامل الاختلاف {0}%");
    pub const TOTAL: Msg = Msg("Total", "Total", "المجموع");
    pub const BY: Msg = Msg(
        "by {0} ({1} codes)",
        "par {0} ({1} codes)",
        "حسب {0} ({1} رمزًا)",
    );
    pub const CODE: Msg = Msg("code", "code", "الرمز");
    pub const LABEL: Msg = Msg("label", "libellé", "التسمية");
    pub const FLAGS: Msg = Msg("flags", "indicateurs", "المؤشرات");
    pub const MORE_CODES: Msg = Msg(
        "… {0} more codes in the table files",
        "… {0} autres codes dans les fichiers du tableau",
        "… {0} رموز أخرى في ملفات الجدول",
    );
    pub const SHOWN: Msg = Msg(
        "{0}; shown: {1}",
        "{0} ; affichée : {1}",
        "{0}؛ المعروضة: {1}",
    );
    pub const TABLE_LEGEND: Msg = Msg(
        "{0}; {1}; {2}. Protection: {3}.",
        "{0} ; {1} ; {2}. Protection : {3}.",
        "{0}؛ {1}؛ {2}. الحماية: {3}.",
    );
    pub const SUPPRESSED_CELLS: Msg = Msg(
        " {0} of {1} cells suppressed ({2} primary, {3} secondary); audit {4}.",
        " {0} cellules supprimées sur {1} ({2} primaires, {3} secondaires) ; audit {4}.",
        " {0} خلية محجوبة من أصل {1} ({2} أولية، {3} ثانوية)؛ التدقيق {4}.",
    );
    pub const PASSED: Msg = Msg("passed", "réussi", "ناجح");
    pub const FAILED: Msg = Msg("failed", "échoué", "فاشل");
    pub const SOURCE: Msg = Msg("source", "source", "المصدر");
    pub const ROWS_READ: Msg = Msg("rows read", "lignes lues", "الصفوف المقروءة");
    pub const ACCEPTED: Msg = Msg("accepted", "acceptées", "المقبولة");
    pub const QUARANTINED: Msg = Msg("quarantined", "en quarantaine", "المعزولة");
    pub const BY_RULE: Msg = Msg("by rule", "par règle", "حسب القاعدة");
    pub const UNMAPPED: Msg = Msg("Unmapped codes", "Codes non appariés", "رموز غير مطابقة");
    pub const ALL_MAPPED: Msg = Msg(
        "None: every raw code was mapped.",
        "Aucun : chaque code brut a été apparié.",
        "لا شيء: طوبق كل رمز خام.",
    );
    pub const COLUMN: Msg = Msg("column", "colonne", "العمود");
    pub const RAW_VALUE: Msg = Msg("raw value", "valeur brute", "القيمة الخام");
    pub const ROWS: Msg = Msg("rows", "lignes", "الصفوف");
    pub const ACTION: Msg = Msg("action", "traitement", "الإجراء");
    pub const MORE_UNMAPPED: Msg = Msg(
        "… and {0} more unmapped values, the most frequent first in <code>manifest.json</code> (<code>unmapped_codes</code>); the quarantine holds every one.",
        "… et {0} autres valeurs non appariées, les plus fréquentes d'abord dans <code>manifest.json</code> (<code>unmapped_codes</code>) ; la quarantaine les contient toutes.",
        "… و{0} قيمة أخرى غير مطابقة، الأكثر تكرارًا أولًا في <code>manifest.json</code> ‏(<code>unmapped_codes</code>)؛ والعزل يحتويها كلها.",
    );
    pub const TREND: Msg = Msg(
        "Trend over the last runs",
        "Évolution sur les dernières exécutions",
        "التطور عبر عمليات التشغيل الأخيرة",
    );
    pub const TREND_LEGEND: Msg = Msg(
        "Rows quarantined / rows read per source and run (this release last).",
        "Lignes en quarantaine / lignes lues par source et par exécution (cette diffusion en dernier).",
        "الصفوف المعزولة / الصفوف المقروءة حسب المصدر وعملية التشغيل (هذا الإصدار أخيرًا).",
    );
    pub const RUN: Msg = Msg("run", "exécution", "عملية التشغيل");
    pub const STATUS: Msg = Msg("status", "statut", "الحالة");
    pub const THIS_RELEASE: Msg = Msg("this release", "cette diffusion", "هذا الإصدار");
    pub const LANGUAGES: Msg = Msg("Languages", "Langues", "اللغات");
}

/// One table's cells, indexed by their codes.
struct Cells<'a> {
    doc: &'a TableDoc,
    lang: Lang,
    dims: Vec<&'a StringChunked>,
    value: Float64Chunked,
    obs: &'a StringChunked,
    conf: &'a StringChunked,
    cv: Option<Float64Chunked>,
    index: BTreeMap<Vec<&'a str>, usize>,
}

impl<'a> Cells<'a> {
    fn new(doc: &'a TableDoc, lang: Lang) -> Option<Self> {
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
            lang,
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
                    text::CONFIDENTIAL.get(self.lang)
                } else {
                    text::UNRELIABLE.get(self.lang)
                }
            ),
            Some(v) => {
                let cv = self
                    .cv
                    .as_ref()
                    .and_then(|c| c.get(i))
                    .map(|c| {
                        format!(
                            " <span class=\"cv\">{}</span>",
                            text::CV.fill(self.lang, &[&format!("{:.0}", c * 100.0)])
                        )
                    })
                    .unwrap_or_default();
                let class = if obs == "U" { "num unreliable" } else { "num" };
                format!(
                    "<td class=\"{class}\">{}{cv}</td><td class=\"flag\">{flags}</td>",
                    fmt_value(v, decimals(self.doc), self.lang)
                )
            }
        }
    }
}

fn label(dim: &DimDoc, code: &str, lang: Lang) -> String {
    dim.codes
        .iter()
        .find(|(c, _)| c == code)
        .map_or(code.to_string(), |(_, l)| l.or_en(lang).to_string())
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
    let lang = cells.lang;
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
        "<text x=\"{}\" y=\"18\" text-anchor=\"middle\" class=\"axis\">{}</text><text x=\"{}\" y=\"18\" text-anchor=\"middle\" class=\"axis\">{}</text>",
        10.0 + half / 2.0,
        text::MALES.get(lang),
        cx + label_w / 2.0 + half / 2.0,
        text::FEMALES.get(lang)
    );
    for (k, (band, m, f)) in rows.iter().rev().enumerate() {
        let y = top + row_h * k as f64;
        let _ = writeln!(
            s,
            "<text x=\"{cx}\" y=\"{}\" text-anchor=\"middle\" class=\"band\">{}</text>",
            y + row_h * 0.7,
            esc(&label(age_dim, band, lang))
        );
        for (side, v, sexname) in [
            (-1.0, m, text::MALES.get(lang)),
            (1.0, f, text::FEMALES.get(lang)),
        ] {
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
                        esc(&label(age_dim, band, lang)),
                        fmt_value(*v, decimals(cells.doc), lang)
                    );
                }
                None => {
                    // Suppressed: an outlined marker, never a value.
                    let x = if side < 0.0 { x0 - 24.0 } else { x0 };
                    let _ = writeln!(
                        s,
                        "<rect class=\"bar suppressed\" x=\"{x:.1}\" y=\"{:.1}\" width=\"24\" height=\"{:.1}\"><title>{sexname}, {}: {}</title></rect><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" class=\"x\">x</text>",
                        y + 1.0,
                        row_h - 2.0,
                        esc(&label(age_dim, band, lang)),
                        text::SUPPRESSED.get(lang),
                        x + 12.0,
                        y + row_h * 0.72
                    );
                }
            }
        }
    }
    let _ = writeln!(
        s,
        "<text x=\"{cx}\" y=\"{}\" text-anchor=\"middle\" class=\"axis\">{}</text></svg><figcaption>{}</figcaption></figure>",
        height - 8.0,
        text::LARGEST.fill(
            lang,
            &[
                &largest.map_or(text::NONE_PUBLISHED.get(lang).to_string(), |v| {
                    fmt_value(v, decimals(cells.doc), lang)
                })
            ]
        ),
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
    let lang = cells.lang;
    let title = d.title.or_en(lang);
    let mut out = vec![pyramid(
        cells,
        sex,
        age,
        &[],
        &text::ALL.fill(lang, &[title]),
    )];
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
                &text::OF.fill(lang, &[title, l.or_en(lang)]),
            ));
        }
    }
    out
}

fn margins(cells: &Cells<'_>) -> String {
    let d = cells.doc;
    let lang = cells.lang;
    let mut s = String::new();
    let total = cells.at(&[]);
    let _ = writeln!(
        s,
        "<table class=\"cells\"><tr><th>{}</th><th></th>{}</tr></table>",
        text::TOTAL.get(lang),
        cells.cell_html(total)
    );
    for (i, dim) in d.dimensions.iter().enumerate() {
        let _ = writeln!(
            s,
            "<details><summary>{}</summary><table class=\"cells\"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>",
            esc(&text::BY.fill(
                lang,
                &[
                    dim.name.or_en(lang),
                    &fmt_count(dim.codes.len() as u64, lang)
                ]
            )),
            text::CODE.get(lang),
            text::LABEL.get(lang),
            esc(&d.measure),
            text::FLAGS.get(lang)
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
                esc(l.or_en(lang)),
                cells.cell_html(cells.at(&[(i, code.as_str())]))
            );
        }
        if codes.len() > MAX_CODES {
            let _ = writeln!(
                s,
                "<tr><td colspan=\"4\">{}</td></tr>",
                text::MORE_CODES.fill(lang, &[&fmt_count((codes.len() - MAX_CODES) as u64, lang)])
            );
        }
        s.push_str("</tbody></table></details>\n");
    }
    s
}

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#1b1b1b;padding:0 1rem}
h1{font-size:1.6rem}h2{margin-top:2.2rem;border-bottom:1px solid #ccc}h3{margin-top:1.6rem}
table{border-collapse:collapse;margin:.5rem 0}td,th{padding:2px 8px;border-bottom:1px solid #eee;text-align:start}
td.num{text-align:right;font-variant-numeric:tabular-nums}td.suppressed{color:#a33;font-weight:bold}
td.unreliable{color:#8a6d00}td.flag{color:#777;font-size:12px}.cv{color:#777;font-size:12px}
.pyramids{display:flex;flex-wrap:wrap;gap:1rem}figure{margin:0}figcaption{font-size:12px;color:#555;text-align:center}
rect.male{fill:#3b6ea8}rect.female{fill:#c0504d}rect.suppressed{fill:none;stroke:#a33;stroke-dasharray:3 2}
text{font:11px system-ui,sans-serif;fill:#333}text.x{fill:#a33;font-weight:bold}text.axis{fill:#555}
.legend{color:#555;font-size:13px}.bad{color:#a33}nav.lang a,nav.lang b{margin-inline-end:1rem}
[dir=rtl] body,[dir=rtl] text{font-family:system-ui,'Noto Naskh Arabic','DejaVu Sans',sans-serif}";

const CHECK: &str = "window.migstatErrors=[];window.addEventListener('error',function(e){window.migstatErrors.push(String(e.message))});
document.addEventListener('DOMContentLoaded',function(){var p=document.querySelectorAll('svg.pyramid'),d=0;
for(var i=0;i<p.length;i++){if(p[i].querySelectorAll('rect.bar').length>0)d++}
document.body.setAttribute('data-pyramids',String(p.length));document.body.setAttribute('data-drawn',String(d));
document.body.setAttribute('data-errors',String(window.migstatErrors.length));
var h=document.querySelector('h1'),r=document.createRange();r.selectNodeContents(h);var t=r.getBoundingClientRect(),b=h.getBoundingClientRect();
document.body.setAttribute('data-dir',getComputedStyle(document.body).direction);
document.body.setAttribute('data-title-align',(b.right-t.right)<(t.left-b.left)?'right':'left');});";

/// A run in the trend: its id, status, and per source (quarantined, read).
type TrendRow = (String, RunStatus, BTreeMap<String, (u64, u64)>);

/// The report page in `lang`; `languages` are the release's publication languages, the first
/// one's page being `index.html` (each page links to the others).
pub fn html(
    plan: &crate::spec::Plan,
    manifest: &Manifest,
    docs: &[TableDoc],
    history: &[HistoryRecord],
    lang: Lang,
) -> String {
    let title = crate::export::codebook::plan_title(plan);
    let title = title.or_en(lang);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<!DOCTYPE html>\n<html lang=\"{}\" dir=\"{}\"><head><meta charset=\"utf-8\">\n<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{} — {}</title>\n<style>{STYLE}</style>\n<script>{CHECK}</script>\n</head><body>",
        lang.code(),
        lang.dir(),
        esc(title),
        esc(&manifest.reference_date)
    );
    if plan.languages.len() > 1 {
        let _ = write!(
            s,
            "<nav class=\"lang\" aria-label=\"{}\">",
            text::LANGUAGES.get(lang)
        );
        for (i, l) in plan.languages.iter().enumerate() {
            let page = crate::layout::report_page((i > 0).then_some(l.code()));
            if *l == lang {
                let _ = write!(s, "<b lang=\"{0}\">{1}</b> ", l.code(), l.endonym());
            } else {
                let _ = write!(
                    s,
                    "<a href=\"{page}\" hreflang=\"{0}\" lang=\"{0}\">{1}</a> ",
                    l.code(),
                    l.endonym()
                );
            }
        }
        s.push_str("</nav>\n");
    }
    let _ = writeln!(
        s,
        "<h1>{}</h1>\n<p>{}</p>",
        esc(title),
        text::INTRO.fill(
            lang,
            &[
                &esc(&plan.pipeline_id),
                &esc(crate::export::codebook::short_key(&manifest.run_key)),
                crate::VERSION,
                &ltr(&manifest.reference_date),
                &ltr(&manifest.reference_period[0]),
                &ltr(&manifest.reference_period[1]),
            ]
        )
    );
    let _ = writeln!(s, "<p class=\"legend\">{}</p>", text::LEGEND.get(lang));

    let all: Vec<Cells<'_>> = docs.iter().filter_map(|d| Cells::new(d, lang)).collect();
    let _ = writeln!(s, "<h2 id=\"pyramids\">{}</h2>", text::PYRAMIDS.get(lang));
    for c in &all {
        let p = pyramids(c);
        if p.is_empty() {
            continue;
        }
        let _ = writeln!(
            s,
            "<h3 id=\"p-{}\">{} <small>({})</small></h3><div class=\"pyramids\">",
            esc(&c.doc.id),
            esc(c.doc.title.or_en(lang)),
            esc(i18n::unit(&c.doc.unit).or_en(lang))
        );
        for svg in p {
            s.push_str(&svg);
        }
        s.push_str("</div>\n");
    }

    let _ = writeln!(s, "<h2 id=\"tables\">{}</h2>", text::TABLES.get(lang));
    for c in &all {
        let d = c.doc;
        let shown = match d.periods.len() {
            0 | 1 => ltr(&d.ref_period),
            // A series: its first and last periods (language-neutral), the last one shown.
            _ => text::SHOWN.fill(
                lang,
                &[
                    &ltr(&format!(
                        "{} – {}",
                        d.periods.first().map_or("", String::as_str),
                        d.periods.last().map_or("", String::as_str)
                    )),
                    &ltr(d.periods.last().map_or("", String::as_str)),
                ],
            ),
        };
        let protection = d.protection.or_en(lang).to_string();
        let summary = d
            .protection_summary
            .as_ref()
            .filter(|p| p.primary + p.secondary > 0)
            .map(|p| {
                text::SUPPRESSED_CELLS.fill(
                    lang,
                    &[
                        &fmt_count(p.primary + p.secondary, lang),
                        &fmt_count(p.cells, lang),
                        &fmt_count(p.primary, lang),
                        &fmt_count(p.secondary, lang),
                        if p.audit_passed {
                            text::PASSED.get(lang)
                        } else {
                            text::FAILED.get(lang)
                        },
                    ],
                )
            })
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "<h3 id=\"t-{}\">{} <small><code>{}</code></small></h3>\n<p class=\"legend\">{}{}</p>",
            esc(&d.id),
            esc(d.title.or_en(lang)),
            esc(&d.id),
            text::TABLE_LEGEND.fill(
                lang,
                &[
                    &esc(i18n::kind(&d.kind).or_en(lang)),
                    &esc(i18n::unit(&d.unit).or_en(lang)),
                    &shown,
                    &esc(&protection)
                ]
            ),
            esc(&summary)
        );
        s.push_str(&margins(c));
    }

    let _ = writeln!(
        s,
        "<h2 id=\"validation\">{}</h2>\n<table><thead><tr><th>{}</th><th class=\"num\">{}</th><th class=\"num\">{}</th><th class=\"num\">{}</th><th>{}</th></tr></thead><tbody>",
        text::VALIDATION.get(lang),
        text::SOURCE.get(lang),
        text::ROWS_READ.get(lang),
        text::ACCEPTED.get(lang),
        text::QUARANTINED.get(lang),
        text::BY_RULE.get(lang)
    );
    for src in &manifest.sources {
        let rules = src
            .quarantine_by_rule
            .iter()
            .map(|(r, n)| format!("{} {}", esc(r), fmt_count(*n, lang)))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            esc(&src.id),
            fmt_count(src.rows_read, lang),
            fmt_count(src.rows_accepted, lang),
            fmt_count(src.rows_quarantined, lang),
            rules
        );
    }
    let _ = writeln!(s, "</tbody></table>\n<h3>{}</h3>", text::UNMAPPED.get(lang));
    let unmapped: Vec<(&str, &crate::harmonize::UnmappedValue)> = manifest
        .sources
        .iter()
        .flat_map(|src| src.unmapped_codes.iter().map(move |u| (src.id.as_str(), u)))
        .collect();
    if unmapped.is_empty() {
        let _ = writeln!(s, "<p>{}</p>", text::ALL_MAPPED.get(lang));
    } else {
        let _ = writeln!(
            s,
            "<table><thead><tr><th>{}</th><th>{}</th><th>{}</th><th class=\"num\">{}</th><th>{}</th></tr></thead><tbody>",
            text::SOURCE.get(lang),
            text::COLUMN.get(lang),
            text::RAW_VALUE.get(lang),
            text::ROWS.get(lang),
            text::ACTION.get(lang)
        );
        for (src, u) in unmapped.iter().take(50) {
            let _ = writeln!(
                s,
                "<tr><td>{}</td><td>{} ← {}</td><td><code>{}</code></td><td class=\"num\">{}</td><td>{}</td></tr>",
                esc(src),
                esc(&u.column),
                esc(&u.field),
                esc(&u.raw),
                fmt_count(u.count, lang),
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
                "<p class=\"legend\">{}</p>",
                text::MORE_UNMAPPED.fill(lang, &[&fmt_count(left, lang)])
            );
        }
    }

    // Trend: the last runs of the history, then this one.
    let _ = writeln!(
        s,
        "<h3>{}</h3>\n<p class=\"legend\">{}</p>",
        text::TREND.get(lang),
        text::TREND_LEGEND.get(lang)
    );
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
        text::THIS_RELEASE.get(lang).to_string(),
        RunStatus::Succeeded,
        manifest
            .sources
            .iter()
            .map(|x| (x.id.clone(), (x.rows_quarantined, x.rows_read)))
            .collect(),
    ));
    let start = runs.len().saturating_sub(TREND_RUNS);
    let runs = &runs[start..];
    let _ = write!(
        s,
        "<table><thead><tr><th>{}</th><th>{}</th>",
        text::RUN.get(lang),
        text::STATUS.get(lang)
    );
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
            i18n::run_status(*status).get(lang)
        );
        for src in &manifest.sources {
            match by.get(&src.id) {
                Some((q, r)) => {
                    let _ = write!(
                        s,
                        "<td class=\"num\">{} / {}</td>",
                        fmt_count(*q, lang),
                        fmt_count(*r, lang)
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
