//! Shared by the golden tests: the formula weights both sides build, and the error measure.

#![allow(dead_code)] // Each test binary uses part of it.

use candle_core::{Device, Tensor};
use sanity_model::weights::expected_shapes;
use sanity_model::{Architecture, Weights};

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
