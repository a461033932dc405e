//! Pair invariants per second for a 200-constituent jet: f64 naive, f64 stable
//! (factorised, the production path), f64 and f32 stable with transcendental functions
//! per pair (the accuracy reference), and f32 naive. Each counts the n(n+1)/2 products of
//! the upper triangle, diagonal included.
//!
//! Run: `cargo bench --bench pair_invariants`. Criterion prints the throughput in
//! elements (pair invariants) per second; compare the ratios printed in the same run.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use noether_kinematics::invariants::{
    pairwise_naive_dots, pairwise_stable_dots, pairwise_stable_dots_exact, PtYPhiM,
};
use noether_kinematics::FourMomentum;
use noether_testkit::SymmetryKit;
use std::hint::black_box;

const CONSTITUENTS: usize = 200;

fn jet() -> Vec<FourMomentum> {
    SymmetryKit::new(2024)
        .with_jets(1)
        .with_constituents(CONSTITUENTS..=CONSTITUENTS)
        .jets()
        .remove(0)
}

fn pair_invariants(c: &mut Criterion) {
    let jet = jet();
    let cartesian64: Vec<[f64; 4]> = jet.iter().map(FourMomentum::to_array).collect();
    let cartesian32: Vec<[f32; 4]> = cartesian64.iter().map(|p| p.map(|x| x as f32)).collect();
    let cylindrical64: Vec<PtYPhiM<f64>> = jet.iter().map(PtYPhiM::from_four_momentum).collect();
    let cylindrical32: Vec<PtYPhiM<f32>> = cylindrical64.iter().map(PtYPhiM::cast).collect();

    let mut group = c.benchmark_group("pair_invariants_200");
    group.throughput(Throughput::Elements(
        (CONSTITUENTS * (CONSTITUENTS + 1) / 2) as u64,
    ));
    group.bench_function(BenchmarkId::new("naive", "f64"), |b| {
        b.iter(|| pairwise_naive_dots(black_box(&cartesian64)));
    });
    group.bench_function(BenchmarkId::new("stable", "f64"), |b| {
        b.iter(|| pairwise_stable_dots(black_box(&cylindrical64)));
    });
    group.bench_function(BenchmarkId::new("stable_per_pair", "f64"), |b| {
        b.iter(|| pairwise_stable_dots_exact(black_box(&cylindrical64)));
    });
    group.bench_function(BenchmarkId::new("naive", "f32"), |b| {
        b.iter(|| pairwise_naive_dots(black_box(&cartesian32)));
    });
    group.bench_function(BenchmarkId::new("stable_per_pair", "f32"), |b| {
        b.iter(|| pairwise_stable_dots_exact(black_box(&cylindrical32)));
    });
    group.finish();
}

criterion_group!(benches, pair_invariants);
criterion_main!(benches);
