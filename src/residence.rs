//! Usual residence from person-linked border crossings: which crossings are migrations.
//!
//! Input: one person's crossings after another, each with its date and whether it is an arrival
//! or a departure, sorted by person and date (ties in delivery order); a [`ResidenceRule`]; and
//! the last day the deliveries cover. Output: one [`Outcome`] per crossing — an immigration, an
//! emigration, not a migration, or not decidable yet from what has been observed.
//!
//! A crossing is *long-term* when the person then stays on its side of the border (in the
//! country after an arrival, away after a departure) as the rule asks: 12 months (365 days)
//! without a crossing back, or 365 days in total within the following 16 calendar months.
//! Between two crossings a person is on the side the earlier one took them to. Residence
//! follows the long-term crossings: resident after a long-term arrival, non-resident after a
//! long-term departure; before the first, as the person's first crossing says (someone first
//! seen leaving was living here, someone first seen arriving was living abroad). A migration is
//! a long-term arrival of a non-resident (immigration) or a long-term departure of a resident
//! (emigration). Nothing here reads a clock or depends on the order persons come in.

use chrono::{Months, NaiveDate};

use crate::spec::ResidenceRule;

/// What a crossing is under the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Immigration,
    Emigration,
    /// A short stay or absence, or a long-term crossing that changes no residence (a resident
    /// coming home, a non-resident leaving).
    NotMigration,
    /// The deliveries end before the rule can decide (or before an earlier crossing that sets
    /// the person's residence could be decided).
    Undetermined,
}

/// Whether a stay is long-term: `Some(yes)` once decided, `None` while the rule's window runs
/// past the observed days.
fn long_term(
    rule: ResidenceRule,
    i: usize,
    dates: &[i32],
    arrival: &[bool],
    end: usize,
    observed_end: i32,
) -> Option<bool> {
    const YEAR: i64 = 365;
    let d = dates[i];
    let side = arrival[i];
    // The day the person crosses back (leaves the side this crossing took them to), if seen.
    let back = (i + 1..end).find(|&j| arrival[j] != side).map(|j| dates[j]);
    match rule {
        ResidenceRule::Continuous12 => {
            let until = back.unwrap_or(observed_end);
            if i64::from(until) - i64::from(d) >= YEAR {
                Some(true)
            } else if back.is_some() {
                Some(false)
            } else {
                None
            }
        }
        ResidenceRule::TwelveOfSixteen => {
            let window_end = crate::calendar::date_of_days(d)
                .and_then(|x| x.checked_add_months(Months::new(16)))
                .map(crate::calendar::days_of_date)?;
            let seen_end = window_end.min(observed_end);
            // Days on this crossing's side within [d, seen_end): segments between crossings.
            let mut days = 0i64;
            let mut from = d;
            let mut on_side = true;
            for j in i + 1..end {
                let to = dates[j].min(seen_end);
                if on_side && to > from {
                    days += i64::from(to - from);
                }
                if dates[j] >= seen_end {
                    on_side = false;
                    from = seen_end;
                    break;
                }
                from = from.max(dates[j]);
                on_side = arrival[j] == side;
            }
            if on_side && seen_end > from {
                days += i64::from(seen_end - from);
            }
            let unseen = i64::from(window_end) - i64::from(seen_end);
            if days >= YEAR {
                Some(true)
            } else if unseen <= 0 || days + unseen < YEAR {
                Some(false)
            } else {
                None
            }
        }
    }
}

/// The consecutive row ranges of one person each (`persons` grouped, as the callers sort them).
fn person_runs<P: PartialEq>(persons: &[P]) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= persons.len() {
            return None;
        }
        let mut end = start + 1;
        while end < persons.len() && persons[end] == persons[start] {
            end += 1;
        }
        let run = start..end;
        start = end;
        Some(run)
    })
}

/// Codes of the duration of stay ([`durations`]): the stay (after an arrival) or absence
/// (after a departure) that begins with a crossing, in completed months, with labels (en, fr, ar).
pub const DURATIONS: [(&str, &str, &str, &str); 5] = [
    (
        "M_LT12",
        "Less than 12 months",
        "Moins de 12 mois",
        "أقل من 12 شهرًا",
    ),
    (
        "M12T23",
        "12 to 23 months",
        "12 à 23 mois",
        "من 12 إلى 23 شهرًا",
    ),
    (
        "M24T35",
        "24 to 35 months",
        "24 à 35 mois",
        "من 24 إلى 35 شهرًا",
    ),
    (
        "M_GE36",
        "36 months or more",
        "36 mois ou plus",
        "36 شهرًا فأكثر",
    ),
    (
        "_U",
        "Still ongoing, length not known yet",
        "En cours, durée pas encore connue",
        "مستمرة، مدتها غير معروفة بعد",
    ),
];

/// The duration of the stay (after an arrival) or absence (after a departure) that begins with
/// each crossing, until the person crosses back: completed calendar months, banded as
/// [`DURATIONS`]. A stay still ongoing after `observed_to` is `M_GE36` once it has lasted 36
/// months, else `_U` (its band is not known yet). Same input as [`classify`].
pub fn durations<P: PartialEq>(
    persons: &[P],
    dates: &[i32],
    arrival: &[bool],
    observed_to: NaiveDate,
) -> Vec<&'static str> {
    let n = dates.len();
    let observed_end = crate::calendar::days_of_date(observed_to) + 1;
    let months = |from: i32, to: i32| -> u32 {
        let (Some(f), Some(t)) = (
            crate::calendar::date_of_days(from),
            crate::calendar::date_of_days(to),
        ) else {
            return 0;
        };
        let mut m = 0;
        while f
            .checked_add_months(Months::new(m + 1))
            .is_some_and(|x| x <= t)
        {
            m += 1;
        }
        m
    };
    let mut out = Vec::with_capacity(n);
    for run in person_runs(persons) {
        let end = run.end;
        for i in run {
            let back = (i + 1..end)
                .find(|&j| arrival[j] != arrival[i])
                .map(|j| dates[j]);
            let m = months(dates[i], back.unwrap_or(observed_end));
            out.push(match (m, back.is_some()) {
                (36.., _) => DURATIONS[3].0,
                (_, false) => DURATIONS[4].0,
                (0..12, true) => DURATIONS[0].0,
                (12..24, true) => DURATIONS[1].0,
                (_, true) => DURATIONS[2].0,
            });
        }
    }
    out
}

/// The outcome of every crossing. `persons` groups the rows (equal values are one person, in
/// consecutive rows); `dates` are days since 1970-01-01, ascending within a person; `arrival`
/// is true for an arrival, false for a departure. Crossings after `observed_to` must have been
/// left out by the caller.
pub fn classify<P: PartialEq>(
    persons: &[P],
    dates: &[i32],
    arrival: &[bool],
    rule: ResidenceRule,
    observed_to: NaiveDate,
) -> Vec<Outcome> {
    let n = dates.len();
    let observed_end = crate::calendar::days_of_date(observed_to) + 1;
    let mut out = Vec::with_capacity(n);
    for run in person_runs(persons) {
        let (start, end) = (run.start, run.end);
        // Residence before each crossing: Some(resident) or None (not decidable yet).
        let mut resident = Some(!arrival[start]);
        for i in run {
            let changes = |r: bool| arrival[i] != r;
            let lt = long_term(rule, i, dates, arrival, end, observed_end);
            let outcome = match (lt, resident) {
                (Some(false), _) => Outcome::NotMigration,
                (Some(true), Some(r)) if changes(r) => {
                    if arrival[i] {
                        Outcome::Immigration
                    } else {
                        Outcome::Emigration
                    }
                }
                (Some(true), Some(_)) => Outcome::NotMigration,
                (None, Some(r)) if !changes(r) => Outcome::NotMigration,
                (Some(true), None) | (None, _) => Outcome::Undetermined,
            };
            resident = match lt {
                Some(true) => Some(arrival[i]),
                Some(false) => resident,
                None => resident.filter(|&r| !changes(r)),
            };
            out.push(outcome);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::Outcome::*;
    use super::*;

    fn d(s: &str) -> i32 {
        crate::calendar::days_of_date(NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap())
    }

    /// One person's crossings, as (date, "IN" | "OUT").
    fn run(rule: ResidenceRule, to: &str, crossings: &[(&str, &str)]) -> Vec<super::Outcome> {
        let persons = vec![1; crossings.len()];
        let dates: Vec<i32> = crossings.iter().map(|c| d(c.0)).collect();
        let arrival: Vec<bool> = crossings.iter().map(|c| c.1 == "IN").collect();
        let to = NaiveDate::parse_from_str(to, "%Y-%m-%d").unwrap();
        classify(&persons, &dates, &arrival, rule, to)
    }

    use ResidenceRule::{Continuous12 as C12, TwelveOfSixteen as R1216};

    #[test]
    fn a_year_without_interruption_is_long_term_a_day_less_is_not() {
        // Arrives 2022-03-01; leaves 2023-03-01 (365 days later): immigration under both rules,
        // and a resident leaving for good (abroad until the data end): emigration.
        let x = [("2022-03-01", "IN"), ("2023-03-01", "OUT")];
        assert_eq!(run(C12, "2024-12-31", &x), [Immigration, Emigration]);
        assert_eq!(run(R1216, "2024-12-31", &x), [Immigration, Emigration]);
        // Leaves a day earlier: 364 days, then abroad for good.
        let x = [("2022-03-01", "IN"), ("2023-02-28", "OUT")];
        assert_eq!(run(C12, "2024-12-31", &x), [NotMigration, NotMigration]);
        assert_eq!(run(R1216, "2024-12-31", &x), [NotMigration, NotMigration]);
    }

    #[test]
    fn twelve_of_sixteen_adds_up_stays_that_twelve_months_do_not() {
        // Arrives 2022-01-10, 200 days in, 30 days out, back 2022-08-28 to 2023-01-10 (135
        // days): 335 days in 16 months (2022-01-10 .. 2023-05-10) plus from 2023-02-09 to
        // 2023-05-10 (90 days): 425 ≥ 365 → immigrant under 12/16; never 365 days in a row.
        let x = [
            ("2022-01-10", "IN"),
            ("2022-07-29", "OUT"), // 200 days after arrival
            ("2022-08-28", "IN"),  // 30 days away
            ("2023-01-10", "OUT"), // 135 days
            ("2023-02-09", "IN"),  // 30 days away, then stays
        ];
        let r = run(R1216, "2024-12-31", &x);
        assert_eq!(r[0], Immigration);
        // Afterwards resident: none of the later crossings is a migration.
        assert_eq!(&r[1..], [NotMigration; 4]);
        let r = run(C12, "2024-12-31", &x);
        // Under 12 months in a row only the last arrival (a stay with no end in sight) counts.
        assert_eq!(
            r,
            [
                NotMigration,
                NotMigration,
                NotMigration,
                NotMigration,
                Immigration
            ]
        );
    }

    #[test]
    fn emigration_needs_a_resident() {
        // First seen leaving: resident. Away 2022-05-01 → 2023-09-01 (488 days): emigration;
        // back 2023-09-01 for good: immigration (a returning emigrant).
        let x = [("2022-05-01", "OUT"), ("2023-09-01", "IN")];
        assert_eq!(run(C12, "2024-12-31", &x), [Emigration, Immigration]);
        // A visitor first seen arriving, leaving for good: no emigration (never resident).
        let x = [("2022-05-01", "IN"), ("2022-06-01", "OUT")];
        assert_eq!(run(C12, "2024-12-31", &x), [NotMigration, NotMigration]);
        // A resident's short trips are not migrations.
        let x = [
            ("2022-05-01", "OUT"),
            ("2022-05-20", "IN"),
            ("2023-01-02", "OUT"),
            ("2023-01-09", "IN"),
        ];
        assert_eq!(run(R1216, "2024-12-31", &x), [NotMigration; 4]);
    }

    #[test]
    fn what_the_deliveries_cannot_decide_is_undetermined() {
        // Arrives 2024-06-01, still here on 2024-12-31 (213 days): the window runs to
        // 2025-10-01 (12/16) or 2025-06-01 (12 months).
        let x = [("2024-06-01", "IN")];
        assert_eq!(run(R1216, "2024-12-31", &x), [Undetermined]);
        assert_eq!(run(C12, "2024-12-31", &x), [Undetermined]);
        // Arrived 2023-12-31: 366 days observed by 2024-12-31 → decided.
        let x = [("2023-12-31", "IN")];
        assert_eq!(run(C12, "2024-12-31", &x), [Immigration]);
        // A resident coming home cannot be a migration, decided or not; and they stay resident.
        let x = [
            ("2024-05-01", "OUT"),
            ("2024-06-01", "IN"),
            ("2024-12-01", "OUT"),
        ];
        assert_eq!(
            run(R1216, "2024-12-31", &x),
            [NotMigration, NotMigration, Undetermined]
        );
        // 12/16: leaves 2024-01-15, back 2024-03-01 (46 days away) and still here on
        // 2024-12-31: the 16 months to 2025-05-15 can hold at most 46 days away plus the 134
        // unobserved days from 2025-01-01: 180 < 365 → decided: not an emigration.
        let x = [("2024-01-15", "OUT"), ("2024-03-01", "IN")];
        assert_eq!(run(R1216, "2024-12-31", &x), [NotMigration, NotMigration]);
    }

    #[test]
    fn durations_count_completed_months_until_the_crossing_back() {
        let persons = [1; 5];
        let dates: Vec<i32> = [
            "2021-01-31",
            "2022-01-30",
            "2022-02-28",
            "2023-03-01",
            "2024-06-01",
        ]
        .iter()
        .map(|s| d(s))
        .collect();
        // In, out after 11 months 30 days (< 12); away 29 days; in on 28 Feb 2022 (28 Feb 2023
        // is 12 months; out on 1 March); away 15 months; in on 2024-06-01 and still here on
        // 2024-12-31 after 7 months: not known yet.
        let arrival = [true, false, true, false, true];
        let to = NaiveDate::from_ymd_opt(2024, 12, 31).unwrap();
        assert_eq!(
            durations(&persons, &dates, &arrival, to),
            ["M_LT12", "M_LT12", "M12T23", "M12T23", "_U"]
        );
        // Ongoing for 36 months: the band is known.
        let x = [d("2021-06-01")];
        assert_eq!(durations(&[1], &x, &[true], to), ["M_GE36"]);
    }

    #[test]
    fn persons_are_apart() {
        // Person 1 arrives and stays; person 2 arrives a week before the data end.
        let persons = ["a", "a", "b"];
        let dates = [d("2022-01-01"), d("2022-01-05"), d("2024-12-24")];
        let arrival = [true, true, true];
        let to = NaiveDate::from_ymd_opt(2024, 12, 31).unwrap();
        let r = classify(&persons, &dates, &arrival, C12, to);
        // Two arrivals in a row (a missed exit): the first is long-term (no crossing back),
        // and makes the person resident; the second changes nothing.
        assert_eq!(r, [Immigration, NotMigration, Undetermined]);
    }

    #[test]
    fn a_window_ending_on_a_short_month_is_clamped() {
        // 2022-10-31 + 16 months = 2024-02-29 (leap year, clamped): 486 days.
        let x = [("2022-10-31", "OUT"), ("2023-11-01", "IN")]; // 366 days away
        assert_eq!(run(R1216, "2024-12-31", &x), [Emigration, Immigration]);
    }
}
