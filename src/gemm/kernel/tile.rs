//! The `MR x NR` register tile (see the module doc of [`super`]).
#![allow(unsafe_code)]

use super::Call;
use crate::simd::SimdF32;

/// How far ahead of its k step (in f32 values, 3 KiB) a tile prefetches its A panel: far
/// enough to cover memory latency at the tile's pace, short of evicting what it reads.
const A_AHEAD: usize = 768;

/// The generic micro-kernel body: `MR` rows of an A panel whose k steps are `a_stride`
/// apart times the first `NV * LANES` columns of a B panel whose rows are `b_stride`
/// apart. The full tile reads whole panels, the narrow one the left part of B's, the
/// short one the top rows of A's (the last panel of an M that is not a multiple of the
/// panel height).
///
/// # Safety
/// The CPU supports `V`'s instructions, and `call` holds operands valid for an `MR x NV *
/// LANES` tile (see [`Call::new`]).
#[inline(always)]
#[allow(clippy::needless_range_loop)]
pub(super) unsafe fn tile<V: SimdF32, const MR: usize, const NV: usize>(call: &Call) {
    let Call { k, a, a_stride, b, b_stride, c, ldc, row_bias, col_bias, first, relu, .. } = *call;
    let lanes = V::LANES;
    let nr = NV * lanes;
    // SAFETY: pointer ranges as promised by the caller (this fn's contract); V's
    // instructions are available.
    unsafe {
        // Bring the C tile towards L1 while the K loop runs: its rows are far apart in
        // memory and would otherwise miss at the store.
        for i in 0..MR {
            V::prefetch(c.add(i * ldc));
            V::prefetch(c.add(i * ldc + nr - 1));
        }
        let mut acc = [[V::zero(); NV]; MR];
        let (mut a, mut b) = (a, b);
        for _ in 0..k {
            // Where B is narrow (a Winograd product at batch 1) each panel of A is read
            // once, from memory: fetch it well ahead, across its end into the next panel.
            V::prefetch(a.wrapping_add(A_AHEAD));
            acc = step::<V, MR, NV>(acc, a, b);
            a = a.add(a_stride);
            b = b.add(b_stride);
        }
        for i in 0..MR {
            let row = c.add(i * ldc);
            for v in 0..NV {
                let p = row.add(v * lanes);
                let mut x = acc[i][v];
                if first {
                    if !row_bias.is_null() {
                        x = x.add(V::splat(*row_bias.add(i)));
                    }
                    if !col_bias.is_null() {
                        x = x.add(V::load(col_bias.add(v * lanes)));
                    }
                } else {
                    x = V::load(p).add(x);
                }
                if relu {
                    x = x.relu();
                }
                x.store(p);
            }
        }
    }
}

/// One k step of [`tile`]: the accumulators in, updated, out (by value: carried through the
/// loop as values, LLVM keeps them in registers on every target; as an array updated in
/// place, the AArch64 build also stored all of them to the stack at every step).
///
/// # Safety
/// As [`tile`], for one k step at `a` and `b`.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn step<V: SimdF32, const MR: usize, const NV: usize>(
    mut acc: [[V; NV]; MR],
    a: *const f32,
    b: *const f32,
) -> [[V; NV]; MR] {
    // SAFETY: forwarded contract.
    unsafe {
        let mut bv = [V::zero(); NV];
        for v in 0..NV {
            bv[v] = V::load(b.add(v * V::LANES));
        }
        for i in 0..MR {
            let av = V::splat(*a.add(i));
            for v in 0..NV {
                acc[i][v] = av.mul_add(bv[v], acc[i][v]);
            }
        }
    }
    acc
}
