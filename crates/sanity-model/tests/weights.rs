//! Weights as values: safetensors round trips with PyTorch names, refusal of mismatched files,
//! and re-initialisation that never touches its input.

use candle_core::{DType, Device, Tensor};
use sanity_data::stream_rng;
use sanity_model::{Architecture, Reinit, Weights, init_weights, preset, reinitialize};

fn arch() -> Architecture {
    Architecture::new(preset("adebayo-cnn", [1, 28, 28]).expect("preset")).expect("valid")
}

fn same(a: &Tensor, b: &Tensor) -> bool {
    a.flatten_all().and_then(|t| t.to_vec1::<f32>()).ok() == b.flatten_all().and_then(|t| t.to_vec1::<f32>()).ok()
}

#[test]
fn safetensors_round_trip_keeps_pytorch_names_shapes_and_values() {
    let arch = arch();
    let weights = init_weights(&arch, 3).expect("init");
    let names: Vec<&String> = weights.iter().map(|(k, _)| k).collect();
    assert_eq!(
        names,
        [
            "conv1.bias",
            "conv1.weight",
            "conv2.bias",
            "conv2.weight",
            "fc1.bias",
            "fc1.weight",
            "logits.bias",
            "logits.weight"
        ]
    );
    assert_eq!(weights.get("conv2.weight").expect("conv2").dims(), [64, 32, 5, 5]);
    assert_eq!(weights.get("fc1.weight").expect("fc1").dims(), [1024, 3136]);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("m.safetensors");
    weights.save_safetensors(&path).expect("save");
    let loaded = Weights::load_safetensors(&path, &arch).expect("load");
    for (name, tensor) in weights.iter() {
        assert!(same(tensor, loaded.get(name).expect("present")), "{name} changed in the round trip");
    }
}

#[test]
fn a_file_for_another_architecture_is_refused_with_the_expected_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("other.safetensors");
    let mlp = Architecture::new(preset("adebayo-mlp", [1, 28, 28]).expect("preset")).expect("valid");
    init_weights(&mlp, 1).expect("init").save_safetensors(&path).expect("save");
    let err = Weights::load_safetensors(&path, &arch()).expect_err("names differ").to_string();
    assert!(
        err.contains("missing: [conv1.bias")
            && err.contains("unexpected: [hidden1.bias")
            && err.contains("conv1.weight [32, 1, 5, 5]"),
        "{err}"
    );

    let mut wrong_shape = init_weights(&arch(), 1).expect("init");
    wrong_shape.insert("fc1.bias", Tensor::zeros(1000, DType::F32, &Device::Cpu).expect("zeros"));
    wrong_shape.save_safetensors(&path).expect("save");
    let err = Weights::load_safetensors(&path, &arch()).expect_err("shape differs").to_string();
    assert!(err.contains("`fc1.bias` has shape [1000], expected [1024]"), "{err}");
}

#[test]
fn reinitialize_returns_new_weights_and_leaves_its_input_alone() {
    let arch = arch();
    let trained = init_weights(&arch, 5).expect("init");
    let snapshot = trained.clone();
    for reinit in
        [Reinit::Original {}, Reinit::TruncatedNormal { std: 0.05 }, Reinit::PytorchDefault {}, Reinit::Permute {}]
    {
        let out = reinitialize(&trained, &arch, "conv2", &reinit, &mut stream_rng(1, "t", 0)).expect("reinit");
        assert!(!same(out.get("conv2.weight").expect("w"), trained.get("conv2.weight").expect("w")), "{reinit:?}");
        for name in ["conv1.weight", "fc1.weight", "logits.bias"] {
            assert!(same(out.get(name).expect("w"), trained.get(name).expect("w")), "{reinit:?} touched {name}");
        }
        let again = reinitialize(&trained, &arch, "conv2", &reinit, &mut stream_rng(1, "t", 0)).expect("reinit");
        assert!(
            same(out.get("conv2.weight").expect("w"), again.get("conv2.weight").expect("w")),
            "{reinit:?} is not seeded"
        );
    }
    for (name, tensor) in trained.iter() {
        assert!(same(tensor, snapshot.get(name).expect("present")), "the input weights changed: {name}");
    }
    let err = reinitialize(&trained, &arch, "relu1", &Reinit::Original {}, &mut stream_rng(1, "t", 0))
        .expect_err("no params");
    assert!(err.to_string().contains("conv1`, `conv2`, `fc1`, `logits"), "{err}");
}

#[test]
fn permute_keeps_the_multiset_of_values() {
    let arch = arch();
    let trained = init_weights(&arch, 5).expect("init");
    let out =
        reinitialize(&trained, &arch, "logits", &Reinit::Permute {}, &mut stream_rng(2, "t", 0)).expect("permute");
    let sorted = |t: &Tensor| {
        let mut v = t.flatten_all().expect("flat").to_vec1::<f32>().expect("f32");
        v.sort_by(f32::total_cmp);
        v
    };
    assert_eq!(sorted(out.get("logits.weight").expect("w")), sorted(trained.get("logits.weight").expect("w")));
}

#[test]
fn integer_tensors_and_damaged_files_are_refused_without_panicking() {
    let small = Architecture::new(preset("phantom-cnn", [1, 16, 16]).expect("preset")).expect("valid");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("m.safetensors");
    init_weights(&small, 2).expect("init").save_safetensors(&path).expect("save");
    let good = std::fs::read(&path).expect("read");
    // The same file with its first tensor declared as I32 (4 bytes per value, so the offsets stay valid).
    let header_len = u64::from_le_bytes(good[..8].try_into().expect("8 bytes")) as usize;
    let header = String::from_utf8(good[8..8 + header_len].to_vec()).expect("JSON header");
    let as_int = header.replacen("\"F32\"", "\"I32\"", 1);
    let mut int_file = good[..8].to_vec();
    int_file.extend_from_slice(as_int.as_bytes());
    int_file.extend_from_slice(&good[8 + header_len..]);
    std::fs::write(&path, &int_file).expect("write");
    let err = Weights::load_safetensors(&path, &small).expect_err("an integer tensor").to_string();
    assert!(err.contains("dtype") && err.contains("expected a float type"), "{err}");
    // Cut at 97 places, a header length past the end, a header that is not JSON, offsets past
    // the end: each an error that names the file.
    let mut damaged: Vec<Vec<u8>> = (0..97).map(|k| good[..k * good.len() / 97].to_vec()).collect();
    let mut long_header = good.clone();
    long_header[..8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    damaged.push(long_header);
    let mut not_json = good.clone();
    not_json[8] = b'x';
    damaged.push(not_json);
    let far = header.replacen("\"data_offsets\":[0,", "\"data_offsets\":[900000000,", 1);
    if far != header {
        let mut far_file = ((far.len()) as u64).to_le_bytes().to_vec();
        far_file.extend_from_slice(far.as_bytes());
        far_file.extend_from_slice(&good[8 + header_len..]);
        damaged.push(far_file);
    }
    for (k, bytes) in damaged.iter().enumerate() {
        std::fs::write(&path, bytes).expect("write");
        let err = Weights::load_safetensors(&path, &small).expect_err("damaged").to_string();
        assert!(err.contains(&path.display().to_string()), "case {k}: {err}");
    }
}
