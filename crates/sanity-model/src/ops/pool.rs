//! The project's own 2-D max pooling, a candle `CustomOp1` with an exact backward.
//!
//! candle 0.9.2's `max_pool2d` backward scales the gradient by 1/k² and is wrong on odd sizes
//! (docs/architecture.md). Here the forward takes the maximum of each window (floor mode, no
//! padding) and the backward routes each output gradient to the first position of its window
//! that holds the maximum, as PyTorch's CPU kernel does (strict `>` scan in row-major order).
//! Overlapping windows (stride < kernel) accumulate.

use super::with_values;
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor, WithDType};
use rayon::prelude::*;

/// Max pooling over `kernel_size`² windows with step `stride`, `[n, c, h, w]` input.
#[derive(Debug, Clone, Copy)]
pub struct MaxPool2d {
    /// Window side.
    pub kernel_size: usize,
    /// Step between windows.
    pub stride: usize,
}

impl MaxPool2d {
    /// Applies the pooling to a `[n, c, h, w]` tensor (made contiguous first).
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.contiguous()?.apply_op1(*self)
    }

    pub(crate) fn out_size(&self, h: usize, w: usize) -> (usize, usize) {
        ((h - self.kernel_size) / self.stride + 1, (w - self.kernel_size) / self.stride + 1)
    }

    /// Calls `visit(output index, input index of the window's first maximum)` for every output
    /// of one `[h, w]` plane (PyTorch's strict `>` scan in row-major order).
    pub(crate) fn plane_argmax<T: WithDType>(
        &self,
        plane: &[T],
        h: usize,
        w: usize,
        mut visit: impl FnMut(usize, usize),
    ) {
        let (oh, ow) = self.out_size(h, w);
        let (k, s) = (self.kernel_size, self.stride);
        for oy in 0..oh {
            for ox in 0..ow {
                let mut best = oy * s * w + ox * s;
                let mut best_value = plane[best];
                for y in oy * s..oy * s + k {
                    for (dx, &v) in plane[y * w + ox * s..y * w + ox * s + k].iter().enumerate() {
                        if v > best_value {
                            best_value = v;
                            best = y * w + ox * s + dx;
                        }
                    }
                }
                visit(oy * ow + ox, best);
            }
        }
    }

    fn fwd_kernel<T: WithDType>(&self, x: &[T], dims: [usize; 4]) -> Vec<T> {
        let [n, c, h, w] = dims;
        let (oh, ow) = self.out_size(h, w);
        let mut out = vec![T::zero(); n * c * oh * ow];
        out.par_chunks_mut(oh * ow).zip(x.par_chunks(h * w)).for_each(|(o, plane)| {
            self.plane_argmax(plane, h, w, |oi, ii| o[oi] = plane[ii]);
        });
        out
    }

    fn bwd_kernel<T: WithDType>(&self, x: &[T], grad: &[T], dims: [usize; 4]) -> Vec<T> {
        let [_, _, h, w] = dims;
        let (oh, ow) = self.out_size(h, w);
        let mut out = vec![T::zero(); x.len()];
        out.par_chunks_mut(h * w).zip(x.par_chunks(h * w)).zip(grad.par_chunks(oh * ow)).for_each(|((d, plane), g)| {
            self.plane_argmax(plane, h, w, |oi, ii| d[ii] += g[oi]);
        });
        out
    }
}

impl MaxPool2d {
    /// The input gradient as a new tensor of `arg`'s dtype `T`.
    fn bwd_typed<T: WithDType>(
        &self,
        arg: &Tensor,
        grad_res: &Tensor,
        dims: [usize; 4],
    ) -> candle_core::Result<Tensor> {
        let grad = grad_res.to_dtype(arg.dtype())?;
        let out = with_values(arg, |x: &[T]| with_values(&grad, |g: &[T]| self.bwd_kernel(x, g, dims)))??;
        Tensor::from_vec(out, arg.shape(), arg.device())
    }
}

fn dims4(shape: &Shape) -> candle_core::Result<[usize; 4]> {
    let (n, c, h, w) = shape.dims4()?;
    Ok([n, c, h, w])
}

impl CustomOp1 for MaxPool2d {
    fn name(&self) -> &'static str {
        "sanity-max-pool2d"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let dims = dims4(layout.shape())?;
        let (oh, ow) = self.out_size(dims[2], dims[3]);
        let (start, end) = layout
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("max_pool2d needs a contiguous input".into()))?;
        let out = match storage {
            CpuStorage::F32(v) => CpuStorage::F32(self.fwd_kernel(&v[start..end], dims)),
            CpuStorage::F64(v) => CpuStorage::F64(self.fwd_kernel(&v[start..end], dims)),
            other => {
                return Err(candle_core::Error::UnsupportedDTypeForOp(other.dtype(), "max_pool2d"));
            }
        };
        Ok((out, Shape::from((dims[0], dims[1], oh, ow))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let dims = dims4(arg.shape())?;
        let grad = match arg.dtype() {
            candle_core::DType::F64 => self.bwd_typed::<f64>(arg, grad_res, dims)?,
            _ => self.bwd_typed::<f32>(arg, grad_res, dims)?,
        };
        Ok(Some(grad))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn forward_takes_window_maxima_in_floor_mode() {
        // 1x1x3x3 input, 2x2 windows, stride 1 -> 2x2 output; an odd size, floor mode.
        let x = Tensor::new(&[[[[1f32, 5., 2.], [4., 3., 9.], [0., 8., 6.]]]], &Device::Cpu).expect("tensor");
        let y = MaxPool2d { kernel_size: 2, stride: 1 }.forward(&x).expect("pool");
        assert_eq!(y.flatten_all().expect("flat").to_vec1::<f32>().expect("vec"), [5., 9., 8., 9.]);
        let y = MaxPool2d { kernel_size: 2, stride: 2 }.forward(&x).expect("pool");
        assert_eq!(y.flatten_all().expect("flat").to_vec1::<f32>().expect("vec"), [5.]);
    }

    #[test]
    fn backward_routes_to_the_argmax_and_accumulates_overlaps() {
        let x = Var::new(&[[[[1f64, 5., 2.], [4., 3., 9.], [0., 8., 6.]]]], &Device::Cpu).expect("var");
        let y = MaxPool2d { kernel_size: 2, stride: 1 }.forward(x.as_tensor()).expect("pool");
        let weights = Tensor::new(&[[[[1f64, 2.], [3., 4.]]]], &Device::Cpu).expect("tensor");
        let grads = (y * weights).expect("mul").sum_all().expect("sum").backward().expect("backward");
        let g = grads.get(x.as_tensor()).expect("grad").flatten_all().expect("flat").to_vec1::<f64>().expect("vec");
        // 5 gets 1, 9 gets 2 + 4 (two windows), 8 gets 3.
        assert_eq!(g, [0., 1., 0., 0., 0., 6., 0., 3., 0.]);
    }
}
