//! AVX2 + FMA micro-kernel: `sgemm_6x16`, 6 rows x 2 ymm (16 columns).
//!
//! 12 ymm accumulators + 2 ymm of B + 1 broadcast = 15 of the 16 registers. Per k step:
//! 2 vector loads, 6 broadcasts, 12 FMAs.
#![allow(unsafe_code)]

use super::{fma_chains, gemv_rows, tile, MicroKernel};
use crate::gemm::blocking::BlockSizes;
use crate::simd::avx2::F32x8;
use crate::simd::Avx2;

/// Micro-tile rows.
pub const MR: usize = 6;
/// Micro-tile columns.
pub const NR: usize = 16;

/// The raw kernel; see [`super::tile`].
///
/// # Safety
/// The CPU supports AVX2 and FMA, and the pointer contract of [`super::tile`] holds.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm_6x16(
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
    unsafe { tile::<F32x8, MR, 2>(k, a, b, c, ldc, row_bias, col_bias, first, relu) }
}

/// The FMA-peak probe: 12 independent chains of 8-lane FMAs.
///
/// # Safety
/// The CPU supports AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn fma_peak(iters: usize) -> f32 {
    // SAFETY: forwarded contract.
    unsafe { fma_chains::<F32x8, 12>(iters) }
}

/// GEMV over 4 rows or 1 row (`rows`); see [`super::gemv_rows`].
///
/// # Safety
/// The CPU supports AVX2 and FMA, and the pointer contract of [`super::gemv_rows`] holds.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn gemv_f32(rows: usize, k: usize, w: *const f32, ldw: usize, x: *const f32, out: *mut f32) {
    // SAFETY: forwarded contract.
    unsafe {
        if rows == 4 {
            gemv_rows::<F32x8, 4>(k, w, ldw, x, out)
        } else {
            gemv_rows::<F32x8, 1>(k, w, ldw, x, out)
        }
    }
}

impl MicroKernel for Avx2 {
    /// KC: the 16 x KC micro-panel of B (16 KiB at 256) in L1; MC: 120 x KC of A
    /// (120 KiB) in L2; NC: KC x 1024 of B (1 MiB) in L2.
    const BLOCKS: BlockSizes = BlockSizes { mr: MR, nr: NR, mc: 120, kc: 384, nc: 512 };

    const PEAK_FLOPS_PER_ITER: usize = 12 * 8 * 2;

    fn fma_loop(self, iters: usize) -> f32 {
        // SAFETY: `self` proves the ISA is available.
        unsafe { fma_peak(iters) }
    }

    unsafe fn gemv_raw(self, rows: usize, k: usize, w: *const f32, ldw: usize, x: *const f32, out: *mut f32) {
        // SAFETY: `self` proves the ISA; the caller upholds the pointer contract.
        unsafe { gemv_f32(rows, k, w, ldw, x, out) }
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
        // SAFETY: `self` proves AVX2 + FMA; the caller upholds the pointer contract.
        unsafe { sgemm_6x16(k, a, b, c, ldc, rb, cb, first, relu) }
    }
}
