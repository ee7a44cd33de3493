//! Separable 2-D filters with scipy.ndimage's conventions: correlation (the kernel is not
//! flipped; `convolve` is correlation with the reversed kernel) and the `reflect` border
//! (`d c b a | a b c d | d c b a`). Float64 throughout.

/// scipy.ndimage `reflect` index of position `i` on an axis of `n` values.
pub fn reflect(i: isize, n: usize) -> usize {
    let n = n as isize;
    let m = i.rem_euclid(2 * n);
    (if m < n { m } else { 2 * n - 1 - m }) as usize
}

/// `src` `[h, w]` correlated with `down` along the rows' axis (axis 0) then with `across`
/// along each row (axis 1); both odd-length, centred.
pub fn correlate_separable(src: &[f64], h: usize, w: usize, down: &[f64], across: &[f64]) -> Vec<f64> {
    assert_eq!(src.len(), h * w, "correlate_separable: src is not [h, w]");
    let (rd, ra) = ((down.len() / 2) as isize, (across.len() / 2) as isize);
    let mut tmp = vec![0.0; h * w];
    for y in 0..h {
        let dst = &mut tmp[y * w..(y + 1) * w];
        for (k, &t) in down.iter().enumerate() {
            let sy = reflect(y as isize + k as isize - rd, h);
            for (d, &v) in dst.iter_mut().zip(&src[sy * w..(sy + 1) * w]) {
                *d += t * v;
            }
        }
    }
    let mut out = vec![0.0; h * w];
    for y in 0..h {
        let row = &tmp[y * w..(y + 1) * w];
        for x in 0..w {
            out[y * w + x] =
                across.iter().enumerate().map(|(k, &t)| t * row[reflect(x as isize + k as isize - ra, w)]).sum();
        }
    }
    out
}

/// The taps of scipy.ndimage's Gaussian: `exp(−x²/2σ²)` normalised, radius `⌊truncate·σ + 0.5⌋`.
pub fn gaussian_taps(sigma: f64, truncate: f64) -> Vec<f64> {
    let radius = (truncate * sigma + 0.5) as i64;
    let w: Vec<f64> = (-radius..=radius).map(|x| (-0.5 * (x * x) as f64 / (sigma * sigma)).exp()).collect();
    let sum: f64 = w.iter().sum();
    w.into_iter().map(|v| v / sum).collect()
}

/// `scipy.ndimage.gaussian_filter(plane, sigma)` (truncate 4, reflect border) of one `[h, w]`
/// plane.
pub fn gaussian_blur(plane: &[f64], h: usize, w: usize, sigma: f64) -> Vec<f64> {
    let taps = gaussian_taps(sigma, 4.0);
    correlate_separable(plane, h, w, &taps, &taps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect_is_half_sample_symmetric() {
        let idx: Vec<usize> = (-3..7).map(|i| reflect(i, 4)).collect();
        assert_eq!(idx, [2, 1, 0, 0, 1, 2, 3, 3, 2, 1]);
        assert_eq!(reflect(-2, 1), 0);
    }

    #[test]
    fn blurring_keeps_constants_and_the_mean_of_symmetric_images() {
        let flat = vec![0.25; 20];
        assert!(gaussian_blur(&flat, 4, 5, 1.5).iter().all(|v| (v - 0.25).abs() < 1e-15));
        // scipy.ndimage.gaussian_filter([[0, 0, 1, 0, 0]], 1.0)[0] (reflect, truncate 4).
        let row = gaussian_blur(&[0., 0., 1., 0., 0.], 1, 5, 1.0);
        let expected = [0.05842298904073567, 0.24210527628121548, 0.39894346935609776];
        for (a, b) in row.iter().zip(expected.iter().chain(expected[..2].iter().rev())) {
            assert!((a - b).abs() < 1e-12, "{row:?}");
        }
    }
}
