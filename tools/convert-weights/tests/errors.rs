//! Refusals and edge cases: every bad input is a typed error naming its cause, never a
//! panic. Models are built in the test with the crate's prost messages.

mod common;

use alexnet::plan::{Layer, Pads};
use alexnet_convert::onnx_proto::{data_location, data_type, StringStringEntryProto, TensorProto};
use alexnet_convert::{convert_bytes, convert_file, ConvertError, InputFormat, Options};
use common::*;

fn convert(m: &alexnet_convert::onnx_proto::ModelProto) -> alexnet_convert::Result<alexnet_convert::Converted> {
    convert_bytes(&encode(m), InputFormat::Onnx, None, &Options::default())
}

#[test]
fn tiny_model_converts() {
    let (nodes, inits) = tiny_nodes();
    let c = convert(&model(nodes, inits, [8, 8], "out")).unwrap();
    let names: Vec<_> = c.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["conv1.weight", "conv1.bias", "fc1.weight", "fc1.bias"], "not the 5+3 naming");
    assert!(matches!(&c.plan.layers[0], Layer::Conv(cv) if cv.relu), "ReLU fused");
    assert_eq!(c.plan.layers.len(), 3);
}

#[test]
fn unsupported_op_names_op_and_node() {
    let (mut nodes, mut inits) = tiny_nodes();
    // Conv -> BatchNormalization -> Relu ...
    nodes[0].output = vec!["c0".into()];
    nodes.insert(1, node("BatchNormalization", "bn1", &["c0", "s", "b", "m", "v"], &["c"], vec![]));
    for n in ["s", "b", "m", "v"] {
        inits.push(init(n, &[4], &[1.0; 4]));
    }
    let e = convert(&model(nodes, inits, [8, 8], "out")).unwrap_err();
    match &e {
        ConvertError::UnsupportedOp { op, node } => {
            assert_eq!((op.as_str(), node.as_str()), ("BatchNormalization", "bn1"))
        }
        other => panic!("{other}"),
    }
    assert_eq!(e.to_string(), "unsupported op BatchNormalization at node 'bn1'");
    // Named as unsupported even when it also branches, and in a foreign domain.
    let (mut nodes, inits) = tiny_nodes();
    nodes.insert(1, node("Tanh", "", &["c"], &["tanh_of_c"], vec![]));
    let e = convert(&model(nodes, inits, [8, 8], "out")).unwrap_err();
    assert_eq!(e.to_string(), "unsupported op Tanh at node 'tanh_of_c'");
    // A Shape branch that nothing uses is only folded, and harmless.
    let (mut nodes, inits) = tiny_nodes();
    nodes.insert(1, node("Shape", "", &["c"], &["shape_of_c"], vec![]));
    convert(&model(nodes, inits, [8, 8], "out")).unwrap();
    let (mut nodes, inits) = tiny_nodes();
    nodes[1].domain = "com.microsoft".into();
    let e = convert(&model(nodes, inits, [8, 8], "out")).unwrap_err();
    assert_eq!(e.to_string(), "unsupported op com.microsoft:Relu at node 'relu'");
}

#[test]
fn conv_weight_with_wrong_input_channels_is_a_shape_error() {
    let (nodes, mut inits) = tiny_nodes();
    inits[0] = init("cw", &[4, 2, 3, 3], &values(72, 1));
    let e = convert(&model(nodes, inits, [8, 8], "out")).unwrap_err();
    assert!(matches!(&e, ConvertError::BadShape(m) if m.contains("'cw'") && m.contains("3 channels")), "{e}");
}

#[test]
fn linear_weight_with_wrong_in_features_is_a_shape_error() {
    let (nodes, mut inits) = tiny_nodes();
    inits[2] = init("fw", &[5, 100], &values(500, 3));
    let e = convert(&model(nodes, inits, [8, 8], "out")).unwrap_err();
    assert!(matches!(&e, ConvertError::BadShape(m) if m.contains("144")), "{e}");
}

#[test]
fn data_not_matching_dims_is_refused() {
    let (nodes, mut inits) = tiny_nodes();
    inits[1] = init("cb", &[4], &[1.0; 3]);
    let e = convert(&model(nodes, inits, [8, 8], "out")).unwrap_err();
    assert!(matches!(&e, ConvertError::BadTensor { name, .. } if name == "cb"), "{e}");
    // A huge declared shape with no data: refused before any allocation.
    let (nodes, mut inits) = tiny_nodes();
    inits[0].dims = vec![1 << 40, 1 << 20, 3, 3];
    assert!(matches!(convert(&model(nodes, inits, [8, 8], "out")).unwrap_err(), ConvertError::BadTensor { .. }));
    let (nodes, mut inits) = tiny_nodes();
    inits[0].dims = vec![i64::MAX, i64::MAX, 3, 3];
    assert!(matches!(convert(&model(nodes, inits, [8, 8], "out")).unwrap_err(), ConvertError::BadTensor { .. }));
}

#[test]
fn huge_dimensions_paired_with_zero_never_size_a_buffer() {
    // B is [2^40, 0] (no data): a scalar C must not be broadcast to 2^40 values.
    let (mut nodes, mut inits) = tiny_nodes();
    inits[2] = init("fw", &[1 << 40, 0], &[]);
    inits[3] = init("fb", &[], &[1.0]);
    nodes[3].attribute = vec![int("transB", 1)];
    assert!(matches!(convert(&model(nodes, inits, [8, 8], "out")).unwrap_err(), ConvertError::BadShape(_)));
    // The same through MatMul ([0, 2^40] transposed) and a missing bias.
    let (mut nodes, mut inits) = tiny_nodes();
    nodes[3] = node("MatMul", "mm", &["f", "fw"], &["out"], vec![]);
    inits[2] = init("fw", &[0, 1 << 40], &[]);
    assert!(matches!(convert(&model(nodes, inits, [8, 8], "out")).unwrap_err(), ConvertError::BadShape(_)));
    // A conv weight [2^40, 0, 3, 3] without bias.
    let (mut nodes, mut inits) = tiny_nodes();
    nodes[0].input.truncate(2);
    inits[0] = init("cw", &[1 << 40, 0, 3, 3], &[]);
    assert!(matches!(convert(&model(nodes, inits, [8, 8], "out")).unwrap_err(), ConvertError::BadShape(_)));
}

#[test]
fn truncated_onnx_is_a_decode_error() {
    let bytes = std::fs::read(fixture("onnx/spec_small/model.onnx")).unwrap();
    for cut in [1, 7, 100, bytes.len() / 3, bytes.len() / 2, bytes.len() - 1] {
        let e = convert_bytes(&bytes[..cut], InputFormat::Onnx, None, &Options::default()).unwrap_err();
        assert!(matches!(e, ConvertError::Decode(_)), "cut at {cut}: {e}");
    }
    // Not protobuf at all.
    let e = convert_bytes(b"\xff\xff\xff\xff", InputFormat::Onnx, None, &Options::default()).unwrap_err();
    assert!(matches!(e, ConvertError::Decode(_)), "{e}");
    // Valid protobuf, no graph.
    let e = convert_bytes(&[], InputFormat::Onnx, None, &Options::default()).unwrap_err();
    assert!(matches!(e, ConvertError::BadGraph(_)), "{e}");
}

#[test]
fn corrupted_inputs_never_panic() {
    // Deterministic byte flips and truncations across every importer.
    let files = [
        ("onnx/zoo_small/model.onnx", InputFormat::Onnx),
        ("onnx/odd_small/model.onnx", InputFormat::Onnx),
        ("state_dict/tv_small.safetensors", InputFormat::Safetensors),
        ("state_dict/tv_small.npz", InputFormat::Npz),
    ];
    for (file, format) in files {
        let original = std::fs::read(fixture(file)).unwrap();
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        // ALEXNET_CONVERT_FUZZ_ROUNDS raises the count for a longer local run.
        let rounds = std::env::var("ALEXNET_CONVERT_FUZZ_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(150u64);
        for round in 0..rounds {
            let mut bytes = original.clone();
            for _ in 0..1 + round % 4 {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                // Bias towards the start, where structure (headers, small messages) lives.
                let span = if round % 2 == 0 { bytes.len().min(4096) } else { bytes.len() };
                let pos = (rng % span as u64) as usize;
                bytes[pos] = (rng >> 32) as u8;
            }
            if round % 5 == 0 {
                bytes.truncate((rng >> 16) as usize % bytes.len());
            }
            let _ = convert_bytes(&bytes, format, None, &Options::default());
        }
    }
}

#[test]
fn safetensors_missing_key_is_named() {
    let bytes = std::fs::read(fixture("state_dict/tv_small.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let kept: Vec<_> = st.tensors().into_iter().filter(|(k, _)| k != "classifier.4.bias").collect();
    let out = safetensors::serialize(kept, None).unwrap();
    let e = convert_bytes(&out, InputFormat::Safetensors, None, &Options::default()).unwrap_err();
    assert!(matches!(&e, ConvertError::MissingKeys(k) if k == &["classifier.4.bias"]), "{e}");
    assert!(e.to_string().contains("classifier.4.bias"));
}

#[test]
fn safetensors_unexpected_key_and_bad_dtype() {
    let bytes = std::fs::read(fixture("state_dict/tv_small.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let extra_data = [0u8; 4];
    let extra = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1], &extra_data).unwrap();
    let mut all = st.tensors();
    all.push(("features.1.running_mean".into(), extra));
    let out = safetensors::serialize(all, None).unwrap();
    let e = convert_bytes(&out, InputFormat::Safetensors, None, &Options::default()).unwrap_err();
    assert!(matches!(&e, ConvertError::UnexpectedKeys(k) if k == &["features.1.running_mean"]), "{e}");

    let ints = [0u8; 8];
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::I64, vec![1], &ints).unwrap();
    let out = safetensors::serialize(vec![("features.0.bias", view)], None).unwrap();
    let e = convert_bytes(&out, InputFormat::Safetensors, None, &Options::default()).unwrap_err();
    assert!(matches!(&e, ConvertError::BadTensor { name, .. } if name == "features.0.bias"), "{e}");
}

#[test]
fn state_dict_with_wrong_fc_width_is_a_shape_error() {
    let bytes = std::fs::read(fixture("state_dict/tv_small.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let data = vec![0u8; 40 * 100 * 4];
    let bad = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![40, 100], &data).unwrap();
    let all: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(k, v)| if k == "classifier.1.weight" { (k, bad.clone()) } else { (k, v) })
        .collect();
    let out = safetensors::serialize(all, None).unwrap();
    let e = convert_bytes(&out, InputFormat::Safetensors, None, &Options::default()).unwrap_err();
    assert!(matches!(&e, ConvertError::BadShape(m) if m.contains("576")), "{e}");
}

#[test]
fn maxpool_indices_in_use_are_refused() {
    let (mut nodes, inits) = tiny_nodes();
    nodes[1] = node("MaxPool", "pool", &["c"], &["r", "idx"], vec![ints("kernel_shape", &[1, 1])]);
    nodes.push(node("Identity", "use_idx", &["idx"], &["idx2"], vec![]));
    let e = convert(&model(nodes.clone(), inits.clone(), [8, 8], "out")).unwrap_err();
    assert!(matches!(e, ConvertError::BadGraph(_) | ConvertError::UnsupportedUse { .. }), "{e}");
    // Unused Indices are fine.
    nodes.pop();
    convert(&model(nodes, inits, [8, 8], "out")).unwrap();
}

#[test]
fn average_pools_convert_and_dilated_ones_are_refused() {
    let (mut nodes, inits) = tiny_nodes();
    nodes[0].output = vec!["c0".into()];
    // An identity is dropped.
    nodes.insert(1, node("AveragePool", "avg", &["c0"], &["c"], vec![ints("kernel_shape", &[1, 1])]));
    let c = convert(&model(nodes.clone(), inits.clone(), [8, 8], "out")).unwrap();
    assert!(!c.plan.layers.iter().any(|l| matches!(l, Layer::AvgPool(_))));
    // A padded 3x3 is an average-pool layer, with ONNX's count_include_pad.
    nodes[1] = node(
        "AveragePool",
        "avg",
        &["c0"],
        &["c"],
        vec![ints("kernel_shape", &[3, 3]), ints("pads", &[1, 1, 1, 1]), int("count_include_pad", 1)],
    );
    let c = convert(&model(nodes.clone(), inits.clone(), [8, 8], "out")).unwrap();
    assert!(c.plan.layers.iter().any(|l| matches!(l, Layer::AvgPool(p) if p.count_include_pad && p.kernel == [3, 3])));
    nodes[1] =
        node("AveragePool", "avg", &["c0"], &["c"], vec![ints("kernel_shape", &[3, 3]), ints("dilations", &[2, 2])]);
    let e = convert(&model(nodes.clone(), inits.clone(), [8, 8], "out")).unwrap_err();
    assert!(e.to_string().contains("dilation"), "{e}");
    // GlobalAveragePool over a map larger than 1x1: an adaptive pool to 1x1 (the linear
    // layer's input then shrinks, so it no longer fits: a shape error naming fc).
    nodes[1] = node("GlobalAveragePool", "gap", &["c0"], &["c"], vec![]);
    let e = convert(&model(nodes, inits, [8, 8], "out")).unwrap_err();
    assert!(e.to_string().contains("fc"), "{e}");
}

#[test]
fn gemm_variants() {
    // transB = 0 (B is [in, out]), alpha and beta scale weight and bias, C as [1, out].
    let (mut nodes, mut inits) = tiny_nodes();
    let w_in_out = values(720, 3); // [144, 5]
    inits[2] = init("fw", &[144, 5], &w_in_out);
    inits[3] = init("fb", &[1, 5], &[1.0, 2.0, 3.0, 4.0, 5.0]);
    nodes[3] = node("Gemm", "fc", &["f", "fw", "fb"], &["out"], vec![float("alpha", 2.0), float("beta", 0.5)]);
    let c = convert(&model(nodes.clone(), inits.clone(), [8, 8], "out")).unwrap();
    let w = &c.tensors[2];
    assert_eq!(w.shape, [5, 144]);
    for o in 0..5 {
        for i in 0..144 {
            assert_eq!(w.data[o * 144 + i], 2.0 * w_in_out[i * 5 + o]);
        }
    }
    assert_eq!(c.tensors[3].data, [0.5, 1.0, 1.5, 2.0, 2.5]);

    nodes[3].attribute = vec![int("transA", 1)];
    let e = convert(&model(nodes, inits, [8, 8], "out")).unwrap_err();
    assert!(matches!(&e, ConvertError::BadAttribute { attribute, .. } if attribute == "transA"), "{e}");
}

#[test]
fn matmul_add_folds_into_the_bias_and_add_elsewhere_is_refused() {
    let (mut nodes, mut inits) = tiny_nodes();
    nodes[3] = node("MatMul", "mm", &["f", "fw"], &["mm_out"], vec![]);
    nodes.push(node("Add", "add", &["bias", "mm_out"], &["out"], vec![]));
    inits[2] = init("fw", &[144, 5], &values(720, 3));
    inits[3] = init("bias", &[5], &[1.0, 2.0, 3.0, 4.0, 5.0]);
    let c = convert(&model(nodes.clone(), inits.clone(), [8, 8], "out")).unwrap();
    assert_eq!(c.tensors[3].data, [1.0, 2.0, 3.0, 4.0, 5.0]);
    // Add after the ReLU is not a bias.
    nodes[4] = node("Relu", "r2", &["mm_out"], &["r2"], vec![]);
    nodes.push(node("Add", "add", &["r2", "bias"], &["out"], vec![]));
    let e = convert(&model(nodes, inits, [8, 8], "out")).unwrap_err();
    assert!(matches!(&e, ConvertError::UnsupportedUse { op, .. } if op == "Add"), "{e}");
}

#[test]
fn reshape_shapes() {
    for (shape, ok) in [
        (vec![1, 144], true),
        (vec![-1, 144], true),
        (vec![0, -1], true),
        (vec![1, -1], true),
        (vec![2, -1], false), // the model fixes batch 1
        (vec![144], false),
        (vec![1, 4, 36], false),
        (vec![-1, -1], false),
        (vec![1, 72], false),
    ] {
        let (mut nodes, mut inits) = tiny_nodes();
        nodes[2] = node("Reshape", "reshape", &["r", "shape"], &["f"], vec![]);
        inits.push(init_i64("shape", &shape));
        let r = convert(&model(nodes, inits, [8, 8], "out"));
        assert_eq!(r.is_ok(), ok, "{shape:?}: {r:?}");
        if let Err(e) = r {
            assert!(matches!(e, ConvertError::BadShape(_)), "{shape:?}: {e}");
        }
    }
}

#[test]
fn legacy_opset_forms() {
    // Reshape-1 (shape as an attribute), Relu-1 / Add-1 with consumed_inputs and broadcast.
    let (mut nodes, mut inits) = tiny_nodes();
    nodes[1].attribute.push(ints("consumed_inputs", &[0]));
    nodes[2] = node("Reshape", "reshape", &["r"], &["f"], vec![ints("shape", &[1, 144])]);
    nodes[3] = node("Gemm", "fc", &["f", "fw"], &["g"], vec![int("transB", 1)]);
    nodes.push(node("Add", "bias", &["g", "fb"], &["out"], vec![int("broadcast", 1), int("axis", 1)]));
    inits[3] = init("fb", &[5], &[1.0, 2.0, 3.0, 4.0, 5.0]);
    let c = convert(&model(nodes.clone(), inits.clone(), [8, 8], "out")).unwrap();
    assert_eq!(c.tensors[3].data, [1.0, 2.0, 3.0, 4.0, 5.0]);
    assert!(c.plan.layers.iter().any(|l| matches!(l, Layer::Flatten)));
    // Both a shape input and a shape attribute.
    nodes[2].input.push("shape".into());
    inits.push(init_i64("shape", &[1, 144]));
    let e = convert(&model(nodes, inits, [8, 8], "out")).unwrap_err();
    assert!(matches!(&e, ConvertError::BadAttribute { attribute, .. } if attribute == "shape"), "{e}");
}

#[test]
fn auto_pad_same_is_made_explicit() {
    let (mut nodes, inits) = tiny_nodes();
    nodes[0].attribute.push(string("auto_pad", "SAME_UPPER"));
    nodes[0].attribute.push(ints("strides", &[2, 2]));
    // 8x8, k3, s2: out 4, total pad (4-1)*2+3-8 = 1 -> (0, 1) upper, (1, 0) lower.
    let mut fc = inits.clone();
    fc[2] = init("fw", &[5, 64], &values(320, 3));
    let c = convert(&model(nodes.clone(), fc.clone(), [8, 8], "out")).unwrap();
    assert!(matches!(&c.plan.layers[0], Layer::Conv(cv) if cv.pads == Pads { top: 0, left: 0, bottom: 1, right: 1 }));
    nodes[0].attribute[1] = string("auto_pad", "SAME_LOWER");
    let c = convert(&model(nodes.clone(), fc, [8, 8], "out")).unwrap();
    assert!(matches!(&c.plan.layers[0], Layer::Conv(cv) if cv.pads == Pads { top: 1, left: 1, bottom: 0, right: 0 }));
    nodes[0].attribute[1] = string("auto_pad", "BOGUS");
    assert!(matches!(convert(&model(nodes, inits, [8, 8], "out")).unwrap_err(), ConvertError::BadAttribute { .. }));
}

#[test]
fn dilation_and_unknown_attributes_are_refused() {
    let (mut nodes, inits) = tiny_nodes();
    nodes[0].attribute.push(ints("dilations", &[2, 2]));
    let e = convert(&model(nodes, inits, [8, 8], "out")).unwrap_err();
    assert!(matches!(&e, ConvertError::BadAttribute { attribute, .. } if attribute == "dilations"), "{e}");
    let (mut nodes, inits) = tiny_nodes();
    nodes[1].attribute.push(float("alpha", 0.1));
    let e = convert(&model(nodes, inits, [8, 8], "out")).unwrap_err();
    assert!(matches!(&e, ConvertError::BadAttribute { attribute, .. } if attribute == "alpha"), "{e}");
}

#[test]
fn half_and_double_initializers_are_converted() {
    let (nodes, mut inits) = tiny_nodes();
    // FLOAT16 bias in int32_data: 1.0, -2.0, 0.5, 0.0.
    inits[1] = TensorProto {
        name: "cb".into(),
        dims: vec![4],
        data_type: data_type::FLOAT16,
        int32_data: vec![0x3c00, 0xc000, 0x3800, 0],
        ..Default::default()
    };
    // DOUBLE bias for the Gemm.
    inits[3] = TensorProto {
        name: "fb".into(),
        dims: vec![5],
        data_type: data_type::DOUBLE,
        double_data: vec![0.25, 0.5, 0.75, 1.0, 1.25],
        ..Default::default()
    };
    let c = convert(&model(nodes, inits, [8, 8], "out")).unwrap();
    assert_eq!(c.tensors[1].data, [1.0, -2.0, 0.5, 0.0]);
    assert_eq!(c.tensors[3].data, [0.25, 0.5, 0.75, 1.0, 1.25]);
}

#[test]
fn branches_and_wrong_outputs_are_refused() {
    // The Gemm reads a dead activation (the conv output, not the relu's).
    let (mut nodes, inits) = tiny_nodes();
    nodes[2].input = vec!["c".into()];
    let e = convert(&model(nodes, inits, [8, 8], "out")).unwrap_err();
    assert!(matches!(e, ConvertError::BadGraph(_)), "{e}");
    // The graph output is an intermediate value.
    let (nodes, inits) = tiny_nodes();
    let e = convert(&model(nodes, inits, [8, 8], "f")).unwrap_err();
    assert!(matches!(&e, ConvertError::BadGraph(m) if m.contains("'f'")), "{e}");
    // A second image input.
    let (nodes, inits) = tiny_nodes();
    let mut m = model(nodes, inits, [8, 8], "out");
    if let Some(g) = m.graph.as_mut() {
        g.input.push(value_info("y", &[Some(1), Some(3), Some(8), Some(8)]));
    }
    assert!(matches!(convert(&m).unwrap_err(), ConvertError::BadGraph(_)));
    // A weight that is not there.
    let (nodes, mut inits) = tiny_nodes();
    inits.remove(2);
    let e = convert(&model(nodes, inits, [8, 8], "out")).unwrap_err();
    assert!(matches!(e, ConvertError::BadGraph(_) | ConvertError::MissingTensor { .. }), "{e}");
}

#[test]
fn symbolic_image_size_needs_input_size() {
    let (nodes, inits) = tiny_nodes();
    let mut m = model(nodes, inits, [8, 8], "out");
    if let Some(g) = m.graph.as_mut() {
        g.input[0] = value_info("x", &[None, Some(3), None, None]);
    }
    let bytes = encode(&m);
    let e = convert_bytes(&bytes, InputFormat::Onnx, None, &Options::default()).unwrap_err();
    assert!(e.to_string().contains("--input-size"), "{e}");
    let opts = Options { input_size: Some([8, 8]), ..Default::default() };
    let c = convert_bytes(&bytes, InputFormat::Onnx, None, &opts).unwrap();
    assert_eq!(c.plan.input, [3, 8, 8]);
    // A fixed size that disagrees with --input-size.
    let (nodes, inits) = tiny_nodes();
    let opts = Options { input_size: Some([9, 9]), ..Default::default() };
    let e = convert_bytes(&encode(&model(nodes, inits, [8, 8], "out")), InputFormat::Onnx, None, &opts).unwrap_err();
    assert!(matches!(e, ConvertError::InvalidOption(_)), "{e}");
    // An image input that is not a tensor at all.
    let (nodes, inits) = tiny_nodes();
    let mut m = model(nodes, inits, [8, 8], "out");
    if let Some(t) = m.graph.as_mut().and_then(|g| g.input[0].r#type.as_mut()) {
        let seq = alexnet_convert::onnx_proto::type_proto::Sequence { elem_type: Some(Box::new(t.clone())) };
        t.value = Some(alexnet_convert::onnx_proto::type_proto::Value::SequenceType(Box::new(seq)));
    }
    let e = convert(&m).unwrap_err();
    assert!(e.to_string().contains("'x' is not a tensor"), "{e}");
}

fn external(name: &str, dims: &[i64], location: &str, offset: u64, length: Option<u64>) -> TensorProto {
    let mut entries = vec![
        StringStringEntryProto { key: "location".into(), value: location.into() },
        StringStringEntryProto { key: "offset".into(), value: offset.to_string() },
    ];
    if let Some(l) = length {
        entries.push(StringStringEntryProto { key: "length".into(), value: l.to_string() });
    }
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: data_type::FLOAT,
        data_location: data_location::EXTERNAL,
        external_data: entries,
        ..Default::default()
    }
}

#[test]
fn external_data_is_read_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let (nodes, mut inits) = tiny_nodes();
    let fw = values(720, 3);
    let mut blob = vec![0u8; 16]; // data at offset 16
    blob.extend(fw.iter().flat_map(|v| v.to_le_bytes()));
    std::fs::write(dir.path().join("weights.bin"), &blob).unwrap();
    let write_model = |t: TensorProto| {
        let mut inits = inits.clone();
        inits[2] = t;
        let path = dir.path().join("model.onnx");
        std::fs::write(&path, encode(&model(nodes.clone(), inits, [8, 8], "out"))).unwrap();
        convert_file(&path, &Options::default())
    };
    let c = write_model(external("fw", &[5, 144], "weights.bin", 16, Some(2880))).unwrap();
    assert_eq!(c.tensors[2].data, fw);
    c.write(&dir.path().join("m.alexnet")).unwrap();
    alexnet::Model::open(dir.path().join("m.alexnet")).unwrap();
    for (loc, off, len) in [
        ("weights.bin", 17, None),      // runs past the end
        ("weights.bin", 16, Some(100)), // length disagrees with the shape
        ("../weights.bin", 16, None),   // escapes the model directory
        ("/etc/passwd", 0, None),       // absolute
        ("missing.bin", 0, None),       // absent
        (".", 0, None),                 // a directory
    ] {
        let e = write_model(external("fw", &[5, 144], loc, off, len)).unwrap_err();
        assert!(matches!(e, ConvertError::BadTensor { .. } | ConvertError::Io { .. }), "{loc}: {e}");
    }
    // From bytes, with no directory to read from.
    inits[2] = external("fw", &[5, 144], "weights.bin", 16, None);
    let e = convert_bytes(&encode(&model(nodes, inits, [8, 8], "out")), InputFormat::Onnx, None, &Options::default())
        .unwrap_err();
    assert!(matches!(e, ConvertError::BadTensor { .. }), "{e}");
}

#[test]
fn constant_nodes_feed_weights_and_shapes() {
    let (mut nodes, mut inits) = tiny_nodes();
    let cw = inits.remove(0);
    nodes.insert(
        0,
        node(
            "Constant",
            "",
            &[],
            &["cw"],
            vec![alexnet_convert::onnx_proto::AttributeProto {
                name: "value".into(),
                r#type: alexnet_convert::onnx_proto::attribute_type::TENSOR,
                t: Some(cw.clone()),
                ..Default::default()
            }],
        ),
    );
    nodes[3] = node("Reshape", "reshape", &["r", "shape"], &["f"], vec![]);
    nodes.insert(3, node("Constant", "shape_const", &[], &["shape"], vec![ints("value_ints", &[0, -1])]));
    let c = convert(&model(nodes, inits, [8, 8], "out")).unwrap();
    let expected: Vec<f32> = cw.raw_data.chunks(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    assert_eq!(c.tensors[0].data, expected);
}

#[test]
fn format_detection() {
    use std::path::Path;
    assert_eq!(InputFormat::detect(Path::new("a.ONNX"), b"PK"), InputFormat::Onnx);
    assert_eq!(InputFormat::detect(Path::new("a.npz"), b""), InputFormat::Npz);
    assert_eq!(InputFormat::detect(Path::new("a.safetensors"), b""), InputFormat::Safetensors);
    assert_eq!(InputFormat::detect(Path::new("a"), b"PK\x03\x04"), InputFormat::Npz);
    assert_eq!(InputFormat::detect(Path::new("a"), b"\x02\0\0\0\0\0\0\0{}"), InputFormat::Safetensors);
    assert_eq!(InputFormat::detect(Path::new("a"), b"\xff\0\0\0\0\0\0\0{}"), InputFormat::Onnx);
    assert_eq!(InputFormat::detect(Path::new("a.bin"), b"\x08\x07"), InputFormat::Onnx);
}

#[test]
fn unreadable_inputs_are_io_errors() {
    let dir = tempfile::tempdir().unwrap();
    let e = convert_file(dir.path(), &Options::default()).unwrap_err();
    assert!(matches!(e, ConvertError::Io { .. }), "{e}");
    let e = convert_file(&dir.path().join("absent.onnx"), &Options::default()).unwrap_err();
    assert!(matches!(e, ConvertError::Io { .. }), "{e}");
}

/// Shape computations as exporters write them are folded at conversion: the flatten of
/// `Shape -> Gather -> Unsqueeze/Mul -> Concat -> Cast -> Reshape` (with the batch
/// symbolic or fixed), a weight through `Identity`, a bias plus `ConstantOfShape` zeros;
/// the result is the plain network's. Arithmetic on the unknown batch is refused.
#[test]
fn shape_subgraphs_are_folded() {
    let (plain_nodes, inits) = tiny_nodes();
    let want = convert(&model(plain_nodes, inits.clone(), [8, 8], "out")).unwrap();
    let mut inits = inits;
    inits.push(init_i64("i0", &[0]));
    inits.push(init_i64("i1", &[1]));
    inits.push(init_i64("i2", &[2]));
    inits.push(init_i64("i3", &[3]));
    inits.push(init_i64("five", &[5]));
    let zeros = TensorProto { dims: vec![1], data_type: data_type::FLOAT, float_data: vec![0.0], ..Default::default() };
    let mut cos = node("ConstantOfShape", "zeros", &["five"], &["z"], vec![]);
    cos.attribute.push(alexnet_convert::onnx_proto::AttributeProto {
        name: "value".into(),
        r#type: 4,
        t: Some(zeros),
        ..Default::default()
    });
    let nodes = |batch_gather: &str| {
        vec![
            node("Conv", "conv", &["x", "cw", "cb"], &["c"], vec![ints("kernel_shape", &[3, 3])]),
            node("Relu", "relu", &["c"], &["r"], vec![]),
            node("Shape", "shape", &["r"], &["s"], vec![]),
            node("Gather", "g0", &["s", batch_gather], &["n"], vec![int("axis", 0)]),
            node("Gather", "g1", &["s", "i1"], &["ch"], vec![int("axis", 0)]),
            node("Gather", "g2", &["s", "i2"], &["hh"], vec![int("axis", 0)]),
            node("Gather", "g3", &["s", "i3"], &["ww"], vec![int("axis", 0)]),
            node("Mul", "m1", &["ch", "hh"], &["chh"], vec![]),
            node("Mul", "m2", &["chh", "ww"], &["feat"], vec![]),
            node("Concat", "cat", &["n", "feat"], &["target"], vec![int("axis", 0)]),
            node("Cast", "cast", &["target"], &["target64"], vec![int("to", 7)]),
            node("Reshape", "flat", &["r", "target64"], &["f"], vec![]),
            node("Identity", "wid", &["fw"], &["fw2"], vec![]),
            cos.clone(),
            node("Add", "bias", &["fb", "z"], &["fb2"], vec![]),
            node("Gemm", "fc", &["f", "fw2", "fb2"], &["out"], vec![int("transB", 1)]),
        ]
    };
    for symbolic in [false, true] {
        let mut m = model(nodes("i0"), inits.clone(), [8, 8], "out");
        if symbolic {
            m.graph.as_mut().unwrap().input[0] = value_info("x", &[None, Some(3), Some(8), Some(8)]);
        }
        let got = convert(&m).unwrap();
        assert_eq!(got.plan, want.plan, "symbolic batch {symbolic}");
        assert_eq!(got.tensors, want.tensors, "symbolic batch {symbolic}");
    }
    // The unknown batch multiplied into a dimension: refused.
    let mut bad = nodes("i0");
    bad[7] = node("Mul", "m1", &["ch", "n"], &["chh"], vec![]);
    let mut m = model(bad, inits, [8, 8], "out");
    m.graph.as_mut().unwrap().input[0] = value_info("x", &[None, Some(3), Some(8), Some(8)]);
    let e = convert(&m).unwrap_err().to_string();
    assert!(e.contains("batch"), "{e}");
}

/// A network retrained on grey images (1 input channel) converts; its plan takes
/// `[1, H, W]`, and it runs.
#[test]
fn one_channel_networks_convert_and_run() {
    let (nodes, mut inits) = tiny_nodes();
    inits[0] = init("cw", &[4, 1, 3, 3], &values(36, 1));
    let mut m = model(nodes, inits, [8, 8], "out");
    m.graph.as_mut().unwrap().input[0] = value_info("x", &[Some(1), Some(1), Some(8), Some(8)]);
    let c = convert(&m).unwrap();
    assert_eq!(c.plan.input, [1, 8, 8]);
    let bytes = alexnet::weights::format::to_bytes(&c.plan, &c.tensors).unwrap();
    let model = alexnet::Model::from_bytes(bytes).unwrap();
    assert_eq!(model.input_shape(), [1, 8, 8]);
    let probs = model.infer(&[0.5; 64]).unwrap();
    assert!((probs.iter().sum::<f32>() - 1.0).abs() < 1e-5);
}
