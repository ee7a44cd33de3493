//! Times a method on a sequential preset through the sequential engine (`native.rs`) and
//! through the graph walk (the preset as a graph), the measurement that decides whether the
//! presets can move onto the one graph engine (issue 19):
//! `RAYON_NUM_THREADS=2 cargo run --release -p sanity-attribution --example walk_vs_native -- PRESET N`.
//! Run it with the allocator environment `sanity` sets (see
//! `crates/sanity-model/examples/walk_resnet18.rs`).
use candle_core::{Device, Tensor};
use sanity_attribution::{MethodSpec, NetMethod};
use sanity_model::graph::Graph;
use sanity_model::{Architecture, Net, NetModel, init_weights, preset};
use std::sync::Arc;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = args.first().map_or("adebayo-cnn", String::as_str);
    let n: usize = args.get(1).map_or(64, |a| a.parse().expect("n"));
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into());
    let input = if name == "phantom-cnn" { [1, 64, 64] } else { [1, 28, 28] };
    let arch = Arc::new(Architecture::new(preset(name, input).expect("preset")).expect("valid"));
    let weights = init_weights(&arch, 0).expect("init");
    let per: usize = input.iter().product();
    let x = Tensor::from_vec(
        (0..n * per).map(|i| ((i * 7919) % 1000) as f32 / 1000.0).collect(),
        (n, input[0], input[1], input[2]),
        &Device::Cpu,
    )
    .expect("x");
    let targets = vec![0usize; n];
    let ids: Vec<u64> = (0..n as u64).collect();
    let graph = Arc::new(Graph::from_architecture(&arch).expect("graph"));
    for json in [r#"{"method":"gradient"}"#, r#"{"method":"integrated_gradients","steps":32,"batch":32}"#] {
        let spec: MethodSpec = serde_json::from_str(json).expect("spec");
        for net in [Net::Layers(Arc::clone(&arch)), Net::Graph(Arc::clone(&graph))] {
            let kind = if net.is_graph() { "graph walk" } else { "sequential" };
            let method = NetMethod::build(&spec, &net, 0, None).expect("build");
            let model = NetModel::new(net, weights.clone());
            let mut best = f64::INFINITY;
            for _ in 0..5 {
                let t = Instant::now();
                method.attribute_models(&[&model], &x, &[&targets], &ids).expect("maps");
                best = best.min(t.elapsed().as_secs_f64());
            }
            println!("{name}, {n} images, {threads} threads, {}: {kind} {best:.3} s (best of 5)", spec.id());
        }
    }
}
