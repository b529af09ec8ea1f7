//! Weight files: open, validate, and view tensors in place.
//!
//! [`WeightFile`] holds the file's bytes (a map or an owned copy) and its parsed plan and
//! tensor table. Opening validates everything listed in the weight-file section of
//! `docs/reliability.md` before any kernel runs: header, caps, plan hyperparameters, tensor
//! names, dtypes, layouts, shapes against the plan, bounds, alignment, overlap and exact
//! coverage of the data section. After that, [`WeightFile::tensor`] hands out `&[f32]`
//! views straight into the map (the linear layers read bf16 weights in place the same
//! way): no weight byte is copied.

pub mod format;
mod mmap;
mod writer;

use std::collections::HashMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::plan::Plan;
pub use format::{Dtype, Layout, OwnedTensor, TensorEntry};
pub(crate) use mmap::Storage;

/// How to bring the file's bytes into memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OpenMode {
    /// Memory-map the file (default): no copy, pages shared with the page cache. The file
    /// must not be truncated or rewritten while mapped.
    #[default]
    Mapped,
    /// Read the whole file into memory: safe against later changes to the file.
    Owned,
}

/// A validated weight file.
pub struct WeightFile {
    storage: Storage,
    plan: Plan,
    tensors: Vec<TensorEntry>,
    data_offset: usize,
    checksum: Option<u64>,
}

impl std::fmt::Debug for WeightFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeightFile")
            .field("mapped", &self.storage.is_mapped())
            .field("bytes", &self.storage.bytes().len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl WeightFile {
    /// Open and validate the file at `path`.
    pub fn open(path: impl AsRef<Path>, mode: OpenMode) -> Result<WeightFile> {
        let path = path.as_ref();
        let storage = match mode {
            OpenMode::Mapped => Storage::map(path)?,
            OpenMode::Owned => Storage::read_owned(path)?,
        };
        WeightFile::from_storage(storage)
    }

    /// Validate a weight file held in memory (copied into aligned memory).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<WeightFile> {
        WeightFile::from_storage(Storage::from_vec(bytes))
    }

    fn from_storage(storage: Storage) -> Result<WeightFile> {
        let bytes = storage.bytes();
        let header = format::read_header(bytes)?;
        let meta_end = format::HEADER_LEN + header.meta_len as usize;
        let meta = format::read_metadata(&bytes[format::HEADER_LEN..meta_end])?;
        check_table(&meta.plan, &meta.tensors, header.data_len)?;
        let data_offset = header.data_offset as usize;
        let file =
            WeightFile { storage, plan: meta.plan, tensors: meta.tensors, data_offset, checksum: header.checksum };
        // Every view must be constructible; this cannot fail after the checks above, but a
        // failure here is an error, never a panic later.
        for t in &file.tensors {
            match t.dtype {
                Dtype::F32 => file.view::<f32>(t).map(|_| ())?,
                Dtype::Bf16 => file.view::<u16>(t).map(|_| ())?,
                Dtype::I8 => file.view::<i8>(t).map(|_| ())?,
            }
        }
        // An int8 weight's scales must be usable: finite and positive.
        if file.weight_dtype() == Dtype::I8 {
            for spec in file.plan.tensor_specs()?.iter().filter(|s| s.weight) {
                let name = format::scale_name(&spec.name);
                if let Some(bad) = file.tensor(&name)?.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
                    return Err(Error::InvalidTensorValue {
                        tensor: name,
                        reason: format!("scale {bad} is not a positive finite number"),
                    });
                }
            }
        }
        // Fixed int8 input parameters must be usable.
        for spec in file.plan.tensor_specs()?.iter().filter(|s| s.weight) {
            file.input_quant(&spec.name)?;
        }
        Ok(file)
    }

    /// How the input of the layer whose weight is `weight` is quantized at int8: the
    /// file's fixed parameters ([`format::input_quant_name`]) or, without them, per image.
    pub fn input_quant(&self, weight: &str) -> Result<crate::quant::InputQuant> {
        use crate::quant::{ActParams, InputQuant};
        let name = format::input_quant_name(weight);
        if self.entry(&name).is_err() {
            return Ok(InputQuant::PerImage);
        }
        let v = self.tensor(&name)?;
        let fixed =
            ActParams::fixed(v[0], v[1]).map_err(|reason| Error::InvalidTensorValue { tensor: name, reason })?;
        Ok(InputQuant::Fixed(fixed))
    }

    /// The network plan stored in the file.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The tensor table.
    pub fn tensors(&self) -> &[TensorEntry] {
        &self.tensors
    }

    /// True when the file is memory-mapped rather than copied.
    pub fn is_mapped(&self) -> bool {
        self.storage.is_mapped()
    }

    /// Total size of the file in bytes.
    pub fn len_bytes(&self) -> usize {
        self.storage.bytes().len()
    }

    /// Recompute the data checksum and compare it with the header's (reads every byte).
    /// Returns `Ok(false)` when the file carries no checksum.
    pub fn verify_checksum(&self) -> Result<bool> {
        let Some(stored) = self.checksum else { return Ok(false) };
        let computed = format::checksum(&self.storage.bytes()[self.data_offset..]);
        if computed != stored {
            return Err(Error::ChecksumMismatch { stored, computed });
        }
        Ok(true)
    }

    /// A tensor's bytes, viewed as elements of `T` (`f32` or bf16 bits as `u16`).
    fn view<T: bytemuck::Pod>(&self, t: &TensorEntry) -> Result<&[T]> {
        let start = self.data_offset + t.offset as usize;
        let bytes = &self.storage.bytes()[start..start + t.len as usize];
        bytemuck::try_cast_slice(bytes).map_err(|_| Error::Misaligned {
            tensor: t.name.clone(),
            offset: t.offset,
            align: format::ALIGN,
        })
    }

    /// The table entry of the tensor called `name`.
    pub fn entry(&self, name: &str) -> Result<&TensorEntry> {
        self.tensors.iter().find(|t| t.name == name).ok_or_else(|| Error::MissingTensor(name.into()))
    }

    /// An f32 tensor's values, viewed in place; [`Error::WrongDtype`] for another dtype
    /// (see [`WeightFile::tensor_f32`]).
    pub fn tensor(&self, name: &str) -> Result<&[f32]> {
        let t = self.entry(name)?;
        if t.dtype != Dtype::F32 {
            return Err(Error::WrongDtype { tensor: t.name.clone(), expected: "f32", found: t.dtype.name() });
        }
        self.view(t)
    }

    /// A tensor's bytes in place, whatever its dtype.
    pub fn tensor_bytes(&self, name: &str) -> Result<&[u8]> {
        let range = self.tensor_range(name)?;
        self.storage.bytes().get(range).ok_or(Error::Overflow("tensor range"))
    }

    /// A tensor's values as f32 whatever its dtype: a copy (bf16 widens exactly; int8
    /// weights are dequantized, each code times its row's scale).
    pub fn tensor_f32(&self, name: &str) -> Result<Vec<f32>> {
        let t = self.entry(name)?;
        Ok(match t.dtype {
            Dtype::F32 => self.view::<f32>(t)?.to_vec(),
            Dtype::Bf16 => self.view::<u16>(t)?.iter().map(|&h| format::f32_from_bf16(h)).collect(),
            Dtype::I8 => {
                let scales = self.tensor(&format::scale_name(name))?;
                let q = self.view::<i8>(t)?;
                let k = q.len() / scales.len().max(1);
                q.chunks(k.max(1)).zip(scales).flat_map(|(row, &s)| row.iter().map(move |&v| v as f32 * s)).collect()
            }
        })
    }

    /// An int8 weight's codes and per-row scales, in place; [`Error::WrongDtype`] for
    /// another dtype.
    pub fn tensor_i8(&self, name: &str) -> Result<(&[i8], &[f32])> {
        let t = self.entry(name)?;
        if t.dtype != Dtype::I8 {
            return Err(Error::WrongDtype { tensor: t.name.clone(), expected: "i8", found: t.dtype.name() });
        }
        Ok((self.view(t)?, self.tensor(&format::scale_name(name))?))
    }

    /// The dtype of the file's conv and linear weights (one for all, checked at open;
    /// f32 for a plan without weights).
    pub fn weight_dtype(&self) -> Dtype {
        let specs = self.plan.tensor_specs().unwrap_or_default();
        specs.iter().find(|s| s.weight).and_then(|s| self.entry(&s.name).ok()).map(|t| t.dtype).unwrap_or(Dtype::F32)
    }

    /// Byte range of a tensor in the file, for kernels that index by position.
    pub(crate) fn tensor_range(&self, name: &str) -> Result<std::ops::Range<usize>> {
        let t = self.entry(name)?;
        let start = self.data_offset + t.offset as usize;
        Ok(start..start + t.len as usize)
    }

    /// View a byte range returned by [`WeightFile::tensor_range`] of a bf16 tensor as its
    /// bit patterns.
    pub(crate) fn bf16s(&self, range: std::ops::Range<usize>) -> &[u16] {
        // As in `f32s`: validated, aligned ranges; the fallback is unreachable.
        self.storage.bytes().get(range).and_then(|b| bytemuck::try_cast_slice(b).ok()).unwrap_or(&[])
    }

    /// View a byte range returned by [`WeightFile::tensor_range`] of an int8 tensor as its
    /// codes.
    pub(crate) fn i8s(&self, range: std::ops::Range<usize>) -> &[i8] {
        // As in `f32s`: validated ranges; the fallback is unreachable.
        self.storage.bytes().get(range).map(bytemuck::cast_slice).unwrap_or(&[])
    }

    /// View a byte range returned by [`WeightFile::tensor_range`] as f32 values.
    pub(crate) fn f32s(&self, range: std::ops::Range<usize>) -> &[f32] {
        // Ranges come from validated, 64-byte aligned entries of this file; the fallback
        // is unreachable but keeps this path free of panics.
        self.storage.bytes().get(range).and_then(|b| bytemuck::try_cast_slice(b).ok()).unwrap_or(&[])
    }
}

/// Check the tensor table against the plan and the data section.
fn check_table(plan: &Plan, tensors: &[TensorEntry], data_len: u64) -> Result<()> {
    let plain = plan.tensor_specs()?;
    let mut by_name: HashMap<&str, &TensorEntry> = HashMap::with_capacity(tensors.len());
    for t in tensors {
        if by_name.insert(&t.name, t).is_some() {
            return Err(Error::DuplicateTensor(t.name.clone()));
        }
        let elems = t
            .shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .ok_or(Error::Overflow("tensor element count"))?;
        let expected = elems.checked_mul(t.dtype.size()).ok_or(Error::Overflow("tensor byte length"))?;
        if t.len != expected {
            return Err(Error::TensorLength { tensor: t.name.clone(), expected, found: t.len });
        }
        if t.offset % format::ALIGN != 0 {
            return Err(Error::Misaligned { tensor: t.name.clone(), offset: t.offset, align: format::ALIGN });
        }
        let end = t.offset.checked_add(t.len).ok_or(Error::Overflow("tensor end"))?;
        if end > data_len {
            return Err(Error::TensorOutOfBounds { tensor: t.name.clone(), offset: t.offset, len: t.len, data_len });
        }
    }
    // The weights share one dtype, the file's precision (the first weight's); int8
    // weights bring their scales.
    let first = plain.iter().find(|s| s.weight).and_then(|s| by_name.get(s.name.as_str()));
    let weights = first.map_or(Dtype::F32, |t| t.dtype);
    let specs = format::file_specs(plan, weights)?;
    for spec in &specs {
        let t = by_name.get(spec.name.as_str()).ok_or_else(|| Error::MissingTensor(spec.name.clone()))?;
        if t.shape != spec.shape {
            return Err(Error::ShapeMismatch {
                tensor: t.name.clone(),
                expected: spec.shape.clone(),
                found: t.shape.clone(),
            });
        }
        let expected = if spec.weight { weights } else { Dtype::F32 };
        if t.dtype != expected {
            return Err(Error::WrongDtype { tensor: t.name.clone(), expected: expected.name(), found: t.dtype.name() });
        }
    }
    // Optional tensors (fixed int8 input parameters): f32 of their shape when present.
    let optional = format::optional_specs(plan)?;
    for spec in &optional {
        let Some(t) = by_name.get(spec.name.as_str()) else { continue };
        if t.shape != spec.shape {
            return Err(Error::ShapeMismatch {
                tensor: t.name.clone(),
                expected: spec.shape.clone(),
                found: t.shape.clone(),
            });
        }
        if t.dtype != Dtype::F32 {
            return Err(Error::WrongDtype { tensor: t.name.clone(), expected: "f32", found: t.dtype.name() });
        }
    }
    if let Some(t) = tensors.iter().find(|t| !specs.iter().chain(&optional).any(|s| s.name == t.name)) {
        return Err(Error::UnusedTensor(t.name.clone()));
    }
    // Exact coverage: sorted by offset, each tensor starts at the first aligned byte after
    // the previous one, and the last one ends the data section.
    let mut order: Vec<&TensorEntry> = tensors.iter().collect();
    order.sort_by_key(|t| t.offset);
    let mut prev: Option<&TensorEntry> = None;
    let mut end = 0u64;
    for t in order {
        if let Some(p) = prev {
            if t.offset < end {
                return Err(Error::OverlappingTensors { tensor: t.name.clone(), previous: p.name.clone() });
            }
        }
        let expected = format::align_up(end)?;
        if t.offset != expected {
            return Err(Error::Gap { tensor: t.name.clone(), expected, found: t.offset });
        }
        end = t.offset + t.len;
        prev = Some(t);
    }
    if end != data_len {
        return Err(Error::TrailingBytes(data_len - end));
    }
    Ok(())
}
