//! Grad-CAM — Selvaraju et al. 2017, arXiv:1610.02391, Eqs. 1–2.
//! ```text
//! α_k = (1/Z) Σ_{i,j} ∂y^t / ∂A^k_{ij}          (global-average-pooled gradients)
//! L   = ReLU(Σ_k α_k A^k)                         [n, 1, u, v]
//! ```
//! `A` is the output of the named layer (for `conv4` the convolution's output before its ReLU,
//! as pytorch-grad-cam sees a `nn.Conv2d` target; name `relu4` to use the activation after
//! it, as a Keras model with a fused activation does). The gradient is taken by cutting the
//! forward at that layer (DESIGN.md section 2).
//!
//! Explicit upsampling step: `L` is resized to the input's `h x w` bilinearly with pixel-centre
//! alignment (`cv2.resize` / `align_corners=False`), as pytorch-grad-cam does. Deviation from
//! pytorch-grad-cam: no min-max scaling of each map to [0, 1]; that is the post-processing
//! step `normalize{min_max}`.

use crate::error::{AttributionError, Result};
use crate::input_gradient::gradient_from;
use crate::method::Attribution;
use candle_core::{D, Device, Tensor};
use sanity_data::resize_bilinear;
use sanity_model::{Architecture, Mode, Model, ReluMode};

/// Grad-CAM at one layer.
#[derive(Debug, Clone)]
pub struct GradCam {
    /// Index of the layer in the architecture.
    pub layer_index: usize,
}

impl GradCam {
    /// Grad-CAM at `layer`, or at the last conv layer when `None`. The layer must have a
    /// spatial `[c, h, w]` output.
    pub fn new(arch: &Architecture, layer: Option<&str>) -> Result<Self> {
        let name = match layer {
            Some(name) => name,
            None => arch.last_conv().ok_or(AttributionError::Invalid {
                method: "gradcam",
                reason: "the model has no conv2d layer; name a layer with a [c, h, w] output".into(),
            })?,
        };
        let layer_index = arch.index_of(name)?;
        let shape = &arch.shapes[layer_index];
        if shape.len() != 3 {
            let spatial: Vec<&str> = arch
                .layers
                .iter()
                .zip(&arch.shapes)
                .filter(|(_, s)| s.len() == 3)
                .map(|(l, _)| l.name.as_str())
                .collect();
            return Err(AttributionError::Invalid {
                method: "gradcam",
                reason: format!(
                    "layer `{name}` outputs {shape:?}, not a spatial [c, h, w] map; layers with spatial output: {}",
                    spatial.join(", ")
                ),
            });
        }
        Ok(Self { layer_index })
    }

    /// The low-resolution maps `ReLU(Σ_k α_k A^k)`, `[n, 1, u, v]`, before upsampling.
    pub fn coarse(&self, model: &Model, x: &Tensor, targets: &[usize]) -> Result<Tensor> {
        let split = self.layer_index + 1;
        let activation = model.forward_range(x, 0..split, &mut Mode::Eval)?.detach();
        let grad = gradient_from(model, &activation, split, targets, ReluMode::Standard, self.id())?;
        let alpha = grad.mean_keepdim(D::Minus1)?.mean_keepdim(D::Minus2)?; // [n, k, 1, 1]
        Ok(activation.broadcast_mul(&alpha)?.sum_keepdim(1)?.relu()?)
    }
}

impl Attribution for GradCam {
    fn id(&self) -> &'static str {
        "gradcam"
    }

    fn attribute(&self, model: &Model, x: &Tensor, targets: &[usize], _ids: &[u64]) -> Result<Tensor> {
        let (n, _, h, w) = x.dims4()?;
        let coarse = self.coarse(model, x, targets)?;
        let (_, _, u, v) = coarse.dims4()?;
        let values = coarse.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let mut out = Vec::with_capacity(n * h * w);
        for map in values.chunks_exact(u * v) {
            out.extend(resize_bilinear(map, u, v, h, w));
        }
        Ok(Tensor::from_vec(out, (n, 1, h, w), &Device::Cpu)?.to_dtype(x.dtype())?)
    }
}
