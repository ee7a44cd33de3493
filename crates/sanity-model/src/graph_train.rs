//! Training on the float32 graph walk: a forward in training mode (batch norms on the batch's
//! statistics, dropout with masks from the seeded stream) that keeps every value, the loss and
//! its gradient at the logits, and a backward that gives every weight and bias gradient, on the
//! channels-last kernels the attribution methods run (`ops/nhwc.rs`, `ops/nhwc_windows.rs`):
//!
//! ```text
//! convolution:  dW'ᵀ [o, (u, v, c)] = Σ dyᵀ × cols,   db = Σ dy,   dx = col2im(dy × W'ᵀ)
//! linear:       dW [out, in] = dyᵀ x,                 db = Σ dy,   dx = dy W
//! batch norm:   dγ = Σ dy x̂,  dβ = Σ dy,  dx = γ/σ · (dy − dβ/N − x̂ dγ/N)   (Ioffe & Szegedy 2015, §3)
//! dropout:      dx = dy ⊙ mask
//! ```
//!
//! A convolution under a ReLU and a non-overlapping max pooling takes its gradients from the
//! pooling's routed values (the ReLU computed by the pooling, as in the attribution walk's
//! forward for gradients): its weight gradient (`ConvNhwc::weight_grad_routed`), and its input
//! gradient where window rows are long (`ConvNhwc::input_grad_routed`). Every other op's input gradient is the attribution walk's
//! (`graph_engine::node_backward`).
//! Sums over the batch are taken in an order fixed by the batch alone (`ops/partial_sums.rs`,
//! products that never split their reduction), so a training gives the same bytes on any number
//! of threads. The gradients are checked against float64 finite differences of candle's forward
//! (`tests/training_gradients.rs`) and against PyTorch's (`tests/training_step.rs`).

use crate::architecture::Op;
use crate::error::{ModelError, Result};
use crate::graph::{Graph, GraphOp};
use crate::graph_candle::BATCH_NORM_MOMENTUM;
use crate::graph_engine::{
    Forward, GraphModel, accumulate, conv_input_grad, from_nchw, input_values, node_backward, node_forward,
    per_channel, pool_over_relu, routed_conv,
};
use crate::net::Net;
use crate::ops::ReluMode;
use crate::ops::linear::{bias_grad_values, input_grad_values, weight_grad_values};
use crate::ops::nhwc::{reorder_conv_weights, restore_conv_weights};
use crate::ops::nhwc_windows::StridedConv;
use crate::ops::relu::Relu;
use crate::weights::Weights;
use candle_core::{Device, Tensor};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::sync::Arc;

/// Rows per task of the batch-norm sums (fixed: the sums do not depend on the thread count).
const ROWS_PER_SUM: usize = 4096;

/// A network as the training walk runs it: its graph, and per node what training adds to the
/// inference graph (a dropout's probability, a batch norm's momentum).
pub struct TrainingGraph {
    /// The graph (a sequential stack's converted, with the same layer names).
    pub graph: Arc<Graph>,
    /// Per node, the drop probability of a dropout (an identity in inference).
    dropout: Vec<Option<f64>>,
    /// Per node, a batch norm's running-average weight of the batch statistics.
    momentum: Vec<f64>,
}

impl TrainingGraph {
    /// The training graph of `net`: a sequential stack's dropouts and batch-norm momenta come
    /// from its layers (node `k` is layer `k`); a graph's batch norms take PyTorch's 0.1.
    pub fn of(net: &Net) -> Result<Self> {
        match net {
            Net::Layers(arch) => {
                let graph = Arc::new(Graph::from_architecture(arch)?);
                let dropout =
                    arch.layers.iter().map(|l| if let Op::Dropout { p } = l.op { Some(p) } else { None }).collect();
                let momentum = arch
                    .layers
                    .iter()
                    .map(|l| if let Op::BatchNorm2d { momentum, .. } = l.op { momentum } else { BATCH_NORM_MOMENTUM })
                    .collect();
                Ok(Self { graph, dropout, momentum })
            }
            Net::Graph(graph) => {
                let nodes = graph.nodes.len();
                Ok(Self {
                    graph: Arc::clone(graph),
                    dropout: vec![None; nodes],
                    momentum: vec![BATCH_NORM_MOMENTUM; nodes],
                })
            }
        }
    }
}

/// A batch norm's batch statistics in a training forward.
struct BatchStatistics {
    /// `1 / sqrt(var + ε)` per channel (the variance biased, over the batch and positions).
    inv_std: Vec<f32>,
    /// `x̂ = (x − mean) / sqrt(var + ε)`, channels innermost.
    normalized: Vec<f32>,
    /// The updated running mean and (unbiased) running variance.
    running: [Vec<f32>; 2],
}

/// What a training forward keeps for the backward: every value, each batch norm's statistics,
/// each dropout's mask.
pub struct TrainForward {
    forward: Forward,
    statistics: Vec<Option<BatchStatistics>>,
    masks: Vec<Option<Vec<f32>>>,
}

impl TrainForward {
    /// The logits, `[n, outputs]`.
    pub fn logits(&self) -> &[f32] {
        self.forward.output()
    }

    /// Per batch-norm node, its updated running mean and variance (what the training writes
    /// into the model's buffers after the step).
    pub fn running_statistics(&self) -> impl Iterator<Item = (usize, &[Vec<f32>; 2])> {
        self.statistics.iter().enumerate().filter_map(|(k, s)| s.as_ref().map(|s| (k, &s.running)))
    }
}

/// The forward of `model` (on `training`'s graph) in training mode on `n` NCHW inputs `x`:
/// batch norms on the batch's statistics, each dropout's mask drawn from `rng` in NCHW order,
/// one `random::<f64>() < 1 − p` per value (kept values scaled by `1 / (1 − p)`), as candle's
/// training forward draws them.
pub fn train_forward(
    model: &GraphModel,
    training: &TrainingGraph,
    x: &[f32],
    n: usize,
    rng: &mut ChaCha8Rng,
) -> Result<TrainForward> {
    let graph = model.graph;
    let mut values = vec![input_values(model, x, n)?];
    let mut argmax = Vec::with_capacity(graph.nodes.len());
    let mut statistics = Vec::with_capacity(graph.nodes.len());
    let mut masks = Vec::with_capacity(graph.nodes.len());
    // A ReLU that only a non-overlapping max pooling reads is computed by the pooling (its
    // output stays empty), as in the attribution walk's forward for gradients.
    let fused: Vec<bool> = (0..graph.nodes.len())
        .map(|r| r + 1 < graph.nodes.len() && pool_over_relu(graph, r + 1, 0).is_some())
        .collect();
    for (k, node) in graph.nodes.iter().enumerate() {
        let relu_first = k > 0 && fused[k - 1];
        let x = Arc::clone(&values[if relu_first { graph.nodes[k - 1].inputs[0] } else { node.inputs[0] }]);
        let (mut stats, mut mask, mut indices) = (None, None, None);
        let y = match (node.op, training.dropout[k]) {
            _ if fused[k] => Vec::new(),
            (GraphOp::BatchNorm { channels, eps }, _) => {
                let s = batch_statistics(model, k, &x, channels, eps, training.momentum[k]);
                let (gamma, beta) = (model.param(k, "weight"), model.param(k, "bias"));
                let y = per_channel(&s.normalized, channels, |c, v| v * gamma[c] + beta[c]);
                stats = Some(s);
                y
            }
            (_, Some(p)) => {
                let keep = 1.0 - p;
                let scale = (1.0 / keep) as f32;
                let drawn: Vec<f32> =
                    (0..x.len()).map(|_| if rng.random::<f64>() < keep { scale } else { 0.0 }).collect();
                let m = from_nchw(&node.shape, &drawn);
                let y = x.iter().zip(&m).map(|(v, m)| v * m).collect();
                mask = Some(m);
                y
            }
            _ => {
                let (y, idx) = node_forward(model, k, &x, &values, n, relu_first);
                indices = idx;
                y
            }
        };
        values.push(Arc::new(y));
        argmax.push(indices);
        statistics.push(stats);
        masks.push(mask);
    }
    Ok(TrainForward { forward: Forward { n, values, argmax }, statistics, masks })
}

/// The batch statistics of batch-norm node `k` on `x` (channels innermost): mean and biased
/// variance over every row in float64 (PyTorch's CPU kernel accumulates in double), and the
/// running averages `(1 − m) running + m batch` with the unbiased variance.
fn batch_statistics(
    model: &GraphModel,
    k: usize,
    x: &[f32],
    channels: usize,
    eps: f64,
    momentum: f64,
) -> BatchStatistics {
    let rows = x.len() / channels;
    let sums = |f: &(dyn Fn(usize, f32) -> f64 + Sync)| -> Vec<f64> {
        channel_sums(rows, channels, 1, |r, s| {
            let row = &x[r * channels..(r + 1) * channels];
            s.iter_mut().zip(row).enumerate().for_each(|(c, (s, &v))| *s += f(c, v));
        })
    };
    let count = rows as f64;
    let mean: Vec<f64> = sums(&|_, v| f64::from(v)).into_iter().map(|s| s / count).collect();
    let var: Vec<f64> = sums(&|c, v| (f64::from(v) - mean[c]).powi(2)).into_iter().map(|s| s / count).collect();
    let inv_std: Vec<f32> = var.iter().map(|&v| (1.0 / (v + eps).sqrt()) as f32).collect();
    let normalized = per_channel(x, channels, |c, v| ((f64::from(v) - mean[c]) as f32) * inv_std[c]);
    let (old_mean, old_var) = (model.param(k, "running_mean"), model.param(k, "running_var"));
    let unbiased = count / (count - 1.0).max(1.0);
    let running_mean =
        old_mean.iter().zip(&mean).map(|(&o, &b)| ((1.0 - momentum) * f64::from(o) + momentum * b) as f32);
    let running_var =
        old_var.iter().zip(&var).map(|(&o, &b)| ((1.0 - momentum) * f64::from(o) + momentum * b * unbiased) as f32);
    BatchStatistics { inv_std, normalized, running: [running_mean.collect(), running_var.collect()] }
}

/// Per-channel float64 sums of `terms` quantities over `rows` rows of values with `channels`
/// innermost: `add(row, sums)` adds a row's terms (`sums[t · channels + c]`). Rows are summed in
/// chunks of [`ROWS_PER_SUM`] in parallel and the chunks' sums added in order, so the sums are
/// the same on any number of threads.
fn channel_sums(rows: usize, channels: usize, terms: usize, add: impl Fn(usize, &mut [f64]) + Sync) -> Vec<f64> {
    let partials: Vec<Vec<f64>> = (0..rows.div_ceil(ROWS_PER_SUM))
        .into_par_iter()
        .map(|chunk| {
            let mut s = vec![0.0f64; terms * channels];
            (chunk * ROWS_PER_SUM..((chunk + 1) * ROWS_PER_SUM).min(rows)).for_each(|r| add(r, &mut s));
            s
        })
        .collect();
    let mut sums = vec![0.0f64; terms * channels];
    for partial in partials {
        sums.iter_mut().zip(&partial).for_each(|(s, p)| *s += p);
    }
    sums
}

/// The mean loss of `logits` (`[n, outputs]`) against `labels` and its gradient at the logits:
/// binary cross-entropy with logits for a single logit (`max(z, 0) − z y + log(1 + e^−|z|)`,
/// gradient `(σ(z) − y) / n`), softmax cross-entropy otherwise (gradient
/// `(softmax(z) − onehot(y)) / n`), as PyTorch's `binary_cross_entropy_with_logits` and
/// `cross_entropy` with mean reduction; computed in float64.
pub fn loss_and_gradient(logits: &[f32], labels: &[usize], outputs: usize) -> (f64, Vec<f32>) {
    let n = labels.len().max(1) as f64;
    let mut gradient = vec![0.0f32; logits.len()];
    let mut loss = 0.0;
    for ((row, g), &label) in logits.chunks_exact(outputs).zip(gradient.chunks_exact_mut(outputs)).zip(labels) {
        if outputs == 1 {
            let (z, y) = (f64::from(row[0]), label as f64);
            loss += z.max(0.0) - z * y + (-z.abs()).exp().ln_1p();
            g[0] = ((1.0 / (1.0 + (-z).exp()) - y) / n) as f32;
        } else {
            let top = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
            let total: f64 = row.iter().map(|&v| (f64::from(v) - top).exp()).sum();
            let log_total = total.ln() + top;
            loss += log_total - f64::from(row[label]);
            for (j, (g, &v)) in g.iter_mut().zip(row).enumerate() {
                let p = (f64::from(v) - log_total).exp();
                *g = ((p - if j == label { 1.0 } else { 0.0 }) / n) as f32;
            }
        }
    }
    (loss / n, gradient)
}

/// Per node, the gradients of its trained parameters (by suffix: a convolution's weight in the
/// reordered layout the walk keeps, `W'ᵀ`), for the gradient `seed` at the logits.
pub type ParameterGradients = Vec<Vec<(&'static str, Vec<f32>)>>;

/// The gradient of `Σ seed ⊙ logits` with respect to every trained parameter (weights and
/// biases; not a batch norm's running statistics) of `model`, from the training forward `pass`.
// Long: one arm per op with parameters or a training-mode backward.
pub fn parameter_gradients(model: &GraphModel, pass: &TrainForward, seed: &[f32]) -> Result<ParameterGradients> {
    let graph = model.graph;
    let forward = &pass.forward;
    if seed.len() != forward.output().len() {
        return Err(ModelError::BadInput(format!(
            "a seed of {} values for {} logits",
            seed.len(),
            forward.output().len()
        )));
    }
    let n = forward.n;
    // Whether a value's gradient reaches a parameter (the input's and those of nodes below the
    // first parameter are never needed).
    let mut needed = vec![false; graph.nodes.len() + 1];
    for (k, node) in graph.nodes.iter().enumerate() {
        needed[k + 1] = !node.op.parameters().is_empty() || node.inputs.iter().any(|&v| needed[v]);
    }
    let mut grads: Vec<Option<Vec<f32>>> = vec![None; graph.nodes.len() + 1];
    grads[graph.nodes.len()] = Some(seed.to_vec());
    let mut out: ParameterGradients = vec![Vec::new(); graph.nodes.len()];
    // Per convolution node, the pooling node above it (over its ReLU) whose routed values give
    // its input gradient (`ConvNhwc::input_grad_routed`), and those values.
    let mut routed: Vec<Option<(usize, Vec<f32>)>> = vec![None; graph.nodes.len()];
    for k in (0..graph.nodes.len()).rev() {
        // A convolution whose gradients come from a pooling's routed values has no dense `dy`.
        let routed_here = routed[k].take();
        let dy = match (grads[k + 1].take(), &routed_here) {
            (Some(dy), _) => dy,
            (None, Some(_)) => Vec::new(),
            (None, None) => continue,
        };
        let node = &graph.nodes[k];
        let input = node.inputs[0];
        let x = &forward.values[input];
        let (input_shape, shape) = (graph.shape_of(input), &node.shape);
        let mut dx = None;
        if let Some((pool, r)) = pool_over_relu(graph, k, 0) {
            // The pooling routes each gradient to its argmax through the fused ReLU. A square
            // convolution right below takes its gradients from the routed values; anything
            // else gets the dense gradient at the ReLU's input.
            let (idx, pooled) = (forward.argmax[k].as_deref().expect("a max pooling's argmax"), &forward.values[k + 1]);
            let below = graph.nodes[r].inputs[0];
            match routed_conv(model, below, 0, n) {
                Some((q, _)) => routed[q] = Some((k, pool.routed(&dy, pooled, relu_rule))),
                None => accumulate(&mut grads[below], pool.backward(&dy, idx, pooled, relu_rule)),
            }
            continue;
        }
        match node.op {
            GraphOp::Conv(c) => {
                let from_pool = routed_here.as_ref().map(|(p, values)| {
                    let (pool, _) = pool_over_relu(graph, *p, 0).expect("the pooling routed from");
                    let idx = forward.argmax[*p].as_deref().expect("a max pooling's argmax");
                    (pool, values.as_slice(), idx, forward.values[*p + 1].as_slice())
                });
                let square = crate::graph_engine::square_conv(&c, &input_shape, n, shape);
                // The dense `dy` from routed values (the ReLU's rule holds already), where a
                // product needs it.
                let dense = |dy: Vec<f32>| match &from_pool {
                    Some((pool, values, idx, pooled)) => pool.backward(values, idx, pooled, relu_rule),
                    None => dy,
                };
                let routed_weights =
                    square.as_ref().filter(|s| s.takes_routed_weight_gradients()).zip(from_pool.as_ref());
                let routed_inputs = square.as_ref().filter(|s| s.takes_routed_gradients()).zip(from_pool.as_ref());
                let dense_needed = routed_weights.is_none() || (needed[input] && routed_inputs.is_none());
                let dy = if dense_needed { dense(dy) } else { dy };
                let weights = model.param(k, "weight");
                // The weight and the input gradient are independent: computed side by side
                // (each is deterministic on its own, so the bytes do not change).
                let (mut dw, g) = rayon::join(
                    || match (routed_weights, &square) {
                        (Some((conv, (pool, values, idx, _))), _) => conv.weight_grad_routed(x, values, idx, pool),
                        (None, Some(conv)) => conv.weight_grad(x, &dy),
                        (None, None) => StridedConv::new(n, &c, &input_shape, shape).weight_grad(x, &dy),
                    },
                    || {
                        needed[input].then(|| match routed_inputs {
                            Some((conv, (pool, values, idx, _))) => conv.input_grad_routed(values, idx, pool, weights),
                            None => conv_input_grad(&c, &input_shape, n, weights, &dy, shape),
                        })
                    },
                );
                let db = dw.split_off(dw.len() - c.out_channels);
                out[k].push(("weight", dw));
                if c.bias {
                    out[k].push(("bias", db));
                }
                dx = g;
            }
            GraphOp::Linear { in_features, out_features, bias } => {
                let weights = model.param(k, "weight");
                let (dw, g) = rayon::join(
                    || weight_grad_values(&dy, x, n, in_features, out_features),
                    || needed[input].then(|| input_grad_values(&dy, weights, n, in_features, out_features)),
                );
                out[k].push(("weight", dw));
                if bias {
                    out[k].push(("bias", bias_grad_values(&dy, out_features)));
                }
                dx = g;
            }
            GraphOp::BatchNorm { channels, .. } => {
                let stats =
                    pass.statistics[k].as_ref().expect("a training forward keeps every batch norm's statistics");
                let (dgamma, dbeta, g) = batch_norm_backward(stats, model.param(k, "weight"), &dy, channels);
                out[k].push(("weight", dgamma));
                out[k].push(("bias", dbeta));
                dx = Some(g);
            }
            _ if pass.masks[k].is_some() => {
                let mask = pass.masks[k].as_deref().unwrap_or_default();
                dx = Some(dy.iter().zip(mask).map(|(g, m)| g * m).collect());
            }
            _ => {
                for (v, g) in node_backward(model, forward, k, dy, ReluMode::Standard) {
                    if needed[v] {
                        accumulate(&mut grads[v], g);
                    }
                }
            }
        }
        if let Some(g) = dx.filter(|_| needed[input]) {
            accumulate(&mut grads[input], g);
        }
    }
    Ok(out)
}

/// The standard ReLU's backward at a pooled value `y` for gradient `g` (the pooling computed
/// the ReLU: `g` where `y > 0`).
fn relu_rule(y: f32, g: f32) -> f32 {
    Relu(ReluMode::Standard).rule_one(y, g)
}

/// A training batch norm's `(dγ, dβ, dx)` for `dy` (channels innermost): `dβ = Σ dy`,
/// `dγ = Σ dy x̂` (float64 sums), `dx = γ/σ · (dy − dβ/N − x̂ dγ/N)`.
fn batch_norm_backward(
    stats: &BatchStatistics,
    gamma: &[f32],
    dy: &[f32],
    channels: usize,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let rows = dy.len() / channels;
    let sums = channel_sums(rows, channels, 2, |r, s| {
        let (dy, xh) = (&dy[r * channels..(r + 1) * channels], &stats.normalized[r * channels..(r + 1) * channels]);
        for c in 0..channels {
            s[c] += f64::from(dy[c]);
            s[channels + c] += f64::from(dy[c]) * f64::from(xh[c]);
        }
    });
    let (dbeta, dgamma) = sums.split_at(channels);
    let count = rows as f64;
    let mean_dy: Vec<f32> = dbeta.iter().map(|&s| (s / count) as f32).collect();
    let mean_dy_xh: Vec<f32> = dgamma.iter().map(|&s| (s / count) as f32).collect();
    let scale: Vec<f32> = gamma.iter().zip(&stats.inv_std).map(|(g, s)| g * s).collect();
    let mut dx = vec![0.0f32; dy.len()];
    dx.par_chunks_mut(ROWS_PER_SUM * channels)
        .zip(dy.par_chunks(ROWS_PER_SUM * channels).zip(stats.normalized.par_chunks(ROWS_PER_SUM * channels)))
        .for_each(|(dx, (dy, xh))| {
            for ((dx, dy), xh) in
                dx.chunks_exact_mut(channels).zip(dy.chunks_exact(channels)).zip(xh.chunks_exact(channels))
            {
                for c in 0..channels {
                    dx[c] = scale[c] * (dy[c] - mean_dy[c] - xh[c] * mean_dy_xh[c]);
                }
            }
        });
    let to_f32 = |v: &[f64]| v.iter().map(|&s| s as f32).collect();
    (to_f32(dgamma), to_f32(dbeta), dx)
}

/// Parameter `what` of node `k` of `graph`: its name (`<layer>.<what>`) and PyTorch shape.
pub fn parameter_name_and_shape(graph: &Graph, k: usize, what: &str) -> (String, Vec<usize>) {
    let node = &graph.nodes[k];
    let shape = node.op.parameters().into_iter().find(|(w, _)| *w == what).map(|(_, s)| s).unwrap_or_default();
    (format!("{}.{what}", node.name), shape)
}

/// Parameter `what` of node `k` as a tensor in PyTorch's layout and shape, from `values` in the
/// walk's (a convolution's weight un-reordered).
pub fn parameter_tensor(graph: &Graph, k: usize, what: &str, values: &[f32]) -> Result<Tensor> {
    let (_, shape) = parameter_name_and_shape(graph, k, what);
    let values = match graph.nodes[k].op {
        GraphOp::Conv(_) if what == "weight" => restore_conv_weights(values, [shape[0], shape[1], shape[2], shape[3]]),
        _ => values.to_vec(),
    };
    Ok(Tensor::from_vec(values, shape, &Device::Cpu)?)
}

/// Parameter `what` of node `k` in the walk's layout from `values` in PyTorch's.
pub(crate) fn walk_layout(graph: &Graph, k: usize, what: &str, values: Vec<f32>) -> Vec<f32> {
    match graph.nodes[k].op {
        GraphOp::Conv(_) if what == "weight" => {
            let (_, shape) = parameter_name_and_shape(graph, k, what);
            reorder_conv_weights(&values, [shape[0], shape[1], shape[2], shape[3]])
        }
        _ => values,
    }
}

/// Per-node values in the walk's layouts (parameters, or [`parameter_gradients`]) as weights:
/// PyTorch's names, layouts and shapes.
pub fn as_weights<V: AsRef<[f32]>>(graph: &Graph, values: &[Vec<(&'static str, V)>]) -> Result<Weights> {
    let mut weights = Weights::new();
    for (k, node_values) in values.iter().enumerate() {
        for (what, v) in node_values {
            weights.insert(parameter_name_and_shape(graph, k, what).0, parameter_tensor(graph, k, what, v.as_ref())?);
        }
    }
    Ok(weights)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every op a graph may hold (strides, dilation, depthwise and grouped convolutions, uneven
    /// padding, batch norm in training mode, GELU, tanh, sigmoid, leaky ReLU, residual adds, a
    /// concatenation, average, padded max and adaptive pooling): the walk's parameter gradients
    /// equal candle's float64 autograd of its training forward (`graph_candle.rs`).
    #[test]
    fn every_graph_op_s_parameter_gradients_match_candle_s_float64_autograd() {
        use crate::forward::Mode;
        use crate::graph_reference::zoo::{random_weights, zoo};
        use candle_core::{DType, Var};
        use rand::SeedableRng;
        let graph = zoo();
        let weights = random_weights(&graph, 3);
        let training = TrainingGraph::of(&Net::Graph(Arc::new(graph.clone()))).expect("training graph");
        let model = GraphModel::new(&graph, &weights).expect("model");
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let n = 3;
        let x: Vec<f32> = (0..n * 2 * 81).map(|_| rng.random_range(-1.0..1.0)).collect();
        let seed: Vec<f32> = (0..n * 3).map(|_| rng.random_range(-1.0..1.0)).collect();
        let pass = train_forward(&model, &training, &x, n, &mut rng.clone()).expect("forward");
        let ours = as_weights(&graph, &parameter_gradients(&model, &pass, &seed).expect("gradients")).expect("weights");
        let mut tracked = weights.clone();
        let mut vars = Vec::new();
        for (name, _) in ours.iter() {
            let var = Var::from_tensor(weights.get(name).expect("weight")).expect("var");
            tracked.insert(name.clone(), var.as_tensor().clone());
            vars.push((name.clone(), var));
        }
        assert_eq!(vars.len(), 10, "every weight and bias of the zoo's convolutions, batch norm and linear layer");
        let to64 = |v: &[f32]| v.iter().map(|&a| f64::from(a)).collect::<Vec<f64>>();
        let x64 = Tensor::from_vec(to64(&x), (n, 2, 9, 9), &Device::Cpu).expect("x");
        let mut running = tracked.clone();
        let logits = crate::graph_candle::forward(&graph, &tracked, &x64, &mut Mode::Train(&mut rng, &mut running))
            .expect("candle's forward");
        let seed64 = Tensor::from_vec(to64(&seed), (n, 3), &Device::Cpu).expect("seed");
        let grads = (logits * seed64).and_then(|p| p.sum_all()).and_then(|s| s.backward()).expect("backward");
        let values = |t: &Tensor| t.to_dtype(DType::F64).and_then(|t| t.flatten_all()).and_then(|t| t.to_vec1::<f64>());
        let largest = |v: &[f64]| v.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let theirs: Vec<Vec<f64>> =
            vars.iter().map(|(_, var)| values(grads.get(var).expect("candle's gradient")).expect("values")).collect();
        // The stem's bias under the batch norm has a zero gradient: judged on the whole's scale.
        let overall = theirs.iter().map(|g| largest(g)).fold(0.0, f64::max);
        assert!(overall > 1e-3, "a gradient to check");
        for ((name, _), theirs) in vars.iter().zip(&theirs) {
            let ours = values(ours.get(name).expect("ours")).expect("values");
            let scale = largest(theirs).max(1e-2 * overall);
            let worst = ours.iter().zip(theirs).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(worst <= 1e-4 * scale, "{name}: off by {worst:e} (scale {scale:e})");
        }
    }

    #[test]
    fn the_loss_gradient_is_the_derivative_of_the_loss() {
        for (outputs, labels) in [(1usize, vec![1usize, 0, 1]), (4, vec![3, 0, 2])] {
            let logits: Vec<f32> = (0..3 * outputs).map(|i| ((i * 37) % 11) as f32 / 3.0 - 1.5).collect();
            let (_, gradient) = loss_and_gradient(&logits, &labels, outputs);
            for i in 0..logits.len() {
                let at = |d: f32| {
                    let mut l = logits.clone();
                    l[i] += d;
                    loss_and_gradient(&l, &labels, outputs).0
                };
                let fd = (at(1e-2) - at(-1e-2)) / 2e-2;
                assert!(
                    (fd - f64::from(gradient[i])).abs() < 1e-4,
                    "{outputs} outputs, logit {i}: {fd} vs {}",
                    gradient[i]
                );
            }
        }
    }
}
