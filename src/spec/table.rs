//! The `[tables.<id>]` section: what each table counts (its [`TableKind`] and [`Unit`]), by which
//! dimensions, over which periods, filtered how; and what its values measure ([`Measure`]), which
//! every writer (codebook, SDMX, report) takes from here.
//!
//! Input: the TOML table and a view of the sources' schemas and derived columns. Output: a
//! [`TableSpec`], or a spec issue for every problem.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Serialize;
use toml::{Table, Value};

use super::period::Periods;
use super::protection::{Protect, ProtectMethod, protect};
use super::schema::{FieldType, TableSchema};
use super::{Ctx, Section};
use crate::vocab::Lang;

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
    /// same cell with the category at `_T`), as R's `svyby(~category, …, svymean)`, with its
    /// confidence interval by one of R's `svyciprop` methods (`interval`).
    SurveyProportion {
        category: String,
        #[serde(skip_serializing_if = "PropInterval::is_mean")]
        interval: PropInterval,
        /// t intervals with each domain's own degrees of freedom (`interval_df = "domain"`: its
        /// PSUs less its strata, R's default under `svyby(…, svyciprop)`) instead of the design's.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        domain_df: bool,
    },
    /// The ratio of the weighted totals of two numeric columns in each cell, as R's
    /// `svyratio(~numerator, ~denominator)`, linearized as (y − R̂·x)/X̂. Records where either
    /// is missing are left out.
    SurveyRatio {
        numerator: String,
        denominator: String,
    },
    /// A quantile (the median by default) of a numeric column in each cell, as R's
    /// `svyby(~variable, …, svyquantile, quantiles = q, qrule = rule)`, with a Woodruff interval
    /// (the interval of the share of the cell at or below the quantile, by one of `svyciprop`'s
    /// methods, mapped back through the same rule) or, on a replicate design, the replicates'
    /// own quantiles (`interval = "quantile"`). Records where the variable is missing are left
    /// out.
    SurveyQuantile {
        variable: String,
        quantile: Probability,
        rule: QuantileRule,
        interval: QuantileInterval,
        /// t intervals with the design's degrees of freedom instead of each cell's own (R's
        /// default under `svyby`, which subsets the design: its PSUs less its strata, or the
        /// rank of its replicate weights less one).
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        design_df: bool,
    },
    /// A contrast of the estimates of another survey table (`of`) across one of its dimensions
    /// (`across`), in every cell of its other dimensions: a linear combination Σ c_k·θ(k) of
    /// the estimates at codes k (`coefficients`; `{ F = 1, M = -1 }` is women minus men), or a
    /// ratio θ(a)/θ(b) (`ratio = [a, b]`), with its standard error from the estimates'
    /// covariance, as R's `svycontrast` on `svyby(…, covmat = TRUE)`. `_T` is a code too.
    SurveyContrast {
        of: String,
        across: String,
        /// (code, coefficient); for a ratio the numerator's and the denominator's codes.
        terms: Vec<(String, Coefficient)>,
        ratio: bool,
        /// The estimator of `of` and its dimensions (set once every table is compiled).
        estimator: Box<TableKind>,
        base_dimensions: Vec<String>,
    },
}

/// A number of the spec (a probability, a coefficient), compared by its bits: it is read,
/// never computed.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(transparent)]
pub struct Probability(pub f64);

impl PartialEq for Probability {
    fn eq(&self, o: &Self) -> bool {
        self.0.to_bits() == o.0.to_bits()
    }
}

impl Eq for Probability {}

/// A contrast's coefficient (see [`Probability`] for its equality).
pub type Coefficient = Probability;

/// Which value of a cell's weighted distribution is its quantile: R's `svyquantile` rules
/// (`qrule`). `math` (R's default, Hyndman–Fan 1) is the smallest value whose weighted CDF
/// reaches q; `school` (HF 2) averages the two values around an exact tie; `hf3` rounds to the
/// even order statistic; `hf4`…`hf9` interpolate between order statistics. (R's `shahvaish`
/// is not offered: it subtracts raw weights from normalised cumulative ones, so its plotting
/// positions are not monotone and depend on every record, not on the distribution.)
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum QuantileRule {
    #[default]
    Math,
    School,
    Hf3,
    Hf4,
    Hf5,
    Hf6,
    Hf7,
    Hf8,
    Hf9,
}

impl QuantileRule {
    pub fn name(self) -> &'static str {
        match self {
            QuantileRule::Math => "math",
            QuantileRule::School => "school",
            QuantileRule::Hf3 => "hf3",
            QuantileRule::Hf4 => "hf4",
            QuantileRule::Hf5 => "hf5",
            QuantileRule::Hf6 => "hf6",
            QuantileRule::Hf7 => "hf7",
            QuantileRule::Hf8 => "hf8",
            QuantileRule::Hf9 => "hf9",
        }
    }

    fn parse(s: &str) -> Option<QuantileRule> {
        Some(match s {
            "math" | "hf1" => QuantileRule::Math,
            "school" | "hf2" => QuantileRule::School,
            "hf3" => QuantileRule::Hf3,
            "hf4" => QuantileRule::Hf4,
            "hf5" => QuantileRule::Hf5,
            "hf6" => QuantileRule::Hf6,
            "hf7" => QuantileRule::Hf7,
            "hf8" => QuantileRule::Hf8,
            "hf9" => QuantileRule::Hf9,
            _ => return None,
        })
    }
}

/// How a quantile's confidence interval is built: R's `svyquantile` interval types. The first
/// four are Woodruff's: an interval for the share of the cell at or below the estimate (by the
/// `svyciprop` method of that name) mapped back to values through the quantile rule.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum QuantileInterval {
    #[default]
    Mean,
    Beta,
    Xlogit,
    Asin,
    /// Replicate designs: the quantile of each replicate, their variance, estimate ± t·SE.
    Quantile,
    /// Francisco and Fuller's test inversion (R's `interval.type = "score"`): the values where
    /// the design-based test of P(X ≤ θ) = p rejects at the level, found by R's `uniroot`.
    Score,
}

impl QuantileInterval {
    pub fn name(self) -> &'static str {
        match self {
            QuantileInterval::Mean => "mean",
            QuantileInterval::Beta => "beta",
            QuantileInterval::Xlogit => "xlogit",
            QuantileInterval::Asin => "asin",
            QuantileInterval::Quantile => "quantile",
            QuantileInterval::Score => "score",
        }
    }
}

/// How a share's confidence interval is built: R's `svyciprop` methods. Only `mean` (the
/// default) can leave [0, 1].
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum PropInterval {
    /// p̂ ± q·SE (Wald).
    #[default]
    Mean,
    /// expit(logit p̂ ± q·SE(logit p̂)), the SE of the logit from the design: by linearization
    /// (as R's intercept-only `svyglm(…, family = quasibinomial)`), or the replicates' logits.
    Logit,
    /// expit(logit p̂ ± q·SE/(p̂(1 − p̂))): the delta method on every design (`svycontrast`).
    Xlogit,
    /// sin²(asin √p̂ ± q·SE/(2√(p̂(1 − p̂)))), kept within [0, π/2] before squaring.
    Asin,
    /// Korn–Graubard: Clopper–Pearson beta quantiles at the effective sample size
    /// p̂(1 − p̂)/SE², scaled by (t(n − 1)/t(df))² with the domain's records and degrees of
    /// freedom (the NCHS standard).
    Beta,
    /// The profile-likelihood interval of the intercept-only quasibinomial model, its cut-off
    /// scaled by the design effect of the logit (Rao–Scott), as R computes it.
    Likelihood,
}

impl PropInterval {
    pub fn is_mean(&self) -> bool {
        *self == PropInterval::Mean
    }

    pub fn name(self) -> &'static str {
        match self {
            PropInterval::Mean => "mean",
            PropInterval::Logit => "logit",
            PropInterval::Xlogit => "xlogit",
            PropInterval::Asin => "asin",
            PropInterval::Beta => "beta",
            PropInterval::Likelihood => "likelihood",
        }
    }
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
            TableKind::SurveyQuantile { .. } => "survey_quantile",
            TableKind::SurveyContrast { .. } => "survey_contrast",
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
                | TableKind::SurveyQuantile { .. }
                | TableKind::SurveyContrast { .. }
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
    Quantile,
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
            Measure::Quantile => ("QUANTILE", "Quantile of the variable"),
        }
    }

    /// Whether the values are whole numbers (counts and estimated totals are shown so).
    pub fn whole(self) -> bool {
        match self {
            Measure::Persons | Measure::EstimatedPersons | Measure::Events | Measure::Records => {
                true
            }
            Measure::Share | Measure::Mean | Measure::Ratio | Measure::Quantile => false,
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TableSpec {
    pub id: String,
    pub title: Option<String>,
    /// `title_fr`, `title_ar`: the title in the other publication languages.
    pub title_translations: BTreeMap<Lang, String>,
    /// `[tables.<id>.metadata]`: reference metadata only people can give (concepts,
    /// population, …; keys [`super::SIMS_TABLE_KEYS`]).
    pub metadata: BTreeMap<String, String>,
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
    /// The table a contrast gathers its estimates from: its base's estimator over its base's
    /// dimensions, in its own universe (the table itself for any other kind).
    pub fn contrast_base(&self) -> TableSpec {
        match &self.kind {
            TableKind::SurveyContrast {
                estimator,
                base_dimensions,
                ..
            } => TableSpec {
                kind: (**estimator).clone(),
                dimensions: base_dimensions.clone(),
                grouping_sets: None,
                ..self.clone()
            },
            _ => self.clone(),
        }
    }

    /// What the table's values measure (see [`Measure`]).
    pub fn measure(&self) -> Measure {
        match (&self.kind, self.unit) {
            (TableKind::SurveyProportion { .. }, _) => Measure::Share,
            (TableKind::SurveyMean { .. }, _) => Measure::Mean,
            (TableKind::SurveyRatio { .. }, _) => Measure::Ratio,
            (TableKind::SurveyQuantile { .. }, _) => Measure::Quantile,
            (TableKind::SurveyContrast { ratio: true, .. }, _) => Measure::Ratio,
            (TableKind::SurveyContrast { estimator, .. }, unit) => TableSpec {
                kind: (**estimator).clone(),
                unit,
                ..self.clone()
            }
            .measure(),
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

/// What a table definition needs to know of its source.
pub(crate) struct SourceView {
    pub id: String,
    pub schema: TableSchema,
    pub derived: Vec<String>,
    pub has_person: bool,
    pub has_record: bool,
    pub has_design: bool,
    /// The design has replicate weights.
    pub has_replicates: bool,
    /// The design's weights are adjusted (calibration or nonresponse).
    pub adjusted: bool,
    /// Derived columns whose codes are the values themselves (`unmapped = "observed"`).
    pub observed: Vec<String>,
    /// The source's default `period` (for its tables without one).
    pub period: Option<Value>,
    /// The pipeline's defaults: a stock's date, the period of everything else.
    pub reference_date: Option<chrono::NaiveDate>,
    pub reference_period: Option<super::Period>,
}

/// What the kind-specific keys of a `[tables.<id>]` section are read against: the section and
/// its source's schema and derived columns.
struct TableReader<'a> {
    t: &'a Section<'a>,
    /// `tables.<id>.`: the prefix of every issue's key.
    pp: &'a str,
    source: &'a str,
    schema: &'a TableSchema,
    derived: &'a [String],
    reference_date: Option<chrono::NaiveDate>,
    has_replicates: bool,
    adjusted: bool,
    observed: &'a [String],
}

impl TableReader<'_> {
    /// A date field of the source named by `key` (required).
    fn date_field(&self, key: &str, cx: &mut Ctx<'_>) -> String {
        let (t, pp, source) = (self.t, self.pp, self.source);
        let f = cx.str(t, key, true).unwrap_or_default().to_string();
        let is_date = self
            .schema
            .field(&f)
            .is_some_and(|f| matches!(f.field_type, FieldType::Date(_)));
        if !f.is_empty() && !is_date {
            cx.push(
                format!("{pp}{key}"),
                format!("`{f}` is not a date field of source `{source}`"),
            );
        }
        f
    }

    /// A numeric column of the source named by `key`: a derived one or a numeric delivered field.
    fn numeric_column(&self, key: &str, required: bool, cx: &mut Ctx<'_>) -> Option<String> {
        let (t, pp, source) = (self.t, self.pp, self.source);
        let name = cx.str(t, key, required)?.to_string();
        let numeric = |f: &super::schema::Field| {
            matches!(
                f.field_type,
                FieldType::Integer | FieldType::Number | FieldType::Year
            )
        };
        if !self.derived.contains(&name) && !self.schema.field(&name).is_some_and(numeric) {
            cx.push(
                format!("{pp}{key}"),
                format!(
                    "`{name}` is neither a derived column nor a numeric field of source `{source}`"
                ),
            );
        }
        Some(name)
    }

    /// `dimensions`: derived columns of the source (or a migration table's duration column).
    fn dimensions(&self, kind: &TableKind, cx: &mut Ctx<'_>) -> Vec<String> {
        let (t, pp, source, derived) = (self.t, self.pp, self.source, self.derived);
        let dimensions: Vec<String> = match t.get("dimensions").and_then(Value::as_array) {
            Some(a) if a.iter().all(Value::is_str) && (!a.is_empty() || kind.is_survey()) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => {
                cx.push(
                    format!("{pp}dimensions"),
                    "required: a list of derived column names (non-empty except for a survey table)",
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
            // A pass-through column's codes are whatever the data hold: a published table's
            // code list (SDMX, codebook, every row of its cube) would tell an intruder that a
            // rare value occurs, even where its cells are suppressed.
            if self.observed.contains(d) && (kind.is_survey() || t.has("protect")) {
                cx.push(
                    format!("{pp}dimensions"),
                    format!(
                        "`{d}` takes its codes from the data (`unmapped = \"observed\"`): a published table's code list would reveal that a rare value occurs; map the values with a crosswalk (the run report lists them) or keep the table restricted (a count table without `protect`)"
                    ),
                );
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
        dimensions
    }

    /// `protect`: how a count table is protected (survey tables are protected by their design);
    /// the cell key method needs the records' stable identifiers.
    fn protect(
        &self,
        survey: bool,
        unit: Unit,
        (has_person, has_record): (bool, bool),
        base: &Path,
        cx: &mut Ctx<'_>,
    ) -> Option<Protect> {
        let (t, pp, source) = (self.t, self.pp, self.source);
        match t.sub("protect", "{ method = \"suppress\", threshold = 5 }", cx) {
            None => None,
            Some(pt) if !survey => {
                let p = protect(&pt, base, cx);
                // Record keys come from each record's stable identifier: the person's for tables of
                // persons, the record's otherwise.
                if p.as_ref()
                    .is_some_and(|p| p.method == ProtectMethod::CellKey)
                {
                    let (has, key) = if unit == Unit::Persons {
                        (has_person, "person_id")
                    } else {
                        (has_record, "record_id")
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
            Some(_) => {
                cx.push(
                format!("{pp}protect"),
                "survey tables are protected by their design's min_n, cv_caution and cv_suppress; remove `protect`",
            );
                None
            }
        }
    }

    /// `filter = { column, in }`: the table's universe, a derived column's codes.
    fn filter(&self, cx: &mut Ctx<'_>) -> Option<(String, BTreeSet<String>)> {
        let (t, pp, source, derived) = (self.t, self.pp, self.source, self.derived);
        match t.sub("filter", "{ column = \"...\", in = [...] }", cx) {
            None => None,
            Some(f) => {
                let column = cx.str(&f, "column", true).unwrap_or_default().to_string();
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
                f.finish(cx);
                Some((column, values))
            }
        }
    }

    /// `hierarchies = { child = "parent" }` between the table's dimensions, without cycles.
    fn hierarchies(&self, dimensions: &[String], cx: &mut Ctx<'_>) -> Vec<(String, String)> {
        let (t, pp) = (self.t, self.pp);
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
                // No cycles: following parents from any dimension must end (a dimension that
                // is its own parent is reported above, once).
                for (child, _) in hierarchies.iter().filter(|(c, p)| c != p) {
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
        hierarchies
    }

    /// `grouping_sets`: the margin combinations published (default: all).
    fn grouping_sets(&self, dimensions: &[String], cx: &mut Ctx<'_>) -> Option<Vec<Vec<String>>> {
        let (t, pp) = (self.t, self.pp);
        match t.get("grouping_sets") {
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
        }
    }

    /// The table's `kind` and the keys that kind reads.
    fn kind(&self, cx: &mut Ctx<'_>) -> TableKind {
        let (t, pp, source, derived) = (self.t, self.pp, self.source, self.derived);
        match cx.str(t, "kind", false).unwrap_or("count") {
            "count" => TableKind::Count,
            "stock" => TableKind::Stock {
                valid_from: self.date_field("valid_from", cx),
                valid_to: t.has("valid_to").then(|| self.date_field("valid_to", cx)),
                open_end_valid: match cx.str(t, "open_end", false) {
                    None | Some("valid") => true,
                    Some("excluded") if !t.has("valid_to") => {
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
                variable: self.numeric_column("variable", false, cx),
            },
            "survey_mean" => TableKind::SurveyMean {
                variable: self
                    .numeric_column("variable", true, cx)
                    .unwrap_or_default(),
            },
            "survey_ratio" => TableKind::SurveyRatio {
                numerator: self
                    .numeric_column("numerator", true, cx)
                    .unwrap_or_default(),
                denominator: self
                    .numeric_column("denominator", true, cx)
                    .unwrap_or_default(),
            },
            "survey_quantile" => {
                let quantile = match t.get("quantile") {
                    None => 0.5,
                    Some(_) => match cx.fraction(t, "quantile") {
                        Some(q) if q > 0.0 && q < 1.0 => q,
                        Some(_) => {
                            cx.push(
                                format!("{pp}quantile"),
                                "must be strictly between 0 and 1 (0.5 for the median)",
                            );
                            0.5
                        }
                        None => 0.5,
                    },
                };
                let rule = match cx.str(t, "rule", false) {
                    None => QuantileRule::Math,
                    Some("shahvaish") => {
                        cx.push(
                            format!("{pp}rule"),
                            "`shahvaish` is not offered: R's version mixes raw and normalised weights, so its answer depends on every record's order, not on the weighted distribution (use math, school or hf1 to hf9)",
                        );
                        QuantileRule::Math
                    }
                    Some(r) => QuantileRule::parse(r).unwrap_or_else(|| {
                        cx.push(
                            format!("{pp}rule"),
                            format!(
                                "`{}` is not a quantile rule (math, school, hf1 to hf9)",
                                super::cap(r)
                            ),
                        );
                        QuantileRule::Math
                    }),
                };
                let interval = match cx.str(t, "interval", false) {
                    None | Some("mean") => QuantileInterval::Mean,
                    Some("beta") => QuantileInterval::Beta,
                    Some("xlogit") => QuantileInterval::Xlogit,
                    Some("asin") => QuantileInterval::Asin,
                    Some("quantile") if self.has_replicates => QuantileInterval::Quantile,
                    Some("quantile") => {
                        cx.push(
                            format!("{pp}interval"),
                            "`quantile` takes the replicates' quantiles: the source's design has no replicate weights (use mean, beta, xlogit or asin)",
                        );
                        QuantileInterval::Mean
                    }
                    Some("score") if self.has_replicates || self.adjusted => {
                        cx.push(
                            format!("{pp}interval"),
                            if self.has_replicates {
                                "`score` is offered on linearized designs (R's svyquantile has none for replicate weights): use quantile, mean, xlogit or asin"
                            } else {
                                "`score` is offered on designs without calibration or nonresponse adjustment (R's test on such a design's domain counts the records outside it): use mean, beta, xlogit or asin"
                            },
                        );
                        QuantileInterval::Mean
                    }
                    Some("score") => QuantileInterval::Score,
                    Some(other) => {
                        cx.push(
                            format!("{pp}interval"),
                            format!(
                                "`{}` is not a quantile interval (mean, beta, xlogit, asin, score, or quantile on a replicate design)",
                                super::cap(other)
                            ),
                        );
                        QuantileInterval::Mean
                    }
                };
                let design_df = match cx.str(t, "interval_df", false) {
                    None | Some("domain") => false,
                    Some("design") => true,
                    Some(other) => {
                        cx.push(
                            format!("{pp}interval_df"),
                            format!(
                                "`{}` is not a choice of degrees of freedom (domain or design)",
                                super::cap(other)
                            ),
                        );
                        false
                    }
                };
                if interval == QuantileInterval::Beta && self.has_replicates {
                    cx.push(
                        format!("{pp}interval"),
                        "`beta` needs each domain's degrees of freedom, which a replicate design does not give yet: use mean, xlogit, asin or quantile",
                    );
                }
                TableKind::SurveyQuantile {
                    variable: self
                        .numeric_column("variable", true, cx)
                        .unwrap_or_default(),
                    quantile: Probability(quantile),
                    rule,
                    interval,
                    design_df,
                }
            }
            "survey_contrast" => {
                let of = cx.str(t, "of", true).unwrap_or_default().to_string();
                let across = cx.str(t, "across", true).unwrap_or_default().to_string();
                let (terms, ratio) = match (t.get("coefficients"), t.get("ratio")) {
                    (Some(Value::Table(c)), None) => {
                        let mut terms = Vec::new();
                        for (code, v) in c {
                            match v.as_float().or_else(|| v.as_integer().map(|i| i as f64)) {
                                Some(x) if x.is_finite() && x != 0.0 => {
                                    terms.push((code.clone(), Probability(x)))
                                }
                                _ => cx.push(
                                    format!("{pp}coefficients.{}", super::cap(code)),
                                    "must be a number other than 0",
                                ),
                            }
                        }
                        if terms.is_empty() {
                            cx.push(
                                format!("{pp}coefficients"),
                                "give at least one code and its coefficient, e.g. { F = 1, M = -1 }",
                            );
                        }
                        (terms, false)
                    }
                    (None, Some(Value::Array(a)))
                        if a.len() == 2 && a.iter().all(Value::is_str) && a[0] != a[1] =>
                    {
                        let code = |i: usize| a[i].as_str().unwrap_or_default().to_string();
                        (
                            vec![(code(0), Probability(1.0)), (code(1), Probability(1.0))],
                            true,
                        )
                    }
                    (None, Some(_)) => {
                        cx.push(
                            format!("{pp}ratio"),
                            "must be two different codes: [numerator, denominator]",
                        );
                        (Vec::new(), true)
                    }
                    _ => {
                        cx.push(
                            pp.trim_end_matches('.').to_string(),
                            "a contrast needs either `coefficients` (a table of code = coefficient) or `ratio` ([numerator, denominator])",
                        );
                        (Vec::new(), false)
                    }
                };
                TableKind::SurveyContrast {
                    of,
                    across,
                    terms,
                    ratio,
                    estimator: Box::new(TableKind::Count),
                    base_dimensions: Vec::new(),
                }
            }
            "survey_proportion" => {
                let category = cx.str(t, "category", true).unwrap_or_default().to_string();
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
                let interval = match cx.str(t, "interval", false) {
                    None | Some("mean") => PropInterval::Mean,
                    Some("logit") => PropInterval::Logit,
                    Some("xlogit") => PropInterval::Xlogit,
                    Some("asin") => PropInterval::Asin,
                    Some("beta") => PropInterval::Beta,
                    Some("likelihood") => PropInterval::Likelihood,
                    Some(other) => {
                        cx.push(
                            format!("{pp}interval"),
                            format!("`{other}` is not an interval method (mean, logit, likelihood, xlogit, asin, beta)"),
                        );
                        PropInterval::Mean
                    }
                };
                if interval == PropInterval::Likelihood && self.has_replicates {
                    cx.push(
                        format!("{pp}interval"),
                        "`likelihood` scales its cut-off by the model-based variance of the logit, which R's fit on a replicate design does not give (its interval is NA there): use logit, xlogit, asin or mean",
                    );
                }
                let domain_df = match cx.str(t, "interval_df", false) {
                    None | Some("design") => false,
                    Some("domain") => true,
                    Some(other) => {
                        cx.push(
                            format!("{pp}interval_df"),
                            format!(
                                "`{other}` is not a choice of degrees of freedom (design or domain)"
                            ),
                        );
                        false
                    }
                };
                TableKind::SurveyProportion {
                    category,
                    interval,
                    domain_df,
                }
            }
            "flow" => {
                let eurostat_end = match cx.str(t, "first", false) {
                    None | Some("ever") => None,
                    Some("eurostat") => Some(self.date_field("end", cx)),
                    Some(other) => {
                        cx.push(
                            format!("{pp}first"),
                            format!("`{other}` is not a first-record rule (ever or eurostat)"),
                        );
                        None
                    }
                };
                TableKind::Flow {
                    start: self.date_field("start", cx),
                    eurostat_end,
                }
            }
            "migration" => {
                let flow = match cx.str(t, "flow", true) {
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
                let rule = match cx.str(t, "rule", true) {
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
                let direction = cx.str(t, "direction", true).unwrap_or_default().to_string();
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
                    cx.str(t, key, false).unwrap_or(default).to_string()
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
                    None => self.reference_date.unwrap_or(chrono::NaiveDate::MIN),
                    Some(v) => cx
                        .date(v, &format!("{pp}observed_to"))
                        .unwrap_or(chrono::NaiveDate::MIN),
                };
                let duration = cx.str(t, "duration", false).map(str::to_string);
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
                    date: self.date_field("crossing_date", cx),
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
                        "`{other}` is not a kind (count, stock, flow, migration, survey_total, survey_mean, survey_proportion, survey_ratio, survey_quantile or survey_contrast)"
                    ),
                );
                TableKind::Count
            }
        }
    }
}

/// Compile `[tables.<id>]` against the sources' derived columns and schemas.
pub(crate) fn compile_table(
    id: &str,
    table: &Table,
    sources: &[SourceView],
    base: &Path,
    cx: &mut Ctx<'_>,
) -> Option<TableSpec> {
    let p = format!("tables.{id}");
    let pp = format!("{p}.");
    let t = &Section::new(table, p.clone());
    // Without its source a table's keys cannot be checked: that one issue is reported.
    let source = cx.str(t, "source", true)?.to_string();
    let Some(SourceView {
        schema,
        derived,
        has_person,
        has_record,
        has_design,
        has_replicates,
        adjusted,
        observed,
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
    let reader = TableReader {
        t,
        pp: &pp,
        source: &source,
        schema,
        derived,
        reference_date: *reference_date,
        has_replicates: *has_replicates,
        adjusted: *adjusted,
        observed,
    };
    let kind = reader.kind(cx);
    let unit = match cx.str(t, "unit", true).unwrap_or("records") {
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
    let dimensions = reader.dimensions(&kind, cx);
    let filter = reader.filter(cx);
    let hierarchies = reader.hierarchies(&dimensions, cx);
    let grouping_sets = reader.grouping_sets(&dimensions, cx);
    let protect = reader.protect(survey, unit, (*has_person, *has_record), base, cx);
    let title = cx.str(t, "title", false).map(str::to_string);
    let title_translations = super::translations(t, "title", cx);
    let metadata = super::metadata_section(t, "metadata", &super::SIMS_TABLE_KEYS, cx);
    t.finish(cx);
    Some(TableSpec {
        id: id.to_string(),
        title,
        title_translations,
        metadata,
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
    t: &Section<'_>,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Compile `[tables.t]` (TOML body) against one source `s` with fields `born` (date),
    /// `n` (integer), `name`, and derived columns `SEX`, `AGE_GROUP`, `DIRECTION`; returns the
    /// table (if any) and the issues as `key: message`.
    fn table(body: &str) -> (Option<TableSpec>, Vec<String>) {
        let schema = crate::spec::schema::parse(
            r#"{"fields": [{"name": "born", "type": "date"}, {"name": "n", "type": "integer"}, {"name": "name"}]}"#,
            Path::new("s.json"),
        )
        .unwrap();
        let view = SourceView {
            id: "s".into(),
            schema,
            derived: vec!["SEX".into(), "AGE_GROUP".into(), "DIRECTION".into()],
            has_person: true,
            has_record: true,
            has_design: false,
            has_replicates: false,
            adjusted: false,
            observed: Vec::new(),
            period: None,
            reference_date: chrono::NaiveDate::from_ymd_opt(2024, 12, 31),
            reference_period: Some(crate::spec::Period {
                start: chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
                end: chrono::NaiveDate::from_ymd_opt(2024, 12, 31).unwrap(),
            }),
        };
        let t: Table = body.parse().unwrap();
        let mut cx = Ctx {
            file: Path::new("p.toml"),
            issues: Vec::new(),
        };
        let spec = compile_table("t", &t, &[view], Path::new("."), &mut cx);
        let issues = cx
            .issues
            .iter()
            .map(|i| format!("{}: {}", i.key, i.message))
            .collect();
        (spec, issues)
    }

    #[test]
    fn a_count_table_compiles_with_its_defaults() {
        let (t, issues) = table(
            r#"source = "s"
dimensions = ["SEX", "AGE_GROUP"]
unit = "records""#,
        );
        assert!(issues.is_empty(), "{issues:?}");
        let t = t.unwrap();
        assert_eq!(t.kind, TableKind::Count);
        assert_eq!(t.unit, Unit::Records);
        assert_eq!(t.measure(), Measure::Records);
        assert_eq!(t.dimensions, ["SEX", "AGE_GROUP"]);
        assert!(t.filter.is_none() && t.protect.is_none());
    }

    #[test]
    fn keys_of_another_kind_or_branch_are_refused() {
        // `valid_from` belongs to stocks, `crossing_date` to migration tables; `end` is read by a
        // flow only under `first = "eurostat"`. Written by hand from the kinds' keys.
        let (t, issues) = table(
            r#"source = "s"
unit = "records"
dimensions = ["SEX"]
valid_from = "born"
crossing_date = "born"
titel = "typo""#,
        );
        assert!(t.is_some());
        let keys: Vec<&str> = issues
            .iter()
            .map(|i| i.split(':').next().unwrap_or_default())
            .collect();
        assert_eq!(
            keys,
            [
                "tables.t.crossing_date",
                "tables.t.titel",
                "tables.t.valid_from"
            ],
            "{issues:?}"
        );
        assert!(
            issues[0].contains("unknown key `crossing_date`"),
            "{issues:?}"
        );
        // The message lists what a count table reads, and not a stock's keys.
        assert!(issues[0].contains("dimensions"), "{issues:?}");
        assert!(!issues[0].contains("valid_to"), "{issues:?}");

        let flow = |first: &str| {
            table(&format!(
                r#"source = "s"
kind = "flow"
unit = "persons"
start = "born"
end = "born"
first = "{first}"
dimensions = ["SEX"]"#
            ))
            .1
        };
        assert!(flow("eurostat").is_empty(), "{:?}", flow("eurostat"));
        let ever = flow("ever");
        assert_eq!(ever.len(), 1, "{ever:?}");
        assert!(
            ever[0].starts_with("tables.t.end: unknown key `end`"),
            "{ever:?}"
        );
    }

    #[test]
    fn each_key_is_checked_against_the_source() {
        // Expected issues written from the rules, one per line of the table.
        let (_, issues) = table(
            r#"source = "s"
kind = "stock"
unit = "persons"
valid_from = "name"
dimensions = ["SEX", "CITIZENSHIP"]
filter = { column = "REGION", in = [] }
hierarchies = { SEX = "SEX" }"#,
        );
        let has = |key: &str, text: &str| {
            issues
                .iter()
                .any(|i| i.starts_with(key) && i.contains(text))
        };
        assert!(
            has(
                "tables.t.valid_from",
                "`name` is not a date field of source `s`"
            ),
            "{issues:?}"
        );
        assert!(
            has(
                "tables.t.dimensions",
                "`CITIZENSHIP` is not a column derived by source `s`"
            ),
            "{issues:?}"
        );
        assert!(
            has("tables.t.filter.column", "`REGION` is not a derived column"),
            "{issues:?}"
        );
        assert!(has("tables.t.filter.in", "non-empty list"), "{issues:?}");
        assert!(
            has("tables.t.hierarchies.SEX", "cannot lie within itself"),
            "{issues:?}"
        );
        // A dimension that is its own parent is reported once, not again as a cycle of one.
        assert!(
            !has("tables.t.hierarchies.SEX", "form a cycle"),
            "{issues:?}"
        );
        assert_eq!(issues.len(), 5, "{issues:?}");
    }

    #[test]
    fn a_migration_table_needs_two_crossing_codes_and_a_derived_direction() {
        let (_, issues) = table(
            r#"source = "s"
kind = "migration"
unit = "persons"
flow = "emigration"
rule = "12_months"
crossing_date = "born"
direction = "DIRECTION"
arrival = "X"
departure = "X"
dimensions = ["SEX"]"#,
        );
        assert_eq!(
            issues,
            ["tables.t.departure: arrivals and departures need different codes"]
        );
        let (t, issues) = table(
            r#"source = "s"
kind = "migration"
unit = "persons"
flow = "out"
rule = "12_of_16"
crossing_date = "born"
direction = "SEX"
dimensions = ["SEX"]"#,
        );
        assert!(t.is_some());
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert!(
            issues[0].starts_with("tables.t.flow: `out` is not a migration flow"),
            "{issues:?}"
        );
    }

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
                TableKind::SurveyProportion {
                    category: v(),
                    interval: PropInterval::Mean,
                    domain_df: false,
                },
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
                title_translations: BTreeMap::new(),
                metadata: BTreeMap::new(),
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
