//! Hot paths after validation, each on synthetic input of a realistic shape:
//! - `roll_up`: every margin of a 5-dimensional table from its finest cells (12 × 40 × 2 × 18 × 6
//!   codes, 103,680 finest cells → 212,000 cells with margins);
//! - `suppress`: hypercube secondary suppression, pruning and the certificate audit of a
//!   3-dimensional table of 10 × 20 × 6 inner cells (3,003 cells) with many small cells;
//! - `record_keys`: the cell key method's keyed hash of 1 million record identifiers;
//! - `harmonize/<source>`: the default pipeline's derivations on the validated sample
//!   (permits: crosswalks, age at the reference date from a birth date, bandings, a sub-region
//!   lookup, year of issue; asylum: crosswalk lists, age from birth dates, UNHCR bands, M49 sub-region lookup);
//! - `survey_variance`: the default survey table of population totals (6,482 respondents,
//!   stratified cluster design), from its weighted partial sums to every margin's estimate,
//!   Taylor variance, intervals and flags.
//!
//! Run: `cargo bench --bench stages`. The 190,000-cell suppression figure is `protect_scale`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic here is a failing test or bench

use std::collections::BTreeMap;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

use migstat::disaggregate::{Tally, roll_up};
use migstat::protect::{Problem, Secondary, Secret, Settings, record_key, suppress_problem};

/// A small deterministic generator (xorshift), so the inputs never change.
fn rng(mut state: u64) -> impl FnMut() -> u64 {
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("stages");
    group.sample_size(10);

    let dims = [12u32, 40, 2, 18, 6];
    let mut next = rng(7);
    let mut finest: BTreeMap<Vec<String>, Tally> = BTreeMap::new();
    let mut idx = [0u32; 5];
    'cells: loop {
        let key: Vec<String> = idx.iter().map(|i| format!("C{i}")).collect();
        finest.insert(
            key,
            Tally {
                n: next() % 50,
                key: next() as u32,
            },
        );
        for j in 0..5 {
            idx[j] += 1;
            if idx[j] < dims[j] {
                continue 'cells;
            }
            idx[j] = 0;
        }
        break;
    }
    group.throughput(Throughput::Elements(finest.len() as u64));
    group.bench_function(BenchmarkId::new("roll_up", finest.len()), |b| {
        b.iter(|| roll_up(&finest, 5).len())
    });

    let mut cells: BTreeMap<Vec<String>, u64> = BTreeMap::new();
    for a in 0..10u32 {
        for b in 0..20u32 {
            for s in 0..6u32 {
                let v = match next() % 6 {
                    0 => 0,
                    1 | 2 => 1 + next() % 4,
                    _ => 5 + next() % 200,
                };
                if v > 0 {
                    cells.insert(vec![format!("a{a}"), format!("b{b}"), format!("s{s}")], v);
                }
            }
        }
    }
    let names: Vec<String> = ["A", "B", "S"].iter().map(|s| s.to_string()).collect();
    let masks: Vec<u32> = (0..8).collect();
    let problem = Problem::new(names, &cells, &[], &[], &masks).expect("problem");
    let settings = Settings {
        threshold: 5,
        range: migstat::protect::DEFAULT_PROTECTION_RANGE,
        keep_grand_total: false,
        secondary: Secondary::Gauss,
        gauss_work: migstat::protect::GAUSS_WORK,
    };
    group.throughput(Throughput::Elements(problem.cells.len() as u64));
    group.bench_function(BenchmarkId::new("suppress", problem.cells.len()), |b| {
        b.iter(|| suppress_problem(&problem, &settings, &[], &[]).status.len())
    });

    let ids: Vec<String> = (0..1_000_000u64).map(|i| format!("E{i:012}")).collect();
    let key = Secret::for_tests("benchmark").derive("cell key");
    group.throughput(Throughput::Elements(ids.len() as u64));
    group.bench_function("record_keys", |b| {
        b.iter(|| {
            ids.iter()
                .fold(0u32, |s, id| s.wrapping_add(record_key(&key, id)))
        })
    });
    group.finish();
}

/// The default pipeline's validated chunks of a source.
fn validated(plan: &migstat::spec::Plan, id: &str) -> Vec<polars::prelude::DataFrame> {
    let src = plan.sources.iter().find(|s| s.id == id).expect("source");
    let mut v = migstat::validate::Validator::new(&src.id, &src.schema, vec!["f".into()]);
    let mut out = Vec::new();
    for file in 0..src.files.len() {
        let identity = migstat::manifest::hash_file(&src.files[file]).expect("hash");
        let mut chunks =
            migstat::ingest::FileChunks::open(src, file, plan.chunk_rows, identity).expect("open");
        while let Some(chunk) = chunks.next_chunk().expect("chunk") {
            out.push(v.validate(chunk).expect("validate").accepted);
        }
    }
    out
}

fn bench_pipeline_stages(c: &mut Criterion) {
    let repo = env!("CARGO_MANIFEST_DIR");
    let plan = migstat::spec::compile(std::path::Path::new(&format!(
        "{repo}/pipelines/observatory.toml"
    )))
    .expect("the default spec compiles");
    let mut group = c.benchmark_group("stages");
    group.sample_size(10);
    for id in ["permits", "asylum"] {
        let src = plan.sources.iter().find(|s| s.id == id).expect("source");
        let chunks = validated(&plan, id);
        let rows: usize = chunks.iter().map(|c| c.height()).sum();
        group.throughput(Throughput::Elements(rows as u64));
        group.bench_function(BenchmarkId::new("harmonize", id), |b| {
            b.iter(|| {
                let mut h = migstat::harmonize::Harmonizer::new(&plan, src);
                chunks
                    .iter()
                    .map(|c| {
                        h.apply(c.clone(), None)
                            .expect("harmonize")
                            .accepted
                            .height()
                    })
                    .sum::<usize>()
            })
        });
    }

    let src = plan
        .sources
        .iter()
        .find(|s| s.id == "survey")
        .expect("survey");
    let design = src.design.as_ref().expect("design");
    let table = plan
        .tables
        .iter()
        .find(|t| t.id == "survey_population")
        .expect("table");
    let mut h = migstat::harmonize::Harmonizer::new(&plan, src);
    let mut dp = migstat::survey::DesignPartial::default();
    let mut partial = migstat::survey::Partial::default();
    for c in validated(&plan, "survey") {
        let rows = h.apply(c, None).expect("harmonize").accepted;
        let units = dp.add_chunk(design, &rows).expect("design");
        partial.add_chunk(table, &units, &rows).expect("partial");
    }
    let info = dp.finish(design, "survey").expect("design checks");
    group.bench_function("survey_variance", |b| {
        b.iter(|| partial.finish(table, &info).expect("finish").height())
    });
    group.finish();
}

criterion_group!(benches, bench, bench_pipeline_stages);
criterion_main!(benches);
