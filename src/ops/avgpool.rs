//! Average pooling (fixed windows, and adaptive to a fixed output size) of one CHW image,
//! channels split across the pool.
//!
//! Both kinds reduce to windows that are products of one span per axis: each output row
//! and column has its input span (clipped to the image) and its share of the divisor (the
//! span clipped to the padded input when padding counts, else the input span), computed
//! in O(1) where it is needed (once per task of channels), so a call allocates nothing.
//! Per output row the window's input rows are first summed element-wise into a row of
//! column sums per channel (whole-row vector adds, inside the ISA's target-feature
//! shell), then each output adds its columns' sums and divides. Every cell's sums run in one fixed order, so results do not depend on the
//! thread count.

use rayon::prelude::*;

use crate::base::scratch::{self, Scratch};
use crate::cpu::Cpu;
use crate::plan::{AdaptiveAvgPool, AvgPool};
use crate::simd::{Job, Simd};

/// Channels per parallel task.
const CHANNELS_PER_TASK: usize = 8;

thread_local! {
    /// Each thread's rows of column sums, one per channel of a task; grows once.
    pub(crate) static COLUMNS: Scratch = const { crate::base::scratch::new_scratch!() };
}

/// One output position along an axis: input cells `start..end`, and what it contributes
/// to the divisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    start: usize,
    end: usize,
    count: usize,
}

/// How the output positions of one axis map onto its `len` input cells.
#[derive(Clone, Copy, Debug)]
enum Spans {
    /// A window of `kernel` at `stride`, the input padded by `lo` before and `hi` after.
    Window { len: usize, kernel: usize, stride: usize, lo: usize, hi: usize, with_pad: bool },
    /// torchvision's adaptive windows for `out` outputs: output `i` covers
    /// `floor(i len / out) .. ceil((i + 1) len / out)`.
    Adaptive { len: usize, out: usize },
}

impl Spans {
    /// Outputs `xa..xb` of `out` whose fixed window lies wholly inside the input (none for
    /// adaptive windows, whose sizes vary).
    fn interior(self, out: usize) -> (usize, usize) {
        match self {
            Spans::Window { len, kernel, stride, lo, .. } if stride > 0 => {
                let xa = lo.div_ceil(stride).min(out);
                let xb = if len + lo >= kernel { ((len + lo - kernel) / stride + 1).min(out) } else { 0 };
                (xa, xb.max(xa))
            }
            _ => (0, 0),
        }
    }

    fn at(self, i: usize) -> Span {
        match self {
            Spans::Window { len, kernel, stride, lo, hi, with_pad } => {
                let p0 = i * stride;
                let p1 = (p0 + kernel).min(len + lo + hi);
                let start = p0.saturating_sub(lo).min(len);
                let end = p1.saturating_sub(lo).min(len).max(start);
                Span { start, end, count: if with_pad { p1.saturating_sub(p0) } else { end - start } }
            }
            Spans::Adaptive { len, out } => {
                let (start, end) = (i * len / out, ((i + 1) * len).div_ceil(out));
                Span { start, end, count: end - start }
            }
        }
    }
}

/// Every channel of `input` (`[c, h, w]`) pooled over the window products of `rows` x
/// `cols` into `out` (`[c, oh, ow]`).
fn pool(cpu: Cpu, input: &[f32], [c, h, w]: [usize; 3], (rows, oh): (Spans, usize), (cols, ow): (Spans, usize), out: &mut [f32]) {
    struct Planes<'a, 'o> {
        src: &'a [f32],
        dst: &'o mut [f32],
        geom: (usize, usize, usize, usize),
        rows: Spans,
        cols: Spans,
        colsum: &'o mut [f32],
    }
    impl Job for Planes<'_, '_> {
        type Output = ();
        #[inline(always)]
        fn run<S: Simd>(self, _: S) {
            let (h, w, oh, ow) = self.geom;
            let planes = self.src.len() / (h * w);
            let (colsums, wins) = self.colsum[..(planes + 1) * w].split_at_mut(planes * w);
            // Row by row across the task's planes, so each span is found once per task.
            for y in 0..oh {
                let ry = self.rows.at(y);
                for (colsum, src) in colsums.chunks_exact_mut(w).zip(self.src.chunks_exact(h * w)) {
                    // The first row copied, the others added (an empty span sums to 0).
                    match src.get(ry.start * w..(ry.start + 1) * w).filter(|_| ry.end > ry.start) {
                        Some(first) => colsum.copy_from_slice(first),
                        None => colsum.fill(0.0),
                    }
                    for r in (ry.start + 1).min(ry.end)..ry.end {
                        for (a, &v) in colsum.iter_mut().zip(&src[r * w..(r + 1) * w]) {
                            *a += v;
                        }
                    }
                }
                // Fixed windows wholly inside the row (all but the edges): every window's
                // sum from `kw` shifted copies of the column sums, added in the same
                // order as the edge path, then picked at the stride.
                let (xa, xb) = self.cols.interior(ow);
                if let (Spans::Window { kernel: kw, stride: sw, lo: pl, .. }, true) = (self.cols, xb > xa) {
                    let n = (ry.count * kw).max(1) as f32;
                    let (first, len) = (xa * sw - pl, (xb - 1 - xa) * sw + 1);
                    for (colsum, plane) in colsums.chunks_exact_mut(w).zip(self.dst.chunks_exact_mut(oh * ow)) {
                        let wins = &mut wins[..len];
                        wins.copy_from_slice(&colsum[first..first + len]);
                        for dx in 1..kw {
                            for (a, &v) in wins.iter_mut().zip(&colsum[first + dx..first + dx + len]) {
                                *a += v;
                            }
                        }
                        // Picked first, then divided as a whole row (vector divides).
                        let out = &mut plane[y * ow + xa..y * ow + xb];
                        for (o, &v) in out.iter_mut().zip(wins.iter().step_by(sw)) {
                            *o = v;
                        }
                        for o in out.iter_mut() {
                            *o /= n;
                        }
                    }
                }
                for x in (0..xa).chain(xb.max(xa)..ow) {
                    let cx = self.cols.at(x);
                    let n = (ry.count * cx.count).max(1) as f32;
                    for (colsum, plane) in colsums.chunks_exact(w).zip(self.dst.chunks_exact_mut(oh * ow)) {
                        let sum: f32 = colsum[cx.start..cx.end].iter().sum();
                        plane[y * ow + x] = sum / n;
                    }
                }
            }
        }
    }
    let (plane_in, plane_out) = (h * w, oh * ow);
    if plane_out == 0 || plane_in == 0 {
        out[..c * plane_out].fill(0.0);
        return;
    }
    let tasks = out[..c * plane_out]
        .par_chunks_mut(plane_out * CHANNELS_PER_TASK)
        .zip(input[..c * plane_in].par_chunks(plane_in * CHANNELS_PER_TASK));
    tasks.for_each(|(dst, src)| {
        crate::base::census::task(|| {
            // Separable sums: about two reads per input value and one write per output.
            crate::base::census::work((2 * src.len() + dst.len()) as f64);
            scratch::with(&COLUMNS, (CHANNELS_PER_TASK + 1) * w, |colsum| {
                cpu.vectorize(Planes { src, dst, geom: (h, w, oh, ow), rows, cols, colsum });
            })
        })
    });
}

/// Average-pool `[c, h, w]` into `[c, oh, ow]`.
pub fn avgpool(cpu: Cpu, input: &[f32], [c, h, w]: [usize; 3], p: &AvgPool, [oh, ow]: [usize; 2], out: &mut [f32]) {
    let (pads, k, s, with_pad) = (p.pads, p.kernel, p.stride, p.count_include_pad);
    let axis = |len, kernel: u32, stride: u32, lo: u32, hi: u32| Spans::Window {
        len,
        kernel: kernel as usize,
        stride: stride as usize,
        lo: lo as usize,
        hi: hi as usize,
        with_pad,
    };
    let rows = axis(h, k[0], s[0], pads.top, pads.bottom);
    let cols = axis(w, k[1], s[1], pads.left, pads.right);
    pool(cpu, input, [c, h, w], (rows, oh), (cols, ow), out);
}

/// Adaptive average pooling of `[c, h, w]` to `[c, p.out[0], p.out[1]]`.
pub fn adaptive_avgpool(cpu: Cpu, input: &[f32], [c, h, w]: [usize; 3], p: &AdaptiveAvgPool, out: &mut [f32]) {
    let [oh, ow] = p.out.map(|v| v as usize);
    let rows = Spans::Adaptive { len: h, out: oh };
    let cols = Spans::Adaptive { len: w, out: ow };
    pool(cpu, input, [c, h, w], (rows, oh), (cols, ow), out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Pads;
    use crate::reference;

    #[test]
    fn fixed_and_adaptive_windows_match_the_reference() {
        let (c, h, w) = (5, 9, 13);
        let input: Vec<f32> = (0..c * h * w).map(|i| ((i * 37) % 29) as f32 - 14.0).collect();
        for (k, s, pads, ceil, with_pad) in [
            ([3, 3], [2, 2], Pads::default(), false, true),
            ([2, 3], [1, 2], Pads { top: 1, left: 0, bottom: 1, right: 2 }, false, true),
            ([3, 2], [2, 3], Pads { top: 1, left: 1, bottom: 0, right: 1 }, true, false),
            ([4, 4], [3, 3], Pads::uniform(2), true, true),
        ] {
            let p = AvgPool { kernel: k, stride: s, pads, ceil_mode: ceil, count_include_pad: with_pad };
            let plan = crate::plan::Plan {
                input: [c as u32, h as u32, w as u32],
                preprocess: crate::plan::Preprocess::caffe(),
                layers: vec![crate::plan::Layer::AvgPool(p.clone()), crate::plan::Layer::Flatten],
                labels: vec![],
            };
            let shapes = plan.shapes().unwrap();
            let crate::plan::Shape::Spatial { h: oh, w: ow, .. } = shapes[1] else { panic!() };
            let want = reference::avgpool(&input, [c, h, w], &p, [oh, ow]);
            for cpu in Cpu::all() {
                let mut got = vec![f32::NAN; c * oh * ow];
                avgpool(cpu, &input, [c, h, w], &p, [oh, ow], &mut got);
                for (g, e) in got.iter().zip(&want) {
                    assert!((g - e).abs() <= 1e-5 * (1.0 + e.abs()), "{} {p:?}: {g} vs {e}", cpu.isa());
                }
            }
        }
        for out in [[6, 6], [1, 1], [4, 7], [9, 13], [12, 20]] {
            let p = AdaptiveAvgPool { out };
            let want = reference::adaptive_avgpool(&input, [c, h, w], &p);
            for cpu in Cpu::all() {
                let mut got = vec![f32::NAN; c * out[0] as usize * out[1] as usize];
                adaptive_avgpool(cpu, &input, [c, h, w], &p, &mut got);
                for (g, e) in got.iter().zip(&want) {
                    assert!((g - e).abs() <= 1e-5 * (1.0 + e.abs()), "{} {out:?}: {g} vs {e}", cpu.isa());
                }
            }
        }
    }
}
