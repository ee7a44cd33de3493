//! The `localisation` test's rows (docs/tests.md): each method's post-processed map of an
//! explained image against the image's ground-truth mask, under the trained model and under
//! each model the run's randomisation tests make, and the controls' (the random map, the Sobel
//! edge map, and `uniform`: the chance level of a map whose values all tie).

use crate::statistics::{Wilcoxon, wilcoxon_signed_rank};
use crate::units::{Pairing, Second};
use sanity_metrics::{LocalisationSpec, Map, Mask, Reduce, Status, reduce_channels};
use sanity_rundir::files::stage_key;
use sanity_rundir::rows::{ScoreRow, VerdictRow};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

/// The `test` column of localisation rows.
pub const TEST: &str = "localisation";

/// The `method_b` column of localisation rows: what the map is scored against.
pub const AGAINST: &str = "mask";

/// A model whose maps the localisation test scores, and the columns its rows carry.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalisedSlot {
    /// The slot (0: the trained model).
    pub slot: usize,
    /// The cascade order of the stage; empty for the others.
    pub order: &'static str,
    /// The stage's index in its test (0 for the trained model).
    pub stage_index: usize,
    /// `trained`, or the test and stage that made the model (`cascading.fc1`,
    /// `independent.conv1`, `data_randomization.random_labels`, `efficient_mprt.all`).
    pub stage: String,
    /// Which re-initialisation of the stage.
    pub draw: usize,
}

/// The trained model and every model a randomisation test of `pairings` compares with it, on
/// the methods' own maps (smooth MPRT's smoothed maps and the random logit's other class are
/// not the trained model's kind of map, so they are left out).
pub fn localised_slots(pairings: &[Pairing]) -> Vec<LocalisedSlot> {
    let trained = LocalisedSlot { slot: 0, order: "", stage_index: 0, stage: "trained".into(), draw: 0 };
    let stages = pairings.iter().filter(|p| p.smoothing.is_none() && p.first == 0 && p.test != "random_logit");
    std::iter::once(trained)
        .chain(stages.filter_map(|p| match p.second {
            Second::Slot(slot) => Some(LocalisedSlot {
                slot,
                order: p.order,
                stage_index: p.stage_index,
                stage: stage_key(p.test, "", &p.stage),
                draw: p.draw,
            }),
            _ => None,
        }))
        .collect()
}

/// The columns shared by one set of localisation rows.
pub struct RowKey<'a> {
    /// The run.
    pub run_id: &'a str,
    /// The model's columns.
    pub slot: &'a LocalisedSlot,
    /// The method (or control) whose maps are scored.
    pub method: &'a str,
    /// The post-processing pipeline's label.
    pub postprocess: &'a str,
}

/// One explained image: its sample index, label, explained class and mask (None: no object).
pub struct Explained<'a> {
    /// Sample index in the test set.
    pub sample: usize,
    /// Its label.
    pub label: usize,
    /// The class explained.
    pub target: usize,
    /// Its mask, when it holds the object.
    pub mask: Option<&'a Mask>,
}

/// The rows of `maps` (one post-processed map per image, or the status of its
/// post-processing) by each of `metrics`; images without an object have none. A map of
/// several channels is summed over them first (as Quantus' `explain` reduces attributions by
/// default, `reduce_axes = [1]`), and a mask is resized (nearest) to a map of another size.
pub fn rows(
    key: &RowKey,
    images: &[Explained],
    maps: &[Result<Map, Status>],
    metrics: &[LocalisationSpec],
) -> Vec<ScoreRow> {
    let mut out = Vec::new();
    for metric in metrics {
        for (image, map) in images.iter().zip(maps) {
            let Some(mask) = image.mask else { continue };
            let score = match map {
                Ok(map) if map.shape[0] > 1 => {
                    let one = Map::new(reduce_channels(map, Reduce::Sum), [1, map.shape[1], map.shape[2]]);
                    metric.score(&one, &fitted(mask, &one))
                }
                Ok(map) => metric.score(map, &fitted(mask, map)),
                Err(status) => Err(*status),
            };
            out.push(row(key, image, metric.id(), score));
        }
    }
    out
}

/// The `uniform` control's rows: each metric's chance level for the image's mask.
pub fn uniform_rows(key: &RowKey, images: &[Explained], metrics: &[LocalisationSpec]) -> Vec<ScoreRow> {
    let mut out = Vec::new();
    for metric in metrics {
        for image in images {
            if let Some(mask) = image.mask {
                out.push(row(key, image, metric.id(), metric.chance_level(mask)));
            }
        }
    }
    out
}

/// `mask` at `map`'s height and width (borrowed when it is already).
fn fitted<'a>(mask: &'a Mask, map: &Map) -> Cow<'a, Mask> {
    let [_, h, w] = map.shape;
    if mask.shape == [h, w] {
        return Cow::Borrowed(mask);
    }
    let [mh, mw] = mask.shape;
    Cow::Owned(Mask::new(sanity_data::resize_nearest(&mask.inside, mh, mw, h, w), [h, w]))
}

fn row(key: &RowKey, image: &Explained, metric: &str, score: Result<f64, Status>) -> ScoreRow {
    ScoreRow {
        run_id: key.run_id.to_string(),
        test: TEST.to_string(),
        order: key.slot.order.to_string(),
        stage_index: key.slot.stage_index,
        stage: key.slot.stage.clone(),
        draw: key.slot.draw,
        method: key.method.to_string(),
        method_b: AGAINST.to_string(),
        postprocess: key.postprocess.to_string(),
        metric: metric.to_string(),
        sample: image.sample,
        label: image.label,
        target: image.target,
        score: score.ok(),
        status: score.err().map_or("ok", Status::as_str).to_string(),
    }
}

/// The error line of a run with the localisation test but no localisation row: none of the
/// `explained` images holds the object (every mask empty), so the test answered nothing.
pub fn unanswered(has_test: bool, rows: &[ScoreRow], explained: usize) -> Option<String> {
    (has_test && !rows.iter().any(|r| r.test == TEST)).then(|| {
        format!(
            "the localisation test has no scores: none of the {explained} explained images holds the object (every mask is empty); explain more images (attribution.n_images) or give masks with the object"
        )
    })
}

/// The controls' pseudo-slot: `stage = "control"`.
pub fn control_slot() -> LocalisedSlot {
    LocalisedSlot { slot: 0, order: "", stage_index: 0, stage: "control".into(), draw: 0 }
}

/// The stages whose model is destroyed, judged against the trained model: a cascade's last
/// stage (each order), the random-label model, efficient MPRT's model.
fn destroyed(rows: &[&ScoreRow]) -> Vec<(String, String)> {
    let mut last: BTreeMap<(String, String), (usize, String)> = BTreeMap::new();
    for r in rows {
        let test = r.stage.split('.').next().unwrap_or_default();
        if ["cascading", "data_randomization", "efficient_mprt"].contains(&test) {
            let entry = last.entry((test.to_string(), r.order.clone())).or_insert((0, String::new()));
            if r.stage_index >= entry.0 {
                *entry = (r.stage_index, r.stage.clone());
            }
        }
    }
    last.into_iter().map(|((_, order), (_, stage))| (order, stage)).collect()
}

/// Per image, the mean of its valid scores (over draws).
fn per_image(rows: &[&ScoreRow]) -> HashMap<usize, f64> {
    let mut by: HashMap<usize, Vec<f64>> = HashMap::new();
    for r in rows {
        if let Some(score) = r.score {
            by.entry(r.sample).or_default().push(score);
        }
    }
    crate::verdicts::per_image_means(by)
}

/// The images with a score in every one of `maps`, in sample order.
fn paired(maps: &[&HashMap<usize, f64>]) -> Vec<usize> {
    let mut samples: Vec<usize> =
        maps[0].keys().copied().filter(|s| maps[1..].iter().all(|m| m.contains_key(s))).collect();
    samples.sort_unstable();
    samples
}

/// Whether `a` is above `b` image by image: the mean difference over the paired images and
/// the two-sided Wilcoxon signed-rank test of the differences (None: no difference at all).
fn above(a: &HashMap<usize, f64>, b: &HashMap<usize, f64>, samples: &[usize]) -> (f64, Option<Wilcoxon>) {
    let d: Vec<f64> = samples.iter().map(|s| a[s] - b[s]).collect();
    (d.iter().sum::<f64>() / d.len().max(1) as f64, wilcoxon_signed_rank(&d))
}

/// The `localisation` verdicts of a run's rows (docs/tests.md, "localisation"): per method,
/// post-processing and metric, whether the trained model's maps localise beyond the floor (the
/// control with the highest mean: random map, Sobel map or `uniform`, the chance level), and
/// for each destroyed model (a cascade's last stage, the random-label model, efficient MPRT's)
/// whether its maps still do. Images paired across the maps; two-sided Wilcoxon signed-rank
/// tests at level `alpha`, "beyond" meaning significant with a positive mean difference.
///
/// | stage | verdict | reading |
/// |---|---|---|
/// | `trained` | `localises` | the trained model's maps score above the floor |
/// | `trained` | `does_not_localise` | they do not |
/// | destroyed | `stops_localising` | it localises, and the destroyed model's maps do not |
/// | destroyed | `stops_partly` | the destroyed model's maps score below the trained model's but still above the floor |
/// | destroyed | `localises_under_random_model` | the destroyed model's maps score above the floor and not below the trained model's: the map shows the image, not the model's reasons |
/// | destroyed | `does_not_localise` | the trained model's maps do not localise to begin with |
/// | any | `not_tested` | no image has a score in every map compared |
///
/// Columns: `mean` is the judged model's mean, `ceiling_mean` the trained model's (on a
/// destroyed stage's row), `floor_mean` the floor's; `p_vs_ceiling` tests the destroyed model
/// against the trained one, `p_vs_floor` the judged model against the floor; `test_used` names
/// the floor's control.
pub fn verdicts(rows: &[ScoreRow], alpha: f64) -> Vec<VerdictRow> {
    let mut groups: BTreeMap<(&str, &str, &str), Vec<&ScoreRow>> = BTreeMap::new();
    let mut controls: BTreeMap<(&str, &str), Vec<&ScoreRow>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.test == TEST) {
        if r.stage == "control" {
            controls.entry((r.postprocess.as_str(), r.metric.as_str())).or_default().push(r);
        } else {
            groups.entry((r.method.as_str(), r.postprocess.as_str(), r.metric.as_str())).or_default().push(r);
        }
    }
    let mut out = Vec::new();
    for ((method, post, metric), members) in groups {
        // A stage is its name and order: a bottom-up cascade's `cascading.conv1` is its first
        // stage, a top-down one's its last.
        let of_stage = |order: &str, stage: &str| -> HashMap<usize, f64> {
            per_image(&members.iter().copied().filter(|r| r.order == order && r.stage == stage).collect::<Vec<_>>())
        };
        let trained = of_stage("", "trained");
        // The floor: the control with the highest mean over its images.
        let floor = controls.get(&(post, metric)).and_then(|c| {
            let mut by_control: BTreeMap<&str, Vec<&ScoreRow>> = BTreeMap::new();
            for r in c {
                by_control.entry(r.method.as_str()).or_default().push(r);
            }
            by_control
                .into_iter()
                .map(|(name, rows)| (name, per_image(&rows)))
                .filter(|(_, scores)| !scores.is_empty())
                .map(|(name, scores)| (scores.values().sum::<f64>() / scores.len() as f64, name, scores))
                .max_by(|a, b| a.0.total_cmp(&b.0))
        });
        let run_id = members.first().map(|r| r.run_id.clone()).unwrap_or_default();
        let verdict_row = |stage: &str, order: &str| VerdictRow {
            run_id: run_id.clone(),
            test: TEST.into(),
            order: order.into(),
            stage: stage.into(),
            method: method.into(),
            postprocess: post.into(),
            metric: metric.into(),
            n_pairs: 0,
            mean: None,
            ceiling_mean: None,
            floor_mean: None,
            test_used: floor.as_ref().map_or(String::new(), |f| format!("wilcoxon_signed_rank_two_sided vs {}", f.1)),
            p_vs_ceiling: None,
            p_vs_ceiling_method: String::new(),
            p_vs_floor: None,
            p_vs_floor_method: String::new(),
            alpha,
            verdict: "not_tested".into(),
        };
        let mean_of = |m: &HashMap<usize, f64>, samples: &[usize]| {
            samples.iter().map(|s| m[s]).sum::<f64>() / samples.len() as f64
        };
        let p = |w: &Option<Wilcoxon>| {
            w.as_ref().map_or((Some(1.0), "identical".to_string()), |w| (Some(w.p_value), w.method.to_string()))
        };
        let beyond = |(diff, w): &(f64, Option<Wilcoxon>)| *diff > 0.0 && w.as_ref().is_some_and(|w| w.p_value < alpha);
        // The trained model against the floor.
        let mut row = verdict_row("trained", "");
        let mut localises = None;
        if let Some((_, _, floor_scores)) = &floor {
            let samples = paired(&[&trained, floor_scores]);
            if !samples.is_empty() {
                let test = above(&trained, floor_scores, &samples);
                let yes = beyond(&test);
                localises = Some(yes);
                (row.p_vs_floor, row.p_vs_floor_method) = p(&test.1);
                row.n_pairs = samples.len();
                row.mean = Some(mean_of(&trained, &samples));
                row.floor_mean = Some(mean_of(floor_scores, &samples));
                row.verdict = if yes { "localises" } else { "does_not_localise" }.into();
            }
        }
        out.push(row);
        for (order, stage) in destroyed(&members) {
            let mut row = verdict_row(&stage, &order);
            let randomised = of_stage(&order, &stage);
            if let Some((_, _, floor_scores)) = &floor {
                let samples = paired(&[&randomised, floor_scores, &trained]);
                if let (false, Some(localises)) = (samples.is_empty(), localises) {
                    let (vs_trained, vs_floor) =
                        (above(&randomised, &trained, &samples), above(&randomised, floor_scores, &samples));
                    (row.p_vs_ceiling, row.p_vs_ceiling_method) = p(&vs_trained.1);
                    (row.p_vs_floor, row.p_vs_floor_method) = p(&vs_floor.1);
                    row.n_pairs = samples.len();
                    row.mean = Some(mean_of(&randomised, &samples));
                    row.ceiling_mean = Some(mean_of(&trained, &samples));
                    row.floor_mean = Some(mean_of(floor_scores, &samples));
                    let below_trained = vs_trained.0 < 0.0 && vs_trained.1.as_ref().is_some_and(|w| w.p_value < alpha);
                    row.verdict = match (localises, beyond(&vs_floor), below_trained) {
                        (false, _, _) => "does_not_localise",
                        (true, false, _) => "stops_localising",
                        (true, true, true) => "stops_partly",
                        (true, true, false) => "localises_under_random_model",
                    }
                    .into();
                }
            }
            out.push(row);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scored(stage: &str, stage_index: usize, method: &str, sample: usize, score: f64) -> ScoreRow {
        ScoreRow {
            run_id: "r".into(),
            test: TEST.into(),
            order: if stage.starts_with("cascading") { "top_down".into() } else { String::new() },
            stage_index,
            stage: stage.into(),
            draw: 0,
            method: method.into(),
            method_b: AGAINST.into(),
            postprocess: "abs".into(),
            metric: "auc".into(),
            sample,
            label: 1,
            target: 1,
            score: Some(score),
            status: "ok".into(),
        }
    }

    #[test]
    fn a_localisation_test_without_rows_is_an_error_line() {
        let row = scored("trained", 0, "gradient", 0, 0.7);
        assert!(unanswered(true, std::slice::from_ref(&row), 5).is_none());
        assert!(unanswered(false, &[], 5).is_none());
        let line = unanswered(true, &[], 5).expect("an error line");
        assert!(line.contains("none of the 5 explained images") && line.contains("attribution.n_images"), "{line}");
    }

    #[test]
    fn a_map_that_localises_only_under_the_trained_model_stops_and_one_that_keeps_does_not() {
        let mut rows = Vec::new();
        for i in 0..20 {
            let jitter = (i as f64 * 0.37).sin() * 0.03;
            rows.push(scored("control", 0, "uniform", i, 0.5));
            rows.push(scored("control", 0, "random_map", i, 0.5 + jitter));
            rows.push(scored("control", 0, "sobel", i, 0.55 + jitter));
            let destroyed_maps = [
                ("gradient", 0.55 + (i as f64).cos() * 0.03),
                ("edges", 0.9 + (i as f64 * 1.3).cos() * 0.03),
                ("partly", 0.7 + jitter),
            ];
            for (method, destroyed) in destroyed_maps {
                rows.push(scored("trained", 0, method, i, 0.9 + jitter));
                rows.push(scored("cascading.fc", 1, method, i, 0.8 + jitter));
                rows.push(scored("cascading.conv", 2, method, i, destroyed));
            }
            rows.push(scored("trained", 0, "flat", i, 0.55 + (i as f64 * 0.7).cos() * 0.03));
            rows.push(scored("cascading.conv", 2, "flat", i, 0.55 + jitter));
        }
        let v = verdicts(&rows, 0.05);
        let of = |method: &str, stage: &str| {
            let r = v.iter().find(|r| r.method == method && r.stage == stage).expect("a verdict");
            (r.verdict.as_str(), r.n_pairs, r.test_used.as_str())
        };
        let floor = "wilcoxon_signed_rank_two_sided vs sobel";
        assert_eq!(of("gradient", "trained"), ("localises", 20, floor));
        assert_eq!(of("gradient", "cascading.conv"), ("stops_localising", 20, floor));
        assert_eq!(of("edges", "cascading.conv").0, "localises_under_random_model");
        assert_eq!(of("partly", "cascading.conv").0, "stops_partly");
        assert_eq!(of("flat", "trained").0, "does_not_localise");
        assert_eq!(of("flat", "cascading.conv").0, "does_not_localise");
        // Only the last stage of the cascade is judged.
        assert!(v.iter().all(|r| r.stage != "cascading.fc"));
        // A bottom-up cascade's first stage has the top-down one's last name: kept apart.
        let mut both = rows.clone();
        for i in 0..20 {
            let mut r = scored("cascading.conv", 1, "gradient", i, 0.9);
            r.order = "bottom_up".into();
            both.push(r);
        }
        let v = verdicts(&both, 0.05);
        let of_order = |order: &str| {
            let r = v.iter().find(|r| r.method == "gradient" && r.stage == "cascading.conv" && r.order == order);
            r.map(|r| r.verdict.clone())
        };
        assert_eq!(of_order("top_down").as_deref(), Some("stops_localising"));
        assert_eq!(of_order("bottom_up").as_deref(), Some("localises_under_random_model"));
        // Without controls nothing is tested.
        rows.retain(|r| r.stage != "control");
        assert!(verdicts(&rows, 0.05).iter().all(|r| r.verdict == "not_tested"));
    }

    #[test]
    fn a_mask_is_resized_to_the_map_and_images_without_an_object_have_no_rows() {
        let mask = Mask::new(vec![false, true, false, false], [2, 2]);
        let slot = control_slot();
        let key = RowKey { run_id: "r", slot: &slot, method: "gradient", postprocess: "abs" };
        // A 4x4 map bright in the top-right quarter: the mask's pixel, upsampled.
        let values: Vec<f32> = (0..16).map(|i| if i / 4 < 2 && i % 4 >= 2 { 1.0 } else { 0.1 }).collect();
        let images = [
            Explained { sample: 3, label: 1, target: 1, mask: Some(&mask) },
            Explained { sample: 4, label: 0, target: 0, mask: None },
        ];
        let maps = [Ok(Map::new(values.clone(), [1, 4, 4])), Ok(Map::new(values, [1, 4, 4]))];
        let metrics = [LocalisationSpec::RelevanceRankAccuracy {}, LocalisationSpec::Auc {}];
        let out = rows(&key, &images, &maps, &metrics);
        assert_eq!(out.len(), 2, "one row per metric, for the image with an object");
        assert!(out.iter().all(|r| r.score == Some(1.0) && r.sample == 3 && r.test == TEST && r.method_b == AGAINST));
        // Three channels that sum to the same map score the same.
        let one = &maps[0].as_ref().expect("a map").data;
        let planar: Vec<f32> =
            [0.25f32, 0.75, 0.0].iter().flat_map(|&share| one.iter().map(move |&v| share * v)).collect();
        let three = [Ok(Map::new(planar, [3, 4, 4]))];
        let summed = rows(&key, &images[..1], &three, &metrics);
        assert_eq!(summed.iter().map(|r| r.score).collect::<Vec<_>>(), [Some(1.0), Some(1.0)]);
        let chance = uniform_rows(&key, &images, &metrics);
        assert_eq!(chance.iter().map(|r| r.score).collect::<Vec<_>>(), [Some(0.25), Some(0.5)]);
    }
}
