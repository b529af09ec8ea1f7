//! Convolution = per group, im2col packed straight into B panels, then SGEMM with the
//! bias+ReLU epilogue.
//!
//! One image at a time the GEMM writes straight into the group's slice of the CHW output.
//! When the output map is small (N = OH*OW below [`BATCH_COLUMNS_BELOW`], conv2-5 of
//! AlexNet) and there are several images, one GEMM covers the whole batch instead: its B
//! holds every image's columns side by side, so N grows from e.g. 169 to 169 * batch and
//! the kernel runs full tiles; C then lands in scratch and its rows are copied to each
//! image's CHW output (a copy of one activation, small next to the GEMM).

use super::im2col::{prepare, ConvGeom, Im2col};
use super::winograd;
use crate::base::split::halve;
use crate::cpu::Cpu;
use crate::gemm::{sgemm_tasks, Bias, Epilogue, PackedA};

/// Output maps smaller than this are batched into one GEMM per group.
pub const BATCH_COLUMNS_BELOW: usize = 1000;

/// Scratch values [`conv2d`] needs for `batch` images of this layer (0 if none).
pub fn scratch_len(g: &ConvGeom, out_channels: usize, batch: usize) -> usize {
    if batch > 1 && g.n() < BATCH_COLUMNS_BELOW && !winograd::applies(g) {
        out_channels * g.n() * batch
    } else {
        0
    }
}

/// Values per image of the prepared input every convolution packs from (padding
/// explicit, rows phased at a stride above 1 and for Winograd); see [`prepare`].
pub fn phased_len(g: &ConvGeom, in_channels: usize) -> usize {
    if winograd::applies(g) {
        winograd::padded_len(g, in_channels)
    } else {
        in_channels * g.plane()
    }
}

/// Scratch values a convolution needs whatever the batch (a Winograd layer's transformed
/// tiles; 0 for the others).
pub fn fixed_scratch_len(g: &ConvGeom, in_channels: usize, out_channels: usize) -> usize {
    winograd::scratch_len(g, in_channels, out_channels)
}

/// The weights of one convolution as [`conv2d`] takes them: OIHW (`groups` blocks of
/// `og x cg*kh*kw`) packed per group, or for a 3x3 or 5x5 stride-1 layer the Winograd
/// transforms per group ([`winograd::pack_weights`]).
pub fn pack_weights(w: &[f32], g: &ConvGeom, groups: usize, og: usize, mr: usize) -> Vec<PackedA> {
    if let Some(v) = winograd::variant(g) {
        winograd::pack_weights(w, v, groups, og, g.cg, mr)
    } else {
        w.chunks_exact(og * g.k()).take(groups).map(|gw| PackedA::pack(gw, og, g.k(), mr)).collect()
    }
}

/// Convolve `batch` images: `input` is `[batch, groups * cg, h, w]`, `out` is
/// `[batch, o, oh, ow]`; `weights` holds one packed A per group (`o/groups x k()`);
/// `scratch` holds at least [`scratch_len`] values and `phased` at least `batch *`
/// [`phased_len`].
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    cpu: Cpu,
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
    if winograd::applies(g) {
        return winograd::conv(cpu, input, batch, g, weights, bias, relu, out, phased, scratch);
    }
    let n = g.n();
    let groups = weights.len();
    let o = bias.len();
    let og = o / groups;
    let (in_len, out_len) = (g.cg * g.h * g.w * groups, o * n);
    // Every convolution packs from a prepared copy of its input (one pass over it), so
    // every im2col run is a plain copy.
    let per_image = phased_len(g, g.cg * groups);
    for b in 0..batch {
        prepare(
            &input[b * in_len..(b + 1) * in_len],
            g.cg * groups,
            g,
            &mut phased[b * per_image..(b + 1) * per_image],
        );
    }
    let (input, in_len, plane) = (&phased[..batch * per_image], per_image, g.cg * g.plane());
    let batched = scratch_len(g, o, batch) > 0;
    let ep = |grp: usize| Epilogue { bias: Bias::Row(&bias[grp * og..(grp + 1) * og]), relu };
    let tasks = rayon::current_num_threads();
    if batched {
        let cols = batch * n;
        let c = &mut scratch[..o * cols];
        by_group(groups, tasks, c, og * cols, &|grp, c, t| {
            let src = Im2col { input, offset: grp * plane, image_stride: in_len, images: batch, geom: g };
            sgemm_tasks(cpu, &weights[grp], &src, cols, c, cols, ep(grp), t);
        });
        // C is [o, batch * n]: row m holds channel m of every image.
        for (m, row) in c.chunks_exact(cols).enumerate() {
            for (b, part) in row.chunks_exact(n).enumerate() {
                let at = b * out_len + m * n;
                out[at..at + n].copy_from_slice(part);
            }
        }
    } else {
        for (b, out) in out.chunks_exact_mut(out_len).take(batch).enumerate() {
            by_group(groups, tasks, out, og * n, &|grp, c, t| {
                let img = &input[b * in_len + grp * plane..b * in_len + (grp + 1) * plane];
                sgemm_tasks(cpu, &weights[grp], &Im2col::single(img, g), n, c, n, ep(grp), t);
            });
        }
    }
}

/// Run `f(group, c, tasks)` for each of `groups` products whose outputs are the
/// consecutive `chunk`-value parts of `c`, sharing `tasks` threads: groups side by side
/// (each on its share of the threads) rather than one after another on all of them, so
/// no product is cut finer than it needs to be (conv4 at batch 1: one group per thread
/// instead of two 169-column products each split 3 + 2.5 panels). Every product's result
/// is the same for any number of tasks.
pub(super) fn by_group(groups: usize, tasks: usize, c: &mut [f32], chunk: usize, f: &(dyn Fn(usize, &mut [f32], usize) + Sync)) {
    let c = &mut c[..groups * chunk];
    halve(groups, tasks.max(1), c, &|d, at| d.split_at_mut(at * chunk), &|items, d, t| {
        for (grp, part) in items.zip(d.chunks_exact_mut(chunk)) {
            f(grp, part, t);
        }
    });
}
