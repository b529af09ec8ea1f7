//! The plan compiled into steps: shapes resolved, tensors located in the file, conv
//! weights packed (or Winograd-transformed) for the model's kernels, every ReLU that
//! follows a conv or linear layer fused into its epilogue, and each max-pool next to an
//! LRN fused with it.

use std::ops::Range;

use crate::cpu::Cpu;
use crate::error::{Error, Result};
use crate::gemm::{self, PackedA};
use crate::ops;
use crate::ops::im2col::ConvGeom;
use crate::plan::{Layer, Lrn, MaxPool, Shape};
use crate::weights::WeightFile;

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
    Flatten,
    Linear {
        weight: Range<usize>,
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
    /// True when the step writes a new buffer (false: it works in place).
    pub(super) fn swaps(&self) -> bool {
        matches!(
            self,
            Step::Conv { .. } | Step::MaxPool { .. } | Step::Lrn { .. } | Step::Linear { .. } | Step::PoolLrn(_)
        )
    }
}

/// Resolve the plan into steps: tensor ranges, geometry, ReLU fused into conv/linear.
pub(super) fn compile(weights: &WeightFile, shapes: &[Shape], cpu: Cpu) -> Result<Vec<Step>> {
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
                // Each group's OIHW weights packed into MR panels (Winograd-transformed
                // first for a 3x3 stride-1 layer).
                let wt = weights.tensor(&format!("{}.weight", cv.name))?;
                let groups = cv.groups as usize;
                let og = cv.out_channels as usize / groups;
                Step::Conv {
                    weights: ops::conv::pack_weights(wt, &geom, groups, og, mr),
                    bias: weights.tensor_range(&format!("{}.bias", cv.name))?,
                    out: cv.out_channels as usize,
                    geom,
                    relu: cv.relu,
                }
            }
            (Layer::Relu, ..) => {
                // Fuse into the producer's epilogue when there is one.
                match steps.last_mut() {
                    Some(Step::Conv { relu, .. }) | Some(Step::Linear { relu, .. }) if !*relu => {
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
            (Layer::Flatten, ..) => Step::Flatten,
            (Layer::Linear(l), Shape::Flat(k), Shape::Flat(m)) => Step::Linear {
                weight: weights.tensor_range(&format!("{}.weight", l.name))?,
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
