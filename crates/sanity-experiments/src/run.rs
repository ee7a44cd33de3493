//! Runs a plan: data, model, cascade stages, maps and scores of every method under every model,
//! summary and manifest, written into one run directory as they finish.

use crate::cascading::{cascade_order, cascade_step};
use crate::config::{ComparisonConfig, ExplainedClass, TestConfig};
use crate::error::{ExperimentError, Result};
use crate::manifest::{DataReport, GIT_REVISION, Manifest, ModelReport, crate_versions, host_name, peak_rss_mib};
use crate::plan::Plan;
use crate::scores::{RowWriter, ScoreRow, summarize_rows};
use candle_core::{Device, Tensor};
use rayon::prelude::*;
use sanity_attribution::{Attribution, ReferenceSet};
use sanity_data::Dataset;
use sanity_metrics::{Map, Reference, Status, apply_all, pipeline_label};
use sanity_model::train::classes_of;
use sanity_model::{Model, Weights, accuracy, init_weights, train};
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

fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, contents).map_err(|e| ExperimentError::io(&partial, e))?;
    std::fs::rename(&partial, path).map_err(|e| ExperimentError::io(path, e))
}

fn prepare_dir(options: &RunOptions) -> Result<()> {
    let dir = &options.run_dir;
    if dir.exists() && !options.force {
        let finished = dir.join("manifest.json").exists();
        return Err(ExperimentError::Output {
            path: dir.display().to_string(),
            message: if finished {
                "holds a finished run; pass --force to replace it or --out to write elsewhere".into()
            } else {
                "exists (an interrupted run?); pass --force to start it again or --out to write elsewhere".into()
            },
        });
    }
    std::fs::create_dir_all(dir).map_err(|e| ExperimentError::io(dir, e))?;
    if options.force {
        for stale in ["scores.csv", "summary.csv", "manifest.json"] {
            let _ = std::fs::remove_file(dir.join(stale));
        }
    }
    Ok(())
}

/// The explained output of each image for a model whose logits are `logits`.
fn targets_for(
    explain: ExplainedClass,
    logits: &[f32],
    outputs: usize,
    labels: &[usize],
    original: &[usize],
) -> Vec<usize> {
    if outputs == 1 {
        return vec![0; labels.len()];
    }
    match explain {
        ExplainedClass::TrueLabel => labels.to_vec(),
        ExplainedClass::OriginalPrediction => original.to_vec(),
        ExplainedClass::CurrentPrediction => classes_of(logits, outputs),
    }
}

/// Everything a stage needs about the explained images.
struct Explained {
    x: Tensor,
    indices: Vec<usize>,
    labels: Vec<usize>,
    original_classes: Vec<usize>,
    batch_size: usize,
}

impl Explained {
    fn logits(&self, model: &Model) -> Result<Vec<f32>> {
        let mut out = Vec::new();
        for start in (0..self.indices.len()).step_by(self.batch_size) {
            let len = self.batch_size.min(self.indices.len() - start);
            out.extend(model.forward(&self.x.narrow(0, start, len)?)?.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(out)
    }

    /// Raw maps of `method` for explained images `start..start + len` under each of `models`
    /// (`targets[m]` for `models[m]`), one [`Map`] per image: `[model][image]`.
    fn maps(
        &self,
        method: &dyn Attribution,
        models: &[Model],
        targets: &[Vec<usize>],
        start: usize,
        len: usize,
    ) -> Result<Vec<Vec<Map>>> {
        let ids: Vec<u64> = self.indices[start..start + len].iter().map(|&i| i as u64).collect();
        let model_refs: Vec<&Model> = models.iter().collect();
        let target_refs: Vec<&[usize]> = targets.iter().map(|t| &t[start..start + len]).collect();
        let batches = method.attribute_models(&model_refs, &self.x.narrow(0, start, len)?, &target_refs, &ids)?;
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

/// One cascade stage of one test: the identifying columns of its rows.
struct StageUnit {
    test: &'static str,
    order: &'static str,
    stage_index: usize,
    stage: String,
}

/// The explained images of one batch.
struct Images<'a> {
    indices: &'a [usize],
    labels: &'a [usize],
    targets: &'a [usize],
}

fn postprocess_all(maps: &[Map], comparisons: &[ComparisonConfig]) -> Processed {
    comparisons.iter().map(|c| maps.par_iter().map(|m| apply_all(&c.postprocess, m.clone())).collect()).collect()
}

/// Runs `plan` into `options.run_dir`, reporting progress through `progress`.
pub fn run(plan: &Plan, options: &RunOptions, progress: &mut dyn FnMut(Progress)) -> Result<RunOutcome> {
    let started = Instant::now();
    let started_unix =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let config = &plan.config;
    let seed = config.seed;
    let dir = &options.run_dir;
    prepare_dir(options)?;
    write_atomic(&dir.join("config.resolved.toml"), plan.resolved_toml().as_bytes())?;
    let mut timings: Vec<(String, f64)> = Vec::new();
    let mut lap = Instant::now();
    let mut mark = |name: &str, timings: &mut Vec<(String, f64)>| {
        timings.push((name.to_string(), lap.elapsed().as_secs_f64()));
        lap = Instant::now();
    };

    progress(Progress::Phase { name: "data".into(), total: 2 });
    let (train_set, test_set) = plan.data.load(seed)?;
    progress(Progress::Advance(2));
    mark("data", &mut timings);

    let (model, epochs, origin) = build_model(plan, &train_set, dir, progress)?;
    let (train_accuracy, test_accuracy) = (accuracy(&model, &train_set)?, accuracy(&model, &test_set)?);
    progress(Progress::Note(format!("model: train accuracy {train_accuracy:.4}, test accuracy {test_accuracy:.4}")));
    mark("model", &mut timings);

    let n = config.attribution.n_images;
    if n > test_set.len() {
        return Err(ExperimentError::Config {
            file: plan.source.clone(),
            message: format!("key `attribution.n_images`: {n}, but the test set has only {} images", test_set.len()),
        });
    }
    let indices: Vec<usize> = (0..n).collect();
    let [c, h, w] = test_set.image_shape;
    let x = Tensor::from_vec(test_set.gather_images(&indices), (n, c, h, w), &Device::Cpu)?;
    let labels: Vec<usize> = indices.iter().map(|&i| test_set.labels[i]).collect();
    let mut explained =
        Explained { x, indices, labels, original_classes: Vec::new(), batch_size: config.attribution.batch_size };
    let outputs = plan.arch.num_outputs();
    let original_logits = explained.logits(&model)?;
    explained.original_classes = classes_of(&original_logits, outputs);
    let explain = config.attribution.explain;
    let original_targets =
        targets_for(explain, &original_logits, outputs, &explained.labels, &explained.original_classes);

    // The reference set of expected gradients: the training images.
    let references = match config.attribution.methods.iter().any(|m| m.needs_references()) {
        true => {
            let all: Vec<usize> = (0..train_set.len()).collect();
            let images = Tensor::from_vec(train_set.gather_images(&all), (train_set.len(), c, h, w), &Device::Cpu)?;
            Some(ReferenceSet::from_tensor(&images)?)
        }
        false => None,
    };
    let methods: Vec<Box<dyn Attribution>> = config
        .attribution
        .methods
        .iter()
        .map(|m| m.build_with(&plan.arch, seed, references.as_ref()))
        .collect::<std::result::Result<_, _>>()?;
    drop(references);

    // Every model explained: the original, then each test's stages. Stages share the tensors
    // they did not re-initialise, so the attribution of a batch evaluates those layers once.
    let mut units: Vec<StageUnit> = Vec::new();
    let mut models: Vec<Model> = vec![model.clone()];
    let mut targets: Vec<Vec<usize>> = vec![original_targets];
    for test in &config.tests {
        let TestConfig::Cascading { order, reinit, stages } = test;
        let sequence = cascade_order(stages.as_deref().unwrap_or_default(), *order);
        let mut weights: Weights = model.weights.clone();
        for (k, stage) in sequence.iter().enumerate() {
            weights = cascade_step(&weights, &plan.arch, stage, reinit, seed)?;
            let randomized = model.with_weights(weights.clone());
            // Only `current_prediction` of a multi-class model needs the randomised model's logits.
            let needs_logits = outputs > 1 && explain == ExplainedClass::CurrentPrediction;
            let logits = if needs_logits { explained.logits(&randomized)? } else { Vec::new() };
            targets.push(targets_for(explain, &logits, outputs, &explained.labels, &explained.original_classes));
            models.push(randomized);
            units.push(StageUnit { test: test.id(), order: order.name(), stage_index: k + 1, stage: stage.clone() });
        }
    }
    mark("stages", &mut timings);

    let batches = explained.indices.len().div_ceil(explained.batch_size.max(1));
    progress(Progress::Phase { name: "attribution and scores".into(), total: (methods.len() * batches) as u64 });
    let mut writer = RowWriter::create(&dir.join("scores.csv"))?;
    let mut all_rows: Vec<ScoreRow> = Vec::new();
    let mut scores_seconds = 0.0;
    for method in &methods {
        // Rows of this method per stage unit and (comparison, metric), written when the method
        // is done: stage by stage, then comparison, metric and image, whatever the batches.
        let mut unit_rows: Vec<Vec<Vec<ScoreRow>>> = vec![Vec::new(); units.len()];
        for start in (0..explained.indices.len()).step_by(explained.batch_size.max(1)) {
            let len = explained.batch_size.min(explained.indices.len() - start);
            let maps = explained.maps(method.as_ref(), &models, &targets, start, len)?;
            let scoring = Instant::now();
            let processed: Vec<Processed> = maps.iter().map(|m| postprocess_all(m, &config.comparisons)).collect();
            let Some((original, stages)) = processed.split_first() else { continue };
            let units: Vec<(RowContext, Images)> = units
                .iter()
                .enumerate()
                .map(|(u, unit)| {
                    let context = RowContext {
                        run_id: &plan.run_id,
                        test: unit.test,
                        order: unit.order,
                        stage_index: unit.stage_index,
                        stage: &unit.stage,
                        method: method.id(),
                    };
                    let images = Images {
                        indices: &explained.indices[start..start + len],
                        labels: &explained.labels[start..start + len],
                        targets: &targets[u + 1][start..start + len],
                    };
                    (context, images)
                })
                .collect();
            let batch_rows = score_rows(&units, &config.comparisons, original, stages);
            scores_seconds += scoring.elapsed().as_secs_f64();
            for (rows, batch) in unit_rows.iter_mut().zip(batch_rows) {
                if rows.is_empty() {
                    rows.resize(batch.len(), Vec::new());
                }
                for (all, group) in rows.iter_mut().zip(batch) {
                    all.extend(group);
                }
            }
            progress(Progress::Advance(1));
        }
        for rows in unit_rows.into_iter().flatten() {
            writer.write(&rows)?;
            all_rows.extend(rows);
        }
        writer.flush()?;
    }
    mark("attribution", &mut timings);
    // Informational: the post-processing and metrics inside the attribution phase.
    timings.push(("scores_within_attribution".into(), scores_seconds));

    let stats = &config.statistics;
    let summary = summarize_rows(&all_rows, stats.bootstrap_resamples, stats.confidence, seed);
    let mut summary_writer = RowWriter::create(&dir.join("summary.csv"))?;
    summary_writer.write(&summary)?;
    summary_writer.finish()?;
    writer.finish()?;
    mark("summary", &mut timings);
    timings.push(("total".into(), started.elapsed().as_secs_f64()));

    let manifest = Manifest {
        name: config.name.clone(),
        run_id: plan.run_id.clone(),
        seed,
        config_source: plan.source.clone(),
        config: serde_json::to_value(config).map_err(|e| ExperimentError::io(dir, e))?,
        git_revision: GIT_REVISION.into(),
        crate_versions: crate_versions(),
        threads: options.threads,
        host: host_name(),
        started_unix,
        timings_s: timings,
        peak_rss_mib: peak_rss_mib(),
        model: ModelReport {
            arch: config.model.arch.clone(),
            stages: plan.arch.stages().iter().map(|s| s.to_string()).collect(),
            origin,
            train_accuracy,
            test_accuracy,
            epochs,
        },
        data: DataReport {
            source: plan.data.name().into(),
            n_train: train_set.len(),
            n_test: test_set.len(),
            image_shape: test_set.image_shape,
            test_class_fractions: test_set.class_fractions(),
        },
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| ExperimentError::io(dir, e))?;
    write_atomic(&dir.join("manifest.json"), &json)?;
    Ok(RunOutcome {
        run_dir: dir.clone(),
        test_accuracy,
        score_rows: all_rows.len(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Trains the model (or loads `model.weights`), saving the weights as `model.safetensors`.
fn build_model(
    plan: &Plan,
    train_set: &Dataset,
    dir: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<(Model, Vec<sanity_model::EpochStats>, String)> {
    let config = &plan.config;
    if let Some(path) = &config.model.weights {
        let weights = Weights::load_safetensors(path, &plan.arch)?;
        return Ok((Model::new(plan.arch.clone(), weights), Vec::new(), path.display().to_string()));
    }
    let initial = Model::new(plan.arch.clone(), init_weights(&plan.arch, config.seed)?);
    let spec = config.training.spec();
    progress(Progress::Phase { name: "training".into(), total: spec.epochs as u64 });
    let mut on_epoch = |s: &sanity_model::EpochStats| {
        progress(Progress::Note(format!(
            "epoch {}: loss {:.4}, running accuracy {:.4}",
            s.epoch, s.loss, s.running_accuracy
        )));
        progress(Progress::Advance(1));
    };
    let (weights, epochs) = train(&initial, train_set, &spec, config.seed, &mut on_epoch)?;
    weights.save_safetensors(&dir.join("model.safetensors"))?;
    Ok((initial.with_weights(weights), epochs, "trained".into()))
}

/// The identifying columns shared by the rows of one (stage, method) unit.
struct RowContext<'a> {
    run_id: &'a str,
    test: &'static str,
    order: &'static str,
    stage_index: usize,
    stage: &'a str,
    method: &'static str,
}

/// Scores of a batch of images under every stage unit, `[unit][(comparison, metric)][image]`.
/// Each original map is prepared once per metric (ranks, local moments) and compared with its
/// maps under every stage; images in parallel.
fn score_rows(
    units: &[(RowContext, Images)],
    comparisons: &[ComparisonConfig],
    original: &Processed,
    stages: &[Processed],
) -> Vec<Vec<Vec<ScoreRow>>> {
    let mut out: Vec<Vec<Vec<ScoreRow>>> = vec![Vec::new(); units.len()];
    for (ci, comparison) in comparisons.iter().enumerate() {
        let label = pipeline_label(&comparison.postprocess);
        for metric in &comparison.metrics {
            let references: Vec<std::result::Result<Reference, Status>> =
                original[ci].par_iter().map(|map| map.as_ref().map(|m| metric.prepare(m)).map_err(|s| *s)).collect();
            for (((context, images), randomized), rows) in units.iter().zip(stages).zip(out.iter_mut()) {
                let scores: Vec<std::result::Result<f64, Status>> = references
                    .par_iter()
                    .zip(&randomized[ci])
                    .map(|pair| match pair {
                        (Ok(reference), Ok(b)) => reference.score(b),
                        (Err(s), _) | (_, Err(s)) => Err(*s),
                    })
                    .collect();
                let group = scores
                    .into_iter()
                    .enumerate()
                    .map(|(i, score)| ScoreRow {
                        run_id: context.run_id.to_string(),
                        test: context.test.to_string(),
                        order: context.order.to_string(),
                        stage_index: context.stage_index,
                        stage: context.stage.to_string(),
                        method: context.method.to_string(),
                        postprocess: label.clone(),
                        metric: metric.id().to_string(),
                        sample: images.indices[i],
                        label: images.labels[i],
                        target: images.targets[i],
                        score: score.ok(),
                        status: score.err().map_or("ok", Status::as_str).to_string(),
                    })
                    .collect();
                rows.push(group);
            }
        }
    }
    out
}
