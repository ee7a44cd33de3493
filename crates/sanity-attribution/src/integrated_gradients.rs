//! Integrated Gradients — Sundararajan et al. 2017, arXiv:1703.01365, Eq. 1.
//! ```text
//! IG_i(x) = (x_i − x'_i) · ∫₀¹ ∂F(x' + α(x − x'))/∂x_i dα
//!         ≈ (x_i − x'_i) · Σ_k w_k ∂F(x' + α_k(x − x'))/∂x_i
//! ```
//! The quadrature `(α_k, w_k)` is `rule` with m = `steps` points, as Captum's
//! `approximation_methods`: riemann_left `α_k = k/m`, riemann_right `(k+1)/m`, riemann_middle
//! `(k+½)/m`, all with `w_k = 1/m`; riemann_trapezoid `α = linspace(0, 1, m)` with weights
//! `1/(m−1)` halved at both ends; gauss_legendre the m-point Gauss–Legendre rule mapped to
//! [0, 1]. Completeness, `Σ_i IG_i ≈ F(x) − F(x')`, is checked in tests. The (image, step)
//! points are evaluated at most `batch` per pass, each pass holding whole images' steps (or,
//! when `steps > batch`, a run of one image's steps); the weighted sum over the steps is taken
//! in float32 inside the backward (`input_gradient::weighted_gradient_sums`).
//!
//! Deviation from Captum 0.9: its `riemann_trapezoid` uses `α = linspace(0, 1, m)` but step
//! `1/m` (halved at the ends), so its weights sum to `(m−1)/m` and its attributions are those
//! of the trapezoidal rule times `(m−1)/m`; here the weights are the trapezoidal rule's and sum
//! to 1, as completeness requires. The golden test compares `ours · (m−1)/m` with Captum.

use crate::error::{AttributionError, Result};
use crate::input_gradient::weighted_gradient_sums;
use crate::method::Attribution;
use crate::target::check_target_lists;
use candle_core::{DType, Device, Tensor};
use rand::Rng;
use sanity_data::{gaussian_blur, stream_rng};
use sanity_model::{Model, ReluMode};
use serde::{Deserialize, Serialize};

/// The quadrature of the path integral.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Left Riemann sum.
    RiemannLeft,
    /// Right Riemann sum (the endpoint α = 1 is included).
    RiemannRight,
    /// Midpoint rule.
    RiemannMiddle,
    /// Trapezoidal rule.
    RiemannTrapezoid,
    /// Gauss–Legendre: the default, as Captum's (`method="gausslegendre"`), so that the two
    /// tools' defaults give the same maps.
    #[default]
    GaussLegendre,
}

/// The reference input x'.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Baseline {
    /// All zeros (Captum's default).
    Zeros {},
    /// Every value equal to `value`.
    Constant {
        /// The value.
        value: f64,
    },
    /// Uniform noise in `[low, high)`, drawn for the image with id `d` from
    /// `stream_rng(seed, "ig_baseline", d)`: the same baseline at every cascade stage.
    Uniform {
        /// Lower bound. Default 0.
        #[serde(default)]
        low: f64,
        /// Upper bound. Default 1.
        #[serde(default = "default_high")]
        high: f64,
    },
    /// The input blurred by a Gaussian of `sigma` pixels per channel
    /// (`scipy.ndimage.gaussian_filter`, truncate 4, reflect border; Sturmfels et al. 2020,
    /// "Visualizing the Impact of Feature Attribution Baselines", Distill).
    Blurred {
        /// Standard deviation in pixels.
        sigma: f64,
    },
}

/// 1, the upper bound of a uniform baseline.
pub fn default_high() -> f64 {
    1.0
}

/// The default baseline: zeros.
pub fn default_baseline() -> Baseline {
    Baseline::Zeros {}
}

impl Rule {
    /// Points α_k and weights w_k on [0, 1] for `m` steps.
    pub fn points(self, m: usize) -> (Vec<f64>, Vec<f64>) {
        let mf = m as f64;
        match self {
            Rule::RiemannLeft => ((0..m).map(|k| k as f64 / mf).collect(), vec![1.0 / mf; m]),
            Rule::RiemannRight => ((0..m).map(|k| (k + 1) as f64 / mf).collect(), vec![1.0 / mf; m]),
            Rule::RiemannMiddle => ((0..m).map(|k| (k as f64 + 0.5) / mf).collect(), vec![1.0 / mf; m]),
            Rule::RiemannTrapezoid => {
                if m == 1 {
                    return (vec![1.0], vec![1.0]);
                }
                let alphas = (0..m).map(|k| k as f64 / (mf - 1.0)).collect();
                let mut w = vec![1.0 / (mf - 1.0); m];
                w[0] /= 2.0;
                w[m - 1] /= 2.0;
                (alphas, w)
            }
            Rule::GaussLegendre => {
                let (x, w) = gauss_legendre(m);
                (x.iter().map(|v| (v + 1.0) / 2.0).collect(), w.iter().map(|v| v / 2.0).collect())
            }
        }
    }
}

/// Nodes and weights of the m-point Gauss–Legendre rule on [−1, 1] (Newton on P_m, as
/// numpy's `leggauss`, ascending nodes).
fn gauss_legendre(m: usize) -> (Vec<f64>, Vec<f64>) {
    let mut nodes = vec![0.0; m];
    let mut weights = vec![0.0; m];
    for i in 0..m {
        // Initial guess (Tricomi), then Newton iterations on the Legendre polynomial.
        let mut x = -(std::f64::consts::PI * (i as f64 + 0.75) / (m as f64 + 0.5)).cos();
        let mut dp = 1.0;
        for _ in 0..100 {
            let (mut p0, mut p1) = (1.0, x);
            for k in 2..=m {
                let p2 = ((2 * k - 1) as f64 * x * p1 - (k - 1) as f64 * p0) / k as f64;
                p0 = p1;
                p1 = p2;
            }
            // p1 = P_m(x), p0 = P_{m−1}(x), also for m = 1.
            dp = m as f64 * (x * p1 - p0) / (x * x - 1.0);
            let step = p1 / dp;
            x -= step;
            if step.abs() < 1e-16 {
                break;
            }
        }
        nodes[i] = x;
        weights[i] = 2.0 / ((1.0 - x * x) * dp * dp);
    }
    (nodes, weights)
}

/// Integrated Gradients.
#[derive(Debug, Clone)]
pub struct IntegratedGradients {
    /// Quadrature points m.
    pub steps: usize,
    /// Quadrature rule.
    pub rule: Rule,
    /// Reference input.
    pub baseline: Baseline,
    /// Points per forward/backward pass, at most: `⌊batch / steps⌋` whole images (a multiple of
    /// `steps` fills every pass), or runs of `batch` steps of one image when `steps > batch`.
    pub batch: usize,
    /// Run seed (the uniform baseline).
    pub seed: u64,
}

impl IntegratedGradients {
    /// The baseline of each input (`ids` seed the uniform one).
    pub(crate) fn baseline_of(&self, x: &Tensor, ids: &[u64]) -> Result<Tensor> {
        let invalid = |reason: String| AttributionError::Invalid { method: "integrated_gradients", reason };
        let (n, c, h, w) = x.dims4()?;
        Ok(match self.baseline {
            Baseline::Zeros {} => x.zeros_like()?,
            Baseline::Constant { value } => (x.zeros_like()? + value)?,
            Baseline::Uniform { low, high } => {
                if !(low.is_finite() && high.is_finite() && low < high) {
                    return Err(invalid(format!("uniform baseline low = {low}, high = {high}; accepted: low < high")));
                }
                if ids.len() != n {
                    return Err(invalid(format!("{} ids for {n} inputs", ids.len())));
                }
                let mut values = Vec::with_capacity(n * c * h * w);
                for &id in ids {
                    let mut rng = stream_rng(self.seed, "ig_baseline", id);
                    values.extend((0..c * h * w).map(|_| rng.random_range(low..high)));
                }
                Tensor::from_vec(values, (n, c, h, w), &Device::Cpu)?.to_dtype(x.dtype())?
            }
            Baseline::Blurred { sigma } => {
                if !(sigma.is_finite() && sigma > 0.0) {
                    return Err(invalid(format!("blurred baseline sigma = {sigma}; accepted: > 0")));
                }
                let values = x.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
                let blurred: Vec<f64> =
                    values.chunks_exact(h * w).flat_map(|plane| gaussian_blur(plane, h, w, sigma)).collect();
                Tensor::from_vec(blurred, (n, c, h, w), &Device::Cpu)?.to_dtype(x.dtype())?
            }
        })
    }
}

impl Attribution for IntegratedGradients {
    fn id(&self) -> &'static str {
        "integrated_gradients"
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
        if self.steps == 0 {
            return Err(AttributionError::Invalid { method: self.id(), reason: "steps = 0; accepted: >= 1".into() });
        }
        let (n, c, h, w) = x.dims4()?;
        check_target_lists(targets, models.len(), n, self.id())?;
        let per = c * h * w;
        let (alphas, weights) = self.rule.points(self.steps);
        let baseline = self.baseline_of(x, ids)?;
        let delta = (x - &baseline)?;
        let base_v = baseline.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
        let delta_v = delta.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
        // Σ_k w_k ∇f(x' + α_k (x − x')) per image, `batch` points per pass.
        let sums = weighted_gradient_sums(
            models,
            x,
            targets,
            self.steps,
            self.batch,
            ReluMode::Standard,
            self.id(),
            |i, k, inputs| {
                let (b, d) = (&base_v[i * per..(i + 1) * per], &delta_v[i * per..(i + 1) * per]);
                inputs.extend(b.iter().zip(d).map(|(b, d)| b + alphas[k] * d));
            },
            |k| weights[k],
        )?;
        sums.into_iter()
            .map(|sum| {
                let avg = Tensor::from_vec(sum, (n, c, h, w), &Device::Cpu)?.to_dtype(x.dtype())?;
                Ok((&delta * avg)?)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauss_legendre_matches_numpy_leggauss() {
        // numpy.polynomial.legendre.leggauss(3): nodes ±0.7745966692414834, 0; weights 5/9, 8/9.
        let (x, w) = gauss_legendre(3);
        assert!(
            (x[0] + 0.7745966692414834).abs() < 1e-15
                && x[1].abs() < 1e-15
                && (x[2] - 0.7745966692414834).abs() < 1e-15
        );
        assert!((w[0] - 5.0 / 9.0).abs() < 1e-15 && (w[1] - 8.0 / 9.0).abs() < 1e-15);
        for m in [1, 2, 7, 50] {
            let (x, w) = gauss_legendre(m);
            // Exact for x^(2m−1) on [−1, 1]: ∫ x^(2m−2) = 2/(2m−1).
            let p = (2 * m - 2) as i32;
            let integral: f64 = x.iter().zip(&w).map(|(x, w)| w * x.powi(p)).sum();
            assert!((integral - 2.0 / (2 * m - 1) as f64).abs() < 1e-12, "m = {m}");
        }
    }

    #[test]
    fn every_rule_integrates_linear_functions_exactly_and_weights_sum_to_one() {
        for rule in
            [Rule::RiemannLeft, Rule::RiemannRight, Rule::RiemannMiddle, Rule::RiemannTrapezoid, Rule::GaussLegendre]
        {
            let (a, w) = rule.points(10);
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{rule:?}");
            let first_moment: f64 = a.iter().zip(&w).map(|(a, w)| a * w).sum();
            let expected = match rule {
                Rule::RiemannLeft => 0.45,
                Rule::RiemannRight => 0.55,
                _ => 0.5,
            };
            assert!((first_moment - expected).abs() < 1e-12, "{rule:?}: {first_moment}");
        }
    }
}
