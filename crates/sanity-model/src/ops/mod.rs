//! The project's own CPU ops as candle custom ops: gemm-based convolution and linear layers,
//! max pooling and ReLU with selectable backward rules. Each backward computes only the
//! gradients autograd will use (an operand that does not track gradients gets none), so
//! explaining a model never pays for weight gradients. Every op is checked by f64 finite
//! differences in `tests/gradients.rs`.

/// Implements `CustomOp3` for an op with `fwd_typed::<T>(storages, layouts)` and
/// `bwd_typed::<T>(a, b, c, grad)` generic over f32/f64: the dtype dispatch, written once.
macro_rules! impl_typed_op3 {
    ($op:ty, $name:literal, $short:literal) => {
        impl candle_core::CustomOp3 for $op {
            fn name(&self) -> &'static str {
                $name
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
                    candle_core::DType::F32 => self.fwd_typed::<f32>([s1, s2, s3], [l1, l2, l3]),
                    candle_core::DType::F64 => self.fwd_typed::<f64>([s1, s2, s3], [l1, l2, l3]),
                    other => Err(candle_core::Error::UnsupportedDTypeForOp(other, $short)),
                }
            }

            fn bwd(
                &self,
                a: &Tensor,
                b: &Tensor,
                c: &Tensor,
                _res: &Tensor,
                grad: &Tensor,
            ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
                match a.dtype() {
                    candle_core::DType::F64 => self.bwd_typed::<f64>(a, b, c, grad),
                    _ => self.bwd_typed::<f32>(a, b, c, grad),
                }
            }
        }
    };
}

pub mod conv;
pub(crate) mod gemm;
pub mod linear;
pub(crate) mod nhwc;
pub(crate) mod nhwc_routed;
pub(crate) mod nhwc_windows;
pub(crate) mod partial_sums;
pub mod pool;
pub mod relu;
pub(crate) mod simd;

pub use conv::conv2d;
pub use linear::linear;
pub use pool::MaxPool2d;
pub use relu::{ReluMode, relu};

use candle_core::{CpuStorage, Layout, Result, Storage, Tensor, WithDType};

/// The contiguous values of a storage under `layout`.
pub(crate) fn contiguous_slice<'a, T: WithDType>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [T]> {
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("sanity ops need contiguous inputs".into()))?;
    Ok(&storage.as_slice::<T>()?[start..end])
}

/// Calls `f` on the values of `t` (made contiguous, CPU) without copying them out.
pub(crate) fn with_values<T: WithDType, R>(t: &Tensor, f: impl FnOnce(&[T]) -> R) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(cpu) => Ok(f(contiguous_slice::<T>(cpu, layout)?)),
        _ => Err(candle_core::Error::Msg("sanity ops run on the CPU only".into())),
    }
}
