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
