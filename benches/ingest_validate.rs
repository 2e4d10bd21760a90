//! Hot path of the foundation: CSV parse + validate, per row, on the sample's largest source
//! (border crossings) and on the Windows-1252 permits register. Run: `cargo bench --bench ingest_validate`.
//! Targets and end-to-end figures live in BENCHMARKS.md, never in tests.

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
        group.throughput(Throughput::Bytes(bytes));
        group.bench_function(&src.id, |b| {
            b.iter(|| {
                let mut v = Validator::new(&src.id, &src.schema, vec!["f".into()]);
                let identity = migstat::manifest::hash_file(&src.files[0]).expect("hash");
                let mut chunks = FileChunks::open(src, 0, plan.chunk_rows, identity).expect("open");
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
