//! The graph walk: the importer's state, the graph's one image input and one output,
//! constants by name, and the per-node checks (single chain, unused secondary outputs)
//! around the dispatch to the op lowerings in `lower`.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::attrs::{input, Node};
use super::tensor::dims;
use super::SUPPORTED;
use crate::builder::{NetBuilder, Tensor};
use crate::error::{ConvertError, Result};
use crate::onnx_proto::{
    data_type, tensor_shape_proto::dimension::Value as Dim, type_proto, GraphProto, NodeProto, TensorProto,
};
use crate::options::Options;

/// The walk's state.
pub(super) struct Importer<'g> {
    pub(super) graph: &'g GraphProto,
    pub(super) base_dir: Option<&'g Path>,
    pub(super) initializers: HashMap<&'g str, &'g TensorProto>,
    /// Outputs of `Constant` nodes.
    pub(super) constants: HashMap<String, TensorProto>,
    /// Every value name some node reads or the graph outputs.
    pub(super) used: HashSet<&'g str>,
    /// The current activation's name.
    pub(super) cur: String,
    /// The batch dimension when the model fixes it.
    pub(super) batch: Option<u64>,
    pub(super) net: NetBuilder,
    /// How far an exported adaptive average pool's node pattern has been seen
    /// (`lower::Adaptive`).
    pub(super) adaptive: Option<super::lower::Adaptive>,
    /// Which elements of folded integer constants stand for the unknown batch size.
    pub(super) marks: super::fold::Marks,
    /// Quantization seen so far (QDQ graphs).
    pub(super) quant: super::quant::QuantState,
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

impl<'g> Importer<'g> {
    pub(super) fn new(graph: &'g GraphProto, base_dir: Option<&'g Path>, options: &Options) -> Result<Self> {
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
        let tensor_type = match inp.r#type.as_ref().and_then(|t| t.value.as_ref()) {
            None => None,
            Some(type_proto::Value::TensorType(t)) => Some(t),
            Some(_) => {
                return Err(ConvertError::BadGraph(format!(
                    "input '{}' is not a tensor (a sequence, map, optional or sparse input)",
                    inp.name
                )))
            }
        };
        if let Some(t) = tensor_type {
            // Floating-point inputs of any width are given as f32 (an fp16 model's too).
            let floats = [data_type::FLOAT, data_type::FLOAT16, data_type::DOUBLE, data_type::BFLOAT16];
            if t.elem_type != 0 && !floats.contains(&t.elem_type) {
                return Err(ConvertError::BadGraph(format!(
                    "input '{}' has element type {}, only floating-point inputs (1, 10, 11, 16) are supported",
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
        let (batch, hw, channels) = match dims.as_deref() {
            None => (None, [None, None], None),
            Some([n, c, h, w]) => {
                let channels = match *c {
                    Some(c) if c > 0 => Some(
                        u32::try_from(c)
                            .map_err(|_| ConvertError::BadGraph(format!("input '{}' has {c} channels", inp.name)))?,
                    ),
                    _ => None,
                };
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
                (batch, [fixed(*h, "height")?, fixed(*w, "width")?], channels)
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
            // Grey networks (1 channel) and others take their channel count from the
            // input; an unknown one is taken to be 3.
            net: NetBuilder::new([channels.unwrap_or(3), h, w])?,
            adaptive: None,
            marks: Default::default(),
            quant: Default::default(),
        })
    }

    /// The graph must have one output, and it must be the last activation.
    pub(super) fn check_output(&self) -> Result<()> {
        if self.adaptive.is_some() {
            return Err(ConvertError::BadGraph("the graph ends inside an adaptive average pool's pattern".into()));
        }
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
    pub(super) fn constant(&self, name: &str) -> Option<&TensorProto> {
        self.initializers.get(name).copied().or_else(|| self.constants.get(name))
    }

    pub(super) fn constant_f32(&self, name: &str, context: &str) -> Result<Tensor> {
        let t = self
            .constant(name)
            .ok_or_else(|| ConvertError::MissingTensor { name: name.into(), context: context.into() })?;
        let (shape, data) = self.decode_f32(t, name)?;
        Ok(Tensor { name: name.into(), shape, data })
    }

    pub(super) fn constant_i64(&self, name: &str, context: &str) -> Result<(Vec<u64>, Vec<i64>)> {
        let t = self
            .constant(name)
            .ok_or_else(|| ConvertError::MissingTensor { name: name.into(), context: context.into() })?;
        self.decode_i64(t, name)
    }

    /// Dispatch one node.
    pub(super) fn node(&mut self, index: usize, node: &NodeProto) -> Result<()> {
        let name = node_name(index, node);
        let op = node.op_type.as_str();
        // ONNX Runtime's QOperator graphs use two of its own ops.
        let microsoft = node.domain == "com.microsoft" && matches!(op, "QGemm" | "QLinearSoftmax");
        if !(node.domain.is_empty() || node.domain == "ai.onnx" || microsoft) {
            return Err(ConvertError::UnsupportedOp { op: format!("{}:{op}", node.domain), node: name });
        }
        if op == "Constant" {
            return self.constant_node(&name, node);
        }
        if self.dequantizes_constants(node) {
            let ctx = format!("node '{name}' ({op})");
            return self.dequantize_constant(&Node { name: &name, ctx: &ctx, node });
        }
        if self.foldable(node) {
            let ctx = format!("node '{name}' ({op})");
            return self.fold(&Node { name: &name, ctx: &ctx, node });
        }
        {
            let ctx = format!("node '{name}' ({op})");
            if self.dynamic_node(&Node { name: &name, ctx: &ctx, node })? {
                return Ok(());
            }
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
        if self.adaptive.is_some() && !matches!(op, "GatherND" | "Transpose" | "ReduceMean") {
            return Err(
                n.unsupported("an adaptive average pool's Transpose/GatherND/ReduceMean pattern is cut short".into())
            );
        }
        self.check_quantized(&n)?;
        match op {
            "QuantizeLinear" => self.quantize_linear(&n)?,
            "Cast" => self.cast(&n)?,
            "QLinearConv" | "QLinearMatMul" | "QGemm" => self.qlinear_layer(&n)?,
            "QLinearSoftmax" => self.qlinear_softmax(&n)?,
            "DequantizeLinear" => self.dequantize_linear(&n)?,
            "Transpose" => self.transpose(&n)?,
            "GatherND" => self.gather_nd(&n)?,
            "ReduceMean" => self.reduce_mean(&n)?,
            "Conv" => self.conv(&n)?,
            "Relu" => self.relu(&n)?,
            "MaxPool" => self.maxpool(&n)?,
            "LRN" => self.lrn(&n)?,
            "Dropout" => self.dropout(&n)?,
            "Identity" => self.identity(&n)?,
            "AveragePool" => self.average_pool(&n)?,
            "GlobalAveragePool" => self.global_average_pool(&n)?,
            "Flatten" => self.flatten(&n)?,
            "Reshape" => self.reshape(&n)?,
            "Gemm" => self.gemm(&n)?,
            "MatMul" => self.matmul(&n)?,
            "Add" => self.add(&n, data)?,
            "Softmax" => self.softmax(&n)?,
            _ => return Err(ConvertError::UnsupportedOp { op: op.into(), node: name }),
        }
        self.after_node(&n)?;
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

    /// A BOOL/INT constant's values as integers (for Dropout's training_mode).
    pub(super) fn constant_bool_or_int(&self, name: &str, context: &str) -> Result<(Vec<u64>, Vec<i64>)> {
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
}
