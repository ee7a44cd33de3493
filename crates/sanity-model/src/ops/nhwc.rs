//! Channels-last (NHWC) float32 kernels of the graph walk (`graph_engine.rs`): square stride-1
//! convolutions and non-overlapping max pooling (`nhwc_windows.rs` has every other window,
//! `nhwc_routed.rs` the gradients of a convolution under a ReLU and a max pooling).
//!
//! With the channels innermost, the window of output position `(i, j)` in input row `y` is one
//! contiguous run of `k·c` values, so im2col and its adjoint copy and add long runs, and the
//! products take the shape the gemm crate runs fastest (docs/performance.md: output positions as
//! rows, channels as columns):
//!
//! ```text
//! forward:         y [rows, o]     = cols [rows, (u, v, c)] × W' [(u, v, c), o] + b
//! input gradient:  dcols [rows, (u, v, c)] = dy [rows, o] × W'ᵀ,  then dx = col2im(dcols)
//! ```
//! where `W'[(u, v, c), o] = w[o, c, u, v]` (PyTorch's layout reordered once per model and
//! layer, kept as `W'ᵀ`).
//! When a window row is short (`k·c` < [`SHORT_WINDOW_ROW`], e.g. a first layer on grey images)
//! the columns are built transposed instead, `cols_t [(u, v, c), rows]`, in runs along the
//! output row, and the same products take transposed views.
//! Max pooling scans each window in row-major order with a strict `>`, per channel, as
//! PyTorch's CPU kernel does, and keeps the argmax for the backward (unlike PyTorch it does not
//! propagate NaN: a NaN loses every comparison).

use super::gemm::{GemmScalar, Layout2, matmul};
use super::partial_sums::{add_rows, ordered_sum};
use rayon::prelude::*;

/// A zeroed buffer, written by all threads (a serial `vec![0; len]` of activation size leaves
/// the other threads idle).
pub(crate) fn zeros<T: Copy + Default + Send + Sync>(len: usize) -> Vec<T> {
    let mut v = Vec::with_capacity(len);
    v.par_extend(rayon::iter::repeat_n(T::default(), len));
    v
}

/// Images per gemm: the im2col buffer of a chunk (`images · oh · ow · k²c` values) stays in
/// cache. Chosen with the bench-cascade workload (2 threads): 1 image 14.0–14.4 s, 2 images
/// 13.8 s, 4 images 14.5 s.
const IMAGES_PER_GEMM: usize = 2;

/// Output positions above which a gemm takes one image: the column matrix of a large image
/// alone outgrows the caches (ResNet-18 at 224x224 is about 20% faster with one image per
/// product from 56x56 on; docs/performance.md).
const ROWS_PER_GEMM: usize = 4096;

/// Gemm threads per chunk of `n` images of `positions` output positions: all of them when
/// there are fewer chunks than threads, else one (the chunks run in parallel).
pub(crate) fn gemm_threads(n: usize, positions: usize) -> usize {
    let t = rayon::current_num_threads();
    if n.div_ceil(images_per_gemm(positions)) >= t { 1 } else { t }
}

/// Rows (output positions) per product of a weight gradient, whose reduction runs over the
/// rows. adebayo-cnn, batch 64, 2 threads, both convolutions' weight gradients per minibatch:
/// 8.1–8.8 ms with 2 images per product (392 rows), 8.8–9.5 ms with 8 (2048 rows); 512 and 1024
/// rows were within that noise. 1024 keeps conv2's column matrix (4 images, 2.5 MB) in L2.
const WEIGHT_GRAD_ROWS: usize = 1024;

/// Images per product of a weight gradient: a power of two, so that a batch of 2^k images
/// splits into equal runs ([`super::partial_sums::ordered_sum`]).
pub(crate) fn weight_grad_images(positions: usize) -> usize {
    let images = (WEIGHT_GRAD_ROWS / positions.max(1)).max(1);
    1 << images.ilog2()
}

/// Images per gemm for images of `positions` output positions.
pub(crate) fn images_per_gemm(positions: usize) -> usize {
    if positions * IMAGES_PER_GEMM <= ROWS_PER_GEMM { IMAGES_PER_GEMM } else { 1 }
}

/// Window rows (`k·c` values) shorter than this are gathered in the transposed layout.
const SHORT_WINDOW_ROW: usize = 16;

/// A stride-1, zero-padded convolution over `n` NHWC images `[h, w, c]`, `o` filters `k x k`.
#[derive(Debug, Clone)]
pub(crate) struct ConvNhwc {
    pub(crate) n: usize,
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) c: usize,
    pub(crate) o: usize,
    pub(crate) k: usize,
    pub(crate) pad: usize,
    pub(crate) oh: usize,
    pub(crate) ow: usize,
}

/// PyTorch's convolution weights `[o, c_g, kh, kw]` reordered as `W'ᵀ` `[o, (u, v, c_g)]`, the
/// layout the channels-last kernels multiply (`W'` is its transposed view).
pub(crate) fn reorder_conv_weights(w: &[f32], dims: [usize; 4]) -> Vec<f32> {
    let mut wk_t = vec![0.0f32; w.len()];
    for_each_conv_weight(dims, |walk, pytorch| wk_t[walk] = w[pytorch]);
    wk_t
}

/// The inverse of [`reorder_conv_weights`]: `W'ᵀ` `[o, (u, v, c_g)]` back to PyTorch's
/// `[o, c_g, kh, kw]`.
pub(crate) fn restore_conv_weights(wk_t: &[f32], dims: [usize; 4]) -> Vec<f32> {
    let mut w = vec![0.0f32; wk_t.len()];
    for_each_conv_weight(dims, |walk, pytorch| w[pytorch] = wk_t[walk]);
    w
}

/// Calls `run(index in W'ᵀ, index in PyTorch's [o, c_g, kh, kw])` for every weight.
fn for_each_conv_weight([o, cg, kh, kw]: [usize; 4], mut run: impl FnMut(usize, usize)) {
    let win = kh * kw * cg;
    for oc in 0..o {
        for ci in 0..cg {
            for u in 0..kh {
                for v in 0..kw {
                    run(oc * win + (u * kw + v) * cg + ci, ((oc * cg + ci) * kh + u) * kw + v);
                }
            }
        }
    }
}

impl ConvNhwc {
    /// The convolution of a layer with `o` filters `k x k`, padding `pad`, on `n` images
    /// `(c, h, w)`.
    pub(crate) fn new(n: usize, (c, h, w): (usize, usize, usize), o: usize, k: usize, pad: usize) -> Self {
        Self { n, h, w, c, o, k, pad, oh: h + 2 * pad + 1 - k, ow: w + 2 * pad + 1 - k }
    }

    pub(super) fn positions(&self) -> usize {
        self.oh * self.ow
    }

    pub(super) fn window(&self) -> usize {
        self.k * self.k * self.c
    }

    pub(super) fn image_len(&self) -> usize {
        self.h * self.w * self.c
    }

    fn inner_threads(&self) -> usize {
        gemm_threads(self.n, self.positions())
    }

    /// Reorders PyTorch's `[o, c, k, k]` weights for the products above (`W'ᵀ`).
    #[cfg(test)]
    pub(crate) fn weights(&self, w: &[f32]) -> Vec<f32> {
        reorder_conv_weights(w, [self.o, self.c, self.k, self.k])
    }

    /// For output column `j`, the kernel columns `v0..v1` whose input column `j + v − pad` lies
    /// inside the image.
    pub(super) fn valid_taps(&self, j: usize) -> (usize, usize) {
        let v0 = self.pad.saturating_sub(j).min(self.k);
        let v1 = self.k.min((self.w + self.pad).saturating_sub(j));
        (v0, v1.max(v0))
    }

    /// Calls `run(row offset within the image's cols, u, input row y, j, v0, v1)` for every
    /// output position `(i, j)` and kernel row `u` whose input row is inside the image.
    fn for_each_window_row(&self, mut run: impl FnMut(usize, usize, usize, usize, usize, usize)) {
        for i in 0..self.oh {
            for u in 0..self.k {
                let y = (i + u).wrapping_sub(self.pad);
                if y >= self.h {
                    continue;
                }
                for j in 0..self.ow {
                    let (v0, v1) = self.valid_taps(j);
                    run(i * self.ow + j, u, y, j, v0, v1);
                }
            }
        }
    }

    /// im2col of one image into `cols` `[P, k²c]` (zeros where the window leaves the image).
    pub(super) fn im2col(&self, x: &[f32], cols: &mut [f32]) {
        let (kc, c, w) = (self.k * self.c, self.c, self.w);
        for (p, window) in cols.chunks_exact_mut(self.window()).enumerate() {
            let (i, j) = (p / self.ow, p % self.ow);
            let (v0, v1) = self.valid_taps(j);
            for (u, dst) in window.chunks_exact_mut(kc).enumerate() {
                let y = (i + u).wrapping_sub(self.pad);
                if y >= self.h {
                    dst.fill(0.0);
                    continue;
                }
                dst[..v0 * c].fill(0.0);
                dst[v1 * c..].fill(0.0);
                if v0 == v1 {
                    continue; // The window row reads only padding.
                }
                let start = (y * w + j + v0 - self.pad) * c;
                dst[v0 * c..v1 * c].copy_from_slice(&x[start..start + (v1 - v0) * c]);
            }
        }
    }

    /// The adjoint of [`ConvNhwc::im2col`]: `dx += col2im(dcols)` for one image.
    fn col2im(&self, dcols: &[f32], dx: &mut [f32]) {
        let (win, kc, c, w) = (self.window(), self.k * self.c, self.c, self.w);
        self.for_each_window_row(|p, u, y, j, v0, v1| {
            if v0 == v1 {
                return; // The window row reads only padding.
            }
            let src = &dcols[p * win + u * kc + v0 * c..p * win + u * kc + v1 * c];
            let start = (y * w + j + v0 - self.pad) * c;
            for (d, &s) in dx[start..start + src.len()].iter_mut().zip(src) {
                *d += s;
            }
        });
    }

    pub(super) fn transposed(&self) -> bool {
        self.k * self.c < SHORT_WINDOW_ROW
    }

    /// Calls `run(window index r, ci, output row i, input row y, j0, j1, input column offset)`
    /// for every window value and output row whose input row is inside the image; output
    /// columns `j0..j1` read input columns `j + v − pad` inside the image.
    fn for_each_tap_row(&self, mut run: impl FnMut(usize, usize, usize, Option<usize>, usize, usize, usize)) {
        let k = self.k;
        for u in 0..k {
            for v in 0..k {
                let j0 = self.pad.saturating_sub(v).min(self.ow);
                let j1 = self.ow.min((self.w + self.pad).saturating_sub(v)).max(j0);
                for ci in 0..self.c {
                    let r = (u * k + v) * self.c + ci;
                    for i in 0..self.oh {
                        let y = (i + u).wrapping_sub(self.pad);
                        run(r, ci, i, (y < self.h).then_some(y), j0, j1, v);
                    }
                }
            }
        }
    }

    /// Transposed im2col of one image into columns `col0..col0 + P` of `cols_t` `[k²c, rows]`.
    fn im2col_t(&self, x: &[f32], cols_t: &mut [f32], rows: usize, col0: usize) {
        let (ow, w, c) = (self.ow, self.w, self.c);
        self.for_each_tap_row(|r, ci, i, y, j0, j1, v| {
            let dst = &mut cols_t[r * rows + col0 + i * ow..r * rows + col0 + (i + 1) * ow];
            let Some(y) = y else {
                dst.fill(0.0);
                return;
            };
            dst[..j0].fill(0.0);
            dst[j1..].fill(0.0);
            if j0 == j1 {
                return; // The whole output row reads padding.
            }
            let start = (y * w + j0 + v - self.pad) * c + ci;
            for (j, d) in dst[j0..j1].iter_mut().enumerate() {
                *d = x[start + j * c];
            }
        });
    }

    /// The adjoint of [`ConvNhwc::im2col_t`]: `dx += col2im(dcols_t)` for one image.
    fn col2im_t(&self, dcols_t: &[f32], rows: usize, col0: usize, dx: &mut [f32]) {
        let (ow, w, c) = (self.ow, self.w, self.c);
        self.for_each_tap_row(|r, ci, i, y, j0, j1, v| {
            let Some(y) = y else { return };
            let src = &dcols_t[r * rows + col0 + i * ow + j0..r * rows + col0 + i * ow + j1];
            if j0 == j1 {
                return; // The whole output row reads padding.
            }
            let start = (y * w + j0 + v - self.pad) * c + ci;
            for (j, &s) in src.iter().enumerate() {
                dx[start + j * c] += s;
            }
        });
    }

    /// `y` `[n, oh, ow, o]` for `x` `[n, h, w, c]`.
    pub(crate) fn forward(&self, x: &[f32], wk_t: &[f32], b: &[f32]) -> Vec<f32> {
        let (p, win, o, len) = (self.positions(), self.window(), self.o, self.image_len());
        let threads = self.inner_threads();
        let mut y = zeros(self.n * p * o);
        let images = images_per_gemm(p);
        y.par_chunks_mut(images * p * o).enumerate().for_each(|(chunk, dst)| {
            let first = chunk * images;
            let rows = dst.len() / o;
            // Every output row starts as the bias; the products accumulate onto it.
            for row in dst.chunks_exact_mut(o) {
                row.copy_from_slice(b);
            }
            f32::with_scratch(0, rows * win, |cols| {
                let cl = self.columns(&x[first * len..first * len + rows / p * len], cols);
                let wl = Layout2::row_major(o, win).t();
                matmul(dst, Layout2::row_major(rows, o), cols, cl, wk_t, wl, true, threads);
            });
        });
        y
    }

    /// The column matrix `[rows, k²c]` of `images` (whole NHWC images) written into `cols`, and
    /// its layout (transposed storage for short window rows).
    fn columns(&self, images: &[f32], cols: &mut [f32]) -> Layout2 {
        let (p, win, len) = (self.positions(), self.window(), self.image_len());
        let rows = images.len() / len * p;
        if self.transposed() {
            for (m, image) in images.chunks_exact(len).enumerate() {
                self.im2col_t(image, cols, rows, m * p);
            }
            Layout2::row_major(win, rows).t()
        } else {
            for (image, image_cols) in images.chunks_exact(len).zip(cols.chunks_exact_mut(p * win)) {
                self.im2col(image, image_cols);
            }
            Layout2::row_major(rows, win)
        }
    }

    /// The weight and bias gradients for `dy` `[n, oh, ow, o]` at inputs `x` `[n, h, w, c]`:
    /// `dW'ᵀ [o, k²c] = Σ_chunks dyᵀ × cols` (the layout of [`reorder_conv_weights`]) followed
    /// by `db [o] = Σ dy`, summed over the chunks of the forward in an order fixed by the batch
    /// alone ([`ordered_sum`]).
    pub(crate) fn weight_grad(&self, x: &[f32], dy: &[f32]) -> Vec<f32> {
        let (p, win, o, len) = (self.positions(), self.window(), self.o, self.image_len());
        let images = weight_grad_images(p);
        ordered_sum(self.n.div_ceil(images), o * win + o, |chunk, sum, threads| {
            let first = chunk * images;
            let count = images.min(self.n - first);
            let rows = count * p;
            let g = &dy[first * p * o..(first + count) * p * o];
            f32::with_scratch(0, rows * win, |cols| {
                let cl = self.columns(&x[first * len..(first + count) * len], cols);
                let (dw, db) = sum.split_at_mut(o * win);
                let gl = Layout2::row_major(rows, o).t();
                matmul(dw, Layout2::row_major(o, win), g, gl, cols, cl, true, threads);
                add_rows(g, o, db);
            });
        })
    }

    /// `dx` `[n, h, w, c]` for `dy` `[n, oh, ow, o]`.
    pub(crate) fn input_grad(&self, dy: &[f32], wk_t: &[f32]) -> Vec<f32> {
        let (p, win, o, len) = (self.positions(), self.window(), self.o, self.image_len());
        // The rows come from `dy`: a backward that sums over segments passes fewer than `n`.
        debug_assert_eq!(dy.len() % (p * o), 0, "dy is not whole images");
        let threads = self.inner_threads();
        let mut dx = zeros(dy.len() / (p * o) * len);
        let images = images_per_gemm(p);
        dx.par_chunks_mut(images * len).enumerate().for_each(|(chunk, dst)| {
            let first = chunk * images;
            let images = dst.len() / len;
            let rows = images * p;
            f32::with_scratch(0, rows * win, |dcols| {
                let g = &dy[first * p * o..(first + images) * p * o];
                if self.transposed() {
                    // dcols_t [win, rows] = W' [win, o] × dyᵀ.
                    let (wl, gl) = (Layout2::row_major(o, win).t(), Layout2::row_major(rows, o).t());
                    matmul(dcols, Layout2::row_major(win, rows), wk_t, wl, g, gl, false, threads);
                    for (m, image_dx) in dst.chunks_exact_mut(len).enumerate() {
                        self.col2im_t(dcols, rows, m * p, image_dx);
                    }
                } else {
                    let (gl, wl) = (Layout2::row_major(rows, o), Layout2::row_major(o, win));
                    matmul(dcols, Layout2::row_major(rows, win), g, gl, wk_t, wl, false, threads);
                    for (image_dcols, image_dx) in dcols.chunks_exact(p * win).zip(dst.chunks_exact_mut(len)) {
                        self.col2im(image_dcols, image_dx);
                    }
                }
            });
        });
        dx
    }
}

/// Max pooling over `k x k` windows with step `s` of `n` NHWC images `[h, w, c]` (floor mode).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolNhwc {
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) c: usize,
    pub(crate) k: usize,
    pub(crate) s: usize,
    pub(crate) oh: usize,
    pub(crate) ow: usize,
    /// Pool `max(x, 0)`: a ReLU followed by this pooling, fused (one pass over the input).
    pub(crate) relu_first: bool,
}

impl PoolNhwc {
    /// Max pooling over `k x k` windows with step `s` of images `(c, h, w)` (floor mode).
    pub(crate) fn new((c, h, w): (usize, usize, usize), k: usize, s: usize, relu_first: bool) -> Self {
        Self { h, w, c, k, s, oh: (h - k) / s + 1, ow: (w - k) / s + 1, relu_first }
    }

    /// The pooled images and, for every output value, the index within its image of the input
    /// value it took (the first maximum of a row-major scan).
    pub(crate) fn forward(&self, x: &[f32]) -> (Vec<f32>, Vec<u32>) {
        let (c, w) = (self.c, self.w);
        let (in_len, out_len) = (self.h * w * c, self.oh * self.ow * c);
        let n = x.len() / in_len;
        let mut y = zeros(n * out_len);
        let mut idx = zeros(n * out_len);
        y.par_chunks_mut(out_len)
            .zip(idx.par_chunks_mut(out_len))
            .zip(x.par_chunks(in_len))
            .for_each(|((y, idx), x)| self.forward_image(x, y, idx));
        (y, idx)
    }

    /// [`PoolNhwc::forward`] of one image.
    fn forward_image(&self, x: &[f32], y: &mut [f32], idx: &mut [u32]) {
        let (c, w, k, s) = (self.c, self.w, self.k, self.s);
        // The window tap (row-major scan position) holding each channel's maximum, as f32
        // so that the select below vectorises on any x86-64.
        let mut taps = vec![0.0f32; c];
        // Offset of each tap from the window's first value (no divisions in the loops).
        let offsets: Vec<usize> = (0..k * k).map(|tap| ((tap / k) * w + tap % k) * c).collect();
        for oy in 0..self.oh {
            for ox in 0..self.ow {
                let o0 = (oy * self.ow + ox) * c;
                let best = &mut y[o0..o0 + c];
                let first = (oy * s * w + ox * s) * c;
                best.copy_from_slice(&x[first..first + c]);
                if self.relu_first {
                    best.iter_mut().for_each(|b| *b = b.max(0.0));
                }
                taps.fill(0.0);
                for (tap, &offset) in offsets.iter().enumerate().skip(1) {
                    let i0 = first + offset;
                    let t = tap as f32;
                    for ((b, a), &v) in best.iter_mut().zip(taps.iter_mut()).zip(&x[i0..i0 + c]) {
                        // An arithmetic blend (exact: taps are small integers) and a max: a select
                        // here would be compiled as conditional stores, one lane at a time.
                        // With the ReLU fused, max(v, 0) > b is v > b: b >= 0 already.
                        let greater = f32::from(u8::from(v > *b));
                        *a += greater * (t - *a);
                        *b = b.max(v);
                    }
                }
                for (ci, (a, &t)) in idx[o0..o0 + c].iter_mut().zip(&taps).enumerate() {
                    *a = (first + offsets[t as usize] + ci) as u32;
                }
            }
        }
    }

    /// The gradient each output routes to its argmax, after the fused ReLU's rule (what
    /// [`PoolNhwc::backward`] scatters): `relu_rule(pooled value, gradient)` when the ReLU is
    /// fused, the gradient itself otherwise.
    pub(crate) fn routed(&self, g: &[f32], pooled: &[f32], relu_rule: impl Fn(f32, f32) -> f32) -> Vec<f32> {
        match self.relu_first {
            true => g.iter().zip(pooled).map(|(&g, &y)| relu_rule(y, g)).collect(),
            false => g.to_vec(),
        }
    }

    /// Routes each output gradient to its argmax (overlapping windows accumulate). With the
    /// ReLU fused (non-overlapping windows only), `relu_rule(pooled value, gradient)` is the
    /// ReLU's backward at the argmax, the one position of the window that gets a gradient.
    pub(crate) fn backward(
        &self,
        g: &[f32],
        idx: &[u32],
        pooled: &[f32],
        relu_rule: impl Fn(f32, f32) -> f32 + Sync,
    ) -> Vec<f32> {
        let out_len = self.oh * self.ow * self.c;
        self.backward_sums(g, idx, pooled, relu_rule, &vec![1; g.len() / out_len])
    }

    /// [`PoolNhwc::backward`] summed over runs of `segments[s]` consecutive images: each
    /// image's routed values are added straight into its segment's sum, `[segments.len(), h, w, c]`.
    pub(crate) fn backward_sums(
        &self,
        g: &[f32],
        idx: &[u32],
        pooled: &[f32],
        relu_rule: impl Fn(f32, f32) -> f32 + Sync,
        segments: &[usize],
    ) -> Vec<f32> {
        let (in_len, out_len) = (self.h * self.w * self.c, self.oh * self.ow * self.c);
        let mut dx = zeros(segments.len() * in_len);
        let starts = segment_starts(segments);
        dx.par_chunks_mut(in_len).zip(starts.par_iter().zip(segments)).for_each(|(dx, (&start, &count))| {
            let range = start * out_len..(start + count) * out_len;
            let (g, idx, pooled) = (&g[range.clone()], &idx[range.clone()], &pooled[range]);
            if self.relu_first {
                for ((&i, &v), &y) in idx.iter().zip(g).zip(pooled) {
                    dx[i as usize] += relu_rule(y, v);
                }
            } else {
                for (&i, &v) in idx.iter().zip(g) {
                    dx[i as usize] += v;
                }
            }
        });
        dx
    }
}

/// The first row of each run of `segments[s]` consecutive rows.
pub(crate) fn segment_starts(segments: &[usize]) -> Vec<usize> {
    segments.iter().scan(0, |at, &s| Some(std::mem::replace(at, *at + s))).collect()
}

/// Global average pooling of NHWC images `[hw, c]`: `[n, c]`.
pub(crate) fn global_average(x: &[f32], hw: usize, c: usize) -> Vec<f32> {
    let mut y = vec![0.0f32; x.len() / hw];
    for (out, image) in y.chunks_exact_mut(c).zip(x.chunks_exact(hw * c)) {
        for position in image.chunks_exact(c) {
            out.iter_mut().zip(position).for_each(|(o, &v)| *o += v);
        }
        out.iter_mut().for_each(|o| *o /= hw as f32);
    }
    y
}

/// The adjoint of [`global_average`]: each `[n, c]` value divided by `hw` at every position.
pub(crate) fn global_average_adjoint(g: &[f32], hw: usize, c: usize) -> Vec<f32> {
    let mut dx = zeros(g.len() * hw);
    for (image, gi) in dx.chunks_exact_mut(hw * c).zip(g.chunks_exact(c)) {
        for position in image.chunks_exact_mut(c) {
            position.iter_mut().zip(gi).for_each(|(d, &v)| *d = v / hw as f32);
        }
    }
    dx
}

/// Per image, `[a, b]` row-major to `[b, a]` (NCHW → NHWC with `a = c`, `b = h·w`, and back with
/// the roles swapped).
pub(crate) fn transpose_images(x: &[f32], a: usize, b: usize) -> Vec<f32> {
    let mut out = zeros(x.len());
    out.par_chunks_mut(a * b).zip(x.par_chunks(a * b)).for_each(|(dst, src)| {
        for (i, row) in src.chunks_exact(b).enumerate() {
            for (j, &v) in row.iter().enumerate() {
                dst[j * a + i] = v;
            }
        }
    });
    out
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A direct loop over PyTorch's NCHW layout.
    fn reference_conv(x: &[f32], w: &[f32], b: &[f32], g: &ConvNhwc) -> Vec<f32> {
        let mut y = vec![0.0f32; g.n * g.o * g.oh * g.ow];
        for m in 0..g.n {
            for oc in 0..g.o {
                for i in 0..g.oh {
                    for j in 0..g.ow {
                        let mut s = b[oc];
                        for ci in 0..g.c {
                            for u in 0..g.k {
                                for v in 0..g.k {
                                    let (yy, xx) = ((i + u).wrapping_sub(g.pad), (j + v).wrapping_sub(g.pad));
                                    if yy < g.h && xx < g.w {
                                        s += w[((oc * g.c + ci) * g.k + u) * g.k + v]
                                            * x[((m * g.c + ci) * g.h + yy) * g.w + xx];
                                    }
                                }
                            }
                        }
                        y[((m * g.o + oc) * g.oh + i) * g.ow + j] = s;
                    }
                }
            }
        }
        y
    }

    pub(in crate::ops) fn values(len: usize, salt: usize) -> Vec<f32> {
        (0..len).map(|i| (((i * 7919 + salt * 104_729) % 1000) as f32 / 500.0) - 1.0).collect()
    }

    #[test]
    fn conv_matches_a_direct_loop_and_its_adjoint() {
        // Odd sizes, padding smaller than k/2, more images than threads.
        let g = ConvNhwc { n: 5, h: 7, w: 6, c: 6, o: 4, k: 3, pad: 1, oh: 7, ow: 6 };
        let g0 = ConvNhwc { pad: 0, oh: 5, ow: 4, ..g.clone() };
        // A short window row (k·c = 5 < SHORT_WINDOW_ROW): the transposed layout.
        let g1 = ConvNhwc { n: 3, h: 6, w: 7, c: 1, o: 5, k: 5, pad: 2, oh: 6, ow: 7 };
        assert!(g1.transposed() && !g.transposed());
        // Kernels wider than the image and its padding's reach, in both layouts.
        let g2 = ConvNhwc { n: 2, h: 1, w: 1, c: 1, o: 3, k: 5, pad: 2, oh: 1, ow: 1 };
        let g3 = ConvNhwc { n: 2, h: 2, w: 1, c: 6, o: 3, k: 5, pad: 2, oh: 2, ow: 1 };
        // Padding wider than the kernel (whole window rows in the padding).
        let g4 = ConvNhwc { n: 2, h: 3, w: 3, c: 6, o: 2, k: 3, pad: 4, oh: 9, ow: 9 };
        let g5 = ConvNhwc { c: 1, ..g4.clone() };
        for g in [g, g0, g1, g2, g3, g4, g5] {
            let x = values(g.n * g.c * g.h * g.w, 1);
            let w = values(g.o * g.c * g.k * g.k, 2);
            let b = values(g.o, 3);
            let weights = g.weights(&w);
            let x_nhwc = transpose_images(&x, g.c, g.h * g.w);
            let y = transpose_images(&g.forward(&x_nhwc, &weights, &b), g.oh * g.ow, g.o);
            let reference = reference_conv(&x, &w, &b, &g);
            for (a, r) in y.iter().zip(&reference) {
                assert!((a - r).abs() < 1e-4, "{a} vs {r}");
            }
            // ⟨conv(x) − b, dy⟩ = ⟨x, convᵀ(dy)⟩.
            let dy = values(g.n * g.oh * g.ow * g.o, 4);
            let dx = g.input_grad(&dy, &weights);
            let zero_b = vec![0.0f32; g.o];
            let lhs: f64 = g.forward(&x_nhwc, &weights, &zero_b).iter().zip(&dy).map(|(a, b)| f64::from(a * b)).sum();
            let rhs: f64 = x_nhwc.iter().zip(&dx).map(|(a, b)| f64::from(a * b)).sum();
            assert!((lhs - rhs).abs() < 1e-3 * lhs.abs().max(1.0), "{lhs} vs {rhs}");
        }
    }

    #[test]
    fn pooling_takes_the_first_maximum_and_routes_overlaps() {
        // One 3x3 image with two channels; channel 1 has ties (all equal).
        let plane = [1f32, 5., 2., 4., 3., 9., 0., 8., 6.];
        let x: Vec<f32> = plane.iter().flat_map(|&v| [v, 1.0]).collect();
        let pool = PoolNhwc { h: 3, w: 3, c: 2, k: 2, s: 1, oh: 2, ow: 2, relu_first: false };
        let (y, idx) = pool.forward(&x);
        assert_eq!(y, [5., 1., 9., 1., 8., 1., 9., 1.]);
        // Ties take the window's first position.
        assert_eq!(idx.iter().skip(1).step_by(2).copied().collect::<Vec<_>>(), [1, 3, 7, 9]);
        let dx = pool.backward(&[1., 0., 2., 0., 3., 0., 4., 0.], &idx, &y, |_, g| g);
        let channel0: Vec<f32> = dx.iter().step_by(2).copied().collect();
        assert_eq!(channel0, [0., 1., 0., 0., 0., 6., 0., 3., 0.]);
    }

    #[test]
    fn fused_relu_pooling_equals_relu_then_pooling() {
        // 2 images 4x5, 3 channels, 2x2 windows with step 2 (floor mode drops the last column).
        let x: Vec<f32> = values(2 * 4 * 5 * 3, 7).iter().map(|v| v - 0.7).collect();
        let relu: Vec<f32> = x.iter().map(|v| v.max(0.0)).collect();
        let plain = PoolNhwc { h: 4, w: 5, c: 3, k: 2, s: 2, oh: 2, ow: 2, relu_first: false };
        let fused = PoolNhwc { relu_first: true, ..plain };
        let (y_plain, idx_plain) = plain.forward(&relu);
        let (y_fused, idx_fused) = fused.forward(&x);
        assert_eq!(y_plain, y_fused);
        assert_eq!(idx_plain, idx_fused);
        assert!(x.iter().any(|&v| v < 0.0) && y_fused.contains(&0.0), "the check needs clipped windows");
        let g = values(y_fused.len(), 8);
        // Deconvnet's rule ignores the activation: the routing of all-negative windows counts.
        for rule in [|y: f32, g: f32| if y > 0.0 { g } else { 0.0 }, |_: f32, g: f32| if g > 0.0 { g } else { 0.0 }] {
            let routed = plain.backward(&g, &idx_plain, &y_plain, |_, g| g);
            let expected: Vec<f32> = routed.iter().zip(&relu).map(|(&d, &r)| rule(r, d)).collect();
            assert_eq!(fused.backward(&g, &idx_fused, &y_fused, rule), expected);
        }
    }
}
