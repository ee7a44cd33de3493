//! Runtime CPU feature checks for loops compiled a second time with wider vectors (the default
//! x86-64 target only has SSE2). The loops use fused multiply-adds (`f32::mul_add`), which the
//! wide builds turn into FMA instructions, so every path rounds the same way.

/// Whether the CPU has AVX2 and FMA.
pub(crate) fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the CPU has AVX-512F and FMA.
pub(crate) fn has_avx512_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}
