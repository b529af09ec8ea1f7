//! The bf16 micro-kernel: AVX512_BF16's `vdpbf16ps`, a 12 x 32 tile (12 rows x 2 zmm).
//!
//! Operands are bf16 pairs: A packed in 12-row panels, for each pair of k steps 12 `u32`
//! (row r's values at k = 2p in the low half, 2p + 1 in the high half); B in 32-column
//! panels, for each pair 32 `u32` the same way. One `vdpbf16ps` multiplies 16 columns'
//! pairs by a broadcast pair of A and adds both products to 16 f32 accumulators: twice
//! the multiply-adds of an f32 FMA per instruction. Per k pair: 2 vector loads of B, 12
//! broadcasts, 24 dot products into 24 accumulators; bias, ReLU and the store are f32.
//!
//! Each accumulator lane adds `a0 b0 + a1 b1` to itself per pair, in an order fixed by K
//! alone, so results do not depend on how M and N are split. Products of two bf16 values
//! are exact in f32; the instruction treats denormal inputs and outputs as zero and
//! rounds each addition to nearest even (so sums may differ in the last bit from an FMA
//! chain over the same rounded operands, within the bound the tests derive).
//!
//! Partial tiles need no stack tile: A and B are padded with zero rows and columns, and
//! the store masks the columns and skips the rows outside the block.
#![allow(unsafe_code)]

use std::arch::x86_64::*;

use crate::base::mat::MatMut;
use crate::cpu::Isa;

/// Rows of an A panel.
pub const MR: usize = 12;
/// Columns of a B panel.
pub const NR: usize = 32;
/// Columns of the narrow tile (one vector of B): a last panel of at most this many.
pub const NARROW_NR: usize = 16;

/// Proof that this CPU runs AVX-512F/BW and AVX512_BF16: only [`Avx512Bf16::new`], after
/// the feature check, makes one.
#[derive(Clone, Copy, Debug)]
pub struct Avx512Bf16(());

impl Avx512Bf16 {
    /// The token, if the CPU has the instructions.
    pub fn new() -> Option<Self> {
        let has = Isa::Avx512.is_supported()
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512bf16");
        has.then_some(Avx512Bf16(()))
    }
}

/// How far ahead (in `u32` pairs, 1.5 KiB) a tile fetches its A panel: at batch 1 a
/// Winograd product reads each panel of its transformed weights once, from memory.
const A_AHEAD: usize = 384;

/// The tile body: the first `ROWS` rows of `kp` pairs of an A panel times the first
/// `NV` vectors of a B panel, stored through the epilogue into the `h x w` block at `c`.
///
/// # Safety
/// The CPU runs AVX-512F/BW and AVX512_BF16; `a` holds `kp * MR` values, `b` `kp * NR`;
/// `c` is valid for reads and writes of `h <= ROWS <= MR` rows of `w <= NV * 16` values
/// `ldc` apart; `rb` (if non-null) holds `h` values, `cb` (if non-null) `w`.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
unsafe fn tile<const NV: usize, const ROWS: usize>(
    kp: usize,
    a: *const u32,
    b: *const u32,
    (c, ldc): (*mut f32, usize),
    (h, w): (usize, usize),
    (rb, cb): (*const f32, *const f32),
    first: bool,
    relu: bool,
) {
    // SAFETY: every pointer range is as the contract promises; the features are enabled.
    unsafe {
        for i in 0..h {
            _mm_prefetch::<_MM_HINT_T0>(c.add(i * ldc).cast());
            _mm_prefetch::<_MM_HINT_T0>(c.add(i * ldc + w - 1).cast());
        }
        let mut acc = [[_mm512_setzero_ps(); NV]; ROWS];
        for p in 0..kp {
            let ap = a.add(p * MR);
            _mm_prefetch::<_MM_HINT_T0>(ap.wrapping_add(A_AHEAD).cast());
            let mut bv = [_mm512_setzero_si512(); NV];
            for v in 0..NV {
                bv[v] = _mm512_loadu_si512(b.add(p * NR + v * 16).cast());
            }
            for i in 0..ROWS {
                let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(*ap.add(i) as i32));
                for v in 0..NV {
                    acc[i][v] = _mm512_dpbf16_ps(acc[i][v], av, std::mem::transmute::<__m512i, __m512bh>(bv[v]));
                }
            }
        }
        // Each row's store written out with a constant index, so that the accumulators
        // stay in registers (a loop over `0..h` spilled them to a zeroed stack array).
        macro_rules! rows {
            ($($i:literal)*) => {$(
                // `h <= ROWS`: past the tile's rows it has returned.
                let Some(sums) = acc.get($i).filter(|_| $i < h) else {
                    return;
                };
                let row = c.add($i * ldc);
                for v in 0..NV {
                    let cols = w.saturating_sub(v * 16).min(16);
                    if cols == 0 {
                        break;
                    }
                    let mask = ((1u32 << cols) - 1) as __mmask16;
                    let p = row.add(v * 16);
                    let mut x = sums[v];
                    if first {
                        if !rb.is_null() {
                            x = _mm512_add_ps(x, _mm512_set1_ps(*rb.add($i)));
                        }
                        if !cb.is_null() {
                            x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(mask, cb.add(v * 16)));
                        }
                    } else {
                        x = _mm512_add_ps(_mm512_maskz_loadu_ps(mask, p), x);
                    }
                    if relu {
                        // max(0, x) returns the second operand when either is NaN: NaN is kept.
                        x = _mm512_max_ps(_mm512_setzero_ps(), x);
                    }
                    _mm512_mask_storeu_ps(p, mask, x);
                }
            )*};
        }
        const _: () = assert!(MR == 12, "one store per row below");
        rows!(0 1 2 3 4 5 6 7 8 9 10 11);
    }
}

/// How a tile is stored: the f32 kernels' [`super::Store`], its biases here one per row
/// and column of the block (`h` and `w` values).
pub use super::Store;

/// The `h x w` block of `c` at `(i, j)` from `kp` pairs of an A panel (`a`, `kp * MR`
/// values) and a B panel (`b`, `kp * NR` values): the narrow kernel when `w <=`
/// [`NARROW_NR`].
///
/// # Panics
/// If an operand is too short or the block lies outside `c` (caller bugs).
#[allow(clippy::too_many_arguments)]
pub fn run_tile(
    _: Avx512Bf16,
    kp: usize,
    a: &[u32],
    b: &[u32],
    c: &mut MatMut<'_>,
    (i, j): (usize, usize),
    (h, w): (usize, usize),
    st: &Store<'_>,
) {
    assert!((1..=MR).contains(&h) && (1..=NR).contains(&w), "bf16 tile {h}x{w}");
    assert!(a.len() >= kp * MR && b.len() >= kp * NR, "bf16 panels too short");
    let rb = st.row_bias.map_or(std::ptr::null(), |r| {
        assert!(r.len() >= h, "row bias too short");
        r.as_ptr()
    });
    let cb = st.col_bias.map_or(std::ptr::null(), |r| {
        assert!(r.len() >= w, "column bias too short");
        r.as_ptr()
    });
    let out = c.block_ptr(i, j, h, w);
    // SAFETY: the token proves the features; lengths, the block and biases were checked.
    unsafe {
        // A panel's last rows (M = 128: 10 panels and 8 rows) run only the rows they
        // have, as the int8 tile does.
        let (a, b, f, r) = (a.as_ptr(), b.as_ptr(), st.first, st.relu);
        match (w <= NARROW_NR, h) {
            (true, ..=4) => tile::<1, 4>(kp, a, b, out, (h, w), (rb, cb), f, r),
            (true, ..=8) => tile::<1, 8>(kp, a, b, out, (h, w), (rb, cb), f, r),
            (true, _) => tile::<1, MR>(kp, a, b, out, (h, w), (rb, cb), f, r),
            (false, ..=4) => tile::<2, 4>(kp, a, b, out, (h, w), (rb, cb), f, r),
            (false, ..=8) => tile::<2, 8>(kp, a, b, out, (h, w), (rb, cb), f, r),
            (false, _) => tile::<2, MR>(kp, a, b, out, (h, w), (rb, cb), f, r),
        }
    }
}

/// Lane order that turns `[lo0 .. lo15, hi0 .. hi15]` into `[lo0, hi0, lo1, hi1, ..]`.
const INTERLEAVE: [u16; 32] = {
    let mut idx = [0u16; 32];
    let mut j = 0;
    while j < 16 {
        idx[2 * j] = j as u16;
        idx[2 * j + 1] = 16 + j as u16;
        j += 1;
    }
    idx
};

/// # Safety
/// As [`pairs`] promises: `src` holds `rows * NR` values, `out` `rows.div_ceil(2) * NR`.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn pairs_raw(src: *const f32, rows: usize, out: *mut u32) {
    // SAFETY: ranges as the contract promises; the features are enabled.
    unsafe {
        let idx = _mm512_loadu_si512(INTERLEAVE.as_ptr().cast());
        for p in 0..rows.div_ceil(2) {
            for v in 0..NR / 16 {
                let lo = _mm512_loadu_ps(src.add(2 * p * NR + v * 16));
                let hi = if 2 * p + 1 < rows {
                    _mm512_loadu_ps(src.add((2 * p + 1) * NR + v * 16))
                } else {
                    _mm512_setzero_ps()
                };
                // Round to nearest even: the low half of the result from `lo`, the high from `hi`.
                let both: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
                _mm512_storeu_si512(out.add(p * NR + v * 16).cast(), _mm512_permutexvar_epi16(idx, both));
            }
        }
    }
}

/// One packed f32 B panel (`rows` k rows of [`NR`] values) as bf16 pairs: `rows / 2`
/// rounded up pairs of `NR` values (a last odd row paired with zero), each value rounded
/// to nearest even.
///
/// # Panics
/// If `src` or `out` is too short.
pub fn pairs(_: Avx512Bf16, src: &[f32], rows: usize, out: &mut [u32]) {
    assert!(src.len() >= rows * NR && out.len() >= rows.div_ceil(2) * NR, "bf16 pack too short");
    // SAFETY: the token proves the features; lengths checked above.
    unsafe { pairs_raw(src.as_ptr(), rows, out.as_mut_ptr()) }
}

/// bf16 values per vector of a GEMV (16 pairs).
const GEMV_STEP: usize = 32;
/// Rows of W per GEMV block.
const GEMV_ROWS: usize = 4;

use crate::gemm::pairs_len;

/// # Safety
/// As [`to_pairs`] checks: `x` holds `k` values, `out` [`pairs_len`]`(k)`.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn to_pairs_raw(x: *const f32, k: usize, out: *mut u32) {
    // SAFETY: ranges as the contract promises (masked lanes are not read); features enabled.
    unsafe {
        for c in 0..k.div_ceil(16) {
            let n = (k - 16 * c).min(16);
            let v = _mm512_maskz_loadu_ps(((1u32 << n) - 1) as __mmask16, x.add(16 * c));
            _mm256_storeu_si256(out.add(8 * c).cast(), std::mem::transmute::<__m256bh, __m256i>(_mm512_cvtneps_pbh(v)));
        }
        if k.div_ceil(16) % 2 == 1 {
            _mm256_storeu_si256(out.add(8 * k.div_ceil(16)).cast(), _mm256_setzero_si256());
        }
    }
}

/// A vector of `k` f32 values as bf16 (rounded to nearest even) in pairs: value `2p` in
/// the low half of `out[p]`, `2p + 1` in the high half (the order bf16 weights lie in
/// memory), zero-padded to [`pairs_len`]`(k)`.
///
/// # Panics
/// If `x` or `out` is too short.
pub fn to_pairs(_: Avx512Bf16, x: &[f32], k: usize, out: &mut [u32]) {
    assert!(x.len() >= k && out.len() >= pairs_len(k), "bf16 pairs too short");
    // SAFETY: the token proves the features; lengths checked above.
    unsafe { to_pairs_raw(x.as_ptr(), k, out.as_mut_ptr()) }
}

/// `R` rows of bf16 W (`k` values each, `ldw` apart) times `B` vectors of bf16 pairs
/// (`ldx` pairs apart): `out[b * ldo + r] = dot(W[r], x[b])`, one accumulator per (row,
/// vector), reduced pairwise across lanes, so a pair's result is the same whatever `R`
/// and `B`. The last partial vector of W is a masked load (zeros past `k`). With `next`
/// non-null it fetches lines `i` of the next block's rows into L2 for `i % phases ==
/// phase` while it computes (hints only).
///
/// # Safety
/// The CPU runs AVX-512F/BW and AVX512_BF16; `w` is valid for `R` rows of `k` values at
/// stride `ldw`, `x` for `B` rows of [`pairs_len`]`(k)` pairs at stride `ldx`, `out` for
/// writes at `b * ldo + r`.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
unsafe fn gemv_block<const R: usize, const B: usize>(
    k: usize,
    (w, ldw): (*const u16, usize),
    (x, ldx): (*const u32, usize),
    (out, ldo): (*mut f32, usize),
    (next, phase, phases): (*const u16, usize, usize),
) {
    // SAFETY: pointer ranges as the contract promises; features enabled.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); B]; R];
        let steps = k.div_ceil(GEMV_STEP);
        for s in 0..steps {
            let at = s * GEMV_STEP;
            let mask: __mmask32 = if at + GEMV_STEP <= k { !0 } else { (1u32 << (k - at)) - 1 };
            let mut xv = [_mm512_setzero_si512(); B];
            for b in 0..B {
                xv[b] = _mm512_loadu_si512(x.add(b * ldx + at / 2).cast());
            }
            if !next.is_null() && s % phases == phase {
                for r in 0..GEMV_ROWS {
                    _mm_prefetch::<_MM_HINT_T1>(next.wrapping_add(r * ldw + at).cast());
                }
            }
            for r in 0..R {
                let wv: __m512bh = std::mem::transmute(_mm512_maskz_loadu_epi16(mask, w.add(r * ldw + at).cast()));
                for b in 0..B {
                    acc[r][b] = _mm512_dpbf16_ps(acc[r][b], wv, std::mem::transmute::<__m512i, __m512bh>(xv[b]));
                }
            }
        }
        for r in 0..R {
            for b in 0..B {
                let mut lane = [0.0f32; 16];
                _mm512_storeu_ps(lane.as_mut_ptr(), acc[r][b]);
                let mut width = 16;
                while width > 1 {
                    width /= 2;
                    for l in 0..width {
                        lane[l] += lane[l + width];
                    }
                }
                *out.add(b * ldo + r) = lane[0];
            }
        }
    }
}

/// `y[b, r] = dot(W[r], x[b])` for the `y.cols()` rows of row-major bf16 `w` (`k`
/// columns) and the `y.rows()` vectors of `x` in bf16 pairs ([`to_pairs`], rows
/// [`pairs_len`]`(k)` apart): 4 rows x 4 vectors per pass (8 rows x 1 for a last
/// vector or few), so W streams from memory once
/// at any batch. `w` may hold more rows than `y` has columns: the first block after them
/// is fetched ahead (into L2, by the passes after the first over each block) for the
/// caller's next call.
///
/// # Panics
/// If `w` or `x` is too short (caller bugs).
pub fn gemv(_: Avx512Bf16, w: &[u16], k: usize, x: &[u32], y: &mut MatMut<'_>) {
    let (vecs, rows) = (y.rows(), y.cols());
    let ldx = pairs_len(k);
    assert!(w.len() >= rows * k && x.len() >= vecs * ldx, "bf16 gemv operands too short");
    let groups = vecs / 4 + vecs % 4;
    let mut r = 0;
    while r < rows {
        // One vector (or a last few): 8 rows, 8 streams from memory for the hardware
        // prefetchers, more of W in flight from one core than 4 rows keep.
        let rr = match rows - r {
            left if left >= 2 * GEMV_ROWS && vecs < 4 => 2 * GEMV_ROWS,
            left if left >= GEMV_ROWS => GEMV_ROWS,
            _ => 1,
        };
        let (mut b, mut group) = (0, 0);
        while b < vecs {
            let bb = if vecs - b >= 4 { 4 } else { 1 };
            let (out, ldy) = y.block_ptr(b, r, bb, rr);
            let next = if group > 0 && (r + rr + GEMV_ROWS) * k <= w.len() {
                (w[(r + rr) * k..].as_ptr(), group - 1, groups - 1)
            } else {
                (std::ptr::null(), 0, 1)
            };
            group += 1;
            // SAFETY: the token proves the features; rows r..r+rr of w and vectors b..b+bb
            // of x are in bounds (checked above), as is the output block (block_ptr checked
            // it); prefetched rows are inside w (checked here) and never fault anyway.
            unsafe {
                let (wp, xp) = ((w.as_ptr().add(r * k), k), (x.as_ptr().add(b * ldx), ldx));
                match (rr, bb) {
                    (8, _) => gemv_block::<8, 1>(k, wp, xp, (out, ldy), next),
                    (4, 4) => gemv_block::<4, 4>(k, wp, xp, (out, ldy), next),
                    (4, _) => gemv_block::<4, 1>(k, wp, xp, (out, ldy), next),
                    (_, 4) => gemv_block::<1, 4>(k, wp, xp, (out, ldy), next),
                    _ => gemv_block::<1, 1>(k, wp, xp, (out, ldy), next),
                }
            }
            b += bb;
        }
        r += rr;
    }
}
