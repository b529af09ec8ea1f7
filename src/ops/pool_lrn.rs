//! Max-pool and LRN fused into one pass, in either order.
//!
//! AlexNet normalises right before or right after each of its first two poolings: after
//! in CaffeNet and this project's spec (pool then LRN), before in the paper and the ONNX
//! zoo (LRN then pool). The two run as one step, and the output is written once:
//!
//! - pool then LRN: every channel's plane is pooled into the output (plane by plane, so
//!   each input plane is read as one stream; a band of rows across all channels would
//!   read short runs far apart, each at the cache's latency), then the output is
//!   normalised across channels in place, one band of rows at a time through a
//!   per-thread buffer that stays in cache (the pooled map is a quarter of the input);
//! - LRN then pool: normalise the input rows the band's windows cover (all channels) into
//!   the buffer, then pool from it into the output. Bands overlap by `kernel - stride`
//!   input rows, which are normalised twice; bands are several rows tall to keep that small.
//!
//! Across channels, each value's square is computed once into the buffer and every window
//! sums its `size` squares directly. A running sum that adds the entering channel and
//! subtracts the leaving one would be cheaper by a few adds, but one Inf or NaN would then
//! poison every later channel of that pixel (`inf - inf`), and large values cancel badly;
//! the direct sum matches the ONNX definition and the reference exactly in which values
//! meet. The arithmetic (`x / (k + alpha/size * sum)^beta`, with `beta = 0.75` as
//! `x / sqrt(t * sqrt(t))`, no `powf`) is SIMD for every ISA through [`SimdF32`]; other
//! betas use `powf` per value. Pooling is `maxpool::pool_rows`, on the ISA's vectors,
//! NaN handled exactly on a slower path only where one may occur.
//!
//! Bands are a fixed number of rows, so results do not depend on the thread count.
#![allow(unsafe_code)]

use super::maxpool::{pool_rows_on, Planes};
use crate::base::mat::MatMut;
use crate::base::scratch::{self, Scratch};
use crate::base::split::par_column_blocks;
use crate::cpu::Cpu;
use crate::plan::{Lrn, MaxPool};
use crate::simd::{Job, Simd, SimdF32};

/// Which of the two runs first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Pool, then normalise the pooled map (CaffeNet, the spec network).
    PoolThenLrn,
    /// Normalise, then pool (the paper, the ONNX zoo).
    LrnThenPool,
}

/// A fused pool + LRN step on one `[c, h, w]` image producing `[c, oh, ow]`.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolLrn {
    /// The pooling.
    pub pool: MaxPool,
    /// The normalisation.
    pub lrn: Lrn,
    /// Which runs first.
    pub order: Order,
    /// Input `[c, h, w]`.
    pub input: [usize; 3],
    /// Output height and width.
    pub out: [usize; 2],
}

/// Output rows per band (a parallel task).
const BAND_ROWS: usize = 4;
/// Channels per parallel pooling task of one image.
const POOL_CHANNELS: usize = 8;

thread_local! {
    /// Each thread's band buffer; grows once to the largest band.
    static BAND: Scratch = const { Scratch::new() };
}

/// Run `p` on one image: `input` is `[c, h, w]`, `out` is `[c, oh, ow]`, its bands of
/// output rows shared out over the current pool.
pub fn pool_lrn(cpu: Cpu, input: &[f32], p: &PoolLrn, out: &mut [f32]) {
    let [c, _, _] = p.input;
    let [oh, ow] = p.out;
    let out = &mut out[..c * oh * ow];
    if p.order == Order::PoolThenLrn {
        use rayon::prelude::*;
        let [_, h, w] = p.input;
        let (inp, outp) = (POOL_CHANNELS * h * w, POOL_CHANNELS * oh * ow);
        let tasks = out.par_chunks_mut(outp).zip(input[..c * h * w].par_chunks(inp));
        tasks.for_each(|(y, x)| pool_planes(cpu, x, p, y));
    }
    let view = MatMut::new(out, c, oh * ow, oh * ow);
    par_column_blocks(view, BAND_ROWS * ow, &|col0, band| run_band(cpu, input, p, col0, band));
}

/// Run `p` on a batch (`[n, c, h, w]` into `[n, c, oh, ow]`): whole images shared out
/// over the current pool, each one's bands in order (the same bands as [`pool_lrn`], so
/// the same results, with no imbalance from a band count that does not divide evenly).
pub fn pool_lrn_batch(cpu: Cpu, input: &[f32], batch: usize, p: &PoolLrn, out: &mut [f32]) {
    use rayon::prelude::*;
    let [c, h, w] = p.input;
    let [oh, ow] = p.out;
    let (in_len, out_len) = (c * h * w, c * oh * ow);
    let out = &mut out[..batch * out_len];
    out.par_chunks_mut(out_len).zip(input[..batch * in_len].par_chunks(in_len)).for_each(|(y, x)| {
        if p.order == Order::PoolThenLrn {
            pool_planes(cpu, x, p, y);
        }
        let mut rest = MatMut::new(y, c, oh * ow, oh * ow);
        let mut col0 = 0;
        while rest.cols() > 0 {
            let width = (BAND_ROWS * ow).min(rest.cols());
            let (band, r) = rest.split_cols(width);
            run_band(cpu, x, p, col0, band);
            (rest, col0) = (r, col0 + width);
        }
    });
}

/// Pool the whole planes of `input` (channels of `p`'s input) into those of `out`, one
/// after another on this thread.
fn pool_planes(cpu: Cpu, input: &[f32], p: &PoolLrn, out: &mut [f32]) {
    let [_, h, w] = p.input;
    let [oh, ow] = p.out;
    scratch::with(&BAND, 2 * w, |rows| {
        let planes = out.chunks_exact_mut(oh * ow).enumerate();
        let src = |i: usize| &input[i * h * w..(i + 1) * h * w];
        cpu.vectorize(Planes { planes, src, geom: (h, w, oh, ow), p: &p.pool, rows });
    });
}

/// One band: output columns `col0 ..` (whole rows) of every channel. Pool then LRN
/// finds the band already pooled in place (in `band`): pooling channel by channel reads
/// each input plane in one stream, where a band's windows across every channel would
/// read short runs far apart at the cache's latency.
fn run_band(cpu: Cpu, input: &[f32], p: &PoolLrn, col0: usize, mut band: MatMut<'_>) {
    let [c, h, w] = p.input;
    let [_, ow] = p.out;
    let (y0, y1) = (col0 / ow, col0 / ow + band.cols() / ow);
    // LRN then pool normalises the input rows the band's windows cover.
    let (kh, sh, pt) = (p.pool.kernel[0] as usize, p.pool.stride[0] as usize, p.pool.pads.top as usize);
    let iy0 = (y0 * sh).saturating_sub(pt);
    let iy1 = ((y1 - 1) * sh + kh).saturating_sub(pt).min(h);
    let np = match p.order {
        Order::PoolThenLrn => (y1 - y0) * ow,
        Order::LrnThenPool => (iy1 - iy0) * w,
    };
    scratch::with(&BAND, 2 * c * np + 2 * w, |buf| {
        let (first, rest) = buf.split_at_mut(c * np);
        let (squares, pool_scratch) = rest.split_at_mut(c * np);
        match p.order {
            Order::PoolThenLrn => {
                let pooled = first;
                for ch in 0..c {
                    pooled[ch * np..(ch + 1) * np].copy_from_slice(&band.row_mut(ch)[..np]);
                }
                lrn_band(cpu, &p.lrn, c, np, &|ch| &pooled[ch * np..(ch + 1) * np], squares, &mut band);
            }
            Order::LrnThenPool => {
                let normed = first;
                let src = |ch: usize| &input[ch * h * w + iy0 * w..ch * h * w + iy1 * w];
                lrn_band(cpu, &p.lrn, c, np, &src, squares, &mut MatMut::new(normed, c, np, np));
                for ch in 0..c {
                    let band_rows = &normed[ch * np..(ch + 1) * np];
                    pool_rows_on(cpu, band_rows, iy0, h, w, &p.pool, y0, y1, ow, band.row_mut(ch), pool_scratch);
                }
            }
        }
    });
}

/// Normalise `c` channels of `np` values each across channels: `src(ch)` gives channel
/// `ch`'s input, row `ch` of `dst` receives its output; `squares` is scratch of `c * np`.
fn lrn_band<'s>(
    cpu: Cpu,
    lrn: &Lrn,
    c: usize,
    np: usize,
    src: &dyn Fn(usize) -> &'s [f32],
    squares: &mut [f32],
    dst: &mut MatMut<'_>,
) {
    let size = lrn.size as usize;
    let before = (size - 1) / 2;
    let after = size - 1 - before;
    let scale = lrn.alpha / lrn.size as f32;
    for ch in 0..c {
        square(cpu, &src(ch)[..np], &mut squares[ch * np..(ch + 1) * np]);
    }
    for ch in 0..c {
        let (lo, hi) = (ch.saturating_sub(before), (ch + after).min(c - 1));
        let window = &squares[lo * np..(hi + 1) * np];
        normalise(cpu, &src(ch)[..np], window, np, lrn.bias, scale, lrn.beta, &mut dst.row_mut(ch)[..np]);
    }
}

/// `out[i] = x[i]^2`.
fn square(cpu: Cpu, x: &[f32], out: &mut [f32]) {
    let n = x.len().min(out.len());
    cpu.vectorize(Square { x: &x[..n], out: &mut out[..n] });
}

/// `out[i] = x[i] / (bias + scale * sum_j window[j * np + i])^beta`.
#[allow(clippy::too_many_arguments)]
fn normalise(cpu: Cpu, x: &[f32], window: &[f32], np: usize, bias: f32, scale: f32, beta: f32, out: &mut [f32]) {
    cpu.vectorize(Normalise { x, window, np, bias, scale, beta, out });
}

/// [`square`] as a [`Job`].
struct Square<'a> {
    x: &'a [f32],
    out: &'a mut [f32],
}

impl Job for Square<'_> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, _: S) {
        let n = self.x.len().min(self.out.len());
        // SAFETY: `S`'s token proves its vectors' instructions; the lengths are equal.
        unsafe { square_body::<S::F32>(&self.x[..n], &mut self.out[..n]) }
    }
}

/// [`normalise`] as a [`Job`].
struct Normalise<'a> {
    x: &'a [f32],
    window: &'a [f32],
    np: usize,
    bias: f32,
    scale: f32,
    beta: f32,
    out: &'a mut [f32],
}

impl Job for Normalise<'_> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, _: S) {
        let Normalise { x, window, np, bias, scale, beta, out } = self;
        assert!(x.len() >= np && out.len() >= np && window.len() >= np && window.len().is_multiple_of(np.max(1)));
        // SAFETY: `S`'s token proves its vectors' instructions; lengths checked above.
        unsafe { normalise_body::<S::F32>(&x[..np], window, np, bias, scale, beta, &mut out[..np]) }
    }
}

/// Generic `out = x * x`.
///
/// # Safety
/// The CPU supports `V`; `x` and `out` have equal lengths.
#[inline(always)]
unsafe fn square_body<V: SimdF32>(x: &[f32], out: &mut [f32]) {
    let (n, l) = (x.len().min(out.len()), V::LANES);
    if n < l {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = v * v;
        }
        return;
    }
    // Whole vectors, the last one ending at `n` (overlapping the one before it when `l`
    // does not divide `n`: those values are computed twice, identically).
    let mut i = 0;
    // SAFETY: every access is at i + l <= n; the CPU supports V (caller).
    unsafe {
        loop {
            let v = V::load(x.as_ptr().add(i));
            v.mul(v).store(out.as_mut_ptr().add(i));
            if i + l == n {
                break;
            }
            i = (i + l).min(n - l);
        }
    }
}

/// Generic normalisation (see [`normalise`]).
///
/// # Safety
/// The CPU supports `V`; `x` and `out` hold `np` values, `window` a multiple of `np`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn normalise_body<V: SimdF32>(
    x: &[f32],
    window: &[f32],
    np: usize,
    bias: f32,
    scale: f32,
    beta: f32,
    out: &mut [f32],
) {
    let (l, rows) = (V::LANES, window.len() / np.max(1));
    let fast = beta == 0.75;
    if np < l {
        for j in 0..np {
            let s: f32 = (0..rows).map(|r| window[r * np + j]).sum();
            let t = s * scale + bias;
            out[j] = if fast { x[j] / (t * t.sqrt()).sqrt() } else { x[j] * t.powf(-beta) };
        }
        return;
    }
    // Whole vectors, the last one ending at `np` (overlapping the one before it when `l`
    // does not divide `np`: those values are computed twice, identically, as `out` and
    // `x` are distinct).
    let mut i = 0;
    // SAFETY: every vector access is at i + l <= np within a row of np values; the CPU
    // supports V (caller).
    unsafe {
        let (vb, vs) = (V::splat(bias), V::splat(scale));
        loop {
            let mut s = V::load(window.as_ptr().add(i));
            for r in 1..rows {
                s = s.add(V::load(window.as_ptr().add(r * np + i)));
            }
            let t = s.mul_add(vs, vb);
            let xv = V::load(x.as_ptr().add(i));
            if fast {
                xv.div(t.mul(t.sqrt()).sqrt()).store(out.as_mut_ptr().add(i));
            } else {
                t.store(out.as_mut_ptr().add(i));
                for j in i..i + l {
                    out[j] = x[j] * out[j].powf(-beta);
                }
            }
            if i + l == np {
                break;
            }
            i = (i + l).min(np - l);
        }
    }
}

#[cfg(test)]
mod tests {
    //! Small enough for Miri: both orders, padding and ceil mode, against the reference.
    use super::*;
    use crate::plan::Pads;
    use crate::reference;

    #[test]
    fn tiny_bands_match_reference() {
        let (c, h, w) = (6, 7, 9);
        let input: Vec<f32> = (0..c * h * w).map(|i| ((i * 37) % 23) as f32 - 11.0).collect();
        let pool = MaxPool {
            kernel: [3, 2],
            stride: [2, 2],
            pads: Pads { top: 0, left: 1, bottom: 1, right: 0 },
            ceil_mode: true,
        };
        let lrn = Lrn { size: 4, alpha: 0.01, beta: 0.75, bias: 2.0 };
        let (oh, ow) = (4, 5);
        let pooled = reference::maxpool(&input, [c, h, w], &pool, [oh, ow]);
        let pool_then_lrn = reference::lrn(&pooled, [c, oh, ow], &lrn);
        let normed = reference::lrn(&input, [c, h, w], &lrn);
        let lrn_then_pool = reference::maxpool(&normed, [c, h, w], &pool, [oh, ow]);
        for cpu in Cpu::all() {
            let isa = cpu.isa();
            for (order, want) in [(Order::PoolThenLrn, &pool_then_lrn), (Order::LrnThenPool, &lrn_then_pool)] {
                let p = PoolLrn { pool: pool.clone(), lrn: lrn.clone(), order, input: [c, h, w], out: [oh, ow] };
                let mut got = vec![f32::NAN; c * oh * ow];
                pool_lrn(cpu, &input, &p, &mut got);
                for (g, e) in got.iter().zip(want.iter()) {
                    assert!((g - e).abs() <= 1e-5 * (1.0 + e.abs()), "{isa} {order:?}: {g} vs {e}");
                }
            }
        }
    }
}
