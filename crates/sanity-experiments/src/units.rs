//! What a run compares (docs/tests.md): the models it explains, each with the class it
//! explains per image (slots), and the map pairs that each test and control scores (pairings).
//! Slot 0 is always the trained model with the configured explained class.

use crate::cascading::{cascade_order, cascade_step};
use crate::config::{ControlsConfig, ExplainedClass, TestConfig};
use crate::error::Result;
use crate::plan::Plan;
use rand::{Rng, RngCore};
use sanity_data::stream_rng;
use sanity_model::train::classes_of;
use sanity_model::{Model, init_weights};

/// A model explained in a run and the output explained for each explained image.
pub struct Slot {
    /// Its name in `maps/` file names: `original`, or the [`stage_key`] of the stage it is the
    /// model of (`cascading.top_down.fc1`; draws after the first end in `.draw1`, `.draw2`,
    /// ...), or `control.random_models.a` / `.b` (`.a.draw1`, ...).
    pub name: String,
    /// The model.
    pub model: Model,
    /// Explained output index per explained image.
    pub targets: Vec<usize>,
}

/// Where the second map of a pair comes from (the first is a method's map under a slot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Second {
    /// The same method under another slot.
    Slot(usize),
    /// The same method on slot 0 computed again from another seed (the `repeat` control).
    Repeat,
    /// Another method of the run (its index) on slot 0 (`method_agreement`).
    Method(usize),
    /// A control map (index into [`CONTROL_METHODS`]) of the slot-0 images.
    Control(usize),
}

/// The control methods whose maps every method is compared with.
pub const CONTROL_METHODS: [&str; 2] = ["random_map", "sobel"];

/// Maps averaged over noisy copies of the input (smooth MPRT): a noise tunnel around each
/// method.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Smoothing {
    /// Noisy copies.
    pub samples: usize,
    /// Noise std as a fraction of the image's value range.
    pub noise: f64,
}

/// One kind of score row: its identifying columns and the two maps it compares.
#[derive(Debug, Clone, PartialEq)]
pub struct Pairing {
    /// `cascading`, `independent`, `random_logit`, `method_agreement` or `control`.
    pub test: &'static str,
    /// `top_down` / `bottom_up` for cascades, empty otherwise.
    pub order: &'static str,
    /// 1-based stage number (how many layers are randomised in a cascade; the layer's position
    /// in network order for `independent`; 1 for single-stage tests and controls).
    pub stage_index: usize,
    /// Which independent re-initialisation of the stage (0-based; 0 for unrandomised tests).
    pub draw: usize,
    /// The layer randomised last; the test or control name for single-stage ones.
    pub stage: String,
    /// The slot of the first map.
    pub first: usize,
    /// The second map.
    pub second: Second,
    /// The method of the first map for `method_agreement`; None: every method.
    pub method: Option<usize>,
    /// Both maps are smoothed (smooth MPRT); None: the methods' own maps.
    pub smoothing: Option<Smoothing>,
}

/// The slots and pairings of `plan`, given the trained `model`, the model trained on random
/// labels (when the plan has the data randomisation test), the explained images' labels, the
/// trained model's classes and a way to get a model's logits on the explained images.
pub fn design(
    plan: &Plan,
    model: &Model,
    random_label_model: Option<&Model>,
    labels: &[usize],
    original_classes: &[usize],
    logits_of: &mut dyn FnMut(&Model) -> Result<Vec<f32>>,
) -> Result<(Vec<Slot>, Vec<Pairing>)> {
    let config = &plan.config;
    let (seed, outputs, explain) = (config.seed, plan.arch.num_outputs(), config.attribution.explain);
    // The class explained under a model: fixed, or (current_prediction of a multi-class model)
    // the model's own argmax.
    let mut targets_of = |m: &Model| -> Result<Vec<usize>> {
        Ok(match (outputs, explain) {
            (1, _) => vec![0; labels.len()],
            (_, ExplainedClass::TrueLabel) => labels.to_vec(),
            (_, ExplainedClass::OriginalPrediction) => original_classes.to_vec(),
            (_, ExplainedClass::CurrentPrediction) => classes_of(&logits_of(m)?, outputs),
        })
    };
    let mut slots = vec![Slot { name: "original".into(), model: model.clone(), targets: targets_of(model)? }];
    let mut pairings = Vec::new();
    let add_slot = |slots: &mut Vec<Slot>, name: String, model: Model, targets: Vec<usize>| {
        slots.push(Slot { name, model, targets });
        slots.len() - 1
    };
    let network_order: Vec<String> = plan.arch.stages().iter().map(|s| s.to_string()).collect();
    for test in &config.tests {
        match test {
            TestConfig::Cascading { order, reinit, stages, .. }
            | TestConfig::SmoothMprt { order, reinit, stages, .. } => {
                // Smooth MPRT is a cascade whose maps are means over noisy copies.
                let smoothing = match test {
                    TestConfig::SmoothMprt { samples, noise, .. } => {
                        Some(Smoothing { samples: *samples, noise: *noise })
                    }
                    _ => None,
                };
                for draw in 0..test.draws() {
                    let mut weights = model.weights.clone();
                    let sequence = cascade_order(stages.as_deref().unwrap_or_default(), *order);
                    for (k, stage) in sequence.iter().enumerate() {
                        weights = cascade_step(&weights, &plan.arch, stage, reinit, seed, draw)?;
                        let randomized = model.with_weights(weights.clone());
                        let targets = targets_of(&randomized)?;
                        let name = drawn(stage_key(test.id(), order.name(), stage), draw);
                        let slot = add_slot(&mut slots, name, randomized, targets);
                        pairings.push(Pairing {
                            test: test.id(),
                            order: order.name(),
                            stage_index: k + 1,
                            draw,
                            stage: stage.clone(),
                            first: 0,
                            second: Second::Slot(slot),
                            method: None,
                            smoothing,
                        });
                    }
                }
            }
            TestConfig::EfficientMprt { reinit, stages, draws } => {
                let stages = stages.as_deref().unwrap_or_default();
                for draw in 0..*draws {
                    let mut weights = model.weights.clone();
                    for stage in stages {
                        weights = cascade_step(&weights, &plan.arch, stage, reinit, seed, draw)?;
                    }
                    let randomized = model.with_weights(weights);
                    let targets = targets_of(&randomized)?;
                    let slot = add_slot(&mut slots, drawn(stage_key(test.id(), "", "all"), draw), randomized, targets);
                    pairings.push(Pairing {
                        stage_index: stages.len(),
                        draw,
                        ..single(test.id(), "all", 0, Second::Slot(slot), None)
                    });
                }
            }
            TestConfig::Independent { reinit, stages, draws } => {
                for draw in 0..*draws {
                    for stage in stages.as_deref().unwrap_or_default() {
                        let weights = cascade_step(&model.weights, &plan.arch, stage, reinit, seed, draw)?;
                        let randomized = model.with_weights(weights);
                        let targets = targets_of(&randomized)?;
                        let slot =
                            add_slot(&mut slots, drawn(stage_key(test.id(), "", stage), draw), randomized, targets);
                        pairings.push(Pairing {
                            test: test.id(),
                            order: "",
                            stage_index: network_order.iter().position(|s| s == stage).unwrap_or(0) + 1,
                            draw,
                            stage: stage.clone(),
                            first: 0,
                            second: Second::Slot(slot),
                            method: None,
                            smoothing: None,
                        });
                    }
                }
            }
            TestConfig::DataRandomization { .. } => {
                if let Some(m) = random_label_model {
                    let targets = targets_of(m)?;
                    let slot = add_slot(&mut slots, stage_key(test.id(), "", "random_labels"), m.clone(), targets);
                    pairings.push(single(test.id(), "random_labels", 0, Second::Slot(slot), None));
                }
            }
            TestConfig::RandomLogit {} => {
                let targets = random_other_classes(&slots[0].targets, outputs, seed);
                let slot = add_slot(&mut slots, stage_key(test.id(), "", "random_logit"), model.clone(), targets);
                pairings.push(single(test.id(), "random_logit", 0, Second::Slot(slot), None));
            }
            TestConfig::MethodAgreement { pairs } => {
                let ids: Vec<&str> = config.attribution.methods.iter().map(|m| m.id()).collect();
                for [a, b] in pairs.as_deref().unwrap_or_default() {
                    let (Some(i), Some(j)) = (ids.iter().position(|id| id == a), ids.iter().position(|id| id == b))
                    else {
                        continue; // The plan checked the names.
                    };
                    pairings.push(single(test.id(), "method_agreement", 0, Second::Method(j), Some(i)));
                }
            }
        }
    }
    let ControlsConfig { random_map, sobel, random_models, draws, repeat } = config.controls;
    if repeat {
        pairings.push(single("control", "repeat", 0, Second::Repeat, None));
    }
    if random_models {
        let mut untrained = |k: u64, name: &str| -> Result<usize> {
            let init_seed = stream_rng(seed, "random_models", k).next_u64();
            let m = model.with_weights(init_weights(&plan.arch, init_seed)?);
            let targets = targets_of(&m)?;
            Ok(add_slot(&mut slots, format!("control.random_models.{name}"), m, targets))
        };
        // Draw 0's pair is the one every earlier run had: streams 0 and 1.
        for draw in 0..draws {
            let (k, name) = (2 * draw as u64, |side: &str| drawn(side.to_string(), draw));
            let (a, b) = (untrained(k, &name("a"))?, untrained(k + 1, &name("b"))?);
            pairings.push(Pairing { draw, ..single("control", "random_models", a, Second::Slot(b), None) });
        }
    }
    for (c, enabled) in [random_map, sobel].into_iter().enumerate() {
        if enabled {
            pairings.push(single("control", CONTROL_METHODS[c], 0, Second::Control(c), None));
        }
    }
    Ok((slots, pairings))
}

/// The name of a stage's model in `maps/` file names: the non-empty parts of a score row's
/// `test`, `order` and `stage`, joined by dots (`cascading.top_down.fc1`, `independent.conv1`,
/// `data_randomization.random_labels`; a stage named as its test once: `random_logit`).
pub fn stage_key(test: &str, order: &str, stage: &str) -> String {
    let mut parts: Vec<&str> = [test, order, stage].into_iter().filter(|s| !s.is_empty()).collect();
    parts.dedup();
    parts.join(".")
}

/// `name` of draw `draw`: as it is for the first draw (the names of every earlier run), with
/// `.draw<k>` after it for the others.
fn drawn(name: String, draw: usize) -> String {
    if draw == 0 { name } else { format!("{name}.draw{draw}") }
}

fn single(test: &'static str, stage: &str, first: usize, second: Second, method: Option<usize>) -> Pairing {
    Pairing {
        test,
        order: "",
        stage_index: 1,
        draw: 0,
        stage: stage.to_string(),
        first,
        second,
        method,
        smoothing: None,
    }
}

/// For each image, a class drawn uniformly from the `outputs − 1` classes other than its
/// target, from `stream_rng(seed, "random_logit", image position)`.
pub fn random_other_classes(targets: &[usize], outputs: usize, seed: u64) -> Vec<usize> {
    targets
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            let draw = stream_rng(seed, "random_logit", i as u64).random_range(0..outputs - 1);
            if draw >= t { draw + 1 } else { draw }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_logits_are_other_classes_spread_over_all_of_them() {
        let targets: Vec<usize> = (0..600).map(|i| i % 10).collect();
        let drawn = random_other_classes(&targets, 10, 3);
        assert!(drawn.iter().zip(&targets).all(|(d, t)| d != t && *d < 10));
        let mut counts = [0usize; 10];
        drawn.iter().for_each(|&d| counts[d] += 1);
        assert!(counts.iter().all(|&c| c > 30), "{counts:?}");
        assert_eq!(drawn, random_other_classes(&targets, 10, 3));
    }
}
