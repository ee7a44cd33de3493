//! The graph walk (`graph_engine.rs`) against the sequential engine (`native.rs`, checked
//! against Captum) on every preset as a graph, under the three ReLU rules, and against
//! PyTorch's logits on an ONNX import.

use rand::{Rng, SeedableRng};
use sanity_model::graph::Graph;
use sanity_model::graph_engine::{GraphModel, forward, input_gradient};
use sanity_model::{Architecture, Model, PRESETS, ReluMode, init_weights, native, preset};
use std::sync::Arc;

fn relative(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-12);
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max) / scale
}

#[test]
fn the_walk_gives_the_sequential_engine_s_logits_and_gradients_on_every_preset() {
    for &name in PRESETS {
        let input = if name.starts_with("adebayo") { [1, 28, 28] } else { [1, 64, 64] };
        let arch = Arc::new(Architecture::new(preset(name, input).expect("preset")).expect("valid"));
        let weights = init_weights(&arch, 4).expect("init");
        let model = Model::new(arch.clone(), weights.clone());
        let graph = Graph::from_architecture(&arch).expect("graph");
        let walk = GraphModel::new(&graph, &weights).expect("weights");
        let n = 2;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let x: Vec<f32> = (0..n * input.iter().product::<usize>()).map(|_| rng.random_range(0.0..1.0)).collect();
        let outputs = arch.num_outputs();
        let seed: Vec<f32> = (0..n * outputs).map(|i| if i % outputs == 1 % outputs { 1.0 } else { 0.0 }).collect();
        let ours = forward(&walk, &x, n).expect("forward");
        let theirs = native::outputs(&model, &x, n, 0..arch.layers.len()).expect("native forward");
        let error = relative(ours.output(), &theirs);
        assert!(error < 1e-5, "{name}: logits off by {error:e}");
        for relu in [ReluMode::Standard, ReluMode::Guided, ReluMode::Deconv] {
            let ours = input_gradient(&walk, &ours, &seed, relu).expect("backward");
            let theirs = native::input_gradient(&model, &x, n, 0..arch.layers.len(), &seed, relu).expect("native");
            let error = relative(&ours, &theirs);
            assert!(error < 1e-4, "{name} {relu:?}: gradient off by {error:e}");
        }
    }
}

#[test]
fn an_onnx_import_runs_in_the_walk_with_pytorch_s_logits() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx");
    let model = sanity_model::onnx::read_onnx(&dir.join("tiny-resnet-dynamo.onnx")).expect("import");
    let x = sanity_data::npy::read_array(&dir.join("tiny-resnet-input.npy").display().to_string()).expect("input");
    let want = sanity_data::npy::read_array(&dir.join("tiny-resnet-logits.npy").display().to_string()).expect("logits");
    let walk = GraphModel::new(&model.graph, &model.weights).expect("weights");
    let x32: Vec<f32> = x.values.iter().map(|&v| v as f32).collect();
    let out = forward(&walk, &x32, x.shape[0]).expect("forward");
    let want32: Vec<f32> = want.values.iter().map(|&v| v as f32).collect();
    let error = relative(out.output(), &want32);
    assert!(error < 1e-5, "logits off by {error:e}");
}
