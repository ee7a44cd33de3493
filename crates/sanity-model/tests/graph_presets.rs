//! torchvision's ResNets and VGGs as graphs: the state_dict names and shapes of torchvision
//! 0.29.2, and PyTorch's logits from a state_dict loaded as is (BatchNorms kept as layers),
//! through the float64 reference evaluation (`scripts/golden/onnx_fixtures.py`).

use sanity_model::Weights;
use sanity_model::graph::Graph;
use sanity_model::graph_presets::{Block, ResNetSpec, VggSpec, graph_preset, resnet_graph, vgg_graph};
use sanity_model::graph_reference::forward;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx").join(name)
}

#[test]
fn the_presets_have_torchvision_s_names_and_shapes() {
    let text = std::fs::read_to_string(fixture("torchvision-shapes.json")).expect("shapes");
    let all: BTreeMap<String, Vec<(String, Vec<usize>)>> = serde_json::from_str(&text).expect("json");
    for (name, expected) in all {
        let graph = graph_preset(&name, [3, 224, 224], 10).expect("preset");
        let mut ours = graph.parameter_shapes();
        let mut theirs = expected;
        ours.sort();
        theirs.sort();
        assert_eq!(ours, theirs, "{name}");
    }
    let resnet = graph_preset("resnet18", [1, 64, 64], 2).expect("a 1-channel ResNet at 64x64");
    assert_eq!(resnet.nodes[0].shape, [64, 32, 32]);
    assert_eq!(resnet.nodes[resnet.resolve("layer4").expect("module")].shape, [512, 2, 2]);
    assert!(graph_preset("resnet19", [3, 32, 32], 10).expect_err("unknown").to_string().contains("resnet18"));
}

fn logits(graph: &Graph, weights: &str, input: &str) -> Vec<f64> {
    let weights = Weights::load_for_graph(&fixture(weights), graph).expect("a state_dict loads as is");
    let x = sanity_data::npy::read_array(&fixture(input).display().to_string()).expect("input");
    forward(graph, &weights, &x.values, x.shape[0]).expect("forward").output().to_vec()
}

fn worst(ours: &[f64], file: &str) -> f64 {
    let theirs = sanity_data::npy::read_array(&fixture(file).display().to_string()).expect("logits");
    assert_eq!(ours.len(), theirs.values.len());
    ours.iter().zip(&theirs.values).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max)
}

#[test]
fn a_torchvision_state_dict_gives_pytorch_s_logits() {
    let spec =
        ResNetSpec { block: Block::Basic, layers: vec![1, 1], widths: vec![8, 16], in_channels: 3, num_classes: 4 };
    let resnet = resnet_graph(&spec, [3, 16, 16]).expect("tiny resnet");
    let ours = logits(&resnet, "tiny-resnet.safetensors", "tiny-resnet-input.npy");
    let error = worst(&ours, "tiny-resnet-logits.npy");
    assert!(error < 1e-5, "resnet: {error}");
    let spec = VggSpec { cfg: vec![Some(4), None, Some(8), None], hidden: 16, in_channels: 3, num_classes: 5 };
    let vgg = vgg_graph(&spec, [3, 16, 16]).expect("tiny vgg");
    let ours = logits(&vgg, "tiny-vgg.safetensors", "tiny-vgg-input.npy");
    let error = worst(&ours, "tiny-vgg-logits.npy");
    assert!(error < 1e-5, "vgg (adaptive pooling of 4x4 to 7x7): {error}");
    // Another model's state_dict is refused, naming what is missing.
    let e = Weights::load_for_graph(&fixture("tiny-vgg.safetensors"), &resnet).expect_err("vgg weights").to_string();
    assert!(e.contains("missing: [") && e.contains("bn1.running_mean"), "{e}");
}
