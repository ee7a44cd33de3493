//! Training checkpoints: the state after an epoch (the weights with their batch-norm buffers, the
//! optimiser's state and step count, the epochs so far), enough for [`crate::train::train_from`]
//! to go on as if training had never stopped. Three files per epoch in the checkpoint folder:
//! - `epoch-NNNN.safetensors`: the model's weights (PyTorch names; usable as `model.weights`);
//! - `epoch-NNNN.optimizer.safetensors`: the optimiser's state under PyTorch's names
//!   (`<param>.exp_avg` and `<param>.exp_avg_sq` for AdamW, `<param>.momentum_buffer` for SGD);
//! - `epoch-NNNN.toml`: the epoch, the optimiser's steps, the seed, the training spec, the
//!   architecture, a fingerprint of the training data and the epochs' statistics. It is
//!   written last, so a checkpoint without it is incomplete and ignored.

use crate::error::{ModelError, Result};
use crate::net::{Net, NetSpec};
use crate::train::{EpochStats, TrainSpec};
use crate::weights::Weights;
use candle_core::Device;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The state of training after an epoch.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// What the state belongs to.
    pub meta: CheckpointMeta,
    /// Parameters and batch-norm buffers.
    pub weights: Weights,
    /// The optimiser's state tensors (see the module docs for their names).
    pub optimizer: Weights,
    /// The folder it was read from (none for a checkpoint made in memory).
    pub source: Option<PathBuf>,
}

/// A checkpoint's `epoch-NNNN.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// The last epoch trained (1-based).
    pub epoch: usize,
    /// Optimiser steps taken (AdamW's bias correction counts them).
    pub steps: usize,
    /// The training seed (shuffles and dropout), as a string: TOML's integers end at 2^63 − 1.
    pub seed: String,
    /// The training spec, without its checkpoint folder.
    pub spec: TrainSpec,
    /// [`sanity_data::Dataset::fingerprint`] of the training data.
    pub data: String,
    /// The network trained (a sequential architecture's spec, or a graph's description hashed).
    pub architecture: NetSpec,
    /// The statistics of epochs 1 to `epoch`.
    pub history: Vec<EpochStats>,
}

impl CheckpointMeta {
    /// Why training `arch` with `spec` and `seed` on data with fingerprint `data` cannot go on
    /// from this checkpoint, if it cannot. The number of epochs and the checkpoint settings may
    /// differ: they do not change the epochs already trained.
    pub fn mismatch(&self, net: &Net, spec: &TrainSpec, seed: u64, data: &str) -> Option<String> {
        let comparable =
            |s: &TrainSpec| TrainSpec { epochs: 0, checkpoint_every: 0, checkpoint_dir: None, ..s.clone() };
        if self.seed != seed.to_string() {
            return Some(format!("it was trained with seed {}, not {seed}", self.seed));
        }
        if self.architecture != net.spec() {
            return Some("it was trained with another architecture (layers or their settings differ)".into());
        }
        let table = |s: &TrainSpec| toml::Table::try_from(comparable(s)).map_err(|e| e.to_string());
        let (then, now) = match (table(&self.spec), table(spec)) {
            (Ok(then), Ok(now)) => (then, now),
            (Err(e), _) | (_, Err(e)) => return Some(format!("its training settings cannot be compared: {e}")),
        };
        let differ: Vec<String> = then
            .keys()
            .chain(now.keys().filter(|k| !then.contains_key(*k)))
            .filter(|k| then.get(*k) != now.get(*k))
            .map(|k| {
                let show = |t: &toml::Table| t.get(k).map_or_else(|| "none".to_string(), ToString::to_string);
                format!("{k} = {} there, {} here", show(&then), show(&now))
            })
            .collect();
        if !differ.is_empty() {
            return Some(format!("it was trained with other settings: {}", differ.join(", ")));
        }
        if self.data != data {
            return Some(format!("it was trained on other data ({}, not {data})", self.data));
        }
        None
    }
}

/// `epoch-NNNN`.
fn stem(epoch: usize) -> String {
    format!("epoch-{epoch:04}")
}

impl Checkpoint {
    /// The three files of epoch `epoch` in `dir`: weights, optimiser state, metadata.
    pub fn files(dir: &Path, epoch: usize) -> [PathBuf; 3] {
        let stem = stem(epoch);
        [
            dir.join(format!("{stem}.safetensors")),
            dir.join(format!("{stem}.optimizer.safetensors")),
            dir.join(format!("{stem}.toml")),
        ]
    }

    /// The epochs of the complete checkpoints in `dir` (those whose metadata is written), in
    /// order; none when `dir` does not exist.
    pub fn epochs(dir: &Path) -> std::io::Result<Vec<usize>> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut epochs = Vec::new();
        for entry in entries {
            let name = entry?.file_name();
            let epoch: Option<usize> =
                name.to_str().and_then(|n| n.strip_prefix("epoch-")?.strip_suffix(".toml")?.parse().ok());
            epochs.extend(epoch);
        }
        epochs.sort_unstable();
        Ok(epochs)
    }

    /// Moves every complete checkpoint of `from` into `to` (created if missing; checkpoints of
    /// the same epoch there are replaced), each with its metadata last, so that `to` never
    /// holds a checkpoint that looks complete and is not; a move across file systems copies
    /// to a `.partial` file first. Then removes `from` with what is left in it (unfinished
    /// files of a killed save).
    pub fn move_all(from: &Path, to: &Path) -> std::io::Result<()> {
        let epochs = Self::epochs(from)?;
        std::fs::create_dir_all(to)?;
        for epoch in epochs {
            for (source, target) in Self::files(from, epoch).iter().zip(Self::files(to, epoch)) {
                if std::fs::rename(source, &target).is_err() {
                    let partial = target.with_extension("partial");
                    std::fs::copy(source, &partial)?;
                    std::fs::rename(&partial, &target)?;
                    std::fs::remove_file(source)?;
                }
            }
        }
        std::fs::remove_dir_all(from)
    }

    /// Removes the checkpoint files (`epoch-NNNN.*`, complete or not) from `dir`, leaving
    /// other files; returns how many it removed.
    pub fn remove_all(dir: &Path) -> std::io::Result<usize> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut removed = 0;
        for entry in entries {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with("epoch-") {
                std::fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Writes the checkpoint into `dir` (created if missing), the metadata last.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| ModelError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let [weights, optimizer, meta] = Self::files(dir, self.meta.epoch);
        self.weights.save_safetensors(&weights)?;
        self.optimizer.save_safetensors(&optimizer)?;
        let text =
            toml::to_string(&self.meta).map_err(|e| ModelError::Training(format!("checkpoint metadata: {e}")))?;
        let partial = meta.with_extension("toml.partial");
        std::fs::write(&partial, text).map_err(io(&partial))?;
        std::fs::rename(&partial, &meta).map_err(io(&meta))
    }

    /// The newest complete checkpoint in `dir` of an epoch up to `max_epoch` (none when `dir`
    /// does not exist or holds none). A file of it that cannot be read, or weights that do not
    /// fit `arch`, is an error that names the file.
    pub fn latest(dir: &Path, net: &Net, max_epoch: usize) -> Result<Option<Self>> {
        let epochs = Self::epochs(dir).map_err(|source| ModelError::Io { path: dir.display().to_string(), source })?;
        let newest = epochs.into_iter().rfind(|&epoch| epoch <= max_epoch);
        let Some(epoch) = newest else { return Ok(None) };
        let [weights, optimizer, meta] = Self::files(dir, epoch);
        let bad = |path: &Path, reason: String| ModelError::Weights { path: path.display().to_string(), reason };
        let text = std::fs::read_to_string(&meta)
            .map_err(|source| ModelError::Io { path: meta.display().to_string(), source })?;
        let meta_value: CheckpointMeta = toml::from_str(&text).map_err(|e| bad(&meta, e.to_string()))?;
        if meta_value.epoch != epoch || meta_value.history.len() != epoch {
            return Err(bad(
                &meta,
                format!("says epoch {} with {} epochs of statistics", meta_value.epoch, meta_value.history.len()),
            ));
        }
        let loaded =
            candle_core::safetensors::load(&optimizer, &Device::Cpu).map_err(|e| bad(&optimizer, e.to_string()))?;
        let mut state = Weights::new();
        for (name, tensor) in loaded {
            state.insert(name, tensor);
        }
        let weights = net.load_weights(&weights)?;
        Ok(Some(Self { meta: meta_value, weights, optimizer: state, source: Some(dir.to_path_buf()) }))
    }
}
