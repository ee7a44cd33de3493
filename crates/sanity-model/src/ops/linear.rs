//! Fully connected layer `y = x Wᵀ + b` (`W` is `[out, in]`, PyTorch's layout) on gemm.
//! Backward: `dx = dy W`, `dW = dyᵀ x`, `db = Σ_n dy`, each only when its operand tracks
//! gradients.

use super::gemm::{GemmScalar, Layout2, matmul};
use super::{contiguous_slice, values};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, Layout, Result, Shape, Tensor, WithDType};

#[derive(Debug, Clone, Copy)]
struct Linear;

fn dims(x: &Shape, w: &Shape) -> Result<(usize, usize, usize)> {
    let (n, fin) = x.dims2()?;
    let (fout, win) = w.dims2()?;
    if fin != win {
        return Err(candle_core::Error::Msg(format!(
            "linear: input {:?} does not fit weight {:?}",
            x.dims(),
            w.dims()
        )));
    }
    Ok((n, fin, fout))
}

impl Linear {
    fn fwd_typed<T: WithDType + GemmScalar>(
        &self,
        s: [&CpuStorage; 3],
        l: [&Layout; 3],
    ) -> Result<(CpuStorage, Shape)> {
        let (n, fin, fout) = dims(l[0].shape(), l[1].shape())?;
        let (x, w, b) = (
            contiguous_slice::<T>(s[0], l[0])?,
            contiguous_slice::<T>(s[1], l[1])?,
            contiguous_slice::<T>(s[2], l[2])?,
        );
        let mut y: Vec<T> = Vec::with_capacity(n * fout);
        for _ in 0..n {
            y.extend_from_slice(b);
        }
        let threads = rayon::current_num_threads();
        matmul(
            &mut y,
            Layout2::row_major(n, fout),
            x,
            Layout2::row_major(n, fin),
            w,
            Layout2::row_major(fout, fin).t(),
            true,
            threads,
        );
        Ok((T::to_cpu_storage_owned(y), Shape::from((n, fout))))
    }

    fn bwd_typed<T: WithDType + GemmScalar>(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, fin, fout) = dims(x.shape(), w.shape())?;
        let threads = rayon::current_num_threads();
        let dy = values::<T>(&dy.to_dtype(x.dtype())?)?;
        let dx = if x.track_op() {
            let mut dx = vec![T::zero(); n * fin];
            let wv = values::<T>(w)?;
            matmul(
                &mut dx,
                Layout2::row_major(n, fin),
                &dy,
                Layout2::row_major(n, fout),
                &wv,
                Layout2::row_major(fout, fin),
                false,
                threads,
            );
            Some(Tensor::from_vec(dx, x.shape(), x.device())?)
        } else {
            None
        };
        let dw = if w.track_op() {
            let mut dw = vec![T::zero(); fout * fin];
            let xv = values::<T>(x)?;
            matmul(
                &mut dw,
                Layout2::row_major(fout, fin),
                &dy,
                Layout2::row_major(n, fout).t(),
                &xv,
                Layout2::row_major(n, fin),
                false,
                threads,
            );
            Some(Tensor::from_vec(dw, w.shape(), w.device())?)
        } else {
            None
        };
        let db = if b.track_op() {
            let mut db = vec![T::zero(); fout];
            for row in dy.chunks_exact(fout) {
                for (d, &v) in db.iter_mut().zip(row) {
                    *d += v;
                }
            }
            Some(Tensor::from_vec(db, b.shape(), b.device())?)
        } else {
            None
        };
        Ok((dx, dw, db))
    }
}

impl_typed_op3!(Linear, "sanity-linear", "linear");

/// `x` `[n, in]`, `weight` `[out, in]`, `bias` `[out]` -> `[n, out]`.
pub fn linear(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let dtype = x.dtype();
    x.contiguous()?.apply_op3(&weight.to_dtype(dtype)?.contiguous()?, &bias.to_dtype(dtype)?.contiguous()?, Linear)
}
