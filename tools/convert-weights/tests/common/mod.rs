//! Shared test helpers: fixture paths, output comparison, and a small builder for ONNX
//! models made with the crate's own prost messages.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use alexnet_convert::onnx_proto::{
    attribute_type, data_type, tensor_shape_proto::dimension::Value as Dim, tensor_shape_proto::Dimension, type_proto,
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};

/// `tests/fixtures` at the workspace root.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// A fixture file that must exist (fixtures are committed; a missing one is a failure).
pub fn fixture(rel: &str) -> PathBuf {
    let p = fixtures().join(rel);
    assert!(p.is_file(), "missing fixture {} (generate with tools/make_fixtures.py)", p.display());
    p
}

/// Log-probabilities of each row: log-softmax of logits, or the log of probabilities.
pub fn log_probs(values: &[f32], classes: usize, probabilities: bool) -> Vec<f64> {
    let mut out = Vec::with_capacity(values.len());
    for row in values.chunks(classes) {
        if probabilities {
            out.extend(row.iter().map(|&p| (p as f64).max(1e-30).ln()));
        } else {
            let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
            let lse = row.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln() + max;
            out.extend(row.iter().map(|&v| v as f64 - lse));
        }
    }
    out
}

fn argmax(row: &[f64]) -> usize {
    row.iter().enumerate().fold((0, f64::NEG_INFINITY), |(bi, bv), (i, &v)| if v > bv { (i, v) } else { (bi, bv) }).0
}

/// Open a converted weight file, run `input` (an .npy) through it and compare with
/// `expected` (an .npy) as log-probabilities: max abs difference < 1e-3, same argmax.
pub fn check_against(weights: &Path, input: &Path, expected: &Path, softmax: bool) {
    let model = alexnet::Model::open(weights).expect("converted file opens");
    let x = alexnet::npy::read(input).unwrap();
    let want = alexnet::npy::read(expected).unwrap();
    let classes = model.num_classes();
    assert_eq!(want.shape.len(), 2);
    assert_eq!(want.shape[1], classes, "class count");
    assert_eq!(x.shape[1..], model.input_shape(), "input shape");
    let mut got = vec![0.0f32; want.data.len()];
    model.infer_raw_into(&x.data, &mut got).unwrap();
    assert_eq!(model.plan().ends_in_softmax(), softmax, "softmax at the end");
    let (a, b) = (log_probs(&got, classes, softmax), log_probs(&want.data, classes, softmax));
    let diff = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
    eprintln!("{}: max abs log-prob difference {diff:.2e}", weights.display());
    assert!(diff < 1e-3, "{}: max |log p difference| {diff}", weights.display());
    for (i, (ra, rb)) in a.chunks(classes).zip(b.chunks(classes)).enumerate() {
        assert_eq!(argmax(ra), argmax(rb), "image {i}: argmax");
    }
}

/// `"softmax": true` in a fixture's meta.json.
pub fn meta_softmax(meta: &Path) -> bool {
    let text = std::fs::read_to_string(meta).unwrap();
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    assert!(compact.contains("\"softmax\":"), "meta.json without softmax");
    compact.contains("\"softmax\":true")
}

// ---- ONNX model construction -------------------------------------------------------

pub fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: attribute_type::INTS, ints: v.to_vec(), ..Default::default() }
}

pub fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: attribute_type::INT, i: v, ..Default::default() }
}

pub fn float(name: &str, v: f32) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: attribute_type::FLOAT, f: v, ..Default::default() }
}

pub fn string(name: &str, v: &str) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: attribute_type::STRING, s: v.as_bytes().to_vec(), ..Default::default() }
}

pub fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        name: name.into(),
        op_type: op.into(),
        attribute: attrs,
        ..Default::default()
    }
}

/// A FLOAT initializer stored as raw little-endian bytes.
pub fn init(name: &str, dims: &[i64], data: &[f32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: data_type::FLOAT,
        raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>().into(),
        ..Default::default()
    }
}

/// An INT64 initializer in `int64_data`.
pub fn init_i64(name: &str, v: &[i64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: vec![v.len() as i64],
        data_type: data_type::INT64,
        int64_data: v.to_vec(),
        ..Default::default()
    }
}

/// Deterministic values in [-0.5, 0.5).
pub fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

pub fn value_info(name: &str, dims: &[Option<i64>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension { value: Some(d.map_or(Dim::DimParam("N".into()), Dim::DimValue)), ..Default::default() })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: data_type::FLOAT,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A model with one image input `x` of `[1, 3, h, w]` and output `out`.
pub fn model(nodes: Vec<NodeProto>, inits: Vec<TensorProto>, hw: [i64; 2], out: &str) -> ModelProto {
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 13 }],
        producer_name: "alexnet-convert tests".into(),
        graph: Some(GraphProto {
            node: nodes,
            name: "test".into(),
            initializer: inits,
            input: vec![value_info("x", &[Some(1), Some(3), Some(hw[0]), Some(hw[1])])],
            output: vec![value_info(out, &[Some(1), None])],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A tiny valid network: conv 3->4 k3 on 8x8 (+ReLU), flatten, Gemm 4*6*6 -> 5.
pub fn tiny_nodes() -> (Vec<NodeProto>, Vec<TensorProto>) {
    let nodes = vec![
        node("Conv", "conv", &["x", "cw", "cb"], &["c"], vec![ints("kernel_shape", &[3, 3])]),
        node("Relu", "relu", &["c"], &["r"], vec![]),
        node("Flatten", "flat", &["r"], &["f"], vec![int("axis", 1)]),
        node("Gemm", "fc", &["f", "fw", "fb"], &["out"], vec![int("transB", 1)]),
    ];
    let inits = vec![
        init("cw", &[4, 3, 3, 3], &values(108, 1)),
        init("cb", &[4], &values(4, 2)),
        init("fw", &[5, 144], &values(720, 3)),
        init("fb", &[5], &values(5, 4)),
    ];
    (nodes, inits)
}

pub fn encode(m: &ModelProto) -> Vec<u8> {
    use prost::Message;
    m.encode_to_vec()
}
