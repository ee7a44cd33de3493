//! Shared by the golden tests: the formula weights both sides build, and the error measure.

#![allow(dead_code)] // Each test binary uses part of it.

use candle_core::{Device, Tensor};
use sanity_model::weights::expected_shapes;
use sanity_model::{Architecture, Model, Weights, preset};
use serde::Deserialize;
use std::sync::Arc;

/// A fixture file of `scripts/golden/`: cases of one preset each.
#[derive(Deserialize)]
pub struct Fixture {
    pub cases: Vec<Case>,
}

/// Inputs of one preset and the reference maps of several methods.
#[derive(Deserialize)]
pub struct Case {
    pub preset: String,
    pub input_shape: [usize; 3],
    pub inputs: Vec<f32>,
    pub targets: Vec<usize>,
    /// The PyTorch twin's logits (attribution.json only).
    #[serde(default)]
    pub logits: Vec<f32>,
    pub methods: Vec<MethodCase>,
}

/// One method's spec (as in a config) and reference maps.
#[derive(Deserialize)]
pub struct MethodCase {
    pub spec: serde_json::Value,
    /// `f32`, or `f64` where float32 rounding makes the reference ill-conditioned.
    #[serde(default = "f32_name")]
    pub dtype: String,
    /// `"abs"`: the reference used the weights' biases replaced by their absolute values.
    #[serde(default)]
    pub biases: Option<String>,
    pub values: Vec<f32>,
}

fn f32_name() -> String {
    "f32".into()
}

impl Case {
    /// The architecture, the model with the formula weights, the inputs and their ids.
    pub fn setup(&self) -> (Arc<Architecture>, Model, Tensor, Vec<u64>) {
        let arch = Arc::new(Architecture::new(preset(&self.preset, self.input_shape).expect("preset")).expect("valid"));
        let model = Model::new(arch.clone(), formula_weights(&arch));
        let n = self.targets.len();
        let [c, h, w] = self.input_shape;
        let x = Tensor::from_vec(self.inputs.clone(), (n, c, h, w), &Device::Cpu).expect("inputs");
        (arch, model, x, (0..n as u64).collect())
    }
}

/// `weight[j] = sqrt(3 / fan_in) · sin(0.7 j + 0.1 len(name))`,
/// `bias[j] = 0.1 · cos(0.3 j + 0.1 len(name))`, in f64, rounded to f32 (as the script).
pub fn formula_weights(arch: &Architecture) -> Weights {
    let mut weights = Weights::new();
    for (name, shape) in expected_shapes(arch) {
        let phase = 0.1 * name.len() as f64;
        let n: usize = shape.iter().product();
        let values: Vec<f32> = if name.ends_with(".weight") {
            let fan_in: usize = shape[1..].iter().product();
            (0..n).map(|j| ((3.0 / fan_in as f64).sqrt() * (0.7 * j as f64 + phase).sin()) as f32).collect()
        } else {
            (0..n).map(|j| (0.1 * (0.3 * j as f64 + phase).cos()) as f32).collect()
        };
        weights.insert(name, Tensor::from_vec(values, shape, &Device::Cpu).expect("tensor"));
    }
    weights
}

/// The largest |ours − reference| relative to the largest |reference|.
pub fn max_rel_error(ours: &[f32], reference: &[f32]) -> f32 {
    assert_eq!(ours.len(), reference.len(), "map sizes differ");
    let scale = reference.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-12);
    ours.iter().zip(reference).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max) / scale
}

/// The maps of `spec` for inputs `x` under `model`, as float32 values: a float32 model and
/// input through [`sanity_attribution::NetMethod`] (the graph walk every run uses), a float64
/// one through the sequential method (candle's autograd, the reference).
pub fn maps_of(
    spec: &sanity_attribution::MethodSpec,
    model: &Model,
    x: &Tensor,
    targets: &[usize],
    ids: &[u64],
) -> Vec<f32> {
    let maps = if x.dtype() == candle_core::DType::F32 {
        let net = sanity_model::Net::Layers(Arc::clone(&model.arch));
        let method = sanity_attribution::NetMethod::build(spec, &net, 0, None).expect("builds");
        let model = sanity_model::NetModel::of(model);
        method.attribute_models(&[&model], x, &[targets], ids).expect("maps").remove(0)
    } else {
        let method = spec.build(&model.arch, 0).expect("builds");
        method.attribute(model, x, targets, ids).expect("maps")
    };
    maps.to_dtype(candle_core::DType::F32).and_then(|m| m.flatten_all()).and_then(|m| m.to_vec1()).expect("f32")
}
