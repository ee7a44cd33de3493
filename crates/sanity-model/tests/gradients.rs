//! f64 finite-difference checks of d(output)/d(input) through whole models that use every layer
//! type (conv2d, relu, the project's max-pool, linear, flatten, global average pool).

use candle_core::{DType, Device, Tensor, Var};
use rand::Rng;
use sanity_data::stream_rng;
use sanity_model::{Architecture, ArchitectureSpec, Model, init_weights};
use std::sync::Arc;

/// Central differences in f64 with this step agree with the analytic gradient to
/// ~step² · f''' (≈1e-10) plus rounding (≈1e-16 / step ≈ 1e-10).
const FD_STEP: f64 = 1e-5;
/// Maximum |analytic − numeric| relative to the largest gradient entry.
const FD_TOLERANCE: f64 = 1e-6;

fn toml_arch(text: &str) -> Arc<Architecture> {
    let spec: ArchitectureSpec = toml::from_str(text).expect("test architecture parses");
    Arc::new(Architecture::new(spec).expect("test architecture is valid"))
}

/// Scalar output: a fixed linear functional of all logits, so every output is exercised.
fn functional(model: &Model, x: &Tensor) -> Tensor {
    let logits = model.forward(x).expect("forward");
    let k = logits.elem_count();
    let coeffs: Vec<f64> = (0..k).map(|i| 1.0 + 0.5 * i as f64).collect();
    let coeffs = Tensor::from_vec(coeffs, logits.shape(), &Device::Cpu).expect("coeffs");
    (logits * coeffs).expect("mul").sum_all().expect("sum")
}

fn check_gradient(arch: Arc<Architecture>, input_dims: &[usize], seed: u64) {
    let weights = init_weights(&arch, seed).expect("init").to_dtype(DType::F64).expect("f64");
    let model = Model::new(arch, weights);
    let mut rng = stream_rng(seed, "fd-input", 0);
    let n: usize = input_dims.iter().product();
    let x0: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    let x = Var::from_vec(x0.clone(), input_dims, &Device::Cpu).expect("var");
    let grads = functional(&model, x.as_tensor()).backward().expect("backward");
    let analytic =
        grads.get(x.as_tensor()).expect("input gradient").flatten_all().expect("flat").to_vec1::<f64>().expect("vec");
    let f = |xs: Vec<f64>| {
        let t = Tensor::from_vec(xs, input_dims, &Device::Cpu).expect("tensor");
        functional(&model, &t).to_scalar::<f64>().expect("scalar")
    };
    let scale = analytic.iter().fold(0.0f64, |m, g| m.max(g.abs()));
    assert!(scale > 1e-8, "the gradient is identically zero: the check would be vacuous");
    for i in 0..n {
        let (mut plus, mut minus) = (x0.clone(), x0.clone());
        plus[i] += FD_STEP;
        minus[i] -= FD_STEP;
        let numeric = (f(plus) - f(minus)) / (2.0 * FD_STEP);
        let err = (numeric - analytic[i]).abs() / scale;
        assert!(err < FD_TOLERANCE, "input {i}: analytic {} vs numeric {numeric} (rel err {err:e})", analytic[i]);
    }
}

#[test]
fn conv_relu_pool_gap_linear_match_finite_differences() {
    let arch = toml_arch(
        r#"
        input = [2, 7, 7]
        [[layers]]
        type = "conv2d"
        name = "conv1"
        in_channels = 2
        out_channels = 3
        kernel_size = 3
        padding = 1
        [[layers]]
        type = "relu"
        [[layers]]
        type = "max_pool2d"
        kernel_size = 2
        [[layers]]
        type = "conv2d"
        name = "conv2"
        in_channels = 3
        out_channels = 4
        kernel_size = 3
        padding = 1
        [[layers]]
        type = "relu"
        [[layers]]
        type = "global_avg_pool"
        [[layers]]
        type = "linear"
        name = "logits"
        in_features = 4
        out_features = 3
        "#,
    );
    // An odd 7x7 input: pooling in floor mode drops the last row and column.
    check_gradient(arch, &[2, 2, 7, 7], 11);
}

#[test]
fn conv_pool_flatten_linear_stack_matches_finite_differences() {
    let arch = toml_arch(
        r#"
        input = [1, 6, 6]
        [[layers]]
        type = "conv2d"
        name = "conv1"
        in_channels = 1
        out_channels = 2
        kernel_size = 5
        padding = 2
        [[layers]]
        type = "relu"
        [[layers]]
        type = "max_pool2d"
        kernel_size = 3
        stride = 1
        [[layers]]
        type = "flatten"
        [[layers]]
        type = "linear"
        name = "fc1"
        in_features = 32
        out_features = 5
        [[layers]]
        type = "relu"
        [[layers]]
        type = "dropout"
        p = 0.5
        [[layers]]
        type = "linear"
        name = "logits"
        in_features = 5
        out_features = 2
        "#,
    );
    // Overlapping 3x3 windows with stride 1 make the pool's backward accumulate.
    check_gradient(arch, &[2, 1, 6, 6], 12);
}

/// More images than several gemm chunks, so chunk boundaries are exercised.
const BATCH: usize = 11;

/// The project's conv against a direct loop, on shapes that include the ones where candle
/// 0.9.2's own `conv2d` is wrong (3 channels on 3x3) and a kernel wider than the padded-out
/// image reaches (5x5, padding 2, on 1x1: lesson-cnn's conv7 on 64x64 inputs).
#[test]
fn conv2d_matches_a_direct_loop() {
    for (c, hw, o, k, p) in [
        (1usize, 3usize, 1usize, 3usize, 1usize),
        (3, 3, 2, 3, 1),
        (3, 3, 2, 3, 0),
        (2, 5, 3, 5, 2),
        (4, 7, 2, 3, 1),
        (2, 1, 3, 5, 2),
        (1, 2, 2, 5, 2),
        (2, 3, 2, 3, 4),
    ] {
        let mut rng = stream_rng(1, "conv-probe", 0);
        let x: Vec<f64> = (0..BATCH * c * hw * hw).map(|_| rng.random_range(-1.0..1.0)).collect();
        let w: Vec<f64> = (0..o * c * k * k).map(|_| rng.random_range(-1.0..1.0)).collect();
        let b: Vec<f64> = (0..o).map(|_| rng.random_range(-1.0..1.0)).collect();
        let xt = Tensor::from_vec(x.clone(), (BATCH, c, hw, hw), &Device::Cpu).expect("x");
        let wt = Tensor::from_vec(w.clone(), (o, c, k, k), &Device::Cpu).expect("w");
        let bt = Tensor::from_vec(b.clone(), o, &Device::Cpu).expect("b");
        let y = sanity_model::ops::conv2d(&xt, &wt, &bt, p)
            .expect("conv")
            .flatten_all()
            .expect("flat")
            .to_vec1::<f64>()
            .expect("vec");
        let oh = hw + 2 * p + 1 - k;
        for n in 0..BATCH {
            for oc in 0..o {
                for oy in 0..oh {
                    for ox in 0..oh {
                        let mut s = b[oc];
                        for ic in 0..c {
                            for ky in 0..k {
                                for kx in 0..k {
                                    let (iy, ix) = ((oy + ky) as i64 - p as i64, (ox + kx) as i64 - p as i64);
                                    if (0..hw as i64).contains(&iy) && (0..hw as i64).contains(&ix) {
                                        s += x[((n * c + ic) * hw + iy as usize) * hw + ix as usize]
                                            * w[((oc * c + ic) * k + ky) * k + kx];
                                    }
                                }
                            }
                        }
                        let got = y[((n * o + oc) * oh + oy) * oh + ox];
                        assert!((s - got).abs() < 1e-12, "c={c} hw={hw} k={k} p={p}: {s} vs {got}");
                    }
                }
            }
        }
    }
}

/// Checks d(Σ c·op(a, b, c))/d(each operand) of a three-operand op against central differences.
fn check_op_operands(op: &dyn Fn(&Tensor, &Tensor, &Tensor) -> Tensor, shapes: [&[usize]; 3], seed: u64) {
    let mut rng = stream_rng(seed, "op-fd", 0);
    let init: Vec<Vec<f64>> = shapes
        .iter()
        .map(|s| (0..s.iter().product::<usize>()).map(|_| rng.random_range(-1.0..1.0)).collect())
        .collect();
    let vars: Vec<Var> =
        init.iter().zip(shapes).map(|(v, s)| Var::from_vec(v.clone(), s, &Device::Cpu).expect("var")).collect();
    let scalar = |t: [&Tensor; 3]| {
        let y = op(t[0], t[1], t[2]);
        let coeffs: Vec<f64> = (0..y.elem_count()).map(|i| 0.5 + (i % 7) as f64 * 0.25).collect();
        let coeffs = Tensor::from_vec(coeffs, y.shape(), &Device::Cpu).expect("coeffs");
        (y * coeffs).expect("mul").sum_all().expect("sum")
    };
    let grads = scalar([vars[0].as_tensor(), vars[1].as_tensor(), vars[2].as_tensor()]).backward().expect("backward");
    for which in 0..3 {
        let analytic = grads
            .get(vars[which].as_tensor())
            .expect("gradient of every operand")
            .flatten_all()
            .expect("flat")
            .to_vec1::<f64>()
            .expect("vec");
        let scale = analytic.iter().fold(1e-12f64, |m, g| m.max(g.abs()));
        for i in 0..init[which].len() {
            let eval = |delta: f64| {
                let mut values = init.clone();
                values[which][i] += delta;
                let ts: Vec<Tensor> = values
                    .iter()
                    .zip(shapes)
                    .map(|(v, s)| Tensor::from_vec(v.clone(), s, &Device::Cpu).expect("t"))
                    .collect();
                scalar([&ts[0], &ts[1], &ts[2]]).to_scalar::<f64>().expect("scalar")
            };
            let numeric = (eval(FD_STEP) - eval(-FD_STEP)) / (2.0 * FD_STEP);
            let err = (numeric - analytic[i]).abs() / scale;
            assert!(err < FD_TOLERANCE, "operand {which} entry {i}: analytic {} vs numeric {numeric}", analytic[i]);
        }
    }
}

#[test]
fn conv_input_weight_and_bias_gradients_match_finite_differences() {
    let conv = |x: &Tensor, w: &Tensor, b: &Tensor| sanity_model::ops::conv2d(x, w, b, 1).expect("conv");
    check_op_operands(&conv, [&[2, 3, 5, 4], &[2, 3, 3, 3], &[2]], 21);
    let valid = |x: &Tensor, w: &Tensor, b: &Tensor| sanity_model::ops::conv2d(x, w, b, 0).expect("conv");
    check_op_operands(&valid, [&[3, 2, 6, 6], &[4, 2, 5, 5], &[4]], 22);
    // Padding >= kernel size.
    let wide = |x: &Tensor, w: &Tensor, b: &Tensor| sanity_model::ops::conv2d(x, w, b, 2).expect("conv");
    check_op_operands(&wide, [&[2, 2, 3, 3], &[3, 2, 2, 2], &[3]], 25);
    // More images than one gemm chunk.
    check_op_operands(&conv, [&[BATCH, 1, 3, 3], &[2, 1, 3, 3], &[2]], 24);
}

#[test]
fn linear_input_weight_and_bias_gradients_match_finite_differences() {
    let linear = |x: &Tensor, w: &Tensor, b: &Tensor| sanity_model::ops::linear(x, w, b).expect("linear");
    check_op_operands(&linear, [&[3, 5], &[4, 5], &[4]], 23);
}

#[test]
fn relu_backward_rules_follow_their_definitions() {
    use sanity_model::ReluMode;
    let x = Var::new(&[-1.0f64, 2.0, 3.0, -4.0, 0.0], &Device::Cpu).expect("x");
    let g = Tensor::new(&[5.0f64, -6.0, 7.0, 8.0, 9.0], &Device::Cpu).expect("g");
    let cases = [
        (ReluMode::Standard, [0.0, -6.0, 7.0, 0.0, 0.0]),
        (ReluMode::Guided, [0.0, 0.0, 7.0, 0.0, 0.0]),
        (ReluMode::Deconv, [5.0, 0.0, 7.0, 8.0, 9.0]),
    ];
    for (mode, expected) in cases {
        let y = sanity_model::ops::relu(x.as_tensor(), mode).expect("relu");
        assert_eq!(y.to_vec1::<f64>().expect("vec"), [0.0, 2.0, 3.0, 0.0, 0.0]);
        let grads = (y * &g).expect("mul").sum_all().expect("sum").backward().expect("backward");
        let got = grads.get(x.as_tensor()).expect("grad").to_vec1::<f64>().expect("vec");
        assert_eq!(got, expected, "{mode:?}");
    }
}
