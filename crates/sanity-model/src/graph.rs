//! A model as a graph: named nodes in topological order, each an op on earlier values (the
//! input, or other nodes' outputs). A layer is a node with parameters, named as PyTorch names
//! the module (`layer1.0.conv1`, `features.3`, `fc`); its weights are `<name>.weight`,
//! `<name>.bias` (and a batch norm's `running_mean`, `running_var`). Graphs come from ONNX files
//! (`crate::onnx`) and from the sequential architectures ([`Graph::from_architecture`]).
//! docs/models.md describes the ops and their shapes.

use crate::architecture::{Architecture, Op};
use crate::error::{ModelError, Result};
use std::collections::HashSet;

/// A value of a graph: 0 is the input, `k + 1` the output of node `k`.
pub type ValueId = usize;

/// A 2-D convolution as ONNX's `Conv` (and PyTorch's `nn.Conv2d`) defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvSpec {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Kernel `[height, width]`.
    pub kernel: [usize; 2],
    /// Stride `[height, width]`.
    pub stride: [usize; 2],
    /// Zero padding `[top, left, bottom, right]` (ONNX's `pads` order).
    pub pads: [usize; 4],
    /// Dilation `[height, width]`.
    pub dilation: [usize; 2],
    /// Groups: `in_channels` and `out_channels` are multiples of it (depthwise: `in_channels`).
    pub groups: usize,
    /// Whether it has a bias.
    pub bias: bool,
}

/// A pooling window as ONNX's `MaxPool` / `AveragePool` define it (dilation 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSpec {
    /// Window `[height, width]`.
    pub kernel: [usize; 2],
    /// Stride `[height, width]`.
    pub stride: [usize; 2],
    /// Padding `[top, left, bottom, right]`.
    pub pads: [usize; 4],
    /// Whether the output size rounds up (PyTorch's `ceil_mode`).
    pub ceil: bool,
}

/// What a node computes. Shapes leave out the batch: `[c, h, w]` or `[features]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GraphOp {
    /// Convolution, `[c, h, w] -> [out_channels, h', w']`.
    Conv(ConvSpec),
    /// `y = x W^T + b`, `[in_features] -> [out_features]` (ONNX `Gemm` with `transB = 1`, or
    /// `MatMul` by a constant and an `Add` of one).
    Linear {
        /// Input features.
        in_features: usize,
        /// Output features.
        out_features: usize,
        /// Whether it has a bias.
        bias: bool,
    },
    /// Batch normalisation with running statistics (inference), per channel.
    BatchNorm {
        /// Channels.
        channels: usize,
        /// ε added to the variance.
        eps: f64,
    },
    /// `max(x, 0)`.
    Relu,
    /// `x` where positive, `alpha x` elsewhere.
    LeakyRelu {
        /// The negative slope.
        alpha: f32,
    },
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// `tanh(x)`.
    Tanh,
    /// `x Φ(x)` (the exact GELU, as `nn.GELU()`).
    Gelu,
    /// Max pooling.
    MaxPool(PoolSpec),
    /// Average pooling; `count_include_pad`: padded zeros count in the mean.
    AvgPool {
        /// The window.
        pool: PoolSpec,
        /// Whether padded zeros count in the mean (PyTorch's default: true).
        count_include_pad: bool,
    },
    /// The mean over each channel's positions, `[c, h, w] -> [c, 1, 1]` (ONNX's
    /// `GlobalAveragePool`, `ReduceMean` over the spatial axes, PyTorch's
    /// `AdaptiveAvgPool2d(1)`), or `[c]` without `keepdims` (a sequential architecture's
    /// `global_avg_pool`, `ReduceMean` with `keepdims = 0`).
    GlobalAvgPool {
        /// Whether the pooled height and width stay as axes of size 1.
        keepdims: bool,
    },
    /// Average pooling to `out` `[height, width]` bins, bin `i` covering rows
    /// `floor(i·h/out)..ceil((i+1)·h/out)` (PyTorch's `AdaptiveAvgPool2d`; VGG's 7x7).
    AdaptiveAvgPool {
        /// The output's height and width.
        out: [usize; 2],
    },
    /// The sum of two values of the same shape (a residual connection).
    Add,
    /// Multiplication by a constant.
    Scale {
        /// The factor.
        factor: f32,
    },
    /// The values' channels, one after the other (`[c_i, h, w] -> [Σ c_i, h, w]`).
    Concat,
    /// `[c, h, w] -> [c h w]`.
    Flatten,
    /// The input as it is (ONNX `Identity`, `Dropout` at inference).
    Identity,
}

impl GraphOp {
    /// Whether the op's input gradient is a linear map that does not depend on its input
    /// (not a ReLU, a nonlinearity or a max pooling's argmax).
    pub fn is_linear(&self) -> bool {
        !matches!(
            self,
            GraphOp::Relu
                | GraphOp::LeakyRelu { .. }
                | GraphOp::Sigmoid
                | GraphOp::Tanh
                | GraphOp::Gelu
                | GraphOp::MaxPool(_)
        )
    }

    /// The op's name as `inspect` and errors show it.
    pub fn kind(&self) -> &'static str {
        match self {
            GraphOp::Conv(_) => "conv",
            GraphOp::Linear { .. } => "linear",
            GraphOp::BatchNorm { .. } => "batch_norm",
            GraphOp::Relu => "relu",
            GraphOp::LeakyRelu { .. } => "leaky_relu",
            GraphOp::Sigmoid => "sigmoid",
            GraphOp::Tanh => "tanh",
            GraphOp::Gelu => "gelu",
            GraphOp::MaxPool(_) => "max_pool",
            GraphOp::AvgPool { .. } => "avg_pool",
            GraphOp::GlobalAvgPool { .. } => "global_avg_pool",
            GraphOp::AdaptiveAvgPool { .. } => "adaptive_avg_pool",
            GraphOp::Add => "add",
            GraphOp::Scale { .. } => "scale",
            GraphOp::Concat => "concat",
            GraphOp::Flatten => "flatten",
            GraphOp::Identity => "identity",
        }
    }

    /// The op's parameters and buffers, by the suffix of their weight name, with their shapes.
    pub fn parameters(&self) -> Vec<(&'static str, Vec<usize>)> {
        match *self {
            GraphOp::Conv(c) => {
                let weight = vec![c.out_channels, c.in_channels / c.groups.max(1), c.kernel[0], c.kernel[1]];
                let mut p = vec![("weight", weight)];
                if c.bias {
                    p.push(("bias", vec![c.out_channels]));
                }
                p
            }
            GraphOp::Linear { in_features, out_features, bias } => {
                let mut p = vec![("weight", vec![out_features, in_features])];
                if bias {
                    p.push(("bias", vec![out_features]));
                }
                p
            }
            GraphOp::BatchNorm { channels, .. } => ["weight", "bias", "running_mean", "running_var"]
                .into_iter()
                .map(|what| (what, vec![channels]))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// How many inputs it takes: `None` for any number of at least one (concat).
    fn arity(&self) -> Option<usize> {
        match self {
            GraphOp::Add => Some(2),
            GraphOp::Concat => None,
            _ => Some(1),
        }
    }
}

/// One node: its name, op, inputs and output shape (without the batch).
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Unique; a layer's is its module path.
    pub name: String,
    /// What it computes.
    pub op: GraphOp,
    /// Its inputs, each an earlier value.
    pub inputs: Vec<ValueId>,
    /// Its output's shape, inferred.
    pub shape: Vec<usize>,
}

/// A model graph: the input's shape `[c, h, w]` and the nodes in topological order; the last
/// node's output is the model's (the logits, `[classes]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    /// The input's shape.
    pub input: [usize; 3],
    /// The nodes, each using only the input and nodes before it.
    pub nodes: Vec<Node>,
}

/// A node as a graph is built from: the output shape is inferred by [`Graph::new`].
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSpec {
    /// Unique name.
    pub name: String,
    /// What it computes.
    pub op: GraphOp,
    /// Its inputs.
    pub inputs: Vec<ValueId>,
}

impl Graph {
    /// Checks `nodes` and infers their shapes: unique non-empty names, inputs that are earlier
    /// values (a cycle or a forward reference names its node), the arity and input shapes each
    /// op accepts, and a `[classes]` output. Errors name the node.
    pub fn new(input: [usize; 3], nodes: Vec<NodeSpec>) -> Result<Self> {
        if input.contains(&0) {
            return Err(ModelError::InvalidArchitectureSpec { reason: format!("input shape {input:?} has a zero") });
        }
        let Some(last) = nodes.last().map(|n| n.name.clone()) else {
            return Err(ModelError::InvalidArchitectureSpec { reason: "no nodes".into() });
        };
        let mut shapes: Vec<Vec<usize>> = vec![input.to_vec()];
        let mut names = HashSet::new();
        let mut out = Vec::with_capacity(nodes.len());
        for (k, spec) in nodes.into_iter().enumerate() {
            let bad = |reason: String| ModelError::InvalidArchitecture { layer: spec.name.clone(), reason };
            if spec.name.is_empty() || !names.insert(spec.name.clone()) {
                return Err(bad("an empty or repeated name; node names must be unique".into()));
            }
            if let Some(&later) = spec.inputs.iter().find(|&&v| v > k) {
                return Err(bad(format!(
                    "uses value {later}, which is not computed before it (a cycle, or nodes out of order)"
                )));
            }
            match spec.op.arity() {
                Some(n) if spec.inputs.len() != n => {
                    return Err(bad(format!("{} takes {n} input(s), got {}", spec.op.kind(), spec.inputs.len())));
                }
                None if spec.inputs.is_empty() => return Err(bad(format!("{} takes inputs", spec.op.kind()))),
                _ => {}
            }
            let inputs: Vec<&[usize]> = spec.inputs.iter().map(|&v| shapes[v].as_slice()).collect();
            let shape = output_shape(&spec.op, &inputs).map_err(bad)?;
            if shape.contains(&0) {
                return Err(bad(format!("its output [n, {}] is empty", join(&shape))));
            }
            shapes.push(shape.clone());
            out.push(Node { name: spec.name, op: spec.op, inputs: spec.inputs, shape });
        }
        if shapes.last().map(Vec::len) != Some(1) {
            let shape = shapes.last().cloned().unwrap_or_default();
            return Err(ModelError::InvalidArchitecture {
                layer: last,
                reason: format!("the output must be [n, classes], got [n, {}]", join(&shape)),
            });
        }
        Ok(Self { input, nodes: out })
    }

    /// The graph of a sequential architecture: one node per layer, each on the one before, with
    /// the same names (its weights load unchanged).
    pub fn from_architecture(arch: &Architecture) -> Result<Self> {
        let [c, h, w] = arch.spec.input;
        let nodes = arch
            .layers
            .iter()
            .enumerate()
            .map(|(k, layer)| NodeSpec { name: layer.name.clone(), op: graph_op(&layer.op), inputs: vec![k] })
            .collect();
        Self::new([c, h, w], nodes)
    }

    /// The shape of value `v` (without the batch).
    pub fn shape_of(&self, v: ValueId) -> Vec<usize> {
        match v {
            0 => self.input.to_vec(),
            k => self.nodes[k - 1].shape.clone(),
        }
    }

    /// The layers: the nodes with parameters, in graph order.
    pub fn layers(&self) -> impl DoubleEndedIterator<Item = &Node> {
        self.nodes.iter().filter(|n| !n.op.parameters().is_empty())
    }

    /// Every parameter and buffer: `<layer>.<what>` with its shape, in graph order.
    pub fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        self.layers()
            .flat_map(|n| n.op.parameters().into_iter().map(move |(what, shape)| (format!("{}.{what}", n.name), shape)))
            .collect()
    }

    /// The layers a cascade randomises, top-down: from the output to the input (bottom-up is
    /// the reverse).
    pub fn stages_top_down(&self) -> Vec<&str> {
        self.layers().rev().map(|n| n.name.as_str()).collect()
    }

    /// A table of the nodes (name, op, output shape, parameters), the parameter count and the
    /// cascade's stage order: what `sanity inspect` prints.
    pub fn describe(&self) -> String {
        let [c, h, w] = self.input;
        let mut out = format!("input [n, {c}, {h}, {w}]\n");
        let width = self.nodes.iter().map(|n| n.name.len()).max().unwrap_or(4).max(4);
        out += &format!("{:<width$}  {:<28}  {:<16}  parameters\n", "node", "op", "output");
        let mut total = 0usize;
        for node in &self.nodes {
            let count: usize = node.op.parameters().iter().map(|(_, s)| s.iter().product::<usize>()).sum();
            total += count;
            let params = if count == 0 { String::new() } else { count.to_string() };
            let shape = format!("[{}]", join(&node.shape));
            let row = format!("{:<width$}  {:<28}  {:<16}  {params}", node.name, op_label(&node.op), shape);
            out += row.trim_end();
            out.push('\n');
        }
        out += &format!("{} layers with parameters, {total} parameter and buffer values\n", self.layers().count());
        out += &format!("cascade stages, top-down (bottom-up is the reverse): {}\n", self.stages_top_down().join(", "));
        out
    }

    /// The node a layer name means: the node of that name, or else the last node of the module
    /// it names (`layer4` is the output of `layer4.1.relu_1`, as Captum and pytorch-grad-cam
    /// users name a block). The error lists the modules there are.
    pub fn resolve(&self, name: &str) -> Result<usize> {
        if let Some(k) = self.nodes.iter().position(|n| n.name == name) {
            return Ok(k);
        }
        let prefix = format!("{name}.");
        if let Some(k) = self.nodes.iter().rposition(|n| n.name.starts_with(&prefix)) {
            return Ok(k);
        }
        let mut modules: Vec<&str> = self.nodes.iter().map(|n| n.name.split('.').next().unwrap_or("")).collect();
        modules.dedup();
        Err(ModelError::UnknownLayer { name: name.to_string(), available: modules.join(", ") })
    }
}

/// The graph op of a sequential architecture's op.
fn graph_op(op: &Op) -> GraphOp {
    match *op {
        Op::Conv2d { in_channels, out_channels, kernel_size, padding, .. } => GraphOp::Conv(ConvSpec {
            in_channels,
            out_channels,
            kernel: [kernel_size; 2],
            stride: [1, 1],
            pads: [padding; 4],
            dilation: [1, 1],
            groups: 1,
            bias: true,
        }),
        Op::Linear { in_features, out_features, .. } => GraphOp::Linear { in_features, out_features, bias: true },
        Op::Relu => GraphOp::Relu,
        Op::MaxPool2d { kernel_size, stride } => {
            GraphOp::MaxPool(PoolSpec { kernel: [kernel_size; 2], stride: [stride; 2], pads: [0; 4], ceil: false })
        }
        Op::GlobalAvgPool => GraphOp::GlobalAvgPool { keepdims: false },
        Op::Flatten => GraphOp::Flatten,
        Op::Dropout { .. } => GraphOp::Identity,
        Op::BatchNorm2d { num_features, eps, .. } => GraphOp::BatchNorm { channels: num_features, eps },
    }
}

/// The output size of a window of `kernel` (dilated by `dilation`) sliding by `stride` over
/// `size` values padded by `pads`; `ceil` as PyTorch's `ceil_mode` (a last window must start
/// inside the input or its left padding). None when the window does not fit.
pub fn window_output(
    size: usize,
    kernel: usize,
    stride: usize,
    pads: [usize; 2],
    dilation: usize,
    ceil: bool,
) -> Option<usize> {
    let span = dilation.checked_mul(kernel.checked_sub(1)?)?.checked_add(1)?;
    let padded = size.checked_add(pads[0])?.checked_add(pads[1])?;
    let room = padded.checked_sub(span)?;
    if stride == 0 {
        return None;
    }
    let mut out = if ceil { room.div_ceil(stride) + 1 } else { room / stride + 1 };
    if ceil && (out - 1) * stride >= size + pads[0] {
        out -= 1;
    }
    Some(out)
}

/// The output shape of `op` on inputs of `shapes`, or why it cannot run on them.
fn output_shape(op: &GraphOp, shapes: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
    let image = |s: &[usize]| -> std::result::Result<[usize; 3], String> {
        <[usize; 3]>::try_from(s).map_err(|_| format!("takes [n, c, h, w], got [n, {}]", join(s)))
    };
    let first = shapes[0];
    match *op {
        GraphOp::Conv(c) => {
            let [ch, h, w] = image(first)?;
            if c.groups == 0 || c.in_channels % c.groups != 0 || c.out_channels % c.groups != 0 {
                return Err(format!(
                    "groups {} must divide in_channels {} and out_channels {}",
                    c.groups, c.in_channels, c.out_channels
                ));
            }
            if ch != c.in_channels {
                return Err(format!("takes {} channels, got {ch}", c.in_channels));
            }
            let out = |i: usize, size: usize| {
                window_output(size, c.kernel[i], c.stride[i], [c.pads[i], c.pads[i + 2]], c.dilation[i], false)
            };
            match (out(0, h), out(1, w)) {
                (Some(oh), Some(ow)) => Ok(vec![c.out_channels, oh, ow]),
                _ => Err(format!("a {:?} kernel does not fit its {h}x{w} input with pads {:?}", c.kernel, c.pads)),
            }
        }
        GraphOp::MaxPool(p) | GraphOp::AvgPool { pool: p, .. } => {
            let [ch, h, w] = image(first)?;
            if p.pads[0] * 2 > p.kernel[0] || p.pads[1] * 2 > p.kernel[1] {
                return Err(format!("pads {:?} over half the window {:?}", p.pads, p.kernel));
            }
            let out = |i: usize, size: usize| {
                window_output(size, p.kernel[i], p.stride[i], [p.pads[i], p.pads[i + 2]], 1, p.ceil)
            };
            match (out(0, h), out(1, w)) {
                (Some(oh), Some(ow)) => Ok(vec![ch, oh, ow]),
                _ => Err(format!("a {:?} window does not fit its {h}x{w} input", p.kernel)),
            }
        }
        GraphOp::GlobalAvgPool { keepdims: true } => Ok(vec![image(first)?[0], 1, 1]),
        GraphOp::GlobalAvgPool { keepdims: false } => Ok(vec![image(first)?[0]]),
        GraphOp::AdaptiveAvgPool { out } if out.contains(&0) => Err(format!("an output of {out:?} bins")),
        GraphOp::AdaptiveAvgPool { out } => Ok(vec![image(first)?[0], out[0], out[1]]),
        GraphOp::BatchNorm { channels, .. } => match first.first() {
            Some(&c) if c == channels && first.len() == 3 => Ok(first.to_vec()),
            _ => Err(format!("takes [n, {channels}, h, w], got [n, {}]", join(first))),
        },
        GraphOp::Linear { in_features, out_features, .. } => match first {
            [f] if *f == in_features => Ok(vec![out_features]),
            _ => Err(format!("takes [n, {in_features}], got [n, {}]", join(first))),
        },
        GraphOp::Flatten => Ok(vec![first.iter().product()]),
        GraphOp::Add => match shapes {
            [a, b] if a == b => Ok(a.to_vec()),
            _ => Err(format!("adds values of one shape, got {:?}", shapes)),
        },
        GraphOp::Concat => {
            let [_, h, w] = image(first)?;
            let mut channels = 0;
            for s in shapes {
                let [c, sh, sw] = image(s)?;
                if [sh, sw] != [h, w] {
                    return Err(format!("joins channels of one height and width, got {:?}", shapes));
                }
                channels += c;
            }
            Ok(vec![channels, h, w])
        }
        GraphOp::Relu
        | GraphOp::LeakyRelu { .. }
        | GraphOp::Sigmoid
        | GraphOp::Tanh
        | GraphOp::Gelu
        | GraphOp::Scale { .. }
        | GraphOp::Identity => Ok(first.to_vec()),
    }
}

/// An op with its settings, for [`Graph::describe`]: `conv 3x3 s2 p1`, `max_pool 3x3 s2 p1 ceil`.
fn op_label(op: &GraphOp) -> String {
    let window = |k: [usize; 2], s: [usize; 2], p: [usize; 4]| {
        let mut label = format!("{}x{}", k[0], k[1]);
        if s != [1, 1] {
            label += &if s[0] == s[1] { format!(" s{}", s[0]) } else { format!(" s{}x{}", s[0], s[1]) };
        }
        if p != [0; 4] {
            label += &if p.iter().all(|&v| v == p[0]) { format!(" p{}", p[0]) } else { format!(" p{p:?}") };
        }
        label
    };
    match op {
        GraphOp::Conv(c) => {
            let mut label =
                format!("conv {}->{} {}", c.in_channels, c.out_channels, window(c.kernel, c.stride, c.pads));
            if c.dilation != [1, 1] {
                label += &format!(" d{}", c.dilation[0]);
            }
            if c.groups != 1 {
                label += &format!(" g{}", c.groups);
            }
            label
        }
        GraphOp::Linear { in_features, out_features, .. } => format!("linear {in_features}->{out_features}"),
        GraphOp::MaxPool(p) => {
            format!("max_pool {}{}", window(p.kernel, p.stride, p.pads), if p.ceil { " ceil" } else { "" })
        }
        GraphOp::AvgPool { pool: p, count_include_pad } => format!(
            "avg_pool {}{}{}",
            window(p.kernel, p.stride, p.pads),
            if p.ceil { " ceil" } else { "" },
            if *count_include_pad { "" } else { " excl. pad" }
        ),
        GraphOp::LeakyRelu { alpha } => format!("leaky_relu {alpha}"),
        GraphOp::Scale { factor } => format!("scale {factor}"),
        GraphOp::AdaptiveAvgPool { out } => format!("adaptive_avg_pool {}x{}", out[0], out[1]),
        GraphOp::BatchNorm { eps, .. } => format!("batch_norm eps {eps}"),
        other => other.kind().to_string(),
    }
}

fn join(shape: &[usize]) -> String {
    shape.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_sizes_follow_pytorch_with_and_without_ceil_mode() {
        // nn.Conv2d(k=7, s=2, p=3) on 224: 112; MaxPool2d(3, 2, 1) on 112: 56.
        assert_eq!(window_output(224, 7, 2, [3, 3], 1, false), Some(112));
        assert_eq!(window_output(112, 3, 2, [1, 1], 1, false), Some(56));
        // MaxPool2d(2, 2, ceil_mode=True) on 7: 4; without: 3. On 6 both 3.
        assert_eq!(window_output(7, 2, 2, [0, 0], 1, true), Some(4));
        assert_eq!(window_output(7, 2, 2, [0, 0], 1, false), Some(3));
        assert_eq!(window_output(6, 2, 2, [0, 0], 1, true), Some(3));
        // MaxPool2d(3, 2, padding=1, ceil_mode=True) on 6: 4. MaxPool2d(2, 2, padding=1,
        // ceil_mode=True) on 5: 3, as the fourth window would start in the right padding.
        // (Values from torch 2.15.)
        assert_eq!(window_output(6, 3, 2, [1, 1], 1, true), Some(4));
        assert_eq!(window_output(5, 2, 2, [1, 1], 1, true), Some(3));
        // A dilated kernel: k=3, d=2 spans 5.
        assert_eq!(window_output(9, 3, 1, [0, 0], 2, false), Some(5));
        assert_eq!(window_output(4, 3, 1, [0, 0], 2, false), None);
    }

    #[test]
    fn a_residual_block_infers_its_shapes_and_names_resolve_by_module() {
        let conv = |c_in, c_out, stride| {
            GraphOp::Conv(ConvSpec {
                in_channels: c_in,
                out_channels: c_out,
                kernel: [3, 3],
                stride: [stride; 2],
                pads: [1; 4],
                dilation: [1, 1],
                groups: 1,
                bias: false,
            })
        };
        let node = |name: &str, op, inputs: &[usize]| NodeSpec { name: name.into(), op, inputs: inputs.to_vec() };
        let graph = Graph::new(
            [3, 8, 8],
            vec![
                node("conv1", conv(3, 4, 1), &[0]),
                node("layer1.0.conv1", conv(4, 4, 1), &[1]),
                node("layer1.0.relu", GraphOp::Relu, &[2]),
                node("layer1.0.add", GraphOp::Add, &[3, 1]),
                node("layer2.0.conv1", conv(4, 8, 2), &[4]),
                node("avgpool", GraphOp::GlobalAvgPool { keepdims: true }, &[5]),
                node("flatten", GraphOp::Flatten, &[6]),
                node("fc", GraphOp::Linear { in_features: 8, out_features: 10, bias: true }, &[7]),
            ],
        )
        .expect("valid");
        assert_eq!(graph.nodes[4].shape, vec![8, 4, 4]);
        assert_eq!(graph.resolve("layer1").expect("a module"), 3);
        assert_eq!(graph.resolve("fc").expect("a node"), 7);
        let error = graph.resolve("layer3").expect_err("no such module").to_string();
        assert!(error.contains("conv1, layer1, layer2, avgpool, flatten, fc"), "{error}");
        let names: Vec<String> = graph.parameter_shapes().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["conv1.weight", "layer1.0.conv1.weight", "layer2.0.conv1.weight", "fc.weight", "fc.bias"]);
    }

    #[test]
    fn bad_graphs_name_the_node() {
        let relu = |inputs: &[usize]| NodeSpec { name: "r".into(), op: GraphOp::Relu, inputs: inputs.to_vec() };
        let cycle = Graph::new([1, 2, 2], vec![relu(&[1])]).expect_err("forward reference").to_string();
        assert!(cycle.contains("`r`") && cycle.contains("not computed before it"), "{cycle}");
        let add = NodeSpec { name: "sum".into(), op: GraphOp::Add, inputs: vec![0] };
        let arity = Graph::new([1, 2, 2], vec![add]).expect_err("one input").to_string();
        assert!(arity.contains("`sum`") && arity.contains("takes 2 input(s)"), "{arity}");
        let image = Graph::new([1, 2, 2], vec![relu(&[0])]).expect_err("not logits").to_string();
        assert!(image.contains("[n, classes]"), "{image}");
    }
}
