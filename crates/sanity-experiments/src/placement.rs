//! Where the work of `sanity run` goes: which image batches a shard of a job array takes
//! (`--shard K/N`), the directory of each run, and the model cache the runs share
//! (docs/run-directory.md). The CLI only parses its flags into these.

use crate::error::{ExperimentError, Result};
use crate::plan::Plan;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Shard `index` of `count` (`--shard K/N`, 0 <= K < N); recorded as such in a shard's
/// manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shard {
    /// K, 0-based.
    pub index: usize,
    /// N, the number of shards.
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = ExperimentError;

    /// `K/N` with 0 <= K < N; the error says what is accepted.
    fn from_str(value: &str) -> Result<Self> {
        let bad = || ExperimentError::Config {
            file: "--shard".into(),
            message: format!("`{value}`; accepted: K/N with 0 <= K < N, e.g. 0/4"),
        };
        let (k, n) = value.split_once('/').ok_or_else(bad)?;
        let (index, count): (usize, usize) =
            (k.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl Shard {
    /// The batches this shard takes of runs with `batches[r]` image batches each: the units
    /// of work are numbered over all runs in order, and the shard takes those whose number is
    /// `index` modulo `count`, so every shard gets a share of every run's images. One set per
    /// run (empty: nothing of that run here).
    pub fn select(&self, batches: &[usize]) -> Vec<BTreeSet<usize>> {
        let mut first = 0;
        batches
            .iter()
            .map(|&n| {
                let taken = (0..n).filter(|b| (first + b) % self.count == self.index).collect();
                first += n;
                taken
            })
            .collect()
    }
}

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
    fn shards_parse_and_take_every_unit_once() {
        assert_eq!("1/4".parse::<Shard>().expect("valid"), Shard { index: 1, count: 4 });
        for bad in ["4/4", "x", "1-4", "/3", "2/"] {
            let error = bad.parse::<Shard>().expect_err(bad).to_string();
            assert!(error.contains("--shard") && error.contains("K/N"), "{error}");
        }
        // Three runs of 3, 1 and 4 batches over 3 shards: units 0..8 numbered across runs.
        let runs = [3, 1, 4];
        let taken: Vec<Vec<BTreeSet<usize>>> = (0..3).map(|index| Shard { index, count: 3 }.select(&runs)).collect();
        assert_eq!(taken[0], vec![[0].into(), [0].into(), [2].into()]);
        assert_eq!(taken[1], vec![[1].into(), BTreeSet::new(), [0, 3].into()]);
        for (r, &n) in runs.iter().enumerate() {
            let mut all: Vec<usize> = taken.iter().flat_map(|t| t[r].iter().copied()).collect();
            all.sort_unstable();
            assert_eq!(all, (0..n).collect::<Vec<_>>(), "run {r}: every batch in exactly one shard");
        }
    }

    #[test]
    fn the_model_cache_sits_beside_the_output_or_in_the_experiment_s_results() {
        assert_eq!(model_cache_dir(Some(Path::new("out/shard-3")), "x"), PathBuf::from("out/.model-cache"));
        assert_eq!(model_cache_dir(Some(Path::new("run")), "x"), PathBuf::from(".model-cache"));
        assert_eq!(model_cache_dir(None, "quick"), PathBuf::from("results/quick/.model-cache"));
    }
}
