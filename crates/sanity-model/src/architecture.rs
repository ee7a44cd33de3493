//! A checked sequential architecture: named layers with known output shapes, within named
//! limits ([`MAX_LAYERS`], [`MAX_PARAMETERS`], [`MAX_ACTIVATION`], [`MAX_SIDE`],
//! [`MAX_CHANNELS`], [`MAX_ARCHITECTURE_FILE_BYTES`]) so that no file can ask for terabytes.

use crate::error::{ModelError, Result};
use crate::layer::{Init, LayerSpec};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::io::Read;
use std::path::Path;

/// At most this many layers (ReLUs, pools and flattens count). The deepest preset has 27; a
/// VGG-19 written out layer by layer has about 45. Checked before anything else, so a file of a
/// million layers is refused at once.
pub const MAX_LAYERS: usize = 1000;

/// At most this many parameter and buffer values in all (weights, biases, batch-norm running
/// statistics): 2^28, 1 GiB as f32. The largest preset, adebayo-mlp on 28x28 images, has
/// about 6.5 million; a VGG-16 has 138 million.
pub const MAX_PARAMETERS: usize = 1 << 28;

/// At most this many values in the input image and in any one layer's output, per image:
/// 2^26, 256 MiB as f32. lesson-cnn's largest activation on 256x256 images is conv1's
/// 8x256x256 (2^19); a 3x4096x4096 image has 50 million.
pub const MAX_ACTIVATION: usize = 1 << 26;

/// Image height and width, kernel sides, padding and strides: at most 2^16.
pub const MAX_SIDE: usize = 1 << 16;

/// Channels (of the input, of a convolution's output, of a batch norm): at most 2^16.
pub const MAX_CHANNELS: usize = 1 << 16;

/// An architecture TOML is at most 1 MiB (1000 layers of about 1 KiB each).
pub const MAX_ARCHITECTURE_FILE_BYTES: usize = 1 << 20;

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
    /// Reads an architecture TOML file (at most [`MAX_ARCHITECTURE_FILE_BYTES`]). A file that
    /// cannot be used as a whole (too large, not UTF-8, not TOML of this schema, no layers,
    /// more than [`MAX_LAYERS`], an input shape out of range) is a
    /// [`ModelError::ArchitectureFile`] naming it; a file that cannot be opened or read, a
    /// [`ModelError::Io`]. The layers themselves are checked by [`Architecture::new`].
    pub fn from_toml_file(path: &Path) -> Result<Self> {
        let shown = path.display().to_string();
        let io = |source| ModelError::Io { path: shown.clone(), source };
        let file = std::fs::File::open(path).map_err(io)?;
        let mut bytes = Vec::new();
        // One byte more than accepted, to tell a file at the limit from a longer one.
        file.take(MAX_ARCHITECTURE_FILE_BYTES as u64 + 1).read_to_end(&mut bytes).map_err(io)?;
        if bytes.len() > MAX_ARCHITECTURE_FILE_BYTES {
            return Err(too_large(&shown));
        }
        let text = String::from_utf8(bytes).map_err(|e| ModelError::ArchitectureFile {
            path: shown.clone(),
            reason: format!("not UTF-8 text (byte {}); accepted: a UTF-8 TOML file", e.utf8_error().valid_up_to()),
        })?;
        Self::from_toml_str(&text, &shown)
    }

    /// Parses architecture TOML `text`; `source` names it in errors (the file name). Refuses
    /// what [`ArchitectureSpec::from_toml_file`] refuses as a whole, with a
    /// [`ModelError::ArchitectureFile`] naming `source`.
    pub fn from_toml_str(text: &str, source: &str) -> Result<Self> {
        let file_error = |reason: String| ModelError::ArchitectureFile { path: source.to_string(), reason };
        if text.len() > MAX_ARCHITECTURE_FILE_BYTES {
            return Err(too_large(source));
        }
        let spec: Self = toml::from_str(text).map_err(|e| file_error(e.to_string().trim_end().to_string()))?;
        spec.check_whole().map_err(file_error)?;
        Ok(spec)
    }

    /// The checks of the architecture as a whole: its input shape and its number of layers.
    fn check_whole(&self) -> std::result::Result<(), String> {
        let [c, h, w] = self.input;
        if !(1..=MAX_CHANNELS).contains(&c) || !(1..=MAX_SIDE).contains(&h) || !(1..=MAX_SIDE).contains(&w) {
            return Err(format!(
                "input = [{c}, {h}, {w}]; accepted: [c, h, w] with 1 <= c <= {MAX_CHANNELS}, 1 <= h, w <= {MAX_SIDE}"
            ));
        }
        let values = c * h * w; // at most 2^48: no overflow
        if values > MAX_ACTIVATION {
            return Err(format!(
                "input = [{c}, {h}, {w}] has {values} values; accepted: at most {MAX_ACTIVATION} (c·h·w)"
            ));
        }
        if self.layers.is_empty() {
            return Err(format!("no layers; accepted: 1 to {MAX_LAYERS} [[layers]] tables"));
        }
        if self.layers.len() > MAX_LAYERS {
            return Err(format!("{} layers; accepted: at most {MAX_LAYERS}", self.layers.len()));
        }
        Ok(())
    }
}

fn too_large(source: &str) -> ModelError {
    ModelError::ArchitectureFile {
        path: source.to_string(),
        reason: format!(
            "larger than {MAX_ARCHITECTURE_FILE_BYTES} bytes; accepted: at most {MAX_ARCHITECTURE_FILE_BYTES}"
        ),
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
    /// Resolves names and checks every layer: unique non-empty names, values in range
    /// ([`MAX_SIDE`], [`MAX_CHANNELS`], [`MAX_ACTIVATION`]), finite initialisers, consistent
    /// shapes, every output within [`MAX_ACTIVATION`] values and all parameters within
    /// [`MAX_PARAMETERS`]. A problem of the whole (input shape, no layers, more than
    /// [`MAX_LAYERS`]) is a [`ModelError::InvalidArchitectureSpec`]; a layer's, a
    /// [`ModelError::InvalidArchitecture`] naming it. Linear in the number of layers.
    pub fn new(spec: ArchitectureSpec) -> Result<Self> {
        spec.check_whole().map_err(|reason| ModelError::InvalidArchitectureSpec { reason })?;
        let mut layers = Vec::with_capacity(spec.layers.len());
        let mut shapes = Vec::with_capacity(spec.layers.len());
        let mut names = HashSet::with_capacity(spec.layers.len());
        let mut shape: Vec<usize> = spec.input.to_vec();
        let mut parameters = 0usize;
        let mut counters = std::collections::BTreeMap::<&'static str, usize>::new();
        for layer_spec in &spec.layers {
            let (name, op) = named_op(layer_spec, &mut counters);
            if name.is_empty() {
                return Err(invalid(
                    &name,
                    "an empty name; accepted: a non-empty name (it prefixes the weights)".into(),
                ));
            }
            if !names.insert(name.clone()) {
                return Err(invalid(&name, "the name is used twice; layer names must be unique".into()));
            }
            check_ranges(&name, &op)?;
            shape = output_shape(&name, &op, &shape)?;
            let values = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
            if values.is_none_or(|v| v > MAX_ACTIVATION) {
                return Err(invalid(
                    &name,
                    format!(
                        "its output [n, {}] has {} values per image; accepted: at most {MAX_ACTIVATION}",
                        join(&shape),
                        values.map_or_else(|| "more than 2^64".to_string(), |v| v.to_string())
                    ),
                ));
            }
            let own = parameter_values(&op);
            match own.and_then(|own| parameters.checked_add(own)) {
                Some(total) if total <= MAX_PARAMETERS => parameters = total,
                _ => {
                    return Err(invalid(
                        &name,
                        format!(
                            "{} parameter values here, more than {MAX_PARAMETERS} in all up to this layer; \
                             accepted: at most {MAX_PARAMETERS} in all (1 GiB as f32)",
                            own.map_or_else(|| "more than 2^64".to_string(), |v| v.to_string())
                        ),
                    ));
                }
            }
            shapes.push(shape.clone());
            layers.push(Layer { name, op });
        }
        if shape.len() != 1 {
            // check_whole refused an empty list.
            let last = &layers[layers.len() - 1].name;
            return Err(invalid(last, format!("the output must be [n, classes], got [n, {}]", join(&shape))));
        }
        Ok(Self { spec, layers, shapes })
    }

    /// Number of parameter and buffer values in all (at most [`MAX_PARAMETERS`]).
    pub fn parameter_count(&self) -> usize {
        self.layers.iter().filter_map(|l| parameter_values(&l.op)).sum()
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

/// Parameter and buffer values of an op (weights, biases, running statistics); `None` past
/// `usize`.
fn parameter_values(op: &Op) -> Option<usize> {
    match *op {
        Op::Conv2d { in_channels, out_channels, kernel_size: k, .. } => {
            out_channels.checked_mul(in_channels)?.checked_mul(k)?.checked_mul(k)?.checked_add(out_channels)
        }
        Op::Linear { in_features, out_features, .. } => {
            out_features.checked_mul(in_features)?.checked_add(out_features)
        }
        // weight, bias, running_mean, running_var
        Op::BatchNorm2d { num_features, .. } => num_features.checked_mul(4),
        _ => Some(0),
    }
}

/// Every size of `op` within its limit and every initialiser finite as f32.
fn check_ranges(name: &str, op: &Op) -> Result<()> {
    let within = |what: &str, value: usize, low: usize, high: usize| {
        if (low..=high).contains(&value) {
            Ok(())
        } else {
            Err(invalid(name, format!("{what} = {value}; accepted: {low} to {high}")))
        }
    };
    match *op {
        Op::Conv2d { in_channels, out_channels, kernel_size, padding, .. } => {
            within("in_channels", in_channels, 1, MAX_CHANNELS)?;
            within("out_channels", out_channels, 1, MAX_CHANNELS)?;
            within("kernel_size", kernel_size, 1, MAX_SIDE)?;
            within("padding", padding, 0, MAX_SIDE)?;
        }
        Op::Linear { in_features, out_features, .. } => {
            within("in_features", in_features, 1, MAX_ACTIVATION)?;
            within("out_features", out_features, 1, MAX_ACTIVATION)?;
        }
        Op::MaxPool2d { kernel_size, stride } => {
            within("kernel_size", kernel_size, 1, MAX_SIDE)?;
            within("stride", stride, 1, MAX_SIDE)?;
        }
        Op::BatchNorm2d { num_features, .. } => within("num_features", num_features, 1, MAX_CHANNELS)?,
        Op::Relu | Op::GlobalAvgPool | Op::Flatten | Op::Dropout { .. } => {}
    }
    if let Some((weight_init, bias_init)) = op.initializers() {
        check_init(name, "weight_init", weight_init)?;
        check_init(name, "bias_init", bias_init)?;
    }
    Ok(())
}

/// An initialiser whose values are finite as f32: a constant within f32's range, a truncated
/// normal's std > 0 with its 2·std truncation bound within it.
fn check_init(name: &str, which: &str, init: &Init) -> Result<()> {
    match *init {
        Init::Constant { value } if !(value as f32).is_finite() => Err(invalid(
            name,
            format!("{which} constant value = {value}; accepted: a finite value, at most {:e} in magnitude", f32::MAX),
        )),
        Init::TruncatedNormal { std } if !(std > 0.0 && ((2.0 * std) as f32).is_finite()) => Err(invalid(
            name,
            format!("{which} truncated_normal std = {std}; accepted: a finite value > 0, at most {:e}", f32::MAX / 2.0),
        )),
        _ => Ok(()),
    }
}

/// The output shape of `op` on `input` (both without the batch dimension). Called after
/// [`check_ranges`] on an input within [`MAX_ACTIVATION`] values, so no sum or product here
/// can overflow.
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
            if h < kernel_size || w < kernel_size {
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
            // eps is added to an f32 variance: it must stay finite and above 0 as f32.
            if !((eps as f32) > 0.0 && (eps as f32).is_finite() && (0.0..=1.0).contains(&momentum)) {
                return Err(invalid(
                    name,
                    format!(
                        "eps = {eps}, momentum = {momentum}; accepted: eps > 0 (finite and non-zero as f32), \
                         0 <= momentum <= 1"
                    ),
                ));
            }
            Ok(input.to_vec())
        }
    }
}

/// The name and op of a layer spec; a layer without parameters and without a name is named by
/// its kind and how many of that kind came before (`relu1`, `pool2`), as `counters` counts.
fn named_op(layer_spec: &LayerSpec, counters: &mut std::collections::BTreeMap<&'static str, usize>) -> (String, Op) {
    let mut auto_name = |kind: &'static str, name: &Option<String>| {
        let k = counters.entry(kind).or_insert(0);
        *k += 1;
        name.clone().unwrap_or_else(|| format!("{kind}{k}"))
    };
    match layer_spec {
        LayerSpec::Conv2d { name, in_channels, out_channels, kernel_size, padding, weight_init, bias_init } => (
            name.clone(),
            Op::Conv2d {
                in_channels: *in_channels,
                out_channels: *out_channels,
                kernel_size: *kernel_size,
                padding: *padding,
                weight_init: weight_init.clone(),
                bias_init: bias_init.clone(),
            },
        ),
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
    }
}
