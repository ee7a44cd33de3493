//! The gradient of each input's target logit with respect to that input, with a chosen ReLU
//! backward rule: the building block of the gradient-based methods.

use crate::error::{AttributionError, Result};
use crate::target::selected_logit_sum;
use candle_core::{Tensor, Var};
use sanity_model::{Mode, Model, ReluMode};

/// `∂ logit_{t_i}(x_i) / ∂ x_i` for every row `i` of `x` `[n, c, h, w]`, as `[n, c, h, w]`.
/// One backward of `Σ_i logit_{t_i}(x_i)` gives all rows at once (rows do not interact in
/// evaluation mode). `relu` selects the ReLU backward rule (guided backprop, deconvnet).
pub fn input_gradient(
    model: &Model,
    x: &Tensor,
    targets: &[usize],
    relu: ReluMode,
    method: &'static str,
) -> Result<Tensor> {
    let input = Var::from_tensor(x)?;
    let logits = model.forward_with(input.as_tensor(), 0..model.arch.layers.len(), &mut Mode::Eval, relu)?;
    let grads = selected_logit_sum(&logits, targets, method)?.backward()?;
    match grads.get(input.as_tensor()) {
        Some(g) => Ok(g.clone()),
        None => Err(AttributionError::Invalid { method, reason: "the output does not depend on the input".into() }),
    }
}
