//! The class-activation-map family against pytorch-grad-cam 1.5.7 (torch 2.15.0) on PyTorch
//! twins of `adebayo-cnn`, `phantom-cnn` and `lesson-cnn`, from `scripts/golden/cam_fixtures.py`.
//! pytorch-grad-cam scales each map to [0, 1] (min-max at the layer's resolution, again after
//! the resize); min-max commutes with the bilinear resize, so our raw maps are compared after one
//! min-max scaling (the post-processing step `normalize{min_max}`).

mod common;

use common::{Fixture, maps_of};
use sanity_attribution::MethodSpec;

/// Largest |ours − pytorch-grad-cam| on maps scaled to [0, 1]: float32 on both sides, and
/// pytorch-grad-cam's 1e-7 in its scaling.
const TOLERANCE: f32 = 1e-4;

/// `(m − min) / (max − min)`. pytorch-grad-cam divides by `1e-7 + max − min` twice (before and
/// after the resize), which cancels the 1e-7 to first order; dividing once with it would not
/// (these maps' maxima go down to 5e-6).
fn min_max(map: &[f32]) -> Vec<f32> {
    let (lo, hi) = map.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
    map.iter().map(|v| (v - lo) / (hi - lo)).collect()
}

#[test]
fn every_cam_matches_pytorch_grad_cam() {
    let fixture: Fixture = serde_json::from_str(include_str!("fixtures/cams.json")).expect("fixture parses");
    let (mut checked, mut non_empty) = (0, 0);
    for case in fixture.cases {
        let (_, model, x, ids) = case.setup();
        let [_, h, w] = case.input_shape;
        for m in &case.methods {
            let spec: MethodSpec =
                serde_json::from_value(m.spec.clone()).expect("the fixture's spec is a valid method");
            let ours = maps_of(&spec, &model, &x, &case.targets, &ids);
            assert_eq!(ours.len(), m.values.len(), "{} {}: map size", case.preset, m.spec);
            for (i, (ours, theirs)) in ours.chunks_exact(h * w).zip(m.values.chunks_exact(h * w)).enumerate() {
                if theirs.iter().all(|&v| v == 0.0) {
                    // ReLU(Σ_k w_k A_k) is zero everywhere (pytorch-grad-cam scales it to zeros).
                    assert!(
                        ours.iter().all(|&v| v == 0.0),
                        "{} {} image {i}: expected an empty map",
                        case.preset,
                        m.spec
                    );
                    continue;
                }
                non_empty += 1;
                let err = min_max(ours).iter().zip(theirs).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
                assert!(err < TOLERANCE, "{} {} image {i}: max error {err:e}", case.preset, m.spec);
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 5 * 4, "every fixture method was checked");
    assert!(non_empty >= 40, "only {non_empty} non-empty maps were compared");
}
