//! A graph's forward in candle, differentiable in every weight: the float64 reference that the
//! training walk's gradients (`graph_train.rs`) are checked against. Each op is PyTorch's: convolutions
//! with any padding (uneven padding as zeros around the input), pooling windows gathered by
//! index (padded taps −∞ for max pooling, left out of the mean unless `count_include_pad`),
//! batch norms with batch statistics and running averages in training (PyTorch's momentum
//! 0.1) and their running statistics in evaluation. The attribution methods run the float32
//! walk (`graph_engine.rs`) instead, which this forward matches (`tests` below).

use crate::error::{ModelError, Result};
use crate::forward::{Mode, batch_norm};
use crate::graph::{ConvSpec, Graph, GraphOp, PoolSpec};
use crate::graph_reference::{for_each_bin, for_each_window};
use crate::weights::Weights;
use candle_core::{D, Tensor};

/// PyTorch's default batch-norm momentum (the graph's batch norms come from modules built with it).
pub(crate) const BATCH_NORM_MOMENTUM: f64 = 0.1;

/// The logits of `graph` with `weights` on inputs `x` `[n, c, h, w]`, in `mode` (training:
/// batch statistics, each batch norm's updated running statistics written into the mode's
/// weights).
// Long: one arm per op.
pub fn forward(graph: &Graph, weights: &Weights, x: &Tensor, mode: &mut Mode) -> Result<Tensor> {
    let mut values: Vec<Tensor> = vec![x.clone()];
    for node in &graph.nodes {
        let input = &values[node.inputs[0]];
        let get = |what: &str| weights.get(&format!("{}.{what}", node.name));
        let refuse = |reason: String| ModelError::InvalidArchitecture { layer: node.name.clone(), reason };
        let y = match node.op {
            GraphOp::Conv(c) => conv(&c, input, get("weight")?, if c.bias { Some(get("bias")?) } else { None })
                .map_err(|e| refuse(e.to_string()))?,
            GraphOp::Linear { bias, .. } => {
                let y = input.matmul(&get("weight")?.t()?)?;
                if bias { y.broadcast_add(get("bias")?)? } else { y }
            }
            GraphOp::BatchNorm { eps, .. } => batch_norm(input, &node.name, weights, eps, BATCH_NORM_MOMENTUM, mode)?,
            GraphOp::Relu => input.relu()?,
            GraphOp::LeakyRelu { alpha } => {
                let negative = input.minimum(0.0)?;
                (input.relu()? + (negative * f64::from(alpha))?)?
            }
            GraphOp::Sigmoid => candle_nn::ops::sigmoid(input)?,
            GraphOp::Tanh => input.tanh()?,
            GraphOp::Gelu => input.gelu_erf()?,
            GraphOp::MaxPool(p) => pool(input, &p, &node.shape, Pooling::Max)?,
            GraphOp::AvgPool { pool: p, count_include_pad } => {
                pool(input, &p, &node.shape, Pooling::Mean { count_include_pad })?
            }
            GraphOp::GlobalAvgPool { keepdims } => {
                let pooled = input.mean_keepdim(D::Minus1)?.mean_keepdim(D::Minus2)?;
                if keepdims { pooled } else { pooled.flatten_from(1)? }
            }
            GraphOp::AdaptiveAvgPool { out } => adaptive_pool(input, out)?,
            GraphOp::Add => (input + &values[node.inputs[1]])?,
            GraphOp::Scale { factor } => (input * f64::from(factor))?,
            GraphOp::Concat => {
                let parts: Vec<&Tensor> = node.inputs.iter().map(|&v| &values[v]).collect();
                Tensor::cat(&parts, 1)?
            }
            GraphOp::Flatten => input.flatten_from(1)?,
            GraphOp::Identity => input.clone(),
        };
        values.push(y);
    }
    Ok(values.pop().unwrap_or_else(|| x.clone()))
}

/// A convolution: uneven zero padding added around the input, then candle's convolution
/// (the same stride and dilation along both axes).
fn conv(c: &ConvSpec, x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    if c.stride[0] != c.stride[1] || c.dilation[0] != c.dilation[1] {
        return Err(ModelError::Training(format!(
            "stride {:?} and dilation {:?}; accepted for training: the same along both axes",
            c.stride, c.dilation
        )));
    }
    let [top, left, bottom, right] = c.pads;
    let (_, _, h, w) = x.dims4()?;
    let (s, d) = (c.stride[0], c.dilation[0]);
    let y = if top == bottom && left == right && top == left && (s == 1 || h == w) {
        x.conv2d(weight, top, s, d, c.groups)?
    } else {
        // Padded by hand; a strided convolution's input also made square with zeros at the
        // bottom or right (candle's backward fails on strided non-square inputs), the extra
        // outputs cut off.
        let (ph, pw) = (h + top + bottom, w + left + right);
        let side = if s > 1 { ph.max(pw) } else { 0 };
        let x = x.pad_with_zeros(2, top, bottom + side.saturating_sub(ph))?;
        let x = x.pad_with_zeros(3, left, right + side.saturating_sub(pw))?;
        let out = |size: usize, k: usize| (size - d * (k - 1) - 1) / s + 1;
        let y = x.conv2d(weight, 0, s, d, c.groups)?;
        y.narrow(2, 0, out(ph, c.kernel[0]))?.narrow(3, 0, out(pw, c.kernel[1]))?
    };
    Ok(match bias {
        Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?)?,
        None => y,
    })
}

/// How a pooling window combines its taps.
#[derive(Clone, Copy)]
enum Pooling {
    Max,
    Mean { count_include_pad: bool },
}

/// Max or average pooling: each output's taps gathered by index from the input plane with one
/// padding value appended (−∞ for max, 0 for the mean), then reduced.
fn pool(x: &Tensor, p: &PoolSpec, output: &[usize], how: Pooling) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let (oh, ow) = (output[1], output[2]);
    let k = p.kernel[0] * p.kernel[1];
    let pad = (h * w) as u32;
    let mut index = Vec::with_capacity(oh * ow * k);
    let mut divisor = Vec::with_capacity(oh * ow);
    for_each_window(p, &[1, h, w], &[1, oh, ow], 1, |_, taps, window| {
        index.extend(taps.iter().map(|&t| t as u32));
        index.extend(std::iter::repeat_n(pad, k - taps.len()));
        divisor.push(match how {
            Pooling::Mean { count_include_pad: true } => window,
            _ => taps.len() as f64,
        });
    });
    let fill = match how {
        Pooling::Max => f64::NEG_INFINITY,
        Pooling::Mean { .. } => 0.0,
    };
    let gathered = gather(x, fill, index, (n, c, oh * ow, k))?;
    let y = match how {
        Pooling::Max => gathered.max(D::Minus1)?,
        Pooling::Mean { .. } => {
            let divisor = Tensor::from_vec(divisor, oh * ow, x.device())?.to_dtype(x.dtype())?;
            gathered.sum(D::Minus1)?.broadcast_div(&divisor)?
        }
    };
    Ok(y.reshape((n, c, oh, ow))?)
}

/// Adaptive average pooling to `out` bins (PyTorch's bin bounds).
fn adaptive_pool(x: &Tensor, out: [usize; 2]) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let bins = out[0] * out[1];
    let mut taps_of: Vec<Vec<u32>> = vec![Vec::new(); bins];
    for_each_bin(out, &[1, h, w], 1, |o, taps| taps_of[o] = taps.iter().map(|&t| t as u32).collect());
    let k = taps_of.iter().map(Vec::len).max().unwrap_or(1);
    let divisor: Vec<f64> = taps_of.iter().map(|t| t.len() as f64).collect();
    let index: Vec<u32> = taps_of
        .iter()
        .flat_map(|t| t.iter().copied().chain(std::iter::repeat_n((h * w) as u32, k - t.len())))
        .collect();
    let divisor = Tensor::from_vec(divisor, bins, x.device())?.to_dtype(x.dtype())?;
    let y = gather(x, 0.0, index, (n, c, bins, k))?.sum(D::Minus1)?.broadcast_div(&divisor)?;
    Ok(y.reshape((n, c, out[0], out[1]))?)
}

/// `x`'s planes with `fill` appended as their last value, gathered at `index`, shaped `shape`.
fn gather(x: &Tensor, fill: f64, index: Vec<u32>, shape: (usize, usize, usize, usize)) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let planes = x.reshape((n * c, h * w))?;
    let padding = Tensor::full(fill, (n * c, 1), x.device())?.to_dtype(x.dtype())?;
    let padded = Tensor::cat(&[&planes, &padding], 1)?;
    let len = index.len();
    let index = Tensor::from_vec(index, len, x.device())?;
    Ok(padded.index_select(&index, 1)?.reshape(shape)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph_engine::{GraphModel, forward as walk};
    use crate::graph_init::init_graph;
    use crate::graph_presets::graph_preset;
    use crate::graph_reference::{self, zoo};
    use candle_core::{DType, Device, Var};

    fn input(n: usize, shape: [usize; 3], dtype: DType) -> Tensor {
        let len = n * shape.iter().product::<usize>();
        let values: Vec<f64> = (0..len).map(|i| ((i * 37 % 101) as f64 / 101.0) - 0.4).collect();
        Tensor::from_vec(values, (n, shape[0], shape[1], shape[2]), &Device::Cpu)
            .and_then(|t| t.to_dtype(dtype))
            .expect("input")
    }

    #[test]
    fn the_forward_and_its_input_gradient_are_the_float64_reference_s_on_every_op() {
        let graph = zoo::zoo();
        let weights = zoo::random_weights(&graph, 3).to_dtype(DType::F64).expect("f64");
        let x = Var::from_tensor(&input(2, graph.input, DType::F64)).expect("var");
        let y = forward(&graph, &weights, x.as_tensor(), &mut Mode::Eval).expect("forward");
        let flat: Vec<f64> = x.as_tensor().flatten_all().expect("flat").to_vec1().expect("f64");
        let reference = graph_reference::forward(&graph, &weights, &flat, 2).expect("reference");
        let ours: Vec<f64> = y.flatten_all().expect("flat").to_vec1().expect("f64");
        for (a, b) in ours.iter().zip(reference.output()) {
            assert!((a - b).abs() <= 1e-9 * (1.0 + b.abs()), "forward {a} vs {b}");
        }
        // The gradient of Σ_i y[i, i mod classes] through candle's backward.
        let classes = y.dim(1).expect("classes");
        let mut seed = vec![0.0f64; 2 * classes];
        seed[0] = 1.0;
        seed[classes + 1] = 1.0;
        let s = Tensor::from_vec(seed.clone(), (2, classes), &Device::Cpu).expect("seed");
        let grads = (y * s).expect("mul").sum_all().expect("sum").backward().expect("backward");
        let ours: Vec<f64> = grads.get(&x).expect("grad").flatten_all().expect("flat").to_vec1().expect("f64");
        let expected = graph_reference::input_gradient(&graph, &weights, &reference, &seed).expect("reference");
        // candle's backward agrees to about 1e-7 of the largest gradient (its forward to 1e-9).
        let scale = expected.iter().fold(0.0f64, |m, g| m.max(g.abs()));
        for (a, b) in ours.iter().zip(&expected) {
            assert!((a - b).abs() <= 1e-6 * scale, "gradient {a} vs {b} (largest {scale})");
        }
    }

    #[test]
    fn strided_convolutions_on_inputs_that_are_not_square_have_the_walk_s_gradient() {
        // candle's conv2d backward fails on some strided, non-square cases (docs/architecture.md).
        let graph = graph_preset("resnet18", [1, 24, 40], 3).expect("preset");
        let weights = init_graph(&graph, 4).expect("init");
        let x = Var::from_tensor(&input(2, graph.input, DType::F32)).expect("var");
        let y = forward(&graph, &weights, x.as_tensor(), &mut Mode::Eval).expect("forward");
        let seed = vec![1.0f32, 0.0, 0.0, 0.0, 1.0, 0.0];
        let s = Tensor::from_vec(seed.clone(), (2, 3), &Device::Cpu).expect("seed");
        let grads = (y * s).expect("mul").sum_all().expect("sum").backward().expect("backward");
        let ours: Vec<f32> = grads.get(&x).expect("grad").flatten_all().expect("flat").to_vec1().expect("f32");
        let model = GraphModel::new(&graph, &weights).expect("walk");
        let values: Vec<f32> = x.as_tensor().flatten_all().expect("flat").to_vec1().expect("f32");
        let fwd = walk(&model, &values, 2).expect("walk");
        let theirs = crate::graph_engine::input_gradient(&model, &fwd, &seed, crate::ReluMode::Standard).expect("grad");
        let scale = theirs.iter().fold(0.0f32, |m, g| m.max(g.abs()));
        for (a, b) in ours.iter().zip(&theirs) {
            assert!((a - b).abs() <= 1e-4 * scale, "{a} vs {b} (largest {scale})");
        }
    }

    #[test]
    fn a_resnet_s_logits_are_the_walk_s_and_training_mode_updates_the_running_statistics() {
        let graph = graph_preset("resnet18", [3, 32, 32], 10).expect("preset");
        let weights = init_graph(&graph, 2).expect("init");
        let x = input(3, graph.input, DType::F32);
        let ours: Vec<f32> = forward(&graph, &weights, &x, &mut Mode::Eval)
            .expect("fwd")
            .flatten_all()
            .expect("f")
            .to_vec1()
            .expect("v");
        let values: Vec<f32> = x.flatten_all().expect("flat").to_vec1().expect("f32");
        let model = GraphModel::new(&graph, &weights).expect("walk");
        let theirs = walk(&model, &values, 3).expect("walk");
        for (a, b) in ours.iter().zip(theirs.output()) {
            assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
        }
        let mut running = weights.clone();
        let mut rng = sanity_data::stream_rng(1, "t", 0);
        forward(&graph, &weights, &x, &mut Mode::Train(&mut rng, &mut running)).expect("train");
        let mean = running.get("bn1.running_mean").expect("mean").to_vec1::<f32>().expect("v");
        assert!(mean.iter().any(|&m| m != 0.0), "the batch's statistics moved the running mean");
    }
}
