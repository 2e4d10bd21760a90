//! The pipeline spec: turns `pipelines/*.toml` and the Table Schemas it names into a checked
//! [`Plan`] the runner executes. Input: a spec file path. Output: a [`Plan`], or every problem in
//! the spec and its schemas at once ([`Error::Spec`], exit 78), before any data is read.
//!
//! Paths in a spec are relative to the spec file. Unknown keys are errors, not ignored.

pub mod banding;
pub mod calibration;
pub mod codelist;
pub mod derivation;
pub mod design;
pub mod groups;
pub mod period;
pub mod protection;
pub mod ptable;
pub mod table;
pub mod schema;
pub(crate) mod section;
pub mod source;

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use chrono::NaiveDate;
use serde::Serialize;
use toml::{Table, Value};

pub use banding::Banding;
pub use calibration::{CalMethod, Calibration, Margin, Nonresponse};
pub use codelist::{CodeList, Normalize};
pub use derivation::{Derivation, Derived, Unmapped};
pub use design::{Design, LonelyPsu, ReplicateFile, ReplicateKind, Replicates};
pub use groups::GroupSpec;
pub use protection::{DEFAULT_PROTECTION_RANGE, KeySource, Secondary};
pub use protection::{Protect, ProtectMethod, Revisions};
pub use ptable::PTable;
pub use schema::TableSchema;
pub(crate) use section::{Ctx, Section, cap};
pub use table::{
    Coefficient, Measure, MigrationFlow, Probability, PropInterval, QuantileInterval, QuantileRule,
    ResidenceRule, TableKind, TableSpec, Unit,
};

use crate::error::{Error, Result, SpecIssue};
use crate::vocab::Lang;

/// The spec format version this migstat reads.
pub const SPEC_VERSION: i64 = 1;

/// Sections later stages will read; until then naming one is an error, so that nothing a
/// statistician writes is silently ignored.
const RESERVED_SECTIONS: &[&str] = &["protect"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Parquet,
    /// A worksheet of an Excel (or OpenDocument) workbook: `sheet`, `header_row`.
    Excel,
    /// An SPSS system or portable file (`.sav`, `.zsav`, `.por`; feature `readstat`).
    Spss,
    /// A Stata dataset (`.dta`, any version; feature `readstat`).
    Stata,
}

impl Format {
    /// A statistical package's file, read through ReadStat (with value labels).
    pub fn is_stat_package(self) -> bool {
        matches!(self, Format::Spss | Format::Stata)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Encoding {
    #[serde(rename = "utf-8")]
    Utf8,
    #[serde(rename = "windows-1252")]
    Windows1252,
}

/// A closed interval of dates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Period {
    pub start: NaiveDate,
    pub end: NaiveDate,
}

/// A plausibility rule: `field` may not come after (or before) another field or the
/// reference date. Records where either side is missing are not checked.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Check {
    pub field: String,
    pub rule: CheckRule,
    pub against: Against,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CheckRule {
    NotAfter,
    NotBefore,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Against {
    /// The pipeline's `reference_date` (its year, for a year field).
    ReferenceDate,
    /// Another field of the same record.
    Field(String),
}

/// One compiled source: its files (globs expanded, sorted), format and schema.
#[derive(Debug, Clone, Serialize)]
pub struct SourcePlan {
    pub id: String,
    pub description: Option<String>,
    /// `description_fr`, `description_ar`: the description in the other publication languages.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub description_translations: BTreeMap<Lang, String>,
    pub files: Vec<PathBuf>,
    pub format: Format,
    pub schema_path: PathBuf,
    #[serde(skip)]
    pub schema: TableSchema,
    pub encoding: Encoding,
    /// The encoding an SPSS or Stata file's text is read in when the spec overrides what the
    /// file declares (`encoding` on such a source; ReadStat reads the file's own otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub declared_encoding: Option<Encoding>,
    #[serde(serialize_with = "ser_delimiter")]
    pub delimiter: u8,
    /// How the CSV is written beyond its delimiter (`[sources.<id>.dialect]`).
    pub dialect: Dialect,
    /// The worksheet of an Excel source (default: the first) and the row of its header
    /// (1-based; rows above it are not read).
    pub sheet: Option<String>,
    pub header_row: u32,
    pub max_invalid_fraction: f64,
    /// The field holding the stable person identifier, if the source has one.
    pub person_id: Option<String>,
    /// The field holding the record's own identifier (permit number, event id).
    pub record_id: Option<String>,
    /// Standard columns derived from the record (`[sources.<id>.harmonize]`), in order.
    pub harmonize: Vec<Derived>,
    /// Plausibility rules between fields (`[sources.<id>.checks]`), applied with the
    /// derivations; a record that breaks one is quarantined.
    pub checks: Vec<Check>,
    /// The sampling design, for a survey source.
    pub design: Option<Design>,
    /// The source's `period` as written, the default of its tables (read with each table).
    #[serde(skip)]
    pub(crate) period: Option<Value>,
}

/// A CSV file's dialect, after Frictionless's CSV Dialect (`lineTerminator`, `quoteChar`,
/// `doubleQuote`, `escapeChar`, `skipInitialSpace`, `commentChar`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dialect {
    /// Records end at `\r` alone (old Mac exports) instead of `\n` or `\r\n`.
    pub cr_only: bool,
    /// The quote character; `None`: fields are never quoted.
    pub quote: Option<u8>,
    /// A quote inside a quoted field is written twice.
    pub double_quote: bool,
    /// A character that escapes the quote inside a quoted field (e.g. `\\`).
    pub escape: Option<u8>,
    /// Spaces after a delimiter are not part of the value.
    pub skip_initial_space: bool,
    /// Lines starting with this character are not records.
    pub comment: Option<u8>,
}

impl Default for Dialect {
    fn default() -> Self {
        Dialect {
            cr_only: false,
            quote: Some(b'"'),
            double_quote: true,
            escape: None,
            skip_initial_space: false,
            comment: None,
        }
    }
}

fn ser_delimiter<S: serde::Serializer>(d: &u8, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&(*d as char).to_string())
}

/// Keys of the spec's `[metadata]` section (release level) and the SIMS concept each fills.
pub const SIMS_RELEASE_KEYS: [(&str, &str); 11] = [
    ("contact_organisation", "CONTACT_ORGANISATION"),
    ("contact_unit", "CONTACT_ORGANISATION_UNIT"),
    ("contact_email", "CONTACT_MAIL"),
    ("institutional_mandate", "INST_MANDATE"),
    ("confidentiality_policy", "CONF_POLICY"),
    ("release_calendar", "REL_CAL_POLICY"),
    ("release_calendar_access", "REL_CAL_ACCESS"),
    ("user_access", "REL_POL_US_AC"),
    ("quality_management", "QUALITY_MGMNT"),
    ("revision_policy", "REV_POLICY"),
    ("comment", "COMMENT_DSET"),
];

/// Keys of a table's `[tables.<id>.metadata]` and the SIMS concept each fills.
pub const SIMS_TABLE_KEYS: [(&str, &str); 7] = [
    ("concepts", "STAT_CONC_DEF"),
    ("statistical_population", "STAT_POP"),
    ("statistical_unit", "STAT_UNIT"),
    ("relevance", "RELEVANCE"),
    ("coherence", "COHERENCE"),
    ("accuracy", "ACCURACY_OVERALL"),
    ("comment", "COMMENT_DSET"),
];

/// A checked pipeline, ready to run.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub spec_path: PathBuf,
    pub pipeline_id: String,
    pub title: Option<String>,
    /// `title_fr`, `title_ar`: the title in the other publication languages.
    pub title_translations: BTreeMap<Lang, String>,
    /// `[metadata]`: the release's reference metadata that only people can give (contact,
    /// mandate, policies, calendar; keys [`SIMS_RELEASE_KEYS`]).
    pub metadata: BTreeMap<String, String>,
    /// `[publish] languages`: the report and the codebook are written in each, the first one
    /// as `report/index.html` and `public/codebook.md` (default: English only).
    pub languages: Vec<Lang>,
    /// blake3 of the spec file and every schema it uses, in source order.
    pub spec_hash: String,
    pub reference_date: NaiveDate,
    pub reference_period: Period,
    /// Rows per processing chunk: the unit of bounded memory.
    pub chunk_rows: usize,
    /// Published releases kept in `out/releases/` (the current one included); older ones are
    /// removed after each successful publish.
    pub keep_releases: usize,
    /// A period is provisional (OBS_STATUS `P`) until this many months after its end, judged
    /// against `reference_date` (the data's cut-off): late records may still change it.
    pub provisional_months: u32,
    /// How the release is labelled in SDMX: agency, version, SDMX-CSV versions, reference area.
    pub sdmx: Sdmx,
    /// The code-list directory (code lists with their labels, age bands).
    pub codelists_dir: PathBuf,
    pub sources: Vec<SourcePlan>,
    /// Code lists by name (file stem in the `codelists` directory).
    #[serde(skip)]
    pub codelists: BTreeMap<String, CodeList>,
    pub tables: Vec<TableSpec>,
    /// The published tables in groups of linked tables (the same records), each protected as
    /// one problem.
    pub groups: Vec<GroupSpec>,
    /// Where the protection key is found (`[protection]`): never the key itself.
    pub protection_key: crate::spec::KeySource,
}

/// `[publish.sdmx]`: how the public tables are identified in SDMX exports.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Sdmx {
    /// Maintenance agency of the dataflows, structures and code lists (an SDMX id).
    pub agency: String,
    /// Version of the dataflows and structures (e.g. `1.0`).
    pub version: String,
    /// SDMX-CSV versions written for each public table: `1.0` and/or `2.0`.
    pub csv: Vec<String>,
    /// ISO 3166-1 alpha-2 code of the reporting country, written as the `REF_AREA` dimension.
    pub ref_area: Option<String>,
}

/// An SDMX id: letters, digits, `_`, `@`, `$`, `-` (agency ids may also hold `.`).
fn sdmx_id(s: &str, dots: bool) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_@$-".contains(c) || (dots && c == '.'))
}

/// Compile a pipeline spec and its schemas into a [`Plan`]. Every problem is reported at once,
/// section by section; no data is read.
pub fn compile(spec_path: &Path) -> Result<Plan> {
    let (bytes, root_table) = read_spec(spec_path)?;
    let base = spec_path.parent().unwrap_or(Path::new("."));
    let mut cx = Ctx {
        file: spec_path,
        issues: Vec::new(),
    };
    let root = Section::new(&root_table, "");
    misplaced_sections(&root, &mut cx);
    let head = header(&root, &mut cx);
    let (default_fraction, chunk_rows) = defaults_section(&root, &mut cx);
    let (keep_releases, provisional_months, sdmx, languages) = publish_section(&root, &mut cx);
    let protection_key = protection_section(&root, base, &mut cx);
    let (codelists_dir, codelists, bandings) = codelists_section(&root, base, &mut cx);
    let (sources, schema_hashes) = source::sources_section(
        &root,
        base,
        default_fraction,
        (&codelists, &bandings),
        &mut cx,
    );
    let tables = tables_section(
        &root,
        base,
        &sources,
        (head.reference_date, head.reference_period),
        &mut cx,
    );
    check_covariances(&sources, &tables, &mut cx);
    check_translations(&languages, &head, (&sources, &tables), &mut cx);
    let metadata = metadata_section(&root, "metadata", &SIMS_RELEASE_KEYS, &mut cx);
    let groups = groups::groups(&tables, &mut cx);
    root.finish(&mut cx);
    if !cx.issues.is_empty() {
        return Err(Error::Spec(cx.issues));
    }
    let (Some(reference_date), Some(reference_period)) =
        (head.reference_date, head.reference_period)
    else {
        return Err(Error::Internal(
            "spec compiled without reference dates".into(),
        ));
    };
    let spec_hash = spec_hash(
        &bytes,
        &schema_hashes,
        (&codelists_dir, &codelists, &bandings),
        &sources,
        &tables,
    );
    Ok(Plan {
        spec_path: spec_path.to_path_buf(),
        pipeline_id: head.pipeline_id,
        title: head.title,
        title_translations: head.title_translations,
        metadata,
        languages,
        spec_hash,
        reference_date,
        reference_period,
        chunk_rows,
        keep_releases,
        provisional_months,
        sdmx,
        codelists_dir,
        sources,
        codelists,
        tables,
        groups,
        protection_key,
    })
}

/// The spec file read and parsed: its bytes (hashed into the plan) and its TOML.
fn read_spec(spec_path: &Path) -> Result<(Vec<u8>, Table)> {
    let bytes = std::fs::read(spec_path).map_err(|e| {
        Error::Spec(vec![SpecIssue {
            file: spec_path.to_path_buf(),
            key: String::new(),
            message: format!("cannot read the pipeline spec: {e}"),
        }])
    })?;
    let text = String::from_utf8(bytes.clone()).map_err(|_| {
        Error::Spec(vec![SpecIssue {
            file: spec_path.to_path_buf(),
            key: String::new(),
            message: "the pipeline spec is not UTF-8".into(),
        }])
    })?;
    let root: Table = text.parse().map_err(|e: toml::de::Error| {
        Error::Spec(vec![SpecIssue {
            file: spec_path.to_path_buf(),
            key: String::new(),
            message: format!("not valid TOML: {}", e.to_string().trim()),
        }])
    })?;
    Ok((bytes, root))
}

/// Top-level sections that belong elsewhere or to a later migstat: each reported with what to do
/// instead of as an unknown key.
fn misplaced_sections(root: &Section<'_>, cx: &mut Ctx<'_>) {
    if root.has("harmonize") {
        root.get("harmonize");
        cx.push(
            "harmonize",
            "harmonize goes under each source: [sources.<id>.harmonize]",
        );
    }
    for k in RESERVED_SECTIONS.iter().filter(|k| root.has(k)) {
        root.get(k);
        cx.push(
            *k,
            format!(
                "section `{k}` is not supported by migstat {} yet; remove it",
                crate::VERSION
            ),
        );
    }
}

/// The spec's identity and reference dates (the top-level keys).
struct Header {
    pipeline_id: String,
    title: Option<String>,
    title_translations: BTreeMap<Lang, String>,
    reference_date: Option<NaiveDate>,
    reference_period: Option<Period>,
}

fn header(root: &Section<'_>, cx: &mut Ctx<'_>) -> Header {
    match root.get("version") {
        Some(Value::Integer(SPEC_VERSION)) => {}
        Some(v) => cx.push(
            "version",
            format!("spec version {v} is not supported; this migstat reads version {SPEC_VERSION}"),
        ),
        None => cx.push(
            "version",
            format!("required: write `version = {SPEC_VERSION}`"),
        ),
    }
    let pipeline_id = cx.str(root, "id", true).unwrap_or_default().to_string();
    if !pipeline_id.is_empty() && !is_identifier(&pipeline_id) {
        cx.push("id", "use letters, digits, `_` and `-` only");
    }
    let title = cx.str(root, "title", false).map(str::to_string);
    let title_translations = translations(root, "title", cx);
    cx.str(root, "description", false);

    let reference_date = match root.get("reference_date") {
        Some(v) => cx.date(v, "reference_date"),
        None => {
            cx.push(
                "reference_date",
                "required key is missing (e.g. 2024-12-31)",
            );
            None
        }
    };
    let reference_period = match root.get("reference_period") {
        Some(Value::Table(t)) => {
            let t = Section::new(t, "reference_period");
            let s = t
                .get("start")
                .and_then(|v| cx.date(v, "reference_period.start"));
            let e = t
                .get("end")
                .and_then(|v| cx.date(v, "reference_period.end"));
            let period = match (s, e) {
                (Some(start), Some(end)) if start <= end => Some(Period { start, end }),
                (Some(_), Some(_)) => {
                    cx.push("reference_period", "start is after end");
                    None
                }
                _ => {
                    if !t.has("start") || !t.has("end") {
                        cx.push("reference_period", "needs both `start` and `end`");
                    }
                    None
                }
            };
            t.finish(cx);
            period
        }
        Some(Value::String(y)) => match y.parse::<i32>().ok().and_then(|y| {
            Some(Period {
                start: NaiveDate::from_ymd_opt(y, 1, 1)?,
                end: NaiveDate::from_ymd_opt(y, 12, 31)?,
            })
        }) {
            Some(p) => Some(p),
            None => {
                cx.push(
                    "reference_period",
                    "a string period must be a year, e.g. \"2024\"",
                );
                None
            }
        },
        Some(_) => {
            cx.push(
                "reference_period",
                "write a year (\"2024\") or { start = ..., end = ... }",
            );
            None
        }
        None => {
            cx.push(
                "reference_period",
                "required key is missing (e.g. \"2024\")",
            );
            None
        }
    };

    Header {
        pipeline_id,
        title,
        title_translations,
        reference_date,
        reference_period,
    }
}

/// `[defaults]`: (the default `max_invalid_fraction`, `chunk_rows`).
fn defaults_section(root: &Section<'_>, cx: &mut Ctx<'_>) -> (f64, usize) {
    let Some(defaults) = root.sub("defaults", "", cx) else {
        return (0.05, 250_000);
    };
    let default_fraction = cx
        .fraction(&defaults, "max_invalid_fraction")
        .unwrap_or(0.05);
    let chunk_rows = cx.at_least_one(
        &defaults,
        "chunk_rows",
        250_000,
        "must be a positive integer",
    );
    defaults.finish(cx);
    (default_fraction, chunk_rows)
}

/// A `[metadata]` section (the release's, or a table's): free text for the SIMS concepts of
/// `keys`; any other key is reported.
pub(crate) fn metadata_section(
    parent: &Section<'_>,
    key: &str,
    keys: &[(&str, &str)],
    cx: &mut Ctx<'_>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(m) = parent.sub(key, "{ statistical_population = \"...\" }", cx) {
        for (k, _) in keys {
            if let Some(v) = cx.str(&m, k, false).filter(|v| !v.trim().is_empty()) {
                out.insert(k.to_string(), v.to_string());
            }
        }
        m.finish(cx);
    }
    out
}

/// `<key>_fr`, `<key>_ar` of a section: a text's translations.
fn translations(section: &Section<'_>, key: &str, cx: &mut Ctx<'_>) -> BTreeMap<Lang, String> {
    Lang::ALL
        .into_iter()
        .filter(|l| *l != Lang::En)
        .filter_map(|l| {
            cx.str(section, &format!("{key}_{}", l.code()), false)
                .filter(|s| !s.trim().is_empty())
                .map(|s| (l, s.to_string()))
        })
        .collect()
}

/// Every title and source description a document shows exists in every publication language: a
/// missing one is named, never shown in English on a French or Arabic page.
fn check_translations(
    languages: &[Lang],
    head: &Header,
    (sources, tables): (&[SourcePlan], &[TableSpec]),
    cx: &mut Ctx<'_>,
) {
    for &lang in languages.iter().filter(|l| **l != Lang::En) {
        let l = lang.code();
        if head.title.is_some() && !head.title_translations.contains_key(&lang) {
            cx.push(
                format!("title_{l}"),
                format!("publish.languages lists `{l}`: give the pipeline's title in it"),
            );
        }
        for s in sources {
            if s.description.is_some() && !s.description_translations.contains_key(&lang) {
                cx.push(
                    format!("sources.{}.description_{l}", s.id),
                    format!("publish.languages lists `{l}`: give the source's description in it"),
                );
            }
        }
        for t in tables {
            if t.title.is_some() && !t.title_translations.contains_key(&lang) {
                cx.push(
                    format!("tables.{}.title_{l}", t.id),
                    format!("publish.languages lists `{l}`: give the table's title in it"),
                );
            }
        }
    }
}

/// `[publish]` and `[publish.sdmx]`: (keep_releases, provisional_months, SDMX settings,
/// publication languages).
fn publish_section(root: &Section<'_>, cx: &mut Ctx<'_>) -> (usize, u32, Sdmx, Vec<Lang>) {
    let empty = Table::new();
    let publish = root
        .sub("publish", "", cx)
        .unwrap_or_else(|| Section::new(&empty, "publish"));
    let keep_releases = cx.at_least_one(
        &publish,
        "keep_releases",
        7,
        "must be an integer of at least 1 (the current release is always kept)",
    );

    let provisional_months = match publish.get("provisional_months") {
        None => 0,
        Some(v) => match v.as_integer().and_then(|i| u32::try_from(i).ok()) {
            Some(n) if n <= 120 => n,
            _ => {
                cx.push(
                    "publish.provisional_months",
                    "must be an integer from 0 to 120 (months after a period's end)",
                );
                0
            }
        },
    };

    let languages = match publish.get("languages") {
        None => vec![Lang::En],
        Some(Value::Array(a)) => {
            let mut out: Vec<Lang> = Vec::new();
            for v in a {
                match v.as_str().and_then(Lang::parse) {
                    Some(l) if !out.contains(&l) => out.push(l),
                    Some(l) => cx.push(
                        "publish.languages",
                        format!("`{}` is listed twice", l.code()),
                    ),
                    None => cx.push(
                        "publish.languages",
                        format!(
                            "`{}` is not a publication language: write \"en\", \"fr\" or \"ar\"",
                            cap(&v.to_string())
                        ),
                    ),
                }
            }
            if a.is_empty() {
                cx.push(
                    "publish.languages",
                    "list at least one language, e.g. [\"en\", \"fr\", \"ar\"]",
                );
            }
            out
        }
        Some(_) => {
            cx.push(
                "publish.languages",
                "must be a list of languages, e.g. [\"en\", \"fr\", \"ar\"]",
            );
            vec![Lang::En]
        }
    };

    let sdmx_table = publish
        .sub("sdmx", "", cx)
        .unwrap_or_else(|| Section::new(&empty, "publish.sdmx"));
    let agency = cx
        .str(&sdmx_table, "agency", false)
        .unwrap_or("MIGSTAT")
        .to_string();
    if !sdmx_id(&agency, true) {
        cx.push(
            "publish.sdmx.agency",
            format!("`{agency}` is not an SDMX id (letters, digits, _ @ $ - .)"),
        );
    }
    let sdmx_version = cx
        .str(&sdmx_table, "version", false)
        .unwrap_or("1.0")
        .to_string();
    if !sdmx_version
        .split('.')
        .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
    {
        cx.push(
            "publish.sdmx.version",
            format!("`{sdmx_version}` is not a version such as 1.0"),
        );
    }
    let csv_versions = match sdmx_table.get("csv") {
        None => vec!["1.0".to_string()],
        Some(Value::Array(a)) => {
            let v: Vec<String> = a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect();
            if v.len() != a.len() || v.iter().any(|x| x != "1.0" && x != "2.0") {
                cx.push(
                    "publish.sdmx.csv",
                    "must be a list of SDMX-CSV versions: \"1.0\", \"2.0\"",
                );
            }
            v
        }
        Some(_) => {
            cx.push(
                "publish.sdmx.csv",
                "must be a list of SDMX-CSV versions: \"1.0\", \"2.0\"",
            );
            Vec::new()
        }
    };
    let ref_area = cx.str(&sdmx_table, "ref_area", false).map(str::to_string);
    if let Some(a) = &ref_area
        && !(a.len() == 2 && a.chars().all(|c| c.is_ascii_uppercase()))
    {
        cx.push(
            "publish.sdmx.ref_area",
            format!("`{a}` is not an ISO 3166-1 alpha-2 code (e.g. MA)"),
        );
    }
    sdmx_table.finish(cx);
    publish.finish(cx);
    let sdmx = Sdmx {
        agency,
        version: sdmx_version,
        csv: csv_versions,
        ref_area,
    };

    (keep_releases, provisional_months, sdmx, languages)
}

/// `[protection]`: where the protection key comes from.
fn protection_section(root: &Section<'_>, base: &Path, cx: &mut Ctx<'_>) -> KeySource {
    let mut protection_key = crate::spec::KeySource::default();
    let Some(protection) = root.sub("protection", "", cx) else {
        return protection_key;
    };
    if let Some(env) = cx.str(&protection, "key_env", false) {
        if env.is_empty() || !env.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            cx.push(
                "protection.key_env",
                "must be the name of an environment variable (letters, digits, _)",
            );
        }
        protection_key.env = env.to_string();
    }
    if let Some(f) = cx.str(&protection, "key_file", false) {
        if f.is_empty() {
            cx.push("protection.key_file", "must name a file");
        } else {
            protection_key.file = Some(clean_path(&base.join(f)));
        }
    }
    protection.finish(cx);
    protection_key
}

/// The code lists and age bandings the sources' derivations may name (read only when a
/// source derives something).
fn codelists_section(
    root: &Section<'_>,
    base: &Path,
    cx: &mut Ctx<'_>,
) -> (PathBuf, BTreeMap<String, CodeList>, Vec<Banding>) {
    let codelists_dir = match cx.str(root, "codelists", false) {
        Some(d) => clean_path(&base.join(d)),
        None => clean_path(&base.join("../schemas/codelists")),
    };
    let wants_codelists = root
        .get("sources")
        .and_then(Value::as_table)
        .is_some_and(|t| {
            t.values()
                .any(|s| s.as_table().is_some_and(|s| s.contains_key("harmonize")))
        });
    let (codelists, bandings) = if wants_codelists {
        codelist::load_codelists(&codelists_dir, cx)
    } else {
        (BTreeMap::new(), Vec::new())
    };
    (codelists_dir, codelists, bandings)
}

/// `[tables.<id>]`: every table compiled against the sources.
fn tables_section(
    root: &Section<'_>,
    base: &Path,
    sources: &[SourcePlan],
    (reference_date, reference_period): (Option<NaiveDate>, Option<Period>),
    cx: &mut Ctx<'_>,
) -> Vec<TableSpec> {
    let mut tables = Vec::new();
    match root.get("tables") {
        None => {}
        Some(Value::Table(t)) => {
            let view: Vec<table::SourceView> = sources
                .iter()
                .map(|s: &SourcePlan| table::SourceView {
                    id: s.id.clone(),
                    schema: s.schema.clone(),
                    derived: s.harmonize.iter().map(|d| d.name.clone()).collect(),
                    has_person: s.person_id.is_some(),
                    has_record: s.record_id.is_some(),
                    has_design: s.design.is_some(),
                    has_replicates: s.design.as_ref().is_some_and(|d| d.replicates.is_some()),
                    adjusted: s
                        .design
                        .as_ref()
                        .is_some_and(|d| d.calibration.is_some() || d.nonresponse.is_some()),
                    observed: s
                        .harmonize
                        .iter()
                        .filter(|d| {
                            matches!(
                                &d.derivation,
                                Derivation::Code {
                                    unmapped: crate::spec::Unmapped::Observed,
                                    ..
                                }
                            )
                        })
                        .map(|d| d.name.clone())
                        .collect(),
                    period: s.period.clone(),
                    reference_date,
                    reference_period,
                })
                .collect();
            for (id, v) in t {
                if !is_identifier(id) {
                    cx.push(
                        format!("tables.{id}"),
                        "table ids use letters, digits, `_` and `-` only",
                    );
                }
                match v {
                    Value::Table(tt) => {
                        if let Some(ts) = table::compile_table(id, tt, &view, base, cx) {
                            tables.push(ts);
                        }
                    }
                    _ => cx.push(format!("tables.{id}"), "must be a table"),
                }
            }
        }
        Some(_) => cx.push("tables", "must be a table of [tables.<id>] tables"),
    }
    resolve_contrasts(&mut tables, cx);
    tables
}

/// Check each design's `covariance` tables: survey totals, means, shares or ratios of that
/// source, each named once.
fn check_covariances(sources: &[SourcePlan], tables: &[TableSpec], cx: &mut Ctx<'_>) {
    for s in sources {
        let Some(d) = &s.design else { continue };
        let at = format!("sources.{}.design.covariance", s.id);
        let mut seen = std::collections::BTreeSet::new();
        for id in &d.covariance {
            if !seen.insert(id) {
                cx.push(&at, format!("`{}` is listed twice", cap(id)));
                continue;
            }
            match tables.iter().find(|t| &t.id == id) {
                None => cx.push(&at, format!("no table `{}`", cap(id))),
                Some(t) if t.source != s.id => cx.push(
                    &at,
                    format!("`{id}` estimates source `{}`, not this one", t.source),
                ),
                Some(t)
                    if !matches!(
                        t.kind,
                        TableKind::SurveyTotal { .. }
                            | TableKind::SurveyMean { .. }
                            | TableKind::SurveyProportion { .. }
                            | TableKind::SurveyRatio { .. }
                    ) =>
                {
                    cx.push(
                        &at,
                        format!(
                            "`{id}` is a {} table: covariances take survey totals, means, proportions or ratios",
                            t.kind.name()
                        ),
                    )
                }
                Some(_) => {}
            }
        }
    }
}

/// Give each contrast table the estimator, dimensions, filter and periods of the table it
/// contrasts, once every table is compiled; report a contrast that cannot be taken.
fn resolve_contrasts(tables: &mut [TableSpec], cx: &mut Ctx<'_>) {
    let snapshot: Vec<TableSpec> = tables.to_vec();
    for t in tables.iter_mut() {
        let TableKind::SurveyContrast {
            of,
            across,
            estimator,
            base_dimensions,
            ..
        } = &mut t.kind
        else {
            continue;
        };
        let at = format!("tables.{}", t.id);
        let Some(base) = snapshot.iter().find(|b| &b.id == of) else {
            if !of.is_empty() {
                cx.push(format!("{at}.of"), format!("no table `{}`", cap(of)));
            }
            continue;
        };
        match &base.kind {
            TableKind::SurveyTotal { .. }
            | TableKind::SurveyMean { .. }
            | TableKind::SurveyProportion { .. }
            | TableKind::SurveyRatio { .. } => {}
            _ => {
                cx.push(
                    format!("{at}.of"),
                    format!(
                        "`{}` is a {} table: a contrast takes survey totals, means, proportions or ratios",
                        base.id,
                        base.kind.name()
                    ),
                );
                continue;
            }
        }
        if base.source != t.source {
            cx.push(
                format!("{at}.source"),
                format!(
                    "`{}` estimates source `{}`: use it here too",
                    base.id, base.source
                ),
            );
        }
        if !base.dimensions.contains(across) {
            cx.push(
                format!("{at}.across"),
                format!(
                    "`{}` is not a dimension of `{}` ({})",
                    cap(across),
                    base.id,
                    base.dimensions.join(", ")
                ),
            );
            continue;
        }
        let mut want: Vec<&String> = base.dimensions.iter().filter(|d| *d != across).collect();
        let mut have: Vec<&String> = t.dimensions.iter().collect();
        want.sort();
        have.sort();
        if want != have {
            cx.push(
                format!("{at}.dimensions"),
                format!(
                    "a contrast of `{}` across {across} is taken in the cells of its other dimensions: [{}]",
                    base.id,
                    want.iter().map(|d| d.as_str()).collect::<Vec<_>>().join(", ")
                ),
            );
        }
        match &t.filter {
            None => t.filter = base.filter.clone(),
            Some(f) if Some(f) != base.filter.as_ref() => cx.push(
                format!("{at}.filter"),
                format!("a contrast estimates in the universe of `{}`: leave out `filter` (it takes that table's)", base.id),
            ),
            Some(_) => {}
        }
        if t.periods != base.periods || t.periods.list != base.periods.list {
            cx.push(
                format!("{at}.period"),
                format!(
                    "a contrast takes the periods of `{}`: leave out `period`",
                    base.id
                ),
            );
        }
        **estimator = base.kind.clone();
        *base_dimensions = base.dimensions.clone();
    }
}

/// The plan's content key: the spec's bytes, its schemas, and every code list, crosswalk,
/// banding and perturbation table it reads (they change results as much as the spec does).
fn spec_hash(
    bytes: &[u8],
    schema_hashes: &[blake3::Hash],
    (codelists_dir, codelists, bandings): (&Path, &BTreeMap<String, CodeList>, &[Banding]),
    sources: &[SourcePlan],
    tables: &[TableSpec],
) -> String {
    let mut h = blake3::Hasher::new();
    h.update(bytes);
    for sh in schema_hashes {
        h.update(sh.as_bytes());
    }
    // Crosswalks and code lists change results as much as the spec does.
    let mut extra: Vec<PathBuf> = codelists.values().map(|c| c.path.clone()).collect();
    for s in sources {
        for d in &s.harmonize {
            if let Derivation::Code { crosswalk, .. } = &d.derivation {
                extra.extend(crosswalk.iter().cloned());
            }
        }
        // So do the population totals a survey is calibrated to.
        if let Some(c) = s.design.as_ref().and_then(|d| d.calibration.as_ref()) {
            extra.extend(c.margins.iter().map(|m| m.path.clone()));
        }
        // And replicate weights delivered in a file of their own.
        if let Some(f) = s
            .design
            .as_ref()
            .and_then(|d| d.replicates.as_ref())
            .and_then(|r| r.file.as_ref())
        {
            extra.push(f.path.clone());
        }
    }
    if !bandings.is_empty() {
        extra.push(codelists_dir.join("age_bands.csv"));
    }
    extra.extend(
        tables
            .iter()
            .filter_map(|t| t.protect.as_ref().and_then(|p| p.ptable.clone())),
    );
    for p in extra {
        if let Ok(bytes) = std::fs::read(&p) {
            h.update(&bytes);
        }
    }
    h.finalize().to_hex().to_string()
}

/// Lexically resolve `.` and `..` so paths read the same whatever the working directory.
pub fn clean_path(p: &Path) -> PathBuf {
    let mut out: Vec<Component<'_>> = Vec::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.last() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                _ => out.push(c),
            },
            other => out.push(other),
        }
    }
    out.iter().collect()
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &Path, toml: &str) -> Result<Plan> {
        let p = dir.join("p.toml");
        std::fs::write(&p, toml).unwrap();
        compile(&p)
    }

    fn keys(r: Result<Plan>) -> Vec<String> {
        match r {
            Err(Error::Spec(v)) => v.into_iter().map(|i| i.key).collect(),
            Err(e) => panic!("not a spec error: {e}"),
            Ok(_) => vec![],
        }
    }

    #[test]
    fn top_level_mistakes_are_all_reported() {
        let d = tempfile::tempdir().unwrap();
        let k = keys(spec(
            d.path(),
            "version = 2\nid = \"a b\"\nreference_date = \"31/12/2024\"\nreference_period = { start = 2024-12-31, end = 2024-01-01 }\n[protect.x]\n",
        ));
        assert_eq!(
            k,
            [
                "protect",
                "version",
                "id",
                "reference_date",
                "reference_period",
                "sources"
            ]
        );
    }

    #[test]
    fn source_mistakes_are_all_reported() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("s.json"), r#"{"fields": [{"name": "id"}]}"#).unwrap();
        let k = keys(spec(
            d.path(),
            "version = 1\nid = \"p\"\nreference_date = 2024-12-31\nreference_period = \"2024\"\n\
             [sources.a]\npath = \"none-*.csv\"\nformat = \"xlsx\"\nschema = \"s.json\"\nencoding = \"latin9\"\ndelimiter = \";;\"\nmax_invalid_fraction = 2\nrecord_id = \"nope\"\n\
             [sources.b]\npath = \"s.json\"\nformat = \"parquet\"\nschema = \"s.json\"\ndelimiter = \";\"\n",
        ));
        assert_eq!(
            k,
            [
                "sources.a.format",
                "sources.a.encoding",
                "sources.a.delimiter",
                "sources.a.max_invalid_fraction",
                "sources.a.path",
                "sources.a.record_id",
                "sources.b.delimiter",
            ]
        );
    }

    #[test]
    fn each_publication_language_needs_every_title_in_it() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("x.csv"), "id,d\n1,2024-01-01\n").unwrap();
        std::fs::write(
            d.path().join("s.json"),
            r#"{"fields": [{"name": "id"}, {"name": "d", "type": "date"}]}"#,
        )
        .unwrap();
        let body = |langs: &str, titles: &str| {
            format!(
                "version = 1\nid = \"p\"\ntitle = \"P\"\ntitle_fr = \"P fr\"\nreference_date = 2024-12-31\nreference_period = \"2024\"\ncodelists = \"{}/schemas/codelists\"\n\
                 [publish]\nlanguages = {langs}\n\
                 [sources.s]\npath = \"x.csv\"\nformat = \"csv\"\nschema = \"s.json\"\n\
                 [sources.s.harmonize]\nYEAR = {{ year = \"d\" }}\n\
                 [tables.t]\nsource = \"s\"\nkind = \"count\"\nunit = \"records\"\ndimensions = [\"YEAR\"]\n{titles}",
                env!("CARGO_MANIFEST_DIR")
            )
        };
        // French listed: the table's French title is missing, the pipeline's is given.
        let k = keys(spec(d.path(), &body("[\"en\", \"fr\"]", "title = \"T\"\n")));
        assert_eq!(k, ["tables.t.title_fr"]);
        // Arabic too: both titles lack it; a language migstat does not write, and a repeat.
        let k = keys(spec(
            d.path(),
            &body(
                "[\"ar\", \"fr\", \"de\", \"fr\"]",
                "title = \"T\"\ntitle_fr = \"T fr\"\n",
            ),
        ));
        assert_eq!(
            k,
            [
                "publish.languages",
                "publish.languages",
                "title_ar",
                "tables.t.title_ar"
            ]
        );
        // Given in every language listed: the first language leads.
        let plan = spec(
            d.path(),
            &body("[\"fr\", \"en\"]", "title = \"T\"\ntitle_fr = \"T fr\"\n"),
        )
        .unwrap();
        assert_eq!(plan.languages, [Lang::Fr, Lang::En]);
        assert_eq!(plan.tables[0].title_translations[&Lang::Fr], "T fr");
        // A source's description too, in each language listed.
        let described = |tr: &str| {
            body("[\"en\", \"fr\"]", "title = \"T\"\ntitle_fr = \"T fr\"\n").replace(
                "[sources.s]\n",
                &format!("[sources.s]\ndescription = \"D\"\n{tr}"),
            )
        };
        let k = keys(spec(d.path(), &described("description_ar = \"D ar\"\n")));
        assert_eq!(k, ["sources.s.description_fr"]);
        let plan = spec(d.path(), &described("description_fr = \"D fr\"\n")).unwrap();
        assert_eq!(plan.sources[0].description_translations[&Lang::Fr], "D fr");
        // Reference metadata: the SIMS keys migstat knows, others named.
        let k = keys(spec(
            d.path(),
            &(body(
                "[\"en\"]",
                "title = \"T\"\nmetadata = { statistical_population = \"all\", colour = \"red\" }\n",
            ) + "[metadata]\ncontact_email = \"a@b.c\"\nweather = \"fine\"\n"),
        ));
        assert_eq!(k, ["tables.t.metadata.colour", "metadata.weather"]);
        // By default English only, and no translation is asked for.
        let plan = spec(d.path(), &body("[\"en\"]", "title = \"T\"\n")).unwrap();
        assert_eq!(plan.languages, [Lang::En]);
    }

    #[test]
    fn empty_names_are_spec_errors_before_any_data_is_read() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("x.csv"), "id,d\n1,2024-01-01\n").unwrap();
        std::fs::write(
            d.path().join("s.json"),
            r#"{"fields": [{"name": "id"}, {"name": "d", "type": "date"}]}"#,
        )
        .unwrap();
        let k = keys(spec(
            d.path(),
            "version = 1\nid = \"\"\nreference_date = 2024-12-31\nreference_period = \"2024\"\n\
             [sources.s]\npath = \"x.csv\"\nformat = \"csv\"\nschema = \"s.json\"\nperson_id = \"id\"\n\
             [tables.f]\nsource = \"s\"\nkind = \"flow\"\nstart = \" \"\nunit = \"persons\"\ndimensions = []\n",
        ));
        for want in ["id", "tables.f.start"] {
            assert!(k.iter().any(|x| x == want), "{want} not in {k:?}");
        }
    }

    #[test]
    fn plausibility_rules_are_checked_against_the_schema() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("x.csv"), "id,b,e,n,y\n").unwrap();
        std::fs::write(
            d.path().join("s.json"),
            r#"{"fields": [{"name": "id"}, {"name": "b", "type": "date"}, {"name": "e", "type": "date"},
                {"name": "n", "type": "integer"}, {"name": "y", "type": "year"}]}"#,
        )
        .unwrap();
        let lists = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/codelists");
        let head = format!(
            "version = 1\nid = \"p\"\nreference_date = 2024-12-31\nreference_period = \"2024\"\ncodelists = \"{lists}\"\n\
             [sources.s]\npath = \"x.csv\"\nformat = \"csv\"\nschema = \"s.json\"\n"
        );
        // Hand-written: each line breaks one rule of the `checks` and `range` readers.
        let k = keys(spec(
            d.path(),
            &format!(
                "{head}[sources.s.harmonize]\nAGE = {{ birth_date = \"b\", range = [0, 200] }}\n\
                 [sources.s.checks]\n\
                 b = {{ not_after = \"reference_date\", not_before = \"n\" }}\n\
                 e = {{ not_before = \"nope\", after = \"b\" }}\n\
                 id = {{ not_after = \"b\" }}\n\
                 zz = {{ not_after = \"b\" }}\n\
                 y = {{ }}\n"
            ),
        ));
        assert_eq!(
            k,
            [
                "sources.s.harmonize.AGE.range",
                "sources.s.checks.b.not_before",
                "sources.s.checks.e.not_before",
                "sources.s.checks.e.after",
                "sources.s.checks.id",
                "sources.s.checks.y",
                "sources.s.checks.zz",
            ]
        );
        // A valid set compiles: dates against dates and the reference date, years against years.
        let plan = spec(
            d.path(),
            &format!(
                "{head}[sources.s.checks]\nb = {{ not_after = \"reference_date\" }}\n\
                 e = {{ not_before = \"b\" }}\ny = {{ not_after = \"reference_date\", not_before = \"n\" }}\n"
            ),
        )
        .unwrap();
        assert_eq!(plan.sources[0].checks.len(), 4);
    }

    #[test]
    fn a_dialect_is_read_and_checked() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("x.csv"), "id\n").unwrap();
        std::fs::write(d.path().join("s.json"), r#"{"fields": [{"name": "id"}]}"#).unwrap();
        let head = "version = 1\nid = \"p\"\nreference_date = 2024-12-31\nreference_period = \"2024\"\n\
             [sources.s]\npath = \"x.csv\"\nformat = \"csv\"\nschema = \"s.json\"\ndelimiter = \";\"\n";
        let plan = spec(
            d.path(),
            &format!("{head}[sources.s.dialect]\nline_terminator = \"\\r\"\nquote_char = \"'\"\ncomment_char = \"#\"\n"),
        )
        .unwrap();
        let got = &plan.sources[0].dialect;
        assert!(got.cr_only && got.quote == Some(b'\'') && got.comment == Some(b'#'));
        assert!(got.double_quote && got.escape.is_none() && !got.skip_initial_space);
        // A tab is whitespace, and a delimiter: TOML's "\t" and the two characters `\t`.
        for tab in ["\"\\t\"", "'\\t'"] {
            let plan = spec(
                d.path(),
                &head.replace("delimiter = \";\"", &format!("delimiter = {tab}")),
            );
            assert_eq!(
                plan.map(|p| p.sources[0].delimiter).ok(),
                Some(b'\t'),
                "{tab}"
            );
        }
        // By hand: a terminator that is not one, the delimiter as quote, a flag that is not a
        // flag, an escape equal to the quote, an unknown key.
        let k = keys(spec(
            d.path(),
            &format!(
                "{head}[sources.s.dialect]\nline_terminator = \";\"\nquote_char = \";\"\n\
                 double_quote = \"yes\"\nescape_char = \"\\\"\"\nheader = false\n"
            ),
        ));
        assert_eq!(
            k,
            [
                "sources.s.dialect.line_terminator",
                "sources.s.dialect.quote_char",
                "sources.s.dialect.double_quote",
                "sources.s.dialect.escape_char",
                "sources.s.dialect.header",
            ]
        );
    }

    #[test]
    fn derived_columns_follow_what_they_read_not_their_names() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("x.csv"), "id,c\n1,SEN\n").unwrap();
        std::fs::write(
            d.path().join("s.json"),
            r#"{"fields": [{"name": "id"}, {"name": "c"}]}"#,
        )
        .unwrap();
        let lists = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/codelists");
        // Names sort before what they read: A reads Z, which reads M, which reads the field.
        let plan = spec(
            d.path(),
            &format!(
                "version = 1\nid = \"p\"\nreference_date = 2024-12-31\nreference_period = \"2024\"\ncodelists = \"{lists}\"\n\
                 [sources.s]\npath = \"x.csv\"\nformat = \"csv\"\nschema = \"s.json\"\n\
                 [sources.s.harmonize]\n\
                 A_NATIONALITY = {{ foreign = \"Z_COUNTRY\", national = \"MAR\" }}\n\
                 Z_COUNTRY = {{ lookup = \"M_CODE\", codelist = \"countries\", column = \"iso3\" }}\n\
                 M_CODE = {{ from = \"c\", codelist = \"countries\" }}\n"
            ),
        );
        let names: Vec<String> = match plan {
            Ok(p) => p.sources[0]
                .harmonize
                .iter()
                .map(|h| h.name.clone())
                .collect(),
            Err(e) => panic!("{e}"),
        };
        assert_eq!(names, ["M_CODE", "Z_COUNTRY", "A_NATIONALITY"]);
    }

    #[test]
    fn a_valid_spec_compiles_with_defaults_and_sorted_globs() {
        let d = tempfile::tempdir().unwrap();
        for f in ["b2.csv", "b1.csv"] {
            std::fs::write(d.path().join(f), "id\n1\n").unwrap();
        }
        std::fs::write(d.path().join("s.json"), r#"{"fields": [{"name": "id"}]}"#).unwrap();
        let plan = spec(
            d.path(),
            "version = 1\nid = \"p\"\nreference_date = 2024-06-30\nreference_period = { start = 2024-01-01, end = 2024-06-30 }\n\
             [defaults]\nmax_invalid_fraction = 0.1\n[sources.b]\npath = \"b*.csv\"\nformat = \"csv\"\nschema = \"s.json\"\ndelimiter = \"\\\\t\"\n",
        )
        .unwrap();
        let s = &plan.sources[0];
        let names: Vec<_> = s
            .files
            .iter()
            .map(|f| f.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(names, ["b1.csv", "b2.csv"]);
        assert_eq!(
            (s.delimiter, s.encoding, s.max_invalid_fraction),
            (b'\t', Encoding::Utf8, 0.1)
        );
        assert_eq!(
            plan.reference_period.end,
            NaiveDate::from_ymd_opt(2024, 6, 30).unwrap()
        );
        assert_eq!(plan.chunk_rows, 250_000);
        // The hash covers the schema: changing it changes the plan's hash.
        let before = plan.spec_hash.clone();
        std::fs::write(
            d.path().join("s.json"),
            r#"{"fields": [{"name": "id", "type": "integer"}]}"#,
        )
        .unwrap();
        let after = compile(&d.path().join("p.toml")).unwrap().spec_hash;
        assert_ne!(before, after);
    }

    #[test]
    fn design_mistakes_are_all_reported() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("x.csv"), "id\n1\n").unwrap();
        std::fs::write(
            d.path().join("s.json"),
            r#"{"fields": [{"name": "id"}, {"name": "w", "type": "number", "constraints": {"required": true}},
                {"name": "h", "constraints": {"required": true}}, {"name": "n", "type": "integer", "constraints": {"required": true}},
                {"name": "r1", "type": "number", "constraints": {"required": true}}, {"name": "r2", "type": "number"}]}"#,
        )
        .unwrap();
        let head =
            "version = 1\nid = \"p\"\nreference_date = 2024-12-31\nreference_period = \"2024\"\n";
        let src = |name: &str, design: &str| {
            format!(
                "[sources.{name}]\npath = \"x.csv\"\nformat = \"csv\"\nschema = \"s.json\"\n[sources.{name}.design]\nweight = \"w\"\n{design}\n"
            )
        };
        let k = keys(spec(
            d.path(),
            &[
                head.to_string(),
                // a second stage without PSUs; an FPC of two stages without a stage-2 one
                src("a", "ssu = \"h\"\nfpc = \"n\""),
                src(
                    "b",
                    "psu = \"h\"\nssu = \"h\"\nfpc = \"n\"\nlonely_psu = \"drop\"",
                ),
                // replicates next to strata; JKn without rscales; a column that may be missing
                src(
                    "c",
                    "strata = \"h\"\nreplicates = { columns = \"r*\", type = \"JKn\" }",
                ),
                // an FPC that is not a number, next to replicates; a glob matching one column
                src(
                    "d",
                    "fpc = \"h\"\nreplicates = { columns = \"r1*\", type = \"BRR\", scale = 2 }",
                ),
            ]
            .concat(),
        ));
        assert_eq!(
            k,
            [
                "sources.a.design.ssu",
                "sources.a.design.fpc",
                "sources.b.design.fpc",
                "sources.b.design.lonely_psu",
                "sources.c.design.strata",
                "sources.c.design.replicates.columns",
                "sources.c.design.replicates.rscales",
                "sources.d.design.fpc",
                "sources.d.design.fpc",
                "sources.d.design.replicates.columns",
                "sources.d.design.replicates.scale",
            ]
        );
    }

    #[test]
    fn protection_mistakes_are_all_reported() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("x.csv"), "id,sex,age\n1,F,3\n").unwrap();
        std::fs::write(
            d.path().join("s.json"),
            r#"{"fields": [{"name": "id"}, {"name": "sex"}, {"name": "age"}]}"#,
        )
        .unwrap();
        std::fs::write(d.path().join("pt.csv"), "i,j,p\n0,0,1\n1,0,0.5\n1,3,0.4\n").unwrap();
        std::fs::write(d.path().join("cw.csv"), "raw,code\nF,F\n3,Y0T4\n").unwrap();
        let head = format!(
            "version = 1\nid = \"p\"\nreference_date = 2024-12-31\nreference_period = \"2024\"\n\
                    codelists = {:?}\n",
            concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/codelists")
        ) + "[sources.a]\npath = \"x.csv\"\nformat = \"csv\"\nschema = \"s.json\"\n\
                    [sources.a.harmonize]\nSEX = { from = \"sex\", crosswalk = \"cw.csv\" }\n\
                    AGE = { from = \"age\", crosswalk = \"cw.csv\" }\n";
        let head = head.as_str();
        let table = |id: &str, extra: &str| {
            format!(
                "[tables.{id}]\nsource = \"a\"\nunit = \"records\"\ndimensions = [\"SEX\", \"AGE\"]\n{extra}\n"
            )
        };
        let k = keys(spec(
            d.path(),
            &[
                head.to_string(),
                // an unknown method; a seed where it means nothing
                table("t1", "protect = { method = \"blur\" }"),
                table("t2", "protect = { method = \"round\", seed = 3 }"),
                // cell keys without a record id; a perturbation table whose row 1 sums to 0.9
                table(
                    "t3",
                    "protect = { method = \"cell_key\", ptable = \"pt.csv\" }",
                ),
                // a hierarchy naming a column that is not a dimension, and a cycle
                table("t4", "hierarchies = { SEX = \"REGION\" }"),
                table("t5", "hierarchies = { SEX = \"AGE\", AGE = \"SEX\" }"),
                table(
                    "t6",
                    "protect = { method = \"suppress\", publish_grand_total = \"yes\" }",
                ),
            ]
            .concat(),
        ));
        assert_eq!(
            k,
            [
                "tables.t1.protect.method",
                "tables.t2.protect.seed",
                "tables.t3.protect.ptable",
                "tables.t3.protect.method",
                "tables.t4.hierarchies.SEX",
                "tables.t5.hierarchies.AGE",
                "tables.t5.hierarchies.SEX",
                "tables.t6.protect.publish_grand_total",
                // t3 and t6 count the same records as other tables of their source with another
                // protection: linked tables are protected together, so they must agree.
                "tables.t3.protect",
                "tables.t6.protect",
            ]
        );
    }
}
