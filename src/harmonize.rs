//! Harmonize: brings validated records onto standard code lists and derives the variables every
//! table is disaggregated by.
//!
//! Input: typed columns of accepted records (a birth date, a single-year age) and the code lists
//! in `schemas/codelists/`. Output: standard codes — age in completed years at a reference date,
//! and any age banding of it.
//!
//! So far this module holds the derivations (age at a date, bandings); crosswalks of raw codes
//! and the stage's place in the runner come next (issue 3). Bandings are always derived from
//! single-year age, never from a producer's own bands, because producers' bands do not nest.

use std::path::Path;

use chrono::{Datelike, NaiveDate};

use crate::error::{Error, Result};

/// Age in completed years at `at` of a person born on `birth`; `None` if `birth` is after `at`.
///
/// A birthday not yet reached in `at`'s year counts one year less. A 29 February birthday is
/// reached on 1 March in non-leap years (on 28 February the person is still a year younger).
pub fn age_at(birth: NaiveDate, at: NaiveDate) -> Option<u32> {
    if birth > at {
        return None;
    }
    let mut years = at.year() - birth.year();
    if (at.month(), at.day()) < (birth.month(), birth.day()) {
        years -= 1;
    }
    u32::try_from(years).ok()
}

/// One banding of single-year age (e.g. UNHCR's 0-4, 5-11, 12-17, 18-59, 60+), from `age_bands.csv`.
#[derive(Debug, Clone)]
pub struct Banding {
    pub id: String,
    /// (lowest age, highest age or `None` for the open last band, code), in order.
    pub bands: Vec<(u32, Option<u32>, String)>,
}

/// Code for an unknown age, in every banding.
pub const UNKNOWN: &str = "_U";

impl Banding {
    /// The band code of `age`; [`UNKNOWN`] when the age is unknown or below every band.
    pub fn code(&self, age: Option<u32>) -> &str {
        let Some(a) = age else { return UNKNOWN };
        self.bands
            .iter()
            .find(|(lo, hi, _)| a >= *lo && hi.is_none_or(|h| a <= h))
            .map_or(UNKNOWN, |b| b.2.as_str())
    }

    /// Read every banding of an `age_bands.csv` code list (rows without ages, such as `_T` and
    /// `_U`, are not bands). Checks that each banding's bands are contiguous from 0 and that only
    /// the last is open.
    pub fn load_all(path: &Path) -> Result<Vec<Banding>> {
        let bad = |msg: String| Error::Usage(format!("{}: {msg}", path.display()));
        let mut rdr = csv::Reader::from_path(path).map_err(|e| bad(e.to_string()))?;
        let header = rdr.headers().map_err(|e| bad(e.to_string()))?.clone();
        let col = |name: &str| {
            header
                .iter()
                .position(|h| h == name)
                .ok_or_else(|| bad(format!("no column `{name}`")))
        };
        let (cb, cc, cmin, cmax) = (
            col("banding")?,
            col("code")?,
            col("min_age")?,
            col("max_age")?,
        );
        let mut out: Vec<Banding> = Vec::new();
        for (i, rec) in rdr.records().enumerate() {
            let rec = rec.map_err(|e| bad(e.to_string()))?;
            let line = i + 2;
            if rec[cmin].is_empty() {
                continue;
            }
            let lo: u32 = rec[cmin].parse().map_err(|_| {
                bad(format!(
                    "line {line}: min_age `{}` is not an age",
                    &rec[cmin]
                ))
            })?;
            let hi: Option<u32> = match &rec[cmax] {
                "" => None,
                s => Some(
                    s.parse()
                        .map_err(|_| bad(format!("line {line}: max_age `{s}` is not an age")))?,
                ),
            };
            let id = &rec[cb];
            let banding = match out.iter_mut().find(|b| b.id == id) {
                Some(b) => b,
                None => {
                    out.push(Banding {
                        id: id.to_string(),
                        bands: Vec::new(),
                    });
                    out.last_mut().ok_or_else(|| {
                        Error::Internal("banding list is empty after a push".into())
                    })?
                }
            };
            let expected = match banding.bands.last() {
                None => 0,
                Some((_, Some(h), _)) => h + 1,
                Some((_, None, _)) => {
                    return Err(bad(format!(
                        "line {line}: banding `{id}` has a band after its open band"
                    )));
                }
            };
            if lo != expected || hi.is_some_and(|h| h < lo) {
                return Err(bad(format!(
                    "line {line}: banding `{id}` must continue at age {expected}"
                )));
            }
            banding.bands.push((lo, hi, rec[cc].to_string()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn age_in_completed_years() {
        let ref_date = d(2024, 12, 31);
        assert_eq!(age_at(d(2000, 3, 1), ref_date), Some(24));
        assert_eq!(
            age_at(d(2000, 12, 31), ref_date),
            Some(24),
            "birthday on the reference date"
        );
        assert_eq!(age_at(d(2001, 1, 1), ref_date), Some(23));
        assert_eq!(age_at(d(2024, 12, 31), ref_date), Some(0));
        assert_eq!(
            age_at(d(2025, 1, 1), ref_date),
            None,
            "born after the reference date"
        );
    }

    #[test]
    fn leap_day_birthdays_turn_over_on_the_first_of_march() {
        let born = d(2000, 2, 29);
        assert_eq!(age_at(born, d(2023, 2, 28)), Some(22));
        assert_eq!(age_at(born, d(2023, 3, 1)), Some(23));
        assert_eq!(age_at(born, d(2024, 2, 28)), Some(23));
        assert_eq!(age_at(born, d(2024, 2, 29)), Some(24));
    }

    #[test]
    fn the_shipped_bandings_band_ages_as_published() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/codelists/age_bands.csv");
        let all = Banding::load_all(&path).unwrap();
        let get = |id: &str| all.iter().find(|b| b.id == id).unwrap();
        let (desa, unhcr, broad, child) =
            (get("un_desa_5y"), get("unhcr"), get("broad"), get("child"));
        let row = |age: Option<u32>| {
            [
                desa.code(age),
                unhcr.code(age),
                broad.code(age),
                child.code(age),
            ]
        };
        assert_eq!(row(Some(0)), ["Y0T4", "Y0T4", "Y_LT15", "Y_LT18"]);
        assert_eq!(row(Some(14)), ["Y10T14", "Y12T17", "Y_LT15", "Y_LT18"]);
        assert_eq!(row(Some(17)), ["Y15T19", "Y12T17", "Y15T24", "Y_LT18"]);
        assert_eq!(row(Some(18)), ["Y15T19", "Y18T59", "Y15T24", "Y_GE18"]);
        assert_eq!(row(Some(60)), ["Y60T64", "Y_GE60", "Y25T64", "Y_GE18"]);
        assert_eq!(row(Some(74)), ["Y70T74", "Y_GE60", "Y_GE65", "Y_GE18"]);
        assert_eq!(row(Some(75)), ["Y_GE75", "Y_GE60", "Y_GE65", "Y_GE18"]);
        assert_eq!(row(Some(110)), ["Y_GE75", "Y_GE60", "Y_GE65", "Y_GE18"]);
        assert_eq!(row(None), ["_U", "_U", "_U", "_U"]);
    }

    #[test]
    fn a_banding_with_a_gap_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bands.csv");
        std::fs::write(&p, "banding,code,min_age,max_age\nx,Y0T4,0,4\nx,Y6T9,6,9\n").unwrap();
        let err = Banding::load_all(&p).unwrap_err().to_string();
        assert!(
            err.contains("line 3") && err.contains("continue at age 5"),
            "{err}"
        );
    }
}
