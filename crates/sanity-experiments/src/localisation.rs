//! The `localisation` test's rows (docs/tests.md): each method's post-processed map of an
//! explained image against the image's ground-truth mask, under the trained model and under
//! each model the run's randomisation tests make, and the controls' (the random map, the Sobel
//! edge map, and `uniform`: the chance level of a map whose values all tie).

use crate::units::{Pairing, Second};
use sanity_metrics::{LocalisationSpec, Map, Mask, Status};
use sanity_rundir::files::stage_key;
use sanity_rundir::rows::ScoreRow;

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
/// post-processing) by each of `metrics`; images without an object have none. A mask is
/// resized (nearest) to a map of another size.
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

/// `mask` at `map`'s height and width.
fn fitted(mask: &Mask, map: &Map) -> Mask {
    let [_, h, w] = map.shape;
    if mask.shape == [h, w] {
        return mask.clone();
    }
    let [mh, mw] = mask.shape;
    Mask::new(sanity_data::resize_nearest(&mask.inside, mh, mw, h, w), [h, w])
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

/// The controls' pseudo-slot: `stage = "control"`.
pub fn control_slot() -> LocalisedSlot {
    LocalisedSlot { slot: 0, order: "", stage_index: 0, stage: "control".into(), draw: 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let chance = uniform_rows(&key, &images, &metrics);
        assert_eq!(chance.iter().map(|r| r.score).collect::<Vec<_>>(), [Some(0.25), Some(0.5)]);
    }
}
