//! The input gradient of a sequential model computed directly with the project's kernels:
//! one forward that keeps what the backward needs (ReLU outputs, max-pool argmax indices), then
//! one backward through the layers in reverse, with no autograd graph, no weight gradients and
//! no zero-initialised gradient accumulators. Inside, images are channels-last (NHWC, see
//! [`crate::ops::nhwc`]); inputs and gradients are NCHW like the rest of the project. Float32
//! only; it gives the same values as candle's autograd over the same ops (`tests/native.rs`)
//! and is what attribution methods use.
//!
//! ```text
//! ∂(Σ_i Σ_j s_ij · f_j(x_i)) / ∂x_i   for a seed s [n, outputs] (one-hot rows: the target logits)
//! ```

use crate::architecture::Op;
use crate::error::{ModelError, Result};
use crate::forward::Model;
use crate::ops::linear;
use crate::ops::nhwc::{ConvNhwc, ConvWeights, PoolNhwc, transpose_images};
use crate::ops::relu::Relu;
use crate::ops::{ReluMode, with_values};
use rayon::prelude::*;
use std::ops::Range;

/// Values per parallel task in elementwise passes.
const ELEMENTWISE_CHUNK: usize = 1 << 14;

/// What the backward of one layer needs from the forward.
enum Saved {
    /// Conv geometry and reordered weights.
    Conv(ConvNhwc, ConvWeights),
    /// Linear `(n, in, out)`.
    Linear(usize, usize, usize),
    /// The index in the kept outputs of this ReLU's output (positive exactly where its input was).
    Relu(usize),
    /// Pool geometry and, per output value, the index within its image of its input.
    Pool(PoolNhwc, Vec<u32>),
    /// Global average pool over `hw` positions of `c` channels.
    Gap(usize, usize),
    /// Flatten of NHWC images `[hw, c]` into PyTorch's channel-major order.
    Flatten(usize, usize),
    /// Nothing (dropout in evaluation, flatten of a vector).
    Identity,
}

/// A layer's output shape: images `[c, h, w]` (stored NHWC) or flat vectors.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Shape {
    Image(usize, usize, usize),
    Flat(usize),
}

impl Shape {
    fn of(dims: &[usize]) -> Self {
        match *dims {
            [c, h, w] => Shape::Image(c, h, w),
            _ => Shape::Flat(dims.iter().product()),
        }
    }

    fn image(self) -> (usize, usize, usize) {
        match self {
            Shape::Image(c, h, w) => (c, h, w),
            Shape::Flat(f) => (f, 1, 1),
        }
    }

    fn len(self) -> usize {
        match self {
            Shape::Image(c, h, w) => c * h * w,
            Shape::Flat(f) => f,
        }
    }
}

/// The current activation of the forward: a new buffer, or a ReLU output kept for the backward.
enum Activation {
    Owned(Vec<f32>),
    Kept(usize),
}

impl Activation {
    fn values<'a>(&'a self, kept: &'a [Vec<f32>]) -> &'a [f32] {
        match self {
            Activation::Owned(v) => v,
            Activation::Kept(i) => &kept[*i],
        }
    }
}

fn weights<'a>(model: &'a Model, layer: &str) -> Result<(&'a candle_core::Tensor, &'a candle_core::Tensor)> {
    Ok((model.weights.get(&format!("{layer}.weight"))?, model.weights.get(&format!("{layer}.bias"))?))
}

/// `∂(Σ seed ⊙ f(h))/∂h` for `h` `[n, ..]` (f32 values, NCHW) the input of layers `range` of
/// `model`, `seed` `[n, outputs of the last layer]`. ReLU backward follows `relu`.
pub fn input_gradient(
    model: &Model,
    h: &[f32],
    n: usize,
    range: Range<usize>,
    seed: &[f32],
    relu: ReluMode,
) -> Result<Vec<f32>> {
    let arch = &model.arch;
    let input_dims: &[usize] = if range.start == 0 { &arch.spec.input } else { &arch.shapes[range.start - 1] };
    let input_shape = Shape::of(input_dims);
    let mut shape = input_shape;
    // NCHW → NHWC (a no-op copy for one channel or one position).
    let (c0, h0, w0) = input_shape.image();
    let input = if c0 > 1 && h0 * w0 > 1 { transpose_images(h, c0, h0 * w0) } else { h.to_vec() };
    // ReLU outputs stay in `kept` for the backward; the current activation is owned or kept.
    let mut kept: Vec<Vec<f32>> = Vec::new();
    let mut current = Activation::Owned(input);
    let mut saved = Vec::with_capacity(range.len());
    for layer in &arch.layers[range.clone()] {
        let act = current.values(&kept);
        let (next, keep, out_shape) = match layer.op {
            Op::Conv2d { out_channels, kernel_size, padding, .. } => {
                let (c, hh, ww) = shape.image();
                let (oh, ow) = (hh + 2 * padding + 1 - kernel_size, ww + 2 * padding + 1 - kernel_size);
                let g = ConvNhwc { n, h: hh, w: ww, c, o: out_channels, k: kernel_size, pad: padding, oh, ow };
                let (w, b) = weights(model, &layer.name)?;
                let prepared = with_values(w, |w: &[f32]| g.weights(w))?;
                let y = with_values(b, |b: &[f32]| g.forward(act, &prepared, b))?;
                (Some(y), Saved::Conv(g, prepared), Shape::Image(out_channels, oh, ow))
            }
            Op::Linear { in_features, out_features, .. } => {
                let (w, b) = weights(model, &layer.name)?;
                let y = with_values(w, |w: &[f32]| {
                    with_values(b, |b: &[f32]| linear::forward_values(act, w, b, n, in_features, out_features))
                })??;
                (Some(y), Saved::Linear(n, in_features, out_features), Shape::Flat(out_features))
            }
            Op::Relu => {
                let mut y = vec![0.0f32; act.len()];
                y.par_chunks_mut(ELEMENTWISE_CHUNK).zip(act.par_chunks(ELEMENTWISE_CHUNK)).for_each(|(y, x)| {
                    for (y, &x) in y.iter_mut().zip(x) {
                        *y = if x > 0.0 { x } else { 0.0 };
                    }
                });
                kept.push(y);
                current = Activation::Kept(kept.len() - 1);
                (None, Saved::Relu(kept.len() - 1), shape)
            }
            Op::MaxPool2d { kernel_size, stride } => {
                let (c, hh, ww) = shape.image();
                let (oh, ow) = ((hh - kernel_size) / stride + 1, (ww - kernel_size) / stride + 1);
                let pool = PoolNhwc { h: hh, w: ww, c, k: kernel_size, s: stride, oh, ow };
                let (y, idx) = pool.forward(act);
                (Some(y), Saved::Pool(pool, idx), Shape::Image(c, oh, ow))
            }
            Op::GlobalAvgPool => {
                let (c, hh, ww) = shape.image();
                let hw = hh * ww;
                let mut y = vec![0.0f32; n * c];
                for (out, image) in y.chunks_exact_mut(c).zip(act.chunks_exact(hw * c)) {
                    for position in image.chunks_exact(c) {
                        for (o, &v) in out.iter_mut().zip(position) {
                            *o += v;
                        }
                    }
                    out.iter_mut().for_each(|o| *o /= hw as f32);
                }
                (Some(y), Saved::Gap(hw, c), Shape::Flat(c))
            }
            Op::Flatten => match shape {
                Shape::Image(c, hh, ww) if c > 1 && hh * ww > 1 => {
                    (Some(transpose_images(act, hh * ww, c)), Saved::Flatten(hh * ww, c), Shape::Flat(shape.len()))
                }
                _ => (None, Saved::Identity, Shape::Flat(shape.len())),
            },
            Op::Dropout { .. } => (None, Saved::Identity, shape),
        };
        if let Some(y) = next {
            current = Activation::Owned(y);
        }
        saved.push(keep);
        shape = out_shape;
    }
    let act = current.values(&kept);
    if seed.len() != act.len() {
        return Err(ModelError::Training(format!("seed has {} values, the outputs {}", seed.len(), act.len())));
    }
    let mut g = seed.to_vec();
    for (layer, keep) in arch.layers[range].iter().zip(saved).rev() {
        g = match keep {
            Saved::Conv(geometry, prepared) => geometry.input_grad(&g, &prepared),
            Saved::Linear(n, fin, fout) => {
                let (w, _) = weights(model, &layer.name)?;
                with_values(w, |w: &[f32]| linear::input_grad_values(&g, w, n, fin, fout))?
            }
            Saved::Relu(index) => {
                let rule = Relu(relu);
                g.par_chunks_mut(ELEMENTWISE_CHUNK).zip(kept[index].par_chunks(ELEMENTWISE_CHUNK)).for_each(
                    |(g, y)| match relu {
                        ReluMode::Standard => {
                            g.iter_mut().zip(y).for_each(|(g, &y)| *g = if y > 0.0 { *g } else { 0.0 })
                        }
                        _ => g.iter_mut().zip(y).for_each(|(g, &y)| *g = rule.rule_one(y, *g)),
                    },
                );
                g
            }
            Saved::Pool(pool, idx) => pool.backward(&g, &idx),
            Saved::Gap(hw, c) => {
                let mut dx = vec![0.0f32; g.len() * hw];
                for (image, gi) in dx.chunks_exact_mut(hw * c).zip(g.chunks_exact(c)) {
                    for position in image.chunks_exact_mut(c) {
                        for (d, &v) in position.iter_mut().zip(gi) {
                            *d = v / hw as f32;
                        }
                    }
                }
                dx
            }
            Saved::Flatten(hw, c) => transpose_images(&g, c, hw),
            Saved::Identity => g,
        };
    }
    debug_assert_eq!(g.len(), n * input_shape.len());
    Ok(if c0 > 1 && h0 * w0 > 1 { transpose_images(&g, h0 * w0, c0) } else { g })
}
