//! ONNX importer: a chain-shaped graph to a layer plan.
//!
//! AlexNet-family graphs are a single chain from one image input to one output. The
//! importer walks the nodes in order (ONNX requires topological order) with one piece of
//! state, the *current activation*: every node must consume it (and nothing else that is
//! not a constant), and its first output becomes the new current activation. Branches,
//! a second graph input or an output that is not the last activation are refused.
//!
//! | ONNX                                         | plan                                     |
//! |----------------------------------------------|------------------------------------------|
//! | Conv (2-D, dilations 1, any auto_pad)        | `Conv` (missing bias: zeros)             |
//! | Relu                                         | fused into the conv/linear before it, or `Relu` |
//! | MaxPool (dilations 1, Indices unused)        | `MaxPool`                                |
//! | LRN                                          | `Lrn`                                    |
//! | Dropout, Identity                            | dropped                                  |
//! | AveragePool 1x1/1, GlobalAveragePool on 1x1  | dropped (identities)                     |
//! | Flatten (axis 1), Reshape to `[N, C*H*W]`    | `Flatten`                                |
//! | Gemm (transA 0), MatMul with a constant B    | `Linear` (weights stored `[out, in]`)    |
//! | Add of a constant right after Gemm/MatMul    | folded into the linear bias              |
//! | Softmax (axis 1 / -1, flat input)            | `Softmax`                                |
//!
//! Legacy forms of old opsets are accepted where they mean the same thing: Reshape-1's
//! `shape` attribute, `consumed_inputs`, Gemm/Add `broadcast`.
//!
//! Anything else is [`ConvertError::UnsupportedOp`] naming the op and the node. Unknown
//! attributes on a supported op are refused too, so a semantics this importer does not
//! know can never be silently dropped.
//!
//! Initializer data may be FLOAT, FLOAT16, BFLOAT16 or DOUBLE (converted to f32), inline
//! (`raw_data` or the typed field) or external (`data_location = EXTERNAL`, read from the
//! model's directory; absolute paths and `..` are refused). Every element count is
//! computed with checked arithmetic and compared with the bytes actually present before
//! any buffer is allocated.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path};

use alexnet::plan::{limits, Layer, Lrn, MaxPool, Pads, Shape};
use prost::Message;

use crate::builder::{ConvParams, NetBuilder, Tensor};
use crate::error::{ConvertError, Result};
use crate::onnx_proto::{
    attribute_type, data_location, data_type, tensor_shape_proto::dimension::Value as Dim, type_proto, AttributeProto,
    GraphProto, ModelProto, NodeProto, TensorProto,
};
use crate::options::{Convention, Options};
use crate::{finish, Converted, InputFormat};

/// Decode an ONNX model and convert it. `base_dir` is where external data files are read
/// from (the `.onnx` file's directory); `None` refuses external data.
pub fn import(bytes: &[u8], base_dir: Option<&Path>, options: &Options) -> Result<Converted> {
    import_model(&ModelProto::decode(bytes)?, base_dir, options)
}

/// [`import`] from an owned buffer: initializer bytes are slices of `bytes`, not copies,
/// which halves peak memory for a full-size model.
pub fn import_owned(bytes: Vec<u8>, base_dir: Option<&Path>, options: &Options) -> Result<Converted> {
    import_model(&ModelProto::decode(prost::bytes::Bytes::from(bytes))?, base_dir, options)
}

fn import_model(model: &ModelProto, base_dir: Option<&Path>, options: &Options) -> Result<Converted> {
    let graph = model.graph.as_ref().ok_or_else(|| ConvertError::BadGraph("the model has no graph".into()))?;
    let mut importer = Importer::new(graph, base_dir, options)?;
    for (index, node) in graph.node.iter().enumerate() {
        importer.node(index, node)?;
    }
    importer.check_output()?;
    let has_lrn = importer.net.layers().iter().any(|l| matches!(l, Layer::Lrn(_)));
    let detected = if has_lrn { Convention::Caffe } else { Convention::Torchvision };
    finish(importer.net, detected, InputFormat::Onnx, options)
}

/// Operators with a mapping (besides `Constant`, which only feeds others).
const SUPPORTED: [&str; 15] = [
    "Conv",
    "Relu",
    "MaxPool",
    "LRN",
    "Dropout",
    "Identity",
    "AveragePool",
    "GlobalAveragePool",
    "Flatten",
    "Reshape",
    "Gemm",
    "MatMul",
    "Add",
    "Softmax",
    "Constant",
];

/// The walk's state.
struct Importer<'g> {
    graph: &'g GraphProto,
    base_dir: Option<&'g Path>,
    initializers: HashMap<&'g str, &'g TensorProto>,
    /// Outputs of `Constant` nodes.
    constants: HashMap<String, TensorProto>,
    /// Every value name some node reads or the graph outputs.
    used: HashSet<&'g str>,
    /// The current activation's name.
    cur: String,
    /// The batch dimension when the model fixes it.
    batch: Option<u64>,
    net: NetBuilder,
}

/// A node's name for messages: its name, else its first output, else its position.
fn node_name(index: usize, node: &NodeProto) -> String {
    if !node.name.is_empty() {
        node.name.clone()
    } else if let Some(out) = node.output.first().filter(|o| !o.is_empty()) {
        out.clone()
    } else {
        format!("#{index}")
    }
}

/// A non-empty input of `node` at `i` (empty strings mark omitted optional inputs).
fn input(node: &NodeProto, i: usize) -> Option<&str> {
    node.input.get(i).map(String::as_str).filter(|s| !s.is_empty())
}

impl<'g> Importer<'g> {
    fn new(graph: &'g GraphProto, base_dir: Option<&'g Path>, options: &Options) -> Result<Self> {
        let mut initializers = HashMap::with_capacity(graph.initializer.len());
        for t in &graph.initializer {
            if initializers.insert(t.name.as_str(), t).is_some() {
                return Err(ConvertError::BadGraph(format!("initializer '{}' is defined twice", t.name)));
            }
        }
        let mut used: HashSet<&str> = graph.node.iter().flat_map(|n| n.input.iter().map(String::as_str)).collect();
        used.extend(graph.output.iter().map(|o| o.name.as_str()));

        // The image input: the one graph input that is not an initializer.
        let inputs: Vec<_> = graph.input.iter().filter(|i| !initializers.contains_key(i.name.as_str())).collect();
        let [inp] = inputs[..] else {
            let names: Vec<_> = inputs.iter().map(|i| format!("'{}'", i.name)).collect();
            return Err(ConvertError::BadGraph(format!(
                "expected exactly one image input besides the initializers, found {} ({})",
                inputs.len(),
                names.join(", ")
            )));
        };
        // Only the tensor case of TypeProto is declared; other types decode to None.
        let tensor_type = inp.r#type.as_ref().and_then(|t| t.value.as_ref()).map(|type_proto::Value::TensorType(t)| t);
        if let Some(t) = tensor_type {
            if t.elem_type != 0 && t.elem_type != data_type::FLOAT {
                return Err(ConvertError::BadGraph(format!(
                    "input '{}' has element type {}, only float32 (1) inputs are supported",
                    inp.name, t.elem_type
                )));
            }
        }
        // Each dimension: Some(n) when fixed, None when symbolic or unknown.
        let dims: Option<Vec<Option<i64>>> = tensor_type.and_then(|t| t.shape.as_ref()).map(|s| {
            s.dim
                .iter()
                .map(|d| match d.value {
                    Some(Dim::DimValue(v)) => Some(v),
                    _ => None,
                })
                .collect()
        });
        let (batch, hw) = match dims.as_deref() {
            None => (None, [None, None]),
            Some([n, c, h, w]) => {
                if let Some(c) = c.filter(|&c| c != 3) {
                    return Err(ConvertError::BadGraph(format!(
                        "input '{}' has {c} channels, expected [N, 3, H, W]",
                        inp.name
                    )));
                }
                // Some exporters write 0 or -1 for a dynamic dimension: treat as unknown.
                let fixed = |v: Option<i64>, what: &str| -> Result<Option<u32>> {
                    match v {
                        None => Ok(None),
                        Some(v) if v <= 0 => Ok(None),
                        Some(v) => u32::try_from(v)
                            .map(Some)
                            .map_err(|_| ConvertError::BadGraph(format!("input '{}' has {what} {v}", inp.name))),
                    }
                };
                let batch = fixed(*n, "batch size")?.map(u64::from);
                (batch, [fixed(*h, "height")?, fixed(*w, "width")?])
            }
            Some(other) => {
                return Err(ConvertError::BadGraph(format!(
                    "input '{}' has rank {}, expected [N, 3, H, W]",
                    inp.name,
                    other.len()
                )))
            }
        };
        let [h, w] = match (options.input_size, hw) {
            (Some(size), [h, w]) => {
                let model = [h.unwrap_or(size[0]), w.unwrap_or(size[1])];
                if model != size {
                    return Err(ConvertError::InvalidOption(format!(
                        "--input-size {}x{} disagrees with the model's input '{}' of {}x{}",
                        size[0], size[1], inp.name, model[0], model[1]
                    )));
                }
                size
            }
            (None, [Some(h), Some(w)]) => [h, w],
            (None, _) => {
                return Err(ConvertError::BadGraph(format!(
                    "input '{}' has no fixed height and width; pass --input-size H W",
                    inp.name
                )))
            }
        };
        Ok(Importer {
            graph,
            base_dir,
            initializers,
            constants: HashMap::new(),
            used,
            cur: inp.name.clone(),
            batch,
            net: NetBuilder::new([3, h, w])?,
        })
    }

    /// The graph must have one output, and it must be the last activation.
    fn check_output(&self) -> Result<()> {
        match &self.graph.output[..] {
            [out] if out.name == self.cur => Ok(()),
            [out] => Err(ConvertError::BadGraph(format!(
                "the graph output '{}' is not the final activation '{}'",
                out.name, self.cur
            ))),
            outs => Err(ConvertError::BadGraph(format!("expected one graph output, found {}", outs.len()))),
        }
    }

    /// A constant (initializer or `Constant` output) by name.
    fn constant(&self, name: &str) -> Option<&TensorProto> {
        self.initializers.get(name).copied().or_else(|| self.constants.get(name))
    }

    fn constant_f32(&self, name: &str, context: &str) -> Result<Tensor> {
        let t = self
            .constant(name)
            .ok_or_else(|| ConvertError::MissingTensor { name: name.into(), context: context.into() })?;
        let (shape, data) = self.decode_f32(t, name)?;
        Ok(Tensor { name: name.into(), shape, data })
    }

    fn constant_i64(&self, name: &str, context: &str) -> Result<(Vec<u64>, Vec<i64>)> {
        let t = self
            .constant(name)
            .ok_or_else(|| ConvertError::MissingTensor { name: name.into(), context: context.into() })?;
        self.decode_i64(t, name)
    }

    /// Dispatch one node.
    fn node(&mut self, index: usize, node: &NodeProto) -> Result<()> {
        let name = node_name(index, node);
        let op = node.op_type.as_str();
        if !(node.domain.is_empty() || node.domain == "ai.onnx") {
            return Err(ConvertError::UnsupportedOp { op: format!("{}:{op}", node.domain), node: name });
        }
        if op == "Constant" {
            return self.constant_node(&name, node);
        }
        if !SUPPORTED.contains(&op) {
            return Err(ConvertError::UnsupportedOp { op: op.into(), node: name });
        }
        let ctx = format!("node '{name}' ({op})");
        let n = Node { name: &name, ctx: &ctx, node };
        // The data input: the current activation (either side of an Add).
        let data = match op {
            "Add" => node.input.iter().position(|i| *i == self.cur),
            _ => (input(node, 0) == Some(self.cur.as_str())).then_some(0),
        };
        let Some(data) = data else {
            return Err(ConvertError::BadGraph(format!(
                "{ctx} does not read the current activation '{}' as its data input: the graph must be a single chain",
                self.cur
            )));
        };
        for (i, inp) in node.input.iter().enumerate() {
            if i != data && !inp.is_empty() && self.constant(inp).is_none() {
                return Err(ConvertError::BadGraph(format!(
                    "{ctx}: input '{inp}' is neither the current activation nor a constant: \
                     the graph must be a single chain"
                )));
            }
        }
        let out = match node.output.first().filter(|o| !o.is_empty()) {
            Some(o) => o.clone(),
            None => return Err(ConvertError::BadGraph(format!("{ctx} has no output"))),
        };
        match op {
            "Conv" => self.conv(&n)?,
            "Relu" => {
                n.arity(1, 1)?;
                n.attrs(&["consumed_inputs"])?;
                if !self.net.fuse_relu() {
                    self.net.push(Layer::Relu, &ctx)?;
                }
            }
            "MaxPool" => self.maxpool(&n)?,
            "LRN" => {
                n.arity(1, 1)?;
                let a = n.attrs(&["size", "alpha", "beta", "bias"])?;
                let size = a.int("size", None)?;
                let size =
                    u32::try_from(size).ok().filter(|&s| s > 0).ok_or_else(|| a.bad("size", format!("{size}")))?;
                let lrn = Lrn {
                    size,
                    alpha: a.float("alpha", 1e-4)?,
                    beta: a.float("beta", 0.75)?,
                    bias: a.float("bias", 1.0)?,
                };
                self.net.push(Layer::Lrn(lrn), &ctx)?;
            }
            "Dropout" => self.dropout(&n)?,
            "Identity" => {
                n.arity(1, 1)?;
                n.attrs(&[])?;
            }
            "AveragePool" => self.average_pool(&n)?,
            "GlobalAveragePool" => {
                n.arity(1, 1)?;
                n.attrs(&[])?;
                if !matches!(self.net.shape(), Shape::Spatial { h: 1, w: 1, .. }) {
                    return Err(n.unsupported(format!(
                        "only a global pool over a 1x1 map (an identity) is supported, the activation is {}",
                        self.net.shape()
                    )));
                }
            }
            "Flatten" => self.flatten(&n)?,
            "Reshape" => self.reshape(&n)?,
            "Gemm" => self.gemm(&n)?,
            "MatMul" => self.matmul(&n)?,
            "Add" => self.add(&n, data)?,
            "Softmax" => {
                n.arity(1, 1)?;
                let a = n.attrs(&["axis"])?;
                let axis = a.int("axis", Some(-1))?;
                if axis != 1 && axis != -1 {
                    return Err(a.bad("axis", format!("{axis}; only the class axis (1 or -1) is supported")));
                }
                self.net.push(Layer::Softmax, &ctx)?;
            }
            _ => return Err(ConvertError::UnsupportedOp { op: op.into(), node: name }),
        }
        // Secondary outputs (MaxPool Indices, Dropout mask) must not feed anything.
        for extra in node.output.iter().skip(1).filter(|o| !o.is_empty()) {
            if self.used.contains(extra.as_str()) {
                return Err(n.unsupported(format!("its second output '{extra}' is used; only the first is supported")));
            }
        }
        self.cur = out;
        Ok(())
    }

    /// `Constant`: remember its value for the nodes that read it.
    fn constant_node(&mut self, name: &str, node: &NodeProto) -> Result<()> {
        let n = Node { name, ctx: name, node };
        n.arity(0, 0)?;
        let a = n.attrs(&["value", "value_float", "value_floats", "value_int", "value_ints"])?;
        let [attr] = node.attribute.as_slice() else {
            return Err(ConvertError::BadAttribute {
                node: name.into(),
                attribute: "value".into(),
                reason: "a Constant needs exactly one value attribute".into(),
            });
        };
        let t = match attr.name.as_str() {
            "value" => a.tensor("value")?.cloned().unwrap_or_default(),
            "value_float" => TensorProto {
                data_type: data_type::FLOAT,
                float_data: vec![a.float("value_float", 0.0)?],
                ..Default::default()
            },
            "value_floats" => {
                let v = a.floats("value_floats")?.unwrap_or_default();
                TensorProto {
                    dims: vec![v.len() as i64],
                    data_type: data_type::FLOAT,
                    float_data: v.to_vec(),
                    ..Default::default()
                }
            }
            "value_int" => TensorProto {
                data_type: data_type::INT64,
                int64_data: vec![a.int("value_int", Some(0))?],
                ..Default::default()
            },
            _ => {
                let v = a.ints("value_ints")?.unwrap_or_default();
                TensorProto {
                    dims: vec![v.len() as i64],
                    data_type: data_type::INT64,
                    int64_data: v.to_vec(),
                    ..Default::default()
                }
            }
        };
        let out = node
            .output
            .first()
            .filter(|o| !o.is_empty())
            .ok_or_else(|| ConvertError::BadGraph(format!("Constant node '{name}' has no output")))?;
        self.constants.insert(out.clone(), t);
        Ok(())
    }

    fn conv(&mut self, n: &Node) -> Result<()> {
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

    fn maxpool(&mut self, n: &Node) -> Result<()> {
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

    fn average_pool(&mut self, n: &Node) -> Result<()> {
        n.arity(1, 1)?;
        let a =
            n.attrs(&["auto_pad", "ceil_mode", "count_include_pad", "dilations", "kernel_shape", "pads", "strides"])?;
        let kernel = a.pair_required("kernel_shape")?;
        let stride = a.pair("strides")?;
        let dilations = a.pair("dilations")?;
        a.int("ceil_mode", Some(0))?;
        a.int("count_include_pad", Some(0))?;
        let pads = self.window_pads(&a, kernel, stride)?;
        if !matches!(self.net.shape(), Shape::Spatial { .. })
            || kernel != [1, 1]
            || stride != [1, 1]
            || dilations != [1, 1]
            || pads != Pads::default()
        {
            return Err(n.unsupported(format!(
                "only an identity average pool (kernel 1x1, stride 1, no padding) is supported, found kernel {kernel:?} \
                 stride {stride:?} on {}",
                self.net.shape()
            )));
        }
        Ok(())
    }

    fn dropout(&mut self, n: &Node) -> Result<()> {
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

    /// A BOOL/INT constant's values as integers (for Dropout's training_mode).
    fn constant_bool_or_int(&self, name: &str, context: &str) -> Result<(Vec<u64>, Vec<i64>)> {
        let t = self
            .constant(name)
            .ok_or_else(|| ConvertError::MissingTensor { name: name.into(), context: context.into() })?;
        if t.data_type == 9 {
            // BOOL: one byte per element in raw_data, else int32_data.
            let shape = dims(t, name)?;
            let bytes = self.payload(t, name, 1)?;
            let values: Vec<i64> = match bytes {
                Some(b) => b.iter().map(|&x| x as i64).collect(),
                None => t.int32_data.iter().map(|&x| x as i64).collect(),
            };
            return Ok((shape, values));
        }
        self.decode_i64(t, name)
    }

    fn flatten(&mut self, n: &Node) -> Result<()> {
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

    fn reshape(&mut self, n: &Node) -> Result<()> {
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
        let first_ok = match first {
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

    fn gemm(&mut self, n: &Node) -> Result<()> {
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

    fn matmul(&mut self, n: &Node) -> Result<()> {
        n.arity(2, 2)?;
        n.attrs(&[])?;
        let b = self.constant_f32(&n.node.input[1], &format!("B of {}", n.ctx))?;
        let weight = transpose(b, n.ctx)?;
        self.net.linear(n.ctx, weight, None, false)
    }

    fn add(&mut self, n: &Node, data: usize) -> Result<()> {
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
        let c = self.constant_f32(other, &format!("addend of {}", n.ctx))?;
        let Some(bias) = self.net.last_linear_bias() else {
            return Err(n.unsupported(
                "Add is only supported as the bias of the Gemm/MatMul right before it (before its Relu)".into(),
            ));
        };
        let c = broadcast_bias(c, bias.len() as u64, n.ctx)?;
        bias.iter_mut().zip(&c.data).for_each(|(b, v)| *b += v);
        Ok(())
    }

    /// Explicit padding from `pads` / `auto_pad` for a window over the current activation.
    fn window_pads(&self, a: &Attrs, kernel: [u32; 2], stride: [u32; 2]) -> Result<Pads> {
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

    /// Inline bytes of `t` (`raw_data`, or the external file), `None` when the values are
    /// in a typed field. `elem` is the element size, used to size external reads.
    fn payload<'t>(&self, t: &'t TensorProto, name: &str, elem: u64) -> Result<Option<Cow<'t, [u8]>>> {
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
    fn read_external(&self, t: &TensorProto, name: &str, needed: u64) -> Result<Vec<u8>> {
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
    fn decode_f32(&self, t: &TensorProto, name: &str) -> Result<(Vec<u64>, Vec<f32>)> {
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
    fn decode_i64(&self, t: &TensorProto, name: &str) -> Result<(Vec<u64>, Vec<i64>)> {
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
fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits((bits as u32) << 16)
}

fn bad_tensor(name: &str, reason: &str) -> ConvertError {
    ConvertError::BadTensor { name: name.into(), reason: reason.into() }
}

/// A tensor's dimensions, refusing negative ones.
fn dims(t: &TensorProto, name: &str) -> Result<Vec<u64>> {
    t.dims
        .iter()
        .map(|&d| u64::try_from(d).map_err(|_| bad_tensor(name, &format!("negative dimension in {:?}", t.dims))))
        .collect()
}

/// The product of `shape`, checked.
fn element_count(shape: &[u64], name: &str) -> Result<u64> {
    shape
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad_tensor(name, &format!("shape {shape:?} overflows")))
}

/// The data present must be exactly what the shape needs.
fn check_len(found: u64, needed: Option<u64>, name: &str, what: &str) -> Result<()> {
    match needed {
        Some(n) if n == found => Ok(()),
        Some(n) => Err(bad_tensor(name, &format!("has {found} {what}, its shape needs {n}"))),
        None => Err(bad_tensor(name, "byte size overflows")),
    }
}

/// A 2-D constant used as-is: `[out, in]`.
fn as_matrix(t: Tensor, ctx: &str) -> Result<Tensor> {
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
fn transpose(t: Tensor, ctx: &str) -> Result<Tensor> {
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
fn broadcast_bias(t: Tensor, out: u64, ctx: &str) -> Result<Tensor> {
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

/// A node with its display name and error context.
struct Node<'a> {
    name: &'a str,
    ctx: &'a str,
    node: &'a NodeProto,
}

impl<'a> Node<'a> {
    /// Check the number of inputs (counting omitted optional ones).
    fn arity(&self, min: usize, max: usize) -> Result<()> {
        let n = self.node.input.len();
        if n < min || n > max {
            return Err(ConvertError::BadGraph(format!("{} has {n} inputs, expected {min}..={max}", self.ctx)));
        }
        Ok(())
    }

    /// The node's attributes, refusing unknown and repeated ones.
    fn attrs(&self, known: &[&str]) -> Result<Attrs<'a>> {
        let mut seen = HashSet::new();
        for a in &self.node.attribute {
            if !known.contains(&a.name.as_str()) {
                return Err(ConvertError::BadAttribute {
                    node: self.name.into(),
                    attribute: a.name.clone(),
                    reason: format!("not supported on {}", self.node.op_type),
                });
            }
            if !seen.insert(a.name.as_str()) {
                return Err(ConvertError::BadAttribute {
                    node: self.name.into(),
                    attribute: a.name.clone(),
                    reason: "given twice".into(),
                });
            }
        }
        Ok(Attrs { node: self.name.to_string(), list: &self.node.attribute })
    }

    fn unsupported(&self, reason: String) -> ConvertError {
        ConvertError::UnsupportedUse { op: self.node.op_type.clone(), node: self.name.into(), reason }
    }
}

/// Typed access to a node's attributes.
struct Attrs<'a> {
    node: String,
    list: &'a [AttributeProto],
}

impl<'a> Attrs<'a> {
    fn bad(&self, attribute: &str, reason: String) -> ConvertError {
        ConvertError::BadAttribute { node: self.node.clone(), attribute: attribute.into(), reason }
    }

    /// The attribute `name` if present, after checking its declared type.
    fn get(&self, name: &str, ty: i32) -> Result<Option<&'a AttributeProto>> {
        match self.list.iter().find(|a| a.name == name) {
            Some(a) if a.r#type == ty || a.r#type == attribute_type::UNDEFINED => Ok(Some(a)),
            Some(a) => Err(self.bad(name, format!("has attribute type {}, expected {ty}", a.r#type))),
            None => Ok(None),
        }
    }

    /// An INT attribute; `default: None` makes it required.
    fn int(&self, name: &str, default: Option<i64>) -> Result<i64> {
        match (self.get(name, attribute_type::INT)?, default) {
            (Some(a), _) => Ok(a.i),
            (None, Some(d)) => Ok(d),
            (None, None) => Err(self.bad(name, "is required".into())),
        }
    }

    fn float(&self, name: &str, default: f32) -> Result<f32> {
        Ok(self.get(name, attribute_type::FLOAT)?.map_or(default, |a| a.f))
    }

    fn ints(&self, name: &str) -> Result<Option<&'a [i64]>> {
        Ok(self.get(name, attribute_type::INTS)?.map(|a| a.ints.as_slice()))
    }

    fn floats(&self, name: &str) -> Result<Option<&'a [f32]>> {
        Ok(self.get(name, attribute_type::FLOATS)?.map(|a| a.floats.as_slice()))
    }

    fn string(&self, name: &str) -> Result<Option<&'a str>> {
        match self.get(name, attribute_type::STRING)? {
            Some(a) => std::str::from_utf8(&a.s).map(Some).map_err(|_| self.bad(name, "is not UTF-8".into())),
            None => Ok(None),
        }
    }

    fn tensor(&self, name: &str) -> Result<Option<&'a TensorProto>> {
        Ok(self.get(name, attribute_type::TENSOR)?.and_then(|a| a.t.as_ref()))
    }

    /// A 2-element INTS attribute of positive values fitting `u32`, default `[1, 1]`.
    fn pair(&self, name: &str) -> Result<[u32; 2]> {
        match self.ints(name)? {
            None => Ok([1, 1]),
            Some(v) => self.positive_pair(name, v),
        }
    }

    fn pair_required(&self, name: &str) -> Result<[u32; 2]> {
        let v = self.ints(name)?.ok_or_else(|| self.bad(name, "is required".into()))?;
        self.positive_pair(name, v)
    }

    fn positive_pair(&self, name: &str, v: &[i64]) -> Result<[u32; 2]> {
        let p = |x: i64| u32::try_from(x).ok().filter(|&x| x > 0);
        match v {
            [a, b] => match (p(*a), p(*b)) {
                (Some(a), Some(b)) => Ok([a, b]),
                _ => Err(self.bad(name, format!("{v:?}: values must be positive"))),
            },
            _ => Err(self.bad(name, format!("{v:?}: only 2-D windows are supported"))),
        }
    }
}
