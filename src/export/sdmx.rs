//! SDMX export: each public table as SDMX-CSV, and the structures that describe them.
//!
//! Input: the release's [`TableDoc`]s and the spec's `[publish.sdmx]` settings. Output, under
//! `public/sdmx/`: `<table>.csv` in SDMX-CSV 1.0 (`DATAFLOW` = `AGENCY:ID(VERSION)`, then
//! `FREQ` (`A`, `Q`, `M`; `_O` for another span), `REF_AREA` when the spec sets it, every
//! dimension with its code — `_T` for totals —, `TIME_PERIOD` (each row's period: `2024`,
//! `2024-Q1`, `2024-01`, a stock's date `2024-12-31`, `start/P…` for another span), `OBS_VALUE`, and the attributes `OBS_STATUS`, `CONF_STATUS`, `UNIT_MEASURE`,
//! plus `STD_ERR`, `LOWER_BOUND`, `UPPER_BOUND` and `CV` for survey estimates); with `csv =
//! ["2.0"]`, `2.0/<table>.csv` in SDMX-CSV 2.0 (`STRUCTURE`, `STRUCTURE_ID`, `ACTION`, then
//! the same columns); and `structure.xml`, an SDMX-ML 2.1 structure message with a dataflow and
//! a data structure definition per table, the concept scheme and the code lists (with English,
//! French and Arabic names), so that SDMX tools can read and check the CSV files. `OBS_STATUS`,
//! `CONF_STATUS` and `FREQ` reference the SDMX agency's global code lists, included in full as
//! published (English names); `FREQ` `_O` (a span), which `SDMX:CL_FREQ(2.0)` lacks, is ours.
//! `SEX` references `SDMX:CL_SEX(2.1)` by URL when its codes are all among that list's.
//!
//! The dataflow id of a table is its id in upper case (`asylum` → `ASYLUM`). Time is never a
//! coded dimension: each period of a series is its own partition and `TIME_PERIOD`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use polars::prelude::*;

use crate::error::{PolarsContext, Result};
use crate::export::codebook::{DimDoc, Labels, TableDoc};
use crate::export::{OutputFile, escape_markup as esc, i18n};
use crate::spec::Plan;

/// The attributes of survey estimates: (SDMX id, public column, name).
const SURVEY_ATTRIBUTES: [(&str, &str, i18n::Msg); 4] = [
    ("STD_ERR", "se", i18n::STD_ERR),
    ("LOWER_BOUND", "ci_low", i18n::LOWER_BOUND),
    ("UPPER_BOUND", "ci_high", i18n::UPPER_BOUND),
    ("CV", "cv", i18n::CV),
];

/// A cross-domain code list the SDMX agency maintains in its Global Registry, copied in full as
/// published (codes and English names) so that a reader resolves every code without the
/// registry. A DSD references the global list instead of re-issuing it under our agency.
struct GlobalList {
    id: &'static str,
    version: &'static str,
    name: &'static str,
    codes: &'static [(&'static str, &'static str)],
}

/// `SDMX:CL_FREQ(2.0)`.
const SDMX_FREQ: GlobalList = GlobalList {
    id: "CL_FREQ",
    version: "2.0",
    name: "Frequency",
    codes: &[
        ("A", "Annual"),
        ("S", "Half-yearly, semester"),
        ("Q", "Quarterly"),
        ("M", "Monthly"),
        ("W", "Weekly"),
        ("D", "Daily"),
        ("H", "Hourly"),
        ("B", "Daily – businessweek"),
        ("N", "Minutely"),
    ],
};

/// `SDMX:CL_OBS_STATUS(2.0)`.
const SDMX_OBS_STATUS: GlobalList = GlobalList {
    id: "CL_OBS_STATUS",
    version: "2.0",
    name: "Observation Status",
    codes: &[
        ("A", "Normal value"),
        ("B", "Time series break"),
        ("D", "Definition differs"),
        ("E", "Estimated value"),
        ("F", "Forecast value"),
        ("G", "Experimental value"),
        ("I", "Imputed value (CCSA definition)"),
        ("O", "Missing value"),
        ("M", "Missing value; data cannot exist"),
        ("P", "Provisional value"),
        ("S", "Strike and other special events"),
        ("L", "Missing value; data exist but were not collected"),
        ("H", "Missing value; holiday or weekend"),
        ("Q", "Missing value; suppressed"),
        ("J", "Derogation"),
        ("N", "Not significant"),
        ("U", "Low reliability"),
        ("V", "Unvalidated value"),
    ],
};

/// `SDMX:CL_CONF_STATUS(1.0)`.
const SDMX_CONF_STATUS: GlobalList = GlobalList {
    id: "CL_CONF_STATUS",
    version: "1.0",
    name: "Confidentiality Status",
    codes: &[
        ("F", "Free"),
        ("N", "Not for publication, restricted for internal use only"),
        ("C", "Confidential statistical information"),
        (
            "D",
            "Secondary confidentiality set by the sender, not for publication",
        ),
        (
            "S",
            "Secondary confidentiality set and managed by the receiver, not for publication",
        ),
    ],
};

/// `SDMX:CL_SEX(2.1)`, referenced by URL (`isExternalReference`): its codes are known
/// (`F M _N _O _T _U _Z`), the exact names of the reserved ones were not at hand to copy, so the
/// message carries the reference, not a copy. A sex dimension whose codes are all among these
/// enumerates it; one with another code (a national `X`, say) keeps migstat's own `CL_SEX`.
const SDMX_SEX: (&str, &str, &str, [&str; 7]) = (
    "CL_SEX",
    "2.1",
    "https://registry.sdmx.org/ws/public/sdmxapi/rest/codelist/SDMX/CL_SEX/2.1",
    ["F", "M", "_N", "_O", "_T", "_U", "_Z"],
);

/// The agency of the SDMX global code lists.
const SDMX_AGENCY: &str = "SDMX";

impl GlobalList {
    fn has(&self, code: &str) -> bool {
        self.codes.iter().any(|(c, _)| *c == code)
    }
}

/// Dataflow id of a table.
pub fn dataflow_id(table: &str) -> String {
    table.to_uppercase()
}

/// `UNIT_MEASURE` code and label of a table.
fn unit_measure(d: &TableDoc) -> (&'static str, &'static str) {
    d.unit_measure.sdmx()
}

/// Write the SDMX files of `docs` into `dir` (a release being built); `previous` is the
/// current release's structure message, whose code-list versions carry on (see [`versions`]).
pub fn write(
    plan: &Plan,
    dir: &Path,
    docs: &[TableDoc],
    previous: Option<&str>,
) -> Result<Vec<OutputFile>> {
    // Each table's files side by side, listed in table order.
    let jobs: Vec<(&TableDoc, &String)> = docs
        .iter()
        .flat_map(|d| plan.sdmx.csv.iter().map(move |v| (d, v)))
        .collect();
    let mut outputs = crate::parallel::map(jobs, |(d, version)| {
        let path = crate::layout::Release(dir).sdmx_csv(&d.id, version);
        let mut file = crate::export::HashedFile::create(&path)?;
        let rows = csv(plan, d, version == "2.0", &mut file)?;
        file.finish(dir, rows)
    })
    .into_iter()
    .collect::<Result<Vec<_>>>()?;
    let xml = structure(plan, docs, previous);
    outputs.push(write_file(
        dir,
        &crate::layout::Release(dir).sdmx_structure(),
        xml.as_bytes(),
        0,
    )?);
    Ok(outputs)
}

pub(crate) fn write_file(dir: &Path, path: &Path, bytes: &[u8], rows: u64) -> Result<OutputFile> {
    use std::io::Write as _;
    let mut file = crate::export::HashedFile::create(path)?;
    file.write_all(bytes)
        .map_err(|e| crate::Error::io(path, e))?;
    file.finish(dir, rows)
}

/// A number as SDMX-CSV writes it: integers without a fraction, others in the shortest form
/// that reads back to the same double.
fn number(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// The coded dimensions of a table's data structure (after `FREQ` and `REF_AREA`).
pub fn sdmx_dimensions(d: &TableDoc) -> impl Iterator<Item = &DimDoc> {
    d.dimensions.iter()
}

/// Write a table's SDMX-CSV to `out`; its number of observations.
fn csv(plan: &Plan, d: &TableDoc, v2: bool, out: &mut crate::export::HashedFile) -> Result<u64> {
    let path = out.path().to_path_buf();
    let ctx = |what: &str| format!("SDMX-CSV of table {}: {what}", d.id);
    let f = &d.frame;
    let h = f.height();
    let dims: Vec<&StringChunked> = sdmx_dimensions(d)
        .map(|x| f.column(&x.id).and_then(|c| c.str()).ctx(|| ctx(&x.id)))
        .collect::<Result<_>>()?;
    let time: &StringChunked = f
        .column("ref_period")
        .and_then(|c| c.str())
        .ctx(|| ctx("ref_period"))?;
    let measure = f
        .column(&d.measure)
        .and_then(|c| c.cast(&DataType::Float64))
        .ctx(|| ctx(&d.measure))?;
    let measure = measure.f64().ctx(|| ctx(&d.measure))?.clone();
    let text = |name: &str| -> Result<StringChunked> {
        f.column(name)
            .and_then(|c| c.str().cloned())
            .ctx(|| ctx(name))
    };
    let (obs_status, conf_status) = (text("OBS_STATUS")?, text("CONF_STATUS")?);
    let extra: Vec<Float64Chunked> = if d.survey {
        SURVEY_ATTRIBUTES
            .iter()
            .map(|(_, col, _)| {
                Ok(f.column(col)
                    .and_then(|c| c.cast(&DataType::Float64))
                    .ctx(|| ctx(col))?
                    .f64()
                    .ctx(|| ctx(col))?
                    .clone())
            })
            .collect::<Result<_>>()?
    } else {
        Vec::new()
    };
    let flow = format!(
        "{}:{}({})",
        plan.sdmx.agency,
        dataflow_id(&d.id),
        plan.sdmx.version
    );
    let unit = unit_measure(d).0;
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .buffer_capacity(64 << 10)
        .from_writer(out);
    let mut header: Vec<String> = if v2 {
        vec!["STRUCTURE".into(), "STRUCTURE_ID".into(), "ACTION".into()]
    } else {
        vec!["DATAFLOW".into()]
    };
    header.push("FREQ".into());
    if plan.sdmx.ref_area.is_some() {
        header.push("REF_AREA".into());
    }
    header.extend(sdmx_dimensions(d).map(|x| x.id.clone()));
    header.extend(
        [
            "TIME_PERIOD",
            "OBS_VALUE",
            "OBS_STATUS",
            "CONF_STATUS",
            "UNIT_MEASURE",
        ]
        .map(String::from),
    );
    if d.survey {
        header.extend(SURVEY_ATTRIBUTES.iter().map(|(id, _, _)| id.to_string()));
    }
    // Writing can fail only in the file (a full disk): said with its path.
    let fail = |e: csv::Error| match e.into_kind() {
        csv::ErrorKind::Io(e) => crate::Error::io(&path, e),
        k => crate::Error::Internal(ctx(&format!("{k:?}"))),
    };
    w.write_record(&header).map_err(fail)?;
    let mut written = 0u64;
    // A table's rows share a few periods: each converted once.
    let mut last_period: Option<(&str, String)> = None;
    let field = |w: &mut csv::Writer<_>, x: &str| w.write_field(x).map_err(fail);
    for i in 0..h {
        let raw = time.get(i).unwrap_or_default();
        if last_period.as_ref().is_none_or(|(r, _)| *r != raw) {
            last_period = Some((raw, crate::export::codebook::time_period(raw)));
        }
        let period = last_period.as_ref().map_or("", |(_, p)| p.as_str());
        written += 1;
        if v2 {
            field(&mut w, "dataflow")?;
            field(&mut w, &flow)?;
            field(&mut w, "I")?;
        } else {
            field(&mut w, &flow)?;
        }
        field(&mut w, &d.freq)?;
        if let Some(a) = &plan.sdmx.ref_area {
            field(&mut w, a)?;
        }
        for c in &dims {
            field(&mut w, c.get(i).unwrap_or_default())?;
        }
        field(&mut w, period)?;
        field(&mut w, &measure.get(i).map(number).unwrap_or_default())?;
        field(&mut w, obs_status.get(i).unwrap_or_default())?;
        field(&mut w, conf_status.get(i).unwrap_or_default())?;
        field(&mut w, unit)?;
        for c in &extra {
            field(&mut w, &c.get(i).map(number).unwrap_or_default())?;
        }
        w.write_record(None::<&[u8]>).map_err(fail)?;
    }
    w.flush().map_err(|e| crate::Error::io(&path, e))?;
    Ok(written)
}

fn names(out: &mut String, indent: &str, l: &Labels) {
    let _ = writeln!(
        out,
        "{indent}<com:Name xml:lang=\"en\">{}</com:Name>",
        esc(&l.en)
    );
    if let Some(fr) = &l.fr {
        let _ = writeln!(
            out,
            "{indent}<com:Name xml:lang=\"fr\">{}</com:Name>",
            esc(fr)
        );
    }
    if let Some(ar) = &l.ar {
        let _ = writeln!(
            out,
            "{indent}<com:Name xml:lang=\"ar\">{}</com:Name>",
            esc(ar)
        );
    }
}

/// The code lists of a structure message we wrote that `agency` maintains: id → (version,
/// content). The SDMX agency's global lists in the same message are not ours to version.
fn codelists_of(xml: &str, agency: &str) -> BTreeMap<String, (String, String)> {
    let mut out = BTreeMap::new();
    let mut rest = xml;
    const OPEN: &str = "<str:Codelist id=\"";
    let attr = |tag: &str, name: &str| -> String {
        let key = format!(" {name}=\"");
        tag.find(&key)
            .map(|v| &tag[v + key.len()..])
            .and_then(|v| v.find('"').map(|e| v[..e].to_string()))
            .unwrap_or_default()
    };
    while let Some(i) = rest.find(OPEN) {
        let after = &rest[i + OPEN.len()..];
        let Some(id_end) = after.find('"') else { break };
        let id = after[..id_end].to_string();
        let body_start = after.find('>').map_or(after.len(), |e| e + 1);
        let tag = &after[..body_start];
        let body_end = after.find("</str:Codelist>").unwrap_or(after.len());
        if attr(tag, "agencyID") == agency {
            out.insert(
                id,
                (
                    attr(tag, "version"),
                    after[body_start..body_end.max(body_start)].to_string(),
                ),
            );
        }
        rest = &after[body_end.max(body_start)..];
    }
    out
}

/// The version of each code list: the previous release's while its content (codes and names)
/// is the same, the next minor version (`1.0` → `1.1`) when it changed, the spec's
/// `[publish.sdmx] version` for a new list or a new major version. A code list's content and
/// version thus go together across releases, as SDMX requires of a final artefact.
fn versions(
    agency: &str,
    base: &str,
    bodies: &BTreeMap<String, String>,
    previous: Option<&str>,
) -> BTreeMap<String, String> {
    let before = previous
        .map(|p| codelists_of(p, agency))
        .unwrap_or_default();
    let major = |v: &str| v.split('.').next().unwrap_or_default().to_string();
    bodies
        .iter()
        .map(|(id, body)| {
            let v = match before.get(id) {
                Some((v, b)) if major(v) == major(base) => {
                    if b == body {
                        v.clone()
                    } else {
                        next_minor(v)
                    }
                }
                _ => base.to_string(),
            };
            (id.clone(), v)
        })
        .collect()
}

/// `1.0` → `1.1`, `2.3.9` → `2.3.10` (the last component, or `.1` added).
fn next_minor(v: &str) -> String {
    match v.rsplit_once('.') {
        Some((head, last)) => match last.parse::<u64>() {
            Ok(n) => format!("{head}.{}", n + 1),
            Err(_) => format!("{v}.1"),
        },
        None => format!("{v}.1"),
    }
}

/// The SDMX-ML 2.1 structure message: code lists, concepts, one DSD and one dataflow per table.
pub fn structure(plan: &Plan, docs: &[TableDoc], previous: Option<&str>) -> String {
    let agency = esc(&plan.sdmx.agency);
    let version = esc(&plan.sdmx.version);
    // Code lists: the union of the codes every table uses, with their labels.
    let mut lists: BTreeMap<String, (Labels, BTreeMap<String, Labels>)> = BTreeMap::new();
    let mut concepts: BTreeMap<String, Labels> = BTreeMap::new();
    for d in docs {
        for dim in sdmx_dimensions(d) {
            let e = lists
                .entry(dim.codelist.clone())
                .or_insert_with(|| (dim.name.clone(), BTreeMap::new()));
            for (c, l) in &dim.codes {
                e.1.entry(c.clone()).or_insert_with(|| l.clone());
            }
            concepts
                .entry(dim.id.clone())
                .or_insert_with(|| dim.name.clone());
        }
    }
    let fixed = |codes: &[(&str, i18n::Msg)]| -> BTreeMap<String, Labels> {
        codes
            .iter()
            .map(|(c, m)| (c.to_string(), m.text()))
            .collect()
    };
    // Observation and confidentiality statuses are always the SDMX agency's lists (every code
    // migstat writes is in them: a unit test); so is a table's frequency unless the table is a
    // span that is not a year, quarter or month (`_O`, not in `SDMX:CL_FREQ(2.0)`): that
    // table's DSD enumerates migstat's own `CL_FREQ`, which holds only such codes.
    let mut global: Vec<&GlobalList> = vec![&SDMX_CONF_STATUS, &SDMX_OBS_STATUS];
    if docs.iter().any(|d| SDMX_FREQ.has(&d.freq)) {
        global.insert(0, &SDMX_FREQ);
    }
    let sex_global = lists
        .get(SDMX_SEX.0)
        .is_some_and(|(_, codes)| codes.keys().all(|c| SDMX_SEX.3.contains(&c.as_str())));
    if sex_global {
        lists.remove(SDMX_SEX.0);
    }
    let mut units: BTreeMap<String, Labels> = BTreeMap::new();
    for d in docs {
        let (c, l) = unit_measure(d);
        units.insert(c.to_string(), i18n::unit_measure(l));
    }
    lists.insert("CL_UNIT_MEASURE".into(), (i18n::UNIT_MEASURE.text(), units));
    if let Some(a) = &plan.sdmx.ref_area {
        // The country's names, found by its alpha-2 code.
        let label = plan
            .codelists
            .get("countries")
            .and_then(|cl| {
                let iso2 = cl.columns.iter().position(|c| c == "iso2")?;
                let (code, _) = cl.rows.iter().find(|(_, r)| r.get(iso2) == Some(a))?;
                Some(Labels::new(
                    cl.attribute(code, "label_en")?,
                    cl.attribute(code, "label_fr"),
                    cl.attribute(code, "label_ar"),
                ))
            })
            .unwrap_or_else(|| Labels::new(a, None, None));
        lists.insert(
            "CL_AREA".into(),
            (i18n::REF_AREA.text(), [(a.clone(), label)].into()),
        );
    }
    let own_freq: Vec<(&str, i18n::Msg)> = i18n::FREQ_CODES
        .iter()
        .filter(|(c, _)| !SDMX_FREQ.has(c) && docs.iter().any(|d| d.freq == *c))
        .copied()
        .collect();
    if !own_freq.is_empty() {
        lists.insert("CL_FREQ".into(), (i18n::FREQ.text(), fixed(&own_freq)));
    }
    for (id, name) in [
        ("FREQ", &i18n::FREQ),
        ("REF_AREA", &i18n::REF_AREA),
        ("TIME_PERIOD", &i18n::TIME_PERIOD),
        ("OBS_VALUE", &i18n::OBS_VALUE),
        ("OBS_STATUS", &i18n::OBS_STATUS),
        ("CONF_STATUS", &i18n::CONF_STATUS),
        ("UNIT_MEASURE", &i18n::UNIT_MEASURE),
    ] {
        concepts.insert(id.into(), name.text());
    }
    for (id, _, name) in &SURVEY_ATTRIBUTES {
        concepts.insert(id.to_string(), name.text());
    }

    let mut x = String::new();
    x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.push_str(
        "<mes:Structure xmlns:mes=\"http://www.sdmx.org/resources/sdmxml/schemas/v2_1/message\" \
         xmlns:str=\"http://www.sdmx.org/resources/sdmxml/schemas/v2_1/structure\" \
         xmlns:com=\"http://www.sdmx.org/resources/sdmxml/schemas/v2_1/common\">\n",
    );
    let _ = writeln!(
        x,
        "  <mes:Header>\n    <mes:ID>{}</mes:ID>\n    <mes:Test>false</mes:Test>\n    \
         <mes:Prepared>{}T00:00:00</mes:Prepared>\n    <mes:Sender id=\"{agency}\"/>\n  </mes:Header>",
        esc(&format!("{}_STRUCTURE", plan.pipeline_id.to_uppercase())),
        plan.reference_date
    );
    x.push_str("  <mes:Structures>\n    <str:Dataflows>\n");
    for d in docs {
        let id = dataflow_id(&d.id);
        let _ = writeln!(
            x,
            "      <str:Dataflow id=\"{id}\" agencyID=\"{agency}\" version=\"{version}\">"
        );
        names(&mut x, "        ", &d.title);
        let _ = writeln!(
            x,
            "        <str:Structure>\n          <Ref id=\"DSD_{id}\" agencyID=\"{agency}\" \
             version=\"{version}\" class=\"DataStructure\" package=\"datastructure\"/>\n        \
             </str:Structure>\n      </str:Dataflow>"
        );
    }
    x.push_str("    </str:Dataflows>\n    <str:Codelists>\n");
    for g in &global {
        let _ = writeln!(
            x,
            "      <str:Codelist id=\"{}\" agencyID=\"{SDMX_AGENCY}\" version=\"{}\" isFinal=\"true\">\n        \
             <com:Name xml:lang=\"en\">{}</com:Name>",
            g.id,
            g.version,
            esc(g.name)
        );
        for (c, n) in g.codes {
            let _ = writeln!(
                x,
                "        <str:Code id=\"{c}\">\n          <com:Name xml:lang=\"en\">{}</com:Name>\n        </str:Code>",
                esc(n)
            );
        }
        x.push_str("      </str:Codelist>\n");
    }
    if sex_global {
        let (id, v, url, _) = SDMX_SEX;
        let _ = writeln!(
            x,
            "      <str:Codelist id=\"{id}\" agencyID=\"{SDMX_AGENCY}\" version=\"{v}\" \
             isExternalReference=\"true\" structureURL=\"{url}\" isFinal=\"true\">\n        \
             <com:Name xml:lang=\"en\">Sex</com:Name>\n      </str:Codelist>"
        );
    }
    let bodies: BTreeMap<String, String> = lists
        .iter()
        .map(|(id, (name, codes))| {
            let mut b = String::from("\n");
            names(&mut b, "        ", name);
            for (c, l) in codes {
                let _ = writeln!(b, "        <str:Code id=\"{}\">", esc(c));
                names(&mut b, "          ", l);
                b.push_str("        </str:Code>\n");
            }
            b.push_str("      ");
            (id.clone(), b)
        })
        .collect();
    let list_versions = versions(&agency, &plan.sdmx.version, &bodies, previous);
    for (id, body) in &bodies {
        let _ = writeln!(
            x,
            "      <str:Codelist id=\"{}\" agencyID=\"{agency}\" version=\"{}\">{body}</str:Codelist>",
            esc(id),
            esc(&list_versions[id])
        );
    }
    x.push_str("    </str:Codelists>\n    <str:Concepts>\n");
    let _ = writeln!(
        x,
        "      <str:ConceptScheme id=\"CS_MIGSTAT\" agencyID=\"{agency}\" version=\"{version}\">"
    );
    names(&mut x, "        ", &i18n::CONCEPT_SCHEME.text());
    for (id, name) in &concepts {
        let _ = writeln!(x, "        <str:Concept id=\"{}\">", esc(id));
        names(&mut x, "          ", name);
        x.push_str("        </str:Concept>\n");
    }
    x.push_str("      </str:ConceptScheme>\n    </str:Concepts>\n    <str:DataStructures>\n");
    let concept = |id: &str| {
        format!(
            "<str:ConceptIdentity><Ref id=\"{}\" maintainableParentID=\"CS_MIGSTAT\" \
             maintainableParentVersion=\"{version}\" agencyID=\"{agency}\" class=\"Concept\" \
             package=\"conceptscheme\"/></str:ConceptIdentity>",
            esc(id)
        )
    };
    // A list of ours, or the SDMX agency's global list of that id (`global`).
    // A list of ours, or the SDMX agency's global list of that id in the given version.
    let enumerate = |cl: &str, sdmx_version: Option<&str>| {
        let (owner, v) = match sdmx_version {
            Some(v) => (SDMX_AGENCY.to_string(), v.to_string()),
            None => (
                agency.clone(),
                esc(list_versions.get(cl).unwrap_or(&plan.sdmx.version)),
            ),
        };
        format!(
            "<str:LocalRepresentation><str:Enumeration><Ref id=\"{}\" agencyID=\"{owner}\" \
             version=\"{v}\" class=\"Codelist\" package=\"codelist\"/></str:Enumeration>\
             </str:LocalRepresentation>",
            esc(cl),
        )
    };
    let enumeration = |cl: &str| {
        let sdmx_version = match global.iter().find(|g| g.id == cl) {
            Some(g) => Some(g.version),
            None => (sex_global && cl == SDMX_SEX.0).then_some(SDMX_SEX.1),
        };
        enumerate(cl, sdmx_version)
    };
    for d in docs {
        let id = dataflow_id(&d.id);
        let _ = writeln!(
            x,
            "      <str:DataStructure id=\"DSD_{id}\" agencyID=\"{agency}\" version=\"{version}\">"
        );
        names(&mut x, "        ", &d.title);
        x.push_str("        <str:DataStructureComponents>\n          <str:DimensionList id=\"DimensionDescriptor\">\n");
        let _ = writeln!(
            x,
            "            <str:Dimension id=\"FREQ\" position=\"1\">{}{}</str:Dimension>",
            concept("FREQ"),
            enumerate(
                "CL_FREQ",
                SDMX_FREQ.has(&d.freq).then_some(SDMX_FREQ.version)
            )
        );
        let mut pos = 2;
        if plan.sdmx.ref_area.is_some() {
            let _ = writeln!(
                x,
                "            <str:Dimension id=\"REF_AREA\" position=\"{pos}\">{}{}</str:Dimension>",
                concept("REF_AREA"),
                enumeration("CL_AREA")
            );
            pos += 1;
        }
        for dim in sdmx_dimensions(d) {
            let _ = writeln!(
                x,
                "            <str:Dimension id=\"{}\" position=\"{pos}\">{}{}</str:Dimension>",
                esc(&dim.id),
                concept(&dim.id),
                enumeration(&dim.codelist)
            );
            pos += 1;
        }
        let _ = writeln!(
            x,
            "            <str:TimeDimension id=\"TIME_PERIOD\" position=\"{pos}\">{}\
             <str:LocalRepresentation><str:TextFormat textType=\"ObservationalTimePeriod\"/>\
             </str:LocalRepresentation></str:TimeDimension>",
            concept("TIME_PERIOD")
        );
        x.push_str("          </str:DimensionList>\n          <str:AttributeList id=\"AttributeDescriptor\">\n");
        let mut attrs: Vec<(&str, Option<&str>, &str)> = vec![
            ("OBS_STATUS", Some("CL_OBS_STATUS"), "Mandatory"),
            ("CONF_STATUS", Some("CL_CONF_STATUS"), "Mandatory"),
            ("UNIT_MEASURE", Some("CL_UNIT_MEASURE"), "Mandatory"),
        ];
        if d.survey {
            attrs.extend(
                SURVEY_ATTRIBUTES
                    .iter()
                    .map(|(a, _, _)| (*a, None, "Conditional")),
            );
        }
        for (a, cl, status) in attrs {
            let repr = match cl {
                Some(cl) => enumeration(cl),
                None => "<str:LocalRepresentation><str:TextFormat textType=\"Double\"/></str:LocalRepresentation>".to_string(),
            };
            let _ = writeln!(
                x,
                "            <str:Attribute id=\"{a}\" assignmentStatus=\"{status}\">{}{repr}\
                 <str:AttributeRelationship><str:PrimaryMeasure><Ref id=\"OBS_VALUE\"/>\
                 </str:PrimaryMeasure></str:AttributeRelationship></str:Attribute>",
                concept(a)
            );
        }
        let _ = writeln!(
            x,
            "          </str:AttributeList>\n          <str:MeasureList id=\"MeasureDescriptor\">\n            \
             <str:PrimaryMeasure id=\"OBS_VALUE\">{}</str:PrimaryMeasure>\n          </str:MeasureList>\n        \
             </str:DataStructureComponents>\n      </str:DataStructure>",
            concept("OBS_VALUE")
        );
    }
    x.push_str("    </str:DataStructures>\n  </mes:Structures>\n</mes:Structure>\n");
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_list_keeps_its_version_until_its_content_changes() {
        assert_eq!(next_minor("1.0"), "1.1");
        assert_eq!(next_minor("2.3.9"), "2.3.10");
        assert_eq!(next_minor("7"), "7.1");
        let previous = "<str:Codelists>\n      <str:Codelist id=\"CL_A\" agencyID=\"X\" version=\"1.3\">A</str:Codelist>\n      \
                        <str:Codelist id=\"CL_B\" agencyID=\"X\" version=\"1.0\">B</str:Codelist>\n      \
                        <str:Codelist id=\"CL_C\" agencyID=\"X\" version=\"1.2\">C</str:Codelist>";
        let bodies: BTreeMap<String, String> = [("CL_A", "A"), ("CL_B", "B2"), ("CL_D", "D")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let v = versions("X", "1.0", &bodies, Some(previous));
        assert_eq!(v["CL_A"], "1.3", "same content, same version");
        assert_eq!(v["CL_B"], "1.1", "changed content, next version");
        assert_eq!(v["CL_D"], "1.0", "a new list starts at the spec's version");
        // A new major version in the spec starts every list afresh; no previous release too.
        assert_eq!(versions("X", "2.0", &bodies, Some(previous))["CL_A"], "2.0");
        assert_eq!(versions("X", "1.0", &bodies, None)["CL_A"], "1.0");
        // Another agency's list of the same id (the SDMX global one) is not ours to version.
        let global = "<str:Codelist id=\"CL_D\" agencyID=\"SDMX\" version=\"2.0\" isFinal=\"true\">D2</str:Codelist>";
        assert_eq!(versions("X", "1.0", &bodies, Some(global))["CL_D"], "1.0");
    }

    #[test]
    fn every_status_migstat_writes_is_a_code_of_the_sdmx_global_list_with_its_name() {
        // The names the SDMX Global Registry gives (SDMX:CL_OBS_STATUS(2.0),
        // SDMX:CL_CONF_STATUS(1.0), SDMX:CL_FREQ(2.0)), typed here from the registry's lists.
        let expected = [
            ("A", "Normal value"),
            ("P", "Provisional value"),
            ("Q", "Missing value; suppressed"),
            ("U", "Low reliability"),
        ];
        for ((c, m), (ec, en)) in i18n::OBS_STATUS_CODES.iter().zip(expected) {
            assert_eq!((*c, m.0), (ec, en));
            assert!(SDMX_OBS_STATUS.codes.contains(&(ec, en)), "{ec}");
        }
        for (c, m) in &i18n::CONF_STATUS_CODES {
            assert!(SDMX_CONF_STATUS.codes.contains(&(*c, m.0)), "{c}");
        }
        for (c, m) in i18n::FREQ_CODES.iter().filter(|(c, _)| *c != "_O") {
            assert!(SDMX_FREQ.codes.contains(&(*c, m.0)), "{c}");
        }
        assert!(
            !SDMX_FREQ.has("_O"),
            "a span's FREQ needs migstat's own CL_FREQ"
        );
        assert_eq!(
            (
                SDMX_FREQ.codes.len(),
                SDMX_OBS_STATUS.codes.len(),
                SDMX_CONF_STATUS.codes.len()
            ),
            (9, 18, 5)
        );
    }
}
