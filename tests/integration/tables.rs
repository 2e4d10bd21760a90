//! Count tables: hand-computed stocks, flows, persons and ages; DuckDB's GROUP BY CUBE on the
//! same harmonized records; and the margin property (every `_T` is the sum of its children).

use crate::Counts;
use std::collections::BTreeMap;

use polars::prelude::*;
use proptest::prelude::*;

use crate::{read_parquet, repo};
use migstat::disaggregate::roll_up;
use migstat::spec::compile;
use migstat::vocab::TOTAL;

/// A table's cells as "dim1|dim2|…" → n, for a table of one period.
fn cells(out: &std::path::Path, table: &str, dims: &[&str]) -> BTreeMap<String, u64> {
    let parts = partitions(out, "restricted", table);
    assert_eq!(parts.len(), 1, "{table}: one period, got {parts:?}");
    cells_at(out, table, &parts[0], dims)
}

/// A table's partition folders in a tier (`restricted` or `public`), sorted.
fn partitions(out: &std::path::Path, tier: &str, table: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(out.join(tier).join("tables").join(table))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    v.sort();
    v
}

/// The cells of one period's partition (e.g. `2024`).
fn cells_at(
    out: &std::path::Path,
    table: &str,
    partition: &str,
    dims: &[&str],
) -> BTreeMap<String, u64> {
    let df = read_parquet(&out.join(format!(
        "restricted/tables/{table}/{partition}/data.parquet"
    )));
    let cols: Vec<Column> = dims
        .iter()
        .map(|d| df.column(d).unwrap().cast(&DataType::String).unwrap())
        .collect();
    let n = df.column("n").unwrap().counts().clone();
    (0..df.height())
        .map(|i| {
            let key: Vec<&str> = cols
                .iter()
                .map(|c| c.str().unwrap().get(i).unwrap())
                .collect();
            (key.join("|"), n.get(i).unwrap())
        })
        .collect()
}

fn expect(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect()
}

/// tests/fixtures/stock_flow/permits.csv, reference date 2024-12-31, period 2024. By hand:
/// - stock: P1 holds T2 (T1 expired), P2 T3, P4 T5 (starts on the date itself), P6 holds T7 and
///   T8 and counts once, under T8 (the later start); P3 expired the day before; P5 starts after.
/// - flow: first permits starting in 2024 are P2's T3, P4's T5 and P6's T7 (P1 started in 2023).
/// - ages at 2024-12-31: P1 born 29 Feb 2000 → 24; P2 31 Dec 1990 → 34 (birthday that day);
///   P3 1 Jan 1991 → 33; P4 31 Dec 2006 → 18 (adult that day); P5 1 Jan 2007 → 17; P6 → 39.
/// - P7's citizenship `ZZZ` is in no code list: quarantined as unmapped_code.
#[test]
fn stocks_flows_persons_and_ages_match_hand_computation() {
    let tmp = tempfile::tempdir().unwrap();
    let plan = compile(&repo().join("tests/fixtures/stock_flow/pipeline.toml")).unwrap();
    let m = crate::run_plan(&plan, tmp.path());
    let s = &m.sources[0];
    assert_eq!(
        (s.rows_read, s.rows_accepted, s.rows_quarantined),
        (9, 8, 1)
    );
    assert_eq!(s.quarantine_by_rule.get("unmapped_code"), Some(&1));
    assert_eq!(
        s.unmapped_codes.len(),
        2,
        "ZZZ quarantined and X mapped to _U are both reported"
    );
    let out = &tmp.path().join("current");
    assert_eq!(
        cells(out, "stock", &["SEX", "TYPE"]),
        expect(&[
            ("F|FAMILY", 1),
            ("F|WORK", 1),
            ("F|_T", 2),
            ("M|FAMILY", 1),
            ("M|STUDY", 1),
            ("M|_T", 2),
            ("_T|FAMILY", 2),
            ("_T|STUDY", 1),
            ("_T|WORK", 1),
            ("_T|_T", 4),
        ])
    );
    assert_eq!(
        cells(out, "flow", &["TYPE"]),
        expect(&[("FAMILY", 1), ("STUDY", 1), ("WORK", 1), ("_T", 3)])
    );
    let persons = cells(out, "persons", &["CHILD", "AGE"]);
    assert_eq!(persons["_T|_T"], 6, "six distinct persons");
    assert_eq!(persons["Y_LT18|_T"], 1);
    for (age, n) in [
        ("17", 1),
        ("18", 1),
        ("24", 1),
        ("33", 1),
        ("34", 1),
        ("39", 1),
    ] {
        assert_eq!(persons[&format!("_T|{age}")], n, "age {age}");
    }
    // Nationals (SEN, as if Senegal reported) and foreigners: T1, T2, T7, T8 are Senegalese,
    // T3–T6 Ivorian or Guinean (T9's ZZZ is quarantined).
    assert_eq!(
        cells(out, "records_by_citizen", &["NATIONALITY"]),
        expect(&[("FOR", 4), ("NAT", 4), ("_T", 8)])
    );
    assert_eq!(
        cells(out, "records", &["SEX"]),
        expect(&[("F", 4), ("M", 4), ("_T", 8)])
    );
}

/// tests/fixtures/age_at_event: `AGE = { birth_date = "birth", at = "issued" }`, reference
/// date 2024-12-31. By hand (written before the code):
/// - first permits (each person's earliest issue, every year), age at issue: P1 born
///   2010-01-15, issued 2015-01-10 → 4 (birthday five days later); P2 born 29 Feb 2000,
///   issued 28 Feb 2018 → 17 (a 29 February birthday is reached on 1 March in common years);
///   P3 born 1990-06-30, issued on her birthday 2024-06-30 → 34; P4 born 29 Feb 2004, issued
///   28 Feb 2021 → 16; P5 born 29 Feb 1996, issued 29 Feb 2024 → 28; P6 born 2012-12-31,
///   issued 2013-01-01 → 0; P7 born 1980-05-05, issued on her birthday 2020-05-05 → 40.
///   Under 18: P1, P2, P4, P6 (4); 18 and over: P3, P5, P7 (3).
/// - stock on 2024-12-31, age on that date: P1 (A1 valid to 2025-01-09) → 14; P2 (A3) → 24;
///   P3 → 34; P4 (A5 to 2025-03-01) → 20; P5 → 28; P6's permit ended 2024-12-30; P7's permit
///   has no end date: valid (`stock`, 44) or not counted (`stock_closed`). Under 18: P1 (1);
///   18 and over: 5 (`stock`) or 4 (`stock_closed`).
#[test]
fn ages_are_taken_at_the_event_and_stocks_at_their_date() {
    let tmp = tempfile::tempdir().unwrap();
    let plan = compile(&repo().join("tests/fixtures/age_at_event/pipeline.toml")).unwrap();
    let m = crate::run_plan(&plan, tmp.path());
    assert_eq!(m.sources[0].rows_accepted, 8);
    let out = &tmp.path().join("current");
    // Each year's partition, its year put in front of the codes ("YEAR|AGE|CHILD"), and the
    // totals over years added here.
    let years = partitions(out, "restricted", "first_permits");
    assert_eq!(years.len(), 12, "2013 to 2024: {years:?}");
    let mut flow: BTreeMap<String, u64> = BTreeMap::new();
    for part in &years {
        let year = part.strip_prefix("").unwrap();
        for (k, n) in cells_at(out, "first_permits", part, &["AGE", "CHILD"]) {
            if k.starts_with("_T|") {
                *flow.entry(format!("_T|{k}")).or_default() += n;
            }
            flow.insert(format!("{year}|{k}"), n);
        }
    }
    for (key, n) in [
        ("2013|0|Y_LT18", 1),
        ("2015|4|Y_LT18", 1),
        ("2018|17|Y_LT18", 1),
        ("2021|16|Y_LT18", 1),
        ("2024|34|Y_GE18", 1),
        ("2024|28|Y_GE18", 1),
        ("2020|40|Y_GE18", 1),
        ("_T|_T|Y_LT18", 4),
        ("_T|_T|Y_GE18", 3),
        ("_T|_T|_T", 7),
    ] {
        assert_eq!(flow.get(key), Some(&n), "first_permits {key}: {flow:?}");
    }
    // No first permit at an age the hand computation does not give.
    let finest: u64 = flow
        .iter()
        .filter(|(k, _)| !k.contains("_T"))
        .map(|(_, n)| *n)
        .sum();
    assert_eq!(finest, 7);
    for (table, open, adults) in [("stock", true, 5), ("stock_closed", false, 4)] {
        let stock = cells(out, table, &["AGE", "CHILD"]);
        let mut want = vec![
            ("14|Y_LT18", 1),
            ("20|Y_GE18", 1),
            ("24|Y_GE18", 1),
            ("28|Y_GE18", 1),
            ("34|Y_GE18", 1),
            ("_T|Y_LT18", 1),
            ("_T|Y_GE18", adults),
            ("_T|_T", 1 + adults),
        ];
        if open {
            want.push(("44|Y_GE18", 1));
        }
        for (key, n) in &want {
            assert_eq!(stock.get(*key), Some(n), "{table} {key}: {stock:?}");
        }
        let finest: u64 = stock
            .iter()
            .filter(|(k, _)| !k.contains("_T"))
            .map(|(_, n)| *n)
            .sum();
        assert_eq!(finest, 1 + adults, "{table}");
    }
}

/// tests/fixtures/first_permits_eurostat, period 2024. By hand (written before the code):
/// - first ever, starting in 2024: Q1 (E1 WORK), Q4 (E6 WORK), Q5 (E8 FAMILY) → WORK 2,
///   FAMILY 1, total 3 (Q2, Q3, Q6, Q7, Q8 had a permit before 2024).
/// - Eurostat: Q1's E1 (nothing before); Q3's E5 (E4 ended 2023-06-30, before the cutoff
///   2023-08-01) in E5's cell STUDY; Q5's E8 (2024-01-15 to 2024-04-14: exactly 3 months);
///   Q7's E12 (E11 ended 2023-12-31, the day before the cutoff 2024-01-01) FAMILY. Not: Q2's
///   E3 (E2 ended 2023-12-31 ≥ cutoff 2023-09-01); Q4's E6 (2024-05-10 to 2024-08-08, one day
///   short of 3 months) and E7 (E6 ended after its cutoff); Q6's E10 (E9 has no end: still
///   valid); Q8's E14 (E13 ended on the cutoff 2024-01-01). → WORK 1, STUDY 1, FAMILY 2, total 4.
/// - Eurostat over every year: 2022 Q2 (E2), Q3 (E4); 2023 Q6 (E9, open), Q7 (E11: 6 months),
///   Q8 (E13); 2024 the four above → 2, 3, 4; total 9 person-years.
#[test]
fn first_permits_follow_the_first_ever_and_the_eurostat_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let plan =
        compile(&repo().join("tests/fixtures/first_permits_eurostat/pipeline.toml")).unwrap();
    let m = crate::run_plan(&plan, tmp.path());
    assert_eq!(m.sources[0].rows_accepted, 14);
    let out = &tmp.path().join("current");
    assert_eq!(
        cells(out, "first_ever", &["TYPE"]),
        expect(&[("FAMILY", 1), ("WORK", 2), ("_T", 3)])
    );
    assert_eq!(
        cells(out, "first_eurostat", &["TYPE"]),
        expect(&[("FAMILY", 2), ("STUDY", 1), ("WORK", 1), ("_T", 4)])
    );
    // One partition per year: the grand total of each.
    let by_year: Vec<(String, u64)> = partitions(out, "restricted", "first_eurostat_by_year")
        .iter()
        .map(|p| {
            (
                p.clone(),
                cells_at(out, "first_eurostat_by_year", p, &["TYPE"])["_T"],
            )
        })
        .collect();
    assert_eq!(
        by_year,
        [("2022", 2), ("2023", 3), ("2024", 4)]
            .map(|(p, n)| (p.to_string(), n))
            .to_vec()
    );
    // DuckDB, with the rule written independently in SQL (window over earlier records).
    crate::python_check_with(
        "duckdb_tables_check.py",
        &repo().join("tests/fixtures/first_permits_eurostat/pipeline.toml"),
        out,
        "duckdb tables check: agreed",
    );
}

/// tests/fixtures/periods, by hand (written before the code):
/// - registrations by year 2020–2024, placed by `registered`: R1 (2019-12-31) is before, R9
///   (2025-01-01) after, R10 has no date. 2020: R2 (M, 29) and R3 (F, 18 on her birthday
///   2020-12-31); 2021: R6 (F, 10); 2022: R4 (M, born 29 Feb 2004, on 2022-02-28 still 17) and
///   R5 (the same person the next day, 18); 2023: R7 (F, 13); 2024: R8 (M, 54, on 31 Dec) and
///   R11 (F, 18: born 28 Feb 2006, registered 29 Feb 2024).
/// - persons by year: as records, but person D once in 2022, in his last record's cell (R5,
///   adult).
/// - persons by quarter of 2024: Q1 R11 (F), Q4 R8 (M), Q2 and Q3 empty; outside: 7 before
///   (R1–R7), 1 after, 1 without a date.
/// - permit stocks on 31 December 2020–2024 (age on each date): 2020 P1 WORK (30), P2 WORK
///   (S3, 35); 2021 P1 WORK, P2 holds S3 and S4, once, under S4 STUDY (started later); 2022
///   P1 FAMILY (S2, open-ended), P2 STUDY; 2023 P1 FAMILY, P4 FAMILY (open-ended, 17); 2024 P1
///   FAMILY, P3 STUDY (starts that day, 17), P4 FAMILY (18 that day). Without open-ended
///   permits: 2022 P2 STUDY only, 2023 nobody, 2024 P3 only.
/// - first permits by year of issue: P1 2020 (WORK, 30), P4 2023 (FAMILY, 16), P3 2024
///   (STUDY, 17); P2's first permit (2019) is before the series: 1 outside.
#[test]
fn records_are_placed_in_the_period_of_their_event() {
    let tmp = tempfile::tempdir().unwrap();
    let pipeline = repo().join("tests/fixtures/periods/pipeline.toml");
    let plan = compile(&pipeline).unwrap();
    let m = crate::run_plan(&plan, tmp.path());
    let accepted = |id: &str| m.sources.iter().find(|s| s.id == id).unwrap().rows_accepted;
    assert_eq!((accepted("registrations"), accepted("permits")), (11, 6));
    let out = &tmp.path().join("current");
    let years: Vec<String> = (2020..=2024).map(|y| format!("{y}")).collect();
    // Five years, five partitions, restricted and public.
    assert_eq!(partitions(out, "restricted", "records_by_year"), years);
    assert_eq!(partitions(out, "public", "records_by_year"), years);
    let grand = |table: &str, part: &str, dims: &[&str]| -> u64 {
        let key = vec!["_T"; dims.len()].join("|");
        cells_at(out, table, part, dims)[&key]
    };
    let totals: Vec<u64> = years
        .iter()
        .map(|y| grand("records_by_year", y, &["SEX", "CHILD"]))
        .collect();
    assert_eq!(totals, [2, 1, 2, 1, 2]);
    for (part, key, n) in [
        ("2020", "M|Y_GE18", 1),
        ("2020", "F|Y_GE18", 1),
        ("2021", "F|Y_LT18", 1),
        ("2022", "M|Y_LT18", 1),
        ("2022", "M|Y_GE18", 1),
        ("2023", "F|Y_LT18", 1),
        ("2024", "M|Y_GE18", 1),
        ("2024", "F|Y_GE18", 1),
    ] {
        let c = cells_at(out, "records_by_year", part, &["SEX", "CHILD"]);
        assert_eq!(c.get(key), Some(&n), "records {part} {key}: {c:?}");
    }
    let persons: Vec<u64> = years
        .iter()
        .map(|y| grand("persons_by_year", y, &["SEX", "CHILD"]))
        .collect();
    assert_eq!(persons, [2, 1, 1, 1, 2]);
    assert_eq!(
        cells_at(out, "persons_by_year", "2022", &["SEX", "CHILD"]),
        expect(&[("M|Y_GE18", 1), ("M|_T", 1), ("_T|Y_GE18", 1), ("_T|_T", 1)])
    );
    let outside = &m.periods["records_by_year"].outside;
    assert_eq!((outside.no_date, outside.before, outside.after), (1, 1, 1));
    // Quarters of 2024.
    let quarters: Vec<String> = (1..=4).map(|q| format!("2024-Q{q}")).collect();
    assert_eq!(
        partitions(out, "restricted", "persons_by_quarter"),
        quarters
    );
    assert_eq!(
        cells_at(out, "persons_by_quarter", &quarters[0], &["SEX"]),
        expect(&[("F", 1), ("_T", 1)])
    );
    for q in &quarters[1..3] {
        assert_eq!(
            cells_at(out, "persons_by_quarter", q, &["SEX"]),
            expect(&[("_T", 0)])
        );
    }
    assert_eq!(
        cells_at(out, "persons_by_quarter", &quarters[3], &["SEX"]),
        expect(&[("M", 1), ("_T", 1)])
    );
    let q = &m.periods["persons_by_quarter"];
    assert_eq!(
        (
            q.freq.as_str(),
            q.outside.before,
            q.outside.after,
            q.outside.no_date
        ),
        ("Q", 7, 1, 1)
    );
    assert_eq!(q.periods, ["2024-Q1", "2024-Q2", "2024-Q3", "2024-Q4"]);
    // Stocks on 31 December of each year.
    let dates: Vec<String> = (2020..=2024).map(|y| format!("{y}-12-31")).collect();
    assert_eq!(partitions(out, "restricted", "stock"), dates);
    let finest = |c: &BTreeMap<String, u64>| -> BTreeMap<String, u64> {
        c.iter()
            .filter(|(k, _)| !k.contains("_T"))
            .map(|(k, n)| (k.clone(), *n))
            .collect()
    };
    let stock: Vec<BTreeMap<String, u64>> = dates
        .iter()
        .map(|d| finest(&cells_at(out, "stock", d, &["TYPE", "CHILD"])))
        .collect();
    assert_eq!(
        stock,
        vec![
            expect(&[("WORK|Y_GE18", 2)]),
            expect(&[("STUDY|Y_GE18", 1), ("WORK|Y_GE18", 1)]),
            expect(&[("FAMILY|Y_GE18", 1), ("STUDY|Y_GE18", 1)]),
            expect(&[("FAMILY|Y_GE18", 1), ("FAMILY|Y_LT18", 1)]),
            expect(&[("FAMILY|Y_GE18", 2), ("STUDY|Y_LT18", 1)]),
        ]
    );
    let closed: Vec<BTreeMap<String, u64>> = dates
        .iter()
        .map(|d| finest(&cells_at(out, "stock_closed", d, &["TYPE", "CHILD"])))
        .collect();
    assert_eq!(
        closed,
        vec![
            expect(&[("WORK|Y_GE18", 2)]),
            expect(&[("STUDY|Y_GE18", 1), ("WORK|Y_GE18", 1)]),
            expect(&[("STUDY|Y_GE18", 1)]),
            expect(&[]),
            expect(&[("STUDY|Y_LT18", 1)]),
        ]
    );
    let flows: Vec<BTreeMap<String, u64>> = years
        .iter()
        .map(|y| finest(&cells_at(out, "first_permits", y, &["TYPE", "CHILD"])))
        .collect();
    assert_eq!(
        flows,
        vec![
            expect(&[("WORK|Y_GE18", 1)]),
            expect(&[]),
            expect(&[]),
            expect(&[("FAMILY|Y_LT18", 1)]),
            expect(&[("STUDY|Y_LT18", 1)]),
        ]
    );
    assert_eq!(m.periods["first_permits"].outside.before, 1);
    // SDMX: FREQ and each row's TIME_PERIOD.
    let sdmx = std::fs::read_to_string(out.join("public/sdmx/persons_by_quarter.csv")).unwrap();
    let mut lines = sdmx.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("DATAFLOW,FREQ,SEX,TIME_PERIOD,OBS_VALUE")
    );
    let periods: std::collections::BTreeSet<&str> = lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f[1], "Q", "{l}");
            f[3]
        })
        .collect();
    assert_eq!(
        periods.into_iter().collect::<Vec<_>>(),
        ["2024-Q1", "2024-Q2", "2024-Q3", "2024-Q4"]
    );
    // Provisional periods (until 3 months after their end, against 2024-12-31): 2024, its
    // fourth quarter (Q3 closed on 30 December), its 31 December; published values there are
    // `P`, elsewhere `A`.
    assert_eq!(m.periods["records_by_year"].provisional, ["2024"]);
    assert_eq!(m.periods["persons_by_quarter"].provisional, ["2024-Q4"]);
    assert_eq!(m.periods["stock"].provisional, ["2024-12-31"]);
    for (part, want) in [("2023", "A"), ("2024", "P")] {
        let df =
            read_parquet(&out.join(format!("public/tables/records_by_year/{part}/data.parquet")));
        let obs = df.column("OBS_STATUS").unwrap().str().unwrap().clone();
        let value = df.column("value").unwrap().counts().clone();
        for i in 0..df.height() {
            let o = obs.get(i).unwrap();
            assert_eq!(o, if value.get(i).is_some() { want } else { "Q" }, "{part}");
        }
    }
    // DuckDB, with the periods written independently in SQL.
    crate::python_check_with(
        "duckdb_tables_check.py",
        &pipeline,
        out,
        "duckdb tables check: agreed",
    );
}

/// tests/fixtures/migration: nine travellers' crossings (rows shuffled), deliveries to
/// 2024-12-31, years 2022-2024. Worked by hand from the crossing dates:
/// - A (F, SEN): in 2022-03-01, out 2023-03-01 (365 days in; then away to the end) →
///   immigration 2022 and emigration 2023 under both rules.
/// - B (M, FRA): in 2022-01-10, 200 days, 30 away, 135 in, 30 away, in 2023-02-09 for good:
///   12 of 16 → 425 days in the 16 months after 2022-01-10: immigration 2022; 12 months in a
///   row → only the last arrival: immigration 2023.
/// - C (M, MAR): first seen leaving (resident), two short trips: nothing.
/// - D (F, MAR): resident; out 2022-09-01, home 2023-05-01 for 30 days, out 2023-05-31 for good:
///   12 of 16 → 242 + 215 = 457 days away after 2022-09-01: emigration 2022; 12 in a row →
///   emigration 2023 (second departure).
/// - E (M, CIV): in 2024-06-01, still here: undetermined (immigration, 2024).
/// - F (M, MAR, born 2010): in 2021-06-15 (before the periods), out 2023-08-01 for good:
///   emigration 2023 aged 13 (age reached in 2023): Y_LT18.
/// - G (M, ESP): a fortnight's visit: nothing (a non-resident leaving is no emigrant).
/// - H (F, MAR): out 2022-02-01, back 2023-06-01 (485 days) for good: emigration 2022 and
///   immigration 2023 under both rules.
/// - I (M, MAR): resident, out 2024-10-01: undetermined (emigration, 2024).
/// - J: crosses on 2025-01-05, after the deliveries: outside (after); F's 2021 crossing: before.
#[test]
fn migrations_follow_the_residence_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let pipeline = repo().join("tests/fixtures/migration/pipeline.toml");
    let plan = compile(&pipeline).unwrap();
    let m = crate::run_plan(&plan, tmp.path());
    let out = &tmp.path().join("current");
    let years = ["2022", "2023", "2024"];
    let dims = ["SEX", "CHILD"];
    let totals = |table: &str| -> Vec<u64> {
        years
            .iter()
            .map(|y| cells_at(out, table, y, &dims)["_T|_T"])
            .collect()
    };
    assert_eq!(totals("immigration_12_of_16"), [2, 1, 0]); // A B | H
    assert_eq!(totals("emigration_12_of_16"), [2, 2, 0]); // D H | A F
    assert_eq!(totals("immigration_12_months"), [1, 2, 0]); // A | B H
    assert_eq!(totals("emigration_12_months"), [1, 3, 0]); // H | A D F
    assert_eq!(
        cells_at(out, "immigration_12_of_16", years[0], &dims),
        expect(&[
            ("F|Y_GE18", 1),
            ("M|Y_GE18", 1),
            ("F|_T", 1),
            ("M|_T", 1),
            ("_T|Y_GE18", 2),
            ("_T|_T", 2)
        ])
    );
    assert_eq!(
        cells_at(out, "emigration_12_months", years[1], &dims),
        expect(&[
            ("F|Y_GE18", 2),
            ("M|Y_LT18", 1),
            ("F|_T", 2),
            ("M|_T", 1),
            ("_T|Y_GE18", 2),
            ("_T|Y_LT18", 1),
            ("_T|_T", 3)
        ])
    );
    // The filter picks among migrations: B (from FRA) and H (from BEL) in 2023; A came from SEN.
    assert_eq!(
        cells_at(
            out,
            "immigration_from_europe",
            years[0],
            &["COUNTRY_ABROAD"]
        ),
        expect(&[("_T", 0)])
    );
    assert_eq!(
        cells_at(
            out,
            "immigration_from_europe",
            years[1],
            &["COUNTRY_ABROAD"]
        ),
        expect(&[("BEL", 1), ("FRA", 1), ("_T", 2)])
    );
    for (table, provisional) in [
        ("immigration_12_of_16", &["2023", "2024"][..]),
        ("emigration_12_of_16", &["2023", "2024"][..]),
        ("immigration_12_months", &["2024"][..]),
        ("emigration_12_months", &["2024"][..]),
    ] {
        let p = &m.periods[table];
        let o = &p.outside;
        // E or I undetermined; F's 2021 crossing before, J's after the periods.
        assert_eq!(
            (o.undetermined, o.before, o.after, o.no_date),
            (1, 1, 1, 0),
            "{table}"
        );
        // Provisional until the rule's window after the period's end has been observed.
        assert_eq!(p.provisional, provisional, "{table}");
    }
    // E (from CIV) is not in the European table's filter.
    assert_eq!(m.periods["immigration_from_europe"].outside.undetermined, 0);
    // The duration of stay: A left after exactly 12 months; B and H are still here.
    let dur = |y: &str| cells_at(out, "immigration_duration", y, &["DURATION_OF_STAY"]);
    assert_eq!(dur(years[0]), expect(&[("M12T23", 1), ("_T", 1)]));
    assert_eq!(dur(years[1]), expect(&[("_U", 2), ("_T", 2)]));
    crate::python_check_with(
        "duckdb_tables_check.py",
        &pipeline,
        out,
        "duckdb tables check: agreed",
    );
}

/// tests/fixtures/status_history: asylum seekers from registration, refugees from recognition.
/// By hand, on 31 December:
/// - 2020: R1, R2 (registered that day), R7 (registered 2019): 3 asylum seekers, adults.
/// - 2021: R1 refugee (30 June), R3 refugee (recognised that day; born 2005-06-15: 16, a
///   child), R2 and R7 asylum seekers: 2 + 2.
/// - 2022: R4 refugee (registered and recognised the same day: the later step), R3 still 17:
///   refugees 3 (one child), asylum seekers 2 (R2, R7).
/// - 2023: R7 recognised 2023-01-15, R3 now 18: refugees 4, asylum seekers 1 (R2); adults.
/// - R5 (registered 2024) is in no stock; R6 has no registration date (no_date).
///
/// Registrations by status on the day (STATUS_AT) and on the reference date (STATUS_NOW):
/// 2020 R1 (AS, REF) and R2 (AS, AS); 2021 R3 (AS, REF); 2022 R4 (REF, REF); 2023 none.
#[test]
fn statuses_are_taken_on_the_date_of_each_table() {
    let tmp = tempfile::tempdir().unwrap();
    let pipeline = repo().join("tests/fixtures/status_history/pipeline.toml");
    let plan = compile(&pipeline).unwrap();
    let m = crate::run_plan(&plan, tmp.path());
    let out = &tmp.path().join("current");
    let dims = ["STATUS_AT", "CHILD"];
    let at = |y: i32| cells_at(out, "stock", &format!("{y}-12-31"), &dims);
    assert_eq!(
        at(2020),
        expect(&[
            ("ASYLUM_SEEKER|Y_GE18", 3),
            ("ASYLUM_SEEKER|_T", 3),
            ("_T|Y_GE18", 3),
            ("_T|_T", 3)
        ])
    );
    for (y, seekers, refugees, child_refugees) in
        [(2021, 2, 2, 1), (2022, 2, 3, 1), (2023, 1, 4, 0)]
    {
        let c = at(y);
        assert_eq!(c["ASYLUM_SEEKER|_T"], seekers, "{y}");
        assert_eq!(c["REFUGEE|_T"], refugees, "{y}");
        assert_eq!(
            c.get("REFUGEE|Y_LT18").copied().unwrap_or(0),
            child_refugees,
            "{y}"
        );
        assert_eq!(c["_T|_T"], seekers + refugees, "{y}");
    }
    assert_eq!(m.periods["stock"].outside.no_date, 1);
    let reg = |y: i32| {
        cells_at(
            out,
            "registrations",
            &format!("{y}"),
            &["STATUS_AT", "STATUS_NOW"],
        )
    };
    let r = reg(2020);
    assert_eq!(
        (r["ASYLUM_SEEKER|ASYLUM_SEEKER"], r["ASYLUM_SEEKER|REFUGEE"]),
        (1, 1)
    );
    assert_eq!(reg(2021)["ASYLUM_SEEKER|REFUGEE"], 1);
    assert_eq!(reg(2022)["REFUGEE|REFUGEE"], 1);
    assert_eq!(reg(2023), expect(&[("_T|_T", 0)]));
    crate::python_check_with(
        "duckdb_tables_check.py",
        &pipeline,
        out,
        "duckdb tables check: agreed",
    );
}

/// A provisional period is frozen like any other until it closes; the first release after
/// that publishes it again, final (`A`, a new vintage), while closed periods stay as they were.
#[test]
fn a_provisional_period_is_published_final_once_closed() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = repo().join("tests/fixtures/periods");
    for f in std::fs::read_dir(&fx).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, tmp.path().join(f.file_name().unwrap())).unwrap();
    }
    let spec = std::fs::read_to_string(fx.join("pipeline.toml"))
        .unwrap()
        .replace("\"../../../", &format!("\"{}/", repo().display()));
    let write = |cutoff: &str| {
        let path = tmp.path().join("pipeline.toml");
        std::fs::write(
            &path,
            spec.replace(
                "reference_date = 2024-12-31",
                &format!("reference_date = {cutoff}"),
            ),
        )
        .unwrap();
        compile(&path).unwrap()
    };
    let out = tmp.path().join("out");
    let obs = |part: &str| -> Vec<String> {
        let df = read_parquet(&out.join(format!(
            "current/public/tables/records_by_year/{part}/data.parquet"
        )));
        let c = df.column("OBS_STATUS").unwrap().str().unwrap().clone();
        let mut v: Vec<String> = c.iter().map(|x| x.unwrap().to_string()).collect();
        v.sort();
        v.dedup();
        v
    };
    let summary = |m: &migstat::runner::Manifest, period: &str| {
        m.protection
            .iter()
            .find(|s| s.table == "records_by_year" && s.ref_period == period)
            .unwrap()
            .clone()
    };
    let first = crate::run_plan(&write("2024-12-31"), &out);
    assert_eq!(obs("2024"), ["P"]);
    assert!(summary(&first, "2024").provisional);
    let s2023 =
        std::fs::read(out.join("current/public/tables/records_by_year/2023/data.parquet")).unwrap();
    // Still within three months of its end: frozen, still provisional.
    let second = crate::run_plan(&write("2025-03-30"), &out);
    assert_eq!(obs("2024"), ["P"]);
    assert!(summary(&second, "2024").frozen);
    // Closed: published again, final.
    let third = crate::run_plan(&write("2025-03-31"), &out);
    assert_eq!(obs("2024"), ["A"]);
    let s = summary(&third, "2024");
    assert!(!s.provisional && !s.frozen && s.vintage == 2, "{s:?}");
    assert!(summary(&third, "2023").frozen);
    assert_eq!(
        std::fs::read(out.join("current/public/tables/records_by_year/2023/data.parquet")).unwrap(),
        s2023,
        "a closed period does not move"
    );
    assert!(third.periods["records_by_year"].provisional.is_empty());
}

/// The first-record rule is checked in the spec: a known rule, and an `end` date field.
#[test]
fn a_first_permit_rule_is_checked_in_the_spec() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = repo().join("tests/fixtures/first_permits_eurostat");
    for (from, to, want) in [
        (
            "first = \"eurostat\"\nend = \"expires\"\nunit = \"persons\"\ndimensions = [\"TYPE\"]",
            "first = \"bogus\"\nunit = \"persons\"\ndimensions = [\"TYPE\"]",
            "not a first-record rule",
        ),
        (
            "end = \"expires\"\nunit = \"persons\"\ndimensions = [\"TYPE\"]",
            "unit = \"persons\"\ndimensions = [\"TYPE\"]",
            "end",
        ),
        (
            "end = \"expires\"\nunit = \"persons\"\ndimensions = [\"TYPE\"]",
            "end = \"type\"\nunit = \"persons\"\ndimensions = [\"TYPE\"]",
            "is not a date field",
        ),
    ] {
        for f in ["permits.csv", "permits.schema.json", "sex.csv", "types.csv"] {
            std::fs::copy(fx.join(f), tmp.path().join(f)).unwrap();
        }
        let spec = std::fs::read_to_string(fx.join("pipeline.toml")).unwrap();
        assert!(spec.contains(from), "{from}");
        let spec = spec
            .replacen(from, to, 1)
            .replace("../../../schemas", &format!("{}/schemas", repo().display()));
        let path = tmp.path().join("p.toml");
        std::fs::write(&path, spec).unwrap();
        let err = compile(&path).unwrap_err().to_string();
        assert!(err.contains(want), "{to}: {err}");
    }
}

/// `at` must name a date field and needs a birth date.
#[test]
fn age_at_an_event_is_checked_in_the_spec() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = repo().join("tests/fixtures/age_at_event");
    for (line, want) in [
        (
            "AGE = { birth_date = \"birth\", at = \"sex\" }",
            "must be a date field",
        ),
        (
            "AGE = { birth_date = \"birth\", at = \"nope\" }",
            "not in the source's schema",
        ),
        ("AGE = { at = \"issued\" }", "needs a `birth_date`"),
    ] {
        for f in ["permits.csv", "permits.schema.json", "sex.csv", "types.csv"] {
            std::fs::copy(fx.join(f), tmp.path().join(f)).unwrap();
        }
        let spec = std::fs::read_to_string(fx.join("pipeline.toml"))
            .unwrap()
            .replace("AGE = { birth_date = \"birth\", at = \"issued\" }", line)
            .replace("../../../schemas", &format!("{}/schemas", repo().display()));
        let path = tmp.path().join("p.toml");
        std::fs::write(&path, spec).unwrap();
        let err = compile(&path).unwrap_err().to_string();
        assert!(err.contains(want), "{line}: {err}");
    }
}

/// DuckDB recomputes every table of the default pipeline with GROUP BY CUBE (and the same person
/// rules in SQL) from the harmonized records, and reads the Hive-partitioned tables, as do pyarrow
/// and polars.
#[test]
fn duckdb_group_by_cube_gives_the_same_tables() {
    let (_, out, plan) = crate::shared_default_run();
    crate::python_check("duckdb_tables_check.py", out, "duckdb tables check: agreed");

    // Border crossings: Moroccan citizens are `NAT`, apart from their M49 sub-region; every
    // other known citizenship keeps its region.
    let border = crate::read_accepted(out, "border");
    let cit = border.column("CITIZENSHIP").unwrap().str().unwrap().clone();
    let reg = border
        .column("CITIZENSHIP_REGION")
        .unwrap()
        .str()
        .unwrap()
        .clone();
    let mut nationals = 0;
    for (c, r) in cit.iter().zip(reg.iter()) {
        assert_eq!(c == Some("MAR"), r == Some("NAT"), "{c:?} in {r:?}");
        nationals += usize::from(r == Some("NAT"));
    }
    assert!(nationals > 0);
    let june = cells_at(
        out,
        "border_crossings",
        "2024-06",
        &["DIRECTION", "SEX", "CITIZENSHIP_REGION"],
    );
    let dates = border.column("raw_crossing_date").unwrap().clone();
    let june_nationals = (0..border.height())
        .filter(|&i| {
            reg.get(i) == Some("NAT") && dates.get(i).unwrap().to_string().starts_with("2024-06")
        })
        .count() as u64;
    assert_eq!(june["_T|_T|NAT"], june_nationals);

    // The margin property on every period of every table (a contrast's n is its smallest
    // term's, not a count of its own).
    for t in plan
        .tables
        .iter()
        .filter(|t| !matches!(t.kind, migstat::spec::TableKind::SurveyContrast { .. }))
    {
        let dims: Vec<&str> = t.dimensions.iter().map(String::as_str).collect();
        for part in partitions(out, "restricted", &t.id) {
            let c = cells_at(out, &t.id, &part, &dims);
            let keyed: BTreeMap<Vec<String>, u64> = c
                .iter()
                .map(|(k, n)| (k.split('|').map(str::to_string).collect(), *n))
                .collect();
            assert_margins_add_up(&keyed, dims.len(), &format!("{} {part}", t.id));
        }
    }
}

fn assert_margins_add_up(table: &BTreeMap<Vec<String>, u64>, dims: usize, what: &str) {
    for (key, n) in table {
        for d in 0..dims {
            if key[d] != TOTAL {
                continue;
            }
            let children: u64 = table
                .iter()
                .filter(|(k, _)| k[d] != TOTAL && (0..dims).all(|j| j == d || k[j] == key[j]))
                .map(|(_, n)| n)
                .sum();
            assert_eq!(
                children, *n,
                "{what}: {key:?} is not the sum of its children along dimension {d}"
            );
        }
    }
}

proptest! {
    #[test]
    fn every_total_is_the_sum_of_its_children(
        raw in prop::collection::btree_map(prop::collection::vec(prop::sample::select(vec!["a", "b", "c"]), 3), 1u64..50, 0..20)
    ) {
        let finest: BTreeMap<Vec<String>, u64> = raw.into_iter().map(|(k, n)| (k.into_iter().map(str::to_string).collect(), n)).collect();
        let all = roll_up(&finest, 3);
        assert_margins_add_up(&all, 3, "random cube");
        // The grand total is the sum of the finest cells, and the finest cells are kept as they are.
        prop_assert_eq!(all[&vec![TOTAL.to_string(); 3]], finest.values().sum::<u64>());
        for (k, n) in &finest {
            prop_assert_eq!(all[k], *n);
        }
    }
}

/// A table of persons built bucket by bucket (its records split by a hash of the person) has
/// the same cells, counts, key sums and left-out records as one built from the whole file,
/// whatever the bucket size — down to one record per bucket, where every bucket file is open;
/// and so do the tables of persons of a source that share one split of its records.
#[test]
fn tables_of_persons_split_by_person_have_the_same_cells() {
    use migstat::disaggregate::{
        MAX_PERSON_BUCKETS, SharedPersonSplit, build_cells_in, is_streamed,
    };
    let (_, current, plan) = crate::shared_default_run();
    let tmp = tempfile::tempdir().unwrap();
    let key = [7u8; 32];
    let mut checked = Vec::new();
    // Per source: its copied parts, and each table's cells from the whole file.
    type Wholes<'a> = (
        Vec<std::path::PathBuf>,
        Vec<(
            &'a migstat::spec::TableSpec,
            migstat::disaggregate::PeriodCells,
        )>,
    );
    let mut wholes: std::collections::BTreeMap<String, Wholes<'_>> = Default::default();
    for table in plan
        .tables
        .iter()
        .chain(plan.groups.iter().map(|g| &g.union))
    {
        if is_streamed(table) || table.kind.is_survey() {
            continue;
        }
        let source = plan.sources.iter().find(|s| s.id == table.source).unwrap();
        // A copy: the buckets are written beside the first part, not in the shared release.
        let dir = tmp.path().join(&source.id);
        std::fs::create_dir_all(&dir).unwrap();
        let accepted: Vec<std::path::PathBuf> = crate::read_accepted_parts(current, &source.id)
            .iter()
            .enumerate()
            .map(|(i, part)| {
                let to = dir.join(format!("part-{i}.parquet"));
                if !to.exists() {
                    std::fs::copy(part, &to).unwrap();
                }
                to
            })
            .collect();
        let whole = build_cells_in(source, table, &accepted, Some(&key), usize::MAX, None).unwrap();
        let units: u64 = whole
            .by_period
            .values()
            .flat_map(|c| c.values())
            .map(|t| t.n)
            .sum();
        assert!(units > 0, "table {} counts nobody", table.id);
        let rows: usize = accepted.iter().map(|p| read_parquet(p).height()).sum();
        assert!(rows > MAX_PERSON_BUCKETS, "the cap is reached below");
        for bucket_rows in [1, 997, rows - 1] {
            let split =
                build_cells_in(source, table, &accepted, Some(&key), bucket_rows, None).unwrap();
            assert_eq!(
                split, whole,
                "table {} in buckets of {bucket_rows}",
                table.id
            );
        }
        checked.push(table.id.clone());
        let entry = wholes
            .entry(source.id.clone())
            .or_insert_with(|| (accepted.clone(), Vec::new()));
        entry.1.push((table, whole));
    }
    assert!(
        checked.len() >= 5,
        "stocks, flows, persons, migrations: {checked:?}"
    );
    // One split per source, shared by its tables of persons: written once, each table's
    // cells as from the whole file, its files gone after the last table.
    let mut shared_sources = 0;
    for (id, (accepted, tables)) in &wholes {
        let source = plan.sources.iter().find(|s| &s.id == id).unwrap();
        let specs: Vec<_> = tables.iter().map(|(t, _)| *t).collect();
        let Some(split) = SharedPersonSplit::for_tables(source, &specs, Some(&key)) else {
            assert_eq!(
                tables.len(),
                1,
                "source {id}: no split shared by {}",
                tables.len()
            );
            continue;
        };
        shared_sources += 1;
        for (table, whole) in tables {
            let cells =
                build_cells_in(source, table, accepted, Some(&key), 997, Some(&split)).unwrap();
            assert_eq!(
                &cells, whole,
                "table {} from the split of source {id}",
                table.id
            );
        }
        assert_eq!(split.times_written(), 1, "source {id}: split once");
        let dir = accepted[0].parent().unwrap();
        let left: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().starts_with(".persons"))
            .collect();
        assert!(
            left.is_empty(),
            "source {id}: split left after its last table: {left:?}"
        );
    }
    assert!(
        shared_sources >= 1,
        "a source with several tables of persons"
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flat_map(|e| std::fs::read_dir(e.unwrap().path()).unwrap())
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with(".persons"))
        .collect();
    assert!(left.is_empty(), "bucket directories left: {left:?}");
}

#[test]
fn cells_grouped_elsewhere_are_the_cells_counted_here() {
    // What a distributed engine returns for a table of records or events — one row per (event
    // date, cell) with its count and key sum — placed in periods by `add_grouped`, against the
    // local engine counting the same accepted file record by record.
    use migstat::disaggregate::{PeriodCells, add_grouped, is_streamed, record_key, record_keys};
    use migstat::engine::{Accepted, Engine, Local};
    use migstat::vocab::raw_column;
    let (_, current, plan) = crate::shared_default_run();
    let key = [9u8; 32];
    let mut checked = Vec::new();
    for table in plan
        .tables
        .iter()
        .chain(plan.groups.iter().map(|g| &g.union))
    {
        if !is_streamed(table) || table.kind.is_survey() {
            continue;
        }
        let source = plan.sources.iter().find(|s| s.id == table.source).unwrap();
        let accepted = Accepted::in_release(plan, source, current);
        let local = Local::after_pass()
            .cells(source, table, &accepted, Some(&key))
            .unwrap();
        // The grouping, done here with polars as an engine would do it.
        let mut df = crate::read_accepted(current, &source.id);
        if let Some((column, values)) = &table.filter {
            let keep: Vec<bool> = df
                .column(column)
                .unwrap()
                .cast(&DataType::String)
                .unwrap()
                .str()
                .unwrap()
                .iter()
                .map(|v| v.is_some_and(|v| values.iter().any(|x| x == v)))
                .collect();
            df = df
                .filter(&BooleanChunked::from_slice("k".into(), &keep))
                .unwrap();
        }
        let keyed = record_keys(source, table, Some(&key));
        if let Some((id, k)) = &keyed {
            let ids = df.column(id).unwrap().cast(&DataType::String).unwrap();
            let keys: Vec<u64> = ids
                .str()
                .unwrap()
                .iter()
                .map(|v| u64::from(record_key(k, v.unwrap_or_default())))
                .collect();
            df.with_column(Column::new("_rk".into(), keys)).unwrap();
        }
        let date = table.periods.date.as_ref().map(|d| raw_column(d));
        let mut by: Vec<Expr> = date.iter().map(|d| col(d.as_str())).collect();
        by.extend(table.dimensions.iter().map(|d| col(d.as_str())));
        let mut aggs = vec![len().cast(DataType::UInt64).alias("n")];
        if keyed.is_some() {
            aggs.push(col("_rk").sum().alias("_key"));
        }
        let grouped = if by.is_empty() {
            df.lazy().select(aggs).collect().unwrap()
        } else {
            df.lazy().group_by(by).agg(aggs).collect().unwrap()
        };
        assert!(grouped.height() > 0, "table {}", table.id);
        let mut elsewhere = PeriodCells::default();
        add_grouped(table, date.as_deref(), grouped, &mut elsewhere).unwrap();
        assert_eq!(elsewhere, local, "table {}", table.id);
        checked.push(table.id.clone());
    }
    assert!(checked.len() >= 3, "{checked:?}");
}
