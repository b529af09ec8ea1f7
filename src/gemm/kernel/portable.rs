//! Portable micro-kernel on `wide`: `sgemm_4x8`, 4 rows x 1 eight-lane vector.
//!
//! Sized for the worst case it must run well on, SSE2's 16 xmm registers (a `wide`
//! f32x8 is two xmm there): 8 for accumulators, 2 for B, 2 for the broadcast.
#![allow(unsafe_code)]

use super::{fma_chains, gemv_block, tile, GemvFn, MicroKernel, PeakFn, Prefetch, TileFn};
use crate::gemm::blocking::BlockSizes;
use crate::simd::portable::F32x8;

/// Micro-tile rows.
pub const MR: usize = 4;
/// Micro-tile columns.
pub const NR: usize = 8;

/// The portable kernel family; needs no CPU check.
#[derive(Clone, Copy, Debug, Default)]
pub struct Portable;

/// The raw kernel; see `super::tile`.
///
/// # Safety
/// The pointer contract of `super::tile` holds.
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm_4x8(
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
    // SAFETY: forwarded contract; `wide` needs no runtime feature.
    unsafe { tile::<F32x8, MR, 1>(k, a, MR, b, b_stride, c, ldc, row_bias, col_bias, first, relu) }
}

/// The FMA-peak probe: 6 independent chains of 8-lane FMAs.
///
/// # Safety
/// None beyond the function being `unsafe` for uniformity with the other ISAs.
pub unsafe fn fma_peak(iters: usize) -> f32 {
    // SAFETY: forwarded contract.
    unsafe { fma_chains::<F32x8, 6>(iters) }
}

/// `gemv_f32`: 4 or 1 rows of W times 4 or 1 vectors; see `super::gemv_block`.
///
/// # Safety
/// The pointer contract of `super::gemv_block` holds.
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

// SAFETY: the portable kernels use only instructions the build targets, so every CPU
// that runs this binary runs them.
unsafe impl MicroKernel for Portable {
    /// KC: 8 x KC of B (8 KiB at 256) in L1; MC: 128 x KC of A in L2; NC: KC x 512 in L2.
    const BLOCKS: BlockSizes = BlockSizes { mr: MR, nr: NR, mc: 128, kc: 256, nc: 512 };
    /// No narrower tile: NR is a single vector.
    const NARROW_NR: usize = NR;
    const PEAK_FLOPS_PER_ITER: usize = 6 * 8 * 2;
    const TILE: TileFn = sgemm_4x8;
    const TILE_NARROW: TileFn = sgemm_4x8;
    const GEMV: GemvFn = gemv_f32;
    const FMA_PEAK: PeakFn = fma_peak;
}
