//! Reference periods: which period each published partition of a table is, and which records
//! belong to it.
//!
//! Input: a table's (or its source's) `period` key — a single period (`"2024"`, `"2024-Q1"`,
//! `"2024-03"`, `{ start = …, end = … }`) or a series (`{ every = "year" | "quarter" | "month",
//! from = "2014", to = "2024" }`), with `date`, the event date field that places each record in
//! its period — and the pipeline's `reference_period` / `reference_date` when it has none.
//! Output: a [`Periods`] plan: the list of [`RefPeriod`]s (each with its label in SDMX
//! `TIME_PERIOD` form, its `FREQ` code and its Hive partition folder) and the date field.
//!
//! A count table or a flow places each record by its event date: a record dated outside every
//! declared period (or without a date) is left out of the table and counted in the manifest.
//! A stock table is taken on the last day of each period (31 December of each year of an
//! annual series). A table without `date` (a survey, a register without event dates) is one
//! period, declared by the spec, and every record is in it.

use chrono::{Datelike, Months, NaiveDate};
use serde::Serialize;
use toml::Value;

use super::{Ctx, Section};

/// Periods a series may hold (a guard against a typo such as `from = "1024"`).
pub const MAX_PERIODS: usize = 600;

/// How a period is spaced and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Freq {
    /// A calendar year: `2024`.
    Year,
    /// A calendar quarter: `2024-Q1`.
    Quarter,
    /// A calendar month: `2024-01`.
    Month,
    /// Any other span, `start/end` (SDMX: `start/PnD`).
    Range,
}

impl Freq {
    /// The SDMX `FREQ` code.
    pub fn sdmx(self) -> &'static str {
        match self {
            Freq::Year => "A",
            Freq::Quarter => "Q",
            Freq::Month => "M",
            Freq::Range => "_O",
        }
    }
}

/// One reference period of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct RefPeriod {
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub freq: Freq,
    /// A stock: the table is taken on `end` (its label and partition are that date).
    pub stock: bool,
}

impl RefPeriod {
    /// The period as SDMX writes `TIME_PERIOD`: `2024`, `2024-Q1`, `2024-01`, a stock's date
    /// `2024-12-31`, or a range `2018-03-01/P365D`.
    pub fn label(&self) -> String {
        if self.stock {
            return self.end.to_string();
        }
        match self.freq {
            Freq::Year => self.start.year().to_string(),
            Freq::Quarter => format!("{}-Q{}", self.start.year(), self.start.month0() / 3 + 1),
            Freq::Month => format!("{}-{:02}", self.start.year(), self.start.month()),
            Freq::Range => {
                // Whole calendar years as years (`2018-01-01/P2Y`), else days.
                let whole = self.start.ordinal() == 1
                    && self.end.succ_opt().is_some_and(|n| n.ordinal() == 1);
                if whole {
                    format!(
                        "{}/P{}Y",
                        self.start,
                        self.end.year() - self.start.year() + 1
                    )
                } else {
                    format!(
                        "{}/P{}D",
                        self.start,
                        (self.end - self.start).num_days() + 1
                    )
                }
            }
        }
    }

    /// The period's stable key, `<column>=<value>` (`ref_year=2024`, `ref_quarter=2024-Q1`,
    /// `ref_month=2024-01`, `ref_date=2024-12-31` for a stock, `ref_year=<start year>` for a
    /// range): the folder of its ledger and the scope its protection keys derive from, so that it
    /// never changes with the layout of the tables.
    pub fn key(&self) -> String {
        let (name, value) = self.typed_column();
        let value = match value {
            PeriodValue::Year(y) => y.to_string(),
            PeriodValue::Text(t) => t,
            PeriodValue::Date(d) => d.to_string(),
        };
        format!("{name}={value}")
    }

    /// The folder of the period's table files: the value of its [`key`](RefPeriod::key) (`2024`,
    /// `2024-Q1`, `2024-01`, a stock's `2024-12-31`, a range's first year). Not Hive style
    /// (`key=value`) on purpose: the period's typed column is in the files
    /// ([`RefPeriod::typed_column`]), and a Hive folder of the same name makes readers disagree
    /// on its type or refuse to merge.
    pub fn partition(&self) -> String {
        partition_of_key(&self.key())
    }

    /// The column that gives every row its period with a type every reader agrees on:
    /// `ref_year` (a 64-bit integer: the year, a range's start year), `ref_quarter` and
    /// `ref_month` (text: `2024-Q1`, `2024-01`), `ref_date` (a date: a stock's day).
    pub fn typed_column(&self) -> (&'static str, PeriodValue) {
        if self.stock {
            return ("ref_date", PeriodValue::Date(self.end));
        }
        match self.freq {
            Freq::Year | Freq::Range => ("ref_year", PeriodValue::Year(self.start.year().into())),
            Freq::Quarter => ("ref_quarter", PeriodValue::Text(self.label())),
            Freq::Month => ("ref_month", PeriodValue::Text(self.label())),
        }
    }

    /// The value of the `ref_period` column: the label, or `start/end` for a range.
    pub fn column(&self) -> String {
        match (self.stock, self.freq) {
            (false, Freq::Range) => format!("{}/{}", self.start, self.end),
            _ => self.label(),
        }
    }

    /// Whether the period is still provisional on `cutoff` (the data's cut-off date): it ends
    /// less than `months` months before it, or after it.
    pub fn is_provisional(&self, cutoff: NaiveDate, months: u32) -> bool {
        self.end
            .checked_add_months(Months::new(months))
            .is_none_or(|closes| closes > cutoff)
    }

    pub fn contains(&self, d: NaiveDate) -> bool {
        self.start <= d && d <= self.end
    }
}

/// A table's reference periods and the date that places its records.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Periods {
    /// The periods, in time order, disjoint. Not part of what a table *is* (a series extended
    /// by a year is the same table): left out of its serialized definition.
    #[serde(skip)]
    pub list: Vec<RefPeriod>,
    /// The spacing of the series.
    pub freq: Freq,
    /// The event date field (delivered) that places each record; `None`: every record is in
    /// the single period.
    pub date: Option<String>,
    pub stock: bool,
}

impl Periods {
    /// The single period of a table without `date`.
    pub fn fixed(p: RefPeriod) -> Self {
        Periods {
            list: vec![p],
            freq: p.freq,
            date: None,
            stock: p.stock,
        }
    }

    /// The index of the period holding `d`, if any (the list is sorted and disjoint).
    pub fn place(&self, d: NaiveDate) -> Placed {
        match self.list.first() {
            Some(first) if d < first.start => return Placed::Before,
            None => return Placed::After,
            _ => {}
        }
        let i = self.list.partition_point(|p| p.start <= d);
        match i.checked_sub(1).map(|i| (i, &self.list[i])) {
            Some((i, p)) if p.contains(d) => Placed::In(i),
            _ if self.list.last().is_some_and(|l| d > l.end) => Placed::After,
            _ => Placed::Gap,
        }
    }
}

/// Where a record's date falls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    In(usize),
    Before,
    After,
    /// Between two declared periods (a series with holes is not declared, but a range list
    /// could have them).
    Gap,
}

/// The period starting on `start` of a frequency.
fn period_at(start: NaiveDate, freq: Freq) -> Option<RefPeriod> {
    let months = match freq {
        Freq::Year => 12,
        Freq::Quarter => 3,
        Freq::Month => 1,
        Freq::Range => return None,
    };
    let end = start.checked_add_months(Months::new(months))?.pred_opt()?;
    Some(RefPeriod {
        start,
        end,
        freq,
        stock: false,
    })
}

/// Parse `2024`, `2024-Q1` or `2024-03` into a period.
pub fn parse_label(s: &str) -> Option<RefPeriod> {
    let s = s.trim();
    if let Ok(y) = s.parse::<i32>() {
        if !(1000..=9999).contains(&y) {
            return None;
        }
        return period_at(NaiveDate::from_ymd_opt(y, 1, 1)?, Freq::Year);
    }
    let (y, rest) = s.split_once('-')?;
    let y: i32 = y.parse().ok().filter(|y| (1000..=9999).contains(y))?;
    if let Some(q) = rest.strip_prefix('Q') {
        let q: u32 = q.parse().ok().filter(|q| (1..=4).contains(q))?;
        return period_at(
            NaiveDate::from_ymd_opt(y, 3 * (q - 1) + 1, 1)?,
            Freq::Quarter,
        );
    }
    if rest.len() != 2 {
        return None;
    }
    let m: u32 = rest.parse().ok().filter(|m| (1..=12).contains(m))?;
    period_at(NaiveDate::from_ymd_opt(y, m, 1)?, Freq::Month)
}

/// What the spec says of a table's periods, before the table's kind is known.
#[derive(Debug, Clone)]
pub(crate) struct Declared {
    pub list: Vec<RefPeriod>,
    pub freq: Freq,
    pub date: Option<String>,
}

/// Read a `period` value (at `key`, for messages). `None` after pushing the problems.
pub(crate) fn declared(v: &Value, key: &str, cx: &mut Ctx<'_>) -> Option<Declared> {
    match v {
        Value::String(s) => match parse_label(s) {
            Some(p) => Some(Declared {
                list: vec![p],
                freq: p.freq,
                date: None,
            }),
            None => {
                cx.push(
                    key,
                    "a period is a year (\"2024\"), a quarter (\"2024-Q1\"), a month (\"2024-03\"), or a table { every, from, to, date } / { start, end, date }",
                );
                None
            }
        },
        Value::Table(t) => {
            let t = Section::new(t, key);
            let declared = declared_table(&t, key, cx);
            t.finish(cx);
            declared
        }
        _ => {
            cx.push(
                key,
                "write a period (\"2024\") or a table { every, from, to, date } / { start, end, date }",
            );
            None
        }
    }
}

/// A `period` table: `{ start, end }` or a series `{ every, from, to }`, with an optional `date`.
fn declared_table(t: &Section<'_>, key: &str, cx: &mut Ctx<'_>) -> Option<Declared> {
    let date = match t.get("date") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            cx.push(
                format!("{key}.date"),
                "must name a date field of the source",
            );
            None
        }
    };
    if t.has("start") || t.has("end") {
        for k in ["every", "from", "to"] {
            if t.get(k).is_some() {
                cx.push(
                    format!("{key}.{k}"),
                    "a period is either { start, end } or a series { every, from, to }",
                );
            }
        }
        let s = t
            .get("start")
            .and_then(|v| cx.date(v, &format!("{key}.start")));
        let e = t.get("end").and_then(|v| cx.date(v, &format!("{key}.end")));
        return match (s, e) {
            (Some(start), Some(end)) if start <= end => {
                let whole_year = start.ordinal() == 1
                    && end.month() == 12
                    && end.day() == 31
                    && start.year() == end.year();
                let p = RefPeriod {
                    start,
                    end,
                    freq: if whole_year { Freq::Year } else { Freq::Range },
                    stock: false,
                };
                Some(Declared {
                    list: vec![p],
                    freq: p.freq,
                    date,
                })
            }
            (Some(_), Some(_)) => {
                cx.push(key.to_string(), "start is after end");
                None
            }
            _ => {
                cx.push(key.to_string(), "needs both `start` and `end`");
                None
            }
        };
    }
    let bounds = [("from", t.get("from")), ("to", t.get("to"))];
    let freq = match t.get("every").and_then(Value::as_str) {
        Some("year") => Freq::Year,
        Some("quarter") => Freq::Quarter,
        Some("month") => Freq::Month,
        _ => {
            cx.push(
                format!("{key}.every"),
                "required: \"year\", \"quarter\" or \"month\"",
            );
            return None;
        }
    };
    let bound = |(k, v): (&str, Option<&Value>), cx: &mut Ctx<'_>| -> Option<RefPeriod> {
        let s = match v {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Integer(i)) => i.to_string(),
            _ => {
                cx.push(
                    format!("{key}.{k}"),
                    "required: a period of the series, e.g. \"2014\", \"2014-Q1\" or \"2014-01\"",
                );
                return None;
            }
        };
        match parse_label(&s) {
            Some(p) if p.freq == freq => Some(p),
            _ => {
                cx.push(
                    format!("{key}.{k}"),
                    format!(
                        "`{}` is not a {} (write {})",
                        super::cap(&s),
                        match freq {
                            Freq::Year => "year",
                            Freq::Quarter => "quarter",
                            _ => "month",
                        },
                        match freq {
                            Freq::Year => "\"2014\"",
                            Freq::Quarter => "\"2014-Q1\"",
                            _ => "\"2014-01\"",
                        }
                    ),
                );
                None
            }
        }
    };
    let [from, to] = bounds;
    let from = bound(from, cx);
    let to = bound(to, cx);
    let (from, to) = (from?, to?);
    if from.start > to.start {
        cx.push(key.to_string(), "`from` is after `to`");
        return None;
    }
    let mut list = vec![from];
    while let Some(last) = list.last().copied() {
        if last.start >= to.start {
            break;
        }
        if list.len() >= MAX_PERIODS {
            cx.push(
                key.to_string(),
                format!("a series holds at most {MAX_PERIODS} periods"),
            );
            return None;
        }
        list.push(period_at(last.end.succ_opt()?, freq)?);
    }
    Some(Declared { list, freq, date })
}

impl Declared {
    /// The periods of a stock: one stock date, the last day of each period.
    pub fn into_stock(self) -> Periods {
        Periods {
            list: self
                .list
                .into_iter()
                .map(|p| RefPeriod { stock: true, ..p })
                .collect(),
            freq: self.freq,
            date: None,
            stock: true,
        }
    }

    pub fn into_events(self, date: Option<String>) -> Periods {
        Periods {
            list: self.list,
            freq: self.freq,
            date,
            stock: false,
        }
    }
}

/// The table folder of a period's key (`ref_year=2024` → `2024`): what `migstat audit` finds
/// from a ledger's folder.
pub fn partition_of_key(key: &str) -> String {
    key.split_once('=').map_or(key, |(_, v)| v).to_string()
}

/// The value of a period's typed column ([`RefPeriod::typed_column`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeriodValue {
    Year(i64),
    Text(String),
    Date(NaiveDate),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn labels_follow_sdmx() {
        assert_eq!(parse_label("2024").unwrap().label(), "2024");
        let q = parse_label("2024-Q3").unwrap();
        assert_eq!((q.start, q.end), (d("2024-07-01"), d("2024-09-30")));
        assert_eq!(q.label(), "2024-Q3");
        assert_eq!(q.key(), "ref_quarter=2024-Q3");
        assert_eq!(q.partition(), "2024-Q3");
        assert_eq!(
            q.typed_column(),
            ("ref_quarter", PeriodValue::Text("2024-Q3".into()))
        );
        let m = parse_label("2024-02").unwrap();
        assert_eq!((m.start, m.end), (d("2024-02-01"), d("2024-02-29")));
        assert_eq!(m.label(), "2024-02");
        let s = RefPeriod {
            stock: true,
            ..parse_label("2023").unwrap()
        };
        assert_eq!(s.label(), "2023-12-31");
        assert_eq!(s.key(), "ref_date=2023-12-31");
        assert_eq!(s.partition(), "2023-12-31");
        let r = RefPeriod {
            start: d("2018-03-01"),
            end: d("2019-02-28"),
            freq: Freq::Range,
            stock: false,
        };
        assert_eq!(r.label(), "2018-03-01/P365D");
        assert_eq!(r.column(), "2018-03-01/2019-02-28");
        for bad in ["24", "2024-Q5", "2024-13", "2024-1", "x"] {
            assert!(parse_label(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_period_is_provisional_until_its_lag_has_passed() {
        let y = parse_label("2024").unwrap();
        assert!(!y.is_provisional(d("2024-12-31"), 0));
        assert!(y.is_provisional(d("2024-12-30"), 0));
        assert!(y.is_provisional(d("2025-03-30"), 3));
        assert!(!y.is_provisional(d("2025-03-31"), 3));
    }

    #[test]
    fn records_are_placed_by_their_date() {
        let list: Vec<RefPeriod> = ["2020", "2021", "2022"]
            .iter()
            .map(|y| parse_label(y).unwrap())
            .collect();
        let p = Periods {
            list,
            freq: Freq::Year,
            date: Some("d".into()),
            stock: false,
        };
        assert_eq!(p.place(d("2019-12-31")), Placed::Before);
        assert_eq!(p.place(d("2020-01-01")), Placed::In(0));
        assert_eq!(p.place(d("2021-12-31")), Placed::In(1));
        assert_eq!(p.place(d("2022-06-30")), Placed::In(2));
        assert_eq!(p.place(d("2023-01-01")), Placed::After);
    }
}
