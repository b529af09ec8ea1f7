//! Deterministic synthetic networks: the embedded default of `alexnet-bench` and the
//! full-size test models.
//!
//! Weights come from a counter-based generator that `tools/make_fixtures.py` reproduces
//! bit for bit in numpy, so ONNX Runtime's outputs on full-size networks can be committed
//! as a few kilobytes instead of 240 MB of weights:
//!
//! ```text
//! mix(z)        = splitmix64 finaliser: z ^= z>>30; z *= 0xBF58476D1CE4E5B9;
//!                 z ^= z>>27; z *= 0x94D049BB133111EB; z ^= z>>31
//! value(s, i)   = ((mix(mix(s) ^ i) >> 40) as f32 / 2^24) * 2 - 1        in [-1, 1)
//! tensor j      : stream s = seed * 65536 + j, values value(s, i) * scale, i = 0..len
//!                 (j counts the plan's tensors in order: conv1.weight = 0, conv1.bias = 1, ...)
//! weight scale  = sqrt(6 / fan_in) rounded to f32 (He-uniform: keeps ReLU activations O(1))
//! bias scale    = 0.1
//! input         : stream seed * 65536 + 65535, scale 1
//! ```
//!
//! All arithmetic after `mix` is exact in f32 except the final multiply, which numpy's
//! float32 performs identically.

use crate::error::Result;
use crate::plan::{Layer, Pads, Plan, Preprocess};
use crate::weights::format::OwnedTensor;

fn mix(mut z: u64) -> u64 {
    z ^= z >> 30;
    z = z.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z ^= z >> 27;
    z = z.wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `len` values of stream `stream`, uniform in `[-scale, scale)`.
pub fn fill(stream: u64, len: usize, scale: f32) -> Vec<f32> {
    let base = mix(stream);
    (0..len as u64)
        .map(|i| {
            let u = (mix(base ^ i) >> 40) as f32 * (1.0 / 16_777_216.0);
            (u * 2.0 - 1.0) * scale
        })
        .collect()
}

/// A deterministic input batch for `plan`: `batch` images, values in `[-1, 1)`.
pub fn input(plan: &Plan, seed: u64, batch: usize) -> Vec<f32> {
    let per = plan.input.iter().map(|&d| d as usize).product::<usize>();
    fill(seed.wrapping_mul(65536).wrapping_add(65535), per * batch, 1.0)
}

/// Deterministic weights for every tensor `plan` needs.
pub fn weights(plan: &Plan, seed: u64) -> Result<Vec<OwnedTensor>> {
    let specs = plan.tensor_specs()?;
    Ok(specs
        .into_iter()
        .enumerate()
        .map(|(j, spec)| {
            let len = spec.shape.iter().product::<u64>() as usize;
            let scale = if spec.shape.len() == 1 {
                0.1
            } else {
                let fan_in: u64 = spec.shape[1..].iter().product();
                (6.0f64 / fan_in as f64).sqrt() as f32
            };
            let stream = seed.wrapping_mul(65536).wrapping_add(j as u64);
            OwnedTensor { name: spec.name, shape: spec.shape, data: fill(stream, len, scale) }
        })
        .collect())
}

/// A complete weight file (bytes) for `plan` with synthetic weights.
pub fn weight_file(plan: &Plan, seed: u64) -> Result<Vec<u8>> {
    crate::weights::format::to_bytes(plan, &weights(plan, seed)?)
}

/// Layer builders for plans written by hand: the built-in networks below, the tests and
/// the fuzz harnesses. Square kernels and strides; ReLU fused where asked.
pub mod layers {
    use crate::plan::{Conv, Layer, Linear, Lrn, MaxPool, Pads, Plan, Preprocess};

    /// A convolution.
    pub fn conv(name: &str, out: u32, k: u32, stride: u32, pads: Pads, groups: u32, relu: bool) -> Layer {
        let (kernel, stride) = ([k, k], [stride, stride]);
        Layer::Conv(Conv { name: name.into(), out_channels: out, kernel, stride, pads, groups, relu })
    }

    /// A max pooling.
    pub fn max_pool(k: u32, stride: u32, pads: Pads, ceil_mode: bool) -> Layer {
        Layer::MaxPool(MaxPool { kernel: [k, k], stride: [stride, stride], pads, ceil_mode })
    }

    /// AlexNet's LRN (size 5, alpha 1e-4, beta 0.75, k 1).
    pub fn lrn() -> Layer {
        Layer::Lrn(Lrn { size: 5, alpha: 1e-4, beta: 0.75, bias: 1.0 })
    }

    /// A fully connected layer.
    pub fn linear(name: &str, out: u32, relu: bool) -> Layer {
        Layer::Linear(Linear { name: name.into(), out_features: out, relu })
    }

    /// A plan with no labels.
    pub fn plan(input: [u32; 3], preprocess: Preprocess, layers: Vec<Layer>) -> Plan {
        Plan { input, preprocess, layers, labels: Vec::new() }
    }
}

use layers::{linear, lrn};

fn conv(name: &str, out: u32, k: u32, s: u32, p: u32, groups: u32) -> Layer {
    layers::conv(name, out, k, s, Pads::uniform(p), groups, true)
}

fn pool(pads: Pads) -> Layer {
    layers::max_pool(3, 2, pads, false)
}

fn classifier(classes: u32, softmax: bool) -> Vec<Layer> {
    let mut v = vec![Layer::Flatten, linear("fc6", 4096, true), linear("fc7", 4096, true), linear("fc8", classes, false)];
    if softmax {
        v.push(Layer::Softmax);
    }
    v
}

/// A small network with every layer kind the weights reach, for the precision tests: a
/// strided conv, pool, LRN, a grouped conv, three linear layers (K with a tail past the
/// vector width), softmax; 3x31x29 input.
pub fn small_plan() -> Plan {
    let layers: Vec<Layer> = vec![
        layers::conv("conv1", 8, 5, 2, Pads::uniform(1), 1, true),
        layers::max_pool(3, 2, Pads::uniform(0), false),
        lrn(),
        layers::conv("conv2", 12, 3, 1, Pads::uniform(1), 2, true),
        Layer::Flatten,
        linear("fc6", 37, true),
        linear("fc7", 21, true),
        linear("fc8", 10, false),
        Layer::Softmax,
    ];
    layers::plan([3, 31, 29], Preprocess::caffe(), layers)
}

/// The project's spec network: 227x227 input, 96-256-384-384-256 channels, groups of 2
/// on conv2/4/5, LRN after pool1 and pool2 (CaffeNet order), 1000 classes, softmax.
pub fn spec_plan() -> Plan {
    let none = Pads::default();
    let mut layers = vec![
        conv("conv1", 96, 11, 4, 0, 1),
        pool(none),
        lrn(),
        conv("conv2", 256, 5, 1, 2, 2),
        pool(none),
        lrn(),
        conv("conv3", 384, 3, 1, 1, 1),
        conv("conv4", 384, 3, 1, 1, 2),
        conv("conv5", 256, 3, 1, 1, 2),
        pool(none),
    ];
    layers.extend(classifier(1000, true));
    Plan { input: [3, 227, 227], preprocess: Preprocess::caffe(), layers, labels: Vec::new() }
}

/// The paper's order as in the ONNX zoo's `bvlcalexnet`: 224x224 input, LRN before pool1
/// and pool2, pool1 and pool5 padded (0, 0, 1, 1) to reproduce Caffe's ceil rounding.
pub fn zoo_plan() -> Plan {
    let tail = Pads { top: 0, left: 0, bottom: 1, right: 1 };
    let mut layers = vec![
        conv("conv1", 96, 11, 4, 0, 1),
        lrn(),
        pool(tail),
        conv("conv2", 256, 5, 1, 2, 2),
        lrn(),
        pool(Pads::default()),
        conv("conv3", 384, 3, 1, 1, 1),
        conv("conv4", 384, 3, 1, 1, 2),
        conv("conv5", 256, 3, 1, 1, 2),
        pool(tail),
    ];
    layers.extend(classifier(1000, true));
    Plan { input: [3, 224, 224], preprocess: Preprocess::caffe(), layers, labels: Vec::new() }
}

/// torchvision's `alexnet`: 224x224 input, 64-192-384-256-256, no groups, no LRN, logits.
pub fn torchvision_plan() -> Plan {
    let none = Pads::default();
    let mut layers = vec![
        conv("conv1", 64, 11, 4, 2, 1),
        pool(none),
        conv("conv2", 192, 5, 1, 2, 1),
        pool(none),
        conv("conv3", 384, 3, 1, 1, 1),
        conv("conv4", 256, 3, 1, 1, 1),
        conv("conv5", 256, 3, 1, 1, 1),
        pool(none),
    ];
    layers.extend(classifier(1000, false));
    Plan { input: [3, 224, 224], preprocess: Preprocess::torchvision(), layers, labels: Vec::new() }
}

/// The GEMM of each convolution of `plan`, per group, as im2col runs it: `(layer, M, K,
/// N)` with M the output channels of a group, K = input channels of a group x kernel
/// area, N = output pixels.
pub fn conv_gemm_shapes(plan: &Plan) -> Result<Vec<(String, usize, usize, usize)>> {
    let shapes = plan.shapes()?;
    Ok(plan
        .layers
        .iter()
        .zip(shapes.windows(2))
        .filter_map(|(layer, io)| match (layer, io[0], io[1]) {
            (Layer::Conv(c), crate::plan::Shape::Spatial { c: ci, .. }, crate::plan::Shape::Spatial { c: o, h, w }) => {
                let g = c.groups as usize;
                let k = ci / g * c.kernel[0] as usize * c.kernel[1] as usize;
                Some((c.name.clone(), o / g, k, h * w))
            }
            _ => None,
        })
        .collect())
}

/// The SGEMM shapes this project measures: the spec network's convolutions per group
/// ([`conv_gemm_shapes`]), then a 1024 square as a shape-neutral yardstick.
pub fn benchmark_gemm_shapes() -> Vec<(String, usize, usize, usize)> {
    let mut v = conv_gemm_shapes(&spec_plan()).unwrap_or_default();
    v.push(("sq1024".into(), 1024, 1024, 1024));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_is_pinned() {
        // Pinned so the Rust and numpy generators cannot drift apart silently.
        // The same values numpy computes in tools/make_fixtures.py
        // (tests/fixtures/generator_check.txt).
        assert_eq!(fill(7, 3, 1.0), [0.433_948_4, -0.231_174_7, -0.770_522_83]);
        assert_ne!(fill(7, 3, 1.0), fill(8, 3, 1.0));
    }

    #[test]
    fn spec_convolutions_have_the_known_gemm_shapes() {
        let mnk: Vec<_> = benchmark_gemm_shapes().into_iter().map(|(_, m, k, n)| (m, k, n)).collect();
        let want = [(96, 363, 3025), (128, 1200, 729), (384, 2304, 169), (192, 1728, 169), (128, 1728, 169)];
        assert_eq!(&mnk[..5], &want);
        assert_eq!(mnk[5], (1024, 1024, 1024));
    }

    #[test]
    fn full_plans_have_alexnet_shapes() {
        for plan in [spec_plan(), zoo_plan(), torchvision_plan()] {
            let shapes = plan.shapes().unwrap();
            assert!(shapes.contains(&crate::plan::Shape::Flat(9216)), "{shapes:?}");
            assert_eq!(plan.num_outputs().unwrap(), 1000);
        }
    }
}
