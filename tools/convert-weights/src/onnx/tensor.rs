//! Tensor decoding: an initializer's dimensions, element count and data (inline
//! `raw_data`, a typed field, or an external file) checked and converted to f32 / i64,
//! and the reshaping of decoded constants into `[out, in]` weights and `[out]` biases.

use std::borrow::Cow;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path};

use alexnet::plan::limits;

use super::graph::Importer;
use crate::builder::Tensor;
use crate::error::{ConvertError, Result};
use crate::onnx_proto::{data_location, data_type, TensorProto};

impl Importer<'_> {
    /// Inline bytes of `t` (`raw_data`, or the external file), `None` when the values are
    /// in a typed field. `elem` is the element size, used to size external reads.
    pub(super) fn payload<'t>(&self, t: &'t TensorProto, name: &str, elem: u64) -> Result<Option<Cow<'t, [u8]>>> {
        if t.data_location == data_location::EXTERNAL {
            let count = element_count(&dims(t, name)?, name)?;
            let needed = count.checked_mul(elem).ok_or_else(|| bad_tensor(name, "byte size overflows"))?;
            return self.read_external(t, name, needed).map(|b| Some(Cow::Owned(b)));
        }
        if t.data_location != data_location::DEFAULT {
            return Err(bad_tensor(name, &format!("unknown data_location {}", t.data_location)));
        }
        Ok((!t.raw_data.is_empty()).then(|| Cow::Borrowed(&t.raw_data[..])))
    }

    /// Read `needed` bytes of external data, checked against the file before allocating.
    pub(super) fn read_external(&self, t: &TensorProto, name: &str, needed: u64) -> Result<Vec<u8>> {
        let base =
            self.base_dir.ok_or_else(|| bad_tensor(name, "external data needs the model to be read from a file"))?;
        let mut location = None;
        let (mut offset, mut length) = (0u64, None);
        for e in &t.external_data {
            let number = || {
                e.value
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| bad_tensor(name, &format!("external {} {:?}", e.key, e.value)))
            };
            match e.key.as_str() {
                "location" => location = Some(e.value.as_str()),
                "offset" => offset = number()?,
                "length" => length = Some(number()?),
                _ => {}
            }
        }
        let location = location.ok_or_else(|| bad_tensor(name, "external data without a location"))?;
        let rel = Path::new(location);
        if location.is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir)) {
            return Err(bad_tensor(
                name,
                &format!("external data location {location:?} must be a relative path inside the model's directory"),
            ));
        }
        if length.is_some_and(|l| l != needed) {
            return Err(bad_tensor(
                name,
                &format!("external data length {length:?} but the shape needs {needed} bytes"),
            ));
        }
        let path = base.join(rel);
        let io = |source| ConvertError::Io { path: path.clone(), source };
        let meta = std::fs::metadata(&path).map_err(io)?;
        if !meta.is_file() {
            return Err(bad_tensor(name, &format!("external data {} is not a regular file", path.display())));
        }
        let end = offset.checked_add(needed).ok_or_else(|| bad_tensor(name, "external data offset overflows"))?;
        if end > meta.len() {
            return Err(bad_tensor(
                name,
                &format!(
                    "external data {}..{end} runs past the end of {} ({} bytes)",
                    offset,
                    path.display(),
                    meta.len()
                ),
            ));
        }
        let len = usize::try_from(needed).map_err(|_| bad_tensor(name, "external data too large"))?;
        let mut file = std::fs::File::open(&path).map_err(io)?;
        file.seek(SeekFrom::Start(offset)).map_err(io)?;
        let mut buf = vec![0u8; len];
        file.read_exact(&mut buf).map_err(io)?;
        Ok(buf)
    }

    /// A FLOAT / FLOAT16 / BFLOAT16 / DOUBLE tensor as f32 values.
    pub(super) fn decode_f32(&self, t: &TensorProto, name: &str) -> Result<(Vec<u64>, Vec<f32>)> {
        let shape = dims(t, name)?;
        let count = element_count(&shape, name)?;
        let elem = match t.data_type {
            data_type::FLOAT => 4,
            data_type::FLOAT16 | data_type::BFLOAT16 => 2,
            data_type::DOUBLE => 8,
            other => {
                return Err(bad_tensor(
                    name,
                    &format!("data type {other} is not a floating-point type (1, 10, 11, 16)"),
                ))
            }
        };
        let data: Vec<f32> = match self.payload(t, name, elem)? {
            Some(raw) => {
                check_len(raw.len() as u64, count.checked_mul(elem), name, "bytes")?;
                match t.data_type {
                    data_type::FLOAT => {
                        raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
                    }
                    data_type::FLOAT16 => raw
                        .chunks_exact(2)
                        .map(|b| alexnet::npy::f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
                        .collect(),
                    data_type::BFLOAT16 => {
                        raw.chunks_exact(2).map(|b| bf16_to_f32(u16::from_le_bytes([b[0], b[1]]))).collect()
                    }
                    _ => raw
                        .chunks_exact(8)
                        .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
                        .collect(),
                }
            }
            None => match t.data_type {
                data_type::FLOAT => {
                    check_len(t.float_data.len() as u64, Some(count), name, "float_data values")?;
                    t.float_data.clone()
                }
                data_type::FLOAT16 | data_type::BFLOAT16 => {
                    check_len(t.int32_data.len() as u64, Some(count), name, "int32_data values")?;
                    let conv = if t.data_type == data_type::FLOAT16 { alexnet::npy::f16_to_f32 } else { bf16_to_f32 };
                    t.int32_data.iter().map(|&v| conv(v as u16)).collect()
                }
                _ => {
                    check_len(t.double_data.len() as u64, Some(count), name, "double_data values")?;
                    t.double_data.iter().map(|&v| v as f32).collect()
                }
            },
        };
        Ok((shape, data))
    }

    /// An INT64 (or INT32) tensor.
    pub(super) fn decode_i64(&self, t: &TensorProto, name: &str) -> Result<(Vec<u64>, Vec<i64>)> {
        let shape = dims(t, name)?;
        let count = element_count(&shape, name)?;
        let elem = match t.data_type {
            data_type::INT64 => 8,
            data_type::INT32 => 4,
            other => return Err(bad_tensor(name, &format!("data type {other} is not an integer type (6, 7)"))),
        };
        let values = match self.payload(t, name, elem)? {
            Some(raw) => {
                check_len(raw.len() as u64, count.checked_mul(elem), name, "bytes")?;
                if elem == 8 {
                    raw.chunks_exact(8)
                        .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
                        .collect()
                } else {
                    raw.chunks_exact(4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64).collect()
                }
            }
            None if elem == 8 => {
                check_len(t.int64_data.len() as u64, Some(count), name, "int64_data values")?;
                t.int64_data.clone()
            }
            None => {
                check_len(t.int32_data.len() as u64, Some(count), name, "int32_data values")?;
                t.int32_data.iter().map(|&v| v as i64).collect()
            }
        };
        Ok((shape, values))
    }
}

/// bfloat16 bits to f32 (exact: bf16 is the upper half of a binary32).
pub(super) fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits((bits as u32) << 16)
}

pub(super) fn bad_tensor(name: &str, reason: &str) -> ConvertError {
    ConvertError::BadTensor { name: name.into(), reason: reason.into() }
}

/// A tensor's dimensions, refusing negative ones.
pub(super) fn dims(t: &TensorProto, name: &str) -> Result<Vec<u64>> {
    t.dims
        .iter()
        .map(|&d| u64::try_from(d).map_err(|_| bad_tensor(name, &format!("negative dimension in {:?}", t.dims))))
        .collect()
}

/// The product of `shape`, checked.
pub(super) fn element_count(shape: &[u64], name: &str) -> Result<u64> {
    shape
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad_tensor(name, &format!("shape {shape:?} overflows")))
}

/// The data present must be exactly what the shape needs.
pub(super) fn check_len(found: u64, needed: Option<u64>, name: &str, what: &str) -> Result<()> {
    match needed {
        Some(n) if n == found => Ok(()),
        Some(n) => Err(bad_tensor(name, &format!("has {found} {what}, its shape needs {n}"))),
        None => Err(bad_tensor(name, "byte size overflows")),
    }
}

/// A 2-D constant used as-is: `[out, in]`.
pub(super) fn as_matrix(t: Tensor, ctx: &str) -> Result<Tensor> {
    if t.shape.len() != 2 {
        return Err(ConvertError::BadShape(format!(
            "{ctx}: '{}' has shape {}, expected a matrix",
            t.name,
            t.shape_str()
        )));
    }
    Ok(t)
}

/// A 2-D constant `[in, out]` transposed to `[out, in]`.
pub(super) fn transpose(t: Tensor, ctx: &str) -> Result<Tensor> {
    let t = as_matrix(t, ctx)?;
    let (rows, cols) = (t.shape[0] as usize, t.shape[1] as usize);
    // rows * cols == data.len() (checked at decode), so neither product overflows.
    let mut data = vec![0.0f32; t.data.len()];
    for (r, row) in t.data.chunks_exact(cols.max(1)).enumerate().take(rows) {
        for (c, &v) in row.iter().enumerate() {
            data[c * rows + r] = v;
        }
    }
    Ok(Tensor { name: t.name, shape: vec![t.shape[1], t.shape[0]], data })
}

/// A bias of shape `[out]`, `[1, out]`, or a single broadcast value, as `[out]`.
pub(super) fn broadcast_bias(t: Tensor, out: u64, ctx: &str) -> Result<Tensor> {
    match (&t.shape[..], t.data.as_slice()) {
        ([n], _) | ([1, n], _) if *n == out => Ok(Tensor { shape: vec![out], ..t }),
        (_, [v]) => {
            // `out` comes from a weight's dimension, which may be paired with a zero one:
            // cap it before sizing a buffer by it.
            let cap = limits::MAX_CHANNELS as u64 * 16;
            let n = usize::try_from(out)
                .ok()
                .filter(|&n| n as u64 <= cap)
                .ok_or_else(|| ConvertError::BadShape(format!("{ctx}: {out} outputs, above the limit of {cap}")))?;
            Ok(Tensor { name: t.name.clone(), shape: vec![out], data: vec![*v; n] })
        }
        _ => Err(ConvertError::BadShape(format!(
            "{ctx}: bias '{}' has shape {}, expected [{out}] or [1, {out}]",
            t.name,
            t.shape_str()
        ))),
    }
}
