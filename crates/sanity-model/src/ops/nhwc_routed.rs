//! Gradients of a channels-last convolution read only by a ReLU and a max pooling
//! (`graph_engine.rs`, `graph_train.rs`): the pooling routes one value per window and channel,
//! so the convolution's `dy` is zero but at the routed positions, and its input and weight
//! gradients are taken from the routed values alone, without a dense `dy`.

use super::gemm::GemmScalar;
use super::nhwc::{ConvNhwc, PoolNhwc, zeros};
use super::partial_sums::ordered_sum;
use super::simd::{has_avx2_fma, has_avx512_fma};
use rayon::prelude::*;

impl ConvNhwc {
    /// Whether [`ConvNhwc::input_grad_routed`] pays: long window rows (a max-pool above routes
    /// at most one value per window; the dense product would multiply the zeros too).
    pub(crate) fn takes_routed_gradients(&self) -> bool {
        !self.transposed()
    }

    /// Whether [`ConvNhwc::weight_grad_routed`] pays: short window rows (the dense product
    /// multiplies `[rows, k²c]` column matrices too thin for the gemm; adebayo-cnn's conv1,
    /// batch 64, 2 threads: 2.6 ms against 3.7 ms with the pooling's dense backward. Its conv2
    /// is faster dense: 10.4 against 12 ms).
    pub(crate) fn takes_routed_weight_gradients(&self) -> bool {
        self.transposed()
    }

    /// [`ConvNhwc::weight_grad`] for a `dy` that is zero except where `pool` (the max-pool right
    /// above this conv) routes its gradients: `values` per pooled output, at `idx` (indices into
    /// the image's `[oh, ow, o]` output). Each nonzero adds its window of `x`, scaled, to its
    /// filter's gradient (a quarter of the dense product's work under a 2x2 pooling, and no
    /// dense `dy`); images summed in an order fixed by the batch ([`ordered_sum`]).
    pub(crate) fn weight_grad_routed(&self, x: &[f32], values: &[f32], idx: &[u32], pool: &PoolNhwc) -> Vec<f32> {
        let (p, win, o, len) = (self.positions(), self.window(), self.o, self.image_len());
        let entries = pool.oh * pool.ow * pool.c;
        ordered_sum(self.n, o * win + o, |m, sum, _| {
            let (dw, db) = sum.split_at_mut(o * win);
            f32::with_scratch(0, p * win, |cols| {
                self.im2col(&x[m * len..(m + 1) * len], cols);
                let range = m * entries..(m + 1) * entries;
                for (&i, &v) in idx[range.clone()].iter().zip(&values[range]) {
                    if v == 0.0 {
                        continue;
                    }
                    let (position, channel) = (i as usize / o, i as usize % o);
                    let window = &cols[position * win..(position + 1) * win];
                    dw[channel * win..(channel + 1) * win].iter_mut().zip(window).for_each(|(d, &c)| *d += v * c);
                    db[channel] += v;
                }
            });
        })
    }

    /// `dx` for a `dy` that is zero except where `pool` (the max-pool right above this conv)
    /// routes its gradients: `values` per pooled output, at `idx` (indices into the image's
    /// `[oh, ow, o]` output). Each nonzero adds its filter, scaled, to the window it came from.
    pub(crate) fn input_grad_routed(&self, values: &[f32], idx: &[u32], pool: &PoolNhwc, wk_t: &[f32]) -> Vec<f32> {
        let (len, entries) = (self.image_len(), pool.oh * pool.ow * pool.c);
        let mut dx = zeros(self.n * len);
        dx.par_chunks_mut(len).enumerate().for_each_init(RoutedFilters::default, |routed, (m, dx)| {
            let range = m * entries..(m + 1) * entries;
            routed.group(pool, &values[range.clone()], &idx[range]);
            add_routed_filters(self, routed, wk_t, dx);
        });
        dx
    }
}

/// The per-image loop of [`ConvNhwc::input_grad_routed`], compiled for AVX-512 or AVX2 (with FMA)
/// when the CPU has them.
fn add_routed_filters(g: &ConvNhwc, routed: &RoutedFilters, filters: &[f32], dx: &mut [f32]) {
    if has_avx512_fma() {
        // SAFETY: the function only enables AVX-512F and FMA, which `has_avx512_fma` found.
        #[allow(unsafe_code)]
        unsafe {
            add_routed_filters_avx512(g, routed, filters, dx)
        }
    } else if has_avx2_fma() {
        // SAFETY: the function only enables AVX2 and FMA, which `has_avx2_fma` found.
        #[allow(unsafe_code)]
        unsafe {
            add_routed_filters_avx2(g, routed, filters, dx)
        }
    } else {
        add_routed_filters_body(g, routed, filters, dx)
    }
}

#[allow(unsafe_code)]
#[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx2,fma"))]
unsafe fn add_routed_filters_avx2(g: &ConvNhwc, routed: &RoutedFilters, filters: &[f32], dx: &mut [f32]) {
    add_routed_filters_body(g, routed, filters, dx)
}

#[allow(unsafe_code)]
#[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx512f,fma"))]
unsafe fn add_routed_filters_avx512(g: &ConvNhwc, routed: &RoutedFilters, filters: &[f32], dx: &mut [f32]) {
    add_routed_filters_body(g, routed, filters, dx)
}

#[inline(always)]
fn add_routed_filters_body(g: &ConvNhwc, routed: &RoutedFilters, filters: &[f32], dx: &mut [f32]) {
    // Kernel row by kernel row: row `u` of all filters (`o · k·c` values, 40 KiB for 64 filters
    // of 5x5x32) stays in L1 while every position adds it.
    for u in 0..g.k {
        for &(p, start, end) in &routed.runs {
            add_filter_sum(g, p, u, &routed.members[start..end], filters, dx);
        }
    }
}

/// The nonzero routed values of one image grouped by the conv position they reach: `runs`
/// `(position, start, end)` index `members` `(channel, value)`; positions ascending within a
/// pool window, channels ascending within a position. Reused from image to image.
#[derive(Default)]
struct RoutedFilters {
    runs: Vec<(usize, usize, usize)>,
    members: Vec<(usize, f32)>,
    /// Per channel its tap, or `taps` (a slot whose members are dropped) for a zero value.
    slot_of: Vec<usize>,
    /// Per tap (and the dropped slot) its count, then where its next member goes.
    cursor: Vec<usize>,
    /// Each tap's offset from the window's first value (ascending with the tap).
    offsets: Vec<usize>,
}

impl RoutedFilters {
    /// Groups `values` (per window of `pool`, one per channel) by the window position (tap)
    /// their `idx` points at: a counting sort per window, without branches on the values.
    fn group(&mut self, pool: &PoolNhwc, values: &[f32], idx: &[u32]) {
        let (o, k, taps) = (pool.c, pool.k, pool.k * pool.k);
        let Self { runs, members, slot_of, cursor, offsets } = self;
        runs.clear();
        members.clear();
        offsets.clear();
        offsets.extend((0..taps).map(|t| ((t / k) * pool.w + t % k) * o));
        slot_of.resize(o, 0);
        cursor.resize(taps + 1, 0);
        for (q, (idx, values)) in idx.chunks(o).zip(values.chunks(o)).enumerate() {
            let (py, px) = (q / pool.ow, q % pool.ow);
            let first = (py * pool.s * pool.w + px * pool.s) * o;
            cursor.fill(0);
            for (oc, ((slot, &at), &v)) in slot_of.iter_mut().zip(idx).zip(values).enumerate() {
                // `at` is `first + offsets[tap] + oc`.
                let key = at as usize - oc - first;
                let tap = offsets[1..].iter().filter(|&&offset| offset <= key).count();
                *slot = if v != 0.0 { tap } else { taps };
                cursor[*slot] += 1;
            }
            // Counts to starts; a run per tap that received values.
            let mut at = members.len();
            for (t, cursor) in cursor.iter_mut().enumerate() {
                let count = std::mem::replace(cursor, at);
                if t < taps && count > 0 {
                    runs.push((first / o + (t / k) * pool.w + t % k, at, at + count));
                }
                at += count;
            }
            let kept = cursor[taps];
            members.resize(at, (0, 0.0));
            for (oc, (&slot, &v)) in slot_of.iter().zip(values).enumerate() {
                members[cursor[slot]] = (oc, v);
                cursor[slot] += 1;
            }
            members.truncate(kept);
        }
    }
}

/// `dx[row u of the window of conv position p] += Σ v · row u of filter[oc]` over `members`
/// `(oc, v)`.
#[inline(always)]
fn add_filter_sum(g: &ConvNhwc, p: usize, u: usize, members: &[(usize, f32)], filters: &[f32], dx: &mut [f32]) {
    let (win, kc) = (g.window(), g.k * g.c);
    let (i, j) = (p / g.ow, p % g.ow);
    let (v0, v1) = g.valid_taps(j);
    let y = (i + u).wrapping_sub(g.pad);
    if v0 == v1 || y >= g.h {
        return; // The window row reads only padding.
    }
    let start = (y * g.w + j + v0 - g.pad) * g.c;
    let dst = &mut dx[start..start + (v1 - v0) * g.c];
    let first = u * kc + v0 * g.c;
    let mut at = 0;
    while at + 128 <= dst.len() {
        add_filter_sum_run::<128, 1>(&mut dst[at..at + 128], members, filters, win, first + at);
        at += 128;
    }
    while at + 64 <= dst.len() {
        add_filter_sum_run::<64, 2>(&mut dst[at..at + 64], members, filters, win, first + at);
        at += 64;
    }
    while at + 32 <= dst.len() {
        add_filter_sum_run::<32, 4>(&mut dst[at..at + 32], members, filters, win, first + at);
        at += 32;
    }
    while at + 16 <= dst.len() {
        add_filter_sum_run::<16, 4>(&mut dst[at..at + 16], members, filters, win, first + at);
        at += 16;
    }
    while at < dst.len() {
        add_filter_sum_run::<1, 4>(&mut dst[at..at + 1], members, filters, win, first + at);
        at += 1;
    }
}

/// One run of `L` values of [`add_filter_sum`], accumulated in registers: `C` independent sums
/// (members taken in turn), so that short runs are not bound by the latency of one FMA chain.
#[inline(always)]
fn add_filter_sum_run<const L: usize, const C: usize>(
    dst: &mut [f32],
    members: &[(usize, f32)],
    filters: &[f32],
    win: usize,
    offset: usize,
) {
    let mut acc = [[0.0f32; L]; C];
    let mut chunks = members.chunks_exact(C);
    for group in &mut chunks {
        for (acc, &(oc, v)) in acc.iter_mut().zip(group) {
            let f = &filters[oc * win + offset..oc * win + offset + L];
            for (a, &s) in acc.iter_mut().zip(f) {
                *a = v.mul_add(s, *a);
            }
        }
    }
    for (acc, &(oc, v)) in acc.iter_mut().zip(chunks.remainder()) {
        let f = &filters[oc * win + offset..oc * win + offset + L];
        for (a, &s) in acc.iter_mut().zip(f) {
            *a = v.mul_add(s, *a);
        }
    }
    for (i, d) in dst.iter_mut().enumerate() {
        *d += acc.iter().map(|acc| acc[i]).sum::<f32>();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::nhwc::tests::values;

    #[test]
    fn routed_input_gradients_equal_the_dense_ones() {
        // conv (long rows: k·c = 18, 100 and 160, which take the 128-, 64-, 32-, 16- and 1-wide
        // register runs) then a max-pool with 4 or 9 taps, stride equal to or past its windows:
        // the pool's routed values, scattered densely or added filter by filter.
        for (c, k, pad, (pool_k, stride)) in
            [(6, 3, 1, (2, 2)), (20, 5, 2, (2, 2)), (32, 5, 2, (2, 2)), (6, 3, 1, (3, 3)), (20, 5, 2, (2, 3))]
        {
            let g = ConvNhwc::new(3, (c, 7, 8), 4, k, pad);
            assert!(g.takes_routed_gradients());
            let weights = g.weights(&values(g.o * c * k * k, 5));
            // Filter 1 ends below zero everywhere: the ReLU zeroes what the pool routes from it.
            let y = g.forward(&values(g.n * g.image_len(), 6), &weights, &[0.1, -50.0, 0.3, 0.0]);
            let pool = PoolNhwc::new((4, g.oh, g.ow), pool_k, stride, true);
            let (pooled, idx) = pool.forward(&y);
            let upstream = values(pooled.len(), 7);
            let rule = |y: f32, g: f32| if y > 0.0 { g } else { 0.0 };
            let dense = g.input_grad(&pool.backward(&upstream, &idx, &pooled, rule), &weights);
            let routed = pool.routed(&upstream, &pooled, rule);
            assert!(routed.contains(&0.0) && routed.iter().any(|&v| v != 0.0));
            let sparse = g.input_grad_routed(&routed, &idx, &pool, &weights);
            for (a, b) in sparse.iter().zip(&dense) {
                assert!((a - b).abs() < 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn routed_weight_gradients_are_the_sums_of_the_routed_windows_and_equal_the_dense_ones() {
        // conv (short rows: k·c = 9 and 4; one long, 50) then a max-pool with 4 or 9 taps,
        // stride equal to or past its windows, and a filter the ReLU zeroes everywhere.
        for (c, k, pad, (pool_k, stride)) in
            [(1, 3, 1, (2, 2)), (1, 2, 0, (3, 3)), (1, 3, 1, (2, 3)), (2, 5, 2, (2, 2))]
        {
            let g = ConvNhwc::new(3, (c, 7, 8), 4, k, pad);
            let (p, win, o) = (g.positions(), g.window(), g.o);
            let weights = g.weights(&values(o * win, 5));
            let x = values(g.n * g.image_len(), 6);
            let y = g.forward(&x, &weights, &[0.1, -50.0, 0.3, 0.0]);
            let pool = PoolNhwc::new((o, g.oh, g.ow), pool_k, stride, true);
            let (pooled, idx) = pool.forward(&y);
            let rule = |y: f32, g: f32| if y > 0.0 { g } else { 0.0 };
            let routed = pool.routed(&values(pooled.len(), 7), &pooled, rule);
            assert!(routed.contains(&0.0) && routed.iter().any(|&v| v != 0.0));
            let grad = g.weight_grad_routed(&x, &routed, &idx, &pool);

            // The definition: each image from zero, every nonzero value times its window, in
            // the order of the values; the images' sums added in order (3 images, 3 runs).
            let mut expected = vec![0.0f32; o * win + o];
            let per_image = pooled.len() / g.n;
            for m in 0..g.n {
                let mut cols = vec![0.0f32; p * win];
                g.im2col(&x[m * g.image_len()..(m + 1) * g.image_len()], &mut cols);
                let mut sum = vec![0.0f32; o * win + o];
                for (&i, &v) in idx[m * per_image..(m + 1) * per_image].iter().zip(&routed[m * per_image..]) {
                    if v != 0.0 {
                        let (position, channel) = (i as usize / o, i as usize % o);
                        for j in 0..win {
                            sum[channel * win + j] += v * cols[position * win + j];
                        }
                        sum[o * win + channel] += v;
                    }
                }
                expected.iter_mut().zip(&sum).for_each(|(e, s)| *e += s);
            }
            assert_eq!(grad, expected, "c {c}, k {k}, pool {pool_k}/{stride}");

            let dense = g.weight_grad(&x, &pool.backward(&values(pooled.len(), 7), &idx, &pooled, rule));
            for (a, b) in grad.iter().zip(&dense) {
                assert!((a - b).abs() < 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
            }
        }
    }
}
