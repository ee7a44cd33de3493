//! The float32 walk of a [`Graph`]: a forward that keeps every node's output (or, for an input
//! gradient, only what it reads: [`forward_for_gradient`]), and the input gradient of
//! `Σ seed ⊙ output` with the ReLU backward replaced per call (standard, guided, deconvnet), as
//! attribution methods need, or its sums over runs of inputs ([`input_gradient_sums`]:
//! integrated gradients' steps). Images are channels-last (NHWC) inside the walk, as the
//! project's kernels take them (`ops/nhwc.rs`, `ops/nhwc_windows.rs`): a convolution is
//! im2col + gemm over a chunk of images, a max pooling keeps its argmax; inputs, input
//! gradients and the values read by name ([`Forward::nchw`]) are NCHW. Square stride-1
//! convolutions and non-overlapping max poolings take `ConvNhwc` and `PoolNhwc`, and a
//! convolution whose output only a ReLU and such a pooling read gets its input gradient from
//! the pooled positions alone (`ConvNhwc::input_grad_routed`); every other window takes
//! `nhwc_windows.rs`. Each product runs on a fixed split of the images, so results do not
//! depend on the thread count. The gradient at any node is available ([`backward_to`]) for
//! class activation maps at a named layer, and a cascade stage's forward can start from the
//! trained model's ([`forward_from`]).
//!
//! The walk is checked against the float64 reference (`graph_reference.rs`) and against
//! candle's autograd on the presets (`tests/graph_engine.rs`); `sanity_attribution` runs every
//! method on it. docs/performance.md ("A ResNet") has its speed.

use crate::error::{ModelError, Result};
use crate::graph::{ConvSpec, Graph, GraphOp, PoolSpec};
use crate::ops::ReluMode;
use crate::ops::linear::{forward_values, input_grad_values};
use crate::ops::nhwc::{
    ConvNhwc, PoolNhwc, global_average, global_average_adjoint, reorder_conv_weights, segment_starts, transpose_images,
    zeros,
};
use crate::ops::nhwc_windows::{AverageWindows, StridedConv, max_pool, max_pool_backward};
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
    /// models of a cascade where their tensors are: [`GraphModel::sharing`]); a convolution's
    /// weight reordered once as its kernels multiply it (`ops::nhwc::reorder_conv_weights`).
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

    /// Whether node `k`'s parameters are `base`'s very values.
    fn same_parameters(&self, base: &GraphModel, k: usize) -> bool {
        let theirs = base.parameters.get(k).map_or(&[][..], Vec::as_slice);
        self.parameters[k].len() == theirs.len()
            && self.parameters[k].iter().zip(theirs).all(|(a, b)| Arc::ptr_eq(&a.1, &b.1))
    }

    /// How many of the first nodes compute what they compute in `base`: those before the first
    /// node with a parameter that is not `base`'s very values (as [`GraphModel::sharing`] shares
    /// them), for [`forward_from`].
    pub fn shared_with(&self, base: &GraphModel) -> usize {
        (0..self.parameters.len()).find(|&k| !self.same_parameters(base, k)).unwrap_or(self.parameters.len())
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
                            None => {
                                let values = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
                                match node.op {
                                    // Once, in the order the kernels multiply (`W'ᵀ`).
                                    GraphOp::Conv(c) if what == "weight" => {
                                        let [kh, kw] = c.kernel;
                                        let cg = c.in_channels / c.groups;
                                        Arc::from(reorder_conv_weights(&values, [c.out_channels, cg, kh, kw]))
                                    }
                                    _ => Arc::from(values),
                                }
                            }
                        };
                        Ok((what, values))
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self::with_parameters(graph, parameters))
    }

    /// `graph` with `parameters` (per node, by suffix; a convolution's weight reordered).
    pub(crate) fn with_parameters(graph: &'a Graph, parameters: Parameters) -> Self {
        Self { graph, parameters }
    }

    /// Convolution node `k`'s forward on `n` channels-last inputs `x`.
    fn conv_forward(&self, k: usize, c: &ConvSpec, x: &[f32], n: usize) -> Vec<f32> {
        let (input, output) = (self.graph.shape_of(self.graph.nodes[k].inputs[0]), &self.graph.nodes[k].shape);
        conv_forward(c, x, &input, n, self.param(k, "weight"), self.param(k, "bias"), output)
    }

    /// Convolution node `k`'s input gradient for `dy` of `rows` inputs.
    fn conv_input_grad(&self, k: usize, c: &ConvSpec, dy: &[f32], rows: usize) -> Vec<f32> {
        let (input, output) = (self.graph.shape_of(self.graph.nodes[k].inputs[0]), &self.graph.nodes[k].shape);
        conv_input_grad(c, &input, rows, self.param(k, "weight"), dy, output)
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

/// Every value of a forward: `values[0]` the input, `values[k + 1]` node `k`'s output, images
/// NHWC (see [`channels_last`]); per max-pooling node, the index within its image of the input
/// value each output took.
pub struct Forward {
    /// The inputs.
    pub n: usize,
    /// The values, each `[n, shape]` (NHWC for images).
    pub values: Vec<Arc<Vec<f32>>>,
    /// Per node, a max pooling's argmax indices.
    pub(crate) argmax: Vec<Option<Arc<Vec<u32>>>>,
}

impl Forward {
    /// The graph's output (the last node's), `[n, classes]`.
    pub fn output(&self) -> &[f32] {
        self.values.last().map_or(&[], |v| v.as_slice())
    }

    /// Value `v` of `graph` (0 the input, `k + 1` node `k`'s output) in NCHW order.
    pub fn nchw(&self, graph: &Graph, v: usize) -> Vec<f32> {
        to_nchw(&graph.shape_of(v), &self.values[v])
    }
}

/// `(c, h·w)` when values of `shape` are stored channels-last and that order differs from
/// NCHW's (images with more than one channel and more than one position).
pub fn channels_last(shape: &[usize]) -> Option<(usize, usize)> {
    match *shape {
        [c, h, w] if c > 1 && h * w > 1 => Some((c, h * w)),
        _ => None,
    }
}

/// Walk values of `shape` in NCHW order.
pub fn to_nchw(shape: &[usize], values: &[f32]) -> Vec<f32> {
    match channels_last(shape) {
        Some((c, hw)) => transpose_images(values, hw, c),
        None => values.to_vec(),
    }
}

/// NCHW values of `shape` in the walk's order.
pub fn from_nchw(shape: &[usize], values: &[f32]) -> Vec<f32> {
    match channels_last(shape) {
        Some((c, hw)) => transpose_images(values, c, hw),
        None => values.to_vec(),
    }
}

/// The forward of `model` on `n` NCHW inputs `x`.
pub fn forward(model: &GraphModel, x: &[f32], n: usize) -> Result<Forward> {
    let input = input_values(model, x, n)?;
    Ok(evaluate(model, Forward { n, values: vec![input], argmax: Vec::new() }, None))
}

/// `x` (`n` NCHW inputs of `model`) in the walk's order.
pub(crate) fn input_values(model: &GraphModel, x: &[f32], n: usize) -> Result<Arc<Vec<f32>>> {
    let per: usize = model.graph.input.iter().product();
    if x.len() != n * per {
        return Err(ModelError::BadInput(format!(
            "{} input values for {n} inputs of shape {:?}",
            x.len(),
            model.graph.input
        )));
    }
    Ok(Arc::new(from_nchw(&model.graph.input, x)))
}

/// [`forward`] keeping only what an input gradient ([`backward_to`] the input) reads, the
/// output, and the values `keep` marks: every other value is emptied once the nodes that read
/// it are evaluated (a ResNet's convolution and batch norm outputs: the forward's peak memory
/// is about halved). `keep` has one entry per value or is empty.
pub fn forward_for_gradient(model: &GraphModel, x: &[f32], n: usize, keep: &[bool]) -> Result<Forward> {
    let input = input_values(model, x, n)?;
    Ok(evaluate(model, Forward { n, values: vec![input], argmax: Vec::new() }, Some(keep)))
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
    let shared = shared.min(model.graph.nodes.len());
    let start = Forward { n: base.n, values: base.values[..=shared].to_vec(), argmax: base.argmax[..shared].to_vec() };
    Ok(evaluate(model, start, for_gradient.then_some(&[][..])))
}

/// Whether the input gradient reads value `v` of `graph`: a ReLU's output (its backward's
/// mask), the input of an elementwise op other than ReLU, the output.
fn gradient_reads(graph: &Graph, v: usize) -> bool {
    let output = v == graph.nodes.len();
    let relu = v > 0 && graph.nodes[v - 1].op == GraphOp::Relu;
    let read = graph.nodes.iter().any(|node| {
        node.inputs.contains(&v)
            && matches!(
                node.op,
                GraphOp::Sigmoid | GraphOp::Tanh | GraphOp::Gelu | GraphOp::LeakyRelu { .. } | GraphOp::Scale { .. }
            )
    });
    // A pooling over a ReLU keeps its output: the ReLU's rule applies to the pooled values
    // (every max pooling keeps its argmax besides its values).
    let pooled = v > 0 && pool_over_relu(graph, v - 1, 0).is_some();
    output || relu || read || pooled
}

/// `start` (the input and the first nodes' outputs) completed with the outputs of the
/// remaining nodes of `model`. With `keep` (see [`forward_for_gradient`]), a value the input
/// gradient does not read is emptied after the last node that reads it.
fn evaluate(model: &GraphModel, start: Forward, keep: Option<&[bool]>) -> Forward {
    let graph = model.graph;
    let Forward { n, mut values, mut argmax } = start;
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
    // For gradients, a ReLU that only a non-overlapping max pooling reads is computed by the
    // pooling (`PoolNhwc::relu_first`, the same values and argmax): its output stays empty.
    // Not a ReLU evaluated before this call (a stage's pooling reads the shared ReLU output).
    let kept = |v: usize| keep.is_some_and(|keep| keep.get(v).copied().unwrap_or(false));
    let evaluated = values.len();
    let fused: Vec<bool> = (0..graph.nodes.len())
        .map(|r| {
            let pooled = r + 1 < graph.nodes.len() && pool_over_relu(graph, r + 1, 0).is_some();
            keep.is_some() && r + 1 >= evaluated && !kept(r + 1) && pooled
        })
        .collect();
    for r in (0..fused.len()).filter(|&r| fused[r]) {
        last_reader[graph.nodes[r].inputs[0]] = Some(r + 1);
    }
    for (k, node) in graph.nodes.iter().enumerate().skip(values.len() - 1) {
        if fused[k] {
            values.push(Arc::new(Vec::new()));
            argmax.push(None);
            continue;
        }
        let fused_input = k > 0 && fused[k - 1];
        let input = if fused_input { graph.nodes[k - 1].inputs[0] } else { node.inputs[0] };
        let input_shape = graph.shape_of(node.inputs[0]);
        let x = &values[input];
        let same_order =
            node.op == GraphOp::Identity || (node.op == GraphOp::Flatten && channels_last(&input_shape).is_none());
        if same_order {
            // The same values: shared, not copied.
            values.push(Arc::clone(x));
            argmax.push(None);
            continue;
        }
        let (y, indices) = node_forward(model, k, x, &values, n, fused_input);
        values.push(Arc::new(y));
        argmax.push(indices);
        for &v in if fused_input { &graph.nodes[k - 1].inputs } else { &node.inputs } {
            if droppable[v] && last_reader[v] == Some(k) {
                values[v] = Arc::new(Vec::new());
            }
        }
    }
    Forward { n, values, argmax }
}

/// Node `k`'s output for `n` inputs `x` (its first input's values, or with `relu_first` the
/// values under a ReLU it computes itself: a max pooling's fused ReLU), the other values in
/// `values`; and a max pooling's argmax.
pub(crate) fn node_forward(
    model: &GraphModel,
    k: usize,
    x: &[f32],
    values: &[Arc<Vec<f32>>],
    n: usize,
    relu_first: bool,
) -> (Vec<f32>, Option<Arc<Vec<u32>>>) {
    let graph = model.graph;
    let node = &graph.nodes[k];
    let input_shape = graph.shape_of(node.inputs[0]);
    let mut indices = None;
    let y = match node.op {
        GraphOp::Conv(c) => model.conv_forward(k, &c, x, n),
        GraphOp::Linear { in_features, out_features, .. } => {
            linear_forward(x, n, in_features, out_features, model.param(k, "weight"), model.param(k, "bias"))
        }
        GraphOp::BatchNorm { eps, .. } => {
            let (scale, shift) = model.batch_norm(k, eps);
            per_channel(x, scale.len(), |c, v| v * scale[c] + shift[c])
        }
        GraphOp::MaxPool(p) => {
            let (y, idx) = match square_pool(&p, &input_shape, &node.shape) {
                Some(pool) => PoolNhwc { relu_first, ..pool }.forward(x),
                None => max_pool(&p, x, &input_shape, &node.shape),
            };
            indices = Some(Arc::new(idx));
            y
        }
        GraphOp::AvgPool { pool, count_include_pad } => {
            AverageWindows::pool(&pool, count_include_pad, &input_shape, &node.shape).forward(x)
        }
        GraphOp::AdaptiveAvgPool { out } => AverageWindows::adaptive(out, &input_shape).forward(x),
        GraphOp::GlobalAvgPool { .. } => global_average(x, input_shape[1..].iter().product(), input_shape[0]),
        GraphOp::Add => zip_map(x, &values[node.inputs[1]], |a, b| a + b),
        GraphOp::Concat => {
            let parts: Vec<(&[f32], usize)> =
                node.inputs.iter().map(|&v| (values[v].as_slice(), graph.shape_of(v)[0])).collect();
            concat(&parts, n, &node.shape)
        }
        GraphOp::Flatten => {
            let (c, hw) = channels_last(&input_shape).unwrap_or((1, input_shape.iter().product()));
            transpose_images(x, hw, c)
        }
        GraphOp::Relu => zip_map(x, x, |v, _| if v > 0.0 { v } else { 0.0 }),
        op => zip_map(x, x, |v, _| elementwise(op, v).0),
    };
    (y, indices)
}

/// `∂(Σ seed ⊙ output)/∂x`, NCHW, with ReLU backward `relu`.
pub fn input_gradient(model: &GraphModel, forward: &Forward, seed: &[f32], relu: ReluMode) -> Result<Vec<f32>> {
    let g = backward(model, forward, 0, seed, relu, None)?;
    Ok(to_nchw(&model.graph.input, &g))
}

/// [`input_gradient`] summed over runs of consecutive inputs: `[segments.len(), c, h, w]`, row
/// `s` the sum of the gradients of the `segments[s]` inputs after those of the earlier
/// segments (integrated gradients' steps, with the step weights in the seed). The nodes below
/// the first whose backward depends on its input (a ReLU, a pooling's argmax, a nonlinearity)
/// are linear maps, the same for every input: the sums are taken there and those nodes run
/// once per segment.
pub fn input_gradient_sums(
    model: &GraphModel,
    forward: &Forward,
    seed: &[f32],
    relu: ReluMode,
    segments: &[usize],
) -> Result<Vec<f32>> {
    if segments.iter().sum::<usize>() != forward.n || segments.contains(&0) {
        return Err(ModelError::BadInput(format!("segments {segments:?} do not split {} inputs", forward.n)));
    }
    let g = backward(model, forward, 0, seed, relu, Some(segments))?;
    Ok(to_nchw(&model.graph.input, &g))
}

/// `∂(Σ seed ⊙ output)/∂v` for value `v` (0 the input, `k + 1` node `k`'s output), in the
/// walk's order (NCHW through [`to_nchw`]): the gradient at a layer that a class activation map
/// weights its activations with.
pub fn backward_to(model: &GraphModel, forward: &Forward, v: usize, seed: &[f32], relu: ReluMode) -> Result<Vec<f32>> {
    backward(model, forward, v, seed, relu, None)
}

/// [`backward_to`], summed over `segments` of the inputs when given.
fn backward(
    model: &GraphModel,
    forward: &Forward,
    v: usize,
    seed: &[f32],
    relu: ReluMode,
    segments: Option<&[usize]>,
) -> Result<Vec<f32>> {
    if seed.len() != forward.output().len() {
        return Err(ModelError::BadInput(format!(
            "a seed of {} values for {} outputs",
            seed.len(),
            forward.output().len()
        )));
    }
    let graph = model.graph;
    // Below this node every backward is linear and input-independent.
    let linear_below = graph.nodes.iter().position(|node| !node.op.is_linear()).unwrap_or(graph.nodes.len());
    let mut summed = false;
    let mut grads: Vec<Option<Vec<f32>>> = vec![None; forward.values.len()];
    grads[forward.values.len() - 1] = Some(seed.to_vec());
    let mut k = graph.nodes.len();
    while k > v {
        k -= 1;
        if let Some(segments) = segments.filter(|_| !summed && k < linear_below) {
            sum_pending(&mut grads[..k + 2], segments);
            summed = true;
        }
        let Some(dy) = grads[k + 1].take() else { continue };
        if let Some((pool, r)) = pool_over_relu(graph, k, v) {
            // The pooling routes each output's gradient to its argmax, where the ReLU's rule
            // applies (its output there is the pooled value): the ReLU node is passed over.
            let (idx, pooled) = (forward.argmax[k].as_deref().expect("a max pooling's argmax"), &forward.values[k + 1]);
            let rule = Relu(relu);
            let rule = |y, g| rule.rule_one(y, g);
            let below = graph.nodes[r].inputs[0];
            let (at, g) = match segments.filter(|_| !summed && linear_below == r) {
                Some(segments) => {
                    // The lowest input-dependent backward: the sums are taken here.
                    sum_pending(&mut grads[..r + 1], segments);
                    summed = true;
                    (below, pool.backward_sums(&dy, idx, pooled, rule, segments))
                }
                None => match routed_conv(model, below, v, forward.n).filter(|(_, c)| c.takes_routed_gradients()) {
                    Some((q, conv)) => {
                        let values = pool.routed(&dy, pooled, rule);
                        let weights = model.param(q, "weight");
                        (graph.nodes[q].inputs[0], conv.input_grad_routed(&values, idx, &pool, weights))
                    }
                    None => (below, pool.backward(&dy, idx, pooled, rule)),
                },
            };
            accumulate(&mut grads[at], g);
            // The ReLU's (and a routed convolution's) output holds no gradient: passed over.
            k = r;
            continue;
        }
        for (input, dx) in node_backward(model, forward, k, dy, relu) {
            accumulate(&mut grads[input], dx);
        }
    }
    let rows = if summed { segments.map_or(forward.n, <[usize]>::len) } else { forward.n };
    let g = grads[v].take().unwrap_or_else(|| vec![0.0; rows * graph.shape_of(v).iter().product::<usize>()]);
    match segments.filter(|_| !summed) {
        Some(segments) => Ok(segment_sums(&g, segments)),
        None => Ok(g),
    }
}

/// Every gradient held in `slots` replaced by its [`segment_sums`].
fn sum_pending(slots: &mut [Option<Vec<f32>>], segments: &[usize]) {
    for slot in slots.iter_mut().flatten() {
        *slot = segment_sums(slot, segments);
    }
}

/// The sums of the rows of `g` over runs of `segments[s]` consecutive rows (in row order).
fn segment_sums(g: &[f32], segments: &[usize]) -> Vec<f32> {
    let rows: usize = segments.iter().sum();
    let len = g.len() / rows.max(1);
    let mut sums = zeros(segments.len() * len);
    sums.par_chunks_mut(len.max(1)).zip(segment_starts(segments).par_iter().zip(segments)).for_each(
        |(sum, (&start, &count))| {
            for row in g[start * len..(start + count) * len].chunks_exact(len) {
                sum.iter_mut().zip(row).for_each(|(s, &v)| *s += v);
            }
        },
    );
    sums
}

/// Node `k` as a non-overlapping max pooling (`PoolNhwc`, ReLU fused) over the ReLU node
/// `r = k − 1` that only it reads, where the gradient is not asked for at the ReLU's output
/// (`v`).
pub(crate) fn pool_over_relu(graph: &Graph, k: usize, v: usize) -> Option<(PoolNhwc, usize)> {
    let GraphOp::MaxPool(p) = graph.nodes[k].op else { return None };
    let r = graph.nodes[k].inputs[0].checked_sub(1)?;
    let below = graph.nodes[r].inputs[0];
    let apart = r + 1 != k || p.stride[0] < p.kernel[0];
    if apart || graph.nodes[r].op != GraphOp::Relu || v > below || !sole_reader(graph, r + 1, k) {
        return None;
    }
    let pool = square_pool(&p, &graph.shape_of(r + 1), &graph.nodes[k].shape)?;
    Some((PoolNhwc { relu_first: true, ..pool }, r))
}

/// Value `value` as the output of a square stride-1 convolution node `q` that only the ReLU
/// right after it (node `value`) reads, on `n` inputs, where the gradient is not asked for at
/// its output (`v`): its gradients can come from the pooled positions alone (where that pays
/// for its input gradient: `ConvNhwc::takes_routed_gradients`). (A pooling is never reached
/// once sums are taken: it is input-dependent.)
pub(crate) fn routed_conv(model: &GraphModel, value: usize, v: usize, n: usize) -> Option<(usize, ConvNhwc)> {
    let graph = model.graph;
    let q = value.checked_sub(1)?;
    let GraphOp::Conv(c) = graph.nodes[q].op else { return None };
    let input = graph.nodes[q].inputs[0];
    // The ReLU is the next node.
    if v > input || !sole_reader(graph, value, value) {
        return None;
    }
    Some((q, square_conv(&c, &graph.shape_of(input), n, &graph.nodes[q].shape)?))
}

/// Whether node `reader` is the only node that reads value `value`.
fn sole_reader(graph: &Graph, value: usize, reader: usize) -> bool {
    graph.nodes.iter().enumerate().all(|(j, node)| j == reader || !node.inputs.contains(&value))
}

/// Node `k`'s share of the backward: for output gradient `dy` (any number of rows), the
/// gradient of each of its inputs (value index, values), with ReLU backward `relu`.
// Long: one arm per op, as graph_reference.rs's input_gradient.
pub(crate) fn node_backward(
    model: &GraphModel,
    forward: &Forward,
    k: usize,
    dy: Vec<f32>,
    relu: ReluMode,
) -> Vec<(usize, Vec<f32>)> {
    let graph = model.graph;
    let node = &graph.nodes[k];
    let input_shape = graph.shape_of(node.inputs[0]);
    let x = &forward.values[node.inputs[0]];
    let (in_len, out_len) = (input_shape.iter().product::<usize>(), node.shape.iter().product::<usize>());
    let rows = dy.len() / out_len.max(1);
    let dx = match node.op {
        GraphOp::Conv(c) => model.conv_input_grad(k, &c, &dy, rows),
        GraphOp::Linear { in_features, out_features, .. } => {
            input_grad_values(&dy, model.param(k, "weight"), rows, in_features, out_features)
        }
        GraphOp::BatchNorm { eps, .. } => {
            let (scale, _) = model.batch_norm(k, eps);
            per_channel(&dy, scale.len(), |c, g| g * scale[c])
        }
        GraphOp::Relu => {
            let mut g = dy;
            Relu(relu).backward_in_place(&mut g, &forward.values[k + 1]);
            g
        }
        GraphOp::MaxPool(_) => {
            let idx = forward.argmax[k].as_ref().expect("a forward keeps every max pooling's argmax");
            max_pool_backward(&dy, idx, in_len, out_len)
        }
        GraphOp::AvgPool { pool, count_include_pad } => {
            AverageWindows::pool(&pool, count_include_pad, &input_shape, &node.shape).backward(&dy)
        }
        GraphOp::AdaptiveAvgPool { out } => AverageWindows::adaptive(out, &input_shape).backward(&dy),
        GraphOp::GlobalAvgPool { .. } => global_average_adjoint(&dy, input_shape[1..].iter().product(), input_shape[0]),
        GraphOp::Add => return vec![(node.inputs[1], dy.clone()), (node.inputs[0], dy)],
        GraphOp::Concat => {
            let parts: Vec<(usize, usize)> = node.inputs.iter().map(|&v| (v, graph.shape_of(v)[0])).collect();
            return split(&dy, rows, &node.shape, &parts);
        }
        GraphOp::Flatten => match channels_last(&input_shape) {
            Some((c, hw)) => transpose_images(&dy, c, hw),
            None => dy,
        },
        GraphOp::Identity => dy,
        op => zip_map(x, &dy, |v, g| g * elementwise(op, v).1),
    };
    vec![(node.inputs[0], dx)]
}

/// `[n, positions, Σ c_i]` from inputs `[n, positions, c_i]` (channels-last concatenation).
fn concat(parts: &[(&[f32], usize)], n: usize, shape: &[usize]) -> Vec<f32> {
    let total: usize = shape.iter().product();
    let positions = total / shape[0];
    let mut y = zeros(n * total);
    y.par_chunks_mut(total).enumerate().for_each(|(image, y)| {
        for (p, y) in y.chunks_exact_mut(shape[0]).enumerate() {
            let mut at = 0;
            for &(values, c) in parts {
                y[at..at + c].copy_from_slice(&values[(image * positions + p) * c..][..c]);
                at += c;
            }
        }
    });
    y
}

/// The adjoint of [`concat`]: each input's channels of `dy` `[rows, positions, Σ c_i]`.
fn split(dy: &[f32], rows: usize, shape: &[usize], parts: &[(usize, usize)]) -> Vec<(usize, Vec<f32>)> {
    let positions = shape.iter().product::<usize>() / shape[0];
    let mut offset = 0;
    let mut out = Vec::with_capacity(parts.len());
    for &(v, c) in parts {
        let mut part = zeros(rows * positions * c);
        part.par_chunks_mut(c).zip(dy.par_chunks(shape[0])).for_each(|(part, dy)| {
            part.copy_from_slice(&dy[offset..offset + c]);
        });
        out.push((v, part));
        offset += c;
    }
    out
}

/// `y = x Wᵀ + b` for `n` rows of `x` `[n, in]`, `W` `[out, in]` (no bias: `b` empty).
pub(crate) fn linear_forward(
    x: &[f32],
    n: usize,
    in_features: usize,
    out_features: usize,
    w: &[f32],
    b: &[f32],
) -> Vec<f32> {
    forward_values(x, w, &bias_or_zeros(b, out_features), n, in_features, out_features)
}

/// `b`, or `len` zeros for a layer without a bias.
fn bias_or_zeros(b: &[f32], len: usize) -> std::borrow::Cow<'_, [f32]> {
    if b.is_empty() { std::borrow::Cow::Owned(vec![0.0; len]) } else { std::borrow::Cow::Borrowed(b) }
}

pub(crate) fn accumulate(slot: &mut Option<Vec<f32>>, g: Vec<f32>) {
    match slot {
        Some(sum) => sum.par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK)).for_each(|(s, g)| {
            s.iter_mut().zip(g).for_each(|(s, g)| *s += g);
        }),
        None => *slot = Some(g),
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

/// `f(channel, value)` over channels-last values with `channels` innermost.
pub(crate) fn per_channel(x: &[f32], channels: usize, f: impl Fn(usize, f32) -> f32 + Sync) -> Vec<f32> {
    let mut y = zeros(x.len());
    let chunk = CHUNK.div_ceil(channels) * channels;
    y.par_chunks_mut(chunk).zip(x.par_chunks(chunk)).for_each(|(y, x)| {
        for (y, x) in y.chunks_exact_mut(channels).zip(x.chunks_exact(channels)) {
            for (c, (y, &v)) in y.iter_mut().zip(x).enumerate() {
                *y = f(c, v);
            }
        }
    });
    y
}

/// `c` as the square stride-1 kernel (`ConvNhwc`) where it is one: square kernel, equal
/// padding all round, no dilation, one group.
pub(crate) fn square_conv(c: &ConvSpec, input: &[usize], n: usize, output: &[usize]) -> Option<ConvNhwc> {
    let [k, kw] = c.kernel;
    let pad = c.pads[0];
    let square = k == kw && c.stride == [1, 1] && c.dilation == [1, 1] && c.groups == 1 && c.pads == [pad; 4];
    let conv = ConvNhwc::new(n, (input[0], input[1], input[2]), c.out_channels, k, pad);
    (square && [conv.oh, conv.ow] == [output[1], output[2]]).then_some(conv)
}

/// `p` as a non-padded square max pooling (`PoolNhwc`) where it is one.
fn square_pool(p: &PoolSpec, input: &[usize], output: &[usize]) -> Option<PoolNhwc> {
    let [k, kw] = p.kernel;
    let square = k == kw && p.stride[0] == p.stride[1] && p.pads == [0; 4] && input[1] >= k && input[2] >= k;
    let pool = square.then(|| PoolNhwc::new((input[0], input[1], input[2]), k, p.stride[0], false))?;
    ([pool.oh, pool.ow] == [output[1], output[2]]).then_some(pool)
}

/// Convolution `c` of `n` channels-last images `x` of shape `input` to `output`, with weights
/// `w` as `reorder_conv_weights` orders them.
pub(crate) fn conv_forward(
    c: &ConvSpec,
    x: &[f32],
    input: &[usize],
    n: usize,
    w: &[f32],
    b: &[f32],
    output: &[usize],
) -> Vec<f32> {
    let b = bias_or_zeros(b, c.out_channels);
    match square_conv(c, input, n, output) {
        Some(conv) => conv.forward(x, w, &b),
        None => StridedConv::new(n, c, input, output).forward(x, w, &b),
    }
}

/// The input gradient of convolution `c` (weights `w` reordered) for `dy` of `rows` images
/// (channels-last).
pub(crate) fn conv_input_grad(
    c: &ConvSpec,
    input: &[usize],
    rows: usize,
    w: &[f32],
    dy: &[f32],
    output: &[usize],
) -> Vec<f32> {
    match square_conv(c, input, rows, output) {
        Some(conv) => conv.input_grad(dy, w),
        None => StridedConv::new(rows, c, input, output).input_grad(dy, w),
    }
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
            let error = relative(&ours.nchw(&graph, k + 1), &reference.values[k + 1]);
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
}
