//! Seeded initialisation and re-initialisation of named layers as pure functions.

use crate::architecture::Architecture;
use crate::error::{ModelError, Result};
use crate::layer::Init;
use crate::weights::Weights;
use candle_core::{Device, Tensor};
use rand::Rng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use sanity_data::stream_rng;
use serde::{Deserialize, Serialize};

/// How a randomisation test re-initialises a layer (Adebayo et al. 2018, section 3.1, left the
/// distribution implicit; each choice here is named).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Reinit {
    /// The layer's own initialisers, as at the start of training (Adebayo et al.'s code).
    Original {},
    /// Truncated normal weights with this std, biases from the layer's own initialiser.
    TruncatedNormal {
        /// Standard deviation before truncation at 2 std.
        std: f64,
    },
    /// PyTorch's default `U(±1/sqrt(fan_in))` for weights and biases (Quantus' MPRT re-inits
    /// with `reset_parameters()`).
    PytorchDefault {},
    /// A seeded random permutation of the trained values of each tensor (keeps the marginal
    /// distribution of the weights).
    Permute {},
    /// The trained values plus Gaussian noise of std `scale` times the tensor's root mean
    /// square (a relative perturbation: `scale = 1` adds noise as large as the weights; an
    /// all-zero tensor stays zero).
    GaussianPerturb {
        /// Noise std relative to the tensor's root mean square, finite and >= 0.
        scale: f64,
    },
}

/// Draws `n` values from `init` for a tensor with the given fans.
fn sample(init: &Init, n: usize, fan_in: usize, fan_out: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    match *init {
        Init::GlorotUniform {} => {
            let limit = (6.0 / (fan_in + fan_out) as f64).sqrt();
            (0..n).map(|_| rng.random_range(-limit..=limit) as f32).collect()
        }
        Init::PytorchDefault {} => {
            let bound = 1.0 / (fan_in as f64).sqrt();
            (0..n).map(|_| rng.random_range(-bound..=bound) as f32).collect()
        }
        Init::TruncatedNormal { std } => {
            let normal = Normal::new(0.0, std.abs()).expect("std is finite");
            (0..n)
                .map(|_| {
                    loop {
                        let v: f64 = normal.sample(rng);
                        if v.abs() <= 2.0 * std.abs() {
                            break v as f32;
                        }
                    }
                })
                .collect()
        }
        Init::Constant { value } => vec![value as f32; n],
    }
}

fn check_init(layer: &str, init: &Init) -> Result<()> {
    if let Init::TruncatedNormal { std } = init
        && !(std.is_finite() && *std > 0.0)
    {
        return Err(ModelError::InvalidArchitecture {
            layer: layer.to_string(),
            reason: format!("truncated_normal std = {std}; accepted: a finite value > 0"),
        });
    }
    Ok(())
}

/// Fresh weights for every parameterised layer; layer `i` draws from
/// `stream_rng(seed, "init", i)`, so adding a layer does not change the others' values.
pub fn init_weights(arch: &Architecture, seed: u64) -> Result<Weights> {
    let mut weights = Weights::new();
    for (i, layer) in arch.layers.iter().enumerate() {
        let (Some((w_shape, b_shape, fan_in, fan_out)), Some((w_init, b_init))) =
            (layer.op.parameter_shapes(), layer.op.initializers())
        else {
            continue;
        };
        check_init(&layer.name, w_init)?;
        check_init(&layer.name, b_init)?;
        let mut rng = stream_rng(seed, "init", i as u64);
        let w = sample(w_init, w_shape.iter().product(), fan_in, fan_out, &mut rng);
        let b = sample(b_init, b_shape[0], fan_in, fan_out, &mut rng);
        weights.insert(format!("{}.weight", layer.name), Tensor::from_vec(w, w_shape, &Device::Cpu)?);
        for &(what, value) in layer.op.buffers() {
            weights.insert(format!("{}.{what}", layer.name), Tensor::full(value, b_shape.clone(), &Device::Cpu)?);
        }
        weights.insert(format!("{}.bias", layer.name), Tensor::from_vec(b, b_shape, &Device::Cpu)?);
    }
    Ok(weights)
}

/// New weights equal to `weights` except layer `layer`, re-drawn by `reinit` from `rng`.
/// Pure: `weights` is untouched. Only a parameterised layer can be re-initialised.
pub fn reinitialize(
    weights: &Weights,
    arch: &Architecture,
    layer: &str,
    reinit: &Reinit,
    rng: &mut ChaCha8Rng,
) -> Result<Weights> {
    let index = arch.stage_index(layer)?;
    let op = &arch.layers[index].op;
    let (w_shape, b_shape, fan_in, fan_out) = op.parameter_shapes().expect("stage_index returns a parameterised layer");
    let (own_w, own_b) = op.initializers().expect("parameterised layers have initialisers");
    let (w_name, b_name) = (format!("{layer}.weight"), format!("{layer}.bias"));
    let (w, b) = match reinit {
        Reinit::Original {} => (
            sample(own_w, w_shape.iter().product(), fan_in, fan_out, rng),
            sample(own_b, b_shape[0], fan_in, fan_out, rng),
        ),
        Reinit::TruncatedNormal { std } => {
            let init = Init::TruncatedNormal { std: *std };
            check_init(layer, &init)?;
            (
                sample(&init, w_shape.iter().product(), fan_in, fan_out, rng),
                sample(own_b, b_shape[0], fan_in, fan_out, rng),
            )
        }
        Reinit::PytorchDefault {} if matches!(op, crate::architecture::Op::BatchNorm2d { .. }) => (
            // PyTorch's `BatchNorm2d.reset_parameters()`: γ = 1, β = 0.
            sample(own_w, w_shape.iter().product(), fan_in, fan_out, rng),
            sample(own_b, b_shape[0], fan_in, fan_out, rng),
        ),
        Reinit::PytorchDefault {} => {
            let init = Init::PytorchDefault {};
            (
                sample(&init, w_shape.iter().product(), fan_in, fan_out, rng),
                sample(&init, b_shape[0], fan_in, fan_out, rng),
            )
        }
        Reinit::GaussianPerturb { scale } => {
            if !(scale.is_finite() && *scale >= 0.0) {
                return Err(ModelError::InvalidArchitecture {
                    layer: layer.to_string(),
                    reason: format!("gaussian_perturb scale = {scale}; accepted: a finite value >= 0"),
                });
            }
            let perturb = |name: &str, rng: &mut ChaCha8Rng| -> Result<Vec<f32>> {
                let values = weights.get(name)?.flatten_all()?.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?;
                let rms =
                    (values.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / values.len().max(1) as f64).sqrt();
                let normal = Normal::new(0.0, scale * rms).expect("a finite, non-negative std");
                Ok(values.iter().map(|&v| (f64::from(v) + normal.sample(rng)) as f32).collect())
            };
            (perturb(&w_name, rng)?, perturb(&b_name, rng)?)
        }
        Reinit::Permute {} => {
            let mut w = weights.get(&w_name)?.flatten_all()?.to_vec1::<f32>()?;
            let mut b = weights.get(&b_name)?.flatten_all()?.to_vec1::<f32>()?;
            w.shuffle(rng);
            b.shuffle(rng);
            (w, b)
        }
    };
    let mut out = weights.clone();
    // A batch norm re-initialised from scratch also forgets its running statistics, as
    // PyTorch's `reset_parameters()`; a permutation or perturbation keeps them.
    if !matches!(reinit, Reinit::Permute {} | Reinit::GaussianPerturb { .. }) {
        for &(what, value) in op.buffers() {
            out.insert(format!("{layer}.{what}"), Tensor::full(value, b_shape.clone(), &Device::Cpu)?);
        }
    }
    out.insert(w_name, Tensor::from_vec(w, w_shape, &Device::Cpu)?);
    out.insert(b_name, Tensor::from_vec(b, b_shape, &Device::Cpu)?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preset;

    #[test]
    fn gaussian_perturb_adds_noise_relative_to_the_tensor() {
        let arch = Architecture::new(preset("phantom-cnn", [1, 32, 32]).expect("preset")).expect("valid");
        let trained = init_weights(&arch, 3).expect("init");
        let values = |w: &Weights, name: &str| {
            w.get(name).expect("tensor").flatten_all().expect("flat").to_vec1::<f32>().expect("f32")
        };
        let rms = |v: &[f32]| (v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
        let perturb = |scale: f64| {
            reinitialize(&trained, &arch, "conv2", &Reinit::GaussianPerturb { scale }, &mut stream_rng(1, "t", 0))
        };
        let unchanged = perturb(0.0).expect("scale 0");
        assert_eq!(values(&unchanged, "conv2.weight"), values(&trained, "conv2.weight"));
        let noisy = perturb(0.5).expect("scale 0.5");
        let (before, after) = (values(&trained, "conv2.weight"), values(&noisy, "conv2.weight"));
        let noise: Vec<f32> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
        let ratio = rms(&noise) / rms(&before);
        assert!((ratio - 0.5).abs() < 0.05, "noise rms / weight rms = {ratio}");
        assert_eq!(values(&noisy, "conv1.weight"), values(&trained, "conv1.weight"), "other layers untouched");
        assert!(perturb(-1.0).is_err() && perturb(f64::NAN).is_err());
    }
}
