//! The direct forward/backward (`sanity_model::native`) against candle's autograd over the same
//! ops, float32, for every ReLU rule and for gradients at an inner layer.

use candle_core::{Device, Tensor, Var};
use rand::Rng;
use sanity_data::stream_rng;
use sanity_model::{Architecture, ArchitectureSpec, Mode, Model, ReluMode, init_weights, native, preset};
use std::sync::Arc;

/// Both paths compute in f32 with different summation orders.
const REL_TOLERANCE: f32 = 1e-4;

/// max |ours − reference| over the largest |reference|, asserting the sizes match and the
/// reference is not all zeros (which would make the check vacuous).
fn relative_error(reference: &[f32], ours: &[f32], what: &str) -> f32 {
    assert_eq!(ours.len(), reference.len(), "{what}: sizes differ");
    let scale = reference.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(scale > 0.0, "{what}: an all-zero reference");
    ours.iter().zip(reference).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max) / scale
}

fn check(preset_name: &str, input: [usize; 3], start: usize, relu: ReluMode) {
    check_shifted(preset_name, input, start, relu, &[]);
}

/// [`check`] with `shifts` added to the named tensors (negative biases make ReLU outputs sparse).
fn check_shifted(preset_name: &str, input: [usize; 3], start: usize, relu: ReluMode, shifts: &[(&str, f64)]) {
    let arch = Arc::new(Architecture::new(preset(preset_name, input).expect("preset")).expect("valid"));
    let mut weights = init_weights(&arch, 3).expect("init");
    for &(name, shift) in shifts {
        let shifted = (weights.get(name).expect("tensor") + shift).expect("shift");
        weights.insert(name, shifted);
    }
    let model = Model::new(arch.clone(), weights);
    let n = 10;
    let mut rng = stream_rng(5, "native", 0);
    let x: Vec<f32> = (0..n * input.iter().product::<usize>()).map(|_| rng.random_range(0.0..1.0)).collect();
    let x = Tensor::from_vec(x, [vec![n], input.to_vec()].concat(), &Device::Cpu).expect("x");
    let h = model.forward_range(&x, 0..start, &mut Mode::Eval).expect("prefix");
    let outputs = arch.num_outputs();
    let seed: Vec<f32> =
        (0..n * outputs).map(|i| if i % outputs == (i / outputs) % outputs { 1.0 } else { 0.0 }).collect();
    let layers = start..arch.layers.len();
    let values = h.flatten_all().expect("flat").to_vec1::<f32>().expect("f32");
    let ours = native::input_gradient(&model, &values, n, layers.clone(), &seed, relu).expect("native");
    let var = Var::from_tensor(&h).expect("var");
    let logits = model.forward_with(var.as_tensor(), layers, &mut Mode::Eval, relu).expect("forward");
    let seed_t = Tensor::from_vec(seed, logits.shape(), &Device::Cpu).expect("seed");
    let grads = (logits * seed_t).expect("mul").sum_all().expect("sum").backward().expect("backward");
    let reference =
        grads.get(var.as_tensor()).expect("grad").flatten_all().expect("flat").to_vec1::<f32>().expect("f32");
    let err = relative_error(&reference, &ours, preset_name);
    assert!(err < REL_TOLERANCE, "{preset_name} from layer {start} {relu:?}: relative error {err:e}");
}

#[test]
fn native_gradients_equal_autograd() {
    for relu in [ReluMode::Standard, ReluMode::Guided, ReluMode::Deconv] {
        check("adebayo-cnn", [1, 28, 28], 0, relu);
        check("phantom-cnn", [1, 32, 32], 0, relu);
    }
    // Mostly inactive pool2 and fc1 outputs (a quarter of fc1's inputs nonzero).
    for relu in [ReluMode::Standard, ReluMode::Guided, ReluMode::Deconv] {
        check_shifted("adebayo-cnn", [1, 28, 28], 0, relu, &[("conv2.bias", -0.9), ("fc1.bias", -0.4)]);
    }
    // From inside the network (Grad-CAM's split after conv2 / conv4).
    check("adebayo-cnn", [1, 28, 28], 4, ReluMode::Standard);
    check("phantom-cnn", [1, 32, 32], 10, ReluMode::Standard);
}

#[test]
fn several_models_share_unchanged_layers_and_match_one_at_a_time() {
    use sanity_model::{Reinit, reinitialize};
    let arch = Arc::new(Architecture::new(preset("adebayo-cnn", [1, 28, 28]).expect("preset")).expect("valid"));
    let original = Model::new(arch.clone(), init_weights(&arch, 3).expect("init"));
    // A top-down cascade (logits, then fc1, conv2, conv1) and a bottom-up first step.
    let mut rng = stream_rng(8, "native", 1);
    let mut models = vec![original.clone()];
    let mut weights = original.weights.clone();
    for layer in ["logits", "fc1", "conv2", "conv1"] {
        weights = reinitialize(&weights, &arch, layer, &Reinit::Original {}, &mut rng).expect("reinit");
        models.push(original.with_weights(weights.clone()));
    }
    let bottom_up = reinitialize(&original.weights, &arch, "conv1", &Reinit::Original {}, &mut rng).expect("reinit");
    models.push(original.with_weights(bottom_up));
    let n = 3;
    let x: Vec<f32> = (0..n * 784).map(|_| rng.random_range(0.0..1.0)).collect();
    let seeds: Vec<Vec<f32>> = (0..models.len())
        .map(|m| (0..n * 10).map(|i| if i % 10 == (i / 10 + m) % 10 { 1.0 } else { 0.0 }).collect())
        .collect();
    let refs: Vec<&Model> = models.iter().collect();
    let seed_refs: Vec<&[f32]> = seeds.iter().map(|s| s.as_slice()).collect();
    for relu in [ReluMode::Standard, ReluMode::Guided] {
        let together = native::input_gradients(&refs, &x, n, 0..arch.layers.len(), &seed_refs, relu).expect("native");
        for (m, model) in models.iter().enumerate() {
            let alone = native::input_gradient(model, &x, n, 0..arch.layers.len(), &seeds[m], relu).expect("native");
            assert_eq!(together[m], alone, "model {m} {relu:?}");
        }
    }
}

#[test]
fn segment_sums_equal_the_sums_of_the_inputs_gradients() {
    use sanity_model::{Reinit, reinitialize};
    let segments = [3, 1, 4, 2];
    let n: usize = segments.iter().sum();
    // Below the sum point (the lowest ReLU or pool) a batch norm, and an overlapping pool that
    // the ReLU does not fuse with.
    let custom: ArchitectureSpec = toml::from_str(
        r#"
        input = [2, 9, 9]
        [[layers]]
        type = "conv2d"
        name = "conv1"
        in_channels = 2
        out_channels = 4
        kernel_size = 3
        padding = 1
        [[layers]]
        type = "batch_norm2d"
        name = "bn1"
        num_features = 4
        [[layers]]
        type = "relu"
        [[layers]]
        type = "max_pool2d"
        kernel_size = 3
        stride = 2
        [[layers]]
        type = "flatten"
        [[layers]]
        type = "linear"
        name = "fc"
        in_features = 64
        out_features = 3
        "#,
    )
    .expect("architecture");
    let custom = Arc::new(Architecture::new(custom).expect("valid"));
    let adebayo = Arc::new(Architecture::new(preset("adebayo-cnn", [1, 28, 28]).expect("preset")).expect("valid"));
    let mlp = Arc::new(Architecture::new(preset("adebayo-mlp", [1, 28, 28]).expect("preset")).expect("valid"));
    // Starting at: a first conv on one channel (adebayo conv1), a first conv with long window
    // rows that the max-pool would route (adebayo conv2), a ReLU, a pool whose ReLU lies
    // outside the range (adebayo pool1, pool2), a first linear layer (the MLP), the last layer
    // alone (summed at the seed), a conv and batch norm below the sum point, and an overlapping
    // pool as the sum point.
    for (preset_name, arch, start) in [
        ("adebayo-cnn", &adebayo, 0),
        ("adebayo-cnn", &adebayo, 3),
        ("adebayo-cnn", &adebayo, 1),
        ("adebayo-cnn", &adebayo, 2),
        ("adebayo-cnn", &adebayo, 5),
        ("adebayo-mlp", &mlp, 0),
        ("adebayo-mlp", &mlp, 7),
        ("conv-bn-overlapping-pool", &custom, 0),
        ("conv-bn-overlapping-pool", &custom, 3),
    ] {
        let (arch, input) = (arch.clone(), arch.spec.input);
        let original = Model::new(arch.clone(), init_weights(&arch, 4).expect("init"));
        let mut rng = stream_rng(9, "native", start as u64);
        // The original, a model sharing every layer but the last, and one differing in the first.
        let last = arch.layers.iter().rev().find(|l| l.op.parameter_shapes().is_some()).expect("layer").name.clone();
        let first =
            arch.layers[start..].iter().find(|l| l.op.parameter_shapes().is_some()).expect("layer").name.clone();
        let top = reinitialize(&original.weights, &arch, &last, &Reinit::Original {}, &mut rng).expect("reinit");
        let bottom = reinitialize(&original.weights, &arch, &first, &Reinit::Original {}, &mut rng).expect("reinit");
        let models = [original.clone(), original.with_weights(top), original.with_weights(bottom)];
        let x = Tensor::from_vec(
            (0..n * input.iter().product::<usize>()).map(|_| rng.random_range(0.0..1.0f32)).collect::<Vec<_>>(),
            [vec![n], input.to_vec()].concat(),
            &Device::Cpu,
        )
        .expect("x");
        let h = original.forward_range(&x, 0..start, &mut Mode::Eval).expect("prefix");
        let values = h.flatten_all().expect("flat").to_vec1::<f32>().expect("f32");
        let per = values.len() / n;
        // Weighted one-hot seeds, as integrated gradients' step weights.
        let outputs = arch.num_outputs();
        let seeds: Vec<Vec<f32>> = (0..models.len())
            .map(|m| {
                (0..n * outputs)
                    .map(|i| {
                        if i % outputs == (i / outputs + m) % outputs { 0.5 + (i / outputs) as f32 * 0.1 } else { 0.0 }
                    })
                    .collect()
            })
            .collect();
        let refs: Vec<&Model> = models.iter().collect();
        let seed_refs: Vec<&[f32]> = seeds.iter().map(|s| s.as_slice()).collect();
        let layers = start..arch.layers.len();
        for relu in [ReluMode::Standard, ReluMode::Guided, ReluMode::Deconv] {
            let each = native::input_gradients(&refs, &values, n, layers.clone(), &seed_refs, relu).expect("each");
            let sums = native::input_gradient_sums(&refs, &values, n, layers.clone(), &seed_refs, relu, &segments)
                .expect("sums");
            for (m, (each, sums)) in each.iter().zip(&sums).enumerate() {
                assert_eq!(sums.len(), segments.len() * per);
                let mut expected = vec![0.0f64; segments.len() * per];
                let mut row = 0;
                for (s, &count) in segments.iter().enumerate() {
                    for _ in 0..count {
                        for (e, &g) in
                            expected[s * per..(s + 1) * per].iter_mut().zip(&each[row * per..(row + 1) * per])
                        {
                            *e += f64::from(g);
                        }
                        row += 1;
                    }
                }
                let scale = expected.iter().fold(0.0f64, |a, v| a.max(v.abs()));
                assert!(scale > 0.0, "{preset_name} from {start}: zero gradients");
                let err = sums.iter().zip(&expected).map(|(&a, b)| (f64::from(a) - b).abs()).fold(0.0, f64::max);
                assert!(
                    err < 1e-5 * scale,
                    "{preset_name} from {start}, model {m}, {relu:?}: error {err:e} of {scale:e}"
                );
            }
        }
    }
    // Segments must split the inputs.
    let arch = Arc::new(Architecture::new(preset("adebayo-mlp", [1, 28, 28]).expect("preset")).expect("valid"));
    let model = Model::new(arch.clone(), init_weights(&arch, 4).expect("init"));
    let (x, seed) = (vec![0.5f32; 2 * 784], vec![1.0f32; 20]);
    for bad in [&[1][..], &[2, 0], &[3]] {
        let result =
            native::input_gradient_sums(&[&model], &x, 2, 0..arch.layers.len(), &[&seed], ReluMode::Standard, bad);
        assert!(result.is_err(), "{bad:?}");
    }
}

#[test]
fn native_outputs_equal_the_candle_forward() {
    for (preset_name, input, ranges) in [
        ("adebayo-cnn", [1, 28, 28], vec![0..4, 0..10, 3..7, 1..3, 2..2]),
        ("phantom-cnn", [1, 32, 32], vec![0..10, 0..13]),
        ("adebayo-mlp", [1, 28, 28], vec![0..7, 0..3]),
    ] {
        let arch = Arc::new(Architecture::new(preset(preset_name, input).expect("preset")).expect("valid"));
        let model = Model::new(arch.clone(), init_weights(&arch, 6).expect("init"));
        let n = 3;
        let mut rng = stream_rng(6, "native-outputs", 0);
        let x: Vec<f32> = (0..n * input.iter().product::<usize>()).map(|_| rng.random_range(0.0..1.0)).collect();
        let x = Tensor::from_vec(x, [vec![n], input.to_vec()].concat(), &Device::Cpu).expect("x");
        for range in ranges {
            let range = range.start..range.end.min(arch.layers.len());
            let h = model.forward_range(&x, 0..range.start, &mut Mode::Eval).expect("prefix");
            let values = h.flatten_all().expect("flat").to_vec1::<f32>().expect("f32");
            let ours = native::outputs(&model, &values, n, range.clone()).expect("native");
            let reference = model.forward_range(&h, range.clone(), &mut Mode::Eval).expect("candle");
            let reference = reference.flatten_all().expect("flat").to_vec1::<f32>().expect("f32");
            let err = relative_error(&reference, &ours, preset_name);
            assert!(err < REL_TOLERANCE, "{preset_name} {range:?}: relative error {err:e}");
        }
    }
}
