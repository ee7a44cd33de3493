//! No value asks for unbounded work: every numeric key of the config schema (as the resolved
//! configs of a few rich configs show them, so a new key is walked without a test change) and
//! of an architecture TOML set to a huge value is refused by `sanity plan` with exit code 2,
//! in seconds and under a memory cap, naming the key; values that are not sizes (seeds, a
//! constant's value) may be accepted, but never crash or hang.

mod common;
use common::write_npy_f32;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Keys whose every finite value is legitimate: seeds name streams, the others are values (a
/// baseline's value, an initialiser's std, SSIM's constants), not sizes.
const VALUES_NOT_SIZES: &[&str] = &[
    "seed",
    "split_seed",
    "learning_rate",
    "noise_std",
    "value",
    "std",
    "scale",
    "k1",
    "k2",
    "data_range",
    "baseline",
    "low",
    "high",
    "epsilon",
    "alpha",
    "beta",
    "eps",
];

/// How long one refused plan may take, and the address space it may use (KiB).
const PLAN_SECONDS: u64 = 20;
const ADDRESS_SPACE_KIB: u64 = 4 << 20;

/// Runs `sanity plan` under the memory cap; returns (exit code, stderr, seconds).
fn plan(config: &Path, sets: &[String]) -> (Option<i32>, String, f64) {
    let binary = assert_cmd::cargo::cargo_bin("sanity");
    let mut command = std::process::Command::new("sh");
    command.arg("-c").arg(format!("ulimit -v {ADDRESS_SPACE_KIB}; exec \"$0\" \"$@\"")).arg(&binary);
    command.arg("plan").arg(config);
    for set in sets {
        command.arg("--set").arg(set);
    }
    let started = Instant::now();
    let mut child =
        command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().expect("spawn");
    while child.try_wait().expect("waits").is_none() {
        if started.elapsed() > Duration::from_secs(PLAN_SECONDS) {
            let _ = child.kill();
            panic!("sanity plan {} {sets:?} ran for over {PLAN_SECONDS} s", config.display());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let output = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    (output.status.code(), stderr + &stdout, started.elapsed().as_secs_f64())
}

/// Every numeric leaf of `value` with its dotted path (array elements by index).
fn numeric_leaves(value: &toml::Value, path: String, out: &mut Vec<(String, bool)>) {
    match value {
        toml::Value::Integer(_) => out.push((path, true)),
        toml::Value::Float(_) => out.push((path, false)),
        toml::Value::Table(t) => {
            for (k, v) in t {
                numeric_leaves(v, if path.is_empty() { k.clone() } else { format!("{path}.{k}") }, out);
            }
        }
        toml::Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                numeric_leaves(v, format!("{path}.{i}"), out);
            }
        }
        _ => {}
    }
}

fn last_segment(path: &str) -> &str {
    path.rsplit('.').find(|s| s.parse::<usize>().is_err()).unwrap_or(path)
}

const ARCH: &str = r#"input = [1, 32, 32]

[[layers]]
type = "conv2d"
name = "conv1"
in_channels = 1
out_channels = 4
kernel_size = 3
padding = 1
weight_init = { kind = "truncated_normal", std = 0.1 }
bias_init = { kind = "constant", value = 0.0 }

[[layers]]
type = "batch_norm2d"
name = "bn1"
num_features = 4

[[layers]]
type = "relu"

[[layers]]
type = "max_pool2d"
kernel_size = 2
stride = 2

[[layers]]
type = "dropout"
p = 0.25

[[layers]]
type = "flatten"

[[layers]]
type = "linear"
name = "logits"
in_features = 1024
out_features = 2
"#;

/// A config with every test and numeric method, metric and post-processing parameters.
fn rich_config(data: &str, arch: &str) -> String {
    format!(
        r#"name = "bounds"
seed = 3

{data}

[model]
arch = "{arch}"

[training]
epochs = 1
batch_size = 8
checkpoint_every = 1

[attribution]
n_images = 4
batch_size = 2
methods = [
  {{ method = "integrated_gradients", steps = 8, batch = 16, baseline = {{ kind = "constant", value = 0.5 }} }},
  {{ method = "expected_gradients", samples = 4, batch = 8 }},
  {{ method = "smoothgrad", samples = 4, noise = 0.1, batch = 8 }},
  {{ method = "occlusion", window = 4, stride = 4, baseline = 0.0, batch = 8 }},
  {{ method = "gradcam" }},
]

[[tests]]
kind = "cascading"
reinit = {{ kind = "truncated_normal", std = 0.1 }}

[[tests]]
kind = "data_randomization"
max_epochs = 2
n_train = 8
training = {{ learning_rate = 0.01, batch_size = 4, weight_decay = 0.0001, momentum = 0.5 }}

[[tests]]
kind = "smooth_mprt"
samples = 3
noise = 0.1

[[tests]]
kind = "efficient_mprt"

[[tests]]
kind = "method_agreement"

[[comparisons]]
postprocess = [{{ step = "abs" }}, {{ step = "clip_percentile", p = 99.0 }}, {{ step = "resize", h = 16, w = 16 }}]
metrics = [
  {{ metric = "spearman" }},
  {{ metric = "ssim", data_range = 1.0, window = {{ kind = "uniform", size = 7 }} }},
  {{ metric = "hog_pearson", orientations = 9, pixels_per_cell = [4, 4], cells_per_block = [2, 2] }},
  {{ metric = "top_k_intersection", k = 20 }},
  {{ metric = "discrete_entropy", bins = 10 }},
]

[[comparisons]]
metrics = [{{ metric = "ssim", data_range = 1.0, window = {{ kind = "gaussian", sigma = 1.5, truncate = 3.5 }} }}]

[statistics]
bootstrap_resamples = 100

[report]
examples = 2
"#
    )
}

/// Checks every numeric leaf of the resolved config of `config` (and its architecture's, when
/// `arch` is given); returns how many keys were walked.
fn walk(config: &Path, arch: Option<&Path>) -> usize {
    let (code, out, _) = plan(config, &[]);
    assert_eq!(code, Some(0), "the base config must plan: {out}");
    let resolved = out.split("# resolved config\n").nth(1).expect("resolved config printed");
    let table: toml::Value = toml::from_str(resolved).expect("resolved TOML");
    let mut leaves = Vec::new();
    numeric_leaves(&table, String::new(), &mut leaves);
    let mut walked = 0;
    for (key, integer) in &leaves {
        let huge = if *integer { "1000000000000" } else { "1e300" };
        let (code, out, _) = plan(config, &[format!("{key}={huge}")]);
        check(key, code, &out);
        walked += 1;
    }
    if let Some(arch) = arch {
        let spec: toml::Value = toml::from_str(&std::fs::read_to_string(arch).expect("arch")).expect("arch TOML");
        let mut leaves = Vec::new();
        numeric_leaves(&spec, String::new(), &mut leaves);
        for (key, integer) in &leaves {
            let mut changed = spec.clone();
            set(
                &mut changed,
                key,
                if *integer { toml::Value::Integer(1_000_000_000_000) } else { toml::Value::Float(1e300) },
            );
            let path = arch.with_file_name("huge-arch.toml");
            std::fs::write(&path, toml::to_string(&changed).expect("TOML")).expect("write");
            let (code, out, _) = plan(config, &[format!("model.arch=\"{}\"", path.display())]);
            check(key, code, &out);
            walked += 1;
        }
    }
    walked
}

fn check(key: &str, code: Option<i32>, out: &str) {
    let name = last_segment(key);
    if VALUES_NOT_SIZES.contains(&name) {
        assert!(matches!(code, Some(0 | 2)), "{key}: exit {code:?}: {out}");
    } else {
        assert_eq!(code, Some(2), "{key} = huge was not refused: {out}");
        assert!(out.contains(name), "{key}: the refusal does not name it: {out}");
    }
}

fn set(value: &mut toml::Value, path: &str, new: toml::Value) {
    let mut at = value;
    for part in path.split('.') {
        at = match part.parse::<usize>() {
            Ok(i) => &mut at.as_array_mut().expect("array")[i],
            Err(_) => at.as_table_mut().expect("table").get_mut(part).expect("key"),
        };
    }
    *at = new;
}

#[test]
fn every_numeric_config_and_architecture_key_set_huge_is_refused_in_seconds() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let arch = tmp.path().join("arch.toml");
    std::fs::write(&arch, ARCH).expect("arch");
    let arch_text = arch.display().to_string();
    let phantom = "[data]\nsource = \"phantom\"\nn_train = 16\nn_test = 8\nsize = 32\nshortcut_rate = 0.1";
    let config = tmp.path().join("phantom.toml");
    std::fs::write(&config, rich_config(phantom, &arch_text)).expect("config");
    let mut walked = walk(&config, Some(&arch));
    // Arrays and Fashion-MNIST bring their own numeric keys.
    let (n, side) = (24usize, 32usize);
    let pixels: Vec<f32> = (0..n * side * side).map(|i| (i % 29) as f32 / 29.0).collect();
    let labels: Vec<f32> = (0..n).map(|i| (i % 2) as f32).collect();
    write_npy_f32(&tmp.path().join("x.npy"), &[n, side, side], &pixels);
    write_npy_f32(&tmp.path().join("y.npy"), &[n], &labels);
    let arrays = format!(
        "[data]\nsource = \"arrays\"\nimages = \"{}\"\nlabels = \"{}\"\nnum_classes = 2\ntest_fraction = 0.25",
        tmp.path().join("x.npy").display(),
        tmp.path().join("y.npy").display()
    );
    let config = tmp.path().join("arrays.toml");
    std::fs::write(&config, rich_config(&arrays, &arch_text)).expect("config");
    walked += walk(&config, None);
    let fashion = "[data]\nsource = \"fashion_mnist\"\nn_train = 100\nn_test = 50";
    let config = tmp.path().join("fashion.toml");
    let text = rich_config(fashion, "adebayo-cnn");
    std::fs::write(&config, text).expect("config");
    walked += walk(&config, None);
    assert!(walked > 60, "only {walked} keys walked");
}

#[test]
fn a_label_far_beyond_the_others_and_a_one_image_data_set_are_refused_naming_the_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (n, side) = (8usize, 16usize);
    let pixels: Vec<f32> = (0..n * side * side).map(|i| (i % 7) as f32 / 7.0).collect();
    write_npy_f32(&tmp.path().join("x.npy"), &[n, side, side], &pixels);
    let mut labels: Vec<f32> = (0..n).map(|i| (i % 2) as f32).collect();
    labels[5] = 5_000_000.0;
    write_npy_f32(&tmp.path().join("y.npy"), &[n], &labels);
    let data = |images: &PathBuf| {
        format!(
            "data={{ source = \"arrays\", images = \"{}\", labels = \"{}\" }}",
            images.display(),
            tmp.path().join("y.npy").display()
        )
    };
    let config = PathBuf::from("tests/fixtures/tiny.toml");
    let started = Instant::now();
    let (code, out, _) = plan(&config, &[data(&tmp.path().join("x.npy")), "model.arch=adebayo-mlp".into()]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("y.npy") && out.contains("index 5") && out.contains("5000000"), "{out}");
    assert!(started.elapsed() < Duration::from_secs(PLAN_SECONDS));
    write_npy_f32(&tmp.path().join("one.npy"), &[1, side, side], &pixels[..side * side]);
    write_npy_f32(&tmp.path().join("y.npy"), &[1], &[0.0]);
    let (code, out, _) = plan(&config, &[data(&tmp.path().join("one.npy"))]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("one.npy") && out.contains("at least 2 images"), "{out}");
}
