//! The input gradient of a sequential model computed directly with the project's kernels:
//! one forward that keeps what the backward needs (ReLU outputs, max-pool argmax indices), then
//! one backward through the layers in reverse, with no autograd graph and no weight gradients.
//! Inside, images are channels-last (NHWC, see `ops/nhwc.rs`); inputs and gradients are NCHW
//! like the rest of the project. Float32 only; it gives the same values as candle's autograd
//! over the same ops (`tests/native.rs`) and is what attribution methods use.
//!
//! ```text
//! ∂(Σ_i Σ_j s_ij · f_j(x_i)) / ∂x_i   for a seed s [n, outputs] (one-hot rows: the target logits)
//! ```
//!
//! [`input_gradients`] takes several models at once (the original and its cascade stages): the
//! layers below the first one whose weights differ from the first model's (the same tensors,
//! as a cascade step leaves them) are evaluated once and their saved state is shared, so a
//! top-down cascade pays the forward of a layer only for the stages that randomised it.
//! [`input_gradient_sums`] returns sums of the gradients over runs of inputs (integrated
//! gradients' steps, SmoothGrad's samples), taken inside the backward; [`outputs`] is the
//! forward alone (Grad-CAM's activations).

use crate::architecture::Op;
use crate::error::{ModelError, Result};
use crate::forward::Model;
use crate::ops::linear;
use crate::ops::nhwc::{
    ConvNhwc, ConvWeights, PoolNhwc, global_average, global_average_adjoint, segment_starts, transpose_images, zeros,
};
use crate::ops::relu::Relu;
use crate::ops::{ReluMode, with_values};
use rayon::prelude::*;
use std::ops::Range;
use std::sync::Arc;

/// Values per parallel task in elementwise passes.
const ELEMENTWISE_CHUNK: usize = 1 << 14;

/// What the backward of one layer needs from the forward (cheap to clone: shared buffers).
#[derive(Clone)]
enum Saved {
    /// Conv geometry and reordered weights.
    Conv(Arc<(ConvNhwc, ConvWeights)>),
    /// Linear `(in, out)`.
    Linear(usize, usize),
    /// ReLU output (positive exactly where the input was).
    Relu(Arc<Vec<f32>>),
    /// Pool geometry, per output value the index within its image of its input, and the
    /// output (the ReLU's backward needs it when the ReLU before the pool is fused into it).
    Pool(PoolNhwc, Arc<Vec<u32>>, Arc<Vec<f32>>),
    /// Global average pool over `hw` positions of `c` channels.
    Gap(usize, usize),
    /// Flatten of NHWC images `[hw, c]` into PyTorch's channel-major order.
    Flatten(usize, usize),
    /// A per-channel scale (batch norm in evaluation: `y = x·s + t`, so `dx = dy·s`).
    ChannelScale(Arc<Vec<f32>>),
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

    /// `(c, h·w)` when the NCHW and NHWC orders of this shape's values differ (images with more
    /// than one channel and more than one position).
    fn layouts_differ(self) -> Option<(usize, usize)> {
        match self {
            Shape::Image(c, h, w) if c > 1 && h * w > 1 => Some((c, h * w)),
            _ => None,
        }
    }

    /// NCHW values of this shape in the engine's NHWC order.
    fn to_nhwc(self, values: &[f32]) -> Vec<f32> {
        match self.layouts_differ() {
            Some((c, hw)) => transpose_images(values, c, hw),
            None => values.to_vec(),
        }
    }

    /// NHWC values of this shape in NCHW order.
    fn to_nchw(self, values: Vec<f32>) -> Vec<f32> {
        match self.layouts_differ() {
            Some((c, hw)) => transpose_images(&values, hw, c),
            None => values,
        }
    }

    fn len(self) -> usize {
        match self {
            Shape::Image(c, h, w) => c * h * w,
            Shape::Flat(f) => f,
        }
    }
}

/// An activation between two layers (shared: it may also be a kept ReLU output).
#[derive(Clone)]
struct Boundary {
    values: Arc<Vec<f32>>,
    shape: Shape,
}

/// The forward of layers `start..` of one model: the saved state per layer, the inputs of the
/// layers asked for, and the output.
struct Forward {
    saved: Vec<Saved>,
    inputs: Vec<(usize, Boundary)>,
    output: Arc<Vec<f32>>,
}

/// The weight and bias tensors of layer `layer`.
pub(crate) fn layer_weights<'a>(
    model: &'a Model,
    layer: &str,
) -> Result<(&'a candle_core::Tensor, &'a candle_core::Tensor)> {
    Ok((model.weights.get(&format!("{layer}.weight"))?, model.weights.get(&format!("{layer}.bias"))?))
}

/// The first layer of `range` whose parameters in `other` are not the very tensors of `first`
/// (`range.end` when there is none).
fn first_difference(first: &Model, other: &Model, range: Range<usize>) -> usize {
    for index in range.clone() {
        let layer = &first.arch.layers[index];
        if layer.op.parameter_shapes().is_none() {
            continue;
        }
        let same = match (layer_weights(first, &layer.name), layer_weights(other, &layer.name)) {
            (Ok((w1, b1)), Ok((w2, b2))) => w1.id() == w2.id() && b1.id() == b2.id(),
            _ => false,
        };
        // A batch norm also computes with its running statistics.
        let same_buffers = layer.op.buffers().iter().all(|(what, _)| {
            let name = format!("{}.{what}", layer.name);
            matches!((first.weights.get(&name), other.weights.get(&name)), (Ok(a), Ok(b)) if a.id() == b.id())
        });
        let same = same && same_buffers;
        if !same {
            return index;
        }
    }
    range.end
}

/// Whether layer `index` is a ReLU followed, inside `range`, by a max pooling whose windows do
/// not overlap: the pair is computed as one pass (exact: only a window's argmax gets a
/// gradient, and there the ReLU's output is the pooled value).
fn fuses_with_next_pool(model: &Model, index: usize, range: &Range<usize>) -> bool {
    let layers = &model.arch.layers;
    index >= range.start
        && index + 1 < range.end
        && matches!(layers[index].op, Op::Relu)
        && matches!(layers[index + 1].op, Op::MaxPool2d { kernel_size, stride } if stride >= kernel_size)
}

/// The forward of layers `range` of `model` from `input`, keeping the inputs of the layers in
/// `keep_inputs`.
// Long: one arm per op with the fused ReLU + max-pool path; issue 19's graph engine replaces it.
fn forward(model: &Model, n: usize, range: Range<usize>, input: Boundary, keep_inputs: &[usize]) -> Result<Forward> {
    let mut saved = Vec::with_capacity(range.len());
    let mut inputs = Vec::new();
    let Boundary { values: mut current, mut shape } = input;
    for index in range.clone() {
        if keep_inputs.contains(&index) {
            inputs.push((index, Boundary { values: current.clone(), shape }));
        }
        let layer = &model.arch.layers[index];
        let act = current.as_slice();
        let (next, keep, out_shape) = match layer.op {
            Op::Conv2d { out_channels, kernel_size, padding, .. } => {
                let g = ConvNhwc::new(n, shape.image(), out_channels, kernel_size, padding);
                let (w, b) = layer_weights(model, &layer.name)?;
                let prepared = with_values(w, |w: &[f32]| g.weights(w))?;
                let y = with_values(b, |b: &[f32]| g.forward(act, &prepared, b))?;
                let out_shape = Shape::Image(out_channels, g.oh, g.ow);
                (Some(Arc::new(y)), Saved::Conv(Arc::new((g, prepared))), out_shape)
            }
            Op::Linear { in_features, out_features, .. } => {
                let (w, b) = layer_weights(model, &layer.name)?;
                let y = with_values(w, |w: &[f32]| {
                    with_values(b, |b: &[f32]| linear::forward_values(act, w, b, n, in_features, out_features))
                })??;
                (Some(Arc::new(y)), Saved::Linear(in_features, out_features), Shape::Flat(out_features))
            }
            Op::Relu if fuses_with_next_pool(model, index, &range) => {
                // Applied by the pooling below (PoolNhwc::relu_first), which also applies its backward.
                (None, Saved::Identity, shape)
            }
            Op::Relu => {
                let mut y = zeros(act.len());
                y.par_chunks_mut(ELEMENTWISE_CHUNK).zip(act.par_chunks(ELEMENTWISE_CHUNK)).for_each(|(y, x)| {
                    for (y, &x) in y.iter_mut().zip(x) {
                        *y = if x > 0.0 { x } else { 0.0 };
                    }
                });
                let y = Arc::new(y);
                (Some(y.clone()), Saved::Relu(y), shape)
            }
            Op::MaxPool2d { kernel_size, stride } => {
                let relu_first = index > range.start && fuses_with_next_pool(model, index - 1, &range);
                let pool = PoolNhwc::new(shape.image(), kernel_size, stride, relu_first);
                let (y, idx) = pool.forward(act);
                let y = Arc::new(y);
                let out_shape = Shape::Image(pool.c, pool.oh, pool.ow);
                (Some(y.clone()), Saved::Pool(pool, Arc::new(idx), y), out_shape)
            }
            Op::GlobalAvgPool => {
                let (c, hh, ww) = shape.image();
                (Some(Arc::new(global_average(act, hh * ww, c))), Saved::Gap(hh * ww, c), Shape::Flat(c))
            }
            Op::Flatten => match shape.layouts_differ() {
                Some((c, hw)) => {
                    (Some(Arc::new(transpose_images(act, hw, c))), Saved::Flatten(hw, c), Shape::Flat(shape.len()))
                }
                None => (None, Saved::Identity, Shape::Flat(shape.len())),
            },
            Op::Dropout { .. } => (None, Saved::Identity, shape),
            Op::BatchNorm2d { eps, .. } => {
                // Evaluation mode: the running statistics make it an affine map per channel.
                let value = |what: &str| -> Result<Vec<f32>> {
                    let t = model.weights.get(&format!("{}.{what}", layer.name))?;
                    Ok(t.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
                };
                let (gamma, beta, mean, var) =
                    (value("weight")?, value("bias")?, value("running_mean")?, value("running_var")?);
                let scale: Vec<f32> = gamma
                    .iter()
                    .zip(&var)
                    .map(|(&g, &v)| (f64::from(g) / (f64::from(v) + eps).sqrt()) as f32)
                    .collect();
                let shift: Vec<f32> = beta.iter().zip(&mean).zip(&scale).map(|((&b, &m), &s)| b - m * s).collect();
                let c = scale.len();
                let mut y = zeros(act.len());
                y.par_chunks_mut(ELEMENTWISE_CHUNK.div_ceil(c) * c)
                    .zip(act.par_chunks(ELEMENTWISE_CHUNK.div_ceil(c) * c))
                    .for_each(|(y, x)| {
                        for (y, x) in y.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
                            for (((y, &x), &s), &t) in y.iter_mut().zip(x).zip(&scale).zip(&shift) {
                                *y = x * s + t;
                            }
                        }
                    });
                (Some(Arc::new(y)), Saved::ChannelScale(Arc::new(scale)), shape)
            }
        };
        if let Some(y) = next {
            current = y;
        }
        saved.push(keep);
        shape = out_shape;
    }
    Ok(Forward { saved, inputs, output: current })
}

/// Where a backward with segments takes its sums: below the lowest layer whose backward depends
/// on the input (a ReLU or a pool); every layer under it is a linear map, the same for all
/// inputs (conv, linear, batch norm's scale, flatten, average pooling).
#[derive(Debug, Clone, Copy, PartialEq)]
enum SumPoint {
    /// No such layer: the seeds themselves are summed.
    Seed,
    /// Below the layer at this index of the range.
    Below(usize),
}

impl SumPoint {
    fn of(saved: &[Saved]) -> Self {
        match saved.iter().position(|s| matches!(s, Saved::Relu(_) | Saved::Pool(..))) {
            Some(index) => Self::Below(index),
            None => Self::Seed,
        }
    }
}

/// The backward of layers `range` of `model` from `seed` (the gradient at their output). With
/// `segments`, the result is the sum of the gradients of each run of `segments[s]` consecutive
/// inputs, `[segments.len(), ..]`. The layers below the lowest ReLU or pool (the last whose
/// backward depends on the input) are linear maps, the same for every input: the sums are taken
/// there (a pool scatters straight into them) and those layers run once per segment.
fn backward(
    model: &Model,
    range: Range<usize>,
    saved: &[Saved],
    seed: &[f32],
    relu: ReluMode,
    segments: Option<&[usize]>,
) -> Result<Vec<f32>> {
    let layers = &model.arch.layers[range];
    let sum_point = segments.map(|_| SumPoint::of(saved));
    // One row per input, or per segment once the sums are taken: the layers below read their
    // rows off `g`'s length.
    let mut g = match (segments, sum_point) {
        (Some(segments), Some(SumPoint::Seed)) => segment_sums(seed, segments),
        _ => seed.to_vec(),
    };
    let mut i = saved.len();
    while i > 0 {
        i -= 1;
        let (layer, keep) = (&layers[i], &saved[i]);
        // The segments when the sums are taken below this layer.
        let sum_here = segments.filter(|_| sum_point == Some(SumPoint::Below(i)));
        // A conv, its ReLU and a max-pool fused with it: the pool routes one value per window,
        // and the conv's backward adds only those filters (no dense, mostly-zero gradient).
        // Not where the sums are taken: the conv then runs once per segment on dense sums.
        if let (Saved::Pool(pool, idx, pooled), Some(Saved::Identity), Some(Saved::Conv(conv))) =
            (keep, i.checked_sub(1).map(|j| &saved[j]), i.checked_sub(2).map(|j| &saved[j]))
            && pool.relu_first
            && conv.0.takes_routed_gradients()
            && sum_here.is_none()
        {
            let rule = Relu(relu);
            let values = pool.routed(&g, pooled, |y, g| rule.rule_one(y, g));
            g = conv.0.input_grad_routed(&values, idx, pool, &conv.1);
            i -= 2;
            continue;
        }
        g = match keep {
            Saved::Conv(conv) => conv.0.input_grad(&g, &conv.1),
            Saved::Linear(fin, fout) => {
                let (w, _) = layer_weights(model, &layer.name)?;
                with_values(w, |w: &[f32]| linear::input_grad_values(&g, w, g.len() / fout, *fin, *fout))?
            }
            Saved::Relu(y) => {
                Relu(relu).backward_in_place(&mut g, y);
                match sum_here {
                    Some(segments) => segment_sums(&g, segments),
                    None => g,
                }
            }
            Saved::Pool(pool, idx, pooled) => {
                let rule = Relu(relu);
                let rule = |y, g| rule.rule_one(y, g);
                match sum_here {
                    Some(segments) => pool.backward_sums(&g, idx, pooled, rule, segments),
                    None => pool.backward(&g, idx, pooled, rule),
                }
            }
            Saved::Gap(hw, c) => global_average_adjoint(&g, *hw, *c),
            Saved::ChannelScale(scale) => {
                let c = scale.len();
                g.par_chunks_mut(ELEMENTWISE_CHUNK.div_ceil(c) * c).for_each(|g| {
                    for g in g.chunks_exact_mut(c) {
                        for (g, &s) in g.iter_mut().zip(scale.iter()) {
                            *g *= s;
                        }
                    }
                });
                g
            }
            Saved::Flatten(hw, c) => transpose_images(&g, *c, *hw),
            Saved::Identity => g,
        };
    }
    Ok(g)
}

/// The sums of the rows of `g` over runs of `segments[s]` consecutive rows (f32, in row order).
fn segment_sums(g: &[f32], segments: &[usize]) -> Vec<f32> {
    let rows: usize = segments.iter().sum();
    let len = g.len() / rows;
    let mut sums = zeros(segments.len() * len);
    sums.par_chunks_mut(len).zip(segment_starts(segments).par_iter().zip(segments)).for_each(
        |(sum, (&start, &count))| {
            for row in g[start * len..(start + count) * len].chunks_exact(len) {
                sum.iter_mut().zip(row).for_each(|(s, &v)| *s += v);
            }
        },
    );
    sums
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
    let mut grads = input_gradients(&[model], h, n, range, &[seed], relu)?;
    Ok(grads.remove(0))
}

/// [`input_gradient`] of the same inputs under each of `models` (same architecture), with
/// `seeds[m]` for `models[m]`. Layers below the first whose weights differ from `models[0]`'s
/// are evaluated once.
pub fn input_gradients(
    models: &[&Model],
    h: &[f32],
    n: usize,
    range: Range<usize>,
    seeds: &[&[f32]],
    relu: ReluMode,
) -> Result<Vec<Vec<f32>>> {
    gradients(models, h, n, range, seeds, relu, None)
}

/// [`input_gradients`] summed over runs of consecutive inputs: per model, `[segments.len(), ..]`
/// where row `s` is `Σ` of the gradients of the `segments[s]` inputs after those of the earlier
/// segments. What integrated gradients and SmoothGrad need (with the step weights in the
/// seeds): the layers below the lowest ReLU or pool are linear maps, the same for every input,
/// so they run once per segment on the sums, not once per input.
pub fn input_gradient_sums(
    models: &[&Model],
    h: &[f32],
    n: usize,
    range: Range<usize>,
    seeds: &[&[f32]],
    relu: ReluMode,
    segments: &[usize],
) -> Result<Vec<Vec<f32>>> {
    if n == 0 && segments.is_empty() {
        return Ok(vec![Vec::new(); models.len()]);
    }
    if segments.iter().sum::<usize>() != n || segments.contains(&0) {
        return Err(ModelError::BadInput(format!("segments {segments:?} do not split {n} inputs")));
    }
    gradients(models, h, n, range, seeds, relu, Some(segments))
}

/// `n` NCHW inputs `h` of layer `range.start` as the engine's input boundary (NHWC images).
fn boundary(model: &Model, h: &[f32], n: usize, range: &Range<usize>) -> Result<Boundary> {
    let arch = &model.arch;
    let input_dims: &[usize] = if range.start == 0 { &arch.spec.input } else { &arch.shapes[range.start - 1] };
    let shape = Shape::of(input_dims);
    if h.len() != n * shape.len() {
        return Err(ModelError::BadInput(format!(
            "{} input values for {n} inputs of shape {input_dims:?} ({} expected)",
            h.len(),
            n * shape.len()
        )));
    }
    Ok(Boundary { values: Arc::new(shape.to_nhwc(h)), shape })
}

/// The output of layers `range` of `model` (evaluation mode) for `n` NCHW inputs `h` of layer
/// `range.start`, NCHW like [`Model::forward_range`]'s, computed with the engine's kernels (no
/// autograd graph): what Grad-CAM needs from the layers below its target layer.
pub fn outputs(model: &Model, h: &[f32], n: usize, range: Range<usize>) -> Result<Vec<f32>> {
    let input = boundary(model, h, n, &range)?;
    if range.is_empty() {
        return Ok(h.to_vec());
    }
    let out = forward(model, n, range.clone(), input, &[])?.output;
    Ok(Shape::of(&model.arch.shapes[range.end - 1]).to_nchw(Arc::unwrap_or_clone(out)))
}

/// [`input_gradients`], summed over `segments` when given.
fn gradients(
    models: &[&Model],
    h: &[f32],
    n: usize,
    range: Range<usize>,
    seeds: &[&[f32]],
    relu: ReluMode,
    segments: Option<&[usize]>,
) -> Result<Vec<Vec<f32>>> {
    let Some(&first) = models.first() else { return Ok(Vec::new()) };
    if seeds.len() != models.len() {
        return Err(ModelError::BadInput(format!("{} seeds for {} models", seeds.len(), models.len())));
    }
    let input = boundary(first, h, n, &range)?;
    let input_shape = input.shape;
    let starts: Vec<usize> = models.iter().map(|m| first_difference(first, m, range.clone())).collect();
    let restarts: Vec<usize> = starts.iter().copied().filter(|&s| s > range.start && s < range.end).collect();
    let base = forward(first, n, range.clone(), input.clone(), &restarts)?;
    let mut grads = Vec::with_capacity(models.len());
    for ((model, &start), seed) in models.iter().zip(&starts).zip(seeds) {
        let (saved, output) = if start == range.end {
            (base.saved.clone(), base.output.clone())
        } else {
            // Shared layers below `start`, this model's own from `start` on.
            let boundary = match base.inputs.iter().find(|(i, _)| *i == start) {
                Some((_, kept)) => kept.clone(),
                None => input.clone(),
            };
            let rest = forward(model, n, start..range.end, boundary, &[])?;
            let mut saved = base.saved[..start - range.start].to_vec();
            saved.extend(rest.saved);
            (saved, rest.output)
        };
        if seed.len() != output.len() {
            return Err(ModelError::BadInput(format!("seed has {} values, the outputs {}", seed.len(), output.len())));
        }
        let g = backward(model, range.clone(), &saved, seed, relu, segments)?;
        debug_assert_eq!(g.len(), segments.map_or(n, <[usize]>::len) * input_shape.len());
        grads.push(input_shape.to_nchw(g));
    }
    Ok(grads)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Architecture, Reinit, init_weights, preset, reinitialize};
    use rand::SeedableRng;
    use std::sync::Arc;

    #[test]
    fn a_stage_shares_the_layers_below_its_first_reinitialised_one() {
        let arch = Arc::new(Architecture::new(preset("adebayo-cnn", [1, 28, 28]).expect("preset")).expect("valid"));
        let original = Model::new(arch.clone(), init_weights(&arch, 1).expect("init"));
        let all = 0..arch.layers.len();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let stage = |layer: &str, rng: &mut rand_chacha::ChaCha8Rng| {
            original
                .with_weights(reinitialize(&original.weights, &arch, layer, &Reinit::Original {}, rng).expect("reinit"))
        };
        assert_eq!(first_difference(&original, &original.clone(), all.clone()), all.end);
        for layer in ["logits", "fc1", "conv2", "conv1"] {
            let changed = stage(layer, &mut rng);
            assert_eq!(first_difference(&original, &changed, all.clone()), arch.index_of(layer).expect("layer"));
        }
        // Equal values in a new tensor count as different: sharing follows tensor identity.
        let mut weights = original.weights.clone();
        let copy = (weights.get("conv2.bias").expect("bias") * 1.0).expect("copy");
        weights.insert("conv2.bias", copy);
        let copied = original.with_weights(weights);
        assert_eq!(first_difference(&original, &copied, all.clone()), arch.index_of("conv2").expect("conv2"));
    }
}
