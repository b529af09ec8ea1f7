//! AVX2 + FMA micro-kernel: `sgemm_6x16`, 6 rows x 2 ymm (16 columns).
//!
//! 12 ymm accumulators + 2 ymm of B + 1 broadcast = 15 of the 16 registers. Per k step:
//! 2 vector loads, 6 broadcasts, 12 FMAs.
#![allow(unsafe_code)]

use super::{fma_chains, gemv_block, tile, GemvFn, MicroKernel, PeakFn, Prefetch, TileFn};
use crate::gemm::blocking::BlockSizes;
use crate::simd::avx2::F32x8;
use crate::simd::Avx2;

/// Micro-tile rows.
pub const MR: usize = 6;
/// Micro-tile columns.
pub const NR: usize = 16;

/// The raw kernel; see `super::tile`.
///
/// # Safety
/// The CPU supports AVX2 and FMA, and the pointer contract of `super::tile` holds.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm_6x16(
    k: usize,
    a: *const f32,
    b: *const f32,
    b_stride: usize,
    c: *mut f32,
    ldc: usize,
    row_bias: *const f32,
    col_bias: *const f32,
    first: bool,
    relu: bool,
) {
    // SAFETY: forwarded contract.
    unsafe { tile::<F32x8, MR, 2>(k, a, MR, b, b_stride, c, ldc, row_bias, col_bias, first, relu) }
}

/// The narrow kernel: the left 8 columns of full-width panels; see `super::tile`.
///
/// # Safety
/// The CPU supports AVX2 and FMA, and the pointer contract of `super::tile` holds.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm_6x8(
    k: usize,
    a: *const f32,
    b: *const f32,
    b_stride: usize,
    c: *mut f32,
    ldc: usize,
    row_bias: *const f32,
    col_bias: *const f32,
    first: bool,
    relu: bool,
) {
    // SAFETY: forwarded contract.
    unsafe { tile::<F32x8, MR, 1>(k, a, MR, b, b_stride, c, ldc, row_bias, col_bias, first, relu) }
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

/// `gemv_f32`: 4 or 1 rows of W times 4 or 1 vectors; see `super::gemv_block`.
///
/// # Safety
/// The CPU supports AVX2 and FMA, and the pointer contract of `super::gemv_block` holds.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemv_f32(
    rows: usize,
    vecs: usize,
    k: usize,
    w: *const f32,
    ldw: usize,
    x: *const f32,
    ldx: usize,
    out: *mut f32,
    ldo: usize,
    next: Prefetch,
) {
    // SAFETY: forwarded contract.
    unsafe {
        match (rows, vecs) {
            (4, 4) => gemv_block::<F32x8, 4, 4>(k, w, ldw, x, ldx, out, ldo, next),
            (4, _) => gemv_block::<F32x8, 4, 1>(k, w, ldw, x, ldx, out, ldo, next),
            (_, 4) => gemv_block::<F32x8, 1, 4>(k, w, ldw, x, ldx, out, ldo, next),
            _ => gemv_block::<F32x8, 1, 1>(k, w, ldw, x, ldx, out, ldo, next),
        }
    }
}

// SAFETY: an `Avx2` value exists only after a successful feature check, so it proves
// the CPU runs every function below.
unsafe impl MicroKernel for Avx2 {
    /// KC 384: the 16 x KC micro-panel of B (24 KiB) in L1; MC 120: a 120 x KC block
    /// of A (180 KiB) in L2; NC 512: the KC x 512 packed block of B (768 KiB) in L2 (the
    /// same blocks as AVX-512's).
    const BLOCKS: BlockSizes = BlockSizes { mr: MR, nr: NR, mc: 120, kc: 384, nc: 512 };
    const NARROW_NR: usize = 8;
    const PEAK_FLOPS_PER_ITER: usize = 12 * 8 * 2;
    const TILE: TileFn = sgemm_6x16;
    const TILE_NARROW: TileFn = sgemm_6x8;
    const GEMV: GemvFn = gemv_f32;
    const FMA_PEAK: PeakFn = fma_peak;
}
