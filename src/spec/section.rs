//! How the spec is read: [`Ctx`] collects every problem of a spec (file, key, message), and
//! [`Section`] is one TOML table as its reader sees it.
//!
//! A `Section` remembers every key its reader asks for; when the reader is done,
//! [`Section::finish`] reports each key it never asked for. The keys a section allows are
//! therefore exactly the keys its code reads — under the branch the section takes (a stock
//! table's keys, a code column's keys) — and there is no list of allowed keys to keep in step
//! with the readers. A key that only another branch reads (`valid_from` on a count table, `end`
//! on a flow counted `first = "ever"`) is an error, not silently ignored.
//!
//! Input: parsed TOML tables. Output: values for the readers, and [`SpecIssue`]s.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::Path;

use chrono::NaiveDate;
use toml::{Table, Value};

use crate::error::SpecIssue;

/// At most `max` characters of `s`, marked `… (truncated)` when cut.
pub(crate) fn cap_to(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some((i, _)) => format!("{}… (truncated)", &s[..i]),
    }
}

/// A spec value quoted in a message: at most 100 characters.
pub(crate) fn cap(s: &str) -> String {
    cap_to(s, 100)
}

/// The problems found in a spec so far, all reported at once.
pub(crate) struct Ctx<'a> {
    pub(crate) file: &'a Path,
    pub(crate) issues: Vec<SpecIssue>,
}

/// One TOML table of the spec, as its reader reads it: each key asked for is remembered, and
/// [`Section::finish`] reports the keys nobody asked for.
pub(crate) struct Section<'t> {
    table: &'t Table,
    /// The dotted path of the table in the spec (`tables.permits`); empty for the top level.
    path: String,
    asked: RefCell<BTreeSet<String>>,
}

impl<'t> Section<'t> {
    pub(crate) fn new(table: &'t Table, path: impl Into<String>) -> Self {
        Section {
            table,
            path: path.into(),
            asked: RefCell::new(BTreeSet::new()),
        }
    }

    /// The dotted path of `key` in this section, as issues name it.
    pub(crate) fn key(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The section's own path (empty at the top level).
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// The value of `key`, which this section now reads.
    pub(crate) fn get(&self, key: &str) -> Option<&'t Value> {
        self.asked.borrow_mut().insert(key.to_string());
        self.table.get(key)
    }

    /// Whether `key` is present, without reading it: for choosing a branch, whose reader then
    /// reads the keys it uses. A key only ever probed is still unknown.
    pub(crate) fn has(&self, key: &str) -> bool {
        self.table.contains_key(key)
    }

    /// The whole table, every key read: for a section whose keys are names (of derived
    /// columns, sources, tables) rather than settings.
    pub(crate) fn names(&self) -> &'t Table {
        self.asked.borrow_mut().extend(self.table.keys().cloned());
        self.table
    }

    /// The table under `key` as a section of its own; a value of another type is reported
    /// (`must be a table`, with `hint`) and reads as absent, so that every other problem is
    /// still found.
    pub(crate) fn sub(&self, key: &str, hint: &str, cx: &mut Ctx<'_>) -> Option<Section<'t>> {
        match self.get(key)? {
            Value::Table(t) => Some(Section::new(t, self.key(key))),
            _ => {
                let message = if hint.is_empty() {
                    "must be a table".to_string()
                } else {
                    format!("must be a table, e.g. {hint}")
                };
                cx.push(self.key(key), message);
                None
            }
        }
    }

    /// Report every key of the table its reader never asked for, naming the keys it did read.
    pub(crate) fn finish(&self, cx: &mut Ctx<'_>) {
        let asked = self.asked.borrow();
        let read = asked
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        for k in self.table.keys().filter(|k| !asked.contains(*k)) {
            let key = if self.path.is_empty() {
                k.clone()
            } else {
                format!("{}.{k}", self.path)
            };
            let message = if read.is_empty() {
                format!("unknown key `{}` (this section reads no key here)", cap(k))
            } else {
                format!("unknown key `{}` (read here: {read})", cap(k))
            };
            cx.push(key, message);
        }
    }
}

impl Ctx<'_> {
    /// Record a problem. Key and message are capped (they may quote spec values).
    pub(crate) fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.issues.push(SpecIssue {
            file: self.file.to_path_buf(),
            key: cap_to(&key.into(), 200),
            message: cap_to(&message.into(), 1000),
        });
    }

    /// A count of at least 1 under `key`, or `default` (also after reporting a bad value).
    pub(crate) fn at_least_one(
        &mut self,
        s: &Section<'_>,
        key: &str,
        default: usize,
        message: &str,
    ) -> usize {
        match s.get(key) {
            None => default,
            Some(v) => match v.as_integer().and_then(|i| usize::try_from(i).ok()) {
                Some(n) if n >= 1 => n,
                _ => {
                    self.push(s.key(key), message);
                    default
                }
            },
        }
    }

    /// The string under `key`: reported when it is not a string, empty, or missing and
    /// `required`.
    pub(crate) fn str<'t>(
        &mut self,
        s: &Section<'t>,
        key: &str,
        required: bool,
    ) -> Option<&'t str> {
        match s.get(key) {
            // An empty name would pass here and fail (or silently match nothing) once the data
            // is read: every string of a spec names something.
            Some(Value::String(v)) if v.trim().is_empty() => {
                self.push(
                    s.key(key),
                    "must not be empty: write the name, or leave the key out where it is optional",
                );
                None
            }
            Some(Value::String(v)) => Some(v),
            Some(_) => {
                self.push(s.key(key), "must be a string");
                None
            }
            None => {
                if required {
                    self.push(s.key(key), "required key is missing");
                }
                None
            }
        }
    }

    /// A number from 0 to 1 under `key`.
    pub(crate) fn fraction(&mut self, s: &Section<'_>, key: &str) -> Option<f64> {
        let v = s.get(key)?;
        match v.as_float().or_else(|| v.as_integer().map(|i| i as f64)) {
            Some(f) if (0.0..=1.0).contains(&f) => Some(f),
            _ => {
                self.push(s.key(key), "must be a number between 0 and 1");
                None
            }
        }
    }

    /// A date written `YYYY-MM-DD` (a TOML date or a string), reported as `key` otherwise.
    pub(crate) fn date(&mut self, v: &Value, key: &str) -> Option<NaiveDate> {
        let parsed = match v {
            Value::Datetime(dt) => dt
                .date
                .filter(|_| dt.time.is_none())
                .and_then(|d| NaiveDate::from_ymd_opt(d.year.into(), d.month.into(), d.day.into())),
            Value::String(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d").ok(),
            _ => None,
        };
        if parsed.is_none() {
            self.push(key, "must be a date written YYYY-MM-DD");
        }
        parsed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx() -> Ctx<'static> {
        Ctx {
            file: Path::new("p.toml"),
            issues: Vec::new(),
        }
    }

    fn issues(cx: &Ctx<'_>) -> Vec<(String, String)> {
        cx.issues
            .iter()
            .map(|i| (i.key.clone(), i.message.clone()))
            .collect()
    }

    #[test]
    fn the_keys_not_read_are_the_unknown_ones() {
        let t: Table = "a = 1\nb = \"x\"\nc = 2\n".parse().unwrap();
        let s = Section::new(&t, "tables.t");
        let mut cx = cx();
        assert_eq!(cx.str(&s, "b", true), Some("x"));
        assert!(s.get("a").is_some());
        assert!(s.get("zzz").is_none()); // asked, absent: not an issue
        s.finish(&mut cx);
        assert_eq!(
            issues(&cx),
            vec![(
                "tables.t.c".to_string(),
                "unknown key `c` (read here: a, b, zzz)".to_string()
            )]
        );
    }

    #[test]
    fn a_probe_does_not_make_a_key_known() {
        let t: Table = "month = \"d\"\nyear = \"d\"\n".parse().unwrap();
        let s = Section::new(&t, "");
        let mut cx = cx();
        assert!(s.has("month") && s.has("year"));
        s.get("month");
        s.finish(&mut cx);
        assert_eq!(issues(&cx).len(), 1);
        assert_eq!(issues(&cx)[0].0, "year");
    }

    #[test]
    fn entries_read_every_key_and_sub_reports_a_non_table() {
        let t: Table = "[x]\nk = 1\n[y]\nk = 2\n".parse().unwrap();
        let s = Section::new(&t, "sources");
        let mut cx = cx();
        assert_eq!(s.names().len(), 2);
        let x = s.sub("x", "", &mut cx).unwrap();
        assert_eq!(x.key("k"), "sources.x.k");
        x.finish(&mut cx); // `k` never read
        s.finish(&mut cx);
        assert_eq!(issues(&cx).len(), 1);
        assert_eq!(issues(&cx)[0].0, "sources.x.k");

        let t: Table = "x = 3\n".parse().unwrap();
        let s = Section::new(&t, "publish");
        let mut cx = super::tests::cx();
        assert!(s.sub("x", "{ a = 1 }", &mut cx).is_none());
        assert_eq!(
            issues(&cx),
            vec![(
                "publish.x".to_string(),
                "must be a table, e.g. { a = 1 }".to_string()
            )]
        );
    }

    #[test]
    fn strings_are_checked_and_capped() {
        let long = "k".repeat(5000);
        let t: Table = format!("e = \" \"\nn = 3\n{long} = 1\n").parse().unwrap();
        let s = Section::new(&t, "p");
        let mut cx = cx();
        assert_eq!(cx.str(&s, "e", false), None);
        assert_eq!(cx.str(&s, "n", false), None);
        assert_eq!(cx.str(&s, "m", true), None);
        s.finish(&mut cx);
        let got = issues(&cx);
        assert_eq!(got[0].1.split(':').next(), Some("must not be empty"));
        assert_eq!(got[1].1, "must be a string");
        assert_eq!(got[2].1, "required key is missing");
        // The unknown 5000-character key is quoted capped, in its key and its message.
        assert!(got[3].0.chars().count() < 250 && got[3].0.ends_with("(truncated)"));
        assert!(got[3].1.chars().count() < 300);
    }
}
