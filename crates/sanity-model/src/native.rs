//! The input gradient of a sequential model computed directly with the project's kernels:
//! one forward that keeps what the backward needs (ReLU outputs, max-pool argmax indices), then
//! one backward through the layers in reverse, with no autograd graph, no weight gradients and
//! no zero-initialised gradient accumulators. Float32 only; it gives the same values as candle's
//! autograd over the same ops (`tests/native.rs`) and is what attribution methods use.
//!
//! ```text
//! ∂(Σ_i Σ_j s_ij · f_j(x_i)) / ∂x_i   for a seed s [n, outputs] (one-hot rows: the target logits)
//! ```

use crate::architecture::Op;
use crate::error::{ModelError, Result};
use crate::forward::Model;
use crate::ops::conv::Geometry;
use crate::ops::linear;
use crate::ops::relu::Relu;
use crate::ops::{MaxPool2d, ReluMode, with_values};
use rayon::prelude::*;
use std::ops::Range;

/// What the backward of one layer needs from the forward.
enum Saved {
    /// Conv geometry.
    Conv(Geometry),
    /// Linear `(n, in, out)`.
    Linear(usize, usize, usize),
    /// ReLU output (positive exactly where the input was).
    Relu(Vec<f32>),
    /// For every pooled output, the flat input index of its window's maximum; the input length.
    Pool(Vec<u32>, usize),
    /// Global average pool `(n·c, h·w)`.
    Gap(usize, usize),
    /// Nothing (flatten, dropout in evaluation).
    Identity,
}

fn weights<'a>(model: &'a Model, layer: &str) -> Result<(&'a candle_core::Tensor, &'a candle_core::Tensor)> {
    Ok((model.weights.get(&format!("{layer}.weight"))?, model.weights.get(&format!("{layer}.bias"))?))
}

/// `∂(Σ seed ⊙ f(h))/∂h` for `h` `[n, ..]` (f32 values) the input of layers `range` of `model`,
/// `seed` `[n, outputs of the last layer]`. ReLU backward follows `relu`.
pub fn input_gradient(
    model: &Model,
    h: &[f32],
    n: usize,
    range: Range<usize>,
    seed: &[f32],
    relu: ReluMode,
) -> Result<Vec<f32>> {
    let arch = &model.arch;
    let input_shape: Vec<usize> =
        if range.start == 0 { arch.spec.input.to_vec() } else { arch.shapes[range.start - 1].clone() };
    let mut shape = input_shape.clone();
    let mut act = h.to_vec();
    let mut saved = Vec::with_capacity(range.len());
    for layer in &arch.layers[range.clone()] {
        let (next, keep, out_shape) = match layer.op {
            Op::Conv2d { out_channels, kernel_size, padding, .. } => {
                let (c, hh, ww) = (shape[0], shape[1], shape[2]);
                let (oh, ow) = (hh + 2 * padding + 1 - kernel_size, ww + 2 * padding + 1 - kernel_size);
                let g = Geometry { n, c, h: hh, w: ww, o: out_channels, k: kernel_size, pad: padding, oh, ow };
                let (w, b) = weights(model, &layer.name)?;
                let y = with_values(w, |w: &[f32]| with_values(b, |b: &[f32]| g.forward(&act, w, b)))??;
                (y, Saved::Conv(g), vec![out_channels, oh, ow])
            }
            Op::Linear { in_features, out_features, .. } => {
                let (w, b) = weights(model, &layer.name)?;
                let y = with_values(w, |w: &[f32]| {
                    with_values(b, |b: &[f32]| linear::forward_values(&act, w, b, n, in_features, out_features))
                })??;
                (y, Saved::Linear(n, in_features, out_features), vec![out_features])
            }
            Op::Relu => {
                let mut y = act;
                y.par_iter_mut().for_each(|v| *v = v.max(0.0));
                (y.clone(), Saved::Relu(y), shape.clone())
            }
            Op::MaxPool2d { kernel_size, stride } => {
                let pool = MaxPool2d { kernel_size, stride };
                let (c, hh, ww) = (shape[0], shape[1], shape[2]);
                let (oh, ow) = pool.out_size(hh, ww);
                let mut y = vec![0.0f32; n * c * oh * ow];
                let mut idx = vec![0u32; n * c * oh * ow];
                y.par_chunks_mut(oh * ow)
                    .zip(idx.par_chunks_mut(oh * ow))
                    .zip(act.par_chunks(hh * ww))
                    .enumerate()
                    .for_each(|(plane_index, ((yo, io), plane))| {
                        pool.plane_argmax(plane, hh, ww, |o, i| {
                            yo[o] = plane[i];
                            io[o] = (plane_index * hh * ww + i) as u32;
                        })
                    });
                (y, Saved::Pool(idx, act.len()), vec![c, oh, ow])
            }
            Op::GlobalAvgPool => {
                let (c, hw) = (shape[0], shape[1] * shape[2]);
                let y = act.chunks_exact(hw).map(|p| p.iter().sum::<f32>() / hw as f32).collect();
                (y, Saved::Gap(n * c, hw), vec![c])
            }
            Op::Flatten => (act, Saved::Identity, vec![shape.iter().product()]),
            Op::Dropout { .. } => (act, Saved::Identity, shape.clone()),
        };
        act = next;
        saved.push(keep);
        shape = out_shape;
    }
    if seed.len() != act.len() {
        return Err(ModelError::Training(format!("seed has {} values, the outputs {}", seed.len(), act.len())));
    }
    let mut g = seed.to_vec();
    for (layer, keep) in arch.layers[range].iter().zip(saved).rev() {
        g = match keep {
            Saved::Conv(geometry) => {
                let (w, _) = weights(model, &layer.name)?;
                with_values(w, |w: &[f32]| geometry.input_grad(&g, w))?
            }
            Saved::Linear(n, fin, fout) => {
                let (w, _) = weights(model, &layer.name)?;
                with_values(w, |w: &[f32]| linear::input_grad_values(&g, w, n, fin, fout))?
            }
            Saved::Relu(y) => {
                let rule = Relu(relu);
                g.par_iter_mut().zip(&y).for_each(|(g, &y)| *g = rule.rule_one(y, *g));
                g
            }
            Saved::Pool(idx, len) => {
                let mut dx = vec![0.0f32; len];
                for (&i, &v) in idx.iter().zip(&g) {
                    dx[i as usize] += v;
                }
                dx
            }
            Saved::Gap(planes, hw) => {
                let mut dx = vec![0.0f32; planes * hw];
                for (p, &v) in dx.chunks_exact_mut(hw).zip(&g) {
                    p.fill(v / hw as f32);
                }
                dx
            }
            Saved::Identity => g,
        };
    }
    debug_assert_eq!(g.len(), n * input_shape.iter().product::<usize>());
    Ok(g)
}
