//! Guided Grad-CAM — Selvaraju et al. 2017, arXiv:1610.02391, section 3.1: guided
//! backpropagation multiplied element-wise by the Grad-CAM map upsampled to the input size,
//! broadcast over the input channels.
//! ```text
//! M(x) = GB(x) ⊙ up(ReLU(Σ_k α_k A^k))
//! ```
//! Deviation from Captum's `GuidedGradCam`: Captum upsamples with `interpolate_mode="nearest"`
//! by default; here the Grad-CAM upsampling is bilinear (as [`crate::GradCam`]), which equals
//! Captum with `interpolate_mode="bilinear"` (the fixture is made that way).

use crate::error::Result;
use crate::gradcam::GradCam;
use crate::guided_backprop::GuidedBackprop;
use crate::method::Attribution;
use candle_core::Tensor;
use sanity_model::Model;

/// Guided Grad-CAM at one layer.
#[derive(Debug, Clone)]
pub struct GuidedGradCam {
    /// The Grad-CAM part.
    pub cam: GradCam,
}

impl Attribution for GuidedGradCam {
    fn id(&self) -> &'static str {
        "guided_gradcam"
    }

    fn attribute(&self, model: &Model, x: &Tensor, targets: &[usize], ids: &[u64]) -> Result<Tensor> {
        let guided = GuidedBackprop.attribute(model, x, targets, ids)?;
        let cam = self.cam.attribute(model, x, targets, ids)?;
        Ok(guided.broadcast_mul(&cam)?)
    }

    fn attribute_models(
        &self,
        models: &[&Model],
        x: &Tensor,
        targets: &[&[usize]],
        ids: &[u64],
    ) -> Result<Vec<Tensor>> {
        let guided = GuidedBackprop.attribute_models(models, x, targets, ids)?;
        let cams = self.cam.attribute_models(models, x, targets, ids)?;
        guided.iter().zip(&cams).map(|(g, cam)| Ok(g.broadcast_mul(cam)?)).collect()
    }
}
