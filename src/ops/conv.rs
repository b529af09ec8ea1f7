//! Convolution = per group, im2col packed straight into B panels, then SGEMM with the
//! bias+ReLU epilogue.
//!
//! One image at a time the GEMM writes straight into the group's slice of the CHW output.
//! When the output map is small (N = OH*OW below [`BATCH_COLUMNS_BELOW`], conv2-5 of
//! AlexNet) and there are several images, one GEMM covers the whole batch instead: its B
//! holds every image's columns side by side, so N grows from e.g. 169 to 169 * batch and
//! the kernel runs full tiles; C then lands in scratch and its rows are copied to each
//! image's CHW output (a copy of one activation, small next to the GEMM).

use super::im2col::{phase_split, ConvGeom, Im2col};
use crate::gemm::{sgemm, Bias, Epilogue, Kernel, PackedA};

/// Output maps smaller than this are batched into one GEMM per group.
pub const BATCH_COLUMNS_BELOW: usize = 1000;

/// Scratch values [`conv2d`] needs for `batch` images of this layer (0 if none).
pub fn scratch_len(g: &ConvGeom, out_channels: usize, batch: usize) -> usize {
    if batch > 1 && g.n() < BATCH_COLUMNS_BELOW {
        out_channels * g.n() * batch
    } else {
        0
    }
}

/// Values per image of the phased input a strided convolution packs from (0 at stride 1,
/// which packs straight from the input); see [`phase_split`].
pub fn phased_len(g: &ConvGeom, in_channels: usize) -> usize {
    if g.sw > 1 {
        in_channels * g.h * g.row_len()
    } else {
        0
    }
}

/// Convolve `batch` images: `input` is `[batch, groups * cg, h, w]`, `out` is
/// `[batch, o, oh, ow]`; `weights` holds one packed A per group (`o/groups x k()`);
/// `scratch` holds at least [`scratch_len`] values and `phased` at least `batch *`
/// [`phased_len`].
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    kernel: Kernel,
    input: &[f32],
    batch: usize,
    g: &ConvGeom,
    weights: &[PackedA],
    bias: &[f32],
    relu: bool,
    out: &mut [f32],
    scratch: &mut [f32],
    phased: &mut [f32],
) {
    let n = g.n();
    let groups = weights.len();
    let o = bias.len();
    let og = o / groups;
    let (in_len, out_len) = (g.cg * g.h * g.w * groups, o * n);
    // Strided convolutions pack from a phased copy of the input (one pass over it), so
    // every im2col run is a contiguous copy.
    let per_image = phased_len(g, g.cg * groups);
    let (input, in_len, plane) = if per_image > 0 {
        for b in 0..batch {
            let dst = &mut phased[b * per_image..(b + 1) * per_image];
            phase_split(&input[b * in_len..(b + 1) * in_len], g.cg * groups, g, dst);
        }
        (&phased[..batch * per_image], per_image, g.cg * g.h * g.row_len())
    } else {
        (input, in_len, g.cg * g.h * g.w)
    };
    let batched = scratch_len(g, o, batch) > 0;
    for (grp, a) in weights.iter().enumerate() {
        let ep = Epilogue { bias: Bias::Row(&bias[grp * og..(grp + 1) * og]), relu };
        if batched {
            let src = Im2col { input, offset: grp * plane, image_stride: in_len, images: batch, geom: g };
            let cols = src.n();
            let c = &mut scratch[..og * cols];
            sgemm(kernel, a, &src, cols, c, cols, ep);
            // C is [og, batch * n]: row m holds channel grp*og + m of every image.
            for (m, row) in c.chunks_exact(cols).enumerate() {
                for (b, part) in row.chunks_exact(n).enumerate() {
                    let at = b * out_len + (grp * og + m) * n;
                    out[at..at + n].copy_from_slice(part);
                }
            }
        } else {
            for b in 0..batch {
                let img = &input[b * in_len + grp * plane..b * in_len + (grp + 1) * plane];
                let src = Im2col::single(img, g);
                let c = &mut out[b * out_len + grp * og * n..b * out_len + (grp + 1) * og * n];
                sgemm(kernel, a, &src, n, c, n, ep);
            }
        }
    }
}
