//! The float32 walk of a [`Graph`]: a forward that keeps every node's output, and the input
//! gradient of `Σ seed ⊙ output` with the ReLU backward replaced per call (standard, guided,
//! deconvnet), as attribution methods need. Convolutions are im2col + gemm per image (every
//! stride, dilation, padding and group); images run in parallel, each product on one thread,
//! so results do not depend on the thread count. The gradient at any node is available
//! ([`backward_to`]) for class activation maps at a named layer.
//!
//! Pooling windows are `graph_reference.rs`'s. It is checked against the float64 reference (`graph_reference.rs`) and against the
//! sequential engine (`native.rs`) on the presets (`tests/graph_engine.rs`). The attribution
//! methods do not call it yet (issue 19).

use crate::error::{ModelError, Result};
use crate::graph::{ConvSpec, Graph, GraphOp};
use crate::graph_reference::{for_each_bin, for_each_window};
use crate::ops::ReluMode;
use crate::ops::gemm::{Layout2, matmul};
use crate::ops::relu::Relu;
use crate::weights::Weights;
use candle_core::DType;
use rayon::prelude::*;

/// A graph with float32 weights ready for the walk.
pub struct GraphModel<'a> {
    /// The graph.
    pub graph: &'a Graph,
    /// Per node, its parameters by suffix (`weight`, `bias`, ...), f32.
    parameters: Vec<Vec<(&'static str, Vec<f32>)>>,
}

impl<'a> GraphModel<'a> {
    /// Reads the weights of `graph`'s layers.
    pub fn new(graph: &'a Graph, weights: &Weights) -> Result<Self> {
        let parameters = graph
            .nodes
            .iter()
            .map(|node| {
                node.op
                    .parameters()
                    .into_iter()
                    .map(|(what, _)| {
                        let t = weights.get(&format!("{}.{what}", node.name))?;
                        Ok((what, t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?))
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { graph, parameters })
    }

    fn param(&self, node: usize, what: &str) -> &[f32] {
        self.parameters[node].iter().find(|(w, _)| *w == what).map_or(&[], |(_, v)| v.as_slice())
    }

    /// A batch norm's per-channel scale and shift (inference).
    fn batch_norm(&self, node: usize, eps: f64) -> (Vec<f32>, Vec<f32>) {
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
// Long: one arm per op, as graph_reference.rs's forward.
pub fn forward(model: &GraphModel, x: &[f32], n: usize) -> Result<Forward> {
    let graph = model.graph;
    let per: usize = graph.input.iter().product();
    if x.len() != n * per {
        return Err(ModelError::BadInput(format!(
            "{} input values for {n} inputs of shape {:?}",
            x.len(),
            graph.input
        )));
    }
    let mut values = vec![x.to_vec()];
    for (k, node) in graph.nodes.iter().enumerate() {
        let input_shape = graph.shape_of(node.inputs[0]);
        let x = &values[node.inputs[0]];
        let y = match node.op {
            GraphOp::Conv(c) => {
                conv_forward(&c, x, &input_shape, n, model.param(k, "weight"), model.param(k, "bias"), &node.shape)
            }
            GraphOp::Linear { in_features, out_features, .. } => {
                let mut y = vec![0.0f32; n * out_features];
                let w = model.param(k, "weight");
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
                let b = model.param(k, "bias");
                if !b.is_empty() {
                    y.chunks_exact_mut(out_features).for_each(|row| row.iter_mut().zip(b).for_each(|(y, b)| *y += b));
                }
                y
            }
            GraphOp::BatchNorm { eps, .. } => {
                let (scale, shift) = model.batch_norm(k, eps);
                let plane: usize = input_shape[1..].iter().product();
                per_channel(x, plane, scale.len(), |c, v| v * scale[c] + shift[c])
            }
            GraphOp::MaxPool(p) => {
                let mut y = vec![0.0f32; n * node.shape.iter().product::<usize>()];
                for_each_window(&p, &input_shape, &node.shape, n, |o, taps, _| {
                    y[o] = taps.iter().map(|&t| x[t]).fold(f32::NEG_INFINITY, f32::max);
                });
                y
            }
            GraphOp::AvgPool { pool, count_include_pad } => {
                let mut y = vec![0.0f32; n * node.shape.iter().product::<usize>()];
                for_each_window(&pool, &input_shape, &node.shape, n, |o, taps, divisor| {
                    let d = if count_include_pad { divisor as f32 } else { taps.len() as f32 };
                    y[o] = taps.iter().map(|&t| x[t]).sum::<f32>() / d;
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
            GraphOp::Add => x.iter().zip(&values[node.inputs[1]]).map(|(a, b)| a + b).collect(),
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
            GraphOp::Flatten | GraphOp::Identity => x.clone(),
            op => x.par_iter().map(|&v| elementwise(op, v).0).collect(),
        };
        values.push(y);
    }
    Ok(Forward { n, values })
}

/// `∂(Σ seed ⊙ output)/∂x`, NCHW, with ReLU backward `relu`.
pub fn input_gradient(model: &GraphModel, forward: &Forward, seed: &[f32], relu: ReluMode) -> Result<Vec<f32>> {
    backward_to(model, forward, 0, seed, relu)
}

/// `∂(Σ seed ⊙ output)/∂v` for value `v` (0 the input, `k + 1` node `k`'s output): the
/// gradient at a layer that a class activation map weights its activations with.
// Long: one arm per op, as graph_reference.rs's input_gradient.
pub fn backward_to(model: &GraphModel, forward: &Forward, v: usize, seed: &[f32], relu: ReluMode) -> Result<Vec<f32>> {
    let (graph, n) = (model.graph, forward.n);
    if seed.len() != forward.output().len() {
        return Err(ModelError::BadInput(format!(
            "a seed of {} values for {} outputs",
            seed.len(),
            forward.output().len()
        )));
    }
    let mut grads: Vec<Option<Vec<f32>>> = vec![None; forward.values.len()];
    grads[forward.values.len() - 1] = Some(seed.to_vec());
    for (k, node) in graph.nodes.iter().enumerate().skip(v).rev() {
        let Some(dy) = grads[k + 1].take() else { continue };
        let input_shape = graph.shape_of(node.inputs[0]);
        let x = &forward.values[node.inputs[0]];
        let first = node.inputs[0];
        let dx = match node.op {
            GraphOp::Conv(c) => conv_input_grad(&c, &input_shape, n, model.param(k, "weight"), &dy, &node.shape),
            GraphOp::Linear { in_features, out_features, .. } => {
                let mut dx = vec![0.0f32; n * in_features];
                matmul(
                    &mut dx,
                    Layout2::row_major(n, in_features),
                    &dy,
                    Layout2::row_major(n, out_features),
                    model.param(k, "weight"),
                    Layout2::row_major(out_features, in_features),
                    false,
                    rayon::current_num_threads(),
                );
                dx
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
                let mut dx = vec![0.0f32; x.len()];
                for_each_window(&p, &input_shape, &node.shape, n, |o, taps, _| {
                    let mut best = taps[0];
                    for &t in &taps[1..] {
                        if x[t] > x[best] {
                            best = t;
                        }
                    }
                    dx[best] += dy[o];
                });
                dx
            }
            GraphOp::AvgPool { pool, count_include_pad } => {
                let mut dx = vec![0.0f32; x.len()];
                for_each_window(&pool, &input_shape, &node.shape, n, |o, taps, divisor| {
                    let d = if count_include_pad { divisor as f32 } else { taps.len() as f32 };
                    taps.iter().for_each(|&t| dx[t] += dy[o] / d);
                });
                dx
            }
            GraphOp::AdaptiveAvgPool { out } => {
                let mut dx = vec![0.0f32; x.len()];
                for_each_bin(out, &input_shape, n, |o, taps| {
                    taps.iter().for_each(|&t| dx[t] += dy[o] / taps.len() as f32)
                });
                dx
            }
            GraphOp::GlobalAvgPool { .. } => {
                let hw: usize = input_shape[1..].iter().product();
                dy.iter().flat_map(|&g| std::iter::repeat_n(g / hw as f32, hw)).collect()
            }
            GraphOp::Add => {
                accumulate(&mut grads[node.inputs[1]], &dy);
                dy
            }
            GraphOp::Concat => {
                let total: usize = node.shape.iter().product();
                let mut offset = 0;
                for &input in &node.inputs {
                    let len: usize = graph.shape_of(input).iter().product();
                    let mut part = vec![0.0f32; n * len];
                    for image in 0..n {
                        part[image * len..(image + 1) * len].copy_from_slice(&dy[image * total + offset..][..len]);
                    }
                    accumulate(&mut grads[input], &part);
                    offset += len;
                }
                continue;
            }
            GraphOp::Flatten | GraphOp::Identity => dy,
            op => x.par_iter().zip(dy.par_iter()).map(|(&v, &g)| g * elementwise(op, v).1).collect(),
        };
        accumulate(&mut grads[first], &dx);
    }
    Ok(grads[v].take().unwrap_or_else(|| vec![0.0; forward.values[v].len()]))
}

fn accumulate(slot: &mut Option<Vec<f32>>, g: &[f32]) {
    match slot {
        Some(sum) => sum.iter_mut().zip(g).for_each(|(s, g)| *s += g),
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

/// `f(channel, value)` over `[n, c, plane]` values.
fn per_channel(x: &[f32], plane: usize, channels: usize, f: impl Fn(usize, f32) -> f32 + Sync) -> Vec<f32> {
    x.par_iter().enumerate().map(|(i, &v)| f((i / plane) % channels, v)).collect()
}

/// The im2col matrix of one image's channels `[channels, h, w]`: rows `(ci, ky, kx)`, columns
/// the output positions; zero where a tap falls in the padding.
fn im2col(c: &ConvSpec, image: &[f32], dims: [usize; 3], out: [usize; 2]) -> Vec<f32> {
    let mut cols = vec![0.0f32; dims[0] * c.kernel[0] * c.kernel[1] * out[0] * out[1]];
    for_each_tap(c, dims, out, |col, pixel| cols[col] = image[pixel]);
    cols
}

/// Adds the columns back onto the image positions they were taken from (im2col's adjoint).
fn col2im(c: &ConvSpec, cols: &[f32], image: &mut [f32], dims: [usize; 3], out: [usize; 2]) {
    for_each_tap(c, dims, out, |col, pixel| image[pixel] += cols[col]);
}

/// Calls `tap(column index, image index)` for every kernel tap of every output position of
/// `c` on a `[channels, h, w]` image that falls inside the image (not in the padding); the
/// column matrix is `[channels · kh · kw, oh · ow]`.
fn for_each_tap(c: &ConvSpec, [channels, h, w]: [usize; 3], [oh, ow]: [usize; 2], mut tap: impl FnMut(usize, usize)) {
    let (kh, kw) = (c.kernel[0], c.kernel[1]);
    for ci in 0..channels {
        for ky in 0..kh {
            for kx in 0..kw {
                let row = ((ci * kh + ky) * kw + kx) * oh * ow;
                for oy in 0..oh {
                    let Some(iy) = (oy * c.stride[0] + ky * c.dilation[0]).checked_sub(c.pads[0]).filter(|&y| y < h)
                    else {
                        continue;
                    };
                    for ox in 0..ow {
                        if let Some(ix) =
                            (ox * c.stride[1] + kx * c.dilation[1]).checked_sub(c.pads[1]).filter(|&x| x < w)
                        {
                            tap(row + oy * ow + ox, (ci * h + iy) * w + ix);
                        }
                    }
                }
            }
        }
    }
}

fn conv_forward(
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
    y.par_chunks_mut(per_out).zip(x.par_chunks(per_in)).for_each(|(y, image)| {
        for g in 0..c.groups {
            let group = &image[g * cin * input[1] * input[2]..][..cin * input[1] * input[2]];
            let cols = im2col(c, group, [cin, input[1], input[2]], [output[1], output[2]]);
            let out = &mut y[g * cout * ohw..][..cout * ohw];
            let weights = &w[g * cout * cin * taps..][..cout * cin * taps];
            let k = cin * taps;
            matmul(
                out,
                Layout2::row_major(cout, ohw),
                weights,
                Layout2::row_major(cout, k),
                &cols,
                Layout2::row_major(k, ohw),
                false,
                1,
            );
        }
        if !b.is_empty() {
            y.chunks_exact_mut(ohw).zip(b).for_each(|(plane, &b)| plane.iter_mut().for_each(|v| *v += b));
        }
    });
    y
}

fn conv_input_grad(c: &ConvSpec, input: &[usize], n: usize, w: &[f32], dy: &[f32], output: &[usize]) -> Vec<f32> {
    let (per_in, per_out) = (input.iter().product::<usize>(), output.iter().product::<usize>());
    let (cin, cout, taps) = (c.in_channels / c.groups, c.out_channels / c.groups, c.kernel[0] * c.kernel[1]);
    let ohw = output[1] * output[2];
    let mut dx = vec![0.0f32; n * per_in];
    dx.par_chunks_mut(per_in).zip(dy.par_chunks(per_out)).for_each(|(dx, dy)| {
        for g in 0..c.groups {
            let k = cin * taps;
            let mut cols = vec![0.0f32; k * ohw];
            let weights = &w[g * cout * k..][..cout * k];
            let grad = &dy[g * cout * ohw..][..cout * ohw];
            matmul(
                &mut cols,
                Layout2::row_major(k, ohw),
                weights,
                Layout2::row_major(cout, k).t(),
                grad,
                Layout2::row_major(cout, ohw),
                false,
                1,
            );
            let group = &mut dx[g * cin * input[1] * input[2]..][..cin * input[1] * input[2]];
            col2im(c, &cols, group, [cin, input[1], input[2]], [output[1], output[2]]);
        }
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
}
