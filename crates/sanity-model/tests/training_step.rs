//! The training walk and optimisers against PyTorch (scripts/golden/training_step_fixtures.py):
//! the same weights and batch give PyTorch's loss and gradients in training mode (batch
//! statistics), and three AdamW or SGD-with-momentum steps give PyTorch's weights and running
//! statistics.

use candle_core::{DType, Tensor};
use sanity_data::Dataset;
use sanity_model::graph_engine::GraphModel;
use sanity_model::graph_train::{TrainingGraph, as_weights, loss_and_gradient, parameter_gradients, train_forward};
use sanity_model::{Architecture, ArchitectureSpec, Net, NetModel, OptimizerKind, TrainSpec, Weights, train};
use std::path::Path;
use std::sync::Arc;

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn net() -> (Net, Arc<Architecture>) {
    let spec = ArchitectureSpec::from_toml_file(Path::new(&fixture("train-step-net.toml"))).expect("toml");
    let arch = Arc::new(Architecture::new(spec).expect("architecture"));
    (Net::Layers(Arc::clone(&arch)), arch)
}

fn weights(name: &str, arch: &Architecture) -> Weights {
    Weights::load_safetensors(Path::new(&fixture(name)), arch).expect("PyTorch's state_dict")
}

fn values(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64).and_then(|t| t.flatten_all()).and_then(|t| t.to_vec1()).expect("values")
}

/// The batch: 8 images `[1, 16, 16]` and their labels.
fn batch() -> (Vec<f32>, Vec<usize>) {
    let x = Tensor::read_npy(fixture("train-step-x.npy")).and_then(|t| t.flatten_all()).and_then(|t| t.to_vec1());
    let y = Tensor::read_npy(fixture("train-step-y.npy")).and_then(|t| t.to_vec1::<i64>());
    (x.expect("x"), y.expect("y").into_iter().map(|l| l as usize).collect())
}

/// Every tensor of `theirs` (but `num_batches_tracked`) within `tolerance` of `ours`, relative
/// to its largest value.
fn close(ours: &Weights, theirs: &Weights, tolerance: f64, what: &str) {
    let mut compared = 0;
    for (name, t) in theirs.iter().filter(|(k, _)| !k.ends_with("num_batches_tracked")) {
        let (a, b) = (values(ours.get(name).expect("ours has it")), values(t));
        let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-12);
        let worst = a.iter().zip(&b).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(worst <= tolerance * scale, "{what}, {name}: off PyTorch's by {worst:e} (largest {scale:e})");
        compared += 1;
    }
    assert!(compared >= 10, "{what}: {compared} tensors compared");
}

#[test]
fn one_forward_and_backward_give_pytorch_s_loss_and_gradients() {
    let (net, arch) = net();
    let initial = weights("train-step-initial.safetensors", &arch);
    let (x, labels) = batch();
    let training = TrainingGraph::of(&net).expect("training graph");
    let model = GraphModel::new(&training.graph, &initial).expect("model");
    let mut rng = sanity_data::stream_rng(0, "unused", 0);
    let pass = train_forward(&model, &training, &x, labels.len(), &mut rng).expect("forward");
    let (loss, seed) = loss_and_gradient(pass.logits(), &labels, 3);
    let theirs = Tensor::read_npy(fixture("train-step-loss.npy")).and_then(|t| t.to_vec1::<f64>()).expect("loss");
    assert!((loss - theirs[0]).abs() < 1e-6, "loss {loss} vs PyTorch {}", theirs[0]);
    let grads = parameter_gradients(&model, &pass, &seed).expect("gradients");
    let ours = as_weights(&training.graph, &grads).expect("as weights");
    let mut theirs = Weights::new();
    let file = candle_core::safetensors::load(fixture("train-step-grads.safetensors"), &candle_core::Device::Cpu);
    for (name, g) in file.expect("PyTorch's gradients") {
        theirs.insert(name, g);
    }
    close(&ours, &theirs, 1e-5, "gradients");
}

#[test]
fn three_adamw_or_sgd_steps_give_pytorch_s_weights_and_running_statistics() {
    let (net, arch) = net();
    let initial = NetModel::new(net, weights("train-step-initial.safetensors", &arch));
    let (images, labels) = batch();
    let data =
        Dataset { images, image_shape: [1, 16, 16], labels, masks: None, num_classes: 3, class_names: Vec::new() };
    for (optimizer, lr, weight_decay, file) in [
        (OptimizerKind::Adamw, 1e-2, 1e-2, "train-step-adamw.safetensors"),
        (OptimizerKind::Sgd, 0.05, 1e-3, "train-step-sgd.safetensors"),
    ] {
        // One minibatch of the whole batch per epoch: three epochs are PyTorch's three steps
        // (the shuffled order changes only the rounding of the batch's sums).
        let spec = TrainSpec {
            epochs: 3,
            batch_size: 8,
            learning_rate: lr,
            weight_decay,
            optimizer,
            momentum: 0.9,
            ..TrainSpec::default()
        };
        let (trained, _) = train(&initial, &data, &spec, 0, &mut |_| {}).expect("trains");
        close(&trained, &weights(file, &arch), 1e-5, &format!("{optimizer:?}"));
    }
}
