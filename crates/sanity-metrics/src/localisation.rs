//! Localisation: how much of a saliency map falls on a ground-truth mask. Each metric is Quantus
//! 0.6's (`quantus/metrics/localisation/`), scored on the post-processed map (Quantus' own `abs`
//! and `normalise` options are post-processing steps here), in float64. The deviations, all
//! where Quantus returns NaN or depends on the order its sort leaves tied values in:
//! - a constant map, an empty mask, a mask that does not fit the map, and values that are not
//!   finite give a [`Status`], never NaN;
//! - ties are scored as their expectation over a random order of the tied values. The pointing
//!   game scores the share of the tied maxima that hit (Quantus: a hit if any does); rank
//!   accuracy and top-k count the tied values at the cut in proportion (Quantus: whichever its
//!   unstable `argsort` puts first). Without ties both equal Quantus' value;
//! - the pointing game takes a tolerance in pixels (Zhang et al. 2018, "Top-down neural
//!   attention by excitation backprop", §5.1: a hit within 15 pixels of the object); 0 is
//!   Quantus';
//! - Quantus' `AttributionLocalisation` takes absolute values by default (`abs=True`, the others
//!   `abs=False`); here every metric scores the map its post-processing made, so an `abs` step
//!   there applies to all. Quantus refuses a top-k `k` of the image's size; here `k` may be up
//!   to it;
//! - Quantus' `weighted` options are left out: its pointing game's has no effect (it writes a
//!   float into a boolean array) and its attribution localisation's divides by the size of all
//!   but the first two maps of the batch (`x_batch[2:].size`).

use crate::map::Map;
use crate::metric::{Score, Status};
use crate::rank::average_ranks;
use serde::{Deserialize, Serialize};

/// The largest pointing-game tolerance, in pixels (a map's side is at most a few thousand).
pub const MAX_TOLERANCE: f64 = 100_000.0;

/// A ground-truth mask `[h, w]`: which pixels belong to the object.
#[derive(Debug, Clone, PartialEq)]
pub struct Mask {
    /// Per pixel, row-major.
    pub inside: Vec<bool>,
    /// `[h, w]`.
    pub shape: [usize; 2],
}

impl Mask {
    /// Wraps `inside`, which must hold `h·w` values.
    pub fn new(inside: Vec<bool>, shape: [usize; 2]) -> Self {
        assert_eq!(inside.len(), shape[0] * shape[1], "Mask::new: inside is not [h, w]");
        Self { inside, shape }
    }

    /// How many pixels are inside.
    pub fn area(&self) -> usize {
        self.inside.iter().filter(|&&s| s).count()
    }
}

/// A localisation metric and its parameters (`metric = "pointing_game"`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "metric", rename_all = "snake_case", deny_unknown_fields)]
pub enum LocalisationSpec {
    /// Whether the map's maximum lies on the mask (Zhang et al. 2018; Quantus' `PointingGame`):
    /// 1 or 0, or the share of tied maxima that do.
    PointingGame {
        /// A maximum within this many pixels (Euclidean) of the mask hits. Default 0.
        #[serde(default)]
        tolerance: f64,
    },
    /// The map's sum on the mask over its total sum (Arras et al. 2022, "CLEVR-XAI", eq. 1;
    /// Quantus' `RelevanceMassAccuracy`).
    RelevanceMassAccuracy {},
    /// The share of the map's `|mask|` largest values that lie on the mask (Arras et al. 2022,
    /// eq. 2; Quantus' `RelevanceRankAccuracy`).
    RelevanceRankAccuracy {},
    /// The area under the ROC curve of the map as a classifier of mask pixels (Fawcett 2006;
    /// Quantus' `AUC`): the Mann–Whitney statistic, ties counted half.
    Auc {},
    /// The share of the map's `k` largest values that lie on the mask (Theiner et al. 2021;
    /// Quantus' localisation `TopKIntersection`).
    TopKInMask {
        /// How many values. Required.
        k: usize,
        /// Divided by the mask's share of the image (Quantus' `concept_influence`). Default false.
        #[serde(default)]
        concept_influence: bool,
    },
    /// The map's sum on the mask over its total sum plus 1e-9 (Kohlbrenner et al. 2020,
    /// "Towards best practice in explaining neural network decisions with LRP", eq. 3; Quantus'
    /// `AttributionLocalisation`); a ratio above 1 (negative values) has none.
    AttributionLocalisation {
        /// Negative values set to zero first (Quantus' `positive_attributions`). Default false.
        #[serde(default)]
        positive_only: bool,
    },
}

impl LocalisationSpec {
    /// The id used in configs and CSV files.
    pub fn id(&self) -> &'static str {
        match self {
            LocalisationSpec::PointingGame { .. } => "pointing_game",
            LocalisationSpec::RelevanceMassAccuracy {} => "relevance_mass_accuracy",
            LocalisationSpec::RelevanceRankAccuracy {} => "relevance_rank_accuracy",
            LocalisationSpec::Auc {} => "auc",
            LocalisationSpec::TopKInMask { .. } => "top_k_in_mask",
            LocalisationSpec::AttributionLocalisation { .. } => "attribution_localisation",
        }
    }

    /// Checks the parameters; the message says what is accepted.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            LocalisationSpec::PointingGame { tolerance } if !(0.0..=MAX_TOLERANCE).contains(tolerance) => {
                Err(format!("tolerance = {tolerance}; accepted: a number of pixels, 0 to {MAX_TOLERANCE}"))
            }
            LocalisationSpec::TopKInMask { k: 0, .. } => {
                Err("k = 0; accepted: 1 or more (at most the map's pixels)".into())
            }
            _ => Ok(()),
        }
    }

    /// The score a map whose values are all tied would get (every order of its pixels equally
    /// likely): the floor that an all-ones map stands for. `None` where it is undefined (an
    /// empty mask; AUC of a mask covering everything).
    pub fn chance_level(&self, mask: &Mask) -> Score {
        let (area, n) = (mask.area(), mask.inside.len());
        if area == 0 {
            return Err(Status::EmptyMask);
        }
        let share = area as f64 / n as f64;
        match self {
            LocalisationSpec::Auc {} if area == n => Err(Status::FullMask),
            LocalisationSpec::Auc {} => Ok(0.5),
            LocalisationSpec::TopKInMask { k, .. } if *k > n => Err(Status::TooSmall),
            LocalisationSpec::TopKInMask { concept_influence: true, .. } => Ok(1.0),
            LocalisationSpec::PointingGame { tolerance } if *tolerance > 0.0 => {
                let near = (0..n).filter(|&i| within(mask, i, *tolerance)).count();
                Ok(near as f64 / n as f64)
            }
            _ => Ok(share),
        }
    }

    /// The score of `map` (`[1, h, w]`, post-processed) against `mask` (`[h, w]`).
    pub fn score(&self, map: &Map, mask: &Mask) -> Score {
        let a = checked(map, mask)?;
        let s = &mask.inside;
        match self {
            LocalisationSpec::PointingGame { tolerance } => Ok(pointing_game(a, mask, *tolerance)),
            LocalisationSpec::RelevanceMassAccuracy {} => {
                let (inside, total) = masses(a, s, |v| v);
                if total == 0.0 { Err(Status::UndefinedRatio) } else { Ok(inside / total) }
            }
            LocalisationSpec::RelevanceRankAccuracy {} => Ok(top_share(a, s, mask.area())),
            LocalisationSpec::Auc {} => auc(a, s),
            LocalisationSpec::TopKInMask { k, concept_influence } => {
                if *k == 0 || *k > a.len() {
                    return Err(Status::TooSmall);
                }
                let share = top_share(a, s, *k);
                Ok(if *concept_influence { share * a.len() as f64 / mask.area() as f64 } else { share })
            }
            LocalisationSpec::AttributionLocalisation { positive_only } => {
                let clip = |v: f64| if *positive_only { v.max(0.0) } else { v };
                let (inside, total) = masses(a, s, clip);
                let ratio = inside / (total + 1e-9);
                if ratio > 1.0 || !ratio.is_finite() { Err(Status::UndefinedRatio) } else { Ok(ratio) }
            }
        }
    }
}

/// The map's values when it fits the mask, is finite and not constant, and the mask is not empty.
fn checked<'a>(map: &'a Map, mask: &Mask) -> Result<&'a [f32], Status> {
    if map.shape != [1, mask.shape[0], mask.shape[1]] {
        return Err(Status::ShapeMismatch);
    }
    let a = map.data.as_slice();
    if a.iter().any(|v| !v.is_finite()) {
        return Err(Status::NonFinite);
    }
    if mask.area() == 0 {
        return Err(Status::EmptyMask);
    }
    if a.iter().all(|&v| v == a[0]) {
        return Err(Status::ConstantMap);
    }
    Ok(a)
}

/// `(Σ_mask f(a), Σ f(a))` in float64.
fn masses(a: &[f32], s: &[bool], f: impl Fn(f64) -> f64) -> (f64, f64) {
    a.iter().zip(s).fold((0.0, 0.0), |(inside, total), (&v, &s)| {
        let v = f(f64::from(v));
        (if s { inside + v } else { inside }, total + v)
    })
}

/// Whether pixel `i` lies within `tolerance` pixels (Euclidean) of the mask.
fn within(mask: &Mask, i: usize, tolerance: f64) -> bool {
    let [h, w] = mask.shape;
    let (y, x) = (i / w, i % w);
    if mask.inside[i] {
        return true;
    }
    let r = tolerance.min((h + w) as f64).floor() as usize;
    let (y0, y1, x0, x1) = (y.saturating_sub(r), (y + r).min(h - 1), x.saturating_sub(r), (x + r).min(w - 1));
    (y0..=y1).any(|yy| {
        (x0..=x1).any(|xx| {
            let (dy, dx) = (yy as f64 - y as f64, xx as f64 - x as f64);
            mask.inside[yy * w + xx] && dy * dy + dx * dx <= tolerance * tolerance
        })
    })
}

/// The share of the map's maxima within `tolerance` of the mask.
fn pointing_game(a: &[f32], mask: &Mask, tolerance: f64) -> f64 {
    let max = a.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let (mut maxima, mut hits) = (0usize, 0usize);
    for (i, &v) in a.iter().enumerate() {
        if v == max {
            maxima += 1;
            hits += usize::from(within(mask, i, tolerance));
        }
    }
    hits as f64 / maxima as f64
}

/// The expected share of mask pixels among the `k` largest values of `a`, the values tied at
/// the cut taken in a random order: those above the cut count whole, the tied ones in proportion.
fn top_share(a: &[f32], s: &[bool], k: usize) -> f64 {
    let mut sorted: Vec<f32> = a.to_vec();
    // The k-th largest value: the cut.
    let (_, &mut cut, _) = sorted.select_nth_unstable_by(k - 1, |x, y| y.total_cmp(x));
    let (mut above, mut inside_above, mut tied, mut inside_tied) = (0usize, 0usize, 0usize, 0usize);
    for (&v, &s) in a.iter().zip(s) {
        if v > cut {
            above += 1;
            inside_above += usize::from(s);
        } else if v == cut {
            tied += 1;
            inside_tied += usize::from(s);
        }
    }
    let from_ties = (k - above) as f64 * inside_tied as f64 / tied as f64;
    (inside_above as f64 + from_ties) / k as f64
}

/// The area under the ROC curve of `a` as a score for `s`: `(R₊ − n₊(n₊+1)/2) / (n₊ n₋)` with
/// `R₊` the sum of the mask pixels' average ranks (equal to the trapezoidal area under
/// scikit-learn's `roc_curve`, as Quantus computes it).
fn auc(a: &[f32], s: &[bool]) -> Score {
    let positives = s.iter().filter(|&&s| s).count();
    let negatives = s.len() - positives;
    if negatives == 0 {
        return Err(Status::FullMask);
    }
    let ranks = average_ranks(a);
    let rank_sum: f64 = ranks.iter().zip(s).filter(|(_, s)| **s).map(|(r, _)| r).sum();
    let (p, q) = (positives as f64, negatives as f64);
    Ok((rank_sum - p * (p + 1.0) / 2.0) / (p * q))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(values: &[f32], h: usize, w: usize) -> Map {
        Map::new(values.to_vec(), [1, h, w])
    }

    fn mask(inside: &[u8], h: usize, w: usize) -> Mask {
        Mask::new(inside.iter().map(|&v| v == 1).collect(), [h, w])
    }

    /// Every order of the tied values, scored with ties broken by that order, averaged.
    fn mean_over_tie_orders(a: &[f32], s: &[bool], k: usize) -> f64 {
        // Orders of the pixels by value, ties in every order: enumerate permutations of the
        // pixels and keep those sorted by value (small maps only).
        fn permutations(items: Vec<usize>) -> Vec<Vec<usize>> {
            if items.len() <= 1 {
                return vec![items];
            }
            let mut all = Vec::new();
            for i in 0..items.len() {
                let mut rest = items.clone();
                let first = rest.remove(i);
                for mut p in permutations(rest) {
                    p.insert(0, first);
                    all.push(p);
                }
            }
            all
        }
        let orders: Vec<Vec<usize>> = permutations((0..a.len()).collect())
            .into_iter()
            .filter(|p| p.windows(2).all(|w| a[w[0]] >= a[w[1]]))
            .collect();
        let hits: usize = orders.iter().map(|p| p[..k].iter().filter(|&&i| s[i]).count()).sum();
        hits as f64 / (orders.len() * k) as f64
    }

    #[test]
    fn ties_at_the_cut_count_as_their_expectation_over_every_order() {
        let a = [0.9f32, 0.5, 0.5, 0.5, 0.1, 0.5, 0.2];
        let s = [false, true, false, false, true, true, false];
        for k in 1..=a.len() {
            let expected = mean_over_tie_orders(&a, &s, k);
            assert!((top_share(&a, &s, k) - expected).abs() < 1e-12, "k {k}");
        }
        // The pointing game's ties at the maximum: two of three maxima on the mask.
        let m = mask(&[1, 0, 1, 0, 0, 0], 2, 3);
        let spec = LocalisationSpec::PointingGame { tolerance: 0.0 };
        assert_eq!(spec.score(&map(&[3.0, 3.0, 3.0, 1.0, 0.0, 2.0], 2, 3), &m), Ok(2.0 / 3.0));
        assert_eq!(spec.score(&map(&[3.0, 0.0, 1.0, 1.0, 0.0, 2.0], 2, 3), &m), Ok(1.0));
        assert_eq!(spec.score(&map(&[0.0, 3.0, 1.0, 1.0, 0.0, 2.0], 2, 3), &m), Ok(0.0));
    }

    #[test]
    fn the_pointing_game_s_tolerance_is_euclidean_pixels_from_the_mask() {
        // The maximum at (0, 0); the mask's only pixel at (2, 2), 2·√2 ≈ 2.83 pixels away.
        let mut inside = [0u8; 25];
        inside[12] = 1;
        let (m, a) =
            (mask(&inside, 5, 5), map(&(0..25).map(|i| if i == 0 { 1.0 } else { 0.0 }).collect::<Vec<_>>(), 5, 5));
        for (tolerance, hit) in [(0.0, 0.0), (2.0, 0.0), (2.8, 0.0), (2.83, 1.0), (15.0, 1.0)] {
            assert_eq!(LocalisationSpec::PointingGame { tolerance }.score(&a, &m), Ok(hit), "tolerance {tolerance}");
        }
    }

    #[test]
    fn degenerate_maps_and_masks_give_statuses() {
        let a = map(&[1.0, 2.0, 3.0, 4.0], 2, 2);
        let specs = [
            LocalisationSpec::PointingGame { tolerance: 0.0 },
            LocalisationSpec::RelevanceMassAccuracy {},
            LocalisationSpec::RelevanceRankAccuracy {},
            LocalisationSpec::Auc {},
            LocalisationSpec::TopKInMask { k: 2, concept_influence: false },
            LocalisationSpec::AttributionLocalisation { positive_only: false },
        ];
        for spec in &specs {
            assert_eq!(spec.score(&a, &mask(&[0, 0, 0, 0], 2, 2)), Err(Status::EmptyMask), "{}", spec.id());
            assert_eq!(spec.score(&map(&[0.5; 4], 2, 2), &mask(&[1, 0, 0, 0], 2, 2)), Err(Status::ConstantMap));
            assert_eq!(
                spec.score(&map(&[1.0, f32::NAN, 0.0, 0.0], 2, 2), &mask(&[1, 0, 0, 0], 2, 2)),
                Err(Status::NonFinite)
            );
            assert_eq!(spec.score(&a, &mask(&[1, 0, 0, 0, 0, 0], 2, 3)), Err(Status::ShapeMismatch));
            // A mask over everything: every share is 1, and AUC has no negatives.
            let full = spec.score(&a, &mask(&[1, 1, 1, 1], 2, 2));
            if matches!(spec, LocalisationSpec::Auc {}) {
                assert_eq!(full, Err(Status::FullMask));
            } else {
                assert!((full.expect("defined") - 1.0).abs() < 1e-9, "{}", spec.id());
            }
        }
        // k past the map's pixels; k past the mask's area caps the share at area / k.
        let m = mask(&[0, 0, 0, 1], 2, 2);
        assert_eq!(
            LocalisationSpec::TopKInMask { k: 5, concept_influence: false }.score(&a, &m),
            Err(Status::TooSmall)
        );
        assert_eq!(LocalisationSpec::TopKInMask { k: 3, concept_influence: false }.score(&a, &m), Ok(1.0 / 3.0));
        assert_eq!(LocalisationSpec::TopKInMask { k: 3, concept_influence: true }.score(&a, &m), Ok(4.0 / 3.0));
        // A map that sums to zero has no mass to share; a negative total makes the inside part
        // exceed it.
        let zero_sum = map(&[1.0, -1.0, 0.0, 0.0], 2, 2);
        assert_eq!(LocalisationSpec::RelevanceMassAccuracy {}.score(&zero_sum, &m), Err(Status::UndefinedRatio));
        let negative = map(&[-2.0, -1.0, 0.0, 0.5], 2, 2);
        let al = LocalisationSpec::AttributionLocalisation { positive_only: false };
        assert_eq!(al.score(&negative, &mask(&[1, 1, 0, 0], 2, 2)), Err(Status::UndefinedRatio));
        let clipped = LocalisationSpec::AttributionLocalisation { positive_only: true }.score(&negative, &m);
        assert!((clipped.expect("defined") - 0.5 / (0.5 + 1e-9)).abs() < 1e-15);
    }

    #[test]
    fn a_constant_map_s_chance_level_is_the_mean_over_every_order_of_its_pixels() {
        let m = mask(&[0, 1, 1, 0, 0, 0, 0, 1, 0], 3, 3);
        let all: Vec<bool> = m.inside.clone();
        for (spec, expected) in [
            (LocalisationSpec::PointingGame { tolerance: 0.0 }, 3.0 / 9.0),
            (LocalisationSpec::RelevanceMassAccuracy {}, 3.0 / 9.0),
            (LocalisationSpec::RelevanceRankAccuracy {}, mean_over_tie_orders(&[1.0; 9], &all, 3)),
            (LocalisationSpec::Auc {}, 0.5),
            (LocalisationSpec::TopKInMask { k: 4, concept_influence: false }, 3.0 / 9.0),
            (LocalisationSpec::TopKInMask { k: 4, concept_influence: true }, 1.0),
            (LocalisationSpec::AttributionLocalisation { positive_only: false }, 3.0 / 9.0),
            // Pixels within one of the mask: its 3, and 5 neighbours.
            (LocalisationSpec::PointingGame { tolerance: 1.0 }, 8.0 / 9.0),
        ] {
            let chance = spec.chance_level(&m).expect("defined");
            assert!((chance - expected).abs() < 1e-12, "{}: {chance} vs {expected}", spec.id());
        }
        assert_eq!(LocalisationSpec::Auc {}.chance_level(&mask(&[1; 4], 2, 2)), Err(Status::FullMask));
    }
}
