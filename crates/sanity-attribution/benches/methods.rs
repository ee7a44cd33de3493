//! One integrated-gradients batch (100 interpolation points, two images) and one SmoothGrad
//! call on the adebayo-cnn, and the IG batch under a whole top-down cascade (5 models). Run: `cargo bench -p sanity-attribution --bench methods`.

#![allow(missing_docs)] // criterion_group! generates undocumented functions.

use candle_core::{Device, Tensor};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sanity_attribution::MethodSpec;
use sanity_data::stream_rng;
use sanity_model::{Architecture, Model, Reinit, init_weights, preset, reinitialize};
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

    // The same IG batch under the original and the 4 stages of a top-down cascade at once:
    // layers a stage did not re-initialise are evaluated once (compare with 5 x the call above).
    let mut rng = stream_rng(0, "bench", 0);
    let mut models = vec![model.clone()];
    let mut weights = model.weights.clone();
    for layer in ["logits", "fc1", "conv2", "conv1"] {
        weights = reinitialize(&weights, &arch, layer, &Reinit::Original {}, &mut rng).expect("reinit");
        models.push(model.with_weights(weights.clone()));
    }
    let refs: Vec<&Model> = models.iter().collect();
    let targets: Vec<&[usize]> = vec![&[1, 2]; models.len()];
    let mut group = c.benchmark_group("adebayo-cnn top-down cascade");
    group.throughput(Throughput::Elements(5 * 100 * 56_000_000));
    group.bench_function("integrated_gradients, 2 images x 50 steps x 5 models", |bench| {
        bench.iter(|| black_box(ig.attribute_models(&refs, &x, &targets, &[0, 1]).expect("ig")))
    });
    group.finish();
}

criterion_group!(benches, methods);
criterion_main!(benches);
