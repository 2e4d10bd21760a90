//! Deliveries as they really arrive (issue 16): what a header that does not fit is told, that no
//! message grows with the input, and what a path that is not a file is told.

use std::path::Path;

use crate::migstat;

const SCHEMA: &str = r#"{"fields": [{"name": "id"}, {"name": "age", "type": "integer"}]}"#;

/// A one-source pipeline over `data` (bytes) in a fresh directory: (exit code, stderr, dir).
fn run(data: &[u8]) -> (Option<i32>, String, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(d.join("s.json"), SCHEMA).unwrap();
    std::fs::write(d.join("data.csv"), data).unwrap();
    std::fs::write(
        d.join("p.toml"),
        "version = 1\nid = \"p\"\nreference_date = 2024-12-31\nreference_period = \"2024\"\n[sources.people]\npath = \"data.csv\"\nformat = \"csv\"\nschema = \"s.json\"\n",
    )
    .unwrap();
    let out = migstat(
        &[
            "-q",
            "run",
            d.join("p.toml").to_str().unwrap(),
            "--out",
            d.join("out").to_str().unwrap(),
        ],
        &[],
    );
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        tmp,
    )
}

#[test]
fn a_header_that_does_not_fit_is_told_why() {
    // Each case: the file, and what the message must say (written from the causes, by hand).
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            b"id,age,age\n1,2,3\n".to_vec(),
            "column `age` appears twice",
        ),
        (
            b"id,age,\n1,2,\n".to_vec(),
            "an empty column name after a trailing delimiter",
        ),
        (vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3], "looks like gzip"),
        (
            [
                &[0xff, 0xfe][..],
                "id,age\n"
                    .encode_utf16()
                    .flat_map(u16::to_le_bytes)
                    .collect::<Vec<_>>()
                    .as_slice(),
            ]
            .concat(),
            "looks like UTF-16",
        ),
        (b"PK\x03\x04rest".to_vec(), "looks like a ZIP archive"),
        (b"id,age\r1,20\r2,30\r".to_vec(), "CR-only line endings?"),
    ];
    for (data, want) in cases {
        let (code, err, _tmp) = run(&data);
        assert_eq!(code, Some(65), "{want}: {err}");
        assert!(err.contains(want), "want {want:?} in: {err}");
    }
    // A trailing delimiter is not also "not in the schema: ``".
    let (_, err, _tmp) = run(b"id,age,\n1,2,\n");
    assert!(!err.contains("not in the schema"), "{err}");
}

#[test]
fn no_message_grows_with_the_input() {
    // A 200 MB header line of personal names, without a line break: stderr, the manifest and the
    // history quote at most a few KB of it, marked as cut.
    let name = "Fatima Zahra El Idrissi,";
    let mut data = Vec::with_capacity(200 << 20);
    while data.len() < 200 << 20 {
        data.extend_from_slice(name.as_bytes());
    }
    let (code, err, tmp) = run(&data);
    drop(data);
    assert_eq!(code, Some(65), "{}", &err[..err.len().min(2000)]);
    assert!(err.len() < 8 << 10, "stderr is {} bytes", err.len());
    assert!(
        err.contains("more"),
        "the list says how many labels it left out: {err}"
    );
    let mut checked = 0;
    for entry in walk(&tmp.path().join("out")) {
        let name = entry.file_name().unwrap().to_string_lossy().into_owned();
        if name == "manifest.json" || name == "history.jsonl" {
            let len = std::fs::metadata(&entry).unwrap().len();
            assert!(len < 32 << 10, "{} is {len} bytes", entry.display());
            checked += 1;
        }
    }
    assert!(checked >= 2, "a manifest and the history were written");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_path_that_is_not_a_file_is_named_for_what_it_is() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(d.join("s.json"), SCHEMA).unwrap();
    std::fs::create_dir(d.join("deliveries")).unwrap();
    std::os::unix::fs::symlink(d.join("loop_b"), d.join("loop_a")).unwrap();
    std::os::unix::fs::symlink(d.join("loop_a"), d.join("loop_b")).unwrap();
    let spec = |path: &str| {
        format!(
            "version = 1\nid = \"p\"\nreference_date = 2024-12-31\nreference_period = \"2024\"\n[sources.people]\npath = \"{path}\"\nformat = \"csv\"\nschema = \"s.json\"\n"
        )
    };
    for (path, want) in [
        ("deliveries", "is a directory: name a file, or a glob"),
        (
            "loop_a",
            "is a symbolic link that leads nowhere or in a loop",
        ),
        ("nothing.csv", "file not found"),
        (
            "loop_*",
            "is a symbolic link that leads nowhere or in a loop",
        ),
    ] {
        std::fs::write(d.join("p.toml"), spec(path)).unwrap();
        let out = migstat(&["check", d.join("p.toml").to_str().unwrap()], &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{path}: {err}");
        assert!(err.contains(want), "{path}: want {want:?} in {err}");
    }
}

#[test]
fn mixed_date_formats_feed_ages_and_implausible_records_are_quarantined() {
    use polars::prelude::*;
    let dir = crate::repo().join("tests/fixtures/plausibility");
    let tmp = tempfile::tempdir().unwrap();
    let plan = migstat::spec::compile(&dir.join("pipeline.toml")).unwrap();
    let m = crate::run_plan(&plan, tmp.path());
    let mut got = crate::fixtures::quarantine_rows(&tmp.path().join("current"), &["reg"]);
    let mut want: Vec<String> = std::fs::read_to_string(dir.join("expected_quarantine.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    let reg = &m.sources[0];
    assert_eq!(
        (reg.rows_read, reg.rows_accepted, reg.rows_quarantined),
        (8, 3, 5)
    );
    // Ages at arrival, by hand: born 1990-05-17 → 29 on 2020-03-01 (twice, ISO and day-first;
    // the second arrival a datetime at midnight); born 5 Jan 1985 → 38 on 4 Jan 2024.
    let acc = crate::read_accepted(&tmp.path().join("current"), "reg");
    let ids: Vec<&str> = acc
        .column("raw_id")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .flatten()
        .collect();
    assert_eq!(ids, ["r1", "r2", "r3"]);
    let ages: Vec<Option<i64>> = acc
        .column("AGE")
        .unwrap()
        .cast(&DataType::Int64)
        .unwrap()
        .i64()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(ages, [Some(29), Some(29), Some(38)]);
    // The quarantine says which formats were tried and why a datetime is refused.
    let q = crate::read_parquet(&tmp.path().join("current/quarantine/reg.parquet"));
    let messages: Vec<&str> = q
        .column("message")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .flatten()
        .collect();
    assert!(
        messages.contains(&"`31/02/1990` is not a date in any of the formats %Y-%m-%d or %d/%m/%Y"),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("`2020-03-01 13:30:00` has a time of day other than midnight")),
        "{messages:?}"
    );
}

#[test]
fn parquet_as_pandas_polars_duckdb_and_arrow_write_it_reads_like_the_csv() {
    use polars::prelude::*;
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let fixture = crate::repo().join("tests/fixtures/parquet_writers");
    for f in ["delivery.csv", "delivery.schema.json", "pipeline.toml"] {
        std::fs::copy(fixture.join(f), d.join(f)).unwrap();
    }
    let o = std::process::Command::new("python3")
        .arg(crate::repo().join("tests/parquet_writers.py"))
        .arg(d)
        .output()
        .expect("python3 runs");
    assert!(
        o.status.success(),
        "parquet_writers.py (pip install -r tests/requirements.txt): {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let plan = migstat::spec::compile(&d.join("pipeline.toml")).unwrap();
    let m = crate::run_plan(&plan, &d.join("out"));
    let current = d.join("out/current");
    // Expected by hand for every writer: a1 and a2 accepted; a3 (time of day in `arrived`),
    // a4 (34.5 children) and a5 (-1 children) quarantined, as records 3, 4 and 5.
    let accepted = |id: &str| {
        let df = crate::read_accepted(&current, id);
        let cols = [
            "raw_id",
            "raw_born",
            "raw_arrived",
            "raw_children",
            "raw_weight",
            "raw_year",
            "raw_active",
        ];
        df.select(cols).unwrap()
    };
    let quarantine = |id: &str| {
        let df = crate::read_parquet(&current.join(format!("quarantine/{id}.parquet")));
        let get = |c: &str| df.column(c).unwrap().cast(&DataType::String).unwrap();
        let (r, f, rule) = (get("record"), get("field"), get("rule"));
        let mut out: Vec<String> = (0..df.height())
            .map(|i| {
                format!(
                    "{},{},{}",
                    r.str().unwrap().get(i).unwrap_or(""),
                    f.str().unwrap().get(i).unwrap_or(""),
                    rule.str().unwrap().get(i).unwrap_or("")
                )
            })
            .collect();
        out.sort();
        out
    };
    let csv = accepted("csv");
    assert_eq!(csv.height(), 2, "{csv}");
    for id in ["csv", "pandas", "polars", "duckdb", "arrow", "excel"] {
        let s = m.sources.iter().find(|s| s.id == id).unwrap();
        assert_eq!(
            (s.rows_read, s.rows_accepted, s.rows_quarantined),
            (5, 2, 3),
            "{id}: {:?}",
            s.quarantine_by_rule
        );
        assert_eq!(
            quarantine(id),
            ["3,arrived,type", "4,children,type", "5,children,minimum"],
            "{id}"
        );
        assert!(
            accepted(id).equals_missing(&csv),
            "{id}:\n{}\nvs csv:\n{csv}",
            accepted(id)
        );
    }
}

#[test]
fn a_file_that_changes_while_it_is_read_is_rejected() {
    // The run hashes each file when it begins; the bytes then read must be those. A file
    // rewritten in between is simulated by handing the reader the identity of other bytes.
    let dir = crate::repo().join("tests/fixtures/parquet_writers");
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    for f in ["delivery.csv", "delivery.schema.json", "pipeline.toml"] {
        std::fs::copy(dir.join(f), d.join(f)).unwrap();
    }
    let o = std::process::Command::new("python3")
        .arg(crate::repo().join("tests/parquet_writers.py"))
        .arg(d)
        .output()
        .expect("python3 runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let plan = migstat::spec::compile(&d.join("pipeline.toml")).unwrap();
    for id in ["csv", "pandas"] {
        let src = plan.sources.iter().find(|s| s.id == id).unwrap();
        let (bytes, hash) = migstat::manifest::hash_file(&src.files[0]).unwrap();
        // The true identity reads through.
        let mut ok = migstat::ingest::FileChunks::open(src, 0, 2, (bytes, hash.clone())).unwrap();
        let mut rows = 0;
        while let Some(c) = ok.next_chunk().unwrap() {
            rows += c.height();
        }
        assert_eq!(rows, 5, "{id}");
        // Another identity: every chunk may be read, but the end of the file rejects it.
        let other = blake3::hash(b"the delivery as it was").to_hex().to_string();
        let mut changed = migstat::ingest::FileChunks::open(src, 0, 2, (bytes, other)).unwrap();
        let err = loop {
            match changed.next_chunk() {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("{id}: a changed file was read to its end without complaint"),
                Err(e) => break e.to_string(),
            }
        };
        assert!(
            err.contains("the file changed while it was read"),
            "{id}: {err}"
        );
    }
}

#[test]
fn unmapped_values_in_the_manifest_are_few_and_short() {
    // A column of names declared as codes: 500 distinct 200-byte values, none a code. The
    // quarantine keeps them all; the manifest lists the 100 most frequent, each cut to 64 bytes.
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let lists = crate::repo().join("schemas/codelists");
    std::fs::write(
        d.join("s.json"),
        r#"{"fields": [{"name": "id"}, {"name": "sex"}]}"#,
    )
    .unwrap();
    let mut csv = String::from("id,sex\n");
    for i in 0..500 {
        csv.push_str(&format!(
            "{i},{}{i:03}\n",
            "Fatima Zahra El Idrissi ".repeat(8)
        ));
    }
    std::fs::write(d.join("data.csv"), csv).unwrap();
    std::fs::write(
        d.join("p.toml"),
        format!(
            "version = 1\nid = \"p\"\nreference_date = 2024-12-31\nreference_period = \"2024\"\ncodelists = \"{}\"\n\
             [defaults]\nmax_invalid_fraction = 1.0\n\
             [sources.people]\npath = \"data.csv\"\nformat = \"csv\"\nschema = \"s.json\"\n\
             [sources.people.harmonize]\nSEX = {{ from = \"sex\", codelist = \"sex\" }}\n",
            lists.display()
        ),
    )
    .unwrap();
    let plan = migstat::spec::compile(&d.join("p.toml")).unwrap();
    let m = crate::run_plan(&plan, &d.join("out"));
    let s = &m.sources[0];
    assert_eq!(s.rows_quarantined, 500);
    assert_eq!(s.unmapped_codes.len(), 100);
    assert_eq!(s.unmapped_omitted, 400);
    assert!(
        s.unmapped_codes
            .iter()
            .all(|u| u.raw.len() <= 64 + 16 && u.raw.contains("(+")),
        "{:?}",
        s.unmapped_codes[0]
    );
    let q = crate::read_parquet(&d.join("out/current/quarantine/people.parquet"));
    assert_eq!(q.height(), 500);
}

/// Run a one-source pipeline over `data` with `[sources.people.dialect]` `dialect` (TOML
/// lines) and schema `id` (string), `age` (integer, maximum 120): (quarantine rows as
/// `line,record,field,rule`, accepted (id, age) pairs).
fn with_dialect(data: &[u8], dialect: &str) -> (Vec<String>, Vec<(String, Option<i64>)>) {
    use polars::prelude::*;
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(
        d.join("s.json"),
        r#"{"fields": [{"name": "id"}, {"name": "age", "type": "integer", "constraints": {"maximum": 120}}]}"#,
    )
    .unwrap();
    std::fs::write(d.join("data.csv"), data).unwrap();
    std::fs::write(
        d.join("p.toml"),
        format!(
            "version = 1\nid = \"p\"\nreference_date = 2024-12-31\nreference_period = \"2024\"\n\
             [defaults]\nmax_invalid_fraction = 1.0\n\
             [sources.people]\npath = \"data.csv\"\nformat = \"csv\"\nschema = \"s.json\"\n\
             [sources.people.dialect]\n{dialect}\n"
        ),
    )
    .unwrap();
    let plan = migstat::spec::compile(&d.join("p.toml")).unwrap();
    crate::run_plan(&plan, &d.join("out"));
    let current = d.join("out/current");
    let q = crate::read_parquet(&current.join("quarantine/people.parquet"));
    let get = |c: &str| q.column(c).unwrap().cast(&DataType::String).unwrap();
    let cols: Vec<Column> = ["line", "record", "field", "rule"]
        .iter()
        .map(|c| get(c))
        .collect();
    let rows = (0..q.height())
        .map(|i| {
            cols.iter()
                .map(|c| c.str().unwrap().get(i).unwrap_or("").to_string())
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    let a = crate::read_accepted(&current, "people");
    let ids = a.column("raw_id").unwrap().str().unwrap().clone();
    let ages = a.column("raw_age").unwrap().cast(&DataType::Int64).unwrap();
    let ages = ages.i64().unwrap();
    let accepted = (0..a.height())
        .map(|i| (ids.get(i).unwrap_or("").to_string(), ages.get(i)))
        .collect();
    (rows, accepted)
}

#[test]
fn dialects_are_declared_and_lines_counted_for_every_terminator() {
    // CR-only line ends, a blank line, a quoted line break: lines by hand.
    let (q, acc) = with_dialect(
        b"id,age\r\"a\r1\",30\r\rb,150\rc,40",
        "line_terminator = \"\\r\"",
    );
    assert_eq!(q, ["5,2,age,maximum"]);
    assert_eq!(
        acc,
        [("a\n1".to_string(), Some(30)), ("c".into(), Some(40))]
    );
    // Single quotes, spaces after the delimiter, comment lines (not records, but lines).
    let (q, acc) = with_dialect(
        b"id, age\n# exported 2024-12-31\n'x, y', 30\n# note\nz,  999\n",
        "quote_char = \"'\"\nskip_initial_space = true\ncomment_char = \"#\"",
    );
    assert_eq!(q, ["5,2,age,maximum"]);
    assert_eq!(acc, [("x, y".to_string(), Some(30))]);
    // A backslash escapes the quote; no doubled quotes.
    let (q, acc) = with_dialect(
        b"id,age\n\"say \\\"hi\\\"\",5\n",
        "escape_char = \"\\\\\"\ndouble_quote = false",
    );
    assert!(q.is_empty(), "{q:?}");
    assert_eq!(acc, [("say \"hi\"".to_string(), Some(5))]);
    // Quoting off: a quote is an ordinary character.
    let (_, acc) = with_dialect(b"id,age\n\"q,7\n", "quote_char = \"\"");
    assert_eq!(acc, [("\"q".to_string(), Some(7))]);
}

#[test]
fn a_frictionless_data_resource_can_name_a_source() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::create_dir(d.join("data")).unwrap();
    std::fs::write(d.join("data/people.tsv"), "id\tage\n'a\tb'\t 30\nc\t150\n").unwrap();
    // Paths relative to the descriptor; the schema inline; the format from the extension (tsv:
    // tab-delimited); the dialect in Frictionless's words.
    std::fs::write(
        d.join("data/people.resource.json"),
        r#"{"name": "people", "title": "People", "path": "people.tsv",
            "dialect": {"quoteChar": "'", "skipInitialSpace": true, "header": true},
            "schema": {"fields": [{"name": "id"}, {"name": "age", "type": "integer",
                                   "constraints": {"maximum": 120}}]}}"#,
    )
    .unwrap();
    let spec = |extra: &str| {
        format!(
            "version = 1\nid = \"p\"\nreference_date = 2024-12-31\nreference_period = \"2024\"\n\
             [defaults]\nmax_invalid_fraction = 1.0\n\
             [sources.people]\nresource = \"data/people.resource.json\"\n{extra}"
        )
    };
    std::fs::write(d.join("p.toml"), spec("")).unwrap();
    let plan = migstat::spec::compile(&d.join("p.toml")).unwrap();
    let m = crate::run_plan(&plan, &d.join("out"));
    let s = &m.sources[0];
    assert_eq!(
        (s.rows_read, s.rows_accepted, s.rows_quarantined),
        (2, 1, 1)
    );
    let acc = crate::read_accepted(&d.join("out/current"), "people");
    assert_eq!(
        acc.column("raw_id").unwrap().str().unwrap().get(0),
        Some("a\tb")
    );
    // The spec may not say again what the resource says, nor may the resource ask for what
    // migstat cannot do.
    std::fs::write(d.join("p.toml"), spec("path = \"data/people.tsv\"\n")).unwrap();
    let err = migstat::spec::compile(&d.join("p.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("sources.people.path: given by the resource"),
        "{err}"
    );
    std::fs::write(
        d.join("data/people.resource.json"),
        r#"{"path": "people.tsv", "compression": "gz", "dialect": {"header": false},
            "schema": {"fields": [{"name": "id"}, {"name": "age"}]}}"#,
    )
    .unwrap();
    std::fs::write(d.join("p.toml"), spec("")).unwrap();
    let err = migstat::spec::compile(&d.join("p.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("sources.people.resource.compression: not supported"),
        "{err}"
    );
    assert!(
        err.contains("sources.people.resource.dialect.header: not supported"),
        "{err}"
    );
}

#[test]
fn a_pass_through_column_counts_the_values_it_finds_and_lists_them() {
    // Nationality as delivered, no crosswalk: `unmapped = "observed"` keeps each value (trimmed)
    // as its code. A restricted count table by it has one row per value found (and `_T`); the
    // manifest lists the values with what became of them; a published table may not take it.
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let lists = crate::repo().join("schemas/codelists");
    std::fs::write(
        d.join("s.json"),
        r#"{"fields": [{"name": "id"}, {"name": "nat"}, {"name": "sex"}]}"#,
    )
    .unwrap();
    std::fs::write(
        d.join("data.csv"),
        "id,nat,sex\n1,Sénégal ,F\n2,Mali,M\n3,Sénégal,F\n4,,M\n5,Mali,F\n6,Sénégal,M\n",
    )
    .unwrap();
    let spec = |extra: &str| {
        format!(
            "version = 1\nid = \"p\"\nreference_date = 2024-12-31\nreference_period = \"2024\"\ncodelists = \"{}\"\n\
             [sources.people]\npath = \"data.csv\"\nformat = \"csv\"\nschema = \"s.json\"\nrecord_id = \"id\"\n\
             [sources.people.harmonize]\nNAT = {{ from = \"nat\", unmapped = \"observed\" }}\nSEX = {{ from = \"sex\", codelist = \"sex\" }}\n\
             [tables.by_nat]\nsource = \"people\"\nunit = \"records\"\ndimensions = [\"NAT\"]\n{extra}",
            lists.display()
        )
    };
    std::fs::write(d.join("p.toml"), spec("")).unwrap();
    let plan = migstat::spec::compile(&d.join("p.toml")).unwrap();
    let m = crate::run_plan(&plan, &d.join("out"));
    let t = crate::read_parquet(&d.join("out/current/restricted/tables/by_nat/2024/data.parquet"));
    let nat = t.column("NAT").unwrap().str().unwrap().clone();
    let n = t
        .column("n")
        .unwrap()
        .cast(&polars::prelude::DataType::Int64)
        .unwrap();
    let n = n.i64().unwrap();
    let got: std::collections::BTreeMap<String, i64> = (0..t.height())
        .map(|i| (nat.get(i).unwrap().to_string(), n.get(i).unwrap()))
        .collect();
    let want: std::collections::BTreeMap<String, i64> =
        [("Mali", 2), ("Sénégal", 3), ("_U", 1), ("_T", 6)]
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
    assert_eq!(got, want);
    let s = &m.sources[0];
    let listed: Vec<(&str, u64, &str)> = s
        .unmapped_codes
        .iter()
        .map(|u| (u.raw.as_str(), u.count, u.action.as_str()))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("Mali", 2, "observed"),
            ("Sénégal", 2, "observed"),
            ("Sénégal ", 1, "observed")
        ]
    );
    // Published: a protected count table may not take it.
    std::fs::write(
        d.join("p.toml"),
        spec("protect = { method = \"suppress\", threshold = 3 }\n"),
    )
    .unwrap();
    let Err(e) = migstat::spec::compile(&d.join("p.toml")) else {
        panic!("a published table by an observed column compiles");
    };
    assert!(
        e.to_string()
            .contains("tables.by_nat.dimensions: `NAT` takes its codes from the data"),
        "{e}"
    );
}

#[test]
fn fields_are_text_only_where_their_own_bytes_are_utf8() {
    // A record is checked as UTF-8 once, whole: its fields must still be judged one by one.
    // Row 2 splits "é" (C3 A9) across two fields: the record's bytes without the delimiter
    // are valid UTF-8, neither field is. Row 3 has one bad byte in its last field. CRLF line
    // ends and spaces after the delimiter (skip_initial_space) are not part of any value.
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(
        d.join("s.json"),
        r#"{"fields": [{"name": "id"}, {"name": "name"}, {"name": "city"}]}"#,
    )
    .unwrap();
    std::fs::write(
        d.join("data.csv"),
        b"id,name,city\r\n1, F\xC3\xA8s,Rabat\r\n2,\xC3,\xA9x\r\n3,ok,\xFF\r\n4,\"quoted, \xC3\xA9\",\r\n",
    )
    .unwrap();
    std::fs::write(
        d.join("p.toml"),
        "version = 1\nid = \"p\"\nreference_date = 2024-12-31\nreference_period = \"2024\"\n[sources.s]\npath = \"data.csv\"\nformat = \"csv\"\nschema = \"s.json\"\ndialect = { skip_initial_space = true }\n",
    )
    .unwrap();
    let plan = migstat::spec::compile(&d.join("p.toml")).unwrap();
    let src = &plan.sources[0];
    let identity = migstat::manifest::hash_file(&src.files[0]).unwrap();
    let mut chunks = migstat::ingest::FileChunks::open(src, 0, 100, identity).unwrap();
    let chunk = chunks.next_chunk().unwrap().unwrap();
    assert!(chunks.next_chunk().unwrap().is_none());
    let column = |i: usize| -> Vec<Option<String>> {
        chunk.columns[i]
            .iter()
            .map(|v| v.map(str::to_string))
            .collect()
    };
    let s = |v: &str| Some(v.to_string());
    assert_eq!(column(0), [s("1"), s("2"), s("3"), s("4")]);
    assert_eq!(column(1)[0], s("Fès"));
    assert_eq!(column(1)[2], s("ok"));
    assert_eq!(column(1)[3], s("quoted, é"));
    assert_eq!(column(2)[0], s("Rabat"));
    // An empty last field before CRLF is empty, not "\r".
    assert_eq!(column(2)[3], s(""));
    let bad: Vec<(u32, Option<usize>, &str)> = chunk
        .issues
        .iter()
        .map(|i| (i.row, i.field, i.rule.as_str()))
        .collect();
    assert_eq!(
        bad,
        [
            (1, Some(1), "invalid_encoding"),
            (1, Some(2), "invalid_encoding"),
            (2, Some(2), "invalid_encoding"),
        ]
    );
}
