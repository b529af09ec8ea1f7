//! Max pooling of one CHW image, channels split across the pool, and the row pooling that
//! the fused pool + LRN step shares.

use rayon::prelude::*;

use crate::base::scalar::max_nan;
use crate::base::scratch::{self, Scratch};
use crate::plan::MaxPool;

/// Channels per parallel task of [`maxpool`].
const CHANNELS_PER_TASK: usize = 8;

thread_local! {
    /// Each thread's row scratch for [`maxpool`]; grows once to the widest row.
    static ROWS: Scratch = const { Scratch::new() };
}

/// Pool `[c, h, w]` into `[c, oh, ow]`; padded cells never win, NaN is sticky.
pub fn maxpool(input: &[f32], [c, h, w]: [usize; 3], p: &MaxPool, [oh, ow]: [usize; 2], out: &mut [f32]) {
    let plane = h * w;
    let out = &mut out[..c * oh * ow];
    out.par_chunks_mut((oh * ow * CHANNELS_PER_TASK).max(1)).enumerate().for_each(|(task, dst)| {
        scratch::with(&ROWS, 2 * w, |rows| {
            for (i, d) in dst.chunks_exact_mut(oh * ow).enumerate() {
                let ch = task * CHANNELS_PER_TASK + i;
                pool_rows(&input[ch * plane..(ch + 1) * plane], 0, h, w, p, 0, oh, ow, d, rows);
            }
        })
    });
}

/// Max-pool output rows `y0..y1` of one channel into `dst` (`(y1 - y0) * ow` values).
/// `rows` holds input rows `row0..` of the channel (`h` is the full height); `scratch`
/// holds `2 w` values. Separable: the window's rows are first reduced element-wise (a
/// vectorisable pass), then the windows that lie wholly inside the row take the max of
/// `kw` shifted copies of that row (vectorisable passes again), each output picking its
/// window's start at stride `sw`; windows cut by the padding are reduced one by one.
/// Padded cells never win; NaN is sticky in every pass, so any NaN in a window wins.
#[allow(clippy::too_many_arguments)]
pub(crate) fn pool_rows(
    rows: &[f32],
    row0: usize,
    h: usize,
    w: usize,
    p: &MaxPool,
    y0: usize,
    y1: usize,
    ow: usize,
    dst: &mut [f32],
    scratch: &mut [f32],
) {
    let (kh, kw) = (p.kernel[0] as usize, p.kernel[1] as usize);
    let (sh, sw) = (p.stride[0] as usize, p.stride[1] as usize);
    let (pt, pl) = (p.pads.top as usize, p.pads.left as usize);
    let (colmax, winmax) = scratch[..2 * w].split_at_mut(w);
    // Outputs xa..xb have their whole window inside the row: x*sw >= pl and
    // x*sw - pl + kw <= w. Their window starts run from xa*sw - pl to (xb-1)*sw - pl.
    let xa = pl.div_ceil(sw).min(ow);
    let xb = if w + pl >= kw { ((w + pl - kw) / sw + 1).min(ow) } else { 0 }.max(xa);
    let (first, full) = if xb > xa { (xa * sw - pl, (xb - 1) * sw - pl + 1) } else { (0, 0) };
    let row = |r: usize| &rows[(r - row0) * w..(r - row0 + 1) * w];
    for (oy, y) in (y0..y1).enumerate() {
        let out = &mut dst[oy * ow..(oy + 1) * ow];
        let r0 = (y * sh).saturating_sub(pt);
        let r1 = (y * sh + kh).saturating_sub(pt).min(h);
        if r0 >= r1 {
            // A window wholly in the padding (not a valid plan; never panic on it).
            out.fill(f32::NEG_INFINITY);
            continue;
        }
        // The common case has no NaN: plain maxima (one instruction a lane) while
        // watching for NaN; if one turns up, the rows are reduced again NaN-sticky.
        let mut nan = false;
        if r1 - r0 == 1 {
            colmax.copy_from_slice(row(r0));
            nan = colmax.iter().any(|v| v.is_nan());
        } else {
            nan |= max_of::<false>(colmax, row(r0), row(r0 + 1));
            for r in r0 + 2..r1 {
                nan |= max_into::<false>(colmax, row(r));
            }
            if nan {
                max_of::<true>(colmax, row(r0), row(r0 + 1));
                for r in r0 + 2..r1 {
                    max_into::<true>(colmax, row(r));
                }
            }
        }
        if full > 0 {
            let wm = &mut winmax[..full];
            if kw == 1 {
                wm.copy_from_slice(&colmax[..full]);
            } else {
                let (a, b) = (&colmax[..full], &colmax[1..full + 1]);
                if nan {
                    max_of::<true>(wm, a, b);
                    for t in 2..kw {
                        max_into::<true>(wm, &colmax[t..t + full]);
                    }
                } else {
                    max_of::<false>(wm, a, b);
                    for t in 2..kw {
                        max_into::<false>(wm, &colmax[t..t + full]);
                    }
                }
            }
            for (o, &v) in out[xa..xb].iter_mut().zip(wm[first..].iter().step_by(sw)) {
                *o = v;
            }
        }
        // Windows cut by the padding, at either end.
        for x in (0..xa).chain(xb..ow) {
            let c0 = (x * sw).saturating_sub(pl).min(w);
            let c1 = (x * sw + kw).saturating_sub(pl).min(w);
            out[x] = colmax[c0..c1.max(c0)].iter().copied().fold(f32::NEG_INFINITY, max_nan);
        }
    }
}

/// `out[i] = max_nan(a[i], b[i])` when `STICKY`; otherwise the plain ordered maximum
/// (`b[i] > a[i] ? b[i] : a[i]`, equal to it when neither is NaN), returning whether any
/// input was NaN. Both vectorise: a compare-and-select per lane, or one `max` and a
/// NaN test.
#[inline(always)]
fn max_of<const STICKY: bool>(out: &mut [f32], a: &[f32], b: &[f32]) -> bool {
    let mut nan = false;
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        if STICKY {
            *o = max_nan(x, y);
        } else {
            *o = if y > x { y } else { x };
            nan |= x.is_nan() | y.is_nan();
        }
    }
    nan
}

/// `acc[i] = max_nan(acc[i], v[i])`, or plain as in [`max_of`].
#[inline(always)]
fn max_into<const STICKY: bool>(acc: &mut [f32], v: &[f32]) -> bool {
    let mut nan = false;
    for (m, &x) in acc.iter_mut().zip(v) {
        if STICKY {
            *m = max_nan(*m, x);
        } else {
            *m = if x > *m { x } else { *m };
            nan |= x.is_nan();
        }
    }
    nan
}

#[cfg(test)]
mod tests {
    //! Small enough for Miri: every kernel/stride/padding up to 3, odd sizes, with NaN,
    //! infinities and signed zeros in the input, against the reference.
    use super::*;
    use crate::plan::Pads;
    use crate::reference;

    #[test]
    fn every_small_geometry_matches_reference() {
        let specials = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0, 0.0];
        for (case, (h, w)) in [(1, 1), (2, 5), (5, 2), (7, 9), (4, 17)].into_iter().enumerate() {
            let c = 3;
            let mut input: Vec<f32> = (0..c * h * w).map(|i| ((i * 37 + case) % 23) as f32 - 11.0).collect();
            // Channel 0 has no special values; channel 1 one NaN; channel 2 several kinds.
            input[h * w + (case * 7) % (h * w)] = f32::NAN;
            for (i, v) in input[2 * h * w..].iter_mut().enumerate() {
                if (i + case) % 4 == 0 {
                    *v = specials[(i / 4) % specials.len()];
                }
            }
            for (kh, kw, sh, sw) in [(1, 1, 1, 1), (3, 3, 2, 2), (2, 3, 1, 3), (3, 1, 2, 1), (3, 2, 3, 2)] {
                for (pt, pl) in [(0, 0), (1, 0), (0, 1), (1, 2)] {
                    if pt >= kh || pl >= kw {
                        continue;
                    }
                    let (pb, pr) = (pt.min(1), pl.min(1));
                    let (hp, wp) = (h + pt + pb, w + pl + pr);
                    if hp < kh || wp < kw {
                        continue;
                    }
                    let (oh, ow) = ((hp - kh) / sh + 1, (wp - kw) / sw + 1);
                    let p = MaxPool {
                        kernel: [kh as u32, kw as u32],
                        stride: [sh as u32, sw as u32],
                        pads: Pads { top: pt as u32, left: pl as u32, bottom: pb as u32, right: pr as u32 },
                        ceil_mode: false,
                    };
                    let want = reference::maxpool(&input, [c, h, w], &p, [oh, ow]);
                    let mut got = vec![1234.5; c * oh * ow];
                    maxpool(&input, [c, h, w], &p, [oh, ow], &mut got);
                    for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                        let same = if e.is_nan() { g.is_nan() } else { g == e };
                        assert!(same, "{h}x{w} {p:?} at {i}: {g} vs {e}");
                    }
                }
            }
        }
    }
}
