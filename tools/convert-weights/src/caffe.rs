//! Caffe models: a `.caffemodel` (binary `NetParameter`), optionally with the deploy
//! `.prototxt` (text format) that describes the network to run.
//!
//! Both of Caffe's layer encodings are read: the current `layer` field
//! (`LayerParameter`, type as a string) and the V1 `layers` field (`V1LayerParameter`,
//! type as an enum) that the BVLC reference models were saved with. The oldest (V0)
//! encoding is refused with a pointer to Caffe's own upgrade tool.
//!
//! * **Structure**: from the prototxt when one is given, else from the caffemodel itself
//!   (a snapshot carries its train/test net). Layers are taken as Caffe's TEST phase
//!   sees them, in file order, following the data blob from bottom to top: in-place
//!   layers (ReLU, Dropout) and side branches that only read it (Accuracy, losses over the
//!   label) are fine; a layer that reads any other blob is refused by name.
//! * **Weights**: each weighted layer's blobs are found by layer name in the caffemodel,
//!   in either encoding, as Caffe's `CopyTrainedLayersFrom` does.
//! * **Layers**: Convolution (group, pad, stride, kernel; no dilation), ReLU, Pooling
//!   (MAX and AVE, Caffe's ceil rounding or `round_mode: FLOOR`, global pooling), LRN
//!   (across and within channels), InnerProduct (`transpose` too), Dropout (the
//!   identity at test time), Softmax, and SoftmaxWithLoss (a train net's head, run as
//!   Softmax). The output size of every pool is computed by Caffe's own formula and
//!   checked against the plan's, so a window arithmetic the plan cannot express is
//!   refused instead of silently shifted.
//! * **Preprocessing**: Caffe's convention (BGR, 0..255, mean 104/117/123, resize 256,
//!   crop), with the data layer's `mean_value` and `scale` when the net has them, and a
//!   mean `.binaryproto` reduced to its per-channel means ([`mean_from_binaryproto`]).
//!
//! Every size in the file is checked with checked arithmetic against the values actually
//! present before a tensor is built; protobuf decoding is bounded by prost.

use prost::Message as _;

use alexnet::plan::{AvgPool, Layer, Lrn, LrnWithin, MaxPool, Pads, Shape};

use crate::builder::{dim_u32, ConvParams, NetBuilder, Tensor};
use crate::caffe_proto as pb;
use crate::error::{ConvertError, Result};
use crate::options::{Convention, Options};
use crate::{Converted, InputFormat};

/// The compiled `caffe.proto` (names and types only), for reading the text format.
const DESCRIPTOR: &[u8] = include_bytes!("generated/caffe.descriptor.bin");

/// Whether `bytes` look like a binary `NetParameter`: it opens with the net's name
/// (field 1) or its first `layer` (field 100). ONNX opens with a varint (`ir_version`).
pub fn looks_like(bytes: &[u8]) -> bool {
    bytes.first() == Some(&0x0a) || bytes.starts_with(&[0xa2, 0x06])
}

/// Decode a binary `NetParameter` (`.caffemodel`).
pub fn decode_net(bytes: &[u8]) -> Result<pb::NetParameter> {
    pb::NetParameter::decode(bytes).map_err(|e| ConvertError::Caffe(format!("cannot decode the caffemodel: {e}")))
}

/// Parse a text-format `NetParameter` (`.prototxt`).
pub fn parse_prototxt(text: &str) -> Result<pb::NetParameter> {
    let pool = prost_reflect::DescriptorPool::decode(DESCRIPTOR)
        .map_err(|e| ConvertError::Caffe(format!("the built-in caffe.proto descriptor is unreadable: {e}")))?;
    let desc = pool
        .get_message_by_name("caffe.NetParameter")
        .ok_or_else(|| ConvertError::Caffe("the built-in caffe.proto lacks NetParameter".into()))?;
    let message = prost_reflect::DynamicMessage::parse_text_format(desc, text)
        .map_err(|e| ConvertError::Caffe(format!("prototxt: {}", one_line(&e.to_string()))))?;
    pb::NetParameter::decode(message.encode_to_vec().as_slice())
        .map_err(|e| ConvertError::Caffe(format!("prototxt: {e}")))
}

/// The per-channel means of a mean image (`mean.binaryproto`, a `BlobProto` of
/// `[1, C, H, W]` with 3 channels, or 1 used for all three), in the file's channel order
/// (BGR for Caffe's ImageNet models). Caffe's deploy tools subtract this average rather
/// than the full image once the input is cropped, and so does this runtime.
pub fn mean_from_binaryproto(bytes: &[u8]) -> Result<[f32; 3]> {
    let blob = pb::BlobProto::decode(bytes).map_err(|e| ConvertError::Caffe(format!("mean file: {e}")))?;
    let t = blob_tensor(&blob, "mean file")?;
    let (c, plane) = match t.shape[..] {
        [1, c, h, w] | [c, h, w] => (c, h.checked_mul(w)),
        _ => (0, None),
    };
    let plane = match plane {
        Some(p) if c >= 1 && p >= 1 => p as usize,
        _ => {
            return Err(ConvertError::Caffe(format!(
                "mean file: blob of shape {} is not one [1, C, H, W] image",
                t.shape_str()
            )))
        }
    };
    let means: Vec<f32> =
        t.data.chunks(plane).map(|ch| (ch.iter().map(|&v| v as f64).sum::<f64>() / plane as f64) as f32).collect();
    if means.iter().any(|m| !m.is_finite()) {
        return Err(ConvertError::Caffe("mean file: the mean is not finite".into()));
    }
    match means[..] {
        [m] => Ok([m; 3]),
        [b, g, r] => Ok([b, g, r]),
        _ => Err(ConvertError::Caffe(format!("mean file: {} channels, not 1 or 3", means.len()))),
    }
}

/// Convert a caffemodel, with the network taken from `prototxt` when given.
pub fn import(model: &[u8], prototxt: Option<&str>, options: &Options) -> Result<Converted> {
    let weights = decode_net(model)?;
    // Without a prototxt the caffemodel is its own structure (borrowed: its blobs are
    // the weights, hundreds of megabytes).
    let parsed = prototxt.map(parse_prototxt).transpose()?;
    let structure = parsed.as_ref().unwrap_or(&weights);
    let layers = net_layers(structure)?;
    let blobs = net_layers(&weights)?;
    Importer::new(structure, &layers, &blobs, options)?.run()
}

/// One layer in either encoding, with the parameters this importer reads.
struct CaffeLayer<'a> {
    name: &'a str,
    kind: String,
    bottom: &'a [String],
    top: &'a [String],
    blobs: &'a [pb::BlobProto],
    in_test: bool,
    conv: Option<&'a pb::ConvolutionParameter>,
    pool: Option<&'a pb::PoolingParameter>,
    lrn: Option<&'a pb::LrnParameter>,
    ip: Option<&'a pb::InnerProductParameter>,
    relu: Option<&'a pb::ReLuParameter>,
    softmax: Option<&'a pb::SoftmaxParameter>,
    transform: Option<&'a pb::TransformationParameter>,
    input: Option<&'a pb::InputParameter>,
    memory: Option<&'a pb::MemoryDataParameter>,
}

/// Whether Caffe's TEST phase includes a layer with these rules.
fn in_test(include: &[pb::NetStateRule], exclude: &[pb::NetStateRule]) -> bool {
    let test = pb::Phase::Test as i32;
    let matches = |r: &pb::NetStateRule| r.phase.is_none_or(|p| p == test);
    if include.is_empty() {
        !exclude.iter().any(matches)
    } else {
        include.iter().any(matches)
    }
}

/// The layers of a net, from whichever field it uses (both at once is refused).
fn net_layers(net: &pb::NetParameter) -> Result<Vec<CaffeLayer<'_>>> {
    if !net.layer.is_empty() && !net.layers.is_empty() {
        return Err(ConvertError::Caffe("the net has both 'layer' and V1 'layers' entries".into()));
    }
    let mut out = Vec::with_capacity(net.layer.len() + net.layers.len());
    for l in &net.layer {
        out.push(CaffeLayer {
            name: l.name.as_deref().unwrap_or(""),
            kind: l.r#type.clone().unwrap_or_default(),
            bottom: &l.bottom,
            top: &l.top,
            blobs: &l.blobs,
            in_test: l.phase.is_none_or(|p| p == pb::Phase::Test as i32) && in_test(&l.include, &l.exclude),
            conv: l.convolution_param.as_ref(),
            pool: l.pooling_param.as_ref(),
            lrn: l.lrn_param.as_ref(),
            ip: l.inner_product_param.as_ref(),
            relu: l.relu_param.as_ref(),
            softmax: l.softmax_param.as_ref(),
            transform: l.transform_param.as_ref(),
            input: l.input_param.as_ref(),
            memory: l.memory_data_param.as_ref(),
        });
    }
    for l in &net.layers {
        let name = l.name.as_deref().unwrap_or("");
        if l.layer.is_some() {
            return Err(ConvertError::Caffe(format!(
                "layer '{name}' is in Caffe's V0 encoding; upgrade the file with Caffe's \
                 upgrade_net_proto_binary first"
            )));
        }
        let kind = l
            .r#type
            .map_or(Ok("NONE".to_string()), v1_kind)
            .map_err(|v| ConvertError::Caffe(format!("layer '{name}': unknown V1 layer type {v}")))?;
        out.push(CaffeLayer {
            name,
            kind,
            bottom: &l.bottom,
            top: &l.top,
            blobs: &l.blobs,
            in_test: in_test(&l.include, &l.exclude),
            conv: l.convolution_param.as_ref(),
            pool: l.pooling_param.as_ref(),
            lrn: l.lrn_param.as_ref(),
            ip: l.inner_product_param.as_ref(),
            relu: l.relu_param.as_ref(),
            softmax: l.softmax_param.as_ref(),
            transform: l.transform_param.as_ref(),
            input: None,
            memory: l.memory_data_param.as_ref(),
        });
    }
    Ok(out)
}

/// The current type name of a V1 layer type, e.g. `INNER_PRODUCT` -> `InnerProduct`.
fn v1_kind(v: i32) -> std::result::Result<String, i32> {
    use pb::v1_layer_parameter::LayerType as T;
    let t = T::try_from(v).map_err(|_| v)?;
    let name = match t {
        T::Convolution => "Convolution",
        T::Relu => "ReLU",
        T::Pooling => "Pooling",
        T::Lrn => "LRN",
        T::InnerProduct => "InnerProduct",
        T::Dropout => "Dropout",
        T::Softmax => "Softmax",
        T::SoftmaxLoss => "SoftmaxWithLoss",
        T::Data => "Data",
        T::ImageData => "ImageData",
        T::MemoryData => "MemoryData",
        T::Hdf5Data => "HDF5Data",
        T::WindowData => "WindowData",
        T::Accuracy => "Accuracy",
        T::Flatten => "Flatten",
        T::Split => "Split",
        T::Silence => "Silence",
        // Anything else keeps its V1 name and is refused by it below.
        other => return Ok(other.as_str_name().to_string()),
    };
    Ok(name.to_string())
}

/// Layer types that feed the net (their first top is the image blob).
const DATA_LAYERS: [&str; 7] = ["Input", "Data", "ImageData", "MemoryData", "HDF5Data", "WindowData", "DummyData"];
/// Layer types that only observe the net (training metrics, losses, sinks).
const SIDE_LAYERS: [&str; 5] = ["Accuracy", "Silence", "EuclideanLoss", "HingeLoss", "InfogainLoss"];

struct Importer<'a> {
    layers: &'a [CaffeLayer<'a>],
    weights: &'a [CaffeLayer<'a>],
    input: Option<[u32; 3]>,
    /// The input blob named by the net's `input` field.
    declared_input: Option<String>,
    transform: Option<&'a pb::TransformationParameter>,
    options: &'a Options,
}

impl<'a> Importer<'a> {
    fn new(
        net: &'a pb::NetParameter,
        layers: &'a [CaffeLayer<'a>],
        weights: &'a [CaffeLayer<'a>],
        options: &'a Options,
    ) -> Result<Importer<'a>> {
        let declared_input = net.input.first().cloned();
        let mut imp = Importer { layers, weights, input: None, declared_input, transform: None, options };
        // Deploy nets declare the input at the top (three historical spellings) or as an
        // Input layer; train/test nets have a data layer with a crop size.
        let dims: Option<Vec<i64>> = if let Some(s) = net.input_shape.first() {
            Some(s.dim.clone())
        } else if !net.input_dim.is_empty() {
            Some(net.input_dim.iter().map(|&d| d as i64).collect())
        } else {
            None
        };
        if let Some(d) = dims {
            imp.input = Some(input_dims(&d, "the net's input")?);
        }
        Ok(imp)
    }

    fn run(mut self) -> Result<Converted> {
        // The blob carrying the image through the chain, once the data source is found.
        let mut current: Option<String> = None;
        let mut net: Option<NetBuilder> = None;
        let mut ended = false;
        for (i, l) in self.layers.iter().enumerate() {
            if !l.in_test {
                continue;
            }
            let ctx = format!("layer '{}' ({})", l.name, l.kind);
            let kind = l.kind.as_str();
            if DATA_LAYERS.contains(&kind) {
                if current.is_some() {
                    return Err(ConvertError::Caffe(format!("{ctx}: a second data source")));
                }
                self.data_layer(l, &ctx)?;
                current = Some(first(l.top, &ctx, "top")?.clone());
                continue;
            }
            if SIDE_LAYERS.contains(&kind) || kind.ends_with("Loss") && kind != "SoftmaxWithLoss" {
                // Reads blobs, writes none that the chain uses.
                if l.top.iter().any(|t| Some(t) == current.as_ref()) {
                    return Err(ConvertError::Caffe(format!("{ctx} overwrites the data blob")));
                }
                continue;
            }
            if current.is_none() {
                // Deploy files may name the input blob at the top of the net.
                current = self.declared_input.take();
            }
            let Some(cur) = current.clone() else {
                return Err(ConvertError::Caffe(format!("{ctx} comes before any input or data layer")));
            };
            if ended {
                return Err(ConvertError::Caffe(format!("{ctx} follows the softmax, which must end the net")));
            }
            let bottom = first(l.bottom, &ctx, "bottom")?;
            if *bottom != cur {
                return Err(ConvertError::Caffe(format!(
                    "{ctx} reads blob '{bottom}', but the network's data is in '{cur}': only a single chain converts"
                )));
            }
            let extra = if kind == "SoftmaxWithLoss" { 2 } else { 1 };
            if l.bottom.len() > extra || l.top.len() > 1 {
                return Err(ConvertError::Caffe(format!(
                    "{ctx} has {} bottoms and {} tops; only one-in one-out layers convert",
                    l.bottom.len(),
                    l.top.len()
                )));
            }
            if net.is_none() {
                net = Some(NetBuilder::new(self.input_shape(&self.layers[i..], &ctx)?)?);
            }
            let b = net.as_mut().expect("set above");
            match kind {
                "Convolution" => self.convolution(b, l, &ctx)?,
                "ReLU" => {
                    let slope = l.relu.and_then(|r| r.negative_slope).unwrap_or(0.0);
                    if slope != 0.0 {
                        return Err(ConvertError::Caffe(format!("{ctx}: leaky ReLU (negative_slope {slope})")));
                    }
                    if !b.fuse_relu() {
                        b.push(Layer::Relu, &ctx)?;
                    }
                }
                "Pooling" => pooling(b, l, &ctx)?,
                "LRN" => lrn(b, l, &ctx)?,
                "InnerProduct" => self.inner_product(b, l, &ctx)?,
                // Dropout is the identity at test time (Caffe scales during training).
                "Dropout" => {}
                "Flatten" => {
                    if matches!(b.shape(), Shape::Spatial { .. }) {
                        b.push(Layer::Flatten, &ctx)?;
                    }
                }
                "Softmax" | "SoftmaxWithLoss" => {
                    let axis = l.softmax.and_then(|s| s.axis).unwrap_or(1);
                    if axis != 1 || !matches!(b.shape(), Shape::Flat(_)) {
                        return Err(ConvertError::Caffe(format!(
                            "{ctx}: softmax over axis {axis} of {}; only the class axis converts",
                            b.shape()
                        )));
                    }
                    b.push(Layer::Softmax, &ctx)?;
                    ended = true;
                }
                other => {
                    return Err(ConvertError::Caffe(format!("unsupported layer type {other} at layer '{}'", l.name)))
                }
            }
            current = l.top.first().cloned();
        }
        let Some(net) = net else {
            return Err(ConvertError::Caffe("the net has no layers to convert".into()));
        };
        if !matches!(net.shape(), Shape::Flat(_)) {
            return Err(ConvertError::Caffe(format!(
                "the net ends with a [C, H, W] activation {}, not class scores",
                net.shape()
            )));
        }
        let options = self.preprocess_options();
        crate::finish(net, Convention::Caffe, InputFormat::Caffe, &options)
    }

    /// Record what a data layer says about the input: shape and preprocessing.
    fn data_layer(&mut self, l: &CaffeLayer<'a>, ctx: &str) -> Result<()> {
        if let Some(shape) = l.input.and_then(|p| p.shape.first()) {
            self.input.get_or_insert(input_dims(&shape.dim, ctx)?);
        }
        if let Some(m) = l.memory {
            let dims = [1, m.channels() as i64, m.height() as i64, m.width() as i64];
            self.input.get_or_insert(input_dims(&dims, ctx)?);
        }
        if let Some(t) = l.transform {
            self.transform = Some(t);
        }
        Ok(())
    }

    /// The input `[C, H, W]`: `--input-size` over the net's own; a data layer's crop size
    /// with the channels of the first convolution's weight.
    fn input_shape(&self, rest: &[CaffeLayer<'_>], ctx: &str) -> Result<[u32; 3]> {
        let crop = self.transform.and_then(|t| t.crop_size).filter(|&c| c > 0);
        let (c, hw) = match self.input {
            Some([c, h, w]) => (Some(c), Some([h, w])),
            None => (None, crop.map(|s| [s, s])),
        };
        let hw = self.options.input_size.or(hw).ok_or_else(|| {
            ConvertError::Caffe(format!(
                "{ctx}: the net does not say its input size (no input shape, Input layer or crop size); \
                 give --input-size or a deploy --prototxt"
            ))
        })?;
        let c = match c {
            Some(c) => c,
            None => {
                let conv = rest.iter().find(|l| l.in_test && l.kind == "Convolution").ok_or_else(|| {
                    ConvertError::Caffe(format!("{ctx}: cannot tell the input channels: no convolution"))
                })?;
                let w = self.blob(conv, 0, &format!("layer '{}'", conv.name))?;
                let group = conv.conv.map_or(1, |p| p.group()) as u64;
                let c = w.shape.get(1).copied().unwrap_or(0).checked_mul(group).unwrap_or(0);
                dim_u32(c, alexnet::plan::limits::MAX_CHANNELS, "input channels")?
            }
        };
        Ok([c, hw[0], hw[1]])
    }

    /// The preprocessing overrides: the user's, else the data layer's mean and scale.
    fn preprocess_options(&self) -> Options {
        let mut options = self.options.clone();
        let p = &mut options.preprocess;
        if let Some(t) = self.transform {
            if p.mean.is_none() {
                match t.mean_value[..] {
                    [m] => p.mean = Some([m; 3]),
                    [b, g, r] => p.mean = Some([b, g, r]),
                    _ => {}
                }
            }
            // Caffe subtracts the mean, then multiplies by `scale`: a std of 1/scale.
            if let (None, Some(s)) = (p.std, t.scale) {
                if s.is_finite() && s > 0.0 {
                    p.std = Some([1.0 / s; 3]);
                }
            }
        }
        options
    }

    /// Blob `index` of the layer named like `l`, from the caffemodel.
    fn blob(&self, l: &CaffeLayer<'_>, index: usize, ctx: &str) -> Result<Tensor> {
        let source =
            self.weights.iter().find(|w| w.name == l.name && !w.blobs.is_empty()).map(|w| w.blobs).unwrap_or(l.blobs);
        let blob = source.get(index).ok_or_else(|| ConvertError::MissingTensor {
            name: format!("{}.blobs[{index}]", l.name),
            context: format!("{ctx}: the caffemodel has {} blobs for it", source.len()),
        })?;
        let mut t = blob_tensor(blob, &format!("{}.blobs[{index}]", l.name))?;
        t.name = format!("{}.blobs[{index}]", l.name);
        Ok(t)
    }

    fn convolution(&self, b: &mut NetBuilder, l: &CaffeLayer<'_>, ctx: &str) -> Result<()> {
        let default = pb::ConvolutionParameter::default();
        let p = l.conv.unwrap_or(&default);
        if p.axis.unwrap_or(1) != 1 {
            return Err(ConvertError::Caffe(format!("{ctx}: convolution over axis {}", p.axis())));
        }
        if p.dilation.iter().any(|&d| d != 1) {
            return Err(ConvertError::Caffe(format!("{ctx}: dilated convolution ({:?})", p.dilation)));
        }
        let kernel = pair(&p.kernel_size, p.kernel_h, p.kernel_w, None, ctx, "kernel")?;
        let stride = pair(&p.stride, p.stride_h, p.stride_w, Some(1), ctx, "stride")?;
        let pad = pair(&p.pad, p.pad_h, p.pad_w, Some(0), ctx, "pad")?;
        let weight = self.blob(l, 0, ctx)?;
        // Blobs old and new are [out, in/groups, kh, kw]; check the kernel agrees.
        let out = p.num_output();
        if weight.shape.len() != 4
            || weight.shape[0] != out as u64
            || weight.shape[2] != kernel[0] as u64
            || weight.shape[3] != kernel[1] as u64
        {
            return Err(ConvertError::BadShape(format!(
                "{ctx}: weight {} does not match num_output {out} and kernel {}x{}",
                weight.shape_str(),
                kernel[0],
                kernel[1]
            )));
        }
        let bias = if p.bias_term() { Some(self.bias(l, out, ctx)?) } else { None };
        let params = ConvParams {
            stride,
            pads: Pads { top: pad[0], left: pad[1], bottom: pad[0], right: pad[1] },
            groups: p.group(),
        };
        b.conv(ctx, weight, bias, params, false)
    }

    fn inner_product(&self, b: &mut NetBuilder, l: &CaffeLayer<'_>, ctx: &str) -> Result<()> {
        let default = pb::InnerProductParameter::default();
        let p = l.ip.unwrap_or(&default);
        if p.axis.unwrap_or(1) != 1 {
            return Err(ConvertError::Caffe(format!("{ctx}: inner product over axis {}", p.axis())));
        }
        if matches!(b.shape(), Shape::Spatial { .. }) {
            b.push(Layer::Flatten, ctx)?;
        }
        let out = p.num_output() as u64;
        let mut weight = self.blob(l, 0, ctx)?;
        // `[out, in]`, legacy `[1, 1, out, in]`; `transpose` stores `[in, out]`.
        let n = weight.data.len() as u64;
        let inputs = if out > 0 && n.is_multiple_of(out) { n / out } else { 0 };
        let want = if p.transpose() { [inputs, out] } else { [out, inputs] };
        if inputs == 0 || !(weight.shape == want || weight.shape == [1, 1, want[0], want[1]]) {
            return Err(ConvertError::BadShape(format!(
                "{ctx}: weight {} is not {} with num_output {out}",
                weight.shape_str(),
                if p.transpose() { "[inputs, num_output] (transpose)" } else { "[num_output, inputs]" }
            )));
        }
        if p.transpose() {
            weight.data = transpose(&weight.data, inputs as usize, out as usize);
        }
        weight.shape = vec![out, inputs];
        let bias = if p.bias_term() { Some(self.bias(l, out as u32, ctx)?) } else { None };
        b.linear(ctx, weight, bias, false)
    }

    /// Blob 1: the bias, `[out]` or legacy `[1, 1, 1, out]`.
    fn bias(&self, l: &CaffeLayer<'_>, out: u32, ctx: &str) -> Result<Tensor> {
        let mut t = self.blob(l, 1, ctx)?;
        if t.data.len() != out as usize || t.shape.iter().filter(|&&d| d != 1).count() > 1 {
            return Err(ConvertError::BadShape(format!("{ctx}: bias {} does not hold {out} values", t.shape_str())));
        }
        t.shape = vec![out as u64];
        Ok(t)
    }
}

fn first<'s>(v: &'s [String], ctx: &str, what: &str) -> Result<&'s String> {
    v.first().ok_or_else(|| ConvertError::Caffe(format!("{ctx} has no {what} blob")))
}

/// `[C, H, W]` from an `[N, C, H, W]` input declaration.
fn input_dims(d: &[i64], ctx: &str) -> Result<[u32; 3]> {
    use alexnet::plan::limits::{MAX_CHANNELS, MAX_SIDE};
    let [_, c, h, w] = d[..] else {
        return Err(ConvertError::Caffe(format!("{ctx}: input shape {d:?} is not [N, C, H, W]")));
    };
    let dim = |v: i64, cap, what| dim_u32(u64::try_from(v).unwrap_or(0), cap, &format!("{ctx}: {what}"));
    Ok([dim(c, MAX_CHANNELS, "channels")?, dim(h, MAX_SIDE, "height")?, dim(w, MAX_SIDE, "width")?])
}

/// A (height, width) pair from Caffe's spellings: a repeated field of one value (both)
/// or two (height, width), or explicit `_h`/`_w` fields; `default` when all are absent.
fn pair(rep: &[u32], h: Option<u32>, w: Option<u32>, default: Option<u32>, ctx: &str, what: &str) -> Result<[u32; 2]> {
    let v = match (rep, h, w) {
        ([], Some(h), Some(w)) => Some([h, w]),
        ([], None, None) => default.map(|d| [d, d]),
        ([a], None, None) => Some([*a, *a]),
        ([a, b], None, None) => Some([*a, *b]),
        _ => None,
    };
    v.ok_or_else(|| {
        ConvertError::Caffe(format!("{ctx}: {what} must be one or two values, or both {what}_h and {what}_w"))
    })
}

/// A Caffe blob as a tensor: shape from `shape` or the legacy num/channels/height/width,
/// data from `data` or `double_data`, and the two must agree.
fn blob_tensor(blob: &pb::BlobProto, name: &str) -> Result<Tensor> {
    let bad = |reason: String| ConvertError::BadTensor { name: name.into(), reason };
    let shape: Vec<u64> = match &blob.shape {
        Some(s) => s
            .dim
            .iter()
            .map(|&d| u64::try_from(d).map_err(|_| bad(format!("negative dimension {d}"))))
            .collect::<Result<_>>()?,
        None => [blob.num(), blob.channels(), blob.height(), blob.width()]
            .iter()
            .map(|&d| u64::try_from(d).map_err(|_| bad(format!("negative dimension {d}"))))
            .collect::<Result<_>>()?,
    };
    let data: Vec<f32> =
        if !blob.data.is_empty() { blob.data.clone() } else { blob.double_data.iter().map(|&v| v as f32).collect() };
    let count = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
    if count != Some(data.len() as u64) {
        return Err(bad(format!("shape {shape:?} but {} values", data.len())));
    }
    Ok(Tensor { name: name.into(), shape, data })
}

fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    out
}

/// Caffe's pooled size along one side (`pooling_layer.cpp`): ceil by default, and with
/// padding the last window must start inside the image.
fn caffe_pooled(input: u64, kernel: u64, stride: u64, pad: u64, ceil: bool) -> Option<u64> {
    let span = (input + 2 * pad).checked_sub(kernel)?;
    let mut out = if ceil { span.div_ceil(stride) } else { span / stride } + 1;
    if pad > 0 && (out - 1) * stride >= input + pad {
        out -= 1;
    }
    Some(out)
}

fn pooling(b: &mut NetBuilder, l: &CaffeLayer<'_>, ctx: &str) -> Result<()> {
    use pb::pooling_parameter::{PoolMethod, RoundMode};
    let default = pb::PoolingParameter::default();
    let p = l.pool.unwrap_or(&default);
    let Shape::Spatial { h, w, .. } = b.shape() else {
        return Err(ConvertError::Caffe(format!("{ctx}: pooling a flat activation {}", b.shape())));
    };
    let one = |v: Option<u32>| v.into_iter().collect::<Vec<u32>>();
    let (kernel, pad, stride) = if p.global_pooling() {
        if p.pad() != 0 || p.pad_h() != 0 || p.pad_w() != 0 || p.stride.unwrap_or(1) != 1 {
            return Err(ConvertError::Caffe(format!("{ctx}: global pooling takes no pad or stride")));
        }
        let side = |v: usize| dim_u32(v as u64, alexnet::plan::limits::MAX_KERNEL, &format!("{ctx}: global kernel"));
        ([side(h)?, side(w)?], [0, 0], [1, 1])
    } else {
        (
            pair(&one(p.kernel_size), p.kernel_h, p.kernel_w, None, ctx, "kernel_size")?,
            pair(&one(p.pad), p.pad_h, p.pad_w, Some(0), ctx, "pad")?,
            pair(&one(p.stride), p.stride_h, p.stride_w, Some(1), ctx, "stride")?,
        )
    };
    let round = p.round_mode.unwrap_or(0);
    let ceil = match RoundMode::try_from(round) {
        Ok(RoundMode::Ceil) => true,
        Ok(RoundMode::Floor) => false,
        Err(_) => return Err(ConvertError::Caffe(format!("{ctx}: unknown round_mode {round}"))),
    };
    let pads = Pads { top: pad[0], left: pad[1], bottom: pad[0], right: pad[1] };
    let method = p.pool.unwrap_or(0);
    let layer = match PoolMethod::try_from(method) {
        Ok(PoolMethod::Max) => Layer::MaxPool(MaxPool { kernel, stride, pads, ceil_mode: ceil }),
        // Caffe divides by the window clipped to the padded image.
        Ok(PoolMethod::Ave) => {
            Layer::AvgPool(AvgPool { kernel, stride, pads, ceil_mode: ceil, count_include_pad: true })
        }
        Ok(PoolMethod::Stochastic) => {
            return Err(ConvertError::Caffe(format!("{ctx}: stochastic pooling")));
        }
        Err(_) => return Err(ConvertError::Caffe(format!("{ctx}: unknown pooling method {method}"))),
    };
    let caffe = |i: usize, a: usize| {
        let (k, s, p) = (kernel[a] as u64, stride[a].max(1) as u64, pad[a] as u64);
        caffe_pooled(i as u64, k, s, p, ceil)
    };
    let expected = (caffe(h, 0), caffe(w, 1));
    let got = b.push(layer, ctx)?;
    if let (Shape::Spatial { h: oh, w: ow, .. }, (Some(eh), Some(ew))) = (got, expected) {
        if (oh as u64, ow as u64) != (eh, ew) {
            return Err(ConvertError::Caffe(format!(
                "{ctx}: Caffe pools {h}x{w} to {eh}x{ew} here, a window arithmetic the plan cannot \
                 express (it gives {oh}x{ow})"
            )));
        }
    }
    Ok(())
}

fn lrn(b: &mut NetBuilder, l: &CaffeLayer<'_>, ctx: &str) -> Result<()> {
    use pb::lrn_parameter::NormRegion;
    let default = pb::LrnParameter::default();
    let p = l.lrn.unwrap_or(&default);
    let size = p.local_size();
    if size.is_multiple_of(2) {
        // Caffe itself refuses even sizes.
        return Err(ConvertError::Caffe(format!("{ctx}: local_size {size} is even")));
    }
    let region = p.norm_region.unwrap_or(0);
    let layer = match NormRegion::try_from(region) {
        Ok(NormRegion::AcrossChannels) => Layer::Lrn(Lrn { size, alpha: p.alpha(), beta: p.beta(), bias: p.k() }),
        // Caffe's within-channel form ignores `k`: the constant is 1.
        Ok(NormRegion::WithinChannel) => {
            Layer::LrnWithin(LrnWithin { size, alpha: p.alpha(), beta: p.beta(), bias: 1.0 })
        }
        Err(_) => return Err(ConvertError::Caffe(format!("{ctx}: unknown norm_region {region}"))),
    };
    b.push(layer, ctx)?;
    Ok(())
}

/// The first line of a multi-line message.
fn one_line(s: &str) -> String {
    s.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}
