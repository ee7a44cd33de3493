//! `sanity inspect`: a model's layers (names, ops, output shapes, parameter counts) and the
//! order a cascade randomises them in, for an ONNX file, a preset or an architecture TOML.

use sanity_model::graph::{Graph, GraphOp};
use sanity_model::graph_presets::{GRAPH_PRESETS, graph_preset};
use sanity_model::onnx::read_onnx;
use sanity_model::{Architecture, ArchitectureSpec, PRESETS, preset};
use sanity_rundir::error::Result;
use std::path::Path;

/// The input a preset is shown for when none is given: the phantoms' 64x64 for the phantom
/// and lesson CNNs, Fashion-MNIST's 28x28 for the Adebayo et al. models.
pub fn default_input(name: &str) -> [usize; 3] {
    if name.starts_with("adebayo") { [1, 28, 28] } else { [1, 64, 64] }
}

/// The description of `model`: a `.onnx` file, a preset name (shown for `input`, or its
/// [`default_input`]; a graph preset such as `resnet18` for `classes` classes, 3x224x224 by
/// default), or an architecture TOML.
pub fn inspect(model: &str, input: Option<[usize; 3]>, classes: usize) -> Result<String> {
    if GRAPH_PRESETS.contains(&model) {
        let graph = graph_preset(model, input.unwrap_or([3, 224, 224]), classes)?;
        let mut out = format!("preset {model} (torchvision's names; {classes} classes)\n{}", graph.describe());
        out += "note: each BatchNorm is a layer of its own, randomised apart from its convolution\n";
        return Ok(out);
    }
    if model.ends_with(".onnx") {
        let onnx = read_onnx(Path::new(model))?;
        let mut out = format!("ONNX model {model} ({}, opset {})\n", onnx.producer, onnx.opset);
        out += &onnx.graph.describe();
        for note in &onnx.notes {
            out += &format!("note: {note}\n");
        }
        return Ok(out);
    }
    let (title, spec) = if PRESETS.contains(&model) {
        let input = input.unwrap_or_else(|| default_input(model));
        (format!("preset {model}"), preset(model, input)?)
    } else {
        (format!("architecture {model}"), ArchitectureSpec::from_toml_file(Path::new(model))?)
    };
    let graph = Graph::from_architecture(&Architecture::new(spec)?)?;
    let mut out = format!("{title}\n{}", graph.describe());
    if graph.nodes.iter().any(|n| matches!(n.op, GraphOp::BatchNorm { .. })) {
        out += "note: each BatchNorm is a layer of its own, randomised apart from its convolution\n";
    }
    Ok(out)
}
