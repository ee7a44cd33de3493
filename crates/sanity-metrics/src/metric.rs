//! Metric choice (as written in configs) and the outcome of one comparison.

use crate::entropy::discrete_entropy;
use crate::hog::{HogParams, hog_features};
use crate::map::Map;
use crate::rank::{average_ranks, average_ranks_f64, kendall_tau_b, pearson_of, with_average_ranks};
use crate::ssim::{ChannelMoments, SsimParams, prepare_ssim, ssim_prepared};
use crate::vector::{cosine, mse, top_k_indices, top_k_overlap};
use serde::{Deserialize, Serialize};

/// Why a comparison has no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// A map is constant (zero variance), so a correlation or normalisation is undefined.
    ConstantMap,
    /// A map holds NaN or an infinity.
    NonFinite,
    /// The two maps differ in shape.
    ShapeMismatch,
    /// The maps are smaller than the metric's window or hold fewer than two values.
    TooSmall,
    /// A localisation mask has no pixel inside.
    EmptyMask,
    /// A localisation mask covers every pixel (AUC has no pixels outside to rank).
    FullMask,
    /// A share of a map's sum that is not one: the sum is zero, or the part on the mask exceeds
    /// it (negative values).
    UndefinedRatio,
}

impl Status {
    /// The value of the `status` CSV column.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::ConstantMap => "constant_map",
            Status::NonFinite => "non_finite",
            Status::ShapeMismatch => "shape_mismatch",
            Status::TooSmall => "too_small",
            Status::EmptyMask => "empty_mask",
            Status::FullMask => "full_mask",
            Status::UndefinedRatio => "undefined_ratio",
        }
    }
}

/// A metric value, or the status that says why there is none.
pub type Score = Result<f64, Status>;

/// `score(a, b)` when both sides are there; otherwise the status of the first that is not (a
/// map whose post-processing failed, a reference that could not be prepared).
pub fn score_both<A, B>(a: &Result<A, Status>, b: &Result<B, Status>, score: impl FnOnce(&A, &B) -> Score) -> Score {
    match (a, b) {
        (Ok(a), Ok(b)) => score(a, b),
        (Err(s), _) | (_, Err(s)) => Err(*s),
    }
}

/// 100 histogram bins (Quantus' default).
pub fn default_bins() -> usize {
    100
}

/// A similarity metric and its parameters (`metric = "spearman"`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "metric", rename_all = "snake_case", deny_unknown_fields)]
pub enum MetricSpec {
    /// Spearman's rank correlation over all values (average ranks for ties, as scipy).
    Spearman {},
    /// Mean structural similarity, scikit-image's `structural_similarity`.
    Ssim(SsimParams),
    /// Pearson's linear correlation over all values (as `scipy.stats.pearsonr`).
    Pearson {},
    /// Kendall's τ-b over all values (as `scipy.stats.kendalltau`).
    KendallTauB {},
    /// Pearson correlation of the two maps' HOG features (scikit-image's `hog`).
    HogPearson(HogParams),
    /// Spearman correlation of the two maps' HOG features (Adebayo et al. 2018's HOG similarity).
    HogSpearman(HogParams),
    /// Cosine similarity of the flattened maps (a similarity, not a distance).
    Cosine {},
    /// Mean squared error (a distance: 0 for identical maps).
    Mse {},
    /// The efficient MPRT's complexity ratio: the discrete entropy of the second map's value
    /// histogram over the first's (`bins` equal-width bins, as Quantus' `discrete_entropy`); above 1
    /// when randomising the model made the explanation more complex.
    DiscreteEntropy {
        /// Histogram bins. Default 100 (Quantus' default).
        #[serde(default = "default_bins")]
        bins: usize,
    },
    /// The fraction of the first map's `k` largest values whose positions are among the second
    /// map's `k` largest (ties broken by position, as numpy's stable argsort).
    TopKIntersection {
        /// How many values. Required.
        k: usize,
    },
}

/// The largest k of `top_k_intersection` (the pixels of the largest map a resize allows).
pub const MAX_TOP_K: usize = crate::postprocess::MAX_RESIZE * crate::postprocess::MAX_RESIZE;

impl MetricSpec {
    /// The id used in CSV files.
    pub fn id(&self) -> &'static str {
        match self {
            MetricSpec::Spearman {} => "spearman",
            MetricSpec::Ssim(_) => "ssim",
            MetricSpec::Pearson {} => "pearson",
            MetricSpec::KendallTauB {} => "kendall_tau_b",
            MetricSpec::HogPearson(_) => "hog_pearson",
            MetricSpec::HogSpearman(_) => "hog_spearman",
            MetricSpec::Cosine {} => "cosine",
            MetricSpec::Mse {} => "mse",
            MetricSpec::TopKIntersection { .. } => "top_k_intersection",
            MetricSpec::DiscreteEntropy { .. } => "discrete_entropy",
        }
    }

    /// Whether the metric with CSV id `id` is a similarity that gives 1 for identical maps and
    /// never more (the correlations, SSIM, cosine, top-k intersection): figures put 0 and 1 on
    /// its axis, so that "unchanged" and "unrelated" can be read off.
    pub fn peaks_at_one(id: &str) -> bool {
        matches!(
            id,
            "spearman"
                | "pearson"
                | "kendall_tau_b"
                | "ssim"
                | "cosine"
                | "hog_pearson"
                | "hog_spearman"
                | "top_k_intersection"
        )
    }

    /// Checks the parameters; the message says what is accepted.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            MetricSpec::Ssim(p) => p.validate(),
            MetricSpec::HogPearson(p) | MetricSpec::HogSpearman(p) => p.validate(),
            MetricSpec::TopKIntersection { k } if !(1..=MAX_TOP_K).contains(k) => {
                Err(format!("k = {k}; accepted: 1 to {MAX_TOP_K}"))
            }
            MetricSpec::DiscreteEntropy { bins } if !(2..=1_000_000).contains(bins) => {
                Err(format!("bins = {bins}; accepted: 2 to 1000000"))
            }
            _ => Ok(()),
        }
    }

    /// Why this metric cannot score maps of `shape` (`[c, h, w]`, after post-processing),
    /// with what would work; None when it can. Every map of that shape would otherwise be
    /// `too_small` (scikit-image raises for SSIM windows wider than the image).
    pub fn unfit_for(&self, shape: [usize; 3]) -> Option<String> {
        let [c, h, w] = shape;
        match self {
            MetricSpec::Ssim(_) if h.min(w) < 3 => Some(format!(
                "the maps are {h}x{w}, narrower than any SSIM window (3 pixels at least); accepted: a resize step to at least 3x3 before it, or another metric"
            )),
            MetricSpec::Ssim(p) if p.window_side() > h.min(w) => Some(format!(
                "the SSIM window is {} pixels wide but the maps are {h}x{w}; accepted: a window of at most {} pixels, e.g. window = {{ kind = \"uniform\", size = {} }} or a gaussian window with a smaller sigma",
                p.window_side(),
                h.min(w),
                largest_odd_at_most(h.min(w)).max(3)
            )),
            MetricSpec::HogPearson(p) | MetricSpec::HogSpearman(p) => {
                let ([cr, cc], [br, bc]) = (p.pixels_per_cell, p.cells_per_block);
                (h / cr < br || w / cc < bc).then(|| {
                    format!(
                        "a HOG block of {br}x{bc} cells of {cr}x{cc} pixels does not fit maps of {h}x{w}; accepted: pixels_per_cell x cells_per_block at most the map's side, e.g. pixels_per_cell = [{}, {}], cells_per_block = [1, 1]",
                        (h / 2).max(1),
                        (w / 2).max(1)
                    )
                })
            }
            MetricSpec::TopKIntersection { k } if *k > c * h * w => {
                Some(format!("k = {k} but the maps have {} values; accepted: k at most {}", c * h * w, c * h * w))
            }
            _ => None,
        }
    }

    /// Compares two maps.
    pub fn score(&self, a: &Map, b: &Map) -> Score {
        self.prepare(a).score(b)
    }

    /// Compares two post-processed maps; a map whose post-processing failed gives its status.
    pub fn score_processed(&self, a: &Result<Map, Status>, b: &Result<Map, Status>) -> Score {
        score_both(a, b, |a, b| self.score(a, b))
    }

    /// `a` prepared for comparisons with many maps (an original map against every cascade
    /// stage): its ranks for Spearman, its local moments for SSIM, computed once.
    pub fn prepare<'a>(&self, a: &'a Map) -> Reference<'a> {
        let prepared = match self {
            MetricSpec::Spearman {} => match a.data.iter().all(|v| v.is_finite()) {
                true => Ok(Prepared::Ranks(average_ranks(&a.data))),
                false => Err(Status::NonFinite),
            },
            MetricSpec::Ssim(p) => prepare_ssim(a, p).map(|moments| Prepared::Moments(moments, p.clone())),
            MetricSpec::Pearson {} => finite(a).map(|_| Prepared::Plain(PlainMetric::Pearson)),
            MetricSpec::KendallTauB {} => finite(a).map(|_| Prepared::Plain(PlainMetric::KendallTauB)),
            MetricSpec::HogPearson(p) => {
                finite(a).and_then(|_| hog_features(a, p)).map(|f| Prepared::Hog(f, p.clone(), false))
            }
            MetricSpec::HogSpearman(p) => finite(a)
                .and_then(|_| hog_features(a, p))
                .map(|f| Prepared::Hog(average_ranks_f64(&f), p.clone(), true)),
            MetricSpec::Cosine {} => finite(a).map(|_| Prepared::Plain(PlainMetric::Cosine)),
            MetricSpec::Mse {} => finite(a).map(|_| Prepared::Plain(PlainMetric::Mse)),
            MetricSpec::TopKIntersection { k } => finite(a).map(|_| Prepared::TopK(top_k_indices(&a.data, *k), *k)),
            MetricSpec::DiscreteEntropy { bins } => finite(a).and_then(|_| match discrete_entropy(&a.data, *bins) {
                None if a.data.is_empty() => Err(Status::TooSmall),
                None => Err(Status::NonFinite),
                Some(0.0) => Err(Status::ConstantMap),
                Some(h) => Ok(Prepared::Entropy(h, *bins)),
            }),
        };
        Reference { map: a, prepared }
    }
}

/// What a metric precomputes from one map.
enum Prepared {
    Ranks(Vec<f64>),
    Moments(Vec<ChannelMoments>, SsimParams),
    /// Metrics with nothing to precompute.
    Plain(PlainMetric),
    /// The sorted indices of the reference's `k` largest values, and `k`.
    TopK(Vec<u32>, usize),
    /// The reference's histogram entropy and the bin count.
    Entropy(f64, usize),
    /// The reference's HOG features (their ranks when the flag says Spearman).
    Hog(Vec<f64>, HogParams, bool),
}

/// A metric computed from both maps' values directly.
#[derive(Clone, Copy)]
enum PlainMetric {
    Pearson,
    KendallTauB,
    Cosine,
    Mse,
}

/// `Ok` when every value of `m` is finite.
fn finite(m: &Map) -> Result<(), Status> {
    match m.data.iter().all(|v| v.is_finite()) {
        true => Ok(()),
        false => Err(Status::NonFinite),
    }
}

/// A map prepared by [`MetricSpec::prepare`].
pub struct Reference<'a> {
    map: &'a Map,
    prepared: Result<Prepared, Status>,
}

impl Reference<'_> {
    /// Compares the prepared map with `b` under the metric that prepared it: the same value as
    /// [`MetricSpec::score`].
    pub fn score(&self, b: &Map) -> Score {
        if self.map.shape != b.shape {
            return Err(Status::ShapeMismatch);
        }
        // A non-finite map is reported first, whichever of the two it is.
        let b_finite = b.data.iter().all(|v| v.is_finite());
        match &self.prepared {
            Err(Status::NonFinite) => Err(Status::NonFinite),
            _ if !b_finite => Err(Status::NonFinite),
            Err(status) => Err(*status),
            Ok(Prepared::Ranks(ranks)) => with_average_ranks(&b.data, |b_ranks| pearson_of(ranks, b_ranks)),
            Ok(Prepared::Moments(moments, params)) => ssim_prepared(moments, b, params),
            // Both maps were found finite above: no second scan.
            Ok(Prepared::Plain(PlainMetric::Pearson)) => pearson_of(&self.map.data, &b.data),
            Ok(Prepared::Plain(PlainMetric::KendallTauB)) => kendall_tau_b(&self.map.data, &b.data),
            Ok(Prepared::Plain(PlainMetric::Cosine)) => cosine(&self.map.data, &b.data),
            Ok(Prepared::Plain(PlainMetric::Mse)) => mse(&self.map.data, &b.data),
            Ok(Prepared::TopK(top, k)) => top_k_overlap(top, &b.data, *k),
            Ok(Prepared::Entropy(h, bins)) => {
                discrete_entropy(&b.data, *bins).map(|hb| hb / h).ok_or(Status::NonFinite)
            }
            Ok(Prepared::Hog(reference, params, ranked)) => {
                let features = hog_features(b, params)?;
                let features = if *ranked { average_ranks_f64(&features) } else { features };
                pearson_of(reference, &features)
            }
        }
    }
}

/// The largest odd number at most `n` (1 for 0).
fn largest_odd_at_most(n: usize) -> usize {
    if n % 2 == 1 { n } else { n.saturating_sub(1).max(1) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metrics_that_peak_at_one_give_one_for_identical_maps_and_the_others_do_not_claim_to() {
        let data: Vec<f32> = (0..32 * 32).map(|i| ((i * 7919) % 1013) as f32 / 1013.0 - 0.3).collect();
        let map = Map::new(data, [1, 32, 32]);
        let metrics = crate::registry::every_metric();
        for metric in &metrics {
            let identical = metric.score(&map, &map).expect("a value for identical maps");
            if MetricSpec::peaks_at_one(metric.id()) {
                assert!((identical - 1.0).abs() < 1e-9, "{}: {identical} for identical maps", metric.id());
            } else {
                // mse gives 0 and the entropy ratio 1, but neither is bounded by 1.
                assert!(matches!(metric.id(), "mse" | "discrete_entropy"), "{} is not classified", metric.id());
            }
        }
    }
}
