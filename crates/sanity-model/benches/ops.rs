//! Hot kernels of the model crate: conv2d forward and input gradient at the adebayo-cnn's conv2
//! shape ([n, 32, 14, 14] x [64, 32, 5, 5], pad 2), and linear forward at fc1's shape.
//! `RAYON_NUM_THREADS` sets the thread count (say it when you report numbers).
//! Run: `cargo bench -p sanity-model --bench ops`.

#![allow(missing_docs)] // criterion_group! generates undocumented functions.

use candle_core::{Device, Tensor, Var};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sanity_model::ops::{conv2d, linear};
use std::hint::black_box;

fn conv(c: &mut Criterion) {
    let dev = &Device::Cpu;
    let n = 64;
    let x = Tensor::randn(0f32, 1.0, (n, 32, 14, 14), dev).expect("x");
    let w = Tensor::randn(0f32, 0.1, (64, 32, 5, 5), dev).expect("w");
    let b = Tensor::zeros(64, candle_core::DType::F32, dev).expect("b");
    // 2 · n · 196 positions · 64 outputs · 800 window values.
    let flops = 2 * n as u64 * 196 * 64 * 800;
    let mut group = c.benchmark_group("conv2d adebayo conv2, batch 64");
    group.throughput(Throughput::Elements(flops));
    group.bench_function("forward", |bench| bench.iter(|| black_box(conv2d(&x, &w, &b, 2).expect("conv"))));
    let xv = Var::from_tensor(&x).expect("var");
    group.bench_function("forward + input gradient", |bench| {
        bench.iter(|| {
            let y = conv2d(xv.as_tensor(), &w, &b, 2).expect("conv");
            black_box(y.sum_all().expect("sum").backward().expect("backward"))
        })
    });
    group.finish();
}

fn dense(c: &mut Criterion) {
    let dev = &Device::Cpu;
    let n = 100;
    let x = Tensor::randn(0f32, 1.0, (n, 3136), dev).expect("x");
    let w = Tensor::randn(0f32, 0.02, (1024, 3136), dev).expect("w");
    let b = Tensor::zeros(1024, candle_core::DType::F32, dev).expect("b");
    let mut group = c.benchmark_group("linear adebayo fc1, batch 100");
    group.throughput(Throughput::Elements(2 * n as u64 * 3136 * 1024));
    group.bench_function("forward", |bench| bench.iter(|| black_box(linear(&x, &w, &b).expect("linear"))));
    group.finish();
}

criterion_group!(benches, conv, dense);
criterion_main!(benches);
