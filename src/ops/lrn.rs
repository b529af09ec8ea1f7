//! Local response normalisation of one CHW image: across channels (AlexNet) and within
//! each channel (Caffe's `WITHIN_CHANNEL`).
//!
//! Channels are split across the pool; each output channel sums the squares of its
//! window directly (the window is small: 5 in every AlexNet). `x^-0.75` (AlexNet's beta)
//! is computed as `1/sqrt(t*sqrt(t))` with no `powf`; other betas take `powf`.

use rayon::prelude::*;

use crate::plan::{Lrn, LrnWithin};

/// Normalise `[c, hw]` into `out` (same shape).
pub fn lrn(input: &[f32], c: usize, hw: usize, p: &Lrn, out: &mut [f32]) {
    let size = p.size as usize;
    let before = (size - 1) / 2;
    let after = size - 1 - before;
    let scale = p.alpha / p.size as f32;
    let fast = p.beta == 0.75;
    out[..c * hw].par_chunks_mut(hw).enumerate().for_each(|(ch, dst)| {
        let lo = ch.saturating_sub(before);
        let hi = (ch + after).min(c - 1);
        // Sum of squares of the window, accumulated channel by channel into `dst`.
        dst.fill(0.0);
        for cc in lo..=hi {
            for (s, &v) in dst.iter_mut().zip(&input[cc * hw..(cc + 1) * hw]) {
                *s += v * v;
            }
        }
        for (d, &x) in dst.iter_mut().zip(&input[ch * hw..(ch + 1) * hw]) {
            let t = p.bias + scale * *d;
            *d = if fast { x / (t * t.sqrt()).sqrt() } else { x * t.powf(-p.beta) };
        }
    });
}

/// Normalise each channel of `[c, h, w]` over the `size x size` square around every cell
/// (Caffe's within-channel LRN) into `out` (same shape).
///
/// Channels are split across the pool. Each output row accumulates, for every row of the
/// window and every horizontal offset, the squared input row shifted by that offset: plain
/// slice loops the compiler vectorises, with one fixed summation order per cell, so the
/// result is the same at any thread count.
pub fn lrn_within(input: &[f32], [c, h, w]: [usize; 3], p: &LrnWithin, out: &mut [f32]) {
    let r = (p.size as usize - 1) / 2;
    let scale = p.alpha / (p.size as f32 * p.size as f32);
    let fast = p.beta == 0.75;
    let planes = out[..c * h * w].par_chunks_mut(h * w).zip(input[..c * h * w].par_chunks(h * w));
    planes.for_each(|(dst, src)| {
        for (y, row) in dst.chunks_exact_mut(w).enumerate() {
            row.fill(0.0);
            for yy in y.saturating_sub(r)..=(y + r).min(h - 1) {
                let s = &src[yy * w..(yy + 1) * w];
                // Offset dx adds s[x + dx]^2 into row[x] wherever both are in the image.
                for dx in 1..=r.min(w - 1) {
                    for (a, &v) in row[..w - dx].iter_mut().zip(&s[dx..]) {
                        *a += v * v;
                    }
                    for (a, &v) in row[dx..].iter_mut().zip(&s[..w - dx]) {
                        *a += v * v;
                    }
                }
                for (a, &v) in row.iter_mut().zip(s) {
                    *a += v * v;
                }
            }
            for (d, &x) in row.iter_mut().zip(&src[y * w..(y + 1) * w]) {
                let t = p.bias + scale * *d;
                *d = if fast { x / (t * t.sqrt()).sqrt() } else { x * t.powf(-p.beta) };
            }
        }
    });
}
