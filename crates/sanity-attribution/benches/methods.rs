//! One integrated-gradients batch (100 interpolation points, one image) and one SmoothGrad call
//! on the adebayo-cnn. Run: `cargo bench -p sanity-attribution --bench methods`.

#![allow(missing_docs)] // criterion_group! generates undocumented functions.

use candle_core::{Device, Tensor};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sanity_attribution::MethodSpec;
use sanity_model::{Architecture, Model, init_weights, preset};
use std::hint::black_box;
use std::sync::Arc;

fn methods(c: &mut Criterion) {
    let arch = Arc::new(Architecture::new(preset("adebayo-cnn", [1, 28, 28]).expect("preset")).expect("valid"));
    let model = Model::new(arch.clone(), init_weights(&arch, 0).expect("init"));
    let x = Tensor::rand(0f32, 1.0, (2, 1, 28, 28), &Device::Cpu).expect("x");
    // Forward ≈ 27.8 MFLOP per input; the input-gradient backward about the same.
    let mut group = c.benchmark_group("adebayo-cnn");
    group.throughput(Throughput::Elements(100 * 56_000_000));
    let ig: MethodSpec = toml::from_str("method = \"integrated_gradients\"\nsteps = 50\nbatch = 100").expect("spec");
    let ig = ig.build(&arch, 0).expect("build");
    group.bench_function("integrated_gradients, 2 images x 50 steps", |bench| {
        bench.iter(|| black_box(ig.attribute(&model, &x, &[1, 2], &[0, 1]).expect("ig")))
    });
    let sg: MethodSpec = toml::from_str("method = \"smoothgrad\"\nsamples = 50\nbatch = 100").expect("spec");
    let sg = sg.build(&arch, 0).expect("build");
    group.bench_function("smoothgrad, 2 images x 50 samples", |bench| {
        bench.iter(|| black_box(sg.attribute(&model, &x, &[1, 2], &[0, 1]).expect("sg")))
    });
    group.finish();
}

criterion_group!(benches, methods);
criterion_main!(benches);
