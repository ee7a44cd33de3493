//! `verdicts.csv`: per test, method, post-processing and metric, whether the similarity after
//! full randomisation can be told apart from the ceiling (the `repeat` control: original map
//! against original map) and from the null floor (the `random_models` control: two untrained
//! models), each by a two-sided Wilcoxon signed-rank test of the per-image differences
//! (images paired, [`wilcoxon_signed_rank`]) at the level `statistics.alpha`. With several
//! draws (independent re-initialisations of the stage, or pairs of untrained models for the
//! floor) an image's score is the mean of its valid scores over the draws, so each image is
//! one pair however many draws there are.
//!
//! | verdict | distinct from ceiling | distinct from floor | reading |
//! |---|---|---|---|
//! | `at_floor` | yes | no | the maps follow the parameters (passes) |
//! | `distinct_from_both` | yes | yes | partly changed |
//! | `at_ceiling` | no | yes | the maps ignore the randomisation (fails) |
//! | `indistinct` | no | no | ceiling and floor too close or too few images to tell |
//! | `not_tested` | | | a control is switched off or no image has all three scores |
//! | `inconclusive_target_not_reached` | | | data randomisation only: the model on permuted labels missed its training-accuracy target, so it did not memorise them ([`sanity_rundir::rows::INCONCLUSIVE_TARGET_NOT_REACHED`]) |

use crate::statistics::{Wilcoxon, wilcoxon_signed_rank};
use sanity_rundir::rows::{ScoreRow, VerdictRow};
use std::collections::{BTreeMap, HashMap};

/// The tests that get a verdict: the last cascade stage (every listed layer randomised), the
/// random-label model and the random logit.
const JUDGED: [&str; 3] = ["cascading", "data_randomization", "random_logit"];

/// A group of rows judged together: (test, order, method, post-processing, metric); for a
/// control's rows (stage, "", method, post-processing, metric).
type Key<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str);

/// The verdicts of a run's rows, in first-seen order of (test, order, method, postprocess,
/// metric).
pub fn verdicts(rows: &[ScoreRow], alpha: f64) -> Vec<VerdictRow> {
    let mut groups: Vec<Key> = Vec::new();
    let mut last_stage: HashMap<Key, usize> = HashMap::new();
    for r in rows.iter().filter(|r| JUDGED.contains(&r.test.as_str()) && r.method == r.method_b) {
        let key = (r.test.as_str(), r.order.as_str(), r.method.as_str(), r.postprocess.as_str(), r.metric.as_str());
        let stage = last_stage.entry(key).or_insert_with(|| {
            groups.push(key);
            0
        });
        *stage = (*stage).max(r.stage_index);
    }
    // One more pass: each group's rows at its last stage, and each control's scores by sample.
    let mut at_last: HashMap<Key, Vec<&ScoreRow>> = HashMap::new();
    let mut control_draws: HashMap<Key, HashMap<usize, Vec<f64>>> = HashMap::new();
    for r in rows {
        if r.test == "control" {
            if let Some(score) = r.score {
                let key = (r.stage.as_str(), "", r.method.as_str(), r.postprocess.as_str(), r.metric.as_str());
                control_draws.entry(key).or_default().entry(r.sample).or_default().push(score);
            }
            continue;
        }
        let key = (r.test.as_str(), r.order.as_str(), r.method.as_str(), r.postprocess.as_str(), r.metric.as_str());
        if r.method == r.method_b && last_stage.get(&key) == Some(&r.stage_index) {
            at_last.entry(key).or_default().push(r);
        }
    }
    let controls: HashMap<Key, HashMap<usize, f64>> =
        control_draws.into_iter().map(|(key, by_image)| (key, per_image_means(by_image))).collect();
    let none = HashMap::new();
    groups
        .into_iter()
        .map(|key| {
            let (_, _, method, post, metric) = key;
            let at_stage = at_last.get(&key).map(Vec::as_slice).unwrap_or_default();
            let control = |stage| controls.get(&(stage, "", method, post, metric)).unwrap_or(&none);
            judge(key, at_stage, (control("repeat"), control("random_models")), alpha)
        })
        .collect()
}

/// The verdict of one group (`key`) from its rows at its last stage and the per-image means of
/// its `(ceiling, floor)` controls: images paired across the three, in sample order, each the
/// mean over its draws, then two Wilcoxon signed-rank tests at level `alpha`.
fn judge(
    key: Key,
    at_stage: &[&ScoreRow],
    (ceiling, floor): (&HashMap<usize, f64>, &HashMap<usize, f64>),
    alpha: f64,
) -> VerdictRow {
    let (test, order, method, post, metric) = key;
    let mut stage_draws: HashMap<usize, Vec<f64>> = HashMap::new();
    for r in at_stage {
        if let Some(score) = r.score {
            stage_draws.entry(r.sample).or_default().push(score);
        }
    }
    let triples: BTreeMap<usize, (f64, f64, f64)> = per_image_means(stage_draws)
        .into_iter()
        .filter_map(|(sample, score)| Some((sample, (score, *ceiling.get(&sample)?, *floor.get(&sample)?))))
        .collect();
    let mean = |f: fn(&(f64, f64, f64)) -> f64| {
        (!triples.is_empty()).then(|| triples.values().map(f).sum::<f64>() / triples.len() as f64)
    };
    let against = |f: fn(&(f64, f64, f64)) -> f64| -> Option<Wilcoxon> {
        let d: Vec<f64> = triples.values().map(|t| t.0 - f(t)).collect();
        wilcoxon_signed_rank(&d)
    };
    let (vs_ceiling, vs_floor) = (against(|t| t.1), against(|t| t.2));
    let distinct = |w: &Option<Wilcoxon>| w.is_some_and(|w| w.p_value < alpha);
    let verdict = match (triples.is_empty(), distinct(&vs_ceiling), distinct(&vs_floor)) {
        (true, _, _) => "not_tested",
        (false, true, false) => "at_floor",
        (false, true, true) => "distinct_from_both",
        (false, false, true) => "at_ceiling",
        (false, false, false) => "indistinct",
    };
    // Without a nonzero difference the two samples are identical: p = 1.
    let p = |w: &Option<Wilcoxon>| match (w, triples.is_empty()) {
        (Some(w), _) => (Some(w.p_value), w.method.to_string()),
        (None, false) => (Some(1.0), "identical".to_string()),
        (None, true) => (None, String::new()),
    };
    let ((p_c, p_c_method), (p_f, p_f_method)) = (p(&vs_ceiling), p(&vs_floor));
    VerdictRow {
        run_id: at_stage.first().map(|r| r.run_id.clone()).unwrap_or_default(),
        test: test.into(),
        order: order.into(),
        stage: at_stage.first().map(|r| r.stage.clone()).unwrap_or_default(),
        method: method.into(),
        postprocess: post.into(),
        metric: metric.into(),
        n_pairs: triples.len(),
        mean: mean(|t| t.0),
        ceiling_mean: mean(|t| t.1),
        floor_mean: mean(|t| t.2),
        test_used: "wilcoxon_signed_rank_two_sided".into(),
        p_vs_ceiling: p_c,
        p_vs_ceiling_method: p_c_method,
        p_vs_floor: p_f,
        p_vs_floor_method: p_f_method,
        alpha,
        verdict: verdict.into(),
    }
}

/// Each image's mean over its draws' valid scores.
pub(crate) fn per_image_means(by_image: HashMap<usize, Vec<f64>>) -> HashMap<usize, f64> {
    by_image.into_iter().map(|(sample, v)| (sample, v.iter().sum::<f64>() / v.len() as f64)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(test: &str, stage_index: usize, stage: &str, sample: usize, score: f64) -> ScoreRow {
        ScoreRow {
            run_id: "r".into(),
            test: test.into(),
            order: if test == "cascading" { "top_down".into() } else { String::new() },
            stage_index,
            stage: stage.into(),
            draw: 0,
            method: "gradient".into(),
            method_b: "gradient".into(),
            postprocess: "raw".into(),
            metric: "spearman".into(),
            sample,
            label: 0,
            target: 0,
            score: Some(score),
            status: "ok".into(),
        }
    }

    #[test]
    fn a_map_that_reaches_the_floor_passes_and_one_that_stays_fails() {
        let mut rows = Vec::new();
        for i in 0..20 {
            let jitter = (i as f64 * 0.37).sin() * 0.05;
            rows.push(row("control", 1, "repeat", i, 1.0));
            rows.push(row("control", 1, "random_models", i, 0.05 + jitter));
            rows.push(row("cascading", 1, "fc", i, 0.6 + jitter));
            rows.push(row("cascading", 2, "conv", i, 0.05 + (i as f64 * 0.91).cos() * 0.05));
        }
        let v = verdicts(&rows, 0.05);
        assert_eq!(v.len(), 1);
        assert_eq!((v[0].stage.as_str(), v[0].n_pairs, v[0].verdict.as_str()), ("conv", 20, "at_floor"));
        assert!(v[0].p_vs_ceiling.expect("tested") < 1e-5);
        assert!(v[0].p_vs_floor.expect("tested") > 0.05);
        // The last stage still at the ceiling: the method ignores the randomisation.
        for r in rows.iter_mut().filter(|r| r.stage == "conv") {
            r.score = Some(1.0);
        }
        let v = verdicts(&rows, 0.05);
        assert_eq!(
            (v[0].verdict.as_str(), v[0].p_vs_ceiling, v[0].p_vs_ceiling_method.as_str()),
            ("at_ceiling", Some(1.0), "identical")
        );
        // Draws: an image is one pair, its score the mean over the draws.
        let drawn: Vec<ScoreRow> = rows
            .iter()
            .filter(|r| r.stage == "conv" || r.stage == "random_models")
            .map(|r| ScoreRow { draw: 1, score: r.score.map(|s| s - 0.5), ..r.clone() })
            .collect();
        let mut with_draws = rows.clone();
        with_draws.extend(drawn);
        let v = verdicts(&with_draws, 0.05);
        assert_eq!(v[0].n_pairs, 20);
        assert!((v[0].mean.expect("mean") - 0.75).abs() < 1e-12, "{:?}", v[0].mean);
        // No floor: not tested.
        rows.retain(|r| r.stage != "random_models");
        assert_eq!(verdicts(&rows, 0.05)[0].verdict, "not_tested");
    }
}
