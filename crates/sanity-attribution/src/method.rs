//! The trait every attribution method implements, and the method choice as written in configs.

use crate::error::{AttributionError, Result};
use crate::expected_gradients::ReferenceSet;
use crate::integrated_gradients::{Baseline, IntegratedGradients, Rule, default_baseline};
use crate::noise_tunnel::{Aggregate, NoiseTunnel};
use crate::{
    Cam, CamKind, Deconvnet, ExpectedGradients, GradCam, Gradient, GradientXInput, GuidedBackprop, GuidedGradCam, Lrp,
    Occlusion, RandomMap, Sobel,
};
use candle_core::Tensor;
use sanity_model::{Architecture, LrpRule, Model, ReluMode};
use serde::{Deserialize, Serialize};

/// An attribution method: maps inputs and explained outputs to raw saliency maps.
pub trait Attribution: Send + Sync {
    /// The id used in configs and CSV (`gradient`, `gradcam`, ...).
    fn id(&self) -> &'static str;

    /// Raw maps for inputs `x` `[n, c, h, w]`, one target output index per input, and one stable
    /// id per input (its index in the data set) from which stochastic methods seed their draws,
    /// so that a map does not depend on how inputs were batched.
    ///
    /// # Shapes
    /// Returns `[n, c', h, w]`: `c' = c` for input-gradient methods, `c' = 1` for CAMs.
    fn attribute(&self, model: &Model, x: &Tensor, targets: &[usize], ids: &[u64]) -> Result<Tensor>;

    /// [`Attribution::attribute`] of the same inputs under each of `models` (the original and
    /// its cascade stages, same architecture), with `targets[m]` for `models[m]`; the same maps
    /// as one call per model. Gradient-based methods override it to run the models' passes
    /// together.
    fn attribute_models(
        &self,
        models: &[&Model],
        x: &Tensor,
        targets: &[&[usize]],
        ids: &[u64],
    ) -> Result<Vec<Tensor>> {
        models.iter().zip(targets).map(|(model, targets)| self.attribute(model, x, targets, ids)).collect()
    }

    /// The ReLU rule when this method's map is the plain input gradient under it (gradient,
    /// guided backprop, deconvnet), `None` otherwise. SmoothGrad then averages the gradients
    /// inside the backward ([`crate::input_gradient::weighted_gradient_sums`]).
    fn gradient_rule(&self) -> Option<ReluMode> {
        None
    }
}

/// The most steps (integrated gradients) or samples (expected gradients, the noise tunnels) a
/// method accepts: Captum's examples use 50 to 300, Quantus' smooth MPRT 50.
pub const MAX_STEPS: usize = 10_000;
/// The most images (or interpolated images, or noisy copies) a method pushes through the model
/// in one call.
pub const MAX_BATCH: usize = 4096;
/// The largest noise std of a noise tunnel, as a fraction of the input's value range.
pub const MAX_NOISE: f64 = 10.0;
/// The largest sigma of integrated gradients' blurred baseline, in pixels.
pub const MAX_BLUR_SIGMA: f64 = 256.0;

/// 50 steps.
pub fn default_steps() -> usize {
    50
}
/// 50 noisy samples.
pub fn default_samples() -> usize {
    50
}
/// Noise of 15% of the input range (Smilkov et al. 2017's recommended 10–20%).
pub fn default_noise() -> f64 {
    0.15
}
/// 64 inputs per forward/backward pass.
pub fn default_batch() -> usize {
    64
}
/// Captum's ε: 1e-9.
pub fn default_epsilon() -> f64 {
    1e-9
}
/// α = 1.
pub fn default_alpha() -> f64 {
    1.0
}
/// The inner method of a noise tunnel: `gradient`.
pub fn default_inner() -> Box<MethodSpec> {
    Box::new(MethodSpec::Gradient {})
}

/// The parameters of a noise tunnel (SmoothGrad, SmoothGrad², VarGrad).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelSpec {
    /// The averaged method. Default `{ method = "gradient" }`.
    #[serde(default = "default_inner")]
    pub inner: Box<MethodSpec>,
    /// Noisy copies. Default 50.
    #[serde(default = "default_samples")]
    pub samples: usize,
    /// Noise std as a fraction of the image's range. Default 0.15.
    #[serde(default = "default_noise")]
    pub noise: f64,
    /// Inputs per pass. Default 64.
    #[serde(default = "default_batch")]
    pub batch: usize,
}

impl TunnelSpec {
    fn build(
        &self,
        aggregate: Aggregate,
        arch: &Architecture,
        seed: u64,
        references: Option<&ReferenceSet>,
    ) -> Result<Box<dyn Attribution>> {
        let inner = self.inner.build_with(arch, seed, references)?;
        Ok(Box::new(NoiseTunnel {
            inner,
            aggregate,
            samples: self.samples,
            noise: self.noise,
            batch: self.batch,
            seed,
        }))
    }

    fn resolved(&self, arch: &Architecture) -> Result<Self> {
        Ok(Self { inner: Box::new(self.inner.resolved(arch)?), ..self.clone() })
    }
}

/// A method and its parameters as written in a config (`method = "gradcam"`, `layer = "conv4"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum MethodSpec {
    /// [`Gradient`].
    Gradient {},
    /// [`GradientXInput`].
    GradientXInput {},
    /// [`IntegratedGradients`].
    IntegratedGradients {
        /// Quadrature points. Default 50.
        #[serde(default = "default_steps")]
        steps: usize,
        /// Quadrature rule. Default `gauss_legendre`, as Captum's.
        #[serde(default)]
        rule: Rule,
        /// Reference input. Default `{ kind = "zeros" }`.
        #[serde(default = "default_baseline")]
        baseline: Baseline,
        /// Inputs per pass. Default 64.
        #[serde(default = "default_batch")]
        batch: usize,
    },
    /// [`ExpectedGradients`]; the reference set comes from [`MethodSpec::build_with`].
    ExpectedGradients {
        /// Monte Carlo samples per input. Default 50.
        #[serde(default = "default_samples")]
        samples: usize,
        /// Inputs per pass. Default 64.
        #[serde(default = "default_batch")]
        batch: usize,
    },
    /// SmoothGrad over `inner`.
    Smoothgrad(TunnelSpec),
    /// SmoothGrad² over `inner`.
    SmoothgradSquared(TunnelSpec),
    /// VarGrad over `inner`.
    Vargrad(TunnelSpec),
    /// [`GuidedBackprop`].
    GuidedBackprop {},
    /// [`Deconvnet`].
    Deconvnet {},
    /// [`GradCam`].
    Gradcam {
        /// The layer whose activations are weighted; default: the model's last conv layer.
        #[serde(default)]
        layer: Option<String>,
    },
    /// Grad-CAM++ ([`Cam`]).
    GradcamPlusPlus {
        /// The layer whose activations are weighted; default: the model's last conv layer.
        #[serde(default)]
        layer: Option<String>,
    },
    /// XGrad-CAM ([`Cam`]).
    Xgradcam {
        /// The layer whose activations are weighted; default: the model's last conv layer.
        #[serde(default)]
        layer: Option<String>,
    },
    /// LayerCAM ([`Cam`]).
    Layercam {
        /// The layer whose activations are weighted; default: the model's last conv layer.
        #[serde(default)]
        layer: Option<String>,
    },
    /// Score-CAM ([`Cam`]).
    Scorecam {
        /// The layer whose activations are weighted; default: the model's last conv layer.
        #[serde(default)]
        layer: Option<String>,
    },
    /// [`Occlusion`].
    Occlusion {
        /// Patch side in pixels (required).
        window: usize,
        /// Step between patches (required; at most `window`).
        stride: usize,
        /// The value a patch is set to. Default 0.
        #[serde(default)]
        baseline: f64,
        /// Occluded inputs per pass. Default 64.
        #[serde(default = "default_batch")]
        batch: usize,
    },
    /// [`Lrp`] with the ε rule.
    LrpEpsilon {
        /// ε. Default 1e-9 (Captum's).
        #[serde(default = "default_epsilon")]
        epsilon: f64,
    },
    /// [`Lrp`] with the α-β rule (α − β = 1).
    LrpAlphaBeta {
        /// α. Default 1.
        #[serde(default = "default_alpha")]
        alpha: f64,
        /// β. Default 0.
        #[serde(default)]
        beta: f64,
    },
    /// [`RandomMap`] (control).
    RandomMap {},
    /// [`Sobel`] (control).
    Sobel {},
    /// [`GuidedGradCam`].
    GuidedGradcam {
        /// The Grad-CAM layer; default: the model's last conv layer.
        #[serde(default)]
        layer: Option<String>,
    },
}

impl MethodSpec {
    /// The method id.
    pub fn id(&self) -> &'static str {
        match self {
            MethodSpec::Gradient {} => "gradient",
            MethodSpec::GradientXInput {} => "gradient_x_input",
            MethodSpec::IntegratedGradients { .. } => "integrated_gradients",
            MethodSpec::ExpectedGradients { .. } => "expected_gradients",
            MethodSpec::Smoothgrad(_) => "smoothgrad",
            MethodSpec::SmoothgradSquared(_) => "smoothgrad_squared",
            MethodSpec::Vargrad(_) => "vargrad",
            MethodSpec::GuidedBackprop {} => "guided_backprop",
            MethodSpec::Deconvnet {} => "deconvnet",
            MethodSpec::Gradcam { .. } => "gradcam",
            MethodSpec::GuidedGradcam { .. } => "guided_gradcam",
            MethodSpec::GradcamPlusPlus { .. } => "gradcam_plus_plus",
            MethodSpec::Xgradcam { .. } => "xgradcam",
            MethodSpec::Layercam { .. } => "layercam",
            MethodSpec::Scorecam { .. } => "scorecam",
            MethodSpec::Occlusion { .. } => "occlusion",
            MethodSpec::LrpEpsilon { .. } => "lrp_epsilon",
            MethodSpec::LrpAlphaBeta { .. } => "lrp_alpha_beta",
            MethodSpec::RandomMap {} => "random_map",
            MethodSpec::Sobel {} => "sobel",
        }
    }

    /// Builds the method for an architecture, resolving defaults (Grad-CAM's layer) and
    /// checking names; errors list the valid choices. `seed` seeds stochastic methods.
    /// `expected_gradients` gets no reference set here (it refuses to run); see
    /// [`MethodSpec::build_with`].
    pub fn build(&self, arch: &Architecture, seed: u64) -> Result<Box<dyn Attribution>> {
        self.build_with(arch, seed, None)
    }

    /// Whether the method draws baselines from a reference set (`expected_gradients`, also
    /// inside a noise tunnel).
    pub fn needs_references(&self) -> bool {
        match self {
            MethodSpec::ExpectedGradients { .. } => true,
            MethodSpec::Smoothgrad(t) | MethodSpec::SmoothgradSquared(t) | MethodSpec::Vargrad(t) => {
                t.inner.needs_references()
            }
            _ => false,
        }
    }

    /// Whether the maps depend on the method's seed (noise, drawn baselines, random maps):
    /// computed twice with two seeds, they differ.
    pub fn is_stochastic(&self) -> bool {
        match self {
            MethodSpec::IntegratedGradients { baseline, .. } => matches!(baseline, Baseline::Uniform { .. }),
            MethodSpec::ExpectedGradients { .. }
            | MethodSpec::Smoothgrad(_)
            | MethodSpec::SmoothgradSquared(_)
            | MethodSpec::Vargrad(_)
            | MethodSpec::RandomMap {} => true,
            _ => false,
        }
    }

    /// [`MethodSpec::build`] with the reference images of `expected_gradients` (also inside a
    /// noise tunnel).
    pub fn build_with(
        &self,
        arch: &Architecture,
        seed: u64,
        references: Option<&ReferenceSet>,
    ) -> Result<Box<dyn Attribution>> {
        Ok(match self {
            MethodSpec::Gradient {} => Box::new(Gradient),
            MethodSpec::GradientXInput {} => Box::new(GradientXInput),
            MethodSpec::IntegratedGradients { steps, rule, baseline, batch } => Box::new(IntegratedGradients {
                steps: *steps,
                rule: *rule,
                baseline: baseline.clone(),
                batch: *batch,
                seed,
            }),
            MethodSpec::ExpectedGradients { samples, batch } => {
                Box::new(ExpectedGradients { samples: *samples, batch: *batch, seed, references: references.cloned() })
            }
            MethodSpec::Smoothgrad(t) => t.build(Aggregate::Mean, arch, seed, references)?,
            MethodSpec::SmoothgradSquared(t) => t.build(Aggregate::MeanOfSquares, arch, seed, references)?,
            MethodSpec::Vargrad(t) => t.build(Aggregate::Variance, arch, seed, references)?,
            MethodSpec::GuidedBackprop {} => Box::new(GuidedBackprop),
            MethodSpec::Deconvnet {} => Box::new(Deconvnet),
            MethodSpec::Gradcam { layer } => Box::new(GradCam::new(arch, layer.as_deref())?),
            MethodSpec::GradcamPlusPlus { layer } => {
                Box::new(Cam::of_kind(arch, layer.as_deref(), CamKind::GradCamPlusPlus)?)
            }
            MethodSpec::Xgradcam { layer } => Box::new(Cam::of_kind(arch, layer.as_deref(), CamKind::XGradCam)?),
            MethodSpec::Layercam { layer } => Box::new(Cam::of_kind(arch, layer.as_deref(), CamKind::LayerCam)?),
            MethodSpec::Scorecam { layer } => Box::new(Cam::of_kind(arch, layer.as_deref(), CamKind::ScoreCam)?),
            MethodSpec::Occlusion { window, stride, baseline, batch } => {
                Box::new(Occlusion { window: *window, stride: *stride, baseline: *baseline, batch: *batch })
            }
            MethodSpec::LrpEpsilon { epsilon } => Box::new(Lrp { rule: LrpRule::Epsilon(*epsilon) }),
            MethodSpec::LrpAlphaBeta { alpha, beta } => {
                Box::new(Lrp { rule: LrpRule::AlphaBeta { alpha: *alpha, beta: *beta } })
            }
            MethodSpec::RandomMap {} => Box::new(RandomMap { seed }),
            MethodSpec::Sobel {} => Box::new(Sobel),
            MethodSpec::GuidedGradcam { layer } => {
                Box::new(GuidedGradCam { cam: GradCam::new(arch, layer.as_deref())? })
            }
        })
    }

    /// Checks the parameters against what each method accepts (and `arch`'s input size), so
    /// that a run refuses a bad value before it trains; the message says what is accepted.
    pub fn validate(&self, arch: &Architecture) -> Result<()> {
        self.validate_for_input(arch.spec.input)
    }

    /// [`MethodSpec::validate`] for a model taking inputs of `input` `[c, h, w]` (a model
    /// graph's too).
    pub fn validate_for_input(&self, input: [usize; 3]) -> Result<()> {
        if let Some(reason) = self.out_of_bounds() {
            return Err(AttributionError::Invalid { method: self.id(), reason });
        }
        let reason = match self {
            MethodSpec::IntegratedGradients { steps, baseline, .. } => match (steps, baseline) {
                (0, _) => Some("steps = 0; accepted: >= 1".to_string()),
                (_, Baseline::Uniform { low, high }) if !(low.is_finite() && high.is_finite() && low < high) => {
                    Some(format!("uniform baseline low = {low}, high = {high}; accepted: low < high"))
                }
                (_, Baseline::Blurred { sigma }) if !(sigma.is_finite() && *sigma > 0.0) => {
                    Some(format!("blurred baseline sigma = {sigma}; accepted: > 0"))
                }
                _ => None,
            },
            MethodSpec::ExpectedGradients { samples: 0, .. } => Some("samples = 0; accepted: >= 1".into()),
            MethodSpec::Smoothgrad(t) | MethodSpec::SmoothgradSquared(t) | MethodSpec::Vargrad(t) => {
                if t.samples == 0 || !(t.noise.is_finite() && t.noise >= 0.0) {
                    Some(format!("samples = {}, noise = {}; accepted: samples >= 1, noise >= 0", t.samples, t.noise))
                } else {
                    return t.inner.validate_for_input(input);
                }
            }
            MethodSpec::Occlusion { window, stride, .. } => {
                let [_, h, w] = input;
                if *window == 0 || *stride == 0 || stride > window || *window > h.min(w) {
                    Some(format!(
                        "window = {window}, stride = {stride}; accepted: 1 <= stride <= window <= {} (the input is {h}x{w})",
                        h.min(w)
                    ))
                } else {
                    None
                }
            }
            MethodSpec::LrpEpsilon { epsilon } if !(epsilon.is_finite() && *epsilon > 0.0) => {
                Some(format!("epsilon = {epsilon}; accepted: > 0"))
            }
            MethodSpec::LrpAlphaBeta { alpha, beta } if !(*beta >= 0.0 && (alpha - beta - 1.0).abs() < 1e-12) => {
                Some(format!("alpha = {alpha}, beta = {beta}; accepted: beta >= 0 and alpha - beta = 1"))
            }
            _ => None,
        };
        match reason {
            Some(reason) => Err(AttributionError::Invalid { method: self.id(), reason }),
            None => Ok(()),
        }
    }

    /// What is beyond the bounds of a size-like parameter ([`MAX_STEPS`], [`MAX_BATCH`],
    /// [`MAX_NOISE`], [`MAX_BLUR_SIGMA`]), if anything: one value must not ask for hours or
    /// gigabytes (integrated gradients with 10^9 steps took 19 GB before it was killed).
    fn out_of_bounds(&self) -> Option<String> {
        let (mut counts, mut batches): (Vec<(&str, usize)>, Vec<usize>) = (Vec::new(), Vec::new());
        let mut noise = None;
        match self {
            MethodSpec::IntegratedGradients { steps, batch, baseline, .. } => {
                counts.push(("steps", *steps));
                batches.push(*batch);
                if let Baseline::Blurred { sigma } = baseline
                    && *sigma > MAX_BLUR_SIGMA
                {
                    return Some(format!("blurred baseline sigma = {sigma}; accepted: at most {MAX_BLUR_SIGMA}"));
                }
            }
            MethodSpec::ExpectedGradients { samples, batch } => {
                counts.push(("samples", *samples));
                batches.push(*batch);
            }
            MethodSpec::Smoothgrad(t) | MethodSpec::SmoothgradSquared(t) | MethodSpec::Vargrad(t) => {
                counts.push(("samples", t.samples));
                batches.push(t.batch);
                noise = Some(t.noise);
                if let Some(inner) = t.inner.out_of_bounds() {
                    return Some(format!("inner method {}: {inner}", t.inner.id()));
                }
            }
            MethodSpec::Occlusion { batch, baseline, .. } => {
                batches.push(*batch);
                if !baseline.is_finite() {
                    return Some(format!("baseline = {baseline}; accepted: a finite value"));
                }
            }
            _ => {}
        }
        if let Some((name, n)) = counts.into_iter().find(|(_, n)| *n > MAX_STEPS) {
            return Some(format!("{name} = {n}; accepted: 1 to {MAX_STEPS}"));
        }
        if let Some(b) = batches.into_iter().find(|b| *b == 0 || *b > MAX_BATCH) {
            return Some(format!("batch = {b}; accepted: 1 to {MAX_BATCH}"));
        }
        match noise {
            Some(n) if !(n.is_finite() && (0.0..=MAX_NOISE).contains(&n)) => {
                Some(format!("noise = {n}; accepted: 0 to {MAX_NOISE} (a fraction of the input's value range)"))
            }
            _ => None,
        }
    }

    /// The same spec with defaults filled in for `arch` (for the resolved config), after
    /// [`MethodSpec::validate`].
    pub fn resolved(&self, arch: &Architecture) -> Result<Self> {
        self.validate(arch)?;
        let layer_of = |layer: &Option<String>, kind: CamKind| -> Result<Option<String>> {
            let cam = Cam::of_kind(arch, layer.as_deref(), kind)?;
            Ok(Some(arch.layers[cam.layer_index].name.clone()))
        };
        Ok(match self {
            MethodSpec::Gradcam { layer } => MethodSpec::Gradcam { layer: layer_of(layer, CamKind::GradCam)? },
            MethodSpec::GuidedGradcam { layer } => {
                MethodSpec::GuidedGradcam { layer: layer_of(layer, CamKind::GradCam)? }
            }
            MethodSpec::GradcamPlusPlus { layer } => {
                MethodSpec::GradcamPlusPlus { layer: layer_of(layer, CamKind::GradCamPlusPlus)? }
            }
            MethodSpec::Xgradcam { layer } => MethodSpec::Xgradcam { layer: layer_of(layer, CamKind::XGradCam)? },
            MethodSpec::Layercam { layer } => MethodSpec::Layercam { layer: layer_of(layer, CamKind::LayerCam)? },
            MethodSpec::Scorecam { layer } => MethodSpec::Scorecam { layer: layer_of(layer, CamKind::ScoreCam)? },
            MethodSpec::Smoothgrad(t) => MethodSpec::Smoothgrad(t.resolved(arch)?),
            MethodSpec::SmoothgradSquared(t) => MethodSpec::SmoothgradSquared(t.resolved(arch)?),
            MethodSpec::Vargrad(t) => MethodSpec::Vargrad(t.resolved(arch)?),
            other => other.clone(),
        })
    }
}
