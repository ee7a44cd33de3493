//! Spearman, Pearson and SSIM against scipy 1.17.1 and scikit-image 0.26.0, and cosine, MSE and
//! top-k intersection against numpy 2.4.6, on the fixtures written by
//! `scripts/golden/metrics_fixtures.py` (float32 inputs, float64 references).

use sanity_metrics::{
    HogParams, Map, MetricSpec, PostStep, SsimParams, SsimWindow, Status, discrete_entropy, hog_features, spearman,
    ssim,
};
use serde::Deserialize;

/// Relative agreement required with the f64 references (both sides compute in f64; the
/// difference is summation order).
const REL_TOLERANCE: f64 = 1e-9;

#[derive(Deserialize)]
struct Fixture {
    cases: Vec<Case>,
    postprocess: Vec<PostCase>,
    hog: Vec<HogCase>,
}

/// scipy's correlations of two maps' scikit-image HOG features.
#[derive(Deserialize)]
struct HogSimilarity {
    pearson: f64,
    spearman: f64,
}

/// scikit-image's HOG features of one map, and its similarity to another.
#[derive(Deserialize)]
struct HogCase {
    shape: [usize; 3],
    map: Vec<f32>,
    other: Vec<f32>,
    similarity: HogSimilarity,
    params: HogParams,
    features: Vec<f64>,
}

/// One post-processing step on one map, computed by numpy.
#[derive(Deserialize)]
struct PostCase {
    step: serde_json::Value,
    shape: [usize; 3],
    input: Vec<f32>,
    out_shape: [usize; 3],
    output: Vec<f64>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    shape: [usize; 3],
    a: Vec<f32>,
    b: Vec<f32>,
    spearman: Option<f64>,
    ssim: Vec<SsimCase>,
    pearson: f64,
    kendall_tau_b: f64,
    cosine: f64,
    mse: f64,
    top_k: TopKCase,
    entropy: Vec<EntropyCase>,
}

/// Quantus' `discrete_entropy` of both maps.
#[derive(Deserialize)]
struct EntropyCase {
    bins: usize,
    a: f64,
    b: f64,
}

#[derive(Deserialize)]
struct TopKCase {
    k: usize,
    value: f64,
}

#[derive(Deserialize)]
struct SsimCase {
    window: String,
    size: Option<usize>,
    data_range: f64,
    value: f64,
}

fn fixture() -> Fixture {
    let text = include_str!("fixtures/metrics.json");
    serde_json::from_str(text).expect("fixture parses")
}

fn close(ours: f64, reference: f64) -> bool {
    (ours - reference).abs() <= REL_TOLERANCE * reference.abs().max(1e-3)
}

#[test]
fn spearman_matches_scipy() {
    for case in fixture().cases {
        let ours = spearman(&case.a, &case.b).expect("non-degenerate fixture");
        let reference = case.spearman.expect("scipy gave a value");
        assert!(close(ours, reference), "{}: ours {ours} vs scipy {reference}", case.name);
    }
}

#[test]
fn ssim_matches_scikit_image() {
    let mut checked = 0;
    for case in fixture().cases {
        let (a, b) = (Map::new(case.a.clone(), case.shape), Map::new(case.b.clone(), case.shape));
        for s in &case.ssim {
            let window = match s.window.as_str() {
                "gaussian" => SsimWindow::Gaussian { sigma: 1.5, truncate: 3.5 },
                _ => SsimWindow::Uniform { size: s.size.expect("uniform cases give a size") },
            };
            let params = SsimParams { data_range: s.data_range, window, k1: 0.01, k2: 0.03 };
            let ours = ssim(&a, &b, &params).expect("non-degenerate fixture");
            assert!(close(ours, s.value), "{} {:?}: ours {ours} vs skimage {}", case.name, params, s.value);
            checked += 1;
        }
    }
    assert!(checked >= 12, "only {checked} SSIM cases were checked");
}

#[test]
fn ssim_of_identical_maps_is_one_and_degenerate_inputs_have_a_status() {
    let case = &fixture().cases[0];
    let a = Map::new(case.a.clone(), case.shape);
    let spec = MetricSpec::Ssim(SsimParams {
        data_range: 1.0,
        window: sanity_metrics::ssim::default_window(),
        k1: 0.01,
        k2: 0.03,
    });
    assert!((spec.score(&a, &a).expect("value") - 1.0).abs() < 1e-12);
    let small = Map::new(vec![0.5; 25], [1, 5, 5]);
    assert_eq!(spec.score(&small, &small), Err(Status::TooSmall));
    let other = Map::new(vec![0.5; 36], [1, 6, 6]);
    assert_eq!(spec.score(&small, &other), Err(Status::ShapeMismatch));
}

#[test]
fn metric_specs_parse_with_defaults_and_refuse_unknown_keys() {
    let spec: MetricSpec = toml::from_str("metric = \"ssim\"\ndata_range = 2.0").expect("parses");
    assert_eq!(
        spec,
        MetricSpec::Ssim(SsimParams {
            data_range: 2.0,
            window: sanity_metrics::ssim::default_window(),
            k1: 0.01,
            k2: 0.03
        })
    );
    let err = toml::from_str::<MetricSpec>("metric = \"ssim\"\ndata_range = 2.0\nwindw = 3").expect_err("typo");
    assert!(err.to_string().contains("windw"), "{err}");
    let err = toml::from_str::<MetricSpec>("metric = \"spearmann\"").expect_err("typo");
    assert!(err.to_string().contains("spearman"), "{err}");
}

#[test]
fn pearson_kendall_cosine_mse_and_top_k_match_scipy_and_numpy() {
    for case in fixture().cases {
        let (a, b) = (Map::new(case.a.clone(), case.shape), Map::new(case.b.clone(), case.shape));
        let specs = [
            (MetricSpec::Pearson {}, case.pearson),
            (MetricSpec::KendallTauB {}, case.kendall_tau_b),
            (MetricSpec::Cosine {}, case.cosine),
            (MetricSpec::Mse {}, case.mse),
            (MetricSpec::TopKIntersection { k: case.top_k.k }, case.top_k.value),
        ];
        for (spec, reference) in specs {
            let ours = spec.score(&a, &b).expect("non-degenerate fixture");
            assert!(close(ours, reference), "{} {}: ours {ours} vs {reference}", case.name, spec.id());
        }
    }
}

#[test]
fn the_vector_metrics_are_symmetric_and_exact_on_identical_maps() {
    for case in fixture().cases {
        let (a, b) = (Map::new(case.a.clone(), case.shape), Map::new(case.b.clone(), case.shape));
        for (spec, identity) in [
            (MetricSpec::Pearson {}, 1.0),
            (MetricSpec::KendallTauB {}, 1.0),
            (MetricSpec::Cosine {}, 1.0),
            (MetricSpec::Mse {}, 0.0),
            (MetricSpec::TopKIntersection { k: 7 }, 1.0),
        ] {
            let same = spec.score(&a, &a).expect("a map against itself");
            assert!((same - identity).abs() < 1e-12, "{} {}: {same}", case.name, spec.id());
            let (ab, ba) = (spec.score(&a, &b).expect("a, b"), spec.score(&b, &a).expect("b, a"));
            assert!((ab - ba).abs() <= 1e-12 * ab.abs().max(1.0), "{} {}: {ab} vs {ba}", case.name, spec.id());
        }
    }
}

#[test]
fn percentile_steps_match_numpy_and_the_papers_code() {
    let cases = fixture().postprocess;
    assert_eq!(cases.len(), 12);
    for case in cases {
        let step: PostStep = serde_json::from_value(case.step.clone()).expect("a valid step");
        let out = step.apply(Map::new(case.input.clone(), case.shape)).expect("non-degenerate input");
        assert_eq!(out.shape, case.out_shape, "{}", case.step);
        for (ours, reference) in out.data.iter().zip(&case.output) {
            // Our maps are float32: one rounding of the f64 reference.
            assert!(
                (f64::from(*ours) - reference).abs() <= 1e-6 * reference.abs().max(1.0),
                "{}: {ours} vs {reference}",
                case.step
            );
        }
    }
}

#[test]
fn rank_metrics_ignore_strictly_increasing_transforms() {
    let distinct = |v: &[f32]| {
        let mut sorted = v.to_vec();
        sorted.sort_by(f32::total_cmp);
        sorted.dedup();
        sorted.len()
    };
    let mut checked = 0;
    for case in fixture().cases {
        let (a, b) = (Map::new(case.a.clone(), case.shape), Map::new(case.b.clone(), case.shape));
        let cubed = Map::new(case.a.iter().map(|v| v * v * v + 2.0 * v).collect(), case.shape);
        // float32 rounding may merge close values (the dense 224x224 case): skip those.
        if distinct(&cubed.data) != distinct(&a.data) {
            continue;
        }
        checked += 1;
        for spec in [MetricSpec::Spearman {}, MetricSpec::KendallTauB {}] {
            let (plain, transformed) = (spec.score(&a, &b), spec.score(&cubed, &b));
            assert_eq!(plain, transformed, "{} {}", case.name, spec.id());
        }
    }
    assert!(checked >= 5, "only {checked} cases kept their distinct values");
}

/// The paper's appendix: the correlation of independent random maps is near 0. Over 50 pairs of
/// seeded uniform 28x28 maps, the mean of each correlation is within 0.02 of 0 (one map's
/// standard error is about 1/28).
#[test]
fn independent_random_maps_are_uncorrelated_on_average() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(50);
    let mut random_map = || Map::new((0..784).map(|_| rng.random::<f32>()).collect(), [1, 28, 28]);
    let pairs: Vec<(Map, Map)> = (0..50).map(|_| (random_map(), random_map())).collect();
    for spec in [MetricSpec::Spearman {}, MetricSpec::Pearson {}, MetricSpec::KendallTauB {}, MetricSpec::Cosine {}] {
        let mean = pairs.iter().map(|(a, b)| spec.score(a, b).expect("score")).sum::<f64>() / pairs.len() as f64;
        // Cosine of non-negative maps is not centred: uniform [0, 1) maps give 3/4.
        let expected = if spec.id() == "cosine" { 0.75 } else { 0.0 };
        assert!((mean - expected).abs() < 0.02, "{}: mean {mean}", spec.id());
    }
}

#[test]
fn hog_features_match_scikit_image() {
    let cases = fixture().hog;
    assert_eq!(cases.len(), 4);
    for case in cases {
        let ours = hog_features(&Map::new(case.map.clone(), case.shape), &case.params).expect("large enough");
        assert_eq!(ours.len(), case.features.len(), "{:?}", case.params);
        for (a, b) in ours.iter().zip(&case.features) {
            // scikit-image sums each cell in float32.
            assert!((a - b).abs() <= 1e-5 * b.abs().max(1e-2), "{:?}: {a} vs {b}", case.params);
        }
        let (a, b) = (Map::new(case.map.clone(), case.shape), Map::new(case.other.clone(), case.shape));
        for (spec, reference) in [
            (MetricSpec::HogPearson(case.params.clone()), case.similarity.pearson),
            (MetricSpec::HogSpearman(case.params.clone()), case.similarity.spearman),
        ] {
            let ours = spec.score(&a, &b).expect("similarity");
            assert!((ours - reference).abs() < 1e-5, "{} {:?}: {ours} vs {reference}", spec.id(), case.params);
        }
    }
}

#[test]
fn discrete_entropy_matches_numpy_and_scipy() {
    for case in fixture().cases {
        let (a, b) = (Map::new(case.a.clone(), case.shape), Map::new(case.b.clone(), case.shape));
        for e in &case.entropy {
            let (ha, hb) = (
                discrete_entropy(&case.a, e.bins).expect("entropy"),
                discrete_entropy(&case.b, e.bins).expect("entropy"),
            );
            assert!(close(ha, e.a) && close(hb, e.b), "{} {} bins: {ha} {hb} vs {} {}", case.name, e.bins, e.a, e.b);
            let ratio = MetricSpec::DiscreteEntropy { bins: e.bins }.score(&a, &b).expect("ratio");
            assert!(close(ratio, e.b / e.a), "{}: {ratio}", case.name);
        }
    }
    let constant = Map::new(vec![0.5; 16], [1, 4, 4]);
    assert_eq!(MetricSpec::DiscreteEntropy { bins: 10 }.score(&constant, &constant), Err(Status::ConstantMap));
    // One bin would make every map constant: refused.
    assert!(MetricSpec::DiscreteEntropy { bins: 1 }.validate().is_err());
}
