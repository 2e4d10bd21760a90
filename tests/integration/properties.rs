//! Property: for any mixture of good and bad rows (and blank lines), in any chunking, every row
//! is either accepted or quarantined — exactly the bad ones, each at the physical line it was
//! written on.

use crate::Counts;
use std::collections::BTreeMap;

use proptest::prelude::*;

use crate::read_parquet;
use migstat::spec::compile;

#[derive(Debug, Clone, Copy)]
enum Kind {
    Good,
    GoodMultiline,
    AgeTooHigh,
    BadDate,
    MissingRequired,
    ExtraField,
    MissingField,
    DuplicateId,
    NotUtf8,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        6 => Just(Kind::Good),
        2 => Just(Kind::GoodMultiline),
        1 => Just(Kind::AgeTooHigh),
        1 => Just(Kind::BadDate),
        1 => Just(Kind::MissingRequired),
        1 => Just(Kind::ExtraField),
        1 => Just(Kind::MissingField),
        1 => Just(Kind::DuplicateId),
        1 => Just(Kind::NotUtf8),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn rows_are_conserved_and_bad_rows_are_found(kinds in prop::collection::vec((kind(), prop_oneof![8 => Just(0u8), 1 => 1u8..4]), 0..120), chunk in 1usize..40, crlf in any::<bool>()) {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let eol: &[u8] = if crlf { b"\r\n" } else { b"\n" };
        let mut data: Vec<u8> = b"id,name,age,born".to_vec();
        data.extend_from_slice(eol);
        let mut line = 2u64;
        let mut good_ids: Vec<String> = Vec::new();
        let mut expected_bad: BTreeMap<u64, u64> = BTreeMap::new(); // record -> line
        let mut good = 0u64;
        for (i, (k, blank_lines)) in kinds.iter().enumerate() {
            let record = i as u64 + 1;
            let mut k = *k;
            // Empty lines before a record are not records, but they are lines.
            for _ in 0..*blank_lines {
                data.extend_from_slice(eol);
                line += 1;
            }
            if matches!(k, Kind::DuplicateId) && good_ids.is_empty() {
                k = Kind::MissingRequired;
            }
            let id = format!("R{record}");
            let row: Vec<u8> = match k {
                Kind::Good => format!("{id},Amina,30,2001-02-03").into_bytes(),
                Kind::GoodMultiline => format!("{id},\"Line, one{}two \"\"q\"\"\",30,2001-02-03", String::from_utf8_lossy(eol)).into_bytes(),
                Kind::AgeTooHigh => format!("{id},Omar,121,2001-02-03").into_bytes(),
                Kind::BadDate => format!("{id},Omar,30,2001-02-30").into_bytes(),
                Kind::MissingRequired => format!("{id},Omar,,2001-02-03").into_bytes(),
                Kind::ExtraField => format!("{id},Omar,30,2001-02-03,x").into_bytes(),
                Kind::MissingField => format!("{id},Omar,30").into_bytes(),
                Kind::DuplicateId => format!("{},Omar,30,2001-02-03", good_ids[i % good_ids.len()]).into_bytes(),
                Kind::NotUtf8 => {
                    let mut b = format!("{id},F").into_bytes();
                    b.push(0xE8);
                    b.extend_from_slice(b"s,30,2001-02-03");
                    b
                }
            };
            data.extend_from_slice(&row);
            data.extend_from_slice(eol);
            match k {
                Kind::Good | Kind::GoodMultiline => {
                    good += 1;
                    good_ids.push(id);
                }
                _ => {
                    expected_bad.insert(record, line);
                }
            }
            line += 1 + u64::from(matches!(k, Kind::GoodMultiline));
        }
        std::fs::write(d.join("data.csv"), &data).unwrap();
        std::fs::write(d.join("s.json"), r#"{"fields": [
            {"name": "id", "constraints": {"required": true}},
            {"name": "name"},
            {"name": "age", "type": "integer", "constraints": {"required": true, "maximum": 120}},
            {"name": "born", "type": "date"}], "primaryKey": "id"}"#).unwrap();
        std::fs::write(d.join("p.toml"), format!(
            "version = 1\nid = \"prop\"\nreference_date = 2024-12-31\nreference_period = \"2024\"\n[defaults]\nmax_invalid_fraction = 1.0\nchunk_rows = {chunk}\n[sources.s]\npath = \"data.csv\"\nformat = \"csv\"\nschema = \"s.json\"\n")).unwrap();

        let out = d.join("out");
        let plan = compile(&d.join("p.toml")).unwrap();
        let m = crate::run_plan(&plan, &out);
        let s = &m.sources[0];
        prop_assert_eq!(s.rows_read, kinds.len() as u64);
        prop_assert_eq!(s.rows_accepted, good);
        prop_assert_eq!(s.rows_quarantined, expected_bad.len() as u64);

        let q = read_parquet(&out.join("current/quarantine/s.parquet"));
        let recs = q.column("record").unwrap().counts();
        let lines = q.column("line").unwrap().counts();
        let mut got: BTreeMap<u64, u64> = BTreeMap::new();
        for (r, l) in recs.into_no_null_iter().zip(lines.into_no_null_iter()) {
            got.insert(r, l);
        }
        prop_assert_eq!(got, expected_bad);
        let acc = crate::read_accepted(&out.join("current"), "s");
        prop_assert_eq!(acc.height() as u64, good);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Garbage in never panics: any bytes after a header give a run in which every record is
    /// accounted for (or a clean error), whatever the encoding declared.
    #[test]
    fn arbitrary_bytes_never_panic_and_rows_are_conserved(
        body in prop::collection::vec(prop_oneof![
            4 => prop::sample::select(b"a1,;\"\r\n -".to_vec()),
            1 => any::<u8>(),
        ], 0..600),
        cp1252 in any::<bool>(),
        chunk in 1usize..8,
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let mut data = b"a,b,c\n".to_vec();
        data.extend_from_slice(&body);
        std::fs::write(d.join("data.csv"), &data).unwrap();
        std::fs::write(d.join("s.json"), r#"{"fields": [{"name": "a", "constraints": {"unique": true}}, {"name": "b", "type": "integer"}, {"name": "c", "type": "date"}]}"#).unwrap();
        std::fs::write(d.join("p.toml"), format!(
            "version = 1\nid = \"fuzz\"\nreference_date = 2024-12-31\nreference_period = \"2024\"\n[defaults]\nmax_invalid_fraction = 1.0\nchunk_rows = {chunk}\n[sources.s]\npath = \"data.csv\"\nformat = \"csv\"\nschema = \"s.json\"\nencoding = \"{}\"\n",
            if cp1252 { "windows-1252" } else { "utf-8" })).unwrap();
        let plan = compile(&d.join("p.toml")).unwrap();
        let m = crate::run_plan(&plan, &d.join("out"));
        let s = &m.sources[0];
        // Row conservation from the files, not from the manifest (the runner already refuses a
        // manifest that does not add up): accepted rows plus distinct quarantined records.
        let out = d.join("out").join("current");
        let accepted = crate::read_accepted(&out, "s").height() as u64;
        let quarantined = read_parquet(&out.join("quarantine/s.parquet"))
            .select(["file", "record"]).unwrap()
            .unique_stable(None, polars::prelude::UniqueKeepStrategy::First, None).unwrap()
            .height() as u64;
        // Independent count: records by the csv crate's own reading of the same bytes.
        let text: Vec<u8> = if cp1252 {
            encoding_rs::WINDOWS_1252.decode(&data).0.into_owned().into_bytes()
        } else {
            data.clone()
        };
        let mut rdr = csv::ReaderBuilder::new().flexible(true).terminator(csv::Terminator::Any(b'\n')).from_reader(&text[..]);
        let records = rdr.byte_records().filter(|r| {
            let r = r.as_ref().unwrap();
            !(r.len() == 1 && (r[0].is_empty() || &r[0] == b"\r"))
        }).count() as u64;
        prop_assert_eq!(s.rows_read, records);
        prop_assert_eq!(accepted + quarantined, records);
    }
}
