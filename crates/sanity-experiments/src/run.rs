//! Runs a plan: data, model, cascade stages, maps and scores of every method under every model,
//! summary and manifest, written into one run directory as they finish.

use crate::checked::{Smoothing, TestKind};
use crate::localisation::{LocalisedSlot, RowKey, localised_slots};
use crate::model_cache::ModelCache;
use crate::plan::Plan;
use crate::run_inputs::{INPUTS, RunInputs};
use crate::run_lock::RunLock;
use crate::run_models::{MODEL_FILE, MODEL_RECORD, RANDOM_LABEL_MODEL_FILE, RANDOM_LABEL_MODEL_RECORD};
use crate::scores::summarize_rows;
use crate::units::{CONTROL_METHODS, Pairing, Second, Slot, design};
use crate::verdicts::verdicts;
use candle_core::{Device, Tensor};
use rayon::prelude::*;
use sanity_attribution::{MethodSpec, NetMethod, ReferenceSet, TunnelSpec};
use sanity_data::Dataset;
use sanity_metrics::{LocalisationSpec, Map, Mask, Reference, Status, apply_all, pipeline_label};
use sanity_model::NetModel;
use sanity_model::train::classes_of;
use sanity_rundir::config::{ComparisonConfig, Config};
use sanity_rundir::error::{ExperimentError, Result};
use sanity_rundir::example_maps::{Example, image_dir, map_file, prediction_of, write_examples, write_map};
use sanity_rundir::files::{CONFIG_RESOLVED, MANIFEST, SCORES, SUMMARY, VERDICTS, write_atomic};
use sanity_rundir::journal::{JOURNAL, Journal, UnitRecord, read_journal};
use sanity_rundir::manifest::{
    DataReport, GIT_REVISION, Manifest, ModelReport, crate_versions, host_name, peak_rss_mib,
};
use sanity_rundir::rows::{
    INCONCLUSIVE_TARGET_NOT_REACHED, RowWriter, ScoreRow, SummaryRow, VerdictRow, empty_results,
};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Where and how to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The run directory (created; must not hold a finished run unless `force`).
    pub run_dir: PathBuf,
    /// Replace an existing run directory's results.
    pub force: bool,
    /// Worker threads, recorded in the manifest.
    pub threads: usize,
    /// Continue an interrupted run in `run_dir`: finished batches (its `units.jsonl`) are kept,
    /// the trained models are loaded from the directory.
    pub resume: bool,
    /// Run only these image batches (a shard of a sweep; `sanity merge` combines the shards);
    /// None: all of them. A run given a subset writes its scores but no summary or verdicts.
    pub batches: Option<std::collections::BTreeSet<usize>>,
    /// The shard `(index, count)` this run belongs to, recorded in the manifest.
    pub shard: Option<sanity_rundir::shard::Shard>,
    /// Where trained models are shared between runs; None: every run trains its own.
    pub model_cache: Option<ModelCache>,
    /// Set (by a SIGINT handler) to stop cleanly: after the image batch in flight (its rows
    /// and journal line are written; [`ExperimentError::Interrupted`]), after the training
    /// epoch in flight (its state checkpointed), or while waiting for another run's training
    /// ([`ExperimentError::InterruptedEarly`]).
    pub interrupt: Option<&'static std::sync::atomic::AtomicBool>,
}

impl RunOptions {
    /// All batches, no resume: a plain run.
    pub fn new(run_dir: PathBuf, force: bool, threads: usize) -> Self {
        Self { run_dir, force, threads, resume: false, batches: None, shard: None, model_cache: None, interrupt: None }
    }

    /// Whether the run was asked to stop.
    pub fn interrupted(&self) -> bool {
        self.interrupt.is_some_and(|flag| flag.load(std::sync::atomic::Ordering::SeqCst))
    }
}

/// The number of image batches of `plan` (its units of work).
pub fn batch_count(plan: &Plan) -> usize {
    plan.config.attribution.n_images.div_ceil(plan.config.attribution.batch_size.max(1))
}

/// Progress reported to the caller (the CLI draws it; libraries never print).
#[derive(Debug, Clone)]
pub enum Progress {
    /// A phase starts with `total` units.
    Phase {
        /// What is being done.
        name: String,
        /// Units in the phase.
        total: u64,
    },
    /// `n` more units are done.
    Advance(u64),
    /// A line worth showing (accuracies, where files went).
    Note(String),
    /// What the phase in flight is at, in words (a training's epoch and running loss): shown
    /// beside the bar, never printed as a line.
    Status(String),
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The run directory.
    pub run_dir: PathBuf,
    /// Test accuracy of the explained model.
    pub test_accuracy: f64,
    /// Rows in scores.csv.
    pub score_rows: usize,
    /// Total wall-clock seconds.
    pub seconds: f64,
}

/// The maps of one method on the explained images, post-processed by each comparison.
/// `[comparison][image]`.
type Processed = Vec<Vec<std::result::Result<Map, Status>>>;

/// A control's post-processed maps: one per input channel, and on inputs of several channels
/// their mean over the channels (for one-channel maps).
type ControlMaps = (Processed, Option<Processed>);

/// What [`prepare_dir`] found in the run directory.
enum DirState {
    /// A run to do (or go on with): its lock, and the journal's finished units.
    Go(RunLock, Vec<UnitRecord>),
    /// `--resume` of a run that had finished: nothing to do.
    Finished,
}

/// Creates the run directory and locks it ([`RunLock`]), or checks an existing one: refused
/// unless `--force` (cleared) or `--resume` (its config must be the plan's). A run resumed after
/// its scores were complete (killed in its summary or manifest) goes on from them.
fn prepare_dir(plan: &Plan, options: &RunOptions, progress: &mut dyn FnMut(Progress)) -> Result<DirState> {
    let dir = &options.run_dir;
    let refuse = |message: String| ExperimentError::Output { path: dir.display().to_string(), message };
    for (key, input) in input_dirs(&plan.config.data) {
        if resolved(dir).starts_with(resolved(&input)) {
            return Err(refuse(format!(
                "is inside the input folder {} (`{key}`): results there would mix with the data; choose --out elsewhere",
                input.display()
            )));
        }
    }
    if dir.exists() && !dir.is_dir() {
        return Err(refuse("is a file, not a folder; choose another --out".into()));
    }
    let existed = dir.exists();
    std::fs::create_dir_all(dir).map_err(|e| ExperimentError::io(dir, e))?;
    let lock = RunLock::acquire(dir, &mut |note| progress(Progress::Note(note)))?;
    if options.resume && dir.join(CONFIG_RESOLVED).exists() {
        return resumed_dir(plan, dir, lock);
    }
    let only_lock = |dir: &Path| -> Result<bool> {
        let entries = std::fs::read_dir(dir).map_err(|e| ExperimentError::io(dir, e))?;
        Ok(entries.flatten().all(|e| e.file_name() == crate::run_lock::RUN_LOCK))
    };
    if options.resume && existed && !only_lock(dir)? {
        return Err(refuse(format!(
            "is not a run directory (no {CONFIG_RESOLVED}): nothing to resume; choose another --out"
        )));
    }
    if existed && !options.force && !options.resume {
        let finished = dir.join(MANIFEST).exists();
        if !only_lock(dir)? {
            return Err(refuse(if finished {
                "holds a finished run; pass --force to replace it or --out to write elsewhere".into()
            } else if dir.join(CONFIG_RESOLVED).exists() {
                "holds an interrupted run; pass --resume to continue it, --force to start again, or --out to write elsewhere".into()
            } else {
                "exists and is not a run directory; choose another --out (or --force to write into it)".into()
            }));
        }
    }
    if options.force {
        clear_for_force(dir)?;
    }
    Ok(DirState::Go(lock, Vec::new()))
}

/// The state of a run directory `--resume` goes on with (its config must be the plan's): the
/// journal's finished batches, after the files in flight when it was killed are put back to
/// what the journal describes; or finished, when its manifest was written.
fn resumed_dir(plan: &Plan, dir: &Path, lock: RunLock) -> Result<DirState> {
    let refuse = |message: String| ExperimentError::Output { path: dir.display().to_string(), message };
    let before = std::fs::read_to_string(dir.join(CONFIG_RESOLVED))
        .map_err(|e| ExperimentError::io(&dir.join(CONFIG_RESOLVED), e))?;
    if before != plan.resolved_toml() {
        return Err(refuse("holds a run of another config; --resume continues only the same config".into()));
    }
    // The manifest is written last: with it, the run is whole.
    if dir.join(MANIFEST).exists() {
        return Ok(DirState::Finished);
    }
    // Map files in flight when the run was killed (scores.csv.partial is kept: it is the
    // journalled rows).
    remove_partials(&dir.join(sanity_rundir::example_maps::MAPS_DIR));
    // Killed after the scores were renamed into place: they go back to being the partial
    // file the journal describes, and the summary and manifest are written again.
    let (scores, partial) = (dir.join(SCORES), dir.join(SCORES).with_extension("csv.partial"));
    if scores.exists() && !partial.exists() {
        std::fs::rename(&scores, &partial).map_err(|e| ExperimentError::io(&partial, e))?;
    }
    let units = read_journal(&dir.join(JOURNAL))?;
    check_partial(&partial, &units)?;
    Ok(DirState::Go(lock, units))
}

/// Removes what a `--force`d run replaces: results, trained models, and in a run directory its
/// inputs, model records, checkpoints, maps and figures.
fn clear_for_force(dir: &Path) -> Result<()> {
    for stale in [SCORES, SUMMARY, VERDICTS, MANIFEST, "scores.csv.partial", JOURNAL] {
        let _ = std::fs::remove_file(dir.join(stale));
    }
    for stale in [MODEL_FILE, RANDOM_LABEL_MODEL_FILE] {
        let _ = std::fs::remove_file(dir.join(stale));
    }
    // A forced run does not go on from the run directory's old checkpoints (the cache's
    // are the same model's). Only in a run directory: `--out . --force` leaves a
    // project's own checkpoints/ and JSON files alone.
    if dir.join(CONFIG_RESOLVED).is_file() {
        for stale in [INPUTS, MODEL_RECORD, RANDOM_LABEL_MODEL_RECORD] {
            let _ = std::fs::remove_file(dir.join(stale));
        }
        for stale in [crate::run_models::CHECKPOINTS, crate::run_models::RANDOM_LABEL_CHECKPOINTS] {
            let _ = std::fs::remove_dir_all(dir.join(stale));
        }
    }
    remove_derived(dir)
}

/// Checks the journalled rows of a run being resumed against its partial scores file: the file
/// must hold every journalled batch whole (a file shorter than its journal, or rows that do not
/// add up, would drop rows from the summary without a word). Bytes after the last journalled
/// batch (a batch in flight when the run was killed) are dropped by the resume.
fn check_partial(partial: &Path, units: &[UnitRecord]) -> Result<()> {
    if units.is_empty() {
        return Ok(());
    }
    let bytes = std::fs::read(partial).map_err(|e| ExperimentError::io(partial, e))?;
    sanity_rundir::journal::check_rows(&bytes, units, true).map_err(|message| ExperimentError::Output {
        path: partial.display().to_string(),
        message: format!("{message}; the run cannot be resumed (start again with --force)"),
    })
}

/// Removes what a run directory's results were drawn into (`maps/`, `figures/`, `report.md`),
/// only when `dir` is a run directory (it has `config.resolved.toml`): `--out . --force` in a
/// project does not touch the project's own `figures/`.
pub(crate) fn remove_derived(dir: &Path) -> Result<()> {
    if !dir.join(CONFIG_RESOLVED).is_file() {
        return Ok(());
    }
    for stale in [sanity_rundir::example_maps::MAPS_DIR, sanity_rundir::files::FIGURES_DIR] {
        match std::fs::remove_dir_all(dir.join(stale)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(ExperimentError::io(&dir.join(stale), e)),
            _ => {}
        }
    }
    match std::fs::remove_file(dir.join(sanity_rundir::files::REPORT_MD)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(ExperimentError::io(&dir.join(sanity_rundir::files::REPORT_MD), e))
        }
        _ => Ok(()),
    }
}

/// The folders a data config reads, with their keys.
fn input_dirs(data: &sanity_rundir::config::DataConfig) -> Vec<(&'static str, PathBuf)> {
    use sanity_rundir::config::DataConfig;
    match data {
        DataConfig::FashionMnist { dir, .. } => vec![("data.dir", dir.clone())],
        DataConfig::ImageFolder { dir, test_dir, mask_dir, test_mask_dir, .. } => {
            let mut dirs = vec![("data.dir", dir.clone())];
            dirs.extend(test_dir.clone().map(|d| ("data.test_dir", d)));
            dirs.extend(mask_dir.clone().map(|d| ("data.mask_dir", d)));
            dirs.extend(test_mask_dir.clone().map(|d| ("data.test_mask_dir", d)));
            dirs
        }
        DataConfig::Phantom { .. } | DataConfig::Arrays { .. } => Vec::new(),
    }
}

/// `path` made absolute with its existing part's symlinks resolved (it need not exist yet).
fn resolved(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => break,
        }
    }
    let mut out = existing.canonicalize().unwrap_or_else(|_| existing.to_path_buf());
    out.extend(rest.iter().rev());
    out
}

/// The reference set of expected gradients, the training images, when one of `methods` needs
/// it.
pub fn training_references(methods: &[MethodSpec], train_set: &Dataset) -> Result<Option<ReferenceSet>> {
    if !methods.iter().any(MethodSpec::needs_references) {
        return Ok(None);
    }
    let [c, h, w] = train_set.image_shape;
    let images = Tensor::from_slice(&train_set.images, (train_set.len(), c, h, w), &Device::Cpu)?;
    Ok(Some(ReferenceSet::from_tensor(&images)?))
}

/// Removes the `*.partial` files under `dir` (writes in flight when a run was killed).
fn remove_partials(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for path in entries.flatten().map(|e| e.path()) {
        if path.is_dir() {
            remove_partials(&path);
        } else if path.extension().is_some_and(|e| e == "partial") {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// Everything a stage needs about the explained images.
struct Explained {
    x: Tensor,
    /// Per explained image its ground-truth mask when it holds the object (empty without masks).
    masks: Vec<Option<Mask>>,
    indices: Vec<usize>,
    labels: Vec<usize>,
    original_classes: Vec<usize>,
    batch_size: usize,
}

impl Explained {
    /// The first `attribution.n_images` test images, and the trained `model`'s logits of them
    /// (the classes explained when `explain = "original_prediction"`).
    fn of(plan: &Plan, test_set: &Dataset, model: &NetModel) -> Result<(Self, Vec<f32>)> {
        let config = &plan.config;
        let n = config.attribution.n_images;
        if n > test_set.len() {
            return Err(ExperimentError::keyed(
                &plan.source,
                "attribution.n_images",
                format!("{n}, but the test set has only {} images", test_set.len()),
            ));
        }
        let indices: Vec<usize> = (0..n).collect();
        let [c, h, w] = test_set.image_shape;
        let x = Tensor::from_vec(test_set.gather_images(&indices), (n, c, h, w), &Device::Cpu)?;
        let labels: Vec<usize> = indices.iter().map(|&i| test_set.labels[i]).collect();
        let masks = indices
            .iter()
            .map(|&i| {
                let inside: Vec<bool> = test_set.mask(i)?.iter().map(|&m| m != 0).collect();
                inside.contains(&true).then(|| Mask::new(inside, [h, w]))
            })
            .collect();
        let batch_size = config.attribution.batch_size;
        let mut explained = Explained { x, masks, indices, labels, original_classes: Vec::new(), batch_size };
        let original_logits = explained.logits(model)?;
        explained.original_classes = classes_of(&original_logits, plan.net.num_outputs());
        Ok((explained, original_logits))
    }

    /// `model`'s logits of the explained images, `batch_size` at a time (its weights read once).
    fn logits(&self, model: &NetModel) -> Result<Vec<f32>> {
        Ok(model.logits_of(&self.x.flatten_all()?.to_vec1::<f32>()?, self.batch_size)?)
    }

    /// Raw maps of `method` for explained images `start..start + len` under each of `slots`
    /// (with its targets), one [`Map`] per image: `[slot][image]`.
    fn maps(&self, method: &NetMethod, slots: &[&Slot], start: usize, len: usize) -> Result<Vec<Vec<Map>>> {
        let ids: Vec<u64> = self.indices[start..start + len].iter().map(|&i| i as u64).collect();
        let models: Vec<&NetModel> = slots.iter().map(|s| &s.model).collect();
        let targets: Vec<&[usize]> = slots.iter().map(|s| &s.targets[start..start + len]).collect();
        let batches = method.attribute_models(&models, &self.x.narrow(0, start, len)?, &targets, &ids)?;
        batches
            .into_iter()
            .map(|batch| {
                let (_, c, h, w) = batch.dims4()?;
                let values = batch.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
                Ok(values.chunks_exact(c * h * w).map(|v| Map::new(v.to_vec(), [c, h, w])).collect())
            })
            .collect()
    }
}

/// The mean of `map`'s channels, `[c, h, w] -> [1, h, w]`.
fn channel_mean(map: &Map) -> Map {
    let [c, h, w] = map.shape;
    let mut mean = vec![0.0f32; h * w];
    for plane in map.data.chunks_exact(h * w) {
        mean.iter_mut().zip(plane).for_each(|(m, v)| *m += v / c as f32);
    }
    Map::new(mean, [1, h, w])
}

fn postprocess_all(maps: &[Map], comparisons: &[ComparisonConfig]) -> Processed {
    comparisons.iter().map(|c| maps.par_iter().map(|m| apply_all(&c.postprocess, m.clone())).collect()).collect()
}

/// Runs `plan` into `options.run_dir`, reporting progress through `progress`: the directory
/// is prepared (or found finished), then the data, the models, the explained images and
/// methods, the models each map is computed under, the image batches (maps and scores), the
/// summary and verdicts, and the manifest, each step timed.
pub fn run(plan: &Plan, options: &RunOptions, progress: &mut dyn FnMut(Progress)) -> Result<RunOutcome> {
    let started = Instant::now();
    let started_unix =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let dir = &options.run_dir;
    let (_lock, finished_units) = match prepare_dir(plan, options, progress)? {
        DirState::Go(lock, units) => (lock, units),
        DirState::Finished => return finished_outcome(dir, progress),
    };
    write_atomic(&dir.join(CONFIG_RESOLVED), plan.resolved_toml().as_bytes())?;
    let mut clock = Clock::new();

    let (train_set, test_set, train_print) = load_data(plan, options, progress)?;
    clock.mark("data");
    let (model, epochs, origin) =
        crate::run_models::build_model(plan, &train_set, &train_print, dir, options, progress)?;
    let (train_accuracy, test_accuracy) = (model.accuracy(&train_set)?, model.accuracy(&test_set)?);
    progress(Progress::Note(format!("model: train accuracy {train_accuracy:.4}, test accuracy {test_accuracy:.4}")));
    clock.mark("model");

    let (explained, original_logits) = Explained::of(plan, &test_set, &model)?;
    let random_labels =
        crate::run_models::build_random_label_model(plan, (&train_set, &test_set), dir, options, progress)?;
    if let Some((_, report)) = &random_labels {
        progress(Progress::Note(format!(
            "random-label model: train accuracy {:.4} (permuted labels), test accuracy {:.4}",
            report.train_accuracy_random_labels, report.test_accuracy
        )));
        clock.mark("random_label_model");
    }

    // Every model explained: the original, each test's stages and the controls' models. Stages
    // share the tensors they did not re-initialise, so a batch evaluates those layers once.
    let (slots, pairings) = {
        let mut logits_of = |m: &NetModel| explained.logits(m);
        let random_label_model = random_labels.as_ref().map(|(m, _)| m);
        design(plan, &model, random_label_model, &explained.labels, &explained.original_classes, &mut logits_of)?
    };
    keep_examples(plan, dir, &explained, &test_set, &slots, &original_logits)?;
    let methods = MethodSet::build(plan, &train_set, &pairings)?;
    let variants = methods.variants(&pairings);
    clock.mark("stages");

    let localisation = plan.tests.iter().find_map(|t| match &t.kind {
        TestKind::Localisation { metrics } => Some(metrics.as_slice()),
        _ => None,
    });
    let localised = localised_slots(&pairings);
    let work = Work {
        plan,
        options,
        explained: &explained,
        slots: &slots,
        pairings: &pairings,
        methods: &methods,
        localisation: localisation.map(|metrics| (metrics, localised.as_slice())),
    };
    let (all_rows, scores_seconds) = work.score_batches(&variants, &finished_units, progress)?;
    clock.mark("attribution");
    // Informational: the post-processing and metrics inside the attribution phase.
    clock.timings.push(("scores_within_attribution".into(), scores_seconds));
    crate::kill_points::point("after_scores_rename");
    if options.batches.is_none() {
        let reached = random_labels.as_ref().map(|(_, report)| report.reached_target);
        summarize_run(dir, plan, &all_rows, reached, progress)?;
    }
    clock.mark("summary");
    clock.timings.push(("total".into(), started.elapsed().as_secs_f64()));

    let model_report = ModelReport {
        arch: plan.model_name(),
        stages: plan.net.layers(),
        origin,
        train_accuracy,
        test_accuracy,
        epochs,
    };
    let random_label_report = random_labels.map(|(_, report)| report);
    let sets = (&train_set, &test_set);
    let manifest = manifest_of(plan, options, started_unix, clock.timings, random_label_report, model_report, sets)?;
    write_manifest(dir, &manifest)?;
    Ok(RunOutcome {
        run_dir: dir.clone(),
        test_accuracy,
        score_rows: all_rows.len(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The manifest of a finished run of `plan`.
fn manifest_of(
    plan: &Plan,
    options: &RunOptions,
    started_unix: u64,
    timings_s: Vec<(String, f64)>,
    random_label_model: Option<sanity_rundir::manifest::RandomLabelReport>,
    model: ModelReport,
    (train_set, test_set): (&Dataset, &Dataset),
) -> Result<Manifest> {
    Ok(Manifest {
        name: plan.config.name.clone(),
        run_id: plan.run_id.clone(),
        seed: plan.config.seed,
        config_source: plan.source.clone(),
        config: serde_json::to_value(&plan.config).map_err(|e| ExperimentError::io(&options.run_dir, e))?,
        params: plan.params.iter().cloned().collect(),
        git_revision: GIT_REVISION.into(),
        crate_versions: crate_versions(),
        threads: options.threads,
        host: host_name(),
        started_unix,
        timings_s,
        peak_rss_mib: peak_rss_mib(),
        random_label_model,
        shard: options.shard,
        merged_from: Vec::new(),
        model,
        data: DataReport {
            source: plan.data.name().into(),
            n_train: train_set.len(),
            n_test: test_set.len(),
            image_shape: test_set.image_shape,
            test_class_fractions: test_set.class_fractions(),
        },
    })
}

/// The seconds each step of a run took, in order.
struct Clock {
    timings: Vec<(String, f64)>,
    lap: Instant,
}

impl Clock {
    fn new() -> Self {
        Self { timings: Vec::new(), lap: Instant::now() }
    }

    /// Records the time since the last mark as step `name`.
    fn mark(&mut self, name: &str) {
        self.timings.push((name.to_string(), self.lap.elapsed().as_secs_f64()));
        self.lap = Instant::now();
    }
}

/// The training and test sets of `plan` and the training set's fingerprint (hashed once: the
/// model cache keys on it too), checked against (or recorded as) the run's inputs, with
/// `split.csv` written.
fn load_data(
    plan: &Plan,
    options: &RunOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<(Dataset, Dataset, String)> {
    progress(Progress::Phase { name: "data".into(), total: 2 });
    let (train_set, test_set) = plan.data.load(plan.config.seed)?;
    let train_print = train_set.fingerprint();
    let dir = &options.run_dir;
    RunInputs::of(plan, &train_print, &test_set)?.check_or_record(dir, options.resume)?;
    crate::run_inputs::write_split(dir, &plan.data.origins())?;
    progress(Progress::Advance(2));
    Ok((train_set, test_set, train_print))
}

/// Writes the maps and examples of `sanity report`'s example images (the first
/// `report.examples`): `maps/examples.csv` and each image's input (its maps follow batch by
/// batch).
fn keep_examples(
    plan: &Plan,
    dir: &Path,
    explained: &Explained,
    test_set: &Dataset,
    slots: &[Slot],
    original_logits: &[f32],
) -> Result<()> {
    let outputs = plan.net.num_outputs();
    let [c, h, w] = test_set.image_shape;
    let examples = plan.config.report.examples.min(explained.indices.len());
    let kept: Vec<(Example, Map)> = (0..examples)
        .map(|i| {
            let (prediction, probability) = prediction_of(&original_logits[i * outputs..(i + 1) * outputs]);
            let (sample, label, target) = (explained.indices[i], explained.labels[i], slots[0].targets[i]);
            let (label_name, prediction_name) = match test_set.class_names.is_empty() {
                true => (String::new(), String::new()),
                false => (test_set.class_name(label), test_set.class_name(prediction)),
            };
            let example = Example { sample, label, target, prediction, probability, label_name, prediction_name };
            (example, Map::new(test_set.image(sample).to_vec(), [c, h, w]))
        })
        .collect();
    if kept.is_empty() {
        return Ok(());
    }
    write_examples(dir, &kept)?;
    for (example, _) in &kept {
        if let Some(mask) = test_set.mask(example.sample).filter(|m| m.contains(&1)) {
            let values: Vec<f32> = mask.iter().map(|&m| f32::from(m)).collect();
            let path = image_dir(dir, example.sample).join(sanity_rundir::example_maps::MASK_FILE);
            write_map(&path, &Map::new(values, [1, h, w]))?;
        }
    }
    Ok(())
}

/// Writes `summary.csv` and `verdicts.csv` of a whole run and says what it answers nothing
/// about (errors) and which methods' own maps are too often degenerate (warnings).
fn summarize_run(
    dir: &Path,
    plan: &Plan,
    rows: &[ScoreRow],
    random_labels_reached: Option<bool>,
    progress: &mut dyn FnMut(Progress),
) -> Result<()> {
    let summary = write_reports(dir, &plan.config, &plan.params, rows, random_labels_reached)?;
    // A method or metric that answers nothing must not pass as `not_tested` in silence.
    for line in empty_results(rows) {
        progress(Progress::Note(format!("error: {line}")));
    }
    let has_localisation = plan.tests.iter().any(|t| matches!(t.kind, TestKind::Localisation { .. }));
    if let Some(line) = crate::localisation::unanswered(has_localisation, rows, plan.config.attribution.n_images) {
        progress(Progress::Note(format!("error: {line}")));
    }
    for line in sanity_rundir::rows::degenerate_original_lines(&summary) {
        progress(Progress::Note(format!("warning: {line}")));
    }
    Ok(())
}

/// Writes `manifest.json` whole (last: its presence marks a finished run).
fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<()> {
    let json = serde_json::to_vec_pretty(manifest).map_err(|e| ExperimentError::io(dir, e))?;
    crate::kill_points::torn_write("inside_manifest", &dir.join(MANIFEST).with_extension("partial"), &json);
    write_atomic(&dir.join(MANIFEST), &json)
}

/// The attribution methods of a run: the configured ones, a stochastic method's second draw
/// for its `repeat` control, the control maps, and each smooth MPRT's noise tunnel around the
/// methods.
struct MethodSet {
    /// The methods, in config order.
    methods: Vec<NetMethod>,
    /// Per method, its `repeat` control's method when it is stochastic (another seed).
    repeats: Vec<Option<NetMethod>>,
    /// The control maps' methods ([`CONTROL_METHODS`]).
    controls: Vec<NetMethod>,
    /// Per smoothing setting of the pairings (after the first, none), the methods in it.
    smoothed: Vec<(Smoothing, Vec<NetMethod>)>,
}

impl MethodSet {
    fn build(plan: &Plan, train_set: &Dataset, pairings: &[Pairing]) -> Result<Self> {
        let (config, seed) = (&plan.config, plan.config.seed);
        let references = training_references(&config.attribution.methods, train_set)?;
        let build = |seed: u64| -> Result<Vec<NetMethod>> {
            Ok(config
                .attribution
                .methods
                .iter()
                .map(|m| NetMethod::build(m, &plan.net, seed, references.as_ref()))
                .collect::<std::result::Result<_, _>>()?)
        };
        let methods = build(seed)?;
        // The `repeat` control of a stochastic method draws from another seed.
        let repeats: Vec<Option<NetMethod>> = build(repeat_seed(seed))?
            .into_iter()
            .zip(&config.attribution.methods)
            .map(|(m, spec)| spec.is_stochastic().then_some(m))
            .collect();
        let controls: Vec<NetMethod> = CONTROL_METHODS
            .iter()
            .map(|id| {
                let spec: MethodSpec = serde_json::from_value(serde_json::json!({ "method": id }))
                    .expect("the control methods take no parameters");
                NetMethod::build(&spec, &plan.net, seed, None)
            })
            .collect::<std::result::Result<_, _>>()?;
        let mut settings: Vec<Smoothing> = Vec::new();
        for s in pairings.iter().filter_map(|p| p.smoothing) {
            if !settings.contains(&s) {
                settings.push(s);
            }
        }
        let smoothed = settings
            .into_iter()
            .map(|s| {
                let tunnels = config
                    .attribution
                    .methods
                    .iter()
                    .map(|m| {
                        let tunnel = TunnelSpec {
                            inner: Box::new(m.clone()),
                            samples: s.samples,
                            noise: s.noise,
                            batch: sanity_attribution::method::default_batch(),
                        };
                        NetMethod::build(&MethodSpec::Smoothgrad(tunnel), &plan.net, seed, references.as_ref())
                    })
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                Ok((s, tunnels))
            })
            .collect::<Result<_>>()?;
        Ok(Self { methods, repeats, controls, smoothed })
    }

    /// The variants of the maps: the methods' own, and each smooth MPRT's noise tunnel around
    /// them; each with the slots its pairings compare (slot 0 first, always).
    fn variants(&self, pairings: &[Pairing]) -> Vec<Variant<'_>> {
        let own = std::iter::once((None, self.methods.as_slice()));
        let tunnels = self.smoothed.iter().map(|(s, methods)| (Some(*s), methods.as_slice()));
        own.chain(tunnels)
            .map(|(smoothing, methods)| {
                let mut used = vec![0];
                for p in pairings.iter().filter(|p| p.smoothing == smoothing) {
                    let second = if let Second::Slot(s) = p.second { Some(s) } else { None };
                    for slot in [Some(p.first), second].into_iter().flatten() {
                        if !used.contains(&slot) {
                            used.push(slot);
                        }
                    }
                }
                Variant { smoothing, methods, slots: used }
            })
            .collect()
    }
}

/// What the image batches of a run compute: every method's maps under every slot, scored for
/// every pairing.
struct Work<'a> {
    plan: &'a Plan,
    options: &'a RunOptions,
    explained: &'a Explained,
    slots: &'a [Slot],
    pairings: &'a [Pairing],
    methods: &'a MethodSet,
    /// The localisation test's metrics and the models it scores, when the run has the test.
    localisation: Option<(&'a [LocalisationSpec], &'a [LocalisedSlot])>,
}

impl Work<'_> {
    /// Scores every image batch not already journalled (`finished`) and wanted by the shard,
    /// writing each batch's rows through to the disk before its journal line; then renames
    /// `scores.csv` into place. Returns all rows (the journalled ones read back) and the
    /// seconds spent post-processing and scoring.
    fn score_batches(
        &self,
        variants: &[Variant],
        finished: &[UnitRecord],
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(Vec<ScoreRow>, f64)> {
        let (plan, dir, explained) = (self.plan, &self.options.run_dir, self.explained);
        let per_batch = self.methods.methods.len() as u64;
        let batches = explained.indices.len().div_ceil(explained.batch_size.max(1));
        progress(Progress::Phase { name: "attribution and scores".into(), total: per_batch * batches as u64 });
        let scores_path = dir.join(SCORES);
        let kept_bytes = finished.last().map_or(0, |u| u.bytes);
        let mut all_rows: Vec<ScoreRow> =
            if kept_bytes > 0 { RowWriter::read_partial(&scores_path, kept_bytes)? } else { Vec::new() };
        let mut writer = RowWriter::resume(&scores_path, &plan.params, kept_bytes)?;
        let mut journal = Journal::open(&dir.join(JOURNAL), finished)?;
        let done: std::collections::BTreeSet<usize> = finished.iter().map(|u| u.batch).collect();
        let mut journalled = finished.len();
        let mut scores_seconds = 0.0;
        for (batch, start) in (0..explained.indices.len()).step_by(explained.batch_size.max(1)).enumerate() {
            if self.options.interrupted() {
                writer.flush()?;
                return Err(ExperimentError::Interrupted {
                    dir: dir.display().to_string(),
                    finished: journalled,
                    batches,
                });
            }
            let wanted = self.options.batches.as_ref().is_none_or(|b| b.contains(&batch));
            if !wanted || done.contains(&batch) {
                progress(Progress::Advance(per_batch));
                continue;
            }
            let len = explained.batch_size.min(explained.indices.len() - start);
            let (batch_rows, seconds) = self.score_batch(variants, start, len, progress)?;
            scores_seconds += seconds;
            writer.write(&batch_rows)?;
            writer.sync()?;
            crate::kill_points::point("rows_written");
            journal.record(UnitRecord { batch, rows: batch_rows.len(), bytes: writer.bytes()? })?;
            crate::kill_points::after_batch(batch);
            journalled += 1;
            all_rows.extend(batch_rows);
        }
        writer.finish()?;
        Ok((all_rows, scores_seconds))
    }

    /// The score rows of explained images `start..start + len`, and the seconds spent
    /// post-processing and scoring them. The example images' raw maps are written on the way.
    fn score_batch(
        &self,
        variants: &[Variant],
        start: usize,
        len: usize,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(Vec<ScoreRow>, f64)> {
        let (config, explained, slots, pairings) = (&self.plan.config, self.explained, self.slots, self.pairings);
        let dir = &self.options.run_dir;
        let MethodSet { methods, repeats, controls, .. } = self.methods;
        let slot_refs: Vec<&Slot> = slots.iter().collect();
        let examples = config.report.examples.min(explained.indices.len());
        let uses = |second: fn(&Second) -> bool| pairings.iter().any(|p| second(&p.second));
        let images =
            Images { indices: &explained.indices[start..start + len], labels: &explained.labels[start..start + len] };
        let mut scores_seconds = 0.0;
        let control_maps = self.control_maps(start, len)?;
        // Each method's maps under every slot, scored as soon as they exist; the trained
        // model's maps are kept for the method-against-method pairs.
        let mut originals: Vec<Processed> = Vec::with_capacity(methods.len());
        let mut batch_rows: Vec<ScoreRow> = Vec::new();
        for (mi, method) in methods.iter().enumerate() {
            // A stochastic method's repeat control, post-processed once (only its own maps use it).
            let repeat = match (&repeats[mi], uses(|s| *s == Second::Repeat)) {
                (Some(again), true) => {
                    let maps = explained.maps(again, &slot_refs[..1], start, len)?;
                    Some(postprocess_all(&maps[0], &config.comparisons))
                }
                _ => None,
            };
            for Variant { smoothing: variant, methods: variant_methods, slots: slots_used } in variants {
                let refs: Vec<&Slot> = slots_used.iter().map(|&s| &slots[s]).collect();
                let maps = explained.maps(&variant_methods[mi], &refs, start, len)?;
                for (slot, slot_maps) in refs.iter().zip(&maps) {
                    for (i, map) in slot_maps.iter().enumerate().take(examples.saturating_sub(start)) {
                        let file = map_file(&slot.name, method.id(), variant.is_some());
                        write_map(&image_dir(dir, explained.indices[start + i]).join(file), map)?;
                    }
                }
                let scoring = Instant::now();
                let processed: Vec<Processed> = maps.iter().map(|m| postprocess_all(m, &config.comparisons)).collect();
                let of_slot = |slot: usize| slots_used.iter().position(|&s| s == slot).map(|i| &processed[i]);
                let mut prepared: std::collections::BTreeMap<usize, Prepared> = std::collections::BTreeMap::new();
                for pairing in pairings.iter().filter(|p| p.method.is_none() && p.smoothing == *variant) {
                    let (Some(first), Some(own)) = (of_slot(pairing.first), of_slot(0)) else { continue };
                    let (second, second_slot, method_b) = match pairing.second {
                        Second::Slot(s) => match of_slot(s) {
                            Some(maps) => (maps, s, method.id()),
                            None => continue,
                        },
                        Second::Repeat => (repeat.as_ref().unwrap_or(own), 0, method.id()),
                        Second::Control(c) => {
                            let one_channel = maps[0].first().is_some_and(|m| m.shape[0] == 1);
                            match &control_maps[c] {
                                Some((_, Some(mean))) if one_channel => (mean, 0, controls[c].id()),
                                Some((maps, _)) => (maps, 0, controls[c].id()),
                                None => continue,
                            }
                        }
                        Second::Method(_) => continue,
                    };
                    let context = RowContext { run_id: &self.plan.run_id, pairing, method: method.id(), method_b };
                    let targets = &slots[second_slot].targets[start..start + len];
                    let first = prepared.entry(pairing.first).or_insert_with(|| prepare(first, &config.comparisons));
                    batch_rows.extend(score_rows(&context, &images, targets, &config.comparisons, first, second));
                }
                if variant.is_none() {
                    batch_rows.extend(self.localisation_rows(method.id(), &processed, slots_used, start, len));
                    originals.push(processed.into_iter().next().expect("slot 0 is always explained"));
                }
                scores_seconds += scoring.elapsed().as_secs_f64();
            }
            progress(Progress::Advance(1));
        }
        let scoring = Instant::now();
        batch_rows.extend(self.localisation_control_rows(&control_maps, start, len));
        batch_rows.extend(self.agreement_rows(&originals, &images, start));
        scores_seconds += scoring.elapsed().as_secs_f64();
        Ok((batch_rows, scores_seconds))
    }

    /// The post-processed control maps (random map, Sobel) of images `start..start + len`,
    /// for the controls a pairing compares with: one map per input channel, and (on inputs of
    /// several channels) their mean over the channels, which a one-channel map (a CAM's) is
    /// compared with.
    fn control_maps(&self, start: usize, len: usize) -> Result<Vec<Option<ControlMaps>>> {
        let original = [&self.slots[0]];
        let comparisons = &self.plan.config.comparisons;
        let mut out = vec![None; CONTROL_METHODS.len()];
        for (c, control) in self.methods.controls.iter().enumerate() {
            if self.pairings.iter().any(|p| p.second == Second::Control(c)) {
                let maps = self.explained.maps(control, &original, start, len)?;
                let mean = (self.plan.net.input()[0] > 1).then(|| {
                    let means: Vec<Map> = maps[0].iter().map(channel_mean).collect();
                    postprocess_all(&means, comparisons)
                });
                out[c] = Some((postprocess_all(&maps[0], comparisons), mean));
            }
        }
        Ok(out)
    }

    /// The comparisons' post-processing pipelines, each once (two comparisons may share one):
    /// `(index of its first comparison, label)`.
    fn distinct_pipelines(&self) -> Vec<(usize, String)> {
        let mut seen: Vec<(usize, String)> = Vec::new();
        for (ci, comparison) in self.plan.config.comparisons.iter().enumerate() {
            let label = pipeline_label(&comparison.postprocess);
            if !seen.iter().any(|(_, l)| *l == label) {
                seen.push((ci, label));
            }
        }
        seen
    }

    /// The explained images `start..start + len` as the localisation rows see them.
    fn localised_images(&self, start: usize, len: usize) -> Vec<crate::localisation::Explained<'_>> {
        let e = self.explained;
        (start..start + len)
            .map(|i| crate::localisation::Explained {
                sample: e.indices[i],
                label: e.labels[i],
                target: self.slots[0].targets[i],
                mask: e.masks.get(i).and_then(Option::as_ref),
            })
            .collect()
    }

    /// The localisation rows of one method's maps (`processed`, per slot of `slots_used`) of
    /// images `start..start + len`: every localised slot, every comparison's post-processing.
    fn localisation_rows(
        &self,
        method: &str,
        processed: &[Processed],
        slots_used: &[usize],
        start: usize,
        len: usize,
    ) -> Vec<ScoreRow> {
        let Some((metrics, localised)) = self.localisation else { return Vec::new() };
        let mut images = self.localised_images(start, len);
        let mut rows = Vec::new();
        for slot in localised {
            let Some(at) = slots_used.iter().position(|&s| s == slot.slot) else { continue };
            for image in images.iter_mut().enumerate() {
                image.1.target = self.slots[slot.slot].targets[start + image.0];
            }
            for (ci, label) in self.distinct_pipelines() {
                let key = RowKey { run_id: &self.plan.run_id, slot, method, postprocess: &label };
                rows.extend(crate::localisation::rows(&key, &images, &processed[at][ci], metrics));
            }
        }
        rows
    }

    /// The localisation test's control rows of images `start..start + len`: the random map's
    /// and the Sobel map's (one channel: their channel mean on inputs of several), and the
    /// `uniform` chance level.
    fn localisation_control_rows(
        &self,
        control_maps: &[Option<ControlMaps>],
        start: usize,
        len: usize,
    ) -> Vec<ScoreRow> {
        let Some((metrics, _)) = self.localisation else { return Vec::new() };
        let images = self.localised_images(start, len);
        let slot = crate::localisation::control_slot();
        let mut rows = Vec::new();
        for (ci, label) in self.distinct_pipelines() {
            for (c, control) in control_maps.iter().enumerate() {
                if let Some((maps, mean)) = control {
                    let one_channel = mean.as_ref().unwrap_or(maps);
                    let key = RowKey {
                        run_id: &self.plan.run_id,
                        slot: &slot,
                        method: CONTROL_METHODS[c],
                        postprocess: &label,
                    };
                    rows.extend(crate::localisation::rows(&key, &images, &one_channel[ci], metrics));
                }
            }
            let key = RowKey { run_id: &self.plan.run_id, slot: &slot, method: "uniform", postprocess: &label };
            rows.extend(crate::localisation::uniform_rows(&key, &images, metrics));
        }
        rows
    }

    /// The `method_agreement` rows of a batch: one method's map of the trained model against
    /// another's (`originals[method]`, post-processed), images from `start`.
    fn agreement_rows(&self, originals: &[Processed], images: &Images, start: usize) -> Vec<ScoreRow> {
        let (methods, comparisons) = (&self.methods.methods, &self.plan.config.comparisons);
        let mut rows = Vec::new();
        for pairing in self.pairings {
            if let (Some(mi), Second::Method(mj)) = (pairing.method, pairing.second) {
                let context = RowContext {
                    run_id: &self.plan.run_id,
                    pairing,
                    method: methods[mi].id(),
                    method_b: methods[mj].id(),
                };
                let targets = &self.slots[0].targets[start..start + images.indices.len()];
                let first = prepare(&originals[mi], comparisons);
                rows.extend(score_rows(&context, images, targets, comparisons, &first, &originals[mj]));
            }
        }
        rows
    }
}

/// The outcome of a run that had finished before (`--resume` of a whole run): read from its
/// manifest and journal.
fn finished_outcome(dir: &Path, progress: &mut dyn FnMut(Progress)) -> Result<RunOutcome> {
    let path = dir.join(MANIFEST);
    let manifest = Manifest::read(&path)?.ok_or_else(|| ExperimentError::io(&path, "the manifest is gone"))?;
    let rows = read_journal(&dir.join(JOURNAL))?.iter().map(|u| u.rows).sum();
    progress(Progress::Note(format!("{} had finished; nothing to resume", dir.display())));
    Ok(RunOutcome {
        run_dir: dir.to_path_buf(),
        test_accuracy: manifest.model.test_accuracy,
        score_rows: rows,
        seconds: 0.0,
    })
}

/// Writes `summary.csv` and `verdicts.csv` of a run's score rows into `dir` (a finished run,
/// or the shards of one combined by `sanity merge`).
/// `random_labels_reached`: whether the data randomisation test's model reached its
/// training-accuracy target (None: no such model); a model that did not gets its verdicts as
/// [`INCONCLUSIVE_TARGET_NOT_REACHED`].
pub fn write_reports(
    dir: &Path,
    config: &Config,
    params: &[(String, String)],
    rows: &[ScoreRow],
    random_labels_reached: Option<bool>,
) -> Result<Vec<SummaryRow>> {
    let stats = &config.statistics;
    let summary = summarize_rows(rows, stats.bootstrap_resamples, stats.confidence, config.seed);
    let mut summary_writer = RowWriter::create_with_params(&dir.join(SUMMARY), params)?;
    let (head, tail) = summary.split_at(summary.len() / 2);
    summary_writer.write(head)?;
    summary_writer.flush()?;
    crate::kill_points::point("inside_summary");
    summary_writer.write(tail)?;
    summary_writer.finish()?;
    let mut verdict_writer = RowWriter::create_with_params(&dir.join(VERDICTS), params)?;
    let mut judged = verdicts(rows, stats.alpha);
    judged.extend(crate::localisation::verdicts(rows, stats.alpha));
    if random_labels_reached == Some(false) {
        // A model that did not memorise its labels says nothing about maps of one that did.
        let of_random_labels =
            |v: &VerdictRow| v.test == "data_randomization" || v.stage.starts_with("data_randomization.");
        for v in judged.iter_mut().filter(|v| of_random_labels(v) && v.verdict != "not_tested") {
            v.verdict = INCONCLUSIVE_TARGET_NOT_REACHED.to_string();
        }
    }
    verdict_writer.write(&judged)?;
    verdict_writer.finish()?;
    Ok(summary)
}

/// One variant of the methods' maps and the slots it is computed under.
struct Variant<'a> {
    /// None: the methods' own maps; else a smooth MPRT's noise tunnel around them.
    smoothing: Option<Smoothing>,
    /// The methods, in config order.
    methods: &'a [NetMethod],
    /// The slots whose maps the variant's pairings compare, slot 0 first.
    slots: Vec<usize>,
}

/// The identifying columns shared by the rows of one pairing and method.
struct RowContext<'a> {
    run_id: &'a str,
    pairing: &'a Pairing,
    method: &'static str,
    method_b: &'static str,
}

/// The explained images of one batch.
struct Images<'a> {
    indices: &'a [usize],
    labels: &'a [usize],
}

/// The seed of a stochastic method's `repeat` control: another stream than the run's.
fn repeat_seed(seed: u64) -> u64 {
    seed ^ sanity_data::fnv1a(b"repeat")
}

/// The first maps of a batch prepared for each metric (ranks, local moments):
/// `[(comparison, metric)][image]`, images in parallel.
type Prepared<'a> = Vec<Vec<std::result::Result<Reference<'a>, Status>>>;

fn prepare<'a>(first: &'a Processed, comparisons: &'a [ComparisonConfig]) -> Prepared<'a> {
    let mut out = Vec::new();
    for (ci, comparison) in comparisons.iter().enumerate() {
        for metric in &comparison.metrics {
            out.push(first[ci].par_iter().map(|map| map.as_ref().map(|m| metric.prepare(m)).map_err(|s| *s)).collect());
        }
    }
    out
}

/// Score rows of one pairing over a batch, `(comparison, metric)` then image, images in
/// parallel; `first` holds the first maps prepared by [`prepare`].
fn score_rows(
    context: &RowContext,
    images: &Images,
    targets: &[usize],
    comparisons: &[ComparisonConfig],
    first: &Prepared,
    second: &Processed,
) -> Vec<ScoreRow> {
    let mut rows = Vec::new();
    let p = context.pairing;
    let mut prepared = first.iter();
    for (ci, comparison) in comparisons.iter().enumerate() {
        let label = pipeline_label(&comparison.postprocess);
        for metric in &comparison.metrics {
            let Some(references) = prepared.next() else { break };
            let scores: Vec<std::result::Result<f64, Status>> = references
                .par_iter()
                .zip(&second[ci])
                .map(|(reference, b)| sanity_metrics::score_both(reference, b, |r, b| r.score(b)))
                .collect();
            rows.extend(scores.into_iter().enumerate().map(|(i, score)| ScoreRow {
                run_id: context.run_id.to_string(),
                test: p.test.to_string(),
                order: p.order.to_string(),
                stage_index: p.stage_index,
                stage: p.stage.clone(),
                draw: p.draw,
                method: context.method.to_string(),
                method_b: context.method_b.to_string(),
                postprocess: label.clone(),
                metric: metric.id().to_string(),
                sample: images.indices[i],
                label: images.labels[i],
                target: targets[i],
                score: score.ok(),
                status: score.err().map_or("ok", Status::as_str).to_string(),
            }));
        }
    }
    rows
}
