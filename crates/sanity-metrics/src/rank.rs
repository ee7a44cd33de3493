//! Rank correlation (Spearman) and linear correlation (Pearson), scipy's conventions.

use crate::metric::Status;

/// Ranks 1..=n with ties given their average rank (scipy.stats.rankdata, method="average").
/// `order` is scratch space reused between calls: (value, index) pairs sorted by value, so the
/// sort touches contiguous memory.
pub fn average_ranks_into(values: &[f32], order: &mut Vec<(f32, u32)>, ranks: &mut Vec<f64>) {
    let n = values.len();
    order.clear();
    order.extend(values.iter().enumerate().map(|(i, &v)| (v, i as u32)));
    order.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    ranks.clear();
    ranks.resize(n, 0.0);
    let mut start = 0;
    while start < n {
        let mut end = start + 1;
        while end < n && order[end].0 == order[start].0 {
            end += 1;
        }
        // Positions start..end (0-based) share the mean of ranks start+1..=end.
        let rank = (start + end + 1) as f64 / 2.0;
        for &(_, i) in &order[start..end] {
            ranks[i as usize] = rank;
        }
        start = end;
    }
}

/// Average ranks of `values` (allocating convenience form of [`average_ranks_into`]).
pub fn average_ranks(values: &[f32]) -> Vec<f64> {
    let (mut order, mut ranks) = (Vec::new(), Vec::new());
    average_ranks_into(values, &mut order, &mut ranks);
    ranks
}

/// Pearson's r of two equally long f64 series, two-pass in f64; `ConstantMap` when either
/// series has zero variance (scipy returns NaN with a warning there).
pub fn pearson_f64(a: &[f64], b: &[f64]) -> Result<f64, Status> {
    if a.len() != b.len() {
        return Err(Status::ShapeMismatch);
    }
    if a.len() < 2 {
        return Err(Status::TooSmall);
    }
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (dx, dy) = (x - ma, y - mb);
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
    let to64 = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<f64>>();
    pearson_f64(&to64(a), &to64(b))
}

/// Spearman's ρ of two maps (flattened): Pearson's r of their average ranks, as
/// `scipy.stats.spearmanr`.
pub fn spearman(a: &[f32], b: &[f32]) -> Result<f64, Status> {
    check_finite(a, b)?;
    pearson_f64(&average_ranks(a), &average_ranks(b))
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
}
