//! Weights files that would poison or exhaust a run are refused, naming the file and the tensor:
//! NaN and ±Inf values (also an f64 past f32's range), lying safetensors headers (a header
//! length, offsets, shapes that do not match the data) and files longer than any file of the
//! architecture. No case panics or allocates by a header's word.

use candle_core::{DType, Device, Tensor};
use sanity_model::weights::{MAX_SAFETENSORS_HEADER_BYTES, max_safetensors_bytes};
use sanity_model::{Architecture, ArchitectureSpec, ModelError, Weights, init_weights};

/// conv1 (1 -> 2, 3x3), bn1, ReLU, max-pool 2, flatten, fc (8 -> 3): 51 parameter values in 6
/// tensors, and bn1's two running statistics (4 values).
const TINY: &str = r#"
input = [1, 4, 4]
[[layers]]
type = "conv2d"
name = "conv1"
in_channels = 1
out_channels = 2
kernel_size = 3
padding = 1
[[layers]]
type = "batch_norm2d"
name = "bn1"
num_features = 2
[[layers]]
type = "relu"
[[layers]]
type = "max_pool2d"
kernel_size = 2
[[layers]]
type = "flatten"
[[layers]]
type = "linear"
name = "fc"
in_features = 8
out_features = 3
"#;

fn arch() -> Architecture {
    Architecture::new(ArchitectureSpec::from_toml_str(TINY, "tiny.toml").expect("parses")).expect("valid")
}

/// `weights` with `name`'s flat values at `at` set to `values` (in `dtype`).
fn poisoned(weights: &Weights, name: &str, at: &[(usize, f64)], dtype: DType) -> Weights {
    let t = weights.get(name).expect("present");
    let mut values =
        t.flatten_all().and_then(|t| t.to_dtype(DType::F64)).and_then(|t| t.to_vec1::<f64>()).expect("f64");
    for &(i, v) in at {
        values[i] = v;
    }
    let mut out = weights.clone();
    out.insert(name, Tensor::from_vec(values, t.dims(), &Device::Cpu).and_then(|t| t.to_dtype(dtype)).expect("tensor"));
    out
}

/// The bytes of `weights` as our own writer writes them.
fn bytes_of(weights: &Weights) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("w.safetensors");
    weights.save_safetensors(&path).expect("save");
    std::fs::read(&path).expect("read")
}

/// A safetensors file of header `json` and `data`.
fn file(json: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(json.as_bytes());
    out.extend_from_slice(data);
    out
}

#[test]
fn a_nan_weight_is_refused_naming_the_file_the_tensor_and_the_count() {
    let arch = arch();
    let good = init_weights(&arch, 1).expect("init");
    let bad = poisoned(&good, "conv1.weight", &[(4, f64::NAN), (7, f64::NAN)], DType::F32);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nan.safetensors");
    bad.save_safetensors(&path).expect("save");
    let err = Weights::load_safetensors(&path, &arch).expect_err("NaN");
    match &err {
        ModelError::NonFiniteWeights { path: p, tensor, count, total, first } => {
            assert_eq!(
                (p.as_str(), tensor.as_str(), *count, *total, *first),
                (path.to_str().expect("utf-8"), "conv1.weight", 2, 18, 4)
            );
        }
        other => panic!("expected NonFiniteWeights, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        format!(
            "weights `{}`: tensor `conv1.weight` holds 2 non-finite value(s) (NaN or ±Inf as f32) among 18, the first \
             at flat index 4; accepted: finite values only",
            path.display()
        )
    );
    // A NaN running statistic too.
    let bad = poisoned(&good, "bn1.running_var", &[(1, f64::NAN)], DType::F32);
    let err = Weights::from_safetensors_bytes(&bytes_of(&bad), "mem", &arch).expect_err("NaN").to_string();
    assert!(err.starts_with("weights `mem`: tensor `bn1.running_var` holds 1 non-finite value(s)"), "{err}");
}

#[test]
fn an_infinite_weight_is_refused_likewise_in_every_float_dtype() {
    let arch = arch();
    let good = init_weights(&arch, 2).expect("init");
    for dtype in [DType::F32, DType::F64, DType::F16, DType::BF16] {
        let bad = poisoned(&good, "fc.bias", &[(0, f64::INFINITY), (2, f64::NEG_INFINITY)], dtype);
        let err = Weights::from_safetensors_bytes(&bytes_of(&bad), "inf.safetensors", &arch).expect_err("Inf");
        assert!(
            matches!(&err, ModelError::NonFiniteWeights { tensor, count: 2, total: 3, first: 0, .. } if tensor == "fc.bias"),
            "{dtype:?}: {err:?}"
        );
        assert!(err.to_string().starts_with("weights `inf.safetensors`: tensor `fc.bias`"), "{err}");
    }
    // A finite f64 past f32's range becomes Inf when converted: refused too.
    let bad = poisoned(&good, "fc.weight", &[(5, 1e300)], DType::F64);
    let err = Weights::from_safetensors_bytes(&bytes_of(&bad), "big", &arch).expect_err("past f32");
    assert!(
        matches!(&err, ModelError::NonFiniteWeights { tensor, count: 1, first: 5, .. } if tensor == "fc.weight"),
        "{err:?}"
    );
    // The same values finite load, converted to f32.
    let loaded = Weights::from_safetensors_bytes(&bytes_of(&good.to_dtype(DType::F64).expect("f64")), "ok", &arch)
        .expect("finite weights load");
    assert_eq!(loaded.get("fc.weight").expect("fc").dtype(), DType::F32);
}

#[test]
fn a_lying_header_is_refused_without_panicking_or_allocating_by_its_word() {
    let arch = arch();
    let good = bytes_of(&init_weights(&arch, 3).expect("init"));
    let header_len = u64::from_le_bytes(good[..8].try_into().expect("8 bytes")) as usize;
    let header = std::str::from_utf8(&good[8..8 + header_len]).expect("JSON header").to_string();
    let data = &good[8 + header_len..];
    let with_length = |length: u64| {
        let mut bytes = good.clone();
        bytes[..8].copy_from_slice(&length.to_le_bytes());
        bytes
    };
    let conv1 = header.find("\"conv1.weight\"").expect("conv1.weight in the header");
    let shape_at = conv1 + header[conv1..].find("[2,1,3,3]").expect("conv1's shape");
    let lie = |with: &str| format!("{}{with}{}", &header[..shape_at], &header[shape_at + "[2,1,3,3]".len()..]);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "too short for the 8-byte header length"),
        ("seven bytes", good[..7].to_vec(), "too short"),
        ("a header of 2^64 - 1 bytes", with_length(u64::MAX), "accepted: at most 100000000"),
        ("a header just past the bound", with_length(MAX_SAFETENSORS_HEADER_BYTES + 1), "accepted: at most"),
        ("a header past the end", with_length(good.len() as u64), "(truncated?)"),
        ("a shorter header", with_length(header_len as u64 - 1), "not a valid safetensors file"),
        // 10^18 values claimed for 72 bytes; 2^40 x 2^40 overflows usize.
        ("a huge shape", file(&lie("[1000000000,1000000000,1,1]"), data), "not a valid safetensors file"),
        ("an overflowing shape", file(&lie("[1099511627776,1099511627776,1,1]"), data), "not a valid safetensors file"),
        ("a shape of the wrong size", file(&lie("[2,1,3,2]"), data), "not a valid safetensors file"),
        ("the data cut short", good[..good.len() - 4].to_vec(), "not a valid safetensors file"),
        ("offsets past the end", file(&header.replacen("[0,", "[900000000,", 1), data), "not a valid safetensors file"),
        (
            "a megabyte of data for a tiny model",
            file(r#"{"x":{"dtype":"U8","shape":[1000000],"data_offsets":[0,1000000]}}"#, &vec![0; 1_000_000]),
            "more than this architecture's 8 tensors take as f64",
        ),
        (
            "ten thousand unexpected names",
            file(
                &format!(
                    "{{{}}}",
                    (0..10_000)
                        .map(|i| format!(r#""t{i:05}":{{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}"#))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                &[],
            ),
            "unexpected: [t00000, t00001,",
        ),
    ];
    for (what, bytes, expected) in cases {
        let err = Weights::from_safetensors_bytes(&bytes, "lying.safetensors", &arch).expect_err(what);
        let message = err.to_string();
        assert!(matches!(err, ModelError::Weights { .. }), "{what}: {err:?}");
        assert!(message.starts_with("weights `lying.safetensors`: "), "{what}: {message}");
        assert!(message.contains(expected), "{what}: {message}");
        assert!(message.len() < 4000, "{what}: a message of {} bytes", message.len());
    }
}

#[test]
fn a_file_longer_than_any_file_of_the_architecture_is_refused_before_it_is_read() {
    let arch = arch();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("huge.safetensors");
    let limit = max_safetensors_bytes(&arch);
    // 8 + 10^8 + 8 · (51 + 4 values + 1 counter) bytes.
    assert_eq!(limit, 8 + MAX_SAFETENSORS_HEADER_BYTES + 8 * (51 + 4 + 1));
    // A sparse file: nothing is written, and nothing may be read.
    std::fs::File::create(&path).and_then(|f| f.set_len(limit + 1)).expect("sparse file");
    let err = Weights::load_safetensors(&path, &arch).expect_err("too long").to_string();
    assert!(
        err.starts_with(&format!("weights `{}`: {} bytes, more than any weights file", path.display(), limit + 1)),
        "{err}"
    );
    let missing = dir.path().join("missing.safetensors");
    let err = Weights::load_safetensors(&missing, &arch).expect_err("missing");
    assert!(matches!(err, ModelError::Weights { .. }) && err.to_string().contains("missing.safetensors"), "{err:?}");
}

#[test]
fn pytorch_counters_are_accepted_and_other_extras_refused() {
    let arch = arch();
    let mut weights = init_weights(&arch, 4).expect("init");
    weights.insert("bn1.num_batches_tracked", Tensor::new(7i64, &Device::Cpu).expect("scalar"));
    let loaded = Weights::from_safetensors_bytes(&bytes_of(&weights), "counter", &arch).expect("a counter is fine");
    assert_eq!(loaded.len(), 8);
    weights.insert("fc.num_batches_tracked", Tensor::new(7i64, &Device::Cpu).expect("scalar"));
    let err = Weights::from_safetensors_bytes(&bytes_of(&weights), "extra", &arch).expect_err("fc has no counter");
    assert!(err.to_string().contains("unexpected: [fc.num_batches_tracked]"), "{err}");
}
