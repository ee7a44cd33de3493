//! Hot kernels of the model crate: conv2d forward and input gradient at the adebayo-cnn's conv2
//! shape ([n, 32, 14, 14] x [64, 32, 5, 5], pad 2) — the candle op (training, f64 checks) and
//! the channels-last kernels of the graph walk (attribution) — and linear forward at fc1's
//! shape.
//! `RAYON_NUM_THREADS` sets the thread count (say it when you report numbers).
//! Run: `cargo bench -p sanity-model --bench ops`.

#![allow(missing_docs)] // criterion_group! generates undocumented functions.

use candle_core::{Device, Tensor, Var};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sanity_model::graph::Graph;
use sanity_model::graph_engine::{GraphModel, forward, input_gradient};
use sanity_model::ops::{conv2d, linear};
use sanity_model::{Architecture, ArchitectureSpec, Init, LayerSpec, ReluMode, init_weights};
use std::hint::black_box;
use std::sync::Arc;

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
    // The graph walk on a one-conv model (and a flatten, which transposes NHWC to NCHW): the
    // forward, then the input gradient of the sum of all outputs (the seed is all ones).
    let spec = ArchitectureSpec {
        input: [32, 14, 14],
        layers: vec![
            LayerSpec::Conv2d {
                name: "conv2".into(),
                in_channels: 32,
                out_channels: 64,
                kernel_size: 5,
                padding: 2,
                weight_init: Init::TruncatedNormal { std: 0.1 },
                bias_init: Init::Constant { value: 0.1 },
            },
            LayerSpec::Flatten { name: None },
        ],
    };
    let arch = Arc::new(Architecture::new(spec).expect("valid"));
    let graph = Graph::from_architecture(&arch).expect("graph");
    let model = GraphModel::new(&graph, &init_weights(&arch, 0).expect("init")).expect("walk");
    let values = x.flatten_all().expect("flat").to_vec1::<f32>().expect("f32");
    let seed = vec![1.0f32; n * 64 * 196];
    group.bench_function("graph walk: forward + input gradient", |bench| {
        bench.iter(|| {
            let f = forward(&model, &values, n).expect("forward");
            black_box(input_gradient(&model, &f, &seed, ReluMode::Standard).expect("gradient"))
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
