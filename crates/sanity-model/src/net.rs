//! The network a run explains, whichever form it comes in: a sequential architecture (the
//! presets and architecture TOMLs) or a model graph (the graph presets and ONNX imports). Both
//! run and train on the graph walk (`graph_engine.rs`, `graph_train.rs`; a stack as its graph).
//! The run engine reads the network
//! only through [`Net`] and [`NetModel`]: its input, outputs, stages, initialisation,
//! re-initialisation and logits. docs/models.md, "Graphs and ONNX".
//!
//! A stage of a randomisation test names a set of parameterised layers: one layer (`fc`,
//! `layer4.1.conv2`) or, on a graph, a module (`layer4.1`: every layer under it, a ResNet
//! block as Hedström et al. 2023 randomise it; `layer4`: the whole stage). Re-initialising a
//! stage re-initialises its layers, layer `l` from its own stream, so that a layer gets the
//! same values whatever the stage it is part of.

use crate::architecture::{Architecture, ArchitectureSpec};
use crate::error::{ModelError, Result};
use crate::forward::Model;
use crate::graph::Graph;
use crate::graph_engine::{GraphModel, forward};
use crate::graph_init::{blocks, init_graph, reinitialize_graph};
use crate::init::{Reinit, init_weights, reinitialize};
use crate::weights::Weights;
use candle_core::Tensor;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// What identifies a network in checkpoints, model records and cache keys: a sequential
/// architecture's spec (serialised as it always was, so earlier keys stay valid) or a graph's
/// description ([`Graph::describe`]: nodes, ops and shapes) hashed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NetSpec {
    /// A sequential architecture.
    Layers(ArchitectureSpec),
    /// A model graph.
    Graph {
        /// The size and hash of its description.
        graph: String,
    },
}

/// A network: its layers and how they connect, without weights.
#[derive(Debug, Clone)]
pub enum Net {
    /// A sequential stack of layers (a preset or an architecture TOML).
    Layers(Arc<Architecture>),
    /// A model graph (a graph preset or an ONNX import).
    Graph(Arc<Graph>),
}

impl Net {
    /// The input shape `[c, h, w]`.
    pub fn input(&self) -> [usize; 3] {
        match self {
            Net::Layers(arch) => arch.spec.input,
            Net::Graph(graph) => graph.input,
        }
    }

    /// The number of logits.
    pub fn num_outputs(&self) -> usize {
        match self {
            Net::Layers(arch) => arch.num_outputs(),
            Net::Graph(graph) => graph.nodes.last().map_or(0, |n| n.shape.iter().product()),
        }
    }

    /// The parameterised layers, input to output.
    pub fn layers(&self) -> Vec<String> {
        match self {
            Net::Layers(arch) => arch.stages().iter().map(|s| s.to_string()).collect(),
            Net::Graph(graph) => graph.layers().map(|n| n.name.clone()).collect(),
        }
    }

    /// The blocks, input to output: a graph's ResNet blocks (`layer4.1`) and its other layers
    /// each on its own ([`blocks`]); a sequential stack's layers.
    pub fn blocks(&self) -> Vec<String> {
        match self {
            Net::Layers(_) => self.layers(),
            Net::Graph(graph) => blocks(graph).into_iter().map(|(name, _)| name).collect(),
        }
    }

    /// The names a stage may have: the blocks, then the layers that are not blocks themselves.
    pub fn stage_names(&self) -> Vec<String> {
        let mut names = self.blocks();
        let rest: Vec<String> = self.layers().into_iter().filter(|l| !names.contains(l)).collect();
        names.extend(rest);
        names
    }

    /// The layers a stage names, in network order: the layer of that name, or (on a graph)
    /// every layer under the module it names. The error lists [`Net::stage_names`].
    pub fn stage_layers(&self, stage: &str) -> Result<Vec<String>> {
        let layers = self.layers();
        if layers.iter().any(|l| l == stage) {
            return Ok(vec![stage.to_string()]);
        }
        let prefix = format!("{stage}.");
        let under: Vec<String> = match self {
            Net::Layers(_) => Vec::new(),
            Net::Graph(_) => layers.iter().filter(|l| l.starts_with(&prefix)).cloned().collect(),
        };
        if under.is_empty() {
            return Err(ModelError::UnknownLayer { name: stage.to_string(), available: self.stage_names().join(", ") });
        }
        Ok(under)
    }

    /// Fresh weights: the sequential layers' own initialisers, a graph's by PyTorch's
    /// `reset_parameters()` (`graph_init.rs`).
    pub fn init(&self, seed: u64) -> Result<Weights> {
        match self {
            Net::Layers(arch) => init_weights(arch, seed),
            Net::Graph(graph) => init_graph(graph, seed),
        }
    }

    /// `weights` with `layer` re-drawn by `reinit` from `rng` (pure).
    pub fn reinitialize(
        &self,
        weights: &Weights,
        layer: &str,
        reinit: &Reinit,
        rng: &mut ChaCha8Rng,
    ) -> Result<Weights> {
        match self {
            Net::Layers(arch) => reinitialize(weights, arch, layer, reinit, rng),
            Net::Graph(graph) => reinitialize_graph(weights, graph, layer, reinit, rng),
        }
    }

    /// The position of `layer` among [`Net::layers`] (the seed stream it re-draws from).
    pub fn layer_index(&self, layer: &str) -> Result<usize> {
        match self {
            Net::Layers(arch) => arch.index_of(layer),
            Net::Graph(graph) => graph.layers().position(|n| n.name == layer).ok_or_else(|| ModelError::UnknownLayer {
                name: layer.to_string(),
                available: self.layers().join(", "),
            }),
        }
    }

    /// Parameter and buffer values.
    pub fn parameter_count(&self) -> usize {
        match self {
            Net::Layers(arch) => arch.parameter_count(),
            Net::Graph(graph) => graph.parameter_shapes().iter().map(|(_, s)| s.iter().product::<usize>()).sum(),
        }
    }

    /// The values one image's forward keeps: its input and every layer's (node's) output.
    pub fn activation_values(&self) -> usize {
        let input: usize = self.input().iter().product();
        input
            + match self {
                Net::Layers(arch) => arch.shapes.iter().map(|s| s.iter().product::<usize>()).sum::<usize>(),
                Net::Graph(graph) => graph.nodes.iter().map(|n| n.shape.iter().product::<usize>()).sum(),
            }
    }

    /// What identifies the network ([`NetSpec`]).
    pub fn spec(&self) -> NetSpec {
        match self {
            Net::Layers(arch) => NetSpec::Layers(arch.spec.clone()),
            Net::Graph(graph) => {
                let text = graph.describe();
                NetSpec::Graph {
                    graph: format!("{} bytes, hash {:016x}", text.len(), sanity_data::fnv1a(text.as_bytes())),
                }
            }
        }
    }

    /// The weights in the safetensors file at `path`, checked against the network (PyTorch's
    /// names and shapes).
    pub fn load_weights(&self, path: &std::path::Path) -> Result<Weights> {
        match self {
            Net::Layers(arch) => Weights::load_safetensors(path, arch),
            Net::Graph(graph) => Weights::load_for_graph(path, graph),
        }
    }

    /// [`Net::load_weights`] of a file's bytes (`source` names it in errors).
    pub fn weights_from_bytes(&self, bytes: &[u8], source: &str) -> Result<Weights> {
        match self {
            Net::Layers(arch) => Weights::from_safetensors_bytes(bytes, source, arch),
            Net::Graph(graph) => Weights::from_safetensors_bytes_for_graph(bytes, source, graph),
        }
    }

    /// The buffers among the weights (batch norms' running statistics): state that training
    /// replaces rather than optimises.
    pub fn buffer_names(&self) -> Vec<String> {
        match self {
            Net::Layers(arch) => arch
                .layers
                .iter()
                .flat_map(|l| l.op.buffers().iter().map(move |(what, _)| format!("{}.{what}", l.name)))
                .collect(),
            Net::Graph(graph) => graph
                .parameter_shapes()
                .into_iter()
                .map(|(name, _)| name)
                .filter(|name| name.ends_with(".running_mean") || name.ends_with(".running_var"))
                .collect(),
        }
    }

    /// Whether this is a model graph.
    pub fn is_graph(&self) -> bool {
        matches!(self, Net::Graph(_))
    }
}

/// A network with its weights: what a run explains under each stage of a test.
#[derive(Debug, Clone)]
pub struct NetModel {
    /// The network.
    pub net: Net,
    /// Its weights.
    pub weights: Weights,
}

impl NetModel {
    /// Bundles a network and weights.
    pub fn new(net: Net, weights: Weights) -> Self {
        Self { net, weights }
    }

    /// A sequential model as a network model.
    pub fn of(model: &Model) -> Self {
        Self { net: Net::Layers(Arc::clone(&model.arch)), weights: model.weights.clone() }
    }

    /// The same network with other weights.
    pub fn with_weights(&self, weights: Weights) -> Self {
        Self { net: self.net.clone(), weights }
    }

    /// Logits `[n, outputs]` (row-major) of the `n` NCHW inputs `x`, evaluation mode, on the
    /// graph walk (a sequential stack as its graph).
    pub fn logits(&self, x: &[f32], n: usize) -> Result<Vec<f32>> {
        self.logits_of(x, n.max(1))
    }

    /// The network as a graph: a graph's own, a sequential stack's converted (the same layer
    /// names, so the weights fit).
    pub fn graph(&self) -> Result<Arc<Graph>> {
        match &self.net {
            Net::Layers(arch) => Ok(Arc::new(Graph::from_architecture(arch)?)),
            Net::Graph(graph) => Ok(Arc::clone(graph)),
        }
    }

    /// The logits `[n, outputs]` of inputs `x` `[n, c, h, w]` in `mode`, differentiable in the
    /// weights (candle): the float64 reference of the training walk's tests.
    pub fn forward_in(&self, x: &Tensor, mode: &mut crate::forward::Mode) -> Result<Tensor> {
        match &self.net {
            Net::Layers(arch) => {
                let model = Model::new(Arc::clone(arch), self.weights.clone());
                model.forward_range(x, 0..arch.layers.len(), mode)
            }
            Net::Graph(graph) => crate::graph_candle::forward(graph, &self.weights, x, mode),
        }
    }

    /// The fraction of `data` this model classifies correctly, evaluation mode.
    pub fn accuracy(&self, data: &sanity_data::Dataset) -> Result<f64> {
        let logits = self.logits_of(data.images_in(0..data.len()), 256)?;
        let predicted = crate::train::classes_of(&logits, self.net.num_outputs());
        let correct = predicted.iter().zip(&data.labels).filter(|(p, l)| p == l).count();
        Ok(correct as f64 / data.len().max(1) as f64)
    }

    /// The logits of a data set's images, `batch` images at a time on the graph walk (the
    /// weights read once for all the batches).
    pub fn logits_of(&self, images: &[f32], batch: usize) -> Result<Vec<f32>> {
        let per: usize = self.net.input().iter().product();
        let chunks = images.chunks(per * batch.max(1));
        let mut out = Vec::with_capacity(images.len() / per.max(1) * self.net.num_outputs());
        let graph = self.graph()?;
        let model = GraphModel::new(&graph, &self.weights)?;
        for chunk in chunks {
            out.extend_from_slice(forward(&model, chunk, chunk.len() / per)?.output());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph_presets::graph_preset;
    use crate::presets::preset;

    #[test]
    fn a_stage_names_a_layer_or_every_layer_of_a_module() {
        let net = Net::Graph(Arc::new(graph_preset("resnet18", [1, 32, 32], 10).expect("preset")));
        assert_eq!(net.stage_layers("fc").expect("layer"), vec!["fc"]);
        let block = net.stage_layers("layer4.1").expect("block");
        assert_eq!(block, vec!["layer4.1.conv1", "layer4.1.bn1", "layer4.1.conv2", "layer4.1.bn2"]);
        assert_eq!(net.stage_layers("layer4").expect("module").len(), 10, "two blocks and the downsample");
        let err = net.stage_layers("layer5").expect_err("no such module").to_string();
        assert!(err.contains("layer5") && err.contains("layer4.1"), "{err}");
        // A sequential stack has no modules: only its layers name stages.
        let arch = Arc::new(Architecture::new(preset("phantom-cnn", [1, 32, 32]).expect("p")).expect("arch"));
        let seq = Net::Layers(arch);
        assert!(seq.stage_layers("conv").is_err());
        assert_eq!(seq.blocks(), seq.layers());
    }

    #[test]
    fn a_graph_s_logits_depend_on_the_batch_only_in_rounding() {
        let graph = Arc::new(graph_preset("resnet18", [1, 32, 32], 10).expect("preset"));
        let net = Net::Graph(Arc::clone(&graph));
        let model = NetModel::new(net.clone(), net.init(3).expect("init"));
        let x: Vec<f32> = (0..2 * 32 * 32).map(|i| (i % 7) as f32 / 7.0).collect();
        let logits = model.logits(&x, 2).expect("logits");
        assert_eq!(logits.len(), 20);
        // The walk multiplies a chunk of images at once: a batch changes the rounding only.
        let batched = model.logits_of(&x, 1).expect("batched");
        let worst = batched.iter().zip(&logits).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        let scale = logits.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(worst <= 1e-5 * scale, "batching changes the logits by {worst:e}");
    }
}
