//! Max pooling of one CHW image, channels split across the pool.

use rayon::prelude::*;

use super::reference::max_nan;
use crate::plan::MaxPool;

/// Pool `[c, h, w]` into `[c, oh, ow]`; padded cells never win, NaN is sticky.
pub fn maxpool(input: &[f32], [c, h, w]: [usize; 3], p: &MaxPool, [oh, ow]: [usize; 2], out: &mut [f32]) {
    let (kh, kw) = (p.kernel[0] as usize, p.kernel[1] as usize);
    let (sh, sw) = (p.stride[0] as usize, p.stride[1] as usize);
    let (pt, pl) = (p.pads.top as usize, p.pads.left as usize);
    out[..c * oh * ow].par_chunks_mut(oh * ow).enumerate().for_each(|(ch, dst)| {
        let plane = &input[ch * h * w..(ch + 1) * h * w];
        for y in 0..oh {
            // Window rows clipped to the input: [y*sh - pt, y*sh - pt + kh) ∩ [0, h).
            let y0 = (y * sh).saturating_sub(pt);
            let y1 = (y * sh + kh).saturating_sub(pt).min(h);
            for x in 0..ow {
                let x0 = (x * sw).saturating_sub(pl);
                let x1 = (x * sw + kw).saturating_sub(pl).min(w);
                let mut m = f32::NEG_INFINITY;
                for row in plane[y0 * w..y1 * w].chunks_exact(w) {
                    for &v in &row[x0..x1] {
                        m = max_nan(m, v);
                    }
                }
                dst[y * ow + x] = m;
            }
        }
    });
}
