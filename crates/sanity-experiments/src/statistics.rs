//! Summary statistics of a group of scores, with a seeded percentile-bootstrap interval.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

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
    fn a_single_value_has_no_spread() {
        let s = summarize(&[0.3], 100, 0.95, &mut stream_rng(1, "b", 0));
        assert_eq!((s.n, s.mean, s.std, s.ci_low), (1, Some(0.3), None, None));
    }
}
