//! The statistics of a run's score rows: `summary.csv` (docs/run-directory.md).

use crate::statistics::{Summary, crossed_interval, summarize};
use sanity_data::{fnv1a, stream_rng};
use sanity_rundir::rows::{ScoreRow, SummaryRow};
use std::collections::BTreeSet;

/// The key of a summary group: test, order, stage index, stage, method, method_b,
/// post-processing, metric.
type GroupKey = (String, String, usize, String, String, String, String, String);

/// The stream index of a summary group: FNV-1a of its key fields joined by a unit separator.
fn group_hash(key: &GroupKey) -> u64 {
    let (test, order, index, stage, method, method_b, post, metric) = key;
    let index = index.to_string();
    fnv1a([test, order, &index, stage, method, method_b, post, metric].map(|s| s.as_str()).join("\u{1f}").as_bytes())
}

/// Groups score rows by (test, order, stage index, stage, method, method_b, postprocess, metric) in
/// first-seen order and summarises each over its images and draws; a group bootstraps from
/// `stream_rng(seed, "bootstrap", h)` with `h` the FNV-1a hash of its key, so its interval does
/// not depend on the row order or on the other groups. One draw: the percentile bootstrap of
/// the images; several: the crossed bootstrap of draws and images
/// ([`crate::statistics::crossed_interval`]). Each row carries the means of its method's
/// controls (same post-processing and metric).
pub fn summarize_rows(rows: &[ScoreRow], resamples: usize, confidence: f64, seed: u64) -> Vec<SummaryRow> {
    let key = |r: &ScoreRow| {
        (
            r.test.clone(),
            r.order.clone(),
            r.stage_index,
            r.stage.clone(),
            r.method.clone(),
            r.method_b.clone(),
            r.postprocess.clone(),
            r.metric.clone(),
        )
    };
    let mut order = Vec::new();
    let mut groups: std::collections::HashMap<GroupKey, Vec<&ScoreRow>> = std::collections::HashMap::new();
    for r in rows {
        let k = key(r);
        if !groups.contains_key(&k) {
            order.push(k.clone());
        }
        groups.entry(k).or_default().push(r);
    }
    let degenerate = degenerate_originals(rows);
    let mut summaries: Vec<SummaryRow> = order
        .iter()
        .map(|k| {
            let members = &groups[k];
            // The floor compares two untrained models' maps: the trained model's are not in it.
            let floor = k.0 == "control" && k.3 == "random_models";
            let n_degenerate_original = match degenerate.get(&(k.4.clone(), k.6.clone())) {
                Some((bad, _)) if !floor => {
                    members.iter().map(|r| r.sample).filter(|s| bad.contains(s)).collect::<BTreeSet<_>>().len()
                }
                _ => 0,
            };
            let draws: BTreeSet<usize> = members.iter().map(|r| r.draw).collect();
            let mut rng = stream_rng(seed, "bootstrap", group_hash(k));
            let (s, ci_over, draw_std) = summarize_group(members, &draws, resamples, confidence, &mut rng);
            let first = members[0];
            let status = match s.n {
                0 => "no_valid_scores",
                1 => "single_value",
                _ => "ok",
            };
            SummaryRow {
                run_id: first.run_id.clone(),
                test: first.test.clone(),
                order: first.order.clone(),
                stage_index: first.stage_index,
                stage: first.stage.clone(),
                method: first.method.clone(),
                method_b: first.method_b.clone(),
                postprocess: first.postprocess.clone(),
                metric: first.metric.clone(),
                n: s.n,
                n_degenerate: members.len() - s.n,
                n_degenerate_original,
                mean: s.mean,
                std: s.std,
                sem: s.sem,
                median: s.median,
                ci_low: s.ci_low,
                ci_high: s.ci_high,
                ci_over: ci_over.into(),
                draws: draws.len(),
                draw_std,
                status: status.into(),
                control_repeat: None,
                control_random_models: None,
                control_random_map: None,
                control_sobel: None,
            }
        })
        .collect();
    attach_controls(&mut summaries);
    summaries
}

/// The statistics of one group's scores (`draws`: the draws among them), what its interval
/// resamples, and the spread of the draws' own means: with one draw the percentile bootstrap
/// over images; with several the crossed bootstrap over draws and images.
fn summarize_group(
    members: &[&ScoreRow],
    draws: &BTreeSet<usize>,
    resamples: usize,
    confidence: f64,
    rng: &mut rand_chacha::ChaCha8Rng,
) -> (Summary, &'static str, Option<f64>) {
    let values: Vec<f64> = members.iter().filter_map(|r| r.score).collect();
    if draws.len() <= 1 {
        return (summarize(&values, resamples, confidence, rng), "images", None);
    }
    let cells: Vec<(usize, usize, f64)> = members.iter().filter_map(|r| Some((r.draw, r.sample, r.score?))).collect();
    let ci = crossed_interval(&cells, resamples, confidence, rng);
    let s = Summary { ci_low: ci.map(|c| c.0), ci_high: ci.map(|c| c.1), ..summarize(&values, 0, confidence, rng) };
    let per_draw: Vec<f64> = draws
        .iter()
        .filter_map(|&d| {
            let v: Vec<f64> = cells.iter().filter(|c| c.0 == d).map(|c| c.2).collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        })
        .collect();
    (s, "draws_and_images", summarize(&per_draw, 0, confidence, rng).std)
}

/// Puts beside each summary row the means of its method's controls under the same
/// post-processing and metric.
fn attach_controls(summaries: &mut [SummaryRow]) {
    let controls: std::collections::HashMap<(String, String, String, String), Option<f64>> = summaries
        .iter()
        .filter(|c| c.test == "control")
        .map(|c| ((c.stage.clone(), c.method.clone(), c.postprocess.clone(), c.metric.clone()), c.mean))
        .collect();
    for row in summaries.iter_mut() {
        let mean = |stage: &str| {
            let key = (stage.to_string(), row.method.clone(), row.postprocess.clone(), row.metric.clone());
            controls.get(&key).copied().flatten()
        };
        (row.control_repeat, row.control_random_models, row.control_random_map, row.control_sobel) =
            (mean("repeat"), mean("random_models"), mean("random_map"), mean("sobel"));
    }
}

/// Per (method, post-processing): the images whose original map (under the trained model) is
/// degenerate, and all images seen, read off the `repeat` control (the original map against
/// itself, or against a second draw of a stochastic method: empty when the original is
/// degenerate). None without the `repeat` control.
pub fn degenerate_originals(
    rows: &[ScoreRow],
) -> std::collections::BTreeMap<(String, String), (std::collections::BTreeSet<usize>, std::collections::BTreeSet<usize>)>
{
    let mut out: std::collections::BTreeMap<
        (String, String),
        (std::collections::BTreeSet<usize>, std::collections::BTreeSet<usize>),
    > = std::collections::BTreeMap::new();
    // An image counts when every metric of the pipeline found its maps degenerate (one
    // metric's own quirk, e.g. HOG features of a map that varies only at its border, does not).
    let mut healthy: std::collections::BTreeSet<(String, String, usize)> = std::collections::BTreeSet::new();
    for r in rows.iter().filter(|r| r.test == "control" && r.stage == "repeat") {
        let entry = out.entry((r.method.clone(), r.postprocess.clone())).or_default();
        entry.1.insert(r.sample);
        if r.score.is_none() && matches!(r.status.as_str(), "constant_map" | "non_finite") {
            entry.0.insert(r.sample);
        } else {
            healthy.insert((r.method.clone(), r.postprocess.clone(), r.sample));
        }
    }
    for ((method, postprocess), (bad, _)) in &mut out {
        bad.retain(|s| !healthy.contains(&(method.clone(), postprocess.clone(), *s)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(test: &str, stage: &str, sample: usize, score: Option<f64>, status: &str) -> ScoreRow {
        ScoreRow {
            run_id: "r".into(),
            test: test.into(),
            order: String::new(),
            stage_index: 1,
            stage: stage.into(),
            draw: 0,
            method: "gradcam".into(),
            method_b: "gradcam".into(),
            postprocess: "abs".into(),
            metric: "spearman".into(),
            sample,
            label: 0,
            target: 0,
            score,
            status: status.into(),
        }
    }

    #[test]
    fn draws_widen_the_interval_and_count_each_image_once() {
        let mut rows = vec![row("control", "repeat", 0, None, "constant_map")];
        for draw in 0..3 {
            for sample in 0..40 {
                let score = (sample != 0).then(|| 0.2 * draw as f64 + (sample % 7) as f64 / 100.0);
                let status = if score.is_some() { "ok" } else { "constant_map" };
                rows.push(ScoreRow { draw, ..row("cascading", "conv1", sample, score, status) });
            }
        }
        let summary = summarize_rows(&rows, 1000, 0.95, 0);
        let s = summary.iter().find(|r| r.test == "cascading").expect("row");
        assert_eq!((s.n, s.n_degenerate, s.n_degenerate_original, s.draws), (117, 3, 1, 3));
        assert_eq!(s.ci_over, "draws_and_images");
        assert!((s.draw_std.expect("3 draws") - 0.2).abs() < 1e-9, "{:?}", s.draw_std);
        // Draw means 0.03, 0.23, 0.43: the interval spans most of them, not the images' spread.
        assert!(s.ci_high.expect("ci") - s.ci_low.expect("ci") > 0.2, "{:?} {:?}", s.ci_low, s.ci_high);
        let repeat = summary.iter().find(|r| r.stage == "repeat").expect("row");
        assert_eq!((repeat.ci_over.as_str(), repeat.draws, repeat.draw_std), ("images", 1, None));
    }

    #[test]
    fn degenerate_originals_need_every_metric_to_agree_and_skip_the_floor() {
        let mut hog = row("control", "repeat", 1, None, "constant_map");
        hog.metric = "hog_pearson".into();
        let rows = vec![
            row("control", "repeat", 0, None, "constant_map"),
            row("control", "repeat", 1, Some(1.0), "ok"),
            hog,
            row("cascading", "conv1", 0, None, "constant_map"),
            row("control", "random_models", 0, Some(0.1), "ok"),
        ];
        let found = degenerate_originals(&rows);
        assert_eq!(found[&("gradcam".into(), "abs".into())].0, [0].into_iter().collect());
        let summary = summarize_rows(&rows, 0, 0.95, 0);
        let of = |test: &str, stage: &str| {
            summary.iter().find(|r| r.test == test && r.stage == stage && r.metric == "spearman").expect("row")
        };
        assert_eq!(of("cascading", "conv1").n_degenerate_original, 1);
        assert_eq!(of("control", "random_models").n_degenerate_original, 0);
    }
}
