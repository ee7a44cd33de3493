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

    /// Whether [`ConvNhwc::weight_grad_routed`] pays: for every shape measured (adebayo-cnn's
    /// conv1, batch 64, 2 threads: 2.6 ms against 3.7 ms with the pooling's dense backward; its
    /// conv2: see [`ConvNhwc::weight_grad_routed`]'s long rows).
    pub(crate) fn takes_routed_weight_gradients(&self) -> bool {
        true
    }

    /// [`ConvNhwc::weight_grad`] for a `dy` that is zero except where `pool` (the max-pool right
    /// above this conv) routes its gradients: `values` per pooled output, at `idx` (indices into
    /// the image's `[oh, ow, o]` output). Each nonzero adds its window of `x`, scaled, to its
    /// filter's gradient: a quarter of the dense product's work under a 2x2 pooling, and no
    /// dense `dy`. Short window rows (`k·c` under 16) go image by image, long ones filter by
    /// filter ([`ConvNhwc::weight_grad_routed_rows`]); both sum in an order fixed by the batch.
    pub(crate) fn weight_grad_routed(&self, x: &[f32], values: &[f32], idx: &[u32], pool: &PoolNhwc) -> Vec<f32> {
        if !self.transposed() {
            return self.weight_grad_routed_rows(x, values, idx, pool);
        }
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

    /// [`ConvNhwc::weight_grad_routed`] for long window rows, filter by filter (the filters
    /// split among the threads; each sums over the images in order, so the bytes do not depend
    /// on the thread count): row `u` of a filter's gradient, held in registers in runs of up to
    /// 128 values, takes every routed value of an image times row `u` of its window, read from
    /// a zero-padded copy of the batch (a window row is then one run of `k·c` values). Without
    /// a column matrix, and with one load per multiply-add.
    fn weight_grad_routed_rows(&self, x: &[f32], values: &[f32], idx: &[u32], pool: &PoolNhwc) -> Vec<f32> {
        let (win, o, kc) = (self.window(), self.o, self.k * self.c);
        let padded = self.padded(x);
        let row = (self.w + 2 * self.pad) * self.c;
        let image = (self.h + 2 * self.pad) * row;
        let entries = pool.oh * pool.ow * pool.c;
        let mut grad = vec![0.0f32; o * win + o];
        let (dw, db) = grad.split_at_mut(o * win);
        dw.par_chunks_mut(win).zip(db.par_iter_mut()).enumerate().for_each_init(Vec::new, |members, (oc, (dw, db))| {
            for m in 0..self.n {
                members.clear();
                for e in (m * entries + oc..(m + 1) * entries).step_by(o) {
                    if values[e] != 0.0 {
                        let position = idx[e] as usize / o;
                        let (i, j) = (position / self.ow, position % self.ow);
                        // The window of output (i, j) starts at padded (i, j).
                        members.push((m * image + i * row + j * self.c, values[e]));
                        *db += values[e];
                    }
                }
                add_routed_windows(dw, kc, members, &padded, row);
            }
        });
        grad
    }

    /// The batch `x` `[n, h, w, c]` with `pad` zeros around each image.
    fn padded(&self, x: &[f32]) -> Vec<f32> {
        let (c, pad, len) = (self.c, self.pad, self.image_len());
        let (row, rows) = ((self.w + 2 * pad) * c, self.h + 2 * pad);
        let mut padded = zeros(self.n * rows * row);
        padded.par_chunks_mut(rows * row).zip(x.par_chunks(len)).for_each(|(dst, image)| {
            for (y, src) in image.chunks_exact(self.w * c).enumerate() {
                dst[(y + pad) * row + pad * c..][..src.len()].copy_from_slice(src);
            }
        });
        padded
    }

    /// `dx` for a `dy` that is zero except where `pool` (the max-pool right above this conv)
    /// routes its gradients: `values` per pooled output, at `idx` (indices into the image's
    /// `[oh, ow, o]` output). Each nonzero adds its filter, scaled, to the window it came from.
    pub(crate) fn input_grad_routed(&self, values: &[f32], idx: &[u32], pool: &PoolNhwc, wk_t: &[f32]) -> Vec<f32> {
        let (len, entries) = (self.image_len(), pool.oh * pool.ow * pool.c);
        let mut dx = zeros(self.n * len);
        dx.par_chunks_mut(len).enumerate().for_each_init(RoutedFilters::default, |routed, (m, dx)| {
            let range = m * entries..(m + 1) * entries;
            routed.group(pool, &values[range.clone()], &idx[range], self.window());
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
/// `(position, start, end)` index `members` `(channel's filter offset, value)`; positions ascending within a
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
    /// their `idx` points at: a counting sort per window, without branches on the values. A
    /// member is `(oc · filter, v)`: where its filter starts in filters of `filter` values.
    fn group(&mut self, pool: &PoolNhwc, values: &[f32], idx: &[u32], filter: usize) {
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
                members[cursor[slot]] = (oc * filter, v);
                cursor[slot] += 1;
            }
            members.truncate(kept);
        }
    }
}

/// `dx[row u of the window of conv position p] += Σ v · row u of filter[oc]` over `members`
/// `(oc · k²c, v)`.
#[inline(always)]
fn add_filter_sum(g: &ConvNhwc, p: usize, u: usize, members: &[(usize, f32)], filters: &[f32], dx: &mut [f32]) {
    let kc = g.k * g.c;
    let (i, j) = (p / g.ow, p % g.ow);
    let (v0, v1) = g.valid_taps(j);
    let y = (i + u).wrapping_sub(g.pad);
    if v0 == v1 || y >= g.h {
        return; // The window row reads only padding.
    }
    let start = (y * g.w + j + v0 - g.pad) * g.c;
    add_weighted_runs(&mut dx[start..start + (v1 - v0) * g.c], members, filters, u * kc + v0 * g.c);
}

/// Each row `u` of a filter's gradient `dw` (`k·c` values a row) plus `Σ v · padded[at + u ·
/// row ..]` over `members` `(at, v)` ([`ConvNhwc::weight_grad_routed_rows`]), compiled for
/// AVX-512 or AVX2 (with FMA) when the CPU has them.
fn add_routed_windows(dw: &mut [f32], kc: usize, members: &[(usize, f32)], padded: &[f32], row: usize) {
    if has_avx512_fma() {
        // SAFETY: the function only enables AVX-512F and FMA, which `has_avx512_fma` found.
        #[allow(unsafe_code)]
        unsafe {
            add_routed_windows_avx512(dw, kc, members, padded, row)
        }
    } else if has_avx2_fma() {
        // SAFETY: the function only enables AVX2 and FMA, which `has_avx2_fma` found.
        #[allow(unsafe_code)]
        unsafe {
            add_routed_windows_avx2(dw, kc, members, padded, row)
        }
    } else {
        add_routed_windows_body(dw, kc, members, padded, row)
    }
}

#[allow(unsafe_code)]
#[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx2,fma"))]
unsafe fn add_routed_windows_avx2(dw: &mut [f32], kc: usize, members: &[(usize, f32)], padded: &[f32], row: usize) {
    add_routed_windows_body(dw, kc, members, padded, row)
}

#[allow(unsafe_code)]
#[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx512f,fma"))]
unsafe fn add_routed_windows_avx512(dw: &mut [f32], kc: usize, members: &[(usize, f32)], padded: &[f32], row: usize) {
    add_routed_windows_body(dw, kc, members, padded, row)
}

#[inline(always)]
fn add_routed_windows_body(dw: &mut [f32], kc: usize, members: &[(usize, f32)], padded: &[f32], row: usize) {
    for (u, dw_row) in dw.chunks_exact_mut(kc).enumerate() {
        add_weighted_runs(dw_row, members, padded, u * row);
    }
}

/// `dst += Σ v · src[at + offset ..]` over `members` `(at, v)`, in register runs of 128, 64,
/// 32, 16 and 1 values.
#[inline(always)]
fn add_weighted_runs(dst: &mut [f32], members: &[(usize, f32)], src: &[f32], offset: usize) {
    let mut at = 0;
    while at + 128 <= dst.len() {
        add_weighted_run::<128, 1>(&mut dst[at..at + 128], members, src, offset + at);
        at += 128;
    }
    while at + 64 <= dst.len() {
        add_weighted_run::<64, 2>(&mut dst[at..at + 64], members, src, offset + at);
        at += 64;
    }
    while at + 32 <= dst.len() {
        add_weighted_run::<32, 4>(&mut dst[at..at + 32], members, src, offset + at);
        at += 32;
    }
    while at + 16 <= dst.len() {
        add_weighted_run::<16, 4>(&mut dst[at..at + 16], members, src, offset + at);
        at += 16;
    }
    while at < dst.len() {
        add_weighted_run::<1, 4>(&mut dst[at..at + 1], members, src, offset + at);
        at += 1;
    }
}

/// One run of `L` values of [`add_weighted_runs`], accumulated in registers: `C` independent
/// sums (members taken in turn), so that short runs are not bound by the latency of one FMA
/// chain.
#[inline(always)]
fn add_weighted_run<const L: usize, const C: usize>(
    dst: &mut [f32],
    members: &[(usize, f32)],
    src: &[f32],
    offset: usize,
) {
    let mut acc = [[0.0f32; L]; C];
    let mut chunks = members.chunks_exact(C);
    for group in &mut chunks {
        for (acc, &(at, v)) in acc.iter_mut().zip(group) {
            let s = &src[at + offset..at + offset + L];
            for (a, &s) in acc.iter_mut().zip(s) {
                *a = v.mul_add(s, *a);
            }
        }
    }
    for (acc, &(at, v)) in acc.iter_mut().zip(chunks.remainder()) {
        let s = &src[at + offset..at + offset + L];
        for (a, &s) in acc.iter_mut().zip(s) {
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
        for (c, k, pad, pool) in
            [(6, 3, 1, (2, 2)), (20, 5, 2, (2, 2)), (32, 5, 2, (2, 2)), (6, 3, 1, (3, 3)), (20, 5, 2, (2, 3))]
        {
            let case = routed_case(c, k, pad, pool);
            let g = &case.g;
            assert!(g.takes_routed_gradients());
            let weights = g.weights(&values(g.o * g.window(), 5));
            let dense = g.input_grad(&case.dense_dy, &weights);
            let sparse = g.input_grad_routed(&case.routed, &case.idx, &case.pool, &weights);
            for (a, b) in sparse.iter().zip(&dense) {
                assert!((a - b).abs() < 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
            }
        }
    }

    /// adebayo-cnn's conv1 and conv2 under their 2x2 poolings, and shapes around them.
    fn routed_case(c: usize, k: usize, pad: usize, (pool_k, stride): (usize, usize)) -> RoutedCase {
        let g = ConvNhwc::new(3, (c, 7, 8), 4, k, pad);
        let weights = g.weights(&values(g.o * g.window(), 5));
        let x = values(g.n * g.image_len(), 6);
        // Filter 1 ends below zero everywhere: the ReLU zeroes what the pool routes from it.
        let y = g.forward(&x, &weights, &[0.1, -50.0, 0.3, 0.0]);
        let pool = PoolNhwc::new((g.o, g.oh, g.ow), pool_k, stride, true);
        let (pooled, idx) = pool.forward(&y);
        let rule = |y: f32, g: f32| if y > 0.0 { g } else { 0.0 };
        let upstream = values(pooled.len(), 7);
        let routed = pool.routed(&upstream, &pooled, rule);
        assert!(routed.contains(&0.0) && routed.iter().any(|&v| v != 0.0));
        let dense_dy = pool.backward(&upstream, &idx, &pooled, rule);
        RoutedCase { g, x, pool, idx, routed, dense_dy }
    }

    struct RoutedCase {
        g: ConvNhwc,
        x: Vec<f32>,
        pool: PoolNhwc,
        idx: Vec<u32>,
        routed: Vec<f32>,
        dense_dy: Vec<f32>,
    }

    /// The routed weight gradient's definition in float64: every nonzero value times its window.
    fn routed_weight_grad_f64(case: &RoutedCase) -> Vec<f64> {
        let (g, o, win) = (&case.g, case.g.o, case.g.window());
        let mut sum = vec![0.0f64; o * win + o];
        let per_image = case.routed.len() / g.n;
        for m in 0..g.n {
            let mut cols = vec![0.0f32; g.positions() * win];
            g.im2col(&case.x[m * g.image_len()..(m + 1) * g.image_len()], &mut cols);
            for e in m * per_image..(m + 1) * per_image {
                let (position, channel) = (case.idx[e] as usize / o, case.idx[e] as usize % o);
                let v = f64::from(case.routed[e]);
                for j in 0..win {
                    sum[channel * win + j] += v * f64::from(cols[position * win + j]);
                }
                sum[o * win + channel] += v;
            }
        }
        sum
    }

    #[test]
    fn routed_weight_gradients_are_the_sums_of_the_routed_windows_and_equal_the_dense_ones() {
        // Short window rows (k·c = 9, 4 and 10), taken image by image, and long ones (18, 100,
        // 160: every register run), filter by filter; max-pools with 4 or 9 taps, stride equal
        // to or past their windows, and a filter the ReLU zeroes everywhere.
        for (c, k, pad, pool) in [
            (1, 3, 1, (2, 2)),
            (1, 2, 0, (3, 3)),
            (1, 3, 1, (2, 3)),
            (2, 5, 2, (2, 2)),
            (6, 3, 1, (2, 2)),
            (20, 5, 2, (3, 3)),
            (32, 5, 2, (2, 2)),
            (32, 5, 0, (2, 3)),
        ] {
            let case = routed_case(c, k, pad, pool);
            let g = &case.g;
            let grad_on = |threads: usize| {
                let threads = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
                threads.install(|| g.weight_grad_routed(&case.x, &case.routed, &case.idx, &case.pool))
            };
            let grad = grad_on(1);
            assert_eq!(grad_on(3), grad, "c {c}, k {k}: the same bytes on any number of threads");
            for (a, b) in grad.iter().zip(routed_weight_grad_f64(&case)) {
                assert!((f64::from(*a) - b).abs() < 1e-5 * (1.0 + b.abs()), "c {c}, k {k}: {a} vs {b}");
            }
            let dense = g.weight_grad(&case.x, &case.dense_dy);
            for (a, b) in grad.iter().zip(&dense) {
                assert!((a - b).abs() < 1e-5 * (1.0 + b.abs()), "c {c}, k {k}: {a} vs {b}");
            }
            if g.transposed() {
                // Image by image: each image's sum from zero, in the order of its values, and
                // the images' sums added in order (3 images, 3 runs), bit for bit.
                let (o, win) = (g.o, g.window());
                let per_image = case.routed.len() / g.n;
                let mut expected = vec![0.0f32; o * win + o];
                for m in 0..g.n {
                    let mut cols = vec![0.0f32; g.positions() * win];
                    g.im2col(&case.x[m * g.image_len()..(m + 1) * g.image_len()], &mut cols);
                    let mut sum = vec![0.0f32; o * win + o];
                    for e in m * per_image..(m + 1) * per_image {
                        let v = case.routed[e];
                        if v != 0.0 {
                            let (position, channel) = (case.idx[e] as usize / o, case.idx[e] as usize % o);
                            for j in 0..win {
                                sum[channel * win + j] += v * cols[position * win + j];
                            }
                            sum[o * win + channel] += v;
                        }
                    }
                    expected.iter_mut().zip(&sum).for_each(|(e, s)| *e += s);
                }
                assert_eq!(grad, expected, "c {c}, k {k}");
            }
        }
    }
}
