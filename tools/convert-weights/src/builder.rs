//! The network under construction, shared by the ONNX and state-dict importers.
//!
//! An importer walks its source in execution order and pushes layers here. The builder
//! tracks the activation shape after every layer, checks each weight against it (conv
//! input channels per group, linear input features) before accepting the layer, and
//! names layers only at the end, once the number of convolutions and linears is known:
//! `conv1..conv5` and `fc6..fc8` for the classic 5 + 3 AlexNet, `conv{i}` / `fc{i}`
//! otherwise.
//!
//! Shapes come from the library's own [`Plan::shapes`] on the layers pushed so far, so the
//! converter and the runtime can never disagree on an output size (ceil mode, asymmetric
//! padding) and an impossible layer is refused at the node that introduces it.

use alexnet::plan::{limits, Conv, Layer, Linear, Pads, Plan, Preprocess, Shape};
use alexnet::weights::OwnedTensor;

use crate::error::{ConvertError, Result};

/// A dense f32 tensor read from an input file, with the name it had there.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// Name in the source file (initializer name, state-dict key).
    pub name: String,
    /// Dimensions.
    pub shape: Vec<u64>,
    /// Values, row-major; `data.len()` is the product of `shape`.
    pub data: Vec<f32>,
}

impl Tensor {
    /// The shape as a string for messages, e.g. `[96, 3, 11, 11]`.
    pub fn shape_str(&self) -> String {
        format!("{:?}", self.shape)
    }
}

/// Hyperparameters of a convolution whose weight supplies the channel counts and kernel.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvParams {
    /// Stride (vertical, horizontal).
    pub stride: [u32; 2],
    /// Zero padding.
    pub pads: Pads,
    /// Channel groups.
    pub groups: u32,
}

/// Weight and bias of one conv or linear layer, in plan order.
struct Params {
    weight_shape: Vec<u64>,
    weight: Vec<f32>,
    bias: Vec<f32>,
    /// Where the weight and the bias came from in the source (`-` for a made-up zero bias).
    sources: [String; 2],
    /// A quantized model's int8 input parameters `[scale, zero]` for this layer.
    input_quant: Option<[f32; 2]>,
    /// A quantized model's per-output-channel weight scales.
    scales: Option<Vec<f32>>,
}

impl Params {
    /// A float layer's parameters (no quantization yet).
    fn new(weight: Tensor, bias: Vec<f32>, sources: [String; 2]) -> Params {
        Params { weight_shape: weight.shape, weight: weight.data, bias, sources, input_quant: None, scales: None }
    }
}

/// Layers pushed so far, their parameters and the current activation shape.
pub(crate) struct NetBuilder {
    input: [u32; 3],
    layers: Vec<Layer>,
    params: Vec<Params>,
    shape: Shape,
}

/// Convert a dimension to `u32`, refusing zero and values above `cap`.
pub(crate) fn dim_u32(v: u64, cap: u32, what: &str) -> Result<u32> {
    match u32::try_from(v) {
        Ok(d) if d >= 1 && d <= cap => Ok(d),
        _ => Err(ConvertError::BadShape(format!("{what} is {v}, outside 1..={cap}"))),
    }
}

impl NetBuilder {
    /// Start a network on one image of `[channels, height, width]`.
    pub fn new(input: [u32; 3]) -> Result<NetBuilder> {
        let [c, h, w] = input;
        dim_u32(c as u64, limits::MAX_CHANNELS, "input channels")?;
        dim_u32(h as u64, limits::MAX_SIDE, "input height")?;
        dim_u32(w as u64, limits::MAX_SIDE, "input width")?;
        Ok(NetBuilder {
            input,
            layers: Vec::new(),
            params: Vec::new(),
            shape: Shape::Spatial { c: c as usize, h: h as usize, w: w as usize },
        })
    }

    /// The activation shape after the last layer pushed.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// The layers pushed so far (conv and linear names are still empty).
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// Append a layer after checking it against the current shape; `context` (e.g.
    /// `node 'pool1' (MaxPool)`) prefixes any error.
    pub fn push(&mut self, layer: Layer, context: &str) -> Result<Shape> {
        let mut layers = self.layers.clone();
        layers.push(layer);
        let shape = self.shape_after(&layers, context)?;
        self.layers = layers;
        self.shape = shape;
        Ok(shape)
    }

    /// Output shape of the last of `layers`, as the runtime computes it.
    fn shape_after(&self, layers: &[Layer], context: &str) -> Result<Shape> {
        let n = layers.len();
        let mut plan = Plan {
            input: self.input,
            preprocess: Preprocess::torchvision(),
            layers: layers.to_vec(),
            labels: Vec::new(),
        };
        // A plan must end flat; a trailing Flatten lets a partial plan be checked.
        plan.layers.push(Layer::Flatten);
        match plan.shapes() {
            Ok(shapes) => shapes.get(n).copied().ok_or_else(|| ConvertError::BadShape(format!("{context}: no shape"))),
            Err(alexnet::Error::InvalidLayer { reason, .. }) => {
                Err(ConvertError::BadShape(format!("{context}: {reason} (input {})", self.shape)))
            }
            Err(e) => Err(ConvertError::BadShape(format!("{context}: {e}"))),
        }
    }

    /// Append a convolution. `weight` is `[out, in/groups, kh, kw]`; `bias` is `[out]` or
    /// absent (zeros).
    pub fn conv(
        &mut self,
        context: &str,
        weight: Tensor,
        bias: Option<Tensor>,
        p: ConvParams,
        relu: bool,
    ) -> Result<()> {
        let Shape::Spatial { c, .. } = self.shape else {
            return Err(ConvertError::BadShape(format!(
                "{context}: a convolution needs a [C, H, W] input, the activation is {}",
                self.shape
            )));
        };
        let [o, cg, kh, kw] = weight.shape[..] else {
            return Err(ConvertError::BadShape(format!(
                "{context}: weight '{}' has shape {}, a 2-D convolution needs [out, in/groups, kh, kw]",
                weight.name,
                weight.shape_str()
            )));
        };
        let groups = p.groups as u64;
        if groups == 0 || cg.checked_mul(groups) != Some(c as u64) {
            return Err(ConvertError::BadShape(format!(
                "{context}: weight '{}' has shape {}: {cg} input channels per group x {groups} groups \
                 does not match the {c} channels of the activation {}",
                weight.name,
                weight.shape_str(),
                self.shape
            )));
        }
        let out = dim_u32(o, limits::MAX_CHANNELS, &format!("{context}: output channels"))?;
        let kernel = [
            dim_u32(kh, limits::MAX_KERNEL, &format!("{context}: kernel height"))?,
            dim_u32(kw, limits::MAX_KERNEL, &format!("{context}: kernel width"))?,
        ];
        let sources = [weight.name.clone(), bias.as_ref().map_or("-".into(), |b| b.name.clone())];
        let bias = self.bias(context, bias, o)?;
        let layer = Layer::Conv(Conv {
            name: String::new(),
            out_channels: out,
            kernel,
            stride: p.stride,
            pads: p.pads,
            groups: p.groups,
            relu,
        });
        self.push(layer, context)?;
        self.params.push(Params::new(weight, bias, sources));
        Ok(())
    }

    /// Append a fully connected layer. `weight` is `[out, in]`; `bias` is `[out]` or absent.
    pub fn linear(&mut self, context: &str, weight: Tensor, bias: Option<Tensor>, relu: bool) -> Result<()> {
        let Shape::Flat(n) = self.shape else {
            return Err(ConvertError::BadShape(format!(
                "{context}: a linear layer needs a flat input, the activation is {} (missing Flatten?)",
                self.shape
            )));
        };
        let [o, k] = weight.shape[..] else {
            return Err(ConvertError::BadShape(format!(
                "{context}: weight '{}' has shape {}, a linear layer needs [out, in]",
                weight.name,
                weight.shape_str()
            )));
        };
        if k != n as u64 {
            return Err(ConvertError::BadShape(format!(
                "{context}: weight '{}' (as [out, in]: [{o}, {k}]) takes {k} input features, the activation has {n}",
                weight.name
            )));
        }
        let out = dim_u32(o, limits::MAX_CHANNELS * 16, &format!("{context}: output features"))?;
        let sources = [weight.name.clone(), bias.as_ref().map_or("-".into(), |b| b.name.clone())];
        let bias = self.bias(context, bias, o)?;
        self.push(Layer::Linear(Linear { name: String::new(), out_features: out, relu }), context)?;
        self.params.push(Params::new(weight, bias, sources));
        Ok(())
    }

    /// Check a bias against `out` outputs, or make zeros when there is none.
    fn bias(&self, context: &str, bias: Option<Tensor>, out: u64) -> Result<Vec<f32>> {
        match bias {
            None => {
                // `out` is a dimension of a weight whose data is in memory, so it is small.
                let n =
                    usize::try_from(out).map_err(|_| ConvertError::BadShape(format!("{context}: {out} outputs")))?;
                Ok(vec![0.0; n])
            }
            Some(b) if b.shape == [out] => Ok(b.data),
            Some(b) => Err(ConvertError::BadShape(format!(
                "{context}: bias '{}' has shape {}, the layer has {out} outputs",
                b.name,
                b.shape_str()
            ))),
        }
    }

    /// Fuse a ReLU into the last layer when it is a conv or linear without one yet.
    /// Returns false when the ReLU must stay a layer of its own.
    pub fn fuse_relu(&mut self) -> bool {
        match self.layers.last_mut() {
            Some(Layer::Conv(Conv { relu, .. })) | Some(Layer::Linear(Linear { relu, .. })) if !*relu => {
                *relu = true;
                true
            }
            _ => false,
        }
    }

    /// Whether the activation can hold no negative value: the nearest layer back that
    /// decides it is a ReLU, a softmax, or a conv/linear with a fused ReLU (pools, LRN
    /// and flatten keep the sign of what they read).
    pub fn nonnegative(&self) -> bool {
        for layer in self.layers.iter().rev() {
            match layer {
                Layer::Relu | Layer::Softmax => return true,
                Layer::Conv(Conv { relu, .. }) | Layer::Linear(Linear { relu, .. }) => return *relu,
                Layer::MaxPool(_)
                | Layer::Lrn(_)
                | Layer::LrnWithin(_)
                | Layer::Flatten
                | Layer::AvgPool(_)
                | Layer::AdaptiveAvgPool(_) => {}
            }
        }
        false
    }

    /// Outputs of the last conv or linear layer pushed (0 when there is none).
    pub fn last_outputs(&self) -> usize {
        self.params.last().map_or(0, |p| p.bias.len())
    }

    /// Attach a quantized model's int8 input parameters and weight scales to the last
    /// conv or linear layer pushed.
    pub fn set_quant(&mut self, input_quant: Option<[f32; 2]>, scales: Option<Vec<f32>>) {
        if let Some(p) = self.params.last_mut() {
            (p.input_quant, p.scales) = (input_quant, scales);
        }
    }

    /// The bias of the last layer when it is a conv or linear layer whose output is still
    /// the raw affine result (no ReLU fused), so a following `Add` may fold into it.
    pub fn last_bias(&mut self) -> Option<&mut Vec<f32>> {
        match self.layers.last() {
            Some(Layer::Linear(Linear { relu: false, .. })) | Some(Layer::Conv(Conv { relu: false, .. })) => {
                self.params.last_mut().map(|p| &mut p.bias)
            }
            _ => None,
        }
    }

    /// Name the layers, and return the plan (without labels), its tensors, and where each
    /// tensor came from in the source.
    pub fn finish(self, preprocess: Preprocess) -> Result<(Plan, Vec<OwnedTensor>, Vec<String>)> {
        let convs = self.layers.iter().filter(|l| matches!(l, Layer::Conv(_))).count();
        let linears = self.layers.iter().filter(|l| matches!(l, Layer::Linear(_))).count();
        // The classic AlexNet numbers its FC layers after the five convolutions.
        let fc_base = if convs == 5 && linears == 3 { 5 } else { 0 };
        let (mut ci, mut li) = (0, 0);
        let mut layers = self.layers;
        let mut names = Vec::with_capacity(self.params.len());
        for layer in &mut layers {
            match layer {
                Layer::Conv(cv) => {
                    ci += 1;
                    cv.name = format!("conv{ci}");
                    names.push(cv.name.clone());
                }
                Layer::Linear(l) => {
                    li += 1;
                    l.name = format!("fc{}", fc_base + li);
                    names.push(l.name.clone());
                }
                _ => {}
            }
        }
        let mut tensors = Vec::with_capacity(2 * self.params.len());
        let mut sources = Vec::with_capacity(2 * self.params.len());
        for (name, p) in names.into_iter().zip(self.params) {
            let out = p.bias.len() as u64;
            sources.extend(p.sources);
            tensors.push(OwnedTensor { name: format!("{name}.weight"), shape: p.weight_shape, data: p.weight });
            tensors.push(OwnedTensor { name: format!("{name}.bias"), shape: vec![out], data: p.bias });
            if let Some(scales) = p.scales {
                let name = alexnet::weights::format::scale_name(&format!("{name}.weight"));
                tensors.push(OwnedTensor { name, shape: vec![out], data: scales });
                sources.push(format!("{} (scales)", sources[sources.len() - 2]));
            }
            if let Some(q) = p.input_quant {
                let name = alexnet::weights::format::input_quant_name(&format!("{name}.weight"));
                tensors.push(OwnedTensor { name, shape: vec![2], data: q.to_vec() });
                sources.push("QuantizeLinear".into());
            }
        }
        let plan = Plan { input: self.input, preprocess, layers, labels: Vec::new() };
        Ok((plan, tensors, sources))
    }
}
