//! Metrics over the flattened maps: cosine similarity, mean squared error and the overlap of the
//! top-k values. Float64 arithmetic.

use crate::metric::{Score, Status};

/// Cosine similarity `a·b / (|a| |b|)`, in [−1, 1]; a map of zeros has no direction
/// ([`Status::ConstantMap`]).
pub fn cosine(a: &[f32], b: &[f32]) -> Score {
    if a.is_empty() {
        return Err(Status::TooSmall);
    }
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        return Err(Status::ConstantMap);
    }
    Ok((ab / (aa.sqrt() * bb.sqrt())).clamp(-1.0, 1.0))
}

/// Mean squared error `mean((a − b)²)` (a distance: 0 for identical maps).
pub fn mse(a: &[f32], b: &[f32]) -> Score {
    if a.is_empty() {
        return Err(Status::TooSmall);
    }
    Ok(a.iter().zip(b).map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2)).sum::<f64>() / a.len() as f64)
}

/// The indices of the `k` largest values, ties broken by the lower index first (numpy's
/// `argsort(-m, kind="stable")[:k]`), sorted.
pub fn top_k_indices(m: &[f32], k: usize) -> Vec<u32> {
    let mut order: Vec<u32> = (0..m.len() as u32).collect();
    // −0 made +0: numpy's argsort ties them.
    order.sort_by(|&i, &j| (m[j as usize] + 0.0).total_cmp(&(m[i as usize] + 0.0)).then(i.cmp(&j)));
    let mut top = order[..k.min(m.len())].to_vec();
    top.sort_unstable();
    top
}

/// `|top_k(a) ∩ top_k(b)| / k`: the fraction of `a`'s `k` largest values whose positions are
/// also among `b`'s `k` largest, given `a`'s (sorted) top-k indices.
pub fn top_k_overlap(top_a: &[u32], b: &[f32], k: usize) -> Score {
    if k == 0 || k > b.len() {
        return Err(Status::TooSmall);
    }
    let top_b = top_k_indices(b, k);
    let (mut i, mut j, mut common) = (0, 0, 0usize);
    while i < top_a.len() && j < top_b.len() {
        match top_a[i].cmp(&top_b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                common += 1;
                i += 1;
                j += 1;
            }
        }
    }
    Ok(common as f64 / k as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_keep_the_lower_index_and_overlap_counts_shared_positions() {
        assert_eq!(top_k_indices(&[1.0, 3.0, 3.0, 2.0], 2), [1, 2]);
        assert_eq!(top_k_indices(&[5.0, 5.0, 5.0], 2), [0, 1]);
        let a = top_k_indices(&[0.9, 0.1, 0.8, 0.2], 2);
        assert_eq!(top_k_overlap(&a, &[0.9, 0.8, 0.1, 0.2], 2), Ok(0.5));
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 2.0]), Err(Status::ConstantMap));
        assert_eq!(mse(&[1.0, 2.0], &[1.0, 4.0]), Ok(2.0));
        // −0 ties with +0, the lower index first (numpy's argsort of −m).
        assert_eq!(top_k_indices(&[-0.0, 0.0], 1), [0]);
        assert_eq!(cosine(&[], &[]), Err(Status::TooSmall));
    }
}
