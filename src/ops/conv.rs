//! Convolution = per group, im2col packed straight into B panels, then SGEMM with the
//! bias+ReLU epilogue into the group's slice of the CHW output.

use super::im2col::{ConvGeom, Im2col};
use crate::gemm::{sgemm, Bias, Epilogue, Kernel, PackedA};

/// Convolve one image. `weights` holds one packed A per group (`out/groups x k()`),
/// `out` is `[o, oh, ow]`.
pub fn conv2d(
    kernel: Kernel,
    input: &[f32],
    g: &ConvGeom,
    weights: &[PackedA],
    bias: &[f32],
    relu: bool,
    out: &mut [f32],
) {
    let n = g.n();
    let groups = weights.len();
    let og = bias.len() / groups;
    let plane = g.cg * g.h * g.w;
    for (grp, a) in weights.iter().enumerate() {
        let src = Im2col { input: &input[grp * plane..(grp + 1) * plane], geom: g };
        let c = &mut out[grp * og * n..(grp + 1) * og * n];
        let ep = Epilogue { bias: Bias::Row(&bias[grp * og..(grp + 1) * og]), relu };
        sgemm(kernel, a, &src, n, c, n, ep);
    }
}
