//! Cross-channel local response normalisation of one CHW image.
//!
//! Channels are split across the pool; each output channel sums the squares of its
//! window directly (the window is small: 5 in every AlexNet). `x^-0.75` (AlexNet's beta)
//! is computed as `1/sqrt(t*sqrt(t))` with no `powf`; other betas take `powf`.

use rayon::prelude::*;

use crate::plan::Lrn;

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
