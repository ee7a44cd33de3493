//! The methods on a model graph against Captum (`scripts/golden/graph_attribution_fixtures.py`)
//! on the tiny ResNet, imported from both of torch's ONNX exporters and built by the graph
//! presets' code from its safetensors `state_dict` (batch norms kept apart): within 1e-4
//! relative L2 either way.

use sanity_attribution::MethodSpec;
use sanity_attribution::graph_methods::{attribute_graph, attribute_graph_with};
use sanity_model::graph_engine::GraphModel;
use sanity_model::onnx::read_onnx;
use std::path::{Path, PathBuf};

fn model_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../sanity-model/tests/fixtures/onnx").join(name)
}

fn golden(name: &str) -> Vec<f64> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/graph").join(name);
    sanity_data::npy::read_array(&path.display().to_string()).expect("golden").values
}

/// ‖a − b‖ / ‖b‖.
fn relative_l2(a: &[f32], b: &[f64]) -> f64 {
    let diff: f64 = a.iter().zip(b).map(|(&x, y)| (f64::from(x) - y).powi(2)).sum();
    let norm: f64 = b.iter().map(|y| y * y).sum();
    (diff / norm).sqrt()
}

/// The methods whose maps the fixtures hold as Captum gives them, with their settings.
const CAPTUM_SPECS: [(&str, &str); 7] = [
    ("gradient", "method = \"gradient\""),
    ("gradient_x_input", "method = \"gradient_x_input\""),
    ("integrated_gradients", "method = \"integrated_gradients\"\nsteps = 16"),
    ("guided_backprop", "method = \"guided_backprop\""),
    ("deconvnet", "method = \"deconvnet\""),
    ("gradcam", "method = \"gradcam\"\nlayer = \"layer2\""),
    ("occlusion", "method = \"occlusion\"\nwindow = 4\nstride = 2"),
];

#[test]
fn the_methods_on_an_imported_resnet_give_captum_s_maps() {
    let x = sanity_data::npy::read_array(&model_fixture("tiny-resnet-input.npy").display().to_string()).expect("input");
    let x32: Vec<f32> = x.values.iter().map(|&v| v as f32).collect();
    let targets: Vec<usize> = golden("targets.npy").iter().map(|&t| t as usize).collect();
    let ids: Vec<u64> = (0..targets.len() as u64).collect();
    let specs = CAPTUM_SPECS;
    // pytorch-grad-cam min-max scales each map: ours are scaled the same way to compare.
    let cams = [
        ("gradcam_plus_plus", "method = \"gradcam_plus_plus\"\nlayer = \"layer2\""),
        ("xgradcam", "method = \"xgradcam\"\nlayer = \"layer2\""),
        ("layercam", "method = \"layercam\"\nlayer = \"layer2\""),
        ("scorecam", "method = \"scorecam\"\nlayer = \"layer2\""),
    ];
    for file in ["tiny-resnet-ts.onnx", "tiny-resnet-dynamo.onnx"] {
        let imported = read_onnx(&model_fixture(file)).expect("import");
        let model = GraphModel::new(&imported.graph, &imported.weights).expect("weights");
        for (name, toml) in specs {
            let spec: MethodSpec = toml::from_str(toml).expect("spec");
            let (maps, shape) = attribute_graph(&spec, &model, &x32, (x.shape[0], &targets, &ids), 0).expect(name);
            let want = golden(&format!("{name}.npy"));
            assert_eq!(maps.len(), want.len(), "{file} {name}: shape {shape:?}");
            let error = relative_l2(&maps, &want);
            eprintln!("{file} {name}: relative L2 {error:.1e} from Captum");
            assert!(error < 1e-4, "{file} {name}: relative L2 {error:e} from Captum");
        }
        for (name, toml) in cams {
            let spec: MethodSpec = toml::from_str(toml).expect("spec");
            let (maps, _) = attribute_graph(&spec, &model, &x32, (x.shape[0], &targets, &ids), 0).expect(name);
            let want = golden(&format!("{name}.npy"));
            let per = maps.len() / x.shape[0];
            let mut worst: f64 = 0.0;
            for (ours, theirs) in maps.chunks_exact(per).zip(want.chunks_exact(per)) {
                let (lo, hi) = ours.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
                for (&o, &t) in ours.iter().zip(theirs) {
                    worst = worst.max((f64::from((o - lo) / (hi - lo + 1e-7)) - t).abs());
                }
            }
            eprintln!("{file} {name}: max |scaled ours − pytorch-grad-cam| {worst:.1e}");
            assert!(worst < 1e-4, "{file} {name}: {worst:e} from pytorch-grad-cam");
        }
        // The default Grad-CAM layer is the last node with more than one pixel: layer2's.
        let default: MethodSpec = toml::from_str("method = \"gradcam\"").expect("spec");
        let (maps, _) =
            attribute_graph(&default, &model, &x32, (x.shape[0], &targets, &ids), 0).expect("default layer");
        assert!(relative_l2(&maps, &golden("gradcam.npy")) < 1e-4, "{file}");
    }
}

#[test]
fn the_preset_path_gives_the_maps_of_the_onnx_path() {
    use sanity_model::graph_presets::{Block, ResNetSpec, resnet_graph};
    let spec =
        ResNetSpec { block: Block::Basic, layers: vec![1, 1], widths: vec![8, 16], in_channels: 3, num_classes: 4 };
    let graph = resnet_graph(&spec, [3, 16, 16]).expect("tiny resnet");
    let weights = sanity_model::Weights::load_for_graph(&model_fixture("tiny-resnet.safetensors"), &graph)
        .expect("the state_dict loads as is");
    let model = GraphModel::new(&graph, &weights).expect("weights");
    let x = sanity_data::npy::read_array(&model_fixture("tiny-resnet-input.npy").display().to_string()).expect("input");
    let x32: Vec<f32> = x.values.iter().map(|&v| v as f32).collect();
    let targets: Vec<usize> = golden("targets.npy").iter().map(|&t| t as usize).collect();
    let ids: Vec<u64> = (0..targets.len() as u64).collect();
    for (name, toml) in CAPTUM_SPECS {
        let spec: MethodSpec = toml::from_str(toml).expect("spec");
        let (maps, _) = attribute_graph(&spec, &model, &x32, (x.shape[0], &targets, &ids), 0).expect(name);
        let error = relative_l2(&maps, &golden(&format!("{name}.npy")));
        eprintln!("preset + safetensors {name}: relative L2 {error:.1e} from Captum");
        assert!(error < 1e-4, "preset + safetensors {name}: relative L2 {error:e} from Captum");
    }
}

#[test]
fn on_the_presets_the_graph_methods_give_the_sequential_methods_maps() {
    use candle_core::{Device, Tensor};
    use rand::{Rng, SeedableRng};
    use sanity_model::graph::Graph;
    use sanity_model::{Architecture, Model, init_weights, preset};
    use std::sync::Arc;
    for (name, input, layer, targets) in
        [("adebayo-cnn", [1, 28, 28], "conv2", vec![1, 7]), ("phantom-cnn", [1, 64, 64], "conv3", vec![0, 0])]
    {
        let arch = Arc::new(Architecture::new(preset(name, input).expect("preset")).expect("valid"));
        let weights = init_weights(&arch, 2).expect("init");
        let model = Model::new(arch.clone(), weights.clone());
        let graph = Graph::from_architecture(&arch).expect("graph");
        let walk = GraphModel::new(&graph, &weights).expect("weights");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let n = targets.len();
        let x: Vec<f32> = (0..n * input.iter().product::<usize>()).map(|_| rng.random_range(0.0..1.0)).collect();
        let tensor = Tensor::from_vec(x.clone(), (n, input[0], input[1], input[2]), &Device::Cpu).expect("tensor");
        let ids = [5u64, 9];
        let images: Vec<f32> = (0..4 * input.iter().product::<usize>()).map(|_| rng.random_range(0.0..1.0)).collect();
        let references = sanity_attribution::ReferenceSet::from_tensor(
            &Tensor::from_vec(images, (4, input[0], input[1], input[2]), &Device::Cpu).expect("tensor"),
        )
        .expect("references");
        for id in sanity_attribution::registry::METHODS.iter().map(|m| m.id) {
            let params = match id {
                "integrated_gradients" => "\nsteps = 8".to_string(),
                "expected_gradients" => "\nsamples = 6\nbatch = 4".into(),
                "occlusion" => "\nwindow = 4\nstride = 4".into(),
                "smoothgrad" | "smoothgrad_squared" | "vargrad" => "\nsamples = 3\nnoise = 0.1".into(),
                cam if cam.contains("cam") => format!("\nlayer = \"{layer}\""),
                _ => String::new(),
            };
            let spec: MethodSpec = toml::from_str(&format!("method = \"{id}\"{params}")).expect("spec");
            let built = spec.build_with(&arch, 0, Some(&references)).expect("build");
            let sequential = built.attribute(&model, &tensor, &targets, &ids).expect(id);
            let sequential: Vec<f64> = sequential
                .flatten_all()
                .and_then(|t| t.to_dtype(candle_core::DType::F64))
                .and_then(|t| t.to_vec1())
                .expect("values");
            let inputs = (n, targets.as_slice(), ids.as_slice());
            let (ours, _) = attribute_graph_with(&spec, &walk, &x, inputs, 0, Some(&references)).expect(id);
            assert_eq!(ours.len(), sequential.len(), "{name} {id}");
            let norm: f64 = sequential.iter().map(|v| v * v).sum();
            let error = if norm == 0.0 { 0.0 } else { relative_l2(&ours, &sequential) };
            eprintln!("{name} {id}: {error:.1e}");
            assert!(error < 1e-4, "{name} {id}: relative L2 {error:e} from the sequential method");
        }
    }
}

#[test]
fn integrated_gradients_in_passes_of_fewer_points_than_steps_gives_captum_s_maps() {
    let imported = read_onnx(&model_fixture("tiny-resnet-dynamo.onnx")).expect("import");
    let model = GraphModel::new(&imported.graph, &imported.weights).expect("weights");
    let x = sanity_data::npy::read_array(&model_fixture("tiny-resnet-input.npy").display().to_string()).expect("input");
    let x32: Vec<f32> = x.values.iter().map(|&v| v as f32).collect();
    let targets: Vec<usize> = golden("targets.npy").iter().map(|&t| t as usize).collect();
    let ids: Vec<u64> = (0..targets.len() as u64).collect();
    // 16 steps in passes of 5, 5, 5 and 1 points: Captum's maps all the same.
    let spec: MethodSpec = toml::from_str("method = \"integrated_gradients\"\nsteps = 16\nbatch = 5").expect("spec");
    let (maps, _) = attribute_graph(&spec, &model, &x32, (x.shape[0], &targets, &ids), 0).expect("maps");
    let error = relative_l2(&maps, &golden("integrated_gradients.npy"));
    assert!(error < 1e-4, "relative L2 {error:e} from Captum");
}

#[test]
fn a_vgg_and_a_resnet_at_224x224_built_from_their_state_dicts_give_captum_s_maps() {
    use sanity_model::graph_presets::{Block, ResNetSpec, VggSpec, resnet_graph, vgg_graph};
    // scripts/golden/graph_large_fixtures.py: the tiny VGG on its 2 images, the tiny ResNet on
    // one 224x224 image.
    let vgg = VggSpec { cfg: vec![Some(4), None, Some(8), None], hidden: 16, in_channels: 3, num_classes: 5 };
    let resnet =
        ResNetSpec { block: Block::Basic, layers: vec![1, 1], widths: vec![8, 16], in_channels: 3, num_classes: 4 };
    let cases = [
        ("vgg", vgg_graph(&vgg, [3, 16, 16]).expect("vgg"), "tiny-vgg.safetensors", "features.4"),
        ("resnet224", resnet_graph(&resnet, [3, 224, 224]).expect("resnet"), "tiny-resnet.safetensors", "layer2"),
    ];
    for (name, graph, state, layer) in cases {
        let weights = sanity_model::Weights::load_for_graph(&model_fixture(state), &graph).expect("state_dict");
        let model = GraphModel::new(&graph, &weights).expect("weights");
        let input = match name {
            "vgg" => model_fixture("tiny-vgg-input.npy"),
            _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/graph/resnet224-input.npy"),
        };
        let x = sanity_data::npy::read_array(&input.display().to_string()).expect("input");
        let x32: Vec<f32> = x.values.iter().map(|&v| v as f32).collect();
        let targets: Vec<usize> = match name {
            "vgg" => golden("vgg-targets.npy").iter().map(|&t| t as usize).collect(),
            _ => vec![2],
        };
        let ids: Vec<u64> = (0..targets.len() as u64).collect();
        let gradcam = format!("method = \"gradcam\"\nlayer = \"{layer}\"");
        for (method, toml) in
            CAPTUM_SPECS.iter().take(5).map(|&(m, t)| (m, t.to_string())).chain([("gradcam", gradcam)])
        {
            let spec: MethodSpec = toml::from_str(&toml).expect("spec");
            let (maps, _) = attribute_graph(&spec, &model, &x32, (x.shape[0], &targets, &ids), 0).expect(method);
            let error = relative_l2(&maps, &golden(&format!("{name}-{method}.npy")));
            eprintln!("{name} {method}: relative L2 {error:.1e} from Captum");
            assert!(error < 1e-4, "{name} {method}: relative L2 {error:e} from Captum");
        }
    }
}

/// LRP merges each batch norm into the convolution before it, as torch's ONNX export does: the
/// preset built from the `state_dict` (batch norms apart) and both exports (folded) give the
/// same relevance, under the ε and the α-β rule.
#[test]
fn lrp_gives_the_same_maps_with_batch_norms_apart_or_folded_by_the_export() {
    use sanity_model::graph_presets::{Block, ResNetSpec, resnet_graph};
    let spec =
        ResNetSpec { block: Block::Basic, layers: vec![1, 1], widths: vec![8, 16], in_channels: 3, num_classes: 4 };
    let graph = resnet_graph(&spec, [3, 16, 16]).expect("tiny resnet");
    let weights = sanity_model::Weights::load_for_graph(&model_fixture("tiny-resnet.safetensors"), &graph)
        .expect("the state_dict loads as is");
    let preset = GraphModel::new(&graph, &weights).expect("weights");
    let x = sanity_data::npy::read_array(&model_fixture("tiny-resnet-input.npy").display().to_string()).expect("input");
    let x32: Vec<f32> = x.values.iter().map(|&v| v as f32).collect();
    let targets: Vec<usize> = golden("targets.npy").iter().map(|&t| t as usize).collect();
    let ids: Vec<u64> = (0..targets.len() as u64).collect();
    let inputs = (x.shape[0], targets.as_slice(), ids.as_slice());
    for toml in ["method = \"lrp_epsilon\"\nepsilon = 0.01", "method = \"lrp_alpha_beta\""] {
        let spec: MethodSpec = toml::from_str(toml).expect("spec");
        let (apart, _) = attribute_graph(&spec, &preset, &x32, inputs, 0).expect("preset");
        assert!(apart.iter().any(|&r| r != 0.0), "{toml}: all-zero relevance");
        let apart64: Vec<f64> = apart.iter().map(|&v| f64::from(v)).collect();
        for file in ["tiny-resnet-ts.onnx", "tiny-resnet-dynamo.onnx"] {
            let imported = read_onnx(&model_fixture(file)).expect("import");
            let model = GraphModel::new(&imported.graph, &imported.weights).expect("weights");
            let (folded, _) = attribute_graph(&spec, &model, &x32, inputs, 0).expect(file);
            let error = relative_l2(&folded, &apart64);
            eprintln!("{file} {toml:?}: relative L2 {error:.1e} from the preset's");
            assert!(error < 1e-4, "{file} {toml:?}: relative L2 {error:e} from the preset's");
        }
    }
}

/// LRP-ε on the VGG preset built from the tiny VGG's `state_dict` gives Captum's `LRP`
/// (`scripts/golden/graph_lrp_fixtures.py`, float64): max poolings and the adaptive average
/// pooling (4x4 to 7x7 bins, overlapping) under ε = 1e-9, convolutions and linear layers under
/// Captum's default ε and under ε = 0.25.
#[test]
fn lrp_on_a_vgg_built_from_its_state_dict_gives_captum_s_relevance() {
    use sanity_model::graph_presets::{VggSpec, vgg_graph};
    let vgg = VggSpec { cfg: vec![Some(4), None, Some(8), None], hidden: 16, in_channels: 3, num_classes: 5 };
    let graph = vgg_graph(&vgg, [3, 16, 16]).expect("vgg");
    let weights = sanity_model::Weights::load_for_graph(&model_fixture("tiny-vgg.safetensors"), &graph).expect("state");
    let model = GraphModel::new(&graph, &weights).expect("weights");
    let x = sanity_data::npy::read_array(&model_fixture("tiny-vgg-input.npy").display().to_string()).expect("input");
    let x32: Vec<f32> = x.values.iter().map(|&v| v as f32).collect();
    let targets: Vec<usize> = golden("vgg-targets.npy").iter().map(|&t| t as usize).collect();
    let ids: Vec<u64> = (0..targets.len() as u64).collect();
    for (file, toml) in [
        ("vgg-lrp_epsilon.npy", "method = \"lrp_epsilon\""),
        ("vgg-lrp_epsilon_0.25.npy", "method = \"lrp_epsilon\"\nepsilon = 0.25"),
    ] {
        let spec: MethodSpec = toml::from_str(toml).expect("spec");
        let (maps, _) = attribute_graph(&spec, &model, &x32, (x.shape[0], &targets, &ids), 0).expect(file);
        let error = relative_l2(&maps, &golden(file));
        eprintln!("{file}: relative L2 {error:.1e} from Captum");
        assert!(error < 1e-4, "{file}: relative L2 {error:e} from Captum");
    }
}
