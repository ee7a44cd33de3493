//! Summary statistics of a group of scores, with a seeded percentile-bootstrap interval, and
//! the Wilcoxon signed-rank test of the verdicts.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use sanity_metrics::rank::average_ranks_f64;
use statrs::distribution::{ContinuousCDF, Normal};

/// Summary of the valid scores of one group.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Number of valid scores.
    pub n: usize,
    /// Mean.
    pub mean: Option<f64>,
    /// Sample standard deviation (ddof = 1); none for n < 2.
    pub std: Option<f64>,
    /// Standard error of the mean, std / sqrt(n).
    pub sem: Option<f64>,
    /// Median (mean of the two middle values for even n).
    pub median: Option<f64>,
    /// Lower end of the bootstrap interval of the mean.
    pub ci_low: Option<f64>,
    /// Upper end of the bootstrap interval of the mean.
    pub ci_high: Option<f64>,
}

/// numpy's default (`linear`) quantile of sorted values, q in [0, 1].
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Summarises `values`; the interval is the percentile bootstrap of the mean with `resamples`
/// resamples at level `confidence`, drawn from `rng`.
pub fn summarize(values: &[f64], resamples: usize, confidence: f64, rng: &mut ChaCha8Rng) -> Summary {
    let n = values.len();
    if n == 0 {
        return Summary { n, mean: None, std: None, sem: None, median: None, ci_low: None, ci_high: None };
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let std = (n > 1).then(|| (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt());
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = quantile_sorted(&sorted, 0.5);
    let (ci_low, ci_high) = if n > 1 && resamples > 0 {
        let mut means: Vec<f64> =
            (0..resamples).map(|_| (0..n).map(|_| values[rng.random_range(0..n)]).sum::<f64>() / n as f64).collect();
        means.sort_by(f64::total_cmp);
        let alpha = (1.0 - confidence) / 2.0;
        (Some(quantile_sorted(&means, alpha)), Some(quantile_sorted(&means, 1.0 - alpha)))
    } else {
        (None, None)
    };
    Summary { n, mean: Some(mean), std, sem: std.map(|s| s / (n as f64).sqrt()), median: Some(median), ci_low, ci_high }
}

/// The percentile interval of the mean of scores observed on a grid of independent draws
/// (re-initialisations of a stage) crossed with images (each draw scores the same images),
/// from a two-way ("pigeonhole") bootstrap, Owen 2007, "The pigeonhole bootstrap", Ann. Appl.
/// Stat. 1(2): each resample draws the draws and the images independently, with replacement,
/// and takes the mean of the valid scores in the cells they select (with their
/// multiplicities). It covers both sources of variation, where resampling the images alone
/// treats one draw as the truth; with few draws it is conservative rather than optimistic
/// (Owen's result). `cells` are `(draw, image, score)`; draws and images are any ids. None with
/// fewer than two draws or two images, or no valid resample.
pub fn crossed_interval(
    cells: &[(usize, usize, f64)],
    resamples: usize,
    confidence: f64,
    rng: &mut ChaCha8Rng,
) -> Option<(f64, f64)> {
    let ids = |pick: fn(&(usize, usize, f64)) -> usize| {
        let mut ids: Vec<usize> = cells.iter().map(pick).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    };
    let (draws, images) = (ids(|c| c.0), ids(|c| c.1));
    let (nd, ni) = (draws.len(), images.len());
    if nd < 2 || ni < 2 || resamples == 0 {
        return None;
    }
    // The grid, NaN where a cell has no valid score.
    let mut grid = vec![f64::NAN; nd * ni];
    for &(d, i, v) in cells {
        let (d, i) = (draws.binary_search(&d).unwrap_or(0), images.binary_search(&i).unwrap_or(0));
        grid[d * ni + i] = v;
    }
    let (mut draw_weight, mut image_weight) = (vec![0.0f64; nd], vec![0.0f64; ni]);
    let mut means = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        draw_weight.fill(0.0);
        image_weight.fill(0.0);
        (0..nd).for_each(|_| draw_weight[rng.random_range(0..nd)] += 1.0);
        (0..ni).for_each(|_| image_weight[rng.random_range(0..ni)] += 1.0);
        let (mut sum, mut weight) = (0.0, 0.0);
        for (d, &wd) in draw_weight.iter().enumerate().filter(|(_, w)| **w > 0.0) {
            for (&v, &wi) in grid[d * ni..(d + 1) * ni].iter().zip(&image_weight) {
                if wi > 0.0 && !v.is_nan() {
                    sum += wd * wi * v;
                    weight += wd * wi;
                }
            }
        }
        if weight > 0.0 {
            means.push(sum / weight);
        }
    }
    if means.is_empty() {
        return None;
    }
    means.sort_by(f64::total_cmp);
    let alpha = (1.0 - confidence) / 2.0;
    Some((quantile_sorted(&means, alpha), quantile_sorted(&means, 1.0 - alpha)))
}

/// Samples up to which the exact null distribution is used (when there are no ties or zeros).
const WILCOXON_EXACT_MAX_N: usize = 200;

/// A two-sided Wilcoxon signed-rank test of paired differences.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Wilcoxon {
    /// Nonzero differences tested.
    pub n: usize,
    /// `min(R+, R−)`, the rank sums of the positive and negative differences (as scipy reports).
    pub statistic: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// `exact` or `normal_approximation`.
    pub method: &'static str,
}

/// The two-sided Wilcoxon signed-rank test (Wilcoxon 1945) of the differences `d`: zero
/// differences are dropped, the absolute differences get average ranks. Without ties or zeros
/// and for n <= 200 the p-value comes from the exact null distribution of `R+`, as
/// `scipy.stats.wilcoxon(d, method="exact")`; otherwise from the normal approximation with the
/// tie correction and no continuity correction, as `method="asymptotic", correction=False`.
/// None when no difference is nonzero.
pub fn wilcoxon_signed_rank(d: &[f64]) -> Option<Wilcoxon> {
    let nonzero: Vec<f64> = d.iter().copied().filter(|&v| v != 0.0).collect();
    let n = nonzero.len();
    if n == 0 {
        return None;
    }
    let abs: Vec<f64> = nonzero.iter().map(|v| v.abs()).collect();
    let ranks = average_ranks_f64(&abs);
    let r_plus: f64 = nonzero.iter().zip(&ranks).filter(|(v, _)| **v > 0.0).map(|(_, r)| r).sum();
    let r_minus = (n * (n + 1)) as f64 / 2.0 - r_plus;
    let mut sorted = abs.clone();
    sorted.sort_by(f64::total_cmp);
    let tie_sizes: Vec<f64> = sorted.chunk_by(|a, b| a == b).map(|run| run.len() as f64).collect();
    let has_ties = tie_sizes.iter().any(|&t| t > 1.0);
    let (p_value, method) = if !has_ties && n == d.len() && n <= WILCOXON_EXACT_MAX_N {
        let pmf = signed_rank_null_pmf(n);
        let cdf = |k: f64| pmf[..=(k as usize).min(pmf.len() - 1)].iter().sum::<f64>();
        let sf = |k: f64| pmf[(k as usize).min(pmf.len())..].iter().sum::<f64>();
        ((2.0 * sf(r_plus.floor()).min(cdf(r_plus.ceil()))).min(1.0), "exact")
    } else {
        let nf = n as f64;
        let mean = nf * (nf + 1.0) / 4.0;
        let ties: f64 = tie_sizes.iter().map(|t| t * t * t - t).sum();
        let se = ((nf * (nf + 1.0) * (2.0 * nf + 1.0) - ties / 2.0) / 24.0).sqrt();
        let z = (r_plus - mean) / se;
        let normal = Normal::new(0.0, 1.0).expect("the standard normal");
        ((2.0 * normal.cdf(-z.abs())).min(1.0), "normal_approximation")
    };
    Some(Wilcoxon { n, statistic: r_plus.min(r_minus), p_value, method })
}

/// `P(R+ = k)`, k = 0..=n(n+1)/2, under the null: each rank's sign is a fair coin.
fn signed_rank_null_pmf(n: usize) -> Vec<f64> {
    let mut pmf = vec![0.0f64; n * (n + 1) / 2 + 1];
    pmf[0] = 1.0;
    for rank in 1..=n {
        let top = rank * (rank + 1) / 2;
        for k in (0..=top).rev() {
            let with = if k >= rank { pmf[k - rank] } else { 0.0 };
            pmf[k] = (pmf[k] + with) / 2.0;
        }
    }
    pmf
}

#[cfg(test)]
mod tests {
    use super::*;
    use sanity_data::stream_rng;

    #[test]
    fn moments_match_numpy() {
        // numpy: mean 2.5, std(ddof=1) 1.2909944487358056, median 2.5, quantile(.25) 1.75.
        let s = summarize(&[4.0, 1.0, 3.0, 2.0], 200, 0.95, &mut stream_rng(1, "b", 0));
        assert_eq!(s.mean, Some(2.5));
        assert!((s.std.expect("n > 1") - 1.2909944487358056).abs() < 1e-15);
        assert_eq!(s.median, Some(2.5));
        assert_eq!(quantile_sorted(&[1.0, 2.0, 3.0, 4.0], 0.25), 1.75);
        let (lo, hi) = (s.ci_low.expect("ci"), s.ci_high.expect("ci"));
        assert!((1.0..2.5).contains(&lo) && hi > 2.5 && hi <= 4.0, "{lo} {hi}");
    }

    #[test]
    fn the_crossed_interval_widens_with_the_spread_between_draws() {
        // Three draws of 100 images: the same image effects, draw offsets of 0, 0.3 and 0.6.
        let images: Vec<f64> = (0..100).map(|i| ((i * 37) % 23) as f64 / 230.0).collect();
        let cells = |offsets: [f64; 3]| -> Vec<(usize, usize, f64)> {
            (0..3).flat_map(|d| images.iter().enumerate().map(move |(i, v)| (d, i, v + offsets[d]))).collect()
        };
        let width = |c: &[(usize, usize, f64)]| {
            let (lo, hi) = crossed_interval(c, 2000, 0.95, &mut stream_rng(4, "b", 0)).expect("interval");
            hi - lo
        };
        let (apart, together) = (cells([0.0, 0.3, 0.6]), cells([0.3, 0.3, 0.3]));
        let values: Vec<f64> = apart.iter().map(|c| c.2).collect();
        let images_only = summarize(&values, 2000, 0.95, &mut stream_rng(4, "b", 0));
        let naive = images_only.ci_high.expect("ci") - images_only.ci_low.expect("ci");
        // Resampling images alone ignores the draws; the crossed interval spans their spread.
        assert!(width(&apart) > 4.0 * naive, "{} vs {naive}", width(&apart));
        assert!(width(&apart) > 0.3 && width(&together) < 0.1, "{} {}", width(&apart), width(&together));
        // A missing cell is left out, not counted as zero; one draw gives no crossed interval.
        let mut holed = together.clone();
        holed.retain(|c| c.1 != 5);
        let (lo, hi) = crossed_interval(&holed, 500, 0.95, &mut stream_rng(4, "b", 0)).expect("interval");
        assert!(lo > 0.3 && hi < 0.45, "{lo} {hi}");
        assert_eq!(crossed_interval(&together[..100], 500, 0.95, &mut stream_rng(4, "b", 0)), None);
    }

    #[test]
    fn a_single_value_has_no_spread() {
        let s = summarize(&[0.3], 100, 0.95, &mut stream_rng(1, "b", 0));
        assert_eq!((s.n, s.mean, s.std, s.ci_low), (1, Some(0.3), None, None));
    }

    fn large_values() -> &'static [f64] {
        static VALUES: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();
        VALUES.get_or_init(|| (0..300).map(|i| ((i * 37) % 23) as f64 - 10.0).collect())
    }

    #[test]
    fn wilcoxon_matches_scipy() {
        // scripts/golden/wilcoxon_fixtures.py (scipy 1.17.1): (differences, statistic, p-value).
        let cases: [(&[f64], f64, f64); 4] = [
            (&[0.31, -0.12, 0.57, 0.08, -0.44, 0.92, 0.26, 0.13, -0.05, 0.71], 11.0, 0.10546875),
            (&[0.5, 1.5, 2.25, 3.0, 0.75, 1.25, -0.1, 2.0], 1.0, 0.015625),
            (
                &[0.2, -0.2, 0.2, 0.0, 0.5, 0.5, -0.1, 0.3, 0.0, 0.2, 0.4, -0.5, 0.6, 0.2, 0.1],
                17.5,
                0.04862052866035445,
            ),
            (large_values(), 17219.5, 0.014283222211112957),
        ];
        for (i, (d, statistic, p)) in cases.into_iter().enumerate() {
            let w = wilcoxon_signed_rank(d).expect("nonzero differences");
            assert_eq!(w.statistic, statistic, "case {i}");
            assert!((w.p_value - p).abs() < 1e-9 * p, "case {i}: {} vs {p}", w.p_value);
            assert_eq!(w.method, if i < 2 { "exact" } else { "normal_approximation" });
        }
        assert_eq!(wilcoxon_signed_rank(&[0.0, 0.0]), None);
    }
}
