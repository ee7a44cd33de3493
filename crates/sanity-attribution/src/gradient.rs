//! Vanilla gradient — Simonyan et al. 2014, arXiv:1312.6034, Eq. 2 (without the abs/max over
//! channels, which are post-processing here).
//! ```text
//! M(x) = ∂S_t(x) / ∂x,   S_t the target logit
//! ```
//! Deviations from Captum's `Saliency(abs=False)`: none.

use crate::error::Result;
use crate::input_gradient::{input_gradient, input_gradients, relu_rule_attribution};
use crate::method::Attribution;
use candle_core::Tensor;
use sanity_model::{Model, ReluMode};

/// The gradient of the target logit with respect to the input.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gradient;

relu_rule_attribution!(Gradient, "gradient", ReluMode::Standard);

/// Gradient ⊙ input — Shrikumar et al. 2016, arXiv:1605.01713 (Adebayo et al. 2018, section 2):
/// ```text
/// M(x) = x ⊙ ∂S_t(x) / ∂x
/// ```
/// Deviations from Captum's `InputXGradient`: none.
#[derive(Debug, Clone, Copy, Default)]
pub struct GradientXInput;

impl Attribution for GradientXInput {
    fn id(&self) -> &'static str {
        "gradient_x_input"
    }

    fn attribute(&self, model: &Model, x: &Tensor, targets: &[usize], _ids: &[u64]) -> Result<Tensor> {
        Ok((input_gradient(model, x, targets, ReluMode::Standard, self.id())? * x)?)
    }

    fn attribute_models(&self, models: &[&Model], x: &Tensor, targets: &[&[usize]], _: &[u64]) -> Result<Vec<Tensor>> {
        let grads = input_gradients(models, x, targets, ReluMode::Standard, self.id())?;
        grads.into_iter().map(|g| Ok((g * x)?)).collect()
    }
}
