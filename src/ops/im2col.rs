//! im2col as a GEMM B source: packed NR-column panels written straight from the image.
//!
//! Row `(ic, ky, kx)` of the convolution's B matrix holds, for every output pixel
//! `(y, x)`, the input under kernel tap `(ky, kx)` of channel `ic` (zero in the padding):
//! `K = cg * kh * kw` rows, `N = oh * ow` columns, matching OIHW weights as A. The full
//! matrix is never formed: [`Im2col`] implements [`PackB`], so the GEMM asks for exactly
//! the `KC x NC` blocks it packs, and they are written once, in panel order.
//!
//! The input is first rewritten once per layer ([`prepare`]): padding made explicit, and
//! at a horizontal stride `sw > 1` each row split into `sw` phases (columns `f, f + sw,
//! ...`). Then every element of B is one load, `B[k][j] = X[off(k) + col(j)]`, with
//! `off(k)` depending on the tap alone and `col(j)` on the pixel alone; an output row's
//! pixels are consecutive values. Packing is therefore a copy of short runs whose
//! layout is the same for every k: each run is found once per panel and copied for all
//! the KC rows, with no bounds or padding logic in the inner loop.

use crate::base::copy::copy_run;
use crate::gemm::PackB;
use crate::plan::Pads;

/// Geometry of one convolution group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    /// Input channels per group.
    pub cg: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Vertical stride.
    pub sh: usize,
    /// Horizontal stride.
    pub sw: usize,
    /// Padding.
    pub pads: Pads,
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
}

impl ConvGeom {
    /// Rows of B (the GEMM's K).
    pub fn k(&self) -> usize {
        self.cg * self.kh * self.kw
    }
    /// Columns of B (the GEMM's N).
    pub fn n(&self) -> usize {
        self.oh * self.ow
    }
    /// Rows of a prepared channel: the input's plus the padding above and below.
    pub fn padded_h(&self) -> usize {
        self.h + self.pads.top as usize + self.pads.bottom as usize
    }
    /// Values per phase of a prepared row (the padded row split `sw` ways).
    pub fn phase_w(&self) -> usize {
        (self.w + self.pads.left as usize + self.pads.right as usize).div_ceil(self.sw)
    }
    /// Values per prepared row: `sw * phase_w()`.
    pub fn row_len(&self) -> usize {
        self.sw * self.phase_w()
    }
    /// Values per prepared channel.
    pub fn plane(&self) -> usize {
        self.padded_h() * self.row_len()
    }
    /// Offset of tap `(ic, ky, kx)` in the prepared input.
    fn tap(&self, ic: usize, ky: usize, kx: usize) -> usize {
        ic * self.plane() + ky * self.row_len() + (kx % self.sw) * self.phase_w() + kx / self.sw
    }
}

/// Rewrite `channels` channels of `[h, w]` rows (`input`) into the prepared layout the
/// packer reads (`out`: `channels * plane()` values): the padding written out as zeros,
/// and each padded row as `sw` phases of `phase_w` values, phase `f` holding the padded
/// columns `f, f + sw, f + 2 sw, ...` (zero past the row's end). Rows are shared out
/// over the current rayon pool (a pure copy: the result cannot depend on it).
pub fn prepare(input: &[f32], channels: usize, g: &ConvGeom, out: &mut [f32]) {
    prepare_as(input, channels, g, out, 0.0)
}

/// [`prepare`] for values of any type, `zero` standing for the padding (an int8
/// convolution's codes pad with the zero point).
pub fn prepare_as<T: Copy + Send + Sync>(input: &[T], channels: usize, g: &ConvGeom, out: &mut [T], zero: T) {
    use rayon::prelude::*;
    let (hp, row_len) = (g.padded_h(), g.row_len());
    let input = &input[..channels * g.h * g.w];
    let rows = out[..channels * g.plane()].par_chunks_mut(PREPARE_ROWS * row_len);
    rows.enumerate().for_each(|(blk, rows)| {
        crate::base::census::task(|| {
            crate::base::census::work(rows.len() as f64);
            // Channel c, prepared row r of the block's first row, then counted on.
            let (mut c, mut r) = (blk * PREPARE_ROWS / hp, blk * PREPARE_ROWS % hp);
            for row in rows.chunks_exact_mut(row_len) {
                match r.checked_sub(g.pads.top as usize).filter(|&iy| iy < g.h) {
                    Some(iy) => prepare_row(&input[(c * g.h + iy) * g.w..(c * g.h + iy + 1) * g.w], g, row, zero),
                    None => row.fill(zero),
                }
                r += 1;
                if r == hp {
                    (c, r) = (c + 1, 0);
                }
            }
        })
    });
}

/// Prepared rows per parallel task of [`prepare_as`].
const PREPARE_ROWS: usize = 32;

/// One input row into one prepared row (see [`prepare`]): a copy between the padding at a
/// stride of 1, else the row dealt into its phases, with the stride a constant for the
/// strides convolutions use (the bounds then cost no division per phase, and the
/// interior is one loop without bounds checks).
fn prepare_row<T: Copy>(line: &[T], g: &ConvGeom, row: &mut [T], zero: T) {
    let left = g.pads.left as usize;
    match g.sw {
        1 => {
            let end = left + line.len();
            row[..left].fill(zero);
            row[left..end].copy_from_slice(line);
            row[end..].fill(zero);
        }
        2 => phases::<T, 2>(line, left, row, zero),
        3 => phases::<T, 3>(line, left, row, zero),
        4 => phases::<T, 4>(line, left, row, zero),
        sw => phases_any(line, left, sw, row, zero),
    }
}

/// [`prepare_row`] at a stride of `S`: phase `f` of `row` (`S` phases of `row.len() / S`
/// values) holds the padded columns `i * S + f`, i.e. input columns `i * S + f - left`.
#[inline(always)]
fn phases<T: Copy, const S: usize>(line: &[T], left: usize, row: &mut [T], zero: T) {
    let (w, pw) = (line.len(), row.len() / S);
    // The phase indices whose S columns all lie inside the input row: i * S >= left
    // and i * S + S <= left + w.
    let lo = left.div_ceil(S).min(pw);
    let hi = ((left + w) / S).clamp(lo, pw);
    let inner = if hi > lo { &line[lo * S - left..hi * S - left] } else { &line[..0] };
    for (f, phase) in row.chunks_exact_mut(pw).enumerate() {
        for (i, d) in phase[..lo].iter_mut().enumerate() {
            *d = padded_column(line, left, i * S + f, zero);
        }
        for (d, cols) in phase[lo..hi].iter_mut().zip(inner.chunks_exact(S)) {
            *d = cols[f];
        }
        for (i, d) in phase[hi..].iter_mut().enumerate() {
            *d = padded_column(line, left, (hi + i) * S + f, zero);
        }
    }
}

/// [`phases`] for a stride only known at run time.
fn phases_any<T: Copy>(line: &[T], left: usize, sw: usize, row: &mut [T], zero: T) {
    let pw = row.len() / sw;
    for (f, phase) in row.chunks_exact_mut(pw).enumerate() {
        for (i, d) in phase.iter_mut().enumerate() {
            *d = padded_column(line, left, i * sw + f, zero);
        }
    }
}

/// Column `x` of `line` padded by `left` values on the left (and any number on the
/// right) with `zero`.
#[inline]
fn padded_column<T: Copy>(line: &[T], left: usize, x: usize, zero: T) -> T {
    x.checked_sub(left).and_then(|x| line.get(x)).copied().unwrap_or(zero)
}

/// The B matrix of one group over `images` images: columns `b * n .. (b + 1) * n` are
/// image `b`'s output pixels (`n = oh * ow`), so one GEMM can cover a whole batch.
/// `input` is in the layout of [`prepare`]: f32 values, or for an int8 convolution
/// `u32`s holding four channels' codes each (then the geometry's channels are those
/// blocks of four, and each k row of B is one quad of the int8 GEMM).
#[derive(Clone, Copy, Debug)]
pub struct Im2col<'a, T = f32> {
    /// The prepared images, `image_stride` values apart; the group's `cg` channels of
    /// image `b` start at `b * image_stride + offset`.
    pub input: &'a [T],
    /// Start of the group's channels within an image.
    pub offset: usize,
    /// Values per image.
    pub image_stride: usize,
    /// Images (column blocks of B).
    pub images: usize,
    /// Geometry.
    pub geom: &'a ConvGeom,
}

impl<'a, T> Im2col<'a, T> {
    /// The B matrix of a single image whose group channels are `input` (`[cg, ...]`,
    /// prepared).
    pub fn single(input: &'a [T], geom: &'a ConvGeom) -> Self {
        Im2col { input, offset: 0, image_stride: 0, images: 1, geom }
    }

    /// Columns of B.
    pub fn n(&self) -> usize {
        self.geom.n() * self.images
    }
}

/// K rows whose tap offsets are computed at a time (a stack table).
const TAPS: usize = 256;

impl PackB for Im2col<'_> {
    /// About 2: a panel is copied as runs of consecutive pixels from the prepared (already
    /// padded) input, so it costs about two micro-tiles over the same K.
    const PACK_COST_IN_TILES: f64 = 2.0;

    fn pack(&self, k0: usize, k1: usize, j0: usize, j1: usize, nr: usize, out: &mut [f32]) {
        self.panels(k0, k1, j0, j1, nr, out, 0.0)
    }
}

impl crate::gemm::i8::PackQuads for Im2col<'_, u32> {
    fn pack(&self, k: usize, j0: usize, j1: usize, out: &mut [u32]) {
        self.panels(0, k.div_ceil(4), j0, j1, crate::gemm::kernel::i8::NR, out, 0)
    }
}

impl<T: Copy> Im2col<'_, T> {
    /// Panel by panel: the runs of consecutive pixels in the panel (pieces of output
    /// rows, cut at panel edges) are found once, then each is copied for every k row,
    /// from `X[off(k) + col]` to the panel's row k (see [`PackB::pack`]; columns past
    /// `j1` are `zero`).
    #[allow(clippy::too_many_arguments)]
    fn panels(&self, k0: usize, k1: usize, j0: usize, j1: usize, nr: usize, out: &mut [T], zero: T) {
        let g = self.geom;
        let (kc, width) = (k1 - k0, j1 - j0);
        if kc == 0 || width == 0 {
            return;
        }
        let (n, ystep) = (g.n(), g.sh * g.row_len());
        let mut taps = [0usize; TAPS];
        for t0 in (0..kc).step_by(TAPS) {
            let tn = TAPS.min(kc - t0);
            let k = k0 + t0;
            let (mut ic, mut ky, mut kx) = (k / (g.kh * g.kw), (k / g.kw) % g.kh, k % g.kw);
            for off in &mut taps[..tn] {
                *off = g.tap(ic, ky, kx);
                kx += 1;
                if kx == g.kw {
                    kx = 0;
                    ky += 1;
                    if ky == g.kh {
                        ky = 0;
                        ic += 1;
                    }
                }
            }
            let taps = &taps[..tn];
            for (q, j) in (j0..j1).step_by(nr).enumerate() {
                let cols = nr.min(j1 - j);
                // Row p of this panel (within the tap chunk) starts at `base + p * nr`.
                let base = (q * kc + t0) * nr;
                let (mut b, mut pix) = (j / n, j % n);
                let (mut y, mut x) = (pix / g.ow, pix % g.ow);
                let mut at = 0;
                while at < cols {
                    let len = (g.ow - x).min(cols - at);
                    let src = b * self.image_stride + self.offset + y * ystep + x;
                    for (p, &off) in taps.iter().enumerate() {
                        let d = base + p * nr + at;
                        copy_run(&mut out[d..d + len], &self.input[src + off..src + off + len]);
                    }
                    at += len;
                    pix += len;
                    x += len;
                    if x == g.ow {
                        x = 0;
                        y += 1;
                        if pix == n {
                            (pix, y) = (0, 0);
                            b += 1;
                        }
                    }
                }
                if cols < nr {
                    for p in 0..tn {
                        out[base + p * nr + cols..base + (p + 1) * nr].fill(zero);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain definition, one element at a time.
    fn naive(input: &[f32], g: &ConvGeom, r: usize, j: usize) -> f32 {
        let (ic, ky, kx) = (r / (g.kh * g.kw), (r / g.kw) % g.kh, r % g.kw);
        let (y, x) = (j / g.ow, j % g.ow);
        let iy = (y * g.sh + ky) as isize - g.pads.top as isize;
        let ix = (x * g.sw + kx) as isize - g.pads.left as isize;
        if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
            0.0
        } else {
            input[(ic * g.h + iy as usize) * g.w + ix as usize]
        }
    }

    #[test]
    fn batched_columns_are_the_images_side_by_side() {
        let g = ConvGeom { cg: 2, h: 6, w: 5, kh: 3, kw: 3, sh: 1, sw: 2, pads: Pads::uniform(1), oh: 6, ow: 3 };
        // Three images of three channels each; the group is channels 1..3. Images are
        // phased one by one into a buffer with some slack between them.
        let (channels, images, slack) = (3, 3, 7);
        let plain_len = channels * g.h * g.w;
        let phased_len = channels * g.plane() + slack;
        let plain: Vec<f32> = (0..plain_len * images).map(|i| i as f32).collect();
        let mut phased = vec![f32::NAN; phased_len * images];
        for b in 0..images {
            let dst = &mut phased[b * phased_len..b * phased_len + channels * g.plane()];
            prepare(&plain[b * plain_len..(b + 1) * plain_len], channels, &g, dst);
        }
        let offset = g.plane();
        let src = Im2col { input: &phased, offset, image_stride: phased_len, images, geom: &g };
        let (k, n) = (g.k(), g.n());
        let mut all = vec![0.0; (images * n).div_ceil(8) * 8 * k];
        src.pack(0, k, 0, images * n, 8, &mut all);
        for b in 0..images {
            let one = &plain[b * plain_len + g.h * g.w..b * plain_len + 3 * g.h * g.w];
            for j in 0..n {
                for r in 0..k {
                    let col = b * n + j;
                    assert_eq!(all[((col / 8) * k + r) * 8 + col % 8], naive(one, &g, r, j), "image {b} r{r} j{j}");
                }
            }
        }
    }

    #[test]
    fn prepared_rows_match_the_definition() {
        // Every stride the phase copies specialise (2, 3, 4), two they do not (5, 6) and 1;
        // left padding narrower and wider than the stride; rows narrower than it; more
        // rows than one task's block, so blocks start inside channels.
        for sw in 1..=6 {
            for (w, left, right) in [(1, 0, 0), (2, 3, 1), (13, 1, 2), (31, 7, 0), (5, 0, 9)] {
                let (cg, h) = (3, 23);
                let pads = Pads { top: 2, left, bottom: 1, right };
                let (kh, kw) = (1, 1);
                let oh = h + 3;
                let ow = (w + (left + right) as usize - kw) / sw + 1;
                let g = ConvGeom { cg, h, w, kh, kw, sh: 1, sw, pads, oh, ow };
                let input: Vec<f32> = (0..cg * h * w).map(|i| i as f32 + 1.0).collect();
                let mut out = vec![f32::NAN; cg * g.plane()];
                prepare(&input, cg, &g, &mut out);
                let (pw, left) = (g.phase_w(), left as usize);
                for (at, row) in out.chunks_exact(g.row_len()).enumerate() {
                    let (c, r) = (at / g.padded_h(), at % g.padded_h());
                    for (j, &got) in row.iter().enumerate() {
                        let x = (j % pw) * sw + j / pw;
                        let iy = r.checked_sub(2).filter(|&y| y < h);
                        let ix = x.checked_sub(left).filter(|&x| x < w);
                        let want = match (iy, ix) {
                            (Some(y), Some(x)) => input[(c * h + y) * w + x],
                            _ => 0.0,
                        };
                        assert_eq!(got, want, "sw {sw} w {w} pads {pads:?} channel {c} row {r} value {j}");
                    }
                }
            }
        }
    }

    #[test]
    fn packed_panels_match_the_definition() {
        let cases = [
            (3, 11, 13, 3, 3, 1, 1, Pads::uniform(1)),
            (2, 23, 23, 11, 11, 4, 4, Pads::default()),
            (2, 9, 14, 5, 3, 2, 3, Pads { top: 2, left: 1, bottom: 0, right: 4 }),
            (1, 5, 5, 5, 5, 1, 1, Pads::uniform(4)),
            (2, 7, 6, 2, 2, 3, 2, Pads { top: 0, left: 3, bottom: 3, right: 0 }),
        ];
        for (cg, h, w, kh, kw, sh, sw, pads) in cases {
            let oh = (h + pads.top as usize + pads.bottom as usize - kh) / sh + 1;
            let ow = (w + pads.left as usize + pads.right as usize - kw) / sw + 1;
            let g = ConvGeom { cg, h, w, kh, kw, sh, sw, pads, oh, ow };
            let input: Vec<f32> = (0..cg * h * w).map(|i| i as f32 + 1.0).collect();
            let mut phased = vec![f32::NAN; cg * g.plane()];
            prepare(&input, cg, &g, &mut phased);
            let src = Im2col::single(&phased, &g);
            for nr in [4, 8, 32] {
                for (k0, k1, j0, j1) in [(0, g.k(), 0, g.n()), (1, g.k().min(5), 3.min(g.n() - 1), g.n())] {
                    let kc = k1 - k0;
                    let panels = (j1 - j0).div_ceil(nr);
                    let mut out = vec![f32::NAN; panels * nr * kc];
                    src.pack(k0, k1, j0, j1, nr, &mut out);
                    for q in 0..panels {
                        for p in 0..kc {
                            for c in 0..nr {
                                let j = j0 + q * nr + c;
                                let want = if j < j1 { naive(&input, &g, k0 + p, j) } else { 0.0 };
                                assert_eq!(out[(q * kc + p) * nr + c], want, "{g:?} nr{nr} k{} j{j}", k0 + p);
                            }
                        }
                    }
                }
            }
        }
    }
}
