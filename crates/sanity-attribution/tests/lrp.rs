//! LRP against Captum 0.9.0 (`scripts/golden/lrp_fixtures.py`), and relevance conservation.

mod common;

use candle_core::{Device, Tensor};
use common::{Fixture, maps_of, max_rel_error};
use rand::Rng;
use sanity_attribution::MethodSpec;
use sanity_data::stream_rng;
use sanity_model::{Architecture, Model, init_weights, preset};
use std::sync::Arc;

/// Both sides propagate in float32 with different summation orders.
const REL_TOLERANCE: f32 = 2e-4;

/// The model with every bias replaced by `f(bias)`.
fn map_biases(model: &Model, f: impl Fn(&Tensor) -> Tensor) -> Model {
    let mut weights = model.weights.clone();
    let names: Vec<String> = weights.iter().map(|(n, _)| n.clone()).filter(|n| n.ends_with(".bias")).collect();
    for name in names {
        let mapped = f(weights.get(&name).expect("bias"));
        weights.insert(name, mapped);
    }
    model.with_weights(weights)
}

fn maps(spec: &str, model: &Model, x: &Tensor, targets: &[usize]) -> Vec<f32> {
    let spec: MethodSpec = toml::from_str(spec).expect("spec");
    let ids: Vec<u64> = (0..targets.len() as u64).collect();
    maps_of(&spec, model, x, targets, &ids)
}

#[test]
fn lrp_matches_captum() {
    let fixture: Fixture = serde_json::from_str(include_str!("fixtures/lrp.json")).expect("fixture parses");
    let mut checked = 0;
    for case in fixture.cases {
        let (_, model, x, _) = case.setup();
        for m in &case.methods {
            let spec: MethodSpec = serde_json::from_value(m.spec.clone()).expect("a valid method");
            let model = match m.biases.as_deref() {
                Some("abs") => map_biases(&model, |b| b.abs().expect("abs")),
                _ => model.clone(),
            };
            let ours = maps(&toml::to_string(&spec).expect("toml"), &model, &x, &case.targets);
            let err = max_rel_error(&ours, &m.values);
            assert!(err < REL_TOLERANCE, "{} {}: max relative error {err:e}", case.preset, m.spec);
            checked += 1;
        }
    }
    assert_eq!(checked, 6, "every fixture method was checked");
}

#[test]
fn relevance_is_conserved_without_biases() {
    // adebayo-cnn (max-pool, flatten) and phantom-cnn (global average pooling, dropout); the
    // signed inputs of the second run send α-β through its negative-input terms.
    for (name, input, outputs, low) in [
        ("adebayo-cnn", [1, 28, 28], 10, 0.0),
        ("phantom-cnn", [1, 32, 32], 1, 0.0),
        ("adebayo-cnn", [1, 28, 28], 10, -1.0),
    ] {
        let arch = Arc::new(Architecture::new(preset(name, input).expect("preset")).expect("valid"));
        let weights = init_weights(&arch, 3).expect("init");
        let model = map_biases(&Model::new(arch.clone(), weights), |b| b.zeros_like().expect("zeros"));
        let per: usize = input.iter().product();
        let mut rng = stream_rng(11, "lrp-inputs", 0);
        let values: Vec<f32> = (0..2 * per).map(|_| rng.random_range(low..1.0)).collect();
        let x = Tensor::from_vec(values, [vec![2], input.to_vec()].concat(), &Device::Cpu).expect("x");
        let logits = model.forward(&x).expect("forward").flatten_all().expect("flat").to_vec1::<f32>().expect("v");
        // The largest logit of each image (a vanishing one would check nothing).
        let targets: Vec<usize> = logits
            .chunks_exact(outputs)
            .map(|row| (0..outputs).max_by(|&a, &b| row[a].abs().total_cmp(&row[b].abs())).unwrap_or(0))
            .collect();
        for spec in [
            "method = \"lrp_epsilon\"",
            "method = \"lrp_alpha_beta\"",
            "method = \"lrp_alpha_beta\"\nalpha = 2.0\nbeta = 1.0",
        ] {
            let r = maps(spec, &model, &x, &targets);
            for (i, &t) in targets.iter().enumerate() {
                let total: f32 = r[i * per..(i + 1) * per].iter().sum();
                let expected = logits[i * outputs + t];
                // With zero biases the ε rule and α-β with α − β = 1 pass on all of the relevance,
                // except, for β > 0, at units whose inputs all push one way (their other side
                // has nothing to give the β share to): a small leak on the narrow dense layers.
                let tolerance = if spec.contains("beta = 1.0") { 5e-2 } else { 1e-3 };
                assert!(expected.abs() > 1e-6, "{name}: a vanishing logit would check nothing: {logits:?}");
                assert!((total - expected).abs() < tolerance * expected.abs(), "{name} {spec}: {total} vs {expected}");
            }
        }
    }
}
