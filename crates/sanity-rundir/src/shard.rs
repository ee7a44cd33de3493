//! A shard of a job array (`--shard K/N`): which image batches it takes; recorded in a
//! shard's manifest (docs/run-directory.md).

use crate::error::{ExperimentError, Result};
use std::collections::BTreeSet;

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
        let bad = || ExperimentError::config("--shard", format!("`{value}`; accepted: K/N with 0 <= K < N, e.g. 0/4"));
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
}
