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

/// Evaluation (dropout off) or training (dropout masks drawn from the given seeded stream).
pub enum Mode<'a> {
    /// Inference: dropout is the identity.
    Eval,
    /// Training: inverted dropout with masks from this stream.
    Train(&'a mut ChaCha8Rng),
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
                Op::Dropout { p } => match mode {
                    Mode::Eval => h,
                    Mode::Train(rng) => {
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
