//! Reference metadata of each public table, following Eurostat's Single Integrated Metadata
//! Structure (SIMS 2.0, the ESS's ESMS and ESQRS in one list of concepts).
//!
//! Input: the plan (its `[metadata]` section and each table's `[tables.<id>.metadata]`: what
//! only people can say — contact, mandate, policies, calendar, concepts, population), the
//! release's manifest and [`TableDoc`]s. Output: for each table the SIMS concepts with their
//! text, most of it derived from what the release is (source, classifications, unit, periods,
//! frequency, accuracy from the validation counts and the survey design, protection, revision
//! practice, processing), the spec's text taking precedence; written as
//! `public/metadata/sims.json`, as an SDMX-ML 2.1 generic metadata set
//! (`public/sdmx/metadata.xml`, one report per dataflow, concept ids of the SIMS metadata
//! structure) and as a section of each table in the codebook.
//!
//! Nothing here comes from the deliveries themselves (no path, no hash): like every public
//! document it is made from the public tables and the spec.

use std::fmt::Write as _;

use serde::Serialize;

use crate::export::codebook::TableDoc;
use crate::export::escape_markup as esc;
use crate::manifest::Manifest;
use crate::spec::{Plan, TableSpec};

use crate::spec::{SIMS_RELEASE_KEYS as RELEASE_KEYS, SIMS_TABLE_KEYS as TABLE_KEYS};

/// One SIMS concept of a table's report.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    /// SIMS number (`S.3.6`).
    pub sims: &'static str,
    /// SDMX concept id of the SIMS metadata structure (`STAT_POP`).
    pub id: &'static str,
    pub name: &'static str,
    pub text: String,
    /// `spec` when the spec says it, `derived` when migstat derived it from the release.
    pub from: &'static str,
}

/// The SIMS concepts every report carries: (number, id, name). Concepts whose text neither the
/// spec nor the release gives are written "not available" (SIMS asks for every concept).
const CONCEPTS: [(&str, &str, &str); 36] = [
    ("S.1.1", "CONTACT_ORGANISATION", "Contact organisation"),
    (
        "S.1.2",
        "CONTACT_ORGANISATION_UNIT",
        "Contact organisation unit",
    ),
    ("S.1.6", "CONTACT_MAIL", "Contact email address"),
    ("S.2.3", "META_LAST_UPDATE", "Metadata last update"),
    ("S.3.1", "DATA_DESCR", "Data description"),
    ("S.3.2", "CLASS_SYSTEM", "Classification system"),
    (
        "S.3.4",
        "STAT_CONC_DEF",
        "Statistical concepts and definitions",
    ),
    ("S.3.5", "STAT_UNIT", "Statistical unit"),
    ("S.3.6", "STAT_POP", "Statistical population"),
    ("S.3.7", "REF_AREA", "Reference area"),
    ("S.3.8", "COVERAGE_TIME", "Time coverage"),
    ("S.4", "UNIT_MEASURE", "Unit of measure"),
    ("S.5", "REF_PERIOD", "Reference period"),
    ("S.6.1", "INST_MANDATE", "Institutional mandate"),
    ("S.7.1", "CONF_POLICY", "Confidentiality - policy"),
    ("S.7.2", "CONF_DATA_TR", "Confidentiality - data treatment"),
    ("S.8.1", "REL_CAL_POLICY", "Release calendar"),
    ("S.8.2", "REL_CAL_ACCESS", "Release calendar access"),
    ("S.8.3", "REL_POL_US_AC", "User access"),
    ("S.9", "FREQ_DISS", "Frequency of dissemination"),
    ("S.10.6", "DOC_METHOD", "Documentation on methodology"),
    ("S.11.1", "QUALITY_MGMNT", "Quality assurance"),
    ("S.12.1", "RELEVANCE", "Relevance - user needs"),
    ("S.13.1", "ACCURACY_OVERALL", "Overall accuracy"),
    ("S.13.2", "SAMPLING_ERR", "Sampling error"),
    ("S.13.3", "NONSAMPLING_ERR", "Non-sampling error"),
    ("S.14.1", "TIMELINESS", "Timeliness"),
    ("S.15.1", "COMPAR_GEO", "Comparability - geographical"),
    ("S.15.3", "COHERENCE", "Coherence - cross domain"),
    ("S.17.1", "REV_POLICY", "Data revision - policy"),
    ("S.17.2", "REV_PRACTICE", "Data revision - practice"),
    ("S.18.1", "SOURCE_TYPE", "Source data"),
    ("S.18.2", "FREQ_COLL", "Frequency of data collection"),
    ("S.18.4", "DATA_VALIDATION", "Data validation"),
    ("S.18.5", "DATA_COMP", "Data compilation"),
    ("S.19", "COMMENT_DSET", "Comment"),
];

/// The SIMS concepts' names in French and Arabic, by id (the codebook's other languages; the
/// texts stay English).
const NAMES_FR_AR: [(&str, &str, &str); 36] = [
    (
        "CONTACT_ORGANISATION",
        "Organisation de contact",
        "الجهة المسؤولة عن الاتصال",
    ),
    (
        "CONTACT_ORGANISATION_UNIT",
        "Unité de l'organisation de contact",
        "الوحدة المسؤولة عن الاتصال",
    ),
    (
        "CONTACT_MAIL",
        "Adresse électronique de contact",
        "البريد الإلكتروني للاتصال",
    ),
    (
        "META_LAST_UPDATE",
        "Dernière mise à jour des métadonnées",
        "آخر تحديث للبيانات الوصفية",
    ),
    ("DATA_DESCR", "Description des données", "وصف البيانات"),
    ("CLASS_SYSTEM", "Système de classification", "نظام التصنيف"),
    (
        "STAT_CONC_DEF",
        "Concepts et définitions statistiques",
        "المفاهيم والتعاريف الإحصائية",
    ),
    ("STAT_UNIT", "Unité statistique", "الوحدة الإحصائية"),
    ("STAT_POP", "Population statistique", "المجتمع الإحصائي"),
    ("REF_AREA", "Zone de référence", "المنطقة المرجعية"),
    ("COVERAGE_TIME", "Couverture temporelle", "التغطية الزمنية"),
    ("UNIT_MEASURE", "Unité de mesure", "وحدة القياس"),
    ("REF_PERIOD", "Période de référence", "الفترة المرجعية"),
    ("INST_MANDATE", "Mandat institutionnel", "الولاية المؤسسية"),
    (
        "CONF_POLICY",
        "Confidentialité - politique",
        "السرية - السياسة",
    ),
    (
        "CONF_DATA_TR",
        "Confidentialité - traitement des données",
        "السرية - معالجة البيانات",
    ),
    ("REL_CAL_POLICY", "Calendrier de diffusion", "جدول النشر"),
    (
        "REL_CAL_ACCESS",
        "Accès au calendrier de diffusion",
        "الوصول إلى جدول النشر",
    ),
    ("REL_POL_US_AC", "Accès des utilisateurs", "وصول المستخدمين"),
    ("FREQ_DISS", "Fréquence de diffusion", "وتيرة النشر"),
    (
        "DOC_METHOD",
        "Documentation méthodologique",
        "التوثيق المنهجي",
    ),
    ("QUALITY_MGMNT", "Assurance qualité", "ضمان الجودة"),
    (
        "RELEVANCE",
        "Pertinence - besoins des utilisateurs",
        "الملاءمة - احتياجات المستخدمين",
    ),
    ("ACCURACY_OVERALL", "Exactitude globale", "الدقة الإجمالية"),
    ("SAMPLING_ERR", "Erreur d'échantillonnage", "خطأ المعاينة"),
    (
        "NONSAMPLING_ERR",
        "Erreur non due à l'échantillonnage",
        "الأخطاء غير الناتجة عن المعاينة",
    ),
    ("TIMELINESS", "Actualité", "الآنية"),
    (
        "COMPAR_GEO",
        "Comparabilité - géographique",
        "قابلية المقارنة - جغرافيًا",
    ),
    (
        "COHERENCE",
        "Cohérence - entre domaines",
        "الاتساق - بين المجالات",
    ),
    (
        "REV_POLICY",
        "Révision des données - politique",
        "مراجعة البيانات - السياسة",
    ),
    (
        "REV_PRACTICE",
        "Révision des données - pratique",
        "مراجعة البيانات - الممارسة",
    ),
    ("SOURCE_TYPE", "Données sources", "بيانات المصدر"),
    (
        "FREQ_COLL",
        "Fréquence de la collecte des données",
        "وتيرة جمع البيانات",
    ),
    (
        "DATA_VALIDATION",
        "Validation des données",
        "التحقق من البيانات",
    ),
    ("DATA_COMP", "Compilation des données", "تجميع البيانات"),
    ("COMMENT_DSET", "Commentaire", "تعليق"),
];

/// A concept's name in `lang` (English when it has no other).
fn concept_name(item: &Item, lang: crate::vocab::Lang) -> &'static str {
    let other = NAMES_FR_AR.iter().find(|(id, _, _)| *id == item.id);
    match (lang, other) {
        (crate::vocab::Lang::Fr, Some((_, fr, _))) => fr,
        (crate::vocab::Lang::Ar, Some((_, _, ar))) => ar,
        _ => item.name,
    }
}

/// Said where neither the spec nor the release gives a concept's text.
pub const NOT_AVAILABLE: &str = "not available: give it in the spec's [metadata] section";

/// The SIMS report of one public table.
pub fn report(plan: &Plan, manifest: &Manifest, doc: &TableDoc, t: &TableSpec) -> Vec<Item> {
    let source = plan.sources.iter().find(|s| s.id == t.source);
    let from_spec = |id: &str| -> Option<String> {
        TABLE_KEYS
            .iter()
            .find(|(_, c)| *c == id)
            .and_then(|(k, _)| t.metadata.get(*k))
            .or_else(|| {
                RELEASE_KEYS
                    .iter()
                    .find(|(_, c)| *c == id)
                    .and_then(|(k, _)| plan.metadata.get(*k))
            })
            .cloned()
    };
    let report = manifest.sources.iter().find(|s| s.id == t.source);
    let periods = match doc.periods.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [first, .., last] => format!("{first} to {last} ({} periods)", doc.periods.len()),
    };
    let derived = |id: &str| -> Option<String> {
        Some(match id {
            "META_LAST_UPDATE" => format!(
                "with the release of content key {} (migstat {}); data cut-off {}",
                crate::export::codebook::short_key(&manifest.run_key),
                crate::VERSION,
                manifest.reference_date
            ),
            "DATA_DESCR" => format!(
                "{} ({}; {}), by {}",
                doc.title.en,
                doc.kind,
                doc.unit,
                doc.dimensions
                    .iter()
                    .map(|d| d.name.en.to_lowercase())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "CLASS_SYSTEM" => doc
                .dimensions
                .iter()
                .map(|d| format!("{}: {}", d.id, d.codelist))
                .collect::<Vec<_>>()
                .join("; "),
            "STAT_CONC_DEF" => doc
                .dimensions
                .iter()
                .map(|d| format!("{} — {}", d.name.en, d.derivation.en))
                .collect::<Vec<_>>()
                .join("; "),
            "STAT_UNIT" => doc.unit.clone(),
            "STAT_POP" => {
                let mut s = format!(
                    "{} of {}",
                    doc.unit,
                    source
                        .and_then(|s| s.description.clone())
                        .unwrap_or_else(|| t.source.clone())
                );
                if let Some((c, v)) = &t.filter {
                    let _ = write!(
                        s,
                        ", {c} in {}",
                        v.iter().cloned().collect::<Vec<_>>().join(", ")
                    );
                }
                s
            }
            "REF_AREA" => {
                let a = plan.sdmx.ref_area.clone()?;
                let name = plan.codelists.get("countries").and_then(|cl| {
                    let iso2 = cl.columns.iter().position(|c| c == "iso2")?;
                    let (code, _) = cl.rows.iter().find(|(_, r)| r.get(iso2) == Some(&a))?;
                    cl.attribute(code, "label_en").map(str::to_string)
                });
                match name {
                    Some(n) => format!("{a} ({n})"),
                    None => a,
                }
            }
            "COVERAGE_TIME" => periods.clone(),
            "UNIT_MEASURE" => doc.unit_measure.sdmx().1.to_string(),
            "REF_PERIOD" => format!(
                "{periods}; {}",
                match (&t.kind, &t.periods.date) {
                    (crate::spec::TableKind::Stock { .. }, _) =>
                        "a stock on the last day of each period".to_string(),
                    (_, Some(date)) =>
                        format!("each record in the period of its event date `{date}`"),
                    (_, None) => "every record in the table's one period".to_string(),
                }
            ),
            "CONF_POLICY" => "no published cell may identify a person: true values stay in the restricted tier; every public table is protected before it is written".to_string(),
            "CONF_DATA_TR" => doc.protection.en.clone(),
            "FREQ_DISS" => format!(
                "a release after each run (nightly refresh); the series' periods are SDMX FREQ `{}`",
                doc.freq
            ),
            "DOC_METHOD" => "the codebook (public/codebook.md), the data package (public/datapackage.json) and the SDMX structures (public/sdmx/structure.xml) of the release".to_string(),
            "ACCURACY_OVERALL" => {
                let r = report?;
                format!(
                    "{} of {} delivered rows accepted ({} quarantined with their reasons); {}",
                    r.rows_accepted,
                    r.rows_read,
                    r.rows_quarantined,
                    if doc.survey {
                        "estimates with design-based standard errors, coefficients of variation and confidence intervals"
                    } else {
                        "counts of the registers: no sampling error"
                    }
                )
            }
            "SAMPLING_ERR" => {
                if doc.survey {
                    let design = source.and_then(|s| s.design.as_ref());
                    format!(
                        "design-based: {} variance{}; CV, 95% intervals and design effects per cell ({})",
                        match design.and_then(|d| d.replicates.as_ref()) {
                            Some(r) => format!("replicate-weight ({:?}, {} replicates)", r.kind, r.columns.len()),
                            None => "Taylor-linearization (stratified multistage)".to_string(),
                        },
                        match design.and_then(|d| d.calibration.as_ref()) {
                            Some(_) => " on calibrated weights",
                            None => "",
                        },
                        doc.interval
                            .as_ref()
                            .map_or("p ± q·SE".to_string(), |(m, _)| m.clone())
                    )
                } else {
                    "none: a complete count of the register's records".to_string()
                }
            }
            "NONSAMPLING_ERR" => {
                let r = report?;
                let rules = r
                    .quarantine_by_rule
                    .iter()
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                format!(
                    "rows failing validation are quarantined, never dropped ({}); raw codes no crosswalk maps: {}",
                    if rules.is_empty() { "none".to_string() } else { rules },
                    r.unmapped_codes.len() as u64 + r.unmapped_omitted
                )
            }
            "TIMELINESS" => {
                let end = t.periods.list.last()?.end;
                let cutoff = plan.reference_date;
                match (cutoff - end).num_days() {
                    0 => format!("data cut-off {cutoff}, the last day of the latest period"),
                    d if d > 0 => format!(
                        "data cut-off {cutoff}, {d} days after the end of the latest period ({end})"
                    ),
                    d => format!(
                        "data cut-off {cutoff}, {} days before the end of the latest period ({end}): it is partly observed",
                        -d
                    ),
                }
            }
            "COMPAR_GEO" => "codes of the SDMX and UN code lists (SDMX CL_SEX, ISO 3166-1, UN M49, UN DESA age bands), comparable across countries that use them".to_string(),
            "REV_POLICY" => format!(
                "a published period is frozen: later runs republish it unchanged unless a revision is asked for (`--revise`), which publishes a new vintage{}",
                if plan.provisional_months > 0 {
                    format!(
                        "; a period is provisional (OBS_STATUS P) until {} months after its end",
                        plan.provisional_months
                    )
                } else {
                    String::new()
                }
            ),
            "REV_PRACTICE" => "each period's vintages are kept in the restricted ledger; a revision reports the cells whose published value changed".to_string(),
            "SOURCE_TYPE" => format!(
                "{} ({})",
                source
                    .and_then(|s| s.description.clone())
                    .unwrap_or_else(|| t.source.clone()),
                if doc.survey {
                    "sample survey"
                } else {
                    "administrative register"
                }
            ),
            "FREQ_COLL" => "each delivery as it arrives; a run reads the deliveries present".to_string(),
            "DATA_VALIDATION" => format!(
                "every row checked against the source's Table Schema (types, patterns, bounds, required fields, primary key){} and its crosswalks; failures quarantined with their rule",
                match source.map(|s| s.checks.len()) {
                    Some(n) if n > 0 => format!(", {n} plausibility rules between fields"),
                    _ => String::new(),
                }
            ),
            "DATA_COMP" => format!(
                "{}; every margin (`_T`) is the sum of its cells before protection",
                match &t.kind {
                    crate::spec::TableKind::Count => "records counted in the finest cells",
                    crate::spec::TableKind::Stock { .. } =>
                        "each person valid on the stock date counted once",
                    crate::spec::TableKind::Flow { .. } =>
                        "each person's first record counted in the period of its start",
                    crate::spec::TableKind::Migration { .. } =>
                        "migrations found in each person's border crossings under the usual-residence rule",
                    _ => "weighted estimates from the survey's design",
                }
            ),
            _ => return None,
        })
    };
    CONCEPTS
        .iter()
        .map(|&(sims, id, name)| {
            let (text, from) = match from_spec(id) {
                Some(s) => (s, "spec"),
                None => match derived(id) {
                    Some(s) => (s, "derived"),
                    None => (NOT_AVAILABLE.to_string(), "none"),
                },
            };
            Item {
                sims,
                id,
                name,
                text,
                from,
            }
        })
        .collect()
}

/// Every public table's report, in the release's order.
pub fn reports<'a>(
    plan: &'a Plan,
    manifest: &Manifest,
    docs: &'a [TableDoc],
) -> Vec<(&'a TableDoc, Vec<Item>)> {
    docs.iter()
        .filter_map(|d| {
            let t = plan.tables.iter().find(|t| t.id == d.id)?;
            Some((d, report(plan, manifest, d, t)))
        })
        .collect()
}

/// `public/metadata/sims.json`.
pub fn json(plan: &Plan, reports: &[(&TableDoc, Vec<Item>)]) -> serde_json::Value {
    serde_json::json!({
        "standard": "ESS Single Integrated Metadata Structure (SIMS) 2.0",
        "pipeline": plan.pipeline_id,
        "tables": reports
            .iter()
            .map(|(d, items)| serde_json::json!({
                "table": d.id,
                "dataflow": format!("{}:{}({})", plan.sdmx.agency, crate::export::sdmx::dataflow_id(&d.id), plan.sdmx.version),
                "concepts": items,
            }))
            .collect::<Vec<_>>(),
    })
}

/// `public/sdmx/metadata.xml`: an SDMX-ML 2.1 generic metadata message, one report per
/// dataflow, each SIMS concept a reported attribute with its English text.
pub fn sdmx(plan: &Plan, reports: &[(&TableDoc, Vec<Item>)]) -> String {
    let agency = esc(&plan.sdmx.agency);
    let version = esc(&plan.sdmx.version);
    let mut x = String::new();
    x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.push_str(
        "<mes:GenericMetadata xmlns:mes=\"http://www.sdmx.org/resources/sdmxml/schemas/v2_1/message\" \
         xmlns:gen=\"http://www.sdmx.org/resources/sdmxml/schemas/v2_1/metadata/generic\" \
         xmlns:com=\"http://www.sdmx.org/resources/sdmxml/schemas/v2_1/common\">\n",
    );
    let _ = writeln!(
        x,
        "  <mes:Header>\n    <mes:ID>{}_SIMS</mes:ID>\n    <mes:Test>false</mes:Test>\n    \
         <mes:Prepared>{}T00:00:00</mes:Prepared>\n    <mes:Sender id=\"{agency}\"/>\n    \
         <mes:Structure structureID=\"SIMS\">\n      <com:Structure>\n        \
         <Ref agencyID=\"ESTAT\" id=\"SIMS\" version=\"2.0\"/>\n      </com:Structure>\n    \
         </mes:Structure>\n  </mes:Header>",
        esc(&plan.pipeline_id.to_uppercase()),
        plan.reference_date
    );
    x.push_str("  <mes:MetadataSet structureRef=\"SIMS\">\n");
    for (d, items) in reports {
        let flow = crate::export::sdmx::dataflow_id(&d.id);
        let _ = writeln!(
            x,
            "    <gen:Report id=\"SIMS_{}\">\n      <gen:Target id=\"DATAFLOW_TARGET\">\n        \
             <gen:ReferenceValue id=\"DATAFLOW\">\n          <gen:ObjectReference>\n            \
             <URN>urn:sdmx:org.sdmx.infomodel.datastructure.Dataflow={agency}:{}({version})</URN>\n          \
             </gen:ObjectReference>\n        </gen:ReferenceValue>\n      </gen:Target>\n      \
             <gen:AttributeSet>",
            esc(&flow),
            esc(&flow)
        );
        for i in items {
            let _ = writeln!(
                x,
                "        <gen:ReportedAttribute id=\"{}\">\n          <com:Text xml:lang=\"en\">{}</com:Text>\n        </gen:ReportedAttribute>",
                i.id,
                esc(&i.text)
            );
        }
        x.push_str("      </gen:AttributeSet>\n    </gen:Report>\n");
    }
    x.push_str("  </mes:MetadataSet>\n</mes:GenericMetadata>\n");
    x
}

/// The codebook's last section: each table's SIMS report as a Markdown table (the texts in
/// English).
pub fn markdown(reports: &[(&TableDoc, Vec<Item>)], lang: crate::vocab::Lang) -> String {
    use crate::vocab::Lang;
    let (heading, header) = match lang {
        Lang::En => ("Reference metadata (SIMS 2.0)", "| SIMS | concept | text |"),
        Lang::Fr => (
            "Métadonnées de référence (SIMS 2.0)",
            "| SIMS | concept | texte (en anglais) |",
        ),
        Lang::Ar => (
            "البيانات الوصفية المرجعية (SIMS 2.0)",
            "| SIMS | المفهوم | النص (بالإنجليزية) |",
        ),
    };
    let mut s = format!("\n## {heading}\n");
    for (d, items) in reports {
        let _ = writeln!(s, "\n### {}\n\n{header}\n| --- | --- | --- |", d.id);
        for i in items {
            let _ = writeln!(
                s,
                "| {} | {} (`{}`) | {} |",
                i.sims,
                concept_name(i, lang),
                i.id,
                i.text.replace('|', "\\|").replace('\n', " ")
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sims_concept_is_named_in_french_and_arabic() {
        for (_, id, en) in CONCEPTS {
            let (_, fr, ar) = NAMES_FR_AR
                .iter()
                .find(|(i, _, _)| *i == id)
                .unwrap_or_else(|| panic!("{id}: no French or Arabic name"));
            assert!(!fr.is_empty() && *fr != en, "{id}: French name {fr:?}");
            assert!(
                ar.chars().any(|c| ('\u{0600}'..='\u{06FF}').contains(&c)),
                "{id}: Arabic name {ar:?} is not in Arabic script"
            );
        }
        assert_eq!(NAMES_FR_AR.len(), CONCEPTS.len());
    }
}
