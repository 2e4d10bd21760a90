//! Calendar arithmetic shared by the stages: dates as Arrow stores them (`Date32`, days since
//! 1970-01-01) and age in completed years.
//!
//! A leaf module: it depends on nothing in the crate. (The sample generator keeps its own date
//! arithmetic, so the tests it feeds do not check this code against itself.)

use chrono::{Datelike, NaiveDate};

/// Days from 0001-01-01 (chrono's day 1 of the common era) to 1970-01-01.
const UNIX_EPOCH_CE_DAYS: i32 = 719_163;

/// A date stored as days since 1970-01-01 (Arrow's `Date32`).
pub fn date_of_days(days: i32) -> Option<NaiveDate> {
    NaiveDate::from_num_days_from_ce_opt(days.checked_add(UNIX_EPOCH_CE_DAYS)?)
}

/// Days since 1970-01-01 of a date (the inverse of [`date_of_days`]).
pub fn days_of_date(d: NaiveDate) -> i32 {
    d.num_days_from_ce() - UNIX_EPOCH_CE_DAYS
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn day_numbers_are_arrow_date32() {
        // Values by hand: 1970-01-01 is day 0, 2000-03-01 is day 11 017, the day before 1970 is -1.
        assert_eq!(days_of_date(d("1970-01-01")), 0);
        assert_eq!(days_of_date(d("2000-03-01")), 11_017);
        assert_eq!(date_of_days(-1), Some(d("1969-12-31")));
        assert_eq!(date_of_days(i32::MAX), None);
    }

    #[test]
    fn ages_count_completed_years() {
        assert_eq!(age_at(d("2000-06-15"), d("2024-06-14")), Some(23));
        assert_eq!(age_at(d("2000-06-15"), d("2024-06-15")), Some(24));
        assert_eq!(age_at(d("2000-02-29"), d("2023-02-28")), Some(22));
        assert_eq!(age_at(d("2000-02-29"), d("2023-03-01")), Some(23));
        assert_eq!(age_at(d("2024-01-02"), d("2024-01-01")), None);
    }
}
