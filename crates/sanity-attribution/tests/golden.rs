//! Every method against Captum 0.9.0 (torch 2.15.0) on PyTorch twins of `adebayo-cnn`, on the
//! graph walk (float32) or the candle reference (float64, `maps_of`),
//! `phantom-cnn` and `lesson-cnn` (64x64, all seven convolutions), from
//! `scripts/golden/attribution_fixtures.py`. Both sides build the weights from the same formula
//! (tests/common), so no weights are stored.

use candle_core::DType;
use sanity_attribution::{MethodSpec, Rule};

/// Largest |ours − Captum| allowed, relative to the largest |Captum| value of the map set:
/// both sides compute in float32 with different summation orders; IG adds 20 such terms.
const REL_TOLERANCE: f32 = 2e-4;

mod common;

use common::{Fixture, maps_of, max_rel_error};

#[test]
fn every_method_matches_captum() {
    let fixture: Fixture = serde_json::from_str(include_str!("fixtures/attribution.json")).expect("fixture parses");
    let mut checked = 0;
    for case in fixture.cases {
        let (_, model, x, ids) = case.setup();
        let logits = model.forward(&x).expect("forward").flatten_all().expect("flat").to_vec1::<f32>().expect("f32");
        let err = max_rel_error(&logits, &case.logits);
        assert!(err < 1e-5, "{}: logits differ from PyTorch's by {err:e} (relative)", case.preset);
        for m in &case.methods {
            let spec: MethodSpec =
                serde_json::from_value(m.spec.clone()).expect("the fixture's spec is a valid method");
            let (model, x) = match m.dtype.as_str() {
                "f64" => (
                    model.with_weights(model.weights.to_dtype(DType::F64).expect("f64")),
                    x.to_dtype(DType::F64).expect("f64"),
                ),
                _ => (model.clone(), x.clone()),
            };
            let mut ours = maps_of(&spec, &model, &x, &case.targets, &ids);
            if let MethodSpec::IntegratedGradients { steps, rule: Rule::RiemannTrapezoid, .. } = spec {
                // Captum's trapezoid weights sum to (m − 1)/m (see integrated_gradients.rs).
                let captum_scale = (steps - 1) as f32 / steps as f32;
                ours.iter_mut().for_each(|v| *v *= captum_scale);
            }
            assert_eq!(ours.len(), m.values.len(), "{} {}: map size", case.preset, m.spec);
            let err = max_rel_error(&ours, &m.values);
            assert!(err < REL_TOLERANCE, "{} {}: max relative error {err:e}", case.preset, m.spec);
            checked += 1;
        }
    }
    assert_eq!(checked, 3 * 13, "every fixture method was checked");
}

#[test]
fn integrated_gradients_defaults_to_captum_s_rule_and_steps() {
    // Captum's IntegratedGradients.attribute defaults: n_steps = 50, method = "gausslegendre".
    let default: MethodSpec =
        serde_json::from_value(serde_json::json!({ "method": "integrated_gradients" })).expect("spec");
    let MethodSpec::IntegratedGradients { steps, rule, .. } = default else { panic!("{default:?}") };
    assert_eq!((steps, rule), (50, Rule::GaussLegendre));
    // A spec without a rule gives Captum's Gauss-Legendre maps (riemann_right's differ by ~1e-2).
    let fixture: Fixture = serde_json::from_str(include_str!("fixtures/attribution.json")).expect("fixture parses");
    let mut checked = 0;
    for case in fixture.cases {
        let (_, model, x, ids) = case.setup();
        for m in case.methods.iter().filter(|m| m.spec["rule"] == "gauss_legendre") {
            let mut spec = m.spec.clone();
            spec.as_object_mut().expect("object").remove("rule");
            let spec: MethodSpec = serde_json::from_value(spec).expect("spec");
            let (model, x) = match m.dtype.as_str() {
                "f64" => (
                    model.with_weights(model.weights.to_dtype(DType::F64).expect("f64")),
                    x.to_dtype(DType::F64).expect("f64"),
                ),
                _ => (model.clone(), x.clone()),
            };
            let ours = maps_of(&spec, &model, &x, &case.targets, &ids);
            let err = max_rel_error(&ours, &m.values);
            assert!(err < REL_TOLERANCE, "{}: the default rule is {err:e} from Captum's default", case.preset);
            checked += 1;
        }
    }
    assert!(checked >= 3, "{checked}");
}
