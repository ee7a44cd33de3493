//! torchvision's ResNets and VGGs as graphs, with torchvision's parameter names, so that
//! `torchvision.models.resnet18(num_classes=10).state_dict()` saved as safetensors loads as is
//! ([`crate::weights::Weights::load_for_graph`]). Each BatchNorm is a layer of its own (the
//! ONNX path folds it into its convolution). The builders follow torchvision 0.29's code
//! (`models/resnet.py`, `models/vgg.py`): a ResNet's stem is a 7x7 stride-2 conv, BatchNorm,
//! ReLU and a 3x3 stride-2 max pool; a block's downsample branch runs after its second
//! BatchNorm; a VGG pools its features to 7x7 before the classifier.

use crate::error::{ModelError, Result};
use crate::graph::{ConvSpec, Graph, GraphOp, NodeSpec, PoolSpec, ValueId};

/// The graph presets.
pub const GRAPH_PRESETS: &[&str] = &["resnet18", "resnet34", "resnet50", "vgg11", "vgg16"];

/// A ResNet's residual block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    /// Two 3x3 convs (ResNet-18, -34).
    Basic,
    /// 1x1, 3x3 and 1x1 convs, four times as wide out as in the middle (ResNet-50 and up).
    Bottleneck,
}

impl Block {
    fn expansion(self) -> usize {
        match self {
            Block::Basic => 1,
            Block::Bottleneck => 4,
        }
    }
}

/// A ResNet: its block, blocks per stage, the stages' widths (torchvision: 64, 128, 256, 512;
/// the stem is as wide as the first), input channels and classes.
#[derive(Debug, Clone, PartialEq)]
pub struct ResNetSpec {
    /// The block.
    pub block: Block,
    /// Blocks per stage (`layer1`, `layer2`, ...).
    pub layers: Vec<usize>,
    /// The stages' widths.
    pub widths: Vec<usize>,
    /// Input channels.
    pub in_channels: usize,
    /// Classes.
    pub num_classes: usize,
}

/// A VGG: torchvision's `cfg` (`Some(width)` a 3x3 conv + ReLU, `None` a 2x2 max pool), the
/// classifier's hidden width (torchvision: 4096), input channels and classes.
#[derive(Debug, Clone, PartialEq)]
pub struct VggSpec {
    /// The features.
    pub cfg: Vec<Option<usize>>,
    /// The classifier's hidden width.
    pub hidden: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Classes.
    pub num_classes: usize,
}

/// The graph preset `name` for images of `input` `[c, h, w]` and `num_classes` classes.
pub fn graph_preset(name: &str, input: [usize; 3], num_classes: usize) -> Result<Graph> {
    let resnet = |block, layers: &[usize]| ResNetSpec {
        block,
        layers: layers.to_vec(),
        widths: vec![64, 128, 256, 512],
        in_channels: input[0],
        num_classes,
    };
    let m = None;
    let vgg = |cfg: Vec<Option<usize>>| VggSpec { cfg, hidden: 4096, in_channels: input[0], num_classes };
    let s = Some;
    match name {
        "resnet18" => resnet_graph(&resnet(Block::Basic, &[2, 2, 2, 2]), input),
        "resnet34" => resnet_graph(&resnet(Block::Basic, &[3, 4, 6, 3]), input),
        "resnet50" => resnet_graph(&resnet(Block::Bottleneck, &[3, 4, 6, 3]), input),
        "vgg11" => {
            vgg_graph(&vgg(vec![s(64), m, s(128), m, s(256), s(256), m, s(512), s(512), m, s(512), s(512), m]), input)
        }
        "vgg16" => vgg_graph(
            &vgg(vec![
                s(64),
                s(64),
                m,
                s(128),
                s(128),
                m,
                s(256),
                s(256),
                s(256),
                m,
                s(512),
                s(512),
                s(512),
                m,
                s(512),
                s(512),
                s(512),
                m,
            ]),
            input,
        ),
        _ => Err(ModelError::UnknownPreset { name: name.to_string(), available: GRAPH_PRESETS.join(", ") }),
    }
}

/// Nodes being added, each on earlier values.
struct Builder {
    nodes: Vec<NodeSpec>,
}

impl Builder {
    fn add(&mut self, name: String, op: GraphOp, inputs: &[ValueId]) -> ValueId {
        self.nodes.push(NodeSpec { name, op, inputs: inputs.to_vec() });
        self.nodes.len()
    }

    /// A conv without bias then its BatchNorm, named `conv`, `bn`.
    fn conv_bn(
        &mut self,
        (conv, bn): (String, String),
        x: ValueId,
        [c_in, c_out]: [usize; 2],
        k: usize,
        stride: usize,
    ) -> ValueId {
        let spec = ConvSpec {
            in_channels: c_in,
            out_channels: c_out,
            kernel: [k, k],
            stride: [stride; 2],
            pads: [k / 2; 4],
            dilation: [1, 1],
            groups: 1,
            bias: false,
        };
        let y = self.add(conv, GraphOp::Conv(spec), &[x]);
        self.add(bn, GraphOp::BatchNorm { channels: c_out, eps: 1e-5 }, &[y])
    }
}

/// A ResNet as torchvision builds it.
pub fn resnet_graph(spec: &ResNetSpec, input: [usize; 3]) -> Result<Graph> {
    if spec.widths.len() != spec.layers.len() || spec.layers.contains(&0) {
        return Err(ModelError::InvalidArchitectureSpec {
            reason: format!("{spec:?}: one width per stage, each stage a block or more"),
        });
    }
    let mut b = Builder { nodes: Vec::new() };
    let stem = spec.widths[0];
    let x = b.conv_bn(("conv1".into(), "bn1".into()), 0, [spec.in_channels, stem], 7, 2);
    let x = b.add("relu".into(), GraphOp::Relu, &[x]);
    let pool = PoolSpec { kernel: [3, 3], stride: [2, 2], pads: [1; 4], ceil: false };
    let mut x = b.add("maxpool".into(), GraphOp::MaxPool(pool), &[x]);
    let mut c_in = stem;
    for (stage, (&blocks, &width)) in spec.layers.iter().zip(&spec.widths).enumerate() {
        for index in 0..blocks {
            let stride = if index == 0 && stage > 0 { 2 } else { 1 };
            let at = |what: &str| format!("layer{}.{index}.{what}", stage + 1);
            let c_out = width * spec.block.expansion();
            let mut y = x;
            let convs: Vec<(usize, usize, usize, usize)> = match spec.block {
                Block::Basic => vec![(c_in, width, 3, stride), (width, width, 3, 1)],
                Block::Bottleneck => vec![(c_in, width, 1, 1), (width, width, 3, stride), (width, c_out, 1, 1)],
            };
            let last = convs.len();
            for (k, (a, o, kernel, s)) in convs.into_iter().enumerate() {
                y = b.conv_bn((at(&format!("conv{}", k + 1)), at(&format!("bn{}", k + 1))), y, [a, o], kernel, s);
                if k + 1 < last {
                    let relu = if k == 0 { at("relu") } else { at(&format!("relu_{k}")) };
                    y = b.add(relu, GraphOp::Relu, &[y]);
                }
            }
            let identity = if stride != 1 || c_in != c_out {
                b.conv_bn((at("downsample.0"), at("downsample.1")), x, [c_in, c_out], 1, stride)
            } else {
                x
            };
            let sum = b.add(at("add"), GraphOp::Add, &[y, identity]);
            x = b.add(at(&format!("relu_{}", last - 1)), GraphOp::Relu, &[sum]);
            c_in = c_out;
        }
    }
    let x = b.add("avgpool".into(), GraphOp::GlobalAvgPool { keepdims: true }, &[x]);
    let x = b.add("flatten".into(), GraphOp::Flatten, &[x]);
    b.add("fc".into(), GraphOp::Linear { in_features: c_in, out_features: spec.num_classes, bias: true }, &[x]);
    Graph::new(input, b.nodes)
}

/// A VGG (without BatchNorm) as torchvision builds it: `features.<index>` counting every
/// module of the features, `classifier.<index>` likewise.
pub fn vgg_graph(spec: &VggSpec, input: [usize; 3]) -> Result<Graph> {
    let mut b = Builder { nodes: Vec::new() };
    let (mut x, mut c, mut index) = (0, spec.in_channels, 0);
    for item in &spec.cfg {
        match *item {
            Some(width) => {
                let conv = ConvSpec {
                    in_channels: c,
                    out_channels: width,
                    kernel: [3, 3],
                    stride: [1, 1],
                    pads: [1; 4],
                    dilation: [1, 1],
                    groups: 1,
                    bias: true,
                };
                x = b.add(format!("features.{index}"), GraphOp::Conv(conv), &[x]);
                x = b.add(format!("features.{}", index + 1), GraphOp::Relu, &[x]);
                (c, index) = (width, index + 2);
            }
            None => {
                let pool = PoolSpec { kernel: [2, 2], stride: [2, 2], pads: [0; 4], ceil: false };
                x = b.add(format!("features.{index}"), GraphOp::MaxPool(pool), &[x]);
                index += 1;
            }
        }
    }
    x = b.add("avgpool".into(), GraphOp::AdaptiveAvgPool { out: [7, 7] }, &[x]);
    x = b.add("flatten".into(), GraphOp::Flatten, &[x]);
    let widths = [(c * 49, spec.hidden), (spec.hidden, spec.hidden), (spec.hidden, spec.num_classes)];
    for (k, (fin, fout)) in widths.into_iter().enumerate() {
        let linear = GraphOp::Linear { in_features: fin, out_features: fout, bias: true };
        x = b.add(format!("classifier.{}", 3 * k), linear, &[x]);
        if k < 2 {
            x = b.add(format!("classifier.{}", 3 * k + 1), GraphOp::Relu, &[x]);
            x = b.add(format!("classifier.{}", 3 * k + 2), GraphOp::Identity, &[x]);
        }
    }
    Graph::new(input, b.nodes)
}
