//! Channels-last (NHWC) kernels for the windows a model graph allows beyond [`ConvNhwc`] and
//! [`PoolNhwc`]'s square, stride-1 (or non-overlapping) ones: convolutions with any stride,
//! dilation, uneven padding, rectangular kernel and groups, and max / average pooling with
//! padding and ceil mode. The graph walk (`graph_engine.rs`) takes these where the others do
//! not apply.
//!
//! A convolution is im2col + gemm per group over a chunk of images, as [`ConvNhwc`]'s:
//!
//! ```text
//! forward:         y [rows, o_g]          = cols_g [rows, (u, v, c_g)] × W'_g [(u, v, c_g), o_g] + b
//! input gradient:  dcols_g [rows, (u, v, c_g)] = dy_g [rows, o_g] × W'_gᵀ,   dx += col2im(dcols_g)
//! ```
//! with `rows` the output positions of the chunk's images; a 1x1, stride-1, unpadded
//! convolution multiplies its input directly. Max pooling keeps, per output value, the index
//! of the first maximum of a row-major scan of its window (strict `>`), as PyTorch's CPU
//! kernel does; taps in the padding are never taken.
//!
//! [`ConvNhwc`]: super::nhwc::ConvNhwc
//! [`PoolNhwc`]: super::nhwc::PoolNhwc

use super::gemm::{GemmScalar, Layout2, matmul};
use super::nhwc::{gemm_threads, images_per_gemm, weight_grad_images, zeros};
use super::partial_sums::{add_rows, ordered_sum};
use crate::graph::{ConvSpec, PoolSpec};
use crate::graph_reference::{for_each_bin, for_each_window};
use rayon::prelude::*;
use std::ops::Range;

/// A convolution `spec` over `n` NHWC images `[h, w, c]` to `[oh, ow, o]`.
#[derive(Debug, Clone)]
pub(crate) struct StridedConv {
    n: usize,
    spec: ConvSpec,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
}

impl StridedConv {
    /// `spec` on `n` images of shape `input` `[c, h, w]` giving `output` `[o, oh, ow]`.
    pub(crate) fn new(n: usize, spec: &ConvSpec, input: &[usize], output: &[usize]) -> Self {
        Self { n, spec: *spec, h: input[1], w: input[2], oh: output[1], ow: output[2] }
    }

    fn c(&self) -> usize {
        self.spec.in_channels
    }

    fn o(&self) -> usize {
        self.spec.out_channels
    }

    fn cg(&self) -> usize {
        self.spec.in_channels / self.spec.groups
    }

    fn og(&self) -> usize {
        self.spec.out_channels / self.spec.groups
    }

    /// One group's window: `kh · kw · c_g` values.
    fn window(&self) -> usize {
        self.spec.kernel[0] * self.spec.kernel[1] * self.cg()
    }

    fn positions(&self) -> usize {
        self.oh * self.ow
    }

    fn image_len(&self) -> usize {
        self.h * self.w * self.c()
    }

    /// Whether the column matrix is the input itself (1x1, stride 1, no padding).
    fn pointwise(&self) -> bool {
        let s = &self.spec;
        s.kernel == [1, 1] && s.stride == [1, 1] && s.pads == [0; 4]
    }

    /// For output column `j`, the kernel columns whose input column lies inside the image.
    fn valid_columns(&self, j: usize) -> Range<usize> {
        let (s, d, pad, kw) = (self.spec.stride[1], self.spec.dilation[1], self.spec.pads[1], self.spec.kernel[1]);
        // Input column j·s + v·d − pad, inside for pad ≤ j·s + v·d < w + pad.
        let first = pad.saturating_sub(j * s).div_ceil(d).min(kw);
        let end = (self.w + pad).saturating_sub(j * s).div_ceil(d).min(kw);
        first..end.max(first)
    }

    /// Calls `run(offset of the window row in the image's columns, input pixel of its first
    /// valid tap, valid taps)` for every output position and kernel row; `None` when every tap
    /// of the kernel row lies in the padding.
    fn for_each_window_row(&self, mut run: impl FnMut(usize, Option<(usize, Range<usize>)>)) {
        let (s, d, pads, [kh, kw]) = (self.spec.stride, self.spec.dilation, self.spec.pads, self.spec.kernel);
        let row = kw * self.cg();
        let columns: Vec<Range<usize>> = (0..self.ow).map(|j| self.valid_columns(j)).collect();
        for i in 0..self.oh {
            for u in 0..kh {
                let y = (i * s[0] + u * d[0]).checked_sub(pads[0]).filter(|&y| y < self.h);
                // `None` also where the row's taps all fall in the padding.
                for (j, taps) in columns.iter().enumerate() {
                    let at = ((i * self.ow + j) * kh + u) * row;
                    let pixel =
                        y.filter(|_| !taps.is_empty()).map(|y| y * self.w + j * s[1] + taps.start * d[1] - pads[1]);
                    run(at, pixel.map(|p| (p, taps.clone())));
                }
            }
        }
    }

    /// im2col of group `g` of one image into `cols` `[P, window]` (zeros in the padding).
    fn im2col(&self, x: &[f32], g: usize, cols: &mut [f32]) {
        let (c, cg, d, kw) = (self.c(), self.cg(), self.spec.dilation[1], self.spec.kernel[1]);
        let contiguous = d == 1 && cg == c;
        self.for_each_window_row(|at, inside| {
            let dst = &mut cols[at..at + kw * cg];
            let Some((pixel, taps)) = inside else { return dst.fill(0.0) };
            dst[..taps.start * cg].fill(0.0);
            dst[taps.end * cg..].fill(0.0);
            if contiguous {
                dst[taps.start * c..taps.end * c].copy_from_slice(&x[pixel * c..(pixel + taps.len()) * c]);
                return;
            }
            for (t, v) in taps.enumerate() {
                let src = (pixel + t * d) * c + g * cg;
                dst[v * cg..(v + 1) * cg].copy_from_slice(&x[src..src + cg]);
            }
        });
    }

    /// The adjoint of [`StridedConv::im2col`]: `dx += col2im(dcols)` for group `g` of one image.
    fn col2im(&self, dcols: &[f32], g: usize, dx: &mut [f32]) {
        let (c, cg, d) = (self.c(), self.cg(), self.spec.dilation[1]);
        self.for_each_window_row(|at, inside| {
            let Some((pixel, taps)) = inside else { return };
            for (t, v) in taps.enumerate() {
                let dst = (pixel + t * d) * c + g * cg;
                let src = &dcols[at + v * cg..at + (v + 1) * cg];
                dx[dst..dst + cg].iter_mut().zip(src).for_each(|(d, &s)| *d += s);
            }
        });
    }

    /// `y` `[n, oh, ow, o]` for `x` `[n, h, w, c]` and bias `b` (`o` values).
    pub(crate) fn forward(&self, x: &[f32], wk_t: &[f32], b: &[f32]) -> Vec<f32> {
        let (p, win, o, og, cg, len) =
            (self.positions(), self.window(), self.o(), self.og(), self.cg(), self.image_len());
        let threads = gemm_threads(self.n, self.positions());
        let mut y = zeros(self.n * p * o);
        let images = images_per_gemm(p);
        y.par_chunks_mut(images * p * o).enumerate().for_each(|(chunk, dst)| {
            let first = chunk * images;
            let rows = dst.len() / o;
            // Every output row starts as the bias; the products accumulate onto it.
            dst.chunks_exact_mut(o).for_each(|row| row.copy_from_slice(b));
            let images = &x[first * len..first * len + rows / p * len];
            let out = Layout2 { rows, cols: og, rs: o, cs: 1 };
            for g in 0..self.spec.groups {
                let wk = self.weights_of(wk_t, g);
                let wl = Layout2::row_major(og, win).t();
                if self.pointwise() {
                    let xl = Layout2 { rows, cols: cg, rs: self.c(), cs: 1 };
                    matmul(&mut dst[g * og..], out, &images[g * cg..], xl, wk, wl, true, threads);
                    continue;
                }
                f32::with_scratch(0, rows * win, |cols| {
                    for (image, image_cols) in images.chunks_exact(len).zip(cols.chunks_exact_mut(p * win)) {
                        self.im2col(image, g, image_cols);
                    }
                    let cl = Layout2::row_major(rows, win);
                    matmul(&mut dst[g * og..], out, cols, cl, wk, wl, true, threads);
                });
            }
        });
        y
    }

    /// `dx` `[rows / P, h, w, c]` for `dy` `[rows, o]` (any whole number of images).
    pub(crate) fn input_grad(&self, dy: &[f32], wk_t: &[f32]) -> Vec<f32> {
        let (p, win, o, og, cg, len) =
            (self.positions(), self.window(), self.o(), self.og(), self.cg(), self.image_len());
        let threads = gemm_threads(self.n, self.positions());
        let mut dx = zeros(dy.len() / (p * o) * len);
        let images = images_per_gemm(p);
        dx.par_chunks_mut(images * len).enumerate().for_each(|(chunk, dst)| {
            let first = chunk * images;
            let rows = dst.len() / len * p;
            let grad = &dy[first * p * o..first * p * o + rows * o];
            let gl = Layout2 { rows, cols: og, rs: o, cs: 1 };
            for g in 0..self.spec.groups {
                let wk_t = self.weights_of(wk_t, g);
                let wl = Layout2::row_major(og, win);
                if self.pointwise() {
                    let xl = Layout2 { rows, cols: cg, rs: self.c(), cs: 1 };
                    matmul(&mut dst[g * cg..], xl, &grad[g * og..], gl, wk_t, wl, false, threads);
                    continue;
                }
                f32::with_scratch(0, rows * win, |dcols| {
                    let dl = Layout2::row_major(rows, win);
                    matmul(dcols, dl, &grad[g * og..], gl, wk_t, wl, false, threads);
                    for (image_dcols, image_dx) in dcols.chunks_exact(p * win).zip(dst.chunks_exact_mut(len)) {
                        self.col2im(image_dcols, g, image_dx);
                    }
                });
            }
        });
        dx
    }

    /// The weight and bias gradients for `dy` `[n, oh, ow, o]` at inputs `x` `[n, h, w, c]`:
    /// per group `dW'_gᵀ [o_g, window] = Σ dy_gᵀ × cols_g` (the reordered layout), then
    /// `db [o] = Σ dy`, summed over the forward's chunks in an order fixed by the batch alone.
    pub(crate) fn weight_grad(&self, x: &[f32], dy: &[f32]) -> Vec<f32> {
        let (p, win, o, og, cg, len) =
            (self.positions(), self.window(), self.o(), self.og(), self.cg(), self.image_len());
        let images = weight_grad_images(p);
        let block = win * og;
        ordered_sum(self.n.div_ceil(images), o * win + o, |chunk, sum, threads| {
            let first = chunk * images;
            let count = images.min(self.n - first);
            let rows = count * p;
            let grad = &dy[first * p * o..(first + count) * p * o];
            let inputs = &x[first * len..(first + count) * len];
            let (dw, db) = sum.split_at_mut(o * win);
            let gl = Layout2 { rows, cols: og, rs: o, cs: 1 }.t();
            for g in 0..self.spec.groups {
                let dst = &mut dw[g * block..(g + 1) * block];
                let dl = Layout2::row_major(og, win);
                if self.pointwise() {
                    let xl = Layout2 { rows, cols: cg, rs: self.c(), cs: 1 };
                    matmul(dst, dl, &grad[g * og..], gl, &inputs[g * cg..], xl, true, threads);
                    continue;
                }
                f32::with_scratch(0, rows * win, |cols| {
                    for (image, image_cols) in inputs.chunks_exact(len).zip(cols.chunks_exact_mut(p * win)) {
                        self.im2col(image, g, image_cols);
                    }
                    matmul(dst, dl, &grad[g * og..], gl, cols, Layout2::row_major(rows, win), true, threads);
                });
            }
            add_rows(grad, o, db);
        })
    }

    /// Group `g`'s block of a reordered weight buffer.
    fn weights_of<'w>(&self, all: &'w [f32], g: usize) -> &'w [f32] {
        let block = self.window() * self.og();
        &all[g * block..(g + 1) * block]
    }
}

/// Per output row (column) of pooling `p` from an input of `size` rows (columns), the input
/// rows (columns) its window covers inside the input (empty only where the padding is wider
/// than the kernel, which PyTorch refuses).
pub(crate) fn window_ranges(p: &PoolSpec, input: &[usize], output: &[usize]) -> [Vec<Range<usize>>; 2] {
    std::array::from_fn(|axis| {
        let size = input[axis + 1];
        (0..output[axis + 1])
            .map(|o| {
                let start = o * p.stride[axis];
                start.saturating_sub(p.pads[axis]).min(size)
                    ..(start + p.kernel[axis]).saturating_sub(p.pads[axis]).min(size)
            })
            .collect()
    })
}

/// Max pooling `p` of NHWC images `input` `[c, h, w]` to `output` `[c, oh, ow]`: the pooled
/// values and, per value, the index within its image of the input it took (`u32::MAX` for a
/// window wholly in the padding, whose value is −∞).
pub(crate) fn max_pool(p: &PoolSpec, x: &[f32], input: &[usize], output: &[usize]) -> (Vec<f32>, Vec<u32>) {
    let (c, w) = (input[0], input[2]);
    let [rows, cols] = window_ranges(p, input, output);
    let (in_len, out_len) = (input.iter().product::<usize>(), output.iter().product::<usize>());
    let n = x.len() / in_len;
    let mut y = zeros(n * out_len);
    let mut idx = zeros(n * out_len);
    y.par_chunks_mut(out_len).zip(idx.par_chunks_mut(out_len)).zip(x.par_chunks(in_len)).for_each(|((y, idx), x)| {
        // The tap holding each channel's maximum, as f32 so that the select vectorises.
        let mut taps = vec![0.0f32; c];
        let mut pixels = Vec::new();
        for (oy, ys) in rows.iter().enumerate() {
            for (ox, xs) in cols.iter().enumerate() {
                let o0 = (oy * cols.len() + ox) * c;
                let (best, at) = (&mut y[o0..o0 + c], &mut idx[o0..o0 + c]);
                pixels.clear();
                pixels.extend(ys.clone().flat_map(|iy| xs.clone().map(move |ix| iy * w + ix)));
                let Some(&first) = pixels.first() else {
                    best.fill(f32::NEG_INFINITY);
                    at.fill(u32::MAX);
                    continue;
                };
                best.copy_from_slice(&x[first * c..(first + 1) * c]);
                taps.fill(0.0);
                for (tap, &pixel) in pixels.iter().enumerate().skip(1) {
                    let t = tap as f32;
                    for ((b, a), &v) in best.iter_mut().zip(taps.iter_mut()).zip(&x[pixel * c..(pixel + 1) * c]) {
                        // An arithmetic blend (exact: taps are small integers) and a max.
                        let greater = f32::from(u8::from(v > *b));
                        *a += greater * (t - *a);
                        *b = b.max(v);
                    }
                }
                for (ci, (a, &t)) in at.iter_mut().zip(&taps).enumerate() {
                    *a = (pixels[t as usize] * c + ci) as u32;
                }
            }
        }
    });
    (y, idx)
}

/// The adjoint of [`max_pool`]'s selection: each output gradient added at its index, for
/// `g` `[rows, out_len]`, into `[rows, in_len]`.
pub(crate) fn max_pool_backward(g: &[f32], idx: &[u32], in_len: usize, out_len: usize) -> Vec<f32> {
    let mut dx = zeros(g.len() / out_len * in_len);
    dx.par_chunks_mut(in_len).zip(g.par_chunks(out_len).zip(idx.par_chunks(out_len))).for_each(|(dx, (g, idx))| {
        for (&i, &v) in idx.iter().zip(g) {
            if i != u32::MAX {
                dx[i as usize] += v;
            }
        }
    });
    dx
}

/// An average pooling's windows on one image: per output position, the input positions it
/// averages and its divisor.
pub(crate) struct AverageWindows {
    windows: Vec<(Vec<usize>, f32)>,
    c: usize,
    in_len: usize,
}

impl AverageWindows {
    /// Average pooling `p` from `input` `[c, h, w]` to `output` (PyTorch's divisor rules).
    pub(crate) fn pool(p: &PoolSpec, count_include_pad: bool, input: &[usize], output: &[usize]) -> Self {
        let mut windows = Vec::with_capacity(output[1] * output[2]);
        for_each_window(p, &[1, input[1], input[2]], &[1, output[1], output[2]], 1, |_, taps, divisor| {
            let d = if count_include_pad { divisor as f32 } else { taps.len() as f32 };
            windows.push((taps.to_vec(), d));
        });
        Self { windows, c: input[0], in_len: input.iter().product() }
    }

    /// Adaptive average pooling to `out` bins from `input` `[c, h, w]`.
    pub(crate) fn adaptive(out: [usize; 2], input: &[usize]) -> Self {
        let mut windows = Vec::with_capacity(out[0] * out[1]);
        for_each_bin(out, &[1, input[1], input[2]], 1, |_, taps| windows.push((taps.to_vec(), taps.len() as f32)));
        Self { windows, c: input[0], in_len: input.iter().product() }
    }

    fn out_len(&self) -> usize {
        self.windows.len() * self.c
    }

    /// The averages of NHWC images `x`.
    pub(crate) fn forward(&self, x: &[f32]) -> Vec<f32> {
        let c = self.c;
        let mut y = zeros(x.len() / self.in_len * self.out_len());
        y.par_chunks_mut(self.out_len()).zip(x.par_chunks(self.in_len)).for_each(|(y, x)| {
            for ((taps, d), y) in self.windows.iter().zip(y.chunks_exact_mut(c)) {
                for &t in taps {
                    y.iter_mut().zip(&x[t * c..(t + 1) * c]).for_each(|(y, &v)| *y += v);
                }
                y.iter_mut().for_each(|y| *y /= d);
            }
        });
        y
    }

    /// The adjoint of [`AverageWindows::forward`] for `g` `[rows, out_len]`.
    pub(crate) fn backward(&self, g: &[f32]) -> Vec<f32> {
        let c = self.c;
        let mut dx = zeros(g.len() / self.out_len() * self.in_len);
        dx.par_chunks_mut(self.in_len).zip(g.par_chunks(self.out_len())).for_each(|(dx, g)| {
            for ((taps, d), g) in self.windows.iter().zip(g.chunks_exact(c)) {
                for &t in taps {
                    dx[t * c..(t + 1) * c].iter_mut().zip(g).for_each(|(dx, &v)| *dx += v / d);
                }
            }
        });
        dx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rows of the column matrix hold the taps of the definition, `ix = ox · stride + kx ·
    /// dilation − pad` inside the image, for every geometry up to these sizes (uneven padding
    /// larger than the kernel, two groups), and col2im is im2col's adjoint.
    #[test]
    fn im2col_takes_every_tap_of_the_definition_and_col2im_is_its_adjoint() {
        let [c, h, w] = [4, 5, 7];
        let image: Vec<f32> = (0..c * h * w).map(|i| i as f32 + 1.0).collect();
        for (k, s, d) in (1..4).flat_map(|k| (1..4).flat_map(move |s| (1..4).map(move |d| (k, s, d)))) {
            for (pads, groups) in [([0, 0, 0, 0], 1), ([1, 2, 0, 1], 2), ([3, 0, 2, 4], 1), ([0, 1, 1, 0], 4)] {
                let spec = ConvSpec {
                    in_channels: c,
                    out_channels: groups,
                    kernel: [k, k + 1],
                    stride: [s, s + 1],
                    pads,
                    dilation: [d, d],
                    groups,
                    bias: false,
                };
                let extent = |size: usize, pad: usize, kernel: usize, stride: usize| {
                    (size + pad).checked_sub(d * (kernel - 1) + 1).map(|span| span / stride + 1)
                };
                let (Some(oh), Some(ow)) =
                    (extent(h, pads[0] + pads[2], k, s), extent(w, pads[1] + pads[3], k + 1, s + 1))
                else {
                    continue;
                };
                let conv = StridedConv::new(1, &spec, &[c, h, w], &[groups, oh, ow]);
                let (cg, win) = (c / groups, k * (k + 1) * (c / groups));
                for g in 0..groups {
                    let mut expected = vec![0.0f32; oh * ow * win];
                    for (oy, ox) in (0..oh).flat_map(|oy| (0..ow).map(move |ox| (oy, ox))) {
                        for (ky, kx) in (0..k).flat_map(|ky| (0..k + 1).map(move |kx| (ky, kx))) {
                            let iy = (oy * s + ky * d).checked_sub(pads[0]).filter(|&y| y < h);
                            let ix = (ox * (s + 1) + kx * d).checked_sub(pads[1]).filter(|&x| x < w);
                            if let (Some(iy), Some(ix)) = (iy, ix) {
                                for ci in 0..cg {
                                    expected[(oy * ow + ox) * win + (ky * (k + 1) + kx) * cg + ci] =
                                        image[(iy * w + ix) * c + g * cg + ci];
                                }
                            }
                        }
                    }
                    // Whatever the buffer held before, every value is written.
                    let mut cols = vec![f32::NAN; expected.len()];
                    conv.im2col(&image, g, &mut cols);
                    let case = format!("kernel {k}, stride {s}, dilation {d}, pads {pads:?}, group {g} of {groups}");
                    assert_eq!(cols, expected, "{case}");
                    // <im2col(x), y> = <x, col2im(y)> for y = the column indices.
                    let y: Vec<f32> = (0..cols.len()).map(|i| (i % 13) as f32).collect();
                    let mut back = vec![0.0f32; image.len()];
                    conv.col2im(&y, g, &mut back);
                    let left: f64 = cols.iter().zip(&y).map(|(&a, &b)| f64::from(a * b)).sum();
                    let right: f64 = image.iter().zip(&back).map(|(&a, &b)| f64::from(a * b)).sum();
                    assert_eq!(left, right, "{case}");
                }
            }
        }
    }
}
