//! Times the graph walk on torchvision's ResNet-18 at 224x224 (forward and input gradient of
//! 16 images), the kernel of `experiments/bench-resnet18.toml`:
//! `cargo run --release -p sanity-model --example walk_resnet18 -- THREADS [N] [REPS]`.
//! `sanity` sets glibc's allocator as `tune_allocator` in `crates/sanity-cli/src/main.rs` does;
//! to time the walk as it runs there, set the same through the environment:
//! `MALLOC_ARENA_MAX=1 MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=536870912 MALLOC_TOP_PAD_=67108864`.
use sanity_model::graph_engine::{GraphModel, forward, input_gradient};
use sanity_model::graph_init::init_graph;
use sanity_model::graph_presets::graph_preset;
use sanity_model::ops::ReluMode;
use std::time::Instant;

fn main() -> sanity_model::error::Result<()> {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("a number")).collect();
    let threads = args.first().copied().unwrap_or(2);
    let n = args.get(1).copied().unwrap_or(16);
    let reps = args.get(2).copied().unwrap_or(3);
    rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().expect("one pool");
    let graph = graph_preset("resnet18", [3, 224, 224], 1000)?;
    let weights = init_graph(&graph, 0)?;
    let model = GraphModel::new(&graph, &weights)?;
    let x: Vec<f32> = (0..n * 3 * 224 * 224).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
    for _ in 0..reps {
        let t = Instant::now();
        let f = forward(&model, &x, n)?;
        let tf = t.elapsed().as_secs_f64();
        let mut seed = vec![0.0f32; f.output().len()];
        (0..n).for_each(|i| seed[i * 1000 + i] = 1.0);
        let t = Instant::now();
        let g = input_gradient(&model, &f, &seed, ReluMode::Standard)?;
        let tb = t.elapsed().as_secs_f64();
        let gflop = 3.64 * n as f64;
        println!(
            "{n} images, {threads} threads: forward {tf:.3} s ({:.0} GFLOP/s), input gradient {tb:.3} s ({:.0} GFLOP/s), |g|₁ {:.4e}",
            gflop / tf,
            gflop / tb,
            g.iter().map(|v| v.abs() as f64).sum::<f64>()
        );
    }
    Ok(())
}
