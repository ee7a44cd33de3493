//! 2-D convolution (cross-correlation), stride 1, zero padding, bias; one image per task.
//!
//! ```text
//! y[n, o, i, j] = b[o] + Σ_{c, u, v} w[o, c, u, v] · x_pad[n, c, i + u, j + v]
//! ```
//! For a chunk of images, a transposed im2col puts window value `(c, u, v)` of output position
//! `p` of image `m` at `cols_t[(c, u, v), m·P + p]` (P = oh·ow; copies run along output rows),
//! and one gemm gives `y [o, rows] = W [o, c·k·k] × cols_t`, whose rows are the output planes.
//! The backward reuses the layouts: `dcols_t = Wᵀ × dy` then col2im for the input,
//! `dW = Σ_chunks dy × cols_tᵀ` (summed in chunk order, so results do not depend on threads),
//! `db = Σ dy`. Scratch buffers are kept per thread (`GemmScalar::with_scratch`).
//!
//! candle 0.9.2's own `conv2d` returns wrong values on some shapes (3 input channels on a 3x3
//! input) and computes the weight gradient in every backward; the project does not use it.

use super::gemm::{GemmScalar, Layout2, matmul};
use super::{contiguous_slice, with_values};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

/// Conv geometry of one call: `n` images `[c, h, w]`, `o` filters `k x k`, zero padding `pad`,
/// output `[o, oh, ow]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Geometry {
    pub(crate) n: usize,
    pub(crate) c: usize,
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) o: usize,
    pub(crate) k: usize,
    pub(crate) pad: usize,
    pub(crate) oh: usize,
    pub(crate) ow: usize,
}

/// Images per gemm. Chosen with `benches/methods.rs` (one IG call on adebayo-cnn, 100 inputs,
/// 2 threads): 1 image 71.1 ms, 2 images 72.3 ms, 4 images 73.7 ms, 8 images 85 ms, 16 images
/// 87.4 ms: the im2col buffer of a chunk has to stay in cache.
const IMAGES_PER_GEMM: usize = 2;

impl Geometry {
    fn positions(&self) -> usize {
        self.oh * self.ow
    }

    fn window(&self) -> usize {
        self.c * self.k * self.k
    }

    fn image_len(&self) -> usize {
        self.c * self.h * self.w
    }

    /// Gemm threads per chunk: all of them when there are fewer chunks than threads.
    fn inner_threads(&self) -> usize {
        let t = rayon::current_num_threads();
        if self.n.div_ceil(IMAGES_PER_GEMM) >= t { 1 } else { t }
    }

    /// The output columns `j0..j1` whose input column `j + v − pad` lies inside the image.
    fn valid_columns(&self, v: usize) -> (usize, usize) {
        let j0 = self.pad.saturating_sub(v).min(self.ow);
        let j1 = self.ow.min((self.w + self.pad).saturating_sub(v));
        (j0, j1.max(j0))
    }

    /// Calls `run(window index r, c, v, output row i, input row y)` for every window value
    /// `(c, u, v)` and output row `i`, with `y = i + u − pad` when that row is inside the image.
    fn for_each_run(&self, mut run: impl FnMut(usize, usize, usize, usize, Option<usize>)) {
        let k = self.k;
        for c in 0..self.c {
            for u in 0..k {
                for v in 0..k {
                    let r = (c * k + u) * k + v;
                    for i in 0..self.oh {
                        let y = (i + u).wrapping_sub(self.pad);
                        run(r, c, v, i, (y < self.h).then_some(y));
                    }
                }
            }
        }
    }

    /// Transposed im2col of one image into columns `col0..col0 + P` of `cols_t` `[win, rows]`:
    /// `cols_t[(c, u, v), col0 + i·ow + j] = x_pad[c, i + u, j + v]`, copied in runs along `j`.
    fn im2col_t<T: WithDType>(&self, x: &[T], cols_t: &mut [T], rows: usize, col0: usize) {
        let (p, ow, hw) = (self.positions(), self.ow, self.h * self.w);
        let zero = T::zero();
        self.for_each_run(|r, c, v, i, y| {
            let dst = &mut cols_t[r * rows + col0 + i * ow..r * rows + col0 + (i + 1) * ow];
            let Some(y) = y else {
                dst.fill(zero);
                return;
            };
            let (j0, j1) = self.valid_columns(v);
            dst[..j0].fill(zero);
            dst[j1..].fill(zero);
            if j0 == j1 {
                return; // The whole output row reads padding.
            }
            let start = c * hw + y * self.w + j0 + v - self.pad;
            dst[j0..j1].copy_from_slice(&x[start..start + (j1 - j0)]);
        });
        debug_assert!(col0 + p <= rows);
    }

    /// The adjoint of [`Geometry::im2col_t`]: `dx[c, i + u − pad, j + v − pad] += dcols_t[(c, u, v), col0 + i·ow + j]`.
    fn col2im_t<T: WithDType>(&self, dcols_t: &[T], rows: usize, col0: usize, dx: &mut [T]) {
        let (ow, hw) = (self.ow, self.h * self.w);
        self.for_each_run(|r, c, v, i, y| {
            let Some(y) = y else { return };
            let (j0, j1) = self.valid_columns(v);
            let src = &dcols_t[r * rows + col0 + i * ow + j0..r * rows + col0 + i * ow + j1];
            if j0 == j1 {
                return; // The whole output row reads padding.
            }
            let start = c * hw + y * self.w + j0 + v - self.pad;
            for (d, &s) in dx[start..start + (j1 - j0)].iter_mut().zip(src) {
                *d += s;
            }
        });
    }

    /// Runs `f(first image, output chunk)` over chunks of [`IMAGES_PER_GEMM`] images in parallel.
    fn for_chunks<T: Send, F>(&self, out: &mut [T], out_per_image: usize, f: F)
    where
        F: Fn(usize, &mut [T]) + Sync + Send,
    {
        out.par_chunks_mut(IMAGES_PER_GEMM * out_per_image)
            .enumerate()
            .for_each(|(chunk, dst)| f(chunk * IMAGES_PER_GEMM, dst));
    }

    /// `cols_t [win, rows]` of images `first..first + images`, in scratch slot 0, then `f`.
    fn with_cols_t<T: WithDType + GemmScalar, R>(
        &self,
        x: &[T],
        first: usize,
        images: usize,
        f: impl FnOnce(&[T]) -> R,
    ) -> R {
        let (p, win, len) = (self.positions(), self.window(), self.image_len());
        let rows = images * p;
        T::with_scratch(0, win * rows, |cols_t| {
            for m in 0..images {
                self.im2col_t(&x[(first + m) * len..(first + m + 1) * len], cols_t, rows, m * p);
            }
            f(cols_t)
        })
    }

    pub(crate) fn forward<T: WithDType + GemmScalar>(&self, x: &[T], w: &[T], b: &[T]) -> Vec<T> {
        let (p, win, o) = (self.positions(), self.window(), self.o);
        let threads = self.inner_threads();
        let mut y = vec![T::zero(); self.n * o * p];
        self.for_chunks(&mut y, o * p, |first, dst| {
            let images = dst.len() / (o * p);
            let rows = images * p;
            self.with_cols_t(x, first, images, |cols_t| {
                // out [o, rows] = W [o, win] × cols_t [win, rows]; image m's plane oc is a run.
                T::with_scratch(1, o * rows, |out| {
                    let (wl, cl) = (Layout2::row_major(o, win), Layout2::row_major(win, rows));
                    matmul(out, Layout2::row_major(o, rows), w, wl, cols_t, cl, false, threads);
                    for m in 0..images {
                        for (oc, plane) in dst[m * o * p..(m + 1) * o * p].chunks_exact_mut(p).enumerate() {
                            for (v, &r) in plane.iter_mut().zip(&out[oc * rows + m * p..oc * rows + (m + 1) * p]) {
                                *v = r + b[oc];
                            }
                        }
                    }
                });
            });
        });
        y
    }

    /// `dy` of images `first..first + images` as `[o, rows]` in scratch slot 1, then `f`.
    fn with_dy_rows<T: WithDType + GemmScalar, R>(
        &self,
        dy: &[T],
        first: usize,
        images: usize,
        f: impl FnOnce(&[T]) -> R,
    ) -> R {
        let (p, o) = (self.positions(), self.o);
        let rows = images * p;
        T::with_scratch(1, o * rows, |dy_rows| {
            for m in 0..images {
                for (oc, plane) in dy[(first + m) * o * p..(first + m + 1) * o * p].chunks_exact(p).enumerate() {
                    dy_rows[oc * rows + m * p..oc * rows + (m + 1) * p].copy_from_slice(plane);
                }
            }
            f(dy_rows)
        })
    }

    /// `dx`: `dcols_t [win, rows] = Wᵀ × dy [o, rows]` per chunk, then col2im (runs along rows).
    pub(crate) fn input_grad<T: WithDType + GemmScalar>(&self, dy: &[T], w: &[T]) -> Vec<T> {
        let (p, win, o, len) = (self.positions(), self.window(), self.o, self.image_len());
        let threads = self.inner_threads();
        let mut dx = vec![T::zero(); self.n * len];
        self.for_chunks(&mut dx, len, |first, dst| {
            let images = dst.len() / len;
            let rows = images * p;
            self.with_dy_rows(dy, first, images, |dy_rows| {
                T::with_scratch(2, win * rows, |dcols_t| {
                    let (wl, dl) = (Layout2::row_major(o, win).t(), Layout2::row_major(o, rows));
                    matmul(dcols_t, Layout2::row_major(win, rows), w, wl, dy_rows, dl, false, threads);
                    for m in 0..images {
                        self.col2im_t(dcols_t, rows, m * p, &mut dst[m * len..(m + 1) * len]);
                    }
                });
            });
        });
        dx
    }

    /// `dW = Σ_chunks dy [o, rows] × cols_tᵀ [rows, win]`, summed in chunk order.
    fn weight_grad<T: WithDType + GemmScalar>(&self, x: &[T], dy: &[T]) -> Vec<T> {
        let (p, win, o) = (self.positions(), self.window(), self.o);
        let threads = self.inner_threads();
        let chunks: Vec<usize> = (0..self.n).step_by(IMAGES_PER_GEMM).collect();
        let per_chunk: Vec<Vec<T>> = chunks
            .par_iter()
            .map(|&first| {
                let images = IMAGES_PER_GEMM.min(self.n - first);
                let rows = images * p;
                let mut dw = vec![T::zero(); o * win];
                self.with_cols_t(x, first, images, |cols_t| {
                    self.with_dy_rows(dy, first, images, |dy_rows| {
                        let (dl, cl) = (Layout2::row_major(o, rows), Layout2::row_major(win, rows).t());
                        matmul(&mut dw, Layout2::row_major(o, win), dy_rows, dl, cols_t, cl, false, threads);
                    })
                });
                dw
            })
            .collect();
        let mut total = vec![T::zero(); o * win];
        for dw in per_chunk {
            for (t, v) in total.iter_mut().zip(dw) {
                *t += v;
            }
        }
        total
    }

    fn bias_grad<T: WithDType>(&self, dy: &[T]) -> Vec<T> {
        let p = self.positions();
        let mut db = vec![T::zero(); self.o];
        for image in dy.chunks_exact(self.o * p) {
            for (oc, row) in image.chunks_exact(p).enumerate() {
                for &v in row {
                    db[oc] += v;
                }
            }
        }
        db
    }
}

/// The convolution op; see the module docs.
#[derive(Debug, Clone, Copy)]
struct Conv2d {
    padding: usize,
}

impl Conv2d {
    fn geometry(&self, x: &Shape, w: &Shape) -> Result<Geometry> {
        let (n, c, h, wd) = x.dims4()?;
        let (o, wc, k, k2) = w.dims4()?;
        if wc != c || k != k2 || h + 2 * self.padding < k || wd + 2 * self.padding < k {
            return Err(candle_core::Error::Msg(format!(
                "conv2d: input {:?} does not fit kernel {:?}",
                x.dims(),
                w.dims()
            )));
        }
        let (oh, ow) = (h + 2 * self.padding + 1 - k, wd + 2 * self.padding + 1 - k);
        Ok(Geometry { n, c, h, w: wd, o, k, pad: self.padding, oh, ow })
    }

    fn fwd_typed<T: WithDType + GemmScalar>(
        &self,
        s: [&CpuStorage; 3],
        l: [&Layout; 3],
    ) -> Result<(CpuStorage, Shape)> {
        let g = self.geometry(l[0].shape(), l[1].shape())?;
        let (x, w, b) = (
            contiguous_slice::<T>(s[0], l[0])?,
            contiguous_slice::<T>(s[1], l[1])?,
            contiguous_slice::<T>(s[2], l[2])?,
        );
        Ok((T::to_cpu_storage_owned(g.forward(x, w, b)), Shape::from((g.n, g.o, g.oh, g.ow))))
    }

    fn bwd_typed<T: WithDType + GemmScalar>(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = self.geometry(x.shape(), w.shape())?;
        let dy = dy.to_dtype(x.dtype())?;
        with_values(&dy, |dy: &[T]| -> Result<_> {
            let dx = match x.track_op() {
                true => Some(Tensor::from_vec(with_values(w, |w: &[T]| g.input_grad(dy, w))?, x.shape(), x.device())?),
                false => None,
            };
            let dw = match w.track_op() {
                true => Some(Tensor::from_vec(with_values(x, |x: &[T]| g.weight_grad(x, dy))?, w.shape(), w.device())?),
                false => None,
            };
            let db = match b.track_op() {
                true => Some(Tensor::from_vec(g.bias_grad(dy), b.shape(), b.device())?),
                false => None,
            };
            Ok((dx, dw, db))
        })?
    }
}

impl_typed_op3!(Conv2d, "sanity-conv2d", "conv2d");

/// `x` `[n, c, h, w]`, `weight` `[o, c, k, k]`, `bias` `[o]`, zero `padding` per side, stride 1.
pub fn conv2d(x: &Tensor, weight: &Tensor, bias: &Tensor, padding: usize) -> Result<Tensor> {
    let dtype = x.dtype();
    x.contiguous()?.apply_op3(
        &weight.to_dtype(dtype)?.contiguous()?,
        &bias.to_dtype(dtype)?.contiguous()?,
        Conv2d { padding },
    )
}
