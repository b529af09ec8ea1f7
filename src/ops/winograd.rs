//! 3x3 stride-1 convolutions by Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray,
//! "Fast Algorithms for Convolutional Neural Networks", 2016).
//!
//! Each 2x2 block of outputs comes from a 4x4 tile of input `d`: `Y = A^T [U . V] A` with
//! `V = B^T d B` (per input channel and tile), `U = G g G^T` (per filter, at open). For
//! every one of the 16 positions `xi` of the 4x4 transformed tile, the channel sums are
//! one GEMM: `M_xi [O, T] = U_xi [O, C] V_xi [C, T]` over the tiles `T` of every image.
//! That is 16 multiply-adds per 2x2 output block and channel pair instead of 4 * 9 = 36:
//! 2.25x fewer, at the price of the transforms (additions only: `B` and `A` hold 0 and
//! +-1; `G`'s halves are applied to the weights once, at open).
//!
//! Tiles are processed in blocks (at most [`MAX_TILES`] columns) so that `V` and `M` stay
//! in cache and the workspace does not grow with the batch. The 16 products of every
//! group run side by side on the pool, each on its share of the threads. Every output's
//! arithmetic is fixed by the geometry alone (its tile, the GEMM's K slices), so results
//! are bitwise identical for any thread count and any batch. Rounding differs slightly
//! from a direct convolution's (the transforms add and subtract), and so does one corner
//! case: an Inf or NaN input spreads to the whole 2x2 output block of its tile.

use rayon::prelude::*;

use super::im2col::{prepare, ConvGeom};
use crate::gemm::pack::copy_run;
use crate::gemm::{sgemm_view, Epilogue, Kernel, MatMut, PackedA, RowMajor};
use crate::plan::Pads;

/// Positions of a transformed tile.
const XI: usize = 16;

/// Most tiles (GEMM columns) per block; a multiple of `PAD`. 128 keeps V and M of
/// conv3 (16 x (256 + 384) x 128 values, 5 MiB) near the caches; 256 ran 10-20% slower
/// at batch 16, 64 no faster.
pub const MAX_TILES: usize = 128;

/// V's and M's rows are padded to a multiple of this many tiles (a multiple of every
/// kernel's narrow panel width).
const PAD: usize = 16;

/// Whether a group of this geometry runs here: a 3x3 kernel at stride 1.
pub fn applies(g: &ConvGeom) -> bool {
    g.kh == 3 && g.kw == 3 && g.sh == 1 && g.sw == 1
}

/// Tiles per image: rows and columns of 2x2 output blocks.
fn tiles(g: &ConvGeom) -> (usize, usize) {
    (g.oh.div_ceil(2), g.ow.div_ceil(2))
}

/// The geometry whose prepared input ([`prepare`]) covers every tile's 4x4 window: the
/// padding below and to the right grown to `2 * tiles + 2` rows and columns.
fn tiled(g: &ConvGeom) -> ConvGeom {
    let (th, tw) = tiles(g);
    let (top, left) = (g.pads.top as usize, g.pads.left as usize);
    let bottom = (2 * th + 2).saturating_sub(g.h + top);
    let right = (2 * tw + 2).saturating_sub(g.w + left);
    let pads = Pads { top: g.pads.top, left: g.pads.left, bottom: bottom as u32, right: right as u32 };
    ConvGeom { pads, ..*g }
}

/// Values per image of the padded input ([`conv3x3`]'s `padded`), for `in_channels`.
pub fn padded_len(g: &ConvGeom, in_channels: usize) -> usize {
    in_channels * tiled(g).plane()
}

/// Scratch values [`conv3x3`] needs, whatever the batch: `V` and `M` of one block.
pub fn scratch_len(in_channels: usize, out_channels: usize) -> usize {
    XI * (in_channels + out_channels) * MAX_TILES
}

/// Transform the OIHW weights of every group (`groups` blocks of `og x cg x 3 x 3`) into
/// `groups * 16` packed matrices `U_xi` (`og x cg`), group-major. Filters are transformed
/// in parallel on the current pool (this runs at open, where it was most of the time).
pub fn pack_weights(w: &[f32], groups: usize, og: usize, cg: usize, mr: usize) -> Vec<PackedA> {
    let mut out = Vec::with_capacity(groups * XI);
    // u[o][xi][c]: each output channel's transformed filters, one parallel task per o.
    let mut u = vec![0.0f32; og * XI * cg];
    for gw in w.chunks_exact(og * cg * 9).take(groups) {
        u.par_chunks_mut(XI * cg).zip(gw.par_chunks(cg * 9)).for_each(|(uo, wo)| {
            for (c, f) in wo.chunks_exact(9).enumerate() {
                for (xi, v) in filter_transform(f).into_iter().enumerate() {
                    uo[xi * cg + c] = v;
                }
            }
        });
        let u = &u;
        let packed: Vec<PackedA> = (0..XI)
            .into_par_iter()
            .map(|xi| {
                let m: Vec<f32> =
                    (0..og).flat_map(|o| &u[(o * XI + xi) * cg..(o * XI + xi + 1) * cg]).copied().collect();
                PackedA::pack(&m, og, cg, mr)
            })
            .collect();
        out.extend(packed);
    }
    out
}

/// `U = G g G^T` of one 3x3 filter (row-major), in f64, for
/// `G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]`.
fn filter_transform(f: &[f32]) -> [f32; XI] {
    let g: [f64; 9] = std::array::from_fn(|i| f64::from(f[i]));
    let mut gg = [[0.0f64; 3]; 4];
    for c in 0..3 {
        let (a, b, d) = (g[c], g[3 + c], g[6 + c]);
        gg[0][c] = a;
        gg[1][c] = (a + b + d) / 2.0;
        gg[2][c] = (a - b + d) / 2.0;
        gg[3][c] = d;
    }
    let mut u = [0.0f32; XI];
    for (r, row) in gg.iter().enumerate() {
        let (a, b, d) = (row[0], row[1], row[2]);
        let t = [a, (a + b + d) / 2.0, (a - b + d) / 2.0, d];
        for (c, v) in t.into_iter().enumerate() {
            u[r * 4 + c] = v as f32;
        }
    }
    u
}

/// Convolve `batch` images (`input` `[batch, groups * cg, h, w]`, `out` `[batch, o, oh,
/// ow]`) with the transformed weights `u` of [`pack_weights`]; `padded` holds at least
/// `batch *` [`padded_len`] values, `scratch` at least [`scratch_len`].
#[allow(clippy::too_many_arguments)]
pub fn conv3x3(
    kernel: Kernel,
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
    let groups = u.len() / XI;
    let (o, og, cg) = (bias.len(), bias.len() / groups.max(1), g.cg);
    let c = cg * groups;
    let tg = tiled(g);
    let (th, tw) = tiles(g);
    let (plane, row) = (tg.plane(), tg.row_len());
    let per_image = c * plane;
    let in_len = c * g.h * g.w;
    for b in 0..batch {
        prepare(&input[b * in_len..(b + 1) * in_len], c, &tg, &mut padded[b * per_image..(b + 1) * per_image]);
    }
    let padded = &padded[..batch * per_image];
    let total = batch * th * tw;
    let blocks = total.div_ceil(MAX_TILES);
    let tb_max = total.div_ceil(blocks.max(1));
    let (v, m) = scratch[..XI * (c + o) * MAX_TILES].split_at_mut(XI * c * MAX_TILES);
    let out_len = o * g.oh * g.ow;
    let tasks = rayon::current_num_threads();
    for t0 in (0..total).step_by(tb_max.max(1)) {
        let tb = tb_max.min(total - t0);
        // Rows of V and M are padded to whole narrow panels: the GEMMs then run full
        // tiles only (columns past `tb` hold stale values whose products are never read).
        let ld = tb.next_multiple_of(PAD);
        // V: channel-major, [c][xi][tile], so each channel's share is one chunk.
        let v = &mut v[..c * XI * ld];
        v.par_chunks_mut(XI * ld).enumerate().for_each(|(ch, vc)| {
            // Runs of up to TW tiles along a tile row, transformed together.
            let (mut b, mut ty, mut tx) = (t0 / (th * tw), (t0 % (th * tw)) / tw, t0 % tw);
            let mut t = 0;
            while t < tb {
                let n = TW.min(tw - tx).min(tb - t);
                let at = b * per_image + ch * plane + 2 * ty * row + 2 * tx;
                let vt = input_tiles(&padded[at..], row, n);
                for (xi, vals) in vt.iter().enumerate() {
                    copy_run(&mut vc[xi * ld + t..xi * ld + t + n], &vals[..n]);
                }
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
        });
        // M: [o][xi][tile]; product (group, xi) owns rows of its group, columns of its xi.
        let mview = MatMut::new(&mut m[..o * XI * ld], o, XI * ld, XI * ld);
        let v: &[f32] = v;
        products(mview, 0, groups, 0, XI, og, ld, tasks, &|grp, xi, c_view, t| {
            let b_src = RowMajor { data: &v[grp * cg * XI * ld + xi * ld..], ld: XI * ld };
            sgemm_view(kernel, &u[grp * XI + xi], &b_src, ld, c_view, Epilogue::default(), t);
        });
        // Y = A^T M A (+ bias, ReLU) into each image's output planes.
        let m: &[f32] = m;
        let b_first = t0 / (th * tw);
        let b_last = (t0 + tb - 1) / (th * tw);
        for b in b_first..=b_last {
            let img = &mut out[b * out_len..(b + 1) * out_len];
            img.par_chunks_mut(g.oh * g.ow).enumerate().for_each(|(oc, plane_out)| {
                let mrow = &m[oc * XI * ld..(oc + 1) * XI * ld];
                let lo = (b * th * tw).max(t0);
                let hi = ((b + 1) * th * tw).min(t0 + tb);
                let (mut ty, mut tx) = ((lo - b * th * tw) / tw, (lo - b * th * tw) % tw);
                // M is several MiB and each channel reads 16 rows of it: fetch the next
                // channel's lines while this one is transformed (the reads below would
                // otherwise wait on them one run at a time).
                if let Some(next) = m.get((oc + 1) * XI * ld..(oc + 2) * XI * ld) {
                    for xi in 0..XI {
                        for x in next[xi * ld + lo - t0..xi * ld + hi - t0].iter().step_by(16) {
                            crate::simd::prefetch_read(x);
                        }
                    }
                }
                let bias = bias[oc];
                let mut t = lo - t0;
                while t < hi - t0 {
                    let n = TW.min(tw - tx).min(hi - t0 - t);
                    let y = output_tiles(mrow, ld, t, bias, relu);
                    // Output rows 2ty and 2ty + 1 (if inside), columns 2tx .. 2(tx + n).
                    let (ox, cols) = (2 * tx, (2 * n).min(g.ow - 2 * tx));
                    for (i, yr) in y.iter().enumerate().take((g.oh - 2 * ty).min(2)) {
                        let at = (2 * ty + i) * g.ow + ox;
                        copy_run(&mut plane_out[at..at + cols], &yr[..cols]);
                    }
                    t += n;
                    tx += n;
                    if tx == tw {
                        tx = 0;
                        ty += 1;
                    }
                }
            });
        }
    }
}

/// Tiles transformed together along a tile row: a vector's worth for the compiler.
const TW: usize = 8;

/// `V = B^T d B` (`B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]`) for `TW` neighbouring
/// tiles whose 4x4 windows start at `x[0]`, `x[2]`, ... (rows `row` apart); lanes past
/// the first `n` tiles hold whatever follows (or zeros at the end of `x`) and are never
/// stored. Returns `v[xi][tile]` (`xi = 4 i + j`). The column pass runs once per input
/// column (neighbouring windows share two), then the row pass over the even and odd
/// columns; every lane does the same operations in the same order as the one-tile form
/// (`input_transform`, kept in the tests as the oracle).
#[inline]
fn input_tiles(x: &[f32], row: usize, n: usize) -> [[f32; TW]; XI] {
    const COLS: usize = 2 * TW + 2;
    let mut d = [[0.0f32; COLS]; 4];
    for (i, di) in d.iter_mut().enumerate() {
        match x.get(i * row..i * row + COLS) {
            // Whole rows when the buffer has them (lanes past `n` then read neighbours).
            Some(src) => *di = <[f32; COLS]>::try_from(src).unwrap_or([0.0; COLS]),
            None => copy_run(&mut di[..2 * n + 2], &x[i * row..i * row + 2 * n + 2]),
        }
    }
    // B^T along the window's rows, for every column.
    let mut c = [[0.0f32; COLS]; 4];
    for k in 0..COLS {
        c[0][k] = d[0][k] - d[2][k];
        c[1][k] = d[1][k] + d[2][k];
        c[2][k] = d[2][k] - d[1][k];
        c[3][k] = d[1][k] - d[3][k];
    }
    // Then along the columns: tile t's window columns are c[2t .. 2t + 4].
    let mut v = [[0.0f32; TW]; XI];
    for i in 0..4 {
        let mut e = [0.0f32; TW + 1];
        let mut o = [0.0f32; TW + 1];
        for k in 0..TW + 1 {
            e[k] = c[i][2 * k];
            o[k] = c[i][2 * k + 1];
        }
        for t in 0..TW {
            v[4 * i][t] = e[t] - e[t + 1];
            v[4 * i + 1][t] = o[t] + e[t + 1];
            v[4 * i + 2][t] = e[t + 1] - o[t];
            v[4 * i + 3][t] = o[t] - o[t + 1];
        }
    }
    v
}

/// `Y = A^T M A` (`A^T = [1 1 1 0; 0 1 -1 -1]`), plus `bias`, then ReLU if asked, for the
/// `TW` tiles at columns `t ..` of `m` (`[xi][tile]`, rows `ld` apart; lanes past the
/// block read stale values that are never stored). Returns the two output rows of the
/// run, each tile's pair of columns side by side. The same operations per lane as the
/// one-tile form (`output_transform`, kept in the tests as the oracle).
#[inline]
fn output_tiles(m: &[f32], ld: usize, t: usize, bias: f32, relu: bool) -> [[f32; 2 * TW]; 2] {
    let mut mm = [[0.0f32; TW]; XI];
    for (xi, r) in mm.iter_mut().enumerate() {
        let at = xi * ld + t;
        match m.get(at..at + TW) {
            Some(src) => *r = <[f32; TW]>::try_from(src).unwrap_or([0.0; TW]),
            None => {
                let n = m.len().saturating_sub(at).min(TW);
                copy_run(&mut r[..n], &m[at..at + n]);
            }
        }
    }
    let mut y = [[0.0f32; TW]; 4];
    for l in 0..TW {
        let a: [f32; 4] = std::array::from_fn(|j| mm[j][l] + mm[4 + j][l] + mm[8 + j][l]);
        let b: [f32; 4] = std::array::from_fn(|j| mm[4 + j][l] - mm[8 + j][l] - mm[12 + j][l]);
        y[0][l] = a[0] + a[1] + a[2];
        y[1][l] = a[1] - a[2] - a[3];
        y[2][l] = b[0] + b[1] + b[2];
        y[3][l] = b[1] - b[2] - b[3];
    }
    let mut rows = [[0.0f32; 2 * TW]; 2];
    for (r, out) in rows.iter_mut().enumerate() {
        for l in 0..TW {
            for (k, &val) in [y[2 * r][l], y[2 * r + 1][l]].iter().enumerate() {
                let val = val + bias;
                out[2 * l + k] = if relu { super::reference::relu1(val) } else { val };
            }
        }
    }
    rows
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
    let (lt, rt) = if tasks > 1 {
        let half = count / 2;
        let left = (tasks * half / count).clamp(1, tasks - 1);
        (left, tasks - left)
    } else {
        (1, 1)
    };
    if groups > 1 {
        let gl = groups / 2;
        let (top, bottom) = c.split_rows(gl * og);
        let go_l = || products(top, g0, gl, x0, xis, og, tb, lt, f);
        let go_r = || products(bottom, g0 + gl, groups - gl, x0, xis, og, tb, rt, f);
        if tasks > 1 {
            rayon::join(go_l, go_r);
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
            rayon::join(go_l, go_r);
        } else {
            go_l();
            go_r();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::Isa;

    /// `V = B^T d B` for `B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]`, row-major (xi = 4 i + j).
    pub(super) fn input_transform(d: &[[f32; 4]; 4]) -> [f32; XI] {
        let col = |a: [f32; 4]| [a[0] - a[2], a[1] + a[2], a[2] - a[1], a[1] - a[3]];
        let rows: [[f32; 4]; 4] = std::array::from_fn(|j| col([d[0][j], d[1][j], d[2][j], d[3][j]]));
        // rows[j][i] = (B^T d)[i][j]; now the same along j.
        let mut v = [0.0f32; XI];
        for i in 0..4 {
            let t = col([rows[0][i], rows[1][i], rows[2][i], rows[3][i]]);
            v[i * 4..i * 4 + 4].copy_from_slice(&t);
        }
        v
    }

    /// `Y = A^T M A` for `A^T = [1 1 1 0; 0 1 -1 -1]`.
    pub(super) fn output_transform(m: &[f32; XI]) -> [[f32; 2]; 2] {
        let red = |a: [f32; 4]| [a[0] + a[1] + a[2], a[1] - a[2] - a[3]];
        let cols: [[f32; 2]; 4] = std::array::from_fn(|j| red([m[j], m[4 + j], m[8 + j], m[12 + j]]));
        let y0 = red([cols[0][0], cols[1][0], cols[2][0], cols[3][0]]);
        let y1 = red([cols[0][1], cols[1][1], cols[2][1], cols[3][1]]);
        [y0, y1]
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
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let iy = (oy + ky) as isize - g.pads.top as isize;
                                let ix = (ox + kx) as isize - g.pads.left as isize;
                                if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                    continue;
                                }
                                let xv = x[((grp * g.cg + ci) * g.h + iy as usize) * g.w + ix as usize];
                                let wv = w[((oc * g.cg + ci) * 3 + ky) * 3 + kx];
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
        let row = 2 * TW + 5;
        let x: Vec<f32> = (0..4 * row).map(|i| ((i * 7919) % 29) as f32 / 7.0 - 2.0 + (i as f32) * 1e-3).collect();
        for n in 1..=TW {
            let v = input_tiles(&x, row, n);
            for t in 0..n {
                let d: [[f32; 4]; 4] = std::array::from_fn(|i| std::array::from_fn(|j| x[i * row + 2 * t + j]));
                let want = input_transform(&d);
                for xi in 0..XI {
                    assert_eq!(v[xi][t].to_bits(), want[xi].to_bits(), "n {n} tile {t} xi {xi}");
                }
            }
        }
        let ld = 3 * TW;
        let m: Vec<f32> = (0..XI * ld).map(|i| ((i * 104_729) % 31) as f32 / 5.0 - 3.0).collect();
        for (t, bias, relu) in [(0, 0.5, true), (5, -1.25, false), (ld - TW, 0.0, true)] {
            let y = output_tiles(&m, ld, t, bias, relu);
            for l in 0..TW {
                let mm: [f32; XI] = std::array::from_fn(|xi| m[xi * ld + t + l]);
                let want = output_transform(&mm);
                for (r, wr) in want.iter().enumerate() {
                    for (k, &w) in wr.iter().enumerate() {
                        let w = w + bias;
                        let w = if relu { crate::ops::reference::relu1(w) } else { w };
                        assert_eq!(y[r][2 * l + k].to_bits(), w.to_bits(), "t {t} lane {l} ({r}, {k})");
                    }
                }
            }
        }
    }

    #[test]
    fn matches_direct_convolution_on_odd_shapes() {
        let cases = [
            // (cg, h, w, pads, groups, o, batch)
            (3, 7, 5, Pads::uniform(1), 1, 5, 1),
            (4, 13, 13, Pads::uniform(1), 2, 6, 3),
            (2, 6, 9, Pads { top: 0, left: 2, bottom: 1, right: 0 }, 1, 13, 2),
            (1, 3, 3, Pads::default(), 1, 1, 1),
            (5, 4, 11, Pads::uniform(2), 1, 3, 40),
            // Tile rows longer than one run of TW tiles.
            (2, 5, 21, Pads::uniform(1), 1, 4, 2),
            (3, 9, 2 * TW + 3, Pads { top: 1, left: 0, bottom: 0, right: 1 }, 1, 2, 3),
        ];
        let kernels: Vec<Kernel> = Isa::ALL.into_iter().filter_map(|i| Kernel::new(i).ok()).collect();
        for (cg, h, w, pads, groups, o, batch) in cases {
            let oh = h + pads.top as usize + pads.bottom as usize - 2;
            let ow = w + pads.left as usize + pads.right as usize - 2;
            let g = ConvGeom { cg, h, w, kh: 3, kw: 3, sh: 1, sw: 1, pads, oh, ow };
            let c = cg * groups;
            let x: Vec<f32> = (0..batch * c * h * w).map(|i| ((i * 7919) % 23) as f32 / 11.0 - 1.0).collect();
            let wt: Vec<f32> = (0..o * cg * 9).map(|i| ((i * 104_729) % 19) as f32 / 9.0 - 1.0).collect();
            let bias: Vec<f32> = (0..o).map(|i| i as f32 / 4.0 - 0.5).collect();
            for kernel in &kernels {
                let u = pack_weights(&wt, groups, o / groups, cg, kernel.blocks().mr);
                let mut results = Vec::new();
                for threads in [1, 2, 3] {
                    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                    let mut out = vec![f32::NAN; batch * o * oh * ow];
                    let mut padded = vec![f32::NAN; batch * padded_len(&g, c)];
                    let mut scratch = vec![f32::NAN; scratch_len(c, o)];
                    pool.install(|| {
                        conv3x3(*kernel, &x, batch, &g, &u, &bias, true, &mut out, &mut padded, &mut scratch)
                    });
                    for b in 0..batch {
                        let want = direct(&x[b * c * h * w..(b + 1) * c * h * w], &wt, &bias, &g, groups, true);
                        let got = &out[b * o * oh * ow..(b + 1) * o * oh * ow];
                        for (i, (a, e)) in got.iter().zip(&want).enumerate() {
                            assert!(
                                (a - e).abs() <= 1e-4 * (1.0 + e.abs()),
                                "{:?} {g:?} b{b} at {i}: {a} vs {e}",
                                kernel.isa()
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
