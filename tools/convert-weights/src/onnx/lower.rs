//! Per-op lowering: each supported op's inputs and attributes checked and mapped onto
//! the `NetBuilder` (a new layer, a fusion into the layer before, or nothing for the
//! ops that are identities here).

use alexnet::plan::{AdaptiveAvgPool, AvgPool, Layer, Lrn, MaxPool, Pads, Shape};

use super::attrs::{input, Attrs, Node};
use super::graph::Importer;
use super::tensor::{as_matrix, broadcast_bias, transpose};
use crate::builder::ConvParams;
use crate::error::{ConvertError, Result};

impl Importer<'_> {
    pub(super) fn conv(&mut self, n: &Node) -> Result<()> {
        n.arity(2, 3)?;
        let a = n.attrs(&["auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"])?;
        let weight = self.constant_f32(&n.node.input[1], &format!("weight of {}", n.ctx))?;
        let bias = match input(n.node, 2) {
            Some(b) => Some(self.constant_f32(b, &format!("bias of {}", n.ctx))?),
            None => None,
        };
        let kernel = match weight.shape[..] {
            [_, _, kh, kw] => [kh, kw],
            _ => {
                return Err(ConvertError::BadShape(format!(
                    "{}: weight '{}' has shape {}, only 2-D convolutions ([out, in/groups, kh, kw]) are supported",
                    n.ctx,
                    weight.name,
                    weight.shape_str()
                )))
            }
        };
        if let Some(ks) = a.ints("kernel_shape")? {
            if ks.len() != 2 || ks[0] as u64 != kernel[0] || ks[1] as u64 != kernel[1] || ks.iter().any(|&k| k < 1) {
                return Err(a.bad("kernel_shape", format!("{ks:?} disagrees with the weight's kernel {kernel:?}")));
            }
        }
        let kernel = [u32::try_from(kernel[0]).unwrap_or(u32::MAX), u32::try_from(kernel[1]).unwrap_or(u32::MAX)];
        let stride = a.pair("strides")?;
        if a.pair("dilations")? != [1, 1] {
            return Err(a.bad("dilations", "only dilation 1 is supported".into()));
        }
        let group = a.int("group", Some(1))?;
        let groups = u32::try_from(group).ok().filter(|&g| g > 0).ok_or_else(|| a.bad("group", format!("{group}")))?;
        let pads = self.window_pads(&a, kernel, stride)?;
        self.net.conv(n.ctx, weight, bias, ConvParams { stride, pads, groups }, false)
    }

    /// `Cast` of the activation to a floating-point type (an fp16 model's casts around
    /// its fp16 layers): dropped, the runtime computing in f32 throughout. What the fp16
    /// rounding would have changed is the whole difference from the model's own results.
    pub(super) fn cast(&mut self, n: &Node) -> Result<()> {
        use crate::onnx_proto::data_type;
        n.arity(1, 1)?;
        let a = n.attrs(&["to", "saturate"])?;
        let to = a.int("to", None)?;
        let floats = [data_type::FLOAT, data_type::FLOAT16, data_type::DOUBLE, data_type::BFLOAT16];
        if !floats.contains(&(to as i32)) || i32::try_from(to).is_err() {
            return Err(a.bad("to", format!("a cast of the activation to type {to}; only to float types")));
        }
        Ok(())
    }

    /// `Relu`: fused into the conv/linear right before it when there is one.
    pub(super) fn relu(&mut self, n: &Node) -> Result<()> {
        n.arity(1, 1)?;
        n.attrs(&["consumed_inputs"])?;
        if !self.net.fuse_relu() {
            self.net.push(Layer::Relu, n.ctx)?;
        }
        Ok(())
    }

    pub(super) fn maxpool(&mut self, n: &Node) -> Result<()> {
        n.arity(1, 1)?;
        let a = n.attrs(&["auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "storage_order", "strides"])?;
        let kernel = a.pair_required("kernel_shape")?;
        let stride = a.pair("strides")?;
        if a.pair("dilations")? != [1, 1] {
            return Err(a.bad("dilations", "only dilation 1 is supported".into()));
        }
        // storage_order only affects the Indices output, which must be unused.
        a.int("storage_order", Some(0))?;
        let ceil_mode = match a.int("ceil_mode", Some(0))? {
            0 => false,
            1 => true,
            v => return Err(a.bad("ceil_mode", format!("{v}"))),
        };
        let pads = self.window_pads(&a, kernel, stride)?;
        self.net.push(Layer::MaxPool(MaxPool { kernel, stride, pads, ceil_mode }), n.ctx)?;
        Ok(())
    }

    pub(super) fn lrn(&mut self, n: &Node) -> Result<()> {
        n.arity(1, 1)?;
        let a = n.attrs(&["size", "alpha", "beta", "bias"])?;
        let size = a.int("size", None)?;
        let size = u32::try_from(size).ok().filter(|&s| s > 0).ok_or_else(|| a.bad("size", format!("{size}")))?;
        let lrn =
            Lrn { size, alpha: a.float("alpha", 1e-4)?, beta: a.float("beta", 0.75)?, bias: a.float("bias", 1.0)? };
        self.net.push(Layer::Lrn(lrn), n.ctx)?;
        Ok(())
    }

    /// `AveragePool`: an identity (1x1, stride 1, no padding) is dropped; any other is an
    /// average-pool layer, with ONNX's `count_include_pad` and `ceil_mode`.
    pub(super) fn average_pool(&mut self, n: &Node) -> Result<()> {
        n.arity(1, 1)?;
        let a =
            n.attrs(&["auto_pad", "ceil_mode", "count_include_pad", "dilations", "kernel_shape", "pads", "strides"])?;
        let kernel = a.pair_required("kernel_shape")?;
        let stride = a.pair("strides")?;
        if a.pair("dilations")? != [1, 1] {
            return Err(a.bad("dilations", "only dilation 1 is supported".into()));
        }
        let flag = |name: &str| -> Result<bool> {
            match a.int(name, Some(0))? {
                0 => Ok(false),
                1 => Ok(true),
                v => Err(a.bad(name, format!("{v}"))),
            }
        };
        let (ceil_mode, count_include_pad) = (flag("ceil_mode")?, flag("count_include_pad")?);
        let pads = self.window_pads(&a, kernel, stride)?;
        if !matches!(self.net.shape(), Shape::Spatial { .. }) {
            return Err(n.unsupported(format!("an average pool needs a [C, H, W] input, found {}", self.net.shape())));
        }
        if kernel == [1, 1] && stride == [1, 1] && pads == Pads::default() {
            return Ok(());
        }
        self.net.push(Layer::AvgPool(AvgPool { kernel, stride, pads, ceil_mode, count_include_pad }), n.ctx)?;
        Ok(())
    }

    pub(super) fn dropout(&mut self, n: &Node) -> Result<()> {
        n.arity(1, 3)?;
        n.attrs(&["ratio", "seed", "is_test", "consumed_inputs"])?;
        // Opset 12+: a constant true `training_mode` would make the op random.
        if let Some(mode) = input(n.node, 2) {
            let (_, v) = self.constant_bool_or_int(mode, n.ctx)?;
            if v.iter().any(|&x| x != 0) {
                return Err(n.unsupported("training_mode is true".into()));
            }
        }
        Ok(())
    }

    /// `Identity`: nothing to lower.
    pub(super) fn identity(&mut self, n: &Node) -> Result<()> {
        n.arity(1, 1)?;
        n.attrs(&[])?;
        Ok(())
    }

    /// `GlobalAveragePool`: an adaptive average pool to 1x1 (dropped over a 1x1 map,
    /// where it is an identity).
    pub(super) fn global_average_pool(&mut self, n: &Node) -> Result<()> {
        n.arity(1, 1)?;
        n.attrs(&[])?;
        match self.net.shape() {
            Shape::Spatial { h: 1, w: 1, .. } => Ok(()),
            Shape::Spatial { .. } => {
                self.net.push(Layer::AdaptiveAvgPool(AdaptiveAvgPool { out: [1, 1] }), n.ctx).map(|_| ())
            }
            shape => Err(n.unsupported(format!("a global pool needs a [C, H, W] input, found {shape}"))),
        }
    }

    pub(super) fn flatten(&mut self, n: &Node) -> Result<()> {
        n.arity(1, 1)?;
        let a = n.attrs(&["axis"])?;
        let axis = a.int("axis", Some(1))?;
        match self.net.shape() {
            Shape::Spatial { .. } if axis == 1 || axis == -3 => {
                self.net.push(Layer::Flatten, n.ctx)?;
            }
            Shape::Flat(_) if axis == 1 || axis == -1 => {}
            shape => {
                return Err(
                    a.bad("axis", format!("{axis} on [N, ..{shape}]; only flattening to [N, features] is supported"))
                )
            }
        }
        Ok(())
    }

    pub(super) fn reshape(&mut self, n: &Node) -> Result<()> {
        n.arity(1, 2)?;
        let a = n.attrs(&["allowzero", "shape", "consumed_inputs"])?;
        let allowzero = a.int("allowzero", Some(0))? != 0;
        // Opset 1-4 carry the target shape as an attribute, later ones as an input.
        let (dims, target) = match (input(n.node, 1), a.ints("shape")?) {
            (Some(name), None) => self.constant_i64(name, &format!("shape of {}", n.ctx))?,
            (None, Some(shape)) => (vec![shape.len() as u64], shape.to_vec()),
            _ => return Err(a.bad("shape", "need exactly one of the shape input and the shape attribute".into())),
        };
        let cur = self.net.shape();
        let features = cur.len() as i64;
        // Dimension 1 of the current activation, what a 0 in position 1 copies.
        let dim1 = match cur {
            Shape::Spatial { c, .. } => c as i64,
            Shape::Flat(f) => f as i64,
        };
        let refuse = || {
            ConvertError::BadShape(format!(
                "{}: Reshape to {target:?} (shape {dims:?}) of [N, ..{cur}]: only [N, {features}] is supported",
                n.ctx
            ))
        };
        let [first, second] = target[..] else { return Err(refuse()) };
        let second = match second {
            0 if !allowzero => dim1,
            -1 if first != -1 => features,
            v => v,
        };
        // A folded shape whose first element is the model's unknown batch size.
        let batch_first = input(n.node, 1).and_then(|t| self.marks.get(t)).is_some_and(|m| m.first() == Some(&true));
        let first_ok = match first {
            _ if batch_first => true,
            0 => !allowzero,
            -1 => true,
            v => v > 0 && self.batch.is_none_or(|b| b == v as u64),
        };
        if !first_ok || second != features {
            return Err(refuse());
        }
        if let Shape::Spatial { .. } = cur {
            self.net.push(Layer::Flatten, n.ctx)?;
        }
        Ok(())
    }

    pub(super) fn gemm(&mut self, n: &Node) -> Result<()> {
        n.arity(2, 3)?;
        let a = n.attrs(&["alpha", "beta", "transA", "transB", "broadcast"])?;
        if a.int("transA", Some(0))? != 0 {
            return Err(a.bad("transA", "a transposed activation is not supported".into()));
        }
        let trans_b = match a.int("transB", Some(0))? {
            0 => false,
            1 => true,
            v => return Err(a.bad("transB", format!("{v}"))),
        };
        a.int("broadcast", Some(0))?;
        let alpha = a.float("alpha", 1.0)?;
        let beta = a.float("beta", 1.0)?;
        let b = self.constant_f32(&n.node.input[1], &format!("B of {}", n.ctx))?;
        let mut weight = if trans_b { as_matrix(b, n.ctx)? } else { transpose(b, n.ctx)? };
        if alpha != 1.0 {
            weight.data.iter_mut().for_each(|v| *v *= alpha);
        }
        let out = weight.shape.first().copied().unwrap_or(0);
        let bias = match input(n.node, 2) {
            Some(c) => {
                let mut c = self.constant_f32(c, &format!("C of {}", n.ctx))?;
                c = broadcast_bias(c, out, n.ctx)?;
                c.data.iter_mut().for_each(|v| *v *= beta);
                Some(c)
            }
            None => None,
        };
        self.net.linear(n.ctx, weight, bias, false)
    }

    pub(super) fn matmul(&mut self, n: &Node) -> Result<()> {
        n.arity(2, 2)?;
        n.attrs(&[])?;
        let b = self.constant_f32(&n.node.input[1], &format!("B of {}", n.ctx))?;
        let weight = transpose(b, n.ctx)?;
        self.net.linear(n.ctx, weight, None, false)
    }

    pub(super) fn add(&mut self, n: &Node, data: usize) -> Result<()> {
        n.arity(2, 2)?;
        // Opset 1-6 broadcast only when asked, aligning B at `axis`; the feature axis of
        // [N, out] is where a bias goes either way.
        let a = n.attrs(&["broadcast", "axis", "consumed_inputs"])?;
        a.int("broadcast", Some(0))?;
        let axis = a.int("axis", Some(1))?;
        if axis != 1 && axis != -1 {
            return Err(a.bad("axis", format!("{axis}; a bias is added along axis 1")));
        }
        let other = &n.node.input[1 - data.min(1)];
        let mut c = self.constant_f32(other, &format!("addend of {}", n.ctx))?;
        let spatial = matches!(self.net.shape(), Shape::Spatial { .. });
        let Some(bias) = self.net.last_bias() else {
            return Err(n.unsupported(
                "Add is only supported as the bias of the Conv/Gemm/MatMul right before it (before its Relu)".into(),
            ));
        };
        // A conv bias is [C, 1, 1] or [1, C, 1, 1]: per channel once the unit axes go.
        if spatial && c.shape.len() >= 3 && c.shape.ends_with(&[1, 1]) {
            c.shape.truncate(c.shape.len() - 2);
            if c.shape.len() == 2 && c.shape[0] == 1 {
                c.shape.remove(0);
            }
        }
        let c = broadcast_bias(c, bias.len() as u64, n.ctx)?;
        bias.iter_mut().zip(&c.data).for_each(|(b, v)| *b += v);
        Ok(())
    }

    pub(super) fn softmax(&mut self, n: &Node) -> Result<()> {
        n.arity(1, 1)?;
        let a = n.attrs(&["axis"])?;
        let axis = a.int("axis", Some(-1))?;
        if axis != 1 && axis != -1 {
            return Err(a.bad("axis", format!("{axis}; only the class axis (1 or -1) is supported")));
        }
        self.net.push(Layer::Softmax, n.ctx)?;
        Ok(())
    }

    /// Explicit padding from `pads` / `auto_pad` for a window over the current activation.
    pub(super) fn window_pads(&self, a: &Attrs, kernel: [u32; 2], stride: [u32; 2]) -> Result<Pads> {
        let auto = a.string("auto_pad")?.unwrap_or("NOTSET");
        match auto {
            "NOTSET" | "" => match a.ints("pads")? {
                None => Ok(Pads::default()),
                Some(&[t, l, b, r]) => {
                    let p = |v: i64| u32::try_from(v).map_err(|_| a.bad("pads", format!("{v}")));
                    Ok(Pads { top: p(t)?, left: p(l)?, bottom: p(b)?, right: p(r)? })
                }
                Some(other) => Err(a.bad("pads", format!("{other:?}: need [top, left, bottom, right]"))),
            },
            "VALID" => Ok(Pads::default()),
            "SAME_UPPER" | "SAME_LOWER" => {
                let Shape::Spatial { h, w, .. } = self.net.shape() else {
                    return Err(a.bad("auto_pad", "needs a [C, H, W] input".into()));
                };
                // Output ceil(in / stride); the total padding is split with the odd pixel
                // at the end (SAME_UPPER) or the beginning (SAME_LOWER).
                let split = |input: usize, k: u32, s: u32| -> (u32, u32) {
                    let (input, k, s) = (input as u64, k as u64, s.max(1) as u64);
                    let out = input.div_ceil(s);
                    let total = ((out.saturating_sub(1)) * s + k).saturating_sub(input);
                    let total = u32::try_from(total).unwrap_or(u32::MAX);
                    let small = total / 2;
                    if auto == "SAME_UPPER" {
                        (small, total - small)
                    } else {
                        (total - small, small)
                    }
                };
                let (top, bottom) = split(h, kernel[0], stride[0]);
                let (left, right) = split(w, kernel[1], stride[1]);
                Ok(Pads { top, left, bottom, right })
            }
            other => Err(a.bad("auto_pad", format!("unknown value {other:?}"))),
        }
    }
}

/// The stages of the node pattern today's `torch.onnx.export` writes for an
/// `AdaptiveAvgPool2d` whose output does not divide its input: `Transpose` to
/// `[H, W, N, C]`, `GatherND` of every output's window cells (indices `[oh, kh, ow, kw, 2]`),
/// `Transpose` to `[N, C, oh, kh, ow, kw]`, `ReduceMean` over `kh` and `kw`. It is one
/// adaptive average pool when the indices are exactly its windows (all of one size).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Adaptive {
    /// After the first Transpose.
    Transposed,
    /// After a GatherND of adaptive windows to `out`.
    Gathered { out: [u32; 2] },
    /// After the second Transpose.
    Ready { out: [u32; 2] },
}

impl Importer<'_> {
    pub(super) fn transpose(&mut self, n: &Node) -> Result<()> {
        n.arity(1, 1)?;
        let a = n.attrs(&["perm"])?;
        let perm = a.ints("perm")?.unwrap_or_default();
        self.adaptive = match (self.adaptive, perm, self.net.shape()) {
            (None, [2, 3, 0, 1], Shape::Spatial { .. }) => Some(Adaptive::Transposed),
            (Some(Adaptive::Gathered { out }), [4, 5, 0, 1, 2, 3], _) => Some(Adaptive::Ready { out }),
            _ => {
                return Err(n.unsupported(format!(
                    "Transpose {perm:?} is supported only within an exported adaptive average pool"
                )))
            }
        };
        Ok(())
    }

    pub(super) fn gather_nd(&mut self, n: &Node) -> Result<()> {
        n.arity(2, 2)?;
        let a = n.attrs(&["batch_dims"])?;
        let Shape::Spatial { h, w, .. } = self.net.shape() else {
            return Err(n.unsupported("GatherND needs the pattern's transposed [C, H, W] map".into()));
        };
        if self.adaptive != Some(Adaptive::Transposed) || a.int("batch_dims", Some(0))? != 0 {
            return Err(n.unsupported("GatherND is supported only within an exported adaptive average pool".into()));
        }
        let name = input(n.node, 1).unwrap_or_default();
        let (dims, idx) = self.constant_i64(name, n.ctx)?;
        let [oh, kh, ow, kw, 2] = dims[..] else {
            return Err(n.unsupported(format!("GatherND indices of shape {dims:?}, not [oh, kh, ow, kw, 2]")));
        };
        let (oh, kh, ow, kw) = (oh as usize, kh as usize, ow as usize, kw as usize);
        // Adaptive windows: output i of n over m starts at floor(i m / n) and is ceil((i +
        // 1) m / n) - start long; the pattern needs one length per side.
        let starts = |n: usize, m: usize, k: usize| -> Option<Vec<usize>> {
            (0..n).map(|i| ((((i + 1) * m).div_ceil(n) - i * m / n) == k).then_some(i * m / n)).collect()
        };
        let (Some(ys), Some(xs)) = (starts(oh, h, kh), starts(ow, w, kw)) else {
            return Err(n.unsupported(format!("GatherND indices are not the adaptive windows of {h}x{w} to {oh}x{ow}")));
        };
        let mut at = 0;
        for &y0 in &ys {
            for ky in 0..kh {
                for &x0 in &xs {
                    for kx in 0..kw {
                        if idx[at..at + 2] != [(y0 + ky) as i64, (x0 + kx) as i64] {
                            return Err(n.unsupported(format!(
                                "GatherND indices are not the adaptive windows of {h}x{w} to {oh}x{ow}"
                            )));
                        }
                        at += 2;
                    }
                }
            }
        }
        self.adaptive = Some(Adaptive::Gathered { out: [oh as u32, ow as u32] });
        Ok(())
    }

    pub(super) fn reduce_mean(&mut self, n: &Node) -> Result<()> {
        n.arity(1, 2)?;
        let a = n.attrs(&["axes", "keepdims", "noop_with_empty_axes"])?;
        let Some(Adaptive::Ready { out }) = self.adaptive else {
            return Err(n.unsupported("ReduceMean is supported only within an exported adaptive average pool".into()));
        };
        // Opset 18 moved the axes from an attribute to an input.
        let axes: Vec<i64> = match (input(n.node, 1), a.ints("axes")?) {
            (Some(name), None) => self.constant_i64(name, n.ctx)?.1,
            (None, Some(v)) => v.to_vec(),
            _ => return Err(a.bad("axes", "need exactly one of the axes input and attribute".into())),
        };
        let mut axes: Vec<i64> = axes.iter().map(|&x| if x < 0 { x + 6 } else { x }).collect();
        axes.sort_unstable();
        if axes != [3, 5] || a.int("keepdims", Some(1))? != 0 {
            return Err(n.unsupported(format!("ReduceMean over {axes:?} is not the pattern's window axes [3, 5]")));
        }
        self.adaptive = None;
        self.net.push(Layer::AdaptiveAvgPool(AdaptiveAvgPool { out }), n.ctx)?;
        Ok(())
    }
}
