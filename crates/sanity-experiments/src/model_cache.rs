//! Trained models shared between runs: a sweep over methods, metrics or tests trains each model
//! once. A model is cached by what determines it: the architecture (the file's text for an
//! architecture TOML), the data config, the labels (true, or permuted with the data
//! randomisation test's stopping rule), the seed and the training config. Files are written
//! whole (temporary file + rename), so shards running side by side can share a cache.

use crate::config::Config;
use crate::error::{ExperimentError, Result};
use sanity_data::fnv1a;
use sanity_model::{Architecture, EpochStats, Weights};
use std::path::{Path, PathBuf};

/// A directory of cached models: `<key>.safetensors` and `<key>.json` (the epochs).
#[derive(Debug, Clone)]
pub struct ModelCache {
    dir: PathBuf,
}

impl ModelCache {
    /// The cache in `dir` (created on the first store).
    pub fn new(dir: &Path) -> Self {
        Self { dir: dir.to_path_buf() }
    }

    /// The key of the model of `config` trained on `labels` (`true`, or a description of the
    /// random-label training).
    pub fn key(config: &Config, labels: &str) -> String {
        let arch = &config.model.arch;
        let arch_text = std::fs::read_to_string(arch).unwrap_or_default();
        let data = toml::to_string(&config.data).unwrap_or_default();
        let training = toml::to_string(&config.training).unwrap_or_default();
        let text = format!("{arch}\u{1f}{arch_text}\u{1f}{data}\u{1f}{training}\u{1f}{labels}\u{1f}{}", config.seed);
        format!("{:016x}", fnv1a(text.as_bytes()))
    }

    /// The cached weights and epochs of `key`, if any.
    pub fn load(&self, key: &str, arch: &Architecture) -> Result<Option<(Weights, Vec<EpochStats>)>> {
        let (weights, epochs) = (self.dir.join(format!("{key}.safetensors")), self.dir.join(format!("{key}.json")));
        if !(weights.exists() && epochs.exists()) {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&epochs).map_err(|e| ExperimentError::io(&epochs, e))?;
        let stats: Vec<EpochStats> = serde_json::from_str(&text).map_err(|e| ExperimentError::io(&epochs, e))?;
        Ok(Some((Weights::load_safetensors(&weights, arch)?, stats)))
    }

    /// Stores `weights` and `epochs` under `key`.
    pub fn store(&self, key: &str, weights: &Weights, epochs: &[EpochStats]) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| ExperimentError::io(&self.dir, e))?;
        let unique = format!("{}.{}", std::process::id(), key);
        let (tmp_w, tmp_e) =
            (self.dir.join(format!("{unique}.tmp.safetensors")), self.dir.join(format!("{unique}.tmp.json")));
        weights.save_safetensors(&tmp_w)?;
        let json = serde_json::to_vec(epochs).map_err(|e| ExperimentError::io(&tmp_e, e))?;
        std::fs::write(&tmp_e, json).map_err(|e| ExperimentError::io(&tmp_e, e))?;
        let (w, e) = (self.dir.join(format!("{key}.safetensors")), self.dir.join(format!("{key}.json")));
        std::fs::rename(&tmp_w, &w).map_err(|err| ExperimentError::io(&w, err))?;
        std::fs::rename(&tmp_e, &e).map_err(|err| ExperimentError::io(&e, err))
    }
}
