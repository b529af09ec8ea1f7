//! Max pooling of one CHW image, channels split across the pool, and the row pooling that
//! the fused pool + LRN step shares.
#![allow(unsafe_code)]

use rayon::prelude::*;

use crate::base::scalar::max_nan;
use crate::base::scratch::{self, Scratch};
use crate::cpu::Cpu;
use crate::plan::MaxPool;
use crate::simd::{Job, Simd, SimdF32};

/// Channels per parallel task of [`maxpool`].
const CHANNELS_PER_TASK: usize = 8;

thread_local! {
    /// Each thread's row scratch for [`maxpool`]; grows once to the widest row.
    pub(crate) static ROWS: Scratch = const { crate::base::scratch::new_scratch!() };
}

/// Pool `[c, h, w]` into `[c, oh, ow]`; padded cells never win, NaN is sticky.
pub fn maxpool(cpu: Cpu, input: &[f32], [c, h, w]: [usize; 3], p: &MaxPool, [oh, ow]: [usize; 2], out: &mut [f32]) {
    let plane = h * w;
    let out = &mut out[..c * oh * ow];
    let taps = (p.kernel[0] * p.kernel[1]) as f64;
    out.par_chunks_mut((oh * ow * CHANNELS_PER_TASK).max(1)).enumerate().for_each(|(task, dst)| {
        crate::base::census::task(|| {
            crate::base::census::work(dst.len() as f64 * taps);
            scratch::with(&ROWS, 2 * w, |rows| {
                let planes = dst.chunks_exact_mut(oh * ow).enumerate();
                let src = |i: usize| &input[(task * CHANNELS_PER_TASK + i) * plane..][..plane];
                cpu.vectorize(Planes { planes, src, geom: (h, w, oh, ow), p, rows });
            })
        })
    });
}

/// Whole planes pooled one after another inside the ISA's shell, as a [`Job`]: `planes`
/// yields (index, output plane), `src(index)` the input plane.
pub(crate) struct Planes<'a, I, F> {
    pub(crate) planes: I,
    pub(crate) src: F,
    /// Input height and width, output height and width.
    pub(crate) geom: (usize, usize, usize, usize),
    pub(crate) p: &'a MaxPool,
    /// `2 w` values of scratch.
    pub(crate) rows: &'a mut [f32],
}

impl<'a, 'o, I: Iterator<Item = (usize, &'o mut [f32])>, F: Fn(usize) -> &'a [f32]> Job for Planes<'a, I, F> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let (h, w, oh, ow) = self.geom;
        for (i, dst) in self.planes {
            pool_rows(s, (self.src)(i), 0, h, w, self.p, 0, oh, ow, dst, self.rows);
        }
    }
}

/// [`pool_rows`] inside `cpu`'s shell.
#[allow(clippy::too_many_arguments)]
pub(crate) fn pool_rows_on(
    cpu: Cpu,
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
    struct RowsJob<'a> {
        rows: &'a [f32],
        at: (usize, usize, usize, usize, usize, usize),
        p: &'a MaxPool,
        dst: &'a mut [f32],
        scratch: &'a mut [f32],
    }
    impl Job for RowsJob<'_> {
        type Output = ();
        #[inline(always)]
        fn run<S: Simd>(self, s: S) {
            let (row0, h, w, y0, y1, ow) = self.at;
            pool_rows(s, self.rows, row0, h, w, self.p, y0, y1, ow, self.dst, self.scratch);
        }
    }
    cpu.vectorize(RowsJob { rows, at: (row0, h, w, y0, y1, ow), p, dst, scratch });
}

/// Max-pool output rows `y0..y1` of one channel into `dst` (`(y1 - y0) * ow` values), on
/// `S`'s vectors. `rows` holds input rows `row0..` of the channel (`h` is the full
/// height); `scratch` holds `2 w` values. 3x3 stride-2 windows with none cut by the
/// padding (all of AlexNet's) take each output row straight from the input rows in
/// registers ([`window3s2`]). Otherwise separable: the window's rows are first reduced
/// element-wise (vector passes), then the windows that lie wholly inside the row take the
/// max of `kw` shifted copies of that row, each output picking its window's start at
/// stride `sw`; windows cut by the padding are reduced one by one. Every fast pass
/// watches for NaN; where one may be, the row is redone on the sticky path. Padded cells
/// never win; NaN is sticky, so any NaN in a window wins.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn pool_rows<S: Simd>(
    s: S,
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
        // AlexNet's 3x3 stride-2 windows, none cut by padding: every output straight
        // from the rows, in registers (unless a NaN may be there: then as below).
        if sw == 2 && kw == 3 && xa == 0 && xb == ow && full > 0 {
            let o = &mut out[..];
            if !window3s2(s, &|r| &row(r0 + r)[first..], r1 - r0, o) {
                continue;
            }
        }
        // The common case has no NaN: plain maxima (one instruction a lane) while
        // watching for NaN; if one turns up, the rows are reduced again NaN-sticky.
        let mut nan = false;
        if r1 - r0 == 1 {
            colmax.copy_from_slice(row(r0));
            nan = colmax.iter().any(|v| v.is_nan());
        } else {
            nan |= max_rows(s, colmax, row(r0), row(r0 + 1));
            for r in r0 + 2..r1 {
                nan |= max_rows_into(s, colmax, row(r));
            }
            if nan {
                max_of::<true>(colmax, row(r0), row(r0 + 1));
                for r in r0 + 2..r1 {
                    max_into::<true>(colmax, row(r));
                }
            }
        }
        if full > 0 && !nan && sw == 2 && kw == 3 {
            // AlexNet's 3x3 stride-2 windows: each output the max of three neighbours
            // at stride 2, in one pass the compiler vectorises (an interleaved load).
            stride2_max3(s, &colmax[first..], &mut out[xa..xb]);
        } else if full > 0 {
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

/// `out[i] = max(a[i], b[i])` on `S`'s vectors (the last one overlapping the one before
/// it), for inputs without NaN; returns whether there may have been one (true also for
/// an infinity, whose `x - x` is NaN as well: the caller then redoes the rows exactly).
/// The compiler's own vectorisation of the plain loop leaves rows shorter than its
/// unrolled AVX-512 body (55 values in AlexNet's pool1) to scalar code.
#[inline(always)]
fn max_rows<S: Simd>(_: S, out: &mut [f32], a: &[f32], b: &[f32]) -> bool {
    type V<S> = <S as Simd>::F32;
    let n = out.len().min(a.len()).min(b.len());
    let l = V::<S>::LANES;
    if n < l {
        return max_of::<false>(&mut out[..n], &a[..n], &b[..n]);
    }
    let mut i = 0;
    // SAFETY: the token proves the CPU runs S's vectors; every access is at i + l <= n.
    unsafe {
        let mut probe = V::<S>::zero();
        loop {
            let (x, y) = (V::<S>::load(a.as_ptr().add(i)), V::<S>::load(b.as_ptr().add(i)));
            probe = probe.add(x.sub(x)).add(y.sub(y));
            x.max_plain(y).store(out.as_mut_ptr().add(i));
            if i + l == n {
                break;
            }
            i = (i + l).min(n - l);
        }
        any_nan::<S>(probe)
    }
}

/// `acc[i] = max(acc[i], v[i])` as [`max_rows`] (recomputing an overlapped lane gives
/// the same value).
#[inline(always)]
fn max_rows_into<S: Simd>(_: S, acc: &mut [f32], v: &[f32]) -> bool {
    type V<S> = <S as Simd>::F32;
    let n = acc.len().min(v.len());
    let l = V::<S>::LANES;
    if n < l {
        return max_into::<false>(&mut acc[..n], &v[..n]);
    }
    let mut i = 0;
    // SAFETY: the token proves the CPU runs S's vectors; every access is at i + l <= n.
    unsafe {
        let mut probe = V::<S>::zero();
        loop {
            let x = V::<S>::load(v.as_ptr().add(i));
            probe = probe.add(x.sub(x));
            V::<S>::load(acc.as_ptr().add(i)).max_plain(x).store(acc.as_mut_ptr().add(i));
            if i + l == n {
                break;
            }
            i = (i + l).min(n - l);
        }
        any_nan::<S>(probe)
    }
}

/// Whether any lane of `v` is NaN.
///
/// # Safety
/// The CPU runs `S`'s vectors.
#[inline(always)]
unsafe fn any_nan<S: Simd>(v: S::F32) -> bool {
    let mut lanes = [0.0f32; 16];
    // SAFETY: 16 values hold any ISA's lanes; the CPU runs S (caller).
    unsafe { v.store(lanes.as_mut_ptr()) };
    lanes[..S::F32::LANES.min(16)].iter().any(|x| x.is_nan())
}

/// `out[x]` = the maximum over rows `r < rows` of `row(r)[2x .. 2x + 3]` (plain maxima)
/// on `S`'s vectors: each row's values loaded and reduced in registers, then the even,
/// odd and next-even lanes combined (a stored column maximum read back at an offset of
/// two would stall on store forwarding). Returns whether an input may be NaN (or
/// infinite), in which case `out` is to be recomputed exactly.
#[inline(always)]
fn window3s2<'r, S: Simd>(_: S, row: &dyn Fn(usize) -> &'r [f32], rows: usize, out: &mut [f32]) -> bool {
    type V<S> = <S as Simd>::F32;
    let n = out.len();
    let l = V::<S>::LANES;
    if n == 0 || rows == 0 {
        return true;
    }
    let rs: [&[f32]; 3] = [row(0), row(1.min(rows - 1)), row(2.min(rows - 1))];
    if rows > 3 || rs.iter().any(|r| r.len() < 2 * n + 1) {
        return true;
    }
    if n < l {
        // A row shorter than a vector (conv2's 13 outputs, conv5's 6 on 16 lanes): one
        // step on partial loads and a partial store. Lanes past the row load zero, which
        // adds nothing to the NaN probe and is never stored.
        // SAFETY: the token proves the CPU runs S's vectors; loads read the first 2 n + 1
        // values of each row (held, checked above), the store the n of `out`.
        unsafe {
            let len = 2 * n + 1;
            let load = |r: &[f32]| {
                let p = r.as_ptr();
                let part = |at: usize| V::<S>::load_first(p.add(at.min(len)), len.saturating_sub(at).min(l));
                (part(0), part(l), part(2), part(2 + l))
            };
            let (mut a, mut b, mut a2, mut b2) = load(rs[0]);
            let mut probe = a.sub(a).add(b.sub(b));
            for r in &rs[1..rows] {
                let (c, d, c2, d2) = load(r);
                probe = probe.add(c.sub(c)).add(d.sub(d));
                (a, b, a2, b2) = (a.max_plain(c), b.max_plain(d), a2.max_plain(c2), b2.max_plain(d2));
            }
            let (even, odd) = a.unzip(b);
            let (next, _) = a2.unzip(b2);
            even.max_plain(odd).max_plain(next).store_first(out.as_mut_ptr(), n);
            return any_nan::<S>(probe);
        }
    }
    let mut x0 = 0;
    // SAFETY: the token proves the CPU runs S's vectors; each row holds 2 n + 1 values
    // (checked above); loads read [2 x0, 2 x0 + 2 l + 2) but the last, which reads at
    // most to 2 n + 1 (a masked load; the lane past it is odd and never used); stores
    // are at x0 + l <= n.
    unsafe {
        let mut probe = V::<S>::zero();
        loop {
            let last = (2 * n + 1 - (2 * x0 + 2 + l)).min(l);
            let load = |r: &[f32]| {
                let p = r.as_ptr().add(2 * x0);
                (V::<S>::load(p), V::<S>::load(p.add(l)), V::<S>::load(p.add(2)), V::<S>::load_first(p.add(2 + l), last))
            };
            let (mut a, mut b, mut a2, mut b2) = load(rs[0]);
            probe = probe.add(a.sub(a)).add(b.sub(b)).add(b2.sub(b2));
            for r in &rs[1..rows] {
                let (c, d, c2, d2) = load(r);
                probe = probe.add(c.sub(c)).add(d.sub(d)).add(d2.sub(d2));
                (a, b, a2, b2) = (a.max_plain(c), b.max_plain(d), a2.max_plain(c2), b2.max_plain(d2));
            }
            let (even, odd) = a.unzip(b);
            let (next, _) = a2.unzip(b2);
            even.max_plain(odd).max_plain(next).store(out.as_mut_ptr().add(x0));
            if x0 + l == n {
                break;
            }
            x0 = (x0 + l).min(n - l);
        }
        any_nan::<S>(probe)
    }
}

/// `out[x] = max(c[2x], c[2x + 1], c[2x + 2])` (plain maxima: no NaN in `c`), a vector
/// of outputs at a time from the even and odd lanes of two pairs of loads (the compiler
/// does not vectorise the strided reads), the last few one by one.
#[inline(always)]
fn stride2_max3<S: Simd>(_: S, c: &[f32], out: &mut [f32]) {
    type V<S> = <S as Simd>::F32;
    let n = out.len();
    let c = &c[..2 * n + 1];
    let l = V::<S>::LANES;
    if n < l {
        for (x, o) in out.iter_mut().enumerate() {
            let (a, b, d) = (c[2 * x], c[2 * x + 1], c[2 * x + 2]);
            let m = if b > a { b } else { a };
            *o = if d > m { d } else { m };
        }
        return;
    }
    // Vectors of l outputs, the last one ending at n (overlapping the one before it:
    // those outputs are computed twice, identically).
    let mut x0 = 0;
    loop {
        // SAFETY: the token proves the CPU runs S's vectors; the loads read c[2 x0 ..
        // 2 x0 + 2 l + 2) but the last, which reads at most to c's end (2 n + 1 values;
        // the lane past it, an odd one, is never used); the store is at x0 + l <= n.
        unsafe {
            let p = c.as_ptr().add(2 * x0);
            let (even, odd) = V::<S>::load(p).unzip(V::<S>::load(p.add(l)));
            let last = (c.len() - (2 * x0 + 2 + l)).min(l);
            let (next, _) = V::<S>::load(p.add(2)).unzip(V::<S>::load_first(p.add(2 + l), last));
            even.max_plain(odd).max_plain(next).store(out.as_mut_ptr().add(x0));
        }
        if x0 + l == n {
            break;
        }
        x0 = (x0 + l).min(n - l);
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
        for (case, (h, w)) in [(1, 1), (2, 5), (5, 2), (7, 9), (4, 17), (5, 70), (3, 35)].into_iter().enumerate() {
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
                    for cpu in Cpu::all() {
                        let mut got = vec![1234.5; c * oh * ow];
                        maxpool(cpu, &input, [c, h, w], &p, [oh, ow], &mut got);
                        for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                            let same = if e.is_nan() { g.is_nan() } else { g == e };
                            assert!(same, "{:?} {h}x{w} {p:?} at {i}: {g} vs {e}", cpu.isa());
                        }
                    }
                }
            }
        }
    }
}
