//! A state_dict trained by PyTorch, saved with safetensors, loads here and gives PyTorch's
//! logits (scripts/golden/pytorch_trained_fixtures.py: the phantom-cnn twin, eval mode).

use candle_core::Tensor;
use sanity_model::{Architecture, Model, Weights, preset};
use std::sync::Arc;

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn a_pytorch_trained_state_dict_reproduces_its_logits() {
    let arch = Arc::new(Architecture::new(preset("phantom-cnn", [1, 32, 32]).expect("preset")).expect("valid"));
    let weights = Weights::load_safetensors(std::path::Path::new(&fixture("phantom-cnn-pytorch.safetensors")), &arch)
        .expect("PyTorch names and layouts");
    let model = Model::new(arch, weights);
    let x = Tensor::read_npy(fixture("phantom-cnn-inputs.npy")).expect("inputs");
    let expected = Tensor::read_npy(fixture("phantom-cnn-logits.npy")).expect("logits");
    let expected: Vec<f32> = expected.flatten_all().and_then(|t| t.to_vec1()).expect("f32");
    assert!(expected.iter().any(|&l| l > 0.0) && expected.iter().any(|&l| l < 0.0), "a trained, not a dead, model");
    let logits: Vec<f32> =
        model.forward(&x).expect("forward").flatten_all().and_then(|t| t.to_vec1()).expect("f32 logits");
    for (a, b) in logits.iter().zip(&expected) {
        assert!((a - b).abs() < 1e-5, "candle forward {a} vs PyTorch {b}");
    }
}

fn npy(name: &str) -> Vec<f32> {
    Tensor::read_npy(fixture(name)).and_then(|t| t.flatten_all()).and_then(|t| t.to_vec1()).expect("npy")
}

fn bn_net(weights: &str) -> Model {
    let spec =
        sanity_model::ArchitectureSpec::from_toml_file(std::path::Path::new(&fixture("bn-net.toml"))).expect("toml");
    let arch = Arc::new(Architecture::new(spec).expect("valid"));
    let weights = Weights::load_safetensors(std::path::Path::new(&fixture(weights)), &arch)
        .expect("a batch norm's weight, bias and running statistics; num_batches_tracked is ignored");
    Model::new(arch, weights)
}

fn close(ours: &[f32], theirs: &[f32], what: &str) {
    assert_eq!(ours.len(), theirs.len(), "{what}");
    for (a, b) in ours.iter().zip(theirs) {
        assert!((a - b).abs() < 1e-5, "{what}: {a} vs PyTorch {b}");
    }
}

#[test]
fn batch_norm_matches_pytorch_in_training_and_evaluation() {
    // Training mode: batch statistics, and the running statistics PyTorch updates.
    let model = bn_net("bn-initial.safetensors");
    let x0 = Tensor::read_npy(fixture("bn-x0.npy")).expect("x0");
    let mut running = model.weights.clone();
    let mut rng = sanity_data::stream_rng(0, "unused", 0);
    let logits = model
        .forward_range(&x0, 0..model.arch.layers.len(), &mut sanity_model::Mode::Train(&mut rng, &mut running))
        .expect("train forward");
    close(&logits.flatten_all().and_then(|t| t.to_vec1()).expect("f32"), &npy("bn-train-logits.npy"), "train logits");
    let values =
        |w: &Weights, name: &str| w.get(name).expect(name).flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("f32");
    close(&values(&running, "bn1.running_mean"), &npy("bn-running-mean.npy"), "running mean");
    close(&values(&running, "bn1.running_var"), &npy("bn-running-var.npy"), "running var (unbiased)");

    // Evaluation mode after PyTorch's SGD steps: the running statistics.
    let trained = bn_net("bn-trained.safetensors");
    let x1 = Tensor::read_npy(fixture("bn-x1.npy")).expect("x1");
    let eval = trained.forward(&x1).expect("eval").flatten_all().and_then(|t| t.to_vec1()).expect("f32");
    close(&eval, &npy("bn-eval-logits.npy"), "eval logits");

    // The graph walk (every gradient method) agrees with autograd through the batch norm.
    let n = 5;
    let seed: Vec<f32> = (0..n * 3).map(|i| if i % 3 == (i / 3) % 3 { 1.0 } else { 0.0 }).collect();
    let flat: Vec<f32> = x1.flatten_all().and_then(|t| t.to_vec1()).expect("f32");
    let layers = 0..trained.arch.layers.len();
    let graph = sanity_model::graph::Graph::from_architecture(&trained.arch).expect("graph");
    let walk = sanity_model::graph_engine::GraphModel::new(&graph, &trained.weights).expect("walk");
    let fwd = sanity_model::graph_engine::forward(&walk, &flat, n).expect("forward");
    let ours =
        sanity_model::graph_engine::input_gradient(&walk, &fwd, &seed, sanity_model::ReluMode::Standard).expect("walk");
    let var = candle_core::Var::from_tensor(&x1).expect("var");
    let out = trained
        .forward_with(var.as_tensor(), layers, &mut sanity_model::Mode::Eval, sanity_model::ReluMode::Standard)
        .expect("fwd");
    let weighted = (out * Tensor::from_vec(seed, (n, 3), &candle_core::Device::Cpu).expect("seed")).expect("mul");
    let grads = weighted.sum_all().and_then(|s| s.backward()).expect("backward");
    let reference: Vec<f32> =
        grads.get(var.as_tensor()).expect("grad").flatten_all().and_then(|t| t.to_vec1()).expect("f32");
    let scale = reference.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(scale > 0.0);
    for (a, b) in ours.iter().zip(&reference) {
        assert!((a - b).abs() < 1e-4 * scale, "walk {a} vs autograd {b}");
    }
}
