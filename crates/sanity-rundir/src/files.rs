//! The names of a run directory's files (docs/run-directory.md), how a finished file is
//! written, and how run directories are found.

use crate::error::{ExperimentError, Result};
use std::path::{Path, PathBuf};

/// A run directory's resolved config: its presence marks a run directory.
pub const CONFIG_RESOLVED: &str = "config.resolved.toml";
/// A run directory's manifest: its presence marks a finished (or merged) run.
pub const MANIFEST: &str = "manifest.json";
/// A run directory's score rows.
pub const SCORES: &str = "scores.csv";
/// A run directory's summary rows.
pub const SUMMARY: &str = "summary.csv";
/// A run directory's verdicts.
pub const VERDICTS: &str = "verdicts.csv";
/// The figures' directory inside a run directory.
pub const FIGURES_DIR: &str = "figures";
/// The report's file name inside a run directory.
pub const REPORT_MD: &str = "report.md";

/// The run directories at `input`: itself when it holds `marker`, else its sub-directories
/// that do, in name order (empty when none does).
pub fn run_dirs(input: &Path, marker: &str) -> Result<Vec<PathBuf>> {
    if input.join(marker).exists() {
        return Ok(vec![input.to_path_buf()]);
    }
    let entries = std::fs::read_dir(input).map_err(|e| ExperimentError::io(input, e))?;
    let mut dirs: Vec<PathBuf> =
        entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.join(marker).exists()).collect();
    dirs.sort();
    Ok(dirs)
}

/// Writes `path` whole: a `.partial` file renamed into place.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, contents).map_err(|e| ExperimentError::io(&partial, e))?;
    std::fs::rename(&partial, path).map_err(|e| ExperimentError::io(path, e))
}

/// The name of a stage's model in `maps/` file names: the non-empty parts of a score row's
/// `test`, `order` and `stage`, joined by dots (`cascading.top_down.fc1`, `independent.conv1`,
/// `data_randomization.random_labels`; a stage named as its test once: `random_logit`).
pub fn stage_key(test: &str, order: &str, stage: &str) -> String {
    let mut parts: Vec<&str> = [test, order, stage].into_iter().filter(|s| !s.is_empty()).collect();
    parts.dedup();
    parts.join(".")
}
