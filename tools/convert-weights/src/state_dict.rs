//! torchvision `alexnet` state dicts (safetensors or npz) to a layer plan.
//!
//! A state dict carries only tensors, so the structure is torchvision's
//! `AlexNet.features` / `AlexNet.classifier`, with the module indices as keys:
//!
//! ```text
//! features.0   Conv k11 s4 p2 + ReLU, MaxPool k3 s2
//! features.3   Conv k5  s1 p2 + ReLU, MaxPool k3 s2
//! features.6   Conv k3  s1 p1 + ReLU
//! features.8   Conv k3  s1 p1 + ReLU
//! features.10  Conv k3  s1 p1 + ReLU, MaxPool k3 s2
//!              AdaptiveAvgPool2d((6, 6))  -- dropped when the map is already 6x6
//!              Flatten
//! classifier.1 Linear + ReLU     (classifier.0, .3 are Dropout)
//! classifier.4 Linear + ReLU
//! classifier.6 Linear            (logits, no softmax)
//! ```
//!
//! Channel counts and widths come from the tensor shapes, so non-standard widths work;
//! kernels must be torchvision's. Keys may carry a `module.` (DataParallel) or `model.`
//! prefix. Missing and unexpected keys are errors that list every offending key. Values
//! may be F32, F16, BF16 or F64 and are converted to f32.

use std::collections::BTreeMap;
use std::io::Read;

use alexnet::plan::{AdaptiveAvgPool, Layer, MaxPool, Pads, Shape};
use safetensors::{Dtype, SafeTensors};

use crate::builder::{ConvParams, NetBuilder, Tensor};
use crate::error::{ConvertError, Result};
use crate::options::{Convention, Options};
use crate::{finish, Converted, InputFormat};

/// torchvision's convolutions: key prefix, kernel, stride, padding, max-pool after it.
const CONVS: [(&str, u64, u32, u32, bool); 5] = [
    ("features.0", 11, 4, 2, true),
    ("features.3", 5, 1, 2, true),
    ("features.6", 3, 1, 1, false),
    ("features.8", 3, 1, 1, false),
    ("features.10", 3, 1, 1, true),
];

/// torchvision's linear layers: key prefix, ReLU after it.
const LINEARS: [(&str, bool); 3] = [("classifier.1", true), ("classifier.4", true), ("classifier.6", false)];

/// The spatial size `AdaptiveAvgPool2d` averages to.
const POOL_OUT: usize = 6;

/// Default input side of torchvision's AlexNet.
const DEFAULT_INPUT: u32 = 224;

/// Cap on the total decompressed size of an `.npz`'s members: the larger of 256 MiB
/// (an f32 AlexNet is 233 MiB) and 64x the archive, never above 4 GiB. Stored archives
/// (`np.savez`) never come near it; it stops a deflate bomb from exhausting memory.
fn npz_cap(archive_len: usize) -> u64 {
    (archive_len as u64).saturating_mul(64).clamp(256 << 20, 4 << 30)
}

/// Convert a safetensors state dict.
pub fn from_safetensors(bytes: &[u8], options: &Options) -> Result<Converted> {
    let st = SafeTensors::deserialize(bytes)?;
    let mut tensors = Vec::with_capacity(st.len());
    for (name, view) in st.iter() {
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            Dtype::F16 => {
                data.chunks_exact(2).map(|b| alexnet::npy::f16_to_f32(u16::from_le_bytes([b[0], b[1]]))).collect()
            }
            Dtype::BF16 => {
                data.chunks_exact(2).map(|b| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16)).collect()
            }
            Dtype::F64 => data
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
                .collect(),
            other => {
                return Err(ConvertError::BadTensor {
                    name: name.into(),
                    reason: format!("dtype {other:?} is not supported (F32, F16, BF16, F64)"),
                })
            }
        };
        let shape: Vec<u64> = view.shape().iter().map(|&d| d as u64).collect();
        tensors.push(checked(name, shape, values)?);
    }
    from_tensors(tensors, InputFormat::Safetensors, options)
}

/// Convert an `.npz` state dict (members `<key>.npy`, stored or deflated).
pub fn from_npz(bytes: &[u8], options: &Options) -> Result<Converted> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))?;
    let cap = npz_cap(bytes.len());
    let mut total = 0u64;
    let mut tensors = Vec::with_capacity(zip.len());
    for i in 0..zip.len() {
        let mut member = zip.by_index(i)?;
        let name = member.name()?.to_string();
        if member.is_dir() {
            continue;
        }
        let Some(key) = name.strip_suffix(".npy") else {
            return Err(ConvertError::BadTensor { name, reason: "npz member is not a .npy file".into() });
        };
        let key = key.to_string();
        // Read at most what the cap leaves (+1 to detect going over); never trust the
        // member's declared size for an allocation.
        let mut buf = Vec::new();
        let limit = cap - total;
        (&mut member).take(limit + 1).read_to_end(&mut buf).map_err(|e| ConvertError::BadTensor {
            name: key.clone(),
            reason: format!("cannot read npz member: {e}"),
        })?;
        total += buf.len() as u64;
        if total > cap {
            return Err(ConvertError::BadTensor {
                name: key,
                reason: format!("npz members decompress to more than {cap} bytes"),
            });
        }
        let array = alexnet::npy::parse(&buf)
            .map_err(|e| ConvertError::BadTensor { name: key.clone(), reason: e.to_string() })?;
        let shape = array.shape.iter().map(|&d| d as u64).collect();
        tensors.push(checked(&key, shape, array.data)?);
    }
    from_tensors(tensors, InputFormat::Npz, options)
}

/// A tensor whose value count matches its shape.
fn checked(name: &str, shape: Vec<u64>, data: Vec<f32>) -> Result<Tensor> {
    let count = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
    if count != Some(data.len() as u64) {
        return Err(ConvertError::BadTensor {
            name: name.into(),
            reason: format!("{} values for shape {shape:?}", data.len()),
        });
    }
    Ok(Tensor { name: name.into(), shape, data })
}

/// The key without a `module.` or `model.` prefix.
fn strip_prefix(key: &str) -> &str {
    key.strip_prefix("module.").or_else(|| key.strip_prefix("model.")).unwrap_or(key)
}

/// Build the torchvision network from named tensors.
pub fn from_tensors(tensors: Vec<Tensor>, format: InputFormat, options: &Options) -> Result<Converted> {
    let mut by_key: BTreeMap<String, Tensor> = BTreeMap::new();
    for t in tensors {
        let key = strip_prefix(&t.name).to_string();
        if by_key.contains_key(&key) {
            return Err(ConvertError::BadTensor { name: t.name, reason: format!("key '{key}' appears twice") });
        }
        by_key.insert(key, t);
    }
    let required: Vec<String> = CONVS
        .iter()
        .map(|c| c.0)
        .chain(LINEARS.iter().map(|l| l.0))
        .flat_map(|p| [format!("{p}.weight"), format!("{p}.bias")])
        .collect();
    let missing: Vec<String> = required.iter().filter(|k| !by_key.contains_key(*k)).cloned().collect();
    if !missing.is_empty() {
        return Err(ConvertError::MissingKeys(missing));
    }
    let unexpected: Vec<String> =
        by_key.iter().filter(|(k, _)| !required.contains(k)).map(|(_, t)| t.name.clone()).collect();
    if !unexpected.is_empty() {
        return Err(ConvertError::UnexpectedKeys(unexpected));
    }
    // Input channels from conv1's weight: 3 for colour, 1 for a network retrained on grey.
    let channels = by_key.get("features.0.weight").and_then(|t| t.shape.get(1)).copied().unwrap_or(3);
    let channels =
        u32::try_from(channels).map_err(|_| ConvertError::BadShape(format!("conv1 has {channels} input channels")))?;
    let mut take = |key: String| {
        by_key.remove(&key).ok_or(ConvertError::MissingTensor { name: key, context: "torchvision AlexNet".into() })
    };

    let [h, w] = options.input_size.unwrap_or([DEFAULT_INPUT, DEFAULT_INPUT]);
    let mut net = NetBuilder::new([channels, h, w])?;
    for (i, &(prefix, k, stride, pad, pool)) in CONVS.iter().enumerate() {
        let ctx = format!("conv{} ({prefix})", i + 1);
        let weight = take(format!("{prefix}.weight"))?;
        let bias = take(format!("{prefix}.bias"))?;
        if weight.shape.len() != 4 || weight.shape[2..] != [k, k] {
            return Err(ConvertError::BadShape(format!(
                "{ctx}: '{}' has shape {}, torchvision's layer is [out, in, {k}, {k}]",
                weight.name,
                weight.shape_str()
            )));
        }
        let params = ConvParams { stride: [stride, stride], pads: Pads::uniform(pad), groups: 1 };
        net.conv(&ctx, weight, Some(bias), params, true)?;
        if pool {
            let p = MaxPool { kernel: [3, 3], stride: [2, 2], pads: Pads::default(), ceil_mode: false };
            net.push(Layer::MaxPool(p), &format!("max-pool after {ctx}"))?;
        }
    }
    // AdaptiveAvgPool2d((6, 6)): an identity on a 6x6 map (224 and 227 inputs), else a
    // real adaptive pool.
    if !matches!(net.shape(), Shape::Spatial { h: POOL_OUT, w: POOL_OUT, .. }) {
        let out = [POOL_OUT as u32; 2];
        net.push(Layer::AdaptiveAvgPool(AdaptiveAvgPool { out }), "AdaptiveAvgPool2d((6, 6))")?;
    }
    net.push(Layer::Flatten, "flatten")?;
    for (i, &(prefix, relu)) in LINEARS.iter().enumerate() {
        let ctx = format!("fc{} ({prefix})", i + 6);
        let weight = take(format!("{prefix}.weight"))?;
        let bias = take(format!("{prefix}.bias"))?;
        net.linear(&ctx, weight, Some(bias), relu)?;
    }
    finish(net, Convention::Torchvision, format, options)
}
