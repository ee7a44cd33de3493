//! The float32 walk of a [`Graph`]: a forward that keeps every node's output (or, for an input
//! gradient, only what it reads: [`forward_for_gradient`]), and the input gradient of
//! `Σ seed ⊙ output` with the ReLU backward replaced per call (standard, guided, deconvnet), as
//! attribution methods need. Convolutions are im2col + gemm per image (every stride, dilation,
//! padding and group; the column matrix built a run of taps at a time in a per-thread buffer,
//! none for a 1x1 convolution); images run in parallel, each product on one thread, so results
//! do not depend on the thread count. The gradient at any node is available ([`backward_to`])
//! for class activation maps at a named layer, and a cascade stage's forward can start from the
//! trained model's ([`forward_from`]).
//!
//! Average pooling windows are `graph_reference.rs`'s. The walk is checked against the float64
//! reference (`graph_reference.rs`) and against the sequential engine (`native.rs`) on the
//! presets (`tests/graph_engine.rs`); `sanity_attribution::graph_methods` runs every method
//! on it. docs/performance.md ("A ResNet") has its speed.

use crate::error::{ModelError, Result};
use crate::graph::{ConvSpec, Graph, GraphOp, PoolSpec};
use crate::graph_reference::{for_each_bin, for_each_window};
use crate::ops::ReluMode;
use crate::ops::gemm::{Layout2, matmul};
use crate::ops::linear::input_grad_values;
use crate::ops::relu::Relu;
use crate::weights::Weights;
use candle_core::DType;
use rayon::prelude::*;
use std::sync::Arc;

/// A graph with float32 weights ready for the walk.
pub struct GraphModel<'a> {
    /// The graph.
    pub graph: &'a Graph,
    /// Per node, its parameters by suffix (`weight`, `bias`, ...), f32 (shared between the
    /// models of a cascade where their tensors are: [`GraphModel::sharing`]).
    pub(crate) parameters: Parameters,
}

/// Per node, its parameters by suffix, f32.
pub(crate) type Parameters = Vec<Vec<(&'static str, Arc<[f32]>)>>;

impl<'a> GraphModel<'a> {
    /// Reads the weights of `graph`'s layers.
    pub fn new(graph: &'a Graph, weights: &Weights) -> Result<Self> {
        Self::read(graph, weights, |_, _, _, _| None)
    }

    /// [`GraphModel::new`] of a model whose weights are partly `base`'s (a cascade stage and
    /// the model it re-initialises layers of): a parameter that is the very tensor of
    /// `base_weights` shares `base`'s values instead of a copy of its own.
    pub fn sharing(graph: &'a Graph, weights: &Weights, base: &GraphModel, base_weights: &Weights) -> Result<Self> {
        Self::read(graph, weights, |k, what, name, tensor| {
            let same = base_weights.get(name).ok()?.id() == tensor.id();
            let values = base.parameters.get(k)?.iter().find(|(w, _)| *w == what)?;
            same.then(|| Arc::clone(&values.1))
        })
    }

    /// How many of the first nodes compute what they compute in `base`: those before the first
    /// node with a parameter that is not `base`'s very values (as [`GraphModel::sharing`] shares
    /// them), for [`forward_from`].
    pub fn shared_with(&self, base: &GraphModel) -> usize {
        let same = |k: usize| {
            let theirs = base.parameters.get(k).map_or(&[][..], Vec::as_slice);
            self.parameters[k].len() == theirs.len()
                && self.parameters[k].iter().zip(theirs).all(|(a, b)| Arc::ptr_eq(&a.1, &b.1))
        };
        (0..self.parameters.len()).find(|&k| !same(k)).unwrap_or(self.parameters.len())
    }

    /// The parameters of `graph`'s layers: `known(node index, suffix, name, tensor)` where it
    /// has them, else a copy of the tensor as f32.
    fn read(
        graph: &'a Graph,
        weights: &Weights,
        known: impl Fn(usize, &str, &str, &candle_core::Tensor) -> Option<Arc<[f32]>>,
    ) -> Result<Self> {
        let parameters = graph
            .nodes
            .iter()
            .enumerate()
            .map(|(k, node)| {
                node.op
                    .parameters()
                    .into_iter()
                    .map(|(what, _)| {
                        let name = format!("{}.{what}", node.name);
                        let t = weights.get(&name)?;
                        let values = match known(k, what, &name, t) {
                            Some(values) => values,
                            None => Arc::from(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?),
                        };
                        Ok((what, values))
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { graph, parameters })
    }

    pub(crate) fn param(&self, node: usize, what: &str) -> &[f32] {
        self.parameters[node].iter().find(|(w, _)| *w == what).map_or(&[], |(_, v)| &v[..])
    }

    /// A batch norm's per-channel scale and shift (inference).
    pub(crate) fn batch_norm(&self, node: usize, eps: f64) -> (Vec<f32>, Vec<f32>) {
        let (gamma, beta) = (self.param(node, "weight"), self.param(node, "bias"));
        let (mean, var) = (self.param(node, "running_mean"), self.param(node, "running_var"));
        let scale: Vec<f32> =
            gamma.iter().zip(var).map(|(&g, &v)| (f64::from(g) / (f64::from(v) + eps).sqrt()) as f32).collect();
        let shift = beta.iter().zip(mean).zip(&scale).map(|((&b, &m), &s)| b - m * s).collect();
        (scale, shift)
    }
}

/// Every value of a forward, NCHW: `values[0]` the input, `values[k + 1]` node `k`'s output.
pub type Forward = crate::graph_reference::Evaluation<f32>;

/// The forward of `model` on `n` NCHW inputs `x`.
pub fn forward(model: &GraphModel, x: &[f32], n: usize) -> Result<Forward> {
    forward_checked(model, x, n)?;
    Ok(Forward { n, values: evaluate(model, vec![Arc::new(x.to_vec())], n, None) })
}

/// `x` when it holds `n` inputs of `model`.
fn forward_checked<'x>(model: &GraphModel, x: &'x [f32], n: usize) -> Result<&'x [f32]> {
    let per: usize = model.graph.input.iter().product();
    if x.len() != n * per {
        return Err(ModelError::BadInput(format!(
            "{} input values for {n} inputs of shape {:?}",
            x.len(),
            model.graph.input
        )));
    }
    Ok(x)
}

/// [`forward`] keeping only what an input gradient ([`backward_to`] the input) reads, the
/// output, and the values `keep` marks: every other value is emptied once the nodes that read
/// it are evaluated (a ResNet's convolution and batch norm outputs: the forward's peak memory
/// is about halved). `keep` has one entry per value or is empty.
pub fn forward_for_gradient(model: &GraphModel, x: &[f32], n: usize, keep: &[bool]) -> Result<Forward> {
    let x = forward_checked(model, x, n)?;
    Ok(Forward { n, values: evaluate(model, vec![Arc::new(x.to_vec())], n, Some(keep)) })
}

/// The forward of `model` on `base`'s inputs when `model`'s first `shared` nodes compute what
/// `base`'s model's did (the same weights: a cascade stage and the model it re-initialises
/// later layers of): their values are `base`'s, shared, and only the nodes from `shared` on are
/// evaluated. The values equal [`forward`]'s bit for bit.
/// With `for_gradient`, it keeps what [`forward_for_gradient`] keeps.
pub fn forward_from(model: &GraphModel, base: &Forward, shared: usize, for_gradient: bool) -> Result<Forward> {
    if base.values.len() != model.graph.nodes.len() + 1 {
        return Err(ModelError::BadInput(format!(
            "a forward of {} values for a graph of {} nodes",
            base.values.len(),
            model.graph.nodes.len()
        )));
    }
    let values = base.values[..=shared.min(model.graph.nodes.len())].to_vec();
    Ok(Forward { n: base.n, values: evaluate(model, values, base.n, for_gradient.then_some(&[][..])) })
}

/// Whether the input gradient reads value `v` of `graph`: a ReLU's output (its backward's
/// mask), the input of a max pooling or of an elementwise op other than ReLU, the output.
fn gradient_reads(graph: &Graph, v: usize) -> bool {
    let output = v == graph.nodes.len();
    let relu = v > 0 && graph.nodes[v - 1].op == GraphOp::Relu;
    let read = graph.nodes.iter().any(|node| {
        node.inputs.contains(&v)
            && matches!(
                node.op,
                GraphOp::MaxPool(_)
                    | GraphOp::Sigmoid
                    | GraphOp::Tanh
                    | GraphOp::Gelu
                    | GraphOp::LeakyRelu { .. }
                    | GraphOp::Scale { .. }
            )
    });
    output || relu || read
}

/// `values` (the input and the first nodes' outputs) completed with the outputs of the
/// remaining nodes of `model` on `n` inputs. With `keep` (see [`forward_for_gradient`]), a
/// value the input gradient does not read is emptied after the last node that reads it.
// Long: one arm per op, as graph_reference.rs's forward.
fn evaluate(model: &GraphModel, mut values: Vec<Arc<Vec<f32>>>, n: usize, keep: Option<&[bool]>) -> Vec<Arc<Vec<f32>>> {
    let graph = model.graph;
    let droppable: Vec<bool> = match keep {
        None => vec![false; graph.nodes.len() + 1],
        Some(keep) => (0..=graph.nodes.len())
            .map(|v| !keep.get(v).copied().unwrap_or(false) && !gradient_reads(graph, v))
            .collect(),
    };
    let mut last_reader = vec![None; graph.nodes.len() + 1];
    for (k, node) in graph.nodes.iter().enumerate() {
        node.inputs.iter().for_each(|&v| last_reader[v] = Some(k));
    }
    for (k, node) in graph.nodes.iter().enumerate().skip(values.len() - 1) {
        if matches!(node.op, GraphOp::Flatten | GraphOp::Identity) {
            // The same values: shared, not copied.
            values.push(Arc::clone(&values[node.inputs[0]]));
            continue;
        }
        let input_shape = graph.shape_of(node.inputs[0]);
        let x = &values[node.inputs[0]];
        let y = match node.op {
            GraphOp::Conv(c) => {
                conv_forward(&c, x, &input_shape, n, model.param(k, "weight"), model.param(k, "bias"), &node.shape)
            }
            GraphOp::Linear { in_features, out_features, .. } => {
                linear_forward(x, n, in_features, out_features, model.param(k, "weight"), model.param(k, "bias"))
            }
            GraphOp::BatchNorm { eps, .. } => {
                let (scale, shift) = model.batch_norm(k, eps);
                let plane: usize = input_shape[1..].iter().product();
                per_channel(x, plane, scale.len(), |c, v| v * scale[c] + shift[c])
            }
            GraphOp::MaxPool(p) => {
                let [rows, cols] = window_ranges(&p, &input_shape, &node.shape);
                let w = input_shape[2];
                let mut y = vec![0.0f32; n * node.shape.iter().product::<usize>()];
                y.par_chunks_mut(rows.len() * cols.len()).zip(x.par_chunks(input_shape[1] * w)).for_each(|(y, x)| {
                    for (oy, ys) in rows.iter().enumerate() {
                        for (ox, xs) in cols.iter().enumerate() {
                            y[oy * cols.len() + ox] = ys
                                .clone()
                                .flat_map(|iy| &x[iy * w + xs.start..iy * w + xs.end])
                                .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                        }
                    }
                });
                y
            }
            GraphOp::AvgPool { pool, count_include_pad } => {
                let (input, output) = planes(&input_shape, &node.shape);
                let mut y = vec![0.0f32; n * node.shape.iter().product::<usize>()];
                y.par_chunks_mut(output[1] * output[2]).zip(x.par_chunks(input[1] * input[2])).for_each(|(y, x)| {
                    for_each_window(&pool, &input, &output, 1, |o, taps, divisor| {
                        let d = if count_include_pad { divisor as f32 } else { taps.len() as f32 };
                        y[o] = taps.iter().map(|&t| x[t]).sum::<f32>() / d;
                    });
                });
                y
            }
            GraphOp::AdaptiveAvgPool { out } => {
                let mut y = vec![0.0f32; n * node.shape.iter().product::<usize>()];
                for_each_bin(out, &input_shape, n, |o, taps| {
                    y[o] = taps.iter().map(|&t| x[t]).sum::<f32>() / taps.len() as f32
                });
                y
            }
            GraphOp::GlobalAvgPool { .. } => {
                let hw: usize = input_shape[1..].iter().product();
                x.chunks_exact(hw).map(|plane| plane.iter().sum::<f32>() / hw as f32).collect()
            }
            GraphOp::Add => zip_map(x, &values[node.inputs[1]], |a, b| a + b),
            GraphOp::Concat => {
                let mut y = Vec::with_capacity(n * node.shape.iter().product::<usize>());
                for image in 0..n {
                    for &v in &node.inputs {
                        let len: usize = graph.shape_of(v).iter().product();
                        y.extend_from_slice(&values[v][image * len..(image + 1) * len]);
                    }
                }
                y
            }
            GraphOp::Relu => zip_map(x, x, |v, _| v.max(0.0)),
            op => zip_map(x, x, |v, _| elementwise(op, v).0),
        };
        values.push(Arc::new(y));
        for &v in &node.inputs {
            if droppable[v] && last_reader[v] == Some(k) {
                values[v] = Arc::new(Vec::new());
            }
        }
    }
    values
}

/// `∂(Σ seed ⊙ output)/∂x`, NCHW, with ReLU backward `relu`.
pub fn input_gradient(model: &GraphModel, forward: &Forward, seed: &[f32], relu: ReluMode) -> Result<Vec<f32>> {
    backward_to(model, forward, 0, seed, relu)
}

/// `∂(Σ seed ⊙ output)/∂v` for value `v` (0 the input, `k + 1` node `k`'s output): the
/// gradient at a layer that a class activation map weights its activations with.
pub fn backward_to(model: &GraphModel, forward: &Forward, v: usize, seed: &[f32], relu: ReluMode) -> Result<Vec<f32>> {
    if seed.len() != forward.output().len() {
        return Err(ModelError::BadInput(format!(
            "a seed of {} values for {} outputs",
            seed.len(),
            forward.output().len()
        )));
    }
    let mut grads: Vec<Option<Vec<f32>>> = vec![None; forward.values.len()];
    grads[forward.values.len() - 1] = Some(seed.to_vec());
    for k in (v..model.graph.nodes.len()).rev() {
        let Some(dy) = grads[k + 1].take() else { continue };
        for (input, dx) in node_backward(model, forward, k, dy, relu) {
            accumulate(&mut grads[input], &dx);
        }
    }
    Ok(grads[v].take().unwrap_or_else(|| vec![0.0; forward.values[v].len()]))
}

/// Node `k`'s share of the backward: for output gradient `dy`, the gradient of each of its
/// inputs (value index, values), with ReLU backward `relu`.
// Long: one arm per op, as graph_reference.rs's input_gradient.
pub(crate) fn node_backward(
    model: &GraphModel,
    forward: &Forward,
    k: usize,
    dy: Vec<f32>,
    relu: ReluMode,
) -> Vec<(usize, Vec<f32>)> {
    let (graph, n) = (model.graph, forward.n);
    let node = &graph.nodes[k];
    let input_shape = graph.shape_of(node.inputs[0]);
    let x = &forward.values[node.inputs[0]];
    // The input's length from its shape: a forward for gradients empties values it need not keep.
    let input_len = n * input_shape.iter().product::<usize>();
    let dx = match node.op {
        GraphOp::Conv(c) => conv_input_grad(&c, &input_shape, n, model.param(k, "weight"), &dy, &node.shape),
        GraphOp::Linear { in_features, out_features, .. } => {
            input_grad_values(&dy, model.param(k, "weight"), n, in_features, out_features)
        }
        GraphOp::BatchNorm { eps, .. } => {
            let (scale, _) = model.batch_norm(k, eps);
            let plane: usize = input_shape[1..].iter().product();
            per_channel(&dy, plane, scale.len(), |c, g| g * scale[c])
        }
        GraphOp::Relu => {
            let mut g = dy;
            Relu(relu).backward_in_place(&mut g, &forward.values[k + 1]);
            g
        }
        GraphOp::MaxPool(p) => {
            // The window's first largest value (in row-major order) takes the gradient.
            let [rows, cols] = window_ranges(&p, &input_shape, &node.shape);
            let (w, plane_in, plane_out) = (input_shape[2], input_shape[1] * input_shape[2], rows.len() * cols.len());
            let mut dx = vec![0.0f32; x.len()];
            dx.par_chunks_mut(plane_in).zip(x.par_chunks(plane_in)).zip(dy.par_chunks(plane_out)).for_each(
                |((dx, x), dy)| {
                    for (oy, ys) in rows.iter().enumerate() {
                        for (ox, xs) in cols.iter().enumerate().filter(|(_, xs)| !xs.is_empty() && !ys.is_empty()) {
                            let mut best = ys.start * w + xs.start;
                            for t in ys.clone().flat_map(|iy| iy * w + xs.start..iy * w + xs.end) {
                                if x[t] > x[best] {
                                    best = t;
                                }
                            }
                            dx[best] += dy[oy * cols.len() + ox];
                        }
                    }
                },
            );
            dx
        }
        GraphOp::AvgPool { pool, count_include_pad } => {
            let (input, output) = planes(&input_shape, &node.shape);
            let mut dx = vec![0.0f32; input_len];
            dx.par_chunks_mut(input[1] * input[2]).zip(dy.par_chunks(output[1] * output[2])).for_each(|(dx, dy)| {
                for_each_window(&pool, &input, &output, 1, |o, taps, divisor| {
                    let d = if count_include_pad { divisor as f32 } else { taps.len() as f32 };
                    taps.iter().for_each(|&t| dx[t] += dy[o] / d);
                });
            });
            dx
        }
        GraphOp::AdaptiveAvgPool { out } => {
            let mut dx = vec![0.0f32; input_len];
            for_each_bin(out, &input_shape, n, |o, taps| taps.iter().for_each(|&t| dx[t] += dy[o] / taps.len() as f32));
            dx
        }
        GraphOp::GlobalAvgPool { .. } => {
            let hw: usize = input_shape[1..].iter().product();
            dy.iter().flat_map(|&g| std::iter::repeat_n(g / hw as f32, hw)).collect()
        }
        GraphOp::Add => return vec![(node.inputs[1], dy.clone()), (node.inputs[0], dy)],
        GraphOp::Concat => {
            let total: usize = node.shape.iter().product();
            let mut offset = 0;
            let mut parts = Vec::with_capacity(node.inputs.len());
            for &input in &node.inputs {
                let len: usize = graph.shape_of(input).iter().product();
                let mut part = vec![0.0f32; n * len];
                for image in 0..n {
                    part[image * len..(image + 1) * len].copy_from_slice(&dy[image * total + offset..][..len]);
                }
                parts.push((input, part));
                offset += len;
            }
            return parts;
        }
        GraphOp::Flatten | GraphOp::Identity => dy,
        op => zip_map(x, &dy, |v, g| g * elementwise(op, v).1),
    };
    vec![(node.inputs[0], dx)]
}

/// `y = x Wᵀ + b` for `n` rows of `x` `[n, in]`, `W` `[out, in]`.
pub(crate) fn linear_forward(
    x: &[f32],
    n: usize,
    in_features: usize,
    out_features: usize,
    w: &[f32],
    b: &[f32],
) -> Vec<f32> {
    let mut y = vec![0.0f32; n * out_features];
    matmul(
        &mut y,
        Layout2::row_major(n, out_features),
        x,
        Layout2::row_major(n, in_features),
        w,
        Layout2::row_major(out_features, in_features).t(),
        false,
        rayon::current_num_threads(),
    );
    if !b.is_empty() {
        y.chunks_exact_mut(out_features).for_each(|row| row.iter_mut().zip(b).for_each(|(y, b)| *y += b));
    }
    y
}

pub(crate) fn accumulate(slot: &mut Option<Vec<f32>>, g: &[f32]) {
    match slot {
        Some(sum) => sum.par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK)).for_each(|(s, g)| {
            s.iter_mut().zip(g).for_each(|(s, g)| *s += g);
        }),
        None => *slot = Some(g.to_vec()),
    }
}

/// An elementwise op's value and derivative at `v` (ReLU's backward is taken by its rule).
fn elementwise(op: GraphOp, v: f32) -> (f32, f32) {
    match op {
        GraphOp::Relu => (v.max(0.0), if v > 0.0 { 1.0 } else { 0.0 }),
        GraphOp::LeakyRelu { alpha } => {
            if v > 0.0 {
                (v, 1.0)
            } else {
                (alpha * v, alpha)
            }
        }
        GraphOp::Sigmoid => {
            let s = 1.0 / (1.0 + (-v).exp());
            (s, s * (1.0 - s))
        }
        GraphOp::Tanh => {
            let t = v.tanh();
            (t, 1.0 - t * t)
        }
        GraphOp::Gelu => {
            let x = f64::from(v);
            let cdf = 0.5 * (1.0 + statrs::function::erf::erf(x / std::f64::consts::SQRT_2));
            let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
            ((x * cdf) as f32, (cdf + x * pdf) as f32)
        }
        GraphOp::Scale { factor } => (v * factor, factor),
        _ => (v, 1.0),
    }
}

/// Values per parallel task of the elementwise loops.
const CHUNK: usize = 1 << 14;

/// `f(a[i], b[i])` for every `i`, in parallel.
pub(crate) fn zip_map(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    let mut y = vec![0.0f32; a.len()];
    y.par_chunks_mut(CHUNK).zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK))).for_each(|(y, (a, b))| {
        y.iter_mut().zip(a.iter().zip(b)).for_each(|(y, (&a, &b))| *y = f(a, b));
    });
    y
}

/// `f(channel, value)` over `[n, c, plane]` values.
fn per_channel(x: &[f32], plane: usize, channels: usize, f: impl Fn(usize, f32) -> f32 + Sync) -> Vec<f32> {
    let mut y = vec![0.0f32; x.len()];
    y.par_chunks_mut(plane).zip(x.par_chunks(plane)).enumerate().with_min_len(CHUNK.div_ceil(plane)).for_each(
        |(i, (y, x))| {
            let c = i % channels;
            y.iter_mut().zip(x).for_each(|(y, &v)| *y = f(c, v));
        },
    );
    y
}

/// Per output row (column) of pooling `p` on a `[c, h, w]` input, the input rows (columns) its
/// windows cover inside the input (empty only where the padding is wider than the kernel,
/// which PyTorch refuses: the window's maximum is then −∞ and it passes no gradient).
fn window_ranges(p: &PoolSpec, input: &[usize], output: &[usize]) -> [Vec<std::ops::Range<usize>>; 2] {
    std::array::from_fn(|axis| {
        let size = input[axis + 1];
        (0..output[axis + 1])
            .map(|o| {
                let start = o * p.stride[axis];
                start.saturating_sub(p.pads[axis]).min(size)
                    ..(start + p.kernel[axis]).saturating_sub(p.pads[axis]).min(size)
            })
            .collect()
    })
}

/// One channel plane of a pooling's `[c, h, w]` input and output shapes.
fn planes(input: &[usize], output: &[usize]) -> ([usize; 3], [usize; 3]) {
    ([1, input[1], input[2]], [1, output[1], output[2]])
}

/// The im2col matrix of one image's channels `[channels, h, w]`: rows `(ci, ky, kx)`, columns
/// the output positions, zero where a tap falls in the padding. Every value of `cols` is
/// written, so it may hold anything before.
fn im2col(c: &ConvSpec, image: &[f32], cols: &mut [f32], dims: [usize; 3], out: [usize; 2]) {
    let step = c.stride[1];
    for_each_row(c, dims, out, |start, inside| {
        let row = &mut cols[start..start + out[1]];
        let Some((pixel, lo, hi)) = inside else { return row.fill(0.0) };
        row[..lo].fill(0.0);
        row[hi..].fill(0.0);
        let row = &mut row[lo..hi];
        if step == 1 {
            row.copy_from_slice(&image[pixel..pixel + row.len()]);
        } else {
            row.iter_mut().enumerate().for_each(|(i, v)| *v = image[pixel + i * step]);
        }
    });
}

/// Adds the columns back onto the image positions they were taken from (im2col's adjoint).
fn col2im(c: &ConvSpec, cols: &[f32], image: &mut [f32], dims: [usize; 3], out: [usize; 2]) {
    let step = c.stride[1];
    for_each_row(c, dims, out, |start, inside| {
        let Some((pixel, lo, hi)) = inside else { return };
        let row = &cols[start + lo..start + hi];
        if step == 1 {
            image[pixel..pixel + row.len()].iter_mut().zip(row).for_each(|(v, c)| *v += c);
        } else {
            row.iter().enumerate().for_each(|(i, c)| image[pixel + i * step] += c);
        }
    });
}

/// Calls `row(start, inside)` for every output row of every kernel tap of `c` on a
/// `[channels, h, w]` image: the row is columns `start..start + ow` of the
/// `[channels · kh · kw, oh · ow]` column matrix, and `inside` is `Some((pixel, lo, hi))` when
/// its columns `lo..hi` take the image values at `pixel, pixel + stride, …` (the rest fall in
/// the padding), `None` when all of them do.
fn for_each_row(
    c: &ConvSpec,
    [channels, h, w]: [usize; 3],
    [oh, ow]: [usize; 2],
    mut row: impl FnMut(usize, Option<(usize, usize, usize)>),
) {
    let (kh, kw) = (c.kernel[0], c.kernel[1]);
    let (step, pad) = (c.stride[1], c.pads[1]);
    for ci in 0..channels {
        for ky in 0..kh {
            for kx in 0..kw {
                let first = ((ci * kh + ky) * kw + kx) * oh * ow;
                // Output column ox reads image column ox · step + offset − pad, inside for lo ≤ ox < hi.
                let offset = kx * c.dilation[1];
                let lo = pad.saturating_sub(offset).div_ceil(step).min(ow);
                let hi = (w + pad).saturating_sub(offset).div_ceil(step).min(ow);
                for oy in 0..oh {
                    let iy = (oy * c.stride[0] + ky * c.dilation[0]).checked_sub(c.pads[0]).filter(|&y| y < h);
                    let inside =
                        iy.filter(|_| lo < hi).map(|iy| ((ci * h + iy) * w + lo * step + offset - pad, lo, hi));
                    row(first + oy * ow, inside);
                }
            }
        }
    }
}

thread_local! {
    /// Each thread's column matrix, reused across convolutions (its size is the largest seen).
    static COLUMNS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `f` with a scratch buffer of `len` values of this thread (their contents are arbitrary).
fn with_columns<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    COLUMNS.with_borrow_mut(|cols| {
        if cols.len() < len {
            cols.resize(len, 0.0);
        }
        f(&mut cols[..len])
    })
}

/// Whether `c`'s column matrix is its input itself (a 1x1 kernel, stride 1, no padding).
fn is_pointwise(c: &ConvSpec) -> bool {
    c.kernel == [1, 1] && c.stride == [1, 1] && c.pads == [0; 4]
}

pub(crate) fn conv_forward(
    c: &ConvSpec,
    x: &[f32],
    input: &[usize],
    n: usize,
    w: &[f32],
    b: &[f32],
    output: &[usize],
) -> Vec<f32> {
    let (per_in, per_out) = (input.iter().product::<usize>(), output.iter().product::<usize>());
    let (cin, cout, taps) = (c.in_channels / c.groups, c.out_channels / c.groups, c.kernel[0] * c.kernel[1]);
    let ohw = output[1] * output[2];
    let mut y = vec![0.0f32; n * per_out];
    let pointwise = is_pointwise(c);
    y.par_chunks_mut(per_out).zip(x.par_chunks(per_in)).for_each(|(y, image)| {
        let k = cin * taps;
        with_columns(if pointwise { 0 } else { k * ohw }, |cols| {
            for g in 0..c.groups {
                let group = &image[g * cin * input[1] * input[2]..][..cin * input[1] * input[2]];
                if !pointwise {
                    im2col(c, group, cols, [cin, input[1], input[2]], [output[1], output[2]]);
                }
                let weights = &w[g * cout * k..][..cout * k];
                matmul(
                    &mut y[g * cout * ohw..][..cout * ohw],
                    Layout2::row_major(cout, ohw),
                    weights,
                    Layout2::row_major(cout, k),
                    if pointwise { group } else { &*cols },
                    Layout2::row_major(k, ohw),
                    false,
                    1,
                );
            }
        });
        if !b.is_empty() {
            y.chunks_exact_mut(ohw).zip(b).for_each(|(plane, &b)| plane.iter_mut().for_each(|v| *v += b));
        }
    });
    y
}

pub(crate) fn conv_input_grad(
    c: &ConvSpec,
    input: &[usize],
    n: usize,
    w: &[f32],
    dy: &[f32],
    output: &[usize],
) -> Vec<f32> {
    let (per_in, per_out) = (input.iter().product::<usize>(), output.iter().product::<usize>());
    let (cin, cout, taps) = (c.in_channels / c.groups, c.out_channels / c.groups, c.kernel[0] * c.kernel[1]);
    let ohw = output[1] * output[2];
    let mut dx = vec![0.0f32; n * per_in];
    let pointwise = is_pointwise(c);
    dx.par_chunks_mut(per_in).zip(dy.par_chunks(per_out)).for_each(|(dx, dy)| {
        let k = cin * taps;
        with_columns(if pointwise { 0 } else { k * ohw }, |cols| {
            for g in 0..c.groups {
                let weights = &w[g * cout * k..][..cout * k];
                let grad = &dy[g * cout * ohw..][..cout * ohw];
                let group = &mut dx[g * cin * input[1] * input[2]..][..cin * input[1] * input[2]];
                matmul(
                    if pointwise { &mut *group } else { &mut *cols },
                    Layout2::row_major(k, ohw),
                    weights,
                    Layout2::row_major(cout, k).t(),
                    grad,
                    Layout2::row_major(cout, ohw),
                    false,
                    1,
                );
                if !pointwise {
                    col2im(c, cols, group, [cin, input[1], input[2]], [output[1], output[2]]);
                }
            }
        });
    });
    dx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph_reference::zoo::{random_weights, zoo};
    use rand::{Rng, SeedableRng};

    /// Largest |a − b| relative to the largest |b|.
    fn relative(a: &[f32], b: &[f64]) -> f64 {
        let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-12);
        a.iter().zip(b).map(|(&x, y)| (f64::from(x) - y).abs()).fold(0.0, f64::max) / scale
    }

    #[test]
    fn the_walk_matches_the_float64_reference_on_every_op() {
        let graph = zoo();
        let weights = random_weights(&graph, 3);
        let model = GraphModel::new(&graph, &weights).expect("weights");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let n = 3;
        let x: Vec<f64> = (0..n * 2 * 81).map(|_| rng.random_range(-1.0..1.0)).collect();
        let seed: Vec<f64> = (0..n * 3).map(|_| rng.random_range(-1.0..1.0)).collect();
        let reference = crate::graph_reference::forward(&graph, &weights, &x, n).expect("reference");
        let gradient = crate::graph_reference::input_gradient(&graph, &weights, &reference, &seed).expect("reference");
        let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let seed32: Vec<f32> = seed.iter().map(|&v| v as f32).collect();
        let ours = forward(&model, &x32, n).expect("forward");
        for (k, node) in graph.nodes.iter().enumerate() {
            let error = relative(&ours.values[k + 1], &reference.values[k + 1]);
            assert!(error < 1e-5, "{}: forward off by {error:e}", node.name);
        }
        let ours_gradient = input_gradient(&model, &ours, &seed32, ReluMode::Standard).expect("backward");
        let error = relative(&ours_gradient, &gradient);
        assert!(error < 1e-5, "input gradient off by {error:e}");
        // The gradient at a node: the graph from there on, fed that node's value.
        let at = graph.resolve("concat").expect("node") + 1;
        let partial = backward_to(&model, &ours, at, &seed32, ReluMode::Standard).expect("to a node");
        assert_eq!(partial.len(), ours.values[at].len());
        assert!(partial.iter().any(|&g| g != 0.0));
    }

    /// A forward for gradients empties what the input gradient does not read, and the gradient
    /// is the full forward's, bit for bit, under every ReLU rule; so is a forward taking its first
    /// values from another.
    #[test]
    fn a_forward_for_gradients_keeps_only_what_they_read_and_gives_the_same_gradients() {
        let graph = zoo();
        let weights = random_weights(&graph, 3);
        let model = GraphModel::new(&graph, &weights).expect("weights");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let n = 2;
        let x: Vec<f32> = (0..n * 2 * 81).map(|_| rng.random_range(-1.0..1.0)).collect();
        let seed: Vec<f32> = (0..n * 3).map(|_| rng.random_range(-1.0..1.0)).collect();
        let full = forward(&model, &x, n).expect("forward");
        let lean = forward_for_gradient(&model, &x, n, &[]).expect("lean");
        let emptied: Vec<&str> = (1..lean.values.len())
            .filter(|&v| lean.values[v].is_empty())
            .map(|v| graph.nodes[v - 1].name.as_str())
            .collect();
        // The stem's output only feeds a batch norm; the batch norm's feeds a GELU, which reads it.
        assert!(emptied.contains(&"stem") && !emptied.contains(&"bn"), "{emptied:?}");
        assert_eq!(lean.output(), full.output());
        let from = forward_from(&model, &full, graph.resolve("add").expect("add"), true).expect("from");
        for relu in [ReluMode::Standard, ReluMode::Guided, ReluMode::Deconv] {
            let want = input_gradient(&model, &full, &seed, relu).expect("full");
            assert_eq!(input_gradient(&model, &lean, &seed, relu).expect("lean"), want, "{relu:?}");
            assert_eq!(input_gradient(&model, &from, &seed, relu).expect("from"), want, "{relu:?}");
        }
    }

    /// The rows of `for_each_row` hold the taps of the definition, `ix = ox · stride + kx ·
    /// dilation − pad` inside the image, for every geometry up to these sizes (uneven padding
    /// larger than the kernel included), and col2im is im2col's adjoint.
    #[test]
    fn im2col_takes_every_tap_of_the_definition_and_col2im_is_its_adjoint() {
        let [channels, h, w] = [2, 5, 7];
        let image: Vec<f32> = (0..channels * h * w).map(|i| i as f32 + 1.0).collect();
        for (k, s, d) in geometries() {
            for pads in [[0, 0, 0, 0], [1, 2, 0, 1], [3, 0, 2, 4]] {
                let c = ConvSpec {
                    in_channels: channels,
                    out_channels: 1,
                    kernel: [k, k + 1],
                    stride: [s, s + 1],
                    pads,
                    dilation: [d, d],
                    groups: 1,
                    bias: false,
                };
                let extent = |size: usize, pad: usize, kernel: usize, stride: usize| {
                    (size + pad).checked_sub(d * (kernel - 1) + 1).map(|span| span / stride + 1)
                };
                let (Some(oh), Some(ow)) =
                    (extent(h, pads[0] + pads[2], k, s), extent(w, pads[1] + pads[3], k + 1, s + 1))
                else {
                    continue;
                };
                let mut expected = vec![0.0f32; channels * k * (k + 1) * oh * ow];
                for ci in 0..channels {
                    for (ky, kx) in (0..k).flat_map(|ky| (0..k + 1).map(move |kx| (ky, kx))) {
                        for (oy, ox) in (0..oh).flat_map(|oy| (0..ow).map(move |ox| (oy, ox))) {
                            let iy = (oy * s + ky * d).checked_sub(pads[0]).filter(|&y| y < h);
                            let ix = (ox * (s + 1) + kx * d).checked_sub(pads[1]).filter(|&x| x < w);
                            if let (Some(iy), Some(ix)) = (iy, ix) {
                                expected[((ci * k + ky) * (k + 1) + kx) * oh * ow + oy * ow + ox] =
                                    image[(ci * h + iy) * w + ix];
                            }
                        }
                    }
                }
                // Whatever the buffer held before, every value is written.
                let mut cols = vec![f32::NAN; expected.len()];
                im2col(&c, &image, &mut cols, [channels, h, w], [oh, ow]);
                assert_eq!(cols, expected, "kernel {k}, stride {s}, dilation {d}, pads {pads:?}");
                // <im2col(x), y> = <x, col2im(y)> for y = the column indices.
                let y: Vec<f32> = (0..cols.len()).map(|i| (i % 13) as f32).collect();
                let mut back = vec![0.0f32; image.len()];
                col2im(&c, &y, &mut back, [channels, h, w], [oh, ow]);
                let left: f64 = cols.iter().zip(&y).map(|(&a, &b)| f64::from(a * b)).sum();
                let right: f64 = image.iter().zip(&back).map(|(&a, &b)| f64::from(a * b)).sum();
                assert_eq!(left, right, "kernel {k}, stride {s}, dilation {d}, pads {pads:?}");
            }
        }
    }

    /// Kernel sizes, strides and dilations 1 to 3.
    fn geometries() -> impl Iterator<Item = (usize, usize, usize)> {
        (1..4).flat_map(|k| (1..4).flat_map(move |s| (1..4).map(move |d| (k, s, d))))
    }
}
