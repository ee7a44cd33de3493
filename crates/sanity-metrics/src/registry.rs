//! Every metric in one list: its config id, what it measures (with the reference it matches)
//! and a config that builds it. The CLI's help and the README's metric list are checked against
//! it; adding a metric means a [`crate::MetricSpec`] variant, its code, and an entry here (a test fails
//! until all three agree).

/// One metric.
#[derive(Debug, Clone, Copy)]
pub struct MetricInfo {
    /// The id configs and CSV files write (`metric = "ssim"`).
    pub id: &'static str,
    /// What it measures, in one line.
    pub about: &'static str,
    /// A config table that builds it (its required parameters given).
    pub example: &'static str,
}

/// Every metric, in the order the README lists them.
pub const METRICS: &[MetricInfo] = &[
    MetricInfo {
        id: "spearman",
        about: "rank correlation of all values (scipy.stats.spearmanr)",
        example: r#"metric = "spearman""#,
    },
    MetricInfo {
        id: "ssim",
        about: "mean structural similarity (skimage.metrics.structural_similarity)",
        example: "metric = \"ssim\"\ndata_range = 2.0",
    },
    MetricInfo {
        id: "kendall_tau_b",
        about: "Kendall's tau-b of all values (scipy.stats.kendalltau)",
        example: r#"metric = "kendall_tau_b""#,
    },
    MetricInfo {
        id: "pearson",
        about: "linear correlation of all values (scipy.stats.pearsonr)",
        example: r#"metric = "pearson""#,
    },
    MetricInfo { id: "cosine", about: "cosine similarity of the flattened maps", example: r#"metric = "cosine""# },
    MetricInfo {
        id: "mse",
        about: "mean squared error (a distance: 0 for identical maps)",
        example: r#"metric = "mse""#,
    },
    MetricInfo {
        id: "top_k_intersection",
        about: "the share of the first map's k largest values among the second's k largest",
        example: "metric = \"top_k_intersection\"\nk = 20",
    },
    MetricInfo {
        id: "hog_spearman",
        about: "rank correlation of the maps' HOG features (Adebayo et al. 2018)",
        example: r#"metric = "hog_spearman""#,
    },
    MetricInfo {
        id: "hog_pearson",
        about: "linear correlation of the maps' HOG features",
        example: r#"metric = "hog_pearson""#,
    },
    MetricInfo {
        id: "discrete_entropy",
        about: "the efficient MPRT's complexity ratio of histogram entropies (Quantus)",
        example: r#"metric = "discrete_entropy""#,
    },
];

/// Every metric's id, in [`METRICS`]' order.
pub fn metric_ids() -> Vec<&'static str> {
    METRICS.iter().map(|m| m.id).collect()
}

/// `id: about` per metric, one per line: the CLI's help.
pub fn metric_help() -> String {
    METRICS.iter().map(|m| format!("{}: {}", m.id, m.about)).collect::<Vec<_>>().join("\n")
}

/// Every metric, built from its example (the tests score each).
#[cfg(test)]
pub(crate) fn every_metric() -> Vec<crate::MetricSpec> {
    METRICS.iter().map(|m| toml::from_str(m.example).unwrap_or_else(|e| panic!("{}: {e}", m.id))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metric::MetricSpec;

    /// The position of `spec`'s variant: the match is exhaustive, so a new variant does not
    /// compile until it is listed here, and the test below fails until [`METRICS`] builds it.
    fn variant(spec: &MetricSpec) -> usize {
        match spec {
            MetricSpec::Spearman {} => 0,
            MetricSpec::Ssim(_) => 1,
            MetricSpec::Pearson {} => 2,
            MetricSpec::KendallTauB {} => 3,
            MetricSpec::HogPearson(_) => 4,
            MetricSpec::HogSpearman(_) => 5,
            MetricSpec::Cosine {} => 6,
            MetricSpec::Mse {} => 7,
            MetricSpec::DiscreteEntropy { .. } => 8,
            MetricSpec::TopKIntersection { .. } => 9,
        }
    }
    const VARIANTS: usize = 10;

    #[test]
    fn every_variant_has_one_entry_whose_example_builds_it_under_its_id() {
        let mut seen = vec![0; VARIANTS];
        for (info, spec) in METRICS.iter().zip(every_metric()) {
            assert_eq!(spec.id(), info.id, "the example of `{}` builds `{}`", info.id, spec.id());
            seen[variant(&spec)] += 1;
        }
        assert!(seen.iter().all(|&n| n == 1), "one entry per variant: {seen:?}");
    }
}
