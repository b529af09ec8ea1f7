//! Average pooling (fixed windows, and adaptive to a fixed output size) of one CHW image,
//! channels split across the pool.
//!
//! Both kinds reduce to windows that are products of one span per axis: each output row
//! and column gets its input span (clipped to the image) and its share of the divisor
//! (the span clipped to the padded input when padding counts, else the input span), found
//! once per layer call; then every output is its window's sum over the divisor. Sums run
//! in f32, row by row, in a fixed order, so results do not depend on the thread count.

use rayon::prelude::*;

use crate::plan::{AdaptiveAvgPool, AvgPool};

/// Channels per parallel task.
const CHANNELS_PER_TASK: usize = 8;

/// One output position along an axis: input cells `start..end`, and what it contributes
/// to the divisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    start: usize,
    end: usize,
    count: usize,
}

/// The spans of a fixed window of `kernel` at `stride` over `len` input cells padded by
/// `lo` before and `hi` after, for `out` outputs.
fn window_spans(len: usize, kernel: usize, stride: usize, lo: usize, hi: usize, out: usize, with_pad: bool) -> Vec<Span> {
    let padded = len + lo + hi;
    (0..out)
        .map(|i| {
            let p0 = i * stride;
            let p1 = (p0 + kernel).min(padded);
            let start = p0.saturating_sub(lo).min(len);
            let end = p1.saturating_sub(lo).min(len).max(start);
            Span { start, end, count: if with_pad { p1 - p0 } else { end - start } }
        })
        .collect()
}

/// torchvision's adaptive spans: output `i` of `out` covers `floor(i len / out) ..
/// ceil((i + 1) len / out)`.
fn adaptive_spans(len: usize, out: usize) -> Vec<Span> {
    (0..out)
        .map(|i| {
            let (start, end) = (i * len / out, ((i + 1) * len).div_ceil(out));
            Span { start, end, count: end - start }
        })
        .collect()
}

/// Every channel of `input` (`[c, h, w]`) pooled over the window products of `rows` x
/// `cols` into `out` (`[c, rows, cols]`).
fn pool(input: &[f32], [c, h, w]: [usize; 3], rows: &[Span], cols: &[Span], out: &mut [f32]) {
    let plane_out = rows.len() * cols.len();
    let out = &mut out[..c * plane_out];
    out.par_chunks_mut((plane_out * CHANNELS_PER_TASK).max(1)).enumerate().for_each(|(task, dst)| {
        for (i, plane) in dst.chunks_exact_mut(plane_out.max(1)).enumerate() {
            let ch = task * CHANNELS_PER_TASK + i;
            let src = &input[ch * h * w..(ch + 1) * h * w];
            for (y, ry) in rows.iter().enumerate() {
                for (x, cx) in cols.iter().enumerate() {
                    let mut sum = 0.0f32;
                    for r in ry.start..ry.end {
                        sum += src[r * w + cx.start..r * w + cx.end].iter().sum::<f32>();
                    }
                    let n = (ry.count * cx.count).max(1);
                    plane[y * cols.len() + x] = sum / n as f32;
                }
            }
        }
    });
}

/// Average-pool `[c, h, w]` into `[c, oh, ow]`.
pub fn avgpool(input: &[f32], [c, h, w]: [usize; 3], p: &AvgPool, [oh, ow]: [usize; 2], out: &mut [f32]) {
    let (pads, k, s) = (p.pads, p.kernel, p.stride);
    let rows = window_spans(h, k[0] as usize, s[0] as usize, pads.top as usize, pads.bottom as usize, oh, p.count_include_pad);
    let cols = window_spans(w, k[1] as usize, s[1] as usize, pads.left as usize, pads.right as usize, ow, p.count_include_pad);
    pool(input, [c, h, w], &rows, &cols, out);
}

/// Adaptive average pooling of `[c, h, w]` to `[c, p.out[0], p.out[1]]`.
pub fn adaptive_avgpool(input: &[f32], [c, h, w]: [usize; 3], p: &AdaptiveAvgPool, out: &mut [f32]) {
    let rows = adaptive_spans(h, p.out[0] as usize);
    let cols = adaptive_spans(w, p.out[1] as usize);
    pool(input, [c, h, w], &rows, &cols, out);
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
            let mut got = vec![f32::NAN; c * oh * ow];
            avgpool(&input, [c, h, w], &p, [oh, ow], &mut got);
            for (g, e) in got.iter().zip(&want) {
                assert!((g - e).abs() <= 1e-5 * (1.0 + e.abs()), "{p:?}: {g} vs {e}");
            }
        }
        for out in [[6, 6], [1, 1], [4, 7], [9, 13], [12, 20]] {
            let p = AdaptiveAvgPool { out };
            let want = reference::adaptive_avgpool(&input, [c, h, w], &p);
            let mut got = vec![f32::NAN; c * out[0] as usize * out[1] as usize];
            adaptive_avgpool(&input, [c, h, w], &p, &mut got);
            for (g, e) in got.iter().zip(&want) {
                assert!((g - e).abs() <= 1e-5 * (1.0 + e.abs()), "{out:?}: {g} vs {e}");
            }
        }
    }
}
