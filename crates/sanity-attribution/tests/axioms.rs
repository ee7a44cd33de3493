//! Axioms: IG completeness with an error that shrinks with the steps, SmoothGrad with zero noise
//! equals its inner method, VarGrad of zero noise is zero, and batching never changes a map.

use candle_core::{DType, Device, Tensor};
use rand::Rng;
use sanity_attribution::{MethodSpec, ReferenceSet};
use sanity_data::stream_rng;
use sanity_model::{Architecture, Model, init_weights, preset};
use std::sync::Arc;

/// The adebayo-cnn with seeded float32 weights.
fn float32_model() -> Model {
    let arch = Arc::new(Architecture::new(preset("adebayo-cnn", [1, 28, 28]).expect("preset")).expect("valid"));
    Model::new(arch.clone(), init_weights(&arch, 4).expect("init"))
}

/// [`float32_model`] in f64 (candle's autograd).
fn model() -> Model {
    let m = float32_model();
    m.with_weights(m.weights.to_dtype(DType::F64).expect("f64"))
}

/// max |a − b| over the largest |a|, asserting the reference is not all zeros.
fn relative_error(reference: &[f64], other: &[f64]) -> f64 {
    assert_eq!(reference.len(), other.len(), "the maps differ in size");
    let scale = reference.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(scale > 0.0, "a zero reference would make the check vacuous");
    reference.iter().zip(other).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max) / scale
}

fn inputs(n: usize, seed: u64) -> Tensor {
    let mut rng = stream_rng(seed, "axiom-inputs", 0);
    let v: Vec<f64> = (0..n * 784).map(|_| rng.random_range(0.0..1.0)).collect();
    Tensor::from_vec(v, (n, 1, 28, 28), &Device::Cpu).expect("x")
}

fn spec(toml_text: &str) -> MethodSpec {
    toml::from_str(toml_text).expect("valid method spec")
}

fn values(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64).expect("f64").flatten_all().expect("flat").to_vec1::<f64>().expect("vec")
}

#[test]
fn integrated_gradients_are_complete_and_converge() {
    let m = model();
    let x = inputs(2, 1);
    let logits = values(&m.forward(&x).expect("forward"));
    let base = values(&m.forward(&x.zeros_like().expect("zeros")).expect("forward"));
    let targets = [3usize, 8];
    for rule in ["riemann_trapezoid", "gauss_legendre", "riemann_middle"] {
        let mut previous = f64::INFINITY;
        for steps in [4, 16, 64] {
            let ig = spec(&format!("method = \"integrated_gradients\"\nsteps = {steps}\nrule = \"{rule}\""));
            let maps = ig.build(&m.arch, 0).expect("build").attribute(&m, &x, &targets, &[0, 1]).expect("ig");
            let v = values(&maps);
            let mut worst = 0.0f64;
            for (i, &t) in targets.iter().enumerate() {
                let total: f64 = v[i * 784..(i + 1) * 784].iter().sum();
                let expected = logits[i * 10 + t] - base[i * 10 + t];
                worst = worst.max((total - expected).abs() / expected.abs().max(1e-9));
            }
            assert!(
                worst <= previous + 1e-12,
                "{rule}: completeness error grew from {previous:e} to {worst:e} at {steps} steps"
            );
            previous = worst;
        }
        assert!(previous < 0.02, "{rule}: completeness error {previous:e} at 64 steps");
    }
}

#[test]
fn smoothgrad_with_zero_noise_is_its_inner_method_and_vargrad_is_zero() {
    let m = model();
    let x = inputs(3, 2);
    let targets = [1usize, 2, 3];
    let ids = [10u64, 11, 12];
    for inner in ["gradient", "guided_backprop", "gradcam"] {
        let plain = values(
            &spec(&format!("method = \"{inner}\""))
                .build(&m.arch, 0)
                .expect("build")
                .attribute(&m, &x, &targets, &ids)
                .expect("maps"),
        );
        let smooth =
            spec(&format!("method = \"smoothgrad\"\nsamples = 3\nnoise = 0.0\ninner = {{ method = \"{inner}\" }}"));
        let sg = values(&smooth.build(&m.arch, 0).expect("build").attribute(&m, &x, &targets, &ids).expect("sg"));
        for (a, b) in plain.iter().zip(&sg) {
            assert!((a - b).abs() <= 1e-12 * a.abs().max(1.0), "{inner}: {a} vs {b}");
        }
        let var = spec(&format!("method = \"vargrad\"\nsamples = 3\nnoise = 0.0\ninner = {{ method = \"{inner}\" }}"));
        let vg = values(&var.build(&m.arch, 0).expect("build").attribute(&m, &x, &targets, &ids).expect("vg"));
        assert!(vg.iter().all(|v| v.abs() < 1e-20), "{inner}: VarGrad of identical samples is not 0");
    }
}

#[test]
fn batching_does_not_change_any_map() {
    let m = model();
    let x = inputs(4, 3);
    let targets = [0usize, 5, 9, 2];
    let ids = [40u64, 41, 42, 43];
    let methods = [
        "method = \"smoothgrad\"\nsamples = 5\nnoise = 0.2\nbatch = 3",
        "method = \"smoothgrad_squared\"\nsamples = 4\nbatch = 7",
        "method = \"vargrad\"\nsamples = 4\nbatch = 5\ninner = { method = \"integrated_gradients\", steps = 3, batch = 2 }",
        "method = \"integrated_gradients\"\nsteps = 7\nbatch = 5",
        "method = \"guided_gradcam\"",
    ];
    for text in methods {
        let method = spec(text).build(&m.arch, 9).expect("build");
        let together = values(&method.attribute(&m, &x, &targets, &ids).expect("batched"));
        let per = together.len() / 4;
        for i in 0..4 {
            let one =
                method.attribute(&m, &x.narrow(0, i, 1).expect("row"), &targets[i..=i], &ids[i..=i]).expect("single");
            let one = values(&one);
            for (a, b) in one.iter().zip(&together[i * per..(i + 1) * per]) {
                assert!(
                    (a - b).abs() <= 1e-9 * a.abs().max(1e-6),
                    "{text}: image {i} differs when batched: {a} vs {b}"
                );
            }
        }
    }
}

#[test]
fn noise_is_seeded_per_image_id() {
    let m = model();
    let x = inputs(1, 4);
    let sg = spec("method = \"smoothgrad\"\nsamples = 4").build(&m.arch, 1).expect("build");
    let a = values(&sg.attribute(&m, &x, &[2], &[7]).expect("sg"));
    let b = values(&sg.attribute(&m, &x, &[2], &[7]).expect("sg"));
    let c = values(&sg.attribute(&m, &x, &[2], &[8]).expect("sg"));
    assert_eq!(a, b, "same id, same noise");
    assert_ne!(a, c, "another id draws other noise");
}

#[test]
fn uniform_noise_baselines_are_seeded_per_image_and_complete() {
    let m = model();
    let x = inputs(2, 3);
    let targets = [1usize, 6];
    let ig = spec(
        "method = \"integrated_gradients\"\nsteps = 64\nrule = \"gauss_legendre\"\nbaseline = { kind = \"uniform\", low = 0.0, high = 0.5 }",
    );
    let method = ig.build(&m.arch, 7).expect("build");
    let maps = values(&method.attribute(&m, &x, &targets, &[10, 11]).expect("ig"));
    // x' drawn as documented (uniform in [low, high) from stream_rng(seed, "ig_baseline", id)):
    // then Σ IG = F(x) − F(x') checks both the draw and completeness.
    let baseline: Vec<f64> = [10u64, 11]
        .iter()
        .flat_map(|&id| {
            let mut rng = stream_rng(7, "ig_baseline", id);
            (0..784).map(move |_| rng.random_range(0.0..0.5)).collect::<Vec<f64>>()
        })
        .collect();
    let x_base = Tensor::from_vec(baseline, (2, 1, 28, 28), &Device::Cpu).expect("baseline");
    let (fx, fb) = (values(&m.forward(&x).expect("f")), values(&m.forward(&x_base).expect("f")));
    for (i, &t) in targets.iter().enumerate() {
        let total: f64 = maps[i * 784..(i + 1) * 784].iter().sum();
        let expected = fx[i * 10 + t] - fb[i * 10 + t];
        assert!((total - expected).abs() < 0.02 * expected.abs().max(1e-6), "image {i}: {total} vs {expected}");
    }
    // The same image id in another batch position gets the same baseline, hence the same map.
    let swapped = values(&method.attribute(&m, &x.narrow(0, 1, 1).expect("x1"), &[6], &[11]).expect("ig"));
    assert_eq!(swapped, maps[784..]);
}

#[test]
fn expected_gradients_with_one_reference_estimate_integrated_gradients() {
    let m = float32_model();
    let arch = m.arch.clone();
    let x = inputs(2, 5).to_dtype(DType::F32).expect("f32");
    let targets = [4usize, 9];
    let ig = spec("method = \"integrated_gradients\"\nsteps = 64\nrule = \"gauss_legendre\"");
    let ig = values(&ig.build(&arch, 0).expect("build").attribute(&m, &x, &targets, &[0, 1]).expect("ig"));
    // A reference set of one all-zero image: EG is a Monte Carlo estimate of IG from zeros.
    let zero = Tensor::zeros((1, 1, 28, 28), DType::F32, &Device::Cpu).expect("zeros");
    let eg = spec("method = \"expected_gradients\"\nsamples = 400\nbatch = 200");
    let zero = ReferenceSet::from_tensor(&zero).expect("references");
    let method = eg.build_with(&arch, 3, Some(&zero)).expect("build");
    let eg = values(&method.attribute(&m, &x, &targets, &[0, 1]).expect("eg"));
    let norm = |v: &[f64]| v.iter().map(|a| a * a).sum::<f64>().sqrt();
    let diff: Vec<f64> = eg.iter().zip(&ig).map(|(a, b)| a - b).collect();
    let rel = norm(&diff) / norm(&ig);
    assert!(rel < 0.1, "relative L2 distance to IG {rel}");
    // The same image id gets the same draws in another batch position.
    let alone = values(&method.attribute(&m, &x.narrow(0, 1, 1).expect("x1"), &[9], &[1]).expect("eg"));
    assert_eq!(alone, eg[784..]);
    // Without a reference set the method refuses to run and says where one comes from.
    let err =
        spec("method = \"expected_gradients\"").build(&arch, 0).expect("build").attribute(&m, &x, &targets, &[0, 1]);
    assert!(err.expect_err("no references").to_string().contains("--references"));
}

#[test]
fn all_models_at_once_equal_one_model_at_a_time() {
    use sanity_model::{Reinit, reinitialize};
    // float32, the sequential reference's models together.
    let original = float32_model();
    let arch = original.arch.clone();
    let mut rng = stream_rng(2, "stages", 0);
    let logits = reinitialize(&original.weights, &arch, "logits", &Reinit::Original {}, &mut rng).expect("reinit");
    let conv2 = reinitialize(&logits, &arch, "conv2", &Reinit::Original {}, &mut rng).expect("reinit");
    let models = [original.clone(), original.with_weights(logits), original.with_weights(conv2)];
    let refs: Vec<&Model> = models.iter().collect();
    let x = inputs(2, 6).to_dtype(DType::F32).expect("f32");
    let ids = [3u64, 4];
    let targets: Vec<Vec<usize>> = vec![vec![1, 2], vec![3, 4], vec![5, 6]];
    let target_refs: Vec<&[usize]> = targets.iter().map(|t| t.as_slice()).collect();
    let zero = Tensor::zeros((1, 1, 28, 28), DType::F32, &Device::Cpu).expect("zeros");
    let zero = ReferenceSet::from_tensor(&zero).expect("references");
    for text in [
        "method = \"gradient\"",
        "method = \"gradient_x_input\"",
        "method = \"guided_backprop\"",
        "method = \"integrated_gradients\"\nsteps = 5\nbatch = 3",
        "method = \"smoothgrad\"\nsamples = 4\nbatch = 6",
        "method = \"smoothgrad\"\nsamples = 3\nbatch = 2\ninner = { method = \"guided_backprop\" }",
        "method = \"expected_gradients\"\nsamples = 3\nbatch = 4",
        "method = \"vargrad\"\nsamples = 3\nbatch = 4\ninner = { method = \"integrated_gradients\", steps = 2 }",
        "method = \"guided_gradcam\"",
    ] {
        let method = spec(text).build_with(&arch, 5, Some(&zero)).expect("build");
        let together = method.attribute_models(&refs, &x, &target_refs, &ids).expect("together");
        for (k, model) in models.iter().enumerate() {
            let alone = values(&method.attribute(model, &x, &targets[k], &ids).expect("alone"));
            assert_eq!(values(&together[k]), alone, "{text}: model {k}");
        }
    }
}

/// A method that hides [`sanity_attribution::Attribution::gradient_rule`] of the one it wraps.
struct Opaque(Box<dyn sanity_attribution::Attribution>);

impl sanity_attribution::Attribution for Opaque {
    fn id(&self) -> &'static str {
        self.0.id()
    }

    fn attribute(
        &self,
        model: &Model,
        x: &Tensor,
        targets: &[usize],
        ids: &[u64],
    ) -> sanity_attribution::error::Result<Tensor> {
        self.0.attribute(model, x, targets, ids)
    }
}

#[test]
fn smoothgrad_averaged_in_the_backward_equals_the_mean_of_its_noisy_maps() {
    use sanity_attribution::{Aggregate, Attribution, NoiseTunnel};
    // float32: the tunnel's summed gradients against its maps one by one.
    let m = float32_model();
    let arch = m.arch.clone();
    let x = inputs(3, 7).to_dtype(DType::F32).expect("f32");
    let (targets, ids) = ([4usize, 1, 7], [20u64, 21, 22]);
    for inner in ["gradient", "guided_backprop", "deconvnet"] {
        let tunnel = |inner: Box<dyn Attribution>, batch| NoiseTunnel {
            inner,
            aggregate: Aggregate::Mean,
            samples: 6,
            noise: 0.2,
            batch,
            seed: 3,
        };
        let build = || spec(&format!("method = \"{inner}\"")).build(&arch, 0).expect("build");
        assert!(build().gradient_rule().is_some(), "{inner} is a plain gradient");
        let general = values(&tunnel(Box::new(Opaque(build())), 4).attribute(&m, &x, &targets, &ids).expect("maps"));
        // Whole images per pass (12 of 18 points), and one image split over passes (4 of 6).
        for batch in [12, 4] {
            let summed = values(&tunnel(build(), batch).attribute(&m, &x, &targets, &ids).expect("maps"));
            let err = relative_error(&general, &summed);
            assert!(err < 1e-5, "{inner}, batch {batch}: relative error {err:e}");
        }
    }
}

#[test]
fn float32_integrated_gradients_do_not_depend_on_the_batch() {
    let m = float32_model();
    let arch = m.arch.clone();
    let x = inputs(3, 8).to_dtype(DType::F32).expect("f32");
    let (targets, ids) = ([2usize, 6, 9], [30u64, 31, 32]);
    let ig = |batch| {
        let text = format!("method = \"integrated_gradients\"\nsteps = 10\nbatch = {batch}");
        values(&spec(&text).build(&arch, 0).expect("build").attribute(&m, &x, &targets, &ids).expect("ig"))
    };
    let reference = ig(1);
    // Steps split over passes: the same up to float32 rounding.
    for batch in [3, 10, 25, 100] {
        let err = relative_error(&reference, &ig(batch));
        assert!(err < 1e-5, "batch {batch}: relative error {err:e}");
    }
    // Whole images per pass: the same bytes, however many images share the pass.
    assert_eq!(ig(10), ig(25));
    assert_eq!(ig(10), ig(100));
}
