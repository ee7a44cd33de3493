//! Cascading model-parameter randomisation — Adebayo et al. 2018, arXiv:1810.03292, section 4.1.
//! Stage k re-initialises the first k stages of the order (top-down: logits first), on top of
//! stage k − 1: a fold over the stages. A stage is a layer or, on a graph, a module's layers
//! (a ResNet block; `sanity_model::net`). In draw `d` (one of a test's independent
//! re-initialisations) layer `l` always draws from `stream_rng(seed, "cascade", index of l)`
//! for d = 0 and `stream_rng(seed, "cascade", d · 2^32 + index of l)` after, so a layer gets
//! the same random values whatever the order and whichever stages come before it, and draw 0
//! is the single draw of the runs before draws existed.

use sanity_data::stream_rng;
use sanity_model::{Net, Reinit, Weights};
use sanity_rundir::config::Order;
use sanity_rundir::error::Result;

/// The stages in the order they are randomised.
pub fn cascade_order(stages: &[String], order: Order) -> Vec<String> {
    match order {
        Order::BottomUp => stages.to_vec(),
        Order::TopDown => stages.iter().rev().cloned().collect(),
    }
}

/// The weights of the next stage of draw `draw`: `previous` with the layers of `stage`
/// re-initialised, each from its own stream.
pub fn cascade_step(
    previous: &Weights,
    net: &Net,
    stage: &str,
    reinit: &Reinit,
    seed: u64,
    draw: usize,
) -> Result<Weights> {
    let mut weights = previous.clone();
    for layer in net.stage_layers(stage)? {
        let stream = ((draw as u64) << 32) + net.layer_index(&layer)? as u64;
        let mut rng = stream_rng(seed, "cascade", stream);
        weights = net.reinitialize(&weights, &layer, reinit, &mut rng)?;
    }
    Ok(weights)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sanity_model::{Architecture, init_weights, preset};
    use std::sync::Arc;

    fn phantom_cnn() -> (Arc<Architecture>, Net) {
        let arch = Arc::new(Architecture::new(preset("phantom-cnn", [1, 32, 32]).expect("preset")).expect("valid"));
        (Arc::clone(&arch), Net::Layers(arch))
    }

    #[test]
    fn each_draw_is_its_own_reinitialisation_and_repeats_itself() {
        let (arch, net) = phantom_cnn();
        let trained = init_weights(&arch, 1).expect("init");
        let layer = arch.stages()[0].to_string();
        let weight = |draw: usize| {
            let w = cascade_step(&trained, &net, &layer, &Reinit::Original {}, 9, draw).expect("step");
            w.get(&format!("{layer}.weight"))
                .expect("weight")
                .flatten_all()
                .expect("flat")
                .to_vec1::<f32>()
                .expect("f32")
        };
        assert_eq!(weight(1), weight(1), "a draw is seeded");
        assert_ne!(weight(0), weight(1));
        assert_ne!(weight(1), weight(2));
    }

    #[test]
    fn step_k_changes_exactly_the_first_k_layers_of_the_order() {
        let (arch, net) = phantom_cnn();
        let trained = init_weights(&arch, 1).expect("init");
        let stages: Vec<String> = arch.stages().iter().map(|s| s.to_string()).collect();
        for order in [Order::TopDown, Order::BottomUp] {
            let sequence = cascade_order(&stages, order);
            let mut current = trained.clone();
            for k in 1..=sequence.len() {
                current = cascade_step(&current, &net, &sequence[k - 1], &Reinit::Original {}, 9, 0).expect("step");
                for (name, tensor) in current.iter() {
                    let layer = name.split_once('.').expect("layer.param").0;
                    let before = trained.get(name).expect("same names");
                    let diff = (tensor - before)
                        .expect("sub")
                        .abs()
                        .expect("abs")
                        .sum_all()
                        .expect("sum")
                        .to_scalar::<f32>()
                        .expect("f32");
                    let randomised = sequence[..k].iter().any(|s| s == layer);
                    // Constant-initialised biases (Keras zeros) are redrawn to the same value.
                    if name.ends_with(".weight") {
                        assert_eq!(diff > 0.0, randomised, "{order:?} stage {k}: {name} changed = {}", diff > 0.0);
                    } else if !randomised {
                        assert_eq!(diff, 0.0, "{order:?} stage {k}: untouched {name} changed");
                    }
                }
            }
        }
    }
}
