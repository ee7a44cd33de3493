//! The project's own CPU ops as candle custom ops: gemm-based convolution and linear layers,
//! max pooling and ReLU with selectable backward rules. Each backward computes only the
//! gradients autograd will use (an operand that does not track gradients gets none), so
//! explaining a model never pays for weight gradients. Every op is checked by f64 finite
//! differences in `tests/gradients.rs`.

pub mod conv;
pub mod gemm;
pub mod linear;
pub mod pool;
pub mod relu;

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

/// The values of a tensor as a flat vector of `T`.
pub(crate) fn values<T: WithDType>(t: &Tensor) -> Result<Vec<T>> {
    with_values(t, |v: &[T]| v.to_vec())
}
