//! The forward pass of a sequential model over named layers.

use crate::architecture::{Architecture, Op};
use crate::error::Result;
use crate::ops::{MaxPool2d, ReluMode, conv2d, linear, relu};
use crate::weights::Weights;
use candle_core::{D, Tensor};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::ops::Range;
use std::sync::Arc;

/// Evaluation (dropout off, batch norm on its running statistics) or training (dropout masks
/// drawn from the given seeded stream, batch norm on batch statistics).
pub enum Mode<'a> {
    /// Inference: dropout is the identity.
    Eval,
    /// Training: inverted dropout with masks from this stream; each batch norm writes its
    /// updated running statistics (detached) into the given weights.
    Train(&'a mut ChaCha8Rng, &'a mut Weights),
}

/// PyTorch's `BatchNorm2d` on `h` `[n, c, h, w]` with the parameters of layer `name` in
/// `weights`: the running statistics in evaluation; in training the batch's (the variance
/// biased), with `running = (1 − momentum) running + momentum batch` (the variance unbiased)
/// written into the mode's weights, detached.
pub(crate) fn batch_norm(
    h: &Tensor,
    name: &str,
    weights: &Weights,
    eps: f64,
    momentum: f64,
    mode: &mut Mode,
) -> Result<Tensor> {
    let get = |what: &str| weights.get(&format!("{name}.{what}"));
    let (gamma, beta) = (get("weight")?.reshape((1, (), 1, 1))?, get("bias")?.reshape((1, (), 1, 1))?);
    let (mean, var) = match mode {
        Mode::Eval => (get("running_mean")?.reshape((1, (), 1, 1))?, get("running_var")?.reshape((1, (), 1, 1))?),
        Mode::Train(_, running) => {
            let (n, _, hh, ww) = h.dims4()?;
            let count = (n * hh * ww) as f64;
            let mean = h.mean_keepdim(0)?.mean_keepdim(2)?.mean_keepdim(3)?;
            let var = h.broadcast_sub(&mean)?.sqr()?.mean_keepdim(0)?.mean_keepdim(2)?.mean_keepdim(3)?;
            let unbiased = (var.detach().flatten_all()? * (count / (count - 1.0).max(1.0)))?;
            for (what, batch) in [("running_mean", mean.detach().flatten_all()?), ("running_var", unbiased)] {
                let old = get(what)?;
                running.insert(format!("{name}.{what}"), ((old * (1.0 - momentum))? + (batch * momentum)?)?);
            }
            (mean, var)
        }
    };
    let normalized = h.broadcast_sub(&mean)?.broadcast_div(&(var + eps)?.sqrt()?)?;
    Ok(normalized.broadcast_mul(&gamma)?.broadcast_add(&beta)?)
}

/// An architecture with a set of weights. Cheap to clone; weights are values.
#[derive(Debug, Clone)]
pub struct Model {
    /// The layer graph.
    pub arch: Arc<Architecture>,
    /// The parameters.
    pub weights: Weights,
}

impl Model {
    /// Bundles an architecture and weights.
    pub fn new(arch: Arc<Architecture>, weights: Weights) -> Self {
        Self { arch, weights }
    }

    /// The same architecture with other weights.
    pub fn with_weights(&self, weights: Weights) -> Self {
        Self { arch: Arc::clone(&self.arch), weights }
    }

    /// Logits `[n, outputs]` of inputs `[n, c, h, w]`, evaluation mode.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_range(x, 0..self.arch.layers.len(), &mut Mode::Eval)
    }

    /// Runs layers `range` (indices into `arch.layers`) on `x`, the input of layer `range.start`.
    /// Splitting the forward at a layer is how gradients with respect to an inner activation
    /// are taken (candle keeps gradients only for `Var` leaves).
    pub fn forward_range(&self, x: &Tensor, range: Range<usize>, mode: &mut Mode) -> Result<Tensor> {
        self.forward_with(x, range, mode, ReluMode::Standard)
    }

    /// [`Model::forward_range`] with the ReLU backward rule `relu_mode` (guided backprop and
    /// deconvnet change only the backward; the forward values are the same).
    pub fn forward_with(
        &self,
        x: &Tensor,
        range: Range<usize>,
        mode: &mut Mode,
        relu_mode: ReluMode,
    ) -> Result<Tensor> {
        let mut h = x.clone();
        for layer in &self.arch.layers[range] {
            h = match layer.op {
                Op::Conv2d { padding, .. } => {
                    let w = self.weights.get(&format!("{}.weight", layer.name))?;
                    let b = self.weights.get(&format!("{}.bias", layer.name))?;
                    conv2d(&h, w, b, padding)?
                }
                Op::Linear { .. } => {
                    let w = self.weights.get(&format!("{}.weight", layer.name))?;
                    let b = self.weights.get(&format!("{}.bias", layer.name))?;
                    linear(&h, w, b)?
                }
                Op::Relu => relu(&h, relu_mode)?,
                Op::MaxPool2d { kernel_size, stride } => MaxPool2d { kernel_size, stride }.forward(&h)?,
                Op::GlobalAvgPool => h.mean(D::Minus1)?.mean(D::Minus1)?,
                Op::Flatten => h.flatten_from(1)?,
                Op::BatchNorm2d { eps, momentum, .. } => {
                    batch_norm(&h, &layer.name, &self.weights, eps, momentum, mode)?
                }
                Op::Dropout { p } => match mode {
                    Mode::Eval => h,
                    Mode::Train(rng, _) => {
                        let keep = 1.0 - p;
                        let mask: Vec<f32> = (0..h.elem_count())
                            .map(|_| if rng.random::<f64>() < keep { (1.0 / keep) as f32 } else { 0.0 })
                            .collect();
                        let mask = Tensor::from_vec(mask, h.shape(), h.device())?.to_dtype(h.dtype())?;
                        (h * mask)?
                    }
                },
            };
        }
        Ok(h)
    }
}
