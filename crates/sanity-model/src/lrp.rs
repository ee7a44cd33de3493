//! Layer-wise relevance propagation (Bach et al. 2015, PLoS ONE 10(7); Montavon et al. 2019,
//! "Layer-Wise Relevance Propagation: An Overview"), as Captum's `LRP` computes it: the target
//! logit's value is the relevance at the output, and every layer with weights (and every
//! pooling) redistributes the relevance of its outputs to its inputs in proportion to their
//! contributions, computed on the activations of the ordinary forward pass:
//!
//! ```text
//! ε rule:    R_i = x_i Σ_j w_ij R_j / (z_j + ε·sign(z_j)),   z_j = Σ_i x_i w_ij + b_j
//! α-β rule:  R_i = Σ_j (α z⁺_ij / z⁺_j − β z⁻_ij / z⁻_j) R_j,  z_ij = x_i w_ij,
//!            z±_j = Σ_i z±_ij + b±_j   (Bach et al. 2015 Eq. 60; α − β = 1 conserves)
//! ```
//! (the α-β denominators are stabilised with ε = 1e-9). Deviation from Captum's
//! `Alpha1_Beta0_Rule`: it keeps the whole bias in `z⁺` and multiplies signed inputs by `w⁺`;
//! here bias and products are split by sign. The two agree when inputs and biases are
//! non-negative (the fixture's setting).
//! `sign(0)` counts as +1. ReLU and dropout pass the relevance unchanged; a max-pool gives each
//! window's relevance to its argmax (the ε rule with the pool's output as `z`, ε = 1e-9 whatever
//! the rule, as Captum's default for pooling modules); global average pooling is an
//! average-pooling layer under the same rule; flatten only reorders. With zero biases
//! and ε → 0 the relevance is conserved: `Σ_i R_i = f_t(x)` (tested).

use crate::architecture::Op;
use crate::error::{ModelError, Result};
use crate::forward::Model;
use crate::native::layer_weights;
use crate::ops::linear;
use crate::ops::nhwc::{ConvNhwc, PoolNhwc, global_average, global_average_adjoint, transpose_images};
use crate::ops::with_values;
use std::ops::Range;

/// The ε of the poolings whatever the rule (Captum's default rule for pooling modules), and
/// the stabiliser of the α-β denominators.
pub(crate) const STABILISER: f32 = 1e-9;

/// How layers with weights redistribute relevance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LrpRule {
    /// The ε rule with this ε (> 0).
    Epsilon(f64),
    /// The α-β rule (α − β = 1 for conservation; α = 1, β = 0 is the z⁺ rule).
    AlphaBeta {
        /// Weight of the positive contributions.
        alpha: f64,
        /// Weight of the negative contributions.
        beta: f64,
    },
}

/// A layer with weights, as a linear map of its input plus a bias.
enum Affine {
    Conv(ConvNhwc),
    Linear(usize, usize, usize),
}

impl Affine {
    fn forward(&self, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
        match self {
            Affine::Conv(g) => g.forward(x, &g.weights(w), b),
            Affine::Linear(n, fin, fout) => linear::forward_values(x, w, b, *n, *fin, *fout),
        }
    }

    /// `Wᵀ s`: the input gradient for output gradient `s`.
    fn backward(&self, s: &[f32], w: &[f32]) -> Vec<f32> {
        match self {
            Affine::Conv(g) => g.input_grad(s, &g.weights(w)),
            Affine::Linear(n, fin, fout) => linear::input_grad_values(s, w, *n, *fin, *fout),
        }
    }

    /// The relevance of the input `x` for the output relevance `r` under `rule`; `y` is the
    /// layer's output in the forward (the ε rule's `z`).
    fn relevance(&self, rule: LrpRule, x: &[f32], w: &[f32], b: &[f32], y: &[f32], r: &[f32]) -> Vec<f32> {
        affine_relevance(rule, (x, w, b, y, r), |x, w, b| self.forward(x, w, b), |s, w| self.backward(s, w))
    }
}

/// An affine layer's input, weights, bias, output and output relevance.
type LayerValues<'a> = (&'a [f32], &'a [f32], &'a [f32], &'a [f32], &'a [f32]);

/// The relevance of the input `x` of an affine layer `z = W x + b` for its output relevance
/// `r` under `rule`, `y` its output in the forward; `forward(x, w, b)` evaluates the layer
/// with other inputs, weights and bias, `backward(s, w)` is `Wᵀ s`. Shared by the sequential
/// and the graph relevance passes (`graph_lrp.rs`).
pub(crate) fn affine_relevance(
    rule: LrpRule,
    (x, w, b, y, r): LayerValues,
    forward: impl Fn(&[f32], &[f32], &[f32]) -> Vec<f32>,
    backward: impl Fn(&[f32], &[f32]) -> Vec<f32>,
) -> Vec<f32> {
    let times = |x: &[f32], c: Vec<f32>| -> Vec<f32> { x.iter().zip(c).map(|(x, c)| x * c).collect() };
    match rule {
        LrpRule::Epsilon(eps) => times(x, backward(&stabilised_ratio(r, y, eps as f32), w)),
        LrpRule::AlphaBeta { alpha, beta } => {
            let part = |v: &[f32], positive: bool| -> Vec<f32> {
                v.iter().map(|&v| if positive { v.max(0.0) } else { v.min(0.0) }).collect()
            };
            let (xp, xn, wp, wn, bp, bn) =
                (part(x, true), part(x, false), part(w, true), part(w, false), part(b, true), part(b, false));
            let signed_inputs = xn.iter().any(|&v| v != 0.0);
            let zero_bias = vec![0.0f32; b.len()];
            // z± = x⁺ w± + x⁻ w∓ + b±, and R_i = α x_i·(w-part ᵀ s⁺) − β x_i·(w-part ᵀ s⁻).
            let side = |wx_pos: &[f32], wx_neg: &[f32], bias: &[f32], weight: f64| -> Vec<f32> {
                let mut z = forward(&xp, wx_pos, bias);
                if signed_inputs {
                    z.iter_mut().zip(forward(&xn, wx_neg, &zero_bias)).for_each(|(z, v)| *z += v);
                }
                let s: Vec<f32> = stabilised_ratio(r, &z, STABILISER).iter().map(|v| v * weight as f32).collect();
                let mut out = times(&xp, backward(&s, wx_pos));
                if signed_inputs {
                    out.iter_mut().zip(times(&xn, backward(&s, wx_neg))).for_each(|(o, v)| *o += v);
                }
                out
            };
            let mut out = side(&wp, &wn, &bp, alpha);
            if beta != 0.0 {
                out.iter_mut().zip(side(&wn, &wp, &bn, beta)).for_each(|(o, v)| *o -= v);
            }
            out
        }
    }
}

/// `R_j / (z_j + ε·sign(z_j))`, `sign(0) = +1`.
pub(crate) fn stabilised_ratio(relevance: &[f32], z: &[f32], eps: f32) -> Vec<f32> {
    relevance.iter().zip(z).map(|(&r, &z)| r / (z + if z >= 0.0 { eps } else { -eps })).collect()
}

/// What the relevance pass needs from the forward of one layer.
enum Step {
    /// The layer, its input, weights, bias and output.
    Affine(Affine, Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>),
    Pool(PoolNhwc, Vec<f32>, Vec<u32>, Vec<f32>),
    Gap(usize, usize, Vec<f32>, Vec<f32>),
    Flatten(usize, usize),
    Pass,
}

/// The forward of a layer with weights: its output, and its input, weights and bias kept for
/// the relevance pass.
fn affine_step(model: &Model, name: &str, layer: Affine, act: &mut Vec<f32>) -> Result<(Option<Vec<f32>>, Step)> {
    let (wt, b) = layer_weights(model, name)?;
    let (wt, b) = (with_values(wt, |v: &[f32]| v.to_vec())?, with_values(b, |v: &[f32]| v.to_vec())?);
    let y = layer.forward(act, &wt, &b);
    Ok((Some(y.clone()), Step::Affine(layer, std::mem::take(act), wt, b, y)))
}

/// The relevance of each input value (`x` `[n, c, h, w]` values, NCHW) for the outputs picked
/// by `seed` `[n, outputs]` (one-hot rows: the target logits), under `rule`.
// Long: one arm per layer kind, forward then backward; issue 19's graph engine replaces it.
pub fn relevance(model: &Model, x: &[f32], n: usize, seed: &[f32], rule: LrpRule) -> Result<Vec<f32>> {
    let arch = &model.arch;
    let layers: Range<usize> = 0..arch.layers.len();
    let [c0, h0, w0] = arch.spec.input;
    if x.len() != n * c0 * h0 * w0 {
        return Err(ModelError::BadInput(format!(
            "{} input values for {n} inputs of shape {:?} ({} expected)",
            x.len(),
            arch.spec.input,
            n * c0 * h0 * w0
        )));
    }
    let nhwc = c0 > 1 && h0 * w0 > 1;
    let mut act = if nhwc { transpose_images(x, c0, h0 * w0) } else { x.to_vec() };
    let (mut c, mut h, mut w) = (c0, h0, w0);
    let mut steps = Vec::with_capacity(layers.len());
    for layer in &arch.layers[layers] {
        let (next, step) = match layer.op {
            Op::Conv2d { out_channels, kernel_size, padding, .. } => {
                let g = ConvNhwc::new(n, (c, h, w), out_channels, kernel_size, padding);
                (c, h, w) = (out_channels, g.oh, g.ow);
                affine_step(model, &layer.name, Affine::Conv(g), &mut act)?
            }
            Op::Linear { in_features, out_features, .. } => {
                (c, h, w) = (out_features, 1, 1);
                affine_step(model, &layer.name, Affine::Linear(n, in_features, out_features), &mut act)?
            }
            Op::Relu => (Some(act.iter().map(|v| v.max(0.0)).collect()), Step::Pass),
            Op::MaxPool2d { kernel_size, stride } => {
                let pool = PoolNhwc::new((c, h, w), kernel_size, stride, false);
                let (y, idx) = pool.forward(&act);
                (h, w) = (pool.oh, pool.ow);
                (Some(y.clone()), Step::Pool(pool, std::mem::take(&mut act), idx, y))
            }
            Op::GlobalAvgPool => {
                let hw = h * w;
                let y = global_average(&act, hw, c);
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
            Op::BatchNorm2d { .. } => {
                return Err(ModelError::InvalidArchitecture {
                    layer: layer.name.clone(),
                    reason: "LRP through a batch norm is not supported; fold it into the convolution before it".into(),
                });
            }
        };
        if let Some(y) = next {
            act = y;
        }
        steps.push(step);
    }
    if seed.len() != act.len() {
        return Err(ModelError::BadInput(format!("seed has {} values, the outputs {}", seed.len(), act.len())));
    }
    // The relevance at the output: the target logit's value.
    let mut r: Vec<f32> = seed.iter().zip(&act).map(|(s, y)| s * y).collect();
    for step in steps.into_iter().rev() {
        r = match step {
            Step::Affine(layer, x, wt, b, y) => layer.relevance(rule, &x, &wt, &b, &y, &r),
            Step::Pool(pool, x, idx, y) => {
                let c = pool.backward(&stabilised_ratio(&r, &y, STABILISER), &idx, &y, |_, g| g);
                x.iter().zip(&c).map(|(x, c)| x * c).collect()
            }
            Step::Gap(hw, c, x, y) => {
                let spread = global_average_adjoint(&stabilised_ratio(&r, &y, STABILISER), hw, c);
                x.iter().zip(&spread).map(|(x, s)| x * s).collect()
            }
            Step::Flatten(hw, c) => transpose_images(&r, c, hw),
            Step::Pass => r,
        };
    }
    Ok(if nhwc { transpose_images(&r, h0 * w0, c0) } else { r })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Architecture, init_weights};
    use std::sync::Arc;

    fn model(text: &str) -> Model {
        let arch = Arc::new(Architecture::new(toml::from_str(text).expect("toml")).expect("valid"));
        Model::new(arch.clone(), init_weights(&arch, 1).expect("init"))
    }

    #[test]
    fn bad_input_and_an_unsupported_layer_are_named_as_such_not_as_training_errors() {
        let linear = "input = [1, 2, 2]\n[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"linear\"\nname = \"fc\"\nin_features = 4\nout_features = 2\n";
        let m = model(linear);
        let short = relevance(&m, &[0.0; 3], 1, &[1.0, 0.0], LrpRule::Epsilon(1e-6)).expect_err("3 values for 4");
        assert!(matches!(short, ModelError::BadInput(_)), "{short}");
        let seed = relevance(&m, &[0.0; 4], 1, &[1.0], LrpRule::Epsilon(1e-6)).expect_err("1 seed for 2");
        assert!(matches!(seed, ModelError::BadInput(_)), "{seed}");
        let norm = "input = [1, 2, 2]\n[[layers]]\ntype = \"batch_norm2d\"\nname = \"bn\"\nnum_features = 1\n[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"linear\"\nname = \"fc\"\nin_features = 4\nout_features = 2\n";
        let err = relevance(&model(norm), &[0.0; 4], 1, &[1.0, 0.0], LrpRule::Epsilon(1e-6)).expect_err("batch norm");
        assert!(matches!(&err, ModelError::InvalidArchitecture { layer, .. } if layer == "bn"), "{err}");
    }
}
