//! 2-D convolution (cross-correlation), stride 1, zero padding, bias; one image per task.
//!
//! ```text
//! y[n, o, i, j] = b[o] + Σ_{c, u, v} w[o, c, u, v] · x_pad[n, c, i + u, j + v]
//! ```
//! Per image, im2col puts the `c·k·k` window values of output position `p` in row `p` of
//! `cols [P, c·k·k]` (P = oh·ow), and one gemm gives `yᵀ [P, o] = cols × Wᵀ`, written straight
//! into the NCHW output through strides (output positions as rows, channels as columns: the
//! fast shape, DESIGN.md section 9). The backward reuses the layouts:
//! `d cols = dyᵀ × W` then col2im (scatter-add) for the input, `dW = Σ_n dy × cols` (summed in
//! image order, so results do not depend on threads), `db = Σ dy`.
//!
//! candle 0.9.2's own `conv2d` returns wrong values on some shapes (3 input channels on a 3x3
//! input) and computes the weight gradient in every backward; the project does not use it.

use super::gemm::{GemmScalar, Layout2, matmul};
use super::{contiguous_slice, values};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

/// Conv geometry of one call.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    k: usize,
    pad: usize,
    oh: usize,
    ow: usize,
}

/// Images per gemm: `chunk·P` rows make a tall, thin product, the fast shape on this machine
/// (chosen with `benches/kernels.rs`: 8 images of 14x14 give [1568 x 800] x [800 x 64]).
const IMAGES_PER_GEMM: usize = 8;

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

    /// The valid kernel columns `v0..v1` for output column `j` (input column `j + v − pad`).
    fn columns(&self, j: usize) -> (usize, usize) {
        let v0 = self.pad.saturating_sub(j);
        let v1 = self.k.min(self.w + self.pad - j);
        (v0, v1.max(v0))
    }

    /// `cols[p, (c, u, v)] = x_pad[c, i + u, j + v]` for `p = i·ow + j`, one image.
    fn im2col<T: WithDType>(&self, x: &[T], cols: &mut [T]) {
        let (k, win) = (self.k, self.window());
        for i in 0..self.oh {
            for j in 0..self.ow {
                let row = &mut cols[(i * self.ow + j) * win..(i * self.ow + j + 1) * win];
                let (v0, v1) = self.columns(j);
                for c in 0..self.c {
                    let plane = &x[c * self.h * self.w..(c + 1) * self.h * self.w];
                    for u in 0..k {
                        let dst = &mut row[(c * k + u) * k..(c * k + u + 1) * k];
                        let y = (i + u).wrapping_sub(self.pad);
                        if y >= self.h {
                            dst.fill(T::zero());
                            continue;
                        }
                        dst[..v0].fill(T::zero());
                        dst[v1..].fill(T::zero());
                        let start = y * self.w + j + v0 - self.pad;
                        dst[v0..v1].copy_from_slice(&plane[start..start + (v1 - v0)]);
                    }
                }
            }
        }
    }

    /// The adjoint of [`Geometry::im2col`]: `dx[c, i + u − pad, j + v − pad] += dcols[p, (c, u, v)]`.
    fn col2im<T: WithDType>(&self, dcols: &[T], dx: &mut [T]) {
        let (k, win) = (self.k, self.window());
        for i in 0..self.oh {
            for j in 0..self.ow {
                let row = &dcols[(i * self.ow + j) * win..(i * self.ow + j + 1) * win];
                let (v0, v1) = self.columns(j);
                for c in 0..self.c {
                    let plane = &mut dx[c * self.h * self.w..(c + 1) * self.h * self.w];
                    for u in 0..k {
                        let y = (i + u).wrapping_sub(self.pad);
                        if y >= self.h {
                            continue;
                        }
                        let src = &row[(c * k + u) * k + v0..(c * k + u) * k + v1];
                        let start = y * self.w + j + v0 - self.pad;
                        for (d, &s) in plane[start..start + (v1 - v0)].iter_mut().zip(src) {
                            *d += s;
                        }
                    }
                }
            }
        }
    }

    /// Runs `f(first image, images, chunk buffers)` over chunks of [`IMAGES_PER_GEMM`] images in
    /// parallel, with two scratch buffers per worker.
    fn for_chunks<T, F>(&self, out: &mut [T], out_per_image: usize, f: F)
    where
        T: WithDType + GemmScalar,
        F: Fn(usize, &mut [T], &mut Vec<T>, &mut Vec<T>) + Sync + Send,
    {
        out.par_chunks_mut(IMAGES_PER_GEMM * out_per_image)
            .enumerate()
            .for_each_init(|| (Vec::new(), Vec::new()), |(a, b), (chunk, dst)| f(chunk * IMAGES_PER_GEMM, dst, a, b));
    }

    fn forward<T: WithDType + GemmScalar>(&self, x: &[T], w: &[T], b: &[T]) -> Vec<T> {
        let (p, win, o) = (self.positions(), self.window(), self.o);
        let threads = self.inner_threads();
        let mut y = vec![T::zero(); self.n * o * p];
        self.for_chunks(&mut y, o * p, |first, dst, cols, out_t| {
            let images = dst.len() / (o * p);
            cols.resize(images * p * win, T::zero());
            out_t.resize(images * p * o, T::zero());
            for m in 0..images {
                let xn = &x[(first + m) * self.image_len()..(first + m + 1) * self.image_len()];
                self.im2col(xn, &mut cols[m * p * win..(m + 1) * p * win]);
            }
            let rows = images * p;
            let w_t = Layout2::row_major(o, win).t();
            matmul(out_t, Layout2::row_major(rows, o), cols, Layout2::row_major(rows, win), w, w_t, false, threads);
            // [image·P + p, o] -> [image, o, p], plus the bias.
            for m in 0..images {
                for (oc, plane) in dst[m * o * p..(m + 1) * o * p].chunks_exact_mut(p).enumerate() {
                    for (pos, v) in plane.iter_mut().enumerate() {
                        *v = out_t[(m * p + pos) * o + oc] + b[oc];
                    }
                }
            }
        });
        y
    }

    /// `dx`: `dcols = dyᵀ × W` per chunk of images, then col2im (scatter-add). (Computing it
    /// instead as the forward convolution of `dy` with the flipped, transposed kernel was 7%
    /// slower on a whole adebayo-cnn pass, `benches/methods.rs`, 2 threads.)
    fn input_grad<T: WithDType + GemmScalar>(&self, dy: &[T], w: &[T]) -> Vec<T> {
        let (p, win, o) = (self.positions(), self.window(), self.o);
        let threads = self.inner_threads();
        let mut dx = vec![T::zero(); self.n * self.image_len()];
        self.for_chunks(&mut dx, self.image_len(), |first, dst, dy_t, dcols| {
            let images = dst.len() / self.image_len();
            dy_t.resize(images * p * o, T::zero());
            dcols.resize(images * p * win, T::zero());
            // [image, o, p] -> [image·P + p, o].
            for m in 0..images {
                let dyn_ = &dy[(first + m) * o * p..(first + m + 1) * o * p];
                for (oc, plane) in dyn_.chunks_exact(p).enumerate() {
                    for (pos, &v) in plane.iter().enumerate() {
                        dy_t[(m * p + pos) * o + oc] = v;
                    }
                }
            }
            let rows = images * p;
            matmul(
                dcols,
                Layout2::row_major(rows, win),
                dy_t,
                Layout2::row_major(rows, o),
                w,
                Layout2::row_major(o, win),
                false,
                threads,
            );
            for m in 0..images {
                let dxn = &mut dst[m * self.image_len()..(m + 1) * self.image_len()];
                self.col2im(&dcols[m * p * win..(m + 1) * p * win], dxn);
            }
        });
        dx
    }

    fn weight_grad<T: WithDType + GemmScalar>(&self, x: &[T], dy: &[T]) -> Vec<T> {
        let (p, win, o) = (self.positions(), self.window(), self.o);
        let threads = self.inner_threads();
        let per_image: Vec<Vec<T>> = x
            .par_chunks(self.image_len())
            .zip(dy.par_chunks(o * p))
            .map_init(
                || vec![T::zero(); p * win],
                |cols, (xn, dyn_)| {
                    self.im2col(xn, cols);
                    let mut dw = vec![T::zero(); o * win];
                    matmul(
                        &mut dw,
                        Layout2::row_major(o, win),
                        dyn_,
                        Layout2::row_major(o, p),
                        cols,
                        Layout2::row_major(p, win),
                        false,
                        threads,
                    );
                    dw
                },
            )
            .collect();
        let mut total = vec![T::zero(); o * win];
        for dw in per_image {
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
        let dy = values::<T>(&dy.to_dtype(x.dtype())?)?;
        let dx = if x.track_op() {
            Some(Tensor::from_vec(g.input_grad(&dy, &values::<T>(w)?), x.shape(), x.device())?)
        } else {
            None
        };
        let dw = if w.track_op() {
            Some(Tensor::from_vec(g.weight_grad(&values::<T>(x)?, &dy), w.shape(), w.device())?)
        } else {
            None
        };
        let db = if b.track_op() { Some(Tensor::from_vec(g.bias_grad(&dy), b.shape(), b.device())?) } else { None };
        Ok((dx, dw, db))
    }
}

impl CustomOp3 for Conv2d {
    fn name(&self) -> &'static str {
        "sanity-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        match s1.dtype() {
            DType::F32 => self.fwd_typed::<f32>([s1, s2, s3], [l1, l2, l3]),
            DType::F64 => self.fwd_typed::<f64>([s1, s2, s3], [l1, l2, l3]),
            other => Err(candle_core::Error::UnsupportedDTypeForOp(other, "conv2d")),
        }
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        match x.dtype() {
            DType::F64 => self.bwd_typed::<f64>(x, w, b, dy),
            _ => self.bwd_typed::<f32>(x, w, b, dy),
        }
    }
}

/// `x` `[n, c, h, w]`, `weight` `[o, c, k, k]`, `bias` `[o]`, zero `padding` per side, stride 1.
pub fn conv2d(x: &Tensor, weight: &Tensor, bias: &Tensor, padding: usize) -> Result<Tensor> {
    let dtype = x.dtype();
    x.contiguous()?.apply_op3(
        &weight.to_dtype(dtype)?.contiguous()?,
        &bias.to_dtype(dtype)?.contiguous()?,
        Conv2d { padding },
    )
}
