//! Layer-wise relevance propagation (Bach et al. 2015, PLoS ONE 10(7); Montavon et al. 2019,
//! "Layer-Wise Relevance Propagation: An Overview"), as Captum's `LRP` computes it: the target
//! logit's value is the relevance at the output, and every layer with weights (and every
//! pooling) redistributes the relevance of its outputs to its inputs in proportion to their
//! contributions, computed on the activations of the ordinary forward pass:
//!
//! ```text
//! ε rule:         R_i = x_i Σ_j w_ij R_j / (z_j + ε·sign(z_j)),   z_j = Σ_i x_i w_ij + b_j
//! α=1, β=0 rule:  the same with w⁺ = max(w, 0) in both z_j and the sum (bias kept, as
//!                 Captum's Alpha1_Beta0_Rule), ε = 1e-9
//! ```
//! `sign(0)` counts as +1. ReLU and dropout pass the relevance unchanged; a max-pool gives each
//! window's relevance to its argmax (the ε rule with the pool's output as `z`, ε = 1e-9 whatever
//! the rule, as Captum's default for pooling modules); global average pooling is an
//! average-pooling layer under the same rule; flatten only reorders. With zero biases
//! and ε → 0 the relevance is conserved: `Σ_i R_i = f_t(x)` (tested).

use crate::architecture::Op;
use crate::error::{ModelError, Result};
use crate::forward::Model;
use crate::ops::linear;
use crate::ops::nhwc::{ConvNhwc, PoolNhwc, transpose_images};
use crate::ops::with_values;
use std::ops::Range;

/// ε of the poolings whatever the rule (Captum's default rule for pooling modules).
const POOL_EPSILON: f32 = 1e-9;

/// How layers with weights redistribute relevance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LrpRule {
    /// The ε rule with this ε (> 0).
    Epsilon(f64),
    /// α = 1, β = 0: positive weights only.
    Alpha1Beta0,
}

impl LrpRule {
    fn epsilon(self) -> f32 {
        match self {
            LrpRule::Epsilon(e) => e as f32,
            LrpRule::Alpha1Beta0 => 1e-9,
        }
    }

    fn weights(self, w: &[f32]) -> Vec<f32> {
        match self {
            LrpRule::Epsilon(_) => w.to_vec(),
            LrpRule::Alpha1Beta0 => w.iter().map(|v| v.max(0.0)).collect(),
        }
    }
}

/// `R_j / (z_j + ε·sign(z_j))`, `sign(0) = +1`.
fn stabilised_ratio(relevance: &[f32], z: &[f32], eps: f32) -> Vec<f32> {
    relevance.iter().zip(z).map(|(&r, &z)| r / (z + if z >= 0.0 { eps } else { -eps })).collect()
}

/// What the relevance pass needs from the forward of one layer: its input and the output that
/// divides the relevance (`z`, computed with the rule's weights).
enum Step {
    Conv(ConvNhwc, Vec<f32>, Vec<f32>, Vec<f32>),
    Linear(usize, usize, usize, Vec<f32>, Vec<f32>, Vec<f32>),
    Pool(PoolNhwc, Vec<f32>, Vec<u32>, Vec<f32>),
    Gap(usize, usize, Vec<f32>, Vec<f32>),
    Flatten(usize, usize),
    Pass,
}

fn weights<'a>(model: &'a Model, layer: &str) -> Result<(&'a candle_core::Tensor, &'a candle_core::Tensor)> {
    Ok((model.weights.get(&format!("{layer}.weight"))?, model.weights.get(&format!("{layer}.bias"))?))
}

/// The relevance of each input value (`x` `[n, c, h, w]` values, NCHW) for the outputs picked
/// by `seed` `[n, outputs]` (one-hot rows: the target logits), under `rule`.
pub fn relevance(model: &Model, x: &[f32], n: usize, seed: &[f32], rule: LrpRule) -> Result<Vec<f32>> {
    let arch = &model.arch;
    let layers: Range<usize> = 0..arch.layers.len();
    let [c0, h0, w0] = arch.spec.input;
    let nhwc = c0 > 1 && h0 * w0 > 1;
    let mut act = if nhwc { transpose_images(x, c0, h0 * w0) } else { x.to_vec() };
    let (mut c, mut h, mut w) = (c0, h0, w0);
    let mut steps = Vec::with_capacity(layers.len());
    let eps = rule.epsilon();
    for layer in &arch.layers[layers] {
        let (next, step) = match layer.op {
            Op::Conv2d { out_channels, kernel_size, padding, .. } => {
                let (oh, ow) = (h + 2 * padding + 1 - kernel_size, w + 2 * padding + 1 - kernel_size);
                let g = ConvNhwc { n, h, w, c, o: out_channels, k: kernel_size, pad: padding, oh, ow };
                let (wt, b) = weights(model, &layer.name)?;
                let (y, z, ruled) = with_values(wt, |wt: &[f32]| {
                    with_values(b, |b: &[f32]| {
                        let y = g.forward(&act, &g.weights(wt), b);
                        let ruled = rule.weights(wt);
                        let z = match rule {
                            LrpRule::Epsilon(_) => y.clone(),
                            LrpRule::Alpha1Beta0 => g.forward(&act, &g.weights(&ruled), b),
                        };
                        (y, z, ruled)
                    })
                })??;
                (c, h, w) = (out_channels, oh, ow);
                (Some(y), Step::Conv(g, std::mem::take(&mut act), z, ruled))
            }
            Op::Linear { in_features, out_features, .. } => {
                let (wt, b) = weights(model, &layer.name)?;
                let (y, z, ruled) = with_values(wt, |wt: &[f32]| {
                    with_values(b, |b: &[f32]| {
                        let y = linear::forward_values(&act, wt, b, n, in_features, out_features);
                        let ruled = rule.weights(wt);
                        let z = match rule {
                            LrpRule::Epsilon(_) => y.clone(),
                            LrpRule::Alpha1Beta0 => {
                                linear::forward_values(&act, &ruled, b, n, in_features, out_features)
                            }
                        };
                        (y, z, ruled)
                    })
                })??;
                (c, h, w) = (out_features, 1, 1);
                (Some(y), Step::Linear(n, in_features, out_features, std::mem::take(&mut act), z, ruled))
            }
            Op::Relu => (Some(act.iter().map(|v| v.max(0.0)).collect()), Step::Pass),
            Op::MaxPool2d { kernel_size, stride } => {
                let (oh, ow) = ((h - kernel_size) / stride + 1, (w - kernel_size) / stride + 1);
                let pool = PoolNhwc { h, w, c, k: kernel_size, s: stride, oh, ow, relu_first: false };
                let (y, idx) = pool.forward(&act);
                (h, w) = (oh, ow);
                (Some(y.clone()), Step::Pool(pool, std::mem::take(&mut act), idx, y))
            }
            Op::GlobalAvgPool => {
                let hw = h * w;
                let mut y = vec![0.0f32; n * c];
                for (out, image) in y.chunks_exact_mut(c).zip(act.chunks_exact(hw * c)) {
                    for position in image.chunks_exact(c) {
                        out.iter_mut().zip(position).for_each(|(o, &v)| *o += v);
                    }
                    out.iter_mut().for_each(|o| *o /= hw as f32);
                }
                (h, w) = (1, 1);
                (Some(y.clone()), Step::Gap(hw, c, std::mem::take(&mut act), y))
            }
            Op::Flatten if c > 1 && h * w > 1 => {
                let (hw, cc) = (h * w, c);
                (c, h, w) = (cc * hw, 1, 1);
                (Some(transpose_images(&act, hw, cc)), Step::Flatten(hw, cc))
            }
            Op::Flatten => {
                (c, h, w) = (c * h * w, 1, 1);
                (None, Step::Pass)
            }
            Op::Dropout { .. } => (None, Step::Pass),
        };
        if let Some(y) = next {
            act = y;
        }
        steps.push(step);
    }
    if seed.len() != act.len() {
        return Err(ModelError::Training(format!("seed has {} values, the outputs {}", seed.len(), act.len())));
    }
    // The relevance at the output: the target logit's value.
    let mut r: Vec<f32> = seed.iter().zip(&act).map(|(s, y)| s * y).collect();
    for step in steps.into_iter().rev() {
        r = match step {
            Step::Conv(g, x, z, ruled) => {
                let c = g.input_grad(&stabilised_ratio(&r, &z, eps), &g.weights(&ruled));
                x.iter().zip(&c).map(|(x, c)| x * c).collect()
            }
            Step::Linear(n, fin, fout, x, z, ruled) => {
                let c = linear::input_grad_values(&stabilised_ratio(&r, &z, eps), &ruled, n, fin, fout);
                x.iter().zip(&c).map(|(x, c)| x * c).collect()
            }
            Step::Pool(pool, x, idx, y) => {
                let c = pool.backward(&stabilised_ratio(&r, &y, POOL_EPSILON), &idx, &y, |_, g| g);
                x.iter().zip(&c).map(|(x, c)| x * c).collect()
            }
            Step::Gap(hw, c, x, y) => {
                let s = stabilised_ratio(&r, &y, POOL_EPSILON);
                x.chunks_exact(c)
                    .enumerate()
                    .flat_map(|(p, xs)| {
                        let image = p / hw;
                        xs.iter()
                            .zip(&s[image * c..(image + 1) * c])
                            .map(|(x, s)| x * s / hw as f32)
                            .collect::<Vec<_>>()
                    })
                    .collect()
            }
            Step::Flatten(hw, c) => transpose_images(&r, c, hw),
            Step::Pass => r,
        };
    }
    Ok(if nhwc { transpose_images(&r, h0 * w0, c0) } else { r })
}
