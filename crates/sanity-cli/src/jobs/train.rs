//! `sanity train`: train an architecture on a data source and save its weights.

use sanity_experiments::Progress;
use sanity_experiments::plan::{DataPlan, resolve_model};
use sanity_experiments::run_models::{Checkpoints, train_resumable};
use sanity_model::{Checkpoint, EpochStats, NetModel, TrainSpec};
use sanity_rundir::config::{DataConfig, ModelConfig, TrainingConfig, default_fashion_dir};
use sanity_rundir::error::{ExperimentError, Result};
use std::path::{Path, PathBuf};

/// What to train.
#[derive(Debug, Clone)]
pub struct TrainJob {
    /// Preset name or architecture file.
    pub arch: String,
    /// The data.
    pub data: DataConfig,
    /// Hyper-parameters.
    pub training: TrainingConfig,
    /// Seed of the initialisation, shuffles and dropout (and of the label permutation).
    pub seed: u64,
    /// Train on randomly permuted labels ([`sanity_data::Dataset::with_permuted_labels`]).
    pub random_labels: bool,
    /// Stop once the training accuracy (on the labels trained on) reaches this.
    pub stop_at_accuracy: Option<f64>,
    /// Go on from the newest checkpoint in [`checkpoint_dir`] of the output.
    pub resume: bool,
    /// Set (by the SIGINT/SIGTERM handler) to stop after the epoch in flight, its state
    /// checkpointed.
    pub interrupt: Option<&'static std::sync::atomic::AtomicBool>,
}

/// Where `sanity train --out OUT` keeps its checkpoints: OUT with the extension `checkpoints`.
pub fn checkpoint_dir(out: &Path) -> PathBuf {
    out.with_extension("checkpoints")
}

/// What training achieved.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// Accuracy on the training images (evaluation mode) against the labels trained on.
    pub train_accuracy: f64,
    /// Accuracy on the test images.
    pub test_accuracy: f64,
}

/// Parses a `--data` value: `phantom`, `fashion-mnist`, `fashion-mnist:DIR`, or a config's
/// `[data]` table inline (`{ source = "arrays", images = "x.npy", labels = "y.npy" }`), with an
/// optional limit on the training images (of the named sources).
pub fn parse_data(value: &str, n_train: Option<usize>) -> Result<DataConfig> {
    let bad = || {
        ExperimentError::config(
            "--data",
            format!(
                "`{value}`; accepted: phantom, fashion-mnist, fashion-mnist:DIR, or a [data] table inline, e.g. {{ source = \"arrays\", images = \"x.npy\", labels = \"y.npy\" }}"
            ),
        )
    };
    if value.trim_start().starts_with('{') {
        if n_train.is_some() {
            return Err(ExperimentError::config(
                "--n-train",
                "not with an inline --data table; give its own n_train (or test_fraction) instead",
            ));
        }
        // A `[data]` table written inline, parsed as `sanity compare` parses its items.
        return super::compare::parse_item(value, "source", "--data");
    }
    match value.split_once(':') {
        None if value == "phantom" => Ok(DataConfig::Phantom {
            n_train: n_train.unwrap_or(1200),
            n_test: 300,
            size: sanity_rundir::config::default_size(),
            noise_std: sanity_rundir::config::default_noise_std(),
            effusion_fraction: sanity_rundir::config::default_effusion_fraction(),
            shortcut_rate: None,
        }),
        None if value == "fashion-mnist" => {
            Ok(DataConfig::FashionMnist { dir: default_fashion_dir(), n_train, n_test: None })
        }
        Some(("fashion-mnist", dir)) => Ok(DataConfig::FashionMnist { dir: PathBuf::from(dir), n_train, n_test: None }),
        _ => Err(bad()),
    }
}

/// Trains `job` and writes the weights (PyTorch names) to `out`.
pub fn train_model(job: &TrainJob, out: &Path, progress: &mut dyn FnMut(Progress)) -> Result<TrainOutcome> {
    let data = DataPlan::from_config(&job.data, "--data")?;
    let model = ModelConfig { arch: job.arch.clone(), onnx: None, weights: None };
    let (net, _) = resolve_model(&model, &data).map_err(|(_, message)| ExperimentError::config("--arch", message))?;
    let (train_set, test_set) = data.load(job.seed)?;
    let train_set = if job.random_labels { train_set.with_permuted_labels(job.seed) } else { train_set };
    let initial = NetModel::new(net.clone(), net.init(job.seed)?);
    let checkpoints = checkpoint_dir(out);
    let spec = TrainSpec {
        stop_at_accuracy: job.stop_at_accuracy,
        checkpoint_dir: Some(checkpoints.clone()),
        ..job.training.spec()
    };
    if !job.resume {
        let removed = Checkpoint::remove_all(&checkpoints).map_err(|e| ExperimentError::io(&checkpoints, e))?;
        if removed > 0 {
            let shown = checkpoints.display();
            progress(Progress::Note(format!(
                "removed {removed} files of an earlier training's checkpoints in {shown}"
            )));
        }
    }
    let places = Checkpoints::alone(checkpoints, job.resume, "delete the folder or train without --resume");
    let describe =
        |s: &EpochStats| format!("epoch {}: loss {:.4}, running accuracy {:.4}", s.epoch, s.loss, s.running_accuracy);
    let stop = || job.interrupt.is_some_and(|flag| flag.load(std::sync::atomic::Ordering::SeqCst));
    let (weights, _, _) =
        train_resumable(&initial, &train_set, &spec, job.seed, ("training", &describe), &places, &stop, progress)?;
    weights.save_safetensors(out)?;
    let trained = initial.with_weights(weights);
    Ok(TrainOutcome { train_accuracy: trained.accuracy(&train_set)?, test_accuracy: trained.accuracy(&test_set)? })
}
