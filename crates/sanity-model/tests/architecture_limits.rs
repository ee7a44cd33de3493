//! Architectures are bounded: a TOML file cannot ask for terabytes of weights or activations, a
//! million layers, overflowing sizes or NaN initialisers; the refusal names the layer (or the file)
//! and the limit. Errors about the file as a whole name the file, never as a layer.

use sanity_model::architecture::{MAX_ACTIVATION, MAX_ARCHITECTURE_FILE_BYTES, MAX_LAYERS, MAX_PARAMETERS, MAX_SIDE};
use sanity_model::{Architecture, ArchitectureSpec, LayerSpec, ModelError, PRESETS, preset};

/// `Architecture::new` on TOML `text`, the parse expected to succeed.
fn build(text: &str) -> Result<Architecture, ModelError> {
    Architecture::new(ArchitectureSpec::from_toml_str(text, "test.toml").expect("the TOML parses"))
}

/// The layer and reason of an `InvalidArchitecture` error.
fn layer_error(result: Result<Architecture, ModelError>) -> (String, String) {
    match result {
        Err(ModelError::InvalidArchitecture { layer, reason }) => (layer, reason),
        other => panic!("expected InvalidArchitecture, got {other:?}"),
    }
}

/// Flatten then one linear layer `in_features -> out_features` on `input`.
fn linear_toml(input: [usize; 3], in_features: usize, out_features: usize) -> String {
    format!(
        "input = {input:?}\n\
         [[layers]]\ntype = \"flatten\"\n\
         [[layers]]\ntype = \"linear\"\nname = \"fc1\"\nin_features = {in_features}\nout_features = {out_features}\n"
    )
}

/// `count` layers: flatten, a 4 -> 2 linear, then ReLUs, on a `[1, 2, 2]` input.
fn many_layers_toml(count: usize) -> String {
    let mut text = linear_toml([1, 2, 2], 4, 2);
    for _ in 2..count {
        text.push_str("[[layers]]\ntype = \"relu\"\n");
    }
    text
}

#[test]
fn a_linear_layer_of_1e8_outputs_is_refused_naming_the_layer_and_the_limit() {
    let (layer, reason) = layer_error(build(&linear_toml([1, 28, 28], 784, 100_000_000)));
    assert_eq!(layer, "fc1");
    assert!(
        reason.contains("out_features = 100000000") && reason.contains(&format!("1 to {MAX_ACTIVATION}")),
        "{reason}"
    );
}

#[test]
fn too_many_parameters_in_all_are_refused_at_the_layer_that_crosses_the_limit() {
    // 50000 -> 50000: 2.5e9 weights, every size within its own range.
    let (layer, reason) = layer_error(build(&linear_toml([1, 200, 250], 50_000, 50_000)));
    assert_eq!(layer, "fc1");
    assert!(reason.contains(&format!("accepted: at most {MAX_PARAMETERS} in all")), "{reason}");
    // Two layers of 2^27.5 each: the second crosses the limit.
    let text = format!(
        "{}[[layers]]\ntype = \"linear\"\nname = \"fc2\"\nin_features = 12000\nout_features = 12000\n",
        linear_toml([1, 100, 120], 12_000, 12_000)
    );
    let (layer, reason) = layer_error(build(&text));
    assert_eq!(layer, "fc2", "{reason}");
}

#[test]
fn an_activation_past_the_limit_is_refused_naming_the_layer() {
    // 65536 channels of 64x64: 2^28 values per image.
    let text = "input = [1, 64, 64]\n[[layers]]\ntype = \"conv2d\"\nname = \"wide\"\nin_channels = 1\n\
                out_channels = 65536\nkernel_size = 1\n[[layers]]\ntype = \"global_avg_pool\"\n";
    let (layer, reason) = layer_error(build(text));
    assert_eq!(layer, "wide");
    assert!(reason.contains("268435456 values per image") && reason.contains(&MAX_ACTIVATION.to_string()), "{reason}");
}

#[test]
fn sizes_out_of_range_are_refused_before_any_arithmetic() {
    let conv = |field: &str, value: u64| {
        let mut fields = [("in_channels", 1u64), ("out_channels", 2), ("kernel_size", 3), ("padding", 1)];
        fields.iter_mut().filter(|(k, _)| *k == field).for_each(|(_, v)| *v = value);
        let body: String = fields.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
        format!(
            "input = [1, 8, 8]\n[[layers]]\ntype = \"conv2d\"\nname = \"c\"\n{body}\
             [[layers]]\ntype = \"global_avg_pool\"\n"
        )
    };
    // A padding of 2^62 would overflow `h + 2 * padding`.
    for (field, value) in [("padding", 1u64 << 62), ("kernel_size", 0), ("kernel_size", 1 << 40), ("out_channels", 0)] {
        let (layer, reason) = layer_error(build(&conv(field, value)));
        assert_eq!(layer, "c");
        assert!(reason.contains(&format!("{field} = {value}; accepted:")), "{reason}");
    }
    let pool = "input = [1, 8, 8]\n[[layers]]\ntype = \"max_pool2d\"\nkernel_size = 2\nstride = 0\n\
                [[layers]]\ntype = \"flatten\"\n";
    let (layer, reason) = layer_error(build(pool));
    assert_eq!(layer, "pool1");
    assert!(reason.contains(&format!("stride = 0; accepted: 1 to {MAX_SIDE}")), "{reason}");
}

#[test]
fn an_input_shape_out_of_range_is_refused_naming_the_file() {
    for input in ["[1, 1000000, 1000000]", "[0, 28, 28]", "[3, 65536, 65536]"] {
        let text = format!("input = {input}\n[[layers]]\ntype = \"flatten\"\n");
        let err = ArchitectureSpec::from_toml_str(&text, "big.toml").expect_err("refused");
        assert!(matches!(err, ModelError::ArchitectureFile { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.starts_with("architecture file `big.toml`: input = "), "{message}");
        assert!(message.contains("accepted:"), "{message}");
    }
}

#[test]
fn non_finite_initialisers_are_refused_naming_the_layer() {
    for (init, shown) in [
        ("{ kind = \"constant\", value = nan }", "constant value = NaN"),
        ("{ kind = \"constant\", value = 1e39 }", "constant value = 1000000000000000000000000000000000000000"),
        ("{ kind = \"truncated_normal\", std = inf }", "truncated_normal std = inf"),
        ("{ kind = \"truncated_normal\", std = 0.0 }", "truncated_normal std = 0"),
    ] {
        let text = format!(
            "input = [1, 2, 2]\n[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"linear\"\nname = \"fc1\"\n\
             in_features = 4\nout_features = 2\nbias_init = {init}\n"
        );
        let (layer, reason) = layer_error(build(&text));
        assert_eq!(layer, "fc1");
        assert!(reason.starts_with(&format!("bias_init {shown}; accepted:")), "{reason}");
    }
    let bn = "input = [1, 4, 4]\n[[layers]]\ntype = \"batch_norm2d\"\nname = \"bn1\"\nnum_features = 1\n\
              eps = 1e-50\n[[layers]]\ntype = \"global_avg_pool\"\n";
    let (layer, reason) = layer_error(build(bn));
    assert_eq!(layer, "bn1");
    assert!(reason.contains("non-zero as f32"), "{reason}");
}

#[test]
fn two_thousand_layers_are_refused_naming_the_limit() {
    let text = many_layers_toml(2000);
    let err = ArchitectureSpec::from_toml_str(&text, "deep.toml").expect_err("too many layers").to_string();
    assert_eq!(err, format!("architecture file `deep.toml`: 2000 layers; accepted: at most {MAX_LAYERS}"));
    // The same spec given directly: refused before any layer is looked at.
    let layers = vec![LayerSpec::Relu { name: None }; 2000];
    let err = Architecture::new(ArchitectureSpec { input: [1, 2, 2], layers }).expect_err("too many layers");
    assert!(matches!(err, ModelError::InvalidArchitectureSpec { .. }), "{err:?}");
    assert_eq!(err.to_string(), format!("invalid architecture: 2000 layers; accepted: at most {MAX_LAYERS}"));
}

#[test]
fn the_layer_limit_itself_is_accepted_and_names_stay_unique() {
    let arch = build(&many_layers_toml(MAX_LAYERS)).expect("at the limit");
    assert_eq!(arch.layers.len(), MAX_LAYERS);
    assert_eq!(arch.layers[MAX_LAYERS - 1].name, format!("relu{}", MAX_LAYERS - 2));
    let twice = "input = [1, 2, 2]\n[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"relu\"\nname = \"flatten1\"\n";
    let (layer, reason) = layer_error(build(twice));
    assert_eq!(layer, "flatten1");
    assert!(reason.contains("used twice"), "{reason}");
    let empty = "input = [1, 2, 2]\n[[layers]]\ntype = \"flatten\"\nname = \"\"\n";
    let (_, reason) = layer_error(build(empty));
    assert!(reason.contains("an empty name"), "{reason}");
}

#[test]
fn file_level_errors_name_the_file_not_a_layer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("arch.toml");
    let shown = path.display().to_string();
    let too_large = format!("# {}\n", "x".repeat(MAX_ARCHITECTURE_FILE_BYTES));
    let cases: [(&[u8], &str); 6] = [
        (b"input = [1, 2", "TOML parse error"),
        (b"", "missing field `input`"),
        (b"input = [1, 28, 28]\nlayers = []\n", "no layers; accepted: 1 to 1000"),
        (b"input = [1, 28, 28]\nlayers = [{ type = \"conv9d\" }]\n", "unknown variant `conv9d`"),
        (b"input = [1, 28, 28]\n\xff\n", "not UTF-8 text (byte 20)"),
        (too_large.as_bytes(), "accepted: at most 1048576"),
    ];
    for (bytes, what) in cases {
        std::fs::write(&path, bytes).expect("write");
        let err = ArchitectureSpec::from_toml_file(&path).expect_err("refused");
        assert!(matches!(err, ModelError::ArchitectureFile { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.starts_with(&format!("architecture file `{shown}`: ")), "{message}");
        assert!(message.contains(what), "{what}: {message}");
        assert!(!message.contains("at layer"), "{message}");
    }
    // An empty spec built in code: no layer to name, no file either.
    let err = Architecture::new(ArchitectureSpec { input: [1, 2, 2], layers: vec![] }).expect_err("no layers");
    assert_eq!(
        err.to_string(),
        format!("invalid architecture: no layers; accepted: 1 to {MAX_LAYERS} [[layers]] tables")
    );
}

#[test]
fn presets_stay_within_the_limits_at_their_largest_inputs() {
    for (name, input) in [
        ("phantom-cnn", [1, 64, 64]),
        ("phantom-cnn", [1, 256, 256]),
        ("phantom-cnn", [3, 256, 256]),
        ("lesson-cnn", [1, 256, 256]),
        ("lesson-cnn", [3, 512, 512]),
        ("adebayo-cnn", [1, 28, 28]),
        ("adebayo-cnn", [3, 28, 28]),
        ("adebayo-mlp", [1, 28, 28]),
        ("adebayo-mlp", [1, 256, 256]),
    ] {
        assert!(PRESETS.contains(&name));
        let arch =
            Architecture::new(preset(name, input).expect("preset")).unwrap_or_else(|e| panic!("{name} {input:?}: {e}"));
        assert!(arch.parameter_count() <= MAX_PARAMETERS, "{name} {input:?}");
    }
    // adebayo-mlp's 784 -> 2500 -> 1500 -> 500 -> 10: weights, biases.
    let mlp = Architecture::new(preset("adebayo-mlp", [1, 28, 28]).expect("preset")).expect("valid");
    assert_eq!(mlp.parameter_count(), 784 * 2500 + 2500 + 2500 * 1500 + 1500 + 1500 * 500 + 500 + 500 * 10 + 10);
}
