//! Quantized graphs in the QDQ form (`onnxruntime.quantization.quantize_static`, and
//! exporters that write the same): `DequantizeLinear` of constant integer weights and
//! biases, and `QuantizeLinear -> DequantizeLinear` pairs on the activation.
//!
//! - A `DequantizeLinear` whose inputs are all constants is folded to f32 values
//!   `(q - zero) * scale`. When `q` is int8 with zero points 0 (symmetric) its scales
//!   are remembered: a conv or linear layer reading those values stores the model's own
//!   codes and scales at int8 (each `q * s` divided by `s` rounds back to `q` exactly).
//! - A pair on the activation is a fake quantization: values clamped to
//!   `[(qmin - zero) * scale, (qmax - zero) * scale]` and rounded to the step. The pair's
//!   `(scale, zero)` become the fixed int8 input parameters (`<layer>.input_quant`) of
//!   the next conv or linear layer when only layers that commute with quantization
//!   (max-pool, ReLU, flatten, dropout) lie between. A lower bound of exactly 0 is a
//!   ReLU (the quantizer removes a ReLU that follows a conv and lets the clamp do its
//!   work) and is lowered as one. Other clamps and the rounding are not carried: at f32
//!   they do nothing, and at int8 the next layer's own quantization saturates and rounds.
//!
//! Dynamically quantized graphs (`onnxruntime.quantization.quantize_dynamic`) are read
//! too: `DynamicQuantizeLinear` of the activation, a `Mul` of its scale by the weight's,
//! `ConvInteger` / `MatMulInteger` on the codes, `Cast` to float and the `Mul` by the
//! combined scale. The pattern is a conv or linear layer on the dequantized weight
//! (codes and scales kept when symmetric int8) whose input is quantized per inference,
//! which is the runtime's own int8 rule (per image where ONNX Runtime takes the whole
//! batch's range; the same at batch 1). Its bias arrives by the `Add` after it.
//!
//! Per-tensor activation parameters only; graphs whose ops work on the integers in
//! other ways (QLinearConv, QLinearMatMul...) are refused by name.

use std::collections::HashMap;

use super::attrs::{input, Node};
use super::graph::Importer;
use super::tensor::bad_tensor;
use crate::error::{ConvertError, Result};
use crate::onnx_proto::{data_type, TensorProto};
use alexnet::plan::Layer;

/// ONNX element types of quantized integers.
const UINT8: i32 = data_type::UINT8;
const INT8: i32 = data_type::INT8;

/// The scales of a folded symmetric int8 weight: one per slice along `axis`, or one for
/// the whole tensor (`axis` None).
#[derive(Clone, Debug)]
pub(super) struct WeightScales {
    scales: Vec<f32>,
    axis: Option<usize>,
}

/// Quantization state of the walk.
#[derive(Clone, Debug, Default)]
pub(super) struct QuantState {
    /// After a `QuantizeLinear` of the activation: its `(scale, zero in the u8 domain)`,
    /// waiting for the `DequantizeLinear` that must follow.
    quantized: Option<[f32; 2]>,
    /// Parameters for the next conv or linear layer's input.
    pending: Option<[f32; 2]>,
    /// Scales of folded int8 weights, by value name.
    weights: HashMap<String, WeightScales>,
    /// Inside a dynamically quantized layer's pattern.
    dynamic: Option<Dynamic>,
}

/// The values of a dynamically quantized layer's pattern, as they appear.
#[derive(Clone, Debug)]
struct Dynamic {
    /// `DynamicQuantizeLinear`'s outputs: codes, scale, zero point.
    codes: String,
    scale: String,
    zero: String,
    /// The `Mul` of the activation scale by the weight's: its output, the weight scales.
    combined: Option<(String, Vec<f32>)>,
    /// The integer layer ran: the float `Mul` by `combined` is next.
    ran: bool,
}

/// Ops that leave a pending activation quantization valid for the next layer: they
/// commute with quantizing (monotone, elementwise or selecting).
const COMMUTING: [&str; 8] =
    ["MaxPool", "Relu", "Flatten", "Reshape", "Dropout", "Identity", "QuantizeLinear", "DequantizeLinear"];

impl Importer<'_> {
    /// Take `node` if it belongs to a dynamically quantized layer's pattern (see the
    /// module docs); false when it is not one of those nodes.
    pub(super) fn dynamic_node(&mut self, n: &Node) -> Result<bool> {
        let node = n.node;
        let op = node.op_type.as_str();
        let reads = |name: &str| node.input.iter().any(|i| i == name);
        match (op, self.quant.dynamic.clone()) {
            ("DynamicQuantizeLinear", _) if input(node, 0) == Some(self.cur.as_str()) => {
                n.arity(1, 1)?;
                n.attrs(&[])?;
                let [codes, scale, zero] = &node.output[..] else {
                    return Err(n.unsupported("expected three outputs (codes, scale, zero point)".into()));
                };
                let dynamic = Dynamic {
                    codes: codes.clone(),
                    scale: scale.clone(),
                    zero: zero.clone(),
                    combined: None,
                    ran: false,
                };
                (self.quant.dynamic, self.quant.pending) = (Some(dynamic), None);
                self.cur = codes.clone();
                Ok(true)
            }
            ("Mul", Some(d)) if d.combined.is_none() && reads(&d.scale) => {
                n.arity(2, 2)?;
                n.attrs(&[])?;
                let other = node.input.iter().find(|i| **i != d.scale).cloned().unwrap_or_default();
                let w = self.constant_f32(&other, &format!("weight scale of {}", n.ctx))?;
                if let Some(bad) = w.data.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
                    return Err(bad_tensor(&w.name, &format!("scale {bad} is not a positive finite number")));
                }
                let out = node.output.first().cloned().unwrap_or_default();
                self.quant.dynamic = Some(Dynamic { combined: Some((out, w.data)), ..d });
                Ok(true)
            }
            ("ConvInteger" | "MatMulInteger", Some(d)) if input(node, 0) == Some(d.codes.as_str()) => {
                self.integer_layer(n, d)?;
                Ok(true)
            }
            ("Mul", Some(d)) if d.ran && reads(&self.cur) => {
                n.arity(2, 2)?;
                let combined = d.combined.as_ref().map(|c| c.0.as_str());
                if !node.input.iter().any(|i| Some(i.as_str()) == combined) {
                    return Err(n.unsupported("expected the product of the activation and weight scales".into()));
                }
                self.quant.dynamic = None;
                self.cur = node.output.first().cloned().unwrap_or_default();
                Ok(true)
            }
            (_, Some(d)) if !d.ran || op != "Cast" => {
                Err(n.unsupported("it breaks a dynamically quantized layer's pattern".into()))
            }
            _ => Ok(false),
        }
    }

    /// `ConvInteger` / `MatMulInteger` of a dynamic pattern: the layer on its weight
    /// dequantized by the scales of the `Mul` before it.
    fn integer_layer(&mut self, n: &Node, d: Dynamic) -> Result<()> {
        let node = n.node;
        n.arity(2, 4)?;
        if input(node, 2).is_some_and(|z| z != d.zero) {
            return Err(n.unsupported("its input zero point is not DynamicQuantizeLinear's".into()));
        }
        let Some((_, scales)) = d.combined.clone() else {
            return Err(n.unsupported("no Mul of the activation scale by the weight scale precedes it".into()));
        };
        let conv = node.op_type == "ConvInteger";
        // Output channels: axis 0 of a conv weight, 1 of a MatMul's [in, out].
        let axis = if conv { 0 } else { 1 };
        let (weight, _) = self.dequantize_weight(n, 1, input(node, 3), &scales, axis)?;
        // The float layer on the dequantized weight, its input quantized per inference.
        let mut float = node.clone();
        float.op_type = if conv { "Conv" } else { "MatMul" }.into();
        float.input = vec![self.cur.clone(), weight];
        let f = Node { name: n.name, ctx: n.ctx, node: &float };
        if conv {
            self.conv(&f)?;
        } else {
            self.matmul(&f)?;
        }
        self.after_node(&f)?;
        self.quant.dynamic = Some(Dynamic { ran: true, ..d });
        self.cur = node.output.first().cloned().unwrap_or_default();
        Ok(())
    }

    /// Input `w` of `n`, integer codes with output channels along `axis`, dequantized
    /// with `scales` (one, or one per channel) and the zero points `zero` (a constant's
    /// name; none: 0) into a new f32 constant; its name and the per-channel scales. A
    /// symmetric int8 weight's scales are kept for its layer.
    fn dequantize_weight(
        &mut self,
        n: &Node,
        w: usize,
        zero: Option<&str>,
        scales: &[f32],
        axis: usize,
    ) -> Result<(String, Vec<f32>)> {
        let name = input(n.node, w).ok_or_else(|| n.unsupported(format!("input {w} (a weight) missing")))?;
        let t = self.constant(name).ok_or_else(|| n.unsupported(format!("weight '{name}' is not a constant")))?;
        let (dims, q, ty) = self.decode_ints(t, name)?;
        let outs = *dims.get(axis).ok_or_else(|| n.unsupported(format!("weight of shape {dims:?}")))? as usize;
        let per = |v: &[i64], what: &str| -> Result<Vec<i64>> {
            match v.len() {
                1 => Ok(vec![v[0]; outs]),
                l if l == outs => Ok(v.to_vec()),
                l => Err(n.unsupported(format!("{l} {what} for {outs} output channels"))),
            }
        };
        let zero = match zero {
            Some(z) => {
                let t = self.constant(z).ok_or_else(|| n.unsupported(format!("zero point '{z}' missing")))?;
                per(&self.decode_ints(t, z)?.1, "weight zero points")?
            }
            None => vec![0; outs],
        };
        if let Some(bad) = scales.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(n.unsupported(format!("weight scale {bad} is not a positive finite number")));
        }
        let scales: Vec<f32> = match scales.len() {
            1 => vec![scales[0]; outs],
            l if l == outs => scales.to_vec(),
            l => return Err(n.unsupported(format!("{l} weight scales for {outs} output channels"))),
        };
        let inner: usize = dims[axis + 1..].iter().product::<u64>() as usize;
        let channel = |i: usize| i / inner.max(1) % outs.max(1);
        let values: Vec<f32> = q
            .iter()
            .enumerate()
            .map(|(i, &v)| v.saturating_sub(zero[channel(i)]) as f32 * scales[channel(i)])
            .collect();
        let weight = format!("{name}#dequantized");
        if ty == INT8 && zero.iter().all(|&z| z == 0) {
            self.quant.weights.insert(weight.clone(), WeightScales { scales: scales.clone(), axis: Some(axis) });
        }
        let t = TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: data_type::FLOAT,
            float_data: values,
            ..Default::default()
        };
        self.constants.insert(weight.clone(), t);
        Ok((weight, scales))
    }

    /// `QLinearConv`, `QLinearMatMul` and `QGemm` (QOperator graphs): the layer on its
    /// dequantized weight and bias, its input parameters the codes' own; the output's
    /// parameters become the activation's, a zero point of 0 being the fused ReLU.
    pub(super) fn qlinear_layer(&mut self, n: &Node) -> Result<()> {
        let node = n.node;
        let op = node.op_type.as_str();
        let Some(x) = self.quant.quantized else {
            return Err(n.unsupported("its input is not a quantized activation".into()));
        };
        if self.params_of(n, 1, 2)? != x {
            return Err(n.unsupported("its input scale and zero point are not those of its input's codes".into()));
        }
        // (weight output-channel axis, float op, bias input, output scale input)
        let (axis, float_op, bias, out) = match op {
            "QLinearConv" => (0, "Conv", Some(8), Some(6)),
            "QLinearMatMul" => (1, "MatMul", None, Some(6)),
            _ => {
                let a = n.attrs(&["alpha", "transA", "transB"])?;
                (if a.int("transB", Some(0))? == 1 { 0 } else { 1 }, "Gemm", Some(6), Some(7))
            }
        };
        let w_scales = self.constant_f32(input(node, 4).unwrap_or_default(), &format!("weight scale of {}", n.ctx))?;
        let (weight, scales) = self.dequantize_weight(n, 3, input(node, 5), &w_scales.data, axis)?;
        let mut inputs = vec![self.cur.clone(), weight];
        if let Some(b) = bias.and_then(|i| input(node, i)) {
            // int32 codes at scale x_scale * w_scale[c], zero point 0.
            let t = self.constant(b).ok_or_else(|| n.unsupported(format!("bias '{b}' is not a constant")))?;
            let (dims, v, _) = self.decode_ints(t, b)?;
            if v.len() != scales.len() {
                return Err(n.unsupported(format!("bias of {} values for {} outputs", v.len(), scales.len())));
            }
            let values = v.iter().zip(&scales).map(|(&v, &s)| v as f32 * (x[0] * s)).collect();
            let name = format!("{b}#dequantized");
            let dims = dims.iter().map(|&d| d as i64).collect();
            let t = TensorProto { dims, data_type: data_type::FLOAT, float_data: values, ..Default::default() };
            self.constants.insert(name.clone(), t);
            inputs.push(name);
        }
        let y = match out.and_then(|i| input(node, i)) {
            Some(_) => Some(self.params_of(n, out.unwrap_or(0), out.unwrap_or(0) + 1)?),
            None => None,
        };
        let mut float = node.clone();
        float.op_type = float_op.into();
        float.input = inputs;
        float.attribute.retain(|a| !(float_op == "Gemm" && a.name == "beta"));
        let f = Node { name: n.name, ctx: n.ctx, node: &float };
        self.quant.quantized = None;
        match float_op {
            "Conv" => self.conv(&f)?,
            "MatMul" => self.matmul(&f)?,
            _ => self.gemm(&f)?,
        }
        self.quant.pending = Some(x);
        self.after_node(&f)?;
        if let Some(y) = y {
            if y[1] == 0.0 {
                self.net.fuse_relu();
            }
            self.quant.quantized = Some(y);
        }
        Ok(())
    }

    /// `QLinearSoftmax`: a softmax; its output's parameters become the activation's.
    pub(super) fn qlinear_softmax(&mut self, n: &Node) -> Result<()> {
        let x = self.quant.quantized.take();
        if x.is_none() || self.params_of(n, 1, 2).ok() != x {
            return Err(n.unsupported("its input parameters are not those of its input's codes".into()));
        }
        let y = self.params_of(n, 3, 4)?;
        let mut float = n.node.clone();
        float.op_type = "Softmax".into();
        float.input.truncate(1);
        float.attribute.retain(|a| a.name != "opset");
        self.softmax(&Node { name: n.name, ctx: n.ctx, node: &float })?;
        self.quant.quantized = Some(y);
        Ok(())
    }

    /// Integers of a quantized tensor (int8, uint8, int32 or int64) with its dimensions.
    fn decode_ints(&self, t: &TensorProto, name: &str) -> Result<(Vec<u64>, Vec<i64>, i32)> {
        match t.data_type {
            UINT8 | INT8 => {
                let shape = super::tensor::dims(t, name)?;
                let count = super::tensor::element_count(&shape, name)?;
                let signed = t.data_type == INT8;
                let values: Vec<i64> = match self.payload(t, name, 1)? {
                    Some(raw) => {
                        super::tensor::check_len(raw.len() as u64, Some(count), name, "bytes")?;
                        raw.iter().map(|&b| if signed { b as i8 as i64 } else { b as i64 }).collect()
                    }
                    None => {
                        super::tensor::check_len(t.int32_data.len() as u64, Some(count), name, "int32_data values")?;
                        t.int32_data.iter().map(|&v| v as i64).collect()
                    }
                };
                let (lo, hi) = if signed { (-128, 127) } else { (0, 255) };
                if values.iter().any(|&v| v < lo || v > hi) {
                    return Err(bad_tensor(name, "a value is outside its 8-bit type"));
                }
                Ok((shape, values, t.data_type))
            }
            _ => self.decode_i64(t, name).map(|(s, v)| (s, v, t.data_type)),
        }
    }

    /// Whether `node` is a `DequantizeLinear` of constants only (folded at conversion).
    pub(super) fn dequantizes_constants(&self, node: &crate::onnx_proto::NodeProto) -> bool {
        node.op_type == "DequantizeLinear"
            && node.input.first().is_some_and(|i| !i.is_empty())
            && node.input.iter().all(|i| i.is_empty() || self.constant(i).is_some())
    }

    /// Fold a constant `DequantizeLinear` (see the module docs).
    pub(super) fn dequantize_constant(&mut self, n: &Node) -> Result<()> {
        n.arity(2, 3)?;
        let a = n.attrs(&["axis", "block_size"])?;
        if a.int("block_size", Some(0))? != 0 {
            return Err(a.bad("block_size", "blocked quantization is not supported".into()));
        }
        let name = &n.node.input[0];
        let t = self.constant(name).ok_or_else(|| n.unsupported("input 0 missing".into()))?;
        let (dims, q, ty) = self.decode_ints(t, name)?;
        let scale = self.constant_f32(&n.node.input[1], &format!("scale of {}", n.ctx))?;
        if let Some(bad) = scale.data.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(bad_tensor(&scale.name, &format!("scale {bad} is not a positive finite number")));
        }
        let zero = match input(n.node, 2) {
            Some(z) => {
                let t = self.constant(z).ok_or_else(|| n.unsupported(format!("zero point '{z}' missing")))?;
                let (zd, zv, _) = self.decode_ints(t, z)?;
                if zd != scale.shape {
                    return Err(n.unsupported(format!("zero point shape {zd:?} differs from the scale's")));
                }
                zv
            }
            None => vec![0; scale.data.len()],
        };
        // Per tensor (one scale) or per slice along `axis` (a 1-D scale).
        let axis = match scale.shape.len() {
            0 => None,
            1 if scale.data.len() == 1 && dims.is_empty() => None,
            1 => {
                let rank = dims.len() as i64;
                let ax = a.int("axis", Some(1))?;
                let ax = if ax < 0 { ax + rank } else { ax };
                match usize::try_from(ax).ok().filter(|&ax| ax < dims.len()) {
                    Some(ax) if dims[ax] as usize == scale.data.len() => Some(ax),
                    _ => {
                        return Err(
                            a.bad("axis", format!("{ax} does not index {} scales in {dims:?}", scale.data.len()))
                        )
                    }
                }
            }
            _ => return Err(n.unsupported(format!("a scale of shape {:?}", scale.shape))),
        };
        // Slice index of element i along the axis: (i / inner) % dims[axis].
        let inner: u64 = axis.map_or(1, |ax| dims[ax + 1..].iter().product());
        let slices = axis.map_or(1, |ax| dims[ax]);
        let slice = |i: usize| if axis.is_some() { (i as u64 / inner % slices) as usize } else { 0 };
        let values: Vec<f32> = q
            .iter()
            .enumerate()
            .map(|(i, &v)| v.saturating_sub(zero[slice(i)]) as f32 * scale.data[slice(i)])
            .collect();
        let out = n.node.output.first().filter(|o| !o.is_empty()).ok_or_else(|| n.unsupported("no output".into()))?;
        if ty == INT8 && zero.iter().all(|&z| z == 0) {
            self.quant.weights.insert(out.clone(), WeightScales { scales: scale.data.clone(), axis });
        }
        let t = TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: data_type::FLOAT,
            float_data: values,
            ..Default::default()
        };
        self.constants.insert(out.clone(), t);
        Ok(())
    }

    /// A per-tensor `(scale, zero point)` of an activation `QuantizeLinear` or
    /// `DequantizeLinear`, the zero point moved to the u8 domain (int8 codes + 128), and
    /// whether the codes are signed.
    fn act_params(&self, n: &Node) -> Result<[f32; 2]> {
        n.arity(2, 3)?;
        let a = n.attrs(&["axis", "saturate", "block_size", "output_dtype"])?;
        if a.int("block_size", Some(0))? != 0 {
            return Err(a.bad("block_size", "blocked quantization is not supported".into()));
        }
        self.params_of(n, 1, 2)
    }

    /// The activation parameters given by inputs `scale` and `zero` of `n` (see
    /// [`Importer::act_params`]).
    fn params_of(&self, n: &Node, scale: usize, zero: usize) -> Result<[f32; 2]> {
        let scale_name =
            input(n.node, scale).ok_or_else(|| n.unsupported(format!("input {scale} (a scale) missing")))?;
        let scale = self.constant_f32(scale_name, &format!("scale of {}", n.ctx))?;
        let [s] = scale.data[..] else {
            return Err(n.unsupported("an activation needs one scale (per-tensor quantization)".into()));
        };
        let (zero, ty) = match input(n.node, zero) {
            Some(z) => {
                let t = self.constant(z).ok_or_else(|| n.unsupported(format!("zero point '{z}' missing")))?;
                let (_, v, ty) = self.decode_ints(t, z)?;
                let [v] = v[..] else { return Err(n.unsupported("an activation needs one zero point".into())) };
                (v, ty)
            }
            None => (0, UINT8),
        };
        let zero = match ty {
            UINT8 => zero,
            INT8 => zero + 128,
            other => return Err(n.unsupported(format!("activation codes of ONNX type {other}; only uint8 and int8"))),
        };
        alexnet::quant::ActParams::fixed(s, zero as f32)
            .map_err(|reason| ConvertError::BadTensor { name: scale_name.into(), reason })?;
        Ok([s, zero as f32])
    }

    /// `QuantizeLinear` of the activation: remember its parameters for the
    /// `DequantizeLinear` that must follow.
    pub(super) fn quantize_linear(&mut self, n: &Node) -> Result<()> {
        self.quant.quantized = Some(self.act_params(n)?);
        Ok(())
    }

    /// `DequantizeLinear` of the activation: closes a pair (see the module docs).
    pub(super) fn dequantize_linear(&mut self, n: &Node) -> Result<()> {
        let p = self.act_params(n)?;
        let Some(q) = self.quant.quantized.take() else {
            return Err(n.unsupported("it dequantizes an activation no QuantizeLinear produced".into()));
        };
        if q != p {
            return Err(n.unsupported(format!("its scale and zero point {p:?} differ from the QuantizeLinear's {q:?}")));
        }
        // Codes from the zero point up: the lower clamp is at exactly 0, a ReLU.
        if p[1] == 0.0 && !self.net.nonnegative() && !self.net.fuse_relu() {
            self.net.push(Layer::Relu, n.ctx)?;
        }
        self.quant.pending = Some(p);
        Ok(())
    }

    /// Before a node runs on the activation: a quantized activation may only be
    /// dequantized.
    pub(super) fn check_quantized(&self, n: &Node) -> Result<()> {
        const ON_CODES: [&str; 9] = [
            "DequantizeLinear",
            "MaxPool",
            "Reshape",
            "Flatten",
            "Identity",
            "QLinearConv",
            "QLinearMatMul",
            "QGemm",
            "QLinearSoftmax",
        ];
        if self.quant.quantized.is_some() && !ON_CODES.contains(&n.node.op_type.as_str()) {
            return Err(n.unsupported(
                "it reads a quantized activation; only pooling, reshaping and the QLinear ops work on codes".into(),
            ));
        }
        Ok(())
    }

    /// After a node ran: a conv or linear layer takes the pending input parameters and
    /// its weight's scales; other ops keep or drop what is pending.
    pub(super) fn after_node(&mut self, n: &Node) -> Result<()> {
        let op = n.node.op_type.as_str();
        // The weight's output-channel axis as the source stores it.
        let axis = match op {
            "Conv" => 0,
            "Gemm" => {
                let a = n.attrs(&["alpha", "beta", "transA", "transB", "broadcast"])?;
                if a.float("alpha", 1.0)? != 1.0 {
                    // Scaled weights: requantized by the runtime's own rule.
                    self.net.set_quant(self.quant.pending.take(), None);
                    return Ok(());
                }
                if a.int("transB", Some(0))? == 1 {
                    0
                } else {
                    1
                }
            }
            "MatMul" => 1,
            _ => {
                if !COMMUTING.contains(&op) {
                    self.quant.pending = None;
                }
                return Ok(());
            }
        };
        let out = self.net.last_outputs();
        let scales = self.quant.weights.get(n.node.input[1].as_str()).and_then(|w| match w.axis {
            None => Some(vec![w.scales[0]; out]),
            Some(ax) if ax == axis && w.scales.len() == out => Some(w.scales.clone()),
            _ => None,
        });
        self.net.set_quant(self.quant.pending.take(), scales);
        Ok(())
    }
}
