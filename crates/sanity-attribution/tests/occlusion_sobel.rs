//! `occlusion` against Captum 0.9.0 and the `sobel` control against scikit-image 0.26.0, on the
//! PyTorch twins of `scripts/golden/occlusion_sobel_fixtures.py`; and the `random_map` control's
//! seeding.

mod common;

use candle_core::{DType, Device, Tensor};
use common::{Fixture, formula_weights, maps_of, max_rel_error};
use sanity_attribution::{Attribution, MethodSpec, RandomMap};
use sanity_model::{Architecture, Model, preset};
use std::sync::Arc;

/// Occlusion scores are differences of two float32 logits (Captum and ours evaluate them in
/// float32; lesson-cnn's seven convolutions reach 1.6e-4); the Sobel filter runs in float64 on
/// both sides.
const OCCLUSION_TOLERANCE: f32 = 5e-4;
const SOBEL_TOLERANCE: f32 = 1e-6;

#[test]
fn occlusion_matches_captum_and_sobel_matches_scikit_image() {
    let fixture: Fixture = serde_json::from_str(include_str!("fixtures/occlusion_sobel.json")).expect("fixture parses");
    let mut checked = 0;
    for case in fixture.cases {
        let (_, model, x, ids) = case.setup();
        for m in &case.methods {
            let spec: MethodSpec = serde_json::from_value(m.spec.clone()).expect("a valid method");
            let ours = maps_of(&spec, &model, &x, &case.targets, &ids);
            let tolerance = if spec.id() == "sobel" { SOBEL_TOLERANCE } else { OCCLUSION_TOLERANCE };
            let err = max_rel_error(&ours, &m.values);
            assert!(err < tolerance, "{} {}: max relative error {err:e}", case.preset, m.spec);
            checked += 1;
        }
    }
    assert_eq!(checked, 7, "every fixture method was checked");
}

#[test]
fn random_maps_depend_on_the_image_id_and_seed_only() {
    let arch = Arc::new(Architecture::new(preset("adebayo-cnn", [1, 28, 28]).expect("preset")).expect("valid"));
    let model = Model::new(arch.clone(), formula_weights(&arch));
    let x = Tensor::zeros((3, 1, 28, 28), DType::F32, &Device::Cpu).expect("x");
    let maps = |seed: u64, ids: &[u64]| -> Vec<f32> {
        let m = RandomMap { seed }.attribute(&model, &x, &[0, 0, 0], ids).expect("maps");
        m.flatten_all().expect("flat").to_vec1::<f32>().expect("v")
    };
    let a = maps(1, &[5, 6, 7]);
    // The same id gives the same map in another batch position; another seed another map.
    assert_eq!(maps(1, &[7, 5, 6])[..784], a[2 * 784..]);
    assert_ne!(maps(2, &[5, 6, 7]), a);
    assert!(a.iter().all(|v| (0.0..1.0).contains(v)));
    let mean = a.iter().sum::<f32>() / a.len() as f32;
    assert!((mean - 0.5).abs() < 0.02, "uniform [0, 1) values, mean {mean}");
}
