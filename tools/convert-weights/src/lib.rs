//! # alexnet-convert
//!
//! Turns the weights users have into the `alexnet` weight file:
//!
//! ```text
//!  .onnx         --onnx::import-------+
//!  .safetensors  --state_dict::...----+
//!  .npz          --state_dict::...----+--> NetBuilder (shapes checked per layer)
//!  .pth / .pt    --pth::read----------+        |  finish: names, preprocessing, labels
//!  .caffemodel   --caffe::import------+        v
//!                                   Converted { plan, tensors } --write--> model.alexnet
//! ```
//!
//! * [`onnx`] maps a chain-shaped ONNX graph (Conv, Relu, MaxPool, LRN, Gemm/MatMul, ...)
//!   onto the layer plan; anything it cannot express is refused by op and node name.
//! * [`state_dict`] maps a torchvision `alexnet` state dict (safetensors, npz, or
//!   `torch.save`'s zip and legacy files, read by [`pth`]'s restricted unpickler).
//! * [`caffe`] reads a binary `NetParameter` (V1 `layers` or V2 `layer`), optionally with
//!   its deploy prototxt, through types generated from the vendored `caffe.proto`.
//! * [`Converted::write`] goes through `alexnet::weights::format::write_file`, the one
//!   writer of the format (temp file + rename), which re-checks every tensor against the
//!   plan.
//!
//! Every input is untrusted: sizes are checked with checked arithmetic against the bytes
//! actually present before anything is allocated, and no input makes the converter panic.
//! The crate holds the CLI-only dependencies (prost, prost-reflect, safetensors, zip) so the runtime
//! library an embedder pulls in carries none of them.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod builder;
pub mod caffe;
/// Protobuf types generated from the vendored `proto/caffe.proto` by `tools/protogen`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod caffe_proto {
    include!("generated/caffe.rs");
}
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod onnx;
pub mod onnx_proto;
pub mod options;
pub mod pth;
pub mod state_dict;

use std::fmt::Write as _;
use std::path::Path;

use alexnet::plan::{ColorOrder, Layer, Plan, Shape};
use alexnet::weights::OwnedTensor;

pub use builder::Tensor;
pub use error::{ConvertError, Result};
pub use options::{Convention, Options, PreprocessOptions};

use builder::NetBuilder;

/// The kind of file being converted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputFormat {
    /// An ONNX model (`ModelProto`).
    Onnx,
    /// A torchvision state dict in safetensors format.
    Safetensors,
    /// A torchvision state dict as a NumPy `.npz` archive.
    Npz,
    /// A torchvision state dict saved by `torch.save` (`.pth`, `.pt`; zip or legacy).
    Pth,
    /// A Caffe model (`.caffemodel`, binary `NetParameter`).
    Caffe,
}

impl InputFormat {
    /// The format named by `path`'s extension, else sniffed from the first bytes:
    /// a zip with a `data.pkl` or a legacy pickle is `torch.save`'s; another zip (`PK`) is
    /// an npz; an 8-byte little-endian header length that fits the file
    /// followed by `{` is safetensors; anything else is taken to be ONNX, which has no
    /// magic (a wrong guess then fails to decode).
    pub fn detect(path: &Path, bytes: &[u8]) -> InputFormat {
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("onnx") => return InputFormat::Onnx,
            Some("safetensors") => return InputFormat::Safetensors,
            Some("npz") => return InputFormat::Npz,
            Some("pth" | "pt") => return InputFormat::Pth,
            Some("caffemodel") => return InputFormat::Caffe,
            _ => {}
        }
        if pth::looks_like(bytes) {
            return InputFormat::Pth;
        }
        if bytes.starts_with(b"PK") {
            return InputFormat::Npz;
        }
        if let Some((len, rest)) = bytes.split_first_chunk::<8>() {
            let n = u64::from_le_bytes(*len);
            if n <= rest.len() as u64 && rest.first() == Some(&b'{') {
                return InputFormat::Safetensors;
            }
        }
        if caffe::looks_like(bytes) {
            return InputFormat::Caffe;
        }
        InputFormat::Onnx
    }

    /// Lower-case name for messages.
    pub fn name(self) -> &'static str {
        match self {
            InputFormat::Onnx => "onnx",
            InputFormat::Safetensors => "safetensors",
            InputFormat::Npz => "npz",
            InputFormat::Pth => "pth",
            InputFormat::Caffe => "caffe",
        }
    }
}

/// A converted network: the plan and its tensors, ready to write.
#[derive(Clone, Debug, PartialEq)]
pub struct Converted {
    /// What it was converted from.
    pub format: InputFormat,
    /// The network, preprocessing and labels.
    pub plan: Plan,
    /// `{layer}.weight` / `{layer}.bias` for every conv and linear layer, in plan order.
    pub tensors: Vec<OwnedTensor>,
    /// For each tensor, its name in the source (initializer, state-dict key; `-` for a
    /// zero bias the source did not have).
    pub sources: Vec<String>,
}

/// NaN and infinity counts of one tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NonFinite {
    /// Tensor name.
    pub name: String,
    /// NaN values.
    pub nan: u64,
    /// Positive or negative infinities.
    pub inf: u64,
}

impl Converted {
    /// Write the weight file atomically (temporary file beside `path`, then rename).
    pub fn write(&self, path: &Path) -> Result<()> {
        self.write_as(path, alexnet::Precision::F32)
    }

    /// [`Converted::write`] with the weights stored at `precision` (biases stay f32).
    pub fn write_as(&self, path: &Path, precision: alexnet::Precision) -> Result<()> {
        let dtype = precision.weight_dtype();
        alexnet::weights::format::write_file_as(path, &self.plan, &self.tensors_for(dtype), dtype)?;
        Ok(())
    }

    /// The whole weight file in memory, the weights stored at `precision`.
    pub fn to_bytes_as(&self, precision: alexnet::Precision) -> Result<Vec<u8>> {
        let dtype = precision.weight_dtype();
        Ok(alexnet::weights::format::to_bytes_as(&self.plan, &self.tensors_for(dtype), dtype)?)
    }

    /// The tensors to write with the weights at `dtype`: a quantized model's weight
    /// scales only at int8 (at f32 or bf16 its weights are the dequantized values).
    fn tensors_for(&self, dtype: alexnet::weights::Dtype) -> Vec<OwnedTensor> {
        let keep = |t: &&OwnedTensor| dtype == alexnet::weights::Dtype::I8 || !t.name.ends_with(".weight_scale");
        self.tensors.iter().filter(keep).cloned().collect()
    }

    /// Whether the source was a quantized model (it brought int8 weight scales): such a
    /// model is written at int8 unless another precision is asked for.
    pub fn is_quantized(&self) -> bool {
        self.tensors.iter().any(|t| t.name.ends_with(".weight_scale"))
    }

    /// Calibrate int8: run the network at f32 on `images` (`[N, C, H, W]`, preprocessed
    /// as the model expects) and store, for every conv and linear layer, the int8
    /// parameters covering its input's range over all of them
    /// (`<layer>.input_quant`, replacing any there were). Per-inference ranges are
    /// then no longer taken: a calibrated file's int8 layers quantize every image with
    /// these. Returns the number of layers calibrated.
    pub fn calibrate(&mut self, images: &[f32]) -> Result<usize> {
        use alexnet::weights::format;
        let keep: Vec<bool> = self.tensors.iter().map(|t| !t.name.ends_with(".input_quant")).collect();
        let plain: Vec<OwnedTensor> =
            self.tensors.iter().zip(&keep).filter(|(_, &k)| k).map(|(t, _)| t.clone()).collect();
        let model = alexnet::Model::from_bytes(format::to_bytes(&self.plan, &plain)?)?;
        let per = model.input_len();
        if images.is_empty() || !images.len().is_multiple_of(per) {
            let [c, h, w] = model.input_shape();
            return Err(ConvertError::InvalidOption(format!(
                "--calibrate: {} values are not a whole number of [{c}, {h}, {w}] images",
                images.len()
            )));
        }
        if let Some(i) = images.iter().position(|v| !v.is_finite()) {
            return Err(ConvertError::InvalidOption(format!(
                "--calibrate: image {} holds a value that is not finite",
                i / per
            )));
        }
        let mut ranges: Vec<(String, (f32, f32))> = Vec::new();
        for chunk in images.chunks(16 * per) {
            for (i, (name, (lo, hi))) in model.input_ranges(chunk)?.into_iter().enumerate() {
                match ranges.get_mut(i) {
                    Some((_, r)) => *r = (r.0.min(lo), r.1.max(hi)),
                    None => ranges.push((name, (lo, hi))),
                }
            }
        }
        let mut tensors = plain;
        for (weight, (lo, hi)) in &ranges {
            let data = format::input_quant_values(*lo, *hi).to_vec();
            tensors.push(OwnedTensor { name: format::input_quant_name(weight), shape: vec![2], data });
        }
        let mut sources: Vec<String> =
            self.sources.iter().zip(&keep).filter(|(_, &k)| k).map(|(s, _)| s.clone()).collect();
        sources.resize(tensors.len(), "calibration".into());
        (self.tensors, self.sources) = (tensors, sources);
        Ok(ranges.len())
    }

    /// Quantize every convolution's weights to 7 bits when written at int8 (codes in
    /// `-64..=64`: per-row scales `max |w| / 64` stored as `<layer>.weight_scale`,
    /// replacing a quantized model's): CPUs with AVX2 but no VNNI multiply such codes as
    /// bytes, faster, at half the weight resolution. Linear layers keep 8 bits (their
    /// speed is the memory's). Returns the number of layers set.
    pub fn seven_bit_conv_weights(&mut self) -> usize {
        use alexnet::weights::format::scale_name;
        let mut set = 0;
        for layer in &self.plan.layers {
            let Layer::Conv(conv) = layer else { continue };
            let weight = format!("{}.weight", conv.name);
            let Some(w) = self.tensors.iter().find(|t| t.name == weight) else { continue };
            let rows = conv.out_channels as usize;
            let k = w.data.len() / rows.max(1);
            let data = alexnet::quant::weight_scales_within(&w.data, rows, k, alexnet::quant::SEVEN_BIT_CODE);
            let scale = OwnedTensor { name: scale_name(&weight), shape: vec![rows as u64], data };
            match self.tensors.iter().position(|t| t.name == scale.name) {
                Some(i) => (self.tensors[i], self.sources[i]) = (scale, "7-bit weights".into()),
                None => {
                    self.tensors.push(scale);
                    self.sources.push("7-bit weights".into());
                }
            }
            set += 1;
        }
        set
    }

    /// Total bytes of tensor data (f32).
    pub fn tensor_bytes(&self) -> u64 {
        self.tensor_bytes_as(alexnet::Precision::F32)
    }

    /// Bytes of tensor data with the weights stored at `precision`.
    pub fn tensor_bytes_as(&self, precision: alexnet::Precision) -> u64 {
        let dtype = precision.weight_dtype();
        // int8 weights carry one f32 scale per output channel.
        let scales = |t: &OwnedTensor| if dtype == alexnet::weights::Dtype::I8 { 4 * t.shape[0] } else { 0 };
        let bytes = |t: &OwnedTensor| match t.name.ends_with(".weight") {
            true => t.data.len() as u64 * dtype.size() + scales(t),
            // Given scales take the place of computed ones (counted with the weight).
            false if t.name.ends_with(".weight_scale") => 0,
            false => t.data.len() as u64 * 4,
        };
        self.tensors.iter().map(bytes).sum()
    }

    /// Tensors holding NaN or infinite values, with their counts (empty when all finite).
    pub fn non_finite(&self) -> Vec<NonFinite> {
        self.tensors
            .iter()
            .filter_map(|t| {
                let nan = t.data.iter().filter(|v| v.is_nan()).count() as u64;
                let inf = t.data.iter().filter(|v| v.is_infinite()).count() as u64;
                (nan + inf > 0).then(|| NonFinite { name: t.name.clone(), nan, inf })
            })
            .collect()
    }

    /// A human-readable description of the plan: input, preprocessing, every layer with its
    /// output shape and tensors, and the tensor count and bytes.
    pub fn dump(&self) -> String {
        let plan = &self.plan;
        let mut s = String::new();
        let [c, h, w] = plan.input;
        let _ = writeln!(s, "source: {}", self.format.name());
        let _ = writeln!(s, "input: [{c}, {h}, {w}]");
        let p = &plan.preprocess;
        let color = match p.color {
            ColorOrder::Rgb => "RGB",
            ColorOrder::Bgr => "BGR",
        };
        let resize = if p.resize_shorter == 0 {
            format!("resize to {h}x{w}")
        } else {
            format!("resize shorter side to {}, centre crop {h}x{w}", p.resize_shorter)
        };
        let _ = writeln!(
            s,
            "preprocess: {color}, x = (pixel * {} - mean {:?}) / std {:?}, {resize}",
            p.scale, p.mean, p.std
        );
        let shapes = plan.shapes().unwrap_or_default();
        let _ = writeln!(s, "layers:");
        for (i, layer) in plan.layers.iter().enumerate() {
            let out = shapes.get(i + 1).map(Shape::to_string).unwrap_or_default();
            let (name, desc) = describe(layer);
            let params = match layer {
                Layer::Conv(_) | Layer::Linear(_) => self
                    .tensors
                    .iter()
                    .zip(&self.sources)
                    .filter(|(t, _)| t.name.strip_suffix(".weight").or(t.name.strip_suffix(".bias")) == Some(name))
                    .map(|(t, src)| format!("{} {:?} <- {src}", t.name, t.shape))
                    .collect::<Vec<_>>()
                    .join(", "),
                _ => String::new(),
            };
            let _ = writeln!(s, "  {i:>3}  {name:<6} {desc:<46} -> {out:<16} {params}");
        }
        let classes = shapes.last().map(Shape::len).unwrap_or(0);
        let kind = if plan.ends_in_softmax() { "probabilities" } else { "logits" };
        let _ = writeln!(s, "output: {classes} classes ({kind})");
        let labels = if plan.labels.is_empty() { "none".to_string() } else { plan.labels.len().to_string() };
        let _ = writeln!(s, "labels: {labels}");
        let bytes = self.tensor_bytes();
        let _ = writeln!(
            s,
            "tensors: {}, {bytes} bytes ({:.1} MiB) f32",
            self.tensors.len(),
            bytes as f64 / (1u64 << 20) as f64
        );
        s
    }
}

/// A layer's name (empty for unnamed kinds) and its hyperparameters.
fn describe(layer: &Layer) -> (&str, String) {
    let pads = |p: alexnet::plan::Pads| format!("pads [{}, {}, {}, {}]", p.top, p.left, p.bottom, p.right);
    match layer {
        Layer::Conv(c) => (
            &c.name,
            format!(
                "conv {} k{}x{} s{}x{} {} g{}{}",
                c.out_channels,
                c.kernel[0],
                c.kernel[1],
                c.stride[0],
                c.stride[1],
                pads(c.pads),
                c.groups,
                if c.relu { " +relu" } else { "" }
            ),
        ),
        Layer::Relu => ("", "relu".into()),
        Layer::MaxPool(m) => (
            "",
            format!(
                "maxpool k{}x{} s{}x{} {}{}",
                m.kernel[0],
                m.kernel[1],
                m.stride[0],
                m.stride[1],
                pads(m.pads),
                if m.ceil_mode { " ceil" } else { "" }
            ),
        ),
        Layer::Lrn(l) => ("", format!("lrn size {} alpha {} beta {} bias {}", l.size, l.alpha, l.beta, l.bias)),
        Layer::LrnWithin(l) => {
            ("", format!("lrn within {}x{} alpha {} beta {} bias {}", l.size, l.size, l.alpha, l.beta, l.bias))
        }
        Layer::AvgPool(a) => (
            "",
            format!(
                "avgpool k{}x{} s{}x{} {}{}{}",
                a.kernel[0],
                a.kernel[1],
                a.stride[0],
                a.stride[1],
                pads(a.pads),
                if a.ceil_mode { " ceil" } else { "" },
                if a.count_include_pad { " +pad" } else { "" }
            ),
        ),
        Layer::AdaptiveAvgPool(a) => ("", format!("adaptive avgpool to {}x{}", a.out[0], a.out[1])),
        Layer::Flatten => ("", "flatten".into()),
        Layer::Linear(l) => (&l.name, format!("linear {}{}", l.out_features, if l.relu { " +relu" } else { "" })),
        Layer::Softmax => ("", "softmax".into()),
    }
}

/// Read a whole regular file. Directories, FIFOs and devices are refused before reading,
/// so a wrong path is an error and never a hang.
pub fn read_regular_file(path: &Path) -> Result<Vec<u8>> {
    let io = |source| ConvertError::Io { path: path.to_path_buf(), source };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(io(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file")));
    }
    std::fs::read(path).map_err(io)
}

/// Convert the file at `path`, choosing the importer by extension or content.
pub fn convert_file(path: &Path, options: &Options) -> Result<Converted> {
    let bytes = read_regular_file(path)?;
    let format = InputFormat::detect(path, &bytes);
    let dir = path.parent().map(|d| if d.as_os_str().is_empty() { Path::new(".") } else { d });
    match format {
        InputFormat::Onnx => onnx::import_owned(bytes, dir, options),
        _ => convert_bytes(&bytes, format, dir, options),
    }
}

/// Convert bytes of a known format. `base_dir` is where ONNX external data files are
/// looked up (none: external data is refused); a Caffe model's network comes from
/// `options.prototxt` when set.
pub fn convert_bytes(
    bytes: &[u8],
    format: InputFormat,
    base_dir: Option<&Path>,
    options: &Options,
) -> Result<Converted> {
    match format {
        InputFormat::Onnx => onnx::import(bytes, base_dir, options),
        InputFormat::Safetensors => state_dict::from_safetensors(bytes, options),
        InputFormat::Npz => state_dict::from_npz(bytes, options),
        InputFormat::Pth => state_dict::from_tensors(pth::read(bytes)?, InputFormat::Pth, options),
        InputFormat::Caffe => {
            let prototxt = match &options.prototxt {
                Some(p) => Some(
                    String::from_utf8(read_regular_file(p)?)
                        .map_err(|_| ConvertError::Caffe(format!("{}: the prototxt is not UTF-8 text", p.display())))?,
                ),
                None => None,
            };
            caffe::import(bytes, prototxt.as_deref(), options)
        }
    }
}

/// Common end of every importer: name layers, resolve preprocessing (`detected` unless
/// overridden), read labels, and check the result exactly as the writer will.
pub(crate) fn finish(
    net: NetBuilder,
    detected: Convention,
    format: InputFormat,
    options: &Options,
) -> Result<Converted> {
    let (mut plan, tensors, sources) = net.finish(options.preprocess.resolve(detected))?;
    let shapes = plan.shapes()?;
    if let Some(path) = &options.labels {
        let classes = shapes.last().map(Shape::len).unwrap_or(0);
        // Refuse FIFOs and directories before the library reads the file.
        let meta = std::fs::metadata(path).map_err(|source| ConvertError::Io { path: path.clone(), source })?;
        if !meta.is_file() {
            return Err(ConvertError::InvalidOption(format!("--labels {}: not a regular file", path.display())));
        }
        plan.labels = alexnet::labels::read_label_file(path, classes)?;
    }
    plan.validate()?;
    for spec in plan.tensor_specs()? {
        let t = tensors
            .iter()
            .find(|t| t.name == spec.name)
            .ok_or_else(|| ConvertError::MissingTensor { name: spec.name.clone(), context: "plan".into() })?;
        let count = t.shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
        if t.shape != spec.shape || count != Some(t.data.len() as u64) {
            return Err(ConvertError::BadShape(format!(
                "tensor '{}' has shape {:?} ({} values), the plan needs {:?}",
                t.name,
                t.shape,
                t.data.len(),
                spec.shape
            )));
        }
    }
    Ok(Converted { format, plan, tensors, sources })
}
