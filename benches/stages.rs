//! Hot paths after validation, each on synthetic input of a realistic shape:
//! - `roll_up`: every margin of a 5-dimensional table from its finest cells (12 × 40 × 2 × 18 × 6
//!   codes, 103,680 finest cells → 212,000 cells with margins);
//! - `suppress`: hypercube secondary suppression, pruning and the certificate audit of a
//!   3-dimensional table of 10 × 20 × 6 inner cells (3,003 cells) with many small cells;
//! - `record_keys`: the cell key method's keyed hash of 1 million record identifiers.
//!
//! Run: `cargo bench --bench stages`. The 190,000-cell suppression figure is `protect_scale`.

use std::collections::BTreeMap;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

use migstat::disaggregate::{Tally, roll_up};
use migstat::protect::{Grid, record_key, suppress_and_audit};

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

    let mut cells: BTreeMap<Vec<u32>, u64> = BTreeMap::new();
    for a in 0..10u32 {
        for b in 0..20u32 {
            for s in 0..6u32 {
                let v = match next() % 6 {
                    0 => 0,
                    1 | 2 => 1 + next() % 4,
                    _ => 5 + next() % 200,
                };
                if v > 0 {
                    cells.insert(vec![a, b, s], v);
                }
            }
        }
    }
    let grid = Grid::from_finest(&cells, 3);
    group.throughput(Throughput::Elements(grid.values.len() as u64));
    group.bench_function(BenchmarkId::new("suppress", grid.values.len()), |b| {
        b.iter(|| suppress_and_audit(&grid, 5, 5.0).map(|(s, _)| s.len()))
    });

    let ids: Vec<String> = (0..1_000_000u64).map(|i| format!("E{i:012}")).collect();
    group.throughput(Throughput::Elements(ids.len() as u64));
    group.bench_function("record_keys", |b| {
        b.iter(|| {
            ids.iter()
                .fold(0u32, |s, id| s.wrapping_add(record_key(20241231, id)))
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
