//! Fuzzing on stable Rust: property tests with a fixed budget over what users and deliveries
//! control — the Table Schema and spec parsers, and ingest + validate under every CSV dialect.
//! Each must return a result or a reported problem, never panic, and (for data) account for
//! every record. The budget is `MIGSTAT_FUZZ_CASES` cases per target (default 1000; CI runs the
//! default, a longer session sets more); proptest's seed is fixed per run by its own
//! persistence, so a failure prints the input that caused it.

use std::path::Path;

use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("MIGSTAT_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

/// JSON built from Table Schema's own words, so that the parser goes deep, with wrong types
/// and values mixed in.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value as J;
    let words = prop::sample::select(vec![
        "fields",
        "name",
        "type",
        "format",
        "constraints",
        "required",
        "unique",
        "enum",
        "minimum",
        "maximum",
        "pattern",
        "minLength",
        "maxLength",
        "missingValues",
        "primaryKey",
        "fieldsMatch",
        "trueValues",
        "falseValues",
        "time",
        "date",
        "integer",
        "number",
        "year",
        "string",
        "boolean",
        "%Y-%m-%d",
        "%d/%m/%Y",
        "%m/%d/%Y",
        "%H:%M",
        "midnight",
        "drop",
        "exact",
        "equal",
        "default",
        "any",
        "(",
        "[0-9]+",
        "",
    ]);
    let leaf = prop_oneof![
        Just(J::Null),
        any::<bool>().prop_map(J::Bool),
        any::<i64>().prop_map(J::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(J::Null, J::Number)),
        words.clone().prop_map(|w| J::String(w.to_string())),
        ".{0,12}".prop_map(J::String),
    ];
    leaf.prop_recursive(4, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(J::Array),
            prop::collection::vec((words.clone(), inner), 0..6).prop_map(|kv| {
                J::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// Any JSON is a schema or a list of problems.
    #[test]
    fn the_schema_parser_never_panics(fields in prop::collection::vec(json_value(), 0..6), top in json_value()) {
        let mut doc = match top {
            serde_json::Value::Object(o) => o,
            _ => serde_json::Map::new(),
        };
        doc.insert("fields".into(), serde_json::Value::Array(fields));
        let text = serde_json::Value::Object(doc).to_string();
        let _ = migstat::spec::schema::parse(&text, Path::new("fuzz.schema.json"));
    }

    /// The default spec with a piece cut, doubled or replaced compiles or reports problems.
    #[test]
    fn the_spec_compiler_never_panics(cuts in prop::collection::vec((any::<prop::sample::Index>(), 0usize..40, prop_oneof![
        Just(String::new()),
        Just("\"\"".to_string()),
        Just("[]".to_string()),
        Just("{ }".to_string()),
        Just("\n[tables.x]\n".to_string()),
        Just("= 1\n".to_string()),
        "[ -~]{0,16}",
    ]), 1..4)) {
        let spec = spec_dir();
        let mut text = std::fs::read_to_string(crate::repo().join("pipelines/observatory.toml")).unwrap();
        for (at, len, with) in cuts {
            let mut start = at.index(text.len().max(1));
            while !text.is_char_boundary(start) { start -= 1; }
            let mut end = (start + len).min(text.len());
            while !text.is_char_boundary(end) { end -= 1; }
            text.replace_range(start..end, &with);
        }
        let file = spec.path().join("pipelines").join("fuzz.toml");
        std::fs::write(&file, &text).unwrap();
        let _ = migstat::spec::compile(&file);
    }

    /// Any bytes under any dialect: a run that accounts for every record, or a clean error.
    #[test]
    fn any_bytes_under_any_dialect_are_accounted_for(
        body in prop::collection::vec(prop_oneof![
            4 => prop::sample::select(b"a1,;'\"#\\\r\n -".to_vec()),
            1 => any::<u8>(),
        ], 0..400),
        cr_only in any::<bool>(),
        quote in prop::sample::select(vec!["\"", "'", ""]),
        escape in any::<bool>(),
        comment in any::<bool>(),
        skip in any::<bool>(),
        chunk in 1usize..6,
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let mut data = if cr_only { b"a,b\r".to_vec() } else { b"a,b\n".to_vec() };
        data.extend_from_slice(&body);
        std::fs::write(d.join("data.csv"), &data).unwrap();
        std::fs::write(d.join("s.json"), r#"{"fields": [{"name": "a"}, {"name": "b", "type": "integer"}]}"#).unwrap();
        let mut dialect = format!("quote_char = \"{}\"\nskip_initial_space = {skip}\n", if quote == "\"" { "\\\"" } else { quote });
        if cr_only { dialect.push_str("line_terminator = \"\\r\"\n"); }
        if escape && !quote.is_empty() { dialect.push_str("escape_char = \"\\\\\"\n"); }
        if comment { dialect.push_str("comment_char = \"#\"\n"); }
        std::fs::write(d.join("p.toml"), format!(
            "version = 1\nid = \"fuzz\"\nreference_date = 2024-12-31\nreference_period = \"2024\"\n[defaults]\nmax_invalid_fraction = 1.0\nchunk_rows = {chunk}\n[sources.s]\npath = \"data.csv\"\nformat = \"csv\"\nschema = \"s.json\"\n[sources.s.dialect]\n{dialect}")).unwrap();
        let plan = migstat::spec::compile(&d.join("p.toml")).unwrap();
        let run = migstat::runner::run(&plan, &migstat::runner::RunOptions {
            out_dir: d.join("out"),
            ..Default::default()
        });
        match run {
            // A header the bytes broke is a rejection, reported as such.
            Err(migstat::error::Error::Rejected(_)) => {}
            Err(e) => prop_assert!(false, "{e}"),
            Ok(m) => {
                let s = &m.sources[0];
                let out = d.join("out/current");
                let accepted = crate::read_accepted(&out, "s").height() as u64;
                let quarantined = crate::read_parquet(&out.join("quarantine/s.parquet"))
                    .select(["file", "record"]).unwrap()
                    .unique_stable(None, polars::prelude::UniqueKeepStrategy::First, None).unwrap()
                    .height() as u64;
                prop_assert_eq!(accepted + quarantined, s.rows_read);
            }
        }
    }
}

/// A directory laid out like the repository (`pipelines/`, with `schemas/` and `sample_data/`
/// linked), where mutated copies of the default spec resolve their paths as the original does.
fn spec_dir() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("pipelines")).unwrap();
    for d in ["schemas", "sample_data"] {
        std::os::unix::fs::symlink(crate::repo().join(d), tmp.path().join(d)).unwrap();
    }
    tmp
}
