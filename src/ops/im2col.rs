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

/// The B matrix of one group of one image: `input` holds that group's `cg` channels.
#[derive(Clone, Copy, Debug)]
pub struct Im2col<'a> {
    /// `[cg, h, w]` input of the group.
    pub input: &'a [f32],
    /// Geometry.
    pub geom: &'a ConvGeom,
}

impl PackB for Im2col<'_> {
    fn pack(&self, k0: usize, k1: usize, j0: usize, j1: usize, nr: usize, out: &mut [f32]) {
        let g = self.geom;
        let kc = k1 - k0;
        let (pt, pl) = (g.pads.top as isize, g.pads.left as isize);
        for (q, jq) in (j0..j1).step_by(nr).enumerate() {
            let w = nr.min(j1 - jq);
            let panel = &mut out[q * nr * kc..(q + 1) * nr * kc];
            for (p, dst) in panel.chunks_exact_mut(nr).enumerate() {
                let r = k0 + p;
                let (ic, ky, kx) = (r / (g.kh * g.kw), (r / g.kw) % g.kh, r % g.kw);
                let plane = &self.input[ic * g.h * g.w..(ic + 1) * g.h * g.w];
                let (mut y, mut x) = (jq / g.ow, jq % g.ow);
                for d in dst[..w].iter_mut() {
                    let iy = (y * g.sh + ky) as isize - pt;
                    let ix = (x * g.sw + kx) as isize - pl;
                    *d = if iy >= 0 && (iy as usize) < g.h && ix >= 0 && (ix as usize) < g.w {
                        plane[iy as usize * g.w + ix as usize]
                    } else {
                        0.0
                    };
                    x += 1;
                    if x == g.ow {
                        x = 0;
                        y += 1;
                    }
                }
                dst[w..].fill(0.0);
            }
        }
    }
}
