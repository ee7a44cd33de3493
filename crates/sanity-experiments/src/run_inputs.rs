//! What a run's results depend on beyond its config, by content: the training and test data
//! (their fingerprints), the resolved architecture and the bytes of any weights file it was
//! given. A run records them in `inputs.json` when it starts; `--resume` refuses to go on when
//! any of them changed since (the files under the same names now hold other bytes), since the
//! batches kept would then mix two experiments.

use crate::checked::{RandomLabels, TestKind};
use crate::plan::Plan;
use sanity_data::{Dataset, fnv1a};
use sanity_model::{Net, NetSpec};
use sanity_rundir::error::{ExperimentError, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The record's file name in a run directory.
pub const INPUTS: &str = "inputs.json";

/// A run's inputs by content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInputs {
    /// [`Dataset::fingerprint`] of the training set.
    pub train_data: String,
    /// [`Dataset::fingerprint`] of the test set.
    pub test_data: String,
    /// The resolved network (a sequential architecture as it always was written, or a model
    /// graph's description hashed: [`NetSpec`]).
    pub architecture: NetSpec,
    /// The given weights files by config key (`model.weights`, `tests[i].weights`): their
    /// [`file_hash`].
    pub weights: BTreeMap<String, String>,
}

impl RunInputs {
    /// The inputs of `plan` with its data sets loaded; `train_print` is the training set's
    /// fingerprint.
    pub fn of(plan: &Plan, train_print: &str, test_set: &Dataset) -> Result<Self> {
        let mut weights = BTreeMap::new();
        if let Some(path) = &plan.config.model.weights {
            weights.insert("model.weights".to_string(), file_hash(path)?);
        }
        if let Some(path) = &plan.config.model.onnx {
            weights.insert("model.onnx".to_string(), file_hash(path)?);
        }
        for (i, test) in plan.tests.iter().enumerate() {
            if let TestKind::RandomLabels(RandomLabels { weights: Some(path), .. }) = &test.kind {
                weights.insert(format!("tests[{i}].weights"), file_hash(path)?);
            }
        }
        Ok(Self {
            train_data: train_print.to_string(),
            test_data: test_set.fingerprint(),
            architecture: plan.net.spec(),
            weights,
        })
    }

    /// Records the inputs in `dir`, or with `resume` checks them against the record there (an
    /// old run directory without one gets one).
    pub fn check_or_record(&self, dir: &Path, resume: bool) -> Result<()> {
        let path = dir.join(INPUTS);
        if resume && path.exists() {
            let text = std::fs::read_to_string(&path).map_err(|e| ExperimentError::io(&path, e))?;
            let before: RunInputs = serde_json::from_str(&text).map_err(|e| ExperimentError::Output {
                path: path.display().to_string(),
                message: format!("cannot be read ({e}); start again with --force"),
            })?;
            let changed = self.differences(&before);
            if !changed.is_empty() {
                return Err(ExperimentError::Output {
                    path: dir.display().to_string(),
                    message: format!(
                        "cannot be resumed: {} changed since the run started (the batches kept were computed on the old ones); start again with --force",
                        changed.join(", ")
                    ),
                });
            }
            return Ok(());
        }
        let json = serde_json::to_vec_pretty(self).map_err(|e| ExperimentError::io(&path, e))?;
        sanity_rundir::files::write_atomic(&path, &json)
    }

    fn differences(&self, before: &RunInputs) -> Vec<String> {
        let mut out = Vec::new();
        if self.train_data != before.train_data {
            out.push(format!("the training data ({}, then {})", self.train_data, before.train_data));
        }
        if self.test_data != before.test_data {
            out.push(format!("the test data ({}, then {})", self.test_data, before.test_data));
        }
        if self.architecture != before.architecture {
            out.push("the architecture".to_string());
        }
        if self.weights != before.weights {
            let keys: std::collections::BTreeSet<&String> = self
                .weights
                .keys()
                .chain(before.weights.keys())
                .filter(|k| self.weights.get(*k) != before.weights.get(*k))
                .collect();
            out.push(format!(
                "the weights file of {}",
                keys.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
            ));
        }
        out
    }
}

/// The size and a hash of the bytes of the file at `path`.
pub fn file_hash(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| ExperimentError::io(path, e))?;
    Ok(bytes_hash(&bytes))
}

/// The size and a hash of `bytes`, as [`file_hash`] gives them for a file.
fn bytes_hash(bytes: &[u8]) -> String {
    format!("{} bytes, hash {:016x}", bytes.len(), fnv1a(bytes))
}

/// The weights file at `path`, read once: its [`file_hash`], and its weights for `net` (or
/// why they cannot be loaded).
pub fn read_weights(
    path: &Path,
    net: &Net,
) -> Result<(String, std::result::Result<sanity_model::Weights, sanity_model::ModelError>)> {
    let bytes = std::fs::read(path).map_err(|e| ExperimentError::io(path, e))?;
    let weights = net.weights_from_bytes(&bytes, &path.display().to_string());
    Ok((bytes_hash(&bytes), weights))
}

/// The split file's name in a run directory.
pub const SPLIT: &str = "split.csv";

/// Writes `split.csv`: one row per image of the training and the test set, `split` (`train`,
/// `test`), `sample` (the index in that set: `sample` in the other CSVs is the test set's),
/// `source` (the file, image file or generator stream) and `source_row` (the row in it; empty
/// for an image file), so that results can be joined with the user's own metadata.
pub fn write_split(dir: &Path, origins: &crate::plan::Origins) -> Result<()> {
    let path = dir.join(SPLIT);
    let mut writer = csv::Writer::from_writer(Vec::new());
    let io = |e: csv::Error| ExperimentError::io(&path, e);
    writer.write_record(["split", "sample", "source", "source_row"]).map_err(io)?;
    for (split, rows) in [("train", &origins.train), ("test", &origins.test)] {
        for (sample, (source, row)) in rows.iter().enumerate() {
            writer.write_record([split, &sample.to_string(), source, row]).map_err(io)?;
        }
    }
    let bytes = writer.into_inner().map_err(|e| ExperimentError::io(&path, e))?;
    sanity_rundir::files::write_atomic(&path, &bytes)
}
