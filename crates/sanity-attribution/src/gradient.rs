//! Vanilla gradient — Simonyan et al. 2014, arXiv:1312.6034, Eq. 2 (without the abs/max over
//! channels, which are post-processing here).
//! ```text
//! M_c(x) = ∂S_t(x) / ∂x,   S_t the target logit
//! ```
//! Deviations from Captum's `Saliency(abs=False)`: none.

use crate::error::{AttributionError, Result};
use crate::method::Attribution;
use crate::target::selected_logit_sum;
use candle_core::{Tensor, Var};
use sanity_model::Model;

/// The gradient of the target logit with respect to the input.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gradient;

impl Attribution for Gradient {
    fn id(&self) -> &'static str {
        "gradient"
    }

    fn attribute(&self, model: &Model, x: &Tensor, targets: &[usize]) -> Result<Tensor> {
        let input = Var::from_tensor(x)?;
        let logits = model.forward(input.as_tensor())?;
        let grads = selected_logit_sum(&logits, targets, self.id())?.backward()?;
        grads
            .get(input.as_tensor())
            .cloned()
            .ok_or(AttributionError::Invalid {
                method: "gradient",
                reason: "the output does not depend on the input".into(),
            })
    }
}
