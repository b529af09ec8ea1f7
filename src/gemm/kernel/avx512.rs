//! AVX-512F micro-kernel: `sgemm_14x32`, 14 rows x 2 zmm (32 columns).
//!
//! 28 zmm accumulators + 2 zmm of B + 1 broadcast = 31 of the 32 registers. Per k step:
//! 2 vector loads, 14 scalar broadcasts, 28 FMAs; the FMA ports set the pace.
#![allow(unsafe_code)]

use super::{fma_chains, tile, MicroKernel};
use crate::gemm::blocking::BlockSizes;
use crate::simd::avx512::F32x16;
use crate::simd::Avx512;

/// Micro-tile rows.
pub const MR: usize = 14;
/// Micro-tile columns.
pub const NR: usize = 32;

/// The raw kernel; see [`super::tile`].
///
/// # Safety
/// The CPU supports AVX-512F, and the pointer contract of [`super::tile`] holds.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm_14x32(
    k: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    row_bias: *const f32,
    col_bias: *const f32,
    first: bool,
    relu: bool,
) {
    // SAFETY: forwarded contract.
    unsafe { tile::<F32x16, MR, 2>(k, a, b, c, ldc, row_bias, col_bias, first, relu) }
}

/// The FMA-peak probe: 16 independent chains of 16-lane FMAs.
///
/// # Safety
/// The CPU supports AVX-512F.
#[target_feature(enable = "avx512f")]
pub unsafe fn fma_peak(iters: usize) -> f32 {
    // SAFETY: forwarded contract.
    unsafe { fma_chains::<F32x16, 16>(iters) }
}

impl MicroKernel for Avx512 {
    /// KC: the 32 x KC micro-panel of B (32 KiB at 256) lives in L1 with room for A's
    /// stream; MC: a 126 x KC block of A (126 KiB) in L2; NC: KC x 768 of B (768 KiB) in L2.
    const BLOCKS: BlockSizes = BlockSizes { mr: MR, nr: NR, mc: 126, kc: 256, nc: 768 };

    const PEAK_FLOPS_PER_ITER: usize = 16 * 16 * 2;

    fn fma_loop(self, iters: usize) -> f32 {
        // SAFETY: `self` proves the ISA is available.
        unsafe { fma_peak(iters) }
    }

    #[inline]
    unsafe fn raw(
        self,
        k: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        rb: *const f32,
        cb: *const f32,
        first: bool,
        relu: bool,
    ) {
        // SAFETY: `self` proves AVX-512F; the caller upholds the pointer contract.
        unsafe { sgemm_14x32(k, a, b, c, ldc, rb, cb, first, relu) }
    }
}
