//! Rank correlation (Spearman) and linear correlation (Pearson), scipy's conventions.

use crate::metric::Status;

/// Average ranks (1-based; ties share the mean of their positions, scipy's `rankdata`
/// `method="average"`) of finite `values`, into `ranks`, with `keys` as scratch. Values are
/// sorted as integers: the order-preserving bit pattern of the f32 (−0 made +0, so that it ties
/// with +0 as in scipy) above the index, one `u64` each.
pub fn average_ranks_into(values: &[f32], keys: &mut Vec<u64>, ranks: &mut Vec<f64>) {
    let n = values.len();
    keys.clear();
    keys.extend(values.iter().enumerate().map(|(i, &v)| (u64::from(order_bits(v + 0.0)) << 32) | i as u64));
    keys.sort_unstable();
    ranks.clear();
    ranks.resize(n, 0.0);
    let mut start = 0;
    while start < n {
        let value = keys[start] >> 32;
        let mut end = start + 1;
        while end < n && keys[end] >> 32 == value {
            end += 1;
        }
        let rank = (start + end + 1) as f64 / 2.0;
        for &key in &keys[start..end] {
            ranks[(key & 0xffff_ffff) as usize] = rank;
        }
        start = end;
    }
}

/// A `u32` whose unsigned order is the numeric order of finite f32 values.
fn order_bits(v: f32) -> u32 {
    let bits = v.to_bits();
    if bits >> 31 == 1 { !bits } else { bits | 0x8000_0000 }
}

thread_local! {
    static RANK_BUFFERS: std::cell::RefCell<(Vec<u64>, Vec<f64>)> = std::cell::RefCell::default();
}

/// Calls `f` with the average ranks of `values`, computed in buffers this thread keeps (no
/// allocation per comparison).
pub fn with_average_ranks<R>(values: &[f32], f: impl FnOnce(&[f64]) -> R) -> R {
    RANK_BUFFERS.with(|buffers| match buffers.try_borrow_mut() {
        Ok(mut buffers) => {
            let (keys, ranks) = &mut *buffers;
            average_ranks_into(values, keys, ranks);
            f(ranks)
        }
        Err(_) => f(&average_ranks(values)),
    })
}

/// [`average_ranks`] of f64 values (HOG features).
pub fn average_ranks_f64(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<(f64, u32)> = values.iter().enumerate().map(|(i, &v)| (v + 0.0, i as u32)).collect();
    order.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && order[end].0 == order[start].0 {
            end += 1;
        }
        let rank = (start + end + 1) as f64 / 2.0;
        for &(_, i) in &order[start..end] {
            ranks[i as usize] = rank;
        }
        start = end;
    }
    ranks
}

/// Average ranks of `values` (allocating convenience form of [`average_ranks_into`]).
pub fn average_ranks(values: &[f32]) -> Vec<f64> {
    let (mut keys, mut ranks) = (Vec::new(), Vec::new());
    average_ranks_into(values, &mut keys, &mut ranks);
    ranks
}

/// Pearson's r of two equally long series (f32 maps or f64 ranks and features), two-pass in
/// f64; `ConstantMap` when either series has zero variance (scipy returns NaN with a warning
/// there). The values are not checked for finiteness.
pub fn pearson_of<T: Copy + Into<f64>>(a: &[T], b: &[T]) -> Result<f64, Status> {
    if a.len() != b.len() {
        return Err(Status::ShapeMismatch);
    }
    if a.len() < 2 {
        return Err(Status::TooSmall);
    }
    let n = a.len() as f64;
    let mean = |v: &[T]| v.iter().map(|&x| x.into()).sum::<f64>() / n;
    let (ma, mb) = (mean(a), mean(b));
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (dx, dy) = (x.into() - ma, y.into() - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    if saa == 0.0 || sbb == 0.0 {
        return Err(Status::ConstantMap);
    }
    Ok((sab / (saa.sqrt() * sbb.sqrt())).clamp(-1.0, 1.0))
}

fn check_finite(a: &[f32], b: &[f32]) -> Result<(), Status> {
    if a.len() != b.len() {
        return Err(Status::ShapeMismatch);
    }
    if a.iter().chain(b).any(|v| !v.is_finite()) {
        return Err(Status::NonFinite);
    }
    Ok(())
}

/// Pearson's r of two maps (flattened), as `scipy.stats.pearsonr`.
pub fn pearson(a: &[f32], b: &[f32]) -> Result<f64, Status> {
    check_finite(a, b)?;
    pearson_of(a, b)
}

/// Spearman's ρ of two maps (flattened): Pearson's r of their average ranks, as
/// `scipy.stats.spearmanr`.
pub fn spearman(a: &[f32], b: &[f32]) -> Result<f64, Status> {
    check_finite(a, b)?;
    pearson_of(&average_ranks(a), &average_ranks(b))
}

/// Kendall's τ-b (as `scipy.stats.kendalltau`, its default variant), in O(n log n) with
/// Knight's algorithm: sort by (a, b), count the ties in `a` and the joint ties, count the
/// discordant pairs as the inversions of `b` in that order (merge sort), then the ties in `b`:
///
/// ```text
/// τ_b = (n₀ − n₁ − n₂ + n₃ − 2·discordant) / sqrt((n₀ − n₁)(n₀ − n₂)),   n₀ = n(n − 1)/2
/// ```
/// with `n₁`, `n₂` the pairs tied in `a`, in `b`, and `n₃` those tied in both.
pub fn kendall_tau_b(a: &[f32], b: &[f32]) -> Result<f64, Status> {
    check_finite(a, b)?;
    let n = a.len();
    if n < 2 {
        return Err(Status::TooSmall);
    }
    // −0 made +0, so that it ties with +0 as in scipy.
    let mut pairs: Vec<(f64, f64)> = a.iter().zip(b).map(|(&x, &y)| (f64::from(x) + 0.0, f64::from(y) + 0.0)).collect();
    pairs.sort_by(|p, q| p.0.total_cmp(&q.0).then(p.1.total_cmp(&q.1)));
    let xs: Vec<f64> = pairs.iter().map(|p| p.0).collect();
    let (tied_a, tied_both) = (tied_pairs(&xs), tied_pairs(&pairs));
    let mut ys: Vec<f64> = pairs.iter().map(|p| p.1).collect();
    let mut buffer = vec![0.0; n];
    let discordant = count_inversions(&mut ys, &mut buffer);
    let tied_b = tied_pairs(&ys);
    let n0 = (n as u64) * (n as u64 - 1) / 2;
    let (da, db) = ((n0 - tied_a) as f64, (n0 - tied_b) as f64);
    if da == 0.0 || db == 0.0 {
        return Err(Status::ConstantMap);
    }
    let numerator = n0 as f64 - tied_a as f64 - tied_b as f64 + tied_both as f64 - 2.0 * discordant as f64;
    Ok((numerator / (da * db).sqrt()).clamp(-1.0, 1.0))
}

/// The number of tied pairs `Σ t(t − 1)/2` over the runs of equal values of a sorted slice.
fn tied_pairs<T: PartialEq>(sorted: &[T]) -> u64 {
    let (mut total, mut run) = (0u64, 1u64);
    for w in sorted.windows(2) {
        if w[0] == w[1] {
            run += 1;
        } else {
            total += run * (run - 1) / 2;
            run = 1;
        }
    }
    total + run * (run - 1) / 2
}

/// Sorts `v` (merge sort, stable) and returns the number of pairs `i < j` with `v[i] > v[j]`.
fn count_inversions(v: &mut [f64], buffer: &mut [f64]) -> u64 {
    let n = v.len();
    if n < 2 {
        return 0;
    }
    let mid = n / 2;
    let (left, right) = v.split_at_mut(mid);
    let mut count = count_inversions(left, &mut buffer[..mid]) + count_inversions(right, &mut buffer[mid..]);
    let (mut i, mut j, mut k) = (0, 0, 0);
    while i < left.len() && j < right.len() {
        if right[j] < left[i] {
            buffer[k] = right[j];
            count += (left.len() - i) as u64;
            j += 1;
        } else {
            buffer[k] = left[i];
            i += 1;
        }
        k += 1;
    }
    buffer[k..k + left.len() - i].copy_from_slice(&left[i..]);
    k += left.len() - i;
    buffer[k..k + right.len() - j].copy_from_slice(&right[j..]);
    v.copy_from_slice(&buffer[..n]);
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_get_the_average_rank() {
        // scipy.stats.rankdata([3, 1, 3, 2]) = [3.5, 1, 3.5, 2]
        assert_eq!(average_ranks(&[3.0, 1.0, 3.0, 2.0]), [3.5, 1.0, 3.5, 2.0]);
    }

    #[test]
    fn constant_and_non_finite_maps_are_statuses() {
        assert_eq!(spearman(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), Err(Status::ConstantMap));
        assert_eq!(spearman(&[1.0, f32::NAN, 1.0], &[1.0, 2.0, 3.0]), Err(Status::NonFinite));
        assert_eq!(spearman(&[1.0, 2.0], &[1.0, 2.0, 3.0]), Err(Status::ShapeMismatch));
    }

    #[test]
    fn kendall_tau_b_matches_scipy_on_ties() {
        // scipy.stats.kendalltau([1, 2, 2, 3, 0], [1, 3, 2, 2, 2]).statistic
        let tau = kendall_tau_b(&[1.0, 2.0, 2.0, 3.0, 0.0], &[1.0, 3.0, 2.0, 2.0, 2.0]).expect("tau");
        assert!((tau - 0.2519763153394848).abs() < 1e-12, "{tau}");
        assert_eq!(kendall_tau_b(&[1.0, 1.0], &[1.0, 2.0]), Err(Status::ConstantMap));
    }
}
