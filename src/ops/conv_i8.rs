//! int8 convolution: im2col into byte quads and the int8 GEMM, image by image.
//!
//! Each k row of the GEMM's B is one quad: four codes in a `u32`. The input is laid out
//! so that the quads of a run of output pixels lie side by side, and the f32 im2col
//! packer (generic over its element) copies whole quads. Two layouts, chosen from the
//! geometry alone ([`Layout::of`]):
//!
//! - **Channels**: four channels' codes at one pixel make a quad (the last block of a
//!   group padded with zero weights). K runs over (channel block, ky, kx, channel in
//!   block). Any stride; no waste when a group has a multiple of 4 channels (AlexNet's
//!   conv2-5).
//! - **Row**: four neighbouring columns of one input row make a quad. With a horizontal
//!   stride that is a multiple of 4, output column `x` reads the quads `x * sw / 4 + q`,
//!   so in quads the layer is a convolution of horizontal stride `sw / 4` and kernel width
//!   `ceil(kw / 4)` (taps past `kw` get zero weights). K runs over (channel, ky, quad,
//!   column in quad). For conv1 (3 channels, 11x11, stride 4) that is K = 396 against the
//!   channel layout's 484.
//!
//! The weights are reordered into the layout's K order once at open; integer sums do
//! not depend on the order, so both layouts give the reference's result bit for bit.

use rayon::prelude::*;

use super::conv::by_group;
use super::im2col::{prepare_as, ConvGeom, Im2col};
use crate::gemm::i8::{self, PackedI8};
use crate::gemm::kernel::i8::{quantize_quads, quantize_row, range, Kernel};
use crate::plan::Pads;
use crate::quant::{ActParams, InputQuant};

/// How an int8 convolution's input becomes quads (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Four channels at one pixel.
    Channels,
    /// Four neighbouring columns of one row.
    Row,
}

impl Layout {
    /// The layout with the smaller K for this geometry (the row layout needs a
    /// horizontal stride that is a multiple of 4).
    pub fn of(g: &ConvGeom) -> Layout {
        let taps = g.kh * g.kw;
        let channels = g.cg.div_ceil(4) * 4 * taps;
        let row = g.cg * g.kh * g.kw.div_ceil(4) * 4;
        if g.sw.is_multiple_of(4) && row < channels {
            Layout::Row
        } else {
            Layout::Channels
        }
    }

    /// The geometry of B in quads: channels become blocks of four, or rows become quads
    /// of four columns (horizontal padding then lives in the quads).
    pub fn quad_geom(self, g: &ConvGeom) -> ConvGeom {
        match self {
            Layout::Channels => ConvGeom { cg: g.cg.div_ceil(4), ..*g },
            Layout::Row => {
                let (sw, kw) = (g.sw / 4, g.kw.div_ceil(4));
                let pads = Pads { left: 0, right: 0, ..g.pads };
                ConvGeom { w: (g.ow - 1) * sw + kw, kw, sw, pads, ..*g }
            }
        }
    }

    /// The quad of K row `k` of the original order `(ic, ky, kx)`: `(quad row, byte)`.
    fn position(self, g: &ConvGeom, ic: usize, ky: usize, kx: usize) -> (usize, usize) {
        match self {
            Layout::Channels => ((ic / 4 * g.kh + ky) * g.kw + kx, ic % 4),
            Layout::Row => ((ic * g.kh + ky) * g.kw.div_ceil(4) + kx / 4, kx % 4),
        }
    }
}

/// Values (f32 slots) per image of the scratch [`conv2d_i8`] works in: the image's
/// codes (the row layout only), its quads, and those prepared (padded, phased).
pub fn phased_len_i8(g: &ConvGeom, in_channels: usize) -> usize {
    let layout = Layout::of(g);
    let g4 = layout.quad_geom(g);
    let groups = in_channels / g.cg.max(1);
    let codes = if layout == Layout::Row { (in_channels * g.h * g.w).div_ceil(4) } else { 0 };
    codes + groups * g4.cg * (g4.h * g4.w + g4.plane())
}

/// Pixels of a plane quantized per parallel task.
const QUANTIZE_CHUNK: usize = 4096;

/// An int8 convolution's weights for [`conv2d_i8`]: per group, the `og x (cg kh kw)`
/// codes reordered into the layout's K order (zero for padding channels or columns)
/// and packed with their scales.
pub fn pack_weights_i8(codes: &[i8], scales: &[f32], g: &ConvGeom, groups: usize, og: usize) -> Vec<PackedI8> {
    let layout = Layout::of(g);
    let k4 = layout.quad_geom(g).k() * 4;
    let (cg, kh, kw) = (g.cg, g.kh, g.kw);
    (0..groups)
        .map(|grp| {
            let mut order = vec![0i8; og * k4];
            for r in 0..og {
                let src = &codes[(grp * og + r) * cg * kh * kw..(grp * og + r + 1) * cg * kh * kw];
                for ic in 0..cg {
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let (row, byte) = layout.position(g, ic, ky, kx);
                            order[r * k4 + row * 4 + byte] = src[(ic * kh + ky) * kw + kx];
                        }
                    }
                }
            }
            PackedI8::pack(&order, &scales[grp * og..], og, k4)
        })
        .collect()
}

/// [`super::conv::conv2d`] at int8: each image's input quantized as `quant` says (by its
/// own range, or fixed; an image with a value that is not finite gets NaN outputs) into
/// quads, prepared as such (padded with the zero point); each group's int8 GEMM packs
/// its k rows as runs of whole quads and dequantizes into its slice of the CHW output.
/// A batch is shared out in runs of consecutive images, one run and one scratch per
/// worker (each image's work on its share of the pool, no GEMM split finer than it
/// needs); a single image gets the whole pool. The result is the same either way: the
/// sums are integers. `weights` are [`pack_weights_i8`]'s; `phased` holds at least
/// `min(batch, threads) *` [`phased_len_i8`] values.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_i8(
    kern: Kernel,
    input: &[f32],
    batch: usize,
    g: &ConvGeom,
    weights: &[PackedI8],
    bias: &[f32],
    (quant, relu): (InputQuant, bool),
    out: &mut [f32],
    phased: &mut [f32],
) {
    let channels = g.cg * weights.len();
    let (in_len, out_len, per) = (channels * g.h * g.w, bias.len() * g.n(), phased_len_i8(g, channels));
    let tasks = rayon::current_num_threads();
    // Consecutive images per worker, each worker reusing one scratch (hot in its caches).
    let (workers, each) = (tasks.min(batch), (tasks / batch).max(1));
    let per_worker = batch.div_ceil(workers);
    let outs = out[..batch * out_len].par_chunks_mut(per_worker * out_len);
    outs.zip(phased[..workers * per].par_chunks_mut(per)).enumerate().for_each(|(w, (outs, scratch))| {
        crate::base::census::task(|| {
            for (i, out) in outs.chunks_exact_mut(out_len).enumerate() {
                let b = w * per_worker + i;
                let img = &input[b * in_len..(b + 1) * in_len];
                conv_image_i8(kern, img, g, weights, bias, (quant, relu), out, scratch, each);
            }
        })
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
    (quant, relu): (InputQuant, bool),
    out: &mut [f32],
    scratch: &mut [f32],
    tasks: usize,
) {
    let n = g.n();
    let groups = weights.len();
    let og = bias.len() / groups;
    let layout = Layout::of(g);
    let g4 = layout.quad_geom(g);
    let (planes, plane) = (g4.cg * groups, g4.cg * g4.plane());
    let act = quant.params(range(kern, img));
    let zero = act.zero as u8;
    let (codes, rest) = match layout {
        Layout::Row => scratch.split_at_mut(img.len().div_ceil(4)),
        Layout::Channels => scratch.split_at_mut(0),
    };
    let (quads, prepared) = rest.split_at_mut(planes * g4.h * g4.w);
    let quads: &mut [u32] = bytemuck::cast_slice_mut(quads);
    let prepared: &mut [u32] = bytemuck::cast_slice_mut(&mut prepared[..planes * g4.plane()]);
    match layout {
        Layout::Channels => channel_quads(kern, img, g, &g4, &act, quads),
        Layout::Row => {
            let codes: &mut [u8] = &mut bytemuck::cast_slice_mut(codes)[..img.len()];
            codes.par_chunks_mut(QUANTIZE_CHUNK).zip(img.par_chunks(QUANTIZE_CHUNK)).for_each(|(c, x)| {
                crate::base::census::task(|| {
                    crate::base::census::work(x.len() as f64);
                    quantize_row(kern, x, &act, c);
                })
            });
            row_quads(codes, g, &g4, zero, quads);
        }
    }
    prepare_as(quads, planes, &g4, prepared, u32::from_le_bytes([zero; 4]));
    let prepared = &*prepared;
    by_group(groups, tasks, out, og * n, &|grp, c, t| {
        let src = Im2col::single(&prepared[grp * plane..(grp + 1) * plane], &g4);
        let ep = i8::Epilogue { act, bias: &bias[grp * og..(grp + 1) * og], relu };
        i8::gemm(kern, &weights[grp], &src, n, c, n, ep, t);
    });
}

/// The channel layout: four planes of the image quantized straight into one plane of
/// quads per block, pieces shared out over the pool.
fn channel_quads(kern: Kernel, img: &[f32], g: &ConvGeom, g4: &ConvGeom, act: &ActParams, quads: &mut [u32]) {
    let hw = g.h * g.w;
    quads.par_chunks_mut(hw).enumerate().for_each(|(blk, dst)| {
        let (grp, first) = (blk / g4.cg, (blk % g4.cg) * 4);
        dst.par_chunks_mut(QUANTIZE_CHUNK).enumerate().for_each(|(piece, d)| crate::base::census::task(|| {
            crate::base::census::work(4.0 * d.len() as f64);
            let at = piece * QUANTIZE_CHUNK;
            let plane = |t: usize| {
                let ic = first + t;
                (ic < g.cg).then(|| &img[(grp * g.cg + ic) * hw + at..(grp * g.cg + ic) * hw + at + d.len()])
            };
            quantize_quads(kern, [plane(0), plane(1), plane(2), plane(3)], act, d);
        }));
    });
}

/// The row layout: each input row's codes, with the horizontal padding (the zero point)
/// around them, as `g4.w` quads of four columns.
fn row_quads(codes: &[u8], g: &ConvGeom, g4: &ConvGeom, zero: u8, quads: &mut [u32]) {
    let (w, left) = (g.w, g.pads.left as usize);
    let bytes: &mut [u8] = bytemuck::cast_slice_mut(quads);
    bytes.par_chunks_mut(4 * g4.w).zip(codes.par_chunks(w)).for_each(|(row, line)| crate::base::census::task(|| {
        crate::base::census::work(row.len() as f64 / 4.0);
        // Padded columns past the row's end are read only by taps with zero weight.
        let left = left.min(row.len());
        let end = (left + w).min(row.len());
        row[..left].fill(zero);
        row[left..end].copy_from_slice(&line[..end - left]);
        row[end..].fill(zero);
    }));
}
