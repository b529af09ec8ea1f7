//! AVX-512F micro-kernel: `sgemm_12x32`, 12 rows x 2 zmm (32 columns).
//!
//! 24 zmm accumulators + 2 zmm of B + 1 broadcast = 27 of the 32 registers. Per k step:
//! 2 vector loads, 12 scalar broadcasts, 24 FMAs; the FMA ports set the pace.
//!
//! Why 12 rows and not the 14 that would fill the register file: AlexNet's M values
//! (96, 128 per group, 384, 192, 128) are multiples of 12 or close to them, where 14
//! wastes up to 9% of every tile on zero rows (M = 128: 10 panels of 14 = 140 rows).
//! Measured on the target machine (Zen 4, one thread), 12x32 beat 14x32, 16x16 and 8x48
//! on the conv shapes taken together and on the 1024 square.
#![allow(unsafe_code)]

use super::{columns, fma_chains, gemv_block, tile, ColumnsFn, GemvFn, MicroKernel, PeakFn, Prefetch, TileFn};
use crate::gemm::blocking::BlockSizes;
use crate::simd::avx512::F32x16;
use crate::simd::Avx512;

/// Micro-tile rows.
pub const MR: usize = 12;
/// Micro-tile columns.
pub const NR: usize = 32;

/// The raw kernel; see `super::tile`.
///
/// # Safety
/// The CPU supports AVX-512F, and the pointer contract of `super::tile` holds.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm_12x32(
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
    unsafe { tile::<F32x16, MR, 2>(k, a, MR, b, b_stride, c, ldc, row_bias, col_bias, first, relu) }
}

/// The narrow kernel: the left 16 columns of full-width panels; see `super::tile`.
///
/// # Safety
/// The CPU supports AVX-512F, and the pointer contract of `super::tile` holds.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm_12x16(
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
    unsafe { tile::<F32x16, MR, 1>(k, a, MR, b, b_stride, c, ldc, row_bias, col_bias, first, relu) }
}

/// Rows of the short kernels.
pub const SHORT_MR: usize = 8;

/// The short kernel: the top 8 rows of full-height A panels, 32 columns; see
/// `super::tile`. M = 128 (conv2 and conv5 per group) ends in a panel of 8 rows, which
/// the full kernel would compute as 12.
///
/// # Safety
/// The CPU supports AVX-512F, and the pointer contract of `super::tile` holds.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm_8x32(
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
    unsafe { tile::<F32x16, SHORT_MR, 2>(k, a, MR, b, b_stride, c, ldc, row_bias, col_bias, first, relu) }
}

/// The short and narrow kernel: 8 rows x 16 columns; see `super::tile`.
///
/// # Safety
/// The CPU supports AVX-512F, and the pointer contract of `super::tile` holds.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm_8x16(
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
    unsafe { tile::<F32x16, SHORT_MR, 1>(k, a, MR, b, b_stride, c, ldc, row_bias, col_bias, first, relu) }
}

/// The edge kernel: up to 4 columns, the 12 rows of A in one zmm; see `super::columns`.
///
/// # Safety
/// The CPU supports AVX-512F, and the pointer contract of `super::columns` holds.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm_12xcols(
    k: usize,
    a: *const f32,
    b: *const f32,
    b_stride: usize,
    hw: (usize, usize),
    c: *mut f32,
    ldc: usize,
    row_bias: *const f32,
    col_bias: *const f32,
    first: bool,
    relu: bool,
) {
    // SAFETY: forwarded contract.
    unsafe { columns::<F32x16, MR>(k, a, MR, b, b_stride, hw, c, ldc, row_bias, col_bias, first, relu) }
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

/// `gemv_f32`: 4 or 1 rows of W times 4 or 1 vectors; see `super::gemv_block`.
///
/// # Safety
/// The CPU supports AVX-512F, and the pointer contract of `super::gemv_block` holds.
#[target_feature(enable = "avx512f")]
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
            (4, 4) => gemv_block::<F32x16, 4, 4>(k, w, ldw, x, ldx, out, ldo, next),
            (4, _) => gemv_block::<F32x16, 4, 1>(k, w, ldw, x, ldx, out, ldo, next),
            (_, 4) => gemv_block::<F32x16, 1, 4>(k, w, ldw, x, ldx, out, ldo, next),
            _ => gemv_block::<F32x16, 1, 1>(k, w, ldw, x, ldx, out, ldo, next),
        }
    }
}

// SAFETY: an `Avx512` value exists only after a successful feature check, so it proves
// the CPU runs every function below.
unsafe impl MicroKernel for Avx512 {
    /// KC 384: the 32 x KC micro-panel of B (48 KiB) lives in L1/L2 edge, A's 12 x KC
    /// micro-panels stream from L2; MC 120: a 120 x KC block of A (180 KiB) in L2;
    /// NC 512: the KC x 512 packed block of B (768 KiB) in L2. Chosen by measurement
    /// (`examples/gemm_shapes`) among KC 192..384, MC 96..240, NC 512..2048.
    const BLOCKS: BlockSizes = BlockSizes { mr: MR, nr: NR, mc: 120, kc: 384, nc: 512 };
    const NARROW_NR: usize = 16;
    const PEAK_FLOPS_PER_ITER: usize = 16 * 16 * 2;
    const TILE: TileFn = sgemm_12x32;
    const TILE_NARROW: TileFn = sgemm_12x16;
    const SHORT_MR: usize = SHORT_MR;
    const TILE_SHORT: TileFn = sgemm_8x32;
    const TILE_SHORT_NARROW: TileFn = sgemm_8x16;
    const B_IN_PLACE: bool = true;
    const COLUMNS: Option<ColumnsFn> = Some(sgemm_12xcols);
    const GEMV: GemvFn = gemv_f32;
    const FMA_PEAK: PeakFn = fma_peak;
}
