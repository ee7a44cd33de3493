//! Layer-wise relevance propagation on a model graph: `lrp.rs`'s rules on the graph walk
//! (`graph_engine.rs`), so that an ONNX import or a graph preset gets the same LRP-ε and
//! LRP-αβ maps as a sequential model (tested on the presets as graphs). What a graph has and a
//! stack has not gets these rules:
//!
//! - **Batch norm after a convolution** (or a linear layer) that nothing else reads is merged
//!   into it first: `W' = s ⊙ W`, `b' = s b + t` per output channel, with `s, t` the batch
//!   norm's scale and shift. This is the canonisation of Motzkus et al. 2022 ("Measurably
//!   Stronger Explanation Reliability via Model Canonization", ICIP) and of zennit's
//!   `SequentialMergeBatchNorm` (Anders et al. 2021), and it is what `torch.onnx.export` does,
//!   so a preset with its batch norms and its ONNX export give the same maps (tested).
//! - **Residual add** `y = a + b`: each input gets its share in proportion to its value,
//!   `R_a = a R / (y + ε sign y)` with ε = 1e-9 (the ε rule with unit weights and no bias:
//!   zennit's `Norm` rule at a ResNet's sum). Conservative up to ε.
//! - **Concatenation** hands each input its channels' relevance.
//! - ReLU, tanh, identity (dropout), flatten and a scale by a constant pass relevance unchanged
//!   (Captum's rule for ReLU, tanh and dropout; for `y = c x` the ε rule gives `R_x = R`).
//! - Max, average, adaptive average and global average pooling take the ε rule with
//!   ε = 1e-9 whatever the rule of the layers with weights, as in `lrp.rs`.
//!
//! LeakyReLU, sigmoid, GELU and a batch norm that cannot be merged have no rule here: [`check`]
//! refuses the graph naming the node.

use crate::error::{ModelError, Result};
use crate::graph::{Graph, GraphOp, NodeSpec};
use crate::graph_engine::{GraphModel, Parameters, accumulate, forward, node_backward};
use crate::lrp::{LrpRule, STABILISER, affine_relevance, stabilised_ratio};
use crate::ops::ReluMode;

/// Refuses a graph with a node that has no relevance rule here, naming the first one.
pub fn check(graph: &Graph) -> Result<()> {
    for (k, node) in graph.nodes.iter().enumerate() {
        let refuse = |reason: String| Err(ModelError::InvalidArchitecture { layer: node.name.clone(), reason });
        match node.op {
            GraphOp::BatchNorm { .. } if merged_into(graph, k).is_none() => {
                return refuse(
                    "LRP has no rule for a batch norm that does not follow a convolution or linear layer read by \
                     nothing else (it is merged into that layer)"
                        .into(),
                );
            }
            GraphOp::LeakyRelu { .. } | GraphOp::Sigmoid | GraphOp::Gelu => {
                return refuse(format!(
                    "LRP has no rule for {}; accepted: conv, linear, batch_norm after either, relu, tanh, \
                     pooling, add, concat, scale, flatten, identity",
                    node.op.kind()
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The relevance of each input value (`x` `[n, c, h, w]`, NCHW) for the outputs picked by
/// `seed` `[n, outputs]` (one-hot rows: the target logits), under `rule` at every convolution
/// and linear layer.
pub fn relevance(model: &GraphModel, x: &[f32], n: usize, seed: &[f32], rule: LrpRule) -> Result<Vec<f32>> {
    check(model.graph)?;
    let (graph, parameters) = merge_batch_norms(model)?;
    let merged = GraphModel::with_parameters(&graph, parameters);
    let forward = forward(&merged, x, n)?;
    let output = forward.output();
    if seed.len() != output.len() {
        return Err(ModelError::BadInput(format!("seed has {} values, the outputs {}", seed.len(), output.len())));
    }
    let times = |x: &[f32], c: &[f32]| -> Vec<f32> { x.iter().zip(c).map(|(x, c)| x * c).collect() };
    let mut relevance: Vec<Option<Vec<f32>>> = vec![None; forward.values.len()];
    // The relevance at the output: the target logit's value.
    relevance[forward.values.len() - 1] = Some(times(seed, output));
    for k in (0..graph.nodes.len()).rev() {
        let Some(r) = relevance[k + 1].take() else { continue };
        let node = &graph.nodes[k];
        let (x, y) = (&forward.values[node.inputs[0]], &forward.values[k + 1]);
        let shares = match node.op {
            GraphOp::Conv(_) | GraphOp::Linear { .. } => {
                // No bias: an empty one, which the layer's forward reads as zeros.
                let (w, b) = (merged.param(k, "weight"), merged.param(k, "bias"));
                let layer = |x: &[f32], w: &[f32], b: &[f32]| affine_forward(&merged, k, x, n, w, b);
                let transpose = |s: &[f32], w: &[f32]| affine_transpose(&merged, k, s, n, w);
                vec![(node.inputs[0], affine_relevance(rule, (x, w, b, y, &r), layer, transpose))]
            }
            GraphOp::MaxPool(_)
            | GraphOp::AvgPool { .. }
            | GraphOp::AdaptiveAvgPool { .. }
            | GraphOp::GlobalAvgPool { .. }
            | GraphOp::Add => {
                let ratio = stabilised_ratio(&r, y, STABILISER);
                let spread = node_backward(&merged, &forward, k, ratio, ReluMode::Standard);
                spread.into_iter().map(|(v, c)| (v, times(&forward.values[v], &c))).collect()
            }
            // Each value's relevance back at its place (a flatten reorders channels-last images).
            GraphOp::Concat | GraphOp::Flatten => node_backward(&merged, &forward, k, r, ReluMode::Standard),
            _ => vec![(node.inputs[0], r)],
        };
        for (v, share) in shares {
            accumulate(&mut relevance[v], share);
        }
    }
    let input = relevance[0].take().unwrap_or_else(|| vec![0.0; x.len()]);
    Ok(crate::graph_engine::to_nchw(&graph.input, &input))
}

/// Layer `k` of `model` (a convolution or linear layer) on `x` with weights `w` and bias `b`.
fn affine_forward(model: &GraphModel, k: usize, x: &[f32], n: usize, w: &[f32], b: &[f32]) -> Vec<f32> {
    let node = &model.graph.nodes[k];
    match node.op {
        GraphOp::Conv(c) => {
            crate::graph_engine::conv_forward(&c, x, &model.graph.shape_of(node.inputs[0]), n, w, b, &node.shape)
        }
        GraphOp::Linear { in_features, out_features, .. } => {
            crate::graph_engine::linear_forward(x, n, in_features, out_features, w, b)
        }
        _ => unreachable!("affine_forward is called on convolutions and linear layers"),
    }
}

/// `Wᵀ s` of layer `k` with weights `w`.
fn affine_transpose(model: &GraphModel, k: usize, s: &[f32], n: usize, w: &[f32]) -> Vec<f32> {
    let node = &model.graph.nodes[k];
    match node.op {
        GraphOp::Conv(c) => {
            crate::graph_engine::conv_input_grad(&c, &model.graph.shape_of(node.inputs[0]), n, w, s, &node.shape)
        }
        GraphOp::Linear { in_features, out_features, .. } => {
            crate::ops::linear::input_grad_values(s, w, n, in_features, out_features)
        }
        _ => unreachable!("affine_transpose is called on convolutions and linear layers"),
    }
}

/// The convolution or linear layer that batch norm `k` is merged into: the node computing its
/// input, when nothing else reads that value.
fn merged_into(graph: &Graph, k: usize) -> Option<usize> {
    let v = graph.nodes[k].inputs[0];
    let layer = v.checked_sub(1)?;
    let readers = graph.nodes.iter().filter(|node| node.inputs.contains(&v)).count();
    (matches!(graph.nodes[layer].op, GraphOp::Conv(_) | GraphOp::Linear { .. }) && readers == 1).then_some(layer)
}

/// `model`'s graph with every batch norm merged into the layer before it (the batch norm
/// becomes an identity, so node indices stay), and the merged parameters.
fn merge_batch_norms(model: &GraphModel) -> Result<(Graph, Parameters)> {
    let graph = model.graph;
    let mut parameters = model.parameters.clone();
    let mut nodes: Vec<NodeSpec> = graph
        .nodes
        .iter()
        .map(|node| NodeSpec { name: node.name.clone(), op: node.op, inputs: node.inputs.clone() })
        .collect();
    for (k, node) in graph.nodes.iter().enumerate() {
        let GraphOp::BatchNorm { eps, .. } = node.op else { continue };
        let Some(layer) = merged_into(graph, k) else { continue };
        let (scale, shift) = model.batch_norm(k, eps);
        let mut weight = model.param(layer, "weight").to_vec();
        let per = weight.len() / scale.len();
        weight.chunks_exact_mut(per).zip(&scale).for_each(|(row, s)| row.iter_mut().for_each(|w| *w *= s));
        let bias = model.param(layer, "bias");
        let bias: Vec<f32> =
            (0..scale.len()).map(|c| bias.get(c).copied().unwrap_or(0.0) * scale[c] + shift[c]).collect();
        parameters[layer] = vec![("weight", weight.into()), ("bias", bias.into())];
        parameters[k] = Vec::new();
        nodes[k].op = GraphOp::Identity;
    }
    Ok((Graph::new(graph.input, nodes)?, parameters))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{ConvSpec, PoolSpec};
    use crate::graph_reference::zoo::random_weights;
    use rand::{Rng, SeedableRng};

    fn node(name: &str, op: GraphOp, inputs: &[usize]) -> NodeSpec {
        NodeSpec { name: name.into(), op, inputs: inputs.to_vec() }
    }

    fn conv(c_in: usize, c_out: usize, stride: usize) -> GraphOp {
        GraphOp::Conv(ConvSpec {
            in_channels: c_in,
            out_channels: c_out,
            kernel: [3, 3],
            stride: [stride, stride],
            pads: [1; 4],
            dilation: [1, 1],
            groups: 1,
            bias: false,
        })
    }

    /// A residual block, a concatenation, every pooling and a merged batch norm.
    fn residual() -> Graph {
        let pool = PoolSpec { kernel: [2, 2], stride: [2, 2], pads: [0; 4], ceil: false };
        Graph::new(
            [2, 8, 8],
            vec![
                node("stem", conv(2, 4, 1), &[0]),
                node("stem_relu", GraphOp::Relu, &[1]),
                node("branch", conv(4, 4, 1), &[2]),
                node("bn", GraphOp::BatchNorm { channels: 4, eps: 1e-5 }, &[3]),
                node("add", GraphOp::Add, &[4, 2]),
                node("relu", GraphOp::Relu, &[5]),
                node("cat", GraphOp::Concat, &[6, 2]),
                node("max", GraphOp::MaxPool(pool), &[7]),
                node("avg", GraphOp::AvgPool { pool, count_include_pad: true }, &[8]),
                node("bins", GraphOp::AdaptiveAvgPool { out: [2, 2] }, &[9]),
                node("gap", GraphOp::GlobalAvgPool { keepdims: false }, &[10]),
                node("fc", GraphOp::Linear { in_features: 8, out_features: 3, bias: false }, &[11]),
            ],
        )
        .expect("a valid graph")
    }

    /// With no bias anywhere (the batch norm's shift is zero too) and a small ε, the relevance
    /// is conserved through every rule: `Σ_i R_i = f_t(x)` (Bach et al. 2015, Eq. 2).
    #[test]
    fn relevance_is_conserved_through_adds_concatenations_poolings_and_a_merged_batch_norm() {
        let graph = residual();
        let mut weights = random_weights(&graph, 5);
        let zero = candle_core::Tensor::zeros(4, candle_core::DType::F64, &candle_core::Device::Cpu).expect("zeros");
        weights.insert("bn.bias", zero.clone());
        weights.insert("bn.running_mean", zero);
        let model = GraphModel::new(&graph, &weights).expect("weights");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let n = 2;
        let x: Vec<f32> = (0..n * 128).map(|_| rng.random_range(0.0..1.0)).collect();
        let logits = forward(&model, &x, n).expect("forward").output().to_vec();
        for (image, target) in [(0, 1), (1, 2)] {
            let mut seed = vec![0.0f32; n * 3];
            seed[image * 3 + target] = 1.0;
            let r = relevance(&model, &x, n, &seed, LrpRule::Epsilon(1e-7)).expect("relevance");
            let total: f64 = r[image * 128..(image + 1) * 128].iter().map(|&v| f64::from(v)).sum();
            let want = f64::from(logits[image * 3 + target]);
            assert!((total - want).abs() < 1e-4 * want.abs().max(1e-3), "image {image}: Σ R {total}, f_t(x) {want}");
            let other: f64 = r[(1 - image) * 128..(2 - image) * 128].iter().map(|&v| f64::from(v).abs()).sum();
            assert_eq!(other, 0.0, "the other image gets no relevance");
        }
    }

    #[test]
    fn a_batch_norm_with_no_layer_to_merge_into_and_an_activation_without_a_rule_are_refused_by_name() {
        let loose = Graph::new(
            [1, 4, 4],
            vec![
                node("conv", conv(1, 2, 1), &[0]),
                node("relu", GraphOp::Relu, &[1]),
                node("bn", GraphOp::BatchNorm { channels: 2, eps: 1e-5 }, &[2]),
                node("gap", GraphOp::GlobalAvgPool { keepdims: false }, &[3]),
                node("fc", GraphOp::Linear { in_features: 2, out_features: 2, bias: true }, &[4]),
            ],
        )
        .expect("graph");
        let err = check(&loose).expect_err("bn after relu").to_string();
        assert!(err.contains("bn") && err.contains("batch norm"), "{err}");
        // A convolution read by its batch norm and by a second node cannot be merged either.
        let shared = Graph::new(
            [1, 4, 4],
            vec![
                node("conv", conv(1, 2, 1), &[0]),
                node("bn", GraphOp::BatchNorm { channels: 2, eps: 1e-5 }, &[1]),
                node("add", GraphOp::Add, &[2, 1]),
                node("gap", GraphOp::GlobalAvgPool { keepdims: false }, &[3]),
                node("fc", GraphOp::Linear { in_features: 2, out_features: 2, bias: true }, &[4]),
            ],
        )
        .expect("graph");
        assert!(check(&shared).expect_err("conv read twice").to_string().contains("bn"));
        let sigmoid = Graph::new(
            [1, 4, 4],
            vec![
                node("conv", conv(1, 2, 2), &[0]),
                node("squash", GraphOp::Sigmoid, &[1]),
                node("gap", GraphOp::GlobalAvgPool { keepdims: false }, &[2]),
                node("fc", GraphOp::Linear { in_features: 2, out_features: 2, bias: true }, &[3]),
            ],
        )
        .expect("graph");
        let err = check(&sigmoid).expect_err("sigmoid").to_string();
        assert!(err.contains("squash") && err.contains("sigmoid"), "{err}");
    }
}
