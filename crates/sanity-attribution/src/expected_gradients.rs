//! Expected gradients — Erion et al. 2021 (Nature Machine Intelligence 3, arXiv:1906.10670),
//! Eq. 5: integrated gradients averaged over baselines drawn from a reference set, estimated
//! by Monte Carlo over `(x', α)` pairs:
//!
//! ```text
//! EG(x) = E_{x' ~ D, α ~ U(0, 1)} [ (x − x') ⊙ ∂f(x' + α (x − x')) / ∂x ]
//!       ≈ (1/S) Σ_s (x − x'_s) ⊙ ∇f(x'_s + α_s (x − x'_s))
//! ```
//! The reference set D is the run's training images (`sanity run`) or an NPY file
//! (`sanity attribute --references`). For the image with id `d`, the `S` pairs (a uniform
//! index into D, α uniform in [0, 1)) come from `stream_rng(seed, "expected_gradients", d)`,
//! so an image gets the same draws at every cascade stage. Equals Captum's `GradientShap`
//! with `stdevs = 0` in expectation (its draws come from torch's global generator).

use crate::error::{AttributionError, Result};
use crate::input_gradient::path_gradients;
use crate::method::Attribution;
use crate::target::check_target_lists;
use candle_core::{DType, Device, Tensor};
use rand::Rng;
use sanity_data::stream_rng;
use sanity_model::Model;
use std::sync::Arc;

/// The reference images of expected gradients, `[m, c, h, w]` float32, shared by every method
/// that draws from them.
#[derive(Debug, Clone)]
pub struct ReferenceSet {
    values: Arc<Vec<f32>>,
    shape: [usize; 4],
}

impl ReferenceSet {
    /// The images, `[m, c, h, w]` row-major, and that shape.
    pub fn images(&self) -> (&[f32], [usize; 4]) {
        (&self.values, self.shape)
    }

    /// The images of a `[m, c, h, w]` tensor.
    pub fn from_tensor(images: &Tensor) -> Result<Self> {
        let (m, c, h, w) = images.dims4()?;
        let values = images.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        Ok(Self { values: Arc::new(values), shape: [m, c, h, w] })
    }
}

/// The `samples` Monte Carlo pairs of the image with id `id`: an index into the `m` reference
/// images and α, from `stream_rng(seed, "expected_gradients", id)` (the module docs).
pub fn draws(seed: u64, id: u64, samples: usize, m: usize) -> Vec<(usize, f64)> {
    let mut rng = stream_rng(seed, "expected_gradients", id);
    (0..samples).map(|_| (rng.random_range(0..m), rng.random::<f64>())).collect()
}

/// Expected gradients over a reference set.
#[derive(Debug, Clone)]
pub struct ExpectedGradients {
    /// Monte Carlo samples per input.
    pub samples: usize,
    /// Inputs per forward/backward pass.
    pub batch: usize,
    /// Run seed.
    pub seed: u64,
    /// The reference images, or `None` when none was given.
    pub references: Option<ReferenceSet>,
}

impl Attribution for ExpectedGradients {
    fn id(&self) -> &'static str {
        "expected_gradients"
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
        let invalid = |reason: String| AttributionError::Invalid { method: "expected_gradients", reason };
        let Some(references) = &self.references else {
            return Err(invalid(
                "no reference set: `sanity run` uses the training images, `sanity attribute` needs --references".into(),
            ));
        };
        let (refs, [m, rc, rh, rw]) = (references.values.as_slice(), references.shape);
        let (n, c, h, w) = x.dims4()?;
        if [rc, rh, rw] != [c, h, w] || m == 0 {
            return Err(invalid(format!(
                "{m} reference images of shape [{rc}, {rh}, {rw}] for inputs [{c}, {h}, {w}]"
            )));
        }
        if self.samples == 0 || ids.len() != n {
            return Err(invalid(format!(
                "samples = {}, {} ids for {n} inputs; accepted: samples >= 1",
                self.samples,
                ids.len()
            )));
        }
        check_target_lists(targets, models.len(), n, self.id())?;
        let per = c * h * w;
        let values = x.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
        // Every (image, sample) point: the reference index and α.
        let points: Vec<(usize, (usize, f64))> = ids
            .iter()
            .enumerate()
            .flat_map(|(i, &id)| draws(self.seed, id, self.samples, m).into_iter().map(move |draw| (i, draw)))
            .collect();
        let mut sums = vec![vec![0.0f64; n * per]; models.len()];
        let reference = |r: usize| &refs[r * per..(r + 1) * per];
        path_gradients(
            models,
            x,
            targets,
            &points,
            self.batch,
            self.id(),
            |(i, (r, alpha)), inputs| {
                let xi = &values[i * per..(i + 1) * per];
                inputs.extend(xi.iter().zip(reference(r)).map(|(x, &b)| f64::from(b) + alpha * (x - f64::from(b))));
            },
            |m, (i, (r, _)), g| {
                let xi = &values[i * per..(i + 1) * per];
                for (((s, g), x), &b) in sums[m][i * per..(i + 1) * per].iter_mut().zip(g).zip(xi).zip(reference(r)) {
                    *s += (x - f64::from(b)) * g / self.samples as f64;
                }
            },
        )?;
        sums.into_iter()
            .map(|sum| Ok(Tensor::from_vec(sum, (n, c, h, w), &Device::Cpu)?.to_dtype(x.dtype())?))
            .collect()
    }
}
