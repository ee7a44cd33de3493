//! Spearman and SSIM on 28x28 and 224x224 maps. Run: `cargo bench -p sanity-metrics --bench metrics`.

#![allow(missing_docs)] // criterion_group! generates undocumented functions.

use criterion::{Criterion, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};
use sanity_metrics::{Map, SsimParams, spearman, ssim};
use std::hint::black_box;

fn maps(side: usize) -> (Map, Map) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(side as u64);
    let mut draw = || Map::new((0..side * side).map(|_| rng.random::<f32>()).collect(), [1, side, side]);
    (draw(), draw())
}

fn metrics(c: &mut Criterion) {
    let params = SsimParams { data_range: 1.0, window: sanity_metrics::ssim::default_window(), k1: 0.01, k2: 0.03 };
    for side in [28, 224] {
        let (a, b) = maps(side);
        c.bench_function(&format!("spearman {side}x{side}"), |bench| {
            bench.iter(|| black_box(spearman(&a.data, &b.data)))
        });
        c.bench_function(&format!("ssim {side}x{side}"), |bench| bench.iter(|| black_box(ssim(&a, &b, &params))));
    }
}

criterion_group!(benches, metrics);
criterion_main!(benches);
