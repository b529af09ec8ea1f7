//! NEON micro-kernel: `sgemm_8x12`, 8 rows x 3 q registers (12 columns).
//!
//! 24 accumulators + 3 of B + 1 broadcast = 28 of the 32 registers. Per k step: 3
//! vector loads, 8 broadcasts, 24 FMAs.
#![allow(unsafe_code)]

use super::{fma_chains, gemv_block, tile, GemvFn, MicroKernel, PeakFn, Prefetch, TileFn};
use crate::gemm::blocking::BlockSizes;
use crate::simd::neon::F32x4;
use crate::simd::Neon;

/// Micro-tile rows.
pub const MR: usize = 8;
/// Micro-tile columns.
pub const NR: usize = 12;

/// The raw kernel; see `super::tile`.
///
/// # Safety
/// The CPU supports NEON, and the pointer contract of `super::tile` holds.
#[target_feature(enable = "neon")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm_8x12(
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
    unsafe { tile::<F32x4, MR, 3>(k, a, MR, b, b_stride, c, ldc, row_bias, col_bias, first, relu) }
}

/// The narrow kernel: the left 4 columns of full-width panels; see `super::tile`.
///
/// # Safety
/// The CPU supports NEON, and the pointer contract of `super::tile` holds.
#[target_feature(enable = "neon")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm_8x4(
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
    unsafe { tile::<F32x4, MR, 1>(k, a, MR, b, b_stride, c, ldc, row_bias, col_bias, first, relu) }
}

/// The FMA-peak probe: 24 independent chains of 4-lane FMAs.
///
/// # Safety
/// The CPU supports NEON.
#[target_feature(enable = "neon")]
pub unsafe fn fma_peak(iters: usize) -> f32 {
    // SAFETY: forwarded contract.
    unsafe { fma_chains::<F32x4, 24>(iters) }
}

/// `gemv_f32`: 4 or 1 rows of W times 4 or 1 vectors; see `super::gemv_block`.
///
/// # Safety
/// The CPU supports NEON, and the pointer contract of `super::gemv_block` holds.
#[target_feature(enable = "neon")]
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
            (4, 4) => gemv_block::<F32x4, 4, 4>(k, w, ldw, x, ldx, out, ldo, next),
            (4, _) => gemv_block::<F32x4, 4, 1>(k, w, ldw, x, ldx, out, ldo, next),
            (_, 4) => gemv_block::<F32x4, 1, 4>(k, w, ldw, x, ldx, out, ldo, next),
            _ => gemv_block::<F32x4, 1, 1>(k, w, ldw, x, ldx, out, ldo, next),
        }
    }
}

// SAFETY: a `Neon` value exists only after a successful feature check, so it proves
// the CPU runs every function below.
unsafe impl MicroKernel for Neon {
    /// KC: 12 x KC of B (12 KiB at 256) in L1; MC: 128 x KC of A (128 KiB) in L2;
    /// NC: KC x 480 of B (480 KiB) in L2.
    const BLOCKS: BlockSizes = BlockSizes { mr: MR, nr: NR, mc: 128, kc: 256, nc: 480 };
    const NARROW_NR: usize = 4;
    const PEAK_FLOPS_PER_ITER: usize = 24 * 4 * 2;
    const TILE: TileFn = sgemm_8x12;
    const TILE_NARROW: TileFn = sgemm_8x4;
    const GEMV: GemvFn = gemv_f32;
    const FMA_PEAK: PeakFn = fma_peak;
}
