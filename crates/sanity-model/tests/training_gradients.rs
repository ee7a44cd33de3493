//! The training walk's weight and bias gradients (`graph_train.rs`) against float64: central
//! finite differences of the loss of candle's float64 training forward, for sampled entries of
//! every parameter, and candle's float64 autograd for every entry. Covered: convolutions with
//! padding, strides, uneven padding, groups and no bias; linear layers; batch norms on batch
//! statistics; dropout (after a convolution and after a linear layer, the same seeded masks);
//! max pooling (with padding), global average pooling, a residual add; softmax and binary
//! cross-entropy. Also: training gives the same bytes on any number of threads.

use candle_core::{DType, Device, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sanity_model::graph::{ConvSpec, Graph, GraphOp, NodeSpec, PoolSpec};
use sanity_model::graph_engine::GraphModel;
use sanity_model::graph_train::{TrainingGraph, as_weights, loss_and_gradient, parameter_gradients, train_forward};
use sanity_model::{Architecture, ArchitectureSpec, Mode, Net, NetModel, Weights};
use std::sync::Arc;

/// A stack with every sequential layer a training meets: convolutions with padding, a batch
/// norm, max pooling over a ReLU (fused; over a convolution's ReLU, the convolution's input
/// gradient routed through the pooling's argmax), dropout on images and on features, three
/// classes.
const STACK: &str = r#"
input = [2, 8, 8]
[[layers]]
type = "conv2d"
name = "conv1"
in_channels = 2
out_channels = 4
kernel_size = 3
padding = 1
[[layers]]
type = "batch_norm2d"
name = "bn1"
num_features = 4
[[layers]]
type = "relu"
[[layers]]
type = "max_pool2d"
kernel_size = 2
[[layers]]
type = "conv2d"
name = "conv2"
in_channels = 4
out_channels = 6
kernel_size = 5
padding = 2
[[layers]]
type = "relu"
[[layers]]
type = "max_pool2d"
kernel_size = 2
[[layers]]
type = "dropout"
p = 0.3
[[layers]]
type = "flatten"
[[layers]]
type = "linear"
name = "fc1"
in_features = 24
out_features = 10
[[layers]]
type = "relu"
[[layers]]
type = "dropout"
p = 0.5
[[layers]]
type = "linear"
name = "fc2"
in_features = 10
out_features = 3
"#;

/// One logit after a global average pooling (binary cross-entropy); convolutions with short
/// window rows under a ReLU and a max pooling, whose weight gradients come from the pooling's
/// routed values (conv2's input gradient too, through the dense gradient rebuilt from them).
const ONE_LOGIT: &str = r#"
input = [1, 8, 8]
[[layers]]
type = "conv2d"
name = "conv1"
in_channels = 1
out_channels = 3
kernel_size = 3
padding = 1
[[layers]]
type = "relu"
[[layers]]
type = "max_pool2d"
kernel_size = 2
[[layers]]
type = "conv2d"
name = "conv2"
in_channels = 3
out_channels = 4
kernel_size = 3
padding = 1
[[layers]]
type = "relu"
[[layers]]
type = "max_pool2d"
kernel_size = 2
[[layers]]
type = "global_avg_pool"
[[layers]]
type = "linear"
name = "logit"
in_features = 4
out_features = 1
"#;

fn stack(text: &str) -> Net {
    let spec = ArchitectureSpec::from_toml_str(text, "test").expect("toml");
    Net::Layers(Arc::new(Architecture::new(spec).expect("architecture")))
}

/// A graph with a strided, unevenly padded convolution, a grouped one without bias, a batch
/// norm, a residual add, a padded max pooling and a global average pooling.
fn graph() -> Net {
    let conv = |i, o, k, s, pads, groups, bias| {
        GraphOp::Conv(ConvSpec {
            in_channels: i,
            out_channels: o,
            kernel: [k, k],
            stride: [s, s],
            pads,
            dilation: [1, 1],
            groups,
            bias,
        })
    };
    let node = |name: &str, op, inputs: Vec<usize>| NodeSpec { name: name.into(), op, inputs };
    let nodes = vec![
        node("stem", conv(2, 4, 3, 2, [1, 0, 1, 1], 1, true), vec![0]),
        node("bn", GraphOp::BatchNorm { channels: 4, eps: 1e-5 }, vec![1]),
        node("relu", GraphOp::Relu, vec![2]),
        node("grouped", conv(4, 4, 3, 1, [1; 4], 2, false), vec![3]),
        node("add", GraphOp::Add, vec![4, 3]),
        node("pool", GraphOp::MaxPool(PoolSpec { kernel: [3, 3], stride: [2, 2], pads: [1; 4], ceil: false }), vec![5]),
        node("gap", GraphOp::GlobalAvgPool { keepdims: false }, vec![6]),
        node("fc", GraphOp::Linear { in_features: 4, out_features: 3, bias: true }, vec![7]),
    ];
    Net::Graph(Arc::new(Graph::new([2, 9, 9], nodes).expect("graph")))
}

/// Deterministic inputs in [0, 1) and labels for `net`.
fn batch(net: &Net, n: usize) -> (Vec<f32>, Vec<usize>) {
    let per: usize = net.input().iter().product();
    let x = (0..n * per).map(|i| ((i * 7919 + 13) % 1009) as f32 / 1009.0).collect();
    let classes = net.num_outputs().max(2);
    (x, (0..n).map(|i| (i * 5 + 1) % classes).collect())
}

/// The float64 loss of candle's training forward (`Mode::Train`, masks from `rng`).
fn candle_loss(net: &Net, weights: &Weights, x: &Tensor, labels: &[usize], rng: &ChaCha8Rng) -> Tensor {
    let model = NetModel::new(net.clone(), weights.clone());
    let mut running = weights.clone();
    let logits = model.forward_in(x, &mut Mode::Train(&mut rng.clone(), &mut running)).expect("forward");
    let n = labels.len() as f64;
    if net.num_outputs() == 1 {
        let z = logits.flatten_all().expect("z");
        let y = Tensor::from_vec(labels.iter().map(|&l| l as f64).collect::<Vec<_>>(), labels.len(), &Device::Cpu)
            .expect("y");
        let softplus =
            z.abs().and_then(|a| a.neg()).and_then(|a| a.exp()).and_then(|e| e.affine(1.0, 1.0)).and_then(|e| e.log());
        ((z.relu().expect("relu") - (&z * &y).expect("zy")).expect("d") + softplus.expect("softplus"))
            .and_then(|l| l.sum_all())
            .and_then(|l| l.affine(1.0 / n, 0.0))
            .expect("loss")
    } else {
        let log_p = candle_nn::ops::log_softmax(&logits, 1).expect("log softmax");
        let idx =
            Tensor::from_vec(labels.iter().map(|&l| l as u32).collect::<Vec<_>>(), (labels.len(), 1), &Device::Cpu)
                .expect("idx");
        log_p.gather(&idx, 1).and_then(|g| g.sum_all()).and_then(|s| s.affine(-1.0 / n, 0.0)).expect("loss")
    }
}

/// The walk's gradients of the mean loss, as weights (PyTorch names and layouts).
fn walk_gradients(net: &Net, weights: &Weights, x: &[f32], labels: &[usize], rng: &ChaCha8Rng) -> Weights {
    let training = TrainingGraph::of(net).expect("training graph");
    let model = GraphModel::new(&training.graph, weights).expect("model");
    let pass = train_forward(&model, &training, x, labels.len(), &mut rng.clone()).expect("forward");
    let (_, seed) = loss_and_gradient(pass.logits(), labels, net.num_outputs());
    as_weights(&training.graph, &parameter_gradients(&model, &pass, &seed).expect("gradients")).expect("as weights")
}

fn values(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64).and_then(|t| t.flatten_all()).and_then(|t| t.to_vec1()).expect("values")
}

fn check(net: &Net, n: usize) {
    let weights = net.init(3).expect("init");
    let (x, labels) = batch(net, n);
    let rng = ChaCha8Rng::seed_from_u64(17);
    let ours = walk_gradients(net, &weights, &x, &labels, &rng);
    let w64 = weights.to_dtype(DType::F64).expect("f64");
    let [c, h, w] = net.input();
    let x64 =
        Tensor::from_vec(x.iter().map(|&v| f64::from(v)).collect::<Vec<_>>(), (n, c, h, w), &Device::Cpu).expect("x");
    // candle's float64 autograd, every entry.
    let mut tracked = w64.clone();
    let mut vars = Vec::new();
    for (name, g) in ours.iter() {
        let var = Var::from_tensor(w64.get(name).expect("weight")).expect("var");
        tracked.insert(name.clone(), var.as_tensor().clone());
        vars.push((name.clone(), g.clone(), var));
    }
    let grads = candle_loss(net, &tracked, &x64, &labels, &rng).backward().expect("backward");
    assert!(!vars.is_empty());
    let largest = |v: &[f64]| v.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    // A gradient that is zero in exact arithmetic (a bias under a batch norm) is judged on the
    // scale of the whole gradient.
    let overall =
        vars.iter().map(|(_, _, var)| largest(&values(grads.get(var).expect("gradient")))).fold(0.0, f64::max);
    for (name, g, var) in &vars {
        let (ours, theirs) = (values(g), values(grads.get(var).expect("candle's gradient")));
        let scale = largest(&theirs).max(1e-2 * overall);
        let worst = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(worst <= 1e-4 * scale, "{name}: off candle's float64 autograd by {worst:e} (scale {scale:e})");
        // Central differences of the float64 loss at a few entries.
        let base = values(w64.get(name).expect("weight"));
        let shape = w64.get(name).expect("weight").dims().to_vec();
        for i in [0, base.len() / 3, base.len() / 2, base.len() - 1] {
            let h = 1e-6;
            let at = |d: f64| {
                let mut v = base.clone();
                v[i] += d;
                let mut perturbed = w64.clone();
                perturbed.insert(name.clone(), Tensor::from_vec(v, shape.as_slice(), &Device::Cpu).expect("t"));
                candle_loss(net, &perturbed, &x64, &labels, &rng).to_scalar::<f64>().expect("loss")
            };
            let fd = (at(h) - at(-h)) / (2.0 * h);
            assert!((ours[i] - fd).abs() <= 1e-3 * scale + 1e-7, "{name}[{i}]: {} vs finite difference {fd}", ours[i]);
        }
    }
}

#[test]
fn a_stack_s_gradients_match_float64_with_batch_norm_and_dropout() {
    check(&stack(STACK), 5);
}

#[test]
fn a_single_logit_model_s_gradients_match_float64() {
    check(&stack(ONE_LOGIT), 4);
}

#[test]
fn a_graph_s_gradients_match_float64_with_strides_groups_and_a_residual_add() {
    check(&graph(), 3);
}

#[test]
fn training_gives_the_same_bytes_on_any_number_of_threads() {
    let net = stack(STACK);
    let weights = net.init(5).expect("init");
    let (x, labels) = batch(&net, 9);
    let data = sanity_data::Dataset {
        images: x,
        image_shape: net.input(),
        labels,
        masks: None,
        num_classes: 3,
        class_names: Vec::new(),
    };
    let model = NetModel::new(net, weights);
    let spec = sanity_model::TrainSpec { epochs: 2, batch_size: 4, ..Default::default() };
    let trained = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
        let (weights, _) = pool.install(|| sanity_model::train(&model, &data, &spec, 7, &mut |_| {})).expect("trains");
        let mut bytes = Vec::new();
        for (name, t) in weights.iter() {
            bytes.push((name.clone(), values(t).iter().map(|v| v.to_bits()).collect::<Vec<_>>()));
        }
        bytes
    };
    let one = trained(1);
    assert_eq!(trained(2), one);
    assert_eq!(trained(5), one);
}
