//! What a run compares (docs/tests.md): the models it explains, each with the class it
//! explains per image (slots), and the map pairs that each test and control scores (pairings).
//! Slot 0 is always the trained model with the configured explained class.

use crate::cascading::{cascade_order, cascade_step};
use crate::checked::{Randomization, Smoothing, TestKind};
use crate::plan::Plan;
use rand::{Rng, RngCore};
use sanity_data::stream_rng;
use sanity_model::NetModel;
use sanity_model::train::classes_of;
use sanity_rundir::config::{ControlsConfig, ExplainedClass};
use sanity_rundir::error::Result;
use sanity_rundir::files::stage_key;

/// A model explained in a run and the output explained for each explained image.
pub struct Slot {
    /// Its name in `maps/` file names: `original`, or the [`stage_key`] of the stage it is the
    /// model of (`cascading.top_down.fc1`; draws after the first end in `.draw1`, `.draw2`,
    /// ...), or `control.random_models.a` / `.b` (`.a.draw1`, ...).
    pub name: String,
    /// The model.
    pub model: NetModel,
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
    model: &NetModel,
    random_label_model: Option<&NetModel>,
    labels: &[usize],
    original_classes: &[usize],
    logits_of: &mut dyn FnMut(&NetModel) -> Result<Vec<f32>>,
) -> Result<(Vec<Slot>, Vec<Pairing>)> {
    let config = &plan.config;
    let mut d = Designer { plan, model, labels, original_classes, logits_of, slots: Vec::new(), pairings: Vec::new() };
    d.add_slot("original".into(), model.clone())?;
    for test in &plan.tests {
        match &test.kind {
            TestKind::Randomization { how: Randomization::Cascade { order, smoothing }, reinit, stages, draws } => {
                d.cascade(test.id, *order, reinit, stages, *draws, *smoothing)?;
            }
            TestKind::Randomization { how: Randomization::AllAtOnce, reinit, stages, draws } => {
                d.all_at_once(test.id, reinit, stages, *draws)?;
            }
            TestKind::Randomization { how: Randomization::Independent, reinit, stages, draws } => {
                d.independent(test.id, reinit, stages, *draws)?;
            }
            TestKind::RandomLabels(_) => {
                if let Some(m) = random_label_model {
                    let slot = d.add_slot(stage_key(test.id, "", "random_labels"), m.clone())?;
                    d.pairings.push(single(test.id, "random_labels", 0, Second::Slot(slot), None));
                }
            }
            TestKind::RandomLogit => {
                let targets = random_other_classes(&d.slots[0].targets, plan.net.num_outputs(), config.seed);
                d.slots.push(Slot { name: stage_key(test.id, "", "random_logit"), model: model.clone(), targets });
                let slot = d.slots.len() - 1;
                d.pairings.push(single(test.id, "random_logit", 0, Second::Slot(slot), None));
            }
            TestKind::MethodAgreement { pairs } => {
                for &(i, j) in pairs {
                    d.pairings.push(single(test.id, "method_agreement", 0, Second::Method(j), Some(i)));
                }
            }
            // Scores the maps of the slots the other tests make (`localisation.rs`).
            TestKind::Localisation { .. } => {}
        }
    }
    d.controls()?;
    Ok((d.slots, d.pairings))
}

/// Builds the slots and pairings of [`design`], one test at a time.
struct Designer<'a> {
    plan: &'a Plan,
    model: &'a NetModel,
    labels: &'a [usize],
    original_classes: &'a [usize],
    logits_of: &'a mut dyn FnMut(&NetModel) -> Result<Vec<f32>>,
    slots: Vec<Slot>,
    pairings: Vec<Pairing>,
}

impl Designer<'_> {
    /// Adds a slot of `model`, named `name`, explaining the class the config says: fixed, or
    /// (current_prediction of a multi-class model) the model's own argmax. Returns its index.
    fn add_slot(&mut self, name: String, model: NetModel) -> Result<usize> {
        let outputs = self.plan.net.num_outputs();
        let targets = match (outputs, self.plan.config.attribution.explain) {
            (1, _) => vec![0; self.labels.len()],
            (_, ExplainedClass::TrueLabel) => self.labels.to_vec(),
            (_, ExplainedClass::OriginalPrediction) => self.original_classes.to_vec(),
            (_, ExplainedClass::CurrentPrediction) => classes_of(&(self.logits_of)(&model)?, outputs),
        };
        self.slots.push(Slot { name, model, targets });
        Ok(self.slots.len() - 1)
    }

    /// A cascade (or smooth MPRT): per draw, stage k re-initialises the first k layers of the
    /// order on top of stage k − 1.
    fn cascade(
        &mut self,
        test: &'static str,
        order: sanity_rundir::config::Order,
        reinit: &sanity_model::Reinit,
        stages: &[String],
        draws: usize,
        smoothing: Option<Smoothing>,
    ) -> Result<()> {
        let (net, seed) = (&self.plan.net, self.plan.config.seed);
        let sequence = cascade_order(stages, order);
        for draw in 0..draws {
            let mut weights = self.model.weights.clone();
            for (k, stage) in sequence.iter().enumerate() {
                weights = cascade_step(&weights, net, stage, reinit, seed, draw)?;
                let name = drawn(stage_key(test, order.name(), stage), draw);
                let slot = self.add_slot(name, self.model.with_weights(weights.clone()))?;
                self.pairings.push(Pairing {
                    test,
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
        Ok(())
    }

    /// Efficient MPRT: per draw, every listed layer re-initialised at once.
    fn all_at_once(
        &mut self,
        test: &'static str,
        reinit: &sanity_model::Reinit,
        stages: &[String],
        draws: usize,
    ) -> Result<()> {
        let (net, seed) = (&self.plan.net, self.plan.config.seed);
        for draw in 0..draws {
            let mut weights = self.model.weights.clone();
            for stage in stages {
                weights = cascade_step(&weights, net, stage, reinit, seed, draw)?;
            }
            let slot = self.add_slot(drawn(stage_key(test, "", "all"), draw), self.model.with_weights(weights))?;
            self.pairings.push(Pairing {
                stage_index: stages.len(),
                draw,
                ..single(test, "all", 0, Second::Slot(slot), None)
            });
        }
        Ok(())
    }

    /// Independent randomisation: per draw, one layer at a time re-initialised.
    fn independent(
        &mut self,
        test: &'static str,
        reinit: &sanity_model::Reinit,
        stages: &[String],
        draws: usize,
    ) -> Result<()> {
        let (net, seed) = (&self.plan.net, self.plan.config.seed);
        let network_order = net.layers();
        let position = |stage: &str| -> usize {
            let first = net.stage_layers(stage).ok().and_then(|layers| layers.into_iter().next());
            first.and_then(|f| network_order.iter().position(|l| *l == f)).unwrap_or(0)
        };
        for draw in 0..draws {
            for stage in stages {
                let weights = cascade_step(&self.model.weights, net, stage, reinit, seed, draw)?;
                let name = drawn(stage_key(test, "", stage), draw);
                let slot = self.add_slot(name, self.model.with_weights(weights))?;
                self.pairings.push(Pairing {
                    test,
                    order: "",
                    stage_index: position(stage) + 1,
                    draw,
                    stage: stage.clone(),
                    first: 0,
                    second: Second::Slot(slot),
                    method: None,
                    smoothing: None,
                });
            }
        }
        Ok(())
    }

    /// The controls the config switches on: the repeat ceiling, pairs of untrained models (the
    /// floor; draw 0's pair is the one every earlier run had: streams 0 and 1), the random and
    /// Sobel maps.
    fn controls(&mut self) -> Result<()> {
        let ControlsConfig { random_map, sobel, random_models, draws, repeat } = self.plan.config.controls;
        let seed = self.plan.config.seed;
        if repeat {
            self.pairings.push(single("control", "repeat", 0, Second::Repeat, None));
        }
        if random_models {
            for draw in 0..draws {
                let mut untrained = |k: u64, side: &str| -> Result<usize> {
                    let init_seed = stream_rng(seed, "random_models", k).next_u64();
                    let m = self.model.with_weights(self.plan.net.init(init_seed)?);
                    self.add_slot(format!("control.random_models.{}", drawn(side.to_string(), draw)), m)
                };
                let k = 2 * draw as u64;
                let (a, b) = (untrained(k, "a")?, untrained(k + 1, "b")?);
                self.pairings.push(Pairing { draw, ..single("control", "random_models", a, Second::Slot(b), None) });
            }
        }
        for (c, enabled) in [random_map, sobel].into_iter().enumerate() {
            if enabled {
                self.pairings.push(single("control", CONTROL_METHODS[c], 0, Second::Control(c), None));
            }
        }
        Ok(())
    }
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
