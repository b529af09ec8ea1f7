//! The edge kernel: a panel's last few columns for a fraction of a tile's FMAs.
#![allow(unsafe_code)]

use super::{Call, COLUMNS};
use crate::simd::SimdF32;

/// The edge kernel for the last few columns of a B panel (at most [`COLUMNS`] per
/// call): the `MR` rows of the A panel lie along the vector lanes (zero-filled past
/// `MR`) and each column is one chain of FMAs with B's value broadcast, so `w` columns
/// cost `COLUMNS` FMAs per k step where a narrow tile costs `MR`. Each element is the
/// same chain of FMAs over k as in [`super::tile::tile`], then the same epilogue in the same order
/// (`acc + row bias + column bias` on the first slice, `C + acc` after, ReLU last), so
/// its result does not depend on the kernel that computed it. Columns `w..COLUMNS`
/// repeat column `w - 1` (free: the chains' latency sets the pace) and are not stored;
/// only the first `h` rows are.
///
/// # Safety
/// The CPU supports `V`'s instructions; `MR <= 4 * LANES`; the call's block `(h, w)` has
/// `1 <= w <= COLUMNS` and `h <= MR`, and its operands are valid for it (see
/// [`Call::new`]).
#[inline(always)]
#[allow(clippy::needless_range_loop)]
pub(super) unsafe fn columns<V: SimdF32, const MR: usize>(call: &Call) {
    let Call { k, a, a_stride, b, b_stride, c, ldc, row_bias, col_bias, first, relu, hw: (h, w) } = *call;
    const RV: usize = 4;
    let lanes = V::LANES;
    let rv = MR.div_ceil(lanes);
    let cols: [usize; COLUMNS] = std::array::from_fn(|q| q.min(w - 1));
    // SAFETY: pointer ranges as promised by the caller (this fn's contract); V's
    // instructions are available.
    unsafe {
        let mut acc = [[V::zero(); COLUMNS]; RV];
        let (mut a, mut b) = (a, b);
        for _ in 0..k {
            let mut av = [V::zero(); RV];
            for r in 0..rv {
                av[r] = V::load_first(a.add(r * lanes), MR - r * lanes);
            }
            for q in 0..COLUMNS {
                let bq = V::splat(*b.add(cols[q]));
                for r in 0..rv {
                    acc[r][q] = av[r].mul_add(bq, acc[r][q]);
                }
            }
            a = a.add(a_stride);
            b = b.add(b_stride);
        }
        let mut lane = [0.0f32; 64];
        for q in 0..w {
            for r in 0..rv {
                let rows = h.saturating_sub(r * lanes).min(lanes);
                let at = |l: usize| c.add((r * lanes + l) * ldc + q);
                let mut x = acc[r][q];
                if first {
                    if !row_bias.is_null() {
                        x = x.add(V::load_first(row_bias.add(r * lanes), MR - r * lanes));
                    }
                    if !col_bias.is_null() {
                        x = x.add(V::splat(*col_bias.add(q)));
                    }
                } else {
                    for l in 0..rows {
                        lane[l] = *at(l);
                    }
                    x = V::load(lane.as_ptr()).add(x);
                }
                if relu {
                    x = x.relu();
                }
                x.store(lane.as_mut_ptr());
                for l in 0..rows {
                    *at(l) = lane[l];
                }
            }
        }
    }
}
