//! ONNX import against models exported by torch 2.15 with both exporters
//! (`scripts/golden/onnx_fixtures.py`): layer names by module path either way, the same graph
//! and weights from both, the ops of the supported list, and broken models refused with the
//! node named.

use sanity_model::graph::{Graph, GraphOp};
use sanity_model::onnx::{OnnxModel, read_onnx};
use sanity_model::{Architecture, PRESETS, preset};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx").join(name)
}

fn values(model: &OnnxModel, name: &str) -> Vec<f32> {
    let t = model.weights.get(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    t.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("f32 values")
}

fn names(graph: &Graph) -> Vec<String> {
    graph.nodes.iter().map(|n| n.name.clone()).collect()
}

#[test]
fn both_exporters_give_the_module_paths_the_same_graph_and_the_same_weights() {
    let expected: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(fixture("tiny-resnet-names.json")).expect("names"))
            .expect("json");
    let ts = read_onnx(&fixture("tiny-resnet-ts.onnx")).expect("TorchScript export");
    let dynamo = read_onnx(&fixture("tiny-resnet-dynamo.onnx")).expect("dynamo export (external data)");
    assert_eq!(names(&ts.graph), expected, "TorchScript: {:?}", names(&ts.graph));
    assert_eq!(names(&dynamo.graph), expected, "dynamo: {:?}", names(&dynamo.graph));
    assert_eq!(ts.graph, dynamo.graph, "the same ops, inputs and shapes");
    let shapes = ts.graph.parameter_shapes();
    assert_eq!(shapes, dynamo.graph.parameter_shapes());
    for (name, _) in &shapes {
        let (a, b) = (values(&ts, name), values(&dynamo, name));
        let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(worst < 1e-5, "{name}: the exporters' folded values differ by {worst}");
    }
    // fc is not folded: its weights are the state_dict's, bit for bit.
    let state =
        candle_core::safetensors::load(fixture("tiny-resnet.safetensors"), &candle_core::Device::Cpu).expect("state");
    let fc = state["fc.weight"].flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("fc");
    assert_eq!(values(&ts, "fc.weight"), fc);
    // The stride-2 stem, the max pool and the downsample branch set the shapes.
    let shape = |name: &str| ts.graph.nodes[ts.graph.resolve(name).expect(name)].shape.clone();
    assert_eq!(shape("conv1"), [8, 8, 8]);
    assert_eq!(shape("maxpool"), [8, 4, 4]);
    assert_eq!(shape("layer2.0.downsample.0"), [16, 2, 2]);
    assert_eq!(shape("layer2"), [16, 2, 2], "a module resolves to its last node");
    assert_eq!(ts.graph.nodes[ts.graph.resolve("layer2").expect("module")].name, "layer2.0.relu_1");
    assert!(ts.notes.iter().any(|n| n.contains("folds each BatchNorm")), "{:?}", ts.notes);
    assert!(ts.producer.starts_with("pytorch"), "{}", ts.producer);
}

#[test]
fn every_supported_op_of_the_small_zoo_is_read() {
    for file in ["tiny-ops-ts.onnx", "tiny-ops-dynamo.onnx"] {
        let model = read_onnx(&fixture(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let graph = &model.graph;
        let layers: Vec<&str> = graph.layers().map(|n| n.name.as_str()).collect();
        assert_eq!(layers, ["conv", "depthwise", "dilated", "linear"], "{file}");
        let op = |name: &str| graph.nodes[graph.resolve(name).expect(name)].op;
        match op("depthwise") {
            GraphOp::Conv(c) => assert_eq!((c.groups, c.in_channels, c.out_channels), (6, 6, 6), "{file}"),
            other => panic!("{file}: {other:?}"),
        }
        match op("dilated") {
            GraphOp::Conv(c) => assert_eq!((c.dilation, c.pads), ([2, 2], [2; 4]), "{file}"),
            other => panic!("{file}: {other:?}"),
        }
        assert!(matches!(op("pool"), GraphOp::AvgPool { count_include_pad: false, pool } if pool.ceil), "{file}");
        assert!(matches!(op("act"), GraphOp::LeakyRelu { alpha } if (alpha - 0.2).abs() < 1e-7), "{file}");
        assert!(matches!(op("linear"), GraphOp::Linear { in_features: 250, out_features: 3, bias: true }), "{file}");
        let kinds: Vec<&str> = graph.nodes.iter().map(|n| n.op.kind()).collect();
        for kind in ["gelu", "sigmoid", "tanh", "scale", "concat", "flatten"] {
            assert!(kinds.contains(&kind), "{file}: no {kind} in {kinds:?}");
        }
        assert!(model.notes.iter().any(|n| n.contains("Softmax is dropped")), "{file}: {:?}", model.notes);
        assert_eq!(graph.nodes.last().map(|n| n.shape.clone()), Some(vec![3]), "{file}");
    }
}

#[test]
fn broken_models_are_refused_with_the_node_named() {
    let error = |file: &str| read_onnx(&fixture(file)).expect_err(file).to_string();
    let e = error("bad-truncated.onnx");
    assert!(e.contains("bad-truncated.onnx") && e.contains("not an ONNX model"), "{e}");
    let e = error("bad-op.onnx");
    assert!(
        e.contains("op `Resize` is not supported") && e.contains("supported: Conv") && e.contains("(Resize)"),
        "{e}"
    );
    let e = error("bad-dynamic.onnx");
    assert!(e.contains("dynamic shapes are not supported"), "{e}");
    let e = error("bad-cycle.onnx");
    assert!(e.contains("/early/Relu") && e.contains("no earlier node computes"), "{e}");
    let e = error("bad-weight-input.onnx");
    assert!(e.contains("2 graph inputs") && e.contains("`w`"), "{e}");
    // The dynamo export's weights beside it: bytes alone, or a folder without them, are refused.
    let bytes = std::fs::read(fixture("tiny-resnet-dynamo.onnx")).expect("bytes");
    let e = OnnxModel::from_bytes(&bytes, "mem.onnx").expect_err("no folder").to_string();
    assert!(e.contains("tiny-resnet-dynamo.onnx.data") && e.contains("read the model from its file"), "{e}");
    let dir = tempfile::tempdir().expect("tempdir");
    let alone = dir.path().join("tiny-resnet-dynamo.onnx");
    std::fs::write(&alone, &bytes).expect("copy");
    let e = read_onnx(&alone).expect_err("no data file").to_string();
    assert!(e.contains("tiny-resnet-dynamo.onnx.data"), "{e}");
}

#[test]
fn damaged_bytes_are_refused_without_a_panic() {
    let bytes = std::fs::read(fixture("tiny-resnet-ts.onnx")).expect("bytes");
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..300 {
        let mut damaged = bytes.clone();
        for _ in 0..1 + next() % 4 {
            let at = (next() % damaged.len() as u64) as usize;
            damaged[at] = next() as u8;
        }
        let cut = (next() % damaged.len() as u64) as usize;
        for candidate in [&damaged[..], &damaged[..cut]] {
            if let Ok(model) = OnnxModel::from_bytes(candidate, "fuzz.onnx") {
                // What imports is a checked graph: its weights have the graph's shapes.
                for (name, shape) in model.graph.parameter_shapes() {
                    assert_eq!(model.weights.get(&name).expect("weight").dims(), shape.as_slice());
                }
            }
        }
    }
}

#[test]
fn the_presets_become_graphs_with_the_same_layer_and_weight_names() {
    for &name in PRESETS {
        let input = if name.starts_with("adebayo") { [1, 28, 28] } else { [1, 64, 64] };
        let arch = Architecture::new(preset(name, input).expect("preset")).expect("architecture");
        let graph = Graph::from_architecture(&arch).expect("graph");
        let layers: Vec<&str> = arch.layers.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names(&graph), layers, "{name}");
        let expected = sanity_model::weights::expected_shapes(&arch);
        let mut shapes = graph.parameter_shapes();
        shapes.sort();
        assert_eq!(shapes, expected.into_iter().collect::<Vec<_>>(), "{name}");
    }
}

/// The f64 reference forward of an import on the fixture's inputs.
fn outputs_of(model: &OnnxModel, input: &str) -> (Vec<f64>, usize) {
    let x = sanity_data::npy::read_array(&fixture(input).display().to_string()).expect("input");
    let n = x.shape[0];
    let evaluation =
        sanity_model::graph_reference::forward(&model.graph, &model.weights, &x.values, n).expect("forward");
    (evaluation.output().to_vec(), n)
}

#[test]
fn the_imports_compute_pytorch_s_logits() {
    let expected =
        sanity_data::npy::read_array(&fixture("tiny-resnet-logits.npy").display().to_string()).expect("logits");
    for file in ["tiny-resnet-ts.onnx", "tiny-resnet-dynamo.onnx"] {
        let model = read_onnx(&fixture(file)).expect("import");
        let (logits, _) = outputs_of(&model, "tiny-resnet-input.npy");
        let worst = logits.iter().zip(&expected.values).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-5, "{file}: logits differ from PyTorch's by {worst}");
    }
    // The trailing softmax is dropped: the softmax of the imported outputs is PyTorch's.
    let expected =
        sanity_data::npy::read_array(&fixture("tiny-ops-probabilities.npy").display().to_string()).expect("p");
    for file in ["tiny-ops-ts.onnx", "tiny-ops-dynamo.onnx"] {
        let model = read_onnx(&fixture(file)).expect("import");
        let (logits, n) = outputs_of(&model, "tiny-ops-input.npy");
        let classes = logits.len() / n;
        let mut worst: f64 = 0.0;
        for (row, want) in logits.chunks_exact(classes).zip(expected.values.chunks_exact(classes)) {
            let top = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
            let sum: f64 = row.iter().map(|v| (v - top).exp()).sum();
            for (v, w) in row.iter().zip(want) {
                worst = worst.max(((v - top).exp() / sum - w).abs());
            }
        }
        assert!(worst < 1e-5, "{file}: probabilities differ from PyTorch's by {worst}");
    }
}
