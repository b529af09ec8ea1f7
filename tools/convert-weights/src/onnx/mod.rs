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
//! | Cast of the activation to a float type       | dropped (the runtime computes in f32)    |
//! | QuantizeLinear -> DequantizeLinear (QDQ)     | int8 input parameters; see `quant`       |
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
//!
//! The code is split by concern:
//!
//! * `graph`: the walk itself, the `Importer` state (initializers, `Constant` values,
//!   the current activation) and the per-node checks and dispatch;
//! * `lower`: one method per supported op, lowering it onto the `NetBuilder`;
//! * `tensor`: initializer decoding (inline, typed or external data) and reshaping of
//!   decoded constants into weights and biases;
//! * `attrs`: a node's inputs and typed, checked access to its attributes.

mod attrs;
mod fold;
mod graph;
mod lower;
mod quant;
mod tensor;

use std::path::Path;

use alexnet::plan::Layer;
use prost::Message;

use crate::error::{ConvertError, Result};
use crate::onnx_proto::ModelProto;
use crate::options::{Convention, Options};
use crate::{finish, Converted, InputFormat};

use graph::Importer;

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
    for index in dependency_order(graph)? {
        importer.node(index, &graph.node[index])?;
    }
    importer.check_output()?;
    let has_lrn = importer.net.layers().iter().any(|l| matches!(l, Layer::Lrn(_)));
    let detected = if has_lrn { Convention::Caffe } else { Convention::Torchvision };
    finish(importer.net, detected, InputFormat::Onnx, options)
}

/// The nodes in an order where each comes after the nodes producing its inputs (file
/// order where the file already is one, as ONNX requires but not every tool writes): a
/// stable topological sort (Kahn's, lowest file index first). A cycle, or an input that
/// nothing produces and that is neither a graph input nor an initializer, is an error
/// naming the node.
fn dependency_order(graph: &crate::onnx_proto::GraphProto) -> Result<Vec<usize>> {
    use std::collections::{BTreeSet, HashMap, HashSet};
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in graph.node.iter().enumerate() {
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            if producer.insert(o.as_str(), i).is_some() {
                return Err(ConvertError::BadGraph(format!("value '{o}' is produced twice")));
            }
        }
    }
    let given: HashSet<&str> =
        graph.input.iter().map(|i| i.name.as_str()).chain(graph.initializer.iter().map(|t| t.name.as_str())).collect();
    let mut waiting: Vec<usize> = vec![0; graph.node.len()];
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); graph.node.len()];
    for (i, n) in graph.node.iter().enumerate() {
        for inp in n.input.iter().filter(|x| !x.is_empty()) {
            match producer.get(inp.as_str()) {
                Some(&p) => {
                    waiting[i] += 1;
                    users[p].push(i);
                }
                None if given.contains(inp.as_str()) => {}
                None => {
                    let name = if n.name.is_empty() { format!("#{i}") } else { n.name.clone() };
                    return Err(ConvertError::BadGraph(format!(
                        "node '{name}' ({}) reads '{inp}', which no node, input or initializer provides",
                        n.op_type
                    )));
                }
            }
        }
    }
    let mut ready: BTreeSet<usize> = (0..graph.node.len()).filter(|&i| waiting[i] == 0).collect();
    let mut order = Vec::with_capacity(graph.node.len());
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &u in &users[i] {
            waiting[u] -= 1;
            if waiting[u] == 0 {
                ready.insert(u);
            }
        }
    }
    if order.len() < graph.node.len() {
        let stuck = (0..graph.node.len()).find(|&i| waiting[i] > 0).unwrap_or(0);
        return Err(ConvertError::BadGraph(format!("the graph has a cycle through node #{stuck}")));
    }
    Ok(order)
}

/// Operators with a mapping (besides `Constant`, which only feeds others).
const SUPPORTED: [&str; 25] = [
    "QLinearConv",
    "QLinearMatMul",
    "QGemm",
    "QLinearSoftmax",
    "Cast",
    "QuantizeLinear",
    "DequantizeLinear",
    "Transpose",
    "GatherND",
    "ReduceMean",
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
