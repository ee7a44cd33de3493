//! Layer-wise relevance propagation with the ε rule or the α-β rule on every layer with weights
//! (the computation, its conventions and the deviations from Captum are in
//! [`sanity_model::lrp`]). Global average pooling is an average-pooling layer (Captum's rule for
//! `nn.AdaptiveAvgPool2d`), which Captum would not apply to a functional `mean`.

use crate::error::{AttributionError, Result};
use crate::method::Attribution;
use crate::target::one_hot;
use candle_core::{DType, Device, Tensor};
use sanity_model::{LrpRule, Model, lrp};

/// LRP under one rule.
#[derive(Debug, Clone, Copy)]
pub struct Lrp {
    /// The rule of every layer with weights.
    pub rule: LrpRule,
}

impl Attribution for Lrp {
    fn id(&self) -> &'static str {
        match self.rule {
            LrpRule::Epsilon(_) => "lrp_epsilon",
            LrpRule::AlphaBeta { .. } => "lrp_alpha_beta",
        }
    }

    fn attribute(&self, model: &Model, x: &Tensor, targets: &[usize], _ids: &[u64]) -> Result<Tensor> {
        if let LrpRule::Epsilon(e) = self.rule
            && !(e.is_finite() && e > 0.0)
        {
            return Err(AttributionError::Invalid {
                method: self.id(),
                reason: format!("epsilon = {e}; accepted: > 0"),
            });
        }
        let n = x.dim(0)?;
        let seed = one_hot(targets, n, model.arch.num_outputs(), self.id())?;
        let values = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let r = lrp::relevance(model, &values, n, &seed, self.rule)?;
        Ok(Tensor::from_vec(r, x.shape(), &Device::Cpu)?.to_dtype(x.dtype())?)
    }
}
