//! The models of a run: the trained model and the data randomisation test's model on
//! permuted labels, each loaded from `model.weights`, from the run directory (`--resume`), from
//! the model cache, or trained (going on from the newest checkpoint with `--resume`).

use crate::checked::{RandomLabels, TestKind};
use crate::model_cache::{CacheClaim, ModelInputs, ModelRecord};
use crate::plan::Plan;
use crate::run::{Progress, RunOptions};
use sanity_data::Dataset;
use sanity_model::{
    BatchProgress, Checkpoint, EpochStats, ModelError, Net, NetModel, TrainSpec, Training, Weights, train_observed,
};
use sanity_rundir::error::{ExperimentError, Result};
use sanity_rundir::manifest::RandomLabelReport;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

/// The trained model's weights in a run directory.
pub const MODEL_FILE: &str = "model.safetensors";
/// The trained model's [`ModelRecord`] in a run directory.
pub const MODEL_RECORD: &str = "model.json";
/// The random-label model's weights in a run directory.
pub const RANDOM_LABEL_MODEL_FILE: &str = "model-random-labels.safetensors";
/// The random-label model's [`ModelRecord`] in a run directory.
pub const RANDOM_LABEL_MODEL_RECORD: &str = "model-random-labels.json";

/// Trains the model (or loads `model.weights`), saving the weights as `model.safetensors` and
/// its record as `model.json`. `train_print` is the training set's fingerprint.
pub(crate) fn build_model(
    plan: &Plan,
    train_set: &Dataset,
    train_print: &str,
    dir: &Path,
    options: &RunOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<(NetModel, Vec<sanity_model::EpochStats>, String)> {
    let config = &plan.config;
    if let (Some(weights), Some(path)) = (&plan.onnx_weights, &config.model.onnx) {
        return Ok((NetModel::new(plan.net.clone(), weights.clone()), Vec::new(), path.display().to_string()));
    }
    let inputs = ModelInputs::new(config, &plan.net, train_print.to_string(), "true");
    let source = ModelSource {
        net: &plan.net,
        given: config.model.weights.as_deref(),
        inputs: &inputs,
        saved: Saved { weights: dir.join(MODEL_FILE), record: dir.join(MODEL_RECORD) },
        checkpoints: dir.join(CHECKPOINTS),
        kill_point: Some("after_training"),
    };
    source.obtain(options, progress, &mut |places, progress| {
        let initial = NetModel::new(plan.net.clone(), plan.net.init(config.seed)?);
        let spec = TrainSpec { checkpoint_dir: Some(places.dir.clone()), ..config.training.spec() };
        let describe = |s: &EpochStats| {
            format!("epoch {}: loss {:.4}, running accuracy {:.4}", s.epoch, s.loss, s.running_accuracy)
        };
        let phase = ("training", &describe as &dyn Fn(&EpochStats) -> String);
        let stop = || options.interrupted();
        let (weights, epochs, origin) =
            train_resumable(&initial, train_set, &spec, config.seed, phase, places, &stop, progress)?;
        Ok((initial.with_weights(weights), epochs, origin))
    })
}

/// A model, trained or not, with its epochs and where it came from (for the manifest).
type Obtained = (NetModel, Vec<EpochStats>, String);

/// Where a run's model comes from, tried in order: the weights the config gives; the run
/// directory's own saved model (`--resume`, when its record vouches for it); the model cache;
/// else trained, then saved, stored in the cache, and its checkpoints kept.
struct ModelSource<'a> {
    /// The network.
    net: &'a Net,
    /// Weights the config gives (never trained).
    given: Option<&'a Path>,
    /// What the model depends on: its cache key.
    inputs: &'a ModelInputs,
    /// Its files in the run directory.
    saved: Saved,
    /// Its checkpoints' folder in the run directory.
    checkpoints: PathBuf,
    /// The kill point passed once it is trained and stored ([`crate::kill_points`]).
    kill_point: Option<&'static str>,
}

/// Trains a model, going on from the checkpoints in the places given.
type Train<'a> = dyn FnMut(&Checkpoints, &mut dyn FnMut(Progress)) -> Result<Obtained> + 'a;

impl ModelSource<'_> {
    /// The model, from the first source that has it; `train` trains it when none does. The
    /// model cache's lock on it is held until it is trained and stored.
    fn obtain(self, options: &RunOptions, progress: &mut dyn FnMut(Progress), train: &mut Train) -> Result<Obtained> {
        let (inputs, saved, net) = (self.inputs, &self.saved, self.net);
        if let Some(path) = self.given {
            let weights = net.load_weights(path)?;
            return Ok((NetModel::new(net.clone(), weights), Vec::new(), path.display().to_string()));
        }
        if options.resume
            && let Some((weights, epochs)) = saved.reuse(inputs, net, progress)?
        {
            return Ok((NetModel::new(net.clone(), weights), epochs, "trained (resumed)".into()));
        }
        let key = inputs.key();
        // Held until the model is trained and stored, so that runs beside this one wait and load it.
        let claim = claim(options, &key, progress)?;
        let places = Checkpoints::of(options, claim.as_ref(), &key, self.checkpoints);
        if let Some(cache) = &options.model_cache
            && let Some((weights, epochs)) = cache.load(inputs, net, &mut |n| progress(Progress::Note(n)))?
        {
            saved.write(inputs, &weights, &epochs)?;
            progress(Progress::Note(format!("model {key} from the model cache")));
            places.keep(progress);
            return Ok((NetModel::new(net.clone(), weights), epochs, format!("trained (model cache {key})")));
        }
        let (model, epochs, origin) = train(&places, progress)?;
        saved.write(inputs, &model.weights, &epochs)?;
        if let Some(cache) = &options.model_cache {
            cache.store(inputs, &model.weights, &epochs)?;
        }
        places.keep(progress);
        if let Some(point) = self.kill_point {
            crate::kill_points::point(point);
        }
        Ok((model, epochs, origin))
    }
}

/// A trained model's files in a run directory: the weights, then its record.
struct Saved {
    weights: PathBuf,
    record: PathBuf,
}

impl Saved {
    /// Writes the weights, then the record that vouches for them.
    fn write(&self, inputs: &ModelInputs, weights: &Weights, epochs: &[EpochStats]) -> Result<()> {
        let _ = std::fs::remove_file(&self.record);
        weights.save_safetensors(&self.weights)?;
        let hash = crate::run_inputs::file_hash(&self.weights)?;
        ModelRecord { inputs: inputs.clone(), weights: hash, epochs: epochs.to_vec() }.write(&self.record)
    }

    /// The model a resumed run saved, with its epochs, when its record vouches for it. Weights
    /// without a record (killed while saving) are trained again; weights whose record names
    /// other inputs, or that changed after they were saved, are refused.
    fn reuse(
        &self,
        inputs: &ModelInputs,
        net: &Net,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Option<(Weights, Vec<EpochStats>)>> {
        if !self.weights.exists() {
            return Ok(None);
        }
        let refuse = |why: String| ExperimentError::Output {
            path: self.weights.display().to_string(),
            message: format!("{why}; start again with --force"),
        };
        let record = match ModelRecord::read(&self.record) {
            Ok(record) => record,
            Err(why) => {
                let shown = self.record.display();
                progress(Progress::Note(format!("{shown}: {why}; the model is trained again")));
                return Ok(None);
            }
        };
        let differs = inputs.differences(&record.inputs);
        if !differs.is_empty() {
            return Err(refuse(format!("was trained on other inputs than this run's: {} differ", differs.join(", "))));
        }
        let (hash, loaded) = crate::run_inputs::read_weights(&self.weights, net)?;
        if hash != record.weights {
            return Err(refuse(format!(
                "is not the file {} describes (changed after it was saved)",
                self.record.display()
            )));
        }
        Ok(Some((loaded?, record.epochs)))
    }
}

/// The checkpoint folder of the trained model in a run directory.
pub const CHECKPOINTS: &str = "checkpoints";
/// The checkpoint folder of the random-label model in a run directory.
pub const RANDOM_LABEL_CHECKPOINTS: &str = "checkpoints-random-labels";

/// Where a model's checkpoints are written while it trains, and where they end up. With the
/// model cache (and its lock) they are kept beside it (`.model-cache/<key>.checkpoints/`), so
/// that whichever run trains the model next (a shard that waited for the lock, a job
/// resubmitted after a time limit) goes on from them, and they join the run directory's
/// folder once the model is trained. Without it they are the run directory's (or `sanity
/// train`'s `OUT.checkpoints/`), gone on from with `--resume` only. `--resume` also looks in
/// the run directory's folder, and goes on from the newest checkpoint of the two.
pub struct Checkpoints {
    /// Written while training.
    dir: PathBuf,
    /// The run directory's folder, when `dir` is beside the model cache: the checkpoints join it
    /// once the model is trained and stored.
    keep_in: Option<PathBuf>,
    /// Whether `--resume` was given.
    resume: bool,
    /// The advice of an error about a checkpoint training cannot go on from.
    hint: &'static str,
}

impl Checkpoints {
    /// The places of the model with cache key `key` (`claim`: its lock, if taken), whose
    /// run-directory folder is `run_folder`.
    fn of(options: &RunOptions, claim: Option<&CacheClaim>, key: &str, run_folder: PathBuf) -> Self {
        let (resume, hint) = (options.resume, "start afresh with --force");
        match (&options.model_cache, claim.is_some_and(CacheClaim::is_held)) {
            (Some(cache), true) => Self { dir: cache.checkpoint_dir(key), keep_in: Some(run_folder), resume, hint },
            _ => Self { dir: run_folder, keep_in: None, resume, hint },
        }
    }

    /// Checkpoints in `dir` alone, gone on from when `resume`; `hint` says what to do about
    /// one training cannot go on from.
    pub fn alone(dir: PathBuf, resume: bool, hint: &'static str) -> Self {
        Self { dir, keep_in: None, resume, hint }
    }

    /// The newest checkpoint of `arch` up to `spec.epochs`, and the folder it is in. One beside
    /// the cache that cannot be read is dropped with a note; one elsewhere is an error.
    fn start(
        &self,
        net: &Net,
        spec: &TrainSpec,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Option<(Checkpoint, PathBuf)>> {
        let newest = |dir: &Path| -> std::io::Result<Option<usize>> {
            Ok(Checkpoint::epochs(dir)?.into_iter().rfind(|&e| e <= spec.epochs))
        };
        // The folder of the newest checkpoint: beside the cache, or with --resume also the run
        // directory's when its own is newer. Only that one is read.
        let mut candidates: Vec<(usize, &PathBuf)> = Vec::new();
        if self.keep_in.is_some() || self.resume {
            candidates
                .extend(newest(&self.dir).map_err(|e| ExperimentError::io(&self.dir, e))?.map(|e| (e, &self.dir)));
        }
        if let (true, Some(run_folder)) = (self.resume, &self.keep_in) {
            candidates
                .extend(newest(run_folder).map_err(|e| ExperimentError::io(run_folder, e))?.map(|e| (e, run_folder)));
        }
        let Some(&(_, folder)) = candidates.iter().max_by_key(|(epoch, _)| *epoch) else { return Ok(None) };
        match Checkpoint::latest(folder, net, spec.epochs) {
            Ok(checkpoint) => Ok(checkpoint.map(|c| (c, folder.clone()))),
            Err(e) if self.is_shared(folder) => {
                self.drop_shared(&e.to_string(), progress)?;
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Whether `folder` is the one beside the model cache.
    fn is_shared(&self, folder: &Path) -> bool {
        self.keep_in.is_some() && folder == self.dir
    }

    /// Removes the checkpoints beside the cache, saying `why`.
    fn drop_shared(&self, why: &str, progress: &mut dyn FnMut(Progress)) -> Result<()> {
        progress(Progress::Note(format!("not going on from {} ({why}); dropped", self.dir.display())));
        std::fs::remove_dir_all(&self.dir).map_err(|e| ExperimentError::io(&self.dir, e))
    }

    /// Moves the checkpoints beside the cache into the run directory's folder
    /// ([`Checkpoint::move_all`]). What cannot be moved stays beside the cache, and a note says so.
    fn keep(&self, progress: &mut dyn FnMut(Progress)) {
        let Some(to) = &self.keep_in else { return };
        if !self.dir.exists() {
            return;
        }
        if let Err(e) = Checkpoint::move_all(&self.dir, to) {
            let (from, to) = (self.dir.display(), to.display());
            progress(Progress::Note(format!("checkpoints stay in {from} (cannot move them to {to}: {e})")));
        }
    }
}

/// Trains `initial` under `spec` as the phase `phase.0`, a note per epoch from `phase.1`.
/// Training goes on from the newest checkpoint in `places` where they say so (bit for bit as
/// if it had never stopped); a checkpoint of other data or settings is dropped beside the
/// cache and refused elsewhere with `places`' hint. When `stop()` turns true training stops
/// after the epoch in flight, its state saved in `places`. Returns the weights, every epoch's
/// statistics and the origin for the manifest.
#[allow(clippy::too_many_arguments)]
pub fn train_resumable(
    initial: &NetModel,
    data: &Dataset,
    spec: &TrainSpec,
    seed: u64,
    phase: (&str, &dyn Fn(&EpochStats) -> String),
    places: &Checkpoints,
    stop: &dyn Fn() -> bool,
    progress: &mut dyn FnMut(Progress),
) -> Result<(Weights, Vec<EpochStats>, String)> {
    let mut found = places.start(&initial.net, spec, progress)?;
    if places.resume && found.is_none() {
        progress(Progress::Note(format!("{}: no checkpoint to go on from; from the start", phase.0)));
    }
    if stop() {
        return Err(ExperimentError::InterruptedEarly { what: format!("stopped before {} began", phase.0) });
    }
    let (trained, resumed_after) = loop {
        let resumed_after = found.as_ref().map(|(c, _)| c.meta.epoch);
        if let Some((checkpoint, folder)) = &found {
            let shown = Checkpoint::files(folder, checkpoint.meta.epoch)[0].display().to_string();
            progress(Progress::Note(format!("{}: going on after epoch {} ({shown})", phase.0, checkpoint.meta.epoch)));
        }
        let (start, folder) = found.take().unzip();
        // Minibatches advance the bar (its rate and ETA are the CLI's); each epoch ends with a
        // line, the only output where stderr is not a terminal.
        let trained = {
            let shared = std::cell::RefCell::new(&mut *progress);
            // Each epoch's line ends with its wall time (from the previous line: the epoch's
            // minibatches, and its accuracy where training stops at one).
            let since = std::cell::Cell::new(std::time::Instant::now());
            let mut on_epoch = |s: &EpochStats| {
                let seconds = since.replace(std::time::Instant::now()).elapsed().as_secs_f64();
                (shared.borrow_mut())(Progress::Note(format!("{} ({seconds:.1} s)", (phase.1)(s))));
                if stop() { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
            };
            let mut on_batch = |b: &BatchProgress| {
                let mut show = shared.borrow_mut();
                if b.batch == 1 {
                    let name = format!("{}, epoch {}/{}", phase.0, b.epoch, spec.epochs);
                    show(Progress::Phase { name, total: b.batches as u64 });
                }
                show(Progress::Advance(1));
                show(Progress::Status(format!("{}, epoch {}/{}, loss {:.4}", phase.0, b.epoch, spec.epochs, b.loss)));
            };
            train_observed(initial, data, spec, seed, start, &mut on_epoch, &mut on_batch)
        };
        match trained {
            Ok(trained) => break (trained, resumed_after),
            // Beside the cache, a checkpoint of other data under the same path (a changed .npy)
            // or of a changed built-in architecture is dropped, and training starts afresh.
            Err(e @ ModelError::CheckpointMismatch { .. }) => match folder {
                Some(folder) if places.is_shared(&folder) => places.drop_shared(&e.to_string(), progress)?,
                folder => {
                    let path = folder.unwrap_or_default().display().to_string();
                    return Err(ExperimentError::Output { path, message: format!("{e}; {}", places.hint) });
                }
            },
            Err(e) => return Err(e.into()),
        }
    };
    match trained {
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
                places.dir.display()
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
) -> Result<Option<(NetModel, RandomLabelReport)>> {
    let config = &plan.config;
    let Some(RandomLabels { target_accuracy, max_epochs, weights, n_train, training: own }) =
        plan.tests.iter().find_map(|t| match &t.kind {
            TestKind::RandomLabels(labels) => Some(labels),
            _ => None,
        })
    else {
        return Ok(None);
    };
    let (full_train_set, test_set) = sets;
    let subset = n_train.filter(|&n| n < full_train_set.len()).map(|n| full_train_set.first(n));
    let train_set = subset.as_ref().unwrap_or(full_train_set);
    let permuted = train_set.with_permuted_labels(config.seed);
    let labels = format!("permuted:{target_accuracy}:{max_epochs}:{n_train:?}");
    // Its own settings, for up to `max_epochs`, whatever `training.epochs` says.
    let inputs = ModelInputs {
        training: sanity_rundir::config::TrainingConfig { epochs: *max_epochs, checkpoint_every: 0, ..own.clone() },
        ..ModelInputs::new(config, &plan.net, permuted.fingerprint(), &labels)
    };
    let source = ModelSource {
        net: &plan.net,
        given: weights.as_deref(),
        inputs: &inputs,
        saved: Saved { weights: dir.join(RANDOM_LABEL_MODEL_FILE), record: dir.join(RANDOM_LABEL_MODEL_RECORD) },
        checkpoints: dir.join(RANDOM_LABEL_CHECKPOINTS),
        kill_point: None,
    };
    let (model, epochs, origin) = source.obtain(options, progress, &mut |places, progress| {
        let spec = TrainSpec {
            epochs: *max_epochs,
            stop_at_accuracy: Some(*target_accuracy),
            checkpoint_dir: Some(places.dir.clone()),
            ..own.spec()
        };
        train_on_permuted(plan, &permuted, &spec, places, options, progress)
    })?;
    let report = RandomLabelReport {
        origin,
        n_train: train_set.len(),
        train_accuracy_random_labels: model.accuracy(&permuted)?,
        train_accuracy_true_labels: model.accuracy(train_set)?,
        test_accuracy: model.accuracy(test_set)?,
        target_accuracy: *target_accuracy,
        reached_target: false,
        epochs,
    };
    Ok(Some((model, reached(report, progress))))
}

/// `report` with `reached_target` set; a model that missed its target is warned about.
fn reached(report: RandomLabelReport, progress: &mut dyn FnMut(Progress)) -> RandomLabelReport {
    let (accuracy, target) = (report.train_accuracy_random_labels, report.target_accuracy);
    if accuracy < target {
        progress(Progress::Note(format!(
            "warning: the random-label model reached train accuracy {accuracy:.4}, below the target {target}"
        )));
    }
    RandomLabelReport { reached_target: accuracy >= target, ..report }
}

/// Trains the random-label model under `spec` from the trained model's initialisation on
/// `permuted` (the training set with permuted labels), going on from `places`' checkpoints.
fn train_on_permuted(
    plan: &Plan,
    permuted: &Dataset,
    spec: &TrainSpec,
    places: &Checkpoints,
    options: &RunOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<(NetModel, Vec<EpochStats>, String)> {
    let seed = plan.config.seed;
    let initial = NetModel::new(plan.net.clone(), plan.net.init(seed)?);
    let describe = |s: &EpochStats| {
        let reached = s.train_accuracy.map(|a| format!(", train accuracy {a:.4}")).unwrap_or_default();
        format!("random labels, epoch {}: loss {:.4}{reached}", s.epoch, s.loss)
    };
    let phase = ("training on permuted labels", &describe as &dyn Fn(&EpochStats) -> String);
    let (weights, epochs, origin) =
        train_resumable(&initial, permuted, spec, seed, phase, places, &|| options.interrupted(), progress)?;
    Ok((initial.with_weights(weights), epochs, origin))
}
