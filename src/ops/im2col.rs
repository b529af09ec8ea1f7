//! im2col as a GEMM B source: packed NR-column panels written straight from the image.
//!
//! Row `(ic, ky, kx)` of the convolution's B matrix holds, for every output pixel
//! `(y, x)`, the input under kernel tap `(ky, kx)` of channel `ic` (zero in the padding):
//! `K = cg * kh * kw` rows, `N = oh * ow` columns, matching OIHW weights as A. The full
//! matrix is never formed: [`Im2col`] implements [`PackB`], so the GEMM asks for exactly
//! the `KC x NC` blocks it packs, and they are written once, in panel order.

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
    /// Values per phase of an input row in the phased layout (see [`phase_split`]).
    pub fn phase_w(&self) -> usize {
        self.w.div_ceil(self.sw)
    }
    /// Values per input row in the phased layout: `sw * phase_w()`, `w` at stride 1.
    pub fn row_len(&self) -> usize {
        self.sw * self.phase_w()
    }
}

/// Rewrite `channels` channels of `[h, w]` rows (`input`) into the phased layout the
/// packer reads: each row becomes `sw` phases of `phase_w` values, phase `f` holding
/// columns `f, f + sw, f + 2 sw, ...` (zero past the row's end). Every strided im2col run
/// then reads one contiguous slice. At stride 1 the phased layout is the input itself.
pub fn phase_split(input: &[f32], channels: usize, g: &ConvGeom, out: &mut [f32]) {
    let (w, sw, pw) = (g.w, g.sw, g.phase_w());
    for (src, dst) in input[..channels * g.h * w].chunks_exact(w).zip(out.chunks_exact_mut(sw * pw)) {
        for (f, phase) in dst.chunks_exact_mut(pw).enumerate() {
            for (j, d) in phase.iter_mut().enumerate() {
                *d = src.get(j * sw + f).copied().unwrap_or(0.0);
            }
        }
    }
}

/// The B matrix of one group over `images` images: columns `b * n .. (b + 1) * n` are
/// image `b`'s output pixels (`n = oh * ow`), so one GEMM can cover a whole batch.
/// `input` is in the phased layout of [`phase_split`] (the plain layout at stride 1).
#[derive(Clone, Copy, Debug)]
pub struct Im2col<'a> {
    /// The images, `image_stride` values apart; the group's `cg` channels of image `b`
    /// start at `b * image_stride + offset`.
    pub input: &'a [f32],
    /// Start of the group's channels within an image.
    pub offset: usize,
    /// Values per image.
    pub image_stride: usize,
    /// Images (column blocks of B).
    pub images: usize,
    /// Geometry.
    pub geom: &'a ConvGeom,
}

impl<'a> Im2col<'a> {
    /// The B matrix of a single image whose group channels are `input` (`[cg, h, w]`,
    /// phased when the stride is above 1).
    pub fn single(input: &'a [f32], geom: &'a ConvGeom) -> Self {
        Im2col { input, offset: 0, image_stride: 0, images: 1, geom }
    }

    /// Columns of B.
    pub fn n(&self) -> usize {
        self.geom.n() * self.images
    }
}

impl PackB for Im2col<'_> {
    /// Row by row of B (k outermost), each row walked one output-row run at a time with
    /// every index advanced incrementally: no division in the loops. For a run, the
    /// valid input columns (the rest is padding) are found once; the run is then written
    /// in pieces that end at panel boundaries, each a copy (stride 1), a strided gather,
    /// or zeros.
    /// Fitted from conv3 and conv4 at two threads (an M split, which makes each thread
    /// gather all of B, ran 6% and 12% slower than the N split): about 5. Short rows of
    /// 13 or 27 values make the gather far costlier than a plain copy.
    const PACK_COST_IN_TILES: f64 = 5.0;

    fn pack(&self, k0: usize, k1: usize, j0: usize, j1: usize, nr: usize, out: &mut [f32]) {
        let g = self.geom;
        let (kc, width) = (k1 - k0, j1 - j0);
        if kc == 0 || width == 0 {
            return;
        }
        let panels = width.div_ceil(nr);
        // Columns past j1 in the last panel are zero for every row.
        let tail = width - (panels - 1) * nr;
        if tail < nr {
            for p in 0..kc {
                let at = ((panels - 1) * kc + p) * nr;
                out[at + tail..at + nr].fill(0.0);
            }
        }
        let (n, row_len, pw) = (g.n(), g.row_len(), g.phase_w());
        let plane = g.h * row_len;
        let (b0, pix0) = (j0 / n, j0 % n);
        let (y0, x0) = (pix0 / g.ow, pix0 % g.ow);
        let (mut ic, mut ky, mut kx) = (k0 / (g.kh * g.kw), (k0 / g.kw) % g.kh, k0 % g.kw);
        let (pt, pl) = (g.pads.top as isize, g.pads.left as isize);
        for p in 0..kc {
            let (mut b, mut y, mut x) = (b0, y0, x0);
            let (mut q, mut off) = (0usize, 0usize); // panel, and column within it
            let mut c = 0;
            while c < width {
                let run = (g.ow - x).min(width - c);
                let iy = (y * g.sh + ky) as isize - pt;
                // The valid part [lo, hi) of the run and the input column of its start.
                let (row, lo, hi, first) = if iy < 0 || iy >= g.h as isize {
                    (&[][..], 0, 0, 0)
                } else {
                    let base = b * self.image_stride + self.offset + ic * plane + iy as usize * row_len;
                    let first = (x * g.sw + kx) as isize - pl;
                    let lo = if first >= 0 { 0 } else { ((-first) as usize).div_ceil(g.sw).min(run) };
                    let last = g.w as isize - 1 - first;
                    let hi = if last < 0 { lo } else { (last as usize / g.sw + 1).clamp(lo, run) };
                    (&self.input[base..base + row_len], lo, hi, first)
                };
                let mut t = 0;
                while t < run {
                    let len = (run - t).min(nr - off);
                    let at = (q * kc + p) * nr + off;
                    let dst = &mut out[at..at + len];
                    // Overlap of this piece [t, t + len) with the valid [lo, hi).
                    let (v0, v1) = (lo.clamp(t, t + len), hi.clamp(t, t + len));
                    dst[..v0 - t].fill(0.0);
                    dst[v1 - t..].fill(0.0);
                    if v1 > v0 {
                        // Input column `col` sits in phase col % sw at index col / sw, and
                        // consecutive outputs step one index within that phase.
                        let col = (first + (v0 * g.sw) as isize) as usize;
                        let start = if g.sw == 1 { col } else { (col % g.sw) * pw + col / g.sw };
                        dst[v0 - t..v1 - t].copy_from_slice(&row[start..start + (v1 - v0)]);
                    }
                    t += len;
                    off += len;
                    if off == nr {
                        off = 0;
                        q += 1;
                    }
                }
                c += run;
                x = 0;
                y += 1;
                if y == g.oh {
                    y = 0;
                    b += 1;
                }
            }
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
        let phased_len = channels * g.h * g.row_len() + slack;
        let plain: Vec<f32> = (0..plain_len * images).map(|i| i as f32).collect();
        let mut phased = vec![f32::NAN; phased_len * images];
        for b in 0..images {
            let dst = &mut phased[b * phased_len..b * phased_len + channels * g.h * g.row_len()];
            phase_split(&plain[b * plain_len..(b + 1) * plain_len], channels, &g, dst);
        }
        let offset = g.h * g.row_len();
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
            let mut phased = vec![f32::NAN; cg * h * g.row_len()];
            phase_split(&input, cg, &g, &mut phased);
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
