//! Max-pool and LRN fused into one pass, in either order.
//!
//! AlexNet normalises right before or right after each of its first two poolings: after
//! in CaffeNet and this project's spec (pool then LRN), before in the paper and the ONNX
//! zoo (LRN then pool). The two run as one step, and the output is written once:
//!
//! - pool then LRN: every channel's plane is pooled into the output (plane by plane, so
//!   each input plane is read as one stream; a band of rows across all channels would
//!   read short runs far apart, each at the cache's latency), then the output is
//!   normalised across channels in place, one band of pixels at a time through a
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
//! Bands have a fixed width, and every pixel is computed the same way in any band, so
//! results do not depend on the thread count.
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

/// Output values per channel in a band (a parallel task), for an output `oh x ow`.
/// LRN then pool: four whole rows, since a band also normalises the `kernel - stride`
/// input rows it shares with the next (taller bands do that less often). Pool then LRN
/// normalises pixels that are already pooled, each on its own, so a band is any run of
/// them: about 16 bands of whole multiples of 16 (a zmm, two ymm, four NEON vectors per
/// channel). conv2's 13 x 13 map is then 11 bands of 16 where four-row bands made 4 (a
/// quarter of the LRN each, which capped the step near 9x however many threads);
/// conv1's 27 x 27 map 16 of 48. A last band narrower than a vector (conv2's 9 pixels)
/// runs on partial vectors; joining it to the band before would make that band the
/// step's largest task (18.9x at most on 32 threads instead of 29.6x). Narrower bands
/// for the larger map measured slower (16: 1.3-2x the time at one and two threads, the
/// per-band work too small for its fixed costs).
fn band_width(order: Order, [oh, ow]: [usize; 2]) -> usize {
    match order {
        Order::PoolThenLrn => (oh * ow / 16).next_multiple_of(16).max(16),
        Order::LrnThenPool => 4 * ow,
    }
}
/// Channels per parallel pooling task of one image: 24 tasks for conv1's 96 channels.
const POOL_CHANNELS: usize = 4;

thread_local! {
    /// Each thread's band buffer; grows once to the largest band.
    pub(crate) static BAND: Scratch = const { crate::base::scratch::new_scratch!() };
}

/// Run `p` on one image: `input` is `[c, h, w]`, `out` is `[c, oh, ow]`, its bands
/// shared out over the current pool.
pub fn pool_lrn(cpu: Cpu, input: &[f32], p: &PoolLrn, out: &mut [f32]) {
    let [c, _, _] = p.input;
    let [oh, ow] = p.out;
    let out = &mut out[..c * oh * ow];
    if p.order == Order::PoolThenLrn {
        use rayon::prelude::*;
        let [_, h, w] = p.input;
        let (inp, outp) = (POOL_CHANNELS * h * w, POOL_CHANNELS * oh * ow);
        let tasks = out.par_chunks_mut(outp).zip(input[..c * h * w].par_chunks(inp));
        tasks.for_each(|(y, x)| crate::base::census::task(|| pool_planes(cpu, x, p, y)));
    }
    let view = MatMut::new(out, c, oh * ow, oh * ow);
    par_column_blocks(view, band_width(p.order, p.out), &|col0, band| run_band(cpu, input, p, col0, band));
}

/// Run `p` on a batch (`[n, c, h, w]` into `[n, c, oh, ow]`): whole images shared out
/// over the current pool, each one's bands in order (the same bands as [`pool_lrn`], so
/// the same results, with no imbalance from a band count that does not divide evenly).
/// With fewer than two images per thread (16 images on 32 threads), each image's pool
/// tasks and bands are shared out too, as [`pool_lrn`] does for one.
pub fn pool_lrn_batch(cpu: Cpu, input: &[f32], batch: usize, p: &PoolLrn, out: &mut [f32]) {
    use rayon::prelude::*;
    let [c, h, w] = p.input;
    let [oh, ow] = p.out;
    let (in_len, out_len) = (c * h * w, c * oh * ow);
    let out = &mut out[..batch * out_len];
    let pairs = out.par_chunks_mut(out_len).zip(input[..batch * in_len].par_chunks(in_len));
    if batch < 2 * rayon::current_num_threads() {
        return pairs.for_each(|(y, x)| crate::base::census::task(|| pool_lrn(cpu, x, p, y)));
    }
    pairs.for_each(|(y, x)| crate::base::census::task(|| {
        if p.order == Order::PoolThenLrn {
            pool_planes(cpu, x, p, y);
        }
        let mut rest = MatMut::new(y, c, oh * ow, oh * ow);
        let mut col0 = 0;
        while rest.cols() > 0 {
            let width = band_width(p.order, p.out).min(rest.cols());
            let (band, r) = rest.split_cols(width);
            run_band(cpu, x, p, col0, band);
            (rest, col0) = (r, col0 + width);
        }
    }));
}

/// Pool the whole planes of `input` (channels of `p`'s input) into those of `out`, one
/// after another on this thread.
fn pool_planes(cpu: Cpu, input: &[f32], p: &PoolLrn, out: &mut [f32]) {
    let [_, h, w] = p.input;
    let [oh, ow] = p.out;
    crate::base::census::work(out.len() as f64 * (p.pool.kernel[0] * p.pool.kernel[1]) as f64);
    scratch::with(&BAND, 2 * w, |rows| {
        let planes = out.chunks_exact_mut(oh * ow).enumerate();
        let src = |i: usize| &input[i * h * w..(i + 1) * h * w];
        cpu.vectorize(Planes { planes, src, geom: (h, w, oh, ow), p: &p.pool, rows });
    });
}

/// One band: output columns `col0 ..` of every channel (whole rows for LRN then pool,
/// a run of pixels for pool then LRN). Pool then LRN
/// finds the band already pooled in place (in `band`): pooling channel by channel reads
/// each input plane in one stream, where a band's windows across every channel would
/// read short runs far apart at the cache's latency.
fn run_band(cpu: Cpu, input: &[f32], p: &PoolLrn, col0: usize, mut band: MatMut<'_>) {
    let [c, h, w] = p.input;
    let [_, ow] = p.out;
    // A band pools its cells (after pool then LRN: already pooled) and normalises them.
    let taps = if p.order == Order::PoolThenLrn { 0 } else { p.pool.kernel[0] * p.pool.kernel[1] };
    crate::base::census::work((band.rows() * band.cols()) as f64 * (taps + p.lrn.size) as f64);
    // LRN then pool: whole output rows y0..y1, whose windows cover input rows iy0..iy1,
    // which it normalises.
    let (y0, y1) = (col0 / ow, (col0 + band.cols()).div_ceil(ow));
    let (kh, sh, pt) = (p.pool.kernel[0] as usize, p.pool.stride[0] as usize, p.pool.pads.top as usize);
    let iy0 = (y0 * sh).saturating_sub(pt);
    let iy1 = ((y1 - 1) * sh + kh).saturating_sub(pt).min(h);
    let np = match p.order {
        Order::PoolThenLrn => band.cols(),
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
/// One call into the ISA's shell for the whole band (a band may be a single vector wide).
fn lrn_band<'s>(
    cpu: Cpu,
    lrn: &Lrn,
    c: usize,
    np: usize,
    src: &dyn Fn(usize) -> &'s [f32],
    squares: &mut [f32],
    dst: &mut MatMut<'_>,
) {
    assert!(squares.len() >= c * np && dst.rows() >= c && dst.cols() >= np, "LRN band buffers too short");
    cpu.vectorize(LrnBand { lrn, c, np, src, squares, dst });
}

/// [`lrn_band`] as a [`Job`].
struct LrnBand<'a, 's, 'd, 'v> {
    lrn: &'a Lrn,
    c: usize,
    np: usize,
    src: &'a dyn Fn(usize) -> &'s [f32],
    squares: &'a mut [f32],
    dst: &'d mut MatMut<'v>,
}

impl Job for LrnBand<'_, '_, '_, '_> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, _: S) {
        let LrnBand { lrn, c, np, src, squares, dst } = self;
        let size = lrn.size as usize;
        let before = (size - 1) / 2;
        let after = size - 1 - before;
        let scale = lrn.alpha / lrn.size as f32;
        for ch in 0..c {
            // SAFETY: `S`'s token proves its vectors' instructions; equal lengths.
            unsafe { square_body::<S::F32>(&src(ch)[..np], &mut squares[ch * np..(ch + 1) * np]) }
        }
        for ch in 0..c {
            let (lo, hi) = (ch.saturating_sub(before), (ch + after).min(c - 1));
            let window = &squares[lo * np..(hi + 1) * np];
            let (x, out) = (&src(ch)[..np], &mut dst.row_mut(ch)[..np]);
            // SAFETY: as above; `x` and `out` hold np values, `window` whole rows of np.
            unsafe { normalise_body::<S::F32>(x, window, np, lrn.bias, scale, lrn.beta, out) }
        }
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
        // SAFETY: partial loads and stores of the n values `x` and `out` hold; the CPU
        // supports V (caller).
        unsafe {
            let v = V::load_first(x.as_ptr(), n);
            v.mul(v).store_first(out.as_mut_ptr(), n);
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
    if np < l && fast {
        // A band narrower than a vector, on partial vectors: the same operations in the
        // same order as the whole vectors below, so the same values. Lanes past `np` load
        // zero and are never stored.
        // SAFETY: partial loads of np values from each of `rows` rows of `window`, from
        // `x`, a partial store of np values into `out`; the CPU supports V (caller).
        unsafe {
            let mut s = V::load_first(window.as_ptr(), np);
            for r in 1..rows {
                s = s.add(V::load_first(window.as_ptr().add(r * np), np));
            }
            let t = s.mul_add(V::splat(scale), V::splat(bias));
            let xv = V::load_first(x.as_ptr(), np);
            xv.div(t.mul(t.sqrt()).sqrt()).store_first(out.as_mut_ptr(), np);
        }
        return;
    }
    if np < l {
        for j in 0..np {
            let s: f32 = (0..rows).map(|r| window[r * np + j]).sum();
            let t = s * scale + bias;
            out[j] = x[j] * t.powf(-beta);
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
