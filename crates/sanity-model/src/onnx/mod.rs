//! ONNX import: a model exported by `torch.onnx.export` becomes our own [`Graph`] and its
//! [`Weights`], not an interpreter of ONNX. The protobuf is decoded with prost into the part of
//! the schema we read (`proto.rs`; no `protoc`, no ONNX runtime). Initialisers are the weights.
//! Layers are named by PyTorch module path whichever exporter wrote the file
//! (docs/models.md, "ONNX"):
//!
//! - a layer with a weight takes its weight's name without `.weight` when the exporter kept
//!   the parameter names (the dynamo exporter: `layer1.0.conv1.weight`);
//! - otherwise its module path comes from the node's scope: the TorchScript exporter's node
//!   name (`/layer1/layer1.0/conv1/Conv` is `layer1.0.conv1`) or the dynamo exporter's
//!   `pkg.torch.onnx.name_scopes` metadata (its next-to-last entry);
//! - an op a module's `forward` applies itself (the residual `Add` of a block) is
//!   `<module>.<op>` (`layer1.0.add`); a module called twice gets `_1`, `_2`, ... as
//!   TorchScript's scopes do.
//!
//! Both exporters fold each BatchNorm into the convolution before it in eval mode, so such a
//! convolution's weights are the folded ones. A trailing Softmax or LogSoftmax is dropped: maps
//! explain its input, the logits (as Captum users do). Anything else outside the supported ops
//! is refused, naming the op, the node and what is supported.

pub mod proto;

use crate::error::{ModelError, Result};
use crate::graph::{ConvSpec, Graph, GraphOp, NodeSpec, PoolSpec, ValueId};
use crate::weights::Weights;
use candle_core::{Device, Tensor};
use prost::Message;
use proto::{AttributeProto, ModelProto, NodeProto, TensorProto};
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// The largest ONNX file read: protobuf's own 2 GiB limit.
pub const MAX_ONNX_BYTES: u64 = 2 << 30;

/// The ops the importer reads, as ONNX names them.
pub const SUPPORTED_OPS: &[&str] = &[
    "Conv",
    "Gemm",
    "MatMul (by a constant)",
    "Add",
    "Mul (by a constant)",
    "Relu",
    "LeakyRelu",
    "Sigmoid",
    "Tanh",
    "Gelu",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "ReduceMean (over height and width)",
    "BatchNormalization",
    "Concat (channels)",
    "Flatten",
    "Reshape (to [n, features])",
    "Identity",
    "Dropout",
    "Constant",
    "Softmax / LogSoftmax (last)",
];

/// An imported model.
#[derive(Debug, Clone)]
pub struct OnnxModel {
    /// The graph, layers named by module path.
    pub graph: Graph,
    /// Its weights, `<layer>.weight` and so on.
    pub weights: Weights,
    /// Who wrote the file (`pytorch 2.15.0`).
    pub producer: String,
    /// The default operator set's version.
    pub opset: i64,
    /// What the import changed or assumed, for `sanity inspect` and the run's notes.
    pub notes: Vec<String>,
}

/// Reads the ONNX file at `path`.
pub fn read_onnx(path: &Path) -> Result<OnnxModel> {
    let source = path.display().to_string();
    let fail = |reason: String| ModelError::Onnx { path: source.clone(), node: None, reason };
    let size = std::fs::metadata(path).map_err(|e| fail(format!("cannot read it: {e}")))?.len();
    if size > MAX_ONNX_BYTES {
        return Err(fail(format!("{size} bytes; accepted: at most {MAX_ONNX_BYTES} (protobuf's limit)")));
    }
    let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    OnnxModel::decode(&bytes, &source, External { dir: Some(dir), files: HashMap::new() })
}

impl OnnxModel {
    /// Imports the ONNX model in `bytes` (its weights inside it: a file with external data is
    /// read with [`read_onnx`]); errors name `source` and, where one is at fault, the node.
    pub fn from_bytes(bytes: &[u8], source: &str) -> Result<Self> {
        Self::decode(bytes, source, External { dir: None, files: HashMap::new() })
    }

    fn decode(bytes: &[u8], source: &str, mut external: External) -> Result<Self> {
        let fail = |reason: String| ModelError::Onnx { path: source.to_string(), node: None, reason };
        let model = ModelProto::decode(bytes).map_err(|e| fail(format!("not an ONNX model ({e}); truncated?")))?;
        let graph = model.graph.as_ref().ok_or_else(|| fail("the model has no graph".into()))?;
        let opset = model.opset_import.iter().find(|o| o.domain.is_empty()).map_or(0, |o| o.version);
        let mut importer = Importer::new(source, graph, &mut external)?;
        for node in &graph.node {
            importer.node(node, graph)?;
        }
        let producer = format!("{} {}", model.producer_name, model.producer_version).trim().to_string();
        importer.finish(graph, producer, opset)
    }
}

/// A constant of the graph: an initialiser, a `Constant` node, or an `Identity` of either.
#[derive(Debug, Clone)]
struct Constant {
    /// The initialiser's name, when it is one (the weight names of the dynamo exporter).
    name: String,
    dims: Vec<usize>,
    values: Vec<f32>,
    ints: Vec<i64>,
}

/// A node on its way into the graph: named once every node's scope is known.
struct Pending {
    op: GraphOp,
    inputs: Vec<ValueId>,
    /// The module path from the weight's name, when the exporter kept it.
    from_weight: Option<String>,
    /// The module path from the node's scope, if any (empty at the top level).
    scope: Option<String>,
    /// Its parameters, by suffix: `weight`, `bias`, ...
    parameters: Vec<(&'static str, Vec<usize>, Vec<f32>)>,
    /// A Reshape's target width, checked against the inferred shape.
    features: Option<usize>,
    /// The ONNX node's name, for errors.
    onnx_name: String,
}

struct Importer<'a> {
    source: &'a str,
    constants: HashMap<String, Constant>,
    values: HashMap<String, ValueId>,
    nodes: Vec<Pending>,
    input: [usize; 3],
    /// The batch size the model was exported with, when fixed (a Reshape may name it).
    batch: Option<i64>,
    notes: Vec<String>,
    /// The value a dropped trailing Softmax read, standing for the graph's output.
    output_alias: Option<(String, String)>,
}

impl<'a> Importer<'a> {
    fn new(source: &'a str, graph: &proto::GraphProto, external: &mut External) -> Result<Self> {
        let fail = |reason: String| ModelError::Onnx { path: source.to_string(), node: None, reason };
        let mut constants = HashMap::new();
        for t in &graph.initializer {
            let c = constant(t, external).map_err(|why| fail(format!("initialiser `{}`: {why}", t.name)))?;
            constants.insert(t.name.clone(), c);
        }
        let inputs: Vec<&proto::ValueInfoProto> =
            graph.input.iter().filter(|i| !constants.contains_key(&i.name)).collect();
        let [only] = inputs.as_slice() else {
            let listed: Vec<String> = inputs.iter().map(|i| format!("`{}`", i.name)).collect();
            return Err(fail(format!(
                "{} graph inputs ({}); accepted: one image input of shape [n, c, h, w], the weights as initialisers",
                inputs.len(),
                listed.join(", ")
            )));
        };
        let tensor = only.r#type.as_ref().and_then(|t| t.tensor_type.as_ref());
        if tensor.is_some_and(|t| t.elem_type != proto::FLOAT) {
            return Err(fail(format!("input `{}` is not float32; accepted: a float32 image input", only.name)));
        }
        let dims: Vec<Option<i64>> = tensor
            .and_then(|t| t.shape.as_ref())
            .map(|s| s.dim.iter().map(|d| d.dim_value.filter(|&v| v > 0)).collect())
            .unwrap_or_default();
        let batch = dims.first().copied().flatten();
        let input = match dims.as_slice() {
            [_, Some(c), Some(h), Some(w)] => [*c as usize, *h as usize, *w as usize],
            _ => {
                return Err(fail(format!(
                    "input `{}` has shape {dims:?}; accepted: [n, c, h, w] with fixed c, h and w (export with a fixed \
                     image size: dynamic shapes are not supported)",
                    only.name
                )));
            }
        };
        let values = HashMap::from([(only.name.clone(), 0)]);
        Ok(Self { source, constants, values, nodes: Vec::new(), input, batch, notes: Vec::new(), output_alias: None })
    }

    fn error(&self, node: &NodeProto, reason: String) -> ModelError {
        let name =
            if node.name.is_empty() { node.output.first().cloned().unwrap_or_default() } else { node.name.clone() };
        ModelError::Onnx { path: self.source.to_string(), node: Some(format!("{name} ({})", node.op_type)), reason }
    }

    /// The value `name` (computed before), or why not.
    fn value(&self, node: &NodeProto, name: &str) -> Result<ValueId> {
        self.values.get(name).copied().ok_or_else(|| {
            self.error(node, format!("reads `{name}`, which no earlier node computes (nodes out of order, or a cycle)"))
        })
    }

    fn constant(&self, node: &NodeProto, index: usize) -> Result<&Constant> {
        let name = node.input.get(index).filter(|n| !n.is_empty());
        name.and_then(|n| self.constants.get(n)).ok_or_else(|| {
            self.error(node, format!("input {index} must be a constant (an initialiser); accepted: constant weights"))
        })
    }

    fn push(
        &mut self,
        node: &NodeProto,
        op: GraphOp,
        inputs: Vec<ValueId>,
        parameters: Vec<(&'static str, Vec<usize>, Vec<f32>)>,
    ) {
        let from_weight = node
            .input
            .get(1)
            .and_then(|w| self.constants.get(w))
            .map(|c| c.name.clone())
            .filter(|_| !parameters.is_empty())
            .filter(|w| !w.starts_with("onnx::"))
            .and_then(|w| w.strip_suffix(".weight").map(str::to_string));
        self.nodes.push(Pending {
            op,
            inputs,
            from_weight,
            scope: scope_of(node),
            parameters,
            features: None,
            onnx_name: node.name.clone(),
        });
        let id = self.nodes.len();
        if let Some(out) = node.output.first() {
            self.values.insert(out.clone(), id);
        }
    }

    /// Reads one node into the graph (or into the constants, or as an alias).
    // Long: one arm per ONNX op, the larger ones in their own functions.
    fn node(&mut self, node: &NodeProto, graph: &proto::GraphProto) -> Result<()> {
        if !node.domain.is_empty() && node.domain != "ai.onnx" {
            return Err(self.error(node, format!("op domain `{}`; accepted: the default ONNX domain", node.domain)));
        }
        let attrs = Attributes(&node.attribute);
        let out = node.output.first().cloned().unwrap_or_default();
        match node.op_type.as_str() {
            "Constant" => {
                let t = attrs
                    .tensor("value")
                    .ok_or_else(|| self.error(node, "a Constant without a tensor `value`".into()))?;
                let c = constant(t, &mut External { dir: None, files: HashMap::new() })
                    .map_err(|why| self.error(node, why))?;
                self.constants.insert(out, Constant { name: String::new(), ..c });
            }
            "Identity" | "Dropout" => {
                let input = node.input.first().cloned().unwrap_or_default();
                if let Some(c) = self.constants.get(&input).cloned() {
                    self.constants.insert(out, c);
                } else {
                    let v = self.value(node, &input)?;
                    self.values.insert(out, v);
                }
            }
            "Conv" => self.conv(node, &attrs)?,
            "Gemm" => self.gemm(node, &attrs)?,
            "MatMul" => {
                let x = self.value(node, &node.input[0])?;
                let w = self.constant(node, 1)?.clone();
                let [k, n] = w.dims[..] else {
                    return Err(self.error(node, format!("a weight of shape {:?}; accepted: [in, out]", w.dims)));
                };
                let op = GraphOp::Linear { in_features: k, out_features: n, bias: false };
                self.push(node, op, vec![x], vec![("weight", vec![n, k], transpose(&w.values, k, n))]);
            }
            "Add" => self.add(node)?,
            "Mul" => {
                let (x, c) = match (self.values.get(&node.input[0]), self.constants.get(&node.input[1])) {
                    (Some(&x), Some(c)) => (x, c),
                    _ => match (self.values.get(&node.input[1]), self.constants.get(&node.input[0])) {
                        (Some(&x), Some(c)) => (x, c),
                        _ => {
                            return Err(self.error(
                                node,
                                "a product of two computed values; accepted: a value times a constant".into(),
                            ));
                        }
                    },
                };
                let [factor] = c.values[..] else {
                    return Err(self.error(node, format!("a factor of {} values; accepted: one", c.values.len())));
                };
                self.push(node, GraphOp::Scale { factor }, vec![x], Vec::new());
            }
            "Relu" | "Sigmoid" | "Tanh" | "GlobalAveragePool" | "LeakyRelu" | "Gelu" | "Flatten" => {
                let x = self.value(node, &node.input[0])?;
                let op = match node.op_type.as_str() {
                    "Relu" => GraphOp::Relu,
                    "Sigmoid" => GraphOp::Sigmoid,
                    "Tanh" => GraphOp::Tanh,
                    "GlobalAveragePool" => GraphOp::GlobalAvgPool { keepdims: true },
                    "LeakyRelu" => GraphOp::LeakyRelu { alpha: attrs.float("alpha").unwrap_or(0.01) },
                    "Gelu" => match attrs.string("approximate").as_deref() {
                        None | Some("none") => GraphOp::Gelu,
                        Some(other) => {
                            return Err(
                                self.error(node, format!("approximate = `{other}`; accepted: the exact GELU (`none`)"))
                            );
                        }
                    },
                    _ => match attrs.int("axis").unwrap_or(1) {
                        1 => GraphOp::Flatten,
                        axis => return Err(self.error(node, format!("axis {axis}; accepted: 1 (keep the batch)"))),
                    },
                };
                self.push(node, op, vec![x], Vec::new());
            }
            "MaxPool" | "AveragePool" => self.pool(node, &attrs)?,
            "ReduceMean" => self.reduce_mean(node, &attrs)?,
            "BatchNormalization" => self.batch_norm(node, &attrs)?,
            "Concat" => {
                if !matches!(attrs.int("axis"), Some(1) | Some(-3)) {
                    return Err(self.error(node, "an axis other than the channels; accepted: axis 1".into()));
                }
                let inputs = node.input.iter().map(|i| self.value(node, i)).collect::<Result<Vec<_>>>()?;
                self.push(node, GraphOp::Concat, inputs, Vec::new());
            }
            "Reshape" => {
                let x = self.value(node, &node.input[0])?;
                let shape = self.constant(node, 1)?.ints.clone();
                let batch = |n: i64| n == 1 || n == -1 || n == 0 || Some(n) == self.batch;
                let features = match shape[..] {
                    [n, f] if batch(n) && (f > 0 || f == -1) => (f > 0).then_some(f as usize),
                    _ => {
                        return Err(
                            self.error(node, format!("to shape {shape:?}; accepted: [n, features] (a flatten)"))
                        );
                    }
                };
                self.push(node, GraphOp::Flatten, vec![x], Vec::new());
                if let Some(last) = self.nodes.last_mut() {
                    last.features = features;
                }
            }
            "Softmax" | "LogSoftmax" if graph.output.iter().any(|o| o.name == out) => {
                let input = node.input.first().cloned().unwrap_or_default();
                self.value(node, &input)?;
                self.output_alias = Some((out, input));
                self.notes.push(format!(
                    "the trailing {} is dropped: maps explain its input, the logits (as Captum users do)",
                    node.op_type
                ));
            }
            other => {
                return Err(
                    self.error(node, format!("op `{other}` is not supported; supported: {}", SUPPORTED_OPS.join(", ")))
                );
            }
        }
        Ok(())
    }

    fn conv(&mut self, node: &NodeProto, attrs: &Attributes) -> Result<()> {
        let x = self.value(node, &node.input[0])?;
        let w = self.constant(node, 1)?.clone();
        let [out_channels, per_group, kh, kw] = w.dims[..] else {
            return Err(self
                .error(node, format!("a weight of shape {:?}; accepted: a 2-D convolution's [o, i, kh, kw]", w.dims)));
        };
        let bias = match node.input.get(2).filter(|b| !b.is_empty()) {
            Some(_) => Some(self.constant(node, 2)?.clone()),
            None => None,
        };
        check_auto_pad(attrs).map_err(|why| self.error(node, why))?;
        let groups = usize::try_from(attrs.int("group").unwrap_or(1))
            .ok()
            .filter(|&g| g >= 1)
            .ok_or_else(|| self.error(node, "group < 1; accepted: at least 1".into()))?;
        if attrs.ints("kernel_shape").is_some_and(|k| k != [kh as i64, kw as i64]) {
            return Err(self.error(node, format!("kernel_shape differs from the weight's [{kh}, {kw}]")));
        }
        let sizes = |name: &str, default| attrs.sizes(name, default).map_err(|why| self.error(node, why));
        let spec = ConvSpec {
            in_channels: per_group * groups,
            out_channels,
            kernel: [kh, kw],
            stride: sizes("strides", [1, 1])?,
            pads: attrs.sizes("pads", [0; 4]).map_err(|why| self.error(node, why))?,
            dilation: sizes("dilations", [1, 1])?,
            groups,
            bias: bias.is_some(),
        };
        let mut parameters = vec![("weight", w.dims.clone(), w.values.clone())];
        if let Some(b) = bias {
            if b.values.len() != out_channels {
                return Err(
                    self.error(node, format!("a bias of {} values for {out_channels} channels", b.values.len()))
                );
            }
            parameters.push(("bias", vec![out_channels], b.values));
        }
        self.push(node, GraphOp::Conv(spec), vec![x], parameters);
        Ok(())
    }

    fn gemm(&mut self, node: &NodeProto, attrs: &Attributes) -> Result<()> {
        let x = self.value(node, &node.input[0])?;
        if attrs.int("transA").unwrap_or(0) != 0 {
            return Err(self.error(node, "transA = 1; accepted: 0".into()));
        }
        if attrs.float("alpha").unwrap_or(1.0) != 1.0 || attrs.float("beta").unwrap_or(1.0) != 1.0 {
            return Err(self.error(node, "alpha or beta other than 1; accepted: y = x W^T + b".into()));
        }
        let w = self.constant(node, 1)?.clone();
        let [a, b] = w.dims[..] else {
            return Err(self.error(node, format!("a weight of shape {:?}; accepted: a matrix", w.dims)));
        };
        let (out, inp, values) = match attrs.int("transB").unwrap_or(0) {
            0 => (b, a, transpose(&w.values, a, b)),
            _ => (a, b, w.values.clone()),
        };
        let mut parameters = vec![("weight", vec![out, inp], values)];
        if node.input.get(2).is_some_and(|c| !c.is_empty()) {
            let c = self.constant(node, 2)?.clone();
            if c.values.len() != out {
                return Err(self.error(node, format!("a bias of {} values for {out} outputs", c.values.len())));
            }
            parameters.push(("bias", vec![out], c.values));
        }
        let op = GraphOp::Linear { in_features: inp, out_features: out, bias: parameters.len() == 2 };
        self.push(node, op, vec![x], parameters);
        Ok(())
    }

    /// A residual sum of two computed values, or the bias of the `MatMul` before it.
    fn add(&mut self, node: &NodeProto) -> Result<()> {
        let (a, b) = (&node.input[0], &node.input[1]);
        match (self.values.get(a).copied(), self.values.get(b).copied()) {
            (Some(x), Some(y)) => {
                self.push(node, GraphOp::Add, vec![x, y], Vec::new());
                Ok(())
            }
            (Some(x), None) | (None, Some(x)) => {
                let c = self.constants.get(if self.values.contains_key(a) { b } else { a }).cloned();
                let last = self.nodes.len();
                let fold = match (&c, self.nodes.last_mut()) {
                    (Some(c), Some(p)) if x == last => match &mut p.op {
                        GraphOp::Linear { out_features, bias, .. } if !*bias && c.values.len() == *out_features => {
                            *bias = true;
                            p.parameters.push(("bias", vec![*out_features], c.values.clone()));
                            true
                        }
                        _ => false,
                    },
                    _ => false,
                };
                if !fold {
                    return Err(self.error(node, "adds a constant to something other than a MatMul's output; accepted: a sum of two computed values, or a linear layer's bias".into()));
                }
                if let Some(out) = node.output.first() {
                    self.values.insert(out.clone(), x);
                }
                Ok(())
            }
            (None, None) => Err(self.error(node, format!("reads `{a}` and `{b}`, which no earlier node computes"))),
        }
    }

    fn pool(&mut self, node: &NodeProto, attrs: &Attributes) -> Result<()> {
        let x = self.value(node, &node.input[0])?;
        check_auto_pad(attrs).map_err(|why| self.error(node, why))?;
        if attrs.ints("kernel_shape").is_none() {
            return Err(self.error(node, "no kernel_shape".into()));
        }
        let kernel = attrs.sizes("kernel_shape", [0, 0]).map_err(|why| self.error(node, why))?;
        if attrs.sizes("dilations", [1, 1]).map_err(|why| self.error(node, why))? != [1, 1] {
            return Err(self.error(node, "a dilated pooling window; accepted: dilation 1".into()));
        }
        if node.output.len() > 1 && node.output[1..].iter().any(|o| !o.is_empty()) {
            return Err(self.error(node, "returns the pooling indices; accepted: the pooled values only".into()));
        }
        let pool = PoolSpec {
            kernel,
            stride: attrs.sizes("strides", [1, 1]).map_err(|why| self.error(node, why))?,
            pads: attrs.sizes("pads", [0; 4]).map_err(|why| self.error(node, why))?,
            ceil: attrs.int("ceil_mode").unwrap_or(0) != 0,
        };
        let op = match node.op_type.as_str() {
            "MaxPool" => GraphOp::MaxPool(pool),
            _ => GraphOp::AvgPool { pool, count_include_pad: attrs.int("count_include_pad").unwrap_or(0) != 0 },
        };
        self.push(node, op, vec![x], Vec::new());
        Ok(())
    }

    /// The mean over height and width: a global average pool (keeping the axes or not, as
    /// `keepdims` says).
    fn reduce_mean(&mut self, node: &NodeProto, attrs: &Attributes) -> Result<()> {
        let x = self.value(node, &node.input[0])?;
        let axes: Vec<i64> = match node.input.get(1).filter(|a| !a.is_empty()) {
            Some(_) => self.constant(node, 1)?.ints.clone(),
            None => attrs.ints("axes").map(<[i64]>::to_vec).unwrap_or_default(),
        };
        let mut spatial: Vec<i64> = axes.iter().map(|&a| if a < 0 { a + 4 } else { a }).collect();
        spatial.sort_unstable();
        if spatial != [2, 3] {
            return Err(self.error(
                node,
                format!("a mean over axes {axes:?}; accepted: the mean over height and width (axes [2, 3])"),
            ));
        }
        let keepdims = attrs.int("keepdims").unwrap_or(1) != 0;
        self.push(node, GraphOp::GlobalAvgPool { keepdims }, vec![x], Vec::new());
        Ok(())
    }

    fn batch_norm(&mut self, node: &NodeProto, attrs: &Attributes) -> Result<()> {
        let x = self.value(node, &node.input[0])?;
        if attrs.int("training_mode").unwrap_or(0) != 0 {
            return Err(self.error(node, "training_mode = 1; accepted: inference (export in eval mode)".into()));
        }
        let parts = (1..5).map(|i| self.constant(node, i).cloned()).collect::<Result<Vec<_>>>()?;
        let channels = parts[0].values.len();
        if parts.iter().any(|p| p.values.len() != channels) {
            return Err(self.error(node, "scale, bias, mean and variance of different lengths".into()));
        }
        let eps = f64::from(attrs.float("epsilon").unwrap_or(1e-5));
        let names = ["weight", "bias", "running_mean", "running_var"];
        let parameters = names.into_iter().zip(parts).map(|(what, p)| (what, vec![channels], p.values)).collect();
        self.push(node, GraphOp::BatchNorm { channels, eps }, vec![x], parameters);
        Ok(())
    }

    /// The graph, its layers named, and its weights.
    fn finish(mut self, graph: &proto::GraphProto, producer: String, opset: i64) -> Result<OnnxModel> {
        let fail = |reason: String| ModelError::Onnx { path: self.source.to_string(), node: None, reason };
        let [output] = graph.output.as_slice() else {
            return Err(fail(format!("{} graph outputs; accepted: one (the logits)", graph.output.len())));
        };
        let name = match &self.output_alias {
            Some((softmax, logits)) if *softmax == output.name => logits.clone(),
            _ => output.name.clone(),
        };
        if self.values.get(&name) != Some(&self.nodes.len()) || self.nodes.is_empty() {
            return Err(fail(format!("the output `{}` is not computed by the last node", output.name)));
        }
        let names = layer_names(&self.nodes);
        let mut weights = Weights::new();
        let mut specs = Vec::with_capacity(self.nodes.len());
        for (pending, name) in self.nodes.iter_mut().zip(&names) {
            for (what, dims, values) in std::mem::take(&mut pending.parameters) {
                let tensor = Tensor::from_vec(values, dims, &Device::Cpu)?;
                weights.insert(format!("{name}.{what}"), tensor);
            }
            specs.push(NodeSpec { name: name.clone(), op: pending.op, inputs: pending.inputs.clone() });
        }
        let graph = Graph::new(self.input, specs).map_err(|e| match e {
            ModelError::InvalidArchitecture { layer, reason } => {
                let onnx = names.iter().position(|n| *n == layer).map(|k| self.nodes[k].onnx_name.clone());
                ModelError::Onnx {
                    path: self.source.to_string(),
                    node: Some(format!("{layer} ({})", onnx.unwrap_or_default())),
                    reason,
                }
            }
            other => other,
        })?;
        for (node, pending) in graph.nodes.iter().zip(&self.nodes) {
            if let Some(f) = pending.features.filter(|&f| node.shape != [f]) {
                return Err(fail(format!("`{}` reshapes [n, {:?}] to [n, {f}]", node.name, node.shape)));
            }
        }
        if graph.nodes.iter().any(|n| matches!(n.op, GraphOp::Conv(_)))
            && !graph.nodes.iter().any(|n| matches!(n.op, GraphOp::BatchNorm { .. }))
        {
            self.notes.push(
                "no BatchNormalization nodes: an exporter in eval mode folds each BatchNorm into the convolution before \
                 it, so re-initialising such a convolution re-initialises its BatchNorm too (the safetensors + preset \
                 path keeps them apart)"
                    .into(),
            );
        }
        Ok(OnnxModel { graph, weights, producer, opset, notes: self.notes })
    }
}

/// The names of the nodes: by weight name, else by module path, unique (see the module docs).
fn layer_names(nodes: &[Pending]) -> Vec<String> {
    let modules: Vec<String> = nodes.iter().filter_map(|p| p.from_weight.clone().or_else(|| p.scope.clone())).collect();
    let container = |path: &str| {
        let prefix = format!("{path}.");
        modules.iter().any(|m| m.starts_with(&prefix))
    };
    let mut taken = HashSet::new();
    nodes
        .iter()
        .map(|p| {
            let base = match (&p.from_weight, &p.scope) {
                (Some(w), _) => w.clone(),
                (None, Some(path)) if !path.is_empty() && (!p.op.parameters().is_empty() || !container(path)) => {
                    path.clone()
                }
                (None, Some(path)) if !path.is_empty() => format!("{path}.{}", p.op.kind()),
                _ => p.op.kind().to_string(),
            };
            let mut name = base.clone();
            let mut k = 0;
            while !taken.insert(name.clone()) {
                k += 1;
                name = format!("{base}_{k}");
            }
            name
        })
        .collect()
}

/// The module path of a node's scope: the dynamo exporter's `pkg.torch.onnx.name_scopes`
/// (its next-to-last entry), or the TorchScript exporter's node name (`/layer2/layer2.0/
/// downsample/downsample.0/Conv` is `layer2.0.downsample.0`); None without either.
fn scope_of(node: &NodeProto) -> Option<String> {
    if let Some(scopes) = node.metadata_props.iter().find(|p| p.key == "pkg.torch.onnx.name_scopes") {
        let entries: Vec<&str> =
            scopes.value.trim_matches(['[', ']']).split(',').map(|s| s.trim().trim_matches(['\'', '"'])).collect();
        return (entries.len() >= 2).then(|| entries[entries.len() - 2].to_string());
    }
    let path = node.name.strip_prefix('/')?;
    let segments: Vec<&str> = path.split('/').collect();
    let mut parts: Vec<&str> = Vec::new();
    let mut previous = "";
    for segment in &segments[..segments.len().saturating_sub(1)] {
        match parts.last_mut() {
            Some(last) if !previous.is_empty() && segment.starts_with(&format!("{previous}.")) => *last = segment,
            _ => parts.push(segment),
        }
        previous = segment;
    }
    Some(parts.join("."))
}

/// `auto_pad` must be absent or `NOTSET` (explicit pads).
fn check_auto_pad(attrs: &Attributes) -> std::result::Result<(), String> {
    match attrs.string("auto_pad").as_deref() {
        None | Some("NOTSET") | Some("") => Ok(()),
        Some(other) => Err(format!("auto_pad = `{other}`; accepted: NOTSET (explicit pads)")),
    }
}

/// `values` of shape `[rows, cols]`, transposed.
fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    out
}

/// Where a model's external data lies: the folder of the `.onnx` file (None for bytes given
/// without one), and the files read so far.
struct External {
    dir: Option<std::path::PathBuf>,
    files: HashMap<String, Vec<u8>>,
}

impl External {
    /// The bytes of a tensor stored outside the model (`location`, `offset`, `length` as ONNX's
    /// external data entries give them; the dynamo exporter writes `<model>.onnx.data`). The
    /// location must be a file inside the model's folder.
    fn bytes(&mut self, entries: &[proto::StringStringEntryProto]) -> std::result::Result<Vec<u8>, String> {
        let get = |key: &str| entries.iter().find(|e| e.key == key).map(|e| e.value.as_str());
        let location = get("location").ok_or("external data without a location")?;
        let Some(dir) = &self.dir else {
            return Err(format!(
                "its data is in `{location}`; read the model from its file so that `{location}` beside it is found"
            ));
        };
        let relative = Path::new(location);
        if relative.is_absolute() || relative.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
            return Err(format!("external data at `{location}`; accepted: a file in the model's folder"));
        }
        if !self.files.contains_key(location) {
            let path = dir.join(relative);
            let bytes = std::fs::read(&path).map_err(|e| format!("its data file {}: {e}", path.display()))?;
            self.files.insert(location.to_string(), bytes);
        }
        let file = &self.files[location];
        let number = |key: &str| get(key).map(|v| v.parse::<usize>().map_err(|_| format!("{key} = `{v}`"))).transpose();
        let offset = number("offset")?.unwrap_or(0);
        let length = number("length")?.unwrap_or(file.len().saturating_sub(offset));
        let end = offset.checked_add(length).filter(|&end| end <= file.len()).ok_or_else(|| {
            format!("bytes {offset}..{offset}+{length} of `{location}`, which has {} (truncated?)", file.len())
        })?;
        Ok(file[offset..end].to_vec())
    }
}

/// A tensor's values: float32 (raw, listed or external), float64 as float32, int64 for shapes
/// and axes.
fn constant(t: &TensorProto, external: &mut External) -> std::result::Result<Constant, String> {
    let outside;
    let raw = if !t.external_data.is_empty() || t.data_location == 1 {
        outside = external.bytes(&t.external_data)?;
        &outside
    } else {
        &t.raw_data
    };
    let dims = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("dimension {d}")))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let count = dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).ok_or("too many values")?;
    let (values, ints) = match t.data_type {
        proto::FLOAT if !raw.is_empty() => {
            (raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(), Vec::new())
        }
        proto::FLOAT => (t.float_data.clone(), Vec::new()),
        proto::DOUBLE if !raw.is_empty() => (
            raw.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32).collect(),
            Vec::new(),
        ),
        proto::DOUBLE => (t.double_data.iter().map(|&v| v as f32).collect(), Vec::new()),
        proto::INT64 if !raw.is_empty() => {
            let ints: Vec<i64> =
                raw.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8]))).collect();
            (ints.iter().map(|&v| v as f32).collect(), ints)
        }
        proto::INT64 => (t.int64_data.iter().map(|&v| v as f32).collect(), t.int64_data.clone()),
        other => return Err(format!("element type {other}; accepted: float32, float64 or int64")),
    };
    if values.len() != count {
        return Err(format!("{} values for shape {dims:?} (truncated?)", values.len()));
    }
    if let Some(bad) = values.iter().position(|v: &f32| !v.is_finite()) {
        return Err(format!("a non-finite value at flat index {bad}; accepted: finite values"));
    }
    Ok(Constant { name: t.name.clone(), dims, values, ints })
}

/// A node's attributes by name.
struct Attributes<'a>(&'a [AttributeProto]);

impl Attributes<'_> {
    fn get(&self, name: &str) -> Option<&AttributeProto> {
        self.0.iter().find(|a| a.name == name)
    }
    fn int(&self, name: &str) -> Option<i64> {
        self.get(name).map(|a| a.i)
    }
    fn float(&self, name: &str) -> Option<f32> {
        self.get(name).map(|a| a.f)
    }
    fn ints(&self, name: &str) -> Option<&[i64]> {
        self.get(name).map(|a| a.ints.as_slice())
    }
    fn string(&self, name: &str) -> Option<String> {
        self.get(name).map(|a| String::from_utf8_lossy(&a.s).into_owned())
    }
    fn tensor(&self, name: &str) -> Option<&TensorProto> {
        self.get(name).and_then(|a| a.t.as_ref())
    }
    /// `N` non-negative values (`[height, width]`, or pads' four), `default` when absent.
    fn sizes<const N: usize>(&self, name: &str, default: [usize; N]) -> std::result::Result<[usize; N], String> {
        let Some(values) = self.ints(name) else { return Ok(default) };
        let sizes: Vec<usize> = values.iter().filter_map(|&v| usize::try_from(v).ok()).collect();
        <[usize; N]>::try_from(sizes).map_err(|_| {
            format!(
                "{name} = {values:?}; accepted: {N} non-negative integers (a 2-D {})",
                if N == 4 { "padding" } else { "window" }
            )
        })
    }
}
