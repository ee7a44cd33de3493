//! A checked sequential architecture: named layers with known output shapes.

use crate::error::{ModelError, Result};
use crate::layer::{Init, LayerSpec};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// An architecture as written in TOML: the input shape and the layers in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchitectureSpec {
    /// `[c, h, w]` of one input image.
    pub input: [usize; 3],
    /// The layers, first to last.
    pub layers: Vec<LayerSpec>,
}

impl ArchitectureSpec {
    /// Reads an architecture TOML file.
    pub fn from_toml_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ModelError::Io { path: path.display().to_string(), source })?;
        toml::from_str(&text)
            .map_err(|e| ModelError::InvalidArchitecture { layer: path.display().to_string(), reason: e.to_string() })
    }
}

/// The operation of a resolved layer.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// See [`LayerSpec::Conv2d`].
    Conv2d {
        /// Input channels.
        in_channels: usize,
        /// Output channels.
        out_channels: usize,
        /// Square kernel side.
        kernel_size: usize,
        /// Zero padding per side.
        padding: usize,
        /// Weight initialiser.
        weight_init: Init,
        /// Bias initialiser.
        bias_init: Init,
    },
    /// See [`LayerSpec::Linear`].
    Linear {
        /// Input features.
        in_features: usize,
        /// Output features.
        out_features: usize,
        /// Weight initialiser.
        weight_init: Init,
        /// Bias initialiser.
        bias_init: Init,
    },
    /// Rectified linear unit.
    Relu,
    /// Max pooling, see [`crate::ops::pool`].
    MaxPool2d {
        /// Window side.
        kernel_size: usize,
        /// Step.
        stride: usize,
    },
    /// Spatial mean, `[n, c, h, w] -> [n, c]`.
    GlobalAvgPool,
    /// NCHW flatten.
    Flatten,
    /// Inverted dropout.
    Dropout {
        /// Drop probability.
        p: f64,
    },
    /// See [`LayerSpec::BatchNorm2d`].
    BatchNorm2d {
        /// Channels.
        num_features: usize,
        /// Added to the variance.
        eps: f64,
        /// Running-average weight of the batch statistics.
        momentum: f64,
        /// γ's initialiser (constant 1).
        weight_init: Init,
        /// β's initialiser (constant 0).
        bias_init: Init,
    },
}

impl Op {
    /// `(weight shape, bias shape, fan_in, fan_out)` of a parameterised op, PyTorch layouts.
    pub fn parameter_shapes(&self) -> Option<(Vec<usize>, Vec<usize>, usize, usize)> {
        match *self {
            Op::Conv2d { in_channels, out_channels, kernel_size: k, .. } => Some((
                vec![out_channels, in_channels, k, k],
                vec![out_channels],
                in_channels * k * k,
                out_channels * k * k,
            )),
            Op::Linear { in_features, out_features, .. } => {
                Some((vec![out_features, in_features], vec![out_features], in_features, out_features))
            }
            Op::BatchNorm2d { num_features: c, .. } => Some((vec![c], vec![c], c, c)),
            _ => None,
        }
    }

    /// The non-trained tensors of an op (`running_mean`, `running_var` of a batch norm) and the
    /// value each starts at; their shape is the bias's.
    pub fn buffers(&self) -> &'static [(&'static str, f32)] {
        match self {
            Op::BatchNorm2d { .. } => &[("running_mean", 0.0), ("running_var", 1.0)],
            _ => &[],
        }
    }

    /// The weight and bias initialisers of a parameterised op.
    pub fn initializers(&self) -> Option<(&Init, &Init)> {
        match self {
            Op::Conv2d { weight_init, bias_init, .. }
            | Op::Linear { weight_init, bias_init, .. }
            | Op::BatchNorm2d { weight_init, bias_init, .. } => Some((weight_init, bias_init)),
            _ => None,
        }
    }
}

/// A named layer.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    /// Unique name (`conv1`, `relu1`, ...).
    pub name: String,
    /// What it computes.
    pub op: Op,
}

/// A checked architecture: unique names, consistent shapes.
#[derive(Debug, Clone, PartialEq)]
pub struct Architecture {
    /// The spec it was built from (saved beside results).
    pub spec: ArchitectureSpec,
    /// The layers in order.
    pub layers: Vec<Layer>,
    /// Output shape of each layer without the batch dimension.
    pub shapes: Vec<Vec<usize>>,
}

impl Architecture {
    /// Resolves names and checks every layer's input shape.
    pub fn new(spec: ArchitectureSpec) -> Result<Self> {
        let mut layers = Vec::with_capacity(spec.layers.len());
        let mut shapes = Vec::with_capacity(spec.layers.len());
        let mut shape: Vec<usize> = spec.input.to_vec();
        let mut counters = std::collections::BTreeMap::<&str, usize>::new();
        let mut auto_name = |kind: &'static str, name: &Option<String>| {
            let k = counters.entry(kind).or_insert(0);
            *k += 1;
            name.clone().unwrap_or_else(|| format!("{kind}{k}"))
        };
        for layer_spec in &spec.layers {
            let (name, op) = match layer_spec {
                LayerSpec::Conv2d { name, in_channels, out_channels, kernel_size, padding, weight_init, bias_init } => {
                    (
                        name.clone(),
                        Op::Conv2d {
                            in_channels: *in_channels,
                            out_channels: *out_channels,
                            kernel_size: *kernel_size,
                            padding: *padding,
                            weight_init: weight_init.clone(),
                            bias_init: bias_init.clone(),
                        },
                    )
                }
                LayerSpec::Linear { name, in_features, out_features, weight_init, bias_init } => (
                    name.clone(),
                    Op::Linear {
                        in_features: *in_features,
                        out_features: *out_features,
                        weight_init: weight_init.clone(),
                        bias_init: bias_init.clone(),
                    },
                ),
                LayerSpec::Relu { name } => (auto_name("relu", name), Op::Relu),
                LayerSpec::MaxPool2d { name, kernel_size, stride } => (
                    auto_name("pool", name),
                    Op::MaxPool2d { kernel_size: *kernel_size, stride: stride.unwrap_or(*kernel_size) },
                ),
                LayerSpec::GlobalAvgPool { name } => (auto_name("gap", name), Op::GlobalAvgPool),
                LayerSpec::Flatten { name } => (auto_name("flatten", name), Op::Flatten),
                LayerSpec::Dropout { name, p } => (auto_name("dropout", name), Op::Dropout { p: *p }),
                LayerSpec::BatchNorm2d { name, num_features, eps, momentum } => (
                    name.clone(),
                    Op::BatchNorm2d {
                        num_features: *num_features,
                        eps: *eps,
                        momentum: *momentum,
                        weight_init: Init::Constant { value: 1.0 },
                        bias_init: Init::Constant { value: 0.0 },
                    },
                ),
            };
            if layers.iter().any(|l: &Layer| l.name == name) {
                return Err(invalid(&name, "the name is used twice; layer names must be unique".into()));
            }
            shape = output_shape(&name, &op, &shape)?;
            shapes.push(shape.clone());
            layers.push(Layer { name, op });
        }
        if layers.is_empty() {
            return Err(invalid("(none)", "an architecture needs at least one layer".into()));
        }
        if shape.len() != 1 {
            let last = &layers[layers.len() - 1].name;
            return Err(invalid(last, format!("the output must be [n, classes], got [n, {}]", join(&shape))));
        }
        Ok(Self { spec, layers, shapes })
    }

    /// Index of the layer called exactly `name`.
    pub fn index_of(&self, name: &str) -> Result<usize> {
        self.layers.iter().position(|l| l.name == name).ok_or_else(|| ModelError::UnknownLayer {
            name: name.to_string(),
            available: self.layers.iter().map(|l| l.name.as_str()).collect::<Vec<_>>().join(", "),
        })
    }

    /// Names of the parameterised layers (the stages randomisation speaks of), input to output.
    pub fn stages(&self) -> Vec<&str> {
        self.layers.iter().filter(|l| l.op.parameter_shapes().is_some()).map(|l| l.name.as_str()).collect()
    }

    /// Index of the parameterised layer called exactly `name`; a parameter-free layer is refused.
    pub fn stage_index(&self, name: &str) -> Result<usize> {
        let index = self.index_of(name)?;
        if self.layers[index].op.parameter_shapes().is_none() {
            return Err(ModelError::UnknownLayer {
                name: format!("{name}` has no parameters; a stage must be one of `{}", self.stages().join("`, `")),
                available: self.stages().join(", "),
            });
        }
        Ok(index)
    }

    /// Number of model outputs (1 for a single-logit binary model).
    pub fn num_outputs(&self) -> usize {
        self.shapes[self.shapes.len() - 1][0]
    }

    /// Name of the last conv layer (GradCAM's default), if any.
    pub fn last_conv(&self) -> Option<&str> {
        self.layers.iter().rev().find(|l| matches!(l.op, Op::Conv2d { .. })).map(|l| l.name.as_str())
    }
}

fn invalid(layer: &str, reason: String) -> ModelError {
    ModelError::InvalidArchitecture { layer: layer.to_string(), reason }
}

fn join(shape: &[usize]) -> String {
    shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
}

fn output_shape(name: &str, op: &Op, input: &[usize]) -> Result<Vec<usize>> {
    let need_4d = |what: &str| invalid(name, format!("{what} needs an [n, c, h, w] input, got [n, {}]", join(input)));
    match *op {
        Op::Conv2d { in_channels, out_channels, kernel_size, padding, .. } => {
            let &[c, h, w] = input else {
                return Err(need_4d("conv2d"));
            };
            if c != in_channels {
                return Err(invalid(name, format!("in_channels = {in_channels} but its input has {c} channels")));
            }
            if kernel_size == 0 || out_channels == 0 {
                return Err(invalid(name, "kernel_size and out_channels must be >= 1".into()));
            }
            let (hp, wp) = (h + 2 * padding, w + 2 * padding);
            if hp < kernel_size || wp < kernel_size {
                return Err(invalid(name, format!("kernel {kernel_size} is larger than its padded input {hp}x{wp}")));
            }
            Ok(vec![out_channels, hp - kernel_size + 1, wp - kernel_size + 1])
        }
        Op::Linear { in_features, out_features, .. } => {
            let &[f] = input else {
                return Err(invalid(
                    name,
                    format!(
                        "linear needs an [n, features] input, got [n, {}]; add a flatten or global_avg_pool",
                        join(input)
                    ),
                ));
            };
            if f != in_features {
                return Err(invalid(name, format!("in_features = {in_features} but its input has {f} features")));
            }
            Ok(vec![out_features])
        }
        Op::Relu => Ok(input.to_vec()),
        Op::MaxPool2d { kernel_size, stride } => {
            let &[c, h, w] = input else {
                return Err(need_4d("max_pool2d"));
            };
            if kernel_size == 0 || stride == 0 || h < kernel_size || w < kernel_size {
                return Err(invalid(
                    name,
                    format!("pool {kernel_size} (stride {stride}) does not fit its {h}x{w} input"),
                ));
            }
            Ok(vec![c, (h - kernel_size) / stride + 1, (w - kernel_size) / stride + 1])
        }
        Op::GlobalAvgPool => {
            let &[c, _, _] = input else {
                return Err(need_4d("global_avg_pool"));
            };
            Ok(vec![c])
        }
        Op::Flatten => Ok(vec![input.iter().product()]),
        Op::Dropout { p } => {
            if !(0.0..1.0).contains(&p) {
                return Err(invalid(name, format!("dropout p = {p}; accepted: 0 <= p < 1")));
            }
            Ok(input.to_vec())
        }
        Op::BatchNorm2d { num_features, eps, momentum, .. } => {
            let &[c, _, _] = input else {
                return Err(need_4d("batch_norm2d"));
            };
            if c != num_features {
                return Err(invalid(name, format!("num_features = {num_features} but its input has {c} channels")));
            }
            if !(eps > 0.0 && eps.is_finite() && (0.0..=1.0).contains(&momentum)) {
                return Err(invalid(
                    name,
                    format!("eps = {eps}, momentum = {momentum}; accepted: eps > 0, 0 <= momentum <= 1"),
                ));
            }
            Ok(input.to_vec())
        }
    }
}
