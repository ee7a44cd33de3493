//! Where the work of `sanity run` goes: which image batches a shard of a job array takes
//! (`--shard K/N`), the directory of each run, and the model cache the runs share
//! (docs/run-directory.md). The CLI only parses its flags into these.

use crate::plan::Plan;
use std::path::{Path, PathBuf};

/// The directory of `plan`'s run: `--out` itself for a single run, `<--out>/<run id>` for
/// each run of a sweep, `results/<name>/<run id>` without `--out`.
pub fn run_dir(out: Option<&Path>, single: bool, plan: &Plan) -> PathBuf {
    match (out, single) {
        (Some(dir), true) => dir.to_path_buf(),
        (Some(dir), false) => dir.join(&plan.run_id),
        (None, _) => PathBuf::from("results").join(&plan.config.name).join(&plan.run_id),
    }
}

/// Where trained models are shared: `.model-cache/` beside `--out` (so that the shards of a
/// job array writing to `OUT/shard-K` share one), else `results/<name>/.model-cache/`.
pub fn model_cache_dir(out: Option<&Path>, name: &str) -> PathBuf {
    match out {
        Some(dir) => dir.parent().unwrap_or(Path::new(".")).join(".model-cache"),
        None => PathBuf::from("results").join(name).join(".model-cache"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_cache_sits_beside_the_output_or_in_the_experiment_s_results() {
        assert_eq!(model_cache_dir(Some(Path::new("out/shard-3")), "x"), PathBuf::from("out/.model-cache"));
        assert_eq!(model_cache_dir(Some(Path::new("run")), "x"), PathBuf::from(".model-cache"));
        assert_eq!(model_cache_dir(None, "quick"), PathBuf::from("results/quick/.model-cache"));
    }
}
