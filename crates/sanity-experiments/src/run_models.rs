//! The models of a run: the trained model and the data randomisation test's model on
//! permuted labels, each loaded from `model.weights`, from the run directory (`--resume`), from
//! the model cache, or trained (going on from the newest checkpoint with `--resume`).

use crate::config::TestConfig;
use crate::error::{ExperimentError, Result};
use crate::manifest::RandomLabelReport;
use crate::model_cache::{CacheClaim, ModelCache};
use crate::plan::Plan;
use crate::run::{Progress, RunOptions};
use sanity_data::Dataset;
use sanity_model::{Checkpoint, EpochStats, Model, TrainSpec, Training, Weights, accuracy, init_weights, train_from};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

/// Trains the model (or loads `model.weights`), saving the weights as `model.safetensors`.
pub(crate) fn build_model(
    plan: &Plan,
    train_set: &Dataset,
    dir: &Path,
    options: &RunOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<(Model, Vec<sanity_model::EpochStats>, String)> {
    let resume = options.resume;
    let config = &plan.config;
    if let Some(path) = &config.model.weights {
        let weights = Weights::load_safetensors(path, &plan.arch)?;
        return Ok((Model::new(plan.arch.clone(), weights), Vec::new(), path.display().to_string()));
    }
    let saved = dir.join("model.safetensors");
    if resume && saved.exists() {
        let weights = Weights::load_safetensors(&saved, &plan.arch)?;
        return Ok((Model::new(plan.arch.clone(), weights), Vec::new(), "trained (resumed)".into()));
    }
    let key = ModelCache::key(config, "true");
    // Held until the model is trained and stored, so that runs beside this one wait and load it.
    let claim = claim(options, &key, progress)?;
    let places = Checkpoints::of(options, claim.as_ref(), &key, dir.join(CHECKPOINTS));
    if let Some(cache) = &options.model_cache
        && let Some((weights, epochs)) = cache.load(&key, &plan.arch)?
    {
        weights.save_safetensors(&dir.join("model.safetensors"))?;
        progress(Progress::Note(format!("model {key} from the model cache")));
        places.keep(progress);
        return Ok((Model::new(plan.arch.clone(), weights), epochs, format!("trained (model cache {key})")));
    }
    let initial = Model::new(plan.arch.clone(), init_weights(&plan.arch, config.seed)?);
    let spec = TrainSpec { checkpoint_dir: Some(places.dir.clone()), ..config.training.spec() };
    let describe =
        |s: &EpochStats| format!("epoch {}: loss {:.4}, running accuracy {:.4}", s.epoch, s.loss, s.running_accuracy);
    let (weights, epochs, origin) =
        train_resumable(&initial, train_set, &spec, config.seed, ("training", &describe), &places, options, progress)?;
    weights.save_safetensors(&dir.join("model.safetensors"))?;
    if let Some(cache) = &options.model_cache {
        cache.store(&key, &weights, &epochs)?;
    }
    places.keep(progress);
    drop(claim);
    Ok((initial.with_weights(weights), epochs, origin))
}

/// The checkpoint folder of the trained model in a run directory.
pub const CHECKPOINTS: &str = "checkpoints";
/// The checkpoint folder of the random-label model in a run directory.
pub const RANDOM_LABEL_CHECKPOINTS: &str = "checkpoints-random-labels";

/// Where a model's checkpoints are written while it trains, and where they end up. With the
/// model cache (and its lock) they are kept beside it (`.model-cache/<key>.checkpoints/`), so
/// that whichever run trains the model next (a shard that waited for the lock, a job
/// resubmitted after a time limit) goes on from them, and they join the run directory's
/// folder once the model is trained. Without it they are the run directory's. `--resume` also
/// looks in the run directory's folder, and goes on from the newest checkpoint of the two.
struct Checkpoints {
    /// Written while training.
    dir: PathBuf,
    /// Whether training goes on from the newest checkpoint in `dir`.
    go_on: bool,
    /// The run directory's folder, when `dir` is beside the model cache: the checkpoints join it
    /// once the model is trained and stored.
    keep_in: Option<PathBuf>,
    /// Whether `--resume` asks to look in the run directory's folder too.
    resume: bool,
}

impl Checkpoints {
    /// The places of the model with cache key `key` (`claim`: its lock, if taken), whose
    /// run-directory folder is `run_folder`.
    fn of(options: &RunOptions, claim: Option<&CacheClaim>, key: &str, run_folder: PathBuf) -> Self {
        let resume = options.resume;
        match (&options.model_cache, claim.is_some_and(CacheClaim::is_held)) {
            (Some(cache), true) => {
                Self { dir: cache.checkpoint_dir(key), go_on: true, keep_in: Some(run_folder), resume }
            }
            _ => Self { dir: run_folder, go_on: resume, keep_in: None, resume },
        }
    }

    /// The newest usable checkpoint of `arch` up to `spec.epochs`, and the folder it is in.
    /// One beside the cache that cannot be read or is of other data or settings (a changed
    /// .npy under the same path, a built-in architecture changed between versions) is dropped
    /// with a note; one in the run directory is an error that says what to do.
    fn start(
        &self,
        arch: &sanity_model::Architecture,
        spec: &TrainSpec,
        seed: u64,
        data: &Dataset,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Option<(Checkpoint, PathBuf)>> {
        let usable = |dir: &Path| -> std::result::Result<Option<Checkpoint>, String> {
            let Some(checkpoint) = Checkpoint::latest(dir, arch, spec.epochs).map_err(|e| e.to_string())? else {
                return Ok(None);
            };
            match checkpoint.meta.mismatch(arch, spec, seed, &data.fingerprint()) {
                None => Ok(Some(checkpoint)),
                Some(why) => Err(why),
            }
        };
        let mut found: Option<(Checkpoint, PathBuf)> = None;
        if self.go_on {
            match usable(&self.dir) {
                Ok(checkpoint) => found = checkpoint.map(|c| (c, self.dir.clone())),
                Err(why) if self.keep_in.is_some() => {
                    progress(Progress::Note(format!("not going on from {} ({why}); dropped", self.dir.display())));
                    std::fs::remove_dir_all(&self.dir).map_err(|e| ExperimentError::io(&self.dir, e))?;
                }
                Err(why) => return Err(refused(&self.dir, why)),
            }
        }
        if let (true, Some(run_folder)) = (self.resume, &self.keep_in) {
            let own = usable(run_folder).map_err(|why| refused(run_folder, why))?;
            if let Some(own) = own.filter(|c| found.as_ref().is_none_or(|(f, _)| c.meta.epoch > f.meta.epoch)) {
                found = Some((own, run_folder.clone()));
            }
        }
        Ok(found)
    }

    /// Moves the checkpoints beside the cache into the run directory's folder (file by file;
    /// checkpoints of the same epoch there are replaced, other files left alone). What cannot
    /// be moved stays beside the cache, and a note says so.
    fn keep(&self, progress: &mut dyn FnMut(Progress)) {
        let Some(to) = &self.keep_in else { return };
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        let moved = std::fs::create_dir_all(to).and_then(|()| {
            for entry in entries {
                let from = entry?.path();
                let target = to.join(from.file_name().unwrap_or_default());
                // A rename across file systems fails: copy, then remove.
                if std::fs::rename(&from, &target).is_err() {
                    std::fs::copy(&from, &target)?;
                    std::fs::remove_file(&from)?;
                }
            }
            std::fs::remove_dir(&self.dir)
        });
        if let Err(e) = moved {
            progress(Progress::Note(format!(
                "checkpoints stay in {} (cannot move them to {}: {e})",
                self.dir.display(),
                to.display()
            )));
        }
    }
}

/// A checkpoint in a run directory that training cannot go on from: a bad-input error that
/// says how to start afresh.
fn refused(dir: &Path, why: String) -> ExperimentError {
    ExperimentError::Output {
        path: dir.display().to_string(),
        message: format!("cannot go on from its newest checkpoint: {why}; start afresh with --force"),
    }
}

/// Trains `initial` under `spec` as the phase `phase.0`, a note per epoch from `phase.1`.
/// Training goes on from the newest checkpoint in `places` where they say so (bit for bit as
/// if it had never stopped); a SIGINT stops it after the epoch in flight, its state saved
/// there. Returns the weights, every epoch's statistics and the origin for the manifest.
#[allow(clippy::too_many_arguments)]
fn train_resumable(
    initial: &Model,
    data: &Dataset,
    spec: &TrainSpec,
    seed: u64,
    phase: (&str, &dyn Fn(&EpochStats) -> String),
    places: &Checkpoints,
    options: &RunOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<(Weights, Vec<EpochStats>, String)> {
    let checkpoints = places.dir.clone();
    let found = places.start(&initial.arch, spec, seed, data, progress)?;
    let resumed_after = found.as_ref().map(|(c, _)| c.meta.epoch);
    if let Some((checkpoint, folder)) = &found {
        let shown = Checkpoint::files(folder, checkpoint.meta.epoch)[0].display().to_string();
        progress(Progress::Note(format!("{}: going on after epoch {} ({shown})", phase.0, checkpoint.meta.epoch)));
    }
    let start = found.map(|(c, _)| c);
    if options.interrupted() {
        return Err(ExperimentError::InterruptedEarly { what: format!("stopped before {} began", phase.0) });
    }
    let remaining = spec.epochs - resumed_after.unwrap_or(0);
    progress(Progress::Phase { name: phase.0.to_string(), total: remaining as u64 });
    let mut on_epoch = |s: &EpochStats| {
        progress(Progress::Note((phase.1)(s)));
        progress(Progress::Advance(1));
        match options.interrupted() {
            true => ControlFlow::Break(()),
            false => ControlFlow::Continue(()),
        }
    };
    match train_from(initial, data, spec, seed, start, &mut on_epoch)? {
        Training::Finished { weights, history } => {
            let origin = match resumed_after {
                Some(epoch) => format!("trained (went on from the checkpoint of epoch {epoch})"),
                None => "trained".to_string(),
            };
            Ok((weights, history, origin))
        }
        Training::Stopped { epoch } => Err(ExperimentError::InterruptedEarly {
            what: format!(
                "{} stopped after epoch {epoch} of {}, its state kept in {}",
                phase.0,
                spec.epochs,
                checkpoints.display()
            ),
        }),
    }
}

/// The model cache's lock on `key`, if there is a cache; a wait is reported as a note.
fn claim(options: &RunOptions, key: &str, progress: &mut dyn FnMut(Progress)) -> Result<Option<CacheClaim>> {
    let Some(cache) = &options.model_cache else { return Ok(None) };
    cache.claim(key, &|| options.interrupted(), &mut |note| progress(Progress::Note(note))).map(Some)
}

/// The model of the data randomisation test: trained on permuted labels from the trained
/// model's initialisation until it memorises them (or loaded from the test's `weights`),
/// saved as `model-random-labels.safetensors`.
pub(crate) fn build_random_label_model(
    plan: &Plan,
    sets: (&Dataset, &Dataset),
    dir: &Path,
    options: &RunOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<Option<(Model, RandomLabelReport)>> {
    let resume = options.resume;
    let config = &plan.config;
    let Some(TestConfig::DataRandomization { target_accuracy, max_epochs, weights, n_train }) =
        config.tests.iter().find(|t| matches!(t, TestConfig::DataRandomization { .. }))
    else {
        return Ok(None);
    };
    let (full_train_set, test_set) = sets;
    let subset;
    let train_set = match n_train {
        Some(n) if *n < full_train_set.len() => {
            subset = full_train_set.first(*n);
            &subset
        }
        _ => full_train_set,
    };
    let permuted = train_set.with_permuted_labels(config.seed);
    let saved = dir.join("model-random-labels.safetensors");
    let key = ModelCache::key(config, &format!("permuted:{target_accuracy}:{max_epochs}:{n_train:?}"));
    let resumed = weights.is_none() && resume && saved.exists();
    // The lock is held until the model is trained and stored, not through the accuracies.
    let (model, epochs, origin) = {
        let claim = match weights.is_none() && !resumed {
            true => claim(options, &key, progress)?,
            false => None,
        };
        let places = Checkpoints::of(options, claim.as_ref(), &key, dir.join(RANDOM_LABEL_CHECKPOINTS));
        let cached = match (weights, &options.model_cache) {
            (None, Some(cache)) if !resumed => cache.load(&key, &plan.arch)?,
            _ => None,
        };
        match (weights, cached) {
            (Some(path), _) => {
                let model = Model::new(plan.arch.clone(), Weights::load_safetensors(path, &plan.arch)?);
                (model, Vec::new(), path.display().to_string())
            }
            (None, _) if resumed => {
                let model = Model::new(plan.arch.clone(), Weights::load_safetensors(&saved, &plan.arch)?);
                (model, Vec::new(), "trained (resumed)".to_string())
            }
            (None, Some((weights, epochs))) => {
                weights.save_safetensors(&saved)?;
                places.keep(progress);
                (Model::new(plan.arch.clone(), weights), epochs, format!("trained (model cache {key})"))
            }
            (None, None) => {
                let initial = Model::new(plan.arch.clone(), init_weights(&plan.arch, config.seed)?);
                let spec = TrainSpec {
                    epochs: *max_epochs,
                    stop_at_accuracy: Some(*target_accuracy),
                    checkpoint_dir: Some(places.dir.clone()),
                    ..config.training.spec()
                };
                let describe = |s: &EpochStats| {
                    let reached = s.train_accuracy.map(|a| format!(", train accuracy {a:.4}")).unwrap_or_default();
                    format!("random labels, epoch {}: loss {:.4}{reached}", s.epoch, s.loss)
                };
                let phase = ("training on permuted labels", &describe as &dyn Fn(&EpochStats) -> String);
                let (weights, epochs, origin) =
                    train_resumable(&initial, &permuted, &spec, config.seed, phase, &places, options, progress)?;
                weights.save_safetensors(&saved)?;
                if let Some(cache) = &options.model_cache {
                    cache.store(&key, &weights, &epochs)?;
                }
                places.keep(progress);
                (initial.with_weights(weights), epochs, origin)
            }
        }
    };
    let train_accuracy_random_labels = accuracy(&model, &permuted)?;
    let reached_target = train_accuracy_random_labels >= *target_accuracy;
    if !reached_target {
        progress(Progress::Note(format!(
            "warning: the random-label model reached train accuracy {train_accuracy_random_labels:.4}, below the target {target_accuracy}"
        )));
    }
    let report = RandomLabelReport {
        origin,
        n_train: train_set.len(),
        train_accuracy_random_labels,
        train_accuracy_true_labels: accuracy(&model, train_set)?,
        test_accuracy: accuracy(&model, test_set)?,
        target_accuracy: *target_accuracy,
        reached_target,
        epochs,
    };
    Ok(Some((model, report)))
}
