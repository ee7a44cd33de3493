//! Models of ones own: `sanity inspect` shows the layers of an ONNX export, a preset or an
//! architecture TOML, and `sanity attribute --onnx` writes maps of an export as Captum does; a
//! model that cannot be imported exits 2 naming the op and the node.

use assert_cmd::Command;
use std::path::{Path, PathBuf};

fn onnx(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../sanity-model/tests/fixtures/onnx").join(name)
}

fn inspect(model: &str, extra: &[&str]) -> (Option<i32>, String, String) {
    let out =
        Command::cargo_bin("sanity").expect("binary").arg("inspect").arg(model).args(extra).output().expect("runs");
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn an_onnx_export_shows_its_layers_shapes_and_cascade_order() {
    for file in ["tiny-resnet-ts.onnx", "tiny-resnet-dynamo.onnx"] {
        let (code, out, err) = inspect(&onnx(file).display().to_string(), &[]);
        assert_eq!(code, Some(0), "{file}: {err}");
        assert!(out.contains("input [n, 3, 16, 16]"), "{out}");
        assert!(out.contains("layer2.0.downsample.0") && out.contains("conv 8->16 1x1 s2"), "{out}");
        assert!(
            out.contains("cascade stages, top-down (bottom-up is the reverse): fc, layer2.0.downsample.0, layer2.0.conv2, layer2.0.conv1, layer1.0.conv2, layer1.0.conv1, conv1"),
            "{out}"
        );
        assert!(out.contains("folds each BatchNorm"), "{out}");
    }
}

#[test]
fn presets_and_architecture_files_are_shown_as_graphs() {
    let (code, out, err) = inspect("adebayo-cnn", &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("input [n, 1, 28, 28]") && out.contains("conv 1->32 5x5 p2"), "{out}");
    assert!(out.contains("top-down (bottom-up is the reverse): logits, fc1, conv2, conv1"), "{out}");
    let (code, out, err) = inspect("resnet50", &["--input", "1,64,64", "--classes", "2"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("layer4.2.conv3") && out.contains("layer1.0.downsample.1") && out.contains("linear 2048->2"),
        "{out}"
    );
    let (code, out, _) = inspect("phantom-cnn", &["--input", "1,32,32"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("input [n, 1, 32, 32]"), "{out}");
    let toml = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments/architectures/example-cnn.toml");
    let (code, out, err) = inspect(&toml.display().to_string(), &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("batch_norm") && out.contains("randomised apart from its convolution"), "{out}");
}

#[test]
fn models_that_cannot_be_imported_exit_2_naming_the_node() {
    let (code, _, err) = inspect(&onnx("bad-op.onnx").display().to_string(), &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("op `Resize` is not supported") && err.contains("node `"), "{err}");
    let (code, _, err) = inspect(&onnx("bad-cycle.onnx").display().to_string(), &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("/early/Relu"), "{err}");
    let (code, _, err) = inspect("nothing.onnx", &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("nothing.onnx"), "{err}");
    let (code, _, err) = inspect("adebayo-cnn", &["--input", "1,0,28"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("C,H,W"), "{err}");
}

#[test]
fn attribute_runs_the_graph_methods_on_an_onnx_export() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sanity-attribution/tests/fixtures/graph");
    let out = tmp.path().join("maps.npy");
    let run = |model: &str, method: &[&str]| {
        Command::cargo_bin("sanity")
            .expect("binary")
            .args(["attribute", "--onnx", model, "--input"])
            .arg(onnx("tiny-resnet-input.npy"))
            .arg("--targets")
            .arg(golden.join("targets.npy"))
            .args(method)
            .arg("--out")
            .arg(&out)
            .output()
            .expect("runs")
    };
    let model = onnx("tiny-resnet-dynamo.onnx").display().to_string();
    let done = run(&model, &["--method", "gradcam", "--layer", "layer2"]);
    assert_eq!(done.status.code(), Some(0), "{}", String::from_utf8_lossy(&done.stderr));
    let read = |p: &Path| sanity_data_values(p);
    let (ours, theirs) = (read(&out), read(&golden.join("gradcam.npy")));
    let worst = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0.0f64, f64::max);
    let scale = theirs.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(ours.len() == theirs.len() && worst < 1e-4 * scale, "{worst} of {scale}");
    // LRP runs on an export too (its batch norms are already folded into the convolutions).
    let lrp = run(&model, &["--method", "lrp_epsilon"]);
    assert_eq!(lrp.status.code(), Some(0), "{}", String::from_utf8_lossy(&lrp.stderr));
    let relevance = read(&out);
    assert_eq!(relevance.len(), theirs.len() * 3, "one relevance per input value");
    assert!(relevance.iter().all(|v| v.is_finite()) && relevance.iter().any(|&v| v != 0.0));
    let bad = run(&onnx("bad-op.onnx").display().to_string(), &["--method", "gradient"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("Resize"));
}

/// The values of an NPY file (float32 or float64) as f64.
fn sanity_data_values(path: &Path) -> Vec<f64> {
    let bytes = std::fs::read(path).expect("npy");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = String::from_utf8_lossy(&bytes[10..10 + header_len]);
    let data = &bytes[10 + header_len..];
    if header.contains("<f8") {
        data.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes"))).collect()
    } else {
        data.chunks_exact(4).map(|b| f64::from(f32::from_le_bytes(b.try_into().expect("4 bytes")))).collect()
    }
}

/// An NPY file of int64 values, shape `[n]`.
fn write_labels(path: &Path, labels: &[i64]) {
    let header = format!("{{'descr': '<i8', 'fortran_order': False, 'shape': ({},), }}", labels.len());
    let padded = format!("{header:<width$}\n", width = (header.len() + 11).div_ceil(64) * 64 - 11);
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((padded.len() as u16).to_le_bytes());
    bytes.extend(padded.as_bytes());
    labels.iter().for_each(|l| bytes.extend(l.to_le_bytes()));
    std::fs::write(path, bytes).expect("labels");
}

#[test]
fn explain_draws_an_onnx_export_s_maps_and_their_agreement() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let labels = tmp.path().join("labels.npy");
    write_labels(&labels, &[1, 3]);
    let images = onnx("tiny-resnet-input.npy").display().to_string();
    let data = format!(
        "{{ source = \"arrays\", images = \"{images}\", labels = \"{l}\", test_images = \"{images}\", test_labels = \"{l}\" }}",
        l = labels.display()
    );
    let out = tmp.path().join("explain");
    let run = |model: &str| {
        Command::cargo_bin("sanity")
            .expect("binary")
            .args(["explain", "--onnx", model, "--data", &data, "--methods", "gradcam,integrated_gradients"])
            .args(["--layer", "layer2", "--n", "2", "--out"])
            .arg(&out)
            .output()
            .expect("runs")
    };
    let done = run(&onnx("tiny-resnet-ts.onnx").display().to_string());
    assert_eq!(done.status.code(), Some(0), "{}", String::from_utf8_lossy(&done.stderr));
    for file in ["explain-0000.png", "explain-0001.png", "agreement.csv"] {
        assert!(out.join(file).is_file(), "{file}");
    }
    let agreement = std::fs::read_to_string(out.join("agreement.csv")).expect("csv");
    assert!(agreement.lines().count() == 3 && agreement.contains("gradcam,integrated_gradients"), "{agreement}");
    let other = run(&onnx("tiny-ops-ts.onnx").display().to_string());
    assert_eq!(other.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&other.stderr).contains("takes [2, 9, 9]"),
        "{}",
        String::from_utf8_lossy(&other.stderr)
    );
}
