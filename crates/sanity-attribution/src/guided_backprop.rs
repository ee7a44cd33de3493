//! Guided backpropagation — Springenberg et al. 2015, arXiv:1412.6806, section 3.4 — and
//! DeconvNet — Zeiler & Fergus 2014, arXiv:1311.2901: the input gradient with every ReLU's
//! backward replaced (see [`sanity_model::ReluMode`]):
//! ```text
//! guided:  R_l = [f_l > 0] · [R_{l+1} > 0] · R_{l+1}
//! deconv:  R_l = [R_{l+1} > 0] · R_{l+1}
//! ```
//! Max-pooling routes through the forward argmax (switches), as in both papers and Captum.
//! Deviations from Captum's `GuidedBackprop` / `Deconvolution`: none.

use crate::input_gradient::relu_rule_attribution;
use sanity_model::ReluMode;

/// Guided backpropagation.
#[derive(Debug, Clone, Copy, Default)]
pub struct GuidedBackprop;

// Guided backprop's rule: the gradient and the activation both positive.
relu_rule_attribution!(GuidedBackprop, "guided_backprop", ReluMode::Guided);

/// DeconvNet.
#[derive(Debug, Clone, Copy, Default)]
pub struct Deconvnet;

// Deconvnet's rule: the gradient positive.
relu_rule_attribution!(Deconvnet, "deconvnet", ReluMode::Deconv);
