//! A bounds-checked wrapper around the `gemm` crate (the matrix product candle itself uses),
//! so that the project's ops can choose their own layouts and skip work autograd would do.

#![allow(unsafe_code)]

use gemm::Parallelism;
use std::cell::RefCell;

/// A strided matrix view: element `(i, j)` is at `offset + i·rs + j·cs`.
#[derive(Debug, Clone, Copy)]
pub struct Layout2 {
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Row stride.
    pub rs: usize,
    /// Column stride.
    pub cs: usize,
}

impl Layout2 {
    /// A contiguous row-major `rows x cols` matrix.
    pub fn row_major(rows: usize, cols: usize) -> Self {
        Self { rows, cols, rs: cols, cs: 1 }
    }

    /// The transpose of this view (no data moves).
    pub fn t(self) -> Self {
        Self { rows: self.cols, cols: self.rows, rs: self.cs, cs: self.rs }
    }

    /// One past the largest index the view touches (0 for an empty view).
    fn extent(&self) -> usize {
        if self.rows == 0 || self.cols == 0 { 0 } else { (self.rows - 1) * self.rs + (self.cols - 1) * self.cs + 1 }
    }
}

/// Element types the products support.
pub trait GemmScalar: Copy + Send + Sync + 'static {
    /// 1.
    const ONE: Self;
    /// 0.
    const ZERO: Self;

    /// Calls `f` with a scratch buffer of `len` values (contents unspecified) that this thread
    /// keeps between calls, so hot loops do not allocate and zero large buffers each time.
    /// `slot` (0..SCRATCH_SLOTS) lets one caller hold several buffers at once. If the slot is
    /// already in use on this thread (a rayon job stolen while waiting), a fresh buffer is used.
    fn with_scratch<R>(slot: usize, len: usize, f: impl FnOnce(&mut [Self]) -> R) -> R;
}

/// Scratch buffers per thread and type.
pub const SCRATCH_SLOTS: usize = 3;

type Slots<T> = [RefCell<Vec<T>>; SCRATCH_SLOTS];

thread_local! {
    static SCRATCH_F32: Slots<f32> = Default::default();
    static SCRATCH_F64: Slots<f64> = Default::default();
}

fn scratch_in<T: Copy, R>(slots: &Slots<T>, zero: T, slot: usize, len: usize, f: impl FnOnce(&mut [T]) -> R) -> R {
    match slots[slot].try_borrow_mut() {
        Ok(mut buffer) => {
            if buffer.len() < len {
                buffer.resize(len, zero);
            }
            f(&mut buffer[..len])
        }
        Err(_) => f(&mut vec![zero; len]),
    }
}

impl GemmScalar for f32 {
    const ONE: Self = 1.0;
    const ZERO: Self = 0.0;

    fn with_scratch<R>(slot: usize, len: usize, f: impl FnOnce(&mut [Self]) -> R) -> R {
        SCRATCH_F32.with(|slots| scratch_in(slots, 0.0, slot, len, f))
    }
}

impl GemmScalar for f64 {
    const ONE: Self = 1.0;
    const ZERO: Self = 0.0;

    fn with_scratch<R>(slot: usize, len: usize, f: impl FnOnce(&mut [Self]) -> R) -> R {
        SCRATCH_F64.with(|slots| scratch_in(slots, 0.0, slot, len, f))
    }
}

/// `dst = (accumulate ? dst : 0) + a × b`, with `a` `[m, k]`, `b` `[k, n]`, `dst` `[m, n]`.
/// `threads > 1` lets gemm split the output tiles over rayon (the reduction over `k` is never
/// split, so results do not depend on the thread count).
///
/// # Panics
/// When the shapes disagree or a view reaches outside its slice.
#[allow(clippy::too_many_arguments)]
pub fn matmul<T: GemmScalar>(
    dst: &mut [T],
    dst_l: Layout2,
    a: &[T],
    a_l: Layout2,
    b: &[T],
    b_l: Layout2,
    accumulate: bool,
    threads: usize,
) {
    assert_eq!((a_l.rows, b_l.cols), (dst_l.rows, dst_l.cols), "matmul: output shape");
    assert_eq!(a_l.cols, b_l.rows, "matmul: inner dimensions");
    assert!(
        dst_l.extent() <= dst.len() && a_l.extent() <= a.len() && b_l.extent() <= b.len(),
        "matmul: view out of bounds"
    );
    if dst_l.rows == 0 || dst_l.cols == 0 {
        return;
    }
    if a_l.cols == 0 {
        if !accumulate {
            for i in 0..dst_l.rows {
                for j in 0..dst_l.cols {
                    dst[i * dst_l.rs + j * dst_l.cs] = T::ZERO;
                }
            }
        }
        return;
    }
    let parallelism = if threads > 1 { Parallelism::Rayon(threads) } else { Parallelism::None };
    // SAFETY: every index the product touches, (rows − 1)·rs + (cols − 1)·cs, was checked to lie
    // inside its slice above; `dst` is borrowed mutably and cannot alias `a` or `b`.
    unsafe {
        gemm::gemm(
            dst_l.rows,
            dst_l.cols,
            a_l.cols,
            dst.as_mut_ptr(),
            dst_l.cs as isize,
            dst_l.rs as isize,
            accumulate,
            a.as_ptr(),
            a_l.cs as isize,
            a_l.rs as isize,
            b.as_ptr(),
            b_l.cs as isize,
            b_l.rs as isize,
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_products_match_a_direct_loop() {
        // a [2, 3] row-major, b given as the transpose of a [2, 3] row-major buffer.
        let a = [1.0f64, 2., 3., 4., 5., 6.];
        let bt = [1.0f64, 0., -1., 2., 1., 0.];
        let mut c = [0.0f64; 4];
        matmul(
            &mut c,
            Layout2::row_major(2, 2),
            &a,
            Layout2::row_major(2, 3),
            &bt,
            Layout2::row_major(2, 3).t(),
            false,
            1,
        );
        assert_eq!(c, [-2., 4., -2., 13.]);
        // Accumulate into a column-major destination.
        let mut d = [1.0f64; 4];
        matmul(
            &mut d,
            Layout2::row_major(2, 2).t(),
            &a,
            Layout2::row_major(2, 3),
            &bt,
            Layout2::row_major(2, 3).t(),
            true,
            2,
        );
        assert_eq!(d, [-1., -1., 5., 14.]);
    }
}
