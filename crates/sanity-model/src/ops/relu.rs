//! ReLU with a backward rule chosen per call — how guided backprop and deconvnet are expressed
//! without hooks or global state (candle has no hooks, docs/architecture.md).
//!
//! With `g` the gradient arriving from above and `x` the ReLU's input:
//! - `Standard`: `g · [x > 0]` (PyTorch's rule, 0 at x = 0);
//! - `Guided`: `max(g, 0) · [x > 0]` (Springenberg et al. 2015, arXiv:1412.6806, Eq. in Fig. 1;
//!   Captum's `GuidedBackprop`);
//! - `Deconv`: `max(g, 0)` (Zeiler & Fergus 2014; Captum's `Deconvolution`).

use super::{contiguous_slice, with_values};
use rayon::prelude::*;

/// Elements per parallel task.
const PARALLEL_CHUNK: usize = 1 << 14;
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor, WithDType};

/// How gradients pass back through a ReLU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReluMode {
    /// The true gradient.
    #[default]
    Standard,
    /// Guided backpropagation.
    Guided,
    /// DeconvNet.
    Deconv,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Relu(pub(crate) ReluMode);

impl Relu {
    fn bwd_typed<T: WithDType>(&self, x: &Tensor, g: &Tensor) -> Result<Tensor> {
        let g = g.to_dtype(x.dtype())?;
        let out = with_values(x, |xv: &[T]| with_values(&g, |gv: &[T]| self.rule(xv, gv)))??;
        Tensor::from_vec(out, x.shape(), x.device())
    }

    fn rule<T: WithDType>(&self, xv: &[T], gv: &[T]) -> Vec<T> {
        let mut out = gv.to_vec();
        self.backward_in_place(&mut out, xv);
        out
    }

    /// `g ← rule(x, g)` element-wise, in parallel. `x` may be the ReLU's input or its output
    /// (both are positive at the same places).
    pub(crate) fn backward_in_place<T: WithDType>(&self, g: &mut [T], x: &[T]) {
        g.par_chunks_mut(PARALLEL_CHUNK).zip(x.par_chunks(PARALLEL_CHUNK)).for_each(|(g, x)| {
            g.iter_mut().zip(x).for_each(|(g, &x)| *g = self.rule_one(x, *g));
        });
    }

    /// The gradient passed to the input for input value `x` and arriving gradient `g`.
    #[inline(always)]
    pub(crate) fn rule_one<T: WithDType>(&self, x: T, g: T) -> T {
        let zero = T::zero();
        let passes = match self.0 {
            ReluMode::Standard => x > zero,
            ReluMode::Guided => x > zero && g > zero,
            ReluMode::Deconv => g > zero,
        };
        if passes { g } else { zero }
    }
}

impl CustomOp1 for Relu {
    fn name(&self) -> &'static str {
        "sanity-relu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        fn fwd<T: WithDType>(s: &CpuStorage, l: &Layout) -> Result<CpuStorage> {
            let zero = T::zero();
            let x = contiguous_slice::<T>(s, l)?;
            let mut out = vec![zero; x.len()];
            out.par_chunks_mut(PARALLEL_CHUNK).zip(x.par_chunks(PARALLEL_CHUNK)).for_each(|(o, x)| {
                for (o, &v) in o.iter_mut().zip(x) {
                    *o = if v > zero { v } else { zero };
                }
            });
            Ok(T::to_cpu_storage_owned(out))
        }
        let out = match s.dtype() {
            DType::F32 => fwd::<f32>(s, l)?,
            DType::F64 => fwd::<f64>(s, l)?,
            other => return Err(candle_core::Error::UnsupportedDTypeForOp(other, "relu")),
        };
        Ok((out, l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(match x.dtype() {
            DType::F64 => self.bwd_typed::<f64>(x, g)?,
            _ => self.bwd_typed::<f32>(x, g)?,
        }))
    }
}

/// `max(x, 0)` with the backward rule `mode`.
pub fn relu(x: &Tensor, mode: ReluMode) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Relu(mode))
}
