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

    /// One past the largest index the view touches (0 for an empty view); None when that does
    /// not fit a `usize` (no slice is that long).
    fn extent(&self) -> Option<usize> {
        if self.rows == 0 || self.cols == 0 {
            return Some(0);
        }
        let last_row = (self.rows - 1).checked_mul(self.rs)?;
        let last_col = (self.cols - 1).checked_mul(self.cs)?;
        last_row.checked_add(last_col)?.checked_add(1)
    }

    /// Whether no two elements of the view share an index: one stride steps over the whole
    /// extent of the other (row-major, column-major or padded), or the dimension it steps
    /// through has one element. A destination must be one, or parallel tiles would write one
    /// element twice.
    fn is_injective(&self) -> bool {
        let spans = |n: usize, stride: usize| (n.saturating_sub(1)).checked_mul(stride).and_then(|s| s.checked_add(1));
        let rows_apart = self.rows <= 1 || spans(self.cols, self.cs).is_some_and(|span| self.rs >= span);
        let cols_apart = self.cols <= 1 || spans(self.rows, self.rs).is_some_and(|span| self.cs >= span);
        let cols_distinct = self.cols <= 1 || self.cs >= 1;
        let rows_distinct = self.rows <= 1 || self.rs >= 1;
        (rows_apart && cols_distinct) || (cols_apart && rows_distinct)
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
/// When the shapes disagree, a view reaches outside its slice (or its extent overflows), or
/// the destination view has two elements at one index.
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
    let inside = |l: Layout2, len: usize| l.extent().is_some_and(|extent| extent <= len);
    assert!(inside(dst_l, dst.len()) && inside(a_l, a.len()) && inside(b_l, b.len()), "matmul: view out of bounds");
    assert!(dst_l.is_injective(), "matmul: the destination view has two elements at one index");
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
    // inside its slice above, without overflow; no two destination elements share an index, so
    // parallel tiles never write one place twice; `dst` is borrowed mutably and cannot alias
    // `a` or `b`.
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
    fn views_that_overflow_or_overlap_themselves_are_refused() {
        let l = |rows, cols, rs, cs| Layout2 { rows, cols, rs, cs };
        assert_eq!(l(2, 3, 3, 1).extent(), Some(6));
        assert_eq!(l(3, 2, usize::MAX / 2, 1).extent(), None, "(rows − 1)·rs overflows");
        for (view, injective) in [
            (l(2, 3, 3, 1), true),  // row-major
            (l(2, 3, 1, 2), true),  // column-major
            (l(2, 3, 5, 1), true),  // padded rows
            (l(1, 3, 0, 1), true),  // one row: its stride is never used
            (l(2, 3, 1, 1), false), // rows overlap
            (l(2, 3, 0, 1), false), // every row at one place
            (l(2, 3, 3, 0), false), // every column at one place
        ] {
            assert_eq!(view.is_injective(), injective, "{view:?}");
        }
        let a = [1.0f64; 6];
        let b = [1.0f64; 6];
        let overlapping = std::panic::catch_unwind(|| {
            let mut dst = [0.0f64; 8];
            matmul(&mut dst, l(2, 2, 1, 1), &a, Layout2::row_major(2, 3), &b, Layout2::row_major(3, 2), false, 2);
        });
        assert!(overlapping.is_err(), "a destination with two elements at one index is refused");
        let huge = std::panic::catch_unwind(|| {
            let mut dst = [0.0f64; 8];
            matmul(
                &mut dst,
                l(2, 2, usize::MAX / 2 + 1, 1),
                &a,
                Layout2::row_major(2, 3),
                &b,
                Layout2::row_major(3, 2),
                false,
                1,
            );
        });
        assert!(huge.is_err(), "an extent that wraps around is not taken as inside the slice");
    }

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
