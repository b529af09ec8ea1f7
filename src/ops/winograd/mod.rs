//! Stride-1 convolutions by Winograd's minimal filtering (Lavin & Gray, "Fast Algorithms
//! for Convolutional Neural Networks", 2016): F(2x2, 3x3) on 4x4 tiles for 3x3 kernels,
//! F(3x3, 5x5) on 7x7 tiles for 5x5 ones.
//!
//! Each `m x m` block of outputs (2x2, or 3x3 for 5x5 kernels) comes from an `n x n` tile
//! of input `d` (`n = m + r - 1` for an `r x r` kernel): `Y = A^T [U . V] A` with `V =
//! B^T d B` (per input channel and tile) and `U = G g G^T` (per filter, at open, in f64).
//! For every one of the `n^2` positions `xi` of the transformed tile, the channel sums
//! are one GEMM: `M_xi [O, T] = U_xi [O, C] V_xi [C, T]` over the tiles `T` of every
//! image. Per block of outputs and channel pair that is 16 multiply-adds instead of 4 * 9
//! = 36 (3x3), 49 instead of 9 * 25 = 225 (5x5), at the price of the transforms: `B` and
//! `A` hold small integers and halves (the points are 0, 1, -1, then 2, -2, 1/2, and
//! infinity), so they are additions and a few multiplies. The transforms run on vectors
//! (`transforms`).
//!
//! Tiles are processed in blocks (at most `max_tiles` columns) so that `V` and `M` stay
//! near the caches and the workspace does not grow with the batch. Groups run side by side
//! on the pool, each from its input channels to its output channels on its share of the
//! threads. Every output's arithmetic is fixed by the geometry alone (its tile, the
//! GEMM's K slices), so results are bitwise identical for any thread count, any batch and
//! any ISA's transforms. Rounding differs slightly from a direct convolution's (the
//! transforms add and subtract and scale by up to 6: F(3x3, 5x5) in f32 is off the exact
//! result by about 2e-6 relative on random data), and so does one corner case: an Inf or NaN input spreads to the whole output block of its
//! tile.

mod transforms;

use rayon::prelude::*;

use super::im2col::{prepare, ConvGeom};
use crate::base::copy::copy_run;
use crate::base::mat::MatMut;
use crate::base::split::{halve, share};
use crate::cpu::Cpu;
use crate::gemm::{sgemm_view, Epilogue, PackedA, RowMajor};
use crate::plan::Pads;
use transforms as wsimd;

/// Which minimal filtering algorithm a layer runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// F(2x2, 3x3): 4x4 tiles, 2x2 outputs each.
    F2x3,
    /// F(3x3, 5x5): 7x7 tiles, 3x3 outputs each.
    F3x5,
}

impl Variant {
    /// Side of an input tile.
    const fn n(self) -> usize {
        match self {
            Variant::F2x3 => 4,
            Variant::F3x5 => 7,
        }
    }
    /// Side of an output block (the stride between tiles).
    const fn m(self) -> usize {
        wsimd::step(self.n())
    }
    /// Positions of a transformed tile: one GEMM each.
    const fn xi(self) -> usize {
        self.n() * self.n()
    }
    /// Most tiles (GEMM columns) per block, a multiple of 16, so that `V` and `M` stay near
    /// the caches: with F(2x2, 3x3) at 128, conv3's `V` and `M` (16 x (256 + 384) x 128
    /// values) are 5 MiB; with F(3x3, 5x5) at 48, each group's `M` of conv2 (49 x 128 x 48
    /// values) is 1.2 MiB, inside L2. The sweep that chose them is in
    /// `docs/performance.md`.
    const fn max_tiles(self) -> usize {
        match self {
            Variant::F2x3 => 128,
            Variant::F3x5 => 48,
        }
    }
}

/// The algorithm for this geometry, if any: a 3x3 or 5x5 kernel at stride 1.
pub fn variant(g: &ConvGeom) -> Option<Variant> {
    match (g.kh, g.kw, g.sh, g.sw) {
        (3, 3, 1, 1) => Some(Variant::F2x3),
        (5, 5, 1, 1) => Some(Variant::F3x5),
        _ => None,
    }
}

/// Whether a group of this geometry runs here.
pub fn applies(g: &ConvGeom) -> bool {
    variant(g).is_some()
}

/// Tiles per image: rows and columns of output blocks.
fn tiles(g: &ConvGeom, v: Variant) -> (usize, usize) {
    (g.oh.div_ceil(v.m()), g.ow.div_ceil(v.m()))
}

/// The geometry whose prepared input ([`prepare`]) covers every tile's window: the
/// padding below and to the right grown to `m * tiles + n - m` rows and columns.
fn tiled(g: &ConvGeom, v: Variant) -> ConvGeom {
    let (th, tw) = tiles(g, v);
    let (top, left) = (g.pads.top as usize, g.pads.left as usize);
    let bottom = (v.m() * th + v.n() - v.m()).saturating_sub(g.h + top);
    let right = (v.m() * tw + v.n() - v.m()).saturating_sub(g.w + left);
    let pads = Pads { top: g.pads.top, left: g.pads.left, bottom: bottom as u32, right: right as u32 };
    ConvGeom { pads, ..*g }
}

/// The geometry the input is prepared in: [`tiled`], in `m` phases per row (the columns
/// congruent to 0, 1, .., m - 1 modulo the tile step `m`).
fn prepared(g: &ConvGeom, v: Variant) -> ConvGeom {
    ConvGeom { sw: v.m(), ..tiled(g, v) }
}

/// Values per image of the padded input ([`conv`]'s `padded`), for `in_channels`
/// (0 if the geometry does not run here).
pub fn padded_len(g: &ConvGeom, in_channels: usize) -> usize {
    variant(g).map_or(0, |v| in_channels * prepared(g, v).plane())
}

/// Scratch values [`conv`] needs, whatever the batch: `V` and `M` of one block (0 if the
/// geometry does not run here).
pub fn scratch_len(g: &ConvGeom, in_channels: usize, out_channels: usize) -> usize {
    variant(g).map_or(0, |v| v.xi() * (in_channels + out_channels) * v.max_tiles())
}

/// Transform the OIHW weights of every group (`groups` blocks of `og x cg x r x r`) into
/// `groups * n^2` packed matrices `U_xi` (`og x cg`), group-major. Each filter is
/// transformed once and its `n^2` values written straight into their panels; one
/// parallel task per panel of `mr` output channels, on the current pool (this runs at
/// open).
pub fn pack_weights(w: &[f32], v: Variant, groups: usize, og: usize, cg: usize, mr: usize) -> Vec<PackedA> {
    match v {
        Variant::F2x3 => pack_n(w, &g_matrix::<4, 3>(&POINTS[..3], &SCALES4), groups, og, cg, mr),
        Variant::F3x5 => pack_n(w, &g_matrix::<7, 5>(&POINTS, &SCALES7), groups, og, cg, mr),
    }
}

/// [`pack_weights`] for `N x N` tiles and `R x R` filters.
fn pack_n<const N: usize, const R: usize>(
    w: &[f32],
    g: &[[f64; R]; N],
    groups: usize,
    og: usize,
    cg: usize,
    mr: usize,
) -> Vec<PackedA> {
    let mut out = Vec::with_capacity(groups * N * N);
    for gw in w.chunks_exact(og * cg * R * R).take(groups) {
        let mut packed: Vec<PackedA> = (0..N * N).map(|_| PackedA::zeroed(og, cg, mr)).collect();
        // Per panel of output channels, that panel of every position's matrix.
        let mut panels: Vec<Vec<&mut [f32]>> = (0..og.div_ceil(mr)).map(|_| Vec::with_capacity(N * N)).collect();
        for p in packed.iter_mut() {
            for (dst, panel) in panels.iter_mut().zip(p.panels_mut()) {
                dst.push(panel);
            }
        }
        panels.into_par_iter().enumerate().for_each(|(pi, mut dst)| {
            // Channel by channel, the panel's rows side by side: the writes go in order.
            for c in 0..cg {
                for r in 0..mr.min(og - pi * mr) {
                    let f = &gw[((pi * mr + r) * cg + c) * R * R..][..R * R];
                    for (xi, val) in filter_transform(g, f).iter().flatten().enumerate() {
                        dst[xi][c * mr + r] = *val;
                    }
                }
            }
        });
        out.extend(packed);
    }
    out
}

/// The scales of 4x4 tiles' finite points (0, 1, -1) that make `B` integral.
const SCALES4: [f64; 3] = [1.0, 2.0, 2.0];
/// The finite points of 7x7 tiles (the first three: 4x4 tiles').
const POINTS: [f64; 6] = [0.0, 1.0, -1.0, 2.0, -2.0, 0.5];
/// The scales of 7x7 tiles' finite points: `prod (p_i - p_k)` over the other points, so
/// `B` holds the coefficients of `prod (x - p_k)` (halves, exact in binary).
const SCALES7: [f64; 6] = [-2.0, -3.0, 9.0, 36.0, -60.0, 45.0 / 32.0];

/// `G` (`N x R`): row `i` holds `p_i^k / s_i` at the finite `points` `p`, the last row
/// picks the highest coefficient (the point at infinity). The `scales` `s` (one per
/// finite point) set `B` (`B^T = S^-1 V^-T` for the Vandermonde matrix `V` of the points).
fn g_matrix<const N: usize, const R: usize>(points: &[f64], scales: &[f64]) -> [[f64; R]; N] {
    let mut g = [[0.0f64; R]; N];
    for (i, row) in g.iter_mut().enumerate().take(N - 1) {
        let mut p = 1.0;
        for x in row.iter_mut() {
            *x = p / scales[i];
            p *= points[i];
        }
    }
    g[N - 1][R - 1] = 1.0;
    g
}

/// `U = G g G^T` of one `R x R` filter (row-major), in f64; row-major (`xi = N i + j`).
#[inline]
fn filter_transform<const N: usize, const R: usize>(g: &[[f64; R]; N], f: &[f32]) -> [[f32; N]; N] {
    let f: [[f64; R]; R] = std::array::from_fn(|a| std::array::from_fn(|b| f64::from(f[a * R + b])));
    // G g: N x R.
    let mut gg = [[0.0f64; R]; N];
    for (gi, g_i) in gg.iter_mut().zip(g) {
        for (&w, f_k) in g_i.iter().zip(&f) {
            for (x, &v) in gi.iter_mut().zip(f_k) {
                *x += w * v;
            }
        }
    }
    let mut u = [[0.0f32; N]; N];
    for (ui, gi) in u.iter_mut().zip(&gg) {
        for (x, g_j) in ui.iter_mut().zip(g) {
            let mut s = 0.0f64;
            for (a, b) in gi.iter().zip(g_j) {
                s += a * b;
            }
            *x = s as f32;
        }
    }
    u
}

/// Convolve `batch` images (`input` `[batch, groups * cg, h, w]`, `out` `[batch, o, oh,
/// ow]`) with the transformed weights `u` of [`pack_weights`]; `padded` holds at least
/// `batch *` [`padded_len`] values, `scratch` at least [`scratch_len`]. The geometry must
/// be one [`variant`] accepts.
#[allow(clippy::too_many_arguments)]
pub fn conv(
    cpu: Cpu,
    input: &[f32],
    batch: usize,
    g: &ConvGeom,
    u: &[PackedA],
    bias: &[f32],
    relu: bool,
    out: &mut [f32],
    padded: &mut [f32],
    scratch: &mut [f32],
) {
    let args = Args { cpu, input, batch, g, u, bias, relu };
    match variant(g) {
        Some(v) => run(Runs { v, cpu }, args, out, padded, scratch),
        None => debug_assert!(false, "winograd::conv on {g:?}"),
    }
}

/// [`conv`]'s read-only arguments.
struct Args<'a> {
    cpu: Cpu,
    input: &'a [f32],
    batch: usize,
    g: &'a ConvGeom,
    u: &'a [PackedA],
    bias: &'a [f32],
    relu: bool,
}

fn run(tf: Runs, a: Args<'_>, out: &mut [f32], padded: &mut [f32], scratch: &mut [f32]) {
    let Args { input, batch, g, u, bias, .. } = a;
    let v = tf.v;
    let xis = v.xi();
    let groups = u.len() / xis;
    let o = bias.len();
    let c = g.cg * groups;
    let tg = prepared(g, v);
    let (per_image, in_len) = (c * tg.plane(), c * g.h * g.w);
    for b in 0..batch {
        prepare(&input[b * in_len..(b + 1) * in_len], c, &tg, &mut padded[b * per_image..(b + 1) * per_image]);
    }
    let (vs, ms) = scratch[..xis * (c + o) * v.max_tiles()].split_at_mut(xis * c * v.max_tiles());
    let out_len = o * g.oh * g.ow;
    let out = MatMut::new(&mut out[..batch * out_len], batch, out_len, out_len);
    let share = Share { g0: 0, count: groups, vs, ms, out };
    by_groups(&tf, &a, &padded[..batch * per_image], share, rayon::current_num_threads());
}

/// Groups `g0 .. g0 + count` of a layer with their parts of the scratch (`V`: their
/// input channels, `M`: their output channels, each at most `max_tiles` columns per
/// position) and of the output (each image's planes of their output channels).
struct Share<'s> {
    g0: usize,
    count: usize,
    vs: &'s mut [f32],
    ms: &'s mut [f32],
    out: MatMut<'s>,
}

/// Run the groups of `s` side by side on `tasks` threads (recursive halving), each
/// share of groups through its whole pipeline ([`pipeline`]) on its own share of the
/// threads. A group's input channels, transformed tiles, products and output channels
/// are its own, so shares never wait for each other: at two threads and two groups
/// (conv2, 4 and 5 of the original network) each thread runs one group from its input
/// to its output, with its `V` and `M` in its own L2, where phases over all channels
/// would pass both through the other core's cache and wait for each other at every block.
fn by_groups<'s>(tf: &Runs, a: &Args<'_>, padded: &[f32], s: Share<'s>, tasks: usize) {
    let (v, g) = (tf.v, a.g);
    let og = a.bias.len() / (a.u.len() / v.xi());
    let split = |s: Share<'s>, half: usize| -> (Share<'s>, Share<'s>) {
        let (vl, vr) = s.vs.split_at_mut(half * g.cg * v.xi() * v.max_tiles());
        let (ml, mr) = s.ms.split_at_mut(half * og * v.xi() * v.max_tiles());
        let (ol, or) = s.out.split_cols(half * og * g.oh * g.ow);
        let l = Share { g0: s.g0, count: half, vs: vl, ms: ml, out: ol };
        let r = Share { g0: s.g0 + half, count: s.count - half, vs: vr, ms: mr, out: or };
        (l, r)
    };
    halve(s.count, tasks, s, &split, &|_, s, t| pipeline(tf, a, padded, s, t));
}

/// The groups of `s`, block of tiles by block: their `V = B^T d B`, the products
/// `M_xi = U_xi V_xi` of each (group, position), then `Y = A^T M A` (+ bias, ReLU) into
/// their output channels, each phase on `tasks` threads.
fn pipeline(tf: &Runs, a: &Args<'_>, padded: &[f32], s: Share<'_>, tasks: usize) {
    let Args { cpu, batch, g, u, bias, relu, .. } = *a;
    let Share { g0, count, vs, ms, mut out } = s;
    let v = tf.v;
    let (xis, step) = (v.xi(), v.m());
    let groups = u.len() / xis;
    let (og, cg) = (bias.len() / groups, g.cg);
    let tg = prepared(g, v);
    let (th, tw) = tiles(g, v);
    let (plane, row, phase) = (tg.plane(), tg.row_len(), tg.phase_w());
    let per_image = cg * groups * plane;
    let total = batch * th * tw;
    // Blocks of (nearly) equal size, rounded up to whole narrow panels (16 tiles): conv2
    // at batch 1 runs 48 + 33 tiles (32 + 16, then 32 + 1 by the edge kernel) rather
    // than 41 + 40 (each with a 9-column panel costing a whole narrow tile).
    let blocks = total.div_ceil(v.max_tiles());
    let tb_max = total.div_ceil(blocks.max(1)).next_multiple_of(16).min(v.max_tiles());
    for t0 in (0..total).step_by(tb_max.max(1)) {
        let tb = tb_max.min(total - t0);
        // Rows of V and M hold the block's tiles and no more: a GEMM's last few columns
        // cost little (conv3-5 at batch 1, 49 tiles: 32 + 16 + 1, the last one by the
        // edge kernel; padded to 64, a quarter of the products were thrown away).
        let ld = tb;
        // V: channel-major, [c][xi][tile], so each channel's share is one chunk.
        let vs = &mut vs[..count * cg * xis * ld];
        vs.par_chunks_mut(xis * ld).enumerate().for_each(|(ch, vc)| crate::base::census::task(|| {
            // Each of the channel's tiles: n x n values in, n^2 out, about 2 n operations each.
            crate::base::census::work((2 * v.n() * xis * tb) as f64);
            // Runs of up to TW tiles along a tile row, transformed together.
            let (mut b, mut ty, mut tx) = (t0 / (th * tw), (t0 % (th * tw)) / tw, t0 % tw);
            let mut t = 0;
            while t < tb {
                let n = TW.min(tw - tx).min(tb - t);
                // Tile tx's window starts at column 2 tx: in the even phase at tx.
                let at = b * per_image + (g0 * cg + ch) * plane + step * ty * row + tx;
                tf.input_tiles(&padded[at..], row, phase, n, ld - t, &mut vc[t..], ld);
                t += n;
                tx += n;
                if tx == tw {
                    tx = 0;
                    ty += 1;
                    if ty == th {
                        ty = 0;
                        b += 1;
                    }
                }
            }
        }));
        // M: [o][xi][tile]; product (group, xi) owns rows of its group, columns of its xi.
        let mview = MatMut::new(&mut ms[..count * og * xis * ld], count * og, xis * ld, xis * ld);
        let vs: &[f32] = vs;
        products(mview, g0, count, 0, xis, og, ld, tasks, &|grp, xi, c_view, t| {
            let b_src = RowMajor { data: &vs[(grp - g0) * cg * xis * ld + xi * ld..], ld: xis * ld };
            sgemm_view(cpu, &u[grp * xis + xi], &b_src, ld, c_view, Epilogue::default(), t);
        });
        // Y = A^T M A (+ bias, ReLU) into each image's output planes.
        let ms: &[f32] = ms;
        let b_first = t0 / (th * tw);
        let b_last = (t0 + tb - 1) / (th * tw);
        for b in b_first..=b_last {
            out.row_mut(b).par_chunks_mut(g.oh * g.ow).enumerate().for_each(|(oc, plane_out)| crate::base::census::task(|| {
                // Open-ended: a run near the end of a row reads on (lanes never stored).
                let mrow = &ms[oc * xis * ld..];
                let lo = (b * th * tw).max(t0);
                let hi = ((b + 1) * th * tw).min(t0 + tb);
                // Each tile: n^2 values in, m^2 out, about 2 n operations each.
                crate::base::census::work((2 * v.n() * xis * (hi - lo)) as f64);
                let (mut ty, mut tx) = ((lo - b * th * tw) / tw, (lo - b * th * tw) % tw);
                // M is several MiB and each channel reads n^2 rows of it: fetch the next
                // channel's lines while this one is transformed (the reads below would
                // otherwise wait on them one run at a time).
                if let Some(next) = ms.get((oc + 1) * xis * ld..(oc + 2) * xis * ld) {
                    for xi in 0..xis {
                        for x in next[xi * ld + lo - t0..xi * ld + hi - t0].iter().step_by(16) {
                            crate::simd::prefetch_read(x);
                        }
                    }
                }
                let bias = bias[g0 * og + oc];
                let mut t = lo - t0;
                while t < hi - t0 {
                    let n = TW.min(tw - tx).min(hi - t0 - t);
                    // Output rows step * ty .. (those inside), columns step * tx ...
                    let (rows, cols) = ((g.oh - step * ty).min(step), (step * n).min(g.ow - step * tx));
                    let at = step * (ty * g.ow + tx);
                    tf.output_tiles(mrow, ld, t, (bias, relu), &mut plane_out[at..], g.ow, rows, cols);
                    t += n;
                    tx += n;
                    if tx == tw {
                        tx = 0;
                        ty += 1;
                    }
                }
            }));
        }
    }
}

/// Tiles transformed together along a tile row: a vector's worth.
const TW: usize = wsimd::TW;

/// One algorithm's transforms on runs of up to `TW` tiles along a tile row, on `cpu`'s
/// 8-lane vectors ([`transforms`]). The input is prepared in `m` phases per row (columns
/// `0, m, 2m, ..`, then `1, m + 1, ..`: [`prepare`] at a stride of `m`), so the columns of
/// the windows of a run are plain loads.
#[derive(Clone, Copy, Debug)]
struct Runs {
    v: Variant,
    cpu: Cpu,
}

impl Runs {
    /// `V = B^T d B` for the `n` tiles (`1 <= n <= TW`) of a run whose first window starts
    /// at `x[0]` (rows `row` apart, the next phase's columns `phase` further on): position `xi` of tile `l`
    /// goes to `v[xi * ld + l]`. Lanes `n .. room` of each position may be written too
    /// (values a later run replaces). Straight from `x` unless the run reaches past its
    /// end (then from the run's rows copied out, the lanes past it reading zeros); straight
    /// into `v` when there is room for whole vectors (else through a stack buffer).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn input_tiles(&self, x: &[f32], row: usize, phase: usize, n: usize, room: usize, v: &mut [f32], ld: usize) {
        let tile = self.v.n();
        if x.len() >= wsimd::input_reach(tile, row, phase) {
            return self.input_from(x, row, phase, n, room, v, ld);
        }
        // Window row a, phase p: at most TW + 2 values (shifts up to 2).
        const PART: usize = TW + 8;
        let m = self.v.m();
        let mut tmp = [0.0f32; 21 * PART];
        for (k, part) in tmp.chunks_exact_mut(PART).take(m * tile).enumerate() {
            let from = (k / m) * row + (k % m) * phase;
            let len = x.len().saturating_sub(from).min(TW + 2);
            part[..len].copy_from_slice(&x[from..from + len]);
        }
        self.input_from(&tmp, m * PART, PART, n, room, v, ld);
    }

    /// [`Runs::input_tiles`] once the run's reads lie inside `x`.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn input_from(&self, x: &[f32], row: usize, phase: usize, n: usize, room: usize, v: &mut [f32], ld: usize) {
        let (tile, xis) = (self.v.n(), self.v.xi());
        if room >= TW && v.len() >= (xis - 1) * ld + TW {
            return wsimd::input(self.cpu, tile, x, row, phase, v, ld);
        }
        let mut buf = [0.0f32; 49 * TW];
        wsimd::input(self.cpu, tile, x, row, phase, &mut buf, TW);
        for (xi, part) in buf.chunks_exact(TW).take(xis).enumerate() {
            copy_run(&mut v[xi * ld..xi * ld + n], &part[..n]);
        }
    }

    /// `Y = A^T M A`, plus `bias`, then ReLU if asked, for the `TW` tiles at columns `t
    /// ..` of `m` (`[xi][tile]`, rows `ld` apart; lanes past the block read stale values,
    /// or zeros past the end of `m`), into the first `rows` output rows of the run at
    /// `out[r * stride ..]`, `cols` values each (each tile's two columns side by side).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn output_tiles(
        &self,
        m: &[f32],
        ld: usize,
        t: usize,
        (bias, relu): (f32, bool),
        out: &mut [f32],
        stride: usize,
        rows: usize,
        cols: usize,
    ) {
        let (tile, xis) = (self.v.n(), self.v.xi());
        if (xis - 1) * ld + t + TW <= m.len() {
            return wsimd::output(self.cpu, tile, &m[t..], ld, (bias, relu), out, stride, (rows, cols));
        }
        let mut buf = [0.0f32; 49 * TW];
        for (xi, part) in buf.chunks_exact_mut(TW).take(xis).enumerate() {
            let at = (xi * ld + t).min(m.len());
            let len = (m.len() - at).min(TW);
            part[..len].copy_from_slice(&m[at..at + len]);
        }
        wsimd::output(self.cpu, tile, &buf, TW, (bias, relu), out, stride, (rows, cols));
    }
}

/// Run `f(group, xi, block, tasks)` for the products `(group, xi)`, groups `g0..g0 +
/// groups`, positions `x0..x0 + xis`, on their blocks of `c` (rows `og` per group, columns
/// `tb` per position), side by side on `tasks` threads by recursive halving.
#[allow(clippy::too_many_arguments)]
fn products(
    c: MatMut<'_>,
    g0: usize,
    groups: usize,
    x0: usize,
    xis: usize,
    og: usize,
    tb: usize,
    tasks: usize,
    f: &(dyn Fn(usize, usize, MatMut<'_>, usize) + Sync),
) {
    let count = groups * xis;
    if count == 1 {
        return f(g0, x0, c, tasks);
    }
    let (lt, rt) = if tasks > 1 { share(tasks, count / 2, count) } else { (1, 1) };
    if groups > 1 {
        let gl = groups / 2;
        let (top, bottom) = c.split_rows(gl * og);
        let go_l = || products(top, g0, gl, x0, xis, og, tb, lt, f);
        let go_r = || products(bottom, g0 + gl, groups - gl, x0, xis, og, tb, rt, f);
        if tasks > 1 {
            rayon::join(|| crate::base::census::task(go_l), || crate::base::census::task(go_r));
        } else {
            go_l();
            go_r();
        }
    } else {
        let xl = xis / 2;
        let (left, right) = c.split_cols(xl * tb);
        let go_l = || products(left, g0, groups, x0, xl, og, tb, lt, f);
        let go_r = || products(right, g0, groups, x0 + xl, xis - xl, og, tb, rt, f);
        if tasks > 1 {
            rayon::join(|| crate::base::census::task(go_l), || crate::base::census::task(go_r));
        } else {
            go_l();
            go_r();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `V = B^T d B` for `B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]`, row-major (xi = 4 i + j).
    pub(super) fn input_transform(d: &[[f32; 4]; 4]) -> [f32; 16] {
        let col = |a: [f32; 4]| [a[0] - a[2], a[1] + a[2], a[2] - a[1], a[1] - a[3]];
        let rows: [[f32; 4]; 4] = std::array::from_fn(|j| col([d[0][j], d[1][j], d[2][j], d[3][j]]));
        // rows[j][i] = (B^T d)[i][j]; now the same along j.
        let mut v = [0.0f32; 16];
        for i in 0..4 {
            let t = col([rows[0][i], rows[1][i], rows[2][i], rows[3][i]]);
            v[i * 4..i * 4 + 4].copy_from_slice(&t);
        }
        v
    }

    /// `Y = A^T M A` for `A^T = [1 1 1 0; 0 1 -1 -1]`.
    pub(super) fn output_transform(m: &[f32; 16]) -> [[f32; 2]; 2] {
        let red = |a: [f32; 4]| [a[0] + a[1] + a[2], a[1] - a[2] - a[3]];
        let cols: [[f32; 2]; 4] = std::array::from_fn(|j| red([m[j], m[4 + j], m[8 + j], m[12 + j]]));
        let y0 = red([cols[0][0], cols[1][0], cols[2][0], cols[3][0]]);
        let y1 = red([cols[0][1], cols[1][1], cols[2][1], cols[3][1]]);
        [y0, y1]
    }

    /// `V = B^T d B` of one 7x7 tile: `bt7` down each column, then along each row.
    pub(super) fn input_transform7(d: &[[f32; 7]; 7]) -> [f32; 49] {
        let cols: [[f32; 7]; 7] = std::array::from_fn(|k| wsimd::bt7(std::array::from_fn(|i| d[i][k])));
        let mut v = [0.0f32; 49];
        for i in 0..7 {
            let w = wsimd::bt7(std::array::from_fn(|k| cols[k][i]));
            v[7 * i..7 * i + 7].copy_from_slice(&w);
        }
        v
    }

    /// `Y = A^T M A` of one 7x7 tile, `[row][column]`.
    pub(super) fn output_transform7(m: &[f32; 49]) -> [[f32; 3]; 3] {
        let [y0, y1, y2] = wsimd::at7_tile(|xi| m[xi]);
        std::array::from_fn(|r| [y0[r], y1[r], y2[r]])
    }

    #[test]
    fn seven_point_transforms_are_the_matrices() {
        // B^T and A^T as written in the doc comments, applied as plain matrix products.
        let bt: [[f64; 7]; 7] = [
            [-2.0, 4.0, 2.5, -5.0, -0.5, 1.0, 0.0],
            [0.0, 2.0, -2.0, -4.5, 0.5, 1.0, 0.0],
            [0.0, -2.0, 6.0, -3.5, -1.5, 1.0, 0.0],
            [0.0, 1.0, -1.5, -2.0, 1.5, 1.0, 0.0],
            [0.0, -1.0, 2.5, 0.0, -2.5, 1.0, 0.0],
            [0.0, 4.0, 0.0, -5.0, 0.0, 1.0, 0.0],
            [0.0, -2.0, 4.0, 2.5, -5.0, -0.5, 1.0],
        ];
        let at: [[f64; 7]; 3] = [
            [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
            [0.0, 1.0, -1.0, 2.0, -2.0, 0.5, 0.0],
            [0.0, 1.0, 1.0, 4.0, 4.0, 0.25, 1.0],
        ];
        // Small integers: every product and sum below is exact in f32 and f64.
        let d: [[f32; 7]; 7] = std::array::from_fn(|i| std::array::from_fn(|j| ((i * 7 + j) * 37 % 17) as f32 - 8.0));
        let v = input_transform7(&d);
        for i in 0..7 {
            for j in 0..7 {
                let want: f64 = (0..7)
                    .flat_map(|a| (0..7).map(move |b| (a, b)))
                    .map(|(a, b)| bt[i][a] * f64::from(d[a][b]) * bt[j][b])
                    .sum();
                assert_eq!(f64::from(v[7 * i + j]), want, "V[{i}][{j}]");
            }
        }
        let m: [f32; 49] = std::array::from_fn(|i| (i * 53 % 19) as f32 - 9.0);
        let y = output_transform7(&m);
        for (r, yr) in y.iter().enumerate() {
            for (c, &val) in yr.iter().enumerate() {
                let want: f64 = (0..7)
                    .flat_map(|a| (0..7).map(move |b| (a, b)))
                    .map(|(a, b)| at[r][a] * f64::from(m[7 * a + b]) * at[c][b])
                    .sum();
                assert_eq!(f64::from(val), want, "Y[{r}][{c}]");
            }
        }
        // Y = A^T [(G g G^T) . (B^T d B)] A is the correlation of d with g (in f64).
        let gf: [f32; 25] = std::array::from_fn(|i| (i * 29 % 13) as f32 / 4.0 - 1.5);
        let g = g_matrix::<7, 5>(&POINTS, &SCALES7);
        let u: Vec<f32> = filter_transform::<7, 5>(&g, &gf).into_iter().flatten().collect();
        let prod: [f32; 49] = std::array::from_fn(|i| u[i] * v[i]);
        let y = output_transform7(&prod);
        for (r, yr) in y.iter().enumerate() {
            for (c, &val) in yr.iter().enumerate() {
                let want: f64 = (0..5)
                    .flat_map(|a| (0..5).map(move |b| (a, b)))
                    .map(|(a, b)| f64::from(d[r + a][c + b]) * f64::from(gf[5 * a + b]))
                    .sum();
                assert!((f64::from(val) - want).abs() <= 1e-4 * (1.0 + want.abs()), "({r}, {c}): {val} vs {want}");
            }
        }
    }

    /// Direct convolution, one output at a time, in f64.
    #[allow(clippy::too_many_arguments)]
    fn direct(x: &[f32], w: &[f32], bias: &[f32], g: &ConvGeom, groups: usize, relu: bool) -> Vec<f32> {
        let o = bias.len();
        let og = o / groups;
        let mut y = vec![0.0f32; o * g.oh * g.ow];
        for oc in 0..o {
            let grp = oc / og;
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let mut s = f64::from(bias[oc]);
                    for ci in 0..g.cg {
                        for ky in 0..g.kh {
                            for kx in 0..g.kw {
                                let iy = (oy + ky) as isize - g.pads.top as isize;
                                let ix = (ox + kx) as isize - g.pads.left as isize;
                                if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                    continue;
                                }
                                let xv = x[((grp * g.cg + ci) * g.h + iy as usize) * g.w + ix as usize];
                                let wv = w[((oc * g.cg + ci) * g.kh + ky) * g.kw + kx];
                                s += f64::from(xv) * f64::from(wv);
                            }
                        }
                    }
                    let v = s as f32;
                    y[(oc * g.oh + oy) * g.ow + ox] = if relu { v.max(0.0) } else { v };
                }
            }
        }
        y
    }

    #[test]
    fn tile_runs_match_the_one_tile_transforms_bitwise() {
        let phase = TW + 5;
        let cpus = Cpu::all();
        for (v, cpu) in [Variant::F2x3, Variant::F3x5].into_iter().flat_map(|v| cpus.iter().map(move |&c| (v, c))) {
            let (runs, tile, xis, step) = (Runs { v, cpu }, v.n(), v.xi(), v.m());
            // A row length that splits into `step` phases of `phase` values.
            let row = step * phase;
            let x: Vec<f32> = (0..7 * row).map(|i| ((i * 7919) % 29) as f32 / 7.0 - 2.0 + (i as f32) * 1e-3).collect();
            // The same rows prepared: columns 0, step, 2 step, .., then 1, step + 1, ...
            let xp: Vec<f32> =
                (0..7 * row).map(|i| x[i / row * row + step * (i % row % phase) + i % row / phase]).collect();
            let ld = 3 * TW;
            let m: Vec<f32> = (0..49 * ld).map(|i| ((i * 104_729) % 31) as f32 / 5.0 - 3.0).collect();
            let window = |t: usize, i: usize, j: usize| x[i * row + step * t + j];
            let want = |t: usize| -> Vec<f32> {
                if tile == 4 {
                    input_transform(&std::array::from_fn(|i| std::array::from_fn(|j| window(t, i, j)))).to_vec()
                } else {
                    input_transform7(&std::array::from_fn(|i| std::array::from_fn(|j| window(t, i, j)))).to_vec()
                }
            };
            // Prepared offset of window column c of the first tile.
            let far = (0..tile).map(|c| (c % step) * phase + c / step).max().unwrap();
            for n in 1..=TW {
                // Whole rows, and a buffer ending right after the run's last window (the
                // lanes past `n` then read zeros).
                let short = &xp[..(tile - 1) * row + far + n];
                for xs in [&xp[..], short] {
                    let vld = TW + 3;
                    // Without room, exactly `n` lanes of each position are stored.
                    let mut exact = vec![f32::NAN; xis * vld];
                    runs.input_tiles(xs, row, phase, n, n, &mut exact, vld);
                    // With room for whole vectors in every row, they are stored straight.
                    let mut whole = vec![f32::NAN; xis * vld];
                    runs.input_tiles(xs, row, phase, n, vld, &mut whole, vld);
                    for t in 0..n {
                        for (xi, w) in want(t).iter().enumerate() {
                            let (e, h) = (exact[xi * vld + t], whole[xi * vld + t]);
                            assert_eq!(e.to_bits(), w.to_bits(), "{v:?} {cpu:?} n {n} tile {t} xi {xi}");
                            assert_eq!(h.to_bits(), w.to_bits(), "{v:?} {cpu:?} n {n} tile {t} xi {xi}");
                        }
                    }
                    assert!((0..xis).all(|xi| exact[xi * vld + n..(xi + 1) * vld].iter().all(|v| v.is_nan())));
                }
            }
            // The last case runs past the end of M (its last lanes are never stored).
            let m = &m[..xis * ld];
            for (t, bias, relu) in [(0, 0.5, true), (5, -1.25, false), (ld - TW, 0.0, true), (ld - 3, 0.25, false)] {
                let stride = step * TW + 3;
                let mut y = vec![f32::NAN; step * stride];
                runs.output_tiles(m, ld, t, (bias, relu), &mut y, stride, step, step * TW);
                for l in 0..TW.min(ld - t) {
                    let tile_m = |xi: usize| m[xi * ld + t + l];
                    let want: Vec<Vec<f32>> = if tile == 4 {
                        output_transform(&std::array::from_fn(tile_m)).iter().map(|r| r.to_vec()).collect()
                    } else {
                        output_transform7(&std::array::from_fn(tile_m)).iter().map(|r| r.to_vec()).collect()
                    };
                    for (r, wr) in want.iter().enumerate() {
                        for (k, &w) in wr.iter().enumerate() {
                            let w = w + bias;
                            let w = if relu { crate::reference::relu(w) } else { w };
                            let got = y[r * stride + step * l + k];
                            assert_eq!(got.to_bits(), w.to_bits(), "{v:?} t {t} lane {l} ({r}, {k})");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn matches_direct_convolution_on_odd_shapes() {
        let cases = [
            // (k, cg, h, w, pads, groups, o, batch)
            (3, 3, 7, 5, Pads::uniform(1), 1, 5, 1),
            (3, 4, 13, 13, Pads::uniform(1), 2, 6, 3),
            (3, 2, 6, 9, Pads { top: 0, left: 2, bottom: 1, right: 0 }, 1, 13, 2),
            (3, 1, 3, 3, Pads::default(), 1, 1, 1),
            (3, 5, 4, 11, Pads::uniform(2), 1, 3, 40),
            // Tile rows longer than one run of TW tiles.
            (3, 2, 5, 21, Pads::uniform(1), 1, 4, 2),
            (3, 3, 9, 2 * TW + 3, Pads { top: 1, left: 0, bottom: 0, right: 1 }, 1, 2, 3),
            (5, 3, 7, 5, Pads::uniform(2), 1, 5, 1),
            (5, 4, 13, 13, Pads::uniform(2), 2, 6, 3),
            (5, 2, 6, 9, Pads { top: 0, left: 3, bottom: 1, right: 0 }, 1, 13, 2),
            (5, 1, 5, 5, Pads::default(), 1, 1, 1),
            (5, 5, 4, 11, Pads::uniform(4), 1, 3, 40),
            (5, 2, 5, 2 * TW + 9, Pads::uniform(2), 1, 4, 2),
            (5, 3, 10, 2 * TW + 3, Pads { top: 1, left: 0, bottom: 0, right: 1 }, 1, 2, 3),
            // Groups split unevenly between threads, blocks of tiles spanning images.
            (3, 2, 9, 7, Pads::uniform(1), 3, 9, 2),
            (3, 3, 6, 6, Pads::uniform(1), 2, 4, 30),
            (5, 2, 6, 6, Pads::uniform(2), 2, 4, 20),
            (5, 1, 8, 8, Pads::uniform(2), 4, 8, 5),
        ];
        let cpus = Cpu::all();
        for (k, cg, h, w, pads, groups, o, batch) in cases {
            let oh = h + pads.top as usize + pads.bottom as usize + 1 - k;
            let ow = w + pads.left as usize + pads.right as usize + 1 - k;
            let g = ConvGeom { cg, h, w, kh: k, kw: k, sh: 1, sw: 1, pads, oh, ow };
            let v = variant(&g).unwrap();
            let c = cg * groups;
            let x: Vec<f32> = (0..batch * c * h * w).map(|i| ((i * 7919) % 23) as f32 / 11.0 - 1.0).collect();
            let wt: Vec<f32> = (0..o * cg * k * k).map(|i| ((i * 104_729) % 19) as f32 / 9.0 - 1.0).collect();
            let bias: Vec<f32> = (0..o).map(|i| i as f32 / 4.0 - 0.5).collect();
            for &cpu in &cpus {
                let u = pack_weights(&wt, v, groups, o / groups, cg, crate::gemm::blocks(cpu).mr);
                let mut results = Vec::new();
                for threads in [1, 2, 3, 4] {
                    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                    let mut out = vec![f32::NAN; batch * o * oh * ow];
                    let mut padded = vec![f32::NAN; batch * padded_len(&g, c)];
                    let mut scratch = vec![f32::NAN; scratch_len(&g, c, o)];
                    pool.install(|| conv(cpu, &x, batch, &g, &u, &bias, true, &mut out, &mut padded, &mut scratch));
                    for b in 0..batch {
                        let want = direct(&x[b * c * h * w..(b + 1) * c * h * w], &wt, &bias, &g, groups, true);
                        let got = &out[b * o * oh * ow..(b + 1) * o * oh * ow];
                        for (i, (a, e)) in got.iter().zip(&want).enumerate() {
                            assert!(
                                (a - e).abs() <= 1e-4 * (1.0 + e.abs()),
                                "{:?} {g:?} b{b} at {i}: {a} vs {e}",
                                cpu.isa()
                            );
                        }
                    }
                    results.push(out);
                }
                // Bitwise identical for any thread count.
                assert!(results.windows(2).all(|p| p[0].iter().zip(&p[1]).all(|(a, b)| a.to_bits() == b.to_bits())));
            }
        }
    }
}
