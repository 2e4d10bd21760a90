//! Hot path of the foundation: CSV parse + validate, per row, on the sample's largest source
//! (border crossings) and on the Windows-1252 permits register, next to the physical floor: the
//! `csv` crate reading the same file's records and nothing else (issue 19, item 2).
//!
//! Run: `RAYON_NUM_THREADS=1 cargo bench --bench ingest_validate` (one core: the figures are
//! MiB/s per core; validation hashes keys on all cores otherwise). Three benches per source:
//! `plain_csv/<id>` (csv `ByteRecord`s, the file's delimiter, no transcoding, no typing),
//! `parse/<id>` (migstat's reader: decoding, dialect, string columns in schema order, line
//! numbers, the hash of the bytes read), `parse_validate/<id>` (the same, then every check of
//! the schema and the primary key). Targets and end-to-end figures live in BENCHMARKS.md,
//! never in tests.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic here is a failing test or bench

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use migstat::ingest::FileChunks;
use migstat::spec::compile;
use migstat::validate::Validator;

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    migstat::sample::generate(dir.path(), 5, 2018).expect("sample");
    let spec = dir.path().join("p.toml");
    let repo = env!("CARGO_MANIFEST_DIR");
    std::fs::write(
        &spec,
        format!(
            "version = 1\nid = \"bench\"\nreference_date = 2024-12-31\nreference_period = \"2024\"\n\
             [sources.border]\npath = \"border_crossings.csv\"\nformat = \"csv\"\nschema = \"{repo}/schemas/border_crossings.schema.json\"\n\
             [sources.permits]\npath = \"residence_permits.csv\"\nformat = \"csv\"\nschema = \"{repo}/schemas/residence_permits.schema.json\"\nencoding = \"windows-1252\"\ndelimiter = \";\"\n"
        ),
    )
    .expect("spec");
    let plan = compile(&spec).expect("plan");
    let mut group = c.benchmark_group("ingest_validate");
    group.sample_size(10);
    for src in &plan.sources {
        let bytes = std::fs::metadata(&src.files[0]).expect("size").len();
        let identity = migstat::manifest::hash_file(&src.files[0]).expect("hash");
        group.throughput(Throughput::Bytes(bytes));
        group.bench_function(format!("plain_csv/{}", src.id), |b| {
            b.iter(|| {
                let mut reader = csv::ReaderBuilder::new()
                    .delimiter(src.delimiter)
                    .flexible(true)
                    .from_path(&src.files[0])
                    .expect("open");
                let mut record = csv::ByteRecord::new();
                let mut fields = 0usize;
                while reader.read_byte_record(&mut record).expect("record") {
                    fields += record.len();
                }
                fields
            })
        });
        group.bench_function(format!("parse/{}", src.id), |b| {
            b.iter(|| {
                let mut chunks =
                    FileChunks::open(src, 0, plan.chunk_rows, identity.clone()).expect("open");
                let mut rows = 0;
                while let Some(chunk) = chunks.next_chunk().expect("chunk") {
                    rows += chunk.columns.first().map_or(0, |c| c.len());
                }
                rows
            })
        });
        group.bench_function(format!("parse_validate/{}", src.id), |b| {
            b.iter(|| {
                let mut v = Validator::new(&src.id, &src.schema, vec!["f".into()]);
                let mut chunks =
                    FileChunks::open(src, 0, plan.chunk_rows, identity.clone()).expect("open");
                let mut rows = 0;
                while let Some(chunk) = chunks.next_chunk().expect("chunk") {
                    rows += v.validate(chunk).expect("validate").rows_read;
                }
                rows
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
