//! The whole network on the reference operators, straight from a weight file's plan and
//! tensors: the oracle for `Model` (slow; for tests and fuzzing).

use super::{conv2d, linear, lrn, maxpool, relu, softmax};
use crate::error::{Error, Result};
use crate::plan::{Layer, Shape};
use crate::weights::WeightFile;

/// The whole network on the reference operators (reduced-precision weights widened to
/// f32 exactly, f32 arithmetic): the plan's raw output (`[batch, classes]`)
/// for `input` (`[batch, C, H, W]`). Slow; for tests and fuzzing.
pub fn network(file: &WeightFile, input: &[f32]) -> Result<Vec<f32>> {
    network_at(file, input, false)
}

/// [`network`] with the convolutions and linear layers at int8 ([`super::int8`]): the
/// file's codes and scales if it stores int8 weights, else its weights quantized by the
/// reference's rule. Layers with K above 65536 stay f32, as the runtime's do.
pub fn network_int8(file: &WeightFile, input: &[f32]) -> Result<Vec<f32>> {
    network_at(file, input, true)
}

/// A layer's int8 weight, or `None` when it runs at f32: codes, scales, and the fixed
/// input parameters `(scale, zero)` when the file has them (`<layer>.input_quant`).
type Int8Weight = (Vec<i8>, Vec<f32>, Option<(f32, f32)>);

fn int8_weight(file: &WeightFile, name: &str, rows: usize, k: usize, int8: bool) -> Result<Option<Int8Weight>> {
    if !int8 || k > 1 << 16 {
        return Ok(None);
    }
    let (q, s) = match file.tensor_i8(name) {
        Ok((q, s)) => (q.to_vec(), s.to_vec()),
        Err(_) => super::int8::quantize_weights(&file.tensor_f32(name)?, rows, k),
    };
    let layer = name.strip_suffix(".weight").unwrap_or(name);
    let fixed = file.tensor(&format!("{layer}.input_quant")).ok().map(|v| (v[0], v[1]));
    Ok(Some((q, s, fixed)))
}

fn network_at(file: &WeightFile, input: &[f32], int8: bool) -> Result<Vec<f32>> {
    let plan = file.plan();
    let shapes = plan.shapes()?;
    let per = shapes[0].len();
    if input.is_empty() || !input.len().is_multiple_of(per) {
        return Err(Error::InputLength { per_image: per, found: input.len(), shape: shapes[0].to_string() });
    }
    let batch = input.len() / per;
    let mut act = input.to_vec();
    for (i, layer) in plan.layers.iter().enumerate() {
        let (inp, out) = (shapes[i], shapes[i + 1]);
        let images =
            |act: &[f32], f: &dyn Fn(&[f32]) -> Vec<f32>| -> Vec<f32> { act.chunks(inp.len()).flat_map(f).collect() };
        act = match (layer, inp, out) {
            (Layer::Conv(c), Shape::Spatial { c: ci, h, w }, Shape::Spatial { c: o, h: oh, w: ow }) => {
                let name = format!("{}.weight", c.name);
                let wt = file.tensor_f32(&name)?;
                let b = file.tensor(&format!("{}.bias", c.name))?;
                let k = [c.kernel[0] as usize, c.kernel[1] as usize];
                let s = [c.stride[0] as usize, c.stride[1] as usize];
                let g = c.groups as usize;
                match int8_weight(file, &name, o, ci / g * k[0] * k[1], int8)? {
                    Some((q, sc, fixed)) => images(&act, &|x| {
                        let ep = (fixed, c.relu);
                        super::int8::conv2d(x, [ci, h, w], &q, &sc, b, o, k, s, c.pads, g, [oh, ow], ep)
                    }),
                    None => images(&act, &|x| conv2d(x, [ci, h, w], &wt, b, o, k, s, c.pads, g, [oh, ow], c.relu)),
                }
            }
            (Layer::MaxPool(p), Shape::Spatial { c, h, w }, Shape::Spatial { h: oh, w: ow, .. }) => {
                images(&act, &|x| maxpool(x, [c, h, w], p, [oh, ow]))
            }
            (Layer::Lrn(l), Shape::Spatial { c, h, w }, _) => images(&act, &|x| lrn(x, [c, h, w], l)),
            (Layer::LrnWithin(l), Shape::Spatial { c, h, w }, _) => {
                images(&act, &|x| super::lrn_within(x, [c, h, w], l))
            }
            (Layer::AvgPool(p), Shape::Spatial { c, h, w }, Shape::Spatial { h: oh, w: ow, .. }) => {
                images(&act, &|x| super::avgpool(x, [c, h, w], p, [oh, ow]))
            }
            (Layer::AdaptiveAvgPool(p), Shape::Spatial { c, h, w }, _) => {
                images(&act, &|x| super::adaptive_avgpool(x, [c, h, w], p))
            }
            (Layer::Relu, ..) => act.iter().map(|&v| relu(v)).collect(),
            (Layer::Flatten, ..) => act,
            (Layer::Linear(l), Shape::Flat(k), Shape::Flat(m)) => {
                let name = format!("{}.weight", l.name);
                let b = file.tensor(&format!("{}.bias", l.name))?;
                match int8_weight(file, &name, m, k, int8)? {
                    Some((q, sc, fixed)) => super::int8::linear(&act, batch, &q, &sc, b, m, k, (fixed, l.relu)),
                    None => linear(&act, batch, &file.tensor_f32(&name)?, b, m, k, l.relu),
                }
            }
            (Layer::Softmax, Shape::Flat(n), _) => softmax(&act, n),
            (layer, ..) => {
                return Err(Error::InvalidLayer { index: i, kind: layer.kind(), reason: format!("input {inp}") })
            }
        };
    }
    Ok(act)
}
