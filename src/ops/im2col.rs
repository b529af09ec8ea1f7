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
}

/// The B matrix of one group over `images` images: columns `b * n .. (b + 1) * n` are
/// image `b`'s output pixels (`n = oh * ow`), so one GEMM can cover a whole batch.
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
    /// The B matrix of a single image whose group channels are `input` (`[cg, h, w]`).
    pub fn single(input: &'a [f32], geom: &'a ConvGeom) -> Self {
        Im2col { input, offset: 0, image_stride: 0, images: 1, geom }
    }

    /// Columns of B.
    pub fn n(&self) -> usize {
        self.geom.n() * self.images
    }

    /// Write `dst.len()` consecutive columns of B row `(ic, ky, kx)` from column `j`,
    /// split at image boundaries.
    fn row_segment(&self, ic: usize, ky: usize, kx: usize, mut j: usize, dst: &mut [f32]) {
        let n = self.geom.n();
        let mut done = 0;
        while done < dst.len() {
            let (b, pix) = (j / n, j % n);
            let len = (n - pix).min(dst.len() - done);
            self.image_segment(b, ic, ky, kx, pix, &mut dst[done..done + len]);
            done += len;
            j += len;
        }
    }

    /// Columns of row `(ic, ky, kx)` for image `b` from output pixel `j`, one output-row
    /// run at a time: zeros where the tap falls in the padding, a contiguous copy
    /// (stride 1) or a strided gather inside.
    fn image_segment(&self, b: usize, ic: usize, ky: usize, kx: usize, j: usize, dst: &mut [f32]) {
        let g = self.geom;
        let base = b * self.image_stride + self.offset + ic * g.h * g.w;
        let plane = &self.input[base..base + g.h * g.w];
        let (mut y, mut x) = (j / g.ow, j % g.ow);
        let mut done = 0;
        while done < dst.len() {
            let run = (g.ow - x).min(dst.len() - done);
            let out = &mut dst[done..done + run];
            let iy = (y * g.sh + ky) as isize - g.pads.top as isize;
            if iy < 0 || iy >= g.h as isize {
                out.fill(0.0);
            } else {
                let src = &plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                // Output columns x .. x+run map to input columns x*sw + kx - left; the
                // valid ones form one contiguous range [lo, hi) of the run.
                let first = (x * g.sw + kx) as isize - g.pads.left as isize;
                let lo = if first >= 0 { 0 } else { ((-first) as usize).div_ceil(g.sw).min(run) };
                let last_ok = g.w as isize - 1 - first; // largest offset (in input columns) that is valid
                let hi = if last_ok < 0 { lo } else { ((last_ok as usize) / g.sw + 1).clamp(lo, run) };
                out[..lo].fill(0.0);
                out[hi..].fill(0.0);
                if hi > lo {
                    let start = (first + (lo * g.sw) as isize) as usize;
                    if g.sw == 1 {
                        out[lo..hi].copy_from_slice(&src[start..start + (hi - lo)]);
                    } else {
                        for (o, v) in out[lo..hi].iter_mut().zip(src[start..].iter().step_by(g.sw)) {
                            *o = *v;
                        }
                    }
                }
            }
            done += run;
            x = 0;
            y += 1;
        }
    }
}

impl PackB for Im2col<'_> {
    fn pack(&self, k0: usize, k1: usize, j0: usize, j1: usize, nr: usize, out: &mut [f32]) {
        let g = self.geom;
        let kc = k1 - k0;
        for (q, jq) in (j0..j1).step_by(nr).enumerate() {
            let w = nr.min(j1 - jq);
            let panel = &mut out[q * nr * kc..(q + 1) * nr * kc];
            for (p, dst) in panel.chunks_exact_mut(nr).enumerate() {
                let r = k0 + p;
                let (ic, ky, kx) = (r / (g.kh * g.kw), (r / g.kw) % g.kh, r % g.kw);
                self.row_segment(ic, ky, kx, jq, &mut dst[..w]);
                dst[w..].fill(0.0);
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
        let (stride, offset, images) = (3 * 30 + 7, 30, 3);
        let input: Vec<f32> = (0..stride * images).map(|i| i as f32).collect();
        let src = Im2col { input: &input, offset, image_stride: stride, images, geom: &g };
        let (k, n) = (g.k(), g.n());
        let mut all = vec![0.0; (images * n).div_ceil(8) * 8 * k];
        src.pack(0, k, 0, images * n, 8, &mut all);
        for b in 0..images {
            let one = &input[b * stride + offset..b * stride + offset + 2 * 30];
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
            let src = Im2col::single(&input, &g);
            for nr in [4, 8, 32] {
                for (k0, k1, j0, j1) in [(0, g.k(), 0, g.n()), (1, g.k().min(5), 3.min(g.n() - 1), g.n())] {
                    let kc = k1 - k0;
                    let panels = (j1 - j0).div_ceil(nr);
                    let _ = src.n();
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
