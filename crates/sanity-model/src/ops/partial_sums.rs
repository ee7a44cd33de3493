//! Sums over the images of a batch that do not depend on the thread count: a weight gradient
//! is `Σ_images dyᵀ × cols`, and floating-point addition is not associative, so the images are
//! split into runs fixed by the batch alone ([`PARTIAL_SUMS`] of them at most), each run summed
//! in image order into its own partial, and the partials added in run order.

use rayon::prelude::*;

/// At most this many partial sums per gradient (runs of consecutive chunks summed in
/// parallel). Fixed, so the result is the same on any number of threads; 8 keeps 8 threads
/// busy and the partials of a ResNet's largest convolution (2.4 M values) under 80 MB.
pub(crate) const PARTIAL_SUMS: usize = 8;

/// `Σ_{chunk < chunks} add(chunk, ·)` over `len` values: `add(chunk, sum, threads)` adds
/// chunk `chunk`'s share to `sum` (with `threads` for its products). The chunks are split into
/// at most [`PARTIAL_SUMS`] runs of consecutive chunks; each run accumulates in chunk order into
/// a zeroed partial, the runs in parallel, and the partials are added in run order.
pub(crate) fn ordered_sum(chunks: usize, len: usize, add: impl Fn(usize, &mut [f32], usize) + Sync) -> Vec<f32> {
    let runs = chunks.clamp(1, PARTIAL_SUMS);
    let per_run = chunks.div_ceil(runs).max(1);
    let runs = chunks.div_ceil(per_run).max(1);
    let threads = if runs >= rayon::current_num_threads() { 1 } else { rayon::current_num_threads() };
    let partials: Vec<Vec<f32>> = (0..runs)
        .into_par_iter()
        .map(|run| {
            let mut sum = vec![0.0f32; len];
            for chunk in run * per_run..((run + 1) * per_run).min(chunks) {
                add(chunk, &mut sum, threads);
            }
            sum
        })
        .collect();
    let mut parts = partials.into_iter();
    let mut total = parts.next().unwrap_or_else(|| vec![0.0; len]);
    for part in parts {
        total.par_chunks_mut(1 << 14).zip(part.par_chunks(1 << 14)).for_each(|(t, p)| {
            t.iter_mut().zip(p).for_each(|(t, p)| *t += p);
        });
    }
    total
}

/// Adds the rows of `dy` (`[rows, o]`, channels innermost) to `sum[..o]`, row by row.
pub(crate) fn add_rows(dy: &[f32], o: usize, sum: &mut [f32]) {
    for row in dy.chunks_exact(o) {
        sum.iter_mut().zip(row).for_each(|(s, &v)| *s += v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sum_is_the_same_on_any_number_of_threads_and_equals_the_plain_sum() {
        let values: Vec<f32> = (0..37 * 5).map(|i| ((i * 7919) % 1000) as f32 / 997.0 - 0.3).collect();
        let sum_on = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
            pool.install(|| ordered_sum(37, 5, |chunk, sum, _| add_rows(&values[chunk * 5..(chunk + 1) * 5], 5, sum)))
        };
        let one = sum_on(1);
        for threads in [2, 3, 8] {
            assert_eq!(sum_on(threads), one, "{threads} threads");
        }
        for (c, &s) in one.iter().enumerate() {
            let plain: f64 = values.iter().skip(c).step_by(5).map(|&v| f64::from(v)).sum();
            assert!((f64::from(s) - plain).abs() < 1e-5, "{s} vs {plain}");
        }
    }
}
