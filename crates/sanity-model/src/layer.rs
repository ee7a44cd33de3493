//! Layer specifications as written in architecture TOML files, and parameter initialisers.

use serde::{Deserialize, Serialize};

/// A parameter initialiser. Fans follow PyTorch: conv `fan_in = in·kh·kw`,
/// `fan_out = out·kh·kw`; linear `fan_in = in`, `fan_out = out`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Init {
    /// Glorot/Xavier uniform, `U(±sqrt(6 / (fan_in + fan_out)))` (Keras' default kernel init).
    GlorotUniform {},
    /// Normal(0, std²) truncated at 2 std by resampling (TensorFlow's `truncated_normal`, the
    /// initialiser of Adebayo et al.'s code).
    TruncatedNormal {
        /// Standard deviation before truncation.
        std: f64,
    },
    /// PyTorch's default for `nn.Conv2d` / `nn.Linear` weights and biases:
    /// `U(±1/sqrt(fan_in))` (kaiming_uniform with a = sqrt(5)).
    PytorchDefault {},
    /// Every value equal to `value`.
    Constant {
        /// The value.
        value: f64,
    },
}

/// Default weight initialiser: [`Init::PytorchDefault`].
pub fn default_weight_init() -> Init {
    Init::PytorchDefault {}
}

/// Default bias initialiser: [`Init::PytorchDefault`].
pub fn default_bias_init() -> Init {
    Init::PytorchDefault {}
}

/// One layer of a sequential architecture, as written in TOML (`type = "conv2d"`, ...).
/// Parameterised layers must be named (the name prefixes their weights, `conv1.weight`);
/// the others are named `relu1`, `pool1`, ... in order when no name is given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum LayerSpec {
    /// 2-D convolution, stride 1, zero padding `padding` on each side.
    Conv2d {
        /// Stage name, e.g. `conv1`.
        name: String,
        /// Input channels.
        in_channels: usize,
        /// Output channels (filters).
        out_channels: usize,
        /// Square kernel side.
        kernel_size: usize,
        /// Zero padding per side (`kernel_size / 2` keeps the size: Keras' "same").
        #[serde(default)]
        padding: usize,
        /// Weight initialiser.
        #[serde(default = "default_weight_init")]
        weight_init: Init,
        /// Bias initialiser.
        #[serde(default = "default_bias_init")]
        bias_init: Init,
    },
    /// Fully connected layer `y = x Wᵀ + b`, `W` is `[out, in]` as in PyTorch.
    Linear {
        /// Stage name, e.g. `fc1`.
        name: String,
        /// Input features.
        in_features: usize,
        /// Output features.
        out_features: usize,
        /// Weight initialiser.
        #[serde(default = "default_weight_init")]
        weight_init: Init,
        /// Bias initialiser.
        #[serde(default = "default_bias_init")]
        bias_init: Init,
    },
    /// Rectified linear unit.
    Relu {
        /// Optional name.
        #[serde(default)]
        name: Option<String>,
    },
    /// Max pooling over square windows, no padding, floor mode (PyTorch and Keras "valid").
    MaxPool2d {
        /// Optional name.
        #[serde(default)]
        name: Option<String>,
        /// Window side.
        kernel_size: usize,
        /// Step; defaults to `kernel_size`.
        #[serde(default)]
        stride: Option<usize>,
    },
    /// Mean over the spatial dimensions, `[n, c, h, w] -> [n, c]`.
    GlobalAvgPool {
        /// Optional name.
        #[serde(default)]
        name: Option<String>,
    },
    /// `[n, c, h, w] -> [n, c·h·w]` in NCHW order (PyTorch's `flatten(1)`).
    Flatten {
        /// Optional name.
        #[serde(default)]
        name: Option<String>,
    },
    /// Batch normalisation over the channels of `[n, c, h, w]` (PyTorch's `BatchNorm2d`): in
    /// training, batch statistics (biased variance) and running averages updated with
    /// `momentum` (unbiased variance); in evaluation, the running statistics.
    /// Parameters `weight` (γ, init 1), `bias` (β, init 0); buffers `running_mean`,
    /// `running_var`.
    BatchNorm2d {
        /// Stage name, e.g. `bn1`.
        name: String,
        /// Channels.
        num_features: usize,
        /// Added to the variance. Default 1e-5 (PyTorch's).
        #[serde(default = "default_bn_eps")]
        eps: f64,
        /// Weight of the batch statistic in the running averages. Default 0.1 (PyTorch's).
        #[serde(default = "default_bn_momentum")]
        momentum: f64,
    },
    /// Inverted dropout with drop probability `p` in training; identity in evaluation.
    Dropout {
        /// Optional name.
        #[serde(default)]
        name: Option<String>,
        /// Drop probability in [0, 1).
        p: f64,
    },
}

/// 1e-5, PyTorch's `BatchNorm2d` default.
pub fn default_bn_eps() -> f64 {
    1e-5
}

/// 0.1, PyTorch's `BatchNorm2d` default.
pub fn default_bn_momentum() -> f64 {
    0.1
}
