//! Initialisation and re-initialisation of a graph's layers by op kind, as PyTorch's
//! `reset_parameters()` does it (a graph from ONNX or a graph preset has no initialisers of
//! its own), and the blocks a cascade on a graph may randomise together (Hedström et al. 2023
//! randomise ResNet blocks). docs/models.md, "Graphs and ONNX".

use crate::error::{ModelError, Result};
use crate::graph::{Graph, GraphOp, Node};
use crate::init::Reinit;
use crate::weights::Weights;
use candle_core::{DType, Device, Tensor};
use rand::Rng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use sanity_data::stream_rng;

/// A layer's fan-in: a conv's `in_channels / groups · kh · kw`, a linear layer's inputs.
fn fan_in(op: &GraphOp) -> usize {
    match *op {
        GraphOp::Conv(c) => c.in_channels / c.groups.max(1) * c.kernel[0] * c.kernel[1],
        GraphOp::Linear { in_features, .. } => in_features,
        _ => 1,
    }
}

/// PyTorch's `reset_parameters()` of a layer: a conv's or linear layer's weight and bias from
/// `U(±1/sqrt(fan_in))` (kaiming-uniform with a = √5, and its bias rule); a batch norm's
/// weight 1, bias 0, running mean 0, running variance 1.
fn pytorch_default(node: &Node, rng: &mut ChaCha8Rng) -> Vec<(&'static str, Vec<usize>, Vec<f32>)> {
    let bound = 1.0 / (fan_in(&node.op) as f64).sqrt();
    node.op
        .parameters()
        .into_iter()
        .map(|(what, shape)| {
            let n = shape.iter().product();
            let values = match (&node.op, what) {
                (GraphOp::BatchNorm { .. }, "weight" | "running_var") => vec![1.0; n],
                (GraphOp::BatchNorm { .. }, _) => vec![0.0; n],
                _ => (0..n).map(|_| rng.random_range(-bound..=bound) as f32).collect(),
            };
            (what, shape, values)
        })
        .collect()
}

/// Fresh weights for every layer of `graph` by PyTorch's `reset_parameters()` rule; the layer of node `k`
/// draws from `stream_rng(seed, "init", k)`.
pub fn init_graph(graph: &Graph, seed: u64) -> Result<Weights> {
    let mut weights = Weights::new();
    for (k, node) in graph.nodes.iter().enumerate() {
        let mut rng = stream_rng(seed, "init", k as u64);
        for (what, shape, values) in pytorch_default(node, &mut rng) {
            weights.insert(format!("{}.{what}", node.name), Tensor::from_vec(values, shape, &Device::Cpu)?);
        }
    }
    Ok(weights)
}

/// New weights equal to `weights` except layer `layer` of `graph`, re-drawn by `reinit` from
/// `rng` (pure). `original` and `pytorch_default` follow PyTorch's `reset_parameters()`; `truncated_normal`
/// draws the weight (a batch norm's scale too) from a normal truncated at 2 std and the rest by
/// PyTorch's rule; `permute` shuffles each trained parameter, `gaussian_perturb` adds noise
/// relative to its root mean square. Re-drawn from scratch, a batch norm forgets its running
/// statistics; permuted or perturbed, it keeps them.
pub fn reinitialize_graph(
    weights: &Weights,
    graph: &Graph,
    layer: &str,
    reinit: &Reinit,
    rng: &mut ChaCha8Rng,
) -> Result<Weights> {
    let node = graph.nodes.iter().find(|n| n.name == layer && !n.op.parameters().is_empty()).ok_or_else(|| {
        ModelError::UnknownLayer {
            name: layer.to_string(),
            available: graph.layers().map(|n| n.name.as_str()).collect::<Vec<_>>().join(", "),
        }
    })?;
    let trained = |what: &str| -> Result<Vec<f32>> {
        Ok(weights.get(&format!("{layer}.{what}"))?.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
    };
    let statistics = |what: &str| matches!(what, "running_mean" | "running_var");
    let mut drawn: Vec<(&'static str, Vec<usize>, Vec<f32>)> = match reinit {
        Reinit::Original {} | Reinit::PytorchDefault {} => pytorch_default(node, rng),
        Reinit::TruncatedNormal { std } => {
            let normal = Normal::new(0.0, *std)
                .ok()
                .filter(|_| std.is_finite() && *std > 0.0)
                .ok_or_else(|| invalid(layer, format!("truncated_normal std = {std}; accepted: a finite value > 0")))?;
            let mut drawn = pytorch_default(node, rng);
            if let Some((_, _, values)) = drawn.iter_mut().find(|(what, _, _)| *what == "weight") {
                for v in values.iter_mut() {
                    *v = loop {
                        let x: f64 = normal.sample(rng);
                        if x.abs() <= 2.0 * std {
                            break x as f32;
                        }
                    };
                }
            }
            drawn
        }
        Reinit::Permute {} => node
            .op
            .parameters()
            .into_iter()
            .filter(|(what, _)| !statistics(what))
            .map(|(what, shape)| {
                let mut values = trained(what)?;
                values.shuffle(rng);
                Ok((what, shape, values))
            })
            .collect::<Result<_>>()?,
        Reinit::GaussianPerturb { scale } => {
            if !(scale.is_finite() && *scale >= 0.0) {
                return Err(invalid(layer, format!("gaussian_perturb scale = {scale}; accepted: a finite value >= 0")));
            }
            node.op
                .parameters()
                .into_iter()
                .filter(|(what, _)| !statistics(what))
                .map(|(what, shape)| {
                    let values = trained(what)?;
                    let rms =
                        (values.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / values.len().max(1) as f64).sqrt();
                    let normal = Normal::new(0.0, scale * rms).map_err(|e| invalid(layer, e.to_string()))?;
                    Ok((what, shape, values.iter().map(|&v| (f64::from(v) + normal.sample(rng)) as f32).collect()))
                })
                .collect::<Result<_>>()?
        }
    };
    let mut out = weights.clone();
    for (what, shape, values) in drawn.drain(..) {
        out.insert(format!("{layer}.{what}"), Tensor::from_vec(values, shape, &Device::Cpu)?);
    }
    Ok(out)
}

fn invalid(layer: &str, reason: String) -> ModelError {
    ModelError::InvalidArchitecture { layer: layer.to_string(), reason }
}

/// The blocks of `graph`'s layers, in graph order: a layer named `stage.index.rest` (a ResNet's
/// `layer4.1.conv2`, `layer2.0.downsample.0`) belongs to block `stage.index`; any other layer
/// (`conv1`, `bn1`, `fc`, a VGG's `features.3`) is a block of its own. Each block lists its
/// layers in graph order. A cascade by blocks randomises a block's layers together, top-down
/// from the last block.
pub fn blocks(graph: &Graph) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for node in graph.layers() {
        let parts: Vec<&str> = node.name.split('.').collect();
        let block = match parts.as_slice() {
            [stage, index, _, ..] if index.parse::<usize>().is_ok() => format!("{stage}.{index}"),
            _ => node.name.clone(),
        };
        match out.iter_mut().find(|(b, _)| *b == block) {
            Some((_, layers)) => layers.push(node.name.clone()),
            None => out.push((block, vec![node.name.clone()])),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph_presets::graph_preset;

    fn values(w: &Weights, name: &str) -> Vec<f32> {
        w.get(name).expect(name).flatten_all().expect("flat").to_vec1::<f32>().expect("f32")
    }

    #[test]
    fn layers_start_as_pytorch_resets_them_each_from_its_own_stream() {
        let graph = graph_preset("resnet18", [3, 32, 32], 10).expect("preset");
        let weights = init_graph(&graph, 5).expect("init");
        let w = values(&weights, "layer2.0.conv1.weight");
        let bound = 1.0 / ((64 * 9) as f32).sqrt();
        assert!(w.iter().all(|v| v.abs() <= bound), "U(±1/sqrt(fan_in))");
        let std = (w.iter().map(|v| v * v).sum::<f32>() / w.len() as f32).sqrt();
        assert!((std - bound / 3f32.sqrt()).abs() < 0.03 * bound, "std {std} of U(±{bound})");
        assert_eq!(values(&weights, "bn1.weight"), vec![1.0; 64]);
        assert_eq!(values(&weights, "layer1.0.bn2.running_var"), vec![1.0; 64]);
        assert_eq!(values(&weights, "layer1.0.bn2.running_mean"), vec![0.0; 64]);
        let fc = values(&weights, "fc.bias");
        assert!(fc.iter().all(|v| v.abs() <= 1.0 / 512f32.sqrt()) && fc.iter().any(|&v| v != 0.0));
        // The same seed gives the same weights; another seed others.
        assert_eq!(values(&init_graph(&graph, 5).expect("again"), "fc.weight"), values(&weights, "fc.weight"));
        assert_ne!(values(&init_graph(&graph, 6).expect("other"), "fc.weight"), values(&weights, "fc.weight"));
    }

    #[test]
    fn a_reinitialised_layer_changes_alone_and_batch_norms_reset_or_keep_their_statistics() {
        let graph = graph_preset("resnet18", [3, 32, 32], 10).expect("preset");
        let mut trained = init_graph(&graph, 1).expect("init");
        let stats = Tensor::from_vec(vec![0.5f32; 128], 128, &Device::Cpu).expect("tensor");
        trained.insert("layer2.0.bn1.running_mean", stats);
        let mut rng = stream_rng(2, "t", 0);
        let fresh =
            reinitialize_graph(&trained, &graph, "layer2.0.bn1", &Reinit::Original {}, &mut rng).expect("reset");
        assert_eq!(values(&fresh, "layer2.0.bn1.running_mean"), vec![0.0; 128], "reset");
        let permuted =
            reinitialize_graph(&trained, &graph, "layer2.0.conv1", &Reinit::Permute {}, &mut rng).expect("permute");
        let (mut a, mut b) = (values(&permuted, "layer2.0.conv1.weight"), values(&trained, "layer2.0.conv1.weight"));
        assert_ne!(a, b);
        a.sort_by(f32::total_cmp);
        b.sort_by(f32::total_cmp);
        assert_eq!(a, b, "a permutation of the trained values");
        for (name, _) in graph.parameter_shapes().into_iter().filter(|(n, _)| !n.starts_with("layer2.0.conv1.")) {
            assert_eq!(values(&permuted, &name), values(&trained, &name), "{name} untouched");
        }
        let kept =
            reinitialize_graph(&trained, &graph, "layer2.0.bn1", &Reinit::Permute {}, &mut rng).expect("permute");
        assert_eq!(values(&kept, "layer2.0.bn1.running_mean"), vec![0.5; 128], "kept");
        let e = reinitialize_graph(&trained, &graph, "layer2.0.relu", &Reinit::Original {}, &mut rng)
            .expect_err("no params");
        assert!(e.to_string().contains("layer2.0.conv1"), "{e}");
        let bad = Reinit::TruncatedNormal { std: -1.0 };
        assert!(reinitialize_graph(&trained, &graph, "fc", &bad, &mut rng).is_err());
    }

    #[test]
    fn resnet_layers_group_into_blocks_and_others_stand_alone() {
        let graph = graph_preset("resnet18", [3, 32, 32], 10).expect("preset");
        let blocks = blocks(&graph);
        let names: Vec<&str> = blocks.iter().map(|(b, _)| b.as_str()).collect();
        assert_eq!(
            names,
            [
                "conv1", "bn1", "layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer3.0", "layer3.1", "layer4.0",
                "layer4.1", "fc"
            ]
        );
        let (_, layer4_0) = &blocks[8];
        assert_eq!(
            layer4_0,
            &[
                "layer4.0.conv1",
                "layer4.0.bn1",
                "layer4.0.conv2",
                "layer4.0.bn2",
                "layer4.0.downsample.0",
                "layer4.0.downsample.1"
            ]
        );
        let vgg = graph_preset("vgg11", [3, 32, 32], 10).expect("vgg");
        assert!(
            crate::graph_init::blocks(&vgg).iter().all(|(b, layers)| layers.len() == 1 && &layers[0] == b),
            "one layer each"
        );
    }
}
