//! Named architectures (docs/models.md). Layer names are contract: they appear in weight
//! files, configs and CSV.

use crate::architecture::ArchitectureSpec;
use crate::error::{ModelError, Result};
use crate::layer::{Init, LayerSpec};

/// The preset names.
pub const PRESETS: &[&str] = &["phantom-cnn", "lesson-cnn", "adebayo-cnn", "adebayo-mlp"];

/// The preset `name` for images of shape `input` (`[c, h, w]`).
pub fn preset(name: &str, input: [usize; 3]) -> Result<ArchitectureSpec> {
    let layers = match name {
        "phantom-cnn" => phantom_cnn(input[0]),
        "lesson-cnn" => lesson_cnn(input[0]),
        "adebayo-cnn" => adebayo_cnn(input[0]),
        "adebayo-mlp" => adebayo_mlp(input.iter().product()),
        _ => {
            return Err(ModelError::UnknownPreset { name: name.to_string(), available: PRESETS.join(", ") });
        }
    };
    Ok(ArchitectureSpec { input, layers })
}

fn conv(name: &str, in_channels: usize, out_channels: usize, kernel_size: usize, init: (Init, Init)) -> LayerSpec {
    LayerSpec::Conv2d {
        name: name.into(),
        in_channels,
        out_channels,
        kernel_size,
        padding: kernel_size / 2,
        weight_init: init.0,
        bias_init: init.1,
    }
}

fn linear(name: &str, in_features: usize, out_features: usize, init: (Init, Init)) -> LayerSpec {
    LayerSpec::Linear { name: name.into(), in_features, out_features, weight_init: init.0, bias_init: init.1 }
}

fn relu() -> LayerSpec {
    LayerSpec::Relu { name: None }
}

fn pool() -> LayerSpec {
    LayerSpec::MaxPool2d { name: None, kernel_size: 2, stride: None }
}

/// Keras' defaults, as in the seed lesson: glorot_uniform kernels, zero biases.
fn keras() -> (Init, Init) {
    (Init::GlorotUniform {}, Init::Constant { value: 0.0 })
}

/// Adebayo et al.'s code: truncated normal std 0.1 weights, constant 0.1 biases.
fn adebayo() -> (Init, Init) {
    (Init::TruncatedNormal { std: 0.1 }, Init::Constant { value: 0.1 })
}

/// The seed lesson's chest X-ray CNN: conv1..conv7 (8, 8, 12, 12 filters 3x3; 20, 20 filters
/// 5x5; 50 filters 5x5; "same" padding; ReLU; max-pool 2 after conv1..conv6), global average
/// pool, dense1 (50->128) ReLU, dropout 0.6, dense2 (128->32) ReLU, logit (32->1).
/// Needs images of at least 64x64 (six poolings); the lesson used 256x256.
fn lesson_cnn(channels: usize) -> Vec<LayerSpec> {
    let convs = [
        ("conv1", 8, 3),
        ("conv2", 8, 3),
        ("conv3", 12, 3),
        ("conv4", 12, 3),
        ("conv5", 20, 5),
        ("conv6", 20, 5),
        ("conv7", 50, 5),
    ];
    let mut layers = Vec::new();
    let mut in_c = channels;
    for (i, (name, out_c, k)) in convs.into_iter().enumerate() {
        layers.push(conv(name, in_c, out_c, k, keras()));
        layers.push(relu());
        if i < 6 {
            layers.push(pool());
        }
        in_c = out_c;
    }
    layers.extend(head(50, 128, 0.6));
    layers
}

/// The lesson-cnn's shape scaled to 64x64 phantoms: conv1 (8, 3x3), conv2 (12, 3x3),
/// conv3 (20, 5x5), conv4 (50, 5x5), max-pool 2 after conv1..conv3 (conv4 sees 8x8 on a 64x64
/// input), global average pool, dense1 (50->64) ReLU, dropout 0.5, dense2 (64->32) ReLU,
/// logit (32->1). Keras initialisers as the lesson.
fn phantom_cnn(channels: usize) -> Vec<LayerSpec> {
    let mut layers = vec![
        conv("conv1", channels, 8, 3, keras()),
        relu(),
        pool(),
        conv("conv2", 8, 12, 3, keras()),
        relu(),
        pool(),
        conv("conv3", 12, 20, 5, keras()),
        relu(),
        pool(),
        conv("conv4", 20, 50, 5, keras()),
        relu(),
    ];
    layers.extend(head(50, 64, 0.5));
    layers
}

/// global average pool, dense1 ReLU, dropout, dense2 (->32) ReLU, logit (32->1).
fn head(features: usize, hidden: usize, dropout: f64) -> Vec<LayerSpec> {
    vec![
        LayerSpec::GlobalAvgPool { name: None },
        linear("dense1", features, hidden, keras()),
        relu(),
        LayerSpec::Dropout { name: None, p: dropout },
        linear("dense2", hidden, 32, keras()),
        relu(),
        linear("logit", 32, 1, keras()),
    ]
}

/// Adebayo et al. 2018's MNIST CNN: conv1 (32, 5x5, pad 2) ReLU max-pool 2, conv2 (64, 5x5,
/// pad 2) ReLU max-pool 2, flatten (NCHW), fc1 (3136->1024) ReLU, logits (1024->10).
fn adebayo_cnn(channels: usize) -> Vec<LayerSpec> {
    vec![
        conv("conv1", channels, 32, 5, adebayo()),
        relu(),
        pool(),
        conv("conv2", 32, 64, 5, adebayo()),
        relu(),
        pool(),
        LayerSpec::Flatten { name: None },
        linear("fc1", 3136, 1024, adebayo()),
        relu(),
        linear("logits", 1024, 10, adebayo()),
    ]
}

/// Adebayo et al. 2018's MLP: 784 -> hidden1 (2500) -> hidden2 (1500) -> hidden3 (500) ->
/// logits (10), ReLU between.
fn adebayo_mlp(features: usize) -> Vec<LayerSpec> {
    vec![
        LayerSpec::Flatten { name: None },
        linear("hidden1", features, 2500, adebayo()),
        relu(),
        linear("hidden2", 2500, 1500, adebayo()),
        relu(),
        linear("hidden3", 1500, 500, adebayo()),
        relu(),
        linear("logits", 500, 10, adebayo()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Architecture;

    #[test]
    fn presets_build_with_the_contract_names() {
        let a = Architecture::new(preset("adebayo-cnn", [1, 28, 28]).expect("preset")).expect("valid");
        assert_eq!(a.stages(), ["conv1", "conv2", "fc1", "logits"]);
        let l = Architecture::new(preset("lesson-cnn", [1, 256, 256]).expect("preset")).expect("valid");
        assert_eq!(l.stages().len(), 10);
        assert_eq!(l.shapes[l.index_of("conv7").expect("conv7")], vec![50, 4, 4]);
        let p = Architecture::new(preset("phantom-cnn", [1, 64, 64]).expect("preset")).expect("valid");
        assert_eq!(p.shapes[p.index_of("conv4").expect("conv4")], vec![50, 8, 8]);
        assert_eq!(p.last_conv(), Some("conv4"));
        assert_eq!(p.num_outputs(), 1);
        Architecture::new(preset("adebayo-mlp", [1, 28, 28]).expect("preset")).expect("valid");
    }

    #[test]
    fn a_wrong_size_names_the_layer() {
        let err = Architecture::new(preset("adebayo-cnn", [1, 32, 32]).expect("preset")).expect_err("3136 != 4096");
        assert!(err.to_string().contains("`fc1`"), "{err}");
        let err = preset("lesson", [1, 8, 8]).expect_err("unknown").to_string();
        assert!(err.contains("lesson-cnn"), "{err}");
    }
}
