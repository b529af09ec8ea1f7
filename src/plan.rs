//! The layer plan: the network as data.
//!
//! A weight file carries its plan, so the runtime has no hard-wired network. This module
//! holds the layer vocabulary that covers every real AlexNet (the original with groups and
//! LRN in either order, CaffeNet, torchvision), the preprocessing metadata, and
//! [`Plan::shapes`], which infers every activation shape and rejects impossible
//! hyperparameters before any tensor or kernel sees them.
//!
//! Invariants established by [`Plan::validate`]: every dimension is non-zero and below the
//! caps in [`limits`]; every per-image activation size fits comfortably in `usize`; each
//! layer's input has the kind it needs (spatial for conv/pool/LRN, flat for linear).

use crate::error::{Error, Result};

/// Hard caps on plan dimensions. A file past them is refused before any allocation.
pub mod limits {
    /// Most layers in a plan.
    pub const MAX_LAYERS: usize = 256;
    /// Largest channel or feature count.
    pub const MAX_CHANNELS: u32 = 1 << 16;
    /// Largest spatial side (input or activation).
    pub const MAX_SIDE: u32 = 1 << 14;
    /// Largest kernel side.
    pub const MAX_KERNEL: u32 = 1 << 10;
    /// Largest stride.
    pub const MAX_STRIDE: u32 = 1 << 10;
    /// Largest padding on one side.
    pub const MAX_PAD: u32 = 1 << 10;
    /// Largest per-image activation (values) of any layer.
    pub const MAX_ACTIVATION: u64 = 1 << 28;
}

/// Padding on each side of a 2-D window: ONNX order is (top, left, bottom, right).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pads {
    /// Rows added above.
    pub top: u32,
    /// Columns added on the left.
    pub left: u32,
    /// Rows added below.
    pub bottom: u32,
    /// Columns added on the right.
    pub right: u32,
}

impl Pads {
    /// The same padding on every side.
    pub const fn uniform(p: u32) -> Self {
        Pads { top: p, left: p, bottom: p, right: p }
    }
}

/// A convolution with its bias, optionally followed by ReLU (fused into the store).
///
/// Tensors: `{name}.weight` of shape `[out, in/groups, kh, kw]` and `{name}.bias` `[out]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Conv {
    /// Layer name; prefixes its tensor names.
    pub name: String,
    /// Output channels.
    pub out_channels: u32,
    /// Kernel (height, width).
    pub kernel: [u32; 2],
    /// Stride (vertical, horizontal).
    pub stride: [u32; 2],
    /// Zero padding.
    pub pads: Pads,
    /// Channel groups (AlexNet's conv2/4/5 use 2).
    pub groups: u32,
    /// Apply ReLU after the bias.
    pub relu: bool,
}

/// Max pooling with explicit, possibly asymmetric, padding.
#[derive(Clone, Debug, PartialEq)]
pub struct MaxPool {
    /// Window (height, width).
    pub kernel: [u32; 2],
    /// Stride (vertical, horizontal).
    pub stride: [u32; 2],
    /// Padding; padded cells never win the max.
    pub pads: Pads,
    /// ONNX `ceil_mode`: round the output size up (the last window may hang over the end).
    pub ceil_mode: bool,
}

/// Average pooling with explicit, possibly asymmetric, padding (ONNX `AveragePool`,
/// Caffe `Pooling: AVE`). Each output is the mean of its window's cells: with
/// `count_include_pad` the divisor counts the window clipped to the padded input (PyTorch,
/// Caffe, ONNX `count_include_pad=1`); without, only the input cells it covers.
#[derive(Clone, Debug, PartialEq)]
pub struct AvgPool {
    /// Window (height, width).
    pub kernel: [u32; 2],
    /// Stride (vertical, horizontal).
    pub stride: [u32; 2],
    /// Zero padding.
    pub pads: Pads,
    /// Round the output size up (the last window may hang over the end).
    pub ceil_mode: bool,
    /// Whether padded cells count in the divisor.
    pub count_include_pad: bool,
}

/// Adaptive average pooling to a fixed output size (torchvision's
/// `AdaptiveAvgPool2d`): output `i` of `n` along a side of `m` averages input cells
/// `floor(i m / n) .. ceil((i + 1) m / n)`.
#[derive(Clone, Debug, PartialEq)]
pub struct AdaptiveAvgPool {
    /// Output (height, width).
    pub out: [u32; 2],
}

/// Local response normalisation across channels:
/// `b_c = a_c / (bias + alpha/size * sum_{c' in window(c)} a_c'^2)^beta`, with the window
/// `[c - floor((size-1)/2), c + ceil((size-1)/2)]` clipped to the channels (ONNX, Caffe).
#[derive(Clone, Debug, PartialEq)]
pub struct Lrn {
    /// Channels in the window.
    pub size: u32,
    /// Scale of the sum of squares (divided by `size`).
    pub alpha: f32,
    /// Exponent.
    pub beta: f32,
    /// Additive constant, `k` in the paper.
    pub bias: f32,
}

/// Local response normalisation within each channel (Caffe's `WITHIN_CHANNEL` region):
/// `b = a / (bias + alpha/size^2 * sum_{window} a^2)^beta`, the window the `size x size`
/// square centred on the cell (so `size` is odd), cells outside the image counting as
/// zero. Caffe's form has `bias` = 1.
#[derive(Clone, Debug, PartialEq)]
pub struct LrnWithin {
    /// Side of the square window (odd).
    pub size: u32,
    /// Scale of the sum of squares (divided by `size^2`).
    pub alpha: f32,
    /// Exponent.
    pub beta: f32,
    /// Additive constant.
    pub bias: f32,
}

/// A fully connected layer, optionally followed by ReLU.
///
/// Tensors: `{name}.weight` of shape `[out, in]` (row-major) and `{name}.bias` `[out]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Linear {
    /// Layer name; prefixes its tensor names.
    pub name: String,
    /// Output features.
    pub out_features: u32,
    /// Apply ReLU after the bias.
    pub relu: bool,
}

/// One step of the network.
#[derive(Clone, Debug, PartialEq)]
pub enum Layer {
    /// Convolution (+ bias, + optional ReLU).
    Conv(Conv),
    /// A standalone ReLU (one that follows a conv or linear is fused into it by the runtime).
    Relu,
    /// Max pooling.
    MaxPool(MaxPool),
    /// Average pooling.
    AvgPool(AvgPool),
    /// Adaptive average pooling to a fixed size.
    AdaptiveAvgPool(AdaptiveAvgPool),
    /// Local response normalisation across channels.
    Lrn(Lrn),
    /// Local response normalisation within each channel.
    LrnWithin(LrnWithin),
    /// Collapse `[C, H, W]` to `[C*H*W]`.
    Flatten,
    /// Fully connected (+ bias, + optional ReLU).
    Linear(Linear),
    /// Softmax over the features of each image.
    Softmax,
}

impl Layer {
    /// A short lower-case name of the layer kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Layer::Conv(_) => "conv",
            Layer::Relu => "relu",
            Layer::MaxPool(_) => "maxpool",
            Layer::AvgPool(_) => "avgpool",
            Layer::AdaptiveAvgPool(_) => "adaptive_avgpool",
            Layer::Lrn(_) => "lrn",
            Layer::LrnWithin(_) => "lrn_within",
            Layer::Flatten => "flatten",
            Layer::Linear(_) => "linear",
            Layer::Softmax => "softmax",
        }
    }
}

/// Channel order the network expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorOrder {
    /// Red, green, blue (torchvision).
    Rgb,
    /// Blue, green, red (Caffe, the ONNX zoo).
    Bgr,
}

/// How an image becomes the network's input, stored in the file so front ends need no flags.
///
/// Per pixel and channel `c` (in the network's channel order):
/// `x = (pixel_0_255 * scale - mean[c]) / std[c]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Preprocess {
    /// Channel order.
    pub color: ColorOrder,
    /// Multiplier applied to 0..=255 pixel values (1.0 or 1/255).
    pub scale: f32,
    /// Per-channel mean, subtracted after scaling.
    pub mean: [f32; 3],
    /// Per-channel standard deviation, divided by after the mean.
    pub std: [f32; 3],
    /// Resize so the shorter side is this long, then centre-crop; 0 resizes straight to
    /// the input size.
    pub resize_shorter: u32,
}

impl Preprocess {
    /// torchvision's ImageNet convention: RGB, /255, ImageNet mean and std, resize 256.
    pub fn torchvision() -> Self {
        Preprocess {
            color: ColorOrder::Rgb,
            scale: 1.0 / 255.0,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
            resize_shorter: 256,
        }
    }

    /// Caffe's convention (BVLC AlexNet, CaffeNet, the ONNX zoo): BGR, 0..255, mean
    /// (104, 117, 123), no std, resize 256.
    pub fn caffe() -> Self {
        Preprocess {
            color: ColorOrder::Bgr,
            scale: 1.0,
            mean: [104.0, 117.0, 123.0],
            std: [1.0, 1.0, 1.0],
            resize_shorter: 256,
        }
    }
}

/// The shape of one image's activation between two layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// `[channels, height, width]`.
    Spatial {
        /// Channels.
        c: usize,
        /// Height.
        h: usize,
        /// Width.
        w: usize,
    },
    /// `[features]`.
    Flat(usize),
}

impl Shape {
    /// Number of values per image.
    pub fn len(&self) -> usize {
        match *self {
            Shape::Spatial { c, h, w } => c * h * w,
            Shape::Flat(n) => n,
        }
    }

    /// True for a zero-sized shape (never produced by a valid plan).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shape::Spatial { c, h, w } => write!(f, "[{c}, {h}, {w}]"),
            Shape::Flat(n) => write!(f, "[{n}]"),
        }
    }
}

/// The whole network: input shape, preprocessing, layers and optional class labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Input `[channels, height, width]` of one image.
    pub input: [u32; 3],
    /// How images are turned into input tensors.
    pub preprocess: Preprocess,
    /// The layers, in order.
    pub layers: Vec<Layer>,
    /// Class names, empty or one per output.
    pub labels: Vec<String>,
}

/// A tensor a plan requires: name and shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    /// Tensor name (`{layer}.weight`, `{layer}.bias`).
    pub name: String,
    /// Required shape.
    pub shape: Vec<u64>,
    /// True for a conv or linear weight (stored at the file's precision), false for a
    /// bias (always f32).
    pub weight: bool,
}

/// Output size of a sliding window, or an error message.
fn window_out(
    input: u32,
    kernel: u32,
    stride: u32,
    pad_begin: u32,
    pad_end: u32,
    ceil: bool,
) -> std::result::Result<u32, String> {
    let padded = input as u64 + pad_begin as u64 + pad_end as u64;
    if (kernel as u64) > padded {
        return Err(format!("kernel {kernel} larger than padded input {padded}"));
    }
    let span = padded - kernel as u64;
    let stride = stride as u64;
    let mut out = if ceil { span.div_ceil(stride) } else { span / stride } + 1;
    // ONNX/PyTorch: with ceil_mode the last window must start inside the input or the
    // leading padding, never entirely in the trailing padding.
    if ceil && (out - 1) * stride >= input as u64 + pad_begin as u64 {
        out -= 1;
    }
    Ok(out as u32)
}

fn check_range(index: usize, kind: &'static str, what: &str, v: u32, lo: u32, hi: u32) -> Result<()> {
    if v < lo || v > hi {
        return Err(Error::InvalidLayer { index, kind, reason: format!("{what} = {v} outside {lo}..={hi}") });
    }
    Ok(())
}

fn check_window(index: usize, kind: &'static str, kernel: [u32; 2], stride: [u32; 2], pads: Pads) -> Result<()> {
    for k in kernel {
        check_range(index, kind, "kernel", k, 1, limits::MAX_KERNEL)?;
    }
    for s in stride {
        check_range(index, kind, "stride", s, 1, limits::MAX_STRIDE)?;
    }
    for p in [pads.top, pads.left, pads.bottom, pads.right] {
        check_range(index, kind, "padding", p, 0, limits::MAX_PAD)?;
    }
    Ok(())
}

/// LRN's constants: finite alpha >= 0, finite beta, finite bias > 0 (so the base of the
/// power is positive).
fn check_lrn_constants(alpha: f32, beta: f32, bias: f32) -> std::result::Result<(), String> {
    if alpha.is_finite() && alpha >= 0.0 && beta.is_finite() && bias.is_finite() && bias > 0.0 {
        Ok(())
    } else {
        Err(format!("alpha {alpha} beta {beta} bias {bias}: need finite alpha >= 0, finite beta, bias > 0"))
    }
}

/// The output of a max or average pool of `kernel` at `stride` with `pads` over
/// `(c, h, w)`, after checking the window; every pad must be smaller than the kernel (a
/// window wholly in the padding would have no input cell).
fn pooled(
    index: usize,
    kind: &'static str,
    (c, h, w): (u32, u32, u32),
    kernel: [u32; 2],
    stride: [u32; 2],
    p: Pads,
    ceil_mode: bool,
) -> Result<Shape> {
    let bad = |reason: String| Error::InvalidLayer { index, kind, reason };
    check_window(index, kind, kernel, stride, p)?;
    if p.top >= kernel[0] || p.bottom >= kernel[0] || p.left >= kernel[1] || p.right >= kernel[1] {
        return Err(bad("padding must be smaller than the kernel".into()));
    }
    let oh = window_out(h, kernel[0], stride[0], p.top, p.bottom, ceil_mode).map_err(bad)?;
    let ow = window_out(w, kernel[1], stride[1], p.left, p.right, ceil_mode).map_err(bad)?;
    Ok(Shape::Spatial { c: c as usize, h: oh as usize, w: ow as usize })
}

impl Plan {
    /// Check every hyperparameter and infer the activation shape after each layer.
    ///
    /// Returns `layers.len() + 1` shapes: the input's, then each layer's output.
    pub fn shapes(&self) -> Result<Vec<Shape>> {
        if self.layers.is_empty() {
            return Err(Error::Malformed("plan has no layers".into()));
        }
        if self.layers.len() > limits::MAX_LAYERS {
            return Err(Error::TooLarge {
                what: "layer count",
                value: self.layers.len() as u64,
                limit: limits::MAX_LAYERS as u64,
            });
        }
        let [c, h, w] = self.input;
        check_range(0, "input", "channels", c, 1, limits::MAX_CHANNELS)?;
        check_range(0, "input", "height", h, 1, limits::MAX_SIDE)?;
        check_range(0, "input", "width", w, 1, limits::MAX_SIDE)?;
        let mut shapes = Vec::with_capacity(self.layers.len() + 1);
        let mut cur = Shape::Spatial { c: c as usize, h: h as usize, w: w as usize };
        shapes.push(cur);
        for (index, layer) in self.layers.iter().enumerate() {
            let kind = layer.kind();
            let bad = |reason: String| Error::InvalidLayer { index, kind, reason };
            let spatial = match cur {
                Shape::Spatial { c, h, w } => Some((c as u32, h as u32, w as u32)),
                Shape::Flat(_) => None,
            };
            cur = match layer {
                Layer::Conv(conv) => {
                    let (c, h, w) = spatial.ok_or_else(|| bad("needs a [C, H, W] input".into()))?;
                    check_window(index, kind, conv.kernel, conv.stride, conv.pads)?;
                    check_range(index, kind, "out_channels", conv.out_channels, 1, limits::MAX_CHANNELS)?;
                    check_range(index, kind, "groups", conv.groups, 1, limits::MAX_CHANNELS)?;
                    if c % conv.groups != 0 || conv.out_channels % conv.groups != 0 {
                        return Err(bad(format!(
                            "groups {} do not divide input channels {c} and output channels {}",
                            conv.groups, conv.out_channels
                        )));
                    }
                    let p = conv.pads;
                    let oh = window_out(h, conv.kernel[0], conv.stride[0], p.top, p.bottom, false).map_err(bad)?;
                    let ow = window_out(w, conv.kernel[1], conv.stride[1], p.left, p.right, false).map_err(bad)?;
                    Shape::Spatial { c: conv.out_channels as usize, h: oh as usize, w: ow as usize }
                }
                Layer::MaxPool(pool) => {
                    let chw = spatial.ok_or_else(|| bad("needs a [C, H, W] input".into()))?;
                    pooled(index, kind, chw, pool.kernel, pool.stride, pool.pads, pool.ceil_mode)?
                }
                Layer::AvgPool(pool) => {
                    let chw = spatial.ok_or_else(|| bad("needs a [C, H, W] input".into()))?;
                    pooled(index, kind, chw, pool.kernel, pool.stride, pool.pads, pool.ceil_mode)?
                }
                Layer::AdaptiveAvgPool(pool) => {
                    let (c, _, _) = spatial.ok_or_else(|| bad("needs a [C, H, W] input".into()))?;
                    for (what, v) in [("output height", pool.out[0]), ("output width", pool.out[1])] {
                        check_range(index, kind, what, v, 1, limits::MAX_SIDE)?;
                    }
                    Shape::Spatial { c: c as usize, h: pool.out[0] as usize, w: pool.out[1] as usize }
                }
                Layer::Lrn(lrn) => {
                    spatial.ok_or_else(|| bad("needs a [C, H, W] input".into()))?;
                    check_range(index, kind, "size", lrn.size, 1, limits::MAX_CHANNELS)?;
                    check_lrn_constants(lrn.alpha, lrn.beta, lrn.bias).map_err(bad)?;
                    cur
                }
                Layer::LrnWithin(lrn) => {
                    spatial.ok_or_else(|| bad("needs a [C, H, W] input".into()))?;
                    check_range(index, kind, "size", lrn.size, 1, limits::MAX_KERNEL)?;
                    if lrn.size.is_multiple_of(2) {
                        return Err(bad(format!("size {} is even: the window must have a centre", lrn.size)));
                    }
                    check_lrn_constants(lrn.alpha, lrn.beta, lrn.bias).map_err(bad)?;
                    cur
                }
                Layer::Relu => cur,
                Layer::Flatten => Shape::Flat(cur.len()),
                Layer::Linear(lin) => {
                    if spatial.is_some() {
                        return Err(bad("needs a flat input (add a Flatten)".into()));
                    }
                    check_range(index, kind, "out_features", lin.out_features, 1, limits::MAX_CHANNELS * 16)?;
                    Shape::Flat(lin.out_features as usize)
                }
                Layer::Softmax => {
                    if spatial.is_some() {
                        return Err(bad("needs a flat input".into()));
                    }
                    cur
                }
            };
            let values = match cur {
                Shape::Spatial { c, h, w } => (c as u64) * (h as u64) * (w as u64),
                Shape::Flat(n) => n as u64,
            };
            if values > limits::MAX_ACTIVATION {
                return Err(Error::TooLarge { what: "activation size", value: values, limit: limits::MAX_ACTIVATION });
            }
            shapes.push(cur);
        }
        match cur {
            Shape::Flat(n) => {
                if !self.labels.is_empty() && self.labels.len() != n {
                    return Err(Error::Malformed(format!("{} labels for {n} outputs", self.labels.len())));
                }
            }
            Shape::Spatial { .. } => {
                return Err(Error::Malformed("the network must end in a flat output (Flatten/Linear)".into()))
            }
        }
        let pre = &self.preprocess;
        let ok = pre.scale.is_finite()
            && pre.scale > 0.0
            && pre.mean.iter().all(|m| m.is_finite())
            && pre.std.iter().all(|s| s.is_finite() && *s > 0.0)
            && pre.resize_shorter <= limits::MAX_SIDE;
        if !ok {
            return Err(Error::Malformed(format!("invalid preprocessing {pre:?}")));
        }
        Ok(shapes)
    }

    /// Check the plan; the shapes are returned by [`Plan::shapes`].
    pub fn validate(&self) -> Result<()> {
        self.shapes().map(|_| ())
    }

    /// The tensors this plan requires, in plan order, with their shapes.
    pub fn tensor_specs(&self) -> Result<Vec<TensorSpec>> {
        let shapes = self.shapes()?;
        let mut specs = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            match (layer, shapes[i]) {
                (Layer::Conv(conv), Shape::Spatial { c, .. }) => {
                    let o = conv.out_channels as u64;
                    let cin = c as u64 / conv.groups as u64;
                    specs.push(TensorSpec {
                        name: format!("{}.weight", conv.name),
                        shape: vec![o, cin, conv.kernel[0] as u64, conv.kernel[1] as u64],
                        weight: true,
                    });
                    specs.push(TensorSpec { name: format!("{}.bias", conv.name), shape: vec![o], weight: false });
                }
                (Layer::Linear(lin), Shape::Flat(n)) => {
                    let o = lin.out_features as u64;
                    specs.push(TensorSpec {
                        name: format!("{}.weight", lin.name),
                        shape: vec![o, n as u64],
                        weight: true,
                    });
                    specs.push(TensorSpec { name: format!("{}.bias", lin.name), shape: vec![o], weight: false });
                }
                _ => {}
            }
        }
        Ok(specs)
    }

    /// Number of classes (values per image at the output).
    pub fn num_outputs(&self) -> Result<usize> {
        Ok(self.shapes()?.last().map(Shape::len).unwrap_or(0))
    }

    /// True when the plan ends in a softmax (its output is probabilities, not logits).
    pub fn ends_in_softmax(&self) -> bool {
        matches!(self.layers.last(), Some(Layer::Softmax))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_sizes_match_onnx() {
        // AlexNet conv1 at 227: (227 - 11) / 4 + 1 = 55.
        assert_eq!(window_out(227, 11, 4, 0, 0, false), Ok(55));
        // Zoo pool1 at 224 with pads [0,0,1,1]: (54 + 1 - 3) / 2 + 1 = 27.
        assert_eq!(window_out(54, 3, 2, 0, 1, false), Ok(27));
        // ceil_mode: ceil((54 - 3) / 2) + 1 = 27.
        assert_eq!(window_out(54, 3, 2, 0, 0, true), Ok(27));
        // ceil_mode never starts a window in the trailing padding.
        assert_eq!(window_out(5, 2, 2, 0, 1, true), Ok(3));
        assert_eq!(window_out(4, 2, 2, 0, 0, true), Ok(2));
        assert!(window_out(3, 5, 1, 0, 0, false).is_err());
    }
}
