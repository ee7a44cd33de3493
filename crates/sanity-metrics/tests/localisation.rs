//! The localisation metrics against Quantus 0.6 (`PointingGame`, `RelevanceMassAccuracy`,
//! `RelevanceRankAccuracy`, `AUC`, `TopKIntersection`, `AttributionLocalisation`) on the fixtures
//! written by `scripts/golden/localisation_fixtures.py`: float32 maps that Quantus scored in
//! float64. Maps with ties that reach Quantus' unstable sort are checked against the
//! expectation over every order of the ties (the fixture's, from the counts), and differ from
//! Quantus' value where the docs of `localisation.rs` say.

use sanity_metrics::{LocalisationSpec, Map, Mask, Status};
use serde::Deserialize;

/// Agreement required with Quantus' float64 values (both sides sum in float64; the difference
/// is summation order).
const TOLERANCE: f64 = 1e-9;

#[derive(Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct TopK {
    k: usize,
    #[serde(default)]
    concept_influence: bool,
    value: Option<f64>,
}

#[derive(Deserialize)]
struct Quantus {
    pointing_game: f64,
    relevance_mass_accuracy: f64,
    relevance_rank_accuracy: f64,
    auc: f64,
    attribution_localisation: Option<f64>,
    attribution_localisation_positive: Option<f64>,
    top_k: Vec<TopK>,
}

/// The expectation over every order of tied values, where ties reach the cut.
#[derive(Deserialize)]
struct Expected {
    pointing_game: f64,
    relevance_rank_accuracy: f64,
    top_k: Vec<TopK>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    shape: [usize; 2],
    map: Vec<f32>,
    mask: Vec<u8>,
    quantus: Quantus,
    expected: Option<Expected>,
}

fn fixture() -> Fixture {
    let text = include_str!("fixtures/localisation.json");
    serde_json::from_str(text).expect("localisation.json parses")
}

fn close(name: &str, metric: &str, ours: Result<f64, Status>, reference: Option<f64>) {
    match reference {
        Some(r) => {
            let v = ours.unwrap_or_else(|s| panic!("{name}, {metric}: status {s:?}, Quantus {r}"));
            assert!((v - r).abs() <= TOLERANCE * r.abs().max(1.0), "{name}, {metric}: {v} vs {r}");
        }
        None => assert_eq!(ours, Err(Status::UndefinedRatio), "{name}, {metric}: Quantus gives NaN"),
    }
}

#[test]
fn localisation_metrics_match_quantus() {
    let cases = fixture().cases;
    assert!(cases.len() >= 16);
    for case in &cases {
        let [h, w] = case.shape;
        let map = Map::new(case.map.clone(), [1, h, w]);
        let mask = Mask::new(case.mask.iter().map(|&v| v == 1).collect(), [h, w]);
        let (q, name) = (&case.quantus, case.name.as_str());
        let score = |spec: LocalisationSpec| spec.score(&map, &mask);
        close(
            name,
            "relevance_mass_accuracy",
            score(LocalisationSpec::RelevanceMassAccuracy {}),
            Some(q.relevance_mass_accuracy),
        );
        close(name, "auc", score(LocalisationSpec::Auc {}), Some(q.auc));
        close(
            name,
            "attribution_localisation",
            score(LocalisationSpec::AttributionLocalisation { positive_only: false }),
            q.attribution_localisation,
        );
        close(
            name,
            "attribution_localisation, positive",
            score(LocalisationSpec::AttributionLocalisation { positive_only: true }),
            q.attribution_localisation_positive,
        );
        let pointing = score(LocalisationSpec::PointingGame { tolerance: 0.0 });
        let rank = score(LocalisationSpec::RelevanceRankAccuracy {});
        let top_k = |t: &TopK| score(LocalisationSpec::TopKInMask { k: t.k, concept_influence: t.concept_influence });
        match &case.expected {
            None => {
                close(name, "pointing_game", pointing, Some(q.pointing_game));
                close(name, "relevance_rank_accuracy", rank, Some(q.relevance_rank_accuracy));
                for t in &q.top_k {
                    close(name, &format!("top_k_in_mask k {} {}", t.k, t.concept_influence), top_k(t), t.value);
                }
            }
            Some(e) => {
                close(name, "pointing_game (ties)", pointing, Some(e.pointing_game));
                close(name, "relevance_rank_accuracy (ties)", rank, Some(e.relevance_rank_accuracy));
                for t in &e.top_k {
                    close(name, &format!("top_k_in_mask k {} (ties)", t.k), top_k(t), t.value);
                }
            }
        }
    }
}

#[test]
fn quantus_counts_a_tie_at_the_maximum_as_a_hit_where_we_count_its_share() {
    let cases = fixture().cases;
    let clipped = cases.iter().find(|c| c.name.starts_with("clipped")).expect("the clipped case");
    let expected = clipped.expected.as_ref().expect("ties");
    let [h, w] = clipped.shape;
    let map = Map::new(clipped.map.clone(), [1, h, w]);
    let mask = Mask::new(clipped.mask.iter().map(|&v| v == 1).collect(), [h, w]);
    let ours = LocalisationSpec::PointingGame { tolerance: 0.0 }.score(&map, &mask).expect("a score");
    // Quantus: a hit, as one of the tied maxima lies on the mask; ours: the share that do.
    assert_eq!(clipped.quantus.pointing_game, 1.0);
    assert!((ours - expected.pointing_game).abs() < 1e-12 && ours > 0.3 && ours < 0.7, "{ours}");
}
