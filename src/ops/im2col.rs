//! im2col for one group of one image: the convolution's B matrix.
//!
//! Row `(ic, ky, kx)` of B holds, for every output pixel `(y, x)`, the input value under
//! kernel tap `(ky, kx)` of channel `ic` (zero where the tap falls in the padding). So
//! `K = cg * kh * kw` rows and `N = oh * ow` columns, matching OIHW weights as A.

use crate::plan::Pads;

/// Geometry of one convolution, shared by im2col and the conv driver.
#[derive(Clone, Copy, Debug)]
pub struct ConvGeom {
    /// Input channels per group.
    pub cg: usize,
    /// Input height and width.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Kernel height, width.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Strides.
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
    /// Rows of B.
    pub fn k(&self) -> usize {
        self.cg * self.kh * self.kw
    }
    /// Columns of B.
    pub fn n(&self) -> usize {
        self.oh * self.ow
    }
}

/// Write B (`k() x n()`, row-major) for the group whose channels start `input`.
pub fn im2col(input: &[f32], g: &ConvGeom, b: &mut [f32]) {
    let n = g.n();
    let mut row = 0;
    for ic in 0..g.cg {
        let plane = &input[ic * g.h * g.w..(ic + 1) * g.h * g.w];
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let dst = &mut b[row * n..(row + 1) * n];
                row += 1;
                for y in 0..g.oh {
                    let out = &mut dst[y * g.ow..(y + 1) * g.ow];
                    let iy = (y * g.sh + ky) as isize - g.pads.top as isize;
                    if iy < 0 || iy >= g.h as isize {
                        out.fill(0.0);
                        continue;
                    }
                    let src = &plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                    for (x, o) in out.iter_mut().enumerate() {
                        let ix = (x * g.sw + kx) as isize - g.pads.left as isize;
                        *o = if ix < 0 || ix >= g.w as isize { 0.0 } else { src[ix as usize] };
                    }
                }
            }
        }
    }
}
