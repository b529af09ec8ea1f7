//! The GEMV kernel behind every linear layer: a block of rows of W times a few vectors
//! at once, streaming W from memory once per call at any batch size.
#![allow(unsafe_code)]

use crate::base::mat::MatMut;
use crate::cpu::Cpu;
use crate::simd::{prefetch_l2, Job, Simd, SimdF32};

/// Rows of W per block.
const GEMV_ROWS: usize = 4;

/// An element type W may be stored as: `f32`, or bfloat16 as its `u16` bit pattern. The
/// kernel widens each to f32 as it loads it (exactly), so the arithmetic after the load
/// is the same for both and the memory stream is what bf16 halves.
pub trait Weight: bytemuck::Pod + Send + Sync {
    /// Elements per 64-byte cache line.
    const LINE: usize;
    /// `V::LANES` elements from `p`, as f32.
    ///
    /// # Safety
    /// The CPU supports `V`'s instructions; `p` is valid for `V::LANES` reads.
    unsafe fn load<V: SimdF32>(p: *const Self) -> V;
    /// The element as f32.
    fn value(self) -> f32;
}

impl Weight for f32 {
    const LINE: usize = 16;
    #[inline(always)]
    unsafe fn load<V: SimdF32>(p: *const f32) -> V {
        // SAFETY: forwarded contract.
        unsafe { V::load(p) }
    }
    #[inline(always)]
    fn value(self) -> f32 {
        self
    }
}

impl Weight for u16 {
    const LINE: usize = 32;
    #[inline(always)]
    unsafe fn load<V: SimdF32>(p: *const u16) -> V {
        // SAFETY: forwarded contract.
        unsafe { V::load_bf16(p) }
    }
    #[inline(always)]
    fn value(self) -> f32 {
        f32::from_bits((self as u32) << 16)
    }
}

/// What a GEMV pass fetches ahead into L2. With several groups of vectors per block of
/// rows (batch > 4), the first group reads the block from memory and the others from
/// L2; left alone, the memory stream stops while they compute and the next block's first
/// group then waits on it. So each later group fetches its share of the next block's
/// lines (line `i` by the group with `i % phases == phase`) while it computes. Into L2,
/// not L1: in L1 the lines would evict the vectors the other groups use.
#[derive(Clone, Copy, Debug)]
struct Prefetch<E> {
    /// The next block's first row (`GEMV_ROWS` rows at W's stride), or null: nothing.
    rows: *const E,
    /// Which share of the lines this pass fetches.
    phase: usize,
    /// Shares the lines are dealt into (at least 1).
    phases: usize,
}

impl<E> Prefetch<E> {
    /// Fetch nothing.
    const NONE: Prefetch<E> = Prefetch { rows: std::ptr::null(), phase: 0, phases: 1 };
}

/// `R` rows of W times `B` vectors at once: `out[b * ldo + r] = dot(W[r], x[b])`. Each
/// k step loads R weight vectors and B input vectors and does R*B FMAs, so W streams from
/// memory once however many vectors there are. Every (row, vector) pair keeps one vector
/// accumulator, reduced pairwise across lanes, then the scalar tail of K is added: the
/// arithmetic of a pair is the same whatever R and B, so grouping rows or vectors
/// differently (another thread split, another batch) cannot change a result. Along the
/// way it fetches its share of `next` into L2 (hints only: they change no result).
///
/// # Safety
/// The CPU supports `V`'s instructions; `w` is valid for reads of `R` rows of `k` values
/// at stride `ldw`, `x` for `B` rows of `k` at stride `ldx`, `out` for writes at
/// `b * ldo + r` for `b < B`, `r < R`. `next` may point anywhere (it is only prefetched).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn gemv_block<V: SimdF32, E: Weight, const R: usize, const B: usize>(
    k: usize,
    w: *const E,
    ldw: usize,
    x: *const f32,
    ldx: usize,
    out: *mut f32,
    ldo: usize,
    next: Prefetch<E>,
) {
    let lanes = V::LANES;
    // SAFETY: pointer ranges as promised by the caller (this fn's contract).
    unsafe {
        let mut acc = [[V::zero(); B]; R];
        // The next 64-byte line (in f32 offsets along a row) whose turn it is to be fetched.
        let mut fetch_at = if next.rows.is_null() { usize::MAX } else { E::LINE * next.phase };
        let mut p = 0;
        while p + lanes <= k {
            let mut xv = [V::zero(); B];
            for (b, v) in xv.iter_mut().enumerate() {
                *v = V::load(x.add(b * ldx + p));
            }
            if p == fetch_at {
                for r in 0..GEMV_ROWS {
                    prefetch_l2(next.rows.wrapping_add(r * ldw + p).cast());
                }
                fetch_at += E::LINE * next.phases;
            }
            for (r, row) in acc.iter_mut().enumerate() {
                let wv: V = E::load(w.add(r * ldw + p));
                for (a, &xb) in row.iter_mut().zip(&xv) {
                    *a = wv.mul_add(xb, *a);
                }
            }
            p += lanes;
        }
        for (r, row) in acc.into_iter().enumerate() {
            for (b, a) in row.into_iter().enumerate() {
                let mut lane = [0.0f32; 64];
                a.store(lane.as_mut_ptr());
                let mut width = lanes;
                while width > 1 {
                    width /= 2;
                    for l in 0..width {
                        lane[l] += lane[l + width];
                    }
                }
                let mut sum = lane[0];
                for q in p..k {
                    sum += (*w.add(r * ldw + q)).value() * *x.add(b * ldx + q);
                }
                *out.add(b * ldo + r) = sum;
            }
        }
    }
}

/// `y[b, r] = dot(W[r], x[b])` for the `y.cols()` rows of row-major `w` (`k` columns) and
/// the `y.rows()` vectors of row-major `x` (`k` columns each): a GEMV for one vector, a
/// weight-streaming GEMM for a few. `w` may hold more rows than `y` has columns: the rows
/// after are not computed, but the first block of them is fetched ahead (see
/// `Prefetch`) for the caller's next call.
///
/// # Panics
/// If `w` or `x` is too short (caller bugs).
pub fn gemv<E: Weight>(cpu: Cpu, w: &[E], k: usize, x: &[f32], y: &mut MatMut<'_>) {
    let (vecs, rows) = (y.rows(), y.cols());
    assert!(w.len() >= rows * k && x.len() >= vecs * k, "gemv operands too short");
    cpu.vectorize(Gemv { w, k, x, y });
}

/// [`gemv`]'s operands, checked, as a [`Job`].
struct Gemv<'a, 'y, 'v, E> {
    w: &'a [E],
    k: usize,
    x: &'a [f32],
    y: &'y mut MatMut<'v>,
}

impl<E: Weight> Job for Gemv<'_, '_, '_, E> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, _: S) {
        let Gemv { w, k, x, y } = self;
        let (vecs, rows) = (y.rows(), y.cols());
        let groups = vecs / 4 + vecs % 4;
        let mut r = 0;
        while r < rows {
            let rr = if rows - r >= GEMV_ROWS { GEMV_ROWS } else { 1 };
            let (mut b, mut group) = (0, 0);
            while b < vecs {
                let bb = if vecs - b >= 4 { 4 } else { 1 };
                let (out, ldy) = y.block_ptr(b, r, bb, rr);
                // Groups after the first fetch the next block (which may lie past `rows`,
                // in the caller's next task) while they compute.
                let next = if group > 0 && (r + rr + GEMV_ROWS) * k <= w.len() {
                    Prefetch { rows: w[(r + rr) * k..].as_ptr(), phase: group - 1, phases: groups - 1 }
                } else {
                    Prefetch::NONE
                };
                group += 1;
                // SAFETY: rows r..r+rr of w and vectors b..b+bb of x are in bounds (checked
                // by `gemv`), as is the output block (block_ptr checked it); the prefetched
                // rows are inside w too (checked here), and a prefetch never faults anyway;
                // `S`'s token proves its vectors' instructions.
                unsafe {
                    let (wp, xp) = (w.as_ptr().add(r * k), x.as_ptr().add(b * k));
                    match (rr, bb) {
                        (4, 4) => gemv_block::<S::F32, E, 4, 4>(k, wp, k, xp, k, out, ldy, next),
                        (4, _) => gemv_block::<S::F32, E, 4, 1>(k, wp, k, xp, k, out, ldy, next),
                        (_, 4) => gemv_block::<S::F32, E, 1, 4>(k, wp, k, xp, k, out, ldy, next),
                        _ => gemv_block::<S::F32, E, 1, 1>(k, wp, k, xp, k, out, ldy, next),
                    }
                }
                b += bb;
            }
            r += rr;
        }
    }
}
