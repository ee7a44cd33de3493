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

impl Geometry {
    fn positions(&self) -> usize {
        self.oh * self.ow
    }

    fn window(&self) -> usize {
        self.c * self.k * self.k
    }

    /// Gemm threads per image: all of them when there are fewer images than threads.
    fn inner_threads(&self) -> usize {
        let t = rayon::current_num_threads();
        if self.n >= t { 1 } else { t }
    }

    /// `cols[p, (c, u, v)] = x_pad[c, i + u, j + v]` for `p = i·ow + j`.
    fn im2col<T: WithDType>(&self, x: &[T], cols: &mut [T]) {
        let (k, pad) = (self.k, self.pad as isize);
        let mut idx = 0;
        for i in 0..self.oh {
            for j in 0..self.ow {
                for c in 0..self.c {
                    let plane = &x[c * self.h * self.w..(c + 1) * self.h * self.w];
                    for u in 0..k {
                        let y = i as isize + u as isize - pad;
                        for v in 0..k {
                            let xx = j as isize + v as isize - pad;
                            cols[idx] = if y >= 0 && xx >= 0 && (y as usize) < self.h && (xx as usize) < self.w {
                                plane[y as usize * self.w + xx as usize]
                            } else {
                                T::zero()
                            };
                            idx += 1;
                        }
                    }
                }
            }
        }
    }

    /// The adjoint of [`Geometry::im2col`]: `dx[c, i + u − pad, j + v − pad] += dcols[p, (c, u, v)]`.
    fn col2im<T: WithDType>(&self, dcols: &[T], dx: &mut [T]) {
        let (k, pad) = (self.k, self.pad as isize);
        let mut idx = 0;
        for i in 0..self.oh {
            for j in 0..self.ow {
                for c in 0..self.c {
                    let plane = &mut dx[c * self.h * self.w..(c + 1) * self.h * self.w];
                    for u in 0..k {
                        let y = i as isize + u as isize - pad;
                        for v in 0..k {
                            let xx = j as isize + v as isize - pad;
                            if y >= 0 && xx >= 0 && (y as usize) < self.h && (xx as usize) < self.w {
                                plane[y as usize * self.w + xx as usize] += dcols[idx];
                            }
                            idx += 1;
                        }
                    }
                }
            }
        }
    }

    /// `yᵀ` of one image `[o, P]` viewed as `[P, o]`.
    fn out_t(&self) -> Layout2 {
        Layout2::row_major(self.o, self.positions()).t()
    }

    fn forward<T: WithDType + GemmScalar>(&self, x: &[T], w: &[T], b: &[T]) -> Vec<T> {
        let (p, win, o) = (self.positions(), self.window(), self.o);
        let threads = self.inner_threads();
        let mut y = vec![T::zero(); self.n * o * p];
        y.par_chunks_mut(o * p).zip(x.par_chunks(self.c * self.h * self.w)).for_each_init(
            || vec![T::zero(); p * win],
            |cols, (yn, xn)| {
                self.im2col(xn, cols);
                for (oc, row) in yn.chunks_mut(p).enumerate() {
                    row.fill(b[oc]);
                }
                let w_t = Layout2::row_major(o, win).t();
                matmul(yn, self.out_t(), cols, Layout2::row_major(p, win), w, w_t, true, threads);
            },
        );
        y
    }

    fn input_grad<T: WithDType + GemmScalar>(&self, dy: &[T], w: &[T]) -> Vec<T> {
        let (p, win, o) = (self.positions(), self.window(), self.o);
        let threads = self.inner_threads();
        let mut dx = vec![T::zero(); self.n * self.c * self.h * self.w];
        dx.par_chunks_mut(self.c * self.h * self.w).zip(dy.par_chunks(o * p)).for_each_init(
            || vec![T::zero(); p * win],
            |dcols, (dxn, dyn_)| {
                matmul(
                    dcols,
                    Layout2::row_major(p, win),
                    dyn_,
                    self.out_t(),
                    w,
                    Layout2::row_major(o, win),
                    false,
                    threads,
                );
                self.col2im(dcols, dxn);
            },
        );
        dx
    }

    fn weight_grad<T: WithDType + GemmScalar>(&self, x: &[T], dy: &[T]) -> Vec<T> {
        let (p, win, o) = (self.positions(), self.window(), self.o);
        let threads = self.inner_threads();
        let per_image: Vec<Vec<T>> = x
            .par_chunks(self.c * self.h * self.w)
            .zip(dy.par_chunks(o * p))
            .map(|(xn, dyn_)| {
                let mut cols = vec![T::zero(); p * win];
                self.im2col(xn, &mut cols);
                let mut dw = vec![T::zero(); o * win];
                matmul(
                    &mut dw,
                    Layout2::row_major(o, win),
                    dyn_,
                    Layout2::row_major(o, p),
                    &cols,
                    Layout2::row_major(p, win),
                    false,
                    threads,
                );
                dw
            })
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
