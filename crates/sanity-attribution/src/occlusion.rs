//! Occlusion — Zeiler & Fergus 2014 (arXiv:1311.2901), section 4.2, as Captum's `Occlusion`:
//! a `window x window` patch (all channels) is replaced by a constant and the drop of the
//! target logit is credited to every pixel of the patch; each pixel's score is the mean over
//! the patches that covered it.
//!
//! ```text
//! M(x)_p = (1 / |W_p|) Σ_{w ∈ W_p} (f_t(x) − f_t(x with patch w set to b))
//! ```
//! Patches start at `0, stride, 2·stride, ...` along each axis, `⌈(size − window)/stride⌉ + 1`
//! of them, and the last one is cut at the border (Captum's `shift_counts` and padding).
//! Deviations from Captum: none (window and stride are square; Captum's take any shape).

use crate::error::{AttributionError, Result};
use crate::method::Attribution;
use crate::target::one_hot;
use candle_core::{DType, Device, Tensor};
use sanity_model::Model;

/// Occlusion with a square patch.
#[derive(Debug, Clone)]
pub struct Occlusion {
    /// Patch side in pixels.
    pub window: usize,
    /// Step between patch positions.
    pub stride: usize,
    /// The value the patch is set to.
    pub baseline: f64,
    /// Occluded inputs per forward pass.
    pub batch: usize,
}

impl Occlusion {
    /// Patch start positions along an axis of `size` pixels.
    fn starts(&self, size: usize) -> Vec<usize> {
        let count = (size - self.window).div_ceil(self.stride) + 1;
        (0..count).map(|i| i * self.stride).collect()
    }

    fn check(&self, h: usize, w: usize) -> Result<()> {
        let reason = if self.window == 0 || self.stride == 0 {
            Some(format!("window = {}, stride = {}; both must be >= 1", self.window, self.stride))
        } else if self.window > h.min(w) {
            Some(format!("window = {} is larger than the {h}x{w} input", self.window))
        } else if self.stride > self.window {
            Some(format!(
                "stride = {} > window = {}: pixels between patches would get no score",
                self.stride, self.window
            ))
        } else {
            None
        };
        match reason {
            Some(reason) => Err(AttributionError::Invalid { method: "occlusion", reason }),
            None => Ok(()),
        }
    }
}

impl Attribution for Occlusion {
    fn id(&self) -> &'static str {
        "occlusion"
    }

    fn attribute(&self, model: &Model, x: &Tensor, targets: &[usize], _ids: &[u64]) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        let outputs = model.arch.num_outputs();
        one_hot(targets, n, outputs, self.id())?;
        let logits = |batch: Vec<f32>, rows: usize| -> Result<Vec<f64>> {
            let t = Tensor::from_vec(batch, (rows, c, h, w), &Device::Cpu)?.to_dtype(x.dtype())?;
            Ok(model.forward(&t)?.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?)
        };
        let images = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let out = self.maps(&images, [c, h, w], targets, outputs, logits)?;
        Ok(Tensor::from_vec(out, (n, c, h, w), &Device::Cpu)?.to_dtype(x.dtype())?)
    }
}

impl Occlusion {
    /// The maps of `images` (`[c, h, w]` each, NCHW) for `targets`, with `logits(batch, rows)`
    /// the model's `[rows, outputs]` logits of a batch of images: any model, a graph's too.
    pub fn maps(
        &self,
        images: &[f32],
        [c, h, w]: [usize; 3],
        targets: &[usize],
        outputs: usize,
        logits: impl Fn(Vec<f32>, usize) -> Result<Vec<f64>>,
    ) -> Result<Vec<f64>> {
        self.check(h, w)?;
        let logit_of = |batch: Vec<f32>, rows: usize, target: usize| -> Result<Vec<f64>> {
            Ok(logits(batch, rows)?.chunks_exact(outputs).map(|row| row[target]).collect())
        };
        let patches: Vec<(usize, usize)> =
            self.starts(h).into_iter().flat_map(|y| self.starts(w).into_iter().map(move |x| (y, x))).collect();
        let n = targets.len();
        let mut out = Vec::with_capacity(n * c * h * w);
        for (image, &target) in images.chunks_exact(c * h * w).zip(targets) {
            let reference = logit_of(image.to_vec(), 1, target)?[0];
            let (mut total, mut covered) = (vec![0.0f64; h * w], vec![0u32; h * w]);
            for chunk in patches.chunks(self.batch.max(1)) {
                let mut batch = Vec::with_capacity(chunk.len() * image.len());
                for &(y0, x0) in chunk {
                    let start = batch.len();
                    batch.extend_from_slice(image);
                    for plane in batch[start..].chunks_exact_mut(h * w) {
                        for y in y0..(y0 + self.window).min(h) {
                            plane[y * w + x0..y * w + (x0 + self.window).min(w)].fill(self.baseline as f32);
                        }
                    }
                }
                for (&(y0, x0), occluded) in chunk.iter().zip(logit_of(batch, chunk.len(), target)?) {
                    for y in y0..(y0 + self.window).min(h) {
                        for p in y * w + x0..y * w + (x0 + self.window).min(w) {
                            total[p] += reference - occluded;
                            covered[p] += 1;
                        }
                    }
                }
            }
            let map: Vec<f64> = total.iter().zip(&covered).map(|(t, &k)| t / f64::from(k)).collect();
            for _ in 0..c {
                out.extend_from_slice(&map);
            }
        }
        Ok(out)
    }
}
