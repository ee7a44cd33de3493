//! Guided backpropagation — Springenberg et al. 2015, arXiv:1412.6806, section 3.4 — and
//! DeconvNet — Zeiler & Fergus 2014, arXiv:1311.2901: the input gradient with every ReLU's
//! backward replaced (see [`sanity_model::ReluMode`]):
//! ```text
//! guided:  R_l = [f_l > 0] · [R_{l+1} > 0] · R_{l+1}
//! deconv:  R_l = [R_{l+1} > 0] · R_{l+1}
//! ```
//! Max-pooling routes through the forward argmax (switches), as in both papers and Captum.
//! Deviations from Captum's `GuidedBackprop` / `Deconvolution`: none.

use crate::error::Result;
use crate::input_gradient::{input_gradient, input_gradients};
use crate::method::Attribution;
use candle_core::Tensor;
use sanity_model::{Model, ReluMode};

/// Guided backpropagation.
#[derive(Debug, Clone, Copy, Default)]
pub struct GuidedBackprop;

impl GuidedBackprop {
    /// Its ReLU backward: guided backprop's rule (the gradient and the activation both positive).
    const RULE: ReluMode = ReluMode::Guided;
}

impl Attribution for GuidedBackprop {
    fn id(&self) -> &'static str {
        "guided_backprop"
    }

    fn attribute(&self, model: &Model, x: &Tensor, targets: &[usize], _ids: &[u64]) -> Result<Tensor> {
        input_gradient(model, x, targets, Self::RULE, self.id())
    }

    fn attribute_models(&self, models: &[&Model], x: &Tensor, targets: &[&[usize]], _: &[u64]) -> Result<Vec<Tensor>> {
        input_gradients(models, x, targets, Self::RULE, self.id())
    }

    fn gradient_rule(&self) -> Option<ReluMode> {
        Some(Self::RULE)
    }
}

/// DeconvNet.
#[derive(Debug, Clone, Copy, Default)]
pub struct Deconvnet;

impl Deconvnet {
    /// Its ReLU backward: deconvnet's rule (the gradient positive).
    const RULE: ReluMode = ReluMode::Deconv;
}

impl Attribution for Deconvnet {
    fn id(&self) -> &'static str {
        "deconvnet"
    }

    fn attribute(&self, model: &Model, x: &Tensor, targets: &[usize], _ids: &[u64]) -> Result<Tensor> {
        input_gradient(model, x, targets, Self::RULE, self.id())
    }

    fn attribute_models(&self, models: &[&Model], x: &Tensor, targets: &[&[usize]], _: &[u64]) -> Result<Vec<Tensor>> {
        input_gradients(models, x, targets, Self::RULE, self.id())
    }

    fn gradient_rule(&self) -> Option<ReluMode> {
        Some(Self::RULE)
    }
}
