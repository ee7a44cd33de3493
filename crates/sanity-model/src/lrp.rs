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

use crate::error::Result;
use crate::forward::Model;
use crate::graph::Graph;
use crate::graph_engine::GraphModel;

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

/// An affine layer's input, weights, bias, output and output relevance.
type LayerValues<'a> = (&'a [f32], &'a [f32], &'a [f32], &'a [f32], &'a [f32]);

/// The relevance of the input `x` of an affine layer `z = W x + b` for its output relevance
/// `r` under `rule`, `y` its output in the forward; `forward(x, w, b)` evaluates the layer
/// with other inputs, weights and bias (an empty bias is zeros), `backward(s, w)` is `Wᵀ s`. Used by the relevance pass
/// on the graph walk (`graph_lrp.rs`).
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
            // z± = x⁺ w± + x⁻ w∓ + b±, and R_i = α x_i·(w-part ᵀ s⁺) − β x_i·(w-part ᵀ s⁻).
            let side = |wx_pos: &[f32], wx_neg: &[f32], bias: &[f32], weight: f64| -> Vec<f32> {
                let mut z = forward(&xp, wx_pos, bias);
                if signed_inputs {
                    z.iter_mut().zip(forward(&xn, wx_neg, &[])).for_each(|(z, v)| *z += v);
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

/// The relevance of each input value (`x` `[n, c, h, w]` values, NCHW) of a sequential model for
/// the outputs picked by `seed` `[n, outputs]` (one-hot rows: the target logits), under `rule`:
/// the relevance pass of its graph (`graph_lrp.rs`).
pub fn relevance(model: &Model, x: &[f32], n: usize, seed: &[f32], rule: LrpRule) -> Result<Vec<f32>> {
    let graph = Graph::from_architecture(&model.arch)?;
    let walk = GraphModel::new(&graph, &model.weights)?;
    crate::graph_lrp::relevance(&walk, x, n, seed, rule)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ModelError;
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
