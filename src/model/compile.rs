//! The plan compiled into steps: shapes resolved, tensors located in the file, conv
//! weights packed (or Winograd-transformed) for the model's kernels, every ReLU that
//! follows a conv or linear layer fused into its epilogue, and each max-pool next to an
//! LRN fused with it.

use std::ops::Range;

use crate::cpu::Cpu;
use crate::error::{Error, Result};
use crate::gemm::i8::PackedI8;
use crate::gemm::{self, PackedA};
use crate::ops;
use crate::ops::im2col::ConvGeom;
use crate::plan::{AdaptiveAvgPool, AvgPool, Layer, Lrn, LrnWithin, MaxPool, Shape};
use crate::precision::Precision;
use crate::quant::InputQuant;
use crate::tuning::Tuning;
use crate::weights::format::{bf16_from_f32, f32_from_bf16};
use crate::weights::{Dtype, WeightFile};

/// Where a linear layer's weights are read from.
#[derive(Clone, Debug)]
pub(super) enum LinearWeight {
    /// f32, in place in the file (this byte range).
    F32(Range<usize>),
    /// bf16, in place in the file.
    Bf16(Range<usize>),
    /// bf16 rounded at open from the file's f32 weights (a file opened below its
    /// precision): half the file's bytes, in memory.
    OwnedBf16(Vec<u16>),
    /// f32 dequantized at open from the file's int8 weights (an int8 file opened at a
    /// higher precision), in memory.
    OwnedF32(Vec<f32>),
    /// int8 codes, in place in the file or quantized at open from its f32 or bf16 weights,
    /// with each row's scale and code sum (computed at open: one pass over the codes).
    I8 { codes: I8Codes, scales: Vec<f32>, sums: Vec<i32>, quant: InputQuant },
}

/// Where an int8 linear weight's codes are.
#[derive(Clone, Debug)]
pub(super) enum I8Codes {
    /// In place in the file (this byte range).
    File(Range<usize>),
    /// Quantized at open.
    Owned(Vec<i8>),
}

/// One executable step, compiled from the plan with shapes resolved and ReLU fused.
#[derive(Clone, Debug)]
pub(super) enum Step {
    /// Weights packed per group for the model's kernel at open.
    Conv {
        weights: Vec<PackedA>,
        /// Byte range of the bias in the file.
        bias: Range<usize>,
        /// Output channels (all groups).
        out: usize,
        geom: ConvGeom,
        relu: bool,
    },
    /// An int8 convolution: codes packed per group for the int8 GEMM (im2col for every
    /// shape: Winograd's transforms do not keep integers small).
    ConvI8 {
        weights: Vec<PackedI8>,
        bias: Range<usize>,
        out: usize,
        geom: ConvGeom,
        relu: bool,
        /// How the input is quantized.
        quant: InputQuant,
    },
    Relu,
    MaxPool {
        pool: MaxPool,
        input: [usize; 3],
        out: [usize; 2],
    },
    Lrn {
        lrn: Lrn,
        c: usize,
        hw: usize,
    },
    LrnWithin {
        lrn: LrnWithin,
        input: [usize; 3],
    },
    AvgPool {
        pool: AvgPool,
        input: [usize; 3],
        out: [usize; 2],
    },
    AdaptiveAvgPool {
        pool: AdaptiveAvgPool,
        input: [usize; 3],
    },
    Flatten,
    Linear {
        weight: LinearWeight,
        bias: Range<usize>,
        m: usize,
        k: usize,
        relu: bool,
    },
    /// Max-pool and LRN in one pass (either order); the second layer of the pair is `Fused`.
    PoolLrn(ops::pool_lrn::PoolLrn),
    Softmax,
    /// A layer folded into the step before it (a ReLU into its producer's epilogue, the
    /// second half of a pool+LRN pair): nothing to do.
    Fused,
}

impl Step {
    /// True for a conv or linear layer (what has a quantizable input).
    pub(super) fn weighted(&self) -> bool {
        matches!(self, Step::Conv { .. } | Step::ConvI8 { .. } | Step::Linear { .. })
    }

    /// True when the step writes a new buffer (false: it works in place).
    pub(super) fn swaps(&self) -> bool {
        matches!(
            self,
            Step::Conv { .. }
                | Step::ConvI8 { .. }
                | Step::MaxPool { .. }
                | Step::Lrn { .. }
                | Step::LrnWithin { .. }
                | Step::Linear { .. }
                | Step::PoolLrn(_)
                | Step::AvgPool { .. }
                | Step::AdaptiveAvgPool { .. }
        )
    }
}

/// A conv weight as f32 at `precision`: the file's values, rounded through bf16 when the
/// file is f32 and the model bf16 (so that the result is the same as a bf16 file's).
fn conv_weight(weights: &WeightFile, name: &str, precision: Precision) -> Result<Vec<f32>> {
    let mut w = weights.tensor_f32(name)?;
    if precision == Precision::Bf16 && weights.entry(name)?.dtype == Dtype::F32 {
        w.iter_mut().for_each(|v| *v = f32_from_bf16(bf16_from_f32(*v)));
    }
    Ok(w)
}

/// Packed conv weights for the kernel that runs them: at bf16, on a CPU that multiplies
/// bf16 natively, as bf16 pairs (the products then round B to bf16 too); elsewhere the
/// bf16-rounded values stay f32 for the f32 kernels. F(3x3, 5x5) Winograd layers stay
/// f32: their transforms scale values by up to 6 before the products, so bf16 products
/// there lose several times the accuracy of the others, and with K = 48 per group
/// (conv2) the products are too short for the bf16 kernel to gain anything.
fn conv_packed(
    mut packed: Vec<PackedA>,
    geom: &ConvGeom,
    cpu: Cpu,
    precision: Precision,
    tuning: &Tuning,
) -> Vec<PackedA> {
    let f3x5 = ops::winograd::variant(geom) == Some(ops::winograd::Variant::F3x5);
    if precision == Precision::Bf16 && gemm::has_bf16(cpu) && !f3x5 {
        packed.into_iter().map(PackedA::into_bf16).collect()
    } else {
        let b = gemm::blocks_for(cpu, tuning);
        packed.iter_mut().for_each(|a| a.set_blocks([b.mc, b.kc, b.nc]));
        packed
    }
}

/// A linear weight at `precision`: in place when the file stores it so, else converted.
fn linear_weight(weights: &WeightFile, name: &str, precision: Precision) -> Result<LinearWeight> {
    use rayon::prelude::*;
    let range = weights.tensor_range(name)?;
    let entry = weights.entry(name)?;
    // Above MAX_K an int8 sum could overflow: such a layer runs as the file stores it.
    let small = entry.shape.get(1).is_some_and(|&k| k as usize <= crate::quant::MAX_K);
    let quant = weights.input_quant(name)?;
    Ok(match (entry.dtype, precision) {
        (Dtype::I8, Precision::Int8) if small => {
            let (codes, scales) = weights.tensor_i8(name)?;
            let (rows, k) = (scales.len(), codes.len() / scales.len().max(1));
            let sums = crate::quant::row_sums(codes, rows, k);
            LinearWeight::I8 { codes: I8Codes::File(range), scales: scales.to_vec(), sums, quant }
        }
        (_, Precision::Int8) if small => {
            let w = weights.tensor_f32(name)?;
            let rows = entry.shape[0] as usize;
            let k = w.len() / rows.max(1);
            let (codes, scales) = crate::quant::quantize(&w, rows, k);
            let sums = crate::quant::row_sums(&codes, rows, k);
            LinearWeight::I8 { codes: I8Codes::Owned(codes), scales, sums, quant }
        }
        (Dtype::I8, _) => LinearWeight::OwnedF32(weights.tensor_f32(name)?),
        (Dtype::Bf16, Precision::Bf16) => LinearWeight::Bf16(range),
        (Dtype::F32, Precision::Bf16) => {
            let w = weights.f32s(range);
            LinearWeight::OwnedBf16(w.par_iter().with_min_len(1 << 14).map(|&v| bf16_from_f32(v)).collect())
        }
        // Widening a bf16 file to f32 gains nothing in accuracy: it runs at bf16 cost
        // with f32 arithmetic, which is what the in-place bf16 kernel does already.
        (Dtype::Bf16, _) => LinearWeight::Bf16(range),
        _ => LinearWeight::F32(range),
    })
}

/// A conv weight's int8 codes and scales: the file's, or quantized from its weights.
fn conv_codes(weights: &WeightFile, name: &str, rows: usize) -> Result<(Vec<i8>, Vec<f32>)> {
    if let Ok((codes, scales)) = weights.tensor_i8(name) {
        return Ok((codes.to_vec(), scales.to_vec()));
    }
    let w = weights.tensor_f32(name)?;
    Ok(crate::quant::quantize(&w, rows, w.len() / rows.max(1)))
}

/// Resolve the plan into steps: tensor ranges, geometry, ReLU fused into conv/linear.
pub(super) fn compile(
    weights: &WeightFile,
    shapes: &[Shape],
    cpu: Cpu,
    precision: Precision,
    tuning: &Tuning,
) -> Result<Vec<Step>> {
    let mr = gemm::blocks(cpu).mr;
    let plan = weights.plan();
    let mut steps: Vec<Step> = Vec::with_capacity(plan.layers.len());
    for (i, layer) in plan.layers.iter().enumerate() {
        let (inp, out) = (shapes[i], shapes[i + 1]);
        let step = match (layer, inp, out) {
            (Layer::Conv(cv), Shape::Spatial { c, h, w }, Shape::Spatial { h: oh, w: ow, .. }) => {
                let geom = ConvGeom {
                    cg: c / cv.groups as usize,
                    h,
                    w,
                    kh: cv.kernel[0] as usize,
                    kw: cv.kernel[1] as usize,
                    sh: cv.stride[0] as usize,
                    sw: cv.stride[1] as usize,
                    pads: cv.pads,
                    oh,
                    ow,
                };
                let (name, o) = (format!("{}.weight", cv.name), cv.out_channels as usize);
                if precision == Precision::Int8 && geom.k() <= crate::quant::MAX_K {
                    let (codes, scales) = conv_codes(weights, &name, o)?;
                    let (groups, og) = (cv.groups as usize, o / cv.groups as usize);
                    let packed = ops::conv_i8::pack_weights_i8(&codes, &scales, &geom, groups, og);
                    steps.push(Step::ConvI8 {
                        weights: packed,
                        bias: weights.tensor_range(&format!("{}.bias", cv.name))?,
                        out: o,
                        geom,
                        relu: cv.relu,
                        quant: weights.input_quant(&name)?,
                    });
                    continue;
                }
                // Each group's OIHW weights packed into MR panels (Winograd-transformed
                // first for a 3x3 stride-1 layer).
                let wt = conv_weight(weights, &format!("{}.weight", cv.name), precision)?;
                let groups = cv.groups as usize;
                let og = cv.out_channels as usize / groups;
                Step::Conv {
                    weights: conv_packed(
                        ops::conv::pack_weights(&wt, &geom, groups, og, mr),
                        &geom,
                        cpu,
                        precision,
                        tuning,
                    ),
                    bias: weights.tensor_range(&format!("{}.bias", cv.name))?,
                    out: cv.out_channels as usize,
                    geom,
                    relu: cv.relu,
                }
            }
            (Layer::Relu, ..) => {
                // Fuse into the producer's epilogue when there is one.
                match steps.last_mut() {
                    Some(Step::Conv { relu, .. })
                    | Some(Step::ConvI8 { relu, .. })
                    | Some(Step::Linear { relu, .. })
                        if !*relu =>
                    {
                        *relu = true;
                        // Keep step indices aligned with layers: a no-op stands in.
                        Step::Fused
                    }
                    _ => Step::Relu,
                }
            }
            (Layer::MaxPool(p), Shape::Spatial { c, h, w }, Shape::Spatial { h: oh, w: ow, .. }) => {
                Step::MaxPool { pool: p.clone(), input: [c, h, w], out: [oh, ow] }
            }
            (Layer::Lrn(l), Shape::Spatial { c, h, w }, _) => Step::Lrn { lrn: l.clone(), c, hw: h * w },
            (Layer::LrnWithin(l), Shape::Spatial { c, h, w }, _) => {
                Step::LrnWithin { lrn: l.clone(), input: [c, h, w] }
            }
            (Layer::AvgPool(p), Shape::Spatial { c, h, w }, Shape::Spatial { h: oh, w: ow, .. }) => {
                Step::AvgPool { pool: p.clone(), input: [c, h, w], out: [oh, ow] }
            }
            (Layer::AdaptiveAvgPool(p), Shape::Spatial { c, h, w }, _) => {
                Step::AdaptiveAvgPool { pool: p.clone(), input: [c, h, w] }
            }
            (Layer::Flatten, ..) => Step::Flatten,
            (Layer::Linear(l), Shape::Flat(k), Shape::Flat(m)) => Step::Linear {
                weight: linear_weight(weights, &format!("{}.weight", l.name), precision)?,
                bias: weights.tensor_range(&format!("{}.bias", l.name))?,
                m,
                k,
                relu: l.relu,
            },
            (Layer::Softmax, ..) => Step::Softmax,
            (layer, ..) => {
                return Err(Error::InvalidLayer { index: i, kind: layer.kind(), reason: format!("input shape {inp}") })
            }
        };
        steps.push(step);
    }
    fuse_pool_lrn(&mut steps, shapes);
    Ok(steps)
}

/// Merge each max-pool directly followed by an LRN, or LRN followed by max-pool, into one
/// [`Step::PoolLrn`]; the second step of the pair becomes [`Step::Fused`].
fn fuse_pool_lrn(steps: &mut [Step], shapes: &[Shape]) {
    use ops::pool_lrn::{Order, PoolLrn};
    for i in 0..steps.len().saturating_sub(1) {
        let (Shape::Spatial { c, h, w }, Shape::Spatial { h: oh, w: ow, .. }) = (shapes[i], shapes[i + 2]) else {
            continue;
        };
        let fused = match (&steps[i], &steps[i + 1]) {
            (Step::MaxPool { pool, .. }, Step::Lrn { lrn, .. }) => PoolLrn {
                pool: pool.clone(),
                lrn: lrn.clone(),
                order: Order::PoolThenLrn,
                input: [c, h, w],
                out: [oh, ow],
            },
            (Step::Lrn { lrn, .. }, Step::MaxPool { pool, .. }) => PoolLrn {
                pool: pool.clone(),
                lrn: lrn.clone(),
                order: Order::LrnThenPool,
                input: [c, h, w],
                out: [oh, ow],
            },
            _ => continue,
        };
        steps[i] = Step::PoolLrn(fused);
        steps[i + 1] = Step::Fused;
    }
}
