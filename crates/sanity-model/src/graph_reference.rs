//! The float64 reference evaluation of a [`Graph`]: its forward and the input gradient of
//! `Σ seed ⊙ output`, written out op by op as PyTorch defines each (loops over NCHW values, no
//! layout tricks, no fusion). It is slow on purpose: it is what the tests check an import
//! against PyTorch's logits with, and what finite differences check every op's backward with.
//! The float32 walk (`graph_engine.rs`) is what attribution runs.

use crate::error::{ModelError, Result};
use crate::graph::{ConvSpec, Graph, GraphOp, PoolSpec};
use crate::weights::Weights;
use candle_core::DType;
use std::sync::Arc;

/// Every value of a forward: `values[v]` is value `v` (0 the input, `k + 1` node `k`'s
/// output) for the `n` inputs, NCHW; float64 here, float32 in the walk
/// (`graph_engine::Forward`). Values are shared, so that forwards of models with the same first
/// layers hold those layers' values once (`graph_engine::forward_from`).
pub struct Evaluation<T = f64> {
    /// The inputs.
    pub n: usize,
    /// The values, each `[n, shape]` flattened.
    pub values: Vec<Arc<Vec<T>>>,
}

impl<T> Evaluation<T> {
    /// The graph's output (the last node's), `[n, classes]`.
    pub fn output(&self) -> &[T] {
        self.values.last().map_or(&[], |v| v.as_slice())
    }
}

/// A layer's parameter as f64 values.
fn parameter(weights: &Weights, name: &str, what: &str) -> Result<Vec<f64>> {
    let t = weights.get(&format!("{name}.{what}"))?;
    Ok(t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?)
}

/// The forward of `graph` with `weights` on `n` NCHW inputs `x`.
// Long: one arm per op, each its definition written out.
pub fn forward(graph: &Graph, weights: &Weights, x: &[f64], n: usize) -> Result<Evaluation> {
    let per: usize = graph.input.iter().product();
    if x.len() != n * per {
        return Err(ModelError::BadInput(format!(
            "{} input values for {n} inputs of shape {:?}",
            x.len(),
            graph.input
        )));
    }
    let mut values = vec![Arc::new(x.to_vec())];
    for node in &graph.nodes {
        let shapes: Vec<Vec<usize>> = node.inputs.iter().map(|&v| graph.shape_of(v)).collect();
        let inputs: Vec<&[f64]> = node.inputs.iter().map(|&v| values[v].as_slice()).collect();
        let param = |what: &str| parameter(weights, &node.name, what);
        let y = match node.op {
            GraphOp::Conv(c) => {
                let bias = if c.bias { Some(param("bias")?) } else { None };
                conv(&c, inputs[0], &shapes[0], n, &param("weight")?, bias.as_deref(), &node.shape)
            }
            GraphOp::Linear { in_features, out_features, bias } => {
                let (w, b) = (param("weight")?, if bias { Some(param("bias")?) } else { None });
                let mut y = vec![0.0; n * out_features];
                for (x, y) in inputs[0].chunks_exact(in_features).zip(y.chunks_exact_mut(out_features)) {
                    for (o, y) in y.iter_mut().enumerate() {
                        let dot: f64 =
                            w[o * in_features..(o + 1) * in_features].iter().zip(x).map(|(w, x)| w * x).sum();
                        *y = dot + b.as_ref().map_or(0.0, |b| b[o]);
                    }
                }
                y
            }
            GraphOp::BatchNorm { eps, .. } => {
                let (scale, shift) = batch_norm(
                    &param("weight")?,
                    &param("bias")?,
                    &param("running_mean")?,
                    &param("running_var")?,
                    eps,
                );
                per_channel(inputs[0], &shapes[0], |c, v| v * scale[c] + shift[c])
            }
            GraphOp::MaxPool(p) | GraphOp::AvgPool { pool: p, .. } => {
                let count_include_pad = matches!(node.op, GraphOp::AvgPool { count_include_pad: true, .. });
                let max = matches!(node.op, GraphOp::MaxPool(_));
                let mut y = vec![0.0; n * node.shape.iter().product::<usize>()];
                for_each_window(&p, &shapes[0], &node.shape, n, |out, taps, divisor| {
                    y[out] = if max {
                        taps.iter().map(|&t| inputs[0][t]).fold(f64::NEG_INFINITY, f64::max)
                    } else {
                        taps.iter().map(|&t| inputs[0][t]).sum::<f64>()
                            / if count_include_pad { divisor } else { taps.len() as f64 }
                    };
                });
                y
            }
            GraphOp::GlobalAvgPool { .. } => {
                let hw: usize = shapes[0][1..].iter().product();
                inputs[0].chunks_exact(hw).map(|plane| plane.iter().sum::<f64>() / hw as f64).collect()
            }
            GraphOp::AdaptiveAvgPool { out } => {
                let mut y = vec![0.0; n * node.shape.iter().product::<usize>()];
                for_each_bin(out, &shapes[0], n, |o, taps| {
                    y[o] = taps.iter().map(|&t| inputs[0][t]).sum::<f64>() / taps.len() as f64;
                });
                y
            }
            GraphOp::Add => inputs[0].iter().zip(inputs[1]).map(|(a, b)| a + b).collect(),
            GraphOp::Concat => {
                let mut y = Vec::with_capacity(n * node.shape.iter().product::<usize>());
                for image in 0..n {
                    for (input, shape) in inputs.iter().zip(&shapes) {
                        let len: usize = shape.iter().product();
                        y.extend_from_slice(&input[image * len..(image + 1) * len]);
                    }
                }
                y
            }
            GraphOp::Flatten | GraphOp::Identity => inputs[0].to_vec(),
            op => inputs[0].iter().map(|&v| activation(op, v).0).collect(),
        };
        values.push(Arc::new(y));
    }
    Ok(Evaluation { n, values })
}

/// `∂(Σ seed ⊙ output)/∂x` for the forward `evaluation` of `graph` (seed `[n, classes]`),
/// NCHW like the inputs.
// Long: one arm per op, each its adjoint written out.
pub fn input_gradient(graph: &Graph, weights: &Weights, evaluation: &Evaluation, seed: &[f64]) -> Result<Vec<f64>> {
    let n = evaluation.n;
    if seed.len() != evaluation.output().len() {
        return Err(ModelError::BadInput(format!(
            "a seed of {} values for {} outputs",
            seed.len(),
            evaluation.output().len()
        )));
    }
    let mut grads: Vec<Vec<f64>> = evaluation.values.iter().map(|v| vec![0.0; v.len()]).collect();
    *grads.last_mut().unwrap_or(&mut Vec::new()) = seed.to_vec();
    for (k, node) in graph.nodes.iter().enumerate().rev() {
        let dy = std::mem::take(&mut grads[k + 1]);
        let shapes: Vec<Vec<usize>> = node.inputs.iter().map(|&v| graph.shape_of(v)).collect();
        let x = &evaluation.values[node.inputs[0]];
        let param = |what: &str| parameter(weights, &node.name, what);
        let first = node.inputs[0];
        match node.op {
            GraphOp::Conv(c) => {
                let dx = conv_input_grad(&c, &shapes[0], n, &param("weight")?, &dy, &node.shape);
                add_into(&mut grads[first], &dx);
            }
            GraphOp::Linear { in_features, out_features, .. } => {
                let w = param("weight")?;
                let mut dx = vec![0.0; n * in_features];
                for (dx, dy) in dx.chunks_exact_mut(in_features).zip(dy.chunks_exact(out_features)) {
                    for (o, &g) in dy.iter().enumerate() {
                        for (d, &w) in dx.iter_mut().zip(&w[o * in_features..(o + 1) * in_features]) {
                            *d += w * g;
                        }
                    }
                }
                add_into(&mut grads[first], &dx);
            }
            GraphOp::BatchNorm { eps, .. } => {
                let (scale, _) = batch_norm(
                    &param("weight")?,
                    &param("bias")?,
                    &param("running_mean")?,
                    &param("running_var")?,
                    eps,
                );
                let dx = per_channel(&dy, &shapes[0], |c, g| g * scale[c]);
                add_into(&mut grads[first], &dx);
            }
            GraphOp::MaxPool(p) | GraphOp::AvgPool { pool: p, .. } => {
                let count_include_pad = matches!(node.op, GraphOp::AvgPool { count_include_pad: true, .. });
                let max = matches!(node.op, GraphOp::MaxPool(_));
                let g = &mut grads[first];
                for_each_window(&p, &shapes[0], &node.shape, n, |out, taps, divisor| {
                    if max {
                        // The first largest value of the window takes the gradient (PyTorch's argmax).
                        let mut best = taps[0];
                        for &t in &taps[1..] {
                            if x[t] > x[best] {
                                best = t;
                            }
                        }
                        g[best] += dy[out];
                    } else {
                        let d = if count_include_pad { divisor } else { taps.len() as f64 };
                        for &t in taps {
                            g[t] += dy[out] / d;
                        }
                    }
                });
            }
            GraphOp::GlobalAvgPool { .. } => {
                let hw: usize = shapes[0][1..].iter().product();
                let dx: Vec<f64> = dy.iter().flat_map(|&g| std::iter::repeat_n(g / hw as f64, hw)).collect();
                add_into(&mut grads[first], &dx);
            }
            GraphOp::AdaptiveAvgPool { out } => {
                let g = &mut grads[first];
                for_each_bin(out, &shapes[0], n, |o, taps| {
                    for &t in taps {
                        g[t] += dy[o] / taps.len() as f64;
                    }
                });
            }
            GraphOp::Add => {
                add_into(&mut grads[node.inputs[0]], &dy);
                add_into(&mut grads[node.inputs[1]], &dy);
            }
            GraphOp::Concat => {
                let mut offset = 0;
                let total: usize = node.shape.iter().product();
                for (&v, shape) in node.inputs.iter().zip(&shapes) {
                    let len: usize = shape.iter().product();
                    for image in 0..n {
                        let from = &dy[image * total + offset..image * total + offset + len];
                        add_into(&mut grads[v][image * len..(image + 1) * len], from);
                    }
                    offset += len;
                }
            }
            GraphOp::Flatten | GraphOp::Identity => add_into(&mut grads[first], &dy),
            op => {
                let dx: Vec<f64> = x.iter().zip(&dy).map(|(&v, &g)| g * activation(op, v).1).collect();
                add_into(&mut grads[first], &dx);
            }
        }
    }
    Ok(std::mem::take(&mut grads[0]))
}

fn add_into(into: &mut [f64], from: &[f64]) {
    into.iter_mut().zip(from).for_each(|(a, b)| *a += b);
}

/// An elementwise op's value and derivative at `v`.
fn activation(op: GraphOp, v: f64) -> (f64, f64) {
    match op {
        GraphOp::Relu => (v.max(0.0), if v > 0.0 { 1.0 } else { 0.0 }),
        GraphOp::LeakyRelu { alpha } => {
            let a = f64::from(alpha);
            if v > 0.0 { (v, 1.0) } else { (a * v, a) }
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
            let cdf = 0.5 * (1.0 + statrs::function::erf::erf(v / std::f64::consts::SQRT_2));
            let pdf = (-0.5 * v * v).exp() / (2.0 * std::f64::consts::PI).sqrt();
            (v * cdf, cdf + v * pdf)
        }
        GraphOp::Scale { factor } => (v * f64::from(factor), f64::from(factor)),
        _ => (v, 1.0),
    }
}

/// Batch normalisation in inference as `y = x·scale + shift` per channel.
fn batch_norm(gamma: &[f64], beta: &[f64], mean: &[f64], var: &[f64], eps: f64) -> (Vec<f64>, Vec<f64>) {
    let scale: Vec<f64> = gamma.iter().zip(var).map(|(g, v)| g / (v + eps).sqrt()).collect();
    let shift = beta.iter().zip(mean).zip(&scale).map(|((b, m), s)| b - m * s).collect();
    (scale, shift)
}

/// `f(channel, value)` of every value of `[n, c, ...]` values.
fn per_channel(x: &[f64], shape: &[usize], f: impl Fn(usize, f64) -> f64) -> Vec<f64> {
    let plane: usize = shape[1..].iter().product();
    x.iter().enumerate().map(|(i, &v)| f((i / plane) % shape[0], v)).collect()
}

/// Each input position `(iy, ix)` a tap of output `(oy, ox)` reads, for a window of `kernel`
/// dilated by `dilation` at `stride` with `pads` `[top, left, ..]`; None outside the input.
fn tap(
    o: [usize; 2],
    k: [usize; 2],
    stride: [usize; 2],
    pads: [usize; 4],
    dilation: [usize; 2],
    hw: [usize; 2],
) -> Option<usize> {
    let iy = (o[0] * stride[0] + k[0] * dilation[0]).checked_sub(pads[0])?;
    let ix = (o[1] * stride[1] + k[1] * dilation[1]).checked_sub(pads[1])?;
    (iy < hw[0] && ix < hw[1]).then_some(iy * hw[1] + ix)
}

fn conv(
    c: &ConvSpec,
    x: &[f64],
    input: &[usize],
    n: usize,
    w: &[f64],
    b: Option<&[f64]>,
    output: &[usize],
) -> Vec<f64> {
    let (hw, ohw) = ([input[1], input[2]], [output[1], output[2]]);
    let (cin, cout) = (c.in_channels / c.groups, c.out_channels / c.groups);
    let mut y = vec![0.0; n * output.iter().product::<usize>()];
    for image in 0..n {
        for o in 0..c.out_channels {
            let g = o / cout;
            for oy in 0..ohw[0] {
                for ox in 0..ohw[1] {
                    let mut sum = b.map_or(0.0, |b| b[o]);
                    for ci in 0..cin {
                        let plane = &x[(image * input[0] + g * cin + ci) * hw[0] * hw[1]..][..hw[0] * hw[1]];
                        for ky in 0..c.kernel[0] {
                            for kx in 0..c.kernel[1] {
                                if let Some(t) = tap([oy, ox], [ky, kx], c.stride, c.pads, c.dilation, hw) {
                                    sum += w[((o * cin + ci) * c.kernel[0] + ky) * c.kernel[1] + kx] * plane[t];
                                }
                            }
                        }
                    }
                    y[((image * c.out_channels + o) * ohw[0] + oy) * ohw[1] + ox] = sum;
                }
            }
        }
    }
    y
}

fn conv_input_grad(c: &ConvSpec, input: &[usize], n: usize, w: &[f64], dy: &[f64], output: &[usize]) -> Vec<f64> {
    let (hw, ohw) = ([input[1], input[2]], [output[1], output[2]]);
    let (cin, cout) = (c.in_channels / c.groups, c.out_channels / c.groups);
    let mut dx = vec![0.0; n * input.iter().product::<usize>()];
    for image in 0..n {
        for o in 0..c.out_channels {
            let g = o / cout;
            for oy in 0..ohw[0] {
                for ox in 0..ohw[1] {
                    let d = dy[((image * c.out_channels + o) * ohw[0] + oy) * ohw[1] + ox];
                    for ci in 0..cin {
                        let base = (image * input[0] + g * cin + ci) * hw[0] * hw[1];
                        for ky in 0..c.kernel[0] {
                            for kx in 0..c.kernel[1] {
                                if let Some(t) = tap([oy, ox], [ky, kx], c.stride, c.pads, c.dilation, hw) {
                                    dx[base + t] += w[((o * cin + ci) * c.kernel[0] + ky) * c.kernel[1] + kx] * d;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    dx
}

/// Calls `run(output index, input taps, divisor)` for every pooling window: the taps inside the
/// input, and the window's size within the padded input (PyTorch's `count_include_pad`
/// divisor, which leaves out what a ceil-mode window hangs beyond the padding).
pub(crate) fn for_each_window(
    p: &PoolSpec,
    input: &[usize],
    output: &[usize],
    n: usize,
    mut run: impl FnMut(usize, &[usize], f64),
) {
    let (c, hw, ohw) = (input[0], [input[1], input[2]], [output[1], output[2]]);
    // Per output row (column): the input rows (columns) its windows cover, and the window's
    // extent within the padded input.
    let axis = |axis: usize| -> Vec<(Vec<usize>, f64)> {
        (0..ohw[axis])
            .map(|o| {
                let start = o * p.stride[axis];
                let inside = (start..start + p.kernel[axis])
                    .filter_map(|i| i.checked_sub(p.pads[axis]).filter(|&i| i < hw[axis]))
                    .collect();
                let end = (start + p.kernel[axis]).min(hw[axis] + p.pads[axis] + p.pads[axis + 2]);
                (inside, end.saturating_sub(start) as f64)
            })
            .collect()
    };
    let (rows, cols) = (axis(0), axis(1));
    let mut taps = Vec::with_capacity(p.kernel[0] * p.kernel[1]);
    for plane in 0..n * c {
        for (oy, (ys, span_y)) in rows.iter().enumerate() {
            for (ox, (xs, span_x)) in cols.iter().enumerate() {
                taps.clear();
                for &iy in ys {
                    taps.extend(xs.iter().map(|&ix| (plane * hw[0] + iy) * hw[1] + ix));
                }
                run((plane * ohw[0] + oy) * ohw[1] + ox, &taps, span_y * span_x);
            }
        }
    }
}

/// Calls `run(output index, input taps)` for every bin of an adaptive average pooling to `out`.
pub(crate) fn for_each_bin(out: [usize; 2], input: &[usize], n: usize, mut run: impl FnMut(usize, &[usize])) {
    let (c, h, w) = (input[0], input[1], input[2]);
    let bounds = |i: usize, size: usize, bins: usize| (i * size / bins, ((i + 1) * size).div_ceil(bins));
    let mut taps = Vec::new();
    for plane in 0..n * c {
        for oy in 0..out[0] {
            let (y0, y1) = bounds(oy, h, out[0]);
            for ox in 0..out[1] {
                let (x0, x1) = bounds(ox, w, out[1]);
                taps.clear();
                taps.extend((y0..y1).flat_map(|y| (x0..x1).map(move |x| (plane * h + y) * w + x)));
                run((plane * out[0] + oy) * out[1] + ox, &taps);
            }
        }
    }
}

/// Test graphs shared by the reference's and the engine's tests.
#[cfg(test)]
pub(crate) mod zoo {
    use crate::graph::{ConvSpec, Graph, GraphOp, NodeSpec, PoolSpec};
    use crate::weights::Weights;
    use candle_core::{Device, Tensor};
    use rand::{Rng, SeedableRng};

    /// Every op with settings PyTorch allows and the old engine did not: strides, dilation,
    /// groups, uneven padding, ceil mode, average pooling with and without padded zeros,
    /// adaptive average pooling with overlapping bins, a residual add, a concatenation.
    pub(crate) fn zoo() -> Graph {
        let conv = |c_in, c_out, k, s, pads, d, groups| {
            GraphOp::Conv(ConvSpec {
                in_channels: c_in,
                out_channels: c_out,
                kernel: [k, k],
                stride: [s, s],
                pads,
                dilation: [d, d],
                groups,
                bias: true,
            })
        };
        let pool = |k, s, pad, ceil| PoolSpec { kernel: [k, k], stride: [s, s], pads: [pad; 4], ceil };
        let node = |name: &str, op, inputs: &[usize]| NodeSpec { name: name.into(), op, inputs: inputs.to_vec() };
        Graph::new(
            [2, 9, 9],
            vec![
                node("stem", conv(2, 4, 3, 2, [1, 0, 2, 1], 1, 1), &[0]),
                node("bn", GraphOp::BatchNorm { channels: 4, eps: 1e-5 }, &[1]),
                node("gelu", GraphOp::Gelu, &[2]),
                node("depthwise", conv(4, 4, 3, 1, [2; 4], 2, 4), &[3]),
                node("tanh", GraphOp::Tanh, &[4]),
                node("grouped", conv(4, 4, 1, 1, [0; 4], 1, 2), &[3]),
                node("leaky", GraphOp::LeakyRelu { alpha: 0.1 }, &[6]),
                node("add", GraphOp::Add, &[5, 7]),
                node("sigmoid", GraphOp::Sigmoid, &[8]),
                node("concat", GraphOp::Concat, &[9, 3]),
                node("avg", GraphOp::AvgPool { pool: pool(3, 2, 1, true), count_include_pad: false }, &[10]),
                node("avg_pad", GraphOp::AvgPool { pool: pool(2, 2, 1, true), count_include_pad: true }, &[10]),
                node("max", GraphOp::MaxPool(pool(2, 2, 1, true)), &[12]),
                node("scale", GraphOp::Scale { factor: 0.5 }, &[11]),
                node("gap", GraphOp::GlobalAvgPool { keepdims: true }, &[14]),
                node("gap_max", GraphOp::GlobalAvgPool { keepdims: false }, &[13]),
                node("flatten", GraphOp::Flatten, &[15]),
                node("sum", GraphOp::Add, &[17, 16]),
                node("adaptive", GraphOp::AdaptiveAvgPool { out: [3, 2] }, &[10]),
                node("gap_adaptive", GraphOp::GlobalAvgPool { keepdims: false }, &[19]),
                node("sum2", GraphOp::Add, &[18, 20]),
                node("fc", GraphOp::Linear { in_features: 8, out_features: 3, bias: true }, &[21]),
            ],
        )
        .expect("a valid graph")
    }

    pub(crate) fn random_weights(graph: &Graph, seed: u64) -> Weights {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut weights = Weights::new();
        for (name, shape) in graph.parameter_shapes() {
            let len: usize = shape.iter().product();
            let values: Vec<f64> = (0..len)
                .map(|_| match name.rsplit('.').next() {
                    Some("running_var") => rng.random_range(0.5..2.0),
                    _ => rng.random_range(-0.6..0.6),
                })
                .collect();
            weights.insert(name, Tensor::from_vec(values, shape, &Device::Cpu).expect("tensor"));
        }
        weights
    }
}

#[cfg(test)]
mod tests {
    use super::zoo::{random_weights, zoo};
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn every_op_s_input_gradient_matches_central_differences() {
        let graph = zoo();
        assert_eq!(graph.nodes[0].shape, [4, 5, 4], "stride 2 with uneven pads");
        let weights = random_weights(&graph, 3);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let n = 2;
        let x: Vec<f64> = (0..n * 2 * 81).map(|_| rng.random_range(-1.0..1.0)).collect();
        let seed: Vec<f64> = (0..n * 3).map(|_| rng.random_range(-1.0..1.0)).collect();
        let evaluation = forward(&graph, &weights, &x, n).expect("forward");
        let gradient = input_gradient(&graph, &weights, &evaluation, &seed).expect("backward");
        let objective = |x: &[f64]| -> f64 {
            let out = forward(&graph, &weights, x, n).expect("forward");
            out.output().iter().zip(&seed).map(|(y, s)| y * s).sum()
        };
        let h = 1e-6;
        let mut worst: f64 = 0.0;
        for i in 0..x.len() {
            let (mut up, mut down) = (x.clone(), x.clone());
            up[i] += h;
            down[i] -= h;
            let numeric = (objective(&up) - objective(&down)) / (2.0 * h);
            worst = worst.max((numeric - gradient[i]).abs());
        }
        let scale = gradient.iter().fold(0.0f64, |m, g| m.max(g.abs()));
        assert!(scale > 1e-3, "a gradient to check");
        assert!(worst < 1e-7 * scale.max(1.0), "worst |numeric − analytic| {worst} (scale {scale})");
    }
}
