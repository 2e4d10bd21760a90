//! Hand-written bad-row fixtures: every class of bad row lands in quarantine with the right rule,
//! field and physical line, and nothing is lost.

use crate::Counts;
use polars::prelude::*;

use crate::{manifest, read_parquet, repo};
use migstat::spec::compile;

pub(crate) fn quarantine_rows(out: &std::path::Path, sources: &[&str]) -> Vec<String> {
    let mut rows = Vec::new();
    for s in sources {
        let df = read_parquet(&out.join("quarantine").join(format!("{s}.parquet")));
        let get = |c: &str| df.column(c).unwrap().cast(&DataType::String).unwrap();
        let cols: Vec<Column> = ["source_id", "file", "line", "record", "field", "rule"]
            .iter()
            .map(|c| get(c))
            .collect();
        for i in 0..df.height() {
            let cells: Vec<String> = cols
                .iter()
                .map(|c| c.str().unwrap().get(i).unwrap_or("").to_string())
                .collect();
            rows.push(cells.join(","));
        }
    }
    rows
}

#[test]
fn every_bad_row_kind_is_quarantined_with_rule_field_and_line() {
    let dir = repo().join("tests/fixtures/bad_rows");
    let tmp = tempfile::tempdir().unwrap();
    let plan = compile(&dir.join("pipeline.toml")).unwrap();
    let m = crate::run_plan(&plan, tmp.path());
    assert_eq!(m.status, migstat::manifest::RunStatus::Succeeded);

    let expected: Vec<String> = std::fs::read_to_string(dir.join("expected_quarantine.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect();
    let mut got = quarantine_rows(
        &tmp.path().join("current"),
        &["people", "communes", "bom", "encoding", "blanks"],
    );
    let mut exp = expected.clone();
    got.sort();
    exp.sort();
    assert_eq!(got, exp);

    // Row accounting, against counts made by hand from the fixture files.
    let by_id = |id: &str| m.sources.iter().find(|s| s.id == id).unwrap().clone();
    let people = by_id("people");
    assert_eq!(
        (
            people.rows_read,
            people.rows_accepted,
            people.rows_quarantined
        ),
        (22, 5, 17)
    );
    // The hand-counted 22 = 5 + 17 again, from the files rather than the manifest.
    let release = tmp.path().join("current");
    let accepted_rows = crate::read_accepted(&release, "people").height();
    let quarantined_records = read_parquet(&release.join("quarantine/people.parquet"))
        .select(["file", "record"])
        .unwrap()
        .unique_stable(None, polars::prelude::UniqueKeepStrategy::First, None)
        .unwrap()
        .height();
    assert_eq!((accepted_rows, quarantined_records), (5, 17));
    // The accepted rows are exactly the good ones, typed, with their lineage.
    let acc = crate::read_accepted(&tmp.path().join("current"), "people");
    let ids: Vec<&str> = acc
        .column("raw_id")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|v| v.unwrap())
        .collect();
    assert_eq!(ids, ["P1", "P2", "P19", "P20", "P21"]);
    let lines: Vec<u64> = acc
        .column("_line")
        .unwrap()
        .counts()
        .into_no_null_iter()
        .collect();
    assert_eq!(lines, [2, 3, 22, 25, 26]);
    assert_eq!(acc.column("raw_age").unwrap().dtype(), &DataType::Int64);
    assert_eq!(acc.column("raw_born").unwrap().dtype(), &DataType::Date);
    assert_eq!(acc.column("raw_year").unwrap().dtype(), &DataType::Int32);
    let names: Vec<Option<&str>> = acc
        .column("raw_name")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(names[0], Some("Alaoui, Amina"));
    // The file is CRLF throughout: the line end inside the quotes is data and kept verbatim; the
    // record's own CRLF is not.
    assert_eq!(names[1], Some("Line one\r\nline two"));
    let years: Vec<Option<i32>> = acc
        .column("raw_year")
        .unwrap()
        .i32()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(
        years,
        [Some(2019), Some(2020), Some(2018), Some(2018), None]
    );
    // "NA" is a missing value: null, not an error.
    assert_eq!(acc.column("raw_year").unwrap().i32().unwrap().get(4), None);
}

#[test]
fn windows_1252_and_bom_sources_decode_to_utf8() {
    let dir = repo().join("tests/fixtures/bad_rows");
    let tmp = tempfile::tempdir().unwrap();
    let plan = compile(&dir.join("pipeline.toml")).unwrap();
    crate::run_plan(&plan, tmp.path());
    let communes = crate::read_accepted(&tmp.path().join("current"), "communes");
    let names: Vec<&str> = communes
        .column("raw_commune")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|v| v.unwrap())
        .collect();
    assert_eq!(names, ["Fès", "Béni Mellal"]);
    let bom = crate::read_accepted(&tmp.path().join("current"), "bom");
    assert_eq!(
        bom.column("raw_key").unwrap().str().unwrap().get(0),
        Some("A")
    );
    let m = manifest(tmp.path());
    assert_eq!(
        m.sources.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["blanks", "bom", "communes", "encoding", "people"]
    );
}

#[test]
fn parquet_sources_report_row_indexes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut df = df!(
        "id" => ["a", "b", "c", "d", "b"],
        "age" => [Some(1i64), None, Some(200), Some(40), Some(5)],
    )
    .unwrap();
    ParquetWriter::new(std::fs::File::create(dir.join("p.parquet")).unwrap())
        .finish(&mut df)
        .unwrap();
    std::fs::write(
        dir.join("p.schema.json"),
        r#"{"fields": [{"name": "id"}, {"name": "age", "type": "integer", "constraints": {"required": true, "maximum": 120}}], "primaryKey": "id"}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("p.toml"),
        "version = 1\nid = \"pq\"\nreference_date = 2024-12-31\nreference_period = \"2024\"\n[defaults]\nmax_invalid_fraction = 1.0\nchunk_rows = 2\n[sources.p]\npath = \"p.parquet\"\nformat = \"parquet\"\nschema = \"p.schema.json\"\n",
    )
    .unwrap();
    let out = dir.join("out");
    let plan = compile(&dir.join("p.toml")).unwrap();
    let m = crate::run_plan(&plan, &out);
    assert_eq!(
        (
            m.sources[0].rows_read,
            m.sources[0].rows_accepted,
            m.sources[0].rows_quarantined
        ),
        (5, 2, 3)
    );
    let q = read_parquet(&out.join("current/quarantine/p.parquet"));
    let recs: Vec<u64> = q
        .column("record")
        .unwrap()
        .counts()
        .into_no_null_iter()
        .collect();
    let rules: Vec<&str> = q
        .column("rule")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|v| v.unwrap())
        .collect();
    assert_eq!(recs, [2, 3, 5]);
    assert_eq!(rules, ["required", "maximum", "primary_key"]);
    assert_eq!(
        q.column("line").unwrap().null_count(),
        3,
        "Parquet rows have no line"
    );
}
