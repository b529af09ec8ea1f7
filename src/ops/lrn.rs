//! Local response normalisation of one CHW image: across channels (AlexNet) and within
//! each channel (Caffe's `WITHIN_CHANNEL`).
//!
//! Channels are split across the pool; each output channel sums the squares of its
//! window directly (the window is small: 5 in every AlexNet). `x^-0.75` (AlexNet's beta)
//! is computed as `1/sqrt(t*sqrt(t))` with no `powf`; other betas take `powf`.

use rayon::prelude::*;

use crate::base::scratch::{self, Scratch};
use crate::cpu::Cpu;
use crate::plan::{Lrn, LrnWithin};
use crate::simd::{Job, Simd};

thread_local! {
    /// Each thread's plane of horizontal sums for [`lrn_within`]; grows once.
    pub(crate) static PLANE: Scratch = const { crate::base::scratch::new_scratch!() };
}

/// Normalise `[c, hw]` into `out` (same shape).
pub fn lrn(input: &[f32], c: usize, hw: usize, p: &Lrn, out: &mut [f32]) {
    let size = p.size as usize;
    let before = (size - 1) / 2;
    let after = size - 1 - before;
    let scale = p.alpha / p.size as f32;
    let fast = p.beta == 0.75;
    out[..c * hw].par_chunks_mut(hw).enumerate().for_each(|(ch, dst)| crate::base::census::task(|| {
        crate::base::census::work((hw * size) as f64);
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
    }));
}

/// Normalise each channel of `[c, h, w]` over the `size x size` square around every cell
/// (Caffe's within-channel LRN) into `out` (same shape).
///
/// Channels are split across the pool, and each plane is done inside the ISA's
/// target-feature shell in two separable passes over a per-thread plane of sums: every
/// row's squares summed over the horizontal window (the row's squares plus its shifted
/// copies, whole-row vector adds), then each output row sums its window's rows of those
/// and normalises. `2 size` adds per cell instead of `size^2`, in one fixed order per
/// cell, so the result is the same at any thread count.
pub fn lrn_within(cpu: Cpu, input: &[f32], [c, h, w]: [usize; 3], p: &LrnWithin, out: &mut [f32]) {
    struct Plane<'a> {
        src: &'a [f32],
        dst: &'a mut [f32],
        hw: (usize, usize),
        p: &'a LrnWithin,
        rowsums: &'a mut [f32],
    }
    impl Job for Plane<'_> {
        type Output = ();
        #[inline(always)]
        fn run<S: Simd>(self, _: S) {
            let (h, w) = self.hw;
            let (src, dst, p) = (self.src, self.dst, self.p);
            let r = (p.size as usize - 1) / 2;
            let scale = p.alpha / (p.size as f32 * p.size as f32);
            let fast = p.beta == 0.75;
            // Horizontal pass: sums[y][x] = sum of src[y][x - r ..= x + r]^2 inside the row.
            let sums = &mut self.rowsums[..h * w];
            for (row, s) in sums.chunks_exact_mut(w).zip(src.chunks_exact(w)) {
                for (a, &v) in row.iter_mut().zip(s) {
                    *a = v * v;
                }
                for dx in 1..=r.min(w - 1) {
                    for (a, &v) in row[..w - dx].iter_mut().zip(&s[dx..]) {
                        *a += v * v;
                    }
                    for (a, &v) in row[dx..].iter_mut().zip(&s[..w - dx]) {
                        *a += v * v;
                    }
                }
            }
            // Vertical pass and the normalisation, one output row at a time.
            for (y, out) in dst.chunks_exact_mut(w).enumerate() {
                let (lo, hi) = (y.saturating_sub(r), (y + r).min(h - 1));
                out.copy_from_slice(&sums[lo * w..(lo + 1) * w]);
                for yy in lo + 1..=hi {
                    for (a, &v) in out.iter_mut().zip(&sums[yy * w..(yy + 1) * w]) {
                        *a += v;
                    }
                }
                for (d, &x) in out.iter_mut().zip(&src[y * w..(y + 1) * w]) {
                    let t = p.bias + scale * *d;
                    *d = if fast { x / (t * t.sqrt()).sqrt() } else { x * t.powf(-p.beta) };
                }
            }
        }
    }
    if h * w == 0 {
        return;
    }
    let planes = out[..c * h * w].par_chunks_mut(h * w).zip(input[..c * h * w].par_chunks(h * w));
    planes.for_each(|(dst, src)| {
        crate::base::census::task(|| {
            crate::base::census::work((2 * h * w) as f64 * p.size as f64);
            scratch::with(&PLANE, h * w, |rowsums| cpu.vectorize(Plane { src, dst, hw: (h, w), p, rowsums }))
        })
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference;

    #[test]
    fn within_channel_matches_the_reference_on_every_isa() {
        // Odd maps, windows from 1 to wider than the map, AlexNet's beta and others.
        for ([c, h, w], size, beta) in [([3, 7, 11], 3, 0.75), ([5, 1, 9], 5, 0.5), ([2, 4, 3], 9, 1.0), ([17, 13, 13], 1, 0.6)]
        {
            let input: Vec<f32> = (0..c * h * w).map(|i| ((i * 53) % 31) as f32 * 0.25 - 3.0).collect();
            let p = LrnWithin { size, alpha: 0.02, beta, bias: 1.5 };
            let want = reference::lrn_within(&input, [c, h, w], &p);
            for cpu in Cpu::all() {
                let mut got = vec![f32::NAN; c * h * w];
                lrn_within(cpu, &input, [c, h, w], &p, &mut got);
                for (g, e) in got.iter().zip(&want) {
                    assert!((g - e).abs() <= 1e-5 * (1.0 + e.abs()), "{} {p:?} on {c}x{h}x{w}: {g} vs {e}", cpu.isa());
                }
            }
        }
    }
}
