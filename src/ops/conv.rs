//! Convolution = per group, im2col into scratch, then SGEMM with the bias+ReLU epilogue
//! into the group's slice of the CHW output.

use super::im2col::{im2col, ConvGeom};
use crate::gemm::{sgemm, Epilogue};

/// Convolve one image. `weight` is OIHW, `out` is `[o, oh, ow]`, `scratch` holds at least
/// `g.k() * g.n()` values.
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    input: &[f32],
    g: &ConvGeom,
    groups: usize,
    weight: &[f32],
    bias: &[f32],
    relu: bool,
    out: &mut [f32],
    scratch: &mut [f32],
) {
    let (k, n) = (g.k(), g.n());
    let o = bias.len();
    let og = o / groups;
    let b = &mut scratch[..k * n];
    for grp in 0..groups {
        let src = &input[grp * g.cg * g.h * g.w..(grp + 1) * g.cg * g.h * g.w];
        im2col(src, g, b);
        let a = &weight[grp * og * k..(grp + 1) * og * k];
        let c = &mut out[grp * og * n..(grp + 1) * og * n];
        sgemm(og, n, k, a, b, c, Epilogue { bias: &bias[grp * og..(grp + 1) * og], relu });
    }
}
