//! Class activation maps at a named layer: Grad-CAM and the variants pytorch-grad-cam 1.5.7
//! implements. `A` `[k, u, v]` is the output of the layer (for `conv4` the convolution's output
//! before its ReLU, as pytorch-grad-cam sees a `nn.Conv2d` target; name `relu4` for the
//! activation after it), `g = ∂y^t/∂A` the gradient of the explained logit, taken by cutting
//! the forward at that layer (docs/architecture.md). Sums run over the spatial positions `ij`.
//!
//! ```text
//! gradcam            Selvaraju et al. 2017 (arXiv:1610.02391) Eqs. 1–2:
//!                    w_k = (1/Z) Σ_ij g_kij                      L = ReLU(Σ_k w_k A_k)
//! gradcam_plus_plus  Chattopadhyay et al. 2018 (arXiv:1710.11063) Eq. 19 with the exponential
//!                    output's closed form applied to the logit's gradient, as pytorch-grad-cam:
//!                    a_kij = g² / (2 g² + (Σ_ij A_k) g³ + 1e-6)  (0 where g = 0)
//!                    w_k = Σ_ij a_kij ReLU(g_kij)                L = ReLU(Σ_k w_k A_k)
//! xgradcam           Fu et al. 2020 (arXiv:2008.02312) Eq. 11:
//!                    w_k = Σ_ij g_kij A_kij / (Σ_ij A_kij + 1e-7) L = ReLU(Σ_k w_k A_k)
//! layercam           Jiang et al. 2021 (IEEE TIP 30) Eqs. 5–6:
//!                    L_ij = ReLU(Σ_k ReLU(g_kij) A_kij)
//! scorecam           Wang et al. 2020 (arXiv:1910.01279) Eqs. 4–6, as pytorch-grad-cam: each
//!                    A_k upsampled to the input (bilinear, align_corners=True), min-max scaled
//!                    (+1e-8), multiplied into the input; s_k = the target logit of that input;
//!                    w = softmax_k(s)                             L = ReLU(Σ_k w_k A_k)
//! ```
//!
//! Explicit upsampling step: `L` is resized to the input's `h x w` bilinearly with pixel-centre
//! alignment (`cv2.resize` / `align_corners=False`), as pytorch-grad-cam does. Deviation from
//! pytorch-grad-cam: no min-max scaling of each map to [0, 1] (its `scale_cam_image`, before and
//! after the resize); that is the post-processing step `normalize{min_max}`, and the tests
//! compare after it (`tests/cams.rs`).

use crate::error::{AttributionError, Result};
use crate::input_gradient::gradient_from;
use crate::method::Attribution;
use crate::target::one_hot;
use candle_core::{DType, Device, Tensor};
use sanity_data::{resize_bilinear, resize_bilinear_align_corners};
use sanity_model::{Architecture, Mode, Model, ReluMode};

/// Which class activation map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CamKind {
    /// Grad-CAM.
    GradCam,
    /// Grad-CAM++.
    GradCamPlusPlus,
    /// XGrad-CAM.
    XGradCam,
    /// LayerCAM.
    LayerCam,
    /// Score-CAM (gradient-free: one forward pass per channel).
    ScoreCam,
}

impl CamKind {
    /// The method id.
    pub fn id(self) -> &'static str {
        match self {
            CamKind::GradCam => "gradcam",
            CamKind::GradCamPlusPlus => "gradcam_plus_plus",
            CamKind::XGradCam => "xgradcam",
            CamKind::LayerCam => "layercam",
            CamKind::ScoreCam => "scorecam",
        }
    }
}

/// Grad-CAM, the first of the family (the name the other methods and tests use).
pub type GradCam = Cam;

/// A class activation map at one layer.
#[derive(Debug, Clone)]
pub struct Cam {
    /// Index of the layer in the architecture.
    pub layer_index: usize,
    /// The variant.
    pub kind: CamKind,
}

impl Cam {
    /// Grad-CAM at `layer`, or at the last conv layer when `None`. The layer must have a
    /// spatial `[c, h, w]` output.
    pub fn new(arch: &Architecture, layer: Option<&str>) -> Result<Self> {
        Self::of_kind(arch, layer, CamKind::GradCam)
    }

    /// The variant `kind` at `layer` (default: the last conv layer).
    pub fn of_kind(arch: &Architecture, layer: Option<&str>, kind: CamKind) -> Result<Self> {
        let method = kind.id();
        let name = match layer {
            Some(name) => name,
            None => arch.last_conv().ok_or(AttributionError::Invalid {
                method,
                reason: "the model has no conv2d layer; name a layer with a [c, h, w] output".into(),
            })?,
        };
        let layer_index = arch.index_of(name)?;
        let shape = &arch.shapes[layer_index];
        // The layers a CAM can weigh: a spatial output of more than one pixel (at 1x1 every
        // map, upsampled, is one constant).
        let spatial = || -> String {
            let names: Vec<String> = arch
                .layers
                .iter()
                .zip(&arch.shapes)
                .filter(|(_, s)| s.len() == 3 && s[1] * s[2] > 1)
                .map(|(l, s)| format!("`{}` {}x{}", l.name, s[1], s[2]))
                .collect();
            names.join(", ")
        };
        if shape.len() != 3 {
            return Err(AttributionError::Invalid {
                method,
                reason: format!(
                    "layer `{name}` outputs {shape:?}, not a spatial [c, h, w] map; layers with spatial output: {}",
                    spatial()
                ),
            });
        }
        if shape[1] * shape[2] == 1 {
            return Err(AttributionError::Invalid {
                method,
                reason: format!(
                    "layer `{name}`: its output is 1x1 pixels, so every map would be one constant value; accepted: a layer with more than one pixel ({}), or larger images",
                    spatial()
                ),
            });
        }
        Ok(Self { layer_index, kind })
    }

    /// The low-resolution maps `L`, `[n, 1, u, v]`, before upsampling.
    pub fn coarse(&self, model: &Model, x: &Tensor, targets: &[usize]) -> Result<Tensor> {
        let split = self.layer_index + 1;
        let activation = model.forward_range(x, 0..split, &mut Mode::Eval)?.detach();
        let (n, k, u, v) = activation.dims4()?;
        let a = activation.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
        let (p, per_image) = (u * v, k * u * v);
        let gradient = || -> Result<Vec<f64>> {
            let grad = gradient_from(model, &activation, split, targets, ReluMode::Standard, self.kind.id())?;
            Ok(grad.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?)
        };
        let channel_weights = |weight: fn(&[f64], &[f64]) -> f64, g: Vec<f64>| -> Vec<f64> {
            a.chunks_exact(p).zip(g.chunks_exact(p)).map(|(a, g)| weight(a, g)).collect()
        };
        let weighted: Vec<f64> = match self.kind {
            CamKind::GradCam => weighted_sum(&a, &channel_weights(gradcam_weight, gradient()?), k, p),
            CamKind::GradCamPlusPlus => weighted_sum(&a, &channel_weights(plus_plus_weight, gradient()?), k, p),
            CamKind::XGradCam => weighted_sum(&a, &channel_weights(xgradcam_weight, gradient()?), k, p),
            CamKind::ScoreCam => weighted_sum(&a, &self.score_weights(model, x, &a, [n, k, u, v], targets)?, k, p),
            CamKind::LayerCam => {
                let g = gradient()?;
                (0..n * p)
                    .map(|j| {
                        let (i, q) = (j / p, j % p);
                        (0..k).map(|c| g[i * per_image + c * p + q].max(0.0) * a[i * per_image + c * p + q]).sum()
                    })
                    .collect()
            }
        };
        let relu: Vec<f64> = weighted.into_iter().map(|v| v.max(0.0)).collect();
        Ok(Tensor::from_vec(relu, (n, 1, u, v), &Device::Cpu)?.to_dtype(x.dtype())?)
    }

    /// Score-CAM's channel weights `[n, k]`: softmax over channels of the target logit of the
    /// input masked by each upsampled, min-max scaled activation map.
    fn score_weights(
        &self,
        model: &Model,
        x: &Tensor,
        a: &[f64],
        [n, k, u, v]: [usize; 4],
        targets: &[usize],
    ) -> Result<Vec<f64>> {
        let (_, c, h, w) = x.dims4()?;
        let outputs = model.arch.num_outputs();
        one_hot(targets, n, outputs, self.kind.id())?;
        let images = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let logits = |batch: Vec<f32>, rows: usize| -> Result<Vec<f64>> {
            let batch = Tensor::from_vec(batch, (rows, c, h, w), &Device::Cpu)?.to_dtype(x.dtype())?;
            Ok(model.forward(&batch)?.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?)
        };
        score_weights(a, [n, k, u, v], &images, [c, h, w], targets, outputs, logits)
    }
}

/// Score-CAM's channel weights `[n, k]` for activations `a` `[n, k, u, v]` of `images`
/// `[n, c, h, w]`, with `logits(batch, rows)` the model's `[rows, outputs]` logits: any model,
/// a graph's too.
pub(crate) fn score_weights(
    a: &[f64],
    [_, k, u, v]: [usize; 4],
    images: &[f32],
    [c, h, w]: [usize; 3],
    targets: &[usize],
    outputs: usize,
    logits: impl Fn(Vec<f32>, usize) -> Result<Vec<f64>>,
) -> Result<Vec<f64>> {
    let mut weights = Vec::with_capacity(targets.len() * k);
    for (i, image) in images.chunks_exact(c * h * w).enumerate() {
        let mut masked = Vec::with_capacity(k * c * h * w);
        for channel in a[i * k * u * v..(i + 1) * k * u * v].chunks_exact(u * v) {
            let low: Vec<f32> = channel.iter().map(|&v| v as f32).collect();
            let mask = resize_bilinear_align_corners(&low, u, v, h, w);
            let (lo, hi) = mask.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &m| (l.min(m), h.max(m)));
            for plane in image.chunks_exact(h * w) {
                masked.extend(plane.iter().zip(&mask).map(|(p, m)| p * ((m - lo) / (hi - lo + 1e-8))));
            }
        }
        let scores: Vec<f64> = logits(masked, k)?.chunks_exact(outputs).map(|row| row[targets[i]]).collect();
        let max = scores.iter().fold(f64::NEG_INFINITY, |m, &s| m.max(s));
        let exp: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
        let total: f64 = exp.iter().sum();
        weights.extend(exp.iter().map(|e| e / total));
    }
    Ok(weights)
}

/// Grad-CAM's channel weight: the mean gradient (`a`, `g` one channel's `[u·v]` values).
pub(crate) fn gradcam_weight(_a: &[f64], g: &[f64]) -> f64 {
    g.iter().sum::<f64>() / g.len() as f64
}

/// Grad-CAM++'s channel weight.
pub(crate) fn plus_plus_weight(a: &[f64], g: &[f64]) -> f64 {
    let sum_a: f64 = a.iter().sum();
    g.iter()
        .map(|&g| {
            let (g2, g3) = (g * g, g * g * g);
            let alpha = if g != 0.0 { g2 / (2.0 * g2 + sum_a * g3 + 1e-6) } else { 0.0 };
            alpha * g.max(0.0)
        })
        .sum()
}

/// XGrad-CAM's channel weight.
pub(crate) fn xgradcam_weight(a: &[f64], g: &[f64]) -> f64 {
    let sum_a: f64 = a.iter().sum();
    a.iter().zip(g).map(|(a, g)| g * a / (sum_a + 1e-7)).sum()
}

/// `Σ_k w_k A_k` per image: `a` `[n, k, p]`, `weights` `[n, k]`, result `[n, p]`.
pub(crate) fn weighted_sum(a: &[f64], weights: &[f64], k: usize, p: usize) -> Vec<f64> {
    let n = weights.len() / k;
    let mut out = vec![0.0; n * p];
    for (i, dst) in out.chunks_exact_mut(p).enumerate() {
        for c in 0..k {
            let w = weights[i * k + c];
            for (d, &v) in dst.iter_mut().zip(&a[(i * k + c) * p..(i * k + c + 1) * p]) {
                *d += w * v;
            }
        }
    }
    out
}

impl Attribution for Cam {
    fn id(&self) -> &'static str {
        self.kind.id()
    }

    fn attribute(&self, model: &Model, x: &Tensor, targets: &[usize], _ids: &[u64]) -> Result<Tensor> {
        let (n, _, h, w) = x.dims4()?;
        let coarse = self.coarse(model, x, targets)?;
        let (_, _, u, v) = coarse.dims4()?;
        let values = coarse.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let mut out = Vec::with_capacity(n * h * w);
        for map in values.chunks_exact(u * v) {
            out.extend(resize_bilinear(map, u, v, h, w));
        }
        Ok(Tensor::from_vec(out, (n, 1, h, w), &Device::Cpu)?.to_dtype(x.dtype())?)
    }
}
