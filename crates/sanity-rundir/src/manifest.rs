//! `manifest.json`: what ran, where, with which versions, how long, and how good the model was.

use crate::error::{ExperimentError, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The git revision the binary was built from (`git describe`-like, `unknown` outside git).
pub const GIT_REVISION: &str = env!("SANITY_GIT_REVISION");

/// Everything needed to reproduce or audit a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// Experiment name.
    pub name: String,
    /// Run id.
    pub run_id: String,
    /// Run seed.
    pub seed: u64,
    /// Where the config came from.
    pub config_source: String,
    /// The resolved config.
    pub config: serde_json::Value,
    /// The swept keys and values of this run (empty outside a sweep).
    #[serde(default)]
    pub params: std::collections::BTreeMap<String, String>,
    /// Git revision of the build.
    pub git_revision: String,
    /// Versions of the project's crates and key dependencies.
    #[serde(default)]
    pub crate_versions: BTreeMap<String, String>,
    /// Worker threads (rayon and candle).
    pub threads: usize,
    /// Host name.
    pub host: String,
    /// Unix time (s) at start.
    pub started_unix: u64,
    /// Wall-clock seconds per phase, in order.
    pub timings_s: Vec<(String, f64)>,
    /// Peak resident memory of the process (VmHWM), MiB; none where /proc is unavailable.
    #[serde(default)]
    pub peak_rss_mib: Option<f64>,
    /// Model and its accuracies.
    pub model: ModelReport,
    /// The random-label model of the data randomisation test, when it ran.
    #[serde(default)]
    pub random_label_model: Option<RandomLabelReport>,
    /// The shard of a sharded run (`--shard K/N`): its scores cover only its batches, and
    /// `sanity merge` writes the summary.
    #[serde(default)]
    pub shard: Option<crate::shard::Shard>,
    /// Data sets.
    pub data: DataReport,
    /// The shard directories `sanity merge` combined into this run (empty otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<String>,
}

impl Manifest {
    /// The manifest at `path`, typed; None when there is none (the run has not finished). One
    /// that does not parse is bad output, named with what to do.
    pub fn read(path: &Path) -> Result<Option<Manifest>> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| ExperimentError::Output {
                path: path.display().to_string(),
                message: format!("{e}; the manifest is damaged or was edited (run the experiment again to rewrite it)"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ExperimentError::io(path, e)),
        }
    }

    /// The seconds of step `name` (`total`: the whole run), when recorded.
    pub fn seconds(&self, name: &str) -> Option<f64> {
        self.timings_s.iter().find(|(n, _)| n == name).map(|(_, s)| *s)
    }
}

/// The trained (or loaded) model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelReport {
    /// Architecture name or file.
    pub arch: String,
    /// Parameterised layers.
    pub stages: Vec<String>,
    /// `trained` or the weights file it was loaded from.
    pub origin: String,
    /// Accuracy on the training set (evaluation mode), true labels.
    pub train_accuracy: f64,
    /// Accuracy on the test set, true labels.
    pub test_accuracy: f64,
    /// Per-epoch loss and running accuracy.
    pub epochs: Vec<sanity_model::EpochStats>,
}

/// The model of the data randomisation test (trained on permuted labels).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RandomLabelReport {
    /// `trained` or the weights file it was loaded from.
    pub origin: String,
    /// Training images it was trained on (the first ones of the training set).
    pub n_train: usize,
    /// Accuracy on the training set against the permuted labels it was trained on.
    pub train_accuracy_random_labels: f64,
    /// Accuracy on the training set against the true labels.
    pub train_accuracy_true_labels: f64,
    /// Accuracy on the test set, true labels (chance level expected).
    pub test_accuracy: f64,
    /// The training accuracy it had to reach.
    pub target_accuracy: f64,
    /// Whether it reached it (false: the run went on with the model as it was).
    pub reached_target: bool,
    /// Per-epoch loss and accuracies.
    pub epochs: Vec<sanity_model::EpochStats>,
}

/// The data sets.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DataReport {
    /// Source name.
    pub source: String,
    /// Training images.
    pub n_train: usize,
    /// Test images.
    pub n_test: usize,
    /// `[c, h, w]`.
    pub image_shape: [usize; 3],
    /// Class fractions of the test set.
    pub test_class_fractions: Vec<f64>,
}

/// The versions of the crates that decide the numbers.
pub fn crate_versions() -> BTreeMap<String, String> {
    let mut v = BTreeMap::new();
    v.insert("sanity".into(), env!("CARGO_PKG_VERSION").into());
    v.insert("candle-core".into(), env!("SANITY_CANDLE_VERSION").into());
    v
}

/// The host name, from `/etc/hostname` or `$HOSTNAME`.
pub fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// The process's peak resident set size in MiB, from `/proc/self/status` (Linux).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
