//! Analytic goldens for gradient and Grad-CAM on tiny hand-built models.

use candle_core::{Device, Tensor};
use sanity_attribution::{Attribution, GradCam, Gradient, MethodSpec};
use sanity_model::{Architecture, ArchitectureSpec, Model, Weights};
use std::sync::Arc;

/// Exact arithmetic on small integers and quarters: only f32 rounding remains.
const EXACT: f32 = 1e-6;

fn model(arch_toml: &str, tensors: &[(&str, Tensor)]) -> Model {
    let spec: ArchitectureSpec = toml::from_str(arch_toml).expect("architecture parses");
    let mut weights = Weights::new();
    for (name, t) in tensors {
        weights.insert(*name, t.clone());
    }
    Model::new(Arc::new(Architecture::new(spec).expect("valid architecture")), weights)
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().expect("flatten").to_vec1::<f32>().expect("f32 values")
}

/// conv1: 1 -> 2 channels, 1x1 kernels w = [2, −1], b = [0, 1]; global average pool;
/// logit = 3·g0 + 1·g1.
fn cam_model() -> Model {
    let dev = &Device::Cpu;
    model(
        r#"
        input = [1, 2, 2]
        [[layers]]
        type = "conv2d"
        name = "conv1"
        in_channels = 1
        out_channels = 2
        kernel_size = 1
        [[layers]]
        type = "global_avg_pool"
        [[layers]]
        type = "linear"
        name = "logit"
        in_features = 2
        out_features = 1
        "#,
        &[
            ("conv1.weight", Tensor::new(&[[[[2f32]]], [[[-1f32]]]], dev).expect("w")),
            ("conv1.bias", Tensor::new(&[0f32, 1.], dev).expect("b")),
            ("logit.weight", Tensor::new(&[[3f32, 1.]], dev).expect("w")),
            ("logit.bias", Tensor::new(&[0f32], dev).expect("b")),
        ],
    )
}

#[test]
fn gradcam_matches_the_hand_derivation() {
    // x = [[1, 2], [3, 4]].
    // A0 = 2x = [[2, 4], [6, 8]],  A1 = 1 − x = [[0, −1], [−2, −3]].
    // y = 3·mean(A0) + 1·mean(A1), so ∂y/∂A_k(i,j) = v_k / 4 and α = (3/4, 1/4).
    // L = ReLU(¾·A0 + ¼·A1) = [[1.5, 2.75], [4.0, 5.25]]; the layer is already 2x2, so the
    // bilinear upsampling to the input size is the identity.
    let m = cam_model();
    let x = Tensor::new(&[[[[1f32, 2.], [3., 4.]]]], &Device::Cpu).expect("x");
    let cam = GradCam::new(&m.arch, None).expect("conv1 is the last conv").attribute(&m, &x, &[0], &[0]).expect("cam");
    assert_eq!(cam.dims(), [1, 1, 2, 2]);
    for (got, want) in values(&cam).into_iter().zip([1.5f32, 2.75, 4.0, 5.25]) {
        assert!((got - want).abs() < EXACT, "{got} vs {want}");
    }
}

#[test]
fn gradcam_clips_negative_evidence() {
    // With v = (−1, 0) the weights are α = (−¼, 0): L = ReLU(−½x) = 0 everywhere.
    let dev = &Device::Cpu;
    let mut m = cam_model();
    m.weights.insert("logit.weight", Tensor::new(&[[-1f32, 0.]], dev).expect("w"));
    let x = Tensor::new(&[[[[1f32, 2.], [3., 4.]]]], dev).expect("x");
    let cam = GradCam::new(&m.arch, Some("conv1")).expect("layer").attribute(&m, &x, &[0], &[0]).expect("cam");
    assert!(values(&cam).iter().all(|&v| v == 0.0));
}

#[test]
fn gradient_of_a_linear_model_is_its_weight_row() {
    // logits = W·flatten(x) + b, so ∂logit_t/∂x = W[t], reshaped to the input.
    let dev = &Device::Cpu;
    let w = [[1f32, -2., 3., 0.5], [4., 5., -6., 7.]];
    let m = model(
        r#"
        input = [1, 2, 2]
        [[layers]]
        type = "flatten"
        [[layers]]
        type = "linear"
        name = "logits"
        in_features = 4
        out_features = 2
        "#,
        &[
            ("logits.weight", Tensor::new(&w, dev).expect("w")),
            ("logits.bias", Tensor::new(&[0.5f32, -1.], dev).expect("b")),
        ],
    );
    let x = Tensor::new(&[[[[0.1f32, 0.2], [0.3, 0.4]]], [[[1., 1.], [1., 1.]]]], dev).expect("x");
    let g = Gradient.attribute(&m, &x, &[1, 0], &[0, 1]).expect("gradient");
    assert_eq!(g.dims(), [2, 1, 2, 2]);
    let expected: Vec<f32> = w[1].iter().chain(&w[0]).copied().collect();
    assert_eq!(values(&g), expected);
}

#[test]
fn bad_targets_and_layers_are_refused_with_the_valid_choices() {
    let m = cam_model();
    let x = Tensor::new(&[[[[1f32, 2.], [3., 4.]]]], &Device::Cpu).expect("x");
    let err = Gradient.attribute(&m, &x, &[1], &[0]).expect_err("target 1 of a 1-output model").to_string();
    assert!(err.contains("out of range") && err.contains("1 outputs"), "{err}");
    let err = GradCam::new(&m.arch, Some("logit")).expect_err("a linear layer").to_string();
    assert!(err.contains("not a spatial") && err.contains("conv1"), "{err}");
    let spec: MethodSpec = toml::from_str("method = \"gradcam\"\nlayer = \"conv9\"").expect("parses");
    let err = spec.build(&m.arch, 0).err().expect("unknown layer").to_string();
    assert!(err.contains("conv9") && err.contains("conv1, gap1, logit"), "{err}");
}

#[test]
fn bad_occlusion_and_cam_settings_are_refused_with_the_reason() {
    let m = cam_model();
    let x = Tensor::new(&[[[[1f32, 2.], [3., 4.]]]], &Device::Cpu).expect("x");
    let occlusion = |toml_text: &str| -> String {
        let spec: MethodSpec = toml::from_str(toml_text).expect("parses");
        spec.build(&m.arch, 0).expect("builds").attribute(&m, &x, &[0], &[0]).expect_err("refused").to_string()
    };
    let err = occlusion("method = \"occlusion\"\nwindow = 1\nstride = 2");
    assert!(err.contains("stride = 2 > window = 1"), "{err}");
    let err = occlusion("method = \"occlusion\"\nwindow = 3\nstride = 1");
    assert!(err.contains("larger than the 2x2 input"), "{err}");
    let err = toml::from_str::<MethodSpec>("method = \"occlusion\"\nstride = 1").expect_err("no window").to_string();
    assert!(err.contains("missing field `window`"), "{err}");
    for method in ["gradcam_plus_plus", "xgradcam", "layercam", "scorecam"] {
        let spec: MethodSpec = toml::from_str(&format!("method = \"{method}\"\nlayer = \"logit\"")).expect("parses");
        let err = spec.build(&m.arch, 0).err().expect("a linear layer").to_string();
        assert!(err.contains(method) && err.contains("not a spatial"), "{err}");
    }
}

#[test]
fn a_noise_tunnel_refuses_an_input_that_is_not_finite_instead_of_panicking() {
    let m = cam_model();
    for bad in [f32::INFINITY, f32::NEG_INFINITY, f32::NAN] {
        let x = Tensor::new(&[[[[1f32, bad], [3., 4.]]]], &Device::Cpu).expect("x");
        for method in ["smoothgrad", "vargrad", "smoothgrad_squared"] {
            let spec: MethodSpec = toml::from_str(&format!("method = \"{method}\"\nsamples = 2")).expect("parses");
            let err = spec.build(&m.arch, 0).expect("builds").attribute(&m, &x, &[0], &[7]).expect_err("refused");
            let err = err.to_string();
            assert!(err.contains(method) && err.contains("input 7") && err.contains("finite"), "{err}");
        }
    }
}
