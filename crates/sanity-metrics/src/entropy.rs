//! Discrete entropy of a map's value histogram: the complexity measure of the efficient MPRT
//! (Hedström et al. 2023, "Sanity Checks Revisited", eMPRT), as Quantus computes it:
//! `scipy.stats.entropy(numpy.histogram(m, bins)[0])` (equal-width bins over [min, max], the
//! last bin closed; natural logarithm).

/// The entropy of the `bins`-bin histogram of `values`. The bins are numpy's for float32 input:
/// edges, positions and comparisons in float32 (numpy 2 keeps the input's precision). `None`
/// for no values, no bins, or a value range too wide for float32.
pub fn discrete_entropy(values: &[f32], bins: usize) -> Option<f64> {
    if values.is_empty() || bins == 0 {
        return None;
    }
    let (mut lo, mut hi) = values.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
    if lo == hi {
        // numpy widens an empty range by 0.5 on each side.
        (lo, hi) = (lo - 0.5, hi + 0.5);
    }
    // numpy.linspace(lo, hi, bins + 1) in float32, the last edge exact.
    let step = (hi - lo) / bins as f32;
    let edge = |i: usize| if i == bins { hi } else { i as f32 * step + lo };
    if !(hi - lo).is_finite() {
        return None;
    }
    let norm = bins as f32 / (hi - lo);
    let mut counts = vec![0u64; bins];
    for &v in values {
        let mut i = (((v - lo) * norm) as usize).min(bins - 1);
        // numpy's corrections against the exact edges.
        if v < edge(i) {
            i -= 1;
        } else if i + 1 < bins && v >= edge(i + 1) {
            i += 1;
        }
        counts[i] += 1;
    }
    let total = values.len() as f64;
    Some(-counts.iter().filter(|&&c| c > 0).map(|&c| c as f64 / total).map(|p| p * p.ln()).sum::<f64>())
}
