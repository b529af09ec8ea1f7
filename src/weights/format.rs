//! Weight-file format v1: the one place that encodes and decodes it (the writer module
//! puts the bytes on disk).
//!
//! ```text
//! offset  size  field
//! 0       8     magic "ALEXNET\0"
//! 8       4     version (u32) = 1
//! 12      4     byte-order tag (u32) = 0x01020304, stored little-endian: 04 03 02 01
//! 16      8     meta_len (u64): bytes of the metadata block that starts at 64
//! 24      8     data_offset (u64): start of the data section, a multiple of 64
//! 32      8     data_len (u64): bytes of the data section; the file ends right after it
//! 40      8     checksum (u64) of the data section (see [`checksum`]), 0 if flag unset
//! 48      4     flags (u32): bit 0 = checksum present; other bits must be 0
//! 52      12    reserved, zero
//! 64      ...   metadata: input, preprocessing, layers, labels, tensor table
//! ...           zero padding up to data_offset
//! data_offset   tensors, each starting at the next 64-byte boundary after the previous
//! ```
//!
//! All integers little-endian, floats IEEE-754 binary32 (weights may be bfloat16). The metadata block is a sequence
//! of fixed-width fields and length-prefixed UTF-8 strings (`u16` length); see
//! `docs/weight-format.md` for the full grammar. Reading never trusts a count or length:
//! each is capped and checked against the bytes that remain before anything is allocated.

pub use super::writer::{write_file, write_file_as};
use crate::error::{Error, Result};
use crate::plan::{
    AdaptiveAvgPool, AvgPool, ColorOrder, Conv, Layer, Linear, Lrn, LrnWithin, MaxPool, Pads, Plan, Preprocess,
};

/// The eight magic bytes at the start of every weight file.
pub const MAGIC: [u8; 8] = *b"ALEXNET\0";
/// The format version this build writes and reads.
pub const VERSION: u32 = 1;
/// The byte-order tag as a number; stored little-endian.
pub const BYTE_ORDER_TAG: u32 = 0x0102_0304;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 64;
/// Alignment of the data section and of every tensor in it.
pub const ALIGN: u64 = 64;
/// Flag bit: the checksum field is meaningful.
pub const FLAG_CHECKSUM: u32 = 1;

/// Cap on the metadata block.
pub const MAX_META_LEN: u64 = 16 << 20;
/// Cap on the number of tensors.
pub const MAX_TENSORS: usize = 1024;
/// Cap on tensor rank.
pub const MAX_RANK: usize = 8;
/// Cap on the number of labels.
pub const MAX_LABELS: usize = 1 << 20;

/// Element type of a stored tensor. Codes are part of the format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Dtype {
    /// IEEE-754 binary32, little-endian (code 0).
    F32,
    /// bfloat16: the high half of a binary32, little-endian `u16` (code 1). Weights
    /// only; rounded from f32 to nearest, ties to even (see [`bf16_from_f32`]).
    Bf16,
    /// Signed 8-bit integers (code 2). Weights only, quantized symmetrically per output
    /// channel ([`crate::quant`]); each such tensor `<layer>.weight` comes with an f32
    /// tensor `<layer>.weight_scale` holding one positive scale per output channel.
    I8,
}

impl Dtype {
    /// The format's code for this dtype.
    pub fn code(self) -> u8 {
        match self {
            Dtype::F32 => 0,
            Dtype::Bf16 => 1,
            Dtype::I8 => 2,
        }
    }

    /// Bytes per element.
    pub fn size(self) -> u64 {
        match self {
            Dtype::F32 => 4,
            Dtype::Bf16 => 2,
            Dtype::I8 => 1,
        }
    }

    /// Lower-case name, as the CLIs print it.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::Bf16 => "bf16",
            Dtype::I8 => "i8",
        }
    }

    fn from_code(code: u8, tensor: &str) -> Result<Dtype> {
        match code {
            0 => Ok(Dtype::F32),
            1 => Ok(Dtype::Bf16),
            2 => Ok(Dtype::I8),
            _ => Err(Error::UnsupportedDtype { tensor: tensor.into(), code }),
        }
    }
}

/// `x` rounded to bfloat16 (to nearest, ties to even), as its bit pattern. NaN stays NaN
/// (made quiet, sign kept); infinities and values that round past the largest bf16 become
/// infinities, as IEEE rounding does.
pub fn bf16_from_f32(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) as u16) | 0x0040;
    }
    let round = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(round) >> 16) as u16
}

/// The f32 value of a bfloat16 bit pattern (exact).
pub fn f32_from_bf16(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// How a tensor's elements are ordered. Codes are part of the format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Layout {
    /// Plain row-major in the order of the shape: OIHW for conv weights, `[out, in]` for
    /// linear weights (code 0).
    RowMajor,
}

impl Layout {
    /// The format's code for this layout.
    pub fn code(self) -> u8 {
        match self {
            Layout::RowMajor => 0,
        }
    }

    fn from_code(code: u8, tensor: &str) -> Result<Layout> {
        match code {
            0 => Ok(Layout::RowMajor),
            _ => Err(Error::UnsupportedLayout { tensor: tensor.into(), code }),
        }
    }
}

/// One row of the tensor table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorEntry {
    /// Unique name, `{layer}.weight` or `{layer}.bias`.
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Element order.
    pub layout: Layout,
    /// Logical shape.
    pub shape: Vec<u64>,
    /// Byte offset from the start of the data section (multiple of [`ALIGN`]).
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

/// The parsed fixed header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Bytes of metadata after the fixed header.
    pub meta_len: u64,
    /// Start of the data section.
    pub data_offset: u64,
    /// Bytes of the data section.
    pub data_len: u64,
    /// Checksum of the data section, if the flag is set.
    pub checksum: Option<u64>,
}

/// Everything before the data section: plan plus tensor table.
#[derive(Clone, Debug, PartialEq)]
pub struct Metadata {
    /// The network.
    pub plan: Plan,
    /// Where each tensor lives in the data section.
    pub tensors: Vec<TensorEntry>,
}

/// 64-bit checksum of the data section: FNV-1a over little-endian u64 words, the final
/// partial word zero-extended, seeded with the length. Fast enough to verify a 240 MB
/// file in a fraction of a second.
pub fn checksum(data: &[u8]) -> u64 {
    let mut h = Checksum::new(data.len() as u64);
    h.update(data);
    h.finish()
}

/// Incremental form of [`checksum`], for data that arrives in pieces.
#[derive(Clone, Debug)]
pub struct Checksum {
    h: u64,
    pending: [u8; 8],
    filled: usize,
}

impl Checksum {
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    /// Start hashing a data section of `len` bytes.
    pub fn new(len: u64) -> Self {
        Checksum { h: 0xcbf2_9ce4_8422_2325 ^ len, pending: [0; 8], filled: 0 }
    }

    /// Feed the next bytes.
    pub fn update(&mut self, mut data: &[u8]) {
        if self.filled > 0 {
            let take = (8 - self.filled).min(data.len());
            self.pending[self.filled..self.filled + take].copy_from_slice(&data[..take]);
            self.filled += take;
            data = &data[take..];
            if self.filled < 8 {
                return;
            }
            self.h = (self.h ^ u64::from_le_bytes(self.pending)).wrapping_mul(Self::PRIME);
            self.filled = 0;
        }
        let mut words = data.chunks_exact(8);
        for w in &mut words {
            let mut b = [0u8; 8];
            b.copy_from_slice(w);
            self.h = (self.h ^ u64::from_le_bytes(b)).wrapping_mul(Self::PRIME);
        }
        let rest = words.remainder();
        self.pending[..rest.len()].copy_from_slice(rest);
        self.filled = rest.len();
    }

    /// The checksum of everything fed.
    pub fn finish(mut self) -> u64 {
        if self.filled > 0 {
            self.pending[self.filled..].fill(0);
            self.h = (self.h ^ u64::from_le_bytes(self.pending)).wrapping_mul(Self::PRIME);
        }
        self.h
    }
}

/// Round `x` up to a multiple of [`ALIGN`], checked.
pub fn align_up(x: u64) -> Result<u64> {
    x.checked_add(ALIGN - 1).map(|v| v / ALIGN * ALIGN).ok_or(Error::Overflow("alignment"))
}

/// Parse and check the fixed header against the file length.
pub fn read_header(bytes: &[u8]) -> Result<Header> {
    let file_len = bytes.len() as u64;
    if bytes.len() < HEADER_LEN {
        return Err(Error::Truncated { what: "fixed header", needed: HEADER_LEN as u64, available: file_len });
    }
    if bytes[0..8] != MAGIC {
        return Err(Error::BadMagic);
    }
    let u32_at = |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
    let u64_at = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[o..o + 8]);
        u64::from_le_bytes(b)
    };
    let version = u32_at(8);
    if version != VERSION {
        return Err(Error::UnsupportedVersion { found: version, supported: VERSION });
    }
    let tag = u32_at(12);
    if tag != BYTE_ORDER_TAG {
        return Err(Error::ByteOrder(tag));
    }
    let meta_len = u64_at(16);
    let data_offset = u64_at(24);
    let data_len = u64_at(32);
    let checksum = u64_at(40);
    let flags = u32_at(48);
    if flags & !FLAG_CHECKSUM != 0 {
        return Err(Error::Malformed(format!("unknown header flags {flags:#x}")));
    }
    if bytes[52..64].iter().any(|&b| b != 0) {
        return Err(Error::Malformed("reserved header bytes are not zero".into()));
    }
    if meta_len > MAX_META_LEN {
        return Err(Error::TooLarge { what: "metadata length", value: meta_len, limit: MAX_META_LEN });
    }
    let meta_end = HEADER_LEN as u64 + meta_len;
    if meta_end > file_len {
        return Err(Error::Truncated { what: "metadata block", needed: meta_end, available: file_len });
    }
    if data_offset % ALIGN != 0 {
        return Err(Error::Misaligned { tensor: "<data section>".into(), offset: data_offset, align: ALIGN });
    }
    if data_offset < meta_end {
        return Err(Error::Malformed(format!(
            "data section at {data_offset} starts inside the metadata (ends at {meta_end})"
        )));
    }
    let data_end = data_offset.checked_add(data_len).ok_or(Error::Overflow("data section end"))?;
    if data_end > file_len {
        return Err(Error::Truncated { what: "data section", needed: data_end, available: file_len });
    }
    if data_end < file_len {
        return Err(Error::TrailingBytes(file_len - data_end));
    }
    if bytes[meta_end as usize..data_offset as usize].iter().any(|&b| b != 0) {
        return Err(Error::Malformed("padding before the data section is not zero".into()));
    }
    Ok(Header { meta_len, data_offset, data_len, checksum: (flags & FLAG_CHECKSUM != 0).then_some(checksum) })
}

/// A bounds-checked little-endian reader over the metadata block.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or(Error::Overflow("metadata offset"))?;
        if end > self.bytes.len() {
            return Err(Error::Truncated { what, needed: end as u64, available: self.bytes.len() as u64 });
        }
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn f32(&mut self, what: &'static str) -> Result<f32> {
        Ok(f32::from_bits(self.u32(what)?))
    }
    fn bool(&mut self, what: &'static str) -> Result<bool> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(Error::Malformed(format!("{what}: boolean byte {v}"))),
        }
    }
    fn string(&mut self, what: &'static str) -> Result<String> {
        let n = self.u16(what)? as usize;
        let b = self.take(n, what)?;
        std::str::from_utf8(b).map(str::to_owned).map_err(|_| Error::Malformed(format!("{what} is not valid UTF-8")))
    }
    fn pads(&mut self) -> Result<Pads> {
        Ok(Pads {
            top: self.u32("padding")?,
            left: self.u32("padding")?,
            bottom: self.u32("padding")?,
            right: self.u32("padding")?,
        })
    }
    fn pair(&mut self, what: &'static str) -> Result<[u32; 2]> {
        Ok([self.u32(what)?, self.u32(what)?])
    }
    /// A count, capped, and checked against the bytes left given a minimum item size.
    fn count(&mut self, what: &'static str, cap: usize, min_item: usize) -> Result<usize> {
        let n = self.u32(what)? as u64;
        if n > cap as u64 {
            return Err(Error::TooLarge { what, value: n, limit: cap as u64 });
        }
        let left = (self.bytes.len() - self.pos) as u64;
        if n * min_item as u64 > left {
            return Err(Error::Truncated { what, needed: n * min_item as u64, available: left });
        }
        Ok(n as usize)
    }
}

// Layer tags in the metadata block.
const TAG_CONV: u8 = 1;
const TAG_RELU: u8 = 2;
const TAG_MAXPOOL: u8 = 3;
const TAG_LRN: u8 = 4;
const TAG_FLATTEN: u8 = 5;
const TAG_LINEAR: u8 = 6;
const TAG_SOFTMAX: u8 = 7;
const TAG_AVGPOOL: u8 = 8;
const TAG_ADAPTIVE_AVGPOOL: u8 = 9;
const TAG_LRN_WITHIN: u8 = 10;

/// Parse the metadata block (plan and tensor table). Structural checks only; the plan's
/// hyperparameters and the table's placement are checked by the caller.
pub fn read_metadata(meta: &[u8]) -> Result<Metadata> {
    let mut c = Cursor { bytes: meta, pos: 0 };
    let input = [c.u32("input")?, c.u32("input")?, c.u32("input")?];
    let color = match c.u8("color order")? {
        0 => ColorOrder::Rgb,
        1 => ColorOrder::Bgr,
        v => return Err(Error::Malformed(format!("unknown color order {v}"))),
    };
    let scale = c.f32("scale")?;
    let mean = [c.f32("mean")?, c.f32("mean")?, c.f32("mean")?];
    let std = [c.f32("std")?, c.f32("std")?, c.f32("std")?];
    let resize_shorter = c.u32("resize")?;
    let preprocess = Preprocess { color, scale, mean, std, resize_shorter };

    let n_layers = c.count("layer count", crate::plan::limits::MAX_LAYERS, 1)?;
    let mut layers = Vec::with_capacity(n_layers);
    for _ in 0..n_layers {
        let layer = match c.u8("layer tag")? {
            TAG_CONV => Layer::Conv(Conv {
                name: c.string("layer name")?,
                out_channels: c.u32("conv")?,
                kernel: c.pair("conv kernel")?,
                stride: c.pair("conv stride")?,
                pads: c.pads()?,
                groups: c.u32("conv groups")?,
                relu: c.bool("conv relu")?,
            }),
            TAG_RELU => Layer::Relu,
            TAG_MAXPOOL => Layer::MaxPool(MaxPool {
                kernel: c.pair("pool kernel")?,
                stride: c.pair("pool stride")?,
                pads: c.pads()?,
                ceil_mode: c.bool("pool ceil_mode")?,
            }),
            TAG_LRN => Layer::Lrn(Lrn {
                size: c.u32("lrn size")?,
                alpha: c.f32("lrn alpha")?,
                beta: c.f32("lrn beta")?,
                bias: c.f32("lrn bias")?,
            }),
            TAG_FLATTEN => Layer::Flatten,
            TAG_LINEAR => Layer::Linear(Linear {
                name: c.string("layer name")?,
                out_features: c.u32("linear")?,
                relu: c.bool("linear relu")?,
            }),
            TAG_SOFTMAX => Layer::Softmax,
            TAG_AVGPOOL => Layer::AvgPool(AvgPool {
                kernel: c.pair("pool kernel")?,
                stride: c.pair("pool stride")?,
                pads: c.pads()?,
                ceil_mode: c.bool("pool ceil_mode")?,
                count_include_pad: c.bool("pool count_include_pad")?,
            }),
            TAG_ADAPTIVE_AVGPOOL => Layer::AdaptiveAvgPool(AdaptiveAvgPool { out: c.pair("adaptive pool output")? }),
            TAG_LRN_WITHIN => Layer::LrnWithin(LrnWithin {
                size: c.u32("lrn size")?,
                alpha: c.f32("lrn alpha")?,
                beta: c.f32("lrn beta")?,
                bias: c.f32("lrn bias")?,
            }),
            t => return Err(Error::Malformed(format!("unknown layer kind tag {t}"))),
        };
        layers.push(layer);
    }

    let n_labels = c.count("label count", MAX_LABELS, 2)?;
    let mut labels = Vec::with_capacity(n_labels);
    for _ in 0..n_labels {
        labels.push(c.string("label")?);
    }

    let n_tensors = c.count("tensor count", MAX_TENSORS, 2 + 1 + 1 + 1 + 16)?;
    let mut tensors = Vec::with_capacity(n_tensors);
    for _ in 0..n_tensors {
        let name = c.string("tensor name")?;
        let dtype = Dtype::from_code(c.u8("dtype")?, &name)?;
        let layout = Layout::from_code(c.u8("layout")?, &name)?;
        let rank = c.u8("rank")? as usize;
        if rank > MAX_RANK {
            return Err(Error::TooLarge { what: "tensor rank", value: rank as u64, limit: MAX_RANK as u64 });
        }
        let mut shape = Vec::with_capacity(rank);
        for _ in 0..rank {
            shape.push(c.u64("tensor dim")?);
        }
        let offset = c.u64("tensor offset")?;
        let len = c.u64("tensor length")?;
        tensors.push(TensorEntry { name, dtype, layout, shape, offset, len });
    }
    if c.pos != meta.len() {
        return Err(Error::Malformed(format!("{} unparsed bytes at the end of the metadata", meta.len() - c.pos)));
    }
    let plan = Plan { input, preprocess, layers, labels };
    Ok(Metadata { plan, tensors })
}

/// Little-endian writer for the metadata block.
#[derive(Default)]
struct Out(Vec<u8>);

impl Out {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn f32(&mut self, v: f32) {
        self.u32(v.to_bits());
    }
    fn string(&mut self, s: &str) -> Result<()> {
        let n = u16::try_from(s.len()).map_err(|_| Error::InvalidArgument(format!("string too long: {s:.40}...")))?;
        self.u16(n);
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
    fn pads(&mut self, p: Pads) {
        for v in [p.top, p.left, p.bottom, p.right] {
            self.u32(v);
        }
    }
}

fn write_metadata(plan: &Plan, tensors: &[TensorEntry]) -> Result<Vec<u8>> {
    let mut o = Out::default();
    for v in plan.input {
        o.u32(v);
    }
    let p = &plan.preprocess;
    o.u8(match p.color {
        ColorOrder::Rgb => 0,
        ColorOrder::Bgr => 1,
    });
    o.f32(p.scale);
    p.mean.iter().for_each(|&v| o.f32(v));
    p.std.iter().for_each(|&v| o.f32(v));
    o.u32(p.resize_shorter);
    o.u32(plan.layers.len() as u32);
    for layer in &plan.layers {
        match layer {
            Layer::Conv(cv) => {
                o.u8(TAG_CONV);
                o.string(&cv.name)?;
                o.u32(cv.out_channels);
                cv.kernel.iter().chain(&cv.stride).for_each(|&v| o.u32(v));
                o.pads(cv.pads);
                o.u32(cv.groups);
                o.u8(cv.relu as u8);
            }
            Layer::Relu => o.u8(TAG_RELU),
            Layer::MaxPool(mp) => {
                o.u8(TAG_MAXPOOL);
                mp.kernel.iter().chain(&mp.stride).for_each(|&v| o.u32(v));
                o.pads(mp.pads);
                o.u8(mp.ceil_mode as u8);
            }
            Layer::Lrn(l) => {
                o.u8(TAG_LRN);
                o.u32(l.size);
                o.f32(l.alpha);
                o.f32(l.beta);
                o.f32(l.bias);
            }
            Layer::LrnWithin(l) => {
                o.u8(TAG_LRN_WITHIN);
                o.u32(l.size);
                o.f32(l.alpha);
                o.f32(l.beta);
                o.f32(l.bias);
            }
            Layer::Flatten => o.u8(TAG_FLATTEN),
            Layer::Linear(l) => {
                o.u8(TAG_LINEAR);
                o.string(&l.name)?;
                o.u32(l.out_features);
                o.u8(l.relu as u8);
            }
            Layer::Softmax => o.u8(TAG_SOFTMAX),
            Layer::AvgPool(ap) => {
                o.u8(TAG_AVGPOOL);
                ap.kernel.iter().chain(&ap.stride).for_each(|&v| o.u32(v));
                o.pads(ap.pads);
                o.u8(ap.ceil_mode as u8);
                o.u8(ap.count_include_pad as u8);
            }
            Layer::AdaptiveAvgPool(ap) => {
                o.u8(TAG_ADAPTIVE_AVGPOOL);
                ap.out.iter().for_each(|&v| o.u32(v));
            }
        }
    }
    o.u32(plan.labels.len() as u32);
    for l in &plan.labels {
        o.string(l)?;
    }
    o.u32(tensors.len() as u32);
    for t in tensors {
        o.string(&t.name)?;
        o.u8(t.dtype.code());
        o.u8(t.layout.code());
        o.u8(t.shape.len() as u8);
        t.shape.iter().for_each(|&d| o.u64(d));
        o.u64(t.offset);
        o.u64(t.len);
    }
    Ok(o.0)
}

/// A tensor to be written: name, shape and f32 values in row-major order.
#[derive(Clone, Debug, PartialEq)]
pub struct OwnedTensor {
    /// Tensor name.
    pub name: String,
    /// Shape.
    pub shape: Vec<u64>,
    /// Values, row-major.
    pub data: Vec<f32>,
}

/// The name of the per-output-channel scale tensor of the int8 weight `weight`.
pub fn scale_name(weight: &str) -> String {
    format!("{weight}_scale")
}

/// The name of the optional tensor fixing how the input of the layer whose weight is
/// `weight` (`<layer>.weight`) is quantized when it runs at int8: f32 `[scale, zero]`,
/// `<layer>.input_quant` (see [`crate::quant::ActParams::fixed`]).
pub fn input_quant_name(weight: &str) -> String {
    format!("{}.input_quant", weight.strip_suffix(".weight").unwrap_or(weight))
}

/// The `[scale, zero]` values of an [`input_quant_name`] tensor for inputs seen in
/// `lo..=hi` (as [`crate::Model::input_ranges`] reports them; widened to hold 0): the
/// per-image rule's parameters ([`crate::quant`]) for that range.
pub fn input_quant_values(lo: f32, hi: f32) -> [f32; 2] {
    let p = crate::quant::ActParams::from_range(lo.min(0.0), hi.max(0.0));
    [p.scale, p.zero as f32]
}

/// The optional tensors a file of `plan` may hold, whatever its weights' dtype: one
/// [`input_quant_name`] `[2]` tensor per conv and linear layer.
pub fn optional_specs(plan: &Plan) -> Result<Vec<crate::plan::TensorSpec>> {
    let specs = plan.tensor_specs()?;
    let weights = specs.iter().filter(|s| s.weight);
    Ok(weights
        .map(|s| crate::plan::TensorSpec { name: input_quant_name(&s.name), shape: vec![2], weight: false })
        .collect())
}

/// The tensors a file of `plan` holds when its weights are `weights`, in file order: the
/// plan's ([`Plan::tensor_specs`]) and, for int8 weights, each weight's scales after it
/// (f32, one per output channel, so `weight: false`).
pub fn file_specs(plan: &Plan, weights: Dtype) -> Result<Vec<crate::plan::TensorSpec>> {
    let mut specs = Vec::new();
    for spec in plan.tensor_specs()? {
        let scales = (spec.weight && weights == Dtype::I8).then(|| crate::plan::TensorSpec {
            name: scale_name(&spec.name),
            shape: vec![spec.shape[0]],
            weight: false,
        });
        specs.push(spec);
        specs.extend(scales);
    }
    Ok(specs)
}

/// What one laid-out entry's bytes are made from.
pub(super) enum Payload<'t> {
    /// Values stored at the entry's dtype (f32, or rounded to bf16).
    Values(&'t [f32]),
    /// A `[rows, k]` weight quantized to int8 per row with these scales.
    Quantized { data: &'t [f32], k: usize, scales: Vec<f32> },
    /// Values computed by the writer (int8 scales), stored as f32.
    Owned(Vec<f32>),
}

/// Check `tensors` against `plan` and lay them out: table entries in plan order (the
/// order the runtime reads them), each with what its bytes are made from. Weights (conv
/// and linear `.weight` tensors) are stored as `weights`; biases always as f32; int8
/// weights get their scales ([`file_specs`]).
pub(super) fn layout<'t>(
    plan: &Plan,
    tensors: &'t [OwnedTensor],
    weights: Dtype,
) -> Result<Vec<(TensorEntry, Payload<'t>)>> {
    let specs = plan.tensor_specs()?;
    let optional = optional_specs(plan)?;
    // Scales may be given for int8 weights (a quantized model's own); else computed.
    let given_scale =
        |t: &OwnedTensor| weights == Dtype::I8 && specs.iter().any(|s| s.weight && scale_name(&s.name) == t.name);
    let known = |t: &OwnedTensor| specs.iter().chain(&optional).any(|s| s.name == t.name) || given_scale(t);
    if let Some(extra) = tensors.iter().find(|t| !known(t)) {
        return Err(Error::UnusedTensor(extra.name.clone()));
    }
    let find = |name: &str| tensors.iter().find(|t| t.name == name);
    let mut out = Vec::with_capacity(specs.len() * 2);
    let mut offset = 0u64;
    let mut push = |name: String, dtype: Dtype, shape: Vec<u64>, payload: Payload<'t>| -> Result<()> {
        let elems = shape.iter().product::<u64>();
        let entry = TensorEntry { name, dtype, layout: Layout::RowMajor, shape, offset, len: elems * dtype.size() };
        offset = align_up(offset + entry.len)?;
        out.push((entry, payload));
        Ok(())
    };
    for spec in specs {
        let t = tensors.iter().find(|t| t.name == spec.name).ok_or_else(|| Error::MissingTensor(spec.name.clone()))?;
        if t.shape != spec.shape {
            return Err(Error::ShapeMismatch { tensor: t.name.clone(), expected: spec.shape, found: t.shape.clone() });
        }
        let elems = spec.shape.iter().product::<u64>();
        if t.data.len() as u64 != elems {
            return Err(Error::TensorLength {
                tensor: t.name.clone(),
                expected: elems * 4,
                found: t.data.len() as u64 * 4,
            });
        }
        if spec.weight && weights == Dtype::I8 {
            if t.data.iter().any(|v| !v.is_finite()) {
                return Err(Error::InvalidArgument(format!(
                    "tensor {}: a weight that is not finite cannot be quantized to int8",
                    t.name
                )));
            }
            let k = (elems / spec.shape[0].max(1)) as usize;
            let (scale, rows) = (scale_name(&spec.name), vec![spec.shape[0]]);
            let scales = match find(&scale) {
                Some(given) => {
                    check_values(given, &rows, "a scale", |s| s.is_finite() && s > 0.0)?;
                    given.data.clone()
                }
                None => crate::quant::weight_scales(&t.data, spec.shape[0] as usize, k),
            };
            let weight = spec.name.clone();
            push(spec.name, Dtype::I8, spec.shape, Payload::Quantized { data: &t.data, k, scales: scales.clone() })?;
            push(scale, Dtype::F32, rows, Payload::Owned(scales))?;
            if let Some((name, t)) = input_quant(tensors, &weight)? {
                push(name, Dtype::F32, vec![2], Payload::Values(&t.data))?;
            }
        } else {
            let dtype = if spec.weight { weights } else { Dtype::F32 };
            let weight = spec.weight.then(|| spec.name.clone());
            push(spec.name, dtype, spec.shape, Payload::Values(&t.data))?;
            if let Some((name, t)) = weight.map(|w| input_quant(tensors, &w)).transpose()?.flatten() {
                push(name, Dtype::F32, vec![2], Payload::Values(&t.data))?;
            }
        }
    }
    Ok(out)
}

/// `tensors`' values for the layer whose weight is `weight` must be `[2]` and hold
/// `scale, zero` as [`crate::quant::ActParams::fixed`] takes them.
fn input_quant<'t>(tensors: &'t [OwnedTensor], weight: &str) -> Result<Option<(String, &'t OwnedTensor)>> {
    let name = input_quant_name(weight);
    let Some(t) = tensors.iter().find(|t| t.name == name) else { return Ok(None) };
    if t.shape != [2] || t.data.len() != 2 {
        return Err(Error::ShapeMismatch { tensor: name, expected: vec![2], found: t.shape.clone() });
    }
    crate::quant::ActParams::fixed(t.data[0], t.data[1])
        .map_err(|reason| Error::InvalidTensorValue { tensor: name.clone(), reason })?;
    Ok(Some((name, t)))
}

/// `t` must have `shape` and only values `ok` accepts (`what` names one in the error).
fn check_values(t: &OwnedTensor, shape: &[u64], what: &str, ok: impl Fn(f32) -> bool) -> Result<()> {
    if t.shape != shape || t.data.len() as u64 != shape.iter().product::<u64>() {
        return Err(Error::ShapeMismatch { tensor: t.name.clone(), expected: shape.to_vec(), found: t.shape.clone() });
    }
    match t.data.iter().find(|&&v| !ok(v)) {
        Some(bad) => Err(Error::InvalidTensorValue {
            tensor: t.name.clone(),
            reason: format!("{what} of {bad} is not a positive finite number"),
        }),
        None => Ok(()),
    }
}

/// Header bytes for a metadata block of `meta_len` and a data section of `data_len`.
fn header(meta_len: usize, data_offset: u64, data_len: u64, sum: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&BYTE_ORDER_TAG.to_le_bytes());
    h[16..24].copy_from_slice(&(meta_len as u64).to_le_bytes());
    h[24..32].copy_from_slice(&data_offset.to_le_bytes());
    h[32..40].copy_from_slice(&data_len.to_le_bytes());
    h[40..48].copy_from_slice(&sum.to_le_bytes());
    h[48..52].copy_from_slice(&FLAG_CHECKSUM.to_le_bytes());
    h
}

/// Write the whole file to `out` in one pass over the tensors (plus one for the
/// checksum, which the header carries up front). Returns the bytes written.
pub(super) fn write_to(
    plan: &Plan,
    tensors: &[OwnedTensor],
    weights: Dtype,
    out: &mut impl std::io::Write,
) -> Result<u64> {
    let laid = layout(plan, tensors, weights)?;
    let entries: Vec<TensorEntry> = laid.iter().map(|(e, _)| e.clone()).collect();
    let meta = write_metadata(plan, &entries)?;
    let data_offset = align_up(HEADER_LEN as u64 + meta.len() as u64)?;
    let data_len = entries.last().map(|e| e.offset + e.len).unwrap_or(0);
    // Stream the data section through `sink` twice: once to hash, once to write.
    let stream = |sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>| -> std::io::Result<()> {
        let mut chunk = Vec::with_capacity(1 << 16);
        let mut pos = 0u64;
        for (entry, payload) in &laid {
            chunk.clear();
            chunk.resize((entry.offset - pos) as usize, 0);
            sink(&chunk)?;
            match payload {
                Payload::Quantized { data, k, scales } => {
                    for (row, &s) in data.chunks((*k).max(1)).zip(scales) {
                        chunk.clear();
                        chunk.extend(row.iter().map(|&v| crate::quant::quantize_weight(v, s) as u8));
                        sink(&chunk)?;
                    }
                }
                Payload::Values(_) | Payload::Owned(_) => {
                    let data: &[f32] = match payload {
                        Payload::Owned(v) => v,
                        Payload::Values(v) => v,
                        Payload::Quantized { .. } => &[],
                    };
                    for vals in data.chunks(1 << 14) {
                        chunk.clear();
                        match entry.dtype {
                            Dtype::Bf16 => chunk.extend(vals.iter().flat_map(|&v| bf16_from_f32(v).to_le_bytes())),
                            _ => chunk.extend(vals.iter().flat_map(|v| v.to_le_bytes())),
                        }
                        sink(&chunk)?;
                    }
                }
            }
            pos = entry.offset + entry.len;
        }
        Ok(())
    };
    let mut hasher = Checksum::new(data_len);
    stream(&mut |b| {
        hasher.update(b);
        Ok(())
    })
    .map_err(|e| Error::InvalidArgument(e.to_string()))?;
    let io = |e: std::io::Error| Error::InvalidArgument(format!("write failed: {e}"));
    out.write_all(&header(meta.len(), data_offset, data_len, hasher.finish())).map_err(io)?;
    out.write_all(&meta).map_err(io)?;
    out.write_all(&vec![0u8; data_offset as usize - HEADER_LEN - meta.len()]).map_err(io)?;
    stream(&mut |b| out.write_all(b)).map_err(io)?;
    Ok(data_offset + data_len)
}

/// Serialise a plan and its tensors into a complete weight file.
///
/// The plan is validated and every tensor checked against it first, so a file this
/// function writes always opens.
pub fn to_bytes(plan: &Plan, tensors: &[OwnedTensor]) -> Result<Vec<u8>> {
    to_bytes_as(plan, tensors, Dtype::F32)
}

/// [`to_bytes`] with the weights stored as `weights` ([`Dtype::F32`], [`Dtype::Bf16`], or
/// [`Dtype::I8`] with per-channel scales; biases stay f32).
pub fn to_bytes_as(plan: &Plan, tensors: &[OwnedTensor], weights: Dtype) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    write_to(plan, tensors, weights, &mut bytes)?;
    Ok(bytes)
}

/// Lay out header, metadata and `data` (the data section, as given) with no validation.
///
/// [`to_bytes`] is the way to write a correct file; this exists so tests and fuzzers can
/// build files with arbitrary tables. The header's checksum covers `data`.
pub fn assemble(plan: &Plan, entries: &[TensorEntry], data: &[u8]) -> Result<Vec<u8>> {
    let meta = write_metadata(plan, entries)?;
    let data_offset = align_up(HEADER_LEN as u64 + meta.len() as u64)?;
    let mut bytes = Vec::with_capacity(data_offset as usize + data.len());
    bytes.extend_from_slice(&header(meta.len(), data_offset, data.len() as u64, checksum(data)));
    bytes.extend_from_slice(&meta);
    bytes.resize(data_offset as usize, 0);
    bytes.extend_from_slice(data);
    Ok(bytes)
}
