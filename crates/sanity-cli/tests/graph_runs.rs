//! `sanity run` on a model graph: an ONNX export (`[model] onnx`), a graph preset with its
//! trained weights (`[model] arch = "resnet18"`, `weights`) or trained by the run, cascades by
//! blocks, smooth and efficient MPRT, the random-logit and data randomisation tests and the
//! controls through the graph walk; and the plans it cannot run refused with exit 2, naming
//! the key.

mod common;

use assert_cmd::Command;
use std::path::{Path, PathBuf};

fn onnx(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../sanity-model/tests/fixtures/onnx").join(name)
}

fn sanity(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::cargo_bin("sanity").expect("binary").args(args).output().expect("runs");
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// 40 RGB 16x16 images of 4 classes, each class a brighter quadrant, as `.npy` arrays; the
/// `[data]` section that reads them.
fn rgb_arrays(dir: &Path) -> String {
    let (n, side) = (40usize, 16usize);
    let mut images = Vec::with_capacity(n * 3 * side * side);
    let mut labels = Vec::with_capacity(n * 8);
    for i in 0..n {
        let class = i % 4;
        for c in 0..3 {
            for y in 0..side {
                for x in 0..side {
                    let quadrant = (y / 8) * 2 + x / 8;
                    let base = ((i * 7 + c * 13 + y * 3 + x * 5) % 17) as f32 / 17.0;
                    images.push(if quadrant == class { base + 1.0 } else { base });
                }
            }
        }
        labels.extend_from_slice(&(class as i64).to_le_bytes());
    }
    let (x, y) = (dir.join("x.npy"), dir.join("y.npy"));
    common::write_npy_f32(&x, &[n, 3, side, side], &images);
    common::write_npy(&y, "<i8", &[n], &labels);
    format!(
        "[data]\nsource = \"arrays\"\nimages = \"{}\"\nlabels = \"{}\"\ntest_fraction = 0.25\n",
        x.display(),
        y.display()
    )
}

const ATTRIBUTION: &str = r#"
[attribution]
n_images = 8
batch_size = 4
methods = [
  { method = "gradient" },
  { method = "gradcam", layer = "layer2" },
  { method = "integrated_gradients", steps = 4 },
  { method = "expected_gradients", samples = 4 },
  { method = "lrp_epsilon", epsilon = 0.01 },
]

[controls]
draws = 1

[[comparisons]]
postprocess = []
metrics = [{ metric = "spearman" }]

[[comparisons]]
postprocess = [{ step = "abs" }, { step = "normalize", mode = "min_max" }]
metrics = [{ metric = "ssim", data_range = 1.0 }, { metric = "discrete_entropy" }]
"#;

/// The `(test, order, stage_index, stage)` of every score row, once each, in file order.
fn stages(run_dir: &Path) -> Vec<(String, String, String, String)> {
    let mut reader = csv::Reader::from_path(run_dir.join("scores.csv")).expect("scores.csv");
    let header = reader.headers().expect("header").clone();
    let col = |name: &str| header.iter().position(|h| h == name).expect(name);
    let (t, o, i, s) = (col("test"), col("order"), col("stage_index"), col("stage"));
    let mut out: Vec<(String, String, String, String)> = Vec::new();
    for row in reader.records().map(|r| r.expect("row")) {
        let key = (row[t].to_string(), row[o].to_string(), row[i].to_string(), row[s].to_string());
        if !out.contains(&key) {
            out.push(key);
        }
    }
    out
}

#[test]
fn an_onnx_export_runs_cascades_by_blocks_and_the_other_tests() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "name = \"onnx-run\"\nseed = 3\n{}\n[model]\nonnx = \"{}\"\n{ATTRIBUTION}\n{}",
        rgb_arrays(tmp.path()),
        onnx("tiny-resnet-dynamo.onnx").display(),
        r#"
[[tests]]
kind = "cascading"
stages = "blocks"
draws = 1

[[tests]]
kind = "efficient_mprt"
draws = 1

[[tests]]
kind = "random_logit"
"#
    );
    let path = tmp.path().join("onnx.toml");
    std::fs::write(&path, config).expect("config");
    let out = tmp.path().join("run");
    let (path, out_dir) = (path.display().to_string(), out.display().to_string());
    let (code, plan, err) = sanity(&["plan", &path]);
    assert_eq!(code, Some(0), "{err}");
    assert!(plan.contains("(top_down): fc -> layer2.0 -> layer1.0 -> conv1"), "{plan}");
    let (code, _, err) = sanity(&["run", &path, "--out", &out_dir, "--threads", "2"]);
    assert_eq!(code, Some(0), "{err}");
    let seen = stages(&out);
    let cascade: Vec<(&str, &str)> =
        seen.iter().filter(|k| k.0 == "cascading").map(|k| (k.2.as_str(), k.3.as_str())).collect();
    assert_eq!(cascade, vec![("1", "fc"), ("2", "layer2.0"), ("3", "layer1.0"), ("4", "conv1")]);
    assert!(seen.iter().any(|k| k.0 == "efficient_mprt") && seen.iter().any(|k| k.0 == "random_logit"), "{seen:?}");
    // Every method answers: the summary has rows with images for each.
    let summary = std::fs::read_to_string(out.join("summary.csv")).expect("summary");
    for method in ["gradient", "gradcam", "integrated_gradients", "expected_gradients", "lrp_epsilon"] {
        assert!(summary.lines().any(|l| l.contains(&format!(",{method},")) && l.contains(",cascading,")), "{summary}");
    }
    assert!(!err.contains("error:"), "{err}");
    let manifest = std::fs::read_to_string(out.join("manifest.json")).expect("manifest");
    assert!(manifest.contains("tiny-resnet-dynamo.onnx") && manifest.contains("layer2.0.downsample.0"), "{manifest}");
}

#[test]
fn a_graph_preset_with_its_weights_runs_smooth_mprt_by_blocks() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let graph = sanity_model::graph_presets::graph_preset("resnet18", [1, 32, 32], 2).expect("preset");
    let weights = tmp.path().join("resnet18.safetensors");
    sanity_model::graph_init::init_graph(&graph, 5).expect("init").save_safetensors(&weights).expect("save");
    let config = format!(
        r#"name = "preset-run"
seed = 1
[data]
source = "phantom"
n_train = 8
n_test = 8
size = 32
[model]
arch = "resnet18"
weights = "{}"
[attribution]
n_images = 4
methods = [{{ method = "gradient" }}]
[controls]
draws = 1
[[tests]]
kind = "smooth_mprt"
stages = ["layer4", "fc"]
samples = 2
draws = 1
[[tests]]
kind = "independent"
stages = "blocks"
draws = 1
[[comparisons]]
postprocess = []
metrics = [{{ metric = "spearman" }}]
"#,
        weights.display()
    );
    let path = tmp.path().join("preset.toml");
    std::fs::write(&path, config).expect("config");
    let out = tmp.path().join("run");
    let (code, _, err) = sanity(&["run", &path.display().to_string(), "--out", &out.display().to_string()]);
    assert_eq!(code, Some(0), "{err}");
    let seen = stages(&out);
    let smooth: Vec<&str> = seen.iter().filter(|k| k.0 == "smooth_mprt").map(|k| k.3.as_str()).collect();
    assert_eq!(smooth, vec!["layer4", "fc"], "bottom-up: layer4's ten layers, then the head");
    let independent: Vec<&str> = seen.iter().filter(|k| k.0 == "independent").map(|k| k.3.as_str()).collect();
    assert_eq!(independent.len(), 11, "conv1, bn1, eight blocks, fc: {independent:?}");
    assert!(independent.contains(&"layer3.1") && independent.contains(&"bn1"), "{independent:?}");
}

#[test]
fn a_graph_preset_is_trained_then_checked_with_its_random_label_twin() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = r#"name = "trained-graph"
seed = 2
[data]
source = "phantom"
n_train = 24
n_test = 8
size = 32
[model]
arch = "resnet18"
[training]
epochs = 2
batch_size = 8
[attribution]
n_images = 4
methods = [{ method = "gradient" }, { method = "gradcam", layer = "layer3" }]
[controls]
random_models = false
[[tests]]
kind = "cascading"
stages = ["layer4", "fc"]
draws = 1
[[tests]]
kind = "data_randomization"
max_epochs = 1
[[comparisons]]
postprocess = []
metrics = [{ metric = "spearman" }]
"#;
    let path = tmp.path().join("trained.toml");
    std::fs::write(&path, config).expect("config");
    let out = tmp.path().join("run");
    let (code, _, err) = sanity(&["run", &path.display().to_string(), "--out", &out.display().to_string()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("epoch 2: loss"), "trained for two epochs: {err}");
    assert!(err.contains("random labels, epoch 1"), "the random-label twin trained: {err}");
    let seen = stages(&out);
    assert!(seen.iter().any(|k| k.0 == "data_randomization"), "{seen:?}");
    // The trained weights are saved with torchvision's names and load as the preset's.
    let graph = sanity_model::graph_presets::graph_preset("resnet18", [1, 32, 32], 2).expect("preset");
    let weights = sanity_model::Weights::load_for_graph(&out.join("model.safetensors"), &graph).expect("loads");
    assert!(weights.get("layer4.1.bn2.running_var").is_ok());
}

#[test]
fn what_a_graph_cannot_run_is_refused_naming_the_key() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = rgb_arrays(tmp.path());
    let model = format!("[model]\nonnx = \"{}\"\n", onnx("tiny-resnet-dynamo.onnx").display());
    let tests = "[[tests]]\nkind = \"cascading\"\n[[comparisons]]\nmetrics = [{ metric = \"spearman\" }]\n";
    let cases: Vec<(String, &str, &str)> = vec![
        (
            format!(
                "{data}{model}[attribution]\nn_images = 2\nmethods = [{{ method = \"gradient\" }}]\n[[tests]]\nkind = \"cascading\"\nstages = [\"layer9\"]\n[[comparisons]]\nmetrics = [{{ metric = \"spearman\" }}]\n"
            ),
            "tests[0].stages",
            "layer2.0",
        ),
        (
            format!(
                "{data}{model}arch = \"resnet18\"\n[attribution]\nn_images = 2\nmethods = [{{ method = \"gradient\" }}]\n{tests}"
            ),
            "model.arch",
            "beside model.onnx",
        ),
        (
            format!(
                "{data}{model}[attribution]\nn_images = 2\nmethods = [{{ method = \"gradient\" }}, {{ method = \"gradcam\" }}]\n[[tests]]\nkind = \"method_agreement\"\n[[comparisons]]\nmetrics = [{{ metric = \"spearman\" }}]\n"
            ),
            "comparisons[0].postprocess",
            "channel_reduce",
        ),
    ];
    for (i, (body, key, why)) in cases.into_iter().enumerate() {
        let path = tmp.path().join(format!("bad{i}.toml"));
        std::fs::write(&path, format!("name = \"bad\"\n{body}")).expect("config");
        let (code, _, err) = sanity(&["plan", &path.display().to_string()]);
        assert_eq!(code, Some(2), "case {i}: {err}");
        assert!(err.contains(key) && err.contains(why), "case {i}: {err}");
    }
}

#[test]
fn the_readme_s_config_for_an_onnx_export_parses() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md")).expect("README");
    let section = readme.split("\n### Your own PyTorch model\n").nth(1).expect("the section");
    let block = section.split("```toml\n").nth(1).and_then(|b| b.split("```").next()).expect("a TOML block");
    let config = sanity_rundir::config::Config::parse(block, "README.md", &[]).expect("parses");
    assert!(config.model.onnx.is_some(), "{config:?}");
}
