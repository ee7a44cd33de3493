//! SmoothGrad, SmoothGrad², VarGrad: any method averaged over noisy copies of the input.
//!
//! - SmoothGrad — Smilkov et al. 2017, arXiv:1706.03825, Eq. 3:
//!   `M̂(x) = (1/n) Σ_k M(x + ε_k)`, `ε_k ~ N(0, σ²)`;
//! - SmoothGrad² — Hooker et al. 2019 (arXiv:1806.10758): `(1/n) Σ_k M(x + ε_k)²`;
//! - VarGrad — Adebayo et al. 2018b (arXiv:1810.03307): the variance over samples,
//!   `(1/n) Σ_k (M(x + ε_k) − M̂(x))²` (population variance, as Captum's NoiseTunnel), computed
//!   with Welford's update, not `E[M²] − E[M]²`.
//!
//! `σ = noise · (max(x_i) − min(x_i))` per image, as in the SmoothGrad paper and Adebayo et
//! al.'s code ("noise level" as a fraction of the input range). The noise of the image with id
//! `d` is drawn from `stream_rng(seed, "noise_tunnel", d)`, so a map does not depend on the
//! batch it was computed in, and a cascade stage sees the same noise as the original model.
//! Noisy copies are evaluated `batch` at a time. SmoothGrad of a plain gradient (`gradient`,
//! `guided_backprop`, `deconvnet`: [`Attribution::gradient_rule`]) takes its mean through the
//! weights in the backward's seeds instead, passes holding whole images' copies as integrated
//! gradients' do (`input_gradient::weighted_gradient_sums`; the graph walk takes the sums inside
//! the backward, `graph_methods.rs`). Deviation from Captum's `NoiseTunnel`: its
//! `stdevs` is absolute; `noise` here is relative to each image's range.

use crate::error::{AttributionError, Result};
use crate::input_gradient::weighted_gradient_sums;
use crate::method::Attribution;
use crate::target::check_target_lists;
use candle_core::{DType, Device, Tensor};
use rand_distr::{Distribution, Normal};
use sanity_data::stream_rng;
use sanity_model::Model;

/// The id of noisy copy `k` of the image with id `id` (a SplitMix64 step of both).
pub(crate) fn copy_id(id: u64, k: usize) -> u64 {
    let mut z = id ^ (k as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// How the maps of the noisy copies are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    /// Mean (SmoothGrad).
    Mean,
    /// Mean of squares (SmoothGrad²).
    MeanOfSquares,
    /// Variance (VarGrad).
    Variance,
}

/// A method averaged over noisy inputs.
pub struct NoiseTunnel {
    /// The inner method.
    pub inner: Box<dyn Attribution>,
    /// The combination.
    pub aggregate: Aggregate,
    /// Noisy copies per image.
    pub samples: usize,
    /// Noise std as a fraction of each image's value range.
    pub noise: f64,
    /// Inputs per call of the inner method (for a plain gradient, points per pass as
    /// integrated gradients' `batch`).
    pub batch: usize,
    /// Run seed.
    pub seed: u64,
}

impl NoiseTunnel {
    /// `samples` noisy copies of image `x_i` (flat values) with id `id`. The noise's std is a
    /// fraction of the image's value range, so an image with a non-finite value (whose range
    /// is infinite or NaN) is refused.
    fn noisy_copies(&self, image: &[f64], id: u64) -> Result<Vec<f64>> {
        noisy_copies(self.id(), (self.samples, self.noise, self.seed), image, id)
    }
}

/// `samples` noisy copies of `image` (flat values) with id `id`, for the tunnel `method`: the
/// noise of std `noise` times the image's value range comes from `stream_rng(seed,
/// "noise_tunnel", id)`, so an image gets the same copies whatever the model. An image with a
/// non-finite value (whose range is infinite or NaN) is refused.
pub(crate) fn noisy_copies(
    method: &'static str,
    (samples, noise, seed): (usize, f64, u64),
    image: &[f64],
    id: u64,
) -> Result<Vec<f64>> {
    if let Some(bad) = image.iter().find(|v| !v.is_finite()) {
        return Err(AttributionError::Invalid {
            method,
            reason: format!(
                "input {id} holds {bad}; the noise std is a fraction of an input's range, so every value must be finite"
            ),
        });
    }
    let (lo, hi) = image.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
    // A float64 input's range can still overflow (1e308 − (−1e308)).
    let normal = Normal::new(0.0, noise * (hi - lo)).map_err(|_| AttributionError::Invalid {
        method,
        reason: format!("input {id} spans {lo} to {hi}: the noise std, a fraction of that range, is not finite"),
    })?;
    let mut out = Vec::with_capacity(samples * image.len());
    let mut rng = stream_rng(seed, "noise_tunnel", id);
    for _ in 0..samples {
        out.extend(image.iter().map(|&v| v + normal.sample(&mut rng)));
    }
    Ok(out)
}

impl Attribution for NoiseTunnel {
    fn id(&self) -> &'static str {
        match self.aggregate {
            Aggregate::Mean => "smoothgrad",
            Aggregate::MeanOfSquares => "smoothgrad_squared",
            Aggregate::Variance => "vargrad",
        }
    }

    fn attribute(&self, model: &Model, x: &Tensor, targets: &[usize], ids: &[u64]) -> Result<Tensor> {
        Ok(self.attribute_models(&[model], x, &[targets], ids)?.remove(0))
    }

    fn attribute_models(
        &self,
        models: &[&Model],
        x: &Tensor,
        targets: &[&[usize]],
        ids: &[u64],
    ) -> Result<Vec<Tensor>> {
        self.check(models.len(), x, targets, ids)?;
        let (n, c, h, w) = x.dims4()?;
        let per = c * h * w;
        let values = x.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
        // All (image, sample) inputs, image-major, evaluated `batch` at a time.
        let mut noisy = Vec::with_capacity(n * self.samples * per);
        for (i, image) in values.chunks_exact(per).enumerate() {
            noisy.extend(self.noisy_copies(image, ids[i])?);
        }
        if let (Aggregate::Mean, Some(relu)) = (self.aggregate, self.inner.gradient_rule()) {
            // A mean of gradients: the mean is taken inside the backward.
            let samples = self.samples;
            let means = weighted_gradient_sums(
                models,
                x,
                targets,
                samples,
                self.batch,
                relu,
                self.id(),
                |i, k, inputs| inputs.extend_from_slice(&noisy[(i * samples + k) * per..(i * samples + k + 1) * per]),
                |_| 1.0 / samples as f64,
            )?;
            return means
                .into_iter()
                .map(|mean| Ok(Tensor::from_vec(mean, (n, c, h, w), &Device::Cpu)?.to_dtype(x.dtype())?))
                .collect();
        }
        self.aggregated(models, x, targets, ids, &noisy)
    }
}

impl NoiseTunnel {
    /// Refuses what the tunnel cannot run: no samples, a negative or non-finite noise, target
    /// lists that do not fit the models and inputs, no inputs, or one id too few or many.
    fn check(&self, models: usize, x: &Tensor, targets: &[&[usize]], ids: &[u64]) -> Result<()> {
        if self.samples == 0 || !(self.noise.is_finite() && self.noise >= 0.0) {
            return Err(AttributionError::Invalid {
                method: self.id(),
                reason: format!(
                    "samples = {}, noise = {}; accepted: samples >= 1, noise >= 0",
                    self.samples, self.noise
                ),
            });
        }
        let (n, _, _, _) = x.dims4()?;
        check_target_lists(targets, models, n, self.id())?;
        if n == 0 {
            return Err(AttributionError::Invalid { method: self.id(), reason: "no inputs".into() });
        }
        if ids.len() != n {
            return Err(AttributionError::Invalid {
                method: self.id(),
                reason: format!("{} ids for {n} inputs; give one id per input", ids.len()),
            });
        }
        Ok(())
    }

    /// The inner method's maps of the `noisy` copies of `x` (image-major), under each of
    /// `models`, aggregated per image (Welford's running mean and sum of squared deviations).
    fn aggregated(
        &self,
        models: &[&Model],
        x: &Tensor,
        targets: &[&[usize]],
        ids: &[u64],
        noisy: &[f64],
    ) -> Result<Vec<Tensor>> {
        let (n, c, h, w) = x.dims4()?;
        let per = c * h * w;
        let total = n * self.samples;
        let all_targets: Vec<Vec<usize>> =
            targets.iter().map(|t| (0..total).map(|j| t[j / self.samples]).collect()).collect();
        // Each noisy copy gets its own id, so that a stochastic inner method (expected gradients,
        // a uniform IG baseline, a random map) draws anew for every copy; still a function of
        // the image's id, so the same at every cascade stage.
        let all_ids: Vec<u64> = (0..total).map(|j| copy_id(ids[j / self.samples], j % self.samples)).collect();
        let mut map_shape = (0, 0, 0);
        // Per model: running mean and sum of squared deviations (Welford).
        let mut moments: Vec<(Vec<f64>, Vec<f64>)> = Vec::new();
        for start in (0..total).step_by(self.batch.max(1)) {
            let end = (start + self.batch.max(1)).min(total);
            let batch = Tensor::from_slice(&noisy[start * per..end * per], (end - start, c, h, w), &Device::Cpu)?
                .to_dtype(x.dtype())?;
            let batch_targets: Vec<&[usize]> = all_targets.iter().map(|t| &t[start..end]).collect();
            let maps = self.inner.attribute_models(models, &batch, &batch_targets, &all_ids[start..end])?;
            for (m, maps) in maps.into_iter().enumerate() {
                let (_, mc, mh, mw) = maps.dims4()?;
                let out_per = mc * mh * mw;
                if moments.len() <= m {
                    map_shape = (mc, mh, mw);
                    moments.push((vec![0.0; n * out_per], vec![0.0; n * out_per]));
                }
                let (mean, m2) = &mut moments[m];
                let maps = maps.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
                for (offset, map) in maps.chunks_exact(out_per).enumerate() {
                    let j = start + offset;
                    let (i, k) = (j / self.samples, (j % self.samples) as f64 + 1.0);
                    let range = i * out_per..(i + 1) * out_per;
                    for ((mu, s2), &v) in mean[range.clone()].iter_mut().zip(m2[range].iter_mut()).zip(map) {
                        match self.aggregate {
                            Aggregate::Mean => *mu += (v - *mu) / k,
                            Aggregate::MeanOfSquares => *mu += (v * v - *mu) / k,
                            Aggregate::Variance => {
                                let d = v - *mu;
                                *mu += d / k;
                                *s2 += d * (v - *mu);
                            }
                        }
                    }
                }
            }
        }
        let (mc, mh, mw) = map_shape;
        moments
            .into_iter()
            .map(|(mean, m2)| {
                let result = match self.aggregate {
                    Aggregate::Variance => m2.iter().map(|s| s / self.samples as f64).collect(),
                    _ => mean,
                };
                Ok(Tensor::from_vec(result, (n, mc, mh, mw), &Device::Cpu)?.to_dtype(x.dtype())?)
            })
            .collect()
    }
}
