//! Times the training walk's phases on a preset, synthetic images (docs/performance.md,
//! "Training"): `cargo run --release -p sanity-model --example train_step -- PRESET THREADS BATCH STEPS`
//! (defaults adebayo-cnn 2 64 50). Prints the mean milliseconds per minibatch of the training
//! forward, the loss, the parameter gradients (and the minimum and median of their sum, steadier
//! than the mean on a noisy machine), and a whole `train` epoch of STEPS minibatches.

use rand::SeedableRng;
use sanity_model::graph_engine::GraphModel;
use sanity_model::graph_train::{TrainingGraph, loss_and_gradient, parameter_gradients, train_forward};
use sanity_model::{Architecture, Net, NetModel, TrainSpec, preset, train};
use std::sync::Arc;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let name = args.get(1).map_or("adebayo-cnn", String::as_str);
    let threads: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2);
    let batch: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(64);
    let steps: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(50);
    rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().expect("threads");
    let net = Net::Layers(Arc::new(Architecture::new(preset(name, [1, 28, 28]).expect("preset")).expect("arch")));
    let weights = net.init(0).expect("init");
    let x: Vec<f32> = (0..batch * 784).map(|i| ((i * 7919) % 255) as f32 / 255.0).collect();
    let labels: Vec<usize> = (0..batch).map(|i| i % net.num_outputs()).collect();
    let training = TrainingGraph::of(&net).expect("graph");
    let model = GraphModel::new(&training.graph, &weights).expect("model");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let (mut forward_s, mut loss_s, mut backward_s) = (0.0, 0.0, 0.0);
    let mut passes = Vec::with_capacity(steps);
    for _ in 0..steps {
        let start = Instant::now();
        let t = Instant::now();
        let pass = train_forward(&model, &training, &x, batch, &mut rng).expect("forward");
        forward_s += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let (_, seed) = loss_and_gradient(pass.logits(), &labels, net.num_outputs());
        loss_s += t.elapsed().as_secs_f64();
        let t = Instant::now();
        std::hint::black_box(parameter_gradients(&model, &pass, &seed).expect("gradients"));
        backward_s += t.elapsed().as_secs_f64();
        passes.push(start.elapsed().as_secs_f64());
    }
    passes.sort_by(f64::total_cmp);
    let ms = |s: f64| 1e3 * s / steps as f64;
    println!("{name}, batch {batch}, {threads} threads, per minibatch:");
    println!("forward {:.2} ms, loss {:.3} ms, gradients {:.2} ms", ms(forward_s), ms(loss_s), ms(backward_s));
    let quantile = |q: f64| 1e3 * passes[((passes.len() - 1) as f64 * q) as usize];
    println!("forward and gradients: min {:.2} ms, median {:.2} ms", quantile(0.0), quantile(0.5));
    let images: Vec<f32> = (0..steps).flat_map(|_| x.iter().copied()).collect();
    let data = sanity_data::Dataset {
        images,
        image_shape: [1, 28, 28],
        labels: (0..steps).flat_map(|_| labels.iter().copied()).collect(),
        masks: None,
        num_classes: net.num_outputs().max(2),
        class_names: Vec::new(),
    };
    let spec = TrainSpec { epochs: 1, batch_size: batch, ..TrainSpec::default() };
    let t = Instant::now();
    train(&NetModel::new(net, weights), &data, &spec, 0, &mut |_| {}).expect("trains");
    println!("whole step (train, one epoch): {:.2} ms", ms(t.elapsed().as_secs_f64()));
}
