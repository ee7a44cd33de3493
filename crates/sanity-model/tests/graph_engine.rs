//! The graph walk (`graph_engine.rs`) against candle's autograd in float64 (the reference) on
//! every preset as a graph, under the three ReLU rules; its fused paths (a ReLU computed by the
//! max pooling above it, a convolution's gradient routed from the pooled positions, sums taken
//! inside the backward) against its plain ones; and against PyTorch's logits on an ONNX import.

use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use sanity_model::graph::Graph;
use sanity_model::graph_engine::{GraphModel, forward, forward_for_gradient, input_gradient, input_gradient_sums};
use sanity_model::{Architecture, Mode, Model, PRESETS, ReluMode, init_weights, preset};
use std::sync::Arc;

fn relative(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-12);
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max) / scale
}

/// The logits and the input gradient of `Σ seed ⊙ logits` under `relu` by candle's autograd
/// in float64.
fn candle_f64(model: &Model, x: &[f32], n: usize, seed: &[f32], relu: ReluMode) -> (Vec<f32>, Vec<f32>) {
    let [c, h, w] = model.arch.spec.input;
    let model64 = Model::new(Arc::clone(&model.arch), model.weights.to_dtype(DType::F64).expect("f64 weights"));
    let x = Tensor::from_slice(x, (n, c, h, w), &Device::Cpu).and_then(|t| t.to_dtype(DType::F64)).expect("x");
    let input = Var::from_tensor(&x).expect("var");
    let layers = 0..model.arch.layers.len();
    let logits = model64.forward_with(input.as_tensor(), layers, &mut Mode::Eval, relu).expect("forward");
    let seed = Tensor::from_slice(seed, logits.shape(), &Device::Cpu).and_then(|t| t.to_dtype(DType::F64)).expect("s");
    let grads = (&logits * seed).and_then(|t| t.sum_all()).and_then(|t| t.backward()).expect("backward");
    let f32s =
        |t: &Tensor| t.to_dtype(DType::F32).and_then(|t| t.flatten_all()).and_then(|t| t.to_vec1()).expect("f32");
    (f32s(&logits), f32s(grads.get(input.as_tensor()).expect("gradient")))
}

/// A preset, its graph and weights, and `n` inputs in [0, 1).
fn setup(name: &str, n: usize) -> (Model, Graph, Vec<f32>) {
    let input = if name.starts_with("adebayo") { [1, 28, 28] } else { [1, 64, 64] };
    let arch = Arc::new(Architecture::new(preset(name, input).expect("preset")).expect("valid"));
    let model = Model::new(arch.clone(), init_weights(&arch, 4).expect("init"));
    let graph = Graph::from_architecture(&arch).expect("graph");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let x: Vec<f32> = (0..n * input.iter().product::<usize>()).map(|_| rng.random_range(0.0..1.0)).collect();
    (model, graph, x)
}

#[test]
fn the_walk_gives_candle_s_float64_logits_and_gradients_on_every_preset() {
    for &name in PRESETS {
        let n = 2;
        let (model, graph, x) = setup(name, n);
        let walk = GraphModel::new(&graph, &model.weights).expect("weights");
        let outputs = model.arch.num_outputs();
        let seed: Vec<f32> = (0..n * outputs).map(|i| if i % outputs == 1 % outputs { 1.0 } else { 0.0 }).collect();
        let ours = forward(&walk, &x, n).expect("forward");
        for relu in [ReluMode::Standard, ReluMode::Guided, ReluMode::Deconv] {
            let (logits, gradient) = candle_f64(&model, &x, n, &seed, relu);
            let error = relative(ours.output(), &logits);
            assert!(error < 1e-5, "{name}: logits off by {error:e}");
            let error = relative(&input_gradient(&walk, &ours, &seed, relu).expect("backward"), &gradient);
            assert!(error < 1e-4, "{name} {relu:?}: gradient off by {error:e}");
        }
    }
}

/// A lean forward (ReLUs computed by their max pooling) gives the full forward's gradients bit
/// for bit, and sums over segments taken inside the backward equal the sums of the gradients.
#[test]
fn the_fused_paths_give_the_plain_walk_s_gradients_and_sums() {
    for &name in PRESETS {
        let n = 6;
        let (model, graph, x) = setup(name, n);
        let walk = GraphModel::new(&graph, &model.weights).expect("weights");
        let outputs = model.arch.num_outputs();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let seed: Vec<f32> = (0..n * outputs).map(|_| rng.random_range(0.0..1.0)).collect();
        let full = forward(&walk, &x, n).expect("forward");
        let lean = forward_for_gradient(&walk, &x, n, &[]).expect("lean");
        assert_eq!(lean.output(), full.output(), "{name}");
        let segments = [1, 2, 3];
        let per: usize = graph.input.iter().product();
        for relu in [ReluMode::Standard, ReluMode::Guided, ReluMode::Deconv] {
            let each = input_gradient(&walk, &full, &seed, relu).expect("full");
            assert_eq!(input_gradient(&walk, &lean, &seed, relu).expect("lean"), each, "{name} {relu:?}");
            let sums = input_gradient_sums(&walk, &lean, &seed, relu, &segments).expect("sums");
            let mut want = vec![0.0f32; segments.len() * per];
            let mut row = 0;
            for (s, &count) in segments.iter().enumerate() {
                for _ in 0..count {
                    want[s * per..(s + 1) * per].iter_mut().zip(&each[row * per..]).for_each(|(w, g)| *w += g);
                    row += 1;
                }
            }
            let error = relative(&sums, &want);
            assert!(error < 1e-5, "{name} {relu:?}: sums off by {error:e}");
        }
        let bad = input_gradient_sums(&walk, &lean, &seed, ReluMode::Standard, &[2, 2]).expect_err("4 of 6");
        assert!(bad.to_string().contains("do not split"), "{bad}");
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
