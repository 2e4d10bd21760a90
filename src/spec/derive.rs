//! The harmonize and tables parts of a spec: which standard columns each source derives (codes
//! through crosswalks, age at the reference date, age bands, code-list lookups, months) and which
//! count tables are built from them. Input: the `[sources.<id>.harmonize]` and `[tables.<id>]`
//! TOML tables, the code lists and crosswalk files they name. Output: [`Derived`] columns and
//! [`TableSpec`]s, or [`SpecIssue`]s for every problem.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;
use toml::{Table, Value};

use super::Ctx;
use super::period::Periods;
use super::schema::{FieldType, TableSchema};
use crate::spec::Banding;

/// A code list: codes (its first column) and their attributes.
#[derive(Debug, Clone, Serialize)]
pub struct CodeList {
    pub name: String,
    pub path: PathBuf,
    #[serde(skip)]
    pub columns: Vec<String>,
    /// code → attribute values, in `columns` order (the code itself first).
    #[serde(skip)]
    pub rows: BTreeMap<String, Vec<String>>,
}

impl CodeList {
    pub fn attribute(&self, code: &str, column: &str) -> Option<&str> {
        let i = self.columns.iter().position(|c| c == column)?;
        self.rows
            .get(code)
            .and_then(|r| r.get(i))
            .map(String::as_str)
    }
}

/// How raw values are normalized before a crosswalk lookup.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Normalize {
    pub trim: bool,
    pub lowercase: bool,
    pub nfc: bool,
}

impl Normalize {
    pub fn apply(&self, s: &str) -> String {
        use unicode_normalization::UnicodeNormalization;
        let s = if self.trim { s.trim() } else { s };
        let s: String = if self.nfc {
            s.nfc().collect()
        } else {
            s.to_string()
        };
        if self.lowercase { s.to_lowercase() } else { s }
    }
}

/// What happens to a value no crosswalk entry maps.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub enum Unmapped {
    /// The row is quarantined with rule `unmapped_code`.
    Quarantine,
    /// The value becomes this code (e.g. `_U`), and is still counted in the run report.
    Code(String),
}

#[derive(Debug, Clone, Serialize)]
pub enum Derivation {
    /// A raw field mapped to a code: through the crosswalk, else (with a code list) the value
    /// itself when, normalized, it equals a code of the list.
    Code {
        from: String,
        crosswalk: Vec<PathBuf>,
        #[serde(skip)]
        map: BTreeMap<String, String>,
        codelist: Option<String>,
        normalize: Normalize,
        unmapped: Unmapped,
    },
    /// Age in completed years from a birth date, else a reported age: at the date in field `at`
    /// of each record (the event: issue, registration, crossing) when given, else at the
    /// reference date. Stock tables take the age at their stock date whatever `at` says.
    ///
    /// With only a `birth_year` (a year field) the age is the age reached during the year of
    /// the event (or of the reference date): its year minus the year of birth, Eurostat's
    /// "age reached" definition for registers that record no birth date.
    Age {
        birth_date: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        birth_year: Option<String>,
        age: Option<String>,
        #[serde(default)]
        at: Option<String>,
    },
    /// A banding of a derived age column.
    Band {
        age: String,
        #[serde(serialize_with = "ser_banding")]
        banding: Banding,
    },
    /// An attribute of a derived code in a code list (a country's M49 sub-region). With
    /// `national`, the country itself is `NAT` (reporting country), kept apart from its region.
    Lookup {
        from: String,
        codelist: String,
        column: String,
        national: Option<String>,
    },
    /// Nationals and foreigners (Eurostat's `NAT` reporting country / `FOR` foreign country) from
    /// a derived country code: `NAT` where it is `national`, `_U` where unknown, else `FOR`.
    Foreign { from: String, national: String },
    /// A record's status on a date, from its history: each step a code and the date field on
    /// which the record entered it (`history = [["ASYLUM_SEEKER", "registration_date"],
    /// ["REFUGEE", "recognition_date"]]`). On a date, the status is the step entered last on
    /// or before it (on a tie, the step listed later); `_Z` before every known step, `_U`
    /// when no step has a date. Taken on the date in field `at` of each record, else on the
    /// reference date; stock tables restate it on their stock date.
    Status {
        history: Vec<(String, String)>,
        at: Option<String>,
        codelist: Option<String>,
    },
    /// `YYYY-MM` of a date field.
    Month { date: String },
    /// `YYYY` of a date field.
    Year { date: String },
}

fn ser_banding<S: serde::Serializer>(b: &Banding, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&b.id)
}

#[derive(Debug, Clone, Serialize)]
pub struct Derived {
    pub name: String,
    pub derivation: Derivation,
}

/// What a table counts. Serialized (Parquet metadata, `explain --format json`) with the spec's
/// own spelling of `kind` (`survey_total`, …).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TableKind {
    /// Every record (unit records/events), or each person once (unit persons: their last record).
    Count,
    /// Persons with a record valid on the reference date (`valid_from <= date <= valid_to`); a
    /// person with several is counted once, in the cell of the record that started last. A
    /// record without `valid_to` is open-ended: valid from its start on (`open_end =
    /// "valid"`, the default: a permanent permit) or not counted (`open_end = "excluded"`).
    Stock {
        valid_from: String,
        /// `None`: the records have no end date (every record is open-ended).
        valid_to: Option<String>,
        open_end_valid: bool,
    },
    /// Persons whose first record ever starts within the period (placed by `start`), in that
    /// first record's cell.
    ///
    /// With `first = "eurostat"` (Regulation 862/2007 art. 6) a record counts when it is valid
    /// for at least 3 months (`end` on or after `start` + 3 months − 1 day, or no `end`) and
    /// no earlier record of the person is valid in the 6 months before its start (every
    /// earlier record ended before `start` − 6 months); each person once per period, in the
    /// cell of their first such record in it.
    Flow {
        start: String,
        /// `Some(end field)`: the Eurostat rule; `None`: first record ever.
        eurostat_end: Option<String>,
    },
    /// Migrations: crossings of the border that change a person's usual residence. Each
    /// person's crossings (`direction` holds the `arrival` or `departure` code, `date` the
    /// crossing date) are read in date order; a crossing is *long-term* when the person then
    /// stays in the country (after an arrival) or away (after a departure) as the `rule` asks,
    /// judged on the crossings up to `observed_to`. Residence follows the long-term crossings:
    /// resident after a long-term arrival, non-resident after a long-term departure, and
    /// before a person's first long-term crossing as their first crossing says (someone first
    /// seen leaving lived here; someone first seen arriving lived abroad). An immigration is a
    /// long-term arrival of a non-resident, an emigration a long-term departure of a resident;
    /// each is placed in the period of its crossing date, in the cell of that crossing's record,
    /// each person once per period. A crossing whose outcome the crossings up to `observed_to`
    /// cannot decide yet is left out and counted (`undetermined` in the manifest), and every
    /// period is provisional until the rule's window after its end has been observed.
    Migration {
        flow: MigrationFlow,
        rule: ResidenceRule,
        /// The crossing date field.
        date: String,
        /// The derived column holding the direction of each crossing.
        direction: String,
        arrival: String,
        departure: String,
        /// The last day the deliveries cover: crossings after it are not read.
        observed_to: chrono::NaiveDate,
        /// A column to add with the duration of the stay (or absence) that begins with the
        /// migration (`residence::DURATIONS`), usable as a dimension.
        #[serde(skip_serializing_if = "Option::is_none")]
        duration: Option<String>,
    },
    /// The estimated population of each cell (the sum of the survey weights), or with a
    /// `variable` the estimated total of that numeric column, with its standard error over the
    /// source's design. Every cell is a domain estimated on the whole design.
    SurveyTotal { variable: Option<String> },
    /// The estimated mean of a numeric column in each cell (a ratio of two weighted totals),
    /// linearized as (y − R̂·x)/X̂. Records where the variable is missing are left out.
    SurveyMean { variable: String },
    /// The estimated share of each `category` code within its cell of the other dimensions (the
    /// same cell with the category at `_T`), as R's `svyby(~category, …, svymean)`.
    SurveyProportion { category: String },
    /// The ratio of the weighted totals of two numeric columns in each cell, as R's
    /// `svyratio(~numerator, ~denominator)`, linearized as (y − R̂·x)/X̂. Records where either
    /// is missing are left out.
    SurveyRatio {
        numerator: String,
        denominator: String,
    },
}

/// Which migrations a [`TableKind::Migration`] table counts.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MigrationFlow {
    /// Long-term arrivals of non-residents.
    Immigration,
    /// Long-term departures of residents.
    Emigration,
}

/// When a crossing is long-term: the duration-of-stay criterion of usual residence.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub enum ResidenceRule {
    /// UN Recommendations on Statistics of International Migration (1998): a stay in the
    /// country (or an absence from it) of at least 12 months without interruption: no crossing
    /// back within 365 days of the crossing.
    #[serde(rename = "12_months")]
    Continuous12,
    /// Stats NZ's outcome-based rule: at least 12 months (365 days) in the country (or away
    /// from it) in total within the 16 months that follow the crossing (days from the crossing
    /// date up to the same date 16 calendar months later, excluded).
    #[serde(rename = "12_of_16")]
    TwelveOfSixteen,
}

impl ResidenceRule {
    /// Months after its end a period's outcomes are known: its window.
    pub fn window_months(self) -> u32 {
        match self {
            ResidenceRule::Continuous12 => 12,
            ResidenceRule::TwelveOfSixteen => 16,
        }
    }
}

impl TableKind {
    /// The kind's name as a spec writes it (`kind = "..."`), and as every output spells it.
    pub fn name(&self) -> &'static str {
        match self {
            TableKind::Count => "count",
            TableKind::Stock { .. } => "stock",
            TableKind::Flow { .. } => "flow",
            TableKind::Migration { .. } => "migration",
            TableKind::SurveyTotal { .. } => "survey_total",
            TableKind::SurveyMean { .. } => "survey_mean",
            TableKind::SurveyProportion { .. } => "survey_proportion",
            TableKind::SurveyRatio { .. } => "survey_ratio",
        }
    }

    /// Months after a period's end it stays provisional: the pipeline's lag, or for migration
    /// tables at least the rule's window (outcomes are not known before it has passed).
    pub fn provisional_months(&self, pipeline: u32) -> u32 {
        match self {
            TableKind::Migration { rule, .. } => pipeline.max(rule.window_months()),
            _ => pipeline,
        }
    }

    pub fn is_survey(&self) -> bool {
        matches!(
            self,
            TableKind::SurveyTotal { .. }
                | TableKind::SurveyMean { .. }
                | TableKind::SurveyProportion { .. }
                | TableKind::SurveyRatio { .. }
        )
    }
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    Persons,
    Records,
    Events,
}

/// What a table's published values measure. Every writer (SDMX `UNIT_MEASURE`, the report's
/// number format) reads it from here, so a new kind or unit must say what it measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Measure {
    Persons,
    /// A survey's weighted total: an estimate of persons.
    EstimatedPersons,
    Events,
    Records,
    Share,
    Mean,
    Ratio,
}

impl Measure {
    /// SDMX `UNIT_MEASURE` code and label.
    pub fn sdmx(self) -> (&'static str, &'static str) {
        match self {
            Measure::Persons => ("PS", "Persons"),
            Measure::EstimatedPersons => ("PS", "Persons (estimated)"),
            Measure::Events => ("EVENTS", "Events"),
            Measure::Records => ("RECORDS", "Records"),
            Measure::Share => ("SHARE", "Share (0 to 1)"),
            Measure::Mean => ("MEAN", "Mean of the variable"),
            Measure::Ratio => ("RATIO", "Ratio of two totals"),
        }
    }

    /// Whether the values are whole numbers (counts and estimated totals are shown so).
    pub fn whole(self) -> bool {
        match self {
            Measure::Persons | Measure::EstimatedPersons | Measure::Events | Measure::Records => {
                true
            }
            Measure::Share | Measure::Mean | Measure::Ratio => false,
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TableSpec {
    pub id: String,
    pub title: Option<String>,
    pub source: String,
    pub kind: TableKind,
    pub unit: Unit,
    pub dimensions: Vec<String>,
    /// Keep only rows whose column holds one of these codes.
    pub filter: Option<(String, BTreeSet<String>)>,
    /// The margin combinations to publish, as the dimensions kept in each (the others are `_T`);
    /// `None` publishes all 2^d.
    pub grouping_sets: Option<Vec<Vec<String>>>,
    /// Declared hierarchies between dimensions, as (child, parent): every code of the child
    /// lies within one code of the parent (country within region, 5-year band within broad
    /// band). The table's cube then holds the hierarchy's relations (a parent's cell is the sum
    /// of its children's), so suppression protects along them; the nesting is checked on the
    /// data before anything is published.
    pub hierarchies: Vec<(String, String)>,
    /// The reference periods: one partition each (see `spec::period`).
    pub periods: super::period::Periods,
    /// Disclosure control of a count table (`[tables.<id>.protect]`); a count table without it
    /// stays in the restricted tier. Survey tables are protected by their design's n and CV rules.
    pub protect: Option<Protect>,
}

impl TableSpec {
    /// What the table's values measure (see [`Measure`]).
    pub fn measure(&self) -> Measure {
        match (&self.kind, self.unit) {
            (TableKind::SurveyProportion { .. }, _) => Measure::Share,
            (TableKind::SurveyMean { .. }, _) => Measure::Mean,
            (TableKind::SurveyRatio { .. }, _) => Measure::Ratio,
            (TableKind::SurveyTotal { .. }, _) => Measure::EstimatedPersons,
            (
                TableKind::Count
                | TableKind::Stock { .. }
                | TableKind::Flow { .. }
                | TableKind::Migration { .. },
                unit,
            ) => match unit {
                Unit::Persons => Measure::Persons,
                Unit::Events => Measure::Events,
                Unit::Records => Measure::Records,
            },
        }
    }
}

/// How a count table is protected before it is published.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Protect {
    pub method: ProtectMethod,
    /// Cells with 0 < contributors < `threshold` need protection: primary-suppressed under
    /// `suppress`, audited (never pinned) under the perturbative methods; on a revision, a cell
    /// whose change since an earlier publication is that small needs it too.
    pub threshold: u64,
    /// The audit's requirement: the interval of values an intruder cannot rule out for a cell
    /// that needs protection, given every public table of the release and every earlier
    /// release, is at least this wide (default: the threshold under `suppress`, 1 — never
    /// pinned — under the perturbative methods).
    pub protection_range: f64,
    /// Rounding base.
    pub base: u64,
    /// Suppression: never choose the grand total for secondary suppression (a total published
    /// elsewhere); a cell nothing else protects then fails the audit.
    pub publish_grand_total: bool,
    /// Cell key method: the perturbation table (`i,j,p` CSV, as R's `ptable` package writes);
    /// `None` is the built-in default (see `protect::cellkey`).
    pub ptable: Option<std::path::PathBuf>,
    /// Suppression: how secondary cells are chosen (`gauss`, the default, or `hypercube`).
    pub secondary: crate::spec::Secondary,
    /// What a later release does with a period already published (see [`Revisions`]).
    pub revisions: Revisions,
}

/// What a release does with a reference period an earlier release already published.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Revisions {
    /// Publish it again exactly as it was (the default): a record added to or corrected in a
    /// published period changes nothing public until a revision (`migstat run --revise`);
    /// the manifest counts the cells waiting for it.
    Freeze,
    /// Recompute it in every release, as a revision: cells suppressed before stay suppressed,
    /// and a cell whose change since any earlier publication is below the threshold is
    /// protected like a small cell (or, perturbed, keeps its published value).
    EveryRelease,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ProtectMethod {
    /// Threshold rule, then secondary suppression over the linked tables' cells, then the
    /// audit.
    Suppress,
    /// Every finest cell rounded to the nearest multiple of `base`; margins are their sums.
    Round,
    /// Every finest cell rounded up or down to a multiple of `base`, up with probability
    /// (n mod base)/base from a keyed hash (the protection key); margins are their sums.
    RandomRound,
    /// Cell key method on the finest cells (record keys from the protection key); margins are
    /// their sums.
    CellKey,
}

impl ProtectMethod {
    pub fn name(self) -> &'static str {
        match self {
            ProtectMethod::Suppress => "suppress",
            ProtectMethod::Round => "round",
            ProtectMethod::RandomRound => "random_round",
            ProtectMethod::CellKey => "cell_key",
        }
    }
}

const DERIVE_KEYS: &[&str] = &[
    "from",
    "crosswalk",
    "codelist",
    "normalize",
    "unmapped",
    "birth_date",
    "birth_year",
    "age",
    "at",
    "history",
    "banding",
    "from_age",
    "lookup",
    "column",
    "national",
    "foreign",
    "month",
    "year",
];
const TABLE_KEYS: &[&str] = &[
    "title",
    "source",
    "kind",
    "unit",
    "dimensions",
    "filter",
    "valid_from",
    "valid_to",
    "open_end",
    "start",
    "first",
    "end",
    "period",
    "grouping_sets",
    "hierarchies",
    "variable",
    "category",
    "numerator",
    "denominator",
    "flow",
    "rule",
    "crossing_date",
    "direction",
    "arrival",
    "departure",
    "observed_to",
    "duration",
    "protect",
];
const PROTECT_KEYS: &[&str] = &[
    "method",
    "threshold",
    "protection_range",
    "base",
    "seed",
    "publish_grand_total",
    "ptable",
    "secondary",
    "revisions",
];

/// Load every code list in `dir` (each `*.csv` but the age bandings), and the bandings.
pub(crate) fn load_codelists(
    dir: &Path,
    cx: &mut Ctx<'_>,
) -> (BTreeMap<String, CodeList>, Vec<Banding>) {
    let mut lists = BTreeMap::new();
    let mut bandings = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        cx.push(
            "codelists",
            format!("cannot read the code-list directory {}", dir.display()),
        );
        return (lists, bandings);
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .collect();
    paths.sort();
    for path in paths {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name == "age_bands" {
            match Banding::load_all(&path) {
                Ok(b) => bandings = b,
                Err(e) => cx.push("codelists", e.to_string()),
            }
            continue;
        }
        match read_table(&path) {
            Ok((columns, records)) => {
                let rows = records
                    .into_iter()
                    .filter_map(|r| Some((r.first()?.clone(), r)))
                    .collect();
                lists.insert(
                    name.clone(),
                    CodeList {
                        name,
                        path,
                        columns,
                        rows,
                    },
                );
            }
            Err(e) => cx.push("codelists", format!("{}: {e}", path.display())),
        }
    }
    (lists, bandings)
}

fn read_table(path: &Path) -> Result<(Vec<String>, Vec<Vec<String>>), String> {
    let mut rdr = csv::Reader::from_path(path).map_err(|e| e.to_string())?;
    let header = rdr
        .headers()
        .map_err(|e| e.to_string())?
        .iter()
        .map(str::to_string)
        .collect();
    let mut rows = Vec::new();
    for r in rdr.records() {
        rows.push(
            r.map_err(|e| e.to_string())?
                .iter()
                .map(str::to_string)
                .collect(),
        );
    }
    Ok((header, rows))
}

/// Compile `[sources.<id>.harmonize]`. Derived columns may read other derived columns, in any
/// key order: each is compiled after what it reads.
pub(crate) fn compile_harmonize(
    t: &Table,
    path: &str,
    base: &Path,
    schema: Option<&TableSchema>,
    lists: &BTreeMap<String, CodeList>,
    bandings: &[Banding],
    cx: &mut Ctx<'_>,
) -> Vec<Derived> {
    let mut out: Vec<Derived> = Vec::new();
    let field_ok = |name: &str, want_date: Option<bool>, key: &str, cx: &mut Ctx<'_>| {
        let Some(s) = schema else { return };
        match s.field(name) {
            None => cx.push(key, format!("field `{name}` is not in the source's schema")),
            Some(f) => {
                let is_date = matches!(f.field_type, FieldType::Date(_));
                if want_date == Some(true) && !is_date {
                    cx.push(key, format!("field `{name}` must be a date field"));
                }
                if want_date == Some(false) && !matches!(f.field_type, FieldType::Integer) {
                    cx.push(key, format!("field `{name}` must be an integer field"));
                }
            }
        }
    };
    // Columns derived from raw fields first, then each one derived from another derived column
    // (a band of an age, a lookup or `foreign` of a code) once that column is derived, so that
    // chains (a lookup of a lookup) work whatever order the TOML table lists them in; one that
    // reads a column never derived comes last and is reported where it is compiled.
    let reads = |v: &Value| -> Option<String> {
        let d = v.as_table()?;
        ["lookup", "foreign", "from_age"]
            .iter()
            .find_map(|k| d.get(*k).and_then(Value::as_str).map(str::to_string))
            // A band of "the" age: any age column, all derived from raw fields.
            .or_else(|| d.contains_key("banding").then(String::new))
    };
    let mut ordered: Vec<(&String, &Value)> =
        t.iter().filter(|(_, v)| reads(v).is_none()).collect();
    let mut pending: Vec<(&String, &Value)> =
        t.iter().filter(|(_, v)| reads(v).is_some()).collect();
    while !pending.is_empty() {
        let (ready, wait): (Vec<_>, Vec<_>) = pending.into_iter().partition(|(_, v)| {
            let r = reads(v).unwrap_or_default();
            r.is_empty() || !t.contains_key(&r) || ordered.iter().any(|(n, _)| **n == r)
        });
        if ready.is_empty() {
            ordered.extend(wait);
            break;
        }
        ordered.extend(ready);
        pending = wait;
    }
    for (name, v) in ordered {
        let p = format!("{path}.{name}");
        if name.starts_with(crate::vocab::RAW_PREFIX)
            || name.starts_with('_')
            || out.iter().any(|d| d.name.eq_ignore_ascii_case(name))
        {
            cx.push(&p, format!("derived column names may not start with `{}` or `_`, nor repeat another's name in any case", crate::vocab::RAW_PREFIX));
        }
        let Value::Table(d) = v else {
            cx.push(&p, "must be a table, e.g. { from = \"sexe\", crosswalk = \"...\", codelist = \"sex\" }");
            continue;
        };
        cx.unknown_keys(d, DERIVE_KEYS, &p);
        let pp = format!("{p}.");
        let derived_before = |col: &str| out.iter().find(|x| x.name == col);
        let derivation = if d.contains_key("from") {
            let from = cx.str(d, "from", &pp, true).unwrap_or_default().to_string();
            field_ok(&from, None, &format!("{pp}from"), cx);
            let normalize = match d.get("normalize") {
                None => Normalize {
                    trim: true,
                    lowercase: true,
                    nfc: true,
                },
                Some(Value::Array(a)) => {
                    let steps: Vec<&str> = a.iter().filter_map(Value::as_str).collect();
                    if steps.len() != a.len()
                        || steps.iter().any(|s| !["trim", "lower", "nfc"].contains(s))
                    {
                        cx.push(
                            format!("{pp}normalize"),
                            "must list steps among \"trim\", \"lower\", \"nfc\"",
                        );
                    }
                    Normalize {
                        trim: steps.contains(&"trim"),
                        lowercase: steps.contains(&"lower"),
                        nfc: steps.contains(&"nfc"),
                    }
                }
                Some(_) => {
                    cx.push(
                        format!("{pp}normalize"),
                        "must be a list, e.g. [\"trim\", \"lower\", \"nfc\"]",
                    );
                    Normalize {
                        trim: true,
                        lowercase: true,
                        nfc: true,
                    }
                }
            };
            let codelist = cx.str(d, "codelist", &pp, false).map(str::to_string);
            if let Some(c) = &codelist
                && !lists.contains_key(c)
            {
                cx.push(
                    format!("{pp}codelist"),
                    format!(
                        "no code list `{c}` (known: {})",
                        lists.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                );
            }
            let mut map = BTreeMap::new();
            let crosswalk: Vec<PathBuf> = match d.get("crosswalk") {
                None => Vec::new(),
                Some(Value::String(c)) => vec![super::clean_path(&base.join(c))],
                Some(Value::Array(a)) if a.iter().all(Value::is_str) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|c| super::clean_path(&base.join(c)))
                    .collect(),
                Some(_) => {
                    cx.push(
                        format!("{pp}crosswalk"),
                        "must be a file or a list of files",
                    );
                    Vec::new()
                }
            };
            for cw in &crosswalk {
                match read_table(cw) {
                    Err(e) => cx.push(
                        format!("{pp}crosswalk"),
                        format!("cannot read {}: {e}", cw.display()),
                    ),
                    Ok((cols, rows)) => {
                        let (Some(ri), Some(ci)) = (
                            cols.iter().position(|c| c == "raw"),
                            cols.iter().position(|c| c == "code"),
                        ) else {
                            cx.push(
                                format!("{pp}crosswalk"),
                                format!("{} needs columns `raw` and `code`", cw.display()),
                            );
                            continue;
                        };
                        for (i, r) in rows.iter().enumerate() {
                            let key = normalize.apply(&r[ri]);
                            let code = r[ci].clone();
                            if let Some(list) = codelist.as_ref().and_then(|c| lists.get(c))
                                && !list.rows.contains_key(&code)
                            {
                                cx.push(
                                    format!("{pp}crosswalk"),
                                    format!(
                                        "{} line {}: `{code}` is not a code of {}",
                                        cw.display(),
                                        i + 2,
                                        list.name
                                    ),
                                );
                            }
                            match map.get(&key) {
                                Some(prev) if prev != &code => cx.push(
                                    format!("{pp}crosswalk"),
                                    format!("{} line {}: `{}` maps to both `{prev}` and `{code}` once normalized", cw.display(), i + 2, r[ri]),
                                ),
                                _ => {
                                    map.insert(key, code);
                                }
                            }
                        }
                    }
                }
            }
            if crosswalk.is_empty() && codelist.is_none() {
                cx.push(
                    &p,
                    "a code column needs a `crosswalk`, a `codelist`, or both",
                );
            }
            let unmapped = match cx.str(d, "unmapped", &pp, false) {
                None | Some("quarantine") => Unmapped::Quarantine,
                Some(code) => Unmapped::Code(code.to_string()),
            };
            Derivation::Code {
                from,
                crosswalk,
                map,
                codelist,
                normalize,
                unmapped,
            }
        } else if d.contains_key("history") {
            let codelist = cx.str(d, "codelist", &pp, false).map(str::to_string);
            if let Some(c) = &codelist
                && !lists.contains_key(c)
            {
                cx.push(
                    format!("{pp}codelist"),
                    format!("no code list `{}`", super::cap(c)),
                );
            }
            let mut history = Vec::new();
            let steps = d.get("history").and_then(Value::as_array);
            for (i, step) in steps.into_iter().flatten().enumerate() {
                let pair = step.as_array().and_then(|a| match a.as_slice() {
                    [Value::String(c), Value::String(f)] => Some((c.clone(), f.clone())),
                    _ => None,
                });
                let Some((code, field)) = pair else {
                    cx.push(
                        format!("{pp}history"),
                        format!("step {}: write [\"<code>\", \"<date field>\"]", i + 1),
                    );
                    continue;
                };
                field_ok(&field, Some(true), &format!("{pp}history"), cx);
                if let Some(l) = codelist.as_ref().and_then(|c| lists.get(c))
                    && !l.rows.contains_key(&code)
                {
                    cx.push(
                        format!("{pp}history"),
                        format!(
                            "`{}` is not a code of code list `{}`",
                            super::cap(&code),
                            codelist.as_deref().unwrap_or_default()
                        ),
                    );
                }
                history.push((code, field));
            }
            if history.is_empty() {
                cx.push(
                    format!("{pp}history"),
                    "required: the steps in order, e.g. [[\"ASYLUM_SEEKER\", \"registration_date\"], [\"REFUGEE\", \"recognition_date\"]]",
                );
            }
            let at = cx.str(d, "at", &pp, false).map(str::to_string);
            if let Some(a) = &at {
                field_ok(a, Some(true), &format!("{pp}at"), cx);
            }
            Derivation::Status {
                history,
                at,
                codelist,
            }
        } else if ["birth_date", "birth_year", "age", "at"]
            .iter()
            .any(|k| d.contains_key(*k))
        {
            let birth_date = cx.str(d, "birth_date", &pp, false).map(str::to_string);
            let birth_year = cx.str(d, "birth_year", &pp, false).map(str::to_string);
            if let Some(y) = &birth_year {
                let is_year = schema
                    .and_then(|s| s.field(y))
                    .is_some_and(|f| matches!(f.field_type, FieldType::Year | FieldType::Integer));
                if schema.is_some() && !is_year {
                    cx.push(
                        format!("{pp}birth_year"),
                        format!("field `{}` must be a year field", super::cap(y)),
                    );
                }
                if birth_date.is_some() {
                    cx.push(
                        format!("{pp}birth_year"),
                        "give a `birth_date` or a `birth_year`, not both",
                    );
                }
            }
            let age = cx.str(d, "age", &pp, false).map(str::to_string);
            if let Some(b) = &birth_date {
                field_ok(b, Some(true), &format!("{pp}birth_date"), cx);
            }
            if let Some(a) = &age {
                field_ok(a, Some(false), &format!("{pp}age"), cx);
            }
            let at = cx.str(d, "at", &pp, false).map(str::to_string);
            if let Some(a) = &at {
                field_ok(a, Some(true), &format!("{pp}at"), cx);
                if birth_date.is_none() && birth_year.is_none() {
                    cx.push(
                        format!("{pp}at"),
                        "`at` needs a `birth_date` or a `birth_year` (a reported age is already at its own date)",
                    );
                }
            }
            Derivation::Age {
                birth_date,
                birth_year,
                age,
                at,
            }
        } else if d.contains_key("banding") {
            let id = cx
                .str(d, "banding", &pp, true)
                .unwrap_or_default()
                .to_string();
            let age = cx
                .str(d, "from_age", &pp, false)
                .map(str::to_string)
                .or_else(|| {
                    out.iter()
                        .find(|x| matches!(x.derivation, Derivation::Age { .. }))
                        .map(|x| x.name.clone())
                });
            let Some(age) = age else {
                cx.push(&p, "a banding needs an age column derived before it (e.g. AGE = { birth_date = \"...\" })");
                continue;
            };
            match bandings.iter().find(|b| b.id == id) {
                Some(b) => Derivation::Band {
                    age,
                    banding: b.clone(),
                },
                None => {
                    cx.push(
                        format!("{pp}banding"),
                        format!("no banding `{id}` in age_bands.csv"),
                    );
                    continue;
                }
            }
        } else if d.contains_key("lookup") {
            let from = cx
                .str(d, "lookup", &pp, true)
                .unwrap_or_default()
                .to_string();
            let codelist = cx
                .str(d, "codelist", &pp, true)
                .unwrap_or_default()
                .to_string();
            let column = cx
                .str(d, "column", &pp, true)
                .unwrap_or_default()
                .to_string();
            if derived_before(&from).is_none() {
                cx.push(
                    format!("{pp}lookup"),
                    format!("`{from}` is not a column derived before this one"),
                );
            }
            match lists.get(&codelist) {
                None => cx.push(
                    format!("{pp}codelist"),
                    format!("no code list `{codelist}`"),
                ),
                Some(l) if !l.columns.contains(&column) => cx.push(
                    format!("{pp}column"),
                    format!(
                        "code list `{codelist}` has no column `{column}` ({})",
                        l.columns.join(", ")
                    ),
                ),
                _ => {}
            }
            let national = national_code(d, &codelist, &pp, lists, cx);
            Derivation::Lookup {
                from,
                codelist,
                column,
                national,
            }
        } else if d.contains_key("foreign") {
            let from = cx
                .str(d, "foreign", &pp, true)
                .unwrap_or_default()
                .to_string();
            if derived_before(&from).is_none() {
                cx.push(
                    format!("{pp}foreign"),
                    format!("`{from}` is not a column derived before this one"),
                );
            }
            let national = cx
                .str(d, "national", &pp, true)
                .unwrap_or_default()
                .to_string();
            Derivation::Foreign { from, national }
        } else if d.contains_key("month") || d.contains_key("year") {
            let key = if d.contains_key("month") {
                "month"
            } else {
                "year"
            };
            let date = cx.str(d, key, &pp, true).unwrap_or_default().to_string();
            field_ok(&date, Some(true), &format!("{pp}{key}"), cx);
            if key == "month" {
                Derivation::Month { date }
            } else {
                Derivation::Year { date }
            }
        } else {
            cx.push(&p, "say how to derive it: `from` (codes), `birth_date`/`birth_year`/`age`, `banding`, `lookup`, `foreign`, `history`, `month` or `year`");
            continue;
        };
        out.push(Derived {
            name: name.clone(),
            derivation,
        });
    }
    out
}

/// A lookup's `national` code: a code of its code list.
fn national_code(
    d: &Table,
    codelist: &str,
    pp: &str,
    lists: &BTreeMap<String, CodeList>,
    cx: &mut Ctx<'_>,
) -> Option<String> {
    let code = cx.str(d, "national", pp, false)?.to_string();
    if lists
        .get(codelist)
        .is_some_and(|l| !l.rows.contains_key(&code))
    {
        cx.push(
            format!("{pp}national"),
            format!(
                "`{}` is not a code of code list `{codelist}`",
                super::cap(&code)
            ),
        );
    }
    Some(code)
}

/// What a table definition needs to know of its source.
pub(crate) struct SourceView {
    pub id: String,
    pub schema: TableSchema,
    pub derived: Vec<String>,
    pub has_person: bool,
    pub has_record: bool,
    pub has_design: bool,
    /// The source's default `period` (for its tables without one).
    pub period: Option<Value>,
    /// The pipeline's defaults: a stock's date, the period of everything else.
    pub reference_date: Option<chrono::NaiveDate>,
    pub reference_period: Option<super::Period>,
}

/// Compile `[tables.<id>]` against the sources' derived columns and schemas.
pub(crate) fn compile_table(
    id: &str,
    t: &Table,
    sources: &[SourceView],
    base: &Path,
    cx: &mut Ctx<'_>,
) -> Option<TableSpec> {
    let p = format!("tables.{id}");
    let pp = format!("{p}.");
    cx.unknown_keys(t, TABLE_KEYS, &p);
    let source = cx.str(t, "source", &pp, true)?.to_string();
    let Some(SourceView {
        schema,
        derived,
        has_person,
        has_record,
        has_design,
        period: source_period,
        reference_date,
        reference_period,
        ..
    }) = sources.iter().find(|s| s.id == source)
    else {
        cx.push(format!("{pp}source"), format!("no source `{source}`"));
        return None;
    };
    let is_date = |f: &str| {
        schema
            .field(f)
            .is_some_and(|f| matches!(f.field_type, FieldType::Date(_)))
    };
    let date_field = |key: &str, cx: &mut Ctx<'_>| -> String {
        let f = cx.str(t, key, &pp, true).unwrap_or_default().to_string();
        if !f.is_empty() && !is_date(&f) {
            cx.push(
                format!("{pp}{key}"),
                format!("`{f}` is not a date field of source `{source}`"),
            );
        }
        f
    };
    // A numeric column of the source: a derived one or a numeric delivered field.
    let numeric_column = |key: &str, required: bool, cx: &mut Ctx<'_>| -> Option<String> {
        let name = cx.str(t, key, &pp, required)?.to_string();
        let numeric = |f: &super::schema::Field| {
            matches!(
                f.field_type,
                FieldType::Integer | FieldType::Number | FieldType::Year
            )
        };
        if !derived.contains(&name) && !schema.field(&name).is_some_and(numeric) {
            cx.push(
                format!("{pp}{key}"),
                format!(
                    "`{name}` is neither a derived column nor a numeric field of source `{source}`"
                ),
            );
        }
        Some(name)
    };
    let kind = match cx.str(t, "kind", &pp, false).unwrap_or("count") {
        "count" => TableKind::Count,
        "stock" => TableKind::Stock {
            valid_from: date_field("valid_from", cx),
            valid_to: t
                .contains_key("valid_to")
                .then(|| date_field("valid_to", cx)),
            open_end_valid: match cx.str(t, "open_end", &pp, false) {
                None | Some("valid") => true,
                Some("excluded") if !t.contains_key("valid_to") => {
                    cx.push(
                        format!("{pp}open_end"),
                        "without `valid_to` every record is open-ended: `excluded` would count nobody",
                    );
                    false
                }
                Some("excluded") => false,
                Some(other) => {
                    cx.push(
                        format!("{pp}open_end"),
                        format!("`{other}` is not an open-end rule (valid or excluded)"),
                    );
                    true
                }
            },
        },
        "survey_total" => TableKind::SurveyTotal {
            variable: numeric_column("variable", false, cx),
        },
        "survey_mean" => TableKind::SurveyMean {
            variable: numeric_column("variable", true, cx).unwrap_or_default(),
        },
        "survey_ratio" => TableKind::SurveyRatio {
            numerator: numeric_column("numerator", true, cx).unwrap_or_default(),
            denominator: numeric_column("denominator", true, cx).unwrap_or_default(),
        },
        "survey_proportion" => {
            let category = cx
                .str(t, "category", &pp, true)
                .unwrap_or_default()
                .to_string();
            let listed = t
                .get("dimensions")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|v| v.as_str() == Some(category.as_str())));
            if !category.is_empty() && !listed {
                cx.push(
                    format!("{pp}category"),
                    format!("`{category}` must be one of the table's dimensions"),
                );
            }
            TableKind::SurveyProportion { category }
        }
        "flow" => {
            let eurostat_end = match cx.str(t, "first", &pp, false) {
                None | Some("ever") => None,
                Some("eurostat") => Some(date_field("end", cx)),
                Some(other) => {
                    cx.push(
                        format!("{pp}first"),
                        format!("`{other}` is not a first-record rule (ever or eurostat)"),
                    );
                    None
                }
            };
            TableKind::Flow {
                start: date_field("start", cx),
                eurostat_end,
            }
        }
        "migration" => {
            let flow = match cx.str(t, "flow", &pp, true) {
                Some("immigration") | None => MigrationFlow::Immigration,
                Some("emigration") => MigrationFlow::Emigration,
                Some(other) => {
                    cx.push(
                        format!("{pp}flow"),
                        format!(
                            "`{}` is not a migration flow (immigration or emigration)",
                            super::cap(other)
                        ),
                    );
                    MigrationFlow::Immigration
                }
            };
            let rule = match cx.str(t, "rule", &pp, true) {
                Some("12_of_16") | None => ResidenceRule::TwelveOfSixteen,
                Some("12_months") => ResidenceRule::Continuous12,
                Some(other) => {
                    cx.push(
                        format!("{pp}rule"),
                        format!(
                            "`{}` is not a residence rule (12_months: 12 months without interruption; 12_of_16: 12 of the next 16 months)",
                            super::cap(other)
                        ),
                    );
                    ResidenceRule::TwelveOfSixteen
                }
            };
            let direction = cx
                .str(t, "direction", &pp, true)
                .unwrap_or_default()
                .to_string();
            if !direction.is_empty() && !derived.contains(&direction) {
                cx.push(
                    format!("{pp}direction"),
                    format!(
                        "`{}` is not a column derived by source `{source}`",
                        super::cap(&direction)
                    ),
                );
            }
            let code = |key: &str, default: &str, cx: &mut Ctx<'_>| {
                cx.str(t, key, &pp, false).unwrap_or(default).to_string()
            };
            let arrival = code("arrival", "IN", cx);
            let departure = code("departure", "OUT", cx);
            if arrival == departure {
                cx.push(
                    format!("{pp}departure"),
                    "arrivals and departures need different codes",
                );
            }
            let observed_to = match t.get("observed_to") {
                None => reference_date.unwrap_or(chrono::NaiveDate::MIN),
                Some(v) => cx
                    .date(v, &format!("{pp}observed_to"))
                    .unwrap_or(chrono::NaiveDate::MIN),
            };
            let duration = cx.str(t, "duration", &pp, false).map(str::to_string);
            if let Some(d) = duration.as_ref().filter(|d| derived.contains(*d)) {
                cx.push(
                    format!("{pp}duration"),
                    format!(
                        "`{}` is a column derived by source `{source}`: name the duration column otherwise",
                        super::cap(d)
                    ),
                );
            }
            TableKind::Migration {
                duration,
                flow,
                rule,
                date: date_field("crossing_date", cx),
                direction,
                arrival,
                departure,
                observed_to,
            }
        }
        other => {
            cx.push(
                format!("{pp}kind"),
                format!(
                    "`{other}` is not a kind (count, stock, flow, migration, survey_total, survey_mean, survey_proportion or survey_ratio)"
                ),
            );
            TableKind::Count
        }
    };
    let unit = match cx.str(t, "unit", &pp, true).unwrap_or("records") {
        "persons" => Unit::Persons,
        "records" => Unit::Records,
        "events" => Unit::Events,
        other => {
            cx.push(
                format!("{pp}unit"),
                format!("`{other}` is not a unit (persons, records or events)"),
            );
            Unit::Records
        }
    };
    let periods = table_periods(
        t,
        &kind,
        &pp,
        source_period.as_ref(),
        &is_date,
        &source,
        cx,
        (*reference_date, *reference_period),
    );
    let survey = kind.is_survey();
    if survey && !has_design {
        cx.push(
            &p,
            format!("survey estimates need a [sources.{source}.design] (weight, strata, psu)"),
        );
    }
    if !survey && (unit == Unit::Persons || kind != TableKind::Count) && !has_person {
        cx.push(
            &p,
            format!("persons, stocks and flows need `person_id` on source `{source}`"),
        );
    }
    if kind != TableKind::Count && !survey && unit != Unit::Persons {
        // Stocks, flows and survey totals all count persons.
        cx.push(
            format!("{pp}unit"),
            "stocks and flows count persons: use unit = \"persons\"",
        );
    }
    let dimensions: Vec<String> = match t.get("dimensions").and_then(Value::as_array) {
        Some(a) if a.iter().all(Value::is_str) && !a.is_empty() => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => {
            cx.push(
                format!("{pp}dimensions"),
                "required: a non-empty list of derived column names",
            );
            Vec::new()
        }
    };
    let added = match &kind {
        TableKind::Migration { duration, .. } => duration.clone(),
        _ => None,
    };
    for d in &dimensions {
        if !derived.contains(d) && added.as_ref() != Some(d) {
            cx.push(format!("{pp}dimensions"), format!("`{d}` is not a column derived by source `{source}` (its [sources.{source}.harmonize] has: {})", derived.join(", ")));
        }
    }
    if dimensions.len() > crate::vocab::MAX_DIMENSIONS {
        cx.push(
            format!("{pp}dimensions"),
            format!(
                "at most {0} dimensions (2^{0} margin combinations)",
                crate::vocab::MAX_DIMENSIONS
            ),
        );
    }
    let filter = match t.get("filter") {
        None => None,
        Some(Value::Table(f)) => {
            cx.unknown_keys(f, &["column", "in"], &format!("{pp}filter"));
            let column = cx
                .str(f, "column", &format!("{pp}filter."), true)
                .unwrap_or_default()
                .to_string();
            if !derived.contains(&column) {
                cx.push(
                    format!("{pp}filter.column"),
                    format!("`{column}` is not a derived column of source `{source}`"),
                );
            }
            let values: BTreeSet<String> = f
                .get("in")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            if values.is_empty() {
                cx.push(
                    format!("{pp}filter.in"),
                    "required: a non-empty list of codes",
                );
            }
            Some((column, values))
        }
        Some(_) => {
            cx.push(
                format!("{pp}filter"),
                "must be a table { column = \"...\", in = [...] }",
            );
            None
        }
    };
    let mut hierarchies = Vec::new();
    match t.get("hierarchies") {
        None => {}
        Some(Value::Table(h)) => {
            for (child, parent) in h {
                let Some(parent) = parent.as_str() else {
                    cx.push(
                        format!("{pp}hierarchies.{child}"),
                        "must name the parent dimension, e.g. CITIZENSHIP = \"CITIZENSHIP_REGION\"",
                    );
                    continue;
                };
                for d in [child.as_str(), parent] {
                    if !dimensions.iter().any(|x| x == d) {
                        cx.push(
                            format!("{pp}hierarchies.{child}"),
                            format!("`{d}` is not one of the table's dimensions"),
                        );
                    }
                }
                if child == parent {
                    cx.push(
                        format!("{pp}hierarchies.{child}"),
                        "a dimension cannot lie within itself",
                    );
                }
                hierarchies.push((child.clone(), parent.to_string()));
            }
            // No cycles: following parents from any dimension must end.
            for (child, _) in &hierarchies {
                let mut at = child.as_str();
                for _ in 0..=hierarchies.len() {
                    match hierarchies.iter().find(|(c, _)| c == at) {
                        Some((_, p)) => at = p,
                        None => break,
                    }
                    if at == child {
                        cx.push(
                            format!("{pp}hierarchies.{child}"),
                            "the hierarchies form a cycle",
                        );
                        break;
                    }
                }
            }
        }
        Some(_) => cx.push(
            format!("{pp}hierarchies"),
            "must be a table of child = \"parent\" dimensions, e.g. { CITIZENSHIP = \"CITIZENSHIP_REGION\" }",
        ),
    }
    let grouping_sets = match t.get("grouping_sets") {
        None => None,
        Some(Value::Array(sets)) => {
            let mut out = Vec::new();
            for set in sets {
                let names: Option<Vec<String>> = set.as_array().map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                });
                match names {
                    Some(n) if n.iter().all(|d| dimensions.contains(d)) => out.push(n),
                    _ => cx.push(
                        format!("{pp}grouping_sets"),
                        "each grouping set is a list of the table's dimensions, e.g. [[\"SEX\", \"AGE_GROUP\"], []]",
                    ),
                }
            }
            Some(out)
        }
        Some(_) => {
            cx.push(
                format!("{pp}grouping_sets"),
                "must be a list of lists of dimensions",
            );
            None
        }
    };
    let protect = match t.get("protect") {
        None => None,
        Some(Value::Table(pt)) if !survey => {
            let p = protect(pt, &format!("{pp}protect"), base, cx);
            // Record keys come from each record's stable identifier: the person's for tables of
            // persons, the record's otherwise.
            if p.as_ref()
                .is_some_and(|p| p.method == ProtectMethod::CellKey)
            {
                let (has, key) = if unit == Unit::Persons {
                    (*has_person, "person_id")
                } else {
                    (*has_record, "record_id")
                };
                if !has {
                    cx.push(
                        format!("{pp}protect.method"),
                        format!("the cell key method needs each record's stable identifier: declare `{key}` in [sources.{source}]"),
                    );
                }
            }
            p
        }
        Some(Value::Table(_)) => {
            cx.push(
                format!("{pp}protect"),
                "survey tables are protected by their design's min_n, cv_caution and cv_suppress; remove `protect`",
            );
            None
        }
        Some(_) => {
            cx.push(
                format!("{pp}protect"),
                "must be a table { method = \"suppress\", threshold = 5 }",
            );
            None
        }
    };
    let title = cx.str(t, "title", &pp, false).map(str::to_string);
    Some(TableSpec {
        id: id.to_string(),
        title,
        source,
        kind,
        unit,
        dimensions,
        filter,
        grouping_sets,
        hierarchies,
        periods,
        protect,
    })
}

/// The reference periods of a table: its own `period`, else its source's, else the
/// pipeline's (`reference_date` for a stock, `reference_period` otherwise).
#[allow(clippy::too_many_arguments)]
fn table_periods(
    t: &Table,
    kind: &TableKind,
    pp: &str,
    source_period: Option<&Value>,
    is_date: &dyn Fn(&str) -> bool,
    source: &str,
    cx: &mut Ctx<'_>,
    defaults: (Option<chrono::NaiveDate>, Option<super::Period>),
) -> Periods {
    use super::period::{Freq, RefPeriod, declared};
    let own = t.get("period");
    let key = match own {
        Some(_) => format!("{pp}period"),
        None => format!("sources.{source}.period"),
    };
    if let Some(Value::String(s)) =
        own.filter(|v| v.as_str() == Some("all") || v.as_str() == Some("reference"))
    {
        cx.push(
            key,
            format!("`period = \"{s}\"` is replaced by the table's periods: e.g. period = {{ every = \"year\", from = \"2014\", to = \"2024\" }}"),
        );
        return Periods::fixed(RefPeriod {
            start: chrono::NaiveDate::MIN,
            end: chrono::NaiveDate::MIN,
            freq: Freq::Year,
            stock: false,
        });
    }
    let d = match own.or(source_period) {
        Some(v) => declared(v, &key, cx),
        None => None,
    };
    let fallback = || -> RefPeriod {
        let (date, period) = defaults;
        let date = date.unwrap_or(chrono::NaiveDate::MIN);
        let period = period.unwrap_or(super::Period {
            start: date,
            end: date,
        });
        let whole_year = chrono::Datelike::ordinal(&period.start) == 1
            && chrono::Datelike::year(&period.start) == chrono::Datelike::year(&period.end)
            && period
                .end
                .succ_opt()
                .is_some_and(|n| chrono::Datelike::ordinal(&n) == 1);
        RefPeriod {
            start: period.start,
            end: period.end,
            freq: if whole_year { Freq::Year } else { Freq::Range },
            stock: false,
        }
    };
    let check_date = |f: &str, cx: &mut Ctx<'_>| {
        if !is_date(f) {
            cx.push(
                format!("{key}.date"),
                format!(
                    "`{}` is not a date field of source `{source}`",
                    super::cap(f)
                ),
            );
        }
    };
    match kind {
        TableKind::Stock { .. } => match d {
            Some(d) => {
                if own.and_then(|v| v.get("date")).is_some() {
                    cx.push(
                        format!("{key}.date"),
                        "a stock is taken on the last day of each period; its records are placed by `valid_from`/`valid_to`: remove `date`",
                    );
                }
                d.into_stock()
            }
            None => {
                let (date, _) = defaults;
                let date = date.unwrap_or(chrono::NaiveDate::MIN);
                let year_end = date
                    .succ_opt()
                    .is_some_and(|n| chrono::Datelike::ordinal(&n) == 1);
                Periods::fixed(RefPeriod {
                    start: date,
                    end: date,
                    freq: if year_end { Freq::Year } else { Freq::Range },
                    stock: true,
                })
            }
        },
        TableKind::Flow { start, .. } | TableKind::Migration { date: start, .. } => match d {
            Some(d) => {
                if let Some(date) = d.date.as_ref().filter(|x| *x != start)
                    && own.and_then(|v| v.get("date")).is_some()
                {
                    cx.push(
                        format!("{key}.date"),
                        format!(
                            "a flow is placed by its own date (`{start}`), not by `{}`: remove `date`",
                            super::cap(date)
                        ),
                    );
                }
                d.into_events(Some(start.clone()))
            }
            None => Periods {
                list: vec![fallback()],
                freq: fallback().freq,
                date: Some(start.clone()),
                stock: false,
            },
        },
        k if k.is_survey() => match d {
            Some(d) => {
                if d.list.len() != 1 || d.date.is_some() {
                    cx.push(
                        key,
                        "survey estimates are of one period: write the survey's period (\"2019\" or { start, end }) without `date`",
                    );
                }
                d.into_events(None)
            }
            None => Periods::fixed(fallback()),
        },
        _ => match d {
            Some(d) => {
                match &d.date {
                    Some(f) => check_date(f, cx),
                    None if d.list.len() > 1 => cx.push(
                        format!("{key}.date"),
                        "required for a series: the event date field that places each record in its period",
                    ),
                    None => {}
                }
                let date = d.date.clone();
                d.into_events(date)
            }
            None => Periods::fixed(fallback()),
        },
    }
}

fn protect(t: &Table, p: &str, spec_dir: &Path, cx: &mut Ctx<'_>) -> Option<Protect> {
    cx.unknown_keys(t, PROTECT_KEYS, p);
    let pp = format!("{p}.");
    let method = match cx.str(t, "method", &pp, true) {
        Some("suppress") => ProtectMethod::Suppress,
        Some("round") => ProtectMethod::Round,
        Some("random_round") => ProtectMethod::RandomRound,
        Some("cell_key") => ProtectMethod::CellKey,
        Some(other) => {
            cx.push(
                format!("{pp}method"),
                format!("`{other}` is not a method (suppress, round, random_round or cell_key)"),
            );
            return None;
        }
        None => return None,
    };
    let int = |key: &str, default: u64, min: u64, cx: &mut Ctx<'_>| match t.get(key) {
        None => default,
        Some(v) => match v.as_integer().and_then(|i| u64::try_from(i).ok()) {
            Some(n) if n >= min => n,
            _ => {
                cx.push(
                    format!("{pp}{key}"),
                    format!("must be an integer of at least {min}"),
                );
                default
            }
        },
    };
    let threshold = int("threshold", 5, 1, cx);
    let base = int("base", 5, 2, cx);
    if t.contains_key("seed") {
        cx.push(
            format!("{pp}seed"),
            "a seed is a secret and has no place in a spec: remove it; the noise is keyed by the protection key ([protection] key_file, or the MIGSTAT_PROTECTION_KEY environment variable)",
        );
    }
    let perturbative = method != ProtectMethod::Suppress;
    let protection_range = match t.get("protection_range") {
        None if perturbative => 1.0,
        None => crate::spec::DEFAULT_PROTECTION_RANGE,
        Some(v) => match v.as_float().or_else(|| v.as_integer().map(|i| i as f64)) {
            Some(r) if r > 0.0 && r.is_finite() => r,
            _ => {
                cx.push(format!("{pp}protection_range"), "must be a positive number");
                threshold as f64
            }
        },
    };
    for (key, used) in [
        (
            "base",
            matches!(method, ProtectMethod::Round | ProtectMethod::RandomRound),
        ),
        ("publish_grand_total", method == ProtectMethod::Suppress),
        ("secondary", method == ProtectMethod::Suppress),
        ("ptable", method == ProtectMethod::CellKey),
    ] {
        if t.contains_key(key) && !used {
            cx.push(
                format!("{pp}{key}"),
                format!("`{key}` does not apply to method {}", method.name()),
            );
        }
    }
    let secondary = match cx.str(t, "secondary", &pp, false) {
        None | Some("gauss") => crate::spec::Secondary::Gauss,
        Some("hypercube") => crate::spec::Secondary::Hypercube,
        Some(other) => {
            cx.push(
                format!("{pp}secondary"),
                format!("`{other}` is not a secondary suppression method (gauss or hypercube)"),
            );
            crate::spec::Secondary::Gauss
        }
    };
    let revisions = match cx.str(t, "revisions", &pp, false) {
        None | Some("freeze") => Revisions::Freeze,
        Some("every_release") => Revisions::EveryRelease,
        Some(other) => {
            cx.push(
                format!("{pp}revisions"),
                format!("`{other}` is not a revision policy (freeze or every_release)"),
            );
            Revisions::Freeze
        }
    };
    let publish_grand_total = match t.get("publish_grand_total") {
        None => false,
        Some(v) => v.as_bool().unwrap_or_else(|| {
            cx.push(format!("{pp}publish_grand_total"), "must be true or false");
            false
        }),
    };
    let ptable = cx
        .str(t, "ptable", &pp, false)
        .map(|f| super::clean_path(&spec_dir.join(f)));
    if let Some(f) = &ptable
        && let Err(e) = crate::spec::PTable::read(f)
    {
        cx.push(format!("{pp}ptable"), e.to_string());
    }
    Some(Protect {
        method,
        threshold,
        protection_range,
        base,
        publish_grand_total,
        ptable,
        secondary,
        revisions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names every output writes are the ones a spec's `kind` accepts, and each kind says
    /// what its values measure (the SDMX UNIT_MEASURE of the first release is unchanged).
    #[test]
    fn kinds_have_their_spec_names_and_measures() {
        let migration = TableKind::Migration {
            flow: MigrationFlow::Immigration,
            rule: ResidenceRule::TwelveOfSixteen,
            date: "d".into(),
            direction: "D".into(),
            arrival: "IN".into(),
            departure: "OUT".into(),
            observed_to: chrono::NaiveDate::MIN,
            duration: None,
        };
        let v = || "v".to_string();
        let cases = [
            (
                TableKind::Count,
                Unit::Events,
                "count",
                ("EVENTS", "Events"),
            ),
            (
                TableKind::Count,
                Unit::Records,
                "count",
                ("RECORDS", "Records"),
            ),
            (
                TableKind::Stock {
                    valid_from: v(),
                    valid_to: None,
                    open_end_valid: true,
                },
                Unit::Persons,
                "stock",
                ("PS", "Persons"),
            ),
            (
                TableKind::Flow {
                    start: v(),
                    eurostat_end: None,
                },
                Unit::Persons,
                "flow",
                ("PS", "Persons"),
            ),
            (migration, Unit::Persons, "migration", ("PS", "Persons")),
            (
                TableKind::SurveyTotal { variable: None },
                Unit::Persons,
                "survey_total",
                ("PS", "Persons (estimated)"),
            ),
            (
                TableKind::SurveyMean { variable: v() },
                Unit::Persons,
                "survey_mean",
                ("MEAN", "Mean of the variable"),
            ),
            (
                TableKind::SurveyProportion { category: v() },
                Unit::Persons,
                "survey_proportion",
                ("SHARE", "Share (0 to 1)"),
            ),
            (
                TableKind::SurveyRatio {
                    numerator: v(),
                    denominator: v(),
                },
                Unit::Persons,
                "survey_ratio",
                ("RATIO", "Ratio of two totals"),
            ),
        ];
        for (kind, unit, name, sdmx) in cases {
            assert_eq!(kind.name(), name);
            let t = TableSpec {
                id: "t".into(),
                title: None,
                source: "s".into(),
                kind,
                unit,
                dimensions: vec![],
                filter: None,
                grouping_sets: None,
                hierarchies: vec![],
                periods: crate::spec::period::Periods::fixed(crate::spec::period::RefPeriod {
                    start: chrono::NaiveDate::MIN,
                    end: chrono::NaiveDate::MIN,
                    freq: crate::spec::period::Freq::Year,
                    stock: false,
                }),
                protect: None,
            };
            assert_eq!(t.measure().sdmx(), sdmx, "{name}");
            assert_eq!(
                t.measure().whole(),
                !matches!(sdmx.0, "MEAN" | "SHARE" | "RATIO")
            );
        }
    }
}
