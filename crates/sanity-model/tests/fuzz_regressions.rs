//! Replays the seeds and every crash input of the `safetensors`, `architecture` and `onnx` fuzz targets
//! (fuzz/corpus/, fuzz/regressions/; scripts/fuzz/run.sh): each gives weights or an architecture,
//! or an error naming its source, never a panic. The seeds are valid and must load.

use candle_core::{DType, Device, Tensor};
use sanity_model::weights::{expected_shapes, max_safetensors_bytes};
use sanity_model::{Architecture, ArchitectureSpec, Weights, init_weights};
use std::path::{Path, PathBuf};

/// The fuzz crate's folder.
fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files of `fuzz/<kind>/<target>/` (`kind`: `corpus` for the seeds, `regressions` for the
/// crash inputs), dotfiles (`.gitkeep`) left out.
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir().join(kind).join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    files.sort();
    files
}

/// The fixed architecture of the `safetensors` target.
fn safetensors_arch() -> Architecture {
    let path = fuzz_dir().join("safetensors_arch.toml");
    Architecture::new(ArchitectureSpec::from_toml_file(&path).expect("parses")).expect("valid")
}

#[test]
fn safetensors_inputs_load_or_fail_cleanly() {
    let arch = safetensors_arch();
    let seeds = inputs("corpus", "safetensors");
    assert!(seeds.len() >= 4, "the seeds are committed");
    for path in &seeds {
        if let Err(e) = Weights::load_safetensors(path, &arch) {
            panic!("seed {}: {e}", path.display());
        }
    }
    for path in seeds.iter().chain(&inputs("regressions", "safetensors")) {
        let bytes = std::fs::read(path).expect("read");
        let shown = path.display().to_string();
        if let Err(e) = Weights::from_safetensors_bytes(&bytes, &shown, &arch) {
            assert!(e.to_string().contains(&shown), "{e}");
        }
        match Weights::load_safetensors(path, &arch) {
            Err(e) => assert!(e.to_string().contains(&shown), "{e}"),
            Ok(_) => assert!(!is_malformed(path), "{shown} is malformed on purpose, but loaded"),
        }
    }
}

/// Hand-made inputs (`malformed-*` in a regressions folder: a truncated header, a header length
/// of 2^64 − 1, a lying shape; unclosed TOML, a 10^8-output layer) must be refused.
fn is_malformed(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("malformed-"))
}

#[test]
fn architecture_inputs_parse_or_fail_cleanly() {
    let seeds = inputs("corpus", "architecture");
    assert!(seeds.len() >= 4, "the seeds are committed");
    for path in &seeds {
        let arch = ArchitectureSpec::from_toml_file(path).and_then(Architecture::new);
        if let Err(e) = arch {
            panic!("seed {}: {e}", path.display());
        }
    }
    for path in seeds.iter().chain(&inputs("regressions", "architecture")) {
        let bytes = std::fs::read(path).expect("read");
        let shown = path.display().to_string();
        let Ok(text) = std::str::from_utf8(&bytes) else { continue };
        match ArchitectureSpec::from_toml_str(text, &shown) {
            Err(e) => assert!(e.to_string().contains(&shown), "{e}"),
            Ok(spec) => {
                if let Ok(arch) = Architecture::new(spec) {
                    assert!(!is_malformed(path), "{shown} is malformed on purpose, but was accepted");
                    let _ = (expected_shapes(&arch), max_safetensors_bytes(&arch), arch.parameter_count());
                }
            }
        }
    }
}

/// Writes the `safetensors` seeds with our own writer: the fixed architecture's initial weights
/// in f32, f64 and bf16, and with PyTorch's batch-norm counter. Run by hand after a change of
/// the architecture or the writer:
/// `cargo test -p sanity-model --test fuzz_regressions -- --ignored`.
#[test]
#[ignore = "rewrites fuzz/corpus/safetensors/"]
fn write_safetensors_seeds() {
    let arch = safetensors_arch();
    let dir = fuzz_dir().join("corpus/safetensors");
    let weights = init_weights(&arch, 0).expect("init");
    weights.save_safetensors(&dir.join("tiny-f32.safetensors")).expect("save");
    weights.to_dtype(DType::F64).expect("f64").save_safetensors(&dir.join("tiny-f64.safetensors")).expect("save");
    weights.to_dtype(DType::BF16).expect("bf16").save_safetensors(&dir.join("tiny-bf16.safetensors")).expect("save");
    let mut counted = init_weights(&arch, 1).expect("init");
    counted.insert("bn1.num_batches_tracked", Tensor::new(100i64, &Device::Cpu).expect("scalar"));
    counted.save_safetensors(&dir.join("tiny-counter.safetensors")).expect("save");
}

#[test]
fn onnx_inputs_import_or_fail_cleanly() {
    let seeds = inputs("corpus", "onnx");
    assert!(seeds.len() >= 2, "the seeds are committed");
    for path in &seeds {
        let bytes = std::fs::read(path).expect("read");
        if let Err(e) = sanity_model::onnx::OnnxModel::from_bytes(&bytes, "seed.onnx") {
            panic!("seed {}: {e}", path.display());
        }
    }
    for path in seeds.iter().chain(&inputs("regressions", "onnx")) {
        let bytes = std::fs::read(path).expect("read");
        let shown = path.display().to_string();
        match sanity_model::onnx::OnnxModel::from_bytes(&bytes, &shown) {
            Err(e) => assert!(e.to_string().contains(&shown), "{e}"),
            Ok(_) => assert!(!is_malformed(path), "{shown} is malformed on purpose, but imported"),
        }
    }
}
