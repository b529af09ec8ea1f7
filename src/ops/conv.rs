//! Convolution = per group, im2col packed straight into B panels, then SGEMM with the
//! bias+ReLU epilogue.
//!
//! One image at a time the GEMM writes straight into the group's slice of the CHW output.
//! When the output map is small (N = OH*OW below [`BATCH_COLUMNS_BELOW`], conv2-5 of
//! AlexNet) and there are several images, one GEMM covers the whole batch instead: its B
//! holds every image's columns side by side, so N grows from e.g. 169 to 169 * batch and
//! the kernel runs full tiles; C then lands in scratch and its rows are copied to each
//! image's CHW output (a copy of one activation, small next to the GEMM).

use super::im2col::{prepare, prepare_as, ConvGeom, Im2col};
use super::winograd;
use crate::base::split::halve;
use crate::cpu::Cpu;
use crate::gemm::i8::{self, PackedI8};
use crate::gemm::kernel::i8::{quantize_quads, range, Kernel};
use rayon::prelude::*;
use crate::gemm::{sgemm_tasks, Bias, Epilogue, PackedA};
use crate::quant::ActParams;

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

/// The geometry of an int8 convolution's B in `u32` elements: each holds four channels'
/// codes, so a group's channels become `ceil(cg / 4)` blocks (the last padded).
pub fn quad_geom(g: &ConvGeom) -> ConvGeom {
    ConvGeom { cg: g.cg.div_ceil(4), ..*g }
}

/// Values (f32 slots) per image of the scratch [`conv2d_i8`] works in: the image's
/// codes four channels to a `u32`, and those prepared (padded, phased).
pub fn phased_len_i8(g: &ConvGeom, in_channels: usize) -> usize {
    let blocks = in_channels / g.cg.max(1) * g.cg.div_ceil(4);
    blocks * (g.h * g.w + g.plane())
}

/// Pixels of a plane quantized per parallel task.
const QUANTIZE_CHUNK: usize = 4096;

/// An int8 convolution's weights for [`conv2d_i8`]: per group, the `og x (cg kh kw)`
/// codes reordered so that K runs over (channel block, ky, kx, channel in the block),
/// the order in which B's quads hold the input (zero for the padding channels), and
/// packed with their scales.
pub fn pack_weights_i8(codes: &[i8], scales: &[f32], g: &ConvGeom, groups: usize, og: usize) -> Vec<PackedI8> {
    let (cg, taps) = (g.cg, g.kh * g.kw);
    let blocks = cg.div_ceil(4);
    let k4 = blocks * taps * 4;
    (0..groups)
        .map(|grp| {
            let mut order = vec![0i8; og * k4];
            for r in 0..og {
                let src = &codes[(grp * og + r) * cg * taps..(grp * og + r + 1) * cg * taps];
                for ic in 0..cg {
                    for tap in 0..taps {
                        order[r * k4 + ((ic / 4) * taps + tap) * 4 + ic % 4] = src[ic * taps + tap];
                    }
                }
            }
            PackedI8::pack(&order, &scales[grp * og..], og, k4)
        })
        .collect()
}

/// [`conv2d`] at int8: each image's input quantized by its own parameters
/// ([`ActParams::of`]; an image with a value that is not finite gets NaN outputs), four
/// channels' codes to a `u32`, prepared as such (padded with the zero point), so that
/// each k row the int8 GEMM packs is one run of whole quads, copied as the f32 im2col
/// copies values; each group's GEMM dequantizes into its slice of the CHW output.
/// A batch is shared out image by image (each image's work on its share of the pool, no
/// GEMM split finer than it needs); a single image gets the whole pool. The result is
/// the same either way: the sums are integers. `weights` are [`pack_weights_i8`]'s;
/// `phased` holds at least `batch *` [`phased_len_i8`] values.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_i8(
    kern: Kernel,
    input: &[f32],
    batch: usize,
    g: &ConvGeom,
    weights: &[PackedI8],
    bias: &[f32],
    relu: bool,
    out: &mut [f32],
    phased: &mut [f32],
) {
    let channels = g.cg * weights.len();
    let (in_len, out_len, per) = (channels * g.h * g.w, bias.len() * g.n(), phased_len_i8(g, channels));
    let tasks = rayon::current_num_threads();
    let images = out[..batch * out_len].par_chunks_mut(out_len).zip(phased[..batch * per].par_chunks_mut(per));
    let each = (tasks / batch).max(1);
    images.enumerate().with_max_len(1).for_each(|(b, (out, scratch))| {
        let img = &input[b * in_len..(b + 1) * in_len];
        conv_image_i8(kern, img, g, weights, bias, relu, out, scratch, each);
    });
}

/// One image of [`conv2d_i8`] on `tasks` threads.
#[allow(clippy::too_many_arguments)]
fn conv_image_i8(
    kern: Kernel,
    img: &[f32],
    g: &ConvGeom,
    weights: &[PackedI8],
    bias: &[f32],
    relu: bool,
    out: &mut [f32],
    scratch: &mut [f32],
    tasks: usize,
) {
    let n = g.n();
    let groups = weights.len();
    let og = bias.len() / groups;
    let hw = g.h * g.w;
    let g4 = quad_geom(g);
    let blocks = g4.cg * groups;
    let plane = g4.cg * g4.plane();
    let (quads, prepared) = scratch.split_at_mut(blocks * hw);
    let quads: &mut [u32] = bytemuck::cast_slice_mut(quads);
    let prepared: &mut [u32] = bytemuck::cast_slice_mut(prepared);
    let act = ActParams::of_range(range(kern, img));
    // Quantized straight into quads, plane pieces shared out over the pool.
    quads.par_chunks_mut(hw).enumerate().for_each(|(blk, dst)| {
        let (grp, first) = (blk / g4.cg, (blk % g4.cg) * 4);
        dst.par_chunks_mut(QUANTIZE_CHUNK).enumerate().for_each(|(piece, d)| {
            let at = piece * QUANTIZE_CHUNK;
            let plane = |t: usize| {
                let ic = first + t;
                (ic < g.cg).then(|| &img[(grp * g.cg + ic) * hw + at..(grp * g.cg + ic) * hw + at + d.len()])
            };
            quantize_quads(kern, [plane(0), plane(1), plane(2), plane(3)], &act, d);
        });
    });
    prepare_as(quads, blocks, &g4, prepared, u32::from_le_bytes([act.zero as u8; 4]));
    let prepared = &*prepared;
    by_group(groups, tasks, out, og * n, &|grp, c, t| {
        let src = Im2col::single(&prepared[grp * plane..(grp + 1) * plane], &g4);
        let ep = i8::Epilogue { act, bias: &bias[grp * og..(grp + 1) * og], relu };
        i8::gemm(kern, &weights[grp], &src, n, c, n, ep, t);
    });
}

/// Run `f(group, c, tasks)` for each of `groups` products whose outputs are the
/// consecutive `chunk`-value parts of `c`, sharing `tasks` threads: groups side by side
/// (each on its share of the threads) rather than one after another on all of them, so
/// no product is cut finer than it needs to be (conv4 at batch 1: one group per thread
/// instead of two 169-column products each split 3 + 2.5 panels). Every product's result
/// is the same for any number of tasks.
fn by_group(groups: usize, tasks: usize, c: &mut [f32], chunk: usize, f: &(dyn Fn(usize, &mut [f32], usize) + Sync)) {
    let c = &mut c[..groups * chunk];
    halve(groups, tasks.max(1), c, &|d, at| d.split_at_mut(at * chunk), &|items, d, t| {
        for (grp, part) in items.zip(d.chunks_exact_mut(chunk)) {
            f(grp, part, t);
        }
    });
}
