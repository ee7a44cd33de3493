//! Channels-last (NHWC) float32 kernels for the direct input-gradient engine ([`crate::native`]).
//!
//! With the channels innermost, the window of output position `(i, j)` in input row `y` is one
//! contiguous run of `k·c` values, so im2col and its adjoint copy and add long runs, and the
//! products take the shape the gemm crate runs fastest (DESIGN.md section 9: output positions as
//! rows, channels as columns):
//!
//! ```text
//! forward:         y [rows, o]     = cols [rows, (u, v, c)] × W' [(u, v, c), o] + b
//! input gradient:  dcols [rows, (u, v, c)] = dy [rows, o] × W'ᵀ,  then dx = col2im(dcols)
//! ```
//! where `W'[(u, v, c), o] = w[o, c, u, v]` (PyTorch's layout reordered once per call).
//! Max pooling scans each window in row-major order with a strict `>`, per channel, as
//! PyTorch's CPU kernel does, and keeps the argmax for the backward.

use super::gemm::{GemmScalar, Layout2, matmul};
use rayon::prelude::*;

/// Images per gemm: the im2col buffer of a chunk (`images · oh · ow · k²c` values) stays in
/// cache. Chosen with `benches/methods.rs` (see the README's performance section).
const IMAGES_PER_GEMM: usize = 1;

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

/// `W'` `[(u, v, c), o]` and its transpose `[o, (u, v, c)]`, from PyTorch's `[o, c, u, v]`.
pub(crate) struct ConvWeights {
    wk: Vec<f32>,
    wk_t: Vec<f32>,
}

impl ConvNhwc {
    fn positions(&self) -> usize {
        self.oh * self.ow
    }

    fn window(&self) -> usize {
        self.k * self.k * self.c
    }

    fn image_len(&self) -> usize {
        self.h * self.w * self.c
    }

    /// Gemm threads per chunk: all of them when there are fewer chunks than threads.
    fn inner_threads(&self) -> usize {
        let t = rayon::current_num_threads();
        if self.n.div_ceil(IMAGES_PER_GEMM) >= t { 1 } else { t }
    }

    /// Reorders PyTorch's `[o, c, k, k]` weights for the products above.
    pub(crate) fn weights(&self, w: &[f32]) -> ConvWeights {
        let (k, c, o, win) = (self.k, self.c, self.o, self.window());
        let mut wk = vec![0.0f32; win * o];
        let mut wk_t = vec![0.0f32; o * win];
        for oc in 0..o {
            for ci in 0..c {
                for u in 0..k {
                    for v in 0..k {
                        let value = w[((oc * c + ci) * k + u) * k + v];
                        let r = (u * k + v) * c + ci;
                        wk[r * o + oc] = value;
                        wk_t[oc * win + r] = value;
                    }
                }
            }
        }
        ConvWeights { wk, wk_t }
    }

    /// For output column `j`, the kernel columns `v0..v1` whose input column `j + v − pad` lies
    /// inside the image.
    fn valid_taps(&self, j: usize) -> (usize, usize) {
        let v0 = self.pad.saturating_sub(j);
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
    fn im2col(&self, x: &[f32], cols: &mut [f32]) {
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
                let start = (y * w + j + v0 - self.pad) * c;
                dst[v0 * c..v1 * c].copy_from_slice(&x[start..start + (v1 - v0) * c]);
            }
        }
    }

    /// The adjoint of [`ConvNhwc::im2col`]: `dx += col2im(dcols)` for one image.
    fn col2im(&self, dcols: &[f32], dx: &mut [f32]) {
        let (win, kc, c, w) = (self.window(), self.k * self.c, self.c, self.w);
        self.for_each_window_row(|p, u, y, j, v0, v1| {
            let src = &dcols[p * win + u * kc + v0 * c..p * win + u * kc + v1 * c];
            let start = (y * w + j + v0 - self.pad) * c;
            for (d, &s) in dx[start..start + src.len()].iter_mut().zip(src) {
                *d += s;
            }
        });
    }

    /// `y` `[n, oh, ow, o]` for `x` `[n, h, w, c]`.
    pub(crate) fn forward(&self, x: &[f32], weights: &ConvWeights, b: &[f32]) -> Vec<f32> {
        let (p, win, o, len) = (self.positions(), self.window(), self.o, self.image_len());
        let threads = self.inner_threads();
        let mut y = vec![0.0f32; self.n * p * o];
        y.par_chunks_mut(IMAGES_PER_GEMM * p * o).enumerate().for_each(|(chunk, dst)| {
            let first = chunk * IMAGES_PER_GEMM;
            let rows = dst.len() / o;
            f32::with_scratch(0, rows * win, |cols| {
                for (m, image_cols) in cols.chunks_exact_mut(p * win).enumerate() {
                    self.im2col(&x[(first + m) * len..(first + m + 1) * len], image_cols);
                }
                for row in dst.chunks_exact_mut(o) {
                    row.copy_from_slice(b);
                }
                let (cl, wl) = (Layout2::row_major(rows, win), Layout2::row_major(win, o));
                matmul(dst, Layout2::row_major(rows, o), cols, cl, &weights.wk, wl, true, threads);
            });
        });
        y
    }

    /// `dx` `[n, h, w, c]` for `dy` `[n, oh, ow, o]`.
    pub(crate) fn input_grad(&self, dy: &[f32], weights: &ConvWeights) -> Vec<f32> {
        let (p, win, o, len) = (self.positions(), self.window(), self.o, self.image_len());
        let threads = self.inner_threads();
        let mut dx = vec![0.0f32; self.n * len];
        dx.par_chunks_mut(IMAGES_PER_GEMM * len).enumerate().for_each(|(chunk, dst)| {
            let first = chunk * IMAGES_PER_GEMM;
            let images = dst.len() / len;
            let rows = images * p;
            f32::with_scratch(0, rows * win, |dcols| {
                let g = &dy[first * p * o..(first + images) * p * o];
                let (gl, wl) = (Layout2::row_major(rows, o), Layout2::row_major(o, win));
                matmul(dcols, Layout2::row_major(rows, win), g, gl, &weights.wk_t, wl, false, threads);
                for (image_dcols, image_dx) in dcols.chunks_exact(p * win).zip(dst.chunks_exact_mut(len)) {
                    self.col2im(image_dcols, image_dx);
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
}

impl PoolNhwc {
    /// The pooled images and, for every output value, the index within its image of the input
    /// value it took (the first maximum of a row-major scan).
    pub(crate) fn forward(&self, x: &[f32]) -> (Vec<f32>, Vec<u32>) {
        let (c, w, k, s) = (self.c, self.w, self.k, self.s);
        let (in_len, out_len) = (self.h * w * c, self.oh * self.ow * c);
        let n = x.len() / in_len;
        let mut y = vec![0.0f32; n * out_len];
        let mut idx = vec![0u32; n * out_len];
        y.par_chunks_mut(out_len).zip(idx.par_chunks_mut(out_len)).zip(x.par_chunks(in_len)).for_each(
            |((y, idx), x)| {
                for oy in 0..self.oh {
                    for ox in 0..self.ow {
                        let o0 = (oy * self.ow + ox) * c;
                        let (best, best_at) = (&mut y[o0..o0 + c], &mut idx[o0..o0 + c]);
                        let start = (oy * s * w + ox * s) * c;
                        best.copy_from_slice(&x[start..start + c]);
                        for (ci, a) in best_at.iter_mut().enumerate() {
                            *a = (start + ci) as u32;
                        }
                        for yy in oy * s..oy * s + k {
                            for xx in ox * s..ox * s + k {
                                let i0 = (yy * w + xx) * c;
                                if i0 == start {
                                    continue;
                                }
                                // Branch-free select, so the channel loop vectorises.
                                for (ci, ((b, a), &v)) in
                                    best.iter_mut().zip(best_at.iter_mut()).zip(&x[i0..i0 + c]).enumerate()
                                {
                                    let greater = v > *b;
                                    *b = if greater { v } else { *b };
                                    *a = if greater { (i0 + ci) as u32 } else { *a };
                                }
                            }
                        }
                    }
                }
            },
        );
        (y, idx)
    }

    /// Routes each output gradient to its argmax (overlapping windows accumulate).
    pub(crate) fn backward(&self, g: &[f32], idx: &[u32]) -> Vec<f32> {
        let (in_len, out_len) = (self.h * self.w * self.c, self.oh * self.ow * self.c);
        let n = g.len() / out_len;
        let mut dx = vec![0.0f32; n * in_len];
        dx.par_chunks_mut(in_len).zip(g.par_chunks(out_len)).zip(idx.par_chunks(out_len)).for_each(|((dx, g), idx)| {
            for (&i, &v) in idx.iter().zip(g) {
                dx[i as usize] += v;
            }
        });
        dx
    }
}

/// Per image, `[a, b]` row-major to `[b, a]` (NCHW → NHWC with `a = c`, `b = h·w`, and back with
/// the roles swapped).
pub(crate) fn transpose_images(x: &[f32], a: usize, b: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; x.len()];
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
mod tests {
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

    fn values(len: usize, salt: usize) -> Vec<f32> {
        (0..len).map(|i| (((i * 7919 + salt * 104_729) % 1000) as f32 / 500.0) - 1.0).collect()
    }

    #[test]
    fn conv_matches_a_direct_loop_and_its_adjoint() {
        // Odd sizes, padding smaller than k/2, more images than threads.
        let g = ConvNhwc { n: 5, h: 7, w: 6, c: 3, o: 4, k: 3, pad: 1, oh: 7, ow: 6 };
        let g0 = ConvNhwc { pad: 0, oh: 5, ow: 4, ..g.clone() };
        for g in [g, g0] {
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
        let pool = PoolNhwc { h: 3, w: 3, c: 2, k: 2, s: 1, oh: 2, ow: 2 };
        let (y, idx) = pool.forward(&x);
        assert_eq!(y, [5., 1., 9., 1., 8., 1., 9., 1.]);
        // Ties take the window's first position.
        assert_eq!(idx.iter().skip(1).step_by(2).copied().collect::<Vec<_>>(), [1, 3, 7, 9]);
        let dx = pool.backward(&[1., 0., 2., 0., 3., 0., 4., 0.], &idx);
        let channel0: Vec<f32> = dx.iter().step_by(2).copied().collect();
        assert_eq!(channel0, [0., 1., 0., 0., 0., 6., 0., 3., 0.]);
    }
}
