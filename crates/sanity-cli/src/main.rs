//! The `sanity` binary: command line, progress bars, exit codes. Everything else lives in the
//! library crates.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sanity_cli::jobs::JobModel;
use sanity_cli::jobs::attribute::{AttributeJob, attribute_to_npy};
use sanity_cli::jobs::compare::{CompareJob, compare};
use sanity_cli::jobs::explain::{ExplainJob, explain};
use sanity_cli::jobs::run::{RunEvent, RunRequest, run_plans};
use sanity_cli::jobs::train::{TrainJob, parse_data, train_model};
use sanity_cli::{jobs, load_plans, plan_text};
use sanity_experiments::limits::{MAX_ATTRIBUTION_BATCH, MAX_CLASSES, MAX_EPOCHS, MAX_EXAMPLES, MAX_TRAIN_BATCH};
use sanity_experiments::merge::merge;
use sanity_experiments::{ExperimentError, Progress};
use sanity_report::figures::overlay::OverlayColors;
use sanity_report::{FIGURES_DIR, REPORT_MD, ReportOptions, report, report_dirs};
use sanity_rundir::config::{OptimizerKind, TrainingConfig};
use sanity_rundir::shard::Shard;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

/// Sanity checks for saliency maps (Adebayo et al. 2018 and successors).
#[derive(Parser)]
#[command(name = "sanity", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run an experiment config; without CONFIG, the embedded experiments/quick.toml.
    Run(RunArgs),
    /// Combine the directories of sharded runs into the files one unsharded run writes.
    Merge(MergeArgs),
    /// Train an architecture and save its weights (safetensors, PyTorch names).
    Train(TrainArgs),
    /// Write one method's raw maps for the images of an NPY file (float32 NCHW) as NPY.
    Attribute(AttributeArgs),
    /// Score two stacks of maps (NPY, same shape) pair by pair; one CSV row per pair and metric.
    Compare(CompareArgs),
    /// Draw the figures of a finished run (figures/*.png, *.svg) and write its report.md.
    Report(ReportArgs),
    /// For the first N test images: the image with each method's map over it (one PNG per
    /// image) and agreement.csv with every pair of methods' similarity per image.
    Explain(ExplainArgs),
    /// Print the resolved config and what a run would do, without running it.
    Plan(PlanArgs),
    /// Print a model's layers (an ONNX file, a preset or an architecture TOML): names, ops,
    /// output shapes, parameter counts, and the order a cascade randomises them in.
    Inspect(InspectArgs),
}

/// The arguments of `sanity inspect`.
#[derive(clap::Args)]
struct InspectArgs {
    /// An ONNX file (exported by torch.onnx.export), a preset name or an architecture TOML.
    model: String,
    /// The input a preset is shown for, C,H,W (default: 1,64,64; 1,28,28 for adebayo-*;
    /// 3,224,224 for resnet* and vgg*).
    #[arg(long, value_name = "C,H,W", value_parser = input_shape)]
    input: Option<[usize; 3]>,
    /// Classes of a resnet* or vgg* preset.
    #[arg(long, default_value_t = 1000, value_parser = count_in(1, MAX_CLASSES))]
    classes: usize,
}

/// `--input C,H,W`: three whole numbers from 1 to 4096.
fn input_shape(text: &str) -> std::result::Result<[usize; 3], String> {
    let parts: Vec<std::result::Result<usize, _>> = text.split(',').map(|p| p.trim().parse::<usize>()).collect();
    match parts.as_slice() {
        [Ok(c), Ok(h), Ok(w)] if [c, h, w].iter().all(|&&v| (1..=4096).contains(&v)) => Ok([*c, *h, *w]),
        _ => Err(format!("`{text}`; accepted: C,H,W, three whole numbers from 1 to 4096 (e.g. 3,224,224)")),
    }
}

/// The arguments of `sanity run`.
#[derive(clap::Args)]
struct RunArgs {
    /// The experiment TOML.
    config: Option<PathBuf>,
    /// The run directory (default: results/NAME/RUN_ID).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Override a config key by its dotted path, e.g. --set training.epochs=2.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Worker threads (default: all cores).
    #[arg(long, value_parser = threads_parser())]
    threads: Option<usize>,
    /// The memory a run may take, in GiB (default: the machine's): plans that would take
    /// more are refused before they start.
    #[arg(long, value_name = "GIB", value_parser = float_in(0.01, 1e6))]
    memory_limit: Option<f64>,
    /// Replace the results in an existing run directory.
    #[arg(long)]
    force: bool,
    /// Continue interrupted runs: finished batches are kept, trained models reloaded.
    #[arg(long, conflicts_with = "force")]
    resume: bool,
    /// Train every model afresh instead of sharing trained models through the model cache
    /// (`.model-cache/` beside --out, or in results/NAME/).
    #[arg(long)]
    no_model_cache: bool,
    /// Run only shard K of N (0 <= K < N) of the image batches of all runs (e.g.
    /// $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT); `sanity merge` combines the shards.
    #[arg(long, value_name = "K/N", value_parser = |s: &str| s.parse::<Shard>().map_err(|e| e.to_string()))]
    shard: Option<Shard>,
}

/// The arguments of `sanity merge`.
#[derive(clap::Args)]
struct MergeArgs {
    /// Shard output directories (a run directory, or a directory of run directories).
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
    /// Where the merged run(s) go.
    #[arg(long)]
    out: PathBuf,
    /// Replace an existing --out.
    #[arg(long)]
    force: bool,
}

/// The arguments of `sanity train`.
#[derive(clap::Args)]
struct TrainArgs {
    /// Preset name (also a graph preset: resnet18, resnet34, resnet50, vgg11, vgg16) or
    /// architecture TOML.
    #[arg(long)]
    arch: String,
    /// phantom, fashion-mnist, fashion-mnist:DIR, or a `[data]` table inline
    /// ('{ source = "arrays", images = "x.npy", labels = "y.npy" }').
    #[arg(long)]
    data: String,
    /// Use only the first N training images.
    #[arg(long, value_parser = count_in(1, 10_000_000))]
    n_train: Option<usize>,
    /// Passes over the training set (1 to 10000).
    #[arg(long, default_value_t = 8, value_parser = count_in(1, MAX_EPOCHS))]
    epochs: usize,
    /// Minibatch size.
    #[arg(long, default_value_t = 64, value_parser = count_in(1, MAX_TRAIN_BATCH))]
    batch_size: usize,
    /// AdamW learning rate (a finite value > 0).
    #[arg(long, default_value_t = 1e-3, value_parser = positive_float)]
    lr: f64,
    /// Seed of initialisation, shuffles and dropout.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// `adamw` or `sgd` (with --momentum, as torch.optim.SGD).
    #[arg(long, default_value = "adamw", value_parser = ["adamw", "sgd"])]
    optimizer: String,
    /// SGD's momentum, 0 <= momentum < 1.
    #[arg(long, default_value_t = 0.9, value_parser = float_below(0.0, 1.0))]
    momentum: f64,
    /// `true` or `random` (randomly permuted training labels: the data randomisation test).
    #[arg(long, default_value = "true", value_parser = ["true", "random"])]
    labels: String,
    /// Stop once the training accuracy (on the labels trained on) reaches this (0 to 1).
    #[arg(long, value_parser = float_in(0.0, 1.0))]
    stop_at_accuracy: Option<f64>,
    /// Save the training state every N epochs in the folder OUT with `.checkpoints` for
    /// its extension (`model.checkpoints/` for `--out model.safetensors`); 0: only where
    /// Ctrl-C stopped training.
    #[arg(long, default_value_t = 0, value_parser = count_in(0, MAX_EPOCHS))]
    checkpoint_every: usize,
    /// Go on from the newest checkpoint in that folder (bit for bit as if training had
    /// never stopped; --epochs may be raised).
    #[arg(long)]
    resume: bool,
    /// Worker threads (default: all cores).
    #[arg(long, value_parser = threads_parser())]
    threads: Option<usize>,
    /// Where to write the weights.
    #[arg(long)]
    out: PathBuf,
}

/// The arguments of `sanity attribute`.
#[derive(clap::Args)]
struct AttributeArgs {
    /// Preset name or architecture TOML.
    #[arg(long, required_unless_present = "onnx", requires = "weights")]
    arch: Option<String>,
    /// Weights (safetensors, PyTorch names).
    #[arg(long, requires = "arch")]
    weights: Option<PathBuf>,
    /// A model exported by torch.onnx.export instead of --arch and --weights (every method
    /// runs on it).
    #[arg(long, conflicts_with_all = ["arch", "weights"])]
    onnx: Option<PathBuf>,
    /// Images, NPY float32 of shape (n, c, h, w).
    #[arg(long)]
    input: PathBuf,
    /// Method id (--help lists them).
    #[arg(long, long_help = format!("Method id:\n{}", sanity_attribution::registry::method_help()))]
    method: String,
    /// One explained output for every image (default: the model's prediction).
    #[arg(long, conflicts_with = "targets", value_parser = count_in(0, MAX_CLASSES - 1))]
    target: Option<usize>,
    /// One explained output per image, NPY integers of shape (n,).
    #[arg(long)]
    targets: Option<PathBuf>,
    /// Layer of the CAM methods (default: the last conv layer).
    #[arg(long)]
    layer: Option<String>,
    /// Method parameter, e.g. --set steps=20.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    params: Vec<String>,
    /// Reference images of expected_gradients, NPY float32 of shape (m, c, h, w).
    #[arg(long)]
    references: Option<PathBuf>,
    /// Images per call.
    #[arg(long, default_value_t = 32, value_parser = count_in(1, MAX_ATTRIBUTION_BATCH))]
    batch: usize,
    /// Worker threads (default: all cores).
    #[arg(long, value_parser = threads_parser())]
    threads: Option<usize>,
    /// Where to write the maps (NPY float32).
    #[arg(long)]
    out: PathBuf,
}

/// The arguments of `sanity compare`.
#[derive(clap::Args)]
struct CompareArgs {
    /// Maps, NPY of shape (n, c, h, w) or (n, h, w).
    a: PathBuf,
    /// Maps of the same shape.
    b: PathBuf,
    /// Metric: a name (spearman) or a TOML inline table ('{ metric = "ssim", data_range = 1.0 }'); repeatable.
    #[arg(long = "metric", required = true, long_help = metric_long_help())]
    metrics: Vec<String>,
    /// Post-processing step applied to both, in order: a name (abs) or a TOML inline table; repeatable.
    #[arg(long = "postprocess")]
    postprocess: Vec<String>,
    /// Worker threads (default: all cores).
    #[arg(long, value_parser = threads_parser())]
    threads: Option<usize>,
}

/// The arguments of `sanity report`.
#[derive(clap::Args)]
struct ReportArgs {
    /// The run directory (as written by `sanity run` or `sanity merge`), or a sweep's
    /// folder of run directories (each gets its own report).
    dir: PathBuf,
    /// At most this many example images get a map grid (default: all the run kept; the
    /// config's `report.examples` decides how many it keeps).
    #[arg(long, value_parser = count_in(0, MAX_EXAMPLES))]
    examples: Option<usize>,
    /// Side of a map cell in the grids, in pixels (8 to 1024).
    #[arg(long, default_value_t = 112, value_parser = count_in(8, 1024))]
    cell: usize,
}

/// The arguments of `sanity explain`.
#[derive(clap::Args)]
struct ExplainArgs {
    /// Preset name or architecture TOML.
    #[arg(long, required_unless_present = "onnx", requires = "weights")]
    arch: Option<String>,
    /// Weights (safetensors, PyTorch names).
    #[arg(long, requires = "arch")]
    weights: Option<PathBuf>,
    /// A model exported by torch.onnx.export instead of --arch and --weights.
    #[arg(long, conflicts_with_all = ["arch", "weights"])]
    onnx: Option<PathBuf>,
    /// phantom, fashion-mnist, fashion-mnist:DIR, or a `[data]` table inline
    /// ('{ source = "arrays", images = "x.npy", labels = "y.npy" }').
    #[arg(long)]
    data: String,
    /// Method ids, comma-separated (e.g. gradcam,integrated_gradients; --help lists them).
    #[arg(
        long,
        value_delimiter = ',',
        required = true,
        long_help = format!("Method ids, comma-separated:\n{}", sanity_attribution::registry::method_help())
    )]
    methods: Vec<String>,
    /// Layer of the CAM methods (default: the last conv layer).
    #[arg(long)]
    layer: Option<String>,
    /// Images explained (the first N of the test set; at most 1000).
    #[arg(long, default_value_t = 10, value_parser = count_in(1, 1000))]
    n: usize,
    /// Post-processing step applied to every map before drawing and comparing, in order: a
    /// name (abs) or a TOML inline table; repeatable. Default: none (raw maps; channels
    /// summed for drawing).
    #[arg(long = "postprocess")]
    postprocess: Vec<String>,
    /// Metric of agreement.csv: a name or a TOML inline table ('{ metric = "ssim",
    /// data_range = 1.0 }'); repeatable. Default: spearman.
    #[arg(long = "metric", default_value = "spearman", long_help = metric_long_help())]
    metrics: Vec<String>,
    /// Seed of the data and of stochastic methods.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Side of a panel, in pixels (16 to 1024).
    #[arg(long, default_value_t = 256, value_parser = count_in(16, 1024))]
    panel: usize,
    /// How maps are coloured: diverging (blue-white-red centred on zero, so zero is white
    /// in every panel) or jet (the seed lesson's, over each panel's own range).
    #[arg(long, default_value = "diverging", value_parser = ["diverging", "jet"])]
    colormap: String,
    /// Opacity of the maps over the image, 0 (the image only) to 1 (the map only).
    #[arg(long, default_value_t = 0.5, value_parser = float_in(0.0, 1.0))]
    alpha: f64,
    /// Worker threads (default: all cores).
    #[arg(long, value_parser = threads_parser())]
    threads: Option<usize>,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
}

/// The arguments of `sanity plan`.
#[derive(clap::Args)]
struct PlanArgs {
    /// The experiment TOML; without it, the embedded experiments/quick.toml.
    config: Option<PathBuf>,
    /// Override a config key by its dotted path.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// The memory a run may take, in GiB (default: the machine's).
    #[arg(long, value_name = "GIB", value_parser = float_in(0.01, 1e6))]
    memory_limit: Option<f64>,
}

/// The most worker threads (`--threads`): far beyond any machine's cores, and each thread
/// costs a stack and an allocator arena.
const MAX_THREADS: usize = 1024;

/// A parser of whole numbers from `lo` to `hi` (a clap error, exit 2, names the flag).
fn count_in(lo: usize, hi: usize) -> impl Fn(&str) -> std::result::Result<usize, String> + Clone + Send + Sync {
    move |text| match text.trim().parse::<usize>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => Err(format!("`{text}`; accepted: a whole number from {lo} to {hi}")),
    }
}

/// `--metric`'s long help: the forms and every metric.
fn metric_long_help() -> String {
    format!(
        "Metric: a name (spearman) or a TOML inline table ('{{ metric = \"ssim\", data_range = 1.0 }}'); repeatable.\n{}",
        sanity_metrics::registry::metric_help()
    )
}

/// `--threads`: 1 to [`MAX_THREADS`].
fn threads_parser() -> impl Fn(&str) -> std::result::Result<usize, String> + Clone + Send + Sync {
    count_in(1, MAX_THREADS)
}

/// A parser of numbers from `lo` to `hi`, both included.
fn float_in(lo: f64, hi: f64) -> impl Fn(&str) -> std::result::Result<f64, String> + Clone + Send + Sync {
    move |text| match text.trim().parse::<f64>() {
        Ok(v) if (lo..=hi).contains(&v) => Ok(v),
        _ => Err(format!("`{text}`; accepted: a number from {lo} to {hi}")),
    }
}

/// A parser of numbers from `lo` (included) to `hi` (excluded).
fn float_below(lo: f64, hi: f64) -> impl Fn(&str) -> std::result::Result<f64, String> + Clone + Send + Sync {
    move |text| match text.trim().parse::<f64>() {
        Ok(v) if v >= lo && v < hi => Ok(v),
        _ => Err(format!("`{text}`; accepted: a number from {lo} up to (not including) {hi}")),
    }
}

/// A finite number > 0.
fn positive_float(text: &str) -> std::result::Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("`{text}`; accepted: a finite number > 0")),
    }
}

/// Sets the memory limit of plans from `--memory-limit` (GiB).
fn set_memory_limit(gib: Option<f64>) {
    if let Some(gib) = gib {
        sanity_experiments::limits::set_memory_limit((gib * f64::from(1u32 << 30)) as u64);
    }
}

/// Sets the worker count for rayon and for candle's matmul (which reads RAYON_NUM_THREADS).
fn set_threads(threads: Option<usize>) -> Result<usize> {
    let n = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    #[allow(unsafe_code)]
    // SAFETY: called at the start of main, before any other thread exists, so no other thread
    // can read the environment concurrently.
    unsafe {
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    rayon::ThreadPoolBuilder::new().num_threads(n).build_global().context("starting the worker threads")?;
    Ok(n)
}

fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg:<28} [{bar:30}] {pos}/{len} {per_sec} {elapsed_precise} eta {eta}",
        )
        .expect("the template is valid")
        .progress_chars("=> "),
    );
    bar
}

/// Draws a library progress event on the bar.
fn show(bar: &ProgressBar, p: Progress) {
    match p {
        Progress::Phase { name, total } => {
            bar.set_message(name);
            bar.set_length(total);
            bar.set_position(0);
        }
        Progress::Advance(n) => bar.inc(n),
        Progress::Note(line) => bar.suspend(|| eprintln!("{line}")),
        Progress::Status(line) => bar.set_message(line),
    }
}

fn execute(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Plan(args) => plan_command(args),
        Command::Train(args) => train_command(args),
        Command::Compare(args) => compare_command(args),
        Command::Attribute(args) => attribute_command(args),
        Command::Run(args) => run_command(args),
        Command::Report(args) => report_command(args),
        Command::Explain(args) => explain_command(args),
        Command::Merge(args) => merge_command(args),
        Command::Inspect(args) => {
            print!("{}", jobs::inspect::inspect(&args.model, args.input, args.classes)?);
            Ok(())
        }
    }
}

/// `sanity plan`.
fn plan_command(args: PlanArgs) -> Result<()> {
    let PlanArgs { config, overrides, memory_limit } = args;
    set_memory_limit(memory_limit);
    let plans = load_plans(config.as_deref(), &overrides)?;
    print!("{}", plan_text(&plans));
    Ok(())
}

/// `sanity train`.
fn train_command(args: TrainArgs) -> Result<()> {
    let TrainArgs {
        arch,
        data,
        n_train,
        epochs,
        batch_size,
        lr,
        seed,
        optimizer,
        momentum,
        labels,
        stop_at_accuracy,
        checkpoint_every,
        resume,
        threads,
        out,
    } = args;
    set_threads(threads)?;
    let optimizer = if optimizer == "sgd" { OptimizerKind::Sgd } else { OptimizerKind::Adamw };
    let training = TrainingConfig {
        epochs,
        batch_size,
        learning_rate: lr,
        optimizer,
        momentum,
        checkpoint_every,
        ..TrainingConfig::default()
    };
    let random_labels = labels == "random";
    let data = parse_data(&data, n_train)?;
    let interrupt = Some(&INTERRUPTED);
    let job = TrainJob { arch, data, training, seed, random_labels, stop_at_accuracy, resume, interrupt };
    catch_stop_signals()?;
    let bar = progress_bar();
    let outcome = train_model(&job, &out, &mut |p| show(&bar, p))?;
    bar.finish_and_clear();
    eprintln!("train accuracy {:.4}, test accuracy {:.4}", outcome.train_accuracy, outcome.test_accuracy);
    println!("{}", out.display());
    Ok(())
}

/// `sanity compare`.
fn compare_command(args: CompareArgs) -> Result<()> {
    let CompareArgs { a, b, metrics, postprocess, threads } = args;
    set_threads(threads)?;
    let rows = compare(&CompareJob { a, b, postprocess, metrics })?;
    println!("pair,postprocess,metric,score,status");
    for r in rows {
        let score = r.score.map(|s| s.to_string()).unwrap_or_default();
        println!("{},{},{},{score},{}", r.pair, r.postprocess, r.metric, r.status);
    }
    Ok(())
}

/// `sanity attribute`.
fn attribute_command(args: AttributeArgs) -> Result<()> {
    let AttributeArgs {
        arch,
        weights,
        onnx,
        input,
        method,
        target,
        targets,
        layer,
        params,
        references,
        batch,
        threads,
        out,
    } = args;
    set_threads(threads)?;
    let job = AttributeJob {
        model: job_model(onnx, arch, weights)?,
        input,
        method,
        layer,
        params,
        target,
        targets,
        references,
        batch,
    };
    let used = attribute_to_npy(&job, &out)?;
    eprintln!(
        "{} maps written (targets {:?}{})",
        used.len(),
        &used[..used.len().min(8)],
        if used.len() > 8 { ", ..." } else { "" }
    );
    println!("{}", out.display());
    Ok(())
}

/// `--onnx FILE`, or `--arch` with `--weights` (clap requires one or the other).
fn job_model(onnx: Option<PathBuf>, arch: Option<String>, weights: Option<PathBuf>) -> Result<JobModel> {
    match (onnx, arch, weights) {
        (Some(path), _, _) => Ok(JobModel::Onnx(path)),
        (None, Some(arch), Some(weights)) => Ok(JobModel::Sequential { arch, weights }),
        _ => {
            let why = "give --onnx FILE, or --arch with --weights";
            Err(ExperimentError::config("--arch/--weights/--onnx", why).into())
        }
    }
}

/// `sanity run`.
fn run_command(args: RunArgs) -> Result<()> {
    let RunArgs { config, out, overrides, threads, memory_limit, force, resume, no_model_cache, shard } = args;
    let threads = set_threads(threads)?;
    set_memory_limit(memory_limit);
    let plans = load_plans(config.as_deref(), &overrides)?;
    catch_stop_signals()?;
    let request =
        RunRequest { out, force, resume, model_cache: !no_model_cache, shard, threads, interrupt: Some(&INTERRUPTED) };
    let mut bar = None;
    run_plans(&plans, &request, &mut |event| match event {
        RunEvent::NothingToDo(line) => eprintln!("{line}"),
        RunEvent::Started => bar = Some(progress_bar()),
        RunEvent::Progress(p) => {
            if let Some(bar) = &bar {
                show(bar, p);
            }
        }
        RunEvent::Finished(outcome) => {
            if let Some(bar) = bar.take() {
                bar.finish_and_clear();
            }
            eprintln!(
                "done in {:.1} s with {threads} threads: test accuracy {:.4}, {} scores",
                outcome.seconds, outcome.test_accuracy, outcome.score_rows
            );
            println!("{}", outcome.run_dir.display());
            if shard.is_none() {
                eprintln!("figures and report.md: sanity report {}", outcome.run_dir.display());
            }
        }
    })?;
    Ok(())
}

/// `sanity report`.
fn report_command(args: ReportArgs) -> Result<()> {
    let ReportArgs { dir, examples, cell } = args;
    let options = ReportOptions { examples, cell: cell as u32 };
    for run_dir in report_dirs(&dir)? {
        let figures = report(&run_dir, &options)?;
        eprintln!("{} figures in {}", figures.len(), run_dir.join(FIGURES_DIR).display());
        println!("{}", run_dir.join(REPORT_MD).display());
    }
    Ok(())
}

/// `sanity explain`.
fn explain_command(args: ExplainArgs) -> Result<()> {
    let ExplainArgs {
        arch,
        weights,
        onnx,
        data,
        methods,
        layer,
        n,
        postprocess,
        metrics,
        seed,
        panel,
        colormap,
        alpha,
        threads,
        out,
    } = args;
    set_threads(threads)?;
    let colors = match colormap.as_str() {
        "jet" => OverlayColors::Jet,
        _ => OverlayColors::Diverging,
    };
    let job = ExplainJob {
        model: job_model(onnx, arch, weights)?,
        data: parse_data(&data, None)?,
        methods,
        layer,
        n,
        postprocess,
        metrics,
        seed,
        panel: panel as u32,
        colors,
        alpha,
    };
    for path in explain(&job, &out)? {
        println!("{}", path.display());
    }
    Ok(())
}

/// `sanity merge`.
fn merge_command(args: MergeArgs) -> Result<()> {
    let MergeArgs { dirs, out, force } = args;
    for dir in merge(&dirs, &out, force)? {
        println!("{}", dir.display());
    }
    Ok(())
}

/// Keeps freed memory in glibc's heap instead of returning it to the kernel: every op of a
/// forward/backward pass allocates its output, and with the default settings each large
/// buffer is fresh memory that page-faults on first touch (measured: an integrated-gradients
/// batch of the adebayo-cnn is 21% faster, `benches/methods.rs`, 2 threads).
/// - No buffer is mmapped: a ResNet-18's activations for 16 images at 224x224 are 51 MB a
///   layer, above any mmap threshold glibc accepts, and its forward + input gradient takes
///   0.55 s in place of 0.95 s with them mmapped (`crates/sanity-model/examples/walk_resnet18.rs`).
/// - One arena: rayon's threads would otherwise allocate from heaps of their own, which glibc
///   unmaps whenever one empties, whatever the trim threshold; the ResNet benchmark with 4
///   images (`experiments/bench-resnet18.toml`, `--set attribution.n_images=4`) took 62.6 s of
///   attribution with per-thread arenas and 37.1 s with one, peak RSS 0.92 GB either way.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    #[allow(unsafe_code)]
    // SAFETY: mallopt only sets allocator parameters; it is called first thing in main, before
    // any other thread exists or any large allocation is made.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

/// Set by the first SIGINT or SIGTERM: a run stops after the image batch or training epoch in
/// flight.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// From here on, the first Ctrl-C (SIGINT) or SIGTERM (a Slurm time limit, `kill`) asks a run to
/// stop cleanly after the image batch in flight (finished batches kept) or the training epoch
/// in flight (its state checkpointed), exit code 130; the second stops the process as the
/// signal's default action would. Only `sanity run` and `sanity train` install it: the other
/// commands stop at the first signal. The signals are received by signal-hook's iterator on a
/// thread of its own, so no code of ours runs inside a signal handler.
fn catch_stop_signals() -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).context("catching SIGINT and SIGTERM")?;
    std::thread::Builder::new()
        .name("stop-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if INTERRUPTED.swap(true, Ordering::SeqCst) {
                    // The second signal: stop now, as if it had never been caught.
                    let _ = signal_hook::low_level::emulate_default_handler(signal);
                    std::process::exit(130);
                }
                eprintln!("\nstopping after the image batch or training epoch in flight (Ctrl-C again to stop now)");
            }
        })
        .context("starting the signal thread")?;
    Ok(())
}

fn main() -> ExitCode {
    tune_allocator();
    match execute(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let code = err.downcast_ref::<ExperimentError>().map_or(1, ExperimentError::exit_code);
            match code {
                130 => eprintln!("{err:#}"),
                _ => eprintln!("error: {err:#}"),
            }
            ExitCode::from(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use std::any::TypeId;

    /// Numeric flags whose every value is a legitimate value, not a size: a seed names a
    /// stream, and a learning rate that diverges is stopped by the training.
    const VALUES_NOT_SIZES: &[&str] = &["seed", "lr"];

    #[test]
    fn every_numeric_flag_refuses_a_huge_value_before_anything_runs() {
        let numeric = [TypeId::of::<usize>(), TypeId::of::<u32>(), TypeId::of::<u64>(), TypeId::of::<f64>()];
        let cli = Cli::command();
        let mut checked = Vec::new();
        for sub in cli.get_subcommands() {
            for arg in sub.get_arguments() {
                let id = arg.get_value_parser().type_id();
                let Some(long) = arg.get_long() else { continue };
                if !numeric.iter().any(|t| id == *t) || VALUES_NOT_SIZES.contains(&long) {
                    continue;
                }
                for huge in ["1000000000000", "1e300", "-1"] {
                    let flag = format!("--{long}");
                    let parsed = Cli::try_parse_from(["sanity", sub.get_name(), &format!("{flag}={huge}")]);
                    let error = parsed.err().unwrap_or_else(|| panic!("{} {flag} {huge} was accepted", sub.get_name()));
                    assert_eq!(
                        error.kind(),
                        clap::error::ErrorKind::ValueValidation,
                        "{} {flag} {huge}",
                        sub.get_name()
                    );
                    assert_eq!(error.exit_code(), 2);
                    assert!(error.to_string().contains(&flag) && error.to_string().contains("accepted"), "{error}");
                }
                checked.push(format!("{} --{long}", sub.get_name()));
            }
        }
        // The walk found the flags (a change of types must not make it vacuous).
        for expected in ["run --threads", "train --epochs", "report --cell", "explain --panel", "explain --n"] {
            assert!(checked.iter().any(|c| c == expected), "{expected} not walked: {checked:?}");
        }
    }
}
